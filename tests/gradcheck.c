/* gradcheck.c — the finite-difference harness (see gradcheck.h) and the case helpers. */
#include "gradcheck.h"
#include "graph/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gc_randint(uint64_t seed, uint64_t counter, int lo, int hi) {
    return lo + (int)(magna_rand_u64(seed, 0x5eed, counter) % (uint64_t)(hi - lo + 1));
}

bool gc_params_through_op;

magna_node *gc_param(magna_graph *g, const char *name, int ndim, const int64_t *shape, float lo, float hi) {
    magna_node *p = magna_param(g, name, ndim, shape, magna_init_uniform(lo, hi));
    return gc_params_through_op ? magna_scale(g, p, 1.0f) : p;
}

/* Through magna_node_data: on a CUDA graph that is the host copy the next forward uploads. */
void gc_fill_input(magna_node *n, uint64_t seed, float lo, float hi) {
    if (!n || !n->value) return;
    int32_t *iv = n->dtype == MAGNA_I32 ? magna_node_data_i32(n) : NULL;
    float *fv = n->dtype == MAGNA_I32 ? NULL : magna_node_data(n);
    for (int64_t i = 0; i < n->numel; i++) {
        if (iv)
            iv[i] = (int32_t)lo + (int32_t)(magna_rand_u64(seed, (uint64_t)n->id, (uint64_t)i) %
                                            (uint64_t)((int64_t)hi - (int64_t)lo + 1));
        else
            fv[i] = lo + (hi - lo) * magna_rand_uniform(seed, (uint64_t)n->id, (uint64_t)i);
    }
}

void gc_param_away_from_zero(magna_node *p, float margin) {
    float *v = p ? magna_node_data(p) : NULL;
    for (int64_t i = 0; p && v && i < p->numel; i++)
        if (fabsf(v[i]) < margin) v[i] = v[i] < 0 ? v[i] - margin : v[i] + margin;
}

/* Values 0.05 apart in a random order: no two within a finite-difference step of each other. */
void gc_param_distinct(magna_node *p, uint64_t seed) {
    float *v = p ? magna_node_data(p) : NULL;
    if (!p || !v) return;
    const int64_t n = p->numel;
    for (int64_t i = 0; i < n; i++) v[i] = 0.05f * (float)(i - n / 2);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(magna_rand_u64(seed, 77, (uint64_t)i) % (uint64_t)(i + 1));
        float t = v[i];
        v[i] = v[j], v[j] = t;
    }
}

static double weighted_sum(const magna_node *out, const float *r) {
    double s = 0;
    for (int64_t i = 0; i < out->numel; i++) s += (double)fval(out)[i] * r[i];
    return s;
}

enum { PINNED_STEP = 7, MAX_CHECKS_PER_PARAM = 48 };

/* Returns 0 when the case passes. Marks every op the case compiled in `seen`. */
static int run_case(const gc_case *c, uint64_t seed, bool *seen) {
    const double atol = c->atol > 0 ? c->atol : 5e-3, rtol = c->rtol > 0 ? c->rtol : 2e-2;
    const double h = c->step > 0 ? c->step : 1e-2;
    magna_graph *g = magna_graph_new(seed);
    magna_node *out = c->build(g, seed);
    if (!out || magna_graph_compile(g, out) != MAGNA_OK) {
        printf("gradcheck %-30s seed=%llu FAILED to build: %s\n", c->name, (unsigned long long)seed,
               magna_graph_errmsg(g));
        magna_graph_free(g);
        return 1;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        magna_node *n = g->nodes[i];
        if (n->live && n->kind == NODE_OP) seen[n->op] = true;
        if (n->kind == NODE_INPUT && n->dtype == MAGNA_F32) gc_fill_input(n, seed, -1, 1);
    }
    if (c->fill) c->fill(g, seed);

    float *r = malloc((size_t)out->numel * sizeof *r);
    size_t np;
    magna_graph_grads(g, &np);
    float *analytic = malloc((np + 1) * sizeof *analytic);
    for (int64_t i = 0; i < out->numel; i++) r[i] = 2.0f * magna_rand_uniform(seed, 99, (uint64_t)i) - 1.0f;

    int failures = 0, checked = 0;
    double max_err = 0, max_num = 0;
    magna_graph_set_rng_step(g, PINNED_STEP);
    if (magna_graph_forward(g) != MAGNA_OK) {
        printf("gradcheck %-30s seed=%llu FAILED forward: %s\n", c->name, (unsigned long long)seed,
               magna_graph_errmsg(g));
        failures++;
        goto done;
    }
    magna_graph_zero_grad(g);
    magna_graph_backward_seeded(g, r);
    memcpy(analytic, g->grads, np * sizeof *analytic);

    for (int k = 0; k < g->n_param_nodes; k++) {
        magna_node *p = g->param_nodes[k];
        int64_t count = p->numel < MAX_CHECKS_PER_PARAM ? p->numel : MAX_CHECKS_PER_PARAM;
        for (int64_t t = 0; t < count; t++) {
            int64_t e = p->numel <= MAX_CHECKS_PER_PARAM ? t
                                                         : (int64_t)(magna_rand_u64(seed, 1234 + k, (uint64_t)t) %
                                                                     (uint64_t)p->numel);
            float *v = fval(p) + e, orig = *v;
            *v = (float)(orig + h);
            magna_graph_set_rng_step(g, PINNED_STEP);
            magna_graph_forward(g);
            double lp = weighted_sum(out, r);
            *v = (float)(orig - h);
            magna_graph_set_rng_step(g, PINNED_STEP);
            magna_graph_forward(g);
            double lm = weighted_sum(out, r);
            *v = orig;
            /* the step actually taken in float32, not the one asked for */
            double num = (lp - lm) / ((double)(float)(orig + h) - (double)(float)(orig - h));
            double ana = analytic[p->offset + e];
            double err = fabs(ana - num);
            checked++;
            if (fabs(num) > max_num) max_num = fabs(num);
            if (err > max_err) max_err = err;
            if (err > atol + rtol * fabs(num)) {
                if (failures < 5)
                    printf("  %s: param '%s' element %lld: analytic %.6g numeric %.6g\n", c->name, p->name,
                           (long long)e, ana, num);
                failures++;
            }
        }
    }
    if (max_num < 1e-6) {
        printf("  %s: every numeric gradient is zero: the case checks nothing\n", c->name);
        failures++;
    }
done:;
    char buf[SHAPE_STR_MAX];
    printf("gradcheck %-30s seed=%llu out=%-16s checked=%-4d max_abs_err=%.2e %s\n", c->name,
           (unsigned long long)seed, shape_str(out, buf, sizeof buf), checked, max_err, failures ? "FAILED" : "ok");
    free(r);
    free(analytic);
    magna_graph_free(g);
    return failures ? 1 : 0;
}

int gc_run_all(const gc_case *const *tables, int n_tables, int seeds) {
    bool seen[OP_COUNT] = {false};
    int failed = 0, passed = 0;
    for (int t = 0; t < n_tables; t++)
        for (const gc_case *c = tables[t]; c->name; c++)
            for (int s = 1; s <= seeds; s++) {
                if (run_case(c, (uint64_t)s * 1000 + 17, seen))
                    failed++;
                else
                    passed++;
            }
    int missing = 0;
    for (int op = 1; op < OP_COUNT; op++)
        if (!seen[op]) {
            printf("gradcheck: op '%s' has no gradient-check case\n", magna_op_table[op]->name);
            missing++;
        }
    printf("gradcheck: %d ops covered, %d missing\n", OP_COUNT - 1 - missing, missing);
    printf("%d passed, %d failed\n", passed, failed + missing);
    return failed || missing ? 1 : 0;
}
