/* args.h — the examples' number arguments, read whole: "abc", "12x", an empty string or a value outside
 * [lo, hi] is refused (the example prints its usage and exits 2) instead of silently becoming 0. */
#ifndef MAGNA_EXAMPLES_ARGS_H
#define MAGNA_EXAMPLES_ARGS_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

static inline bool arg_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    const long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* A seed: any non-negative integer that fits 64 bits. */
static inline bool arg_seed(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (!*s || *s == '-') return false;
    const unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) return false;
    *out = v;
    return true;
}

#endif
