/* magna/dist.h — data-parallel training across processes with MPI.
 *
 * Every rank holds the whole model. Each step, rank r takes its share of the global batch (ranks x batch rows,
 * the same seeded shuffle on every rank, so shares never overlap), computes its gradients, and one allreduce
 * over the flat gradient buffer (in buckets) averages them; every rank then applies the same update. Rank 0
 * alone prints, logs and writes checkpoints; metrics are reduced so it reports the global figures. As the
 * weights and the optimizer state are the same on every rank, rank 0's checkpoint is the whole state, and a
 * run written with N ranks resumes with M (keep ranks x batch, the global batch, the same).
 *
 *   magna_dist *d = magna_dist_init(&(magna_dist_opts){.timeout = 60}, &err);  // MPI_Init; NULL: err says why
 *   magna_model_set_dist(model, d);      // fit and evaluate now run data parallel
 *   magna_model_fit(model, &train, NULL, &opts, &history);
 *   magna_dist_finalize(d);
 *
 * No hangs: every collective is non-blocking and polled until a deadline (magna_dist_opts.timeout). A small
 * heartbeat goes with each one (every rank tells rank 0 which collective it reached, rank 0 tells every
 * rank), so when a rank dies or stops answering, rank 0 names it and the step, and MPI_Abort ends every
 * process of the job. The other ranks wait a little longer than rank 0 (timeout x 1.25 + 0.5 s) so that rank
 * 0's message, which names the rank, is the one that ends the job; when rank 0 itself is the one missing,
 * they name it.
 *
 * On CUDA (a model compiled for MAGNA_DEVICE_CUDA after magna_dist_init): one GPU per rank, device (rank on
 * its machine) % (devices there); the gradients are summed on the GPUs by NCCL (ncclAllReduce in the same
 * buckets, each started as soon as backward has completed it, on a stream of its own, polled until the same
 * deadline; the communicator is aborted before the job is), the flags and sums of a step stay on MPI, and the rare collectives (rank 0's weights, batch-norm
 * states, the weights' check) use the host mirrors. A CUDA build without NCCL copies the gradients to the
 * host, through the MPI allreduce and back (MAGNA_DIST_NO_NCCL=1 asks for that path). ZeRO 1 on CUDA keeps
 * each rank's slice of the optimizer state on its GPU and broadcasts the updated slices there (NCCL). Under the CUDA emulator (magna_emu) NCCL is emulated with MPI (src/cuda/emu/nccl_emu.c).
 *
 * A build without MPI (CMake did not find it) has the same functions: magna_dist_init fails with
 * MAGNA_ERR_UNSUPPORTED, "this build has no MPI". */
#ifndef MAGNA_DIST_H
#define MAGNA_DIST_H

#include <stdio.h>

#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct magna_dist magna_dist;
typedef struct magna_model magna_model;

typedef struct magna_dist_opts {
    double timeout;      /* seconds any one collective may take; 0: $MAGNA_DIST_TIMEOUT, else 300 */
    size_t bucket_bytes; /* the gradient allreduce goes in buckets of this size; 0: 16 MiB */
    bool zero1;          /* ZeRO stage 1: shard the optimizer state across ranks (magna_dist_shard_optimizer) */
} magna_dist_opts;

/* Whether this build has MPI. */
bool magna_dist_available(void);
/* Whether this process was started by an MPI launcher (mpirun, mpiexec, srun with PMI/PMIx): the launcher's
 * environment (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_RANK, ...) says so. */
bool magna_dist_launched(void);
/* Ranks on this machine as the launcher says (OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS,
 * SLURM_NTASKS_PER_NODE), 1 when it does not. */
int magna_dist_local_size(void);

/* Initialises MPI (unless the program already did) with MPI_THREAD_FUNNELED. NULL on failure, err says why. */
magna_dist *magna_dist_init(const magna_dist_opts *opts, magna_error *err);
/* Finalises MPI if magna_dist_init initialised it. NULL is fine. */
void magna_dist_finalize(magna_dist *d);
/* Ends every process of the job with `code` (MPI_Abort), after printing msg (when not NULL) to stderr with this
 * rank's number. For an error one rank meets alone, which would otherwise leave the others waiting. */
void magna_dist_abort(magna_dist *d, int code, const char *msg);

int magna_dist_rank(const magna_dist *d); /* 0 when d is NULL */
int magna_dist_size(const magna_dist *d); /* 1 when d is NULL */
double magna_dist_timeout(const magna_dist *d);
bool magna_dist_zero1(const magna_dist *d);

/* ---- the collectives fit uses (for a loop of one's own). `step` names the point in messages. Each fails with
 * MAGNA_ERR_IO and a message naming the step and, where known, the rank when it cannot complete; by default
 * the process then calls MPI_Abort (see magna_dist_set_abort_on_error), so these return only on success. ---- */

/* Checks that every rank has the same `count` values (e.g. rows, batch, parameter count) as rank 0; `what`
 * names them in the error. */
magna_status magna_dist_check_same(magna_dist *d, const int64_t *values, int count, const char *what, magna_error *err);
/* Rank 0's params and states to every rank. */
magna_status magna_dist_broadcast_params(magna_dist *d, magna_graph *g, int64_t step, magna_error *err);
/* Averages the gradients over ranks, weighting rank r's by its `weight` (its rows in the step, or rows over
 * the usual batch, so that the result is the gradient of the mean loss over the global batch; a rank with no
 * rows gives weight 0 and zero gradients). A weight of 1 costs no pass over the gradients before the sum.
 * `sums` (may be NULL) are added across ranks in the same round (flags, counts). */
/* Before backward, with the weight the step's magna_dist_allreduce_grads will pass: on CUDA with NCCL, the
 * gradients' buckets are summed while backward runs, each once backward has written all of it (on a stream of
 * its own; MAGNA_DIST_NO_OVERLAP=1 sums them after). Elsewhere it does nothing. A rank that skips backward
 * (no rows) skips this too: the allreduce then sums every bucket, in the same order. */
magna_status magna_dist_backward_begin(magna_dist *d, magna_graph *g, double weight, int64_t step, magna_error *err);
magna_status magna_dist_allreduce_grads(magna_dist *d, magna_graph *g, double weight, double *sums, int n_sums,
                                        int64_t step, magna_error *err);
/* Sums n doubles across ranks, in place. */
magna_status magna_dist_allreduce_sum(magna_dist *d, double *values, int n, int64_t step, const char *what,
                                      magna_error *err);
/* Averages the graph's states (batch-norm running statistics) over ranks, so every rank holds the same. */
magna_status magna_dist_average_states(magna_dist *d, magna_graph *g, int64_t step, magna_error *err);
/* ZeRO 1: shards the optimizer over the ranks (rank r keeps state for its slice of the flat params).
 * No-op when zero1 is off or there is one rank. */
magna_status magna_dist_shard_optimizer(magna_dist *d, magna_optimizer *opt, magna_error *err);
/* One optimizer update: a sharded optimizer updates its slice and the params are all-gathered; otherwise a
 * plain magna_optimizer_step on every rank. */
magna_status magna_dist_optimizer_step(magna_dist *d, magna_optimizer *opt, magna_graph *g, int64_t step,
                                       magna_error *err);
/* A sharded optimizer's full state buffer k gathered on rank 0 into `full` (n_params floats, rank 0 only; other
 * ranks pass NULL). For checkpoints: every rank calls it. */
magna_status magna_dist_gather_state(magna_dist *d, magna_optimizer *opt, int k, float *full, int64_t step,
                                     magna_error *err);
/* When an error would stop only this rank (false), the collectives return it instead of aborting the job. */
void magna_dist_set_abort_on_error(magna_dist *d, bool abort_on_error);

/* One line on the setup: ranks, global batch, allreduce bytes per step, buckets, and with ZeRO 1 the optimizer
 * memory per rank against unsharded. */
void magna_dist_describe(const magna_dist *d, const magna_graph *g, const magna_optimizer *opt, int64_t batch,
                         FILE *out);

/* Bytes one rank sends into the allreduces of one step (the gradient buffer and the small sums). */
size_t magna_dist_allreduce_bytes(const magna_dist *d, const magna_graph *g);
/* How the gradients of g travel: "MPI" (a cpu graph), "NCCL on the GPUs" (a CUDA graph), "MPI over host memory
 * (...)" (a CUDA graph in a build without NCCL, or with MAGNA_DIST_NO_NCCL=1), "none (one process)". */
const char *magna_dist_grad_path(const magna_dist *d, const magna_graph *g);

/* fit and evaluate of this model run data parallel over d (NULL: back to one process). Every rank must make
 * the same calls with the same data and options. */
magna_status magna_model_set_dist(magna_model *m, magna_dist *d);

#ifdef __cplusplus
}
#endif
#endif
