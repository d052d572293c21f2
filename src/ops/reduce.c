/* reduce.c — sum, mean and max over a set of axes.
 * The input is seen as [outer, reduced..., kept...] through strides: each output element owns a
 * strided set of input elements. ip[0] = axes mask, ip[1] = keepdims. Max saves the index of the first
 * maximum per output element, and backward sends the gradient there alone. */
#include "common.h"

#include <math.h>
#include <string.h>

typedef struct reduce_plan {
    int nk, nr;                        /* kept and reduced dims */
    int64_t kshape[MAGNA_MAX_DIMS], kstride[MAGNA_MAX_DIMS];
    int64_t rshape[MAGNA_MAX_DIMS], rstride[MAGNA_MAX_DIMS];
    int64_t out_count, red_count;
} reduce_plan;

static void reduce_plan_of(const magna_node *n, reduce_plan *p) {
    const magna_node *x = n->in[0];
    unsigned mask = (unsigned)n->ip[0];
    int64_t stride = 1, strides[MAGNA_MAX_DIMS];
    for (int d = x->ndim - 1; d >= 0; d--) strides[d] = stride, stride *= x->shape[d];
    p->nk = p->nr = 0;
    p->out_count = p->red_count = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (mask & (1u << d)) {
            p->rshape[p->nr] = x->shape[d], p->rstride[p->nr++] = strides[d];
            p->red_count *= x->shape[d];
        } else {
            p->kshape[p->nk] = x->shape[d], p->kstride[p->nk++] = strides[d];
            p->out_count *= x->shape[d];
        }
    }
}

static inline int64_t offset_of(int64_t idx, int nd, const int64_t *shape, const int64_t *stride) {
    int64_t off = 0;
    for (int d = nd - 1; d >= 0; d--) {
        off += (idx % shape[d]) * stride[d];
        idx /= shape[d];
    }
    return off;
}

static magna_status reduce_infer(magna_graph *g, magna_node *n) {
    magna_status st = require_dtype(g, n, 0, MAGNA_F32);
    if (st) return st;
    const magna_node *x = n->in[0];
    unsigned mask = (unsigned)n->ip[0];
    if (mask == MAGNA_ALL_AXES) mask = (1u << x->ndim) - 1;
    if (mask == 0 || (mask >> x->ndim) != 0) {
        char buf[SHAPE_STR_MAX];
        return graph_error(g, MAGNA_ERR_ARG, "%s: axes mask 0x%x does not name axes of %s",
                           magna_op_table[n->op]->name, mask, shape_str(x, buf, sizeof buf));
    }
    n->ip[0] = mask;
    int64_t shape[MAGNA_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (!(mask & (1u << d)))
            shape[nd++] = x->shape[d];
        else if (n->ip[1])
            shape[nd++] = 1;
    }
    if (nd == 0) shape[nd++] = 1; /* a scalar is [1] */
    node_set_shape(n, nd, shape);
    n->dtype = MAGNA_F32;
    n->saved_bytes = n->op == OP_MAX ? (size_t)n->numel * sizeof(int64_t) : 0;
    return MAGNA_OK;
}

static magna_status reduce_forward(magna_graph *g, magna_node *n) {
    (void)g;
    reduce_plan p;
    reduce_plan_of(n, &p);
    const float *X = fval(n->in[0]);
    float *Y = fval(n);
    int64_t *arg = n->saved;
    const op_id op = n->op;
PARALLEL_FOR(n->in[0]->numel > PAR_MIN && p.out_count > 1, o, p.out_count, 
        const int64_t base = offset_of(o, p.nk, p.kshape, p.kstride);
        if (op == OP_MAX) {
            float best = -INFINITY;
            int64_t best_at = base;
            for (int64_t r = 0; r < p.red_count; r++) {
                int64_t at = base + offset_of(r, p.nr, p.rshape, p.rstride);
                if (X[at] > best || r == 0) best = X[at], best_at = at;
            }
            Y[o] = best, arg[o] = best_at;
        } else {
            double s = 0;
            if (p.nr == 1 && p.rstride[0] == 1)
                for (int64_t r = 0; r < p.red_count; r++) s += X[base + r];
            else
                for (int64_t r = 0; r < p.red_count; r++) s += X[base + offset_of(r, p.nr, p.rshape, p.rstride)];
            Y[o] = (float)(op == OP_MEAN ? s / (double)p.red_count : s);
        }
    );
    return MAGNA_OK;
}

static void reduce_backward(magna_graph *g, magna_node *n) {
    (void)g;
    float *DX = n->in[0]->grad;
    if (!DX) return;
    reduce_plan p;
    reduce_plan_of(n, &p);
    const float *DY = n->grad;
    if (n->op == OP_MAX) {
        const int64_t *arg = n->saved;
        for (int64_t o = 0; o < p.out_count; o++) DX[arg[o]] += DY[o];
        return;
    }
    const float scale = n->op == OP_MEAN ? 1.0f / (float)p.red_count : 1.0f;
PARALLEL_FOR(n->in[0]->numel > PAR_MIN && p.out_count > 1, o, p.out_count, 
        const int64_t base = offset_of(o, p.nk, p.kshape, p.kstride);
        const float d = DY[o] * scale;
        for (int64_t r = 0; r < p.red_count; r++) DX[base + offset_of(r, p.nr, p.rshape, p.rstride)] += d;
    );
}

const magna_op_def op_def_sum = {"sum", 0, reduce_infer, reduce_forward, reduce_backward};
const magna_op_def op_def_mean = {"mean", 0, reduce_infer, reduce_forward, reduce_backward};
const magna_op_def op_def_max = {"max", 0, reduce_infer, reduce_forward, reduce_backward};

static magna_node *reduce(magna_graph *g, op_id op, magna_node *x, unsigned mask, bool keepdims) {
    if (!g) return NULL;
    int64_t ip[2] = {mask, keepdims};
    return graph_add_node(g, op, 1, &x, ip, 2, NULL, 0);
}

magna_node *magna_sum(magna_graph *g, magna_node *x, unsigned m, bool k) { return reduce(g, OP_SUM, x, m, k); }
magna_node *magna_mean(magna_graph *g, magna_node *x, unsigned m, bool k) { return reduce(g, OP_MEAN, x, m, k); }
magna_node *magna_max(magna_graph *g, magna_node *x, unsigned m, bool k) { return reduce(g, OP_MAX, x, m, k); }
