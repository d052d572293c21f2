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

/* ---- recurrent ops (rnn.cu): src/ops/rnn.c's LSTM, GRU and tanh RNN, the products through magna_cuda_gemm -- */

enum { MAGNA_CUDA_CELL_LSTM = 0, MAGNA_CUDA_CELL_GRU = 1, MAGNA_CUDA_CELL_RNN = 2 };

/* One op, laid out as src/ops/rnn.c lays it: x [B, T, I], w_ih [I, G], w_hh [H, G] (G = gates * H, PyTorch's
 * gate order), b_ih, b_hh [G] (both or neither), h0, c0 [B, H] (NULL: zeros); out [B, T, 2, H] for the LSTM
 * (h and c), else [B, T, H]; gates [B, T, G] the activated gates saved for backward (the RNN's are its
 * output: NULL) and aux [B, T, H] (LSTM tanh(c), GRU W_hn h + b_hn). Scratch, each NULL where the cell does
 * not use it: hproj [B, G] (GRU forward), dgx and dgh [B, T, G] (dgh: GRU), hprev [B, T, H], dh and dc
 * [B, H] (dc: LSTM). */
typedef struct magna_cuda_rnn_args {
    int cell, B, T, I, H, bf16;
    const float *x, *w_ih, *w_hh, *b_ih, *b_hh, *h0, *c0;
    float *out, *gates, *aux;
    float *hproj, *dgx, *dgh, *hprev, *dh, *dc;
} magna_cuda_rnn_args;
/* the gradients backward adds into, each NULL when not wanted */
typedef struct magna_cuda_rnn_grads {
    float *x, *w_ih, *w_hh, *b_ih, *b_hh, *h0, *c0;
} magna_cuda_rnn_grads;
/* blas: magna_cuda_gemm's handle (NULL: its own kernel) */
int magna_cuda_rnn_forward(const magna_cuda_rnn_args *a, void *blas, void *stream);
/* from dout, the output's gradient */
int magna_cuda_rnn_backward(const magna_cuda_rnn_args *a, const float *dout, const magna_cuda_rnn_grads *d,
                            void *blas, void *stream);

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
