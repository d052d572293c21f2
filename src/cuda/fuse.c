/* fuse.c — at compile, pairs of nodes on a CUDA graph whose forward runs as one kernel (fused.cu):
 *
 *   bias + GELU:            h = add(a, bias[N]) -> gelu(h)   (a dense layer with a GELU activation)
 *   residual + layer norm:  x1 = add(a, r) -> layer_norm(x1) (a pre-LN block's residual stream)
 *   matmul + bias:          h = add(matmul, bias[N])         (any other dense layer's bias: the GEMM's epilogue,
 *                                                             writing h in bf16 where it is kept so; the plan
 *                                                             has h's buffer born at the matmul's step)
 *
 * The second node's forward writes both outputs and the first's forward does nothing; backward is each
 * node's own (it reads the values the fused kernel wrote, as planned), except bias + GELU's when the bias
 * learns and the workspace holds a slice of partial sums: the GELU's backward then writes h's gradient and
 * the bias's (its column sums, in the same pass), and the add's only passes h's gradient on to a. Conditions keep it exact: the add
 * feeds only the GELU (bias + GELU), or the layer norm comes right after the add in the order (so nothing
 * reads x1 before it is written); shapes are the plain ones the kernels take. Anything else runs unfused.
 * The plan (plan.c) keeps the first node's inputs alive to the second's forward, which reads them (or the
 * second's output could take their memory). */
#include "ops.h"

#include "kernels.h"
#include "ops_glue.h"

#include <stdlib.h>
#include <string.h>

static magna_status skip_forward(magna_graph *g, magna_node *n) {
    (void)g, (void)n;
    return MAGNA_OK;
}

static magna_status bias_gelu_forward(magna_graph *g, magna_node *n) {
    const magna_node *h = n->in[0], *a = h->in[0], *bias = h->in[1];
    const int64_t N = bias->shape[0], rows = h->numel / N;
    const int e = magna_cuda_bias_gelu_forward(n->op == OP_GELU_TANH, fval(a), fval(bias), rows, N, h->value,
                                               h->stored16, n->value, n->stored16, cuda_stream(g));
    return cuda_fail(g, e, "bias + gelu forward");
}

/* a bias add kept in bf16 (store16.c: q, k, v for the tensor-core attention) */
static magna_status bias_add16_forward(magna_graph *g, magna_node *h) {
    const magna_node *a = h->in[0], *bias = h->in[1];
    const int64_t N = bias->shape[0], rows = h->numel / N;
    return cuda_fail(g, magna_cuda_bias_add16(fval(a), fval(bias), rows, N, h->value, cuda_stream(g)), "bias add (bf16)");
}

static magna_status add_layer_norm_forward(magna_graph *g, magna_node *n) {
    const magna_node *x1 = n->in[0], *a = x1->in[0], *r = x1->in[1];
    const magna_node *gamma = cuda_ln_gamma(n), *beta = cuda_ln_beta(n);
    const int64_t D = x1->shape[x1->ndim - 1], rows = x1->numel / D;
    float *mean = (float *)n->saved;
    const int e = magna_cuda_add_layer_norm_forward(fval(a), fval(r), gamma ? fval(gamma) : NULL,
                                                    beta ? fval(beta) : NULL, n->fp[0], rows, D, fval(x1), n->value,
                                                    n->stored16, mean, mean + rows, cuda_stream(g));
    return cuda_fail(g, e, "residual + layer_norm forward");
}

/* The GELU's backward reads its gradient (bf16 where the matmul after it wrote it so: grad_stored16) and writes h's
 * (its own first write: grad_assigns(n, 0)) and the bias's (the add's first write, when the bias is an activation:
 * grad_assigns(h, 1)) */
static void bias_gelu_backward(magna_graph *g, magna_node *n) {
    magna_node *h = n->in[0], *bias = h->in[1];
    const int64_t N = bias->shape[0], rows = h->numel / N;
    if (!h->grad || !bias->grad) {
        graph_error(g, MAGNA_ERR_STATE, "bias + gelu backward: no gradient buffer for h or the bias");
        return;
    }
    if (h->grad_stored16 && !grad_assigns(n, 0)) {
        graph_error(g, MAGNA_ERR_STATE, "bias + gelu backward: a bf16 gradient it does not write first");
        return;
    }
    const int e = magna_cuda_bias_gelu_backward(n->op == OP_GELU_TANH, h->value, h->stored16, n->grad, n->grad_stored16,
                                                rows, N, h->grad, h->grad_stored16, grad_assigns(n, 0), bias->grad,
                                                grad_assigns(h, 1), (float *)g->workspace,
                                                g->workspace_bytes / sizeof(float), cuda_stream(g));
    if (e) cuda_fail(g, e, "bias + gelu backward");
}

/* The bias add's backward when the GELU's summed the bias: a's gradient += h's (the same shape; = as its first
 * writer) */
static void bias_add_input_backward(magna_graph *g, magna_node *h) {
    float *da = h->in[0]->grad;
    if (!da || da == h->grad) return; /* a's gradient is h's buffer (plan.c's grad_via): da = dh already */
    if (h->grad_stored16) { /* store16.c keeps h's gradient in bf16 only where a shares it */
        graph_error(g, MAGNA_ERR_STATE, "bias add backward: a bf16 gradient not shared with its operand");
        return;
    }
    const int e = magna_cuda_unary_backward(MAGNA_EM_ADD_SCALAR, 0.0f, NULL, NULL, h->grad, da, h->numel,
                                            grad_assigns(h, 0), cuda_stream(g));
    if (e) cuda_fail(g, e, "bias add backward");
}

static bool same_shape(const magna_node *a, const magna_node *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

/* the live op node run just before n (the order is the live op nodes by id) */
static const magna_node *previous_op(const magna_graph *g, const magna_node *n) {
    for (int k = n->id - 1; k >= 0; k--)
        if (g->nodes[k]->live && g->nodes[k]->kind == NODE_OP) return g->nodes[k];
    return NULL;
}

static bool is_f32_add(const magna_node *p) {
    return p->kind == NODE_OP && p->op == OP_ADD && p->dtype == MAGNA_F32 && !p->keep && p->n_in == 2 &&
           p->in[0]->dtype == MAGNA_F32 && p->in[1]->dtype == MAGNA_F32;
}

static bool fusing_off(void) { return env_flag("MAGNA_CUDA_NO_FUSE"); /* for comparing fused and unfused runs */ }

magna_node *cuda_fused_first(const magna_graph *g, const magna_node *n) {
    if (n->kind != NODE_OP || !n->live || n->n_in < 1 || fusing_off()) return NULL;
    magna_node *p = n->in[0];
    if (!is_f32_add(p)) return NULL;
    if ((n->op == OP_GELU || n->op == OP_GELU_TANH) && cuda_is_bias_add(p) && live_consumers(g, p) == 1) return p;
    if (n->op == OP_LAYER_NORM && previous_op(g, n) == p && same_shape(p->in[0], p) && same_shape(p->in[1], p) &&
        n->saved_bytes >= 2 * (p->numel / p->shape[p->ndim - 1]) * sizeof(float))
        return p;
    return NULL;
}

bool cuda_bias_gelu_backward_fused(const magna_node *h, size_t workspace_bytes) {
    const magna_node *bias = h->in[1];
    return bias->needs_grad && h->needs_grad && workspace_bytes / sizeof(float) >= (size_t)bias->shape[0];
}

bool cuda_is_bias_add(const magna_node *h) {
    return is_f32_add(h) && same_shape(h->in[0], h) && h->in[1]->ndim == 1 && h->in[1]->shape[0] == h->shape[h->ndim - 1];
}

magna_node *cuda_bias_in_gemm(const magna_graph *g, const magna_node *h) {
    if (h->kind != NODE_OP || !h->live || fusing_off() || !cuda_is_bias_add(h)) return NULL;
    magna_node *m = h->in[0];
    if (m->kind != NODE_OP || m->op != OP_MATMUL || !m->live || m->keep || m->ip[0] || m->in[1]->ndim != 2 ||
        live_consumers(g, m) != 1)
        return NULL;
    for (int k = h->id + 1; k < g->n_nodes; k++) /* a GELU or layer norm whose kernel computes h itself */
        for (int j = 0; g->nodes[k]->live && j < g->nodes[k]->n_in; j++)
            if (g->nodes[k]->in[j] == h && cuda_fused_first(g, g->nodes[k]) == h) return NULL;
    return m;
}

/* a matmul whose bias add the GEMM does: the two in one (the add's forward then does nothing) */
static magna_status matmul_bias_forward(magna_graph *g, magna_node *m) {
    for (int k = m->id + 1; k < g->n_nodes; k++)
        if (g->nodes[k]->live && g->nodes[k]->n_in > 0 && g->nodes[k]->in[0] == m)
            return cuda_matmul_bias_forward(g, m, g->nodes[k]);
    return graph_error(g, MAGNA_ERR_STATE, "matmul + bias: the bias add is gone");
}

int cuda_graph_fuse(magna_graph *g, magna_cuda_op *ops) {
    int fused = 0;
    for (int k = 0; k < g->n_order; k++) { /* bias adds kept in bf16 write bf16 (a fused pair's first overrides) */
        magna_node *h = g->order[k], *m = cuda_bias_in_gemm(g, h);
        if (m) /* or the GEMM before writes them, bias and all */
            ops[m->id].forward = matmul_bias_forward, ops[h->id].forward = skip_forward, fused++;
        else if (h->stored16 && h->op == OP_ADD && cuda_is_bias_add(h))
            ops[h->id].forward = bias_add16_forward;
    }
    for (int k = 1; k < g->n_order; k++) {
        magna_node *n = g->order[k], *p = cuda_fused_first(g, n);
        if (!p) continue;
        if (n->op == OP_LAYER_NORM) {
            ops[p->id].forward = skip_forward, ops[n->id].forward = add_layer_norm_forward;
        } else {
            ops[p->id].forward = skip_forward, ops[n->id].forward = bias_gelu_forward;
            if (cuda_bias_gelu_backward_fused(p, g->workspace_bytes))
                ops[p->id].backward = bias_add_input_backward, ops[n->id].backward = bias_gelu_backward;
        }
        fused++;
    }
    return fused;
}
