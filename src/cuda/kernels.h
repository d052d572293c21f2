/* kernels.h — the CUDA kernels' host entry points (src/cuda/kernels.cu), C linkage. Only CUDA builds
 * (MAGNA_HAVE_CUDA) have them. Pointers are device memory; stream is a cudaStream_t (NULL: the default
 * stream). Each returns a cudaError_t as int (0: launched), never synchronising. The math is
 * elementwise_math.h's and the geometry launch.h's, both tested on the CPU. */
#ifndef MAGNA_CUDA_KERNELS_H
#define MAGNA_CUDA_KERNELS_H

#include <stdint.h>

#include "elementwise_math.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum magna_cuda_act { MAGNA_CUDA_RELU, MAGNA_CUDA_SIGMOID, MAGNA_CUDA_GELU } magna_cuda_act;

/* y = act(x) over n elements */
int magna_cuda_act_forward(magna_cuda_act act, const float *x, float *y, int64_t n, void *stream);
/* dx += dL/dx from dy; `saved` is x for GELU and y (the forward's output) for ReLU and sigmoid, as the CPU
 * ops keep them */
int magna_cuda_act_backward(magna_cuda_act act, const float *saved, const float *dy, float *dx, int64_t n,
                            void *stream);
/* one Adam/AdamW step over the flat buffers w, m, v from the gradients g (n elements) */
int magna_cuda_adam_step(const magna_em_adam *k, float *w, float *m, float *v, const float *g, int64_t n,
                         void *stream);

/* ---- attention (attention.cu): src/ops/attention.c's op, flash-style -------------------------------- */

/* q [B, Tq, C]; k, v [B, Tk, C] (C = heads * hd, head h in columns h*hd ..); key_lengths int32 [B] or NULL;
 * causal: query i sees keys j <= i + Tk - Tq; bf16: q, k, v rounded to bf16 in the products */
typedef struct magna_cuda_attention_args {
    const float *q, *k, *v;
    const int32_t *key_lengths;
    int B, Tq, Tk, C, heads, causal, bf16;
} magna_cuda_attention_args;
/* out [B, Tq, C]; lse [B * heads * Tq]: each query row's log-sum-exp, what backward needs */
int magna_cuda_attention_forward(const magna_cuda_attention_args *a, float *out, float *lse, void *stream);
/* dq, dk, dv (each may be NULL) += the gradients from dout; out and lse from forward; delta is scratch of
 * B * heads * Tq floats */
int magna_cuda_attention_backward(const magna_cuda_attention_args *a, const float *out, const float *dout,
                                  const float *lse, float *delta, float *dq, float *dk, float *dv, void *stream);

#ifdef __cplusplus
}
#endif

#endif
