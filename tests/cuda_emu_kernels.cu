/* cuda_emu_kernels.cu — the kernels tests/test_cuda_emu.c runs on the CUDA emulator: the device features the
 * emulator must get right (barriers, shared memory, shuffles, atomics, bf16, launch geometry) and the
 * mistakes it must report (a barrier not every thread reaches, threads at different barriers). Written as
 * ordinary CUDA through compat.h; each entry point returns the launch's cudaError_t as an int. */
#include "cuda/compat.h"

#include "cuda_emu_kernels.h"

namespace {

/* each block sums its 256-element slice of x (zeros past n) by a tree in shared memory */
__global__ void block_sum_kernel(const float *x, int n, float *out) {
    __shared__ float s[256];
    const int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) s[t] += s[t + half];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = s[0];
}

/* per warp, into out[k * n + i] (k = EMU_WARP_*): a butterfly sum (every lane gets it), a down-sum (lane 0
 * gets it), an inclusive scan with up-shuffles, a broadcast of lane 5, the same four at widths below 32
 * (segments of 8 or 16 lanes: a shuffle that would leave its segment keeps the lane's own value), and votes */
__global__ void warp_kernel(const float *x, int n, float *out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
    const float v = x[i];
    float a = v, b = v, c = v, d = v;
    for (int m = 16; m > 0; m /= 2) a += __shfl_xor_sync(0xffffffffu, a, m);
    for (int o = 16; o > 0; o /= 2) b += __shfl_down_sync(0xffffffffu, b, o);
    for (int o = 1; o < 32; o *= 2) {
        const float up = __shfl_up_sync(0xffffffffu, c, o);
        if (lane >= o) c += up;
    }
    for (int m = 4; m > 0; m /= 2) d += __shfl_xor_sync(0xffffffffu, d, m, 8);
    out[EMU_WARP_XOR * n + i] = a, out[EMU_WARP_SCAN * n + i] = c, out[EMU_WARP_XOR8 * n + i] = d;
    out[EMU_WARP_DOWN * n + i] = lane == 0 ? b : 0.0f;
    out[EMU_WARP_IDX * n + i] = __shfl_sync(0xffffffffu, v, 5);
    out[EMU_WARP_DOWN16 * n + i] = __shfl_down_sync(0xffffffffu, v, 5, 16);
    out[EMU_WARP_UP8 * n + i] = __shfl_up_sync(0xffffffffu, v, 3, 8);
    out[EMU_WARP_IDX8 * n + i] = __shfl_sync(0xffffffffu, v, 10, 8); /* lane 2 of the segment: 10 mod 8 */
    __syncwarp();
    out[EMU_WARP_BALLOT * n + i] = __uint_as_float(__ballot_sync(0xffffffffu, v > 0.0f));
    out[EMU_WARP_ANY_ALL * n + i] =
        (float)(__any_sync(0xffffffffu, v > 45.0f) * 2 + __all_sync(0xffffffffu, v > -48.0f));
}

/* out (cols x rows) = in (rows x cols) transposed through a padded 32 x 33 tile, blocks of 32 x 8 */
__global__ void transpose_kernel(const float *in, float *out, int rows, int cols) {
    __shared__ float tile[32][33];
    const int x = blockIdx.x * 32 + threadIdx.x;
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const int y = blockIdx.y * 32 + k;
        if (x < cols && y < rows) tile[k][threadIdx.x] = in[(size_t)y * cols + x];
    }
    __syncthreads();
    const int ox = blockIdx.y * 32 + threadIdx.x; /* a row of in is a column of out */
    for (int k = threadIdx.y; k < 32; k += blockDim.y) {
        const int oy = blockIdx.x * 32 + k;
        if (ox < rows && oy < cols) out[(size_t)oy * rows + ox] = tile[threadIdx.x][k];
    }
}

/* each block reverses its chunk of blockDim.x elements through dynamic shared memory */
__global__ void reverse_kernel(const float *in, float *out) {
    MAGNA_DYNAMIC_SHARED(float, buf);
    const int t = threadIdx.x, base = blockIdx.x * blockDim.x;
    buf[t] = in[base + t];
    __syncthreads();
    out[base + t] = buf[blockDim.x - 1 - t];
}

/* a histogram and a float total over every block, and the largest value */
__global__ void atomic_kernel(const int *x, int n, int *hist, float *total, int *maxv) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        atomicAdd(&hist[x[i] & 15], 1);
        atomicAdd(total, (float)x[i]);
        atomicMax(maxv, x[i]);
    }
}

/* every thread of a 3-D grid of 3-D blocks records itself once at its global linear index */
__global__ void geometry_kernel(int *seen, int *bad) {
    if (threadIdx.x >= blockDim.x || threadIdx.y >= blockDim.y || threadIdx.z >= blockDim.z ||
        blockIdx.x >= gridDim.x || blockIdx.y >= gridDim.y || blockIdx.z >= gridDim.z)
        atomicAdd(bad, 1);
    const int tpb = blockDim.x * blockDim.y * blockDim.z;
    const int t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    atomicAdd(&seen[b * tpb + t], 1);
}

/* bf16 both ways: the bits of __float2bfloat16(x[i]) and the float they stand for */
__global__ void bf16_kernel(const float *x, int n, unsigned short *bits, float *back) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const __nv_bfloat16 h = __float2bfloat16(x[i]);
    __nv_bfloat16_raw r = h;
    bits[i] = r.x;
    back[i] = __bfloat162float(h);
}

/* out[i] = x[i - 1] within each block of 64, through shared memory; without the barrier between the writes
 * and the reads, a race: a GPU may give anything, the emulator gives the right answer only in blocks whose
 * threads run first to last */
__global__ void shift_kernel(const float *x, float *out, int with_barrier) {
    __shared__ float s[64];
    const int t = threadIdx.x, i = blockIdx.x * 64 + t;
    s[t] = x[i];
    if (with_barrier) __syncthreads();
    if (t > 0) out[i] = s[t - 1];
}

/* the mistakes: threads of the upper half return before the barrier the lower half waits at ... */
__global__ void early_exit_kernel(float *x) {
    if (threadIdx.x >= blockDim.x / 2) return;
    x[threadIdx.x] = 1.0f;
    __syncthreads();
    x[threadIdx.x] += x[threadIdx.x ^ 1];
}
/* ... a barrier inside a branch only some threads take (the others finish the kernel) ... */
__global__ void branch_barrier_kernel(float *x) {
    if (threadIdx.x < 64) __syncthreads();
    x[threadIdx.x] = 2.0f;
}
/* ... half of each warp at a shuffle, the other half at __syncthreads (a deadlock) ... */
__global__ void mixed_barrier_kernel(float *x) {
    float v = x[threadIdx.x];
    if (threadIdx.x % 32 < 16)
        v += __shfl_xor_sync(0xffffffffu, v, 1);
    else
        __syncthreads();
    x[threadIdx.x] = v;
}
/* ... and a lane that exits while its warp shuffles */
__global__ void exited_lane_kernel(float *x) {
    if (threadIdx.x == 31) return;
    x[threadIdx.x] = __shfl_down_sync(0xffffffffu, x[threadIdx.x], 1);
}

} // namespace

extern "C" int emu_block_sum(const float *x, int n, float *out) {
    return magna_cuda_launch(dim3((n + 255) / 256), dim3(256), 0, nullptr, block_sum_kernel, x, n, out);
}
extern "C" int emu_warp(const float *x, int n, float *out) {
    return magna_cuda_launch(dim3(n / 128), dim3(128), 0, nullptr, warp_kernel, x, n, out);
}
extern "C" int emu_transpose(const float *in, float *out, int rows, int cols) {
    return magna_cuda_launch(dim3((cols + 31) / 32, (rows + 31) / 32), dim3(32, 8), 0, nullptr, transpose_kernel, in,
                             out, rows, cols);
}
extern "C" int emu_reverse(const float *in, float *out, int blocks, int threads, size_t shared_bytes) {
    if (shared_bytes > 48 * 1024) {
        const cudaError_t e =
            cudaFuncSetAttribute(reverse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared_bytes);
        if (e != cudaSuccess) return e;
    }
    return magna_cuda_launch(dim3(blocks), dim3(threads), shared_bytes, nullptr, reverse_kernel, in, out);
}
extern "C" int emu_reverse_unset(const float *in, float *out, int threads, size_t shared_bytes) {
    return magna_cuda_launch(dim3(1), dim3(threads), shared_bytes, nullptr, reverse_kernel, in, out);
}
extern "C" int emu_atomics(const int *x, int n, int *hist, float *total, int *maxv) {
    return magna_cuda_launch(dim3(7), dim3(96), 0, nullptr, atomic_kernel, x, n, hist, total, maxv);
}
extern "C" int emu_geometry(const unsigned grid[3], const unsigned block[3], int *seen, int *bad) {
    return magna_cuda_launch(dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), 0, nullptr,
                             geometry_kernel, seen, bad);
}
extern "C" int emu_bf16(const float *x, int n, unsigned short *bits, float *back) {
    return magna_cuda_launch(dim3((n + 127) / 128), dim3(128), 0, nullptr, bf16_kernel, x, n, bits, back);
}
extern "C" int emu_shift(const float *x, float *out, int blocks, int with_barrier) {
    return magna_cuda_launch(dim3(blocks), dim3(64), 0, nullptr, shift_kernel, x, out, with_barrier);
}
extern "C" int emu_mistake(int which, float *x) {
    switch (which) {
    case 0: return magna_cuda_launch(dim3(2), dim3(128), 0, nullptr, early_exit_kernel, x);
    case 1: return magna_cuda_launch(dim3(1), dim3(128), 0, nullptr, branch_barrier_kernel, x);
    case 2: return magna_cuda_launch(dim3(1), dim3(64), 0, nullptr, mixed_barrier_kernel, x);
    default: return magna_cuda_launch(dim3(1), dim3(32), 0, nullptr, exited_lane_kernel, x);
    }
}
extern "C" int emu_bad_block(float *x) {
    return magna_cuda_launch(dim3(1), dim3(2048), 0, nullptr, branch_barrier_kernel, x);
}
