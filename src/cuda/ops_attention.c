/* ops_attention.c — src/ops/attention.c's op on the device, through attention.cu's flash-style kernels.
 * The node is read as the CPU op reads it (q, k, v, optional int32 key lengths; ip[0] heads, ip[1] causal).
 * `saved` holds two floats a query row, [B, H, Tq] each: the log-sum-exp forward writes and the
 * rowsum(dO * O) backward computes first (the CPU infer sizes saved for at least that). */
#include "cuda/ops_glue.h"

#include "cuda/kernels.h"

static magna_cuda_attention_args attention_args(const magna_graph *g, const magna_node *n) {
    const magna_node *q = n->in[0], *k = n->in[1];
    const magna_node *v = n->in[2];
    magna_cuda_attention_args a = {.q = q->value, .k = k->value, .v = v->value};
    a.q16 = q->stored16, a.k16 = k->stored16, a.v16 = v->stored16, a.out16 = n->stored16; /* store16.c */
    a.key_lengths = n->n_in == 4 ? ival(n->in[3]) : NULL;
    a.B = (int)q->shape[0], a.Tq = (int)q->shape[1], a.Tk = (int)k->shape[1], a.C = (int)q->shape[2];
    a.heads = (int)n->ip[0], a.causal = n->ip[1] != 0, a.bf16 = g->bf16 ? 1 : 0;
    return a;
}

/* Key lengths outside [0, Tk] act as clamped on the device (the CPU op refuses them, but reading them
 * here would mean a copy and a wait inside the step). */
magna_status cuda_attention_forward(magna_graph *g, magna_node *n) {
    const magna_cuda_attention_args a = attention_args(g, n);
    const int err = magna_cuda_attention_forward(&a, n->value, (float *)n->saved, cuda_stream(g));
    return err ? cuda_fail(g, err, "attention forward") : MAGNA_OK;
}

void cuda_attention_backward(magna_graph *g, magna_node *n) {
    magna_cuda_attention_args a = attention_args(g, n);
    a.assign = n->grad_assign & 7u; /* the first writer of q's, k's or v's gradient assigns it (plan.c step 5) */
    for (int i = 0; i < 3; i++) a.grad16 |= n->in[i]->grad_stored16 ? 1u << i : 0u; /* in bf16 (store16.c) */
    a.dout16 = n->grad_stored16; /* the matmul after it wrote dO in bf16 (store16.c) */
    float *dq = n->in[0]->grad, *dk = n->in[1]->grad, *dv = n->in[2]->grad;
    float *lse = (float *)n->saved, *delta = lse + (size_t)a.B * a.heads * a.Tq;
    const int err = magna_cuda_attention_backward(&a, n->value, n->grad, lse, delta, dq, dk, dv, cuda_stream(g));
    if (err) cuda_fail(g, err, "attention backward");
}
