/* optim.cu — the optimizer's work over the flat parameter buffer on the device: SGD (momentum, Nesterov)
 * steps, the global gradient norm (for clipping) and the finite check. The per-element formulas are
 * elementwise_math.h's, shared with the CPU tests; Adam's kernel is in kernels.cu.
 *
 * Reductions are deterministic: each block reduces its grid-stride share in a fixed tree (warp shuffles,
 * then one warp over the warps' partials), the partials land in `scratch` in block order, and one block
 * reduces them the same way. Same inputs, same bits, unlike float atomics. */
#include "compat.h"

#include "kernels.h"
#include "launch.h"

namespace {

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* The sum of v over the block (every thread of it calls this); the result is valid in thread 0. */
__device__ float block_sum(float v) {
    __shared__ float partial[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
    v = warp_sum(v);
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? partial[lane] : 0.0f;
        v = warp_sum(v);
    }
    __syncthreads(); /* partial[] is reused by the next call */
    return v;
}

__global__ void sgd_kernel(magna_launch_1d l, float lr, float momentum, float weight_decay, int nesterov, int first,
                           float *__restrict__ w, float *__restrict__ m, const float *__restrict__ g) {
    const int64_t stride = magna_launch_1d_stride(&l);
    float unused = 0.0f;
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride)
        for (uint32_t j = 0; j < l.vec && i + j < l.n; j++)
            magna_em_sgd_update(lr, momentum, weight_decay, nesterov, first, w + i + j, m ? m + i + j : &unused,
                                g[i + j]);
}

/* MODE 0: sum of squares; 1: count of non-finite elements (as a float: exact up to 2^24 per block) */
template <int MODE> __global__ void reduce_partial_kernel(magna_launch_1d l, const float *__restrict__ x,
                                                          float *__restrict__ partial) {
    const int64_t stride = magna_launch_1d_stride(&l);
    float acc = 0.0f;
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride)
        for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) {
            const float v = x[i + j];
            acc += MODE == 0 ? v * v : (isfinite(v) ? 0.0f : 1.0f);
        }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void sum_partials_kernel(const float *__restrict__ partial, int n, float *__restrict__ out) {
    float acc = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    acc = block_sum(acc);
    if (threadIdx.x == 0) *out = acc;
}

__global__ void scale_kernel(magna_launch_1d l, float k, float *__restrict__ x) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride)
        for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) x[i + j] *= k;
}

} // namespace

extern "C" int magna_cuda_sgd_step(float lr, float momentum, float weight_decay, int nesterov, int first, float *w,
                                   float *m, const float *g, int64_t n, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, 4);
    if (l.grid == 0) return 0;
    return (int)magna_cuda_launch(l.grid, l.block, 0, stream, sgd_kernel, l, lr, momentum, weight_decay, nesterov,
                                  first, w, m, g);
}

extern "C" int magna_cuda_reduce(int mode, const float *x, int64_t n, float *scratch, float *out, void *stream) {
    magna_launch_1d l = magna_launch_elementwise(n, 4);
    if (l.grid > MAGNA_CUDA_REDUCE_BLOCKS) l.grid = MAGNA_CUDA_REDUCE_BLOCKS;
    if (l.grid == 0) return (int)cudaMemsetAsync(out, 0, sizeof(float), (cudaStream_t)stream);
    cudaError_t e = mode == 0 ? magna_cuda_launch(l.grid, l.block, 0, stream, reduce_partial_kernel<0>, l, x, scratch)
                              : magna_cuda_launch(l.grid, l.block, 0, stream, reduce_partial_kernel<1>, l, x, scratch);
    if (e != cudaSuccess) return (int)e;
    return (int)magna_cuda_launch(1, MAGNA_LAUNCH_BLOCK, 0, stream, sum_partials_kernel, (const float *)scratch,
                                  (int)l.grid, out);
}

extern "C" int magna_cuda_scale(float k, float *x, int64_t n, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, 4);
    if (l.grid == 0) return 0;
    return (int)magna_cuda_launch(l.grid, l.block, 0, stream, scale_kernel, l, k, x);
}
