/* optimizer.c — SGD (momentum, Nesterov), Adam and AdamW as single fused loops over the flat buffers.
 * The formulas follow torch.optim so results compare one to one. */
#include "../graph/internal.h"
#include "magna/optim.h"

#ifdef MAGNA_HAVE_CUDA
#include "../cuda/kernels.h"
#include "../cuda/ops.h"
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct magna_optimizer {
    magna_graph *g;
    magna_optimizer_opts o;
    float *m, *v; /* momentum / first moment, second moment */
    size_t n;     /* the params it updates: [off, off + n) of the flat buffer (all of it unless sharded) */
    size_t off;
    int64_t steps;
    /* On a CUDA graph the moments live on the device (dm, dv); m and v are their host mirrors, kept
     * coherent the way the graph keeps its params (src/cuda/graph.c). */
    float *dm, *dv;
    bool host_newer, device_newer;
};

magna_optimizer *magna_optimizer_new(magna_graph *g, magna_optimizer_opts opts, magna_error *err) {
    magna_error ignored;
    if (!err) err = &ignored;
    err->status = MAGNA_OK, err->message[0] = '\0';
    if (!g || !g->compiled || !g->params) {
        magna_error_set(err, MAGNA_ERR_STATE, "optimizer: compile the graph before making its optimizer");
        return NULL;
    }
    if (opts.beta1 == 0) opts.beta1 = 0.9f;
    if (opts.beta2 == 0) opts.beta2 = 0.999f;
    if (opts.eps == 0) opts.eps = 1e-8f;
    if (!(opts.lr >= 0) || !(opts.momentum >= 0 && opts.momentum < 1) || !(opts.beta1 > 0 && opts.beta1 < 1) ||
        !(opts.beta2 > 0 && opts.beta2 < 1) || !(opts.weight_decay >= 0) || opts.kind > MAGNA_ADAMW ||
        (opts.nesterov && (opts.kind != MAGNA_SGD || opts.momentum == 0))) {
        magna_error_set(err, MAGNA_ERR_ARG,
                        "optimizer: impossible options (lr %g, momentum %g, nesterov %d, betas %g/%g, weight decay %g): "
                        "lr and decay must be >= 0, momentum and betas in [0, 1), Nesterov needs SGD with momentum",
                        opts.lr, opts.momentum, opts.nesterov, opts.beta1, opts.beta2, opts.weight_decay);
        return NULL;
    }
    magna_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) goto nomem;
    opt->g = g, opt->o = opts, opt->n = g->n_params;
    bool needs_m = opts.kind != MAGNA_SGD || opts.momentum > 0, needs_v = opts.kind != MAGNA_SGD;
    if (needs_m && !(opt->m = calloc(opt->n + 1, sizeof(float)))) goto nomem;
    if (needs_v && !(opt->v = calloc(opt->n + 1, sizeof(float)))) goto nomem;
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA) {
        const size_t bytes = (opt->n + 1) * sizeof(float);
        int e = 0;
        if (needs_m && !(e = cuda_malloc((void **)&opt->dm, bytes))) e = cuda_memset(opt->dm, 0, bytes, cuda_stream(g));
        if (!e && needs_v && !(e = cuda_malloc((void **)&opt->dv, bytes))) e = cuda_memset(opt->dv, 0, bytes, cuda_stream(g));
        if (e) {
            magna_optimizer_free(opt);
            magna_error_set(err, MAGNA_ERR_NOMEM, "optimizer: device memory for its state: %s", cuda_error_string(e));
            return NULL;
        }
    }
#endif
    return opt;
nomem:
    magna_optimizer_free(opt);
    magna_error_set(err, MAGNA_ERR_NOMEM, "optimizer: out of memory");
    return NULL;
}

void magna_optimizer_free(magna_optimizer *opt) {
    if (!opt) return;
    free(opt->m);
    free(opt->v);
#ifdef MAGNA_HAVE_CUDA
    if (opt->dm) cuda_free(opt->dm);
    if (opt->dv) cuda_free(opt->dv);
#endif
    free(opt);
}

/* Adam's update over one contiguous chunk. restrict and simd let it vectorise (the buffers never alias):
 * torch.optim.Adam's formula, with L2 added to the gradient (Adam) or decoupled decay (AdamW, keep < 1). */
typedef struct adam_consts {
    float beta1, beta2, step, rbc2, eps, keep, l2;
} adam_consts;

enum { ADAM_CHUNK = 16384 };

static void adam_chunk(float *restrict w, float *restrict m, float *restrict v, const float *restrict g, int64_t n,
                       const adam_consts *k) {
    const float b1 = k->beta1, b2 = k->beta2, step = k->step, rbc2 = k->rbc2, eps = k->eps, keep = k->keep,
                l2 = k->l2;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i] + l2 * w[i];
        const float mi = b1 * m[i] + (1.0f - b1) * gi, vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi, v[i] = vi;
        w[i] = w[i] * keep - step * mi / (sqrtf(vi) * rbc2 + eps);
    }
}

#ifdef MAGNA_HAVE_CUDA
/* The same step on the device: the moments and params never leave it. */
static void cuda_step(magna_optimizer *opt) {
    magna_graph *g = opt->g;
    const magna_optimizer_opts o = opt->o;
    void *s = cuda_stream(g);
    if (cuda_graph_sync_device(g) != MAGNA_OK) return;
    int e = 0;
    const size_t bytes = opt->n * sizeof(float);
    if (opt->host_newer) { /* someone wrote the moments (a resumed checkpoint) */
        if (opt->dm) e = cuda_h2d(opt->dm, opt->m, bytes, s);
        if (!e && opt->dv) e = cuda_h2d(opt->dv, opt->v, bytes, s);
        opt->host_newer = false;
    }
    float *w = g->dev_params + opt->off;
    const float *grad = g->dev_grads + opt->off;
    if (!e && o.kind == MAGNA_SGD)
        e = magna_cuda_sgd_step(o.lr, o.momentum, o.weight_decay, o.nesterov, opt->steps == 1, w, opt->dm, grad,
                                (int64_t)opt->n, s);
    else if (!e) {
        const magna_em_adam k = magna_em_adam_consts(o.lr, o.beta1, o.beta2, o.eps, o.weight_decay,
                                                     o.kind == MAGNA_ADAMW, opt->steps);
        e = magna_cuda_adam_step(&k, w, opt->dm, opt->dv, grad, (int64_t)opt->n, s);
    }
    cuda_fail(g, e, "optimizer step");
    g->device_newer = opt->device_newer = true;
}
#endif

void magna_optimizer_step(magna_optimizer *opt) {
#ifdef MAGNA_HAVE_CUDA
    if (opt->g->device == MAGNA_DEVICE_CUDA) {
        opt->steps++;
        cuda_step(opt);
        return;
    }
#endif
    float *w = opt->g->params + opt->off;
    const float *grad = opt->g->grads + opt->off;
    const magna_optimizer_opts o = opt->o;
    const int64_t n = (int64_t)opt->n;
    opt->steps++;
    if (o.kind == MAGNA_SGD) {
        float *m = opt->m;
PARALLEL_FOR(n > 65536, i, n, 
            float gi = grad[i] + o.weight_decay * w[i];
            if (m) { /* torch: buf = momentum * buf + g; step = nesterov ? g + momentum * buf : buf */
                m[i] = opt->steps == 1 ? gi : o.momentum * m[i] + gi;
                gi = o.nesterov ? gi + o.momentum * m[i] : m[i];
            }
            w[i] -= o.lr * gi;
        );
        return;
    }
    float *m = opt->m, *v = opt->v;
    const float bc1 = 1.0f - powf(o.beta1, (float)opt->steps), bc2 = 1.0f - powf(o.beta2, (float)opt->steps);
    const float keep = o.kind == MAGNA_ADAMW ? 1.0f - o.lr * o.weight_decay : 1.0f;
    const float l2 = o.kind == MAGNA_ADAMW ? 0.0f : o.weight_decay;
    const adam_consts k = {o.beta1, o.beta2, o.lr / bc1, 1.0f / sqrtf(bc2), o.eps, keep, l2};
    const int64_t chunks = (n + ADAM_CHUNK - 1) / ADAM_CHUNK;
    PARALLEL_FOR(n > 65536, c, chunks, {
        const int64_t from = c * ADAM_CHUNK, count = n - from < ADAM_CHUNK ? n - from : ADAM_CHUNK;
        adam_chunk(w + from, m + from, v + from, grad + from, count, &k);
    });
}

void magna_optimizer_set_lr(magna_optimizer *opt, float lr) { opt->o.lr = lr; }
float magna_optimizer_lr(const magna_optimizer *opt) { return opt->o.lr; }
int64_t magna_optimizer_steps(const magna_optimizer *opt) { return opt->steps; }
void magna_optimizer_set_steps(magna_optimizer *opt, int64_t steps) { opt->steps = steps; }
magna_optimizer_kind magna_optimizer_get_kind(const magna_optimizer *opt) { return opt->o.kind; }
float *magna_optimizer_state(magna_optimizer *opt, int k, size_t *count) {
    float *s = k == 0 ? opt->m : k == 1 ? opt->v : NULL;
#ifdef MAGNA_HAVE_CUDA
    if (s && opt->g->device == MAGNA_DEVICE_CUDA) { /* the caller reads and may write the mirror */
        if (opt->device_newer) {
            void *st = cuda_stream(opt->g);
            int e = 0;
            if (opt->dm) e = cuda_d2h(opt->m, opt->dm, opt->n * sizeof(float), st);
            if (!e && opt->dv) e = cuda_d2h(opt->v, opt->dv, opt->n * sizeof(float), st);
            if (!e) e = cuda_stream_sync(st);
            if (cuda_fail(opt->g, e, "copying the optimizer state from the device") != MAGNA_OK) return NULL;
            opt->device_newer = false;
        }
        opt->host_newer = true;
    }
#endif
    if (count) *count = s ? opt->n : 0;
    return s;
}

size_t magna_optimizer_state_bytes(const magna_optimizer *opt) {
    return ((opt->m ? opt->n : 0) + (opt->v ? opt->n : 0)) * sizeof(float);
}

size_t magna_optimizer_range(const magna_optimizer *opt, size_t *count, size_t *total) {
    if (count) *count = opt->n;
    if (total) *total = opt->g->n_params;
    return opt->off;
}

magna_status magna_optimizer_shard(magna_optimizer *opt, size_t offset, size_t count, magna_error *err) {
    if (offset == opt->off && count == opt->n) return MAGNA_OK;
    if (opt->off != 0 || opt->n != opt->g->n_params || offset > opt->n || count > opt->n - offset)
        return magna_error_set(err, MAGNA_ERR_ARG,
                               "optimizer: cannot shard params [%zu, %zu) from [%zu, %zu) of %zu: shard a whole "
                               "optimizer once", offset, offset + count, opt->off, opt->off + opt->n, opt->g->n_params);
#ifdef MAGNA_HAVE_CUDA
    /* on CUDA the slice is cut from the host mirrors, the newest state brought down first */
    const bool cuda = opt->g->device == MAGNA_DEVICE_CUDA;
    if (cuda && opt->m && !magna_optimizer_state(opt, 0, NULL))
        return magna_error_set(err, MAGNA_ERR_STATE, "optimizer: %s", magna_graph_errmsg(opt->g));
#endif
    /* the slice's state moves into buffers of its own size: the memory ZeRO saves */
    float *keep[2] = {opt->m, opt->v}, *slice[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        if (!keep[k]) continue;
        if (!(slice[k] = malloc((count + 1) * sizeof(float)))) {
            free(slice[0]);
            return magna_error_set(err, MAGNA_ERR_NOMEM, "optimizer: out of memory");
        }
        memcpy(slice[k], keep[k] + offset, count * sizeof(float));
    }
    free(opt->m), free(opt->v);
    opt->m = slice[0], opt->v = slice[1];
    opt->off = offset, opt->n = count;
#ifdef MAGNA_HAVE_CUDA
    if (cuda) { /* and on the device too: buffers of the slice's size, filled from the mirrors at the next step */
        float **dev[2] = {&opt->dm, &opt->dv};
        for (int k = 0; k < 2; k++) {
            if (!*dev[k]) continue;
            cuda_free(*dev[k]);
            *dev[k] = NULL;
            const int e = cuda_malloc((void **)dev[k], (count + 1) * sizeof(float));
            if (e) return magna_error_set(err, MAGNA_ERR_NOMEM, "optimizer: device memory for its state slice: %s",
                                          cuda_error_string(e));
        }
        opt->host_newer = true, opt->device_newer = false;
    }
#endif
    return MAGNA_OK;
}

float magna_clip_grad_norm(magna_graph *g, float max_norm) {
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA) {
        float ss = 0;
        if (cuda_grads_reduce(g, 0, &ss) != MAGNA_OK) return NAN;
        const float norm = sqrtf(ss);
        if (norm > max_norm && norm > 0)
            cuda_fail(g, magna_cuda_scale(max_norm / norm, g->dev_grads, (int64_t)g->n_params, cuda_stream(g)),
                      "clipping the gradients");
        return norm;
    }
#endif
    const int64_t n = (int64_t)g->n_params;
    float *grad = g->grads;
    double ss = 0;
PARALLEL_FOR_REDUCE(n > 65536, +, ss, i, n, ss += (double)grad[i] * grad[i];);
    float norm = (float)sqrt(ss);
    if (norm > max_norm && norm > 0) {
        float k = max_norm / norm;
PARALLEL_FOR(n > 65536, i, n, grad[i] *= k;);
    }
    return norm;
}

bool magna_grads_finite(magna_graph *g) {
#ifdef MAGNA_HAVE_CUDA
    if (g->device == MAGNA_DEVICE_CUDA) {
        float bad = 0;
        return cuda_grads_reduce(g, 1, &bad) == MAGNA_OK && bad == 0;
    }
#endif
    const int64_t n = (int64_t)g->n_params;
    int bad = 0;
PARALLEL_FOR_REDUCE(n > 65536, |, bad, i, n, bad |= !isfinite(g->grads[i]););
    return !bad;
}

float magna_schedule_lr(const magna_schedule *s, float base, int64_t step, int64_t total) {
    if (!s) return base;
    if (step < s->warmup_steps) return base * (float)(step + 1) / (float)s->warmup_steps;
    const int64_t t = step - s->warmup_steps;
    const double size = s->step_size > 0 ? (double)s->step_size : 1.0;
    switch (s->kind) {
    case MAGNA_SCHEDULE_CONSTANT: return base;
    case MAGNA_SCHEDULE_STEP: return base * powf(s->gamma > 0 ? s->gamma : 0.1f, (float)floor((double)t / size));
    case MAGNA_SCHEDULE_EXPONENTIAL: return base * powf(s->gamma > 0 ? s->gamma : 0.96f, (float)((double)t / size));
    case MAGNA_SCHEDULE_COSINE: {
        const int64_t span = s->decay_steps > 0 ? s->decay_steps : total - s->warmup_steps;
        if (span <= 0 || t >= span) return s->min_lr;
        return s->min_lr + (base - s->min_lr) * 0.5f * (1.0f + (float)cos(3.14159265358979323846 * (double)t / (double)span));
    }
    }
    return base;
}
