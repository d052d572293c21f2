/* test_attention.c — the fused attention op against the same attention composed from basic ops.
 *
 * Two graphs get the same q, k, v (params, so both compute their gradients) and the same random
 * output gradient. The composed one is PyTorch's textbook attention:
 *   q [B, T, C] -> reshape [B, T, H, hd] -> permute [B, H, T, hd]   (same for k, v)
 *   S = q k^T * (1 / sqrt(hd)) [+ mask: -1e9 above the diagonal] -> softmax -> P v [B, H, T, hd]
 *   -> permute [B, T, H, hd] -> reshape [B, T, C]
 * The output and the q, k, v gradients must agree within 1e-4. Then the other sequence ops at sizes
 * large enough to take their multi-threaded paths (layer norm, embedding) against a plain double
 * loop, and their error paths. One line per check; exits 1 on any failure. */
#include "magna.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4

static int passed, failures;

static void check(bool ok, const char *what, const char *detail) {
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail && *detail ? ": " : "", detail ? detail : "");
    if (ok)
        passed++;
    else
        failures++;
}

static void fill_uniform(float *x, int64_t n, uint64_t seed, uint64_t stream) {
    for (int64_t i = 0; i < n; i++) x[i] = 2.0f * magna_rand_uniform(seed, stream, (uint64_t)i) - 1.0f;
}

static double max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN wins */
    }
    return m;
}

typedef struct attn_graph {
    magna_graph *g;
    magna_node *q, *k, *v, *mask, *out;
} attn_graph;

/* [B, T, C] -> [B, H, T, hd] */
static magna_node *split_heads(magna_graph *g, magna_node *x, int64_t B, int64_t T, int H, int64_t hd) {
    magna_node *r = magna_reshape(g, x, 4, (int64_t[]){B, T, H, hd});
    return magna_permute(g, r, (int[]){0, 2, 1, 3});
}

/* Builds and compiles one graph; fused or composed. When shared, q = k = v is one param. */
static bool build(attn_graph *a, bool fused, int64_t B, int64_t T, int64_t C, int H, bool causal, bool shared) {
    memset(a, 0, sizeof *a);
    magna_graph *g = a->g = magna_graph_new(7);
    if (!g) return false;
    const int64_t shape[3] = {B, T, C}, hd = C / H;
    a->q = magna_param(g, "q", 3, shape, magna_init_zeros());
    a->k = shared ? a->q : magna_param(g, "k", 3, shape, magna_init_zeros());
    a->v = shared ? a->q : magna_param(g, "v", 3, shape, magna_init_zeros());
    if (fused) {
        a->out = magna_attention(g, a->q, a->k, a->v, H, causal);
    } else {
        magna_node *qh = split_heads(g, a->q, B, T, H, hd), *kh = split_heads(g, a->k, B, T, H, hd);
        magna_node *vh = split_heads(g, a->v, B, T, H, hd);
        magna_node *s = magna_scale(g, magna_matmul(g, qh, kh, false, true), 1.0f / sqrtf((float)hd));
        if (causal) {
            a->mask = magna_input_unbatched(g, "mask", MAGNA_F32, 2, (int64_t[]){T, T});
            s = magna_add(g, s, a->mask);
        }
        magna_node *o = magna_matmul(g, magna_softmax(g, s), vh, false, false);
        o = magna_permute(g, o, (int[]){0, 2, 1, 3});
        a->out = magna_reshape(g, o, 3, shape);
    }
    if (magna_graph_compile(g, a->out) != MAGNA_OK) {
        check(false, fused ? "compile fused graph" : "compile composed graph", magna_graph_errmsg(g));
        return false;
    }
    if (a->mask) {
        float *m = magna_node_data(a->mask);
        for (int64_t i = 0; i < T; i++)
            for (int64_t j = 0; j < T; j++) m[i * T + j] = j > i ? -1e9f : 0.0f;
    }
    return true;
}

/* Runs both graphs on the same data and compares the output and the gradients. */
static void compare(const char *label, int64_t B, int64_t T, int64_t C, int H, bool causal, bool shared,
                    uint64_t seed) {
    attn_graph f, c;
    char what[160], detail[256];
    const int64_t n = B * T * C;
    bool built = build(&f, true, B, T, C, H, causal, shared) && build(&c, false, B, T, C, H, causal, shared);
    float *data = malloc((size_t)(4 * n) * sizeof(float));
    if (!built || !data) {
        snprintf(what, sizeof what, "%s: build", label);
        check(false, what, built ? "out of memory" : "a graph did not build");
        magna_graph_free(f.g), magna_graph_free(c.g), free(data);
        return;
    }
    float *dout = data + 3 * n;
    fill_uniform(data, 4 * n, seed, 1);
    attn_graph *gs[2] = {&f, &c};
    for (int i = 0; i < 2; i++) {
        attn_graph *a = gs[i];
        memcpy(magna_node_data(a->q), data, (size_t)n * sizeof(float));
        if (!shared) {
            memcpy(magna_node_data(a->k), data + n, (size_t)n * sizeof(float));
            memcpy(magna_node_data(a->v), data + 2 * n, (size_t)n * sizeof(float));
        }
        magna_graph_zero_grad(a->g);
        magna_status st = magna_graph_forward(a->g);
        if (st == MAGNA_OK) st = magna_graph_backward_seeded(a->g, dout);
        if (st != MAGNA_OK) {
            snprintf(what, sizeof what, "%s: run %s graph", label, i ? "composed" : "fused");
            check(false, what, magna_graph_errmsg(a->g));
            magna_graph_free(f.g), magna_graph_free(c.g), free(data);
            return;
        }
    }
    const char *names[4] = {"output", "dq", "dk", "dv"};
    for (int i = 0; i < (shared ? 2 : 4); i++) {
        const float *x = i == 0 ? magna_node_data(f.out) : magna_node_grad(i == 1 ? f.q : i == 2 ? f.k : f.v);
        const float *y = i == 0 ? magna_node_data(c.out) : magna_node_grad(i == 1 ? c.q : i == 2 ? c.k : c.v);
        double err = x && y ? max_abs_diff(x, y, n) : INFINITY;
        snprintf(what, sizeof what, "%s: %s", label, shared && i == 1 ? "d(q=k=v)" : names[i]);
        snprintf(detail, sizeof detail, "max abs error %.3g (limit %.0e)", err, TOL);
        check(err <= TOL, what, detail);
    }
    magna_graph_free(f.g);
    magna_graph_free(c.g);
    free(data);
}

/* After set_batch shrinks the batch, attention's infer runs again and must give the same first row. */
static void check_set_batch(void) {
    enum { B = 3, T = 10, C = 12 };
    magna_graph *g = magna_graph_new(11);
    magna_node *x = magna_input(g, "x", MAGNA_F32, 3, (int64_t[]){B, T, C});
    magna_node *w = magna_param(g, "w", 2, (int64_t[]){C, C}, magna_init_uniform(-1.0f, 1.0f));
    magna_node *q = magna_matmul(g, x, w, false, false);
    magna_node *out = magna_attention(g, q, x, x, 3, true);
    magna_node *loss = magna_sum(g, magna_mul(g, out, out), MAGNA_ALL_AXES, false);
    magna_graph_keep(g, out);
    if (magna_graph_compile(g, loss) != MAGNA_OK) {
        check(false, "set_batch: compile", magna_graph_errmsg(g));
        magna_graph_free(g);
        return;
    }
    fill_uniform(magna_node_data(x), B * T * C, 5, 2);
    float first[T * C], grad1[C * C];
    magna_graph_zero_grad(g);
    magna_status st = magna_graph_forward(g);
    if (st == MAGNA_OK) st = magna_graph_backward(g);
    memcpy(first, magna_node_data(out), sizeof first); /* batch row 0 of the output at batch 3 */
    st = st == MAGNA_OK ? magna_graph_set_batch(g, 1) : st;
    if (st == MAGNA_OK) {
        magna_graph_zero_grad(g);
        st = magna_graph_forward(g);
    }
    if (st == MAGNA_OK) st = magna_graph_backward(g);
    if (st != MAGNA_OK) {
        check(false, "set_batch 3 -> 1: run", magna_graph_errmsg(g));
        magna_graph_free(g);
        return;
    }
    memcpy(grad1, magna_node_grad(w), sizeof grad1);
    char detail[128];
    const int64_t *shape = magna_node_shape(out);
    double err = shape[0] == 1 ? max_abs_diff(first, magna_node_data(out), T * C) : INFINITY;
    snprintf(detail, sizeof detail, "output shape [%lld, %lld, %lld], first row max abs error %.3g",
             (long long)shape[0], (long long)shape[1], (long long)shape[2], err);
    check(err <= 1e-6, "set_batch 3 -> 1: attention output follows the batch", detail);

    /* The same batch-1 gradient from a graph built at batch 1 with the same data. */
    magna_graph *h = magna_graph_new(11);
    magna_node *x1 = magna_input(h, "x", MAGNA_F32, 3, (int64_t[]){1, T, C});
    magna_node *w1 = magna_param(h, "w", 2, (int64_t[]){C, C}, magna_init_uniform(-1.0f, 1.0f));
    magna_node *o1 = magna_attention(h, magna_matmul(h, x1, w1, false, false), x1, x1, 3, true);
    magna_node *l1 = magna_sum(h, magna_mul(h, o1, o1), MAGNA_ALL_AXES, false);
    st = magna_graph_compile(h, l1);
    if (st == MAGNA_OK) {
        memcpy(magna_node_data(x1), magna_node_data(x), (size_t)(T * C) * sizeof(float));
        memcpy(magna_node_data(w1), magna_node_data(w), (size_t)(C * C) * sizeof(float));
        magna_graph_zero_grad(h);
        st = magna_graph_forward(h);
    }
    if (st == MAGNA_OK) st = magna_graph_backward(h);
    err = st == MAGNA_OK ? max_abs_diff(grad1, magna_node_grad(w1), C * C) : INFINITY;
    snprintf(detail, sizeof detail, "dw max abs error %.3g against a graph built at batch 1", err);
    check(err <= TOL, "set_batch 3 -> 1: attention backward follows the batch", detail);
    magna_graph_free(h);
    magna_graph_free(g);
}

/* Layer norm on [N, D] big enough to run its rows in parallel, against the formula in double:
 * out = (x - mean) / sqrt(var + eps) * gamma + beta, and its backward, for a random output gradient. */
static void check_layer_norm_large(void) {
    enum { N = 160, D = 256 };
    const float eps = 1e-5f;
    magna_graph *g = magna_graph_new(3);
    magna_node *x = magna_param(g, "x", 2, (int64_t[]){N, D}, magna_init_uniform(-2.0f, 3.0f));
    magna_node *gamma = magna_param(g, "gamma", 1, (int64_t[]){D}, magna_init_uniform(0.5f, 1.5f));
    magna_node *beta = magna_param(g, "beta", 1, (int64_t[]){D}, magna_init_uniform(-1.0f, 1.0f));
    magna_node *out = magna_layer_norm(g, x, gamma, beta, eps);
    static float dout[N * D];
    static double ref[N * D], rdx[N * D];
    double rdg[D] = {0}, rdb[D] = {0};
    fill_uniform(dout, N * D, 9, 3);
    magna_status st = magna_graph_compile(g, out);
    if (st == MAGNA_OK) {
        magna_graph_zero_grad(g);
        st = magna_graph_forward(g);
    }
    if (st == MAGNA_OK) st = magna_graph_backward_seeded(g, dout);
    if (st != MAGNA_OK) {
        check(false, "layer_norm [160, 256]: run", magna_graph_errmsg(g));
        magna_graph_free(g);
        return;
    }
    const float *xv = magna_node_data(x), *gv = magna_node_data(gamma), *bv = magna_node_data(beta);
    for (int i = 0; i < N; i++) {
        const float *xr = xv + i * D, *dr = dout + i * D;
        double m = 0, v = 0, a = 0, b = 0, norm[D];
        for (int d = 0; d < D; d++) m += xr[d];
        m /= D;
        for (int d = 0; d < D; d++) v += (xr[d] - m) * (xr[d] - m);
        const double r = 1.0 / sqrt(v / D + eps);
        for (int d = 0; d < D; d++) {
            norm[d] = (xr[d] - m) * r;
            ref[i * D + d] = norm[d] * gv[d] + bv[d];
            rdg[d] += dr[d] * norm[d];
            rdb[d] += dr[d];
            a += dr[d] * gv[d];
            b += dr[d] * gv[d] * norm[d];
        }
        for (int d = 0; d < D; d++) rdx[i * D + d] = r * (dr[d] * gv[d] - a / D - norm[d] * b / D);
    }
    const struct {
        const char *name;
        const float *got;
        const double *want;
        int n;
    } parts[4] = {{"output", magna_node_data(out), ref, N * D},
                  {"dx", magna_node_grad(x), rdx, N * D},
                  {"dgamma", magna_node_grad(gamma), rdg, D},
                  {"dbeta", magna_node_grad(beta), rdb, D}};
    for (int p = 0; p < 4; p++) {
        double err = 0;
        for (int i = 0; i < parts[p].n; i++) {
            double e = fabs(parts[p].got[i] - parts[p].want[i]) / (1.0 + fabs(parts[p].want[i]));
            if (!(e <= err)) err = e;
        }
        char what[96], detail[96];
        snprintf(what, sizeof what, "layer_norm [160, 256] vs double reference: %s", parts[p].name);
        snprintf(detail, sizeof detail, "max error %.3g relative to 1 + |ref| (limit %.0e)", err, TOL);
        check(err <= TOL, what, detail);
    }
    magna_graph_free(g);
}

/* Embedding with ids [B, T] and D wide enough that backward splits the table's columns over threads;
 * repeated ids must all add into their row. Against a plain loop. */
static void check_embedding_large(void) {
    enum { V = 37, D = 160, B = 4, T = 64 };
    magna_graph *g = magna_graph_new(4);
    magna_node *table = magna_param(g, "table", 2, (int64_t[]){V, D}, magna_init_uniform(-1.0f, 1.0f));
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, (int64_t[]){B, T});
    magna_node *out = magna_embedding(g, table, ids);
    static float dout[B * T * D];
    static double rdw[V * D];
    fill_uniform(dout, B * T * D, 10, 4);
    magna_status st = magna_graph_compile(g, out);
    if (st == MAGNA_OK) {
        int32_t *id = magna_node_data_i32(ids);
        for (int i = 0; i < B * T; i++) id[i] = (int32_t)(magna_rand_u64(10, 5, (uint64_t)i) % V);
        magna_graph_zero_grad(g);
        st = magna_graph_forward(g);
    }
    if (st == MAGNA_OK) st = magna_graph_backward_seeded(g, dout);
    if (st != MAGNA_OK) {
        check(false, "embedding [4, 64] ids, D 160: run", magna_graph_errmsg(g));
        magna_graph_free(g);
        return;
    }
    const int32_t *id = magna_node_data_i32(ids);
    const float *w = magna_node_data(table), *o = magna_node_data(out), *dw = magna_node_grad(table);
    bool rows_ok = true;
    for (int i = 0; i < B * T; i++) {
        rows_ok &= memcmp(o + i * D, w + id[i] * D, D * sizeof(float)) == 0;
        for (int d = 0; d < D; d++) rdw[id[i] * D + d] += dout[i * D + d];
    }
    double err = 0;
    for (int i = 0; i < V * D; i++) {
        double e = fabs(dw[i] - rdw[i]);
        if (!(e <= err)) err = e;
    }
    check(rows_ok, "embedding [4, 64] ids, D 160: output rows are the table's rows", "");
    char detail[96];
    snprintf(detail, sizeof detail, "max abs error %.3g (limit %.0e)", err, TOL);
    check(err <= TOL, "embedding [4, 64] ids, D 160: dtable vs plain scatter-add", detail);
    magna_graph_free(g);
}

/* Builder and forward errors of the sequence ops: a status, a message with the op's name, no crash. */
static void check_errors(void) {
    char detail[1200];
    magna_graph *g = magna_graph_new(1);
    magna_node *q = magna_param(g, "q", 3, (int64_t[]){2, 4, 6}, magna_init_zeros());
    magna_node *k = magna_param(g, "k", 3, (int64_t[]){2, 5, 6}, magna_init_zeros());
    magna_node *a = magna_attention(g, q, k, q, 2, true);
    snprintf(detail, sizeof detail, "%s", magna_graph_errmsg(g));
    check(!a && magna_graph_status(g) == MAGNA_ERR_SHAPE && strstr(detail, "attention") &&
              strstr(detail, "[2, 4, 6]") && strstr(detail, "[2, 5, 6]"),
          "attention with k [2, 5, 6] and v [2, 4, 6] is a shape error naming both", detail);
    magna_graph_free(g);

    g = magna_graph_new(1);
    q = magna_param(g, "q", 3, (int64_t[]){2, 4, 6}, magna_init_zeros());
    a = magna_attention(g, q, q, q, 4, false);
    snprintf(detail, sizeof detail, "%s", magna_graph_errmsg(g));
    check(!a && magna_graph_status(g) == MAGNA_ERR_SHAPE, "attention C = 6 with 4 heads is a shape error", detail);
    magna_graph_free(g);

    g = magna_graph_new(1);
    magna_node *x = magna_param(g, "x", 2, (int64_t[]){3, 5}, magna_init_zeros());
    magna_node *gamma = magna_param(g, "gamma", 1, (int64_t[]){4}, magna_init_zeros());
    magna_node *ln = magna_layer_norm(g, x, gamma, NULL, 1e-5f);
    snprintf(detail, sizeof detail, "%s", magna_graph_errmsg(g));
    check(!ln && magna_graph_status(g) == MAGNA_ERR_SHAPE && strstr(detail, "[3, 5]") && strstr(detail, "[4]"),
          "layer_norm x [3, 5] with gamma [4] is a shape error naming both", detail);
    magna_graph_free(g);

    g = magna_graph_new(1);
    magna_node *table = magna_param(g, "table", 2, (int64_t[]){5, 3}, magna_init_uniform(-1.0f, 1.0f));
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, (int64_t[]){2, 3});
    magna_node *e = magna_embedding(g, table, ids);
    magna_node *bad = magna_embedding(g, table, table);
    snprintf(detail, sizeof detail, "%s", magna_graph_errmsg(g));
    check(e && !bad && magna_graph_status(g) == MAGNA_ERR_DTYPE, "embedding with float ids is a dtype error", detail);
    magna_graph_free(g);

    g = magna_graph_new(1);
    table = magna_param(g, "table", 2, (int64_t[]){5, 3}, magna_init_uniform(-1.0f, 1.0f));
    ids = magna_input(g, "ids", MAGNA_I32, 2, (int64_t[]){2, 3});
    e = magna_embedding(g, table, ids);
    magna_status st = magna_graph_compile(g, e);
    if (st == MAGNA_OK) {
        int32_t *id = magna_node_data_i32(ids);
        const int32_t v[6] = {0, 4, 2, 1, 5, 3};
        memcpy(id, v, sizeof v);
        st = magna_graph_forward(g);
    }
    snprintf(detail, sizeof detail, "%s", magna_graph_errmsg(g));
    check(st == MAGNA_ERR_RANGE && strstr(detail, "id 5 at position 4") && strstr(detail, "[0, 5)"),
          "embedding id 5 of a 5-row table fails forward with its position", detail);
    if (st == MAGNA_ERR_RANGE) {
        magna_node_data_i32(ids)[4] = -1;
        st = magna_graph_forward(g);
        snprintf(detail, sizeof detail, "%s", magna_graph_errmsg(g));
        check(st == MAGNA_ERR_RANGE && strstr(detail, "id -1"), "embedding id -1 fails forward", detail);
        magna_node_data_i32(ids)[4] = 4;
        st = magna_graph_forward(g);
        check(st == MAGNA_OK, "embedding runs again once the ids are fixed",
              st == MAGNA_OK ? "" : magna_graph_errmsg(g));
    }
    magna_graph_free(g);
}

/* Cross-attention with a padding mask against plain loops in double: Tq queries, Tk keys, batch row b
 * sees keys 0..len[b]-1 (and, causal, j <= i + Tk - Tq); a row that sees none is zero. The masked keys and
 * values are NaN, so any read of them shows. */
static void check_masked_reference(const char *label, int64_t B, int64_t Tq, int64_t Tk, int H, int64_t hd,
                                   bool causal, uint64_t seed) {
    const int64_t C = H * hd;
    magna_graph *g = magna_graph_new(seed);
    magna_node *q = magna_input(g, "q", MAGNA_F32, 3, (int64_t[]){B, Tq, C});
    magna_node *k = magna_input(g, "k", MAGNA_F32, 3, (int64_t[]){B, Tk, C});
    magna_node *v = magna_input(g, "v", MAGNA_F32, 3, (int64_t[]){B, Tk, C});
    magna_node *len = magna_input(g, "len", MAGNA_I32, 1, (int64_t[]){B});
    magna_node *out = magna_attention_masked(g, q, k, v, len, H, causal);
    magna_graph_keep(g, out);
    if (magna_graph_compile(g, NULL) != MAGNA_OK) {
        check(false, label, magna_graph_errmsg(g));
        magna_graph_free(g);
        return;
    }
    float *qd = magna_node_data(q), *kd = magna_node_data(k), *vd = magna_node_data(v);
    int32_t *ld = magna_node_data_i32(len);
    fill_uniform(qd, B * Tq * C, seed, 1);
    fill_uniform(kd, B * Tk * C, seed, 2);
    fill_uniform(vd, B * Tk * C, seed, 3);
    for (int64_t b = 0; b < B; b++) {
        ld[b] = (int32_t)(b == 0 ? (uint64_t)Tk : magna_rand_u64(seed, 4, (uint64_t)b) % (uint64_t)(Tk + 1));
        for (int64_t j = ld[b]; j < Tk; j++)
            for (int64_t c = 0; c < C; c++) kd[(b * Tk + j) * C + c] = vd[(b * Tk + j) * C + c] = NAN;
    }
    magna_status st = magna_graph_forward(g);
    double err = st == MAGNA_OK ? 0.0 : INFINITY;
    const float *o = magna_node_data(out);
    double *p = malloc((size_t)Tk * sizeof(double));
    for (int64_t b = 0; st == MAGNA_OK && b < B; b++)
        for (int h = 0; h < H; h++)
            for (int64_t i = 0; i < Tq; i++) {
                int64_t n = ld[b];
                if (causal && i + Tk - Tq + 1 < n) n = i + Tk - Tq + 1;
                if (n < 0) n = 0;
                double mx = -INFINITY, sum = 0.0;
                for (int64_t j = 0; j < n; j++) {
                    double s = 0.0;
                    for (int64_t d = 0; d < hd; d++)
                        s += (double)qd[(b * Tq + i) * C + h * hd + d] * kd[(b * Tk + j) * C + h * hd + d];
                    p[j] = s / sqrt((double)hd);
                    if (p[j] > mx) mx = p[j];
                }
                for (int64_t j = 0; j < n; j++) sum += p[j] = exp(p[j] - mx);
                for (int64_t d = 0; d < hd; d++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < n; j++) acc += p[j] / sum * vd[(b * Tk + j) * C + h * hd + d];
                    double e = fabs(acc - o[(b * Tq + i) * C + h * hd + d]);
                    if (!(e <= err)) err = e;
                }
            }
    free(p);
    char detail[160];
    snprintf(detail, sizeof detail, "max abs error %.3g (limit %.0e)%s", err, TOL,
             st == MAGNA_OK ? "" : magna_graph_errmsg(g));
    check(err <= TOL, label, detail);
    /* a length past Tk is a forward error naming the row */
    if (st == MAGNA_OK) {
        ld[B - 1] = (int32_t)Tk + 1;
        st = magna_graph_forward(g);
        snprintf(detail, sizeof detail, "%s", magna_graph_errmsg(g));
        check(st == MAGNA_ERR_RANGE && strstr(detail, "key_lengths"), "key_lengths past Tk fails forward", detail);
    }
    magna_graph_free(g);
}

int main(void) {
    compare("causal B=2 T=16 C=32 H=4", 2, 16, 32, 4, true, false, 1);
    compare("full B=2 T=16 C=32 H=4", 2, 16, 32, 4, false, false, 2);
    compare("causal B=1 T=1 C=8 H=2", 1, 1, 8, 2, true, false, 3);
    compare("causal B=2 T=7 C=6 H=1", 2, 7, 6, 1, true, false, 4);
    compare("causal B=1 T=130 C=16 H=2 (3 row blocks)", 1, 130, 16, 2, true, false, 5);
    compare("full B=1 T=100 C=12 H=3", 1, 100, 12, 3, false, false, 6);
    compare("causal q=k=v one node B=2 T=9 C=8 H=2", 2, 9, 8, 2, true, true, 7);
    compare("full q=k=v one node B=2 T=9 C=8 H=2", 2, 9, 8, 2, false, true, 8);
    check_masked_reference("cross Tq=5 Tk=9 H=2, key lengths", 4, 5, 9, 2, 4, false, 11);
    check_masked_reference("cross causal Tq=3 Tk=8 (end-aligned), key lengths", 4, 3, 8, 2, 3, true, 12);
    check_masked_reference("causal Tq=Tk=70 (two row blocks), key lengths", 3, 70, 70, 2, 8, true, 13);
    check_masked_reference("causal Tq=6 > Tk=4: early rows see nothing", 2, 6, 4, 1, 4, true, 14);
    check_masked_reference("decode: Tq=1 against Tk=33, key lengths", 5, 1, 33, 4, 8, false, 15);
    check_set_batch();
    check_layer_norm_large();
    check_embedding_large();
    check_errors();
    printf("test_attention: %d passed, %d failed\n", passed, failures); /* the closing line CI reads */
    return failures ? 1 : 0;
}
