/* gemm.cu — C = alpha op(A) op(B) + beta C, row-major, batched: the one GEMM every CUDA op calls.
 *
 * Two implementations behind magna_cuda_gemm:
 *   - our own shared-memory tiled kernel (launch.h's GEMM tiles): the only one under the emulator, and the
 *     reference the cuBLASLt path is checked against on a GPU;
 *   - cuBLASLt (CUDA builds, when the caller passes the handle magna_cuda_blas_create made).
 * Row-major through column-major cuBLASLt: a row-major C [m, n] (ld ldc) is a column-major [n, m], and
 * C^T = op(B)^T op(A)^T, so cuBLASLt gets B as its first operand and A as its second, m and n swapped.
 *
 * bf16 mode: the operands are rounded to bf16 (round to nearest even), products accumulate in float32 and C
 * stays float32. Our kernel rounds as it stages a tile; cuBLASLt needs bf16 matrices, converted (packed) into
 * the handle's staging buffer, which magna_cuda_blas_reserve sizes outside a step from
 * magna_cuda_gemm_bf16_elems. A call whose operands do not fit it runs with CUBLAS_COMPUTE_32F_FAST_16BF on the
 * float32 operands instead (cuBLASLt's own down-conversion: the same rounding, no staging); the environment's
 * MAGNA_GEMM_BF16=fast sends every bf16 call of float32 operands that way, so a GPU run can measure both routes.
 * Operands a graph keeps in bf16 (magna_cuda_gemm_stored: activations, a dC converted once) are read where they
 * are, never staged, and C may be written in bf16 (beta 0); such a call stages only its float32 operand. */
#include "compat.h"
#include "kernels.h"
#include "launch.h"

#ifndef MAGNA_CUDA_EMU
#include <cublasLt.h>
#endif

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

namespace {

MAGNA_HD float round_bf16(float v) { return __bfloat162float(__float2bfloat16(v)); }

/* One TILE_M x TILE_N tile of C per block and batch (launch.h), k in steps of TILE_K through shared memory.
 * Operands outside the matrices stage as 0, so edge tiles need no other case; every thread reaches every
 * __syncthreads (the loops' bounds are the block's, not the thread's). */
/* element i of an operand stored as float32 or (stored16) bf16 */
MAGNA_HD float load_as_float(const void *p, int stored16, int64_t i) {
    return stored16 ? __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]) : static_cast<const float *>(p)[i];
}

template <int BF16>
__global__ void gemm_tiled_kernel(magna_launch_gemm l, int ta, int tb, int k, float alpha, const void *a, int lda,
                                  long long sa, const void *b, int ldb, long long sb, float beta, void *c, int ldc,
                                  long long sc, unsigned stored16, const float *bias) {
    /* stored k-major: the inner loop reads a row of each, a broadcast from as_ and 16 consecutive from bs */
    __shared__ float as_[MAGNA_GEMM_TILE_K][MAGNA_GEMM_TILE_M + 4];
    __shared__ float bs[MAGNA_GEMM_TILE_K][MAGNA_GEMM_TILE_N + 4];
    const uint32_t t = threadIdx.x;
    const int64_t col_tiles = magna_gemm_col_tiles(&l);
    const int64_t row0 = (int64_t)blockIdx.x * MAGNA_GEMM_TILE_M;
    const int a16 = (stored16 & MAGNA_GEMM_A16) != 0, b16 = (stored16 & MAGNA_GEMM_B16) != 0;
    const int c16 = (stored16 & MAGNA_GEMM_C16) != 0;
    for (int64_t z = blockIdx.z; z < l.batch; z += gridDim.z) {
        const int64_t az = z * sa, bz = z * sb, cz = z * sc; /* each batch entry's first element */
        for (int64_t y = blockIdx.y; y < col_tiles; y += gridDim.y) {
            const int64_t col0 = y * MAGNA_GEMM_TILE_N;
            float acc[MAGNA_GEMM_MICRO][MAGNA_GEMM_MICRO];
            for (int r = 0; r < MAGNA_GEMM_MICRO; r++)
                for (int q = 0; q < MAGNA_GEMM_MICRO; q++) acc[r][q] = 0.0f;
            for (int k0 = 0; k0 < k; k0 += MAGNA_GEMM_TILE_K) {
                for (uint32_t e = 0; e < MAGNA_GEMM_LOADS; e++) {
                    uint32_t o, kk;
                    magna_gemm_stage(t, e, !ta, &o, &kk);
                    const int64_t i = row0 + o, kg = k0 + kk;
                    float v = 0.0f;
                    if (i < l.m && kg < k) v = load_as_float(a, a16, az + (ta ? kg * lda + i : i * lda + kg));
                    as_[kk][o] = BF16 ? round_bf16(v) : v;
                    magna_gemm_stage(t, e, tb, &o, &kk);
                    const int64_t j = col0 + o, kb = k0 + kk;
                    v = 0.0f;
                    if (j < l.n && kb < k) v = load_as_float(b, b16, bz + (tb ? j * ldb + kb : kb * ldb + j));
                    bs[kk][o] = BF16 ? round_bf16(v) : v;
                }
                __syncthreads();
                for (int kk = 0; kk < MAGNA_GEMM_TILE_K; kk++) {
                    float av[MAGNA_GEMM_MICRO], bv[MAGNA_GEMM_MICRO];
                    for (int r = 0; r < MAGNA_GEMM_MICRO; r++)
                        av[r] = as_[kk][t / MAGNA_GEMM_SIDE + MAGNA_GEMM_SIDE * r];
                    for (int q = 0; q < MAGNA_GEMM_MICRO; q++)
                        bv[q] = bs[kk][t % MAGNA_GEMM_SIDE + MAGNA_GEMM_SIDE * q];
                    for (int r = 0; r < MAGNA_GEMM_MICRO; r++)
                        for (int q = 0; q < MAGNA_GEMM_MICRO; q++) acc[r][q] = fmaf(av[r], bv[q], acc[r][q]);
                }
                __syncthreads();
            }
            for (int r = 0; r < MAGNA_GEMM_MICRO; r++) {
                const int64_t i = magna_gemm_row(blockIdx.x, t, r);
                if (i >= l.m) continue;
                for (int q = 0; q < MAGNA_GEMM_MICRO; q++) {
                    const int64_t j = magna_gemm_col(y, t, q);
                    if (j >= l.n) continue;
                    const int64_t o = cz + i * ldc + j;
                    /* beta 0 never reads C: it may hold anything, NaN included */
                    float v = beta == 0.0f ? alpha * acc[r][q] : alpha * acc[r][q] + beta * load_as_float(c, c16, o);
                    if (bias) v += bias[j];
                    if (c16)
                        static_cast<__nv_bfloat16 *>(c)[o] = __float2bfloat16(v);
                    else
                        static_cast<float *>(c)[o] = v;
                }
            }
        }
    }
}

int gemm_tiled(void *stream, int ta, int tb, int m, int n, int k, float alpha, const void *a, int lda, long long sa,
               const void *b, int ldb, long long sb, float beta, void *c, int ldc, long long sc, int batch, int bf16,
               unsigned stored16, const float *bias) {
    const magna_launch_gemm l = magna_launch_gemm_tiles(m, n, batch);
    if (l.grid_x == 0) return cudaSuccess;
    const dim3 grid(l.grid_x, l.grid_y, l.grid_z), block(l.block);
    return bf16 ? magna_cuda_launch(grid, block, 0, stream, gemm_tiled_kernel<1>, l, ta, tb, k, alpha, a, lda, sa, b,
                                    ldb, sb, beta, c, ldc, sc, stored16, bias)
                : magna_cuda_launch(grid, block, 0, stream, gemm_tiled_kernel<0>, l, ta, tb, k, alpha, a, lda, sa, b,
                                    ldb, sb, beta, c, ldc, sc, stored16, bias);
}

#ifndef MAGNA_CUDA_EMU /* (cuBLASLt's fallback; the emulator's GEMM is our kernel, which adds the bias itself) */
/* C [m rows, ld apart][n] += bias[column], C float32 or bf16 */
template <class T>
__global__ void add_bias_kernel(magna_launch_1d l, int n, int ldc, const float *__restrict__ bias, T *__restrict__ c) {
    const int64_t step = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += step) {
        const int64_t r = i / n, j = i - r * n;
        T *at = c + r * ldc + j;
        magna_store(at, magna_as_float(*at) + bias[j]);
    }
}

int add_bias(void *stream, void *c, bool c16, int m, int n, int ldc, const float *bias) {
    const magna_launch_1d l = magna_launch_elementwise((int64_t)m * n, 1);
    if (l.grid == 0) return cudaSuccess;
    const dim3 grid(l.grid), block(l.block);
    return c16 ? magna_cuda_launch(grid, block, 0, stream, add_bias_kernel<__nv_bfloat16>, l, n, ldc, bias,
                                   static_cast<__nv_bfloat16 *>(c))
               : magna_cuda_launch(grid, block, 0, stream, add_bias_kernel<float>, l, n, ldc, bias,
                                   static_cast<float *>(c));
}
#endif

/* dst [batch][rows][cols] (packed) = bf16(src), src's rows ld apart and batches stride apart; a packed src
 * (FLAT) is copied element for element, others are indexed by divisions in I (32 bits when they fit) */
template <int FLAT, class I>
__global__ void to_bf16_kernel(magna_launch_1d l, const float *__restrict__ src, int ld, long long stride, int rows,
                               int cols, __nv_bfloat16 *__restrict__ dst) {
    const int64_t step = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += step) {
        if (FLAT) {
            dst[i] = __float2bfloat16(src[i]);
        } else {
            const I q = (I)i / (I)cols, c = (I)i - q * (I)cols, z = q / (I)rows, r = q - z * (I)rows;
            dst[i] = __float2bfloat16(src[(int64_t)z * stride + (int64_t)r * ld + (int64_t)c]);
        }
    }
}

int to_bf16(void *stream, const float *src, int ld, long long stride, int rows, int cols, int batch, __nv_bfloat16 *dst) {
    const int64_t n = (int64_t)rows * cols * batch;
    const magna_launch_1d l = magna_launch_elementwise(n, 1);
    if (l.grid == 0) return cudaSuccess;
    const dim3 grid(l.grid), block(l.block);
    if (ld == cols && (batch == 1 || stride == (long long)rows * cols))
        return magna_cuda_launch(grid, block, 0, stream, to_bf16_kernel<1, int64_t>, l, src, ld, stride, rows, cols, dst);
    return n <= (int64_t)UINT32_MAX
               ? magna_cuda_launch(grid, block, 0, stream, to_bf16_kernel<0, uint32_t>, l, src, ld, stride, rows, cols, dst)
               : magna_cuda_launch(grid, block, 0, stream, to_bf16_kernel<0, int64_t>, l, src, ld, stride, rows, cols, dst);
}

} // namespace

#ifndef MAGNA_CUDA_EMU
/* ---- cuBLASLt ------------------------------------------------------------------------------------------ */
namespace {

/* A call's shape: what its descriptors and chosen algorithm depend on. */
struct lt_key {
    int ta, tb, m, n, k, lda, ldb, ldc, batch;
    long long sa, sb, sc;
    int mode;        /* 0 float32, 1 bf16 staged (packed: lda, ldb, sa, sb are the packed ones), 2 FAST_16BF */
    unsigned c16;    /* MAGNA_GEMM_C16: C is bf16 (mode 1, beta 0) */
    int bias;        /* the BIAS epilogue: + bias[column] (float32), beta 0 */
    int align_a, align_b, align_c; /* bytes, what the pointers (and batch strides) guarantee */
    int beta_zero;
    bool operator==(const lt_key &o) const {
        return ta == o.ta && tb == o.tb && m == o.m && n == o.n && k == o.k && lda == o.lda && ldb == o.ldb &&
               ldc == o.ldc && batch == o.batch && sa == o.sa && sb == o.sb && sc == o.sc && mode == o.mode && c16 == o.c16 && bias == o.bias &&
               align_a == o.align_a && align_b == o.align_b && align_c == o.align_c && beta_zero == o.beta_zero;
    }
};

struct lt_plan {
    lt_key key;
    bool used;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc; /* cuBLASLt's A (our B), B (our A), C */
    cublasLtMatmulAlgo_t algo;
};

enum { LT_PLANS = 64, LT_WORKSPACE = 32 << 20 /* what NVIDIA suggests for Hopper */ };

} // namespace

struct magna_cuda_blas {
    cublasLtHandle_t lt;
    void *workspace;
    __nv_bfloat16 *stage; /* bf16 copies of the operands (magna_cuda_blas_reserve) */
    size_t stage_elems;
    lt_plan plans[LT_PLANS]; /* the shapes seen, so a step pays no heuristic query (round-robin reuse) */
    int next_plan;
    bool fast16; /* MAGNA_GEMM_BF16=fast: bf16 calls of float32 operands through FAST_16BF, not staged */
};

namespace {

void plan_release(lt_plan *p) {
    if (!p->used) return;
    cublasLtMatrixLayoutDestroy(p->la), cublasLtMatrixLayoutDestroy(p->lb), cublasLtMatrixLayoutDestroy(p->lc);
    cublasLtMatmulDescDestroy(p->op);
    p->used = false;
}

/* the largest power of two up to 256 dividing the address (and the batch stride in bytes, when batched) */
int alignment(const void *p, long long stride_elems, size_t elem_bytes, int batch) {
    uintptr_t v = reinterpret_cast<uintptr_t>(p);
    if (batch > 1 && stride_elems) v |= (uintptr_t)(stride_elems * (long long)elem_bytes);
    int al = 1;
    while (al < 256 && !(v & (uintptr_t)al)) al <<= 1;
    return al;
}

cublasStatus_t layout(cublasLtMatrixLayout_t *l, cudaDataType_t type, long long rows, long long cols, long long ld,
                      int batch, long long stride) {
    cublasStatus_t s = cublasLtMatrixLayoutCreate(l, type, rows, cols, ld);
    if (s != CUBLAS_STATUS_SUCCESS || batch <= 1) return s;
    int32_t count = batch;
    int64_t st = stride;
    s = cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &st, sizeof st);
    return s;
}

/* Descriptors and the heuristic's first algorithm for a key; false when cuBLASLt has none for it. */
bool plan_make(magna_cuda_blas *h, const lt_key &k, lt_plan *p) {
    const cublasComputeType_t compute = k.mode == 2 ? CUBLAS_COMPUTE_32F_FAST_16BF : CUBLAS_COMPUTE_32F;
    const cudaDataType_t in = k.mode == 1 ? CUDA_R_16BF : CUDA_R_32F;
    p->key = k;
    p->la = p->lb = p->lc = NULL, p->op = NULL;
    bool ok = cublasLtMatmulDescCreate(&p->op, compute, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS;
    /* cuBLASLt's A is our B (row-major [tb ? n : k, tb ? k : n] is column-major with rows and cols swapped) */
    const cublasOperation_t opa = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (ok)
        ok = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa) == CUBLAS_STATUS_SUCCESS &&
             cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb) == CUBLAS_STATUS_SUCCESS;
    if (ok && k.bias) { /* + bias per row of cuBLASLt's D, which is per column of our row-major C */
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        const cudaDataType_t bias_type = CUDA_R_32F;
        ok = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) == CUBLAS_STATUS_SUCCESS &&
             cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type) ==
                 CUBLAS_STATUS_SUCCESS;
    }
    const long long b_rows = k.tb ? k.n : k.k, b_cols = k.tb ? k.k : k.n;
    const long long a_rows = k.ta ? k.k : k.m, a_cols = k.ta ? k.m : k.k;
    ok = ok && layout(&p->la, in, b_cols, b_rows, k.ldb, k.batch, k.sb) == CUBLAS_STATUS_SUCCESS;
    ok = ok && layout(&p->lb, in, a_cols, a_rows, k.lda, k.batch, k.sa) == CUBLAS_STATUS_SUCCESS;
    ok = ok && layout(&p->lc, k.c16 ? CUDA_R_16BF : CUDA_R_32F, k.n, k.m, k.ldc, k.batch, k.sc) == CUBLAS_STATUS_SUCCESS;
    cublasLtMatmulPreference_t pref = NULL;
    ok = ok && cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS;
    if (ok) {
        const uint64_t ws = LT_WORKSPACE;
        const uint32_t al_a = (uint32_t)k.align_b, al_b = (uint32_t)k.align_a, al_c = (uint32_t)k.align_c;
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
        /* the heuristic assumes 256-byte aligned matrices unless told: say what these pointers are */
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c);
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c);
        cublasLtMatmulHeuristicResult_t res;
        int found = 0;
        ok = cublasLtMatmulAlgoGetHeuristic(h->lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &found) ==
                 CUBLAS_STATUS_SUCCESS &&
             found > 0;
        if (ok) p->algo = res.algo;
    }
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    p->used = true;
    if (!ok) plan_release(p);
    return ok;
}

lt_plan *plan_for(magna_cuda_blas *h, const lt_key &k) {
    for (int i = 0; i < LT_PLANS; i++)
        if (h->plans[i].used && h->plans[i].key == k) return &h->plans[i];
    lt_plan *p = &h->plans[h->next_plan];
    h->next_plan = (h->next_plan + 1) % LT_PLANS;
    plan_release(p);
    return plan_make(h, k, p) ? p : NULL;
}

} // namespace
#endif

/* bf16 elements one call's staged operands take (each packed, the second at a 16-byte boundary) */
extern "C" size_t magna_cuda_gemm_bf16_elems(int ta, int tb, int m, int n, int k, long long sa, long long sb, int batch) {
    (void)ta, (void)tb;
    if (m <= 0 || n <= 0 || k <= 0 || batch <= 0) return 0;
    const size_t ea = (size_t)m * k * (size_t)(sa ? batch : 1), eb = (size_t)k * n * (size_t)(sb ? batch : 1);
    return ((ea + 7) & ~(size_t)7) + eb;
}

extern "C" int magna_cuda_blas_create(void **blas) {
    *blas = NULL;
#ifdef MAGNA_CUDA_EMU
    return cudaSuccess; /* no cuBLASLt: every GEMM runs our kernel */
#else
    magna_cuda_blas *h = static_cast<magna_cuda_blas *>(calloc(1, sizeof *h));
    if (!h) return cudaErrorMemoryAllocation;
    if (cublasLtCreate(&h->lt) != CUBLAS_STATUS_SUCCESS) {
        free(h);
        return cudaErrorInitializationError;
    }
    const cudaError_t e = cudaMalloc(&h->workspace, LT_WORKSPACE);
    if (e != cudaSuccess) {
        cublasLtDestroy(h->lt);
        free(h);
        return e;
    }
    /* which of the two bf16 routes runs, for a GPU to measure: staged copies (default) or cuBLASLt's own
     * down-conversion */
    const char *route = getenv("MAGNA_GEMM_BF16");
    h->fast16 = route && !strcmp(route, "fast");
    *blas = h;
    return cudaSuccess;
#endif
}

extern "C" int magna_cuda_blas_reserve(void *blas, size_t bf16_elems) {
#ifdef MAGNA_CUDA_EMU
    (void)blas, (void)bf16_elems;
    return cudaSuccess;
#else
    magna_cuda_blas *h = static_cast<magna_cuda_blas *>(blas);
    /* (fast16 too: a call with an operand stored in bf16 cannot go through FAST_16BF and stages the others) */
    if (!h || bf16_elems <= h->stage_elems) return cudaSuccess;
    cudaError_t e = cudaDeviceSynchronize(); /* the old buffer may still be read by queued work */
    if (e != cudaSuccess) return e;
    cudaFree(h->stage);
    h->stage = NULL, h->stage_elems = 0;
    e = cudaMalloc(reinterpret_cast<void **>(&h->stage), bf16_elems * sizeof(__nv_bfloat16));
    if (e == cudaSuccess) h->stage_elems = bf16_elems;
    return e;
#endif
}

extern "C" void magna_cuda_blas_destroy(void **blas) {
#ifndef MAGNA_CUDA_EMU
    magna_cuda_blas *h = static_cast<magna_cuda_blas *>(*blas);
    if (h) {
        cudaDeviceSynchronize();
        for (int i = 0; i < LT_PLANS; i++) plan_release(&h->plans[i]);
        cudaFree(h->stage), cudaFree(h->workspace);
        cublasLtDestroy(h->lt);
        free(h);
    }
#endif
    *blas = NULL;
}

static int gemm_any(void *blas, void *stream, int ta, int tb, int m, int n, int k, float alpha, const void *a, int lda,
                    long long sa, const void *b, int ldb, long long sb, float beta, void *c, int ldc, long long sc,
                    int batch, int bf16, unsigned stored16, const float *bias) {
    if (m < 0 || n < 0 || k < 0 || batch < 0) return cudaErrorInvalidValue;
    /* bf16 storage is mixed precision's (products in bf16); a bf16 C is written, never added to */
    if (stored16 && (!bf16 || ((stored16 & MAGNA_GEMM_C16) && beta != 0.0f))) return cudaErrorInvalidValue;
    if (bias && (beta != 0.0f || batch != 1)) return cudaErrorInvalidValue; /* the epilogue: one product, written */
    if (m == 0 || n == 0 || batch == 0) return cudaSuccess;
#ifndef MAGNA_CUDA_EMU
    magna_cuda_blas *h = static_cast<magna_cuda_blas *>(blas);
    /* k = 0 (C = beta C) stays with our kernel, which handles it without a special case */
    if (h && k > 0) {
        const int a16 = (stored16 & MAGNA_GEMM_A16) != 0, b16 = (stored16 & MAGNA_GEMM_B16) != 0;
        lt_key key = {ta, tb, m, n, k, lda, ldb, ldc, batch, sa, sb, sc, 0, stored16 & MAGNA_GEMM_C16, bias != NULL,
                      0, 0, 0, beta == 0.0f};
        const void *pa = a, *pb = b;
        const size_t need = bf16 ? magna_cuda_gemm_bf16_elems(ta, tb, m, n, k, sa, sb, batch) : 0;
        /* bf16 operands: those stored as bf16 are read where they are; the others are packed into the staging
         * (A [ta ? k : m][ta ? m : k], B [tb ? n : k][tb ? k : n]). Without room there, FAST_16BF converts the
         * float32 ones itself, which it can only when no operand or result is stored bf16. */
        if (bf16 && ((!h->fast16 && need <= h->stage_elems) || stored16)) {
            const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
            const size_t ea = (size_t)m * k * (size_t)(sa ? batch : 1);
            __nv_bfloat16 *sta = h->stage, *stb = h->stage + ((ea + 7) & ~(size_t)7);
            if (!a16 || !b16) {
                if (need > h->stage_elems) return cudaErrorInvalidValue; /* compile reserves every call's need */
            }
            int e = a16 ? cudaSuccess : to_bf16(stream, static_cast<const float *>(a), lda, sa, ar, ac, sa ? batch : 1, sta);
            if (e == cudaSuccess && !b16)
                e = to_bf16(stream, static_cast<const float *>(b), ldb, sb, br, bc, sb ? batch : 1, stb);
            if (e != cudaSuccess) return e;
            key.mode = 1;
            if (!a16) key.lda = ac, key.sa = sa ? (long long)ar * ac : 0, pa = sta;
            if (!b16) key.ldb = bc, key.sb = sb ? (long long)br * bc : 0, pb = stb;
        } else if (bf16) {
            key.mode = 2;
        }
        const size_t in_bytes = key.mode == 1 ? sizeof(__nv_bfloat16) : sizeof(float);
        key.align_a = alignment(pa, key.sa, in_bytes, batch), key.align_b = alignment(pb, key.sb, in_bytes, batch);
        key.align_c = alignment(c, sc, key.c16 ? sizeof(__nv_bfloat16) : sizeof(float), batch);
        lt_plan *p = plan_for(h, key);
        if (p && bias &&
            cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias) !=
                CUBLAS_STATUS_SUCCESS)
            p = NULL;
        if (p) {
            const cublasStatus_t s =
                cublasLtMatmul(h->lt, p->op, &alpha, pb, p->la, pa, p->lb, &beta, c, p->lc, c, p->lc, &p->algo,
                               h->workspace, LT_WORKSPACE, static_cast<cudaStream_t>(stream));
            return s == CUBLAS_STATUS_SUCCESS ? cudaSuccess : cudaErrorLaunchFailure;
        }
        /* no cuBLASLt algorithm with the BIAS epilogue here: the product through cuBLASLt without it, then the
         * bias in a pass of its own (in bf16 C, added to the rounded product: one rounding more) */
        if (bias) {
            const int e = gemm_any(blas, stream, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, 0.0f, c, ldc, sc,
                                   batch, bf16, stored16, NULL);
            return e ? e : add_bias(stream, c, key.c16 != 0, m, n, ldc, bias);
        }
        /* no cuBLASLt algorithm for this shape (odd strides or alignment): our kernel takes it */
    }
#else
    (void)blas;
#endif
    return gemm_tiled(stream, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch, bf16, stored16,
                      bias);
}

extern "C" int magna_cuda_gemm_stored(void *blas, void *stream, int ta, int tb, int m, int n, int k, float alpha,
                                      const void *a, int lda, long long sa, const void *b, int ldb, long long sb,
                                      float beta, void *c, int ldc, long long sc, int batch, int bf16,
                                      unsigned stored16) {
    return gemm_any(blas, stream, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch, bf16,
                    stored16, NULL);
}

extern "C" int magna_cuda_gemm_bias(void *blas, void *stream, int ta, int tb, int m, int n, int k, const void *a, int lda,
                                    const void *b, int ldb, const float *bias, void *c, int ldc, int bf16,
                                    unsigned stored16) {
    if (!bias) return cudaErrorInvalidValue;
    return gemm_any(blas, stream, ta, tb, m, n, k, 1.0f, a, lda, 0, b, ldb, 0, 0.0f, c, ldc, 0, 1, bf16, stored16, bias);
}

extern "C" int magna_cuda_to_bf16(const float *src, int64_t n, void *dst, void *stream) {
    if (n < 0) return cudaErrorInvalidValue;
    for (int64_t at = 0; at < n; at += (int64_t)1 << 30) { /* (the kernel's sizes are ints) */
        const int c = (int)(n - at < ((int64_t)1 << 30) ? n - at : (int64_t)1 << 30);
        const int e = to_bf16(stream, src + at, c, 0, 1, c, 1, static_cast<__nv_bfloat16 *>(dst) + at);
        if (e) return e;
    }
    return cudaSuccess;
}

extern "C" int magna_cuda_gemm(void *blas, void *stream, int ta, int tb, int m, int n, int k, float alpha,
                               const float *a, int lda, long long sa, const float *b, int ldb, long long sb,
                               float beta, float *c, int ldc, long long sc, int batch, int bf16) {
    return magna_cuda_gemm_stored(blas, stream, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc,
                                  batch, bf16, 0);
}
