/* ops_conv.c — OP_CONV2D, OP_MAX_POOL2D and OP_AVG_POOL2D on a CUDA graph, reading the nodes as
 * src/ops/conv2d.c and pool2d.c do (kernels in conv.cu, GEMMs through magna_cuda_gemm; bf16 operands in mixed
 * precision).
 *
 * conv2d, x [N, C, H, W], w [OC, C, KH, KW] (= [OC, K]), bias [OC] (in[2] when n_in == 3) -> y [N, OC, P],
 * P = OH OW; ip: stride, padding, dilation (h, w each). Samples go in groups as large as the graph's workspace
 * holds (at least one: the CPU infer always asks for one sample's columns):
 *   forward   col [g, K, P] = im2col(x_g); y_g = w @ col_j for each j (one batched GEMM, w shared); + bias
 *             (a 1x1 kernel, stride 1, no padding: x is its own col, one batched GEMM over the whole batch)
 *   dx        dcol_j = w^T @ dy_j (batched), dx_g += col2im(dcol)   (1x1: dx_j += w^T @ dy_j directly)
 *   dw        dw += dys @ col^T, one GEMM a group: dys [OC, g P] the group's dy side by side, col [K, g P];
 *             when two samples' worth does not fit, a GEMM a sample
 *   dbias     sum of dy over samples and positions, a block per channel
 * Every sum is in a fixed order: the same bits every run. */
#include "ops/conv2d.h" /* magna_pool_dims_of */
#include "ops_glue.h"
#include "kernels.h"

typedef struct conv_view {
    magna_cuda_conv c;
    int N, OC, K;
    long long P;
    int direct; /* 1x1, stride 1, no padding */
} conv_view;

static conv_view conv_view_of(const magna_node *n) {
    const magna_node *x = n->in[0], *w = n->in[1];
    conv_view v;
    magna_cuda_conv *c = &v.c;
    v.N = (int)x->shape[0], c->C = (int)x->shape[1], c->H = (int)x->shape[2], c->W = (int)x->shape[3];
    v.OC = (int)w->shape[0], c->KH = (int)w->shape[2], c->KW = (int)w->shape[3];
    c->sh = (int)n->ip[0], c->sw = (int)n->ip[1], c->ph = (int)n->ip[2], c->pw = (int)n->ip[3];
    c->dh = (int)n->ip[4], c->dw = (int)n->ip[5];
    c->OH = (int)n->shape[2], c->OW = (int)n->shape[3];
    v.K = c->C * c->KH * c->KW;
    v.P = (long long)c->OH * c->OW;
    v.direct = c->KH == 1 && c->KW == 1 && c->sh == 1 && c->sw == 1 && c->ph == 0 && c->pw == 0;
    return v;
}

/* samples whose `per_sample` floats fit the graph's workspace, at most N */
static int fit_samples(const magna_graph *g, int N, long long per_sample) {
    const long long fit = per_sample > 0 ? (long long)(g->workspace_bytes / sizeof(float)) / per_sample : N;
    return fit < N ? (int)fit : N;
}

magna_status cuda_conv2d_forward(magna_graph *g, magna_node *n) {
    const conv_view v = conv_view_of(n);
    void *s = cuda_stream(g), *blas = cuda_blas(g);
    const float *x = fval(n->in[0]), *w = fval(n->in[1]);
    float *y = fval(n), *col = (float *)g->workspace;
    const long long xs = (long long)v.c.C * v.c.H * v.c.W, ys = (long long)v.OC * v.P, cs = (long long)v.K * v.P;
    int e = 0;
    if (v.direct) {
        e = magna_cuda_gemm(blas, s, 0, 0, v.OC, (int)v.P, v.K, 1.0f, w, v.K, 0, x, (int)v.P, xs, 0.0f, y, (int)v.P, ys,
                            v.N, g->bf16);
    } else {
        const int group = fit_samples(g, v.N, cs);
        if (group < 1)
            return graph_error(g, MAGNA_ERR_STATE, "conv2d: the workspace (%zu bytes) holds no sample's columns (%lld)",
                               g->workspace_bytes, cs * (long long)sizeof(float));
        for (int s0 = 0; s0 < v.N && !e; s0 += group) {
            const int cnt = v.N - s0 < group ? v.N - s0 : group;
            e = magna_cuda_im2col(&v.c, cnt, x + s0 * xs, col, v.P, cs, s);
            if (!e)
                e = magna_cuda_gemm(blas, s, 0, 0, v.OC, (int)v.P, v.K, 1.0f, w, v.K, 0, col, (int)v.P, cs, 0.0f,
                                    y + s0 * ys, (int)v.P, ys, cnt, g->bf16);
        }
    }
    if (!e && n->n_in > 2) e = magna_cuda_bias_add(fval(n->in[2]), v.N, v.OC, v.P, y, s);
    return cuda_fail(g, e, "conv2d forward");
}

/* dx += col2im(w^T @ dy), a group of samples at a time */
static int conv_dx(magna_graph *g, const conv_view *v, const float *w, const float *dy, float *dx) {
    void *s = cuda_stream(g), *blas = cuda_blas(g);
    const long long xs = (long long)v->c.C * v->c.H * v->c.W, ys = (long long)v->OC * v->P, cs = (long long)v->K * v->P;
    if (v->direct)
        return magna_cuda_gemm(blas, s, 1, 0, v->K, (int)v->P, v->OC, 1.0f, w, v->K, 0, dy, (int)v->P, ys, 1.0f, dx,
                               (int)v->P, xs, v->N, g->bf16);
    float *col = (float *)g->workspace;
    const int group = fit_samples(g, v->N, cs);
    if (group < 1) return -1;
    int e = 0;
    for (int s0 = 0; s0 < v->N && !e; s0 += group) {
        const int cnt = v->N - s0 < group ? v->N - s0 : group;
        e = magna_cuda_gemm(blas, s, 1, 0, v->K, (int)v->P, v->OC, 1.0f, w, v->K, 0, dy + s0 * ys, (int)v->P, ys, 0.0f,
                            col, (int)v->P, cs, cnt, g->bf16);
        if (!e) e = magna_cuda_col2im_add(&v->c, cnt, col, v->P, cs, dx + s0 * xs, s);
    }
    return e;
}

/* dw [OC, K] += sum over samples of dy_j [OC, P] @ col_j^T */
static int conv_dw(magna_graph *g, const conv_view *v, const float *x, const float *dy, float *dw) {
    void *s = cuda_stream(g), *blas = cuda_blas(g);
    const long long xs = (long long)v->c.C * v->c.H * v->c.W, ys = (long long)v->OC * v->P, cs = (long long)v->K * v->P;
    float *ws = (float *)g->workspace;
    const int group = fit_samples(g, v->N, (long long)(v->K + v->OC) * v->P);
    int e = 0;
    if (group >= 2) { /* dys [OC, g P] then col [K, g P]: one deep GEMM a group */
        for (int s0 = 0; s0 < v->N && !e; s0 += group) {
            const int cnt = v->N - s0 < group ? v->N - s0 : group;
            const long long ld = (long long)cnt * v->P;
            float *dys = ws, *col = ws + (long long)v->OC * ld;
            e = magna_cuda_conv_stage(dy + s0 * ys, cnt, v->OC, v->P, dys, s);
            if (!e) e = magna_cuda_im2col(&v->c, cnt, x + s0 * xs, col, ld, v->P, s);
            if (!e)
                e = magna_cuda_gemm(blas, s, 0, 1, v->OC, v->K, (int)ld, 1.0f, dys, (int)ld, 0, col, (int)ld, 0, 1.0f,
                                    dw, v->K, 0, 1, g->bf16);
        }
        return e;
    }
    if (!v->direct && fit_samples(g, 1, cs) < 1) return -1;
    for (int j = 0; j < v->N && !e; j++) { /* a sample at a time: x_j is its own col when direct */
        const float *col = x + j * xs;
        if (!v->direct) {
            e = magna_cuda_im2col(&v->c, 1, x + j * xs, ws, v->P, cs, s);
            col = ws;
        }
        if (!e)
            e = magna_cuda_gemm(blas, s, 0, 1, v->OC, v->K, (int)v->P, 1.0f, dy + j * ys, (int)v->P, 0, col, (int)v->P, 0,
                                1.0f, dw, v->K, 0, 1, g->bf16);
    }
    return e;
}

void cuda_conv2d_backward(magna_graph *g, magna_node *n) {
    const conv_view v = conv_view_of(n);
    const float *x = fval(n->in[0]), *w = fval(n->in[1]), *dy = n->grad;
    float *dx = n->in[0]->grad, *dw = n->in[1]->grad, *db = n->n_in > 2 ? n->in[2]->grad : NULL;
    int e = 0;
    if (db) e = magna_cuda_bias_grad(dy, v.N, v.OC, v.P, db, cuda_stream(g));
    if (!e && dx) e = conv_dx(g, &v, w, dy, dx);
    if (!e && dw) e = conv_dw(g, &v, x, dy, dw);
    if (e == -1)
        graph_error(g, MAGNA_ERR_STATE, "conv2d backward: the workspace (%zu bytes) holds no sample's columns (%lld)",
                    g->workspace_bytes, (long long)v.K * v.P * (long long)sizeof(float));
    else if (e)
        cuda_fail(g, e, "conv2d backward");
}

/* ---- pooling -------------------------------------------------------------------------------------------------- */

magna_status cuda_max_pool2d_forward(magna_graph *g, magna_node *n) {
    const magna_pool_dims d = magna_pool_dims_of(n);
    const int e = magna_cuda_max_pool_forward(&d, fval(n->in[0]), fval(n), (int32_t *)n->saved, cuda_stream(g));
    return cuda_fail(g, e, "max_pool2d forward");
}

void cuda_max_pool2d_backward(magna_graph *g, magna_node *n) {
    if (!n->in[0]->grad) return;
    const magna_pool_dims d = magna_pool_dims_of(n);
    const int e = magna_cuda_max_pool_backward(&d, n->grad, (const int32_t *)n->saved, n->in[0]->grad, cuda_stream(g));
    if (e) cuda_fail(g, e, "max_pool2d backward");
}

magna_status cuda_avg_pool2d_forward(magna_graph *g, magna_node *n) {
    const magna_pool_dims d = magna_pool_dims_of(n);
    const int e = magna_cuda_avg_pool_forward(&d, fval(n->in[0]), fval(n), cuda_stream(g));
    return cuda_fail(g, e, "avg_pool2d forward");
}

void cuda_avg_pool2d_backward(magna_graph *g, magna_node *n) {
    if (!n->in[0]->grad) return;
    const magna_pool_dims d = magna_pool_dims_of(n);
    const int e = magna_cuda_avg_pool_backward(&d, n->grad, n->in[0]->grad, cuda_stream(g));
    if (e) cuda_fail(g, e, "avg_pool2d backward");
}
