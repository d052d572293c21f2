/* matmul.c — C = op(A) op(B) over the last two dims, with batch dims in front, through OpenBLAS.
 * a is [..., M, K] ([..., K, M] when transposed), b is [..., K, N] ([..., N, K] when transposed),
 * out is [..., M, N]. Batch dims match, or one operand is 2-D and shared by every batch. A 2-D b with an
 * untransposed a is one GEMM over all rows of a (the dense layer: [B, T, K] @ [K, N]). */
#include "common.h"

#include <omp.h>

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
    return MAGNA_OK;
}

/* Many small products run one per thread (OpenBLAS then runs single-threaded inside our region);
 * big ones run one after another, each on every thread. */
static bool parallel_batches(const mm_dims *d) {
    return d->batch > 1 && omp_get_max_threads() > 1 && (double)d->m * d->n * d->k < 96.0 * 96.0 * 96.0;
}

static magna_status matmul_forward(magna_graph *g, magna_node *c) {
    (void)g;
    mm_dims d;
    mm_dims_of(c, &d);
    const float *A = fval(c->in[0]), *B = fval(c->in[1]);
    float *C = fval(c);
PARALLEL_FOR(parallel_batches(&d), i, d.batch, magna_sgemm(d.ta, d.tb, d.m, d.n, d.k, 1.0f, A + i * d.stride_a, d.lda, B + i * d.stride_b, d.ldb, 0.0f,
                    C + i * d.stride_c, d.n););
    return MAGNA_OK;
}

/* dA += dC op(B)^T (stored transposed when ta), dB += op(A)^T dC (likewise), accumulated with beta 1, or
 * beta 0 where this is the gradient's first writer (grad_assigns; a shared operand: its first batch). */
static void matmul_backward(magna_graph *g, magna_node *c) {
    (void)g;
    mm_dims d;
    mm_dims_of(c, &d);
    const float *A = fval(c->in[0]), *B = fval(c->in[1]), *dC = c->grad;
    float *dA = c->in[0]->grad, *dB = c->in[1]->grad;
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

const magna_op_def op_def_matmul = {"matmul", OPF_BWD_INPUTS | OPF_GRAD_ASSIGN, matmul_infer, matmul_forward, matmul_backward};

magna_node *magna_matmul(magna_graph *g, magna_node *a, magna_node *b, bool transpose_a, bool transpose_b) {
    if (!g) return NULL;
    magna_node *in[2] = {a, b};
    int64_t ip[2] = {transpose_a, transpose_b};
    return graph_add_node(g, OP_MATMUL, 2, in, ip, 2, NULL, 0);
}
