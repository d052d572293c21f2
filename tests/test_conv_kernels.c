/* test_conv_kernels.c — the image kernels against plain loops, through a graph, on fresh random data,
 * for several shapes and at thread counts 1, the default and 3: conv2d forward and backward against the
 * direct-loop reference, on each of its paths (oneDNN with the layouts it picks, oneDNN on plain layouts,
 * im2col + sgemm; only the last without oneDNN); max/avg pooling forward and dx; batch norm's batch
 * statistics, running-statistics update, inference forward and backward.
 *
 * Each conv2d line ends with the path the node ran, which must be the one asked for (im2col where oneDNN's
 * primitives were made for another thread count); the first line of each path names oneDNN's kernels.
 *
 * Forward is compared with magna_conv2d_reference; backward with plain loops written here:
 *   dx[n, c, ih, iw] = sum w[oc, c, kh, kw] dy[n, oc, oh, ow] over the (oc, kh, kw, oh, ow) that read (ih, iw)
 *   dw[oc, c, kh, kw] = sum_{n, oh, ow} x[n, c, ih, iw] dy[n, oc, oh, ow],   db[oc] = sum_{n, oh, ow} dy
 * Error measure: max |fast - ref| / max |ref| over the tensor, which must be <= 1e-4. Backward runs twice
 * without zeroing, so the "x2" check also proves the kernels add into the gradients (2x the reference). */
#include "magna.h"
#include "ops/conv2d.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4

typedef struct conv_config {
    const char *what;
    int N, C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw;
    bool bias;
} conv_config;

static const conv_config configs[] = {
    {"cnn layer 1 (1->32 @28x28)", 4, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1, 1, 1, true},
    {"cnn layer 2 (32->64 @14x14)", 4, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, true},
    {"cnn layer 3 (64->128 @7x7)", 4, 64, 7, 7, 128, 3, 3, 1, 1, 1, 1, 1, 1, true},
    {"cnn layer 2, batch 1", 1, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, true},
    {"stride 2, pad 1", 3, 3, 9, 8, 5, 3, 3, 2, 2, 1, 1, 1, 1, true},
    {"dilation 2, pad 2, no bias", 2, 4, 10, 11, 3, 3, 3, 1, 1, 2, 2, 2, 2, false},
    {"5x3 kernel, stride 2x1, pad 2x0", 1, 3, 12, 9, 4, 5, 3, 2, 1, 2, 0, 1, 1, true},
    {"1x1 (no im2col)", 4, 16, 6, 6, 8, 1, 1, 1, 1, 0, 0, 1, 1, true},
    {"1x1 stride 2", 2, 4, 7, 7, 3, 1, 1, 2, 2, 0, 0, 1, 1, false},
    {"kernel as large as the image", 2, 2, 5, 5, 3, 5, 5, 1, 1, 0, 0, 1, 1, true},
    {"pad 2, stride 3, dilation 2x1", 5, 2, 8, 10, 6, 3, 4, 3, 3, 2, 2, 2, 1, true},
};

static void fill_uniform(float *p, size_t count, uint64_t seed, uint64_t stream) {
    for (size_t i = 0; i < count; i++) p[i] = 2.0f * magna_rand_uniform(seed, stream, i) - 1.0f;
}

/* max |a - b| / max |b| */
static double rel_err(const float *a, const double *b, size_t count) {
    double num = 0, den = 0;
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > num || isnan(d)) num = d;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return den > 0 ? num / den : num;
}

static int failures = 0;
static conv2d_path want_path; /* the path conv2d nodes are built with now */
static bool want_bf16;        /* conv2d graphs in bf16 mixed precision (oneDNN on CPUs with avx512_bf16) */
static double tol = TOL;      /* TOL, or bf16's: operands with 8 bits of mantissa, float32 sums */

static const char *path_name(conv2d_path p) {
    return p == CONV2D_ONEDNN ? "onednn" : p == CONV2D_ONEDNN_PLAIN ? "onednn-plain" : "im2col";
}

/* The short name of the path `conv` runs; a failure when it is not the one asked for (`expect_im2col`: the
 * primitives were made for another thread count, so im2col is right). */
static const char *check_path(magna_node *conv, bool expect_im2col, const char *what) {
    char buf[256];
    magna_conv2d_describe(conv, buf, sizeof buf);
    const bool onednn = !strncmp(buf, "oneDNN", 6);
    const bool want_onednn = want_path != CONV2D_IM2COL && !expect_im2col;
    if (onednn != want_onednn) {
        printf("FAIL conv2d     %-44s asked for %s, runs: %s\n", what, path_name(want_path), buf);
        failures++;
    }
    return onednn ? path_name(want_path) : "im2col";
}

/* One line per check: the worst error of each tensor compared. */
static void report(const char *op, const char *what, int threads, const char *const *names, const double *errs,
                   int count, const char *path) {
    char line[512];
    int used = 0;
    bool ok = true;
    for (int i = 0; i < count; i++) {
        ok = ok && errs[i] <= tol; /* NaN fails too */
        used += snprintf(line + used, sizeof line - (size_t)used, " %s %.1e", names[i], errs[i]);
    }
    if (!ok) failures++;
    printf("%-4s %-10s %-44s threads %d:%s%s%s\n", ok ? "ok" : "FAIL", op, what, threads, line, path ? "  " : "",
           path ? path : "");
}

/* Naive backward into double buffers (see the file comment). */
static void reference_backward(const conv_config *c, int OH, int OW, const float *x, const float *w, const float *dy,
                               double *dx, double *dw, double *db) {
    const int N = c->N, C = c->C, H = c->H, W = c->W, OC = c->OC, KH = c->KH, KW = c->KW;
    for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    const double g = dy[(((size_t)n * OC + oc) * OH + oh) * OW + ow];
                    db[oc] += g;
                    for (int ch = 0; ch < C; ch++)
                        for (int kh = 0; kh < KH; kh++) {
                            const int ih = oh * c->sh - c->ph + kh * c->dh;
                            if (ih < 0 || ih >= H) continue;
                            for (int kw = 0; kw < KW; kw++) {
                                const int iw = ow * c->sw - c->pw + kw * c->dw;
                                if (iw < 0 || iw >= W) continue;
                                const size_t xi = (((size_t)n * C + ch) * H + ih) * W + iw;
                                const size_t wi = (((size_t)oc * C + ch) * KH + kh) * KW + kw;
                                dx[xi] += w[wi] * g;
                                dw[wi] += x[xi] * g;
                            }
                        }
                }
}

/* Built and compiled at `threads` threads; run at `run_threads` (0: the same), so a workspace planned
 * for fewer threads must still be enough. */
static void run_config(const conv_config *c, int threads, int run_threads, uint64_t seed) {
    const int shown = run_threads ? run_threads : threads;
    magna_set_threads(threads);
    const int OH = (c->H + 2 * c->ph - c->dh * (c->KH - 1) - 1) / c->sh + 1;
    const int OW = (c->W + 2 * c->pw - c->dw * (c->KW - 1) - 1) / c->sw + 1;
    const size_t nx = (size_t)c->N * c->C * c->H * c->W, nw = (size_t)c->OC * c->C * c->KH * c->KW;
    const size_t ny = (size_t)c->N * c->OC * OH * OW;

    magna_graph *g = magna_graph_new(seed);
    magna_node *x = magna_param(g, "x", 4, (int64_t[]){c->N, c->C, c->H, c->W}, magna_init_zeros());
    magna_node *w = magna_param(g, "w", 4, (int64_t[]){c->OC, c->C, c->KH, c->KW}, magna_init_zeros());
    magna_node *b = c->bias ? magna_param(g, "b", 1, (int64_t[]){c->OC}, magna_init_zeros()) : NULL;
    magna_conv2d_opts o = {c->sh, c->sw, c->ph, c->pw, c->dh, c->dw};
    magna_node *y = magna_conv2d(g, x, w, b, o);
    magna_graph_keep(g, y);
    if (want_bf16) magna_graph_set_bf16(g, true);
    if (magna_graph_compile(g, y) != MAGNA_OK) {
        printf("FAIL conv2d     %-44s threads %d: build: %s\n", c->what, threads, magna_graph_errmsg(g));
        failures++;
        magna_graph_free(g);
        return;
    }
    if (run_threads) magna_set_threads(run_threads);
    fill_uniform(magna_node_data(x), nx, seed, 1);
    fill_uniform(magna_node_data(w), nw, seed, 2);
    if (b) fill_uniform(magna_node_data(b), (size_t)c->OC, seed, 3);

    float *yref = malloc(ny * sizeof *yref), *dy = malloc(ny * sizeof *dy);
    double *yd = malloc(ny * sizeof *yd), *dx = calloc(nx, sizeof *dx), *dw = calloc(nw, sizeof *dw);
    double *db = calloc((size_t)c->OC, sizeof *db);
    if (!yref || !dy || !yd || !dx || !dw || !db) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    fill_uniform(dy, ny, seed, 4);
    const float *xv = magna_node_data(x), *wv = magna_node_data(w);
    magna_conv2d_reference(xv, wv, b ? magna_node_data(b) : NULL, yref, c->N, c->C, c->H, c->W, c->OC, c->KH, c->KW,
                           c->sh, c->sw, c->ph, c->pw, c->dh, c->dw);
    for (size_t i = 0; i < ny; i++) yd[i] = yref[i];
    reference_backward(c, OH, OW, xv, wv, dy, dx, dw, db);

    if (magna_graph_forward(g) != MAGNA_OK || magna_node_numel(y) != (int64_t)ny) {
        printf("FAIL conv2d     %-44s threads %d: forward: %s\n", c->what, shown, magna_graph_errmsg(g));
        failures++;
    } else {
        const char *path = check_path(y, run_threads && run_threads != threads, c->what);
        char impl[256];
        if (want_bf16 && magna_cpu_detect().avx512_bf16 && !strstr(magna_conv2d_describe(y, impl, sizeof impl), "bf16")) {
            printf("FAIL conv2d     %-44s bf16 asked for, runs: %s\n", c->what, impl);
            failures++;
        }
        const char *names[5] = {"fwd", "dx", "dw", "db", "x2"};
        double errs[5];
        errs[0] = rel_err(magna_node_data(y), yd, ny);
        magna_graph_zero_grad(g);
        magna_graph_backward_seeded(g, dy);
        errs[1] = rel_err(magna_node_grad(x), dx, nx);
        errs[2] = rel_err(magna_node_grad(w), dw, nw);
        errs[3] = b ? rel_err(magna_node_grad(b), db, (size_t)c->OC) : 0;
        /* a second backward without zeroing: gradients add up to twice the reference */
        magna_graph_backward_seeded(g, dy);
        for (size_t i = 0; i < nx; i++) dx[i] *= 2;
        for (size_t i = 0; i < nw; i++) dw[i] *= 2;
        for (int i = 0; i < c->OC; i++) db[i] *= 2;
        errs[4] = fmax(rel_err(magna_node_grad(x), dx, nx), rel_err(magna_node_grad(w), dw, nw));
        if (b) errs[4] = fmax(errs[4], rel_err(magna_node_grad(b), db, (size_t)c->OC));
        if (b) {
            report("conv2d", c->what, shown, names, errs, 5, path);
        } else {
            const char *nb[4] = {"fwd", "dx", "dw", "x2"};
            double eb[4] = {errs[0], errs[1], errs[2], errs[4]};
            report("conv2d", c->what, shown, nb, eb, 4, path);
        }
    }
    free(yref), free(dy), free(yd), free(dx), free(dw), free(db);
    magna_graph_free(g);
}

/* x as an input (no dx wanted) compiled at batch c->N, then run at smaller batches with set_batch (the
 * serial path at batch 1): forward, dw and db against the reference on the first `batch` samples. */
static void run_set_batch(const conv_config *c, int threads, uint64_t seed) {
    magna_set_threads(threads);
    const int OH = (c->H + 2 * c->ph - c->dh * (c->KH - 1) - 1) / c->sh + 1;
    const int OW = (c->W + 2 * c->pw - c->dw * (c->KW - 1) - 1) / c->sw + 1;
    const size_t nx = (size_t)c->N * c->C * c->H * c->W, nw = (size_t)c->OC * c->C * c->KH * c->KW;
    const size_t ny = (size_t)c->N * c->OC * OH * OW;
    magna_graph *g = magna_graph_new(seed);
    magna_node *x = magna_input(g, "x", MAGNA_F32, 4, (int64_t[]){c->N, c->C, c->H, c->W});
    magna_node *w = magna_param(g, "w", 4, (int64_t[]){c->OC, c->C, c->KH, c->KW}, magna_init_uniform(-1, 1));
    magna_node *b = magna_param(g, "b", 1, (int64_t[]){c->OC}, magna_init_uniform(-1, 1));
    magna_node *y = magna_conv2d(g, x, w, b, (magna_conv2d_opts){c->sh, c->sw, c->ph, c->pw, c->dh, c->dw});
    magna_graph_keep(g, y);
    float *xv = malloc(nx * sizeof *xv), *yref = malloc(ny * sizeof *yref), *dy = malloc(ny * sizeof *dy);
    double *yd = malloc(ny * sizeof *yd), *dx = malloc(nx * sizeof *dx), *dw = malloc(nw * sizeof *dw);
    double *db = malloc((size_t)c->OC * sizeof *db);
    if (!xv || !yref || !dy || !yd || !dx || !dw || !db) exit(2);
    fill_uniform(xv, nx, seed, 1);
    fill_uniform(dy, ny, seed, 4);
    const bool built = magna_graph_compile(g, y) == MAGNA_OK;
    for (int batch = c->N; batch >= 1; batch = batch > 1 && batch - 2 < 1 ? 1 : batch - 2) {
        char what[80];
        snprintf(what, sizeof what, "%s, set_batch %d", c->what, batch);
        conv_config cb = *c;
        cb.N = batch;
        const size_t bx = nx / (size_t)c->N * (size_t)batch, by = ny / (size_t)c->N * (size_t)batch;
        if (!built || magna_graph_set_batch(g, batch) != MAGNA_OK || magna_node_set(x, xv, (int64_t)bx) != MAGNA_OK ||
            magna_graph_forward(g) != MAGNA_OK) {
            printf("FAIL conv2d     %-44s threads %d: %s\n", what, threads, magna_graph_errmsg(g));
            failures++;
            break;
        }
        magna_conv2d_reference(xv, magna_node_data(w), magna_node_data(b), yref, batch, c->C, c->H, c->W, c->OC,
                               c->KH, c->KW, c->sh, c->sw, c->ph, c->pw, c->dh, c->dw);
        for (size_t i = 0; i < by; i++) yd[i] = yref[i];
        memset(dx, 0, nx * sizeof *dx), memset(dw, 0, nw * sizeof *dw), memset(db, 0, (size_t)c->OC * sizeof *db);
        reference_backward(&cb, OH, OW, xv, magna_node_data(w), dy, dx, dw, db);
        magna_graph_zero_grad(g);
        magna_graph_backward_seeded(g, dy);
        const char *names[3] = {"fwd", "dw", "db"};
        const double errs[3] = {rel_err(magna_node_data(y), yd, by), rel_err(magna_node_grad(w), dw, nw),
                                rel_err(magna_node_grad(b), db, (size_t)c->OC)};
        report("conv2d", what, threads, names, errs, 3, check_path(y, false, what));
        if (batch == 1) break;
    }
    free(xv), free(yref), free(dy), free(yd), free(dx), free(dw), free(db);
    magna_graph_free(g);
}

/* ---- pooling: forward and dx against plain loops ------------------------------------------------ */

typedef struct pool_config {
    const char *what;
    int N, C, H, W, KH, KW, sh, sw, ph, pw;
} pool_config;

static const pool_config pool_configs[] = {
    {"2x2 stride 2 (cnn), 28x28", 4, 32, 28, 28, 2, 2, 0, 0, 0, 0},
    {"2x2 stride 2, odd 7x7", 2, 3, 7, 7, 2, 2, 0, 0, 0, 0},
    {"3x3 stride 2 pad 1", 2, 3, 9, 8, 3, 3, 2, 2, 1, 1},
    {"3x2 stride 1x2 pad 1x1", 3, 2, 6, 7, 3, 2, 1, 2, 1, 1},
    {"3x3 stride 1 pad 1 (overlap)", 1, 2, 5, 5, 3, 3, 1, 1, 1, 1},
};

/* Plain loops: window (oh, ow) covers rows oh sh - ph .. + KH - 1 (clipped to the image); max takes the
 * first largest, avg divides by the real pixels. dy is scattered back the same way. */
static void reference_pool(const pool_config *c, bool max, int OH, int OW, const float *x, const float *dy, double *y,
                           double *dx) {
    const int sh = c->sh ? c->sh : c->KH, sw = c->sw ? c->sw : c->KW;
    for (int p = 0; p < c->N * c->C; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                double acc = 0, best = -INFINITY;
                int count = 0, best_i = -1;
                for (int kh = 0; kh < c->KH; kh++)
                    for (int kw = 0; kw < c->KW; kw++) {
                        const int ih = oh * sh - c->ph + kh, iw = ow * sw - c->pw + kw;
                        if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                        const int i = (p * c->H + ih) * c->W + iw;
                        acc += x[i], count++;
                        if (x[i] > best) best = x[i], best_i = i;
                    }
                const int o = (p * OH + oh) * OW + ow;
                y[o] = max ? best : acc / count;
                if (max) {
                    dx[best_i] += dy[o];
                    continue;
                }
                for (int kh = 0; kh < c->KH; kh++)
                    for (int kw = 0; kw < c->KW; kw++) {
                        const int ih = oh * sh - c->ph + kh, iw = ow * sw - c->pw + kw;
                        if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                        dx[(p * c->H + ih) * c->W + iw] += dy[o] / count;
                    }
            }
}

static void run_pool(const pool_config *c, bool max, int threads, uint64_t seed) {
    magna_set_threads(threads);
    const char *op = max ? "max_pool2d" : "avg_pool2d";
    const int sh = c->sh ? c->sh : c->KH, sw = c->sw ? c->sw : c->KW;
    const int OH = (c->H + 2 * c->ph - c->KH) / sh + 1, OW = (c->W + 2 * c->pw - c->KW) / sw + 1;
    const size_t nx = (size_t)c->N * c->C * c->H * c->W, ny = (size_t)c->N * c->C * OH * OW;
    magna_graph *g = magna_graph_new(seed);
    magna_node *x = magna_param(g, "x", 4, (int64_t[]){c->N, c->C, c->H, c->W}, magna_init_zeros());
    magna_pool2d_opts o = {c->KH, c->KW, c->sh, c->sw, c->ph, c->pw};
    magna_node *y = max ? magna_max_pool2d(g, x, o) : magna_avg_pool2d(g, x, o);
    magna_graph_keep(g, y);
    float *dy = malloc(ny * sizeof *dy);
    double *yd = calloc(ny, sizeof *yd), *dx = calloc(nx, sizeof *dx);
    if (!dy || !yd || !dx) exit(2);
    if (magna_graph_compile(g, y) != MAGNA_OK || magna_node_numel(y) != (int64_t)ny) {
        printf("FAIL %-10s %-44s threads %d: build: %s\n", op, c->what, threads, magna_graph_errmsg(g));
        failures++;
    } else {
        fill_uniform(magna_node_data(x), nx, seed, 1);
        fill_uniform(dy, ny, seed, 2);
        reference_pool(c, max, OH, OW, magna_node_data(x), dy, yd, dx);
        magna_graph_forward(g);
        magna_graph_zero_grad(g);
        magna_graph_backward_seeded(g, dy);
        const char *names[2] = {"fwd", "dx"};
        double errs[2] = {rel_err(magna_node_data(y), yd, ny), rel_err(magna_node_grad(x), dx, nx)};
        report(op, c->what, threads, names, errs, 2, NULL);
    }
    free(dy), free(yd), free(dx);
    magna_graph_free(g);
}

/* ---- batch norm: training statistics, running-statistics update, inference and its backward ------ */

/* x [N, C, H, W] (H = 0: [N, C]) with gamma and beta; one training forward (checked against batch
 * statistics computed here, and the running statistics after the update), then an inference forward and
 * backward (checked against the affine map with the running statistics). */
static void run_batch_norm(int N, int C, int H, int W, int threads, uint64_t seed) {
    magna_set_threads(threads);
    const float momentum = 0.1f, eps = 1e-5f;
    const int HW = H ? H * W : 1;
    const size_t nx = (size_t)N * C * HW;
    char what[64];
    snprintf(what, sizeof what, H ? "[%d, %d, %d, %d]" : "[%d, %d]", N, C, H, W);
    magna_graph *g = magna_graph_new(seed);
    magna_node *x = H ? magna_param(g, "x", 4, (int64_t[]){N, C, H, W}, magna_init_zeros())
                      : magna_param(g, "x", 2, (int64_t[]){N, C}, magna_init_zeros());
    magna_node *gamma = magna_param(g, "gamma", 1, (int64_t[]){C}, magna_init_uniform(0.5f, 1.5f));
    magna_node *beta = magna_param(g, "beta", 1, (int64_t[]){C}, magna_init_uniform(-0.5f, 0.5f));
    magna_node *rm = magna_state(g, "running_mean", 1, (int64_t[]){C}, magna_init_constant(0.25f));
    magna_node *rv = magna_state(g, "running_var", 1, (int64_t[]){C}, magna_init_constant(2.0f));
    magna_node *y = magna_batch_norm(g, x, gamma, beta, rm, rv, momentum, eps);
    magna_graph_keep(g, y);
    if (magna_graph_compile(g, y) != MAGNA_OK) {
        printf("FAIL batch_norm %-44s threads %d: build: %s\n", what, threads, magna_graph_errmsg(g));
        failures++;
        magna_graph_free(g);
        return;
    }
    float *xv = magna_node_data(x), *gv = magna_node_data(gamma), *bv = magna_node_data(beta);
    for (size_t i = 0; i < nx; i++) xv[i] = 3.0f * magna_rand_uniform(seed, 1, i) + 1.0f; /* mean 2.5, not 0 */
    float *dy = malloc(nx * sizeof *dy);
    double *yd = calloc(nx, sizeof *yd), *dx = calloc(nx, sizeof *dx), *stats = calloc(2 * (size_t)C, sizeof *stats);
    double *dg = calloc((size_t)C, sizeof *dg), *dbeta = calloc((size_t)C, sizeof *dbeta);
    if (!dy || !yd || !dx || !stats || !dg || !dbeta) exit(2);
    fill_uniform(dy, nx, seed, 2);

    /* training: batch statistics */
    const int M = N * HW;
    for (int c = 0; c < C; c++) {
        double s = 0, ss = 0;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < HW; j++) s += xv[((size_t)n * C + c) * HW + j];
        const double mean = s / M;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < HW; j++) ss += pow(xv[((size_t)n * C + c) * HW + j] - mean, 2);
        const double var = ss / M;
        for (int n = 0; n < N; n++)
            for (int j = 0; j < HW; j++) {
                const size_t i = ((size_t)n * C + c) * HW + j;
                yd[i] = (xv[i] - mean) / sqrt(var + eps) * gv[c] + bv[c];
            }
        stats[c] = (1 - momentum) * 0.25 + momentum * mean;
        stats[C + c] = (1 - momentum) * 2.0 + momentum * var * M / (M - 1);
    }
    magna_graph_set_training(g, true);
    magna_graph_forward(g);
    const double e_train = rel_err(magna_node_data(y), yd, nx);
    const double e_rm = rel_err(magna_node_data(rm), stats, (size_t)C);
    const double e_rv = rel_err(magna_node_data(rv), stats + C, (size_t)C);

    /* inference: the running statistics just updated */
    const float *rmv = magna_node_data(rm), *rvv = magna_node_data(rv);
    for (int c = 0; c < C; c++) {
        const double istd = 1.0 / sqrt((double)rvv[c] + eps);
        for (int n = 0; n < N; n++)
            for (int j = 0; j < HW; j++) {
                const size_t i = ((size_t)n * C + c) * HW + j;
                const double xhat = (xv[i] - rmv[c]) * istd;
                yd[i] = xhat * gv[c] + bv[c];
                dx[i] = dy[i] * gv[c] * istd;
                dg[c] += dy[i] * xhat;
                dbeta[c] += dy[i];
            }
    }
    magna_graph_set_training(g, false);
    magna_graph_forward(g);
    const double e_eval = rel_err(magna_node_data(y), yd, nx);
    magna_graph_zero_grad(g);
    magna_graph_backward_seeded(g, dy);
    const double e_dx = rel_err(magna_node_grad(x), dx, nx);
    const double e_dg =
        fmax(rel_err(magna_node_grad(gamma), dg, (size_t)C), rel_err(magna_node_grad(beta), dbeta, (size_t)C));
    const char *names[6] = {"train", "rmean", "rvar", "eval", "dx", "dgb"};
    const double errs[6] = {e_train, e_rm, e_rv, e_eval, e_dx, e_dg};
    report("batch_norm", what, threads, names, errs, 6, NULL);
    free(dy), free(yd), free(dx), free(stats), free(dg), free(dbeta);
    magna_graph_free(g);
}

/* Which kernels a conv2d node of cnn layer 2 gets on the current path, at the default thread count. */
/* Max pooling's 2x2 kernel, AVX-512 against the scalar reference on fresh planes of every width 2..70 (odd ones
 * too), values drawn from a few levels so that ties are common, and NaNs sprinkled in: values and argmax equal. */
static void run_pool_2x2_paths(uint64_t seed) {
    int bad = 0, planes = 0;
    for (int W = 2; W <= 70; W++)
        for (int H = 2; H <= 6; H += 3) {
            const int OH = H / 2, OW = W / 2;
            float *x = malloc((size_t)(H * W) * sizeof *x), *y0 = malloc((size_t)(OH * OW) * sizeof *y0);
            float *y1 = malloc((size_t)(OH * OW) * sizeof *y1);
            int32_t *a0 = malloc((size_t)(OH * OW) * sizeof *a0), *a1 = malloc((size_t)(OH * OW) * sizeof *a1);
            for (int i = 0; i < H * W; i++) {
                const uint64_t r = magna_rand_u64(seed + (uint64_t)W, (uint64_t)H, (uint64_t)i);
                x[i] = r % 23 == 0 ? NAN : (float)(r % 5) - 2.0f;
            }
            magna_max_pool_2x2_plane(0, x, y0, a0, W, OH, OW);
            magna_max_pool_2x2_plane(1, x, y1, a1, W, OH, OW);
            for (int i = 0; i < OH * OW; i++)
                bad += a0[i] != a1[i] || (memcmp(&y0[i], &y1[i], sizeof(float)) != 0);
            planes++;
            free(x), free(y0), free(y1), free(a0), free(a1);
        }
    if (bad) failures++;
    printf("%-4s max_pool 2x2 vector vs scalar, %d planes (widths 2..70, ties and NaN): %d mismatches\n",
           bad ? "FAIL" : "ok", planes, bad);
}

static void print_path(void) {
    magna_graph *g = magna_graph_new(1);
    magna_node *x = magna_param(g, "x", 4, (int64_t[]){4, 32, 14, 14}, magna_init_zeros()); /* wants dx too */
    magna_node *w = magna_param(g, "w", 4, (int64_t[]){64, 32, 3, 3}, magna_init_zeros());
    magna_node *b = magna_param(g, "b", 1, (int64_t[]){64}, magna_init_zeros());
    magna_node *y = magna_conv2d(g, x, w, b, (magna_conv2d_opts){.pad_h = 1, .pad_w = 1});
    char buf[256];
    printf("conv2d path %s: %s\n", path_name(want_path), y ? magna_conv2d_describe(y, buf, sizeof buf) : "?");
    magna_graph_free(g);
}

int main(void) {
    const int default_threads = magna_get_threads();
    const int thread_counts[3] = {default_threads, 1, 3};
    const int n_configs = (int)(sizeof configs / sizeof configs[0]);
    const int n_pool = (int)(sizeof pool_configs / sizeof pool_configs[0]);
    conv2d_path paths[3] = {CONV2D_ONEDNN, CONV2D_ONEDNN_PLAIN, CONV2D_IM2COL};
    int n_paths = 3;
    magna_conv2d_set_path(CONV2D_ONEDNN);
    if (magna_conv2d_get_path() == CONV2D_IM2COL) { /* built without oneDNN */
        printf("conv2d: built without oneDNN, only the im2col path\n");
        paths[0] = CONV2D_IM2COL, n_paths = 1;
    }
    for (int pi = 0; pi < n_paths; pi++) {
        want_path = paths[pi];
        magna_conv2d_set_path(want_path);
        magna_set_threads(default_threads);
        print_path();
        for (int t = 0; t < 3; t++) {
            const int threads = thread_counts[t];
            if (t > 0 && threads == default_threads) continue;
            const uint64_t seed = 1000 + (uint64_t)t * 100 + (uint64_t)pi * 1000;
            for (int i = 0; i < n_configs; i++) run_config(&configs[i], threads, 0, seed + (uint64_t)i);
            run_set_batch(&configs[1], threads, seed + 40);
            run_set_batch(&configs[4], threads, seed + 41);
            if (pi > 0) continue; /* the other kernels have one path */
            for (int i = 0; i < n_pool; i++) {
                run_pool(&pool_configs[i], true, threads, seed + 50 + (uint64_t)i);
                run_pool(&pool_configs[i], false, threads, seed + 60 + (uint64_t)i);
            }
            run_batch_norm(6, 5, 0, 0, threads, seed + 70);
            run_batch_norm(4, 32, 14, 14, threads, seed + 71);
            run_batch_norm(3, 2, 1, 1, threads, seed + 72);
        }
        /* compiled for one thread, run on three (oneDNN's primitives are made for one: im2col runs) */
        conv_config more[2] = {configs[2], configs[10]};
        more[0].what = "cnn layer 3, compiled 1 thread, run 3";
        more[1].what = "pad 2, stride 3, dil 2x1, compiled 1, run 3";
        run_config(&more[0], 1, 3, 2000 + (uint64_t)pi * 1000);
        run_config(&more[1], 1, 3, 2001 + (uint64_t)pi * 1000);
    }
    run_pool_2x2_paths(77);
    /* bf16 mixed precision against the same double reference: within bf16's rounding where the CPU has
     * avx512_bf16 (and oneDNN's bf16 kernels are shown running), float32's tolerance where it falls back */
    if (n_paths == 3) {
        magna_conv2d_set_path(want_path = CONV2D_ONEDNN);
        magna_set_threads(default_threads);
        want_bf16 = true;
        const bool hw = magna_cpu_detect().avx512_bf16;
        tol = hw ? 2e-2 : TOL;
        printf("bf16 mixed precision (%s):\n", hw ? "avx512_bf16: bf16 operands" : "no avx512_bf16: float32");
        for (int i = 0; i < n_configs; i++) run_config(&configs[i], default_threads, 0, 5000 + (uint64_t)i);
        want_bf16 = false, tol = TOL;
    }
    magna_conv2d_set_path(CONV2D_DEFAULT);
    magna_set_threads(default_threads);
    if (failures) {
        printf("test_conv_kernels: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_conv_kernels: all checks passed\n");
    return 0;
}
