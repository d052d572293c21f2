/* test_layer_gradcheck.c — gradients through the model API: small CNN and transformer-style models built
 * from layer specs and layer functions, compiled with their loss, every parameter's gradient checked
 * against central finite differences of the model's own loss (float64 sums of float32 forwards). The ops
 * are checked one by one in test_gradcheck; this checks that the layers wire them correctly. */
#include "check.h"
#include "graph/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

/* Checks up to `per_param` elements of every param of a compiled model's graph; returns the failures. */
static int check_model(const char *name, magna_model *m, int per_param, double h, double atol, double rtol) {
    magna_graph *g = magna_model_graph(m);
    size_t n;
    magna_graph_grads(g, &n);
    float *analytic = malloc(n * sizeof *analytic);
    magna_graph_set_rng_step(g, 3);
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK, "%s: %s", name, magna_graph_errmsg(g));
    magna_graph_backward(g);
    memcpy(analytic, magna_graph_grads(g, NULL), n * sizeof *analytic);
    int failures = 0, checked = 0;
    double worst = 0;
    for (int k = 0; k < g->n_param_nodes; k++) {
        magna_node *p = g->param_nodes[k];
        for (int t = 0; t < per_param && t < p->numel; t++) {
            const int64_t e = p->numel <= per_param ? t : (int64_t)(magna_rand_u64(5, (uint64_t)k, (uint64_t)t) %
                                                                     (uint64_t)p->numel);
            float *v = fval(p) + e, orig = *v;
            double l[2];
            for (int s = 0; s < 2; s++) {
                *v = (float)(orig + (s ? -h : h));
                magna_graph_set_rng_step(g, 3);
                magna_graph_forward(g);
                l[s] = fval(g->loss)[0];
            }
            *v = orig;
            const double num = (l[0] - l[1]) / ((double)(float)(orig + h) - (double)(float)(orig - h));
            const double ana = analytic[p->offset + e], err = fabs(ana - num);
            worst = fmax(worst, err);
            checked++;
            if (err > atol + rtol * fabs(num)) {
                if (failures++ < 4)
                    printf("  %s: %s[%lld]: analytic %.6g numeric %.6g\n", name, p->name, (long long)e, ana, num);
            }
        }
    }
    printf("layer gradcheck %-28s params=%d checked=%d max_abs_err=%.2e %s\n", name, g->n_param_nodes, checked,
           worst, failures ? "FAILED" : "ok");
    CHECK(failures == 0, "%s: %d gradients off", name, failures);
    free(analytic);
    return failures;
}

static void fill(magna_model *m, uint64_t seed, int classes) {
    magna_graph *g = magna_model_graph(m);
    for (int i = 0; i < g->n_nodes; i++) {
        magna_node *x = g->nodes[i];
        if (x->kind != NODE_INPUT || !x->value || strcmp(x->name, "class_weights") == 0) continue;
        for (int64_t j = 0; j < x->numel; j++) {
            if (x->dtype == MAGNA_I32)
                ival(x)[j] = (int32_t)(magna_rand_u64(seed, (uint64_t)i, (uint64_t)j) % (uint64_t)classes);
            else
                fval(x)[j] = 2 * magna_rand_uniform(seed, (uint64_t)i, (uint64_t)j) - 1;
        }
    }
}

int main(void) {
    { /* a CNN of layer specs: conv, pooling, batch norm, dropout, dense */
        magna_model *m = magna_model_new(21, 3);
        magna_model_input(m, "x", MAGNA_F32, 3, SHAPE(2, 8, 8));
        magna_layer_spec cnn[] = {MAGNA_CONV2D(4, 3, MAGNA_ACT_TANH), MAGNA_MAX_POOL2D(2), MAGNA_BATCH_NORM(),
                                  MAGNA_CONV2D(3, 3, MAGNA_ACT_GELU), MAGNA_AVG_POOL2D(2), MAGNA_DROPOUT(0.25f),
                                  MAGNA_FLATTEN(), MAGNA_DENSE(5, MAGNA_ACT_SIGMOID), MAGNA_DENSE(3, 0)};
        magna_model_sequential(m, cnn, (int)(sizeof cnn / sizeof *cnn));
        CHECK(magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE, .l2 = 0.01f,
                                                           .optimizer = {.kind = MAGNA_SGD}}) == MAGNA_OK,
              "%s", magna_model_errmsg(m));
        fill(m, 1, 3);
        /* a small step: a first-layer weight moves every pixel, and a step of 1e-2 can swap which one a
         * max-pool window picks (a kink, not a wrong gradient); 1e-3 stays on one side of it */
        check_model("cnn (conv, pool, bn, l2)", m, 24, 1e-3, 1e-3, 2e-2);
        magna_model_free(m);
    }
    { /* global average pooling and a regression head with MAE */
        magna_model *m = magna_model_new(22, 2);
        magna_model_input(m, "x", MAGNA_F32, 3, SHAPE(3, 5, 5));
        magna_layer_spec net[] = {MAGNA_CONV2D(4, 3, MAGNA_ACT_TANH), MAGNA_GLOBAL_AVG_POOL2D(), MAGNA_DENSE(2, 0)};
        magna_model_sequential(m, net, 3);
        CHECK(magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_MSE, .optimizer = {.kind = MAGNA_SGD}}) ==
                  MAGNA_OK,
              "%s", magna_model_errmsg(m));
        fill(m, 2, 1);
        check_model("conv + global avg pool, mse", m, 24, 1e-2, 1e-3, 2e-2);
        magna_model_free(m);
    }
    { /* a transformer block from layer functions: embedding, layer norm, attention, residuals */
        enum { B = 2, T = 5, C = 8, V = 7 };
        magna_model *m = magna_model_new(23, B);
        magna_graph *g = magna_model_graph(m);
        magna_node *ids = magna_model_input(m, "ids", MAGNA_I32, 1, SHAPE(T));
        magna_node *h = magna_layer_embedding(g, "emb", ids, V, C);
        magna_node *n1 = magna_layer_layer_norm(g, "ln1", h, 1e-5f);
        magna_node *qkv = magna_layer_dense(g, "qkv", n1, 3 * C, (magna_dense_opts){0});
        magna_node *att = magna_attention(g, magna_slice(g, qkv, -1, 0, C, 1), magna_slice(g, qkv, -1, C, 2 * C, 1),
                                          magna_slice(g, qkv, -1, 2 * C, 3 * C, 1), 2, true);
        h = magna_add(g, h, magna_layer_dense(g, "proj", att, C, (magna_dense_opts){0}));
        magna_node *n2 = magna_layer_layer_norm(g, "ln2", h, 1e-5f);
        h = magna_add(g, h, magna_layer_dense(g, "fc", n2, C, (magna_dense_opts){.activation = MAGNA_ACT_GELU}));
        magna_model_set_output(m, magna_layer_dense(g, "head", h, V, (magna_dense_opts){0}));
        CHECK(magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                           .optimizer = {.kind = MAGNA_SGD}}) == MAGNA_OK,
              "%s", magna_model_errmsg(m));
        fill(m, 3, V);
        check_model("transformer block", m, 24, 1e-2, 1e-3, 2e-2);
        magna_model_free(m);
    }
    { /* an encoder-decoder from the transformer layers: padding masks on both sides, cross-attention */
        enum { B = 3, S = 4, T = 3, D = 8, V = 6 };
        magna_model *m = magna_model_new(24, B);
        magna_graph *g = magna_model_graph(m);
        magna_node *src = magna_model_input(m, "src", MAGNA_I32, 1, SHAPE(S));
        magna_node *tgt = magna_model_input(m, "tgt", MAGNA_I32, 1, SHAPE(T));
        magna_node *src_len = magna_input(g, "src_len", MAGNA_I32, 1, SHAPE(B));
        magna_node *mem = magna_layer_positional(g, "src_pos", magna_layer_embedding(g, "src_emb", src, V, D), S,
                                                 MAGNA_POS_SINUSOIDAL, NULL);
        mem = magna_layer_transformer_encoder(g, "enc", mem, (magna_transformer_opts){.heads = 2, .key_lengths = src_len,
                                                                                      .init_std = 0.3f});
        magna_node *h = magna_layer_positional(g, "tgt_pos", magna_layer_embedding(g, "tgt_emb", tgt, V, D), T,
                                               MAGNA_POS_LEARNED, NULL);
        h = magna_layer_transformer_decoder(g, "dec", h, mem,
                                            (magna_transformer_opts){.heads = 2, .memory_lengths = src_len,
                                                                     .d_ff = 12, .init_std = 0.3f});
        magna_model_set_output(m, magna_layer_dense(g, "head", h, V, (magna_dense_opts){0}));
        CHECK(magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                           .optimizer = {.kind = MAGNA_SGD}}) == MAGNA_OK,
              "%s", magna_model_errmsg(m));
        fill(m, 4, V);
        const int32_t lengths[B] = {4, 2, 3};
        memcpy(magna_node_data_i32(src_len), lengths, sizeof lengths);
        check_model("encoder-decoder, masks", m, 16, 1e-2, 1e-3, 2e-2);
        magna_model_free(m);
    }
    { /* a GPT: tied input/output embedding, learned positions, two causal blocks */
        const magna_gpt_config cfg = {.vocab = 7, .context = 5, .d_model = 8, .heads = 2, .layers = 2};
        magna_model *m = magna_model_new(25, 2);
        magna_node *ids = magna_model_input(m, "ids", MAGNA_I32, 1, SHAPE(5));
        magna_model_set_output(m, magna_gpt(magna_model_graph(m), "gpt", ids, &cfg, NULL, NULL));
        CHECK(magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                           .optimizer = {.kind = MAGNA_SGD}}) == MAGNA_OK,
              "%s", magna_model_errmsg(m));
        fill(m, 5, 7);
        /* GPT-2 init keeps the residual stream near 0.02, which layer norm scales up: a step of 1e-2 would be half
         * a value, so the difference quotient needs a smaller one */
        check_model("gpt, tied embeddings", m, 16, 1e-3, 1e-3, 2e-2);
        magna_model_free(m);
    }
    { /* recurrent layers from specs: embedding, LSTM returning the sequence, GRU returning its last h */
        enum { T = 5, V = 6 };
        magna_model *m = magna_model_new(24, 3);
        magna_model_input(m, "ids", MAGNA_I32, 1, SHAPE(T));
        magna_layer_spec net[] = {MAGNA_EMBEDDING(V, 4), MAGNA_LSTM(5), MAGNA_GRU_LAST(4), MAGNA_DENSE(V, 0)};
        magna_model_sequential(m, net, 4);
        CHECK(magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                           .optimizer = {.kind = MAGNA_SGD}}) == MAGNA_OK,
              "%s", magna_model_errmsg(m));
        fill(m, 4, V);
        check_model("embedding, lstm, gru (specs)", m, 24, 1e-2, 1e-3, 2e-2);
        magna_model_free(m);
    }
    { /* a stacked LSTM (dropout between its layers) with initial states as inputs and both layers' final
       * states in the head, and an RNN */
        enum { B = 2, T = 4, I = 3, H = 4 };
        magna_model *m = magna_model_new(25, B);
        magna_graph *g = magna_model_graph(m);
        magna_node *x = magna_model_input(m, "x", MAGNA_F32, 2, SHAPE(T, I));
        magna_node *h0[2] = {magna_model_input(m, "h0_0", MAGNA_F32, 1, SHAPE(H)), NULL};
        magna_node *c0[2] = {NULL, magna_model_input(m, "c0_1", MAGNA_F32, 1, SHAPE(H))};
        magna_node *hf[2], *cf[2];
        magna_node *seq = magna_layer_lstm(g, "lstm", x, H,
                                           (magna_recurrent_opts){.num_layers = 2, .h0 = h0, .c0 = c0,
                                                                  .h_final = hf, .c_final = cf,
                                                                  .dropout = 0.25f});
        magna_node *r = magna_layer_rnn(g, "rnn", seq, 3, (magna_recurrent_opts){.return_last = true});
        magna_node *feat = magna_concat(g, 4, (magna_node *[]){hf[0], cf[0], cf[1], r}, 1);
        magna_model_set_output(m, magna_layer_dense(g, "head", feat, 3, (magna_dense_opts){0}));
        CHECK(magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                           .optimizer = {.kind = MAGNA_SGD}}) == MAGNA_OK,
              "%s", magna_model_errmsg(m));
        fill(m, 5, 3);
        check_model("stacked lstm, states, rnn", m, 24, 1e-2, 1e-3, 2e-2);
        magna_model_free(m);
    }
    return check_finish("test_layer_gradcheck");
}
