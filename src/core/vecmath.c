/* vecmath.c — exp over arrays, vectorised. glibc's expf is scalar without -ffast-math (which magna never
 * uses: it breaks NaN checks), and softmax, cross-entropy and attention spend much of their time in it.
 *
 * exp(x) = 2^k exp(r), k = round(x log2 e), r = x - k ln 2 (in two parts for precision), exp(r) by
 * Cephes' degree-6 polynomial: about 1 ulp on [-87, 88]. Below that the result underflows to 0, above it
 * overflows to inf, and NaN stays NaN. An AVX-512 path (scalef does the 2^k), an AVX2 path (exponent
 * bits), and the scalar loop, picked once at run time. */
#include "../graph/internal.h"
#include "simd_math.h"

#include <immintrin.h>
#include <math.h>

MAGNA_T512M static void vexp_avx512(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = magna_mask16(n - i);
        _mm512_mask_storeu_ps(y + i, m, magna_exp512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

__attribute__((target("avx2,fma"))) static void vexp_avx2(float *y, const float *x, int64_t n) {
    const __m256 hi = _mm256_set1_ps(MAGNA_EXP_HI), lo = _mm256_set1_ps(MAGNA_EXP_LO);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        __m256 t = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        const __m256 k = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(MAGNA_EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT);
        t = _mm256_fnmadd_ps(k, _mm256_set1_ps(MAGNA_EXP_LN2_HI), t);
        t = _mm256_fnmadd_ps(k, _mm256_set1_ps(MAGNA_EXP_LN2_LO), t);
        __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(MAGNA_EXP_P0), t, _mm256_set1_ps(MAGNA_EXP_P1));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(MAGNA_EXP_P2));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(MAGNA_EXP_P3));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(MAGNA_EXP_P4));
        p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(MAGNA_EXP_P5));
        p = _mm256_fmadd_ps(p, _mm256_mul_ps(t, t), _mm256_add_ps(t, _mm256_set1_ps(1.0f)));
        /* 2^k through the exponent bits, in two halves: k is in [-150, 128] after the clamp, beyond one
         * float's exponent range, and the second product rounds into the denormals as exp would */
        const __m256i ki = _mm256_cvtps_epi32(k), k1 = _mm256_srai_epi32(ki, 1), k2 = _mm256_sub_epi32(ki, k1);
        const __m256i bias = _mm256_set1_epi32(127);
        const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k1, bias), 23));
        const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k2, bias), 23));
        __m256 r = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
        r = _mm256_blendv_ps(r, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(v, hi, _CMP_GT_OQ));
        r = _mm256_blendv_ps(r, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        _mm256_storeu_ps(y + i, r);
    }
    for (; i < n; i++) y[i] = expf(x[i]);
}

static void vexp_scalar(float *y, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = expf(x[i]);
}

typedef void (*vexp_fn)(float *, const float *, int64_t);

static vexp_fn vexp_pick(int path) {
    __builtin_cpu_init();
    if (path == 0 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return vexp_avx512;
    if (path <= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return vexp_avx2;
    return vexp_scalar;
}

void magna_vexp_path(int path, float *y, const float *x, int64_t n) { vexp_pick(path)(y, x, n); }

void magna_vexp(float *y, const float *x, int64_t n) {
    static vexp_fn chosen; /* a benign race: every thread computes the same pointer */
    vexp_fn f = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
    if (!f) {
        f = vexp_pick(0);
        __atomic_store_n(&chosen, f, __ATOMIC_RELAXED);
    }
    f(y, x, n);
}
