/* magna/ops.h — the ops a graph is built from. Each returns a new node, or NULL with the graph's error
 * set (the op's name and the shapes it was given). Every op here has a forward and a backward on the
 * CPU; tests/test_gradcheck.c checks each backward against central finite differences. */
#ifndef MAGNA_OPS_H
#define MAGNA_OPS_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- matrix products ---------------------------------------------------------------------------- */

/* a [..., M, K] @ b [..., K, N] -> [..., M, N] (transposes swap the last two dims of an operand).
 * Leading (batch) dims must match, or b may be 2-D: one weight shared by every row of a. */
magna_node *magna_matmul(magna_graph *g, magna_node *a, magna_node *b, bool transpose_a, bool transpose_b);

/* ---- elementwise with broadcasting (NumPy rules) ------------------------------------------------ */

magna_node *magna_add(magna_graph *g, magna_node *a, magna_node *b);
magna_node *magna_sub(magna_graph *g, magna_node *a, magna_node *b);
magna_node *magna_mul(magna_graph *g, magna_node *a, magna_node *b);
magna_node *magna_div(magna_graph *g, magna_node *a, magna_node *b);
magna_node *magna_pow(magna_graph *g, magna_node *a, magna_node *b); /* a > 0 where b is not an integer */

/* ---- scalar ops --------------------------------------------------------------------------------- */

magna_node *magna_scale(magna_graph *g, magna_node *x, float s);      /* x * s */
magna_node *magna_add_scalar(magna_graph *g, magna_node *x, float s); /* x + s */
magna_node *magna_pow_scalar(magna_graph *g, magna_node *x, float p); /* x ^ p */

/* ---- unary -------------------------------------------------------------------------------------- */

magna_node *magna_abs(magna_graph *g, magna_node *x);
magna_node *magna_relu(magna_graph *g, magna_node *x);
magna_node *magna_leaky_relu(magna_graph *g, magna_node *x, float slope);
magna_node *magna_sigmoid(magna_graph *g, magna_node *x);
magna_node *magna_tanh(magna_graph *g, magna_node *x);
magna_node *magna_gelu(magna_graph *g, magna_node *x);      /* exact: x * Phi(x), as PyTorch's default */
magna_node *magna_gelu_tanh(magna_graph *g, magna_node *x); /* the tanh approximation (GPT-2) */
magna_node *magna_exp(magna_graph *g, magna_node *x);
magna_node *magna_log(magna_graph *g, magna_node *x);
magna_node *magna_sqrt(magna_graph *g, magna_node *x);
magna_node *magna_softmax(magna_graph *g, magna_node *x);     /* over the last axis */
magna_node *magna_log_softmax(magna_graph *g, magna_node *x); /* over the last axis */

/* ---- reductions --------------------------------------------------------------------------------- */

/* Over the axes whose bits are set in axes_mask (bit i = axis i; negative axes: use magna_axis_bit);
 * MAGNA_ALL_AXES reduces to a scalar. keepdims keeps reduced axes as size 1. */
#define MAGNA_ALL_AXES 0xFFu
static inline unsigned magna_axis_bit(int axis, int ndim) { return 1u << (axis < 0 ? axis + ndim : axis); }
magna_node *magna_sum(magna_graph *g, magna_node *x, unsigned axes_mask, bool keepdims);
magna_node *magna_mean(magna_graph *g, magna_node *x, unsigned axes_mask, bool keepdims);
magna_node *magna_max(magna_graph *g, magna_node *x, unsigned axes_mask, bool keepdims);

/* ---- shape -------------------------------------------------------------------------------------- */

/* One entry may be -1 (inferred). A reshape that keeps dimension 0 follows set_batch when written
 * with -1 or 0 there (0 copies the input's dimension). No copy: the output shares the input's memory. */
magna_node *magna_reshape(magna_graph *g, magna_node *x, int ndim, const int64_t *shape);
magna_node *magna_flatten(magna_graph *g, magna_node *x); /* [N, ...] -> [N, rest] */
magna_node *magna_permute(magna_graph *g, magna_node *x, const int *perm); /* out dim i = in dim perm[i] */
magna_node *magna_transpose(magna_graph *g, magna_node *x, int axis0, int axis1);
/* x[..., start:end:step, ...] along one axis (negative start/end count from the end). */
magna_node *magna_slice(magna_graph *g, magna_node *x, int axis, int64_t start, int64_t end, int64_t step);
magna_node *magna_concat(magna_graph *g, int count, magna_node *const *xs, int axis);

/* ---- layers as ops ------------------------------------------------------------------------------ */

/* table [V, D], ids int32 [...] -> [..., D]. An id outside [0, V) fails forward with its position. */
magna_node *magna_embedding(magna_graph *g, magna_node *table, magna_node *ids);

/* Over the last axis; gamma and beta are [D] (either may be NULL). */
magna_node *magna_layer_norm(magna_graph *g, magna_node *x, magna_node *gamma, magna_node *beta, float eps);

/* x [N, C] or [N, C, H, W]; gamma, beta [C] (may be NULL); running_mean, running_var [C] are state
 * nodes (magna_state) updated in training mode with momentum (PyTorch's convention: new = (1-m) old +
 * m batch, unbiased variance), used instead of batch statistics when not training. */
magna_node *magna_batch_norm(magna_graph *g, magna_node *x, magna_node *gamma, magna_node *beta,
                             magna_node *running_mean, magna_node *running_var, float momentum, float eps);

typedef struct magna_conv2d_opts {
    int stride_h, stride_w;     /* 0 means 1 */
    int pad_h, pad_w;           /* zero padding on each side */
    int dilation_h, dilation_w; /* 0 means 1 */
} magna_conv2d_opts;

/* x [N, C, H, W], w [OC, C, KH, KW], bias [OC] or NULL -> [N, OC, OH, OW]. */
magna_node *magna_conv2d(magna_graph *g, magna_node *x, magna_node *w, magna_node *bias, magna_conv2d_opts opts);

typedef struct magna_pool2d_opts {
    int kernel_h, kernel_w;
    int stride_h, stride_w; /* 0 means the kernel size */
    int pad_h, pad_w;       /* max pool pads with -inf; average pool counts only real pixels */
} magna_pool2d_opts;

magna_node *magna_max_pool2d(magna_graph *g, magna_node *x, magna_pool2d_opts opts);
magna_node *magna_avg_pool2d(magna_graph *g, magna_node *x, magna_pool2d_opts opts);

/* Inverted dropout: zeroes each element with probability p and scales the rest by 1/(1-p) in training
 * mode; the identity otherwise. The mask is a function of (graph seed, node, rng step, element). */
magna_node *magna_dropout(magna_graph *g, magna_node *x, float p);

/* Causal (or not) multi-head attention core: q, k, v [B, T, C] with C = heads * head_dim
 * -> softmax(q k^T / sqrt(head_dim), masked) v, heads side by side in [B, T, C]. */
magna_node *magna_attention(magna_graph *g, magna_node *q, magna_node *k, magna_node *v, int heads, bool causal);
/* The general form: q [B, Tq, C] attends to k, v [B, Tk, C] (cross-attention when they come from another
 * sequence). key_lengths, int32 [B] or NULL, masks padding: batch row b sees only keys 0..key_lengths[b]-1
 * (a row that sees none outputs zeros). When causal, query i sees keys j <= i + Tk - Tq: the queries are
 * the last Tq positions of the keys' sequence (decoding one token against a cache: Tq = 1). */
magna_node *magna_attention_masked(magna_graph *g, magna_node *q, magna_node *k, magna_node *v,
                                   magna_node *key_lengths, int heads, bool causal);

/* ---- losses (scalar, mean over elements or rows) ------------------------------------------------ */

magna_node *magna_mse(magna_graph *g, magna_node *pred, magna_node *target);
/* logits [N, C] (or [..., C]), labels int32 [N] (or [...]): mean of -log softmax(logits)[label] over the
 * rows whose label is not MAGNA_IGNORE_LABEL (padded positions of a batch of sequences; PyTorch's
 * ignore_index). All rows ignored: the loss is 0. */
#define MAGNA_IGNORE_LABEL (-1)
magna_node *magna_cross_entropy(magna_graph *g, magna_node *logits, magna_node *labels);
/* The same with each row's loss scaled by class_weights[label] (float32 [C], an input or constant):
 * sum_i w[y_i] l_i / rows, as Keras's class_weight. */
magna_node *magna_cross_entropy_weighted(magna_graph *g, magna_node *logits, magna_node *labels,
                                         magna_node *class_weights);
/* logits and float targets in [0, 1], same shape: mean binary cross-entropy, computed stably. */
magna_node *magna_bce_with_logits(magna_graph *g, magna_node *logits, magna_node *targets);

/* ---- recurrent layers as fused ops (src/ops/rnn.c) ------------------------------------------------ */

/* One op runs the whole sequence. x [B, T, I]; w_ih [I, G*H], w_hh [H, G*H]; b_ih, b_hh [G*H] as PyTorch's
 * two biases (both, or both NULL); h0 (and the LSTM's c0) [B, H] or NULL for zeros. Gates are in PyTorch's
 * order, side by side in the G*H columns: LSTM i, f, g, o (G = 4); GRU r, z, n (G = 3) with
 * n = tanh(x W_in + b_in + r * (h W_hn + b_hn)); the RNN h = tanh(x W_ih + b_ih + h W_hh + b_hh) (G = 1).
 * PyTorch's weight_ih is [G*H, I]: magna's w_ih is its transpose, as a dense weight is.
 * The LSTM's output is [B, T, 2, H] (h and c of every step); the GRU's and RNN's [B, T, H] (h). */
magna_node *magna_lstm(magna_graph *g, magna_node *x, magna_node *w_ih, magna_node *w_hh, magna_node *b_ih,
                       magna_node *b_hh, magna_node *h0, magna_node *c0);
magna_node *magna_gru(magna_graph *g, magna_node *x, magna_node *w_ih, magna_node *w_hh, magna_node *b_ih,
                      magna_node *b_hh, magna_node *h0);
magna_node *magna_rnn_tanh(magna_graph *g, magna_node *x, magna_node *w_ih, magna_node *w_hh, magna_node *b_ih,
                           magna_node *b_hh, magna_node *h0);
/* Of such an output: the h sequence [B, T, H], the last step's h [B, H], the LSTM's last c [B, H]. These
 * are slices, so gradients into them reach the op (stacking, truncated BPTT, carried state). */
magna_node *magna_rnn_sequence(magna_graph *g, magna_node *out);
magna_node *magna_rnn_final_h(magna_graph *g, magna_node *out);
magna_node *magna_rnn_final_c(magna_graph *g, magna_node *out);

#ifdef __cplusplus
}
#endif
#endif
