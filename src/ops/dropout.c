/* dropout.c — inverted dropout. In training mode y = x m / (1 - p) with m ~ Bernoulli(1 - p) drawn
 * from (graph seed, node id, rng step, element): the same seed and step give the same mask, so a
 * resumed run drops the same units, and backward recomputes the mask instead of storing it. */
#include "common.h"
#include "../cuda/elementwise_math.h"

/* the mask's draw is shared with the CUDA kernel (cuda/elementwise_math.h), so both drop the same units */
static inline bool kept(const magna_graph *g, const magna_node *n, int64_t i, float p) {
    return magna_em_dropout_kept(magna_em_dropout_seed(g->seed), magna_em_dropout_stream(n->id, g->mask_step), i, p);
}

static magna_status dropout_infer(magna_graph *g, magna_node *n) {
    float p = n->fp[0];
    if (!(p >= 0.0f && p < 1.0f)) return graph_error(g, MAGNA_ERR_ARG, "dropout: p must be in [0, 1), got %g", p);
    return infer_like_input(g, n);
}

static magna_status dropout_forward(magna_graph *g, magna_node *n) {
    const float *x = fval(n->in[0]);
    float *y = fval(n);
    const float p = n->fp[0], scale = 1.0f / (1.0f - p);
    const int64_t count = n->numel;
    const bool active = g->training && p > 0;
PARALLEL_FOR(count > PAR_MIN, i, count, y[i] = !active ? x[i] : kept(g, n, i, p) ? x[i] * scale : 0.0f;);
    return MAGNA_OK;
}

static void dropout_backward(magna_graph *g, magna_node *n) {
    float *dx = n->in[0]->grad;
    if (!dx) return;
    const float *dy = n->grad;
    const float p = n->fp[0], scale = 1.0f / (1.0f - p);
    const int64_t count = n->numel;
    const bool active = g->training && p > 0;
PARALLEL_FOR(count > PAR_MIN, i, count, dx[i] += !active ? dy[i] : kept(g, n, i, p) ? dy[i] * scale : 0.0f;);
}

const magna_op_def op_def_dropout = {"dropout", 0, dropout_infer, dropout_forward, dropout_backward};

magna_node *magna_dropout(magna_graph *g, magna_node *x, float p) {
    return g ? graph_add_node(g, OP_DROPOUT, 1, &x, NULL, 0, &p, 1) : NULL;
}
