/* magna/nn.h — layers: functions that add named params and ops to a graph and return the output node.
 *
 *   magna_node *h = magna_layer_dense(g, "dense1", x, 64, (magna_dense_opts){.activation = MAGNA_ACT_RELU});
 *
 * Params are named "<layer>.weight", "<layer>.bias" (and "<layer>.running_mean" ... for batch norm), the
 * names a checkpoint stores. A layer is just ops: every backward comes from the engine. A sequential
 * model is an array of magna_layer_spec applied in order by magna_layers_apply. */
#ifndef MAGNA_NN_H
#define MAGNA_NN_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum magna_activation {
    MAGNA_ACT_NONE = 0,
    MAGNA_ACT_RELU,
    MAGNA_ACT_LEAKY_RELU, /* slope 0.01 unless the layer says otherwise */
    MAGNA_ACT_SIGMOID,
    MAGNA_ACT_TANH,
    MAGNA_ACT_GELU,
    MAGNA_ACT_SOFTMAX, /* over the last axis; pair logits with the from-logits losses instead when training */
} magna_activation;

const char *magna_activation_name(magna_activation act);
magna_node *magna_layer_activation(magna_graph *g, magna_node *x, magna_activation act, float slope);

/* Default initialisation of dense and conv layers (weights and biases left to the layer):
 * KERAS (the zero value): weights Glorot uniform, He for ReLU layers (uniform in dense, normal in conv);
 *        biases zero.
 * TORCH: PyTorch's nn.Linear / nn.Conv2d defaults: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 *        (kaiming_uniform with a = sqrt(5)), fan_in = inputs (dense) or in_channels kh kw (conv). */
typedef enum magna_init_scheme { MAGNA_INIT_KERAS = 0, MAGNA_INIT_TORCH } magna_init_scheme;

typedef struct magna_dense_opts {
    magna_activation activation;
    bool no_bias;
    magna_init_scheme init; /* used where kernel_init / bias_init are left at their zero value */
    magna_init kernel_init; /* zero value: Glorot uniform (He uniform for ReLU layers), as Keras */
    magna_init bias_init;   /* zero value: zeros */
    float l2;               /* lambda of this layer's lambda/2 ||W||^2 term, added to the loss by the model */
} magna_dense_opts;

/* x [..., in] -> [..., units]: x W + b, W [in, units]. */
magna_node *magna_layer_dense(magna_graph *g, const char *name, magna_node *x, int64_t units, magna_dense_opts opts);

typedef struct magna_conv2d_layer_opts {
    int kernel;          /* square kernel size */
    int stride;          /* 0 means 1 */
    bool same;           /* "same" padding (output size ceil(in / stride)) instead of "valid" */
    int dilation;        /* 0 means 1 */
    magna_activation activation;
    bool no_bias;
    float l2;
    magna_init_scheme init;
} magna_conv2d_layer_opts;

/* x [N, C, H, W] -> [N, filters, OH, OW]; weight [filters, C, k, k], He-normal init (opts.init KERAS). */
magna_node *magna_layer_conv2d(magna_graph *g, const char *name, magna_node *x, int64_t filters,
                               magna_conv2d_layer_opts opts);
/* Batch norm over channels (dim 1) with learnable scale and shift and running statistics as state. */
magna_node *magna_layer_batch_norm(magna_graph *g, const char *name, magna_node *x, float momentum, float eps);
/* Layer norm over the last axis with learnable scale and shift. */
magna_node *magna_layer_layer_norm(magna_graph *g, const char *name, magna_node *x, float eps);
/* [N, C, H, W] -> [N, C]: the mean over H and W. */
magna_node *magna_layer_global_avg_pool2d(magna_graph *g, magna_node *x);
/* ids int32 [...] -> [..., dim], table [vocab, dim] initialised N(0, 1) as Keras's uniform is not. */
magna_node *magna_layer_embedding(magna_graph *g, const char *name, magna_node *ids, int64_t vocab, int64_t dim);

/* ---- sequential models: a layer is a value ------------------------------------------------------ */

typedef enum magna_layer_kind {
    MAGNA_LAYER_DENSE = 1,
    MAGNA_LAYER_ACTIVATION,
    MAGNA_LAYER_DROPOUT,
    MAGNA_LAYER_CONV2D,
    MAGNA_LAYER_MAX_POOL2D,
    MAGNA_LAYER_AVG_POOL2D,
    MAGNA_LAYER_GLOBAL_AVG_POOL2D,
    MAGNA_LAYER_FLATTEN,
    MAGNA_LAYER_BATCH_NORM,
    MAGNA_LAYER_LAYER_NORM,
    MAGNA_LAYER_EMBEDDING,
    MAGNA_LAYER_LSTM, MAGNA_LAYER_GRU, MAGNA_LAYER_RNN, /* recurrent layers (below) */
} magna_layer_kind;

typedef struct magna_layer_spec {
    magna_layer_kind kind;
    const char *name;    /* NULL: "<kind><index>", e.g. "dense1" */
    int64_t units;       /* dense units, conv filters, embedding dim */
    int64_t vocab;       /* embedding */
    magna_activation activation;
    float rate;          /* dropout probability; leaky-relu slope */
    int kernel, stride;  /* conv and pooling */
    bool same;           /* conv padding */
    float l2;            /* dense and conv */
    bool return_last;    /* recurrent: the final h [B, units] instead of the sequence */
    magna_init_scheme init; /* dense and conv */
} magna_layer_spec;

#define MAGNA_DENSE(n, act) ((magna_layer_spec){.kind = MAGNA_LAYER_DENSE, .units = (n), .activation = (act)})
#define MAGNA_DROPOUT(p) ((magna_layer_spec){.kind = MAGNA_LAYER_DROPOUT, .rate = (p)})
#define MAGNA_ACTIVATION(act) ((magna_layer_spec){.kind = MAGNA_LAYER_ACTIVATION, .activation = (act)})
#define MAGNA_CONV2D(f, k, act)                                                                                    \
    ((magna_layer_spec){.kind = MAGNA_LAYER_CONV2D, .units = (f), .kernel = (k), .same = true, .activation = (act)})
#define MAGNA_MAX_POOL2D(k) ((magna_layer_spec){.kind = MAGNA_LAYER_MAX_POOL2D, .kernel = (k)})
#define MAGNA_AVG_POOL2D(k) ((magna_layer_spec){.kind = MAGNA_LAYER_AVG_POOL2D, .kernel = (k)})
#define MAGNA_GLOBAL_AVG_POOL2D() ((magna_layer_spec){.kind = MAGNA_LAYER_GLOBAL_AVG_POOL2D})
#define MAGNA_FLATTEN() ((magna_layer_spec){.kind = MAGNA_LAYER_FLATTEN})
#define MAGNA_BATCH_NORM() ((magna_layer_spec){.kind = MAGNA_LAYER_BATCH_NORM})
#define MAGNA_LAYER_NORM() ((magna_layer_spec){.kind = MAGNA_LAYER_LAYER_NORM})
#define MAGNA_EMBEDDING(v, d) ((magna_layer_spec){.kind = MAGNA_LAYER_EMBEDDING, .vocab = (v), .units = (d)})

const char *magna_layer_kind_name(magna_layer_kind kind);
/* Applies layers[0..count) to x in order; NULL with the graph's error set on a bad spec or shape. */
magna_node *magna_layers_apply(magna_graph *g, magna_node *x, const magna_layer_spec *layers, int count);

/* ---- attention and transformers ------------------------------------------------------------------ */

typedef enum magna_position_kind {
    MAGNA_POS_LEARNED = 0, /* a trained table "<name>.weight" [max_len, D], N(0, 0.02) as GPT-2 */
    MAGNA_POS_SINUSOIDAL,  /* the fixed sin/cos table of "Attention is all you need", the state "<name>.table" */
} magna_position_kind;

/* x [B, T, D] -> x + P[0..T), or x + P[positions] when positions (int32 [T], unbatched) is given: the
 * positions of the tokens in x, e.g. the one position being decoded. */
magna_node *magna_layer_positional(magna_graph *g, const char *name, magna_node *x, int64_t max_len,
                                   magna_position_kind kind, magna_node *positions);

/* One attention layer's key/value cache for decoding one token at a time (Tq = 1). The caller owns the
 * cache: k_past and v_past are inputs [B, max_len, D] holding the earlier positions' keys and values in
 * rows 0..n-1, lengths an int32 input [B] holding n + 1. The layer sets k_new and v_new ([B, 1, D], kept
 * after forward) to this token's key and value, which the caller copies to row n afterwards. The new key
 * goes first in the attended sequence (attention does not depend on the order of the keys), so the keys
 * seen are exactly rows 0..n of [new, past]. */
typedef struct magna_kv_cache_slot {
    magna_node *k_past, *v_past, *lengths;
    magna_node *k_new, *v_new;
} magna_kv_cache_slot;

typedef struct magna_attention_opts {
    int heads;
    bool causal;
    magna_node *key_lengths;    /* int32 [B]: padding mask on the keys (batch row b sees keys 0..len-1), or NULL */
    magna_kv_cache_slot *cache; /* decoding with a cache (self-attention only), or NULL */
    float init_std;             /* q, k, v, out weights N(0, std); 0: Glorot uniform */
    float out_init_std;         /* the output projection's std when set (GPT-2 scales it by 1/sqrt(2 layers)) */
} magna_attention_opts;

/* Multi-head attention: x_q [B, Tq, D] attends to x_kv [B, Tk, D] (x_q itself for self-attention, an
 * encoder's output for cross-attention). Params "<name>.q", ".k", ".v", ".out", each a dense [D, D] + bias. */
magna_node *magna_layer_multi_head_attention(magna_graph *g, const char *name, magna_node *x_q, magna_node *x_kv,
                                             magna_attention_opts opts);

typedef struct magna_transformer_opts {
    int heads;
    int64_t d_ff;               /* the MLP's hidden width; 0 means 4 D */
    float dropout;              /* on each residual branch, in training */
    magna_activation activation; /* the MLP's; 0 means GELU */
    magna_node *key_lengths;    /* self-attention padding mask (encoder) */
    magna_node *memory_lengths; /* cross-attention padding mask (decoder) */
    float init_std;             /* 0 means 0.02, as GPT-2 */
    int depth;                  /* blocks in the stack: residual projections get init_std / sqrt(2 depth) */
    magna_kv_cache_slot *cache; /* decoder self-attention while decoding, or NULL */
} magna_transformer_opts;

/* Pre-LN encoder block, x [B, T, D]: h = x + SelfAttention(LN(x)); out = h + MLP(LN(h)). */
magna_node *magna_layer_transformer_encoder(magna_graph *g, const char *name, magna_node *x,
                                            magna_transformer_opts opts);
/* Pre-LN decoder block: h = x + CausalSelfAttention(LN(x)); h += CrossAttention(LN(h), memory) when memory
 * [B, S, D] is given (NULL: a GPT block); out = h + MLP(LN(h)). */
magna_node *magna_layer_transformer_decoder(magna_graph *g, const char *name, magna_node *x, magna_node *memory,
                                            magna_transformer_opts opts);

typedef struct magna_gpt_config {
    int64_t vocab, context, d_model;
    int heads, layers;
    int64_t d_ff;                  /* 0: 4 d_model */
    float dropout;
    magna_position_kind positions; /* learned (GPT-2) or sinusoidal */
    /* 0 or 1: the embedding has `vocab` rows. N > 1: its rows are rounded up to a multiple of N (GPT-2 124M:
     * 50257 -> 50304 with 128, for matmuls of friendlier sizes), so the logits are [B, T, padded]; the padded
     * ids are never targets (the data has none) and never sampled (the generator draws from the first vocab). */
    int64_t pad_vocab;
} magna_gpt_config;

/* The embedding's rows (and the logits' width) of a GPT: vocab rounded up to a multiple of pad_vocab. */
int64_t magna_gpt_padded_vocab(const magna_gpt_config *cfg);

/* A GPT: ids int32 [B, T] (T <= context) -> logits [B, T, vocab]. Token embedding "<name>.wte" [vocab, D]
 * is also the output projection (tied, as GPT-2), positions "<name>.wpe", blocks "<name>.h0" ..., final
 * layer norm "<name>.ln_f". Training: positions and cache NULL. Decoding one token (T = 1): positions an
 * int32 input [1] with its position and cache an array of cfg->layers slots. */
magna_node *magna_gpt(magna_graph *g, const char *name, magna_node *ids, const magna_gpt_config *cfg,
                      magna_node *positions, magna_kv_cache_slot *cache);

/* ---- recurrent layers (src/nn/recurrent.c) ------------------------------------------------------ */

typedef struct magna_recurrent_opts {
    int num_layers;          /* stacked layers, each fed the h sequence of the one before; 0 means 1 */
    bool return_last;        /* return the last layer's final h [B, H] instead of its sequence [B, T, H] */
    bool no_bias;
    float dropout;           /* dropout on each layer's output sequence but the last, as PyTorch's */
    magna_node *const *h0;   /* NULL, or num_layers initial h nodes [B, H] (an entry may be NULL: zeros) */
    magna_node *const *c0;   /* LSTM only: the same for c */
    magna_node **h_final;    /* when not NULL: receives num_layers final-h nodes [B, H], with gradients */
    magna_node **c_final;    /* LSTM only: the same for c */
} magna_recurrent_opts;

/* x [B, T, in] -> [B, T, units] (or [B, units] with return_last). Params per stacked layer k, named as
 * PyTorch's: "<name>.weight_ih_l<k>" [in, G*units], "<name>.weight_hh_l<k>" [units, G*units],
 * "<name>.bias_ih_l<k>", "<name>.bias_hh_l<k>" [G*units] (G = 4, 3, 1; PyTorch's weights transposed),
 * all initialised U(-1/sqrt(units), 1/sqrt(units)) as PyTorch does. Gate order and formulas: magna_lstm. */
magna_node *magna_layer_lstm(magna_graph *g, const char *name, magna_node *x, int64_t units, magna_recurrent_opts opts);
magna_node *magna_layer_gru(magna_graph *g, const char *name, magna_node *x, int64_t units, magna_recurrent_opts opts);
magna_node *magna_layer_rnn(magna_graph *g, const char *name, magna_node *x, int64_t units, magna_recurrent_opts opts);

/* Sequential specs: one layer each, returning the sequence ([B, T, units]); the _LAST forms return the
 * final h [B, units] (e.g. before a dense classifier). */
#define MAGNA_LSTM(n) ((magna_layer_spec){.kind = MAGNA_LAYER_LSTM, .units = (n)})
#define MAGNA_GRU(n) ((magna_layer_spec){.kind = MAGNA_LAYER_GRU, .units = (n)})
#define MAGNA_RNN(n) ((magna_layer_spec){.kind = MAGNA_LAYER_RNN, .units = (n)})
#define MAGNA_LSTM_LAST(n) ((magna_layer_spec){.kind = MAGNA_LAYER_LSTM, .units = (n), .return_last = true})
#define MAGNA_GRU_LAST(n) ((magna_layer_spec){.kind = MAGNA_LAYER_GRU, .units = (n), .return_last = true})
#define MAGNA_RNN_LAST(n) ((magna_layer_spec){.kind = MAGNA_LAYER_RNN, .units = (n), .return_last = true})

#ifdef __cplusplus
}
#endif
#endif
