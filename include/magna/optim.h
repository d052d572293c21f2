/* magna/optim.h — optimizers over the graph's flat parameter and gradient buffers.
 * A step is one fused loop over every parameter; the state (momentum, Adam's moments) lives in flat
 * buffers of the same layout, so a checkpoint is a few large writes. */
#ifndef MAGNA_OPTIM_H
#define MAGNA_OPTIM_H

#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum magna_optimizer_kind {
    MAGNA_SGD,   /* plain, with momentum, or Nesterov; weight_decay adds wd*w to the gradient (L2) */
    MAGNA_ADAM,  /* weight_decay is L2 added to the gradient, as torch.optim.Adam */
    MAGNA_ADAMW, /* weight_decay is decoupled: w -= lr*wd*w, as torch.optim.AdamW */
} magna_optimizer_kind;

typedef struct magna_optimizer_opts {
    magna_optimizer_kind kind;
    float lr;
    float momentum; /* SGD */
    bool nesterov;  /* SGD */
    float beta1, beta2, eps; /* Adam; 0 means 0.9, 0.999, 1e-8 */
    float weight_decay;
} magna_optimizer_opts;

typedef struct magna_optimizer magna_optimizer;

/* Compile the graph first: the optimizer sizes its state from the flat parameter buffer. */
magna_optimizer *magna_optimizer_new(magna_graph *g, magna_optimizer_opts opts, magna_error *err);
void magna_optimizer_free(magna_optimizer *opt);
/* One update from the accumulated gradients (it does not zero them). */
void magna_optimizer_step(magna_optimizer *opt);
void magna_optimizer_set_lr(magna_optimizer *opt, float lr);
float magna_optimizer_lr(const magna_optimizer *opt);
int64_t magna_optimizer_steps(const magna_optimizer *opt);
/* Puts back the step count of a resumed run (Adam's bias correction, SGD momentum's first step depend on it). */
void magna_optimizer_set_steps(magna_optimizer *opt, int64_t steps);
magna_optimizer_kind magna_optimizer_get_kind(const magna_optimizer *opt);
/* State buffer k (0: momentum or Adam's m, 1: Adam's v), same layout as the params; NULL if none.
 * For a sharded optimizer, the state of its slice only (count = the slice's length). */
float *magna_optimizer_state(magna_optimizer *opt, int k, size_t *count);
/* Bytes of optimizer state this process holds. */
size_t magna_optimizer_state_bytes(const magna_optimizer *opt);
/* ZeRO stage 1: from now on the optimizer keeps state for, and updates, params [offset, offset + count) of the
 * flat buffer only (the slice of the state it had is kept; the rest is freed). Once per optimizer; sharding to
 * the same range again is a no-op. */
magna_status magna_optimizer_shard(magna_optimizer *opt, size_t offset, size_t count, magna_error *err);
/* The first param this optimizer updates (0 unless sharded), in *count how many, in *total the graph's params. */
size_t magna_optimizer_range(const magna_optimizer *opt, size_t *count, size_t *total);

/* ---- learning-rate schedules: lr(step) from the base lr -------------------------------------- */

typedef enum magna_schedule_kind {
    MAGNA_SCHEDULE_CONSTANT = 0,
    MAGNA_SCHEDULE_STEP,        /* base * gamma^floor(t / step_size) */
    MAGNA_SCHEDULE_EXPONENTIAL, /* base * gamma^(t / step_size) */
    MAGNA_SCHEDULE_COSINE,      /* min_lr + (base - min_lr) (1 + cos(pi t / decay_steps)) / 2, then min_lr */
} magna_schedule_kind;

typedef struct magna_schedule {
    magna_schedule_kind kind;
    int64_t warmup_steps; /* linear from base/warmup_steps up to base first; t counts from its end */
    int64_t step_size;    /* STEP, EXPONENTIAL: steps per decay (0 means 1) */
    float gamma;          /* STEP, EXPONENTIAL: factor per step_size (0 means 0.1 for STEP, 0.96 for EXPONENTIAL) */
    int64_t decay_steps;  /* COSINE: length of the decay (0: the whole run, as the caller gives it) */
    float min_lr;         /* COSINE: the floor */
} magna_schedule;

/* The learning rate at optimizer step `step` (0-based) of `total_steps`. */
float magna_schedule_lr(const magna_schedule *s, float base_lr, int64_t step, int64_t total_steps);

/* Scales the gradients so their global L2 norm is at most max_norm; returns the norm before. */
float magna_clip_grad_norm(magna_graph *g, float max_norm);
/* False if any gradient is NaN or Inf (check before the update reaches the weights). */
bool magna_grads_finite(magna_graph *g);

#ifdef __cplusplus
}
#endif
#endif
