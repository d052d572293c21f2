/* attention.cu — flash-style multi-head attention, forward and backward, matching src/ops/attention.c:
 * q [B, Tq, C], k and v [B, Tk, C], heads side by side in C (head h owns columns h*hd .. h*hd+hd-1);
 * query i of batch b sees keys j < min(L_b, i + 1 + Tk - Tq) (causal), or j < L_b, where L_b is the key
 * length (Tk without a mask); a row that sees no key outputs zeros.
 *
 * The Tq x Tk scores never reach device memory. Forward keeps one float per query row, the log-sum-exp
 * of its scores (lse); backward recomputes the probabilities P = exp(S - lse) tile by tile, FlashAttention-2
 * style, deterministically (no atomics): a kernel for delta = rowsum(dO * O), one for dQ (a block per query
 * tile, looping over key tiles), one for dK and dV (a block per key tile, looping over query tiles).
 *
 * Threads (launch.h): a row (query, or key in dK/dV) is owned by `P` neighbouring threads, part p holding
 * the head-dim elements d = p, p + P, ...; a dot product is P partial sums added by shuffles. The fast path
 * (hd <= 128) keeps DPT elements a thread in registers and stages tiles of 32 rows of the other side in
 * shared memory, zero-padded to P * DPT columns; the generic path (DPT = 0, any hd) is a warp per row that
 * reads vectors from global memory and accumulates in global memory (output, or the gradients).
 *
 * bf16 mode: q, k and v are rounded to bf16 where they enter a product; scores, softmax, dO and every
 * accumulation stay float32. At head dims that are multiples of 16 up to 128 bf16 mode runs tensor-core kernels
 * instead, which also round P, dO and dS to bf16 for their products: by default attention_mma.cu's (mma.sync,
 * FlashAttention-2's register-resident softmax), or the wmma ones further down (MAGNA_CUDA_ATTENTION=wmma, or
 * where a GPU's mma.sync fragment layout is not the documented one). */
#include "attention_shared.h"

#ifdef MAGNA_CUDA_EMU
#include "emu/wmma_emu.h"
#else
#include <mma.h>
#endif

/* nvcc unrolls the register loops (the arrays must stay in registers); g++ (the emulator) is left to itself */
#ifdef __CUDACC__
#define UNROLL _Pragma("unroll")
#define UNROLL_4 _Pragma("unroll 4")
#else
#define UNROLL
#define UNROLL_4
#endif

using namespace magna_attention;

namespace {

constexpr int KT = 32; /* rows of a staged tile: launch.h's tile_k */

/* q, k or v as float32: the CUDA-core kernels' (bf16 storage goes only to the tensor-core ones) */
__device__ __forceinline__ const float *fptr(const void *p) { return static_cast<const float *>(p); }

__device__ __forceinline__ float rnd(float x, int bf16) { return bf16 ? __bfloat162float(__float2bfloat16(x)) : x; }

/* the sum over the P threads of a row (P divides 32; every lane of the warp takes part) */
template <int P> __device__ __forceinline__ float row_sum(float v) {
UNROLL
    for (int o = P / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* rows [r0, r0 + n) of a [*, C] matrix's head columns (src, starting at the head) into a tile of KT rows
 * of LD floats, rounded when asked; rows past n and columns past hd are zeros */
template <int LD> __device__ __forceinline__ void stage(float *tile, const float *src, int C, int r0, int n, int hd,
                                                        int bf16) {
    for (int e = threadIdx.x; e < KT * LD; e += blockDim.x) {
        const int r = e / LD, d = e - r * LD;
        tile[e] = r < n && d < hd ? rnd(src[(size_t)(r0 + r) * C + d], bf16) : 0.0f;
    }
}

/* ---- forward: out, lse ------------------------------------------------------------------------------ */

template <int DPT, int P> __global__ void __launch_bounds__(MAGNA_ATTN_BLOCK) attn_forward_kernel(attn_k a) {
    MAGNA_DYNAMIC_SHARED(float, smem);
    constexpr int LD = DPT * P, NR = DPT > 0 ? DPT : 1;
    const magna_launch_attention l = a.l;
    const int hd = (int)l.hd, Tq = (int)l.tq, Tk = (int)l.tk, C = a.C;
    const int part = threadIdx.x % P, i = (int)magna_attn_query(&l, blockIdx.x, threadIdx.x);
    const int q_last = (int)magna_attn_q_end(&l, blockIdx.x) - 1;
    float *Ks = smem, *Vs = smem + KT * LD;
    for (int64_t bh = blockIdx.y; bh < l.bh; bh += magna_attn_bh_stride(&l)) {
        const int b = (int)(bh / a.H), h = (int)(bh % a.H);
        const int L = a.lengths ? a.lengths[b] : Tk;
        const int vis = i < Tq ? visible(l, i, L) : 0, kend = visible(l, q_last, L); /* kend: the block's */
        const size_t qoff = ((size_t)b * Tq + (i < Tq ? i : 0)) * C + (size_t)h * hd;
        const float *qrow = fptr(a.q) + qoff, *kb = fptr(a.k) + (size_t)b * Tk * C + (size_t)h * hd;
        const float *vb = fptr(a.v) + (size_t)b * Tk * C + (size_t)h * hd;
        float *orow = static_cast<float *>(a.o) + qoff;
        float qr[NR], acc[NR];
        if constexpr (DPT > 0) {
UNROLL
            for (int e = 0; e < DPT; e++) {
                const int d = part + P * e;
                qr[e] = i < Tq && d < hd ? rnd(qrow[d], a.bf16) : 0.0f;
                acc[e] = 0.0f;
            }
        } else if (i < Tq) {
            for (int d = part; d < hd; d += P) orow[d] = 0.0f;
        }
        float m = -INFINITY, lsum = 0.0f;
        for (int k0 = 0; k0 < kend; k0 += KT) {
            const int kn = kend - k0 < KT ? kend - k0 : KT;
            float s[KT];
            float mt = -INFINITY;
            if constexpr (DPT > 0) {
                __syncthreads(); /* everyone is done with the last tile */
                stage<LD>(Ks, kb, C, k0, kn, hd, a.bf16);
                stage<LD>(Vs, vb, C, k0, kn, hd, a.bf16);
                __syncthreads();
UNROLL
                for (int jj = 0; jj < KT; jj++) {
                    float ps = 0.0f;
UNROLL
                    for (int e = 0; e < DPT; e++) ps += qr[e] * Ks[jj * LD + part + P * e];
                    const float sc = row_sum<P>(ps) * a.scale;
                    s[jj] = k0 + jj < vis ? sc : -INFINITY;
                    mt = fmaxf(mt, s[jj]);
                }
            } else {
UNROLL
                for (int jj = 0; jj < KT; jj++) {
                    s[jj] = -INFINITY;
                    if (jj < kn) { /* block-uniform: the shuffles stay converged */
                        float ps = 0.0f;
                        for (int d = part; d < hd; d += P)
                            ps += rnd(qrow[d], a.bf16) * rnd(kb[(size_t)(k0 + jj) * C + d], a.bf16);
                        const float sc = row_sum<P>(ps) * a.scale;
                        s[jj] = k0 + jj < vis ? sc : -INFINITY;
                        mt = fmaxf(mt, s[jj]);
                    }
                }
            }
            /* online softmax: rescale what was summed so far to the new running max (only rows that
             * have seen a key; no shuffles below, so the branch is free to diverge) */
            const float m_new = fmaxf(m, mt);
            if (m_new != -INFINITY) {
                const float alpha = __expf(m - m_new);
                lsum *= alpha;
UNROLL
                for (int jj = 0; jj < KT; jj++) {
                    s[jj] = __expf(s[jj] - m_new);
                    lsum += s[jj];
                }
                if constexpr (DPT > 0) {
UNROLL
                    for (int e = 0; e < DPT; e++) {
                        float o = acc[e] * alpha;
UNROLL
                        for (int jj = 0; jj < KT; jj++) o += s[jj] * Vs[jj * LD + part + P * e];
                        acc[e] = o;
                    }
                } else {
                    for (int d = part; d < hd; d += P) {
                        float o = orow[d] * alpha;
                        for (int jj = 0; jj < kn; jj++) o += s[jj] * rnd(vb[(size_t)(k0 + jj) * C + d], a.bf16);
                        orow[d] = o;
                    }
                }
                m = m_new;
            }
        }
        if (i < Tq) {
            const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
            if constexpr (DPT > 0) {
UNROLL
                for (int e = 0; e < DPT; e++)
                    if (part + P * e < hd) orow[part + P * e] = acc[e] * inv;
            } else {
                for (int d = part; d < hd; d += P) orow[d] *= inv;
            }
            if (part == 0) a.lse[bh * Tq + i] = lsum > 0.0f ? m + logf(lsum) : 0.0f;
        }
    }
}

/* ---- backward ------------------------------------------------------------------------------------- */

/* delta[bh, i] = dO[i] . O[i] over the head (= sum_j P_ij dP_ij, the softmax backward's row sum): a warp
 * per row, the lanes striding the head dim */
__global__ void attn_delta_kernel(attn_k a, magna_launch_rows r) {
    const int hd = (int)a.l.hd, Tq = (int)a.l.tq;
    const uint32_t lane = magna_launch_rows_lane(&r, threadIdx.x);
    for (int64_t row = magna_launch_rows_first(&r, blockIdx.x, threadIdx.x); row < r.rows;
         row += magna_launch_rows_stride(&r)) {
        const int64_t bh = row / Tq, i = row % Tq, b = bh / a.H, h = bh % a.H;
        const size_t off = ((size_t)b * Tq + i) * a.C + (size_t)h * hd;
        float s = 0.0f;
        for (int d = (int)lane; d < hd; d += MAGNA_LAUNCH_WARP) {
            const float o = a.out16 ? __bfloat162float(static_cast<const __nv_bfloat16 *>(a.out)[off + d])
                                    : static_cast<const float *>(a.out)[off + d];
            const float dO = a.dout16 ? __bfloat162float(static_cast<const __nv_bfloat16 *>(a.dout)[off + d])
                                      : fptr(a.dout)[off + d];
            s += dO * o;
        }
        s = row_sum<MAGNA_LAUNCH_WARP>(s);
        if (lane == 0) a.delta[row] = s;
    }
}

/* dQ[i] += scale * sum_j dS_ij k_j, dS_ij = P_ij (dO_i . v_j - delta_i): a block per query tile */
template <int DPT, int P> __global__ void __launch_bounds__(MAGNA_ATTN_BLOCK) attn_dq_kernel(attn_k a) {
    MAGNA_DYNAMIC_SHARED(float, smem);
    constexpr int LD = DPT * P, NR = DPT > 0 ? DPT : 1;
    const magna_launch_attention l = a.l;
    const int hd = (int)l.hd, Tq = (int)l.tq, Tk = (int)l.tk, C = a.C;
    const int part = threadIdx.x % P, i = (int)magna_attn_query(&l, blockIdx.x, threadIdx.x);
    const int q_last = (int)magna_attn_q_end(&l, blockIdx.x) - 1;
    float *Ks = smem, *Vs = smem + KT * LD;
    for (int64_t bh = blockIdx.y; bh < l.bh; bh += magna_attn_bh_stride(&l)) {
        const int b = (int)(bh / a.H), h = (int)(bh % a.H);
        const int L = a.lengths ? a.lengths[b] : Tk;
        const int vis = i < Tq ? visible(l, i, L) : 0, kend = visible(l, q_last, L);
        const size_t qoff = ((size_t)b * Tq + (i < Tq ? i : 0)) * C + (size_t)h * hd;
        const float *qrow = fptr(a.q) + qoff, *dorow = fptr(a.dout) + qoff, *kb = fptr(a.k) + (size_t)b * Tk * C + (size_t)h * hd;
        const float *vb = fptr(a.v) + (size_t)b * Tk * C + (size_t)h * hd;
        float *dqrow = a.dq + qoff;
        const float lse = i < Tq ? a.lse[bh * Tq + i] : 0.0f, delta = i < Tq ? a.delta[bh * Tq + i] : 0.0f;
        float qr[NR], dor[NR], acc[NR];
        if constexpr (DPT > 0) {
UNROLL
            for (int e = 0; e < DPT; e++) {
                const int d = part + P * e;
                qr[e] = i < Tq && d < hd ? rnd(qrow[d], a.bf16) : 0.0f;
                dor[e] = i < Tq && d < hd ? dorow[d] : 0.0f;
                acc[e] = 0.0f;
            }
        }
        for (int k0 = 0; k0 < kend; k0 += KT) {
            const int kn = kend - k0 < KT ? kend - k0 : KT;
            if constexpr (DPT > 0) {
                __syncthreads();
                stage<LD>(Ks, kb, C, k0, kn, hd, a.bf16);
                stage<LD>(Vs, vb, C, k0, kn, hd, a.bf16);
                __syncthreads();
UNROLL_4
                for (int jj = 0; jj < KT; jj++) {
                    float ps = 0.0f, pd = 0.0f;
UNROLL
                    for (int e = 0; e < DPT; e++) {
                        ps += qr[e] * Ks[jj * LD + part + P * e];
                        pd += dor[e] * Vs[jj * LD + part + P * e];
                    }
                    const float sc = row_sum<P>(ps) * a.scale, dp = row_sum<P>(pd);
                    const float p = k0 + jj < vis ? __expf(sc - lse) : 0.0f, ds = p * (dp - delta);
UNROLL
                    for (int e = 0; e < DPT; e++) acc[e] += ds * Ks[jj * LD + part + P * e];
                }
            } else {
                for (int jj = 0; jj < kn; jj++) { /* kn is block-uniform */
                    const float *kr = kb + (size_t)(k0 + jj) * C, *vr = vb + (size_t)(k0 + jj) * C;
                    float ps = 0.0f, pd = 0.0f;
                    for (int d = part; d < hd; d += P) {
                        ps += rnd(qrow[d], a.bf16) * rnd(kr[d], a.bf16);
                        pd += dorow[d] * rnd(vr[d], a.bf16);
                    }
                    const float sc = row_sum<P>(ps) * a.scale, dp = row_sum<P>(pd);
                    const float p = k0 + jj < vis ? __expf(sc - lse) : 0.0f, ds = p * (dp - delta);
                    if (k0 + jj < vis)
                        for (int d = part; d < hd; d += P) dqrow[d] += a.scale * ds * rnd(kr[d], a.bf16);
                }
            }
        }
        if constexpr (DPT > 0) {
            if (i < Tq)
UNROLL
                for (int e = 0; e < DPT; e++)
                    if (part + P * e < hd) put_grad(&dqrow[part + P * e], a.scale * acc[e], a.assign & 1u);
        }
    }
}

/* dV[j] += sum_i P_ij dO_i, dK[j] += scale * sum_i dS_ij q_i: a block per key tile, over the queries that
 * see its keys (launch.h's kv_q_begin onwards) */
template <int DPT, int P> __global__ void __launch_bounds__(MAGNA_ATTN_BLOCK) attn_dkv_kernel(attn_k a) {
    MAGNA_DYNAMIC_SHARED(float, smem);
    constexpr int LD = DPT * P, NR = DPT > 0 ? DPT : 1;
    const magna_launch_attention l = a.l;
    const int hd = (int)l.hd, Tq = (int)l.tq, Tk = (int)l.tk, C = a.C;
    const int part = threadIdx.x % P, j = (int)magna_attn_query(&l, blockIdx.x, threadIdx.x);
    const int k0 = (int)magna_attn_k_begin(&l, blockIdx.x), qb = (int)magna_attn_kv_q_begin(&l, blockIdx.x);
    float *Qs = smem, *Ds = smem + KT * LD, *lse_s = Ds + KT * LD, *delta_s = lse_s + KT;
    for (int64_t bh = blockIdx.y; bh < l.bh; bh += magna_attn_bh_stride(&l)) {
        const int b = (int)(bh / a.H), h = (int)(bh % a.H);
        const int L = a.lengths ? a.lengths[b] : Tk;
        if (k0 >= L) continue; /* block-uniform: no query sees these keys */
        const size_t koff = ((size_t)b * Tk + (j < Tk ? j : 0)) * C + (size_t)h * hd;
        const float *krow = fptr(a.k) + koff, *vrow = fptr(a.v) + koff, *qb_ = fptr(a.q) + (size_t)b * Tq * C + (size_t)h * hd;
        const float *dob = fptr(a.dout) + (size_t)b * Tq * C + (size_t)h * hd;
        float kr[NR], vr[NR], dk[NR], dv[NR];
        if constexpr (DPT > 0) {
UNROLL
            for (int e = 0; e < DPT; e++) {
                const int d = part + P * e;
                kr[e] = j < Tk && d < hd ? rnd(krow[d], a.bf16) : 0.0f;
                vr[e] = j < Tk && d < hd ? rnd(vrow[d], a.bf16) : 0.0f;
                dk[e] = dv[e] = 0.0f;
            }
        }
        for (int q0 = qb; q0 < Tq; q0 += KT) {
            const int qn = Tq - q0 < KT ? Tq - q0 : KT;
            if constexpr (DPT > 0) {
                __syncthreads();
                stage<LD>(Qs, qb_, C, q0, qn, hd, a.bf16);
                stage<LD>(Ds, dob, C, q0, qn, hd, 0);
                for (int r = threadIdx.x; r < KT; r += blockDim.x) {
                    lse_s[r] = r < qn ? a.lse[bh * Tq + q0 + r] : 0.0f;
                    delta_s[r] = r < qn ? a.delta[bh * Tq + q0 + r] : 0.0f;
                }
                __syncthreads();
UNROLL_4
                for (int ii = 0; ii < KT; ii++) {
                    float ps = 0.0f, pd = 0.0f;
UNROLL
                    for (int e = 0; e < DPT; e++) {
                        ps += Qs[ii * LD + part + P * e] * kr[e];
                        pd += Ds[ii * LD + part + P * e] * vr[e];
                    }
                    const float sc = row_sum<P>(ps) * a.scale, dp = row_sum<P>(pd);
                    const bool seen = ii < qn && j < Tk && j < visible(l, q0 + ii, L);
                    const float p = seen ? __expf(sc - lse_s[ii]) : 0.0f, ds = p * (dp - delta_s[ii]);
UNROLL
                    for (int e = 0; e < DPT; e++) {
                        dv[e] += p * Ds[ii * LD + part + P * e];
                        dk[e] += ds * Qs[ii * LD + part + P * e];
                    }
                }
            } else {
                for (int ii = 0; ii < qn; ii++) { /* qn is block-uniform */
                    const int iq = q0 + ii;
                    const float *qr = qb_ + (size_t)iq * C, *dor = dob + (size_t)iq * C;
                    float ps = 0.0f, pd = 0.0f;
                    if (j < Tk)
                        for (int d = part; d < hd; d += P) {
                            ps += rnd(qr[d], a.bf16) * rnd(krow[d], a.bf16);
                            pd += dor[d] * rnd(vrow[d], a.bf16);
                        }
                    const float sc = row_sum<P>(ps) * a.scale, dp = row_sum<P>(pd);
                    if (j < Tk && j < visible(l, iq, L)) {
                        const float p = __expf(sc - a.lse[bh * Tq + iq]), ds = p * (dp - a.delta[bh * Tq + iq]);
                        float *dkr = a.dk ? a.dk + koff : nullptr, *dvr = a.dv ? a.dv + koff : nullptr;
                        for (int d = part; d < hd; d += P) {
                            if (dvr) dvr[d] += p * dor[d];
                            if (dkr) dkr[d] += a.scale * ds * rnd(qr[d], a.bf16);
                        }
                    }
                }
            }
        }
        if constexpr (DPT > 0) {
            if (j < Tk)
UNROLL
                for (int e = 0; e < DPT; e++) {
                    const int d = part + P * e;
                    if (d >= hd) continue;
                    if (a.dv) put_grad(&a.dv[koff + d], dv[e], a.assign & 4u);
                    if (a.dk) put_grad(&a.dk[koff + d], a.scale * dk[e], a.assign & 2u);
                }
        }
    }
}

/* ---- tensor cores (bf16 mode, hd a multiple of 16 up to 128) --------------------------------------------------------
 * The same algorithm with the products on tensor cores through wmma (16 x 16 x 16 bf16 tiles, float
 * accumulators): four warps of 16 rows a block, tiles of 64 rows of the other side staged in shared memory as
 * bf16. A warp writes its score tiles to shared memory, where its lanes (two a row) do the softmax in float;
 * the probabilities (and dS) go back to the tensor cores as bf16. The forward's output accumulates in
 * fragments, stored, rescaled and reloaded only when a row's running max moved. Layout: launch.h's
 * magna_attn_tc_shared_bytes. */

using namespace nvcuda;
typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> frag_b;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> frag_bt; /* B^T of a row-major B */
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c;

constexpr int TW = MAGNA_ATTN_TC_BLOCK / 32;
/* row strides of a warp's tiles, padded so that the 16 rows its lanes walk together fall in different banks
 * (unpadded, rows 64 floats apart share one: 16-way conflicts) */
constexpr int SLD = MAGNA_ATTN_TC_SLD, PLD = MAGNA_ATTN_TC_PLD;

/* rows [r0, r0 + n) of a head's [*, C] matrix as a bf16 tile of TT rows x HD (zeros past n); from float32 (dO,
 * or q, k, v a graph keeps in float32) 8 elements at a time, two 16-byte loads and one 16-byte store, where every
 * row starts 16-byte aligned */
template <int HD> __device__ __forceinline__ void stage_bf16(__nv_bfloat16 *tile, const float *src, int C, int r0,
                                                             int n) {
    if (C % 4 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0) { /* block-uniform */
        constexpr int G = HD / 8;
        for (int e = threadIdx.x; e < TT * G; e += blockDim.x) {
            const int r = e / G, g = e - r * G;
            float4 lo = make_float4(0.0f, 0.0f, 0.0f, 0.0f), hi = lo;
            if (r < n) {
                const float4 *at = reinterpret_cast<const float4 *>(src + (size_t)(r0 + r) * C + g * 8);
                lo = at[0], hi = at[1];
            }
            union {
                int4 v;
                __nv_bfloat16 h[8];
            } out;
            out.h[0] = __float2bfloat16(lo.x), out.h[1] = __float2bfloat16(lo.y);
            out.h[2] = __float2bfloat16(lo.z), out.h[3] = __float2bfloat16(lo.w);
            out.h[4] = __float2bfloat16(hi.x), out.h[5] = __float2bfloat16(hi.y);
            out.h[6] = __float2bfloat16(hi.z), out.h[7] = __float2bfloat16(hi.w);
            *reinterpret_cast<int4 *>(tile + r * HD + g * 8) = out.v;
        }
        return;
    }
    for (int e = threadIdx.x; e < TT * HD; e += blockDim.x) {
        const int r = e / HD, d = e - r * HD;
        tile[e] = __float2bfloat16(r < n ? src[(size_t)(r0 + r) * C + d] : 0.0f);
    }
}

/* From bf16 (what a bf16 graph stores): 16 bytes (8 elements) a load where every row starts 16-byte aligned,
 * as a GPU's loads are widest (a row of a 64-wide head is 8 such loads, not 64); element by element else. The
 * tile (its base 128-byte aligned, rows HD * 2 bytes, a multiple of 32) is aligned for both. */
template <int HD> __device__ __forceinline__ void stage_bf16(__nv_bfloat16 *tile, const __nv_bfloat16 *src, int C,
                                                             int r0, int n) {
    if (C % 8 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0) { /* block-uniform */
        constexpr int G = HD / 8; /* 16-byte groups a row */
        for (int e = threadIdx.x; e < TT * G; e += blockDim.x) {
            const int r = e / G, g = e - r * G;
            int4 v = make_int4(0, 0, 0, 0); /* all-zero bits: bf16 zeros */
            if (r < n) v = *reinterpret_cast<const int4 *>(src + (size_t)(r0 + r) * C + g * 8);
            *reinterpret_cast<int4 *>(tile + r * HD + g * 8) = v;
        }
        return;
    }
    const __nv_bfloat16 zero = __float2bfloat16(0.0f);
    for (int e = threadIdx.x; e < TT * HD; e += blockDim.x) {
        const int r = e / HD, d = e - r * HD;
        tile[e] = r < n ? src[(size_t)(r0 + r) * C + d] : zero;
    }
}

/* the same from q, k or v (which: 0, 1, 2), stored float32 or bf16 (a.qkv16), at element offset `at` */
/* dO's rows from element `at` on, float32 or bf16 (dout16) */
template <int HD> __device__ __forceinline__ void stage_dout(__nv_bfloat16 *tile, const attn_k &a, size_t at, int r0, int n) {
    if (a.dout16)
        stage_bf16<HD>(tile, static_cast<const __nv_bfloat16 *>(a.dout) + at, a.C, r0, n);
    else
        stage_bf16<HD>(tile, fptr(a.dout) + at, a.C, r0, n);
}

template <int HD> __device__ __forceinline__ void stage_qkv(__nv_bfloat16 *tile, const attn_k &a, int which, size_t at,
                                                            int r0, int n) {
    const void *base = which == 0 ? a.q : which == 1 ? a.k : a.v;
    if (a.qkv16 & (1 << which))
        stage_bf16<HD>(tile, static_cast<const __nv_bfloat16 *>(base) + at, a.C, r0, n);
    else
        stage_bf16<HD>(tile, static_cast<const float *>(base) + at, a.C, r0, n);
}

/* out[16 x TT] (float, ld SLD) = A[16 x HD] B^T, A rows of a bf16 tile (ld HD), B the TT rows of another */
template <int HD> __device__ __forceinline__ void tc_abt(float *out, const __nv_bfloat16 *A, const __nv_bfloat16 *B) {
    for (int j = 0; j < TT / 16; j++) {
        frag_c c;
        wmma::fill_fragment(c, 0.0f);
        for (int kt = 0; kt < HD / 16; kt++) {
            frag_a fa;
            frag_bt fb;
            wmma::load_matrix_sync(fa, A + kt * 16, HD);
            wmma::load_matrix_sync(fb, B + j * 16 * HD + kt * 16, HD);
            wmma::mma_sync(c, fa, fb, c);
        }
        wmma::store_matrix_sync(out + j * 16, c, SLD, wmma::mem_row_major);
    }
}

/* acc[nt] (+)= P[16 x TT] (bf16, ld PLD) B[TT x HD] (bf16, ld HD), the HD / 16 column tiles of the result */
template <int HD> __device__ __forceinline__ void tc_pb(frag_c *acc, const __nv_bfloat16 *P, const __nv_bfloat16 *B) {
    for (int kt = 0; kt < TT / 16; kt++) {
        frag_a fa;
        wmma::load_matrix_sync(fa, P + kt * 16, PLD);
        for (int nt = 0; nt < HD / 16; nt++) {
            frag_b fb;
            wmma::load_matrix_sync(fb, B + kt * 16 * HD + nt * 16, HD);
            wmma::mma_sync(acc[nt], fa, fb, acc[nt]);
        }
    }
}

template <int HD> struct tc_smem {
    __nv_bfloat16 *t[4];   /* the 64 x HD bf16 tiles */
    float *s[2];           /* this warp's [16][SLD] float tiles */
    __nv_bfloat16 *p[2];   /* this warp's [16][PLD] bf16 tiles */
    float *rows;           /* this warp's [16][HD + RPAD] float rows */
    float *lse, *delta;    /* dK/dV: [TT] each */
    __device__ tc_smem(unsigned char *raw, int kernel, int warp) {
        const uintptr_t aligned = (reinterpret_cast<uintptr_t>(raw) + 127) & ~(uintptr_t)127;
        unsigned char *base = reinterpret_cast<unsigned char *>(aligned);
        const int tiles = kernel == 0 ? 3 : 4, sf = kernel == 0 ? 1 : 2, sb = kernel == 2 ? 2 : 1;
        __nv_bfloat16 *bf = reinterpret_cast<__nv_bfloat16 *>(base);
        for (int i = 0; i < 4; i++) t[i] = i < tiles ? bf + (size_t)i * TT * HD : nullptr;
        unsigned char *w = base + (size_t)tiles * TT * HD * 2;
        const size_t per_warp =
            (size_t)sf * 16 * SLD * 4 + (size_t)sb * 16 * PLD * 2 + 16 * (HD + MAGNA_ATTN_TC_RPAD) * 4;
        unsigned char *mine = w + (size_t)warp * per_warp;
        for (int i = 0; i < 2; i++) s[i] = i < sf ? reinterpret_cast<float *>(mine) + (size_t)i * 16 * SLD : nullptr;
        mine += (size_t)sf * 16 * SLD * 4;
        __nv_bfloat16 *pb = reinterpret_cast<__nv_bfloat16 *>(mine);
        for (int i = 0; i < 2; i++) p[i] = i < sb ? pb + (size_t)i * 16 * PLD : nullptr;
        rows = reinterpret_cast<float *>(mine + (size_t)sb * 16 * PLD * 2);
        lse = reinterpret_cast<float *>(w + (size_t)TW * per_warp);
        delta = lse + TT;
    }
};

template <int HD> __global__ void __launch_bounds__(MAGNA_ATTN_TC_BLOCK) attn_tc_forward_kernel(attn_k a) {
    MAGNA_DYNAMIC_SHARED(unsigned char, smem);
    constexpr int RLD = HD + MAGNA_ATTN_TC_RPAD; /* the row tiles' stride, padded as SLD */
    const magna_launch_attention l = a.l;
    const int Tq = (int)l.tq, Tk = (int)l.tk, C = a.C, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q0 = (int)magna_attn_q_begin(&l, blockIdx.x), q_last = (int)magna_attn_q_end(&l, blockIdx.x) - 1;
    const int r = lane / 2, half = lane % 2, i = q0 + warp * 16 + r; /* this lane's row */
    const tc_smem<HD> sm(smem, 0, warp);
    __nv_bfloat16 *Qs = sm.t[0], *Ks = sm.t[1], *Vs = sm.t[2];
    float *S = sm.s[0], *O = sm.rows;
    __nv_bfloat16 *Pb = sm.p[0];
    for (int64_t bh = blockIdx.y; bh < l.bh; bh += magna_attn_bh_stride(&l)) {
        const int b = (int)(bh / a.H), h = (int)(bh % a.H);
        const int L = a.lengths ? a.lengths[b] : Tk;
        const int vis = i < Tq ? visible(l, i, L) : 0, kend = visible(l, q_last, L);
        const size_t qb = (size_t)b * Tq * C + (size_t)h * HD, kb = (size_t)b * Tk * C + (size_t)h * HD;
        __syncthreads(); /* the last slot's tiles are read */
        stage_qkv<HD>(Qs, a, 0, qb, q0, q_last + 1 - q0);
        /* the output rows accumulate in fragments; they go through shared memory only when a row's running
         * max moved (its rows must be rescaled, and a fragment's layout is not ours to know) */
        frag_c acc[HD / 16];
        for (int nt = 0; nt < HD / 16; nt++) wmma::fill_fragment(acc[nt], 0.0f);
        float m = -INFINITY, lsum = 0.0f;
        for (int k0 = 0; k0 < kend; k0 += TT) {
            __syncthreads();
            stage_qkv<HD>(Ks, a, 1, kb, k0, kend - k0 < TT ? kend - k0 : TT);
            stage_qkv<HD>(Vs, a, 2, kb, k0, kend - k0 < TT ? kend - k0 : TT);
            __syncthreads();
            tc_abt<HD>(S, Qs + warp * 16 * HD, Ks);
            __syncwarp();
            /* the softmax of row r over this tile: two lanes, half the columns each */
            float mt = -INFINITY;
            for (int c = half; c < TT; c += 2) {
                const float s = k0 + c < vis ? S[r * SLD + c] * a.scale : -INFINITY;
                S[r * SLD + c] = s;
                mt = fmaxf(mt, s);
            }
            mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
            const float m_new = fmaxf(m, mt), alpha = m_new == -INFINITY ? 1.0f : __expf(m - m_new);
            float part = 0.0f;
            for (int c = half; c < TT; c += 2) {
                const float p = m_new == -INFINITY ? 0.0f : __expf(S[r * SLD + c] - m_new);
                Pb[r * PLD + c] = __float2bfloat16(p);
                part += p;
            }
            part += __shfl_xor_sync(0xffffffffu, part, 1);
            /* a row that had seen nothing (m = -inf) holds zeros: nothing to rescale */
            const bool rescale = __any_sync(0xffffffffu, m != -INFINITY && alpha != 1.0f);
            lsum = lsum * alpha + part, m = m_new;
            if (rescale) { /* warp-uniform */
                for (int nt = 0; nt < HD / 16; nt++)
                    wmma::store_matrix_sync(O + nt * 16, acc[nt], RLD, wmma::mem_row_major);
                __syncwarp();
                for (int d = half; d < HD; d += 2) O[r * RLD + d] *= alpha;
                __syncwarp();
                for (int nt = 0; nt < HD / 16; nt++)
                    wmma::load_matrix_sync(acc[nt], O + nt * 16, RLD, wmma::mem_row_major);
            }
            __syncwarp();
            tc_pb<HD>(acc, Pb, Vs);
        }
        for (int nt = 0; nt < HD / 16; nt++) wmma::store_matrix_sync(O + nt * 16, acc[nt], RLD, wmma::mem_row_major);
        __syncwarp();
        if (i < Tq && half == 0) a.lse[bh * Tq + i] = lsum > 0.0f ? m + logf(lsum) : 0.0f;
        /* the warp's 16 rows out one after another, its 32 lanes along a row: whole segments a store (the lanes'
         * own rows, two lanes a row, would touch 16 segments a store) */
        const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
        for (int rr = 0; rr < 16; rr++) {
            const float row_inv = __shfl_sync(0xffffffffu, inv, 2 * rr);
            const int ii = q0 + warp * 16 + rr;
            if (ii >= Tq) break; /* warp-uniform */
            const size_t at = ((size_t)b * Tq + ii) * C + (size_t)h * HD;
            if (a.out16)
                for (int d = lane; d < HD; d += 32)
                    magna_store(static_cast<__nv_bfloat16 *>(a.o) + at + d, O[rr * RLD + d] * row_inv);
            else
                for (int d = lane; d < HD; d += 32) magna_store(static_cast<float *>(a.o) + at + d, O[rr * RLD + d] * row_inv);
        }
    }
}

template <int HD> __global__ void __launch_bounds__(MAGNA_ATTN_TC_BLOCK) attn_tc_dq_kernel(attn_k a) {
    MAGNA_DYNAMIC_SHARED(unsigned char, smem);
    constexpr int RLD = HD + MAGNA_ATTN_TC_RPAD; /* the row tiles' stride, padded as SLD */
    const magna_launch_attention l = a.l;
    const int Tq = (int)l.tq, Tk = (int)l.tk, C = a.C, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int q0 = (int)magna_attn_q_begin(&l, blockIdx.x), q_last = (int)magna_attn_q_end(&l, blockIdx.x) - 1;
    const int r = lane / 2, half = lane % 2, i = q0 + warp * 16 + r;
    const tc_smem<HD> sm(smem, 1, warp);
    __nv_bfloat16 *Qs = sm.t[0], *Ds = sm.t[1], *Ks = sm.t[2], *Vs = sm.t[3], *dSb = sm.p[0];
    float *S = sm.s[0], *DP = sm.s[1], *R = sm.rows;
    for (int64_t bh = blockIdx.y; bh < l.bh; bh += magna_attn_bh_stride(&l)) {
        const int b = (int)(bh / a.H), h = (int)(bh % a.H);
        const int L = a.lengths ? a.lengths[b] : Tk;
        const int vis = i < Tq ? visible(l, i, L) : 0, kend = visible(l, q_last, L);
        const size_t head = (size_t)h * HD;
        const size_t kb = (size_t)b * Tk * C + head;
        const float lse = i < Tq ? a.lse[bh * Tq + i] : 0.0f, delta = i < Tq ? a.delta[bh * Tq + i] : 0.0f;
        __syncthreads();
        stage_qkv<HD>(Qs, a, 0, (size_t)b * Tq * C + head, q0, q_last + 1 - q0);
        stage_dout<HD>(Ds, a, (size_t)b * Tq * C + head, q0, q_last + 1 - q0);
        frag_c acc[HD / 16];
        for (int nt = 0; nt < HD / 16; nt++) wmma::fill_fragment(acc[nt], 0.0f);
        for (int k0 = 0; k0 < kend; k0 += TT) {
            __syncthreads();
            stage_qkv<HD>(Ks, a, 1, kb, k0, kend - k0 < TT ? kend - k0 : TT);
            stage_qkv<HD>(Vs, a, 2, kb, k0, kend - k0 < TT ? kend - k0 : TT);
            __syncthreads();
            tc_abt<HD>(S, Qs + warp * 16 * HD, Ks);
            tc_abt<HD>(DP, Ds + warp * 16 * HD, Vs);
            __syncwarp();
            for (int c = half; c < TT; c += 2) {
                const float p = k0 + c < vis ? __expf(S[r * SLD + c] * a.scale - lse) : 0.0f;
                dSb[r * PLD + c] = __float2bfloat16(p * (DP[r * SLD + c] - delta));
            }
            __syncwarp();
            tc_pb<HD>(acc, dSb, Ks);
        }
        for (int nt = 0; nt < HD / 16; nt++) wmma::store_matrix_sync(R + nt * 16, acc[nt], RLD, wmma::mem_row_major);
        __syncwarp();
        for (int rr = 0; rr < 16; rr++) { /* row by row, the lanes along it (as forward's output) */
            const int ii = q0 + warp * 16 + rr;
            if (ii >= Tq) break; /* warp-uniform */
            const size_t at = ((size_t)b * Tq + ii) * C + head;
            for (int d = lane; d < HD; d += 32)
                put_grad_at(a.dq, at + d, a.scale * R[rr * RLD + d], a.assign & 1u, a.grad16 & 1u);
        }
    }
}

template <int HD> __global__ void __launch_bounds__(MAGNA_ATTN_TC_BLOCK) attn_tc_dkv_kernel(attn_k a) {
    MAGNA_DYNAMIC_SHARED(unsigned char, smem);
    constexpr int RLD = HD + MAGNA_ATTN_TC_RPAD; /* the row tiles' stride, padded as SLD */
    const magna_launch_attention l = a.l;
    const int Tq = (int)l.tq, Tk = (int)l.tk, C = a.C, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int k0 = (int)magna_attn_k_begin(&l, blockIdx.x), k_end = (int)magna_attn_k_end(&l, blockIdx.x);
    const int qb = (int)magna_attn_kv_q_begin(&l, blockIdx.x);
    const int r = lane / 2, half = lane % 2, j = k0 + warp * 16 + r; /* this lane's key */
    const tc_smem<HD> sm(smem, 2, warp);
    __nv_bfloat16 *Kb = sm.t[0], *Vb = sm.t[1], *Qs = sm.t[2], *Ds = sm.t[3], *Pt = sm.p[0], *dSt = sm.p[1];
    float *St = sm.s[0], *DPt = sm.s[1], *R = sm.rows;
    for (int64_t bh = blockIdx.y; bh < l.bh; bh += magna_attn_bh_stride(&l)) {
        const int b = (int)(bh / a.H), h = (int)(bh % a.H);
        const int L = a.lengths ? a.lengths[b] : Tk;
        if (k0 >= L) continue; /* block-uniform: no query sees these keys */
        const size_t head = (size_t)h * HD;
        const size_t q = (size_t)b * Tq * C + head;
        const size_t dout = (size_t)b * Tq * C + head;
        __syncthreads();
        stage_qkv<HD>(Kb, a, 1, (size_t)b * Tk * C + head, k0, k_end - k0);
        stage_qkv<HD>(Vb, a, 2, (size_t)b * Tk * C + head, k0, k_end - k0);
        frag_c dk[HD / 16], dv[HD / 16];
        for (int nt = 0; nt < HD / 16; nt++) wmma::fill_fragment(dk[nt], 0.0f), wmma::fill_fragment(dv[nt], 0.0f);
        for (int q0 = qb; q0 < Tq; q0 += TT) {
            const int qn = Tq - q0 < TT ? Tq - q0 : TT;
            __syncthreads();
            stage_qkv<HD>(Qs, a, 0, q, q0, qn);
            stage_dout<HD>(Ds, a, dout, q0, qn);
            for (int c = threadIdx.x; c < TT; c += blockDim.x) {
                sm.lse[c] = c < qn ? a.lse[bh * Tq + q0 + c] : 0.0f;
                sm.delta[c] = c < qn ? a.delta[bh * Tq + q0 + c] : 0.0f;
            }
            __syncthreads();
            tc_abt<HD>(St, Kb + warp * 16 * HD, Qs); /* S^T: this warp's keys x the tile's queries */
            tc_abt<HD>(DPt, Vb + warp * 16 * HD, Ds);
            __syncwarp();
            for (int c = half; c < TT; c += 2) {
                const bool seen = c < qn && j < Tk && j < visible(l, q0 + c, L);
                const float p = seen ? __expf(St[r * SLD + c] * a.scale - sm.lse[c]) : 0.0f;
                Pt[r * PLD + c] = __float2bfloat16(p);
                dSt[r * PLD + c] = __float2bfloat16(p * (DPt[r * SLD + c] - sm.delta[c]));
            }
            __syncwarp();
            tc_pb<HD>(dv, Pt, Ds);
            tc_pb<HD>(dk, dSt, Qs);
        }
        for (int pass = 0; pass < 2; pass++) {
            float *dst = pass ? a.dk : a.dv;
            const bool assign = a.assign & (pass ? 2u : 4u), is16 = a.grad16 & (pass ? 2u : 4u);
            __syncwarp();
            for (int nt = 0; nt < HD / 16; nt++)
                wmma::store_matrix_sync(R + nt * 16, pass ? dk[nt] : dv[nt], RLD, wmma::mem_row_major);
            __syncwarp();
            for (int rr = 0; dst && rr < 16; rr++) { /* row by row, the lanes along it (as forward's output) */
                const int jj = k0 + warp * 16 + rr;
                if (jj >= Tk) break; /* warp-uniform */
                const size_t at = ((size_t)b * Tk + jj) * C + head;
                for (int d = lane; d < HD; d += 32)
                    put_grad_at(dst, at + d, (pass ? a.scale : 1.0f) * R[rr * RLD + d], assign, is16);
            }
        }
    }
}

attn_k attn_args_of(const magna_cuda_attention_args *x) {
    attn_k a = {};
    const int hd = x->heads > 0 ? x->C / x->heads : 0;
    a.tc = x->bf16 && magna_attn_tc_fits(hd);
    a.l = a.tc ? magna_launch_attn_tc((int64_t)x->B * x->heads, x->Tq, x->Tk, hd, x->causal)
               : magna_launch_attn((int64_t)x->B * x->heads, x->Tq, x->Tk, hd, x->causal);
    a.q = x->q, a.k = x->k, a.v = x->v, a.lengths = x->key_lengths;
    a.qkv16 = (x->q16 ? 1 : 0) | (x->k16 ? 2 : 0) | (x->v16 ? 4 : 0);
    a.out16 = x->out16 != 0;
    a.H = x->heads, a.C = x->C, a.bf16 = x->bf16;
    a.scale = hd > 0 ? 1.0f / sqrtf((float)hd) : 1.0f;
    return a;
}

/* one of the three tiled kernels at the launch's register size (launch.h's dpt) */
#define ATTN_DISPATCH(kernel, grid_x)                                                                                \
    do {                                                                                                             \
        const dim3 grid(grid_x, a.l.grid_y), block(a.l.block);                                                       \
        const size_t sh = magna_attn_shared_bytes(&a.l);                                                             \
        switch (a.l.dpt) {                                                                                           \
        case 4: return magna_cuda_launch(grid, block, sh, stream, kernel<4, 4>, a);                                  \
        case 8: return magna_cuda_launch(grid, block, sh, stream, kernel<8, 4>, a);                                  \
        case 16: return magna_cuda_launch(grid, block, sh, stream, kernel<16, 4>, a);                                \
        case 32: return magna_cuda_launch(grid, block, sh, stream, kernel<32, 4>, a);                                \
        case 0: return magna_cuda_launch(grid, block, sh, stream, kernel<0, MAGNA_LAUNCH_WARP>, a);                  \
        default: return cudaErrorInvalidValue;                                                                       \
        }                                                                                                            \
    } while (0)

int launch_forward(const attn_k &a, void *stream) {
    if (a.tc && attn_use_mma()) return mma_launch_forward(a, stream);
    if (a.tc) ATTN_TC_DISPATCH(attn_tc_forward_kernel, a.l.grid_x, magna_attn_tc_shared_bytes(a.l.hd, 0));
    ATTN_DISPATCH(attn_forward_kernel, a.l.grid_x);
}
int launch_dq(const attn_k &a, void *stream) {
    if (a.tc && attn_use_mma()) return mma_launch_dq(a, stream);
    if (a.tc) ATTN_TC_DISPATCH(attn_tc_dq_kernel, a.l.grid_x, magna_attn_tc_shared_bytes(a.l.hd, 1));
    ATTN_DISPATCH(attn_dq_kernel, a.l.grid_x);
}
int launch_dkv(const attn_k &a, void *stream) {
    if (a.tc && attn_use_mma()) return mma_launch_dkv(a, stream);
    if (a.tc) ATTN_TC_DISPATCH(attn_tc_dkv_kernel, a.l.kv_grid_x, magna_attn_tc_shared_bytes(a.l.hd, 2));
    ATTN_DISPATCH(attn_dkv_kernel, a.l.kv_grid_x);
}

} // namespace

extern "C" const char *magna_cuda_attention_tc_kind(void) { return attn_use_mma() ? "mma.sync" : "wmma"; }

extern "C" int magna_cuda_attention_forward(const magna_cuda_attention_args *args, void *out, float *lse,
                                            void *stream) {
    attn_k a = attn_args_of(args);
    if ((!a.tc && a.l.tile_k != KT) || ((a.qkv16 || a.out16) && !a.tc)) /* bf16 storage: tensor cores only */
        return cudaErrorInvalidValue;
    if (a.l.grid_x == 0) return cudaSuccess; /* no query, head or batch: out is empty */
    a.o = out, a.lse = lse;
    return launch_forward(a, stream);
}

/* The gradients backward assigns (args->assign) that its kernels would not each write whole, zeroed here for
 * them to add into: all three where nothing is launched or the CUDA-core kernels add straight into global
 * memory (dpt 0, head sizes past 128), dk and dv where key lengths let a key tile's block skip its keys. */
static int zero_unwritten(attn_k &a, const magna_cuda_attention_args *x, void *stream) {
    if (a.grad16 & ~(a.tc && !a.lengths ? a.assign : 0u)) return cudaErrorInvalidValue; /* bf16: one whole write */
    const bool none = a.l.grid_x == 0 || a.l.kv_grid_x == 0, direct = !a.tc && a.l.dpt == 0;
    const unsigned whole = none || direct ? 0u : a.lengths ? 1u : 7u;
    float *const grad[3] = {a.dq, a.dk, a.dv};
    const size_t rows[3] = {(size_t)x->B * x->Tq, (size_t)x->B * x->Tk, (size_t)x->B * x->Tk};
    for (int t = 0; t < 3; t++) {
        if (!(a.assign >> t & 1u) || (whole >> t & 1u)) continue;
        a.assign &= ~(1u << t);
        if (!grad[t] || rows[t] == 0) continue;
        const size_t elem = a.grad16 >> t & 1u ? 2 : sizeof(float);
        const cudaError_t e = cudaMemsetAsync(grad[t], 0, rows[t] * (size_t)x->C * elem, (cudaStream_t)stream);
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}

extern "C" int magna_cuda_attention_backward(const magna_cuda_attention_args *args, const void *out,
                                             const void *dout, const float *lse, float *delta, float *dq, float *dk,
                                             float *dv, void *stream) {
    attn_k a = attn_args_of(args);
    if ((!a.tc && a.l.tile_k != KT) || ((a.qkv16 || a.out16) && !a.tc)) return cudaErrorInvalidValue;
    if (!dq && !dk && !dv) return cudaSuccess;
    a.out = out, a.dout = dout, a.delta = delta, a.dq = dq, a.dk = dk, a.dv = dv;
    a.assign = args->assign & 7u, a.grad16 = args->grad16 & 7u, a.dout16 = args->dout16 != 0;
    if (a.dout16 && !a.tc) return cudaErrorInvalidValue; /* bf16 dO: the tensor-core kernels only */
    int err = zero_unwritten(a, args, stream);
    if (err != cudaSuccess || a.l.grid_x == 0) return err;
    a.lse = const_cast<float *>(lse); /* only forward writes it */
    /* a warp a row for any hd: the row launch's warp-per-row shape (columns capped at a warp's 1024) */
    const int64_t cols = a.l.hd < 1024 ? a.l.hd : 1024;
    const magna_launch_rows r = magna_launch_rowwise(a.l.bh * a.l.tq, cols);
    err = magna_cuda_launch(dim3(r.grid), dim3(r.block), 0, stream, attn_delta_kernel, a, r);
    if (err == cudaSuccess && dq) err = launch_dq(a, stream);
    if (err == cudaSuccess && (dk || dv) && a.l.kv_grid_x > 0) err = launch_dkv(a, stream);
    return err;
}
