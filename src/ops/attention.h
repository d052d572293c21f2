/* attention.h — what the attention op tells the ops around it (src/ops/attention.c). Internal. */
#ifndef MAGNA_OPS_ATTENTION_H
#define MAGNA_OPS_ATTENTION_H

#include "../graph/internal.h"

/* Whether this attention node runs its products in bf16 now (a bf16 graph on a CPU with avx512_bf16, and workspace
 * for every thread): then it reads q, k, v and its output's gradient in bf16 where the dense layers around it
 * write them so (plan.c: out16_to, da16_ok). */
bool magna_attention_bf16_now(const magna_node *attention);

#endif
