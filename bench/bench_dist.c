/* bench_dist.c — data-parallel step time and allreduce bandwidth (bench/run_dist.sh runs it as 1 process and
 * under mpiexec). Under a launcher it trains data parallel; alone, one process.
 *
 *   bench_dist [--batch B] [--steps S]
 *
 * The model: an MLP 784-1024-1024-10 (1.86M params, 7.4 MB of float32 gradients: big enough that the
 * allreduce shows), Adam, sparse cross-entropy, synthetic data of S global batches (B rows per rank).
 * Prints one key=value line: ranks, threads, batch per rank, global batch, params, step_ms (median of 3
 * timed epochs over S steps, after a warm-up epoch), samples_per_s, allreduce_bytes per step, and under
 * a launcher allreduce_ms (the gradient allreduce alone, median of 20) and the bus bandwidth
 * 2 (N-1)/N x bytes / time at 1, 4, 16 and 64 MiB (the figure ring allreduces are compared by). */
#include "magna.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

static double median(double *v, int n) {
    sort_doubles(v, n);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The time of one gradient allreduce of a graph holding `floats` params. */
static double allreduce_seconds(magna_dist *d, size_t floats, int reps) {
    magna_graph *g = magna_graph_new(1);
    magna_node *p = magna_param(g, "p", 1, (int64_t[]){(int64_t)floats}, (magna_init){MAGNA_INIT_CONSTANT, 0.5f});
    if (magna_graph_compile(g, magna_sum(g, p, MAGNA_ALL_AXES, false)) != MAGNA_OK) {
        fprintf(stderr, "bench_dist: %s\n", magna_graph_errmsg(g));
        exit(1);
    }
    magna_graph_forward(g);
    magna_graph_zero_grad(g);
    magna_graph_backward(g);
    double t[64];
    magna_error err;
    for (int r = 0; r <= reps && r < 64; r++) {
        const double t0 = now_s();
        if (magna_dist_allreduce_grads(d, g, 1.0, NULL, 0, r, &err) != MAGNA_OK) {
            fprintf(stderr, "bench_dist: %s\n", err.message);
            exit(1);
        }
        if (r) t[r - 1] = now_s() - t0; /* the first is a warm-up */
    }
    magna_graph_free(g);
    return median(t, reps);
}

int main(int argc, char **argv) {
    int64_t batch = 64, steps = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--batch") == 0) batch = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--steps") == 0) steps = atoll(argv[i + 1]);
    }
    if (batch < 1 || steps < 1) return fprintf(stderr, "usage: bench_dist [--batch B] [--steps S]\n"), 2;
    magna_dist *d = NULL;
    magna_error err;
    if (magna_dist_launched() && !(d = magna_dist_init(&(magna_dist_opts){.timeout = 120}, &err)))
        return fprintf(stderr, "bench_dist: %s\n", err.message), 1;
    const int ranks = magna_dist_size(d), rank = magna_dist_rank(d);

    enum { IN = 784, HIDDEN = 1024, CLASSES = 10 };
    const int64_t rows = batch * ranks * steps;
    float *x = malloc((size_t)rows * IN * sizeof *x);
    int32_t *labels = malloc((size_t)rows * sizeof *labels);
    for (int64_t i = 0; i < rows * IN; i++) x[i] = magna_rand_uniform(3, 1, (uint64_t)i);
    for (int64_t i = 0; i < rows; i++) labels[i] = (int32_t)(magna_rand_u64(3, 2, (uint64_t)i) % CLASSES);
    magna_model *m = magna_model_new(1, batch);
    magna_model_input(m, "x", MAGNA_F32, 1, (int64_t[]){IN});
    magna_model_sequential(m,
                           (magna_layer_spec[]){MAGNA_DENSE(HIDDEN, MAGNA_ACT_RELU), MAGNA_DENSE(HIDDEN, MAGNA_ACT_RELU),
                                                MAGNA_DENSE(CLASSES, MAGNA_ACT_NONE)},
                           3);
    if (magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                     .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-4f}}) != MAGNA_OK)
        return fprintf(stderr, "bench_dist: %s\n", magna_model_errmsg(m)), 1;
    magna_model_set_dist(m, d);
    magna_dataset data = {.rows = rows, .x = x, .labels = labels};
    double t[3];
    for (int e = -1; e < 3; e++) { /* a warm-up epoch, then three timed */
        const double t0 = now_s();
        if (magna_model_fit(m, &data, NULL, &(magna_fit_opts){.epochs = 1, .no_shuffle = true}, NULL) != MAGNA_OK)
            return fprintf(stderr, "bench_dist: %s\n", magna_model_errmsg(m)), 1;
        if (e >= 0) t[e] = (now_s() - t0) / (double)steps;
    }
    const double step = median(t, 3);
    size_t n_params;
    magna_graph_params(magna_model_graph(m), &n_params);
    const double grad_bytes = (double)n_params * sizeof(float);
    char extra[512] = "";
    if (ranks > 1) {
        const double ar = allreduce_seconds(d, n_params, 20);
        int used = snprintf(extra, sizeof extra, " allreduce_ms=%.3f allreduce_share=%.2f", 1e3 * ar, ar / step);
        for (int mib = 1; mib <= 64; mib *= 4) {
            const double s = allreduce_seconds(d, (size_t)mib << 18, mib >= 16 ? 5 : 10);
            const double bus = 2.0 * (ranks - 1) / ranks * (double)((size_t)mib << 20) / s;
            used += snprintf(extra + used, sizeof extra - (size_t)used, " busbw_%dMiB_GBps=%.2f", mib, bus / 1e9);
        }
    }
    if (rank == 0)
        printf("ranks=%d threads=%d batch=%lld global_batch=%lld params=%zu step_ms=%.3f samples_per_s=%.0f "
               "allreduce_bytes=%.0f%s\n",
               ranks, magna_get_threads(), (long long)batch, (long long)batch * ranks, n_params, 1e3 * step,
               (double)(batch * ranks) / step, ranks > 1 ? grad_bytes : 0.0, extra);
    magna_model_free(m);
    free(x), free(labels);
    magna_dist_finalize(d);
    return 0;
}
