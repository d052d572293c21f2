/* magna/cuda.h — the CUDA backend: whether this build has it, whether this machine can run it, and
 * running a graph on it.
 *
 *   char why[256];
 *   if (!magna_cuda_available(why, sizeof why)) fprintf(stderr, "%s\n", why);
 *   magna_graph_set_device(g, MAGNA_DEVICE_CUDA);   // before compile; then build, compile, run as usual
 *
 * A CUDA graph is planned like a CPU one (the same arena offsets) but holds its activations, params,
 * gradients and optimizer state in device memory. What the caller touches stays host memory: the inputs'
 * magna_node_data (uploaded by forward), kept nodes' (downloaded after it), and params/states through
 * magna_graph_params / magna_node_data, which refresh their host copy and upload it again before the device
 * next reads it. Other values and gradients: magna_node_read / magna_node_read_grad.
 *
 * A build without CUDA (CMake found no nvcc, or MAGNA_WITH_CUDA=OFF) has the same functions: they say
 * "this build has no CUDA". */
#ifndef MAGNA_CUDA_H
#define MAGNA_CUDA_H

#include <stdbool.h>
#include <stddef.h>

#include "core.h"
#include "graph.h"

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

/* Runs the graph on `device` (call before compile). MAGNA_ERR_UNSUPPORTED, with the reason, when the build
 * or the machine cannot; compile then also refuses a graph with an op that has no CUDA implementation. */
magna_status magna_graph_set_device(magna_graph *g, magna_device device);
magna_device magna_graph_device(const magna_graph *g);
/* bf16 mixed precision (before compile): on CUDA, matmuls, convolutions and attention take bf16 operands and
 * accumulate in float32; on the CPU, convolutions through oneDNN do so where the CPU has avx512_bf16 (else
 * they stay float32). Norms, softmax, losses, params and the optimizer stay float32. Off by default. */
magna_status magna_graph_set_bf16(magna_graph *g, bool on);
bool magna_graph_bf16(const magna_graph *g);
/* Copies a node's value (numel elements of its dtype) or gradient (float32) into dst, on any device. */
magna_status magna_node_read(magna_node *n, void *dst);
magna_status magna_node_read_grad(magna_node *n, float *dst);

#ifdef __cplusplus
}
#endif

#endif
