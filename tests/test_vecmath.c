/* test_vecmath.c — the vectorised exp against exp in double, on every SIMD path this CPU has: relative
 * error within a few ulp over the whole float range, and the edges (underflow to 0, overflow to inf,
 * NaN stays NaN, -inf gives 0) exactly. */
#include "check.h"
#include "graph/internal.h"

#include <math.h>
#include <stdlib.h>

int main(void) {
    enum { N = 200003 }; /* odd, so every path also runs its tail */
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    for (int i = 0; i < N; i++) x[i] = -110.0f + 200.0f * (float)i / (float)N;
    const float edges[] = {0.0f, -0.0f, 1.0f, -1.0f, 88.72f, 88.73f, 100.0f, -87.33f, -87.34f, -103.9f, -104.0f,
                           -200.0f, INFINITY, -INFINITY, NAN, 1e-8f, -1e-8f};
    const int n_edges = (int)(sizeof edges / sizeof *edges);
    for (int i = 0; i < n_edges; i++) x[i * 97] = edges[i];
    const char *names[] = {"avx512", "avx2", "scalar"};
    for (int path = 0; path < 3; path++) {
        magna_vexp_path(path, y, x, N);
        double worst = 0;
        int bad_edges = 0;
        for (int i = 0; i < N; i++) {
            double ref = exp((double)x[i]);
            if (isnan(x[i])) {
                bad_edges += !isnan(y[i]);
            } else if (ref > 3.4028234663852886e38) {
                bad_edges += !(isinf(y[i]) && y[i] > 0);
            } else if (ref < 1.1754943508222875e-38) { /* denormal range: absolute error */
                bad_edges += fabs(y[i] - ref) > 1e-39;
            } else {
                double rel = fabs(y[i] - ref) / ref;
                if (rel > worst) worst = rel;
            }
        }
        CHECK(worst < 4e-7, "%s: relative error %.3g", names[path], worst);
        CHECK(bad_edges == 0, "%s: %d edge values wrong", names[path], bad_edges);
        printf("vexp %-6s max_rel_err=%.2e edges_wrong=%d\n", names[path], worst, bad_edges);
    }
    magna_vexp(y, x, N); /* the chosen path, in place too */
    magna_vexp(x, x, N);
    int differ = 0;
    for (int i = 0; i < N; i++) differ += !(x[i] == y[i] || (isnan(x[i]) && isnan(y[i])));
    CHECK(differ == 0, "in place differs at %d elements", differ);
    free(x), free(y);
    return check_finish("test_vecmath");
}
