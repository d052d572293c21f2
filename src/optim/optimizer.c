/* optimizer.c — SGD (momentum, Nesterov), Adam and AdamW as single fused loops over the flat buffers.
 * The formulas follow torch.optim so results compare one to one. */
#include "../graph/internal.h"
#include "magna/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct magna_optimizer {
    magna_graph *g;
    magna_optimizer_opts o;
    float *m, *v; /* momentum / first moment, second moment */
    size_t n;
    int64_t steps;
};

magna_optimizer *magna_optimizer_new(magna_graph *g, magna_optimizer_opts opts, magna_error *err) {
    magna_error ignored;
    if (!err) err = &ignored;
    err->status = MAGNA_OK, err->message[0] = '\0';
    if (!g || !g->compiled || !g->params) {
        err->status = MAGNA_ERR_STATE;
        snprintf(err->message, sizeof err->message, "optimizer: compile the graph before making its optimizer");
        return NULL;
    }
    if (opts.beta1 == 0) opts.beta1 = 0.9f;
    if (opts.beta2 == 0) opts.beta2 = 0.999f;
    if (opts.eps == 0) opts.eps = 1e-8f;
    if (!(opts.lr >= 0) || !(opts.momentum >= 0 && opts.momentum < 1) || !(opts.beta1 > 0 && opts.beta1 < 1) ||
        !(opts.beta2 > 0 && opts.beta2 < 1) || !(opts.weight_decay >= 0) || opts.kind > MAGNA_ADAMW ||
        (opts.nesterov && (opts.kind != MAGNA_SGD || opts.momentum == 0))) {
        err->status = MAGNA_ERR_ARG;
        snprintf(err->message, sizeof err->message,
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
    return opt;
nomem:
    magna_optimizer_free(opt);
    err->status = MAGNA_ERR_NOMEM;
    snprintf(err->message, sizeof err->message, "optimizer: out of memory");
    return NULL;
}

void magna_optimizer_free(magna_optimizer *opt) {
    if (!opt) return;
    free(opt->m);
    free(opt->v);
    free(opt);
}

void magna_optimizer_step(magna_optimizer *opt) {
    float *w = opt->g->params;
    const float *grad = opt->g->grads;
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
    const float step = o.lr / bc1, rbc2 = 1.0f / sqrtf(bc2);
    const bool decoupled = o.kind == MAGNA_ADAMW;
PARALLEL_FOR(n > 65536, i, n, 
        float gi = grad[i];
        if (decoupled)
            w[i] -= o.lr * o.weight_decay * w[i];
        else
            gi += o.weight_decay * w[i];
        m[i] = o.beta1 * m[i] + (1.0f - o.beta1) * gi;
        v[i] = o.beta2 * v[i] + (1.0f - o.beta2) * gi * gi;
        w[i] -= step * m[i] / (sqrtf(v[i]) * rbc2 + o.eps);
    );
}

void magna_optimizer_set_lr(magna_optimizer *opt, float lr) { opt->o.lr = lr; }
float magna_optimizer_lr(const magna_optimizer *opt) { return opt->o.lr; }
int64_t magna_optimizer_steps(const magna_optimizer *opt) { return opt->steps; }
float *magna_optimizer_state(magna_optimizer *opt, int k, size_t *count) {
    float *s = k == 0 ? opt->m : k == 1 ? opt->v : NULL;
    if (count) *count = s ? opt->n : 0;
    return s;
}

float magna_clip_grad_norm(magna_graph *g, float max_norm) {
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
