/* cases_core.c — gradient-check cases for matmul, elementwise, reductions, shape ops, dropout, losses.
 * Shapes are drawn from the seed, with size-1 dimensions included on purpose (broadcasting edges). */
#include "gradcheck.h"

#define R(k, lo, hi) ((int64_t)gc_randint(seed, (k), (lo), (hi)))
#define SHAPE(...) ((int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define P(name, lo, hi, ...) gc_param(g, name, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), lo, hi)

/* ---- matmul ---- */
static magna_node *mm_plain(magna_graph *g, uint64_t seed) {
    int64_t m = R(1, 1, 5), k = R(2, 1, 6), n = R(3, 1, 5);
    return magna_matmul(g, P("a", -1, 1, m, k), P("b", -1, 1, k, n), false, false);
}
static magna_node *mm_trans(magna_graph *g, uint64_t seed) {
    int64_t m = R(1, 1, 5), k = R(2, 1, 6), n = R(3, 1, 5);
    bool ta = R(4, 0, 1), tb = R(5, 0, 1);
    magna_node *a = ta ? P("a", -1, 1, k, m) : P("a", -1, 1, m, k);
    magna_node *b = tb ? P("b", -1, 1, n, k) : P("b", -1, 1, k, n);
    return magna_matmul(g, a, b, ta, tb);
}
static magna_node *mm_batched(magna_graph *g, uint64_t seed) {
    int64_t B = R(1, 1, 3), H = R(6, 1, 2), m = R(2, 1, 4), k = R(3, 1, 5), n = R(4, 1, 4);
    bool ta = R(5, 0, 1), tb = R(7, 0, 1);
    magna_node *a = ta ? P("a", -1, 1, B, H, k, m) : P("a", -1, 1, B, H, m, k);
    magna_node *b = tb ? P("b", -1, 1, B, H, n, k) : P("b", -1, 1, B, H, k, n);
    return magna_matmul(g, a, b, ta, tb);
}
static magna_node *mm_shared_weight(magna_graph *g, uint64_t seed) { /* [B, T, K] @ [K, N] */
    int64_t B = R(1, 1, 3), T = R(2, 1, 4), k = R(3, 1, 5), n = R(4, 1, 4);
    return magna_matmul(g, P("x", -1, 1, B, T, k), P("w", -1, 1, k, n), false, false);
}
static magna_node *mm_shared_left(magna_graph *g, uint64_t seed) { /* [M, K] @ [B, K, N], and a^T */
    int64_t B = R(1, 2, 3), m = R(2, 1, 4), k = R(3, 1, 5), n = R(4, 1, 4);
    bool tb = R(5, 0, 1);
    magna_node *b = tb ? P("b", -1, 1, B, n, k) : P("b", -1, 1, B, k, n);
    return magna_matmul(g, P("a", -1, 1, k, m), b, true, tb);
}

/* ---- broadcasting binary ops: a random pair of shapes that broadcast, with 1s on either side ---- */
static void broadcast_pair(uint64_t seed, int *na, int64_t *sa, int *nb, int64_t *sb) {
    int nd = (int)R(10, 1, 4);
    int64_t full[4];
    for (int d = 0; d < nd; d++) full[d] = R(11 + d, 1, 4);
    *na = nd, *nb = (int)R(20, 1, nd);
    for (int d = 0; d < nd; d++) sa[d] = R(30 + d, 0, 2) == 0 ? 1 : full[d];
    for (int d = 0; d < *nb; d++) sb[d] = R(40 + d, 0, 2) == 0 ? 1 : full[nd - *nb + d];
    if (R(50, 0, 1)) { /* sometimes swap which side is smaller */
        int64_t t[4];
        int nt = *na;
        for (int d = 0; d < nt; d++) t[d] = sa[d];
        *na = *nb;
        for (int d = 0; d < *nb; d++) sa[d] = sb[d];
        *nb = nt;
        for (int d = 0; d < nt; d++) sb[d] = t[d];
    }
}
#define BINARY_CASE(fn, op, alo, ahi, blo, bhi)                                                                      \
    static magna_node *fn(magna_graph *g, uint64_t seed) {                                                           \
        int na, nb;                                                                                                  \
        int64_t sa[4], sb[4];                                                                                        \
        broadcast_pair(seed, &na, sa, &nb, sb);                                                                      \
        return op(g, gc_param(g, "a", na, sa, alo, ahi), gc_param(g, "b", nb, sb, blo, bhi));                       \
    }
BINARY_CASE(bin_add, magna_add, -1, 1, -1, 1)
BINARY_CASE(bin_sub, magna_sub, -1, 1, -1, 1)
BINARY_CASE(bin_mul, magna_mul, -1, 1, -1, 1)
BINARY_CASE(bin_div, magna_div, -1, 1, 0.5f, 2)
BINARY_CASE(bin_pow, magna_pow, 0.5f, 2, -1.5f, 1.5f)
static magna_node *bin_bias(magna_graph *g, uint64_t seed) { /* the dense layer's bias: [N, D] + [D] */
    int64_t n = R(1, 1, 6), d = R(2, 1, 6);
    return magna_add(g, P("x", -1, 1, n, d), P("b", -1, 1, d));
}
static magna_node *bin_scalar(magna_graph *g, uint64_t seed) { /* [..] * [1] */
    int64_t n = R(1, 1, 4), d = R(2, 1, 4);
    return magna_mul(g, P("x", -1, 1, n, d), P("s", -1, 1, 1));
}

/* ---- unary and scalar ops ---- */
static magna_node *any_param(magna_graph *g, uint64_t seed, float lo, float hi) {
    int nd = (int)R(60, 1, 3);
    int64_t s[3] = {R(61, 1, 5), R(62, 1, 4), R(63, 1, 3)};
    return gc_param(g, "x", nd, s, lo, hi);
}
#define UNARY_CASE(fn, expr, lo, hi)                                                                                 \
    static magna_node *fn(magna_graph *g, uint64_t seed) {                                                           \
        magna_node *x = any_param(g, seed, lo, hi);                                                                  \
        return expr;                                                                                                 \
    }
UNARY_CASE(un_scale, magna_scale(g, x, -1.7f), -1, 1)
UNARY_CASE(un_add_scalar, magna_add_scalar(g, x, 0.3f), -1, 1)
UNARY_CASE(un_pow_scalar, magna_pow_scalar(g, x, 2.5f), 0.5f, 2)
UNARY_CASE(un_sigmoid, magna_sigmoid(g, x), -3, 3)
UNARY_CASE(un_tanh, magna_tanh(g, x), -2, 2)
UNARY_CASE(un_gelu, magna_gelu(g, x), -3, 3)
UNARY_CASE(un_gelu_tanh, magna_gelu_tanh(g, x), -3, 3)
UNARY_CASE(un_exp, magna_exp(g, x), -2, 2)
UNARY_CASE(un_log, magna_log(g, x), 0.5f, 3)
UNARY_CASE(un_sqrt, magna_sqrt(g, x), 0.5f, 3)
UNARY_CASE(un_softmax, magna_softmax(g, x), -2, 2)
UNARY_CASE(un_log_softmax, magna_log_softmax(g, x), -2, 2)
/* a dense layer's bias add and GELU: on CUDA one fused pair, forward and backward (src/cuda/fuse.c); the tanh
 * form with 300-700 rows, so the bias sums take several slices of rows there */
static magna_node *bias_gelu_in(magna_graph *g, uint64_t seed, bool tall) {
    const int64_t rows = tall ? R(64, 300, 700) : R(64, 1, 40), n = R(65, 1, 37);
    return magna_add(g, gc_param(g, "x", 2, (int64_t[]){rows, n}, -2, 2), gc_param(g, "b", 1, (int64_t[]){n}, -1, 1));
}
static magna_node *bias_gelu(magna_graph *g, uint64_t seed) { return magna_gelu(g, bias_gelu_in(g, seed, false)); }
static magna_node *bias_gelu_tanh(magna_graph *g, uint64_t seed) {
    return magna_gelu_tanh(g, bias_gelu_in(g, seed, true));
}
/* relu and leaky relu have a kink at 0: keep every input at least 0.1 away from it */
static void away_from_zero(magna_graph *g, uint64_t seed) { gc_param_away_from_zero(magna_graph_find(g, "x"), 0.1f); }
UNARY_CASE(un_relu, magna_relu(g, x), -1, 1)
UNARY_CASE(un_abs, magna_abs(g, x), -1, 1)
UNARY_CASE(un_leaky_relu, magna_leaky_relu(g, x, 0.1f), -1, 1)

/* ---- reductions over random axis sets ---- */
static magna_node *reduce_input(magna_graph *g, uint64_t seed, unsigned *mask, bool *keep) {
    int nd = (int)R(70, 1, 4);
    int64_t s[4] = {R(71, 1, 4), R(72, 1, 3), R(73, 1, 4), R(74, 1, 3)};
    *mask = (unsigned)R(75, 1, (1 << nd) - 1);
    *keep = R(76, 0, 1);
    return gc_param(g, "x", nd, s, -1, 1);
}
#define REDUCE_CASE(fn, op)                                                                                          \
    static magna_node *fn(magna_graph *g, uint64_t seed) {                                                           \
        unsigned mask;                                                                                               \
        bool keep;                                                                                                   \
        magna_node *x = reduce_input(g, seed, &mask, &keep);                                                         \
        return op(g, x, mask, keep);                                                                                 \
    }
REDUCE_CASE(red_sum, magna_sum)
REDUCE_CASE(red_mean, magna_mean)
REDUCE_CASE(red_max, magna_max)
static magna_node *red_sum_all(magna_graph *g, uint64_t seed) {
    return magna_sum(g, P("x", -1, 1, R(1, 1, 4), R(2, 1, 4)), MAGNA_ALL_AXES, false);
}
/* axes 0 and 2 of a 3-D or 4-D input: reduced dims that are not one block take the strided path */
static magna_node *red_strided(magna_graph *g, uint64_t seed) {
    magna_node *x = P("x", -1, 1, R(1, 1, 3), R(2, 1, 4), R(3, 2, 3), R(4, 1, 3));
    return R(5, 0, 1) ? magna_sum(g, x, 0x5, false) : magna_max(g, x, 0xA, true);
}
static void distinct_x(magna_graph *g, uint64_t seed) { gc_param_distinct(magna_graph_find(g, "x"), seed); }

/* ---- shape ops (each followed by a product with a param so values matter) ---- */
static magna_node *sh_reshape(magna_graph *g, uint64_t seed) {
    int64_t a = R(1, 1, 4), b = R(2, 1, 3), c = R(3, 1, 4);
    magna_node *x = P("x", -1, 1, a, b, c);
    return magna_mul(g, magna_reshape(g, x, 2, SHAPE(a * b, -1)), P("w", -1, 1, a * b, c));
}
static magna_node *sh_flatten(magna_graph *g, uint64_t seed) {
    int64_t a = R(1, 1, 3), b = R(2, 1, 3), c = R(3, 1, 3);
    return magna_flatten(g, magna_tanh(g, P("x", -1, 1, a, b, c)));
}
static magna_node *sh_permute(magna_graph *g, uint64_t seed) {
    int64_t s[4] = {R(1, 1, 3), R(2, 1, 4), R(3, 1, 3), R(4, 1, 2)};
    int perm[4] = {0, 1, 2, 3};
    for (int i = 3; i > 0; i--) { /* a random permutation */
        int j = (int)R(10 + i, 0, i), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    return magna_permute(g, gc_param(g, "x", 4, s, -1, 1), perm);
}
static magna_node *sh_transpose(magna_graph *g, uint64_t seed) {
    return magna_transpose(g, P("x", -1, 1, R(1, 1, 3), R(2, 1, 4), R(3, 1, 3)), -1, 0);
}
static magna_node *sh_slice(magna_graph *g, uint64_t seed) {
    int64_t s[3] = {R(1, 1, 4), R(2, 2, 6), R(3, 1, 3)};
    int axis = (int)R(4, 0, 2);
    int64_t size = s[axis], start = R(5, 0, (int)size - 1), step = R(6, 1, 2);
    return magna_slice(g, gc_param(g, "x", 3, s, -1, 1), axis, start, size, step);
}
static magna_node *sh_slice_negative(magna_graph *g, uint64_t seed) {
    return magna_slice(g, P("x", -1, 1, R(1, 1, 3), 5), -1, -4, -1, 1);
}
static magna_node *sh_concat(magna_graph *g, uint64_t seed) {
    int axis = (int)R(1, 0, 2);
    int64_t s[3] = {R(2, 1, 3), R(3, 1, 3), R(4, 1, 3)};
    magna_node *xs[3];
    const char *names[3] = {"a", "b", "c"};
    for (int k = 0; k < 3; k++) {
        s[axis] = R(10 + k, 1, 3);
        xs[k] = gc_param(g, names[k], 3, s, -1, 1);
    }
    return magna_concat(g, 3, xs, axis);
}

/* ---- dropout: the mask is pinned by the harness (same rng step for every evaluation) ---- */
static magna_node *dropout_case(magna_graph *g, uint64_t seed) {
    return magna_dropout(g, P("x", -1, 1, R(1, 2, 6), R(2, 2, 6)), 0.4f);
}

/* ---- losses ---- */
static magna_node *loss_mse(magna_graph *g, uint64_t seed) {
    int64_t n = R(1, 1, 5), d = R(2, 1, 3);
    return magna_mse(g, P("p", -1, 1, n, d), P("t", -1, 1, n, d));
}
static magna_node *loss_ce(magna_graph *g, uint64_t seed) {
    int64_t n = R(1, 1, 6), c = R(2, 2, 5);
    magna_node *y = magna_input(g, "labels", MAGNA_I32, 1, SHAPE(n));
    return magna_cross_entropy(g, P("x", -2, 2, n, c), y);
}
static magna_node *loss_ce_3d(magna_graph *g, uint64_t seed) { /* [B, T, V] logits, [B, T] labels */
    int64_t b = R(1, 1, 3), t = R(2, 1, 3), c = R(3, 2, 5);
    magna_node *y = magna_input(g, "labels", MAGNA_I32, 2, SHAPE(b, t));
    return magna_cross_entropy(g, P("x", -2, 2, b, t, c), y);
}
static void fill_labels(magna_graph *g, uint64_t seed) {
    magna_node *x = magna_graph_find(g, "x");
    const int64_t *s = magna_node_shape(x);
    gc_fill_input(magna_graph_find(g, "labels"), seed, 0, (float)(s[magna_node_ndim(x) - 1] - 1));
}
/* Labels from -1 (MAGNA_IGNORE_LABEL, padding) up: ignored rows get no gradient and leave the mean. */
static void fill_labels_some_ignored(magna_graph *g, uint64_t seed) {
    magna_node *x = magna_graph_find(g, "x"), *y = magna_graph_find(g, "labels");
    const int64_t *s = magna_node_shape(x);
    gc_fill_input(y, seed, -1, (float)(s[magna_node_ndim(x) - 1] - 1));
    magna_node_data_i32(y)[0] = 0; /* at least one counted row */
}
static magna_node *loss_ce_weighted(magna_graph *g, uint64_t seed) {
    int64_t n = R(1, 1, 6), c = R(2, 2, 5);
    magna_node *y = magna_input(g, "labels", MAGNA_I32, 1, SHAPE(n));
    magna_node *w = magna_input_unbatched(g, "weights", MAGNA_F32, 1, SHAPE(c)); /* filled U(-1, 1): any sign works */
    return magna_cross_entropy_weighted(g, P("x", -2, 2, n, c), y, w);
}
static magna_node *loss_bce(magna_graph *g, uint64_t seed) {
    int64_t n = R(1, 1, 5), d = R(2, 1, 3);
    return magna_bce_with_logits(g, P("x", -3, 3, n, d), magna_input(g, "t", MAGNA_F32, 2, SHAPE(n, d)));
}
static void fill_targets(magna_graph *g, uint64_t seed) { gc_fill_input(magna_graph_find(g, "t"), seed, 0, 1); }

/* ---- a small composite: two-layer MLP with bias, relu and cross-entropy, as training builds it ---- */
static magna_node *mlp(magna_graph *g, uint64_t seed) {
    int64_t n = R(1, 2, 4), d = R(2, 2, 5), h = R(3, 2, 6), c = R(4, 2, 4);
    magna_node *x = magna_input(g, "in", MAGNA_F32, 2, SHAPE(n, d));
    magna_node *hid = magna_tanh(g, magna_add(g, magna_matmul(g, x, P("w1", -1, 1, d, h), false, false),
                                               P("b1", -0.1f, 0.1f, h)));
    magna_node *logits = magna_add(g, magna_matmul(g, hid, P("x", -1, 1, h, c), false, false), P("b2", -1, 1, c));
    return magna_cross_entropy(g, logits, magna_input(g, "labels", MAGNA_I32, 1, SHAPE(n)));
}

const gc_case gc_cases_core[] = {
    {"matmul", mm_plain, NULL, 0, 0, 0},
    {"matmul_transposed", mm_trans, NULL, 0, 0, 0},
    {"matmul_batched", mm_batched, NULL, 0, 0, 0},
    {"matmul_shared_weight", mm_shared_weight, NULL, 0, 0, 0},
    {"matmul_shared_left", mm_shared_left, NULL, 0, 0, 0},
    {"add_broadcast", bin_add, NULL, 0, 0, 0},
    {"add_bias", bin_bias, NULL, 0, 0, 0},
    {"sub_broadcast", bin_sub, NULL, 0, 0, 0},
    {"mul_broadcast", bin_mul, NULL, 0, 0, 0},
    {"mul_scalar_tensor", bin_scalar, NULL, 0, 0, 0},
    {"div_broadcast", bin_div, NULL, 0, 0, 0},
    {"pow_broadcast", bin_pow, NULL, 0, 0, 0},
    {"scale", un_scale, NULL, 0, 0, 0},
    {"add_scalar", un_add_scalar, NULL, 0, 0, 0},
    {"pow_scalar", un_pow_scalar, NULL, 0, 0, 0},
    {"relu", un_relu, away_from_zero, 0, 0, 0},
    {"abs", un_abs, away_from_zero, 0, 0, 0},
    {"leaky_relu", un_leaky_relu, away_from_zero, 0, 0, 0},
    {"sigmoid", un_sigmoid, NULL, 0, 0, 0},
    {"tanh", un_tanh, NULL, 0, 0, 0},
    {"gelu", un_gelu, NULL, 0, 0, 0},
    {"gelu_tanh", un_gelu_tanh, NULL, 0, 0, 0},
    {"bias_gelu", bias_gelu, NULL, 0, 0, 0},
    {"bias_gelu_tanh", bias_gelu_tanh, NULL, 0, 0, 0},
    {"exp", un_exp, NULL, 0, 0, 0},
    {"log", un_log, NULL, 0, 0, 0},
    {"sqrt", un_sqrt, NULL, 0, 0, 0},
    {"softmax", un_softmax, NULL, 0, 0, 0},
    {"log_softmax", un_log_softmax, NULL, 0, 0, 0},
    {"sum_axes", red_sum, NULL, 0, 0, 0},
    {"sum_all", red_sum_all, NULL, 0, 0, 0},
    {"mean_axes", red_mean, NULL, 0, 0, 0},
    {"max_axes", red_max, distinct_x, 0, 0, 0},
    {"reduce_strided", red_strided, distinct_x, 0, 0, 0},
    {"reshape", sh_reshape, NULL, 0, 0, 0},
    {"flatten", sh_flatten, NULL, 0, 0, 0},
    {"permute", sh_permute, NULL, 0, 0, 0},
    {"transpose", sh_transpose, NULL, 0, 0, 0},
    {"slice", sh_slice, NULL, 0, 0, 0},
    {"slice_negative", sh_slice_negative, NULL, 0, 0, 0},
    {"concat", sh_concat, NULL, 0, 0, 0},
    {"dropout", dropout_case, NULL, 0, 0, 0},
    {"mse", loss_mse, NULL, 0, 0, 0},
    {"cross_entropy", loss_ce, fill_labels, 0, 0, 0},
    {"cross_entropy_3d", loss_ce_3d, fill_labels, 0, 0, 0},
    {"cross_entropy_3d, ignored labels", loss_ce_3d, fill_labels_some_ignored, 0, 0, 0},
    {"cross_entropy_weighted, ignored labels", loss_ce_weighted, fill_labels_some_ignored, 0, 0, 0},
    {"cross_entropy_weighted", loss_ce_weighted, fill_labels, 0, 0, 0},
    {"bce_with_logits", loss_bce, fill_targets, 0, 0, 0},
    {"mlp_composite", mlp, fill_labels, 0, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
