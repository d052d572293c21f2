/* conv2d.c — 2-D convolution, NCHW, as im2col + sgemm, with a direct-loop reference to test it against.
 *
 *   x [N, C, H, W], w [OC, C, KH, KW], bias [OC] (optional: in[2] is there only when n_in == 3)
 *   -> y [N, OC, OH, OW], OH = (H + 2 ph - dh (KH - 1) - 1) / sh + 1 (OW alike)
 *
 * Per group of g samples side by side (g P columns), with K = C KH KW and P = OH OW:
 *   col [K, g P] = im2col(x_g)          y_g [OC, g P] = w [OC, K] @ col + bias
 *   dw [OC, K] += dy_g @ col^T          dcol [K, g P] = w^T @ dy_g,  dx_g += col2im(dcol)
 *   dbias [OC] += sum over n and P of dy
 * Groups keep the GEMMs wide on small images (7x7 is 49 columns a sample); a 1x1 kernel with stride 1
 * and no padding needs no im2col (col is x_n itself) and goes one sample at a time.
 *
 * Threads: with at least two samples per call the groups are shared among the threads (each with its
 * own scratch in the workspace, sgemm single-threaded inside the region); dw is then summed into
 * per-thread partials and reduced in thread order, so results depend only on the thread count. With one
 * sample (or one thread) the loop is serial, im2col parallel over planes and sgemm multi-threaded.
 *
 * ip: [0] stride_h, [1] stride_w, [2] pad_h, [3] pad_w, [4] dilation_h, [5] dilation_w. */
#include "common.h"
#include "conv2d.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <omp.h>

static int max_threads(void) { return omp_get_max_threads(); }

/* Everything a kernel needs, read from the node's current shapes. */
typedef struct conv_dims {
    int N, C, H, W, OC, KH, KW, OH, OW;
    int sh, sw, ph, pw, dh, dw;
    int K, P;    /* rows of col (C KH KW) and columns per sample (OH OW) */
    bool direct; /* 1x1, stride 1, no padding: col is x_n itself */
} conv_dims;

static conv_dims conv_dims_of(const magna_node *n) {
    const magna_node *x = n->in[0], *w = n->in[1];
    conv_dims d;
    d.N = (int)x->shape[0], d.C = (int)x->shape[1], d.H = (int)x->shape[2], d.W = (int)x->shape[3];
    d.OC = (int)w->shape[0], d.KH = (int)w->shape[2], d.KW = (int)w->shape[3];
    d.sh = (int)n->ip[0], d.sw = (int)n->ip[1], d.ph = (int)n->ip[2], d.pw = (int)n->ip[3];
    d.dh = (int)n->ip[4], d.dw = (int)n->ip[5];
    d.OH = (d.H + 2 * d.ph - d.dh * (d.KH - 1) - 1) / d.sh + 1;
    d.OW = (d.W + 2 * d.pw - d.dw * (d.KW - 1) - 1) / d.sw + 1;
    d.K = d.C * d.KH * d.KW;
    d.P = d.OH * d.OW;
    d.direct = d.KH == 1 && d.KW == 1 && d.sh == 1 && d.sw == 1 && d.ph == 0 && d.pw == 0;
    return d;
}

/* Small images make thin GEMMs (7x7: 49 columns), so a GEMM takes a group of samples side by side,
 * up to about this many columns. */
#define CONV_GEMM_COLS 512

/* How a call splits the batch: `threads` threads (1: the serial path, sgemm multi-threaded) each taking
 * groups of `group` samples, and each thread's slice of the workspace (floats, each part 64-byte aligned):
 * col [K, group P], stage [OC, group P] (the group's output or dy side by side; only when group > 1),
 * and a dw partial [OC, K] (only when threads > 1). */
typedef struct conv_plan {
    int threads, group;
    size_t col, stage, dw, per_thread;
} conv_plan;

static size_t round16(size_t v) { return (v + 15) & ~(size_t)15; }

static size_t conv_plan_bytes(const conv_dims *d, int threads, int group, conv_plan *p) {
    p->threads = threads, p->group = group;
    p->col = d->direct ? 0 : round16((size_t)d->K * (size_t)d->P * (size_t)group);
    p->stage = group > 1 ? round16((size_t)d->OC * (size_t)d->P * (size_t)group) : 0;
    p->dw = threads > 1 ? round16((size_t)d->OC * (size_t)d->K) : 0;
    p->per_thread = p->col + p->stage + p->dw;
    return p->per_thread * (size_t)threads * sizeof(float);
}

/* One thread per group of samples at most, groups up to CONV_GEMM_COLS columns (one sample for a direct
 * 1x1 conv), shrunk until it fits `budget` bytes: SIZE_MAX at infer, the planned workspace afterwards
 * (the thread count may have changed since). Shrinking the batch never grows the plan. */
static conv_plan conv_plan_for(const conv_dims *d, size_t budget) {
    int t = max_threads();
    if (t > d->N) t = d->N;
    if (t < 1) t = 1;
    const int per_thread = (d->N + t - 1) / t, wide = d->direct ? 1 : (CONV_GEMM_COLS + d->P - 1) / d->P;
    int g = wide < per_thread ? wide : per_thread;
    if (g < 1) g = 1;
    conv_plan p;
    while (conv_plan_bytes(d, t, g, &p) > budget) {
        if (g > 1)
            g--;
        else if (t > 1)
            t--;
        else
            break;
    }
    return p;
}

/* The output positions o in [lo, hi) that read inside the input: 0 <= o s + off < len. */
static void valid_range(int len, int s, int off, int out, int *lo, int *hi) {
    int l = off >= 0 ? 0 : (-off + s - 1) / s;
    int h = len - off <= 0 ? 0 : (len - off - 1) / s + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l, *hi = h;
}

/* x is g samples [g, C, H, W], col is [C KH KW, g OH OW] (sample j in columns j P ..):
 *   col[(c, kh, kw), j P + (oh, ow)] = x[j, c, oh sh - ph + kh dh, ow sw - pw + kw dw], 0 outside the image. */
static void im2col_plane(const conv_dims *d, const float *x, int g, float *col, int j, int c) {
    const int OW = d->OW, C = d->C;
    const size_t ld = (size_t)g * d->P;
    const float *xc = x + ((size_t)j * C + c) * d->H * d->W;
    for (int kh = 0; kh < d->KH; kh++) {
        for (int kw = 0; kw < d->KW; kw++) {
            float *row = col + ((size_t)(c * d->KH + kh) * d->KW + kw) * ld + (size_t)j * d->P;
            const int off_w = kw * d->dw - d->pw;
            int lo, hi;
            valid_range(d->W, d->sw, off_w, OW, &lo, &hi);
            for (int oh = 0; oh < d->OH; oh++) {
                float *dst = row + (size_t)oh * OW;
                const int ih = oh * d->sh - d->ph + kh * d->dh;
                if (ih < 0 || ih >= d->H) {
                    memset(dst, 0, (size_t)OW * sizeof(float));
                    continue;
                }
                const float *src = xc + (size_t)ih * d->W;
                for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                if (d->sw == 1) {
                    memcpy(dst + lo, src + lo + off_w, (size_t)(hi - lo) * sizeof(float));
                } else {
                    for (int ow = lo; ow < hi; ow++) dst[ow] = src[ow * d->sw + off_w];
                }
                for (int ow = hi; ow < OW; ow++) dst[ow] = 0.0f;
            }
        }
    }
}

/* (sample, channel) planes in parallel when `par` (never from inside another parallel region). */
static void im2col(const conv_dims *d, const float *x, int g, float *col, bool par) {
    PARALLEL_FOR(par && g * d->C > 1, jc, (int64_t)g * d->C, im2col_plane(d, x, g, col, (int)(jc / d->C), (int)(jc % d->C)););
}

/* The adjoint of im2col: dx [g, C, H, W] += col2im(dcol [C KH KW, g OH OW]), each column entry added
 * back to the pixel it was read from. (sample, channel) planes are independent: they may run in parallel. */
static void col2im_plane(const conv_dims *d, const float *dcol, int g, float *dx, int j, int c) {
    const int OW = d->OW, C = d->C;
    const size_t ld = (size_t)g * d->P;
    float *dxc = dx + ((size_t)j * C + c) * d->H * d->W;
    for (int kh = 0; kh < d->KH; kh++) {
        for (int kw = 0; kw < d->KW; kw++) {
            const float *row = dcol + ((size_t)(c * d->KH + kh) * d->KW + kw) * ld + (size_t)j * d->P;
            const int off_w = kw * d->dw - d->pw;
            int lo, hi;
            valid_range(d->W, d->sw, off_w, OW, &lo, &hi);
            for (int oh = 0; oh < d->OH; oh++) {
                const int ih = oh * d->sh - d->ph + kh * d->dh;
                if (ih < 0 || ih >= d->H) continue;
                const float *src = row + (size_t)oh * OW;
                float *dst = dxc + (size_t)ih * d->W;
                for (int ow = lo; ow < hi; ow++) dst[ow * d->sw + off_w] += src[ow];
            }
        }
    }
}

static void col2im_add(const conv_dims *d, const float *dcol, int g, float *dx, bool par) {
    PARALLEL_FOR(par && g * d->C > 1, jc, (int64_t)g * d->C,
                 col2im_plane(d, dcol, g, dx, (int)(jc / d->C), (int)(jc % d->C)););
}

/* g samples x [g, C, H, W] -> y [g, OC, P]: out [OC, g P] = w [OC, K] @ im2col(x), then each sample's
 * columns (plus bias) to its place in y. col and stage are this thread's scratch (see conv_plan). */
static void conv_forward_group(const conv_dims *d, const float *x, const float *w, const float *bias, float *y,
                               int g, float *col, float *stage, bool par) {
    const int ld = g * d->P;
    const float *cols = x;
    if (!d->direct) {
        im2col(d, x, g, col, par);
        cols = col;
    }
    float *out = g > 1 ? stage : y;
    magna_sgemm(false, false, d->OC, ld, d->K, 1.0f, w, d->K, cols, ld, 0.0f, out, ld);
    if (g == 1 && !bias) return;
    for (int j = 0; j < g; j++)
        for (int oc = 0; oc < d->OC; oc++) {
            const float *src = out + (size_t)oc * ld + (size_t)j * d->P;
            float *dst = y + ((size_t)j * d->OC + oc) * d->P;
            const float b = bias ? bias[oc] : 0.0f;
            for (int p = 0; p < d->P; p++) dst[p] = src[p] + b;
        }
}

/* g samples, dy [g, OC, P] (gathered side by side into stage when g > 1, as dys [OC, g P]):
 * dw [OC, K] += dys @ im2col(x)^T (when dw is not NULL), then dx [g, C, H, W] += col2im(w^T @ dys) (when dx
 * is not NULL). */
static void conv_backward_group(const conv_dims *d, const float *x, const float *w, const float *dy, float *dw,
                                float *dx, int g, float *col, float *stage, bool par) {
    const int ld = g * d->P;
    const float *dys = dy;
    if (g > 1) {
        for (int j = 0; j < g; j++)
            for (int oc = 0; oc < d->OC; oc++)
                memcpy(stage + (size_t)oc * ld + (size_t)j * d->P, dy + ((size_t)j * d->OC + oc) * d->P,
                       (size_t)d->P * sizeof(float));
        dys = stage;
    }
    if (dw) {
        const float *cols = x;
        if (!d->direct) {
            im2col(d, x, g, col, par);
            cols = col;
        }
        magna_sgemm(false, true, d->OC, d->K, ld, 1.0f, dys, ld, cols, ld, 1.0f, dw, d->K);
    }
    if (dx) {
        if (d->direct) { /* g == 1: dx is [K, P] already */
            magna_sgemm(true, false, d->K, ld, d->OC, 1.0f, w, d->K, dys, ld, 1.0f, dx, ld);
        } else {
            magna_sgemm(true, false, d->K, ld, d->OC, 1.0f, w, d->K, dys, ld, 0.0f, col, ld);
            col2im_add(d, col, g, dx, par);
        }
    }
}

/* Checks x [N, C, H, W] against w [OC, C, KH, KW] (and bias [OC]); output [N, OC, OH, OW]. Workspace: per
 * thread, a column and a staging buffer for a group of samples, plus a dw partial when threads share the
 * batch (conv_plan). */
static magna_status conv2d_infer(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0], *w = n->in[1], *b = n->n_in > 2 ? n->in[2] : NULL;
    char xs[SHAPE_STR_MAX], wsh[SHAPE_STR_MAX], bs[SHAPE_STR_MAX];
    shape_str(x, xs, sizeof xs);
    shape_str(w, wsh, sizeof wsh);
    for (int i = 0; i < n->n_in; i++) {
        magna_status st = require_dtype(g, n, i, MAGNA_F32);
        if (st != MAGNA_OK) return st;
    }
    if (x->ndim != 4 || w->ndim != 4)
        return graph_error(g, MAGNA_ERR_SHAPE,
                           "conv2d: input %s must be 4-D [N, C, H, W] and weight %s 4-D [OC, C, KH, KW]", xs, wsh);
    if (w->shape[1] != x->shape[1])
        return graph_error(g, MAGNA_ERR_SHAPE, "conv2d: input %s has %lld channels but weight %s expects %lld", xs,
                           (long long)x->shape[1], wsh, (long long)w->shape[1]);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return graph_error(g, MAGNA_ERR_SHAPE, "conv2d: bias %s must be [%lld] for weight %s (input %s)",
                           shape_str(b, bs, sizeof bs), (long long)w->shape[0], wsh, xs);
    const int64_t eh = n->ip[4] * (w->shape[2] - 1) + 1, ew = n->ip[5] * (w->shape[3] - 1) + 1;
    if (x->shape[2] + 2 * n->ip[2] < eh || x->shape[3] + 2 * n->ip[3] < ew)
        return graph_error(g, MAGNA_ERR_SHAPE,
                           "conv2d: input %s with padding %lldx%lld is smaller than weight %s's kernel (%lldx%lld "
                           "with dilation)",
                           xs, (long long)n->ip[2], (long long)n->ip[3], wsh, (long long)eh, (long long)ew);
    const int64_t OH = (x->shape[2] + 2 * n->ip[2] - eh) / n->ip[0] + 1;
    const int64_t OW = (x->shape[3] + 2 * n->ip[3] - ew) / n->ip[1] + 1;
    const int64_t K = w->shape[1] * w->shape[2] * w->shape[3];
    if (K * OH * OW > INT_MAX || w->shape[0] * OH * OW > INT_MAX || x->shape[1] * x->shape[2] * x->shape[3] > INT_MAX ||
        x->shape[0] > INT_MAX)
        return graph_error(g, MAGNA_ERR_SHAPE, "conv2d: input %s and weight %s are too large for one sample's GEMM",
                           xs, wsh);
    const int64_t shape[4] = {x->shape[0], w->shape[0], OH, OW};
    node_set_shape(n, 4, shape);
    n->dtype = MAGNA_F32;
    n->saved_bytes = 0;
    const conv_dims d = conv_dims_of(n);
    conv_plan p = conv_plan_for(&d, SIZE_MAX);
    n->workspace_bytes = conv_plan_bytes(&d, p.threads, p.group, &p);
    return MAGNA_OK;
}

/* y [N, OC, OH, OW] = conv(x, w) + bias, a group of samples per GEMM (see conv_plan). */
static magna_status conv2d_forward(magna_graph *g, magna_node *n) {
    const conv_dims d = conv_dims_of(n);
    const conv_plan p = conv_plan_for(&d, n->workspace_bytes);
    const float *x = fval(n->in[0]), *w = fval(n->in[1]);
    const float *bias = n->n_in > 2 ? fval(n->in[2]) : NULL;
    float *y = fval(n), *ws = (float *)g->workspace;
    const size_t xs = (size_t)d.C * d.H * d.W, ys = (size_t)d.OC * d.P;
    const int groups = (d.N + p.group - 1) / p.group;
    if (p.threads <= 1) {
        for (int q = 0; q < groups; q++) {
            const int s0 = q * p.group, cnt = d.N - s0 < p.group ? d.N - s0 : p.group;
            conv_forward_group(&d, x + s0 * xs, w, bias, y + s0 * ys, cnt, ws, ws + p.col, true);
        }
        return MAGNA_OK;
    }
    /* the whole team, always (a team of another size makes libgomp allocate); p.threads of it work */
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), tn = p.threads;
        float *col = ws + (size_t)t * p.per_thread, *stage = col + p.col;
        for (int q = t; t < tn && q < groups; q += tn) {
            const int s0 = q * p.group, cnt = d.N - s0 < p.group ? d.N - s0 : p.group;
            conv_forward_group(&d, x + s0 * xs, w, bias, y + s0 * ys, cnt, col, stage, false);
        }
    }
    return MAGNA_OK;
}

/* dbias[oc] += sum_{n, p} dy[n, oc, p]; dw += sum over groups of dys @ col^T (per-thread partials, added
 * in thread order); dx += col2im(w^T @ dys). */
static void conv2d_backward(magna_graph *g, magna_node *n) {
    const conv_dims d = conv_dims_of(n);
    const float *x = fval(n->in[0]), *w = fval(n->in[1]), *dy = n->grad;
    float *dx = n->in[0]->grad, *dw = n->in[1]->grad, *db = n->n_in > 2 ? n->in[2]->grad : NULL;
    float *ws = (float *)g->workspace;
    const size_t xs = (size_t)d.C * d.H * d.W, ys = (size_t)d.OC * d.P;
    if (db) {
        PARALLEL_FOR((int64_t)d.N * d.OC * d.P > PAR_MIN, oc, d.OC, {
            double acc = 0;
            for (int s = 0; s < d.N; s++) {
                const float *r = dy + s * ys + (size_t)oc * d.P;
                float part = 0;
                for (int q = 0; q < d.P; q++) part += r[q];
                acc += part;
            }
            db[oc] += (float)acc;
        });
    }
    if (!dx && !dw) return;
    const conv_plan p = conv_plan_for(&d, n->workspace_bytes);
    const int groups = (d.N + p.group - 1) / p.group;
    if (p.threads <= 1) {
        for (int q = 0; q < groups; q++) {
            const int s0 = q * p.group, cnt = d.N - s0 < p.group ? d.N - s0 : p.group;
            conv_backward_group(&d, x + s0 * xs, w, dy + s0 * ys, dw, dx ? dx + s0 * xs : NULL, cnt, ws, ws + p.col,
                                true);
        }
        return;
    }
    const int used = p.threads;
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), tn = p.threads;
        float *col = ws + (size_t)t * p.per_thread, *stage = col + p.col, *part = dw ? stage + p.stage : NULL;
        if (part && t < tn) memset(part, 0, (size_t)d.OC * d.K * sizeof(float));
        for (int q = t; t < tn && q < groups; q += tn) {
            const int s0 = q * p.group, cnt = d.N - s0 < p.group ? d.N - s0 : p.group;
            conv_backward_group(&d, x + s0 * xs, w, dy + s0 * ys, part, dx ? dx + s0 * xs : NULL, cnt, col, stage,
                                false);
        }
    }
    if (dw) {
        const int64_t count = (int64_t)d.OC * d.K;
        const float *parts = ws + p.col + p.stage;
        PARALLEL_FOR(count > PAR_MIN, i, count, {
            float acc = 0;
            for (int t = 0; t < used; t++) acc += parts[(size_t)t * p.per_thread + (size_t)i];
            dw[i] += acc;
        });
    }
}

const magna_op_def op_def_conv2d = {"conv2d", OPF_BWD_INPUTS, conv2d_infer, conv2d_forward, conv2d_backward};

magna_node *magna_conv2d(magna_graph *g, magna_node *x, magna_node *w, magna_node *bias, magna_conv2d_opts opts) {
    if (!g) return NULL;
    const int sh = opts.stride_h ? opts.stride_h : 1, sw = opts.stride_w ? opts.stride_w : 1;
    const int dh = opts.dilation_h ? opts.dilation_h : 1, dw = opts.dilation_w ? opts.dilation_w : 1;
    if (sh < 1 || sw < 1 || dh < 1 || dw < 1 || opts.pad_h < 0 || opts.pad_w < 0) {
        graph_error(g, MAGNA_ERR_ARG,
                    "conv2d: stride %dx%d and dilation %dx%d must be positive and padding %dx%d not negative", sh,
                    sw, dh, dw, opts.pad_h, opts.pad_w);
        return NULL;
    }
    const int64_t ip[6] = {sh, sw, opts.pad_h, opts.pad_w, dh, dw};
    magna_node *in[3] = {x, w, bias};
    return graph_add_node(g, OP_CONV2D, bias ? 3 : 2, in, ip, 6, NULL, 0);
}

void magna_conv2d_reference(const float *x, const float *w, const float *bias, float *y, int N, int C, int H, int W,
                            int OC, int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw) {
    const int OH = (H + 2 * ph - dh * (KH - 1) - 1) / sh + 1, OW = (W + 2 * pw - dw * (KW - 1) - 1) / sw + 1;
    for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = bias ? bias[oc] : 0.0;
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < KH; kh++) {
                            const int ih = oh * sh - ph + kh * dh;
                            if (ih < 0 || ih >= H) continue;
                            for (int kw = 0; kw < KW; kw++) {
                                const int iw = ow * sw - pw + kw * dw;
                                if (iw < 0 || iw >= W) continue;
                                acc += (double)x[(((size_t)n * C + c) * H + ih) * W + iw] *
                                       w[(((size_t)oc * C + c) * KH + kh) * KW + kw];
                            }
                        }
                    y[(((size_t)n * OC + oc) * OH + oh) * OW + ow] = (float)acc;
                }
}
