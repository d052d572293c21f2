/* pool2d.c — max and average pooling over 2-D windows, NCHW.
 *
 *   x [N, C, H, W] -> y [N, C, OH, OW], OH = (H + 2 ph - KH) / sh + 1 (OW alike), window (oh, ow) covering
 *   rows oh sh - ph .. + KH - 1 and columns ow sw - pw .. + KW - 1.
 *
 * Max pooling pads with -inf: y is the largest real pixel in the window (the first one on ties, NaN if any
 * is NaN); forward saves its position in the plane (int32, ih W + iw) and backward sends dy there.
 * Average pooling divides by the number of real pixels in the window (PyTorch's count_include_pad=False).
 * Padding is at most half the kernel (as in PyTorch), so every window holds at least one real pixel.
 * Planes (n, c) are independent, so both run in parallel over them.
 *
 * ip: [0] kernel_h, [1] kernel_w, [2] stride_h, [3] stride_w, [4] pad_h, [5] pad_w. */
#include "common.h"
#include "conv2d.h"

#include <math.h>
#include <string.h>

typedef magna_pool_dims pool_dims;

magna_pool_dims magna_pool_dims_of(const magna_node *n) {
    const magna_node *x = n->in[0];
    pool_dims d;
    d.planes = x->shape[0] * x->shape[1];
    d.H = (int)x->shape[2], d.W = (int)x->shape[3];
    d.OH = (int)n->shape[2], d.OW = (int)n->shape[3];
    d.KH = (int)n->ip[0], d.KW = (int)n->ip[1], d.sh = (int)n->ip[2], d.sw = (int)n->ip[3];
    d.ph = (int)n->ip[4], d.pw = (int)n->ip[5];
    return d;
}

/* The window of output (oh, ow) clipped to the image: rows [*h0, *h1), columns [*w0, *w1). */
static inline void pool_window(const pool_dims *d, int oh, int ow, int *h0, int *h1, int *w0, int *w1) {
    const int hs = oh * d->sh - d->ph, ws = ow * d->sw - d->pw;
    *h0 = hs < 0 ? 0 : hs;
    *h1 = hs + d->KH > d->H ? d->H : hs + d->KH;
    *w0 = ws < 0 ? 0 : ws;
    *w1 = ws + d->KW > d->W ? d->W : ws + d->KW;
}

/* x [N, C, H, W] (float32) -> [N, C, OH, OW]; max pooling also saves one int32 index per output. */
static magna_status pool2d_infer(magna_graph *g, magna_node *n) {
    const magna_node *x = n->in[0];
    const char *name = magna_op_table[n->op]->name;
    char xs[SHAPE_STR_MAX];
    shape_str(x, xs, sizeof xs);
    magna_status st = require_dtype(g, n, 0, MAGNA_F32);
    if (st != MAGNA_OK) return st;
    if (x->ndim != 4)
        return graph_error(g, MAGNA_ERR_SHAPE, "%s: input %s must be [N, C, H, W] (kernel %lldx%lld)", name, xs,
                           (long long)n->ip[0], (long long)n->ip[1]);
    if (x->shape[2] + 2 * n->ip[4] < n->ip[0] || x->shape[3] + 2 * n->ip[5] < n->ip[1])
        return graph_error(g, MAGNA_ERR_SHAPE,
                           "%s: input %s with padding %lldx%lld is smaller than the kernel %lldx%lld", name, xs,
                           (long long)n->ip[4], (long long)n->ip[5], (long long)n->ip[0], (long long)n->ip[1]);
    const int64_t shape[4] = {x->shape[0], x->shape[1], (x->shape[2] + 2 * n->ip[4] - n->ip[0]) / n->ip[2] + 1,
                              (x->shape[3] + 2 * n->ip[5] - n->ip[1]) / n->ip[3] + 1};
    node_set_shape(n, 4, shape);
    n->dtype = MAGNA_F32;
    n->saved_bytes = n->op == OP_MAX_POOL2D ? (size_t)n->numel * sizeof(int32_t) : 0;
    n->workspace_bytes = 0;
    return MAGNA_OK;
}

/* The larger of (best, best_i) and (v, i) with pooling's rule: later wins only if strictly larger, NaN wins
 * over a number. Written as selects, not branches: on real activations which pixel wins is a coin toss,
 * and mispredicted branches made this loop ~30% of a CNN step. */
static inline void take_max(float *best, int *best_i, float v, int i) {
    const bool take = v > *best || (isnan(v) && !isnan(*best));
    *best = take ? v : *best;
    *best_i = take ? i : *best_i;
}

/* One plane of the common case: 2 x 2 windows, stride 2, no padding. The reference; the AVX-512 kernel below is
 * tested against it (tests/test_conv_kernels.c). */
static void max_pool_2x2_plane_scalar(const float *xp, float *yp, int32_t *ap, int W, int OH, int OW) {
    for (int oh = 0; oh < OH; oh++) {
        const float *r0 = xp + (2 * oh) * W, *r1 = r0 + W;
        for (int ow = 0; ow < OW; ow++) {
            const int c = 2 * ow;
            float best = r0[c];
            int best_i = 2 * oh * W + c;
            take_max(&best, &best_i, r0[c + 1], best_i + 1);
            take_max(&best, &best_i, r1[c], 2 * oh * W + W + c);
            take_max(&best, &best_i, r1[c + 1], 2 * oh * W + W + c + 1);
            yp[oh * OW + ow] = best;
            ap[oh * OW + ow] = best_i;
        }
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define POOL_AVX512 1
/* The same, 16 windows of a row pair at a time: each row's 32 pixels loaded (masked at the plane's edge, which
 * never faults), split into even and odd columns, and the four candidates taken in the scalar order with its
 * rule (strictly larger, or NaN over a number), so the result and the argmax are the scalar's bit for bit. The
 * seed CNN's planes are 28, 14 and 7 wide: one masked vector a row. */
__attribute__((target("avx512f"))) static void max_pool_2x2_plane_avx512(const float *xp, float *yp, int32_t *ap,
                                                                        int W, int OH, int OW) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int oh = 0; oh < OH; oh++) {
        const float *r0 = xp + (2 * oh) * W, *r1 = r0 + W;
        for (int ow = 0; ow < OW; ow += 16) {
            const int n = OW - ow < 16 ? OW - ow : 16, cols = 2 * n, c = 2 * ow;
            const __mmask16 mlo = (__mmask16)(cols >= 16 ? 0xffffu : (1u << cols) - 1);
            const __mmask16 mhi = (__mmask16)(cols > 16 ? (1u << (cols - 16)) - 1 : 0u);
            const __mmask16 mout = (__mmask16)(n == 16 ? 0xffffu : (1u << n) - 1);
            const __m512 a_lo = _mm512_maskz_loadu_ps(mlo, r0 + c), a_hi = _mm512_maskz_loadu_ps(mhi, r0 + c + 16);
            const __m512 b_lo = _mm512_maskz_loadu_ps(mlo, r1 + c), b_hi = _mm512_maskz_loadu_ps(mhi, r1 + c + 16);
            const __m512 cand[3] = {_mm512_permutex2var_ps(a_lo, odd, a_hi), _mm512_permutex2var_ps(b_lo, even, b_hi),
                                    _mm512_permutex2var_ps(b_lo, odd, b_hi)};
            const __m512i base = _mm512_add_epi32(_mm512_set1_epi32(2 * oh * W + c), even);
            const int step[3] = {1, W, W + 1};
            __m512 best = _mm512_permutex2var_ps(a_lo, even, a_hi);
            __m512i best_i = base;
            for (int k = 0; k < 3; k++) {
                const __m512 v = cand[k];
                const __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
                                       (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
                best = _mm512_mask_mov_ps(best, take, v);
                best_i = _mm512_mask_mov_epi32(best_i, take, _mm512_add_epi32(base, _mm512_set1_epi32(step[k])));
            }
            _mm512_mask_storeu_ps(yp + oh * OW + ow, mout, best);
            _mm512_mask_storeu_epi32(ap + oh * OW + ow, mout, best_i);
        }
    }
}
#endif

void magna_max_pool_2x2_plane(int path, const float *xp, float *yp, int32_t *ap, int W, int OH, int OW) {
#ifdef POOL_AVX512
    static int avx512 = -1; /* decided once */
    if (avx512 < 0) avx512 = __builtin_cpu_supports("avx512f");
    if (path == 0 && avx512) {
        max_pool_2x2_plane_avx512(xp, yp, ap, W, OH, OW);
        return;
    }
#endif
    (void)path;
    max_pool_2x2_plane_scalar(xp, yp, ap, W, OH, OW);
}

/* The fused pool's forward (n->fused_conv, plan.c): x is the conv's output as oneDNN left it, float32 nChw16c
 * [N][C/16][H][W][16] with the ReLU applied; 16 channels of a pixel are one vector, so each window is KH KW
 * vector maxima with the scalar rule (strictly larger, or NaN over a number), and each result's 16 lanes go to
 * their 16 NCHW planes. Same values and argmax as the plain loop over the NCHW copy. No padding (plan.c). */
/* The reference: plain loops, for any CPU. */
static void max_pool_blocked16_scalar(const pool_dims *d, const float *xc, float *yc, int32_t *ac) {
    const int64_t plane_out = (int64_t)d->OH * d->OW;
    for (int oh = 0; oh < d->OH; oh++)
        for (int ow = 0; ow < d->OW; ow++) {
            const int h0 = oh * d->sh, w0 = ow * d->sw;
            float best[16];
            int32_t best_i[16];
            const float *first = xc + ((int64_t)h0 * d->W + w0) * 16;
            for (int l = 0; l < 16; l++) best[l] = first[l], best_i[l] = h0 * d->W + w0;
            for (int ih = h0; ih < h0 + d->KH; ih++)
                for (int iw = w0; iw < w0 + d->KW; iw++) {
                    const float *v = xc + ((int64_t)ih * d->W + iw) * 16;
                    for (int l = 0; l < 16; l++) take_max(&best[l], &best_i[l], v[l], ih * d->W + iw);
                }
            const int64_t o = (int64_t)oh * d->OW + ow;
            for (int l = 0; l < 16; l++) yc[l * plane_out + o] = best[l], ac[l * plane_out + o] = best_i[l];
        }
}

#ifdef POOL_AVX512
/* One vector per window position and the four-candidate rule of max_pool_2x2_plane_avx512, for up to
 * POOL_TILE outputs of the plane at a time; the tile of results ([output][16 channels]) is then transposed
 * into the 16 planes from L1, so the stores to memory are whole rows. */
#define POOL_TILE 256
__attribute__((target("avx512f"))) static void max_pool_blocked16_avx512(const pool_dims *d, const float *xc,
                                                                         float *yc, int32_t *ac) {
    const int64_t plane_out = (int64_t)d->OH * d->OW;
    float tile[POOL_TILE * 16] __attribute__((aligned(64)));
    int32_t tile_i[POOL_TILE * 16] __attribute__((aligned(64)));
    for (int64_t o0 = 0; o0 < plane_out; o0 += POOL_TILE) {
        const int count = plane_out - o0 < POOL_TILE ? (int)(plane_out - o0) : POOL_TILE;
        for (int t = 0; t < count; t++) {
            const int oh = (int)((o0 + t) / d->OW), ow = (int)((o0 + t) % d->OW);
            const int h0 = oh * d->sh, w0 = ow * d->sw;
            __m512 best = _mm512_loadu_ps(xc + ((int64_t)h0 * d->W + w0) * 16);
            __m512i best_i = _mm512_set1_epi32(h0 * d->W + w0);
            for (int ih = h0; ih < h0 + d->KH; ih++)
                for (int iw = w0; iw < w0 + d->KW; iw++) {
                    const __m512 v = _mm512_loadu_ps(xc + ((int64_t)ih * d->W + iw) * 16);
                    const __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) |
                                           (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & _mm512_cmp_ps_mask(best, best, _CMP_ORD_Q));
                    best = _mm512_mask_mov_ps(best, take, v);
                    best_i = _mm512_mask_mov_epi32(best_i, take, _mm512_set1_epi32(ih * d->W + iw));
                }
            _mm512_store_ps(tile + t * 16, best);
            _mm512_store_epi32(tile_i + t * 16, best_i);
        }
        for (int l = 0; l < 16; l++)
            for (int t = 0; t < count; t++) {
                yc[l * plane_out + o0 + t] = tile[t * 16 + l];
                ac[l * plane_out + o0 + t] = tile_i[t * 16 + l];
            }
    }
}
#endif

/* The fused pool's forward (n->fused_conv, plan.c) over one (sample, 16-channel block): x is the conv's output as
 * oneDNN left it, float32 nChw16c [N][C/16][H][W][16] with the ReLU applied, so the 16 channels of a pixel are
 * one vector; each window's maximum (the scalar rule: strictly larger, or NaN over a number) goes to the 16 NCHW
 * planes. The same values and argmax as the plain loop over an NCHW copy. No padding (plan.c). */
static void max_pool_blocked16(const pool_dims *d, const float *xb, int64_t nb, int C, float *y, int32_t *arg) {
    const int64_t n = nb / (C / 16), cb = nb % (C / 16), plane_out = (int64_t)d->OH * d->OW;
    const float *xc = xb + nb * (int64_t)d->H * d->W * 16;
    float *yc = y + (n * C + cb * 16) * plane_out;
    int32_t *ac = arg + (n * C + cb * 16) * plane_out;
#ifdef POOL_AVX512
    static int avx512 = -1; /* decided once */
    if (avx512 < 0) avx512 = __builtin_cpu_supports("avx512f");
    if (avx512) {
        max_pool_blocked16_avx512(d, xc, yc, ac);
        return;
    }
#endif
    max_pool_blocked16_scalar(d, xc, yc, ac);
}

/* y[n, c, oh, ow] = max over the window of x[n, c, ih, iw]; saved = argmax as ih W + iw. */
static magna_status max_pool2d_forward(magna_graph *g, magna_node *n) {
    const pool_dims d = magna_pool_dims_of(n);
    const float *blocked = n->fused_conv ? magna_conv2d_blocked_output(g, n->fused_conv) : NULL;
    if (blocked) {
        const int C = (int)n->shape[1];
        float *y = fval(n);
        int32_t *arg = (int32_t *)n->saved;
        PARALLEL_FOR(n->numel > PAR_MIN / 4, nb, d.planes / 16, max_pool_blocked16(&d, blocked, nb, C, y, arg););
        return MAGNA_OK;
    }
    const float *x = fval(n->in[0]);
    float *y = fval(n);
    int32_t *arg = (int32_t *)n->saved;
    const int64_t plane_in = (int64_t)d.H * d.W, plane_out = (int64_t)d.OH * d.OW;
    const bool two_by_two = d.KH == 2 && d.KW == 2 && d.sh == 2 && d.sw == 2 && d.ph == 0 && d.pw == 0;
    PARALLEL_FOR(n->numel > PAR_MIN / 4, p, d.planes, {
        const float *xp = x + p * plane_in;
        float *yp = y + p * plane_out;
        int32_t *ap = arg + p * plane_out;
        if (two_by_two) {
            magna_max_pool_2x2_plane(0, xp, yp, ap, d.W, d.OH, d.OW);
        } else {
            for (int oh = 0; oh < d.OH; oh++)
                for (int ow = 0; ow < d.OW; ow++) {
                    int h0, h1, w0, w1;
                    pool_window(&d, oh, ow, &h0, &h1, &w0, &w1);
                    int best_i = h0 * d.W + w0;
                    float best = xp[best_i];
                    for (int ih = h0; ih < h1; ih++)
                        for (int iw = w0; iw < w1; iw++) take_max(&best, &best_i, xp[ih * d.W + iw], ih * d.W + iw);
                    yp[oh * d.OW + ow] = best;
                    ap[oh * d.OW + ow] = best_i;
                }
        }
    });
    return MAGNA_OK;
}

/* dx[n, c, argmax] += dy[n, c, oh, ow]. As the first writer (grad_assigns) each thread zeroes its own
 * planes just before scattering into them, while they are in its cache. Fused after a conv and its ReLU
 * (fused_conv), dx is the conv's gradient, always assigned (the pool is its only writer), and dy passes only
 * where y > 0: the ReLU's backward, whose mask at the argmax is y's. */
static void max_pool2d_backward(magna_graph *g, magna_node *n) {
    (void)g;
    float *dx = n->fused_conv ? n->fused_conv->grad : n->in[0]->grad;
    if (!dx) return;
    const pool_dims d = magna_pool_dims_of(n);
    const float *dy = n->grad, *y = fval(n);
    const int32_t *arg = (const int32_t *)n->saved;
    const int64_t plane_in = (int64_t)d.H * d.W, plane_out = (int64_t)d.OH * d.OW;
    const bool assign = n->fused_conv || grad_assigns(n, 0), relu = n->fused_conv != NULL;
PARALLEL_FOR(n->numel > PAR_MIN, p, d.planes, 
        float *dxp = dx + p * plane_in;
        const float *dyp = dy + p * plane_out, *yp = y + p * plane_out;
        const int32_t *ap = arg + p * plane_out;
        if (assign) memset(dxp, 0, (size_t)plane_in * sizeof *dxp);
        if (relu)
            for (int64_t i = 0; i < plane_out; i++) dxp[ap[i]] += yp[i] > 0 ? dyp[i] : 0.0f;
        else
            for (int64_t i = 0; i < plane_out; i++) dxp[ap[i]] += dyp[i];
    );
}

/* y[n, c, oh, ow] = mean of x[n, c, ih, iw] over the real pixels of the window. */
static magna_status avg_pool2d_forward(magna_graph *g, magna_node *n) {
    (void)g;
    const pool_dims d = magna_pool_dims_of(n);
    const float *x = fval(n->in[0]);
    float *y = fval(n);
    const int64_t plane_in = (int64_t)d.H * d.W, plane_out = (int64_t)d.OH * d.OW;
PARALLEL_FOR(n->numel > PAR_MIN / 4, p, d.planes, 
        const float *xp = x + p * plane_in;
        float *yp = y + p * plane_out;
        for (int oh = 0; oh < d.OH; oh++)
            for (int ow = 0; ow < d.OW; ow++) {
                int h0, h1, w0, w1;
                pool_window(&d, oh, ow, &h0, &h1, &w0, &w1);
                float acc = 0;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) acc += xp[ih * d.W + iw];
                yp[oh * d.OW + ow] = acc / (float)((h1 - h0) * (w1 - w0));
            }
    );
    return MAGNA_OK;
}

/* dx[n, c, ih, iw] += dy[n, c, oh, ow] / count(oh, ow) for every window (oh, ow) holding (ih, iw). */
static void avg_pool2d_backward(magna_graph *g, magna_node *n) {
    (void)g;
    float *dx = n->in[0]->grad;
    if (!dx) return;
    const pool_dims d = magna_pool_dims_of(n);
    const float *dy = n->grad;
    const int64_t plane_in = (int64_t)d.H * d.W, plane_out = (int64_t)d.OH * d.OW;
    const bool assign = grad_assigns(n, 0);
PARALLEL_FOR(n->numel > PAR_MIN / 4, p, d.planes, 
        float *dxp = dx + p * plane_in;
        const float *dyp = dy + p * plane_out;
        if (assign) memset(dxp, 0, (size_t)plane_in * sizeof *dxp);
        for (int oh = 0; oh < d.OH; oh++)
            for (int ow = 0; ow < d.OW; ow++) {
                int h0, h1, w0, w1;
                pool_window(&d, oh, ow, &h0, &h1, &w0, &w1);
                const float v = dyp[oh * d.OW + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) dxp[ih * d.W + iw] += v;
            }
    );
}

const magna_op_def op_def_max_pool2d = {"max_pool2d", OPF_GRAD_ASSIGN, pool2d_infer, max_pool2d_forward, max_pool2d_backward};
const magna_op_def op_def_avg_pool2d = {"avg_pool2d", OPF_GRAD_ASSIGN, pool2d_infer, avg_pool2d_forward, avg_pool2d_backward};

/* Checks the options (stride 0 means the kernel size) and records the node. */
static magna_node *pool2d(magna_graph *g, op_id op, magna_node *x, magna_pool2d_opts o) {
    if (!g) return NULL;
    const char *name = magna_op_table[op]->name;
    const int sh = o.stride_h ? o.stride_h : o.kernel_h, sw = o.stride_w ? o.stride_w : o.kernel_w;
    if (o.kernel_h < 1 || o.kernel_w < 1 || sh < 1 || sw < 1 || o.pad_h < 0 || o.pad_w < 0) {
        graph_error(g, MAGNA_ERR_ARG,
                    "%s: kernel %dx%d and stride %dx%d must be positive and padding %dx%d not negative", name,
                    o.kernel_h, o.kernel_w, sh, sw, o.pad_h, o.pad_w);
        return NULL;
    }
    if (o.pad_h > o.kernel_h / 2 || o.pad_w > o.kernel_w / 2) {
        graph_error(g, MAGNA_ERR_ARG, "%s: padding %dx%d must be at most half the kernel %dx%d", name, o.pad_h, o.pad_w,
                    o.kernel_h, o.kernel_w);
        return NULL;
    }
    const int64_t ip[6] = {o.kernel_h, o.kernel_w, sh, sw, o.pad_h, o.pad_w};
    return graph_add_node(g, op, 1, &x, ip, 6, NULL, 0);
}

magna_node *magna_max_pool2d(magna_graph *g, magna_node *x, magna_pool2d_opts opts) {
    return pool2d(g, OP_MAX_POOL2D, x, opts);
}

magna_node *magna_avg_pool2d(magna_graph *g, magna_node *x, magna_pool2d_opts opts) {
    return pool2d(g, OP_AVG_POOL2D, x, opts);
}
