/* housing.c — Boston house prices (506 rows, 13 features, target MEDV), the seed task, three ways:
 *   1. closed-form least squares (normal equations, solved by Cholesky in double),
 *   2. the seed's MLP 13 -> 64 (relu) -> 1 trained with Adam, batch 32, on MSE,
 * on standardised features (mean and std from the training split only) and a seeded 80/20 split.
 * Prints the test RMSE of each, and a last line of key=value results.
 *
 *   build/housing [csv path] [epochs] [seed] */
#include "magna.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_CSV "/usr/lib/python3/dist-packages/sklearn/datasets/data/boston_house_prices.csv"
enum { HIDDEN = 64, BATCH = 32 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Least squares with an intercept, fitted on the training rows: solve (X^T X + tiny I) w = X^T y by Cholesky;
 * returns the RMSE on the test rows. */
static double ols_test_rmse(const float *x, const float *y, int64_t n_train, const float *x_test,
                            const float *y_test, int64_t n_test, int d) {
    int m = d + 1;
    double *A = calloc((size_t)m * m, sizeof *A), *b = calloc((size_t)m, sizeof *b);
    for (int64_t r = 0; r < n_train; r++) {
        double row[64];
        row[0] = 1;
        for (int j = 0; j < d; j++) row[j + 1] = x[r * d + j];
        for (int i = 0; i < m; i++) {
            b[i] += row[i] * y[r];
            for (int j = 0; j < m; j++) A[i * m + j] += row[i] * row[j];
        }
    }
    for (int i = 0; i < m; i++) A[i * m + i] += 1e-9;
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
    double se = 0;
    for (int64_t r = 0; r < n_test; r++) {
        double p = b[0];
        for (int j = 0; j < d; j++) p += b[j + 1] * x_test[r * d + j];
        se += (p - y_test[r]) * (p - y_test[r]);
    }
    free(A), free(b);
    return sqrt(se / (double)n_test);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : DEFAULT_CSV;
    int epochs = argc > 2 ? atoi(argv[2]) : 200;
    uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 42;
    if (epochs < 1) {
        fprintf(stderr, "housing: epochs must be at least 1\n");
        return 2;
    }
    printf("%s\n", magna_runtime_info());
    /* scikit-learn's file starts with a line of counts; then a header, 13 features and the target MEDV.
     * A seeded 80/20 split, then the features standardised with the training rows' statistics only. */
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
    const int64_t n_train = train.rows, n_test = test.rows;
    double ols = ols_test_rmse(x, y, n_train, x_test, y_test, n_test, (int)d);
    printf("least squares: test RMSE %.3f\n", ols);

    /* the seed's MLP */
    magna_graph *g = magna_graph_new(seed);
    magna_node *in = magna_input(g, "x", MAGNA_F32, 2, (int64_t[]){BATCH, d});
    magna_node *tgt = magna_input(g, "y", MAGNA_F32, 2, (int64_t[]){BATCH, 1});
    magna_node *w1 = magna_param(g, "dense1.weight", 2, (int64_t[]){d, HIDDEN}, magna_init_he_uniform());
    magna_node *b1 = magna_param(g, "dense1.bias", 1, (int64_t[]){HIDDEN}, magna_init_zeros());
    magna_node *w2 = magna_param(g, "dense2.weight", 2, (int64_t[]){HIDDEN, 1}, magna_init_xavier_uniform());
    magna_node *b2 = magna_param(g, "dense2.bias", 1, (int64_t[]){1}, magna_init_zeros());
    magna_node *h = magna_relu(g, magna_add(g, magna_matmul(g, in, w1, false, false), b1));
    magna_node *pred = magna_add(g, magna_matmul(g, h, w2, false, false), b2);
    magna_node *loss = magna_mse(g, pred, tgt);
    magna_graph_keep(g, pred);
    if (magna_graph_compile(g, loss) != MAGNA_OK) {
        fprintf(stderr, "housing: %s\n", magna_graph_errmsg(g));
        return 1;
    }
    magna_optimizer *opt = magna_optimizer_new(g, (magna_optimizer_opts){.kind = MAGNA_ADAM, .lr = 1e-3f}, &err);
    int64_t *order = malloc((size_t)n_train * sizeof *order);
    for (int64_t i = 0; i < n_train; i++) order[i] = i;
    double t0 = now();
    for (int epoch = 1; epoch <= epochs; epoch++) {
        for (int64_t i = n_train - 1; i > 0; i--) { /* a new seeded order each epoch */
            int64_t j = (int64_t)(magna_rand_u64(seed, 2 + (uint64_t)epoch, (uint64_t)i) % (uint64_t)(i + 1));
            int64_t tmp = order[i];
            order[i] = order[j], order[j] = tmp;
        }
        double epoch_loss = 0;
        for (int64_t start = 0; start < n_train; start += BATCH) {
            int64_t rows = n_train - start < BATCH ? n_train - start : BATCH;
            magna_graph_set_batch(g, rows);
            for (int64_t r = 0; r < rows; r++) {
                memcpy(magna_node_data(in) + r * d, x + order[start + r] * d, d * sizeof(float));
                magna_node_data(tgt)[r] = y[order[start + r]];
            }
            magna_graph_zero_grad(g);
            if (magna_graph_forward(g) != MAGNA_OK || magna_graph_backward(g) != MAGNA_OK) {
                fprintf(stderr, "housing: %s\n", magna_graph_errmsg(g));
                return 1;
            }
            magna_optimizer_step(opt);
            epoch_loss += magna_node_data(loss)[0] * (double)rows;
        }
        if (epoch == 1 || epoch % 25 == 0 || epoch == epochs)
            printf("epoch %3d  train mse %.3f\n", epoch, epoch_loss / (double)n_train);
    }
    double seconds = now() - t0;
    /* test set, in batches, inference mode */
    magna_graph_set_training(g, false);
    double se = 0;
    for (int64_t start = 0; start < n_test; start += BATCH) {
        int64_t rows = n_test - start < BATCH ? n_test - start : BATCH;
        magna_graph_set_batch(g, rows);
        memcpy(magna_node_data(in), x_test + start * d, (size_t)(rows * d) * sizeof(float));
        memcpy(magna_node_data(tgt), y_test + start, (size_t)rows * sizeof(float));
        magna_graph_forward(g);
        for (int64_t r = 0; r < rows; r++) {
            double e = magna_node_data(pred)[r] - y_test[start + r];
            se += e * e;
        }
    }
    double rmse = sqrt(se / (double)n_test);
    printf("MLP 13-64-1, Adam 1e-3, batch %d, %d epochs: test RMSE %.3f (least squares %.3f)\n", BATCH, epochs, rmse,
           ols);
    printf("test_rmse=%.3f ols_test_rmse=%.3f epochs=%d train_rows=%lld test_rows=%lld seconds=%.3f ms_per_epoch=%.3f\n",
           rmse, ols, epochs, (long long)n_train, (long long)n_test, seconds, 1000 * seconds / epochs);
    magna_optimizer_free(opt);
    magna_graph_free(g);
    free(order), free(x), free(y), free(x_test), free(y_test);
    magna_standardizer_free(&scaler);
    magna_table_free(&t), magna_table_free(&train), magna_table_free(&test);
    return 0;
}
