/* test_dist_cuda.c — data parallel on (emulated) CUDA graphs, built as test_dist_cuda_emu (linked with
 * magna_emu, NCCL emulated with MPI), run by mpiexec from this same program as test_dist is:
 *   - 2 ranks x B on CUDA (fp32) give the weights of 1 process x 2B on the cpu, over NCCL and over the host
 *     path (MAGNA_DIST_NO_NCCL=1), and the same global loss; rank 0 says which path; ZeRO 1 on CUDA gives the
 *     same bits with half the optimizer state on each rank, over NCCL and over the host path;
 *   - batch norm and dropout, 2 ranks on CUDA against 2 ranks on the cpu: the same weights and states (the
 *     statistics averaged at each epoch's end through the host mirrors), the same on both ranks;
 *   - NCCL failing or hanging on one rank (emulated): the job ends within the deadline, the rank and step named;
 *   - `mpiexec -n 2 magna-emu train --device cuda --fp32` gives the figures of `magna train --batch 2B` on the
 *     cpu, with --zero1 too; stopped at step 5 with --zero1, it resumes on the cpu and ends as that run does.
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
        const int st = wait_for(launch(2, log, (const char *[]){"equiv_cuda", dist_dir, tag, zero ? "1" : "0", NULL}), 120);
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
        bool got = read_file(dist_dir, name, w[run], n * sizeof(float));
        snprintf(name, sizeof name, "%s.results", tag);
        got = got && read_file(dist_dir, name, r, sizeof r);
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
            CHECK(read_file(dist_dir, a, &full, sizeof full) && read_file(dist_dir, b, &z0, sizeof z0) &&
                      read_file(dist_dir, c, &z1, sizeof z1) && full == (int64_t)(2 * n * sizeof(float)) &&
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
        const int st = wait_for(launch(2, log, (const char *[]){"equiv_cuda", dist_dir, "fails", "0", NULL}), 30);
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
    const int st = wait_for(launch(2, "weight.log", (const char *[]){"weight", dist_dir, NULL}), 60);
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
        const int st = wait_for(launch(2, log, (const char *[]){"bn", dist_dir, devices[k], devices[k], NULL}), 120);
        CHECK(st == 0, "batch norm, 2 ranks on %s: status %d", devices[k], st);
        if (st != 0) show_log(log);
    }
    enum { MAX = 4096 };
    static float p[2][2][MAX], s[2][2][MAX]; /* [device][rank] */
    int64_t counts[2][2] = {{0}};
    bool got = read_file(dist_dir, "cpu.counts", counts[0], sizeof counts[0]) &&
               read_file(dist_dir, "cuda.counts", counts[1], sizeof counts[1]) && counts[0][0] == counts[1][0] &&
               counts[0][1] == counts[1][1] && counts[0][0] <= MAX && counts[0][1] <= MAX && counts[0][1] > 0;
    const size_t np = (size_t)counts[0][0], ns = (size_t)counts[0][1];
    for (int k = 0; k < 2; k++)
        for (int r = 0; r < 2; r++) {
            char name[64];
            snprintf(name, sizeof name, "%s.params.%d", devices[k], r);
            got = got && read_file(dist_dir, name, p[k][r], np * sizeof(float));
            snprintf(name, sizeof name, "%s.states.%d", devices[k], r);
            got = got && read_file(dist_dir, name, s[k][r], ns * sizeof(float));
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
    snprintf(out, sizeof out, "%s/clicuda1", dist_dir);
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
        snprintf(out, sizeof out, "%s/%s", dist_dir, zero ? "clizero" : "clicuda2");
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
    snprintf(out, sizeof out, "%s/clizero5", dist_dir);
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
    const int started = dist_start(argc, argv, "test_dist_cuda");
    if (started >= 0) return started;
    test_cuda_same_weights();
    test_cuda_batch_norm();
    test_cuda_nccl_failures();
    test_cuda_weight_mismatch();
    test_cli_cuda();
    dist_finish(check_failed);
    return check_finish("test_dist_cuda");
}
