/* bench_rnn.c — forward and forward + backward time of one fused recurrent layer at the char-LSTM bench's
 * size (B = 32, T = 128, I = 64, H = 256 unless given), and the GFLOP/s it implies; or, with `char`, the
 * whole training step of that character LSTM (vocabulary 65, embedding I, LSTM H, dense head,
 * cross-entropy, Adam) in tokens/s, the model `python3 bench/torch_lm.py --model lstm` trains in PyTorch.
 *
 *   build/bench_rnn [lstm|gru|rnn|char] [B T I H] [--reps N] [--bf16]
 *
 * --bf16 runs the graph in bf16 mixed precision (magna_graph_set_bf16), as char_lstm --bf16 does.
 *
 * x is a param, so backward computes dx as well (in a language model x is the embedding's output).
 * Backward is seeded with ones at the op's output through magna_graph_backward_seeded, so only the op is
 * timed. Figures are medians of N timed repetitions (default 5) after one warm-up.
 * Flops: forward 2 B T (I + H) G H (input and recurrent products, G gates); backward twice that (dx and
 * dW_ih, dh and dW_hh); the gate math is not counted. */
#include "magna.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

/* The character LSTM's training step: ids -> embedding [V, I] -> LSTM H -> dense V -> cross-entropy, Adam. */
static int char_lstm(int64_t B, int64_t T, int64_t I, int64_t H, int reps, bool bf16) {
    enum { V = 65 };
    magna_graph *g = magna_graph_new(1);
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, (int64_t[]){B, T});
    magna_node *y = magna_input(g, "y", MAGNA_I32, 2, (int64_t[]){B, T});
    magna_node *h = magna_layer_embedding(g, "emb", ids, V, I);
    h = magna_layer_lstm(g, "lstm", h, H, (magna_recurrent_opts){0});
    magna_node *loss = magna_cross_entropy(g, magna_layer_dense(g, "head", h, V, (magna_dense_opts){0}), y);
    magna_graph_set_bf16(g, bf16);
    if (magna_graph_compile(g, loss) != MAGNA_OK) {
        fprintf(stderr, "bench_rnn: %s\n", magna_graph_errmsg(g));
        return 1;
    }
    magna_optimizer *opt = magna_optimizer_new(g, (magna_optimizer_opts){.kind = MAGNA_ADAM, .lr = 1e-3f}, NULL);
    int32_t *id = magna_node_data_i32(ids), *lab = magna_node_data_i32(y);
    for (int64_t i = 0; i < B * T; i++)
        id[i] = (int32_t)(magna_rand_u64(1, 2, (uint64_t)i) % V), lab[i] = (int32_t)(magna_rand_u64(1, 3, (uint64_t)i) % V);
    double *ms = malloc((size_t)reps * sizeof *ms);
    for (int r = -2; r < reps; r++) {
        const double t0 = now_s();
        magna_graph_zero_grad(g);
        magna_graph_forward(g);
        magna_graph_backward(g);
        magna_optimizer_step(opt);
        if (r >= 0) ms[r] = 1e3 * (now_s() - t0);
    }
    sort_doubles(ms, reps);
    printf("char lstm V=%d B=%lld T=%lld E=%lld H=%lld threads=%d: training step %.2f ms, %.0f tokens/s; median of %d "
           "(loss %.4f)\n",
           V, (long long)B, (long long)T, (long long)I, (long long)H, magna_get_threads(), ms[reps / 2],
           (double)(B * T) / (ms[reps / 2] * 1e-3), reps, magna_node_data(loss)[0]);
    free(ms);
    magna_optimizer_free(opt);
    magna_graph_free(g);
    return 0;
}

int main(int argc, char **argv) {
    const char *kind = "lstm";
    int64_t dims[4] = {32, 128, 64, 256};
    int reps = 5, nd = 0;
    bool bf16 = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--bf16") == 0) bf16 = true;
        else if (!strcmp(argv[i], "lstm") || !strcmp(argv[i], "gru") || !strcmp(argv[i], "rnn") ||
                 !strcmp(argv[i], "char"))
            kind = argv[i];
        else if (nd < 4 && atoll(argv[i]) > 0) dims[nd++] = atoll(argv[i]);
        else {
            fprintf(stderr, "usage: bench_rnn [lstm|gru|rnn|char] [B T I H] [--reps N] [--bf16]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 100) reps = 5;
    printf("%s\n", magna_runtime_info());
    const int64_t B = dims[0], T = dims[1], I = dims[2], H = dims[3];
    if (!strcmp(kind, "char")) return char_lstm(B, T, I, H, reps, bf16);
    const int64_t G = (!strcmp(kind, "lstm") ? 4 : !strcmp(kind, "gru") ? 3 : 1) * H;
    magna_graph *g = magna_graph_new(1);
    const float a = 1.0f / (float)H;
    magna_node *x = magna_param(g, "x", 3, (int64_t[]){B, T, I}, magna_init_uniform(-1, 1));
    magna_node *wi = magna_param(g, "w_ih", 2, (int64_t[]){I, G}, magna_init_uniform(-a, a));
    magna_node *wh = magna_param(g, "w_hh", 2, (int64_t[]){H, G}, magna_init_uniform(-a, a));
    magna_node *bi = magna_param(g, "b_ih", 1, (int64_t[]){G}, magna_init_uniform(-a, a));
    magna_node *bh = magna_param(g, "b_hh", 1, (int64_t[]){G}, magna_init_uniform(-a, a));
    magna_node *out = !strcmp(kind, "lstm") ? magna_lstm(g, x, wi, wh, bi, bh, NULL, NULL)
                      : !strcmp(kind, "gru") ? magna_gru(g, x, wi, wh, bi, bh, NULL)
                                             : magna_rnn_tanh(g, x, wi, wh, bi, bh, NULL);
    magna_graph_set_bf16(g, bf16);
    if (magna_graph_compile(g, out) != MAGNA_OK) {
        fprintf(stderr, "bench_rnn: %s\n", magna_graph_errmsg(g));
        return 1;
    }
    const int64_t n = magna_node_numel(out);
    float *ones = malloc((size_t)n * sizeof *ones);
    for (int64_t i = 0; i < n; i++) ones[i] = 1.0f;
    double *fwd = malloc((size_t)reps * sizeof *fwd), *both = malloc((size_t)reps * sizeof *both);
    for (int r = -1; r < reps; r++) {
        magna_graph_zero_grad(g);
        const double t0 = now_s();
        magna_graph_forward(g);
        const double t1 = now_s();
        magna_graph_backward_seeded(g, ones);
        const double t2 = now_s();
        if (r >= 0) fwd[r] = t1 - t0, both[r] = t2 - t0;
    }
    sort_doubles(fwd, reps);
    sort_doubles(both, reps);
    const double f_flops = 2.0 * (double)(B * T) * (double)(I + H) * (double)G;
    const double mf = fwd[reps / 2], mb = both[reps / 2];
    printf("%s%s B=%lld T=%lld I=%lld H=%lld threads=%d: forward %.2f ms (%.1f GFLOP/s), forward+backward %.2f ms "
           "(%.1f GFLOP/s), %.0f tokens/s; median of %d\n",
           kind, bf16 ? " bf16" : "", (long long)B, (long long)T, (long long)I, (long long)H, magna_get_threads(), 1e3 * mf,
           f_flops / mf * 1e-9, 1e3 * mb, 3 * f_flops / mb * 1e-9, (double)(B * T) / mb, reps);
    free(ones), free(fwd), free(both);
    magna_graph_free(g);
    return 0;
}
