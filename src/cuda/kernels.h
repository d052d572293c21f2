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

/* ---- GEMM (gemm.cu) ---------------------------------------------------------------------------------------- */
#include <stddef.h>

/* C = alpha * op(A) op(B) + beta * C, row-major, `batch` products at element strides sa, sb, sc
 * (0 = shared operand). bf16: operands rounded to bf16, float32 accumulation and output. blas is the
 * cuBLASLt handle (NULL: our own tiled kernel). beta 0 never reads C. */
int magna_cuda_gemm(void *blas, void *stream, int ta, int tb, int m, int n, int k, float alpha,
                    const float *a, int lda, long long sa, const float *b, int ldb, long long sb,
                    float beta, float *c, int ldc, long long sc, int batch, int bf16);
/* The cuBLASLt handle with its 32 MiB workspace (*blas NULL under the emulator, which has no cuBLASLt, and after
 * destroy). Made and destroyed outside a step; one handle per stream (it caches each shape's algorithm). */
int magna_cuda_blas_create(void **blas);
void magna_cuda_blas_destroy(void **blas);
/* bf16 mode with cuBLASLt converts the operands into the handle's staging buffer: make it hold at least
 * `bf16_elems` (the largest magna_cuda_gemm_bf16_elems of the graph's calls), outside a step (it may
 * synchronise and reallocate). A call whose operands do not fit still runs (cuBLASLt's FAST_16BF compute on the
 * float32 operands: the same rounding, no staging). No-op on a NULL handle. */
int magna_cuda_blas_reserve(void *blas, size_t bf16_elems);
/* staging elements one magna_cuda_gemm call in bf16 mode needs (both operands packed) */
size_t magna_cuda_gemm_bf16_elems(int ta, int tb, int m, int n, int k, long long sa, long long sb, int batch);

#ifdef __cplusplus
}
#endif

#endif
