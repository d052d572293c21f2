/* test_cuda_norm_conv.c — the kernels of norm.cu and conv.cu against plain loops in double, on shapes the
 * gradient-check cases are too small to reach: layer norm on both row paths (a warp per row up to 1024 columns,
 * a block beyond, 1024 threads from 8192; float4 accesses when D % 4 == 0, else scalar) with dgamma/dbeta summed
 * over one slice of rows or many; batch norm
 * in training (running statistics updated as the CPU does) and inference, backward by the formula the saved
 * flag names; im2col in both layouts, col2im as its exact adjoint, convolution as im2col + magna_cuda_gemm
 * against magna_conv2d_reference; bias add and gradient, the dy staging; max and average pooling with
 * overlapping, padded, non-square windows (max: first of ties, NaN wins), backward gathers against scatters.
 * Backward results add into gradients that already hold values. And conv2d's glue (src/cuda/ops_conv.c) on a
 * CUDA graph whose workspace is cut after compile to one sample's columns, or two samples' worth, so the
 * sample-group loops and the GEMM-a-sample path for dw run (a compiled graph's workspace holds the whole batch)
 * against the same graph on the CPU. Runs under the emulator (test_..._emu) and, in CUDA builds, on a GPU. */
#include "check.h"
#include "cuda/kernels.h"
#include "graph/internal.h"
#include "magna.h"
#include "ops/conv2d.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (2.0 / 16777216.0) - 1.0);
}
static float *rand_host(int64_t n) {
    float *h = malloc((size_t)(n + 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) h[i] = frand();
    return h;
}
static void *dev(const void *h, int64_t bytes) {
    void *d = NULL;
    CHECK(cudaMalloc(&d, (size_t)bytes + 16) == cudaSuccess, "cudaMalloc");
    if (h) CHECK(cudaMemcpy(d, h, (size_t)bytes, cudaMemcpyHostToDevice) == cudaSuccess, "upload");
    return d;
}
static float *fdev(const float *h, int64_t n) { return dev(h, n * (int64_t)sizeof(float)); }
static void down(void *h, const void *d, int64_t bytes) {
    CHECK(cudaDeviceSynchronize() == cudaSuccess && cudaMemcpy(h, d, (size_t)bytes, cudaMemcpyDeviceToHost) == cudaSuccess,
          "download");
}
/* worst |got - want| over the largest |want| (1e-6 at least) */
static double rel(const float *got, const double *want, int64_t n) {
    double scale = 1e-6, worst = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs(got[i] - want[i]);
        worst = isnan(e) ? INFINITY : fmax(worst, e);
    }
    return worst / scale;
}
#define LAUNCHED(call) CHECK((call) == 0, "%s failed", #call)

/* ---- layer norm ---------------------------------------------------------------------------------------------- */

static void layer_norm(int64_t rows, int64_t D, int affine, size_t ws_floats) {
    const float eps = 1e-5f;
    float *x = rand_host(rows * D), *gamma = rand_host(D), *beta = rand_host(D), *dy = rand_host(rows * D);
    float *dx0 = rand_host(rows * D), *dg0 = rand_host(D), *db0 = rand_host(D);
    double *y_ref = malloc((size_t)(rows * D) * 8), *dx_ref = malloc((size_t)(rows * D) * 8);
    double *dg_ref = calloc((size_t)D, 8), *db_ref = calloc((size_t)D, 8);
    for (int64_t d = 0; d < D; d++) dg_ref[d] = dg0[d], db_ref[d] = db0[d];
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * D, *dr = dy + r * D;
        double m = 0, v = 0, a = 0, b = 0;
        for (int64_t d = 0; d < D; d++) m += xr[d];
        m /= (double)D;
        for (int64_t d = 0; d < D; d++) v += (xr[d] - m) * (xr[d] - m);
        const double rs = 1.0 / sqrt(v / (double)D + eps);
        for (int64_t d = 0; d < D; d++) {
            const double norm = (xr[d] - m) * rs, dn = affine ? dr[d] * (double)gamma[d] : dr[d];
            y_ref[r * D + d] = affine ? norm * gamma[d] + beta[d] : norm;
            a += dn, b += dn * norm;
            dg_ref[d] += dr[d] * norm, db_ref[d] += dr[d];
        }
        for (int64_t d = 0; d < D; d++) {
            const double norm = (xr[d] - m) * rs, dn = affine ? dr[d] * (double)gamma[d] : dr[d];
            dx_ref[r * D + d] = dx0[r * D + d] + (dn - a / (double)D - norm * b / (double)D) * rs;
        }
    }
    float *xd = fdev(x, rows * D), *gd = fdev(gamma, D), *bd = fdev(beta, D), *dyd = fdev(dy, rows * D);
    float *yd = fdev(NULL, rows * D), *saved = fdev(NULL, 2 * rows), *dxd = fdev(dx0, rows * D);
    float *dgd = fdev(dg0, D), *dbd = fdev(db0, D), *ws = fdev(NULL, (int64_t)ws_floats);
    LAUNCHED(magna_cuda_layer_norm_forward(xd, affine ? gd : NULL, affine ? bd : NULL, eps, rows, D, yd, 0, saved,
                                           saved + rows, NULL));
    LAUNCHED(magna_cuda_layer_norm_backward(xd, affine ? gd : NULL, dyd, saved, saved + rows, rows, D, dxd,
                                            affine ? dgd : NULL, affine ? dbd : NULL, ws, ws_floats, NULL));
    float *y = malloc((size_t)(rows * D) * 4), *dx = malloc((size_t)(rows * D) * 4), *dg = malloc((size_t)D * 4),
          *db = malloc((size_t)D * 4);
    down(y, yd, rows * D * 4), down(dx, dxd, rows * D * 4), down(dg, dgd, D * 4), down(db, dbd, D * 4);
    const double ey = rel(y, y_ref, rows * D), edx = rel(dx, dx_ref, rows * D);
    const double edg = affine ? rel(dg, dg_ref, D) : 0, edb = affine ? rel(db, db_ref, D) : 0;
    CHECK(ey < 1e-5 && edx < 1e-5 && edg < 1e-5 && edb < 1e-5,
          "layer_norm %lldx%lld affine %d ws %zu: y %.2g dx %.2g dgamma %.2g dbeta %.2g", (long long)rows, (long long)D,
          affine, ws_floats, ey, edx, edg, edb);
    if (!affine) { /* untouched without gamma and beta */
        CHECK(!memcmp(dg, dg0, (size_t)D * 4) && !memcmp(db, db0, (size_t)D * 4), "layer_norm wrote dgamma/dbeta");
    }
    cudaFree(xd), cudaFree(gd), cudaFree(bd), cudaFree(dyd), cudaFree(yd), cudaFree(saved), cudaFree(dxd);
    cudaFree(dgd), cudaFree(dbd), cudaFree(ws);
    free(x), free(gamma), free(beta), free(dy), free(dx0), free(dg0), free(db0), free(y_ref), free(dx_ref);
    free(dg_ref), free(db_ref), free(y), free(dx), free(dg), free(db);
}

/* ---- batch norm ---------------------------------------------------------------------------------------------- */

static void batch_norm(int64_t N, int64_t C, int64_t HW, int training, int affine) {
    const magna_cuda_bn d = {N, C, HW, 0.1f, 1e-5f, training};
    const int64_t n = N * C * HW, M = N * HW;
    float *x = rand_host(n), *gamma = rand_host(C), *beta = rand_host(C), *dy = rand_host(n), *dx0 = rand_host(n);
    float *rm = rand_host(C), *rv = rand_host(C), *dg0 = rand_host(C), *db0 = rand_host(C);
    for (int64_t c = 0; c < C; c++) rv[c] = 0.5f + fabsf(rv[c]);
    double *y_ref = malloc((size_t)n * 8), *dx_ref = malloc((size_t)n * 8), *rm_ref = malloc((size_t)C * 8);
    double *rv_ref = malloc((size_t)C * 8), *dg_ref = malloc((size_t)C * 8), *db_ref = malloc((size_t)C * 8);
    for (int64_t c = 0; c < C; c++) {
        double mu, istd, s = 0, ss = 0;
        for (int64_t i = 0; i < M; i++) s += x[(i / HW * C + c) * HW + i % HW];
        const double m = s / (double)M;
        for (int64_t i = 0; i < M; i++) ss += pow(x[(i / HW * C + c) * HW + i % HW] - m, 2);
        const double var = ss / (double)M;
        if (training) {
            mu = m, istd = 1.0 / sqrt(var + 1e-5);
            rm_ref[c] = 0.9 * rm[c] + 0.1 * m;
            rv_ref[c] = 0.9 * rv[c] + 0.1 * (M > 1 ? var * (double)M / (double)(M - 1) : var);
        } else {
            mu = rm[c], istd = 1.0 / sqrt(rv[c] + 1e-5);
            rm_ref[c] = rm[c], rv_ref[c] = rv[c];
        }
        const double scale = (affine ? gamma[c] : 1.0) * istd, shift = affine ? beta[c] : 0.0;
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < M; i++) {
            const int64_t at = (i / HW * C + c) * HW + i % HW;
            y_ref[at] = (x[at] - mu) * scale + shift;
            sdy += dy[at], sdyx += dy[at] * (x[at] - mu) * istd;
        }
        dg_ref[c] = dg0[c] + sdyx, db_ref[c] = db0[c] + sdy;
        for (int64_t i = 0; i < M; i++) {
            const int64_t at = (i / HW * C + c) * HW + i % HW;
            const double mdy = training ? sdy / (double)M : 0, mdyx = training ? sdyx / (double)M : 0;
            dx_ref[at] = dx0[at] + scale * (dy[at] - mdy - (x[at] - mu) * istd * mdyx);
        }
    }
    float *xd = fdev(x, n), *gd = fdev(gamma, C), *bd = fdev(beta, C), *dyd = fdev(dy, n), *dxd = fdev(dx0, n);
    float *rmd = fdev(rm, C), *rvd = fdev(rv, C), *dgd = fdev(dg0, C), *dbd = fdev(db0, C), *yd = fdev(NULL, n);
    float *saved = fdev(NULL, 2 * C + 1);
    LAUNCHED(magna_cuda_batch_norm_forward(&d, xd, affine ? gd : NULL, affine ? bd : NULL, rmd, rvd, yd, saved, NULL));
    /* backward must take the formula from saved, whatever the mode it is told */
    const magna_cuda_bn other = {N, C, HW, 0.1f, 1e-5f, !training};
    LAUNCHED(magna_cuda_batch_norm_backward(&other, xd, affine ? gd : NULL, dyd, saved, dxd, dgd, dbd, NULL));
    float *y = malloc((size_t)n * 4), *dx = malloc((size_t)n * 4), *out_c = malloc((size_t)C * 4 * 4 + 4);
    float flag;
    down(y, yd, n * 4), down(dx, dxd, n * 4), down(&flag, saved + 2 * C, 4);
    down(out_c, rmd, C * 4), down(out_c + C, rvd, C * 4), down(out_c + 2 * C, dgd, C * 4), down(out_c + 3 * C, dbd, C * 4);
    const double ey = rel(y, y_ref, n), edx = rel(dx, dx_ref, n), erm = rel(out_c, rm_ref, C), erv = rel(out_c + C, rv_ref, C);
    const double edg = rel(out_c + 2 * C, dg_ref, C), edb = rel(out_c + 3 * C, db_ref, C);
    CHECK(ey < 1e-5 && edx < 1e-5 && erm < 1e-6 && erv < 1e-6 && edg < 1e-5 && edb < 1e-5 && flag == (float)training,
          "batch_norm N%lld C%lld HW%lld training %d affine %d: y %.2g dx %.2g running %.2g/%.2g dgamma %.2g dbeta "
          "%.2g flag %g",
          (long long)N, (long long)C, (long long)HW, training, affine, ey, edx, erm, erv, edg, edb, (double)flag);
    cudaFree(xd), cudaFree(gd), cudaFree(bd), cudaFree(dyd), cudaFree(dxd), cudaFree(rmd), cudaFree(rvd);
    cudaFree(dgd), cudaFree(dbd), cudaFree(yd), cudaFree(saved);
    free(x), free(gamma), free(beta), free(dy), free(dx0), free(rm), free(rv), free(dg0), free(db0), free(y_ref);
    free(dx_ref), free(rm_ref), free(rv_ref), free(dg_ref), free(db_ref), free(y), free(dx), free(out_c);
}

/* ---- convolution ----------------------------------------------------------------------------------------------- */

static void convolution(int N, int C, int H, int W, int OC, int KH, int KW, int sh, int sw, int ph, int pw, int dh,
                        int dw) {
    magna_cuda_conv c = {C, H, W, KH, KW, 0, 0, sh, sw, ph, pw, dh, dw};
    c.OH = (H + 2 * ph - dh * (KH - 1) - 1) / sh + 1, c.OW = (W + 2 * pw - dw * (KW - 1) - 1) / sw + 1;
    const int64_t K = (int64_t)C * KH * KW, P = (int64_t)c.OH * c.OW, xs = (int64_t)C * H * W;
    float *x = rand_host(N * xs), *w = rand_host(OC * K), *bias = rand_host(OC), *y = malloc((size_t)(N * OC * P) * 4);
    float *yref = malloc((size_t)(N * OC * P) * 4);
    magna_conv2d_reference(x, w, bias, yref, N, C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw);
    double *yr = malloc((size_t)(N * OC * P) * 8);
    for (int64_t i = 0; i < N * OC * P; i++) yr[i] = yref[i];
    /* forward: col [N, K, P], a batched GEMM with w shared, then the bias */
    float *xd = fdev(x, N * xs), *wd = fdev(w, OC * K), *bd = fdev(bias, OC), *col = fdev(NULL, N * K * P);
    float *yd = fdev(NULL, N * OC * P);
    LAUNCHED(magna_cuda_im2col(&c, N, xd, col, P, K * P, NULL));
    LAUNCHED(magna_cuda_gemm(NULL, NULL, 0, 0, OC, (int)P, (int)K, 1.0f, wd, (int)K, 0, col, (int)P, K * P, 0.0f, yd,
                             (int)P, OC * P, N, 0));
    LAUNCHED(magna_cuda_bias_add(bd, N, OC, P, yd, NULL));
    down(y, yd, N * OC * P * 4);
    const double ey = rel(y, yr, N * OC * P);
    /* the other layout [K, N P] holds the same entries */
    float *col_a = malloc((size_t)(N * K * P) * 4), *col_b = malloc((size_t)(N * K * P) * 4);
    float *colw = fdev(NULL, N * K * P);
    LAUNCHED(magna_cuda_im2col(&c, N, xd, colw, N * P, P, NULL));
    down(col_a, col, N * K * P * 4), down(col_b, colw, N * K * P * 4);
    int64_t layout_bad = 0;
    for (int64_t j = 0; j < N; j++)
        for (int64_t r = 0; r < K; r++)
            for (int64_t p = 0; p < P; p++) layout_bad += col_a[(j * K + r) * P + p] != col_b[r * N * P + j * P + p];
    /* col2im is im2col's adjoint: dx0 + col2im(g) against a scatter of g along im2col's reads */
    float *g = rand_host(N * K * P), *dx0 = rand_host(N * xs), *dx = malloc((size_t)(N * xs) * 4);
    double *dxr = malloc((size_t)(N * xs) * 8);
    for (int64_t i = 0; i < N * xs; i++) dxr[i] = dx0[i];
    for (int64_t j = 0; j < N; j++)
        for (int64_t r = 0; r < K; r++) {
            const int kw = (int)(r % KW), kh = (int)(r / KW % KH), ch = (int)(r / (KW * KH));
            for (int64_t p = 0; p < P; p++) {
                const int ih = (int)(p / c.OW) * sh - ph + kh * dh, iw = (int)(p % c.OW) * sw - pw + kw * dw;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) dxr[((j * C + ch) * H + ih) * W + iw] += g[(j * K + r) * P + p];
            }
        }
    float *gd = fdev(g, N * K * P), *dxd = fdev(dx0, N * xs);
    LAUNCHED(magna_cuda_col2im_add(&c, N, gd, P, K * P, dxd, NULL));
    down(dx, dxd, N * xs * 4);
    const double edx = rel(dx, dxr, N * xs);
    /* bias gradient (adding) and the staging of dy as [OC, N P] */
    float *db0 = rand_host(OC), *db = malloc((size_t)OC * 4), *st = malloc((size_t)(N * OC * P) * 4);
    double *dbr = malloc((size_t)OC * 8);
    for (int oc = 0; oc < OC; oc++) {
        dbr[oc] = db0[oc];
        for (int64_t j = 0; j < N; j++)
            for (int64_t p = 0; p < P; p++) dbr[oc] += y[(j * OC + oc) * P + p];
    }
    float *dbd = fdev(db0, OC), *std_ = fdev(NULL, N * OC * P);
    LAUNCHED(magna_cuda_bias_grad(yd, N, OC, P, dbd, NULL));
    LAUNCHED(magna_cuda_conv_stage(yd, N, OC, P, std_, NULL));
    down(db, dbd, OC * 4), down(st, std_, N * OC * P * 4);
    int64_t stage_bad = 0;
    for (int64_t j = 0; j < N; j++)
        for (int64_t oc = 0; oc < OC; oc++)
            for (int64_t p = 0; p < P; p++) stage_bad += st[oc * N * P + j * P + p] != y[(j * OC + oc) * P + p];
    const double edb = rel(db, dbr, OC);
    CHECK(ey < 1e-5 && edx < 1e-6 && edb < 1e-5 && !layout_bad && !stage_bad,
          "conv N%d C%d %dx%d OC%d k%dx%d s%dx%d p%dx%d d%dx%d: y %.2g col2im %.2g dbias %.2g, %lld layout and %lld "
          "staging mismatches",
          N, C, H, W, OC, KH, KW, sh, sw, ph, pw, dh, dw, ey, edx, edb, (long long)layout_bad, (long long)stage_bad);
    cudaFree(xd), cudaFree(wd), cudaFree(bd), cudaFree(col), cudaFree(yd), cudaFree(colw), cudaFree(gd), cudaFree(dxd);
    cudaFree(dbd), cudaFree(std_);
    free(x), free(w), free(bias), free(y), free(yref), free(yr), free(col_a), free(col_b), free(g), free(dx0), free(dx);
    free(dxr), free(db0), free(db), free(st), free(dbr);
}

/* ---- pooling --------------------------------------------------------------------------------------------------- */

static void pooling(int max, int N, int C, int H, int W, int KH, int KW, int sh, int sw, int ph, int pw) {
    magna_pool_dims d = {(int64_t)N * C, H, W, (H + 2 * ph - KH) / sh + 1, (W + 2 * pw - KW) / sw + 1, KH, KW, sh, sw, ph, pw};
    const int64_t ni = d.planes * H * W, no = d.planes * d.OH * d.OW;
    float *x = rand_host(ni), *dy = rand_host(no), *dx0 = rand_host(ni);
    for (int64_t i = 0; i < ni; i++) x[i] = roundf(x[i] * 4) / 4; /* ties, so the first-wins rule matters */
    if (max && ni > 5) x[5] = NAN;
    double *yr = malloc((size_t)no * 8), *dxr = malloc((size_t)ni * 8);
    int32_t *ar = malloc((size_t)no * 4 + 4), *arg = malloc((size_t)no * 4 + 4);
    for (int64_t i = 0; i < ni; i++) dxr[i] = dx0[i];
    for (int64_t p = 0; p < d.planes; p++)
        for (int oh = 0; oh < d.OH; oh++)
            for (int ow = 0; ow < d.OW; ow++) {
                const int h0 = oh * sh - ph < 0 ? 0 : oh * sh - ph, h1 = oh * sh - ph + KH > H ? H : oh * sh - ph + KH;
                const int w0 = ow * sw - pw < 0 ? 0 : ow * sw - pw, w1 = ow * sw - pw + KW > W ? W : ow * sw - pw + KW;
                const float *xp = x + p * H * W;
                const int64_t o = (p * d.OH + oh) * d.OW + ow;
                double acc = 0;
                int bi = h0 * W + w0;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) {
                        const float v = xp[ih * W + iw];
                        acc += v;
                        if (v > xp[bi] || (isnan(v) && !isnan(xp[bi]))) bi = ih * W + iw;
                    }
                const int cnt = (h1 - h0) * (w1 - w0);
                yr[o] = max ? xp[bi] : acc / cnt;
                ar[o] = bi;
                if (max) dxr[p * H * W + bi] += dy[o];
                else
                    for (int ih = h0; ih < h1; ih++)
                        for (int iw = w0; iw < w1; iw++) dxr[p * H * W + ih * W + iw] += dy[o] / cnt;
            }
    float *xd = fdev(x, ni), *dyd = fdev(dy, no), *dxd = fdev(dx0, ni), *yd = fdev(NULL, no);
    int32_t *argd = dev(NULL, no * 4);
    if (max) {
        LAUNCHED(magna_cuda_max_pool_forward(&d, xd, yd, argd, NULL));
        LAUNCHED(magna_cuda_max_pool_backward(&d, dyd, argd, dxd, NULL));
    } else {
        LAUNCHED(magna_cuda_avg_pool_forward(&d, xd, yd, NULL));
        LAUNCHED(magna_cuda_avg_pool_backward(&d, dyd, dxd, NULL));
    }
    float *y = malloc((size_t)no * 4), *dx = malloc((size_t)ni * 4);
    down(y, yd, no * 4), down(dx, dxd, ni * 4);
    int64_t arg_bad = 0, nan_bad = 0;
    if (max) {
        down(arg, argd, no * 4);
        for (int64_t i = 0; i < no; i++) {
            arg_bad += arg[i] != ar[i];
            nan_bad += isnan(y[i]) != isnan(yr[i]);
            if (isnan(y[i])) y[i] = 0.0f, yr[i] = 0.0;
        }
    }
    const double ey = rel(y, yr, no), edx = rel(dx, dxr, ni);
    CHECK(ey < 1e-6 && edx < 1e-6 && !arg_bad && !nan_bad,
          "%s_pool N%d C%d %dx%d k%dx%d s%dx%d p%dx%d: y %.2g dx %.2g, %lld argmax and %lld NaN mismatches", max ? "max" : "avg",
          N, C, H, W, KH, KW, sh, sw, ph, pw, ey, edx, (long long)arg_bad, (long long)nan_bad);
    cudaFree(xd), cudaFree(dyd), cudaFree(dxd), cudaFree(yd), cudaFree(argd);
    free(x), free(dy), free(dx0), free(yr), free(dxr), free(ar), free(arg), free(y), free(dx);
}

/* ---- conv2d's sample groups, through the graph ---------------------------------------------------------------- */

static magna_graph *conv_graph(bool cuda, int ksize, magna_node **y) {
    magna_graph *g = magna_graph_new(11);
    if (cuda) CHECK(magna_graph_set_device(g, MAGNA_DEVICE_CUDA) == MAGNA_OK, "set_device: %s", magna_graph_errmsg(g));
    magna_node *x = magna_param(g, "x", 4, (int64_t[]){5, 3, 6, 7}, magna_init_uniform(-1, 1));
    magna_node *w = magna_param(g, "w", 4, (int64_t[]){4, 3, ksize, ksize}, magna_init_uniform(-1, 1));
    magna_node *b = magna_param(g, "b", 1, (int64_t[]){4}, magna_init_uniform(-1, 1));
    *y = magna_conv2d(g, x, w, b, (magna_conv2d_opts){.stride_w = ksize > 1 ? 2 : 1, .pad_h = ksize / 2, .pad_w = ksize / 2});
    CHECK(*y && magna_graph_compile(g, *y) == MAGNA_OK, "compile: %s", magna_graph_errmsg(g));
    return g;
}

static void conv_groups(int ksize, size_t budget_floats) {
    magna_node *yc, *yg;
    magna_graph *gc = conv_graph(false, ksize, &yc), *gg = conv_graph(true, ksize, &yg);
    gg->workspace_bytes = budget_floats * sizeof(float); /* the groups shrink to it (the buffer is larger) */
    const int64_t n = yc->numel;
    float *r = rand_host(n), *got = malloc((size_t)n * 4);
    double *want = malloc((size_t)n * 8);
    size_t np;
    CHECK(magna_graph_forward(gc) == MAGNA_OK && magna_graph_forward(gg) == MAGNA_OK, "forward: %s",
          magna_graph_errmsg(gg));
    CHECK(magna_node_read(yg, got) == MAGNA_OK, "read");
    for (int64_t i = 0; i < n; i++) want[i] = fval(yc)[i];
    const double ey = rel(got, want, n);
    magna_graph_zero_grad(gc), magna_graph_zero_grad(gg);
    CHECK(magna_graph_backward_seeded(gc, r) == MAGNA_OK && magna_graph_backward_seeded(gg, r) == MAGNA_OK,
          "backward: %s", magna_graph_errmsg(gg));
    const float *gcpu = magna_graph_grads(gc, &np), *ggpu = magna_graph_grads(gg, NULL);
    double *gw = malloc(np * 8);
    for (size_t i = 0; i < np; i++) gw[i] = gcpu[i];
    const double eg = ggpu ? rel(ggpu, gw, (int64_t)np) : INFINITY;
    CHECK(ey < 1e-5 && eg < 1e-5, "conv2d %dx%d through the graph, workspace %zu floats: y %.2g, gradients %.2g", ksize,
          ksize, budget_floats, ey, eg);
    magna_graph_free(gc), magna_graph_free(gg);
    free(r), free(got), free(want), free(gw);
}

int main(void) {
    char why[256];
    if (!magna_cuda_available(why, sizeof why)) {
        printf("test_cuda_norm_conv: skipped: %s\n", why);
        return 77;
    }
    static const int64_t LN[][2] = {{1, 1}, {3, 7}, {5, 1024}, {4, 1025}, {2, 9000}, {700, 40}, {1300, 33}};
    for (int i = 0; i < 7; i++)
        for (int affine = 0; affine < 2; affine++) {
            layer_norm(LN[i][0], LN[i][1], affine, (size_t)(2 * LN[i][1]));          /* one slice of rows */
            layer_norm(LN[i][0], LN[i][1], affine, (size_t)(2 * LN[i][1]) * 64 + 3); /* up to 64 */
        }
    for (int training = 0; training < 2; training++)
        for (int affine = 0; affine < 2; affine++) {
            batch_norm(4, 3, 1, training, affine);
            batch_norm(3, 5, 37, training, affine);
            batch_norm(1, 2, 300, training, affine); /* more values than a block's threads */
            batch_norm(1, 1, 1, training, affine);   /* one value: the unbiased variance falls back */
        }
    convolution(2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1);
    convolution(3, 2, 9, 8, 5, 3, 2, 2, 1, 1, 0, 1, 2);
    convolution(1, 4, 6, 6, 3, 1, 1, 1, 1, 0, 0, 1, 1);
    convolution(2, 1, 11, 5, 2, 5, 3, 3, 2, 2, 1, 2, 1);
    for (int max = 0; max < 2; max++) {
        pooling(max, 2, 3, 8, 8, 2, 2, 2, 2, 0, 0);
        pooling(max, 1, 2, 7, 9, 3, 2, 2, 1, 1, 1);
        pooling(max, 2, 2, 6, 5, 3, 3, 1, 1, 1, 1);
        pooling(max, 1, 1, 9, 7, 4, 3, 3, 2, 2, 0);
    }
    /* 3x3 (K 27, P 6 x 4 = 24, OC 4): one sample's columns; two samples' columns and staging (groups 2, 2, 1) */
    conv_groups(3, 27 * 24);
    conv_groups(3, (27 + 4) * 24 * 2);
    conv_groups(1, 0); /* 1x1: no columns, dw a GEMM a sample on x itself */
    printf("layer norm, batch norm, convolution's kernels and pooling against double loops; conv2d's sample groups\n");
    return check_finish("test_cuda_norm_conv");
}
