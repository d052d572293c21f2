/* ops_rnn.c — the LSTM, GRU and tanh RNN on the device: src/ops/rnn.c's algorithm, buffers and layout
 * (rnn.h: the same workspace and saved layout), its GEMMs through magna_cuda_gemm and its row loops as
 * rnn.cu's kernels.
 *
 * Forward: every step's input projection is one GEMM over B*T rows, the biases one kernel; then per step
 * h_{t-1} W_hh (one GEMM of B rows, into the step's gate rows, or into hproj for the GRU whose n gate needs
 * it apart) and one fused gate kernel. Backward walks the steps back: the gate kernel writes the step's
 * pre-activation gradients dG and a GEMM carries dh back through W_hh; then dW_ih, dx and dW_hh are GEMMs
 * over all B*T rows and the bias gradients deterministic column sums. */
#include "cuda/ops.h"

#include "cuda/kernels.h"
#include "ops/rnn.h"

static int cell_id(cell c) {
    return c == CELL_LSTM ? MAGNA_CUDA_CELL_LSTM : c == CELL_GRU ? MAGNA_CUDA_CELL_GRU : MAGNA_CUDA_CELL_RNN;
}

/* The op's device buffers, as rnn.c's rnn_view lays them out. */
typedef struct rnn_dev {
    rnn_args a;
    rnn_ws ws;
    float *out, *gates, *aux;
    int per_step; /* output rows of a step are per_step * H wide: 2 for the LSTM (h and c) */
} rnn_dev;

static rnn_dev rnn_dev_of(magna_graph *g, magna_node *n) {
    rnn_dev d = {.a = rnn_args_of(n), .out = fval(n)};
    rnn_ws_layout(&d.a, (float *)g->workspace, &d.ws);
    d.per_step = d.a.cell == CELL_LSTM ? 2 : 1;
    if (d.a.cell == CELL_RNN) {
        d.gates = d.out;
    } else {
        d.gates = (float *)n->saved;
        d.aux = d.gates + rnn_round16(d.a.B * d.a.T * d.a.G);
    }
    return d;
}

/* Step t's view: h_{t-1} and c_{t-1} are the output's step t-1, or h0 / c0, or NULL (zeros). */
static magna_cuda_rnn_step step_of(const rnn_dev *d, int64_t t) {
    const rnn_args *a = &d->a;
    magna_cuda_rnn_step s = {.cell = cell_id(a->cell), .B = (int)a->B, .T = (int)a->T, .H = (int)a->H, .t = (int)t,
                             .gates = d->gates, .aux = d->aux, .out = d->out};
    if (t > 0) {
        s.h_prev = d->out + (t - 1) * d->per_step * a->H;
        s.c_prev = a->cell == CELL_LSTM ? s.h_prev + a->H : NULL;
        s.ld_prev = a->T * d->per_step * a->H;
    } else {
        s.h_prev = a->h0 ? fval(a->h0) : NULL;
        s.c_prev = a->c0 ? fval(a->c0) : NULL;
        s.ld_prev = a->H;
    }
    return s;
}

static magna_status rnn_fail(magna_graph *g, magna_node *n, int err, const char *what) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s %s", magna_op_table[n->op]->name, what);
    return cuda_fail(g, err, msg);
}

magna_status cuda_rnn_forward(magna_graph *g, magna_node *n) {
    const rnn_dev d = rnn_dev_of(g, n);
    const rnn_args *a = &d.a;
    const int B = (int)a->B, T = (int)a->T, H = (int)a->H, G = (int)a->G, I = (int)a->I, BT = B * T;
    void *st = cuda_stream(g), *blas = cuda_blas(g);
    const int bf16 = g->cuda_bf16 ? 1 : 0;
    /* every step's input projection at once, then the biases (b_hh too, except the GRU's n part) */
    int err = magna_cuda_gemm(blas, st, 0, 0, BT, G, I, 1.0f, fval(a->x), I, 0, fval(a->w_ih), G, 0, 0.0f, d.gates, G,
                              0, 1, bf16);
    if (err) return rnn_fail(g, n, err, "input projection");
    if (a->b_ih) {
        err = magna_cuda_rnn_bias(d.gates, fval(a->b_ih), fval(a->b_hh), BT, G, a->cell == CELL_GRU ? 2 * H : G, st);
        if (err) return rnn_fail(g, n, err, "biases");
    }
    const float *w_hh = fval(a->w_hh);
    for (int64_t t = 0; t < T; t++) {
        magna_cuda_rnn_step s = step_of(&d, t);
        if (a->cell == CELL_GRU) {
            s.b_hn = a->b_hh ? fval(a->b_hh) + 2 * H : NULL;
            if (s.h_prev) {
                err = magna_cuda_gemm(blas, st, 0, 0, B, G, H, 1.0f, s.h_prev, (int)s.ld_prev, 0, w_hh, G, 0, 0.0f,
                                      d.ws.hproj, G, 0, 1, bf16);
                s.hproj = d.ws.hproj;
            }
        } else if (s.h_prev) {
            err = magna_cuda_gemm(blas, st, 0, 0, B, G, H, 1.0f, s.h_prev, (int)s.ld_prev, 0, w_hh, G, 0, 1.0f,
                                  d.gates + t * G, T * G, 0, 1, bf16);
        }
        if (err) return rnn_fail(g, n, err, "step product");
        err = magna_cuda_rnn_step_forward(&s, st);
        if (err) return rnn_fail(g, n, err, "gates");
    }
    return MAGNA_OK;
}

void cuda_rnn_backward(magna_graph *g, magna_node *n) {
    rnn_dev d = rnn_dev_of(g, n);
    const rnn_args *a = &d.a;
    const int B = (int)a->B, T = (int)a->T, H = (int)a->H, G = (int)a->G, I = (int)a->I, BT = B * T;
    void *st = cuda_stream(g), *blas = cuda_blas(g);
    const int bf16 = g->cuda_bf16 ? 1 : 0;
    if (a->cell != CELL_GRU) d.ws.dgh = d.ws.dgx; /* the same pre-activations feed W_ih and W_hh */
    const float *w_hh = fval(a->w_hh);
    int err = magna_cuda_fill(d.ws.dh, 0.0f, (int64_t)B * H, st);
    if (!err && d.ws.dc) err = magna_cuda_fill(d.ws.dc, 0.0f, (int64_t)B * H, st);
    for (int64_t t = T - 1; t >= 0 && !err; t--) {
        magna_cuda_rnn_step s = step_of(&d, t);
        s.dout = n->grad, s.dgx = d.ws.dgx, s.dgh = d.ws.dgh, s.dh = d.ws.dh, s.dc = d.ws.dc;
        err = magna_cuda_rnn_step_backward(&s, st);
        /* dh_{t-1} = dG_t W_hh^T (+ the GRU's direct path, already in dh) */
        if (err || (t == 0 && !(a->h0 && a->h0->grad))) continue;
        err = magna_cuda_gemm(blas, st, 0, 1, B, H, G, 1.0f, d.ws.dgh + t * G, T * G, 0, w_hh, G, 0,
                              a->cell == CELL_GRU ? 1.0f : 0.0f, d.ws.dh, H, 0, 1, bf16);
    }
    if (!err && a->h0 && a->h0->grad) err = magna_cuda_add_into(a->h0->grad, d.ws.dh, (int64_t)B * H, st);
    if (!err && a->c0 && a->c0->grad) err = magna_cuda_add_into(a->c0->grad, d.ws.dc, (int64_t)B * H, st);
    /* the big products over all B*T rows */
    if (!err && a->w_ih->grad)
        err = magna_cuda_gemm(blas, st, 1, 0, I, G, BT, 1.0f, fval(a->x), I, 0, d.ws.dgx, G, 0, 1.0f, a->w_ih->grad, G,
                              0, 1, bf16);
    if (!err && a->x->grad)
        err = magna_cuda_gemm(blas, st, 0, 1, BT, I, G, 1.0f, d.ws.dgx, G, 0, fval(a->w_ih), G, 0, 1.0f, a->x->grad, I,
                              0, 1, bf16);
    if (!err && a->w_hh->grad) {
        err = magna_cuda_rnn_gather_prev(d.ws.hprev, d.out, a->h0 ? fval(a->h0) : NULL, B, T, H, d.per_step, st);
        if (!err)
            err = magna_cuda_gemm(blas, st, 1, 0, H, G, BT, 1.0f, d.ws.hprev, H, 0, d.ws.dgh, G, 0, 1.0f,
                                  a->w_hh->grad, G, 0, 1, bf16);
    }
    /* the biases: column sums of dG (one sum serves both when the two sides share dG) */
    if (!err && a->b_ih) {
        float *dbi = a->b_ih->grad, *dbh = a->b_hh->grad;
        if (d.ws.dgh == d.ws.dgx) {
            err = magna_cuda_colsum_add(d.ws.dgx, BT, G, dbi, dbh, st);
        } else {
            err = magna_cuda_colsum_add(d.ws.dgx, BT, G, dbi, NULL, st);
            if (!err) err = magna_cuda_colsum_add(d.ws.dgh, BT, G, dbh, NULL, st);
        }
    }
    if (err) rnn_fail(g, n, err, "backward");
}
