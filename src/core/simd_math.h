/* simd_math.h — per-vector AVX-512 helpers for the array kernels: exp (vecmath.c's magna_vexp loops over it), the
 * normal CDF (the GELU's, src/ops/unary.c), the mask of a row's last lanes, and bf16 widened to float32. Static
 * inline, for callers compiled for AVX-512 (MAGNA_T512M; MAGNA_T512BW for the bf16 loads). */
#ifndef MAGNA_CORE_SIMD_MATH_H
#define MAGNA_CORE_SIMD_MATH_H

#include "../cuda/elementwise_math.h"

#include <immintrin.h>
#include <math.h>

#define MAGNA_T512M __attribute__((target("avx512f,avx512dq,fma")))
#define MAGNA_T512BW __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))

/* The lanes of 16 that `left` more elements fill: all when left >= 16, none when left <= 0. */
static inline __mmask16 magna_mask16(int64_t left) {
    return left >= 16 ? (__mmask16)0xFFFF : left > 0 ? (__mmask16)((1u << left) - 1) : (__mmask16)0;
}

/* 16 bf16 at p (masked lanes read as 0) widened to float32, exactly: a bf16 is a float's high half. */
MAGNA_T512BW static inline __m512 magna_load_bf16x16(const uint16_t *p, __mmask16 m) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

/* exp's constants, which vecmath.c's AVX2 and scalar paths share */
#define MAGNA_EXP_HI 88.7228391f
#define MAGNA_EXP_LO -103.972084f /* exp of anything lower is 0 in float32, denormals included */
#define MAGNA_EXP_LOG2E 1.44269504088896341f
#define MAGNA_EXP_LN2_HI 0.693359375f
#define MAGNA_EXP_LN2_LO -2.12194440e-4f
#define MAGNA_EXP_P0 1.9875691500e-4f
#define MAGNA_EXP_P1 1.3981999507e-3f
#define MAGNA_EXP_P2 8.3334519073e-3f
#define MAGNA_EXP_P3 4.1665795894e-2f
#define MAGNA_EXP_P4 1.6666665459e-1f
#define MAGNA_EXP_P5 5.0000001201e-1f

/* exp(x) = 2^k exp(r), k = round(x log2 e), r = x - k ln 2 (in two parts for precision), exp(r) by Cephes'
 * degree-6 polynomial: about 1 ulp on [-87, 88]. Below that the result underflows to 0, above it overflows to inf
 * (scalef does the 2^k), and NaN stays NaN. */
MAGNA_T512M static inline __m512 magna_exp512(__m512 v) {
    const __m512 hi = _mm512_set1_ps(MAGNA_EXP_HI), lo = _mm512_set1_ps(MAGNA_EXP_LO);
    __m512 t = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(MAGNA_EXP_LOG2E)), _MM_FROUND_TO_NEAREST_INT);
    t = _mm512_fnmadd_ps(k, _mm512_set1_ps(MAGNA_EXP_LN2_HI), t);
    t = _mm512_fnmadd_ps(k, _mm512_set1_ps(MAGNA_EXP_LN2_LO), t);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(MAGNA_EXP_P0), t, _mm512_set1_ps(MAGNA_EXP_P1));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(MAGNA_EXP_P2));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(MAGNA_EXP_P3));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(MAGNA_EXP_P4));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(MAGNA_EXP_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(t, t), _mm512_add_ps(t, _mm512_set1_ps(1.0f)));
    __m512 r = _mm512_scalef_ps(p, k);
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(v, hi, _CMP_GT_OQ), _mm512_set1_ps(INFINITY));
    return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v); /* NaN in, NaN out */
}

/* Phi(x): magna_em_normal_cdf (src/cuda/elementwise_math.h, erf's rational fit) on 16 lanes; NaN stays NaN (max
 * and min return their second operand when either is NaN). */
MAGNA_T512M static inline __m512 magna_normal_cdf512(__m512 x) {
    const __m512 v = _mm512_min_ps(_mm512_set1_ps(4.0f),
                                   _mm512_max_ps(_mm512_set1_ps(-4.0f), _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f))));
    const __m512 v2 = _mm512_mul_ps(v, v);
#define MAGNA_C(c) _mm512_set1_ps(MAGNA_EM_ERF_##c)
    __m512 p = _mm512_fmadd_ps(v2, MAGNA_C(P6), MAGNA_C(P5));
    p = _mm512_fmadd_ps(v2, p, MAGNA_C(P4));
    p = _mm512_fmadd_ps(v2, p, MAGNA_C(P3));
    p = _mm512_fmadd_ps(v2, p, MAGNA_C(P2));
    p = _mm512_fmadd_ps(v2, p, MAGNA_C(P1));
    p = _mm512_fmadd_ps(v2, p, MAGNA_C(P0));
    __m512 q = _mm512_fmadd_ps(v2, MAGNA_C(Q4), MAGNA_C(Q3));
    q = _mm512_fmadd_ps(v2, q, MAGNA_C(Q2));
    q = _mm512_fmadd_ps(v2, q, MAGNA_C(Q1));
    q = _mm512_fmadd_ps(v2, q, MAGNA_C(Q0));
#undef MAGNA_C
    const __m512 half = _mm512_set1_ps(0.5f);
    return _mm512_fmadd_ps(half, _mm512_div_ps(_mm512_mul_ps(v, p), q), half);
}

#endif
