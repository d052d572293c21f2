/* test_recurrent.c — the fused recurrent ops and layers (src/ops/rnn.c, src/nn/recurrent.c):
 *   - one LSTM / GRU / RNN step against values worked out by hand;
 *   - several steps at sizes that take the threaded paths, against a plain double-precision loop;
 *   - a sequence run in two halves, the second started from the first's final states, against one run,
 *     forward and gradients (gradients must flow into the final-state nodes); and one step at a time with
 *     the states carried through inputs, as generation runs;
 *   - error messages for bad shapes and arguments; a smaller last batch on the same plan;
 *   - learning: an LSTM and a GRU recall the token seen K steps earlier (loss from ln 8 to under 0.05).
 * Backward of every op is checked against finite differences in test_gradcheck (cases_recurrent.c). */
#include "check.h"
#include "graph/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

typedef enum { K_LSTM, K_GRU, K_RNN } kind;
static const char *const kind_names[] = {"lstm", "gru", "rnn_tanh"};
static int gates(kind k) { return k == K_LSTM ? 4 : k == K_GRU ? 3 : 1; }

static magna_node *cell(magna_graph *g, kind k, magna_node *x, magna_node *wi, magna_node *wh, magna_node *bi,
                        magna_node *bh, magna_node *h0, magna_node *c0) {
    return k == K_LSTM  ? magna_lstm(g, x, wi, wh, bi, bh, h0, c0)
           : k == K_GRU ? magna_gru(g, x, wi, wh, bi, bh, h0)
                        : magna_rnn_tanh(g, x, wi, wh, bi, bh, h0);
}

static void set(magna_node *n, const float *v) { memcpy(magna_node_data(n), v, (size_t)magna_node_numel(n) * 4); }

/* ---- one step by hand ---------------------------------------------------------------------------- */

/* B = T = I = H = 1: x = 0.5, h0 = 0.3, c0 = -0.2, gate k's weights wi[k], wh[k], biases bi[k] + bh[k].
 * LSTM pre-activations: i 0.05+0.15+0.01-0.05 = 0.16, f 0.1-0.18+0.02+0.06 = 0, g 0.15+0.21+0.03-0.07 = 0.32,
 * o 0.2-0.24+0.04+0.08 = 0.08; i = s(0.16) = 0.539915, f = 0.5, g = tanh(0.32) = 0.309507, o = s(0.08) =
 * 0.519989; c = 0.5 * -0.2 + 0.539915 * 0.309507 = 0.0671074; h = 0.519989 * tanh(0.0671074) = 0.0348428.
 * GRU: r = s(0.05+0.01+0.15-0.05) = s(0.16) = 0.539915, z = s(0.1+0.02-0.18+0.06) = 0.5,
 * n = tanh(0.15+0.03 + r * (0.21-0.07)) = tanh(0.255588) = 0.250164; h = 0.5 n + 0.5 * 0.3 = 0.275082.
 * RNN: h = tanh(0.05 + 0.01 + 0.15 - 0.05) = tanh(0.16) = 0.158649. */
static void test_one_step(void) {
    const float wi[4] = {0.1f, 0.2f, 0.3f, 0.4f}, wh[4] = {0.5f, -0.6f, 0.7f, -0.8f};
    const float bi[4] = {0.01f, 0.02f, 0.03f, 0.04f}, bh[4] = {-0.05f, 0.06f, -0.07f, 0.08f};
    const float want_h[3] = {0.0348428412f, 0.2750821551f, 0.1586485043f}, want_c = 0.0671073936f;
    for (kind k = K_LSTM; k <= K_RNN; k++) {
        const int G = gates(k);
        magna_graph *g = magna_graph_new(1);
        magna_node *x = magna_input(g, "x", MAGNA_F32, 3, SHAPE(1, 1, 1));
        magna_node *h0 = magna_input(g, "h0", MAGNA_F32, 2, SHAPE(1, 1));
        magna_node *c0 = k == K_LSTM ? magna_input(g, "c0", MAGNA_F32, 2, SHAPE(1, 1)) : NULL;
        magna_node *pw[4] = {magna_param(g, "wi", 2, SHAPE(1, G), magna_init_zeros()),
                             magna_param(g, "wh", 2, SHAPE(1, G), magna_init_zeros()),
                             magna_param(g, "bi", 1, SHAPE(G), magna_init_zeros()),
                             magna_param(g, "bh", 1, SHAPE(G), magna_init_zeros())};
        magna_node *out = cell(g, k, x, pw[0], pw[1], pw[2], pw[3], h0, c0);
        magna_graph_keep(g, out);
        CHECK(magna_graph_compile(g, NULL) == MAGNA_OK, "%s: %s", kind_names[k], magna_graph_errmsg(g));
        set(x, (float[]){0.5f}), set(h0, (float[]){0.3f});
        if (c0) set(c0, (float[]){-0.2f});
        set(pw[0], wi), set(pw[1], wh), set(pw[2], bi), set(pw[3], bh);
        CHECK(magna_graph_forward(g) == MAGNA_OK, "%s", magna_graph_errmsg(g));
        const float *o = magna_node_data(out);
        CHECK(fabsf(o[0] - want_h[k]) < 2e-6f, "%s one step: h %.8f, by hand %.8f", kind_names[k], o[0], want_h[k]);
        if (k == K_LSTM) CHECK(fabsf(o[1] - want_c) < 2e-6f, "lstm one step: c %.8f, by hand %.8f", o[1], want_c);
        magna_graph_free(g);
    }
}

/* ---- many steps against a plain loop ------------------------------------------------------------- */

static double sig(double v) { return 1.0 / (1.0 + exp(-v)); }

/* The textbook recurrences in double, one (b, t, unit) at a time. out as the op lays it out. */
static void reference(kind k, int B, int T, int I, int H, const float *x, const float *wi, const float *wh,
                      const float *bi, const float *bh, const float *h0, const float *c0, double *out) {
    const int G = gates(k) * H, S = k == K_LSTM ? 2 : 1;
    double *h = calloc((size_t)H, sizeof *h), *c = calloc((size_t)H, sizeof *c), *px = malloc((size_t)G * 8),
           *ph = malloc((size_t)G * 8);
    for (int b = 0; b < B; b++) {
        for (int j = 0; j < H; j++) h[j] = h0 ? h0[b * H + j] : 0, c[j] = c0 ? c0[b * H + j] : 0;
        for (int t = 0; t < T; t++) {
            for (int col = 0; col < G; col++) {
                double sx = bi[col], sh = bh[col];
                for (int p = 0; p < I; p++) sx += (double)x[((size_t)b * T + t) * I + p] * wi[(size_t)p * G + col];
                for (int p = 0; p < H; p++) sh += h[p] * wh[(size_t)p * G + col];
                px[col] = sx, ph[col] = sh;
            }
            for (int j = 0; j < H; j++) {
                if (k == K_LSTM) {
                    const double i = sig(px[j] + ph[j]), f = sig(px[H + j] + ph[H + j]);
                    const double gg = tanh(px[2 * H + j] + ph[2 * H + j]), o = sig(px[3 * H + j] + ph[3 * H + j]);
                    c[j] = f * c[j] + i * gg;
                    ph[j] = o * tanh(c[j]); /* new h, kept apart until every unit has read the old one */
                } else if (k == K_GRU) {
                    const double r = sig(px[j] + ph[j]), z = sig(px[H + j] + ph[H + j]);
                    const double n = tanh(px[2 * H + j] + r * ph[2 * H + j]);
                    ph[j] = (1 - z) * n + z * h[j];
                } else {
                    ph[j] = tanh(px[j] + ph[j]);
                }
            }
            for (int j = 0; j < H; j++) {
                h[j] = ph[j];
                out[(((size_t)b * T + t) * S) * H + j] = h[j];
                if (k == K_LSTM) out[(((size_t)b * T + t) * S + 1) * H + j] = c[j];
            }
        }
    }
    free(h), free(c), free(px), free(ph);
}

static void fill_uniform(float *v, int64_t n, uint64_t seed, float a) {
    for (int64_t i = 0; i < n; i++) v[i] = a * (2 * magna_rand_uniform(seed, 5, (uint64_t)i) - 1);
}

static void test_against_reference(kind k, int B, int T, int I, int H, bool states) {
    const int G = gates(k) * H;
    magna_graph *g = magna_graph_new(2);
    magna_node *x = magna_input(g, "x", MAGNA_F32, 3, SHAPE(B, T, I));
    magna_node *h0 = states ? magna_input(g, "h0", MAGNA_F32, 2, SHAPE(B, H)) : NULL;
    magna_node *c0 = states && k == K_LSTM ? magna_input(g, "c0", MAGNA_F32, 2, SHAPE(B, H)) : NULL;
    const float a = 1.0f / sqrtf((float)H);
    magna_node *wi = magna_param(g, "wi", 2, SHAPE(I, G), magna_init_uniform(-a, a));
    magna_node *wh = magna_param(g, "wh", 2, SHAPE(H, G), magna_init_uniform(-a, a));
    magna_node *bi = magna_param(g, "bi", 1, SHAPE(G), magna_init_uniform(-a, a));
    magna_node *bh = magna_param(g, "bh", 1, SHAPE(G), magna_init_uniform(-a, a));
    magna_node *out = cell(g, k, x, wi, wh, bi, bh, h0, c0);
    magna_graph_keep(g, out);
    CHECK(magna_graph_compile(g, NULL) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    fill_uniform(magna_node_data(x), magna_node_numel(x), 11, 1.0f);
    if (h0) fill_uniform(magna_node_data(h0), magna_node_numel(h0), 12, 1.0f);
    if (c0) fill_uniform(magna_node_data(c0), magna_node_numel(c0), 13, 1.0f);
    CHECK(magna_graph_forward(g) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    double *want = malloc((size_t)magna_node_numel(out) * sizeof *want);
    reference(k, B, T, I, H, magna_node_data(x), magna_node_data(wi), magna_node_data(wh), magna_node_data(bi),
              magna_node_data(bh), h0 ? magna_node_data(h0) : NULL, c0 ? magna_node_data(c0) : NULL, want);
    double worst = 0;
    for (int64_t i = 0; i < magna_node_numel(out); i++) worst = fmax(worst, fabs(magna_node_data(out)[i] - want[i]));
    printf("%-8s B=%d T=%d I=%d H=%d%s: max |op - reference| = %.2e\n", kind_names[k], B, T, I, H,
           states ? " h0" : "", worst);
    CHECK(worst < 2e-5, "%s B=%d T=%d I=%d H=%d: off the reference by %.3g", kind_names[k], B, T, I, H, worst);
    free(want);
    magna_graph_free(g);
}

/* ---- carried state: two halves equal one run ----------------------------------------------------- */

/* sum(out * R) over the h sequence of T steps, run once (split = 0) or as steps [0, split) then [split, T)
 * with the second op started from the first's final states. Returns the weights' gradient and the loss. */
static double split_run(kind k, int split, float *grad, size_t *np) {
    enum { B = 3, T = 6, I = 4, H = 5 };
    const int G = gates(k) * H;
    magna_graph *g = magna_graph_new(3);
    magna_node *x = magna_input(g, "x", MAGNA_F32, 3, SHAPE(B, T, I));
    magna_node *r = magna_input(g, "r", MAGNA_F32, 3, SHAPE(B, T, H));
    magna_node *wi = magna_param(g, "wi", 2, SHAPE(I, G), magna_init_uniform(-0.5f, 0.5f));
    magna_node *wh = magna_param(g, "wh", 2, SHAPE(H, G), magna_init_uniform(-0.5f, 0.5f));
    magna_node *bi = magna_param(g, "bi", 1, SHAPE(G), magna_init_uniform(-0.5f, 0.5f));
    magna_node *bh = magna_param(g, "bh", 1, SHAPE(G), magna_init_uniform(-0.5f, 0.5f));
    magna_node *h0 = magna_param(g, "h0", 2, SHAPE(B, H), magna_init_uniform(-0.5f, 0.5f));
    magna_node *c0 = k == K_LSTM ? magna_param(g, "c0", 2, SHAPE(B, H), magna_init_uniform(-0.5f, 0.5f)) : NULL;
    magna_node *seq;
    if (!split) {
        seq = magna_rnn_sequence(g, cell(g, k, x, wi, wh, bi, bh, h0, c0));
    } else {
        magna_node *a = cell(g, k, magna_slice(g, x, 1, 0, split, 1), wi, wh, bi, bh, h0, c0);
        magna_node *b = cell(g, k, magna_slice(g, x, 1, split, T, 1), wi, wh, bi, bh, magna_rnn_final_h(g, a),
                             k == K_LSTM ? magna_rnn_final_c(g, a) : NULL);
        seq = magna_concat(g, 2, (magna_node *[]){magna_rnn_sequence(g, a), magna_rnn_sequence(g, b)}, 1);
    }
    magna_node *loss = magna_sum(g, magna_mul(g, seq, r), MAGNA_ALL_AXES, false);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    fill_uniform(magna_node_data(x), B * T * I, 21, 1.0f);
    fill_uniform(magna_node_data(r), B * T * H, 22, 1.0f);
    magna_graph_zero_grad(g);
    magna_graph_forward(g);
    magna_graph_backward(g);
    const float *gr = magna_graph_grads(g, np);
    memcpy(grad, gr, *np * sizeof *grad);
    const double l = magna_node_data(loss)[0];
    magna_graph_free(g);
    return l;
}

static void test_carried_state(kind k) {
    float one[4096], two[4096];
    size_t n1 = 0, n2 = 0;
    const double l1 = split_run(k, 0, one, &n1), l2 = split_run(k, 2, two, &n2);
    CHECK(n1 == n2 && n1 < 4096, "%s: %zu vs %zu params", kind_names[k], n1, n2);
    double worst = 0, largest = 0;
    for (size_t i = 0; i < n1 && n1 == n2; i++) worst = fmax(worst, fabs(one[i] - two[i])), largest = fmax(largest, fabs(one[i]));
    printf("%-8s carried state: loss %.6f vs %.6f, max grad diff %.2e (largest grad %.2f)\n", kind_names[k], l1, l2,
           worst, largest);
    CHECK(fabs(l1 - l2) < 1e-5 * (1 + fabs(l1)), "%s: split run loss %.7f vs %.7f", kind_names[k], l2, l1);
    CHECK(worst < 1e-5 && largest > 0.1, "%s: split run gradients differ by %.3g", kind_names[k], worst);
}

/* ---- errors -------------------------------------------------------------------------------------- */

static void expect_error(magna_graph *g, magna_node *n, const char *fragment) {
    CHECK(n == NULL && strstr(magna_graph_errmsg(g), fragment), "wanted an error with '%s', got '%s'", fragment,
          magna_graph_errmsg(g));
}

static void test_errors(void) {
    const struct {
        int64_t wi[2], wh[2], b, h0[2];
        const char *fragment;
    } bad[] = {
        {{3, 20}, {5, 19}, 20, {2, 5}, "lstm: w_hh must be [H, 4*H], got [5, 19]"},
        {{4, 20}, {5, 20}, 20, {2, 5}, "lstm: w_ih must be [I, 4*H] = [3, 20] for x [2, 7, 3] and w_hh [5, 20], got [4, 20]"},
        {{3, 20}, {5, 20}, 21, {2, 5}, "lstm: b_ih must be [20] (4*H), got [21]"},
        {{3, 20}, {5, 20}, 20, {2, 4}, "lstm: h0 must be [B, H] = [2, 5], got [2, 4]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        magna_graph *g = magna_graph_new(4);
        magna_node *x = magna_input(g, "x", MAGNA_F32, 3, SHAPE(2, 7, 3));
        magna_node *out = magna_lstm(g, x, magna_param(g, "wi", 2, bad[i].wi, magna_init_zeros()),
                                     magna_param(g, "wh", 2, bad[i].wh, magna_init_zeros()),
                                     magna_param(g, "bi", 1, &bad[i].b, magna_init_zeros()),
                                     magna_param(g, "bh", 1, &bad[i].b, magna_init_zeros()),
                                     magna_input(g, "h0", MAGNA_F32, 2, bad[i].h0), NULL);
        expect_error(g, out, bad[i].fragment);
        magna_graph_free(g);
    }
    magna_graph *g = magna_graph_new(4);
    magna_node *x = magna_input(g, "x", MAGNA_F32, 3, SHAPE(2, 7, 3));
    magna_node *wi = magna_param(g, "wi", 2, SHAPE(3, 15), magna_init_zeros());
    magna_node *wh = magna_param(g, "wh", 2, SHAPE(5, 15), magna_init_zeros());
    expect_error(g, magna_gru(g, x, wi, wh, magna_param(g, "b", 1, SHAPE(15), magna_init_zeros()), NULL, NULL),
                 "gru: give both biases (b_ih and b_hh) or neither");
    magna_graph_free(g);
    g = magna_graph_new(4);
    x = magna_input(g, "x", MAGNA_F32, 3, SHAPE(2, 7, 3));
    wi = magna_param(g, "wi", 2, SHAPE(3, 15), magna_init_zeros());
    wh = magna_param(g, "wh", 2, SHAPE(5, 15), magna_init_zeros());
    expect_error(g, magna_rnn_final_c(g, magna_gru(g, x, wi, wh, NULL, NULL, NULL)),
                 "rnn_final_c: 'gru_3' is not an LSTM's output");
    magna_graph_free(g);
    g = magna_graph_new(4);
    expect_error(g, magna_layer_lstm(g, "enc", magna_input(g, "x", MAGNA_F32, 2, SHAPE(2, 7)), 8,
                                     (magna_recurrent_opts){0}),
                 "enc: lstm needs x [B, T, features], got [2, 7]");
    magna_graph_free(g);
    g = magna_graph_new(4);
    expect_error(g, magna_layer_gru(g, "enc", magna_input(g, "x", MAGNA_F32, 3, SHAPE(2, 7, 3)), 8,
                                    (magna_recurrent_opts){.c_final = (magna_node *[1]){0}}),
                 "enc: only an LSTM has a cell state");
    magna_graph_free(g);
}

/* ---- learning: recall the token K steps back ----------------------------------------------------- */

/* ids [B, T] uniform over V tokens; the label at t is ids[t - K] (0 for t < K, which is learnable too).
 * Embedding 16 -> recurrent layer 32 -> dense V, cross-entropy over every step, Adam 1e-2. */
static void test_recall(kind k) {
    enum { B = 32, T = 12, V = 8, K = 3, H = 32, STEPS = 400 };
    magna_graph *g = magna_graph_new(5);
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, SHAPE(B, T));
    magna_node *y = magna_input(g, "y", MAGNA_I32, 2, SHAPE(B, T));
    magna_node *h = magna_layer_embedding(g, "emb", ids, V, 16);
    magna_recurrent_opts o = {0};
    h = k == K_LSTM ? magna_layer_lstm(g, "rec", h, H, o) : magna_layer_gru(g, "rec", h, H, o);
    magna_node *loss = magna_cross_entropy(g, magna_layer_dense(g, "head", h, V, (magna_dense_opts){0}), y);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    magna_optimizer *opt = magna_optimizer_new(g, (magna_optimizer_opts){.kind = MAGNA_ADAM, .lr = 1e-2f}, NULL);
    float first = 0, last = 0;
    int step = 0;
    for (; step < STEPS; step++) {
        int32_t *id = magna_node_data_i32(ids), *lab = magna_node_data_i32(y);
        for (int i = 0; i < B * T; i++) id[i] = (int32_t)(magna_rand_u64(6, (uint64_t)step, (uint64_t)i) % V);
        for (int i = 0; i < B * T; i++) lab[i] = i % T >= K ? id[i - K] : 0;
        magna_graph_zero_grad(g);
        magna_graph_forward(g);
        magna_graph_backward(g);
        magna_optimizer_step(opt);
        last = magna_node_data(loss)[0];
        if (step == 0) first = last;
        if (last < 0.05f) break;
    }
    printf("%-8s recall %d steps back: loss %.3f -> %.4f after %d steps\n", kind_names[k], K, first, last, step + 1);
    CHECK(first > 1.8f && last < 0.05f, "%s did not learn to recall: loss %.3f -> %.4f", kind_names[k], first, last);
    magna_optimizer_free(opt);
    magna_graph_free(g);
}

/* ---- a smaller last batch on the same plan ------------------------------------------------------- */

/* A 2-layer LSTM layer with its final states kept, compiled at batch 5 and run at 3: the 3 rows come out
 * as they did in the full batch (each row's recurrence is its own). */
static void test_set_batch(void) {
    enum { B = 5, T = 4, I = 3, H = 6 };
    magna_graph *g = magna_graph_new(7);
    magna_node *x = magna_input(g, "x", MAGNA_F32, 3, SHAPE(B, T, I));
    magna_node *hf[2], *cf[2];
    magna_node *seq = magna_layer_lstm(g, "lstm", x, H, (magna_recurrent_opts){.num_layers = 2, .h_final = hf,
                                                                               .c_final = cf});
    magna_node *keep[3] = {seq, hf[1], cf[0]};
    for (int i = 0; i < 3; i++) magna_graph_keep(g, keep[i]);
    CHECK(magna_graph_compile(g, NULL) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    fill_uniform(magna_node_data(x), B * T * I, 31, 1.0f);
    magna_graph_forward(g);
    float full[3][B * T * H];
    for (int i = 0; i < 3; i++) memcpy(full[i], magna_node_data(keep[i]), (size_t)magna_node_numel(keep[i]) * 4);
    CHECK(magna_graph_set_batch(g, 3) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    CHECK(magna_node_shape(seq)[0] == 3 && magna_node_shape(hf[1])[0] == 3, "set_batch: shapes did not follow");
    magna_graph_forward(g);
    double worst = 0;
    for (int i = 0; i < 3; i++)
        for (int64_t j = 0; j < magna_node_numel(keep[i]); j++)
            worst = fmax(worst, fabs(magna_node_data(keep[i])[j] - full[i][j]));
    CHECK(magna_node_numel(seq) == 3 * T * H && worst < 1e-6, "set_batch: rows differ by %.3g", worst);
    magna_graph_free(g);
}

/* ---- generation: one step at a time, the state carried through inputs ----------------------------- */

/* A 2-layer LSTM layer over T steps at once, against the same layer (same seed, so the same weights) built
 * for T = 1 with h0 / c0 inputs, run T times with each step's final states copied into the next step's
 * inputs, as a sampler does. */
static void test_step_by_step(void) {
    enum { B = 2, T = 5, I = 3, H = 4, L = 2 };
    magna_graph *g = magna_graph_new(8);
    magna_node *x = magna_input(g, "x", MAGNA_F32, 3, SHAPE(B, T, I));
    magna_node *seq = magna_layer_lstm(g, "lstm", x, H, (magna_recurrent_opts){.num_layers = L});
    magna_graph_keep(g, seq);
    CHECK(magna_graph_compile(g, NULL) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    fill_uniform(magna_node_data(x), B * T * I, 41, 1.0f);
    magna_graph_forward(g);

    magna_graph *s = magna_graph_new(8);
    magna_node *xs = magna_input(s, "x", MAGNA_F32, 3, SHAPE(B, 1, I));
    magna_node *h0[L], *c0[L], *hf[L], *cf[L];
    for (int l = 0; l < L; l++) {
        char name[16];
        snprintf(name, sizeof name, "h0_%d", l), h0[l] = magna_input(s, name, MAGNA_F32, 2, SHAPE(B, H));
        snprintf(name, sizeof name, "c0_%d", l), c0[l] = magna_input(s, name, MAGNA_F32, 2, SHAPE(B, H));
    }
    magna_node *out = magna_layer_lstm(s, "lstm", xs, H, (magna_recurrent_opts){.num_layers = L, .h0 = h0, .c0 = c0,
                                                                              .h_final = hf, .c_final = cf,
                                                                              .return_last = true});
    magna_graph_keep(s, out);
    for (int l = 0; l < L; l++) magna_graph_keep(s, hf[l]), magna_graph_keep(s, cf[l]);
    CHECK(magna_graph_compile(s, NULL) == MAGNA_OK, "%s", magna_graph_errmsg(s));
    for (int l = 0; l < L; l++) {
        memset(magna_node_data(h0[l]), 0, B * H * sizeof(float));
        memset(magna_node_data(c0[l]), 0, B * H * sizeof(float));
    }
    double worst = 0;
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++)
            memcpy(magna_node_data(xs) + b * I, magna_node_data(x) + (b * T + t) * I, I * sizeof(float));
        magna_graph_forward(s);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < H; j++)
                worst = fmax(worst, fabs(magna_node_data(out)[b * H + j] - magna_node_data(seq)[(b * T + t) * H + j]));
        for (int l = 0; l < L; l++) {
            memcpy(magna_node_data(h0[l]), magna_node_data(hf[l]), B * H * sizeof(float));
            memcpy(magna_node_data(c0[l]), magna_node_data(cf[l]), B * H * sizeof(float));
        }
    }
    printf("lstm     %d steps one at a time, state carried through inputs: max diff %.2e\n", T, worst);
    CHECK(worst < 1e-6, "step-by-step LSTM differs from the whole sequence by %.3g", worst);
    magna_graph_free(s);
    magna_graph_free(g);
}

/* ---- the thread count changes no bit ----------------------------------------------------------------- */

/* sum(out * R) over a [32, 16] sequence of H 64 (every parallel path: the gate math, the step products, the bias
 * sums over B T rows), run on `threads` threads; *grads gets every gradient (NULL if it did not compile). */
static void threaded_grads(kind k, int threads, float **grads, size_t *n) {
    magna_set_threads(threads);
    const int B = 32, T = 16, I = 16, H = 64, G = gates(k) * H;
    magna_graph *g = magna_graph_new(7);
    magna_node *x = magna_param(g, "x", 3, SHAPE(B, T, I), magna_init_uniform(-1, 1));
    const float a = 1.0f / sqrtf((float)H);
    magna_node *wi = magna_param(g, "wi", 2, SHAPE(I, G), magna_init_uniform(-a, a));
    magna_node *wh = magna_param(g, "wh", 2, SHAPE(H, G), magna_init_uniform(-a, a));
    magna_node *bi = magna_param(g, "bi", 1, SHAPE(G), magna_init_uniform(-a, a));
    magna_node *bh = magna_param(g, "bh", 1, SHAPE(G), magna_init_uniform(-a, a));
    magna_node *r = magna_input(g, "r", MAGNA_F32, 3, SHAPE(B, T, H));
    magna_node *seq = magna_rnn_sequence(g, cell(g, k, x, wi, wh, bi, bh, NULL, NULL));
    magna_node *loss = magna_sum(g, magna_mul(g, seq, r), MAGNA_ALL_AXES, false);
    *grads = NULL, *n = 0;
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) return magna_graph_free(g);
    fill_uniform(magna_node_data(r), magna_node_numel(r), 21, 1.0f);
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward(g) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    const float *gr = magna_graph_grads(g, n);
    *grads = malloc(*n * sizeof **grads);
    memcpy(*grads, gr, *n * sizeof **grads);
    magna_graph_free(g);
}

/* On the step kernel of src/ops/rnn.c (AVX-512): OpenBLAS's products (MAGNA_RNN_STEP=sgemm, or no AVX-512) may
 * split their sums differently on another thread count, so only the gate math and the bias sums are ours there. */
static void test_thread_count(kind k) {
    const char *step = getenv("MAGNA_RNN_STEP");
    if ((step && strcmp(step, "sgemm") == 0) || !magna_cpu_detect().avx512f) {
        printf("%-8s gradients on 1 and 2 threads: not compared (OpenBLAS's step products)\n", kind_names[k]);
        return;
    }
    float *one, *two;
    size_t n1, n2;
    threaded_grads(k, 1, &one, &n1);
    threaded_grads(k, 2, &two, &n2);
    magna_set_threads(2);
    size_t differ = 0;
    for (size_t i = 0; i < n1 && n1 == n2; i++) differ += one[i] != two[i];
    printf("%-8s gradients on 1 and 2 threads: %zu of %zu differ\n", kind_names[k], differ, n1);
    CHECK(n1 == n2 && differ == 0, "%s: the thread count changed %zu gradients", kind_names[k], differ);
    free(one), free(two);
}

int main(void) {
    magna_set_threads(2);
    test_one_step();
    for (kind k = K_LSTM; k <= K_RNN; k++) {
        test_against_reference(k, 3, 5, 4, 7, false);
        test_against_reference(k, 2, 6, 3, 9, true);
        test_against_reference(k, 34, 4, 16, 64, true); /* threaded gate math, OpenBLAS products */
        test_carried_state(k);
        test_thread_count(k);
    }
    test_errors();
    test_set_batch();
    test_step_by_step();
    test_recall(K_LSTM);
    test_recall(K_GRU);
    return check_finish("test_recurrent");
}
