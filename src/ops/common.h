/* common.h — small helpers the op files share: dtype checks and the elementwise shape rule. */
#ifndef MAGNA_OPS_COMMON_H
#define MAGNA_OPS_COMMON_H

#include "../graph/internal.h"

/* Elementwise loops run in parallel only when the work pays for waking the threads. */
#define PAR_MIN 32768

/* Sizes rounded up to a 64-byte cache line: a count of floats (round16), or of bytes (round64). */
static inline size_t round16(size_t floats) { return (floats + 15) & ~(size_t)15; }
static inline size_t round64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* Row and elementwise loops compiled for AVX-512 and AVX2 too, the loader picking one per CPU: the build
 * targets x86-64-v2 (SSE), and GCC's -O2 vectorises a loop only at the width the build allows. */
#define ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

static inline magna_status require_dtype(magna_graph *g, const magna_node *n, int i, magna_dtype want) {
    const magna_node *x = n->in[i];
    if (x->dtype == want) return MAGNA_OK;
    return graph_error(g, MAGNA_ERR_DTYPE, "%s: input %d ('%s') is %s, expected %s", magna_op_table[n->op]->name, i,
                       x->name, magna_dtype_name(x->dtype), magna_dtype_name(want));
}

/* Output has input 0's shape; input 0 must be float32. */
static inline magna_status infer_like_input(magna_graph *g, magna_node *n) {
    magna_status st = require_dtype(g, n, 0, MAGNA_F32);
    if (st != MAGNA_OK) return st;
    node_set_shape(n, n->in[0]->ndim, n->in[0]->shape);
    n->dtype = MAGNA_F32;
    return MAGNA_OK;
}

/* y = softmax(x) over n values, stable (the max subtracted), y may be x; returns the log-sum-exp of x in
 * double. Shared by softmax, log-softmax and cross-entropy (softmax.c). */
double magna_softmax_row(const float *x, float *y, int64_t n);

/* Normalises an axis that may count from the end; -1 when out of range. */
static inline int norm_axis(int axis, int ndim) {
    if (axis < 0) axis += ndim;
    return axis >= 0 && axis < ndim ? axis : -1;
}

#endif
