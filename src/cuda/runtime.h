/* runtime.h — thin C wrappers of the CUDA runtime (src/cuda/runtime.cu) for the backend's C side, which
 * never includes CUDA's headers. cudaError_t as int, 0 = success. Copies and sets are asynchronous on
 * `stream`; host memory in copies should be pinned (cuda_host_alloc) for real overlap. */
#ifndef MAGNA_CUDA_RUNTIME_H
#define MAGNA_CUDA_RUNTIME_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

int cuda_malloc(void **p, size_t bytes);
int cuda_free(void *p);
int cuda_host_alloc(void **p, size_t bytes);
int cuda_host_free(void *p);
int cuda_h2d(void *dst, const void *src, size_t bytes, void *stream);
int cuda_d2h(void *dst, const void *src, size_t bytes, void *stream);
int cuda_d2d(void *dst, const void *src, size_t bytes, void *stream);
int cuda_memset(void *dst, int value, size_t bytes, void *stream);
int cuda_stream_create(void **stream);
int cuda_stream_destroy(void *stream);
int cuda_stream_sync(void *stream);
/* 0 when everything queued on the stream is done, cudaErrorNotReady (600) while work remains: polling */
int cuda_stream_query(void *stream);
/* Events (no timing) order two streams: what `stream` queues after cuda_stream_wait_event runs after what the
 * other stream had queued when cuda_event_record was called */
int cuda_event_create(void **event);
int cuda_event_destroy(void *event);
int cuda_event_record(void *event, void *stream);
int cuda_stream_wait_event(void *stream, void *event);
/* Events that time (the profiler, MAGNA_PROFILE): *ms, the GPU's time between two recorded on one stream, both
 * done (the stream synchronised after them) */
int cuda_timing_event_create(void **event);
int cuda_event_elapsed_ms(float *ms, void *start, void *end);
/* Data parallel: this process's rank among those on its machine; the graphs compiled after it run on device
 * local_rank % (devices here), chosen (cudaSetDevice) by cuda_use_device before a graph's stream is made. */
void cuda_want_device(int local_rank);
int cuda_device_count(int *count);
/* The device cuda_want_device asked for made current (nothing when it was not called); *device: which. */
int cuda_use_device(int *device);
const char *cuda_error_string(int err);

/* device -> host, then waits for the stream: a value the host needs now (a bad-data flag, a norm, a read) */
static inline int cuda_fetch(void *host, const void *device, size_t bytes, void *stream) {
    const int e = cuda_d2h(host, device, bytes, stream);
    return e ? e : cuda_stream_sync(stream);
}

#ifdef __cplusplus
}
#endif

#endif
