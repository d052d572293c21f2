/* embedding.c — a lookup table: each int32 id picks one row of a [V, D] table.
 *
 * Forward copies rows; backward adds each output row's gradient into the row of the table it came
 * from. Ids repeat (the same token many times in a batch), so the scatter-add is split over columns,
 * never over ids: every thread owns a slice of D and walks all ids in order, which needs no atomics and
 * gives the same sums for any thread count. */
#include "common.h"
#include "../cuda/launch.h"

#include <string.h>
#include <omp.h>

/* table is [V, D] float32, ids is [...] int32 -> out is [..., D]. */
static magna_status embedding_infer(magna_graph *g, magna_node *n) {
    const magna_node *table = n->in[0], *ids = n->in[1];
    char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
    if (table->dtype != MAGNA_F32 || ids->dtype != MAGNA_I32)
        return graph_error(g, MAGNA_ERR_DTYPE,
                           "embedding: table must be float32 and ids int32, got table %s and ids %s",
                           magna_dtype_name(table->dtype), magna_dtype_name(ids->dtype));
    if (table->ndim != 2)
        return graph_error(g, MAGNA_ERR_SHAPE, "embedding: table must be [V, D], got table %s (ids %s)",
                           shape_str(table, a, sizeof a), shape_str(ids, b, sizeof b));
    if (ids->ndim + 1 > MAGNA_MAX_DIMS)
        return graph_error(g, MAGNA_ERR_SHAPE,
                           "embedding: ids %s have too many dims for an output of at most %d (table %s)",
                           shape_str(ids, b, sizeof b), MAGNA_MAX_DIMS, shape_str(table, a, sizeof a));
    int64_t shape[MAGNA_MAX_DIMS];
    for (int i = 0; i < ids->ndim; i++) shape[i] = ids->shape[i];
    shape[ids->ndim] = table->shape[1];
    node_set_shape(n, ids->ndim + 1, shape);
    n->dtype = MAGNA_F32;
    n->saved_bytes = 0;
    /* the CUDA op's scratch (its id flag, its backward's counting sort of the ids); the CPU needs none */
    n->workspace_bytes = magna_embedding_workspace(ids->numel, table->shape[0]);
    return MAGNA_OK;
}

/* out[i, :] = table[ids[i], :] for each of the N = numel(ids) positions. */
static magna_status embedding_forward(magna_graph *g, magna_node *n) {
    const magna_node *table = n->in[0], *ids = n->in[1];
    const int64_t V = table->shape[0], D = table->shape[1], N = ids->numel;
    const int32_t *id = ival(ids);
    const float *w = fval(table);
    float *out = fval(n);
    for (int64_t i = 0; i < N; i++)
        if (id[i] < 0 || id[i] >= V)
            return graph_error(g, MAGNA_ERR_RANGE, "embedding: id %d at position %lld is outside [0, %lld)", id[i],
                               (long long)i, (long long)V);
    PARALLEL_FOR(N * D >= PAR_MIN, i, N, memcpy(out + i * D, w + (int64_t)id[i] * D, (size_t)D * sizeof(float)););
    return MAGNA_OK;
}

/* Columns d0..d1 of dtable[ids[i], :] += dout[i, :], for every i in order. */
static void scatter_add_columns(float *dw, const float *dout, const int32_t *id, int64_t N, int64_t D, int64_t d0,
                                int64_t d1) {
    for (int64_t i = 0; i < N; i++) {
        const float *src = dout + i * D;
        float *dst = dw + (int64_t)id[i] * D;
        for (int64_t d = d0; d < d1; d++) dst[d] += src[d];
    }
}

/* dtable[ids[i], :] += dout[i, :]. Threads split the D columns; ids are walked in order by each. Small
 * cases stay outside any OpenMP region (a one-thread region still allocates a team in libgomp). */
static void embedding_backward(magna_graph *g, magna_node *n) {
    (void)g;
    const magna_node *table = n->in[0], *ids = n->in[1];
    if (!table->grad) return;
    const int64_t D = table->shape[1], N = ids->numel;
    const int32_t *id = ival(ids);
    const float *dout = n->grad;
    float *dw = table->grad;
    if (N * D < PAR_MIN || D < 64 || omp_get_max_threads() < 2) {
        scatter_add_columns(dw, dout, id, N, D, 0, D);
        return;
    }
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        /* Column slices in whole 16-float pieces, so two threads never share a cache line of a row. */
        const int64_t pieces = (D + 15) / 16;
        const int64_t d0 = pieces * t / nt * 16, d1 = pieces * (t + 1) / nt * 16;
        scatter_add_columns(dw, dout, id, N, D, d0 < D ? d0 : D, d1 < D ? d1 : D);
    }
}

/* table [V, D], ids int32 [...] -> [..., D]. A NULL input leaves NULL (graph_add_node keeps the error).
 * Backward reads the ids, hence OPF_BWD_INPUTS. */
magna_node *magna_embedding(magna_graph *g, magna_node *table, magna_node *ids) {
    if (!g) return NULL;
    magna_node *in[2] = {table, ids};
    return graph_add_node(g, OP_EMBEDDING, 2, in, NULL, 0, NULL, 0);
}

const magna_op_def op_def_embedding = {"embedding", OPF_BWD_INPUTS, embedding_infer, embedding_forward,
                                       embedding_backward};
