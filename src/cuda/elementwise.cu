/* elementwise.cu — the elementwise family on the GPU: the unary and scalar ops, the binary ops with
 * broadcasting, dropout, and the strided copies that move elements without arithmetic (permute, slice,
 * concat, the gradient of a reshape or of a sum). The math is elementwise_math.h's and the index spaces
 * launch.h's, both tested on the CPU.
 *
 * Flat kernels walk a grid-stride loop with `vec` contiguous elements per thread and step; with vec = 4
 * (every pointer 16-byte aligned) a full group moves as one float4, the tail element by element. */
#include "compat.h"

#include "block_reduce.h"
#include "kernels.h"
#include "launch.h"

namespace {

bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

/* ---- unary: y = f(x; a), dx += f'(x, y; a) dy ----------------------------------------------------- */

template <int OP> __global__ void unary_forward_kernel(magna_launch_1d l, float a, const float *__restrict__ x,
                                                       float *__restrict__ y) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        if (l.vec == 4 && i + 4 <= l.n) {
            float4 v = *reinterpret_cast<const float4 *>(x + i);
            v.x = magna_em_unary(OP, v.x, a), v.y = magna_em_unary(OP, v.y, a);
            v.z = magna_em_unary(OP, v.z, a), v.w = magna_em_unary(OP, v.w, a);
            *reinterpret_cast<float4 *>(y + i) = v;
        } else {
            for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) y[i + j] = magna_em_unary(OP, x[i + j], a);
        }
    }
}

/* x or y may be NULL when the op's backward does not read it (the planner may have reused its memory) */
template <int OP> __device__ __forceinline__ float unary_grad(const float *x, const float *y, const float *dy,
                                                              int64_t i, float a) {
    const bool reads_x = OP == MAGNA_EM_GELU || OP == MAGNA_EM_POW_SCALAR || OP == MAGNA_EM_ABS ||
                         OP == MAGNA_EM_LEAKY_RELU || OP == MAGNA_EM_GELU_TANH || OP == MAGNA_EM_LOG;
    const bool reads_y = OP == MAGNA_EM_RELU || OP == MAGNA_EM_SIGMOID || OP == MAGNA_EM_TANH ||
                         OP == MAGNA_EM_EXP || OP == MAGNA_EM_SQRT;
    return magna_em_unary_backward(OP, reads_x ? x[i] : 0.0f, reads_y ? y[i] : 0.0f, dy[i], a);
}

/* dx (=, with assign: dx is not read) += the gradient */
template <int OP> __global__ void unary_backward_kernel(magna_launch_1d l, float a, const float *__restrict__ x,
                                                        const float *__restrict__ y, const float *__restrict__ dy,
                                                        float *__restrict__ dx, int assign) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        if (l.vec == 4 && i + 4 <= l.n) {
            float4 o = assign ? make_float4(0.0f, 0.0f, 0.0f, 0.0f) : *reinterpret_cast<float4 *>(dx + i);
            o.x += unary_grad<OP>(x, y, dy, i, a), o.y += unary_grad<OP>(x, y, dy, i + 1, a);
            o.z += unary_grad<OP>(x, y, dy, i + 2, a), o.w += unary_grad<OP>(x, y, dy, i + 3, a);
            *reinterpret_cast<float4 *>(dx + i) = o;
        } else {
            for (uint32_t j = 0; j < l.vec && i + j < l.n; j++)
                dx[i + j] = (assign ? 0.0f : dx[i + j]) + unary_grad<OP>(x, y, dy, i + j, a);
        }
    }
}

template <int OP> int unary_forward_launch(float a, const float *x, float *y, int64_t n, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, aligned16(x) && aligned16(y) ? 4 : 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, unary_forward_kernel<OP>, l, a, x, y);
}
template <int OP> int unary_backward_launch(float a, const float *x, const float *y, const float *dy, float *dx,
                                            int64_t n, int assign, void *stream) {
    /* the float4 path loads dy and dx as vectors; x and y are read element by element */
    const magna_launch_1d l = magna_launch_elementwise(n, aligned16(dy) && aligned16(dx) ? 4 : 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, unary_backward_kernel<OP>, l, a, x, y, dy, dx, assign);
}

/* ---- binary with broadcasting ---------------------------------------------------------------------
 * Forward: the output's index space with the operands' strides (tensors 1 and 2). Backward for operand
 * `which`: its gradient is a reduction over the dims it was broadcast over, out[o] += sum over r of
 * dy * partial, with the output's (0), a's (1) and b's (2) strides in both the kept and the reduced space. */

template <int OP> __global__ void binary_forward_kernel(magna_index ix, const float *__restrict__ a,
                                                        const float *__restrict__ b, float *__restrict__ y) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < ix.n; i += stride) {
        int64_t off[3];
        magna_index_offsets(&ix, i, 3, off);
        y[i] = magna_em_binary(OP, a[off[1]], b[off[2]]);
    }
}

/* the flat case (same shapes, or one operand a single value): sa, sb in {0, 1}; float4 where aligned */
template <int OP> __global__ void binary_flat_kernel(magna_launch_1d l, const float *__restrict__ a, int64_t sa,
                                                     const float *__restrict__ b, int64_t sb, float *__restrict__ y) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        if (l.vec == 4 && i + 4 <= l.n) {
            const float4 va = sa ? *reinterpret_cast<const float4 *>(a + i) : make_float4(a[0], a[0], a[0], a[0]);
            const float4 vb = sb ? *reinterpret_cast<const float4 *>(b + i) : make_float4(b[0], b[0], b[0], b[0]);
            float4 v;
            v.x = magna_em_binary(OP, va.x, vb.x), v.y = magna_em_binary(OP, va.y, vb.y);
            v.z = magna_em_binary(OP, va.z, vb.z), v.w = magna_em_binary(OP, va.w, vb.w);
            *reinterpret_cast<float4 *>(y + i) = v;
        } else {
            for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) y[i + j] = magna_em_binary(OP, a[(i + j) * sa], b[(i + j) * sb]);
        }
    }
}

template <int OP> int binary_forward_launch(const magna_index *ix, const float *a, const float *b, float *y, void *stream) {
    const bool flat = ix->nd <= 1 && (ix->nd == 0 || ((ix->stride[1][0] | ix->stride[2][0]) & ~(int64_t)1) == 0);
    if (flat) {
        const int64_t sa = ix->nd ? ix->stride[1][0] : 0, sb = ix->nd ? ix->stride[2][0] : 0;
        const bool vec = aligned16(y) && (!sa || aligned16(a)) && (!sb || aligned16(b));
        const magna_launch_1d l = magna_launch_elementwise(ix->n, vec ? 4 : 1);
        if (l.grid == 0) return cudaSuccess;
        return magna_cuda_launch(l.grid, l.block, 0, stream, binary_flat_kernel<OP>, l, a, sa, b, sb, y);
    }
    const magna_launch_1d l = magna_launch_elementwise(ix->n, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, binary_forward_kernel<OP>, *ix, a, b, y);
}

/* dy float32, or bf16 (TY: an add's gradient kept so, store16.c) */
template <int OP, int WHICH, class TY = float> struct binary_grad_sum {
    const float *a, *b, *y;
    const TY *dy;
    __device__ __forceinline__ float term(const int64_t *off) const {
        const bool reads_y = OP == MAGNA_EM_POW && WHICH == 1;
        const bool reads_ab = OP == MAGNA_EM_MUL || OP == MAGNA_EM_DIV || OP == MAGNA_EM_POW;
        const float x0 = reads_ab ? a[off[1]] : 0.0f, x1 = reads_ab ? b[off[2]] : 0.0f;
        return magna_as_float(dy[off[0]]) * magna_em_binary_partial(OP, WHICH, x0, x1, reads_y ? y[off[0]] : 0.0f);
    }
};

/* the kept output o's merged sum over the reduced space, by the threads of one group (rows shape: lanes
 * over r; cols shape: the 8 rows of threads); every thread of the group gets it */
template <class T> __global__ void grad_reduce_rows_kernel(magna_launch_reduce l, magna_index kept, magna_index red,
                                                           T f, float *__restrict__ g) {
    const uint32_t lane = magna_launch_reduce_lane(&l, threadIdx.x);
    const int64_t stride = magna_launch_reduce_stride(&l);
    /* the loop bound is the group's first output, the same for all its threads (shuffles need the warp) */
    for (int64_t o = magna_launch_reduce_first(&l, blockIdx.x, threadIdx.x); o < l.outs; o += stride) {
        int64_t base[3], off[3];
        magna_index_offsets(&kept, o, 3, base);
        float s = 0.0f;
        for (int64_t r = lane; r < red.n; r += l.threads_per_out) {
            magna_index_offsets(&red, r, 3, off);
            off[0] += base[0], off[1] += base[1], off[2] += base[2];
            s += f.term(off);
        }
        s = l.threads_per_out == MAGNA_LAUNCH_WARP ? magna_reduce::warp_all(s) : magna_reduce::block_all(s, 0.0f);
        if (lane == 0) g[o] += s;
    }
}

/* with splits > 1, block row y of the grid takes chunk y of r and writes partial[y][o] instead of adding */
template <class T> __global__ void grad_reduce_cols_kernel(magna_launch_reduce l, magna_index kept, magna_index red,
                                                           T f, float *__restrict__ g, float *__restrict__ partial) {
    __shared__ float part[MAGNA_LAUNCH_COLS_Y][MAGNA_LAUNCH_COLS_X + 1];
    const uint32_t tx = threadIdx.x % MAGNA_LAUNCH_COLS_X, ty = threadIdx.x / MAGNA_LAUNCH_COLS_X;
    const int64_t stride = magna_launch_reduce_stride(&l);
    for (int64_t o0 = (int64_t)blockIdx.x * MAGNA_LAUNCH_COLS_X; o0 < l.outs; o0 += stride) {
        const int64_t o = o0 + tx;
        float s = 0.0f;
        if (o < l.outs) {
            int64_t base[3], off[3];
            magna_index_offsets(&kept, o, 3, base);
            const int64_t r_end = magna_launch_reduce_r_end(&l, blockIdx.y);
            for (int64_t r = magna_launch_reduce_r_begin(&l, blockIdx.y) + ty; r < r_end; r += MAGNA_LAUNCH_COLS_Y) {
                magna_index_offsets(&red, r, 3, off);
                off[0] += base[0], off[1] += base[1], off[2] += base[2];
                s += f.term(off);
            }
        }
        part[ty][tx] = s;
        __syncthreads();
        if (ty == 0 && o < l.outs) {
            for (int k = 1; k < MAGNA_LAUNCH_COLS_Y; k++) s += part[k][tx];
            if (l.splits > 1) partial[(int64_t)blockIdx.y * l.outs + o] = s;
            else g[o] += s;
        }
        __syncthreads();
    }
}

/* nothing broadcast (the residual add's case): one element each, no reduction; with assign g is not read */
template <class T>
__global__ void grad_map_kernel(magna_launch_1d l, magna_index kept, T f, float *__restrict__ g, int assign) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t o = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); o < l.n; o += stride) {
        int64_t off[3];
        magna_index_offsets(&kept, o, 3, off);
        g[o] = (assign ? 0.0f : g[o]) + f.term(off);
    }
}

/* workspace: magna_reduce_split_workspace(kept n, red n) bytes, or NULL (no split). assign: g = the gradient (a
 * broadcast operand's is zeroed first, then summed into, as the CPU op does), else g += it */
template <class T> int grad_reduce_launch(const magna_index *kept, const magna_index *red, T f, float *g, int assign,
                                          float *workspace, void *stream) {
    if (red->n == 1) {
        const magna_launch_1d l = magna_launch_elementwise(kept->n, 1);
        return l.grid ? magna_cuda_launch(l.grid, l.block, 0, stream, grad_map_kernel<T>, l, *kept, f, g, assign)
                      : cudaSuccess;
    }
    if (assign && kept->n > 0) {
        const cudaError_t e = cudaMemsetAsync(g, 0, (size_t)kept->n * sizeof *g, (cudaStream_t)stream);
        if (e != cudaSuccess) return e;
    }
    const int inner = red->nd > 0 && red->stride[0][red->nd - 1] == 1;
    const magna_launch_reduce l = magna_launch_reduction(kept->n, red->n, inner, workspace != NULL);
    if (l.grid == 0) return cudaSuccess;
    if (l.cols) {
        const int e = magna_cuda_launch(dim3(l.grid, l.splits), l.block, 0, stream, grad_reduce_cols_kernel<T>, l, *kept,
                                        *red, f, g, workspace);
        return e || l.splits == 1 ? e : magna_reduce::split_finish<1>(l.outs, l.splits, workspace, 1.0f, g, stream);
    }
    return magna_cuda_launch(l.grid, l.block, 0, stream, grad_reduce_rows_kernel<T>, l, *kept, *red, f, g);
}

template <int OP> int binary_backward_op(int which, const magna_index *kept, const magna_index *red, const float *a,
                                         const float *b, const float *y, const float *dy, float *g, int assign,
                                         float *workspace, void *stream) {
    if (which == 0)
        return grad_reduce_launch(kept, red, binary_grad_sum<OP, 0>{a, b, y, dy}, g, assign, workspace, stream);
    return grad_reduce_launch(kept, red, binary_grad_sum<OP, 1>{a, b, y, dy}, g, assign, workspace, stream);
}

/* ---- strided copy: dst[off 1] = (accumulate ? dst[off 1] : 0) + scale src[off 0] ------------------- */

__global__ void strided_copy_kernel(magna_index ix, const float *__restrict__ src, float *__restrict__ dst, float scale,
                                    int accumulate) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < ix.n; i += stride) {
        int64_t off[2];
        magna_index_offsets(&ix, i, 2, off);
        const float v = scale * src[off[0]];
        dst[off[1]] = accumulate ? dst[off[1]] + v : v;
    }
}

/* ---- dropout: the mask from the counter-based generator, recomputed in backward -------------------- */

__global__ void dropout_kernel(magna_launch_1d l, uint64_t seed, uint64_t rstream, float p, float scale,
                               const float *__restrict__ src, float *__restrict__ dst, int accumulate) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        const float v = magna_em_dropout_kept(seed, rstream, i, p) ? src[i] * scale : 0.0f;
        dst[i] = accumulate ? dst[i] + v : v;
    }
}

/* a grid-stride launch of one element per thread */
magna_launch_1d flat(int64_t n) { return magna_launch_elementwise(n, 1); }

} // namespace

#define UNARY_CASES(X)                                                                                               \
    X(MAGNA_EM_RELU) X(MAGNA_EM_SIGMOID) X(MAGNA_EM_GELU) X(MAGNA_EM_SCALE) X(MAGNA_EM_ADD_SCALAR)                   \
    X(MAGNA_EM_POW_SCALAR) X(MAGNA_EM_ABS) X(MAGNA_EM_LEAKY_RELU) X(MAGNA_EM_TANH) X(MAGNA_EM_GELU_TANH)              \
    X(MAGNA_EM_EXP) X(MAGNA_EM_LOG) X(MAGNA_EM_SQRT)

extern "C" int magna_cuda_unary_forward(int op, float a, const float *x, float *y, int64_t n, void *stream) {
    switch (op) {
#define X(OP)                                                                                                        \
    case OP: return unary_forward_launch<OP>(a, x, y, n, stream);
        UNARY_CASES(X)
#undef X
    }
    return cudaErrorInvalidValue;
}

extern "C" int magna_cuda_unary_backward(int op, float a, const float *x, const float *y, const float *dy, float *dx,
                                         int64_t n, int assign, void *stream) {
    switch (op) {
#define X(OP)                                                                                                        \
    case OP: return unary_backward_launch<OP>(a, x, y, dy, dx, n, assign, stream);
        UNARY_CASES(X)
#undef X
    }
    return cudaErrorInvalidValue;
}

extern "C" int magna_cuda_binary_forward(int op, const magna_index *ix, const float *a, const float *b, float *y,
                                         void *stream) {
    switch (op) {
    case MAGNA_EM_ADD: return binary_forward_launch<MAGNA_EM_ADD>(ix, a, b, y, stream);
    case MAGNA_EM_SUB: return binary_forward_launch<MAGNA_EM_SUB>(ix, a, b, y, stream);
    case MAGNA_EM_MUL: return binary_forward_launch<MAGNA_EM_MUL>(ix, a, b, y, stream);
    case MAGNA_EM_DIV: return binary_forward_launch<MAGNA_EM_DIV>(ix, a, b, y, stream);
    case MAGNA_EM_POW: return binary_forward_launch<MAGNA_EM_POW>(ix, a, b, y, stream);
    }
    return cudaErrorInvalidValue;
}

extern "C" int magna_cuda_binary_backward(int op, int which, const magna_index *kept, const magna_index *red,
                                          const float *a, const float *b, const float *y, const void *dy_, int dy16,
                                          float *g, int assign, float *workspace, void *stream) {
    if (dy16) { /* an add's bf16 gradient (store16.c): d/da = d/db = 1 */
        if (op != MAGNA_EM_ADD) return cudaErrorInvalidValue;
        const __nv_bfloat16 *dy = static_cast<const __nv_bfloat16 *>(dy_);
        if (which == 0)
            return grad_reduce_launch(kept, red, binary_grad_sum<MAGNA_EM_ADD, 0, __nv_bfloat16>{a, b, y, dy}, g, assign,
                                      workspace, stream);
        return grad_reduce_launch(kept, red, binary_grad_sum<MAGNA_EM_ADD, 1, __nv_bfloat16>{a, b, y, dy}, g, assign,
                                  workspace, stream);
    }
    const float *dy = static_cast<const float *>(dy_);
    switch (op) {
#define X(OP)                                                                                                        \
    case OP: return binary_backward_op<OP>(which, kept, red, a, b, y, dy, g, assign, workspace, stream);
        X(MAGNA_EM_ADD) X(MAGNA_EM_SUB) X(MAGNA_EM_MUL) X(MAGNA_EM_DIV) X(MAGNA_EM_POW)
#undef X
    }
    return cudaErrorInvalidValue;
}

extern "C" int magna_cuda_strided_copy(const magna_index *ix, const float *src, float *dst, float scale, int accumulate,
                                       void *stream) {
    const magna_launch_1d l = flat(ix->n);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, strided_copy_kernel, *ix, src, dst, scale, accumulate);
}

extern "C" int magna_cuda_dropout(uint64_t seed, uint64_t rstream, float p, const float *src, float *dst, int64_t n,
                                  int accumulate, void *stream) {
    const magna_launch_1d l = flat(n);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, dropout_kernel, l, seed, rstream, p, 1.0f / (1.0f - p), src,
                             dst, accumulate);
}
