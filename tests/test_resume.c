/* test_resume.c — full-state checkpoints: 3 epochs straight and the same run stopped mid-epoch (or at an
 * epoch's end), resumed in a fresh model made with another seed, and finished give identical weights, Adam
 and epoch losses, bit for bit, with dropout, shuffling, Adam and a cosine schedule with warm-up on.
 * Checkpoints that do not fit the model are refused, each with its own message, and change nothing. */
#include "check.h"
#include "magna.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

enum { ROWS = 100, VAL = 24, FEATURES = 5, BATCH = 16, EPOCHS = 3 }; /* 7 steps an epoch, the last one short */
static float X[(ROWS + VAL) * FEATURES], Y[ROWS + VAL];
static char dir[64];

static void make_data(void) {
    for (int r = 0; r < ROWS + VAL; r++) {
        float y = 0.1f;
        for (int j = 0; j < FEATURES; j++) {
            const float x = 2 * magna_rand_uniform(5, 2, (uint64_t)(r * FEATURES + j)) - 1;
            X[r * FEATURES + j] = x;
            y += (float)(j + 1) * x * x - 0.7f * x;
        }
        Y[r] = y;
    }
}

typedef struct variant {
    int units;              /* of the first layer: another number is another shape */
    int extra_layers;       /* another architecture: more tensors */
    magna_optimizer_kind kind;
    float momentum;         /* SGD: with it, the optimizer has a moment to save */
} variant;

static magna_model *make(uint64_t seed, variant v) {
    magna_model *m = magna_model_new(seed, BATCH);
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    magna_layer_spec layers[] = {MAGNA_DENSE(v.units ? v.units : 16, MAGNA_ACT_RELU), MAGNA_DROPOUT(0.3f),
                                 MAGNA_DENSE(8, MAGNA_ACT_RELU), MAGNA_DENSE(1, 0), MAGNA_DENSE(1, 0)};
    magna_model_sequential(m, layers, v.extra_layers ? 5 : 4);
    magna_status st = magna_model_compile(
        m, &(magna_compile_opts){.loss = MAGNA_LOSS_MSE,
                                 .optimizer = {.kind = v.kind, .lr = 2e-2f, .momentum = v.momentum},
                                 .schedule = {.kind = MAGNA_SCHEDULE_COSINE, .warmup_steps = 3, .min_lr = 1e-4f},
                                 .metrics = MAGNA_METRIC_RMSE});
    CHECK(st == MAGNA_OK, "compile: %s", magna_model_errmsg(m));
    return m;
}
static const variant ADAM = {.kind = MAGNA_ADAM};

static const magna_dataset TRAIN = {.rows = ROWS, .x = X, .y = Y};
static const magna_dataset VALID = {.rows = VAL, .x = X + ROWS * FEATURES, .y = Y + ROWS};

static char *sub(const char *name) {
    static char buf[4][256];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}
static bool exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The weights and states of a model, copied (the moments show in the steps after a resume). */
typedef struct snapshot {
    float *w, *s;
    size_t nw, ns;
} snapshot;
static snapshot snap(magna_model *m) {
    magna_graph *g = magna_model_graph(m);
    snapshot x = {0};
    const float *w = magna_graph_params(g, &x.nw), *s = magna_graph_states(g, &x.ns);
    x.w = malloc((x.nw + 1) * sizeof(float)), x.s = malloc((x.ns + 1) * sizeof(float));
    memcpy(x.w, w, x.nw * sizeof(float));
    memcpy(x.s, s, x.ns * sizeof(float));
    return x;
}
static void snap_free(snapshot *x) { free(x->w), free(x->s); }
static bool same(const snapshot *a, const snapshot *b) {
    return a->nw == b->nw && a->ns == b->ns && memcmp(a->w, b->w, a->nw * sizeof(float)) == 0 &&
           memcmp(a->s, b->s, a->ns * sizeof(float)) == 0;
}

static bool stop_after_first(magna_model *m, const magna_epoch_log *log, void *user) {
    (void)m, (void)log, (void)user;
    return false;
}

/* Resumes from `ckpt` in a model made with another seed and finishes the run; returns it. */
static magna_model *finish_logged(const char *ckpt, magna_history *h, const char *log_dir) {
    magna_model *c = make(99, ADAM);
    magna_status st = magna_model_resume(c, ckpt);
    CHECK(st == MAGNA_OK, "resume %s: %s", ckpt, magna_model_errmsg(c));
    st = magna_model_fit(c, &TRAIN, &VALID, &(magna_fit_opts){.epochs = EPOCHS, .log_dir = log_dir}, h);
    CHECK(st == MAGNA_OK, "resumed fit: %s", magna_model_errmsg(c));
    CHECK(magna_model_step(c) == EPOCHS * 7, "resumed run ends at step %lld", (long long)magna_model_step(c));
    return c;
}
static magna_model *finish(const char *ckpt, magna_history *h) { return finish_logged(ckpt, h, NULL); }

static bool same_bytes(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    for (int ca = 0, cb = 0; same && ca != EOF;) ca = fgetc(fa), cb = fgetc(fb), same = ca == cb;
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static void test_exact_resume(void) {
    /* the run straight through */
    magna_model *a = make(7, ADAM);
    magna_history ha;
    CHECK(magna_model_fit(a, &TRAIN, &VALID, &(magna_fit_opts){.epochs = EPOCHS, .log_dir = sub("log-a")}, &ha) ==
              MAGNA_OK,
          "%s", magna_model_errmsg(a));
    snapshot sa = snap(a);

    /* stopped at step 10 (epoch 2, step 3 of 7), checkpoints every 4 steps, the last 2 kept */
    const char *d1 = sub("mid");
    magna_model *b = make(7, ADAM);
    magna_history hb;
    CHECK(magna_model_fit(b, &TRAIN, &VALID,
                          &(magna_fit_opts){.epochs = EPOCHS, .checkpoint_dir = d1, .save_every = 4, .keep_last = 2,
                                            .max_steps = 10, .log_dir = sub("log-b")},
                          &hb) == MAGNA_OK,
          "%s", magna_model_errmsg(b));
    CHECK(hb.interrupted && hb.count == 1 && magna_model_step(b) == 10, "stopped at step %lld after %d epochs",
          (long long)magna_model_step(b), hb.count);
    CHECK(!exists(sub("mid/step-000000004.safetensors")), "step 4 pruned (keep_last 2)");
    CHECK(exists(sub("mid/step-000000008.safetensors")) && exists(sub("mid/step-000000010.safetensors")),
          "steps 8 and 10 kept");
    CHECK(exists(sub("mid/best.safetensors")), "best.safetensors after epoch 1");
    CHECK(strstr(magna_model_last_checkpoint(b), "step-000000010") != NULL, "last: %s", magna_model_last_checkpoint(b));
    snapshot sb = snap(b);
    CHECK(!same(&sa, &sb), "the stopped run differs from the finished one (the test can fail)");

    magna_history hc;
    magna_model *c = finish_logged(d1, &hc, sub("log-b")); /* the folder: its newest checkpoint */
    snapshot sc = snap(c);
    CHECK(same(&sa, &sc), "2N straight == N + resume + N: weights and states bit for bit");
    CHECK(hc.count == 2 && hc.epochs[0].epoch == 2, "the resumed run logs epochs 2..3 (%d)", hc.count);
    CHECK(hc.count == 2 && hc.epochs[0].train.loss == ha.epochs[1].train.loss &&
              hc.epochs[1].val.loss == ha.epochs[2].val.loss,
          "epoch losses identical (the interrupted epoch's running sums were saved): %.9g vs %.9g",
          hc.count ? hc.epochs[0].train.loss : 0, ha.epochs[1].train.loss);
    CHECK(hc.best_epoch == ha.best_epoch, "best epoch %d vs %d", hc.best_epoch, ha.best_epoch);
    char la[256], lb[256];
    snprintf(la, sizeof la, "%s", sub("log-a/log.csv"));
    snprintf(lb, sizeof lb, "%s", sub("log-b/log.csv"));
    CHECK(same_bytes(la, lb), "the resumed run's log.csv (epoch 1 kept, 2-3 appended) is the straight run's");
    snprintf(la, sizeof la, "%s", sub("log-a/curves.svg"));
    snprintf(lb, sizeof lb, "%s", sub("log-b/curves.svg"));
    CHECK(same_bytes(la, lb), "and so is curves.svg");
    snap_free(&sc);
    magna_history_free(&hc);
    magna_model_free(c);

    /* stopped exactly at an epoch's last step (before its validation), and at an epoch's end (after it) */
    const char *d2 = sub("edge");
    magna_model *e = make(7, ADAM);
    CHECK(magna_model_fit(e, &TRAIN, &VALID, &(magna_fit_opts){.epochs = EPOCHS, .checkpoint_dir = d2, .max_steps = 7},
                          NULL) == MAGNA_OK,
          "%s", magna_model_errmsg(e));
    magna_model_free(e);
    c = finish(sub("edge/step-000000007.safetensors"), &hc);
    sc = snap(c);
    CHECK(same(&sa, &sc), "stopped on an epoch's last step: identical");
    CHECK(hc.count == 3 && hc.epochs[0].train.loss == ha.epochs[0].train.loss, "epoch 1 finished after resume");
    snap_free(&sc);
    magna_history_free(&hc);
    magna_model_free(c);

    const char *d3 = sub("epoch");
    e = make(7, ADAM);
    CHECK(magna_model_fit(e, &TRAIN, &VALID,
                          &(magna_fit_opts){.epochs = EPOCHS, .checkpoint_dir = d3, .save_each_epoch = true,
                                            .on_epoch_end = stop_after_first},
                          NULL) == MAGNA_OK,
          "%s", magna_model_errmsg(e));
    magna_model_free(e);
    c = finish(d3, &hc);
    sc = snap(c);
    CHECK(same(&sa, &sc), "stopped after an epoch's end: identical");
    CHECK(hc.count == 2 && hc.epochs[0].epoch == 2, "resumed at epoch 2");
    snap_free(&sc);
    magna_history_free(&hc);
    magna_model_free(c);

    /* restore_best: the best weights travel in the checkpoint too */
    magna_model *r1 = make(7, ADAM), *r2 = make(7, ADAM);
    CHECK(magna_model_fit(r1, &TRAIN, &VALID, &(magna_fit_opts){.epochs = EPOCHS, .restore_best = true}, NULL) ==
              MAGNA_OK,
          "%s", magna_model_errmsg(r1));
    const char *d4 = sub("best");
    CHECK(magna_model_fit(r2, &TRAIN, &VALID,
                          &(magna_fit_opts){.epochs = EPOCHS, .restore_best = true, .checkpoint_dir = d4, .max_steps = 16},
                          NULL) == MAGNA_OK,
          "%s", magna_model_errmsg(r2));
    magna_model *r3 = make(99, ADAM);
    CHECK(magna_model_resume(r3, d4) == MAGNA_OK, "%s", magna_model_errmsg(r3));
    CHECK(magna_model_fit(r3, &TRAIN, &VALID, &(magna_fit_opts){.epochs = EPOCHS, .restore_best = true}, NULL) ==
              MAGNA_OK,
          "%s", magna_model_errmsg(r3));
    snapshot s1 = snap(r1), s3 = snap(r3);
    CHECK(same(&s1, &s3), "restore_best after resume: the same best weights");
    snap_free(&s1), snap_free(&s3);
    magna_model_free(r1), magna_model_free(r2), magna_model_free(r3);

    /* a run that early stopping ended stays ended: resuming its last checkpoint trains no further */
    magna_model *p1 = make(7, ADAM);
    magna_history hp;
    const char *d5 = sub("patience");
    const magna_fit_opts po = {.epochs = 40, .patience = 1, .min_delta = 1e9f, .restore_best = true,
                               .checkpoint_dir = d5, .save_each_epoch = true};
    CHECK(magna_model_fit(p1, &TRAIN, &VALID, &po, &hp) == MAGNA_OK && hp.stopped_early && hp.count == 2,
          "early stopping after 2 epochs (%d): %s", hp.count, magna_model_errmsg(p1));
    magna_model *p2 = make(99, ADAM);
    magna_history hq;
    CHECK(magna_model_resume(p2, d5) == MAGNA_OK, "%s", magna_model_errmsg(p2));
    CHECK(magna_model_fit(p2, &TRAIN, &VALID, &po, &hq) == MAGNA_OK, "%s", magna_model_errmsg(p2));
    snapshot s_p1 = snap(p1), s_p2 = snap(p2);
    CHECK(hq.count == 0 && hq.stopped_early && magna_model_step(p2) == 14 && same(&s_p1, &s_p2),
          "no more epochs (%d), step %lld, the best weights restored", hq.count, (long long)magna_model_step(p2));
    snap_free(&s_p1), snap_free(&s_p2);
    magna_history_free(&hp), magna_history_free(&hq);
    magna_model_free(p1), magna_model_free(p2);

    snap_free(&sa), snap_free(&sb);
    magna_history_free(&ha), magna_history_free(&hb);
    magna_model_free(a), magna_model_free(b);
}

/* A refused resume leaves the model as it was. */
static void expect_refused(magna_model *m, const char *path, const char *needle, const char *what) {
    snapshot before = snap(m);
    const int64_t step = magna_model_step(m);
    magna_status st = magna_model_resume(m, path);
    CHECK(st != MAGNA_OK, "%s: refused", what);
    CHECK(strstr(magna_model_errmsg(m), needle) != NULL, "%s: message '%s' lacks '%s'", what, magna_model_errmsg(m),
          needle);
    snapshot after = snap(m);
    CHECK(same(&before, &after) && magna_model_step(m) == step, "%s: model unchanged", what);
    snap_free(&before), snap_free(&after);
}

static void test_mismatch(void) {
    char ck[256];
    snprintf(ck, sizeof ck, "%s", sub("mid/step-000000010.safetensors"));
    magna_model *m;
    m = make(1, (variant){.kind = MAGNA_SGD});
    expect_refused(m, ck, "optimizer is adam, the model's is sgd", "another optimizer");
    magna_model_free(m);
    m = make(1, (variant){.kind = MAGNA_ADAM, .units = 12});
    expect_refused(m, ck, "shape [5, 16] in the file, the model's is [5, 12]", "another shape");
    magna_model_free(m);
    m = make(1, (variant){.kind = MAGNA_ADAM, .extra_layers = 1});
    expect_refused(m, ck, "tensor 'optimizer.m': shape [272] in the file, the model's is [304]",
                   "another architecture (more params)");
    magna_model_free(m);
    /* plain SGD has no moment to save; SGD with momentum misses it */
    magna_model *plain = make(1, (variant){.kind = MAGNA_SGD});
    CHECK(magna_model_fit(plain, &TRAIN, NULL,
                          &(magna_fit_opts){.epochs = 1, .checkpoint_dir = sub("sgd"), .max_steps = 2}, NULL) ==
              MAGNA_OK,
          "%s", magna_model_errmsg(plain));
    magna_model_free(plain);
    m = make(1, (variant){.kind = MAGNA_SGD, .momentum = 0.9f});
    expect_refused(m, sub("sgd"), "missing tensor 'optimizer.m'", "a missing tensor");
    magna_model_free(m);

    /* a weights-only file */
    m = make(1, ADAM);
    magna_error err;
    const char *w = sub("weights.safetensors");
    CHECK(magna_save_safetensors(magna_model_graph(m), w, NULL, &err) == MAGNA_OK, "%s", err.message);
    expect_refused(m, w, "not a full-state checkpoint", "weights only");
    expect_refused(m, dir, "no checkpoint (step-*.safetensors)", "a folder without checkpoints");
    expect_refused(m, sub("nothing-here"), "cannot open", "no such path");

    /* a dtype the loader does not take: F32 -> F16 in the header keeps every offset */
    FILE *f = fopen(ck, "rb");
    CHECK(f != NULL, "%s exists", ck);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *bytes = malloc((size_t)n);
    CHECK(fread(bytes, 1, (size_t)n, f) == (size_t)n, "read");
    fclose(f);
    char *at = strstr(bytes + 8, "\"optimizer.v\":{\"dtype\":\"F32\"");
    CHECK(at != NULL, "the checkpoint holds Adam's second moment");
    if (at) memcpy(strstr(at, "F32"), "F16", 3);
    const char *bad = sub("f16.safetensors");
    f = fopen(bad, "wb");
    fwrite(bytes, 1, (size_t)n, f);
    fclose(f);
    free(bytes);
    expect_refused(m, bad, "tensor 'optimizer.v': dtype 'F16', expected 'F32'", "wrong dtype");

    /* the position means nothing on other data */
    CHECK(magna_model_resume(m, ck) == MAGNA_OK, "%s", magna_model_errmsg(m));
    magna_dataset fewer = TRAIN;
    fewer.rows = ROWS - 10;
    CHECK(magna_model_fit(m, &fewer, NULL, &(magna_fit_opts){.epochs = EPOCHS}, NULL) == MAGNA_ERR_ARG,
          "other data refused");
    CHECK(strstr(magna_model_errmsg(m), "trained on 100 rows") != NULL, "message: %s", magna_model_errmsg(m));
    magna_model_free(m);
}

int main(void) {
    magna_set_threads(1);
    make_data();
    snprintf(dir, sizeof dir, "/tmp/magna-resume-XXXXXX");
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    test_exact_resume();
    test_mismatch();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    return check_finish("test_resume");
}
