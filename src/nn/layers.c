/* layers.c — Keras's layers as functions over the graph. Each creates its params by name and composes
 * engine ops, so every backward is the engine's and already gradient-checked. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *magna_activation_name(magna_activation act) {
    static const char *names[] = {"linear", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax"};
    return (unsigned)act < sizeof names / sizeof *names ? names[act] : "unknown";
}

magna_node *magna_layer_activation(magna_graph *g, magna_node *x, magna_activation act, float slope) {
    switch (act) {
    case MAGNA_ACT_NONE: return x;
    case MAGNA_ACT_RELU: return magna_relu(g, x);
    case MAGNA_ACT_LEAKY_RELU: return magna_leaky_relu(g, x, slope > 0 ? slope : 0.01f);
    case MAGNA_ACT_SIGMOID: return magna_sigmoid(g, x);
    case MAGNA_ACT_TANH: return magna_tanh(g, x);
    case MAGNA_ACT_GELU: return magna_gelu(g, x);
    case MAGNA_ACT_SOFTMAX: return magna_softmax(g, x);
    }
    if (g) graph_error(g, MAGNA_ERR_ARG, "activation: unknown activation %d", (int)act);
    return NULL;
}

static bool is_zero_init(magna_init i) { return i.kind == MAGNA_INIT_ZEROS && i.a == 0 && i.b == 0; }

magna_node *nn_param(magna_graph *g, const char *layer, const char *what, int ndim, const int64_t *shape,
                     magna_init init, float l2) {
    char name[64];
    snprintf(name, sizeof name, "%s.%s", layer, what);
    magna_node *p = magna_param(g, name, ndim, shape, init);
    if (p && l2 > 0) magna_param_set_l2(p, l2);
    return p;
}

bool nn_check_input(magna_graph *g, const char *layer, magna_node *x, int min_ndim, int max_ndim) {
    if (!g || !x) return false; /* the graph keeps the first error */
    if (x->ndim < min_ndim || x->ndim > max_ndim) {
        char buf[SHAPE_STR_MAX];
        graph_error(g, MAGNA_ERR_SHAPE, "%s: input %s needs %d to %d dims", layer, shape_str(x, buf, sizeof buf),
                    min_ndim, max_ndim);
        return false;
    }
    return true;
}

magna_node *magna_layer_dense(magna_graph *g, const char *name, magna_node *x, int64_t units, magna_dense_opts o) {
    if (!nn_check_input(g, name, x, 1, MAGNA_MAX_DIMS)) return NULL;
    if (units < 1) {
        graph_error(g, MAGNA_ERR_ARG, "%s: dense needs at least 1 unit, got %lld", name, (long long)units);
        return NULL;
    }
    const int64_t in = x->shape[x->ndim - 1];
    const float torch_bound = 1.0f / sqrtf((float)in);
    magna_init kinit = o.kernel_init;
    if (is_zero_init(kinit))
        kinit = o.init == MAGNA_INIT_TORCH          ? magna_init_uniform(-torch_bound, torch_bound)
                : o.activation == MAGNA_ACT_RELU ? magna_init_he_uniform()
                                                 : magna_init_xavier_uniform();
    if (is_zero_init(o.bias_init) && o.init == MAGNA_INIT_TORCH) o.bias_init = magna_init_uniform(-torch_bound, torch_bound);
    magna_node *w = nn_param(g, name, "weight", 2, (int64_t[]){in, units}, kinit, o.l2);
    magna_node *h = x->ndim == 1 ? magna_matmul(g, magna_reshape(g, x, 2, (int64_t[]){1, in}), w, false, false)
                                 : magna_matmul(g, x, w, false, false);
    if (x->ndim == 1) h = magna_reshape(g, h, 1, (int64_t[]){units});
    if (!o.no_bias) h = magna_add(g, h, nn_param(g, name, "bias", 1, (int64_t[]){units}, o.bias_init, 0));
    return magna_layer_activation(g, h, o.activation, 0);
}

magna_node *magna_layer_conv2d(magna_graph *g, const char *name, magna_node *x, int64_t filters,
                               magna_conv2d_layer_opts o) {
    if (!nn_check_input(g, name, x, 4, 4)) return NULL;
    const int k = o.kernel, stride = o.stride ? o.stride : 1, dil = o.dilation ? o.dilation : 1;
    if (k < 1 || filters < 1 || stride < 1 || dil < 1) {
        graph_error(g, MAGNA_ERR_ARG, "%s: conv2d needs kernel, filters, stride and dilation >= 1 (got %d, %lld, %d, %d)",
                    name, k, (long long)filters, stride, dil);
        return NULL;
    }
    /* "same": pad so the output is ceil(in / stride), split as evenly as symmetric padding allows */
    const int pad = o.same ? (dil * (k - 1)) / 2 : 0;
    if (o.same && (dil * (k - 1)) % 2 != 0) {
        graph_error(g, MAGNA_ERR_UNSUPPORTED, "%s: 'same' padding needs an odd effective kernel, got %d", name,
                    dil * (k - 1) + 1);
        return NULL;
    }
    const bool torch = o.init == MAGNA_INIT_TORCH;
    const float bound = 1.0f / sqrtf((float)(x->shape[1] * k * k));
    magna_node *w = nn_param(g, name, "weight", 4, (int64_t[]){filters, x->shape[1], k, k},
                             torch ? magna_init_uniform(-bound, bound) : magna_init_he_normal(), o.l2);
    magna_node *b = o.no_bias ? NULL
                              : nn_param(g, name, "bias", 1, (int64_t[]){filters},
                                         torch ? magna_init_uniform(-bound, bound) : magna_init_zeros(), 0);
    magna_node *h = magna_conv2d(g, x, w, b,
                                 (magna_conv2d_opts){.stride_h = stride, .stride_w = stride, .pad_h = pad, .pad_w = pad,
                                                     .dilation_h = dil, .dilation_w = dil});
    return magna_layer_activation(g, h, o.activation, 0);
}

magna_node *magna_layer_batch_norm(magna_graph *g, const char *name, magna_node *x, float momentum, float eps) {
    if (!nn_check_input(g, name, x, 2, 4)) return NULL;
    const int64_t c[1] = {x->shape[1]};
    char rm[64], rv[64];
    snprintf(rm, sizeof rm, "%s.running_mean", name), snprintf(rv, sizeof rv, "%s.running_var", name);
    return magna_batch_norm(g, x, nn_param(g, name, "weight", 1, c, magna_init_constant(1), 0),
                            nn_param(g, name, "bias", 1, c, magna_init_zeros(), 0),
                            magna_state(g, rm, 1, c, magna_init_zeros()),
                            magna_state(g, rv, 1, c, magna_init_constant(1)), momentum > 0 ? momentum : 0.1f,
                            eps > 0 ? eps : 1e-5f);
}

magna_node *magna_layer_layer_norm(magna_graph *g, const char *name, magna_node *x, float eps) {
    if (!nn_check_input(g, name, x, 1, MAGNA_MAX_DIMS)) return NULL;
    const int64_t d[1] = {x->shape[x->ndim - 1]};
    return magna_layer_norm(g, x, nn_param(g, name, "weight", 1, d, magna_init_constant(1), 0),
                            nn_param(g, name, "bias", 1, d, magna_init_zeros(), 0), eps > 0 ? eps : 1e-5f);
}

magna_node *magna_layer_global_avg_pool2d(magna_graph *g, magna_node *x) {
    if (!nn_check_input(g, "global_avg_pool2d", x, 4, 4)) return NULL;
    return magna_mean(g, x, 0xC, false);
}

magna_node *magna_layer_embedding(magna_graph *g, const char *name, magna_node *ids, int64_t vocab, int64_t dim) {
    if (!nn_check_input(g, name, ids, 1, MAGNA_MAX_DIMS - 1)) return NULL;
    return magna_embedding(g, nn_param(g, name, "weight", 2, (int64_t[]){vocab, dim}, magna_init_normal(0, 1), 0),
                           ids);
}

const char *magna_layer_kind_name(magna_layer_kind kind) {
    static const char *names[] = {"?",           "dense",      "activation", "dropout",    "conv2d",   "max_pool2d",
                                  "avg_pool2d",  "global_avg_pool2d", "flatten", "batch_norm", "layer_norm",
                                  "embedding", "lstm", "gru", "rnn"};
    return (unsigned)kind < sizeof names / sizeof *names ? names[kind] : "?";
}

magna_node *magna_layers_apply(magna_graph *g, magna_node *x, const magna_layer_spec *layers, int count) {
    int seen[16] = {0}; /* per kind, for default names: dense1, dense2, ... */
    for (int i = 0; i < count && x; i++) {
        const magna_layer_spec *l = &layers[i];
        char auto_name[48];
        if ((unsigned)l->kind >= 16 || l->kind < MAGNA_LAYER_DENSE) {
            graph_error(g, MAGNA_ERR_ARG, "layer %d: unknown layer kind %d", i, (int)l->kind);
            return NULL;
        }
        snprintf(auto_name, sizeof auto_name, "%s%d", magna_layer_kind_name(l->kind), ++seen[l->kind]);
        const char *name = l->name ? l->name : auto_name;
        magna_pool2d_opts pool = {.kernel_h = l->kernel ? l->kernel : 2, .kernel_w = l->kernel ? l->kernel : 2,
                                  .stride_h = l->stride, .stride_w = l->stride};
        switch (l->kind) {
        case MAGNA_LAYER_DENSE:
            x = magna_layer_dense(g, name, x, l->units,
                                  (magna_dense_opts){.activation = l->activation, .l2 = l->l2, .init = l->init});
            break;
        case MAGNA_LAYER_ACTIVATION: x = magna_layer_activation(g, x, l->activation, l->rate); break;
        case MAGNA_LAYER_DROPOUT: x = magna_dropout(g, x, l->rate); break;
        case MAGNA_LAYER_CONV2D:
            x = magna_layer_conv2d(g, name, x, l->units,
                                   (magna_conv2d_layer_opts){.kernel = l->kernel, .stride = l->stride, .same = l->same,
                                                             .activation = l->activation, .l2 = l->l2,
                                                             .init = l->init});
            break;
        case MAGNA_LAYER_MAX_POOL2D: x = magna_max_pool2d(g, x, pool); break;
        case MAGNA_LAYER_AVG_POOL2D: x = magna_avg_pool2d(g, x, pool); break;
        case MAGNA_LAYER_GLOBAL_AVG_POOL2D: x = magna_layer_global_avg_pool2d(g, x); break;
        case MAGNA_LAYER_FLATTEN: x = magna_flatten(g, x); break;
        case MAGNA_LAYER_BATCH_NORM: x = magna_layer_batch_norm(g, name, x, 0.1f, 1e-5f); break;
        case MAGNA_LAYER_LAYER_NORM: x = magna_layer_layer_norm(g, name, x, 1e-5f); break;
        case MAGNA_LAYER_EMBEDDING: x = magna_layer_embedding(g, name, x, l->vocab, l->units); break;
        case MAGNA_LAYER_LSTM:
        case MAGNA_LAYER_GRU:
        case MAGNA_LAYER_RNN: {
            magna_node *(*layer)(magna_graph *, const char *, magna_node *, int64_t, magna_recurrent_opts) =
                l->kind == MAGNA_LAYER_LSTM ? magna_layer_lstm : l->kind == MAGNA_LAYER_GRU ? magna_layer_gru
                                                                                            : magna_layer_rnn;
            x = layer(g, name, x, l->units, (magna_recurrent_opts){.return_last = l->return_last});
            break;
        }
        }
    }
    return x;
}
