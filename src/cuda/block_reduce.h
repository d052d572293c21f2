/* block_reduce.h — the warp and block reductions of the row kernels (softmax, cross-entropy, sums), for the
 * states of elementwise_math.h: a float sum, the (max, sum of exps) of a row, a max with its index. Device
 * code only: the .cu files include it after compat.h.
 *
 * Every reduction is a fixed butterfly (shuffle xor 16, 8, 4, 2, 1) and, across a block's warps, the same
 * butterfly over their results: every lane ends with the same bits (the merges are commutative, so lane l
 * and lane l ^ m compute the same value), and the same inputs always give the same bits (no atomics). */
#ifndef MAGNA_CUDA_BLOCK_REDUCE_H
#define MAGNA_CUDA_BLOCK_REDUCE_H

#include "elementwise_math.h"
#include "launch.h"

namespace magna_reduce {

__device__ __forceinline__ float merge(float a, float b) { return a + b; }
__device__ __forceinline__ magna_em_maxsum merge(magna_em_maxsum a, magna_em_maxsum b) {
    return magna_em_maxsum_merge(a, b);
}
__device__ __forceinline__ magna_em_argmax merge(magna_em_argmax a, magna_em_argmax b) {
    return magna_em_argmax_merge(a, b);
}

__device__ __forceinline__ float shfl_xor(float s, int m) { return __shfl_xor_sync(0xffffffffu, s, m); }
__device__ __forceinline__ magna_em_maxsum shfl_xor(magna_em_maxsum s, int m) {
    magna_em_maxsum r;
    r.max = __shfl_xor_sync(0xffffffffu, s.max, m), r.sum = __shfl_xor_sync(0xffffffffu, s.sum, m);
    return r;
}
__device__ __forceinline__ magna_em_argmax shfl_xor(magna_em_argmax s, int m) {
    magna_em_argmax r;
    r.val = __shfl_xor_sync(0xffffffffu, s.val, m), r.idx = __shfl_xor_sync(0xffffffffu, s.idx, m);
    return r;
}

/* all 32 lanes of the warp must call it; each gets the warp's merge */
template <class S> __device__ __forceinline__ S warp_all(S s) {
    for (int m = 16; m >= 1; m >>= 1) s = merge(s, shfl_xor(s, m));
    return s;
}

/* every thread of the block must call it (blockDim.x a multiple of 32, at most 1024); each gets the block's
 * merge. `empty` is the merge's identity. Starts with a barrier, so back-to-back calls may reuse the slots. */
template <class S> __device__ __forceinline__ S block_all(S s, S empty) {
    __shared__ S part[32];
    s = warp_all(s);
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    __syncthreads();
    if (lane == 0) part[warp] = s;
    __syncthreads();
    return warp_all(lane < warps ? part[lane] : empty);
}

/* the second pass of a split cols reduction (launch.h): out[o] (+)= scale * (partial[0][o] + partial[1][o] +
 * ...), the chunks merged in order, one output a thread */
template <int ACCUMULATE> __global__ void split_finish_kernel(magna_launch_1d l, uint32_t splits,
                                                             const float *__restrict__ partial, float scale,
                                                             float *__restrict__ out) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t o = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); o < l.n; o += stride) {
        float s = 0.0f;
        for (uint32_t y = 0; y < splits; y++) s += partial[(int64_t)y * l.n + o];
        out[o] = ACCUMULATE ? out[o] + s * scale : s * scale;
    }
}

template <int ACCUMULATE> int split_finish(int64_t outs, uint32_t splits, const float *partial, float scale, float *out,
                                           void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(outs, 1);
    return magna_cuda_launch(l.grid, l.block, 0, stream, split_finish_kernel<ACCUMULATE>, l, splits, partial, scale, out);
}

} // namespace magna_reduce

#endif
