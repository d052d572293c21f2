/* test_cnn_overfit.c — a small CNN through the model API (conv, relu, max pool, flatten, dense, sparse
 * cross-entropy, Adam) must learn 32 real Fashion-MNIST images by heart: 100% training accuracy within a
 * bounded number of epochs. A wiring mistake anywhere in the conv path (a wrong gradient, a layout mix-up
 * between NCHW and the weights, a pooling index off by one) shows up as a plateau well below 100%. The
 * epochs run one fit call at a time, on augmented copies first, which also checks that fit keeps its
 * optimizer state across calls and that a dataset's pixels may change between epochs. */
#include "magna.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"
enum { IMAGES = 32, MAX_EPOCHS = 150 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(void) {
    magna_image_set test;
    magna_error e;
    magna_status st = magna_mnist_load(FMNIST, "t10k", 10, &test, &e);
    CHECK(st == MAGNA_OK, "%s (Debian's dataset-fashion-mnist: apt-get install dataset-fashion-mnist)",
          st ? e.message : "");
    if (st != MAGNA_OK) return check_finish("test_cnn_overfit");
    test.count = IMAGES; /* the first 32: every class is among them */

    magna_model *m = magna_model_new(3, IMAGES);
    magna_model_input(m, "x", MAGNA_F32, 3, (int64_t[]){1, 28, 28});
    magna_model_sequential(m,
                           (magna_layer_spec[]){MAGNA_CONV2D(8, 3, MAGNA_ACT_RELU), MAGNA_MAX_POOL2D(2),
                                                MAGNA_CONV2D(16, 3, MAGNA_ACT_RELU), MAGNA_MAX_POOL2D(2),
                                                MAGNA_FLATTEN(), MAGNA_DENSE(32, MAGNA_ACT_RELU),
                                                MAGNA_DENSE(10, MAGNA_ACT_NONE)},
                           7);
    st = magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                      .optimizer = {.kind = MAGNA_ADAM, .lr = 3e-3f},
                                                      .metrics = MAGNA_METRIC_ACCURACY});
    CHECK(st == MAGNA_OK, "compile: %s", magna_model_errmsg(m));
    if (st != MAGNA_OK) return check_finish("test_cnn_overfit");

    float *augmented = malloc((size_t)(IMAGES * 784) * sizeof(float));
    magna_dataset plain = {.rows = IMAGES, .x = test.pixels, .labels = test.labels},
                  aug = {.rows = IMAGES, .x = augmented, .labels = test.labels};
    magna_scores first = {0}, s = {0};
    magna_model_evaluate(m, &plain, &first);
    const double t0 = now();
    int epochs = 0;
    for (int epoch = 0; epoch < MAX_EPOCHS && st == MAGNA_OK; epoch++) {
        /* the first 10 epochs on 1-pixel shifts, regenerated each epoch; then the images themselves */
        const bool augment = epoch < 10;
        if (augment)
            CHECK(magna_image_augment(&test, augmented, &(magna_augment_opts){.max_shift = 1}, 3, (uint64_t)epoch,
                                      &e) == MAGNA_OK,
                  "%s", e.message);
        st = magna_model_fit(m, augment ? &aug : &plain, NULL, &(magna_fit_opts){.epochs = 1}, NULL);
        CHECK(st == MAGNA_OK, "fit: %s", magna_model_errmsg(m));
        epochs += st == MAGNA_OK;
        if (st == MAGNA_OK && magna_model_evaluate(m, &plain, &s) == MAGNA_OK && s.accuracy == 1.0 && s.loss < 0.05)
            break;
    }
    const double seconds = now() - t0;
    printf("cnn overfit: %d images, accuracy %.3f -> %.3f, loss %.3f -> %.4f after %d epochs (%lld steps) in %.2f s\n",
           IMAGES, first.accuracy, s.accuracy, first.loss, s.loss, epochs, (long long)magna_model_step(m), seconds);
    CHECK(s.accuracy == 1.0, "training accuracy %.3f after %d epochs", s.accuracy, epochs);
    CHECK(s.loss < 0.05, "training loss %.4f", s.loss);
    CHECK(magna_model_step(m) == epochs, "fit kept counting steps across calls: %lld", (long long)magna_model_step(m));

    free(augmented);
    magna_model_free(m);
    magna_image_set_free(&test);
    return check_finish("test_cnn_overfit");
}
