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
    /* the two-pass sums' scratch, which the CPU infer asked for (reduce_infer in ops/reduce.c) */
    const size_t need = magna_reduce_workspace(kept.n, red.n);
    float *ws = need && n->workspace_bytes >= need ? g->workspace : NULL;
    const int e = magna_cuda_reduce_axes(n->op == OP_MAX, &kept, &red, fval(x), scale, fval(n), n->saved, ws,
                                         cuda_stream(g));
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
 * Bad data (a label or target out of range) is refused with the CPU op's message: checked on the host when
 * it is an input (cuda_host_values), else flagged by the kernel in the workspace, the flag read back (a
 * synchronisation) and then, only when it is set, the data, to name the first bad element. */

const void *cuda_host_values(const magna_node *x) {
    while (x->kind == NODE_OP && (magna_op_table[x->op]->flags & OPF_VIEW)) x = x->in[0];
    return x->kind == NODE_INPUT ? x->host : NULL;
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

/* after a kernel that flagged bad data in *flag_dev (NULL: checked on the host already): the device's data
 * read back and `check` run on it, which sets the error */
static magna_status check_flagged(magna_graph *g, const int *flag_dev, const void *data_dev, int64_t n, size_t size,
                                  const char *what, magna_status (*check)(magna_graph *, const void *, int64_t, int64_t),
                                  int64_t arg) {
    int flag = 0;
    if (!flag_dev) return MAGNA_OK;
    const int e = cuda_fetch(&flag, flag_dev, sizeof flag, cuda_stream(g));
    if (e) return cuda_fail(g, e, what);
    if (!flag) return MAGNA_OK;
    void *host = cuda_fetch_all(g, data_dev, n, size, what);
    if (!host) return g->last_status ? g->last_status : MAGNA_ERR_NOMEM;
    const magna_status st = check(g, host, n, arg);
    free(host);
    return st;
}

static magna_status check_targets(magna_graph *g, const void *data, int64_t count, int64_t unused) {
    (void)unused;
    const float *t = data;
    for (int64_t i = 0; i < count; i++)
        if (!(t[i] >= 0.0f && t[i] <= 1.0f))
            return graph_error(g, MAGNA_ERR_RANGE, "bce_with_logits: target %g at %lld is outside [0, 1]", t[i],
                               (long long)i);
    return MAGNA_OK;
}

static magna_status check_labels(magna_graph *g, const void *data, int64_t rows, int64_t C) {
    const int32_t *label = data;
    for (int64_t r = 0; r < rows; r++)
        if ((label[r] < 0 && label[r] != MAGNA_IGNORE_LABEL) || label[r] >= C)
            return graph_error(g, MAGNA_ERR_RANGE, "cross_entropy: label %d at row %lld is outside [0, %lld)", label[r],
                               (long long)r, (long long)C);
    return MAGNA_OK;
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
    const float *t_host = cuda_host_values(n->in[1]);
    magna_status st = t_host ? check_targets(g, t_host, count, 0) : MAGNA_OK;
    if (st) return st;
    int *flag_dev = t_host ? NULL : (int *)((float *)g->workspace + MAGNA_LAUNCH_SUM_BLOCKS);
    const int e = magna_cuda_bce_forward(fval(n->in[0]), fval(n->in[1]), count, g->workspace, flag_dev, fval(n),
                                         cuda_stream(g));
    if (e) return cuda_fail(g, e, "bce_with_logits");
    return check_flagged(g, flag_dev, fval(n->in[1]), count, sizeof(float), "bce_with_logits", check_targets, 0);
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
    const int32_t *label_host = cuda_host_values(n->in[1]);
    magna_status st = label_host ? check_labels(g, label_host, rows, C) : MAGNA_OK;
    if (st) return st;
    float *row_loss = g->workspace;
    int *flag_dev = label_host ? NULL : (int *)(row_loss + rows);
    const int e = magna_cuda_xent_forward(x->value, x->stored16, ival(n->in[1]), weight, rows, C, n->saved, row_loss,
                                          flag_dev, fval(n), cuda_stream(g));
    if (e) return cuda_fail(g, e, "cross_entropy");
    return check_flagged(g, flag_dev, ival(n->in[1]), rows, sizeof(int32_t), "cross_entropy", check_labels, C);
}

void cuda_cross_entropy_backward(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    if (!x->grad) return;
    const int64_t C = x->shape[x->ndim - 1], rows = x->numel / C;
    const float *weight = n->n_in == 3 ? fval(n->in[2]) : NULL;
    /* grad_assign: x's gradient is written over x (plan.c's grad_in_value) */
    const int e = magna_cuda_xent_backward(x->value, x->stored16, ival(n->in[1]), weight, n->saved, n->grad, x->grad,
                                           (n->grad_assign & 1u) != 0, rows, C, cuda_stream(g));
    if (e) cuda_fail(g, e, "cross_entropy");
}
