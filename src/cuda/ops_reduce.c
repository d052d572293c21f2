/* ops_reduce.c — the CUDA glue of the reductions: sum, mean and max over axes (src/ops/reduce.c), softmax and
 * log-softmax (softmax.c), and the losses (loss.c: mean squared error, cross-entropy from logits with class
 * indices, binary cross-entropy from logits). Kernels: reduce.cu and softmax.cu. */
#include "cuda/ops.h"

#include "cuda/kernels.h"
#include "cuda/ops_glue.h"

#include <stdlib.h>

/* ---- sum, mean, max: ip[0] = the axes mask (normalised by infer), ip[1] = keepdims ------------------- */

magna_status cuda_reduce_forward(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    magna_index full = magna_index_of(x->ndim, x->shape), kept, red;
    magna_index_contiguous(&full, 0);
    magna_index_split(&full, (unsigned)n->ip[0], 1, &kept, &red);
    const float scale = n->op == OP_MEAN ? 1.0f / (float)red.n : 1.0f;
    const int e = magna_cuda_reduce_axes(n->op == OP_MAX, &kept, &red, fval(x), scale, fval(n), n->saved, cuda_stream(g));
    return e ? cuda_fail(g, e, magna_op_table[n->op]->name) : MAGNA_OK;
}

/* sum, mean: dx[i] += scale dy[o(i)], dy broadcast over the reduced axes; max: dx[arg[o]] += dy[o] */
void cuda_reduce_backward(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    if (!x->grad) return;
    int e;
    if (n->op == OP_MAX) {
        e = magna_cuda_max_backward(n->saved, n->grad, x->grad, n->numel, cuda_stream(g));
    } else {
        const unsigned mask = (unsigned)n->ip[0];
        magna_index ix = magna_index_of(x->ndim, x->shape);
        magna_index_contiguous(&ix, 1);
        int64_t s = 1, red = 1;
        for (int d = x->ndim - 1; d >= 0; d--) {
            const bool reduced = mask & (1u << d);
            ix.stride[0][d] = reduced ? 0 : s;
            if (reduced) red *= x->shape[d];
            else s *= x->shape[d];
        }
        magna_index_simplify(&ix, 2);
        const float scale = n->op == OP_MEAN ? 1.0f / (float)red : 1.0f;
        e = magna_cuda_strided_copy(&ix, n->grad, x->grad, scale, 1, cuda_stream(g));
    }
    if (e) cuda_fail(g, e, magna_op_table[n->op]->name);
}

/* ---- softmax, log-softmax over the last axis ------------------------------------------------------------ */

magna_status cuda_softmax_forward(magna_graph *g, magna_node *n) {
    const int64_t C = n->shape[n->ndim - 1];
    const int e = magna_cuda_softmax_forward(n->op == OP_LOG_SOFTMAX, fval(n->in[0]), fval(n), n->numel / C, C,
                                             cuda_stream(g));
    return e ? cuda_fail(g, e, magna_op_table[n->op]->name) : MAGNA_OK;
}

void cuda_softmax_backward(magna_graph *g, magna_node *n) {
    if (!n->in[0]->grad) return;
    const int64_t C = n->shape[n->ndim - 1];
    const int e = magna_cuda_softmax_backward(n->op == OP_LOG_SOFTMAX, fval(n), n->grad, n->in[0]->grad, n->numel / C,
                                              C, cuda_stream(g));
    if (e) cuda_fail(g, e, magna_op_table[n->op]->name);
}

/* ---- losses -------------------------------------------------------------------------------------------
 * Bad data (a label or target out of range) is flagged by the kernel in the workspace; the glue reads the
 * flag back (the forward's one synchronisation) and then, only when it is set, the data, to name the first
 * bad element with the CPU op's message. */

static magna_status read_flag(magna_graph *g, const int *flag_dev, int *flag, const char *what) {
    const int e = cuda_fetch(flag, flag_dev, sizeof *flag, cuda_stream(g));
    return e ? cuda_fail(g, e, what) : MAGNA_OK;
}

void *cuda_fetch_all(magna_graph *g, const void *dev, int64_t n, size_t size, const char *what) {
    void *host = malloc((size_t)n * size);
    if (!host) {
        graph_error(g, MAGNA_ERR_NOMEM, "%s: no memory to read the data back", what);
        return NULL;
    }
    const int e = cuda_fetch(host, dev, (size_t)n * size, cuda_stream(g));
    if (e) cuda_fail(g, e, what), free(host), host = NULL;
    return host;
}

magna_status cuda_mse_forward(magna_graph *g, magna_node *n) {
    const int e = magna_cuda_mse_forward(fval(n->in[0]), fval(n->in[1]), n->in[0]->numel, g->workspace, fval(n),
                                         cuda_stream(g));
    return e ? cuda_fail(g, e, "mse") : MAGNA_OK;
}

void cuda_mse_backward(magna_graph *g, magna_node *n) {
    const int e = magna_cuda_mse_backward(fval(n->in[0]), fval(n->in[1]), n->grad, n->in[0]->grad, n->in[1]->grad,
                                          n->in[0]->numel, cuda_stream(g));
    if (e) cuda_fail(g, e, "mse");
}

magna_status cuda_bce_forward(magna_graph *g, magna_node *n) {
    const int64_t count = n->in[0]->numel;
    int *flag_dev = (int *)((float *)g->workspace + MAGNA_LAUNCH_SUM_BLOCKS), flag = 0;
    const int e = magna_cuda_bce_forward(fval(n->in[0]), fval(n->in[1]), count, g->workspace, flag_dev, fval(n),
                                         cuda_stream(g));
    if (e) return cuda_fail(g, e, "bce_with_logits");
    magna_status st = read_flag(g, flag_dev, &flag, "bce_with_logits");
    if (st || !flag) return st;
    float *t = cuda_fetch_all(g, fval(n->in[1]), count, sizeof *t, "bce_with_logits");
    if (!t) return g->last_status ? g->last_status : MAGNA_ERR_NOMEM;
    for (int64_t i = 0; !st && i < count; i++)
        if (!(t[i] >= 0.0f && t[i] <= 1.0f))
            st = graph_error(g, MAGNA_ERR_RANGE, "bce_with_logits: target %g at %lld is outside [0, 1]", t[i],
                             (long long)i);
    free(t);
    return st;
}

void cuda_bce_backward(magna_graph *g, magna_node *n) {
    const int e = magna_cuda_bce_backward(fval(n->in[0]), fval(n->in[1]), n->grad, n->in[0]->grad, n->in[1]->grad,
                                          n->in[0]->numel, cuda_stream(g));
    if (e) cuda_fail(g, e, "bce_with_logits");
}

/* cross-entropy: logits [..., C], labels int32 [...], optional class weights [C]. saved: each row's
 * log-sum-exp, then the count of rows the mean is over; workspace: each row's loss, then the flag. */
magna_status cuda_cross_entropy_forward(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    const int64_t C = x->shape[x->ndim - 1], rows = x->numel / C;
    const float *weight = n->n_in == 3 ? fval(n->in[2]) : NULL;
    float *row_loss = g->workspace;
    int *flag_dev = (int *)(row_loss + rows), flag = 0;
    const int e = magna_cuda_xent_forward(fval(x), ival(n->in[1]), weight, rows, C, n->saved, row_loss, flag_dev,
                                          fval(n), cuda_stream(g));
    if (e) return cuda_fail(g, e, "cross_entropy");
    magna_status st = read_flag(g, flag_dev, &flag, "cross_entropy");
    if (st || !flag) return st;
    int32_t *label = cuda_fetch_all(g, ival(n->in[1]), rows, sizeof *label, "cross_entropy");
    if (!label) return g->last_status ? g->last_status : MAGNA_ERR_NOMEM;
    for (int64_t r = 0; !st && r < rows; r++)
        if ((label[r] < 0 && label[r] != MAGNA_IGNORE_LABEL) || label[r] >= C)
            st = graph_error(g, MAGNA_ERR_RANGE, "cross_entropy: label %d at row %lld is outside [0, %lld)", label[r],
                             (long long)r, (long long)C);
    free(label);
    return st;
}

void cuda_cross_entropy_backward(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    if (!x->grad) return;
    const int64_t C = x->shape[x->ndim - 1], rows = x->numel / C;
    const float *weight = n->n_in == 3 ? fval(n->in[2]) : NULL;
    const int e = magna_cuda_xent_backward(fval(x), ival(n->in[1]), weight, n->saved, n->grad, x->grad, rows, C,
                                           cuda_stream(g));
    if (e) cuda_fail(g, e, "cross_entropy");
}
