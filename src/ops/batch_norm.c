/* batch_norm.c — batch normalisation over N (x [N, C]) or N, H, W (x [N, C, H, W]), per channel c.
 *
 * Inputs, in order: x, gamma (if ip[0]), beta (if ip[1]), running_mean, running_var. gamma and beta are
 * optional, so the running statistics are always the last two inputs (in[n_in - 2], in[n_in - 1]); they
 * must be state nodes and never receive a gradient. ip: [0] has gamma, [1] has beta. fp: [0] momentum,
 * [1] eps.
 *
 * Training (g->training), with M = N H W values per channel:
 *   mean = sum x / M,  var = sum (x - mean)^2 / M,  invstd = 1 / sqrt(var + eps)
 *   y = (x - mean) invstd gamma + beta
 *   running_mean = (1 - m) running_mean + m mean,  running_var = (1 - m) running_var + m var M / (M - 1)
 * Inference: the same y with mean = running_mean and invstd = 1 / sqrt(running_var + eps).
 * saved: mean [C], invstd [C], then one float saying whether they were batch statistics (1) or not (0),
 * so backward uses the formula that matches the forward it follows.
 *
 * Backward, xhat = (x - mean) invstd:
 *   dgamma += sum dy xhat,  dbeta += sum dy
 *   batch statistics:  dx += gamma invstd (dy - sum dy / M - xhat sum (dy xhat) / M)
 *   running:           dx += gamma invstd dy */
#include "common.h"

#include <math.h>

typedef struct bn_view {
    const magna_node *x, *gamma, *beta, *rmean, *rvar;
    int64_t N, C, HW;
} bn_view;

static bn_view bn_view_of(const magna_node *n) {
    bn_view v;
    int i = 0;
    v.x = n->in[i++];
    v.gamma = n->ip[0] ? n->in[i++] : NULL;
    v.beta = n->ip[1] ? n->in[i++] : NULL;
    v.rmean = n->in[i++];
    v.rvar = n->in[i++];
    v.N = v.x->shape[0];
    v.C = v.x->shape[1];
    v.HW = v.x->ndim == 4 ? v.x->shape[2] * v.x->shape[3] : 1;
    return v;
}

/* x [N, C] or [N, C, H, W]; gamma, beta, running_mean, running_var all [C]. Output: x's shape. */
static magna_status batch_norm_infer(magna_graph *g, magna_node *n) {
    for (int i = 0; i < n->n_in; i++) {
        magna_status st = require_dtype(g, n, i, MAGNA_F32);
        if (st != MAGNA_OK) return st;
    }
    const bn_view v = bn_view_of(n);
    char xs[SHAPE_STR_MAX], ps[SHAPE_STR_MAX];
    shape_str(v.x, xs, sizeof xs);
    if (v.x->ndim != 2 && v.x->ndim != 4)
        return graph_error(g, MAGNA_ERR_SHAPE, "batch_norm: input %s must be [N, C] or [N, C, H, W]", xs);
    const magna_node *per_channel[4] = {v.gamma, v.beta, v.rmean, v.rvar};
    const char *what[4] = {"gamma", "beta", "running_mean", "running_var"};
    for (int k = 0; k < 4; k++) {
        const magna_node *p = per_channel[k];
        if (!p) continue;
        if (p->ndim != 1 || p->shape[0] != v.C)
            return graph_error(g, MAGNA_ERR_SHAPE, "batch_norm: input %s has %lld channels but %s is %s", xs,
                               (long long)v.C, what[k], shape_str(p, ps, sizeof ps));
        if (k >= 2 && p->kind != NODE_STATE)
            return graph_error(g, MAGNA_ERR_ARG, "batch_norm: %s ('%s') must be a state node (magna_state)", what[k],
                               p->name);
    }
    node_set_shape(n, v.x->ndim, v.x->shape);
    n->dtype = MAGNA_F32;
    n->saved_bytes = (size_t)(2 * v.C + 1) * sizeof(float);
    n->workspace_bytes = 0;
    return MAGNA_OK;
}

/* Per channel: mean and invstd (batch or running), y = (x - mean) invstd gamma + beta; in training also
 * the running-statistics update. */
static magna_status batch_norm_forward(magna_graph *g, magna_node *n) {
    const bn_view v = bn_view_of(n);
    const float *x = fval(v.x), *gamma = v.gamma ? fval(v.gamma) : NULL, *beta = v.beta ? fval(v.beta) : NULL;
    float *rmean = fval(v.rmean), *rvar = fval(v.rvar), *y = fval(n);
    float *mean = (float *)n->saved, *invstd = mean + v.C;
    const float momentum = n->fp[0], eps = n->fp[1];
    const bool batch_stats = g->training;
    const int64_t N = v.N, C = v.C, HW = v.HW, M = N * HW;
    mean[2 * C] = batch_stats ? 1.0f : 0.0f;
PARALLEL_FOR(n->numel > PAR_MIN, c, C, 
        float mu, istd;
        if (batch_stats) {
            double s = 0, ss = 0;
            for (int64_t i = 0; i < N; i++) {
                const float *xr = x + (i * C + c) * HW;
                for (int64_t j = 0; j < HW; j++) s += xr[j];
            }
            const double m = s / (double)M;
            for (int64_t i = 0; i < N; i++) {
                const float *xr = x + (i * C + c) * HW;
                for (int64_t j = 0; j < HW; j++) ss += (xr[j] - m) * (xr[j] - m);
            }
            const double var = ss / (double)M;
            mu = (float)m;
            istd = (float)(1.0 / sqrt(var + (double)eps));
            const double unbiased = M > 1 ? var * (double)M / (double)(M - 1) : var;
            rmean[c] = (1.0f - momentum) * rmean[c] + momentum * mu;
            rvar[c] = (1.0f - momentum) * rvar[c] + momentum * (float)unbiased;
        } else {
            mu = rmean[c];
            istd = (float)(1.0 / sqrt((double)rvar[c] + (double)eps));
        }
        mean[c] = mu;
        invstd[c] = istd;
        const float scale = (gamma ? gamma[c] : 1.0f) * istd, shift = beta ? beta[c] : 0.0f;
        for (int64_t i = 0; i < N; i++) {
            const float *xr = x + (i * C + c) * HW;
            float *yr = y + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++) yr[j] = (xr[j] - mu) * scale + shift;
        }
    );
    return MAGNA_OK;
}

/* dgamma += sum dy xhat, dbeta += sum dy, and dx by the formula of the statistics forward used. */
static void batch_norm_backward(magna_graph *g, magna_node *n) {
    (void)g;
    const bn_view v = bn_view_of(n);
    const float *x = fval(v.x), *gamma = v.gamma ? fval(v.gamma) : NULL, *dy = n->grad;
    float *dx = v.x->grad, *dgamma = v.gamma ? v.gamma->grad : NULL, *dbeta = v.beta ? v.beta->grad : NULL;
    const float *mean = (const float *)n->saved, *invstd = mean + v.C;
    const int64_t N = v.N, C = v.C, HW = v.HW, M = N * HW;
    const bool batch_stats = mean[2 * C] != 0.0f;
PARALLEL_FOR(n->numel > PAR_MIN, c, C, 
        const float mu = mean[c], istd = invstd[c];
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < N; i++) {
            const float *xr = x + (i * C + c) * HW, *dyr = dy + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++) {
                sdy += dyr[j];
                sdyx += (double)dyr[j] * ((xr[j] - mu) * istd);
            }
        }
        if (dgamma) dgamma[c] += (float)sdyx;
        if (dbeta) dbeta[c] += (float)sdy;
        if (!dx) continue;
        const float k = (gamma ? gamma[c] : 1.0f) * istd;
        const float mdy = batch_stats ? (float)(sdy / (double)M) : 0.0f;
        const float mdyx = batch_stats ? (float)(sdyx / (double)M) : 0.0f;
        for (int64_t i = 0; i < N; i++) {
            const float *xr = x + (i * C + c) * HW, *dyr = dy + (i * C + c) * HW;
            float *dxr = dx + (i * C + c) * HW;
            for (int64_t j = 0; j < HW; j++) dxr[j] += k * (dyr[j] - mdy - (xr[j] - mu) * istd * mdyx);
        }
    );
}

const magna_op_def op_def_batch_norm = {"batch_norm", OPF_BWD_INPUTS, batch_norm_infer, batch_norm_forward,
                                        batch_norm_backward};

magna_node *magna_batch_norm(magna_graph *g, magna_node *x, magna_node *gamma, magna_node *beta,
                             magna_node *running_mean, magna_node *running_var, float momentum, float eps) {
    if (!g) return NULL;
    if (!(momentum >= 0.0f && momentum <= 1.0f) || !(eps > 0.0f) || isinf(eps)) {
        graph_error(g, MAGNA_ERR_ARG, "batch_norm: momentum %g must be in [0, 1] and eps %g positive and finite",
                    (double)momentum, (double)eps);
        return NULL;
    }
    if (!running_mean || !running_var) {
        graph_error(g, MAGNA_ERR_ARG, "batch_norm: running_mean and running_var (state nodes [C]) are required");
        return NULL;
    }
    magna_node *in[5];
    int k = 0;
    in[k++] = x;
    if (gamma) in[k++] = gamma;
    if (beta) in[k++] = beta;
    in[k++] = running_mean;
    in[k++] = running_var;
    const int64_t ip[2] = {gamma != NULL, beta != NULL};
    const float fp[2] = {momentum, eps};
    return graph_add_node(g, OP_BATCH_NORM, k, in, ip, 2, fp, 2);
}
