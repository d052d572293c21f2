/* matmul.c — C = op(A) op(B) over the last two dims, with batch dims in front, through OpenBLAS.
 * a is [..., M, K] ([..., K, M] when transposed), b is [..., K, N] ([..., N, K] when transposed),
 * out is [..., M, N]. Batch dims match, or one operand is 2-D and shared by every batch. A 2-D b with an
 * untransposed a is one GEMM over all rows of a (the dense layer: [B, T, K] @ [K, N]); in a bf16 graph on a CPU
 * with avx512_bf16 that one runs on oneDNN's bf16 matmul (below). */
#include "common.h"
#include "attention.h"
#include "gemm_bf16.h"
#include "matmul.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct mm_dims {
    int64_t batch;      /* number of matrix products */
    int m, n, k;
    int64_t stride_a, stride_b, stride_c; /* elements between batches; 0 when shared */
    int lda, ldb;
    bool ta, tb;
} mm_dims;

static void mm_dims_of(const magna_node *c, mm_dims *d) {
    const magna_node *a = c->in[0], *b = c->in[1];
    d->ta = c->ip[0], d->tb = c->ip[1];
    int64_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
    int64_t br = b->shape[b->ndim - 2], bc = b->shape[b->ndim - 1];
    d->k = (int)(d->ta ? ar : ac);
    d->n = (int)(d->tb ? br : bc);
    d->lda = (int)ac, d->ldb = (int)bc;
    if (b->ndim == 2 && !d->ta) { /* fold a's batch into rows */
        d->batch = 1;
        d->m = (int)(a->numel / ac);
        d->stride_a = d->stride_b = d->stride_c = 0;
        return;
    }
    d->m = (int)(d->ta ? ac : ar);
    d->batch = c->numel / ((int64_t)d->m * d->n);
    d->stride_a = a->ndim == 2 ? 0 : ar * ac;
    d->stride_b = b->ndim == 2 ? 0 : br * bc;
    d->stride_c = (int64_t)d->m * d->n;
}

/* ---- bf16 on oneDNN ---------------------------------------------------------------------------------- *
 *
 * A graph in bf16 mixed precision (magna_graph_set_bf16) on a CPU with avx512_bf16 runs the one-GEMM products
 * (b 2-D, a not transposed: the dense layers, the tied LM head) on oneDNN's matmul with bf16 operands and
 * float32 sums and results (src/ops/gemm_bf16.c), as PyTorch's CPU autocast does; everything else stays float32.
 * Each call converts its operands to bf16 (round to nearest even): a into the node's saved memory, where dB's
 * product finds it again in backward, b and dC into the workspace ([scratchpad | b | dC]); it writes, or adds
 * into, float32. Five GEMMs a node, made at infer (build, compile, set_batch), never in a step:
 * forward (with the fused bias, if any), and dA and dB each assigning (the gradient's first writer) and adding
 * (a sum post-op). Under another thread count than they were made for, and on other CPUs, sgemm in float32. */
typedef struct mm_dnnl {
    int threads;
    magna_gemm_bf16 *fwd, *da[2], *db[2]; /* [0] assigns, [1] adds */
    magna_gemm_bf16 *fwd16, *da16;        /* the forward and the assigning dA writing bf16 (out16_to, da16_ok) */
    size_t b_off, dc_off;                 /* the bf16 copies in the workspace, past the scratchpad (a's: n->saved) */
    size_t part_off;                      /* then the bias sums' parts (magna_to_bf16_colsum) */
} mm_dnnl;

static void matmul_release(magna_node *n) {
    mm_dnnl *st = n->kernel_state;
    if (!st) return;
    magna_gemm_bf16 *gemms[7] = {st->fwd, st->da[0], st->da[1], st->db[0], st->db[1], st->fwd16, st->da16};
    for (int i = 0; i < 7; i++) magna_gemm_bf16_free(gemms[i]);
    free(st);
    n->kernel_state = NULL;
}

/* Makes the node's GEMMs for its shapes; 0 workspace bytes (and none made) where it does not qualify. */
static magna_status mm_dnnl_make(magna_graph *g, magna_node *c, const mm_dims *d, size_t *bytes) {
    *bytes = 0;
    if (!magna_gemm_bf16_wanted(g) || d->batch != 1 || d->ta || c->in[1]->ndim != 2) return MAGNA_OK;
    mm_dnnl *st = calloc(1, sizeof *st);
    if (!st) return graph_error(g, MAGNA_ERR_NOMEM, "matmul: out of memory");
    c->kernel_state = st;
    st->threads = omp_get_max_threads();
    const int64_t m = d->m, n = d->n, k = d->k;
    const bool tb = d->tb, want_da = c->in[0]->requires_grad, want_db = c->in[1]->requires_grad;
    size_t scratch = 0;
    int status = 0;
    /* forward C [m, n] = a [m, k] op(b) [k, n] (+ the fused bias); the bf16 b keeps b's own layout */
    bool ok = (st->fwd = magna_gemm_bf16_make(m, n, k, false, tb, false, c->bias_add != NULL, false, &scratch, &status));
    if (ok && c->out16_to)
        ok = (st->fwd16 = magna_gemm_bf16_make(m, n, k, false, tb, false, c->bias_add != NULL, true, &scratch, &status));
    if (ok && want_da && c->da16_ok)
        ok = (st->da16 = magna_gemm_bf16_make(m, k, n, false, !tb, false, false, true, &scratch, &status));
    for (int add = 0; add < 2 && ok; add++) {
        /* dA [m, k] = dC [m, n] op(b)^T [n, k] */
        if (want_da) ok = (st->da[add] = magna_gemm_bf16_make(m, k, n, false, !tb, add, false, false, &scratch, &status));
        /* dB = a^T [k, m] dC [m, n], or when tb dC^T [n, m] a [m, k] */
        if (ok && want_db)
            ok = (st->db[add] = tb ? magna_gemm_bf16_make(n, k, m, true, false, add, false, false, &scratch, &status)
                                   : magna_gemm_bf16_make(k, n, m, true, false, add, false, false, &scratch, &status));
    }
    if (!ok) {
        matmul_release(c);
        char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX];
        return graph_error(g, MAGNA_ERR_UNSUPPORTED, "matmul: oneDNN bf16 matmul for a %s and b %s: %s",
                           shape_str(c->in[0], sa, sizeof sa), shape_str(c->in[1], sb, sizeof sb),
                           magna_gemm_bf16_status(status));
    }
    /* a in bf16: planned to live until backward when dB needs it (unless an earlier matmul's copy serves) */
    c->saved_bytes = c->a16_from ? 0 : (size_t)(m * k) * 2;
    st->b_off = round64(scratch);
    st->dc_off = st->b_off + round64((size_t)(k * n) * 2);
    st->part_off = st->dc_off + round64((size_t)(m * n) * 2);
    *bytes = st->part_off + (c->bias_add ? round64((size_t)MAGNA_COLSUM_PARTS * (size_t)n * sizeof(float)) : 0);
    return MAGNA_OK;
}

/* Whether x, the op a dense matmul hands bf16 to (out16_to, da16_ok), reads it so now: a GELU always, an attention
 * when it runs in bf16. */
static bool reads16_now(const magna_node *x) { return x->op == OP_GELU || magna_attention_bf16_now(x); }

/* The bf16 GEMMs run now: made, at this thread count, and the bf16 copy of a there (a sharer's: its owner's too). */
static mm_dnnl *mm_dnnl_ready(const magna_node *c) {
    mm_dnnl *st = c->kernel_state;
    if (c->a16_from && !mm_dnnl_ready(c->a16_from)) return NULL;
    return st && st->fwd && !omp_in_parallel() && omp_get_max_threads() == st->threads ? st : NULL;
}

/* Where a is in bf16: this node's saved memory, or the earlier matmul's it shares (a16_from). */
static uint16_t *mm_a16(const magna_node *c) { return (uint16_t *)(c->a16_from ? c->a16_from->saved : c->saved); }

static magna_status mm_dnnl_error(magna_graph *g, int s, const char *what) {
    return graph_error(g, MAGNA_ERR_UNSUPPORTED, "matmul: oneDNN %s: %s", what, magna_gemm_bf16_status(s));
}

/* The bf16 backward runs: the GEMMs the gradients it writes need were made. */
static const mm_dnnl *mm_dnnl_backward(const magna_node *c) {
    const mm_dnnl *st = mm_dnnl_ready(c);
    return st && (!c->in[0]->grad || st->da[0]) && (!c->in[1]->grad || st->db[0]) ? st : NULL;
}

uint16_t *magna_matmul_a16_for(const magna_node *x) {
    const magna_node *owner = x->bf16_for;
    if (!owner || owner->a16_from || !mm_dnnl_ready(owner)) return NULL;
    const magna_graph *g = x->g;
    for (int i = 0; i < g->n_nodes; i++) { /* every reader of x: a matmul of the group, ready too */
        const magna_node *c = g->nodes[i];
        if (!c->live || c->kind != NODE_OP) continue;
        for (int k = 0; k < c->n_in; k++)
            if (c->in[k] == x && (c->op != OP_MATMUL || k != 0 || (c != owner && c->a16_from != owner) || !mm_dnnl_ready(c)))
                return NULL;
    }
    return (uint16_t *)owner->saved;
}

bool magna_matmul_sums_bias(const magna_node *c) {
    return c->bias_add && c->bias_add->in[1]->grad && mm_dnnl_backward(c);
}

uint16_t *magna_matmul_dc16_for(const magna_node *x, int i, float **bias_grad, bool *assign) {
    const magna_node *in = x->in[i], *c = in->kind == NODE_OP && in->op == OP_ADD && in->alias_input ? in->in[0] : in;
    if (c->dc16_by != x || !grad_assigns(x, i) || !mm_dnnl_backward(c)) return NULL;
    const bool sums = magna_matmul_sums_bias(c);
    *bias_grad = sums ? c->bias_add->in[1]->grad : NULL;
    *assign = sums && grad_assigns(c->bias_add, 1);
    return (uint16_t *)(c->bias_add ? c->bias_add->grad : c->grad);
}

unsigned magna_matmul_bf16_io(const magna_node *c) {
    return (c->value16 ? MAGNA_MM_OUT16 : 0u) | ((c->bias_add ? c->bias_add : c)->grad16 ? MAGNA_MM_DC16 : 0u) |
           (c->da16_ok && c->in[0]->grad16 ? MAGNA_MM_DA16 : 0u);
}

const char *magna_matmul_describe(const magna_node *c) {
    return mm_dnnl_ready(c) ? "oneDNN matmul, bf16 operands, float32 sums" : "sgemm, float32";
}

static magna_status matmul_infer(magna_graph *g, magna_node *n) {
    magna_node *a = n->in[0], *b = n->in[1];
    magna_status st;
    if ((st = require_dtype(g, n, 0, MAGNA_F32)) || (st = require_dtype(g, n, 1, MAGNA_F32))) return st;
    char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX];
    if (a->ndim < 2 || b->ndim < 2)
        return graph_error(g, MAGNA_ERR_SHAPE, "matmul: operands need at least 2 dims, got a %s and b %s",
                           shape_str(a, sa, sizeof sa), shape_str(b, sb, sizeof sb));
    bool ta = n->ip[0], tb = n->ip[1];
    int64_t m = a->shape[a->ndim - (ta ? 1 : 2)], ka = a->shape[a->ndim - (ta ? 2 : 1)];
    int64_t kb = b->shape[b->ndim - (tb ? 1 : 2)], nn = b->shape[b->ndim - (tb ? 2 : 1)];
    if (ka != kb)
        return graph_error(g, MAGNA_ERR_SHAPE, "matmul: inner dimensions differ: a%s %s and b%s %s (%lld vs %lld)",
                           ta ? "^T" : "", shape_str(a, sa, sizeof sa), tb ? "^T" : "", shape_str(b, sb, sizeof sb),
                           (long long)ka, (long long)kb);
    const magna_node *batched = a->ndim >= b->ndim ? a : b;
    if (a->ndim > 2 && b->ndim > 2) {
        bool same = a->ndim == b->ndim;
        for (int d = 0; same && d < a->ndim - 2; d++) same = a->shape[d] == b->shape[d];
        if (!same)
            return graph_error(g, MAGNA_ERR_SHAPE, "matmul: batch dimensions differ: a %s and b %s",
                               shape_str(a, sa, sizeof sa), shape_str(b, sb, sizeof sb));
    }
    if (m > INT32_MAX || nn > INT32_MAX || ka > INT32_MAX || (b->ndim == 2 && !ta && a->numel / ka > INT32_MAX))
        return graph_error(g, MAGNA_ERR_SHAPE, "matmul: a %s and b %s exceed the 32-bit sizes BLAS takes",
                           shape_str(a, sa, sizeof sa), shape_str(b, sb, sizeof sb));
    int64_t shape[MAGNA_MAX_DIMS];
    int nd = batched->ndim;
    for (int d = 0; d < nd - 2; d++) shape[d] = batched->shape[d];
    shape[nd - 2] = m, shape[nd - 1] = nn;
    node_set_shape(n, nd, shape);
    n->dtype = MAGNA_F32;
    n->workspace_bytes = 0;
    n->saved_bytes = 0;
    matmul_release(n); /* set_batch: the GEMMs are made for one batch */
    mm_dims d;
    mm_dims_of(n, &d);
    size_t bytes = 0;
    if ((st = mm_dnnl_make(g, n, &d, &bytes)) != MAGNA_OK) return st;
    if (g->compiled && (bytes > g->workspace_bytes || n->saved_bytes > n->saved_capacity)) {
        matmul_release(n); /* more than was planned: sgemm */
        n->saved_bytes = 0;
    } else {
        n->workspace_bytes = bytes;
    }
    return MAGNA_OK;
}

/* Many small products run one per thread (OpenBLAS then runs single-threaded inside our region);
 * big ones run one after another, each on every thread. */
static bool parallel_batches(const mm_dims *d) {
    return d->batch > 1 && omp_get_max_threads() > 1 && (double)d->m * d->n * d->k < 96.0 * 96.0 * 96.0;
}

static magna_status matmul_forward(magna_graph *g, magna_node *c) {
    mm_dims d;
    mm_dims_of(c, &d);
    const float *A = fval(c->in[0]), *B = fval(c->in[1]);
    const float *bias = c->bias_add ? fval(c->bias_add->in[1]) : NULL; /* the fused bias add's (plan.c) */
    float *C = fval(c);
    const mm_dnnl *st = mm_dnnl_ready(c);
    if (st) {
        char *ws = g->workspace;
        uint16_t *a16 = mm_a16(c), *b16 = (uint16_t *)(ws + st->b_off);
        if (c->in[0]->bf16_for != c && !c->a16_from) /* else its GELU, or the first matmul of a, wrote a16 */
            magna_to_bf16(a16, A, (int64_t)d.m * d.k);
        magna_to_bf16(b16, B, (int64_t)d.k * d.n);
        c->value16 = st->fwd16 && reads16_now(c->out16_to); /* for the op after it, its only reader */
        const int s = magna_gemm_bf16_run(c->value16 ? st->fwd16 : st->fwd, ws, a16, b16, C, bias);
        return s == 0 ? MAGNA_OK : mm_dnnl_error(g, s, "forward");
    }
    c->value16 = false;
PARALLEL_FOR(parallel_batches(&d), i, d.batch, magna_sgemm(d.ta, d.tb, d.m, d.n, d.k, 1.0f, A + i * d.stride_a, d.lda, B + i * d.stride_b, d.ldb, 0.0f,
                    C + i * d.stride_c, d.n););
    if (bias) /* after the product, as the add it replaces did: the same bits */
        PARALLEL_FOR((int64_t)d.m * d.n > PAR_MIN, r, d.m, {
            float *row = C + r * d.n;
            for (int j = 0; j < d.n; j++) row[j] += bias[j];
        });
    return MAGNA_OK;
}

/* dA += dC op(B)^T (stored transposed when ta), dB += op(A)^T dC (likewise), accumulated with beta 1, or
 * beta 0 where this is the gradient's first writer (grad_assigns; a shared operand: its first batch). */
static void matmul_backward(magna_graph *g, magna_node *c) {
    mm_dims d;
    mm_dims_of(c, &d);
    /* with its bias add fused, this node's gradient is the add's (plan.c) */
    const float *A = fval(c->in[0]), *B = fval(c->in[1]), *dC = c->bias_add ? c->bias_add->grad : c->grad;
    float *dA = c->in[0]->grad, *dB = c->in[1]->grad;
    const mm_dnnl *st = mm_dnnl_backward(c);
    if (st) {
        char *ws = g->workspace;
        uint16_t *a16 = mm_a16(c), *b16 = (uint16_t *)(ws + st->b_off);
        uint16_t *dc16 = (uint16_t *)(ws + st->dc_off);
        int s = 0;
        if ((c->bias_add ? c->bias_add : c)->grad16) /* by the GELU after it (dc16_by), bias sums and all */
            dc16 = (uint16_t *)dC;
        else if (magna_matmul_sums_bias(c)) /* the fused bias's gradient from the same pass over dC */
            magna_to_bf16_colsum(dc16, dC, d.m, d.n, c->bias_add->in[1]->grad, grad_assigns(c->bias_add, 1),
                                 (float *)(ws + st->part_off));
        else
            magna_to_bf16(dc16, dC, (int64_t)d.m * d.n);
        if (dA) {
            magna_to_bf16(b16, B, (int64_t)d.k * d.n);
            const bool da16 = st->da16 && grad_assigns(c, 0) && reads16_now(c->in[0]); /* da16_ok */
            if (c->da16_ok) c->in[0]->grad16 = da16;
            s = magna_gemm_bf16_run(da16 ? st->da16 : st->da[grad_assigns(c, 0) ? 0 : 1], ws, dc16, b16, dA, NULL);
        }
        if (dB && s == 0) {
            const magna_gemm_bf16 *p = st->db[grad_assigns(c, 1) ? 0 : 1];
            s = d.tb ? magna_gemm_bf16_run(p, ws, dc16, a16, dB, NULL) : magna_gemm_bf16_run(p, ws, a16, dc16, dB, NULL);
        }
        if (s != 0) mm_dnnl_error(g, s, "backward");
        return;
    }
    if (c->da16_ok && dA) c->in[0]->grad16 = false;
    /* A shared operand's gradient sums over batches: those loops must not run in parallel. */
    bool par_a = parallel_batches(&d) && d.stride_a != 0, par_b = parallel_batches(&d) && d.stride_b != 0;
    const bool assign_a = grad_assigns(c, 0), assign_b = grad_assigns(c, 1);
    if (dA) {
PARALLEL_FOR(par_a, i, d.batch, 
            const float *b = B + i * d.stride_b, *dc = dC + i * d.stride_c;
            float *da = dA + i * d.stride_a;
            const float beta = assign_a && (d.stride_a != 0 || i == 0) ? 0.0f : 1.0f;
            if (!d.ta)
                magna_sgemm(false, !d.tb, d.m, d.k, d.n, 1.0f, dc, d.n, b, d.ldb, beta, da, d.lda);
            else
                magna_sgemm(d.tb, true, d.k, d.m, d.n, 1.0f, b, d.ldb, dc, d.n, beta, da, d.lda);
        );
    }
    if (dB) {
PARALLEL_FOR(par_b, i, d.batch, 
            const float *a = A + i * d.stride_a, *dc = dC + i * d.stride_c;
            float *db = dB + i * d.stride_b;
            const float beta = assign_b && (d.stride_b != 0 || i == 0) ? 0.0f : 1.0f;
            if (!d.tb)
                magna_sgemm(!d.ta, false, d.k, d.n, d.m, 1.0f, a, d.lda, dc, d.n, beta, db, d.ldb);
            else
                magna_sgemm(true, d.ta, d.n, d.k, d.m, 1.0f, dc, d.n, a, d.lda, beta, db, d.ldb);
        );
    }
}

const magna_op_def op_def_matmul = {"matmul", OPF_BWD_INPUTS | OPF_GRAD_ASSIGN, matmul_infer, matmul_forward,
                                    matmul_backward, matmul_release};

magna_node *magna_matmul(magna_graph *g, magna_node *a, magna_node *b, bool transpose_a, bool transpose_b) {
    if (!g) return NULL;
    magna_node *in[2] = {a, b};
    int64_t ip[2] = {transpose_a, transpose_b};
    return graph_add_node(g, OP_MATMUL, 2, in, ip, 2, NULL, 0);
}
