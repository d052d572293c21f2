/* dist_harness.c — the workers and the driver's helpers of test_dist and test_dist_cuda_emu (dist_harness.h). */
#include "dist_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char dist_dir[256];
static char self[4096];

/* the rows every process trains on, the same everywhere (make_data) */
float X[ROWS * FEATURES], Y[ROWS];

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

double now_s(void) {
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

magna_model *make_model(int64_t batch) { return make_model_on(batch, MAGNA_DEVICE_CPU); }

static void write_file(const char *dir, const char *name, const void *p, size_t bytes) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes || fclose(f) != 0) {
        printf("cannot write %s\n", path);
        exit(3);
    }
}

bool read_file(const char *dir, const char *name, void *p, size_t bytes) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    bool ok = fread(p, 1, bytes, f) == bytes;
    fclose(f);
    return ok;
}

/* ---- the workers (under mpiexec) ------------------------------------------------------------------ */

/* Rank 0's record of a run, for the driver to compare: TAG.params (the weights) and TAG.results (three figures);
 * then the run's history, model and MPI are released. */
static void finish_run(const char *dir, const char *tag, magna_dist *d, magna_model *m, magna_history *h,
                       const double results[3]) {
    if (magna_dist_rank(d) == 0) {
        char name[128];
        size_t n;
        const float *w = magna_graph_params(magna_model_graph(m), &n);
        snprintf(name, sizeof name, "%s.params", tag);
        write_file(dir, name, w, n * sizeof *w);
        snprintf(name, sizeof name, "%s.results", tag);
        write_file(dir, name, results, 3 * sizeof *results);
    }
    magna_history_free(h);
    magna_model_free(m);
    magna_dist_finalize(d);
}

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
    char name[128];
    const int rank = magna_dist_rank(d);
    const int64_t bytes = (int64_t)magna_optimizer_state_bytes(magna_model_optimizer(m));
    snprintf(name, sizeof name, "%s.optbytes.%d", tag, rank);
    write_file(dir, name, &bytes, sizeof bytes);
    const double results[3] = {h.epochs[h.count - 1].train.loss, h.epochs[h.count - 1].train.mae,
                               (double)magna_model_step(m)};
    finish_run(dir, tag, d, m, &h, results);
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
    char ck[512];
    snprintf(ck, sizeof ck, "%s/%s", dir, tag);
    magna_history h = {0};
    magna_dataset data = {.rows = ROWS, .x = X, .y = Y};
    magna_fit_opts fo = {.epochs = EPOCHS, .checkpoint_dir = ck, .save_each_epoch = true, .max_steps = max_steps};
    if (magna_model_fit(m, &data, NULL, &fo, &h) != MAGNA_OK) return printf("fit: %s\n", magna_model_errmsg(m)), 3;
    const double results[3] = {h.count ? h.epochs[h.count - 1].train.loss : NAN,
                               h.count ? h.epochs[h.count - 1].epoch : 0, (double)magna_model_step(m)};
    finish_run(dir, tag, d, m, &h, results);
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
    setenv("OMPI_MCA_orte_tmpdir_base", dist_dir, 1);
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
}

/* argv (argv[0] a path) in its own process group, output to dist_dir/LOG, with Open MPI's settings; one_thread:
 * OpenMP and magna on one thread (the workers); under_mpi: ranks of mpiexec, leak checking off */
static pid_t spawn(const char *log, const char *const *argv, bool one_thread, bool under_mpi) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dist_dir, log);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        mpi_child_env();
        if (one_thread) setenv("OMP_NUM_THREADS", "1", 1), setenv("MAGNA_THREADS", "1", 1);
        if (under_mpi) no_mpi_leak_check();
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* mpiexec -n RANKS self --worker ARGS..., in its own process group, output to DIR/LOG. */
pid_t launch(int ranks, const char *log, const char *const *args) {
    char np[16];
    snprintf(np, sizeof np, "%d", ranks);
    const char *argv[16] = {MAGNA_MPIEXEC, "-n", np, self, "--worker"};
    int n = 5;
    for (int i = 0; args[i] && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    return spawn(log, argv, true, true);
}

/* The magna command (PROG, next to this test: magna, or magna-emu on the emulated CUDA device) under
 * mpiexec, or alone when ranks is 0. */
pid_t launch_prog(const char *prog, int ranks, const char *log, const char *const *args) {
    char np[16], magna[4200];
    snprintf(np, sizeof np, "%d", ranks);
    snprintf(magna, sizeof magna, "%s", self);
    snprintf(strrchr(magna, '/'), sizeof magna - (size_t)(strrchr(magna, '/') - magna), "/%s", prog);
    const char *argv[24];
    int n = 0;
    if (ranks) argv[n++] = MAGNA_MPIEXEC, argv[n++] = "-n", argv[n++] = np;
    argv[n++] = magna;
    for (int i = 0; args[i] && n < 23; i++) argv[n++] = args[i];
    argv[n] = NULL;
    return spawn(log, argv, false, ranks != 0);
}

pid_t launch_cli(int ranks, const char *log, const char *const *args) {
    return launch_prog("magna", ranks, log, args);
}

/* Waits up to `seconds` for the launcher; on time-out kills its process group. Returns the wait status, or -1. */
int wait_for(pid_t pid, double seconds) {
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

/* The last line of a log that starts with `prefix`, into line. */
bool log_line(const char *log, const char *prefix, char *line, size_t n) {
    char path[512], buf[4096];
    snprintf(path, sizeof path, "%s/%s", dist_dir, log);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool found = false;
    while (fgets(buf, sizeof buf, f))
        if (strncmp(buf, prefix, strlen(prefix)) == 0) snprintf(line, n, "%s", buf), found = true;
    fclose(f);
    return found;
}

int count_lines(const char *log, const char *prefix) {
    char path[512], buf[4096];
    snprintf(path, sizeof path, "%s/%s", dist_dir, log);
    FILE *f = fopen(path, "r");
    int n = 0;
    while (f && fgets(buf, sizeof buf, f)) n += strncmp(buf, prefix, strlen(prefix)) == 0;
    if (f) fclose(f);
    return n;
}

void show_log(const char *log) {
    char path[512], line[1024];
    snprintf(path, sizeof path, "%s/%s", dist_dir, log);
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) printf("    | %s", line);
    fclose(f);
}

bool log_has(const char *log, const char *text) {
    char path[512], buf[65536];
    snprintf(path, sizeof path, "%s/%s", dist_dir, log);
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
    return strstr(cmd, dist_dir) != NULL && state != 'Z';
}

/* No worker left within a few seconds of the launcher's end; any left are killed (and counted as failures). */
bool none_left(const int64_t pids[2]) {
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
double max_abs_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

/* ---- start and finish ---------------------------------------------------------------------------------- */

static int run_worker(int argc, char **argv) {
    if (strcmp(argv[2], "equiv") == 0 && argc == 6) return worker_equiv(argv[3], argv[4], atoi(argv[5]) != 0, false);
    if (strcmp(argv[2], "equiv_cuda") == 0 && argc == 6) return worker_equiv(argv[3], argv[4], atoi(argv[5]) != 0, true);
    if (strcmp(argv[2], "weight") == 0 && argc == 4) return worker_weight();
    if (strcmp(argv[2], "bn") == 0 && argc == 6) return worker_bn(argv[3], argv[4], strcmp(argv[5], "cuda") == 0);
    if (strcmp(argv[2], "long") == 0 && argc == 5) return worker_long(argv[3], atof(argv[4]));
    if (strcmp(argv[2], "bad") == 0 && argc == 5) return worker_bad(argv[3], argv[4]);
    if (strcmp(argv[2], "ckpt") == 0 && argc == 7) return worker_ckpt(argv[3], argv[4], atoll(argv[5]), argv[6]);
    return printf("bad worker arguments\n"), 2;
}

static double started;

int dist_start(int argc, char **argv, const char *suite) {
    make_data();
    if (argc >= 4 && strcmp(argv[1], "--worker") == 0) return run_worker(argc, argv);
    if (!magna_dist_available() || !MAGNA_MPIEXEC[0]) {
        magna_error err;
        if (magna_dist_available() || magna_dist_init(NULL, &err) != NULL || err.status != MAGNA_ERR_UNSUPPORTED ||
            !strstr(err.message, "this build has no MPI"))
            return printf("FAIL %s: without MPI, magna_dist_init does not say so\n", suite), 1;
        printf("%s: skipped: this build has no MPI (install libopenmpi-dev openmpi-bin and rebuild)\n", suite);
        return 77;
    }
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return printf("%s: cannot find this program\n", suite), 1;
    self[len] = '\0';
    snprintf(dist_dir, sizeof dist_dir, "/tmp/magna-test-dist-XXXXXX");
    if (!mkdtemp(dist_dir)) return printf("%s: mkdtemp: %s\n", suite, strerror(errno)), 1;
    started = now_s();
    return -1;
}

void dist_finish(int failed) {
    printf("  (%.1f s)\n", now_s() - started);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dist_dir);
    if (failed == 0 && system(cmd) != 0) printf("could not remove %s\n", dist_dir);
}
