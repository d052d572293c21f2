/* test_vecmath.c — the vectorised exp against exp in double, on every SIMD path this CPU has: relative
 * error within a few ulp over the whole float range, and the edges (underflow to 0, overflow to inf,
 * NaN stays NaN, -inf gives 0) exactly. */
#include "check.h"
#include "graph/internal.h"
#include "magna.h"

#include <math.h>
#include <stdlib.h>

/* GELU's forward x Phi(x) and derivative Phi(x) + x phi(x) against erf and exp in double, through the op. */
static void check_gelu(void) {
    enum { N = 100001 };
    magna_graph *g = magna_graph_new(1);
    magna_node *x = magna_param(g, "x", 1, (int64_t[]){N}, magna_init_zeros());
    magna_node *y = magna_gelu(g, x);
    magna_node *loss = magna_sum(g, y, MAGNA_ALL_AXES, false); /* dloss/dx = gelu'(x) */
    magna_graph_keep(g, y);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s", magna_graph_errmsg(g));
    float *xv = magna_node_data(x);
    for (int i = 0; i < N; i++) xv[i] = -12.0f + 24.0f * (float)i / (float)(N - 1);
    xv[0] = NAN, xv[1] = 0.0f, xv[2] = -0.0f;
    magna_graph_zero_grad(g);
    magna_graph_forward(g);
    magna_graph_backward(g);
    const float *yv = magna_node_data(y), *dv = magna_node_grad(x);
    double worst_y = 0, worst_d = 0;
    for (int i = 1; i < N; i++) {
        const double v = xv[i], cdf = 0.5 * (1.0 + erf(v / sqrt(2.0))), pdf = exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
        worst_y = fmax(worst_y, fabs(yv[i] - v * cdf) / fmax(1.0, fabs(v)));
        worst_d = fmax(worst_d, fabs(dv[i] - (cdf + v * pdf)));
    }
    printf("gelu max_err=%.2e (relative to max(1, |x|)) derivative max_abs_err=%.2e\n", worst_y, worst_d);
    CHECK(worst_y < 1e-6, "gelu forward error %.3g", worst_y);
    CHECK(worst_d < 1e-6, "gelu derivative error %.3g", worst_d);
    CHECK(isnan(yv[0]), "gelu(NaN) is %g, not NaN", yv[0]);
    magna_graph_free(g);
}

int main(void) {
    check_gelu();
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
