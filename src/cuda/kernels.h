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

/* ---- the optimizer over the flat buffers (optim.cu) ---- */
/* partials of a reduction: at most this many blocks, so `scratch` needs this many floats */
enum { MAGNA_CUDA_REDUCE_BLOCKS = 1024 };
/* one torch.optim.SGD step (m: the momentum buffer, NULL without momentum; first: step 1) */
int magna_cuda_sgd_step(float lr, float momentum, float weight_decay, int nesterov, int first, float *w, float *m,
                        const float *g, int64_t n, void *stream);
/* *out = sum of x^2 (mode 0) or the count of non-finite x (mode 1), deterministically; out is device memory */
int magna_cuda_reduce(int mode, const float *x, int64_t n, float *scratch, float *out, void *stream);
/* x *= k */
int magna_cuda_scale(float k, float *x, int64_t n, void *stream);

#ifdef __cplusplus
}
#endif

#endif
