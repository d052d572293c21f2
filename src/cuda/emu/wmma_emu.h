/* wmma_emu.h — the emulator's nvcuda::wmma (tensor-core fragments), the subset attention.cu's bf16 kernels
 * use: 16 x 16 x 16 tiles, bf16 operands (matrix_a / matrix_b, row- or column-major) and float accumulators,
 * fill (accumulators), load, store and mma. On a GPU a fragment is spread over the warp's 32 lanes in a layout
 * CUDA leaves unspecified; here every lane holds the whole tile (num_elements = 256), so a warp-wide
 * operation is each lane doing all of it (each call starts with a __syncwarp, as the warp-collective
 * instruction is one step for the whole warp: no lane stores a tile before every lane has loaded the last
 * one), and code that only loads, stores, fills, multiplies and scales fragments uniformly (what portable
 * wmma code may do) computes the same thing. The pointer and leading-dimension rules of the real API are
 * checked (256-bit aligned pointers, ldm a multiple of 16 bytes): breaking them fails loudly here instead of
 * faulting on a GPU. */
#ifndef MAGNA_CUDA_WMMA_EMU_H
#define MAGNA_CUDA_WMMA_EMU_H

#include "cuda_emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <type_traits>

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K> struct frag_shape {
    static constexpr int rows = M, cols = N;
};
template <int M, int N, int K> struct frag_shape<matrix_a, M, N, K> {
    static constexpr int rows = M, cols = K;
};
template <int M, int N, int K> struct frag_shape<matrix_b, M, N, K> {
    static constexpr int rows = K, cols = N;
};

/* the whole tile, row-major, in every lane */
template <class Use, int M, int N, int K, class T, class Layout = void> struct fragment {
    static constexpr int rows = frag_shape<Use, M, N, K>::rows, cols = frag_shape<Use, M, N, K>::cols;
    static constexpr int num_elements = rows * cols;
    T x[num_elements];
};

static inline void wmma_emu_check(const void *p, unsigned ldm, size_t elem, const char *what) {
    if ((reinterpret_cast<uintptr_t>(p) & 31) != 0 || (ldm * elem) % 16 != 0) {
        fprintf(stderr, "wmma emulator: %s: pointer %p must be 32-byte aligned and ldm %u a multiple of %zu\n", what,
                p, ldm, 16 / elem);
        abort();
    }
}

static inline float wmma_emu_float(float v) { return v; }
static inline float wmma_emu_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <int M, int N, int K>
static inline void fill_fragment(fragment<accumulator, M, N, K, float, void> &f, float v) {
    for (int i = 0; i < f.num_elements; i++) f.x[i] = v;
}

/* matrix_a / matrix_b: the layout is the fragment's */
template <class Use, int M, int N, int K, class T, class L>
static inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f, const T *p, unsigned ldm) {
    wmma_emu_check(p, ldm, sizeof(T), "load_matrix_sync");
    __syncwarp();
    for (int r = 0; r < f.rows; r++)
        for (int c = 0; c < f.cols; c++)
            f.x[r * f.cols + c] = std::is_same<L, col_major>::value ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}
/* accumulators: the layout is the call's */
template <int M, int N, int K>
static inline void load_matrix_sync(fragment<accumulator, M, N, K, float, void> &f, const float *p, unsigned ldm,
                                    layout_t layout) {
    wmma_emu_check(p, ldm, sizeof(float), "load_matrix_sync");
    __syncwarp();
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++)
            f.x[r * N + c] = layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c];
}
template <int M, int N, int K>
static inline void store_matrix_sync(float *p, const fragment<accumulator, M, N, K, float, void> &f, unsigned ldm,
                                     layout_t layout) {
    wmma_emu_check(p, ldm, sizeof(float), "store_matrix_sync");
    __syncwarp();
    for (int r = 0; r < M; r++)
        for (int c = 0; c < N; c++)
            (layout == mem_col_major ? p[(size_t)c * ldm + r] : p[(size_t)r * ldm + c]) = f.x[r * N + c];
}

/* d = a b + c, products and sums in float (d may be c) */
template <int M, int N, int K, class T, class LA, class LB>
static inline void mma_sync(fragment<accumulator, M, N, K, float, void> &d, const fragment<matrix_a, M, N, K, T, LA> &a,
                            const fragment<matrix_b, M, N, K, T, LB> &b,
                            const fragment<accumulator, M, N, K, float, void> &c) {
    float out[M * N];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = c.x[i * N + j];
            for (int k = 0; k < K; k++) s += wmma_emu_float(a.x[i * K + k]) * wmma_emu_float(b.x[k * N + j]);
            out[i * N + j] = s;
        }
    for (int i = 0; i < M * N; i++) d.x[i] = out[i];
}

} // namespace wmma
} // namespace nvcuda

#endif
