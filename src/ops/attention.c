/* attention.c — fused multi-head scaled dot-product attention: self or cross, causal or not, with an
 * optional key padding mask.
 *
 * q is [B, Tq, C], k and v are [B, Tk, C], the output is [B, Tq, C], with the H heads side by side in C
 * (head h owns columns h*hd .. h*hd+hd-1, hd = C / H), as GPT-2 lays them out. Every (b, h) pair is
 * independent: it reads a [T, hd] slice of q, k and v with leading dimension C (no copies) and writes
 * the same slice of the output. The pairs run in parallel, one per thread, each calling sgemm
 * single-threaded.
 *
 * Which keys a query row i of batch b sees: the first L_b keys (L_b = key_lengths[b], or Tk without a
 * mask: right padding, as a batch of sequences of different lengths has), and when causal only keys
 * j <= i + (Tk - Tq): the queries are the last Tq positions of the keys' sequence (Tq = Tk in training,
 * Tq = 1 when decoding one token against a cache). A row that sees no key outputs zeros.
 *
 * Forward keeps the probabilities P [B, H, Tq, Tk] in `saved`, in bf16 when it runs in bf16 (saved16; on a CUDA
 * graph 2 [B, H, Tq] floats instead, the flash-style kernels' row statistics); backward needs dP [Tq, Tk] of
 * scratch per thread in the workspace, turned in place into dS (in bf16: into a bf16 copy of dS * scale).
 *
 * Rows are taken in blocks of ATTN_BLOCK when causal: rows r0..r1 only see keys 0..kc (kc = what
 * the block's last row sees), so each block's products stop there and, with blocks of 32 at T 128, three
 * quarters of the masked upper triangle's flops are never spent; a padding mask cuts them the same way. Every row of P and dS
 * is written out to Tk (zeros where masked), so backward can read any column block. */
#include "common.h"
#include "attention.h"
#include "gemm_bf16.h"
#include "matmul.h"
#include "../core/simd_math.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define ATTN_BLOCK 32

static int max_threads(void) { return omp_get_max_threads(); }

/* A whole pair's operand packed for the bf16 panel kernel: K^T or V^T [hd, Tk], or K, V, q or dout [T, hd]. */
static size_t pair_pack_floats(int64_t Tq, int64_t Tk, int64_t hd) {
    const size_t t = magna_panel_b_floats(hd, Tk), r = magna_panel_b_floats(Tq > Tk ? Tq : Tk, hd);
    return round16(t > r ? t : r);
}

/* Floats of scratch per thread: backward's dP / dS [Tq, Tk]; in bf16 (attn_bf16) also the panel kernel's packed
 * operands: two of the whole pair (pair_pack_floats), one more of up to [max(Tq, Tk), hd] packed per product, and
 * packed rows; a row block of the output [ATTN_BLOCK, hd] on its way to bf16 (for the matmul after it: bf16_for);
 * and backward's dS in bf16 [Tq, Tk]. */
static size_t attn_scratch_floats(int64_t Tq, int64_t Tk, int64_t hd, bool bf16) {
    size_t f = round16((size_t)(Tq * Tk));
    if (bf16) {
        const int64_t T = Tq > Tk ? Tq : Tk;
        f += 2 * pair_pack_floats(Tq, Tk, hd) + round16(magna_panel_b_floats(T, hd)) +
             round16(magna_panel_a_floats(T, T > hd ? T : hd)) + round16((size_t)((Tq > ATTN_BLOCK ? Tq : ATTN_BLOCK) * hd)) +
             round16((size_t)(Tq * Tk + 1) / 2);
    }
    return f;
}

/* A bf16 attention's workspace starts with [3, B, C] floats: its q, k, v gradients' bias sums per batch row (when
 * it writes those gradients in bf16: dc16_by); the threads' scratch follows. */
static size_t bias_partial_floats(const magna_node *n, bool bf16) {
    return bf16 ? round16((size_t)(3 * n->in[0]->shape[0] * n->in[0]->shape[2])) : 0;
}

/* A bf16 graph's attention on an AVX-512 CPU with avx512_bf16 runs its products on the bf16 panel kernel
 * (src/core/gemm_panel.c: bf16 operands, float32 sums), as autocast runs them in bf16; softmax and its backward
 * stay float32. */
static bool attn_bf16(const magna_graph *g) {
    return magna_gemm_bf16_wanted(g) && magna_panel_available(true);
}

/* Its forward runs in bf16 now: a bf16 graph, and workspace for every thread's scratch (the thread count may have
 * grown since compile). Backward then does too: it needs less. */
bool magna_attention_bf16_now(const magna_node *n) {
    const magna_graph *g = n->g;
    const int64_t Tq = n->in[0]->shape[1], Tk = n->in[1]->shape[1], hd = n->in[0]->shape[2] / n->ip[0];
    return g->device == MAGNA_DEVICE_CPU && attn_bf16(g) &&
           (bias_partial_floats(n, true) + (size_t)max_threads() * attn_scratch_floats(Tq, Tk, hd, true)) *
                   sizeof(float) <=
               g->workspace_bytes;
}

/* q [B, Tq, C]; k, v [B, Tk, C], C = heads * hd; key_lengths int32 [B] (optional 4th input) -> out is
 * [B, Tq, C]; saved P is [B, H, Tq, Tk]. */
static magna_status attention_infer(magna_graph *g, magna_node *n) {
    const magna_node *q = n->in[0], *k = n->in[1];
    const int64_t H = n->ip[0];
    static const char *const names[3] = {"q", "k", "v"};
    char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
    for (int i = 0; i < 3; i++)
        if (n->in[i]->dtype != MAGNA_F32)
            return graph_error(g, MAGNA_ERR_DTYPE, "attention: %s must be float32, got %s", names[i],
                               magna_dtype_name(n->in[i]->dtype));
    for (int i = 0; i < 3; i++)
        if (n->in[i]->ndim != 3)
            return graph_error(g, MAGNA_ERR_SHAPE, "attention: %s must be [B, T, C], got %s", names[i],
                               shape_str(n->in[i], a, sizeof a));
    const magna_node *v = n->in[2];
    if (k->shape[0] != q->shape[0] || k->shape[2] != q->shape[2])
        return graph_error(g, MAGNA_ERR_SHAPE, "attention: q %s and k %s must agree in B and C",
                           shape_str(q, a, sizeof a), shape_str(k, b, sizeof b));
    for (int d = 0; d < 3; d++)
        if (v->shape[d] != k->shape[d])
            return graph_error(g, MAGNA_ERR_SHAPE, "attention: k %s and v %s must have the same shape",
                               shape_str(k, a, sizeof a), shape_str(v, b, sizeof b));
    const int64_t B = q->shape[0], Tq = q->shape[1], Tk = k->shape[1], C = q->shape[2];
    if (C % H != 0)
        return graph_error(g, MAGNA_ERR_SHAPE, "attention: q %s has C = %lld, which %lld heads do not divide",
                           shape_str(q, a, sizeof a), (long long)C, (long long)H);
    if (C > INT_MAX || Tq > INT_MAX || Tk > INT_MAX)
        return graph_error(g, MAGNA_ERR_SHAPE, "attention: q %s is too large (T and C must fit in an int)",
                           shape_str(q, a, sizeof a));
    if (n->n_in == 4) {
        const magna_node *len = n->in[3];
        if (len->dtype != MAGNA_I32 || len->ndim != 1 || len->shape[0] != B)
            return graph_error(g, MAGNA_ERR_SHAPE, "attention: key_lengths must be int32 [B] = [%lld], got %s %s",
                               (long long)B, magna_dtype_name(len->dtype), shape_str(len, a, sizeof a));
    }
    node_set_shape(n, 3, q->shape);
    n->dtype = MAGNA_F32;
    /* the CUDA op (src/cuda/ops_attention.c) keeps two floats a query row instead of P: the log-sum-exp and
     * backward's rowsum(dO * O) (more than P holds when Tk = 1), and needs no scratch. Compile runs this
     * again on a graph given its device after the node was built. */
    const size_t p_floats = (size_t)(B * H) * (size_t)(Tq * Tk), row_floats = 2 * (size_t)(B * H) * (size_t)Tq;
    if (g->device == MAGNA_DEVICE_CUDA) {
        n->saved_bytes = row_floats * sizeof(float);
        n->workspace_bytes = 0;
        return MAGNA_OK;
    }
    n->saved_bytes = (p_floats > row_floats ? p_floats : row_floats) * sizeof(float);
    /* Scratch for every thread; after compile the workspace is fixed, so if the thread count grew since,
     * backward runs on fewer threads instead of asking for more (and bf16 forward on float32, attn_args_of). */
    const size_t per_thread = attn_scratch_floats(Tq, Tk, C / H, attn_bf16(g)) * sizeof(float),
                 partials = bias_partial_floats(n, attn_bf16(g)) * sizeof(float);
    size_t ws = partials + per_thread * (size_t)max_threads();
    if (g->compiled && ws > g->workspace_bytes && g->workspace_bytes > partials)
        ws = partials + (g->workspace_bytes - partials) / per_thread * per_thread;
    n->workspace_bytes = ws > partials + per_thread ? ws : partials + per_thread;
    return MAGNA_OK;
}

/* p[0..len) = softmax(p[0..len)), p[len..end) = 0. The simd pragmas let the reductions vectorise (a fixed
 * order per build, so still deterministic); exp is magna_vexp. */
static void softmax_row(float *p, int len, int end) {
    if (len > 0) {
        float mx = p[0];
#pragma omp simd reduction(max : mx)
        for (int j = 1; j < len; j++) mx = p[j] > mx ? p[j] : mx;
#pragma omp simd
        for (int j = 0; j < len; j++) p[j] -= mx;
        magna_vexp(p, p, len);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < len; j++) sum += p[j];
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < len; j++) p[j] *= inv;
    }
    for (int j = len > 0 ? len : 0; j < end; j++) p[j] = 0.0f;
}

/* ds[0..len) = scale p * (ds - sum(p * ds)) (the softmax backward, in place on dP), ds[len..end) = 0. */
static void softmax_row_backward(const float *p, float *ds, float scale, int len, int end) {
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int j = 0; j < len; j++) dot += p[j] * ds[j];
#pragma omp simd
    for (int j = 0; j < len; j++) ds[j] = scale * p[j] * (ds[j] - dot);
    for (int j = len > 0 ? len : 0; j < end; j++) ds[j] = 0.0f;
}

/* The same two in a bf16 attention, on AVX-512 with avx512_bf16 (which a bf16 attention has: attn_bf16), each
 * writing its row in bf16 for the products that read it, in two passes over the row instead of five or six. */
#define T512BF16 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma,avx512bf16")))

/* p16[0..len) = softmax(s[0..len)) rounded to bf16, p16[len..end) = 0; s is left holding exp(s - max). */
T512BF16 static void softmax_row_bf16(float *s, int len, int end, uint16_t *p16) {
    int j = 0;
    if (len > 0) {
        __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
        for (int i = 0; i < len; i += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, magna_mask16(len - i), s + i));
        const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        for (int i = 0; i < len; i += 16) {
            const __mmask16 k = magna_mask16(len - i);
            const __m512 e = magna_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + i), m));
            _mm512_mask_storeu_ps(s + i, k, e);
            sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(k, e));
        }
        const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
        for (; j < len; j += 16) {
            const __mmask16 k = magna_mask16(len - j);
            _mm256_mask_storeu_epi16(p16 + j, k, (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, s + j), inv)));
        }
        j = len;
    }
    if (j < end) memset(p16 + j, 0, (size_t)(end - j) * sizeof *p16);
}

/* ds16[0..len) = scale p (dp - sum(p dp)) rounded to bf16, ds16[len..end) = 0, from P in bf16. */
T512BF16 static void softmax_row_backward_bf16(const uint16_t *p, const float *dp, float scale, int len, int end,
                                               uint16_t *ds16) {
    __m512 acc = _mm512_setzero_ps();
    for (int i = 0; i < len; i += 16) {
        const __mmask16 k = magna_mask16(len - i);
        acc = _mm512_fmadd_ps(magna_load_bf16x16(p + i, k), _mm512_maskz_loadu_ps(k, dp + i), acc);
    }
    const __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(acc)), sc = _mm512_set1_ps(scale);
    int j = 0;
    for (; j < len; j += 16) {
        const __mmask16 k = magna_mask16(len - j);
        const __m512 pv = magna_load_bf16x16(p + j, k);
        const __m512 d = _mm512_mul_ps(_mm512_mul_ps(sc, pv), _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dp + j), dot));
        _mm256_mask_storeu_epi16(ds16 + j, k, (__m256i)_mm512_cvtneps_pbh(d));
    }
    j = len > 0 ? len : 0;
    if (j < end) memset(ds16 + j, 0, (size_t)(end - j) * sizeof *ds16);
}

/* An operand of the heads' products: float32 (f), or bf16 (h) as the op before handed it over (the dense layers
 * making q, k and v write them so, and the one after the attention its dout: value16, grad16). */
typedef struct attn_opnd {
    const float *f;
    const uint16_t *h;
} attn_opnd;

static attn_opnd opnd_at(attn_opnd o, size_t off) { return (attn_opnd){o.f ? o.f + off : NULL, o.h ? o.h + off : NULL}; }

/* The operand in[i]'s value: bf16 where the dense layer before wrote it so (directly or through its fused bias
 * add, which reads the same buffer). */
static attn_opnd input_opnd(const magna_node *n, int i) {
    const magna_node *x = n->in[i], *owner = x->alias_input ? x->in[0] : x;
    return owner->value16 ? (attn_opnd){NULL, (const uint16_t *)fval(x)} : (attn_opnd){fval(x), NULL};
}

/* One (b, h) pair's view: q, k, v, out (and their grads) point at the head's first column, row stride C. */
typedef struct attn_head {
    int Tq, Tk, C, hd;
    int keys;  /* L_b: keys 0..keys-1 exist */
    int shift; /* causal: row i sees keys j <= i + shift; INT_MAX/2 when not causal */
    float scale;
    /* bf16 (attn_bf16): this thread's packed operands, else NULL: two of the whole pair (pair_pack_floats), one
     * packed per product, rows; and backward's dS * scale in bf16 [Tq, Tk] */
    uint16_t *pair_b[2], *panel, *ds16;
    uint32_t *rows;
    float *out_rows; /* bf16 output (out16): a row block of it in float32, [ATTN_BLOCK, hd] */
    float *s_rows;   /* bf16: a row block of scores in float32, [ATTN_BLOCK, Tk], softmaxed there before P16 keeps
                      * them in bf16 (backward's dS scratch, free in forward) */
} attn_head;

/* op(W) [k, n] = w[p * ldw + j] (w[j * ldw + p] when wt) packed into dst for the bf16 panel kernel. */
static void pack_w(int k, int n, attn_opnd w, int ldw, bool wt, uint16_t *dst) {
    if (w.h)
        magna_panel_pack_bf16_h(k, n, w.h, ldw, wt, dst);
    else
        magna_panel_pack_bf16(k, n, w.f, ldw, wt, dst, false);
}

/* A product's destination: float32 f, or (a gradient the dense layer before takes in bf16: dc16_by) bf16 h, with
 * colsum[j] += its column sums for that layer's bias. */
typedef struct attn_out {
    float *f;
    uint16_t *h;
    float *colsum;
} attn_out;

static attn_out out_f32(float *c) { return (attn_out){c, NULL, NULL}; }
static attn_out out_at(attn_out o, size_t off) {
    return (attn_out){o.f ? o.f + off : NULL, o.h ? o.h + off : NULL, o.colsum};
}

/* C [m, n] = alpha op(A) B (+ C when accumulate), B [k, n] = w[p * ldw + j] (w[j * ldw + p] when wt): in bf16 on
 * the panel kernel when the head has its scratch, packing B into `panel` (unless `packed` holds it already, packed
 * with packed_k rows: its first k are B) and A into `rows` (unless A's bf16 rows can be read in place), else sgemm
 * in float32 (whose operands are never bf16: those come only to a bf16 attention). C is out.f, or out.h in bf16
 * (assigning; bf16 only). */
static void head_gemm(const attn_head *h, bool ta, bool wt, int m, int n, int k, float alpha, attn_opnd a, int lda,
                      attn_opnd w, int ldw, const uint16_t *packed, int packed_k, bool accumulate, attn_out out, int ldc) {
    if (h->rows) {
        if (!packed) {
            pack_w(k, n, w, ldw, wt, h->panel);
            packed = h->panel, packed_k = k;
        }
        magna_panel_gemm_bf16_any(m, n, k, a.f, a.h, lda, ta, alpha, packed, packed_k, h->rows, accumulate, out.f,
                                  out.h, ldc, out.colsum);
    } else {
        magna_sgemm(ta, wt, m, n, k, alpha, a.f, lda, w.f, ldw, accumulate ? 1.0f : 0.0f, out.f, ldc);
    }
}

static attn_opnd f32(const float *p) { return (attn_opnd){p, NULL}; }
static attn_opnd h16(const uint16_t *p) { return (attn_opnd){NULL, p}; }

/* B for a product over rows r.. of an operand packed whole for the pair (`whole`, packed with `rows` rows): its
 * pairs from r / 2 on when r is even; else NULL, and head_gemm packs the rows it needs. */
static const uint16_t *packed_from(const uint16_t *whole, int r) { return whole && r % 2 == 0 ? whole + (size_t)r / 2 * 64 : NULL; }

/* How many keys row i sees (0..Tk). */
static int visible(const attn_head *h, int i) {
    const int causal_end = i + h->shift + 1;
    const int n = causal_end < h->keys ? causal_end : h->keys;
    return n > 0 ? n : 0;
}

static int row_block(const attn_head *h) { return h->shift < INT_MAX / 4 ? ATTN_BLOCK : h->Tq; }

/* S = q k^T * scale, P = softmax(S) over the keys each row sees, out = P v; out in bf16 into out16 instead
 * (through the head's out_rows) when the matmul after it reads it so (bf16_for). A bf16 attention keeps P in bf16
 * (P16, what its products read of it anyway; half the bytes to write and read back), made in s_rows, and packs K^T
 * and V once for every row block (a block reads its first kc keys of them), while q's rows and P16's are read in
 * place (magna_panel_rows_direct), the scale applied to the sums. */
static void attention_head_forward(const attn_head *h, attn_opnd q, attn_opnd k, attn_opnd v, float *out,
                                   uint16_t *out16, float *P, uint16_t *P16) {
    const int Tq = h->Tq, Tk = h->Tk, C = h->C, hd = h->hd, block = row_block(h);
    const uint16_t *kt = NULL, *vp = NULL;
    if (h->rows && h->keys > 0) {
        pack_w(hd, h->keys, k, C, true, h->pair_b[0]);
        pack_w(h->keys, hd, v, C, false, h->pair_b[1]);
        kt = h->pair_b[0], vp = h->pair_b[1];
    }
    for (int r0 = 0; r0 < Tq; r0 += block) {
        const int r1 = r0 + block < Tq ? r0 + block : Tq, kc = visible(h, r1 - 1);
        /* the block's output: out's rows, or float32 rows of scratch to round into out16's */
        float *o = out16 ? h->out_rows : out + (size_t)r0 * C;
        const int ldo = out16 ? hd : C;
        float *S = P16 ? h->s_rows : P + (size_t)r0 * Tk; /* the block's rows of P, in float32 */
        if (kc == 0) { /* no row of the block sees a key (vis grows with i) */
            for (int i = r0; i < r1; i++) {
                memset(S + (size_t)(i - r0) * Tk, 0, (size_t)Tk * sizeof(float));
                memset(o + (size_t)(i - r0) * ldo, 0, (size_t)hd * sizeof(float));
            }
        } else {
            head_gemm(h, false, true, r1 - r0, kc, hd, h->scale, opnd_at(q, (size_t)r0 * C), C, k, C, kt, hd, false,
                      out_f32(S), Tk);
            for (int i = r0; i < r1; i++) {
                float *row = S + (size_t)(i - r0) * Tk;
                if (P16)
                    softmax_row_bf16(row, visible(h, i), Tk, P16 + (size_t)i * Tk);
                else
                    softmax_row(row, visible(h, i), Tk);
            }
        }
        if (P16 && kc == 0)
            for (int i = r0; i < r1; i++) memset(P16 + (size_t)i * Tk, 0, (size_t)Tk * sizeof *P16);
        if (kc > 0)
            head_gemm(h, false, false, r1 - r0, hd, kc, 1.0f, P16 ? h16(P16 + (size_t)r0 * Tk) : f32(S), Tk, v, C, vp,
                      h->keys, false, out_f32(o), ldo);
        if (out16)
            for (int i = r0; i < r1; i++) magna_to_bf16_row(out16 + (size_t)i * C, o + (size_t)(i - r0) * hd, hd);
    }
}

/* The pair's rows r0..r1 x hd columns of a [rows, C] gradient, zeroed (in float32 or bf16). */
static void zero_rows(attn_out d, int r0, int r1, int C, int hd) {
    for (int r = r0; r < r1; r++) {
        if (d.h)
            memset(d.h + (size_t)r * C, 0, (size_t)hd * sizeof *d.h);
        else
            memset(d.f + (size_t)r * C, 0, (size_t)hd * sizeof *d.f);
    }
}

static bool wanted(attn_out d) { return d.f || d.h; }

/* dP = dout v^T,  dS = P * (dP - rowsum(dP * P)),
 * dv += P^T dout,  dq += dS k * scale,  dk += dS^T q * scale. dq, dk, dv may be NULL; dS is [Tq, Tk] scratch.
 * `assign` (bits 0, 1, 2: dq, dk, dv): the first writer of that gradient, whose products then assign (each of its
 * rows has one product) and whose rows no product reaches (no key seen, or a key no row sees) are zeroed. A
 * gradient in bf16 (out.h: its dense layer reads it so, dc16_by) is always its first writer's.
 * In bf16, V^T and K (then dout and q) are packed once for the pair, and dS * scale is kept in bf16 (ds16), which
 * both of its products read: in place for dq. */
static void attention_head_backward(const attn_head *h, attn_opnd q, attn_opnd k, attn_opnd v, attn_opnd P,
                                    attn_opnd dout, attn_out dq, attn_out dk, attn_out dv, float *dS, unsigned assign) {
    const int Tq = h->Tq, Tk = h->Tk, C = h->C, hd = h->hd, block = row_block(h);
    uint16_t *ds16 = h->rows ? h->ds16 : NULL;
    const float ds_scale = ds16 ? h->scale : 1.0f, prod_scale = ds16 ? 1.0f : h->scale; /* one of them scales dS */
    const uint16_t *vt = NULL, *kpk = NULL;
    if (h->rows && h->keys > 0) {
        pack_w(hd, h->keys, v, C, true, h->pair_b[0]);
        vt = h->pair_b[0];
        if (wanted(dq)) {
            pack_w(h->keys, hd, k, C, false, h->pair_b[1]);
            kpk = h->pair_b[1];
        }
    }
    /* Row blocks: dP and dS for rows r0..r1 (keys 0..kc), then dq for those rows. */
    for (int r0 = 0; r0 < Tq; r0 += block) {
        const int r1 = r0 + block < Tq ? r0 + block : Tq, kc = visible(h, r1 - 1);
        if (kc > 0)
            head_gemm(h, false, true, r1 - r0, kc, hd, 1.0f, opnd_at(dout, (size_t)r0 * C), C, v, C, vt, hd, false,
                      out_f32(dS + (size_t)r0 * Tk), Tk);
        for (int i = r0; i < r1; i++) {
            float *row = dS + (size_t)i * Tk;
            if (P.h) { /* a bf16 forward's P: a bf16 backward, with ds16 (attention_backward) */
                softmax_row_backward_bf16(P.h + (size_t)i * Tk, row, ds_scale, visible(h, i), Tk, ds16 + (size_t)i * Tk);
                continue;
            }
            softmax_row_backward(P.f + (size_t)i * Tk, row, ds_scale, visible(h, i), Tk);
            if (ds16) magna_to_bf16_row(ds16 + (size_t)i * Tk, row, Tk);
        }
        const attn_opnd ds_rows = ds16 ? h16(ds16 + (size_t)r0 * Tk) : f32(dS + (size_t)r0 * Tk);
        if (wanted(dq) && kc > 0)
            head_gemm(h, false, false, r1 - r0, hd, kc, prod_scale, ds_rows, Tk, k, C, kpk, h->keys, !(assign & 1u),
                      out_at(dq, (size_t)r0 * C), C);
        else if (wanted(dq) && (assign & 1u))
            zero_rows(dq, r0, r1, C, hd);
    }
    if (!wanted(dk) && !wanted(dv)) return;
    /* dout and q, every row, for the column blocks' products (V^T and K are done with) */
    const uint16_t *dout_p = NULL, *q_p = NULL;
    if (h->rows) {
        if (wanted(dv)) pack_w(Tq, hd, dout, C, false, h->pair_b[0]), dout_p = h->pair_b[0];
        if (wanted(dk)) pack_w(Tq, hd, q, C, false, h->pair_b[1]), q_p = h->pair_b[1];
    }
    int done = 0; /* keys 0..done-1 got their products */
    /* Column blocks: keys c0..ce are seen by rows rs..Tq-1 (the first row that sees key c0 onwards). */
    const int cblock = block == Tq ? Tk : block;
    for (int c0 = 0; c0 < h->keys; c0 += cblock) {
        const int c1 = c0 + cblock < h->keys ? c0 + cblock : h->keys;
        int rs = 0;
        if (h->shift < INT_MAX / 4) rs = c0 - h->shift > 0 ? c0 - h->shift : 0;
        if (rs >= Tq) break;
        if (wanted(dv))
            head_gemm(h, true, false, c1 - c0, hd, Tq - rs, 1.0f, opnd_at(P, (size_t)rs * Tk + c0), Tk,
                      opnd_at(dout, (size_t)rs * C), C, packed_from(dout_p, rs), Tq, !(assign & 4u),
                      out_at(dv, (size_t)c0 * C), C);
        if (wanted(dk)) {
            const attn_opnd ds_cols = ds16 ? h16(ds16 + (size_t)rs * Tk + c0) : f32(dS + (size_t)rs * Tk + c0);
            head_gemm(h, true, false, c1 - c0, hd, Tq - rs, prod_scale, ds_cols, Tk, opnd_at(q, (size_t)rs * C), C,
                      packed_from(q_p, rs), Tq, !(assign & 2u), out_at(dk, (size_t)c0 * C), C);
        }
        done = c1;
    }
    if (wanted(dk) && (assign & 2u)) zero_rows(dk, done, Tk, C, hd);
    if (wanted(dv) && (assign & 4u)) zero_rows(dv, done, Tk, C, hd);
}

/* Everything one (b, h) pair needs. */
typedef struct attn_args {
    attn_opnd q, k, v, dout;
    float *out, *P;
    attn_out d[3]; /* dq, dk, dv: float32, or bf16 with their dense layers' bias sums per batch row (dc16_by) */
    uint16_t *out16; /* the output in bf16 for the matmul after it (bf16_for), instead of out */
    const int32_t *lengths;
    int64_t H;
    unsigned assign; /* bits 0, 1, 2: the first writer of dq, dk, dv (grad_assigns): the pair assigns its slices */
    bool bf16;                         /* attn_bf16: the products on the bf16 panel kernel */
    bool p16;                          /* P is saved in bf16 (the forward ran in bf16: saved16) */
    attn_head head;                    /* keys is filled per pair */
} attn_args;

static attn_args attn_args_of(const magna_node *n) {
    const magna_node *q = n->in[0], *k = n->in[1], *v = n->in[2];
    attn_args a = {.q = input_opnd(n, 0), .k = input_opnd(n, 1), .v = input_opnd(n, 2), .out = fval(n),
                   .P = (float *)n->saved};
    a.dout = n->grad16 ? (attn_opnd){NULL, (const uint16_t *)n->grad} : f32(n->grad);
    a.d[0] = out_f32(q->grad), a.d[1] = out_f32(k->grad), a.d[2] = out_f32(v->grad);
    a.assign = n->grad_assign & 7u;
    a.lengths = n->n_in == 4 ? ival(n->in[3]) : NULL;
    a.H = n->ip[0];
    attn_head *h = &a.head;
    h->Tq = (int)q->shape[1], h->Tk = (int)k->shape[1], h->C = (int)q->shape[2], h->hd = h->C / (int)a.H;
    h->keys = h->Tk;
    h->shift = n->ip[1] ? h->Tk - h->Tq : INT_MAX / 2;
    h->scale = 1.0f / sqrtf((float)h->hd);
    return a;
}

/* The pair's head view, and where its q/out rows (oq) and k/v rows (ok) start. */
static attn_head pair_head(const attn_args *a, int64_t bh, size_t *oq, size_t *ok) {
    const int64_t b = bh / a->H, hh = bh % a->H;
    attn_head h = a->head;
    if (a->lengths) h.keys = a->lengths[b];
    *oq = (size_t)b * (size_t)h.Tq * (size_t)h.C + (size_t)hh * (size_t)h.hd;
    *ok = (size_t)b * (size_t)h.Tk * (size_t)h.C + (size_t)hh * (size_t)h.hd;
    return h;
}

/* A thread's slice of the workspace: dS [Tq, Tk] first (backward's), then in bf16 the head's packed operands. */
static void head_scratch(attn_head *h, float *slice) {
    const int T = h->Tq > h->Tk ? h->Tq : h->Tk;
    float *p = slice + round16((size_t)h->Tq * (size_t)h->Tk);
    for (int i = 0; i < 2; i++) {
        h->pair_b[i] = (uint16_t *)p;
        p += pair_pack_floats(h->Tq, h->Tk, h->hd);
    }
    h->panel = (uint16_t *)p;
    p += round16(magna_panel_b_floats(T, h->hd));
    h->rows = (uint32_t *)p;
    p += round16(magna_panel_a_floats(T, T > h->hd ? T : h->hd));
    h->out_rows = p;
    p += round16((size_t)((h->Tq > ATTN_BLOCK ? h->Tq : ATTN_BLOCK) * h->hd));
    h->ds16 = (uint16_t *)p;
    h->s_rows = slice;
}

/* slice: this thread's scratch in bf16 (NULL: float32). */
static void attention_pair_forward(const attn_args *a, int64_t bh, float *slice) {
    size_t oq, ok;
    attn_head h = pair_head(a, bh, &oq, &ok);
    if (slice) head_scratch(&h, slice);
    const size_t po = (size_t)bh * h.Tq * h.Tk;
    attention_head_forward(&h, opnd_at(a->q, oq), opnd_at(a->k, ok), opnd_at(a->v, ok), a->out + oq,
                           a->out16 ? a->out16 + oq : NULL, a->P + po, slice ? (uint16_t *)a->P + po : NULL);
}

/* The next (b, h) pair for whichever thread asks: pairs are handed out one at a time rather than split evenly up
 * front, so a thread whose core the machine slows down (a shared host, another process) takes fewer of them
 * instead of holding the others at the join. Each pair writes only its own slices: the order cannot change a
 * result. */
static int64_t take_pair(int64_t *next) { return __atomic_fetch_add(next, 1, __ATOMIC_RELAXED); }

/* (b, h) pairs in parallel, taken one at a time by the threads (take_pair), each calling sgemm single-threaded
 * (or, in bf16, the panel kernel on its slice of the workspace, when the workspace has a slice for every thread). */
static magna_status attention_forward(magna_graph *g, magna_node *n) {
    attn_args a = attn_args_of(n);
    a.bf16 = attn_bf16(g);
    if (a.lengths)
        for (int64_t b = 0; b < n->shape[0]; b++)
            if (a.lengths[b] < 0 || a.lengths[b] > a.head.Tk)
                return graph_error(g, MAGNA_ERR_RANGE, "attention: key_lengths[%lld] = %d is outside [0, %d]",
                                   (long long)b, a.lengths[b], a.head.Tk);
    const int64_t pairs = n->shape[0] * a.H;
    const size_t stride = attn_scratch_floats(a.head.Tq, a.head.Tk, a.head.hd, a.bf16);
    const bool bf = magna_attention_bf16_now(n);
    float *ws = (float *)g->workspace + (bf ? bias_partial_floats(n, true) : 0);
    if (!bf && (a.q.h || a.k.h || a.v.h)) /* the dense layers before it ask magna_attention_bf16_now too */
        return graph_error(g, MAGNA_ERR_STATE, "attention: bf16 q, k or v, but a float32 attention");
    uint16_t *out16 = n->bf16_for ? magna_matmul_a16_for(n) : NULL;
    a.out16 = bf ? out16 : NULL;
    n->saved16 = bf; /* P in bf16 */
    if (pairs > 1 && max_threads() > 1) {
        int64_t next = 0;
#pragma omp parallel
        {
            float *slice = bf ? ws + (size_t)omp_get_thread_num() * stride : NULL;
            for (int64_t bh; (bh = take_pair(&next)) < pairs;) attention_pair_forward(&a, bh, slice);
        }
    } else {
        for (int64_t bh = 0; bh < pairs; bh++) attention_pair_forward(&a, bh, bf ? ws : NULL);
    }
    if (out16 && !bf) magna_to_bf16(out16, a.out, n->numel); /* the matmul after it reads it there */
    return MAGNA_OK;
}

static void attention_pair_backward(const attn_args *a, int64_t bh, float *scratch) {
    size_t oq, ok;
    attn_head h = pair_head(a, bh, &oq, &ok);
    if (a->bf16) head_scratch(&h, scratch);
    const size_t po = (size_t)bh * h.Tq * h.Tk;
    const attn_opnd P = a->p16 ? (attn_opnd){NULL, (const uint16_t *)a->P + po} : f32(a->P + po);
    attn_out d[3];
    for (int i = 0; i < 3; i++) {
        d[i] = out_at(a->d[i], i ? ok : oq);
        if (d[i].colsum) d[i].colsum += (size_t)(bh / a->H) * (size_t)h.C + (size_t)(bh % a->H) * (size_t)h.hd;
    }
    attention_head_backward(&h, opnd_at(a->q, oq), opnd_at(a->k, ok), opnd_at(a->v, ok), P, opnd_at(a->dout, oq), d[0],
                            d[1], d[2], scratch, a->assign);
}

/* Pairs in parallel, each thread with its own [Tq, Tk] scratch (and bf16's packed operands). A single pair (or thread) runs outside
 * any OpenMP region (a one-thread region still allocates a team), with sgemm multi-threaded. */
static void attention_backward(magna_graph *g, magna_node *n) {
    attn_args a = attn_args_of(n);
    for (int i = 0; i < 3; i++) n->in[i]->grad16 = false;
    if (!a.d[0].f && !a.d[1].f && !a.d[2].f) return;
    a.bf16 = attn_bf16(g);
    const int64_t pairs = n->shape[0] * a.H, B = n->shape[0], C = a.head.C;
    const size_t partials = bias_partial_floats(n, a.bf16);
    size_t stride = attn_scratch_floats(a.head.Tq, a.head.Tk, a.head.hd, a.bf16);
    if (a.bf16 && (partials + stride) * sizeof(float) > g->workspace_bytes) { /* planned without bf16's room */
        a.bf16 = false;
        stride = attn_scratch_floats(a.head.Tq, a.head.Tk, a.head.hd, false);
    }
    a.p16 = n->saved16;
    if (!a.bf16 && (a.p16 || a.dout.h)) { /* a bf16 forward (magna_attention_bf16_now) leaves room for this */
        graph_error(g, MAGNA_ERR_STATE, "attention: bf16 probabilities or dout, but a float32 backward");
        return;
    }
    /* q, k, v's gradients in bf16 where their dense layers read them so (dc16_by), each with its bias's column sums
     * taken per batch row into [B, C] partials at the workspace's start, then added up in batch order */
    float *bias[3] = {NULL, NULL, NULL}, *part = (float *)g->workspace;
    bool bias_assign[3] = {false, false, false};
    for (int i = 0; i < 3 && a.bf16; i++) {
        uint16_t *d16 = a.d[i].f ? magna_matmul_dc16_for(n, i, &bias[i], &bias_assign[i]) : NULL;
        n->in[i]->grad16 = d16 != NULL;
        if (!d16) continue;
        a.d[i] = (attn_out){NULL, d16, bias[i] ? part + (size_t)i * (size_t)(B * C) : NULL};
        if (bias[i]) memset(a.d[i].colsum, 0, (size_t)(B * C) * sizeof(float));
    }
    float *ws = (float *)g->workspace + (a.bf16 ? partials : 0);
    const size_t room = g->workspace_bytes - (a.bf16 ? partials * sizeof(float) : 0);
    int nt = max_threads();
    if ((size_t)nt > room / (stride * sizeof(float))) nt = (int)(room / (stride * sizeof(float)));
    if (pairs > 1 && nt > 1) {
        /* the whole team (a team of another size makes libgomp allocate); the first nt have scratch */
        int64_t next = 0;
#pragma omp parallel
        {
            const int t = omp_get_thread_num();
            for (int64_t bh; t < nt && (bh = take_pair(&next)) < pairs;) attention_pair_backward(&a, bh, ws + (size_t)t * stride);
        }
    } else {
        for (int64_t bh = 0; bh < pairs; bh++) attention_pair_backward(&a, bh, ws);
    }
    for (int i = 0; i < 3; i++)
        if (bias[i]) magna_colsum_combine(bias[i], a.d[i].colsum, B, C, bias_assign[i]);
}

magna_node *magna_attention_masked(magna_graph *g, magna_node *q, magna_node *k, magna_node *v,
                                   magna_node *key_lengths, int heads, bool causal) {
    if (!g) return NULL;
    if (heads < 1) {
        graph_error(g, MAGNA_ERR_ARG, "attention: heads must be at least 1, got %d", heads);
        return NULL;
    }
    magna_node *in[4] = {q, k, v, key_lengths};
    const int64_t ip[2] = {heads, causal};
    return graph_add_node(g, OP_ATTENTION, key_lengths ? 4 : 3, in, ip, 2, NULL, 0);
}

magna_node *magna_attention(magna_graph *g, magna_node *q, magna_node *k, magna_node *v, int heads, bool causal) {
    return magna_attention_masked(g, q, k, v, NULL, heads, causal);
}

const magna_op_def op_def_attention = {"attention", OPF_BWD_INPUTS | OPF_GRAD_ASSIGN, attention_infer,
                                       attention_forward, attention_backward};
