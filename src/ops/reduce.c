/* reduce.c — sum, mean and max over a set of axes.
 * The input is seen as [outer, reduced..., kept...] through strides: each output element owns a
 * strided set of input elements. ip[0] = axes mask, ip[1] = keepdims. Max saves the index of the first
 * maximum per output element, and backward sends the gradient there alone. */
#include "common.h"
#include "../cuda/launch.h"

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

/* The common shape: after merging neighbouring dims of the same kind, the reduced dims form one block,
 * so the input is [O, R, I] (kept, reduced, kept; O or I may be 1) and out[o, i] reduces x[o, :, i].
 * Returns false for anything else (several separate reduced blocks), which takes the strided path. */
static bool as_block(const magna_node *n, int64_t *O, int64_t *R, int64_t *I) {
    const magna_node *x = n->in[0];
    const unsigned mask = (unsigned)n->ip[0];
    int first = -1, last = -1;
    for (int d = 0; d < x->ndim; d++)
        if (mask & (1u << d)) {
            if (first < 0) first = d;
            if (last >= 0 && last != d - 1) return false;
            last = d;
        }
    *O = dims_prod(x, 0, first), *R = dims_prod(x, first, last + 1), *I = dims_prod(x, last + 1, x->ndim);
    return true;
}

/* out[o, i] = sum or max over r of x[o, r, i]; max also records the flat index it came from. */
static void block_forward(op_id op, const float *X, float *Y, int64_t *arg, int64_t O, int64_t R, int64_t I) {
    const bool par = O * R * I > PAR_MIN;
    if (I == 1 && O == 1 && op != OP_MAX) { /* everything to one number: a parallel sum */
        double s = 0;
        PARALLEL_FOR_REDUCE(par, +, s, r, R, s += X[r];);
        Y[0] = (float)(op == OP_MEAN ? s / (double)R : s);
        return;
    }
    if (I == 1) { /* each output a contiguous run */
        PARALLEL_FOR(par && O > 1, o, O, {
            const float *x = X + o * R;
            if (op == OP_MAX) {
                int64_t best = 0;
                for (int64_t r = 1; r < R; r++)
                    if (x[r] > x[best]) best = r;
                Y[o] = x[best], arg[o] = o * R + best;
            } else {
                double s = 0;
                for (int64_t r = 0; r < R; r++) s += x[r];
                Y[o] = (float)(op == OP_MEAN ? s / (double)R : s);
            }
        });
        return;
    }
    /* rows of I: accumulate row after row, vectorised over i; outputs split by (o, block of i) */
    const int64_t chunk = 256, chunks = (I + chunk - 1) / chunk;
    PARALLEL_FOR(par && O * chunks > 1, oc, O * chunks, {
        const int64_t o = oc / chunks, i0 = (oc % chunks) * chunk, i1 = i0 + chunk < I ? i0 + chunk : I;
        const float *x = X + o * R * I;
        float *y = Y + o * I;
        for (int64_t i = i0; i < i1; i++) y[i] = x[i];
        if (op == OP_MAX)
            for (int64_t i = i0; i < i1; i++) arg[o * I + i] = o * R * I + i;
        for (int64_t r = 1; r < R; r++) {
            const float *xr = x + r * I;
            if (op == OP_MAX) {
                for (int64_t i = i0; i < i1; i++)
                    if (xr[i] > y[i]) y[i] = xr[i], arg[o * I + i] = (o * R + r) * I + i;
            } else {
                for (int64_t i = i0; i < i1; i++) y[i] += xr[i];
            }
        }
        if (op == OP_MEAN)
            for (int64_t i = i0; i < i1; i++) y[i] /= (float)R;
    });
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
    /* the CUDA op's partial sums (cuda/reduce.cu: to one number, or to few outputs over long runs); the CPU
     * needs none */
    n->workspace_bytes = n->op == OP_MAX ? 0 : magna_reduce_workspace(n->numel, x->numel / n->numel);
    return MAGNA_OK;
}

static magna_status reduce_forward(magna_graph *g, magna_node *n) {
    (void)g;
    int64_t O, R, I;
    if (as_block(n, &O, &R, &I)) {
        block_forward(n->op, fval(n->in[0]), fval(n), n->saved, O, R, I);
        return MAGNA_OK;
    }
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
    int64_t O, R, I;
    if (as_block(n, &O, &R, &I)) { /* dx[o, r, i] += dy[o, i] scale, row by row */
        PARALLEL_FOR(n->in[0]->numel > PAR_MIN, orow, O * R, {
            const float *dy = DY + (orow / R) * I;
            float *dx = DX + orow * I;
            for (int64_t i = 0; i < I; i++) dx[i] += dy[i] * scale;
        });
        return;
    }
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
