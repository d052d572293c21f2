/* check.h — the in-tree test helper: CHECK records a failure with file and line and carries on;
 * check_finish prints the closing line CI reads ("N passed, N failed") and returns the exit code. */
#ifndef MAGNA_TEST_CHECK_H
#define MAGNA_TEST_CHECK_H

#include <stdio.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                                                             \
    do {                                                                                                             \
        if (cond) {                                                                                                  \
            check_passed++;                                                                                          \
        } else {                                                                                                     \
            check_failed++;                                                                                          \
            printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                                   \
            printf(__VA_ARGS__);                                                                                     \
            printf("\n");                                                                                            \
        }                                                                                                            \
    } while (0)

static inline int check_finish(const char *suite) {
    printf("%s: %d passed, %d failed\n", suite, check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
