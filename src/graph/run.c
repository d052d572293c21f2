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

/* The op profiler: with MAGNA_PROFILE=1 in the environment at compile, every CPU forward and backward
 * is timed per op kind, and the table (op, calls, forward and backward ms, share of the total) goes to
 * stderr when the graph is freed. It answers "where does a step go" without perf, and costs two clock
 * reads per op only when asked for. Zeroing activation gradients has its own row. */
enum { PROFILE_ZERO = OP_COUNT, PROFILE_ROWS };
struct graph_profile {
    double fwd[PROFILE_ROWS], bwd[PROFILE_ROWS];
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

void graph_profile_report_and_free(magna_graph *g) {
    struct graph_profile *p = g->profile;
    if (!p) return;
    double total = 0;
    for (int r = 0; r < PROFILE_ROWS; r++) total += p->fwd[r] + p->bwd[r];
    fprintf(stderr, "magna profile (MAGNA_PROFILE): %.3f s in forward and backward ops\n", total);
    fprintf(stderr, "  %-22s %9s %12s %12s %7s\n", "op", "calls", "forward ms", "backward ms", "share");
    for (;;) { /* rows by total time, largest first */
        int best = -1;
        for (int r = 0; r < PROFILE_ROWS; r++)
            if (p->calls[r] && (best < 0 || p->fwd[r] + p->bwd[r] > p->fwd[best] + p->bwd[best])) best = r;
        if (best < 0) break;
        const char *name = best == PROFILE_ZERO ? "(zero activation grads)" : magna_op_table[best]->name;
        double t = p->fwd[best] + p->bwd[best];
        fprintf(stderr, "  %-22s %9ld %12.1f %12.1f %6.1f%%\n", name, p->calls[best], 1e3 * p->fwd[best],
                1e3 * p->bwd[best], total > 0 ? 100.0 * t / total : 0.0);
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
        if (prof) prof->fwd[n->op] += now_s() - t0, prof->calls[n->op]++;
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
        if (prof) prof->bwd[PROFILE_ZERO] += t1 - t0, prof->calls[PROFILE_ZERO]++, prof->bwd[n->op] += now_s() - t1;
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
