/* test_cuda_emu.c — the CUDA emulator itself (src/cuda/emu), on the kernels of tests/cuda_emu_kernels.cu:
 * a block reduction through shared memory and __syncthreads, warp shuffles (xor, down, up, idx, widths),
 * a tiled transpose on odd sizes, dynamic shared memory (and its 48 KiB limit), atomics across blocks,
 * every thread of 3-D launches exactly once, bf16 rounding bits against a reference (ties, NaN, Inf); a
 * missing barrier made visible by the alternating thread order; and the mistakes a GPU would hang on (a barrier some threads skip or exit before, threads at different
 * barriers) reported as launch failures naming the kernel, after which the emulator still works. Also the
 * runtime's checks: invalid launch geometry, a copy whose direction does not match its pointers, a bad
 * free, a host pointer passed to a kernel, fresh device memory filled with NaN (a GPU's holds anything). Emulated builds only (magna_test_emu). */
#include "check.h"
#include "cuda_emu_kernels.h"
#include "magna.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CU(call)                                                                                                       \
    do {                                                                                                               \
        const int e_ = (int)(call);                                                                                    \
        CHECK(e_ == 0, "%s: %s", #call, cudaGetErrorString((cudaError_t)e_));                                          \
    } while (0)

static void *dev(size_t bytes) {
    void *p = NULL;
    CU(cudaMalloc(&p, bytes));
    return p;
}
static void *dev_copy(const void *h, size_t bytes) {
    void *p = dev(bytes);
    CU(cudaMemcpy(p, h, bytes, cudaMemcpyHostToDevice));
    return p;
}
static void get(void *h, const void *d, size_t bytes) { CU(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost)); }
static float urand(uint64_t stream, uint64_t i) { return 2.0f * magna_rand_uniform(11, stream, i) - 1.0f; }

static void block_sum(int n) {
    float *x = malloc((size_t)n * 4);
    const int blocks = (n + 255) / 256;
    float *out = malloc((size_t)blocks * 4);
    for (int i = 0; i < n; i++) x[i] = urand(1, (uint64_t)i);
    float *xd = dev_copy(x, (size_t)n * 4), *od = dev((size_t)blocks * 4);
    CU(emu_block_sum(xd, n, od));
    get(out, od, (size_t)blocks * 4);
    int bad = 0;
    for (int b = 0; b < blocks; b++) {
        float s[256]; /* the kernel's tree, in the same order: the same float */
        for (int t = 0; t < 256; t++) s[t] = 256 * b + t < n ? x[256 * b + t] : 0.0f;
        for (int half = 128; half > 0; half /= 2)
            for (int t = 0; t < half; t++) s[t] += s[t + half];
        bad += out[b] != s[0];
    }
    CHECK(bad == 0, "block sums n=%d: %d of %d blocks wrong", n, bad, blocks);
    cudaFree(xd), cudaFree(od), free(x), free(out);
}

static void warp_ops(void) {
    enum { n = 256, k_n = EMU_WARP_OUTPUTS };
    float x[n], r[k_n][n];
    for (int i = 0; i < n; i++) x[i] = (float)((i * 37) % 101 - 50); /* integers: every order sums exactly */
    float *xd = dev_copy(x, sizeof x), *rd = dev(sizeof r);
    CU(emu_warp(xd, n, rd));
    get(r, rd, sizeof r);
    int bad[k_n] = {0};
    for (int w = 0; w < n / 32; w++) {
        const float *xw = x + 32 * w;
        float sum = 0, scan = 0, hi = -1e9f, lo = 1e9f;
        uint32_t ballot = 0;
        for (int l = 0; l < 32; l++) {
            sum += xw[l], hi = fmaxf(hi, xw[l]), lo = fminf(lo, xw[l]);
            ballot |= (uint32_t)(xw[l] > 0) << l;
        }
        const float any_all = (float)((hi > 45) * 2 + (lo > -48));
        for (int l = 0; l < 32; l++) {
            const int i = 32 * w + l, s8 = l & ~7, s16 = l & ~15;
            float seg = 0;
            for (int j = s8; j < s8 + 8; j++) seg += xw[j];
            scan += xw[l];
            bad[EMU_WARP_XOR] += r[EMU_WARP_XOR][i] != sum;
            bad[EMU_WARP_DOWN] += r[EMU_WARP_DOWN][i] != (l == 0 ? sum : 0.0f);
            bad[EMU_WARP_SCAN] += r[EMU_WARP_SCAN][i] != scan;
            bad[EMU_WARP_IDX] += r[EMU_WARP_IDX][i] != xw[5];
            bad[EMU_WARP_XOR8] += r[EMU_WARP_XOR8][i] != seg;
            bad[EMU_WARP_DOWN16] += r[EMU_WARP_DOWN16][i] != (l + 5 < s16 + 16 ? xw[l + 5] : xw[l]);
            bad[EMU_WARP_UP8] += r[EMU_WARP_UP8][i] != (l - 3 >= s8 ? xw[l - 3] : xw[l]);
            bad[EMU_WARP_IDX8] += r[EMU_WARP_IDX8][i] != xw[s8 + 2];
            uint32_t got;
            memcpy(&got, &r[EMU_WARP_BALLOT][i], 4);
            bad[EMU_WARP_BALLOT] += got != ballot;
            bad[EMU_WARP_ANY_ALL] += r[EMU_WARP_ANY_ALL][i] != any_all;
        }
    }
    static const char *const what[k_n] = {"xor sum",         "down sum",      "up scan",    "idx broadcast",
                                          "width-8 xor sum", "width-16 down", "width-8 up", "width-8 idx",
                                          "ballot",          "any/all"};
    for (int k = 0; k < k_n; k++) CHECK(bad[k] == 0, "shuffles: %s wrong in %d lanes", what[k], bad[k]);
    cudaFree(xd), cudaFree(rd);
}

static void transpose(int rows, int cols) {
    const size_t bytes = (size_t)rows * cols * 4;
    float *in = malloc(bytes), *out = malloc(bytes);
    for (int i = 0; i < rows * cols; i++) in[i] = (float)i;
    float *ind = dev_copy(in, bytes), *outd = dev(bytes);
    CU(emu_transpose(ind, outd, rows, cols));
    get(out, outd, bytes);
    int bad = 0;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) bad += out[(size_t)c * rows + r] != in[(size_t)r * cols + c];
    CHECK(bad == 0, "transpose %dx%d: %d elements wrong", rows, cols, bad);
    cudaFree(ind), cudaFree(outd), free(in), free(out);
}

static void dynamic_shared(int blocks, int threads, size_t shared_bytes) {
    const size_t bytes = (size_t)blocks * threads * 4;
    float *in = malloc(bytes), *out = malloc(bytes);
    for (int i = 0; i < blocks * threads; i++) in[i] = urand(2, (uint64_t)i);
    float *ind = dev_copy(in, bytes), *outd = dev(bytes);
    CU(emu_reverse(ind, outd, blocks, threads, shared_bytes));
    get(out, outd, bytes);
    int bad = 0;
    for (int b = 0; b < blocks; b++)
        for (int t = 0; t < threads; t++) bad += out[b * threads + t] != in[b * threads + threads - 1 - t];
    CHECK(bad == 0, "dynamic shared, %d blocks of %d, %zu bytes: %d wrong", blocks, threads, shared_bytes, bad);
    cudaFree(ind), cudaFree(outd), free(in), free(out);
}

static void atomics(void) {
    enum { n = 5000 };
    int x[n], hist[16] = {0}, maxv = -1;
    float total = 0;
    for (int i = 0; i < n; i++) x[i] = (i * 7919) % 1000;
    int *xd = dev_copy(x, sizeof x), *hd = dev_copy(hist, sizeof hist), *md = dev_copy(&maxv, sizeof maxv);
    float *td = dev_copy(&total, sizeof total);
    CU(emu_atomics(xd, n, hd, td, md));
    get(hist, hd, sizeof hist), get(&total, td, sizeof total), get(&maxv, md, sizeof maxv);
    int want[16] = {0}, want_max = 0;
    double want_total = 0;
    for (int i = 0; i < n; i++) want[x[i] & 15]++, want_total += x[i], want_max = x[i] > want_max ? x[i] : want_max;
    CHECK(memcmp(hist, want, sizeof want) == 0, "atomicAdd(int) histogram differs");
    CHECK(total == (float)want_total, "atomicAdd(float) total %g, expected %g", total, want_total); /* < 2^24 */
    CHECK(maxv == want_max, "atomicMax %d, expected %d", maxv, want_max);
    cudaFree(xd), cudaFree(hd), cudaFree(md), cudaFree(td);
}

static void geometry(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
    const unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
    const size_t total = (size_t)gx * gy * gz * bx * by * bz;
    int *seen = calloc(total, sizeof(int)), bad = 0;
    int *sd = dev_copy(seen, total * sizeof(int)), *bd = dev_copy(&bad, sizeof bad);
    CU(emu_geometry(grid, block, sd, bd));
    get(seen, sd, total * sizeof(int)), get(&bad, bd, sizeof bad);
    size_t wrong = 0;
    for (size_t i = 0; i < total; i++) wrong += seen[i] != 1;
    CHECK(wrong == 0 && bad == 0, "grid (%u,%u,%u) block (%u,%u,%u): %zu threads not run exactly once, %d out of range",
          gx, gy, gz, bx, by, bz, wrong, bad);
    cudaFree(sd), cudaFree(bd), free(seen);
}

/* the bf16 nearest to f by distance (ties to the even one), from the two candidates around f, in double:
 * a different computation from the emulator's bit arithmetic */
static uint16_t bf16_reference(float f) {
    if (isnan(f)) return 0x7fff;
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);
    const uint32_t ul = (uint32_t)lo << 16, uh = (uint32_t)hi << 16;
    float fl, fh;
    memcpy(&fl, &ul, 4), memcpy(&fh, &uh, 4);
    if (isinf(f)) return lo;
    /* above the largest finite bf16 the next one up is Inf: distance as if it were 2^128 */
    const double dl = fabs((double)f - fl),
                 dh = isinf(fh) ? fabs(ldexp(1.0, 128) * (f < 0 ? -1 : 1) - f) : fabs((double)fh - f);
    return dl < dh ? lo : dh < dl ? hi : (lo & 1) ? hi : lo;
}

static void bf16(void) {
    static const uint32_t special[] = {
        0x3f800000,                         /* 1: exact */
        0x3f808000,                         /* 1 + 2^-8: a tie, to even (down) */
        0x3f818000,                         /* a tie, to even (up) */
        0x3f808001, 0x3f807fff, 0xbf818000, /* above and below a tie; a negative tie */
        0x7f800000, 0xff800000,             /* +-Inf stay */
        0x7fc00000, 0xffc00001, 0x7f800001, /* NaNs: CUDA's canonical 0x7fff whatever the sign and payload */
        0x7f7fffff, 0x7f7f8000, 0x7f7f7fff, /* the largest float rounds to Inf; a tie at the top rounds to Inf */
        0x00008000, 0x00018000, 0x00000001, /* subnormal ties and the smallest subnormal */
        0x80000000, 0x00000000,             /* -0, +0 */
    };
    enum { ns = sizeof special / sizeof special[0], n = ns + 4096 };
    static const uint16_t expect[ns] = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x3f80, 0xbf82, 0x7f80, 0xff80, 0x7fff, 0x7fff,
                                        0x7fff, 0x7f80, 0x7f80, 0x7f7f, 0x0000, 0x0002, 0x0000, 0x8000, 0x0000};
    float x[n], back[n];
    uint16_t bits[n];
    for (int i = 0; i < ns; i++) memcpy(&x[i], &special[i], 4);
    for (int i = ns; i < n; i++) {
        /* random bit patterns over every exponent, a quarter of them exact ties */
        uint32_t u = (uint32_t)(magna_rand_uniform(5, 3, (uint64_t)i) * 4294967296.0);
        if (i % 4 == 0) u = (u & 0xffff0000u) | 0x8000u;
        memcpy(&x[i], &u, 4);
    }
    float *xd = dev_copy(x, sizeof x), *backd = dev(sizeof back);
    uint16_t *bitsd = dev(sizeof bits);
    CU(emu_bf16(xd, n, bitsd, backd));
    get(bits, bitsd, sizeof bits), get(back, backd, sizeof back);
    int bad_special = 0, bad_ref = 0, bad_back = 0;
    for (int i = 0; i < n; i++) {
        if (i < ns && bits[i] != expect[i]) {
            bad_special++;
            printf("bf16 of 0x%08x: 0x%04x, expected 0x%04x\n", special[i], bits[i], expect[i]);
        }
        if (bits[i] != bf16_reference(x[i]) && bad_ref++ < 5)
            printf("bf16 of %a: 0x%04x, reference 0x%04x\n", x[i], bits[i], bf16_reference(x[i]));
        const uint32_t ub = (uint32_t)bits[i] << 16;
        uint32_t got;
        memcpy(&got, &back[i], 4);
        bad_back += got != ub;
    }
    CHECK(bad_special == 0, "bf16: %d special values wrong", bad_special);
    CHECK(bad_ref == 0, "bf16: %d of %d values differ from round-to-nearest-even", bad_ref, n);
    CHECK(bad_back == 0, "__bfloat162float: %d values are not the bf16 bits shifted", bad_back);
    cudaFree(xd), cudaFree(backd), cudaFree(bitsd);
}

/* A missing barrier between a write and another thread's read: the emulator alternates the order a block
 * runs its threads in (unless MAGNA_EMU_ORDER says otherwise), so over two blocks one of them reads what a
 * later thread has not yet written, and the result is wrong; with the barrier both are right. */
static int shift_wrong(int with_barrier) {
    enum { blocks = 2, n = 64 * blocks };
    float x[n], out[n];
    for (int i = 0; i < n; i++) x[i] = (float)(i + 1), out[i] = 0;
    float *xd = dev_copy(x, sizeof x), *od = dev_copy(out, sizeof out);
    CU(emu_shift(xd, od, blocks, with_barrier));
    get(out, od, sizeof out);
    int wrong = 0;
    for (int i = 0; i < n; i++) wrong += i % 64 != 0 && out[i] != x[i - 1];
    cudaFree(xd), cudaFree(od);
    return wrong;
}
static void races(void) {
    const char *order = getenv("MAGNA_EMU_ORDER");
    CHECK(shift_wrong(1) == 0, "the shift with its barrier is wrong");
    if (!order || strcmp(order, "forward") != 0) /* forward alone hides this race, as one GPU schedule might */
        CHECK(shift_wrong(0) > 0, "a missing __syncthreads went unseen: the threads ran in one order only");
    CHECK(shift_wrong(1) == 0, "the shift with its barrier is wrong (second run)");
}

static void mistakes(void) {
    static const char *const kernel[] = {"early_exit_kernel", "branch_barrier_kernel", "mixed_barrier_kernel",
                                         "exited_lane_kernel"};
    static const char *const why[] = {"__syncthreads", "__syncthreads", "deadlock", "a shuffle"};
    float *xd = dev(256 * 4);
    CU(cudaMemset(xd, 0, 256 * 4));
    for (int k = 0; k < 4; k++) {
        const int e = emu_mistake(k, xd);
        const char *msg = cudaGetErrorString((cudaError_t)e);
        printf("mistake %d: %s\n", k, msg);
        CHECK(e == cudaErrorLaunchFailure, "mistake %d (%s) launched: %d", k, kernel[k], e);
        CHECK(strstr(msg, kernel[k]) && strstr(msg, "cuda_emu_kernels.cu:") && strstr(msg, why[k]),
              "mistake %d: the message names neither the launch nor the barrier: %s", k, msg);
        CHECK(strcmp(magna_emu_last_failure(), msg) == 0, "magna_emu_last_failure differs: %s",
              magna_emu_last_failure());
        CHECK(cudaGetLastError() == cudaSuccess, "the launch returned its error and cleared it, as <<< >>> + "
                                                 "cudaGetLastError() does under nvcc");
    }
    /* not sticky: the emulator runs the next launches correctly, on the fibers the failures abandoned */
    block_sum(1000);
    warp_ops();
    const int e = emu_bad_block(xd);
    CHECK(e == cudaErrorInvalidConfiguration && strstr(cudaGetErrorString((cudaError_t)e), "block (2048,1,1)"),
          "2048 threads a block: %d %s", e, cudaGetErrorString((cudaError_t)e));
    /* an earlier call's error nobody read is what the next launch reports, as on a GPU */
    CHECK(cudaFree(xd + 1) == cudaErrorInvalidValue, "cudaFree inside a block passed");
    CHECK(emu_block_sum(xd, 256, xd + 64) == cudaErrorInvalidValue, "the pending error was not reported");
    CHECK(cudaGetLastError() == cudaSuccess, "the pending error was not cleared");
    cudaFree(xd);
}

static void runtime_checks(void) {
    float h[8] = {0}, *d = dev(sizeof h);
    CU(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    CHECK(isnan(h[0]) && isnan(h[7]), "fresh device memory is not NaN-filled: %g %g", h[0], h[7]);
    memset(h, 0, sizeof h);
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a swapped copy direction passed");
    CHECK(cudaMemcpy(d, h, sizeof h + 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy past the allocation passed");
    CHECK(cudaMemcpy(d + 4, h, 16, cudaMemcpyHostToDevice) == cudaSuccess, "a copy inside the allocation failed");
    CHECK(cudaMemset(h, 0, sizeof h) == cudaErrorInvalidValue, "cudaMemset on host memory passed");
    CHECK(cudaFree(h) == cudaErrorInvalidValue, "cudaFree of a host pointer passed");
    /* dynamic_shared() raised the kernel's limit to 68 KiB, as CUDA keeps it: more must fail */
    CHECK(emu_reverse_unset(d, d, 8, 100 * 1024) == cudaErrorInvalidValue,
          "100 KiB of dynamic shared memory launched over the kernel's attribute");
    CHECK(emu_reverse_unset(d, d, 8, 64 * 1024) == cudaSuccess, "64 KiB, within the attribute, failed");
    /* a kernel given a host pointer: an illegal address on a GPU, refused before it runs; page-locked host
     * memory and device memory (an offset into it) are fine */
    float *out = dev(sizeof h), *pinned = NULL;
    const int e = emu_block_sum(h, 8, out);
    CHECK(e == cudaErrorIllegalAddress && strstr(cudaGetErrorString((cudaError_t)e), "kernel argument 0"),
          "a host pointer passed to a kernel: %d %s", e, cudaGetErrorString((cudaError_t)e));
    CU(cudaMallocHost((void **)&pinned, sizeof h));
    for (int i = 0; i < 8; i++) pinned[i] = (float)i;
    CU(emu_block_sum(pinned, 8, out));
    CU(emu_block_sum(d + 2, 6, out));
    CU(cudaFreeHost(pinned));
    cudaFree(out);
    cudaStream_t s;
    cudaEvent_t a, b;
    float ms = -1;
    CU(cudaStreamCreate(&s));
    CU(cudaEventCreate(&a));
    CU(cudaEventCreate(&b));
    CU(cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, s));
    CU(cudaEventRecord(a, s));
    CU(cudaEventRecord(b, s));
    CU(cudaStreamSynchronize(s));
    CU(cudaEventElapsedTime(&ms, a, b));
    CHECK(ms >= 0, "elapsed %g ms", ms);
    CU(cudaEventDestroy(a));
    CU(cudaEventDestroy(b));
    CU(cudaStreamDestroy(s));
    CHECK(cudaStreamSynchronize(s) == cudaErrorInvalidResourceHandle, "a destroyed stream still works");
    cudaGetLastError();
    CU(cudaFree(d));
}

int main(void) {
    char why[256];
    CHECK(magna_cuda_available(why, sizeof why), "the emulator has no device: %s", why);
    const long long launches = magna_emu_launch_count();
    block_sum(1), block_sum(256), block_sum(1000), block_sum(4099);
    warp_ops();
    static const int sizes[][2] = {{1, 1}, {37, 53}, {32, 32}, {65, 31}, {3, 100}};
    for (int i = 0; i < 5; i++) transpose(sizes[i][0], sizes[i][1]);
    dynamic_shared(3, 256, 256 * 4);
    dynamic_shared(2, 1024, 1024 * 4 + 60 * 1024); /* over 48 KiB: cudaFuncSetAttribute first */
    atomics();
    geometry(3, 2, 2, 5, 3, 2);
    geometry(1, 1, 1, 1024, 1, 1);
    geometry(70000, 1, 1, 1, 1, 1);
    geometry(2, 3, 1, 7, 1, 9);
    bf16();
    races();
    mistakes();
    runtime_checks();
    CHECK(magna_emu_launch_count() - launches >= 20, "only %lld launches counted", magna_emu_launch_count() - launches);
    return check_finish("test_cuda_emu");
}
