/* ops.h — the CUDA side of the engine: the op table the graph dispatches to on a CUDA graph, the graph's
 * device state, and the C-callable runtime helpers (src/cuda/runtime.cu). Only CUDA builds (MAGNA_HAVE_CUDA,
 * real or emulated) compile the files that include it.
 *
 * An op's CUDA pair mirrors its CPU pair in src/ops/: forward writes n->value, backward adds into each
 * in[i]->grad that is not NULL (or, where `assigns` says it can and plan.c made it that gradient's first
 * writer, assigns it: grad_assigns). On a CUDA graph every value/grad/saved pointer and g->workspace is device
 * memory laid out exactly as the CPU plan lays it out; launches go on cuda_stream(g). */
#ifndef MAGNA_CUDA_OPS_H
#define MAGNA_CUDA_OPS_H

#include "graph/internal.h"
#include "runtime.h"

typedef struct magna_cuda_op {
    magna_status (*forward)(magna_graph *g, magna_node *n);
    void (*backward)(magna_graph *g, magna_node *n);
    /* backward honours grad_assigns for every input (the op's CPU backward does: OPF_GRAD_ASSIGN), so the
     * plan need not zero a gradient it writes first; a fused pair's backward (fuse.c) honours it too */
    bool assigns;
} magna_cuda_op;

/* Indexed by op_id; an op without a CUDA implementation has NULL entries and a graph that uses it
 * refuses to compile on CUDA, naming the op. */
extern const magna_cuda_op magna_cuda_op_table[OP_COUNT];

/* The device state of a compiled CUDA graph (src/cuda/graph.c). */
typedef struct cuda_graph {
    void *stream;     /* every launch of this graph's ops */
    void *blas;       /* cuBLASLt handle and workspace (NULL under the emulator: our own GEMM) */
    float *seed_host; /* the loss's seed gradient on its way up (pinned) */
    float *scratch;   /* device: reductions of the optimizer (norm, finite check) */
    float *scratch_host;
    size_t device_bytes; /* everything this graph holds on the device, for reports */
    magna_cuda_op *ops;  /* per node id: the table's entry, or a fused pair's (fuse.c) */
    int fused;           /* pairs fused at compile */
    int device;          /* the CUDA device it runs on (data parallel: one per rank on a machine) */
    struct cuda_profile *profile; /* MAGNA_PROFILE: timing events around every op (graph.c) */
} cuda_graph;

static inline void *cuda_stream(const magna_graph *g) { return g->cuda ? g->cuda->stream : NULL; }
static inline void *cuda_blas(const magna_graph *g) { return g->cuda ? g->cuda->blas : NULL; }

/* err == 0: MAGNA_OK, nothing recorded. Otherwise records "cuda: <what>: <cudaGetErrorString>" as the
 * graph's error and returns MAGNA_ERR_STATE (a failed launch or copy: the device is in trouble, not the
 * caller's data). */
magna_status cuda_fail(magna_graph *g, int err, const char *what);

/* graph.c: the plan's buffers on the device, the step, and keeping host mirrors coherent. */
magna_status cuda_graph_alloc(magna_graph *g);       /* compile: arena, workspace, flat buffers, mirrors */
magna_status cuda_graph_mirrors(magna_graph *g);     /* compile: pinned host copies of inputs and kept nodes */
magna_status cuda_graph_upload_params(magna_graph *g); /* host mirrors of params and states -> device */
void cuda_graph_free(magna_graph *g);
magna_status cuda_graph_forward(magna_graph *g);
magna_status cuda_graph_backward(magna_graph *g, const float *seed_grad);
void cuda_graph_zero_grad(magna_graph *g);
/* Before the device reads params/states (forward, an optimizer step): upload what the host changed. */
magna_status cuda_graph_sync_device(magna_graph *g);
/* Before the host reads params/states: download what the device changed; the caller may then write them. */
magna_status cuda_graph_sync_host(magna_graph *g);
/* The param gradients into the host mirror g->grads. */
magna_status cuda_graph_grads_to_host(magna_graph *g);
/* fuse.c: at compile, neighbours whose forward runs as one kernel (bias + GELU, residual + layer norm): their
 * entries in ops (per node id) are replaced; returns how many pairs. MAGNA_CUDA_NO_FUSE=1 turns it off. */
int cuda_graph_fuse(magna_graph *g, magna_cuda_op *ops);
/* The node whose forward n's fused kernel runs too (n's in[0], an add: bias + GELU, residual + layer norm), or
 * NULL: what cuda_graph_fuse fuses, and what the plan keeps that add's inputs alive for. */
magna_node *cuda_fused_first(const magna_graph *g, const magna_node *n);
/* The matmul whose GEMM writes h, a bias add of its product, bias included (fuse.c), or NULL */
magna_node *cuda_bias_in_gemm(const magna_graph *g, const magna_node *h);
/* Whether h is a plain bias add: a float32 add of [..., N] and a bias [N], neither kept (fuse.c) */
bool cuda_is_bias_add(const magna_node *h);
/* Whether a fused bias + GELU (h the bias add) runs its backward fused too, with the graph's workspace */
bool cuda_bias_gelu_backward_fused(const magna_node *h, size_t workspace_bytes);
/* Before the memory plan of a bf16 graph: which activations are kept in bf16 (stored16; store16.c). Returns
 * how many. */
int cuda_plan_store16(magna_graph *g);
/* Before the memory plan of a bf16 graph: room in the workspace for a matmul's dC in bf16, converted once for
 * both its backward GEMMs (ops_matmul.c) */
void cuda_plan_matmul_workspace(magna_graph *g);
/* Over the flat gradients on the device: mode 0 the sum of squares, 1 the count of non-finite ones. */
magna_status cuda_grads_reduce(magna_graph *g, int mode, float *out);
/* Which ops of a graph have no CUDA implementation: "" when all have one, else a list for the message. */
const char *cuda_missing_ops(const magna_graph *g, char *buf, size_t cap);

#endif
