/* store16.c — which activations a bf16 CUDA graph keeps in bf16 (stored16), decided before the memory plan so
 * their blocks take two bytes an element: the activations autocast hands over in bf16, where their one writer
 * and every reader take bf16.
 *
 *   logits:  a matmul whose only reader is a cross-entropy that writes the gradient over them (grad_in_value):
 *            the matmul writes bf16 (cuBLASLt's 16BF D), the loss reads it and writes the gradient there in bf16,
 *            the matmul's backward reads that in place (GPT-2's logits: 6.6 GB at batch 64, not 13).
 *
 * Everything else stays float32. MAGNA_NO_FUSE=1 turns this off with the other rewrites (plan.c). */
#include "ops.h"

/* the one live reader of n, or NULL when it has none or several */
static magna_node *only_reader(const magna_graph *g, const magna_node *n) {
    magna_node *found = NULL;
    for (int j = n->id + 1; j < g->n_nodes; j++) {
        magna_node *c = g->nodes[j];
        for (int k = 0; c->live && k < c->n_in; k++) {
            if (c->in[k] != n) continue;
            if (found) return NULL;
            found = c;
        }
    }
    return found;
}

int cuda_plan_store16(magna_graph *g) {
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        magna_node *n = g->nodes[i];
        if (!n->live || n->kind != NODE_OP || n->dtype != MAGNA_F32) continue;
        const magna_node *reader = only_reader(g, n);
        if (n->op == OP_MATMUL && n->grad_in_value && reader && reader->op == OP_CROSS_ENTROPY) {
            n->stored16 = true;
            count++;
        }
    }
    return count;
}
