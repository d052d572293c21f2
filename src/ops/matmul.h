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

#endif
