/* attention_mma.cu — the tensor-core attention kernels at the register level (mma.sync): forward, dQ and dK/dV
 * for bf16 at head sizes 16, 32, .., 128, behind attention.cu's entry points, which choose them
 * (magna_attention::attn_use_mma) over attention.cu's wmma kernels. Semantics, arguments and the lse they
 * share with attention.cu: attention_shared.h. */
#include "attention_shared.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

using namespace magna_attention;

namespace {

/* ---- tensor cores at the register level: mma.sync m16n8k16 (bf16 operands, float32 accumulators) ---------------------
 * FlashAttention-2's kernels: a warp's 16 rows keep their scores, probabilities and results in registers, in
 * the instruction's documented fragment layout (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point
 * type"), so the softmax touches no shared memory and P goes from accumulator to operand without leaving the
 * registers; wmma above hides its layout, so there every score tile makes a trip through shared memory. With
 * g = lane / 4 and t = lane % 4, a lane holds:
 *   - of a 16 x 8 accumulator: (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1);
 *   - of a 16 x 16 A operand, four registers of two bf16 (the lower column in the low half): (g, 2t..2t+1),
 *     (g + 8, 2t..2t+1), (g, 2t+8..2t+9), (g + 8, 2t+8..2t+9);
 *   - of a 16 x 8 B operand (k x n), two registers: column g at rows 2t..2t+1 and 2t+8..2t+9.
 * Two neighbouring 16 x 8 score accumulators are, element for element, one 16 x 16 A operand: P needs no shuffle.
 * Tiles in shared memory: Q and K row-major and V transposed (V^T: a B operand's two rows are then neighbours),
 * rows padded by 8 bf16 so that the 8 rows x 4 lanes of a fragment load fall in 32 distinct banks. dQ and dK/dV
 * follow below, the same way. MAGNA_CUDA_ATTENTION=wmma runs attention.cu's wmma kernels instead, for comparison. */

constexpr int MMA_LDV = TT + 8; /* V^T's row stride */
template <int HD> struct mma_ld {
    static constexpr int K = HD + 8; /* Q's and K's row stride */
};

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, sizeof u);
    return u;
}

/* two neighbouring bf16 of shared memory (4-byte aligned) as one register */
__device__ __forceinline__ uint32_t ld_pair(const __nv_bfloat16 *p) { return *reinterpret_cast<const uint32_t *>(p); }

#ifdef MAGNA_CUDA_EMU
/* the low and high bf16 of a register, as floats */
__device__ __forceinline__ float bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }
#endif

/* d += a b, one m16n8k16 product of the warp. The emulator has no tensor cores: each lane gathers, with shuffles,
 * the rows of A and the columns of B its four results need, from the lanes that hold them in the layout above. */
__device__ __forceinline__ void mma_16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
#ifdef MAGNA_CUDA_EMU
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    for (int u = 0; u < 4; u++) { /* k = 2u, 2u + 1 (registers 0, 1 of A; 0 of B) and 2u + 8, 2u + 9 (2, 3; 1) */
        const uint32_t ag = __shfl_sync(0xffffffffu, a[0], g * 4 + u), ag8 = __shfl_sync(0xffffffffu, a[1], g * 4 + u);
        const uint32_t agk = __shfl_sync(0xffffffffu, a[2], g * 4 + u), ag8k = __shfl_sync(0xffffffffu, a[3], g * 4 + u);
        const uint32_t b0 = __shfl_sync(0xffffffffu, b[0], 2 * t * 4 + u), b0k = __shfl_sync(0xffffffffu, b[1], 2 * t * 4 + u);
        const uint32_t b1 = __shfl_sync(0xffffffffu, b[0], (2 * t + 1) * 4 + u);
        const uint32_t b1k = __shfl_sync(0xffffffffu, b[1], (2 * t + 1) * 4 + u);
        const uint32_t rows[2][2] = {{ag, agk}, {ag8, ag8k}}, cols[2][2] = {{b0, b0k}, {b1, b1k}};
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 2; c++) {
                const uint32_t *x = rows[r], *y = cols[c];
                d[2 * r + c] += bf16_lo(x[0]) * bf16_lo(y[0]) + bf16_hi(x[0]) * bf16_hi(y[0]) +
                                bf16_lo(x[1]) * bf16_lo(y[1]) + bf16_hi(x[1]) * bf16_hi(y[1]);
            }
    }
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

/* Eight bf16 in one 16-byte value */
union bf16x8 {
    int4 v;
    __nv_bfloat16 h[8];
};

/* Eight neighbouring elements of a matrix stored float32 or (is16) bf16, from element `at`, as bf16: one or two
 * 16-byte loads where aligned, else one by one; zeros when `valid` is false */
__device__ __forceinline__ bf16x8 read8(const void *base, bool is16, size_t at, bool valid) {
    bf16x8 out;
    if (!valid) {
        out.v = make_int4(0, 0, 0, 0); /* all-zero bits: bf16 zeros */
    } else if (is16) {
        const __nv_bfloat16 *p = static_cast<const __nv_bfloat16 *>(base) + at;
        if (reinterpret_cast<uintptr_t>(p) % 16 == 0)
            out.v = *reinterpret_cast<const int4 *>(p);
        else
            for (int j = 0; j < 8; j++) out.h[j] = p[j];
    } else {
        const float *p = static_cast<const float *>(base) + at;
        if (reinterpret_cast<uintptr_t>(p) % 16 == 0) {
            const float4 lo = reinterpret_cast<const float4 *>(p)[0], hi = reinterpret_cast<const float4 *>(p)[1];
            const float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
            for (int j = 0; j < 8; j++) out.h[j] = __float2bfloat16(v[j]);
        } else {
            for (int j = 0; j < 8; j++) out.h[j] = __float2bfloat16(p[j]);
        }
    }
    return out;
}

/* rows [r0, r0 + n) of a head (from element `at` of a [*, C] matrix, float32 or is16 bf16) into a tile of TT rows:
 * row-major with row stride LD (a multiple of 8: 16-byte stores), or transposed, tile[d * LD + r]; zeros past n.
 * Row-major, a warp's lanes take neighbouring 8-element groups of a row (whole memory segments a load).
 * Transposed, they take neighbouring rows of one group: each of their 8 stores then writes 32 neighbouring bf16
 * (16 banks, two lanes a word), where lanes along a row would write 8 rows of stride LD, 8 of them in one bank
 * (LD / 2 words x 8 is a multiple of 32). */
template <int HD, int LD, bool TRANSPOSED>
__device__ __forceinline__ void stage_mma(__nv_bfloat16 *tile, const void *base, bool is16, int C, size_t at, int r0,
                                          int n) {
    constexpr int G = HD / 8;
    for (int e = threadIdx.x; e < TT * G; e += blockDim.x) {
        const int r = TRANSPOSED ? e % TT : e / G, c = (TRANSPOSED ? e / TT : e - r * G) * 8;
        const bf16x8 x = read8(base, is16, at + (size_t)(r0 + (r < n ? r : 0)) * C + c, r < n);
        if (TRANSPOSED)
            for (int j = 0; j < 8; j++) tile[(c + j) * LD + r] = x.h[j];
        else
            *reinterpret_cast<int4 *>(tile + r * LD + c) = x.v;
    }
}

/* q, k or v (which: 0, 1, 2) as stage_mma's source */
template <int HD, int LD, bool TRANSPOSED>
__device__ __forceinline__ void stage_qkv_mma(__nv_bfloat16 *tile, const attn_k &a, int which, size_t at, int r0, int n) {
    stage_mma<HD, LD, TRANSPOSED>(tile, which == 0 ? a.q : which == 1 ? a.k : a.v, (a.qkv16 >> which) & 1, a.C, at, r0, n);
}

/* The A fragment of 16 rows (from `rows`, a row-major tile with stride LD) at columns 16 kk .. 16 kk + 15 */
template <int LD> __device__ __forceinline__ void load_a1(uint32_t frag[4], const __nv_bfloat16 *rows, int kk) {
    const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    const __nv_bfloat16 *r = rows + g * LD + 2 * t + kk * 16;
    frag[0] = ld_pair(r), frag[1] = ld_pair(r + 8 * LD), frag[2] = ld_pair(r + 8), frag[3] = ld_pair(r + 8 * LD + 8);
}

/* ... over all HD columns: frag[kk] for columns 16 kk .. 16 kk + 15 */
template <int HD, int LD> __device__ __forceinline__ void load_a(uint32_t frag[HD / 16][4], const __nv_bfloat16 *rows) {
    for (int kk = 0; kk < HD / 16; kk++) load_a1<LD>(frag[kk], rows, kk);
}

/* acc[nt] (+)= A B^T over TT columns: A the warp's 16 rows (fragments over HD), B^T's rows the TT rows of `tile`
 * (row-major, stride LD): scores Q K^T, or dO V^T, or K Q^T */
template <int HD, int LD> __device__ __forceinline__ void mma_abt(float acc[TT / 8][4], const uint32_t a[HD / 16][4],
                                                                 const __nv_bfloat16 *tile) {
    const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    for (int nt = 0; nt < TT / 8; nt++) {
        acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
        const __nv_bfloat16 *row = tile + (nt * 8 + g) * LD + 2 * t;
        for (int kk = 0; kk < HD / 16; kk++) {
            const uint32_t b[2] = {ld_pair(row + kk * 16), ld_pair(row + kk * 16 + 8)};
            mma_16816(acc[nt], a[kk], b);
        }
    }
}

/* mma_abt with A read from shared memory (`rows`, stride LD) a 16-column slice at a time, where holding all of its
 * fragments would not leave registers enough */
template <int HD, int LD> __device__ __forceinline__ void mma_abt_smem(float acc[TT / 8][4], const __nv_bfloat16 *rows,
                                                                      const __nv_bfloat16 *tile) {
    const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    for (int nt = 0; nt < TT / 8; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    for (int kk = 0; kk < HD / 16; kk++) {
        uint32_t a[4];
        load_a1<LD>(a, rows, kk);
        for (int nt = 0; nt < TT / 8; nt++) {
            const __nv_bfloat16 *row = tile + (nt * 8 + g) * LD + 2 * t + kk * 16;
            const uint32_t b[2] = {ld_pair(row), ld_pair(row + 8)};
            mma_16816(acc[nt], a, b);
        }
    }
}

/* out[dt] += P B over TT: P the warp's 16 x TT probabilities (or dS) as float accumulators p[TT / 8][4], rounded to
 * bf16 as A operands; B [TT x HD] given transposed (`bt`: HD rows of TT, stride LDT) */
template <int HD, int LDT> __device__ __forceinline__ void mma_pb(float out[HD / 8][4], const float p[TT / 8][4],
                                                                  const __nv_bfloat16 *bt) {
    const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    for (int ks = 0; ks < TT / 16; ks++) {
        const float *x = p[2 * ks], *y = p[2 * ks + 1];
        const uint32_t pa[4] = {pack_bf16x2(x[0], x[1]), pack_bf16x2(x[2], x[3]), pack_bf16x2(y[0], y[1]),
                                pack_bf16x2(y[2], y[3])};
        for (int dt = 0; dt < HD / 8; dt++) {
            const __nv_bfloat16 *row = bt + (dt * 8 + g) * LDT + ks * 16 + 2 * t;
            const uint32_t b[2] = {ld_pair(row), ld_pair(row + 8)};
            mma_16816(out[dt], pa, b);
        }
    }
}

/* the dynamic shared memory's first 128-byte boundary, as bf16 (it is only promised 16-byte aligned) */
__device__ __forceinline__ __nv_bfloat16 *bf16_smem(unsigned char *smem) {
    return reinterpret_cast<__nv_bfloat16 *>((reinterpret_cast<uintptr_t>(smem) + 127) & ~(uintptr_t)127);
}

template <int HD> __global__ void __launch_bounds__(MAGNA_ATTN_TC_BLOCK) attn_mma_forward_kernel(attn_k a) {
    MAGNA_DYNAMIC_SHARED(unsigned char, smem);
    constexpr int LDK = mma_ld<HD>::K, NT = TT / 8, DT = HD / 8;
    const magna_launch_attention l = a.l;
    const int Tq = (int)l.tq, Tk = (int)l.tk, C = a.C, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int q0 = (int)magna_attn_q_begin(&l, blockIdx.x), q_last = (int)magna_attn_q_end(&l, blockIdx.x) - 1;
    const int i0 = q0 + warp * 16 + g, i1 = i0 + 8; /* this lane's two rows */
    __nv_bfloat16 *Qs = bf16_smem(smem);
    __nv_bfloat16 *Ks = Qs + TT * LDK, *Vt = Ks + TT * LDK;
    for (int64_t bh = blockIdx.y; bh < l.bh; bh += magna_attn_bh_stride(&l)) {
        const int b = (int)(bh / a.H), h = (int)(bh % a.H);
        const int L = a.lengths ? a.lengths[b] : Tk;
        const int vis0 = i0 < Tq ? visible(l, i0, L) : 0, vis1 = i1 < Tq ? visible(l, i1, L) : 0;
        const int kend = visible(l, q_last, L);
        const size_t qb = (size_t)b * Tq * C + (size_t)h * HD, kb = (size_t)b * Tk * C + (size_t)h * HD;
        __syncthreads(); /* the last slot's tiles are read */
        stage_qkv_mma<HD, LDK, false>(Qs, a, 0, qb, q0, q_last + 1 - q0);
        __syncthreads();
        uint32_t qa[HD / 16][4];
        load_a<HD, LDK>(qa, Qs + warp * 16 * LDK);
        float o[DT][4];
        for (int dt = 0; dt < DT; dt++) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
        float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f; /* l: this lane's part of its rows' sums */
        for (int k0 = 0; k0 < kend; k0 += TT) {
            const int kn = kend - k0 < TT ? kend - k0 : TT;
            __syncthreads();
            stage_qkv_mma<HD, LDK, false>(Ks, a, 1, kb, k0, kn);
            stage_qkv_mma<HD, MMA_LDV, true>(Vt, a, 2, kb, k0, kn);
            __syncthreads();
            float s[NT][4];
            mma_abt<HD, LDK>(s, qa, Ks);
            /* scaled and masked; the rows' maxima over the four lanes that share them */
            float mx0 = -INFINITY, mx1 = -INFINITY;
            for (int nt = 0; nt < NT; nt++)
                for (int e = 0; e < 2; e++) {
                    const int col = k0 + nt * 8 + 2 * t + e;
                    s[nt][e] = col < vis0 ? s[nt][e] * a.scale : -INFINITY;
                    s[nt][2 + e] = col < vis1 ? s[nt][2 + e] * a.scale : -INFINITY;
                    mx0 = fmaxf(mx0, s[nt][e]), mx1 = fmaxf(mx1, s[nt][2 + e]);
                }
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1)), mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2)), mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
            /* a row that has seen nothing yet (max -inf) holds zeros: nothing to rescale */
            const float al0 = n0 == -INFINITY ? 1.0f : __expf(m0 - n0), al1 = n1 == -INFINITY ? 1.0f : __expf(m1 - n1);
            m0 = n0, m1 = n1, l0 *= al0, l1 *= al1;
            for (int dt = 0; dt < DT; dt++) o[dt][0] *= al0, o[dt][1] *= al0, o[dt][2] *= al1, o[dt][3] *= al1;
            for (int nt = 0; nt < NT; nt++) /* the probabilities, over the scores */
                for (int e = 0; e < 4; e++) {
                    const float mrow = e < 2 ? n0 : n1;
                    s[nt][e] = mrow == -INFINITY ? 0.0f : __expf(s[nt][e] - mrow);
                    (e < 2 ? l0 : l1) += s[nt][e];
                }
            mma_pb<HD, MMA_LDV>(o, s, Vt);
        }
        l0 += __shfl_xor_sync(0xffffffffu, l0, 1), l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
        l0 += __shfl_xor_sync(0xffffffffu, l0, 2), l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
        for (int half = 0; half < 2; half++) {
            const int i = half ? i1 : i0;
            const float lsum = half ? l1 : l0, m = half ? m1 : m0, inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
            if (i >= Tq) continue;
            const size_t at = ((size_t)b * Tq + i) * C + (size_t)h * HD + 2 * t;
            for (int dt = 0; dt < DT; dt++)
                for (int e = 0; e < 2; e++) {
                    const float v = o[dt][2 * half + e] * inv;
                    if (a.out16)
                        magna_store(static_cast<__nv_bfloat16 *>(a.o) + at + dt * 8 + e, v);
                    else
                        magna_store(static_cast<float *>(a.o) + at + dt * 8 + e, v);
                }
            if (t == 0) a.lse[bh * Tq + i] = lsum > 0.0f ? m + logf(lsum) : 0.0f;
        }
    }
}

/* dQ, FlashAttention-2's way (a block of 64 queries, its warps 16 rows each, over the key tiles they see): S = Q K^T
 * and dP = dO V^T in registers, P = exp(S scale - lse) and dS = P (dP - delta) there too, and dQ += dS K with dS
 * straight from the accumulators as the A operand. Shared: K (for S), V (for dP) row-major, K^T (for dS K); Q and
 * dO pass through it once, into the warps' fragments. */
template <int HD> __global__ void __launch_bounds__(MAGNA_ATTN_TC_BLOCK) attn_mma_dq_kernel(attn_k a) {
    MAGNA_DYNAMIC_SHARED(unsigned char, smem);
    constexpr int LDK = mma_ld<HD>::K, NT = TT / 8, DT = HD / 8;
    const magna_launch_attention l = a.l;
    const int Tq = (int)l.tq, Tk = (int)l.tk, C = a.C, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int q0 = (int)magna_attn_q_begin(&l, blockIdx.x), q_last = (int)magna_attn_q_end(&l, blockIdx.x) - 1;
    const int i0 = q0 + warp * 16 + g, i1 = i0 + 8;
    __nv_bfloat16 *Ks = bf16_smem(smem);
    __nv_bfloat16 *Vs = Ks + TT * LDK, *Kt = Vs + TT * LDK; /* Q and dO go through Ks and Vs first */
    for (int64_t bh = blockIdx.y; bh < l.bh; bh += magna_attn_bh_stride(&l)) {
        const int b = (int)(bh / a.H), h = (int)(bh % a.H);
        const int L = a.lengths ? a.lengths[b] : Tk;
        const int vis0 = i0 < Tq ? visible(l, i0, L) : 0, vis1 = i1 < Tq ? visible(l, i1, L) : 0;
        const int kend = visible(l, q_last, L);
        const size_t head = (size_t)h * HD, qb = (size_t)b * Tq * C + head, kb = (size_t)b * Tk * C + head;
        const float lse0 = i0 < Tq ? a.lse[bh * Tq + i0] : 0.0f, lse1 = i1 < Tq ? a.lse[bh * Tq + i1] : 0.0f;
        const float dl0 = i0 < Tq ? a.delta[bh * Tq + i0] : 0.0f, dl1 = i1 < Tq ? a.delta[bh * Tq + i1] : 0.0f;
        __syncthreads();
        stage_qkv_mma<HD, LDK, false>(Ks, a, 0, qb, q0, q_last + 1 - q0);
        stage_mma<HD, LDK, false>(Vs, a.dout, a.dout16, C, qb, q0, q_last + 1 - q0);
        __syncthreads();
        uint32_t qa[HD / 16][4], da[HD / 16][4];
        load_a<HD, LDK>(qa, Ks + warp * 16 * LDK);
        load_a<HD, LDK>(da, Vs + warp * 16 * LDK);
        float dq[DT][4];
        for (int dt = 0; dt < DT; dt++) dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.0f;
        for (int k0 = 0; k0 < kend; k0 += TT) {
            const int kn = kend - k0 < TT ? kend - k0 : TT;
            __syncthreads();
            stage_qkv_mma<HD, LDK, false>(Ks, a, 1, kb, k0, kn);
            stage_qkv_mma<HD, MMA_LDV, true>(Kt, a, 1, kb, k0, kn);
            stage_qkv_mma<HD, LDK, false>(Vs, a, 2, kb, k0, kn);
            __syncthreads();
            float s[NT][4], dp[NT][4];
            mma_abt<HD, LDK>(s, qa, Ks);
            mma_abt<HD, LDK>(dp, da, Vs);
            for (int nt = 0; nt < NT; nt++) /* dS over the scores */
                for (int e = 0; e < 4; e++) {
                    const int col = k0 + nt * 8 + 2 * t + (e & 1);
                    const bool top = e < 2;
                    const float p = col < (top ? vis0 : vis1) ? __expf(s[nt][e] * a.scale - (top ? lse0 : lse1)) : 0.0f;
                    s[nt][e] = p * (dp[nt][e] - (top ? dl0 : dl1));
                }
            mma_pb<HD, MMA_LDV>(dq, s, Kt);
        }
        for (int half = 0; half < 2; half++) {
            const int i = half ? i1 : i0;
            if (i >= Tq) continue;
            const size_t at = ((size_t)b * Tq + i) * C + head + 2 * t;
            for (int dt = 0; dt < DT; dt++)
                for (int e = 0; e < 2; e++)
                    put_grad_at(a.dq, at + dt * 8 + e, a.scale * dq[dt][2 * half + e], a.assign & 1u, a.grad16 & 1u);
        }
    }
}

/* dK and dV (a block of 64 keys, its warps 16 keys each, over the query tiles that see them): S^T = K Q^T and
 * dP^T = V dO^T in registers, P^T and dS^T = P^T (dP^T - delta) there, dV += P^T dO and dK += dS^T Q with both
 * straight from the accumulators. Shared: Q and dO row-major (for S^T, dP^T) and transposed (for the products),
 * the query tile's lse and delta; K and V pass through it once, into the warps' fragments. */
template <int HD> __global__ void __launch_bounds__(MAGNA_ATTN_TC_BLOCK) attn_mma_dkv_kernel(attn_k a) {
    MAGNA_DYNAMIC_SHARED(unsigned char, smem);
    constexpr int LDK = mma_ld<HD>::K, NT = TT / 8, DT = HD / 8;
    /* past head size 80, K's and V's fragments beside dK, dV and two score tiles would outgrow 255 registers
     * (ptxas spilled 120 bytes at 96, 8.8 KB at 128): K and V stay in shared memory, read a slice at a time */
    constexpr bool KV_SMEM = HD > 80;
    const magna_launch_attention l = a.l;
    const int Tq = (int)l.tq, Tk = (int)l.tk, C = a.C, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;
    const int k0 = (int)magna_attn_k_begin(&l, blockIdx.x), k_end = (int)magna_attn_k_end(&l, blockIdx.x);
    const int qb = (int)magna_attn_kv_q_begin(&l, blockIdx.x);
    const int j0 = k0 + warp * 16 + g, j1 = j0 + 8; /* this lane's two keys */
    __nv_bfloat16 *Qs = bf16_smem(smem);
    __nv_bfloat16 *Ds = Qs + TT * LDK, *Qt = Ds + TT * LDK, *Dt = Qt + HD * MMA_LDV;
    /* K and V: their own tiles (KV_SMEM), or through Qs and Ds into registers */
    __nv_bfloat16 *Ks = KV_SMEM ? Dt + HD * MMA_LDV : Qs, *Vs = KV_SMEM ? Ks + TT * LDK : Ds;
    float *lse_s = reinterpret_cast<float *>(KV_SMEM ? Vs + TT * LDK : Dt + HD * MMA_LDV), *delta_s = lse_s + TT;
    for (int64_t bh = blockIdx.y; bh < l.bh; bh += magna_attn_bh_stride(&l)) {
        const int b = (int)(bh / a.H), h = (int)(bh % a.H);
        const int L = a.lengths ? a.lengths[b] : Tk;
        if (k0 >= L) continue; /* block-uniform: no query sees these keys */
        const size_t head = (size_t)h * HD, q = (size_t)b * Tq * C + head, kb = (size_t)b * Tk * C + head;
        __syncthreads();
        stage_qkv_mma<HD, LDK, false>(Ks, a, 1, kb, k0, k_end - k0);
        stage_qkv_mma<HD, LDK, false>(Vs, a, 2, kb, k0, k_end - k0);
        __syncthreads();
        uint32_t ka[KV_SMEM ? 1 : HD / 16][4], va[KV_SMEM ? 1 : HD / 16][4];
        if constexpr (!KV_SMEM) {
            load_a<HD, LDK>(ka, Ks + warp * 16 * LDK);
            load_a<HD, LDK>(va, Vs + warp * 16 * LDK);
        }
        float dk[DT][4], dv[DT][4];
        for (int dt = 0; dt < DT; dt++)
            for (int e = 0; e < 4; e++) dk[dt][e] = dv[dt][e] = 0.0f;
        for (int q0 = qb; q0 < Tq; q0 += TT) {
            const int qn = Tq - q0 < TT ? Tq - q0 : TT;
            __syncthreads();
            stage_qkv_mma<HD, LDK, false>(Qs, a, 0, q, q0, qn);
            stage_qkv_mma<HD, MMA_LDV, true>(Qt, a, 0, q, q0, qn);
            stage_mma<HD, LDK, false>(Ds, a.dout, a.dout16, C, q, q0, qn);
            stage_mma<HD, MMA_LDV, true>(Dt, a.dout, a.dout16, C, q, q0, qn);
            for (int c = threadIdx.x; c < TT; c += blockDim.x) {
                lse_s[c] = c < qn ? a.lse[bh * Tq + q0 + c] : 0.0f;
                delta_s[c] = c < qn ? a.delta[bh * Tq + q0 + c] : 0.0f;
            }
            __syncthreads();
            float st[NT][4], dpt[NT][4];
            if constexpr (KV_SMEM) {
                mma_abt_smem<HD, LDK>(st, Ks + warp * 16 * LDK, Qs);
                mma_abt_smem<HD, LDK>(dpt, Vs + warp * 16 * LDK, Ds);
            } else {
                mma_abt<HD, LDK>(st, ka, Qs);  /* S^T: this warp's keys x the tile's queries */
                mma_abt<HD, LDK>(dpt, va, Ds); /* dP^T */
            }
            for (int nt = 0; nt < NT; nt++)
                for (int e = 0; e < 4; e++) {
                    const int c = nt * 8 + 2 * t + (e & 1), j = e < 2 ? j0 : j1;
                    const bool seen = c < qn && j < Tk && j < visible(l, q0 + c, L);
                    const float p = seen ? __expf(st[nt][e] * a.scale - lse_s[c]) : 0.0f;
                    st[nt][e] = p, dpt[nt][e] = p * (dpt[nt][e] - delta_s[c]);
                }
            mma_pb<HD, MMA_LDV>(dv, st, Dt);
            mma_pb<HD, MMA_LDV>(dk, dpt, Qt);
        }
        for (int half = 0; half < 2; half++) {
            const int j = half ? j1 : j0;
            if (j >= Tk) continue;
            const size_t at = ((size_t)b * Tk + j) * C + head + 2 * t;
            for (int dt = 0; dt < DT; dt++)
                for (int e = 0; e < 2; e++) {
                    if (a.dk) put_grad_at(a.dk, at + dt * 8 + e, a.scale * dk[dt][2 * half + e], a.assign & 2u, a.grad16 & 2u);
                    if (a.dv) put_grad_at(a.dv, at + dt * 8 + e, dv[dt][2 * half + e], a.assign & 4u, a.grad16 & 4u);
                }
        }
    }
}

/* the register-level kernels' shared memory (bf16 tiles, 128 bytes to align the start): forward Q, K (TT rows of
 * HD + 8) and V^T (HD rows of TT + 8); dQ K, V and K^T; dK/dV Q, dO, Q^T, dO^T (and past head size 80 K and V)
 * and 2 x TT floats */
size_t mma_shared_bytes(int64_t hd, int kernel) {
    const size_t rows = (size_t)TT * (size_t)(hd + 8), cols = (size_t)hd * MMA_LDV;
    const size_t bf16 = kernel < 2 ? 2 * rows + cols : (hd > 80 ? 4 : 2) * rows + 2 * cols;
    return 128 + bf16 * sizeof(__nv_bfloat16) + (kernel == 2 ? 2 * (size_t)TT * sizeof(float) : 0);
}

/* The layout above, checked on the device it runs on: one warp multiplies A[r][k] = r + 16k by B[k][n] = (8k + n) %
 * 13 + 1 (small integers: bf16 holds them, float32 sums them, exactly) and counts the results that are not the
 * products the layout says it holds. A GPU that lays fragments out otherwise makes many of them wrong. */
__global__ void mma_layout_probe_kernel(int *wrong) {
    const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    auto A = [](int r, int k) { return (float)(r + 16 * k); };
    auto B = [](int k, int n) { return (float)((8 * k + n) % 13 + 1); };
    const uint32_t a[4] = {pack_bf16x2(A(g, 2 * t), A(g, 2 * t + 1)), pack_bf16x2(A(g + 8, 2 * t), A(g + 8, 2 * t + 1)),
                           pack_bf16x2(A(g, 2 * t + 8), A(g, 2 * t + 9)),
                           pack_bf16x2(A(g + 8, 2 * t + 8), A(g + 8, 2 * t + 9))};
    const uint32_t b[2] = {pack_bf16x2(B(2 * t, g), B(2 * t + 1, g)), pack_bf16x2(B(2 * t + 8, g), B(2 * t + 9, g))};
    float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    mma_16816(d, a, b);
    for (int e = 0; e < 4; e++) {
        const int r = g + 8 * (e / 2), n = 2 * t + e % 2;
        float want = 0.0f;
        for (int k = 0; k < 16; k++) want += A(r, k) * B(k, n);
        if (d[e] != want) atomicAdd(wrong, 1);
    }
}

/* 1 when the probe found the layout, 0 when not (or it could not run), said once on stderr */
int mma_layout_verified() {
    int *wrong = nullptr, host = -1;
    cudaError_t e = cudaMalloc(reinterpret_cast<void **>(&wrong), sizeof *wrong);
    if (e == cudaSuccess) e = cudaMemset(wrong, 0, sizeof *wrong);
    if (e == cudaSuccess) e = (cudaError_t)magna_cuda_launch(dim3(1), dim3(32), 0, nullptr, mma_layout_probe_kernel, wrong);
    if (e == cudaSuccess) e = cudaMemcpy(&host, wrong, sizeof host, cudaMemcpyDeviceToHost);
    if (wrong) cudaFree(wrong);
    if (e != cudaSuccess || host != 0) {
        if (e != cudaSuccess) cudaGetLastError(); /* the probe's error is not the step's */
        fprintf(stderr, "magna: attention: mma.sync's fragment layout %s on this GPU (%s): the wmma kernels run "
                        "instead\n", e != cudaSuccess ? "could not be checked" : "is not the one expected",
                e != cudaSuccess ? cudaGetErrorString(e) : "a probe product came out wrong");
        return 0;
    }
    return 1;
}

} // namespace

/* the tensor-core kernels: mma.sync's (default, or MAGNA_CUDA_ATTENTION=mma, once its layout checked out on this
 * device) or wmma's (MAGNA_CUDA_ATTENTION=wmma); the variable is read at every launch */
bool magna_attention::attn_use_mma() {
    const char *k = getenv("MAGNA_CUDA_ATTENTION");
    if (k && !strcmp(k, "wmma")) return false;
    static bool warned = false; /* a misspelt choice is said once, not at every launch */
    if (k && *k && strcmp(k, "mma") && !warned) {
        warned = true;
        fprintf(stderr, "magna: MAGNA_CUDA_ATTENTION=%s is neither mma nor wmma: the default, mma, runs\n", k);
    }
    static int verified = -1; /* once a process (two threads racing here both probe, and agree) */
    if (verified < 0) verified = mma_layout_verified();
    return verified == 1;
}

int magna_attention::mma_launch_forward(const attn_k &a, void *stream) {
    ATTN_TC_DISPATCH(attn_mma_forward_kernel, a.l.grid_x, mma_shared_bytes(a.l.hd, 0));
}
int magna_attention::mma_launch_dq(const attn_k &a, void *stream) {
    ATTN_TC_DISPATCH(attn_mma_dq_kernel, a.l.grid_x, mma_shared_bytes(a.l.hd, 1));
}
int magna_attention::mma_launch_dkv(const attn_k &a, void *stream) {
    ATTN_TC_DISPATCH(attn_mma_dkv_kernel, a.l.kv_grid_x, mma_shared_bytes(a.l.hd, 2));
}
