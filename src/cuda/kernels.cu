/* kernels.cu — the activations' entry points (over elementwise.cu's unary kernels) and Adam/AdamW over the
 * flat parameter buffer, each thread taking `vec` contiguous elements per step of a grid-stride loop. */
#include "compat.h"

#include "kernels.h"
#include "launch.h"

namespace {

__global__ void adam_kernel(magna_launch_1d l, magna_em_adam k, float *__restrict__ w, float *__restrict__ m,
                            float *__restrict__ v, const float *__restrict__ g) {
    const int64_t stride = magna_launch_1d_stride(&l);
    for (int64_t i = magna_launch_1d_first(&l, blockIdx.x, threadIdx.x); i < l.n; i += stride)
        for (uint32_t j = 0; j < l.vec && i + j < l.n; j++) magna_em_adam_update(&k, w + i + j, m + i + j, v + i + j, g[i + j]);
}

} // namespace

/* the activations are three of the unary ops (elementwise.cu): magna_cuda_act's values are their
 * magna_em_unary_op's, and `saved` is x for GELU and y for the others, as those ops read them */
extern "C" int magna_cuda_act_forward(magna_cuda_act act, const float *x, float *y, int64_t n, void *stream) {
    return magna_cuda_unary_forward((int)act, 0.0f, x, y, n, stream);
}

extern "C" int magna_cuda_act_backward(magna_cuda_act act, const float *saved, const float *dy, float *dx, int64_t n,
                                       void *stream) {
    const bool from_x = act == MAGNA_CUDA_GELU;
    return magna_cuda_unary_backward((int)act, 0.0f, from_x ? saved : NULL, from_x ? NULL : saved, dy, dx, n, 0, stream);
}

extern "C" int magna_cuda_adam_step(const magna_em_adam *k, float *w, float *m, float *v, const float *g, int64_t n,
                                    void *stream) {
    /* four contiguous elements a thread, scalar accesses (any alignment); not yet tuned on a GPU */
    const magna_launch_1d l = magna_launch_elementwise(n, 4);
    if (l.grid == 0) return cudaSuccess;
    return magna_cuda_launch(l.grid, l.block, 0, stream, adam_kernel, l, *k, w, m, v, g);
}
