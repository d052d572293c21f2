/* test_cuda_rnn.c — the recurrent ops on the device (src/cuda/rnn.cu: LSTM, GRU, tanh RNN) against the CPU
 * ops (src/ops/rnn.c) on the same inputs, weights and output gradient: the output and every gradient (x,
 * w_ih, w_hh, both biases, h0, c0) within 1e-4 of the largest magnitude in float32 mode, 2e-2 in bf16 mode.
 * Cases: with and without biases and initial states, T = 1, B = 1, widths past a warp, gradients asked for
 * only some inputs; the gradient buffers start non-zero (backward adds). Device buffers through the CUDA
 * runtime: the emulator here (test_cuda_rnn_emu), a GPU where built with CUDA. */
#include "check.h"
#include "cuda/kernels.h"
#include "magna.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct rnn_case {
    int cell, B, T, I, H;
    int bias, h0, c0, bf16;
    int no_grad; /* bit i: input i (x, w_ih, w_hh, b_ih, b_hh, h0, c0) gets no gradient */
} rnn_case;

static const float GRAD_START = 0.25f;

static void fill(float *x, int64_t n, float scale, uint64_t stream) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * (2.0f * magna_rand_uniform(11, stream, (uint64_t)i) - 1.0f);
}

static double rel_err(const float *a, const float *b, int64_t n, float offset) {
    double scale = 1e-3, worst = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - ((double)b[i] + offset));
        if (!(d <= worst)) worst = d;
    }
    return worst / scale;
}

static float *dev(const float *host, int64_t n) {
    void *d = NULL;
    if (cudaMalloc(&d, (size_t)(n > 0 ? n : 1) * sizeof(float)) != cudaSuccess) return NULL;
    if (host) cudaMemcpy(d, host, (size_t)n * sizeof(float), cudaMemcpyHostToDevice);
    return d;
}

static void run_case(rnn_case c) {
    static const char *cells[] = {"lstm", "gru", "rnn_tanh"};
    static const char *names[7] = {"x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0"};
    const int gates = c.cell == MAGNA_CUDA_CELL_LSTM ? 4 : c.cell == MAGNA_CUDA_CELL_GRU ? 3 : 1, G = gates * c.H;
    const int BT = c.B * c.T;
    char label[128];
    snprintf(label, sizeof label, "%s B=%d T=%d I=%d H=%d%s%s%s%s no_grad=%d", cells[c.cell], c.B, c.T, c.I, c.H,
             c.bias ? " bias" : "", c.h0 ? " h0" : "", c.c0 ? " c0" : "", c.bf16 ? " bf16" : "", c.no_grad);
    magna_graph *g = magna_graph_new(1);
    const int64_t shapes[7][3] = {{c.B, c.T, c.I}, {c.I, G}, {c.H, G}, {G}, {G}, {c.B, c.H}, {c.B, c.H}};
    const int ndims[7] = {3, 2, 2, 1, 1, 2, 2};
    const int present[7] = {1, 1, 1, c.bias, c.bias, c.h0, c.c0 && c.cell == MAGNA_CUDA_CELL_LSTM};
    magna_node *in[7] = {0};
    for (int i = 0; i < 7; i++) {
        if (!present[i]) continue;
        /* an input without gradient is data (magna_input for x, h0 and c0 carry the batch) */
        if (c.no_grad >> i & 1)
            in[i] = i == 0 || i >= 5 ? magna_input(g, names[i], MAGNA_F32, ndims[i], shapes[i])
                                     : magna_input_unbatched(g, names[i], MAGNA_F32, ndims[i], shapes[i]);
        else
            in[i] = magna_param(g, names[i], ndims[i], shapes[i], magna_init_zeros());
    }
    magna_node *out = c.cell == MAGNA_CUDA_CELL_LSTM ? magna_lstm(g, in[0], in[1], in[2], in[3], in[4], in[5], in[6])
                      : c.cell == MAGNA_CUDA_CELL_GRU ? magna_gru(g, in[0], in[1], in[2], in[3], in[4], in[5])
                                                      : magna_rnn_tanh(g, in[0], in[1], in[2], in[3], in[4], in[5]);
    if (magna_graph_compile(g, out) != MAGNA_OK) {
        CHECK(0, "%s: compile: %s", label, magna_graph_errmsg(g));
        magna_graph_free(g);
        return;
    }
    for (int i = 0; i < 7; i++)
        if (in[i]) /* weights and biases U(-0.6, 0.6) as the gradcheck cases: gates in their curved range */
            fill(magna_node_data(in[i]), magna_node_numel(in[i]), i >= 1 && i <= 4 ? 0.6f : 1.0f, 20 + (uint64_t)i);
    const int64_t n_out = magna_node_numel(out);
    float *dout = malloc((size_t)n_out * sizeof(float));
    fill(dout, n_out, 1.0f, 30);
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward_seeded(g, dout) == MAGNA_OK, "%s: CPU: %s", label,
          magna_graph_errmsg(g));

    /* the device op */
    float *d_in[7] = {0}, *d_grad[7] = {0};
    int64_t largest = n_out;
    for (int i = 0; i < 7; i++) {
        if (!in[i]) continue;
        const int64_t n = magna_node_numel(in[i]);
        largest = n > largest ? n : largest;
        d_in[i] = dev(magna_node_data(in[i]), n);
        if (!(c.no_grad >> i & 1)) {
            float *start = malloc((size_t)n * sizeof(float));
            for (int64_t j = 0; j < n; j++) start[j] = GRAD_START;
            d_grad[i] = dev(start, n);
            free(start);
        }
    }
    float *d_out = dev(NULL, n_out), *d_dout = dev(dout, n_out);
    float *d_gates = dev(NULL, (int64_t)BT * G), *d_aux = dev(NULL, (int64_t)BT * c.H);
    float *d_hproj = dev(NULL, (int64_t)c.B * G), *d_dgx = dev(NULL, (int64_t)BT * G);
    float *d_dgh = dev(NULL, (int64_t)BT * G), *d_hprev = dev(NULL, (int64_t)BT * c.H);
    float *d_dh = dev(NULL, (int64_t)c.B * c.H), *d_dc = dev(NULL, (int64_t)c.B * c.H);
    const magna_cuda_rnn_args a = {.cell = c.cell, .B = c.B, .T = c.T, .I = c.I, .H = c.H, .bf16 = c.bf16,
                                   .x = d_in[0], .w_ih = d_in[1], .w_hh = d_in[2], .b_ih = d_in[3], .b_hh = d_in[4],
                                   .h0 = d_in[5], .c0 = d_in[6], .out = d_out,
                                   .gates = c.cell == MAGNA_CUDA_CELL_RNN ? NULL : d_gates,
                                   .aux = c.cell == MAGNA_CUDA_CELL_RNN ? NULL : d_aux, .hproj = d_hproj, .dgx = d_dgx,
                                   .dgh = d_dgh, .hprev = d_hprev, .dh = d_dh, .dc = d_dc};
    const magna_cuda_rnn_grads grads = {d_grad[0], d_grad[1], d_grad[2], d_grad[3], d_grad[4], d_grad[5], d_grad[6]};
    int err = magna_cuda_rnn_forward(&a, NULL, NULL);
    if (!err) err = magna_cuda_rnn_backward(&a, d_dout, &grads, NULL, NULL);
    if (!err) err = cudaDeviceSynchronize();
    CHECK(err == 0, "%s: device: %s", label, cudaGetErrorString((cudaError_t)err));

    const double tol = c.bf16 ? 2e-2 : 1e-4;
    float *host = malloc((size_t)largest * sizeof(float));
    cudaMemcpy(host, d_out, (size_t)n_out * sizeof(float), cudaMemcpyDeviceToHost);
    double worst = rel_err(host, magna_node_data(out), n_out, 0.0f);
    char detail[256];
    int len = snprintf(detail, sizeof detail, "out %.1e", worst);
    for (int i = 0; i < 7; i++) {
        if (!d_grad[i]) continue;
        const int64_t n = magna_node_numel(in[i]);
        cudaMemcpy(host, d_grad[i], (size_t)n * sizeof(float), cudaMemcpyDeviceToHost);
        const double e = rel_err(host, magna_node_grad(in[i]), n, GRAD_START);
        worst = e > worst || e != e ? e : worst;
        len += snprintf(detail + len, sizeof detail - (size_t)len, " d%s %.1e", names[i], e);
    }
    CHECK(worst <= tol, "%s: relative error %s (limit %.0e)", label, detail, tol);
    printf("%-52s %s\n", label, detail);
    for (int i = 0; i < 7; i++) cudaFree(d_in[i]), cudaFree(d_grad[i]);
    cudaFree(d_out), cudaFree(d_dout), cudaFree(d_gates), cudaFree(d_aux), cudaFree(d_hproj), cudaFree(d_dgx);
    cudaFree(d_dgh), cudaFree(d_hprev), cudaFree(d_dh), cudaFree(d_dc);
    free(dout), free(host);
    magna_graph_free(g);
}

int main(void) {
    char why[256];
    if (!magna_cuda_available(why, sizeof why)) {
        printf("test_cuda_rnn: skipped: %s\n", why);
        return 77;
    }
    magna_error err;
    CHECK(magna_runtime_init(&err) == MAGNA_OK, "runtime: %s", err.message);
    for (int cell = 0; cell < 3; cell++) {
        /* cell B  T  I  H  bias h0 c0 bf16 no_grad */
        run_case((rnn_case){cell, 3, 7, 5, 9, 1, 1, 1, 0, 0});
        run_case((rnn_case){cell, 2, 5, 4, 6, 0, 0, 0, 0, 0});
        run_case((rnn_case){cell, 2, 1, 3, 4, 1, 1, 1, 0, 0});
        run_case((rnn_case){cell, 1, 6, 2, 33, 1, 0, 1, 0, 0});
        run_case((rnn_case){cell, 4, 5, 40, 37, 1, 1, 0, 0, 1});       /* x as data */
        run_case((rnn_case){cell, 3, 4, 5, 8, 1, 1, 1, 0, 1 << 5 | 1 << 2}); /* no dh0, no dw_hh */
        run_case((rnn_case){cell, 3, 6, 5, 9, 1, 1, 1, 1, 0});
    }
    return check_finish("test_cuda_rnn");
}
