/* core.c — status and dtype names, and the counter-based random numbers. */
#include "../graph/internal.h"
#include "../cuda/elementwise_math.h"

#include <math.h>
#include <stdio.h>

const char *magna_status_name(magna_status s) {
    switch (s) {
    case MAGNA_OK: return "ok";
    case MAGNA_ERR_ARG: return "bad argument";
    case MAGNA_ERR_SHAPE: return "shape mismatch";
    case MAGNA_ERR_DTYPE: return "wrong dtype";
    case MAGNA_ERR_NOMEM: return "out of memory";
    case MAGNA_ERR_IO: return "i/o error";
    case MAGNA_ERR_FORMAT: return "malformed file";
    case MAGNA_ERR_RANGE: return "value out of range";
    case MAGNA_ERR_STATE: return "call out of order";
    case MAGNA_ERR_UNSUPPORTED: return "unsupported";
    case MAGNA_ERR_NUMERIC: return "not a finite number";
    }
    return "unknown status";
}

size_t magna_dtype_size(magna_dtype d) {
    switch (d) {
    case MAGNA_F32: return 4;
    case MAGNA_I32: return 4;
    case MAGNA_BF16: return 2;
    case MAGNA_I8: return 1;
    }
    return 0;
}

const char *magna_dtype_name(magna_dtype d) {
    switch (d) {
    case MAGNA_F32: return "float32";
    case MAGNA_I32: return "int32";
    case MAGNA_BF16: return "bfloat16";
    case MAGNA_I8: return "int8";
    }
    return "unknown";
}

/* The counter-based generator: splitmix64's finaliser chained over (seed, stream, counter), no state to
 * carry, any element computable on its own. Written once in cuda/elementwise_math.h, so the CUDA kernels
 * (dropout) draw the same numbers. */
uint64_t magna_rand_u64(uint64_t seed, uint64_t stream, uint64_t counter) {
    return magna_em_rand_u64(seed, stream, counter);
}

float magna_rand_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
    return magna_em_rand_uniform(seed, stream, counter);
}

/* Box-Muller on the two 32-bit halves of one draw. */
float magna_rand_normal(uint64_t seed, uint64_t stream, uint64_t counter) {
    uint64_t x = magna_rand_u64(seed, stream, counter);
    double u1 = ((double)(x >> 32) + 1.0) / 4294967296.0; /* (0, 1] */
    double u2 = (double)(x & 0xffffffffu) / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

magna_status magna_error_set(magna_error *err, magna_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}
