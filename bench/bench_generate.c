/* bench_generate.c — what the KV cache buys when a GPT writes text: milliseconds per generated token with and
 * without the cache, for the char GPT of examples/char_lm.c (4 layers, 4 heads, d 128, vocabulary 113) with a
 * context of 256, a 1-token prompt and 255 new tokens (so the last tokens see the whole context).
 *
 *   build/bench_generate [--tokens N] [--repeats R] [--threads T]
 *
 * Without the cache every token runs the whole window again (the reference the cache is tested against in
 * tests/test_transformer.c); with it, one position against the cached keys and values. Weights are the
 * model's initial ones (the speed does not depend on them); sampling is greedy. Reports the median of R runs. */
#include "magna.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

int main(int argc, char **argv) {
    int tokens = 256, repeats = 5, threads = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--tokens") == 0) tokens = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--repeats") == 0) repeats = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_generate [--tokens N] [--repeats R] [--threads T]\n");
            return 2;
        }
    }
    if (tokens < 2 || repeats < 1 || repeats > 99) {
        fprintf(stderr, "bench_generate: --tokens must be >= 2 and --repeats in 1..99\n");
        return 2;
    }
    if (threads > 0) magna_set_threads(threads);
    const magna_gpt_config cfg = {.vocab = 113, .context = tokens, .d_model = 128, .heads = 4, .layers = 4};
    magna_graph *g = magna_graph_new(42);
    magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, (int64_t[]){1, cfg.context});
    magna_graph_keep(g, magna_gpt(g, "gpt", ids, &cfg, NULL, NULL));
    if (magna_graph_compile(g, NULL) != MAGNA_OK) {
        fprintf(stderr, "bench_generate: %s\n", magna_graph_errmsg(g));
        return 1;
    }
    printf("%s\n", magna_runtime_info());
    printf("GPT 4 layers, 4 heads, d 128, vocabulary 113, context %d: 1 prompt token + %d generated, greedy, "
           "median of %d\n", tokens, tokens - 1, repeats);
    double ms[2];
    int32_t *out[2];
    for (int cached = 0; cached < 2; cached++) {
        magna_error err;
        magna_gpt_generator *gen = magna_gpt_generator_new(g, "gpt", &cfg, cached, &err);
        if (!gen) {
            fprintf(stderr, "bench_generate: %s\n", err.message);
            return 1;
        }
        out[cached] = malloc((size_t)tokens * sizeof *out[cached]);
        double t[99];
        const int32_t prompt = 1;
        magna_gpt_generate(gen, &prompt, 1, tokens - 1, &(magna_sampling){0}, out[cached]); /* warm-up */
        for (int r = 0; r < repeats; r++) {
            const double t0 = now_s();
            if (magna_gpt_generate(gen, &prompt, 1, tokens - 1, &(magna_sampling){0}, out[cached]) != MAGNA_OK) {
                fprintf(stderr, "bench_generate: %s\n", magna_gpt_generator_errmsg(gen));
                return 1;
            }
            t[r] = now_s() - t0;
        }
        sort_doubles(t, repeats);
        ms[cached] = 1e3 * t[repeats / 2] / (tokens - 1);
        magna_gpt_generator_free(gen);
    }
    const bool same = memcmp(out[0], out[1], (size_t)(tokens - 1) * sizeof(int32_t)) == 0;
    printf("| generation | ms/token | tokens/s |\n| --- | ---: | ---: |\n");
    printf("| full window each token | %.3f | %.0f |\n| KV cache | %.3f | %.0f |\n", ms[0], 1e3 / ms[0], ms[1],
           1e3 / ms[1]);
    printf("kv_cache_speedup=%.1f same_tokens=%s tokens=%d\n", ms[0] / ms[1], same ? "yes" : "no", tokens);
    free(out[0]), free(out[1]);
    magna_graph_free(g);
    return 0;
}
