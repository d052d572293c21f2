/* test_cuda_launch.c — the CUDA kernels' launch geometry (src/cuda/launch.h), walked on the CPU thread by
 * thread as the kernels walk it: for empty, tiny and odd sizes (0, 1, 31, 33, 1023, 4097, ...), and sizes
 * past one grid (grid-stride loops, more than 65535 batch x head slots), every element is visited exactly
 * once, every index stays in range, the launch respects CUDA's limits (block <= 1024, no empty grid but
 * for empty work), a row is handled by threads of one block (one warp for short rows), vector accesses stay
 * aligned, and attention visits exactly the keys a causal mask leaves, in no more key tiles than needed,
 * for every head-dim path (registers of 4 to 32 floats, or the generic one), forward and dK/dV alike. */
#include "check.h"
#include "cuda/launch.h"
#include "magna.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int64_t SIZES[] = {0, 1, 2, 31, 32, 33, 255, 256, 257, 1023, 1024, 1025, 4097, 100003};
enum { N_SIZES = sizeof SIZES / sizeof SIZES[0] };

static void elementwise(int64_t n, uint32_t vec) {
    const magna_launch_1d l = magna_launch_elementwise(n, vec);
    CHECK(l.block >= 1 && l.block <= 1024 && l.grid <= MAGNA_LAUNCH_MAX_GRID && (l.grid == 0) == (n == 0),
          "elementwise n=%lld: grid %u block %u", (long long)n, l.grid, l.block);
    unsigned char *seen = calloc((size_t)n + 1, 1);
    int64_t out_of_range = 0, twice = 0, misaligned = 0;
    const int64_t stride = magna_launch_1d_stride(&l);
    CHECK(l.grid == 0 || stride > 0, "elementwise n=%lld: stride %lld would never end", (long long)n, (long long)stride);
    if (l.grid && stride <= 0) return free(seen);
    misaligned += stride % l.vec != 0;
    for (uint32_t b = 0; b < l.grid; b++)
        for (uint32_t t = 0; t < l.block; t++) {
            const int64_t first = magna_launch_1d_first(&l, b, t);
            misaligned += first % l.vec != 0;
            for (int64_t i = first; i < l.n; i += stride)
                for (uint32_t v = 0; v < l.vec && i + v < l.n; v++) {
                    if (i + v < 0 || i + v >= n) out_of_range++;
                    else if (seen[i + v]++) twice++;
                }
        }
    int64_t missed = 0;
    for (int64_t i = 0; i < n; i++) missed += !seen[i];
    CHECK(!out_of_range && !twice && !missed && !misaligned,
          "elementwise n=%lld vec=%u: %lld out of range, %lld twice, %lld missed, %lld misaligned", (long long)n, vec,
          (long long)out_of_range, (long long)twice, (long long)missed, (long long)misaligned);
    free(seen);
}

static void rowwise(int64_t rows, int64_t cols) {
    const magna_launch_rows l = magna_launch_rowwise(rows, cols);
    const int empty = rows == 0 || cols == 0;
    CHECK(l.block >= 1 && l.block <= 1024 && l.block % l.threads_per_row == 0 &&
              l.rows_per_block * l.threads_per_row == l.block && (l.grid == 0) == empty &&
              l.grid <= MAGNA_LAUNCH_MAX_GRID && (l.threads_per_row == MAGNA_LAUNCH_WARP || l.threads_per_row == l.block),
          "rows %lldx%lld: grid %u block %u threads_per_row %u", (long long)rows, (long long)cols, l.grid, l.block,
          l.threads_per_row);
    const int64_t n = rows * cols;
    unsigned char *seen = calloc((size_t)n + 1, 1);
    int64_t *owner = malloc(((size_t)rows + 1) * sizeof *owner); /* the (block, group) that took each row */
    for (int64_t r = 0; r < rows; r++) owner[r] = -1;
    int64_t out_of_range = 0, twice = 0, split = 0;
    const int64_t stride = magna_launch_rows_stride(&l);
    CHECK(l.grid == 0 || stride > 0, "rows %lld: stride %lld would never end", (long long)rows, (long long)stride);
    if (l.grid && stride <= 0) return free(seen), free(owner);
    for (uint32_t b = 0; b < l.grid; b++)
        for (uint32_t t = 0; t < l.block; t++) {
            const int64_t group = (int64_t)b * l.block + t / l.threads_per_row;
            for (int64_t r = magna_launch_rows_first(&l, b, t); r < l.rows; r += stride) {
                if (owner[r] < 0) owner[r] = group;
                split += owner[r] != group;
                for (int64_t c = magna_launch_rows_lane(&l, t); c < l.cols; c += l.threads_per_row) {
                    if (r < 0 || c < 0 || r >= rows || c >= cols) out_of_range++;
                    else if (seen[r * cols + c]++) twice++;
                }
            }
        }
    int64_t missed = 0;
    for (int64_t i = 0; i < n; i++) missed += !seen[i];
    CHECK(!out_of_range && !twice && !missed && !split,
          "rows %lldx%lld: %lld out of range, %lld twice, %lld missed, %lld rows split across groups", (long long)rows,
          (long long)cols, (long long)out_of_range, (long long)twice, (long long)missed, (long long)split);
    free(seen), free(owner);
}

/* tc: the tensor-core path's geometry (bf16, hd 16, 32, .., 128), whose shared memory is opted into (227 KiB) */
static void attention(int64_t bh, int64_t tq, int64_t tk, int64_t hd, int causal, int tc) {
    const magna_launch_attention l =
        tc ? magna_launch_attn_tc(bh, tq, tk, hd, causal) : magna_launch_attn(bh, tq, tk, hd, causal);
    const int empty = bh == 0 || tq == 0 || hd == 0;
    const uint32_t parts = l.parts;
    int shared_ok = magna_attn_shared_bytes(&l) <= 48 * 1024;
    for (int k = 0; tc && k < 3; k++)
        shared_ok &= magna_attn_tc_shared_bytes(hd, k) <= 227 * 1024 && magna_attn_tc_shared_bytes(hd, k) % 32 == 0;
    CHECK(l.block <= 1024 && l.block == l.tile_q * parts && parts <= 32 && 32 % parts == 0 &&
              (l.grid_x == 0) == empty && (l.grid_y == 0) == empty && l.grid_y <= MAGNA_LAUNCH_MAX_GRID_Y &&
              (tc ? l.dpt == 0 && l.block == MAGNA_ATTN_TC_BLOCK
                  : l.dpt == 0 ? hd > MAGNA_ATTN_MAX_FAST_HD : (int64_t)l.dpt * parts >= hd) &&
              shared_ok,
          "attention bh=%lld tq=%lld tk=%lld hd=%lld: grid %u x %u block %u parts %u dpt %u", (long long)bh,
          (long long)tq, (long long)tk, (long long)hd, l.grid_x, l.grid_y, l.block, parts, l.dpt);
    /* (slot, query) pairs: each must be taken by `parts` threads, one per part of the head dim */
    unsigned char *rows = calloc((size_t)(bh * tq) + 1, 1);
    /* keys per query, counted for the first slot only (every slot runs the same loop) */
    unsigned char *keys = calloc((size_t)(tq * tk) + 1, 1), *pairs = calloc((size_t)(tq * tk) + 1, 1);
    int64_t out_of_range = 0, twice = 0, extra_tiles = 0;
    for (uint32_t x = 0; x < l.grid_x; x++) {
        const int64_t tiles = magna_attn_k_tiles(&l, x), q0 = magna_attn_q_begin(&l, x), q1 = magna_attn_q_end(&l, x);
        if (q0 >= q1 || q0 < 0 || q1 > tq) out_of_range++;
        /* no wasted tile: the last one holds a key some query of the block sees */
        if (tiles > 0 && magna_attn_keys_end(&l, q1 - 1) <= (tiles - 1) * (int64_t)l.tile_k) extra_tiles++;
        for (uint32_t y = 0; y < l.grid_y; y++)
            for (int64_t s = y; s < l.bh; s += magna_attn_bh_stride(&l))
                for (uint32_t t = 0; t < l.block; t++) {
                    const int64_t q = magna_attn_query(&l, x, t);
                    if (q >= q1) continue; /* the last tile's idle threads */
                    if (q < q0 || q >= tq) {
                        out_of_range++;
                        continue;
                    }
                    if (++rows[s * tq + q] > parts) twice++;
                    if (s != 0 || magna_attn_part(&l, t) != 0) continue;
                    for (int64_t j = 0; j < tiles; j++)
                        for (int64_t k = j * l.tile_k; k < (j + 1) * l.tile_k && k < magna_attn_keys_end(&l, q); k++) {
                            if (k < 0 || k >= tk) out_of_range++;
                            else if (keys[q * tk + k]++) twice++;
                        }
                }
    }
    /* dK/dV: every key owned by one block; its loop over queries [kv_q_begin, tq) meets every visible pair
     * once, and starts at a query that sees the block's first key */
    for (uint32_t x = 0; x < l.kv_grid_x; x++) {
        const int64_t k0 = magna_attn_k_begin(&l, x), k1 = magna_attn_k_end(&l, x), qb = magna_attn_kv_q_begin(&l, x);
        if (k0 >= k1 || k0 < 0 || k1 > tk || qb < 0 || qb > tq) out_of_range++;
        if (qb < tq && magna_attn_keys_end(&l, qb) <= k0) extra_tiles++;
        if (qb > 0 && magna_attn_keys_end(&l, qb - 1) > k0) out_of_range++; /* a query before qb sees k0 */
        for (uint32_t t = 0; t < l.block; t += parts) {
            const int64_t k = magna_attn_query(&l, x, t); /* the same row-of-thread rule, over keys */
            if (k >= k1) continue;
            for (int64_t q = qb; q < tq; q++)
                if (k < magna_attn_keys_end(&l, q) && pairs[q * tk + k]++) twice++;
        }
    }
    int64_t missed = 0, wrong_keys = 0;
    for (int64_t i = 0; i < (empty ? 0 : bh * tq); i++) missed += rows[i] != parts;
    for (int64_t q = 0; q < (empty ? 0 : tq); q++)
        for (int64_t k = 0; k < tk; k++) {
            const int visible = !causal || k <= q + (tk - tq);
            wrong_keys += keys[q * tk + k] != visible;
            wrong_keys += pairs[q * tk + k] != visible;
        }
    CHECK(!out_of_range && !twice && !missed && !wrong_keys && !extra_tiles,
          "attention bh=%lld tq=%lld tk=%lld hd=%lld causal=%d: %lld out of range, %lld twice, %lld rows missed, "
          "%lld keys wrong, %lld extra tiles",
          (long long)bh, (long long)tq, (long long)tk, (long long)hd, causal, (long long)out_of_range,
          (long long)twice, (long long)missed, (long long)wrong_keys, (long long)extra_tiles);
    free(rows), free(keys), free(pairs);
}

/* GEMM tiles: every (batch, row, col) of C written by exactly one thread, nothing out of range; each step's
 * staging covers the TILE x TILE_K slab of an operand exactly once, for either contiguous dim. */
static void gemm_tiles(int64_t m, int64_t n, int64_t batch) {
    const magna_launch_gemm l = magna_launch_gemm_tiles(m, n, batch);
    const int empty = m == 0 || n == 0 || batch == 0;
    CHECK(l.block == MAGNA_GEMM_THREADS && l.block <= 1024 && (l.grid_x == 0) == empty && (l.grid_y == 0) == empty &&
              (l.grid_z == 0) == empty && l.grid_y <= MAGNA_LAUNCH_MAX_GRID_Y && l.grid_z <= MAGNA_LAUNCH_MAX_GRID_Y,
          "gemm %lldx%lld x%lld: grid %u x %u x %u block %u", (long long)m, (long long)n, (long long)batch, l.grid_x,
          l.grid_y, l.grid_z, l.block);
    const int64_t total = m * n * batch;
    unsigned char *seen = calloc((size_t)total + 1, 1);
    int64_t out_of_range = 0, twice = 0;
    for (uint32_t z = 0; z < l.grid_z; z++)
        for (int64_t bz = z; bz < l.batch; bz += l.grid_z)
            for (uint32_t x = 0; x < l.grid_x; x++)
                for (uint32_t y = 0; y < l.grid_y; y++)
                    for (int64_t ty = y; ty < magna_gemm_col_tiles(&l); ty += l.grid_y)
                        for (uint32_t t = 0; t < l.block; t++)
                            for (uint32_t r = 0; r < MAGNA_GEMM_MICRO; r++) {
                                const int64_t i = magna_gemm_row(x, t, r);
                                if (i >= l.m) continue; /* the edge tile's idle rows */
                                for (uint32_t c = 0; c < MAGNA_GEMM_MICRO; c++) {
                                    const int64_t j = magna_gemm_col(ty, t, c);
                                    if (j >= l.n) continue;
                                    if (i < 0 || j < 0 || i >= m || j >= n || i < (int64_t)x * MAGNA_GEMM_TILE_M ||
                                        j < ty * MAGNA_GEMM_TILE_N)
                                        out_of_range++;
                                    else if (seen[(bz * m + i) * n + j]++)
                                        twice++;
                                }
                            }
    int64_t missed = 0;
    for (int64_t i = 0; i < total; i++) missed += !seen[i];
    CHECK(!out_of_range && !twice && !missed, "gemm %lldx%lld x%lld: %lld out of range, %lld twice, %lld missed",
          (long long)m, (long long)n, (long long)batch, (long long)out_of_range, (long long)twice, (long long)missed);
    free(seen);
}

static void gemm_staging(void) {
    for (int contiguous = 0; contiguous < 2; contiguous++) {
        unsigned char seen[MAGNA_GEMM_TILE_M][MAGNA_GEMM_TILE_K] = {{0}};
        int bad = 0, coalesced = 1;
        for (uint32_t t = 0; t < MAGNA_GEMM_THREADS; t++)
            for (uint32_t e = 0; e < MAGNA_GEMM_LOADS; e++) {
                uint32_t o, kk;
                magna_gemm_stage(t, e, contiguous, &o, &kk);
                if (o >= MAGNA_GEMM_TILE_M || kk >= MAGNA_GEMM_TILE_K) bad++;
                else seen[o][kk]++;
                /* neighbouring threads of a warp read neighbouring elements along the contiguous dim */
                if (t % 32 && t % (contiguous ? MAGNA_GEMM_TILE_K : MAGNA_GEMM_TILE_M)) {
                    uint32_t po, pk;
                    magna_gemm_stage(t - 1, e, contiguous, &po, &pk);
                    coalesced &= contiguous ? (po == o && pk + 1 == kk) : (pk == kk && po + 1 == o);
                }
            }
        for (int o = 0; o < MAGNA_GEMM_TILE_M; o++)
            for (int k = 0; k < MAGNA_GEMM_TILE_K; k++) bad += seen[o][k] != 1;
        CHECK(!bad && coalesced, "gemm staging (k contiguous %d): %d entries not staged exactly once, coalesced %d",
              contiguous, bad, coalesced);
    }
}

/* column sums: every (row, col) summed by exactly one (block, warp, lane), slices in order and disjoint */
static void colsums(int64_t rows, int64_t cols, int64_t max_slices) {
    const magna_launch_colsum l = magna_launch_colsums(rows, cols, max_slices);
    const int empty = rows == 0 || cols == 0;
    CHECK((l.grid_x == 0) == empty && (l.grid_y == 0) == empty && l.grid_y <= MAGNA_LAUNCH_MAX_GRID_Y &&
              (empty || (l.grid_y >= 1 && l.grid_y <= (max_slices > 0 ? max_slices : 1))) && l.block <= 1024,
          "colsums %lldx%lld (max %lld slices): grid %u x %u", (long long)rows, (long long)cols, (long long)max_slices,
          l.grid_x, l.grid_y);
    unsigned char *seen = calloc((size_t)(rows * cols) + 1, 1);
    int64_t out_of_range = 0, twice = 0;
    for (uint32_t y = 0; y < l.grid_y; y++) {
        if (magna_colsum_row_begin(&l, y) > magna_colsum_row_end(&l, y) ||
            (y && magna_colsum_row_begin(&l, y) != magna_colsum_row_end(&l, y - 1)))
            out_of_range++;
        for (uint32_t x = 0; x < l.grid_x; x++)
            for (uint32_t t = 0; t < l.block; t++) {
                const int64_t col = magna_colsum_col(x, t);
                if (col >= l.cols) continue;
                for (int64_t r = magna_colsum_row_begin(&l, y) + t / MAGNA_LAUNCH_WARP; r < magna_colsum_row_end(&l, y);
                     r += MAGNA_COLSUM_WARPS) {
                    if (r < 0 || r >= rows || col < 0) out_of_range++;
                    else if (seen[r * cols + col]++) twice++;
                }
            }
    }
    int64_t missed = 0;
    for (int64_t i = 0; i < rows * cols; i++) missed += !seen[i];
    CHECK(!out_of_range && !twice && !missed, "colsums %lldx%lld: %lld out of range, %lld twice, %lld missed",
          (long long)rows, (long long)cols, (long long)out_of_range, (long long)twice, (long long)missed);
    free(seen);
}

/* ---- strided index spaces ------------------------------------------------------------------------------ */

/* a random shape of nd dims of sizes 1..4 (from a fixed seed) */
static void random_shape(uint64_t seed, int nd, int64_t *shape) {
    for (int d = 0; d < nd; d++) shape[d] = 1 + (int64_t)(magna_rand_u64(seed, 1, (uint64_t)d) % 4);
}

/* offsets of element i by its digits, most significant first: the plain definition */
static void reference_offsets(const magna_index *ix, int64_t i, int nt, int64_t *off) {
    int64_t below = ix->n;
    for (int t = 0; t < nt; t++) off[t] = 0;
    for (int d = 0; d < ix->nd; d++) {
        below /= ix->shape[d];
        const int64_t digit = i / below;
        i -= digit * below;
        for (int t = 0; t < nt; t++) off[t] += digit * ix->stride[t][d];
    }
}

/* past 2^32 elements the offsets take the 64-bit division path: sampled elements against the definition */
static void index_space_64(void) {
    magna_index ix = magna_index_of(3, (int64_t[]){3, 5, 1ll << 30});
    magna_index_contiguous(&ix, 0);
    ix.stride[1][0] = 7, ix.stride[1][1] = 0, ix.stride[1][2] = 3;
    int64_t wrong = 0;
    for (int64_t k = 0; k < 1000; k++) {
        const int64_t i = (int64_t)(magna_rand_u64(5, 6, (uint64_t)k) % (uint64_t)ix.n);
        int64_t got[2], want[2];
        magna_index_offsets(&ix, i, 2, got), reference_offsets(&ix, i, 2, want);
        wrong += got[0] != want[0] || got[1] != want[1] || got[0] != i;
    }
    CHECK(ix.n > (int64_t)UINT32_MAX && wrong == 0, "index space of %lld elements: %lld offsets wrong", (long long)ix.n,
          (long long)wrong);
}

/* A binary op's space over random shapes: operand a (a suffix of the dims, some of them 1) and b (all dims,
 * some 1). Simplifying keeps every element's offsets; splitting it by the dims an operand is broadcast over
 * gives kept x reduced pairs that cover the output exactly once, the kept index walking the operand's own
 * elements in order (its gradient's layout), as binary backward and the reductions rely on. */
static void index_spaces(uint64_t seed) {
    const int nd = 1 + (int)(magna_rand_u64(seed, 2, 0) % 5), and_ = 1 + (int)(magna_rand_u64(seed, 2, 1) % nd);
    int64_t shape[MAGNA_INDEX_DIMS], sa[MAGNA_INDEX_DIMS], sb[MAGNA_INDEX_DIMS];
    random_shape(seed, nd, shape);
    for (int d = 0; d < nd; d++) {
        sb[d] = magna_rand_u64(seed, 3, (uint64_t)d) % 3 == 0 ? 1 : shape[d];
        if (d >= nd - and_) sa[d - (nd - and_)] = magna_rand_u64(seed, 4, (uint64_t)d) % 3 == 0 ? 1 : shape[d];
    }
    magna_index full = magna_index_of(nd, shape);
    magna_index_contiguous(&full, 0);
    magna_index_broadcast(&full, 1, and_, sa);
    magna_index_broadcast(&full, 2, nd, sb);
    magna_index simple = full;
    magna_index_simplify(&simple, 3);
    int64_t changed = 0;
    for (int64_t i = 0; i < full.n; i++) {
        int64_t o1[3], o2[3];
        int64_t ref[3];
        magna_index_offsets(&full, i, 3, o1), magna_index_offsets(&simple, i, 3, o2), reference_offsets(&full, i, 3, ref);
        changed += o1[0] != o2[0] || o1[1] != o2[1] || o1[2] != o2[2] || o1[0] != i;
        changed += o1[0] != ref[0] || o1[1] != ref[1] || o1[2] != ref[2];
    }
    CHECK(!changed && simple.n == full.n && simple.nd <= full.nd, "index seed %llu: simplify changed %lld offsets",
          (unsigned long long)seed, (long long)changed);
    for (int which = 0; which < 2; which++) {
        unsigned mask = 0;
        int64_t xn = 1;
        for (int d = 0; d < nd; d++) {
            if (full.stride[1 + which][d] == 0 && shape[d] != 1) mask |= 1u << d;
            else xn *= shape[d];
        }
        magna_index kept, red;
        magna_index_split(&full, mask, 3, &kept, &red);
        unsigned char *seen = calloc((size_t)full.n, 1);
        int64_t bad = 0, twice = 0, missed = 0, order = 0;
        for (int64_t o = 0; o < kept.n; o++) {
            int64_t base[3];
            magna_index_offsets(&kept, o, 3, base);
            order += base[1 + which] != o; /* the operand's own element o */
            for (int64_t r = 0; r < red.n; r++) {
                int64_t off[3], want[3];
                magna_index_offsets(&red, r, 3, off);
                for (int t = 0; t < 3; t++) off[t] += base[t];
                if (off[0] < 0 || off[0] >= full.n) {
                    bad++;
                    continue;
                }
                magna_index_offsets(&full, off[0], 3, want);
                bad += want[1] != off[1] || want[2] != off[2];
                twice += seen[off[0]]++ != 0;
            }
        }
        for (int64_t i = 0; i < full.n; i++) missed += !seen[i];
        CHECK(kept.n == xn && !bad && !twice && !missed && !order,
              "index seed %llu operand %d: kept %lld of %lld, %lld wrong, %lld twice, %lld missed, %lld out of order",
              (unsigned long long)seed, which, (long long)kept.n, (long long)xn, (long long)bad, (long long)twice,
              (long long)missed, (long long)order);
        free(seen);
    }
}

/* The reduction shapes walked thread by thread as reduce.cu's kernels walk them: every output taken by one
 * group of threads (a warp, a block, or a cols block's column, in every chunk of a split), every (output, r)
 * pair by exactly one thread; a split only in the cols shape, into chunks of at least MIN_CHUNK, with the
 * partials' scratch magna_reduce_split_workspace says. */
static void reduction(int64_t outs, int64_t reds, int inner, int can_split) {
    const magna_launch_reduce l = magna_launch_reduction(outs, reds, inner, can_split);
    const int64_t n = outs * reds;
    CHECK(l.block <= 1024 && (l.grid == 0) == (outs == 0) && l.grid <= MAGNA_LAUNCH_MAX_GRID &&
              (l.cols ? l.block == MAGNA_LAUNCH_COLS_X * MAGNA_LAUNCH_COLS_Y
                      : l.block % l.threads_per_out == 0 && l.threads_per_out % MAGNA_LAUNCH_WARP == 0) &&
              l.splits >= 1 && l.splits <= MAGNA_LAUNCH_MAX_SPLITS && (l.splits == 1 || (l.cols && can_split)) &&
              (l.splits == 1 || (l.chunk >= MAGNA_LAUNCH_MIN_CHUNK &&
                                 magna_reduce_split_workspace(outs, reds) == (size_t)l.splits * outs * sizeof(float))),
          "reduce %lld x %lld: grid %u x %u block %u threads %u chunk %lld", (long long)outs, (long long)reds, l.grid,
          l.splits, l.block, l.threads_per_out, (long long)l.chunk);
    unsigned char *seen = calloc((size_t)n + 1, 1);
    int64_t *owner = malloc(((size_t)outs + 1) * sizeof *owner);
    for (int64_t o = 0; o < outs; o++) owner[o] = -1;
    int64_t out_of_range = 0, twice = 0, split = 0;
    const int64_t stride = magna_launch_reduce_stride(&l);
    for (uint32_t y = 0; y < l.splits; y++)
        for (uint32_t b = 0; b < l.grid; b++)
            for (uint32_t t = 0; t < l.block; t++) {
                /* the group that merges an output's r (within one chunk: the chunks merge afterwards) */
                const int64_t group = l.cols ? (int64_t)b * MAGNA_LAUNCH_COLS_X + t % MAGNA_LAUNCH_COLS_X
                                             : (int64_t)b * l.block + t / l.threads_per_out;
                for (int64_t o = magna_launch_reduce_first(&l, b, t); o < l.outs; o += stride) {
                    if (owner[o] < 0) owner[o] = group;
                    split += owner[o] != group;
                    const int64_t r_end = l.cols ? magna_launch_reduce_r_end(&l, y) : l.reds;
                    for (int64_t r = (l.cols ? magna_launch_reduce_r_begin(&l, y) : 0) + magna_launch_reduce_lane(&l, t);
                         r < r_end; r += l.threads_per_out) {
                        if (o < 0 || r < 0 || o >= outs || r >= reds) out_of_range++;
                        else if (seen[o * reds + r]++) twice++;
                    }
                }
            }
    int64_t missed = 0;
    for (int64_t i = 0; i < n; i++) missed += !seen[i];
    CHECK(!out_of_range && !twice && !missed && !split,
          "reduce %lld x %lld inner %d: %lld out of range, %lld twice, %lld missed, %lld split", (long long)outs,
          (long long)reds, inner, (long long)out_of_range, (long long)twice, (long long)missed, (long long)split);
    free(seen), free(owner);
}

int main(void) {
    for (int i = 0; i < N_SIZES; i++) {
        elementwise(SIZES[i], 1);
        elementwise(SIZES[i], 4);
    }
    /* past one grid: the grid-stride loop wraps (132 x 16 blocks of 256 x 4) */
    elementwise((int64_t)MAGNA_LAUNCH_MAX_GRID * MAGNA_LAUNCH_BLOCK * 4 * 2 + 5, 4);
    static const int64_t COLS[] = {0, 1, 31, 33, 1023, 1024, 1025, 4097, 8192, 50304};
    for (int i = 0; i < N_SIZES - 1; i++)
        for (int j = 0; j < (int)(sizeof COLS / sizeof COLS[0]); j++)
            if (SIZES[i] * COLS[j] <= 3000000) rowwise(SIZES[i], COLS[j]);
    rowwise((int64_t)MAGNA_LAUNCH_MAX_GRID * 8 + 7, 3); /* more rows than one grid takes */
    static const int64_t T[] = {0, 1, 31, 33, 64, 65, 127, 1023};
    static const int64_t HD[] = {1, 4, 17, 64, 128, 129, 300}; /* every register size, and the generic path */
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < 8; j++) {
                attention(i % 3 + (i == 0 ? 0 : 1), T[i], T[j], HD[(i + j) % 7], c, 0);
                attention(i % 3 + (i == 0 ? 0 : 1), T[i], T[j], 16 * (1 + (i + j) % 8), c, 1);
            }
    attention(65537, 3, 5, 64, 1, 0); /* more batch x head slots than gridDim.y takes */
    attention(65537, 3, 5, 64, 1, 1);
    attention(2, 70, 40, 0, 1, 0); /* an empty head dimension launches nothing */
    static const int64_t MN[] = {0, 1, 2, 15, 16, 17, 63, 64, 65, 129};
    for (int i = 0; i < 10; i++)
        for (int j = 0; j < 10; j++) gemm_tiles(MN[i], MN[j], 1 + (i + j) % 3);
    gemm_tiles(3, 5, 0);
    gemm_tiles(2, (int64_t)MAGNA_LAUNCH_MAX_GRID_Y * MAGNA_GEMM_TILE_N + 65, 1); /* more column tiles than grid y */
    gemm_tiles(1, 3, MAGNA_LAUNCH_MAX_GRID_Y + 2);                               /* more batches than grid z */
    gemm_staging();
    for (int i = 0; i < N_SIZES - 1; i++)
        for (int j = 0; j < 6; j++) colsums(SIZES[i], COLS[j], j % 2 ? 1 : 1000);
    colsums(3000, 5, 7); /* capped slices */
    printf("launch geometry: elementwise, rows, attention, GEMM tiles and column sums checked\n");
    for (uint64_t seed = 0; seed < 300; seed++) index_spaces(seed);
    index_space_64();
    static const int64_t R[] = {0, 1, 7, 31, 33, 1024, 1025, 5000};
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++)
            for (int inner = 0; inner < 2; inner++)
                if (SIZES[i] * R[j] <= 3000000) reduction(SIZES[i], R[j], inner, 1), reduction(SIZES[i], R[j], inner, 0);
    reduction(100003, 3, 1, 1), reduction(100003, 3, 0, 1); /* past one grid */
    reduction(3, 300001, 1, 1);                             /* a block per output */
    reduction(768, 4097, 0, 1), reduction(33, 70001, 0, 1); /* a bias's gradient: split */
    CHECK(magna_launch_reduction(768, 65536, 0, 1).splits > 1 && magna_launch_reduction(768, 65536, 0, 0).splits == 1,
          "a bias of 768 over 65536 rows splits its reduction where it may");
    printf("launch geometry: elementwise, rows, attention tiles, index spaces and reductions checked\n");
    return check_finish("test_cuda_launch");
}
