/* args.h — the examples' number arguments, read whole: "abc", "12x", an empty string or a value outside
 * [lo, hi] is refused (the example prints its usage and exits 2) instead of silently becoming 0. */
#ifndef MAGNA_EXAMPLES_ARGS_H
#define MAGNA_EXAMPLES_ARGS_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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

/* The table examples' positional [epochs] [seed]: argument `pos` 1 is the epoch count (1..1e6), 2 the seed.
 * False, with a line on stderr naming the program and the value, when it does not parse. */
static inline bool arg_epochs_or_seed(const char *prog, int pos, const char *s, int *epochs, uint64_t *seed) {
    long long e;
    const bool ok = pos == 1 ? arg_int(s, 1, 1000000, &e) : arg_seed(s, seed);
    if (!ok) {
        fprintf(stderr, "%s: '%s' is not a valid %s\n", prog, s, pos == 1 ? "epoch count" : "seed");
        return false;
    }
    if (pos == 1) *epochs = (int)e;
    return true;
}

#endif
