/* shape.c — reshape (a view: no copy), permute, slice and concat. Each moves elements without
 * arithmetic, so each backward moves the gradient back the same way, adding. */
#include "common.h"

#include <string.h>

/* ---- reshape: ip[0] = ndim, ip[1..] = requested dims (-1 inferred, 0 copies the input's dim) ---- */

static magna_status reshape_infer(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    int nd = (int)n->ip[0];
    int64_t shape[MAGNA_MAX_DIMS], known = 1;
    int infer_at = -1;
    char sx[SHAPE_STR_MAX], sr[SHAPE_STR_MAX];
    for (int d = 0; d < nd; d++) {
        int64_t v = n->ip[1 + d];
        if (v == 0 && d < x->ndim) v = x->shape[d];
        if (v == -1) {
            if (infer_at >= 0) return graph_error(g, MAGNA_ERR_SHAPE, "reshape: more than one -1 in the new shape");
            infer_at = d;
            v = 1;
        } else if (v <= 0) {
            return graph_error(g, MAGNA_ERR_SHAPE, "reshape: dimension %d is %lld", d, (long long)n->ip[1 + d]);
        }
        shape[d] = v;
        known *= v;
    }
    if (infer_at >= 0 && known > 0 && x->numel % known == 0) shape[infer_at] = x->numel / known, known = x->numel;
    if (known != x->numel)
        return graph_error(g, MAGNA_ERR_SHAPE, "reshape: cannot reshape %s (%lld elements) into %s",
                           shape_str(x, sx, sizeof sx), (long long)x->numel,
                           magna_shape_str(nd, &n->ip[1], sr, sizeof sr));
    node_set_shape(n, nd, shape);
    n->dtype = x->dtype;
    return MAGNA_OK;
}

static magna_status reshape_forward(magna_graph *g, magna_node *n) {
    (void)g, (void)n; /* the value is the input's memory */
    return MAGNA_OK;
}

static void reshape_backward(magna_graph *g, magna_node *n) {
    (void)g;
    float *dx = n->in[0]->grad;
    if (!dx) return;
    const float *dy = n->grad;
    const int64_t count = n->numel;
    if (grad_assigns(n, 0))
        memcpy(dx, dy, (size_t)count * sizeof *dx);
    else
        PARALLEL_FOR(count > PAR_MIN, i, count, dx[i] += dy[i];);
}

const magna_op_def op_def_reshape = {"reshape", OPF_VIEW | OPF_GRAD_ASSIGN, reshape_infer, reshape_forward,
                                     reshape_backward};

magna_node *magna_reshape(magna_graph *g, magna_node *x, int ndim, const int64_t *shape) {
    if (!g) return NULL;
    if (ndim < 1 || ndim > MAGNA_MAX_DIMS || !shape) {
        graph_error(g, MAGNA_ERR_SHAPE, "reshape: ndim must be 1..%d, got %d", MAGNA_MAX_DIMS, ndim);
        return NULL;
    }
    int64_t ip[1 + MAGNA_MAX_DIMS];
    ip[0] = ndim;
    memcpy(ip + 1, shape, (size_t)ndim * sizeof *shape);
    return graph_add_node(g, OP_RESHAPE, 1, &x, ip, 1 + ndim, NULL, 0);
}

magna_node *magna_flatten(magna_graph *g, magna_node *x) {
    return magna_reshape(g, x, 2, (int64_t[]){0, -1});
}

/* ---- permute: out dim i = in dim perm[i] (ip[0..ndim-1]) ---------------------------------------- */

static magna_status permute_infer(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    int64_t shape[MAGNA_MAX_DIMS];
    unsigned seen = 0;
    for (int d = 0; d < x->ndim; d++) {
        int p = (int)n->ip[d];
        if (p < 0 || p >= x->ndim || (seen & (1u << p))) {
            char buf[SHAPE_STR_MAX];
            return graph_error(g, MAGNA_ERR_ARG, "permute: the permutation is not one of the %d axes of %s", x->ndim,
                               shape_str(x, buf, sizeof buf));
        }
        seen |= 1u << p;
        shape[d] = x->shape[p];
    }
    node_set_shape(n, x->ndim, shape);
    n->dtype = x->dtype;
    return require_dtype(g, n, 0, MAGNA_F32);
}

/* Input stride of each output dim. */
static void permute_strides(const magna_node *n, int64_t *s) {
    const magna_node *x = n->in[0];
    int64_t st[MAGNA_MAX_DIMS], stride = 1;
    for (int d = x->ndim - 1; d >= 0; d--) st[d] = stride, stride *= x->shape[d];
    for (int d = 0; d < n->ndim; d++) s[d] = st[n->ip[d]];
}

/* Runs over output rows; backward == true swaps the direction (dx[in] += dy[out]). */
static void permute_copy(const magna_node *n, const float *src, float *dst, bool backward) {
    int64_t s[MAGNA_MAX_DIMS];
    permute_strides(n, s);
    const int nd = n->ndim;
    const int64_t inner = n->shape[nd - 1], rows = n->numel / inner, si = s[nd - 1];
PARALLEL_FOR(n->numel > PAR_MIN, r, rows, 
        int64_t idx = r, off = 0;
        for (int d = nd - 2; d >= 0; d--) off += (idx % n->shape[d]) * s[d], idx /= n->shape[d];
        if (!backward)
            for (int64_t j = 0; j < inner; j++) dst[r * inner + j] = src[off + j * si];
        else
            for (int64_t j = 0; j < inner; j++) dst[off + j * si] += src[r * inner + j];
    );
}

static magna_status permute_forward(magna_graph *g, magna_node *n) {
    (void)g;
    permute_copy(n, fval(n->in[0]), fval(n), false);
    return MAGNA_OK;
}

static void permute_backward(magna_graph *g, magna_node *n) {
    (void)g;
    if (n->in[0]->grad) permute_copy(n, n->grad, n->in[0]->grad, true);
}

const magna_op_def op_def_permute = {"permute", 0, permute_infer, permute_forward, permute_backward};

magna_node *magna_permute(magna_graph *g, magna_node *x, const int *perm) {
    if (!g) return NULL;
    if (!x) return graph_add_node(g, OP_PERMUTE, 1, &x, NULL, 0, NULL, 0);
    if (!perm) {
        graph_error(g, MAGNA_ERR_ARG, "permute: perm is NULL");
        return NULL;
    }
    int64_t ip[MAGNA_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) ip[d] = perm[d];
    return graph_add_node(g, OP_PERMUTE, 1, &x, ip, x->ndim, NULL, 0);
}

magna_node *magna_transpose(magna_graph *g, magna_node *x, int axis0, int axis1) {
    if (!g) return NULL;
    if (!x) return graph_add_node(g, OP_PERMUTE, 1, &x, NULL, 0, NULL, 0);
    int a = norm_axis(axis0, x->ndim), b = norm_axis(axis1, x->ndim);
    if (a < 0 || b < 0) {
        char buf[SHAPE_STR_MAX];
        graph_error(g, MAGNA_ERR_ARG, "transpose: axes %d and %d are not both axes of %s", axis0, axis1,
                    shape_str(x, buf, sizeof buf));
        return NULL;
    }
    int perm[MAGNA_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) perm[d] = d;
    perm[a] = b, perm[b] = a;
    return magna_permute(g, x, perm);
}

/* ---- slice: ip = axis, start, end, step as given; ip[4], ip[5] = normalised start, count -------- */

static magna_status slice_infer(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    char buf[SHAPE_STR_MAX];
    int axis = norm_axis((int)n->ip[0], x->ndim);
    if (axis < 0)
        return graph_error(g, MAGNA_ERR_ARG, "slice: axis %lld is not an axis of %s", (long long)n->ip[0],
                           shape_str(x, buf, sizeof buf));
    int64_t size = x->shape[axis], start = n->ip[1], end = n->ip[2], step = n->ip[3];
    if (step < 1) return graph_error(g, MAGNA_ERR_ARG, "slice: step must be at least 1, got %lld", (long long)step);
    if (start < 0) start += size;
    if (end < 0) end += size;
    if (end > size) end = size;
    if (start < 0 || start >= end)
        return graph_error(g, MAGNA_ERR_SHAPE, "slice: [%lld:%lld] selects nothing of axis %d of %s",
                           (long long)n->ip[1], (long long)n->ip[2], axis, shape_str(x, buf, sizeof buf));
    int64_t shape[MAGNA_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = (end - start + step - 1) / step;
    n->ip[4] = start, n->ip[5] = shape[axis], n->ip[6] = axis;
    node_set_shape(n, x->ndim, shape);
    n->dtype = x->dtype;
    return require_dtype(g, n, 0, MAGNA_F32);
}

static void slice_copy(const magna_node *n, const float *src, float *dst, bool backward) {
    const magna_node *x = n->in[0];
    const int axis = (int)n->ip[6];
    const int64_t start = n->ip[4], count = n->ip[5], step = n->ip[3];
    const int64_t inner = dims_prod(x, axis + 1, x->ndim), outer = dims_prod(x, 0, axis), size = x->shape[axis];
PARALLEL_FOR(n->numel > PAR_MIN, oj, outer * count, {
        const int64_t o = oj / count, j = oj % count;
        const int64_t xo = (o * size + start + j * step) * inner, yo = oj * inner;
        if (!backward)
            memcpy(dst + yo, src + xo, (size_t)inner * sizeof(float));
        else
            for (int64_t i = 0; i < inner; i++) dst[xo + i] += src[yo + i];
    });
}

static magna_status slice_forward(magna_graph *g, magna_node *n) {
    (void)g;
    slice_copy(n, fval(n->in[0]), fval(n), false);
    return MAGNA_OK;
}

static void slice_backward(magna_graph *g, magna_node *n) {
    (void)g;
    if (n->in[0]->grad) slice_copy(n, n->grad, n->in[0]->grad, true);
}

const magna_op_def op_def_slice = {"slice", 0, slice_infer, slice_forward, slice_backward};

magna_node *magna_slice(magna_graph *g, magna_node *x, int axis, int64_t start, int64_t end, int64_t step) {
    if (!g) return NULL;
    int64_t ip[7] = {axis, start, end, step, 0, 0, 0};
    return graph_add_node(g, OP_SLICE, 1, &x, ip, 7, NULL, 0);
}

/* ---- concat: ip[0] = axis as given, ip[1] = normalised ------------------------------------------ */

static magna_status concat_infer(magna_graph *g, magna_node *n) {
    const magna_node *x0 = n->in[0];
    char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX];
    int axis = norm_axis((int)n->ip[0], x0->ndim);
    if (axis < 0)
        return graph_error(g, MAGNA_ERR_ARG, "concat: axis %lld is not an axis of %s", (long long)n->ip[0],
                           shape_str(x0, sa, sizeof sa));
    int64_t shape[MAGNA_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[axis] = 0;
    for (int k = 0; k < n->n_in; k++) {
        const magna_node *x = n->in[k];
        magna_status st = require_dtype(g, n, k, MAGNA_F32);
        if (st) return st;
        bool fits = x->ndim == x0->ndim;
        for (int d = 0; fits && d < x0->ndim; d++) fits = d == axis || x->shape[d] == x0->shape[d];
        if (!fits)
            return graph_error(g, MAGNA_ERR_SHAPE, "concat: input %d %s does not match input 0 %s except on axis %d",
                               k, shape_str(x, sa, sizeof sa), shape_str(x0, sb, sizeof sb), axis);
        shape[axis] += x->shape[axis];
    }
    n->ip[1] = axis;
    node_set_shape(n, x0->ndim, shape);
    n->dtype = MAGNA_F32;
    return MAGNA_OK;
}

static void concat_move(magna_node *n, bool backward) {
    const int axis = (int)n->ip[1];
    const int64_t outer = dims_prod(n, 0, axis), inner = dims_prod(n, axis + 1, n->ndim), size = n->shape[axis];
    int64_t at = 0;
    for (int k = 0; k < n->n_in; k++) {
        magna_node *x = n->in[k];
        const int64_t chunk = x->shape[axis] * inner;
        if (backward && !x->grad) {
            at += x->shape[axis];
            continue;
        }
PARALLEL_FOR(n->numel > PAR_MIN, o, outer, 
            float *y = (backward ? n->grad : fval(n)) + (o * size + at) * inner;
            if (!backward)
                memcpy(y, fval(x) + o * chunk, (size_t)chunk * sizeof(float));
            else
                for (int64_t i = 0; i < chunk; i++) x->grad[o * chunk + i] += y[i];
        );
        at += x->shape[axis];
    }
}

static magna_status concat_forward(magna_graph *g, magna_node *n) {
    (void)g;
    concat_move(n, false);
    return MAGNA_OK;
}

static void concat_backward(magna_graph *g, magna_node *n) {
    (void)g;
    concat_move(n, true);
}

const magna_op_def op_def_concat = {"concat", 0, concat_infer, concat_forward, concat_backward};

magna_node *magna_concat(magna_graph *g, int count, magna_node *const *xs, int axis) {
    if (!g) return NULL;
    if (count < 1 || !xs) {
        graph_error(g, MAGNA_ERR_ARG, "concat: needs at least one input");
        return NULL;
    }
    int64_t ip[2] = {axis, 0};
    return graph_add_node(g, OP_CONCAT, count, xs, ip, 2, NULL, 0);
}
