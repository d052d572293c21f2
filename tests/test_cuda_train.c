/* test_cuda_train.c — whole models trained on CUDA against the same models trained on the CPU.
 *
 * A regression MLP (SGD with Nesterov momentum, clipping), a classifier with dropout and batch norm
 * (Adam), a small CNN and a tiny GPT (AdamW) each train for a few steps from one seed on both devices in
 * float32; the weights, the losses and the validation metrics must agree to float32 summation-order noise.
 * Then the CUDA side's API coherence: weights written through magna_graph_params reach the device,
 * a checkpoint taken on CUDA resumes on the CPU bit for bit in the state it saved, and bf16 mode trains
 * too (looser). Under the emulator this runs in CI; on a GPU in `make gpu-check`; without either, 77. */
#include "check.h"
#include "cuda/ops.h" /* the graph's device state: how many pairs compile fused */
#include "magna.h"
#include "profile_report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

enum { ROWS = 96, FEATURES = 6, CLASSES = 3, VOCAB = 11, T = 8 };
static float X[ROWS * FEATURES], Y[ROWS];
static int32_t LABELS[ROWS], IDS[ROWS * T], NEXT[ROWS * T];

static void make_data(void) {
    for (int r = 0; r < ROWS; r++) {
        float y = 0.3f, score[CLASSES] = {0};
        for (int j = 0; j < FEATURES; j++) {
            const float x = 2 * magna_rand_uniform(9, 1, (uint64_t)(r * FEATURES + j)) - 1;
            X[r * FEATURES + j] = x;
            y += (float)(j % 3 - 1) * x * (1 + 0.2f * (float)j);
            score[j % CLASSES] += x;
        }
        Y[r] = y;
        LABELS[r] = score[0] > score[1] ? (score[0] > score[2] ? 0 : 2) : (score[1] > score[2] ? 1 : 2);
    }
    /* token windows of a sequence with structure (each id mostly the previous plus 3, mod VOCAB) */
    for (int r = 0; r < ROWS; r++)
        for (int t = 0; t <= T; t++) {
            int32_t id = t == 0 ? (int32_t)(magna_rand_u64(9, 3, (uint64_t)r) % VOCAB)
                                : (IDS[r * T + t - 1] + 3 + (magna_rand_uniform(9, 4, (uint64_t)(r * T + t)) < 0.2f)) % VOCAB;
            if (t < T) IDS[r * T + t] = id;
            if (t > 0) NEXT[r * T + t - 1] = id;
        }
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double worst = 0, scale = 1;
    for (size_t i = 0; i < n; i++) scale = fabs((double)b[i]) > scale ? fabs((double)b[i]) : scale;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]) / scale;
        if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

typedef magna_node *(*build_fn)(magna_model *m);
static int last_fused; /* pairs the last CUDA compile fused (src/cuda/fuse.c) */

static magna_node *build_mlp(magna_model *m) {
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    return magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(16, MAGNA_ACT_TANH), MAGNA_DENSE(1, 0)}, 2);
}
static magna_node *build_classifier(magna_model *m) {
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    return magna_model_sequential(m,
                                  (magna_layer_spec[]){MAGNA_DENSE(24, MAGNA_ACT_RELU), MAGNA_BATCH_NORM(),
                                                       MAGNA_DROPOUT(0.2f), MAGNA_DENSE(CLASSES, 0)},
                                  4);
}
static magna_node *build_cnn(magna_model *m) { /* the rows as 1x2x3 images */
    magna_model_input(m, "x", MAGNA_F32, 3, SHAPE(1, 2, 3));
    return magna_model_sequential(m,
                                  (magna_layer_spec[]){MAGNA_CONV2D(4, 3, MAGNA_ACT_RELU), MAGNA_MAX_POOL2D(2),
                                                       MAGNA_FLATTEN(), MAGNA_DENSE(CLASSES, 0)},
                                  4);
}

static magna_node *build_gpt(magna_model *m) { /* pre-LN blocks: bias + GELU and residual + layer norm */
    magna_node *ids = magna_model_input(m, "ids", MAGNA_I32, 1, SHAPE(T));
    const magna_gpt_config cfg = {.vocab = VOCAB, .context = T, .d_model = 16, .heads = 2, .layers = 2};
    magna_node *logits = magna_gpt(magna_model_graph(m), "gpt", ids, &cfg, NULL, NULL);
    magna_model_set_output(m, logits);
    return logits;
}

typedef struct run {
    float *params;
    size_t n;
    double train_loss, val_loss, val_metric;
} run;

static bool train(build_fn build, magna_compile_opts co, magna_device device, bool fp32, int epochs, run *out) {
    magna_model *m = magna_model_new(7, 16);
    build(m);
    co.device = device, co.fp32 = fp32;
    if (magna_model_compile(m, &co) != MAGNA_OK) {
        printf("  compile on %s: %s\n", device == MAGNA_DEVICE_CUDA ? "cuda" : "cpu", magna_model_errmsg(m));
        magna_model_free(m);
        return false;
    }
    magna_graph *mg = magna_model_graph(m);
    if (device == MAGNA_DEVICE_CUDA) last_fused = mg->cuda ? mg->cuda->fused : -1;
    const bool cls = co.loss == MAGNA_LOSS_SPARSE_CE, lm = build == build_gpt;
    magna_dataset d = {.rows = ROWS, .x = lm ? NULL : X, .x_i32 = lm ? IDS : NULL, .y = cls ? NULL : Y,
                       .labels = lm ? NEXT : cls ? LABELS : NULL};
    magna_history h = {0};
    magna_status st = magna_model_fit(m, &d, NULL, &(magna_fit_opts){.epochs = epochs, .validation_split = 0.25f}, &h);
    if (st != MAGNA_OK) {
        printf("  fit on %s: %s\n", device == MAGNA_DEVICE_CUDA ? "cuda" : "cpu", magna_model_errmsg(m));
        magna_model_free(m);
        return false;
    }
    const magna_epoch_log *last = &h.epochs[h.count - 1];
    out->train_loss = last->train.loss, out->val_loss = last->val.loss;
    out->val_metric = cls ? last->val.accuracy : last->val.rmse;
    const float *p = magna_graph_params(magna_model_graph(m), &out->n);
    out->params = malloc(out->n * sizeof(float));
    memcpy(out->params, p, out->n * sizeof(float));
    magna_history_free(&h);
    magna_model_free(m);
    return true;
}

static void same_training(const char *name, build_fn build, magna_compile_opts co, int epochs) {
    run cpu = {0}, cuda = {0};
    CHECK(train(build, co, MAGNA_DEVICE_CPU, true, epochs, &cpu), "%s: cpu training", name);
    CHECK(train(build, co, MAGNA_DEVICE_CUDA, true, epochs, &cuda), "%s: cuda training", name);
    if (!cpu.params || !cuda.params) goto done;
    const double dw = max_rel_diff(cuda.params, cpu.params, cpu.n);
    printf("%-12s fp32: weights %.1e apart; loss cpu %.6f cuda %.6f; val %.6f / %.6f\n", name, dw, cpu.train_loss,
           cuda.train_loss, cpu.val_metric, cuda.val_metric);
    CHECK(cpu.n == cuda.n && dw < 1e-3, "%s: cuda weights %.2e from the cpu's", name, dw);
    CHECK(fabs(cpu.train_loss - cuda.train_loss) <= 1e-4 * fmax(1, fabs(cpu.train_loss)), "%s: train loss %g vs %g",
          name, cuda.train_loss, cpu.train_loss);
    CHECK(fabs(cpu.val_loss - cuda.val_loss) <= 1e-4 * fmax(1, fabs(cpu.val_loss)), "%s: val loss %g vs %g", name,
          cuda.val_loss, cpu.val_loss);
    CHECK(fabs(cpu.val_metric - cuda.val_metric) <= 2e-3, "%s: val metric %g vs %g", name, cuda.val_metric,
          cpu.val_metric);
    if (build == build_gpt) { /* pre-LN blocks: bias + GELU and residual + layer norm run fused; unfused, the same */
        const int fused = last_fused;
        run plain = {0};
        setenv("MAGNA_CUDA_NO_FUSE", "1", 1);
        CHECK(train(build, co, MAGNA_DEVICE_CUDA, true, epochs, &plain), "%s: cuda unfused", name);
        unsetenv("MAGNA_CUDA_NO_FUSE");
        const double df = plain.params ? max_rel_diff(plain.params, cuda.params, cuda.n) : INFINITY;
        printf("%-12s fused %d pairs; unfused run's weights %.1e apart\n", name, fused, df);
        CHECK(fused >= 4 && last_fused == 0, "%s: %d pairs fused, %d with MAGNA_CUDA_NO_FUSE", name, fused, last_fused);
        CHECK(df < 1e-4, "%s: fused and unfused runs %.2e apart", name, df); /* the norms sum in another order */
        free(plain.params);
    }
    /* bf16 operands: the same run lands near, not on, the float32 one */
    run bf = {0};
    CHECK(train(build, co, MAGNA_DEVICE_CUDA, false, epochs, &bf), "%s: cuda bf16 training", name);
    if (bf.params) {
        const double db = max_rel_diff(bf.params, cpu.params, cpu.n);
        printf("%-12s bf16: weights %.1e apart; loss %.6f\n", name, db, bf.train_loss);
        CHECK(isfinite(bf.train_loss) && fabs(bf.train_loss - cpu.train_loss) <= 0.1 * fmax(1, cpu.train_loss),
              "%s: bf16 train loss %g vs %g", name, bf.train_loss, cpu.train_loss);
    }
    free(bf.params);
done:
    free(cpu.params), free(cuda.params);
}

/* One bf16 step of a small GPT with the activations autocast keeps in bf16 stored so (src/cuda/store16.c), or with
 * everything float32 (MAGNA_NO_FUSE=1): logits, loss and gradients to bf16's precision, in a smaller arena. */
typedef struct bf16_step {
    float logits[4 * T * 40], *grads;
    double loss;
    size_t n, arena;
    int stored16, grad_stored16;
} bf16_step;

static void gpt_step(magna_device device, bool bf16, bool store16, bf16_step *out) {
    if (store16)
        unsetenv("MAGNA_NO_FUSE");
    else
        setenv("MAGNA_NO_FUSE", "1", 1);
    magna_graph *g = magna_graph_new(5);
    CHECK(magna_graph_set_device(g, device) == MAGNA_OK && magna_graph_set_bf16(g, bf16) == MAGNA_OK, "%s",
          magna_graph_errmsg(g));
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, SHAPE(4, T)), *next = magna_input(g, "next", MAGNA_I32, 2, SHAPE(4, T));
    const magna_gpt_config cfg = {.vocab = 40, .context = T, .d_model = 32, .heads = 2, .layers = 2};
    magna_node *logits = magna_gpt(g, "gpt", ids, &cfg, NULL, NULL);
    magna_node *loss = magna_cross_entropy(g, logits, next);
    magna_graph_keep(g, logits);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    unsetenv("MAGNA_NO_FUSE");
    out->stored16 = out->grad_stored16 = 0;
    for (int i = 0; i < g->n_nodes; i++)
        out->stored16 += g->nodes[i]->stored16, out->grad_stored16 += g->nodes[i]->grad_stored16;
    for (int i = 0; i < 4 * T; i++) {
        magna_node_data_i32(ids)[i] = (int32_t)((i * 7 + 3) % 40);
        magna_node_data_i32(next)[i] = i % 9 == 4 ? MAGNA_IGNORE_LABEL : (int32_t)((i * 13 + 5) % 40);
    }
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    float read[4 * T * 40];
    CHECK(magna_node_read(logits, read) == MAGNA_OK && !memcmp(read, magna_node_data(logits), sizeof read),
          "magna_node_read of the logits is not what forward fetched (%s)", magna_graph_errmsg(g));
    CHECK(magna_graph_backward(g) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    /* with the rewrites on CUDA (on the CPU kept logits keep their memory) the logits' gradient took their memory:
     * reading them is refused, their gradient read */
    const bool spent = store16 && device == MAGNA_DEVICE_CUDA;
    CHECK((magna_node_read(logits, read) == MAGNA_OK) == !spent, "reading spent logits: %s", magna_graph_errmsg(g));
    CHECK(magna_node_read_grad(logits, read) == MAGNA_OK && fabs(read[1]) > 0 && isfinite(read[1]), "logits' gradient");
    memcpy(out->logits, magna_node_data(logits), sizeof out->logits);
    out->loss = magna_node_data(loss)[0];
    const float *gr = magna_graph_grads(g, &out->n);
    out->grads = malloc(out->n * sizeof(float));
    memcpy(out->grads, gr, out->n * sizeof(float));
    out->arena = magna_graph_arena_bytes(g);
    magna_graph_free(g);
}

static double worst_rel(const float *a, const float *b, size_t n) {
    double scale = 1e-12, worst = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst / scale;
}

/* how far a's logits and gradients are from b's, relative to b's largest */
static void steps_apart(const bf16_step *a, const bf16_step *b, double *logits, double *grads) {
    *logits = worst_rel(a->logits, b->logits, sizeof a->logits / sizeof(float));
    *grads = worst_rel(a->grads, b->grads, a->n < b->n ? a->n : b->n);
}

static void test_bf16_storage(void) {
    bf16_step s16, s32;
    gpt_step(MAGNA_DEVICE_CUDA, true, true, &s16);
    gpt_step(MAGNA_DEVICE_CUDA, true, false, &s32);
    double el, eg;
    steps_apart(&s16, &s32, &el, &eg);
    printf("bf16 storage: %d activations in bf16, arena %zu bytes (%zu without); logits %.2e, loss %.6f vs %.6f, "
           "gradients %.2e apart\n",
           s16.stored16, s16.arena, s32.arena, el, s16.loss, s32.loss, eg);
    CHECK(s16.stored16 > 0 && s32.stored16 == 0 && s16.arena < s32.arena, "no activation was kept in bf16");
    CHECK(s16.n == s32.n && el <= 1.0 / 64 && fabs(s16.loss - s32.loss) <= 1e-2 * s32.loss && eg <= 3e-2,
          "bf16 storage changed the step beyond bf16's precision");
    /* GELU and layer norm outputs computed again in backward, or kept (MAGNA_CUDA_RECOMPUTE=0): the same bits
     * here (one expression of the same input); on a GPU the compiler may contract two kernels' arithmetic apart */
    bf16_step kept;
    setenv("MAGNA_CUDA_RECOMPUTE", "0", 1);
    gpt_step(MAGNA_DEVICE_CUDA, true, true, &kept);
    unsetenv("MAGNA_CUDA_RECOMPUTE");
    printf("GELU and layer norm outputs computed again in backward: arena %zu bytes, %zu kept\n", s16.arena,
           kept.arena);
    double lk, gk;
    steps_apart(&s16, &kept, &lk, &gk);
    printf("  gradients %.1e, logits %.1e apart\n", gk, lk);
    CHECK(kept.n == s16.n && gk <= 1e-4 && lk == 0 && s16.arena < kept.arena,
          "computing the GELU and layer norm outputs again changed the step, or saved nothing");
#ifdef MAGNA_CUDA_EMU
    CHECK(gk == 0, "the emulator computes the outputs again to other bits (%g)", gk);
#endif
    /* gradients in bf16 as autocast's (store16.c: a fused GELU's input's, written by its backward, and output's,
     * by the matmul after it; q's, k's, v's, by the attention; the attention output's, by the matmul after it: 10
     * nodes a layer, counting the matmuls before that share them), or float32 (MAGNA_CUDA_GRAD16=0): forward the
     * same bits, gradients within bf16's rounding, in a smaller arena */
    bf16_step g32;
    setenv("MAGNA_CUDA_GRAD16", "0", 1);
    gpt_step(MAGNA_DEVICE_CUDA, true, true, &g32);
    unsetenv("MAGNA_CUDA_GRAD16");
    double lg, gg;
    steps_apart(&s16, &g32, &lg, &gg);
    printf("gradients in bf16: %d nodes, arena %zu bytes (%zu float32); gradients %.1e, logits %.1e "
           "apart\n", s16.grad_stored16, s16.arena, g32.arena, gg, lg);
    CHECK(s16.grad_stored16 == 20 && g32.grad_stored16 == 0 && s16.arena < g32.arena && g32.n == s16.n && gg > 0 &&
              gg <= 1e-2 && lg == 0,
          "gradients in bf16 changed the step beyond bf16's rounding, or were not kept so");
    free(s16.grads), free(s32.grads), free(kept.grads), free(g32.grads);
}

/* The same step in float32 on both devices. This model's plan once let the final layer norm's output take the
 * memory of an input its fused residual add (src/cuda/fuse.c) was still to read: the CUDA loss was 0.3% off,
 * and another on each run. */
static void test_gpt_step_against_cpu(void) {
    bf16_step cpu, cuda;
    gpt_step(MAGNA_DEVICE_CPU, false, true, &cpu);
    gpt_step(MAGNA_DEVICE_CUDA, false, true, &cuda);
    double el, eg;
    steps_apart(&cuda, &cpu, &el, &eg);
    printf("gpt step float32: loss cpu %.7f cuda %.7f, logits %.1e, gradients %.1e apart\n", cpu.loss, cuda.loss, el,
           eg);
    CHECK(cpu.n == cuda.n && el <= 1e-5 && fabs(cpu.loss - cuda.loss) <= 1e-5 * cpu.loss && eg <= 1e-4,
          "the GPT step on CUDA is not the CPU's");
    free(cpu.grads), free(cuda.grads);
}

/* Writes through the host API reach the device, and reads see what the device computed. */
static void test_coherence(void) {
    magna_graph *g = magna_graph_new(3);
    CHECK(magna_graph_set_device(g, MAGNA_DEVICE_CUDA) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    magna_node *x = magna_input(g, "x", MAGNA_F32, 2, SHAPE(2, 3));
    magna_node *w = magna_param(g, "w", 2, SHAPE(3, 2), magna_init_uniform(-1, 1));
    magna_node *y = magna_matmul(g, x, w, false, false);
    magna_node *loss = magna_sum(g, y, MAGNA_ALL_AXES, false);
    magna_graph_keep(g, y);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    if (magna_graph_status(g) != MAGNA_OK) {
        magna_graph_free(g);
        return;
    }
    const float xs[6] = {1, 2, 3, 4, 5, 6}, ws[6] = {1, 0, 0, 1, 1, 1};
    CHECK(magna_node_set(x, xs, 6) == MAGNA_OK && magna_node_set(w, ws, 6) == MAGNA_OK, "set");
    CHECK(magna_graph_forward(g) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    const float want[4] = {4, 5, 10, 11};
    const float *got = magna_node_data(y);
    for (int i = 0; got && i < 4; i++) CHECK(got[i] == want[i], "y[%d] = %g, want %g", i, got[i], want[i]);
    float *params = magna_graph_params(g, NULL);
    params[0] = 2; /* w[0][0]: y[0][0] = 1*2 + 3*1 = 5 */
    CHECK(magna_graph_forward(g) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    CHECK(magna_node_data(y)[0] == 5, "a write through magna_graph_params reached the device: y[0][0] = %g",
          magna_node_data(y)[0]);
    magna_graph_zero_grad(g);
    CHECK(magna_graph_backward(g) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    const float *gw = magna_node_grad(w); /* d sum(x w) / dw[k][j] = sum over rows of x[r][k] */
    const float want_gw[6] = {5, 5, 7, 7, 9, 9};
    for (int i = 0; gw && i < 6; i++) CHECK(gw[i] == want_gw[i], "dw[%d] = %g, want %g", i, gw[i], want_gw[i]);
    float gx[6];
    CHECK(magna_node_read_grad(x, gx) != MAGNA_OK, "x has no gradient: read_grad refuses");
    magna_graph_free(g);
}

/* A checkpoint written while training on CUDA holds the device's state: resuming it on the CPU and
 * training on gives the CPU-only run's weights. */
static void test_checkpoint_across_devices(void) {
    char dir[] = "/tmp/magna_cuda_ckpt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    magna_compile_opts co = {.loss = MAGNA_LOSS_MSE, .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-2f},
                             .metrics = MAGNA_METRIC_RMSE};
    magna_dataset d = {.rows = ROWS, .x = X, .y = Y};
    float *straight = NULL, *resumed = NULL;
    size_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        magna_model *m = magna_model_new(11, 16);
        build_mlp(m);
        magna_compile_opts c = co;
        c.device = pass == 0 ? MAGNA_DEVICE_CPU : MAGNA_DEVICE_CUDA, c.fp32 = true;
        if (magna_model_compile(m, &c) != MAGNA_OK) {
            CHECK(false, "checkpoint test: compile: %s", magna_model_errmsg(m));
            magna_model_free(m);
            break;
        }
        magna_fit_opts fo = {.epochs = 3, .checkpoint_dir = pass ? dir : NULL, .max_steps = pass ? 8 : 0};
        CHECK(magna_model_fit(m, &d, NULL, &fo, NULL) == MAGNA_OK, "%s", magna_model_errmsg(m));
        if (pass == 0) {
            const float *p = magna_graph_params(magna_model_graph(m), &n);
            straight = malloc(n * sizeof(float));
            memcpy(straight, p, n * sizeof(float));
        } else { /* stopped at step 8 on cuda: continue on the cpu */
            magna_model *cpu = magna_model_new(99, 16);
            build_mlp(cpu);
            magna_compile_opts cc = co;
            CHECK(magna_model_compile(cpu, &cc) == MAGNA_OK, "%s", magna_model_errmsg(cpu));
            CHECK(magna_model_resume(cpu, magna_model_last_checkpoint(m)) == MAGNA_OK, "%s", magna_model_errmsg(cpu));
            fo.checkpoint_dir = NULL, fo.max_steps = 0;
            CHECK(magna_model_fit(cpu, &d, NULL, &fo, NULL) == MAGNA_OK, "%s", magna_model_errmsg(cpu));
            size_t n2;
            const float *p = magna_graph_params(magna_model_graph(cpu), &n2);
            resumed = malloc(n2 * sizeof(float));
            memcpy(resumed, p, n2 * sizeof(float));
            magna_model_free(cpu);
        }
        magna_model_free(m);
    }
    if (straight && resumed) {
        const double dw = max_rel_diff(resumed, straight, n);
        printf("checkpoint   cuda steps 1-8 then cpu: weights %.1e from the cpu-only run\n", dw);
        CHECK(dw < 1e-4, "resumed on the cpu from a cuda checkpoint: %.2e from the cpu-only run", dw);
    }
    free(straight), free(resumed);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

/* MAGNA_PROFILE=1 on CUDA: the GPU's times between events around every op, read without an extra wait; the rows
 * add up to the total, fused kernels and the gap between steps have their own, and the training is the same. */
static void test_profile(void) {
    const magna_compile_opts co = {.loss = MAGNA_LOSS_SPARSE_CE, .metrics = MAGNA_METRIC_ACCURACY,
                                   .optimizer = {.kind = MAGNA_ADAMW, .lr = 3e-3f, .weight_decay = 0.1f}};
    run plain = {0}, profiled = {0};
    CHECK(train(build_gpt, co, MAGNA_DEVICE_CUDA, false, 1, &plain), "unprofiled training");
    setenv("MAGNA_PROFILE", "1", 1);
    const int saved = stderr_catch();
    const bool ok = train(build_gpt, co, MAGNA_DEVICE_CUDA, false, 1, &profiled);
    char *report = stderr_caught(saved);
    unsetenv("MAGNA_PROFILE");
    CHECK(ok, "profiled training");
    const double dw = plain.params && profiled.params ? max_rel_diff(profiled.params, plain.params, plain.n) : INFINITY;
    CHECK(dw <= 1e-4, "profiling changed the training: weights %.2e apart", dw);
#ifdef MAGNA_CUDA_EMU
    CHECK(dw == 0, "profiling changed the training on the emulator: weights %.2e apart", dw);
#endif
    profile_row attn = {0}, between = {0}, fused = {0}, zero = {0};
    CHECK(report && strstr(report, "(the GPU's time)"), "no CUDA profile: %s", report ? report : "(nothing caught)");
    /* 2 layers: two attentions a forward */
    CHECK(profile_row_of(report, "attention", &attn) && attn.calls >= 2 && attn.calls % 2 == 0 && attn.bwd_ms > 0 &&
              attn.fwd_tflops >= 0,
          "attention's row: %s", report ? report : "");
    CHECK(profile_row_of(report, "(between steps: optimizer, host)", &between) && between.calls >= 1 && between.fwd_ms > 0,
          "the gap between steps");
    CHECK(profile_row_of(report, "layer_norm (fused)", &fused) && fused.calls > 0, "the fused residual + layer norm's row");
    CHECK(profile_row_of(report, "(zero activation grads)", &zero), "zeroing's row");
    double sum_ms = 0;
    const char *rows[] = {"attention", "matmul", "matmul (fused)", "layer_norm", "layer_norm (fused)", "gelu (fused)",
                          "add", "add (fused)", "cross_entropy", "embedding", "slice", "(zero activation grads)",
                          "(inputs to the device)", "(between steps: optimizer, host)"};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        profile_row r;
        if (profile_row_of(report, rows[i], &r)) sum_ms += r.fwd_ms + r.bwd_ms;
    }
    const double total_ms = profile_total_ms(report);
    printf("profile on cuda: %.3f ms in the rows named, %.3f the total; attention %ld calls; weights %.1e from an "
           "unprofiled run\n",
           sum_ms, total_ms, attn.calls, dw);
    CHECK(total_ms > 0 && fabs(sum_ms - total_ms) <= 0.01 * total_ms + 0.01, "rows %.3f ms, total %.3f: %s", sum_ms,
          total_ms, report ? report : "");
    free(report), free(plain.params), free(profiled.params);
}

int main(void) {
    char why[256];
    if (!magna_cuda_available(why, sizeof why)) {
        printf("test_cuda_train: skipped: %s\n", why);
        return 77;
    }
    make_data();
    same_training("mlp/nesterov", build_mlp,
                  (magna_compile_opts){.loss = MAGNA_LOSS_MSE, .metrics = MAGNA_METRIC_RMSE, .clip_norm = 1.0f,
                                       .optimizer = {.kind = MAGNA_SGD, .lr = 0.05f, .momentum = 0.9f, .nesterov = true}},
                  3);
    same_training("classifier", build_classifier,
                  (magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE, .metrics = MAGNA_METRIC_ACCURACY,
                                       .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-2f}},
                  3);
    same_training("cnn", build_cnn,
                  (magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE, .metrics = MAGNA_METRIC_ACCURACY,
                                       .optimizer = {.kind = MAGNA_ADAMW, .lr = 1e-2f, .weight_decay = 0.1f}},
                  2);
    same_training("gpt", build_gpt,
                  (magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE, .metrics = MAGNA_METRIC_ACCURACY,
                                       .optimizer = {.kind = MAGNA_ADAMW, .lr = 3e-3f, .weight_decay = 0.1f}},
                  2);
    test_coherence();
    test_checkpoint_across_devices();
    test_gpt_step_against_cpu();
    test_bf16_storage();
    test_profile();
    return check_finish("test_cuda_train");
}
