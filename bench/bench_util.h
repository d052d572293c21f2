/* bench_util.h — what the C benchmarks share: a monotonic clock and sorting timings for their medians. */
#ifndef MAGNA_BENCH_UTIL_H
#define MAGNA_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

/* Seconds on the monotonic clock. */
static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* v[0..n) in increasing order (the median is then v[n / 2]). */
static inline void sort_doubles(double *v, int n) { qsort(v, (size_t)n, sizeof *v, bench_cmp_double); }

#endif
