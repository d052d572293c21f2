/* dist_harness.h — what test_dist (data parallel on the cpu) and test_dist_cuda_emu (on the emulated CUDA
 * device, NCCL emulated with MPI) share: the data and model, the workers that mpiexec runs from the test's own
 * program (--worker MODE ...), and the driver's launching, waiting and log reading.
 *
 * A test's main calls dist_start first (a worker: runs it; a build without MPI: checks that the dist API says
 * so and skips), runs its cases, and ends with dist_finish. Every file a case writes goes in dist_dir. */
#ifndef MAGNA_TEST_DIST_HARNESS_H
#define MAGNA_TEST_DIST_HARNESS_H

#include "magna.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

/* 200 rows = 6 steps of 32 and a last of 8 (4 per rank): the short step's weighting is tested too */
enum { ROWS = 200, FEATURES = 8, BATCH = 16, EPOCHS = 3, STEPS = EPOCHS * 7 };
extern float X[ROWS * FEATURES], Y[ROWS];
extern char dist_dir[256]; /* this run's temporary folder: logs, checkpoints, what the workers write */

/* argv[1] == "--worker": runs that worker and returns its exit code. A build without MPI: returns 77 (skipped)
 * once magna_dist_init said so, 1 if it did not. Otherwise makes dist_dir and returns -1: run the cases. */
int dist_start(int argc, char **argv, const char *suite);
/* Prints the time the cases took and removes dist_dir when none failed (kept for reading otherwise). */
void dist_finish(int failed);

double now_s(void);
magna_model *make_model(int64_t batch); /* the 8 -> 32 -> 1 MLP, Adam, MSE, on the cpu (exits on error) */
bool read_file(const char *dir, const char *name, void *p, size_t bytes);
double max_abs_diff(const float *a, const float *b, size_t n);

/* mpiexec -n RANKS this-program --worker ARGS..., in its own process group, output to dist_dir/LOG */
pid_t launch(int ranks, const char *log, const char *const *args);
/* PROG (magna, or magna-emu on the emulated CUDA device; next to this test) under mpiexec, alone when ranks is 0 */
pid_t launch_prog(const char *prog, int ranks, const char *log, const char *const *args);
pid_t launch_cli(int ranks, const char *log, const char *const *args);
/* waits up to `seconds` for the launcher; on time-out kills its process group. The wait status, or -1 */
int wait_for(pid_t pid, double seconds);

/* logs in dist_dir: the last line starting with `prefix`, the lines starting with it, the whole log, a text */
bool log_line(const char *log, const char *prefix, char *line, size_t n);
int count_lines(const char *log, const char *prefix);
void show_log(const char *log);
bool log_has(const char *log, const char *text);
/* no worker of pids left within a few seconds; any left are killed */
bool none_left(const int64_t pids[2]);

#endif
