/* test_cuda_kernels.c — the CUDA kernels (src/cuda/kernels.cu) on a GPU against elementwise_math.h run on
 * the CPU (which tests/test_cuda_math.c checks against the graph's CPU ops): activations forward and
 * backward (accumulating into dx), Adam and AdamW over three steps, for odd sizes, aligned (float4 path)
 * and offset by one element (scalar path). Built only with CUDA; without a device it says so and exits 77,
 * which ctest counts as skipped (make gpu-check runs it where a GPU is). */
#include "check.h"
#include "cuda/kernels.h"
#include "magna.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void fill(float *x, int64_t n, float scale, uint64_t stream) {
    for (int64_t i = 0; i < n; i++) x[i] = scale * (2.0f * magna_rand_uniform(7, stream, (uint64_t)i) - 1.0f);
}
static double rel_err(const float *a, const float *b, int64_t n) {
    double scale = 1e-6, worst = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst / scale;
}
#define CU(call)                                                                                                     \
    do {                                                                                                             \
        const int e_ = (int)(call);                                                                                  \
        CHECK(e_ == 0, "%s: %s", #call, cudaGetErrorString((cudaError_t)e_));                                        \
    } while (0)

/* device copies of host arrays, one element of slack in front for the unaligned run */
static float *to_device(const float *h, int64_t n, int offset) {
    float *d = NULL;
    CU(cudaMalloc((void **)&d, (size_t)(n + 1) * sizeof(float)));
    CU(cudaMemcpy(d + offset, h, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}

static void activations(int64_t n, int offset) {
    float *x = malloc((size_t)n * 4), *dy = malloc((size_t)n * 4), *dx0 = malloc((size_t)n * 4);
    float *y = malloc((size_t)n * 4), *dx = malloc((size_t)n * 4), *yh = malloc((size_t)n * 4), *dxh = malloc((size_t)n * 4);
    fill(x, n, 8, 1), fill(dy, n, 1, 2), fill(dx0, n, 1, 3);
    for (int act = MAGNA_CUDA_RELU; act <= MAGNA_CUDA_GELU; act++) {
        for (int64_t i = 0; i < n; i++) {
            yh[i] = act == MAGNA_CUDA_RELU ? magna_em_relu(x[i]) : act == MAGNA_CUDA_SIGMOID ? magna_em_sigmoid(x[i])
                                                                                            : magna_em_gelu(x[i]);
            const float saved = act == MAGNA_CUDA_GELU ? x[i] : yh[i];
            dxh[i] = dx0[i] + (act == MAGNA_CUDA_RELU      ? magna_em_relu_backward(saved, dy[i])
                               : act == MAGNA_CUDA_SIGMOID ? magna_em_sigmoid_backward(saved, dy[i])
                                                           : magna_em_gelu_backward(saved, dy[i]));
        }
        float *dxd = to_device(x, n, offset), *dyd = to_device(dy, n, offset), *dgd = to_device(dx0, n, offset);
        float *yd = to_device(x, n, offset);
        CU(magna_cuda_act_forward((magna_cuda_act)act, dxd + offset, yd + offset, n, NULL));
        CU(magna_cuda_act_backward((magna_cuda_act)act, act == MAGNA_CUDA_GELU ? dxd + offset : yd + offset,
                                   dyd + offset, dgd + offset, n, NULL));
        CU(cudaDeviceSynchronize());
        CU(cudaMemcpy(y, yd + offset, (size_t)n * 4, cudaMemcpyDeviceToHost));
        CU(cudaMemcpy(dx, dgd + offset, (size_t)n * 4, cudaMemcpyDeviceToHost));
        const double ey = rel_err(y, yh, n), edx = rel_err(dx, dxh, n);
        printf("act %d n=%lld offset %d: forward %.2e backward %.2e\n", act, (long long)n, offset, ey, edx);
        CHECK(ey <= 1e-5 && edx <= 1e-5, "act %d n=%lld offset %d: forward %.3g backward %.3g", act, (long long)n,
              offset, ey, edx);
        cudaFree(dxd), cudaFree(dyd), cudaFree(dgd), cudaFree(yd);
    }
    free(x), free(dy), free(dx0), free(y), free(dx), free(yh), free(dxh);
}

static void adam(int64_t n, int decoupled) {
    float *w = calloc((size_t)n, 4), *g = calloc((size_t)n, 4), *m = calloc((size_t)n, 4), *v = calloc((size_t)n, 4);
    float *out = malloc((size_t)n * 4);
    fill(w, n, 1, 4);
    float *wd = to_device(w, n, 0), *md = to_device(m, n, 0), *vd = to_device(v, n, 0), *gd = to_device(g, n, 0);
    for (int t = 1; t <= 3; t++) {
        fill(g, n, 1, 10 + (uint64_t)t);
        CU(cudaMemcpy(gd, g, (size_t)n * 4, cudaMemcpyHostToDevice));
        const magna_em_adam k = magna_em_adam_consts(3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, decoupled, t);
        CU(magna_cuda_adam_step(&k, wd, md, vd, gd, n, NULL));
        for (int64_t i = 0; i < n; i++) magna_em_adam_update(&k, w + i, m + i, v + i, g[i]);
    }
    CU(cudaDeviceSynchronize());
    CU(cudaMemcpy(out, wd, (size_t)n * 4, cudaMemcpyDeviceToHost));
    const double ew = rel_err(out, w, n);
    printf("adam%s n=%lld: w %.2e\n", decoupled ? "w" : "", (long long)n, ew);
    CHECK(ew <= 1e-5, "adam n=%lld decoupled %d: w %.3g", (long long)n, decoupled, ew);
    cudaFree(wd), cudaFree(md), cudaFree(vd), cudaFree(gd);
    free(w), free(g), free(m), free(v), free(out);
}

int main(void) {
    char why[256];
    if (!magna_cuda_available(why, sizeof why)) {
        printf("test_cuda_kernels: skipped: %s\n", why);
        return 77;
    }
    printf("test_cuda_kernels: %s\n", why);
    static const int64_t sizes[] = {1, 3, 31, 33, 1023, 4097, 1000003};
    for (int s = 0; s < 7; s++) {
        activations(sizes[s], 0);
        activations(sizes[s], 1);
        adam(sizes[s], 1);
    }
    adam(4097, 0);
    CU(magna_cuda_act_forward(MAGNA_CUDA_GELU, NULL, NULL, 0, NULL)); /* nothing to launch */
    return check_finish("test_cuda_kernels");
}
