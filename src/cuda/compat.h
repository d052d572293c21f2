/* compat.h — the one include of every .cu file: the CUDA runtime and bf16 under nvcc, or the CPU emulator
 * (emu/cuda_emu.h) when the same sources are compiled as C++ into magna_emu (MAGNA_CUDA_EMU). Kernels
 * use only what both sides provide (src/cuda/emu/cuda_emu.h lists it) and are launched only through
 * magna_cuda_launch, never <<< >>>, so the emulator can run them and name them in an error:
 *
 *   return magna_cuda_launch(grid, block, shared_bytes, stream, my_kernel<ACT>, x, y, n);
 *
 * returns the launch's cudaError_t (cudaGetLastError() after the launch). Dynamic shared memory is
 * declared inside the kernel with MAGNA_DYNAMIC_SHARED(float, buf); static shared memory as usual. */
#ifndef MAGNA_CUDA_COMPAT_H
#define MAGNA_CUDA_COMPAT_H

#ifdef MAGNA_CUDA_EMU
#include "emu/cuda_emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif

/* math shared by kernels and CPU tests (the same definition as elementwise_math.h's) */
#ifndef MAGNA_HD
#ifdef __CUDACC__
#define MAGNA_HD static __host__ __device__ __forceinline__
#else
#define MAGNA_HD static inline
#endif
#endif

/* An activation stored as float32, or as bf16 (a bf16 graph's stored16, src/cuda/store16.c): read as float,
 * written back in its type. Kernels that take either are templates over the element type. */
__device__ __forceinline__ float magna_as_float(float v) { return v; }
__device__ __forceinline__ float magna_as_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void magna_store(float *p, float v) { *p = v; }
__device__ __forceinline__ void magna_store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16(v); }

#ifdef MAGNA_CUDA_EMU

#define MAGNA_EMU_STR_(x) #x
#define MAGNA_EMU_STR(x) MAGNA_EMU_STR_(x)
/* a macro, so an error names the launch's source line and its arguments as written */
#define magna_cuda_launch(...) magna_emu_launch_at(__FILE__ ":" MAGNA_EMU_STR(__LINE__), #__VA_ARGS__, __VA_ARGS__)
#define MAGNA_DYNAMIC_SHARED(type, name) type *name = static_cast<type *>(magna_emu_dynamic_shared())

#else

template <class... P, class... A>
static inline cudaError_t magna_cuda_launch(dim3 grid, dim3 block, size_t shared_bytes, void *stream,
                                            void (*kernel)(P...), A... args) {
    kernel<<<grid, block, shared_bytes, static_cast<cudaStream_t>(stream)>>>(args...);
    return cudaGetLastError();
}
/* one byte array for every kernel (each declaring its own type would clash in one file), 16-byte aligned
 * for float4 */
#define MAGNA_DYNAMIC_SHARED(type, name)                                                                               \
    extern __shared__ __align__(16) unsigned char magna_dynamic_shared_[];                                             \
    type *name = reinterpret_cast<type *>(magna_dynamic_shared_)

#endif

#endif
