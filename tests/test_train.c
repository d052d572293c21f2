/* test_train.c — the training loop: gradient descent reaches the least-squares weights, the same seed
 * gives the same bits, early stopping restores the best weights, metrics match hand-computed values,
 * schedules follow their formulas, and misuse gets errors in words. Synthetic data: no files needed. */
#include "check.h"
#include "magna.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

enum { ROWS = 200, FEATURES = 5 };
static float X[ROWS * FEATURES], Y[ROWS];

/* y = x . (1, -2, 0.5, 3, -1) + 0.7 + noise */
static void make_linear_data(void) {
    const float w[FEATURES] = {1, -2, 0.5f, 3, -1};
    for (int r = 0; r < ROWS; r++) {
        float y = 0.7f + 0.1f * (magna_rand_uniform(5, 2, (uint64_t)r) - 0.5f);
        for (int j = 0; j < FEATURES; j++) {
            X[r * FEATURES + j] = 2 * magna_rand_uniform(5, 1, (uint64_t)(r * FEATURES + j)) - 1;
            y += w[j] * X[r * FEATURES + j];
        }
        Y[r] = y;
    }
}

/* Least squares with an intercept by the normal equations (Gauss-Jordan in double). */
static void least_squares(double *w /* FEATURES + 1, intercept last */) {
    enum { M = FEATURES + 1 };
    double A[M][M + 1] = {{0}};
    for (int r = 0; r < ROWS; r++) {
        double row[M];
        for (int j = 0; j < FEATURES; j++) row[j] = X[r * FEATURES + j];
        row[FEATURES] = 1;
        for (int i = 0; i < M; i++) {
            for (int j = 0; j < M; j++) A[i][j] += row[i] * row[j];
            A[i][M] += row[i] * Y[r];
        }
    }
    for (int c = 0; c < M; c++)
        for (int r = 0; r < M; r++) {
            if (r == c) continue;
            double f = A[r][c] / A[c][c];
            for (int k = c; k <= M; k++) A[r][k] -= f * A[c][k];
        }
    for (int i = 0; i < M; i++) w[i] = A[i][M] / A[i][i];
}

static void test_gd_reaches_least_squares(void) {
    double ols[FEATURES + 1];
    least_squares(ols);
    magna_model *m = magna_model_new(1, ROWS); /* full batch: gradient descent */
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(1, MAGNA_ACT_NONE)}, 1);
    CHECK(magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_MSE,
                                                       .optimizer = {.kind = MAGNA_SGD, .lr = 0.3f}}) == MAGNA_OK,
          "%s", magna_model_errmsg(m));
    magna_dataset d = {.rows = ROWS, .x = X, .y = Y};
    CHECK(magna_model_fit(m, &d, NULL, &(magna_fit_opts){.epochs = 3000, .no_shuffle = true}, NULL) == MAGNA_OK, "%s",
          magna_model_errmsg(m));
    const float *w = magna_node_data(magna_graph_find(magna_model_graph(m), "dense1.weight"));
    const float *b = magna_node_data(magna_graph_find(magna_model_graph(m), "dense1.bias"));
    double num = 0, den = 0;
    for (int j = 0; j < FEATURES; j++) num += (w[j] - ols[j]) * (w[j] - ols[j]), den += ols[j] * ols[j];
    num += (b[0] - ols[FEATURES]) * (b[0] - ols[FEATURES]), den += ols[FEATURES] * ols[FEATURES];
    double rel = sqrt(num / den);
    printf("train: gradient descent vs least squares: relative error %.2e (w0 %.5f vs %.5f, b %.5f vs %.5f)\n", rel,
           w[0], ols[0], b[0], ols[FEATURES]);
    CHECK(rel < 1e-3, "gradient descent is %.3g away from least squares", rel);
    magna_model_free(m);
}

/* A 3-class problem on the same features; returns the final parameters' checksum. */
static magna_model *classifier(uint64_t seed, int64_t batch) {
    magna_model *m = magna_model_new(seed, batch);
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    magna_model_sequential(m,
                           (magna_layer_spec[]){MAGNA_DENSE(32, MAGNA_ACT_RELU), MAGNA_DROPOUT(0.2f),
                                                MAGNA_DENSE(3, MAGNA_ACT_NONE)},
                           3);
    return m;
}

static int32_t LABELS[ROWS];

static void test_determinism_and_metrics(void) {
    for (int r = 0; r < ROWS; r++) LABELS[r] = Y[r] > 1.5f ? 2 : Y[r] < -0.5f ? 0 : 1;
    magna_dataset d = {.rows = ROWS, .x = X, .labels = LABELS};
    magna_compile_opts c = {.loss = MAGNA_LOSS_SPARSE_CE, .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-2f},
                            .metrics = MAGNA_METRIC_ACCURACY | MAGNA_METRIC_TOP_K, .top_k = 2, .l2 = 1e-4f};
    float *params[2];
    size_t n = 0;
    magna_model *ms[2];
    for (int k = 0; k < 2; k++) {
        ms[k] = classifier(7, 32);
        CHECK(magna_model_compile(ms[k], &c) == MAGNA_OK, "%s", magna_model_errmsg(ms[k]));
        magna_history h;
        CHECK(magna_model_fit(ms[k], &d, NULL, &(magna_fit_opts){.epochs = 40, .validation_split = 0.2f}, &h) ==
                  MAGNA_OK,
              "%s", magna_model_errmsg(ms[k]));
        CHECK(h.count == 40 && h.epochs[39].has_val, "history has %d epochs", h.count);
        if (k == 0)
            printf("train: 3-class MLP, 40 epochs: loss %.4f -> %.4f, val_accuracy %.3f\n", h.epochs[0].train.loss,
                   h.epochs[39].train.loss, h.epochs[39].val.accuracy);
        CHECK(h.epochs[39].val.accuracy >= 0.8, "val accuracy %.3f", h.epochs[39].val.accuracy);
        CHECK(h.epochs[39].val.top_k >= h.epochs[39].val.accuracy, "top-2 below top-1");
        magna_history_free(&h);
        params[k] = magna_graph_params(magna_model_graph(ms[k]), &n);
    }
    CHECK(memcmp(params[0], params[1], n * sizeof(float)) == 0, "the same seed trained to different weights");
    { /* one thread instead of two: the same up to float rounding (see README, "Determinism") */
        const int threads = magna_get_threads();
        magna_set_threads(1);
        magna_model *one = classifier(7, 32);
        magna_model_compile(one, &c);
        magna_model_fit(one, &d, NULL, &(magna_fit_opts){.epochs = 40, .validation_split = 0.2f}, NULL);
        const float *p1 = magna_graph_params(magna_model_graph(one), NULL);
        double worst = 0;
        size_t differ = 0;
        for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(p1[i] - params[0][i])), differ += p1[i] != params[0][i];
        printf("train: 1 thread vs %d: %zu of %zu weights differ, by at most %.2e\n", threads, differ, n, worst);
        CHECK(worst < 1e-3, "one thread trained to weights %.3g away", worst);
        magna_model_free(one);
        magna_set_threads(threads);
    }
    /* the confusion matrix agrees with evaluate's accuracy */
    int64_t conf[9];
    double prec[3], rec[3], f1[3];
    magna_scores s;
    CHECK(magna_model_evaluate(ms[0], &d, &s) == MAGNA_OK, "%s", magna_model_errmsg(ms[0]));
    CHECK(magna_model_confusion(ms[0], &d, conf, prec, rec, f1) == MAGNA_OK, "%s", magna_model_errmsg(ms[0]));
    int64_t diag = conf[0] + conf[4] + conf[8], all = 0;
    for (int i = 0; i < 9; i++) all += conf[i];
    CHECK(all == ROWS && fabs((double)diag / ROWS - s.accuracy) < 1e-12, "confusion %lld/%lld vs accuracy %.4f",
          (long long)diag, (long long)all, s.accuracy);
    for (int k = 0; k < 3; k++) CHECK(f1[k] > 0.5 && prec[k] <= 1 && rec[k] <= 1, "class %d f1 %.3f", k, f1[k]);
    /* predict gives the logits evaluate scored */
    float *logits = malloc(ROWS * 3 * sizeof *logits);
    CHECK(magna_model_predict(ms[0], &d, logits) == MAGNA_OK, "%s", magna_model_errmsg(ms[0]));
    int64_t right = 0;
    for (int r = 0; r < ROWS; r++) {
        const float *z = logits + r * 3;
        int best = z[1] > z[0] ? 1 : 0;
        best = z[2] > z[best] ? 2 : best;
        right += best == LABELS[r];
    }
    CHECK(right == diag, "predict's argmax %lld vs confusion %lld", (long long)right, (long long)diag);
    free(logits);
    magna_model_free(ms[0]), magna_model_free(ms[1]);
}

static void test_regression_metrics(void) {
    /* a 1-1 dense layer set to the identity: predictions are x, so the metrics are known */
    magna_model *m = magna_model_new(1, 4);
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(1));
    magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(1, MAGNA_ACT_NONE)}, 1);
    magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_MAE, .optimizer = {.kind = MAGNA_SGD, .lr = 0},
                                                 .metrics = MAGNA_METRIC_MSE | MAGNA_METRIC_R2});
    magna_graph *g = magna_model_graph(m);
    magna_node_data(magna_graph_find(g, "dense1.weight"))[0] = 1;
    magna_node_data(magna_graph_find(g, "dense1.bias"))[0] = 0;
    const float x[5] = {1, 2, 3, 4, 5}, y[5] = {1, 3, 3, 5, 4};
    magna_scores s;
    CHECK(magna_model_evaluate(m, &(magna_dataset){.rows = 5, .x = x, .y = y}, &s) == MAGNA_OK, "%s",
          magna_model_errmsg(m));
    /* errors 0, -1, 0, -1, 1: mse 3/5, mae 3/5; y mean 3.2, sst 8.8, r2 = 1 - 3/8.8 */
    CHECK(fabs(s.mse - 0.6) < 1e-6 && fabs(s.mae - 0.6) < 1e-6 && fabs(s.loss - 0.6) < 1e-6, "mse %g mae %g loss %g",
          s.mse, s.mae, s.loss);
    CHECK(fabs(s.r2 - (1 - 3 / 8.8)) < 1e-6 && fabs(s.rmse - sqrt(0.6)) < 1e-6, "r2 %g rmse %g", s.r2, s.rmse);
    magna_model_free(m);
}

static bool count_epochs(magna_model *m, const magna_epoch_log *log, void *user) {
    (void)m, (void)log;
    return ++*(int *)user < 3; /* stop after the third */
}

static void test_early_stopping(void) {
    /* 40 noisy training rows and a wide net with a high rate: validation loss turns up soon */
    magna_model *m = magna_model_new(3, 8);
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(256, MAGNA_ACT_RELU), MAGNA_DENSE(1, 0)}, 2);
    magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_MSE, .optimizer = {.kind = MAGNA_ADAM, .lr = 3e-2f}});
    float ynoisy[60];
    for (int r = 0; r < 60; r++) ynoisy[r] = Y[r] + 3 * (magna_rand_uniform(9, 9, (uint64_t)r) - 0.5f);
    magna_dataset train = {.rows = 40, .x = X, .y = ynoisy}, val = {.rows = 20, .x = X + 40 * FEATURES, .y = Y + 40};
    magna_history h;
    CHECK(magna_model_fit(m, &train, &val,
                          &(magna_fit_opts){.epochs = 300, .patience = 5, .restore_best = true}, &h) == MAGNA_OK,
          "%s", magna_model_errmsg(m));
    magna_scores s;
    magna_model_evaluate(m, &val, &s);
    const double best = h.epochs[h.best_epoch - 1].val.loss;
    printf("train: early stopping after %d epochs (best %d, val_loss %.4f); restored val_loss %.4f\n", h.count,
           h.best_epoch, best, s.loss);
    CHECK(h.stopped_early && h.count == h.best_epoch + 5, "stopped %d at %d, best %d", h.stopped_early, h.count,
          h.best_epoch);
    CHECK(fabs(s.loss - best) < 1e-5 * (1 + best), "restored weights score %.6f, the best epoch %.6f", s.loss, best);
    magna_history_free(&h);
    int calls = 0;
    CHECK(magna_model_fit(m, &train, NULL, &(magna_fit_opts){.epochs = 10, .on_epoch_end = count_epochs, .user = &calls},
                          &h) == MAGNA_OK && h.count == 3,
          "callback stop: %d epochs", h.count);
    magna_history_free(&h);
    magna_model_free(m);
}

static void test_schedules(void) {
    magna_schedule step = {.kind = MAGNA_SCHEDULE_STEP, .step_size = 10, .gamma = 0.5f};
    magna_schedule expo = {.kind = MAGNA_SCHEDULE_EXPONENTIAL, .step_size = 10, .gamma = 0.5f};
    magna_schedule cosine = {.kind = MAGNA_SCHEDULE_COSINE, .warmup_steps = 10, .min_lr = 0.1f};
    CHECK(magna_schedule_lr(&step, 1, 9, 100) == 1.0f && magna_schedule_lr(&step, 1, 25, 100) == 0.25f, "step");
    CHECK(fabsf(magna_schedule_lr(&expo, 1, 5, 100) - sqrtf(0.5f)) < 1e-6f, "exponential");
    CHECK(fabsf(magna_schedule_lr(&cosine, 1, 0, 110) - 0.1f) < 1e-6f, "warm-up starts at base/warmup");
    CHECK(fabsf(magna_schedule_lr(&cosine, 1, 9, 110) - 1.0f) < 1e-6f, "warm-up ends at base");
    CHECK(fabsf(magna_schedule_lr(&cosine, 1, 60, 110) - 0.55f) < 1e-6f, "cosine halfway is the midpoint");
    CHECK(fabsf(magna_schedule_lr(&cosine, 1, 110, 110) - 0.1f) < 1e-6f, "cosine ends at min_lr");
}

static void test_misuse(void) {
    magna_model *m = magna_model_new(1, 16);
    magna_dataset none = {.rows = 10, .x = X};
    CHECK(magna_model_fit(m, &none, NULL, &(magna_fit_opts){.epochs = 1}, NULL) == MAGNA_ERR_STATE &&
              strstr(magna_model_errmsg(m), "compile the model first"),
          "%s", magna_model_errmsg(m));
    CHECK(magna_model_compile(m, &(magna_compile_opts){0}) == MAGNA_ERR_STATE, "compile without layers");
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(3, 0)}, 1);
    magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE, .optimizer = {.kind = MAGNA_SGD, .lr = 1}});
    CHECK(magna_model_fit(m, &none, NULL, &(magna_fit_opts){.epochs = 1}, NULL) == MAGNA_ERR_ARG &&
              strstr(magna_model_errmsg(m), "no labels"),
          "%s", magna_model_errmsg(m));
    magna_dataset d = {.rows = ROWS, .x = X, .labels = LABELS};
    CHECK(magna_model_fit(m, &d, NULL, &(magna_fit_opts){.epochs = 1, .validation_split = 1.5f}, NULL) ==
              MAGNA_ERR_ARG,
          "%s", magna_model_errmsg(m));
    int32_t bad[ROWS];
    memcpy(bad, LABELS, sizeof bad);
    bad[17] = 3;
    CHECK(magna_model_fit(m, &(magna_dataset){.rows = ROWS, .x = X, .labels = bad}, NULL,
                          &(magna_fit_opts){.epochs = 1, .no_shuffle = true}, NULL) == MAGNA_ERR_RANGE &&
              strstr(magna_model_errmsg(m), "label 3"),
          "%s", magna_model_errmsg(m));
    magna_model_free(m);
    /* divergence stops before the update with a NaN/Inf loss reaches the weights */
    m = magna_model_new(1, 50);
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(1, 0)}, 1);
    magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_MSE, .optimizer = {.kind = MAGNA_SGD, .lr = 1e4f}});
    magna_status st = magna_model_fit(m, &(magna_dataset){.rows = ROWS, .x = X, .y = Y}, NULL,
                                      &(magna_fit_opts){.epochs = 100}, NULL);
    const float w0 = magna_node_data(magna_graph_find(magna_model_graph(m), "dense1.weight"))[0];
    CHECK(st == MAGNA_ERR_NUMERIC && isfinite(w0), "divergence: status %d, w0 %g: %s", (int)st, w0,
          magna_model_errmsg(m));
    printf("error %s\n", magna_model_errmsg(m));
    magna_model_free(m);
}

static void test_summary(void) {
    magna_model *m = classifier(1, 8);
    magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE, .optimizer = {.kind = MAGNA_SGD}});
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    magna_model_summary(m, f);
    fclose(f);
    printf("%s", buf);
    CHECK(strstr(buf, "dense1") && strstr(buf, "dense2") && strstr(buf, "Total params: 291"), "summary:\n%s", buf);
    magna_model_free(m);
}

/* A functional model: two inputs, a residual block, two heads (regression and classification) with
 * their own losses and weights, trained together. */
static void test_functional_two_inputs_two_outputs(void) {
    magna_model *m = magna_model_new(11, 25);
    magna_graph *g = magna_model_graph(m);
    magna_node *a = magna_model_input(m, "a", MAGNA_F32, 1, SHAPE(3));
    magna_node *b = magna_model_input(m, "b", MAGNA_F32, 1, SHAPE(2));
    magna_node *h = magna_layer_dense(g, "trunk", magna_concat(g, 2, (magna_node *[]){a, b}, 1), 32,
                                      (magna_dense_opts){.activation = MAGNA_ACT_TANH});
    h = magna_add(g, h, magna_layer_dense(g, "residual", h, 32, (magna_dense_opts){.activation = MAGNA_ACT_TANH}));
    magna_node *outs[2] = {magna_layer_dense(g, "value", h, 1, (magna_dense_opts){0}),
                           magna_layer_dense(g, "class", h, 3, (magna_dense_opts){0})};
    CHECK(magna_model_set_outputs(m, 2, outs) == MAGNA_OK, "%s", magna_model_errmsg(m));
    const magna_loss losses[2] = {MAGNA_LOSS_MSE, MAGNA_LOSS_SPARSE_CE};
    const float weights[2] = {1.0f, 0.5f};
    CHECK(magna_model_compile(m, &(magna_compile_opts){.output_losses = losses, .loss_weights = weights,
                                                       .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-2f},
                                                       .metrics = MAGNA_METRIC_RMSE}) == MAGNA_OK,
          "%s", magna_model_errmsg(m));
    /* a = the first 3 features, b = the last 2; the value head learns Y, the class head LABELS */
    float xa[ROWS * 3], xb[ROWS * 2];
    for (int r = 0; r < ROWS; r++) {
        for (int j = 0; j < 3; j++) xa[r * 3 + j] = X[r * FEATURES + j];
        for (int j = 0; j < 2; j++) xb[r * 2 + j] = X[r * FEATURES + 3 + j];
    }
    magna_dataset d = {.rows = ROWS, .x = xa, .y = Y, .more_x = {xb}, .more_labels = {LABELS}};
    magna_dataset no_b = {.rows = ROWS, .x = xa, .y = Y, .more_labels = {LABELS}};
    CHECK(magna_model_fit(m, &no_b, NULL, &(magna_fit_opts){.epochs = 1}, NULL) == MAGNA_ERR_ARG &&
              strstr(magna_model_errmsg(m), "input 1 ('b'"),
          "%s", magna_model_errmsg(m));
    magna_history hist;
    CHECK(magna_model_fit(m, &d, NULL, &(magna_fit_opts){.epochs = 60, .validation_split = 0.25f}, &hist) ==
              MAGNA_OK,
          "%s", magna_model_errmsg(m));
    const magna_epoch_log *first = &hist.epochs[0], *last = &hist.epochs[hist.count - 1];
    printf("train: two inputs, residual, two heads: loss %.4f -> %.4f, val rmse %.4f -> %.4f\n", first->train.loss,
           last->train.loss, first->val.rmse, last->val.rmse);
    CHECK(last->train.loss < 0.2 * first->train.loss && last->val.rmse < 0.5 * first->val.rmse,
          "the two-headed model did not learn");
    float *pred = malloc(ROWS * sizeof *pred);
    CHECK(magna_model_predict(m, &d, pred) == MAGNA_OK, "%s", magna_model_errmsg(m));
    double se = 0;
    for (int r = 0; r < ROWS; r++) se += (pred[r] - Y[r]) * (pred[r] - Y[r]);
    CHECK(sqrt(se / ROWS) < 0.6, "predict's output 0 rmse %.3f", sqrt(se / ROWS));
    free(pred);
    magna_history_free(&hist);
    magna_model_free(m);
}

/* The two default initialisations: KERAS (He / Glorot weights, zero biases) and TORCH (weights and biases
 * U(+-1/sqrt(fan_in)), PyTorch's nn.Linear / nn.Conv2d). Bounds hold and the draws fill them. */
static void test_init_schemes(void) {
    for (int scheme = 0; scheme < 2; scheme++) {
        magna_model *m = magna_model_new(3, 4);
        magna_model_input(m, "x", MAGNA_F32, 3, SHAPE(3, 6, 6));
        magna_layer_spec conv = MAGNA_CONV2D(8, 3, MAGNA_ACT_RELU), dense = MAGNA_DENSE(50, MAGNA_ACT_RELU);
        conv.init = dense.init = (magna_init_scheme)scheme;
        magna_model_sequential(m, (magna_layer_spec[]){conv, MAGNA_FLATTEN(), dense}, 3);
        CHECK(magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_MSE, .optimizer = {.kind = MAGNA_SGD}}) ==
                  MAGNA_OK,
              "%s", magna_model_errmsg(m));
        magna_graph *g = magna_model_graph(m);
        const struct {
            const char *name;
            double fan_in;
        } params[] = {{"conv2d1.weight", 27}, {"conv2d1.bias", 27}, {"dense1.weight", 288}, {"dense1.bias", 288}};
        for (int k = 0; k < 4; k++) {
            magna_node *p = magna_graph_find(g, params[k].name);
            CHECK(p != NULL, "no param %s", params[k].name);
            if (!p) continue;
            const float *v = magna_node_data(p);
            double lo = 0, hi = 0;
            for (int64_t i = 0; i < magna_node_numel(p); i++) lo = fmin(lo, v[i]), hi = fmax(hi, v[i]);
            const bool bias = strstr(params[k].name, "bias") != NULL;
            const double bound = scheme == MAGNA_INIT_TORCH ? 1 / sqrt(params[k].fan_in)
                                 : bias                      ? 0
                                 : k == 0                    ? 6 * sqrt(2 / params[k].fan_in) /* He normal: 6 sigma */
                                                             : sqrt(6 / params[k].fan_in);     /* He uniform */
            CHECK(-lo <= bound + 1e-7 && hi <= bound + 1e-7, "%s %s: values in [%g, %g], bound %g",
                  scheme ? "torch" : "keras", params[k].name, lo, hi, bound);
            if (bias && scheme == MAGNA_INIT_KERAS) continue;
            const double fill = scheme == MAGNA_INIT_KERAS && k == 0 ? sqrt(2 / params[k].fan_in) : 0.5 * bound;
            CHECK(hi > fill && -lo > fill, "%s %s: [%g, %g] does not reach +-%g", scheme ? "torch" : "keras",
                  params[k].name, lo, hi, fill);
        }
        magna_model_free(m);
    }
}

int main(void) {
    make_linear_data();
    test_gd_reaches_least_squares();
    test_determinism_and_metrics();
    test_regression_metrics();
    test_early_stopping();
    test_schedules();
    test_misuse();
    test_summary();
    test_functional_two_inputs_two_outputs();
    test_init_schemes();
    return check_finish("test_train");
}
