/* kernels.cu — elementwise activations (forward, backward) and Adam/AdamW over the flat parameter buffer.
 * Each thread takes `vec` contiguous elements per step of a grid-stride loop (launch.h); with vec = 4 (all
 * pointers 16-byte aligned) a full group moves as one float4 load/store, the tail element by element. */
#include "compat.h"

#include "kernels.h"
#include "launch.h"

namespace {

template <int ACT> __device__ __forceinline__ float act_fwd(float x) {
    return ACT == MAGNA_CUDA_RELU ? magna_em_relu(x) : ACT == MAGNA_CUDA_SIGMOID ? magna_em_sigmoid(x) : magna_em_gelu(x);
}
template <int ACT> __device__ __forceinline__ float act_bwd(float saved, float dy) {
    return ACT == MAGNA_CUDA_RELU      ? magna_em_relu_backward(saved, dy)
           : ACT == MAGNA_CUDA_SIGMOID ? magna_em_sigmoid_backward(saved, dy)
                                       : magna_em_gelu_backward(saved, dy);
}

template <int ACT> __global__ void act_forward_kernel(magna_launch_1d l, const float *__restrict__ x,
                                                      float *__restrict__ y) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        if (l.vec == 4 && i + 4 <= l.n) {
            float4 v = *reinterpret_cast<const float4 *>(x + i);
            v.x = act_fwd<ACT>(v.x), v.y = act_fwd<ACT>(v.y), v.z = act_fwd<ACT>(v.z), v.w = act_fwd<ACT>(v.w);
            *reinterpret_cast<float4 *>(y + i) = v;
        } else {
            for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) y[i + j] = act_fwd<ACT>(x[i + j]);
        }
    }
}

template <int ACT> __global__ void act_backward_kernel(magna_launch_1d l, const float *__restrict__ saved,
                                                       const float *__restrict__ dy, float *__restrict__ dx) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        if (l.vec == 4 && i + 4 <= l.n) {
            const float4 s = *reinterpret_cast<const float4 *>(saved + i), d = *reinterpret_cast<const float4 *>(dy + i);
            float4 o = *reinterpret_cast<float4 *>(dx + i);
            o.x += act_bwd<ACT>(s.x, d.x), o.y += act_bwd<ACT>(s.y, d.y);
            o.z += act_bwd<ACT>(s.z, d.z), o.w += act_bwd<ACT>(s.w, d.w);
            *reinterpret_cast<float4 *>(dx + i) = o;
        } else {
            for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) dx[i + j] += act_bwd<ACT>(saved[i + j], dy[i + j]);
        }
    }
}

__global__ void adam_kernel(magna_launch_1d l, magna_em_adam k, float *__restrict__ w, float *__restrict__ m,
                            float *__restrict__ v, const float *__restrict__ g) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride)
        for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) magna_em_adam_update(&k, w + i + j, m + i + j, v + i + j, g[i + j]);
}

bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

} // namespace

extern "C" int magna_cuda_act_forward(magna_cuda_act act, const float *x, float *y, int64_t n, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, aligned16(x) && aligned16(y) ? 4 : 1);
    if (l.grid == 0) return cudaSuccess;
    switch (act) {
    case MAGNA_CUDA_RELU: return magna_cuda_launch(l.grid, l.block, 0, stream, act_forward_kernel<MAGNA_CUDA_RELU>, l, x, y);
    case MAGNA_CUDA_SIGMOID: return magna_cuda_launch(l.grid, l.block, 0, stream, act_forward_kernel<MAGNA_CUDA_SIGMOID>, l, x, y);
    case MAGNA_CUDA_GELU: return magna_cuda_launch(l.grid, l.block, 0, stream, act_forward_kernel<MAGNA_CUDA_GELU>, l, x, y);
    default: return cudaErrorInvalidValue;
    }
}

extern "C" int magna_cuda_act_backward(magna_cuda_act act, const float *saved, const float *dy, float *dx, int64_t n,
                                       void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, aligned16(saved) && aligned16(dy) && aligned16(dx) ? 4 : 1);
    if (l.grid == 0) return cudaSuccess;
    switch (act) {
    case MAGNA_CUDA_RELU: return magna_cuda_launch(l.grid, l.block, 0, stream, act_backward_kernel<MAGNA_CUDA_RELU>, l, saved, dy, dx);
    case MAGNA_CUDA_SIGMOID: return magna_cuda_launch(l.grid, l.block, 0, stream, act_backward_kernel<MAGNA_CUDA_SIGMOID>, l, saved, dy, dx);
    case MAGNA_CUDA_GELU: return magna_cuda_launch(l.grid, l.block, 0, stream, act_backward_kernel<MAGNA_CUDA_GELU>, l, saved, dy, dx);
    default: return cudaErrorInvalidValue;
    }
}

extern "C" int magna_cuda_adam_step(const magna_em_adam *k, float *w, float *m, float *v, const float *g, int64_t n,
                                    void *stream) {
    /* four contiguous elements a thread, scalar accesses (any alignment); not yet tuned on a GPU */
    const magna_launch_1d l = magna_launch_elementwise(n, 4);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, adam_kernel, l, *k, w, m, v, g);
}
