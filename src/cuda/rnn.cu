/* rnn.cu — the recurrent ops' kernels besides their GEMMs (src/cuda/ops_rnn.c drives them, with
 * magna_cuda_gemm for every product): the biases added to the input projection, one step's fused gate math
 * forward and backward (a thread per (row, unit), rnn_math.h's formulas), the h_{t-1} rows gathered for
 * dW_hh, deterministic column sums for the bias gradients, and small adds and fills. Grid-stride loops over
 * launch.h's elementwise geometry. */
#include "compat.h"

#include "kernels.h"
#include "launch.h"
#include "rnn_math.h"

namespace {

__global__ void rnn_bias_kernel(magna_launch_1d l, float *gates, const float *b_ih, const float *b_hh, int G,
                                int hh_cols) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        const int j = (int)(i % G);
        gates[i] += b_ih[j] + (j < hh_cols ? b_hh[j] : 0.0f);
    }
}

/* The step's rows of one (b, j): s.t is the step, rows of [B, T, *] are b * T + t. */
__global__ void rnn_step_forward_kernel(magna_launch_1d l, magna_cuda_rnn_step s) {
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

__global__ void rnn_step_backward_kernel(magna_launch_1d l, magna_cuda_rnn_step s) {
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

} // namespace

extern "C" int magna_cuda_rnn_bias(float *gates, const float *b_ih, const float *b_hh, int64_t rows, int G,
                                   int hh_cols, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(rows * G, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, rnn_bias_kernel, l, gates, b_ih, b_hh, G, hh_cols);
}

extern "C" int magna_cuda_rnn_step_forward(const magna_cuda_rnn_step *s, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise((int64_t)s->B * s->H, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, rnn_step_forward_kernel, l, *s);
}

extern "C" int magna_cuda_rnn_step_backward(const magna_cuda_rnn_step *s, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise((int64_t)s->B * s->H, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, rnn_step_backward_kernel, l, *s);
}

extern "C" int magna_cuda_rnn_gather_prev(float *dst, const float *out, const float *h0, int B, int T, int H,
                                          int per_step, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise((int64_t)B * T * H, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, rnn_gather_prev_kernel, l, dst, out, h0, T, H,
                             per_step);
}

extern "C" int magna_cuda_colsum_add(const float *m, int64_t rows, int cols, float *dst1, float *dst2, void *stream) {
    if (cols <= 0 || (!dst1 && !dst2)) return cudaSuccess;
    return magna_cuda_launch(dim3((unsigned)((cols + 31) / 32)), dim3(32, COLSUM_Y), 0, stream, colsum_add_kernel, m,
                             rows, cols, dst1, dst2);
}

extern "C" int magna_cuda_add_into(float *y, const float *x, int64_t n, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, add_into_kernel, l, y, x);
}

extern "C" int magna_cuda_fill(float *y, float value, int64_t n, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(dim3(l.grid), dim3(l.block), 0, stream, fill_kernel, l, y, value);
}
