/* fmnist.c — Fashion-MNIST (60k training, 10k test images of 28 x 28 grey pixels, 10 classes of clothing)
 * with the seeds' two models, built from this one file as two programs (CMakeLists.txt):
 *   fmnist_mlp: 784 -> 128 (relu) -> 64 (relu) -> 10, 5 epochs;
 *   fmnist_cnn (FMNIST_CNN): on [N, 1, 28, 28], conv 32 (3 x 3, same) + relu -> max pool 2 -> conv 64 + relu
 *     -> max pool 2 -> conv 128 + relu -> max pool 2 (7 -> 3, floor as PyTorch) -> flatten (1152) -> dense 512
 *     relu -> dense 10, 3 epochs.
 * Both: Adam 1e-3, batch 64, sparse cross-entropy, pixels / 255. A seeded 5000 of the 60k training images are
 * held out for validation; the validation accuracy is printed after every epoch, the test accuracy at the
 * end with a confusion matrix and per-class accuracy. The last line is key=value results (samples_per_s and
 * seconds: the training epochs alone, without the validation passes).
 *
 *   build/fmnist_mlp|fmnist_cnn [--epochs N] [--seed S] [--threads T] [--data DIR] [--grid FILE.svg] [--limit N]
 *                    [--augment] [--torch-init] [--bf16]
 *
 * --data     the folder of {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (Debian's dataset-fashion-mnist)
 * --grid     writes an SVG of the first 64 test images with predicted labels, mistakes framed in red
 * --limit    uses only the first N images of the training split, the validation split and the test set
 * --augment  random shifts of up to 2 pixels and left-right flips, drawn afresh for every epoch
 * --torch-init  PyTorch's default initialisation (weights and biases uniform in +-1/sqrt(fan_in)) instead of
 *            magna's (He for ReLU layers, Glorot for the last, zero biases): MAGNA_INIT_TORCH on every layer
 * --bf16     bf16 mixed precision: the convolutions' operands in bf16 with float32 sums (oneDNN, on CPUs with
 *            avx512_bf16; float32 elsewhere), as PyTorch's CPU autocast */
#include "magna.h"

#include "args.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef FMNIST_CNN
#define PROGRAM "fmnist_cnn"
#define DEFAULT_EPOCHS 3
#define MODEL_NAME "CNN"
#else
#define PROGRAM "fmnist_mlp"
#define DEFAULT_EPOCHS 5
#define MODEL_NAME "MLP"
#endif

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"
enum { BATCH = 64, CLASSES = 10, VAL_IMAGES = 5000, GRID_IMAGES = 64 };

typedef struct args {
    int epochs, threads;
    uint64_t seed;
    int64_t limit;
    const char *data, *grid;
    bool augment, torch_init, bf16;
} args;

static bool parse_args(int argc, char **argv, args *a) {
    *a = (args){.epochs = DEFAULT_EPOCHS, .seed = 42, .data = DEFAULT_DATA};
    long long n; /* a number that does not parse whole, or is out of range, falls through to the usage */
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(k, "--augment") == 0)
            a->augment = true;
        else if (strcmp(k, "--torch-init") == 0)
            a->torch_init = true;
        else if (strcmp(k, "--bf16") == 0)
            a->bf16 = true;
        else if (!v)
            return false;
        else if (strcmp(k, "--epochs") == 0 && arg_int(v, 1, 100000, &n))
            a->epochs = (int)n, i++;
        else if (strcmp(k, "--seed") == 0 && arg_seed(v, &a->seed))
            i++;
        else if (strcmp(k, "--threads") == 0 && arg_int(v, 0, 4096, &n))
            a->threads = (int)n, i++;
        else if (strcmp(k, "--data") == 0)
            a->data = v, i++;
        else if (strcmp(k, "--grid") == 0)
            a->grid = v, i++;
        else if (strcmp(k, "--limit") == 0 && arg_int(v, 0, INT64_MAX, &n))
            a->limit = n, i++;
        else
            return false;
    }
    return a->epochs >= 1 && a->limit >= 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void limit_set(magna_image_set *s, int64_t limit) {
    if (limit > 0 && s->count > limit) s->count = limit; /* the arrays stay; free() does not need the count */
}

typedef struct progress {
    const magna_dataset *val;
    const magna_image_set *train; /* the unaugmented training images, with --augment */
    float *augmented;
    uint64_t seed;
    int epochs;
    double train_seconds, val_acc;
    bool failed;
} progress;

static bool on_epoch(magna_model *m, const magna_epoch_log *log, void *user) {
    progress *p = user;
    p->train_seconds += log->seconds; /* fit measured the epoch before calling us: training alone */
    magna_scores v;
    const double t0 = now();
    if (magna_model_evaluate(m, p->val, &v) != MAGNA_OK) {
        fprintf(stderr, PROGRAM ": %s\n", magna_model_errmsg(m));
        p->failed = true;
        return false;
    }
    p->val_acc = v.accuracy;
    printf("epoch %d/%d  %.2f s (%.0f samples/s)  train loss %.4f accuracy %.4f | val loss %.4f accuracy %.4f "
           "(%.2f s)\n",
           log->epoch, p->epochs, log->seconds, (double)log->train.samples / log->seconds, log->train.loss,
           log->train.accuracy, v.loss, v.accuracy, now() - t0);
    fflush(stdout);
    if (p->augmented && log->epoch < p->epochs) { /* fresh draws for the next epoch, into the same rows */
        magna_error err;
        if (magna_image_augment(p->train, p->augmented, &(magna_augment_opts){.max_shift = 2, .hflip = true}, p->seed,
                                (uint64_t)log->epoch, &err) != MAGNA_OK) {
            fprintf(stderr, PROGRAM ": %s\n", err.message);
            p->failed = true;
            return false;
        }
    }
    return true;
}

static void report(const int64_t *conf, const magna_scores *s) {
    const char *const *names = magna_fashion_mnist_classes;
    printf("\ntest: loss %.4f, accuracy %.4f (%lld images)\n", s->loss, s->accuracy, (long long)s->samples);
    printf("\nconfusion (rows: true class, columns: predicted)\n%-16s", "");
    for (int j = 0; j < CLASSES; j++) printf(" %5d", j);
    printf("   accuracy\n");
    for (int k = 0; k < CLASSES; k++) {
        int64_t total = 0;
        printf("%d %-14s", k, names[k]);
        for (int j = 0; j < CLASSES; j++)
            printf(" %5lld", (long long)conf[k * CLASSES + j]), total += conf[k * CLASSES + j];
        printf("   %.3f\n", total ? (double)conf[k * CLASSES + k] / (double)total : 0.0);
    }
}

static bool write_grid(magna_model *m, const magna_image_set *test, const char *path) {
    const int64_t n = test->count < GRID_IMAGES ? test->count : GRID_IMAGES;
    float *logits = malloc((size_t)(n * CLASSES) * sizeof *logits);
    int32_t pred[GRID_IMAGES];
    magna_error err;
    const magna_dataset d = {.rows = n, .x = test->pixels};
    if (!logits || magna_model_predict(m, &d, logits) != MAGNA_OK) {
        fprintf(stderr, PROGRAM ": grid: %s\n", logits ? magna_model_errmsg(m) : "out of memory");
        free(logits);
        return false;
    }
    for (int64_t i = 0; i < n; i++) {
        pred[i] = 0;
        for (int j = 1; j < CLASSES; j++)
            if (logits[i * CLASSES + j] > logits[i * CLASSES + pred[i]]) pred[i] = j;
    }
    free(logits);
    magna_grid_opts o = {.columns = 8,
                         .scale = 3,
                         .class_names = magna_fashion_mnist_classes,
                         .classes = CLASSES,
                         .title = "Fashion-MNIST test images, " MODEL_NAME " predictions (red: wrong, with the true class)"};
    if (magna_svg_image_grid(path, test->pixels, n, 1, test->height, test->width, test->labels, pred, &o, &err) !=
        MAGNA_OK) {
        fprintf(stderr, PROGRAM ": %s\n", err.message);
        return false;
    }
    printf("wrote %s (%lld test images)\n", path, (long long)n);
    return true;
}

int main(int argc, char **argv) {
    args a;
    if (!parse_args(argc, argv, &a)) {
        fprintf(stderr, "usage: " PROGRAM " [--epochs N] [--seed S] [--threads T] [--data DIR] [--grid FILE.svg] "
                        "[--limit N] [--augment] [--torch-init] [--bf16]\n");
        return 2;
    }
    if (a.threads > 0) magna_set_threads(a.threads);
    printf("%s\n", magna_runtime_info());

    magna_image_set all, train, val, test;
    magna_error err;
    const double t_load = now();
    if (magna_mnist_load(a.data, "train", CLASSES, &all, &err) != MAGNA_OK ||
        magna_mnist_load(a.data, "t10k", CLASSES, &test, &err) != MAGNA_OK ||
        magna_image_split(&all, VAL_IMAGES, a.seed, &train, &val, &err) != MAGNA_OK) {
        fprintf(stderr, PROGRAM ": %s\n", err.message);
        return 1;
    }
    magna_image_set_free(&all);
    limit_set(&train, a.limit), limit_set(&val, a.limit), limit_set(&test, a.limit);
    printf("%s: %lld training, %lld validation (split seed %llu), %lld test images of %lld x %lld; loaded in %.2f s\n",
           a.data, (long long)train.count, (long long)val.count, (unsigned long long)a.seed, (long long)test.count,
           (long long)train.height, (long long)train.width, now() - t_load);

    const int64_t pixels = magna_image_size(&train);
    float *augmented = NULL;
    if (a.augment) {
        if (!(augmented = malloc((size_t)(train.count * pixels) * sizeof(float))) ||
            magna_image_augment(&train, augmented, &(magna_augment_opts){.max_shift = 2, .hflip = true}, a.seed, 0,
                                &err) != MAGNA_OK) {
            fprintf(stderr, PROGRAM ": %s\n", augmented ? err.message : "out of memory");
            return 1;
        }
    }
    const magna_dataset train_set = {.rows = train.count,
                                     .x = augmented ? augmented : train.pixels,
                                     .labels = train.labels},
                        val_set = {.rows = val.count, .x = val.pixels, .labels = val.labels},
                        test_set = {.rows = test.count, .x = test.pixels, .labels = test.labels};

    magna_model *m = magna_model_new(a.seed, BATCH);
    const magna_init_scheme init = a.torch_init ? MAGNA_INIT_TORCH : MAGNA_INIT_KERAS;
#ifdef FMNIST_CNN
    magna_model_input(m, "x", MAGNA_F32, 3, (int64_t[]){train.channels, train.height, train.width});
    magna_layer_spec layers[] = {MAGNA_CONV2D(32, 3, MAGNA_ACT_RELU),  MAGNA_MAX_POOL2D(2),
                                 MAGNA_CONV2D(64, 3, MAGNA_ACT_RELU),  MAGNA_MAX_POOL2D(2),
                                 MAGNA_CONV2D(128, 3, MAGNA_ACT_RELU), MAGNA_MAX_POOL2D(2),
                                 MAGNA_FLATTEN(),                      MAGNA_DENSE(512, MAGNA_ACT_RELU),
                                 MAGNA_DENSE(CLASSES, MAGNA_ACT_NONE)};
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++) layers[i].init = init;
    magna_model_sequential(m, layers, 9);
    if (magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                     .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-3f},
                                                     .metrics = MAGNA_METRIC_ACCURACY, .bf16 = a.bf16}) != MAGNA_OK) {
        fprintf(stderr, PROGRAM ": %s\n", magna_model_errmsg(m));
        return 1;
    }
    printf("CNN conv32-pool-conv64-pool-conv128-pool-dense512-dense10, Adam 1e-3, batch %d, %d epochs, sparse "
           "cross-entropy%s%s\n",
           BATCH, a.epochs, a.augment ? ", augmented (shift 2, flip)" : "", a.torch_init ? ", PyTorch's init" : "");
    if (a.bf16) printf("bf16 convolutions (float32 where the CPU lacks avx512_bf16)\n");
#else
    magna_model_input(m, "x", MAGNA_F32, 1, (int64_t[]){pixels});
    magna_layer_spec layers[] = {MAGNA_DENSE(128, MAGNA_ACT_RELU), MAGNA_DENSE(64, MAGNA_ACT_RELU),
                                 MAGNA_DENSE(CLASSES, MAGNA_ACT_NONE)};
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++) layers[i].init = init;
    magna_model_sequential(m, layers, 3);
    if (magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                     .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-3f},
                                                     .metrics = MAGNA_METRIC_ACCURACY}) != MAGNA_OK) {
        fprintf(stderr, PROGRAM ": %s\n", magna_model_errmsg(m));
        return 1;
    }
    printf("MLP 784-128-64-10, Adam 1e-3, batch %d, %d epochs, sparse cross-entropy%s%s\n", BATCH, a.epochs,
           a.augment ? ", augmented (shift 2, flip)" : "", a.torch_init ? ", PyTorch's init" : "");
#endif
    magna_model_summary(m, stdout);

    progress p = {.val = &val_set, .train = &train, .augmented = augmented, .seed = a.seed, .epochs = a.epochs};
    magna_history h;
    const double t_fit = now();
    if (magna_model_fit(m, &train_set, NULL,
                        &(magna_fit_opts){.epochs = a.epochs, .on_epoch_end = on_epoch, .user = &p}, &h) != MAGNA_OK ||
        p.failed) {
        if (!p.failed) fprintf(stderr, PROGRAM ": %s\n", magna_model_errmsg(m));
        return 1;
    }
    const double fit_seconds = now() - t_fit;

    magna_scores s;
    int64_t conf[CLASSES * CLASSES];
    if (magna_model_evaluate(m, &test_set, &s) != MAGNA_OK ||
        magna_model_confusion(m, &test_set, conf, NULL, NULL, NULL) != MAGNA_OK) {
        fprintf(stderr, PROGRAM ": %s\n", magna_model_errmsg(m));
        return 1;
    }
    report(conf, &s);
    if (a.grid && !write_grid(m, &test, a.grid)) return 1;
    const double samples = (double)train.count * h.count;
    printf("test_acc=%.4f test_loss=%.4f val_acc=%.4f seed=%llu epochs=%d threads=%d samples_per_s=%.0f "
           "seconds=%.3f fit_seconds=%.3f\n",
           s.accuracy, s.loss, p.val_acc, (unsigned long long)a.seed, h.count, magna_get_threads(),
           samples / p.train_seconds, p.train_seconds, fit_seconds);
    magna_history_free(&h);
    magna_model_free(m);
    free(augmented);
    magna_image_set_free(&train), magna_image_set_free(&val), magna_image_set_free(&test);
    return 0;
}
