/* test_cuda_math.c — the CUDA kernels' per-element math (src/cuda/elementwise_math.h), run on the CPU
 * against the graph's CPU ops on fresh random inputs: GELU, ReLU and sigmoid forward and backward, AdamW
 * and Adam over three steps, softmax + cross-entropy (ignored labels too) and layer norm, forward and
 * backward (the row reductions split into uneven pieces and merged in another order, as a warp and block
 * reduction does), and the LSTM, GRU and RNN cells (rnn_math.h) against one step of the recurrent ops.
 * The tolerances are float32 rounding (1e-5 relative to the largest value). Runs in every build: the
 * header needs no CUDA. */
#include "check.h"
#include "cuda/elementwise_math.h"
#include "graph/internal.h" /* the dropout mask's seed and step */
#include "cuda/rnn_math.h"
#include "magna.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t seed_base = 20261123;

static void fill(float *x, int64_t n, float scale, uint64_t stream) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * (2.0f * magna_rand_uniform(seed_base, stream, (uint64_t)i) - 1.0f);
}

/* max |a - b| / max(|b|, floor) over n */
static double rel_err(const float *a, const float *b, int64_t n, double floor) {
    double scale = floor, worst = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst / scale;
}

enum { ACT_RELU, ACT_SIGMOID, ACT_GELU };
static const char *ACT_NAMES[] = {"relu", "sigmoid", "gelu"};

/* y = act(x) through the graph, loss = sum(y * c) so dL/dy = c; the header's forward and backward on the
 * same x and c. x spans [-8, 8], where sigmoid saturates and GELU's tails are small. */
static void activation(int act, int64_t n) {
    magna_graph *g = magna_graph_new(1);
    magna_node *x = magna_param(g, "x", 1, (int64_t[]){n}, magna_init_zeros());
    magna_node *c = magna_input_unbatched(g, "c", MAGNA_F32, 1, (int64_t[]){n});
    magna_node *y = act == ACT_RELU ? magna_relu(g, x) : act == ACT_SIGMOID ? magna_sigmoid(g, x) : magna_gelu(g, x);
    magna_node *loss = magna_sum(g, magna_mul(g, y, c), 1u, false);
    magna_graph_keep(g, y);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s: compile: %s", ACT_NAMES[act], magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) return magna_graph_free(g);
    float *xv = magna_node_data(x), *cv = magna_node_data(c);
    fill(xv, n, 8.0f, 10 + (uint64_t)act);
    xv[0] = 0.0f; /* the kink of relu */
    fill(cv, n, 1.0f, 20 + (uint64_t)act);
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "%s: run", ACT_NAMES[act]);
    float *yh = malloc((size_t)n * 4), *dxh = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        const float v = xv[i];
        yh[i] = act == ACT_RELU ? magna_em_relu(v) : act == ACT_SIGMOID ? magna_em_sigmoid(v) : magna_em_gelu(v);
        dxh[i] = act == ACT_RELU      ? magna_em_relu_backward(yh[i], cv[i])
                 : act == ACT_SIGMOID ? magna_em_sigmoid_backward(yh[i], cv[i])
                                      : magna_em_gelu_backward(v, cv[i]);
    }
    const double ey = rel_err(yh, magna_node_data(y), n, 1e-6), edx = rel_err(dxh, magna_node_grad(x), n, 1e-6);
    printf("%-8s n=%lld forward %.2e backward %.2e\n", ACT_NAMES[act], (long long)n, ey, edx);
    CHECK(ey <= 1e-5 && edx <= 1e-5, "%s: forward %.3g backward %.3g", ACT_NAMES[act], ey, edx);
    free(yh), free(dxh);
    magna_graph_free(g);
}

/* Three optimizer steps on one flat buffer with a new gradient each step, against the header's update of
 * every element (weights, both moments). */
static void adam(magna_optimizer_kind kind, int64_t n) {
    magna_graph *g = magna_graph_new(2);
    magna_node *w = magna_param(g, "w", 1, (int64_t[]){n}, magna_init_zeros());
    magna_node *c = magna_input_unbatched(g, "c", MAGNA_F32, 1, (int64_t[]){n});
    magna_node *loss = magna_sum(g, magna_mul(g, w, c), 1u, false); /* dL/dw = c */
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "adam: compile: %s", magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) return magna_graph_free(g);
    const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    magna_error err;
    magna_optimizer *opt = magna_optimizer_new(
        g, (magna_optimizer_opts){.kind = kind, .lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd},
        &err);
    CHECK(opt != NULL, "adam: %s", err.message);
    if (!opt) return;
    float *wv = magna_node_data(w), *cv = magna_node_data(c);
    fill(wv, n, 1.0f, 30);
    float *wh = malloc((size_t)n * 4), *mh = calloc((size_t)n, 4), *vh = calloc((size_t)n, 4);
    memcpy(wh, wv, (size_t)n * 4);
    for (int t = 1; t <= 3; t++) {
        fill(cv, n, t == 2 ? 1e-3f : 1.0f, 40 + (uint64_t)t); /* a step of tiny gradients between big ones */
        magna_graph_zero_grad(g);
        magna_graph_forward(g);
        magna_graph_backward(g);
        magna_optimizer_step(opt);
        const magna_em_adam k = magna_em_adam_consts(lr, b1, b2, eps, wd, kind == MAGNA_ADAMW, t);
        for (int64_t i = 0; i < n; i++) magna_em_adam_update(&k, wh + i, mh + i, vh + i, cv[i]);
    }
    size_t cm = 0, cvn = 0; /* the flat buffer is padded: at least n */
    const float *m = magna_optimizer_state(opt, 0, &cm), *v = magna_optimizer_state(opt, 1, &cvn);
    const double ew = rel_err(wh, wv, n, 1e-6), em = rel_err(mh, m, n, 1e-6), ev = rel_err(vh, v, n, 1e-12);
    printf("%-8s n=%lld w %.2e m %.2e v %.2e\n", kind == MAGNA_ADAMW ? "adamw" : "adam", (long long)n, ew, em, ev);
    CHECK(cm >= (size_t)n && cvn >= (size_t)n && ew <= 1e-6 && em <= 1e-6 && ev <= 1e-6,
          "adam kind %d: state %zu %zu of %lld; w %.3g m %.3g v %.3g", kind, cm, cvn, (long long)n, ew, em, ev);
    free(wh), free(mh), free(vh);
    magna_optimizer_free(opt);
    magna_graph_free(g);
}

/* Pushes row[from, to) into a state, in pieces of uneven sizes merged right to left: the order a tree
 * reduction merges them in is not the row's order, and the answer must not depend on it. */
static magna_em_maxsum maxsum_split(const float *row, int64_t from, int64_t to, int depth) {
    if (depth == 0 || to - from < 3) {
        magna_em_maxsum s = magna_em_maxsum_empty();
        for (int64_t j = from; j < to; j++) s = magna_em_maxsum_push(s, row[j]);
        return s;
    }
    const int64_t mid = from + (to - from) / 3;
    return magna_em_maxsum_merge(maxsum_split(row, mid, to, depth - 1), maxsum_split(row, from, mid, depth - 1));
}
static magna_em_welford welford_split(const float *row, int64_t from, int64_t to, int depth) {
    if (depth == 0 || to - from < 3) {
        magna_em_welford s = magna_em_welford_empty();
        for (int64_t j = from; j < to; j++) s = magna_em_welford_push(s, row[j]);
        return s;
    }
    const int64_t mid = from + (to - from) / 3;
    return magna_em_welford_merge(welford_split(row, mid, to, depth - 1), welford_split(row, from, mid, depth - 1));
}

/* mean cross-entropy over rows with some ignored labels; logits up to +-30 so the max shift matters */
static void cross_entropy(int64_t rows, int64_t C) {
    magna_graph *g = magna_graph_new(3);
    magna_node *x = magna_param(g, "x", 2, (int64_t[]){rows, C}, magna_init_zeros());
    magna_node *y = magna_input_unbatched(g, "y", MAGNA_I32, 1, (int64_t[]){rows});
    magna_node *loss = magna_cross_entropy(g, x, y);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "xent: compile: %s", magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) return magna_graph_free(g);
    float *xv = magna_node_data(x);
    fill(xv, rows * C, 30.0f, 50);
    int32_t *label = magna_node_data_i32(y);
    int64_t counted = 0;
    for (int64_t r = 0; r < rows; r++) {
        label[r] = r % 5 == 3 ? MAGNA_IGNORE_LABEL : (int32_t)(magna_rand_u64(seed_base, 51, (uint64_t)r) % (uint64_t)C);
        counted += label[r] >= 0;
    }
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "xent: run");
    float *dx = malloc((size_t)(rows * C) * 4);
    double total = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xv + r * C;
        const magna_em_maxsum s = maxsum_split(xr, 0, C, 4);
        total += magna_em_xent_loss(s, xr, label[r]);
        for (int64_t j = 0; j < C; j++) dx[r * C + j] = magna_em_xent_grad(s, xr[j], j, label[r], 1.0f / (float)counted);
    }
    const float lh = (float)(total / (double)counted), lg = magna_node_data(loss)[0];
    const double el = fabs((double)lh - lg) / fmax(1e-6, fabs(lg)), edx = rel_err(dx, magna_node_grad(x), rows * C, 1e-6);
    printf("xent     rows=%lld C=%lld loss %.2e backward %.2e\n", (long long)rows, (long long)C, el, edx);
    CHECK(el <= 1e-5 && edx <= 1e-5, "xent %lldx%lld: loss %.3g backward %.3g", (long long)rows, (long long)C, el, edx);
    free(dx);
    magna_graph_free(g);
}

/* layer norm [rows, D] with gamma, beta; loss = sum(out * c); values offset by 5 so the mean matters */
static void layer_norm(int64_t rows, int64_t D) {
    const float eps = 1e-5f;
    magna_graph *g = magna_graph_new(4);
    magna_node *x = magna_param(g, "x", 2, (int64_t[]){rows, D}, magna_init_zeros());
    magna_node *gamma = magna_param(g, "gamma", 1, (int64_t[]){D}, magna_init_zeros());
    magna_node *beta = magna_param(g, "beta", 1, (int64_t[]){D}, magna_init_zeros());
    magna_node *c = magna_input_unbatched(g, "c", MAGNA_F32, 2, (int64_t[]){rows, D});
    magna_node *out = magna_layer_norm(g, x, gamma, beta, eps);
    magna_node *loss = magna_sum(g, magna_mul(g, out, c), 3u, false);
    magna_graph_keep(g, out);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "layer_norm: compile: %s", magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) return magna_graph_free(g);
    float *xv = magna_node_data(x), *gv = magna_node_data(gamma), *bv = magna_node_data(beta), *cv = magna_node_data(c);
    fill(xv, rows * D, 3.0f, 60);
    for (int64_t i = 0; i < rows * D; i++) xv[i] += 5.0f;
    fill(gv, D, 1.0f, 61), fill(bv, D, 1.0f, 62), fill(cv, rows * D, 1.0f, 63);
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "layer_norm: run");
    float *oh = malloc((size_t)(rows * D) * 4), *dxh = malloc((size_t)(rows * D) * 4);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = xv + r * D, *dout = cv + r * D;
        const magna_em_welford s = welford_split(xr, 0, D, 4);
        const float mean = s.mean, rstd = magna_em_layer_norm_rstd(s, eps);
        double dn = 0, dnn = 0; /* the backward's second reduction: sums of dnorm and dnorm * norm */
        for (int64_t j = 0; j < D; j++) {
            oh[r * D + j] = magna_em_layer_norm_out(xr[j], mean, rstd, gv[j], bv[j]);
            dn += dout[j] * gv[j];
            dnn += dout[j] * gv[j] * (xr[j] - mean) * rstd;
        }
        for (int64_t j = 0; j < D; j++)
            dxh[r * D + j] = magna_em_layer_norm_dx(xr[j], dout[j], gv[j], mean, rstd, (float)(dn / (double)D),
                                                    (float)(dnn / (double)D));
    }
    const double eo = rel_err(oh, magna_node_data(out), rows * D, 1e-6);
    const double edx = rel_err(dxh, magna_node_grad(x), rows * D, 1e-6);
    printf("layernorm rows=%lld D=%lld forward %.2e backward %.2e\n", (long long)rows, (long long)D, eo, edx);
    CHECK(eo <= 1e-5 && edx <= 1e-4, "layer_norm %lldx%lld: forward %.3g backward %.3g", (long long)rows, (long long)D,
          eo, edx);
    free(oh), free(dxh);
    magna_graph_free(g);
}

/* The merges' edge cases a reduction meets: empty pieces on either side, a single element, -inf. */
static void merges(void) {
    magna_em_maxsum e = magna_em_maxsum_empty(), one = magna_em_maxsum_push(e, 2.0f);
    magna_em_maxsum l = magna_em_maxsum_merge(e, one), r = magna_em_maxsum_merge(one, e);
    CHECK(l.max == 2.0f && l.sum == 1.0f && r.max == 2.0f && r.sum == 1.0f, "maxsum with empty: %g %g", l.sum, r.sum);
    CHECK(fabsf(magna_em_logsumexp(magna_em_maxsum_push(one, 2.0f)) - (2.0f + logf(2.0f))) < 1e-6f, "lse of twins");
    magna_em_maxsum big = magna_em_maxsum_push(magna_em_maxsum_push(e, 1000.0f), -1000.0f);
    CHECK(big.max == 1000.0f && big.sum == 1.0f, "no overflow: max %g sum %g", big.max, big.sum);
    magna_em_welford w = magna_em_welford_empty(), w1 = magna_em_welford_push(w, 3.0f);
    magna_em_welford wl = magna_em_welford_merge(w, w1), wr = magna_em_welford_merge(w1, w);
    CHECK(wl.n == 1 && wl.mean == 3.0f && wl.m2 == 0 && wr.n == 1 && wr.mean == 3.0f, "welford with empty");
    /* constant row: zero variance, rstd = 1 / sqrt(eps) */
    magna_em_welford cst = magna_em_welford_merge(magna_em_welford_push(w1, 3.0f), magna_em_welford_push(w1, 3.0f));
    CHECK(cst.n == 4 && cst.mean == 3.0f && cst.m2 == 0.0f, "constant row: m2 %g", cst.m2);
}

/* ---- the other unary and scalar ops: forward and backward against the graph's CPU ops ---------------- */

typedef magna_node *(*unary_builder)(magna_graph *, magna_node *, float);
static magna_node *b_scale(magna_graph *g, magna_node *x, float a) { return magna_scale(g, x, a); }
static magna_node *b_add_scalar(magna_graph *g, magna_node *x, float a) { return magna_add_scalar(g, x, a); }
static magna_node *b_pow_scalar(magna_graph *g, magna_node *x, float a) { return magna_pow_scalar(g, x, a); }
static magna_node *b_abs(magna_graph *g, magna_node *x, float a) { return (void)a, magna_abs(g, x); }
static magna_node *b_relu(magna_graph *g, magna_node *x, float a) { return (void)a, magna_relu(g, x); }
static magna_node *b_leaky(magna_graph *g, magna_node *x, float a) { return magna_leaky_relu(g, x, a); }
static magna_node *b_sigmoid(magna_graph *g, magna_node *x, float a) { return (void)a, magna_sigmoid(g, x); }
static magna_node *b_tanh(magna_graph *g, magna_node *x, float a) { return (void)a, magna_tanh(g, x); }
static magna_node *b_gelu(magna_graph *g, magna_node *x, float a) { return (void)a, magna_gelu(g, x); }
static magna_node *b_gelu_tanh(magna_graph *g, magna_node *x, float a) { return (void)a, magna_gelu_tanh(g, x); }
static magna_node *b_exp(magna_graph *g, magna_node *x, float a) { return (void)a, magna_exp(g, x); }
static magna_node *b_log(magna_graph *g, magna_node *x, float a) { return (void)a, magna_log(g, x); }
static magna_node *b_sqrt(magna_graph *g, magna_node *x, float a) { return (void)a, magna_sqrt(g, x); }

static const struct {
    const char *name;
    int em;
    unary_builder build;
    float a;
    int positive; /* the op's domain is x > 0 */
} UNARY[] = {
    {"scale", MAGNA_EM_SCALE, b_scale, -1.75f, 0},       {"add_scalar", MAGNA_EM_ADD_SCALAR, b_add_scalar, 0.5f, 0},
    {"pow_scalar", MAGNA_EM_POW_SCALAR, b_pow_scalar, 2.5f, 1}, {"abs", MAGNA_EM_ABS, b_abs, 0, 0},
    {"relu", MAGNA_EM_RELU, b_relu, 0, 0},               {"leaky_relu", MAGNA_EM_LEAKY_RELU, b_leaky, 0.01f, 0},
    {"sigmoid", MAGNA_EM_SIGMOID, b_sigmoid, 0, 0},      {"tanh", MAGNA_EM_TANH, b_tanh, 0, 0},
    {"gelu", MAGNA_EM_GELU, b_gelu, 0, 0},               {"gelu_tanh", MAGNA_EM_GELU_TANH, b_gelu_tanh, 0, 0},
    {"exp", MAGNA_EM_EXP, b_exp, 0, 0},                  {"log", MAGNA_EM_LOG, b_log, 0, 1},
    {"sqrt", MAGNA_EM_SQRT, b_sqrt, 0, 1},
};

/* y = op(x), loss = sum(y c): the header's forward and backward (from x, y, c) against the graph's */
static void unary_op(int k, int64_t n) {
    magna_graph *g = magna_graph_new(5);
    magna_node *x = magna_param(g, "x", 1, (int64_t[]){n}, magna_init_zeros());
    magna_node *c = magna_input_unbatched(g, "c", MAGNA_F32, 1, (int64_t[]){n});
    magna_node *y = UNARY[k].build(g, x, UNARY[k].a);
    magna_node *loss = magna_sum(g, magna_mul(g, y, c), 1u, false);
    magna_graph_keep(g, y);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s: compile: %s", UNARY[k].name, magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) return magna_graph_free(g);
    float *xv = magna_node_data(x), *cv = magna_node_data(c);
    fill(xv, n, 4.0f, 70 + (uint64_t)k);
    if (UNARY[k].positive)
        for (int64_t i = 0; i < n; i++) xv[i] = fabsf(xv[i]) + 0.05f;
    else
        xv[0] = 0.0f; /* the kinks of abs, relu, leaky relu */
    fill(cv, n, 1.0f, 90 + (uint64_t)k);
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "%s: run", UNARY[k].name);
    float *yh = malloc((size_t)n * 4), *dxh = malloc((size_t)n * 4);
    const float *yg = magna_node_data(y);
    for (int64_t i = 0; i < n; i++) {
        yh[i] = magna_em_unary(UNARY[k].em, xv[i], UNARY[k].a);
        dxh[i] = magna_em_unary_backward(UNARY[k].em, xv[i], yg[i], cv[i], UNARY[k].a);
    }
    const double ey = rel_err(yh, yg, n, 1e-6), edx = rel_err(dxh, magna_node_grad(x), n, 1e-6);
    printf("%-10s n=%lld forward %.2e backward %.2e\n", UNARY[k].name, (long long)n, ey, edx);
    CHECK(ey <= 1e-5 && edx <= 1e-5, "%s: forward %.3g backward %.3g", UNARY[k].name, ey, edx);
    free(yh), free(dxh);
    magna_graph_free(g);
}

/* ---- binary ops: forward and both partials, same shapes (the broadcasting is launch.h's, tested there) -- */
static void binary_op(int op, int64_t n) {
    static const char *NAMES[] = {"add", "sub", "mul", "div", "pow"};
    magna_graph *g = magna_graph_new(6);
    magna_node *a = magna_param(g, "a", 1, (int64_t[]){n}, magna_init_zeros());
    magna_node *b = magna_param(g, "b", 1, (int64_t[]){n}, magna_init_zeros());
    magna_node *c = magna_input_unbatched(g, "c", MAGNA_F32, 1, (int64_t[]){n});
    magna_node *y = op == 0 ? magna_add(g, a, b) : op == 1 ? magna_sub(g, a, b) : op == 2 ? magna_mul(g, a, b)
                  : op == 3 ? magna_div(g, a, b) : magna_pow(g, a, b);
    magna_node *loss = magna_sum(g, magna_mul(g, y, c), 1u, false);
    magna_graph_keep(g, y);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s: compile: %s", NAMES[op], magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) return magna_graph_free(g);
    float *av = magna_node_data(a), *bv = magna_node_data(b), *cv = magna_node_data(c);
    fill(av, n, 3.0f, 100 + (uint64_t)op), fill(bv, n, 3.0f, 110 + (uint64_t)op), fill(cv, n, 1.0f, 120);
    for (int64_t i = 0; i < n; i++) {
        if (op == MAGNA_EM_POW) av[i] = fabsf(av[i]) + 0.1f; /* pow's log(a) */
        if (op == MAGNA_EM_DIV && fabsf(bv[i]) < 0.1f) bv[i] = 0.5f;
    }
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "%s: run", NAMES[op]);
    float *yh = malloc((size_t)n * 4), *dah = malloc((size_t)n * 4), *dbh = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        yh[i] = magna_em_binary(op, av[i], bv[i]);
        dah[i] = cv[i] * magna_em_binary_partial(op, 0, av[i], bv[i], yh[i]);
        dbh[i] = cv[i] * magna_em_binary_partial(op, 1, av[i], bv[i], yh[i]);
    }
    const double ey = rel_err(yh, magna_node_data(y), n, 1e-6), eda = rel_err(dah, magna_node_grad(a), n, 1e-6),
                 edb = rel_err(dbh, magna_node_grad(b), n, 1e-6);
    printf("%-10s n=%lld forward %.2e backward %.2e %.2e\n", NAMES[op], (long long)n, ey, eda, edb);
    CHECK(ey <= 1e-5 && eda <= 1e-5 && edb <= 1e-5, "%s: forward %.3g backward %.3g %.3g", NAMES[op], ey, eda, edb);
    free(yh), free(dah), free(dbh);
    magna_graph_free(g);
}

/* ---- max with its argument: the header's state, pushed in pieces merged in another order, against the
 * CPU op's value and gradient (which lands on the argmax), with ties and NaNs in the rows ------------------ */
static magna_em_argmax argmax_split(const float *row, int64_t from, int64_t to, int depth) {
    if (depth == 0 || to - from < 3) {
        magna_em_argmax s = magna_em_argmax_empty();
        for (int64_t j = from; j < to; j++) s = magna_em_argmax_push(s, row[j], (int)j);
        return s;
    }
    const int64_t mid = from + (to - from) / 3;
    return magna_em_argmax_merge(argmax_split(row, mid, to, depth - 1), argmax_split(row, from, mid, depth - 1));
}

static void argmax(int64_t rows, int64_t cols) {
    magna_graph *g = magna_graph_new(7);
    magna_node *x = magna_param(g, "x", 2, (int64_t[]){rows, cols}, magna_init_zeros());
    magna_node *m = magna_max(g, x, 2u, false);
    magna_node *loss = magna_sum(g, m, 1u, false);
    magna_graph_keep(g, m);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "argmax: compile: %s", magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) return magna_graph_free(g);
    float *xv = magna_node_data(x);
    for (int64_t i = 0; i < rows * cols; i++) /* few distinct values: many ties */
        xv[i] = (float)(magna_rand_u64(seed_base, 130, (uint64_t)i) % 4);
    for (int64_t r = 0; r < rows; r++) {
        if (r % 3 == 1) xv[r * cols + (r / 3) % cols] = NAN; /* a NaN inside the row: skipped */
        if (r % 7 == 5) xv[r * cols] = NAN;                  /* a NaN first: the answer */
    }
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "argmax: run");
    const float *mv = magna_node_data(m), *dx = magna_node_grad(x);
    int64_t wrong = 0;
    for (int64_t r = 0; r < rows; r++) {
        const magna_em_argmax s = magna_em_argmax_final(argmax_split(xv + r * cols, 0, cols, 4), xv[r * cols]);
        const bool same_value = (isnan(s.val) && isnan(mv[r])) || s.val == mv[r];
        wrong += !same_value || dx[r * cols + s.idx] != 1.0f;
    }
    printf("argmax    rows=%lld cols=%lld: %lld rows differ\n", (long long)rows, (long long)cols, (long long)wrong);
    CHECK(wrong == 0, "argmax %lldx%lld: %lld rows differ from the CPU", (long long)rows, (long long)cols, (long long)wrong);
    magna_graph_free(g);
}

/* ---- dropout's mask and binary cross-entropy --------------------------------------------------------- */
static void dropout_mask(int64_t n, float p) {
    magna_graph *g = magna_graph_new(8);
    magna_node *x = magna_param(g, "x", 1, (int64_t[]){n}, magna_init_zeros());
    magna_node *y = magna_dropout(g, x, p);
    magna_node *loss = magna_sum(g, y, 1u, false);
    magna_graph_keep(g, y);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "dropout: compile: %s", magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) return magna_graph_free(g);
    magna_graph_set_training(g, true);
    float *xv = magna_node_data(x);
    for (int64_t i = 0; i < n; i++) xv[i] = 1.0f;
    int64_t wrong = 0, kept = 0;
    for (int step = 0; step < 2; step++) { /* a new mask each step */
        CHECK(magna_graph_forward(g) == MAGNA_OK, "dropout: run");
        const float *yv = magna_node_data(y);
        const uint64_t seed = magna_em_dropout_seed(g->seed), stream = magna_em_dropout_stream(y->id, g->mask_step);
        for (int64_t i = 0; i < n; i++) {
            const int k = magna_em_dropout_kept(seed, stream, i, p);
            kept += k;
            wrong += (yv[i] != 0.0f) != k;
        }
    }
    printf("dropout   n=%lld p=%.2f: kept %.3f, %lld differ\n", (long long)n, p, (double)kept / (2.0 * n), (long long)wrong);
    CHECK(wrong == 0 && (n < 1000 || fabs((double)kept / (2.0 * n) - (1.0 - p)) < 0.05), "dropout: %lld differ, kept %lld", (long long)wrong,
          (long long)kept);
    magna_graph_free(g);
}

static void bce(int64_t n) {
    magna_graph *g = magna_graph_new(9);
    magna_node *x = magna_param(g, "x", 1, (int64_t[]){n}, magna_init_zeros());
    magna_node *t = magna_input_unbatched(g, "t", MAGNA_F32, 1, (int64_t[]){n});
    magna_node *loss = magna_bce_with_logits(g, x, t);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "bce: compile: %s", magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) return magna_graph_free(g);
    float *xv = magna_node_data(x), *tv = magna_node_data(t);
    fill(xv, n, 20.0f, 140);
    for (int64_t i = 0; i < n; i++) tv[i] = magna_rand_uniform(seed_base, 141, (uint64_t)i);
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "bce: run");
    double s = 0;
    float *dxh = malloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) {
        s += magna_em_bce(xv[i], tv[i]);
        dxh[i] = (magna_em_sigmoid(xv[i]) - tv[i]) / (float)n;
    }
    const float lg = magna_node_data(loss)[0];
    const double el = fabs(s / (double)n - lg) / fmax(1e-6, fabs(lg)), edx = rel_err(dxh, magna_node_grad(x), n, 1e-6);
    printf("bce       n=%lld loss %.2e backward %.2e\n", (long long)n, el, edx);
    CHECK(el <= 1e-5 && edx <= 1e-5, "bce: loss %.3g backward %.3g", el, edx);
    free(dxh);
    magna_graph_free(g);
}

/* One step of an LSTM, GRU or tanh RNN (B = 1, T = 1, with h0, c0 and both biases) through the graph, and
 * rnn_math.h's cell on the same pre-activations: h (and c) must agree, and, from a random output gradient,
 * the gate gradients (which are the bias gradients at B = T = 1), dc0 and dh0. */
enum { CELL_T_LSTM, CELL_T_GRU, CELL_T_RNN };
static void recurrent_cell(int kind, int64_t I, int64_t H) {
    static const char *names[] = {"lstm", "gru", "rnn_tanh"};
    const int64_t gates = kind == CELL_T_LSTM ? 4 : kind == CELL_T_GRU ? 3 : 1, G = gates * H;
    magna_graph *g = magna_graph_new(1);
    magna_node *x = magna_param(g, "x", 3, (int64_t[]){1, 1, I}, magna_init_zeros());
    magna_node *wi = magna_param(g, "w_ih", 2, (int64_t[]){I, G}, magna_init_zeros());
    magna_node *wh = magna_param(g, "w_hh", 2, (int64_t[]){H, G}, magna_init_zeros());
    magna_node *bi = magna_param(g, "b_ih", 1, (int64_t[]){G}, magna_init_zeros());
    magna_node *bh = magna_param(g, "b_hh", 1, (int64_t[]){G}, magna_init_zeros());
    magna_node *h0 = magna_param(g, "h0", 2, (int64_t[]){1, H}, magna_init_zeros());
    magna_node *c0 = kind == CELL_T_LSTM ? magna_param(g, "c0", 2, (int64_t[]){1, H}, magna_init_zeros()) : NULL;
    magna_node *out = kind == CELL_T_LSTM  ? magna_lstm(g, x, wi, wh, bi, bh, h0, c0)
                      : kind == CELL_T_GRU ? magna_gru(g, x, wi, wh, bi, bh, h0)
                                           : magna_rnn_tanh(g, x, wi, wh, bi, bh, h0);
    CHECK(magna_graph_compile(g, out) == MAGNA_OK, "%s: %s", names[kind], magna_graph_errmsg(g));
    magna_node *params[] = {x, wi, wh, bi, bh, h0, c0};
    for (int i = 0; i < 7; i++)
        if (params[i]) fill(magna_node_data(params[i]), magna_node_numel(params[i]), 1.0f, 40 + (uint64_t)i);
    const int64_t n_out = magna_node_numel(out);
    float *dout = malloc((size_t)n_out * sizeof(float)), *pre = calloc((size_t)(2 * G), sizeof(float));
    float *hp = pre + G, *ref = malloc((size_t)n_out * sizeof(float)), *dg = calloc((size_t)(2 * G), sizeof(float));
    float *dgh = dg + G, *dh0 = calloc((size_t)(2 * H), sizeof(float)), *dc0 = dh0 + H;
    fill(dout, n_out, 1.0f, 50);
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward_seeded(g, dout) == MAGNA_OK, "%s: run: %s",
          names[kind], magna_graph_errmsg(g));
    const float *xv = magna_node_data(x), *wiv = magna_node_data(wi), *whv = magna_node_data(wh);
    const float *biv = magna_node_data(bi), *bhv = magna_node_data(bh), *h0v = magna_node_data(h0);
    /* pre = x W_ih + b_ih + b_hh (all but the GRU's n part); hp = h0 W_hh, added here but for the GRU */
    for (int64_t j = 0; j < G; j++) {
        double s = biv[j] + (kind != CELL_T_GRU || j < 2 * H ? bhv[j] : 0.0f), t = 0.0;
        for (int64_t i = 0; i < I; i++) s += (double)xv[i] * wiv[i * G + j];
        for (int64_t k = 0; k < H; k++) t += (double)h0v[k] * whv[k * G + j];
        pre[j] = (float)(kind == CELL_T_GRU ? s : s + t), hp[j] = (float)t;
    }
    for (int64_t j = 0; j < H; j++) {
        if (kind == CELL_T_LSTM) {
            float *gi = pre + j, *gf = gi + H, *gg = gf + H, *go = gg + H, c, tc, h;
            magna_em_lstm_forward(gi, gf, gg, go, magna_node_data(c0)[j], &c, &tc, &h);
            ref[j] = h, ref[H + j] = c;
            float dc = 0.0f;
            magna_em_lstm_backward(*gi, *gf, *gg, *go, tc, magna_node_data(c0)[j], dout[j], dout[H + j], 0.0f, &dc,
                                   dg + j, dg + H + j, dg + 2 * H + j, dg + 3 * H + j);
            dc0[j] = dc;
        } else if (kind == CELL_T_GRU) {
            float *r = pre + j, *z = r + H, *nn = z + H, hn, h;
            magna_em_gru_forward(r, z, nn, hp[j], hp[H + j], hp[2 * H + j], bhv[2 * H + j], h0v[j], &hn, &h);
            ref[j] = h;
            float dh = 0.0f;
            magna_em_gru_backward(*r, *z, *nn, hn, h0v[j], dout[j], &dh, dg + j, dg + H + j, dg + 2 * H + j,
                                  dgh + 2 * H + j);
            dgh[j] = dg[j], dgh[H + j] = dg[H + j], dh0[j] = dh;
        } else {
            ref[j] = magna_em_rnn_forward(pre[j]);
            dg[j] = magna_em_rnn_backward(ref[j], dout[j], 0.0f);
        }
    }
    if (kind != CELL_T_GRU) memcpy(dgh, dg, (size_t)G * sizeof(float));
    for (int64_t k = 0; k < H; k++) /* dh0 += dG_h W_hh^T */
        for (int64_t j = 0; j < G; j++) dh0[k] += dgh[j] * whv[k * G + j];
    const double e_out = rel_err(magna_node_data(out), ref, n_out, 1e-3);
    const double e_bi = rel_err(magna_node_grad(bi), dg, G, 1e-3), e_bh = rel_err(magna_node_grad(bh), dgh, G, 1e-3);
    const double e_h0 = rel_err(magna_node_grad(h0), dh0, H, 1e-3);
    const double e_c0 = c0 ? rel_err(magna_node_grad(c0), dc0, H, 1e-3) : 0.0;
    CHECK(e_out <= 1e-5 && e_bi <= 1e-5 && e_bh <= 1e-5 && e_h0 <= 1e-5 && e_c0 <= 1e-5,
          "%s I=%lld H=%lld: relative error out %.2g, dG %.2g (x side) %.2g (h side), dh0 %.2g, dc0 %.2g", names[kind],
          (long long)I, (long long)H, e_out, e_bi, e_bh, e_h0, e_c0);
    free(dout), free(pre), free(ref), free(dg), free(dh0);
    magna_graph_free(g);
}

int main(int argc, char **argv) {
    if (argc > 1) seed_base = strtoull(argv[1], NULL, 10); /* another draw of the inputs */
    printf("seed %llu\n", (unsigned long long)seed_base);
    magna_error err;
    CHECK(magna_runtime_init(&err) == MAGNA_OK, "runtime: %s", err.message);
    static const int64_t sizes[] = {1, 31, 1000, 4097};
    for (int act = 0; act < 3; act++)
        for (int s = 0; s < 4; s++) activation(act, sizes[s]);
    setenv("MAGNA_GELU_KERNEL", "portable", 1); /* the GELU's other path (above: its AVX-512 kernels, where they run) */
    for (int s = 0; s < 4; s++) activation(ACT_GELU, sizes[s]);
    unsetenv("MAGNA_GELU_KERNEL");
    adam(MAGNA_ADAMW, 1), adam(MAGNA_ADAMW, 5003), adam(MAGNA_ADAM, 5003);
    cross_entropy(1, 1), cross_entropy(7, 10), cross_entropy(33, 1000), cross_entropy(4, 50304);
    layer_norm(1, 1), layer_norm(5, 7), layer_norm(9, 768), layer_norm(2, 4097);
    merges();
    for (int k = 0; k < (int)(sizeof UNARY / sizeof UNARY[0]); k++) unary_op(k, 1), unary_op(k, 4097);
    for (int op = 0; op < 5; op++) binary_op(op, 1), binary_op(op, 1000);
    argmax(1, 1), argmax(40, 7), argmax(9, 1000);
    dropout_mask(10007, 0.3f), dropout_mask(1, 0.5f);
    bce(1), bce(5003);
    for (int kind = 0; kind < 3; kind++) recurrent_cell(kind, 3, 5), recurrent_cell(kind, 1, 33);
    return check_finish("test_cuda_math");
}
