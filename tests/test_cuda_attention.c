/* test_cuda_attention.c — the flash-style attention kernels (src/cuda/attention.cu) against the CPU op
 * (src/ops/attention.c), on the same q, k, v, key lengths and output gradient: the output and the q, k, v
 * gradients must agree within 1e-4 of the largest magnitude in float32 mode, 2e-2 in bf16 mode.
 *
 * The cases reach what the graph's gradcheck cases (head dims up to 4) do not: every register size of the
 * fast path (hd 1 .. 128, with zero padding) and the generic path (hd > 128), queries and keys past one
 * tile (64 rows, 32 keys), cross attention with Tq != Tk either way, causal end-aligned, padding lengths
 * 0 .. Tk (a row that sees no key outputs zeros), one buffer as q = k = v (three gradients adding into
 * one), gradients asked for only some inputs, and in bf16 mode the tensor-core kernels (hd 16, 32, .., 128).
 * The gradient buffers start non-zero: backward adds.
 * Device buffers through the CUDA runtime: the emulator here (test_cuda_attention_emu), a GPU where built
 * with CUDA. */
#include "check.h"
#include "cuda/kernels.h"
#include "profile_report.h" /* stderr_catch */
#include "magna.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { GRAD_Q = 1, GRAD_K = 2, GRAD_V = 4, GRAD_ALL = 7 };

typedef struct attn_case {
    int B, Tq, Tk, H, hd;
    int causal, masked, shared, bf16, grads;
} attn_case;

static const float GRAD_START = 0.25f; /* what the gradient buffers hold before backward adds */

static void fill(float *x, int64_t n, uint64_t stream) {
    for (int64_t i = 0; i < n; i++) x[i] = 2.0f * magna_rand_uniform(7, stream, (uint64_t)i) - 1.0f;
}

/* max |a - (b + offset)| / max(|b|, 1e-3) */
static double rel_err(const float *a, const float *b, int64_t n, float offset) {
    double scale = 1e-3, worst = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - ((double)b[i] + offset));
        if (!(d <= worst)) worst = d; /* NaN wins */
    }
    return worst / scale;
}

static float *dev_copy(const void *host, size_t bytes) {
    void *d = NULL;
    if (cudaMalloc(&d, bytes ? bytes : 1) != cudaSuccess) return NULL;
    if (host) cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice);
    return d;
}

/* n floats as bf16 on the device (round to nearest even, as __float2bfloat16), `skew` elements (zeros) after the
 * allocation's start; returns the allocation */
static void *dev_bf16(const float *x, int64_t n, int skew) {
    uint16_t *bits = calloc((size_t)(n + skew) + 1, 2);
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        bits[skew + i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    void *d = dev_copy(bits, (size_t)(n + skew) * 2);
    free(bits);
    return d;
}

/* The tensor-core kernels read q, k and v stored as bf16 (a bf16 graph keeps them so, src/cuda/store16.c) and
 * stage them as the float ones rounded: the same bits out, in the gradients, from the same rounded values.
 * With out16 the output is kept in bf16 too: the float run's rounded, bit for bit, and gradients within 1e-2
 * (backward's rowsum(dO * O) reads the rounded output). Elsewhere bf16 storage is refused. got: the float
 * run's out, dq, dk, dv (NULL where not asked). */
static void same_with_bf16_inputs(const attn_case *c, const magna_cuda_attention_args *fa, const float *q,
                                  const float *k, const float *v, const float *d_dout, float *const got[4],
                                  int out16, const char *label) {
    const int64_t C = (int64_t)c->H * c->hd, nq = (int64_t)c->B * c->Tq * C, nk = (int64_t)c->B * c->Tk * C;
    magna_cuda_attention_args a = *fa;
    /* with out16, q, k, v and dO one element past an aligned start: staged element by element, not 16 bytes a
     * load */
    const int skew = out16;
    float *skewed_dout = dev_copy(NULL, ((size_t)nq + 1) * sizeof(float));
    cudaMemcpy(skewed_dout + skew, d_dout, (size_t)nq * sizeof(float), cudaMemcpyDeviceToDevice);
    d_dout = skewed_dout + skew;
    void *bq = dev_bf16(q, nq, skew), *bk = c->shared ? bq : dev_bf16(k, nk, skew), *bv = c->shared ? bq : dev_bf16(v, nk, skew);
    a.q = (uint16_t *)bq + skew, a.k = (uint16_t *)bk + skew, a.v = (uint16_t *)bv + skew;
    a.q16 = a.k16 = a.v16 = 1, a.out16 = out16;
    const size_t fq = (size_t)nq * sizeof(float), fk = (size_t)nk * sizeof(float);
    float *d_out = dev_copy(NULL, fq), *d_saved = dev_copy(NULL, 2 * (size_t)c->B * c->H * c->Tq * sizeof(float));
    float *start = malloc(fq > fk ? fq : fk), *host = malloc(fq > fk ? fq : fk);
    for (int64_t i = 0; i < (nq > nk ? nq : nk); i++) start[i] = GRAD_START;
    float *d_g[3];
    for (int i = 0; i < 3; i++) d_g[i] = got[i + 1] ? dev_copy(start, i ? fk : fq) : NULL;
    if (c->shared) d_g[1] = d_g[2] = d_g[0];
    const int tc = c->bf16 && c->hd % 16 == 0 && c->hd <= 128;
    int err = magna_cuda_attention_forward(&a, d_out, d_saved, NULL);
    if (!tc) {
        CHECK(err == cudaErrorInvalidValue, "%s: bf16 q, k, v outside the tensor-core kernels were not refused", label);
    } else {
        if (!err)
            err = magna_cuda_attention_backward(&a, d_out, d_dout, d_saved, d_saved + (size_t)c->B * c->H * c->Tq,
                                                d_g[0], d_g[1], d_g[2], NULL);
        if (!err) err = cudaDeviceSynchronize();
        CHECK(err == 0, "%s: bf16 inputs: %s", label, cudaGetErrorString((cudaError_t)err));
        float *dev[4] = {d_out, d_g[0], d_g[1], d_g[2]};
        for (int i = 0; i < (c->shared ? 2 : 4); i++) {
            if (!got[i]) continue;
            const int64_t n = i == 0 || i == 1 ? nq : nk;
            if (i == 0 && out16) { /* bf16 out: the float run's, rounded */
                uint16_t *bits = malloc((size_t)n * 2 + 2);
                cudaMemcpy(bits, dev[0], (size_t)n * 2, cudaMemcpyDeviceToHost);
                int64_t differ = 0;
                for (int64_t e = 0; e < n; e++) {
                    uint32_t u;
                    memcpy(&u, &got[0][e], 4);
                    differ += bits[e] != (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
                }
                CHECK(!differ, "%s: the bf16 output differs from the float one rounded at %lld of %lld", label,
                      (long long)differ, (long long)n);
                free(bits);
                continue;
            }
            cudaMemcpy(host, dev[i], (size_t)n * sizeof(float), cudaMemcpyDeviceToHost);
            const double err = out16 ? rel_err(host, got[i], n, 0.0f) : memcmp(host, got[i], (size_t)n * sizeof(float)) != 0;
            CHECK(err <= (out16 ? 1e-2 : 0.0), "%s: with q, k, v%s stored as bf16, %s differs (%.2g)", label,
                  out16 ? " and out" : "", (const char *[]){"out", "dq", "dk", "dv"}[i], err);
        }
    }
    cudaFree(bq), cudaFree(d_out), cudaFree(d_saved), cudaFree(d_g[0]), cudaFree(skewed_dout);
    if (!c->shared) cudaFree(bk), cudaFree(bv), cudaFree(d_g[1]), cudaFree(d_g[2]);
    free(start), free(host);
}

static void run_case(attn_case c) {
    const int64_t C = (int64_t)c.H * c.hd, nq = (int64_t)c.B * c.Tq * C, nk = (int64_t)c.B * c.Tk * C;
    char label[160];
    const char *kernel = getenv("MAGNA_CUDA_ATTENTION");
    snprintf(label, sizeof label, "B=%d Tq=%d Tk=%d H=%d hd=%d%s%s%s%s grads=%d%s", c.B, c.Tq, c.Tk, c.H, c.hd,
             c.causal ? " causal" : "", c.masked ? " masked" : "", c.shared ? " q=k=v" : "", c.bf16 ? " bf16" : "",
             c.grads, kernel ? " (wmma)" : "");
    /* the CPU op */
    magna_graph *g = magna_graph_new(1);
    magna_node *q = magna_param(g, "q", 3, (int64_t[]){c.B, c.Tq, C}, magna_init_zeros());
    magna_node *k = c.shared ? q : magna_param(g, "k", 3, (int64_t[]){c.B, c.Tk, C}, magna_init_zeros());
    magna_node *v = c.shared ? q : magna_param(g, "v", 3, (int64_t[]){c.B, c.Tk, C}, magna_init_zeros());
    magna_node *len = c.masked ? magna_input(g, "key_lengths", MAGNA_I32, 1, (int64_t[]){c.B}) : NULL;
    magna_node *out = magna_attention_masked(g, q, k, v, len, c.H, c.causal);
    if (magna_graph_compile(g, out) != MAGNA_OK) {
        CHECK(0, "%s: compile: %s", label, magna_graph_errmsg(g));
        magna_graph_free(g);
        return;
    }
    fill(magna_node_data(q), nq, 1);
    if (!c.shared) fill(magna_node_data(k), nk, 2), fill(magna_node_data(v), nk, 3);
    int32_t *lengths = len ? magna_node_data_i32(len) : NULL;
    for (int b = 0; lengths && b < c.B; b++)
        lengths[b] = b == 0 ? c.Tk : b == c.B - 1 && c.B > 2 ? 0 : (int32_t)((b * 7919 + 13) % (c.Tk + 1));
    float *dout = malloc((size_t)nq * sizeof(float));
    fill(dout, nq, 4);
    magna_graph_zero_grad(g);
    CHECK(magna_graph_forward(g) == MAGNA_OK && magna_graph_backward_seeded(g, dout) == MAGNA_OK, "%s: CPU: %s",
          label, magna_graph_errmsg(g));

    /* the kernels on device copies */
    const size_t fq = (size_t)nq * sizeof(float), fk = (size_t)nk * sizeof(float);
    float *d_q = dev_copy(magna_node_data(q), fq), *d_k = c.shared ? d_q : dev_copy(magna_node_data(k), fk);
    float *d_v = c.shared ? d_q : dev_copy(magna_node_data(v), fk);
    int32_t *d_len = lengths ? (int32_t *)dev_copy(lengths, (size_t)c.B * sizeof(int32_t)) : NULL;
    float *d_out = dev_copy(NULL, fq), *d_dout = dev_copy(dout, fq);
    float *d_saved = dev_copy(NULL, 2 * (size_t)c.B * c.H * c.Tq * sizeof(float));
    float *start = malloc(fq > fk ? fq : fk);
    for (int64_t i = 0; i < (nq > nk ? nq : nk); i++) start[i] = GRAD_START;
    float *d_dq = c.grads & GRAD_Q ? dev_copy(start, fq) : NULL;
    float *d_dk = c.shared ? d_dq : c.grads & GRAD_K ? dev_copy(start, fk) : NULL;
    float *d_dv = c.shared ? d_dq : c.grads & GRAD_V ? dev_copy(start, fk) : NULL;
    const magna_cuda_attention_args a = {.q = d_q, .k = d_k, .v = d_v, .key_lengths = d_len, .B = c.B, .Tq = c.Tq,
                                         .Tk = c.Tk, .C = (int)C, .heads = c.H, .causal = c.causal, .bf16 = c.bf16};
    int err = magna_cuda_attention_forward(&a, d_out, d_saved, NULL);
    if (!err)
        err = magna_cuda_attention_backward(&a, d_out, d_dout, d_saved, d_saved + (size_t)c.B * c.H * c.Tq, d_dq, d_dk,
                                            d_dv, NULL);
    if (!err) err = cudaDeviceSynchronize();
    CHECK(err == 0, "%s: kernels: %s", label, cudaGetErrorString((cudaError_t)err));

    const double tol = c.bf16 ? 2e-2 : 1e-4;
    float *host = malloc(fq > fk ? fq : fk);
    cudaMemcpy(host, d_out, fq, cudaMemcpyDeviceToHost);
    double e_out = rel_err(host, magna_node_data(out), nq, 0.0f), e[3] = {0, 0, 0};
    float *dev_grads[3] = {d_dq, d_dk, d_dv};
    magna_node *nodes[3] = {q, k, v};
    for (int i = 0; i < (c.shared ? 1 : 3); i++) {
        if (!dev_grads[i]) continue;
        const int64_t n = i == 0 ? nq : nk;
        cudaMemcpy(host, dev_grads[i], (size_t)n * sizeof(float), cudaMemcpyDeviceToHost);
        e[i] = rel_err(host, magna_node_grad(nodes[i]), n, GRAD_START);
    }
    CHECK(e_out <= tol && e[0] <= tol && e[1] <= tol && e[2] <= tol,
          "%s: relative error out %.2g, dq %.2g, dk %.2g, dv %.2g (limit %.0e)", label, e_out, e[0], e[1], e[2], tol);
    if (!c.shared) { /* as the gradients' first writer (assign): from NaNs, each element written, none read */
        magna_cuda_attention_args as = a;
        as.assign = 7u;
        for (int64_t i = 0; i < (nq > nk ? nq : nk); i++) start[i] = NAN;
        for (int i = 0; i < 3; i++)
            if (dev_grads[i]) cudaMemcpy(dev_grads[i], start, i ? fk : fq, cudaMemcpyHostToDevice);
        err = magna_cuda_attention_backward(&as, d_out, d_dout, d_saved, d_saved + (size_t)c.B * c.H * c.Tq, d_dq, d_dk,
                                            d_dv, NULL);
        if (!err) err = cudaDeviceSynchronize();
        double ea[3] = {0, 0, 0};
        for (int i = 0; i < 3; i++) {
            if (!dev_grads[i]) continue;
            const int64_t n = i == 0 ? nq : nk;
            cudaMemcpy(host, dev_grads[i], (size_t)n * sizeof(float), cudaMemcpyDeviceToHost);
            ea[i] = rel_err(host, magna_node_grad(nodes[i]), n, 0.0f);
        }
        CHECK(err == 0 && ea[0] <= tol && ea[1] <= tol && ea[2] <= tol,
              "%s: assigning: %s, relative error dq %.2g, dk %.2g, dv %.2g", label, cudaGetErrorString((cudaError_t)err),
              ea[0], ea[1], ea[2]);
        /* and in bf16 (a.grad16: the tensor-core kernels without key lengths), from bf16 NaNs */
        const int tc = c.bf16 && c.hd % 16 == 0 && c.hd <= 128;
        as.grad16 = 7u;
        for (int i = 0; i < 3; i++)
            if (dev_grads[i]) cudaMemset(dev_grads[i], 0xff, (size_t)(i ? nk : nq) * 2);
        err = magna_cuda_attention_backward(&as, d_out, d_dout, d_saved, d_saved + (size_t)c.B * c.H * c.Tq, d_dq, d_dk,
                                            d_dv, NULL);
        if (tc && !c.masked) {
            if (!err) err = cudaDeviceSynchronize();
            uint16_t *bits = malloc((size_t)(nq > nk ? nq : nk) * 2);
            for (int i = 0; i < 3; i++) {
                ea[i] = 0;
                if (!dev_grads[i]) continue;
                const int64_t n = i == 0 ? nq : nk;
                cudaMemcpy(bits, dev_grads[i], (size_t)n * 2, cudaMemcpyDeviceToHost);
                for (int64_t e = 0; e < n; e++) {
                    const uint32_t u = (uint32_t)bits[e] << 16;
                    memcpy(&host[e], &u, sizeof u);
                }
                ea[i] = rel_err(host, magna_node_grad(nodes[i]), n, 0.0f);
            }
            free(bits);
            CHECK(err == 0 && ea[0] <= tol && ea[1] <= tol && ea[2] <= tol,
                  "%s: bf16 gradients: %s, relative error dq %.2g, dk %.2g, dv %.2g", label,
                  cudaGetErrorString((cudaError_t)err), ea[0], ea[1], ea[2]);
        } else {
            CHECK(err == cudaErrorInvalidValue, "%s: bf16 gradients outside the tensor-core kernels without key lengths "
                  "were not refused", label);
        }
        /* dO in bf16 (dout16: the matmul after the attention wrote it so), the gradients float32 and assigned: within
         * the tolerance of the CPU's from the float dO; refused outside the tensor-core kernels */
        as.grad16 = 0u, as.dout16 = 1;
        uint16_t *dout16 = malloc((size_t)nq * 2);
        for (int64_t e = 0; e < nq; e++) {
            uint32_t u;
            memcpy(&u, &dout[e], 4);
            dout16[e] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        }
        void *d_dout16 = dev_copy(dout16, (size_t)nq * 2);
        for (int64_t i = 0; i < (nq > nk ? nq : nk); i++) start[i] = NAN;
        for (int i = 0; i < 3; i++)
            if (dev_grads[i]) cudaMemcpy(dev_grads[i], start, i ? fk : fq, cudaMemcpyHostToDevice);
        err = magna_cuda_attention_backward(&as, d_out, d_dout16, d_saved, d_saved + (size_t)c.B * c.H * c.Tq, d_dq,
                                            d_dk, d_dv, NULL);
        if (tc) {
            if (!err) err = cudaDeviceSynchronize();
            for (int i = 0; i < 3; i++) {
                ea[i] = 0;
                if (!dev_grads[i]) continue;
                const int64_t n = i == 0 ? nq : nk;
                cudaMemcpy(host, dev_grads[i], (size_t)n * sizeof(float), cudaMemcpyDeviceToHost);
                ea[i] = rel_err(host, magna_node_grad(nodes[i]), n, 0.0f);
            }
            CHECK(err == 0 && ea[0] <= tol && ea[1] <= tol && ea[2] <= tol,
                  "%s: bf16 dO: %s, relative error dq %.2g, dk %.2g, dv %.2g", label,
                  cudaGetErrorString((cudaError_t)err), ea[0], ea[1], ea[2]);
        } else {
            CHECK(err == cudaErrorInvalidValue, "%s: a bf16 dO outside the tensor-core kernels was not refused", label);
        }
        cudaFree(d_dout16), free(dout16);
        /* the accumulating run's gradients back, for the bf16 comparisons below */
        for (int64_t i = 0; i < (nq > nk ? nq : nk); i++) start[i] = GRAD_START;
        for (int i = 0; i < 3; i++)
            if (dev_grads[i]) cudaMemcpy(dev_grads[i], start, i ? fk : fq, cudaMemcpyHostToDevice);
        err = magna_cuda_attention_backward(&a, d_out, d_dout, d_saved, d_saved + (size_t)c.B * c.H * c.Tq, d_dq, d_dk,
                                            d_dv, NULL);
        CHECK(err == 0 && cudaDeviceSynchronize() == 0, "%s: kernels again: %s", label, cudaGetErrorString((cudaError_t)err));
    }
    if (c.bf16) {
        float *got[4] = {malloc(fq), NULL, NULL, NULL};
        cudaMemcpy(got[0], d_out, fq, cudaMemcpyDeviceToHost);
        for (int i = 0; i < 3; i++)
            if (dev_grads[i]) {
                got[i + 1] = malloc(i ? fk : fq);
                cudaMemcpy(got[i + 1], dev_grads[i], i ? fk : fq, cudaMemcpyDeviceToHost);
            }
        for (int out16 = 0; out16 < 2; out16++)
            same_with_bf16_inputs(&c, &a, magna_node_data(q), magna_node_data(k), magna_node_data(v), d_dout, got,
                                  out16, label);
        for (int i = 0; i < 4; i++) free(got[i]);
    }
    printf("%-70s out %.1e dq %.1e dk %.1e dv %.1e\n", label, e_out, e[0], e[1], e[2]);
    cudaFree(d_q), cudaFree(d_out), cudaFree(d_dout), cudaFree(d_saved), cudaFree(d_len), cudaFree(d_dq);
    if (!c.shared) cudaFree(d_k), cudaFree(d_v), cudaFree(d_dk), cudaFree(d_dv);
    free(dout), free(start), free(host);
    magna_graph_free(g);
}

int main(void) {
    char why[256];
    if (!magna_cuda_available(why, sizeof why)) {
        printf("test_cuda_attention: skipped: %s\n", why);
        return 77;
    }
    magna_error err;
    CHECK(magna_runtime_init(&err) == MAGNA_OK, "runtime: %s", err.message);
    static const attn_case cases[] = {
        /* B  Tq  Tk  H  hd  causal masked shared bf16 grads */
        {2, 5, 5, 2, 3, 1, 0, 0, 0, GRAD_ALL},
        {1, 1, 1, 1, 1, 1, 0, 0, 0, GRAD_ALL},
        {1, 70, 70, 1, 2, 1, 0, 0, 0, GRAD_ALL},  /* past one query tile and two key tiles */
        {3, 37, 70, 2, 16, 1, 1, 0, 0, GRAD_ALL}, /* cross, causal end-aligned, lengths Tk, 0 and between */
        {3, 70, 9, 1, 8, 1, 1, 0, 0, GRAD_ALL},   /* more queries than keys: early rows see none */
        {2, 33, 40, 2, 32, 0, 1, 0, 0, GRAD_ALL},
        {1, 40, 40, 2, 64, 0, 0, 0, 0, GRAD_ALL},
        {1, 33, 33, 1, 100, 1, 0, 0, 0, GRAD_ALL}, /* 32 registers, padded */
        {1, 20, 20, 1, 128, 1, 0, 0, 0, GRAD_ALL},
        {3, 20, 45, 1, 129, 1, 1, 0, 0, GRAD_ALL}, /* the generic path */
        {1, 9, 9, 2, 300, 0, 0, 0, 0, GRAD_ALL},
        {2, 30, 30, 2, 5, 1, 0, 1, 0, GRAD_ALL},   /* q = k = v: three gradients into one */
        {2, 40, 40, 1, 200, 1, 0, 1, 0, GRAD_ALL},
        {2, 35, 35, 2, 12, 1, 0, 0, 0, GRAD_V},    /* only some gradients */
        {2, 35, 35, 2, 12, 1, 0, 0, 0, GRAD_Q | GRAD_K},
        {2, 35, 35, 1, 140, 0, 0, 0, 0, GRAD_K},
        {3, 37, 70, 2, 20, 1, 1, 0, 1, GRAD_ALL},  /* bf16 on CUDA cores: registers, and the generic path */
        {3, 20, 45, 1, 129, 1, 1, 0, 1, GRAD_ALL},
        /* bf16 with hd a multiple of 16 up to 128: the tensor-core kernels */
        {2, 70, 70, 2, 64, 1, 0, 0, 1, GRAD_ALL},
        {3, 37, 140, 1, 32, 1, 1, 0, 1, GRAD_ALL},
        {3, 140, 37, 1, 32, 1, 1, 0, 1, GRAD_ALL},
        {1, 65, 65, 1, 128, 0, 0, 0, 1, GRAD_ALL},
        {2, 40, 40, 2, 32, 1, 0, 1, 1, GRAD_ALL},
        {2, 33, 33, 1, 64, 1, 0, 0, 1, GRAD_K | GRAD_V},
        {2, 33, 33, 1, 64, 0, 0, 0, 1, GRAD_Q},
        {2, 50, 50, 3, 16, 1, 1, 0, 1, GRAD_ALL},
        {1, 30, 66, 2, 48, 0, 1, 0, 1, GRAD_ALL},
        {1, 20, 20, 1, 80, 1, 0, 0, 1, GRAD_ALL},
        {1, 20, 20, 1, 96, 1, 0, 0, 1, GRAD_ALL},
        {1, 20, 20, 1, 112, 0, 0, 0, 1, GRAD_ALL},
    };
    /* mma.sync's fragment layout, as the kernels assume it, is this device's (else the wmma kernels would run,
     * and this test would pass without testing the default) */
    CHECK(!strcmp(magna_cuda_attention_tc_kind(), "mma.sync"), "the tensor-core kernels are %s, not mma.sync",
          magna_cuda_attention_tc_kind());
    /* the choice by name; a misspelt one is said on stderr, once, and the default runs */
    setenv("MAGNA_CUDA_ATTENTION", "wmma", 1);
    CHECK(!strcmp(magna_cuda_attention_tc_kind(), "wmma"), "MAGNA_CUDA_ATTENTION=wmma ran %s", magna_cuda_attention_tc_kind());
    setenv("MAGNA_CUDA_ATTENTION", "mma", 1);
    CHECK(!strcmp(magna_cuda_attention_tc_kind(), "mma.sync"), "MAGNA_CUDA_ATTENTION=mma ran %s", magna_cuda_attention_tc_kind());
    setenv("MAGNA_CUDA_ATTENTION", "wmm", 1);
    const int saved = stderr_catch();
    const bool default_kind = !strcmp(magna_cuda_attention_tc_kind(), "mma.sync");
    magna_cuda_attention_tc_kind();
    char *said = stderr_caught(saved);
    unsetenv("MAGNA_CUDA_ATTENTION");
    const char *want = "magna: MAGNA_CUDA_ATTENTION=wmm is neither mma nor wmma: the default, mma, runs\n";
    CHECK(default_kind && said && !strcmp(said, want), "a misspelt MAGNA_CUDA_ATTENTION: said '%s'", said ? said : "");
    free(said);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cases[i]);
#ifndef MAGNA_CUDA_EMU
    /* on a GPU, GPT-2's shape too: 16 query and key tiles, the causal diagonal crossing each (the emulator would
     * take minutes) */
    run_case((attn_case){2, 1024, 1024, 12, 64, 1, 0, 0, 1, GRAD_ALL});
#endif
    /* the tensor-core cases again with the wmma kernels (mma.sync's are the default) */
    setenv("MAGNA_CUDA_ATTENTION", "wmma", 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (cases[i].bf16 && cases[i].hd % 16 == 0 && cases[i].hd <= 128) run_case(cases[i]);
    unsetenv("MAGNA_CUDA_ATTENTION");
    return check_finish("test_cuda_attention");
}
