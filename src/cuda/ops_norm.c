/* ops_norm.c — OP_LAYER_NORM and OP_BATCH_NORM on a CUDA graph (kernels in norm.cu), reading the nodes as
 * src/ops/layer_norm.c and batch_norm.c do. Float32 in every mode: mixed precision keeps norm statistics
 * in float32.
 *
 * layer_norm: in[0] x [..., D], then gamma if ip[0], then beta if ip[1]; fp[0] eps; saved = mean [N], rstd [N].
 * batch_norm: x [N, C] or [N, C, H, W], gamma (ip[0]), beta (ip[1]), running_mean, running_var (the last two
 * inputs); fp[0] momentum, fp[1] eps; saved = mean [C], invstd [C], batch-statistics flag; g->training picks
 * batch or running statistics, as on the CPU. */
#include "ops_glue.h"
#include "kernels.h"


magna_status cuda_layer_norm_forward(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0], *gn = cuda_ln_gamma(n), *bn = cuda_ln_beta(n);
    const int64_t D = x->shape[x->ndim - 1], N = x->numel / D;
    float *mean = (float *)n->saved;
    const int e = magna_cuda_layer_norm_forward(fval(x), gn ? fval(gn) : NULL, bn ? fval(bn) : NULL, n->fp[0], N, D,
                                                n->value, n->stored16, mean, mean + N, cuda_stream(g));
    return cuda_fail(g, e, "layer_norm forward");
}

void cuda_layer_norm_backward(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0], *gn = cuda_ln_gamma(n), *bn = cuda_ln_beta(n);
    const int64_t D = x->shape[x->ndim - 1], N = x->numel / D;
    const float *mean = (const float *)n->saved;
    /* the dgamma/dbeta slices take what there is of the graph's workspace (the CPU infer asks >= 2 D floats) */
    const int e = magna_cuda_layer_norm_backward(fval(x), gn ? fval(gn) : NULL, n->grad, mean, mean + N, N, D, x->grad,
                                                 gn ? gn->grad : NULL, bn ? bn->grad : NULL, (float *)g->workspace,
                                                 g->workspace_bytes / sizeof(float), cuda_stream(g));
    if (e) cuda_fail(g, e, "layer_norm backward");
}

typedef struct bn_view {
    magna_node *x, *gamma, *beta, *rmean, *rvar;
    magna_cuda_bn d;
} bn_view;

static bn_view bn_view_of(const magna_graph *g, const magna_node *n) {
    bn_view v;
    int i = 0;
    v.x = n->in[i++];
    v.gamma = n->ip[0] ? n->in[i++] : NULL;
    v.beta = n->ip[1] ? n->in[i++] : NULL;
    v.rmean = n->in[i++];
    v.rvar = n->in[i++];
    v.d.N = v.x->shape[0], v.d.C = v.x->shape[1];
    v.d.HW = v.x->ndim == 4 ? v.x->shape[2] * v.x->shape[3] : 1;
    v.d.momentum = n->fp[0], v.d.eps = n->fp[1];
    v.d.training = g->training;
    return v;
}

magna_status cuda_batch_norm_forward(magna_graph *g, magna_node *n) {
    const bn_view v = bn_view_of(g, n);
    const int e = magna_cuda_batch_norm_forward(&v.d, fval(v.x), v.gamma ? fval(v.gamma) : NULL,
                                                v.beta ? fval(v.beta) : NULL, fval(v.rmean), fval(v.rvar), fval(n),
                                                (float *)n->saved, cuda_stream(g));
    return cuda_fail(g, e, "batch_norm forward");
}

void cuda_batch_norm_backward(magna_graph *g, magna_node *n) {
    const bn_view v = bn_view_of(g, n);
    const int e = magna_cuda_batch_norm_backward(&v.d, fval(v.x), v.gamma ? fval(v.gamma) : NULL, n->grad,
                                                 (const float *)n->saved, v.x->grad, v.gamma ? v.gamma->grad : NULL,
                                                 v.beta ? v.beta->grad : NULL, cuda_stream(g));
    if (e) cuda_fail(g, e, "batch_norm backward");
}
