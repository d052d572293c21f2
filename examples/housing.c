/* housing.c — Boston house prices (506 rows, 13 features, target MEDV), the seed task, three ways, on one
 * seeded 80/20 split with the features standardised by the training rows' statistics only:
 *   1. closed-form least squares (the normal equations, solved by Cholesky in double);
 *   2. a linear model (one dense unit) trained by full-batch gradient descent on the seed's loss
 *      MSE + lambda/2 ||w||^2, checked against the closed-form ridge solution it must converge to;
 *   3. the seed's MLP 13 -> 64 (relu) -> 1, Adam 1e-3, batch 32, 200 epochs, on MSE.
 * The last line is key=value results.
 *
 *   build/housing [csv path] [epochs] [seed] [--dump-split FILE] [--init-seed N]
 *
 * `seed` picks the split and, unless --init-seed says otherwise, the models' initial weights and shuffling.
 * The default, 3, is the split whose least-squares test RMSE (4.07) matches the reference the project's
 * targets were set on ("least squares about 4.1, PyTorch's MLP about 2.8"), so the MLP's figure compares
 * like for like. The split decides most of the RMSE: over splits 1-10 magna's MLP averages 3.54 and
 * PyTorch's 3.43 on the same rows (bench/RESULTS.md); split 42 gives 3.45.
 * --dump-split writes the split as JSON ({"train": [...], "test": [...]}, 0-based data row indices in file
 * order) so that bench/torch_tabular.py trains PyTorch on exactly the same rows. */
#include "magna.h"

#include "args.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_CSV "/usr/lib/python3/dist-packages/sklearn/datasets/data/boston_house_prices.csv"
enum { HIDDEN = 64, BATCH = 32, GD_EPOCHS = 3000 };
static const float GD_LR = 0.1f;      /* below 2 / (largest Hessian eigenvalue, about 2 x 6 here) */
static const double LAMBDA = 1e-2;    /* the L2 weight of the linear model's loss */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Fits y ~ b + x w on the training rows by solving (X^T X + diag(0, pen, ..., pen)) [b; w] = X^T [y] by
 * Cholesky in double: pen = 0 is least squares (a 1e-9 jitter keeps it definite), pen = n lambda / 2 the
 * minimiser of mean squared error + lambda/2 ||w||^2 with the intercept unpenalised. coef: d + 1 values,
 * the intercept first. */
static void normal_equations(const float *x, const float *y, int64_t n, int d, double pen, double *coef) {
    const int m = d + 1;
    double *A = calloc((size_t)m * m, sizeof *A), *b = coef;
    memset(b, 0, (size_t)m * sizeof *b);
    for (int64_t r = 0; r < n; r++) {
        double row[64];
        row[0] = 1;
        for (int j = 0; j < d; j++) row[j + 1] = x[r * d + j];
        for (int i = 0; i < m; i++) {
            b[i] += row[i] * y[r];
            for (int j = 0; j < m; j++) A[i * m + j] += row[i] * row[j];
        }
    }
    for (int i = 0; i < m; i++) A[i * m + i] += 1e-9 + (i > 0 ? pen : 0);
    for (int j = 0; j < m; j++) { /* A = L L^T in place */
        for (int k = 0; k < j; k++) A[j * m + j] -= A[j * m + k] * A[j * m + k];
        A[j * m + j] = sqrt(A[j * m + j]);
        for (int i = j + 1; i < m; i++) {
            for (int k = 0; k < j; k++) A[i * m + j] -= A[i * m + k] * A[j * m + k];
            A[i * m + j] /= A[j * m + j];
        }
    }
    for (int i = 0; i < m; i++) { /* L z = b, then L^T w = z */
        for (int k = 0; k < i; k++) b[i] -= A[i * m + k] * b[k];
        b[i] /= A[i * m + i];
    }
    for (int i = m - 1; i >= 0; i--) {
        for (int k = i + 1; k < m; k++) b[i] -= A[k * m + i] * b[k];
        b[i] /= A[i * m + i];
    }
    free(A);
}

static double linear_rmse(const double *coef, const float *x, const float *y, int64_t n, int d) {
    double se = 0;
    for (int64_t r = 0; r < n; r++) {
        double p = coef[0];
        for (int j = 0; j < d; j++) p += coef[j + 1] * x[r * d + j];
        se += (p - y[r]) * (p - y[r]);
    }
    return sqrt(se / (double)n);
}


typedef struct progress {
    const magna_dataset *test;
    int epochs;
} progress;

/* fit's per-epoch hook: a line at epoch 1, every 25th and the last. The test RMSE is shown for watching
 * only (nothing is selected by it), and costs nothing in the timing: log->seconds is measured before. */
static bool every_25(magna_model *m, const magna_epoch_log *log, void *user) {
    const progress *p = user;
    if (log->epoch == 1 || log->epoch % 25 == 0 || log->epoch == p->epochs) {
        magna_scores s;
        magna_model_evaluate(m, p->test, &s);
        printf("epoch %3d/%d  %.2f ms  train (running): mse %.3f rmse %.3f mae %.3f r2 %.4f | test rmse %.3f\n",
               log->epoch, p->epochs, 1e3 * log->seconds, log->train.loss, log->train.rmse, log->train.mae,
               log->train.r2, s.rmse);
    }
    return true;
}

int main(int argc, char **argv) {
    const char *path = DEFAULT_CSV, *split_file = NULL;
    int epochs = 200;
    uint64_t seed = 3, init_seed = 0;
    bool own_init_seed = false;
    for (int i = 1, pos = 0; i < argc; i++) {
        if (strcmp(argv[i], "--dump-split") == 0 && i + 1 < argc) split_file = argv[++i];
        else if (strcmp(argv[i], "--init-seed") == 0 && i + 1 < argc) {
            if (!arg_seed(argv[++i], &init_seed)) {
                fprintf(stderr, "housing: '%s' is not a valid seed\n", argv[i]);
                return 2;
            }
            own_init_seed = true;
        }
        else if (argv[i][0] == '-' && argv[i][1] == '-') {
            fprintf(stderr, "usage: housing [csv] [epochs] [seed] [--dump-split FILE] [--init-seed N]\n");
            return 2;
        } else if (pos == 0) path = argv[i], pos++;
        else if (pos == 1 || pos == 2) {
            if (!arg_epochs_or_seed("housing", pos++, argv[i], &epochs, &seed)) return 2;
        }
    }
    if (!own_init_seed) init_seed = seed;
    printf("%s\n", magna_runtime_info());
    const double t_start = now();

    /* scikit-learn's file starts with a line of counts; then a header, 13 features and the target MEDV. */
    magna_table t, train, test;
    magna_standardizer scaler;
    magna_error err;
    float *x = NULL, *y = NULL, *x_test = NULL, *y_test = NULL;
    int64_t d = 0, d_test = 0;
    if (magna_csv_read(path, &(magna_csv_options){.skip_lines = 1}, &t, &err) != MAGNA_OK) {
        fprintf(stderr, "housing: %s\n", err.message);
        return 1;
    }
    if (magna_table_column(&t, "MEDV") < 0 || t.cols != 14) {
        fprintf(stderr, "housing: %s: expected 13 features and a MEDV column\n", path);
        return 1;
    }
    if (magna_table_split(&t, 0.0, 0.2, seed, &train, NULL, &test, &err) != MAGNA_OK ||
        magna_standardizer_fit(&scaler, &train, NULL, "MEDV", &err) != MAGNA_OK ||
        magna_standardizer_apply(&scaler, &train, &err) != MAGNA_OK ||
        magna_standardizer_apply(&scaler, &test, &err) != MAGNA_OK ||
        magna_table_features(&train, NULL, "MEDV", &x, &d, &err) != MAGNA_OK ||
        magna_table_features(&test, NULL, "MEDV", &x_test, &d_test, &err) != MAGNA_OK ||
        magna_table_target(&train, "MEDV", &y, &err) != MAGNA_OK ||
        magna_table_target(&test, "MEDV", &y_test, &err) != MAGNA_OK) {
        fprintf(stderr, "housing: %s\n", err.message);
        return 1;
    }
    if (split_file && magna_table_dump_split(split_file, &t, &train, &test, NULL) != MAGNA_OK) {
        fprintf(stderr, "housing: cannot write %s\n", split_file);
        return 1;
    }
    const int64_t n_train = train.rows, n_test = test.rows;
    const magna_dataset train_set = {.rows = n_train, .x = x, .y = y},
                        test_set = {.rows = n_test, .x = x_test, .y = y_test};
    printf("%s: %lld rows, %lld features; split seed %llu: %lld training rows, %lld test rows\n", path,
           (long long)t.rows, (long long)d, (unsigned long long)seed, (long long)n_train, (long long)n_test);

    /* 1. least squares, and 2'. the ridge solution gradient descent should reach */
    double ols[64], ridge[64];
    normal_equations(x, y, n_train, (int)d, 0.0, ols);
    normal_equations(x, y, n_train, (int)d, (double)n_train * LAMBDA / 2, ridge);
    const double ols_rmse = linear_rmse(ols, x_test, y_test, n_test, (int)d);
    const double ridge_rmse = linear_rmse(ridge, x_test, y_test, n_test, (int)d);
    printf("\n1. least squares (normal equations): test RMSE %.3f (train %.3f)\n", ols_rmse,
           linear_rmse(ols, x, y, n_train, (int)d));

    /* 2. one dense unit, full-batch gradient descent on MSE + lambda/2 ||w||^2 (the bias is not penalised) */
    magna_model *lin = magna_model_new(init_seed, n_train);
    magna_model_input(lin, "x", MAGNA_F32, 1, (int64_t[]){d});
    magna_model_sequential(lin, (magna_layer_spec[]){MAGNA_DENSE(1, MAGNA_ACT_NONE)}, 1);
    if (magna_model_compile(lin, &(magna_compile_opts){.loss = MAGNA_LOSS_MSE,
                                                       .optimizer = {.kind = MAGNA_SGD, .lr = GD_LR},
                                                       .l2 = (float)LAMBDA,
                                                       .metrics = MAGNA_METRIC_RMSE}) != MAGNA_OK ||
        magna_model_fit(lin, &train_set, NULL, &(magna_fit_opts){.epochs = GD_EPOCHS, .no_shuffle = true}, NULL) !=
            MAGNA_OK) {
        fprintf(stderr, "housing: linear model: %s\n", magna_model_errmsg(lin));
        return 1;
    }
    magna_scores gd_scores;
    magna_model_evaluate(lin, &test_set, &gd_scores);
    const float *gw = magna_node_data(magna_graph_find(magna_model_graph(lin), "dense1.weight"));
    const float *gb = magna_node_data(magna_graph_find(magna_model_graph(lin), "dense1.bias"));
    double num = (gb[0] - ridge[0]) * (gb[0] - ridge[0]), den = ridge[0] * ridge[0], num_w = 0, den_w = 0;
    for (int j = 0; j < d; j++) {
        num_w += (gw[j] - ridge[j + 1]) * (gw[j] - ridge[j + 1]);
        den_w += ridge[j + 1] * ridge[j + 1];
    }
    const double gd_vs_ridge = sqrt((num + num_w) / (den + den_w)), gd_vs_ridge_w = sqrt(num_w / den_w);
    printf("2. linear model, full-batch gradient descent (SGD lr %g, %d steps) on MSE + %g/2 ||w||^2:\n"
           "   test RMSE %.3f; closed-form ridge (X^T X + n lambda/2 I) w = X^T y: test RMSE %.3f\n"
           "   distance to the ridge solution: %.2e relative (weights alone %.2e); bias %.4f vs %.4f\n",
           (double)GD_LR, GD_EPOCHS, LAMBDA, gd_scores.rmse, ridge_rmse, gd_vs_ridge, gd_vs_ridge_w, gb[0], ridge[0]);
    magna_model_free(lin);

    /* 3. the seed's MLP */
    magna_model *m = magna_model_new(init_seed, BATCH);
    magna_model_input(m, "x", MAGNA_F32, 1, (int64_t[]){d});
    magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(HIDDEN, MAGNA_ACT_RELU), MAGNA_DENSE(1, MAGNA_ACT_NONE)},
                           2);
    const unsigned metrics = MAGNA_METRIC_RMSE | MAGNA_METRIC_MAE | MAGNA_METRIC_R2;
    if (magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_MSE,
                                                     .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-3f},
                                                     .metrics = metrics}) != MAGNA_OK) {
        fprintf(stderr, "housing: %s\n", magna_model_errmsg(m));
        return 1;
    }
    printf("\n3. MLP, Adam 1e-3, batch %d, %d epochs, MSE\n", BATCH, epochs);
    magna_model_summary(m, stdout);
    magna_history h;
    progress p = {.test = &test_set, .epochs = epochs};
    const double t0 = now();
    if (magna_model_fit(m, &train_set, NULL, &(magna_fit_opts){.epochs = epochs, .on_epoch_end = every_25, .user = &p},
                        &h) != MAGNA_OK) {
        fprintf(stderr, "housing: %s\n", magna_model_errmsg(m));
        return 1;
    }
    const double fit_wall = now() - t0;
    double train_seconds = 0; /* the epochs' own time, without the progress lines' test evaluations */
    for (int e = 0; e < h.count; e++) train_seconds += h.epochs[e].seconds;
    magna_scores s;
    if (magna_model_evaluate(m, &test_set, &s) != MAGNA_OK) {
        fprintf(stderr, "housing: %s\n", magna_model_errmsg(m));
        return 1;
    }
    printf("MLP 13-%d-1: test RMSE %.3f, MAE %.3f, R^2 %.4f (least squares RMSE %.3f); training %.3f s "
           "(%.3f ms per epoch; fit with progress lines %.3f s)\n",
           HIDDEN, s.rmse, s.mae, s.r2, ols_rmse, train_seconds, 1e3 * train_seconds / h.count, fit_wall);
    printf("test_rmse=%.3f test_mae=%.3f test_r2=%.4f ols_test_rmse=%.3f gd_test_rmse=%.3f gd_vs_ridge=%.2e "
           "seed=%llu init_seed=%llu epochs=%d seconds=%.3f ms_per_epoch=%.3f total_seconds=%.3f\n",
           s.rmse, s.mae, s.r2, ols_rmse, gd_scores.rmse, gd_vs_ridge, (unsigned long long)seed,
           (unsigned long long)init_seed, h.count, train_seconds, 1e3 * train_seconds / h.count, now() - t_start);
    magna_history_free(&h);
    magna_model_free(m);
    free(x), free(y), free(x_test), free(y_test);
    magna_standardizer_free(&scaler);
    magna_table_free(&t), magna_table_free(&train), magna_table_free(&test);
    return 0;
}
