/* plan.c — compile: choose what runs, plan one arena for every activation, gradient and saved tensor by
 * lifetime, allocate it once, and initialise the parameters.
 *
 * Time runs over forward and backward as one line of 2N steps for N nodes: node i runs forward at step
 * i and backward at step 2N-1-i. Every tensor is a block alive over an inclusive interval of steps:
 *   value of i:  [i, last forward reader], extended to the backward step of each consumer that reads
 *                its inputs (OPF_BWD_INPUTS), of i itself if it reads its output (OPF_BWD_OUTPUT), and of
 *                every view that aliases it; kept nodes and inputs live to the end.
 *   saved of i:  [i, 2N-1-i] when i is differentiated, else [i, i].
 *   grad of i:   [2N-1-(last consumer that is differentiated), 2N-1-i] — zeroed when it is born.
 * Blocks whose intervals overlap get disjoint bytes; the rest share. Placement is greedy, largest
 * first, lowest offset that fits (the same idea as ggml-alloc and llm.c's single activation block). */
#include "internal.h"
#include "../ops/conv2d.h" /* the conv -> relu -> pool fusion asks the conv */

#ifdef MAGNA_HAVE_CUDA
#include "../cuda/ops.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct block {
    size_t size, offset;
    int start, end;
    magna_node *node;
    int what; /* 0 value, 1 grad, 2 saved */
} block;

/* The node whose gradient block a residual operand's gradient is (grad_via, followed down a chain of adds). */
static const magna_node *grad_owner(const magna_node *n) {
    while (n->grad_via) n = n->grad_via;
    return n;
}

static size_t align_up(size_t n) { return (n + MAGNA_ALIGN - 1) & ~(size_t)(MAGNA_ALIGN - 1); }

static int by_size_desc(const void *a, const void *b) {
    const block *x = a, *y = b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->start - y->start;
}

static int by_offset(const void *a, const void *b) {
    const block *const *x = a, *const *y = b;
    return (*x)->offset < (*y)->offset ? -1 : (*x)->offset > (*y)->offset;
}

/* Places blocks; returns the arena size. O(n^2 log n), fine for thousands of blocks. */
static size_t place_blocks(block *blocks, int n, block **scratch) {
    qsort(blocks, (size_t)n, sizeof *blocks, by_size_desc);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        int m = 0;
        for (int j = 0; j < i; j++)
            if (blocks[j].start <= blocks[i].end && blocks[i].start <= blocks[j].end) scratch[m++] = &blocks[j];
        qsort(scratch, (size_t)m, sizeof *scratch, by_offset);
        size_t offset = 0;
        for (int j = 0; j < m; j++) {
            if (scratch[j]->offset >= offset + blocks[i].size) break; /* fits in the gap before it */
            size_t end = scratch[j]->offset + scratch[j]->size;
            if (end > offset) offset = end;
        }
        blocks[i].offset = offset;
        if (offset + blocks[i].size > total) total = offset + blocks[i].size;
    }
    return total;
}

/* MAGNA_PLAN_REPORT=1: to stderr, the arena's size, the step where the most bytes are alive, and what they are
 * (by op and kind, largest first): where a model's memory goes, before asking for a smaller batch. */
static void plan_report(const magna_graph *g, const block *blocks, int nb, int steps) {
    if (!env_flag("MAGNA_PLAN_REPORT")) return;
    int peak = 0;
    size_t peak_bytes = 0;
    for (int t = 0; t < steps; t++) {
        size_t live = 0;
        for (int b = 0; b < nb; b++) live += blocks[b].start <= t && t <= blocks[b].end ? blocks[b].size : 0;
        if (live > peak_bytes) peak_bytes = live, peak = t;
    }
    fprintf(stderr, "plan: arena %.1f MiB (%.1f MiB without reuse), peak %.1f MiB alive at %s step %d of %d\n",
            g->arena_bytes / 1048576.0, g->unplanned_bytes / 1048576.0, peak_bytes / 1048576.0,
            peak < steps / 2 ? "forward" : "backward", peak < steps / 2 ? peak : steps - 1 - peak, steps / 2);
    static const char *const what[] = {"value", "grad", "saved"};
    size_t sums[OP_COUNT + 1][3] = {{0}};
    int counts[OP_COUNT + 1][3] = {{0}};
    for (int b = 0; b < nb; b++) {
        if (blocks[b].start > peak || peak > blocks[b].end) continue;
        const magna_node *n = blocks[b].node;
        const int op = n->kind == NODE_OP ? (int)n->op : OP_COUNT; /* OP_COUNT: inputs */
        sums[op][blocks[b].what] += blocks[b].size, counts[op][blocks[b].what]++;
    }
    for (;;) { /* largest first, each printed once */
        int bo = -1, bw = 0;
        for (int op = 0; op <= OP_COUNT; op++)
            for (int w = 0; w < 3; w++)
                if (sums[op][w] && (bo < 0 || sums[op][w] > sums[bo][bw])) bo = op, bw = w;
        if (bo < 0) break;
        fprintf(stderr, "plan:   %10.1f MiB  %-16s %-5s x%d\n", sums[bo][bw] / 1048576.0,
                bo == OP_COUNT ? "input" : magna_op_table[bo]->name, what[bw], counts[bo][bw]);
        sums[bo][bw] = 0;
    }
}

/* Fans of a weight in magna's layouts: dense [in, out], conv [out, in, kh, kw]. */
static void fans(const magna_node *n, double *fan_in, double *fan_out) {
    if (n->ndim == 1) {
        *fan_in = *fan_out = (double)n->shape[0];
    } else if (n->ndim == 2) {
        *fan_in = (double)n->shape[0];
        *fan_out = (double)n->shape[1];
    } else {
        double rf = (double)dims_prod(n, 2, n->ndim);
        *fan_in = (double)n->shape[1] * rf;
        *fan_out = (double)n->shape[0] * rf;
    }
}

static void init_values(float *v, const magna_node *n, uint64_t seed, uint64_t stream) {
    double fi, fo;
    fans(n, &fi, &fo);
    const magna_init in = n->init;
    double lo = 0, hi = 0, mean = 0, std = 0;
    bool normal = false;
    switch (in.kind) {
    case MAGNA_INIT_ZEROS: lo = hi = 0; break;
    case MAGNA_INIT_CONSTANT: lo = hi = in.a; break;
    case MAGNA_INIT_UNIFORM: lo = in.a, hi = in.b; break;
    case MAGNA_INIT_NORMAL: normal = true, mean = in.a, std = in.b; break;
    case MAGNA_INIT_XAVIER_UNIFORM: hi = sqrt(6.0 / (fi + fo)), lo = -hi; break;
    case MAGNA_INIT_XAVIER_NORMAL: normal = true, std = sqrt(2.0 / (fi + fo)); break;
    case MAGNA_INIT_HE_UNIFORM: hi = sqrt(6.0 / fi), lo = -hi; break;
    case MAGNA_INIT_HE_NORMAL: normal = true, std = sqrt(2.0 / fi); break;
    case MAGNA_INIT_SINUSOIDAL: { /* PE[p, 2i] = sin(p / 10000^(2i/D)), PE[p, 2i+1] = cos(the same) */
        const int64_t D = n->shape[n->ndim - 1];
        for (int64_t i = 0; i < n->numel; i++) {
            const int64_t p = i / D, d = i % D;
            const double angle = (double)p / pow(10000.0, (double)(d - d % 2) / (double)D);
            v[i] = (float)(d % 2 ? cos(angle) : sin(angle));
        }
        return;
    }
    }
    for (int64_t i = 0; i < n->numel; i++) {
        if (normal)
            v[i] = (float)(mean + std * magna_rand_normal(seed, stream, (uint64_t)i));
        else if (lo == hi)
            v[i] = (float)lo;
        else
            v[i] = (float)(lo + (hi - lo) * magna_rand_uniform(seed, stream, (uint64_t)i));
    }
}

/* The batch dimension: dimension 0 of every batched input, which must agree. */
static magna_status find_batch(magna_graph *g, int64_t *batch) {
    magna_node *first = NULL;
    *batch = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        magna_node *n = g->nodes[i];
        if (n->kind != NODE_INPUT || !n->ip[0] || !n->live) continue;
        if (!first) {
            first = n;
            *batch = n->shape[0];
        } else if (n->shape[0] != *batch) {
            char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
            return graph_error(g, MAGNA_ERR_SHAPE,
                               "compile: inputs '%s' %s and '%s' %s disagree on the batch dimension (dim 0)",
                               first->name, shape_str(first, a, sizeof a), n->name, shape_str(n, b, sizeof b));
        }
    }
    return MAGNA_OK;
}

/* Whether compile rewrites this graph's step (the fusions below, and gradients assigned by their first writer,
 * step 5): on the CPU, unless MAGNA_NO_FUSE is set (to anything but 0), which gives the plain graph to compare
 * against: the same numbers, bit for bit, in float32 (tests/test_graph.c); in bf16 the rewrites that keep more in
 * bf16 (around a GELU or an attention) and sum biases in parts differ by those roundings. */
static bool fusing_allowed(void) { return !env_flag("MAGNA_NO_FUSE"); }

/* some residual operand's gradient is x's (grad_via): x's gradient then needs a buffer that outlives x's value */
static bool shares_its_grad(const magna_graph *g, const magna_node *x) {
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->grad_via == x) return true;
    return false;
}

static bool cpu_rewrites(const magna_graph *g) { return g->device == MAGNA_DEVICE_CPU && fusing_allowed(); }

/* c's backward assigns the gradients it writes first (step 5): an OPF_GRAD_ASSIGN op on the CPU, or on CUDA where
 * its kernels do too (the CUDA table's `assigns`); never under MAGNA_NO_FUSE, which zeroes every one */
static bool backward_assigns(const magna_graph *g, const magna_node *c) {
    if (c->kind != NODE_OP || !(magna_op_table[c->op]->flags & OPF_GRAD_ASSIGN) || !fusing_allowed()) return false;
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA) return g->cuda && g->cuda->ops[c->id].assigns;
#endif
    return g->device == MAGNA_DEVICE_CPU;
}

/* The fusions decided before the kernels are made (cpu_rewrites; each clears what an earlier compile set):
 * - conv2d + ReLU: a conv2d whose one consumer is a ReLU applies it in its forward (oneDNN's post-op, or the
 *   im2col path's bias loop), and the ReLU becomes a view of the conv's output: the pass that read and wrote
 *   the whole activation again goes, and so does its buffer. The ReLU's backward reads that shared output, as
 *   before. Not where the conv's own output is kept (it would read as the ReLU's).
 * - matmul + bias: a one-GEMM matmul whose one consumer adds a bias [N] adds it itself, the add a view of it. */
static void fuse_ops(magna_graph *g) {
    const bool fuse = cpu_rewrites(g);
    for (int i = 0; i < g->n_nodes; i++) {
        magna_node *n = g->nodes[i];
        n->relu_fused = n->alias_input = n->pool_fused = n->skip_backward = false;
        n->fused_conv = n->bias_add = n->grad_via = n->bf16_for = n->a16_from = n->dc16_by = NULL;
        n->out16_to = NULL;
        n->da16_ok = n->value16 = n->grad16 = n->saved16 = false;
    }
    for (int i = 0; i < g->n_nodes && fuse; i++) {
        magna_node *r = g->nodes[i], *c = r->n_in == 1 ? r->in[0] : NULL;
        if (r->kind != NODE_OP || r->op != OP_RELU || !r->live || !c || c->kind != NODE_OP || c->op != OP_CONV2D ||
            c->keep)
            continue;
        if (live_consumers(g, c) == 1) c->relu_fused = r->alias_input = true;
    }
    /* matmul + bias: the dense layer's add of a bias [N] to its product [.., N] */
    for (int i = 0; i < g->n_nodes && fuse; i++) {
        magna_node *a = g->nodes[i], *m = a->n_in == 2 ? a->in[0] : NULL, *bias = m ? a->in[1] : NULL;
        if (a->kind != NODE_OP || a->op != OP_ADD || !a->live || !m || m->kind != NODE_OP || m->op != OP_MATMUL ||
            m->keep || m->ip[0] || m->in[1]->ndim != 2 || bias->ndim != 1 || bias->dtype != MAGNA_F32 ||
            bias->shape[0] != m->shape[m->ndim - 1] || a->numel != m->numel || bias == m || live_consumers(g, m) != 1)
            continue;
        m->bias_add = a;
        a->alias_input = true;
    }
    /* dense matmuls of one input in a bf16 graph: the later ones read the first's bf16 copy of it (a16_from), which
     * lives until the first's backward, the last of theirs (so the first must have one) */
    for (int i = 0; i < g->n_nodes && fuse && g->bf16; i++) {
        magna_node *m = g->nodes[i];
        if (m->kind != NODE_OP || m->op != OP_MATMUL || !m->live || m->ip[0] || m->in[1]->ndim != 2) continue;
        for (int j = 0; j < i; j++) {
            magna_node *p = g->nodes[j];
            if (p->kind == NODE_OP && p->op == OP_MATMUL && p->live && !p->ip[0] && p->in[1]->ndim == 2 &&
                p->in[0] == m->in[0] && p->needs_grad && !p->a16_from) {
                m->a16_from = p;
                break;
            }
        }
    }
    /* a GELU, a layer norm or an attention read only by dense matmuls of one group (the first and those sharing its
     * copy) writes their bf16 input itself (bf16_for: the first), not a float32 output they would read once to convert */
    for (int i = 0; i < g->n_nodes && fuse && g->bf16; i++) {
        magna_node *x = g->nodes[i];
        if (x->kind != NODE_OP || (x->op != OP_GELU && x->op != OP_LAYER_NORM && x->op != OP_ATTENTION) || !x->live ||
            x->keep)
            continue;
        magna_node *owner = NULL;
        bool ok = true;
        for (int j = i + 1; j < g->n_nodes && ok; j++) {
            magna_node *c = g->nodes[j];
            if (!c->live || c->kind != NODE_OP) continue;
            for (int k = 0; k < c->n_in && ok; k++) {
                if (c->in[k] != x) continue;
                if (c->op != OP_MATMUL || k != 0 || c->ip[0] || c->in[1]->ndim != 2 || c->in[1] == x)
                    ok = false;
                else if (!owner)
                    owner = c->a16_from ? NULL : c, ok = owner != NULL;
                else
                    ok = c->a16_from == owner;
            }
        }
        if (ok && owner) x->bf16_for = owner;
    }
    /* bf16 around a GELU or an attention: a dense matmul before it (alone read by it, directly or through its fused
     * bias add) writes its output in bf16 and reads its dC in bf16 from the GELU's or attention's backward; the dense
     * matmul after it (its only reader) writes its gradient in bf16 */
    for (int i = 0; i < g->n_nodes && fuse && g->bf16; i++) {
        magna_node *x = g->nodes[i];
        if (x->kind != NODE_OP || (x->op != OP_GELU && x->op != OP_ATTENTION) || !x->live) continue;
        for (int k = 0; k < (x->op == OP_GELU ? 1 : 3); k++) {
            magna_node *in = x->in[k], *m = in->kind == NODE_OP && in->op == OP_ADD && in->alias_input ? in->in[0] : in;
            bool once = true; /* in is not also another input of x (self-attention of one tensor) */
            for (int j = 0; j < x->n_in; j++) once &= j == k || x->in[j] != in;
            if (once && m->kind == NODE_OP && m->op == OP_MATMUL && !m->ip[0] && m->in[1]->ndim == 2 && !m->keep &&
                !in->keep && m->bias_add == (m == in ? NULL : in) && live_consumers(g, in) == 1) {
                m->out16_to = x;
                if (in->needs_grad) m->dc16_by = x;
            }
        }
        if (x->keep || live_consumers(g, x) != 1) continue;
        for (int j = i + 1; j < g->n_nodes; j++) {
            magna_node *c = g->nodes[j];
            if (c->live && c->kind == NODE_OP && c->op == OP_MATMUL && c->in[0] == x && c->in[1] != x && !c->ip[0] &&
                c->in[1]->ndim == 2)
                c->da16_ok = true;
        }
    }
}

/* After the kernels are made: a max pool (no padding) whose input is a ReLU fused into its conv (fuse_ops), its only consumer, right
 * after it (nothing between them uses the workspace), over a conv whose oneDNN forward stages its output as
 * float32 nChw16c, reads that staged output: the conv no longer reorders its whole output to NCHW for the pool to
 * read it again. The pool's backward writes the conv's gradient itself (dy where its output is above 0, at the
 * argmax), which is what the ReLU's backward would have made of it; the ReLU's then does nothing. */
static void fuse_conv_relu_pool(magna_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        magna_node *p = g->nodes[i], *r = p->n_in == 1 ? p->in[0] : NULL, *c = r && r->n_in ? r->in[0] : NULL;
        if (p->kind != NODE_OP || p->op != OP_MAX_POOL2D || !p->live || !r || !r->alias_input || r->keep ||
            c->id + 1 != r->id || r->id + 1 != p->id || p->ip[4] || p->ip[5] || live_consumers(g, r) != 1 ||
            !magna_conv2d_can_leave_blocked(c))
            continue;
        c->pool_fused = r->skip_backward = true;
        p->fused_conv = c;
    }
}

magna_status magna_graph_compile(magna_graph *g, magna_node *loss) {
    if (!g) return MAGNA_ERR_ARG;
    if (g->build_status != MAGNA_OK) return g->build_status;
    if (g->compiled) return graph_error(g, MAGNA_ERR_STATE, "compile: the graph is already compiled");
    if (loss && loss->g != g) return graph_error(g, MAGNA_ERR_ARG, "compile: the loss node belongs to another graph");
    const int N = g->n_nodes;
    const int END = 2 * N;

    /* 1. What runs: ancestors of the loss and the kept nodes. What is differentiated: nodes that
     *    depend on a param and lead to the loss. */
    if (loss) loss->keep = true;
    bool any_kept = false;
    for (int i = 0; i < N; i++) {
        magna_node *n = g->nodes[i];
        n->live = n->keep;
        n->needs_grad = false;
        any_kept |= n->keep;
    }
    if (!any_kept) return graph_error(g, MAGNA_ERR_STATE, "compile: no loss and no kept node: nothing to compute");
    for (int i = N - 1; i >= 0; i--) {
        magna_node *n = g->nodes[i];
        if (!n->live) continue;
        for (int j = 0; j < n->n_in; j++) n->in[j]->live = true;
    }
    if (loss && loss->requires_grad) loss->needs_grad = true;
    for (int i = N - 1; i >= 0; i--) {
        magna_node *n = g->nodes[i];
        if (!n->needs_grad) continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j]->requires_grad) n->in[j]->needs_grad = true;
    }
    magna_status st = find_batch(g, &g->batch);
    if (st != MAGNA_OK) return st;
    g->compiled_batch = g->batch;
    fuse_ops(g);
    /* A graph given its device or precision after its nodes were built (magna_model_compile does that): the ops
     * size their saved and workspace memory (and make their kernels) again, for how they will run (cross-entropy on CUDA keeps a
     * log-sum-exp a row, not the CPU's softmax: 13 GB less at GPT-2's batch). */
    for (int i = 0; i < N; i++) {
        magna_node *n = g->nodes[i];
        const bool remake = g->device != MAGNA_DEVICE_CPU || g->bf16 || n->relu_fused || n->bias_add; /* fuse_ops */
        if (remake && n->live && n->kind == NODE_OP && (st = magna_op_table[n->op]->infer(g, n)) != MAGNA_OK) return st;
    }
    fuse_conv_relu_pool(g);

    /* 2. Lifetimes. */
    int *vend = malloc((size_t)N * sizeof *vend);      /* last step the value is read */
    int *last_gc = malloc((size_t)N * sizeof *last_gc); /* last differentiated consumer */
    block *blocks = malloc((size_t)(3 * N + 1) * sizeof *blocks);
    block **scratch = malloc((size_t)(3 * N + 1) * sizeof *scratch);
    g->order = malloc((size_t)(N + 1) * sizeof *g->order);
    g->grad_zero = calloc((size_t)N + 1, sizeof *g->grad_zero);
    g->grad_zero_pool = calloc((size_t)(2 * N + 1), sizeof *g->grad_zero_pool);
    if (!vend || !last_gc || !blocks || !scratch || !g->order || !g->grad_zero || !g->grad_zero_pool) {
        free(vend), free(last_gc), free(blocks), free(scratch);
        return graph_error(g, MAGNA_ERR_NOMEM, "compile: out of memory");
    }
    for (int i = 0; i < N; i++) {
        magna_node *n = g->nodes[i];
        vend[i] = n->keep || n->kind == NODE_INPUT ? END : i;
        last_gc[i] = -1;
        if (n->needs_grad && n->kind == NODE_OP && node_bwd_reads_output(n)) vend[i] = END - 1 - i > vend[i] ? END - 1 - i : vend[i];
    }
    for (int j = 0; j < N; j++) {
        magna_node *c = g->nodes[j];
        if (!c->live || c->kind != NODE_OP) continue;
        unsigned flags = magna_op_table[c->op]->flags;
        for (int k = 0; k < c->n_in; k++) {
            int i = c->in[k]->id;
            if (j > vend[i]) vend[i] = j;
            if (c->needs_grad && (flags & OPF_BWD_INPUTS) && END - 1 - j > vend[i]) vend[i] = END - 1 - j;
            if (c->needs_grad && c->in[k]->needs_grad && j > last_gc[i]) last_gc[i] = j;
        }
    }
    /* A fused max pool's backward writes its conv's gradient: that gradient is born there, before the ReLU's. */
    for (int j = 0; j < N; j++) {
        const magna_node *p = g->nodes[j];
        if (p->fused_conv && p->needs_grad && p->fused_conv->needs_grad && j > last_gc[p->fused_conv->id])
            last_gc[p->fused_conv->id] = j;
    }
    /* A residual add's operand shares the add's output gradient (grad_via; both devices): y = x + h with x as large as
     * y, the add the first writer of x's gradient (its last consumer), neither kept: dx = dy exactly, so x's
     * gradient is y's buffer, living on to x's backward, and the copy and one buffer go. One operand an add (two
     * would share one buffer that both go on to accumulate into); operand 0 first, the residual stream. */
    const bool rewrites = fusing_allowed(); /* the device-independent rewrites below (MAGNA_NO_FUSE turns them off) */
    for (int j = 0; j < N && rewrites; j++) {
        magna_node *a = g->nodes[j];
        if (a->kind != NODE_OP || a->op != OP_ADD || !a->live || !a->needs_grad || a->keep || a->alias_input ||
            a == loss || a->in[0] == a->in[1])
            continue;
        for (int k = 0; k < 2; k++) {
            magna_node *x = a->in[k];
            if (x->kind == NODE_OP && x->needs_grad && !x->keep && x->numel == a->numel && x->dtype == MAGNA_F32 &&
                last_gc[x->id] == j && !x->grad_via && !(x->n_in > 0 && x->in[0]->bias_add == x)) {
                x->grad_via = a;
                break;
            }
        }
    }
#ifdef MAGNA_HAVE_CUDA
    /* A CUDA pair fused into one kernel (src/cuda/fuse.c) runs the first node's forward at the second's step:
     * the first's inputs are read there, so they live to it. */
    for (int j = 0; j < N && g->device == MAGNA_DEVICE_CUDA; j++) {
        const magna_node *first = cuda_fused_first(g, g->nodes[j]);
        for (int k = 0; first && k < first->n_in; k++)
            if (vend[first->in[k]->id] < j) vend[first->in[k]->id] = j;
    }
#endif
    /* A loss's logits' gradient in their own buffer (grad_in_value): x feeds only an op that can turn it into its
     * gradient in place (OPF_GRAD_OVER_INPUT), which is then the first and only writer of x's gradient; x's value
     * then lives on to x's own backward, as its gradient would have. Not for a kept x on the CPU, where the
     * caller reads the value itself after the step (the training metrics); on CUDA the caller reads the copy
     * forward downloads, before backward runs. MAGNA_NO_FUSE=1 turns it off, for comparing. */
    g->has_grad_in_value = g->values_spent = false;
    for (int i = 0; i < N; i++) g->nodes[i]->grad_in_value = false;
    for (int j = 0; j < N && rewrites; j++) {
        magna_node *c = g->nodes[j], *x = c->n_in > 0 ? c->in[0] : NULL;
        if (!x || c->kind != NODE_OP || !c->live || !c->needs_grad || !(magna_op_table[c->op]->flags & OPF_GRAD_OVER_INPUT))
            continue;
        if (x->kind == NODE_OP && x->needs_grad && x != loss && (!x->keep || g->device == MAGNA_DEVICE_CUDA) &&
            !node_is_view(x) && !x->grad_via && x->dtype == MAGNA_F32 && last_gc[x->id] == j &&
            live_consumers(g, x) == 1 && !node_bwd_reads_output(x) && !x->bias_add && !shares_its_grad(g, x)) {
            x->grad_in_value = g->has_grad_in_value = true;
            vend[x->id] = END - 1 - x->id;
        }
    }
    for (int i = 0; i < N; i++) g->nodes[i]->stored16 = g->nodes[i]->grad_stored16 = g->nodes[i]->recompute = false;
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA && g->bf16 && rewrites) cuda_plan_store16(g);
    if (g->device == MAGNA_DEVICE_CUDA && g->bf16) cuda_plan_matmul_workspace(g);
    for (int i = 0; i < N; i++) { /* a value computed again in backward lives to its last forward reader */
        if (!g->nodes[i]->recompute) continue;
        vend[i] = i;
        for (int j = i + 1; j < N; j++)
            for (int k = 0; g->nodes[j]->live && k < g->nodes[j]->n_in; k++)
                if (g->nodes[j]->in[k] == g->nodes[i] && j > vend[i]) vend[i] = j;
    }
#endif
    /* A view keeps its source alive as long as itself (reverse order reaches chains of views). */
    for (int i = N - 1; i >= 0; i--) {
        magna_node *n = g->nodes[i];
        if (n->live && node_is_view(n)) {
            int s = n->in[0]->id;
            if (vend[i] > vend[s]) vend[s] = vend[i];
        }
    }

    /* 3. Blocks. */
    int nb = 0, n_order = 0, n_zero = 0;
    size_t workspace = 0;
    g->unplanned_bytes = 0;
    for (int i = 0; i < N; i++) {
        magna_node *n = g->nodes[i];
        if (!n->live) continue;
        n->capacity = n->numel;
        n->saved_capacity = n->saved_bytes;
        if (n->kind == NODE_OP) g->order[n_order++] = n;
        if (n->kind == NODE_PARAM || n->kind == NODE_STATE) continue;
        bool view = node_is_view(n);
        /* inputs are written by the user before forward starts: alive over the whole step */
        int born = n->kind == NODE_INPUT ? 0 : i;
#ifdef MAGNA_HAVE_CUDA
        const magna_node *gemm = g->device == MAGNA_DEVICE_CUDA ? cuda_bias_in_gemm(g, n) : NULL;
        if (gemm) born = gemm->id; /* the GEMM before it writes it (src/cuda/fuse.c) */
#endif
        const size_t elem = n->stored16 ? 2 : magna_dtype_size(n->dtype);
        if (!view) blocks[nb++] = (block){align_up((size_t)n->numel * elem), 0, born, vend[i], n, 0};
        if (n->saved_bytes)
            /* born at its GELU's forward when that writes it (bf16_for) */
            blocks[nb++] = (block){align_up(n->saved_bytes), 0, n->n_in > 0 && n->in[0]->bf16_for == n ? n->in[0]->id : i,
                                   n->needs_grad ? END - 1 - i : i, n, 2};
        if (n->needs_grad) {
            int grad_born = n == loss ? N : END - 1 - last_gc[i];
            /* a bias add fused into its matmul: that matmul's backward, just after this node's, reads this grad */
            int grad_end = n->n_in > 0 && n->in[0]->bias_add == n ? END - 1 - n->in[0]->id : END - 1 - i;
            /* the operands sharing this add's gradient (through a chain of residual adds) keep it until the
             * earliest of them is done: its backward is the last (only an add is shared) */
            for (int k = 0; k < i && n->op == OP_ADD && !n->grad_via; k++) {
                const magna_node *m = g->nodes[k];
                if (m->grad_via && grad_owner(m) == n && END - 1 - k > grad_end) grad_end = END - 1 - k;
            }
            if (!n->grad_via && !n->grad_in_value)
                blocks[nb++] = (block){align_up((size_t)n->numel * grad_elem_bytes(n)), 0, grad_born, grad_end, n, 1};
            n->grad_born_at = n == loss ? -1 : last_gc[i];
        }
        if (n->workspace_bytes > workspace) workspace = n->workspace_bytes;
    }
    g->n_order = n_order;
    for (int b = 0; b < nb; b++) g->unplanned_bytes += blocks[b].size;
    g->arena_bytes = place_blocks(blocks, nb, scratch);
    plan_report(g, blocks, nb, END);

    /* 4. Allocate once; touch every page now so the first step pays no page faults. On CUDA the arena and
     *    workspace are device memory (the same offsets); params, grads and states keep host mirrors. */
    const bool on_cuda = g->device == MAGNA_DEVICE_CUDA;
    g->workspace_bytes = align_up(workspace);
    if (on_cuda) {
#ifdef MAGNA_HAVE_CUDA
        if ((st = cuda_graph_alloc(g)) != MAGNA_OK) {
            free(vend), free(last_gc), free(blocks), free(scratch);
            cuda_graph_free(g);
            return st;
        }
#endif
    } else {
        g->arena = g->arena_bytes ? aligned_alloc(MAGNA_ALIGN, g->arena_bytes) : NULL;
        g->workspace = g->workspace_bytes ? aligned_alloc(MAGNA_ALIGN, g->workspace_bytes) : NULL;
    }
    g->params = aligned_alloc(MAGNA_ALIGN, align_up((g->n_params + 1) * sizeof(float)));
    g->grads = aligned_alloc(MAGNA_ALIGN, align_up((g->n_params + 1) * sizeof(float)));
    g->states = aligned_alloc(MAGNA_ALIGN, align_up((g->n_states + 1) * sizeof(float)));
    if ((g->arena_bytes && !g->arena) || (g->workspace_bytes && !g->workspace) || !g->params || !g->grads ||
        !g->states) {
        free(vend), free(last_gc), free(blocks), free(scratch);
        return graph_error(g, MAGNA_ERR_NOMEM, "compile: out of memory allocating %zu bytes of activations",
                           g->arena_bytes);
    }
    if (g->arena && !on_cuda) memset(g->arena, 0, g->arena_bytes);
    if (g->workspace && !on_cuda) memset(g->workspace, 0, g->workspace_bytes);
    memset(g->params, 0, (g->n_params + 1) * sizeof(float));
    memset(g->grads, 0, (g->n_params + 1) * sizeof(float));
    memset(g->states, 0, (g->n_states + 1) * sizeof(float));
    for (int b = 0; b < nb; b++) {
        char *p = (char *)g->arena + blocks[b].offset;
        if (blocks[b].what == 0) blocks[b].node->value = p;
        else if (blocks[b].what == 1) blocks[b].node->grad = (float *)p;
        else blocks[b].node->saved = p;
    }
    for (int k = 0; k < g->n_param_nodes; k++) {
        magna_node *p = g->param_nodes[k];
        p->value = (on_cuda ? g->dev_params : g->params) + p->offset;
        p->grad = p->needs_grad ? (on_cuda ? g->dev_grads : g->grads) + p->offset : NULL;
        p->host = on_cuda ? g->params + p->offset : NULL;
        init_values(g->params + p->offset, p, g->seed, (uint64_t)k + 1);
    }
    for (int k = 0; k < g->n_state_nodes; k++) {
        magna_node *s = g->state_nodes[k];
        s->value = (on_cuda ? g->dev_states : g->states) + s->offset;
        s->host = on_cuda ? g->states + s->offset : NULL;
        init_values(g->states + s->offset, s, g->seed, (uint64_t)k + 1 + (1ull << 32));
    }
    for (int i = 0; i < N; i++) { /* views point into their (already placed) source */
        magna_node *n = g->nodes[i];
        if (n->live && node_is_view(n)) n->value = n->in[0]->value;
    }
    for (int i = 0; i < N; i++) { /* residual operands share their add's gradient (its owner's, down a chain) */
        magna_node *n = g->nodes[i];
        if (n->grad_via) n->grad = grad_owner(n)->grad;
        if (n->grad_in_value) n->grad = (float *)n->value;
    }

    g->loss = loss; /* before the mirrors: cuda_graph_mirrors sizes the loss's seed buffer */
#ifdef MAGNA_HAVE_CUDA
    g->loss = loss; /* the mirrors size the loss's seed buffer from it */
    if (on_cuda && ((st = cuda_graph_mirrors(g)) != MAGNA_OK || (st = cuda_graph_upload_params(g)) != MAGNA_OK)) {
        free(vend), free(last_gc), free(blocks), free(scratch);
        cuda_graph_free(g);
        return st;
    }
#endif

    /* 5. Which activation grads each backward step must zero first (params accumulate instead). A grad whose
     *    first writer assigns it (backward_assigns, the node one input of it, not two) is not zeroed: zeroing
     *    costs a pass over memory as large as the activations, a fifth of a CNN's step on the CPU, and on CUDA
     *    it is that write plus the accumulating kernel's read (GPT-2 124M on CUDA: 585 MiB a sample, now 3). */
    for (int j = 0; j < N; j++) g->nodes[j]->grad_assign = 0;
    for (int j = 0; j < N; j++) {
        magna_node *c = g->nodes[j];
        g->grad_zero[j] = g->grad_zero_pool + n_zero;
        const bool assigns = backward_assigns(g, c);
        for (int i = 0; i < N; i++) {
            magna_node *n = g->nodes[i];
            if (!(n->needs_grad && n->kind == NODE_OP && n->grad_born_at == j)) continue;
            if (c->fused_conv == n) continue; /* the fused max pool assigns its conv's gradient */
            if (n->grad_via) continue; /* its buffer is the add's gradient, already written: the add skips it */
            if (n->grad_in_value) { /* its value is in that buffer until c's backward overwrites it */
                c->grad_assign |= 1u;
                continue;
            }
            int slot = -1, uses = 0;
            for (int k = 0; k < c->n_in; k++)
                if (c->in[k] == n) slot = k, uses++;
            if (assigns && uses == 1 && slot < (int)(8 * sizeof c->grad_assign))
                c->grad_assign |= 1u << slot;
            else
                g->grad_zero_pool[n_zero++] = n;
        }
        g->grad_zero_pool[n_zero++] = NULL;
        if (n_zero > 2 * N) break; /* cannot happen: each node is listed once, plus N terminators */
    }
    if (env_flag("MAGNA_PLAN_REPORT")) {
        size_t bytes = 0;
        int count = 0;
        for (int z = 0; z < n_zero; z++)
            if (g->grad_zero_pool[z]) bytes += (size_t)g->grad_zero_pool[z]->numel * sizeof(float), count++;
        fprintf(stderr, "plan: zeroed before their first writer each backward: %d activation gradients, %.1f MiB\n",
                count, bytes / 1048576.0);
    }
    free(vend), free(last_gc), free(blocks), free(scratch);
    g->compiled = true;
    graph_profile_start(g);
    return MAGNA_OK;
}

magna_status magna_graph_set_batch(magna_graph *g, int64_t batch) {
    if (!g) return MAGNA_ERR_ARG;
    if (!g->compiled) return graph_state_error(g, "set_batch: compile the graph first");
    if (batch < 1 || batch > g->compiled_batch)
        return graph_error(g, MAGNA_ERR_ARG, "set_batch: batch %lld is outside 1..%lld (the compiled batch)",
                           (long long)batch, (long long)g->compiled_batch);
    if (batch == g->batch) return MAGNA_OK;
    for (int i = 0; i < g->n_nodes; i++) {
        magna_node *n = g->nodes[i];
        if (n->kind == NODE_INPUT && n->ip[0] && n->live) {
            n->shape[0] = batch;
            node_set_shape(n, n->ndim, n->shape);
        }
    }
    for (int k = 0; k < g->n_order; k++) {
        magna_node *n = g->order[k];
        magna_status st = magna_op_table[n->op]->infer(g, n);
        if (st != MAGNA_OK) return st;
        if (n->numel > n->capacity || n->saved_bytes > n->saved_capacity || n->workspace_bytes > g->workspace_bytes) {
            char buf[SHAPE_STR_MAX];
            return graph_error(g, MAGNA_ERR_SHAPE,
                               "set_batch: %s '%s' would need more memory at batch %lld (shape %s) than planned",
                               magna_op_table[n->op]->name, n->name, (long long)batch, shape_str(n, buf, sizeof buf));
        }
    }
    g->batch = batch;
    return MAGNA_OK;
}
