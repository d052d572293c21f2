/* conv.cu — the kernels around convolution's GEMMs (im2col, its adjoint, bias, staging) and 2-D pooling,
 * NCHW, as src/ops/conv2d.c and pool2d.c compute them. The GEMMs themselves are magna_cuda_gemm's; the glue
 * (ops_conv.c) chains them.
 *
 * Every kernel here is an elementwise grid-stride loop (launch.h) over the elements it writes, and every
 * backward kernel gathers (conv_math.h): a thread owns one input pixel and sums, in a fixed order, what reads
 * of it send back. No atomics: the same inputs give the same bits on every run. */
#include "compat.h"
#include "conv_math.h"
#include "kernels.h"
#include "launch.h"

namespace {

/* col[row ld_row + j ld_sample + p] = x[j, c, oh sh - ph + kh dh, ow sw - pw + kw dw] (0 outside the image) for
 * the g samples at x, row = (c, kh, kw), p = (oh, ow); elements are taken in (row, j, p) order. */
template <class I>
__global__ void im2col_kernel(magna_launch_1d l, magna_cuda_conv c, int g, const float *__restrict__ x,
                              float *__restrict__ col, long long ld_row, long long ld_sample) {
    const int64_t stride = magna_launch_1d_stride(&l);
    const I P = (I)c.OH * (I)c.OW;
    for (int64_t e = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); e < l.n; e += stride) {
        const I i = (I)e, p = i % P, rj = i / P;
        const int j = (int)(rj % (I)g), row = (int)(rj / (I)g);
        const int kw = row % c.KW, kh = (row / c.KW) % c.KH, ch = row / (c.KW * c.KH);
        const int oh = (int)(p / (I)c.OW), ow = (int)(p % (I)c.OW);
        const int ih = oh * c.sh - c.ph + kh * c.dh, iw = ow * c.sw - c.pw + kw * c.dw;
        float v = 0.0f;
        if (ih >= 0 && ih < c.H && iw >= 0 && iw < c.W) v = x[(((int64_t)j * c.C + ch) * c.H + ih) * c.W + iw];
        col[row * ld_row + j * ld_sample + (int64_t)p] = v;
    }
}

/* dx[j, c, ih, iw] += the sum of every column entry im2col read from that pixel (the adjoint of im2col, with the
 * same col layout), taps in (kh, kw) order */
template <class I>
__global__ void col2im_kernel(magna_launch_1d l, magna_cuda_conv c, const float *__restrict__ col, long long ld_row,
                              long long ld_sample, float *__restrict__ dx) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t e = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); e < l.n; e += stride) {
        const I i = (I)e, pix = i / (I)c.W, plane = pix / (I)c.H;
        const int iw = (int)(i - pix * (I)c.W), ih = (int)(pix - plane * (I)c.H), ch = (int)(plane % (I)c.C);
        const int64_t j = (int64_t)(plane / (I)c.C);
        float acc = 0.0f;
        for (int kh = 0; kh < c.KH; kh++) {
            const int oh = magna_cm_tap_output(ih, kh, c.sh, c.ph, c.dh, c.OH);
            if (oh < 0) continue;
            for (int kw = 0; kw < c.KW; kw++) {
                const int ow = magna_cm_tap_output(iw, kw, c.sw, c.pw, c.dw, c.OW);
                if (ow < 0) continue;
                const int64_t row = ((int64_t)ch * c.KH + kh) * c.KW + kw;
                acc += col[row * ld_row + j * ld_sample + (int64_t)oh * c.OW + ow];
            }
        }
        dx[e] += acc;
    }
}

/* y[n, oc, p] += bias[oc] */
template <class I>
__global__ void bias_add_kernel(magna_launch_1d l, const float *__restrict__ bias, int OC, int64_t P, float *__restrict__ y) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t e = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); e < l.n; e += stride)
        y[e] += bias[(I)e / (I)P % (I)OC];
}

/* a block per channel oc: db[oc] += sum over n and p of dy[n, oc, p], each thread's partial in double, then a
 * fixed tree (shared memory) */
__global__ void bias_grad_kernel(const float *__restrict__ dy, int N, int OC, int64_t P, float *__restrict__ db) {
    __shared__ double part[MAGNA_LAUNCH_BLOCK];
    const int oc = blockIdx.x;
    double acc = 0; /* a thread's positions of each sample, in order (no division) */
    for (int64_t s = 0; s < N; s++) {
        const float *r = dy + (s * OC + oc) * P;
        for (int64_t p = threadIdx.x; p < P; p += blockDim.x) acc += r[p];
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) db[oc] += (float)part[0];
}

/* dys[oc, j P + p] = dy[j, oc, p] for the g samples at dy: the group's gradients side by side, one GEMM's
 * operand */
template <class I>
__global__ void stage_kernel(magna_launch_1d l, const float *__restrict__ dy, int g, int OC, int64_t P,
                             float *__restrict__ dys) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t e = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); e < l.n; e += stride) {
        const I i = (I)e, q = i / (I)P, p = i - q * (I)P, j = q % (I)g, oc = q / (I)g;
        dys[e] = dy[((int64_t)j * OC + (int64_t)oc) * P + (int64_t)p];
    }
}

/* ---- pooling: an output (forward) or an input pixel (backward) a thread ------------------------------------- */

template <class I>
__global__ void max_pool_kernel(magna_launch_1d l, magna_pool_dims d, const float *__restrict__ x, float *__restrict__ y,
                                int32_t *__restrict__ arg) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t e = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); e < l.n; e += stride) {
        const I i = (I)e, row = i / (I)d.OW, plane = row / (I)d.OH;
        const int ow = (int)(i - row * (I)d.OW), oh = (int)(row - plane * (I)d.OH);
        const float *xp = x + (int64_t)plane * d.H * d.W;
        int h0, h1, w0, w1;
        magna_cm_pool_window(oh, ow, d.H, d.W, d.KH, d.KW, d.sh, d.sw, d.ph, d.pw, &h0, &h1, &w0, &w1);
        int best_i = h0 * d.W + w0;
        float best = xp[best_i];
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) magna_cm_take_max(&best, &best_i, xp[ih * d.W + iw], ih * d.W + iw);
        y[e] = best;
        arg[e] = best_i;
    }
}

/* dx[plane, i] += dy of every window whose argmax is i, windows in (oh, ow) order as the CPU adds them */
template <class I>
__global__ void max_pool_backward_kernel(magna_launch_1d l, magna_pool_dims d, const float *__restrict__ dy,
                                         const int32_t *__restrict__ arg, float *__restrict__ dx) {
    const int64_t stride = magna_launch_1d_stride(&l), plane_out = (int64_t)d.OH * d.OW;
    const I plane_in = (I)d.H * (I)d.W;
    for (int64_t e = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); e < l.n; e += stride) {
        const I plane = (I)e / plane_in;
        const int i = (int)((I)e - plane * plane_in), ih = i / d.W, iw = i % d.W;
        int oh0, oh1, ow0, ow1;
        magna_cm_windows_of(ih, d.sh, d.ph, d.KH, d.OH, &oh0, &oh1);
        magna_cm_windows_of(iw, d.sw, d.pw, d.KW, d.OW, &ow0, &ow1);
        const float *dyp = dy + (int64_t)plane * plane_out;
        const int32_t *ap = arg + (int64_t)plane * plane_out;
        float acc = dx[e];
        for (int oh = oh0; oh < oh1; oh++)
            for (int ow = ow0; ow < ow1; ow++)
                if (ap[oh * d.OW + ow] == i) acc += dyp[oh * d.OW + ow];
        dx[e] = acc;
    }
}

template <class I>
__global__ void avg_pool_kernel(magna_launch_1d l, magna_pool_dims d, const float *__restrict__ x, float *__restrict__ y) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t e = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); e < l.n; e += stride) {
        const I i = (I)e, row = i / (I)d.OW, plane = row / (I)d.OH;
        const int ow = (int)(i - row * (I)d.OW), oh = (int)(row - plane * (I)d.OH);
        const float *xp = x + (int64_t)plane * d.H * d.W;
        int h0, h1, w0, w1;
        magna_cm_pool_window(oh, ow, d.H, d.W, d.KH, d.KW, d.sh, d.sw, d.ph, d.pw, &h0, &h1, &w0, &w1);
        float acc = 0.0f;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) acc += xp[ih * d.W + iw];
        y[e] = acc / (float)((h1 - h0) * (w1 - w0));
    }
}

/* dx[plane, ih, iw] += dy / count of every window holding the pixel */
template <class I>
__global__ void avg_pool_backward_kernel(magna_launch_1d l, magna_pool_dims d, const float *__restrict__ dy,
                                         float *__restrict__ dx) {
    const int64_t stride = magna_launch_1d_stride(&l), plane_out = (int64_t)d.OH * d.OW;
    for (int64_t e = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); e < l.n; e += stride) {
        const I i = (I)e, row = i / (I)d.W, plane = row / (I)d.H;
        const int iw = (int)(i - row * (I)d.W), ih = (int)(row - plane * (I)d.H);
        int oh0, oh1, ow0, ow1;
        magna_cm_windows_of(ih, d.sh, d.ph, d.KH, d.OH, &oh0, &oh1);
        magna_cm_windows_of(iw, d.sw, d.pw, d.KW, d.OW, &ow0, &ow1);
        const float *dyp = dy + (int64_t)plane * plane_out;
        float acc = dx[e];
        for (int oh = oh0; oh < oh1; oh++)
            for (int ow = ow0; ow < ow1; ow++) {
                int h0, h1, w0, w1;
                magna_cm_pool_window(oh, ow, d.H, d.W, d.KH, d.KW, d.sh, d.sw, d.ph, d.pw, &h0, &h1, &w0, &w1);
                acc += dyp[oh * d.OW + ow] / (float)((h1 - h0) * (w1 - w0));
            }
        dx[e] = acc;
    }
}

template <class... P, class... A> int launch_1d(int64_t n, void *stream, void (*kernel)(magna_launch_1d, P...), A... args) {
    const magna_launch_1d l = magna_launch_elementwise(n, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, kernel, l, args...);
}
/* Every kernel above decomposes its element index by divisions, in 32 bits when the n elements allow (several
 * times cheaper on a GPU than 64-bit division), else in 64. */
#define LAUNCH_INDEXED(n, stream, kernel, ...)                                                                        \
    ((n) <= (int64_t)UINT32_MAX ? launch_1d((n), (stream), kernel<uint32_t>, __VA_ARGS__)                           \
                                : launch_1d((n), (stream), kernel<int64_t>, __VA_ARGS__))

} // namespace

extern "C" int magna_cuda_im2col(const magna_cuda_conv *c, int g, const float *x, float *col, long long ld_row,
                                 long long ld_sample, void *stream) {
    return LAUNCH_INDEXED((int64_t)c->C * c->KH * c->KW * g * c->OH * c->OW, stream, im2col_kernel, *c, g, x, col, ld_row,
                     ld_sample);
}

extern "C" int magna_cuda_col2im_add(const magna_cuda_conv *c, int g, const float *col, long long ld_row,
                                     long long ld_sample, float *dx, void *stream) {
    return LAUNCH_INDEXED((int64_t)g * c->C * c->H * c->W, stream, col2im_kernel, *c, col, ld_row, ld_sample, dx);
}

extern "C" int magna_cuda_bias_add(const float *bias, int N, int OC, int64_t P, float *y, void *stream) {
    return LAUNCH_INDEXED((int64_t)N * OC * P, stream, bias_add_kernel, bias, OC, P, y);
}

extern "C" int magna_cuda_bias_grad(const float *dy, int N, int OC, int64_t P, float *db, void *stream) {
    if (OC <= 0) return cudaSuccess;
    return magna_cuda_launch(dim3(OC), dim3(MAGNA_LAUNCH_BLOCK), 0, stream, bias_grad_kernel, dy, N, OC, P, db);
}

extern "C" int magna_cuda_conv_stage(const float *dy, int g, int OC, int64_t P, float *dys, void *stream) {
    return LAUNCH_INDEXED((int64_t)g * OC * P, stream, stage_kernel, dy, g, OC, P, dys);
}

extern "C" int magna_cuda_max_pool_forward(const magna_pool_dims *d, const float *x, float *y, int32_t *arg, void *stream) {
    return LAUNCH_INDEXED(d->planes * d->OH * d->OW, stream, max_pool_kernel, *d, x, y, arg);
}

extern "C" int magna_cuda_max_pool_backward(const magna_pool_dims *d, const float *dy, const int32_t *arg, float *dx,
                                            void *stream) {
    return LAUNCH_INDEXED(d->planes * d->H * d->W, stream, max_pool_backward_kernel, *d, dy, arg, dx);
}

extern "C" int magna_cuda_avg_pool_forward(const magna_pool_dims *d, const float *x, float *y, void *stream) {
    return LAUNCH_INDEXED(d->planes * d->OH * d->OW, stream, avg_pool_kernel, *d, x, y);
}

extern "C" int magna_cuda_avg_pool_backward(const magna_pool_dims *d, const float *dy, float *dx, void *stream) {
    return LAUNCH_INDEXED(d->planes * d->H * d->W, stream, avg_pool_backward_kernel, *d, dy, dx);
}
