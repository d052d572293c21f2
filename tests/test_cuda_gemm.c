/* test_cuda_gemm.c — magna_cuda_gemm (src/cuda/gemm.cu) against a double-precision triple loop: every
 * transpose, odd and tile-edge sizes, k = 0, padded leading dimensions and batch strides, shared operands
 * (stride 0), alpha and beta (beta 0 must ignore a C full of NaN), and the bf16 mode (the operands rounded to
 * bf16 exactly as the reference rounds them; the mode must differ from float32, or nothing was rounded).
 * Entries of C outside the product (padding between rows and batches) must be left alone.
 *
 * Each case runs on our tiled kernel (blas NULL) and through the handle magna_cuda_blas_create makes: under
 * the emulator that handle is NULL too; on a GPU it is cuBLASLt, so the same test checks cuBLASLt's staging,
 * layouts and alignment against the same reference. */
#include "check.h"
#include "cuda/kernels.h"
#include "magna.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (2.0 / 16777216.0) - 1.0);
}

/* round to nearest even, as __float2bfloat16 (finite inputs) */
static float bf16_round(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&v, &u, 4);
    return v;
}

/* count values on the device as float32, or (as16) as bf16 (rounded to nearest even) */
static void *to_device_as(const float *h, size_t count, int as16) {
    if (!as16) {
        void *d = NULL;
        CHECK(cudaMalloc(&d, count * sizeof(float) + 4) == cudaSuccess, "cudaMalloc %zu floats", count);
        if (d) CHECK(cudaMemcpy(d, h, count * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess, "upload");
        return d;
    }
    uint16_t *bits = malloc(count * sizeof(uint16_t) + 2);
    for (size_t i = 0; i < count; i++) {
        const float r = isnan(h[i]) ? h[i] : bf16_round(h[i]);
        uint32_t u;
        memcpy(&u, &r, 4);
        bits[i] = (uint16_t)(u >> 16);
    }
    void *d = NULL;
    CHECK(cudaMalloc(&d, count * sizeof(uint16_t) + 4) == cudaSuccess, "cudaMalloc %zu bf16", count);
    if (d) CHECK(cudaMemcpy(d, bits, count * sizeof(uint16_t), cudaMemcpyHostToDevice) == cudaSuccess, "upload");
    free(bits);
    return d;
}


typedef struct gemm_case {
    int ta, tb, m, n, k, batch;
    int shared_a, shared_b, pad; /* pad: extra columns in every ld, and extra elements between batches */
    float alpha, beta;
    int bf16;
} gemm_case;

/* bf16 == 2: cuBLASLt's FAST_16BF path (no staging), whose down-conversion may round differently: one bf16
 * ulp of slack per operand */
/* with_bias: through magna_cuda_gemm_bias (one product, beta 0), + a bias per column */
static double run_stored(void *blas, const gemm_case *c, int bf16_mode, unsigned stored16, int with_bias) {
    const int ar = c->ta ? c->k : c->m, ac = c->ta ? c->m : c->k, br = c->tb ? c->n : c->k, bc = c->tb ? c->k : c->n;
    const int lda = ac + c->pad, ldb = bc + c->pad, ldc = c->n + c->pad;
    const long long sa = c->shared_a ? 0 : (long long)ar * lda + c->pad, sb = c->shared_b ? 0 : (long long)br * ldb + c->pad;
    const long long sc = (long long)c->m * ldc + c->pad;
    const size_t na = (size_t)(c->shared_a ? 1 : c->batch) * ((size_t)ar * lda + c->pad);
    const size_t nb = (size_t)(c->shared_b ? 1 : c->batch) * ((size_t)br * ldb + c->pad);
    const size_t nc = (size_t)c->batch * (size_t)sc;
    float *a = malloc(na * sizeof(float) + 4), *b = malloc(nb * sizeof(float) + 4), *c0 = malloc(nc * sizeof(float) + 4);
    float *got = malloc(nc * sizeof(float) + 4);
    for (size_t i = 0; i < na; i++) a[i] = frand();
    for (size_t i = 0; i < nb; i++) b[i] = frand();
    for (size_t i = 0; i < nc; i++) c0[i] = c->beta == 0.0f ? NAN : frand();
    const int c16 = (stored16 & MAGNA_GEMM_C16) != 0;
    void *da = to_device_as(a, na, stored16 & MAGNA_GEMM_A16), *db = to_device_as(b, nb, stored16 & MAGNA_GEMM_B16);
    void *dc = to_device_as(c0, nc, c16);
    float *bias = malloc((size_t)c->n * sizeof(float) + 4);
    for (int j = 0; j < c->n; j++) bias[j] = with_bias ? frand() : 0.0f;
    float *dbias = with_bias ? to_device_as(bias, (size_t)c->n, 0) : NULL;
    int e = with_bias ? magna_cuda_gemm_bias(blas, NULL, c->ta, c->tb, c->m, c->n, c->k, da, lda, db, ldb, dbias, dc, ldc,
                                             bf16_mode != 0, stored16)
                      : magna_cuda_gemm_stored(blas, NULL, c->ta, c->tb, c->m, c->n, c->k, c->alpha, da, lda, sa, db,
                                               ldb, sb, c->beta, dc, ldc, sc, c->batch, bf16_mode != 0, stored16);
    CHECK(e == 0, "magna_cuda_gemm: %s", cudaGetErrorString((cudaError_t)e));
    if (c16) { /* widen the bf16 result, and compare the untouched entries with what was uploaded */
        uint16_t *bits = malloc(nc * sizeof(uint16_t) + 2);
        CHECK(cudaDeviceSynchronize() == cudaSuccess &&
                  cudaMemcpy(bits, dc, nc * sizeof(uint16_t), cudaMemcpyDeviceToHost) == cudaSuccess,
              "download");
        for (size_t i = 0; i < nc; i++) {
            const uint32_t u = (uint32_t)bits[i] << 16;
            memcpy(&got[i], &u, 4);
            if (!isnan(c0[i])) c0[i] = bf16_round(c0[i]);
        }
        free(bits);
    } else {
        CHECK(cudaDeviceSynchronize() == cudaSuccess &&
                  cudaMemcpy(got, dc, nc * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess,
              "download");
    }
    double worst = 0, from_f32 = 0; /* worst error / bound; the result's largest difference from float32's */
    int64_t touched = 0;
    const double slack = bf16_mode == 2 ? 1.0 / 128 : 1e-5;
    for (int z = 0; z < c->batch; z++) {
        const float *az = a + (c->shared_a ? 0 : z * sa), *bz = b + (c->shared_b ? 0 : z * sb);
        for (int i = 0; i < c->m; i++)
            for (int j = 0; j < c->n; j++) {
                double ref = 0, mag = 0, raw = 0;
                for (int p = 0; p < c->k; p++) {
                    float x = c->ta ? az[(size_t)p * lda + i] : az[(size_t)i * lda + p];
                    float y = c->tb ? bz[(size_t)j * ldb + p] : bz[(size_t)p * ldb + j];
                    raw += (double)x * y;
                    if (bf16_mode) x = bf16_round(x), y = bf16_round(y);
                    ref += (double)x * y, mag += fabs((double)x * y);
                }
                const size_t at = (size_t)z * sc + (size_t)i * ldc + j;
                const double cold = c->beta == 0.0f ? 0.0 : c0[at];
                const double want = c->alpha * ref + c->beta * cold + bias[j];
                /* a bf16 result: rounded once more, half an ulp of 2^-8 */
                const double bound = slack * (fabs(c->alpha) * mag + fabs(c->beta * cold) + fabs(bias[j])) +
                                     (c16 ? fabs(want) / 256 : 0) + 1e-30;
                const double err = fabs(got[at] - want) / bound;
                if (!(err <= worst)) worst = isnan(err) ? INFINITY : err;
                if (fabs(got[at] - (c->alpha * raw + c->beta * cold + bias[j])) > from_f32)
                    from_f32 = fabs(got[at] - (c->alpha * raw + c->beta * cold + bias[j]));
            }
    }
    /* everything else in C as it was (NaN stays NaN) */
    for (int z = 0; z < c->batch; z++)
        for (long long q = 0; q < sc; q++) {
            const long long i = q / ldc, j = q % ldc;
            if (i < c->m && j < c->n) continue;
            const size_t at = (size_t)z * sc + (size_t)q;
            touched += !(got[at] == c0[at] || (isnan(got[at]) && isnan(c0[at])));
        }
    CHECK(worst <= 1.0 && !touched,
          "gemm ta=%d tb=%d m=%d n=%d k=%d batch=%d shared %d/%d pad %d alpha %g beta %g bf16 %d stored16 %u blas %s: "
          "error %.3g of the bound, %lld entries outside C changed",
          c->ta, c->tb, c->m, c->n, c->k, c->batch, c->shared_a, c->shared_b, c->pad, (double)c->alpha,
          (double)c->beta, bf16_mode, stored16, blas ? "cuBLASLt" : "tiled", worst, (long long)touched);
    cudaFree(da), cudaFree(db), cudaFree(dc), cudaFree(dbias);
    free(a), free(b), free(c0), free(got), free(bias);
    return from_f32;
}

static double run(void *blas, const gemm_case *c, int bf16_mode) { return run_stored(blas, c, bf16_mode, 0, 0); }

int main(void) {
    char why[256];
    if (!magna_cuda_available(why, sizeof why)) {
        printf("test_cuda_gemm: skipped: %s\n", why);
        return 77;
    }
    void *blas = NULL;
    int e = magna_cuda_blas_create(&blas);
    CHECK(e == 0, "magna_cuda_blas_create: %s", cudaGetErrorString((cudaError_t)e));
    const int had_blas = blas != NULL;
    static const int M[] = {1, 7, 64, 65, 130};
    static const int K[] = {0, 1, 16, 17, 70};
    int cases = 0;
    for (int pass = 0; pass < 2; pass++) { /* 0: our kernel; 1: the handle (cuBLASLt on a GPU) */
        void *h = pass ? blas : NULL;
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int i = 0; i < 5; i++)
                    for (int j = 0; j < 5; j++) {
                        const gemm_case c = {ta, tb, M[i], M[(i + 2 * j) % 5], K[j], 1, 0, 0, (i + j) % 3,
                                             j % 2 ? 0.5f : 1.0f, j % 3 == 1 ? 0.75f : 0.0f, 0};
                        run(h, &c, 0);
                        cases++;
                    }
        /* batched, each operand shared or not, padded strides */
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int s = 0; s < 3; s++) {
                    const gemm_case c = {ta, tb, 33, 18, 20, 3, s == 1, s == 2, 1 + s, 1.0f, s == 0 ? 0.0f : 1.0f, 0};
                    run(h, &c, 0);
                    cases++;
                }
        /* bf16: operands rounded as the reference rounds them, and visibly not float32 */
        const gemm_case c16 = {0, 1, 65, 40, 70, 2, 0, 0, 0, 1.0f, 0.0f, 1};
        if (pass) CHECK(magna_cuda_blas_reserve(h, magna_cuda_gemm_bf16_elems(0, 1, 65, 40, 70, 1, 1, 2)) == 0, "reserve");
        const double diff = run(h, &c16, 1);
        CHECK(diff > 1e-4, "bf16 mode gives float32's answer (difference %g): nothing was rounded", diff);
        const gemm_case c16s = {1, 0, 17, 66, 33, 3, 1, 0, 2, 2.0f, 1.0f, 1}; /* shared A, transposed, beta 1 */
        run(h, &c16s, 1);
        if (pass && h) { /* a call past the staging buffer: cuBLASLt's FAST_16BF */
            const gemm_case big = {0, 0, 130, 130, 70, 3, 0, 0, 0, 1.0f, 0.0f, 1};
            run(h, &big, 2);
        }
        cases += 2;
        /* operands and result stored as bf16 (the activations a mixed-precision graph keeps in bf16), read in
         * place: every combination, transposed and batched with a shared operand; a bf16 C only with beta 0 */
        for (unsigned st = 1; st < 8; st++) {
            const gemm_case cs = {(int)st & 1, st == 2 || st == 7, 37, 50, 45, 2, st == 3, st == 5, (int)st % 2,
                                  1.0f, st & MAGNA_GEMM_C16 ? 0.0f : 0.5f, 1};
            run_stored(h, &cs, 1, st, 0);
            cases++;
        }
        /* + a bias per column in the product's epilogue (cuBLASLt's BIAS on a GPU): float32 and bf16 C, each
         * transpose, odd sizes, k = 0 (the bias alone); and a call that cannot take it refused */
        for (int t = 0; t < 4; t++)
            for (int c16 = 0; c16 < 2; c16++) {
                const gemm_case cb = {t & 1, t >> 1, 1 + 37 * t, 50 - t, t == 3 ? 0 : 64 + t, 1, 0, 0, t % 2,
                                      1.0f, 0.0f, c16 || t % 2};
                run_stored(h, &cb, cb.bf16, c16 ? MAGNA_GEMM_C16 : 0, 1);
                cases++;
            }
        CHECK(magna_cuda_gemm_bias(h, NULL, 0, 0, 8, 8, 8, NULL, 8, NULL, 8, NULL, NULL, 8, 1, 0) == cudaErrorInvalidValue,
              "a bias GEMM without a bias was not refused");
        CHECK(magna_cuda_gemm_stored(h, NULL, 0, 0, 8, 8, 8, 1.0f, NULL, 8, 0, NULL, 8, 0, 1.0f, NULL, 8, 0, 1, 1,
                                     MAGNA_GEMM_C16) == cudaErrorInvalidValue &&
                  magna_cuda_gemm_stored(h, NULL, 0, 0, 8, 8, 8, 1.0f, NULL, 8, 0, NULL, 8, 0, 0.0f, NULL, 8, 0, 1, 0,
                                         MAGNA_GEMM_A16) == cudaErrorInvalidValue,
              "a bf16 C added to, or bf16 storage in float32 mode, was not refused");
    }
    magna_cuda_blas_destroy(&blas);
    CHECK(blas == NULL, "destroy leaves the handle NULL");
    printf("%d GEMM cases on our tiled kernel and through the blas handle (%s)\n", cases,
           had_blas ? "cuBLASLt" : "NULL: no cuBLASLt, the tiled kernel again");
    return check_finish("test_cuda_gemm");
}
