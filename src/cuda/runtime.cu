/* runtime.cu — the CUDA runtime calls the C side of the backend makes (src/cuda/ops.h), as plain C
 * functions: the glue and graph code stay C, compiled by gcc, and never see CUDA's headers. */
#include "compat.h"

#include "runtime.h"

extern "C" {

int cuda_malloc(void **p, size_t bytes) { return (int)cudaMalloc(p, bytes ? bytes : 1); }
int cuda_free(void *p) { return p ? (int)cudaFree(p) : 0; }
int cuda_host_alloc(void **p, size_t bytes) { return (int)cudaMallocHost(p, bytes ? bytes : 1); }
int cuda_host_free(void *p) { return p ? (int)cudaFreeHost(p) : 0; }

int cuda_h2d(void *dst, const void *src, size_t bytes, void *stream) {
    return bytes ? (int)cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream) : 0;
}
int cuda_d2h(void *dst, const void *src, size_t bytes, void *stream) {
    return bytes ? (int)cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, (cudaStream_t)stream) : 0;
}
int cuda_d2d(void *dst, const void *src, size_t bytes, void *stream) {
    return bytes ? (int)cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)stream) : 0;
}
int cuda_memset(void *dst, int value, size_t bytes, void *stream) {
    return bytes ? (int)cudaMemsetAsync(dst, value, bytes, (cudaStream_t)stream) : 0;
}

int cuda_stream_create(void **stream) {
    cudaStream_t s = nullptr;
    const cudaError_t e = cudaStreamCreate(&s);
    *stream = s;
    return (int)e;
}
int cuda_stream_destroy(void *stream) { return (int)cudaStreamDestroy((cudaStream_t)stream); }
int cuda_stream_sync(void *stream) { return (int)cudaStreamSynchronize((cudaStream_t)stream); }
int cuda_stream_query(void *stream) { return (int)cudaStreamQuery((cudaStream_t)stream); }

int cuda_event_create(void **event) {
    cudaEvent_t ev = nullptr;
    const cudaError_t e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    *event = ev;
    return (int)e;
}
int cuda_timing_event_create(void **event) {
    cudaEvent_t ev = nullptr;
    const cudaError_t e = cudaEventCreate(&ev);
    *event = ev;
    return (int)e;
}
int cuda_event_elapsed_ms(float *ms, void *start, void *end) {
    const cudaError_t e = cudaEventElapsedTime(ms, (cudaEvent_t)start, (cudaEvent_t)end);
    if (e != cudaSuccess) cudaGetLastError(); /* not a launch's error: the next launch's check must not see it */
    return (int)e;
}
int cuda_event_destroy(void *event) { return (int)cudaEventDestroy((cudaEvent_t)event); }
int cuda_event_record(void *event, void *stream) { return (int)cudaEventRecord((cudaEvent_t)event, (cudaStream_t)stream); }
int cuda_stream_wait_event(void *stream, void *event) {
    return (int)cudaStreamWaitEvent((cudaStream_t)stream, (cudaEvent_t)event, 0);
}

int cuda_device_count(int *count) {
    *count = 0;
    return (int)cudaGetDeviceCount(count);
}

static int wanted_local_rank = -1;
void cuda_want_device(int local_rank) { wanted_local_rank = local_rank; }
int cuda_use_device(int *device) {
    int count = 0;
    *device = 0;
    if (wanted_local_rank < 0) return (int)cudaGetDevice(device);
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) return (int)e;
    if (count < 1) return (int)cudaErrorNoDevice;
    *device = wanted_local_rank % count;
    return (int)cudaSetDevice(*device);
}
const char *cuda_error_string(int err) { return cudaGetErrorString((cudaError_t)err); }

} // extern "C"
