/* generate.c — sampling (greedy, temperature, top-k, top-p) and the GPT generator with its KV cache. */
#include "../graph/internal.h"
#include "magna/generate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- sampling ------------------------------------------------------------------------------------ */

static int32_t argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return (int32_t)best;
}

/* Sorting candidates by probability, ties by id, so the result never depends on qsort's order. */
typedef struct cand {
    float p;
    int32_t id;
} cand;

static int by_prob_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int32_t magna_sample(const float *logits, int64_t V, const magna_sampling *s, uint64_t counter, float *scratch) {
    if (V < 1) return -1;
    if (!s || s->temperature <= 0.0f) return argmax(logits, V);
    /* softmax(logits / temperature) into candidates */
    cand *c = (cand *)scratch; /* 2 V floats: V (p, id) pairs */
    float mx = logits[0];
    for (int64_t i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int64_t i = 0; i < V; i++) {
        c[i].p = expf((logits[i] - mx) / s->temperature);
        c[i].id = (int32_t)i;
        sum += c[i].p;
    }
    int64_t n = V;
    const bool truncate = (s->top_k > 0 && s->top_k < V) || (s->top_p > 0.0f && s->top_p < 1.0f);
    if (truncate) {
        qsort(c, (size_t)V, sizeof *c, by_prob_desc);
        if (s->top_k > 0 && s->top_k < n) n = s->top_k;
        double kept = 0.0;
        for (int64_t i = 0; i < n; i++) kept += c[i].p;
        if (s->top_p > 0.0f && s->top_p < 1.0f) { /* the fewest tokens whose mass reaches top_p of what is left */
            double cum = 0.0;
            int64_t m = 0;
            while (m < n && cum < s->top_p * kept) cum += c[m++].p;
            n = m > 0 ? m : 1;
        }
        sum = 0.0;
        for (int64_t i = 0; i < n; i++) sum += c[i].p;
    }
    const double u = magna_rand_uniform(s->seed, 0x9e4e7a7eull, counter) * sum;
    double cum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        cum += c[i].p;
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id; /* u == sum after rounding */
}

/* ---- the GPT generator --------------------------------------------------------------------------- */

struct magna_gpt_generator {
    magna_gpt_config cfg;
    bool cached;
    magna_graph *g;
    magna_node *ids, *positions, *lengths, *logits;
    magna_kv_cache_slot *slots; /* cfg.layers, when cached */
    int32_t *history;           /* the tokens of the context so far (no cache: the window) */
    int64_t n;                  /* tokens in the context */
    float *scratch;             /* 2 V floats for magna_sample */
    char errmsg[512];
};

magna_graph *magna_gpt_generator_graph(magna_gpt_generator *gen) { return gen ? gen->g : NULL; }
const char *magna_gpt_generator_errmsg(const magna_gpt_generator *gen) { return gen ? gen->errmsg : ""; }

void magna_gpt_generator_free(magna_gpt_generator *gen) {
    if (!gen) return;
    magna_graph_free(gen->g);
    free(gen->slots);
    free(gen->history);
    free(gen->scratch);
    free(gen);
}

magna_gpt_generator *magna_gpt_generator_new(magna_graph *weights, const char *name, const magna_gpt_config *cfg,
                                             bool kv_cache, magna_error *err) {
    magna_gpt_generator *gen = calloc(1, sizeof *gen);
    if (!gen) {
        magna_error_set(err, MAGNA_ERR_NOMEM, "gpt generator: out of memory");
        return NULL;
    }
    gen->cfg = *cfg, gen->cached = kv_cache;
    gen->cfg.dropout = 0.0f;
    const int64_t T = cfg->context, D = cfg->d_model;
    gen->g = magna_graph_new(weights ? magna_graph_seed(weights) : 0);
    gen->history = malloc((size_t)(T > 0 ? T : 1) * sizeof *gen->history);
    gen->scratch = malloc((size_t)(2 * (cfg->vocab > 0 ? cfg->vocab : 1)) * sizeof *gen->scratch);
    if (kv_cache) gen->slots = calloc((size_t)(cfg->layers > 0 ? cfg->layers : 1), sizeof *gen->slots);
    if (!gen->g || !gen->history || !gen->scratch || (kv_cache && !gen->slots)) {
        magna_error_set(err, MAGNA_ERR_NOMEM, "gpt generator: out of memory");
        magna_gpt_generator_free(gen);
        return NULL;
    }
    magna_graph *g = gen->g;
    if (kv_cache) {
        gen->ids = magna_input(g, "ids", MAGNA_I32, 2, (int64_t[]){1, 1});
        gen->positions = magna_input_unbatched(g, "positions", MAGNA_I32, 1, (int64_t[]){1});
        gen->lengths = magna_input(g, "lengths", MAGNA_I32, 1, (int64_t[]){1});
        for (int l = 0; l < cfg->layers; l++) {
            char kn[48], vn[48];
            snprintf(kn, sizeof kn, "k_past%d", l), snprintf(vn, sizeof vn, "v_past%d", l);
            gen->slots[l] = (magna_kv_cache_slot){.k_past = magna_input(g, kn, MAGNA_F32, 3, (int64_t[]){1, T, D}),
                                                  .v_past = magna_input(g, vn, MAGNA_F32, 3, (int64_t[]){1, T, D}),
                                                  .lengths = gen->lengths};
        }
    } else {
        gen->ids = magna_input(g, "ids", MAGNA_I32, 2, (int64_t[]){1, T});
    }
    gen->logits = magna_gpt(g, name, gen->ids, &gen->cfg, gen->positions, gen->slots);
    magna_graph_keep(g, gen->logits);
    magna_status st = magna_graph_compile(g, NULL);
    if (st == MAGNA_OK) magna_graph_set_training(g, false);
    if (st == MAGNA_OK && weights) st = magna_graph_copy_weights(g, weights);
    if (st != MAGNA_OK) {
        magna_error_set(err, st, "gpt generator: %s", magna_graph_errmsg(g));
        magna_gpt_generator_free(gen);
        return NULL;
    }
    magna_gpt_generator_reset(gen);
    return gen;
}

void magna_gpt_generator_reset(magna_gpt_generator *gen) {
    if (gen) gen->n = 0;
}

/* One position through the cached graph: token at position n attends to cache rows 0..n-1 and itself. */
static const float *cached_step(magna_gpt_generator *gen, int32_t token) {
    magna_graph *g = gen->g;
    const int64_t D = gen->cfg.d_model;
    const int32_t pos = (int32_t)gen->n;
    magna_node_data_i32(gen->ids)[0] = token;
    magna_node_data_i32(gen->positions)[0] = pos;
    magna_node_data_i32(gen->lengths)[0] = pos + 1;
    if (magna_graph_forward(g) != MAGNA_OK) return NULL;
    for (int l = 0; l < gen->cfg.layers; l++) { /* append this position's key and value to the cache */
        const magna_kv_cache_slot *s = &gen->slots[l];
        memcpy(magna_node_data(s->k_past) + (size_t)pos * D, magna_node_data(s->k_new), (size_t)D * sizeof(float));
        memcpy(magna_node_data(s->v_past) + (size_t)pos * D, magna_node_data(s->v_new), (size_t)D * sizeof(float));
    }
    gen->history[gen->n++] = token;
    return magna_node_data(gen->logits);
}

const float *magna_gpt_generator_step(magna_gpt_generator *gen, int32_t token) {
    const int64_t T = gen->cfg.context, V = gen->cfg.vocab;
    if (token < 0 || token >= V) {
        snprintf(gen->errmsg, sizeof gen->errmsg, "gpt generator: token %d is outside the vocabulary [0, %lld)",
                 token, (long long)V);
        return NULL;
    }
    const float *logits;
    if (gen->cached) {
        if (gen->n == T) { /* full: keep the last half of the context and run it again from position 0 */
            const int64_t keep = T / 2;
            memmove(gen->history, gen->history + T - keep, (size_t)keep * sizeof *gen->history);
            gen->n = 0;
            for (int64_t i = 0; i < keep; i++)
                if (!cached_step(gen, gen->history[i])) goto failed;
        }
        logits = cached_step(gen, token);
    } else {
        if (gen->n == T) { /* slide the window by one */
            memmove(gen->history, gen->history + 1, (size_t)(T - 1) * sizeof *gen->history);
            gen->n--;
        }
        gen->history[gen->n++] = token;
        int32_t *ids = magna_node_data_i32(gen->ids);
        memcpy(ids, gen->history, (size_t)gen->n * sizeof *ids);
        memset(ids + gen->n, 0, (size_t)(T - gen->n) * sizeof *ids); /* causal: later positions never matter */
        /* a padded vocabulary's logits rows are wider than V: the padded ids are never sampled */
        logits = magna_graph_forward(gen->g) == MAGNA_OK
                     ? magna_node_data(gen->logits) + (gen->n - 1) * magna_gpt_padded_vocab(&gen->cfg)
                     : NULL;
    }
    if (logits) return logits;
failed:
    snprintf(gen->errmsg, sizeof gen->errmsg, "gpt generator: %s", magna_graph_errmsg(gen->g));
    return NULL;
}

magna_status magna_gpt_generate(magna_gpt_generator *gen, const int32_t *prompt, int64_t n_prompt, int64_t n_new,
                                const magna_sampling *s, int32_t *out) {
    if (n_prompt < 1 || n_new < 0) {
        snprintf(gen->errmsg, sizeof gen->errmsg, "gpt generate: needs a prompt of at least one token");
        return MAGNA_ERR_ARG;
    }
    magna_gpt_generator_reset(gen);
    const float *logits = NULL;
    for (int64_t i = 0; i < n_prompt; i++)
        if (!(logits = magna_gpt_generator_step(gen, prompt[i]))) return MAGNA_ERR_RANGE;
    for (int64_t i = 0; i < n_new; i++) {
        out[i] = magna_sample(logits, gen->cfg.vocab, s, (uint64_t)(n_prompt + i), gen->scratch);
        if (i + 1 < n_new && !(logits = magna_gpt_generator_step(gen, out[i]))) return MAGNA_ERR_RANGE;
    }
    return MAGNA_OK;
}
