/* test_no_alloc.c — after the first step, a training step of a small MLP allocates nothing.
 *
 * This program defines malloc and friends itself, so every allocation in the process — magna's,
 * OpenBLAS's, libgomp's — goes through the counters below before reaching glibc. Steps 2..N of
 * forward + backward + Adam must leave the counter at zero. */
#define _GNU_SOURCE
#include "check.h"
#include "magna.h"

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile int counting;
static volatile long allocations;
static void *callers[16]; /* who allocated, to name them when the test fails */

#define COUNT()                                                                                                      \
    do {                                                                                                             \
        if (counting) {                                                                                              \
            long k = __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED);                                          \
            if (k < 16) callers[k] = __builtin_return_address(0);                                                    \
        }                                                                                                            \
    } while (0)

void *malloc(size_t n) {
    COUNT();
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    COUNT();
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    COUNT();
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t align, size_t n) {
    COUNT();
    return __libc_memalign(align, n);
}
void *memalign(size_t align, size_t n) { return aligned_alloc(align, n); }
int posix_memalign(void **out, size_t align, size_t n) {
    void *p = aligned_alloc(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void free(void *p) { __libc_free(p); }

int main(void) {
    /* one layer big enough for OpenBLAS, the others on the small-GEMM path */
    enum { B = 64, D = 200, H1 = 256, H2 = 32, C = 5, STEPS = 20 };
    magna_graph *g = magna_graph_new(42);
    magna_node *x = magna_input(g, "x", MAGNA_F32, 2, (int64_t[]){B, D});
    magna_node *y = magna_input(g, "y", MAGNA_I32, 1, (int64_t[]){B});
    magna_node *h = magna_relu(g, magna_add(g, magna_matmul(g, x, magna_param(g, "w1", 2, (int64_t[]){D, H1},
                                                                             magna_init_he_uniform()), false, false),
                                            magna_param(g, "b1", 1, (int64_t[]){H1}, magna_init_zeros())));
    h = magna_dropout(g, h, 0.1f);
    h = magna_tanh(g, magna_add(g, magna_matmul(g, h, magna_param(g, "w2", 2, (int64_t[]){H1, H2},
                                                                  magna_init_xavier_uniform()), false, false),
                                magna_param(g, "b2", 1, (int64_t[]){H2}, magna_init_zeros())));
    magna_node *logits = magna_add(g, magna_matmul(g, h, magna_param(g, "w3", 2, (int64_t[]){H2, C},
                                                                      magna_init_xavier_uniform()), false, false),
                                   magna_param(g, "b3", 1, (int64_t[]){C}, magna_init_zeros()));
    magna_node *loss = magna_cross_entropy(g, logits, y);
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "compile: %s", magna_graph_errmsg(g));
    magna_error err;
    magna_optimizer *opt = magna_optimizer_new(g, (magna_optimizer_opts){.kind = MAGNA_ADAM, .lr = 1e-2f}, &err);
    CHECK(opt != NULL, "optimizer: %s", err.message);

    /* a learnable problem: the class is the index of the largest of the first C features */
    float *xd = magna_node_data(x);
    int32_t *yd = magna_node_data_i32(y);
    float first = 0, last = 0;
    for (int step = 0; step < STEPS; step++) {
        for (int i = 0; i < B; i++) {
            int best = 0;
            for (int j = 0; j < D; j++) {
                xd[i * D + j] = 2.0f * magna_rand_uniform(7, (uint64_t)step, (uint64_t)(i * D + j)) - 1.0f;
                if (j < C && xd[i * D + j] > xd[i * D + best]) best = j;
            }
            yd[i] = best;
        }
        long before = allocations;
        if (step >= 1) counting = 1; /* the first step may warm up thread pools */
        magna_graph_zero_grad(g);
        magna_graph_forward(g);
        magna_graph_backward(g);
        magna_optimizer_step(opt);
        counting = 0;
        if (allocations != before) printf("step %d allocated %ld times\n", step, allocations - before);
        if (step == 0) first = magna_node_data(loss)[0];
        last = magna_node_data(loss)[0];
    }
    printf("no_alloc: %d steps after the first, %ld allocations; loss %.4f -> %.4f\n", STEPS - 1, allocations, first,
           last);
    CHECK(allocations == 0, "a training step allocated %ld times", allocations);
    for (long k = 0; k < allocations && k < 16; k++) {
        Dl_info info;
        if (dladdr(callers[k], &info))
            printf("  allocation %ld from %s in %s\n", k, info.dli_sname ? info.dli_sname : "?", info.dli_fname);
    }
    CHECK(last < first, "the MLP did not learn: loss %.4f -> %.4f", first, last);
    magna_optimizer_free(opt);
    magna_graph_free(g);
    return check_finish("test_no_alloc");
}
