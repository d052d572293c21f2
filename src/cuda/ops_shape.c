/* ops_shape.c — the CUDA glue of the ops that move elements without arithmetic (src/ops/shape.c: reshape,
 * permute, slice, concat) and of the embedding lookup (src/ops/embedding.c). The moves are strided copies
 * (elementwise.cu) over an index space whose tensor 0 is read and tensor 1 written; each backward moves the
 * gradient back the same way, adding. */
#include "cuda/ops.h"

#include "cuda/kernels.h"
#include "cuda/ops_glue.h"

#include <stdlib.h>

static magna_status copy_status(magna_graph *g, const magna_node *n, int e) {
    return e ? cuda_fail(g, e, magna_op_table[n->op]->name) : MAGNA_OK;
}

/* contiguous strides of a node's shape */
static void strides_of(const magna_node *x, int64_t *s) {
    int64_t stride = 1;
    for (int d = x->ndim - 1; d >= 0; d--) s[d] = stride, stride *= x->shape[d];
}

/* ---- reshape: a view, so forward has nothing to do (the planner aliases the memory); dx += dy (= as its first
 * writer) */

magna_status cuda_reshape_forward(magna_graph *g, magna_node *n) {
    (void)g, (void)n;
    return MAGNA_OK;
}

void cuda_reshape_backward(magna_graph *g, magna_node *n) {
    if (!n->in[0]->grad) return;
    const int e = magna_cuda_unary_backward(MAGNA_EM_ADD_SCALAR, 0.0f, NULL, NULL, n->grad, n->in[0]->grad, n->numel,
                                            grad_assigns(n, 0), cuda_stream(g));
    if (e) cuda_fail(g, e, "reshape");
}

/* ---- permute: out dim d = in dim ip[d] -------------------------------------------------------------- */

/* the output's space with the input's stride per output dim as tensor `in_t` and the output's own as the other */
static magna_index permute_space(const magna_node *n, int in_t) {
    int64_t s[MAGNA_MAX_DIMS];
    strides_of(n->in[0], s);
    magna_index ix = magna_index_of(n->ndim, n->shape);
    magna_index_contiguous(&ix, 1 - in_t);
    for (int d = 0; d < n->ndim; d++) ix.stride[in_t][d] = s[n->ip[d]];
    magna_index_simplify(&ix, 2);
    return ix;
}

magna_status cuda_permute_forward(magna_graph *g, magna_node *n) {
    const magna_index ix = permute_space(n, 0);
    return copy_status(g, n, magna_cuda_strided_copy(&ix, fval(n->in[0]), fval(n), 1.0f, 0, cuda_stream(g)));
}

void cuda_permute_backward(magna_graph *g, magna_node *n) {
    if (!n->in[0]->grad) return;
    const magna_index ix = permute_space(n, 1);
    copy_status(g, n, magna_cuda_strided_copy(&ix, n->grad, n->in[0]->grad, 1.0f, 1, cuda_stream(g)));
}

/* ---- slice: ip[6] = axis, ip[4] = start, ip[3] = step (shape.c's slice_infer) ---------------------------
 * The output's space with the input's strides (the axis's times step) as tensor `in_t`, the input's base
 * element in *first. */
static magna_index slice_space(const magna_node *n, int in_t, int64_t *first) {
    int64_t s[MAGNA_MAX_DIMS];
    strides_of(n->in[0], s);
    const int axis = (int)n->ip[6];
    magna_index ix = magna_index_of(n->ndim, n->shape);
    magna_index_contiguous(&ix, 1 - in_t);
    for (int d = 0; d < n->ndim; d++) ix.stride[in_t][d] = s[d] * (d == axis ? n->ip[3] : 1);
    magna_index_simplify(&ix, 2);
    *first = n->ip[4] * s[axis];
    return ix;
}

magna_status cuda_slice_forward(magna_graph *g, magna_node *n) {
    int64_t first;
    const magna_index ix = slice_space(n, 0, &first);
    return copy_status(g, n, magna_cuda_strided_copy(&ix, fval(n->in[0]) + first, fval(n), 1.0f, 0, cuda_stream(g)));
}

void cuda_slice_backward(magna_graph *g, magna_node *n) {
    if (!n->in[0]->grad) return;
    int64_t first;
    const magna_index ix = slice_space(n, 1, &first);
    copy_status(g, n, magna_cuda_strided_copy(&ix, n->grad, n->in[0]->grad + first, 1.0f, 1, cuda_stream(g)));
}

/* ---- concat along ip[1]: input k fills the output's [at, at + its size) of the axis ------------------ */

static magna_status concat_move(magna_graph *g, magna_node *n, bool backward) {
    const int axis = (int)n->ip[1];
    int64_t so[MAGNA_MAX_DIMS];
    strides_of(n, so);
    int64_t at = 0;
    for (int k = 0; k < n->n_in; k++) {
        magna_node *x = n->in[k];
        const int64_t first = at * so[axis];
        at += x->shape[axis];
        if (backward && !x->grad) continue;
        /* x's space: x's own strides as the read (forward) or written (backward) tensor, the output's the other */
        const int xt = backward ? 1 : 0;
        magna_index ix = magna_index_of(x->ndim, x->shape);
        magna_index_contiguous(&ix, xt);
        for (int d = 0; d < x->ndim; d++) ix.stride[1 - xt][d] = so[d];
        magna_index_simplify(&ix, 2);
        const int e = backward ? magna_cuda_strided_copy(&ix, n->grad + first, x->grad, 1.0f, 1, cuda_stream(g))
                               : magna_cuda_strided_copy(&ix, fval(x), fval(n) + first, 1.0f, 0, cuda_stream(g));
        if (e) return cuda_fail(g, e, "concat");
    }
    return MAGNA_OK;
}

magna_status cuda_concat_forward(magna_graph *g, magna_node *n) { return concat_move(g, n, false); }
void cuda_concat_backward(magna_graph *g, magna_node *n) { concat_move(g, n, true); }

/* ---- embedding: table [V, D] float32, ids int32 [...] -> [..., D] ----------------------------------------
 * An id outside the table is refused with the CPU op's message: checked on the host when the ids are an
 * input (cuda_host_values), else flagged by the kernel and the ids read back to name the first bad one. */

static magna_status check_ids(magna_graph *g, const int32_t *id, int64_t N, int64_t V) {
    for (int64_t i = 0; i < N; i++)
        if (id[i] < 0 || id[i] >= V)
            return graph_error(g, MAGNA_ERR_RANGE, "embedding: id %d at position %lld is outside [0, %lld)", id[i],
                               (long long)i, (long long)V);
    return MAGNA_OK;
}

magna_status cuda_embedding_forward(magna_graph *g, magna_node *n) {
    const magna_node *table = n->in[0], *ids = n->in[1];
    const int64_t V = table->shape[0], D = table->shape[1], N = ids->numel;
    const int32_t *id_host = cuda_host_values(ids);
    magna_status st = id_host ? check_ids(g, id_host, N, V) : MAGNA_OK;
    if (st) return st;
    int *bad_dev = id_host ? NULL : g->workspace, bad = 0;
    int e = magna_cuda_embedding_forward(fval(table), ival(ids), fval(n), N, D, V, bad_dev, cuda_stream(g));
    if (!e && bad_dev) e = cuda_fetch(&bad, bad_dev, sizeof bad, cuda_stream(g));
    if (e) return cuda_fail(g, e, "embedding");
    if (!bad) return MAGNA_OK;
    int32_t *id = cuda_fetch_all(g, ival(ids), N, sizeof *id, "embedding");
    if (!id) return g->last_status ? g->last_status : MAGNA_ERR_NOMEM;
    st = check_ids(g, id, N, V);
    free(id);
    return st;
}

void cuda_embedding_backward(magna_graph *g, magna_node *n) {
    const magna_node *table = n->in[0], *ids = n->in[1];
    if (!table->grad) return;
    const int e = magna_cuda_embedding_backward(ival(ids), n->grad, table->grad, ids->numel, table->shape[1],
                                                table->shape[0], g->workspace, cuda_stream(g));
    if (e) cuda_fail(g, e, "embedding");
}
