/* cases_conv.c — gradient-check cases for conv2d, max_pool2d, avg_pool2d and batch_norm.
 * Shapes are drawn from the seed; every float operand that needs a gradient is a param. */
#include "gradcheck.h"

/* x [N, C, H, W] as a param in U(-1, 1). */
static magna_node *image(magna_graph *g, int N, int C, int H, int W) {
    return gc_param(g, "x", 4, (int64_t[]){N, C, H, W}, -1.0f, 1.0f);
}

/* conv2d with x [N, C, H, W], w [OC, C, KH, KW], bias [OC] when with_bias, and the given options. */
static magna_node *conv_case(magna_graph *g, int N, int C, int H, int W, int OC, int KH, int KW, bool with_bias,
                             magna_conv2d_opts o) {
    magna_node *x = image(g, N, C, H, W);
    magna_node *w = gc_param(g, "w", 4, (int64_t[]){OC, C, KH, KW}, -1.0f, 1.0f);
    magna_node *b = with_bias ? gc_param(g, "b", 1, (int64_t[]){OC}, -1.0f, 1.0f) : NULL;
    return magna_conv2d(g, x, w, b, o);
}

/* Random small shapes, stride 1, no padding, with bias. */
static magna_node *build_conv2d_random(magna_graph *g, uint64_t s) {
    int K = gc_randint(s, 0, 1, 3);
    return conv_case(g, gc_randint(s, 1, 1, 3), gc_randint(s, 2, 1, 3), gc_randint(s, 3, K, 7), gc_randint(s, 4, K, 7),
                     gc_randint(s, 5, 1, 3), K, K, true, (magna_conv2d_opts){0});
}

/* 3x3, stride 2, padding 1 (the usual downsampling conv), odd and even sizes. */
static magna_node *build_conv2d_stride2_pad(magna_graph *g, uint64_t s) {
    return conv_case(g, gc_randint(s, 0, 1, 2), gc_randint(s, 1, 1, 3), gc_randint(s, 2, 3, 7), gc_randint(s, 3, 3, 7),
                     gc_randint(s, 4, 1, 3), 3, 3, true,
                     (magna_conv2d_opts){.stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1});
}

/* Dilation 2 with padding, no bias. */
static magna_node *build_conv2d_dilation(magna_graph *g, uint64_t s) {
    int K = gc_randint(s, 0, 2, 3);
    return conv_case(g, gc_randint(s, 1, 1, 2), gc_randint(s, 2, 1, 3), gc_randint(s, 3, 4, 7), gc_randint(s, 4, 4, 7),
                     gc_randint(s, 5, 1, 3), K, K, false,
                     (magna_conv2d_opts){.pad_h = gc_randint(s, 6, 0, 2), .pad_w = gc_randint(s, 7, 0, 2),
                                         .dilation_h = 2, .dilation_w = 2});
}

/* Non-square kernel, different strides and paddings per axis, no bias. */
static magna_node *build_conv2d_nonsquare(magna_graph *g, uint64_t s) {
    return conv_case(g, gc_randint(s, 0, 1, 3), gc_randint(s, 1, 1, 3), gc_randint(s, 2, 3, 6), gc_randint(s, 3, 3, 6),
                     gc_randint(s, 4, 1, 3), 3, 2, false,
                     (magna_conv2d_opts){.stride_h = 1, .stride_w = 2, .pad_h = 1, .pad_w = 0});
}

/* 1x1 kernel, stride 1, no padding: the path without im2col. */
static magna_node *build_conv2d_1x1(magna_graph *g, uint64_t s) {
    return conv_case(g, gc_randint(s, 0, 1, 3), gc_randint(s, 1, 1, 3), gc_randint(s, 2, 3, 6), gc_randint(s, 3, 3, 6),
                     gc_randint(s, 4, 1, 3), 1, 1, true, (magna_conv2d_opts){0});
}

/* Same padding, 3x3, batch 3 (samples shared among threads when there are several). */
static magna_node *build_conv2d_same(magna_graph *g, uint64_t s) {
    return conv_case(g, 3, gc_randint(s, 0, 2, 3), 5, 5, gc_randint(s, 1, 2, 3), 3, 3, true,
                     (magna_conv2d_opts){.pad_h = 1, .pad_w = 1});
}

/* Max pooling: after compile, spread x's values apart so no window has a near-tie (the finite difference
 * would cross it). */
static void fill_distinct(magna_graph *g, uint64_t s) {
    magna_node *x = magna_graph_find(g, "x");
    if (x) gc_param_distinct(x, s);
}

/* 2x2, stride 2 (the default), sizes that may leave an edge row or column out. */
static magna_node *build_max_pool2d_2x2(magna_graph *g, uint64_t s) {
    magna_node *x = image(g, gc_randint(s, 0, 1, 3), gc_randint(s, 1, 1, 3), gc_randint(s, 2, 2, 7),
                          gc_randint(s, 3, 2, 7));
    return magna_max_pool2d(g, x, (magna_pool2d_opts){.kernel_h = 2, .kernel_w = 2});
}

/* Non-square kernel 3x2, stride 2x1, padding 1x1 (padded pixels are -inf). */
static magna_node *build_max_pool2d_pad_nonsquare(magna_graph *g, uint64_t s) {
    magna_node *x = image(g, gc_randint(s, 0, 1, 2), gc_randint(s, 1, 1, 3), gc_randint(s, 2, 3, 6),
                          gc_randint(s, 3, 3, 6));
    return magna_max_pool2d(g, x, (magna_pool2d_opts){.kernel_h = 3, .kernel_w = 2, .stride_h = 2, .stride_w = 1,
                                                      .pad_h = 1, .pad_w = 1});
}

/* Overlapping windows: 3x3, stride 1, padding 1 (one pixel may win several windows). */
static magna_node *build_max_pool2d_overlap(magna_graph *g, uint64_t s) {
    magna_node *x = image(g, gc_randint(s, 0, 1, 2), gc_randint(s, 1, 1, 2), gc_randint(s, 2, 3, 5),
                          gc_randint(s, 3, 3, 5));
    return magna_max_pool2d(g, x, (magna_pool2d_opts){.kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1,
                                                      .pad_h = 1, .pad_w = 1});
}

/* 2x2, stride 2, no padding. */
static magna_node *build_avg_pool2d_2x2(magna_graph *g, uint64_t s) {
    magna_node *x = image(g, gc_randint(s, 0, 1, 3), gc_randint(s, 1, 1, 3), gc_randint(s, 2, 2, 7),
                          gc_randint(s, 3, 2, 7));
    return magna_avg_pool2d(g, x, (magna_pool2d_opts){.kernel_h = 2, .kernel_w = 2});
}

/* 3x3, stride 2, padding 1: border windows average fewer pixels (padding not counted). */
static magna_node *build_avg_pool2d_pad(magna_graph *g, uint64_t s) {
    magna_node *x = image(g, gc_randint(s, 0, 1, 2), gc_randint(s, 1, 1, 3), gc_randint(s, 2, 3, 7),
                          gc_randint(s, 3, 3, 7));
    return magna_avg_pool2d(g, x, (magna_pool2d_opts){.kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2,
                                                      .pad_h = 1, .pad_w = 1});
}

/* Non-square 2x3 kernel, stride 1x2, padding 1x1, overlapping rows. */
static magna_node *build_avg_pool2d_nonsquare(magna_graph *g, uint64_t s) {
    magna_node *x = image(g, gc_randint(s, 0, 1, 2), gc_randint(s, 1, 1, 2), gc_randint(s, 2, 2, 6),
                          gc_randint(s, 3, 3, 6));
    return magna_avg_pool2d(g, x, (magna_pool2d_opts){.kernel_h = 2, .kernel_w = 3, .stride_h = 1, .stride_w = 2,
                                                      .pad_h = 1, .pad_w = 1});
}

/* batch_norm of x [N, C] or [N, C, H, W] (ndim 2 when H is 0) in training mode; gamma and beta are
 * params when asked for, running statistics state nodes. */
static magna_node *bn_case(magna_graph *g, int N, int C, int H, int W, bool affine_gamma, bool affine_beta) {
    magna_node *x = H ? image(g, N, C, H, W) : gc_param(g, "x", 2, (int64_t[]){N, C}, -1.0f, 1.0f);
    magna_node *gamma = affine_gamma ? gc_param(g, "gamma", 1, (int64_t[]){C}, 0.5f, 1.5f) : NULL;
    magna_node *beta = affine_beta ? gc_param(g, "beta", 1, (int64_t[]){C}, -0.5f, 0.5f) : NULL;
    magna_node *rm = magna_state(g, "running_mean", 1, (int64_t[]){C}, magna_init_zeros());
    magna_node *rv = magna_state(g, "running_var", 1, (int64_t[]){C}, magna_init_constant(1.0f));
    return magna_batch_norm(g, x, gamma, beta, rm, rv, 0.1f, 1e-5f);
}

static magna_node *build_batch_norm_2d(magna_graph *g, uint64_t s) {
    return bn_case(g, gc_randint(s, 0, 3, 6), gc_randint(s, 1, 1, 4), 0, 0, true, true);
}

static magna_node *build_batch_norm_4d(magna_graph *g, uint64_t s) {
    return bn_case(g, gc_randint(s, 0, 2, 3), gc_randint(s, 1, 1, 3), gc_randint(s, 2, 2, 4), gc_randint(s, 3, 2, 4),
                   true, true);
}

static magna_node *build_batch_norm_2d_plain(magna_graph *g, uint64_t s) {
    return bn_case(g, gc_randint(s, 0, 3, 6), gc_randint(s, 1, 1, 4), 0, 0, false, false);
}

static magna_node *build_batch_norm_4d_plain(magna_graph *g, uint64_t s) {
    return bn_case(g, gc_randint(s, 0, 2, 3), gc_randint(s, 1, 1, 3), gc_randint(s, 2, 2, 3), gc_randint(s, 3, 2, 3),
                   false, false);
}

static magna_node *build_batch_norm_gamma_only(magna_graph *g, uint64_t s) {
    return bn_case(g, gc_randint(s, 0, 2, 3), gc_randint(s, 1, 1, 3), 2, 3, true, false);
}

static magna_node *build_batch_norm_beta_only(magna_graph *g, uint64_t s) {
    return bn_case(g, gc_randint(s, 0, 3, 5), gc_randint(s, 1, 1, 3), 0, 0, false, true);
}

/* Spatial size 1x1: M = N values per channel, as a 4-D input. */
static magna_node *build_batch_norm_1x1(magna_graph *g, uint64_t s) {
    return bn_case(g, gc_randint(s, 0, 3, 5), gc_randint(s, 1, 1, 3), 1, 1, true, true);
}

const gc_case gc_cases_conv[] = {
    {"conv2d_random", build_conv2d_random, NULL, 0, 0, 0},
    {"conv2d_stride2_pad1", build_conv2d_stride2_pad, NULL, 0, 0, 0},
    {"conv2d_dilation2_nobias", build_conv2d_dilation, NULL, 0, 0, 0},
    {"conv2d_nonsquare_nobias", build_conv2d_nonsquare, NULL, 0, 0, 0},
    {"conv2d_1x1", build_conv2d_1x1, NULL, 0, 0, 0},
    {"conv2d_same_batch3", build_conv2d_same, NULL, 0, 0, 0},
    {"max_pool2d_2x2", build_max_pool2d_2x2, fill_distinct, 0, 0, 0},
    {"max_pool2d_pad_nonsquare", build_max_pool2d_pad_nonsquare, fill_distinct, 0, 0, 0},
    {"max_pool2d_overlap", build_max_pool2d_overlap, fill_distinct, 0, 0, 0},
    {"avg_pool2d_2x2", build_avg_pool2d_2x2, NULL, 0, 0, 0},
    {"avg_pool2d_pad", build_avg_pool2d_pad, NULL, 0, 0, 0},
    {"avg_pool2d_nonsquare", build_avg_pool2d_nonsquare, NULL, 0, 0, 0},
    {"batch_norm_2d", build_batch_norm_2d, NULL, 0, 0, 3e-3},
    {"batch_norm_4d", build_batch_norm_4d, NULL, 0, 0, 3e-3},
    {"batch_norm_2d_no_affine", build_batch_norm_2d_plain, NULL, 0, 0, 3e-3},
    {"batch_norm_4d_no_affine", build_batch_norm_4d_plain, NULL, 0, 0, 3e-3},
    {"batch_norm_gamma_only", build_batch_norm_gamma_only, NULL, 0, 0, 3e-3},
    {"batch_norm_beta_only", build_batch_norm_beta_only, NULL, 0, 0, 3e-3},
    {"batch_norm_1x1_spatial", build_batch_norm_1x1, NULL, 0, 0, 3e-3},
    {NULL, NULL, NULL, 0, 0, 0},
};
