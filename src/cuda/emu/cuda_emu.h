/* cuda_emu.h — a CPU emulator of the CUDA subset magna's kernels use (the .cu files in src/cuda, through compat.h), so
 * the GPU code's logic runs and is tested where there is no GPU (CI, this machine). Built into the library
 * magna_emu only (MAGNA_CUDA_EMU); the real build never sees it.
 *
 * Host side (C and C++): the runtime calls, with CUDA's names and error codes. Device memory is host memory
 * (malloc'd, so ASan sees a kernel's out-of-bounds access; NaN-filled when allocated, since a GPU's fresh
 * memory holds anything); copies and launches run at once, so streams and events order nothing
 * (everything is already done when a call returns). A kernel's pointer arguments must be device memory.
 * Device side (C++ only): threadIdx and friends, __syncthreads, warp shuffles, atomics, __nv_bfloat16,
 * float4. A launch runs its blocks one after another, each block's threads one after another on fibers
 * (emu.cpp): a thread runs until it finishes or reaches a barrier, so a kernel without barriers costs a
 * function call per thread. A barrier that not every thread of the block reaches, or threads waiting at
 * different barriers, is a launch failure naming the kernel (a hang on a GPU). */
#ifndef MAGNA_CUDA_EMU_H
#define MAGNA_CUDA_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- host: the runtime ------------------------------------------------------------------------------ */

#ifdef __cplusplus
extern "C" {
#endif

/* CUDA's numbers, so a message or a log reads the same as on a GPU */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchTimeout = 702,
    cudaErrorLaunchFailure = 719,
    cudaErrorUnknown = 999,
} cudaError_t;

typedef enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
} cudaMemcpyKind;

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00

typedef enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
} cudaFuncAttribute;

typedef enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
} cudaDeviceAttr;

/* the fields of cudaDeviceProp a program asks for (an H100's figures: what the real build targets) */
typedef struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
    int warpSize, maxThreadsPerBlock, maxThreadsDim[3], maxGridSize[3];
    int major, minor, multiProcessorCount;
} cudaDeviceProp;

typedef struct {
    float x, y;
} float2;
typedef struct {
    float x, y, z;
} float3;
typedef struct __attribute__((aligned(16))) {
    float x, y, z, w;
} float4;
typedef struct {
    int x, y;
} int2;
typedef struct __attribute__((aligned(16))) {
    int x, y, z, w;
} int4;
typedef struct {
    unsigned int x, y, z;
} uint3;

cudaError_t cudaMalloc(void **ptr, size_t size);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocHost(void **ptr, size_t size);
cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemset(void *ptr, int value, size_t count);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);

cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
/* cudaSuccess: everything queued on it is done (always, here); as on a GPU, for polling with a deadline */
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags);
cudaError_t cudaDeviceSynchronize(void);

cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
/* host time between the two records: the emulator's, not a GPU's */
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);

cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
/* for a launch failure the emulator found (a divergent barrier, a bad shuffle), the message naming the
 * launch; otherwise CUDA's text for the code */
const char *cudaGetErrorString(cudaError_t error);
const char *cudaGetErrorName(cudaError_t error);

/* the emulator's own: launches run so far (tests count them), and the last failure's message ("" if none) */
long long magna_emu_launch_count(void);
const char *magna_emu_last_failure(void);
/* whether [p, p + bytes) lies in one cudaMalloc'd block (the emulated NCCL checks its buffers with it) */
int magna_emu_is_device(const void *p, size_t bytes);
/* on != 0: from now on cudaStreamQuery answers cudaErrorNotReady for every stream, as a GPU whose kernel never
 * ends would (the emulated NCCL's MAGNA_EMU_NCCL_HANG, for the tests of a deadline) */
void magna_emu_stall_streams(int on);

#ifdef __cplusplus
} /* extern "C" */
#endif

/* ---- device side (C++: the .cu files compiled by g++) --------------------------------------------------- */
#ifdef __cplusplus

#include <tuple>
#include <utility>

#define __host__
#define __device__
#define __global__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
/* blocks run one at a time, so one static copy is the block's shared memory */
#define __shared__ static
#define __constant__ static

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

/* the running thread's coordinates: the scheduler in emu.cpp sets them before it runs or resumes a thread */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
static const int warpSize = 32;

extern "C" {
void __syncthreads(void);
void __syncwarp(unsigned int mask = 0xffffffffu);
/* the warp exchange behind every shuffle: PTX shfl.sync's modes and its c operand (segment mask, clamp) */
enum { MAGNA_EMU_SHFL_IDX, MAGNA_EMU_SHFL_UP, MAGNA_EMU_SHFL_DOWN, MAGNA_EMU_SHFL_XOR };
uint64_t magna_emu_shfl(unsigned int mask, uint64_t value, int mode, int b, int width);
unsigned int magna_emu_ballot(unsigned int mask, int predicate);
/* the launch's dynamic shared memory: exactly the bytes asked for (ASan sees an overflow), NaN-filled at
 * the start of every block so a read before a write shows */
void *magna_emu_dynamic_shared(void);
}

/* shuffles of any 1- to 8-byte type; only full-warp masks (a partial one fails the launch) */
template <class T> static inline T magna_emu_shfl_t(unsigned int mask, T v, int mode, int b, int width) {
    static_assert(sizeof(T) <= 8, "the emulator shuffles at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = magna_emu_shfl(mask, bits, mode, b, width);
    memcpy(&v, &bits, sizeof v);
    return v;
}
template <class T> static inline T __shfl_sync(unsigned int mask, T v, int src, int width = 32) {
    return magna_emu_shfl_t(mask, v, MAGNA_EMU_SHFL_IDX, src, width);
}
template <class T> static inline T __shfl_up_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
    return magna_emu_shfl_t(mask, v, MAGNA_EMU_SHFL_UP, (int)delta, width);
}
template <class T> static inline T __shfl_down_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
    return magna_emu_shfl_t(mask, v, MAGNA_EMU_SHFL_DOWN, (int)delta, width);
}
template <class T> static inline T __shfl_xor_sync(unsigned int mask, T v, int lane_mask, int width = 32) {
    return magna_emu_shfl_t(mask, v, MAGNA_EMU_SHFL_XOR, lane_mask, width);
}
static inline unsigned int __ballot_sync(unsigned int mask, int p) { return magna_emu_ballot(mask, p); }
static inline int __any_sync(unsigned int mask, int p) { return magna_emu_ballot(mask, p) != 0; }
static inline int __all_sync(unsigned int mask, int p) { return magna_emu_ballot(mask, p) == mask; }

/* atomics: the emulator runs every thread on one OS thread, so a read-modify-write is atomic */
template <class T> static inline T magna_emu_atomic_add(T *p, T v) {
    const T old = *p;
    *p = old + v;
    return old;
}
static inline float atomicAdd(float *p, float v) { return magna_emu_atomic_add(p, v); }
static inline double atomicAdd(double *p, double v) { return magna_emu_atomic_add(p, v); }
static inline int atomicAdd(int *p, int v) { return magna_emu_atomic_add(p, v); }
static inline unsigned int atomicAdd(unsigned int *p, unsigned int v) { return magna_emu_atomic_add(p, v); }
static inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
    return magna_emu_atomic_add(p, v);
}
static inline int atomicSub(int *p, int v) { return magna_emu_atomic_add(p, -v); }
static inline int atomicMax(int *p, int v) {
    const int old = *p;
    *p = old > v ? old : v;
    return old;
}
static inline int atomicMin(int *p, int v) {
    const int old = *p;
    *p = old < v ? old : v;
    return old;
}
static inline int atomicExch(int *p, int v) {
    const int old = *p;
    *p = v;
    return old;
}
static inline float atomicExch(float *p, float v) {
    const float old = *p;
    *p = v;
    return old;
}
static inline int atomicCAS(int *p, int cmp, int v) {
    const int old = *p;
    if (old == cmp) *p = v;
    return old;
}
static inline unsigned int atomicCAS(unsigned int *p, unsigned int cmp, unsigned int v) {
    const unsigned int old = *p;
    if (old == cmp) *p = v;
    return old;
}
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}

/* ---- math: CUDA's device names for the host's functions ---------------------------------------------- */
/* glibc's math.h declares these itself (its internal names), so macros rather than functions */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __tanhf(x) tanhf(x)
#define __powf(x, y) powf(x, y)
static inline float __fdividef(float x, float y) { return x / y; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline float __int_as_float(int x) {
    float f;
    memcpy(&f, &x, 4);
    return f;
}
static inline int __float_as_int(float x) {
    int i;
    memcpy(&i, &x, 4);
    return i;
}
static inline float __uint_as_float(unsigned int x) {
    float f;
    memcpy(&f, &x, 4);
    return f;
}
static inline unsigned int __float_as_uint(float x) {
    unsigned int i;
    memcpy(&i, &x, 4);
    return i;
}
template <class T> static inline T __ldg(const T *p) { return *p; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
static inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }

static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return int2{x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
static inline uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return uint3{x, y, z}; }

/* ---- bf16: CUDA's bits (round to nearest even; any NaN becomes 0x7fff, as cuda_bf16.hpp's host path) --- */
struct __nv_bfloat16_raw {
    unsigned short x;
};
struct __nv_bfloat16 {
    unsigned short __x;
    __nv_bfloat16() = default;
    constexpr __nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
    operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
};
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
static inline unsigned short magna_emu_f2bf_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
    const uint32_t rest = u & 0xffffu, half = 0x8000u;
    uint32_t hi = u >> 16;
    if (rest > half || (rest == half && (hi & 1u))) hi++;
    return (unsigned short)hi;
}
static inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16_raw{magna_emu_f2bf_bits(f)}; }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
static inline float __bfloat162float(__nv_bfloat16 h) {
    const uint32_t u = (uint32_t)h.__x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return __nv_bfloat162{__float2bfloat16(a), __float2bfloat16(b)};
}
static inline __nv_bfloat162 __float22bfloat162_rn(float2 v) { return __floats2bfloat162_rn(v.x, v.y); }
static inline float2 __bfloat1622float2(__nv_bfloat162 v) {
    return float2{__bfloat162float(v.x), __bfloat162float(v.y)};
}
static inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
static inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }

/* ---- launches ------------------------------------------------------------------------------------------ */

/* runs body(ctx) once per thread of every block; `where` and `what` name the launch in an error */
extern "C" cudaError_t magna_emu_launch(dim3 grid, dim3 block, size_t shared_bytes, void *stream, const void *kernel,
                                        void (*body)(void *), void *ctx, const char *where, const char *what);
extern "C" cudaError_t magna_emu_func_set_attribute(const void *kernel, int attr, int value);
/* a kernel's pointer argument must be NULL, device memory or cudaMallocHost'd (a host pointer is an illegal
 * address on a GPU); other arguments are not looked into */
extern "C" cudaError_t magna_emu_check_pointer_arg(const void *p, int index, const char *where, const char *what);
template <class T> static inline cudaError_t magna_emu_check_arg(const T &, int, const char *, const char *) {
    return cudaSuccess;
}
template <class T> static inline cudaError_t magna_emu_check_arg(T *p, int index, const char *where, const char *what) {
    return magna_emu_check_pointer_arg((const void *)p, index, where, what);
}

template <class... P> struct magna_emu_call {
    void (*kernel)(P...);
    std::tuple<P...> args; /* by value, converted to the parameters' types, as CUDA passes them */
    static void run(void *self) {
        magna_emu_call *c = static_cast<magna_emu_call *>(self);
        std::apply(c->kernel, c->args);
    }
};

template <class... P, class... A>
cudaError_t magna_emu_launch_at(const char *where, const char *what, dim3 grid, dim3 block, size_t shared_bytes,
                                void *stream, void (*kernel)(P...), A... args) {
    static_assert(sizeof...(P) == sizeof...(A), "magna_cuda_launch: wrong number of kernel arguments");
    magna_emu_call<P...> call{kernel, std::tuple<P...>(static_cast<P>(args)...)};
    cudaError_t err = cudaSuccess;
    int index = 0;
    std::apply([&](const P &...p) { ((err = err ? err : magna_emu_check_arg(p, index++, where, what)), ...); },
               call.args);
    if (err != cudaSuccess) return cudaGetLastError(); /* err, read and cleared as a failed launch's is */
    return magna_emu_launch(grid, block, shared_bytes, stream, reinterpret_cast<const void *>(kernel),
                            &magna_emu_call<P...>::run, &call, where, what);
}

template <class... P>
static inline cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr, int value) {
    return magna_emu_func_set_attribute(reinterpret_cast<const void *>(kernel), (int)attr, value);
}

#endif /* __cplusplus */

#endif
