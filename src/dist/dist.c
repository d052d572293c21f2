/* dist.c — data parallel over MPI: the collectives of a training step, each non-blocking and polled until a
 * deadline, with a heartbeat that tells rank 0 which rank did not come (magna/dist.h says how it is used).
 * Without MPI at build time the same functions say "this build has no MPI".
 *
 * A CUDA graph (one GPU per rank: device local rank % devices on the machine) reduces its gradients on the
 * device with NCCL (MAGNA_HAVE_NCCL: the real library, or under the emulator src/cuda/emu/nccl_emu.c), in the
 * same buckets and with the same weighting as the CPU path, each bucket started while backward still runs
 * (magna_dist_backward_begin); the small sums (flags, rows) and the heartbeat
 * stay on MPI. Without NCCL the gradients go down to the host mirror, through the MPI allreduce and back up.
 * The rare collectives (rank 0's weights, batch-norm states, the weights' hash) work on the host mirrors. */
#include "../graph/internal.h"
#include "magna/dist.h"

#if defined(MAGNA_HAVE_CUDA) && defined(MAGNA_HAVE_MPI)
#include "../cuda/kernels.h"
#include "../cuda/ops.h"
#define DIST_CUDA 1
#ifdef MAGNA_HAVE_NCCL
#include <nccl.h>
#endif
#endif

#include <stdlib.h>
#include <string.h>

bool magna_dist_launched(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE",
                                       "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

int magna_dist_local_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 1;
}

#ifndef MAGNA_HAVE_MPI

static magna_status no_mpi(magna_error *err) {
    return magna_error_set(err, MAGNA_ERR_UNSUPPORTED,
                           "this build has no MPI: install Open MPI (libopenmpi-dev openmpi-bin, `make deps`) and "
                           "rebuild to train across processes");
}
bool magna_dist_available(void) { return false; }
magna_dist *magna_dist_init(const magna_dist_opts *opts, magna_error *err) {
    no_mpi(err);
    return NULL;
}
void magna_dist_finalize(magna_dist *d) {}
void magna_dist_abort(magna_dist *d, int code, const char *msg) {
    if (msg) fprintf(stderr, "magna: %s\n", msg);
    exit(code);
}
int magna_dist_rank(const magna_dist *d) { return 0; }
int magna_dist_size(const magna_dist *d) { return 1; }
double magna_dist_timeout(const magna_dist *d) { return 0; }
bool magna_dist_zero1(const magna_dist *d) { return false; }
magna_status magna_dist_check_same(magna_dist *d, const int64_t *v, int n, const char *what, magna_error *err) {
    return no_mpi(err);
}
magna_status magna_dist_broadcast_params(magna_dist *d, magna_graph *g, int64_t step, magna_error *err) {
    return no_mpi(err);
}
magna_status magna_dist_allreduce_grads(magna_dist *d, magna_graph *g, double weight, double *sums, int n_sums,
                                        int64_t step, magna_error *err) {
    return no_mpi(err);
}
magna_status magna_dist_backward_begin(magna_dist *d, magna_graph *g, double weight, int64_t step, magna_error *err) {
    return no_mpi(err);
}
magna_status magna_dist_allreduce_sum(magna_dist *d, double *v, int n, int64_t step, const char *what,
                                      magna_error *err) {
    return no_mpi(err);
}
magna_status magna_dist_average_states(magna_dist *d, magna_graph *g, int64_t step, magna_error *err) {
    return no_mpi(err);
}
magna_status magna_dist_shard_optimizer(magna_dist *d, magna_optimizer *opt, magna_error *err) { return no_mpi(err); }
magna_status magna_dist_optimizer_step(magna_dist *d, magna_optimizer *opt, magna_graph *g, int64_t step,
                                       magna_error *err) {
    return no_mpi(err);
}
magna_status magna_dist_gather_state(magna_dist *d, magna_optimizer *opt, int k, float *full, int64_t step,
                                     magna_error *err) {
    return no_mpi(err);
}
void magna_dist_set_abort_on_error(magna_dist *d, bool abort_on_error) {}
void magna_dist_describe(const magna_dist *d, const magna_graph *g, const magna_optimizer *opt, int64_t batch,
                         FILE *out) {}
size_t magna_dist_allreduce_bytes(const magna_dist *d, const magna_graph *g) { return 0; }
const char *magna_dist_grad_path(const magna_dist *d, const magna_graph *g) { return "none (one process)"; }

#else /* MAGNA_HAVE_MPI */

#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <stdarg.h>
#include <time.h>

enum { TAG_TO_ROOT = 7101, TAG_FROM_ROOT = 7102, TAG_PING = 7103, MAX_REQS = 64, MAX_SUMS = 32 };

struct magna_dist {
    MPI_Comm comm;
    int rank, size;
    bool we_initialized, abort_on_error;
    double timeout;
    size_t bucket_floats;
    bool zero1;
    /* the heartbeat: {collective number, step}; rank 0 receives one from every rank and sends its own to each */
    int64_t seq;
    int64_t hb_out[2];
    int64_t (*hb_in)[2];     /* rank 0: one per rank; others: [0] is rank 0's */
    MPI_Request *hb_recv;    /* same indexing as hb_in */
    MPI_Request *hb_send;    /* rank 0: one per rank; others: [0] */
    /* while a rank waits in a collective it pings (rank 0 pings every rank, the others rank 0) every
     * ping_interval: at the deadline, a rank that reached the collective but went quiet is the one stopped */
    double ping_interval, next_ping;
    double *last_seen;       /* rank 0: per rank; others: [0] is rank 0's */
    int64_t ping_out, ping_in;
    MPI_Request *ping_send;  /* as hb_send */
    MPI_Request ping_recv;
    MPI_Request reqs[MAX_REQS];
    int n_reqs;
    double scratch[MAX_SUMS + 1];
    int *counts, *displs;    /* ZeRO slices of the flat params, per rank */
    int local_rank, local_size; /* among the ranks on this machine */
    bool no_nccl;               /* MAGNA_DIST_NO_NCCL=1: a CUDA graph's gradients go over MPI on the host */
    bool no_overlap;            /* MAGNA_DIST_NO_OVERLAP=1: NCCL sums the buckets after backward, not during */
#ifdef MAGNA_HAVE_NCCL
    ncclComm_t nccl; /* made by the first gradient allreduce of a CUDA graph; one per process (one device) */
    /* The gradient allreduce overlapping backward: the flat gradients' buckets in the order backward completes
     * them (the same on every rank: one graph), each summed on comm_stream as soon as backward is past the
     * last node writing into it, while the graph's stream goes on with the rest of backward. */
    struct {
        const magna_graph *g; /* what order[] and ready[] were made for */
        int n_order, n_buckets;
        int *order;           /* bucket indices, first complete first */
        int *ready;           /* per position in order[]: complete after the backward of g->order[ready] */
        void *comm_stream, *done_event, **events;
        int next;             /* order[] position of the next bucket to start */
        bool active;          /* magna_dist_backward_begin ran for this step */
        double weight;
        int64_t step;
        int error;            /* the first failure inside backward: a CUDA error, or -1 - an NCCL result */
    } overlap;
#endif
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

bool magna_dist_available(void) { return true; }
int magna_dist_rank(const magna_dist *d) { return d ? d->rank : 0; }
int magna_dist_size(const magna_dist *d) { return d ? d->size : 1; }
double magna_dist_timeout(const magna_dist *d) { return d ? d->timeout : 0; }
bool magna_dist_zero1(const magna_dist *d) { return d && d->zero1; }
void magna_dist_set_abort_on_error(magna_dist *d, bool on) { d->abort_on_error = on; }

void magna_dist_abort(magna_dist *d, int code, const char *msg) {
    if (msg) fprintf(stderr, "magna: rank %d: %s\n", d ? d->rank : 0, msg);
    fflush(stdout);
    fflush(stderr);
#ifdef MAGNA_HAVE_NCCL
    /* NCCL's kernels on this GPU wait for peers that may never come: end them before the process goes */
    if (d && d->nccl) ncclCommAbort(d->nccl), d->nccl = NULL;
#endif
    MPI_Abort(d ? d->comm : MPI_COMM_WORLD, code ? code : 1);
    exit(code ? code : 1); /* not reached */
}

/* The error of a collective: into err, and unless told otherwise the end of the whole job. */
static magna_status fail(magna_dist *d, magna_error *err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static magna_status fail(magna_dist *d, magna_error *err, const char *fmt, ...) {
    char msg[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    magna_error_set(err, MAGNA_ERR_IO, "%s", msg);
    if (d->abort_on_error) magna_dist_abort(d, 1, msg);
    return MAGNA_ERR_IO;
}

static magna_status mpi_fail(magna_dist *d, magna_error *err, int rc, const char *call, const char *what,
                             int64_t step) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, s, &len);
    return fail(d, err, "%s at step %lld: %s failed: %s", what, (long long)step, call, s);
}

static magna_status begin(magna_dist *d, int64_t step, const char *what, magna_error *err);
static magna_status finish(magna_dist *d, int64_t step, const char *what, magna_error *err);
#ifdef MAGNA_HAVE_NCCL
static void overlap_free(magna_dist *d);
#endif
static bool push_ok(magna_dist *d, int rc);

magna_dist *magna_dist_init(const magna_dist_opts *opts, magna_error *err) {
    magna_dist_opts o = opts ? *opts : (magna_dist_opts){0};
    if (!(o.timeout >= 0)) {
        magna_error_set(err, MAGNA_ERR_ARG, "dist: the timeout must be >= 0 seconds, got %g", o.timeout);
        return NULL;
    }
    if (o.timeout == 0) {
        const char *e = getenv("MAGNA_DIST_TIMEOUT");
        char *end = NULL;
        o.timeout = e ? strtod(e, &end) : 300;
        if (e && (end == e || *end || !(o.timeout > 0))) {
            magna_error_set(err, MAGNA_ERR_ARG, "dist: MAGNA_DIST_TIMEOUT='%s' is not a number of seconds > 0", e);
            return NULL;
        }
    }
    if (o.bucket_bytes == 0) o.bucket_bytes = (size_t)16 << 20;
    if (o.bucket_bytes < 64 || o.bucket_bytes / sizeof(float) > (size_t)INT_MAX) {
        magna_error_set(err, MAGNA_ERR_ARG, "dist: bucket_bytes %zu is out of range (64 B to 8 GiB)", o.bucket_bytes);
        return NULL;
    }
    int inited = 0, provided = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        magna_error_set(err, MAGNA_ERR_IO, "dist: MPI_Init_thread failed");
        return NULL;
    }
    magna_dist *d = calloc(1, sizeof *d);
    if (!d) goto nomem;
    d->we_initialized = !inited;
    d->abort_on_error = true;
    d->timeout = o.timeout;
    d->bucket_floats = o.bucket_bytes / sizeof(float);
    d->zero1 = o.zero1;
    MPI_Comm_dup(MPI_COMM_WORLD, &d->comm);
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN); /* an error comes back to us, and we name it */
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->size);
    MPI_Comm local; /* the ranks sharing this machine: one GPU each */
    d->local_rank = d->rank, d->local_size = d->size;
    if (MPI_Comm_split_type(d->comm, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
        MPI_Comm_rank(local, &d->local_rank);
        MPI_Comm_size(local, &d->local_size);
        MPI_Comm_free(&local);
    }
    d->no_nccl = env_flag("MAGNA_DIST_NO_NCCL");
    d->no_overlap = env_flag("MAGNA_DIST_NO_OVERLAP");
#ifdef DIST_CUDA
    cuda_want_device(d->local_rank); /* the graphs compiled from now on run on this rank's GPU */
#endif
    const int peers = d->size;
    d->hb_in = calloc((size_t)peers, sizeof *d->hb_in);
    d->hb_recv = malloc((size_t)peers * sizeof *d->hb_recv);
    d->hb_send = malloc((size_t)peers * sizeof *d->hb_send);
    d->counts = calloc((size_t)peers, sizeof *d->counts);
    d->last_seen = calloc((size_t)peers, sizeof *d->last_seen);
    d->ping_send = malloc((size_t)peers * sizeof *d->ping_send);
    d->displs = calloc((size_t)peers, sizeof *d->displs);
    if (!d->hb_in || !d->hb_recv || !d->hb_send || !d->counts || !d->displs || !d->last_seen || !d->ping_send)
        goto nomem;
    const double t = now_s();
    for (int r = 0; r < peers; r++) {
        d->hb_recv[r] = d->hb_send[r] = d->ping_send[r] = MPI_REQUEST_NULL;
        d->last_seen[r] = t;
    }
    d->ping_interval = d->timeout / 10 < 0.01 ? 0.01 : d->timeout / 10 > 5 ? 5 : d->timeout / 10;
    d->ping_recv = MPI_REQUEST_NULL;
    if (d->size > 1)
        MPI_Irecv(&d->ping_in, 1, MPI_INT64_T, d->rank == 0 ? MPI_ANY_SOURCE : 0, TAG_PING, d->comm, &d->ping_recv);
    return d;
nomem:
    magna_dist_finalize(d);
    magna_error_set(err, MAGNA_ERR_NOMEM, "dist: out of memory");
    return NULL;
}

void magna_dist_finalize(magna_dist *d) {
    if (!d) return;
    const bool fin = d->we_initialized;
    if (d->size > 1) { /* every rank gets here before any leaves (a rank exiting early makes mpirun end the rest) */
        magna_error err;
        d->abort_on_error = false;
        if (begin(d, d->hb_out[1], "the final barrier", &err) == MAGNA_OK &&
            push_ok(d, MPI_Ibarrier(d->comm, &d->reqs[d->n_reqs])) &&
            finish(d, d->hb_out[1], "the final barrier", &err) != MAGNA_OK)
            fprintf(stderr, "magna: rank %d: %s\n", d->rank, err.message);
    }
    if (d->ping_recv != MPI_REQUEST_NULL && d->ping_recv) {
        MPI_Cancel(&d->ping_recv);
        MPI_Request_free(&d->ping_recv);
    }
    for (int r = 0; d->ping_send && r < d->size; r++)
        if (d->ping_send[r] != MPI_REQUEST_NULL) MPI_Request_free(&d->ping_send[r]);
#ifdef MAGNA_HAVE_NCCL
    if (d->nccl) ncclCommDestroy(d->nccl);
    overlap_free(d);
#endif
    if (d->comm != MPI_COMM_NULL && d->comm) MPI_Comm_free(&d->comm);
    free(d->hb_in), free(d->hb_recv), free(d->hb_send), free(d->counts), free(d->displs);
    free(d->last_seen), free(d->ping_send);
    free(d);
    if (fin) MPI_Finalize();
}

/* ---- one collective: heartbeat, the operations, then a polled wait with a deadline ------------------------ */

static magna_status begin(magna_dist *d, int64_t step, const char *what, magna_error *err) {
    d->n_reqs = 0;
    d->seq++;
    d->hb_out[0] = d->seq, d->hb_out[1] = step;
    int rc = MPI_SUCCESS;
    if (d->rank == 0) {
        for (int r = 1; r < d->size && rc == MPI_SUCCESS; r++) {
            rc = MPI_Irecv(d->hb_in[r], 2, MPI_INT64_T, r, TAG_TO_ROOT, d->comm, &d->hb_recv[r]);
            if (rc == MPI_SUCCESS) rc = MPI_Isend(d->hb_out, 2, MPI_INT64_T, r, TAG_FROM_ROOT, d->comm, &d->hb_send[r]);
        }
    } else {
        rc = MPI_Irecv(d->hb_in[0], 2, MPI_INT64_T, 0, TAG_FROM_ROOT, d->comm, &d->hb_recv[0]);
        if (rc == MPI_SUCCESS) rc = MPI_Isend(d->hb_out, 2, MPI_INT64_T, 0, TAG_TO_ROOT, d->comm, &d->hb_send[0]);
    }
    return rc == MPI_SUCCESS ? MPI_SUCCESS : mpi_fail(d, err, rc, "heartbeat", what, step);
}

static bool push_ok(magna_dist *d, int rc) { return rc == MPI_SUCCESS && ++d->n_reqs <= MAX_REQS; }

/* A received heartbeat must be for the same collective: ranks that made different calls are a bug to name. */
static magna_status check_beat(magna_dist *d, int from, const int64_t beat[2], int64_t step, const char *what,
                               magna_error *err) {
    if (beat[0] == d->seq) return MAGNA_OK;
    return fail(d, err,
                "%s at step %lld: rank %d is at collective #%lld (step %lld), this rank at #%lld: the ranks made "
                "different calls (same data, options and model on every rank?)",
                what, (long long)step, from, (long long)beat[0], (long long)beat[1], (long long)d->seq);
}

/* Pings out (the previous one to a rank must have gone), pings in (who was heard from, when). */
static int pings(magna_dist *d, double t) {
    int rc = MPI_SUCCESS, flag = 0;
    if (t >= d->next_ping) {
        d->next_ping = t + d->ping_interval;
        d->ping_out = d->seq;
        for (int r = d->rank == 0 ? 1 : 0; r < (d->rank == 0 ? d->size : 1) && rc == MPI_SUCCESS; r++) {
            if (d->ping_send[r] != MPI_REQUEST_NULL &&
                ((rc = MPI_Test(&d->ping_send[r], &flag, MPI_STATUS_IGNORE)) != MPI_SUCCESS || !flag))
                continue;
            rc = MPI_Isend(&d->ping_out, 1, MPI_INT64_T, r, TAG_PING, d->comm, &d->ping_send[r]);
        }
    }
    while (rc == MPI_SUCCESS && d->ping_recv != MPI_REQUEST_NULL) {
        MPI_Status status;
        if ((rc = MPI_Test(&d->ping_recv, &flag, &status)) != MPI_SUCCESS || !flag) break;
        d->last_seen[d->rank == 0 ? status.MPI_SOURCE : 0] = t;
        rc = MPI_Irecv(&d->ping_in, 1, MPI_INT64_T, d->rank == 0 ? MPI_ANY_SOURCE : 0, TAG_PING, d->comm,
                       &d->ping_recv);
    }
    return rc;
}

static magna_status finish(magna_dist *d, int64_t step, const char *what, magna_error *err) {
    const double t0 = now_s();
    /* rank 0 gives up first; the others a little later, so that rank 0's message (it knows who is missing) is
     * the one that ends the job, unless rank 0 is the one missing */
    const double limit = d->rank == 0 ? d->timeout : d->timeout * 1.25 + 0.5;
    const int n_hb = d->rank == 0 ? d->size : 1;
    double last = t0, suspended = 0; /* time this process itself did not run (SIGSTOP, a starved VM) */
    for (long spins = 0;; spins++) {
        int done = 0, rc = MPI_Testall(d->n_reqs, d->reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(d, err, rc, "MPI_Testall", what, step);
        bool beats = true;
        for (int r = 0; r < n_hb; r++) {
            int flag = 0;
            if (d->hb_recv[r] != MPI_REQUEST_NULL) {
                if ((rc = MPI_Test(&d->hb_recv[r], &flag, MPI_STATUS_IGNORE)) != MPI_SUCCESS)
                    return mpi_fail(d, err, rc, "heartbeat", what, step);
                if (flag && check_beat(d, d->rank == 0 ? r : 0, d->hb_in[r], step, what, err) != MAGNA_OK)
                    return MAGNA_ERR_IO;
            }
            if (d->hb_send[r] != MPI_REQUEST_NULL) {
                if ((rc = MPI_Test(&d->hb_send[r], &flag, MPI_STATUS_IGNORE)) != MPI_SUCCESS)
                    return mpi_fail(d, err, rc, "heartbeat", what, step);
            }
            beats = beats && d->hb_recv[r] == MPI_REQUEST_NULL && d->hb_send[r] == MPI_REQUEST_NULL;
        }
        if (done && beats) return MAGNA_OK;
        const double t = now_s(), waited = t - t0;
        if (t - last > 2 * d->ping_interval + 0.5) suspended += t - last;
        last = t;
        if ((rc = pings(d, t)) != MPI_SUCCESS) return mpi_fail(d, err, rc, "ping", what, step);
        if (waited > limit && suspended > 0.5 * limit)
            return fail(d, err, "%s at step %lld: this rank was itself suspended for %.3g s of the %.3g s deadline "
                                "(stopped?); ending the job", what, (long long)step, suspended, limit);
        if (waited > limit) {
            /* who is missing: those that never reached this collective, else those that went quiet in it */
            char missing[256] = "", quiet[256] = "";
            size_t used = 0, used_q = 0;
            int n_missing = 0, n_quiet = 0;
            const double stale = 3 * d->ping_interval;
            for (int r = d->rank == 0 ? 1 : 0; r < (d->rank == 0 ? d->size : 1); r++) {
                const int who = d->rank == 0 ? r : 0;
                if (d->hb_recv[r] != MPI_REQUEST_NULL && used + 16 < sizeof missing)
                    used += (size_t)snprintf(missing + used, sizeof missing - used, "%s%d", n_missing++ ? ", " : "",
                                             who);
                else if (t - d->last_seen[r] > stale && used_q + 16 < sizeof quiet)
                    used_q += (size_t)snprintf(quiet + used_q, sizeof quiet - used_q, "%s%d", n_quiet++ ? ", " : "",
                                               who);
            }
            if (n_missing)
                return fail(d, err,
                            "%s at step %lld: rank%s %s did not reach it within the %.3g s deadline (dead, stopped or "
                            "hung); ending the job",
                            what, (long long)step, n_missing > 1 ? "s" : "", missing, limit);
            if (n_quiet)
                return fail(d, err,
                            "%s at step %lld: rank%s %s reached it but stopped answering (no ping for %.3g s); the "
                            "deadline of %.3g s passed; ending the job",
                            what, (long long)step, n_quiet > 1 ? "s" : "", quiet, stale, limit);
            return fail(d, err,
                        "%s at step %lld did not complete within %.3g s although %s reached it and still answers%s; "
                        "ending the job",
                        what, (long long)step, limit, d->rank == 0 ? "every rank" : "rank 0",
                        d->rank == 0 ? " (the network?)" : " (rank 0 should have named the missing rank)");
        }
        /* MPI progresses only inside MPI calls (a nap between two calls stalls a big allreduce's rounds):
         * poll, yielding the core to whoever shares it; nap only once the wait is clearly on a slow rank */
        if (waited > 1.0) {
            struct timespec nap = {0, 1000000};
            nanosleep(&nap, NULL);
        } else if (spins > 100) {
            sched_yield();
        }
    }
}

/* ---- the collectives ----------------------------------------------------------------------------------- */

magna_status magna_dist_check_same(magna_dist *d, const int64_t *values, int count, const char *what,
                                   magna_error *err) {
    if (count < 1 || count > MAX_SUMS)
        return magna_error_set(err, MAGNA_ERR_ARG, "dist: check_same of %d values", count);
    int64_t mine[MAX_SUMS], root[MAX_SUMS];
    memcpy(mine, values, (size_t)count * sizeof *mine);
    memcpy(root, values, (size_t)count * sizeof *root);
    magna_status st = begin(d, 0, what, err);
    if (st != MAGNA_OK) return st;
    int rc = MPI_Ibcast(root, count, MPI_INT64_T, 0, d->comm, &d->reqs[d->n_reqs]);
    if (!push_ok(d, rc)) return mpi_fail(d, err, rc, "MPI_Ibcast", what, 0);
    if ((st = finish(d, 0, what, err)) != MAGNA_OK) return st;
    for (int i = 0; i < count; i++)
        if (mine[i] != root[i]) {
            char a[256] = "", b[256] = "";
            for (int j = 0, ua = 0, ub = 0; j < count; j++) {
                ua += snprintf(a + ua, sizeof a - (size_t)ua, "%s%lld", j ? " " : "", (long long)mine[j]);
                ub += snprintf(b + ub, sizeof b - (size_t)ub, "%s%lld", j ? " " : "", (long long)root[j]);
                if (ua >= 200 || ub >= 200) break;
            }
            return fail(d, err, "%s differ: this rank has %s, rank 0 has %s (every rank must run the same)", what, a,
                        b);
        }
    return MAGNA_OK;
}

/* Posts one operation per bucket of a float buffer of any length. */
typedef int (*bucket_op)(magna_dist *d, float *p, int count, MPI_Request *req);

static int op_allreduce(magna_dist *d, float *p, int count, MPI_Request *req) {
    return MPI_Iallreduce(MPI_IN_PLACE, p, count, MPI_FLOAT, MPI_SUM, d->comm, req);
}
static int op_bcast(magna_dist *d, float *p, int count, MPI_Request *req) {
    return MPI_Ibcast(p, count, MPI_FLOAT, 0, d->comm, req);
}

/* Buckets beyond the request table are posted after the earlier ones complete (a wait per round). */
static magna_status buckets(magna_dist *d, float *p, size_t n, bucket_op op, int64_t step, const char *what,
                            magna_error *err, bool *open) {
    for (size_t at = 0; at < n;) {
        if (d->n_reqs == MAX_REQS - 2) { /* keep room for the caller's small ones */
            magna_status st = finish(d, step, what, err);
            if (st != MAGNA_OK) return st;
            if ((st = begin(d, step, what, err)) != MAGNA_OK) return st;
        }
        const size_t c = n - at < d->bucket_floats ? n - at : d->bucket_floats;
        int rc = op(d, p + at, (int)c, &d->reqs[d->n_reqs]);
        if (!push_ok(d, rc)) return mpi_fail(d, err, rc, "a bucket", what, step);
        at += c;
    }
    *open = true;
    return MAGNA_OK;
}

/* ---- a CUDA graph's side ------------------------------------------------------------------------------ */

#ifdef DIST_CUDA
static bool on_cuda(const magna_graph *g) { return g->device == MAGNA_DEVICE_CUDA && g->cuda; }
#endif

/* Before a collective over the host mirrors of params and states: the device's newest values down (and the
 * mirrors marked as written, so the device takes them back before it next reads them). */
static magna_status mirrors_down(magna_dist *d, magna_graph *g, int64_t step, const char *what, magna_error *err) {
#ifdef DIST_CUDA
    if (on_cuda(g) && cuda_graph_sync_host(g) != MAGNA_OK)
        return fail(d, err, "%s at step %lld: %s", what, (long long)step, magna_graph_errmsg(g));
#endif
    return MAGNA_OK;
}

#ifdef DIST_CUDA
enum { CUDA_NOT_READY = 600 }; /* cudaErrorNotReady: the stream still has work */

static bool nccl_used(const magna_dist *d) {
#ifdef MAGNA_HAVE_NCCL
    return !d->no_nccl;
#else
    return false;
#endif
}

#ifdef MAGNA_HAVE_NCCL
/* An NCCL error: the communicator is of no more use (aborted), and the job ends as for any collective. */
static magna_status nccl_fail(magna_dist *d, magna_error *err, ncclResult_t r, const char *call, const char *what,
                              int64_t step) {
    const char *detail = ncclGetLastError(d->nccl);
    char msg[384];
    snprintf(msg, sizeof msg, "%s", detail ? detail : "");
    if (d->nccl) ncclCommAbort(d->nccl), d->nccl = NULL;
    return fail(d, err, "%s at step %lld: %s failed: %s%s%s", what, (long long)step, call, ncclGetErrorString(r),
                msg[0] ? ": " : "", msg);
}

/* The communicator, at the first gradient allreduce every rank makes: rank 0's unique id over MPI (with the
 * deadline and heartbeat of any collective), then ncclCommInitRank on this rank's device. */
static magna_status nccl_open(magna_dist *d, magna_graph *g, int64_t step, magna_error *err) {
    if (d->nccl) return MAGNA_OK;
    const char *what = "the setup of NCCL";
    int devices = 0;
    const int e = cuda_device_count(&devices);
    if (e) return fail(d, err, "%s: counting the CUDA devices: %s", what, cuda_error_string(e));
#ifndef MAGNA_CUDA_EMU /* (each emulated rank has a device of its own: its memory is the process's) */
    if (d->local_size > devices)
        return fail(d, err,
                    "%s: %d ranks on this machine but %d CUDA device%s: data parallel on CUDA takes one GPU per rank "
                    "(start at most %d ranks per machine)",
                    what, d->local_size, devices, devices == 1 ? "" : "s", devices);
#endif
    struct {
        ncclUniqueId id;
        int32_t ok;
    } root;
    memset(&root, 0, sizeof root);
    ncclResult_t r = ncclSuccess;
    if (d->rank == 0) root.ok = (r = ncclGetUniqueId(&root.id)) == ncclSuccess;
    magna_status st = begin(d, step, what, err);
    if (st != MAGNA_OK) return st;
    const int rc = MPI_Ibcast(&root, (int)sizeof root, MPI_BYTE, 0, d->comm, &d->reqs[d->n_reqs]);
    if (!push_ok(d, rc)) return mpi_fail(d, err, rc, "MPI_Ibcast", what, step);
    if ((st = finish(d, step, what, err)) != MAGNA_OK) return st;
    if (!root.ok)
        return fail(d, err, "%s: rank 0 could not make NCCL's unique id%s%s", what, d->rank == 0 ? ": " : "",
                    d->rank == 0 ? ncclGetErrorString(r) : "");
    /* blocking, but every rank is known to be here: they all took part in the broadcast just above */
    if ((r = ncclCommInitRank(&d->nccl, d->size, root.id, d->rank)) != ncclSuccess) {
        char call[96];
        snprintf(call, sizeof call, "ncclCommInitRank on CUDA device %d", g->cuda->device);
        d->nccl = NULL;
        return nccl_fail(d, err, r, call, what, step);
    }
    return MAGNA_OK;
}
#endif

/* The graph's stream drained, polled until the deadline: NCCL's kernels wait on the GPU for every peer, so a
 * peer that never sends would hang a plain cudaStreamSynchronize. NCCL's own errors end the wait too. */
static magna_status stream_done(magna_dist *d, magna_graph *g, int64_t step, const char *what, magna_error *err) {
    const double t0 = now_s();
    for (long spins = 0;; spins++) {
        const int e = cuda_stream_query(cuda_stream(g));
        if (e == 0) return MAGNA_OK;
        if (e != CUDA_NOT_READY)
            return fail(d, err, "%s at step %lld: the device failed: %s", what, (long long)step, cuda_error_string(e));
#ifdef MAGNA_HAVE_NCCL
        ncclResult_t r = ncclSuccess;
        if (d->nccl && ncclCommGetAsyncError(d->nccl, &r) == ncclSuccess && r != ncclSuccess && r != ncclInProgress)
            return nccl_fail(d, err, r, "NCCL (asynchronous error)", what, step);
#endif
        if (now_s() - t0 > d->timeout)
            return fail(d, err,
                        "%s at step %lld: NCCL did not complete on this rank's GPU within the %.3g s deadline although "
                        "every rank reached the step (a hung peer GPU or the interconnect?); ending the job",
                        what, (long long)step, d->timeout);
        if (spins > 100) sched_yield();
    }
}

#ifdef MAGNA_HAVE_NCCL
/* ---- the gradient allreduce overlapping backward -------------------------------------------------------- */

static void overlap_free(magna_dist *d) {
    for (int b = 0; d->overlap.events && b < d->overlap.n_buckets; b++)
        if (d->overlap.events[b]) cuda_event_destroy(d->overlap.events[b]);
    if (d->overlap.done_event) cuda_event_destroy(d->overlap.done_event);
    if (d->overlap.comm_stream) cuda_stream_destroy(d->overlap.comm_stream);
    free(d->overlap.events), free(d->overlap.order), free(d->overlap.ready);
    memset(&d->overlap, 0, sizeof d->overlap);
}

/* The buckets of g's flat gradients in the order backward completes them: a param's gradient is complete
 * after the backward of the first node (in forward order) that reads it, where the last contribution lands; a
 * bucket after its params'. Then the stream, and an event per bucket, that order the sums after backward's
 * writes. */
static magna_status overlap_prepare(magna_dist *d, magna_graph *g, int64_t step, magna_error *err) {
    if (d->overlap.g == g && d->overlap.n_order == g->n_order) return MAGNA_OK;
    overlap_free(d);
    const size_t bf = d->bucket_floats, n = g->n_params;
    const int nb = (int)((n + bf - 1) / bf), N = g->n_order;
    d->overlap.order = malloc((size_t)(nb + 1) * sizeof(int));
    d->overlap.ready = malloc((size_t)(nb + 1) * sizeof(int));
    d->overlap.events = calloc((size_t)nb + 1, sizeof(void *));
    if (!d->overlap.order || !d->overlap.ready || !d->overlap.events) {
        overlap_free(d);
        return fail(d, err, "dist: out of memory");
    }
    int *ready = d->overlap.ready; /* by bucket index first, then reordered with order[] */
    for (int b = 0; b < nb; b++) ready[b] = N; /* nothing reads it: complete before backward starts */
    for (int k = 0; k < g->n_param_nodes; k++) {
        const magna_node *p = g->param_nodes[k];
        int first = N;
        for (int j = 0; j < N; j++)
            for (int i = 0; i < g->order[j]->n_in; i++)
                if (g->order[j]->in[i] == p && g->order[j]->needs_grad && j < first) first = j;
        if (p->numel == 0) continue;
        for (size_t b = p->offset / bf; b <= (p->offset + (size_t)p->numel - 1) / bf; b++)
            if (first < ready[b]) ready[b] = first;
    }
    /* latest-ready first (backward walks the order down), ties in buffer order: an insertion sort */
    int *order = d->overlap.order, *by_bucket = malloc((size_t)(nb + 1) * sizeof(int));
    if (!by_bucket) {
        overlap_free(d);
        return fail(d, err, "dist: out of memory");
    }
    memcpy(by_bucket, ready, (size_t)nb * sizeof(int));
    for (int b = 0; b < nb; b++) {
        int i = b;
        while (i > 0 && by_bucket[order[i - 1]] < by_bucket[b]) order[i] = order[i - 1], i--;
        order[i] = b;
    }
    for (int i = 0; i < nb; i++) ready[i] = by_bucket[order[i]];
    free(by_bucket);
    d->overlap.g = g, d->overlap.n_order = N, d->overlap.n_buckets = nb;
    int e = cuda_stream_create(&d->overlap.comm_stream);
    if (!e) e = cuda_event_create(&d->overlap.done_event);
    for (int b = 0; b < nb && !e; b++) e = cuda_event_create(&d->overlap.events[b]);
    if (e) {
        overlap_free(d);
        return fail(d, err, "the gradient allreduce at step %lld: a stream and events for NCCL: %s", (long long)step,
                    cuda_error_string(e));
    }
    return MAGNA_OK;
}

/* Starts the next bucket's sum: after what the graph's stream has queued (its gradients), on comm_stream:
 * this rank's weight, then NCCL's allreduce. 0, a CUDA error, or -1 - an NCCL result. */
static int overlap_start_next(magna_dist *d, magna_graph *g) {
    const int b = d->overlap.order[d->overlap.next++];
    const size_t at = (size_t)b * d->bucket_floats, n = g->n_params;
    const size_t c = n - at < d->bucket_floats ? n - at : d->bucket_floats;
    void *comm = d->overlap.comm_stream;
    int e = cuda_event_record(d->overlap.events[b], cuda_stream(g));
    if (!e) e = cuda_stream_wait_event(comm, d->overlap.events[b]);
    if (!e && d->overlap.weight != 1.0) e = magna_cuda_scale((float)d->overlap.weight, g->dev_grads + at, (int64_t)c, comm);
    if (e) return e;
    const ncclResult_t r = ncclAllReduce(g->dev_grads + at, g->dev_grads + at, c, ncclFloat, ncclSum, d->nccl,
                                         (cudaStream_t)comm);
    return r == ncclSuccess ? 0 : -1 - (int)r;
}

/* the graph's hook: after the backward of order[k], every bucket complete by then */
static void overlap_after_backward(magna_graph *g, int k, void *user) {
    magna_dist *d = user;
    while (!d->overlap.error && d->overlap.next < d->overlap.n_buckets && d->overlap.ready[d->overlap.next] >= k)
        d->overlap.error = overlap_start_next(d, g);
}
#endif

/* The gradients of a CUDA graph: scaled by this rank's weight and summed over ranks on the device (NCCL, in
 * buckets on a stream of their own, each as soon as backward has completed it when magna_dist_backward_begin
 * ran, else all now), while the sums go over MPI; then the same 1 / total rows as the CPU path. */
static magna_status allreduce_grads_device(magna_dist *d, magna_graph *g, double weight, double *sums, int n_sums,
                                           int64_t step, magna_error *err) {
    const char *what = "the gradient allreduce";
    void *s = cuda_stream(g);
    float *grad = g->dev_grads;
    const size_t n = g->n_params;
    magna_status st = MAGNA_OK;
    int e = 0;
#ifdef MAGNA_HAVE_NCCL
    const bool began = d->overlap.active && d->overlap.g == g && d->overlap.step == step;
    if (g->after_backward_user == d) g->after_backward = NULL, g->after_backward_user = NULL;
    d->overlap.active = false;
    if (began && weight != d->overlap.weight)
        return fail(d, err, "%s at step %lld: the weight %g is not the %g backward began with", what, (long long)step,
                    weight, d->overlap.weight);
    if ((st = nccl_open(d, g, step, err)) != MAGNA_OK || (st = overlap_prepare(d, g, step, err)) != MAGNA_OK) return st;
    if (!began) d->overlap.next = 0, d->overlap.error = 0, d->overlap.weight = weight;
    /* the buckets backward did not start (all of them without magna_dist_backward_begin), in the same order on
     * every rank; then the graph's stream waits for the sums: the GPUs add while the host does the MPI part */
    overlap_after_backward(g, -1, d);
    e = d->overlap.error;
    if (e < 0) return nccl_fail(d, err, (ncclResult_t)(-1 - e), "ncclAllReduce", what, step);
    if (!e) e = cuda_event_record(d->overlap.done_event, d->overlap.comm_stream);
    if (!e) e = cuda_stream_wait_event(s, d->overlap.done_event);
    if (e) return fail(d, err, "%s at step %lld: %s", what, (long long)step, cuda_error_string(e));
#else
    e = weight != 1.0 ? magna_cuda_scale((float)weight, grad, (int64_t)n, s) : 0;
    if (e) return fail(d, err, "%s at step %lld: scaling the gradients: %s", what, (long long)step, cuda_error_string(e));
#endif
    d->scratch[0] = weight;
    for (int i = 0; i < n_sums; i++) d->scratch[1 + i] = sums[i];
    if ((st = begin(d, step, what, err)) != MAGNA_OK) return st;
    const int rc = MPI_Iallreduce(MPI_IN_PLACE, d->scratch, 1 + n_sums, MPI_DOUBLE, MPI_SUM, d->comm,
                                  &d->reqs[d->n_reqs]);
    if (!push_ok(d, rc)) return mpi_fail(d, err, rc, "MPI_Iallreduce", what, step);
    if ((st = finish(d, step, what, err)) != MAGNA_OK) return st;
    const double total = d->scratch[0];
    const float inv = total > 0 ? (float)(1.0 / total) : 0.0f;
    if (inv != 1.0f && (e = magna_cuda_scale(inv, grad, (int64_t)n, s)))
        return fail(d, err, "%s at step %lld: scaling the gradients: %s", what, (long long)step, cuda_error_string(e));
    if ((st = stream_done(d, g, step, what, err)) != MAGNA_OK) return st;
    for (int i = 0; i < n_sums; i++) sums[i] = d->scratch[1 + i];
    return MAGNA_OK;
}
#endif /* DIST_CUDA */

magna_status magna_dist_backward_begin(magna_dist *d, magna_graph *g, double weight, int64_t step, magna_error *err) {
#if defined(DIST_CUDA) && defined(MAGNA_HAVE_NCCL)
    if (!d || d->size == 1 || !on_cuda(g) || !nccl_used(d) || d->no_overlap) return MAGNA_OK;
    magna_status st = nccl_open(d, g, step, err);
    if (st == MAGNA_OK) st = overlap_prepare(d, g, step, err);
    if (st != MAGNA_OK) return st;
    d->overlap.active = true, d->overlap.next = 0, d->overlap.error = 0;
    d->overlap.weight = weight, d->overlap.step = step;
    g->after_backward = overlap_after_backward, g->after_backward_user = d;
    overlap_after_backward(g, g->n_order, d); /* buckets no node writes into */
#else
    (void)d, (void)g, (void)weight, (void)step, (void)err;
#endif
    return MAGNA_OK;
}

magna_status magna_dist_broadcast_params(magna_dist *d, magna_graph *g, int64_t step, magna_error *err) {
    const char *what = "the broadcast of rank 0's params";
    bool open = false;
    magna_status st = mirrors_down(d, g, step, what, err);
    if (st == MAGNA_OK) st = begin(d, step, what, err);
    if (st == MAGNA_OK) st = buckets(d, g->params, g->n_params, op_bcast, step, what, err, &open);
    if (st == MAGNA_OK && g->n_states) st = buckets(d, g->states, g->n_states, op_bcast, step, what, err, &open);
    if (st == MAGNA_OK) st = finish(d, step, what, err);
    return st;
}

magna_status magna_dist_allreduce_grads(magna_dist *d, magna_graph *g, double weight, double *sums, int n_sums,
                                        int64_t step, magna_error *err) {
    const char *what = "the gradient allreduce";
    if (n_sums < 0 || n_sums > MAX_SUMS || (n_sums && !sums) || !(weight >= 0))
        return magna_error_set(err, MAGNA_ERR_ARG, "dist: allreduce_grads: weight %g and %d sums", weight, n_sums);
    float *grad = g->grads;
    const int64_t n = (int64_t)g->n_params;
    if (d->size == 1) return MAGNA_OK; /* one rank: the gradients are already the mean */
#ifdef DIST_CUDA
    if (on_cuda(g) && nccl_used(d)) return allreduce_grads_device(d, g, weight, sums, n_sums, step, err);
    /* no NCCL: through the host mirror and back (correct, and two copies of the gradients slower) */
    if (on_cuda(g) && cuda_graph_grads_to_host(g) != MAGNA_OK)
        return fail(d, err, "%s at step %lld: %s", what, (long long)step, magna_graph_errmsg(g));
#endif
    if (weight != 1.0) {
        const float w = (float)weight;
        PARALLEL_FOR(n > 65536, i, n, grad[i] *= w;);
    }
    d->scratch[0] = weight;
    for (int i = 0; i < n_sums; i++) d->scratch[1 + i] = sums[i];
    bool open = false;
    magna_status st = begin(d, step, what, err);
    if (st == MAGNA_OK) {
        int rc = MPI_Iallreduce(MPI_IN_PLACE, d->scratch, 1 + n_sums, MPI_DOUBLE, MPI_SUM, d->comm,
                                &d->reqs[d->n_reqs]);
        if (!push_ok(d, rc)) return mpi_fail(d, err, rc, "MPI_Iallreduce", what, step);
    }
    if (st == MAGNA_OK) st = buckets(d, grad, g->n_params, op_allreduce, step, what, err, &open);
    if (st == MAGNA_OK) st = finish(d, step, what, err);
    if (st != MAGNA_OK) return st;
    /* the mean over the global batch: sum of (rows_r x mean_r) / total rows */
    const double total = d->scratch[0];
    const float inv = total > 0 ? (float)(1.0 / total) : 0.0f;
    if (inv != 1.0f) {
        PARALLEL_FOR(n > 65536, i, n, grad[i] *= inv;);
    }
    for (int i = 0; i < n_sums; i++) sums[i] = d->scratch[1 + i];
#ifdef DIST_CUDA
    if (on_cuda(g)) {
        void *s = cuda_stream(g);
        int e = cuda_h2d(g->dev_grads, g->grads, g->n_params * sizeof(float), s);
        if (!e) e = cuda_stream_sync(s); /* the mirror is rewritten by the next step's download */
        if (e) return fail(d, err, "%s at step %lld: copying the gradients to the device: %s", what, (long long)step,
                           cuda_error_string(e));
    }
#endif
    return MAGNA_OK;
}

magna_status magna_dist_allreduce_sum(magna_dist *d, double *values, int n, int64_t step, const char *what,
                                      magna_error *err) {
    if (n < 1) return MAGNA_OK;
    magna_status st = begin(d, step, what, err);
    if (st != MAGNA_OK) return st;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_SUM, d->comm, &d->reqs[d->n_reqs]);
    if (!push_ok(d, rc)) return mpi_fail(d, err, rc, "MPI_Iallreduce", what, step);
    return finish(d, step, what, err);
}

magna_status magna_dist_average_states(magna_dist *d, magna_graph *g, int64_t step, magna_error *err) {
    if (!g->n_states || d->size == 1) return MAGNA_OK;
    const char *what = "the allreduce of the states (batch-norm statistics)";
    bool open = false;
    magna_status st = mirrors_down(d, g, step, what, err);
    if (st == MAGNA_OK) st = begin(d, step, what, err);
    if (st == MAGNA_OK) st = buckets(d, g->states, g->n_states, op_allreduce, step, what, err, &open);
    if (st == MAGNA_OK) st = finish(d, step, what, err);
    if (st != MAGNA_OK) return st;
    const float inv = 1.0f / (float)d->size;
    for (size_t i = 0; i < g->n_states; i++) g->states[i] *= inv;
    return MAGNA_OK;
}

/* ---- ZeRO stage 1 -------------------------------------------------------------------------------------- */

#ifdef DIST_CUDA
/* ZeRO 1 on CUDA: each rank's updated slice of the params to every rank, on the device. NCCL's all-gather
 * takes equal parts and the last slice may be shorter, so it is one in-place broadcast per slice, grouped. */
static magna_status allgather_params_device(magna_dist *d, magna_graph *g, int64_t step, const char *what,
                                            magna_error *err) {
    magna_status st = MAGNA_OK;
#ifdef MAGNA_HAVE_NCCL
    if ((st = nccl_open(d, g, step, err)) != MAGNA_OK) return st;
    ncclResult_t r = ncclGroupStart();
    for (int k = 0; k < d->size && r == ncclSuccess; k++) {
        float *p = g->dev_params + d->displs[k];
        if (d->counts[k]) r = ncclBroadcast(p, p, (size_t)d->counts[k], ncclFloat, k, d->nccl, (cudaStream_t)cuda_stream(g));
    }
    const ncclResult_t end = ncclGroupEnd();
    if (r == ncclSuccess) r = end;
    if (r != ncclSuccess) return nccl_fail(d, err, r, "ncclBroadcast", what, step);
#endif
    /* the heartbeat: who did not come is named as for any collective */
    if ((st = begin(d, step, what, err)) != MAGNA_OK || (st = finish(d, step, what, err)) != MAGNA_OK) return st;
    return stream_done(d, g, step, what, err);
}
#endif

/* Rank r's slice of n params: equal parts, each starting on a 64-byte boundary. */
static magna_status slices(magna_dist *d, size_t n, magna_error *err) {
    size_t per = (n + (size_t)d->size - 1) / (size_t)d->size;
    per = (per + 15) / 16 * 16;
    if (per > (size_t)INT_MAX) return fail(d, err, "ZeRO: a slice of %zu params is too big for MPI counts", per);
    for (int r = 0; r < d->size; r++) {
        size_t from = (size_t)r * per < n ? (size_t)r * per : n, to = from + per < n ? from + per : n;
        d->displs[r] = (int)from, d->counts[r] = (int)(to - from);
    }
    return MAGNA_OK;
}

magna_status magna_dist_shard_optimizer(magna_dist *d, magna_optimizer *opt, magna_error *err) {
    if (!d->zero1 || d->size == 1) return MAGNA_OK;
    size_t count, n_all;
    magna_optimizer_range(opt, &count, &n_all);
    magna_status st = slices(d, n_all, err);
    if (st != MAGNA_OK) return st;
    return magna_optimizer_shard(opt, (size_t)d->displs[d->rank], (size_t)d->counts[d->rank], err);
}

static bool sharded(const magna_dist *d, const magna_optimizer *opt) {
    size_t count, n_all;
    const size_t off = magna_optimizer_range(opt, &count, &n_all);
    return d->zero1 && d->size > 1 && (off != 0 || count != n_all);
}

magna_status magna_dist_optimizer_step(magna_dist *d, magna_optimizer *opt, magna_graph *g, int64_t step,
                                       magna_error *err) {
    magna_optimizer_step(opt);
    if (!sharded(d, opt)) return MAGNA_OK;
    const char *what = "the all-gather of the params (ZeRO 1)";
#ifdef DIST_CUDA
    if (on_cuda(g) && nccl_used(d)) return allgather_params_device(d, g, step, what, err);
    if (on_cuda(g) && cuda_graph_sync_host(g) != MAGNA_OK) /* no NCCL: through the host mirror (and up later) */
        return fail(d, err, "%s at step %lld: %s", what, (long long)step, magna_graph_errmsg(g));
#endif
    magna_status st = begin(d, step, what, err);
    if (st != MAGNA_OK) return st;
    int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, g->params, d->counts, d->displs, MPI_FLOAT, d->comm,
                             &d->reqs[d->n_reqs]);
    if (!push_ok(d, rc)) return mpi_fail(d, err, rc, "MPI_Iallgatherv", what, step);
    return finish(d, step, what, err);
}

magna_status magna_dist_gather_state(magna_dist *d, magna_optimizer *opt, int k, float *full, int64_t step,
                                     magna_error *err) {
    size_t count;
    float *s = magna_optimizer_state(opt, k, &count);
    if (!s) return MAGNA_OK;
    if (!sharded(d, opt)) {
        if (d->rank == 0 && full != s) memcpy(full, s, count * sizeof *s);
        return MAGNA_OK;
    }
    const char *what = "the gather of the optimizer state (ZeRO 1)";
    magna_status st = begin(d, step, what, err);
    if (st != MAGNA_OK) return st;
    int rc = MPI_Igatherv(s, (int)count, MPI_FLOAT, full, d->counts, d->displs, MPI_FLOAT, 0, d->comm,
                          &d->reqs[d->n_reqs]);
    if (!push_ok(d, rc)) return mpi_fail(d, err, rc, "MPI_Igatherv", what, step);
    return finish(d, step, what, err);
}

/* ---- figures ----------------------------------------------------------------------------------------- */

size_t magna_dist_allreduce_bytes(const magna_dist *d, const magna_graph *g) {
    if (!d || d->size == 1) return 0;
    return g->n_params * sizeof(float) + 4 * sizeof(double);
}

const char *magna_dist_grad_path(const magna_dist *d, const magna_graph *g) {
    if (!d || d->size == 1) return "none (one process)";
#ifdef DIST_CUDA
    if (on_cuda(g) && nccl_used(d))
        return d->no_overlap ? "NCCL on the GPUs, after backward (MAGNA_DIST_NO_OVERLAP)"
                             : "NCCL on the GPUs, overlapping backward";
    if (on_cuda(g))
        return d->no_nccl ? "MPI over host memory (MAGNA_DIST_NO_NCCL: each step copies the gradients to the host and "
                            "back, slower)"
                          : "MPI over host memory (this build has no NCCL: each step copies the gradients to the host "
                            "and back, slower)";
#endif
    return "MPI";
}

/* 1234 B, 12.1 KiB, 3.45 MiB, 1.23 GiB */
static const char *human(double bytes, char *buf, size_t n) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
    snprintf(buf, n, u ? "%.3g %s" : "%.0f %s", bytes, units[u]);
    return buf;
}

void magna_dist_describe(const magna_dist *d, const magna_graph *g, const magna_optimizer *opt, int64_t batch,
                         FILE *out) {
    char a[32], b[32];
    const size_t n_buckets = (g->n_params + d->bucket_floats - 1) / d->bucket_floats;
    fprintf(out, "data parallel: %d ranks x batch %lld = global batch %lld; gradient allreduce %s per step in %zu "
                 "bucket%s; deadline %.3g s per collective",
            d->size, (long long)batch, (long long)batch * d->size,
            human((double)magna_dist_allreduce_bytes(d, g), a, sizeof a), n_buckets, n_buckets == 1 ? "" : "s",
            d->timeout);
#ifdef DIST_CUDA
    if (on_cuda(g)) fprintf(out, "; one GPU per rank (device %d here), gradients by %s", g->cuda->device,
                            magna_dist_grad_path(d, g));
#endif
    if (opt && d->zero1) {
        const size_t mine = magna_optimizer_state_bytes(opt);
        size_t count, n_all;
        magna_optimizer_range(opt, &count, &n_all);
        const double full = count ? (double)mine * (double)n_all / (double)count : 0;
        fprintf(out, "; ZeRO 1: optimizer state %s on rank 0, %s unsharded (%.2fx less)",
                human((double)mine, a, sizeof a), human(full, b, sizeof b), mine ? full / (double)mine : 0.0);
    }
    fprintf(out, "\n");
}

#endif /* MAGNA_HAVE_MPI */
