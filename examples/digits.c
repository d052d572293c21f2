/* digits.c — scikit-learn's 8x8 handwritten digits (1797 images, 64 pixels of 0..16, 10 classes): an MLP
 * 64 -> 128 (relu) -> 64 (relu) -> 10, Adam 1e-3, batch 32, sparse cross-entropy, on a seeded 80/20 split
 * with the pixels scaled to [0, 1]. Prints the confusion matrix, per-class F1 and a last line of key=value
 * results.
 *
 *   build/digits [csv path] [epochs] [seed] [--dump-split FILE]
 *
 * --dump-split writes the split as JSON ({"train": [...], "test": [...]}, 0-based row indices in file order)
 * so that bench/torch_tabular.py trains PyTorch on exactly the same rows. */
#include "magna.h"

#include "args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CSV "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
enum { BATCH = 32, CLASSES = 10, PIXELS = 64 };


typedef struct progress {
    const magna_dataset *test;
    int epochs;
} progress;

static bool every_5(magna_model *m, const magna_epoch_log *log, void *user) {
    const progress *p = user;
    if (log->epoch == 1 || log->epoch % 5 == 0 || log->epoch == p->epochs) {
        magna_scores s;
        magna_model_evaluate(m, p->test, &s); /* for watching only; log->seconds is measured before */
        printf("epoch %3d/%d  %.2f ms  train (running): loss %.4f accuracy %.4f | test accuracy %.4f\n", log->epoch,
               p->epochs, 1e3 * log->seconds, log->train.loss, log->train.accuracy, s.accuracy);
    }
    return true;
}

int main(int argc, char **argv) {
    const char *path = DEFAULT_CSV, *split_file = NULL;
    int epochs = 30;
    uint64_t seed = 42;
    for (int i = 1, pos = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dump-split") == 0 && i + 1 < argc) split_file = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "usage: digits [csv] [epochs] [seed] [--dump-split FILE]\n");
            return 2;
        } else if (pos == 0) path = argv[i], pos++;
        else if (pos == 1 || pos == 2) {
            if (!arg_epochs_or_seed("digits", pos++, argv[i], &epochs, &seed)) return 2;
        }
    }
    printf("%s\n", magna_runtime_info());
    /* no header: 64 pixel columns named "0".."63", then the class in "64" */
    magna_table t, train, test;
    magna_error err;
    float *x = NULL, *x_test = NULL;
    int32_t *labels = NULL, *labels_test = NULL, classes = 0, classes_test = 0;
    int64_t d = 0, d_test = 0;
    if (magna_csv_read(path, &(magna_csv_options){.no_header = true}, &t, &err) != MAGNA_OK ||
        magna_table_split(&t, 0.0, 0.2, seed, &train, NULL, &test, &err) != MAGNA_OK ||
        magna_table_features(&train, NULL, "64", &x, &d, &err) != MAGNA_OK ||
        magna_table_features(&test, NULL, "64", &x_test, &d_test, &err) != MAGNA_OK ||
        magna_table_labels(&train, "64", &labels, &classes, &err) != MAGNA_OK ||
        magna_table_labels(&test, "64", &labels_test, &classes_test, &err) != MAGNA_OK) {
        fprintf(stderr, "digits: %s\n", err.message);
        return 1;
    }
    if (d != PIXELS || classes > CLASSES || classes_test > CLASSES) {
        fprintf(stderr, "digits: %s: expected 64 pixels and classes 0..9\n", path);
        return 1;
    }
    if (split_file && magna_table_dump_split(split_file, &t, &train, &test, NULL) != MAGNA_OK) {
        fprintf(stderr, "digits: cannot write %s\n", split_file);
        return 1;
    }
    for (int64_t i = 0; i < train.rows * d; i++) x[i] /= 16;
    for (int64_t i = 0; i < test.rows * d; i++) x_test[i] /= 16;
    printf("%s: %lld images of %lld pixels, %d classes; split seed %llu: %lld training rows, %lld test rows\n", path,
           (long long)t.rows, (long long)d, CLASSES, (unsigned long long)seed, (long long)train.rows,
           (long long)test.rows);
    const magna_dataset train_set = {.rows = train.rows, .x = x, .labels = labels},
                        test_set = {.rows = test.rows, .x = x_test, .labels = labels_test};

    magna_model *m = magna_model_new(seed, BATCH);
    magna_model_input(m, "x", MAGNA_F32, 1, (int64_t[]){d});
    magna_model_sequential(m,
                           (magna_layer_spec[]){MAGNA_DENSE(128, MAGNA_ACT_RELU), MAGNA_DENSE(64, MAGNA_ACT_RELU),
                                                MAGNA_DENSE(CLASSES, MAGNA_ACT_NONE)},
                           3);
    if (magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                     .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-3f},
                                                     .metrics = MAGNA_METRIC_ACCURACY}) != MAGNA_OK) {
        fprintf(stderr, "digits: %s\n", magna_model_errmsg(m));
        return 1;
    }
    printf("MLP, Adam 1e-3, batch %d, %d epochs, sparse cross-entropy\n", BATCH, epochs);
    magna_model_summary(m, stdout);
    magna_history h;
    progress p = {.test = &test_set, .epochs = epochs};
    if (magna_model_fit(m, &train_set, NULL, &(magna_fit_opts){.epochs = epochs, .on_epoch_end = every_5, .user = &p},
                        &h) != MAGNA_OK) {
        fprintf(stderr, "digits: %s\n", magna_model_errmsg(m));
        return 1;
    }
    double seconds = 0; /* the epochs' own time, without the progress lines' test evaluations */
    for (int e = 0; e < h.count; e++) seconds += h.epochs[e].seconds;
    magna_scores s;
    int64_t conf[CLASSES * CLASSES];
    double precision[CLASSES], recall[CLASSES], f1[CLASSES];
    if (magna_model_evaluate(m, &test_set, &s) != MAGNA_OK ||
        magna_model_confusion(m, &test_set, conf, precision, recall, f1) != MAGNA_OK) {
        fprintf(stderr, "digits: %s\n", magna_model_errmsg(m));
        return 1;
    }
    printf("\ntest: loss %.4f, accuracy %.4f (%lld images)\n", s.loss, s.accuracy, (long long)s.samples);
    printf("\nconfusion (rows: true digit, columns: predicted)   precision recall   f1\n     ");
    for (int j = 0; j < CLASSES; j++) printf(" %4d", j);
    printf("\n");
    for (int k = 0; k < CLASSES; k++) {
        printf("%4d ", k);
        for (int j = 0; j < CLASSES; j++) printf(" %4lld", (long long)conf[k * CLASSES + j]);
        printf("      %6.3f %6.3f %6.3f\n", precision[k], recall[k], f1[k]);
    }
    const double samples = (double)train.rows * h.count;
    printf("test_acc=%.4f test_loss=%.4f seed=%llu epochs=%d samples_per_s=%.0f seconds=%.3f ms_per_epoch=%.3f\n",
           s.accuracy, s.loss, (unsigned long long)seed, h.count, samples / seconds, seconds, 1e3 * seconds / h.count);
    magna_history_free(&h);
    magna_model_free(m);
    free(x), free(x_test), free(labels), free(labels_test);
    magna_table_free(&t), magna_table_free(&train), magna_table_free(&test);
    return 0;
}
