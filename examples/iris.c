/* iris.c — Fisher's iris (150 rows, 4 measurements, 3 species): an MLP 4 -> 16 (relu) -> 3 trained with
 * Adam on sparse cross-entropy, on a seeded 80/20 split with the features standardised by the training rows'
 * statistics only. Prints per-class precision, recall and F1, the confusion matrix, and a last line of
 * key=value results.
 *
 *   build/iris [csv path] [epochs] [seed] [--dump-split FILE]
 *
 * --dump-split writes the split as JSON ({"train": [...], "test": [...]}, 0-based data row indices in file
 * order), for comparing with other tools on the same rows. */
#include "magna.h"

#include "args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_CSV "/usr/lib/python3/dist-packages/sklearn/datasets/data/iris.csv"
#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})
enum { HIDDEN = 16, BATCH = 16, CLASSES = 3 };
static const char *const SPECIES[CLASSES] = {"setosa", "versicolor", "virginica"};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}


static bool every_20(magna_model *m, const magna_epoch_log *log, void *user) {
    (void)m;
    const int epochs = *(const int *)user;
    if (log->epoch == 1 || log->epoch % 20 == 0 || log->epoch == epochs)
        printf("epoch %3d/%d  loss %.4f  accuracy %.4f (training batches, running)\n", log->epoch, epochs,
               log->train.loss, log->train.accuracy);
    return true;
}

int main(int argc, char **argv) {
    const char *path = DEFAULT_CSV, *split_file = NULL;
    int epochs = 100;
    uint64_t seed = 42;
    for (int i = 1, pos = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dump-split") == 0 && i + 1 < argc) split_file = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "usage: iris [csv] [epochs] [seed] [--dump-split FILE]\n");
            return 2;
        } else if (pos == 0) path = argv[i], pos++;
        else if (pos == 1 || pos == 2) {
            if (!arg_epochs_or_seed("iris", pos++, argv[i], &epochs, &seed)) return 2;
        }
    }
    printf("%s\n", magna_runtime_info());
    /* scikit-learn's file: a line of counts and class names, then rows of 4 floats and a class index */
    magna_csv_options o = {.skip_lines = 1,
                           .no_header = true,
                           .names = NAMES("sepal length", "sepal width", "petal length", "petal width", "species")};
    magna_table t, train, test;
    magna_standardizer scaler;
    magna_error err;
    float *x = NULL, *x_test = NULL;
    int32_t *labels = NULL, *labels_test = NULL, classes = 0, classes_test = 0;
    int64_t d = 0, d_test = 0;
    if (magna_csv_read(path, &o, &t, &err) != MAGNA_OK ||
        magna_table_split(&t, 0.0, 0.2, seed, &train, NULL, &test, &err) != MAGNA_OK ||
        magna_standardizer_fit(&scaler, &train, NULL, "species", &err) != MAGNA_OK ||
        magna_standardizer_apply(&scaler, &train, &err) != MAGNA_OK ||
        magna_standardizer_apply(&scaler, &test, &err) != MAGNA_OK ||
        magna_table_features(&train, NULL, "species", &x, &d, &err) != MAGNA_OK ||
        magna_table_features(&test, NULL, "species", &x_test, &d_test, &err) != MAGNA_OK ||
        magna_table_labels(&train, "species", &labels, &classes, &err) != MAGNA_OK ||
        magna_table_labels(&test, "species", &labels_test, &classes_test, &err) != MAGNA_OK) {
        fprintf(stderr, "iris: %s\n", err.message);
        return 1;
    }
    if (classes > CLASSES || classes_test > CLASSES) {
        fprintf(stderr, "iris: %s: expected class indices 0..2\n", path);
        return 1;
    }
    if (split_file && magna_table_dump_split(split_file, &t, &train, &test, NULL) != MAGNA_OK) {
        fprintf(stderr, "iris: cannot write %s\n", split_file);
        return 1;
    }
    printf("%s: %lld rows, %lld features, %d classes; split seed %llu: %lld training rows, %lld test rows\n", path,
           (long long)t.rows, (long long)d, CLASSES, (unsigned long long)seed, (long long)train.rows,
           (long long)test.rows);
    const magna_dataset train_set = {.rows = train.rows, .x = x, .labels = labels},
                        test_set = {.rows = test.rows, .x = x_test, .labels = labels_test};

    magna_model *m = magna_model_new(seed, BATCH);
    magna_model_input(m, "x", MAGNA_F32, 1, (int64_t[]){d});
    magna_model_sequential(
        m, (magna_layer_spec[]){MAGNA_DENSE(HIDDEN, MAGNA_ACT_RELU), MAGNA_DENSE(CLASSES, MAGNA_ACT_NONE)}, 2);
    if (magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                     .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-2f},
                                                     .metrics = MAGNA_METRIC_ACCURACY}) != MAGNA_OK) {
        fprintf(stderr, "iris: %s\n", magna_model_errmsg(m));
        return 1;
    }
    printf("MLP, Adam 1e-2, batch %d, %d epochs, sparse cross-entropy\n", BATCH, epochs);
    magna_model_summary(m, stdout);
    magna_history h;
    const double t0 = now();
    magna_fit_opts fit = {.epochs = epochs, .on_epoch_end = every_20, .user = &epochs};
    if (magna_model_fit(m, &train_set, NULL, &fit, &h) != MAGNA_OK) {
        fprintf(stderr, "iris: %s\n", magna_model_errmsg(m));
        return 1;
    }
    const double seconds = now() - t0;
    magna_scores s;
    int64_t conf[CLASSES * CLASSES];
    double precision[CLASSES], recall[CLASSES], f1[CLASSES];
    if (magna_model_evaluate(m, &test_set, &s) != MAGNA_OK ||
        magna_model_confusion(m, &test_set, conf, precision, recall, f1) != MAGNA_OK) {
        fprintf(stderr, "iris: %s\n", magna_model_errmsg(m));
        return 1;
    }
    printf("\ntest: loss %.4f, accuracy %.4f (%lld rows)\n\n%-12s %9s %9s %9s %8s\n", s.loss, s.accuracy,
           (long long)s.samples, "class", "precision", "recall", "f1", "support");
    for (int k = 0; k < CLASSES; k++) {
        int64_t support = 0;
        for (int j = 0; j < CLASSES; j++) support += conf[k * CLASSES + j];
        printf("%-12s %9.3f %9.3f %9.3f %8lld\n", SPECIES[k], precision[k], recall[k], f1[k], (long long)support);
    }
    printf("\nconfusion (rows: true, columns: predicted)\n%-12s", "");
    for (int j = 0; j < CLASSES; j++) printf(" %10s", SPECIES[j]);
    printf("\n");
    for (int k = 0; k < CLASSES; k++) {
        printf("%-12s", SPECIES[k]);
        for (int j = 0; j < CLASSES; j++) printf(" %10lld", (long long)conf[k * CLASSES + j]);
        printf("\n");
    }
    printf("test_acc=%.4f test_loss=%.4f seed=%llu epochs=%d seconds=%.3f\n", s.accuracy, s.loss,
           (unsigned long long)seed, h.count, seconds);
    magna_history_free(&h);
    magna_model_free(m);
    free(x), free(x_test), free(labels), free(labels_test);
    magna_standardizer_free(&scaler);
    magna_table_free(&t), magna_table_free(&train), magna_table_free(&test);
    return 0;
}
