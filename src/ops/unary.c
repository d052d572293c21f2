/* unary.c — elementwise ops of one input: activations, exp/log/sqrt, and ops with a scalar.
 * Each forward is y = f(x) over n->numel elements; each backward is dx += dy * f'(x) (dx = when it is the
 * gradient's first writer, grad_assigns), written with
 * whichever of x and y makes f' cheapest (flags tell the planner which one backward reads). */
#include "common.h"
#include "../core/simd_math.h"
#include "../cuda/elementwise_math.h"
#include "../cuda/launch.h" /* MAGNA_COLSUM_MIN_ROWS */
#include "gemm_bf16.h"
#include "matmul.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct unary_args {
    const float *x, *y, *dy;
    float *out, *dx;
    float a; /* the op's scalar: slope, s, p */
} unary_args;

#define FWD(name, expr)                                                                                              \
    static magna_status name##_forward(magna_graph *g, magna_node *n) {                                              \
        (void)g;                                                                                                     \
        const float *x = fval(n->in[0]);                                                                             \
        float *y = fval(n);                                                                                          \
        const float a = n->fp[0];                                                                                    \
        (void)a;                                                                                                     \
        const int64_t count = n->numel;                                                                              \
        PARALLEL_FOR(count > PAR_MIN, i, count, const float v = x[i]; y[i] = (expr););                              \
        return MAGNA_OK;                                                                                             \
    }

/* expr may use v (input), o (output), d (upstream gradient), a (scalar). */
#define BWD(name, expr)                                                                                              \
    static void name##_backward(magna_graph *g, magna_node *n) {                                                     \
        (void)g;                                                                                                     \
        float *dx = n->in[0]->grad;                                                                                  \
        if (!dx) return;                                                                                             \
        const float *x = fval(n->in[0]), *y = fval(n), *dy = n->grad;                                               \
        const float a = n->fp[0];                                                                                    \
        (void)a, (void)x, (void)y;                                                                                   \
        const int64_t count = n->numel;                                                                              \
        if (grad_assigns(n, 0))                                                                                      \
            PARALLEL_FOR(count > PAR_MIN, i, count, const float d = dy[i]; (void)d; dx[i] = (expr););                \
        else                                                                                                         \
            PARALLEL_FOR(count > PAR_MIN, i, count, const float d = dy[i]; (void)d; dx[i] += (expr););               \
    }

#define DEF(name, flags)                                                                                             \
    const magna_op_def op_def_##name = {#name, (flags) | OPF_GRAD_ASSIGN, infer_like_input, name##_forward,         \
                                        name##_backward};

static inline float sigmoidf(float v) { return v >= 0 ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v)); }

/* y = x s */
FWD(scale, v * a)
BWD(scale, d * a)
DEF(scale, 0)
/* y = x + s */
FWD(add_scalar, v + a)
BWD(add_scalar, d)
DEF(add_scalar, 0)
/* y = x^p, dy/dx = p x^(p-1) */
FWD(pow_scalar, powf(v, a))
BWD(pow_scalar, d * a * powf(x[i], a - 1.0f))
DEF(pow_scalar, OPF_BWD_INPUTS)
/* y = |x|, dy/dx = sign(x) (0 at 0) */
FWD(abs, fabsf(v))
BWD(abs, x[i] > 0 ? d : x[i] < 0 ? -d : 0.0f)
DEF(abs, OPF_BWD_INPUTS)
/* y = max(x, 0) */
FWD(relu_values, v > 0 ? v : 0.0f)
/* A ReLU fused into the conv before it (alias_input, plan.c) has its value already: it is that conv's. */
static magna_status relu_forward(magna_graph *g, magna_node *n) {
    return n->alias_input ? MAGNA_OK : relu_values_forward(g, n);
}
BWD(relu_mask, y[i] > 0 ? d : 0.0f)
/* ... and when a fused max pool follows (skip_backward), that pool's backward applies this mask itself. */
static void relu_backward(magna_graph *g, magna_node *n) {
    if (!n->skip_backward) relu_mask_backward(g, n);
}
DEF(relu, OPF_BWD_OUTPUT)
/* y = x for x > 0, slope x otherwise */
FWD(leaky_relu, v > 0 ? v : a * v)
BWD(leaky_relu, x[i] > 0 ? d : a * d)
DEF(leaky_relu, OPF_BWD_INPUTS)
/* y = 1 / (1 + e^-x), dy/dx = y (1 - y) */
FWD(sigmoid, sigmoidf(v))
BWD(sigmoid, d * y[i] * (1.0f - y[i]))
DEF(sigmoid, OPF_BWD_OUTPUT)
/* dy/dx = 1 - y^2 */
FWD(tanh, tanhf(v))
BWD(tanh, d * (1.0f - y[i] * y[i]))
DEF(tanh, OPF_BWD_OUTPUT)
/* y = x Phi(x), dy/dx = Phi(x) + x phi(x). glibc's erff is scalar and took a fifth of a GPT's step, so Phi
 * comes from magna_em_normal_cdf (src/cuda/elementwise_math.h: erf's rational fit, no exp, which the CUDA
 * kernels share). On a CPU with AVX-512 and avx512_bf16 one pass does everything per 16 elements (gelu_*_512:
 * widen bf16 x and dy, Phi and phi in registers, round into bf16, add a bias's column sums), as the same math on
 * 16 lanes (src/core/simd_math.h); elsewhere (or MAGNA_GELU_KERNEL=portable, for tests) the portable path takes
 * GELU_CHUNK elements at a time through the stack so every loop vectorises. */
#define GELU_CHUNK 256

/* The one-pass kernels, unless told otherwise. */
static bool gelu_fast(void) {
    const char *env = getenv("MAGNA_GELU_KERNEL");
    return magna_panel_available(true) && !(env && strcmp(env, "portable") == 0);
}

#define T512GELU __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma,avx512bf16")))

/* 16 floats at i (masked lanes 0): f32's, or h's bf16 widened exactly when h is not NULL */
T512GELU static inline __m512 gelu_load(const float *f, const uint16_t *h, int64_t i, __mmask16 m) {
    return h ? magna_load_bf16x16(h + i, m) : _mm512_maskz_loadu_ps(m, f + i);
}

/* y[0..n) = GELU(x), from x or x16, into y or (rounded) y16 */
T512GELU static void gelu_forward_512(const float *x, const uint16_t *x16, float *y, uint16_t *y16, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = magna_mask16(n - i);
        const __m512 v = gelu_load(x, x16, i, m), r = _mm512_mul_ps(v, magna_normal_cdf512(v));
        if (y16)
            _mm256_mask_storeu_epi16(y16 + i, m, (__m256i)_mm512_cvtneps_pbh(r));
        else
            _mm512_mask_storeu_ps(y + i, m, r);
    }
}

/* d = dy GELU'(x) over [0, n): into dc16 rounded (sum[j] += d[j] when sum), or dx (= when assign, else +=) */
T512GELU static void gelu_backward_512(const float *x, const uint16_t *x16, const float *dy, const uint16_t *dy16,
                                       float *dx, bool assign, uint16_t *dc16, float *sum, int64_t n) {
    const __m512 minus_half = _mm512_set1_ps(-0.5f), inv_sqrt_2pi = _mm512_set1_ps(0.39894228040143268f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = magna_mask16(n - i);
        const __m512 v = gelu_load(x, x16, i, m), g = gelu_load(dy, dy16, i, m);
        const __m512 pdf = _mm512_mul_ps(magna_exp512(_mm512_mul_ps(minus_half, _mm512_mul_ps(v, v))), inv_sqrt_2pi);
        const __m512 d = _mm512_mul_ps(g, _mm512_fmadd_ps(v, pdf, magna_normal_cdf512(v)));
        if (dc16) {
            _mm256_mask_storeu_epi16(dc16 + i, m, (__m256i)_mm512_cvtneps_pbh(d));
            if (sum) _mm512_mask_storeu_ps(sum + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, sum + i), d));
        } else {
            _mm512_mask_storeu_ps(dx + i, m, assign ? d : _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), d));
        }
    }
}

/* cdf[i] = Phi(x[i]), and pdf[i] = phi(x[i]) when pdf is not NULL; n <= GELU_CHUNK. */
ISA_CLONES static void gelu_cdf(const float *restrict x, float *restrict cdf, float *restrict pdf, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) cdf[i] = magna_em_normal_cdf(x[i]);
    if (!pdf) return;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) pdf[i] = -0.5f * x[i] * x[i];
    magna_vexp(pdf, pdf, n);
#pragma omp simd
    for (int64_t i = 0; i < n; i++) pdf[i] *= 0.39894228040143268f;
}

ISA_CLONES static void gelu_forward_chunk(const float *x, float *y, int64_t n) {
    float cdf[GELU_CHUNK];
    gelu_cdf(x, cdf, NULL, n);
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * cdf[i];
}

ISA_CLONES static void gelu_backward_chunk(const float *x, const float *dy, float *dx, int64_t n, bool assign) {
    float cdf[GELU_CHUNK], pdf[GELU_CHUNK];
    gelu_cdf(x, cdf, pdf, n);
    if (assign) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (cdf[i] + x[i] * pdf[i]);
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * (cdf[i] + x[i] * pdf[i]);
    }
}

/* x + at as float32: x itself, or (x16, when the matmul before the GELU wrote its output in bf16: out16_to, plan.c)
 * those len values widened into tmp. */
static const float *gelu_f32(const float *x, const uint16_t *x16, int64_t at, int64_t len, float *tmp) {
    if (!x16) return x + at;
    magna_from_bf16_row(tmp, x16 + at, len);
    return tmp;
}

/* The GELU's input as bf16 when the dense matmul before it wrote it so (directly or through its fused bias add, the
 * add's value being the matmul's buffer), else NULL. */
static const uint16_t *gelu_x16(const magna_node *n) {
    const magna_node *in = n->in[0], *owner = in->alias_input ? in->in[0] : in;
    return owner->value16 ? (const uint16_t *)fval(in) : NULL;
}

/* Writes y, or only its bf16 rounding into y16 (the matmul after it reads that, bf16_for: plan.c). */
static magna_status gelu_forward(magna_graph *g, magna_node *n) {
    (void)g;
    const float *x = fval(n->in[0]);
    const uint16_t *x16 = gelu_x16(n);
    float *y = fval(n);
    uint16_t *y16 = n->bf16_for ? magna_matmul_a16_for(n) : NULL;
    const int64_t count = n->numel, chunks = (count + GELU_CHUNK - 1) / GELU_CHUNK;
    const bool fast = gelu_fast();
    PARALLEL_FOR(count > PAR_MIN / 4, c, chunks, {
        const int64_t i = c * GELU_CHUNK, len = count - i < GELU_CHUNK ? count - i : GELU_CHUNK;
        if (fast) {
            gelu_forward_512(x16 ? NULL : x + i, x16 ? x16 + i : NULL, y16 ? NULL : y + i, y16 ? y16 + i : NULL, len);
        } else {
            float xs[GELU_CHUNK];
            const float *xc = gelu_f32(x, x16, i, len, xs);
            if (y16) {
                float chunk[GELU_CHUNK];
                gelu_forward_chunk(xc, chunk, len);
                magna_to_bf16_row(y16 + i, chunk, len);
            } else {
                gelu_forward_chunk(xc, y + i, len);
            }
        }
    });
    return MAGNA_OK;
}

/* Workspace: in bf16 the bias sums' row parts (gelu_backward_dc16); on CUDA the partial rows, one per slice of
 * MAGNA_COLSUM_MIN_ROWS rows up to 1024, of a fused bias + GELU's backward (src/cuda/fuse.c). */
static magna_status gelu_infer(magna_graph *g, magna_node *n) {
    magna_status st = infer_like_input(g, n);
    const int64_t cols = n->ndim ? n->shape[n->ndim - 1] : 1;
    size_t parts = g->bf16 ? MAGNA_COLSUM_PARTS : 0;
    if (g->device == MAGNA_DEVICE_CUDA && cols > 0) {
        const int64_t slices = (n->numel / cols + MAGNA_COLSUM_MIN_ROWS - 1) / MAGNA_COLSUM_MIN_ROWS;
        parts = (size_t)(slices < 1024 ? slices : 1024) > parts ? (size_t)(slices < 1024 ? slices : 1024) : parts;
    }
    n->workspace_bytes = st == MAGNA_OK ? parts * (size_t)cols * sizeof(float) : 0;
    return st;
}

/* dC = dy GELU'(x) [rows, cols] in bf16 for the matmul before the GELU (magna_matmul_dc16_for), and bias[j] (+)=
 * its column sums, as magna_to_bf16_colsum takes them (partial: its MAGNA_COLSUM_PARTS rows of scratch). */
static void gelu_backward_dc16(const float *x, const uint16_t *x16, const float *dy, const uint16_t *dy16,
                               uint16_t *dc16, int64_t rows, int64_t cols, float *bias, bool assign, float *partial) {
    const bool fast = gelu_fast();
    PARALLEL_FOR(rows * cols > PAR_MIN / 4, p, MAGNA_COLSUM_PARTS, {
        float *sum = bias ? partial + p * cols : NULL;
        if (sum) memset(sum, 0, (size_t)cols * sizeof *sum);
        float xs[GELU_CHUNK], ds[GELU_CHUNK], d[GELU_CHUNK];
        for (int64_t r = rows * p / MAGNA_COLSUM_PARTS; r < rows * (p + 1) / MAGNA_COLSUM_PARTS; r++) {
            const int64_t at = r * cols;
            if (fast) {
                gelu_backward_512(x16 ? NULL : x + at, x16 ? x16 + at : NULL, dy16 ? NULL : dy + at,
                                  dy16 ? dy16 + at : NULL, NULL, false, dc16 + at, sum, cols);
                continue;
            }
            for (int64_t j = 0; j < cols; j += GELU_CHUNK) {
                const int64_t len = cols - j < GELU_CHUNK ? cols - j : GELU_CHUNK;
                gelu_backward_chunk(gelu_f32(x, x16, at + j, len, xs), gelu_f32(dy, dy16, at + j, len, ds), d, len,
                                    true);
                if (sum)
                    magna_to_bf16_row_sum(dc16 + at + j, d, len, sum + j);
                else
                    magna_to_bf16_row(dc16 + at + j, d, len);
            }
        }
    });
    if (bias) magna_colsum_combine(bias, partial, MAGNA_COLSUM_PARTS, cols, assign);
}

/* dx (+)= dy GELU'(x); x and dy in bf16 where the matmuls around it wrote them so (out16_to, da16_ok), dx in bf16
 * where the matmul before it reads it so (dc16_by). */
static void gelu_backward(magna_graph *g, magna_node *n) {
    magna_node *in = n->in[0];
    float *dx = in->grad;
    if (!dx) return;
    const float *x = fval(in), *dy = n->grad;
    const uint16_t *x16 = gelu_x16(n), *dy16 = n->grad16 ? (const uint16_t *)dy : NULL;
    float *bias = NULL;
    bool bias_assign = false;
    uint16_t *dc16 = magna_matmul_dc16_for(n, 0, &bias, &bias_assign);
    in->grad16 = dc16 != NULL;
    if (dc16) {
        const int64_t cols = n->shape[n->ndim - 1];
        gelu_backward_dc16(x, x16, dy, dy16, dc16, n->numel / cols, cols, bias, bias_assign, (float *)g->workspace);
        return;
    }
    const int64_t count = n->numel, chunks = (count + GELU_CHUNK - 1) / GELU_CHUNK;
    const bool assign = grad_assigns(n, 0), fast = gelu_fast();
    PARALLEL_FOR(count > PAR_MIN / 4, c, chunks, {
        const int64_t i = c * GELU_CHUNK, len = count - i < GELU_CHUNK ? count - i : GELU_CHUNK;
        if (fast) {
            gelu_backward_512(x16 ? NULL : x + i, x16 ? x16 + i : NULL, dy16 ? NULL : dy + i, dy16 ? dy16 + i : NULL,
                              dx + i, assign, NULL, NULL, len);
        } else {
            float xs[GELU_CHUNK], ds[GELU_CHUNK];
            gelu_backward_chunk(gelu_f32(x, x16, i, len, xs), gelu_f32(dy, dy16, i, len, ds), dx + i, len, assign);
        }
    });
}
const magna_op_def op_def_gelu = {"gelu", OPF_BWD_INPUTS | OPF_GRAD_ASSIGN, gelu_infer, gelu_forward, gelu_backward};

/* y = x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3) */
#define GELU_K 0.7978845608028654f
static inline float gelu_tanh_grad(float v) {
    float u = GELU_K * (v + 0.044715f * v * v * v), t = tanhf(u);
    return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
}
FWD(gelu_tanh, 0.5f * v * (1.0f + tanhf(GELU_K * (v + 0.044715f * v * v * v))))
BWD(gelu_tanh, d * gelu_tanh_grad(x[i]))
DEF(gelu_tanh, OPF_BWD_INPUTS)
FWD(exp, expf(v))
BWD(exp, d * y[i])
DEF(exp, OPF_BWD_OUTPUT)
FWD(log, logf(v))
BWD(log, d / x[i])
DEF(log, OPF_BWD_INPUTS)
/* dy/dx = 1 / (2 y) */
FWD(sqrt, sqrtf(v))
BWD(sqrt, d * 0.5f / y[i])
DEF(sqrt, OPF_BWD_OUTPUT)

static magna_node *unary(magna_graph *g, op_id op, magna_node *x, float a) {
    if (!g) return NULL;
    return graph_add_node(g, op, 1, &x, NULL, 0, &a, 1);
}

magna_node *magna_scale(magna_graph *g, magna_node *x, float s) { return unary(g, OP_SCALE, x, s); }
magna_node *magna_add_scalar(magna_graph *g, magna_node *x, float s) { return unary(g, OP_ADD_SCALAR, x, s); }
magna_node *magna_pow_scalar(magna_graph *g, magna_node *x, float p) { return unary(g, OP_POW_SCALAR, x, p); }
magna_node *magna_abs(magna_graph *g, magna_node *x) { return unary(g, OP_ABS, x, 0); }
magna_node *magna_relu(magna_graph *g, magna_node *x) { return unary(g, OP_RELU, x, 0); }
magna_node *magna_leaky_relu(magna_graph *g, magna_node *x, float slope) { return unary(g, OP_LEAKY_RELU, x, slope); }
magna_node *magna_sigmoid(magna_graph *g, magna_node *x) { return unary(g, OP_SIGMOID, x, 0); }
magna_node *magna_tanh(magna_graph *g, magna_node *x) { return unary(g, OP_TANH, x, 0); }
magna_node *magna_gelu(magna_graph *g, magna_node *x) { return unary(g, OP_GELU, x, 0); }
magna_node *magna_gelu_tanh(magna_graph *g, magna_node *x) { return unary(g, OP_GELU_TANH, x, 0); }
magna_node *magna_exp(magna_graph *g, magna_node *x) { return unary(g, OP_EXP, x, 0); }
magna_node *magna_log(magna_graph *g, magna_node *x) { return unary(g, OP_LOG, x, 0); }
magna_node *magna_sqrt(magna_graph *g, magna_node *x) { return unary(g, OP_SQRT, x, 0); }
