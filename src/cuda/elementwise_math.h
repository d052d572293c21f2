/* elementwise_math.h — the per-element and per-row math of the CUDA kernels, written once for both sides:
 * nvcc compiles it into the kernels (the .cu files beside it) as __host__ __device__ functions, and gcc into the
 * CPU test (tests/test_cuda_math.c) that checks it against the graph's CPU ops on fresh random inputs.
 * So a GPU kernel's arithmetic is tested here, without a GPU; what only a GPU can test is the launch and
 * the memory traffic around it (make gpu-check).
 *
 * Only float32 arithmetic: bf16 kernels load and store bf16 but compute in these functions. The formulas
 * are the CPU ops' (src/ops/unary.c, loss.c, layer_norm.c, src/optim/optimizer.c); the row reductions are
 * written as a state, a push of one element and a merge of two states, which is what a warp or block
 * reduction needs (any split of a row, merged in any tree, gives the row's answer). */
#ifndef MAGNA_CUDA_ELEMENTWISE_MATH_H
#define MAGNA_CUDA_ELEMENTWISE_MATH_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define MAGNA_HD static __host__ __device__ __forceinline__
#else
#define MAGNA_HD static inline
#endif

/* ---- activations: forward from x; backward adds nothing, it returns dL/dx from dL/dy -------------- */

MAGNA_HD float magna_em_relu(float x) { return x > 0.0f ? x : 0.0f; }
/* from the output, as the CPU op (y > 0 exactly where x > 0) */
MAGNA_HD float magna_em_relu_backward(float y, float dy) { return y > 0.0f ? dy : 0.0f; }

/* 1 / (1 + e^-x) without overflow for large |x| */
MAGNA_HD float magna_em_sigmoid(float x) {
    return x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x));
}
MAGNA_HD float magna_em_sigmoid_backward(float y, float dy) { return dy * y * (1.0f - y); }

/* Phi(x), the normal CDF, = (1 + erf(x / sqrt 2)) / 2, with erf from the rational fit Eigen and XLA use for
 * float: x P(x^2) / Q(x^2), x clamped to [-4, 4] (erf(4) is 1 in float), absolute error about 1e-7. Being
 * absolute, far in the left tail Phi's relative error grows (x = -4: 1e-3 of Phi, 1e-7 of GELU's scale), as
 * PyTorch's 0.5 (1 + erf) has it; what it buys is no exp: the CPU GELU's forward took 40% less time than with
 * the erfc fit it used before. The CPU GELU (src/ops/unary.c) computes Phi here too. */
/* erf's coefficients: P from x^0 up, Q likewise (the AVX-512 GELU, src/core/simd_math.h, reads them too) */
#define MAGNA_EM_ERF_P0 -1.60960333262415e-02f
#define MAGNA_EM_ERF_P1 -2.95459980854025e-03f
#define MAGNA_EM_ERF_P2 -7.34990630326855e-04f
#define MAGNA_EM_ERF_P3 -5.69250639462346e-05f
#define MAGNA_EM_ERF_P4 -2.10102402082508e-06f
#define MAGNA_EM_ERF_P5 2.77068142495902e-08f
#define MAGNA_EM_ERF_P6 -2.72614225801306e-10f
#define MAGNA_EM_ERF_Q0 -1.42647390514189e-02f
#define MAGNA_EM_ERF_Q1 -7.37332916720468e-03f
#define MAGNA_EM_ERF_Q2 -1.68282697438203e-03f
#define MAGNA_EM_ERF_Q3 -2.13374055278905e-04f
#define MAGNA_EM_ERF_Q4 -1.45660718464996e-05f
MAGNA_HD float magna_em_normal_cdf(float x) {
    float v = x * 0.70710678118654752f;
    v = v > 4.0f ? 4.0f : v < -4.0f ? -4.0f : v; /* NaN passes */
    const float v2 = v * v;
    const float p =
        MAGNA_EM_ERF_P0 +
        v2 * (MAGNA_EM_ERF_P1 +
              v2 * (MAGNA_EM_ERF_P2 +
                    v2 * (MAGNA_EM_ERF_P3 + v2 * (MAGNA_EM_ERF_P4 + v2 * (MAGNA_EM_ERF_P5 + v2 * MAGNA_EM_ERF_P6)))));
    const float q =
        MAGNA_EM_ERF_Q0 +
        v2 * (MAGNA_EM_ERF_Q1 + v2 * (MAGNA_EM_ERF_Q2 + v2 * (MAGNA_EM_ERF_Q3 + v2 * MAGNA_EM_ERF_Q4)));
    return 0.5f + 0.5f * (v * p / q);
}
MAGNA_HD float magna_em_normal_pdf(float x) { return 0.39894228040143268f * expf(-0.5f * x * x); }
/* exact GELU: x Phi(x); dy/dx = Phi(x) + x phi(x) */
MAGNA_HD float magna_em_gelu(float x) { return x * magna_em_normal_cdf(x); }
MAGNA_HD float magna_em_gelu_backward(float x, float dy) {
    return dy * (magna_em_normal_cdf(x) + x * magna_em_normal_pdf(x));
}

/* ---- Adam / AdamW: one element of the flat parameter buffer ----------------------------------------
 * torch.optim.Adam(W)'s update. The constants depend on the step only, so the host makes them once a step
 * and every thread reads them: step = lr / (1 - beta1^t), rbc2 = 1 / sqrt(1 - beta2^t), keep = 1 - lr wd
 * for AdamW's decoupled decay (1 for Adam), l2 = wd for Adam's decay through the gradient (0 for AdamW). */
typedef struct magna_em_adam {
    float beta1, beta2, step, rbc2, eps, keep, l2;
} magna_em_adam;

MAGNA_HD magna_em_adam magna_em_adam_consts(float lr, float beta1, float beta2, float eps, float weight_decay,
                                            int decoupled, int64_t t) {
    const float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
    magna_em_adam k;
    k.beta1 = beta1, k.beta2 = beta2, k.step = lr / bc1, k.rbc2 = 1.0f / sqrtf(bc2), k.eps = eps;
    k.keep = decoupled ? 1.0f - lr * weight_decay : 1.0f;
    k.l2 = decoupled ? 0.0f : weight_decay;
    return k;
}

/* w, m, v of one element, updated in place from its gradient g */
MAGNA_HD void magna_em_adam_update(const magna_em_adam *k, float *w, float *m, float *v, float g) {
    const float gi = g + k->l2 * *w;
    const float mi = k->beta1 * *m + (1.0f - k->beta1) * gi, vi = k->beta2 * *v + (1.0f - k->beta2) * gi * gi;
    *m = mi, *v = vi;
    *w = *w * k->keep - k->step * mi / (sqrtf(vi) * k->rbc2 + k->eps);
}

/* torch.optim.SGD's update of one element: weight decay through the gradient, then momentum (the buffer
 * starts as the first gradient: `first` on step 1) and Nesterov's look-ahead. m is unused without momentum. */
MAGNA_HD void magna_em_sgd_update(float lr, float momentum, float weight_decay, int nesterov, int first, float *w,
                                  float *m, float g) {
    float gi = g + weight_decay * *w;
    if (momentum > 0.0f) {
        *m = first ? gi : momentum * *m + gi;
        gi = nesterov ? gi + momentum * *m : *m;
    }
    *w -= lr * gi;
}

/* ---- softmax + cross-entropy of one row --------------------------------------------------------------
 * The running (max, sum of e^(x - max)) of a row: push one logit, merge two partial rows. An empty state
 * has max = -inf and sum = 0 and merges as the identity. */
typedef struct magna_em_maxsum {
    float max, sum;
} magna_em_maxsum;

MAGNA_HD magna_em_maxsum magna_em_maxsum_empty(void) {
    magna_em_maxsum s;
    s.max = -INFINITY, s.sum = 0.0f;
    return s;
}
MAGNA_HD magna_em_maxsum magna_em_maxsum_merge(magna_em_maxsum a, magna_em_maxsum b) {
    if (a.sum == 0.0f) return b; /* empty (a row's sum is >= 1 once it holds a finite logit) */
    if (b.sum == 0.0f) return a;
    magna_em_maxsum r;
    r.max = a.max > b.max ? a.max : b.max;
    r.sum = a.sum * expf(a.max - r.max) + b.sum * expf(b.max - r.max);
    return r;
}
MAGNA_HD magna_em_maxsum magna_em_maxsum_push(magna_em_maxsum s, float x) {
    magna_em_maxsum one;
    one.max = x, one.sum = 1.0f;
    return magna_em_maxsum_merge(s, one);
}
MAGNA_HD float magna_em_logsumexp(magna_em_maxsum s) { return s.max + logf(s.sum); }

#define MAGNA_EM_IGNORE_LABEL (-1) /* MAGNA_IGNORE_LABEL of magna/ops.h, for the kernels that do not include it */

/* One row's loss, logsumexp(x) - x[label], from its merged state; 0 for an ignored label (< 0). */
MAGNA_HD float magna_em_xent_loss(magna_em_maxsum s, const float *x, int32_t label) {
    return label < 0 ? 0.0f : magna_em_logsumexp(s) - x[label];
}
/* dL/dx[j] of that row's loss times `scale` (1 / counted rows for the mean): (softmax_j - [j == label]) */
MAGNA_HD float magna_em_xent_grad(magna_em_maxsum s, float xj, int64_t j, int32_t label, float scale) {
    if (label < 0) return 0.0f;
    return (expf(xj - s.max) / s.sum - (j == label ? 1.0f : 0.0f)) * scale;
}

/* ---- layer norm: a row's mean and 1/std ---------------------------------------------------------------
 * Welford's running count, mean and sum of squared deviations, merged by Chan's formula, so the statistics
 * of a split row come out as a two-pass sum's (the CPU op's) without a second read of the row. */
typedef struct magna_em_welford {
    float n, mean, m2;
} magna_em_welford;

MAGNA_HD magna_em_welford magna_em_welford_empty(void) {
    magna_em_welford s;
    s.n = 0.0f, s.mean = 0.0f, s.m2 = 0.0f;
    return s;
}
MAGNA_HD magna_em_welford magna_em_welford_push(magna_em_welford s, float x) {
    s.n += 1.0f;
    const float d = x - s.mean;
    s.mean += d / s.n;
    s.m2 += d * (x - s.mean);
    return s;
}
MAGNA_HD magna_em_welford magna_em_welford_merge(magna_em_welford a, magna_em_welford b) {
    if (b.n == 0.0f) return a;
    if (a.n == 0.0f) return b;
    magna_em_welford r;
    r.n = a.n + b.n;
    const float d = b.mean - a.mean, fb = b.n / r.n;
    r.mean = a.mean + d * fb;
    r.m2 = a.m2 + b.m2 + d * d * a.n * fb;
    return r;
}
/* the row's biased variance, as PyTorch's layer norm: rstd = 1 / sqrt(m2 / D + eps) */
MAGNA_HD float magna_em_layer_norm_rstd(magna_em_welford s, float eps) { return 1.0f / sqrtf(s.m2 / s.n + eps); }
/* out = (x - mean) rstd gamma + beta */
MAGNA_HD float magna_em_layer_norm_out(float x, float mean, float rstd, float gamma, float beta) {
    return (x - mean) * rstd * gamma + beta;
}
/* dL/dx of one element, given the row's sums of dnorm = dout gamma and of dnorm norm (a second
 * reduction over the row):  rstd (dnorm - mean(dnorm) - norm mean(dnorm norm)). */
MAGNA_HD float magna_em_layer_norm_dx(float x, float dout, float gamma, float mean, float rstd, float dnorm_mean,
                                      float dnorm_norm_mean) {
    const float norm = (x - mean) * rstd;
    return rstd * (dout * gamma - dnorm_mean - norm * dnorm_norm_mean);
}

/* ---- the other unary ops and the scalar ops (src/ops/unary.c) ---------------------------------------
 * One forward y = f(x; a) and one backward dL/dx from x, y, dL/dy and a (the op's scalar: s, p, slope).
 * A backward reads x only for ops whose CPU op keeps the inputs (OPF_BWD_INPUTS) and y only for those that
 * keep the output: the planner may have reused the other's memory, and the kernels pass it anyway. */
typedef enum magna_em_unary_op {
    MAGNA_EM_RELU, MAGNA_EM_SIGMOID, MAGNA_EM_GELU, /* the order of magna_cuda_act (kernels.h) */
    MAGNA_EM_SCALE, MAGNA_EM_ADD_SCALAR, MAGNA_EM_POW_SCALAR, MAGNA_EM_ABS, MAGNA_EM_LEAKY_RELU, MAGNA_EM_TANH,
    MAGNA_EM_GELU_TANH, MAGNA_EM_EXP, MAGNA_EM_LOG, MAGNA_EM_SQRT,
    MAGNA_EM_UNARY_COUNT
} magna_em_unary_op;

#define MAGNA_EM_GELU_K 0.7978845608028654f /* sqrt(2 / pi) */

MAGNA_HD float magna_em_unary(int op, float x, float a) {
    switch (op) {
    case MAGNA_EM_RELU: return magna_em_relu(x);
    case MAGNA_EM_SIGMOID: return magna_em_sigmoid(x);
    case MAGNA_EM_GELU: return magna_em_gelu(x);
    case MAGNA_EM_SCALE: return x * a;
    case MAGNA_EM_ADD_SCALAR: return x + a;
    case MAGNA_EM_POW_SCALAR: return powf(x, a);
    case MAGNA_EM_ABS: return fabsf(x);
    case MAGNA_EM_LEAKY_RELU: return x > 0.0f ? x : a * x;
    case MAGNA_EM_TANH: return tanhf(x);
    case MAGNA_EM_GELU_TANH: return 0.5f * x * (1.0f + tanhf(MAGNA_EM_GELU_K * (x + 0.044715f * x * x * x)));
    case MAGNA_EM_EXP: return expf(x);
    case MAGNA_EM_LOG: return logf(x);
    default: return sqrtf(x);
    }
}

MAGNA_HD float magna_em_unary_backward(int op, float x, float y, float dy, float a) {
    switch (op) {
    case MAGNA_EM_RELU: return magna_em_relu_backward(y, dy);
    case MAGNA_EM_SIGMOID: return magna_em_sigmoid_backward(y, dy);
    case MAGNA_EM_GELU: return magna_em_gelu_backward(x, dy);
    case MAGNA_EM_SCALE: return dy * a;
    case MAGNA_EM_ADD_SCALAR: return dy;
    case MAGNA_EM_POW_SCALAR: return dy * a * powf(x, a - 1.0f);
    case MAGNA_EM_ABS: return x > 0.0f ? dy : x < 0.0f ? -dy : 0.0f;
    case MAGNA_EM_LEAKY_RELU: return x > 0.0f ? dy : a * dy;
    case MAGNA_EM_TANH: return dy * (1.0f - y * y);
    case MAGNA_EM_GELU_TANH: {
        const float u = MAGNA_EM_GELU_K * (x + 0.044715f * x * x * x), t = tanhf(u);
        return dy * (0.5f * (1.0f + t) +
                     0.5f * x * (1.0f - t * t) * MAGNA_EM_GELU_K * (1.0f + 3.0f * 0.044715f * x * x));
    }
    case MAGNA_EM_EXP: return dy * y;
    case MAGNA_EM_LOG: return dy / x;
    default: return dy * 0.5f / y;
    }
}

/* ---- binary ops with broadcasting (src/ops/binary.c) ------------------------------------------------- */
typedef enum magna_em_binary_op { MAGNA_EM_ADD, MAGNA_EM_SUB, MAGNA_EM_MUL, MAGNA_EM_DIV, MAGNA_EM_POW } magna_em_binary_op;

MAGNA_HD float magna_em_binary(int op, float x, float y) {
    switch (op) {
    case MAGNA_EM_ADD: return x + y;
    case MAGNA_EM_SUB: return x - y;
    case MAGNA_EM_MUL: return x * y;
    case MAGNA_EM_DIV: return x / y;
    default: return powf(x, y);
    }
}
/* d out / d operand `which` (0: x, 1: y) at x, y and the output o */
MAGNA_HD float magna_em_binary_partial(int op, int which, float x, float y, float o) {
    switch (op) {
    case MAGNA_EM_ADD: return 1.0f;
    case MAGNA_EM_SUB: return which == 0 ? 1.0f : -1.0f;
    case MAGNA_EM_MUL: return which == 0 ? y : x;
    case MAGNA_EM_DIV: return which == 0 ? 1.0f / y : -x / (y * y);
    default: return which == 0 ? y * powf(x, y - 1.0f) : o * logf(x);
    }
}

/* ---- max with its argument, as a reduction state (src/ops/reduce.c) ---------------------------------
 * The CPU scans a run from its first element and moves only to a strictly greater one: the result is the
 * first element when it is NaN, else the first maximum among the values that are not NaN. A state keeps
 * the best non-NaN value and its index in the run (-1: none yet); merging prefers the greater value and,
 * on a tie, the smaller index, so any split merged in any order gives the scan's index; the caller then
 * checks the run's first element for NaN (magna_em_argmax_final). */
typedef struct magna_em_argmax {
    float val;
    int idx;
} magna_em_argmax;

MAGNA_HD magna_em_argmax magna_em_argmax_empty(void) {
    magna_em_argmax s;
    s.val = -INFINITY, s.idx = -1;
    return s;
}
MAGNA_HD magna_em_argmax magna_em_argmax_merge(magna_em_argmax a, magna_em_argmax b) {
    if (b.idx < 0) return a;
    if (a.idx < 0) return b;
    return b.val > a.val || (b.val == a.val && b.idx < a.idx) ? b : a;
}
MAGNA_HD magna_em_argmax magna_em_argmax_push(magna_em_argmax s, float x, int idx) {
    if (x != x) return s; /* NaN */
    magna_em_argmax one;
    one.val = x, one.idx = idx;
    return magna_em_argmax_merge(s, one);
}
/* the run's answer, given its first element */
MAGNA_HD magna_em_argmax magna_em_argmax_final(magna_em_argmax s, float first) {
    if (s.idx < 0 || first != first) s.val = first, s.idx = 0;
    return s;
}

/* ---- the counter-based random numbers (src/core/core.c's magna_rand_*, which calls these) -----------
 * splitmix64's finaliser chained over (seed, stream, counter): any element's draw computed on its own, so
 * a GPU thread and the CPU draw the same number for the same element. */
MAGNA_HD uint64_t magna_em_mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
MAGNA_HD uint64_t magna_em_rand_u64(uint64_t seed, uint64_t stream, uint64_t counter) {
    return magna_em_mix64(magna_em_mix64(magna_em_mix64(seed) ^ stream) ^ counter);
}
MAGNA_HD float magna_em_rand_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
    return (float)(magna_em_rand_u64(seed, stream, counter) >> 40) * (1.0f / 16777216.0f);
}
/* Dropout's mask (src/ops/dropout.c): element i of the node is kept when its draw is >= p. The seed and
 * stream come from the graph's seed, the node's id and the step (magna_em_dropout_seed/_stream). */
MAGNA_HD uint64_t magna_em_dropout_seed(uint64_t graph_seed) { return graph_seed ^ 0xd1b54a32d192ed03ull; }
MAGNA_HD uint64_t magna_em_dropout_stream(int node_id, uint64_t mask_step) {
    return ((uint64_t)node_id << 40) ^ mask_step;
}
MAGNA_HD int magna_em_dropout_kept(uint64_t seed, uint64_t stream, int64_t i, float p) {
    return magna_em_rand_uniform(seed, stream, (uint64_t)i) >= p;
}

/* ---- binary cross-entropy from logits (src/ops/loss.c) ----------------------------------------------- */
/* one element's loss max(x, 0) - x t + log(1 + e^-|x|) */
MAGNA_HD float magna_em_bce(float x, float t) { return (x > 0.0f ? x : 0.0f) - x * t + log1pf(expf(-fabsf(x))); }

#endif
