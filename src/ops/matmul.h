/* matmul.h — what a matmul node runs, for tests and benchmark output (src/ops/matmul.c). Internal. */
#ifndef MAGNA_OPS_MATMUL_H
#define MAGNA_OPS_MATMUL_H

#include "magna.h"

#include <stdint.h>

/* "oneDNN matmul, bf16 operands, float32 sums" where a bf16 graph's dense product runs there at this thread
 * count, else "sgemm, float32". */
const char *magna_matmul_describe(const magna_node *matmul);

/* Whether this matmul's backward (it has a fused bias add, plan.c) runs on oneDNN in bf16 now and so sums the
 * bias's gradient itself, while converting dC: the add's backward then leaves it alone. */
bool magna_matmul_sums_bias(const magna_node *matmul);

/* Where the op `producer` writes its output in bf16 for the dense matmuls that read it (producer->bf16_for: the
 * first of them, whose saved memory the others share, plan.c) when every one of them runs on oneDNN in bf16 now;
 * else NULL, and the producer writes float32 as usual. */
uint16_t *magna_matmul_a16_for(const magna_node *producer);

/* What this dense matmul's last step kept in bf16 between it and the GELU or attention next to it (plan.c: out16_to,
 * dc16_by, da16_ok), for tests: MAGNA_MM_OUT16 its output, MAGNA_MM_DC16 its dC (the GELU after it wrote it),
 * MAGNA_MM_DA16 its dA (for the GELU or attention before it). */
enum { MAGNA_MM_OUT16 = 1, MAGNA_MM_DC16 = 2, MAGNA_MM_DA16 = 4 };
unsigned magna_matmul_bf16_io(const magna_node *matmul);

/* Where the backward of x (a GELU, or an attention) writes, in bf16, the dC of the dense matmul whose output (or
 * fused bias add) is x's input `in` and only x reads (that matmul's dc16_by, plan.c), when the matmul's backward runs
 * on oneDNN in bf16 now and x assigns that gradient: the gradient's own buffer, as bf16 [M, N] (x then sets its
 * grad16). *bias_grad: the fused bias's gradient, into which x sums dC's columns over the rows (from 0 when *assign),
 * or NULL. Else NULL: x writes float32. */
uint16_t *magna_matmul_dc16_for(const magna_node *x, int in, float **bias_grad, bool *assign);

#endif
