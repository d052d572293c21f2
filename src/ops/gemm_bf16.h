/* gemm_bf16.h — one GEMM with bf16 operands and float32 sums and result, on oneDNN's matmul: what a CPU op
 * runs in a bf16 graph (magna_graph_set_bf16) on a CPU with avx512_bf16, as PyTorch's CPU autocast does
 * (src/ops/gemm_bf16.c). Internal: for the ops (matmul.c, rnn.c). */
#ifndef MAGNA_OPS_GEMM_BF16_H
#define MAGNA_OPS_GEMM_BF16_H

#include "../graph/internal.h"

#include <stdint.h>

/* Whether this graph's products may run in bf16 here: the graph asked for bf16, runs on the CPU, the CPU has
 * avx512_bf16 and magna was built with oneDNN. */
bool magna_gemm_bf16_wanted(const magna_graph *g);

/* dst[i] = src[i] rounded to bf16 (nearest even; NaN stays NaN), across the threads. Needs avx512_bf16. */
void magna_to_bf16(uint16_t *dst, const float *src, int64_t n);
/* The same on this thread alone (inside a parallel loop). */
void magna_to_bf16_row(uint16_t *dst, const float *src, int64_t n);
/* magna_to_bf16_row, and sum[j] += src[j] in the same pass: one row of a bias's column sums (32 columns at a
 * time). */
void magna_to_bf16_row_sum(uint16_t *dst, const float *src, int64_t n, float *sum);
/* dst[i] = the bf16 src[i] as a float (exact), on this thread. Needs AVX-512. */
void magna_from_bf16_row(float *dst, const uint16_t *src, int64_t n);
/* Column sums in bf16 passes are taken over MAGNA_COLSUM_PARTS fixed parts of the rows, each part's rows in order
 * into its own row of `partial` [MAGNA_COLSUM_PARTS, cols], then the parts added in order
 * (magna_colsum_combine): threads stream whole rows, and any thread count gives the same sums. */
enum { MAGNA_COLSUM_PARTS = 8 };

/* dst = src [rows, cols] in bf16 and, in the same pass over src, sum[j] (+)= the sum over rows of src[r][j]
 * (assign: from 0): a bias's gradient from the gradient being converted (a fused bias add's; the recurrent ops'
 * biases from dG). partial: scratch of MAGNA_COLSUM_PARTS * cols floats. */
void magna_to_bf16_colsum(uint16_t *dst, const float *src, int64_t rows, int64_t cols, float *sum, bool assign,
                          float *partial);
/* sum[j] = (assign ? 0 : sum[j]) + partial[0][j] + ... + partial[parts - 1][j], in that order (parts: usually
 * MAGNA_COLSUM_PARTS; the attention's q, k, v bias sums have one per batch row). */
void magna_colsum_combine(float *sum, const float *partial, int64_t parts, int64_t cols, bool assign);
/* The same for B T rows of cols floats, reordered from [B, T] to [T, B]: dst row t B + b is src row b T + t. */
void magna_to_bf16_time_major(uint16_t *dst, const float *src, int64_t B, int64_t T, int64_t cols);

typedef struct magna_gemm_bf16 magna_gemm_bf16;

/* C [m, n] = op(A) [m, k] op(B) [k, n] (+ C when `add`) (+ bias [n] broadcast over the rows when `bias`), A and B
 * bf16 row-major (A stored [k, m] when ta, B [n, k] when tb), C float32 row-major (bf16 when c_bf16: the float32
 * result rounded to nearest even). Made outside any step (it allocates); *scratch_bytes grows to what it needs of
 * the scratchpad passed to run. NULL on failure, with *status oneDNN's (as a string through
 * magna_gemm_bf16_status). */
magna_gemm_bf16 *magna_gemm_bf16_make(int64_t m, int64_t n, int64_t k, bool ta, bool tb, bool add, bool bias,
                                      bool c_bf16, size_t *scratch_bytes, int *status);
/* Runs it; scratch: at least the largest *scratch_bytes any gemm reported (64-byte aligned). 0, or a oneDNN
 * status. */
int magna_gemm_bf16_run(const magna_gemm_bf16 *p, void *scratch, const uint16_t *a, const uint16_t *b, void *c,
                        const float *bias);
void magna_gemm_bf16_free(magna_gemm_bf16 *p);
const char *magna_gemm_bf16_status(int status);

#endif
