/* graph.c — a compiled graph on a CUDA device: the plan's arena, workspace and flat buffers in device
 * memory, the forward and backward walks dispatching to magna_cuda_op_table, and the host mirrors.
 *
 * The plan is the CPU's (src/graph/plan.c): the same offsets, only the base pointers are device memory, so
 * a step allocates nothing here either. What crosses the bus each step is what the caller must see: the
 * inputs go up before forward, the kept nodes (loss, outputs) come down after it, and the loss's seed
 * gradient goes up before backward. Params and states stay on the device: their host mirrors (g->params,
 * g->states) are refreshed only when someone asks for them (cuda_graph_sync_host, called by every public
 * accessor) and uploaded only after someone may have written them (cuda_graph_sync_device, called before
 * the device reads them). Two flags say which side is newer; they are never both set. */
#include "ops.h"

#include "kernels.h"
#include "ops_glue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

magna_status cuda_fail(magna_graph *g, int err, const char *what) {
    if (err == 0) return MAGNA_OK;
    return graph_error(g, MAGNA_ERR_STATE, "cuda: %s: %s", what, cuda_error_string(err));
}

const char *cuda_missing_ops(const magna_graph *g, char *buf, size_t cap) {
    bool seen[OP_COUNT] = {false};
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < g->n_nodes; i++) {
        const magna_node *n = g->nodes[i];
        if (!n->live || n->kind != NODE_OP || seen[n->op]) continue;
        const magna_cuda_op *op = &magna_cuda_op_table[n->op];
        if (op->forward && (op->backward || !n->needs_grad)) continue;
        seen[n->op] = true;
        int w = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", magna_op_table[n->op]->name);
        if (w < 0 || (size_t)w >= cap - used) break;
        used += (size_t)w;
    }
    return buf;
}

static size_t node_bytes(const magna_node *n, int64_t numel) { return (size_t)numel * magna_dtype_size(n->dtype); }


/* The nodes whose host mirror the caller uses: batched or not, every live input, and every kept op. */
static bool mirrored(const magna_node *n) {
    return n->live && (n->kind == NODE_INPUT || (n->kind == NODE_OP && n->keep));
}

magna_status cuda_graph_alloc(magna_graph *g) {
    char missing[512];
    if (*cuda_missing_ops(g, missing, sizeof missing))
        return graph_error(g, MAGNA_ERR_UNSUPPORTED, "compile: no CUDA implementation yet for: %s (run on the cpu)",
                           missing);
    cuda_graph *c = calloc(1, sizeof *c);
    if (!c) return graph_error(g, MAGNA_ERR_NOMEM, "compile: out of memory");
    g->cuda = c;
    if (!(c->ops = malloc((size_t)(g->n_nodes + 1) * sizeof *c->ops)))
        return graph_error(g, MAGNA_ERR_NOMEM, "compile: out of memory");
    for (int i = 0; i < g->n_nodes; i++) c->ops[i] = magna_cuda_op_table[g->nodes[i]->op];
    c->fused = cuda_graph_fuse(g, c->ops);
    /* data parallel: this rank's device (runtime.h), current before anything of the graph is made on one */
    int e = cuda_use_device(&c->device);
    if (e) return cuda_fail(g, e, "compile: choosing this rank's device");
    e = cuda_stream_create(&c->stream);
    if (e) return cuda_fail(g, e, "compile: creating a stream");
    const size_t flat = (g->n_params + 1) * sizeof(float), flat_states = (g->n_states + 1) * sizeof(float);
    struct {
        void **p;
        size_t bytes;
        const char *what;
    } want[] = {
        {&g->arena, g->arena_bytes, "activations"},
        {&g->workspace, g->workspace_bytes, "workspace"},
        {(void **)&g->dev_params, flat, "params"},
        {(void **)&g->dev_grads, flat, "gradients"},
        {(void **)&g->dev_states, flat_states, "states"},
        {(void **)&c->scratch, (MAGNA_CUDA_REDUCE_BLOCKS + 16) * sizeof(float), "scratch"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        if (!want[i].bytes) continue;
        if ((e = cuda_malloc(want[i].p, want[i].bytes))) {
            char what[128];
            snprintf(what, sizeof what, "compile: allocating %zu bytes of %s on the device", want[i].bytes, want[i].what);
            return cuda_fail(g, e, what);
        }
        if ((e = cuda_memset(*want[i].p, 0, want[i].bytes, c->stream))) return cuda_fail(g, e, "compile: zeroing");
        c->device_bytes += want[i].bytes;
    }
    if ((e = cuda_host_alloc((void **)&c->scratch_host, 16 * sizeof(float))))
        return cuda_fail(g, e, "compile: pinned host memory");
    /* cuBLASLt (NULL under the emulator: magna_cuda_gemm runs our kernel); in mixed precision its staging for
     * bf16 operands, sized for the largest GEMM of the graph's matmuls and convolutions */
    if ((e = magna_cuda_blas_create(&c->blas))) return cuda_fail(g, e, "compile: creating the cuBLASLt handle");
    size_t stage = 0;
    for (int i = 0; i < g->n_nodes && g->bf16; i++) {
        const size_t need = g->nodes[i]->live ? cuda_gemm_stage_elems(g, g->nodes[i]) : 0;
        stage = need > stage ? need : stage;
    }
    if (stage && (e = magna_cuda_blas_reserve(c->blas, stage)))
        return cuda_fail(g, e, "compile: allocating the bf16 staging of the GEMM operands");
    return MAGNA_OK;
}

/* After plan.c placed every pointer (device ones): host mirrors for what the caller reads and writes. */
magna_status cuda_graph_mirrors(magna_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        magna_node *n = g->nodes[i];
        if (!mirrored(n)) continue;
        const size_t bytes = node_bytes(n, n->capacity) + 16;
        int e = cuda_host_alloc(&n->host, bytes);
        if (e) return cuda_fail(g, e, "compile: pinned host memory for inputs and outputs");
        memset(n->host, 0, bytes);
    }
    if (g->loss) {
        int e = cuda_host_alloc((void **)&g->cuda->seed_host, node_bytes(g->loss, g->loss->capacity) + 16);
        if (e) return cuda_fail(g, e, "compile: pinned host memory for the loss seed");
    }
    return MAGNA_OK;
}

/* The op profiler on the GPU (MAGNA_PROFILE; run.c keeps the table): timing events recorded on the graph's stream
 * around every op, read once the stream has passed them: a forward's at the end of that forward, where it waits
 * anyway, a backward's at the next forward or when the graph is freed. So profiling adds no wait to a step, only
 * an event record per op. */
typedef struct cuda_profile {
    void **fwd; /* [0] before the inputs' upload, [1] after it, [2 + k] after order[k]'s forward */
    void **bwd; /* [0] before the seed's upload, [1 + 2k] after order[k]'s gradients are zeroed, [2 + 2k] after
                 * its backward (only for nodes that take a gradient) */
    int n_fwd, n_bwd;
    bool bwd_pending; /* a finished backward's events, not read yet */
} cuda_profile;

static void profile_free(cuda_graph *c) {
    cuda_profile *p = c->profile;
    if (!p) return;
    for (int i = 0; i < p->n_fwd && p->fwd[i]; i++) cuda_event_destroy(p->fwd[i]);
    for (int i = 0; i < p->n_bwd && p->bwd[i]; i++) cuda_event_destroy(p->bwd[i]);
    free(p->fwd), free(p->bwd), free(p);
    c->profile = NULL;
}

/* The events, made at the first forward after compile asked for a profile (run.c's graph_profile_start) */
static cuda_profile *profile_of(magna_graph *g) {
    cuda_graph *c = g->cuda;
    if (!g->profile || c->profile) return c->profile;
    cuda_profile *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    c->profile = p;
    p->n_fwd = g->n_order + 2, p->n_bwd = 2 * g->n_order + 1;
    p->fwd = calloc((size_t)p->n_fwd, sizeof *p->fwd), p->bwd = calloc((size_t)p->n_bwd, sizeof *p->bwd);
    bool ok = p->fwd && p->bwd;
    for (int i = 0; ok && i < p->n_fwd; i++) ok = !cuda_timing_event_create(&p->fwd[i]);
    for (int i = 0; ok && i < p->n_bwd; i++) ok = !cuda_timing_event_create(&p->bwd[i]);
    if (!ok) {
        fprintf(stderr, "magna profile: no timing events on the device: not profiled\n");
        profile_free(c);
        graph_profile_report_and_free(g);
    }
    return c->profile;
}

/* Records forward's (or backward's) event i on the stream, when profiling; a failure ends the profile, printing
 * what it has (the step goes on) */
static void profile_mark(magna_graph *g, bool backward, int i) {
    cuda_profile *p = g->cuda->profile;
    if (p && cuda_event_record(backward ? p->bwd[i] : p->fwd[i], cuda_stream(g))) {
        fprintf(stderr, "magna profile: recording an event failed: the profile ends here\n");
        profile_free(g->cuda);
        graph_profile_report_and_free(g);
    }
}

static double seconds_between(void *start, void *end) {
    float ms = 0;
    return cuda_event_elapsed_ms(&ms, start, end) ? 0.0 : 1e-3 * ms;
}

/* A node's row: its op, or its op fused (fuse.c replaced its forward) */
static int profile_row(const magna_graph *g, const magna_node *n) {
    return g->cuda->ops[n->id].forward == magna_cuda_op_table[n->op].forward ? (int)n->op : PROFILE_FUSED + (int)n->op;
}

/* The last backward's times (its events done), and the gap from its end to `next` (the next forward's start, or
 * NULL) */
static void profile_read_backward(magna_graph *g, void *next) {
    cuda_profile *p = g->cuda->profile;
    void *prev = p->bwd[0];
    for (int k = g->n_order - 1; k >= 0; k--) {
        magna_node *n = g->order[k];
        if (!n->needs_grad) continue;
        graph_profile_add(g, PROFILE_ZERO, true, seconds_between(prev, p->bwd[1 + 2 * k]), 0, 1);
        graph_profile_add(g, profile_row(g, n), true, seconds_between(p->bwd[1 + 2 * k], p->bwd[2 + 2 * k]),
                          graph_profile_flops(n, true), 0);
        prev = p->bwd[2 + 2 * k];
    }
    if (next) graph_profile_add(g, PROFILE_BETWEEN, false, seconds_between(prev, next), 0, 1);
    p->bwd_pending = false;
}

/* The forward just waited for: its times, and the backward's before it */
static void profile_read_forward(magna_graph *g) {
    cuda_profile *p = g->cuda->profile;
    if (p->bwd_pending) profile_read_backward(g, p->fwd[0]);
    graph_profile_add(g, PROFILE_INPUTS, false, seconds_between(p->fwd[0], p->fwd[1]), 0, 1);
    for (int k = 0; k < g->n_order; k++) {
        magna_node *n = g->order[k];
        graph_profile_add(g, profile_row(g, n), false, seconds_between(p->fwd[1 + k], p->fwd[2 + k]),
                          graph_profile_flops(n, false), 1);
    }
}

magna_status cuda_graph_upload_params(magna_graph *g) {
    void *s = cuda_stream(g);
    int e = cuda_h2d(g->dev_params, g->params, g->n_params * sizeof(float), s);
    if (!e) e = cuda_h2d(g->dev_states, g->states, g->n_states * sizeof(float), s);
    if (!e) e = cuda_stream_sync(s);
    if (e) return cuda_fail(g, e, "copying params and states to the device");
    g->host_newer = g->device_newer = false;
    return MAGNA_OK;
}

void cuda_graph_free(magna_graph *g) {
    cuda_graph *c = g->cuda;
    if (!c) return;
    if (c->stream) cuda_stream_sync(c->stream);
    if (c->profile && c->profile->bwd_pending) profile_read_backward(g, NULL);
    profile_free(c);
    magna_cuda_blas_destroy(&c->blas);
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->host && mirrored(g->nodes[i])) cuda_host_free(g->nodes[i]->host), g->nodes[i]->host = NULL;
    cuda_free(g->arena), cuda_free(g->workspace);
    cuda_free(g->dev_params), cuda_free(g->dev_grads), cuda_free(g->dev_states), cuda_free(c->scratch);
    cuda_host_free(c->seed_host), cuda_host_free(c->scratch_host);
    if (c->stream) cuda_stream_destroy(c->stream);
    free(c->ops);
    free(c);
    g->cuda = NULL;
    g->arena = g->workspace = NULL;
    g->dev_params = g->dev_grads = g->dev_states = NULL;
}

magna_status cuda_graph_sync_device(magna_graph *g) {
    if (!g->host_newer) return MAGNA_OK;
    return cuda_graph_upload_params(g);
}

magna_status cuda_graph_sync_host(magna_graph *g) {
    if (g->device_newer) {
        void *s = cuda_stream(g);
        int e = cuda_d2h(g->params, g->dev_params, g->n_params * sizeof(float), s);
        if (!e) e = cuda_d2h(g->states, g->dev_states, g->n_states * sizeof(float), s);
        if (!e) e = cuda_stream_sync(s);
        if (e) return cuda_fail(g, e, "copying params and states from the device");
        g->device_newer = false;
    }
    g->host_newer = true; /* the caller holds the mirror and may write it */
    return MAGNA_OK;
}

magna_status cuda_graph_grads_to_host(magna_graph *g) {
    return cuda_fail(g, cuda_fetch(g->grads, g->dev_grads, g->n_params * sizeof(float), cuda_stream(g)),
                     "copying gradients from the device");
}

magna_status cuda_graph_forward(magna_graph *g) {
    magna_status st = cuda_graph_sync_device(g);
    if (st != MAGNA_OK) return st;
    void *s = cuda_stream(g);
    profile_of(g);
    profile_mark(g, false, 0);
    int e = 0;
    for (int i = 0; i < g->n_nodes && !e; i++) {
        magna_node *n = g->nodes[i];
        if (n->live && n->kind == NODE_INPUT) e = cuda_h2d(n->value, n->host, node_bytes(n, n->numel), s);
    }
    if (e) return cuda_fail(g, e, "forward: copying the inputs to the device");
    profile_mark(g, false, 1);
    g->last_status = MAGNA_OK;
    for (int k = 0; k < g->n_order; k++) {
        magna_node *n = g->order[k];
        if ((st = g->cuda->ops[n->id].forward(g, n)) != MAGNA_OK) return st;
        profile_mark(g, false, 2 + k);
    }
    for (int k = 0; k < g->n_order && !e; k++) {
        magna_node *n = g->order[k];
        if (n->keep && !n->skip_fetch)
            e = cuda_d2h(n->host, n->value, n->stored16 ? (size_t)n->numel * 2 : node_bytes(n, n->numel), s);
    }
    if (!e) e = cuda_stream_sync(s); /* also where an asynchronous kernel fault surfaces */
    if (e) return cuda_fail(g, e, "forward");
    if (g->cuda->profile) profile_read_forward(g);
    for (int k = 0; k < g->n_order; k++) /* outputs kept in bf16 came down as bf16: widen them in place */
        if (g->order[k]->keep && !g->order[k]->skip_fetch && g->order[k]->stored16)
            widen_bf16_in_place(g->order[k]->host, g->order[k]->numel);
    if (g->training && g->n_states) g->device_newer = true; /* batch norm moved its running statistics */
    return g->last_status;
}

magna_status cuda_graph_backward(magna_graph *g, const float *seed_grad) {
    magna_node *loss = g->loss;
    void *s = cuda_stream(g);
    float *seed = g->cuda->seed_host;
    if (g->cuda->profile) g->cuda->profile->bwd_pending = false;
    profile_mark(g, true, 0);
    for (int64_t i = 0; i < loss->numel; i++) seed[i] = seed_grad ? seed_grad[i] : 1.0f;
    int e = cuda_h2d(loss->grad, seed, (size_t)loss->numel * sizeof(float), s);
    if (e) return cuda_fail(g, e, "backward: the seed gradient");
    g->last_status = MAGNA_OK;
    for (int k = g->n_order - 1; k >= 0 && !e; k--) {
        magna_node *n = g->order[k];
        if (n->needs_grad) {
            for (magna_node **z = g->grad_zero[n->id]; *z && !e; z++)
                e = cuda_memset((*z)->grad, 0, (size_t)(*z)->numel * grad_elem_bytes(*z), s);
            profile_mark(g, true, 1 + 2 * k);
            if (!e) g->cuda->ops[n->id].backward(g, n);
            profile_mark(g, true, 2 + 2 * k);
            if (g->last_status != MAGNA_OK) return g->last_status; /* the op recorded a failed launch */
        }
        if (!e && g->after_backward) g->after_backward(g, k, g->after_backward_user);
    }
    if (!e && g->cuda->profile) g->cuda->profile->bwd_pending = true; /* read at the next forward's wait */
    /* No wait here: the optimizer's kernels queue behind backward's on the same stream, and the host
     * meanwhile gathers the next batch. The seed buffer is rewritten only after the next forward's wait.
     * A kernel fault surfaces at the next wait (the finite check of the gradients, or forward). */
    return cuda_fail(g, e, "backward");
}

void cuda_graph_zero_grad(magna_graph *g) {
    int e = cuda_memset(g->dev_grads, 0, g->n_params * sizeof(float), cuda_stream(g));
    cuda_fail(g, e, "zeroing the gradients");
}

magna_status cuda_grads_reduce(magna_graph *g, int mode, float *out) {
    cuda_graph *c = g->cuda;
    float *result = c->scratch + MAGNA_CUDA_REDUCE_BLOCKS;
    int e = magna_cuda_reduce(mode, g->dev_grads, (int64_t)g->n_params, c->scratch, result, c->stream);
    if (!e) e = cuda_fetch(c->scratch_host, result, sizeof(float), c->stream);
    *out = e ? 0.0f : c->scratch_host[0];
    return cuda_fail(g, e, mode == 0 ? "the gradient norm" : "the finite check of the gradients");
}
