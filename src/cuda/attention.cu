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
 * accumulation stay float32. */
#include "compat.h"

#include "kernels.h"
#include "launch.h"

/* nvcc unrolls the register loops (the arrays must stay in registers); g++ (the emulator) is left to itself */
#ifdef __CUDACC__
#define UNROLL _Pragma("unroll")
#define UNROLL_4 _Pragma("unroll 4")
#else
#define UNROLL
#define UNROLL_4
#endif

namespace {

constexpr int KT = 32; /* rows of a staged tile: launch.h's tile_k */

struct attn_k {
    magna_launch_attention l;
    const float *q, *k, *v, *out, *dout;
    float *o, *lse, *delta, *dq, *dk, *dv;
    const int32_t *lengths;
    int H, C, bf16;
    float scale;
};

__device__ __forceinline__ float rnd(float x, int bf16) { return bf16 ? __bfloat162float(__float2bfloat16(x)) : x; }

/* the sum over the P threads of a row (P divides 32; every lane of the warp takes part) */
template <int P> __device__ __forceinline__ float row_sum(float v) {
UNROLL
    for (int o = P / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* keys query i sees: [0, visible) */
__device__ __forceinline__ int visible(const magna_launch_attention &l, int i, int L) {
    const int e = (int)magna_attn_keys_end(&l, i);
    const int n = e < L ? e : L;
    return n > 0 ? n : 0;
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
        const float *qrow = a.q + qoff, *kb = a.k + (size_t)b * Tk * C + (size_t)h * hd;
        const float *vb = a.v + (size_t)b * Tk * C + (size_t)h * hd;
        float *orow = a.o + qoff;
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
        for (int d = (int)lane; d < hd; d += MAGNA_LAUNCH_WARP) s += a.dout[off + d] * a.out[off + d];
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
        const float *qrow = a.q + qoff, *dorow = a.dout + qoff, *kb = a.k + (size_t)b * Tk * C + (size_t)h * hd;
        const float *vb = a.v + (size_t)b * Tk * C + (size_t)h * hd;
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
                    if (part + P * e < hd) dqrow[part + P * e] += a.scale * acc[e];
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
        const float *krow = a.k + koff, *vrow = a.v + koff, *qb_ = a.q + (size_t)b * Tq * C + (size_t)h * hd;
        const float *dob = a.dout + (size_t)b * Tq * C + (size_t)h * hd;
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
                    if (a.dv) a.dv[koff + d] += dv[e];
                    if (a.dk) a.dk[koff + d] += a.scale * dk[e];
                }
        }
    }
}

attn_k attn_args_of(const magna_cuda_attention_args *x) {
    attn_k a = {};
    const int hd = x->heads > 0 ? x->C / x->heads : 0;
    a.l = magna_launch_attn((int64_t)x->B * x->heads, x->Tq, x->Tk, hd, x->causal);
    a.q = x->q, a.k = x->k, a.v = x->v, a.lengths = x->key_lengths;
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

int launch_forward(const attn_k &a, void *stream) { ATTN_DISPATCH(attn_forward_kernel, a.l.grid_x); }
int launch_dq(const attn_k &a, void *stream) { ATTN_DISPATCH(attn_dq_kernel, a.l.grid_x); }
int launch_dkv(const attn_k &a, void *stream) { ATTN_DISPATCH(attn_dkv_kernel, a.l.kv_grid_x); }

} // namespace

extern "C" int magna_cuda_attention_forward(const magna_cuda_attention_args *args, float *out, float *lse,
                                            void *stream) {
    attn_k a = attn_args_of(args);
    if (a.l.tile_k != KT) return cudaErrorInvalidValue;
    if (a.l.grid_x == 0) return cudaSuccess; /* no query, head or batch: out is empty */
    a.o = out, a.lse = lse;
    return launch_forward(a, stream);
}

extern "C" int magna_cuda_attention_backward(const magna_cuda_attention_args *args, const float *out,
                                             const float *dout, const float *lse, float *delta, float *dq, float *dk,
                                             float *dv, void *stream) {
    attn_k a = attn_args_of(args);
    if (a.l.tile_k != KT) return cudaErrorInvalidValue;
    if (a.l.grid_x == 0 || (!dq && !dk && !dv)) return cudaSuccess;
    a.out = out, a.dout = dout, a.delta = delta, a.dq = dq, a.dk = dk, a.dv = dv;
    a.lse = const_cast<float *>(lse); /* only forward writes it */
    /* a warp a row for any hd: the row launch's warp-per-row shape (columns capped at a warp's 1024) */
    const int64_t cols = a.l.hd < 1024 ? a.l.hd : 1024;
    const magna_launch_rows r = magna_launch_rowwise(a.l.bh * a.l.tq, cols);
    int err = magna_cuda_launch(dim3(r.grid), dim3(r.block), 0, stream, attn_delta_kernel, a, r);
    if (err == cudaSuccess && dq) err = launch_dq(a, stream);
    if (err == cudaSuccess && (dk || dv) && a.l.kv_grid_x > 0) err = launch_dkv(a, stream);
    return err;
}
