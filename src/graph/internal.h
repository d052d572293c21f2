/* internal.h — the structs behind magna_graph and magna_node, and the op interface.
 * Only the library and its tests include this; users see opaque types. */
#ifndef MAGNA_INTERNAL_H
#define MAGNA_INTERNAL_H

#include "magna.h"
#include "magna/cuda.h"

#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAGNA_MAX_IPARAMS 16
#define MAGNA_MAX_FPARAMS 4
#define MAGNA_ALIGN 64

typedef enum node_kind { NODE_INPUT, NODE_PARAM, NODE_STATE, NODE_OP } node_kind;

/* Every op, in one list: the index into magna_op_table. */
typedef enum op_id {
    OP_NONE = 0, /* leaves: input, param, state */
    OP_MATMUL,
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW,
    OP_SCALE, OP_ADD_SCALAR, OP_POW_SCALAR,
    OP_ABS, OP_RELU, OP_LEAKY_RELU, OP_SIGMOID, OP_TANH, OP_GELU, OP_GELU_TANH, OP_EXP, OP_LOG, OP_SQRT,
    OP_SOFTMAX, OP_LOG_SOFTMAX,
    OP_SUM, OP_MEAN, OP_MAX,
    OP_RESHAPE, OP_PERMUTE, OP_SLICE, OP_CONCAT,
    OP_EMBEDDING, OP_LAYER_NORM, OP_BATCH_NORM, OP_CONV2D, OP_MAX_POOL2D, OP_AVG_POOL2D, OP_DROPOUT,
    OP_ATTENTION,
    OP_MSE, OP_CROSS_ENTROPY, OP_BCE_WITH_LOGITS,
    OP_LSTM, OP_GRU, OP_RNN, /* fused recurrent ops (ops/rnn.c) */
    OP_COUNT
} op_id;

/* How backward uses memory, so the planner can free what it no longer needs. */
enum {
    OPF_BWD_INPUTS = 1u << 0, /* backward reads the input values */
    OPF_BWD_OUTPUT = 1u << 1, /* backward reads this node's output value */
    OPF_VIEW = 1u << 2,       /* the output aliases in[0]'s memory (reshape) */
    /* backward honours n->grad_assign: for each input i whose bit is set it writes every element of
     * in[i]->grad (=) instead of adding into it (+=), so the planner need not zero that gradient first. */
    OPF_GRAD_ASSIGN = 1u << 3,
    /* backward can write in[0]'s gradient over in[0]'s value (each element read before it is written, every
     * element assigned) when grad_assign's bit 0 is set: a loss's logits, whose value nothing reads after its
     * backward (plan.c, grad_in_value). */
    OPF_GRAD_OVER_INPUT = 1u << 4,
};

struct magna_node {
    magna_graph *g;
    int id; /* creation order, which is a topological order: inputs always exist first */
    node_kind kind;
    op_id op;
    magna_dtype dtype;
    int ndim;
    int64_t shape[MAGNA_MAX_DIMS];
    int64_t numel;
    int n_in;
    magna_node **in;
    int64_t ip[MAGNA_MAX_IPARAMS]; /* integer op parameters, meaning per op */
    float fp[MAGNA_MAX_FPARAMS];   /* float op parameters */
    char name[64];

    /* leaves */
    magna_init init;
    size_t offset; /* param/state: element offset in the flat buffer */
    float l2;      /* param: lambda of its lambda/2 ||w||^2 penalty (the model adds it to the loss) */

    /* sizes the op asks for (set by infer, at the current batch) */
    size_t saved_bytes;     /* kept from forward to backward (e.g. batch-norm mean and 1/std) */
    size_t workspace_bytes; /* scratch during this node's forward or backward only */

    /* planning (compile) */
    bool requires_grad; /* depends on a param */
    bool needs_grad;    /* requires_grad and on the path to the loss */
    bool live;          /* computed in forward (needed by the loss or a kept node) */
    bool keep;
    int64_t capacity;   /* numel planned at compile */
    size_t saved_capacity;
    void *value;
    float *grad;
    void *saved;
    void *kernel_state; /* an op's own handles (e.g. oneDNN primitives), freed by its release hook */
    int grad_born_at; /* id of the consumer whose backward first writes this grad (zero it there) */
    /* CPU fusion (plan.c, fuse_conv_relu): a conv2d whose only consumer is a ReLU applies it in its own
     * forward (relu_fused), and that ReLU's value is then the conv's memory and its forward nothing
     * (alias_input, planned as a view). The ReLU's backward runs as before. */
    bool relu_fused, alias_input;
    /* ... and when a max pool is that ReLU's only consumer (fuse_conv_relu_pool): the conv may leave its output
     * in oneDNN's blocked layout for the pool to read (pool_fused); the pool's backward writes the conv's
     * gradient itself, through the ReLU's mask (fused_conv), and the ReLU's backward does nothing
     * (skip_backward). */
    bool pool_fused, skip_backward;
    magna_node *fused_conv;
    /* A matmul (one GEMM: b 2-D, a not transposed) whose only consumer adds a bias [N] adds it itself
     * (bias_add: that add node); the add is then a view of its output (alias_input) whose backward computes the
     * bias's gradient only, and the matmul's backward reads the add's gradient as its own. */
    magna_node *bias_add;
    /* A residual add's operand whose gradient is that add's output gradient (grad_via: the add; plan.c
     * share_residual_grads): the add is its gradient's first writer and would only copy dy into it, so the two
     * share one buffer, and the add's backward skips the copy. */
    magna_node *grad_via;
    /* This node's gradient is written over its value (plan.c): its only consumer is an OPF_GRAD_OVER_INPUT op
     * (a loss), whose backward turns the logits into their gradient in place; a GPT-2 batch's logits are 13 GB,
     * and so would their gradient be beside them. */
    bool grad_in_value;
    /* CUDA mixed precision: this node's value is kept in bf16 (and so is its gradient when grad_in_value), half
     * the bytes, as autocast keeps a matmul's output; decided at compile (src/cuda/store16.c), where its one
     * writer and every reader take bf16. The host mirror of a kept one is float32, widened after the copy. */
    bool stored16;
    /* CUDA mixed precision: this node's gradient is kept in bf16, as autocast's is (store16.c): a fused bias +
     * GELU's bias add, whose gradient the GELU's backward assigns and the matmul before it (its operand, sharing
     * the buffer: grad_via) reads as dC, on both nodes. */
    bool grad_stored16;
    /* CUDA bf16: this GELU's output is not kept for backward: the matmuls that read it compute it again from
     * its (bf16) input into the workspace for their weight gradient (store16.c), as torch.compile does */
    bool recompute;
    /* A GELU, layer norm or attention whose only consumers are dense matmuls of one group (bf16_for: the first;
     * the others read its copy, a16_from) writes its output as bf16 straight into that matmul's saved copy of its
     * input when the matmul runs in bf16 (plan.c fuse_ops): the float32 output would only be read once, to be
     * converted. */
    magna_node *bf16_for;
    /* A dense matmul in a bf16 graph whose input an earlier one also multiplies (q, k and v of one layer norm's
     * output): it reads that one's bf16 copy of it (a16_from) instead of converting its own (plan.c fuse_ops). */
    magna_node *a16_from;
    /* bf16 activations between a dense matmul and a GELU or an attention (plan.c fuse_ops, bf16 graphs; those two
     * read either):
     * - out16_to: the GELU or attention that alone reads this dense matmul's output (or its fused bias add), so its
     *   forward may write it in bf16;
     * - da16_ok: this dense matmul's a is a GELU or attention it alone reads, so its backward may write dA in bf16;
     * - dc16_by: the GELU or attention that alone reads this dense matmul's output (or fused bias add): its backward
     *   may write this matmul's dC in bf16, and the bias's sums. */
    magna_node *out16_to;
    bool da16_ok;
    magna_node *dc16_by;
    /* ... and what the last forward and backward did: value16, this node's value buffer holds bf16 (a matmul's
     * output, its fused bias add reading the same buffer); grad16, its gradient buffer does. Set by the one writer
     * each time it writes, read by the one reader. saved16: its forward kept its saved memory in bf16 (a bf16
     * attention's probabilities), for its backward. */
    bool value16, grad16, saved16;
    unsigned grad_assign; /* bit i: this node's backward is the first writer of in[i]->grad and assigns it
                           * (OPF_GRAD_ASSIGN ops on the CPU, and those whose CUDA backward can on a
                           * CUDA graph; plan.c step 5); else it adds into it */
    /* On a CUDA graph value/grad/saved are device memory; `host` is the copy the caller reads and writes:
     * inputs (uploaded by forward), kept nodes (downloaded after forward), params and states (mirrors in
     * g->params / g->states). NULL on the CPU, where value is the host memory itself. */
    void *host;
    bool skip_fetch; /* CUDA: a kept node forward leaves on the device (outputs no metric reads in training) */
};

/* Whether n's backward is the first writer of in[i]->grad and must assign every element of it rather than
 * add (its op has OPF_GRAD_ASSIGN and the planner skipped zeroing that gradient, plan.c step 5). */
static inline bool grad_assigns(const magna_node *n, int i) { return (n->grad_assign >> i) & 1u; }

/* Whether n's gradient buffer holds bf16 (CUDA mixed precision: the logits' gradient over their bf16 value, or
 * grad_stored16), and the bytes of one of its elements */
static inline bool grad_is16(const magna_node *n) { return (n->stored16 && n->grad_in_value) || n->grad_stored16; }
static inline size_t grad_elem_bytes(const magna_node *n) { return grad_is16(n) ? 2 : sizeof(float); }

struct magna_graph {
    uint64_t seed;
    magna_status build_status; /* first build error: sticky */
    magna_status last_status;
    char errmsg[1024];

    magna_node **nodes;
    int n_nodes, cap_nodes;
    magna_node *loss;
    bool compiled, training;
    int64_t batch, compiled_batch;
    uint64_t rng_step;  /* advanced by each training-mode forward */
    uint64_t mask_step; /* the rng_step the last forward drew its dropout masks with */
    int forward_threads; /* the thread count the last CPU forward ran at (0: none yet), which backward must match */

    /* flat buffers */
    float *params, *grads, *states;
    size_t n_params, n_states;
    magna_node **param_nodes, **state_nodes;
    int n_param_nodes, n_state_nodes, cap_param_nodes, cap_state_nodes;

    /* the planned arena, and one shared workspace */
    void *arena;
    size_t arena_bytes, unplanned_bytes;
    bool has_grad_in_value; /* some node's gradient overwrites its value (grad_in_value): one backward a forward */
    /* CUDA: called after the backward of order[k] (k from n_order - 1 down to 0; also for nodes with no
     * gradient), while the device may still be running it: data parallel starts the allreduce of gradient
     * buckets that are complete (src/dist/dist.c). NULL: none. */
    void (*after_backward)(magna_graph *g, int k, void *user);
    void *after_backward_user;
    bool values_spent;      /* ... and a backward has done so since the last forward */
    void *workspace;
    size_t workspace_bytes;
    magna_node **order;     /* live nodes in forward order */
    int n_order;
    magna_node ***grad_zero; /* per node id: grads to zero before its backward (NULL-terminated) */
    magna_node **grad_zero_pool;
    struct graph_profile *profile; /* MAGNA_PROFILE set at compile: seconds per op kind (run.c) */

    /* the device (include/magna/cuda.h). On CUDA, params/grads/states above are host mirrors of the
     * dev_ buffers; which side is newer is tracked so that reads and writes through the API stay coherent
     * without a copy every step (src/cuda/graph.c). */
    magna_device device;
    bool bf16;                 /* CUDA mixed precision: bf16 matmul operands, float32 everything else */
    struct cuda_graph *cuda;   /* stream, cuBLASLt handle, staging (src/cuda/graph.c) */
    float *dev_params, *dev_grads, *dev_states;
    bool host_newer, device_newer; /* params/states: the host mirror was handed out / the device stepped */
};

/* One op: its name, how backward uses memory, and the three functions.
 * infer:    checks the inputs and sets n->dtype, ndim, shape (and saved/workspace sizes). Runs at build
 *           and again at set_batch; errors name the op and the shapes.
 * forward:  computes n->value from the inputs' values. Returns an error only for bad data.
 * backward: adds d(loss)/d(input) into in[i]->grad for each input whose grad is not NULL, from n->grad.
 * An op that keeps library handles between calls (oneDNN primitives) creates them in infer, which runs
 * at build time and again at set_batch, never inside a step, stores them in n->kernel_state, and frees
 * them in release. */
typedef struct magna_op_def {
    const char *name;
    unsigned flags;
    magna_status (*infer)(magna_graph *g, magna_node *n);
    magna_status (*forward)(magna_graph *g, magna_node *n);
    void (*backward)(magna_graph *g, magna_node *n);
    /* Optional: frees n->kernel_state (called by magna_graph_free when kernel_state is set). */
    void (*release)(magna_node *n);
} magna_op_def;

/* n bf16 values at the start of a buffer of n floats -> those floats, in place (a value kept in bf16, read) */
void widen_bf16_in_place(void *buf, int64_t n);
extern const magna_op_def *const magna_op_table[OP_COUNT];

/* core/core.c: fills a magna_error (when err is not NULL) with the status and the message; returns status.
 * The one way file readers and writers report, so every message is made alike. */
magna_status magna_error_set(magna_error *err, magna_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* io/tensorboard.c: mkdir -p; 0, or an errno with the path that failed copied into `failed`. */
int magna_io_mkdirs(const char *dir, char *failed, size_t cap);

/* run.c: the op profiler (MAGNA_PROFILE=1): made at compile, its table printed to stderr and freed by
 * magna_graph_free. Its rows: one per op kind; that op's forward fused with its input's (a CUDA fused pair);
 * zeroing activation gradients; on CUDA the inputs' upload and the gap between a backward and the next
 * forward (the optimizer's kernels, the host's work between steps). */
enum { PROFILE_FUSED = OP_COUNT, PROFILE_ZERO = 2 * OP_COUNT, PROFILE_INPUTS, PROFILE_BETWEEN, PROFILE_ROWS };
void graph_profile_start(magna_graph *g);
void graph_profile_report_and_free(magna_graph *g);
/* Adds seconds of a row's forward (or backward), the useful work done in them (flops) and calls */
void graph_profile_add(magna_graph *g, int row, bool backward, double seconds, double flops, long calls);
/* n's useful floating-point operations in forward (or backward): products and attention, else 0 */
double graph_profile_flops(const magna_node *n, bool backward);

/* graph.c */
magna_status graph_error(magna_graph *g, magna_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records a node made of `n_in` inputs; runs the op's infer. Returns NULL (error set) on failure. */
magna_node *graph_add_node(magna_graph *g, op_id op, int n_in, magna_node *const *in, const int64_t *ip,
                           int n_ip, const float *fp, int n_fp);
magna_status graph_state_error(magna_graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void node_set_shape(magna_node *n, int ndim, const int64_t *shape);
const char *shape_str(const magna_node *n, char *buf, size_t size); /* "[2, 3]" */
#define SHAPE_STR_MAX 128

/* Whether backward reads the node's own output: its op says so (OPF_BWD_OUTPUT) and a fusion did not take
 * that backward away, or a fused max pool (its mask is where its output is above 0). */
static inline bool node_bwd_reads_output(const magna_node *n) {
    return ((magna_op_table[n->op]->flags & OPF_BWD_OUTPUT) && !n->skip_backward) || n->fused_conv;
}

/* The node's value is in[0]'s memory: a view op (reshape), or a fused ReLU (alias_input). */
static inline bool node_is_view(const magna_node *n) {
    return n->kind == NODE_OP && ((magna_op_table[n->op]->flags & OPF_VIEW) || n->alias_input);
}

/* Reads of n by live nodes (an op reading it twice counts twice): every node after it, as ids are topological */
static inline int live_consumers(const magna_graph *g, const magna_node *n) {
    int count = 0;
    for (int j = n->id + 1; j < g->n_nodes; j++)
        for (int k = 0; g->nodes[j]->live && k < g->nodes[j]->n_in; k++) count += g->nodes[j]->in[k] == n;
    return count;
}

/* An environment switch: set, not empty and not "0" (MAGNA_NO_FUSE=1, MAGNA_PROFILE=1, ...) */
static inline bool env_flag(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

static inline float *fval(const magna_node *n) { return (float *)n->value; }
static inline int32_t *ival(const magna_node *n) { return (int32_t *)n->value; }
/* The host memory of a node a caller reads or writes: value itself on the CPU, the mirror on CUDA. */
static inline void *node_host(const magna_node *n) { return n->host ? n->host : n->value; }
static inline float *host_f32(const magna_node *n) { return (float *)node_host(n); }
static inline int32_t *host_i32(const magna_node *n) { return (int32_t *)node_host(n); }

/* Product of dims [from, to). */
static inline int64_t dims_prod(const magna_node *n, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= n->shape[i];
    return p;
}

/* for (int64_t i = 0; i < n; i++) { body } across the threads when `parallel` (and there is more than
 * one), else on this thread without entering an OpenMP region: libgomp allocates a team for every
 * one-thread region, and a training step must not allocate (tests/test_no_alloc.c). */
#define PARALLEL_FOR(parallel, i, n, ...)                                                                            \
    do {                                                                                                             \
        const int64_t i##_end = (n);                                                                                 \
        if ((parallel) && omp_get_max_threads() > 1) {                                                               \
            _Pragma("omp parallel for schedule(static)") for (int64_t i = 0; i < i##_end; i++) { __VA_ARGS__ }      \
        } else {                                                                                                     \
            for (int64_t i = 0; i < i##_end; i++) { __VA_ARGS__ }                                                    \
        }                                                                                                            \
    } while (0)

#define MAGNA_PRAGMA(x) _Pragma(#x)
/* PARALLEL_FOR whose body adds into `acc` (a local double or int), reduced across threads. */
#define PARALLEL_FOR_REDUCE(cond, op, acc, i, n, ...)                                                            \
    do {                                                                                                             \
        const int64_t i##_end = (n);                                                                                 \
        if ((cond) && omp_get_max_threads() > 1) {                                                                   \
            MAGNA_PRAGMA(omp parallel for schedule(static) reduction(op : acc))                                      \
            for (int64_t i = 0; i < i##_end; i++) { __VA_ARGS__ }                                                    \
        } else {                                                                                                     \
            for (int64_t i = 0; i < i##_end; i++) { __VA_ARGS__ }                                                    \
        }                                                                                                            \
    } while (0)

/* core/runtime.c: BLAS behind one function-pointer table, loaded at run time. */
enum { BLAS_ROW_MAJOR = 101, BLAS_NO_TRANS = 111, BLAS_TRANS = 112 };
typedef void (*sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc);
/* C[m,n] = alpha * op(A) op(B) + beta * C, row-major. Multi-threaded by OpenBLAS outside our parallel
 * regions; single-threaded inside them (OpenBLAS's OpenMP build checks omp_in_parallel). */
void magna_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc);
/* y[i] = exp(x[i]) (y may be x), vectorised; about 1 ulp (core/vecmath.c). _path forces a SIMD level
 * (0 AVX-512, 1 AVX2, 2 scalar; falling back when the CPU lacks it), for tests. */
void magna_vexp(float *y, const float *x, int64_t n);
void magna_vexp_path(int path, float *y, const float *x, int64_t n);
/* The same contract, single-threaded and allocation-free, for small products (src/core/gemm_small.c:
 * register-blocked AVX-512 / AVX2+FMA / C kernels chosen once at run time). magna_sgemm sends it every
 * product of at most 64^3 flops, untransposed ones up to 100^3; it may run inside a parallel region. */
void magna_sgemm_small(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                       int ldb, float beta, float *c, int ldc);
/* Products against a weight packed once (src/core/gemm_panel.c), for AVX-512 CPUs: op(W) [k, n] (W[j * ldw + p]
 * when transposed) packed into panels of 32 columns (magna_panel_b_floats(k, n) floats; `par` packs across the
 * threads), then, as often as needed, C [m, n] (+)= A [m, k] op(W): A packed into ap (magna_panel_a_floats(m, k)
 * floats of scratch, each thread its own copy), then the columns [j0, j1) of C, j0 a multiple of 32
 * (magna_panel_split: thread t's of nt, in whole panels); `accumulate` false overwrites C. The bf16 functions
 * (avx512_bf16) pack the same weight into the same space as bf16 k-pairs and compute with A (alpha times op(A), its
 * transpose when ta) rounded to bf16 and float32 sums; magna_panel_gemm_bf16 packs A and runs all the columns,
 * split across the threads when outside a parallel region and worth it. */
bool magna_panel_available(bool bf16); /* this CPU runs them (AVX-512 F/DQ/BW/VL; and avx512_bf16 for bf16) */
size_t magna_panel_b_floats(int64_t k, int64_t n);
size_t magna_panel_a_floats(int64_t m, int64_t k);
void magna_panel_pack_f32(int k, int n, const float *w, int ldw, bool transposed, float *dst, bool par);
void magna_panel_pack_bf16(int k, int n, const float *w, int ldw, bool transposed, uint16_t *dst, bool par);
void magna_panel_gemm_bf16(int m, int n, int k, const float *a, int lda, bool ta, float alpha, const uint16_t *bp,
                           int bp_k, uint32_t *ap, bool accumulate, float *c, int ldc);
void magna_panel_split(int n, int nt, int t, int *j0, int *j1);
void magna_panel_pack_a_f32(int m, int k, const float *a, int lda, float *ap);
void magna_panel_run_f32(int m, int n, int k, const float *ap, const float *bp, bool accumulate, float *c, int ldc,
                         int j0, int j1);
void magna_panel_pack_a_bf16(int m, int k, const float *a, int lda, bool ta, float alpha, uint32_t *ap);
void magna_panel_run_bf16(int m, int n, int k, const uint32_t *ap, bool ta, const uint16_t *bp, bool accumulate,
                          float *c, int ldc, int j0, int j1);
/* The same from bf16 operands (the bf16 activations ops hand each other: attention's q, k, v and dout, and its
 * saved probabilities), W packed on this thread. The packed operands are the float32 functions' for the same
 * values. */
void magna_panel_pack_bf16_h(int k, int n, const uint16_t *w, int ldw, bool transposed, uint16_t *dst);
void magna_panel_gemm_bf16_h(int m, int n, int k, const uint16_t *a, int lda, bool ta, float alpha, const uint16_t *bp,
                             int bp_k, uint32_t *ap, bool accumulate, float *c, int ldc);
/* bp_k above: the k that bp was packed with (>= k: a product may use its first k rows; bp may also start at an
 * even row of a bigger pack, bp + row / 2 * 64). A bf16 A whose rows already are packed A's pairs can be read in
 * place, with no packing (alpha applied to the sums): when magna_panel_rows_direct says so (k and lda even, a
 * aligned to 4 bytes, alpha 1 if accumulating). */
bool magna_panel_rows_direct(int k, const uint16_t *a, int lda, float alpha, bool accumulate);
/* C = alpha op(A) B with A from float32 a, or bf16 a16 (read in place where magna_panel_rows_direct allows, else
 * packed into ap as magna_panel_gemm_bf16_h packs it); C into float32 c (added to when accumulate), or, when c16 is
 * not NULL, rounded into bf16 c16 (assigning) with colsum[j] += C's column sums (taken before rounding) when colsum
 * is not NULL. Row stride ldc either way. */
void magna_panel_gemm_bf16_any(int m, int n, int k, const float *a, const uint16_t *a16, int lda, bool ta, float alpha,
                               const uint16_t *bp, int bp_k, uint32_t *ap, bool accumulate, float *c, uint16_t *c16,
                               int ldc, float *colsum);

/* The plain triple loop the fast path is tested against. */
void magna_sgemm_reference(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                           const float *b, int ldb, float beta, float *c, int ldc);

#endif
