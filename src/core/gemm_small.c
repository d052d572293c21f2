/* gemm_small.c — single-threaded SGEMM for the small products magna_sgemm keeps away from OpenBLAS.
 *
 * Why our own: for products of a few hundred thousand flops OpenBLAS's call overhead rivals the
 * arithmetic, and 0.3.21's SkylakeX small-matrix kernel mallocs on every call, while a training step must
 * not allocate. Attention multiplies 64-row blocks of heads read out of [B, T, C] (lda = C, every
 * transpose combination), small MLPs multiply [32, 13] @ [13, 64] and the like.
 *
 * The scheme is the usual register-blocked one, sized so nothing needs the heap:
 *   for each panel of NR columns of C (32 on AVX-512, 16 on AVX2):
 *     for each chunk of at most KC values of k:
 *       pack op(B)[chunk, panel] into a stack buffer, row p at buf + p * NR (zero past the last column),
 *       for each block of MR = 6 rows of C: a micro-kernel keeps the 6 x NR block of C in 12 vector
 *       registers, and per k broadcasts one value of op(A) per row and loads two vectors of B.
 * Packing makes the micro-kernel's B reads contiguous and aligned whatever tb and ldb are (B^T is
 * transposed 8 x 8 at a time; a plain B is copied, cheap next to the row blocks that reuse it, and then
 * sits in kc contiguous rows rather than kc rows ldb apart, which for attention's v, ldb = C = 1 KiB,
 * would share a few L1 sets). op(A) is read in place: with ta the 6 values of one k are adjacent,
 * without it they are 6 rows advancing together.
 * Column tails use masks (AVX-512 mask registers, AVX2 maskload/maskstore), row tails a kernel with
 * fewer rows.
 *
 * The path (AVX-512, AVX2+FMA, or portable C) is chosen once with __builtin_cpu_supports; the build
 * targets x86-64-v2, so the SIMD paths come from target attributes. No OpenMP (callers run this inside
 * their own parallel regions) and no allocation: the stack holds at most KC * 32 floats (32 KiB). Each
 * element of C sums its k products in a fixed order per path, so results repeat bit for bit. */
#include "../graph/internal.h"

#include <immintrin.h>
#include <stdatomic.h>
#include <string.h>

/* k chunk: a packed panel is KC x NR floats, 32 KiB on AVX-512. Attention's head width (64) and most
 * small products fit in one chunk, so C is read and written once. */
enum { KC = 256, MR = 6 };

#define T512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))
#define T256 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* Numbered as magna_vexp_path's: lower is wider. */
enum { PATH_AVX512 = 0, PATH_AVX2 = 1, PATH_C = 2 };

/* C[m, n] = beta C, as the math says for k = 0 (beta = 0 writes zeros over whatever C held, NaN too). */
static void scale_c(int m, int n, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++) {
        float *ci = c + (size_t)i * ldc;
        if (beta == 0)
            memset(ci, 0, (size_t)n * sizeof *ci);
        else if (beta != 1)
            for (int j = 0; j < n; j++) ci[j] *= beta;
    }
}

/* ---- portable C --------------------------------------------------------------------------------- */

/* The fallback for CPUs without AVX2+FMA: rows of C accumulate alpha a[i,p] b[p,:] (contiguous, and the
 * compiler vectorises it for SSE); with b transposed each element is a dot product. */
static void sgemm_small_c(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                          int ldb, float beta, float *c, int ldc) {
    scale_c(m, n, beta, c, ldc);
    for (int i = 0; i < m; i++) {
        float *ci = c + (size_t)i * ldc;
        if (!tb) {
            for (int p = 0; p < k; p++) {
                const float av = alpha * (ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]);
                const float *bp = b + (size_t)p * ldb;
                for (int j = 0; j < n; j++) ci[j] += av * bp[j];
            }
        } else {
            for (int j = 0; j < n; j++) {
                const float *bj = b + (size_t)j * ldb;
                float s = 0;
                for (int p = 0; p < k; p++) s += (ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]) * bj[p];
                ci[j] += alpha * s;
            }
        }
    }
}

/* ---- packing B^T (both SIMD paths) ---------------------------------------------------------------- */

/* out[q] = column q of the 8 x 8 block whose rows are r[0..7]: the textbook unpack / shuffle / permute. */
T256 INLINE void transpose8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) { /* rows 0-3, then 4-7 */
        __m256 *u = t + 4 * h, *v = s + 4 * h;
        v[0] = _mm256_shuffle_ps(u[0], u[2], 0x44), v[1] = _mm256_shuffle_ps(u[0], u[2], 0xee);
        v[2] = _mm256_shuffle_ps(u[1], u[3], 0x44), v[3] = _mm256_shuffle_ps(u[1], u[3], 0xee);
    }
    for (int q = 0; q < 4; q++) {
        r[q] = _mm256_permute2f128_ps(s[q], s[q + 4], 0x20);
        r[q + 4] = _mm256_permute2f128_ps(s[q], s[q + 4], 0x31);
    }
}

/* buf[p * NR + jj] = B[j0 + jj, p0 + p] for B stored [n, k] (tb): p < kc, jj < nr, zero for nr <= jj < NR.
 * Blocks of 8 rows x 8 k are transposed in registers; the ragged edges go one float at a time. */
T256 INLINE void pack_bt(const int NR, const float *b, int ldb, int j0, int nr, int p0, int kc, float *buf) {
    const int nr8 = nr & ~7, kc8 = kc & ~7;
    for (int jj = 0; jj < nr8; jj += 8) {
        const float *src = b + (size_t)(j0 + jj) * ldb + p0;
        int p = 0;
        for (; p < kc8; p += 8) {
            __m256 r[8];
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) r[q] = _mm256_loadu_ps(src + (size_t)q * ldb + p);
            transpose8(r);
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) _mm256_store_ps(buf + (size_t)(p + q) * NR + jj, r[q]);
        }
        for (; p < kc; p++)
            for (int q = 0; q < 8; q++) buf[(size_t)p * NR + jj + q] = src[(size_t)q * ldb + p];
    }
    for (int jj = nr8; jj < nr; jj++) {
        const float *src = b + (size_t)(j0 + jj) * ldb + p0;
        for (int p = 0; p < kc; p++) buf[(size_t)p * NR + jj] = src[p];
    }
    if (nr < NR)
        for (int p = 0; p < kc; p++) memset(buf + (size_t)p * NR + nr, 0, (size_t)(NR - nr) * sizeof *buf);
}

/* ---- AVX-512: 6 x 32 micro-kernel ----------------------------------------------------------------- */

/* C[rows, 16 NV] (+)= alpha A[rows, kc] Bpacked[kc, 32] for one row block. a points at A(i0, p0): with ta the
 * rows of one k are adjacent and k steps by lda, without it the reverse. rows, NV and ta are constants at
 * every call, so the loops unroll and acc lives in rows * NV zmm registers. mask[v] selects the columns of
 * C's v-th vector that exist. beta applies on the first k chunk only (later chunks add, beta = 1);
 * beta = 0 never reads C. */
T512 INLINE void kernel_512(const int rows, const int NV, const bool ta, int kc, const float *a, int lda,
                            const float *bp, float *c, int ldc, const __mmask16 mask[2], float alpha, float beta) {
    __m512 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    const size_t ars = ta ? 1 : (size_t)lda, acs = ta ? (size_t)lda : 1;
    for (int p = 0; p < kc; p++) {
        const __m512 b0 = _mm512_load_ps(bp), b1 = NV > 1 ? _mm512_load_ps(bp + 16) : b0;
#pragma GCC unroll 6
        for (int r = 0; r < rows; r++) {
            const __m512 av = _mm512_set1_ps(a[r * ars]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            if (NV > 1) acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
        a += acs, bp += 32;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            float *cp = c + (size_t)r * ldc + 16 * v;
            __m512 x = _mm512_mul_ps(acc[r][v], va);
            if (beta != 0) x = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask[v], cp), vb, x);
            _mm512_mask_storeu_ps(cp, mask[v], x);
        }
}

/* Every row block of one packed panel: full blocks of 6 rows, then one block of the remaining 1..5. */
T512 INLINE void rows_512(const int NV, const bool ta, int m, int kc, const float *a, int lda, const float *bp,
                          float *c, int ldc, const __mmask16 mask[2], float alpha, float beta) {
    int i0 = 0;
    for (; i0 + MR <= m; i0 += MR)
        kernel_512(MR, NV, ta, kc, ta ? a + i0 : a + (size_t)i0 * lda, lda, bp, c + (size_t)i0 * ldc, ldc, mask, alpha,
                   beta);
    const float *at = ta ? a + i0 : a + (size_t)i0 * lda;
    float *ct = c + (size_t)i0 * ldc;
    switch (m - i0) {
    case 1: kernel_512(1, NV, ta, kc, at, lda, bp, ct, ldc, mask, alpha, beta); break;
    case 2: kernel_512(2, NV, ta, kc, at, lda, bp, ct, ldc, mask, alpha, beta); break;
    case 3: kernel_512(3, NV, ta, kc, at, lda, bp, ct, ldc, mask, alpha, beta); break;
    case 4: kernel_512(4, NV, ta, kc, at, lda, bp, ct, ldc, mask, alpha, beta); break;
    case 5: kernel_512(5, NV, ta, kc, at, lda, bp, ct, ldc, mask, alpha, beta); break;
    default: break;
    }
}

/* The AVX-512 path: panels of 32 columns (16 for the last one when that is all that is left, so a
 * narrow C does half the work), chunks of KC of k, packed then multiplied row block by row block. */
T512 static void sgemm_small_512(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                                 const float *b, int ldb, float beta, float *c, int ldc) {
    enum { NR = 32 };
    _Alignas(64) float buf[KC * NR];
    for (int j0 = 0; j0 < n; j0 += NR) {
        const int nr = n - j0 < NR ? n - j0 : NR;
        const __mmask16 mask[2] = {(__mmask16)(nr >= 16 ? 0xffff : (1u << nr) - 1),
                                   (__mmask16)(nr >= 32 ? 0xffff : nr > 16 ? (1u << (nr - 16)) - 1 : 0)};
        for (int p0 = 0; p0 < k; p0 += KC) {
            const int kc = k - p0 < KC ? k - p0 : KC;
            if (tb) {
                pack_bt(NR, b, ldb, j0, nr, p0, kc, buf);
            } else {
                const float *src = b + (size_t)p0 * ldb + j0;
                for (int p = 0; p < kc; p++, src += ldb) { /* masked loads: zeros past column nr */
                    _mm512_store_ps(buf + p * NR, _mm512_maskz_loadu_ps(mask[0], src));
                    _mm512_store_ps(buf + p * NR + 16, _mm512_maskz_loadu_ps(mask[1], src + 16));
                }
            }
            const float *ap = ta ? a + (size_t)p0 * lda : a + p0;
            const float bt = p0 == 0 ? beta : 1.0f;
            if (nr > 16) {
                if (ta)
                    rows_512(2, true, m, kc, ap, lda, buf, c + j0, ldc, mask, alpha, bt);
                else
                    rows_512(2, false, m, kc, ap, lda, buf, c + j0, ldc, mask, alpha, bt);
            } else {
                if (ta)
                    rows_512(1, true, m, kc, ap, lda, buf, c + j0, ldc, mask, alpha, bt);
                else
                    rows_512(1, false, m, kc, ap, lda, buf, c + j0, ldc, mask, alpha, bt);
            }
        }
    }
}

/* ---- AVX2 + FMA: 6 x 16 micro-kernel -------------------------------------------------------------- */

/* Lanes j < count of a ymm mask for maskload / maskstore. */
T256 INLINE __m256i lanes_256(int count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* As kernel_512 with ymm vectors: 6 rows x 16 columns in 12 accumulators (plus two of B and one
 * broadcast: 15 of the 16 registers). full says all 16 columns exist, so C takes plain loads and stores;
 * otherwise maskload / maskstore with mask[v] (slow stores on some AMD parts, but only on the last panel). */
T256 INLINE void kernel_256(const int rows, const int NV, const bool ta, int kc, const float *a, int lda,
                            const float *bp, float *c, int ldc, bool full, const __m256i mask[2], float alpha,
                            float beta) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
    const size_t ars = ta ? 1 : (size_t)lda, acs = ta ? (size_t)lda : 1;
    for (int p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_load_ps(bp), b1 = NV > 1 ? _mm256_load_ps(bp + 8) : b0;
#pragma GCC unroll 6
        for (int r = 0; r < rows; r++) {
            const __m256 av = _mm256_broadcast_ss(a + r * ars);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            if (NV > 1) acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
        a += acs, bp += 16;
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            float *cp = c + (size_t)r * ldc + 8 * v;
            __m256 x = _mm256_mul_ps(acc[r][v], va);
            if (full) {
                if (beta != 0) x = _mm256_fmadd_ps(_mm256_loadu_ps(cp), vb, x);
                _mm256_storeu_ps(cp, x);
            } else {
                if (beta != 0) x = _mm256_fmadd_ps(_mm256_maskload_ps(cp, mask[v]), vb, x);
                _mm256_maskstore_ps(cp, mask[v], x);
            }
        }
}

T256 INLINE void rows_256(const int NV, const bool ta, int m, int kc, const float *a, int lda, const float *bp,
                          float *c, int ldc, bool full, const __m256i mask[2], float alpha, float beta) {
    int i0 = 0;
    for (; i0 + MR <= m; i0 += MR)
        kernel_256(MR, NV, ta, kc, ta ? a + i0 : a + (size_t)i0 * lda, lda, bp, c + (size_t)i0 * ldc, ldc, full, mask,
                   alpha, beta);
    const float *at = ta ? a + i0 : a + (size_t)i0 * lda;
    float *ct = c + (size_t)i0 * ldc;
    switch (m - i0) {
    case 1: kernel_256(1, NV, ta, kc, at, lda, bp, ct, ldc, full, mask, alpha, beta); break;
    case 2: kernel_256(2, NV, ta, kc, at, lda, bp, ct, ldc, full, mask, alpha, beta); break;
    case 3: kernel_256(3, NV, ta, kc, at, lda, bp, ct, ldc, full, mask, alpha, beta); break;
    case 4: kernel_256(4, NV, ta, kc, at, lda, bp, ct, ldc, full, mask, alpha, beta); break;
    case 5: kernel_256(5, NV, ta, kc, at, lda, bp, ct, ldc, full, mask, alpha, beta); break;
    default: break;
    }
}

/* The AVX2 path: as sgemm_small_512 with panels of 16 columns (8 for a last one that narrow). */
T256 static void sgemm_small_256(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                                 const float *b, int ldb, float beta, float *c, int ldc) {
    enum { NR = 16 };
    _Alignas(32) float buf[KC * NR];
    for (int j0 = 0; j0 < n; j0 += NR) {
        const int nr = n - j0 < NR ? n - j0 : NR;
        const bool full = nr == NR;
        const __m256i mask[2] = {lanes_256(nr), lanes_256(nr - 8)};
        for (int p0 = 0; p0 < k; p0 += KC) {
            const int kc = k - p0 < KC ? k - p0 : KC;
            if (tb) {
                pack_bt(NR, b, ldb, j0, nr, p0, kc, buf);
            } else {
                const float *src = b + (size_t)p0 * ldb + j0;
                for (int p = 0; p < kc; p++, src += ldb) { /* maskload gives zeros past column nr */
                    _mm256_store_ps(buf + p * NR, full ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, mask[0]));
                    _mm256_store_ps(buf + p * NR + 8,
                                    full ? _mm256_loadu_ps(src + 8) : _mm256_maskload_ps(src + 8, mask[1]));
                }
            }
            const float *ap = ta ? a + (size_t)p0 * lda : a + p0;
            const float bt = p0 == 0 ? beta : 1.0f;
            if (nr > 8) {
                if (ta)
                    rows_256(2, true, m, kc, ap, lda, buf, c + j0, ldc, full, mask, alpha, bt);
                else
                    rows_256(2, false, m, kc, ap, lda, buf, c + j0, ldc, full, mask, alpha, bt);
            } else {
                if (ta)
                    rows_256(1, true, m, kc, ap, lda, buf, c + j0, ldc, false, mask, alpha, bt);
                else
                    rows_256(1, false, m, kc, ap, lda, buf, c + j0, ldc, false, mask, alpha, bt);
            }
        }
    }
}

/* ---- dispatch ------------------------------------------------------------------------------------- */

static int detect_path(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
        return PATH_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return PATH_AVX2;
    return PATH_C;
}

/* The best path this CPU has, detected on the first call. Every thread detects the same value, so two
 * first calls racing each other are harmless. */
static int chosen_path(void) {
    static atomic_int best = -1;
    int path = atomic_load_explicit(&best, memory_order_relaxed);
    if (path < 0) atomic_store_explicit(&best, path = detect_path(), memory_order_relaxed);
    return path;
}

/* Test hook: one path by number (0 AVX-512, 1 AVX2+FMA, 2 portable C), so every path the CPU has gets
 * tested, not just the one chosen. Returns false, touching nothing, when the CPU lacks it. */
bool magna_sgemm_small_path(int path, bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                            const float *b, int ldb, float beta, float *c, int ldc) {
    if (path < chosen_path() || path > PATH_C) return false;
    if (m <= 0 || n <= 0) return true;
    if (k <= 0) {
        scale_c(m, n, beta, c, ldc);
        return true;
    }
    if (path == PATH_AVX512)
        sgemm_small_512(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else if (path == PATH_AVX2)
        sgemm_small_256(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        sgemm_small_c(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return true;
}

void magna_sgemm_small(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                       int ldb, float beta, float *c, int ldc) {
    magna_sgemm_small_path(chosen_path(), ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
