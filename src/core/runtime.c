/* runtime.c — CPU features, OpenBLAS loaded at run time, and the one thread-count knob.
 *
 * Why dlopen: Debian's OpenBLAS 0.3.21 does not recognise AMD Zen 4/5 and falls back to its AVX2
 * (Haswell) kernels at half the speed, unless OPENBLAS_CORETYPE is set before the library loads. A
 * library linked at build time is loaded before main() runs, too early to set it; loading it here, after
 * reading cpuid, lets magna pick the AVX-512 kernels on every CPU that has them. A user's own choice of
 * OPENBLAS_CORETYPE is always respected.
 *
 * Threads: magna owns them all. OpenBLAS runs single-threaded and magna_sgemm splits big products
 * over its own OpenMP team, one slice of C per thread. Two reasons: OpenBLAS's threaded GEMM mallocs a
 * job array on every call (Debian builds it for many CPUs), and a training step must not allocate;
 * and one pool of threads can never oversubscribe the cores against another. */
#include "../graph/internal.h"

#include <cpuid.h>
#include <dlfcn.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef MAGNA_OPENBLAS_PATH
#define MAGNA_OPENBLAS_PATH "libopenblas.so.0"
#endif

typedef void (*set_threads_fn)(int);
typedef char *(*get_str_fn)(void);

static struct {
    pthread_once_t once;
    magna_status status;
    char message[512];
    sgemm_fn sgemm;
    set_threads_fn set_threads;
    get_str_fn corename, config;
    char info[1024];
    char blas_path[256];
    char coretype_note[64];
    int threads;
} rt = {.once = PTHREAD_ONCE_INIT};

/* CPUID and XGETBV, asked once per process: in a virtual machine each CPUID traps to the hypervisor (microseconds),
 * and the ops ask at every step whether to take their bf16 paths. */
static magna_cpu_features cpu_features;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static magna_cpu_features cpu_detect_now(void);
static void cpu_detect_once(void) { cpu_features = cpu_detect_now(); }

magna_cpu_features magna_cpu_detect(void) {
    pthread_once(&cpu_once, cpu_detect_once);
    return cpu_features;
}

static magna_cpu_features cpu_detect_now(void) {
    magna_cpu_features f;
    memset(&f, 0, sizeof f);
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
    memcpy(f.vendor, &b, 4), memcpy(f.vendor + 4, &d, 4), memcpy(f.vendor + 8, &c, 4);
    unsigned max_leaf = a;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28);
    unsigned long long xcr0 = 0;
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        xcr0 = ((unsigned long long)hi << 32) | lo;
    }
    bool ymm_os = (xcr0 & 0x6) == 0x6, zmm_os = (xcr0 & 0xe6) == 0xe6, amx_os = (xcr0 & 0x60000) == 0x60000;
    f.fma = fma && ymm_os;
    if (max_leaf >= 7 && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2 = avx && ymm_os && (b & (1u << 5));
        f.avx512f = zmm_os && (b & (1u << 16));
        f.avx512bw = zmm_os && (b & (1u << 30));
        f.avx512vl = zmm_os && (b & (1u << 31));
        f.avx512_fp16 = zmm_os && (d & (1u << 23));
        f.amx_bf16 = amx_os && (d & (1u << 22));
        f.amx_int8 = amx_os && (d & (1u << 25));
        if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = zmm_os && (a & (1u << 5));
    }
    return f;
}

static void load_blas(void) {
    magna_cpu_features f = magna_cpu_detect();
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (user && *user) {
        snprintf(rt.coretype_note, sizeof rt.coretype_note, "OPENBLAS_CORETYPE=%s (user)", user);
    } else if (f.avx512f && f.avx512bw && f.avx512vl) {
        /* SkylakeX kernels need AVX-512 F/BW/VL/DQ, which every AVX-512 CPU seen here has. */
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
        snprintf(rt.coretype_note, sizeof rt.coretype_note, "OPENBLAS_CORETYPE=SkylakeX (set by magna)");
    }
    const char *paths[] = {getenv("MAGNA_OPENBLAS"), MAGNA_OPENBLAS_PATH, "libopenblas.so.0", "libopenblas.so"};
    void *lib = NULL;
    for (size_t i = 0; i < sizeof paths / sizeof *paths && !lib; i++) {
        if (!paths[i] || !*paths[i]) continue;
        lib = dlopen(paths[i], RTLD_NOW | RTLD_GLOBAL);
        if (lib) snprintf(rt.blas_path, sizeof rt.blas_path, "%s", paths[i]);
    }
    if (!lib) {
        rt.status = MAGNA_ERR_UNSUPPORTED;
        snprintf(rt.message, sizeof rt.message,
                 "could not load OpenBLAS (%s): %s; install Debian's libopenblas0-openmp (make deps does)",
                 MAGNA_OPENBLAS_PATH, dlerror());
        return;
    }
    rt.sgemm = (sgemm_fn)dlsym(lib, "cblas_sgemm");
    rt.set_threads = (set_threads_fn)dlsym(lib, "openblas_set_num_threads");
    rt.corename = (get_str_fn)dlsym(lib, "openblas_get_corename");
    rt.config = (get_str_fn)dlsym(lib, "openblas_get_config");
    if (!rt.sgemm) {
        rt.status = MAGNA_ERR_UNSUPPORTED;
        snprintf(rt.message, sizeof rt.message, "%s has no cblas_sgemm", rt.blas_path);
        return;
    }
    const char *threads = getenv("MAGNA_THREADS");
    rt.threads = threads && atoi(threads) > 0 ? atoi(threads) : omp_get_max_threads();
    /* In this order: OpenBLAS's OpenMP build sets OpenMP's thread count to its own when told one. */
    if (rt.set_threads) rt.set_threads(1);
    omp_set_num_threads(rt.threads);
    rt.status = MAGNA_OK;
}

magna_status magna_runtime_init(magna_error *err) {
    pthread_once(&rt.once, load_blas);
    if (err) {
        err->status = rt.status;
        snprintf(err->message, sizeof err->message, "%s", rt.message);
    }
    return rt.status;
}

void magna_set_threads(int threads) {
    magna_runtime_init(NULL);
    if (threads < 1) threads = 1;
    rt.threads = threads;
    omp_set_num_threads(threads);
}

int magna_get_threads(void) {
    magna_runtime_init(NULL);
    return rt.threads;
}

const char *magna_runtime_info(void) {
    magna_runtime_init(NULL);
    magna_cpu_features f = magna_cpu_detect();
    char feats[160];
    snprintf(feats, sizeof feats, "%s%s%s%s%s%s", f.avx2 ? " avx2" : "", f.avx512f ? " avx512f" : "",
             f.avx512_bf16 ? " avx512_bf16" : "", f.avx512_fp16 ? " avx512_fp16" : "", f.amx_bf16 ? " amx_bf16" : "",
             f.amx_int8 ? " amx_int8" : "");
    snprintf(rt.info, sizeof rt.info, "magna %s | cpu %s:%s | blas %s core %s%s%s | threads %d", MAGNA_VERSION,
             f.vendor, feats, rt.status == MAGNA_OK ? rt.blas_path : "(not loaded)",
             rt.corename ? rt.corename() : "?", rt.coretype_note[0] ? " via " : "", rt.coretype_note, rt.threads);
    return rt.info;
}

/* Products of at most 64^3 flops go to magna_sgemm_small (src/core/gemm_small.c: register-blocked
 * AVX-512 / AVX2 / C kernels, picked at run time). Why not OpenBLAS: for these sizes its call overhead
 * rivals the arithmetic, and 0.3.21's SkylakeX small-matrix kernel mallocs a buffer on every call, while
 * a training step must not allocate. */
#define SMALL_GEMM_FLOPS (64.0 * 64.0 * 64.0)

/* OpenBLAS 0.3.21 sends untransposed products of at most 100^3 to its SkylakeX "small matrix" kernel,
 * which mallocs on every call: those stay in magna_sgemm_small too. */
#define OPENBLAS_SMALL_NN_FLOPS (100.0 * 100.0 * 100.0)

static void blas_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                       int ldb, float beta, float *c, int ldc) {
    if (!ta && !tb && (double)m * n * k <= OPENBLAS_SMALL_NN_FLOPS) {
        magna_sgemm_small(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    rt.sgemm(BLAS_ROW_MAJOR, ta ? BLAS_TRANS : BLAS_NO_TRANS, tb ? BLAS_TRANS : BLAS_NO_TRANS, m, n, k, alpha, a, lda,
             b, ldb, beta, c, ldc);
}

void magna_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    if ((double)m * n * k <= SMALL_GEMM_FLOPS) {
        magna_sgemm_small(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    if (k <= 0) { /* BLAS leaves C alone when k = 0; the math says C = beta C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * c[(size_t)i * ldc + j];
        return;
    }
    const int threads = omp_in_parallel() ? 1 : rt.threads;
    if (threads == 1) {
        blas_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* Split C into one block of rows (or columns, when it is wide) per thread. */
    const bool by_rows = m >= n;
    const int extent = by_rows ? m : n;
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int chunk = (extent + nt - 1) / nt;
        chunk = (chunk + 15) & ~15; /* whole cache lines of C per thread */
        const int from = t * chunk, count = from >= extent ? 0 : (extent - from < chunk ? extent - from : chunk);
        if (count > 0) {
            if (by_rows)
                blas_sgemm(ta, tb, count, n, k, alpha, ta ? a + from : a + (size_t)from * lda, lda, b, ldb, beta,
                           c + (size_t)from * ldc, ldc);
            else
                blas_sgemm(ta, tb, m, count, k, alpha, a, lda, tb ? b + (size_t)from * ldb : b + from, ldb, beta,
                           c + from, ldc);
        }
    }
}

void magna_sgemm_reference(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                           const float *b, int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double acc = 0;
            for (int p = 0; p < k; p++) {
                float x = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                float y = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                acc += (double)x * y;
            }
            float *out = &c[(size_t)i * ldc + j];
            *out = (float)(alpha * acc + (beta == 0 ? 0 : beta * *out));
        }
}
