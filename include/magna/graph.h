/* magna/graph.h — build a static graph, plan its memory once, run forward and backward many times.
 *
 *   magna_graph *g = magna_graph_new(seed);
 *   magna_node *x = magna_input(g, "x", MAGNA_F32, 2, (int64_t[]){32, 13});
 *   magna_node *w = magna_param(g, "w", 2, (int64_t[]){13, 1}, magna_init_xavier_uniform());
 *   magna_node *loss = magna_mse(g, magna_matmul(g, x, w, false, false), y);
 *   if (magna_graph_compile(g, loss) != MAGNA_OK) puts(magna_graph_errmsg(g));
 *   ... fill magna_node_data(x), magna_graph_forward(g), magna_graph_backward(g) ...
 *   magna_graph_free(g);
 *
 * Building only records nodes. A builder that fails (a shape mismatch, a NULL input) returns NULL and
 * keeps the first error in the graph; later builders given NULL return NULL quietly, so a model can be
 * built in one stretch and checked once, at compile. Compile orders the nodes, keeps only what the loss
 * and the kept outputs need, plans one arena for every activation, gradient and saved tensor by their
 * lifetimes, and allocates it. Forward and backward then allocate nothing.
 *
 * Shapes are written outermost-first, as in PyTorch: [batch, features], [batch, channels, h, w]. */
#ifndef MAGNA_GRAPH_H
#define MAGNA_GRAPH_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct magna_graph magna_graph;
typedef struct magna_node magna_node;

typedef enum magna_init_kind {
    MAGNA_INIT_ZEROS = 0,
    MAGNA_INIT_CONSTANT,       /* a */
    MAGNA_INIT_UNIFORM,        /* U(a, b) */
    MAGNA_INIT_NORMAL,         /* N(a, b^2): mean a, std b */
    MAGNA_INIT_XAVIER_UNIFORM, /* Glorot: U(-r, r), r = sqrt(6 / (fan_in + fan_out)) */
    MAGNA_INIT_XAVIER_NORMAL,  /* std = sqrt(2 / (fan_in + fan_out)) */
    MAGNA_INIT_HE_UNIFORM,     /* U(-r, r), r = sqrt(6 / fan_in) */
    MAGNA_INIT_HE_NORMAL,      /* std = sqrt(2 / fan_in) */
    MAGNA_INIT_SINUSOIDAL,     /* [positions, D]: the Transformer's sin/cos position table (Vaswani et al.) */
} magna_init_kind;

/* Fans follow the layouts magna uses: a dense weight is [in, out]; a conv weight is
 * [out_channels, in_channels, kh, kw] (fan_in = in*kh*kw, fan_out = out*kh*kw). */
typedef struct magna_init {
    magna_init_kind kind;
    float a, b;
} magna_init;

static inline magna_init magna_init_zeros(void) { return (magna_init){MAGNA_INIT_ZEROS, 0, 0}; }
static inline magna_init magna_init_constant(float c) { return (magna_init){MAGNA_INIT_CONSTANT, c, 0}; }
static inline magna_init magna_init_uniform(float lo, float hi) { return (magna_init){MAGNA_INIT_UNIFORM, lo, hi}; }
static inline magna_init magna_init_normal(float mean, float std) { return (magna_init){MAGNA_INIT_NORMAL, mean, std}; }
static inline magna_init magna_init_xavier_uniform(void) { return (magna_init){MAGNA_INIT_XAVIER_UNIFORM, 0, 0}; }
static inline magna_init magna_init_xavier_normal(void) { return (magna_init){MAGNA_INIT_XAVIER_NORMAL, 0, 0}; }
static inline magna_init magna_init_he_uniform(void) { return (magna_init){MAGNA_INIT_HE_UNIFORM, 0, 0}; }
static inline magna_init magna_init_he_normal(void) { return (magna_init){MAGNA_INIT_HE_NORMAL, 0, 0}; }
static inline magna_init magna_init_sinusoidal(void) { return (magna_init){MAGNA_INIT_SINUSOIDAL, 0, 0}; }

/* ---- life cycle --------------------------------------------------------------------------------- */

magna_graph *magna_graph_new(uint64_t seed); /* NULL only when out of memory */
void magna_graph_free(magna_graph *g);       /* frees every node, buffer and arena; NULL is fine */

/* The first build error (sticky) or the error of the last failed call, in words. "" when none. */
magna_status magna_graph_status(const magna_graph *g);
const char *magna_graph_errmsg(const magna_graph *g);

/* ---- leaves ------------------------------------------------------------------------------------- */

/* Data fed each step. Dimension 0 is the batch dimension: magna_graph_set_batch may shrink it. */
magna_node *magna_input(magna_graph *g, const char *name, magna_dtype dtype, int ndim, const int64_t *shape);
/* Data whose shape never follows the batch (an attention mask, a constant table). */
magna_node *magna_input_unbatched(magna_graph *g, const char *name, magna_dtype dtype, int ndim,
                                  const int64_t *shape);
/* A trainable parameter: its value lives in the flat parameter buffer, its gradient in the flat
 * gradient buffer at the same offset. */
magna_node *magna_param(magna_graph *g, const char *name, int ndim, const int64_t *shape, magna_init init);
/* The L2 penalty lambda of a param: a model adds lambda/2 ||w||^2 to its loss for each param that has one. */
void magna_param_set_l2(magna_node *param, float lambda);
float magna_param_l2(const magna_node *param);
/* Non-trainable state saved with the model (batch-norm running statistics). */
magna_node *magna_state(magna_graph *g, const char *name, int ndim, const int64_t *shape, magna_init init);

/* ---- compile and run ---------------------------------------------------------------------------- */

/* Keep a node's value readable after forward (an output such as logits). Call before compile. */
void magna_graph_keep(magna_graph *g, magna_node *node);

/* Plans and allocates. `loss` is the node backward differentiates (any shape; a scalar is seeded with
 * 1); NULL compiles for inference only, keeping just the kept nodes. */
magna_status magna_graph_compile(magna_graph *g, magna_node *loss);

/* Run on a smaller batch (dimension 0 of every input) with the same plan; at most the compiled one. */
magna_status magna_graph_set_batch(magna_graph *g, int64_t batch);
int64_t magna_graph_batch(const magna_graph *g);

/* Training mode: dropout drops and batch norm uses (and updates) batch statistics. Default: on. */
void magna_graph_set_training(magna_graph *g, bool training);
bool magna_graph_training(const magna_graph *g);

/* Forward fails (without crashing) on data the graph cannot take, e.g. a class index out of range. */
magna_status magna_graph_forward(magna_graph *g);
/* Adds d(loss)/d(param) into the flat gradient buffer: call magna_graph_zero_grad between updates,
 * or skip it to accumulate gradients over several batches. Runs after a forward at the same thread count
 * (magna_set_threads): otherwise MAGNA_ERR_STATE, since ops pick their kernels by it; an op's failure (oneDNN's)
 * is returned too. */
magna_status magna_graph_backward(magna_graph *g);
/* The same with d(loss)/d(target) given (numel of the loss node floats), for a loss computed outside. */
magna_status magna_graph_backward_seeded(magna_graph *g, const float *seed_grad);
void magna_graph_zero_grad(magna_graph *g);

/* The counter that makes dropout masks; forward in training mode advances it by one. Saved in
 * checkpoints so a resumed run draws the same masks. */
uint64_t magna_graph_rng_step(const magna_graph *g);
void magna_graph_set_rng_step(magna_graph *g, uint64_t step);
uint64_t magna_graph_seed(const magna_graph *g);

/* ---- flat buffers ------------------------------------------------------------------------------- */

float *magna_graph_params(magna_graph *g, size_t *count); /* every trainable value, contiguous */
float *magna_graph_grads(magna_graph *g, size_t *count);  /* same layout as params */
float *magna_graph_states(magna_graph *g, size_t *count); /* non-trainable state */
int magna_graph_param_count(const magna_graph *g);        /* number of param nodes */
magna_node *magna_graph_param_at(magna_graph *g, int index);
int magna_graph_state_count(const magna_graph *g);
magna_node *magna_graph_state_at(magna_graph *g, int index);
size_t magna_graph_arena_bytes(const magna_graph *g); /* planned activation + gradient memory */
size_t magna_graph_unplanned_bytes(const magna_graph *g); /* the same without reuse, for comparison */
int magna_graph_node_count(const magna_graph *g);
/* Copies every param and state of dst from the node of the same name in src (shapes must match): the
 * weights of a trained graph into a graph built for another purpose, e.g. decoding. Both compiled. */
magna_status magna_graph_copy_weights(magna_graph *dst, magna_graph *src);
/* The first node with this name, or NULL. */
magna_node *magna_graph_find(magna_graph *g, const char *name);

/* ---- nodes -------------------------------------------------------------------------------------- */

const char *magna_node_name(const magna_node *n);
const char *magna_node_op_name(const magna_node *n);
magna_dtype magna_node_dtype(const magna_node *n);
int magna_node_ndim(const magna_node *n);
const int64_t *magna_node_shape(const magna_node *n); /* current shape (after set_batch) */
int64_t magna_node_numel(const magna_node *n);
/* Value and gradient storage; NULL before compile or when the plan has none for this node. */
float *magna_node_data(magna_node *n);
int32_t *magna_node_data_i32(magna_node *n);
float *magna_node_grad(magna_node *n);
/* Offset of a param (or state) node in its flat buffer, in elements. */
size_t magna_node_offset(const magna_node *n);
/* Copy `count` elements of the node's dtype in, checking the count against the current shape. */
magna_status magna_node_set(magna_node *n, const void *values, int64_t count);
/* Formats a shape as "[2, 3, 4]" into buf; returns buf. */
char *magna_shape_str(int ndim, const int64_t *shape, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
