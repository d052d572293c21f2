/* conv2d.h — the plain direct-loop convolution the fast (im2col + sgemm) path is tested against.
 * Internal: for the library's own tests only. */
#ifndef MAGNA_OPS_CONV2D_H
#define MAGNA_OPS_CONV2D_H

/* x [N, C, H, W], w [OC, C, KH, KW], bias [OC] or NULL -> y [N, OC, OH, OW] with
 * OH = (H + 2 ph - dh (KH - 1) - 1) / sh + 1 (OW alike), and
 *     y[n, oc, oh, ow] = bias[oc] + sum_{c, kh, kw} w[oc, c, kh, kw] x[n, c, oh sh - ph + kh dh, ow sw - pw + kw dw]
 * (x is 0 outside the image). Sums in double. */
void magna_conv2d_reference(const float *x, const float *w, const float *bias, float *y, int N, int C, int H, int W,
                            int OC, int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw);

#endif
