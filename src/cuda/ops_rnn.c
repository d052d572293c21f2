/* ops_rnn.c — the LSTM, GRU and tanh RNN nodes on the device: the node read as src/ops/rnn.c reads it
 * (rnn.h: the same arguments, workspace and saved layout) and handed to rnn.cu, which runs the op. */
#include "cuda/ops_glue.h"

#include "cuda/kernels.h"
#include "ops/rnn.h"

#include <stdio.h>

/* The op's device buffers, where rnn.c's rnn_view puts them. */
static magna_cuda_rnn_args rnn_dev_args(magna_graph *g, magna_node *n) {
    const rnn_args a = rnn_args_of(n);
    rnn_ws ws;
    rnn_ws_layout(&a, (float *)g->workspace, &ws);
    magna_cuda_rnn_args d = {.B = (int)a.B, .T = (int)a.T, .I = (int)a.I, .H = (int)a.H, .bf16 = g->bf16 ? 1 : 0};
    d.cell = a.cell == CELL_LSTM  ? MAGNA_CUDA_CELL_LSTM
             : a.cell == CELL_GRU ? MAGNA_CUDA_CELL_GRU
                                  : MAGNA_CUDA_CELL_RNN;
    d.x = fval(a.x), d.w_ih = fval(a.w_ih), d.w_hh = fval(a.w_hh);
    d.b_ih = a.b_ih ? fval(a.b_ih) : NULL, d.b_hh = a.b_hh ? fval(a.b_hh) : NULL;
    d.h0 = a.h0 ? fval(a.h0) : NULL, d.c0 = a.c0 ? fval(a.c0) : NULL;
    d.out = fval(n);
    if (a.cell != CELL_RNN) {
        d.gates = (float *)n->saved;
        d.aux = d.gates + rnn_round16(a.B * a.T * a.G);
    }
    d.hproj = ws.hproj, d.dgx = ws.dgx, d.dgh = ws.dgh, d.hprev = ws.hprev, d.dh = ws.dh, d.dc = ws.dc;
    return d;
}

static magna_status rnn_fail(magna_graph *g, magna_node *n, int err, const char *pass) {
    char what[64];
    snprintf(what, sizeof what, "%s %s", magna_op_table[n->op]->name, pass);
    return cuda_fail(g, err, what);
}

magna_status cuda_rnn_forward(magna_graph *g, magna_node *n) {
    const magna_cuda_rnn_args d = rnn_dev_args(g, n);
    const int err = magna_cuda_rnn_forward(&d, cuda_blas(g), cuda_stream(g));
    return err ? rnn_fail(g, n, err, "forward") : MAGNA_OK;
}

void cuda_rnn_backward(magna_graph *g, magna_node *n) {
    const magna_cuda_rnn_args d = rnn_dev_args(g, n);
    const rnn_args a = rnn_args_of(n);
    magna_node *const from[7] = {a.x, a.w_ih, a.w_hh, a.b_ih, a.b_hh, a.h0, a.c0};
    float *to[7];
    for (int i = 0; i < 7; i++) to[i] = from[i] ? from[i]->grad : NULL;
    const magna_cuda_rnn_grads grads = {to[0], to[1], to[2], to[3], to[4], to[5], to[6]};
    const int err = magna_cuda_rnn_backward(&d, n->grad, &grads, cuda_blas(g), cuda_stream(g));
    if (err) rnn_fail(g, n, err, "backward");
}
