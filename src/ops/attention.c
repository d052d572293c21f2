/* attention.c — fused multi-head scaled dot-product attention, causal or not.
 *
 * q, k, v and the output are [B, T, C] with the H heads side by side in C (head h owns columns
 * h*hd .. h*hd+hd-1, hd = C / H), as GPT-2 lays them out. Every (b, h) pair is independent: it reads
 * a [T, hd] slice of q, k and v with leading dimension C (no copies) and writes the same slice of the
 * output. The pairs run in parallel, one per thread, each calling sgemm single-threaded.
 *
 * Forward keeps the probabilities P [B, H, T, T] in `saved`; backward needs dP [T, T] of scratch per
 * thread in the workspace, turned in place into dS.
 *
 * Causal attention works in row blocks of ATTN_BLOCK: rows r0..r1 only see keys 0..r1, so each block's
 * products stop there and about half the flops of the masked upper triangle are never spent. Inside a
 * block's diagonal tile the masked entries of P and dS are written as zeros; entries right of the
 * tile are never written and never read. */
#include "common.h"

#include <limits.h>
#include <math.h>
#include <omp.h>

#define ATTN_BLOCK 64

static int max_threads(void) { return omp_get_max_threads(); }

/* Floats of backward scratch per thread: dP / dS [T, T], rounded up to a cache line. */
static size_t attn_scratch_floats(int64_t T) { return ((size_t)(T * T) + 15) & ~(size_t)15; }

/* q, k, v are [B, T, C], C = heads * hd -> out is [B, T, C]; saved P is [B, H, T, T]. */
static magna_status attention_infer(magna_graph *g, magna_node *n) {
    const magna_node *q = n->in[0];
    const int64_t H = n->ip[0];
    static const char *const names[3] = {"q", "k", "v"};
    char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
    for (int i = 0; i < 3; i++)
        if (n->in[i]->dtype != MAGNA_F32)
            return graph_error(g, MAGNA_ERR_DTYPE, "attention: %s must be float32, got %s", names[i],
                               magna_dtype_name(n->in[i]->dtype));
    if (q->ndim != 3)
        return graph_error(g, MAGNA_ERR_SHAPE, "attention: q must be [B, T, C], got q %s", shape_str(q, a, sizeof a));
    for (int i = 1; i < 3; i++) {
        const magna_node *o = n->in[i];
        bool same = o->ndim == 3;
        for (int d = 0; same && d < 3; d++) same = o->shape[d] == q->shape[d];
        if (!same)
            return graph_error(g, MAGNA_ERR_SHAPE, "attention: q %s and %s %s must have the same shape [B, T, C]",
                               shape_str(q, a, sizeof a), names[i], shape_str(o, b, sizeof b));
    }
    const int64_t B = q->shape[0], T = q->shape[1], C = q->shape[2];
    if (C % H != 0)
        return graph_error(g, MAGNA_ERR_SHAPE, "attention: q %s has C = %lld, which %lld heads do not divide",
                           shape_str(q, a, sizeof a), (long long)C, (long long)H);
    if (C > INT_MAX || T > INT_MAX)
        return graph_error(g, MAGNA_ERR_SHAPE, "attention: q %s is too large (T and C must fit in an int)",
                           shape_str(q, a, sizeof a));
    node_set_shape(n, 3, q->shape);
    n->dtype = MAGNA_F32;
    n->saved_bytes = (size_t)(B * H) * (size_t)(T * T) * sizeof(float);
    /* Backward scratch for every thread; after compile the workspace is fixed, so if the thread count
     * grew since, backward runs on fewer threads instead of asking for more. */
    size_t per_thread = attn_scratch_floats(T) * sizeof(float);
    size_t ws = per_thread * (size_t)max_threads();
    if (g->compiled && ws > g->workspace_bytes) ws = g->workspace_bytes / per_thread * per_thread;
    n->workspace_bytes = ws > per_thread ? ws : per_thread;
    return MAGNA_OK;
}

/* p[0..len) = softmax(p[0..len)), p[len..end) = 0. The simd pragmas let the reductions vectorise (a fixed
 * order per build, so still deterministic); exp is magna_vexp. */
static void softmax_row(float *p, int len, int end) {
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
    for (int j = len; j < end; j++) p[j] = 0.0f;
}

/* ds[0..len) = p * (ds - sum(p * ds)) (the softmax backward, in place on dP), ds[len..end) = 0. */
static void softmax_row_backward(const float *p, float *ds, int len, int end) {
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int j = 0; j < len; j++) dot += p[j] * ds[j];
#pragma omp simd
    for (int j = 0; j < len; j++) ds[j] = p[j] * (ds[j] - dot);
    for (int j = len; j < end; j++) ds[j] = 0.0f;
}

/* One (b, h): q, k, v, out point at the head's first column, row stride C; P is [T, T].
 * S = q k^T * scale, P = softmax(S) over keys j (j <= i when causal), out = P v. */
static void attention_head_forward(const float *q, const float *k, const float *v, float *out, float *P, int T, int C,
                                   int hd, float scale, bool causal) {
    const int block = causal ? ATTN_BLOCK : T;
    for (int r0 = 0; r0 < T; r0 += block) {
        const int r1 = r0 + block < T ? r0 + block : T, kc = causal ? r1 : T;
        magna_sgemm(false, true, r1 - r0, kc, hd, scale, q + (size_t)r0 * C, C, k, C, 0.0f, P + (size_t)r0 * T, T);
        for (int i = r0; i < r1; i++) softmax_row(P + (size_t)i * T, causal ? i + 1 : T, kc);
        magna_sgemm(false, false, r1 - r0, hd, kc, 1.0f, P + (size_t)r0 * T, T, v, C, 0.0f, out + (size_t)r0 * C, C);
    }
}

/* Everything one (b, h) pair needs; off() is where the pair's head starts in a [B, T, C] tensor. */
typedef struct attn_args {
    const float *q, *k, *v, *dout;
    float *out, *P, *dq, *dk, *dv;
    int64_t H;
    int T, C, hd;
    float scale;
    bool causal;
} attn_args;

static attn_args attn_args_of(const magna_node *n) {
    const magna_node *q = n->in[0], *k = n->in[1], *v = n->in[2];
    attn_args a = {.q = fval(q), .k = fval(k), .v = fval(v), .dout = n->grad, .out = fval(n), .P = (float *)n->saved};
    a.dq = q->grad, a.dk = k->grad, a.dv = v->grad;
    a.H = n->ip[0], a.T = (int)q->shape[1], a.C = (int)q->shape[2], a.hd = a.C / (int)a.H;
    a.causal = n->ip[1] != 0;
    a.scale = 1.0f / sqrtf((float)a.hd);
    return a;
}

static size_t off(const attn_args *a, int64_t bh) {
    return (size_t)(bh / a->H) * (size_t)a->T * (size_t)a->C + (size_t)(bh % a->H) * (size_t)a->hd;
}

static void attention_pair_forward(const attn_args *a, int64_t bh) {
    const size_t o = off(a, bh);
    attention_head_forward(a->q + o, a->k + o, a->v + o, a->out + o, a->P + (size_t)bh * a->T * a->T, a->T, a->C, a->hd,
                           a->scale, a->causal);
}

/* (b, h) pairs in parallel, one per thread, each calling sgemm single-threaded. */
static magna_status attention_forward(magna_graph *g, magna_node *n) {
    (void)g;
    const attn_args a = attn_args_of(n);
    const int64_t pairs = n->shape[0] * a.H;
    PARALLEL_FOR(pairs > 1 && max_threads() > 1, bh, pairs, attention_pair_forward(&a, bh););
    return MAGNA_OK;
}

/* One (b, h), same layout as forward; dout is the head's slice of the output grad, dq/dk/dv of the
 * inputs' grads (each may be NULL); dS is [T, T] scratch.
 *   dP = dout v^T,  dS = P * (dP - rowsum(dP * P)),
 *   dv += P^T dout,  dq += dS k * scale,  dk += dS^T q * scale. */
static void attention_head_backward(const float *q, const float *k, const float *v, const float *P, const float *dout,
                                    float *dq, float *dk, float *dv, float *dS, int T, int C, int hd, float scale,
                                    bool causal) {
    const int block = causal ? ATTN_BLOCK : T;
    /* Row blocks: dP and dS for rows r0..r1 (keys 0..kc), then dq for those rows. */
    for (int r0 = 0; r0 < T; r0 += block) {
        const int r1 = r0 + block < T ? r0 + block : T, kc = causal ? r1 : T;
        magna_sgemm(false, true, r1 - r0, kc, hd, 1.0f, dout + (size_t)r0 * C, C, v, C, 0.0f, dS + (size_t)r0 * T, T);
        for (int i = r0; i < r1; i++)
            softmax_row_backward(P + (size_t)i * T, dS + (size_t)i * T, causal ? i + 1 : T, kc);
        if (dq)
            magna_sgemm(false, false, r1 - r0, hd, kc, scale, dS + (size_t)r0 * T, T, k, C, 1.0f, dq + (size_t)r0 * C,
                        C);
    }
    /* Column blocks: keys c0..c1 are seen by queries c0..T-1 (all queries when not causal). */
    if (!dk && !dv) return;
    for (int c0 = 0; c0 < T; c0 += block) {
        const int c1 = c0 + block < T ? c0 + block : T, rs = causal ? c0 : 0;
        if (dv)
            magna_sgemm(true, false, c1 - c0, hd, T - rs, 1.0f, P + (size_t)rs * T + c0, T, dout + (size_t)rs * C, C,
                        1.0f, dv + (size_t)c0 * C, C);
        if (dk)
            magna_sgemm(true, false, c1 - c0, hd, T - rs, scale, dS + (size_t)rs * T + c0, T, q + (size_t)rs * C, C,
                        1.0f, dk + (size_t)c0 * C, C);
    }
}

static void attention_pair_backward(const attn_args *a, int64_t bh, float *scratch) {
    const size_t o = off(a, bh);
    attention_head_backward(a->q + o, a->k + o, a->v + o, a->P + (size_t)bh * a->T * a->T, a->dout + o,
                            a->dq ? a->dq + o : NULL, a->dk ? a->dk + o : NULL, a->dv ? a->dv + o : NULL, scratch, a->T,
                            a->C, a->hd, a->scale, a->causal);
}

/* Pairs in parallel, each thread with its own [T, T] scratch. A single pair (or thread) runs outside
 * any OpenMP region (a one-thread region still allocates a team), with sgemm multi-threaded. */
static void attention_backward(magna_graph *g, magna_node *n) {
    const attn_args a = attn_args_of(n);
    if (!a.dq && !a.dk && !a.dv) return;
    const int64_t pairs = n->shape[0] * a.H;
    const size_t stride = attn_scratch_floats(a.T);
    float *ws = (float *)g->workspace;
    int nt = max_threads();
    if ((size_t)nt > g->workspace_bytes / (stride * sizeof(float)))
        nt = (int)(g->workspace_bytes / (stride * sizeof(float)));
    if (pairs > 1 && nt > 1) {
        /* the whole team (a team of another size makes libgomp allocate); the first nt have scratch */
#pragma omp parallel
        {
            const int t = omp_get_thread_num();
            for (int64_t bh = t; t < nt && bh < pairs; bh += nt) attention_pair_backward(&a, bh, ws + (size_t)t * stride);
        }
    } else {
        for (int64_t bh = 0; bh < pairs; bh++) attention_pair_backward(&a, bh, ws);
    }
}

/* q, k, v [B, T, C], heads dividing C -> [B, T, C] = softmax(q k^T / sqrt(C / heads), causal mask) v per head. */
magna_node *magna_attention(magna_graph *g, magna_node *q, magna_node *k, magna_node *v, int heads, bool causal) {
    if (!g) return NULL;
    if (heads < 1) {
        graph_error(g, MAGNA_ERR_ARG, "attention: heads must be at least 1, got %d", heads);
        return NULL;
    }
    magna_node *in[3] = {q, k, v};
    const int64_t ip[2] = {heads, causal};
    return graph_add_node(g, OP_ATTENTION, 3, in, ip, 2, NULL, 0);
}

const magna_op_def op_def_attention = {"attention", OPF_BWD_INPUTS, attention_infer, attention_forward,
                                       attention_backward};
