/* softmax.c — softmax and log-softmax over the last axis, numerically stable (max subtracted).
 * x is [..., C]. softmax backward: dx = y (dy - sum(dy y)); log-softmax: dx = dy - softmax(x) sum(dy). */
#include "common.h"

#include <math.h>

double magna_softmax_row(const float *x, float *y, int64_t n) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) mx = x[j] > mx ? x[j] : mx;
    for (int64_t j = 0; j < n; j++) y[j] = x[j] - mx;
    magna_vexp(y, y, n);
    double sum = 0;
    for (int64_t j = 0; j < n; j++) sum += y[j];
    const float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n; j++) y[j] *= inv;
    return mx + log(sum);
}

static magna_status softmax_forward(magna_graph *g, magna_node *n) {
    (void)g;
    const int64_t C = n->shape[n->ndim - 1], rows = n->numel / C;
    const float *X = fval(n->in[0]);
    float *Y = fval(n);
    const bool log_form = n->op == OP_LOG_SOFTMAX;
    PARALLEL_FOR(n->numel > PAR_MIN, r, rows, {
        const float *x = X + r * C;
        float *y = Y + r * C;
        const double lse = magna_softmax_row(x, y, C);
        if (log_form)
            for (int64_t j = 0; j < C; j++) y[j] = (float)(x[j] - lse);
    });
    return MAGNA_OK;
}

static void softmax_backward(magna_graph *g, magna_node *n) {
    (void)g;
    float *DX = n->in[0]->grad;
    if (!DX) return;
    const int64_t C = n->shape[n->ndim - 1], rows = n->numel / C;
    const float *Y = fval(n), *DY = n->grad;
    const bool log_form = n->op == OP_LOG_SOFTMAX;
PARALLEL_FOR(n->numel > PAR_MIN, r, rows, 
        const float *y = Y + r * C, *dy = DY + r * C;
        float *dx = DX + r * C;
        double s = 0;
        if (log_form) {
            for (int64_t j = 0; j < C; j++) s += dy[j];
            for (int64_t j = 0; j < C; j++) dx[j] += dy[j] - expf(y[j]) * (float)s;
        } else {
            for (int64_t j = 0; j < C; j++) s += (double)dy[j] * y[j];
            for (int64_t j = 0; j < C; j++) dx[j] += y[j] * (dy[j] - (float)s);
        }
    );
}

const magna_op_def op_def_softmax = {"softmax", OPF_BWD_OUTPUT, infer_like_input, softmax_forward, softmax_backward};
const magna_op_def op_def_log_softmax = {"log_softmax", OPF_BWD_OUTPUT, infer_like_input, softmax_forward,
                                         softmax_backward};

magna_node *magna_softmax(magna_graph *g, magna_node *x) {
    return g ? graph_add_node(g, OP_SOFTMAX, 1, &x, NULL, 0, NULL, 0) : NULL;
}
magna_node *magna_log_softmax(magna_graph *g, magna_node *x) {
    return g ? graph_add_node(g, OP_LOG_SOFTMAX, 1, &x, NULL, 0, NULL, 0) : NULL;
}
