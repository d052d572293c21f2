/* ops_elementwise.c — the CUDA glue of the elementwise ops: unary and scalar ops (src/ops/unary.c), binary
 * ops with broadcasting (binary.c) and dropout (dropout.c). Each reads the node as the CPU op does and
 * launches elementwise.cu's kernels on the graph's stream; backward adds into the inputs' gradients, or assigns
 * them where it is their first writer (grad_assigns, plan.c step 5: the zeroing pass before it is skipped). */
#include "cuda/ops.h"

#include "cuda/kernels.h"
#include "cuda/ops_glue.h"

/* ---- unary and scalar: fp[0] is the scalar (s, p, slope) -------------------------------------------- */

static int unary_em_op(op_id op) {
    switch (op) {
    case OP_SCALE: return MAGNA_EM_SCALE;
    case OP_ADD_SCALAR: return MAGNA_EM_ADD_SCALAR;
    case OP_POW_SCALAR: return MAGNA_EM_POW_SCALAR;
    case OP_ABS: return MAGNA_EM_ABS;
    case OP_RELU: return MAGNA_EM_RELU;
    case OP_LEAKY_RELU: return MAGNA_EM_LEAKY_RELU;
    case OP_SIGMOID: return MAGNA_EM_SIGMOID;
    case OP_TANH: return MAGNA_EM_TANH;
    case OP_GELU: return MAGNA_EM_GELU;
    case OP_GELU_TANH: return MAGNA_EM_GELU_TANH;
    case OP_EXP: return MAGNA_EM_EXP;
    case OP_LOG: return MAGNA_EM_LOG;
    default: return MAGNA_EM_SQRT;
    }
}

magna_status cuda_unary_forward(magna_graph *g, magna_node *n) {
    const int e = magna_cuda_unary_forward(unary_em_op(n->op), n->fp[0], fval(n->in[0]), fval(n), n->numel, cuda_stream(g));
    return e ? cuda_fail(g, e, magna_op_table[n->op]->name) : MAGNA_OK;
}

void cuda_unary_backward(magna_graph *g, magna_node *n) {
    float *dx = n->in[0]->grad;
    if (!dx) return;
    /* the kernel reads x or y only where the CPU op keeps it (its flags) */
    const unsigned flags = magna_op_table[n->op]->flags;
    const float *x = flags & OPF_BWD_INPUTS ? fval(n->in[0]) : NULL, *y = flags & OPF_BWD_OUTPUT ? fval(n) : NULL;
    const int e = magna_cuda_unary_backward(unary_em_op(n->op), n->fp[0], x, y, n->grad, dx, n->numel,
                                            grad_assigns(n, 0), cuda_stream(g));
    if (e) cuda_fail(g, e, magna_op_table[n->op]->name);
}

/* ---- binary: the output's index space, the operands broadcast into it (tensors 1 and 2) --------------- */

static magna_index binary_space(const magna_node *n) {
    magna_index ix = magna_index_of(n->ndim, n->shape);
    magna_index_contiguous(&ix, 0);
    magna_index_broadcast(&ix, 1, n->in[0]->ndim, n->in[0]->shape);
    magna_index_broadcast(&ix, 2, n->in[1]->ndim, n->in[1]->shape);
    return ix;
}

magna_status cuda_binary_forward(magna_graph *g, magna_node *n) {
    magna_index ix = binary_space(n);
    magna_index_simplify(&ix, 3);
    const int e = magna_cuda_binary_forward(n->op - OP_ADD, &ix, fval(n->in[0]), fval(n->in[1]), fval(n), cuda_stream(g));
    return e ? cuda_fail(g, e, magna_op_table[n->op]->name) : MAGNA_OK;
}

/* each operand's gradient sums over the dims it was broadcast over (stride 0 in a dim of size > 1) */
void cuda_binary_backward(magna_graph *g, magna_node *n) {
    const magna_index full = binary_space(n);
    for (int which = 0; which < 2; which++) {
        float *gx = n->in[which]->grad;
        if (!gx || gx == n->grad) continue; /* a residual operand sharing this add's gradient (plan.c): dx = dy */
        unsigned mask = 0;
        for (int d = 0; d < full.nd; d++)
            if (full.stride[1 + which][d] == 0 && full.shape[d] != 1) mask |= 1u << d;
        magna_index kept, red;
        magna_index_split(&full, mask, 3, &kept, &red);
        /* the split reduction's scratch, which the CPU infer asked for (binary.c) */
        const size_t need = magna_reduce_split_workspace(kept.n, red.n);
        float *ws = need && n->workspace_bytes >= need ? g->workspace : NULL;
        const int e = magna_cuda_binary_backward(n->op - OP_ADD, which, &kept, &red, fval(n->in[0]), fval(n->in[1]),
                                                 fval(n), n->grad, n->grad_stored16, gx, grad_assigns(n, which), ws,
                                                 cuda_stream(g));
        if (e) {
            cuda_fail(g, e, magna_op_table[n->op]->name);
            return;
        }
    }
}

/* ---- dropout: the CPU's mask (elementwise_math.h), so both devices drop the same units --------------- */

static bool dropout_active(const magna_graph *g, const magna_node *n) { return g->training && n->fp[0] > 0; }

magna_status cuda_dropout_forward(magna_graph *g, magna_node *n) {
    const int e = dropout_active(g, n)
                      ? magna_cuda_dropout(magna_em_dropout_seed(g->seed), magna_em_dropout_stream(n->id, g->mask_step),
                                           n->fp[0], fval(n->in[0]), fval(n), n->numel, 0, cuda_stream(g))
                      : cuda_d2d(fval(n), fval(n->in[0]), (size_t)n->numel * sizeof(float), cuda_stream(g));
    return e ? cuda_fail(g, e, "dropout") : MAGNA_OK;
}

void cuda_dropout_backward(magna_graph *g, magna_node *n) {
    float *dx = n->in[0]->grad;
    if (!dx) return;
    const int e = dropout_active(g, n)
                      ? magna_cuda_dropout(magna_em_dropout_seed(g->seed), magna_em_dropout_stream(n->id, g->mask_step),
                                           n->fp[0], n->grad, dx, n->numel, 1, cuda_stream(g))
                      : magna_cuda_unary_backward(MAGNA_EM_ADD_SCALAR, 0.0f, NULL, NULL, n->grad, dx, n->numel, 0,
                                                  cuda_stream(g));
    if (e) cuda_fail(g, e, "dropout");
}
