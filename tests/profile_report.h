/* profile_report.h — for the tests of the op profiler (MAGNA_PROFILE, src/graph/run.c): stderr caught into a
 * string while a graph is freed, and the report's rows read back. */
#ifndef MAGNA_TEST_PROFILE_REPORT_H
#define MAGNA_TEST_PROFILE_REPORT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* stderr into a temporary file from here to stderr_caught(saved), which returns what was written (malloc'd,
 * NULL if the capture failed) and restores stderr */
static inline int stderr_catch(void) {
    char path[] = "/tmp/magna_stderr_XXXXXX";
    fflush(stderr);
    const int fd = mkstemp(path), saved = dup(2);
    if (fd < 0 || saved < 0 || dup2(fd, 2) < 0) {
        if (fd >= 0) close(fd);
        if (saved >= 0) close(saved);
        return -1;
    }
    unlink(path);
    close(fd); /* fd 2 holds the file now */
    return saved;
}

static inline char *stderr_caught(int saved) {
    if (saved < 0) return NULL;
    fflush(stderr);
    const off_t size = lseek(2, 0, SEEK_END);
    char *text = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (text && pread(2, text, (size_t)size, 0) != (ssize_t)size) free(text), text = NULL;
    if (text) text[size] = '\0';
    dup2(saved, 2);
    close(saved);
    return text;
}

typedef struct profile_row {
    long calls;
    double fwd_ms, bwd_ms, share, fwd_tflops; /* fwd_tflops: -1 where the row counts no work */
} profile_row;

/* The report's row named `name` ("matmul", "(zero activation grads)", ...): false when it has none. The name is
 * followed by blanks and the calls ("matmul" is not "matmul (fused)"). */
static inline bool profile_row_of(const char *report, const char *name, profile_row *row) {
    char key[80];
    snprintf(key, sizeof key, "\n  %s ", name);
    for (const char *at = report ? strstr(report, key) : NULL; at; at = strstr(at + 1, key)) {
        const char *p = at + strlen(key);
        while (*p == ' ') p++;
        int used = 0;
        if (*p < '0' || *p > '9' ||
            sscanf(p, "%ld %lf %lf %lf%%%n", &row->calls, &row->fwd_ms, &row->bwd_ms, &row->share, &used) != 4)
            continue;
        p += used;
        row->fwd_tflops = -1;
        while (*p == ' ') p++;
        if (*p != '\n' && *p != '\0') sscanf(p, "%lf", &row->fwd_tflops);
        return true;
    }
    return false;
}

/* The milliseconds the report's first line says its rows add up to, or -1 */
static inline double profile_total_ms(const char *report) {
    const char *at = report ? strstr(report, "magna profile (MAGNA_PROFILE): ") : NULL;
    double ms = -1;
    if (at) sscanf(at + strlen("magna profile (MAGNA_PROFILE): "), "%lf", &ms);
    return ms;
}

#endif
