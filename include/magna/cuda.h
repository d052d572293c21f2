/* magna/cuda.h — the CUDA backend: whether this build has it and whether this machine can run it.
 *
 * The backend is being built (issue 10); today it offers the device query and the clear error every
 * entry point gives when CUDA is asked for where it cannot run:
 *
 *   char why[256];
 *   if (!magna_cuda_available(why, sizeof why)) fprintf(stderr, "%s\n", why);
 *
 * A build without CUDA (CMake found no nvcc, or MAGNA_WITH_CUDA=OFF) has the same functions: they say
 * "this build has no CUDA". */
#ifndef MAGNA_CUDA_H
#define MAGNA_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum magna_device { MAGNA_DEVICE_CPU = 0, MAGNA_DEVICE_CUDA = 1 } magna_device;

/* True when the library was compiled with the CUDA backend. */
bool magna_cuda_built(void);
/* True when this build has CUDA and the driver reports at least one device; otherwise false, with a
 * one-line reason (no CUDA build, no driver, no device) copied into why (when why is not NULL and n > 0). */
bool magna_cuda_available(char *why, size_t n);
/* "cpu" or "cuda" to a device; MAGNA_ERR_ARG for anything else. */
magna_status magna_device_parse(const char *name, magna_device *device, magna_error *err);
/* MAGNA_OK when `device` can run here; MAGNA_ERR_UNSUPPORTED with the reason otherwise. Every entry
 * point that takes a device calls it first, so asking for CUDA fails the same way everywhere. */
magna_status magna_device_check(magna_device device, magna_error *err);

#ifdef __cplusplus
}
#endif

#endif
