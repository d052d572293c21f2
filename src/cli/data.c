/* data.c — the `magna` command's data: CSV tables, IDX images, a text corpus and the numbers task, read as
 * a model file's [data] section says, split and prepared for training, evaluation and prediction. */
#include "data.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void data_free(data *d) {
    for (int k = 0; k < 9; k++) free(d->owned[k]);
    for (int k = 0; k < 3; k++) magna_image_set_free(&d->sets[k]);
    magna_standardizer_free(&d->st);
    free(d->mean), free(d->sd);
    for (int k = 0; d->features && d->features[k]; k++) free(d->features[k]);
    free(d->features);
    magna_corpus_free(&d->corpus);
    magna_tokenizer_free(d->tok);
    free(d->ids[0]), free(d->ids[1]);
    magna_numbers_free(&d->numbers[0]), magna_numbers_free(&d->numbers[1]);
}

void scale_rows(float *x, int64_t n, double scale) {
    if (x && scale != 1.0)
        for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] * scale);
}

static bool load_csv(const config *cf, data *d) {
    magna_csv_options o = {.skip_lines = (int)cf->skip, .no_header = !cf->header,
                           .names = (const char *const *)cf->names};
    magna_table t, part[3] = {0};
    magna_error err;
    if (magna_csv_read(cf->data_path, &o, &t, &err) != MAGNA_OK) return cli_fail("%s", err.message);
    const char *col = cf->target ? cf->target : cf->label;
    if (magna_table_column(&t, col) < 0) {
        magna_table_free(&t);
        return cli_fail("%s: no column '%s' (%s:%d, [data] %s)", cf->data_path, col, cf->path, cf->data_line,
                    cf->target ? "target" : "label");
    }
    if (!(d->features = calloc((size_t)t.cols + 1, sizeof *d->features))) {
        magna_table_free(&t);
        return cli_fail("out of memory");
    }
    for (int64_t c = 0, k = 0; c < t.cols; c++)
        if (strcmp(t.names[c], col) != 0 && !(d->features[k++] = strdup(t.names[c]))) {
            magna_table_free(&t);
            return cli_fail("out of memory");
        }
    double val = cf->validation;
    if (val >= 1) val = (val - 0.5) / (double)t.rows; /* a count of rows; split takes ceil(rows * fraction) */
    bool ok = true;
    magna_standardizer *st = &d->st;
    if (magna_table_split(&t, val, cf->test, cf->data_seed, &part[0], val > 0 ? &part[1] : NULL,
                          cf->test > 0 ? &part[2] : NULL, &err) != MAGNA_OK)
        ok = cli_fail("%s", err.message);
    if (ok && cf->standardise &&
        (magna_standardizer_fit(st, &part[0], NULL, col, &err) != MAGNA_OK ||
         magna_standardizer_apply(st, &part[0], &err) != MAGNA_OK ||
         (val > 0 && magna_standardizer_apply(st, &part[1], &err) != MAGNA_OK) ||
         (cf->test > 0 && magna_standardizer_apply(st, &part[2], &err) != MAGNA_OK)))
        ok = cli_fail("%s", err.message);
    magna_dataset *sets[3] = {&d->train, &d->val, &d->test};
    for (int k = 0; ok && k < 3; k++) {
        if (k == 1 && !(val > 0)) continue;
        if (k == 2 && !(cf->test > 0)) continue;
        float *x = NULL, *y = NULL;
        int32_t *labels = NULL, classes = 0;
        int64_t width = 0;
        if (magna_table_features(&part[k], NULL, col, &x, &width, &err) != MAGNA_OK ||
            (cf->target ? magna_table_target(&part[k], col, &y, &err)
                        : magna_table_labels(&part[k], col, &labels, &classes, &err)) != MAGNA_OK)
            ok = cli_fail("%s", err.message);
        d->owned[3 * k] = x, d->owned[3 * k + 1] = y, d->owned[3 * k + 2] = labels;
        if (!ok) break;
        scale_rows(x, part[k].rows * width, cf->scale);
        *sets[k] = (magna_dataset){.rows = part[k].rows, .x = x, .y = y, .labels = labels};
        if (cf->limit > 0 && sets[k]->rows > cf->limit) sets[k]->rows = cf->limit;
        d->width = width;
    }
    d->has_val = val > 0, d->has_test = cf->test > 0;
    if (ok)
        snprintf(d->desc, sizeof d->desc,
                 "%s: %lld rows, %lld features; split seed %llu: %lld training, %lld validation, %lld test rows",
                 cf->data_path, (long long)t.rows, (long long)d->width, (unsigned long long)cf->data_seed,
                 (long long)d->train.rows, (long long)d->val.rows, (long long)d->test.rows);
    magna_table_free(&t);
    for (int k = 0; k < 3; k++) magna_table_free(&part[k]);
    return ok;
}

static bool load_idx(const config *cf, data *d) {
    magna_image_set all = {0};
    magna_error err;
    int64_t val = (int64_t)cf->validation;
    if (magna_mnist_load(cf->data_path, "train", (int32_t)cf->classes, &all, &err) != MAGNA_OK ||
        magna_mnist_load(cf->data_path, "t10k", (int32_t)cf->classes, &d->sets[2], &err) != MAGNA_OK) {
        magna_image_set_free(&all);
        return cli_fail("%s", err.message);
    }
    if (cf->validation > 0 && cf->validation < 1) val = (int64_t)ceil(cf->validation * (double)all.count);
    if (val >= all.count) {
        magna_image_set_free(&all);
        return cli_fail("%s: validation asks for %lld of the %lld training images (%s:%d)", cf->data_path, (long long)val,
                    (long long)all.count, cf->path, cf->data_line);
    }
    magna_status st = magna_image_split(&all, val, cf->data_seed, &d->sets[0], val > 0 ? &d->sets[1] : NULL, &err);
    magna_image_set_free(&all);
    if (st != MAGNA_OK) return cli_fail("%s", err.message);
    const int64_t c = d->sets[0].channels;
    if (cf->standardise) {
        double *mean = calloc((size_t)c, sizeof *mean), *sd = calloc((size_t)c, sizeof *sd);
        bool ok = mean && sd && magna_image_mean_std(&d->sets[0], mean, sd, &err) == MAGNA_OK;
        for (int k = 0; ok && k < 3; k++)
            if (d->sets[k].count) ok = magna_image_standardize(&d->sets[k], mean, sd, &err) == MAGNA_OK;
        d->mean = mean, d->sd = sd; /* data_free frees them */
        if (!ok) return cli_fail("%s", err.message);
    }
    magna_dataset *sets[3] = {&d->train, &d->val, &d->test};
    for (int k = 0; k < 3; k++) {
        magna_image_set *s = &d->sets[k];
        if (cf->limit > 0 && s->count > cf->limit) s->count = cf->limit;
        scale_rows(s->pixels, s->count * magna_image_size(s), cf->scale);
        *sets[k] = (magna_dataset){.rows = s->count, .x = s->pixels, .labels = s->labels};
    }
    d->width = magna_image_size(&d->sets[0]);
    d->has_val = val > 0, d->has_test = true;
    snprintf(d->desc, sizeof d->desc,
             "%s: %lld training, %lld validation (split seed %llu), %lld test images of %lld x %lld x %lld",
             cf->data_path, (long long)d->train.rows, (long long)d->val.rows, (unsigned long long)cf->data_seed,
             (long long)d->test.rows, (long long)c, (long long)d->sets[0].height, (long long)d->sets[0].width);
    return true;
}

/* The corpus split by position, the tokenizer (trained on the training part, or `tok_text`: a checkpoint's),
 * the ids of both parts, the validation windows and, when `train`, steps x batch random training windows
 * (drawn from the data seed, so a resumed run has the same ones). */
static bool load_text(const config *cf, const char *tok_text, bool train, data *d) {
    magna_error err;
    int64_t cut;
    if (magna_corpus_load(cf->data_path, &d->corpus, &err) != MAGNA_OK)
        return cli_fail("%s (%s:%d, [data] path)", err.message, cf->path, cf->data_line);
    const uint8_t *text = d->corpus.data;
    if (magna_text_split(text, d->corpus.size, cf->validation, &cut, &err) != MAGNA_OK)
        return cli_fail("%s: %s", cf->data_path, err.message);
    magna_status st;
    if (tok_text) st = magna_tokenizer_from_string(tok_text, &d->tok, &err);
    else if (cf->tokenizer == MAGNA_TOKENIZER_BYTES) st = magna_tokenizer_bytes(&d->tok, &err);
    else if (cf->tokenizer == MAGNA_TOKENIZER_CHARS) st = magna_tokenizer_train_chars(text, cut, cf->unk, &d->tok, &err);
    else st = magna_tokenizer_train_bpe(text, cut, (int32_t)cf->bpe_vocab, &d->tok, &err);
    if (st != MAGNA_OK) return cli_fail("%s%s", tok_text ? "the weights' tokenizer: " : "", err.message);
    if (magna_tokenizer_get_kind(d->tok) != cf->tokenizer)
        return cli_fail("%s:%d: [data] tokenizer is %s, the weights were trained with a %s tokenizer", cf->path,
                        cf->data_line, magna_tokenizer_kind_name(cf->tokenizer),
                        magna_tokenizer_kind_name(magna_tokenizer_get_kind(d->tok)));
    d->vocab = magna_tokenizer_vocab_size(d->tok);
    if (magna_tokenizer_encode(d->tok, text, cut, &d->ids[0], &d->n_ids[0], &err) != MAGNA_OK ||
        magna_tokenizer_encode(d->tok, text + cut, d->corpus.size - cut, &d->ids[1], &d->n_ids[1], &err) != MAGNA_OK)
        return cli_fail("%s: %s", cf->data_path, err.message);
    const int64_t T = cf->context;
    if (d->n_ids[0] <= T || d->n_ids[1] < 2)
        return cli_fail("%s: %lld training and %lld validation tokens: windows of %lld tokens need more (%s:%d)",
                        cf->data_path, (long long)d->n_ids[0], (long long)d->n_ids[1], (long long)T, cf->path,
                        cf->data_line);
    const int64_t windows = magna_lm_window_count(d->n_ids[1], T);
    int32_t *vx = d->owned[2] = malloc((size_t)(windows * T) * sizeof *vx);
    int32_t *vy = d->owned[3] = malloc((size_t)(windows * T) * sizeof *vy);
    if (!vx || !vy) return cli_fail("out of memory");
    if (magna_lm_windows_sequential(d->ids[1], d->n_ids[1], T, vx, vy, &err) != MAGNA_OK)
        return cli_fail("%s", err.message);
    d->val = (magna_dataset){.rows = cf->eval_windows > 0 && cf->eval_windows < windows ? cf->eval_windows : windows,
                             .x_i32 = vx, .labels = vy};
    d->has_val = true;
    if (train) {
        const int64_t rows = cf->steps * cf->batch;
        int32_t *x = d->owned[0] = malloc((size_t)(rows * T) * sizeof *x);
        int32_t *y = d->owned[1] = malloc((size_t)(rows * T) * sizeof *y);
        if (!x || !y) return cli_fail("out of memory for %lld training windows", (long long)rows);
        if (magna_lm_windows_random(d->ids[0], d->n_ids[0], T, rows, cf->data_seed, 0, x, y, &err) != MAGNA_OK)
            return cli_fail("%s", err.message);
        d->train = (magna_dataset){.rows = rows, .x_i32 = x, .labels = y};
    }
    snprintf(d->desc, sizeof d->desc,
             "%s: %d file%s, %lld bytes; %s tokenizer, vocabulary %lld; %lld training tokens, %lld validation tokens "
             "(the last %g of the bytes), %lld of %lld validation windows of %lld",
             cf->data_path, d->corpus.files, d->corpus.files == 1 ? "" : "s", (long long)d->corpus.size,
             magna_tokenizer_kind_name(cf->tokenizer), (long long)d->vocab, (long long)d->n_ids[0],
             (long long)d->n_ids[1], cf->validation, (long long)d->val.rows, (long long)windows, (long long)T);
    return true;
}

/* Random token windows (a benchmark's data, no corpus): a stream of steps x batch x context + 1 ids uniform in
 * [0, vocab) from the data seed, window r its ids r T .. r T + T - 1 and the targets the ids one further. */
static bool load_random(const config *cf, bool train, data *d) {
    const int64_t T = cf->context, rows = train ? cf->steps * cf->batch : 0;
    d->vocab = cf->random_vocab;
    if (train) {
        const int64_t n = rows * T + 1;
        int32_t *ids = d->owned[0] = malloc((size_t)n * sizeof *ids);
        if (!ids) return cli_fail("out of memory for %lld random training windows of %lld", (long long)rows, (long long)T);
        for (int64_t i = 0; i < n; i++)
            ids[i] = (int32_t)(magna_rand_u64(cf->data_seed, 0x70c3e5ull, (uint64_t)i) % (uint64_t)cf->random_vocab);
        d->train = (magna_dataset){.rows = rows, .x_i32 = ids, .labels = ids + 1};
    }
    char count[64] = "";
    if (train) snprintf(count, sizeof count, "%lld training ", (long long)rows);
    snprintf(d->desc, sizeof d->desc,
             "random tokens: ids uniform in [0, %lld), seed %llu; %swindows of %lld, no validation (nothing to learn: "
             "the loss can only fall to ln %lld = %.4f)",
             (long long)cf->random_vocab, (unsigned long long)cf->data_seed, count, (long long)T,
             (long long)cf->random_vocab, log((double)cf->random_vocab));
    return true;
}

/* The words -> digits task: steps x batch fresh training examples (when `train`), and the held-out ones. */
static bool load_numbers(const config *cf, bool train, data *d) {
    magna_error err;
    if ((train && magna_numbers_make(&d->numbers[0], cf->steps * cf->batch, cf->data_seed, 1, false, &err) != MAGNA_OK) ||
        magna_numbers_make(&d->numbers[1], cf->test_rows, cf->data_seed, 2, true, &err) != MAGNA_OK)
        return cli_fail("%s", err.message);
    if (train) d->train = magna_numbers_dataset(&d->numbers[0]);
    d->test = magna_numbers_dataset(&d->numbers[1]);
    d->has_test = true;
    char words[160];
    magna_number_words(342105, words);
    char train_rows[64] = "";
    if (train) snprintf(train_rows, sizeof train_rows, "%lld training examples, ", (long long)d->train.rows);
    snprintf(d->desc, sizeof d->desc,
             "numbers in words -> digits (\"%s\" -> 342105), below 1e6, seed %llu: %s%lld held-out test examples "
             "(a tenth of the numbers, never trained on)",
             words, (unsigned long long)cf->data_seed, train_rows, (long long)d->test.rows);
    return true;
}

/* The data of the model file; `tok_text`: a text model's tokenizer from its weights (NULL: trained here);
 * `train`: the training windows or examples too. */
bool load_data(const config *cf, const char *tok_text, bool train, data *d) {
    *d = (data){0};
    if (cf->kind == DATA_TEXT || cf->kind == DATA_NUMBERS) {
        const bool ok = cf->random_tokens       ? load_random(cf, train, d)
                        : cf->kind == DATA_TEXT ? load_text(cf, tok_text, train, d)
                                                : load_numbers(cf, train, d);
        if (!ok) data_free(d);
        return ok;
    }
    bool ok = cf->kind == DATA_CSV ? load_csv(cf, d) : load_idx(cf, d);
    if (ok) {
        int64_t n = 1;
        for (int k = 0; k < cf->input_ndim; k++) n *= cf->input[k];
        if (n != d->width)
            ok = cli_fail("%s:%d: [model] input has %lld values per sample, the data has %lld", cf->path, cf->model_line,
                      (long long)n, (long long)d->width);
    }
    if (!ok) data_free(d);
    return ok;
}

