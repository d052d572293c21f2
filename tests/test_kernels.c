/* test_kernels.c — fast kernels against the simple ones on fresh random inputs: OpenBLAS sgemm (every
 * transpose, odd sizes, leading dimensions) against the triple loop, and matmul through the graph
 * (batched, shared weight) against the same loop. Also checks the runtime loaded OpenBLAS with the
 * AVX-512 kernels where the CPU has them, and that the bf16 panel packer's transposed path lays out the words its
 * plain path does. */
#include "check.h"
#include "graph/internal.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

static void fill(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * magna_rand_uniform(seed, 3, i) - 1.0f;
}

static double max_rel_err(const float *a, const float *b, size_t n) {
    double worst = 0, scale = 1e-6;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]) / scale);
    return worst;
}

static void sgemm_vs_reference(uint64_t seed) {
    int m = 1 + (int)(magna_rand_u64(seed, 1, 0) % 97), n = 1 + (int)(magna_rand_u64(seed, 1, 1) % 83);
    int k = 1 + (int)(magna_rand_u64(seed, 1, 2) % 131);
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
        size_t sa = (size_t)(ta ? k : m) * lda, sb = (size_t)(tb ? n : k) * ldb, sc = (size_t)m * ldc;
        float *a = malloc(sa * 4), *b = malloc(sb * 4), *c1 = malloc(sc * 4), *c2 = malloc(sc * 4);
        fill(a, sa, seed + 1), fill(b, sb, seed + 2), fill(c1, sc, seed + 3);
        memcpy(c2, c1, sc * 4);
        magna_sgemm(ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.5f, c1, ldc);
        magna_sgemm_reference(ta, tb, m, n, k, 0.7f, a, lda, b, ldb, 0.5f, c2, ldc);
        double err = max_rel_err(c1, c2, sc);
        CHECK(err < 1e-5, "sgemm m=%d n=%d k=%d ta=%d tb=%d: max relative error %.3g", m, n, k, ta, tb, err);
        printf("kernel sgemm m=%-3d n=%-3d k=%-3d ta=%d tb=%d max_rel_err=%.2e\n", m, n, k, ta, tb, err);
        free(a), free(b), free(c1), free(c2);
    }
}

/* core/gemm_small.c's test hook: one SIMD path by number (0 AVX-512, 1 AVX2+FMA, 2 portable C); false,
 * doing nothing, when the CPU lacks it. */
bool magna_sgemm_small_path(int path, bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                            const float *b, int ldb, float beta, float *c, int ldc);

/* The small-GEMM kernel directly, on every path the CPU has: random m, n, k in 1..130 (and the edges of
 * its 6-row and 16/32-column blocks), every transpose, alpha != 1, beta 0 (over NaN, which must not
 * leak), 1 and 0.5, padded leading dimensions (the columns past each width must stay untouched), and
 * k past one 256-deep packed chunk. Also k = 0 (C = beta C) and the same call twice giving the same bits. */
static void sgemm_small_vs_reference(void) {
    static const int edges[] = {1, 5, 6, 7, 15, 16, 17, 31, 32, 33, 64, 65};
    const int n_edges = (int)(sizeof edges / sizeof *edges);
    static const float betas[3] = {0.0f, 1.0f, 0.5f};
    int paths = 0, calls = 0, failures = 0, repeats_differ = 0;
    double worst = 0;
    for (int path = 0; path < 3; path++) {
        if (!magna_sgemm_small_path(path, false, false, 1, 1, 1, 1, (float[]){1}, 1, (float[]){1}, 1, 0,
                                    (float[]){0}, 1))
            continue;
        paths++;
        for (int trial = 0; trial < 240; trial++) {
            const uint64_t seed = 1000 + (uint64_t)trial;
            int dims[3];
            for (int d = 0; d < 3; d++) {
                const uint64_t r = magna_rand_u64(seed, 7, (uint64_t)d);
                dims[d] = r % 2 ? edges[r / 2 % (uint64_t)n_edges] : 1 + (int)(r / 2 % 130);
            }
            int m = dims[0], n = dims[1], k = dims[2];
            if (trial < 4) k = 257 + 40 * trial;           /* past one packed chunk of k, each transpose */
            if (trial == 8 || trial == 13 || trial == 16) k = 0; /* beta 0.5, 0 and 1 */
            const bool ta = trial & 1, tb = trial & 2;
            const float beta = betas[trial / 4 % 3], alpha = 0.7f;
            const int lda = (ta ? m : k) + 1 + trial % 5, ldb = (tb ? k : n) + 2 + trial % 3, ldc = n + 3;
            /* + 1: no malloc(0) when k = 0 */
            const size_t sa = (size_t)(ta ? k : m) * lda + 1, sb = (size_t)(tb ? n : k) * ldb + 1;
            const size_t sc = (size_t)m * ldc;
            float *a = malloc(sa * 4), *b = malloc(sb * 4), *c1 = malloc(sc * 4), *c2 = malloc(sc * 4),
                  *c3 = malloc(sc * 4);
            fill(a, sa, seed + 1), fill(b, sb, seed + 2), fill(c2, sc, seed + 3);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    if (beta == 0) c2[(size_t)i * ldc + j] = NAN;
            memcpy(c1, c2, sc * 4), memcpy(c3, c2, sc * 4);
            magna_sgemm_small_path(path, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
            magna_sgemm_small_path(path, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c3, ldc);
            magna_sgemm_reference(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);
            /* the reference writes only the first n columns of each row: padding compares equal too */
            double err = 0;
            for (size_t i = 0; i < sc; i++)
                if (isnan(c1[i])) err = INFINITY;
            if (err == 0) err = max_rel_err(c1, c2, sc);
            repeats_differ += memcmp(c1, c3, sc * 4) != 0;
            calls++;
            worst = fmax(worst, err);
            if (!(err < 1e-5)) {
                failures++;
                CHECK(err < 1e-5, "sgemm_small path %d m=%d n=%d k=%d ta=%d tb=%d beta=%g: max relative error %.3g",
                      path, m, n, k, ta, tb, beta, err);
            }
            free(a), free(b), free(c1), free(c2), free(c3);
        }
    }
    CHECK(paths >= 1, "no sgemm_small path ran");
    CHECK(failures == 0, "%d of %d sgemm_small calls off", failures, calls);
    CHECK(repeats_differ == 0, "%d sgemm_small calls gave different bits the second time", repeats_differ);
    printf("kernel sgemm_small: %d paths, %d shapes, max_rel_err=%.2e\n", paths, calls, worst);
}

/* matmul through a graph, [B, M, K] @ [B, K, N] and [B, T, K] @ [K, N], against the loop. */
static void graph_matmul_vs_reference(int B, int M, int K, int N, bool shared, uint64_t seed) {
    magna_graph *g = magna_graph_new(seed);
    magna_node *a = magna_param(g, "a", 3, (int64_t[]){B, M, K}, magna_init_uniform(-1, 1));
    magna_node *b = shared ? magna_param(g, "b", 2, (int64_t[]){K, N}, magna_init_uniform(-1, 1))
                           : magna_param(g, "b", 3, (int64_t[]){B, K, N}, magna_init_uniform(-1, 1));
    magna_node *c = magna_matmul(g, a, b, false, false);
    CHECK(magna_graph_compile(g, c) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    magna_graph_forward(g);
    float *ref = malloc((size_t)B * M * N * 4);
    for (int i = 0; i < B; i++)
        magna_sgemm_reference(false, false, M, N, K, 1, magna_node_data(a) + (size_t)i * M * K, K,
                              magna_node_data(b) + (shared ? 0 : (size_t)i * K * N), N, 0, ref + (size_t)i * M * N, N);
    double err = max_rel_err(magna_node_data(c), ref, (size_t)B * M * N);
    CHECK(err < 1e-5, "graph matmul B=%d M=%d K=%d N=%d shared=%d: %.3g", B, M, K, N, shared, err);
    printf("kernel graph_matmul B=%d M=%d K=%d N=%d shared=%d max_rel_err=%.2e\n", B, M, K, N, shared, err);
    free(ref);
    magna_graph_free(g);
}

/* sum, mean and max over every axis set of a [3, 4, 5, 6] tensor (contiguous blocks take the fast path,
 * the others the strided one) against a plain loop over all elements. */
static void reductions_vs_reference(void) {
    const int64_t shape[4] = {3, 4, 5, 6};
    int worst_mask = 0;
    double worst = 0;
    for (unsigned mask = 1; mask < 16; mask++)
        for (int op = 0; op < 3; op++) {
            magna_graph *g = magna_graph_new(mask);
            magna_node *x = magna_param(g, "x", 4, shape, magna_init_uniform(-1, 1));
            magna_node *y = op == 0 ? magna_sum(g, x, mask, true) : op == 1 ? magna_mean(g, x, mask, true)
                                                                            : magna_max(g, x, mask, true);
            CHECK(magna_graph_compile(g, y) == MAGNA_OK, "%s", magna_graph_errmsg(g));
            magna_graph_forward(g);
            const float *xv = magna_node_data(x), *yv = magna_node_data(y);
            double ref[360] = {0}, count[360] = {0};
            for (int i = 0; i < 360; i++) ref[i] = op == 2 ? -INFINITY : 0;
            for (int64_t i = 0; i < 360; i++) {
                int64_t idx[4] = {i / 120, i / 30 % 4, i / 6 % 5, i % 6}, o = 0;
                for (int d = 0; d < 4; d++) o = o * (mask & (1u << d) ? 1 : shape[d]) + (mask & (1u << d) ? 0 : idx[d]);
                if (op == 2)
                    ref[o] = fmax(ref[o], xv[i]);
                else
                    ref[o] += xv[i], count[o]++;
            }
            for (int64_t o = 0; o < magna_node_numel(y); o++) {
                double r = op == 1 ? ref[o] / count[o] : ref[o], e = fabs(r - yv[o]);
                if (e > worst) worst = e, worst_mask = (int)mask;
            }
            magna_graph_free(g);
        }
    CHECK(worst < 1e-5, "reduction over mask 0x%x off by %g", worst_mask, worst);
    printf("kernel reductions: sum/mean/max over all 15 axis sets of [3, 4, 5, 6] max_abs_err=%.2e\n", worst);
}

/* The bf16 panel packer reading op(W) = W^T from W's rows (transposed: loads, conversion and a 16 x 16 transpose)
 * must lay out exactly the words it lays out from that W^T stored as it is read (not transposed), for sizes that
 * leave partial panels, a partial block of 16 pairs and an odd k. */
static void panel_pack_transposed_vs_plain(void) {
    if (!magna_panel_available(true)) {
        printf("panel pack: no avx512_bf16 here, skipped\n");
        return;
    }
    static const int sizes[][2] = {{32, 128}, {24, 13}, {39, 40}, {1, 33}, {70, 5}, {64, 64}};
    int bad = 0;
    for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
        const int k = sizes[c][0], n = sizes[c][1], ldw = k + 3;
        float *w = malloc((size_t)n * ldw * sizeof *w), *wt = malloc((size_t)k * n * sizeof *wt);
        for (int j = 0; j < n; j++)
            for (int p = 0; p < ldw; p++) w[(size_t)j * ldw + p] = 2 * magna_rand_uniform(9, (uint64_t)c, (uint64_t)(j * ldw + p)) - 1;
        for (int p = 0; p < k; p++)
            for (int j = 0; j < n; j++) wt[(size_t)p * n + j] = w[(size_t)j * ldw + p];
        const size_t words = magna_panel_b_floats(k, n) * 2;
        uint16_t *a = calloc(words, 2), *b = calloc(words, 2);
        memset(a, 0x5a, words * 2), memset(b, 0xa5, words * 2); /* both must overwrite every word */
        magna_panel_pack_bf16(k, n, w, ldw, true, a, false);
        magna_panel_pack_bf16(k, n, wt, n, false, b, false);
        const size_t used = (size_t)((n + 31) / 32) * (size_t)((k + 1) / 2) * 64;
        for (size_t i = 0; i < used; i++) bad += a[i] != b[i];
        CHECK(memcmp(a, b, used * 2) == 0, "transposed pack of k %d n %d differs from the plain one", k, n);
        free(w), free(wt), free(a), free(b);
    }
    printf("panel pack: transposed (rows of W) against plain (W^T) bf16 panels, 6 shapes: %d words differ\n", bad);
}

/* float -> bf16, round to nearest even (finite inputs) */
static uint16_t to_bf16(float v) {
    uint32_t b;
    memcpy(&b, &v, 4);
    return (uint16_t)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

static float from_bf16(uint16_t h) {
    const uint32_t b = (uint32_t)h << 16;
    float v;
    memcpy(&v, &b, 4);
    return v;
}

/* The packers and the product reading bf16 operands (the activations ops hand over in bf16) must make exactly what
 * the float32 ones make of the same values: both orientations of W, and A scaled by alpha, for odd sizes. */
static void panel_bf16_sources(void) {
    if (!magna_panel_available(true)) {
        printf("panel bf16 sources: no avx512_bf16 here, skipped\n");
        return;
    }
    static const int sizes[][3] = {{32, 128, 64}, {24, 13, 9}, {39, 40, 17}, {1, 33, 8}, {70, 5, 3}};
    int bad = 0;
    for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
        const int k = sizes[c][0], n = sizes[c][1], m = sizes[c][2], ld = (k > n ? k : n) + 5;
        const size_t elems = (size_t)(m > n ? m : n) * ld + (size_t)k * ld;
        float *f = malloc(elems * sizeof *f), *c1 = calloc((size_t)m * n, 4), *c2 = calloc((size_t)m * n, 4);
        uint16_t *h = malloc(elems * 2);
        for (size_t i = 0; i < elems; i++) {
            h[i] = to_bf16(2 * magna_rand_uniform(11, (uint64_t)c, i) - 1);
            f[i] = from_bf16(h[i]);
        }
        const size_t words = magna_panel_b_floats(k, n) * 2, used = (size_t)((n + 31) / 32) * (size_t)((k + 1) / 2) * 64;
        const size_t bytes = (words * 2 + 63) / 64 * 64; /* the kernel loads panels aligned */
        uint16_t *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes);
        uint32_t *ap = aligned_alloc(64, (magna_panel_a_floats(m, k) * 4 + 63) / 64 * 64);
        for (int t = 0; t < 2; t++) {
            memset(a, 0x5a, words * 2), memset(b, 0xa5, words * 2);
            magna_panel_pack_bf16(k, n, f, ld, t, a, false);
            magna_panel_pack_bf16_h(k, n, h, ld, t, b);
            CHECK(memcmp(a, b, used * 2) == 0, "bf16 %s pack of k %d n %d differs from float32's", t ? "transposed" : "plain", k, n);
            for (size_t i = 0; i < used; i++) bad += a[i] != b[i];
        }
        for (int ta = 0; ta < 2; ta++) { /* A [m, k], or stored [k, m] */
            magna_panel_gemm_bf16(m, n, k, f, ld, ta, 0.37f, a, k, ap, false, c1, n);
            magna_panel_gemm_bf16_h(m, n, k, h, ld, ta, 0.37f, a, k, ap, false, c2, n);
            CHECK(memcmp(c1, c2, (size_t)m * n * 4) == 0, "bf16 A%s of m %d k %d: product differs from float32's",
                  ta ? "^T" : "", m, k);
            for (size_t i = 0; i < (size_t)m * n; i++) bad += c1[i] != c2[i];
        }
        free(f), free(h), free(a), free(b), free(ap), free(c1), free(c2);
    }
    printf("panel bf16 sources: packs and A * alpha (both ways each) from bf16 against float32 of the same values, "
           "5 shapes: %d differ\n", bad);
}

/* A's bf16 rows read in place (magna_panel_gemm_bf16_any) against the same A packed (magna_panel_gemm_bf16_h), with B as rows r..r+k of a
 * bigger pack (bp_k, bp + r / 2 * 64) against B packed alone: the same sums exactly; alpha scales them as they are
 * stored; accumulate adds to C. A ends right after its last row (ASan sees any read past it). And C written in bf16
 * (c16) from A in place, packed and transposed: the same sums rounded, and their column sums. */
static void panel_bf16_rows_and_subpacks(void) {
    if (!magna_panel_available(true)) {
        printf("panel bf16 rows: no avx512_bf16 here, skipped\n");
        return;
    }
    static const int sizes[][3] = {{32, 128, 64}, {32, 40, 17}, {64, 33, 8}, {2, 5, 3}, {16, 70, 9}};
    int bad = 0;
    for (size_t c = 0; c < sizeof sizes / sizeof *sizes; c++) {
        const int k = sizes[c][0], n = sizes[c][1], m = sizes[c][2], r = 4, big = k + 10, ldw = n + 3, lda = k + 6;
        uint16_t *w = malloc((size_t)big * ldw * 2), *a = malloc((size_t)m * lda * 2);
        for (size_t i = 0; i < (size_t)big * ldw; i++) w[i] = to_bf16(2 * magna_rand_uniform(12, (uint64_t)c, i) - 1);
        for (size_t i = 0; i < (size_t)m * lda; i++) a[i] = to_bf16(2 * magna_rand_uniform(13, (uint64_t)c, i) - 1);
        const size_t full_bytes = (magna_panel_b_floats(big, n) * 4 + 63) / 64 * 64;
        uint16_t *full = aligned_alloc(64, full_bytes), *sub = aligned_alloc(64, full_bytes);
        uint32_t *ap = aligned_alloc(64, (magna_panel_a_floats(m, k) * 4 + 63) / 64 * 64);
        float *c1 = calloc((size_t)m * n, 4), *c2 = calloc((size_t)m * n, 4);
        magna_panel_pack_bf16_h(big, n, w, ldw, false, full);
        magna_panel_pack_bf16_h(k, n, w + (size_t)r * ldw, ldw, false, sub);
        CHECK(magna_panel_rows_direct(k, a, lda, 1.0f, true), "rows of k %d, lda %d must be read in place", k, lda);
        magna_panel_gemm_bf16_h(m, n, k, a, lda, false, 1.0f, sub, k, ap, false, c1, n);
        magna_panel_gemm_bf16_any(m, n, k, NULL, a, lda, false, 1.0f, full + r / 2 * 64, big, ap, false, c2, NULL, n, NULL);
        for (size_t i = 0; i < (size_t)m * n; i++) bad += c1[i] != c2[i];
        CHECK(memcmp(c1, c2, (size_t)m * n * 4) == 0, "A in place, m %d n %d k %d: differs from packed A", m, n, k);
        magna_panel_gemm_bf16_any(m, n, k, NULL, a, lda, false, 0.37f, full + r / 2 * 64, big, ap, false, c2, NULL, n,
                                  NULL);
        for (size_t i = 0; i < (size_t)m * n; i++) bad += c2[i] != c1[i] * 0.37f;
        memcpy(c2, c1, (size_t)m * n * 4);
        magna_panel_gemm_bf16_any(m, n, k, NULL, a, lda, false, 1.0f, full + r / 2 * 64, big, ap, true, c2, NULL, n, NULL);
        for (size_t i = 0; i < (size_t)m * n; i++) bad += fabsf(c2[i] - 2 * c1[i]) > 1e-5f * (1 + fabsf(c1[i]));
        CHECK(bad == 0, "A in place, m %d n %d k %d: alpha or accumulate wrong (%d)", m, n, k, bad);
        /* C in bf16 with its column sums, A in place and packed (from float32, and transposed) */
        uint16_t *c16 = malloc((size_t)m * n * 2);
        float *sums = calloc((size_t)n, 4), *at = malloc((size_t)k * m * 4), *af = malloc((size_t)m * lda * 4);
        for (int i = 0; i < m; i++)
            for (int p = 0; p < lda; p++) {
                af[(size_t)i * lda + p] = from_bf16(a[(size_t)i * lda + p]);
                if (p < k) at[(size_t)p * m + i] = af[(size_t)i * lda + p];
            }
        for (int way = 0; way < 3; way++) { /* alpha is applied to the sums in place, to A when packing: 1 there */
            const float alpha = way == 0 ? 0.37f : 1.0f;
            int wrong = 0;
            memset(c16, 0xff, (size_t)m * n * 2);
            for (int j = 0; j < n; j++) sums[j] = 1.0f; /* added to */
            magna_panel_gemm_bf16_any(m, n, k, way == 1 ? af : way == 2 ? at : NULL, way == 0 ? a : NULL,
                                      way == 2 ? m : lda, way == 2, alpha, full + r / 2 * 64, big, ap, false, NULL, c16, n,
                                      sums);
            for (int j = 0; j < n; j++) {
                double want = 1.0;
                for (int i = 0; i < m; i++) {
                    const float c = c1[(size_t)i * n + j] * alpha;
                    wrong += c16[(size_t)i * n + j] != to_bf16(c);
                    want += c;
                }
                wrong += fabs(sums[j] - want) > 1e-5 * (1 + fabs(want));
            }
            CHECK(wrong == 0, "bf16 C, m %d n %d k %d, A %s: values or column sums wrong (%d)", m, n, k,
                  way == 0 ? "in place" : way == 1 ? "packed" : "transposed", wrong);
            bad += wrong;
        }
        free(c16), free(sums), free(at), free(af);
        free(w), free(a), free(full), free(sub), free(ap), free(c1), free(c2);
    }
    CHECK(!magna_panel_rows_direct(3, NULL, 8, 1.0f, false) && !magna_panel_rows_direct(4, NULL, 7, 1.0f, false) &&
              !magna_panel_rows_direct(4, NULL, 8, 0.5f, true),
          "odd k, odd lda or a scaled accumulation must be packed");
    printf("panel bf16 rows: A read in place against packed, B from a bigger pack, alpha and accumulate, 5 shapes: "
           "%d differ\n", bad);
}

int main(void) {
    magna_error err;
    CHECK(magna_runtime_init(&err) == MAGNA_OK, "runtime: %s", err.message);
    printf("%s\n", magna_runtime_info());
    /* OpenBLAS's OpenMP build resets OpenMP's thread count when told its own: ours must survive it */
    CHECK(omp_get_max_threads() == magna_get_threads(), "OpenMP runs %d threads, magna asked for %d",
          omp_get_max_threads(), magna_get_threads());
    magna_cpu_features f = magna_cpu_detect();
    if (f.avx512f && f.avx512bw && f.avx512vl && !getenv("MAGNA_OPENBLAS")) {
        /* the point of loading OpenBLAS ourselves: its AVX-512 kernels on every CPU that has them */
        CHECK(strstr(magna_runtime_info(), "core SkylakeX") || strstr(magna_runtime_info(), "core Cooperlake") ||
                  strstr(magna_runtime_info(), "core Sapphire"),
              "AVX-512 CPU but OpenBLAS runs other kernels: %s", magna_runtime_info());
    }
    for (uint64_t s = 1; s <= 6; s++) sgemm_vs_reference(s * 31);
    sgemm_small_vs_reference();
    reductions_vs_reference();
    graph_matmul_vs_reference(3, 17, 33, 9, false, 5);
    graph_matmul_vs_reference(2, 65, 130, 70, false, 6);
    graph_matmul_vs_reference(4, 7, 31, 12, true, 7);
    graph_matmul_vs_reference(2, 200, 256, 150, true, 8);
    panel_pack_transposed_vs_plain();
    panel_bf16_sources();
    panel_bf16_rows_and_subpacks();
    return check_finish("test_kernels");
}
