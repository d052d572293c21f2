/* conv_math.h — the index math of the convolution and pooling kernels (conv.cu), written once for both sides
 * like elementwise_math.h: nvcc compiles it into the kernels, gcc into tests/test_cuda_conv_math.c, which
 * checks it against the CPU ops' own loops (src/ops/conv2d.c, pool2d.c) on tiny and odd shapes.
 *
 * The backward kernels gather instead of scatter: a thread owns one input pixel and sums what every window
 * (or column of im2col) that read it sends back, so no two threads write one address (no atomics, the same
 * bits every run). What a gather needs is the range of outputs that read a pixel, computed here. */
#ifndef MAGNA_CUDA_CONV_MATH_H
#define MAGNA_CUDA_CONV_MATH_H

#include <math.h>
#include <stdint.h>

#include "elementwise_math.h" /* MAGNA_HD */

/* A pooling node's geometry, read from the node by pool2d.c's magna_pool_dims_of for the CPU op and the CUDA
 * kernels alike: planes N C of H x W into OH x OW, window KH x KW, stride sh, sw, padding ph, pw. */
typedef struct magna_pool_dims {
    int64_t planes;
    int H, W, OH, OW, KH, KW, sh, sw, ph, pw;
} magna_pool_dims;

/* The outputs o in [*lo, *hi) of a sliding window (stride s, padding p, kernel extent k) whose window holds
 * input position i: o s - p <= i < o s - p + k, and 0 <= o < out. Empty when *lo >= *hi. */
MAGNA_HD void magna_cm_windows_of(int i, int s, int p, int k, int out, int *lo, int *hi) {
    const int top = i + p;                         /* o s <= top */
    const int first = top - k + 1;                 /* o s >= first */
    int l = first <= 0 ? 0 : (first + s - 1) / s;  /* ceil(first / s) for first > 0 */
    int h = top < 0 ? 0 : top / s + 1;
    if (h > out) h = out;
    *lo = l, *hi = h;
}

/* im2col's entry for output position o and kernel tap t (dilation d) reads input o s - p + t d, or nothing
 * when that is outside [0, len). The tap's outputs that read input i: o s = i + p - t d. Returns the output,
 * or -1 when no output of this tap reads i. */
MAGNA_HD int magna_cm_tap_output(int i, int t, int s, int p, int d, int out) {
    const int v = i + p - t * d;
    if (v < 0 || v % s) return -1;
    return v / s < out ? v / s : -1;
}

/* A pooling window clipped to the image: rows [*h0, *h1), columns [*w0, *w1) of output (oh, ow) (pool2d.c's
 * pool_window). */
MAGNA_HD void magna_cm_pool_window(int oh, int ow, int H, int W, int KH, int KW, int sh, int sw, int ph, int pw,
                                   int *h0, int *h1, int *w0, int *w1) {
    const int hs = oh * sh - ph, ws = ow * sw - pw;
    *h0 = hs < 0 ? 0 : hs;
    *h1 = hs + KH > H ? H : hs + KH;
    *w0 = ws < 0 ? 0 : ws;
    *w1 = ws + KW > W ? W : ws + KW;
}

/* max pooling's comparison (pool2d.c's take_max): a later pixel wins only if strictly larger; NaN wins over a
 * number */
MAGNA_HD void magna_cm_take_max(float *best, int *best_i, float v, int i) {
    const int take = v > *best || (isnan(v) && !isnan(*best));
    *best = take ? v : *best;
    *best_i = take ? i : *best_i;
}

#endif
