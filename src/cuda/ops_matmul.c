/* ops_matmul.c — OP_MATMUL on a CUDA graph: src/ops/matmul.c's products, each one magna_cuda_gemm (batched,
 * cuBLASLt on a GPU), bf16 operands in mixed precision (g->bf16) with float32 accumulation.
 *
 * a is [..., M, K] ([..., K, M] when ip[0]), b is [..., K, N] ([..., N, K] when ip[1]), out [..., M, N]; batch
 * dims match, or one operand is 2-D and shared (stride 0). A 2-D b with an untransposed a is one GEMM over all
 * rows of a. Backward: dA += dC op(B)^T, dB += op(A)^T dC (stored transposed when the operand is); beta 0 (=)
 * where this is the gradient's first writer (grad_assigns, plan.c step 5: nothing zeroed it first). A shared
 * operand's gradient sums over the batch: one GEMM a batch entry, in order, each adding (beta 1, or 0 for the
 * first entry of an assigned one) into the same matrix — a batched GEMM would have every entry write it at once. */
#include "ops_glue.h"
#include "kernels.h"

typedef struct mm_dims {
    int batch, m, n, k, lda, ldb;
    long long sa, sb, sc; /* elements between batch entries; 0 when shared */
    int ta, tb;
} mm_dims;

/* as matmul.c's mm_dims_of */
static mm_dims mm_dims_of(const magna_node *c) {
    const magna_node *a = c->in[0], *b = c->in[1];
    mm_dims d;
    d.ta = c->ip[0] != 0, d.tb = c->ip[1] != 0;
    const int64_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
    const int64_t br = b->shape[b->ndim - 2], bc = b->shape[b->ndim - 1];
    d.k = (int)(d.ta ? ar : ac);
    d.n = (int)(d.tb ? br : bc);
    d.lda = (int)ac, d.ldb = (int)bc;
    if (b->ndim == 2 && !d.ta) { /* a's batch folded into rows */
        d.batch = 1;
        d.m = (int)(a->numel / ac);
        d.sa = d.sb = d.sc = 0;
        return d;
    }
    d.m = (int)(d.ta ? ac : ar);
    d.batch = (int)(c->numel / ((int64_t)d.m * d.n));
    d.sa = a->ndim == 2 ? 0 : ar * ac;
    d.sb = b->ndim == 2 ? 0 : br * bc;
    d.sc = (long long)d.m * d.n;
    return d;
}

/* Where each operand lies and in what: a and b (the inputs' values), c (the output) and dc (its gradient), each
 * bf16 when the graph keeps that activation in bf16 (stored16; a matmul's own output and gradient only as the
 * logits a cross-entropy turns into their gradient in place), or that gradient (grad_stored16: a fused GELU's
 * backward wrote it). */
typedef struct mm_operand {
    const void *p;
    int is16;
} mm_operand;

static mm_operand value_of(const magna_node *x) { return (mm_operand){x->value, x->stored16}; }
static mm_operand grad_of(const magna_node *x) { return (mm_operand){x->grad, grad_is16(x)}; }

/* element i of an operand, as a pointer */
static const void *operand_at(mm_operand o, long long i) {
    return (const char *)o.p + i * (o.is16 ? 2 : (long long)sizeof(float));
}

magna_status cuda_matmul_forward(magna_graph *g, magna_node *c) {
    const mm_dims d = mm_dims_of(c);
    const mm_operand a = value_of(c->in[0]), b = value_of(c->in[1]);
    const unsigned stored = (a.is16 ? MAGNA_GEMM_A16 : 0) | (b.is16 ? MAGNA_GEMM_B16 : 0) | (c->stored16 ? MAGNA_GEMM_C16 : 0);
    const int e = magna_cuda_gemm_stored(cuda_blas(g), cuda_stream(g), d.ta, d.tb, d.m, d.n, d.k, 1.0f, a.p, d.lda, d.sa,
                                         b.p, d.ldb, d.sb, 0.0f, c->value, d.n, d.sc, d.batch, g->bf16, stored);
    return cuda_fail(g, e, "matmul forward");
}

/* A dense layer's product and its bias add h in one GEMM (fuse.c: cuBLASLt's BIAS epilogue): the product with
 * the bias goes straight into h's buffer (bf16 when h is kept so), c's own buffer is never written */
magna_status cuda_matmul_bias_forward(magna_graph *g, magna_node *c, magna_node *h) {
    const mm_dims d = mm_dims_of(c);
    const mm_operand a = value_of(c->in[0]), b = value_of(c->in[1]);
    const unsigned stored = (a.is16 ? MAGNA_GEMM_A16 : 0) | (b.is16 ? MAGNA_GEMM_B16 : 0) | (h->stored16 ? MAGNA_GEMM_C16 : 0);
    const int e = magna_cuda_gemm_bias(cuda_blas(g), cuda_stream(g), d.ta, d.tb, d.m, d.n, d.k, a.p, d.lda, b.p, d.ldb,
                                       fval(h->in[1]), h->value, d.n, g->bf16, stored);
    return cuda_fail(g, e, "matmul + bias forward");
}

/* C (a gradient: float32, or bf16 with c16, assigned) += op(A) op(B), or = with assign: one GEMM over the batch, or
 * `batch` GEMMs one after another when the output (a shared operand's gradient) has stride 0. */
static int gemm_into(magna_graph *g, const mm_dims *d, int ta, int tb, int m, int n, int k, mm_operand a, int lda,
                     long long sa, mm_operand b, int ldb, long long sb, void *c, int ldc, long long sc, bool assign,
                     bool c16) {
    if (c16 && (!assign || (sc == 0 && d->batch > 1))) return 1; /* store16.c keeps only a first write in bf16 */
    const unsigned stored = (a.is16 ? MAGNA_GEMM_A16 : 0) | (b.is16 ? MAGNA_GEMM_B16 : 0) | (c16 ? MAGNA_GEMM_C16 : 0);
    const float beta = assign ? 0.0f : 1.0f;
    if (sc != 0 || d->batch == 1)
        return magna_cuda_gemm_stored(cuda_blas(g), cuda_stream(g), ta, tb, m, n, k, 1.0f, a.p, lda, sa, b.p, ldb, sb,
                                      beta, c, ldc, sc, d->batch, g->bf16, stored);
    for (int i = 0; i < d->batch; i++) {
        const int e = magna_cuda_gemm_stored(cuda_blas(g), cuda_stream(g), ta, tb, m, n, k, 1.0f, operand_at(a, i * sa),
                                             lda, 0, operand_at(b, i * sb), ldb, 0, i == 0 ? beta : 1.0f, c, ldc, 0, 1,
                                             g->bf16, stored);
        if (e) return e;
    }
    return 0;
}

static size_t bf16_bytes(int64_t numel) { return ((size_t)numel * 2 + 255) & ~(size_t)255; }

/* bf16 mode: dC (a float32 gradient) converted once into the workspace (cuda_plan_matmul_workspace), where
 * both GEMMs read it, instead of each staging its own copy; after it, a recomputed A (a GELU's output) */
static bool dc_once(const magna_graph *g, const magna_node *c) {
    const size_t a_again = c->in[0]->recompute ? bf16_bytes(c->in[0]->numel) : 0;
    return g->bf16 && !grad_of(c).is16 && g->workspace_bytes >= bf16_bytes(c->numel) + a_again;
}

void cuda_plan_matmul_workspace(magna_graph *g) {
    for (int i = 0; i < g->n_nodes && g->bf16; i++) {
        magna_node *n = g->nodes[i];
        if (!n->live || n->kind != NODE_OP || n->op != OP_MATMUL || !n->needs_grad) continue;
        const size_t bytes = (grad_of(n).is16 ? 0 : bf16_bytes(n->numel)) +
                             (n->in[0]->recompute ? bf16_bytes(n->in[0]->numel) : 0);
        if (bytes > n->workspace_bytes) n->workspace_bytes = bytes;
    }
}

/* A again, when it was not kept (store16.c's recompute), into the workspace: a GELU's output from its bf16
 * input, or a layer norm's from its input and the mean and rstd it keeps for its own backward */
static int a_again(magna_graph *g, const magna_node *c, bool dc_in_workspace, mm_operand *A) {
    const magna_node *y = c->in[0], *x = y->in[0];
    const size_t at = dc_in_workspace ? bf16_bytes(c->numel) : 0;
    if (g->workspace_bytes < at + bf16_bytes(y->numel)) return 1; /* as planned, never */
    void *dst = (char *)g->workspace + at;
    *A = (mm_operand){dst, 1};
    if (y->op == OP_LAYER_NORM) {
        const magna_node *gamma = cuda_ln_gamma(y), *beta = cuda_ln_beta(y);
        const int64_t D = x->shape[x->ndim - 1], rows = x->numel / D;
        const float *mean = (const float *)y->saved;
        return magna_cuda_layer_norm_apply16(fval(x), mean, mean + rows, gamma ? fval(gamma) : NULL,
                                             beta ? fval(beta) : NULL, rows, D, dst, cuda_stream(g));
    }
    if (!x->stored16) return 1; /* store16.c recomputes a GELU only from a bf16 input */
    return magna_cuda_gelu16(y->op == OP_GELU_TANH, x->value, y->numel, dst, cuda_stream(g));
}

void cuda_matmul_backward(magna_graph *g, magna_node *c) {
    const mm_dims d = mm_dims_of(c);
    const mm_operand B = value_of(c->in[1]);
    mm_operand A = value_of(c->in[0]), dC = grad_of(c);
    float *dA = c->in[0]->grad, *dB = c->in[1]->grad;
    const bool dA16 = c->in[0]->grad_stored16; /* a GELU's output's, which the GELU's backward reads (store16.c) */
    int e = 0;
    const bool once = (dA || dB) && dc_once(g, c);
    if (once) {
        if ((e = magna_cuda_to_bf16(c->grad, c->numel, g->workspace, cuda_stream(g)))) {
            cuda_fail(g, e, "matmul backward (dC to bf16)");
            return;
        }
        dC = (mm_operand){g->workspace, 1};
    }
    if (dB && c->in[0]->recompute && (e = a_again(g, c, once, &A))) {
        cuda_fail(g, e, "matmul backward (its input computed again)");
        return;
    }
    if (dA) {
        if (!d.ta) /* dA [m, k] += dC [m, n] op(B)^T */
            e = gemm_into(g, &d, 0, !d.tb, d.m, d.k, d.n, dC, d.n, d.sc, B, d.ldb, d.sb, dA, d.lda, d.sa,
                          grad_assigns(c, 0), dA16);
        else /* dA [k, m] += op(B) dC^T */
            e = gemm_into(g, &d, d.tb, 1, d.k, d.m, d.n, B, d.ldb, d.sb, dC, d.n, d.sc, dA, d.lda, d.sa,
                          grad_assigns(c, 0), dA16);
        if (e) {
            cuda_fail(g, e, "matmul backward (dA)");
            return;
        }
    }
    if (dB) {
        if (!d.tb) /* dB [k, n] += op(A)^T dC */
            e = gemm_into(g, &d, !d.ta, 0, d.k, d.n, d.m, A, d.lda, d.sa, dC, d.n, d.sc, dB, d.ldb, d.sb,
                          grad_assigns(c, 1), false);
        else /* dB [n, k] += dC^T op(A) */
            e = gemm_into(g, &d, 1, d.ta, d.n, d.k, d.m, dC, d.n, d.sc, A, d.lda, d.sa, dB, d.ldb, d.sb,
                          grad_assigns(c, 1), false);
        if (e) cuda_fail(g, e, "matmul backward (dB)");
    }
}

/* Each GEMM's two operands, packed, are each at most one of the tensors (or, for conv2d, the workspace's
 * columns) it reads: the two largest of those bound what one call stages. */
size_t cuda_gemm_stage_elems(const magna_graph *g, const magna_node *n) {
    if (n->kind != NODE_OP || (n->op != OP_MATMUL && n->op != OP_CONV2D)) return 0;
    /* what is kept in bf16 is read in place, never staged */
    int64_t t[4] = {n->in[0]->stored16 ? 0 : n->in[0]->numel, n->in[1]->stored16 ? 0 : n->in[1]->numel,
                    n->op == OP_MATMUL && (grad_of(n).is16 || dc_once(g, n)) ? 0 : n->numel, 0}; /* t[2]: dC */
    if (n->op == OP_CONV2D) t[3] = (int64_t)(g->workspace_bytes / sizeof(float));
    int64_t first = 0, second = 0;
    for (int i = 0; i < 4; i++) {
        if (t[i] > first) second = first, first = t[i];
        else if (t[i] > second) second = t[i];
    }
    return (size_t)(first + second) + 16; /* + the second operand's alignment */
}
