/* kernels.h — the CUDA kernels' host entry points (src/cuda/kernels.cu), C linkage. Only CUDA builds
 * (MAGNA_HAVE_CUDA) have them. Pointers are device memory; stream is a cudaStream_t (NULL: the default
 * stream). Each returns a cudaError_t as int (0: launched), never synchronising. The math is
 * elementwise_math.h's and the geometry launch.h's, both tested on the CPU. */
#ifndef MAGNA_CUDA_KERNELS_H
#define MAGNA_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "elementwise_math.h"
#include "launch.h"
#include "conv_math.h" /* magna_pool_dims */

#ifdef __cplusplus
extern "C" {
#endif

/* the values of MAGNA_EM_RELU, MAGNA_EM_SIGMOID, MAGNA_EM_GELU (elementwise_math.h) */
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
    const void *q, *k, *v; /* float32, or bf16 where q16, k16, v16 say (stored16: tensor-core shapes only) */
    const int32_t *key_lengths;
    int B, Tq, Tk, C, heads, causal, bf16;
    int q16, k16, v16, out16; /* out16: the output is kept in bf16 too (tensor-core shapes only) */
    unsigned assign;          /* backward: bits 0, 1, 2: dq, dk, dv are assigned (=, never read), not added into */
    unsigned grad16;          /* backward: bits 0, 1, 2: dq, dk, dv are bf16 (assigned, tensor-core, no lengths) */
    int dout16;               /* backward: dout is bf16 (tensor-core shapes only) */
} magna_cuda_attention_args;
/* out [B, Tq, C]; lse [B * heads * Tq]: each query row's log-sum-exp, what backward needs */
int magna_cuda_attention_forward(const magna_cuda_attention_args *a, void *out, float *lse, void *stream);
/* Which kernels tensor-core attention (bf16, hd 16 .. 128) runs here and now, forward and backward: "mma.sync"
 * (registers, the default, once a probe on this device found mma.sync's fragment layout) or "wmma"
 * (MAGNA_CUDA_ATTENTION=wmma, or the probe failed) */
const char *magna_cuda_attention_tc_kind(void);
/* dq, dk, dv (each may be NULL) += the gradients from dout (= where a->assign says; bf16 where a->grad16 does);
 * dout float32, or bf16 with a->dout16; out and lse from forward; delta is scratch of B * heads * Tq floats */
int magna_cuda_attention_backward(const magna_cuda_attention_args *a, const void *out, const void *dout,
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
/* The same with operands or the result stored as bf16 (stored16: MAGNA_GEMM_A16 | B16 | C16; the activations a
 * mixed-precision graph keeps in bf16, src/cuda/store16.c): only in bf16 mode, and a bf16 C only with beta 0.
 * Stored bf16 operands are read in place, never staged. */
enum { MAGNA_GEMM_A16 = 1u, MAGNA_GEMM_B16 = 2u, MAGNA_GEMM_C16 = 4u };
int magna_cuda_gemm_stored(void *blas, void *stream, int ta, int tb, int m, int n, int k, float alpha, const void *a,
                           int lda, long long sa, const void *b, int ldb, long long sb, float beta, void *c, int ldc,
                           long long sc, int batch, int bf16, unsigned stored16);
/* C = op(A) op(B) + bias[column] (one product, beta 0; cuBLASLt's BIAS epilogue, or our kernel): a dense layer's
 * output with its bias, written once (in bf16 with MAGNA_GEMM_C16) */
int magna_cuda_gemm_bias(void *blas, void *stream, int ta, int tb, int m, int n, int k, const void *a, int lda,
                         const void *b, int ldb, const float *bias, void *c, int ldc, int bf16, unsigned stored16);
/* dst (n bf16) = src (n floats) rounded to nearest even: an operand converted once for several GEMMs */
int magna_cuda_to_bf16(const float *src, int64_t n, void *dst, void *stream);
/* The cuBLASLt handle with its 32 MiB workspace (*blas NULL under the emulator, which has no cuBLASLt, and after
 * destroy). Made and destroyed outside a step; one handle per stream (it caches each shape's algorithm). */
int magna_cuda_blas_create(void **blas);
void magna_cuda_blas_destroy(void **blas);
/* bf16 mode with cuBLASLt converts the operands into the handle's staging buffer: make it hold at least
 * `bf16_elems` (the largest magna_cuda_gemm_bf16_elems of the graph's calls), outside a step (it may
 * synchronise and reallocate). A call whose operands do not fit still runs (cuBLASLt's FAST_16BF compute on the
 * float32 operands: the same rounding, no staging; MAGNA_GEMM_BF16=fast in the environment, read at create, sends
 * every bf16 call that way and makes reserve a no-op). No-op on a NULL handle. */
int magna_cuda_blas_reserve(void *blas, size_t bf16_elems);
/* staging elements one magna_cuda_gemm call in bf16 mode needs (both operands packed) */
size_t magna_cuda_gemm_bf16_elems(int ta, int tb, int m, int n, int k, long long sa, long long sb, int batch);

/* ---- layer norm and batch norm (norm.cu), float32 in every mode ---------------------------------------------- */
/* x [rows, D] -> y; mean [rows] and rstd [rows] for backward (layer_norm.c's saved); gamma, beta may be NULL;
 * y16: y kept in bf16 (stored16; the statistics stay float32) */
int magna_cuda_layer_norm_forward(const float *x, const float *gamma, const float *beta, float eps, int64_t rows,
                                  int64_t D, void *y, int y16, float *mean, float *rstd, void *stream);
/* dx += (when not NULL), dgamma += and dbeta += (when not NULL); the parameter sums go through `workspace` in
 * slices of rows, at least 2 D floats (more: more slices in parallel) */
int magna_cuda_layer_norm_backward(const float *x, const float *gamma, const float *dout, const float *mean,
                                   const float *rstd, int64_t rows, int64_t D, float *dx, float *dgamma, float *dbeta,
                                   float *workspace, size_t workspace_floats, void *stream);

/* batch norm over x [N, C, HW] per channel (batch_norm.c): saved = mean [C], invstd [C], then 1 if they are
 * batch statistics (training, which also updates running_mean and running_var) or 0 (the running ones) */
typedef struct magna_cuda_bn {
    int64_t N, C, HW;
    float momentum, eps;
    int training;
} magna_cuda_bn;
int magna_cuda_batch_norm_forward(const magna_cuda_bn *d, const float *x, const float *gamma, const float *beta,
                                  float *running_mean, float *running_var, float *y, float *saved, void *stream);
/* dx, dgamma, dbeta += (each may be NULL), by the formula of the statistics saved[2 C] says forward used */
int magna_cuda_batch_norm_backward(const magna_cuda_bn *d, const float *x, const float *gamma, const float *dy,
                                   const float *saved, float *dx, float *dgamma, float *dbeta, void *stream);

/* ---- convolution's helpers and pooling (conv.cu), NCHW --------------------------------------------------------- */
typedef struct magna_cuda_conv {
    int C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw;
} magna_cuda_conv;
/* col[row ld_row + j ld_sample + p] = im2col of the g samples at x: row = (c, kh, kw), p = (oh, ow), 0 outside
 * the image. ld_row = P, ld_sample = K P lays the samples out one after another ([g, K, P]: a batched GEMM's
 * operand); ld_row = g P, ld_sample = P side by side ([K, g P]: one GEMM over the group). */
int magna_cuda_im2col(const magna_cuda_conv *c, int g, const float *x, float *col, long long ld_row,
                      long long ld_sample, void *stream);
/* dx [g, C, H, W] += col2im(col), the adjoint of im2col with the same layout (a gather: no atomics) */
int magna_cuda_col2im_add(const magna_cuda_conv *c, int g, const float *col, long long ld_row, long long ld_sample,
                          float *dx, void *stream);
/* y [N, OC, P] += bias [OC];  db [OC] += sum over N and P of dy */
int magna_cuda_bias_add(const float *bias, int N, int OC, int64_t P, float *y, void *stream);
int magna_cuda_bias_grad(const float *dy, int N, int OC, int64_t P, float *db, void *stream);
/* dys [OC, g P] = dy [g, OC, P] (a group's gradients side by side) */
int magna_cuda_conv_stage(const float *dy, int g, int OC, int64_t P, float *dys, void *stream);

/* pool2d.c's max pooling: y and the argmax (ih W + iw in the plane); backward dx[argmax] += dy, gathered */
int magna_cuda_max_pool_forward(const magna_pool_dims *d, const float *x, float *y, int32_t *arg, void *stream);
int magna_cuda_max_pool_backward(const magna_pool_dims *d, const float *dy, const int32_t *arg, float *dx, void *stream);
/* average over the window's real pixels; backward dx += dy / count of every window holding a pixel */
int magna_cuda_avg_pool_forward(const magna_pool_dims *d, const float *x, float *y, void *stream);
int magna_cuda_avg_pool_backward(const magna_pool_dims *d, const float *dy, float *dx, void *stream);

/* ---- the elementwise family (cuda-ops-a): elementwise.cu, reduce.cu, softmax.cu, embedding.cu ----------
 * Index spaces (magna_index) and reduction shapes come from launch.h; `bad` arguments are a device int the
 * kernel sets to 1 when the data is invalid (an id, a label, a target out of range), for the glue to read
 * back and report as the CPU op does; NULL where the glue checked the data on the host already. A bad
 * element is never used to index memory. */

/* y = f(x; a) over n elements, op a magna_em_unary_op */
int magna_cuda_unary_forward(int op, float a, const float *x, float *y, int64_t n, void *stream);
/* dx += f'(x, y; a) dy (assign: dx = it, dx not read); x or y may be NULL where the op's backward does not read it */
int magna_cuda_unary_backward(int op, float a, const float *x, const float *y, const float *dy, float *dx, int64_t n,
                              int assign, void *stream);
/* y[i] = op(a[off 1], b[off 2]) over the output's space ix (op a magna_em_binary_op) */
int magna_cuda_binary_forward(int op, const magna_index *ix, const float *a, const float *b, float *y, void *stream);
/* the gradient of operand `which` (0: a, 1: b): g[o] += sum over r of dy * d(op)/d(operand) with the output's
 * (0), a's (1) and b's (2) strides in kept (g's elements, in order) and red (the broadcast dims); assign: g = the
 * sum instead (g's old contents never read). dy is float32, or bf16 with dy16 (an add's only). workspace:
 * magna_reduce_split_workspace(kept n, red n) bytes (launch.h), or NULL: few outputs over long runs (a bias's
 * gradient) then reduce in one pass on few blocks instead of two passes over the whole GPU. */
int magna_cuda_binary_backward(int op, int which, const magna_index *kept, const magna_index *red, const float *a,
                               const float *b, const float *y, const void *dy, int dy16, float *g, int assign,
                               float *workspace, void *stream);
/* dst[off 1] = (accumulate ? dst[off 1] : 0) + scale src[off 0] over ix: permute, slice, concat, broadcasts */
int magna_cuda_strided_copy(const magna_index *ix, const float *src, float *dst, float scale, int accumulate,
                            void *stream);
/* dst = (accumulate ? dst : 0) + src m / (1 - p), m the mask of magna_em_dropout_kept(seed, rstream, i, p) */
int magna_cuda_dropout(uint64_t seed, uint64_t rstream, float p, const float *src, float *dst, int64_t n,
                       int accumulate, void *stream);

/* y[o] = scale * sum, or max (max != 0, arg[o] = the flat index of x it came from, the first on ties), of x
 * over red for each o of kept (tensor 0 = x). workspace (may be NULL): a sum then runs over the whole grid in
 * two passes, to a single output (MAGNA_LAUNCH_SUM_BLOCKS floats) or to few outputs over long runs
 * (magna_reduce_split_workspace(kept n, red n) bytes); the caller gives the larger. */
int magna_cuda_reduce_axes(int max, const magna_index *kept, const magna_index *red, const float *x, float scale, float *y,
                           int64_t *arg, float *workspace, void *stream);
/* dx[arg[o]] += dy[o] for outs outputs */
int magna_cuda_max_backward(const int64_t *arg, const float *dy, float *dx, int64_t outs, void *stream);
/* loss[0] = mean((p - t)^2); workspace: MAGNA_LAUNCH_SUM_BLOCKS floats */
int magna_cuda_mse_forward(const float *p, const float *t, int64_t n, float *workspace, float *loss, void *stream);
/* loss[0] = mean of magna_em_bce(x, t); *bad = 1 when a target is outside [0, 1] */
int magna_cuda_bce_forward(const float *x, const float *t, int64_t n, float *workspace, int *bad, float *loss,
                           void *stream);
/* dp += 2 dl (p - t) / n, dt -= the same (either may be NULL); dl: the loss's gradient, on the device */
int magna_cuda_mse_backward(const float *p, const float *t, const float *dl, float *dp, float *dt, int64_t n,
                            void *stream);
/* dx += dl (sigmoid(x) - t) / n, dt -= dl x / n (either may be NULL) */
int magna_cuda_bce_backward(const float *x, const float *t, const float *dl, float *dx, float *dt, int64_t n,
                            void *stream);

/* softmax (log_form 0) or log-softmax (1) of each of rows rows of cols */
int magna_cuda_softmax_forward(int log_form, const float *x, float *y, int64_t rows, int64_t cols, void *stream);
/* dx += the gradient from the forward's output y and dy */
int magna_cuda_softmax_backward(int log_form, const float *y, const float *dy, float *dx, int64_t rows, int64_t cols,
                                void *stream);
/* loss[0] = mean over the counted rows (label != MAGNA_EM_IGNORE_LABEL) of (lse - x[label]) w[label] (weight
 * may be NULL); saved (rows + 1 floats): each row's lse, then the count; row_loss: rows floats of scratch;
 * *bad = 1 when a label is outside [0, cols) and not the ignore label */
int magna_cuda_xent_forward(const void *x, int x16, const int32_t *label, const float *weight, int64_t rows,
                            int64_t cols, float *saved, float *row_loss, int *bad, float *loss, void *stream);
/* dx += dl / counted w[label] (softmax - onehot) on the counted rows, from the forward's saved; assign: dx = ...
 * (0 on ignored rows), and dx may be x itself (the logits' gradient over them). x16: the logits (and dx) are
 * bf16, a bf16 graph's kept in bf16 (stored16), only assigning over themselves */
int magna_cuda_xent_backward(const void *x, int x16, const int32_t *label, const float *weight, const float *saved,
                             const float *dl, void *dx, int assign, int64_t rows, int64_t cols, void *stream);

/* out[i, :] = table[ids[i], :] for n ids, table [V, D]; *bad = 1 when an id is outside [0, V) */
int magna_cuda_embedding_forward(const float *table, const int32_t *ids, float *out, int64_t n, int64_t D, int64_t V,
                                 int *bad, void *stream);
/* dtable[ids[i], :] += dout[i, :], deterministic, in the CPU's order; workspace: magna_embedding_workspace(n, V)
 * bytes (launch.h) */
int magna_cuda_embedding_backward(const int32_t *ids, const float *dout, float *dtable, int64_t n, int64_t D,
                                  int64_t V, void *workspace, void *stream);
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

/* ---- fused pairs of nodes (fused.cu, chosen by fuse.c) ---- */
/* x = a + bias (bias [N] over rows of N), y = gelu(x) (tanh_approx: GELU's tanh form); x16, y16: x, y kept in
 * bf16 (stored16; x16 only with y16), y then the GELU of x as rounded */
int magna_cuda_bias_gelu_forward(int tanh_approx, const float *a, const float *bias, int64_t rows, int64_t N, void *x,
                                 int x16, void *y, int y16, void *stream);
/* y = gelu(x) over n elements, both bf16: a fused bias + GELU's output again, from its stored input */
int magna_cuda_gelu16(int tanh_approx, const void *x, int64_t n, void *y, void *stream);
/* y = layer_norm(x) [rows, D] in bf16 from the mean and rstd forward kept (gamma, beta may be NULL): a fused
 * residual + layer norm's output again */
int magna_cuda_layer_norm_apply16(const float *x, const float *mean, const float *rstd, const float *gamma,
                                  const float *beta, int64_t rows, int64_t D, void *y, void *stream);
/* y = a + bias (bias [N] over rows of N) written as bf16: a dense layer's output kept in bf16 (stored16) */
int magna_cuda_bias_add16(const float *a, const float *bias, int64_t rows, int64_t N, void *y, void *stream);
/* Its backward: dx += gelu'(x) dy [rows, N] and dbias[j] += the column sums of those terms (deterministic: slices
 * of rows into workspace, then added in order, from the float terms); assign_dx, assign_dbias: = instead;
 * workspace_floats >= N; x16, dy16: x, dy kept in bf16; dx16: dx kept in bf16 (assigned only) */
int magna_cuda_bias_gelu_backward(int tanh_approx, const void *x, int x16, const void *dy, int dy16, int64_t rows,
                                  int64_t N, void *dx, int dx16, int assign_dx, float *dbias, int assign_dbias,
                                  float *workspace, size_t workspace_floats, void *stream);
/* x1 = a + r, y = layer_norm(x1) with gamma, beta (either may be NULL); mean and rstd [rows] as layer norm saves;
 * y16: y kept in bf16 */
int magna_cuda_add_layer_norm_forward(const float *a, const float *r, const float *gamma, const float *beta, float eps,
                                      int64_t rows, int64_t D, float *x1, void *y, int y16, float *mean, float *rstd,
                                      void *stream);

#ifdef __cplusplus
}
#endif

#endif
