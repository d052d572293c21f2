/* test_graph.c — what the graph promises beyond single ops: memory reuse by lifetime, a smaller last
 * batch on the same plan, gradient accumulation, seeded determinism of init and dropout, training vs
 * inference mode, flat parameter buffers, an MLP that learns, and the compile-time rewrites (conv+ReLU
 * fusion, gradients assigned by their first writer instead of zeroed) changing no number. */
#include "check.h"
#include "magna.h"
#include "../src/ops/conv2d.h" /* magna_conv2d_set_path: both kernels of the fused conv */
#include "../src/ops/matmul.h" /* magna_matmul_describe */
#include "../src/graph/internal.h" /* graph_profile_flops */
#include "profile_report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

/* An MLP with a kept logits node, a loss, and dropout. */
static magna_graph *mlp(uint64_t seed, int64_t batch, magna_node **x, magna_node **y, magna_node **logits,
                        magna_node **loss, float dropout) {
    magna_graph *g = magna_graph_new(seed);
    *x = magna_input(g, "x", MAGNA_F32, 2, SHAPE(batch, 6));
    *y = magna_input(g, "y", MAGNA_I32, 1, SHAPE(batch));
    magna_node *h = magna_relu(g, magna_add(g, magna_matmul(g, *x, magna_param(g, "w1", 2, SHAPE(6, 16),
                                                                             magna_init_he_normal()), false, false),
                                            magna_param(g, "b1", 1, SHAPE(16), magna_init_constant(0.01f))));
    if (dropout > 0) h = magna_dropout(g, h, dropout);
    *logits = magna_add(g, magna_matmul(g, h, magna_param(g, "w2", 2, SHAPE(16, 3), magna_init_xavier_normal()),
                                        false, false),
                        magna_param(g, "b2", 1, SHAPE(3), magna_init_zeros()));
    *loss = magna_cross_entropy(g, *logits, *y);
    magna_graph_keep(g, *logits);
    CHECK(magna_graph_compile(g, *loss) == MAGNA_OK, "compile: %s", magna_graph_errmsg(g));
    return g;
}

static void fill_data(magna_node *x, magna_node *y, int64_t batch, uint64_t salt) {
    float *xd = magna_node_data(x);
    int32_t *yd = magna_node_data_i32(y);
    for (int64_t i = 0; i < batch; i++) {
        for (int j = 0; j < 6; j++) xd[i * 6 + j] = 2 * magna_rand_uniform(11, salt, (uint64_t)(i * 6 + j)) - 1;
        yd[i] = xd[i * 6] > 0.3f ? 2 : xd[i * 6] < -0.3f ? 0 : 1;
    }
}

static void test_memory_reuse(void) {
    /* a deep chain for inference: each activation dies after the next op, so a few buffers suffice */
    magna_graph *g = magna_graph_new(1);
    magna_node *h = magna_input(g, "x", MAGNA_F32, 2, SHAPE(64, 256));
    for (int i = 0; i < 20; i++) h = magna_tanh(g, magna_scale(g, h, 0.9f));
    magna_graph_keep(g, h);
    CHECK(magna_graph_compile(g, NULL) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    size_t planned = magna_graph_arena_bytes(g), unplanned = magna_graph_unplanned_bytes(g);
    printf("plan: inference chain of 40 ops: arena %zu bytes vs %zu without reuse (%.1fx)\n", planned, unplanned,
           (double)unplanned / (double)planned);
    CHECK(planned * 8 <= unplanned, "planner reused too little: %zu of %zu", planned, unplanned);
    float *xd = magna_node_data(magna_graph_find(g, "x"));
    for (int i = 0; i < 64 * 256; i++) xd[i] = 0.5f;
    magna_graph_forward(g);
    double v = 0.5;
    for (int i = 0; i < 20; i++) v = tanh(0.9 * v);
    CHECK(fabs(magna_node_data(h)[0] - v) < 1e-5 && fabs(magna_node_data(h)[64 * 256 - 1] - v) < 1e-5,
          "chain value %g vs %g", magna_node_data(h)[0], v);
    magna_graph_free(g);
}

static void test_small_batch(void) {
    /* the same rows through a graph compiled at 8 and run at 5, and one compiled at 5 */
    magna_node *x8, *y8, *l8, *loss8, *x5, *y5, *l5, *loss5;
    magna_graph *g8 = mlp(3, 8, &x8, &y8, &l8, &loss8, 0), *g5 = mlp(3, 5, &x5, &y5, &l5, &loss5, 0);
    CHECK(magna_graph_set_batch(g8, 5) == MAGNA_OK, "%s", magna_graph_errmsg(g8));
    CHECK(magna_node_shape(l8)[0] == 5 && magna_node_numel(l8) == 15, "logits follow the batch");
    fill_data(x8, y8, 5, 1);
    fill_data(x5, y5, 5, 1);
    magna_graph_forward(g8), magna_graph_backward(g8);
    magna_graph_forward(g5), magna_graph_backward(g5);
    CHECK(memcmp(magna_node_data(l8), magna_node_data(l5), 15 * sizeof(float)) == 0, "logits differ");
    CHECK(magna_node_data(loss8)[0] == magna_node_data(loss5)[0], "loss %g vs %g", magna_node_data(loss8)[0],
          magna_node_data(loss5)[0]);
    size_t n;
    float *g8g = magna_graph_grads(g8, &n), *g5g = magna_graph_grads(g5, NULL);
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(g8g[i] - g5g[i]));
    CHECK(worst < 1e-6, "grads differ by %g", worst);
    CHECK(magna_graph_set_batch(g8, 8) == MAGNA_OK, "back to the full batch");
    magna_graph_free(g8), magna_graph_free(g5);
}

static void test_accumulation_and_determinism(void) {
    magna_node *x, *y, *logits, *loss, *x2, *y2, *logits2, *loss2;
    magna_graph *g = mlp(9, 16, &x, &y, &logits, &loss, 0.5f), *h = mlp(9, 16, &x2, &y2, &logits2, &loss2, 0.5f);
    size_t n;
    const float *pg = magna_graph_params(g, &n);
    CHECK(memcmp(pg, magna_graph_params(h, NULL), n * sizeof(float)) == 0,
          "same seed, different initial weights");
    fill_data(x, y, 16, 2);
    fill_data(x2, y2, 16, 2);
    magna_graph_set_rng_step(g, 5);
    magna_graph_forward(g), magna_graph_backward(g);
    float once[512];
    CHECK(n <= 512, "the test MLP grew: %zu params", n);
    memcpy(once, magna_graph_grads(g, NULL), n * sizeof(float));
    magna_graph_set_rng_step(g, 5);
    magna_graph_forward(g), magna_graph_backward(g); /* no zero_grad: accumulates */
    double worst = 0;
    for (size_t i = 0; i < n && i < 512; i++) worst = fmax(worst, fabs(magna_graph_grads(g, NULL)[i] - 2 * once[i]));
    CHECK(worst < 1e-6, "two backward passes do not add up: %g", worst);
    /* same seed and step: same dropout mask; another step: another mask */
    magna_graph_set_rng_step(h, 5);
    magna_graph_forward(h);
    CHECK(memcmp(magna_node_data(logits), magna_node_data(logits2), 48 * sizeof(float)) == 0,
          "same seed and step gave another dropout mask");
    magna_graph_forward(h); /* step 6 */
    CHECK(memcmp(magna_node_data(logits), magna_node_data(logits2), 48 * sizeof(float)) != 0,
          "the next step drew the same mask");
    /* inference mode: dropout is the identity, so repeated forwards agree */
    magna_graph_set_training(h, false);
    magna_graph_forward(h);
    float a = magna_node_data(logits2)[7];
    magna_graph_forward(h);
    CHECK(magna_node_data(logits2)[7] == a && magna_graph_rng_step(h) == 7, "eval mode is not deterministic");
    magna_graph_free(g), magna_graph_free(h);
}

static void test_flat_params(void) {
    magna_node *x, *y, *logits, *loss;
    magna_graph *g = mlp(4, 4, &x, &y, &logits, &loss, 0);
    size_t n;
    float *p = magna_graph_params(g, &n);
    CHECK(magna_graph_param_count(g) == 4, "4 params, got %d", magna_graph_param_count(g));
    for (int i = 0; i < magna_graph_param_count(g); i++) {
        magna_node *q = magna_graph_param_at(g, i);
        CHECK(magna_node_data(q) == p + magna_node_offset(q), "param %d is not in the flat buffer", i);
        CHECK(magna_node_grad(q) == magna_graph_grads(g, NULL) + magna_node_offset(q), "grad %d not flat", i);
        CHECK(magna_node_offset(q) % 16 == 0 && magna_node_offset(q) + (size_t)magna_node_numel(q) <= n, "offset");
    }
    float b1 = magna_node_data(magna_graph_find(g, "b1"))[3];
    CHECK(b1 == 0.01f, "constant init gave %g", b1);
    magna_graph_free(g);
}

static void test_learns(void) {
    magna_node *x, *y, *logits, *loss;
    magna_graph *g = mlp(5, 64, &x, &y, &logits, &loss, 0);
    magna_optimizer *opt = magna_optimizer_new(g, (magna_optimizer_opts){.kind = MAGNA_SGD, .lr = 0.2f,
                                                                          .momentum = 0.9f, .nesterov = true}, NULL);
    float first = 0, last = 0;
    for (int step = 0; step < 300; step++) {
        fill_data(x, y, 64, (uint64_t)step);
        magna_graph_zero_grad(g);
        magna_graph_forward(g);
        magna_graph_backward(g);
        magna_optimizer_step(opt);
        if (step == 0) first = magna_node_data(loss)[0];
        last = magna_node_data(loss)[0];
    }
    printf("learns: 3-class MLP, SGD+Nesterov, 300 steps: loss %.4f -> %.4f\n", first, last);
    CHECK(last < 0.25f && last < first / 3, "loss %.4f -> %.4f", first, last);
    magna_optimizer_free(opt);
    magna_graph_free(g);
}

/* A small CNN where every rewrite applies and one must not: conv1 -> relu -> max pool (all three fused: 16 filters,
 * so oneDNN's blocked output can be pooled where it is) -> conv2, whose output feeds both a relu and an add (two
 * consumers: not fused; its gradient has two writers) -> reshape -> dense (its bias add fused into the product;
 * the logits kept, so the product's output lives on as theirs) -> cross-entropy. Compiled with
 * MAGNA_NO_FUSE set or not; *arena: the bytes of all its buffers; conv1_kernel: what conv1 ran. */
static magna_graph *small_cnn(bool fuse, bool bf16, float *loss_out, size_t *arena, char *conv1_kernel, size_t cap) {
    if (fuse)
        unsetenv("MAGNA_NO_FUSE");
    else
        setenv("MAGNA_NO_FUSE", "1", 1);
    magna_graph *g = magna_graph_new(21);
    magna_node *x = magna_input(g, "x", MAGNA_F32, 4, SHAPE(4, 2, 8, 8));
    magna_node *y = magna_input(g, "y", MAGNA_I32, 1, SHAPE(4));
    const magna_conv2d_opts same = {.pad_h = 1, .pad_w = 1};
    magna_node *c1 = magna_conv2d(g, x, magna_param(g, "w1", 4, SHAPE(16, 2, 3, 3), magna_init_he_normal()),
                                  magna_param(g, "b1", 1, SHAPE(16), magna_init_uniform(-0.1f, 0.1f)), same);
    magna_node *p1 = magna_max_pool2d(g, magna_relu(g, c1), (magna_pool2d_opts){.kernel_h = 2, .kernel_w = 2});
    magna_node *c2 = magna_conv2d(g, p1, magna_param(g, "w2", 4, SHAPE(4, 16, 3, 3), magna_init_he_normal()),
                                  magna_param(g, "b2", 1, SHAPE(4), magna_init_uniform(-0.1f, 0.1f)), same);
    magna_node *h = magna_reshape(g, magna_add(g, magna_relu(g, c2), c2), 2, SHAPE(4, 64));
    magna_node *logits = magna_add(g,
                                   magna_matmul(g, h, magna_param(g, "w3", 2, SHAPE(64, 3), magna_init_xavier_normal()),
                                                false, false),
                                   magna_param(g, "b3", 1, SHAPE(3), magna_init_uniform(-0.1f, 0.1f)));
    magna_graph_keep(g, logits);
    magna_node *loss = magna_cross_entropy(g, logits, y);
    if (bf16) CHECK(magna_graph_set_bf16(g, true) == MAGNA_OK, "bf16: %s", magna_graph_errmsg(g));
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "compile: %s", magna_graph_errmsg(g));
    unsetenv("MAGNA_NO_FUSE");
    float *xd = magna_node_data(x);
    for (int i = 0; i < 4 * 2 * 8 * 8; i++) xd[i] = 2 * magna_rand_uniform(5, 0, (uint64_t)i) - 1;
    for (int i = 0; i < 4; i++) magna_node_data_i32(y)[i] = i % 3;
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "step: %s",
          magna_graph_errmsg(g));
    *loss_out = magna_node_data(loss)[0];
    *arena = magna_graph_unplanned_bytes(g); /* the fused relu is a view: one activation fewer */
    magna_conv2d_describe(c1, conv1_kernel, cap);
    return g;
}

static void test_rewrites_change_nothing(void) {
    const conv2d_path paths[] = {CONV2D_ONEDNN, CONV2D_ONEDNN, CONV2D_IM2COL};
    for (int k = 0; k < 3; k++) {
        const bool bf16 = k == 1; /* oneDNN's bf16 convolutions where the CPU has them */
        magna_conv2d_set_path(paths[k]);
        float lf, lu;
        size_t af, au, n;
        char kf[256], ku[256];
        magna_graph *fused = small_cnn(true, bf16, &lf, &af, kf, sizeof kf),
                    *plain = small_cnn(false, bf16, &lu, &au, ku, sizeof ku);
        printf("  conv1 fused: %s\n  conv1 alone: %s\n", kf, ku);
        CHECK(!strstr(ku, "fused max pool"), "MAGNA_NO_FUSE=1 still fused the pool");
        const float *gf = magna_graph_grads(fused, &n), *gu = magna_graph_grads(plain, NULL);
        double worst = 0, scale = 0;
        for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(gf[i] - gu[i])), scale = fmax(scale, fabs(gu[i]));
        printf("rewrites (%s): loss %.6f fused vs %.6f not, grads differ by %.2g of %.2g, buffers %zu vs %zu bytes\n",
               k == 2 ? "im2col" : bf16 ? "oneDNN, bf16" : "oneDNN", lf, lu, worst, scale, af, au);
        CHECK(lf == lu, "the fused conv+relu changed the loss: %.9g vs %.9g", lf, lu);
        CHECK(worst <= 1e-6 * scale && scale > 0, "the fused graph's grads differ by %g (largest %g)", worst, scale);
        CHECK(af < au, "fusing conv1's relu saved no memory: %zu vs %zu bytes", af, au);
        /* where oneDNN's forward writes nChw16c (AVX-512 CPUs), the pool must have read it there */
        if (k < 2 && strstr(kf, "avx512")) CHECK(strstr(kf, "fused max pool") != NULL, "conv1 -> pool not fused: %s", kf);
        magna_graph_free(fused), magna_graph_free(plain);
    }
    magna_conv2d_set_path(CONV2D_DEFAULT);
}

/* Compiles g (in bf16 when asked) for loss and runs one forward and backward from zeroed gradients. */
static magna_graph *step_once(magna_graph *g, magna_node *loss, bool bf16) {
    if (bf16) CHECK(magna_graph_set_bf16(g, true) == MAGNA_OK, "bf16: %s", magna_graph_errmsg(g));
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "compile: %s", magna_graph_errmsg(g));
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "step: %s", magna_graph_errmsg(g));
    return g;
}

/* The largest |a[i] - b[i]|, and in *scale the largest |b[i]|. */
static double max_diff(const float *a, const float *b, int64_t n, double *scale) {
    double worst = 0;
    *scale = 0;
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i])), *scale = fmax(*scale, fabs(b[i]));
    return worst;
}

/* How far a bf16 graph's kept output o16 and its gradients are from its float32 twin's (o32, g32): the largest
 * differences, and the largest float32 magnitudes they are measured against. */
static void bf16_gap(magna_graph *g16, magna_node *o16, magna_graph *g32, magna_node *o32, double *worst_y,
                     double *scale_y, double *worst_g, double *scale_g) {
    size_t n;
    *worst_y = max_diff(magna_node_data(o16), magna_node_data(o32), magna_node_numel(o32), scale_y);
    const float *g_32 = magna_graph_grads(g32, &n);
    *worst_g = max_diff(magna_graph_grads(g16, NULL), g_32, (int64_t)n, scale_g);
}

/* tanh(q) [N] + tanh(p) [1, N], one row of N past the parallel threshold, with the rewrites or without: both
 * operands are as large as the sum, so the add writes both gradients (one shared, one assigned dy), as the plain
 * graph computes them. (A bias's summing path, taken for the [N] operand, once added into its unzeroed gradient.) */
static magna_graph *one_row_add(bool fuse) {
    enum { N = 40000 };
    if (fuse)
        unsetenv("MAGNA_NO_FUSE");
    else
        setenv("MAGNA_NO_FUSE", "1", 1);
    magna_graph *g = magna_graph_new(13);
    magna_node *p = magna_param(g, "p", 2, SHAPE(1, N), magna_init_uniform(-1, 1));
    magna_node *q = magna_param(g, "q", 1, SHAPE(N), magna_init_uniform(-1, 1));
    magna_node *y = magna_add(g, magna_tanh(g, q), magna_tanh(g, p));
    step_once(g, magna_mean(g, magna_mul(g, y, y), 3, false), false);
    unsetenv("MAGNA_NO_FUSE");
    return g;
}

static void test_one_row_add(void) {
    magna_graph *fused = one_row_add(true), *plain = one_row_add(false);
    size_t n;
    const float *gf = magna_graph_grads(fused, &n);
    double scale, worst = max_diff(gf, magna_graph_grads(plain, NULL), (int64_t)n, &scale);
    printf("one-row add: gradients fused vs not differ by %.2g of %.2g\n", worst, scale);
    CHECK(worst == 0 && scale > 0, "a one-row add's gradients differ with the rewrites: %g of %g", worst, scale);
    magna_graph_free(fused), magna_graph_free(plain);
}

/* A transformer's MLP, LN(x) -> dense -> GELU -> dense, plus two more dense layers of LN(x) (as q, k and v share
 * an input), summed, -> mean square, with the rewrites (MAGNA_NO_FUSE unset) or without: in bf16 the layer norm
 * writes the bf16 input its three products share (bf16_for; a16_from), the GELU the last product's, and the dense
 * layers' bias gradients come from their products' dC conversions; around the GELU, fc's output, the GELU's
 * gradient and fc's dC are bf16 (out16_to, da16_ok, dc16_by). *fc, *proj: the MLP's two products. */
static magna_graph *gelu_mlp(bool fuse, bool bf16, float *loss_out, magna_node **fc, magna_node **proj) {
    if (fuse)
        unsetenv("MAGNA_NO_FUSE");
    else
        setenv("MAGNA_NO_FUSE", "1", 1);
    magna_graph *g = magna_graph_new(5);
    magna_node *x = magna_layer_layer_norm(g, "ln", magna_param(g, "x", 2, SHAPE(96, 48), magna_init_uniform(-1, 1)),
                                           1e-5f);
    const magna_init u = magna_init_uniform(-0.3f, 0.3f);
    *fc = magna_matmul(g, x, magna_param(g, "fc.weight", 2, SHAPE(48, 192), u), false, false);
    magna_node *h = magna_gelu(g, magna_add(g, *fc, magna_param(g, "fc.bias", 1, SHAPE(192), u)));
    *proj = magna_matmul(g, h, magna_param(g, "proj.weight", 2, SHAPE(192, 48), u), false, false);
    magna_node *y = magna_add(g, *proj, magna_param(g, "proj.bias", 1, SHAPE(48), u));
    y = magna_add(g, y, magna_layer_dense(g, "k", x, 48, (magna_dense_opts){0}));
    y = magna_add(g, y, magna_layer_dense(g, "v", x, 48, (magna_dense_opts){0}));
    magna_node *loss = magna_mean(g, magna_mul(g, y, y), 3, false);
    step_once(g, loss, bf16);
    unsetenv("MAGNA_NO_FUSE");
    *loss_out = magna_node_data(loss)[0];
    return g;
}

/* float32: the rewrites change no bit. bf16: only by the bf16 roundings of what passes the GELU (its input, its
 * gradient, fc's dC) and the order of fc's bias sums, and only where those ran in bf16. */
static void test_gelu_into_bf16_matmul(void) {
    const bool has_bf16 = magna_cpu_detect().avx512_bf16;
    for (int bf16 = 0; bf16 < 2; bf16++) {
        float lf, lu;
        magna_node *fc, *proj, *fc_u, *proj_u;
        magna_graph *fused = gelu_mlp(true, bf16, &lf, &fc, &proj), *plain = gelu_mlp(false, bf16, &lu, &fc_u, &proj_u);
        size_t n;
        const float *gf = magna_graph_grads(fused, &n), *gu = magna_graph_grads(plain, NULL);
        double scale, worst = max_diff(gf, gu, (int64_t)n, &scale);
        const unsigned io = magna_matmul_bf16_io(fc) | magna_matmul_bf16_io(proj);
        printf("LN, GELU -> dense, shared input (%s): loss %.7f fused vs %.7f not, grads differ by %.2g of %.2g; "
               "bf16 around the GELU: fc out %d, fc dC %d, proj dA %d\n",
               bf16 ? "bf16" : "float32", lf, lu, worst, scale, (io & MAGNA_MM_OUT16) != 0, (io & MAGNA_MM_DC16) != 0,
               (io & MAGNA_MM_DA16) != 0);
        CHECK(scale > 0, "no gradients");
        CHECK((magna_matmul_bf16_io(fc_u) | magna_matmul_bf16_io(proj_u)) == 0, "bf16 around a GELU without rewrites");
        if (!bf16 || !has_bf16) {
            CHECK(lf == lu && worst == 0 && io == 0, "the GELU -> dense rewrite changed the numbers");
        } else {
            CHECK(magna_matmul_bf16_io(fc) == (MAGNA_MM_OUT16 | MAGNA_MM_DC16) &&
                      magna_matmul_bf16_io(proj) == MAGNA_MM_DA16,
                  "fc %u, proj %u: not bf16 around the GELU", magna_matmul_bf16_io(fc), magna_matmul_bf16_io(proj));
            /* bf16 keeps 8 bits: each rounding is within 2^-9 relative */
            CHECK(fabsf(lf - lu) <= 1e-3f * fabsf(lu) && worst <= 5e-3 * scale && worst > 0,
                  "bf16 around the GELU: loss %g vs %g, grads off by %g of %g", lf, lu, worst, scale);
        }
        magna_graph_free(fused), magna_graph_free(plain);
    }
    /* the GELU's one-pass AVX-512 kernels (with fc's dC in bf16 and its bias sums) against its portable path */
    float lf, lp;
    magna_node *fc, *proj;
    magna_graph *fast = gelu_mlp(true, true, &lf, &fc, &proj);
    setenv("MAGNA_GELU_KERNEL", "portable", 1);
    magna_graph *portable = gelu_mlp(true, true, &lp, &fc, &proj);
    unsetenv("MAGNA_GELU_KERNEL");
    size_t n; /* set by the first call before it is read: C leaves the order of a call's arguments open */
    const float *g_fast = magna_graph_grads(fast, &n), *g_portable = magna_graph_grads(portable, NULL);
    double scale, worst = max_diff(g_fast, g_portable, (int64_t)n, &scale);
    printf("GELU kernels, bf16 MLP: loss %.7f one-pass vs %.7f portable, grads differ by %.2g of %.2g\n", lf, lp, worst,
           scale);
    CHECK(fabsf(lf - lp) <= 1e-6f * fabsf(lp) && worst <= 5e-3 * scale, "GELU kernels: loss %g vs %g, grads %g of %g",
          lf, lp, worst, scale);
    magna_graph_free(fast), magna_graph_free(portable);
}

/* loss = mean((tanh(p) @ op(w))^2) (+ sum(tanh(p)) after the product when `later`, which makes that sum the
 * first writer of tanh's gradient and the product's dA an adding one). *mm: the product. */
static magna_graph *dense_graph(bool bf16, bool tb, bool later, magna_node **mm) {
    magna_graph *g = magna_graph_new(3);
    magna_node *h = magna_tanh(g, magna_param(g, "p", 2, SHAPE(40, 24), magna_init_uniform(-1, 1)));
    magna_node *w = magna_param(g, "w", 2, tb ? SHAPE(16, 24) : SHAPE(24, 16), magna_init_uniform(-1, 1));
    *mm = magna_matmul(g, h, w, false, tb);
    magna_graph_keep(g, *mm);
    magna_node *loss = magna_mean(g, magna_mul(g, *mm, *mm), 3, false);
    if (later) loss = magna_add(g, loss, magna_sum(g, h, 3, false));
    return step_once(g, loss, bf16);
}

static void test_bf16_dense(void) {
    const bool has_bf16 = magna_cpu_detect().avx512_bf16;
    for (int variant = 0; variant < 4; variant++) {
        const bool tb = variant & 1, later = variant & 2;
        magna_node *m16, *m32;
        magna_graph *g16 = dense_graph(true, tb, later, &m16), *g32 = dense_graph(false, tb, later, &m32);
        const char *kernel = magna_matmul_describe(m16);
        CHECK(!has_bf16 || strstr(kernel, "bf16"), "a bf16 graph's dense product ran %s", kernel);
        CHECK(!strstr(magna_matmul_describe(m32), "bf16"), "a float32 graph's product ran in bf16");
        double scale_y, scale_g, worst_y, worst_g;
        bf16_gap(g16, m16, g32, m32, &worst_y, &scale_y, &worst_g, &scale_g);
        printf("dense in bf16 (b%s, dA %s): %s; values off by %.2g of %.2g, grads by %.2g of %.2g\n",
               tb ? "^T" : "", later ? "added" : "assigned", kernel, worst_y, scale_y, worst_g, scale_g);
        /* bf16 keeps 8 bits: each operand is off by up to 2^-9 relative, a 24-term sum by about that much */
        CHECK(worst_y <= 1e-2 * scale_y && worst_g <= 1e-2 * scale_g, "bf16 too far from float32");
        CHECK(!has_bf16 || worst_y > 0, "bf16 gave float32's exact values: it did not run in bf16");
        magna_graph_free(g16), magna_graph_free(g32);
    }
}

/* loss = mean(seq^2) over an LSTM's or a GRU's h sequence; x a param so dx is computed too. *out: the output. */
static magna_graph *recurrent_graph(bool bf16, bool gru, int64_t H, magna_node **out) {
    magna_graph *g = magna_graph_new(8);
    const int64_t B = H % 2 ? 3 : 4, T = 6, I = 12, G = (gru ? 3 : 4) * H;
    const magna_init u = magna_init_uniform(-0.4f, 0.4f);
    magna_node *x = magna_param(g, "x", 3, SHAPE(B, T, I), magna_init_uniform(-1, 1));
    magna_node *w_ih = magna_param(g, "w_ih", 2, SHAPE(I, G), u), *w_hh = magna_param(g, "w_hh", 2, SHAPE(H, G), u);
    magna_node *b_ih = magna_param(g, "b_ih", 1, SHAPE(G), u), *b_hh = magna_param(g, "b_hh", 1, SHAPE(G), u);
    *out = gru ? magna_gru(g, x, w_ih, w_hh, b_ih, b_hh, NULL) : magna_lstm(g, x, w_ih, w_hh, b_ih, b_hh, NULL, NULL);
    magna_graph_keep(g, *out);
    magna_node *seq = magna_rnn_sequence(g, *out);
    magna_node *loss = magna_mean(g, magna_mul(g, seq, seq), 7, false);
    return step_once(g, loss, bf16);
}

/* In a bf16 graph the recurrent ops' big products (input projection, dW_ih, dx, dW_hh) and step products take
 * bf16 operands: outputs and every gradient within bf16's precision of float32's, and not equal to them (it ran
 * in bf16). H = 13 makes the step kernel's pairs of k odd, its panels partial and its row blocks short. */
static void test_bf16_recurrent(void) {
    const bool has_bf16 = magna_cpu_detect().avx512_bf16;
    for (int c = 0; c < 3; c++) {
        const bool gru = c == 1;
        const int64_t H = c == 2 ? 13 : 16;
        magna_node *o16, *o32;
        magna_graph *g16 = recurrent_graph(true, gru, H, &o16), *g32 = recurrent_graph(false, gru, H, &o32);
        double scale_y, scale_g, worst_y, worst_g;
        bf16_gap(g16, o16, g32, o32, &worst_y, &scale_y, &worst_g, &scale_g);
        printf("%s (H %lld) in bf16: outputs off by %.2g of %.2g, grads by %.2g of %.2g\n", gru ? "GRU" : "LSTM",
               (long long)H, worst_y, scale_y, worst_g, scale_g);
        CHECK(worst_y <= 2e-2 * scale_y && worst_g <= 2e-2 * scale_g, "bf16 too far from float32");
        CHECK(!has_bf16 || (worst_y > 0 && worst_g > 0), "bf16 gave float32's exact numbers: it did not run in bf16");
        magna_graph_free(g16), magna_graph_free(g32);
    }
}

/* loss = mean(attention(tanh(p_q), tanh(p_k), tanh(p_v))^2): causal self-attention, or cross-attention with a
 * padding mask (Tk differs). *out: the attention's output. */
static magna_graph *attention_graph(bool bf16, bool cross, int64_t C, int heads, int64_t T, magna_node **out) {
    magna_graph *g = magna_graph_new(9);
    const int64_t B = 2, Tq = T, Tk = cross ? 21 : T;
    const magna_init u = magna_init_uniform(-1, 1);
    magna_node *q = magna_tanh(g, magna_param(g, "q", 3, SHAPE(B, Tq, C), u));
    magna_node *k = magna_tanh(g, magna_param(g, "k", 3, SHAPE(B, Tk, C), u));
    magna_node *v = magna_tanh(g, magna_param(g, "v", 3, SHAPE(B, Tk, C), u));
    magna_node *len = cross ? magna_input_unbatched(g, "len", MAGNA_I32, 1, SHAPE(B)) : NULL;
    *out = magna_attention_masked(g, q, k, v, len, heads, !cross);
    magna_graph_keep(g, *out);
    magna_node *loss = magna_mean(g, magna_mul(g, *out, *out), 7, false);
    if (bf16) CHECK(magna_graph_set_bf16(g, true) == MAGNA_OK, "bf16: %s", magna_graph_errmsg(g));
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "compile: %s", magna_graph_errmsg(g));
    if (len) magna_node_data_i32(len)[0] = 13, magna_node_data_i32(len)[1] = 21; /* the first row padded */
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "step: %s", magna_graph_errmsg(g));
    return g;
}

/* In a bf16 graph attention's products run on the bf16 panel kernel: outputs and every gradient within bf16's
 * precision of float32's, and not equal to them. hd 32, 24 (a partial panel) and 80 (three panels), causal and masked
 * cross; T 37 and 72 (causal row blocks of 32 and a last one of 5 or 8). */
static void test_bf16_attention(void) {
    const bool has_bf16 = magna_cpu_detect().avx512_bf16;
    for (int c = 0; c < 5; c++) {
        const bool cross = c == 2;
        const int64_t C = c == 1 ? 48 : c == 4 ? 160 : 64, T = c >= 3 ? 72 : 37;
        magna_node *o16, *o32;
        magna_graph *g16 = attention_graph(true, cross, C, 2, T, &o16), *g32 = attention_graph(false, cross, C, 2, T, &o32);
        double scale_y, scale_g, worst_y, worst_g;
        bf16_gap(g16, o16, g32, o32, &worst_y, &scale_y, &worst_g, &scale_g);
        printf("attention (%s, hd %lld, T %lld) in bf16: outputs off by %.2g of %.2g, grads by %.2g of %.2g\n",
               cross ? "cross, masked" : "causal", (long long)(C / 2), (long long)T, worst_y, scale_y, worst_g, scale_g);
        CHECK(worst_y <= 2e-2 * scale_y && worst_g <= 2e-2 * scale_g, "bf16 too far from float32");
        CHECK(!has_bf16 || (worst_y > 0 && worst_g > 0), "bf16 gave float32's exact numbers: it did not run in bf16");
        magna_graph_free(g16), magna_graph_free(g32);
    }
}

/* x -> dense q, k, v (k, v of a second input when cross) -> attention -> dense out -> mean square, with the
 * rewrites or without (MAGNA_NO_FUSE): in bf16 the dense layers hand q, k and v to the attention in bf16, the
 * attention its output to `out` and `out` its gradient back (out16_to, bf16_for, da16_ok). *mm: the q and out
 * products. */
static magna_graph *attention_block(bool bf16, bool fuse, bool cross, int64_t C, magna_node **q_mm, magna_node **out_mm) {
    if (fuse)
        unsetenv("MAGNA_NO_FUSE");
    else
        setenv("MAGNA_NO_FUSE", "1", 1);
    magna_graph *g = magna_graph_new(21);
    const int64_t B = 2, T = 37, Tk = cross ? 21 : 37;
    const magna_init u = magna_init_uniform(-0.3f, 0.3f);
    magna_node *x = magna_param(g, "x", 3, SHAPE(B, T, C), magna_init_uniform(-1, 1));
    magna_node *mem = cross ? magna_param(g, "mem", 3, SHAPE(B, Tk, C), magna_init_uniform(-1, 1)) : x;
    magna_node *len = cross ? magna_input_unbatched(g, "len", MAGNA_I32, 1, SHAPE(B)) : NULL;
    static const char *const names[4][2] = {{"q.w", "q.b"}, {"k.w", "k.b"}, {"v.w", "v.b"}, {"o.w", "o.b"}};
    magna_node *mm[4], *qkv[3];
    for (int i = 0; i < 3; i++) {
        mm[i] = magna_matmul(g, i ? mem : x, magna_param(g, names[i][0], 2, SHAPE(C, C), u), false, false);
        qkv[i] = magna_add(g, mm[i], magna_param(g, names[i][1], 1, SHAPE(C), u));
    }
    magna_node *a = magna_attention_masked(g, qkv[0], qkv[1], qkv[2], len, 2, !cross);
    mm[3] = magna_matmul(g, a, magna_param(g, names[3][0], 2, SHAPE(C, C), u), false, false);
    magna_node *y = magna_add(g, mm[3], magna_param(g, names[3][1], 1, SHAPE(C), u));
    magna_node *loss = magna_mean(g, magna_mul(g, y, y), 7, false);
    if (bf16) CHECK(magna_graph_set_bf16(g, true) == MAGNA_OK, "bf16: %s", magna_graph_errmsg(g));
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "compile: %s", magna_graph_errmsg(g));
    if (len) magna_node_data_i32(len)[0] = 13, magna_node_data_i32(len)[1] = 21;
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "step: %s", magna_graph_errmsg(g));
    unsetenv("MAGNA_NO_FUSE");
    *q_mm = mm[0], *out_mm = mm[3];
    return g;
}

/* The attention block in bf16 with q, k, v, its output and dout handed over in bf16, against float32 (within
 * bf16's precision, as test_bf16_attention) and against the same graph without the rewrites (closer still): hd 32,
 * and hd 80 (three panels of the pair's packed operands, the last partial). */
static void test_attention_block_bf16(void) {
    const bool has_bf16 = magna_cpu_detect().avx512_bf16;
    for (int c = 0; c < 4; c++) {
        const bool cross = c % 2;
        const int64_t C = c < 2 ? 64 : 160;
        magna_node *q16, *o16, *q32, *o32, *qu, *ou;
        magna_graph *g16 = attention_block(true, true, cross, C, &q16, &o16),
                    *g32 = attention_block(false, true, cross, C, &q32, &o32);
        magna_graph *gu = attention_block(true, false, cross, C, &qu, &ou);
        size_t n;
        const float *gr16 = magna_graph_grads(g16, &n);
        double scale, worst = max_diff(gr16, magna_graph_grads(g32, NULL), (int64_t)n, &scale), scale_u,
                      worst_u = max_diff(gr16, magna_graph_grads(gu, NULL), (int64_t)n, &scale_u);
        const unsigned io_q = magna_matmul_bf16_io(q16), io_o = magna_matmul_bf16_io(o16);
        printf("attention block (%s, hd %lld) in bf16: grads off float32's by %.2g of %.2g, off the unrewritten bf16's "
               "by %.2g; q out in bf16 %d, q's dC in bf16 %d, out's dA in bf16 %d\n",
               cross ? "cross, masked" : "causal", (long long)(C / 2), worst, scale, worst_u, (io_q & MAGNA_MM_OUT16) != 0,
               (io_q & MAGNA_MM_DC16) != 0, (io_o & MAGNA_MM_DA16) != 0);
        CHECK(worst <= 2e-2 * scale && worst_u <= 1e-2 * scale_u, "bf16 attention block too far off");
        CHECK(!has_bf16 || (io_q == (MAGNA_MM_OUT16 | MAGNA_MM_DC16) && io_o == MAGNA_MM_DA16),
              "q %u, out %u: not handed over in bf16", io_q, io_o);
        CHECK((magna_matmul_bf16_io(qu) | magna_matmul_bf16_io(ou) | magna_matmul_bf16_io(q32)) == 0,
              "bf16 hand-offs without the rewrites or in float32");
        magna_graph_free(g16), magna_graph_free(g32), magna_graph_free(gu);
    }
}

/* Rows that see no key (a key length of 0) and keys no row sees (past a length) get a zero gradient from an attention
 * that assigns q's, k's and v's (it writes no product there): after a step in which every row saw every key, so
 * those buffers hold that step's numbers, a step with lengths 0 and 3 gives the params the gradients of the graph
 * without the rewrites (which zeroes and adds). In float32 and in bf16. */
static void test_attention_unseen_rows(void) {
    for (int bf16 = 0; bf16 < 2; bf16++) {
        const float *grads[2];
        size_t n = 0;
        magna_graph *gs[2];
        for (int fuse = 0; fuse < 2; fuse++) {
            if (fuse)
                unsetenv("MAGNA_NO_FUSE");
            else
                setenv("MAGNA_NO_FUSE", "1", 1);
            magna_graph *g = gs[fuse] = magna_graph_new(23);
            const magna_init u = magna_init_uniform(-1, 1);
            magna_node *q = magna_tanh(g, magna_param(g, "q", 3, SHAPE(2, 9, 32), u));
            magna_node *k = magna_tanh(g, magna_param(g, "k", 3, SHAPE(2, 5, 32), u));
            magna_node *v = magna_tanh(g, magna_param(g, "v", 3, SHAPE(2, 5, 32), u));
            magna_node *len = magna_input_unbatched(g, "len", MAGNA_I32, 1, SHAPE(2));
            magna_node *y = magna_attention_masked(g, q, k, v, len, 2, false);
            magna_node *loss = magna_mean(g, magna_mul(g, y, y), 7, false);
            if (bf16) CHECK(magna_graph_set_bf16(g, true) == MAGNA_OK, "bf16: %s", magna_graph_errmsg(g));
            CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "compile: %s", magna_graph_errmsg(g));
            for (int step = 0; step < 2; step++) {
                magna_node_data_i32(len)[0] = step ? 0 : 5, magna_node_data_i32(len)[1] = step ? 3 : 5;
                magna_graph_zero_grad(g);
                CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "step: %s",
                      magna_graph_errmsg(g));
            }
            grads[fuse] = magna_graph_grads(g, &n);
        }
        unsetenv("MAGNA_NO_FUSE");
        double scale, worst = max_diff(grads[1], grads[0], (int64_t)n, &scale);
        printf("attention with unseen rows and keys (%s): grads off the unrewritten graph's by %.2g of %.2g\n",
               bf16 ? "bf16" : "float32", worst, scale);
        CHECK(worst <= 1e-6 * scale && scale > 0, "unseen rows' or keys' gradients not zero");
        magna_graph_free(gs[0]), magna_graph_free(gs[1]);
    }
}

/* Backward at another thread count than the forward before it is refused: ops pick kernels (and what they leave
 * for backward: bf16 hand-offs, oneDNN's staging) by the count, and a mixed step gave wrong gradients. Forward
 * again at the new count, and it runs. */
static void test_threads_changed_between_forward_and_backward(void) {
    const int threads = magna_get_threads();
    magna_set_threads(2);
    magna_graph *g = magna_graph_new(3);
    magna_node *x = magna_param(g, "x", 2, SHAPE(64, 32), magna_init_uniform(-1, 1));
    magna_node *h = magna_gelu(g, magna_layer_dense(g, "fc", x, 128, (magna_dense_opts){0}));
    magna_node *loss = magna_mean(g, magna_mul(g, h, h), 3, false);
    magna_graph_set_bf16(g, true);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "compile: %s", magna_graph_errmsg(g));
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK, "forward: %s", magna_graph_errmsg(g));
    magna_set_threads(1);
    const magna_status st = magna_graph_backward(g);
    printf("backward at 1 thread after forward at 2: %s\n", magna_graph_errmsg(g));
    CHECK(st == MAGNA_ERR_STATE && strstr(magna_graph_errmsg(g), "thread"), "a mixed step was not refused (%d)", st);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "step at 1 thread: %s",
          magna_graph_errmsg(g));
    magna_graph_free(g);
    magna_set_threads(threads);
}

/* A loss's logits that nothing else reads get their gradient written over them (plan.c's grad_in_value): the
 * same gradients as with MAGNA_NO_FUSE=1 (where the gradient has its own buffer), some ignored labels among the
 * rows, a smaller arena, and a second backward without a forward refused (it would read gradients as logits). */
static void logits_grad(bool in_place, float *grads, size_t *n, size_t *arena) {
    if (in_place)
        unsetenv("MAGNA_NO_FUSE");
    else
        setenv("MAGNA_NO_FUSE", "1", 1);
    magna_graph *g = magna_graph_new(12);
    magna_node *x = magna_input(g, "x", MAGNA_F32, 2, SHAPE(40, 6));
    magna_node *y = magna_input(g, "y", MAGNA_I32, 1, SHAPE(40));
    magna_node *h = magna_tanh(g, magna_matmul(g, x, magna_param(g, "w1", 2, SHAPE(6, 24), magna_init_he_normal()),
                                               false, false));
    magna_node *logits = magna_matmul(g, h, magna_param(g, "w2", 2, SHAPE(24, 50), magna_init_xavier_normal()),
                                      false, false);
    magna_node *loss = magna_cross_entropy(g, logits, y);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "compile: %s", magna_graph_errmsg(g));
    unsetenv("MAGNA_NO_FUSE");
    fill_data(x, y, 40, 5);
    for (int r = 0; r < 40; r += 7) magna_node_data_i32(y)[r] = MAGNA_IGNORE_LABEL;
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "step: %s", magna_graph_errmsg(g));
    const float *gr = magna_graph_grads(g, n);
    CHECK(*n <= 2048, "the test model grew: %zu params", *n);
    memcpy(grads, gr, (*n < 2048 ? *n : 2048) * sizeof(float));
    *arena = magna_graph_arena_bytes(g);
    const magna_status again = magna_graph_backward(g);
    if (in_place)
        CHECK(again == MAGNA_ERR_STATE && strstr(magna_graph_errmsg(g), "forward"),
              "a second backward over spent logits was not refused (%d)", again);
    else
        CHECK(again == MAGNA_OK, "a second backward without the rewrite: %s", magna_graph_errmsg(g));
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "step after: %s",
          magna_graph_errmsg(g));
    magna_graph_free(g);
}

static void test_logits_gradient_in_place(void) {
    float a[2048], b[2048];
    size_t na, nb, arena_a, arena_b;
    logits_grad(true, a, &na, &arena_a);
    logits_grad(false, b, &nb, &arena_b);
    CHECK(na == nb && na <= 2048 && memcmp(a, b, na * sizeof(float)) == 0,
          "the logits' gradient over them changed the gradients");
    printf("logits' gradient in place: arena %zu bytes, %zu without\n", arena_a, arena_b);
    CHECK(arena_a + 40 * 50 * sizeof(float) <= arena_b, "the logits' gradient still has its own buffer (%zu vs %zu)",
          arena_a, arena_b);
}

/* Layer norm's dgamma and dbeta over fixed row parts: the same bits on 1 and 2 threads (x [1000, 48]: enough rows
 * to run in parallel). */
static void ln_grads(int threads, float **grads, size_t *n) {
    const int saved = magna_get_threads();
    magna_set_threads(threads);
    magna_graph *g = magna_graph_new(8);
    magna_node *x = magna_param(g, "x", 2, SHAPE(1000, 48), magna_init_uniform(-2, 2));
    magna_node *y = magna_layer_layer_norm(g, "ln", x, 1e-5f);
    magna_node *r = magna_param(g, "r", 2, SHAPE(1000, 48), magna_init_uniform(-1, 1));
    magna_node *loss = magna_sum(g, magna_mul(g, y, r), 3, false);
    *grads = NULL, *n = 0;
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    if (magna_graph_status(g) == MAGNA_OK) {
        magna_graph_zero_grad(g);
        CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "%s", magna_graph_errmsg(g));
        const float *gr = magna_graph_grads(g, n);
        *grads = malloc(*n * sizeof **grads);
        memcpy(*grads, gr, *n * sizeof **grads);
    }
    magna_graph_free(g);
    magna_set_threads(saved);
}

static void test_layer_norm_thread_count(void) {
    float *one, *two;
    size_t n1, n2, differ = 0;
    ln_grads(1, &one, &n1);
    ln_grads(2, &two, &n2);
    for (size_t i = 0; i < n1 && n1 == n2; i++) differ += one[i] != two[i];
    printf("layer norm gradients on 1 and 2 threads: %zu of %zu differ\n", differ, n1);
    CHECK(n1 == n2 && n1 > 0 && differ == 0, "layer norm: the thread count changed %zu gradients", differ);
    free(one), free(two);
}

/* The work the profiler counts: 2 M N K a product (backward, that per input taking a gradient), a convolution's
 * likewise, 4 C a scored (query, key) pair of attention forward and 8 backward, the causal mask's dropped pairs
 * not counted. */
static void test_profile_flops(void) {
    magna_graph *g = magna_graph_new(2);
    /* inputs agree on the batch dimension: xt^T is [5, 2] */
    magna_node *x = magna_input(g, "x", MAGNA_F32, 2, SHAPE(2, 5)), *xt = magna_input(g, "xt", MAGNA_F32, 2, SHAPE(2, 5));
    magna_node *w = magna_param(g, "w", 2, SHAPE(5, 7), magna_init_uniform(-1, 1));
    magna_node *wt = magna_param(g, "wt", 2, SHAPE(2, 7), magna_init_uniform(-1, 1));
    magna_node *c = magna_matmul(g, x, w, false, false), *ct = magna_matmul(g, xt, wt, true, false);
    magna_node *q = magna_input(g, "q", MAGNA_F32, 3, SHAPE(2, 4, 8));
    magna_node *causal = magna_attention(g, q, q, q, 2, true), *full = magna_attention(g, q, q, q, 2, false);
    magna_node *loss = magna_add(g, magna_add(g, magna_sum(g, c, MAGNA_ALL_AXES, false), magna_sum(g, ct, MAGNA_ALL_AXES, false)),
                                 magna_add(g, magna_sum(g, causal, MAGNA_ALL_AXES, false), magna_sum(g, full, MAGNA_ALL_AXES, false)));
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    CHECK(graph_profile_flops(c, false) == 2 * 2 * 7 * 5 && graph_profile_flops(c, true) == 2 * 2 * 7 * 5,
          "x w: %g forward, %g backward (w alone takes a gradient)", graph_profile_flops(c, false), graph_profile_flops(c, true));
    CHECK(graph_profile_flops(ct, false) == 2 * 5 * 7 * 2, "xt^T wt: %g", graph_profile_flops(ct, false));
    /* 4 queries, causal: 1 + 2 + 3 + 4 pairs */
    CHECK(graph_profile_flops(causal, false) == 4.0 * 2 * 10 * 8 && graph_profile_flops(full, false) == 4.0 * 2 * 16 * 8,
          "attention: %g causal, %g full", graph_profile_flops(causal, false), graph_profile_flops(full, false));
    CHECK(graph_profile_flops(full, true) == 8.0 * 2 * 16 * 8, "attention backward: %g", graph_profile_flops(full, true));
    magna_graph_free(g);
    /* a convolution: 2 x [2, 4, 5, 5] outputs x (3 x 3 x 3); backward, the weights' alone (the image takes none) */
    g = magna_graph_new(2);
    magna_node *img = magna_input(g, "img", MAGNA_F32, 4, SHAPE(2, 3, 5, 5));
    magna_node *conv = magna_conv2d(g, img, magna_param(g, "cw", 4, SHAPE(4, 3, 3, 3), magna_init_uniform(-1, 1)), NULL,
                                    (magna_conv2d_opts){.pad_h = 1, .pad_w = 1});
    CHECK(magna_graph_compile(g, magna_sum(g, conv, MAGNA_ALL_AXES, false)) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    CHECK(graph_profile_flops(conv, false) == 2.0 * (2 * 4 * 5 * 5) * 27 && graph_profile_flops(conv, true) == 2.0 * 200 * 27,
          "conv: %g forward, %g backward", graph_profile_flops(conv, false), graph_profile_flops(conv, true));
    magna_graph_free(g);
}

/* MAGNA_PROFILE=1: a table whose rows add up to its total, with the products' TFLOP/s, and the same steps as
 * without it */
static void test_profile_report(void) {
    magna_node *x[2], *y[2], *logits[2], *loss[2];
    setenv("MAGNA_PROFILE", "1", 1);
    magna_graph *g = mlp(5, 256, &x[0], &y[0], &logits[0], &loss[0], 0);
    unsetenv("MAGNA_PROFILE");
    magna_graph *plain = mlp(5, 256, &x[1], &y[1], &logits[1], &loss[1], 0);
    for (int i = 0; i < 2; i++) {
        magna_graph *h = i ? plain : g;
        magna_graph_zero_grad(h);
        for (int step = 0; step < 3; step++) {
            fill_data(x[i], y[i], 256, (uint64_t)step);
            CHECK(magna_graph_forward(h) == MAGNA_OK && magna_graph_backward(h) == MAGNA_OK, "%s", magna_graph_errmsg(h));
        }
    }
    size_t n;
    const float *a = magna_graph_grads(g, &n), *b = magna_graph_grads(plain, NULL);
    CHECK(!memcmp(a, b, n * sizeof *a), "profiling changed the gradients");
    magna_graph_free(plain);
    const int saved = stderr_catch();
    magna_graph_free(g);
    char *report = stderr_caught(saved);
    profile_row mm = {0}, zero = {0};
    CHECK(profile_row_of(report, "matmul", &mm) && mm.calls == 2 * 3 && mm.fwd_ms > 0 && mm.bwd_ms > 0 && mm.fwd_tflops >= 0,
          "the products' row: %s", report ? report : "(no report)");
    CHECK(profile_row_of(report, "(zero activation grads)", &zero) || !strstr(report ? report : "", "zero"),
          "zeroing's row unreadable");
    double sum_ms = 0, shares = 0;
    for (const char *line = report ? strchr(report, '\n') : NULL; line && line[1]; line = strchr(line + 1, '\n')) {
        char name[64];
        profile_row r;
        if (sscanf(line + 1, "  %63[^0-9] ", name) != 1 || !strncmp(name, "op ", 3)) continue;
        size_t len = strlen(name);
        while (len && name[len - 1] == ' ') name[--len] = '\0';
        if (profile_row_of(report, name, &r)) sum_ms += r.fwd_ms + r.bwd_ms, shares += r.share;
    }
    const double total_ms = profile_total_ms(report);
    printf("profile: %.3f ms in the rows, %.3f the total, shares %.1f%%\n", sum_ms, total_ms, shares);
    CHECK(total_ms > 0 && fabs(sum_ms - total_ms) <= 0.01 * total_ms + 0.01 && fabs(shares - 100) <= 1,
          "the rows do not add up to the total: %s", report ? report : "(no report)");
    free(report);
}

int main(void) {
    printf("%s\n", magna_runtime_info());
    test_memory_reuse();
    test_small_batch();
    test_accumulation_and_determinism();
    test_flat_params();
    test_learns();
    test_rewrites_change_nothing();
    test_bf16_dense();
    test_gelu_into_bf16_matmul();
    test_one_row_add();
    test_bf16_recurrent();
    test_bf16_attention();
    test_attention_block_bf16();
    test_attention_unseen_rows();
    test_threads_changed_between_forward_and_backward();
    test_layer_norm_thread_count();
    test_logits_gradient_in_place();
    test_profile_flops();
    test_profile_report();
    return check_finish("test_graph");
}
