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

/* ---- recurrent ops (rnn.cu): src/ops/rnn.c's LSTM, GRU and tanh RNN; their products are magna_cuda_gemm's -- */

enum { MAGNA_CUDA_CELL_LSTM = 0, MAGNA_CUDA_CELL_GRU = 1, MAGNA_CUDA_CELL_RNN = 2 };

/* One step t of B rows, laid out as src/ops/rnn.c lays it (rows of [B, T, *] are b * T + t). */
typedef struct magna_cuda_rnn_step {
    int cell, B, T, H, t;
    float *gates, *aux, *out;     /* [B, T, G] pre-activations in, activations out (RNN: the output); [B, T, H]
                                     LSTM tanh(c), GRU W_hn h + b_hn; the output (LSTM [B, T, 2, H]) */
    const float *h_prev, *c_prev; /* rows b * ld_prev of h_{t-1}, c_{t-1}; NULL: zeros */
    int64_t ld_prev;
    const float *hproj, *b_hn;    /* GRU forward: h_{t-1} W_hh [B, 3H] (NULL: zeros), b_hh's n part (NULL: 0) */
    const float *dout;            /* backward: the output's gradient */
    float *dgx, *dgh, *dh, *dc;   /* backward: dG [B, T, G] of the x side and (GRU) the h side; carries [B, H] */
} magna_cuda_rnn_step;

/* gates[r, j] += b_ih[j] + (j < hh_cols ? b_hh[j] : 0) over rows r; G columns */
int magna_cuda_rnn_bias(float *gates, const float *b_ih, const float *b_hh, int64_t rows, int G, int hh_cols,
                        void *stream);
/* the gate math of step s->t, forward and backward (backward writes dG of the step and updates the carries) */
int magna_cuda_rnn_step_forward(const magna_cuda_rnn_step *s, void *stream);
int magna_cuda_rnn_step_backward(const magna_cuda_rnn_step *s, void *stream);
/* dst [B * T, H] = h_{t-1} of every (b, t): the output's h of step t - 1 (output rows per_step * H wide),
 * h0 (NULL: zeros) at t = 0 */
int magna_cuda_rnn_gather_prev(float *dst, const float *out, const float *h0, int B, int T, int H, int per_step,
                               void *stream);
/* dst1[j] += sum_r m[r, j] and dst2[j] += the same (either may be NULL), deterministically */
int magna_cuda_colsum_add(const float *m, int64_t rows, int cols, float *dst1, float *dst2, void *stream);
/* y += x; y = value (n floats) */
int magna_cuda_add_into(float *y, const float *x, int64_t n, void *stream);
int magna_cuda_fill(float *y, float value, int64_t n, void *stream);

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
