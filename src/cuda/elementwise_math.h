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

/* Phi(x), the normal CDF, from erfc's Chebyshev fit (Numerical Recipes, fractional error < 1.2e-7), as
 * the CPU GELU computes it: erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), z = |x| / sqrt 2. */
MAGNA_HD float magna_em_normal_cdf(float x) {
    const float z = fabsf(x) * 0.70710678118654752f, t = 1.0f / (1.0f + 0.5f * z);
    const float p =
        -z * z - 1.26551223f +
        t * (1.00002368f +
             t * (0.37409196f +
                  t * (0.09678418f +
                       t * (-0.18628806f +
                            t * (0.27886807f +
                                 t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
    const float half_erfc = 0.5f * t * expf(p); /* P(|X| > |x|) / 2 */
    return x >= 0.0f ? 1.0f - half_erfc : half_erfc;
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

#endif
