/* conv2d.h — the plain direct-loop convolution the fast paths are tested against, and the switch between
 * those paths. Internal: for the library's own tests and benchmarks only. */
#ifndef MAGNA_OPS_CONV2D_H
#define MAGNA_OPS_CONV2D_H

#include "magna.h"
#include "cuda/conv_math.h" /* magna_pool_dims */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* x [N, C, H, W], w [OC, C, KH, KW], bias [OC] or NULL -> y [N, OC, OH, OW] with
 * OH = (H + 2 ph - dh (KH - 1) - 1) / sh + 1 (OW alike), and
 *     y[n, oc, oh, ow] = bias[oc] + sum_{c, kh, kw} w[oc, c, kh, kw] x[n, c, oh sh - ph + kh dh, ow sw - pw + kw dw]
 * (x is 0 outside the image). Sums in double. */
void magna_conv2d_reference(const float *x, const float *w, const float *bias, float *y, int N, int C, int H, int W,
                            int OC, int KH, int KW, int sh, int sw, int ph, int pw, int dh, int dw);

/* The kernel a conv2d node gets when its shapes are inferred (at build and at set_batch):
 *   ONEDNN        oneDNN's convolution on the layouts it picks (blocked), with reorders to and from magna's
 *   ONEDNN_PLAIN  oneDNN's convolution on magna's own NCHW / OIHW layouts (no reorders; measured slower)
 *   IM2COL        im2col + sgemm, magna's own
 * DEFAULT is the environment's MAGNA_CONV2D ("onednn", "onednn-plain", "im2col") when set, else ONEDNN when
 * magna was built with oneDNN, else IM2COL. Without oneDNN every choice is IM2COL. */
typedef enum conv2d_path { CONV2D_DEFAULT, CONV2D_ONEDNN, CONV2D_ONEDNN_PLAIN, CONV2D_IM2COL } conv2d_path;
void magna_conv2d_set_path(conv2d_path path);
conv2d_path magna_conv2d_get_path(void); /* never DEFAULT: what new nodes get */

/* What `conv` (a conv2d node) runs at the current thread count, for test and benchmark output: "oneDNN 2.6.3
 * [fwd jit:avx512_core, bwd_data ..., bwd_weights ...]" or "im2col + sgemm" (with the reason when oneDNN was
 * asked for). Returns buf. */
const char *magna_conv2d_describe(const magna_node *conv, char *buf, size_t size);

/* The conv -> ReLU -> max pool fusion (plan.c): whether this conv2d's oneDNN forward writes float32 nChw16c
 * (aBcd16b) that a fused max pool could read instead of its NCHW output; and, after a forward of a conv whose
 * pool is fused (pool_fused), that output [N][OC/16][OH][OW][16] in the graph's workspace, ReLU applied, or NULL
 * when that step wrote n->value as usual (the im2col path). Valid until the next node's forward. */
bool magna_conv2d_can_leave_blocked(const magna_node *conv);
const float *magna_conv2d_blocked_output(const magna_graph *g, const magna_node *conv);

/* A max or avg pooling node's geometry (src/ops/pool2d.c), for the CPU op and the CUDA glue. */
magna_pool_dims magna_pool_dims_of(const magna_node *pool);

/* Max pooling's 2 x 2 stride-2 kernel over one plane [2 OH.., W] -> y, argmax [OH, OW] (src/ops/pool2d.c): path 0
 * the fastest the CPU has (AVX-512), 1 the scalar reference; the same bits either way. */
void magna_max_pool_2x2_plane(int path, const float *xp, float *yp, int32_t *ap, int W, int OH, int OW);

#endif
