/* transformer.c — multi-head attention, position tables, pre-LN encoder and decoder blocks and a GPT,
 * all composed from engine ops (every backward is the engine's, gradient-checked op by op).
 *
 * Initialisation follows GPT-2 (and nanoGPT, which the PyTorch bench mirrors): weights N(0, 0.02), the
 * projections that end a residual branch N(0, 0.02 / sqrt(2 * depth)), biases zero, layer norms (1, 0). */
#include "internal.h"

#include <math.h>
#include <stdio.h>

/* x [..., D_in] @ W [D_in, out] + b, params "<layer>.<what>.weight" / ".bias". */
static magna_node *projection(magna_graph *g, const char *layer, const char *what, magna_node *x, int64_t out,
                              float std) {
    char name[64];
    snprintf(name, sizeof name, "%s.%s", layer, what);
    if (!x) return NULL;
    const int64_t in = x->shape[x->ndim - 1];
    magna_node *w = nn_param(g, name, "weight", 2, (int64_t[]){in, out},
                             std > 0 ? magna_init_normal(0.0f, std) : magna_init_xavier_uniform(), 0);
    magna_node *b = nn_param(g, name, "bias", 1, (int64_t[]){out}, magna_init_zeros(), 0);
    return magna_add(g, magna_matmul(g, x, w, false, false), b);
}

static magna_node *maybe_dropout(magna_graph *g, magna_node *x, float p) { return p > 0 ? magna_dropout(g, x, p) : x; }

magna_node *magna_layer_positional(magna_graph *g, const char *name, magna_node *x, int64_t max_len,
                                   magna_position_kind kind, magna_node *positions) {
    if (!nn_check_input(g, name, x, 3, 3)) return NULL;
    const int64_t T = x->shape[1], D = x->shape[2];
    if (max_len < 1 || (!positions && T > max_len)) {
        graph_error(g, MAGNA_ERR_SHAPE, "%s: a sequence of %lld positions does not fit a table of %lld", name,
                    (long long)T, (long long)max_len);
        return NULL;
    }
    magna_node *table;
    if (kind == MAGNA_POS_SINUSOIDAL) {
        char state[64];
        snprintf(state, sizeof state, "%s.table", name);
        table = magna_state(g, state, 2, (int64_t[]){max_len, D}, magna_init_sinusoidal());
    } else if (kind == MAGNA_POS_LEARNED) {
        table = nn_param(g, name, "weight", 2, (int64_t[]){max_len, D}, magna_init_normal(0.0f, 0.02f), 0);
    } else {
        graph_error(g, MAGNA_ERR_ARG, "%s: unknown position kind %d", name, (int)kind);
        return NULL;
    }
    magna_node *p = positions ? magna_embedding(g, table, positions) : magna_slice(g, table, 0, 0, T, 1);
    return magna_add(g, x, p);
}

magna_node *magna_layer_multi_head_attention(magna_graph *g, const char *name, magna_node *x_q, magna_node *x_kv,
                                             magna_attention_opts o) {
    if (!nn_check_input(g, name, x_q, 3, 3) || !nn_check_input(g, name, x_kv, 3, 3)) return NULL;
    const int64_t D = x_q->shape[2];
    if (o.heads < 1 || D % o.heads != 0) {
        graph_error(g, MAGNA_ERR_ARG, "%s: %d heads must divide the model width %lld", name, o.heads, (long long)D);
        return NULL;
    }
    const float std = o.init_std, out_std = o.out_init_std > 0 ? o.out_init_std : o.init_std;
    magna_node *q = projection(g, name, "q", x_q, D, std);
    magna_node *k = projection(g, name, "k", x_kv, D, std);
    magna_node *v = projection(g, name, "v", x_kv, D, std);
    magna_node *att;
    if (o.cache) {
        magna_kv_cache_slot *c = o.cache;
        if (x_q != x_kv || !c->k_past || !c->v_past || !c->lengths) {
            graph_error(g, MAGNA_ERR_ARG, "%s: a KV cache needs self-attention and its k_past, v_past and lengths",
                        name);
            return NULL;
        }
        c->k_new = k, c->v_new = v;
        magna_graph_keep(g, k), magna_graph_keep(g, v);
        magna_node *ks[2] = {k, c->k_past}, *vs[2] = {v, c->v_past};
        att = magna_attention_masked(g, q, magna_concat(g, 2, ks, 1), magna_concat(g, 2, vs, 1), c->lengths, o.heads,
                                     false);
    } else {
        att = magna_attention_masked(g, q, k, v, o.key_lengths, o.heads, o.causal);
    }
    return projection(g, name, "out", att, D, out_std);
}

/* The residual branches' settings from the block's options. */
static magna_attention_opts branch_attention(const magna_transformer_opts *o, float std, float out_std) {
    return (magna_attention_opts){.heads = o->heads, .init_std = std, .out_init_std = out_std};
}

static magna_node *mlp(magna_graph *g, const char *block, magna_node *x, const magna_transformer_opts *o, float std,
                       float out_std) {
    char name[64];
    snprintf(name, sizeof name, "%s.mlp", block);
    if (!x) return NULL;
    const int64_t D = x->shape[x->ndim - 1], ff = o->d_ff > 0 ? o->d_ff : 4 * D;
    magna_node *h = projection(g, name, "fc", x, ff, std);
    h = magna_layer_activation(g, h, o->activation ? o->activation : MAGNA_ACT_GELU, 0);
    return projection(g, name, "proj", h, D, out_std);
}

static magna_node *block_ln(magna_graph *g, const char *block, const char *what, magna_node *x) {
    char name[64];
    snprintf(name, sizeof name, "%s.%s", block, what);
    return magna_layer_layer_norm(g, name, x, 1e-5f);
}

static void block_stds(const magna_transformer_opts *o, float *std, float *out_std) {
    *std = o->init_std > 0 ? o->init_std : 0.02f;
    *out_std = *std / sqrtf(2.0f * (float)(o->depth > 0 ? o->depth : 1));
}

/* x + dropout(attention(LN(x), kv)), params "<block>.<what>" and the norm "<block>.<ln>"; kv NULL attends to
 * LN(x) itself (self-attention). */
static magna_node *attention_branch(magna_graph *g, const char *block, const char *what, const char *ln, magna_node *x,
                                    magna_node *kv, magna_attention_opts ao, float dropout) {
    char att[64];
    snprintf(att, sizeof att, "%s.%s", block, what);
    magna_node *h = block_ln(g, block, ln, x);
    return magna_add(g, x, maybe_dropout(g, magna_layer_multi_head_attention(g, att, h, kv ? kv : h, ao), dropout));
}

/* x + dropout(MLP(LN(x))), the norm "<block>.ln2". */
static magna_node *mlp_branch(magna_graph *g, const char *block, magna_node *x, const magna_transformer_opts *o,
                              float std, float out_std) {
    return magna_add(g, x, maybe_dropout(g, mlp(g, block, block_ln(g, block, "ln2", x), o, std, out_std), o->dropout));
}

magna_node *magna_layer_transformer_encoder(magna_graph *g, const char *name, magna_node *x,
                                            magna_transformer_opts o) {
    if (!nn_check_input(g, name, x, 3, 3)) return NULL;
    float std, out_std;
    block_stds(&o, &std, &out_std);
    magna_attention_opts ao = branch_attention(&o, std, out_std);
    ao.key_lengths = o.key_lengths;
    x = attention_branch(g, name, "attn", "ln1", x, NULL, ao, o.dropout);
    return mlp_branch(g, name, x, &o, std, out_std);
}

magna_node *magna_layer_transformer_decoder(magna_graph *g, const char *name, magna_node *x, magna_node *memory,
                                            magna_transformer_opts o) {
    if (!nn_check_input(g, name, x, 3, 3)) return NULL;
    float std, out_std;
    block_stds(&o, &std, &out_std);
    magna_attention_opts ao = branch_attention(&o, std, out_std);
    ao.causal = true, ao.cache = o.cache;
    x = attention_branch(g, name, "attn", "ln1", x, NULL, ao, o.dropout);
    if (memory) {
        magna_attention_opts co = branch_attention(&o, std, out_std);
        co.key_lengths = o.memory_lengths;
        x = attention_branch(g, name, "cross", "ln_cross", x, memory, co, o.dropout);
    }
    return mlp_branch(g, name, x, &o, std, out_std);
}

int64_t magna_gpt_padded_vocab(const magna_gpt_config *c) {
    const int64_t m = c->pad_vocab > 1 ? c->pad_vocab : 1;
    return (c->vocab + m - 1) / m * m;
}

magna_node *magna_gpt(magna_graph *g, const char *name, magna_node *ids, const magna_gpt_config *c,
                      magna_node *positions, magna_kv_cache_slot *cache) {
    if (!nn_check_input(g, name, ids, 2, 2)) return NULL;
    if (c->vocab < 1 || c->context < 1 || c->d_model < 1 || c->heads < 1 || c->layers < 1) {
        graph_error(g, MAGNA_ERR_ARG, "%s: vocab, context, d_model, heads and layers must all be >= 1", name);
        return NULL;
    }
    if (c->pad_vocab < 0) {
        graph_error(g, MAGNA_ERR_ARG, "%s: pad_vocab is %lld: 0 (none) or the multiple the vocabulary is padded to",
                    name, (long long)c->pad_vocab);
        return NULL;
    }
    if (cache && (!positions || ids->shape[1] != 1)) {
        graph_error(g, MAGNA_ERR_ARG, "%s: decoding with a KV cache takes one token (ids [B, 1]) and its position",
                    name);
        return NULL;
    }
    char part[64];
    snprintf(part, sizeof part, "%s.wte", name);
    magna_node *wte = nn_param(g, part, "weight", 2, (int64_t[]){magna_gpt_padded_vocab(c), c->d_model}, magna_init_normal(0.0f, 0.02f), 0);
    magna_node *x = magna_embedding(g, wte, ids);
    snprintf(part, sizeof part, "%s.wpe", name);
    x = maybe_dropout(g, magna_layer_positional(g, part, x, c->context, c->positions, positions), c->dropout);
    for (int l = 0; l < c->layers; l++) {
        snprintf(part, sizeof part, "%s.h%d", name, l);
        x = magna_layer_transformer_decoder(
            g, part, x, NULL,
            (magna_transformer_opts){.heads = c->heads, .d_ff = c->d_ff, .dropout = c->dropout, .depth = c->layers,
                                     .cache = cache ? &cache[l] : NULL});
    }
    snprintf(part, sizeof part, "%s.ln_f", name);
    x = magna_layer_layer_norm(g, part, x, 1e-5f);
    return magna_matmul(g, x, wte, false, true); /* tied: logits = x wte^T */
}
