/* layer_norm.c — normalisation over the last axis, with an optional per-feature scale and shift.
 *
 * Inputs: in[0] = x, then gamma if given, then beta if given; ip[0] and ip[1] say which are there,
 * fp[0] is eps. Forward keeps each row's mean and 1/std in `saved` ([2, N] floats) for backward.
 * Backward follows llm.c's layernorm_backward: one pass per row for dx, with dgamma and dbeta summed
 * into partial rows in the workspace, one per fixed part of the rows (LN_PARTS), added up after in part
 * order: rows run in parallel without atomics, and the sums are the same on any thread count. */
#include "common.h"
#include "gemm_bf16.h"
#include "matmul.h"
#include "../cuda/launch.h" /* MAGNA_COLSUM_MIN_ROWS */

#include <math.h>
#include <string.h>

/* Parts of the rows whose dgamma and dbeta partials backward adds in order: enough for 32 threads to share. */
enum { LN_PARTS = 32 };

/* Floats of workspace one part's dgamma and dbeta partials take: 2 D, rounded up to a cache line. */
static size_t ln_partial_floats(int64_t D) { return ((size_t)(2 * D) + 15) & ~(size_t)15; }

static magna_node *ln_gamma(const magna_node *n) { return n->ip[0] ? n->in[1] : NULL; }
static magna_node *ln_beta(const magna_node *n) { return n->ip[1] ? n->in[1 + (n->ip[0] ? 1 : 0)] : NULL; }

/* x is [..., D], gamma and beta are [D] -> out is [..., D]; saved: mean [N] and rstd [N], N = numel / D. */
static magna_status layer_norm_infer(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i]->dtype != MAGNA_F32)
            return graph_error(g, MAGNA_ERR_DTYPE, "layer_norm: %s must be float32, got %s",
                               i == 0 ? "x" : (n->in[i] == ln_gamma(n) ? "gamma" : "beta"),
                               magna_dtype_name(n->in[i]->dtype));
    if (x->ndim < 1)
        return graph_error(g, MAGNA_ERR_SHAPE, "layer_norm: x must have at least one dim, got %s",
                           shape_str(x, a, sizeof a));
    const int64_t D = x->shape[x->ndim - 1];
    const magna_node *affine[2] = {ln_gamma(n), ln_beta(n)};
    for (int k = 0; k < 2; k++) {
        const magna_node *p = affine[k];
        if (p && (p->ndim != 1 || p->shape[0] != D))
            return graph_error(g, MAGNA_ERR_SHAPE,
                               "layer_norm: %s must be [%lld] (the last dim of x), got x %s and %s %s",
                               k ? "beta" : "gamma", (long long)D, shape_str(x, a, sizeof a), k ? "beta" : "gamma",
                               shape_str(p, b, sizeof b));
    }
    node_set_shape(n, x->ndim, x->shape);
    n->dtype = MAGNA_F32;
    n->saved_bytes = (size_t)(2 * (x->numel / D)) * sizeof(float);
    n->workspace_bytes = 0;
    if (affine[0] || affine[1]) {
        size_t ws = ln_partial_floats(D) * sizeof(float) * LN_PARTS;
        /* on CUDA, partial rows for slices of at least MAGNA_COLSUM_MIN_ROWS rows (src/cuda/norm.cu), up to 1024 */
        if (g->device == MAGNA_DEVICE_CUDA) {
            const int64_t slices = (x->numel / D + MAGNA_COLSUM_MIN_ROWS - 1) / MAGNA_COLSUM_MIN_ROWS;
            const size_t cuda = (size_t)(2 * D) * sizeof(float) * (size_t)(slices < 1024 ? slices : 1024);
            ws = cuda > ws ? cuda : ws;
        }
        n->workspace_bytes = ws;
    }
    return MAGNA_OK;
}

/* One row of x [D]: mean = sum(x) / D, var = sum((x - mean)^2) / D, rstd = 1 / sqrt(var + eps). The simd pragmas
 * let the sums vectorise in an order fixed per build and CPU, so results stay deterministic. */
ISA_CLONES static void layer_norm_stats(const float *restrict x, int64_t D, float eps, float *mean, float *rstd) {
    float m = 0.0f;
#pragma omp simd reduction(+ : m)
    for (int64_t d = 0; d < D; d++) m += x[d];
    m /= (float)D;
    float v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (int64_t d = 0; d < D; d++) v += (x[d] - m) * (x[d] - m);
    v /= (float)D;
    *mean = m;
    *rstd = 1.0f / sqrtf(v + eps);
}

/* out[d] = (x[d] - m) * r * gamma[d] + beta[d] over D elements (gamma, beta may be NULL): a loop per case, so every
 * loop vectorises. */
ISA_CLONES static void layer_norm_out(const float *restrict x, float *restrict out, const float *restrict gamma,
                                      const float *restrict beta, int64_t D, float m, float r) {
    if (gamma && beta) {
#pragma omp simd
        for (int64_t d = 0; d < D; d++) out[d] = (x[d] - m) * r * gamma[d] + beta[d];
    } else if (gamma) {
#pragma omp simd
        for (int64_t d = 0; d < D; d++) out[d] = (x[d] - m) * r * gamma[d];
    } else if (beta) {
#pragma omp simd
        for (int64_t d = 0; d < D; d++) out[d] = (x[d] - m) * r + beta[d];
    } else {
#pragma omp simd
        for (int64_t d = 0; d < D; d++) out[d] = (x[d] - m) * r;
    }
}

enum { LN_CHUNK = 512 };

/* One row: its statistics, then out (float32), or only its bf16 rounding into out16 (the dense matmuls after it
 * read that, bf16_for: plan.c), LN_CHUNK elements at a time through the stack. */
static void layer_norm_row(const float *x, float *out, uint16_t *out16, const float *gamma, const float *beta,
                           int64_t D, float eps, float *mean, float *rstd) {
    layer_norm_stats(x, D, eps, mean, rstd);
    if (!out16) {
        layer_norm_out(x, out, gamma, beta, D, *mean, *rstd);
        return;
    }
    float chunk[LN_CHUNK];
    for (int64_t d = 0; d < D; d += LN_CHUNK) {
        const int64_t len = D - d < LN_CHUNK ? D - d : LN_CHUNK;
        layer_norm_out(x + d, chunk, gamma ? gamma + d : NULL, beta ? beta + d : NULL, len, *mean, *rstd);
        magna_to_bf16_row(out16 + d, chunk, len);
    }
}

/* x [N, D] -> out [N, D], row by row; saved gets mean [N] then rstd [N]. */
static magna_status layer_norm_forward(magna_graph *g, magna_node *n) {
    (void)g;
    const magna_node *x = n->in[0], *gn = ln_gamma(n), *bn = ln_beta(n);
    const int64_t D = x->shape[x->ndim - 1], N = x->numel / D;
    const float eps = n->fp[0];
    const float *xv = fval(x), *gamma = gn ? fval(gn) : NULL, *beta = bn ? fval(bn) : NULL;
    float *out = fval(n), *mean = (float *)n->saved, *rstd = mean + N;
    uint16_t *out16 = n->bf16_for ? magna_matmul_a16_for(n) : NULL;
    PARALLEL_FOR(N * D >= PAR_MIN, i, N,
                 layer_norm_row(xv + i * D, out + i * D, out16 ? out16 + i * D : NULL, gamma, beta, D, eps, mean + i,
                                rstd + i););
    return MAGNA_OK;
}

typedef struct ln_back {
    const float *x, *gamma, *dout, *mean, *rstd;
    float *dx;
    int64_t D;
} ln_back;

/* Rows i0..i1 of the backward. With norm = (x - mean) * rstd and dnorm = dout * gamma:
 *   dx += rstd * (dnorm - mean_d(dnorm) - norm * mean_d(dnorm * norm)),
 *   pg += dout * norm and pb += dout summed over these rows (when pg is not NULL; pb = pg + D). */
ISA_CLONES static void layer_norm_backward_rows(const ln_back *a, int64_t i0, int64_t i1, float *pg) {
    const int64_t D = a->D;
    float *restrict pb = pg ? pg + D : NULL, *restrict pgr = pg;
    const float *restrict gamma = a->gamma;
    if (pg) memset(pg, 0, 2 * (size_t)D * sizeof(float));
    for (int64_t i = i0; i < i1; i++) {
        const float *restrict x = a->x + i * D, *restrict dout = a->dout + i * D;
        const float m = a->mean[i], r = a->rstd[i];
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        if (gamma) {
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
            for (int64_t d = 0; d < D; d++) {
                const float dn = dout[d] * gamma[d];
                dnorm_mean += dn;
                dnorm_norm_mean += dn * ((x[d] - m) * r);
            }
        } else {
#pragma omp simd reduction(+ : dnorm_mean, dnorm_norm_mean)
            for (int64_t d = 0; d < D; d++) {
                dnorm_mean += dout[d];
                dnorm_norm_mean += dout[d] * ((x[d] - m) * r);
            }
        }
        dnorm_mean /= (float)D;
        dnorm_norm_mean /= (float)D;
        if (pgr) {
#pragma omp simd
            for (int64_t d = 0; d < D; d++) {
                pgr[d] += dout[d] * ((x[d] - m) * r);
                pb[d] += dout[d];
            }
        }
        float *restrict dx = a->dx ? a->dx + i * D : NULL;
        if (dx && gamma) {
#pragma omp simd
            for (int64_t d = 0; d < D; d++)
                dx[d] += (dout[d] * gamma[d] - dnorm_mean - (x[d] - m) * r * dnorm_norm_mean) * r;
        } else if (dx) {
#pragma omp simd
            for (int64_t d = 0; d < D; d++) dx[d] += (dout[d] - dnorm_mean - (x[d] - m) * r * dnorm_norm_mean) * r;
        }
    }
}

/* dx for every row; dgamma and dbeta from the LN_PARTS parts' partial rows in the workspace, added up after in
 * part order. Small cases stay outside any OpenMP region (a one-thread region still allocates). */
static void layer_norm_backward(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    magna_node *gn = ln_gamma(n), *bn = ln_beta(n);
    const int64_t D = x->shape[x->ndim - 1], N = x->numel / D;
    float *dgamma = gn ? gn->grad : NULL, *dbeta = bn ? bn->grad : NULL;
    const float *mean = (const float *)n->saved;
    const ln_back a = {.x = fval(x),
                       .gamma = gn ? fval(gn) : NULL,
                       .dout = n->grad,
                       .mean = mean,
                       .rstd = mean + N,
                       .dx = x->grad,
                       .D = D};
    const bool partials = dgamma || dbeta;
    const size_t stride = ln_partial_floats(D);
    float *ws = (float *)g->workspace;
    if (partials && g->workspace_bytes < stride * sizeof(float) * LN_PARTS) { /* infer asked for them: never */
        graph_error(g, MAGNA_ERR_STATE, "layer_norm: the workspace holds no room for its %d partial rows", LN_PARTS);
        return;
    }
    PARALLEL_FOR(N * D >= PAR_MIN, p, LN_PARTS,
                 layer_norm_backward_rows(&a, N * p / LN_PARTS, N * (p + 1) / LN_PARTS,
                                          partials ? ws + (size_t)p * stride : NULL););
    if (!partials) return;
    for (int p = 0; p < LN_PARTS; p++) {
        const float *pg = ws + (size_t)p * stride, *pb = pg + D;
        for (int64_t d = 0; d < D; d++) {
            if (dgamma) dgamma[d] += pg[d];
            if (dbeta) dbeta[d] += pb[d];
        }
    }
}

/* x [..., D]; gamma, beta [D] or NULL; eps > 0 keeps a constant row finite. */
magna_node *magna_layer_norm(magna_graph *g, magna_node *x, magna_node *gamma, magna_node *beta, float eps) {
    if (!g) return NULL;
    if (!(eps >= 0.0f) || isinf(eps)) {
        graph_error(g, MAGNA_ERR_ARG, "layer_norm: eps must be a finite number >= 0, got %g", (double)eps);
        return NULL;
    }
    magna_node *in[3] = {x, NULL, NULL};
    int n_in = 1;
    if (gamma) in[n_in++] = gamma;
    if (beta) in[n_in++] = beta;
    const int64_t ip[2] = {gamma != NULL, beta != NULL};
    return graph_add_node(g, OP_LAYER_NORM, n_in, in, ip, 2, &eps, 1);
}

const magna_op_def op_def_layer_norm = {"layer_norm", OPF_BWD_INPUTS, layer_norm_infer, layer_norm_forward,
                                        layer_norm_backward};
