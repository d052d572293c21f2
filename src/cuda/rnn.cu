/* rnn.cu — the LSTM, GRU and tanh RNN on the device: src/ops/rnn.c's algorithm and layout, its products
 * through magna_cuda_gemm and its row loops as kernels here (a thread per (row, unit), rnn_math.h's
 * formulas, grid-stride loops over launch.h's elementwise geometry).
 *
 * Forward: every step's input projection is one GEMM over B*T rows, the biases one kernel; then per step
 * h_{t-1} W_hh (one GEMM of B rows, into the step's gate rows, or into hproj for the GRU whose n gate
 * needs it apart) and one fused gate kernel. Backward walks the steps back: the gate kernel writes the
 * step's pre-activation gradients dG and a GEMM carries dh back through W_hh; then dW_ih, dx and dW_hh are
 * GEMMs over all B*T rows and the bias gradients deterministic column sums. Nothing synchronises. */
#include "compat.h"

#include "kernels.h"
#include "launch.h"
#include "rnn_math.h"

namespace {

/* One step t of B rows (rows of [B, T, *] are b * T + t). */
struct rnn_step {
    int cell, B, T, H, t;
    float *gates, *aux, *out;     /* see magna_cuda_rnn_args */
    const float *h_prev, *c_prev; /* rows b * ld_prev of h_{t-1}, c_{t-1}; NULL: zeros */
    int64_t ld_prev;
    const float *hproj, *b_hn;    /* GRU forward: h_{t-1} W_hh [B, 3H] (NULL: zeros), b_hh's n part (NULL: 0) */
    const float *dout;            /* backward: the output's gradient */
    float *dgx, *dgh, *dh, *dc;
};

__global__ void rnn_bias_kernel(magna_launch_1d l, float *gates, const float *b_ih, const float *b_hh, int G,
                                int hh_cols) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        const int j = (int)(i % G);
        gates[i] += b_ih[j] + (j < hh_cols ? b_hh[j] : 0.0f);
    }
}

/* The step's rows of one (b, j): s.t is the step, rows of [B, T, *] are b * T + t. */
__global__ void rnn_step_forward_kernel(magna_launch_1d l, rnn_step s) {
    const int64_t stride = magna_launch_1d_stride(&l), H = s.H;
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        const int64_t b = i / H, j = i % H, row = b * s.T + s.t;
        const float hp = s.h_prev ? s.h_prev[b * s.ld_prev + j] : 0.0f;
        if (s.cell == MAGNA_CUDA_CELL_LSTM) {
            float *g = s.gates + row * 4 * H + j, *h = s.out + row * 2 * H + j;
            const float cp = s.c_prev ? s.c_prev[b * s.ld_prev + j] : 0.0f;
            magna_em_lstm_forward(g, g + H, g + 2 * H, g + 3 * H, cp, h + H, s.aux + row * H + j, h);
        } else if (s.cell == MAGNA_CUDA_CELL_GRU) {
            float *g = s.gates + row * 3 * H + j;
            const float *p = s.hproj ? s.hproj + b * 3 * H + j : nullptr;
            magna_em_gru_forward(g, g + H, g + 2 * H, p ? p[0] : 0.0f, p ? p[H] : 0.0f, p ? p[2 * H] : 0.0f,
                                 s.b_hn ? s.b_hn[j] : 0.0f, hp, s.aux + row * H + j, s.out + row * H + j);
        } else {
            float *h = s.out + row * H + j;
            *h = magna_em_rnn_forward(*h);
        }
    }
}

__global__ void rnn_step_backward_kernel(magna_launch_1d l, rnn_step s) {
    const int64_t stride = magna_launch_1d_stride(&l), H = s.H;
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        const int64_t b = i / H, j = i % H, row = b * s.T + s.t;
        if (s.cell == MAGNA_CUDA_CELL_LSTM) {
            const float *g = s.gates + row * 4 * H + j, *dout = s.dout + row * 2 * H + j;
            const float cp = s.c_prev ? s.c_prev[b * s.ld_prev + j] : 0.0f;
            float *d = s.dgx + row * 4 * H + j;
            magna_em_lstm_backward(g[0], g[H], g[2 * H], g[3 * H], s.aux[row * H + j], cp, dout[0], dout[H], s.dh[i],
                                   s.dc + i, d, d + H, d + 2 * H, d + 3 * H);
        } else if (s.cell == MAGNA_CUDA_CELL_GRU) {
            const float *g = s.gates + row * 3 * H + j;
            const float hp = s.h_prev ? s.h_prev[b * s.ld_prev + j] : 0.0f;
            float *dx = s.dgx + row * 3 * H + j, *dh = s.dgh + row * 3 * H + j;
            magna_em_gru_backward(g[0], g[H], g[2 * H], s.aux[row * H + j], hp, s.dout[row * H + j], s.dh + i, dx,
                                  dx + H, dx + 2 * H, dh + 2 * H);
            dh[0] = dx[0], dh[H] = dx[H];
        } else {
            s.dgx[row * H + j] = magna_em_rnn_backward(s.out[row * H + j], s.dout[row * H + j], s.dh[i]);
        }
    }
}

/* dst[(b, t)] = h_{t-1} of row b: the output's h of step t-1, h0's row, or zeros */
__global__ void rnn_gather_prev_kernel(magna_launch_1d l, float *dst, const float *out, const float *h0, int T,
                                       int H, int per_step) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        const int64_t r = i / H, j = i % H, b = r / T, t = r % T;
        dst[i] = t > 0 ? out[((b * T + t - 1) * per_step) * H + j] : h0 ? h0[b * H + j] : 0.0f;
    }
}

/* Column sums of m [rows, cols]: a block of 32 x COLSUM_Y threads per 32 columns, each thread summing
 * every COLSUM_Y-th row, then the partials added in a fixed order (same bits every run). */
constexpr int COLSUM_Y = 16;
__global__ void colsum_add_kernel(const float *m, int64_t rows, int cols, float *dst1, float *dst2) {
    __shared__ float part[COLSUM_Y][33];
    const int j = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (j < cols)
        for (int64_t r = threadIdx.y; r < rows; r += COLSUM_Y) s += m[r * cols + j];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < cols) {
        float t = 0.0f;
        for (int y = 0; y < COLSUM_Y; y++) t += part[y][threadIdx.x];
        if (dst1) dst1[j] += t;
        if (dst2) dst2[j] += t;
    }
}

__global__ void add_into_kernel(magna_launch_1d l, float *y, const float *x) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) y[i] += x[i];
}

__global__ void fill_kernel(magna_launch_1d l, float *y, float v) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) y[i] = v;
}

bool failed(int err) { return err != cudaSuccess; }

int launch_step(void (*kernel)(magna_launch_1d, rnn_step), const rnn_step &s, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise((int64_t)s.B * s.H, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, kernel, l, s);
}

int fill(float *y, float value, int64_t n, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, fill_kernel, l, y, value);
}

int add_into(float *y, const float *x, int64_t n, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, add_into_kernel, l, y, x);
}

/* dst1 += column sums of m, dst2 += the same (either may be NULL) */
int colsum_add(const float *m, int64_t rows, int cols, float *dst1, float *dst2, void *stream) {
    if (cols <= 0 || (!dst1 && !dst2)) return cudaSuccess;
    return magna_cuda_launch(dim3((unsigned)((cols + 31) / 32)), dim3(32, COLSUM_Y), 0, stream, colsum_add_kernel, m,
                             rows, cols, dst1, dst2);
}

int gates_of(int cell) { return cell == MAGNA_CUDA_CELL_LSTM ? 4 : cell == MAGNA_CUDA_CELL_GRU ? 3 : 1; }
/* output rows of a step are per_step * H wide: 2 for the LSTM (h and c) */
int per_step(int cell) { return cell == MAGNA_CUDA_CELL_LSTM ? 2 : 1; }
float *gates_of_args(const magna_cuda_rnn_args *a) { return a->cell == MAGNA_CUDA_CELL_RNN ? a->out : a->gates; }

/* step t's view: h_{t-1} and c_{t-1} are the output's step t-1, or h0 / c0, or NULL (zeros) */
rnn_step step_of(const magna_cuda_rnn_args *a, int t) {
    rnn_step s = {};
    s.cell = a->cell, s.B = a->B, s.T = a->T, s.H = a->H, s.t = t;
    s.gates = gates_of_args(a), s.aux = a->aux, s.out = a->out;
    const int S = per_step(a->cell);
    if (t > 0) {
        s.h_prev = a->out + (int64_t)(t - 1) * S * a->H;
        s.c_prev = a->cell == MAGNA_CUDA_CELL_LSTM ? s.h_prev + a->H : nullptr;
        s.ld_prev = (int64_t)a->T * S * a->H;
    } else {
        s.h_prev = a->h0, s.c_prev = a->c0, s.ld_prev = a->H;
    }
    return s;
}

} // namespace

extern "C" int magna_cuda_rnn_forward(const magna_cuda_rnn_args *a, void *blas, void *stream) {
    const int B = a->B, T = a->T, H = a->H, I = a->I, G = gates_of(a->cell) * H, BT = B * T;
    const bool gru = a->cell == MAGNA_CUDA_CELL_GRU;
    float *gates = gates_of_args(a);
    if (BT == 0 || H == 0) return cudaSuccess;
    /* every step's input projection at once, then the biases (b_hh too, except the GRU's n part) */
    int err = magna_cuda_gemm(blas, stream, 0, 0, BT, G, I, 1.0f, a->x, I, 0, a->w_ih, G, 0, 0.0f, gates, G, 0, 1,
                              a->bf16);
    if (!failed(err) && a->b_ih) {
        const magna_launch_1d l = magna_launch_elementwise((int64_t)BT * G, 1);
        err = magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, rnn_bias_kernel, l, gates, a->b_ih, a->b_hh, G,
                                gru ? 2 * H : G);
    }
    for (int t = 0; t < T && !failed(err); t++) {
        rnn_step s = step_of(a, t);
        if (gru) {
            s.b_hn = a->b_hh ? a->b_hh + 2 * H : nullptr;
            if (s.h_prev) {
                err = magna_cuda_gemm(blas, stream, 0, 0, B, G, H, 1.0f, s.h_prev, (int)s.ld_prev, 0, a->w_hh, G, 0,
                                      0.0f, a->hproj, G, 0, 1, a->bf16);
                s.hproj = a->hproj;
            }
        } else if (s.h_prev) {
            err = magna_cuda_gemm(blas, stream, 0, 0, B, G, H, 1.0f, s.h_prev, (int)s.ld_prev, 0, a->w_hh, G, 0, 1.0f,
                                  gates + (int64_t)t * G, T * G, 0, 1, a->bf16);
        }
        if (!failed(err)) err = launch_step(rnn_step_forward_kernel, s, stream);
    }
    return err;
}

extern "C" int magna_cuda_rnn_backward(const magna_cuda_rnn_args *a, const float *dout, const magna_cuda_rnn_grads *d,
                                       void *blas, void *stream) {
    const int B = a->B, T = a->T, H = a->H, I = a->I, G = gates_of(a->cell) * H, BT = B * T;
    const bool gru = a->cell == MAGNA_CUDA_CELL_GRU;
    if (BT == 0 || H == 0) return cudaSuccess;
    float *dgh = gru ? a->dgh : a->dgx; /* the same pre-activations feed W_ih and W_hh, but for the GRU */
    int err = fill(a->dh, 0.0f, (int64_t)B * H, stream);
    if (!failed(err) && a->cell == MAGNA_CUDA_CELL_LSTM) err = fill(a->dc, 0.0f, (int64_t)B * H, stream);
    for (int t = T - 1; t >= 0 && !failed(err); t--) {
        rnn_step s = step_of(a, t);
        s.dout = dout, s.dgx = a->dgx, s.dgh = dgh, s.dh = a->dh, s.dc = a->dc;
        err = launch_step(rnn_step_backward_kernel, s, stream);
        /* dh_{t-1} = dG_t W_hh^T (+ the GRU's direct path, already in dh) */
        if (failed(err) || (t == 0 && !d->h0)) continue;
        err = magna_cuda_gemm(blas, stream, 0, 1, B, H, G, 1.0f, dgh + (int64_t)t * G, T * G, 0, a->w_hh, G, 0,
                              gru ? 1.0f : 0.0f, a->dh, H, 0, 1, a->bf16);
    }
    if (!failed(err) && d->h0) err = add_into(d->h0, a->dh, (int64_t)B * H, stream);
    if (!failed(err) && d->c0 && a->cell == MAGNA_CUDA_CELL_LSTM) err = add_into(d->c0, a->dc, (int64_t)B * H, stream);
    /* the big products over all B*T rows */
    if (!failed(err) && d->w_ih)
        err = magna_cuda_gemm(blas, stream, 1, 0, I, G, BT, 1.0f, a->x, I, 0, a->dgx, G, 0, 1.0f, d->w_ih, G, 0, 1,
                              a->bf16);
    if (!failed(err) && d->x)
        err = magna_cuda_gemm(blas, stream, 0, 1, BT, I, G, 1.0f, a->dgx, G, 0, a->w_ih, G, 0, 1.0f, d->x, I, 0, 1,
                              a->bf16);
    if (!failed(err) && d->w_hh) {
        const magna_launch_1d l = magna_launch_elementwise((int64_t)BT * H, 1);
        err = magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, rnn_gather_prev_kernel, l, a->hprev, a->out,
                                a->h0, T, H, per_step(a->cell));
        if (!failed(err))
            err = magna_cuda_gemm(blas, stream, 1, 0, H, G, BT, 1.0f, a->hprev, H, 0, dgh, G, 0, 1.0f, d->w_hh, G, 0, 1,
                                  a->bf16);
    }
    /* the biases: column sums of dG (one sum serves both when the two sides share dG) */
    if (!failed(err) && a->b_ih) {
        if (dgh == a->dgx) {
            err = colsum_add(a->dgx, BT, G, d->b_ih, d->b_hh, stream);
        } else {
            err = colsum_add(a->dgx, BT, G, d->b_ih, nullptr, stream);
            if (!failed(err)) err = colsum_add(dgh, BT, G, d->b_hh, nullptr, stream);
        }
    }
    return err;
}
