/* nccl.h under the CUDA emulator (magna_emu's include path only): the subset of NCCL that src/dist/dist.c calls,
 * with NCCL's names, types and numbers, implemented by src/cuda/emu/nccl_emu.c with MPI over the emulated
 * device memory (which is host memory). There is no GPU and no NCCL here: this lets `mpiexec -n 2 magna-emu
 * train --device cuda` run the data-parallel CUDA path in CI. Differences from NCCL: every call completes
 * before it returns (as every emulated launch does), and an allreduce blocks in MPI until every rank joins. */
#ifndef MAGNA_EMU_NCCL_H
#define MAGNA_EMU_NCCL_H

#include <stddef.h>

#include "../cuda_emu.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NCCL_MAJOR 2
#define NCCL_MINOR 28
#define NCCL_PATCH 0
#define NCCL_VERSION_CODE 22800

typedef struct ncclComm *ncclComm_t;
#define NCCL_COMM_NULL NULL
#define NCCL_UNIQUE_ID_BYTES 128
typedef struct {
    char internal[NCCL_UNIQUE_ID_BYTES];
} ncclUniqueId;

typedef enum {
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6,
    ncclInProgress = 7,
    ncclNumResults = 8
} ncclResult_t;

typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4, ncclNumOps = 5 } ncclRedOp_t;

typedef enum {
    ncclInt8 = 0, ncclChar = 0,
    ncclUint8 = 1,
    ncclInt32 = 2, ncclInt = 2,
    ncclUint32 = 3,
    ncclInt64 = 4,
    ncclUint64 = 5,
    ncclFloat16 = 6, ncclHalf = 6,
    ncclFloat32 = 7, ncclFloat = 7,
    ncclFloat64 = 8, ncclDouble = 8,
    ncclBfloat16 = 9,
    ncclNumTypes = 10
} ncclDataType_t;

ncclResult_t ncclGetVersion(int *version);
/* An id for ncclCommInitRank; rank 0 makes it and sends it to the others (over MPI). */
ncclResult_t ncclGetUniqueId(ncclUniqueId *id);
/* Collective over the MPI job: nranks must be its size and rank this process's rank in it. */
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclCommAbort(ncclComm_t comm);
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error);
ncclResult_t ncclCommCount(const ncclComm_t comm, int *count);
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank);
/* Float32, float64, int32 and int64; sum, prod, max, min (avg too, for floats). Both buffers must be device
 * memory (cudaMalloc'd), as NCCL's must. */
ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream);
/* In place when sendbuff == recvbuff (on the root); the same types as ncclAllReduce. */
ncclResult_t ncclBroadcast(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream);
/* Grouping changes nothing here: every call completes in order, the same order on every rank. */
ncclResult_t ncclGroupStart(void);
ncclResult_t ncclGroupEnd(void);
const char *ncclGetErrorString(ncclResult_t result);
const char *ncclGetLastError(ncclComm_t comm);

#ifdef __cplusplus
}
#endif
#endif
