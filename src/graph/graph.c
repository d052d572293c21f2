/* graph.c — building a graph: nodes, leaves, errors, accessors, and freeing it all with one call.
 * Planning and running live in plan.c and run.c. */
#include "internal.h"

#ifdef MAGNA_HAVE_CUDA
#include "../cuda/ops.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Build errors are sticky: the first one is kept, because later ones are usually its echoes. Errors
 * after compile (bad data in forward, a bad batch size) replace the message each time. */
magna_status graph_error(magna_graph *g, magna_status status, const char *fmt, ...) {
    if (!g->compiled && g->build_status != MAGNA_OK) return status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->errmsg, sizeof g->errmsg, fmt, ap);
    va_end(ap);
    g->last_status = status;
    if (!g->compiled) g->build_status = status;
    return status;
}

/* A call made out of order (forward before compile): reported, but it does not spoil the build. */
magna_status graph_state_error(magna_graph *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->errmsg, sizeof g->errmsg, fmt, ap);
    va_end(ap);
    g->last_status = MAGNA_ERR_STATE;
    return MAGNA_ERR_STATE;
}

char *magna_shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t used = 0;
    if (size == 0) return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf + used, size - used, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

const char *shape_str(const magna_node *n, char *buf, size_t size) {
    return magna_shape_str(n->ndim, n->shape, buf, size);
}

void node_set_shape(magna_node *n, int ndim, const int64_t *shape) {
    n->ndim = ndim;
    n->numel = 1;
    for (int i = 0; i < ndim; i++) {
        n->shape[i] = shape[i];
        n->numel *= shape[i];
    }
}

magna_graph *magna_graph_new(uint64_t seed) {
    magna_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->seed = seed;
    g->training = true;
    magna_error err;
    if (magna_runtime_init(&err) != MAGNA_OK) graph_error(g, err.status, "%s", err.message);
    return g;
}

void magna_graph_free(magna_graph *g) {
    if (!g) return;
#ifdef MAGNA_HAVE_CUDA
    cuda_graph_free(g); /* device memory and host mirrors; leaves NULL where it freed */
#endif
    for (int i = 0; i < g->n_nodes; i++) {
        magna_node *n = g->nodes[i];
        if (n->kernel_state && magna_op_table[n->op]->release) magna_op_table[n->op]->release(n);
        free(n->in);
        free(n);
    }
    free(g->nodes);
    free(g->param_nodes);
    free(g->state_nodes);
    free(g->params);
    free(g->grads);
    free(g->states);
    free(g->arena); /* NULL on CUDA: cuda_graph_free took the device's */
    free(g->workspace);
    free(g->order);
    free(g->grad_zero);
    free(g->grad_zero_pool);
    graph_profile_report_and_free(g);
    free(g);
}

magna_status magna_graph_status(const magna_graph *g) {
    if (!g) return MAGNA_ERR_ARG;
    return g->build_status != MAGNA_OK ? g->build_status : g->last_status;
}

const char *magna_graph_errmsg(const magna_graph *g) { return g ? g->errmsg : "graph is NULL"; }

static magna_status push_node(magna_graph *g, magna_node *n) {
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 64;
        magna_node **nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) return graph_error(g, MAGNA_ERR_NOMEM, "out of memory adding a node");
        g->nodes = nodes;
        g->cap_nodes = cap;
    }
    n->id = g->n_nodes;
    g->nodes[g->n_nodes++] = n;
    return MAGNA_OK;
}

static magna_status push_leaf(magna_graph *g, magna_node ***list, int *count, int *cap, magna_node *n) {
    if (*count == *cap) {
        int c = *cap ? 2 * *cap : 16;
        magna_node **l = realloc(*list, (size_t)c * sizeof *l);
        if (!l) return graph_error(g, MAGNA_ERR_NOMEM, "out of memory adding a parameter");
        *list = l;
        *cap = c;
    }
    (*list)[(*count)++] = n;
    return MAGNA_OK;
}

static bool check_building(magna_graph *g, const char *what) {
    if (!g) return false;
    if (g->compiled) {
        graph_error(g, MAGNA_ERR_STATE, "%s: the graph is already compiled; build every node before compile", what);
        return false;
    }
    return true;
}

static magna_node *new_leaf(magna_graph *g, node_kind kind, const char *name, magna_dtype dtype, int ndim,
                            const int64_t *shape, const char *what) {
    if (!check_building(g, what)) return NULL;
    if (!name) name = "";
    if (ndim < 1 || ndim > MAGNA_MAX_DIMS || !shape) {
        graph_error(g, MAGNA_ERR_SHAPE, "%s '%s': ndim must be 1..%d, got %d", what, name, MAGNA_MAX_DIMS, ndim);
        return NULL;
    }
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0 || numel > INT64_MAX / shape[i] / 8) {
            char buf[SHAPE_STR_MAX];
            graph_error(g, MAGNA_ERR_SHAPE, "%s '%s': every dimension must be positive (and the size sane), got %s",
                        what, name, magna_shape_str(ndim, shape, buf, sizeof buf));
            return NULL;
        }
        numel *= shape[i];
    }
    if (dtype != MAGNA_F32 && dtype != MAGNA_I32) {
        graph_error(g, MAGNA_ERR_UNSUPPORTED, "%s '%s': dtype %s is not supported yet (float32 and int32 are)", what,
                    name, magna_dtype_name(dtype));
        return NULL;
    }
    magna_node *n = calloc(1, sizeof *n);
    if (!n) {
        graph_error(g, MAGNA_ERR_NOMEM, "out of memory");
        return NULL;
    }
    n->g = g;
    n->kind = kind;
    n->op = OP_NONE;
    n->dtype = dtype;
    snprintf(n->name, sizeof n->name, "%s", name);
    node_set_shape(n, ndim, shape);
    if (push_node(g, n) != MAGNA_OK) {
        free(n);
        return NULL;
    }
    return n;
}

magna_node *magna_input(magna_graph *g, const char *name, magna_dtype dtype, int ndim, const int64_t *shape) {
    magna_node *n = new_leaf(g, NODE_INPUT, name, dtype, ndim, shape, "input");
    if (n) n->ip[0] = 1; /* batched: set_batch changes dimension 0 */
    return n;
}

magna_node *magna_input_unbatched(magna_graph *g, const char *name, magna_dtype dtype, int ndim,
                                  const int64_t *shape) {
    return new_leaf(g, NODE_INPUT, name, dtype, ndim, shape, "input");
}

/* Params and states get their place in the flat buffer when made, 16-float aligned (64 bytes) so
 * every tensor starts on a cache line. */
static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }

magna_node *magna_param(magna_graph *g, const char *name, int ndim, const int64_t *shape, magna_init init) {
    magna_node *n = new_leaf(g, NODE_PARAM, name, MAGNA_F32, ndim, shape, "param");
    if (!n) return NULL;
    n->init = init;
    n->requires_grad = true;
    n->offset = g->n_params;
    g->n_params = align16(g->n_params + (size_t)n->numel);
    if (push_leaf(g, &g->param_nodes, &g->n_param_nodes, &g->cap_param_nodes, n) != MAGNA_OK) return NULL;
    return n;
}

void magna_param_set_l2(magna_node *p, float lambda) {
    if (p && p->kind == NODE_PARAM && lambda >= 0) p->l2 = lambda;
}
float magna_param_l2(const magna_node *p) { return p && p->kind == NODE_PARAM ? p->l2 : 0.0f; }

magna_node *magna_state(magna_graph *g, const char *name, int ndim, const int64_t *shape, magna_init init) {
    magna_node *n = new_leaf(g, NODE_STATE, name, MAGNA_F32, ndim, shape, "state");
    if (!n) return NULL;
    n->init = init;
    n->offset = g->n_states;
    g->n_states = align16(g->n_states + (size_t)n->numel);
    if (push_leaf(g, &g->state_nodes, &g->n_state_nodes, &g->cap_state_nodes, n) != MAGNA_OK) return NULL;
    return n;
}

magna_node *graph_add_node(magna_graph *g, op_id op, int n_in, magna_node *const *in, const int64_t *ip,
                           int n_ip, const float *fp, int n_fp) {
    const magna_op_def *def = magna_op_table[op];
    if (!check_building(g, def->name)) return NULL;
    for (int i = 0; i < n_in; i++) {
        if (!in[i]) {
            graph_error(g, MAGNA_ERR_ARG, "%s: input %d is NULL", def->name, i);
            return NULL;
        }
        if (in[i]->g != g) {
            graph_error(g, MAGNA_ERR_ARG, "%s: input %d ('%s') belongs to another graph", def->name, i, in[i]->name);
            return NULL;
        }
    }
    magna_node *n = calloc(1, sizeof *n);
    magna_node **ins = calloc((size_t)(n_in ? n_in : 1), sizeof *ins);
    if (!n || !ins) {
        free(n);
        free(ins);
        graph_error(g, MAGNA_ERR_NOMEM, "%s: out of memory", def->name);
        return NULL;
    }
    n->g = g;
    n->kind = NODE_OP;
    n->op = op;
    n->dtype = MAGNA_F32;
    n->n_in = n_in;
    n->in = ins;
    for (int i = 0; i < n_in; i++) {
        ins[i] = in[i];
        if (in[i]->requires_grad) n->requires_grad = true;
    }
    for (int i = 0; i < n_ip && i < MAGNA_MAX_IPARAMS; i++) n->ip[i] = ip[i];
    for (int i = 0; i < n_fp && i < MAGNA_MAX_FPARAMS; i++) n->fp[i] = fp[i];
    if (def->infer(g, n) != MAGNA_OK) {
        if (n->kernel_state && def->release) def->release(n);
        free(ins);
        free(n);
        return NULL;
    }
    snprintf(n->name, sizeof n->name, "%s_%d", def->name, g->n_nodes);
    if (push_node(g, n) != MAGNA_OK) {
        if (n->kernel_state && def->release) def->release(n);
        free(ins);
        free(n);
        return NULL;
    }
    return n;
}

/* ---- accessors ---------------------------------------------------------------------------------- */

const char *magna_node_name(const magna_node *n) { return n ? n->name : ""; }
const char *magna_node_op_name(const magna_node *n) {
    if (!n) return "";
    if (n->kind == NODE_INPUT) return "input";
    if (n->kind == NODE_PARAM) return "param";
    if (n->kind == NODE_STATE) return "state";
    return magna_op_table[n->op]->name;
}
magna_dtype magna_node_dtype(const magna_node *n) { return n->dtype; }
int magna_node_ndim(const magna_node *n) { return n->ndim; }
const int64_t *magna_node_shape(const magna_node *n) { return n->shape; }
int64_t magna_node_numel(const magna_node *n) { return n->numel; }
/* On CUDA the caller gets the host mirror. A param's or state's mirror is refreshed first and counts as
 * written (it is uploaded before the device next reads it); an input's is uploaded by forward; a kept
 * node's is what the last forward downloaded. */
static void *host_view(magna_node *n) {
#ifdef MAGNA_HAVE_CUDA
    if (n->g->device == MAGNA_DEVICE_CUDA && n->g->compiled && (n->kind == NODE_PARAM || n->kind == NODE_STATE) &&
        cuda_graph_sync_host(n->g) != MAGNA_OK)
        return NULL;
#endif
    return node_host(n);
}
float *magna_node_data(magna_node *n) { return n && n->dtype == MAGNA_F32 ? (float *)host_view(n) : NULL; }
int32_t *magna_node_data_i32(magna_node *n) { return n && n->dtype == MAGNA_I32 ? (int32_t *)host_view(n) : NULL; }
float *magna_node_grad(magna_node *n) {
    if (!n) return NULL;
#ifdef MAGNA_HAVE_CUDA
    if (n->g->device == MAGNA_DEVICE_CUDA && n->g->compiled) { /* a param's, from the host mirror; others: read_grad */
        if (n->kind != NODE_PARAM || !n->grad || cuda_graph_grads_to_host(n->g) != MAGNA_OK) return NULL;
        return n->g->grads + n->offset;
    }
#endif
    return n->grad;
}

/* bytes of a node's value or gradient (src, in its graph's memory) into the caller's dst */
static magna_status copy_out(magna_graph *g, void *dst, const void *src, size_t bytes, const char *what) {
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA) return cuda_fail(g, cuda_fetch(dst, src, bytes, cuda_stream(g)), what);
#endif
    (void)g, (void)what;
    memcpy(dst, src, bytes);
    return MAGNA_OK;
}

void widen_bf16_in_place(void *buf, int64_t n) {
    unsigned char *p = buf; /* bytes through memcpy: the two views of the buffer may not alias as types */
    for (int64_t i = n - 1; i >= 0; i--) {
        uint16_t h;
        memcpy(&h, p + 2 * i, sizeof h);
        const uint32_t u = (uint32_t)h << 16;
        memcpy(p + 4 * i, &u, sizeof u);
    }
}

/* a value or gradient kept in bf16 (stored16) comes out float32 */
static magna_status copy_out_f32(magna_node *n, void *dst, const void *src, bool is16, const char *what) {
    const size_t elem = is16 ? 2 : magna_dtype_size(n->dtype);
    magna_status st = copy_out(n->g, dst, src, (size_t)n->numel * elem, what);
    if (st == MAGNA_OK && is16) widen_bf16_in_place(dst, n->numel);
    return st;
}

magna_status magna_node_read(magna_node *n, void *dst) {
    if (!n || !dst) return MAGNA_ERR_ARG;
    if (!n->value) return graph_state_error(n->g, "read '%s': no value (compile first, and keep the node)", n->name);
    if (n->grad_in_value && n->g->values_spent)
        return graph_state_error(n->g, "read '%s': backward wrote its gradient over it (run forward again; the copy "
                                       "forward fetched is magna_node_data's)", n->name);
    return copy_out_f32(n, dst, n->value, n->stored16, "reading a value");
}

magna_status magna_node_read_grad(magna_node *n, float *dst) {
    if (!n || !dst) return MAGNA_ERR_ARG;
    if (!n->grad) return graph_state_error(n->g, "read_grad '%s': no gradient (it is not on the path to the loss)", n->name);
    return copy_out_f32(n, dst, n->grad, grad_is16(n), "reading a gradient");
}

magna_status magna_graph_set_device(magna_graph *g, magna_device device) {
    if (!g) return MAGNA_ERR_ARG;
    if (g->compiled) return graph_state_error(g, "set_device: choose the device before compile");
    magna_error err;
    if (magna_device_check(device, &err) != MAGNA_OK) return graph_error(g, err.status, "%s", err.message);
    g->device = device;
    return MAGNA_OK;
}
magna_device magna_graph_device(const magna_graph *g) { return g ? g->device : MAGNA_DEVICE_CPU; }

magna_status magna_graph_set_bf16(magna_graph *g, bool on) {
    if (!g) return MAGNA_ERR_ARG;
    if (g->compiled) return graph_state_error(g, "set_bf16: choose the precision before compile");
    g->bf16 = on;
    return MAGNA_OK;
}
bool magna_graph_bf16(const magna_graph *g) { return g && g->bf16; }
size_t magna_node_offset(const magna_node *n) { return n->offset; }

magna_status magna_node_set(magna_node *n, const void *values, int64_t count) {
    if (!n || !values) return MAGNA_ERR_ARG;
    magna_graph *g = n->g;
    if (!n->value)
        return graph_state_error(g, "set '%s': no storage yet (compile first, and keep the node)",
                           n->name);
    if (count != n->numel) {
        char buf[SHAPE_STR_MAX];
        return graph_error(g, MAGNA_ERR_SHAPE, "set '%s': got %lld values for shape %s (%lld values)", n->name,
                           (long long)count, shape_str(n, buf, sizeof buf), (long long)n->numel);
    }
    void *dst = host_view(n);
    if (!dst) return g->last_status;
    memcpy(dst, values, (size_t)count * magna_dtype_size(n->dtype));
    return MAGNA_OK;
}

int magna_graph_node_count(const magna_graph *g) { return g->n_nodes; }
magna_node *magna_graph_find(magna_graph *g, const char *name) {
    for (int i = 0; g && name && i < g->n_nodes; i++)
        if (strcmp(g->nodes[i]->name, name) == 0) return g->nodes[i];
    return NULL;
}

magna_status magna_graph_copy_weights(magna_graph *dst, magna_graph *src) {
    if (!dst || !src) return MAGNA_ERR_ARG;
    if (!dst->compiled || !src->compiled)
        return graph_state_error(dst, "copy_weights: compile both graphs first");
    for (int i = 0; i < dst->n_nodes; i++) {
        magna_node *d = dst->nodes[i];
        if ((d->kind != NODE_PARAM && d->kind != NODE_STATE) || !d->value) continue;
        magna_node *s = magna_graph_find(src, d->name);
        if (!s || s->kind != d->kind)
            return graph_error(dst, MAGNA_ERR_ARG, "copy_weights: the source graph has no %s '%s'",
                               d->kind == NODE_PARAM ? "param" : "state", d->name);
        bool same = s->ndim == d->ndim;
        for (int k = 0; same && k < d->ndim; k++) same = s->shape[k] == d->shape[k];
        if (!same || !s->value) {
            char a[SHAPE_STR_MAX], b[SHAPE_STR_MAX];
            return graph_error(dst, MAGNA_ERR_SHAPE, "copy_weights: '%s' is %s here and %s in the source", d->name,
                               shape_str(d, a, sizeof a), shape_str(s, b, sizeof b));
        }
        void *to = host_view(d), *from = host_view(s);
        if (!to || !from) return graph_state_error(dst, "copy_weights: %s", to ? src->errmsg : dst->errmsg);
        memcpy(to, from, (size_t)d->numel * magna_dtype_size(d->dtype));
    }
    return MAGNA_OK;
}

/* On CUDA: the host mirrors, refreshed; params and states count as written (see host_view). */
float *magna_graph_params(magna_graph *g, size_t *count) {
    if (count) *count = g->n_params;
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA && g->compiled && cuda_graph_sync_host(g) != MAGNA_OK) return NULL;
#endif
    return g->params;
}
float *magna_graph_grads(magna_graph *g, size_t *count) {
    if (count) *count = g->n_params;
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA && g->compiled && cuda_graph_grads_to_host(g) != MAGNA_OK) return NULL;
#endif
    return g->grads;
}
float *magna_graph_states(magna_graph *g, size_t *count) {
    if (count) *count = g->n_states;
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA && g->compiled && cuda_graph_sync_host(g) != MAGNA_OK) return NULL;
#endif
    return g->states;
}
int magna_graph_param_count(const magna_graph *g) { return g->n_param_nodes; }
magna_node *magna_graph_param_at(magna_graph *g, int i) {
    return i >= 0 && i < g->n_param_nodes ? g->param_nodes[i] : NULL;
}
int magna_graph_state_count(const magna_graph *g) { return g->n_state_nodes; }
magna_node *magna_graph_state_at(magna_graph *g, int i) {
    return i >= 0 && i < g->n_state_nodes ? g->state_nodes[i] : NULL;
}
size_t magna_graph_arena_bytes(const magna_graph *g) { return g->arena_bytes; }
size_t magna_graph_unplanned_bytes(const magna_graph *g) { return g->unplanned_bytes; }

void magna_graph_set_training(magna_graph *g, bool training) { g->training = training; }
bool magna_graph_training(const magna_graph *g) { return g->training; }
uint64_t magna_graph_rng_step(const magna_graph *g) { return g->rng_step; }
void magna_graph_set_rng_step(magna_graph *g, uint64_t step) { g->rng_step = step; }
uint64_t magna_graph_seed(const magna_graph *g) { return g->seed; }
int64_t magna_graph_batch(const magna_graph *g) { return g->batch; }

void magna_graph_keep(magna_graph *g, magna_node *n) {
    if (!g || !n) return;
    if (!check_building(g, "keep")) return;
    n->keep = true;
}
