/* softmax.cu — softmax and log-softmax over the last axis (src/ops/softmax.c), and cross-entropy from logits
 * with class indices, log-softmax and NLL fused (src/ops/loss.c): a warp per row for rows up to 1024
 * columns, a block per row beyond (launch.h's rows shape), numerically stable through the running (max, sum
 * of exps) of elementwise_math.h.
 *
 * Cross-entropy never writes the softmax (for a GPT-2 batch it would be 13 GB): forward keeps each row's
 * log-sum-exp, backward reads the logits again. Rows are summed deterministically (one loss per row, then
 * one block in order); the mean is over the rows whose label is not MAGNA_IGNORE_LABEL, as on the CPU. */
#include "compat.h"

#include "block_reduce.h"
#include "kernels.h"
#include "launch.h"

namespace {

/* Long rows take a block of 1024 threads (launch.h), so every row kernel is compiled to fit 1024 threads'
 * registers (__launch_bounds__), or such a launch would fail on a GPU though the emulator runs it. */

template <class S> __device__ __forceinline__ S row_all(const magna_launch_rows &l, S s, S empty) {
    return l.threads_per_row == MAGNA_LAUNCH_WARP ? magna_reduce::warp_all(s) : magna_reduce::block_all(s, empty);
}

template <class T>
__device__ __forceinline__ magna_em_maxsum row_maxsum(const magna_launch_rows &l, const T *x, uint32_t lane) {
    magna_em_maxsum s = magna_em_maxsum_empty();
    for (int64_t j = lane; j < l.cols; j += l.threads_per_row) s = magna_em_maxsum_push(s, magna_as_float(x[j]));
    return row_all(l, s, magna_em_maxsum_empty());
}

/* the loop bound is the row, the same for every thread of its warp or block (they reduce together) */
#define FOR_ROWS(l, r)                                                                                               \
    for (int64_t r = magna_launch_rows_first(&l, blockIdx.x, threadIdx.x); r < l.rows; r += magna_launch_rows_stride(&l))

__global__ void __launch_bounds__(1024) softmax_forward_kernel(magna_launch_rows l, int log_form, const float *__restrict__ X,
                                       float *__restrict__ Y) {
    const uint32_t lane = magna_launch_rows_lane(&l, threadIdx.x);
    FOR_ROWS(l, r) {
        const float *x = X + r * l.cols;
        float *y = Y + r * l.cols;
        const magna_em_maxsum s = row_maxsum(l, x, lane);
        if (log_form) {
            const float lse = magna_em_logsumexp(s);
            for (int64_t j = lane; j < l.cols; j += l.threads_per_row) y[j] = x[j] - lse;
        } else {
            const float inv = 1.0f / s.sum;
            for (int64_t j = lane; j < l.cols; j += l.threads_per_row) y[j] = expf(x[j] - s.max) * inv;
        }
    }
}

/* softmax: dx += y (dy - sum(dy y)); log-softmax: dx += dy - e^y sum(dy) */
__global__ void __launch_bounds__(1024) softmax_backward_kernel(magna_launch_rows l, int log_form, const float *__restrict__ Y,
                                        const float *__restrict__ DY, float *__restrict__ DX) {
    const uint32_t lane = magna_launch_rows_lane(&l, threadIdx.x);
    FOR_ROWS(l, r) {
        const float *y = Y + r * l.cols, *dy = DY + r * l.cols;
        float *dx = DX + r * l.cols;
        float s = 0.0f;
        for (int64_t j = lane; j < l.cols; j += l.threads_per_row) s += log_form ? dy[j] : dy[j] * y[j];
        s = row_all(l, s, 0.0f);
        for (int64_t j = lane; j < l.cols; j += l.threads_per_row)
            dx[j] += log_form ? dy[j] - expf(y[j]) * s : y[j] * (dy[j] - s);
    }
}

/* per row: lse[r] and loss[r] = (lse - x[label]) w[label] (0 for an ignored row); a label outside [0, C)
 * (but the ignore label) sets *bad (when given) and is not read */
template <class T>
__global__ void __launch_bounds__(1024) xent_rows_kernel(magna_launch_rows l, const T *__restrict__ X, const int32_t *__restrict__ label,
                                 const float *__restrict__ weight, float *__restrict__ lse, float *__restrict__ loss,
                                 int *__restrict__ bad) {
    const uint32_t lane = magna_launch_rows_lane(&l, threadIdx.x);
    FOR_ROWS(l, r) {
        const int32_t k = label[r];
        if (k == MAGNA_EM_IGNORE_LABEL || k < 0 || k >= l.cols) { /* the same branch for the whole row */
            if (lane == 0) {
                loss[r] = 0.0f, lse[r] = 0.0f;
                if (k != MAGNA_EM_IGNORE_LABEL && bad) *bad = 1;
            }
            continue;
        }
        const T *x = X + r * l.cols;
        const float m = magna_em_logsumexp(row_maxsum(l, x, lane));
        if (lane == 0) lse[r] = m, loss[r] = (m - magna_as_float(x[k])) * (weight ? weight[k] : 1.0f);
    }
}

/* one block: out = sum(loss) / counted rows (0 when none), and the count kept for backward */
__global__ void __launch_bounds__(1024) xent_mean_kernel(const float *__restrict__ loss, const int32_t *__restrict__ label, int64_t rows,
                                 float *__restrict__ out, float *__restrict__ counted) {
    float s = 0.0f, c = 0.0f;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) s += loss[r], c += label[r] != MAGNA_EM_IGNORE_LABEL;
    s = magna_reduce::block_all(s, 0.0f);
    c = magna_reduce::block_all(c, 0.0f); /* exact: counts below 2^24 per thread and in total */
    if (threadIdx.x == 0) out[0] = c > 0.0f ? s / c : 0.0f, counted[0] = c;
}

/* dx[j] += k (softmax_j - [j == label]), k = dL / counted rows * w[label] */
/* dx += (softmax - onehot) k, or with assign dx = ... (zero on ignored rows): the logits' gradient written over
 * the logits themselves (plan.c's grad_in_value), so X and DX may be one buffer: each element is read, then
 * written, by the same thread, and neither pointer is __restrict__. */
template <class T>
__global__ void __launch_bounds__(1024) xent_backward_kernel(magna_launch_rows l, const T *X, const int32_t *__restrict__ label,
                                     const float *__restrict__ weight, const float *__restrict__ lse,
                                     const float *__restrict__ counted, const float *__restrict__ dl,
                                     T *DX, int assign) {
    const uint32_t lane = magna_launch_rows_lane(&l, threadIdx.x);
    if (counted[0] == 0.0f && !assign) return;
    const float k0 = counted[0] == 0.0f ? 0.0f : dl[0] / counted[0];
    FOR_ROWS(l, r) {
        const int32_t t = label[r];
        T *dx = DX + r * l.cols;
        if (t < 0) { /* ignored (forward refused any other label outside [0, C)) */
            if (assign)
                for (int64_t j = lane; j < l.cols; j += l.threads_per_row) magna_store(&dx[j], 0.0f);
            continue;
        }
        const T *x = X + r * l.cols;
        const float k = weight ? k0 * weight[t] : k0, m = lse[r];
        for (int64_t j = lane; j < l.cols; j += l.threads_per_row) {
            const float g = k * (expf(magna_as_float(x[j]) - m) - (j == t ? 1.0f : 0.0f));
            magna_store(&dx[j], assign ? g : magna_as_float(dx[j]) + g);
        }
    }
}

} // namespace

extern "C" int magna_cuda_softmax_forward(int log_form, const float *x, float *y, int64_t rows, int64_t cols,
                                          void *stream) {
    const magna_launch_rows l = magna_launch_rowwise(rows, cols);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, softmax_forward_kernel, l, log_form, x, y);
}

extern "C" int magna_cuda_softmax_backward(int log_form, const float *y, const float *dy, float *dx, int64_t rows,
                                           int64_t cols, void *stream) {
    const magna_launch_rows l = magna_launch_rowwise(rows, cols);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, softmax_backward_kernel, l, log_form, y, dy, dx);
}

extern "C" int magna_cuda_xent_forward(const void *x, int x16, const int32_t *label, const float *weight,
                                       int64_t rows, int64_t cols, float *saved, float *row_loss, int *bad,
                                       float *loss, void *stream) {
    int e = bad ? cudaMemsetAsync(bad, 0, sizeof(int), static_cast<cudaStream_t>(stream)) : cudaSuccess;
    const magna_launch_rows l = magna_launch_rowwise(rows, cols);
    if (e || l.grid == 0) return e;
    e = x16 ? magna_cuda_launch(l.grid, l.block, 0, stream, xent_rows_kernel<__nv_bfloat16>, l,
                                static_cast<const __nv_bfloat16 *>(x), label, weight, saved, row_loss, bad)
            : magna_cuda_launch(l.grid, l.block, 0, stream, xent_rows_kernel<float>, l, static_cast<const float *>(x),
                                label, weight, saved, row_loss, bad);
    if (e) return e;
    return magna_cuda_launch(1, 1024, 0, stream, xent_mean_kernel, (const float *)row_loss, label, rows, loss,
                             saved + rows);
}

extern "C" int magna_cuda_xent_backward(const void *x, int x16, const int32_t *label, const float *weight,
                                        const float *saved, const float *dl, void *dx, int assign, int64_t rows,
                                        int64_t cols, void *stream) {
    const magna_launch_rows l = magna_launch_rowwise(rows, cols);
    if (l.grid == 0) return cudaSuccess;
    /* bf16 logits are a bf16 graph's, whose gradient is written over them (assigning, in bf16) */
    if (x16 && !assign) return cudaErrorInvalidValue;
    return x16 ? magna_cuda_launch(l.grid, l.block, 0, stream, xent_backward_kernel<__nv_bfloat16>, l,
                                   static_cast<const __nv_bfloat16 *>(x), label, weight, saved, saved + rows, dl,
                                   static_cast<__nv_bfloat16 *>(dx), assign)
               : magna_cuda_launch(l.grid, l.block, 0, stream, xent_backward_kernel<float>, l,
                                   static_cast<const float *>(x), label, weight, saved, saved + rows, dl,
                                   static_cast<float *>(dx), assign);
}
