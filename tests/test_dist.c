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
 * Skipped (exit 77, ctest's SKIP_RETURN_CODE) when the build has no MPI, after checking that the dist API
 * then says so. The workers and the launching are dist_harness.c's. */
#include "check.h"
#include "dist_harness.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
    int st = wait_for(launch(2, "ckA.log", (const char *[]){"ckpt", dist_dir, "ckA", "10", "-", NULL}), 60);
    CHECK(st == 0, "2 ranks with checkpoints: status %d", st);
    if (st != 0) show_log("ckA.log");
    snprintf(ck, sizeof ck, "%s/ckA", dist_dir);
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
    snprintf(ck, sizeof ck, "%s/ckB", dist_dir);
    m = make_model(2 * BATCH);
    CHECK(magna_model_fit(m, &data, NULL,
                          &(magna_fit_opts){.epochs = EPOCHS, .checkpoint_dir = ck, .save_each_epoch = true,
                                            .max_steps = 10},
                          NULL) == MAGNA_OK,
          "%s", magna_model_errmsg(m));
    magna_model_free(m);
    st = wait_for(launch(2, "ckB.log", (const char *[]){"ckpt", dist_dir, "ckB2", "0", ck, NULL}), 60);
    CHECK(st == 0, "2 ranks resuming a 1-process checkpoint: status %d", st);
    if (st != 0) show_log("ckB.log");
    double r[3] = {0};
    if (read_file(dist_dir, "ckB2.params", w, n * sizeof *w) && read_file(dist_dir, "ckB2.results", r, sizeof r)) {
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
    int st = wait_for(launch(2, "dp.log", (const char *[]){"equiv", dist_dir, "dp", "0", NULL}), 60);
    CHECK(st == 0, "2 ranks: mpiexec status %d", st);
    if (st != 0) show_log("dp.log");
    st = wait_for(launch(2, "zero.log", (const char *[]){"equiv", dist_dir, "zero", "1", NULL}), 60);
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
    const bool got = read_file(dist_dir, "dp.params", w2, n * sizeof *w2) &&
                     read_file(dist_dir, "zero.params", wz, n * sizeof *wz) &&
                     read_file(dist_dir, "dp.results", r2, sizeof r2) && read_file(dist_dir, "zero.results", rz, sizeof rz);
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
        CHECK(read_file(dist_dir, "dp.optbytes.0", &full, sizeof full) &&
                  read_file(dist_dir, "zero.optbytes.0", &z0, sizeof z0) &&
                  read_file(dist_dir, "zero.optbytes.1", &z1, sizeof z1),
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
        snprintf(path, sizeof path, "%s/pid.%d", dist_dir, r);
        unlink(path);
    }
    pid_t pid = launch(2, log, (const char *[]){"long", dist_dir, t, NULL});
    const double t0 = now_s();
    while (now_s() - t0 < 30) {
        if (read_file(dist_dir, "pid.0", &pids[0], sizeof pids[0]) && read_file(dist_dir, "pid.1", &pids[1], sizeof pids[1]))
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
            snprintf(path, sizeof path, "%s/pid.%d", dist_dir, r);
            unlink(path);
        }
        const double t0 = now_s();
        const int st = wait_for(launch(2, log, (const char *[]){"bad", dist_dir, kinds[k], NULL}), 20);
        const double took = now_s() - t0;
        int64_t pids[2] = {0, 0};
        read_file(dist_dir, "pid.0", &pids[0], sizeof pids[0]);
        read_file(dist_dir, "pid.1", &pids[1], sizeof pids[1]);
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
    snprintf(out2, sizeof out2, "%s/cli2", dist_dir);
    snprintf(out1, sizeof out1, "%s/cli1", dist_dir);
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
    snprintf(out3, sizeof out3, "%s/cli3", dist_dir);
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

int main(int argc, char **argv) {
    const int started = dist_start(argc, argv, "test_dist");
    if (started >= 0) return started;
    test_same_weights_as_one_process();
    test_resume_across_ranks();
    test_rank_errors();
    test_kill9();
    test_sigstop();
    test_cli();
    dist_finish(check_failed);
    return check_finish("test_dist");
}
