/* embedding.cu — the lookup table (src/ops/embedding.c): forward copies table rows, backward adds each
 * output row's gradient into the row its id picked.
 *
 * Backward is deterministic and adds in the CPU's order, so its sums are bit for bit the CPU's: ids repeat
 * (the same token many times in a batch), and float atomics would add them in whatever order the threads
 * ran. Instead the positions are bucketed by id (a counting sort: integer atomics count and place, which
 * is exact; the order inside a bucket is then fixed by ranking each position among its bucket's), and a
 * block per table row walks its positions in increasing order, each thread owning columns:
 *   dtable[v, d] = ((dtable[v, d] + dout[i0, d]) + dout[i1, d]) + ...  for i0 < i1 < ... with ids[i] = v.
 * Ranking is quadratic in a bucket's size (a token repeated k times costs k^2 comparisons, spread over the
 * GPU): cheap for text, where the commonest token is a few percent of a batch. */
#include "compat.h"

#include "kernels.h"
#include "launch.h"

namespace {

/* out[i, :] = table[ids[i], :]; an id outside [0, V) sets *bad (when given) and its row is left as it was */
__global__ void embedding_forward_kernel(magna_launch_1d l, int64_t D, int64_t V, const float *__restrict__ table,
                                         const int32_t *__restrict__ ids, float *__restrict__ out,
                                         int *__restrict__ bad) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t e = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); e < l.n; e += stride) {
        /* 32-bit division where it fits (several times cheaper on a GPU) */
        const int64_t i = l.n <= (int64_t)UINT32_MAX ? (int64_t)((uint32_t)e / (uint32_t)D) : e / D, d = e - i * D;
        const int32_t id = ids[i];
        if (id < 0 || id >= V) {
            if (bad) *bad = 1; /* every writer stores the same value */
            continue;
        }
        out[e] = table[(int64_t)id * D + d];
    }
}

__global__ void count_kernel(magna_launch_1d l, const int32_t *__restrict__ ids, int *__restrict__ count) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride) atomicAdd(count + ids[i], 1);
}

/* one block: start[v] = count[0] + ... + count[v - 1], and cursor[v] = start[v]. Each thread sums a
 * contiguous slice of the table's rows; thread 0 scans the slices' sums in order. */
__global__ void scan_kernel(int64_t V, const int *__restrict__ count, int *__restrict__ start, int *__restrict__ cursor) {
    __shared__ int slice_sum[MAGNA_LAUNCH_BLOCK];
    const int64_t per = (V + blockDim.x - 1) / blockDim.x, v0 = threadIdx.x * per, v1 = v0 + per < V ? v0 + per : V;
    int s = 0;
    for (int64_t v = v0; v < v1; v++) s += count[v];
    slice_sum[threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        int acc = 0;
        for (unsigned t = 0; t < blockDim.x; t++) {
            const int c = slice_sum[t];
            slice_sum[t] = acc, acc += c;
        }
    }
    __syncthreads();
    s = slice_sum[threadIdx.x];
    for (int64_t v = v0; v < v1; v++) start[v] = cursor[v] = s, s += count[v];
}

__global__ void place_kernel(magna_launch_1d l, const int32_t *__restrict__ ids, int *__restrict__ cursor,
                             int *__restrict__ bucket) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride)
        bucket[atomicAdd(cursor + ids[i], 1)] = (int)i;
}

/* sorted[start + rank] = position, rank = how many positions of the same bucket are smaller */
__global__ void rank_kernel(magna_launch_1d l, const int32_t *__restrict__ ids, const int *__restrict__ start,
                            const int *__restrict__ count, const int *__restrict__ bucket, int *__restrict__ sorted) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t e = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); e < l.n; e += stride) {
        const int i = bucket[e], v = ids[i], s = start[v], c = count[v];
        int rank = 0;
        for (int k = s; k < s + c; k++) rank += bucket[k] < i;
        sorted[s + rank] = i;
    }
}

/* a block per table row (grid-stride over rows), threads over its columns */
__global__ void accumulate_kernel(int64_t V, int64_t D, const int *__restrict__ start, const int *__restrict__ count,
                                  const int *__restrict__ sorted, const float *__restrict__ dout,
                                  float *__restrict__ dtable) {
    for (int64_t v = blockIdx.x; v < V; v += gridDim.x) {
        const int s = start[v], c = count[v];
        if (c == 0) continue;
        for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
            float acc = dtable[v * D + d];
            for (int k = s; k < s + c; k++) acc += dout[(int64_t)sorted[k] * D + d];
            dtable[v * D + d] = acc;
        }
    }
}

} // namespace

extern "C" int magna_cuda_embedding_forward(const float *table, const int32_t *ids, float *out, int64_t n, int64_t D,
                                            int64_t V, int *bad, void *stream) {
    int e = bad ? cudaMemsetAsync(bad, 0, sizeof(int), static_cast<cudaStream_t>(stream)) : cudaSuccess;
    const magna_launch_1d l = magna_launch_elementwise(n * D, 1);
    if (e || l.grid == 0) return e;
    return magna_cuda_launch(l.grid, l.block, 0, stream, embedding_forward_kernel, l, D, V, table, ids, out, bad);
}

extern "C" int magna_cuda_embedding_backward(const int32_t *ids, const float *dout, float *dtable, int64_t n, int64_t D,
                                             int64_t V, void *workspace, void *stream) {
    if (n == 0 || D == 0) return cudaSuccess;
    if (n > 0x7fffffff) return cudaErrorInvalidValue; /* positions are kept as int */
    int *count = static_cast<int *>(workspace), *start = count + V, *cursor = start + V, *bucket = cursor + V;
    int *sorted = bucket + n;
    int e = cudaMemsetAsync(count, 0, (size_t)V * sizeof(int), static_cast<cudaStream_t>(stream));
    const magna_launch_1d l = magna_launch_elementwise(n, 1);
    if (!e) e = magna_cuda_launch(l.grid, l.block, 0, stream, count_kernel, l, ids, count);
    if (!e) e = magna_cuda_launch(1, MAGNA_LAUNCH_BLOCK, 0, stream, scan_kernel, V, (const int *)count, start, cursor);
    if (!e) e = magna_cuda_launch(l.grid, l.block, 0, stream, place_kernel, l, ids, cursor, bucket);
    if (!e)
        e = magna_cuda_launch(l.grid, l.block, 0, stream, rank_kernel, l, ids, (const int *)start, (const int *)count,
                              (const int *)bucket, sorted);
    if (e) return e;
    const int64_t rows = V < (int64_t)MAGNA_LAUNCH_MAX_GRID ? V : (int64_t)MAGNA_LAUNCH_MAX_GRID;
    const uint32_t threads = D >= MAGNA_LAUNCH_BLOCK ? (uint32_t)MAGNA_LAUNCH_BLOCK : (uint32_t)((D + 31) / 32 * 32);
    return magna_cuda_launch((uint32_t)rows, threads, 0, stream, accumulate_kernel, V, D, (const int *)start,
                             (const int *)count, (const int *)sorted, dout, dtable);
}
