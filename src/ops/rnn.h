/* rnn.h — the recurrent ops' view of a node (arguments, workspace and saved layout), shared by the CPU op
 * (rnn.c) and the CUDA op (src/cuda/ops_rnn.c), so both read the node and lay out their buffers alike. */
#ifndef MAGNA_OPS_RNN_H
#define MAGNA_OPS_RNN_H

#include "../graph/internal.h"

typedef enum cell { CELL_LSTM, CELL_GRU, CELL_RNN } cell;

static inline cell cell_of(const magna_node *n) {
    return n->op == OP_LSTM ? CELL_LSTM : n->op == OP_GRU ? CELL_GRU : CELL_RNN;
}
static inline int gates_of(cell c) { return c == CELL_LSTM ? 4 : c == CELL_GRU ? 3 : 1; }
static inline size_t rnn_round16(int64_t floats) { return ((size_t)floats + 15) & ~(size_t)15; }

/* Everything forward and backward need, read off the node. */
typedef struct rnn_args {
    cell cell;
    int threads; /* bias-sum partials in the workspace */
    int64_t B, T, I, H, G; /* G = gates * H, the width of a gate row */
    magna_node *x, *w_ih, *w_hh, *b_ih, *b_hh, *h0, *c0;
} rnn_args;

rnn_args rnn_args_of(const magna_node *n);

/* Workspace, in floats: a row of zeros (h_{-1}, c_{-1} when no initial state is given), then forward's
 * h_{t-1} W_hh rows (GRU) or backward's dG of every step (x side, and the h side for GRU, whose n gate
 * differs), h_{t-1} of every step, and the carried dh and dc. The step products' packed operands come first. */
typedef struct rnn_ws {
    float *zeros, *hproj, *dgx, *dgh, *hprev, *dh, *dc, *wpack, *apack, *colsum;
} rnn_ws;

/* Points w's fields into base (when w is not NULL); returns the floats the layout takes. */
size_t rnn_ws_layout(const rnn_args *a, float *base, rnn_ws *w);

/* Saved for backward: LSTM the activated gates [., ., 4H] and tanh(c) [., ., H]; GRU the activated gates
 * [., ., 3H] and W_hn h + b_hn [., ., H]; the RNN nothing (its output is h, and dh/dpre = 1 - h^2). The rows are
 * [B, T] on CUDA and time-major, [T, B], on the CPU (rnn.c: a step's rows are one block there). The
 * gates start `saved`, the auxiliary rows follow at rnn_round16(B * T * G). */
size_t rnn_saved_floats(const rnn_args *a);

#endif
