/* rnn_math.h — the recurrent cells' per-element math (src/ops/rnn.c's formulas, PyTorch's gate order), for
 * one (row, unit j) of one step: the CUDA kernels (rnn.cu) run it per thread and tests/test_cuda_math.c
 * runs it on the CPU against the graph's LSTM, GRU and RNN ops. Gates are passed pre-activation in and
 * come back activated (what backward reads, as the CPU op saves them). */
#ifndef MAGNA_CUDA_RNN_MATH_H
#define MAGNA_CUDA_RNN_MATH_H

#include "elementwise_math.h"

/* LSTM: i, f, o = sigmoid, g = tanh; c = f c_prev + i g; h = o tanh(c). */
MAGNA_HD void magna_em_lstm_forward(float *gi, float *gf, float *gg, float *go, float c_prev, float *c, float *tanh_c,
                                    float *h) {
    *gi = magna_em_sigmoid(*gi), *gf = magna_em_sigmoid(*gf), *gg = tanhf(*gg), *go = magna_em_sigmoid(*go);
    *c = *gf * c_prev + *gi * *gg;
    *tanh_c = tanhf(*c);
    *h = *go * *tanh_c;
}

/* dh_tot = dh_out + dh (carried from step t+1); the four pre-activation gradients, and dc carried to t-1
 * (in place). */
MAGNA_HD void magna_em_lstm_backward(float gi, float gf, float gg, float go, float tanh_c, float c_prev, float dh_out,
                                     float dc_out, float dh, float *dc, float *di, float *df, float *dg, float *dO) {
    const float dht = dh_out + dh;
    const float dct = dc_out + *dc + dht * go * (1.0f - tanh_c * tanh_c);
    *di = dct * gg * gi * (1.0f - gi);
    *df = dct * c_prev * gf * (1.0f - gf);
    *dg = dct * gi * (1.0f - gg * gg);
    *dO = dht * tanh_c * go * (1.0f - go);
    *dc = dct * gf;
}

/* GRU: xr, xz, xn hold x W_ih + b_ih (+ b_hh for r and z), hr, hz, hn_raw h_{t-1} W_hh; b_hn is b_hh's n part
 * (0 without biases). r, z = sigmoid, hn = hn_raw + b_hn, n = tanh(xn + r hn), h = n + z (h_prev - n). */
MAGNA_HD void magna_em_gru_forward(float *xr, float *xz, float *xn, float hr, float hz, float hn_raw, float b_hn,
                                   float h_prev, float *hn, float *h) {
    *xr = magna_em_sigmoid(*xr + hr), *xz = magna_em_sigmoid(*xz + hz);
    *hn = hn_raw + b_hn;
    *xn = tanhf(*xn + *xr * *hn);
    *h = *xn + *xz * (h_prev - *xn);
}

/* From the activated r, z, n: the x-side gradients (dxr, dxz, dxn), the h-side ones (dhr = dxr, dhz = dxz,
 * dhn = dxn r), and dh left holding z dh_tot, the direct path to h_{t-1} (the product through W_hh adds the
 * rest). */
MAGNA_HD void magna_em_gru_backward(float r, float z, float n, float hn, float h_prev, float dh_out, float *dh,
                                    float *dxr, float *dxz, float *dxn, float *dhn) {
    const float dht = dh_out + *dh;
    const float dnp = dht * (1.0f - z) * (1.0f - n * n);
    *dxr = dnp * hn * r * (1.0f - r);
    *dxz = dht * (h_prev - n) * z * (1.0f - z);
    *dxn = dnp;
    *dhn = dnp * r;
    *dh = dht * z;
}

/* The tanh RNN: h = tanh(pre); dpre = (dh_out + dh) (1 - h^2). */
MAGNA_HD float magna_em_rnn_forward(float pre) { return tanhf(pre); }
MAGNA_HD float magna_em_rnn_backward(float h, float dh_out, float dh) { return (dh_out + dh) * (1.0f - h * h); }

#endif
