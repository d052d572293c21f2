/* magna/generate.h — sampling from logits and generating text with a GPT, with or without a KV cache.
 *
 *   magna_gpt_generator *gen = magna_gpt_generator_new(trained_graph, "gpt", &cfg, true, &err);
 *   magna_gpt_generate(gen, prompt, n_prompt, 200, &(magna_sampling){.temperature = 0.8f, .top_k = 40,
 *                                                                  .seed = 7}, out);
 *
 * A generator builds its own small graph for batch 1 with the same parameter names as the trained model
 * and copies the weights in (or loads them from a checkpoint into magna_gpt_generator_graph). With the
 * cache, each new token runs one position through the model against the keys and values kept from
 * earlier positions; without it, each token runs the whole window again (the reference the cache is
 * checked against). */
#ifndef MAGNA_GENERATE_H
#define MAGNA_GENERATE_H

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct magna_sampling {
    float temperature; /* <= 0: greedy (the most likely token) */
    int top_k;         /* > 0: sample among the k most likely tokens only */
    float top_p;       /* in (0, 1): sample among the fewest tokens whose probabilities reach p (nucleus) */
    uint64_t seed;     /* the same seed, logits and counter give the same token */
} magna_sampling;

/* One token id from logits [V]. `counter` picks the random number (pass the position). scratch holds 2 V
 * floats. Ties go to the lower id. */
int32_t magna_sample(const float *logits, int64_t V, const magna_sampling *s, uint64_t counter, float *scratch);

typedef struct magna_gpt_generator magna_gpt_generator;

/* weights: a compiled graph holding the GPT "name" (a trained model's graph), or NULL to load them later
 * into magna_gpt_generator_graph. NULL with err set on failure. */
magna_gpt_generator *magna_gpt_generator_new(magna_graph *weights, const char *name, const magna_gpt_config *cfg,
                                             bool kv_cache, magna_error *err);
void magna_gpt_generator_free(magna_gpt_generator *gen);
magna_graph *magna_gpt_generator_graph(magna_gpt_generator *gen);
const char *magna_gpt_generator_errmsg(const magna_gpt_generator *gen);

/* Forget the context. */
void magna_gpt_generator_reset(magna_gpt_generator *gen);
/* Appends one token to the context and returns the logits [vocab] of the token after it (valid until the
 * next call), or NULL on an error (an id outside the vocabulary). Past the context length the cache keeps
 * the last half of the context and runs it again; without a cache the window slides by one. */
const float *magna_gpt_generator_step(magna_gpt_generator *gen, int32_t token);
/* reset, the prompt (n_prompt >= 1 tokens), then n_new sampled tokens into out. */
magna_status magna_gpt_generate(magna_gpt_generator *gen, const int32_t *prompt, int64_t n_prompt, int64_t n_new,
                                const magna_sampling *s, int32_t *out);

#ifdef __cplusplus
}
#endif
#endif
