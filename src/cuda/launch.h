/* launch.h — launch geometry of the CUDA kernels (grid, block, tiles), as host functions a CPU test runs.
 *
 * Every kernel asks these functions for its launch and walks its elements with the index functions below
 * (MAGNA_HD: the kernel and the test run the same code), so tests/test_cuda_launch.c can show, for tiny and
 * odd sizes, that every element is visited exactly once and every index stays in range, without a GPU.
 * Plain C with no CUDA types, so it compiles into CPU-only builds too. Three shapes of launch:
 *   elementwise  a grid-stride loop over n elements, `vec` contiguous ones per thread and step (float4);
 *   rows         softmax, cross-entropy, layer norm: a warp per row for short rows, a block per row for
 *                long ones, rows beyond the grid taken by a grid-stride loop;
 *   attention    flash-style tiles: a block per (query tile, batch x head), looping over key tiles (only
 *                those a causal mask leaves), so the T x T scores never exist in memory; backward's dK/dV
 *                a block per (key tile, batch x head), looping over the queries that see its keys. */
#ifndef MAGNA_CUDA_LAUNCH_H
#define MAGNA_CUDA_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "elementwise_math.h" /* MAGNA_HD */

enum {
    MAGNA_LAUNCH_BLOCK = 256,        /* threads of an elementwise or row block */
    MAGNA_LAUNCH_MAX_GRID = 132 * 16, /* blocks of a grid-stride launch: an H100's 132 SMs, 16 blocks deep */
    MAGNA_LAUNCH_WARP = 32,
    MAGNA_LAUNCH_MAX_GRID_Y = 65535, /* CUDA's limit on gridDim.y */
};

/* ---- elementwise -------------------------------------------------------------------------------------- */

typedef struct magna_launch_1d {
    int64_t n;
    uint32_t grid, block, vec; /* grid 0: nothing to launch (n = 0) */
} magna_launch_1d;

static inline magna_launch_1d magna_launch_elementwise(int64_t n, uint32_t vec) {
    magna_launch_1d l;
    l.n = n > 0 ? n : 0, l.block = MAGNA_LAUNCH_BLOCK, l.vec = vec ? vec : 1;
    const int64_t per_block = (int64_t)l.block * l.vec, blocks = (l.n + per_block - 1) / per_block;
    l.grid = (uint32_t)(blocks < MAGNA_LAUNCH_MAX_GRID ? blocks : (int64_t)MAGNA_LAUNCH_MAX_GRID);
    return l;
}
/* Thread t of block b starts at element first and steps by stride, taking vec elements [i, i + vec) that
 * are < n at each step:  for (i = first; i < n; i += stride) for (v = 0; v < vec && i + v < n; v++) ... */
MAGNA_HD int64_t magna_launch_1d_first(const magna_launch_1d *l, uint32_t b, uint32_t t) {
    return ((int64_t)b * l->block + t) * l->vec;
}
MAGNA_HD int64_t magna_launch_1d_stride(const magna_launch_1d *l) { return (int64_t)l->grid * l->block * l->vec; }

/* ---- row-wise ------------------------------------------------------------------------------------------ */

typedef struct magna_launch_rows {
    int64_t rows, cols;
    uint32_t grid, block;
    uint32_t threads_per_row; /* a warp (short rows) or the whole block (long rows) */
    uint32_t rows_per_block;  /* block / threads_per_row */
} magna_launch_rows;

static inline magna_launch_rows magna_launch_rowwise(int64_t rows, int64_t cols) {
    magna_launch_rows l;
    l.rows = rows > 0 ? rows : 0, l.cols = cols > 0 ? cols : 0;
    /* a warp per row up to 1024 columns (32 per lane, reduced by shuffles alone); beyond, a block per row
     * (1024 threads from 8192 columns, so the block's shared-memory reduction is paid over enough work) */
    l.block = l.cols < 8192 ? MAGNA_LAUNCH_BLOCK : 1024;
    l.threads_per_row = l.cols <= 1024 ? (uint32_t)MAGNA_LAUNCH_WARP : l.block;
    l.rows_per_block = l.block / l.threads_per_row;
    const int64_t blocks = (l.rows + l.rows_per_block - 1) / l.rows_per_block;
    l.grid = (uint32_t)(l.cols == 0 ? 0 : blocks < MAGNA_LAUNCH_MAX_GRID ? blocks : (int64_t)MAGNA_LAUNCH_MAX_GRID);
    return l;
}
/* Thread t of block b takes rows row, row + row_stride, ... < rows, and within each the columns
 * col, col + threads_per_row, ... < cols. */
MAGNA_HD int64_t magna_launch_rows_first(const magna_launch_rows *l, uint32_t b, uint32_t t) {
    return (int64_t)b * l->rows_per_block + t / l->threads_per_row;
}
MAGNA_HD int64_t magna_launch_rows_stride(const magna_launch_rows *l) { return (int64_t)l->grid * l->rows_per_block; }
MAGNA_HD uint32_t magna_launch_rows_lane(const magna_launch_rows *l, uint32_t t) { return t % l->threads_per_row; }

/* ---- attention tiles ---------------------------------------------------------------------------------- */

/* A query row (forward, dQ) or key row (dK, dV) is owned by `parts` neighbouring threads of a warp; part p
 * holds the head-dim elements d = p, p + parts, ... (interleaved, so the parts of a row read neighbouring
 * shared-memory words: no bank conflicts). Fast path (hd <= 128): parts = 4, each thread keeps its
 * dpt = hd / 4 (rounded up to 4, 8, 16 or 32) elements of q and of the accumulator in registers and the
 * block stages tiles of tile_k rows of K and V (or Q and dO) in shared memory. Generic path (hd > 128,
 * dpt = 0): a warp per row, vectors read from and accumulated in global memory, nothing staged. */
enum { MAGNA_ATTN_MAX_FAST_HD = 128, MAGNA_ATTN_BLOCK = 256 /* threads of every attention block */ };

typedef struct magna_launch_attention {
    int64_t bh, tq, tk, hd;    /* batch x heads, queries, keys, head dimension */
    uint32_t tile_q, tile_k;   /* rows a block owns (queries; keys in dK/dV), rows of one staged tile */
    uint32_t parts, dpt;       /* threads of a row; elements each keeps in registers (0: generic path) */
    uint32_t grid_x, grid_y;   /* query tiles; (batch x head) slots, strided when bh > 65535 */
    uint32_t kv_grid_x;        /* dK/dV: key tiles of tile_q keys */
    uint32_t block;            /* tile_q * parts threads */
    int causal;                /* query q sees keys k <= q + (tk - tq): the queries are the last tq positions */
} magna_launch_attention;

static inline magna_launch_attention magna_launch_attn(int64_t bh, int64_t tq, int64_t tk, int64_t hd, int causal) {
    magna_launch_attention l;
    l.bh = bh > 0 ? bh : 0, l.tq = tq > 0 ? tq : 0, l.tk = tk > 0 ? tk : 0, l.hd = hd > 0 ? hd : 0;
    l.causal = causal != 0;
    l.block = MAGNA_ATTN_BLOCK, l.tile_k = 32;
    if (l.hd <= MAGNA_ATTN_MAX_FAST_HD) {
        l.parts = 4;
        l.dpt = l.hd <= 16 ? 4 : l.hd <= 32 ? 8 : l.hd <= 64 ? 16 : 32;
    } else {
        l.parts = MAGNA_LAUNCH_WARP, l.dpt = 0;
    }
    l.tile_q = l.block / l.parts;
    const int empty = l.bh == 0 || l.tq == 0 || l.hd == 0;
    l.grid_x = (uint32_t)(empty ? 0 : (l.tq + l.tile_q - 1) / l.tile_q);
    l.kv_grid_x = (uint32_t)(empty ? 0 : (l.tk + l.tile_q - 1) / l.tile_q);
    l.grid_y = (uint32_t)(empty ? 0 : l.bh < MAGNA_LAUNCH_MAX_GRID_Y ? l.bh : (int64_t)MAGNA_LAUNCH_MAX_GRID_Y);
    return l;
}
/* shared memory of the fast path's kernels: two staged tiles of tile_k rows of parts * dpt floats (hd, padded
 * with zeros so the register loops need no bound), and tile_k floats each of the two per-row values dK/dV
 * stages beside them (log-sum-exp and rowsum(dO * O)) */
static inline size_t magna_attn_shared_bytes(const magna_launch_attention *l) {
    const size_t row = (size_t)l->parts * l->dpt;
    return l->dpt ? (2 * (size_t)l->tile_k * row + 2 * (size_t)l->tile_k) * sizeof(float) : 0;
}
/* Tensor-core path (bf16 mode, hd a multiple of 16 up to 128): four warps of 16 rows, a block of 64 query rows (keys in
 * dK/dV) and tiles of 64 rows of the other side; a warp's two lanes per row do its softmax (parts = 2, so the
 * row-of-thread functions below hold for it too); dpt is 0. */
enum {
    MAGNA_ATTN_TC_BLOCK = 128,
    MAGNA_ATTN_TC_TILE = 64,
    /* a warp's shared tiles are walked by its lanes 16 rows at a time: their row strides are padded off a
     * multiple of 32 banks (score tiles float, probability tiles bf16, output rows float) */
    MAGNA_ATTN_TC_SLD = MAGNA_ATTN_TC_TILE + 4,
    MAGNA_ATTN_TC_PLD = MAGNA_ATTN_TC_TILE + 8,
    MAGNA_ATTN_TC_RPAD = 4,
};
static inline int magna_attn_tc_fits(int64_t hd) { return hd > 0 && hd <= 128 && hd % 16 == 0; }
static inline magna_launch_attention magna_launch_attn_tc(int64_t bh, int64_t tq, int64_t tk, int64_t hd, int causal) {
    magna_launch_attention l = magna_launch_attn(bh, tq, tk, hd, causal);
    l.block = MAGNA_ATTN_TC_BLOCK, l.tile_q = l.tile_k = MAGNA_ATTN_TC_TILE, l.parts = 2, l.dpt = 0;
    const int empty = l.grid_x == 0;
    l.grid_x = (uint32_t)(empty ? 0 : (l.tq + l.tile_q - 1) / l.tile_q);
    l.kv_grid_x = (uint32_t)(empty ? 0 : (l.tk + l.tile_q - 1) / l.tile_q);
    return l;
}
/* The tensor-core kernels' shared memory, in bytes, carved in this order (every piece a multiple of 32 bytes,
 * as wmma's loads and stores need): bf16 tiles of 64 rows x hd (forward: Q, K, V; dQ: Q, dO, K, V; dK/dV: this
 * block's K, V, then Q, dO), then per warp float [16][SLD] score tiles (forward 1, dQ and dK/dV 2), bf16
 * [16][PLD] tiles (forward 1, dQ 1, dK/dV 2) and a float [16][hd + RPAD] row tile, and dK/dV's 2 x 64 floats
 * of lse and delta; plus 128 bytes to align the start (dynamic shared memory is only promised 16-byte aligned).
 * kernel: 0 forward, 1 dQ, 2 dK/dV. */
static inline size_t magna_attn_tc_shared_bytes(int64_t hd, int kernel) {
    const size_t T = MAGNA_ATTN_TC_TILE, W = MAGNA_ATTN_TC_BLOCK / 32, bf_tile = T * (size_t)hd * 2;
    const size_t tiles = kernel == 0 ? 3 : 4, s_f = kernel == 0 ? 1 : 2, s_b = kernel == 2 ? 2 : 1;
    const size_t per_warp = s_f * 16 * MAGNA_ATTN_TC_SLD * 4 + s_b * 16 * MAGNA_ATTN_TC_PLD * 2 +
                            16 * ((size_t)hd + MAGNA_ATTN_TC_RPAD) * 4;
    return 128 + tiles * bf_tile + W * per_warp + (kernel == 2 ? 2 * T * 4 : 0);
}
/* queries [q_begin, q_end) of block x */
MAGNA_HD int64_t magna_attn_q_begin(const magna_launch_attention *l, uint32_t x) { return (int64_t)x * l->tile_q; }
MAGNA_HD int64_t magna_attn_q_end(const magna_launch_attention *l, uint32_t x) {
    const int64_t e = ((int64_t)x + 1) * l->tile_q;
    return e < l->tq ? e : l->tq;
}
/* the row (query, or key in dK/dV) of thread t within block x's tile, and which part of the head dim it takes */
MAGNA_HD int64_t magna_attn_query(const magna_launch_attention *l, uint32_t x, uint32_t t) {
    return magna_attn_q_begin(l, x) + t / l->parts;
}
MAGNA_HD uint32_t magna_attn_part(const magna_launch_attention *l, uint32_t t) { return t % l->parts; }
/* the keys query q may see: [0, keys_end(q)) (a padding mask cuts this further, per batch, in the kernel) */
MAGNA_HD int64_t magna_attn_keys_end(const magna_launch_attention *l, int64_t q) {
    if (!l->causal) return l->tk;
    const int64_t e = q + 1 + (l->tk - l->tq);
    return e < 0 ? 0 : e < l->tk ? e : l->tk;
}
/* key tiles block x loops over: [0, k_tiles) — those any of its queries sees */
MAGNA_HD int64_t magna_attn_k_tiles(const magna_launch_attention *l, uint32_t x) {
    const int64_t q_end = magna_attn_q_end(l, x);
    const int64_t keys = q_end > magna_attn_q_begin(l, x) ? magna_attn_keys_end(l, q_end - 1) : 0;
    return (keys + l->tile_k - 1) / l->tile_k;
}
/* dK/dV: keys [k_begin, k_end) of block x; the queries it loops over, [kv_q_begin, tq): from the first that
 * sees the block's first key (all later queries see at least as many keys) */
MAGNA_HD int64_t magna_attn_k_begin(const magna_launch_attention *l, uint32_t x) { return (int64_t)x * l->tile_q; }
MAGNA_HD int64_t magna_attn_k_end(const magna_launch_attention *l, uint32_t x) {
    const int64_t e = ((int64_t)x + 1) * l->tile_q;
    return e < l->tk ? e : l->tk;
}
MAGNA_HD int64_t magna_attn_kv_q_begin(const magna_launch_attention *l, uint32_t x) {
    if (!l->causal) return 0;
    const int64_t q = magna_attn_k_begin(l, x) - (l->tk - l->tq);
    return q < 0 ? 0 : q < l->tq ? q : l->tq;
}
/* the (batch x head) slots of grid row y: y, y + grid_y, ... < bh */
MAGNA_HD int64_t magna_attn_bh_stride(const magna_launch_attention *l) { return l->grid_y; }


/* ---- GEMM tiles (gemm.cu's own kernel) -------------------------------------------------------------------
 * A block computes a TILE_M x TILE_N tile of C: its 256 threads form a 16 x 16 grid, thread (ty, tx) taking
 * rows ty + 16 r and columns tx + 16 c (r, c < 4), so a warp's stores of one row are 16 consecutive floats.
 * Each step of the k loop stages TILE_M x TILE_K of op(A) and TILE_K x TILE_N of op(B) in shared memory, 4
 * elements a thread, walked along the operand's contiguous dim (which one depends on the transpose) so the
 * loads coalesce. Row tiles on grid x (up to 2^31 - 1), column tiles on grid y and batches on grid z, both
 * capped at 65535 and strided past it. */
enum {
    MAGNA_GEMM_TILE_M = 64,
    MAGNA_GEMM_TILE_N = 64,
    MAGNA_GEMM_TILE_K = 16,
    MAGNA_GEMM_THREADS = 256,
    MAGNA_GEMM_SIDE = 16,                                                    /* threads along a tile side */
    MAGNA_GEMM_MICRO = MAGNA_GEMM_TILE_M / MAGNA_GEMM_SIDE,                  /* rows (and columns) a thread */
    MAGNA_GEMM_LOADS = MAGNA_GEMM_TILE_M * MAGNA_GEMM_TILE_K / MAGNA_GEMM_THREADS, /* elements a thread stages */
};

typedef struct magna_launch_gemm {
    int64_t m, n, batch;
    uint32_t grid_x, grid_y, grid_z; /* all 0: nothing to launch */
    uint32_t block;
} magna_launch_gemm;

static inline magna_launch_gemm magna_launch_gemm_tiles(int64_t m, int64_t n, int64_t batch) {
    magna_launch_gemm l;
    l.m = m > 0 ? m : 0, l.n = n > 0 ? n : 0, l.batch = batch > 0 ? batch : 0, l.block = MAGNA_GEMM_THREADS;
    const int64_t tm = (l.m + MAGNA_GEMM_TILE_M - 1) / MAGNA_GEMM_TILE_M, tn = (l.n + MAGNA_GEMM_TILE_N - 1) / MAGNA_GEMM_TILE_N;
    const int empty = tm == 0 || tn == 0 || l.batch == 0;
    l.grid_x = (uint32_t)(empty ? 0 : tm);
    l.grid_y = (uint32_t)(empty ? 0 : tn < MAGNA_LAUNCH_MAX_GRID_Y ? tn : (int64_t)MAGNA_LAUNCH_MAX_GRID_Y);
    l.grid_z = (uint32_t)(empty ? 0 : l.batch < MAGNA_LAUNCH_MAX_GRID_Y ? l.batch : (int64_t)MAGNA_LAUNCH_MAX_GRID_Y);
    return l;
}
/* column tiles of grid row y: y, y + grid_y, ... < gemm_col_tiles; batches of grid slice z likewise */
MAGNA_HD int64_t magna_gemm_col_tiles(const magna_launch_gemm *l) { return (l->n + MAGNA_GEMM_TILE_N - 1) / MAGNA_GEMM_TILE_N; }
/* the row (of C) of thread t's r-th micro-row in row tile x, and the column of its c-th micro-column in
 * column tile y (either may be past m or n at the edge: the kernel skips those) */
MAGNA_HD int64_t magna_gemm_row(uint32_t x, uint32_t t, uint32_t r) {
    return (int64_t)x * MAGNA_GEMM_TILE_M + t / MAGNA_GEMM_SIDE + (int64_t)MAGNA_GEMM_SIDE * r;
}
MAGNA_HD int64_t magna_gemm_col(int64_t y, uint32_t t, uint32_t c) {
    return y * MAGNA_GEMM_TILE_N + t % MAGNA_GEMM_SIDE + (int64_t)MAGNA_GEMM_SIDE * c;
}
/* The e-th (e < LOADS) element thread t stages of a tile with `outer` x TILE_K entries (op(A): outer = TILE_M
 * rows; op(B): outer = TILE_N columns): (o, kk), o < outer, kk < TILE_K. `k_contiguous`: the operand's memory
 * runs along k (A untransposed, B transposed), so consecutive threads take consecutive kk. */
MAGNA_HD void magna_gemm_stage(uint32_t t, uint32_t e, int k_contiguous, uint32_t *o, uint32_t *kk) {
    const uint32_t i = t + MAGNA_GEMM_THREADS * e;
    if (k_contiguous) *o = i / MAGNA_GEMM_TILE_K, *kk = i % MAGNA_GEMM_TILE_K;
    else *kk = i / MAGNA_GEMM_TILE_M, *o = i % MAGNA_GEMM_TILE_M;
}

/* ---- column sums (layer norm's dgamma and dbeta) -----------------------------------------------------------
 * A block of 8 warps per (32 columns, slice of rows): lane = column, each warp taking every 8th row of the
 * slice; slices (grid y) make the parallelism that few columns lack, and their partial sums are added in
 * order afterwards. A slice is at least 256 rows (32 a warp), at most max_slices and 65535 of them. */
enum { MAGNA_COLSUM_WARPS = 8, MAGNA_COLSUM_MIN_ROWS = 256 };

typedef struct magna_launch_colsum {
    int64_t rows, cols;
    uint32_t grid_x, grid_y, block; /* grid_x 0: nothing to launch */
} magna_launch_colsum;

static inline magna_launch_colsum magna_launch_colsums(int64_t rows, int64_t cols, int64_t max_slices) {
    magna_launch_colsum l;
    l.rows = rows > 0 ? rows : 0, l.cols = cols > 0 ? cols : 0, l.block = MAGNA_COLSUM_WARPS * MAGNA_LAUNCH_WARP;
    int64_t s = (l.rows + MAGNA_COLSUM_MIN_ROWS - 1) / MAGNA_COLSUM_MIN_ROWS;
    if (s > max_slices) s = max_slices;
    if (s > MAGNA_LAUNCH_MAX_GRID_Y) s = MAGNA_LAUNCH_MAX_GRID_Y;
    if (s < 1) s = 1;
    const int empty = l.rows == 0 || l.cols == 0;
    l.grid_x = (uint32_t)(empty ? 0 : (l.cols + MAGNA_LAUNCH_WARP - 1) / MAGNA_LAUNCH_WARP);
    l.grid_y = (uint32_t)(empty ? 0 : s);
    return l;
}
/* thread t of block x takes column col (skipping it when >= cols), rows [begin, end) of slice y from
 * begin + t / 32 in steps of MAGNA_COLSUM_WARPS */
MAGNA_HD int64_t magna_colsum_col(uint32_t x, uint32_t t) { return (int64_t)x * MAGNA_LAUNCH_WARP + t % MAGNA_LAUNCH_WARP; }
MAGNA_HD int64_t magna_colsum_row_begin(const magna_launch_colsum *l, uint32_t y) { return l->rows * y / l->grid_y; }
MAGNA_HD int64_t magna_colsum_row_end(const magna_launch_colsum *l, uint32_t y) { return l->rows * (y + 1) / l->grid_y; }
/* ---- strided index spaces (broadcasting, reductions, permute, slice, concat) ---------------------------
 * n elements seen as nd dims (outermost first); element i's offset in tensor t is the sum over dims of its
 * digit times stride[t][d]. A stride 0 reads one element for the whole dim (broadcasting). The host builds
 * one from the op's shapes, simplifies it (size-1 dims dropped, dims that are contiguous for every tensor
 * merged: a same-shape binary op becomes one flat dim) and, for reductions, splits it into the kept dims
 * (one output each) and the reduced ones (walked for each output). */
enum { MAGNA_INDEX_DIMS = 8, MAGNA_INDEX_TENSORS = 3 };

typedef struct magna_index {
    int nd;
    int64_t n;
    int64_t shape[MAGNA_INDEX_DIMS];
    int64_t stride[MAGNA_INDEX_TENSORS][MAGNA_INDEX_DIMS];
} magna_index;

/* the offsets of element i in the first `nt` tensors */
MAGNA_HD void magna_index_offsets(const magna_index *ix, int64_t i, int nt, int64_t *off) {
    for (int t = 0; t < nt; t++) off[t] = 0;
    if (ix->nd == 1) { /* the common flat case: no division */
        for (int t = 0; t < nt; t++) off[t] = i * ix->stride[t][0];
        return;
    }
    if (ix->n <= (int64_t)UINT32_MAX) { /* 32-bit division: several times cheaper than 64-bit on a GPU */
        uint32_t j = (uint32_t)i;
        for (int d = ix->nd - 1; d >= 0; d--) {
            const uint32_t size = (uint32_t)ix->shape[d], q = j / size, digit = j - q * size;
            for (int t = 0; t < nt; t++) off[t] += (int64_t)digit * ix->stride[t][d];
            j = q;
        }
        return;
    }
    for (int d = ix->nd - 1; d >= 0; d--) {
        const int64_t q = i / ix->shape[d], digit = i - q * ix->shape[d];
        for (int t = 0; t < nt; t++) off[t] += digit * ix->stride[t][d];
        i = q;
    }
}

/* an empty space over `shape` (strides 0: the caller fills those it uses) */
static inline magna_index magna_index_of(int nd, const int64_t *shape) {
    magna_index ix;
    memset(&ix, 0, sizeof ix);
    ix.nd = nd, ix.n = 1;
    for (int d = 0; d < nd; d++) ix.shape[d] = shape[d], ix.n *= shape[d];
    return ix;
}
/* the contiguous strides of `shape` as tensor t's (the tensor that owns the index space) */
static inline void magna_index_contiguous(magna_index *ix, int t) {
    int64_t s = 1;
    for (int d = ix->nd - 1; d >= 0; d--) ix->stride[t][d] = s, s *= ix->shape[d];
}
/* tensor t broadcast to the space: its shape `xshape` (xnd dims, aligned to the last dims) has each dim
 * equal to the space's or 1 (stride 0) */
static inline void magna_index_broadcast(magna_index *ix, int t, int xnd, const int64_t *xshape) {
    int64_t s = 1;
    for (int d = ix->nd - 1; d >= 0; d--) {
        const int xd = d - (ix->nd - xnd);
        const int64_t size = xd >= 0 ? xshape[xd] : 1;
        ix->stride[t][d] = size == 1 && ix->shape[d] != 1 ? 0 : s;
        s *= size;
    }
}
/* drops size-1 dims and merges a dim into the next one when every tensor steps through the pair as one
 * dim (stride[d] == stride[d + 1] * shape[d + 1]); the offsets of every element are unchanged. An empty
 * space stays as it is; a space of one element becomes nd = 0 (offset 0 everywhere). */
static inline void magna_index_simplify(magna_index *ix, int nt) {
    if (ix->n == 0) return;
    int nd = 0;
    for (int d = 0; d < ix->nd; d++) {
        if (ix->shape[d] == 1) continue;
        bool merge = nd > 0;
        for (int t = 0; merge && t < nt; t++) merge = ix->stride[t][nd - 1] == ix->stride[t][d] * ix->shape[d];
        if (merge) {
            ix->shape[nd - 1] *= ix->shape[d];
            for (int t = 0; t < nt; t++) ix->stride[t][nd - 1] = ix->stride[t][d];
        } else {
            ix->shape[nd] = ix->shape[d];
            for (int t = 0; t < nt; t++) ix->stride[t][nd] = ix->stride[t][d];
            nd++;
        }
    }
    ix->nd = nd;
}
/* the dims of `full` named in `mask` (bit d: dim d) into *red, the others into *kept, both simplified */
static inline void magna_index_split(const magna_index *full, unsigned mask, int nt, magna_index *kept,
                                     magna_index *red) {
    memset(kept, 0, sizeof *kept), memset(red, 0, sizeof *red);
    kept->n = red->n = 1;
    for (int d = 0; d < full->nd; d++) {
        magna_index *to = mask & (1u << d) ? red : kept;
        to->shape[to->nd] = full->shape[d];
        for (int t = 0; t < nt; t++) to->stride[t][to->nd] = full->stride[t][d];
        to->nd++, to->n *= full->shape[d];
    }
    magna_index_simplify(kept, nt), magna_index_simplify(red, nt);
}

/* ---- reductions: out[o] = merge over r of f(o, r), for o over the kept space and r over the reduced ---
 * Two shapes, both deterministic (a fixed tree, no atomics):
 *   rows  when the innermost reduced dim is contiguous in the read tensor: threads_per_out lanes (a warp,
 *         or the whole block for long runs of few outputs) stride over r and reduce by shuffles (and shared
 *         memory across the block's warps);
 *   cols  otherwise (the reduced dims are outer, e.g. a bias's gradient summed over rows): a 32 x 8 block
 *         takes 32 neighbouring outputs (coalesced), its 8 rows of threads split r, merged in shared memory.
 *         Too few outputs to fill the GPU (a bias of 768 is 24 blocks): r is also cut into `splits` chunks
 *         over gridDim.y, each block writing a partial per output, merged by a second kernel in chunk order
 *         (magna_reduce_split_workspace bytes of scratch). */
typedef struct magna_launch_reduce {
    int64_t outs, reds;
    uint32_t grid, block;
    uint32_t cols;            /* 1: the cols shape, block = 32 x 8 (x outputs, y splits of r) */
    uint32_t threads_per_out; /* rows shape: 32 or block; cols shape: 8 (the y threads) */
    uint32_t splits;          /* cols shape: chunks of r over gridDim.y (1: none); rows shape: 1 */
    int64_t chunk;            /* r of a chunk: [y chunk, min((y + 1) chunk, reds)) */
} magna_launch_reduce;

enum {
    MAGNA_LAUNCH_COLS_X = 32,
    MAGNA_LAUNCH_COLS_Y = 8,
    MAGNA_LAUNCH_SUM_BLOCKS = 1024, /* blocks (partial sums) of a whole-tensor sum: its workspace in floats */
    MAGNA_LAUNCH_FILL_BLOCKS = 4 * 132, /* blocks that fill an H100 (132 SMs) */
    MAGNA_LAUNCH_MIN_CHUNK = 512,       /* r of one chunk at least: a partial must pay for its write */
    MAGNA_LAUNCH_MAX_SPLITS = 64,
};

/* chunks of r for the cols shape of outs outputs over reds each */
static inline uint32_t magna_reduce_splits(int64_t outs, int64_t reds) {
    const int64_t xblocks = (outs + MAGNA_LAUNCH_COLS_X - 1) / MAGNA_LAUNCH_COLS_X;
    if (xblocks <= 0 || xblocks >= MAGNA_LAUNCH_FILL_BLOCKS) return 1;
    int64_t s = MAGNA_LAUNCH_FILL_BLOCKS / xblocks;
    if (s > reds / MAGNA_LAUNCH_MIN_CHUNK) s = reds / MAGNA_LAUNCH_MIN_CHUNK;
    if (s > MAGNA_LAUNCH_MAX_SPLITS) s = MAGNA_LAUNCH_MAX_SPLITS;
    return s > 1 ? (uint32_t)s : 1;
}
/* the partials' scratch a split reduction of outs x reds needs (0: it never splits) */
static inline size_t magna_reduce_split_workspace(int64_t outs, int64_t reds) {
    const uint32_t s = magna_reduce_splits(outs, reds);
    return s > 1 ? (size_t)s * (size_t)outs * sizeof(float) : 0;
}

/* the scratch of sum/mean over axes (cuda/reduce.cu): to one output, the whole grid's partial sums;
 * else a split's partials */
static inline size_t magna_reduce_workspace(int64_t outs, int64_t reds) {
    return outs == 1 ? MAGNA_LAUNCH_SUM_BLOCKS * sizeof(float) : magna_reduce_split_workspace(outs, reds);
}

/* can_split: the caller has magna_reduce_split_workspace(outs, reds) bytes of scratch */
static inline magna_launch_reduce magna_launch_reduction(int64_t outs, int64_t reds, int inner_contiguous,
                                                         int can_split) {
    magna_launch_reduce l;
    l.outs = outs > 0 ? outs : 0, l.reds = reds > 0 ? reds : 0;
    l.block = MAGNA_LAUNCH_BLOCK;
    l.splits = 1;
    int64_t blocks;
    if (!inner_contiguous) {
        l.cols = 1, l.threads_per_out = MAGNA_LAUNCH_COLS_Y;
        blocks = (l.outs + MAGNA_LAUNCH_COLS_X - 1) / MAGNA_LAUNCH_COLS_X;
        if (can_split) l.splits = magna_reduce_splits(l.outs, l.reds);
    } else {
        l.cols = 0;
        /* a whole block for long runs when there are too few outputs to fill the GPU with warps */
        l.threads_per_out = l.reds > 1024 && l.outs < 4096 ? l.block : (uint32_t)MAGNA_LAUNCH_WARP;
        const int64_t per_block = l.block / l.threads_per_out;
        blocks = (l.outs + per_block - 1) / per_block;
    }
    l.chunk = (l.reds + l.splits - 1) / l.splits;
    l.grid = (uint32_t)(blocks < (int64_t)MAGNA_LAUNCH_MAX_GRID ? blocks : (int64_t)MAGNA_LAUNCH_MAX_GRID);
    return l;
}
/* rows shape: thread t of block b takes outputs first, first + stride, ... and lanes lane, lane +
 * threads_per_out, ... of each; cols shape: outputs b * 32 + t % 32 + k * grid * 32, and of chunk y (the
 * block's gridDim.y index) r from r_begin + t / 32 by 8 below r_end */
MAGNA_HD int64_t magna_launch_reduce_first(const magna_launch_reduce *l, uint32_t b, uint32_t t) {
    return l->cols ? (int64_t)b * MAGNA_LAUNCH_COLS_X + t % MAGNA_LAUNCH_COLS_X
                   : (int64_t)b * (l->block / l->threads_per_out) + t / l->threads_per_out;
}
MAGNA_HD int64_t magna_launch_reduce_stride(const magna_launch_reduce *l) {
    return l->cols ? (int64_t)l->grid * MAGNA_LAUNCH_COLS_X : (int64_t)l->grid * (l->block / l->threads_per_out);
}
MAGNA_HD uint32_t magna_launch_reduce_lane(const magna_launch_reduce *l, uint32_t t) {
    return l->cols ? t / MAGNA_LAUNCH_COLS_X : t % l->threads_per_out;
}
MAGNA_HD int64_t magna_launch_reduce_r_begin(const magna_launch_reduce *l, uint32_t y) { return (int64_t)y * l->chunk; }
MAGNA_HD int64_t magna_launch_reduce_r_end(const magna_launch_reduce *l, uint32_t y) {
    const int64_t e = ((int64_t)y + 1) * l->chunk;
    return e < l->reds ? e : l->reds;
}

/* ---- embedding backward's counting sort (src/cuda/embedding.cu): its workspace in bytes, for n positions
 * and a table of V rows: a count, a start and a cursor per row, a bucket and a sorted slot per position;
 * plain C so the CPU op's infer can ask for it ---------------------------------------------------------- */
static inline size_t magna_embedding_workspace(int64_t n, int64_t V) {
    return (size_t)(3 * V + 2 * n + 1) * sizeof(int);
}

#endif
