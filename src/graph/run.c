/* run.c — forward and backward over the planned graph. Nothing here allocates: every buffer was placed
 * at compile, so a training step is a walk over g->order and nothing else. */
#include "internal.h"

#ifdef MAGNA_HAVE_CUDA
#include "../cuda/ops.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The op profiler: with MAGNA_PROFILE=1 in the environment at compile, every forward and backward is timed
 * per op kind, and the table (op, calls, forward and backward ms, share of the total, and the TFLOP/s of the
 * products that do a known amount of work) goes to stderr when the graph is freed. It answers "where does a
 * step go" without perf, and costs two clock reads per op only when asked for. On the CPU the times are the
 * host's; on CUDA (src/cuda/graph.c) they are the GPU's, between events recorded on the graph's stream. */
struct graph_profile {
    double fwd[PROFILE_ROWS], bwd[PROFILE_ROWS];
    double fwd_flops[PROFILE_ROWS], bwd_flops[PROFILE_ROWS];
    long calls[PROFILE_ROWS];
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void graph_profile_start(magna_graph *g) {
    if (g->profile || !env_flag("MAGNA_PROFILE")) return;
    g->profile = calloc(1, sizeof *g->profile); /* no profile if this fails: it is only a report */
}

/* The useful floating-point work of a node's forward (or backward): 2 M N K a matrix product, and a convolution's
 * 2 (its output's elements) (C KH KW) (backward, that for each of the two inputs that takes a gradient);
 * attention 4 C a (query, key) pair it scores forward, 8 backward (QK^T and PV; dV, dP, dQ and dK), the pairs a
 * causal mask drops not counted. 0 for the other ops. */
double graph_profile_flops(const magna_node *n, bool backward) {
    if (n->op == OP_CONV2D) { /* w [OC, C, KH, KW] */
        const magna_node *w = n->in[1];
        const double product = 2.0 * (double)n->numel * (double)(w->shape[1] * w->shape[2] * w->shape[3]);
        return backward ? product * (n->in[0]->needs_grad + n->in[1]->needs_grad) : product;
    }
    if (n->op == OP_MATMUL) {
        const magna_node *a = n->in[0];
        const double k = (double)(n->ip[0] ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1]);
        const double product = 2.0 * (double)n->numel * k;
        return backward ? product * (n->in[0]->needs_grad + n->in[1]->needs_grad) : product;
    }
    if (n->op == OP_ATTENTION) {
        const int64_t B = n->in[0]->shape[0], Tq = n->in[0]->shape[1], Tk = n->in[1]->shape[1], C = n->in[0]->shape[2];
        double pairs = (double)Tq * (double)Tk;
        if (n->ip[1]) { /* causal: query i sees keys up to i + (Tk - Tq) */
            pairs = 0;
            for (int64_t i = 0; i < Tq; i++) {
                const int64_t seen = i + (Tk - Tq) + 1;
                pairs += (double)(seen < 0 ? 0 : seen > Tk ? Tk : seen);
            }
        }
        return (backward ? 8.0 : 4.0) * (double)B * pairs * (double)C;
    }
    return 0.0;
}

void graph_profile_add(magna_graph *g, int row, bool backward, double seconds, double flops, long calls) {
    struct graph_profile *p = g->profile;
    if (!p || row < 0 || row >= PROFILE_ROWS) return;
    p->calls[row] += calls;
    if (backward)
        p->bwd[row] += seconds, p->bwd_flops[row] += flops;
    else
        p->fwd[row] += seconds, p->fwd_flops[row] += flops;
}

static const char *profile_row_name(int row, char *buf, size_t cap) {
    switch (row) {
    case PROFILE_ZERO: return "(zero activation grads)";
    case PROFILE_INPUTS: return "(inputs to the device)";
    case PROFILE_BETWEEN: return "(between steps: optimizer, host)";
    default:
        if (row < OP_COUNT) return magna_op_table[row]->name;
        snprintf(buf, cap, "%s (fused)", magna_op_table[row - PROFILE_FUSED]->name);
        return buf;
    }
}

/* "   12.34" TFLOP/s, or blanks where the row counts no work */
static const char *tflops(double flops, double s, char *buf, size_t cap) {
    if (flops > 0 && s > 0)
        snprintf(buf, cap, "%9.2f", flops / s * 1e-12);
    else
        snprintf(buf, cap, "%9s", "");
    return buf;
}

void graph_profile_report_and_free(magna_graph *g) {
    struct graph_profile *p = g->profile;
    if (!p) return;
    double total = 0;
    for (int r = 0; r < PROFILE_ROWS; r++) total += p->fwd[r] + p->bwd[r];
    fprintf(stderr, "magna profile (MAGNA_PROFILE): %.3f ms in forward and backward ops (%s time)\n", 1e3 * total,
            g->device == MAGNA_DEVICE_CUDA ? "the GPU's" : "the host's");
    fprintf(stderr, "  %-34s %9s %12s %12s %7s %9s %9s\n", "op", "calls", "forward ms", "backward ms", "share",
            "fwd TF/s", "bwd TF/s");
    for (;;) { /* rows by total time, largest first */
        int best = -1;
        for (int r = 0; r < PROFILE_ROWS; r++)
            if (p->calls[r] && (best < 0 || p->fwd[r] + p->bwd[r] > p->fwd[best] + p->bwd[best])) best = r;
        if (best < 0) break;
        char name[64], f[16], b[16];
        double t = p->fwd[best] + p->bwd[best];
        fprintf(stderr, "  %-34s %9ld %12.3f %12.3f %6.1f%% %s %s\n", profile_row_name(best, name, sizeof name),
                p->calls[best], 1e3 * p->fwd[best], 1e3 * p->bwd[best], total > 0 ? 100.0 * t / total : 0.0,
                tflops(p->fwd_flops[best], p->fwd[best], f, sizeof f), tflops(p->bwd_flops[best], p->bwd[best], b, sizeof b));
        p->calls[best] = 0;
    }
    free(p);
    g->profile = NULL;
}

magna_status magna_graph_forward(magna_graph *g) {
    if (!g) return MAGNA_ERR_ARG;
    if (!g->compiled) return graph_state_error(g, "forward: compile the graph first");
    g->mask_step = g->rng_step;
    g->values_spent = false;
    if (g->training) g->rng_step++;
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA) return cuda_graph_forward(g);
#endif
    /* Ops pick their kernels by the thread count (oneDNN's primitives, bf16 hand-offs, per-thread scratch), and
     * backward reads what forward left for the kernels it picked: both must run at one count. */
    g->forward_threads = omp_get_max_threads();
    struct graph_profile *prof = g->profile;
    for (int k = 0; k < g->n_order; k++) {
        magna_node *n = g->order[k];
        double t0 = prof ? now_s() : 0;
        magna_status st = magna_op_table[n->op]->forward(g, n);
        if (prof) graph_profile_add(g, n->op, false, now_s() - t0, graph_profile_flops(n, false), 1);
        if (st != MAGNA_OK) return st;
    }
    g->last_status = MAGNA_OK;
    g->errmsg[0] = '\0'; /* a compiled graph has no sticky build error left to keep */
    return MAGNA_OK;
}

/* x[0..n) = 0, across the threads when it is large (a gradient no first writer assigns, plan.c step 5). */
static void zero_floats(float *x, int64_t n) {
    const int64_t chunk = 1 << 16, chunks = (n + chunk - 1) / chunk;
    PARALLEL_FOR(chunks > 1, c, chunks, {
        const int64_t i = c * chunk;
        memset(x + i, 0, (size_t)(n - i < chunk ? n - i : chunk) * sizeof *x);
    });
}

magna_status magna_graph_backward_seeded(magna_graph *g, const float *seed_grad) {
    if (!g) return MAGNA_ERR_ARG;
    if (!g->compiled) return graph_state_error(g, "backward: compile the graph first");
    if (!g->loss) return graph_state_error(g, "backward: the graph was compiled without a loss");
    magna_node *loss = g->loss;
    if (!loss->needs_grad) return MAGNA_OK; /* the loss depends on no parameter */
    if (g->values_spent)
        return graph_state_error(g, "backward: the last backward wrote the logits' gradient over them (the memory "
                                    "plan's grad_in_value): run forward again first");
    g->values_spent = g->has_grad_in_value;
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA) return cuda_graph_backward(g, seed_grad);
#endif
    if (g->forward_threads != omp_get_max_threads())
        return graph_state_error(g, g->forward_threads ? "backward: forward ran at %d threads, backward would run at %d: "
                                                         "run forward again at this thread count"
                                                       : "backward: run forward first",
                                 g->forward_threads, omp_get_max_threads());
    g->last_status = MAGNA_OK;
    if (seed_grad)
        memcpy(loss->grad, seed_grad, (size_t)loss->numel * sizeof(float));
    else
        for (int64_t i = 0; i < loss->numel; i++) loss->grad[i] = 1.0f;
    struct graph_profile *prof = g->profile;
    for (int k = g->n_order - 1; k >= 0; k--) {
        magna_node *n = g->order[k];
        if (!n->needs_grad) continue;
        double t0 = prof ? now_s() : 0;
        for (magna_node **z = g->grad_zero[n->id]; *z; z++) zero_floats((*z)->grad, (*z)->numel);
        double t1 = prof ? now_s() : 0;
        magna_op_table[n->op]->backward(g, n);
        if (prof) {
            graph_profile_add(g, PROFILE_ZERO, true, t1 - t0, 0, 1);
            graph_profile_add(g, n->op, true, now_s() - t1, graph_profile_flops(n, true), 0);
        }
        if (g->last_status != MAGNA_OK) return g->last_status; /* an op's error (oneDNN's, a state it cannot use) */
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
