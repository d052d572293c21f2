/* nccl_emu.c — the NCCL subset of src/cuda/emu/include/nccl.h for the CUDA emulator: a communicator is a
 * duplicate of MPI_COMM_WORLD, an allreduce is MPI_Allreduce over the emulated device memory (host memory).
 * Built into magna_emu only, and only with MPI (without it there is no data parallel to emulate). What it
 * checks as NCCL would: the ranks and the id of ncclCommInitRank, device pointers, types and operations.
 * For the tests of what follows a failure, two settings make one rank's allreduce go wrong:
 *   MAGNA_EMU_NCCL_FAIL=R  rank R's collectives fail (ncclRemoteError), as when a peer's connection breaks;
 *   MAGNA_EMU_NCCL_HANG=R  after rank R's first collective its streams never finish (cudaStreamQuery answers
 *                          cudaErrorNotReady), as when NCCL's kernel waits for a peer that never sends. */
#ifdef MAGNA_HAVE_MPI

#include <nccl.h>

#include <mpi.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct ncclComm {
    MPI_Comm comm;
    int rank, size;
    char last[256]; /* the message of this communicator's last error */
};

static char last_global[256];

static ncclResult_t err(ncclComm_t c, ncclResult_t r, const char *msg) {
    snprintf(c ? c->last : last_global, sizeof last_global, "%s", msg);
    return r;
}

ncclResult_t ncclGetVersion(int *version) {
    if (!version) return err(NULL, ncclInvalidArgument, "ncclGetVersion: version is NULL");
    *version = NCCL_VERSION_CODE;
    return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    if (!id) return err(NULL, ncclInvalidArgument, "ncclGetUniqueId: id is NULL");
    memset(id, 0, sizeof *id);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(id->internal, sizeof id->internal, "magna-emu-nccl %ld %lld.%09ld", (long)getpid(), (long long)ts.tv_sec,
             ts.tv_nsec);
    return ncclSuccess;
}

/* FNV-1a of the id: every rank must have been given the same one */
static int64_t id_hash(const ncclUniqueId *id) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < sizeof id->internal; i++) h = (h ^ (unsigned char)id->internal[i]) * 0x100000001b3ull;
    return (int64_t)(h >> 1);
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    int inited = 0, world = 0, me = 0;
    MPI_Initialized(&inited);
    if (!comm) return err(NULL, ncclInvalidArgument, "ncclCommInitRank: comm is NULL");
    if (!inited) return err(NULL, ncclInvalidUsage, "ncclCommInitRank (emulated): MPI is not initialised");
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (nranks != world || rank != me)
        return err(NULL, ncclInvalidArgument,
                   "ncclCommInitRank (emulated): ranks and rank must be the MPI job's (its size and this rank)");
    struct ncclComm *c = calloc(1, sizeof *c);
    if (!c) return err(NULL, ncclSystemError, "ncclCommInitRank: out of memory");
    int64_t h[2] = {id_hash(&id), -id_hash(&id)}; /* max of h and of -h: equal on every rank iff all ids are */
    if (MPI_Comm_dup(MPI_COMM_WORLD, &c->comm) != MPI_SUCCESS ||
        MPI_Allreduce(MPI_IN_PLACE, h, 2, MPI_INT64_T, MPI_MAX, c->comm) != MPI_SUCCESS) {
        free(c);
        return err(NULL, ncclSystemError, "ncclCommInitRank (emulated): MPI failed");
    }
    if (h[0] != -h[1]) {
        MPI_Comm_free(&c->comm);
        free(c);
        return err(NULL, ncclInvalidUsage, "ncclCommInitRank: the ranks were given different unique ids");
    }
    c->rank = rank, c->size = nranks;
    *comm = c;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    MPI_Comm_free(&comm->comm);
    free(comm);
    return ncclSuccess;
}

/* NCCL's abort is local (it ends this rank's kernels): the MPI communicator is left to MPI_Abort or exit */
ncclResult_t ncclCommAbort(ncclComm_t comm) {
    free(comm);
    return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error) {
    if (!comm || !async_error) return err(comm, ncclInvalidArgument, "ncclCommGetAsyncError: NULL argument");
    *async_error = ncclSuccess; /* every call completed before it returned */
    return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int *count) {
    if (!comm || !count) return err(NULL, ncclInvalidArgument, "ncclCommCount: NULL argument");
    *count = comm->size;
    return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank) {
    if (!comm || !rank) return err(NULL, ncclInvalidArgument, "ncclCommUserRank: NULL argument");
    *rank = comm->rank;
    return ncclSuccess;
}

/* The MPI type and size of an NCCL type this emulator takes; false for the others. */
static bool mpi_type(ncclDataType_t datatype, MPI_Datatype *t, size_t *size) {
    switch (datatype) {
    case ncclFloat32: *t = MPI_FLOAT, *size = 4; return true;
    case ncclFloat64: *t = MPI_DOUBLE, *size = 8; return true;
    case ncclInt32: *t = MPI_INT32_T, *size = 4; return true;
    case ncclInt64: *t = MPI_INT64_T, *size = 8; return true;
    default: return false;
    }
}

/* What every collective checks: device buffers, a live stream (or one stalled by MAGNA_EMU_NCCL_HANG), and the
 * failure MAGNA_EMU_NCCL_FAIL asks for; after it, the stall MAGNA_EMU_NCCL_HANG asks for. */
static ncclResult_t collective_checks(ncclComm_t comm, const char *call, const void *a, const void *b, size_t bytes,
                                     cudaStream_t stream) {
    char msg[128];
    if (!magna_emu_is_device(a, bytes) || !magna_emu_is_device(b, bytes)) {
        snprintf(msg, sizeof msg, "%s: a buffer is not device memory", call);
        return err(comm, ncclInvalidArgument, msg);
    }
    const cudaError_t q = cudaStreamQuery(stream);
    if (q != cudaSuccess && q != cudaErrorNotReady) {
        snprintf(msg, sizeof msg, "%s: not a live stream", call);
        return err(comm, ncclInvalidArgument, msg);
    }
    const char *fail_rank = getenv("MAGNA_EMU_NCCL_FAIL"), *hang_rank = getenv("MAGNA_EMU_NCCL_HANG");
    if (fail_rank && *fail_rank && atoi(fail_rank) == comm->rank)
        return err(comm, ncclRemoteError, "emulated failure of this rank's connection (MAGNA_EMU_NCCL_FAIL)");
    if (hang_rank && *hang_rank && atoi(hang_rank) == comm->rank) magna_emu_stall_streams(1);
    return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream) {
    if (!comm) return err(NULL, ncclInvalidArgument, "ncclBroadcast: comm is NULL");
    MPI_Datatype t;
    size_t size;
    if (!mpi_type(datatype, &t, &size))
        return err(comm, ncclInvalidArgument, "ncclBroadcast (emulated): only float32/64 and int32/64");
    if (root < 0 || root >= comm->size) return err(comm, ncclInvalidArgument, "ncclBroadcast: no such root");
    if (count == 0) return ncclSuccess;
    if (count > (size_t)INT32_MAX) return err(comm, ncclInvalidArgument, "ncclBroadcast (emulated): count > 2^31");
    const void *src = comm->rank == root ? sendbuff : recvbuff; /* only the root's sendbuff is read */
    const ncclResult_t c = collective_checks(comm, "ncclBroadcast", src, recvbuff, count * size, stream);
    if (c != ncclSuccess) return c;
    if (comm->rank == root && sendbuff != recvbuff) memcpy(recvbuff, sendbuff, count * size);
    if (MPI_Bcast(recvbuff, (int)count, t, root, comm->comm) != MPI_SUCCESS)
        return err(comm, ncclSystemError, "ncclBroadcast (emulated): MPI_Bcast failed");
    return ncclSuccess;
}

ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }

ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
    if (!comm) return err(NULL, ncclInvalidArgument, "ncclAllReduce: comm is NULL");
    MPI_Datatype t;
    size_t size;
    if (!mpi_type(datatype, &t, &size))
        return err(comm, ncclInvalidArgument, "ncclAllReduce (emulated): only float32/64 and int32/64");
    const bool floats = datatype == ncclFloat32 || datatype == ncclFloat64;
    MPI_Op o = op == ncclSum || op == ncclAvg ? MPI_SUM : op == ncclProd ? MPI_PROD : op == ncclMax ? MPI_MAX : MPI_MIN;
    if ((int)op < 0 || op >= ncclNumOps || (op == ncclAvg && !floats))
        return err(comm, ncclInvalidArgument, "ncclAllReduce (emulated): unknown operation");
    if (count == 0) return ncclSuccess;
    if (count > (size_t)INT32_MAX) return err(comm, ncclInvalidArgument, "ncclAllReduce (emulated): count > 2^31");
    const ncclResult_t c = collective_checks(comm, "ncclAllReduce", sendbuff, recvbuff, count * size, stream);
    if (c != ncclSuccess) return c;
    const int rc = MPI_Allreduce(sendbuff == recvbuff ? MPI_IN_PLACE : sendbuff, recvbuff, (int)count, t, o, comm->comm);
    if (rc != MPI_SUCCESS) return err(comm, ncclSystemError, "ncclAllReduce (emulated): MPI_Allreduce failed");
    if (op == ncclAvg && datatype == ncclFloat32)
        for (size_t i = 0; i < count; i++) ((float *)recvbuff)[i] /= (float)comm->size;
    if (op == ncclAvg && datatype == ncclFloat64)
        for (size_t i = 0; i < count; i++) ((double *)recvbuff)[i] /= (double)comm->size;
    return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

const char *ncclGetLastError(ncclComm_t comm) { return comm ? comm->last : last_global; }

#endif /* MAGNA_HAVE_MPI */
