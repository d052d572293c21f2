/* gemm_bf16.c — see gemm_bf16.h. One oneDNN matmul primitive per GEMM shape, made at an op's infer; its
 * memory objects' handles are set at every run (the buffers are the graph's, planned), and its scratchpad is
 * the caller's (dnnl_scratchpad_mode_user: a step must not allocate). oneDNN sizes its work for
 * omp_get_max_threads() when the primitive is made, so callers run it only at that thread count. */
#include "gemm_bf16.h"

#include "onednn.h"

#include <stdlib.h>
#include <string.h>

void magna_colsum_combine(float *sum, const float *partial, int64_t parts, int64_t cols, bool assign) {
    if (assign) memset(sum, 0, (size_t)cols * sizeof *sum);
    for (int64_t p = 0; p < parts; p++) {
        const float *part = partial + p * cols;
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) sum[j] += part[j];
    }
}

#ifdef MAGNA_HAVE_DNNL
#include "../core/simd_math.h"

#include <immintrin.h>

struct magna_gemm_bf16 {
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, dst, bias, scratch;
};

bool magna_gemm_bf16_wanted(const magna_graph *g) {
    return g->bf16 && g->device == MAGNA_DEVICE_CPU && magna_cpu_detect().avx512_bf16;
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) static void to_bf16_chunk(uint16_t *dst, const float *src,
                                                                                  int64_t n) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
    if (i < n) { /* the tail, through a masked load of the rest */
        const int64_t left = n - i;
        const __mmask16 lo = (__mmask16)(left >= 16 ? 0xffffu : (1u << left) - 1);
        const __mmask16 hi = (__mmask16)(left > 16 ? (1u << (left - 16)) - 1 : 0u);
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + i + 16), _mm512_maskz_loadu_ps(lo, src + i));
        _mm512_mask_storeu_epi16(dst + i, (__mmask32)(((uint64_t)1 << left) - 1), (__m512i)v);
    }
}

void magna_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    const int64_t chunk = 1 << 14, chunks = (n + chunk - 1) / chunk;
    PARALLEL_FOR(n > 32768, c, chunks, {
        const int64_t i = c * chunk;
        to_bf16_chunk(dst + i, src + i, n - i < chunk ? n - i : chunk);
    });
}

void magna_to_bf16_row(uint16_t *dst, const float *src, int64_t n) { to_bf16_chunk(dst, src, n); }

MAGNA_T512BW void magna_from_bf16_row(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = magna_mask16(n - i);
        _mm512_mask_storeu_ps(dst + i, m, magna_load_bf16x16(src + i, m));
    }
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) void magna_to_bf16_row_sum(uint16_t *dst, const float *src,
                                                                                  int64_t n, float *sum) {
    for (int64_t j = 0; j < n; j += 32) {
        const int64_t w = n - j < 32 ? n - j : 32;
        const __mmask16 lo = (__mmask16)(w >= 16 ? 0xffffu : (1u << w) - 1);
        const __mmask16 hi = (__mmask16)(w > 16 ? (w >= 32 ? 0xffffu : (1u << (w - 16)) - 1) : 0u);
        const __m512 a = _mm512_maskz_loadu_ps(lo, src + j), b = _mm512_maskz_loadu_ps(hi, src + j + 16);
        _mm512_mask_storeu_ps(sum + j, lo, _mm512_add_ps(_mm512_maskz_loadu_ps(lo, sum + j), a));
        _mm512_mask_storeu_ps(sum + j + 16, hi, _mm512_add_ps(_mm512_maskz_loadu_ps(hi, sum + j + 16), b));
        _mm512_mask_storeu_epi16(dst + j, (__mmask32)(w >= 32 ? 0xffffffffu : (1u << w) - 1),
                                 (__m512i)_mm512_cvtne2ps_pbh(b, a));
    }
}

void magna_to_bf16_colsum(uint16_t *dst, const float *src, int64_t rows, int64_t cols, float *sum, bool assign,
                          float *partial) {
    PARALLEL_FOR(rows * cols > 32768, p, MAGNA_COLSUM_PARTS, {
        float *part = partial + p * cols;
        memset(part, 0, (size_t)cols * sizeof *part);
        for (int64_t r = rows * p / MAGNA_COLSUM_PARTS; r < rows * (p + 1) / MAGNA_COLSUM_PARTS; r++)
            magna_to_bf16_row_sum(dst + r * cols, src + r * cols, cols, part);
    });
    magna_colsum_combine(sum, partial, MAGNA_COLSUM_PARTS, cols, assign);
}

void magna_to_bf16_time_major(uint16_t *dst, const float *src, int64_t B, int64_t T, int64_t cols) {
    PARALLEL_FOR(B * T * cols > 32768, r, B * T, {
        const int64_t b = r / T, t = r % T;
        to_bf16_chunk(dst + (t * B + b) * cols, src + r * cols, cols);
    });
}

/* A [rows, cols] view: row-major, or the transpose of a row-major [cols, rows] (transposed). */
static dnnl_status_t view_md(dnnl_memory_desc_t *md, int64_t rows, int64_t cols, bool transposed, dnnl_data_type_t t) {
    const dnnl_dims_t dims = {rows, cols}, strides = {transposed ? 1 : cols, transposed ? rows : 1};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, t, strides);
}

magna_gemm_bf16 *magna_gemm_bf16_make(int64_t m, int64_t n, int64_t k, bool ta, bool tb, bool add, bool bias,
                                      bool c_bf16, size_t *scratch_bytes, int *status) {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    dnnl_status_t s = magna_dnnl_engine(&eng, &stream);
    magna_gemm_bf16 *p = calloc(1, sizeof *p);
    if (!p) s = dnnl_out_of_memory;
    dnnl_memory_desc_t src, wei, dst, bias_md, scratch_md;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if (s == dnnl_success) s = view_md(&src, m, k, ta, dnnl_bf16);
    if (s == dnnl_success) s = view_md(&wei, k, n, tb, dnnl_bf16);
    if (s == dnnl_success) s = view_md(&dst, m, n, false, c_bf16 ? dnnl_bf16 : dnnl_f32);
    if (s == dnnl_success && bias) s = view_md(&bias_md, 1, n, false, dnnl_f32);
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&desc, &src, &wei, bias ? &bias_md : NULL, &dst);
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && add) { /* C += the product: how gradients that accumulate are added */
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success) s = dnnl_post_ops_append_sum(po, 1.0f);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
    }
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&p->prim, pd);
    if (s == dnnl_success) s = dnnl_memory_create(&p->src, &src, eng, DNNL_MEMORY_NONE);
    if (s == dnnl_success) s = dnnl_memory_create(&p->wei, &wei, eng, DNNL_MEMORY_NONE);
    if (s == dnnl_success) s = dnnl_memory_create(&p->dst, &dst, eng, DNNL_MEMORY_NONE);
    if (s == dnnl_success && bias) s = dnnl_memory_create(&p->bias, &bias_md, eng, DNNL_MEMORY_NONE);
    if (s == dnnl_success) {
        const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        const size_t bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
        if (bytes > *scratch_bytes) *scratch_bytes = bytes;
        if (bytes) {
            const dnnl_dims_t sd = {(dnnl_dim_t)bytes};
            s = dnnl_memory_desc_init_by_tag(&scratch_md, 1, sd, dnnl_u8, dnnl_x);
            if (s == dnnl_success) s = dnnl_memory_create(&p->scratch, &scratch_md, eng, DNNL_MEMORY_NONE);
        }
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    *status = (int)s;
    if (s != dnnl_success) {
        magna_gemm_bf16_free(p);
        return NULL;
    }
    return p;
}

int magna_gemm_bf16_run(const magna_gemm_bf16 *p, void *scratch, const uint16_t *a, const uint16_t *b, void *c,
                        const float *bias) {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    dnnl_status_t s = magna_dnnl_engine(&eng, &stream);
    if (s == dnnl_success) s = dnnl_memory_set_data_handle(p->src, (void *)a);
    if (s == dnnl_success) s = dnnl_memory_set_data_handle(p->wei, (void *)b);
    if (s == dnnl_success) s = dnnl_memory_set_data_handle(p->dst, c);
    if (s == dnnl_success && p->bias) s = dnnl_memory_set_data_handle(p->bias, (void *)bias);
    if (s == dnnl_success && p->scratch) s = dnnl_memory_set_data_handle(p->scratch, scratch);
    if (s != dnnl_success) return (int)s;
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, p->src}, {DNNL_ARG_WEIGHTS, p->wei}, {DNNL_ARG_DST, p->dst}};
    int na = 3;
    if (p->bias) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, p->bias};
    if (p->scratch) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, p->scratch};
    return (int)dnnl_primitive_execute(p->prim, stream, na, args);
}

void magna_gemm_bf16_free(magna_gemm_bf16 *p) {
    if (!p) return;
    if (p->prim) dnnl_primitive_destroy(p->prim);
    dnnl_memory_t mems[5] = {p->src, p->wei, p->dst, p->bias, p->scratch};
    for (int i = 0; i < 5; i++)
        if (mems[i]) dnnl_memory_destroy(mems[i]);
    free(p);
}

const char *magna_gemm_bf16_status(int status) { return magna_dnnl_status_str((dnnl_status_t)status); }

#else /* without oneDNN: never wanted, never made */
struct magna_gemm_bf16 {
    int unused;
};
bool magna_gemm_bf16_wanted(const magna_graph *g) {
    (void)g;
    return false;
}
void magna_to_bf16(uint16_t *dst, const float *src, int64_t n) { (void)dst, (void)src, (void)n; }
void magna_to_bf16_time_major(uint16_t *dst, const float *src, int64_t B, int64_t T, int64_t cols) {
    (void)dst, (void)src, (void)B, (void)T, (void)cols;
}
void magna_to_bf16_row(uint16_t *dst, const float *src, int64_t n) { (void)dst, (void)src, (void)n; }
void magna_from_bf16_row(float *dst, const uint16_t *src, int64_t n) { (void)dst, (void)src, (void)n; }
void magna_to_bf16_row_sum(uint16_t *dst, const float *src, int64_t n, float *sum) {
    (void)dst, (void)src, (void)n, (void)sum;
}
void magna_to_bf16_colsum(uint16_t *dst, const float *src, int64_t rows, int64_t cols, float *sum, bool assign,
                          float *partial) {
    (void)dst, (void)src, (void)rows, (void)cols, (void)sum, (void)assign, (void)partial;
}
magna_gemm_bf16 *magna_gemm_bf16_make(int64_t m, int64_t n, int64_t k, bool ta, bool tb, bool add, bool bias,
                                      bool c_bf16, size_t *scratch_bytes, int *status) {
    (void)m, (void)n, (void)k, (void)ta, (void)tb, (void)add, (void)bias, (void)c_bf16, (void)scratch_bytes;
    *status = -1;
    return NULL;
}
int magna_gemm_bf16_run(const magna_gemm_bf16 *p, void *scratch, const uint16_t *a, const uint16_t *b, float *c,
                        const float *bias) {
    (void)p, (void)scratch, (void)a, (void)b, (void)c, (void)bias;
    return -1;
}
void magna_gemm_bf16_free(magna_gemm_bf16 *p) { (void)p; }
const char *magna_gemm_bf16_status(int status) {
    (void)status;
    return "built without oneDNN";
}
#endif
