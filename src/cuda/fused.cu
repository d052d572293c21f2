/* fused.cu — kernels that do two graph nodes' forward in one pass over memory (src/cuda/fuse.c finds
 * the pairs): a dense layer's bias add with the GELU after it, and a residual add with the layer norm
 * after it. Each writes both nodes' outputs (backward reads them as usual), so it saves one full read of
 * the intermediate tensor and one launch. The math is elementwise_math.h's, as in the unfused kernels. */
#include "compat.h"

#include "kernels.h"
#include "launch.h"

namespace {

/* x = a + bias (broadcast over rows), y = gelu(x); a, x, y [rows, N] */
__global__ void bias_gelu_kernel(magna_launch_1d l, int op, int64_t N, const float *__restrict__ a,
                                 const float *__restrict__ bias, float *__restrict__ x, float *__restrict__ y) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride)
        for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) {
            const float v = a[i + j] + bias[(i + j) % N];
            x[i + j] = v;
            y[i + j] = magna_em_unary(op, v, 0.0f);
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

/* One warp a row: x1 = a + r, then layer norm of x1 (Welford statistics, merged in a fixed tree). */
__global__ void add_layer_norm_kernel(int64_t rows, int64_t D, float eps, const float *__restrict__ a,
                                      const float *__restrict__ r, const float *__restrict__ gamma,
                                      const float *__restrict__ beta, float *__restrict__ x1, float *__restrict__ y,
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
            y[base + k] = magna_em_layer_norm_out(x1[base + k], m, rs, gamma ? gamma[k] : 1.0f, beta ? beta[k] : 0.0f);
    }
}

} // namespace

extern "C" int magna_cuda_bias_gelu_forward(int tanh_approx, const float *a, const float *bias, int64_t rows,
                                            int64_t N, float *x, float *y, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(rows * N, 4);
    if (l.grid == 0) return 0;
    int op = MAGNA_EM_GELU;
    if (tanh_approx) op = MAGNA_EM_GELU_TANH;
    return (int)magna_cuda_launch(l.grid, l.block, 0, stream, bias_gelu_kernel, l, op, N, a, bias, x, y);
}

extern "C" int magna_cuda_add_layer_norm_forward(const float *a, const float *r, const float *gamma, const float *beta,
                                                 float eps, int64_t rows, int64_t D, float *x1, float *y, float *mean,
                                                 float *rstd, void *stream) {
    if (rows <= 0) return 0;
    const int64_t per_block = MAGNA_LAUNCH_BLOCK / 32, blocks = (rows + per_block - 1) / per_block;
    const int64_t max_grid = MAGNA_LAUNCH_MAX_GRID;
    const uint32_t grid = (uint32_t)(blocks < max_grid ? blocks : max_grid);
    return (int)magna_cuda_launch(grid, MAGNA_LAUNCH_BLOCK, 0, stream, add_layer_norm_kernel, rows, D, eps, a, r, gamma,
                                  beta, x1, y, mean, rstd);
}
