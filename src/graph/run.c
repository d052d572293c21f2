/* run.c — forward and backward over the planned graph. Nothing here allocates: every buffer was placed
 * at compile, so a training step is a walk over g->order and nothing else. */
#include "internal.h"

#ifdef MAGNA_HAVE_CUDA
#include "../cuda/ops.h"
#endif

#include <string.h>

magna_status magna_graph_forward(magna_graph *g) {
    if (!g) return MAGNA_ERR_ARG;
    if (!g->compiled) return graph_state_error(g, "forward: compile the graph first");
    g->mask_step = g->rng_step;
    if (g->training) g->rng_step++;
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA) return cuda_graph_forward(g);
#endif
    for (int k = 0; k < g->n_order; k++) {
        magna_node *n = g->order[k];
        magna_status st = magna_op_table[n->op]->forward(g, n);
        if (st != MAGNA_OK) return st;
    }
    g->last_status = MAGNA_OK;
    g->errmsg[0] = '\0'; /* a compiled graph has no sticky build error left to keep */
    return MAGNA_OK;
}

magna_status magna_graph_backward_seeded(magna_graph *g, const float *seed_grad) {
    if (!g) return MAGNA_ERR_ARG;
    if (!g->compiled) return graph_state_error(g, "backward: compile the graph first");
    if (!g->loss) return graph_state_error(g, "backward: the graph was compiled without a loss");
    magna_node *loss = g->loss;
    if (!loss->needs_grad) return MAGNA_OK; /* the loss depends on no parameter */
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA) return cuda_graph_backward(g, seed_grad);
#endif
    if (seed_grad)
        memcpy(loss->grad, seed_grad, (size_t)loss->numel * sizeof(float));
    else
        for (int64_t i = 0; i < loss->numel; i++) loss->grad[i] = 1.0f;
    for (int k = g->n_order - 1; k >= 0; k--) {
        magna_node *n = g->order[k];
        if (!n->needs_grad) continue;
        for (magna_node **z = g->grad_zero[n->id]; *z; z++) memset((*z)->grad, 0, (size_t)(*z)->numel * sizeof(float));
        magna_op_table[n->op]->backward(g, n);
    }
    return MAGNA_OK;
}

magna_status magna_graph_backward(magna_graph *g) { return magna_graph_backward_seeded(g, NULL); }

void magna_graph_zero_grad(magna_graph *g) {
#ifdef MAGNA_HAVE_CUDA
    if (g && g->compiled && g->device == MAGNA_DEVICE_CUDA) {
        cuda_graph_zero_grad(g);
        return;
    }
#endif
    if (g && g->grads) memset(g->grads, 0, g->n_params * sizeof(float));
}
