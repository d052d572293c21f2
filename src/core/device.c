/* device.c — which devices this build and this machine can run on (include/magna/cuda.h).
 * With CUDA built (MAGNA_HAVE_CUDA) the device count comes from cudart; a machine without a driver or a
 * GPU answers with a reason, never a crash. Without it every question says "this build has no CUDA". In
 * magna_emu (MAGNA_CUDA_EMU: the CUDA backend run by the CPU emulator, src/cuda/emu) there is always one
 * device, the emulated one. */
#include "graph/internal.h"

#include <stdio.h>
#include <string.h>

#ifdef MAGNA_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

static void set_why(char *why, size_t n, const char *msg) {
    if (why && n > 0) snprintf(why, n, "%s", msg);
}

bool magna_cuda_built(void) {
#ifdef MAGNA_HAVE_CUDA
    return true;
#else
    return false;
#endif
}

bool magna_cuda_available(char *why, size_t n) {
#if defined(MAGNA_CUDA_EMU)
    set_why(why, n, "emulated CUDA device (CPU)");
    return true;
#elif defined(MAGNA_HAVE_CUDA)
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    char msg[256];
    if (e == cudaSuccess && count > 0) {
        snprintf(msg, sizeof msg, "%d CUDA device%s", count, count == 1 ? "" : "s");
        set_why(why, n, msg);
        return true;
    }
    if (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice || (e == cudaSuccess && count == 0))
        snprintf(msg, sizeof msg, "no CUDA device found on this machine (%s)",
                 e == cudaSuccess ? "the driver reports 0 devices"
                 : e == cudaErrorNoDevice ? "the driver reports none"
                                          : "no NVIDIA driver: libcuda is missing or older than this build's CUDA");
    else
        snprintf(msg, sizeof msg, "no usable CUDA device: cudaGetDeviceCount failed: %s", cudaGetErrorString(e));
    cudaGetLastError(); /* the query's error must not stick to a later call */
    set_why(why, n, msg);
    return false;
#else
    set_why(why, n, "this build has no CUDA: install the CUDA toolkit (nvcc) and rebuild, or use the CPU");
    return false;
#endif
}

magna_status magna_device_parse(const char *name, magna_device *device, magna_error *err) {
    if (name && strcmp(name, "cpu") == 0) {
        *device = MAGNA_DEVICE_CPU;
        return MAGNA_OK;
    }
    if (name && strcmp(name, "cuda") == 0) {
        *device = MAGNA_DEVICE_CUDA;
        return MAGNA_OK;
    }
    return magna_error_set(err, MAGNA_ERR_ARG, "unknown device '%s' (expected cpu or cuda)", name ? name : "(null)");
}

magna_status magna_device_check(magna_device device, magna_error *err) {
    if (device == MAGNA_DEVICE_CPU) return MAGNA_OK;
    if (device != MAGNA_DEVICE_CUDA) return magna_error_set(err, MAGNA_ERR_ARG, "unknown device %d", (int)device);
    char why[256];
    if (!magna_cuda_available(why, sizeof why))
        return magna_error_set(err, MAGNA_ERR_UNSUPPORTED, "cannot run on cuda: %s", why);
    return MAGNA_OK;
}
