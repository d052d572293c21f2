/* magna/core.h — status codes, dtypes, the runtime (threads, CPU features, BLAS) and the seeded RNG.
 *
 * Every function that can fail on user input returns a magna_status and leaves a message in words
 * with the object that owns it (magna_graph_errmsg) or in a magna_error the caller passes. Nothing in
 * magna aborts on bad input. */
#ifndef MAGNA_CORE_H
#define MAGNA_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MAGNA_VERSION "0.1.0"
#define MAGNA_MAX_DIMS 8

typedef enum magna_status {
    MAGNA_OK = 0,
    MAGNA_ERR_ARG,         /* an impossible argument or option */
    MAGNA_ERR_SHAPE,       /* shapes that do not fit the op */
    MAGNA_ERR_DTYPE,       /* a dtype the op does not take */
    MAGNA_ERR_NOMEM,       /* allocation failed */
    MAGNA_ERR_IO,          /* open/read/write failed */
    MAGNA_ERR_FORMAT,      /* malformed file */
    MAGNA_ERR_RANGE,       /* a value out of range: class index, token id */
    MAGNA_ERR_STATE,       /* a call out of order, e.g. forward before compile */
    MAGNA_ERR_UNSUPPORTED, /* a feature this build does not have */
    MAGNA_ERR_NUMERIC,     /* NaN or Inf where a finite number is needed */
} magna_status;

const char *magna_status_name(magna_status status);

/* float32 is the reference dtype; int32 carries class indices and token ids. bf16 and int8 are
 * reserved so that the dtype and kernel dispatch stay open for mixed precision and quantization. */
typedef enum magna_dtype { MAGNA_F32 = 0, MAGNA_I32, MAGNA_BF16, MAGNA_I8 } magna_dtype;

size_t magna_dtype_size(magna_dtype dtype);
const char *magna_dtype_name(magna_dtype dtype);

/* The error of a call that has no owning object (file readers, the runtime). */
typedef struct magna_error {
    magna_status status;
    char message[512];
} magna_error;

/* ---- runtime ---------------------------------------------------------------------------------- */

typedef struct magna_cpu_features {
    bool avx2, fma, avx512f, avx512bw, avx512vl, avx512_bf16, avx512_fp16, amx_bf16, amx_int8;
    char vendor[16];
} magna_cpu_features;

/* What this CPU can do, read with cpuid at run time (never fixed at build time). */
magna_cpu_features magna_cpu_detect(void);

/* Loads OpenBLAS (choosing its AVX-512 kernels on CPUs that have them, which Debian's build misses on
 * AMD Zen 4/5) and sets the thread count. Called by magna_graph_new; safe to call more than once. */
magna_status magna_runtime_init(magna_error *err);

/* One knob for both our OpenMP loops and OpenBLAS, so the two never oversubscribe the cores. */
void magna_set_threads(int threads);
int magna_get_threads(void);

/* One line naming the version, CPU features, BLAS library and kernel core, and thread count. */
const char *magna_runtime_info(void);

/* ---- random numbers --------------------------------------------------------------------------- */

/* Counter-based: the value depends only on (seed, stream, counter), so dropout masks, initial
 * weights and data order are the same after a resume, in any thread count, on any device. */
uint64_t magna_rand_u64(uint64_t seed, uint64_t stream, uint64_t counter);
float magna_rand_uniform(uint64_t seed, uint64_t stream, uint64_t counter); /* [0, 1) */
float magna_rand_normal(uint64_t seed, uint64_t stream, uint64_t counter);  /* N(0, 1) */

#ifdef __cplusplus
}
#endif
#endif
