/* store16.c — which activations a bf16 CUDA graph keeps in bf16 (stored16), decided before the memory plan so
 * their blocks take two bytes an element: those autocast hands over in bf16, where the one writer and every
 * reader take bf16.
 *
 *   logits:        a matmul whose only reader is a cross-entropy that writes the gradient over them
 *                  (grad_in_value): the matmul writes bf16 (cuBLASLt's 16BF D), the loss reads it and writes
 *                  the gradient there in bf16, the matmul's backward reads that in place (GPT-2's logits:
 *                  6.6 GB at batch 64, not 13).
 *   matmul inputs: a layer norm's output, or a GELU's fused with its bias add (fused.cu), that only matmuls
 *                  read: the kernel writes bf16, the GEMMs read it in place instead of staging a bf16 copy
 *                  (backward's too: dW = x^T dy). Neither op's backward reads its own output.
 *   a GELU's input: the bias add of such a GELU, when the pair's backward is fused too (it reads the input as
 *                  bf16); the GELU is then taken of the rounded input, as autocast's bf16 GELU is.
 *   q, k, v:       bias adds that only attentions read, where those run the tensor-core kernels (which stage q,
 *                  k and v as bf16 tiles anyway): the add writes bf16 (fused.cu's bias_add16).
 *   attention out: such an attention's output, when only matmuls read it (its backward's rowsum(dO * O)
 *                  reads it as bf16).
 *
 * And recomputation: such a GELU's output (its input kept in bf16), or a fused residual + layer norm's (from
 * its float input and the statistics it keeps for backward anyway), when matmuls read it only as their first
 * operand, is not kept for backward (recompute): each matmul's backward computes it again into the workspace
 * for its weight gradient (the same expression, the same bits). GPT-2: 72 + 37.5 MiB a sample less for a bf16
 * pass over [B T, 4 d] and three over [B T, d] a layer.
 *
 * Gradients (grad_stored16):
 *   a GELU's input's: the bias add of such a GELU, when the pair's backward is fused and the matmul before is
 *                  the add's only operand sharing its gradient (grad_via): the GELU's backward assigns it in bf16
 *                  (the bias's sums taken from the float terms first), the matmul's backward reads it in place as
 *                  dC, as autocast's GEMM would get it, instead of a float32 write, a read and a bf16 copy
 *                  (GPT-2: [B T, 4 d] a layer; the same bits);
 *   such a GELU's output's: when one matmul alone reads it, as its first operand, that matmul's backward
 *                  writes dA there in bf16 (assigning, the GEMM's bf16 D) and the GELU's fused backward reads it,
 *                  as autocast hands a bf16 GEMM's gradient on (GPT-2: [B T, 4 d] a layer, rounded to bf16 there);
 *   q's, k's, v's: such bias adds, each read once by a tensor-core attention without key lengths (whose
 *                  kernels write every element of dq, dk, dv once): the attention assigns them in bf16, the
 *                  add's backward sums the bias's gradient from them and the matmul before (sharing the buffer,
 *                  grad_via) reads it in place as dC (GPT-2: three [B T, d] a layer);
 *   attention out's: when one matmul alone reads it, as its first operand, that matmul's dA in bf16 (beta 0),
 *                  which the tensor-core attention's backward stages as bf16 tiles anyway (GPT-2: [B T, d] a
 *                  layer, read once per key tile that sees its row).
 * MAGNA_CUDA_GRAD16=0 keeps these float32, for comparing.
 *
 * Other gradients stay float32 (but the logits'), and so do the residual stream, norm statistics, softmax and
 * the loss. MAGNA_NO_FUSE=1 turns this off with the other rewrites (plan.c). */
#include "ops.h"
#include "launch.h"

#include <stdlib.h>
#include <string.h>

/* a cross-entropy reading its logits (which take bf16, and their gradient over them in bf16) */
static bool loss_reads_logits(const magna_node *c, int input) {
    return input == 0 && c->kind == NODE_OP && c->op == OP_CROSS_ENTROPY;
}

/* a matmul, which reads a bf16 operand in place (as either input) */
static bool matmul_reads(const magna_node *c, int input) {
    (void)input;
    return c->kind == NODE_OP && c->op == OP_MATMUL;
}

/* a matmul reading it as its first operand only (its weight gradient reads that; the input gradient does not) */
static bool matmul_reads_as_a(const magna_node *c, int input) {
    return input == 0 && c->kind == NODE_OP && c->op == OP_MATMUL && c->in[1] != c->in[0];
}

/* MAGNA_CUDA_RECOMPUTE=0 keeps GELU outputs for backward instead (faster by a pass, 72 MiB a GPT-2 sample more) */
static bool recompute_allowed(void) {
    const char *v = getenv("MAGNA_CUDA_RECOMPUTE");
    return !(v && !strcmp(v, "0"));
}

/* MAGNA_CUDA_GRAD16=0 keeps every gradient but the logits' float32 */
static bool grad16_allowed(void) {
    const char *v = getenv("MAGNA_CUDA_GRAD16");
    return !(v && !strcmp(v, "0"));
}

/* the bias add h of a fused bias + GELU whose backward is fused too: its gradient (the GELU's backward its one
 * writer, assigning: h has no other consumer) may be bf16 where its operand a is a matmul reading it in place as
 * its own (grad_via) */
static bool grad_stores16(const magna_graph *g, const magna_node *h, size_t workspace) {
    const magna_node *a = h->in[0];
    return grad16_allowed() && h->needs_grad && cuda_bias_gelu_backward_fused(h, workspace) && a->kind == NODE_OP &&
           a->op == OP_MATMUL && a->live && !a->keep && a->grad_via == h && live_consumers(g, a) == 1;
}

/* q, k or v (h, a bias add of a matmul's product) read once by one tensor-core attention without key lengths:
 * its gradient may be bf16, the attention its one writer, the matmul reading it in place as its own (grad_via) */
static bool qkv_grad_stores16(const magna_graph *g, const magna_node *h) {
    const magna_node *a = h->in[0], *reader = NULL;
    int uses = 0;
    for (int j = h->id + 1; j < g->n_nodes; j++)
        for (int k = 0; g->nodes[j]->live && k < g->nodes[j]->n_in; k++)
            if (g->nodes[j]->in[k] == h) reader = g->nodes[j], uses++;
    return grad16_allowed() && h->needs_grad && uses == 1 && reader->op == OP_ATTENTION && reader->n_in == 3 &&
           a->kind == NODE_OP && a->op == OP_MATMUL && a->live && !a->keep && a->grad_via == h &&
           live_consumers(g, a) == 1;
}

/* an attention that runs the tensor-core kernels (bf16 mode, head dim a multiple of 16 up to 128), which stage
 * q, k and v as bf16 tiles and so read them stored either way */
static bool tensor_core_attention(const magna_node *c) {
    if (c->kind != NODE_OP || c->op != OP_ATTENTION || c->ip[0] <= 0) return false;
    const int64_t C = c->in[0]->shape[c->in[0]->ndim - 1];
    return C % c->ip[0] == 0 && magna_attn_tc_fits(C / c->ip[0]);
}
static bool attention_reads_qkv(const magna_node *c, int input) { return input <= 2 && tensor_core_attention(c); }

/* n has readers, and every one reads it as `reads` allows */
static bool only_read_by(const magna_graph *g, const magna_node *n, bool (*reads)(const magna_node *c, int input)) {
    int readers = 0;
    for (int j = n->id + 1; j < g->n_nodes; j++) {
        const magna_node *c = g->nodes[j];
        for (int k = 0; c->live && k < c->n_in; k++) {
            if (c->in[k] != n) continue;
            if (!reads(c, k)) return false;
            readers++;
        }
    }
    return readers > 0;
}

/* a value the caller or its own backward may read as float32 stays float32 */
static bool may_store16(const magna_node *n) {
    return n->live && n->kind == NODE_OP && n->dtype == MAGNA_F32 && !n->keep &&
           !node_bwd_reads_output(n) && !node_is_view(n);
}

int cuda_plan_store16(magna_graph *g) {
    size_t workspace = 0; /* what the plan will make the workspace (the fused backward's slices need room) */
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->live && g->nodes[i]->workspace_bytes > workspace) workspace = g->nodes[i]->workspace_bytes;
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        magna_node *n = g->nodes[i];
        if (!n->live || n->kind != NODE_OP || n->dtype != MAGNA_F32) continue;
        if (n->op == OP_MATMUL && n->grad_in_value && only_read_by(g, n, loss_reads_logits)) {
            n->stored16 = true; /* the logits (kept or not: forward's copy to the host is widened) */
            count++;
            continue;
        }
        /* an attention's output (its backward reads it, in the kernel that takes bf16) */
        if (tensor_core_attention(n) && n->live && !n->keep && only_read_by(g, n, matmul_reads)) {
            n->stored16 = true;
            count++;
            /* and its gradient, where one matmul's backward writes it first (dA, beta 0) for the attention's */
            n->grad_stored16 = grad16_allowed() && n->needs_grad && live_consumers(g, n) == 1 &&
                               only_read_by(g, n, matmul_reads_as_a);
            continue;
        }
        if (!may_store16(n)) continue;
        if (n->op == OP_ADD && cuda_is_bias_add(n) && only_read_by(g, n, attention_reads_qkv)) { /* q, k, v */
            n->stored16 = true;
            count++;
            if (qkv_grad_stores16(g, n)) n->grad_stored16 = n->in[0]->grad_stored16 = true;
            continue;
        }
        if (!only_read_by(g, n, matmul_reads)) continue;
        magna_node *bias_add = n->op == OP_GELU || n->op == OP_GELU_TANH ? cuda_fused_first(g, n) : NULL;
        if (n->op == OP_LAYER_NORM || bias_add) {
            n->stored16 = true;
            count++;
        }
        /* a fused residual + layer norm's output: computed again from its input and statistics */
        if (n->op == OP_LAYER_NORM && cuda_fused_first(g, n))
            n->recompute = recompute_allowed() && only_read_by(g, n, matmul_reads_as_a);
        if (bias_add && may_store16(bias_add) && (!bias_add->needs_grad || cuda_bias_gelu_backward_fused(bias_add, workspace))) {
            bias_add->stored16 = true;
            count++;
            /* then its output need not wait for backward: the matmuls after it compute it again */
            n->recompute = recompute_allowed() && only_read_by(g, n, matmul_reads_as_a);
            if (grad_stores16(g, bias_add, workspace)) {
                bias_add->grad_stored16 = bias_add->in[0]->grad_stored16 = true;
                /* and the GELU's own, where one matmul's backward writes it first (dA, with beta 0) */
                n->grad_stored16 = n->needs_grad && live_consumers(g, n) == 1 && only_read_by(g, n, matmul_reads_as_a);
            }
        }
    }
    return count;
}
