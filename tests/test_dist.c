/* test_dist.c — data-parallel training over MPI, run by mpiexec from this same program (--worker MODE):
 *   - 2 ranks x batch B give the weights of 1 process with batch 2B after K steps, and the same global loss;
 *   - ZeRO 1 gives the same weights bit for bit, with half the optimizer memory on each rank;
 *   - a checkpoint written mid-epoch by 2 ranks (ZeRO 1) resumes in 1 process with batch 2B, and one of 1
 *     process resumes on 2 ranks: both end with the weights and epoch losses of the straight run;
 *   - kill -9 of one rank: the job ends non-zero within the deadline, no process left;
 *   - ranks given different data are refused before the first step; a NaN in one rank's rows stops every
 *     rank at that step with the loss error; both end the job non-zero at once, with no process left;
 *   - SIGSTOP of one rank: the deadline fires, the error names the rank and the step, no process left;
 *   - `mpiexec -n 2 magna train` gives the test figures of `magna train --batch 2B`, written once; stopped
 *     with --steps, it resumes in one process with --batch 2B and ends as that run does.
 * Built again with the CUDA emulator (test_dist_cuda_emu, linked with magna_emu), it tests data parallel on
 * (emulated) CUDA graphs instead, NCCL emulated with MPI:
 *   - 2 ranks x B on CUDA (fp32) give the weights of 1 process x 2B on the cpu, over NCCL and over the host
 *     path (MAGNA_DIST_NO_NCCL=1), and the same global loss; rank 0 says which path; ZeRO 1 on CUDA gives the
 *     same bits with half the optimizer state on each rank, over NCCL and over the host path;
 *   - batch norm and dropout, 2 ranks on CUDA against 2 ranks on the cpu: the same weights and states (the
 *     statistics averaged at each epoch's end through the host mirrors), the same on both ranks;
 *   - NCCL failing or hanging on one rank (emulated): the job ends within the deadline, the rank and step named;
 *   - `mpiexec -n 2 magna-emu train --device cuda --fp32` gives the figures of `magna train --batch 2B` on the
 *     cpu, with --zero1 too; stopped at step 5 with --zero1, it resumes on the cpu and ends as that run does.
 * Skipped (exit 77, ctest's SKIP_RETURN_CODE) when the build has no MPI, after checking that the dist API
 * then says so. */
#include "check.h"
#include "magna.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

/* 200 rows = 6 steps of 32 and a last of 8 (4 per rank): the short step's weighting is tested too */
enum { ROWS = 200, FEATURES = 8, BATCH = 16, EPOCHS = 3, STEPS = EPOCHS * 7 };
static float X[ROWS * FEATURES], Y[ROWS];

static void make_data(void) {
    for (int r = 0; r < ROWS; r++) {
        float y = 0;
        for (int j = 0; j < FEATURES; j++) {
            float x = 2 * magna_rand_uniform(9, 1, (uint64_t)(r * FEATURES + j)) - 1;
            X[r * FEATURES + j] = x;
            y += (j % 2 ? 1.5f : -0.5f) * x + 0.3f * x * x;
        }
        Y[r] = sinf(y);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static magna_model *new_model(int64_t batch) {
    magna_model *m = magna_model_new(7, batch);
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(32, MAGNA_ACT_TANH), MAGNA_DENSE(1, MAGNA_ACT_NONE)}, 2);
    return m;
}

static magna_compile_opts compile_opts(magna_device device) {
    return (magna_compile_opts){.loss = MAGNA_LOSS_MSE, .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-2f},
                                .metrics = MAGNA_METRIC_MAE, .device = device, .fp32 = true};
}

static magna_model *make_model_on(int64_t batch, magna_device device) {
    magna_model *m = new_model(batch);
    const magna_compile_opts o = compile_opts(device);
    if (magna_model_compile(m, &o) != MAGNA_OK) {
        printf("compile: %s\n", magna_model_errmsg(m));
        exit(3);
    }
    return m;
}

static magna_model *make_model(int64_t batch) { return make_model_on(batch, MAGNA_DEVICE_CPU); }

static void write_file(const char *dir, const char *name, const void *p, size_t bytes) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes || fclose(f) != 0) {
        printf("cannot write %s\n", path);
        exit(3);
    }
}

static bool read_file(const char *dir, const char *name, void *p, size_t bytes) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    bool ok = fread(p, 1, bytes, f) == bytes;
    fclose(f);
    return ok;
}

/* ---- the workers (under mpiexec) ------------------------------------------------------------------ */

/* equiv DIR TAG ZERO1 [cuda]: trains K steps data parallel (on the CUDA device with "cuda"); rank 0 writes the
 * weights and the global loss, every rank its optimizer memory. */
static int worker_equiv(const char *dir, const char *tag, bool zero1, bool cuda) {
    magna_error err;
    const double timeout = getenv("MAGNA_DIST_TIMEOUT") ? 0 : 30; /* (0: the variable's) */
    magna_dist *d = magna_dist_init(&(magna_dist_opts){.timeout = timeout, .zero1 = zero1, .bucket_bytes = 1024}, &err);
    if (!d) return printf("dist init: %s\n", err.message), 3;
    magna_model *m = make_model_on(BATCH, cuda ? MAGNA_DEVICE_CUDA : MAGNA_DEVICE_CPU);
    if (magna_model_set_dist(m, d) != MAGNA_OK) return printf("set_dist: %s\n", magna_model_errmsg(m)), 3;
    if (magna_dist_rank(d) == 0) printf("gradients by %s\n", magna_dist_grad_path(d, magna_model_graph(m)));
    magna_history h = {0};
    magna_dataset data = {.rows = ROWS, .x = X, .y = Y};
    if (magna_model_fit(m, &data, NULL, &(magna_fit_opts){.epochs = EPOCHS, .verbose = 1}, &h) != MAGNA_OK)
        return printf("fit: %s\n", magna_model_errmsg(m)), 3;
    size_t n;
    const float *w = magna_graph_params(magna_model_graph(m), &n);
    char name[128];
    const int rank = magna_dist_rank(d);
    const int64_t bytes = (int64_t)magna_optimizer_state_bytes(magna_model_optimizer(m));
    snprintf(name, sizeof name, "%s.optbytes.%d", tag, rank);
    write_file(dir, name, &bytes, sizeof bytes);
    const double results[3] = {h.epochs[h.count - 1].train.loss, h.epochs[h.count - 1].train.mae,
                               (double)magna_model_step(m)};
    if (rank == 0) {
        snprintf(name, sizeof name, "%s.params", tag);
        write_file(dir, name, w, n * sizeof *w);
        snprintf(name, sizeof name, "%s.results", tag);
        write_file(dir, name, results, sizeof results);
    }
    magna_history_free(&h);
    magna_model_free(m);
    magna_dist_finalize(d);
    return 0;
}

/* weight DIR: 2 ranks on cuda begin backward with one weight (magna_dist_backward_begin: the buckets backward
 * finishes are scaled by it and summed at once) and ask for the sum with another: a caller's bug, which each
 * rank reports instead of averaging with the wrong weights (the errors returned, not aborting the job). */
static int worker_weight(void) {
    magna_error err;
    magna_dist *d = magna_dist_init(&(magna_dist_opts){.timeout = 30, .bucket_bytes = 1024}, &err);
    if (!d) return printf("dist init: %s\n", err.message), 3;
    magna_dist_set_abort_on_error(d, false);
    magna_model *m = make_model_on(BATCH, MAGNA_DEVICE_CUDA);
    if (magna_model_set_dist(m, d) != MAGNA_OK) return printf("set_dist: %s\n", magna_model_errmsg(m)), 3;
    magna_graph *g = magna_model_graph(m);
    const int rank = magna_dist_rank(d);
    magna_status st = magna_graph_forward(g);
    if (st == MAGNA_OK) st = magna_dist_backward_begin(d, g, 16, 0, &err);
    if (st == MAGNA_OK) st = magna_graph_backward(g);
    if (st != MAGNA_OK) return printf("rank %d: the step before the sum failed: %s\n", rank, magna_graph_errmsg(g)), 3;
    st = magna_dist_allreduce_grads(d, g, 8, NULL, 0, 0, &err);
    printf("rank %d: allreduce_grads: %s: %s\n", rank, magna_status_name(st), st == MAGNA_OK ? "" : err.message);
    magna_model_free(m);
    magna_dist_finalize(d);
    return st == MAGNA_OK ? 0 : 4;
}

/* ckpt DIR TAG MAX_STEPS RESUME: 2 ranks with ZeRO 1 and full-state checkpoints in DIR/TAG, stopping at
 * MAX_STEPS (0: the end), resuming from RESUME first unless it is "-"; rank 0 writes the weights and the
 * last epoch's loss. */
static int worker_ckpt(const char *dir, const char *tag, int64_t max_steps, const char *resume) {
    magna_error err;
    magna_dist *d = magna_dist_init(&(magna_dist_opts){.timeout = 30, .zero1 = true}, &err);
    if (!d) return printf("dist init: %s\n", err.message), 3;
    magna_model *m = make_model(BATCH);
    magna_model_set_dist(m, d);
    if (strcmp(resume, "-") != 0 && magna_model_resume(m, resume) != MAGNA_OK)
        return printf("resume: %s\n", magna_model_errmsg(m)), 3;
    char ck[512], name[128];
    snprintf(ck, sizeof ck, "%s/%s", dir, tag);
    magna_history h = {0};
    magna_dataset data = {.rows = ROWS, .x = X, .y = Y};
    magna_fit_opts fo = {.epochs = EPOCHS, .checkpoint_dir = ck, .save_each_epoch = true, .max_steps = max_steps};
    if (magna_model_fit(m, &data, NULL, &fo, &h) != MAGNA_OK) return printf("fit: %s\n", magna_model_errmsg(m)), 3;
    size_t n;
    const float *w = magna_graph_params(magna_model_graph(m), &n);
    const double results[3] = {h.count ? h.epochs[h.count - 1].train.loss : NAN,
                               h.count ? h.epochs[h.count - 1].epoch : 0, (double)magna_model_step(m)};
    if (magna_dist_rank(d) == 0) {
        snprintf(name, sizeof name, "%s.params", tag);
        write_file(dir, name, w, n * sizeof *w);
        snprintf(name, sizeof name, "%s.results", tag);
        write_file(dir, name, results, sizeof results);
    }
    magna_history_free(&h);
    magna_model_free(m);
    magna_dist_finalize(d);
    return 0;
}

/* bad DIR KIND: "rows": rank 1 has one row fewer; "nan": a NaN in the row rank 1 takes first. */
static int worker_bad(const char *dir, const char *kind) {
    magna_error err;
    magna_dist *d = magna_dist_init(&(magna_dist_opts){.timeout = 30}, &err);
    if (!d) return printf("dist init: %s\n", err.message), 3;
    const int rank = magna_dist_rank(d);
    char name[64];
    const int64_t pid = getpid();
    snprintf(name, sizeof name, "pid.%d", rank);
    write_file(dir, name, &pid, sizeof pid);
    magna_model *m = make_model(BATCH);
    magna_model_set_dist(m, d);
    magna_dataset data = {.rows = ROWS, .x = X, .y = Y};
    if (strcmp(kind, "rows") == 0 && rank == 1) data.rows--;
    if (strcmp(kind, "nan") == 0 && rank == 1) { /* the row of the first step's second half (no shuffling) */
        static float x[ROWS * FEATURES];
        memcpy(x, X, sizeof x);
        x[(BATCH + 3) * FEATURES] = NAN;
        data.x = x;
    }
    magna_fit_opts fo = {.epochs = EPOCHS, .no_shuffle = true};
    if (magna_model_fit(m, &data, NULL, &fo, NULL) != MAGNA_OK) return printf("fit: %s\n", magna_model_errmsg(m)), 3;
    magna_model_free(m);
    magna_dist_finalize(d);
    return 0; /* not reached: fit ends the job */
}

/* bn DIR TAG cpu|cuda: 2 ranks train a model with batch norm and dropout (fp32 on cuda); each rank writes its
 * weights and states (the batch-norm statistics, averaged over the ranks at each epoch's end). */
static int worker_bn(const char *dir, const char *tag, bool cuda) {
    magna_error err;
    magna_dist *d = magna_dist_init(&(magna_dist_opts){.timeout = 30}, &err);
    if (!d) return printf("dist init: %s\n", err.message), 3;
    magna_model *m = magna_model_new(7, BATCH);
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(32, MAGNA_ACT_TANH), MAGNA_BATCH_NORM(),
                                                   MAGNA_DROPOUT(0.2f), MAGNA_DENSE(1, MAGNA_ACT_NONE)}, 4);
    const magna_compile_opts o = compile_opts(cuda ? MAGNA_DEVICE_CUDA : MAGNA_DEVICE_CPU);
    if (magna_model_compile(m, &o) != MAGNA_OK) return printf("compile: %s\n", magna_model_errmsg(m)), 3;
    if (magna_model_set_dist(m, d) != MAGNA_OK) return printf("set_dist: %s\n", magna_model_errmsg(m)), 3;
    magna_dataset data = {.rows = ROWS, .x = X, .y = Y};
    if (magna_model_fit(m, &data, NULL, &(magna_fit_opts){.epochs = EPOCHS}, NULL) != MAGNA_OK)
        return printf("fit: %s\n", magna_model_errmsg(m)), 3;
    size_t np, ns;
    const float *w = magna_graph_params(magna_model_graph(m), &np);
    char name[128];
    snprintf(name, sizeof name, "%s.params.%d", tag, magna_dist_rank(d));
    write_file(dir, name, w, np * sizeof *w);
    const float *st = magna_graph_states(magna_model_graph(m), &ns);
    snprintf(name, sizeof name, "%s.states.%d", tag, magna_dist_rank(d));
    write_file(dir, name, st, ns * sizeof *st);
    const int64_t counts[2] = {(int64_t)np, (int64_t)ns};
    snprintf(name, sizeof name, "%s.counts", tag);
    write_file(dir, name, counts, sizeof counts);
    magna_model_free(m);
    magna_dist_finalize(d);
    return 0;
}

typedef struct long_run {
    const char *dir;
    magna_dist *d;
    double t0;
} long_run;

/* After the first epoch (training is under way), each rank leaves its pid for the test to signal. Stops by
 * itself after 60 s, should the test fail to end it. */
static bool long_epoch_end(magna_model *m, const magna_epoch_log *log, void *user) {
    long_run *run = user;
    if (log->epoch == 1) {
        char name[64];
        const int64_t pid = getpid();
        snprintf(name, sizeof name, "pid.%d", magna_dist_rank(run->d));
        write_file(run->dir, name, &pid, sizeof pid);
    }
    return now_s() - run->t0 < 60;
}

static int worker_long(const char *dir, double timeout) {
    magna_error err;
    long_run run = {.dir = dir, .t0 = now_s()};
    if (!(run.d = magna_dist_init(&(magna_dist_opts){.timeout = timeout}, &err)))
        return printf("dist init: %s\n", err.message), 3;
    magna_model *m = make_model(BATCH);
    magna_model_set_dist(m, run.d);
    magna_dataset data = {.rows = ROWS, .x = X, .y = Y};
    magna_fit_opts fo = {.epochs = 1000000, .on_epoch_end = long_epoch_end, .user = &run};
    if (magna_model_fit(m, &data, NULL, &fo, NULL) != MAGNA_OK) return printf("fit: %s\n", magna_model_errmsg(m)), 3;
    magna_model_free(m);
    magna_dist_finalize(run.d);
    return 0;
}

/* ---- the driver -------------------------------------------------------------------------------------- */

static char self[4096], dir[256];

/* Under ASan, the ranks leave leak checking off: Open MPI leaves ~20 KB at MPI_Finalize, all of it in libmpi,
 * libopen-pal and the components it has unloaded by then (so no suppression can name them); the same fit and
 * evaluate code is leak-checked in this process, which runs them without MPI. */
static void no_mpi_leak_check(void) {
    const char *old = getenv("ASAN_OPTIONS");
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%sdetect_leaks=0", old ? old : "", old && *old ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
}

/* Open MPI's settings by environment, for a launched child: root, more ranks than cores, and the session
 * folder in this test's own temporary folder (two mpiexec jobs on one machine, say two test suites at
 * once, otherwise share /tmp/ompi.* and one fails with "orte_session_dir failed: File exists"). */
static void mpi_child_env(void) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    setenv("OMPI_MCA_orte_tmpdir_base", dir, 1);
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
}

/* mpiexec -n RANKS self --worker ARGS..., in its own process group, output to DIR/LOG. */
static pid_t launch(int ranks, const char *log, const char *const *args) {
    char np[16], path[512];
    snprintf(np, sizeof np, "%d", ranks);
    snprintf(path, sizeof path, "%s/%s", dir, log);
    const char *argv[16] = {MAGNA_MPIEXEC, "-n", np, self, "--worker"};
    int n = 5;
    for (int i = 0; args[i] && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        mpi_child_env();
        setenv("OMP_NUM_THREADS", "1", 1);
        setenv("MAGNA_THREADS", "1", 1);
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
        no_mpi_leak_check();
        execv(MAGNA_MPIEXEC, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* The magna command (PROG, next to this test: magna, or magna-emu on the emulated CUDA device) under
 * mpiexec, or alone when ranks is 0. */
static pid_t launch_prog(const char *prog, int ranks, const char *log, const char *const *args) {
    char np[16], path[512], magna[4200];
    snprintf(np, sizeof np, "%d", ranks);
    snprintf(path, sizeof path, "%s/%s", dir, log);
    snprintf(magna, sizeof magna, "%s", self);
    snprintf(strrchr(magna, '/'), sizeof magna - (size_t)(strrchr(magna, '/') - magna), "/%s", prog);
    const char *argv[24];
    int n = 0;
    if (ranks) argv[n++] = MAGNA_MPIEXEC, argv[n++] = "-n", argv[n++] = np;
    argv[n++] = magna;
    for (int i = 0; args[i] && n < 23; i++) argv[n++] = args[i];
    argv[n] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        mpi_child_env();
        if (ranks) no_mpi_leak_check();
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static pid_t launch_cli(int ranks, const char *log, const char *const *args) {
    return launch_prog("magna", ranks, log, args);
}

/* Waits up to `seconds` for the launcher; on time-out kills its process group. Returns the wait status, or -1. */
static int wait_for(pid_t pid, double seconds) {
    const double t0 = now_s();
    int status;
    while (now_s() - t0 < seconds) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) return status;
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    kill(-pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static void show_log(const char *log);

/* The last line of a log that starts with `prefix`, into line. */
static bool log_line(const char *log, const char *prefix, char *line, size_t n) {
    char path[512], buf[4096];
    snprintf(path, sizeof path, "%s/%s", dir, log);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool found = false;
    while (fgets(buf, sizeof buf, f))
        if (strncmp(buf, prefix, strlen(prefix)) == 0) snprintf(line, n, "%s", buf), found = true;
    fclose(f);
    return found;
}

static int count_lines(const char *log, const char *prefix) {
    char path[512], buf[4096];
    snprintf(path, sizeof path, "%s/%s", dir, log);
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && fgets(buf, sizeof buf, f)) n += strncmp(buf, prefix, strlen(prefix)) == 0;
    if (f) fclose(f);
    return n;
}

static void show_log(const char *log) {
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/%s", dir, log);
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) printf("    | %s", line);
    fclose(f);
}

static bool log_has(const char *log, const char *text) {
    char path[512], buf[65536];
    snprintf(path, sizeof path, "%s/%s", dir, log);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

/* A worker of this test still running: its pid alive, and its command line naming this test's folder. */
static bool alive(int64_t pid) {
    char path[64], cmd[4096];
    snprintf(path, sizeof path, "/proc/%lld/cmdline", (long long)pid);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(cmd, 1, sizeof cmd - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (!cmd[i]) cmd[i] = ' ';
    cmd[n] = '\0';
    char stat_path[64], state = '?';
    snprintf(stat_path, sizeof stat_path, "/proc/%lld/stat", (long long)pid);
    if ((f = fopen(stat_path, "r"))) {
        if (fscanf(f, "%*d %*s %c", &state) != 1) state = '?';
        fclose(f);
    }
    return strstr(cmd, dir) != NULL && state != 'Z';
}

/* No worker left within a few seconds of the launcher's end; any left are killed (and counted as failures). */
static bool none_left(const int64_t pids[2]) {
    const double t0 = now_s();
    while (now_s() - t0 < 3) {
        if (!alive(pids[0]) && !alive(pids[1])) return true;
        struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    for (int r = 0; r < 2; r++)
        if (alive(pids[r])) kill((pid_t)pids[r], SIGKILL);
    return false;
}

/* The largest |a - b| over n floats. */
static double max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* N ranks -> M ranks: a checkpoint of 2 ranks x B (ZeRO 1: the optimizer state is gathered for it) resumes in
 * 1 process x 2B, and a checkpoint of 1 process x 2B resumes on 2 ranks x B; both stop at step 10, in the
 * middle of epoch 2, and end like the straight run of 1 process x 2B: weights to float32 rounding (as above),
 * the loss of every epoch after the resume, the interrupted one included (its running sums travel in the
 * checkpoint). A mismatched global batch is refused. */
static void test_resume_across_ranks(void) {
    char ck[512];
    magna_dataset data = {.rows = ROWS, .x = X, .y = Y};
    magna_model *straight = make_model(2 * BATCH);
    magna_history hs = {0};
    CHECK(magna_model_fit(straight, &data, NULL, &(magna_fit_opts){.epochs = EPOCHS}, &hs) == MAGNA_OK, "%s",
          magna_model_errmsg(straight));
    size_t n;
    const float *ws = magna_graph_params(magna_model_graph(straight), &n);
    float *w = malloc(n * sizeof *w);

    /* 2 ranks -> 1 process */
    int st = wait_for(launch(2, "ckA.log", (const char *[]){"ckpt", dir, "ckA", "10", "-", NULL}), 60);
    CHECK(st == 0, "2 ranks with checkpoints: status %d", st);
    if (st != 0) show_log("ckA.log");
    snprintf(ck, sizeof ck, "%s/ckA", dir);
    magna_model *m = make_model(BATCH); /* the wrong global batch first: 1 x 16 against the checkpoint's 2 x 16 */
    CHECK(magna_model_resume(m, ck) == MAGNA_OK, "%s", magna_model_errmsg(m));
    CHECK(magna_model_fit(m, &data, NULL, &(magna_fit_opts){.epochs = EPOCHS}, NULL) == MAGNA_ERR_ARG &&
              strstr(magna_model_errmsg(m), "batches of 32, this fit has 200 rows in batches of 16 (1 rank x 16)"),
          "a resume with another global batch: %s", magna_model_errmsg(m));
    magna_model_free(m);
    m = make_model(2 * BATCH);
    magna_history h = {0};
    CHECK(magna_model_resume(m, ck) == MAGNA_OK, "%s", magna_model_errmsg(m));
    CHECK(magna_model_step(m) == 10, "resumed at step %lld", (long long)magna_model_step(m));
    CHECK(magna_model_fit(m, &data, NULL, &(magna_fit_opts){.epochs = EPOCHS}, &h) == MAGNA_OK, "%s",
          magna_model_errmsg(m));
    double dw = max_abs_diff(magna_graph_params(magna_model_graph(m), NULL), ws, n);
    printf("  2 ranks (ZeRO 1) to step 10, then 1 process: max |dw| = %.3g against the straight run\n", dw);
    CHECK(dw <= 2e-6, "weights differ by %g", dw);
    CHECK(h.count == 2 && h.epochs[0].epoch == 2, "epochs 2 and 3 after the resume (%d)", h.count);
    for (int e = 0; e < h.count && e < 2; e++) {
        const double a = h.epochs[e].train.loss, b = hs.epochs[e + 1].train.loss;
        CHECK(fabs(a - b) <= 1e-5 * fabs(b), "epoch %d loss %.9g, straight %.9g", h.epochs[e].epoch, a, b);
    }
    magna_history_free(&h);
    magna_model_free(m);

    /* 1 process -> 2 ranks */
    snprintf(ck, sizeof ck, "%s/ckB", dir);
    m = make_model(2 * BATCH);
    CHECK(magna_model_fit(m, &data, NULL,
                          &(magna_fit_opts){.epochs = EPOCHS, .checkpoint_dir = ck, .save_each_epoch = true,
                                            .max_steps = 10},
                          NULL) == MAGNA_OK,
          "%s", magna_model_errmsg(m));
    magna_model_free(m);
    st = wait_for(launch(2, "ckB.log", (const char *[]){"ckpt", dir, "ckB2", "0", ck, NULL}), 60);
    CHECK(st == 0, "2 ranks resuming a 1-process checkpoint: status %d", st);
    if (st != 0) show_log("ckB.log");
    double r[3] = {0};
    if (read_file(dir, "ckB2.params", w, n * sizeof *w) && read_file(dir, "ckB2.results", r, sizeof r)) {
        dw = max_abs_diff(w, ws, n);
        printf("  1 process to step 10, then 2 ranks (ZeRO 1): max |dw| = %.3g against the straight run\n", dw);
        CHECK(dw <= 2e-6, "weights differ by %g", dw);
        const double b = hs.epochs[EPOCHS - 1].train.loss;
        CHECK(r[1] == EPOCHS && r[2] == STEPS && fabs(r[0] - b) <= 1e-5 * fabs(b),
              "epoch %g, step %g, loss %.9g (straight %.9g)", r[1], r[2], r[0], b);
    } else {
        CHECK(false, "the resumed 2-rank run's weights");
    }
    free(w);
    magna_history_free(&hs);
    magna_model_free(straight);
}

static void test_same_weights_as_one_process(void) {
    /* 2 ranks x BATCH, plain and ZeRO 1 */
    int st = wait_for(launch(2, "dp.log", (const char *[]){"equiv", dir, "dp", "0", NULL}), 60);
    CHECK(st == 0, "2 ranks: mpiexec status %d", st);
    if (st != 0) show_log("dp.log");
    st = wait_for(launch(2, "zero.log", (const char *[]){"equiv", dir, "zero", "1", NULL}), 60);
    CHECK(st == 0, "2 ranks, ZeRO 1: mpiexec status %d", st);
    if (st != 0) show_log("zero.log");
    CHECK(log_has("dp.log", "data parallel: 2 ranks x batch 16 = global batch 32"), "rank 0 describes the setup");
    CHECK(log_has("zero.log", "ZeRO 1: optimizer state"), "ZeRO 1 reports its memory");

    /* 1 process x 2 BATCH, in this one */
    magna_model *m = make_model(2 * BATCH);
    magna_history h = {0};
    magna_dataset data = {.rows = ROWS, .x = X, .y = Y};
    CHECK(magna_model_fit(m, &data, NULL, &(magna_fit_opts){.epochs = EPOCHS}, &h) == MAGNA_OK, "%s",
          magna_model_errmsg(m));
    CHECK(magna_model_step(m) == STEPS, "%lld steps", (long long)magna_model_step(m));
    size_t n;
    const float *w1 = magna_graph_params(magna_model_graph(m), &n);
    float *w2 = malloc(n * sizeof *w2), *wz = malloc(n * sizeof *wz);
    double r2[3] = {0}, rz[3] = {0};
    const bool got = read_file(dir, "dp.params", w2, n * sizeof *w2) &&
                     read_file(dir, "zero.params", wz, n * sizeof *wz) &&
                     read_file(dir, "dp.results", r2, sizeof r2) && read_file(dir, "zero.results", rz, sizeof rz);
    CHECK(got, "the workers' weights and results");
    if (got) {
        /* float32: the two runs add the same gradient terms in another order (each rank's mean over 16 rows,
         * then the weighted sum of the two means, against one mean over 32 rows), so the gradients differ by
         * a few ulp and Adam carries that through 21 steps; measured max |dw| ~1e-7 on weights of size ~0.5 */
        double max_diff = 0, max_w = 0;
        for (size_t i = 0; i < n; i++) {
            max_diff = fmax(max_diff, fabs((double)w1[i] - w2[i]));
            max_w = fmax(max_w, fabs((double)w1[i]));
        }
        printf("  1 process x batch %d vs 2 ranks x batch %d after %d steps: max |dw| = %.3g (max |w| %.3g)\n",
               2 * BATCH, BATCH, STEPS, max_diff, max_w);
        CHECK(max_diff <= 2e-6, "weights differ by %g", max_diff);
        CHECK(r2[2] == STEPS, "the 2-rank run took %g steps, not %d", r2[2], STEPS);
        /* the loss rank 0 reports is the global one: the 1-process run's, to rounding */
        const double loss1 = h.epochs[h.count - 1].train.loss, mae1 = h.epochs[h.count - 1].train.mae;
        CHECK(fabs(r2[0] - loss1) <= 1e-5 * fabs(loss1), "global loss %.9g vs one process %.9g", r2[0], loss1);
        CHECK(fabs(r2[1] - mae1) <= 1e-5 * fabs(mae1), "global mae %.9g vs one process %.9g", r2[1], mae1);
        /* ZeRO 1 does the same arithmetic on slices: the same bits */
        CHECK(memcmp(w2, wz, n * sizeof *w2) == 0, "ZeRO 1 changed the weights");
        int64_t full = 0, z0 = 0, z1 = 0;
        CHECK(read_file(dir, "dp.optbytes.0", &full, sizeof full) &&
                  read_file(dir, "zero.optbytes.0", &z0, sizeof z0) &&
                  read_file(dir, "zero.optbytes.1", &z1, sizeof z1),
              "optimizer bytes");
        printf("  Adam state per rank: %lld bytes unsharded, ZeRO 1: %lld + %lld\n", (long long)full, (long long)z0,
               (long long)z1);
        CHECK(full == (int64_t)(2 * n * sizeof(float)), "unsharded state %lld bytes", (long long)full);
        CHECK(z0 + z1 == full && z0 <= full / 2 + 2 * 16 * 4 && z1 <= full / 2, "sharded %lld + %lld of %lld",
              (long long)z0, (long long)z1, (long long)full);
    }
    free(w2), free(wz);
    magna_history_free(&h);
    magna_model_free(m);
}

/* Starts the long run, waits for both ranks' pids (training is under way), signals rank 1. */
static pid_t start_long(const char *log, double timeout, int64_t pids[2]) {
    char t[32];
    snprintf(t, sizeof t, "%g", timeout);
    for (int r = 0; r < 2; r++) {
        char path[512];
        snprintf(path, sizeof path, "%s/pid.%d", dir, r);
        unlink(path);
    }
    pid_t pid = launch(2, log, (const char *[]){"long", dir, t, NULL});
    const double t0 = now_s();
    while (now_s() - t0 < 30) {
        if (read_file(dir, "pid.0", &pids[0], sizeof pids[0]) && read_file(dir, "pid.1", &pids[1], sizeof pids[1]))
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid) break;
        struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    CHECK(false, "the long run did not start");
    show_log(log);
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* An error only some ranks meet ends the whole job at once, with the error, and no process left. */
static void test_rank_errors(void) {
    const char *kinds[] = {"rows", "nan"};
    const char *expect[] = {"fit: training rows, batch, params, states, seed and device differ: this rank has 199",
                            "fit: the loss is nan at epoch 1, step 1"};
    for (int k = 0; k < 2; k++) {
        char log[32];
        snprintf(log, sizeof log, "bad-%s.log", kinds[k]);
        for (int r = 0; r < 2; r++) {
            char path[512];
            snprintf(path, sizeof path, "%s/pid.%d", dir, r);
            unlink(path);
        }
        const double t0 = now_s();
        const int st = wait_for(launch(2, log, (const char *[]){"bad", dir, kinds[k], NULL}), 20);
        const double took = now_s() - t0;
        int64_t pids[2] = {0, 0};
        read_file(dir, "pid.0", &pids[0], sizeof pids[0]);
        read_file(dir, "pid.1", &pids[1], sizeof pids[1]);
        printf("  %s: the job ended in %.2f s, status %d\n", kinds[k], took, st);
        CHECK(st != 0 && st != -1 && took < 10, "%s: status %d after %.2f s (deadline 30 s)", kinds[k], st, took);
        CHECK(log_has(log, expect[k]), "%s: the error '%s'", kinds[k], expect[k]);
        CHECK(pids[0] && pids[1] && none_left(pids), "%s: a rank was left running", kinds[k]);
        if (check_failed) show_log(log);
    }
}

/* A long 2-rank job with the deadline `timeout`, rank 1 sent `sig` once it runs: the job's wait status (-1 when
 * it did not end within 20 s; -2 when it did not start, already reported) and the seconds from the signal to
 * its end. */
static int signal_rank_1(const char *log, double timeout, int sig, int64_t pids[2], double *took) {
    pid_t pid = start_long(log, timeout, pids);
    if (pid < 0) return -2;
    struct timespec settle = {0, 200 * 1000 * 1000};
    nanosleep(&settle, NULL);
    const double t0 = now_s();
    kill((pid_t)pids[1], sig);
    const int st = wait_for(pid, 20);
    *took = now_s() - t0;
    return st;
}

static void test_kill9(void) {
    const double timeout = 3;
    int64_t pids[2] = {0, 0};
    double took = 0;
    const int st = signal_rank_1("kill.log", timeout, SIGKILL, pids, &took);
    if (st == -2) return;
    printf("  kill -9 rank 1: the job ended in %.2f s (deadline %.0f s), status %d\n", took, timeout, st);
    CHECK(st != -1, "the job did not end within 20 s");
    CHECK(st != 0, "the job ended with status 0 after a rank died");
    CHECK(took <= timeout * 1.25 + 0.5 + 2, "the job took %.2f s to end", took);
    CHECK(none_left(pids), "a rank was left running");
    if (st == 0 || st == -1) show_log("kill.log");
}

static void test_sigstop(void) {
    const double timeout = 2;
    int64_t pids[2] = {0, 0};
    double took = 0;
    const int st = signal_rank_1("stop.log", timeout, SIGSTOP, pids, &took);
    if (st == -2) return;
    printf("  SIGSTOP rank 1: the job ended in %.2f s (deadline %.0f s), status %d\n", took, timeout, st);
    CHECK(st != -1 && st != 0, "status %d", st);
    CHECK(took >= timeout * 0.9 && took <= timeout * 1.25 + 0.5 + 2, "the deadline fired after %.2f s", took);
    CHECK(log_has("stop.log", "rank 1") && log_has("stop.log", "at step") && log_has("stop.log", "deadline"),
          "the error names the rank and the step");
    CHECK(none_left(pids), "a rank was left running (the stopped one?)");
    show_log("stop.log");
}

/* The command, 2 ranks x its model file's batch 16 against one process with --batch 32: the same test figures
 * (printed to 4 decimals), one key=value line, the files written once by rank 0. */
static void test_cli(void) {
    char model[4200], out2[512], out1[512], l2[4096] = "", l1[4096] = "";
    snprintf(model, sizeof model, "%s", __FILE__); /* CMake passes the absolute path of this file */
    *strrchr(model, '/') = 0;
    snprintf(strrchr(model, '/'), sizeof model - (size_t)(strrchr(model, '/') - model), "/models/iris-mlp.ini");
    snprintf(out2, sizeof out2, "%s/cli2", dir);
    snprintf(out1, sizeof out1, "%s/cli1", dir);
    int st = wait_for(launch_cli(2, "cli2.log", (const char *[]){"train", model, "--epochs", "3", "--timeout", "20",
                                                                 "--out", out2, NULL}), 60);
    CHECK(st == 0, "mpiexec -n 2 magna train: status %d", st);
    st = wait_for(launch_cli(0, "cli1.log", (const char *[]){"train", model, "--epochs", "3", "--batch", "32", "--out",
                                                             out1, NULL}), 60);
    CHECK(st == 0, "magna train --batch 32: status %d", st);
    CHECK(log_line("cli2.log", "test_loss=", l2, sizeof l2) && log_line("cli1.log", "test_loss=", l1, sizeof l1),
          "the key=value lines");
    printf("  2 ranks: %s  1 process: %s", l2, l1);
    CHECK(strstr(l2, "ranks=2 ") && strstr(l1, "ranks=1 "), "ranks in the key=value lines");
    /* the figures before best_epoch must agree */
    if (strstr(l2, " best_epoch=")) *strstr(l2, " best_epoch=") = 0;
    if (strstr(l1, " best_epoch=")) *strstr(l1, " best_epoch=") = 0;
    CHECK(strcmp(l1, l2) == 0, "2 ranks x 16 gave '%s', 1 x 32 gave '%s'", l2, l1);
    CHECK(count_lines("cli2.log", "test_loss=") == 1 && count_lines("cli2.log", "wrote ") == 1,
          "rank 0 alone prints the results");
    CHECK(log_has("cli2.log", "data parallel: 2 ranks x batch 16 = global batch 32"), "the setup line");
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", out2);
    struct stat sb;
    CHECK(stat(path, &sb) == 0, "%s written", path);
    if (st != 0 || check_failed) show_log("cli2.log");

    /* 2 ranks stopped at step 5 (mid-epoch 2), resumed by one process with the same global batch */
    char out3[512], ckdir[600], l3[4096] = "";
    snprintf(out3, sizeof out3, "%s/cli3", dir);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", out3);
    st = wait_for(launch_cli(2, "cli3.log", (const char *[]){"train", model, "--epochs", "3", "--steps", "5", "--out",
                                                             out3, NULL}), 60);
    CHECK(st == 0, "mpiexec -n 2 magna train --steps 5: status %d", st);
    st = wait_for(launch_cli(0, "cli4.log", (const char *[]){"train", "--resume", ckdir, "--batch", "32", NULL}), 60);
    CHECK(st == 0, "magna train --resume (1 process): status %d", st);
    CHECK(log_line("cli4.log", "test_loss=", l3, sizeof l3), "the resumed run's key=value line");
    if (strstr(l3, " best_epoch=")) *strstr(l3, " best_epoch=") = 0;
    CHECK(strcmp(l1, l3) == 0, "2 ranks to step 5, then 1 x 32 gave '%s'; 1 x 32 straight '%s'", l3, l1);
    if (check_failed) show_log("cli3.log"), show_log("cli4.log");
}

/* ---- data parallel on the (emulated) CUDA device: test_dist_emu --cuda ------------------------------------- */

/* 2 ranks x BATCH on CUDA against 1 process x 2 BATCH on the cpu, over NCCL and over the host path, each
 * plain and with ZeRO 1 (the same bits as plain, half the optimizer state on each rank); over NCCL the 1 KiB
 * buckets are summed as backward completes them (a bucket summed before its last gradient landed would move
 * the weights off the cpu's), and with MAGNA_DIST_NO_OVERLAP=1 after backward, to the same bits. */
static void test_cuda_same_weights(void) {
    magna_model *m = make_model(2 * BATCH);
    magna_history h = {0};
    magna_dataset data = {.rows = ROWS, .x = X, .y = Y};
    CHECK(magna_model_fit(m, &data, NULL, &(magna_fit_opts){.epochs = EPOCHS}, &h) == MAGNA_OK, "%s",
          magna_model_errmsg(m));
    size_t n;
    const float *w1 = magna_graph_params(magna_model_graph(m), &n);
    float *w[5];
    for (int k = 0; k < 5; k++) w[k] = malloc(n * sizeof(float));
    const double loss1 = h.epochs[h.count - 1].train.loss, mae1 = h.epochs[h.count - 1].train.mae;
    const char *tags[5] = {"cuda-nccl", "cuda-host", "cuda-nccl-zero", "cuda-host-zero", "cuda-nccl-after"};
    for (int run = 0; run < 5; run++) {
        const char *tag = tags[run];
        const bool host = run % 2, zero = run == 2 || run == 3, after = run == 4;
        char log[64], name[96];
        snprintf(log, sizeof log, "%s.log", tag);
        if (host) setenv("MAGNA_DIST_NO_NCCL", "1", 1);
        if (after) setenv("MAGNA_DIST_NO_OVERLAP", "1", 1);
        const int st = wait_for(launch(2, log, (const char *[]){"equiv_cuda", dir, tag, zero ? "1" : "0", NULL}), 120);
        unsetenv("MAGNA_DIST_NO_NCCL"), unsetenv("MAGNA_DIST_NO_OVERLAP");
        CHECK(st == 0, "%s: 2 ranks on cuda: mpiexec status %d", tag, st);
        CHECK(log_has(log, "data parallel: 2 ranks x batch 16 = global batch 32") &&
                  log_has(log, "one GPU per rank (device 0 here), gradients by ") &&
                  log_has(log, host    ? "gradients by MPI over host memory (MAGNA_DIST_NO_NCCL"
                               : after ? "gradients by NCCL on the GPUs, after backward (MAGNA_DIST_NO_OVERLAP)"
                                       : "gradients by NCCL on the GPUs, overlapping backward") &&
                  (!zero || log_has(log, "ZeRO 1: optimizer state")),
              "%s: rank 0 describes the setup and the gradients' path", tag);
        double r[3] = {0};
        snprintf(name, sizeof name, "%s.params", tag);
        bool got = read_file(dir, name, w[run], n * sizeof(float));
        snprintf(name, sizeof name, "%s.results", tag);
        got = got && read_file(dir, name, r, sizeof r);
        CHECK(got, "%s: the workers' weights and results", tag);
        if (got) {
            double max_w = 0;
            for (size_t i = 0; i < n; i++) max_w = fmax(max_w, fabs((double)w1[i]));
            const double dw = max_abs_diff(w1, w[run], n);
            printf("  %s: 2 ranks x batch %d on cuda (fp32) vs 1 process x batch %d on the cpu after %d Adam steps: "
                   "max |dw| = %.3g (max |w| %.3g)\n", tag, BATCH, 2 * BATCH, STEPS, dw, max_w);
            CHECK(dw <= 2e-6, "%s: weights differ by %g", tag, dw);
            CHECK(r[2] == STEPS, "%s: %g steps, not %d", tag, r[2], STEPS);
            CHECK(fabs(r[0] - loss1) <= 1e-5 * fabs(loss1), "%s: global loss %.9g vs one process %.9g", tag, r[0], loss1);
            CHECK(fabs(r[1] - mae1) <= 1e-5 * fabs(mae1), "%s: global mae %.9g vs one process %.9g", tag, r[1], mae1);
        }
        if (after && got) CHECK(memcmp(w[run], w[0], n * sizeof(float)) == 0, "%s: summing after backward changed the weights", tag);
        if (zero && got) { /* the same arithmetic on slices: the plain run's bits, half the state on each rank */
            CHECK(memcmp(w[run], w[run - 2], n * sizeof(float)) == 0, "%s: ZeRO 1 changed the weights", tag);
            int64_t full = 0, z0 = 0, z1 = 0;
            char a[96], b[96], c[96];
            snprintf(a, sizeof a, "%s.optbytes.0", tags[run - 2]);
            snprintf(b, sizeof b, "%s.optbytes.0", tag);
            snprintf(c, sizeof c, "%s.optbytes.1", tag);
            CHECK(read_file(dir, a, &full, sizeof full) && read_file(dir, b, &z0, sizeof z0) &&
                      read_file(dir, c, &z1, sizeof z1) && full == (int64_t)(2 * n * sizeof(float)) &&
                      z0 + z1 == full && z0 <= full / 2 + 2 * 16 * 4 && z1 <= full / 2,
                  "%s: optimizer state %lld + %lld of %lld bytes", tag, (long long)z0, (long long)z1, (long long)full);
        }
        if (check_failed) show_log(log);
    }
    for (int k = 0; k < 5; k++) free(w[k]);
    magna_history_free(&h);
    magna_model_free(m);
}

/* NCCL failing on rank 1 (an error from ncclAllReduce), or hanging there (its stream never finishes): the job
 * ends non-zero within the deadline, with a message naming rank 1, the step and NCCL's error or the deadline
 * (the emulated NCCL's MAGNA_EMU_NCCL_FAIL and _HANG). */
static void test_cuda_nccl_failures(void) {
    const char *vars[] = {"MAGNA_EMU_NCCL_FAIL", "MAGNA_EMU_NCCL_HANG"};
    const char *expect[] = {"magna: rank 1: the gradient allreduce at step 0: ncclAllReduce failed: remote process "
                            "exited or there was a network error: emulated failure",
                            "magna: rank 1: the gradient allreduce at step 0: NCCL did not complete on this rank's GPU "
                            "within the 2 s deadline"};
    for (int k = 0; k < 2; k++) {
        char log[32];
        snprintf(log, sizeof log, "nccl-%d.log", k);
        setenv(vars[k], "1", 1);
        setenv("MAGNA_DIST_TIMEOUT", "2", 1);
        const double t0 = now_s();
        const int st = wait_for(launch(2, log, (const char *[]){"equiv_cuda", dir, "fails", "0", NULL}), 30);
        const double took = now_s() - t0;
        unsetenv(vars[k]);
        unsetenv("MAGNA_DIST_TIMEOUT");
        printf("  %s=1: the job ended in %.2f s, status %d\n", vars[k], took, st);
        CHECK(st != 0 && st != -1 && took < 15, "%s: status %d after %.2f s (deadline 2 s)", vars[k], st, took);
        CHECK(log_has(log, expect[k]), "%s: the error '%s'", vars[k], expect[k]);
        if (check_failed) show_log(log);
    }
}

/* magna_dist_backward_begin's weight and magna_dist_allreduce_grads' disagree: both ranks say so */
static void test_cuda_weight_mismatch(void) {
    const int st = wait_for(launch(2, "weight.log", (const char *[]){"weight", dir, NULL}), 60);
    CHECK(st != 0 && st != -1, "a weight mismatch: mpiexec status %d", st);
    for (int r = 0; r < 2; r++) {
        char want[160];
        snprintf(want, sizeof want, "rank %d: allreduce_grads: %s: the gradient allreduce at step 0: the weight 8 is not "
                 "the 16 backward began with", r, magna_status_name(MAGNA_ERR_IO));
        CHECK(log_has("weight.log", want), "'%s'", want);
    }
    if (check_failed) show_log("weight.log");
}

/* Batch norm and dropout, 2 ranks on cuda against 2 ranks on the cpu: the same weights and states (the
 * statistics averaged at each epoch's end on the host mirrors, after the device's were brought down), the
 * states the same on both ranks. */
static void test_cuda_batch_norm(void) {
    const char *devices[] = {"cpu", "cuda"};
    for (int k = 0; k < 2; k++) {
        char log[32];
        snprintf(log, sizeof log, "bn-%s.log", devices[k]);
        const int st = wait_for(launch(2, log, (const char *[]){"bn", dir, devices[k], devices[k], NULL}), 120);
        CHECK(st == 0, "batch norm, 2 ranks on %s: status %d", devices[k], st);
        if (st != 0) show_log(log);
    }
    enum { MAX = 4096 };
    static float p[2][2][MAX], s[2][2][MAX]; /* [device][rank] */
    int64_t counts[2][2] = {{0}};
    bool got = read_file(dir, "cpu.counts", counts[0], sizeof counts[0]) &&
               read_file(dir, "cuda.counts", counts[1], sizeof counts[1]) && counts[0][0] == counts[1][0] &&
               counts[0][1] == counts[1][1] && counts[0][0] <= MAX && counts[0][1] <= MAX && counts[0][1] > 0;
    const size_t np = (size_t)counts[0][0], ns = (size_t)counts[0][1];
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < 2; r++) {
            char name[64];
            snprintf(name, sizeof name, "%s.params.%d", devices[k], r);
            got = got && read_file(dir, name, p[k][r], np * sizeof(float));
            snprintf(name, sizeof name, "%s.states.%d", devices[k], r);
            got = got && read_file(dir, name, s[k][r], ns * sizeof(float));
        }
    CHECK(got, "the batch-norm runs' weights and states");
    if (!got) return;
    double max_w = 0, max_s = 0;
    for (size_t i = 0; i < np; i++) max_w = fmax(max_w, fabs((double)p[0][0][i]));
    for (size_t i = 0; i < ns; i++) max_s = fmax(max_s, fabs((double)s[0][0][i]));
    const double dw = max_abs_diff(p[0][0], p[1][0], np), ds = max_abs_diff(s[0][0], s[1][0], ns);
    printf("  batch norm + dropout, 2 ranks: cuda (fp32) vs cpu after %d steps: max |dw| = %.3g (max |w| %.3g), "
           "max |d state| = %.3g (max %.3g)\n", STEPS, dw, max_w, ds, max_s);
    CHECK(dw <= 1e-5 * fmax(1, max_w), "weights differ by %g", dw);
    CHECK(ds <= 1e-5 * fmax(1, max_s), "states differ by %g", ds);
    CHECK(memcmp(s[1][0], s[1][1], ns * sizeof(float)) == 0 && memcmp(p[1][0], p[1][1], np * sizeof(float)) == 0,
          "on cuda, the ranks end with different weights or states");
}

/* `mpiexec -n 2 magna-emu train --device cuda --fp32`, plain and with --zero1: the figures of `magna-emu train
 * --batch 32` on the cpu. */
static void test_cli_cuda(void) {
    char model[4200], out[512], l1[4096] = "";
    snprintf(model, sizeof model, "%s", __FILE__);
    *strrchr(model, '/') = 0;
    snprintf(strrchr(model, '/'), sizeof model - (size_t)(strrchr(model, '/') - model), "/models/iris-mlp.ini");
    snprintf(out, sizeof out, "%s/clicuda1", dir);
    int st = wait_for(launch_prog("magna-emu", 0, "clicuda1.log", /* (its cpu: the library's cpu code) */
                                  (const char *[]){"train", model, "--epochs", "3", "--batch", "32", "--out", out, NULL}),
                      60);
    CHECK(st == 0 && log_line("clicuda1.log", "test_loss=", l1, sizeof l1), "magna train --batch 32: status %d", st);
    printf("  1 process on the cpu: %s", l1);
    CHECK(strstr(l1, "ranks=1 "), "ranks in the key=value line");
    if (strstr(l1, " best_epoch=")) *strstr(l1, " best_epoch=") = 0;
    for (int zero = 0; zero < 2; zero++) {
        const char *log = zero ? "clizero.log" : "clicuda2.log";
        char l2[4096] = "";
        snprintf(out, sizeof out, "%s/%s", dir, zero ? "clizero" : "clicuda2");
        st = wait_for(launch_prog("magna-emu", 2, log,
                                  (const char *[]){"train", model, "--epochs", "3", "--timeout", "60", "--device", "cuda",
                                                   "--fp32", "--out", out, zero ? "--zero1" : NULL, NULL}),
                      120);
        CHECK(st == 0, "mpiexec -n 2 magna-emu train --device cuda%s: status %d", zero ? " --zero1" : "", st);
        CHECK(log_line(log, "test_loss=", l2, sizeof l2), "the key=value line");
        printf("  2 ranks on cuda%s: %s", zero ? " (ZeRO 1)" : "", l2);
        CHECK(strstr(l2, "ranks=2 "), "ranks in the key=value line");
        if (strstr(l2, " best_epoch=")) *strstr(l2, " best_epoch=") = 0;
        CHECK(strcmp(l1, l2) == 0, "2 ranks x 16 on cuda gave '%s', 1 x 32 on the cpu gave '%s'", l2, l1);
        CHECK(count_lines(log, "test_loss=") == 1, "rank 0 alone prints the results");
        CHECK(log_has(log, "gradients by NCCL on the GPUs") && (!zero || log_has(log, "ZeRO 1: optimizer state")),
              "the setup line names NCCL (and ZeRO 1)");
        if (st != 0 || check_failed) show_log(log);
    }
    /* 2 ranks on cuda with ZeRO 1 stopped at step 5 (mid-epoch 2): the checkpoint (the optimizer slices
     * gathered from the devices) resumes in one process on the cpu with --batch 32 and ends as its run does */
    char ck[600], l3[4096] = "";
    snprintf(out, sizeof out, "%s/clizero5", dir);
    snprintf(ck, sizeof ck, "%s/checkpoints", out);
    st = wait_for(launch_prog("magna-emu", 2, "clizero5.log",
                              (const char *[]){"train", model, "--epochs", "3", "--steps", "5", "--device", "cuda",
                                               "--fp32", "--zero1", "--out", out, NULL}),
                  120);
    CHECK(st == 0, "mpiexec -n 2 magna-emu train --device cuda --zero1 --steps 5: status %d", st);
    st = wait_for(launch_prog("magna-emu", 0, "clizero6.log", (const char *[]){"train", "--resume", ck, "--batch", "32", NULL}),
                  60);
    CHECK(st == 0 && log_line("clizero6.log", "test_loss=", l3, sizeof l3), "the resume on the cpu: status %d", st);
    if (strstr(l3, " best_epoch=")) *strstr(l3, " best_epoch=") = 0;
    CHECK(strcmp(l1, l3) == 0, "2 ranks on cuda (ZeRO 1) to step 5, then 1 x 32 on the cpu gave '%s'; straight '%s'",
          l3, l1);
    if (check_failed) show_log("clizero5.log"), show_log("clizero6.log");
}

int main(int argc, char **argv) {
    make_data();
    if (argc >= 4 && strcmp(argv[1], "--worker") == 0) {
        if (strcmp(argv[2], "equiv") == 0 && argc == 6)
            return worker_equiv(argv[3], argv[4], atoi(argv[5]) != 0, false);
        if (strcmp(argv[2], "equiv_cuda") == 0 && argc == 6)
            return worker_equiv(argv[3], argv[4], atoi(argv[5]) != 0, true);
        if (strcmp(argv[2], "weight") == 0 && argc == 4) return worker_weight();
        if (strcmp(argv[2], "bn") == 0 && argc == 6) return worker_bn(argv[3], argv[4], strcmp(argv[5], "cuda") == 0);
        if (strcmp(argv[2], "long") == 0 && argc == 5) return worker_long(argv[3], atof(argv[4]));
        if (strcmp(argv[2], "bad") == 0 && argc == 5) return worker_bad(argv[3], argv[4]);
        if (strcmp(argv[2], "ckpt") == 0 && argc == 7) return worker_ckpt(argv[3], argv[4], atoll(argv[5]), argv[6]);
        return printf("test_dist: bad worker arguments\n"), 2;
    }
    if (!magna_dist_available() || !MAGNA_MPIEXEC[0]) {
        magna_error err;
        CHECK(!magna_dist_available() && magna_dist_init(NULL, &err) == NULL && err.status == MAGNA_ERR_UNSUPPORTED &&
                  strstr(err.message, "this build has no MPI"),
              "without MPI, magna_dist_init says so");
        if (check_failed) return check_finish("test_dist");
        printf("test_dist: skipped: this build has no MPI (install libopenmpi-dev openmpi-bin and rebuild)\n");
        return 77;
    }
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return printf("test_dist: cannot find this program\n"), 1;
    self[len] = '\0';
    snprintf(dir, sizeof dir, "/tmp/magna-test-dist-XXXXXX");
    if (!mkdtemp(dir)) return printf("test_dist: mkdtemp: %s\n", strerror(errno)), 1;
    const double t0 = now_s();
#ifdef MAGNA_CUDA_EMU /* test_dist_cuda_emu: the CUDA half (the cpu half is test_dist's) */
    if (true) {
#else
    if (false) {
#endif
        test_cuda_same_weights();
        test_cuda_batch_norm();
        test_cuda_nccl_failures();
        test_cuda_weight_mismatch();
        test_cli_cuda();
    } else {
        test_same_weights_as_one_process();
        test_resume_across_ranks();
        test_rank_errors();
        test_kill9();
        test_sigstop();
        test_cli();
    }
    printf("  (%.1f s)\n", now_s() - t0);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (check_failed == 0 && system(cmd) != 0) printf("could not remove %s\n", dir);
    return check_finish("test_dist");
}
