/* gemm_panel.c — small products against a weight packed once: the recurrent ops' per-step h_{t-1} W_hh (T
 * times over the same W_hh) and attention's per-head products. C [m, n] (+)= A [m, k] op(W) [k, n], W packed
 * into panels of 32 columns, A packed per call, 8 x 32 blocks of C in 16 AVX-512 registers; in float32, or in
 * bf16 with float32 sums (vdpbf16ps, CPUs with avx512_bf16). Declared in src/graph/internal.h. */
#include "../graph/internal.h"
#include "simd_math.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

enum { SP_NR = 32, SP_MR = 8 };

bool magna_panel_available(bool bf16) {
    static int avx512 = -1; /* every thread computes the same value: a race is harmless */
    if (avx512 < 0) {
        __builtin_cpu_init();
        avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                 __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    }
    return avx512 && (!bf16 || magna_cpu_detect().avx512_bf16);
}

size_t magna_panel_b_floats(int64_t k, int64_t n) { return (size_t)((n + SP_NR - 1) / SP_NR) * SP_NR * (size_t)k; }
size_t magna_panel_a_floats(int64_t m, int64_t k) { return (size_t)((m + SP_MR - 1) / SP_MR) * SP_MR * (size_t)k; }

/* Each step multiplies B rows by W_hh (forward) or W_hh^T (backward), T times over the same weight.
 * OpenBLAS packs the whole [H, G*H] weight into its own layout on every call, a quarter of the layer's
 * time at H = 256; here the weight is packed once per forward or backward, into panels of 32 columns
 * (each panel k rows of 32 contiguous floats), and each step packs only its few rows of A (8 rows
 * interleaved per k). The kernel keeps an 8 x 32 block of C in 16 AVX-512 registers: per k, one
 * broadcast per row and two aligned loads of the panel. CPUs without AVX-512 take magna_sgemm (the recurrent
 * ops decide; MAGNA_RNN_STEP=sgemm forces that path, for tests). */
#define T512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))

/* dst = op(W) [k, n] in panels, where op(W)[p, j] = w[p * ldw + j], or w[j * ldw + p] when transposed. */
void magna_panel_pack_f32(int k, int n, const float *w, int ldw, bool transposed, float *dst, bool par) {
    const int panels = (n + SP_NR - 1) / SP_NR;
    PARALLEL_FOR(par && (int64_t)k * n >= 32768 && panels > 1, pn, panels, {
        float *d = dst + (size_t)pn * k * SP_NR;
        const int j0 = (int)pn * SP_NR, w_cols = n - j0 < SP_NR ? n - j0 : SP_NR;
        for (int p = 0; p < k; p++) {
            for (int jj = 0; jj < w_cols; jj++)
                d[(size_t)p * SP_NR + jj] = transposed ? w[(size_t)(j0 + jj) * ldw + p] : w[(size_t)p * ldw + j0 + jj];
            for (int jj = w_cols; jj < SP_NR; jj++) d[(size_t)p * SP_NR + jj] = 0.0f;
        }
    });
}

/* dst[blk][p][r] = a[(blk * 8 + r) * lda + p], zero past row m. */
static void pack_a(int m, int k, const float *a, int lda, float *dst) {
    for (int i0 = 0; i0 < m; i0 += SP_MR) {
        float *d = dst + (size_t)i0 * k;
        for (int r = 0; r < SP_MR; r++) {
            if (i0 + r < m) {
                const float *ar = a + (size_t)(i0 + r) * lda;
                for (int p = 0; p < k; p++) d[(size_t)p * SP_MR + r] = ar[p];
            } else {
                for (int p = 0; p < k; p++) d[(size_t)p * SP_MR + r] = 0.0f;
            }
        }
    }
}

/* C[rows, 32 masked] += A B over k, from packed A (8 per k) and a packed panel (32 per k). All 8 rows are
 * computed (packed A is zero past the last row) in 16 named accumulators, which GCC keeps in registers
 * (an array of them it kept in memory); only `rows` are loaded and stored. */
#define SP_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
/* The block kernels' 8 x 32 accumulators c<r>0, c<r>1: declared zero, loaded from C's `rows` rows (columns masked
 * by m0, m1), and stored back; shared by the float32 and bf16 kernels. */
#define SP_DECL(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
#define SP_LOAD(r)                                                                                                   \
    if (r < rows) {                                                                                                  \
        c##r##0 = _mm512_maskz_loadu_ps(m0, c + (size_t)r * ldc);                                                    \
        c##r##1 = _mm512_maskz_loadu_ps(m1, c + (size_t)r * ldc + 16);                                               \
    }
#define SP_STORE(r)                                                                                                  \
    if (r < rows) {                                                                                                  \
        _mm512_mask_storeu_ps(c + (size_t)r * ldc, m0, c##r##0);                                                     \
        _mm512_mask_storeu_ps(c + (size_t)r * ldc + 16, m1, c##r##1);                                                \
    }
T512 static void step_block(int rows, int k, const float *ap, const float *bp, float *c, int ldc, __mmask16 m0,
                            __mmask16 m1, bool accumulate) {
    SP_ROWS(SP_DECL)
    if (accumulate) {
        SP_ROWS(SP_LOAD)
    }
    for (int p = 0; p < k; p++) {
        const __m512 b0 = _mm512_load_ps(bp + (size_t)p * SP_NR), b1 = _mm512_load_ps(bp + (size_t)p * SP_NR + 16);
        const float *a = ap + (size_t)p * SP_MR;
#define SP_FMA(r)                                                                                                    \
    {                                                                                                                \
        const __m512 av = _mm512_set1_ps(a[r]);                                                                      \
        c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);                                                                  \
        c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1);                                                                  \
    }
        SP_ROWS(SP_FMA)
    }
    SP_ROWS(SP_STORE)
#undef SP_FMA
}

/* The columns of a panel's half (from 0 or 16) that exist when w columns are left. */
static inline __mmask16 panel_mask(int w, int from) {
    w -= from;
    return w >= 16 ? (__mmask16)0xFFFF : w > 0 ? (__mmask16)((1u << w) - 1) : 0;
}

/* C[m, columns j0..j1) (+)= A B, over whole panels (j0 a multiple of 32). */
T512 static void step_gemm_512(int m, int n, int k, const float *ap, const float *bp, float *c, int ldc, int j0,
                               int j1, bool accumulate) {
    for (; j0 < j1; j0 += SP_NR) {
        const __mmask16 m0 = panel_mask(n - j0, 0), m1 = panel_mask(n - j0, 16);
        const float *panel = bp + (size_t)j0 * k;
        for (int i0 = 0; i0 < m; i0 += SP_MR)
            step_block(m - i0 < SP_MR ? m - i0 : SP_MR, k, ap + (size_t)i0 * k, panel, c + (size_t)i0 * ldc + j0, ldc,
                       m0, m1, accumulate);
    }
}

/* Whether a product is worth the threads: more than one panel, enough work, and not already in a region. */
static bool split_panels(int m, int n, int k) {
    return (n + SP_NR - 1) / SP_NR > 1 && (double)m * n * k >= 65536.0 && omp_get_max_threads() > 1 &&
           !omp_in_parallel();
}

void magna_panel_split(int n, int nt, int t, int *j0, int *j1) {
    const int panels = (n + SP_NR - 1) / SP_NR, per = (panels + nt - 1) / nt;
    *j0 = t * per * SP_NR < n ? t * per * SP_NR : n;
    *j1 = (t + 1) * per * SP_NR < n ? (t + 1) * per * SP_NR : n;
}

/* This thread's columns [*j0, *j1) of n, in whole panels, inside a parallel region. */
static void thread_panels(int n, int *j0, int *j1) { magna_panel_split(n, omp_get_num_threads(), omp_get_thread_num(), j0, j1); }

void magna_panel_pack_a_f32(int m, int k, const float *a, int lda, float *ap) { pack_a(m, k, a, lda, ap); }

void magna_panel_run_f32(int m, int n, int k, const float *ap, const float *bp, bool accumulate, float *c, int ldc,
                         int j0, int j1) {
    step_gemm_512(m, n, k, ap, bp, c, ldc, j0, j1, accumulate);
}

/* ---- in bf16 (a bf16 graph on a CPU with avx512_bf16) ----------------------------------------------------- *
 * The same blocking with bf16 operands and float32 sums: vdpbf16ps takes pairs of k, so a panel holds, per
 * pair of rows of op(W), 32 columns of (even, odd) bf16 pairs (two vectors), and packed A a (even, odd) pair per
 * row; each instruction does two k at once, half the instructions of the float32 kernel. h_{t-1} and W_hh are
 * rounded to bf16, as cuDNN's half-precision LSTM and magna's CUDA bf16 mode do. */
#define T512BF16 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma,avx512bf16")))

/* Pairs of k for 16 lanes from floats: E (even k) and O (odd k) to words (E_l, O_l), both rounded to bf16. */
T512BF16 static inline __m512i pair_words(__m512 e, __m512 o) {
    const __m512i inter = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21,
                                           5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(inter, (__m512i)_mm512_cvtne2ps_pbh(o, e));
}

/* 16 floats (masked lanes read as 0) at element i of a float32 matrix, or of a bf16 one (h) widened exactly: what
 * the packers read, so the bf16 activations some ops hand over (q, k, v, dout to attention) pack as float32 does. */
T512BF16 static inline __m512 load_ps(const void *base, bool h, size_t i, __mmask16 m) {
    return h ? magna_load_bf16x16((const uint16_t *)base + i, m) : _mm512_maskz_loadu_ps(m, (const float *)base + i);
}

/* The 16 x 16 transpose of 32-bit words: r[i] word j becomes r[j] word i. Four rounds of 16 shuffles: pairs of
 * rows interleaved by words, then by pairs of words; u[4 g + c] then holds, in 128-bit lane L, rows 4g..4g+3 of
 * column 4L + c, which two rounds of lane shuffles put in order. */
T512BF16 static inline void transpose16x16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {
        u[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    for (int c = 0; c < 4; c++) {
        const __m512i lo01 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), hi01 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE);
        const __m512i lo23 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
        const __m512i hi23 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_i32x4(lo01, lo23, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(lo01, lo23, 0xDD);
        r[8 + c] = _mm512_shuffle_i32x4(hi01, hi23, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(hi01, hi23, 0xDD);
    }
}

/* The transposed panel (op(W)[p, j] = w[j * ldw + p], a row of w per column): each column's pairs are its row of w
 * converted to bf16 as it lies, so 16 rows are loaded and converted (32 floats, 16 pairs each) and transposed into
 * 16 pairs of 16 columns; rows past n and floats past k read as zeros. */
T512BF16 static void pack_panel_bf16_rows(int k, int n, const void *w, bool h, int ldw, uint16_t *d, int j0) {
    const int kp = (k + 1) / 2, cols = n - j0 < SP_NR ? n - j0 : SP_NR;
    for (int jb = 0; jb < SP_NR; jb += 16) {
        for (int qb = 0; qb < kp; qb += 16) {
            const int p = 2 * qb, left = k - p;
            const __mmask16 lo = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1);
            const __mmask16 hi = (__mmask16)(left >= 32 ? 0xffffu : left > 16 ? (1u << (left - 16)) - 1 : 0u);
            __m512i r[16];
            for (int i = 0; i < 16; i++) {
                if (jb + i < cols) {
                    const size_t row = (size_t)(j0 + jb + i) * ldw + p;
                    r[i] = (__m512i)_mm512_cvtne2ps_pbh(load_ps(w, h, row + 16, hi), load_ps(w, h, row, lo));
                } else {
                    r[i] = _mm512_setzero_si512();
                }
            }
            transpose16x16(r);
            for (int q = 0; q < 16 && qb + q < kp; q++)
                _mm512_storeu_si512((void *)(d + (size_t)(qb + q) * 2 * SP_NR + 2 * jb), r[q]);
        }
    }
}

/* One panel (columns j0.., up to 32) of magna_panel_pack_bf16, from float32 w or bf16 (h). */
T512BF16 static void pack_panel_bf16(int k, int n, const void *w, bool h, int ldw, bool transposed, uint16_t *d, int j0) {
    if (transposed) {
        pack_panel_bf16_rows(k, n, w, h, ldw, d, j0);
        return;
    }
    const int kp = (k + 1) / 2, cols = n - j0 < SP_NR ? n - j0 : SP_NR;
    for (int q = 0; q < kp; q++) {
        uint16_t *row = d + (size_t)q * 2 * SP_NR;
        const bool odd = 2 * q + 1 < k;
        for (int half = 0; half < 2; half++) { /* columns 16 half .. 16 half + 15 */
            const int c0 = 16 * half, live = cols - c0 < 0 ? 0 : cols - c0 > 16 ? 16 : cols - c0;
            const __mmask16 lanes = (__mmask16)((1u << live) - 1);
            __m512 e = _mm512_setzero_ps(), o = _mm512_setzero_ps();
            if (live) {
                e = load_ps(w, h, (size_t)(2 * q) * ldw + j0 + c0, lanes);
                if (odd) o = load_ps(w, h, (size_t)(2 * q + 1) * ldw + j0 + c0, lanes);
            }
            _mm512_storeu_si512((void *)(row + 2 * c0), pair_words(e, o));
        }
    }
}

/* dst = op(W) [k, n] as bf16 pair panels: panel pn, pair q, column jj at [(pn * kp + q) * 64 + 2 jj + (p & 1)]. */
/* Every panel of op(W), from float32 w or bf16 (h); across the threads when par and worth it. */
static void pack_bf16(int k, int n, const void *w, bool h, int ldw, bool transposed, uint16_t *dst, bool par) {
    const int panels = (n + SP_NR - 1) / SP_NR, kp = (k + 1) / 2;
    PARALLEL_FOR(par && (int64_t)k * n >= 32768 && panels > 1, pn, panels,
                 pack_panel_bf16(k, n, w, h, ldw, transposed, dst + (size_t)pn * kp * 2 * SP_NR, (int)pn * SP_NR););
}

void magna_panel_pack_bf16(int k, int n, const float *w, int ldw, bool transposed, uint16_t *dst, bool par) {
    pack_bf16(k, n, w, false, ldw, transposed, dst, par);
}

void magna_panel_pack_bf16_h(int k, int n, const uint16_t *w, int ldw, bool transposed, uint16_t *dst) {
    pack_bf16(k, n, w, true, ldw, transposed, dst, false);
}

/* Packed A holds the pair (alpha A[i][2q], alpha A[i][2q + 1]) of every row i as one 32-bit word, zero past row m
 * (up to a whole block of 8) and past k, in one of two layouts the kernel reads alike, block by block of 8 rows at
 * ap + i0 kp, word (r, q) of the block at r rs + q qs:
 *   A as given (not ta): row-major, rs = kp, qs = 1: each row is itself converted to bf16, which is all the pairs
 *     are, so packing is a load, a scale and a conversion per 32 elements;
 *   A transposed (ta): the 8 rows interleaved per pair, rs = 1, qs = 8: rows of A are columns there, so 8 rows of
 *     A for one k are contiguous, and two pairs of all 8 make one vector of 16 words. */
typedef struct a_layout {
    int rs, qs;
    int bs; /* words from one block of 8 rows to the next, per row: kp when packed, the row stride when read in place */
} a_layout;

static a_layout a_layout_of(bool ta, int k) {
    const int kp = (k + 1) / 2;
    return ta ? (a_layout){1, SP_MR, kp} : (a_layout){kp, 1, kp};
}

T512BF16 static void pack_a_bf16_rows(int m, int k, const void *a, bool h, int lda, float alpha, uint32_t *dst) {
    const int kp = (k + 1) / 2, rows = (m + SP_MR - 1) / SP_MR * SP_MR;
    const __m512 scale = _mm512_set1_ps(alpha);
    for (int i = 0; i < rows; i++) {
        uint32_t *d = dst + (size_t)i * kp;
        if (i >= m) {
            memset(d, 0, (size_t)kp * sizeof *d);
            continue;
        }
        const size_t ar = (size_t)i * lda;
        for (int p = 0; p < k; p += 32) { /* 32 floats -> 16 words; masked loads zero what lies past k */
            const int left = k - p;
            const __mmask16 lo = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            const __mmask16 hi = left >= 32 ? (__mmask16)0xFFFF : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
            const __m512 e = _mm512_mul_ps(load_ps(a, h, ar + p, lo), scale);
            const __m512 o = _mm512_mul_ps(load_ps(a, h, ar + p + 16, hi), scale);
            const int words = kp - p / 2 < 16 ? kp - p / 2 : 16;
            _mm512_mask_storeu_epi32(d + p / 2, (__mmask16)((1u << words) - 1), (__m512i)_mm512_cvtne2ps_pbh(o, e));
        }
    }
}

/* The transposed layout: A[i][p] = a[p * lda + i], 8 rows of A contiguous for each p. */
T512BF16 static void pack_a_bf16_interleaved(int m, int k, const void *a, bool h, int lda, float alpha, uint32_t *dst) {
    const int kp = (k + 1) / 2;
    const __m512 scale = _mm512_set1_ps(alpha);
    for (int i0 = 0; i0 < m; i0 += SP_MR) {
        uint32_t *d = dst + (size_t)i0 * kp;
        const int live = m - i0 < SP_MR ? m - i0 : SP_MR;
        const __mmask16 rows = (__mmask16)(((1u << live) - 1) | (((1u << live) - 1) << 8));
        for (int q = 0; q < kp; q += 2) {
            /* lanes 0..7: pair q of rows 0..7; lanes 8..15: pair q + 1 (when it exists) */
            const int p0 = 2 * q;
            __mmask16 e_m = rows, o_m = rows;
            if (q + 1 >= kp) e_m &= 0x00ff, o_m &= 0x00ff;
            if (p0 + 1 >= k) o_m &= 0xff00;               /* pair q has no odd element */
            if (q + 1 < kp && p0 + 3 >= k) o_m &= 0x00ff; /* pair q + 1 has none */
            const size_t b0 = (size_t)p0 * lda + i0;
            __m512 e = load_ps(a, h, b0, e_m & 0x00ff);
            __m512 o = load_ps(a, h, b0 + lda, o_m & 0x00ff);
            if (e_m & 0xff00) { /* rows p0 + 2, p0 + 3 into lanes 8..15 */
                e = _mm512_mask_expand_ps(e, e_m & 0xff00, load_ps(a, h, b0 + 2 * (size_t)lda, (e_m >> 8) & 0xff));
                if (o_m & 0xff00)
                    o = _mm512_mask_expand_ps(o, o_m & 0xff00, load_ps(a, h, b0 + 3 * (size_t)lda, (o_m >> 8) & 0xff));
            }
            const __m512i words = pair_words(_mm512_mul_ps(e, scale), _mm512_mul_ps(o, scale));
            /* word l of `words` is pair q (l < 8) or q + 1 (l >= 8) of row l % 8: exactly d[q * 8 ..] */
            if (q + 1 < kp)
                _mm512_storeu_si512((void *)(d + (size_t)q * SP_MR), words);
            else
                _mm256_storeu_si256((__m256i *)(d + (size_t)q * SP_MR), _mm512_castsi512_si256(words));
        }
    }
}

/* A from float32 a, or bf16 (h). */
static void pack_a_bf16(int m, int k, const void *a, bool h, int lda, bool ta, float alpha, uint32_t *dst) {
    if (ta)
        pack_a_bf16_interleaved(m, k, a, h, lda, alpha, dst);
    else
        pack_a_bf16_rows(m, k, a, h, lda, alpha, dst);
}

/* Where a bf16 product's C goes: float32 c (added to when accumulate), or c16, rounded to bf16 (assigning), with
 * colsum[j] += its column sums (of the float sums, before rounding) when colsum is not NULL. alpha scales the sums
 * as they are stored (1 with accumulate: the callers fold it into packed A then). */
typedef struct panel_out {
    float *c;
    uint16_t *c16;
    float *colsum;
    int ldc;
    float alpha;
    bool accumulate;
} panel_out;

/* The same destination from row i0, column j0 on. */
static panel_out out_at(panel_out o, int i0, int j0) {
    const size_t at = (size_t)i0 * (size_t)o.ldc + (size_t)j0;
    if (o.c) o.c += at;
    if (o.c16) o.c16 += at;
    if (o.colsum) o.colsum += j0;
    return o;
}

/* Rows past `rows` read row 0 (their sums are never stored): A read in place has nothing after its last row. */
T512BF16 static void step_block_bf16(int rows, int kp, const uint32_t *ap, a_layout al, const uint16_t *bp, panel_out o,
                                     __mmask16 m0, __mmask16 m1) {
    SP_ROWS(SP_DECL)
    float *c = o.c;
    const int ldc = o.ldc;
    if (o.accumulate) {
        SP_ROWS(SP_LOAD)
    }
#define SP_AROW(r) const uint32_t *a##r = ap + (size_t)(r < rows ? r : 0) * al.rs;
    SP_ROWS(SP_AROW)
#undef SP_AROW
    for (int q = 0; q < kp; q++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)(bp + (size_t)q * 2 * SP_NR));
        const __m512bh b1 = (__m512bh)_mm512_load_si512((const void *)(bp + (size_t)q * 2 * SP_NR + SP_NR));
        const size_t at = (size_t)q * al.qs;
#define SP_DOT(r)                                                                                                    \
    {                                                                                                                \
        const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a##r[at]);                                             \
        c##r##0 = _mm512_dpbf16_ps(c##r##0, av, b0);                                                                 \
        c##r##1 = _mm512_dpbf16_ps(c##r##1, av, b1);                                                                 \
    }
        SP_ROWS(SP_DOT)
    }
#undef SP_DOT
    if (o.alpha != 1.0f) {
        const __m512 s = _mm512_set1_ps(o.alpha);
#define SP_SCALE(r) c##r##0 = _mm512_mul_ps(c##r##0, s), c##r##1 = _mm512_mul_ps(c##r##1, s);
        SP_ROWS(SP_SCALE)
#undef SP_SCALE
    }
    if (!o.c16) {
        SP_ROWS(SP_STORE)
        return;
    }
    const __mmask32 m = (__mmask32)m0 | (__mmask32)m1 << 16;
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
#define SP_STORE16(r)                                                                                                \
    if (r < rows) {                                                                                                  \
        _mm512_mask_storeu_epi16(o.c16 + (size_t)r * ldc, m, (__m512i)_mm512_cvtne2ps_pbh(c##r##1, c##r##0));        \
        s0 = _mm512_add_ps(s0, c##r##0), s1 = _mm512_add_ps(s1, c##r##1);                                            \
    }
    SP_ROWS(SP_STORE16)
#undef SP_STORE16
    if (o.colsum) {
        _mm512_mask_storeu_ps(o.colsum, m0, _mm512_add_ps(_mm512_maskz_loadu_ps(m0, o.colsum), s0));
        _mm512_mask_storeu_ps(o.colsum + 16, m1, _mm512_add_ps(_mm512_maskz_loadu_ps(m1, o.colsum + 16), s1));
    }
}

/* bp's panels hold panel_kp pairs each (the k it was packed with, which may be more than this product's). */
T512BF16 static void step_gemm_bf16(int m, int n, int kp, const uint32_t *ap, a_layout al, const uint16_t *bp,
                                    int panel_kp, panel_out o, int j0, int j1) {
    for (; j0 < j1; j0 += SP_NR) {
        const __mmask16 m0 = panel_mask(n - j0, 0), m1 = panel_mask(n - j0, 16);
        const uint16_t *panel = bp + (size_t)j0 * panel_kp * 2;
        for (int i0 = 0; i0 < m; i0 += SP_MR)
            step_block_bf16(m - i0 < SP_MR ? m - i0 : SP_MR, kp, ap + (size_t)i0 * al.bs, al, panel, out_at(o, i0, j0),
                            m0, m1);
    }
}

void magna_panel_pack_a_bf16(int m, int k, const float *a, int lda, bool ta, float alpha, uint32_t *ap) {
    pack_a_bf16(m, k, a, false, lda, ta, alpha, ap);
}

void magna_panel_run_bf16(int m, int n, int k, const uint32_t *ap, bool ta, const uint16_t *bp, bool accumulate,
                          float *c, int ldc, int j0, int j1) {
    const panel_out o = {.c = c, .ldc = ldc, .alpha = 1.0f, .accumulate = accumulate};
    step_gemm_bf16(m, n, (k + 1) / 2, ap, a_layout_of(ta, k), bp, (k + 1) / 2, o, j0, j1);
}

/* All the columns of C, across the threads when outside a parallel region and worth it (each thread its own
 * panels: its own columns of colsum too). */
static void run_bf16(int m, int n, int k, const uint32_t *ap, a_layout al, const uint16_t *bp, int bp_k, panel_out o) {
    const int kp = (k + 1) / 2, panel_kp = (bp_k + 1) / 2;
    if (split_panels(m, n, k)) {
#pragma omp parallel
        {
            int j0, j1;
            thread_panels(n, &j0, &j1);
            if (j0 < j1) step_gemm_bf16(m, n, kp, ap, al, bp, panel_kp, o, j0, j1);
        }
    } else {
        step_gemm_bf16(m, n, kp, ap, al, bp, panel_kp, o, 0, n);
    }
}

static panel_out f32_out(float *c, int ldc, bool accumulate, float alpha) {
    return (panel_out){.c = c, .ldc = ldc, .alpha = alpha, .accumulate = accumulate};
}

/* a: float32, or bf16 (h); op(A) its transpose when ta. */
static void panel_gemm_bf16(int m, int n, int k, const void *a, bool h, int lda, bool ta, float alpha,
                            const uint16_t *bp, int bp_k, uint32_t *ap, panel_out o) {
    pack_a_bf16(m, k, a, h, lda, ta, alpha, ap);
    run_bf16(m, n, k, ap, a_layout_of(ta, k), bp, bp_k, o);
}

void magna_panel_gemm_bf16(int m, int n, int k, const float *a, int lda, bool ta, float alpha, const uint16_t *bp,
                           int bp_k, uint32_t *ap, bool accumulate, float *c, int ldc) {
    panel_gemm_bf16(m, n, k, a, false, lda, ta, alpha, bp, bp_k, ap, f32_out(c, ldc, accumulate, 1.0f));
}

void magna_panel_gemm_bf16_h(int m, int n, int k, const uint16_t *a, int lda, bool ta, float alpha, const uint16_t *bp,
                             int bp_k, uint32_t *ap, bool accumulate, float *c, int ldc) {
    panel_gemm_bf16(m, n, k, a, true, lda, ta, alpha, bp, bp_k, ap, f32_out(c, ldc, accumulate, 1.0f));
}

/* A's rows in bf16 are already what packed A holds, pair by pair: read in place, row i at a + i lda. */
bool magna_panel_rows_direct(int k, const uint16_t *a, int lda, float alpha, bool accumulate) {
    return k % 2 == 0 && lda % 2 == 0 && ((uintptr_t)a & 3u) == 0 && (alpha == 1.0f || !accumulate);
}

void magna_panel_gemm_bf16_any(int m, int n, int k, const float *a, const uint16_t *a16, int lda, bool ta, float alpha,
                               const uint16_t *bp, int bp_k, uint32_t *ap, bool accumulate, float *c, uint16_t *c16,
                               int ldc, float *colsum) {
    panel_out o = {.c = c16 ? NULL : c, .c16 = c16, .colsum = c16 ? colsum : NULL, .ldc = ldc, .alpha = 1.0f,
                   .accumulate = !c16 && accumulate};
    if (a16 && !ta && magna_panel_rows_direct(k, a16, lda, alpha, o.accumulate)) {
        const a_layout al = {lda / 2, 1, lda / 2};
        o.alpha = alpha;
        run_bf16(m, n, k, (const uint32_t *)a16, al, bp, bp_k, o);
    } else {
        panel_gemm_bf16(m, n, k, a16 ? (const void *)a16 : (const void *)a, a16 != NULL, lda, ta, alpha, bp, bp_k, ap, o);
    }
}
