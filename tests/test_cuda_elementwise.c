/* test_cuda_elementwise.c — the elementwise family's CUDA kernels (elementwise.cu, reduce.cu, softmax.cu,
 * embedding.cu) against the graph's CPU ops, forward and backward, on fresh random inputs: every unary and
 * scalar op (float4 and scalar paths), the binary ops over broadcast shapes (each operand's gradient summed
 * over the dims it was broadcast over, in both reduction shapes), sum / mean / max over every set of axes
 * (max on rows full of ties and with NaNs: the gradient must land on the CPU's argmax), softmax and
 * log-softmax (a warp and a block per row), cross-entropy (ignored rows, class weights, a bad label
 * flagged), mean squared error, binary cross-entropy (a bad target flagged), the embedding (its backward
 * bit for bit the CPU's, ids repeating) and dropout (the CPU's mask, exactly); and, through whole CUDA graphs,
 * a bad id, label or target refused with the CPU's message.
 *
 * Gradients are accumulated into buffers that start non-zero, as the graph's backward adds. Tolerance:
 * 1e-5 of the largest magnitude (float32 sums in another order). Linked with the emulator (magna_emu), it
 * runs everywhere; in a CUDA build it also runs on the GPU, or exits 77 (skipped) where there is none. */
#include "check.h"
#include "cuda/kernels.h"
#include "graph/internal.h"
#include "magna.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CU(call)                                                                                                     \
    do {                                                                                                             \
        const int e_ = (int)(call);                                                                                  \
        CHECK(e_ == 0, "%s: %s", #call, cudaGetErrorString((cudaError_t)e_));                                        \
    } while (0)

static void fill(float *x, int64_t n, float scale, uint64_t stream) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * (2.0f * magna_rand_uniform(11, stream, (uint64_t)i) - 1.0f);
}
/* max |a - b| / max(|b|, 1e-6) */
static double rel_err(const float *a, const float *b, int64_t n) {
    double scale = 1e-6, worst = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return n ? worst / scale : 0.0;
}

/* a device copy of n elements of `size` bytes (one element of slack after, for the unaligned runs) */
static void *to_dev(const void *h, int64_t n, size_t size) {
    void *d = NULL;
    CU(cudaMalloc(&d, (size_t)(n + 1) * size));
    CU(cudaMemcpy(d, h, (size_t)n * size, cudaMemcpyHostToDevice));
    return d;
}
static float *dev(const float *h, int64_t n) { return to_dev(h, n, sizeof(float)); }
static float *dev_zeros(int64_t n) {
    float *d = NULL;
    CU(cudaMalloc((void **)&d, (size_t)(n + 1) * sizeof(float)));
    CU(cudaMemset(d, 0, (size_t)(n + 1) * sizeof(float)));
    return d;
}
/* the device array on the host (malloc'd) */
static float *host(const float *d, int64_t n) {
    float *h = malloc((size_t)(n + 1) * sizeof(float));
    CU(cudaDeviceSynchronize());
    CU(cudaMemcpy(h, d, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
}
/* max relative error of the device array against the CPU's values (plus `base` where given: the gradient
 * buffers start at base) */
static double dev_err(const float *d, const float *want, const float *base, int64_t n) {
    float *h = host(d, n), *w = malloc((size_t)(n + 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) w[i] = want[i] + (base ? base[i] : 0.0f);
    const double e = rel_err(h, w, n);
    free(h), free(w);
    return e;
}

static bool run_cpu(magna_graph *g, magna_node *loss, const char *what) {
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s: compile: %s", what, magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) return false;
    return true;
}
static void forward_backward(magna_graph *g, const char *what) {
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "%s: run: %s", what,
          magna_graph_errmsg(g));
}

/* ---- unary and scalar ops --------------------------------------------------------------------------- */

/* n NaNs: what an assigning backward finds in a gradient nothing zeroed, and must never read */
static float *nans(int64_t n) {
    float *p = malloc((size_t)(n + 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

/* assign: the gradient starts as NaNs and must come out as the gradient alone (the first writer's `=`) */
static void unary(int em, const char *name, float a, int positive, int64_t n, int offset, int assign) {
    float *x = malloc((size_t)n * 4), *dy = malloc((size_t)n * 4), *g0 = assign ? nans(n) : malloc((size_t)n * 4);
    float *y = malloc((size_t)n * 4), *dx = malloc((size_t)n * 4);
    fill(x, n, 4, 1), fill(dy, n, 1, 2);
    if (!assign) fill(g0, n, 1, 3);
    for (int64_t i = 0; i < n; i++) {
        if (positive) x[i] = fabsf(x[i]) + 0.05f;
        y[i] = magna_em_unary(em, x[i], a);
        dx[i] = magna_em_unary_backward(em, x[i], y[i], dy[i], a);
    }
    float *xd = dev_zeros(n), *yd = dev_zeros(n), *dyd = dev_zeros(n), *gd = dev_zeros(n);
    CU(cudaMemcpy(xd + offset, x, (size_t)n * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(dyd + offset, dy, (size_t)n * 4, cudaMemcpyHostToDevice));
    CU(cudaMemcpy(gd + offset, g0, (size_t)n * 4, cudaMemcpyHostToDevice));
    CU(magna_cuda_unary_forward(em, a, xd + offset, yd + offset, n, NULL));
    CU(magna_cuda_unary_backward(em, a, xd + offset, yd + offset, dyd + offset, gd + offset, n, assign, NULL));
    const double ey = dev_err(yd + offset, y, NULL, n), edx = dev_err(gd + offset, dx, assign ? NULL : g0, n);
    CHECK(ey <= 1e-6 && edx <= 1e-6, "%s n=%lld offset %d%s: forward %.3g backward %.3g", name, (long long)n, offset,
          assign ? " assign" : "", ey, edx);
    cudaFree(xd), cudaFree(yd), cudaFree(dyd), cudaFree(gd);
    free(x), free(dy), free(g0), free(y), free(dx);
}

static void unaries(void) {
    static const struct {
        int em;
        const char *name;
        float a;
        int positive;
    } OPS[] = {{MAGNA_EM_RELU, "relu", 0, 0},         {MAGNA_EM_SIGMOID, "sigmoid", 0, 0},
               {MAGNA_EM_GELU, "gelu", 0, 0},         {MAGNA_EM_SCALE, "scale", -1.5f, 0},
               {MAGNA_EM_ADD_SCALAR, "add_scalar", 2, 0}, {MAGNA_EM_POW_SCALAR, "pow_scalar", 1.5f, 1},
               {MAGNA_EM_ABS, "abs", 0, 0},           {MAGNA_EM_LEAKY_RELU, "leaky_relu", 0.1f, 0},
               {MAGNA_EM_TANH, "tanh", 0, 0},         {MAGNA_EM_GELU_TANH, "gelu_tanh", 0, 0},
               {MAGNA_EM_EXP, "exp", 0, 0},           {MAGNA_EM_LOG, "log", 0, 1},
               {MAGNA_EM_SQRT, "sqrt", 0, 1}};
    for (int k = 0; k < (int)(sizeof OPS / sizeof OPS[0]); k++)
        for (int offset = 0; offset < 2; offset++)
            for (int assign = 0; assign < 2; assign++) {
                unary(OPS[k].em, OPS[k].name, OPS[k].a, OPS[k].positive, 1, offset, assign);
                unary(OPS[k].em, OPS[k].name, OPS[k].a, OPS[k].positive, 1027, offset, assign);
            }
    CU(magna_cuda_unary_forward(MAGNA_EM_RELU, 0, NULL, NULL, 0, NULL)); /* nothing to launch */
    CHECK(magna_cuda_unary_forward(99, 0, NULL, NULL, 1, NULL) != 0, "an unknown op is refused");
}

/* ---- binary ops over broadcast shapes --------------------------------------------------------------- */

/* assign: both gradients start as NaNs and must come out as the gradients alone (broadcast or not) */
static void binary(int op, int nda, const int64_t *sa, int ndb, const int64_t *sb, int assign) {
    static const char *NAMES[] = {"add", "sub", "mul", "div", "pow"};
    magna_graph *g = magna_graph_new(21);
    magna_node *a = magna_param(g, "a", nda, sa, magna_init_zeros());
    magna_node *b = magna_param(g, "b", ndb, sb, magna_init_zeros());
    magna_node *y = op == 0 ? magna_add(g, a, b) : op == 1 ? magna_sub(g, a, b) : op == 2 ? magna_mul(g, a, b)
                  : op == 3 ? magna_div(g, a, b) : magna_pow(g, a, b);
    magna_node *c = magna_input_unbatched(g, "c", MAGNA_F32, y->ndim, y->shape);
    magna_node *loss = magna_sum(g, magna_mul(g, y, c), MAGNA_ALL_AXES, false);
    magna_graph_keep(g, y);
    if (!run_cpu(g, loss, NAMES[op])) return magna_graph_free(g);
    float *av = magna_node_data(a), *bv = magna_node_data(b), *cv = magna_node_data(c);
    fill(av, a->numel, 2, 30), fill(bv, b->numel, 2, 31), fill(cv, c->numel, 1, 32);
    for (int64_t i = 0; i < a->numel; i++)
        if (op == MAGNA_EM_POW) av[i] = fabsf(av[i]) + 0.5f;
    for (int64_t i = 0; i < b->numel; i++)
        if (op == MAGNA_EM_DIV && fabsf(bv[i]) < 0.5f) bv[i] = 1.0f;
    forward_backward(g, NAMES[op]);
    /* the glue's index spaces (src/cuda/ops_elementwise.c) */
    magna_index full = magna_index_of(y->ndim, y->shape);
    magna_index_contiguous(&full, 0);
    magna_index_broadcast(&full, 1, nda, sa), magna_index_broadcast(&full, 2, ndb, sb);
    magna_index ix = full;
    magna_index_simplify(&ix, 3);
    float *ad = dev(av, a->numel), *bd = dev(bv, b->numel), *cd = dev(cv, c->numel), *yd = dev_zeros(y->numel);
    float *ga0 = assign ? nans(a->numel) : malloc((size_t)a->numel * 4);
    float *gb0 = assign ? nans(b->numel) : malloc((size_t)b->numel * 4);
    if (!assign) fill(ga0, a->numel, 1, 33), fill(gb0, b->numel, 1, 34);
    float *gad = dev(ga0, a->numel), *gbd = dev(gb0, b->numel);
    CU(magna_cuda_binary_forward(op, &ix, ad, bd, yd, NULL));
    for (int which = 0; which < 2; which++) {
        unsigned mask = 0;
        for (int d = 0; d < full.nd; d++)
            if (full.stride[1 + which][d] == 0 && full.shape[d] != 1) mask |= 1u << d;
        magna_index kept, red;
        magna_index_split(&full, mask, 3, &kept, &red);
        /* the split reduction's scratch as the glue gives it: the CPU infer's workspace */
        const size_t need = magna_reduce_split_workspace(kept.n, red.n);
        CHECK(need <= y->workspace_bytes, "%s: infer asked for %zu bytes of workspace, the split needs %zu", NAMES[op],
              y->workspace_bytes, need);
        float *ws = need ? dev_zeros((int64_t)(need / sizeof(float))) : NULL;
        CU(magna_cuda_binary_backward(op, which, &kept, &red, ad, bd, yd, cd, 0, which ? gbd : gad, assign, ws, NULL));
        cudaFree(ws);
    }
    const double ey = dev_err(yd, magna_node_data(y), NULL, y->numel);
    const double ea = dev_err(gad, magna_node_grad(a), assign ? NULL : ga0, a->numel);
    const double eb = dev_err(gbd, magna_node_grad(b), assign ? NULL : gb0, b->numel);
    char s1[SHAPE_STR_MAX], s2[SHAPE_STR_MAX];
    CHECK(ey <= 1e-5 && ea <= 1e-5 && eb <= 1e-5, "%s %s %s%s: forward %.3g backward %.3g %.3g", NAMES[op],
          shape_str(a, s1, sizeof s1), shape_str(b, s2, sizeof s2), assign ? " assign" : "", ey, ea, eb);
    cudaFree(ad), cudaFree(bd), cudaFree(cd), cudaFree(yd), cudaFree(gad), cudaFree(gbd);
    free(ga0), free(gb0);
    magna_graph_free(g);
}

static void binaries(void) {
    for (int assign = 0; assign < 2; assign++)
        for (int op = 0; op < 5; op++) {
            binary(op, 2, (int64_t[]){3, 5}, 2, (int64_t[]){3, 5}, assign);    /* same shape: one flat dim */
            binary(op, 3, (int64_t[]){2, 3, 4}, 1, (int64_t[]){4}, assign);    /* a bias */
            binary(op, 1, (int64_t[]){1}, 2, (int64_t[]){3, 7}, assign);       /* a scalar */
            binary(op, 3, (int64_t[]){2, 1, 4}, 2, (int64_t[]){3, 1}, assign); /* both broadcast */
            binary(op, 3, (int64_t[]){1, 7, 1}, 3, (int64_t[]){3, 1, 5}, assign);
            binary(op, 2, (int64_t[]){600, 40}, 1, (int64_t[]){40}, assign);  /* cols reduction, many rows */
            binary(op, 2, (int64_t[]){5000, 40}, 1, (int64_t[]){40}, assign); /* ... split over the grid */
            binary(op, 3, (int64_t[]){3, 1, 7}, 3, (int64_t[]){3, 2100, 7}, assign);
            binary(op, 2, (int64_t[]){4, 1500}, 2, (int64_t[]){4, 1}, assign); /* rows reduction, a block each */
            binary(op, 4, (int64_t[]){2, 3, 1, 5}, 4, (int64_t[]){1, 3, 4, 1}, assign);
        }
}

/* ---- sum, mean, max over axes ----------------------------------------------------------------------- */

static void reduction(op_id op, int nd, const int64_t *shape, unsigned mask, int ties) {
    const char *name = op == OP_SUM ? "sum" : op == OP_MEAN ? "mean" : "max";
    magna_graph *g = magna_graph_new(22);
    magna_node *x = magna_param(g, "x", nd, shape, magna_init_zeros());
    magna_node *m = op == OP_SUM ? magna_sum(g, x, mask, false) : op == OP_MEAN ? magna_mean(g, x, mask, false)
                                                                               : magna_max(g, x, mask, false);
    magna_node *c = magna_input_unbatched(g, "c", MAGNA_F32, m->ndim, m->shape);
    magna_node *loss = magna_sum(g, magna_mul(g, m, c), MAGNA_ALL_AXES, false);
    magna_graph_keep(g, m);
    if (!run_cpu(g, loss, name)) return magna_graph_free(g);
    float *xv = magna_node_data(x), *cv = magna_node_data(c);
    fill(xv, x->numel, 3, 40), fill(cv, c->numel, 1, 41);
    if (ties) {
        for (int64_t i = 0; i < x->numel; i++) xv[i] = (float)(magna_rand_u64(12, 42, (uint64_t)i) % 3);
        for (int64_t i = 0; i < x->numel; i += 7) xv[i] = NAN; /* NaNs: skipped, or the answer when first */
    }
    forward_backward(g, name);
    magna_index full = magna_index_of(nd, shape), kept, red;
    magna_index_contiguous(&full, 0);
    magna_index_split(&full, (unsigned)m->ip[0], 1, &kept, &red);
    float *xd = dev(xv, x->numel), *cd = dev(cv, c->numel), *md = dev_zeros(m->numel);
    float *g0 = malloc((size_t)x->numel * 4);
    fill(g0, x->numel, 1, 43);
    float *gd = dev(g0, x->numel);
    int64_t *arg = NULL;
    CU(cudaMalloc((void **)&arg, (size_t)m->numel * sizeof *arg));
    const float scale = op == OP_MEAN ? 1.0f / (float)red.n : 1.0f;
    /* the two-pass sums' scratch as the glue gives it: the CPU infer's workspace */
    const size_t need = magna_reduce_workspace(kept.n, red.n);
    CHECK(op == OP_MAX || need <= m->workspace_bytes, "%s: infer asked for %zu bytes of workspace, the sums need %zu",
          name, m->workspace_bytes, need);
    float *ws = op != OP_MAX && need ? dev_zeros((int64_t)(need / sizeof(float))) : NULL;
    CU(magna_cuda_reduce_axes(op == OP_MAX, &kept, &red, xd, scale, md, arg, ws, NULL));
    if (op == OP_MAX) {
        CU(magna_cuda_max_backward(arg, cd, gd, m->numel, NULL));
    } else { /* the glue's broadcast of dy (src/cuda/ops_reduce.c) */
        magna_index ix = magna_index_of(nd, shape);
        magna_index_contiguous(&ix, 1);
        int64_t s = 1;
        for (int d = nd - 1; d >= 0; d--) {
            ix.stride[0][d] = m->ip[0] & (1u << d) ? 0 : s;
            if (!(m->ip[0] & (1u << d))) s *= shape[d];
        }
        magna_index_simplify(&ix, 2);
        CU(magna_cuda_strided_copy(&ix, cd, gd, scale, 1, NULL));
    }
    /* NaN outputs compare as equal when both are NaN */
    float *mh = host(md, m->numel), *mc = malloc((size_t)m->numel * 4);
    memcpy(mc, magna_node_data(m), (size_t)m->numel * 4);
    int64_t nan_mismatch = 0;
    for (int64_t i = 0; i < m->numel; i++) {
        nan_mismatch += isnan(mh[i]) != isnan(mc[i]);
        if (isnan(mh[i])) mh[i] = 0;
        if (isnan(mc[i])) mc[i] = 0;
    }
    const double em = rel_err(mh, mc, m->numel), eg = dev_err(gd, magna_node_grad(x), g0, x->numel);
    char sx[SHAPE_STR_MAX];
    CHECK(!nan_mismatch && em <= 1e-5 && eg <= (op == OP_MAX ? 0.0 : 1e-5),
          "%s %s mask 0x%x%s: forward %.3g (%lld NaNs differ) backward %.3g", name, shape_str(x, sx, sizeof sx), mask,
          ties ? " ties" : "", em, (long long)nan_mismatch, eg);
    free(mh), free(mc), free(g0);
    cudaFree(xd), cudaFree(cd), cudaFree(md), cudaFree(gd), cudaFree(arg), cudaFree(ws);
    magna_graph_free(g);
}

static void reductions(void) {
    const int64_t s4[] = {3, 4, 5, 6};
    for (op_id op = OP_SUM; op <= OP_MAX; op++) {
        for (unsigned mask = 1; mask < 16; mask++) reduction(op, 4, s4, mask, 0);
        reduction(op, 2, (int64_t[]){2, 3000}, 2, 0); /* long rows: a block per output */
        reduction(op, 2, (int64_t[]){3000, 3}, 1, 0); /* the cols shape over many rows */
        reduction(op, 2, (int64_t[]){6000, 40}, 1, 0); /* ... split over the grid (sums) */
        reduction(op, 3, (int64_t[]){700, 9, 40}, 5, 0);
        reduction(op, 1, (int64_t[]){70001}, 1, 0);   /* everything to one number */
    }
    for (unsigned mask = 1; mask < 16; mask++) reduction(OP_MAX, 4, s4, mask, 1);
    reduction(OP_MAX, 2, (int64_t[]){3, 2000}, 2, 1), reduction(OP_MAX, 2, (int64_t[]){2000, 3}, 1, 1);
}

/* ---- softmax and log-softmax -------------------------------------------------------------------------- */

static void softmax(int log_form, int64_t rows, int64_t cols) {
    magna_graph *g = magna_graph_new(23);
    magna_node *x = magna_param(g, "x", 2, (int64_t[]){rows, cols}, magna_init_zeros());
    magna_node *y = log_form ? magna_log_softmax(g, x) : magna_softmax(g, x);
    magna_node *c = magna_input_unbatched(g, "c", MAGNA_F32, 2, (int64_t[]){rows, cols});
    magna_node *loss = magna_sum(g, magna_mul(g, y, c), MAGNA_ALL_AXES, false);
    magna_graph_keep(g, y);
    if (!run_cpu(g, loss, "softmax")) return magna_graph_free(g);
    const int64_t n = rows * cols;
    float *xv = magna_node_data(x), *cv = magna_node_data(c), *g0 = malloc((size_t)n * 4);
    fill(xv, n, 20, 50), fill(cv, n, 1, 51), fill(g0, n, 1, 52);
    forward_backward(g, "softmax");
    float *xd = dev(xv, n), *cd = dev(cv, n), *yd = dev_zeros(n), *gd = dev(g0, n);
    CU(magna_cuda_softmax_forward(log_form, xd, yd, rows, cols, NULL));
    CU(magna_cuda_softmax_backward(log_form, yd, cd, gd, rows, cols, NULL));
    const double ey = dev_err(yd, magna_node_data(y), NULL, n), eg = dev_err(gd, magna_node_grad(x), g0, n);
    CHECK(ey <= 1e-5 && eg <= 1e-5, "%s %lldx%lld: forward %.3g backward %.3g", log_form ? "log_softmax" : "softmax",
          (long long)rows, (long long)cols, ey, eg);
    free(g0);
    cudaFree(xd), cudaFree(cd), cudaFree(yd), cudaFree(gd);
    magna_graph_free(g);
}

/* ---- losses ----------------------------------------------------------------------------------------------- */

/* bf16 logits (a bf16 graph keeps the logits in bf16, stored16): the CPU graph's run again on its logits rounded
 * to bf16, against the device's loss and the gradient it writes over the bf16 logits (to bf16's precision) */
static void cross_entropy_bf16(magna_graph *g, magna_node *x, magna_node *lab, magna_node *w, magna_node *loss,
                               int64_t rows, int64_t C) {
    const int64_t n = rows * C;
    float *xv = magna_node_data(x), *back = malloc((size_t)n * 4);
    uint16_t *bits = malloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &xv[i], 4);
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u; /* round to nearest even */
        memcpy(&xv[i], &u, 4);
        bits[i] = (uint16_t)(u >> 16);
    }
    forward_backward(g, "cross_entropy bf16");
    void *xd = to_dev(bits, n, 2);
    float *wd = w ? dev(magna_node_data(w), C) : NULL, *saved = dev_zeros(rows + 1), *row_loss = dev_zeros(rows + 1);
    float *lossd = dev_zeros(1), one = 1.0f, *dl = dev(&one, 1);
    int32_t *labd = to_dev(magna_node_data_i32(lab), rows, sizeof(int32_t));
    CU(magna_cuda_xent_forward(xd, 1, labd, wd, rows, C, saved, row_loss, NULL, lossd, NULL));
    CHECK(magna_cuda_xent_backward(xd, 1, labd, wd, saved, dl, xd, 0, rows, C, NULL) == cudaErrorInvalidValue,
          "cross_entropy bf16: adding into bf16 logits was not refused");
    CU(magna_cuda_xent_backward(xd, 1, labd, wd, saved, dl, xd, 1, rows, C, NULL));
    CU(cudaDeviceSynchronize());
    CU(cudaMemcpy(bits, xd, (size_t)n * 2, cudaMemcpyDeviceToHost));
    for (int64_t i = 0; i < n; i++) {
        const uint32_t u = (uint32_t)bits[i] << 16;
        memcpy(&back[i], &u, 4);
    }
    const double el = dev_err(lossd, magna_node_data(loss), NULL, 1), eg = rel_err(back, magna_node_grad(x), n);
    CHECK(el <= 1e-5 && eg <= 1.0 / 128, "cross_entropy bf16 %lldx%lld: loss %.3g gradient %.3g", (long long)rows,
          (long long)C, el, eg);
    free(back), free(bits);
    cudaFree(xd), cudaFree(wd), cudaFree(saved), cudaFree(row_loss), cudaFree(lossd), cudaFree(dl), cudaFree(labd);
}

static void cross_entropy(int64_t rows, int64_t C, int weighted, int bad_label) {
    magna_graph *g = magna_graph_new(24);
    magna_node *x = magna_param(g, "x", 2, (int64_t[]){rows, C}, magna_init_zeros());
    magna_node *lab = magna_input_unbatched(g, "y", MAGNA_I32, 1, (int64_t[]){rows});
    magna_node *w = weighted ? magna_input_unbatched(g, "w", MAGNA_F32, 1, (int64_t[]){C}) : NULL;
    magna_node *loss = weighted ? magna_cross_entropy_weighted(g, x, lab, w) : magna_cross_entropy(g, x, lab);
    if (!run_cpu(g, loss, "cross_entropy")) return magna_graph_free(g);
    const int64_t n = rows * C;
    float *xv = magna_node_data(x), *g0 = malloc((size_t)n * 4);
    int32_t *label = magna_node_data_i32(lab);
    fill(xv, n, 30, 60), fill(g0, n, 1, 61);
    if (w) {
        fill(magna_node_data(w), C, 1, 62);
        for (int64_t j = 0; j < C; j++) magna_node_data(w)[j] += 1.5f;
    }
    for (int64_t r = 0; r < rows; r++)
        label[r] = r % 4 == 2 ? MAGNA_IGNORE_LABEL : (int32_t)(magna_rand_u64(13, 63, (uint64_t)r) % (uint64_t)C);
    forward_backward(g, "cross_entropy");
    if (bad_label) label[rows - 1] = (int32_t)C; /* for the device only: the CPU ran on good labels */
    float *xd = dev(xv, n), *gd = dev(g0, n), *wd = w ? dev(magna_node_data(w), C) : NULL;
    float *saved = dev_zeros(rows + 1), *row_loss = dev_zeros(rows + 1), *lossd = dev_zeros(1), one = 1.0f;
    float *dl = dev(&one, 1);
    int32_t *labd = to_dev(label, rows, sizeof *label);
    int *badd = to_dev((int[]){7}, 1, sizeof(int)), bad = 0;
    CU(magna_cuda_xent_forward(xd, 0, labd, wd, rows, C, saved, row_loss, badd, lossd, NULL));
    CU(cudaMemcpy(&bad, badd, sizeof bad, cudaMemcpyDeviceToHost));
    if (bad_label) {
        CHECK(bad == 1, "cross_entropy: a label of %lld classes at row %lld was not flagged", (long long)C,
              (long long)rows - 1);
    } else {
        CU(magna_cuda_xent_backward(xd, 0, labd, wd, saved, dl, gd, 0, rows, C, NULL));
        const double el = dev_err(lossd, magna_node_data(loss), NULL, 1), eg = dev_err(gd, magna_node_grad(x), g0, n);
        /* assigning, over the logits themselves (plan.c's grad_in_value): ignored rows come out 0 */
        CU(magna_cuda_xent_backward(xd, 0, labd, wd, saved, dl, xd, 1, rows, C, NULL));
        const double ei = dev_err(xd, magna_node_grad(x), NULL, n);
        CHECK(bad == 0 && el <= 1e-5 && eg <= 1e-5 && ei <= 1e-5,
              "cross_entropy %lldx%lld weighted %d: flag %d loss %.3g backward %.3g in place %.3g", (long long)rows,
              (long long)C, weighted, bad, el, eg, ei);
    }
    free(g0);
    cudaFree(xd), cudaFree(gd), cudaFree(wd), cudaFree(saved), cudaFree(row_loss), cudaFree(lossd), cudaFree(dl);
    cudaFree(labd), cudaFree(badd);
    if (!bad_label) cross_entropy_bf16(g, x, lab, w, loss, rows, C);
    magna_graph_free(g);
}

static void pointwise_loss(int bce, int64_t n, int bad_target) {
    const char *name = bce ? "bce_with_logits" : "mse";
    magna_graph *g = magna_graph_new(25);
    magna_node *p = magna_param(g, "p", 1, (int64_t[]){n}, magna_init_zeros());
    magna_node *t = magna_param(g, "t", 1, (int64_t[]){n}, magna_init_zeros()); /* a param: its gradient too */
    magna_node *loss = bce ? magna_bce_with_logits(g, p, t) : magna_mse(g, p, t);
    if (!run_cpu(g, loss, name)) return magna_graph_free(g);
    float *pv = magna_node_data(p), *tv = magna_node_data(t), *g0 = malloc((size_t)n * 4);
    fill(pv, n, 5, 70), fill(g0, n, 1, 71);
    for (int64_t i = 0; i < n; i++) tv[i] = magna_rand_uniform(14, 72, (uint64_t)i);
    forward_backward(g, name);
    if (bad_target) tv[n / 2] = 1.5f;
    float *pd = dev(pv, n), *td = dev(tv, n), *gpd = dev(g0, n), *gtd = dev(g0, n), *ws = dev_zeros(MAGNA_LAUNCH_SUM_BLOCKS);
    float *lossd = dev_zeros(1), one = 1.0f, *dl = dev(&one, 1);
    int *badd = to_dev((int[]){7}, 1, sizeof(int)), bad = 0;
    if (bce) {
        CU(magna_cuda_bce_forward(pd, td, n, ws, badd, lossd, NULL));
        CU(cudaMemcpy(&bad, badd, sizeof bad, cudaMemcpyDeviceToHost));
        CU(magna_cuda_bce_backward(pd, td, dl, gpd, gtd, n, NULL));
    } else {
        CU(magna_cuda_mse_forward(pd, td, n, ws, lossd, NULL));
        CU(magna_cuda_mse_backward(pd, td, dl, gpd, gtd, n, NULL));
    }
    if (bad_target) {
        CHECK(bad == 1, "%s: a target of 1.5 was not flagged", name);
    } else {
        const double el = dev_err(lossd, magna_node_data(loss), NULL, 1);
        const double ep = dev_err(gpd, magna_node_grad(p), g0, n), et = dev_err(gtd, magna_node_grad(t), g0, n);
        CHECK((!bce || bad == 0) && el <= 1e-5 && ep <= 1e-5 && et <= 1e-5, "%s n=%lld: loss %.3g backward %.3g %.3g",
              name, (long long)n, el, ep, et);
    }
    free(g0);
    cudaFree(pd), cudaFree(td), cudaFree(gpd), cudaFree(gtd), cudaFree(ws), cudaFree(lossd), cudaFree(dl), cudaFree(badd);
    magna_graph_free(g);
}

/* ---- embedding: forward, backward bit for bit (the CPU's order of additions), a bad id flagged -------- */

static void embedding(int64_t V, int64_t D, int64_t N, int bad_id) {
    magna_graph *g = magna_graph_new(26);
    magna_node *table = magna_param(g, "table", 2, (int64_t[]){V, D}, magna_init_zeros());
    magna_node *ids = magna_input_unbatched(g, "ids", MAGNA_I32, 1, (int64_t[]){N});
    magna_node *y = magna_embedding(g, table, ids);
    magna_node *c = magna_input_unbatched(g, "c", MAGNA_F32, 2, (int64_t[]){N, D});
    magna_node *loss = magna_sum(g, magna_mul(g, y, c), MAGNA_ALL_AXES, false);
    magna_graph_keep(g, y);
    if (!run_cpu(g, loss, "embedding")) return magna_graph_free(g);
    float *tv = magna_node_data(table), *cv = magna_node_data(c);
    int32_t *id = magna_node_data_i32(ids);
    fill(tv, V * D, 1, 80), fill(cv, N * D, 1, 81);
    for (int64_t i = 0; i < N; i++) /* a few ids very often: long buckets */
        id[i] = (int32_t)(i % 3 == 0 ? magna_rand_u64(15, 82, (uint64_t)i) % 3 : magna_rand_u64(15, 83, (uint64_t)i) % (uint64_t)V);
    forward_backward(g, "embedding");
    if (bad_id) id[N - 1] = (int32_t)V;
    float *td = dev(tv, V * D), *cd = dev(cv, N * D), *yd = dev_zeros(N * D), *gd = dev_zeros(V * D);
    int32_t *idd = to_dev(id, N, sizeof *id);
    void *ws = NULL;
    CU(cudaMalloc(&ws, magna_embedding_workspace(N, V)));
    int bad = 0;
    CU(magna_cuda_embedding_forward(td, idd, yd, N, D, V, ws, NULL));
    CU(cudaMemcpy(&bad, ws, sizeof bad, cudaMemcpyDeviceToHost));
    if (bad_id) {
        CHECK(bad == 1, "embedding: id %lld of a table of %lld rows was not flagged", (long long)V, (long long)V);
    } else {
        CU(magna_cuda_embedding_backward(idd, cd, gd, N, D, V, ws, NULL));
        float *gh = host(gd, V * D);
        const double ey = dev_err(yd, magna_node_data(y), NULL, N * D);
        CHECK(bad == 0 && ey == 0 && memcmp(gh, magna_node_grad(table), (size_t)(V * D) * 4) == 0,
              "embedding V=%lld D=%lld N=%lld: flag %d forward %.3g, backward %.3g (must be the CPU's bits)",
              (long long)V, (long long)D, (long long)N, bad, ey, rel_err(gh, magna_node_grad(table), V * D));
        free(gh);
    }
    cudaFree(td), cudaFree(cd), cudaFree(yd), cudaFree(gd), cudaFree(idd), cudaFree(ws);
    magna_graph_free(g);
}

/* ---- dropout: the CPU's mask, exactly, forward and backward ----------------------------------------------- */

static void dropout(int64_t n, float p) {
    magna_graph *g = magna_graph_new(27);
    magna_node *x = magna_param(g, "x", 1, (int64_t[]){n}, magna_init_zeros());
    magna_node *y = magna_dropout(g, x, p);
    magna_node *c = magna_input_unbatched(g, "c", MAGNA_F32, 1, (int64_t[]){n});
    magna_node *loss = magna_sum(g, magna_mul(g, y, c), MAGNA_ALL_AXES, false);
    magna_graph_keep(g, y);
    if (!run_cpu(g, loss, "dropout")) return magna_graph_free(g);
    magna_graph_set_training(g, true);
    fill(magna_node_data(x), n, 1, 90), fill(magna_node_data(c), n, 1, 91);
    forward_backward(g, "dropout");
    const uint64_t seed = magna_em_dropout_seed(g->seed), stream = magna_em_dropout_stream(y->id, g->mask_step);
    float *xd = dev(magna_node_data(x), n), *cd = dev(magna_node_data(c), n), *yd = dev_zeros(n), *gd = dev_zeros(n);
    CU(magna_cuda_dropout(seed, stream, p, xd, yd, n, 0, NULL));
    CU(magna_cuda_dropout(seed, stream, p, cd, gd, n, 1, NULL));
    float *yh = host(yd, n), *gh = host(gd, n);
    CHECK(memcmp(yh, magna_node_data(y), (size_t)n * 4) == 0 && memcmp(gh, magna_node_grad(x), (size_t)n * 4) == 0,
          "dropout n=%lld p=%g: the device's mask is not the CPU's", (long long)n, p);
    free(yh), free(gh);
    cudaFree(xd), cudaFree(cd), cudaFree(yd), cudaFree(gd);
    magna_graph_free(g);
}

/* ---- bad data through a whole graph: the CUDA graph refuses it with the CPU graph's status and message --- */

/* BAD_TARGET_MADE: the targets come out of an op, so the host has no copy: the kernel flags them */
enum { BAD_ID, BAD_LABEL, BAD_TARGET, BAD_TARGET_MADE };

static magna_graph *bad_data_graph(int kind, bool cuda) {
    magna_graph *g = magna_graph_new(28);
    if (cuda) CHECK(magna_graph_set_device(g, MAGNA_DEVICE_CUDA) == MAGNA_OK, "set_device: %s", magna_graph_errmsg(g));
    magna_node *loss;
    if (kind == BAD_ID) {
        magna_node *table = magna_param(g, "table", 2, (int64_t[]){5, 3}, magna_init_zeros());
        magna_node *ids = magna_input_unbatched(g, "ids", MAGNA_I32, 1, (int64_t[]){40});
        loss = magna_sum(g, magna_embedding(g, table, ids), MAGNA_ALL_AXES, false);
        if (run_cpu(g, loss, "bad id"))
            for (int i = 0; i < 40; i++) magna_node_data_i32(ids)[i] = i == 23 || i == 31 ? 5 + i : i % 5;
    } else if (kind == BAD_LABEL) {
        magna_node *x = magna_param(g, "x", 2, (int64_t[]){40, 6}, magna_init_zeros());
        magna_node *y = magna_input_unbatched(g, "y", MAGNA_I32, 1, (int64_t[]){40});
        loss = magna_cross_entropy(g, x, y);
        if (run_cpu(g, loss, "bad label"))
            for (int i = 0; i < 40; i++) magna_node_data_i32(y)[i] = i == 17 ? -2 : i == 30 ? 6 : i % 2 ? -1 : i % 6;
    } else {
        magna_node *x = magna_param(g, "x", 1, (int64_t[]){40}, magna_init_zeros());
        magna_node *t = magna_input_unbatched(g, "t", MAGNA_F32, 1, (int64_t[]){40});
        loss = magna_bce_with_logits(g, x, kind == BAD_TARGET_MADE ? magna_scale(g, t, 1.0f) : t);
        if (run_cpu(g, loss, "bad target"))
            for (int i = 0; i < 40; i++) magna_node_data(t)[i] = i == 9 ? -0.5f : i == 33 ? NAN : 0.25f;
    }
    return g;
}

static void bad_data(int kind) {
    magna_graph *gc = bad_data_graph(kind, false), *gg = bad_data_graph(kind, true);
    const magna_status sc = magna_graph_forward(gc), sg = magna_graph_forward(gg);
    printf("bad data %d: cpu '%s', cuda '%s'\n", kind, magna_graph_errmsg(gc), magna_graph_errmsg(gg));
    CHECK(sc == MAGNA_ERR_RANGE && sg == sc && strcmp(magna_graph_errmsg(gc), magna_graph_errmsg(gg)) == 0,
          "bad data %d: cpu %d '%s', cuda %d '%s'", kind, sc, magna_graph_errmsg(gc), sg, magna_graph_errmsg(gg));
    magna_graph_free(gc), magna_graph_free(gg);
}

/* cross-entropy on a CUDA graph keeps each row's log-sum-exp, not the softmax, whether the graph was on CUDA
 * from the start or was given its device after build (compile sizes the ops again for the device) */
static void xent_saved_size(void) {
    for (int cuda_first = 0; cuda_first < 2; cuda_first++) {
        magna_graph *g = magna_graph_new(29);
        if (cuda_first) magna_graph_set_device(g, MAGNA_DEVICE_CUDA);
        magna_node *x = magna_param(g, "x", 2, (int64_t[]){64, 1000}, magna_init_zeros());
        magna_node *y = magna_input_unbatched(g, "y", MAGNA_I32, 1, (int64_t[]){64});
        magna_node *loss = magna_cross_entropy(g, x, y);
        if (!cuda_first) magna_graph_set_device(g, MAGNA_DEVICE_CUDA);
        CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "xent saved: compile: %s", magna_graph_errmsg(g));
        const size_t want = (size_t)(64 + 1) * sizeof(float);
        CHECK(loss->saved_bytes == want, "cross-entropy %s: saved %zu bytes, expected %zu",
              cuda_first ? "on CUDA from the start" : "given CUDA after build", loss->saved_bytes, want);
        for (int r = 0; r < 64; r++) magna_node_data_i32(y)[r] = r % 1000;
        CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "xent saved: run: %s",
              magna_graph_errmsg(g));
        magna_graph_free(g);
    }
}

int main(void) {
    char why[256];
    if (!magna_cuda_available(why, sizeof why)) {
        printf("test_cuda_elementwise: skipped: %s\n", why);
        return 77;
    }
    printf("test_cuda_elementwise: %s\n", why);
    magna_error err;
    CHECK(magna_runtime_init(&err) == MAGNA_OK, "runtime: %s", err.message);
    unaries();
    binaries();
    reductions();
    for (int lf = 0; lf < 2; lf++) {
        softmax(lf, 1, 1), softmax(lf, 7, 33), softmax(lf, 3, 1025), softmax(lf, 2, 9000), softmax(lf, 300, 5);
    }
    cross_entropy(1, 1, 0, 0), cross_entropy(9, 10, 0, 0), cross_entropy(9, 10, 1, 0), cross_entropy(5, 3000, 1, 0);
    cross_entropy(40, 7, 0, 0), cross_entropy(6, 10, 0, 1);
    pointwise_loss(0, 1, 0), pointwise_loss(0, 100003, 0), pointwise_loss(1, 1, 0), pointwise_loss(1, 100003, 0);
    pointwise_loss(1, 1001, 1);
    embedding(37, 5, 1000, 0), embedding(11, 300, 200, 0), embedding(1, 1, 1, 0), embedding(37, 5, 100, 1);
    dropout(1, 0.5f), dropout(10007, 0.25f);
    bad_data(BAD_ID), bad_data(BAD_LABEL), bad_data(BAD_TARGET), bad_data(BAD_TARGET_MADE);
    xent_saved_size();
    return check_finish("test_cuda_elementwise");
}
