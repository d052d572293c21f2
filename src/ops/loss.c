/* loss.c — losses that reduce to a scalar mean: MSE, cross-entropy from logits with class indices
 * (log-softmax and NLL fused), and binary cross-entropy from logits. Sums run in double so the loss of
 * a big batch does not drift. */
#include "common.h"
#include "../cuda/launch.h"

#include <math.h>

static magna_status scalar_out(magna_node *n) {
    node_set_shape(n, 1, (int64_t[]){1});
    n->dtype = MAGNA_F32;
    return MAGNA_OK;
}

static magna_status same_shape_infer(magna_graph *g, magna_node *n) {
    magna_node *a = n->in[0], *b = n->in[1];
    magna_status st;
    if ((st = require_dtype(g, n, 0, MAGNA_F32)) || (st = require_dtype(g, n, 1, MAGNA_F32))) return st;
    bool same = a->ndim == b->ndim;
    for (int d = 0; same && d < a->ndim; d++) same = a->shape[d] == b->shape[d];
    if (!same) {
        char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX];
        return graph_error(g, MAGNA_ERR_SHAPE, "%s: prediction %s and target %s differ in shape",
                           magna_op_table[n->op]->name, shape_str(a, sa, sizeof sa), shape_str(b, sb, sizeof sb));
    }
    /* the CUDA op's scratch: its partial sums and a flag for bad targets (cuda/reduce.cu) */
    n->workspace_bytes = (MAGNA_LAUNCH_SUM_BLOCKS + 1) * sizeof(float);
    return scalar_out(n);
}

/* ---- mse: mean((p - t)^2); dp = 2 (p - t) / n ---------------------------------------------------- */

static magna_status mse_forward(magna_graph *g, magna_node *n) {
    (void)g;
    const float *p = fval(n->in[0]), *t = fval(n->in[1]);
    const int64_t count = n->in[0]->numel;
    double s = 0;
PARALLEL_FOR_REDUCE(count > PAR_MIN, +, s, i, count, s += (double)(p[i] - t[i]) * (p[i] - t[i]););
    fval(n)[0] = (float)(s / (double)count);
    return MAGNA_OK;
}

static void mse_backward(magna_graph *g, magna_node *n) {
    (void)g;
    const float *p = fval(n->in[0]), *t = fval(n->in[1]);
    float *dp = n->in[0]->grad, *dt = n->in[1]->grad;
    const int64_t count = n->in[0]->numel;
    const float k = 2.0f * n->grad[0] / (float)count;
    for (int64_t i = 0; i < count; i++) {
        float d = k * (p[i] - t[i]);
        if (dp) dp[i] += d;
        if (dt) dt[i] -= d;
    }
}

const magna_op_def op_def_mse = {"mse", OPF_BWD_INPUTS, same_shape_infer, mse_forward, mse_backward};

/* ---- cross entropy: logits [..., C], labels int32 [...]; loss = mean(logsumexp(x) - x[label]) ----
 * over the rows whose label is not MAGNA_IGNORE_LABEL (padding). saved: the softmax of each counted row, so
 * backward is dx = (softmax - onehot) / counted rows. */

static magna_status ce_infer(magna_graph *g, magna_node *n) {
    magna_node *x = n->in[0], *y = n->in[1];
    magna_status st;
    if ((st = require_dtype(g, n, 0, MAGNA_F32)) || (st = require_dtype(g, n, 1, MAGNA_I32))) return st;
    int64_t rows = x->numel / x->shape[x->ndim - 1];
    bool fits = y->numel == rows && (y->ndim == x->ndim - 1 || (x->ndim == 1 && y->numel == 1));
    for (int d = 0; fits && d < y->ndim && x->ndim > 1; d++) fits = y->shape[d] == x->shape[d];
    if (!fits) {
        char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX];
        return graph_error(g, MAGNA_ERR_SHAPE,
                           "cross_entropy: logits %s need labels shaped like them without the class axis "
                           "(%lld entries), got %s",
                           shape_str(x, sa, sizeof sa), (long long)rows, shape_str(y, sb, sizeof sb));
    }
    if (n->n_in == 3) {
        magna_node *w = n->in[2];
        if ((st = require_dtype(g, n, 2, MAGNA_F32))) return st;
        if (w->ndim != 1 || w->shape[0] != x->shape[x->ndim - 1]) {
            char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX];
            return graph_error(g, MAGNA_ERR_SHAPE, "cross_entropy: class weights %s must be [%lld] for logits %s",
                               shape_str(w, sa, sizeof sa), (long long)x->shape[x->ndim - 1],
                               shape_str(x, sb, sizeof sb));
        }
    }
    /* the CPU keeps the softmax; the CUDA op (src/cuda/ops_reduce.c) each row's log-sum-exp and the count of
     * rows, and scratch for each row's loss and a flag for bad labels: a GPT-2 batch's softmax is 13 GB, its
     * log-sum-exps 256 KB. Compile runs this again on a graph given its device after the node was built;
     * until then the CPU's size is one float more than the softmax, so it holds the CUDA op's too. */
    n->saved_bytes = (size_t)((g->device == MAGNA_DEVICE_CUDA ? rows : x->numel) + 1) * sizeof(float);
    n->workspace_bytes = (size_t)(rows + 1) * sizeof(float);
    return scalar_out(n);
}

/* Rows whose label is not MAGNA_IGNORE_LABEL (padding): the mean is over these. */
static int64_t ce_counted_rows(const int32_t *label, int64_t rows) {
    int64_t counted = 0;
    for (int64_t r = 0; r < rows; r++) counted += label[r] != MAGNA_IGNORE_LABEL;
    return counted;
}

static magna_status ce_forward(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    const int64_t C = x->shape[x->ndim - 1], rows = x->numel / C;
    const float *X = fval(x);
    const int32_t *label = ival(n->in[1]);
    const float *weight = n->n_in == 3 ? fval(n->in[2]) : NULL;
    float *P = n->saved;
    for (int64_t r = 0; r < rows; r++)
        if ((label[r] < 0 && label[r] != MAGNA_IGNORE_LABEL) || label[r] >= C)
            return graph_error(g, MAGNA_ERR_RANGE, "cross_entropy: label %d at row %lld is outside [0, %lld)",
                               label[r], (long long)r, (long long)C);
    double total = 0;
PARALLEL_FOR_REDUCE(x->numel > PAR_MIN, +, total, r, rows, 
        if (label[r] != MAGNA_IGNORE_LABEL) {
            const float *xr = X + r * C;
            const double lse = magna_softmax_row(xr, P + r * C, C);
            total += (lse - xr[label[r]]) * (weight ? weight[label[r]] : 1.0f);
        }
    );
    const int64_t counted = ce_counted_rows(label, rows);
    fval(n)[0] = counted ? (float)(total / (double)counted) : 0.0f;
    return MAGNA_OK;
}

/* dx += (softmax - onehot) k; with grad_assign's bit 0 (the logits' gradient over their value, plan.c) dx = ...,
 * zero on ignored rows. It reads only the softmax it kept, never x, so writing over x is safe. */
static void ce_backward(magna_graph *g, magna_node *n) {
    (void)g;
    float *DX = n->in[0]->grad;
    if (!DX) return;
    const magna_node *x = n->in[0];
    const int64_t C = x->shape[x->ndim - 1], rows = x->numel / C;
    const float *P = n->saved;
    const int32_t *label = ival(n->in[1]);
    const float *weight = n->n_in == 3 ? fval(n->in[2]) : NULL;
    const int64_t counted = ce_counted_rows(label, rows);
    const bool assign = n->grad_assign & 1u;
    const float k0 = counted ? n->grad[0] / (float)counted : 0.0f;
    if (!counted && !assign) return;
    PARALLEL_FOR(x->numel > PAR_MIN, r, rows, {
        float *dx = DX + r * C;
        if (label[r] == MAGNA_IGNORE_LABEL) {
            if (assign) memset(dx, 0, (size_t)C * sizeof *dx);
            continue;
        }
        const float *p = P + r * C;
        const float k = weight ? k0 * weight[label[r]] : k0;
        if (assign)
            for (int64_t j = 0; j < C; j++) dx[j] = k * p[j];
        else
            for (int64_t j = 0; j < C; j++) dx[j] += k * p[j];
        dx[label[r]] -= k;
    });
}

const magna_op_def op_def_cross_entropy = {"cross_entropy", OPF_BWD_INPUTS | OPF_GRAD_OVER_INPUT, ce_infer, ce_forward, ce_backward};

/* ---- bce with logits: mean(max(x, 0) - x t + log(1 + e^-|x|)); dx = (sigmoid(x) - t) / n ---------- */

static magna_status bce_forward(magna_graph *g, magna_node *n) {
    const float *x = fval(n->in[0]), *t = fval(n->in[1]);
    const int64_t count = n->in[0]->numel;
    for (int64_t i = 0; i < count; i++)
        if (!(t[i] >= 0.0f && t[i] <= 1.0f))
            return graph_error(g, MAGNA_ERR_RANGE, "bce_with_logits: target %g at %lld is outside [0, 1]", t[i],
                               (long long)i);
    double s = 0;
PARALLEL_FOR_REDUCE(count > PAR_MIN, +, s, i, count, s += (x[i] > 0 ? x[i] : 0.0) - (double)x[i] * t[i] + log1p(exp(-fabs((double)x[i]))););
    fval(n)[0] = (float)(s / (double)count);
    return MAGNA_OK;
}

static void bce_backward(magna_graph *g, magna_node *n) {
    (void)g;
    const float *x = fval(n->in[0]), *t = fval(n->in[1]);
    float *dx = n->in[0]->grad, *dt = n->in[1]->grad;
    const int64_t count = n->in[0]->numel;
    const float k = n->grad[0] / (float)count;
    for (int64_t i = 0; i < count; i++) {
        float sig = x[i] >= 0 ? 1.0f / (1.0f + expf(-x[i])) : expf(x[i]) / (1.0f + expf(x[i]));
        if (dx) dx[i] += k * (sig - t[i]);
        if (dt) dt[i] -= k * x[i];
    }
}

const magna_op_def op_def_bce_with_logits = {"bce_with_logits", OPF_BWD_INPUTS, same_shape_infer, bce_forward,
                                             bce_backward};

static magna_node *loss(magna_graph *g, op_id op, magna_node *a, magna_node *b) {
    if (!g) return NULL;
    magna_node *in[2] = {a, b};
    return graph_add_node(g, op, 2, in, NULL, 0, NULL, 0);
}

magna_node *magna_mse(magna_graph *g, magna_node *p, magna_node *t) { return loss(g, OP_MSE, p, t); }
magna_node *magna_cross_entropy(magna_graph *g, magna_node *x, magna_node *y) { return loss(g, OP_CROSS_ENTROPY, x, y); }
magna_node *magna_cross_entropy_weighted(magna_graph *g, magna_node *x, magna_node *y, magna_node *w) {
    if (!g) return NULL;
    magna_node *in[3] = {x, y, w};
    return graph_add_node(g, OP_CROSS_ENTROPY, 3, in, NULL, 0, NULL, 0);
}
magna_node *magna_bce_with_logits(magna_graph *g, magna_node *x, magna_node *t) {
    return loss(g, OP_BCE_WITH_LOGITS, x, t);
}
