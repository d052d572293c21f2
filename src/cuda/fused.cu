/* fused.cu — kernels that do two graph nodes' forward in one pass over memory (src/cuda/fuse.c finds
 * the pairs): a dense layer's bias add with the GELU after it, and a residual add with the layer norm
 * after it. Each writes both nodes' outputs (backward reads them as usual), so it saves one full read of
 * the intermediate tensor and one launch. The bias + GELU pair's backward is fused too: the GELU's gradient
 * and the bias's column sums of it in one pass. The math is elementwise_math.h's, as in the unfused kernels. */
#include "compat.h"

#include "kernels.h"
#include "launch.h"

namespace {

/* x = a + bias (broadcast over rows), y = gelu(x); a, x, y [rows, N]; x and y float32 or bf16 (stored16), the
 * GELU taken of x as stored, which is what backward reads */
template <class TX, class TY>
__global__ void bias_gelu_kernel(magna_launch_1d l, int op, int64_t N, const float *__restrict__ a,
                                 const float *__restrict__ bias, TX *__restrict__ x, TY *__restrict__ y) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride)
        for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) {
            magna_store(&x[i + j], a[i + j] + bias[(i + j) % N]);
            magna_store(&y[i + j], magna_em_unary(op, magna_as_float(x[i + j]), 0.0f));
        }
}

/* y = a + bias (broadcast over rows) in bf16: a dense layer's output kept in bf16 (stored16: q, k, v) */
__global__ void bias_add16_kernel(magna_launch_1d l, int64_t N, const float *__restrict__ a,
                                  const float *__restrict__ bias, __nv_bfloat16 *__restrict__ y) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride)
        for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) y[i + j] = __float2bfloat16(a[i + j] + bias[(i + j) % N]);
}

/* y = gelu(x), both bf16: a fused bias + GELU's output computed again in backward from its stored input, the
 * same bits as its forward wrote */
__global__ void gelu16_kernel(magna_launch_1d l, int op, const __nv_bfloat16 *__restrict__ x,
                              __nv_bfloat16 *__restrict__ y) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride)
        for (uint32_t j = 0; j < l.vec && i + j < l.n; j++)
            magna_store(&y[i + j], magna_em_unary(op, magna_as_float(x[i + j]), 0.0f));
}

/* y = layer norm of x with the statistics its forward kept, in bf16: a fused residual + layer norm's output
 * computed again in backward, the same expression as add_layer_norm_kernel's */
__global__ void layer_norm_apply16_kernel(magna_launch_1d l, int64_t D, const float *__restrict__ x,
                                          const float *__restrict__ mean, const float *__restrict__ rstd,
                                          const float *__restrict__ gamma, const float *__restrict__ beta,
                                          __nv_bfloat16 *__restrict__ y) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride)
        for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) {
            const int64_t e = i + j, row = e / D, k = e - row * D;
            magna_store(&y[e], magna_em_layer_norm_out(x[e], mean[row], rstd[row], gamma ? gamma[k] : 1.0f,
                                                       beta ? beta[k] : 0.0f));
        }
}

/* a gradient element's write: float added into (or assigned), bf16 assigned (a bf16 gradient has one writer) */
__device__ __forceinline__ void put_dx(float *p, float v, int assign) { *p = (assign ? 0.0f : *p) + v; }
__device__ __forceinline__ void put_dx(__nv_bfloat16 *p, float v, int) { magna_store(p, v); }

/* Block (x: 32 columns, y: a slice of rows): dx += GELU'(x) dy over the slice's rows, and part[y][col] = the sum of
 * those terms (before any rounding of dx to bf16), the block's warps taking every MAGNA_COLSUM_WARPS-th row, then
 * added in warp order (fixed: the same bits every run). */
template <class TX, class TY, class TD>
__global__ void bias_gelu_backward_kernel(magna_launch_colsum l, int op, const TX *__restrict__ x,
                                          const TY *__restrict__ dy, TD *__restrict__ dx, int assign,
                                          float *__restrict__ part) {
    __shared__ float s[MAGNA_COLSUM_WARPS][MAGNA_LAUNCH_WARP];
    const int64_t N = l.cols, col = magna_colsum_col(blockIdx.x, threadIdx.x);
    const uint32_t warp = threadIdx.x / MAGNA_LAUNCH_WARP, lane = threadIdx.x % MAGNA_LAUNCH_WARP;
    float sum = 0.0f;
    if (col < N)
        for (int64_t r = magna_colsum_row_begin(&l, blockIdx.y) + warp; r < magna_colsum_row_end(&l, blockIdx.y);
             r += MAGNA_COLSUM_WARPS) {
            const int64_t i = r * N + col;
            const float d = magna_em_unary_backward(op, magna_as_float(x[i]), 0.0f, magna_as_float(dy[i]), 0.0f);
            put_dx(&dx[i], d, assign);
            sum += d;
        }
    s[warp][lane] = sum;
    __syncthreads();
    if (warp == 0 && col < N) {
        for (uint32_t w = 1; w < MAGNA_COLSUM_WARPS; w++) sum += s[w][lane];
        part[(int64_t)blockIdx.y * N + col] = sum;
    }
}

/* dbias[col] += the slices' partial sums, in slice order (= with assign) */
__global__ void bias_sum_final_kernel(magna_launch_1d l, const float *__restrict__ part, int slices,
                                      float *__restrict__ dbias, int assign) {
    const int64_t stride = magna_launch_1d_stride(&l), N = l.n;
    for (int64_t col = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); col < N; col += stride) {
        float b = 0.0f;
        for (int s = 0; s < slices; s++) b += part[(int64_t)s * N + col];
        dbias[col] = (assign ? 0.0f : dbias[col]) + b;
    }
}

__device__ __forceinline__ magna_em_welford warp_welford(magna_em_welford s) {
    for (int o = 16; o > 0; o >>= 1) {
        magna_em_welford t;
        t.n = __shfl_xor_sync(0xffffffffu, s.n, o);
        t.mean = __shfl_xor_sync(0xffffffffu, s.mean, o);
        t.m2 = __shfl_xor_sync(0xffffffffu, s.m2, o);
        s = magna_em_welford_merge(s, t);
    }
    return s;
}

/* One warp a row: x1 = a + r, then layer norm of x1 (Welford statistics, merged in a fixed tree); y float32 or
 * bf16 (stored16), x1 (the residual stream) float32. */
template <class TY>
__global__ void add_layer_norm_kernel(int64_t rows, int64_t D, float eps, const float *__restrict__ a,
                                      const float *__restrict__ r, const float *__restrict__ gamma,
                                      const float *__restrict__ beta, float *__restrict__ x1, TY *__restrict__ y,
                                      float *__restrict__ mean, float *__restrict__ rstd) {
    const int lane = threadIdx.x % 32;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; row < rows; row += warps) {
        const int64_t base = row * D;
        magna_em_welford s = magna_em_welford_empty();
        for (int64_t k = lane; k < D; k += 32) {
            const float v = a[base + k] + r[base + k];
            x1[base + k] = v;
            s = magna_em_welford_push(s, v);
        }
        s = warp_welford(s);
        const float m = s.mean, rs = magna_em_layer_norm_rstd(s, eps);
        if (lane == 0) mean[row] = m, rstd[row] = rs;
        __syncwarp();
        for (int64_t k = lane; k < D; k += 32)
            magna_store(&y[base + k],
                        magna_em_layer_norm_out(x1[base + k], m, rs, gamma ? gamma[k] : 1.0f, beta ? beta[k] : 0.0f));
    }
}

} // namespace

extern "C" int magna_cuda_bias_gelu_forward(int tanh_approx, const float *a, const float *bias, int64_t rows,
                                            int64_t N, void *x, int x16, void *y, int y16, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(rows * N, 4);
    if (l.grid == 0) return 0;
    const int op = tanh_approx ? MAGNA_EM_GELU_TANH : MAGNA_EM_GELU;
    typedef __nv_bfloat16 bf;
    if (x16 && y16)
        return (int)magna_cuda_launch(l.grid, l.block, 0, stream, bias_gelu_kernel<bf, bf>, l, op, N, a, bias,
                                      static_cast<bf *>(x), static_cast<bf *>(y));
    if (y16)
        return (int)magna_cuda_launch(l.grid, l.block, 0, stream, bias_gelu_kernel<float, bf>, l, op, N, a, bias,
                                      static_cast<float *>(x), static_cast<bf *>(y));
    if (x16) return (int)cudaErrorInvalidValue; /* x in bf16 goes with y in bf16 (store16.c) */
    return (int)magna_cuda_launch(l.grid, l.block, 0, stream, bias_gelu_kernel<float, float>, l, op, N, a, bias,
                                  static_cast<float *>(x), static_cast<float *>(y));
}

extern "C" int magna_cuda_gelu16(int tanh_approx, const void *x, int64_t n, void *y, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, 4);
    if (l.grid == 0) return 0;
    return (int)magna_cuda_launch(l.grid, l.block, 0, stream, gelu16_kernel, l,
                                  tanh_approx ? MAGNA_EM_GELU_TANH : MAGNA_EM_GELU,
                                  static_cast<const __nv_bfloat16 *>(x), static_cast<__nv_bfloat16 *>(y));
}

extern "C" int magna_cuda_layer_norm_apply16(const float *x, const float *mean, const float *rstd, const float *gamma,
                                             const float *beta, int64_t rows, int64_t D, void *y, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(rows * D, 4);
    if (l.grid == 0) return 0;
    return (int)magna_cuda_launch(l.grid, l.block, 0, stream, layer_norm_apply16_kernel, l, D, x, mean, rstd, gamma,
                                  beta, static_cast<__nv_bfloat16 *>(y));
}

extern "C" int magna_cuda_bias_add16(const float *a, const float *bias, int64_t rows, int64_t N, void *y,
                                      void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(rows * N, 4);
    if (l.grid == 0) return 0;
    return (int)magna_cuda_launch(l.grid, l.block, 0, stream, bias_add16_kernel, l, N, a, bias,
                                  static_cast<__nv_bfloat16 *>(y));
}

/* the backward kernel for x, dy and dx each float32 or bf16 (x16, dy16, dx16) */
template <class TX, class TY>
int bias_gelu_backward_launch(dim3 grid, dim3 block, void *stream, const magna_launch_colsum &l, int op, const void *x,
                              const void *dy, void *dx, int dx16, int assign, float *part) {
    const TX *xp = static_cast<const TX *>(x);
    const TY *dyp = static_cast<const TY *>(dy);
    if (dx16)
        return (int)magna_cuda_launch(grid, block, 0, stream, bias_gelu_backward_kernel<TX, TY, __nv_bfloat16>, l, op,
                                      xp, dyp, static_cast<__nv_bfloat16 *>(dx), assign, part);
    return (int)magna_cuda_launch(grid, block, 0, stream, bias_gelu_backward_kernel<TX, TY, float>, l, op, xp, dyp,
                                  static_cast<float *>(dx), assign, part);
}

extern "C" int magna_cuda_bias_gelu_backward(int tanh_approx, const void *x, int x16, const void *dy, int dy16,
                                             int64_t rows, int64_t N, void *dx, int dx16, int assign_dx, float *dbias,
                                             int assign_dbias, float *workspace, size_t workspace_floats,
                                             void *stream) {
    if (rows <= 0 || N <= 0) return 0;
    if (dx16 && !assign_dx) return (int)cudaErrorInvalidValue; /* a bf16 gradient is written once */
    const int64_t fit = (int64_t)(workspace_floats / (size_t)N);
    if (fit < 1) return (int)cudaErrorInvalidValue; /* fuse.c fuses only with room for one slice */
    const magna_launch_colsum l = magna_launch_colsums(rows, N, fit);
    const int op = tanh_approx ? MAGNA_EM_GELU_TANH : MAGNA_EM_GELU;
    const dim3 grid(l.grid_x, l.grid_y), block(l.block);
    typedef __nv_bfloat16 bf;
    const int e = x16 ? dy16 ? bias_gelu_backward_launch<bf, bf>(grid, block, stream, l, op, x, dy, dx, dx16, assign_dx,
                                                                  workspace)
                             : bias_gelu_backward_launch<bf, float>(grid, block, stream, l, op, x, dy, dx, dx16,
                                                                     assign_dx, workspace)
                      : dy16 ? bias_gelu_backward_launch<float, bf>(grid, block, stream, l, op, x, dy, dx, dx16,
                                                                     assign_dx, workspace)
                             : bias_gelu_backward_launch<float, float>(grid, block, stream, l, op, x, dy, dx, dx16,
                                                                        assign_dx, workspace);
    if (e) return e;
    const magna_launch_1d f = magna_launch_elementwise(N, 1);
    return (int)magna_cuda_launch(dim3(f.grid), dim3(f.block), 0, stream, bias_sum_final_kernel, f,
                                  (const float *)workspace, (int)l.grid_y, dbias, assign_dbias);
}

extern "C" int magna_cuda_add_layer_norm_forward(const float *a, const float *r, const float *gamma, const float *beta,
                                                 float eps, int64_t rows, int64_t D, float *x1, void *y, int y16,
                                                 float *mean, float *rstd, void *stream) {
    if (rows <= 0) return 0;
    const int64_t per_block = MAGNA_LAUNCH_BLOCK / 32, blocks = (rows + per_block - 1) / per_block;
    const int64_t max_grid = MAGNA_LAUNCH_MAX_GRID;
    const uint32_t grid = (uint32_t)(blocks < max_grid ? blocks : max_grid);
    return y16 ? (int)magna_cuda_launch(grid, MAGNA_LAUNCH_BLOCK, 0, stream, add_layer_norm_kernel<__nv_bfloat16>, rows,
                                        D, eps, a, r, gamma, beta, x1, static_cast<__nv_bfloat16 *>(y), mean, rstd)
               : (int)magna_cuda_launch(grid, MAGNA_LAUNCH_BLOCK, 0, stream, add_layer_norm_kernel<float>, rows, D,
                                        eps, a, r, gamma, beta, x1, static_cast<float *>(y), mean, rstd);
}
