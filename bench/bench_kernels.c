/* bench_kernels.c — GFLOP/s of the kernels a training step spends its time in: matmul (raw sgemm and
 * through a compiled graph), the seed CNN's three conv layers and causal attention, forward and
 * forward + backward.
 *
 *   build/bench_kernels [--json FILE] [--quick]
 *
 * Every figure is the median of several timed repetitions after warm-up (the machine is shared and
 * noisy; the median ignores the odd preempted run that a mean would not). bench/torch_kernels.py times
 * the same configurations in PyTorch under the same names, and bench/run_kernels.sh joins the two.
 *
 * Flop conventions (printed with the table, kept in the JSON):
 *   matmul  2 M N K.
 *   conv    forward 2 N OC OH OW C KH KW; backward adds the same for dw and again for dx when the layer
 *           needs dx (layers 2 and 3 do: their input is an activation; layer 1's input is the image).
 *   attn    causal, counting only the useful (unmasked) half: forward 2 B T^2 C (q k^T and P v, each
 *           B T^2 C / 2 multiply-adds), backward twice that (dP, dV, dQ, dK), so fwd+bwd 6 B T^2 C.
 * Backward starts from a gradient of ones at the op's output (what a sum loss would give) through
 * magna_graph_backward_seeded, so only the op is timed: a magna_sum node over the 1.6M outputs of conv layer
 * 1 took more time than the conv itself. PyTorch's side seeds y.backward() with ones alike. */
#include "graph/internal.h"
#include "ops/conv2d.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

typedef struct result {
    char key[64];  /* unique name of this row */
    char peer[64]; /* the name bench/torch_kernels.py uses for the same work */
    double flops;  /* per repetition, by the conventions above */
    double ms;     /* median */
    int reps;
} result;

#define MAX_RESULTS 32
static result results[MAX_RESULTS];
static int n_results;
static bool quick;

static void fill_uniform(float *x, int64_t n, uint64_t stream) {
    for (int64_t i = 0; i < n; i++) x[i] = 2.0f * magna_rand_uniform(1234, stream, (uint64_t)i) - 1.0f;
}

static void die(const char *what, magna_graph *g) {
    fprintf(stderr, "bench_kernels: %s: %s\n", what, g ? magna_graph_errmsg(g) : "failed");
    exit(1);
}

/* One timed thing: a function of a context that runs the work once. */
typedef void (*work_fn)(void *ctx);

typedef struct work {
    const char *key, *peer;
    double flops;
    work_fn fn;
    void *ctx;
} work;

static void record(const work *w, double median, int reps) {
    if (n_results == MAX_RESULTS) {
        fprintf(stderr, "bench_kernels: too many results\n");
        exit(1);
    }
    result *r = &results[n_results++];
    snprintf(r->key, sizeof r->key, "%s", w->key);
    snprintf(r->peer, sizeof r->peer, "%s", w->peer);
    r->flops = w->flops;
    r->ms = 1e3 * median;
    r->reps = reps;
    printf("%-26s | %8.1f GFLOP/s | %9.3f ms | %3d reps\n", w->key, w->flops / median * 1e-9, r->ms, reps);
    fflush(stdout);
}

#define MAX_REPS 200

/* Warm-up (first touch of the arena, OpenBLAS's buffers, libgomp's team), then rounds until both a
 * minimum count and a minimum time are reached, capped so that the whole run stays short. Several works
 * given together run alternately, one repetition of each per round: on a shared machine a slow spell
 * then hits all of them alike, so their ratio (graph over raw sgemm) stays fair. */
static void measure_together(int count, const work *ws) {
    const double min_time = quick ? 0.2 : 0.8 * count;
    const int min_reps = quick ? 3 : 7;
    static double t[4][MAX_REPS];
    if (count > 4) {
        fprintf(stderr, "bench_kernels: at most 4 works measured together\n");
        exit(1);
    }
    for (int i = 0; i < 2; i++)
        for (int w = 0; w < count; w++) ws[w].fn(ws[w].ctx);
    int reps = 0;
    const double start = now_s();
    while (reps < MAX_REPS && (reps < min_reps || now_s() - start < min_time)) {
        for (int w = 0; w < count; w++) {
            const double t0 = now_s();
            ws[w].fn(ws[w].ctx);
            t[w][reps] = now_s() - t0;
        }
        reps++;
    }
    for (int w = 0; w < count; w++) {
        sort_doubles(t[w], reps);
        record(&ws[w], reps % 2 ? t[w][reps / 2] : 0.5 * (t[w][reps / 2 - 1] + t[w][reps / 2]), reps);
    }
}

static void measure(const char *key, const char *peer, double flops, work_fn fn, void *ctx) {
    measure_together(1, &(work){key, peer, flops, fn, ctx});
}

static double gflops_of(const char *key) {
    for (int i = 0; i < n_results; i++)
        if (!strcmp(results[i].key, key)) return results[i].flops / results[i].ms * 1e-6;
    return NAN;
}

/* ---- matmul ------------------------------------------------------------------------------------- */

typedef struct raw_ctx {
    int n;
    float *a, *b, *c;
} raw_ctx;

static void run_raw(void *p) {
    raw_ctx *r = p;
    magna_sgemm(false, false, r->n, r->n, r->n, 1.0f, r->a, r->n, r->b, r->n, 0.0f, r->c, r->n);
}

static void run_forward(void *p) {
    magna_graph *g = p;
    if (magna_graph_forward(g) != MAGNA_OK) die("forward", g);
}

/* A graph whose target is the op's output itself, and the gradient backward starts from. */
typedef struct fb_ctx {
    magna_graph *g;
    float *seed;
} fb_ctx;

static void run_forward_backward(void *p) {
    fb_ctx *c = p;
    if (magna_graph_forward(c->g) != MAGNA_OK) die("forward", c->g);
    /* backward adds into the gradients; zeroing them is part of every real training step. */
    magna_graph_zero_grad(c->g);
    if (magna_graph_backward_seeded(c->g, c->seed) != MAGNA_OK) die("backward", c->g);
}

/* Compiles g for forward alone (y kept) or for forward + backward with y as the target: backward is seeded
 * with ones, d(sum y)/dy, without a sum node whose own cost would be timed with the op's. */
static void compile_for(magna_graph *g, magna_node *y, bool backward, fb_ctx *ctx, const char *what) {
    ctx->g = g;
    ctx->seed = NULL;
    if (!backward) magna_graph_keep(g, y);
    if (magna_graph_compile(g, backward ? y : NULL) != MAGNA_OK) die(what, g);
    if (backward) {
        const int64_t n = magna_node_numel(y);
        ctx->seed = malloc((size_t)n * sizeof(float));
        if (!ctx->seed) die("out of memory", NULL);
        for (int64_t i = 0; i < n; i++) ctx->seed[i] = 1.0f;
    }
}

static void bench_matmul(int n) {
    const size_t count = (size_t)n * n;
    raw_ctx r = {n, aligned_alloc(MAGNA_ALIGN, count * 4), aligned_alloc(MAGNA_ALIGN, count * 4),
                 aligned_alloc(MAGNA_ALIGN, count * 4)};
    if (!r.a || !r.b || !r.c) die("out of memory", NULL);
    fill_uniform(r.a, (int64_t)count, 1);
    fill_uniform(r.b, (int64_t)count, 2);
    /* The same product as a user writes it: data fed through an input, the weight a parameter. */
    magna_graph *g = magna_graph_new(1);
    if (!g) die("out of memory", NULL);
    magna_node *a = magna_input(g, "a", MAGNA_F32, 2, (int64_t[]){n, n});
    magna_node *b = magna_param(g, "b", 2, (int64_t[]){n, n}, magna_init_zeros());
    magna_node *c = magna_matmul(g, a, b, false, false);
    magna_graph_keep(g, c);
    if (magna_graph_compile(g, NULL) != MAGNA_OK) die("compile matmul", g);
    memcpy(magna_node_data(a), r.a, count * 4);
    memcpy(magna_node_data(b), r.b, count * 4);

    char raw_key[64], graph_key[64], peer[64];
    const double flops = 2.0 * n * n * n;
    snprintf(raw_key, sizeof raw_key, "sgemm_raw %d", n);
    snprintf(graph_key, sizeof graph_key, "matmul_graph %d", n);
    snprintf(peer, sizeof peer, "matmul %d", n);
    measure_together(2, (work[]){{raw_key, peer, flops, run_raw, &r}, {graph_key, peer, flops, run_forward, g}});

    /* Both paths must compute the same product, or the comparison means nothing. */
    run_raw(&r);
    const float *gc = magna_node_data(c);
    double diff = 0;
    for (size_t i = 0; i < count; i++) diff = fmax(diff, fabs((double)gc[i] - r.c[i]));
    if (!(diff <= 1e-3)) {
        fprintf(stderr, "bench_kernels: graph and raw matmul differ by %g\n", diff);
        exit(1);
    }
    magna_graph_free(g);
    free(r.a), free(r.b), free(r.c);
}

/* ---- conv2d ------------------------------------------------------------------------------------- */

static void bench_conv(int batch, int cin, int cout, int hw, bool backward) {
    /* Layer 1 reads the image (no dx); the others read an activation, whose gradient backward must
     * produce: there x is a param so that magna computes dx (an input never gets a gradient). */
    const bool needs_dx = cin > 1;
    magna_graph *g = magna_graph_new(2);
    if (!g) die("out of memory", NULL);
    const int64_t xshape[4] = {batch, cin, hw, hw};
    magna_node *x = backward && needs_dx ? magna_param(g, "x", 4, xshape, magna_init_uniform(-1, 1))
                                         : magna_input(g, "x", MAGNA_F32, 4, xshape);
    magna_node *w = magna_param(g, "w", 4, (int64_t[]){cout, cin, 3, 3}, magna_init_he_uniform());
    magna_node *bias = magna_param(g, "bias", 1, (int64_t[]){cout}, magna_init_uniform(-0.1f, 0.1f));
    magna_node *y = magna_conv2d(g, x, w, bias, (magna_conv2d_opts){.pad_h = 1, .pad_w = 1});
    fb_ctx ctx;
    compile_for(g, y, backward, &ctx, "compile conv");
    fill_uniform(magna_node_data(x), magna_node_numel(x), 3);
    char path[256];
    printf("conv %dx%d@%d: %s\n", cin, cout, hw, magna_conv2d_describe(y, path, sizeof path));

    const double fwd = 2.0 * batch * cout * hw * hw * cin * 9;
    char key[64], peer[64];
    snprintf(peer, sizeof peer, "conv_%s %dx%d@%d", backward ? "fwdbwd" : "fwd", cin, cout, hw);
    snprintf(key, sizeof key, "%s", peer);
    if (backward)
        measure(key, peer, fwd * (needs_dx ? 3 : 2), run_forward_backward, &ctx);
    else
        measure(key, peer, fwd, run_forward, g);
    free(ctx.seed);
    magna_graph_free(g);
}

/* ---- attention ---------------------------------------------------------------------------------- */

static void bench_attention(int B, int T, int C, int H, bool backward) {
    magna_graph *g = magna_graph_new(3);
    if (!g) die("out of memory", NULL);
    const int64_t shape[3] = {B, T, C};
    /* For backward q, k, v are params (they come out of a projection in a real model, so all three
     * need gradients); for forward alone they are inputs. */
    magna_node *qkv[3];
    static const char *const names[3] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++)
        qkv[i] = backward ? magna_param(g, names[i], 3, shape, magna_init_uniform(-1, 1))
                          : magna_input(g, names[i], MAGNA_F32, 3, shape);
    magna_node *y = magna_attention(g, qkv[0], qkv[1], qkv[2], H, true);
    fb_ctx ctx;
    compile_for(g, y, backward, &ctx, "compile attention");
    if (!backward)
        for (int i = 0; i < 3; i++) fill_uniform(magna_node_data(qkv[i]), magna_node_numel(qkv[i]), 4 + (uint64_t)i);

    const double fwd = 2.0 * B * (double)T * T * C;
    char key[64];
    snprintf(key, sizeof key, "attn_%s B%dT%dC%dH%d", backward ? "fwdbwd" : "fwd", B, T, C, H);
    if (backward)
        measure(key, key, 3 * fwd, run_forward_backward, &ctx);
    else
        measure(key, key, fwd, run_forward, g);
    free(ctx.seed);
    magna_graph_free(g);
}

/* ---- output ------------------------------------------------------------------------------------- */

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void write_json(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fprintf(f, "{\n  \"runtime\": ");
    json_string(f, magna_runtime_info());
    fprintf(f, ",\n  \"threads\": %d,\n  \"results\": [\n", magna_get_threads());
    for (int i = 0; i < n_results; i++) {
        const result *r = &results[i];
        fprintf(f, "    {\"key\": ");
        json_string(f, r->key);
        fprintf(f, ", \"peer\": ");
        json_string(f, r->peer);
        fprintf(f, ", \"flops\": %.0f, \"ms\": %.6f, \"gflops\": %.3f, \"reps\": %d}%s\n", r->flops, r->ms,
                r->flops / r->ms * 1e-6, r->reps, i + 1 < n_results ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    if (fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv) {
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            json = argv[++i];
        } else if (!strcmp(argv[i], "--quick")) {
            quick = true;
        } else {
            fprintf(stderr, "usage: %s [--json FILE] [--quick]\n", argv[0]);
            return 2;
        }
    }
    magna_error err;
    if (magna_runtime_init(&err) != MAGNA_OK) {
        fprintf(stderr, "bench_kernels: %s\n", err.message);
        return 1;
    }
    printf("%s\n", magna_runtime_info());
    printf("median of >= %d timed reps after 2 warm-up runs; flops: matmul 2MNK; conv fwd 2*N*OC*OH*OW*C*9, "
           "fwd+bwd adds dw (+dx on layers 2, 3); causal attention counts the unmasked half: fwd 2BT^2C, "
           "fwd+bwd 6BT^2C; backward seeded with ones at the op's output\n",
           quick ? 3 : 7);

    for (int n = 1024; n <= 2048; n *= 2) bench_matmul(n);
    static const int conv[3][3] = {{1, 32, 28}, {32, 64, 14}, {64, 128, 7}};
    for (int bwd = 0; bwd < 2; bwd++)
        for (int i = 0; i < 3; i++) bench_conv(64, conv[i][0], conv[i][1], conv[i][2], bwd);
    static const int attn[2][4] = {{8, 256, 384, 6}, {16, 128, 256, 4}};
    for (int bwd = 0; bwd < 2; bwd++)
        for (int i = 0; i < 2; i++) bench_attention(attn[i][0], attn[i][1], attn[i][2], attn[i][3], bwd);

    for (int n = 1024; n <= 2048; n *= 2) {
        char raw[64], graph[64];
        snprintf(raw, sizeof raw, "sgemm_raw %d", n);
        snprintf(graph, sizeof graph, "matmul_graph %d", n);
        printf("matmul_graph / sgemm_raw %d = %.3f\n", n, gflops_of(graph) / gflops_of(raw));
    }
    if (json) write_json(json);
    return 0;
}
