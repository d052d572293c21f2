/* recurrent.c — LSTM, GRU and tanh-RNN layers over the fused ops of src/ops/rnn.c, stacked, with initial
 * states in and final states out.
 *
 * Params are named as PyTorch's nn.LSTM / nn.GRU / nn.RNN name theirs, per stacked layer k:
 * "<name>.weight_ih_l<k>" [in, G*H], "<name>.weight_hh_l<k>" [H, G*H], "<name>.bias_ih_l<k>",
 * "<name>.bias_hh_l<k>" [G*H] (magna's weights are PyTorch's transposed, as a dense layer's are), and
 * initialised as PyTorch does: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias. */
#include "../graph/internal.h"
#include "magna/nn.h"

#include <math.h>
#include <stdio.h>

typedef enum { REC_LSTM, REC_GRU, REC_RNN } rec_kind;

static magna_node *rec_param(magna_graph *g, const char *layer, const char *what, int k, int ndim,
                             const int64_t *shape, float bound) {
    char name[64];
    int len = snprintf(name, sizeof name, "%s.%s_l%d", layer, what, k);
    if (len < 0 || (size_t)len >= sizeof name) {
        graph_error(g, MAGNA_ERR_ARG, "%s: the layer name is too long for its param names (%d bytes at most)", layer,
                    (int)sizeof name - 16);
        return NULL;
    }
    return magna_param(g, name, ndim, shape, magna_init_uniform(-bound, bound));
}

static magna_node *recurrent(magna_graph *g, rec_kind kind, const char *name, magna_node *x, int64_t units,
                             magna_recurrent_opts o) {
    static const char *const kinds[] = {"lstm", "gru", "rnn"};
    if (!g || !x) return NULL; /* the graph keeps the first error */
    if (!name) name = kinds[kind];
    char buf[SHAPE_STR_MAX];
    if (x->ndim != 3) {
        graph_error(g, MAGNA_ERR_SHAPE, "%s: %s needs x [B, T, features], got %s", name, kinds[kind],
                    shape_str(x, buf, sizeof buf));
        return NULL;
    }
    const int layers = o.num_layers ? o.num_layers : 1;
    if (units < 1 || layers < 1) {
        graph_error(g, MAGNA_ERR_ARG, "%s: %s needs units >= 1 and num_layers >= 1, got %lld and %d", name,
                    kinds[kind], (long long)units, layers);
        return NULL;
    }
    if (kind != REC_LSTM && (o.c0 || o.c_final)) {
        graph_error(g, MAGNA_ERR_ARG, "%s: only an LSTM has a cell state (c0 / c_final given to a %s)", name,
                    kinds[kind]);
        return NULL;
    }
    const int64_t G = (kind == REC_LSTM ? 4 : kind == REC_GRU ? 3 : 1) * units;
    const float bound = 1.0f / sqrtf((float)units);
    magna_node *out = NULL, *seq = x;
    for (int k = 0; k < layers; k++) {
        const int64_t in = seq->shape[2];
        magna_node *w_ih = rec_param(g, name, "weight_ih", k, 2, (int64_t[]){in, G}, bound);
        magna_node *w_hh = rec_param(g, name, "weight_hh", k, 2, (int64_t[]){units, G}, bound);
        magna_node *b_ih = o.no_bias ? NULL : rec_param(g, name, "bias_ih", k, 1, (int64_t[]){G}, bound);
        magna_node *b_hh = o.no_bias ? NULL : rec_param(g, name, "bias_hh", k, 1, (int64_t[]){G}, bound);
        if (!w_ih || !w_hh || (!o.no_bias && (!b_ih || !b_hh))) return NULL;
        magna_node *h0 = o.h0 ? o.h0[k] : NULL, *c0 = o.c0 ? o.c0[k] : NULL;
        switch (kind) {
        case REC_LSTM: out = magna_lstm(g, seq, w_ih, w_hh, b_ih, b_hh, h0, c0); break;
        case REC_GRU: out = magna_gru(g, seq, w_ih, w_hh, b_ih, b_hh, h0); break;
        case REC_RNN: out = magna_rnn_tanh(g, seq, w_ih, w_hh, b_ih, b_hh, h0); break;
        }
        if (!out) return NULL;
        if (o.h_final) o.h_final[k] = magna_rnn_final_h(g, out);
        if (o.c_final) o.c_final[k] = magna_rnn_final_c(g, out);
        /* the last layer's sequence is made only when it is returned */
        if (k + 1 < layers || !o.return_last) seq = magna_rnn_sequence(g, out);
        if (seq && k + 1 < layers && o.dropout > 0) seq = magna_dropout(g, seq, o.dropout);
        if (!seq) return NULL;
    }
    if (!o.return_last) return seq;
    return o.h_final ? o.h_final[layers - 1] : magna_rnn_final_h(g, out);
}

magna_node *magna_layer_lstm(magna_graph *g, const char *name, magna_node *x, int64_t units, magna_recurrent_opts o) {
    return recurrent(g, REC_LSTM, name, x, units, o);
}

magna_node *magna_layer_gru(magna_graph *g, const char *name, magna_node *x, int64_t units, magna_recurrent_opts o) {
    return recurrent(g, REC_GRU, name, x, units, o);
}

magna_node *magna_layer_rnn(magna_graph *g, const char *name, magna_node *x, int64_t units, magna_recurrent_opts o) {
    return recurrent(g, REC_RNN, name, x, units, o);
}
