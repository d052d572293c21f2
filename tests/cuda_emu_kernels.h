/* cuda_emu_kernels.h — the entry points of tests/cuda_emu_kernels.cu (device pointers; each returns a
 * cudaError_t as int), called by tests/test_cuda_emu.c. */
#ifndef MAGNA_TEST_CUDA_EMU_KERNELS_H
#define MAGNA_TEST_CUDA_EMU_KERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

int emu_block_sum(const float *x, int n, float *out); /* out[b]: the sum of x[256 b, 256 b + 256) */
/* n a multiple of 128; out[k * n + i] for each k below, per warp of 32 lanes: */
enum {
    EMU_WARP_XOR,     /* the warp's sum in every lane (xor butterfly) */
    EMU_WARP_DOWN,    /* the warp's sum in lane 0 (down-shuffles), 0 elsewhere */
    EMU_WARP_SCAN,    /* inclusive prefix sum (up-shuffles) */
    EMU_WARP_IDX,     /* lane 5's value */
    EMU_WARP_XOR8,    /* the sum over the lane's segment of 8 (xor, width 8) */
    EMU_WARP_DOWN16,  /* the value 5 lanes down within segments of 16, the lane's own past the segment */
    EMU_WARP_UP8,     /* the value 3 lanes up within segments of 8, the lane's own before the segment */
    EMU_WARP_IDX8,    /* lane 2 of the lane's segment of 8 */
    EMU_WARP_BALLOT,  /* the bits of __ballot_sync(x > 0), as a float's bits */
    EMU_WARP_ANY_ALL, /* __any_sync(x > 45) * 2 + __all_sync(x > -48) */
    EMU_WARP_OUTPUTS
};
int emu_warp(const float *x, int n, float *out);
int emu_transpose(const float *in, float *out, int rows, int cols);
/* reverses each of `blocks` chunks of `threads` elements through dynamic shared memory */
int emu_reverse(const float *in, float *out, int blocks, int threads, size_t shared_bytes);
/* one block, without setting the kernel's attribute */
int emu_reverse_unset(const float *in, float *out, int threads, size_t shared_bytes);
int emu_atomics(const int *x, int n, int *hist, float *total, int *maxv);
int emu_geometry(const unsigned grid[3], const unsigned block[3], int *seen, int *bad);
int emu_bf16(const float *x, int n, unsigned short *bits, float *back);
/* out[i] = x[i - 1] within blocks of 64 (out[64 b] untouched), through shared memory, with or without the
 * barrier it needs */
int emu_shift(const float *x, float *out, int blocks, int with_barrier);
/* 0: threads exit before a barrier; 1: a barrier in a branch; 2: a shuffle against a barrier; 3: a lane exits
 * while its warp shuffles. Each must fail, never hang. */
int emu_mistake(int which, float *x);
int emu_bad_block(float *x); /* 2048 threads a block */

#ifdef __cplusplus
}
#endif

#endif
