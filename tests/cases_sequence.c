/* cases_sequence.c — gradient-check cases for the sequence ops: embedding, layer norm, attention.
 *
 * Shapes are drawn from the case seed and kept small: the check perturbs every param element twice. */
#include "gradcheck.h"

/* ---- embedding ---------------------------------------------------------------------------------- */

/* The ids input is filled after compile with ids in [0, V), V read back from the table's shape. */
static void fill_ids(magna_graph *g, uint64_t seed) {
    magna_node *table = magna_graph_find(g, "table"), *ids = magna_graph_find(g, "ids");
    gc_fill_input(ids, seed, 0.0f, (float)(magna_node_shape(table)[0] - 1));
}

/* Like fill_ids, and the last id repeats the first, so two output rows add into one table row. */
static void fill_ids_repeated(magna_graph *g, uint64_t seed) {
    fill_ids(g, seed);
    magna_node *ids = magna_graph_find(g, "ids");
    int32_t *id = magna_node_data_i32(ids);
    id[magna_node_numel(ids) - 1] = id[0];
}

/* table [V, D], ids [N] -> [N, D] */
static magna_node *build_embedding_1d(magna_graph *g, uint64_t seed) {
    const int64_t V = gc_randint(seed, 0, 2, 7), D = gc_randint(seed, 1, 1, 5), N = gc_randint(seed, 2, 2, 6);
    magna_node *table = gc_param(g, "table", 2, (int64_t[]){V, D}, -1.0f, 1.0f);
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 1, (int64_t[]){N});
    return magna_embedding(g, table, ids);
}

/* table [V, D], ids [B, T] -> [B, T, D], with B * T > V so ids must repeat. */
static magna_node *build_embedding_2d(magna_graph *g, uint64_t seed) {
    const int64_t V = gc_randint(seed, 0, 2, 4), D = gc_randint(seed, 1, 1, 4);
    const int64_t B = gc_randint(seed, 2, 2, 3), T = gc_randint(seed, 3, 3, 5);
    magna_node *table = gc_param(g, "table", 2, (int64_t[]){V, D}, -1.0f, 1.0f);
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, (int64_t[]){B, T});
    return magna_embedding(g, table, ids);
}

/* A one-row table: every id is 0, so the whole output's gradient lands in one row. */
static magna_node *build_embedding_v1(magna_graph *g, uint64_t seed) {
    const int64_t D = gc_randint(seed, 0, 1, 4), N = gc_randint(seed, 1, 1, 5);
    magna_node *table = gc_param(g, "table", 2, (int64_t[]){1, D}, -1.0f, 1.0f);
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 1, (int64_t[]){N});
    return magna_embedding(g, table, ids);
}

/* ---- layer norm --------------------------------------------------------------------------------- */

/* x gets distinct values 0.5 apart (gc_param_distinct, scaled): every row's spread stays far from 0,
 * where the normalisation bends too sharply for a finite difference. */
static void fill_ln_spread(magna_graph *g, uint64_t seed) {
    magna_node *x = magna_graph_find(g, "x");
    gc_param_distinct(x, seed);
    float *v = magna_node_data(x);
    for (int64_t i = 0; i < magna_node_numel(x); i++) v[i] *= 10.0f;
}

/* x [N, D] (or [A, N, D] when three_d), gamma and beta [D] when asked for. */
static magna_node *layer_norm_case(magna_graph *g, uint64_t seed, int64_t D, bool three_d, bool with_gamma,
                                   bool with_beta) {
    const int64_t N = gc_randint(seed, 10, 1, 4), A = gc_randint(seed, 11, 2, 3);
    magna_node *x = three_d ? gc_param(g, "x", 3, (int64_t[]){A, N, D}, -2.0f, 2.0f)
                            : gc_param(g, "x", 2, (int64_t[]){N, D}, -2.0f, 2.0f);
    magna_node *gamma = with_gamma ? gc_param(g, "gamma", 1, (int64_t[]){D}, 0.5f, 1.5f) : NULL;
    magna_node *beta = with_beta ? gc_param(g, "beta", 1, (int64_t[]){D}, -0.5f, 0.5f) : NULL;
    return magna_layer_norm(g, x, gamma, beta, 1e-5f);
}

static magna_node *build_ln_affine(magna_graph *g, uint64_t seed) {
    return layer_norm_case(g, seed, gc_randint(seed, 0, 3, 8), false, true, true);
}
static magna_node *build_ln_plain(magna_graph *g, uint64_t seed) {
    return layer_norm_case(g, seed, gc_randint(seed, 0, 3, 8), false, false, false);
}
static magna_node *build_ln_gamma_only(magna_graph *g, uint64_t seed) {
    return layer_norm_case(g, seed, gc_randint(seed, 0, 2, 6), false, true, false);
}
static magna_node *build_ln_beta_only(magna_graph *g, uint64_t seed) {
    return layer_norm_case(g, seed, gc_randint(seed, 0, 2, 6), false, false, true);
}
static magna_node *build_ln_3d(magna_graph *g, uint64_t seed) {
    return layer_norm_case(g, seed, gc_randint(seed, 0, 2, 6), true, true, true);
}
/* D = 2: each row normalises to about (+1, -1); the gradient w.r.t. x is nearly zero, through eps only. */
static magna_node *build_ln_d2(magna_graph *g, uint64_t seed) { return layer_norm_case(g, seed, 2, false, true, true); }
/* D = 1: x - mean is exactly 0, so out = beta; dx and dgamma are exactly zero, dbeta is the row sum. */
static magna_node *build_ln_d1(magna_graph *g, uint64_t seed) { return layer_norm_case(g, seed, 1, true, true, true); }

/* ---- attention ---------------------------------------------------------------------------------- */

/* q, k, v [B, T, heads * hd], each its own param, or one shared param for all three when shared. */
static magna_node *attention_case(magna_graph *g, uint64_t seed, int heads, bool causal, int t_lo, int t_hi,
                                  bool shared) {
    const int64_t B = gc_randint(seed, 0, 1, 2), T = gc_randint(seed, 1, t_lo, t_hi), hd = gc_randint(seed, 2, 1, 4);
    const int64_t shape[3] = {B, T, heads * hd};
    magna_node *q = gc_param(g, "q", 3, shape, -1.0f, 1.0f);
    if (shared) return magna_attention(g, q, q, q, heads, causal);
    magna_node *k = gc_param(g, "k", 3, shape, -1.0f, 1.0f);
    magna_node *v = gc_param(g, "v", 3, shape, -1.0f, 1.0f);
    return magna_attention(g, q, k, v, heads, causal);
}

static magna_node *build_attn_causal_h1(magna_graph *g, uint64_t s) {
    return attention_case(g, s, 1, true, 1, 5, false);
}
static magna_node *build_attn_causal_h2(magna_graph *g, uint64_t s) {
    return attention_case(g, s, 2, true, 1, 5, false);
}
static magna_node *build_attn_causal_h3(magna_graph *g, uint64_t s) {
    return attention_case(g, s, 3, true, 2, 5, false);
}
static magna_node *build_attn_full_h1(magna_graph *g, uint64_t s) {
    return attention_case(g, s, 1, false, 1, 5, false);
}
static magna_node *build_attn_full_h2(magna_graph *g, uint64_t s) {
    return attention_case(g, s, 2, false, 1, 5, false);
}
static magna_node *build_attn_t1(magna_graph *g, uint64_t s) { return attention_case(g, s, 2, true, 1, 1, false); }
/* One node as q, k and v: three backward paths add into one gradient. */
static magna_node *build_attn_shared(magna_graph *g, uint64_t s) { return attention_case(g, s, 2, true, 2, 5, true); }
static magna_node *build_attn_shared_full(magna_graph *g, uint64_t s) {
    return attention_case(g, s, 1, false, 2, 5, true);
}

/* T past one causal row block (64 rows), so blocks after the first and the tiles off the diagonal run. */
static magna_node *build_attn_causal_blocks(magna_graph *g, uint64_t seed) {
    const int64_t T = gc_randint(seed, 0, 66, 72);
    const int64_t shape[3] = {1, T, 2};
    magna_node *q = gc_param(g, "q", 3, shape, -1.0f, 1.0f);
    magna_node *k = gc_param(g, "k", 3, shape, -1.0f, 1.0f);
    magna_node *v = gc_param(g, "v", 3, shape, -1.0f, 1.0f);
    return magna_attention(g, q, k, v, 1, true);
}

/* Cross-attention: Tq queries against Tk keys (either may be the longer), optionally causal (queries
 * aligned to the end of the keys) and with per-row key lengths from 0 to Tk (a row with none outputs 0). */
static magna_node *cross_case(magna_graph *g, uint64_t seed, bool causal, bool masked) {
    const int64_t B = gc_randint(seed, 0, 2, 3), Tq = gc_randint(seed, 1, 1, 5), Tk = gc_randint(seed, 2, 1, 6);
    const int heads = gc_randint(seed, 3, 1, 2);
    const int64_t hd = gc_randint(seed, 4, 1, 3), C = heads * hd;
    magna_node *q = gc_param(g, "q", 3, (int64_t[]){B, Tq, C}, -1.0f, 1.0f);
    magna_node *k = gc_param(g, "k", 3, (int64_t[]){B, Tk, C}, -1.0f, 1.0f);
    magna_node *v = gc_param(g, "v", 3, (int64_t[]){B, Tk, C}, -1.0f, 1.0f);
    magna_node *len = masked ? magna_input(g, "key_lengths", MAGNA_I32, 1, (int64_t[]){B}) : NULL;
    return magna_attention_masked(g, q, k, v, len, heads, causal);
}
/* Lengths cover 0 (a fully masked row), Tk (no padding) and values between. */
static void fill_key_lengths(magna_graph *g, uint64_t seed) {
    magna_node *len = magna_graph_find(g, "key_lengths"), *k = magna_graph_find(g, "k");
    const int64_t B = magna_node_shape(len)[0], Tk = magna_node_shape(k)[1];
    int32_t *l = magna_node_data_i32(len);
    for (int64_t b = 0; b < B; b++) l[b] = (int32_t)gc_randint(seed, 10 + (uint64_t)b, 0, (int)Tk);
    l[0] = (int32_t)Tk;
    if (B > 2) l[B - 1] = 0;
}
static magna_node *build_attn_cross(magna_graph *g, uint64_t s) { return cross_case(g, s, false, false); }
static magna_node *build_attn_cross_causal(magna_graph *g, uint64_t s) { return cross_case(g, s, true, false); }
static magna_node *build_attn_cross_masked(magna_graph *g, uint64_t s) { return cross_case(g, s, false, true); }
static magna_node *build_attn_cross_causal_masked(magna_graph *g, uint64_t s) { return cross_case(g, s, true, true); }
/* Padding mask past one causal row block, so the column blocks start at later rows and stop at L. */
static magna_node *build_attn_masked_blocks(magna_graph *g, uint64_t seed) {
    const int64_t T = gc_randint(seed, 0, 66, 72);
    const int64_t shape[3] = {3, T, 2};
    magna_node *q = gc_param(g, "q", 3, shape, -1.0f, 1.0f);
    magna_node *k = gc_param(g, "k", 3, shape, -1.0f, 1.0f);
    magna_node *v = gc_param(g, "v", 3, shape, -1.0f, 1.0f);
    return magna_attention_masked(g, q, k, v, magna_input(g, "key_lengths", MAGNA_I32, 1, (int64_t[]){3}), 1, true);
}

const gc_case gc_cases_sequence[] = {
    {"embedding 1-D ids", build_embedding_1d, fill_ids_repeated, 0, 0, 0},
    {"embedding 2-D ids, repeated", build_embedding_2d, fill_ids, 0, 0, 0},
    {"embedding one-row table", build_embedding_v1, fill_ids, 0, 0, 0},
    {"layer_norm gamma+beta", build_ln_affine, fill_ln_spread, 0, 0, 1e-3},
    {"layer_norm no gamma/beta", build_ln_plain, fill_ln_spread, 0, 0, 1e-3},
    {"layer_norm gamma only", build_ln_gamma_only, fill_ln_spread, 0, 0, 1e-3},
    {"layer_norm beta only", build_ln_beta_only, fill_ln_spread, 0, 0, 1e-3},
    {"layer_norm 3-D x", build_ln_3d, fill_ln_spread, 0, 0, 1e-3},
    {"layer_norm D=2", build_ln_d2, fill_ln_spread, 0, 0, 1e-3},
    {"layer_norm D=1", build_ln_d1, fill_ln_spread, 0, 0, 1e-3},
    {"attention causal, 1 head", build_attn_causal_h1, NULL, 0, 0, 0},
    {"attention causal, 2 heads", build_attn_causal_h2, NULL, 0, 0, 0},
    {"attention causal, 3 heads", build_attn_causal_h3, NULL, 0, 0, 0},
    {"attention full, 1 head", build_attn_full_h1, NULL, 0, 0, 0},
    {"attention full, 2 heads", build_attn_full_h2, NULL, 0, 0, 0},
    {"attention causal, T=1", build_attn_t1, NULL, 0, 0, 0},
    {"attention causal, q=k=v shared", build_attn_shared, NULL, 0, 0, 0},
    {"attention full, q=k=v shared", build_attn_shared_full, NULL, 0, 0, 0},
    {"attention causal, T > 64 rows", build_attn_causal_blocks, NULL, 0, 0, 0},
    {"attention cross, Tq != Tk", build_attn_cross, NULL, 0, 0, 0},
    {"attention cross, causal end-aligned", build_attn_cross_causal, NULL, 0, 0, 0},
    {"attention cross, key lengths", build_attn_cross_masked, fill_key_lengths, 0, 0, 0},
    {"attention cross, causal + key lengths", build_attn_cross_causal_masked, fill_key_lengths, 0, 0, 0},
    {"attention causal + key lengths, T > 64", build_attn_masked_blocks, fill_key_lengths, 0, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
