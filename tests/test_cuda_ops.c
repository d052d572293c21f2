/* test_cuda_ops.c — every op on CUDA against the same op on the CPU, forward and backward.
 *
 * Each gradient-check case (tests/cases_*.c: every op of the library, with broadcasting edges, masks,
 * odd sizes) is built twice from the same seed, on a CPU graph and on a CUDA graph, given the same inputs,
 * run forward (training mode, the dropout counter pinned) and backward from the same random seed gradient.
 * The output, every param's gradient and every state (batch norm's running statistics) must agree:
 *     max |cuda - cpu| <= tol * max(1, max |cpu|)
 * with tol 1e-4 in float32 mode and 2e-2 in bf16 mode (bf16 operands keep 8 bits of mantissa).
 *
 * Then every case again with its params times 1 (gc_params_through_op): the ops' operands are activations, whose
 * gradients the op writes first and, where its CUDA backward can (magna_cuda_op.assigns), assigns instead of the
 * plan zeroing them; the CUDA side runs its step twice and the second, from an arena the first left dirty, is
 * compared (a gradient added into instead of assigned shows). Every op that assigns must be seen doing so.
 *
 * Under the emulator (test_cuda_ops_emu, every CI run) this checks the kernels' logic and indexing; on a
 * GPU (test_cuda_ops, `make gpu-check`) the real thing. Where there is no device it exits 77 (skipped).
 *   test_cuda_ops [--fp32|--bf16] [--seeds N] [--case NAME] */
#include "gradcheck.h"
#include "cuda/ops.h"
#include "graph/internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PINNED_STEP = 7 };

typedef struct diff {
    double max_err, max_ref;
} diff;

static void compare(diff *d, const float *got, const float *want, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]);
        if (!(e <= d->max_err)) d->max_err = isnan(e) ? INFINITY : e > d->max_err ? e : d->max_err;
        if (fabs((double)want[i]) > d->max_ref) d->max_ref = fabs((double)want[i]);
    }
}

static bool within(const diff *d, double tol) { return d->max_err <= tol * (d->max_ref > 1 ? d->max_ref : 1); }

/* Builds, compiles and fills one side. NULL (with the message printed) when it cannot. */
static magna_graph *build_side(const gc_case *c, uint64_t seed, bool cuda, bool bf16, magna_node **out, bool *missing) {
    magna_graph *g = magna_graph_new(seed);
    if (cuda && (magna_graph_set_device(g, MAGNA_DEVICE_CUDA) != MAGNA_OK ||
                 (bf16 && magna_graph_set_bf16(g, true) != MAGNA_OK))) {
        printf("%s: %s\n", c->name, magna_graph_errmsg(g));
        magna_graph_free(g);
        return NULL;
    }
    *out = c->build(g, seed);
    if (!*out || magna_graph_compile(g, *out) != MAGNA_OK) {
        if (missing) *missing = strstr(magna_graph_errmsg(g), "no CUDA implementation") != NULL;
        printf("cuda_ops %-30s seed=%llu %s: %s\n", c->name, (unsigned long long)seed,
               missing && *missing ? "MISSING" : "FAILED to build", magna_graph_errmsg(g));
        magna_graph_free(g);
        return NULL;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        magna_node *n = g->nodes[i];
        if (n->kind == NODE_INPUT && n->dtype == MAGNA_F32) gc_fill_input(n, seed, -1, 1);
    }
    if (c->fill) c->fill(g, seed);
    return g;
}

/* 0 passed, 1 failed, 2 the op has no CUDA implementation, 3 not built with activation operands (some ops take
 * only params there). seen: the ops run; assigned: the ops the plan had assign a gradient (both per op id). */
static int run_case(const gc_case *c, uint64_t seed, bool bf16, bool *seen, bool *assigned) {
    magna_node *out_c, *out_g;
    bool missing = false;
    magna_graph *gc = build_side(c, seed, false, false, &out_c, NULL);
    magna_graph *gg = gc ? build_side(c, seed, true, bf16, &out_g, &missing) : NULL;
    if (!gc || !gg) {
        magna_graph_free(gc), magna_graph_free(gg);
        return missing ? 2 : gc_params_through_op ? 3 : 1;
    }
    for (int i = 0; i < gg->n_nodes; i++)
        if (gg->nodes[i]->live && gg->nodes[i]->kind == NODE_OP) {
            seen[gg->nodes[i]->op] = true;
            if (gg->nodes[i]->grad_assign) assigned[gg->nodes[i]->op] = true;
        }
    const int64_t n_out = out_c->numel;
    size_t np, ns;
    magna_graph_params(gc, &np), magna_graph_states(gc, &ns);
    float *r = malloc((size_t)n_out * sizeof *r), *got = malloc((size_t)n_out * sizeof *got);
    for (int64_t i = 0; i < n_out; i++) r[i] = 2.0f * magna_rand_uniform(seed, 99, (uint64_t)i) - 1.0f;
    int failed = 0;
    diff dv = {0}, dg = {0}, ds = {0};
    if (gc_params_through_op) { /* a step on CUDA first, leaving its arena dirty (its states put back after) */
        float *states = magna_graph_states(gg, &ns), *before = malloc((ns + 1) * sizeof *before);
        if (states) memcpy(before, states, ns * sizeof *before);
        magna_graph_set_rng_step(gg, PINNED_STEP);
        magna_graph_zero_grad(gg);
        const bool ran = states && magna_graph_forward(gg) == MAGNA_OK && magna_graph_backward_seeded(gg, r) == MAGNA_OK &&
                         (states = magna_graph_states(gg, &ns)) != NULL;
        if (ran) memcpy(states, before, ns * sizeof *before);
        free(before);
        if (!ran) {
            printf("  %s: the first step failed: '%s'\n", c->name, magna_graph_errmsg(gg));
            failed = 1;
            goto done;
        }
    }
    magna_graph_set_rng_step(gc, PINNED_STEP), magna_graph_set_rng_step(gg, PINNED_STEP);
    if (magna_graph_forward(gc) != MAGNA_OK || magna_graph_forward(gg) != MAGNA_OK) {
        printf("  %s: forward failed: cpu '%s', cuda '%s'\n", c->name, magna_graph_errmsg(gc), magna_graph_errmsg(gg));
        failed = 1;
        goto done;
    }
    if (magna_node_read(out_g, got) != MAGNA_OK) {
        printf("  %s: reading the output: %s\n", c->name, magna_graph_errmsg(gg));
        failed = 1;
        goto done;
    }
    compare(&dv, got, fval(out_c), n_out);
    magna_graph_zero_grad(gc), magna_graph_zero_grad(gg);
    if (magna_graph_backward_seeded(gc, r) != MAGNA_OK || magna_graph_backward_seeded(gg, r) != MAGNA_OK) {
        printf("  %s: backward failed: cpu '%s', cuda '%s'\n", c->name, magna_graph_errmsg(gc), magna_graph_errmsg(gg));
        failed = 1;
        goto done;
    }
    const float *grads_g = magna_graph_grads(gg, NULL), *states_g = magna_graph_states(gg, NULL);
    if (!grads_g || !states_g) {
        printf("  %s: reading the gradients: %s\n", c->name, magna_graph_errmsg(gg));
        failed = 1;
        goto done;
    }
    compare(&dg, grads_g, magna_graph_grads(gc, NULL), (int64_t)np);
    compare(&ds, states_g, magna_graph_states(gc, NULL), (int64_t)ns);
    const double tol = bf16 ? 2e-2 : 1e-4;
    failed = !within(&dv, tol) || !within(&dg, tol) || !within(&ds, tol);
done:;
    char buf[SHAPE_STR_MAX];
    printf("cuda_ops %-30s seed=%llu %s%s out=%-16s value %.1e/%.1e grad %.1e/%.1e state %.1e %s\n", c->name,
           (unsigned long long)seed, bf16 ? "bf16" : "fp32", gc_params_through_op ? " x1" : "", shape_str(out_c, buf, sizeof buf), dv.max_err, dv.max_ref,
           dg.max_err, dg.max_ref, ds.max_err, failed ? "FAILED" : "ok");
    free(r), free(got);
    magna_graph_free(gc), magna_graph_free(gg);
    return failed;
}

int main(int argc, char **argv) {
    int seeds = 2;
    bool modes[2] = {true, true}; /* fp32, bf16 */
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--fp32") == 0) modes[1] = false;
        else if (strcmp(argv[i], "--bf16") == 0) modes[0] = false;
        else if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc) seeds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) only = argv[++i];
        else return fprintf(stderr, "usage: test_cuda_ops [--fp32|--bf16] [--seeds N] [--case NAME]\n"), 2;
    }
    char why[256];
    if (!magna_cuda_available(why, sizeof why)) {
        printf("test_cuda_ops: skipped: %s\n", why);
        return 77;
    }
    printf("test_cuda_ops: %s\n", why);
    const gc_case *const tables[] = {gc_cases_core, gc_cases_conv, gc_cases_sequence, gc_cases_recurrent};
    bool seen[OP_COUNT] = {false}, assigned[OP_COUNT] = {false};
    int passed = 0, failed = 0, missing_cases = 0, not_built = 0;
    for (int through = 0; through < 2; through++) { /* the params as they are, then times 1 (one seed) */
        gc_params_through_op = through;
        for (int m = 0; m < 2; m++) {
            if (!modes[m]) continue;
            for (size_t t = 0; t < sizeof tables / sizeof *tables; t++)
                for (const gc_case *c = tables[t]; c->name; c++) {
                    if (only && strcmp(only, c->name) != 0) continue;
                    for (int s = 1; s <= (through ? 1 : seeds); s++) {
                        const int r = run_case(c, (uint64_t)s * 1000 + 17, m == 1, seen, assigned);
                        passed += r == 0, failed += r == 1, missing_cases += r == 2, not_built += r == 3;
                    }
                }
        }
    }
    gc_params_through_op = false;
    int unassigned = 0;
    for (int op = 1; op < OP_COUNT && !only; op++)
        if (magna_cuda_op_table[op].assigns && !assigned[op]) {
            printf("test_cuda_ops: op '%s' assigns on CUDA, but no case had it assign a gradient\n", magna_op_table[op]->name);
            unassigned++;
        }
    int missing_ops = 0;
    for (int op = 1; op < OP_COUNT && !only; op++)
        if (!magna_cuda_op_table[op].forward || !magna_cuda_op_table[op].backward) {
            printf("test_cuda_ops: op '%s' has no CUDA implementation\n", magna_op_table[op]->name);
            missing_ops++;
        }
    printf("%d passed, %d failed, %d cases of ops without CUDA, %d ops without CUDA, %d cases not built with operands "
           "times 1, %d assigning ops never seen assigning\n",
           passed, failed, missing_cases, missing_ops, not_built, unassigned);
    return failed || missing_cases || missing_ops || unassigned || passed == 0 ? 1 : 0;
}
