/* char_lm.c — character language models on a real corpus, built from this one file as two programs
 * (CMakeLists.txt):
 *   char_gpt:  a GPT (4 pre-LN blocks, 4 heads, d 128, MLP 512, learned positions, tied embeddings), AdamW 1e-3,
 *              weight decay 0.1;
 *   char_lstm (CHAR_LSTM): embedding 64 -> LSTM 256 -> dense to the vocabulary, Adam 2e-3.
 * Both: context 128, batch 32, 1500 steps on random windows of the first 90% of the corpus (the fortune
 * cookies of /usr/share/games/fortunes by default: its plain files sorted by name), characters as tokens.
 * Reports the validation loss in nats per character over the last 10% (every character once), the bigram
 * baseline's on the same split, a generated sample, and ends with a key=value line:
 *   val_loss=... bigram_val_loss=... tokens_per_s=... seconds=...
 *
 *   build/char_gpt|char_lstm [--steps N] [--seed S] [--threads T] [--corpus PATH] [--sample N]
 *                            [--temperature X] [--top-k K] [--prompt TEXT] [--eval-windows N] [--bf16]
 *
 * --bf16: bf16 mixed precision, as PyTorch's CPU autocast: the dense layers' products (and the tied output
 * layer's) on oneDNN with bf16 operands and float32 sums, on CPUs with avx512_bf16; float32 elsewhere. */
#include "magna.h"

#include "args.h"

#include <limits.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef CHAR_LSTM
#define PROGRAM "char_lstm"
#else
#define PROGRAM "char_gpt"
#endif

enum { T = 128, BATCH = 32 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct args {
    long long steps, seed, threads, sample, top_k, eval_windows;
    double temperature;
    const char *corpus, *prompt;
    bool bf16;
} args;

static bool parse_ll(const char *s, long long lo, long long *out) { return arg_int(s, lo, LLONG_MAX, out); }

static bool parse_args(int argc, char **argv, args *a) {
    *a = (args){.steps = 1500, .seed = 42, .sample = 300, .temperature = 0.8, .top_k = 0,
                .corpus = "/usr/share/games/fortunes", .prompt = "The "};
    for (int i = 1; i < argc; i += 2) {
        if (strcmp(argv[i], "--bf16") == 0) { /* the one flag without a value */
            a->bf16 = true;
            i--;
            continue;
        }
        if (i + 1 >= argc) return false;
        const char *k = argv[i], *v = argv[i + 1];
        bool ok = true;
        if (strcmp(k, "--steps") == 0) ok = parse_ll(v, 1, &a->steps);
        else if (strcmp(k, "--seed") == 0) ok = parse_ll(v, 0, &a->seed);
        else if (strcmp(k, "--threads") == 0) ok = parse_ll(v, 0, &a->threads);
        else if (strcmp(k, "--sample") == 0) ok = parse_ll(v, 0, &a->sample);
        else if (strcmp(k, "--top-k") == 0) ok = parse_ll(v, 0, &a->top_k);
        else if (strcmp(k, "--eval-windows") == 0) ok = parse_ll(v, 0, &a->eval_windows);
        else if (strcmp(k, "--temperature") == 0) {
            char *end;
            a->temperature = strtod(v, &end);
            ok = *v && !*end && a->temperature >= 0;
        } else if (strcmp(k, "--corpus") == 0) a->corpus = v;
        else if (strcmp(k, "--prompt") == 0) a->prompt = v;
        else ok = false;
        if (!ok) return false;
    }
    return true;
}

static void fail(const char *what) {
    fprintf(stderr, PROGRAM ": %s\n", what);
    exit(1);
}

/* ---- the models ---------------------------------------------------------------------------------- */

#ifdef CHAR_LSTM
static magna_model *build(uint64_t seed, int64_t vocab) {
    magna_model *m = magna_model_new(seed, BATCH);
    magna_graph *g = magna_model_graph(m);
    magna_node *ids = magna_model_input(m, "ids", MAGNA_I32, 1, (int64_t[]){T});
    magna_node *h = magna_layer_embedding(g, "emb", ids, vocab, 64);
    h = magna_layer_lstm(g, "lstm", h, 256, (magna_recurrent_opts){0});
    magna_model_set_output(m, magna_layer_dense(g, "head", h, vocab, (magna_dense_opts){0}));
    return m;
}
static const magna_optimizer_opts optimizer = {.kind = MAGNA_ADAM, .lr = 2e-3f};
#else
static magna_gpt_config gpt_config(int64_t vocab) {
    return (magna_gpt_config){.vocab = vocab, .context = T, .d_model = 128, .heads = 4, .layers = 4};
}
static magna_model *build(uint64_t seed, int64_t vocab) {
    magna_model *m = magna_model_new(seed, BATCH);
    magna_node *ids = magna_model_input(m, "ids", MAGNA_I32, 1, (int64_t[]){T});
    const magna_gpt_config cfg = gpt_config(vocab);
    magna_model_set_output(m, magna_gpt(magna_model_graph(m), "gpt", ids, &cfg, NULL, NULL));
    return m;
}
static const magna_optimizer_opts optimizer = {.kind = MAGNA_ADAMW, .lr = 1e-3f, .weight_decay = 0.1f};
#endif

/* ---- generation ---------------------------------------------------------------------------------- */

/* n tokens after the prompt's: the GPT through its KV-cache generator; the LSTM by running the model on the
 * last T tokens (as it was trained: from a zero state at the window's start). */
static int32_t *generate(magna_model *m, int64_t vocab, const int32_t *prompt, int64_t n_prompt, int64_t n,
                         const magna_sampling *s) {
    int32_t *out = malloc((size_t)(n > 0 ? n : 1) * sizeof *out);
    if (!out) fail("out of memory");
#ifdef CHAR_LSTM
    int64_t len = n_prompt;
    int32_t *ctx = malloc((size_t)(n_prompt + n) * sizeof *ctx), *row = calloc(T, sizeof *row);
    float *logits = malloc((size_t)T * vocab * sizeof *logits), *scratch = malloc((size_t)2 * vocab * sizeof *scratch);
    memcpy(ctx, prompt, (size_t)n_prompt * sizeof *ctx);
    for (int64_t i = 0; i < n; i++) {
        const int64_t w = len < T ? len : T;
        memset(row, 0, T * sizeof *row);
        memcpy(row, ctx + len - w, (size_t)w * sizeof *row);
        magna_dataset d = {.rows = 1, .x_i32 = row, .labels = row};
        if (magna_model_predict(m, &d, logits) != MAGNA_OK) fail(magna_model_errmsg(m));
        out[i] = ctx[len++] = magna_sample(logits + (w - 1) * vocab, vocab, s, (uint64_t)i, scratch);
    }
    free(ctx), free(row), free(logits), free(scratch);
#else
    const magna_gpt_config cfg = gpt_config(vocab);
    magna_error err;
    magna_gpt_generator *gen = magna_gpt_generator_new(magna_model_graph(m), "gpt", &cfg, true, &err);
    if (!gen) fail(err.message);
    if (magna_gpt_generate(gen, prompt, n_prompt, n, s, out) != MAGNA_OK) fail(magna_gpt_generator_errmsg(gen));
    magna_gpt_generator_free(gen);
#endif
    return out;
}

int main(int argc, char **argv) {
    args a;
    if (!parse_args(argc, argv, &a)) {
        fprintf(stderr, "usage: " PROGRAM " [--steps N] [--seed S] [--threads T] [--corpus PATH] [--sample N]\n"
                        "       [--temperature X] [--top-k K] [--prompt TEXT] [--eval-windows N] [--bf16]\n");
        return 2;
    }
    if (a.threads > 0) magna_set_threads((int)a.threads);
    printf("%s\n", magna_runtime_info());
    magna_error err;
    magna_corpus corpus;
    int64_t cut, n_train, n_val;
    magna_tokenizer *tok;
    int32_t *train_ids, *val_ids;
    if (magna_corpus_load(a.corpus, &corpus, &err) != MAGNA_OK ||
        magna_text_split(corpus.data, corpus.size, 0.1, &cut, &err) != MAGNA_OK ||
        magna_tokenizer_train_chars(corpus.data, cut, true, &tok, &err) != MAGNA_OK ||
        magna_tokenizer_encode(tok, corpus.data, cut, &train_ids, &n_train, &err) != MAGNA_OK ||
        magna_tokenizer_encode(tok, corpus.data + cut, corpus.size - cut, &val_ids, &n_val, &err) != MAGNA_OK)
        fail(err.message);
    const int64_t vocab = magna_tokenizer_vocab_size(tok);
    printf("corpus: %s, %d files, %lld bytes; %lld training and %lld validation characters, vocabulary %lld\n",
           a.corpus, corpus.files, (long long)corpus.size, (long long)n_train, (long long)n_val, (long long)vocab);

    /* the baseline: bigram counts, add-one smoothing... on the same split */
    magna_bigram bigram;
    double bigram_loss;
    if (magna_bigram_fit(&bigram, train_ids, n_train, (int32_t)vocab, 0.1, &err) != MAGNA_OK ||
        magna_bigram_loss(&bigram, val_ids, n_val, &bigram_loss, &err) != MAGNA_OK)
        fail(err.message);
    magna_bigram_free(&bigram);
    printf("bigram baseline: validation loss %.4f nats/char (uniform: %.4f)\n", bigram_loss, log((double)vocab));

    /* every training batch drawn up front: steps x 32 random windows, one pass in order */
    const int64_t rows = a.steps * BATCH;
    int32_t *x = malloc((size_t)rows * T * sizeof *x), *y = malloc((size_t)rows * T * sizeof *y);
    if (!x || !y) fail("out of memory");
    if (magna_lm_windows_random(train_ids, n_train, T, rows, (uint64_t)a.seed, 0, x, y, &err) != MAGNA_OK)
        fail(err.message);
    int64_t val_rows = magna_lm_window_count(n_val, T);
    if (a.eval_windows > 0 && a.eval_windows < val_rows) val_rows = a.eval_windows;
    int32_t *vx = malloc((size_t)magna_lm_window_count(n_val, T) * T * sizeof *vx),
            *vy = malloc((size_t)magna_lm_window_count(n_val, T) * T * sizeof *vy);
    if (!vx || !vy) fail("out of memory");
    if (magna_lm_windows_sequential(val_ids, n_val, T, vx, vy, &err) != MAGNA_OK) fail(err.message);

    magna_model *m = build((uint64_t)a.seed, vocab);
    if (!m || magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE, .optimizer = optimizer,
                                                           .bf16 = a.bf16}) != MAGNA_OK)
        fail(m ? magna_model_errmsg(m) : "out of memory");
    magna_model_summary(m, stdout);
    magna_dataset train = {.rows = rows, .x_i32 = x, .labels = y}, val = {.rows = val_rows, .x_i32 = vx, .labels = vy};
    magna_history h = {0};
    const double t0 = now();
    if (magna_model_fit(m, &train, NULL, &(magna_fit_opts){.epochs = 1, .no_shuffle = true, .verbose = 1}, &h) !=
        MAGNA_OK)
        fail(magna_model_errmsg(m));
    const double seconds = now() - t0;
    magna_scores scores;
    if (magna_model_evaluate(m, &val, &scores) != MAGNA_OK) fail(magna_model_errmsg(m));
    printf("validation loss %.4f nats/char over %lld windows (bigram %.4f)\n", scores.loss, (long long)val_rows,
           bigram_loss);

    /* a sample */
    int32_t *prompt;
    int64_t n_prompt;
    if (magna_tokenizer_encode(tok, (const uint8_t *)a.prompt, (int64_t)strlen(a.prompt), &prompt, &n_prompt, &err) !=
            MAGNA_OK ||
        n_prompt < 1)
        fail(n_prompt < 1 ? "the prompt is empty" : err.message);
    const magna_sampling s = {.temperature = (float)a.temperature, .top_k = (int)a.top_k, .seed = (uint64_t)a.seed};
    int32_t *gen = generate(m, vocab, prompt, n_prompt, a.sample, &s);
    uint8_t *text;
    int64_t text_n;
    if (magna_tokenizer_decode(tok, gen, a.sample, &text, &text_n, &err) != MAGNA_OK) fail(err.message);
    printf("--- sample (temperature %.2f) ---\n%s%s\n---\n", a.temperature, a.prompt, (const char *)text);
    printf("val_loss=%.4f bigram_val_loss=%.4f train_loss=%.4f tokens_per_s=%.0f seconds=%.2f steps=%lld "
           "vocab=%lld\n",
           scores.loss, bigram_loss, h.count ? h.epochs[h.count - 1].train.loss : NAN,
           (double)rows * T / seconds, seconds, a.steps, (long long)vocab);
    free(text), free(gen), free(prompt);
    free(x), free(y), free(vx), free(vy), free(train_ids), free(val_ids);
    magna_history_free(&h);
    magna_model_free(m);
    magna_tokenizer_free(tok);
    magna_corpus_free(&corpus);
    return 0;
}
