/* data.h — the `magna` command's data: what a model file's [data] section describes, read and split
 * (src/cli/data.c). */
#ifndef MAGNA_CLI_DATA_H
#define MAGNA_CLI_DATA_H

#include "model_file.h"

typedef struct data {
    magna_dataset train, val, test;
    bool has_val, has_test;
    int64_t width;
    void *owned[9];
    magna_image_set sets[3];
    magna_standardizer st;   /* csv: fitted on the training rows (predict applies it to new rows) */
    double *mean, *sd;       /* idx: per channel, fitted on the training images */
    char **features;         /* csv: the feature columns, in the training table's order, NULL-terminated */
    /* text: the corpus, its tokenizer, the token ids of the training and validation parts (train windows in
     * owned[0..1], validation windows in owned[2..3]) */
    magna_corpus corpus;
    magna_tokenizer *tok;
    int32_t *ids[2];
    int64_t n_ids[2], vocab;
    magna_numbers numbers[2]; /* numbers: training and held-out examples */
    char desc[512];
} data;

void data_free(data *d);
/* x[0..n) *= scale (the model file's scale; 1 leaves them). */
void scale_rows(float *x, int64_t n, double scale);
/* The data of the model file (CSV, IDX, a text corpus or the numbers task); false with cli_error set.
 * tok_text: a text model's tokenizer from its weights (NULL: trained on the training part); train: the
 * training windows or examples too. */
bool load_data(const config *cf, const char *tok_text, bool train, data *d);

#endif
