/* conv2d.c — 2-D convolution, NCHW: through oneDNN when magna is built with it, else (and as the fallback,
 * and as a second reference in tests) as im2col + sgemm; with a direct-loop reference to test both against.
 *
 *   x [N, C, H, W], w [OC, C, KH, KW], bias [OC] (optional: in[2] is there only when n_in == 3)
 *   -> y [N, OC, OH, OW], OH = (H + 2 ph - dh (KH - 1) - 1) / sh + 1 (OW alike)
 *
 * oneDNN (see "oneDNN" below): forward, backward-data and backward-weights (with bias) primitives, made at
 * infer and kept in n->kernel_state. oneDNN picks blocked layouts (nChw16c, ...); tensors are reordered into
 * them in the workspace and results back out, the gradients with a sum post-op, since backward adds.
 *
 * im2col: per group of g samples side by side (g P columns), with K = C KH KW and P = OH OW:
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
#include "onednn.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

static int max_threads(void) { return omp_get_max_threads(); }

/* Everything a kernel needs, read from the node's current shapes. */
typedef struct conv_dims {
    int N, C, H, W, OC, KH, KW, OH, OW;
    int sh, sw, ph, pw, dh, dw;
    int K, P;    /* rows of col (C KH KW) and columns per sample (OH OW) */
    bool direct; /* 1x1, stride 1, no padding: col is x_n itself */
    bool relu;   /* y = max(conv + bias, 0): the ReLU after it was fused in (n->relu_fused, plan.c) */
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
    d.relu = n->relu_fused;
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
 * columns (plus bias, through the fused ReLU) to its place in y. col and stage are this thread's scratch (see conv_plan). */
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
    if (g == 1 && !bias && !d->relu) return;
    for (int j = 0; j < g; j++)
        for (int oc = 0; oc < d->OC; oc++) {
            const float *src = out + (size_t)oc * ld + (size_t)j * d->P; /* src == dst when g == 1 */
            float *dst = y + ((size_t)j * d->OC + oc) * d->P;
            const float b = bias ? bias[oc] : 0.0f;
            if (d->relu)
                for (int p = 0; p < d->P; p++) dst[p] = src[p] + b > 0 ? src[p] + b : 0.0f;
            else
                for (int p = 0; p < d->P; p++) dst[p] = src[p] + b;
        }
}

/* g samples, dy [g, OC, P] (gathered side by side into stage when g > 1, as dys [OC, g P]):
 * dw [OC, K] += dys @ im2col(x)^T (when dw is not NULL), then dx [g, C, H, W] += col2im(w^T @ dys) (when dx
 * is not NULL; = when assign_dx, the first writer of dx). */
static void conv_backward_group(const conv_dims *d, const float *x, const float *w, const float *dy, float *dw,
                                float *dx, bool assign_dx, int g, float *col, float *stage, bool par) {
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
            magna_sgemm(true, false, d->K, ld, d->OC, 1.0f, w, d->K, dys, ld, assign_dx ? 0.0f : 1.0f, dx, ld);
        } else {
            magna_sgemm(true, false, d->K, ld, d->OC, 1.0f, w, d->K, dys, ld, 0.0f, col, ld);
            if (assign_dx) memset(dx, 0, (size_t)g * d->C * d->H * d->W * sizeof *dx);
            col2im_add(d, col, g, dx, par);
        }
    }
}

/* dbias[oc] += sum_{n, p} dy[n, oc, p]. */
static void conv_bias_backward(const conv_dims *d, const float *dy, float *db) {
    const size_t ys = (size_t)d->OC * d->P;
    PARALLEL_FOR((int64_t)d->N * d->OC * d->P > PAR_MIN, oc, d->OC, {
        double acc = 0;
        for (int s = 0; s < d->N; s++) {
            const float *r = dy + s * ys + (size_t)oc * d->P;
            float part = 0;
            for (int q = 0; q < d->P; q++) part += r[q];
            acc += part;
        }
        db[oc] += (float)acc;
    });
}

/* ---- which path ---------------------------------------------------------------------------------- */

static conv2d_path path_set = CONV2D_DEFAULT;

void magna_conv2d_set_path(conv2d_path path) { path_set = path; }

conv2d_path magna_conv2d_get_path(void) {
    conv2d_path p = path_set;
    if (p == CONV2D_DEFAULT) {
        const char *env = getenv("MAGNA_CONV2D");
        if (env && !strcmp(env, "im2col"))
            p = CONV2D_IM2COL;
        else if (env && !strcmp(env, "onednn-plain"))
            p = CONV2D_ONEDNN_PLAIN;
        else
            p = CONV2D_ONEDNN;
    }
#ifndef MAGNA_HAVE_DNNL
    p = CONV2D_IM2COL;
#endif
    return p;
}

/* ---- oneDNN -------------------------------------------------------------------------------------- *
 *
 * Made at infer (build and set_batch), never in a step: three primitives (forward; backward-data only when x
 * can need a gradient; backward-weights, with diff_bias, only when w can), the reorders around them, and a
 * memory object per argument whose data handle is set when the buffer moves (in practice once: magna's
 * buffers are planned). Nothing here allocates in a step except oneDNN itself: dnnl_primitive_execute
 * builds a std::unordered_map of its arguments on every call (oneDNN 2.6, src/common/primitive_iface.cpp)
 * and some kernels std::function closures in their parallel loops, about five allocations of 32-120 bytes a
 * call that no public API avoids; tests/test_no_alloc.c counts them apart.
 *
 * Layouts: oneDNN's own (format_tag_any: nChw16c, OIhw16i16o, ...) with reorders, because on plain NCHW
 * it runs its gemm convolution, no faster than im2col: blocked + reorders was 1.4-2.5x faster on the seed
 * CNN's layers (bench/RESULTS.md). CONV2D_ONEDNN_PLAIN keeps the plain variant for measuring that again.
 *
 * Workspace (g->workspace, 64-byte aligned): [scratchpad | staged copies]. The scratchpad (oneDNN's
 * dnnl_scratchpad_mode_user) is shared by every primitive of the node, as they run one after another; the
 * staged copies are the tensors in oneDNN's layouts: for forward x, w and y, for backward dy, w, dx, x, dw
 * and db, laid out from the same offset since forward and backward never overlap.
 *
 * Threads: oneDNN's OpenMP build sizes its work split and scratchpad for omp_get_max_threads() when a
 * primitive is made, so a step at another thread count (magna_set_threads after building) runs im2col,
 * whose least workspace the node always reserves. Primitives are never run inside our parallel regions. */

#ifdef MAGNA_HAVE_DNNL
enum { TX, TW, TB, TY }; /* the tensor an argument is: in[0], in[1], in[2] or the node itself */

typedef struct dnnl_slot {
    int arg;                  /* DNNL_ARG_SRC, DNNL_ARG_DIFF_WEIGHTS, ... */
    int tensor;               /* TX .. TY */
    bool grad, output;        /* the tensor's gradient (not its value); written by the primitive */
    dnnl_memory_t mem;        /* in the primitive's layout: on magna's buffer, or on the staged copy */
    dnnl_memory_t user;       /* magna's buffer, when staged */
    dnnl_primitive_t reorder; /* when staged: magna -> copy (inputs), copy -> magna (outputs; adding if grad) */
    dnnl_primitive_t assign;  /* a gradient's copy -> magna without the adding, for its first writer */
    size_t offset;            /* of the staged copy, past the scratchpad */
    bool shared;              /* the copy bwd_data staged of the same tensor, in the same layout: its reorder
                                 is skipped when bwd_data ran in the same call */
    void *mem_ptr, *user_ptr; /* the data handles last set */
} dnnl_slot;

typedef struct dnnl_pass {
    dnnl_primitive_t prim; /* NULL: not made (no input of the node can need this gradient) */
    int n_slot;
    dnnl_slot slot[4];
    char impl[40];
} dnnl_pass;

typedef struct conv_dnnl {
    int threads; /* omp_get_max_threads() when made */
    dnnl_stream_t stream;
    dnnl_memory_t scratch; /* u8 [scratch_bytes] at the start of the workspace; NULL when none is needed */
    void *scratch_ptr;
    size_t scratch_bytes;
    dnnl_pass fwd, bwd_data, bwd_weights;
    bool y_blocked16; /* forward's staged y is float32 nChw16c (aBcd16b) and OC a multiple of 16 */
    bool left_blocked; /* the last forward left y there for the fused max pool (n->pool_fused) */
} conv_dnnl;

static void slot_free(dnnl_slot *sl) {
    if (sl->reorder) dnnl_primitive_destroy(sl->reorder);
    if (sl->assign) dnnl_primitive_destroy(sl->assign);
    if (sl->user) dnnl_memory_destroy(sl->user);
    if (sl->mem) dnnl_memory_destroy(sl->mem);
}

static void conv2d_release(magna_node *n) {
    conv_dnnl *st = n->kernel_state;
    if (!st) return;
    dnnl_pass *passes[3] = {&st->fwd, &st->bwd_data, &st->bwd_weights};
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < passes[i]->n_slot; k++) slot_free(&passes[i]->slot[k]);
        if (passes[i]->prim) dnnl_primitive_destroy(passes[i]->prim);
    }
    if (st->scratch) dnnl_memory_destroy(st->scratch);
    free(st);
    n->kernel_state = NULL;
}

/* While making one node's primitives: the first failure, kept for the message. */
typedef struct dnnl_build {
    dnnl_engine_t eng;
    dnnl_status_t status;
    const char *what;
    size_t scratch; /* the largest scratchpad asked for so far */
} dnnl_build;

static bool ok(dnnl_build *b, dnnl_status_t s, const char *what) {
    if (s != dnnl_success && b->status == dnnl_success) b->status = s, b->what = what;
    return b->status == dnnl_success;
}

static void need_scratch(dnnl_build *b, const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    const size_t bytes = md ? dnnl_memory_desc_get_size(md) : 0;
    if (bytes > b->scratch) b->scratch = bytes;
}

/* Every primitive here takes its scratchpad from us (a step must not allocate). */
static dnnl_primitive_attr_t make_attr(dnnl_build *b, bool add, bool relu) {
    dnnl_primitive_attr_t attr = NULL;
    if (!ok(b, dnnl_primitive_attr_create(&attr), "attr") ||
        !ok(b, dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user), "scratchpad mode")) {
        if (attr) dnnl_primitive_attr_destroy(attr);
        return NULL;
    }
    if (add) { /* dst = dst + reorder(src): how staged gradients are added into magna's */
        dnnl_post_ops_t po = NULL;
        ok(b, dnnl_post_ops_create(&po), "post-ops");
        ok(b, dnnl_post_ops_append_sum(po, 1.0f), "sum post-op");
        ok(b, dnnl_primitive_attr_set_post_ops(attr, po), "post-ops");
        if (po) dnnl_post_ops_destroy(po);
    }
    if (relu) { /* the fused ReLU: applied to the blocked output before it is reordered out */
        dnnl_post_ops_t po = NULL;
        ok(b, dnnl_post_ops_create(&po), "post-ops");
        ok(b, dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f), "relu post-op");
        ok(b, dnnl_primitive_attr_set_post_ops(attr, po), "post-ops");
        if (po) dnnl_post_ops_destroy(po);
    }
    return attr;
}

/* *prim = the reorder plain -> md (an input) or md -> plain (an output, adding into it when `add`). */
static void make_reorder(dnnl_build *b, dnnl_primitive_t *prim, const dnnl_memory_desc_t *md,
                         const dnnl_memory_desc_t *plain, bool output, bool add) {
    dnnl_primitive_attr_t attr = make_attr(b, add, false);
    if (!attr) return;
    dnnl_primitive_desc_t pd = NULL;
    if (output)
        ok(b, dnnl_reorder_primitive_desc_create(&pd, md, b->eng, plain, b->eng, attr), "reorder");
    else
        ok(b, dnnl_reorder_primitive_desc_create(&pd, plain, b->eng, md, b->eng, attr), "reorder");
    dnnl_primitive_attr_destroy(attr);
    if (!pd) return;
    need_scratch(b, pd);
    ok(b, dnnl_primitive_create(prim, pd), "reorder primitive");
    dnnl_primitive_desc_destroy(pd);
}

/* One argument of a primitive that wants layout `md` for it, magna's being `plain`. The primitive works on
 * magna's buffer when the two agree and nothing is to be added up; otherwise on a copy staged in the
 * workspace at *offset (unless `share`, bwd_data's copy of the same tensor, has this very layout), with a
 * reorder in (inputs) or out (outputs, with a sum post-op for gradients). */
static void slot_init(dnnl_build *b, dnnl_slot *sl, int arg, int tensor, bool grad, bool output,
                      const dnnl_memory_desc_t *md, const dnnl_memory_desc_t *plain, const dnnl_slot *share,
                      size_t *offset) {
    sl->arg = arg, sl->tensor = tensor, sl->grad = grad, sl->output = output;
    if (!md) {
        ok(b, dnnl_runtime_error, "query memory descriptor");
        return;
    }
    const bool add = output && grad;
    if (!ok(b, dnnl_memory_create(&sl->mem, md, b->eng, DNNL_MEMORY_NONE), "memory")) return;
    if (!add && dnnl_memory_desc_equal(md, plain)) return;
    if (!ok(b, dnnl_memory_create(&sl->user, plain, b->eng, DNNL_MEMORY_NONE), "memory")) return;
    if (share && share->user && share->mem) {
        const dnnl_memory_desc_t *smd = NULL;
        if (dnnl_memory_get_memory_desc(share->mem, &smd) == dnnl_success && dnnl_memory_desc_equal(smd, md)) {
            sl->offset = share->offset, sl->shared = true;
        }
    }
    if (!sl->shared) sl->offset = *offset, *offset += round64(dnnl_memory_desc_get_size(md));
    make_reorder(b, &sl->reorder, md, plain, output, add);
    if (add) make_reorder(b, &sl->assign, md, plain, output, false);
}

static const dnnl_memory_desc_t *query(const_dnnl_primitive_desc_t pd, dnnl_query_t what, int index) {
    return dnnl_primitive_desc_query_md(pd, what, index);
}

static void pass_make(dnnl_build *b, dnnl_pass *ps, const dnnl_convolution_desc_t *desc,
                      const_dnnl_primitive_desc_t hint, bool relu, dnnl_primitive_desc_t *pd_out) {
    dnnl_primitive_attr_t attr = make_attr(b, false, relu);
    if (!attr) return;
    dnnl_primitive_desc_t pd = NULL;
    ok(b, dnnl_primitive_desc_create(&pd, desc, attr, b->eng, hint), "convolution");
    dnnl_primitive_attr_destroy(attr);
    if (!pd) return;
    need_scratch(b, pd);
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(ps->impl, sizeof ps->impl, "%s", impl);
    ok(b, dnnl_primitive_create(&ps->prim, pd), "convolution primitive");
    *pd_out = pd;
}

/* Makes the node's primitives for its current shapes (see "oneDNN" above); *bytes: the workspace they need. */
static magna_status conv_dnnl_make(magna_graph *g, magna_node *n, const conv_dims *d, bool plain_only, bool bf16,
                                   size_t *bytes) {
    dnnl_build bb = {.status = dnnl_success}, *b = &bb;
    dnnl_stream_t stream = NULL;
    dnnl_status_t es = magna_dnnl_engine(&b->eng, &stream);
    if (es != dnnl_success)
        return graph_error(g, MAGNA_ERR_UNSUPPORTED, "conv2d: oneDNN CPU engine: %s", magna_dnnl_status_str(es));
    conv_dnnl *st = calloc(1, sizeof *st);
    if (!st) return graph_error(g, MAGNA_ERR_NOMEM, "conv2d: out of memory");
    n->kernel_state = st;
    st->threads = omp_get_max_threads();
    st->stream = stream;
    const bool bias = n->n_in > 2, want_dx = n->in[0]->requires_grad, want_dw = n->in[1]->requires_grad;

    /* magna's layouts, and the ones a primitive may choose from. bf16 (the graph's mixed precision): what the
     * primitives read (x, w, dy) is staged as bf16, what they write (y, dx, dw, db) stays float32, accumulated in
     * float32 (PyTorch's autocast does the same products); the staging reorders convert. */
    dnnl_memory_desc_t x_md, w_md, b_md, y_md, x_any, w_any, y_any, x_out, w_out, dy_any;
    const dnnl_data_type_t lo = bf16 ? dnnl_bf16 : dnnl_f32;
    const dnnl_dims_t xd = {d->N, d->C, d->H, d->W}, wd = {d->OC, d->C, d->KH, d->KW}, bd = {d->OC};
    const dnnl_dims_t yd = {d->N, d->OC, d->OH, d->OW};
    const dnnl_format_tag_t x_tag = plain_only ? dnnl_nchw : dnnl_format_tag_any;
    const dnnl_format_tag_t w_tag = plain_only ? dnnl_oihw : dnnl_format_tag_any;
    ok(b, dnnl_memory_desc_init_by_tag(&x_md, 4, xd, dnnl_f32, dnnl_nchw), "memory descriptor");
    ok(b, dnnl_memory_desc_init_by_tag(&w_md, 4, wd, dnnl_f32, dnnl_oihw), "memory descriptor");
    ok(b, dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x), "memory descriptor");
    ok(b, dnnl_memory_desc_init_by_tag(&y_md, 4, yd, dnnl_f32, dnnl_nchw), "memory descriptor");
    ok(b, dnnl_memory_desc_init_by_tag(&x_any, 4, xd, lo, x_tag), "memory descriptor");
    ok(b, dnnl_memory_desc_init_by_tag(&w_any, 4, wd, lo, w_tag), "memory descriptor");
    ok(b, dnnl_memory_desc_init_by_tag(&y_any, 4, yd, dnnl_f32, x_tag), "memory descriptor");
    ok(b, dnnl_memory_desc_init_by_tag(&x_out, 4, xd, dnnl_f32, x_tag), "memory descriptor");
    ok(b, dnnl_memory_desc_init_by_tag(&w_out, 4, wd, dnnl_f32, w_tag), "memory descriptor");
    ok(b, dnnl_memory_desc_init_by_tag(&dy_any, 4, yd, lo, x_tag), "memory descriptor");
    /* oneDNN counts dilation from 0 (d - 1), and takes the right/bottom padding that yields exactly OH x OW
     * (at most magna's: rows that only padding would reach are not computed at all) */
    const int pb = (d->OH - 1) * d->sh + d->dh * (d->KH - 1) + 1 - d->H - d->ph;
    const int pr = (d->OW - 1) * d->sw + d->dw * (d->KW - 1) + 1 - d->W - d->pw;
    const dnnl_dims_t strides = {d->sh, d->sw}, dil = {d->dh - 1, d->dw - 1}, pad_l = {d->ph, d->pw};
    const dnnl_dims_t pad_r = {pb > 0 ? pb : 0, pr > 0 ? pr : 0};

    size_t fwd_off = 0, bwd_off = 0;
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_convolution_desc_t cd;
    if (b->status == dnnl_success &&
        ok(b, dnnl_dilated_convolution_forward_desc_init(
                  &cd, want_dx || want_dw ? dnnl_forward_training : dnnl_forward_inference, dnnl_convolution_direct,
                  &x_any, &w_any, bias ? &b_md : NULL, &y_any, strides, dil, pad_l, pad_r),
           "forward descriptor")) {
        pass_make(b, &st->fwd, &cd, NULL, n->relu_fused, &fpd);
    }
    if (fpd) {
        dnnl_pass *ps = &st->fwd;
        slot_init(b, &ps->slot[ps->n_slot++], DNNL_ARG_SRC, TX, false, false, query(fpd, dnnl_query_src_md, 0), &x_md,
                  NULL, &fwd_off);
        slot_init(b, &ps->slot[ps->n_slot++], DNNL_ARG_WEIGHTS, TW, false, false,
                  query(fpd, dnnl_query_weights_md, 0), &w_md, NULL, &fwd_off);
        if (bias)
            slot_init(b, &ps->slot[ps->n_slot++], DNNL_ARG_BIAS, TB, false, false,
                      query(fpd, dnnl_query_weights_md, 1), &b_md, NULL, &fwd_off);
        slot_init(b, &ps->slot[ps->n_slot++], DNNL_ARG_DST, TY, false, true, query(fpd, dnnl_query_dst_md, 0), &y_md,
                  NULL, &fwd_off);
        dnnl_memory_desc_t blocked;
        const dnnl_memory_desc_t *dst = query(fpd, dnnl_query_dst_md, 0);
        st->y_blocked16 = d->OC % 16 == 0 && ps->slot[ps->n_slot - 1].reorder && dst &&
                          dnnl_memory_desc_init_by_tag(&blocked, 4, yd, dnnl_f32, dnnl_aBcd16b) == dnnl_success &&
                          dnnl_memory_desc_equal(dst, &blocked);
    }
    const dnnl_slot *dy_staged = NULL;
    if (fpd && want_dx && b->status == dnnl_success &&
        ok(b, dnnl_dilated_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &x_out, &w_any, &dy_any,
                                                               strides, dil, pad_l, pad_r),
           "backward-data descriptor")) {
        pass_make(b, &st->bwd_data, &cd, fpd, false, &dpd);
    }
    if (dpd) {
        dnnl_pass *ps = &st->bwd_data;
        dy_staged = &ps->slot[0];
        slot_init(b, &ps->slot[ps->n_slot++], DNNL_ARG_DIFF_DST, TY, true, false,
                  query(dpd, dnnl_query_diff_dst_md, 0), &y_md, NULL, &bwd_off);
        slot_init(b, &ps->slot[ps->n_slot++], DNNL_ARG_WEIGHTS, TW, false, false,
                  query(dpd, dnnl_query_weights_md, 0), &w_md, NULL, &bwd_off);
        slot_init(b, &ps->slot[ps->n_slot++], DNNL_ARG_DIFF_SRC, TX, true, true,
                  query(dpd, dnnl_query_diff_src_md, 0), &x_md, NULL, &bwd_off);
    }
    if (fpd && want_dw && b->status == dnnl_success &&
        ok(b, dnnl_dilated_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &x_any, &w_out,
                                                                  bias ? &b_md : NULL, &dy_any, strides, dil, pad_l,
                                                                  pad_r),
           "backward-weights descriptor")) {
        pass_make(b, &st->bwd_weights, &cd, fpd, false, &wpd);
    }
    if (wpd) {
        dnnl_pass *ps = &st->bwd_weights;
        slot_init(b, &ps->slot[ps->n_slot++], DNNL_ARG_DIFF_DST, TY, true, false,
                  query(wpd, dnnl_query_diff_dst_md, 0), &y_md, dy_staged, &bwd_off);
        slot_init(b, &ps->slot[ps->n_slot++], DNNL_ARG_SRC, TX, false, false, query(wpd, dnnl_query_src_md, 0), &x_md,
                  NULL, &bwd_off);
        slot_init(b, &ps->slot[ps->n_slot++], DNNL_ARG_DIFF_WEIGHTS, TW, true, true,
                  query(wpd, dnnl_query_diff_weights_md, 0), &w_md, NULL, &bwd_off);
        if (bias)
            slot_init(b, &ps->slot[ps->n_slot++], DNNL_ARG_DIFF_BIAS, TB, true, true,
                      query(wpd, dnnl_query_diff_weights_md, 1), &b_md, NULL, &bwd_off);
    }
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    if (b->status == dnnl_success && b->scratch) {
        dnnl_memory_desc_t s_md;
        const dnnl_dims_t sd = {(dnnl_dim_t)b->scratch};
        if (ok(b, dnnl_memory_desc_init_by_tag(&s_md, 1, sd, dnnl_u8, dnnl_x), "memory descriptor"))
            ok(b, dnnl_memory_create(&st->scratch, &s_md, b->eng, DNNL_MEMORY_NONE), "memory");
    }
    if (b->status != dnnl_success) {
        conv2d_release(n);
        char xs[SHAPE_STR_MAX], wsh[SHAPE_STR_MAX];
        return graph_error(g, b->status == dnnl_out_of_memory ? MAGNA_ERR_NOMEM : MAGNA_ERR_UNSUPPORTED,
                           "conv2d: oneDNN %s for input %s and weight %s: %s", b->what,
                           shape_str(n->in[0], xs, sizeof xs), shape_str(n->in[1], wsh, sizeof wsh),
                           magna_dnnl_status_str(b->status));
    }
    st->scratch_bytes = b->scratch;
    *bytes = round64(b->scratch) + (fwd_off > bwd_off ? fwd_off : bwd_off);
    return MAGNA_OK;
}

/* The primitives, when this step can run them: made, at this thread count, outside our parallel regions. */
static conv_dnnl *conv_dnnl_ready(const magna_node *n) {
    conv_dnnl *st = n->kernel_state;
    if (!st || !st->fwd.prim || omp_in_parallel() || omp_get_max_threads() != st->threads) return NULL;
    return st;
}

static bool set_handle(dnnl_memory_t m, void **last, void *p) {
    if (*last == p) return true;
    if (dnnl_memory_set_data_handle(m, p) != dnnl_success) return false;
    *last = p;
    return true;
}

static void *slot_tensor(const magna_node *n, const dnnl_slot *sl) {
    const magna_node *t = sl->tensor == TY ? n : n->in[sl->tensor];
    return sl->grad ? (void *)t->grad : t->value;
}

static dnnl_status_t run_reorder(conv_dnnl *st, dnnl_primitive_t r, dnnl_memory_t from, dnnl_memory_t to) {
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, {DNNL_ARG_SCRATCHPAD, st->scratch}};
    return dnnl_primitive_execute(r, st->stream, st->scratch ? 3 : 2, args);
}

/* Stages the inputs, runs the primitive, reorders the outputs out (adding the gradients) except y when
 * `keep_y_staged` (the fused max pool reads it there). `reuse`: bwd_data ran just before, so a shared staged dy
 * is there already. */
static dnnl_status_t pass_run(magna_graph *g, const magna_node *n, conv_dnnl *st, dnnl_pass *ps, bool reuse,
                              bool keep_y_staged) {
    char *staged = (char *)g->workspace + round64(st->scratch_bytes);
    dnnl_exec_arg_t args[5];
    int na = 0;
    dnnl_status_t s = dnnl_success;
    if (st->scratch && !set_handle(st->scratch, &st->scratch_ptr, g->workspace)) return dnnl_runtime_error;
    for (int i = 0; i < ps->n_slot && s == dnnl_success; i++) {
        dnnl_slot *sl = &ps->slot[i];
        void *user = slot_tensor(n, sl);
        if (!sl->reorder) {
            if (!set_handle(sl->mem, &sl->mem_ptr, user)) return dnnl_runtime_error;
        } else {
            if (!set_handle(sl->mem, &sl->mem_ptr, staged + sl->offset)) return dnnl_runtime_error;
            if (user && !set_handle(sl->user, &sl->user_ptr, user)) return dnnl_runtime_error;
            if (!sl->output && !(reuse && sl->shared)) s = run_reorder(st, sl->reorder, sl->user, sl->mem);
        }
        args[na++] = (dnnl_exec_arg_t){sl->arg, sl->mem};
    }
    if (st->scratch) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, st->scratch};
    if (s == dnnl_success) s = dnnl_primitive_execute(ps->prim, st->stream, na, args);
    for (int i = 0; i < ps->n_slot && s == dnnl_success; i++) {
        const dnnl_slot *sl = &ps->slot[i];
        if (!sl->output || !sl->reorder || !slot_tensor(n, sl) || (keep_y_staged && sl->tensor == TY)) continue;
        const bool assign = sl->assign && sl->tensor != TY && grad_assigns(n, sl->tensor);
        s = run_reorder(st, assign ? sl->assign : sl->reorder, sl->mem, sl->user);
    }
    return s;
}

/* false: not on this path (run im2col); else *status is the result */
static bool conv_dnnl_forward(magna_graph *g, magna_node *n, magna_status *status) {
    conv_dnnl *st = conv_dnnl_ready(n);
    if (!st) return false;
    st->left_blocked = n->pool_fused && st->y_blocked16;
    dnnl_status_t s = pass_run(g, n, st, &st->fwd, false, st->left_blocked);
    *status = s == dnnl_success ? MAGNA_OK
                                : graph_error(g, MAGNA_ERR_UNSUPPORTED, "conv2d: oneDNN forward: %s",
                                              magna_dnnl_status_str(s));
    return true;
}

static bool conv_dnnl_backward(magna_graph *g, magna_node *n, const conv_dims *d) {
    conv_dnnl *st = conv_dnnl_ready(n);
    float *dx = n->in[0]->grad, *dw = n->in[1]->grad, *db = n->n_in > 2 ? n->in[2]->grad : NULL;
    if (!st || (dx && !st->bwd_data.prim) || (dw && !st->bwd_weights.prim)) return false;
    dnnl_status_t s = dnnl_success;
    if (db && !dw) conv_bias_backward(d, n->grad, db); /* bwd_weights computes db alongside dw */
    if (dx) s = pass_run(g, n, st, &st->bwd_data, false, false);
    if (dw && s == dnnl_success) s = pass_run(g, n, st, &st->bwd_weights, dx != NULL, false);
    if (s != dnnl_success)
        graph_error(g, MAGNA_ERR_UNSUPPORTED, "conv2d: oneDNN backward: %s", magna_dnnl_status_str(s));
    return true;
}
#endif

bool magna_conv2d_can_leave_blocked(const magna_node *conv) {
#ifdef MAGNA_HAVE_DNNL
    const conv_dnnl *st = conv->kernel_state;
    return st && st->fwd.prim && st->y_blocked16;
#else
    (void)conv;
    return false;
#endif
}

const float *magna_conv2d_blocked_output(const magna_graph *g, const magna_node *conv) {
#ifdef MAGNA_HAVE_DNNL
    const conv_dnnl *st = conv->kernel_state;
    if (!st || !st->left_blocked) return NULL;
    for (int i = 0; i < st->fwd.n_slot; i++)
        if (st->fwd.slot[i].tensor == TY)
            return (const float *)((const char *)g->workspace + round64(st->scratch_bytes) + st->fwd.slot[i].offset);
#else
    (void)g, (void)conv;
#endif
    return NULL;
}

const char *magna_conv2d_describe(const magna_node *conv, char *buf, size_t size) {
#ifdef MAGNA_HAVE_DNNL
    const conv_dnnl *st = conv->kernel_state;
    if (st && conv_dnnl_ready(conv)) {
        snprintf(buf, size, "%s [fwd %s, bwd_data %s, bwd_weights %s]%s", magna_dnnl_version(), st->fwd.impl,
                 st->bwd_data.prim ? st->bwd_data.impl : "-", st->bwd_weights.prim ? st->bwd_weights.impl : "-",
                 st->left_blocked ? ", output left blocked for the fused max pool" : "");
        return buf;
    }
    if (st) {
        snprintf(buf, size, "im2col + sgemm (oneDNN's primitives were made for %d threads)", st->threads);
        return buf;
    }
    snprintf(buf, size, "im2col + sgemm");
#else
    snprintf(buf, size, "im2col + sgemm (built without oneDNN)");
#endif
    return buf;
}

/* The CUDA glue's workspace (src/cuda/ops_conv.c): the whole batch's columns and staged gradients at once,
 * (K + OC) N P floats, up to 256 MiB, and never less than one sample's K P (its smallest group); after compile
 * (set_batch) what was planned, the groups shrinking to fit. */
static size_t conv_cuda_workspace(const magna_graph *g, const conv_dims *d) {
    const size_t per_sample = ((size_t)d->K + (size_t)d->OC) * (size_t)d->P * sizeof(float), cap = (size_t)256 << 20;
    size_t ws = per_sample * (size_t)d->N;
    if (ws > cap) ws = cap > per_sample ? cap / per_sample * per_sample : (size_t)d->K * (size_t)d->P * sizeof(float);
    if (g->compiled && ws > g->workspace_bytes) ws = g->workspace_bytes;
    return ws;
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
    if (g->device == MAGNA_DEVICE_CUDA) { /* src/cuda/ops_conv.c runs it: no oneDNN, no threads */
        n->workspace_bytes = conv_cuda_workspace(g, &d);
        return MAGNA_OK;
    }
    conv_plan p = conv_plan_for(&d, SIZE_MAX);
    size_t bytes = conv_plan_bytes(&d, p.threads, p.group, &p);
#ifdef MAGNA_HAVE_DNNL
    conv2d_release(n); /* set_batch: primitives are made for one batch size */
    const conv2d_path path = magna_conv2d_get_path();
    if (path != CONV2D_IM2COL) {
        size_t need = 0;
        magna_status st = conv_dnnl_make(g, n, &d, path == CONV2D_ONEDNN_PLAIN, g->bf16 && magna_cpu_detect().avx512_bf16, &need);
        if (st != MAGNA_OK) return st;
        conv_plan least;
        const size_t fallback = conv_plan_bytes(&d, 1, 1, &least); /* im2col, for a step at another thread count */
        if (need < fallback) need = fallback;
        if (!g->compiled || need <= g->workspace_bytes) {
            n->workspace_bytes = need;
            return MAGNA_OK;
        }
        /* set_batch, and oneDNN wants more workspace at this batch than was planned: im2col fits */
        conv2d_release(n);
        p = conv_plan_for(&d, g->workspace_bytes);
        bytes = conv_plan_bytes(&d, p.threads, p.group, &p);
    }
#endif
    n->workspace_bytes = bytes;
    return MAGNA_OK;
}

/* y [N, OC, OH, OW] = conv(x, w) + bias, a group of samples per GEMM (see conv_plan). */
static magna_status conv2d_forward(magna_graph *g, magna_node *n) {
#ifdef MAGNA_HAVE_DNNL
    magna_status status;
    if (conv_dnnl_forward(g, n, &status)) return status;
#endif
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
 * in thread order); dx += col2im(w^T @ dys) (= as dx's first writer, grad_assigns). */
static void conv2d_backward(magna_graph *g, magna_node *n) {
    const conv_dims d = conv_dims_of(n);
    const float *x = fval(n->in[0]), *w = fval(n->in[1]), *dy = n->grad;
    float *dx = n->in[0]->grad, *dw = n->in[1]->grad, *db = n->n_in > 2 ? n->in[2]->grad : NULL;
    float *ws = (float *)g->workspace;
    const size_t xs = (size_t)d.C * d.H * d.W, ys = (size_t)d.OC * d.P;
#ifdef MAGNA_HAVE_DNNL
    if (conv_dnnl_backward(g, n, &d)) return;
#endif
    if (db) conv_bias_backward(&d, dy, db);
    if (!dx && !dw) return;
    const conv_plan p = conv_plan_for(&d, n->workspace_bytes);
    const int groups = (d.N + p.group - 1) / p.group;
    const bool assign_dx = grad_assigns(n, 0);
    if (p.threads <= 1) {
        for (int q = 0; q < groups; q++) {
            const int s0 = q * p.group, cnt = d.N - s0 < p.group ? d.N - s0 : p.group;
            conv_backward_group(&d, x + s0 * xs, w, dy + s0 * ys, dw, dx ? dx + s0 * xs : NULL, assign_dx, cnt, ws,
                                ws + p.col, true);
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
            conv_backward_group(&d, x + s0 * xs, w, dy + s0 * ys, part, dx ? dx + s0 * xs : NULL, assign_dx, cnt,
                                col, stage, false);
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

#ifdef MAGNA_HAVE_DNNL
const magna_op_def op_def_conv2d = {"conv2d", OPF_BWD_INPUTS | OPF_GRAD_ASSIGN, conv2d_infer, conv2d_forward,
                                    conv2d_backward, conv2d_release};
#else
const magna_op_def op_def_conv2d = {"conv2d", OPF_BWD_INPUTS | OPF_GRAD_ASSIGN, conv2d_infer, conv2d_forward,
                                    conv2d_backward};
#endif

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
