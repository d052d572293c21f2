/* test_transformer.c — the transformer layers and generation: no attention to the future, padding that
 * changes nothing, the KV cache against a full forward, sampling, a padded vocabulary (never generated), and
 * a tiny GPT that memorises a string. */
#include "check.h"
#include "magna.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

static const magna_gpt_config tiny = {.vocab = 11, .context = 16, .d_model = 16, .heads = 2, .layers = 2};

/* Changing the token at position t changes no logit before t, and does change logits at t. */
static void check_causal_mask(void) {
    enum { B = 2, T = 16 };
    magna_graph *g = magna_graph_new(5);
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, SHAPE(B, T));
    magna_gpt_config cfg = tiny;
    magna_node *logits = magna_gpt(g, "gpt", ids, &cfg, NULL, NULL);
    magna_graph_keep(g, logits);
    CHECK(magna_graph_compile(g, NULL) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    magna_graph_set_training(g, false);
    const int64_t V = cfg.vocab, n = B * T * V;
    float *before = malloc((size_t)n * sizeof(float));
    int32_t *id = magna_node_data_i32(ids);
    for (int i = 0; i < B * T; i++) id[i] = (int32_t)(magna_rand_u64(1, 0, (uint64_t)i) % (uint64_t)V);
    magna_graph_forward(g);
    memcpy(before, magna_node_data(logits), (size_t)n * sizeof(float));
    int earlier_changed = 0, later_same = 0;
    for (int t = 1; t < T; t += 3) {
        id[t] = (id[t] + 1) % (int32_t)V; /* row 0 only */
        magna_graph_forward(g);
        const float *after = magna_node_data(logits);
        for (int i = 0; i < t * V; i++) earlier_changed += after[i] != before[i];
        bool moved = false;
        for (int i = t * V; i < (t + 1) * V; i++) moved |= after[i] != before[i];
        later_same += !moved;
        for (int i = T * V; i < n; i++) earlier_changed += after[i] != before[i]; /* the other row: untouched */
        memcpy(before, after, (size_t)n * sizeof(float));
    }
    CHECK(earlier_changed == 0, "changing a token changed %d logits of earlier positions or other rows",
          earlier_changed);
    CHECK(later_same == 0, "changing a token left its own position's logits unchanged %d times", later_same);
    free(before);
    magna_graph_free(g);
}

/* An encoder block with a key padding mask: tokens past a row's length change nothing before it. */
static void check_padding_mask(void) {
    enum { B = 3, T = 7, D = 8, V = 9 };
    magna_graph *g = magna_graph_new(6);
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, SHAPE(B, T));
    magna_node *len = magna_input(g, "len", MAGNA_I32, 1, SHAPE(B));
    magna_node *x = magna_layer_positional(g, "pos", magna_layer_embedding(g, "emb", ids, V, D), T,
                                           MAGNA_POS_SINUSOIDAL, NULL);
    magna_transformer_opts o = {.heads = 2, .key_lengths = len, .depth = 2};
    x = magna_layer_transformer_encoder(g, "enc0", x, o);
    x = magna_layer_transformer_encoder(g, "enc1", x, o);
    magna_graph_keep(g, x);
    CHECK(magna_graph_compile(g, NULL) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    magna_graph_set_training(g, false);
    const int32_t lengths[B] = {7, 4, 1};
    memcpy(magna_node_data_i32(len), lengths, sizeof lengths);
    int32_t *id = magna_node_data_i32(ids);
    for (int i = 0; i < B * T; i++) id[i] = (int32_t)(magna_rand_u64(2, 0, (uint64_t)i) % V);
    magna_graph_forward(g);
    float *before = malloc(B * T * D * sizeof(float));
    memcpy(before, magna_node_data(x), B * T * D * sizeof(float));
    for (int b = 1; b < B; b++)
        for (int t = lengths[b]; t < T; t++) id[b * T + t] = (id[b * T + t] + 3) % V;
    magna_graph_forward(g);
    const float *after = magna_node_data(x);
    int changed = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < lengths[b]; t++)
            for (int d = 0; d < D; d++) changed += after[(b * T + t) * D + d] != before[(b * T + t) * D + d];
    CHECK(changed == 0, "padding tokens changed %d values at real positions", changed);
    free(before);
    magna_graph_free(g);
}

/* The KV cache gives the full forward's logits at every position, and both slide past the context. */
static void check_kv_cache(void) {
    magna_graph *g = magna_graph_new(9); /* only to make weights */
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, SHAPE(1, tiny.context));
    magna_node *logits = magna_gpt(g, "gpt", ids, &tiny, NULL, NULL);
    magna_graph_keep(g, logits);
    CHECK(magna_graph_compile(g, NULL) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    magna_error err = {0};
    magna_gpt_generator *full = magna_gpt_generator_new(g, "gpt", &tiny, false, &err);
    magna_gpt_generator *cached = full ? magna_gpt_generator_new(g, "gpt", &tiny, true, &err) : NULL;
    CHECK(full && cached, "%s", err.message);
    if (full && cached) {
        double worst = 0;
        for (int i = 0; i < tiny.context; i++) {
            const int32_t tok = (int32_t)(magna_rand_u64(3, 0, (uint64_t)i) % (uint64_t)tiny.vocab);
            const float *a = magna_gpt_generator_step(full, tok), *b = magna_gpt_generator_step(cached, tok);
            for (int v = 0; a && b && v < tiny.vocab; v++) worst = fmax(worst, fabs((double)a[v] - b[v]));
            if (!a || !b) worst = INFINITY;
        }
        CHECK(worst <= 1e-4, "cached logits differ from the full forward by %.3g", worst);
        /* past the context: both keep going */
        bool ok = true;
        for (int i = 0; i < 20; i++)
            ok &= magna_gpt_generator_step(full, 1) != NULL && magna_gpt_generator_step(cached, 2) != NULL;
        CHECK(ok, "stepping past the context failed: %s", magna_gpt_generator_errmsg(cached));
        CHECK(magna_gpt_generator_step(cached, (int32_t)tiny.vocab) == NULL &&
                  strstr(magna_gpt_generator_errmsg(cached), "outside the vocabulary"),
              "a token outside the vocabulary is an error: '%s'", magna_gpt_generator_errmsg(cached));
        /* seeded generation: the same seed gives the same text, with and without the cache */
        int32_t prompt[3] = {1, 2, 3}, o1[10], o2[10];
        magna_sampling s = {.temperature = 1.0f, .top_k = 5, .seed = 42};
        CHECK(magna_gpt_generate(full, prompt, 3, 10, &s, o1) == MAGNA_OK &&
                  magna_gpt_generate(cached, prompt, 3, 10, &s, o2) == MAGNA_OK && memcmp(o1, o2, sizeof o1) == 0,
              "seeded sampling with and without the cache differs");
    }
    magna_gpt_generator_free(full);
    magna_gpt_generator_free(cached);
    magna_graph_free(g);
}

static void check_sampling(void) {
    const float logits[5] = {0.5f, 2.0f, -1.0f, 1.5f, 0.0f};
    float scratch[10];
    magna_sampling greedy = {0}, top1 = {.temperature = 1.0f, .top_k = 1, .seed = 3};
    CHECK(magna_sample(logits, 5, &greedy, 0, scratch) == 1, "greedy picks the largest logit");
    CHECK(magna_sample(logits, 5, &top1, 7, scratch) == 1, "top-k 1 picks the largest logit");
    /* frequencies at temperature 1 follow the softmax; top-k 2 and top-p stay inside their sets */
    enum { N = 40000 };
    int count[5] = {0}, outside_k = 0, outside_p = 0;
    magna_sampling s = {.temperature = 1.0f, .seed = 11}, k2 = {.temperature = 1.0f, .top_k = 2, .seed = 12},
                   p5 = {.temperature = 1.0f, .top_p = 0.5f, .seed = 13};
    for (int i = 0; i < N; i++) {
        count[magna_sample(logits, 5, &s, (uint64_t)i, scratch)]++;
        const int32_t a = magna_sample(logits, 5, &k2, (uint64_t)i, scratch);
        outside_k += a != 1 && a != 3;
        outside_p += magna_sample(logits, 5, &p5, (uint64_t)i, scratch) != 1; /* p(1) = 0.48: needs 1 and 3 */
    }
    double z = 0, worst = 0;
    for (int v = 0; v < 5; v++) z += exp(logits[v]);
    for (int v = 0; v < 5; v++) worst = fmax(worst, fabs(count[v] / (double)N - exp(logits[v]) / z));
    CHECK(worst < 0.01, "sampled frequencies differ from the softmax by %.4f", worst);
    CHECK(outside_k == 0, "top-k 2 sampled outside the two most likely %d times", outside_k);
    CHECK(outside_p > N / 5 && outside_p < N / 2, "top-p 0.5 should pick tokens 1 and 3 (got token 3 %d of %d)",
          outside_p, N);
    CHECK(magna_sample(logits, 5, &s, 99, scratch) == magna_sample(logits, 5, &s, 99, scratch),
          "the same seed and counter give the same token");
}

/* A 2-layer GPT learns a 51-character string from every window of it and greedy decoding replays it. */
static void check_memorise(void) {
    const char *text = "the quick brown fox jumps over the lazy dog, twice.";
    const int L = (int)strlen(text), T = 16;
    const int rows = L - T;
    int32_t *x = malloc((size_t)rows * T * sizeof *x), *y = malloc((size_t)rows * T * sizeof *y);
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < T; t++) x[r * T + t] = (unsigned char)text[r + t] - 32, y[r * T + t] = (unsigned char)text[r + t + 1] - 32;
    magna_gpt_config cfg = {.vocab = 96, .context = T, .d_model = 32, .heads = 4, .layers = 2};
    magna_model *m = magna_model_new(17, 8);
    magna_node *ids = magna_model_input(m, "ids", MAGNA_I32, 1, SHAPE(T));
    magna_model_set_output(m, magna_gpt(magna_model_graph(m), "gpt", ids, &cfg, NULL, NULL));
    CHECK(magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                       .optimizer = {.kind = MAGNA_ADAM, .lr = 3e-3f}}) == MAGNA_OK,
          "%s", magna_model_errmsg(m));
    magna_history h = {0};
    magna_dataset d = {.rows = rows, .x_i32 = x, .labels = y};
    CHECK(magna_model_fit(m, &d, NULL, &(magna_fit_opts){.epochs = 120}, &h) == MAGNA_OK, "%s", magna_model_errmsg(m));
    const double loss = h.count ? h.epochs[h.count - 1].train.loss : INFINITY;
    CHECK(loss < 0.1, "the tiny GPT's loss after 120 epochs is %.4f (want < 0.1)", loss);
    magna_error err = {0};
    magna_gpt_generator *gen = magna_gpt_generator_new(magna_model_graph(m), "gpt", &cfg, true, &err);
    CHECK(gen != NULL, "%s", err.message);
    if (gen) {
        int32_t out[64];
        const int n = T - 1; /* from the first character to the end of the context */
        magna_gpt_generate(gen, x, 1, n, &(magna_sampling){0}, out);
        char got[64];
        for (int i = 0; i < n; i++) got[i] = (char)(out[i] + 32);
        got[n] = 0;
        CHECK(strncmp(got, text + 1, (size_t)n) == 0, "greedy decoding gave '%s', want '%.*s'", got, n, text + 1);
    }
    magna_gpt_generator_free(gen);
    magna_history_free(&h);
    magna_model_free(m);
    free(x), free(y);
}

/* Bad arguments to the transformer layers and the generator: a status and a message, no crash. */
static void check_errors(void) {
    magna_graph *g = magna_graph_new(1);
    magna_node *x = magna_input(g, "x", MAGNA_F32, 3, SHAPE(2, 9, 8));
    CHECK(!magna_layer_positional(g, "pos", x, 8, MAGNA_POS_LEARNED, NULL) &&
              strstr(magna_graph_errmsg(g), "9 positions does not fit a table of 8"),
          "9 positions in a table of 8: '%s'", magna_graph_errmsg(g));
    magna_graph_free(g);

    g = magna_graph_new(1);
    x = magna_input(g, "x", MAGNA_F32, 3, SHAPE(2, 4, 6));
    CHECK(!magna_layer_multi_head_attention(g, "att", x, x, (magna_attention_opts){.heads = 4}) &&
              strstr(magna_graph_errmsg(g), "4 heads must divide the model width 6"),
          "4 heads over width 6: '%s'", magna_graph_errmsg(g));
    magna_graph_free(g);

    g = magna_graph_new(1);
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, SHAPE(1, 4));
    magna_gpt_config bad = tiny;
    bad.layers = 0;
    CHECK(!magna_gpt(g, "gpt", ids, &bad, NULL, NULL) && magna_graph_status(g) == MAGNA_ERR_ARG,
          "a GPT with 0 layers: '%s'", magna_graph_errmsg(g));
    magna_graph_free(g);

    magna_error err = {0};
    magna_gpt_generator *gen = magna_gpt_generator_new(NULL, "gpt", &tiny, true, &err);
    CHECK(gen != NULL, "%s", err.message);
    if (gen) {
        int32_t out[4];
        CHECK(magna_gpt_generate(gen, NULL, 0, 4, &(magna_sampling){0}, out) == MAGNA_ERR_ARG &&
                  strstr(magna_gpt_generator_errmsg(gen), "prompt"),
              "an empty prompt: '%s'", magna_gpt_generator_errmsg(gen));
    }
    magna_gpt_generator_free(gen);
}

/* A padded vocabulary (11 ids, rows rounded up to 16): the logits are 16 wide, and the padded ids, made the
 * most likely of all, are never generated, with or without the cache. */
static void check_padded_vocab(void) {
    magna_gpt_config cfg = tiny;
    cfg.pad_vocab = 8;
    CHECK(magna_gpt_padded_vocab(&cfg) == 16 && magna_gpt_padded_vocab(&tiny) == 11,
          "padded vocabulary: %lld (want 16), unpadded %lld (want 11)", (long long)magna_gpt_padded_vocab(&cfg),
          (long long)magna_gpt_padded_vocab(&tiny));
    magna_graph *g = magna_graph_new(4);
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, SHAPE(1, cfg.context));
    magna_node *logits = magna_gpt(g, "gpt", ids, &cfg, NULL, NULL);
    magna_graph_keep(g, logits);
    CHECK(magna_graph_compile(g, NULL) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    magna_node *wte = magna_graph_find(g, "gpt.wte.weight"), *gain = magna_graph_find(g, "gpt.ln_f.weight"),
               *bias = magna_graph_find(g, "gpt.ln_f.bias");
    CHECK(wte && gain && bias && magna_node_shape(wte)[0] == 16 && magna_node_shape(logits)[2] == 16,
          "wte [16, D] and logits [1, T, 16]");
    if (!wte || !gain || !bias) {
        magna_graph_free(g);
        return;
    }
    magna_error err = {0};
    { /* the logits rows are 16 wide: the full forward's and the cache's agree at every position */
        magna_gpt_generator *full = magna_gpt_generator_new(g, "gpt", &cfg, false, &err);
        magna_gpt_generator *kv = full ? magna_gpt_generator_new(g, "gpt", &cfg, true, &err) : NULL;
        CHECK(full && kv, "%s", err.message);
        double worst = 0;
        for (int i = 0; full && kv && i < 6; i++) {
            const float *a = magna_gpt_generator_step(full, i), *b = magna_gpt_generator_step(kv, i);
            for (int v = 0; a && b && v < 16; v++) worst = fmax(worst, fabs((double)a[v] - b[v]));
            if (!a || !b) worst = INFINITY;
        }
        CHECK(worst <= 1e-4, "padded vocabulary: cached logits differ from the full forward by %.3g", worst);
        magna_gpt_generator_free(full);
        magna_gpt_generator_free(kv);
    }
    /* the final norm gives all ones whatever comes in, so a logit is its embedding row's sum: 0 for the real
     * ids, D for the padded ones */
    const int64_t D = cfg.d_model;
    for (int64_t i = 0; i < D; i++) magna_node_data(gain)[i] = 0, magna_node_data(bias)[i] = 1;
    for (int64_t v = 0; v < 16; v++)
        for (int64_t i = 0; i < D; i++) magna_node_data(wte)[v * D + i] = v < cfg.vocab ? 0.0f : 1.0f;
    for (int cached = 0; cached < 2; cached++) {
        magna_gpt_generator *gen = magna_gpt_generator_new(g, "gpt", &cfg, cached, &err);
        CHECK(gen != NULL, "%s", err.message);
        if (!gen) continue;
        int32_t prompt[2] = {1, 2}, o[24];
        const float *l = magna_gpt_generator_step(gen, 3);
        CHECK(l && l[15] > l[0] + 1, "a padded id's logit is the largest (%g vs %g)", l ? l[15] : 0.0, l ? l[0] : 0.0);
        for (int t = 0; t < 2; t++) { /* greedy, then sampled */
            magna_sampling s = {.temperature = t ? 1.0f : 0.0f, .seed = 7};
            CHECK(magna_gpt_generate(gen, prompt, 2, 24, &s, o) == MAGNA_OK, "%s", magna_gpt_generator_errmsg(gen));
            int bad = 0;
            for (int i = 0; i < 24; i++) bad += o[i] < 0 || o[i] >= cfg.vocab;
            CHECK(bad == 0, "%d generated ids outside [0, %lld) (cache %d, temperature %d)", bad, (long long)cfg.vocab,
                  cached, t);
        }
        magna_gpt_generator_free(gen);
    }
    magna_graph_free(g);
}

int main(void) {
    check_padded_vocab();
    check_errors();
    check_causal_mask();
    check_padding_mask();
    check_kv_cache();
    check_sampling();
    check_memorise();
    return check_finish("test_transformer");
}
