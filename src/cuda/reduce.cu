/* reduce.cu — sum, mean and max over any set of axes (src/ops/reduce.c), and the losses that reduce a whole
 * tensor to one number (mean squared error, binary cross-entropy from logits; src/ops/loss.c).
 *
 * Deterministic everywhere: a reduction is a fixed tree of shuffles and shared memory (launch.h's rows and
 * cols shapes), and a whole-tensor sum runs in two passes, a fixed number of blocks writing one partial
 * each and one block merging them in order, never a float atomic. */
#include "compat.h"

#include "block_reduce.h"
#include "kernels.h"
#include "launch.h"

namespace {

/* ---- sum, mean, max: x's kept (one output each) and reduced index spaces, tensor 0 = x --------------- */

template <int MAX> struct reduce_state;
template <> struct reduce_state<0> {
    typedef float type;
    __device__ static type empty() { return 0.0f; }
    __device__ static type push(type s, float x, int64_t) { return s + x; }
};
template <> struct reduce_state<1> {
    typedef magna_em_argmax type;
    __device__ static type empty() { return magna_em_argmax_empty(); }
    __device__ static type push(type s, float x, int64_t r) { return magna_em_argmax_push(s, x, (int)r); }
};

/* the output's value (and for max the flat input index it came from, the CPU's saved layout) */
template <int MAX> __device__ __forceinline__ void reduce_store(typename reduce_state<MAX>::type s, int64_t o,
                                                                int64_t base, const magna_index &red,
                                                                const float *x, float scale, float *y, int64_t *arg);
template <> __device__ __forceinline__ void reduce_store<0>(float s, int64_t o, int64_t, const magna_index &,
                                                            const float *, float scale, float *y, int64_t *) {
    y[o] = s * scale;
}
template <> __device__ __forceinline__ void reduce_store<1>(magna_em_argmax s, int64_t o, int64_t base,
                                                            const magna_index &red, const float *x, float, float *y,
                                                            int64_t *arg) {
    s = magna_em_argmax_final(s, x[base]); /* the run's first element is at offset 0 of the reduced space */
    int64_t off;
    magna_index_offsets(&red, s.idx, 1, &off);
    y[o] = s.val, arg[o] = base + off;
}

/* a split cols reduction's partial (sums only: max never splits) */
__device__ __forceinline__ void store_partial(float *p, float s) { *p = s; }
__device__ __forceinline__ void store_partial(float *, magna_em_argmax) {}

template <class S> __device__ __forceinline__ S group_all(const magna_launch_reduce &l, S s, S empty) {
    return l.threads_per_out == MAGNA_LAUNCH_WARP ? magna_reduce::warp_all(s) : magna_reduce::block_all(s, empty);
}

template <int MAX> __global__ void reduce_rows_kernel(magna_launch_reduce l, magna_index kept, magna_index red,
                                                      const float *__restrict__ x, float scale, float *__restrict__ y,
                                                      int64_t *__restrict__ arg) {
    typedef reduce_state<MAX> R;
    const uint32_t lane = magna_launch_reduce_lane(&l, threadIdx.x);
    const int64_t stride = magna_launch_reduce_stride(&l);
    for (int64_t o = magna_launch_reduce_first(&l, blockIdx.x, threadIdx.x); o < l.outs; o += stride) {
        int64_t base, off;
        magna_index_offsets(&kept, o, 1, &base);
        typename R::type s = R::empty();
        for (int64_t r = lane; r < red.n; r += l.threads_per_out) {
            magna_index_offsets(&red, r, 1, &off);
            s = R::push(s, x[base + off], r);
        }
        s = group_all(l, s, R::empty());
        if (lane == 0) reduce_store<MAX>(s, o, base, red, x, scale, y, arg);
    }
}

/* with splits > 1 (sums), block row y of the grid takes chunk y of r and writes partial[y][o] unscaled */
template <int MAX> __global__ void reduce_cols_kernel(magna_launch_reduce l, magna_index kept, magna_index red,
                                                      const float *__restrict__ x, float scale, float *__restrict__ y,
                                                      int64_t *__restrict__ arg, float *__restrict__ partial) {
    typedef reduce_state<MAX> R;
    __shared__ typename R::type part[MAGNA_LAUNCH_COLS_Y][MAGNA_LAUNCH_COLS_X + 1];
    const uint32_t tx = threadIdx.x % MAGNA_LAUNCH_COLS_X, ty = threadIdx.x / MAGNA_LAUNCH_COLS_X;
    const int64_t stride = magna_launch_reduce_stride(&l);
    for (int64_t o0 = (int64_t)blockIdx.x * MAGNA_LAUNCH_COLS_X; o0 < l.outs; o0 += stride) {
        const int64_t o = o0 + tx;
        int64_t base = 0, off;
        typename R::type s = R::empty();
        if (o < l.outs) {
            magna_index_offsets(&kept, o, 1, &base);
            const int64_t r_end = magna_launch_reduce_r_end(&l, blockIdx.y);
            for (int64_t r = magna_launch_reduce_r_begin(&l, blockIdx.y) + ty; r < r_end; r += MAGNA_LAUNCH_COLS_Y) {
                magna_index_offsets(&red, r, 1, &off);
                s = R::push(s, x[base + off], r);
            }
        }
        part[ty][tx] = s;
        __syncthreads();
        if (ty == 0 && o < l.outs) {
            for (int k = 1; k < MAGNA_LAUNCH_COLS_Y; k++) s = magna_reduce::merge(s, part[k][tx]);
            if (l.splits > 1) store_partial(partial + (int64_t)blockIdx.y * l.outs + o, s);
            else reduce_store<MAX>(s, o, base, red, x, scale, y, arg);
        }
        __syncthreads();
    }
}

__global__ void max_backward_kernel(magna_launch_1d l, const int64_t *__restrict__ arg, const float *__restrict__ dy,
                                    float *__restrict__ dx) {
    /* every output's argmax is in its own run of the input: no two threads write one element */
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t o = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); o < l.n; o += stride) dx[arg[o]] += dy[o];
}

/* ---- whole-tensor losses: a fixed grid of partial sums, then one block ------------------------------- */

/* x over a reduced index space (a sum of everything to one number) */
struct strided_term {
    const float *x;
    magna_index red;
    __device__ float operator()(int64_t i, int *) const {
        int64_t off;
        magna_index_offsets(&red, i, 1, &off);
        return x[off];
    }
};

struct mse_term {
    const float *p, *t;
    __device__ float operator()(int64_t i, int *) const {
        const float d = p[i] - t[i];
        return d * d;
    }
};
struct bce_term {
    const float *x, *t;
    __device__ float operator()(int64_t i, int *bad) const {
        const float ti = t[i];
        if (!(ti >= 0.0f && ti <= 1.0f) && bad) *bad = 1; /* every writer stores the same value */
        return magna_em_bce(x[i], ti);
    }
};

template <class T> __global__ void partial_sums_kernel(magna_launch_1d l, T f, float *__restrict__ partial,
                                                       int *__restrict__ bad) {
    const int64_t stride = magna_launch_1d_stride(&l);
    float s = 0.0f;
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) s += f(i, bad);
    s = magna_reduce::block_all(s, 0.0f);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

/* out = scale * sum of partial[0, n) (scale may be read from the device: the upstream gradient) */
__global__ void final_sum_kernel(const float *__restrict__ partial, int n, float scale, float *__restrict__ out) {
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    s = magna_reduce::block_all(s, 0.0f);
    if (threadIdx.x == 0) out[0] = s * scale;
}

/* out = scale * sum of f(i) over i < n (scale 0: 1 / n, a mean) */
template <class T> int whole_sum(T f, int64_t n, float *workspace, int *bad, float *out, void *stream, float scale = 0.0f) {
    magna_launch_1d l = magna_launch_elementwise(n, 1);
    if (l.grid > MAGNA_LAUNCH_SUM_BLOCKS) l.grid = MAGNA_LAUNCH_SUM_BLOCKS; /* the grid-stride loop takes the rest */
    if (l.grid == 0) return cudaSuccess;
    int e = magna_cuda_launch(l.grid, l.block, 0, stream, partial_sums_kernel<T>, l, f, workspace, bad);
    if (e) return e;
    return magna_cuda_launch(1, MAGNA_LAUNCH_BLOCK, 0, stream, final_sum_kernel, (const float *)workspace, (int)l.grid,
                             scale != 0.0f ? scale : 1.0f / (float)n, out);
}

/* dp += k (p - t), dt -= k (p - t), k = 2 dL / n */
__global__ void mse_backward_kernel(magna_launch_1d l, const float *__restrict__ p, const float *__restrict__ t,
                                    const float *__restrict__ dl, float *__restrict__ dp, float *__restrict__ dt) {
    const float k = 2.0f * dl[0] / (float)l.n;
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        const float d = k * (p[i] - t[i]);
        if (dp) dp[i] += d;
        if (dt) dt[i] -= d;
    }
}

/* dx += k (sigmoid(x) - t), dt -= k x, k = dL / n */
__global__ void bce_backward_kernel(magna_launch_1d l, const float *__restrict__ x, const float *__restrict__ t,
                                    const float *__restrict__ dl, float *__restrict__ dx, float *__restrict__ dt) {
    const float k = dl[0] / (float)l.n;
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) {
        if (dx) dx[i] += k * (magna_em_sigmoid(x[i]) - t[i]);
        if (dt) dt[i] -= k * x[i];
    }
}

} // namespace

extern "C" int magna_cuda_reduce_axes(int max, const magna_index *kept, const magna_index *red, const float *x, float scale,
                                      float *y, int64_t *arg, float *workspace, void *stream) {
    /* a sum of everything to one number: the whole grid in two passes rather than one block */
    if (!max && workspace && kept->n == 1 && red->n > 4 * MAGNA_LAUNCH_BLOCK)
        return whole_sum(strided_term{x, *red}, red->n, workspace, (int *)NULL, y, stream, scale);
    const int inner = red->nd > 0 && red->stride[0][red->nd - 1] == 1;
    const magna_launch_reduce l = magna_launch_reduction(kept->n, red->n, inner, !max && workspace);
    if (l.grid == 0) return cudaSuccess;
    if (max && red->n > 0x7fffffff) return cudaErrorInvalidValue; /* the argmax state keeps r as an int */
    if (l.cols && max)
        return magna_cuda_launch(l.grid, l.block, 0, stream, reduce_cols_kernel<1>, l, *kept, *red, x, scale, y, arg,
                                 workspace);
    if (l.cols) {
        const int e = magna_cuda_launch(dim3(l.grid, l.splits), l.block, 0, stream, reduce_cols_kernel<0>, l, *kept,
                                        *red, x, scale, y, arg, workspace);
        return e || l.splits == 1 ? e : magna_reduce::split_finish<0>(l.outs, l.splits, workspace, scale, y, stream);
    }
    return max ? magna_cuda_launch(l.grid, l.block, 0, stream, reduce_rows_kernel<1>, l, *kept, *red, x, scale, y, arg)
               : magna_cuda_launch(l.grid, l.block, 0, stream, reduce_rows_kernel<0>, l, *kept, *red, x, scale, y, arg);
}

extern "C" int magna_cuda_max_backward(const int64_t *arg, const float *dy, float *dx, int64_t outs, void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(outs, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, max_backward_kernel, l, arg, dy, dx);
}

extern "C" int magna_cuda_mse_forward(const float *p, const float *t, int64_t n, float *workspace, float *loss,
                                      void *stream) {
    return whole_sum(mse_term{p, t}, n, workspace, (int *)NULL, loss, stream);
}

extern "C" int magna_cuda_bce_forward(const float *x, const float *t, int64_t n, float *workspace, int *bad, float *loss,
                                      void *stream) {
    int e = bad ? cudaMemsetAsync(bad, 0, sizeof(int), static_cast<cudaStream_t>(stream)) : cudaSuccess;
    return e ? e : whole_sum(bce_term{x, t}, n, workspace, bad, loss, stream);
}

extern "C" int magna_cuda_mse_backward(const float *p, const float *t, const float *dl, float *dp, float *dt, int64_t n,
                                       void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, mse_backward_kernel, l, p, t, dl, dp, dt);
}

extern "C" int magna_cuda_bce_backward(const float *x, const float *t, const float *dl, float *dx, float *dt, int64_t n,
                                       void *stream) {
    const magna_launch_1d l = magna_launch_elementwise(n, 1);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, bce_backward_kernel, l, x, t, dl, dx, dt);
}
