/* test_no_alloc.c — after the first step, a training step of a small MLP allocates nothing.
 *
 * This program defines malloc and friends itself, so every allocation in the process — magna's,
 * OpenBLAS's, libgomp's, oneDNN's — goes through the counters below before reaching glibc. Steps 2..N of
 * forward + backward + Adam must leave the counter at zero, for an MLP, a CNN, a transformer block and a
 * character LSTM.
 *
 * One exception, counted apart and printed: oneDNN 2.6 allocates a few small objects on every primitive
 * execution, freed before it returns: dnnl_primitive_execute copies its arguments into a std::unordered_map
 * (src/common/primitive_iface.cpp), and some kernels build std::function closures in their parallel loops,
 * on the worker threads too (about six allocations of 32-120 bytes a call, measured). No public API avoids
 * them. They are recognised by a return address inside libdnnl's code and must stay small (none over 1 KiB:
 * a buffer there would mean oneDNN took memory of its own instead of magna's workspace). */
#define _GNU_SOURCE
#include "check.h"
#include "magna.h"

#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <math.h>
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
enum { TRACED = 4, FRAMES = 8 };
static void *callers[TRACED][FRAMES]; /* who allocated, to name them when the test fails */
static int depth[TRACED];

/* libdnnl's executable code, when oneDNN is loaded (see the file comment) */
static char *dnnl_code_lo, *dnnl_code_hi;
static volatile long dnnl_allocations;
static volatile size_t dnnl_largest;

static bool from_dnnl(void) {
    if (!dnnl_code_lo) return false;
    void *frames[16];
    const int n = backtrace(frames, 16);
    for (int f = 2; f < n; f++)
        if ((char *)frames[f] >= dnnl_code_lo && (char *)frames[f] < dnnl_code_hi) return true;
    return false;
}

static int find_dnnl(struct dl_phdr_info *info, size_t size, void *data) {
    if (!info->dlpi_name || !strstr(info->dlpi_name, "libdnnl.so")) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        char *lo = (char *)info->dlpi_addr + ph->p_vaddr, *hi = lo + ph->p_memsz;
        if (!dnnl_code_lo || lo < dnnl_code_lo) dnnl_code_lo = lo;
        if (hi > dnnl_code_hi) dnnl_code_hi = hi;
    }
    return 1;
}

#define COUNT(size)                                                                                                  \
    do {                                                                                                             \
        if (counting) {                                                                                              \
            if (from_dnnl()) {                                                                                       \
                __atomic_fetch_add(&dnnl_allocations, 1, __ATOMIC_RELAXED);                                          \
                size_t old = dnnl_largest;                                                                           \
                while ((size) > old && !__atomic_compare_exchange_n(&dnnl_largest, &old, (size), false,              \
                                                                    __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {           \
                }                                                                                                    \
            } else {                                                                                                 \
                long k = __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED);                                      \
                if (k < TRACED) depth[k] = backtrace(callers[k], FRAMES);                                            \
            }                                                                                                        \
        }                                                                                                            \
    } while (0)

void *malloc(size_t n) {
    COUNT(n);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    COUNT(a * b);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    COUNT(n);
    return __libc_realloc(p, n);
}
void *aligned_alloc(size_t align, size_t n) {
    COUNT(n);
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

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

static magna_node *dense(magna_graph *g, magna_node *x, int64_t in, int64_t out, const char *name) {
    char w[32], b[32];
    snprintf(w, sizeof w, "%s.w", name), snprintf(b, sizeof b, "%s.b", name);
    return magna_add(g, magna_matmul(g, x, magna_param(g, w, 2, SHAPE(in, out), magna_init_xavier_uniform()), false,
                                     false),
                     magna_param(g, b, 1, SHAPE(out), magna_init_zeros()));
}

/* Fills input "x" (floats from U(-1, 1), or token ids) and labels "y" below `classes`. */
static void fill(magna_graph *g, int step, int classes) {
    magna_node *x = magna_graph_find(g, "x"), *y = magna_graph_find(g, "y");
    if (magna_node_data(x))
        for (int64_t i = 0; i < magna_node_numel(x); i++)
            magna_node_data(x)[i] = 2.0f * magna_rand_uniform(7, (uint64_t)step, (uint64_t)i) - 1.0f;
    else
        for (int64_t i = 0; i < magna_node_numel(x); i++)
            magna_node_data_i32(x)[i] = (int32_t)(magna_rand_u64(8, (uint64_t)step, (uint64_t)i) % (uint64_t)classes);
    for (int64_t i = 0; i < magna_node_numel(y); i++)
        magna_node_data_i32(y)[i] = (int32_t)(magna_rand_u64(9, (uint64_t)step, (uint64_t)i) % (uint64_t)classes);
}

/* Compiles, trains `steps` steps with Adam, and counts allocations after the first step. */
static void count_steps(const char *name, magna_graph *g, magna_node *loss, int classes, int steps, bool must_learn) {
    CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s: compile: %s", name, magna_graph_errmsg(g));
    magna_error err;
    magna_optimizer *opt = magna_optimizer_new(g, (magna_optimizer_opts){.kind = MAGNA_ADAM, .lr = 1e-2f}, &err);
    CHECK(opt != NULL, "optimizer: %s", err.message);
    allocations = 0, dnnl_allocations = 0, dnnl_largest = 0;
    const long start = 0;
    float first = 0, last = 0;
    for (int step = 0; step < steps; step++) {
        fill(g, must_learn ? 0 : step, classes); /* the learning check fits one fixed batch */
        if (step >= 1) counting = 1; /* the first step may warm up thread pools */
        magna_graph_zero_grad(g);
        magna_graph_forward(g);
        magna_graph_backward(g);
        magna_optimizer_step(opt);
        counting = 0;
        if (step == 0) first = magna_node_data(loss)[0];
        last = magna_node_data(loss)[0];
    }
    long made = allocations - start;
    printf("no_alloc: %-18s %d steps after the first, %ld allocations; loss %.4f -> %.4f\n", name, steps - 1, made,
           first, last);
    if (dnnl_allocations)
        printf("no_alloc: %-18s and %ld made by oneDNN's own code (%.1f a step, largest %zu bytes)\n", name,
               dnnl_allocations, (double)dnnl_allocations / (steps - 1), dnnl_largest);
    CHECK(made == 0, "%s: a training step allocated %ld times", name, made);
    CHECK(dnnl_largest <= 1024, "%s: oneDNN allocated %zu bytes in a step (a buffer, not its argument map)", name,
          dnnl_largest);
    for (long k = start; k < allocations && k < TRACED; k++) {
        printf("  allocation %ld:", k);
        for (int f = 1; f < depth[k]; f++) {
            Dl_info info;
            if (!dladdr(callers[k][f], &info)) continue;
            if (info.dli_sname)
                printf(" %s", info.dli_sname);
            else /* a static function: the offset, for addr2line -f -e FILE OFFSET */
                printf(" %s+%#lx", strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1 : info.dli_fname,
                       (unsigned long)((char *)callers[k][f] - (char *)info.dli_fbase));
        }
        printf("\n");
    }
    CHECK(isfinite(last) && (!must_learn || last < 0.5f * first), "%s: loss %.4f -> %.4f", name, first, last);
    magna_optimizer_free(opt);
    magna_graph_free(g);
}

int main(void) {
    void *warm[2];
    backtrace(warm, 2); /* loads libgcc's unwinder now, not inside a counted step */
    dl_iterate_phdr(find_dnnl, NULL);
    { /* MLP: one layer big enough for OpenBLAS's threaded path, the others on the small-GEMM path */
        magna_graph *g = magna_graph_new(42);
        magna_node *x = magna_input(g, "x", MAGNA_F32, 2, SHAPE(64, 200));
        magna_node *h = magna_dropout(g, magna_relu(g, dense(g, x, 200, 256, "d1")), 0.1f);
        h = magna_tanh(g, dense(g, h, 256, 32, "d2"));
        magna_node *loss = magna_cross_entropy(g, dense(g, h, 32, 5, "d3"), magna_input(g, "y", MAGNA_I32, 1, SHAPE(64)));
        count_steps("mlp", g, loss, 5, 20, true);
    }
    { /* CNN: conv, batch norm, pooling, flatten, dense */
        magna_graph *g = magna_graph_new(43);
        magna_node *x = magna_input(g, "x", MAGNA_F32, 4, SHAPE(16, 1, 28, 28));
        magna_conv2d_opts same = {.pad_h = 1, .pad_w = 1};
        magna_node *h = magna_conv2d(g, x, magna_param(g, "c1.w", 4, SHAPE(16, 1, 3, 3), magna_init_he_normal()),
                                     magna_param(g, "c1.b", 1, SHAPE(16), magna_init_zeros()), same);
        h = magna_batch_norm(g, h, magna_param(g, "bn.g", 1, SHAPE(16), magna_init_constant(1)),
                             magna_param(g, "bn.b", 1, SHAPE(16), magna_init_zeros()),
                             magna_state(g, "bn.mean", 1, SHAPE(16), magna_init_zeros()),
                             magna_state(g, "bn.var", 1, SHAPE(16), magna_init_constant(1)), 0.1f, 1e-5f);
        h = magna_max_pool2d(g, magna_relu(g, h), (magna_pool2d_opts){.kernel_h = 2, .kernel_w = 2});
        h = magna_conv2d(g, h, magna_param(g, "c2.w", 4, SHAPE(32, 16, 3, 3), magna_init_he_normal()), NULL, same);
        h = magna_avg_pool2d(g, magna_relu(g, h), (magna_pool2d_opts){.kernel_h = 2, .kernel_w = 2});
        magna_node *loss = magna_cross_entropy(g, dense(g, magna_flatten(g, h), 32 * 7 * 7, 10, "fc"),
                                               magna_input(g, "y", MAGNA_I32, 1, SHAPE(16)));
        count_steps("cnn", g, loss, 10, 6, false);
    }
    { /* transformer block: embedding, layer norm, attention, GELU MLP, residuals, next-token loss */
        enum { B = 8, T = 64, C = 64, V = 50 };
        magna_graph *g = magna_graph_new(44);
        magna_node *ids = magna_input(g, "x", MAGNA_I32, 2, SHAPE(B, T));
        magna_node *h = magna_embedding(g, magna_param(g, "emb", 2, SHAPE(V, C), magna_init_normal(0, 0.02f)), ids);
        magna_node *n1 = magna_layer_norm(g, h, magna_param(g, "ln1.g", 1, SHAPE(C), magna_init_constant(1)),
                                          magna_param(g, "ln1.b", 1, SHAPE(C), magna_init_zeros()), 1e-5f);
        magna_node *qkv = dense(g, n1, C, 3 * C, "qkv");
        magna_node *q = magna_slice(g, qkv, -1, 0, C, 1), *k = magna_slice(g, qkv, -1, C, 2 * C, 1);
        magna_node *v = magna_slice(g, qkv, -1, 2 * C, 3 * C, 1);
        h = magna_add(g, h, dense(g, magna_attention(g, q, k, v, 4, true), C, C, "proj"));
        magna_node *n2 = magna_layer_norm(g, h, NULL, NULL, 1e-5f);
        h = magna_add(g, h, dense(g, magna_gelu(g, dense(g, n2, C, 4 * C, "fc1")), 4 * C, C, "fc2"));
        magna_node *loss = magna_cross_entropy(g, dense(g, h, C, V, "head"),
                                               magna_input(g, "y", MAGNA_I32, 2, SHAPE(B, T)));
        count_steps("transformer block", g, loss, V, 6, false);
    }
    { /* character LSTM: embedding, a 2-layer LSTM with its final states carried, dense head, next-token loss */
        enum { B = 16, T = 32, E = 16, H = 64, V = 40 };
        magna_graph *g = magna_graph_new(45);
        magna_node *ids = magna_input(g, "x", MAGNA_I32, 2, SHAPE(B, T));
        magna_node *h = magna_layer_embedding(g, "emb", ids, V, E);
        magna_node *hf[2], *cf[2];
        h = magna_layer_lstm(g, "lstm", h, H, (magna_recurrent_opts){.num_layers = 2, .h_final = hf, .c_final = cf});
        magna_node *loss = magna_cross_entropy(g, magna_layer_dense(g, "head", h, V, (magna_dense_opts){0}),
                                               magna_input(g, "y", MAGNA_I32, 2, SHAPE(B, T)));
        magna_graph_keep(g, hf[1]), magna_graph_keep(g, cf[1]);
        count_steps("char lstm", g, loss, V, 6, false);
    }
    return check_finish("test_no_alloc");
}
