/* cases_recurrent.c — gradient-check cases for the fused recurrent ops: LSTM, GRU and the tanh RNN, with
 * and without initial states and biases, T = 1, B = 1, odd sizes, and through the final-state slices.
 *
 * Weights are drawn from U(-0.6, 0.6) so the gates sit in their curved range, not saturated. */
#include "gradcheck.h"

typedef enum { K_LSTM, K_GRU, K_RNN } kind;

typedef struct rc_opts {
    kind kind;
    bool h0, c0, bias, x_input; /* x_input: x is data (no gradient), not a param */
    int b_fixed, t_fixed;       /* 0: drawn */
    int out;                    /* 0 the op's output, 1 final h, 2 final c, 3 the h sequence */
} rc_opts;

static magna_node *rc_build(magna_graph *g, uint64_t seed, rc_opts o) {
    const int64_t B = o.b_fixed ? o.b_fixed : gc_randint(seed, 0, 1, 3);
    const int64_t T = o.t_fixed ? o.t_fixed : gc_randint(seed, 1, 2, 5);
    const int64_t I = gc_randint(seed, 2, 1, 5), H = gc_randint(seed, 3, 1, 5);
    const int64_t G = (o.kind == K_LSTM ? 4 : o.kind == K_GRU ? 3 : 1) * H;
    const float w = 0.6f;
    magna_node *x = o.x_input ? magna_input(g, "x", MAGNA_F32, 3, (int64_t[]){B, T, I})
                              : gc_param(g, "x", 3, (int64_t[]){B, T, I}, -1.0f, 1.0f);
    magna_node *w_ih = gc_param(g, "w_ih", 2, (int64_t[]){I, G}, -w, w);
    magna_node *w_hh = gc_param(g, "w_hh", 2, (int64_t[]){H, G}, -w, w);
    magna_node *b_ih = o.bias ? gc_param(g, "b_ih", 1, (int64_t[]){G}, -w, w) : NULL;
    magna_node *b_hh = o.bias ? gc_param(g, "b_hh", 1, (int64_t[]){G}, -w, w) : NULL;
    magna_node *h0 = o.h0 ? gc_param(g, "h0", 2, (int64_t[]){B, H}, -1.0f, 1.0f) : NULL;
    magna_node *c0 = o.c0 ? gc_param(g, "c0", 2, (int64_t[]){B, H}, -1.0f, 1.0f) : NULL;
    magna_node *out = o.kind == K_LSTM  ? magna_lstm(g, x, w_ih, w_hh, b_ih, b_hh, h0, c0)
                      : o.kind == K_GRU ? magna_gru(g, x, w_ih, w_hh, b_ih, b_hh, h0)
                                        : magna_rnn_tanh(g, x, w_ih, w_hh, b_ih, b_hh, h0);
    switch (o.out) {
    case 1: return magna_rnn_final_h(g, out);
    case 2: return magna_rnn_final_c(g, out);
    case 3: return magna_rnn_sequence(g, out);
    default: return out;
    }
}

#define RC_CASE(fn, ...)                                                                                             \
    static magna_node *fn(magna_graph *g, uint64_t seed) { return rc_build(g, seed, (rc_opts){__VA_ARGS__}); }

RC_CASE(lstm_plain, .kind = K_LSTM, .bias = true)
RC_CASE(lstm_states, .kind = K_LSTM, .bias = true, .h0 = true, .c0 = true)
RC_CASE(lstm_h0_only, .kind = K_LSTM, .bias = true, .h0 = true)
RC_CASE(lstm_c0_only, .kind = K_LSTM, .bias = true, .c0 = true)
RC_CASE(lstm_no_bias, .kind = K_LSTM, .h0 = true, .c0 = true)
RC_CASE(lstm_t1, .kind = K_LSTM, .bias = true, .h0 = true, .c0 = true, .t_fixed = 1)
RC_CASE(lstm_t1_no_state, .kind = K_LSTM, .bias = true, .t_fixed = 1)
RC_CASE(lstm_b1, .kind = K_LSTM, .bias = true, .h0 = true, .c0 = true, .b_fixed = 1)
RC_CASE(lstm_x_input, .kind = K_LSTM, .bias = true, .x_input = true)
RC_CASE(lstm_final_h, .kind = K_LSTM, .bias = true, .h0 = true, .c0 = true, .out = 1)
RC_CASE(lstm_final_c, .kind = K_LSTM, .bias = true, .h0 = true, .c0 = true, .out = 2)
RC_CASE(lstm_sequence, .kind = K_LSTM, .bias = true, .out = 3)
RC_CASE(gru_plain, .kind = K_GRU, .bias = true)
RC_CASE(gru_h0, .kind = K_GRU, .bias = true, .h0 = true)
RC_CASE(gru_no_bias, .kind = K_GRU, .h0 = true)
RC_CASE(gru_t1, .kind = K_GRU, .bias = true, .h0 = true, .t_fixed = 1)
RC_CASE(gru_t1_no_state, .kind = K_GRU, .bias = true, .t_fixed = 1)
RC_CASE(gru_b1, .kind = K_GRU, .bias = true, .h0 = true, .b_fixed = 1)
RC_CASE(gru_final_h, .kind = K_GRU, .bias = true, .h0 = true, .out = 1)
RC_CASE(rnn_plain, .kind = K_RNN, .bias = true)
RC_CASE(rnn_h0, .kind = K_RNN, .bias = true, .h0 = true)
RC_CASE(rnn_no_bias, .kind = K_RNN, .h0 = true, .x_input = true)
RC_CASE(rnn_t1, .kind = K_RNN, .bias = true, .h0 = true, .t_fixed = 1)
RC_CASE(rnn_b1, .kind = K_RNN, .bias = true, .b_fixed = 1)
RC_CASE(rnn_final_h, .kind = K_RNN, .bias = true, .h0 = true, .out = 1)

/* Past the gate math's parallel threshold (B * G >= 4096), so the rows run across threads, and with
 * dW_hh (H x G x B*T) past magna_sgemm's small-product limit, so OpenBLAS's threaded path runs too. */
static magna_node *lstm_wide(magna_graph *g, uint64_t seed) {
    const int64_t B = 33, T = 3, I = 7, H = 35, G = 4 * H;
    (void)seed;
    magna_node *x = magna_input(g, "x", MAGNA_F32, 3, (int64_t[]){B, T, I});
    magna_node *w_ih = gc_param(g, "w_ih", 2, (int64_t[]){I, G}, -0.3f, 0.3f);
    magna_node *w_hh = gc_param(g, "w_hh", 2, (int64_t[]){H, G}, -0.3f, 0.3f);
    magna_node *b_ih = gc_param(g, "b_ih", 1, (int64_t[]){G}, -0.3f, 0.3f);
    magna_node *b_hh = gc_param(g, "b_hh", 1, (int64_t[]){G}, -0.3f, 0.3f);
    magna_node *h0 = gc_param(g, "h0", 2, (int64_t[]){B, H}, -1.0f, 1.0f);
    magna_node *c0 = gc_param(g, "c0", 2, (int64_t[]){B, H}, -1.0f, 1.0f);
    return magna_lstm(g, x, w_ih, w_hh, b_ih, b_hh, h0, c0);
}

static magna_node *gru_wide(magna_graph *g, uint64_t seed) {
    const int64_t B = 33, T = 3, I = 7, H = 45, G = 3 * H;
    (void)seed;
    magna_node *x = magna_input(g, "x", MAGNA_F32, 3, (int64_t[]){B, T, I});
    magna_node *w_ih = gc_param(g, "w_ih", 2, (int64_t[]){I, G}, -0.3f, 0.3f);
    magna_node *w_hh = gc_param(g, "w_hh", 2, (int64_t[]){H, G}, -0.3f, 0.3f);
    magna_node *b_ih = gc_param(g, "b_ih", 1, (int64_t[]){G}, -0.3f, 0.3f);
    magna_node *b_hh = gc_param(g, "b_hh", 1, (int64_t[]){G}, -0.3f, 0.3f);
    magna_node *h0 = gc_param(g, "h0", 2, (int64_t[]){B, H}, -1.0f, 1.0f);
    return magna_gru(g, x, w_ih, w_hh, b_ih, b_hh, h0);
}

const gc_case gc_cases_recurrent[] = {
    {"lstm", lstm_plain, NULL, 0, 0, 0},
    {"lstm h0, c0", lstm_states, NULL, 0, 0, 0},
    {"lstm h0 only", lstm_h0_only, NULL, 0, 0, 0},
    {"lstm c0 only", lstm_c0_only, NULL, 0, 0, 0},
    {"lstm no bias", lstm_no_bias, NULL, 0, 0, 0},
    {"lstm T=1, h0, c0", lstm_t1, NULL, 0, 0, 0},
    {"lstm T=1, no state", lstm_t1_no_state, NULL, 0, 0, 0},
    {"lstm B=1", lstm_b1, NULL, 0, 0, 0},
    {"lstm x as data", lstm_x_input, NULL, 0, 0, 0},
    {"lstm final h", lstm_final_h, NULL, 0, 0, 0},
    {"lstm final c", lstm_final_c, NULL, 0, 0, 0},
    {"lstm h sequence", lstm_sequence, NULL, 0, 0, 0},
    {"lstm wide (threads, BLAS)", lstm_wide, NULL, 0, 0, 0},
    {"gru", gru_plain, NULL, 0, 0, 0},
    {"gru h0", gru_h0, NULL, 0, 0, 0},
    {"gru no bias", gru_no_bias, NULL, 0, 0, 0},
    {"gru T=1, h0", gru_t1, NULL, 0, 0, 0},
    {"gru T=1, no state", gru_t1_no_state, NULL, 0, 0, 0},
    {"gru B=1", gru_b1, NULL, 0, 0, 0},
    {"gru final h", gru_final_h, NULL, 0, 0, 0},
    {"gru wide (threads, BLAS)", gru_wide, NULL, 0, 0, 0},
    {"rnn_tanh", rnn_plain, NULL, 0, 0, 0},
    {"rnn_tanh h0", rnn_h0, NULL, 0, 0, 0},
    {"rnn_tanh no bias, x data", rnn_no_bias, NULL, 0, 0, 0},
    {"rnn_tanh T=1", rnn_t1, NULL, 0, 0, 0},
    {"rnn_tanh B=1", rnn_b1, NULL, 0, 0, 0},
    {"rnn_tanh final h", rnn_final_h, NULL, 0, 0, 0},
    {NULL, NULL, NULL, 0, 0, 0},
};
