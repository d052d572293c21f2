/* infer.c — the `magna` commands that use trained weights: predict (new rows of a table or images into a CSV)
 * and generate (text from a language model, digits from the seq2seq model). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE_PREDICT =
    "usage: magna predict MODEL_FILE --weights CHECKPOINT --input FILE.csv|FILE.idx[.gz] --output OUT.csv [--threads N]\n"
    "Runs the model on new rows and writes one CSV line per row. CHECKPOINT: the weights magna train wrote\n"
    "(DIR/model.safetensors) or a full-state checkpoint (file, or folder: its newest). The rows are prepared\n"
    "as the model file's training rows were: a CSV's feature columns are found by name (a target column\n"
    "is ignored) and standardised with the training split's means; IDX ubyte images are divided by 255\n"
    "and standardised per channel. Output: the target's name (regression), or class,p0,p1,... (the\n"
    "predicted class and each probability), or probability (binary cross-entropy).\n";
static const char *USAGE_GENERATE =
    "usage: magna generate MODEL_FILE --weights CHECKPOINT [--prompt TEXT] [--length N] [--temperature X]\n"
    "                      [--top-k K] [--top-p P] [--seed S] [--threads N]\n"
    "       magna generate SEQ2SEQ_MODEL_FILE --weights CHECKPOINT --prompt WORDS [--beam K]\n"
    "A text model ([data] kind = text) continues the prompt (default: a newline) by N tokens (default 200)\n"
    "and prints the prompt and the continuation. The tokenizer comes from the weights (DIR/model.safetensors\n"
    "or a checkpoint, file or folder, written by magna train). A GPT samples through its KV cache; a\n"
    "sequential model (LSTM) runs over the last context window for each token. Sampling: --temperature X\n"
    "(default 0.8; 0 is greedy), --top-k K (only the K most likely tokens), --top-p P (the fewest tokens\n"
    "whose probabilities reach P), --seed S (default 42: the same seed gives the same text).\n"
    "A seq2seq model ([data] kind = numbers) translates the words of --prompt ('three hundred forty-two')\n"
    "into digits, greedily or with a beam search of K beams (--beam K, 1..64), and prints them.\n";

static bool ends_with(const char *s, const char *tail) {
    const size_t n = strlen(s), k = strlen(tail);
    return n >= k && strcmp(s + n - k, tail) == 0;
}

/* New rows as the model saw its training rows: CSV features (by the training columns' names, the target
 * column ignored when present) standardised as in training, or IDX images / 255 standardised per channel;
 * then the file's scale. */
static bool predict_inputs(const config *cf, const data *d, const char *path, float **x, int64_t *rows) {
    magna_error err;
    int64_t width = 0;
    if (ends_with(path, ".csv")) {
        if (cf->kind != DATA_CSV) return cli_fail("%s: the model was trained on images: give an .idx file", path);
        magna_table t;
        if (magna_csv_read(path, &(magna_csv_options){0}, &t, &err) != MAGNA_OK) return cli_fail("%s", err.message);
        bool ok = true;
        /* the training table's feature columns, in its order, found by name: a missing one is an error */
        if (cf->standardise && magna_standardizer_apply(&d->st, &t, &err) != MAGNA_OK) ok = cli_fail("%s", err.message);
        if (ok && magna_table_features(&t, (const char *const *)d->features, NULL, x, &width, &err) != MAGNA_OK)
            ok = cli_fail("%s", err.message);
        *rows = t.rows;
        magna_table_free(&t);
        if (!ok) return false;
    } else if (ends_with(path, ".idx") || ends_with(path, ".idx.gz") || strstr(path, "-ubyte")) {
        if (cf->kind != DATA_IDX) return cli_fail("%s: the model was trained on CSV rows: give a .csv file", path);
        magna_idx idx;
        if (magna_idx_read(path, &idx, &err) != MAGNA_OK) return cli_fail("%s", err.message);
        if (idx.type != MAGNA_IDX_U8 || idx.ndim < 3 || idx.ndim > 4) {
            magna_idx_free(&idx);
            return cli_fail("%s: expected ubyte images [N, H, W] or [N, C, H, W], got %s of %d dims", path,
                            magna_idx_type_name(idx.type), idx.ndim);
        }
        *rows = idx.dims[0];
        width = idx.count / idx.dims[0];
        const int64_t channels = idx.ndim == 4 ? idx.dims[1] : 1, plane = width / channels;
        if (!(*x = malloc((size_t)idx.count * sizeof **x))) {
            magna_idx_free(&idx);
            return cli_fail("out of memory");
        }
        const uint8_t *p = idx.data;
        for (int64_t i = 0; i < idx.count; i++) {
            double v = (double)((float)p[i] / 255.0f);
            const int64_t c = (i % width) / plane;
            if (d->mean && c < d->sets[0].channels) v = (v - d->mean[c]) / (d->sd[c] > 0 ? d->sd[c] : 1.0);
            (*x)[i] = (float)v;
        }
        magna_idx_free(&idx);
    } else
        return cli_fail("%s: the input must be a .csv or an .idx[.gz] file", path);
    int64_t n = 1;
    for (int k = 0; k < cf->input_ndim; k++) n *= cf->input[k];
    if (width != n) {
        free(*x), *x = NULL;
        return cli_fail("%s: %lld values per row, the model (%s) takes %lld", path, (long long)width, cf->path,
                        (long long)n);
    }
    scale_rows(*x, *rows * width, cf->scale);
    return true;
}

int cmd_predict(int argc, char **argv) {
    options o;
    if (!parse_options(argc, argv, "predict", "--weights --input --output --threads --set", &o)) return EXIT_USAGE;
    if (o.help) return fputs(USAGE_PREDICT, stdout), 0;
    if (!o.weights || !o.input || !o.output)
        return cli_fail("magna predict: --weights, --input and --output are required (see magna predict --help)"),
               EXIT_USAGE;
    config cf;
    if (!load_config(&o, &cf)) return EXIT_USAGE;
    if (cf.kind == DATA_TEXT || cf.kind == DATA_NUMBERS) {
        config_free(&cf);
        return cli_fail("magna predict: %s is a language model: use magna generate", o.model_file), EXIT_USAGE;
    }
    data d;
    if (!load_data(&cf, NULL, false, &d)) { /* the training rows give the standardisation */
        config_free(&cf);
        return EXIT_RUN;
    }
    int rc = EXIT_RUN;
    float *x = NULL, *y = NULL;
    int64_t rows = 0;
    magna_model *m = build(&cf, 0, cf.batch);
    FILE *f = NULL;
    if (m && load_weights(m, o.weights) && predict_inputs(&cf, &d, o.input, &x, &rows)) {
        const int64_t per = magna_node_numel(magna_model_output(m)) / cf.batch;
        const bool classes = cf.compile.loss == MAGNA_LOSS_SPARSE_CE, binary = cf.compile.loss == MAGNA_LOSS_BCE;
        if (!(y = malloc((size_t)(rows * per + 1) * sizeof *y))) cli_fail("out of memory");
        else if (magna_model_predict(m, &(magna_dataset){.rows = rows, .x = x}, y) != MAGNA_OK)
            cli_fail("%s: %s", cf.path, magna_model_errmsg(m));
        else if (!(f = fopen(o.output, "w")))
            cli_fail("%s: cannot create: %s", o.output, strerror(errno));
        else {
            /* header: regression, the target's name; classes, the predicted one then each probability */
            const char *name = cf.target ? cf.target : "prediction";
            if (classes) {
                fputs("class", f);
                for (int64_t j = 0; j < per; j++) fprintf(f, ",p%lld", (long long)j);
            } else
                for (int64_t j = 0; j < per; j++)
                    fprintf(f, per == 1 ? "%s%s" : "%s%s_%lld", j ? "," : "", binary ? "probability" : name, (long long)j);
            fputc('\n', f);
            for (int64_t r = 0; r < rows; r++) {
                const float *z = y + r * per;
                if (classes) { /* softmax of the logits, max subtracted */
                    int64_t best = 0;
                    for (int64_t j = 1; j < per; j++) best = z[j] > z[best] ? j : best;
                    double sum = 0;
                    for (int64_t j = 0; j < per; j++) sum += exp((double)z[j] - z[best]);
                    fprintf(f, "%lld", (long long)best);
                    for (int64_t j = 0; j < per; j++) fprintf(f, ",%.6g", exp((double)z[j] - z[best]) / sum);
                } else
                    for (int64_t j = 0; j < per; j++)
                        fprintf(f, "%s%.9g", j ? "," : "", binary ? 1.0 / (1.0 + exp(-(double)z[j])) : (double)z[j]);
                fputc('\n', f);
            }
            if (fclose(f) != 0) cli_fail("%s: write failed: %s", o.output, strerror(errno));
            else {
                printf("rows=%lld outputs=%lld input=%s output=%s weights=%s\n", (long long)rows, (long long)per,
                       o.input, o.output, o.weights);
                rc = 0;
            }
        }
    }
    free(x), free(y);
    magna_model_free(m);
    data_free(&d);
    config_free(&cf);
    return rc;
}

/* A text model's continuation of the prompt: a GPT through its KV-cache generator; a sequential model run
 * on the last context window (as it trained: from a zero state at the window's start). */
static bool generate_text(const config *cf, magna_model *m, int64_t vocab, const int32_t *prompt, int64_t n_prompt,
                          int64_t n, const magna_sampling *s, int32_t *out) {
    magna_error err;
    if (cf->model == MODEL_GPT) {
        magna_gpt_config g = cf->gpt;
        g.vocab = vocab;
        magna_gpt_generator *gen = magna_gpt_generator_new(magna_model_graph(m), "gpt", &g, true, &err);
        if (!gen) return cli_fail("%s", err.message);
        const bool ok = magna_gpt_generate(gen, prompt, n_prompt, n, s, out) == MAGNA_OK ||
                        cli_fail("%s", magna_gpt_generator_errmsg(gen));
        magna_gpt_generator_free(gen);
        return ok;
    }
    const int64_t T = cf->context;
    int32_t *ctx = malloc((size_t)(n_prompt + n) * sizeof *ctx), *row = calloc((size_t)T, sizeof *row);
    float *logits = malloc((size_t)(T * vocab) * sizeof *logits), *scratch = malloc((size_t)(2 * vocab) * sizeof *scratch);
    bool ok = ctx && row && logits && scratch;
    if (!ok) cli_fail("out of memory");
    else memcpy(ctx, prompt, (size_t)n_prompt * sizeof *ctx);
    for (int64_t i = 0, len = n_prompt; ok && i < n; i++) {
        const int64_t w = len < T ? len : T;
        memset(row, 0, (size_t)T * sizeof *row);
        memcpy(row, ctx + len - w, (size_t)w * sizeof *row);
        if (magna_model_predict(m, &(magna_dataset){.rows = 1, .x_i32 = row}, logits) != MAGNA_OK)
            ok = cli_fail("%s", magna_model_errmsg(m));
        else out[i] = ctx[len++] = magna_sample(logits + (w - 1) * vocab, vocab, s, (uint64_t)i, scratch);
    }
    free(ctx), free(row), free(logits), free(scratch);
    return ok;
}

static int generate_numbers(const options *o, const config *cf) {
    if (!o->prompt) return cli_fail("magna generate: %s translates numbers in words: give --prompt 'forty-two'", cf->path),
                           EXIT_USAGE;
    magna_numbers ex;
    magna_error err;
    if (magna_numbers_from_words(&ex, o->prompt, &err) != MAGNA_OK)
        return cli_fail("magna generate: --prompt: %s", err.message), EXIT_USAGE;
    magna_model *m = build(cf, 0, 1);
    int decoded = -1, rc = EXIT_RUN;
    if (m && load_weights(m, o->weights)) {
        if (magna_numbers_decode(m, &ex, o->beam > 0 ? (int)o->beam : 1, &decoded) < 0)
            cli_fail("%s: %s", cf->path, magna_model_errmsg(m));
        else if (decoded < 0)
            cli_fail("magna generate: the model wrote no number for '%s' (no end token after 1 to 7 digits)", o->prompt);
        else {
            printf("%d\n", decoded);
            rc = 0;
        }
    }
    magna_model_free(m);
    magna_numbers_free(&ex);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    options o;
    if (!parse_options(argc, argv, "generate",
                       "--weights --prompt --length --temperature --top-k --top-p --seed --beam --threads --set", &o))
        return EXIT_USAGE;
    if (o.help) return fputs(USAGE_GENERATE, stdout), 0;
    if (!o.model_file) return cli_fail("magna generate: no model file (see magna generate --help)"), EXIT_USAGE;
    if (!o.weights) return cli_fail("magna generate: --weights CHECKPOINT is required"), EXIT_USAGE;
    config cf;
    if (!read_config(&o, o.model_file, NULL, &cf, NULL)) return EXIT_USAGE;
    if (o.threads > 0) magna_set_threads((int)o.threads);
    int rc = EXIT_RUN;
    if (cf.kind == DATA_NUMBERS) rc = generate_numbers(&o, &cf);
    else if (cf.kind != DATA_TEXT)
        rc = EXIT_USAGE, cli_fail("magna generate: %s is not a language model ([data] kind = text or numbers): use "
                                  "magna predict",
                                  o.model_file);
    else if (cf.random_tokens)
        rc = EXIT_USAGE, cli_fail("magna generate: %s trains on random tokens: it has no tokenizer to write text with",
                                  o.model_file);
    else if (o.beam > 0)
        rc = EXIT_USAGE, cli_fail("magna generate: --beam is for seq2seq models; a text model samples (--temperature, "
                                  "--top-k, --top-p)");
    else {
        char *tok_text = weights_tokenizer(o.weights);
        magna_tokenizer *tok = NULL;
        magna_error err;
        magna_model *m = NULL;
        int32_t *prompt = NULL, *gen = NULL;
        uint8_t *text = NULL;
        int64_t n_prompt = 0, n_text = 0;
        const char *p = o.prompt ? o.prompt : "\n";
        if (!tok_text) {
        } else if (magna_tokenizer_from_string(tok_text, &tok, &err) != MAGNA_OK)
            cli_fail("%s: its tokenizer: %s", o.weights, err.message);
        else if (magna_tokenizer_encode(tok, (const uint8_t *)p, (int64_t)strlen(p), &prompt, &n_prompt, &err) !=
                 MAGNA_OK)
            cli_fail("magna generate: --prompt: %s", err.message);
        else if (n_prompt < 1)
            cli_fail("magna generate: --prompt is empty");
        else if (magna_tokenizer_get_kind(tok) != cf.tokenizer)
            cli_fail("%s: the weights were trained with a %s tokenizer, the model file says %s", o.weights,
                     magna_tokenizer_kind_name(magna_tokenizer_get_kind(tok)), magna_tokenizer_kind_name(cf.tokenizer));
        else if ((m = build(&cf, magna_tokenizer_vocab_size(tok), 1)) && load_weights(m, o.weights)) {
            const magna_sampling s = {.temperature = (float)o.temperature, .top_k = (int)o.top_k,
                                      .top_p = o.top_p < 1 ? (float)o.top_p : 0.0f,
                                      .seed = o.seed >= 0 ? (uint64_t)o.seed : 42};
            if (!(gen = malloc((size_t)o.length * sizeof *gen))) cli_fail("out of memory");
            else if (generate_text(&cf, m, magna_tokenizer_vocab_size(tok), prompt, n_prompt, o.length, &s, gen)) {
                if (magna_tokenizer_decode(tok, gen, o.length, &text, &n_text, &err) != MAGNA_OK)
                    cli_fail("%s", err.message);
                else {
                    fwrite(p, 1, strlen(p), stdout);
                    fwrite(text, 1, (size_t)n_text, stdout);
                    fputc('\n', stdout);
                    rc = 0;
                }
            }
        }
        free(tok_text), free(prompt), free(gen), free(text);
        magna_tokenizer_free(tok);
        magna_model_free(m);
    }
    config_free(&cf);
    return rc;
}
