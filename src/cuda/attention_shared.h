/* attention_shared.h — what attention.cu (the CUDA-core and wmma kernels, the entry points) and attention_mma.cu
 * (the mma.sync kernels) share: a launch's arguments, which keys a query sees, the tensor-core tile and its
 * launcher. C++ (CUDA or the emulator) only. */
#ifndef MAGNA_CUDA_ATTENTION_SHARED_H
#define MAGNA_CUDA_ATTENTION_SHARED_H

#include "compat.h"

#include "kernels.h"
#include "launch.h"

#include <stdint.h>

namespace magna_attention {

/* a launch's arguments, as every attention kernel takes them (attention.cu's attn_args_of fills them) */
struct attn_k {
    magna_launch_attention l;
    const void *q, *k, *v; /* float32, or bf16 (qkv16's bits 0, 1, 2: the tensor-core kernels only) */
    const void *out;       /* backward's view of the output: float32, or bf16 with out16 */
    const void *dout;      /* float32, or bf16 with dout16 (the tensor-core kernels only) */
    void *o;               /* forward's output: float32, or bf16 with out16 (the tensor-core kernel only) */
    float *lse, *delta, *dq, *dk, *dv;
    const int32_t *lengths;
    int H, C, bf16, tc; /* tc: the tensor-core kernels (bf16 mode, hd a multiple of 16 up to 128) */
    int qkv16, out16, dout16;
    unsigned assign; /* bits 0, 1, 2: the kernels assign dq, dk, dv (each writes every element it owns once) */
    unsigned grad16; /* bits 0, 1, 2: dq, dk, dv are bf16 (assigned; the tensor-core kernels only) */
    float scale;
};

/* a gradient element's one write from a kernel: += v, or = v where the backward is its first writer */
__device__ __forceinline__ void put_grad(float *p, float v, bool assign) { *p = assign ? v : *p + v; }
/* element i of a gradient that is float32, or bf16 (is16, then assigned: store16.c keeps only a first write so) */
__device__ __forceinline__ void put_grad_at(float *base, size_t i, float v, bool assign, bool is16) {
    if (is16)
        magna_store(reinterpret_cast<__nv_bfloat16 *>(base) + i, v);
    else
        put_grad(base + i, v, assign);
}

/* keys query i sees: [0, visible) */
__device__ __forceinline__ int visible(const magna_launch_attention &l, int i, int L) {
    const int e = (int)magna_attn_keys_end(&l, i);
    const int n = e < L ? e : L;
    return n > 0 ? n : 0;
}

constexpr int TT = MAGNA_ATTN_TC_TILE; /* rows of a tensor-core kernel's staged tiles */

/* the tensor-core kernels ask for more than the default 48 KiB of shared memory */
template <class K> int tc_launch(dim3 grid, size_t shared, void *stream, K kernel, const attn_k &a) {
    const int err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared);
    if (err != cudaSuccess) return err;
    return magna_cuda_launch(grid, dim3(MAGNA_ATTN_TC_BLOCK), shared, stream, kernel, a);
}

/* a tensor-core kernel at the launch's head size, with `shared` bytes of dynamic shared memory */
#define ATTN_TC_DISPATCH(kernel, grid_x, shared)                                                                     \
    do {                                                                                                             \
        const dim3 grid(grid_x, a.l.grid_y);                                                                         \
        const size_t sh = (shared);                                                                                  \
        switch (a.l.hd) {                                                                                            \
        case 16: return tc_launch(grid, sh, stream, kernel<16>, a);                                                  \
        case 32: return tc_launch(grid, sh, stream, kernel<32>, a);                                                  \
        case 48: return tc_launch(grid, sh, stream, kernel<48>, a);                                                  \
        case 64: return tc_launch(grid, sh, stream, kernel<64>, a);                                                  \
        case 80: return tc_launch(grid, sh, stream, kernel<80>, a);                                                  \
        case 96: return tc_launch(grid, sh, stream, kernel<96>, a);                                                  \
        case 112: return tc_launch(grid, sh, stream, kernel<112>, a);                                                \
        case 128: return tc_launch(grid, sh, stream, kernel<128>, a);                                                \
        default: return cudaErrorInvalidValue;                                                                       \
        }                                                                                                            \
    } while (0)

/* attention_mma.cu: whether the tensor-core kernels are its mma.sync ones (by default, once a probe found this
 * GPU's fragment layout; MAGNA_CUDA_ATTENTION=wmma says no), and its launches (cudaError_t values) */
bool attn_use_mma();
int mma_launch_forward(const attn_k &a, void *stream);
int mma_launch_dq(const attn_k &a, void *stream);
int mma_launch_dkv(const attn_k &a, void *stream);

} // namespace magna_attention

#endif
