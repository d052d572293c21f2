/* bigram.c — the baseline every language model here must beat: a character bigram model with add-k
 * smoothing, fitted on the first 90% of a corpus and scored on the last 10% in nats per character.
 *
 *   build/bigram [CORPUS] [K]      CORPUS: a file or folder (default /usr/share/games/fortunes), K: 0.1
 *
 * Prints the corpus and vocabulary, a generated sample, and last one key=value line. Characters of the
 * validation text the training text lacks become <unk> (counted and printed). */
#include "magna.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/usr/share/games/fortunes";
    char *end = NULL;
    const double k = argc > 2 ? strtod(argv[2], &end) : 0.1;
    if (argc > 3 || (argc > 2 && (*end || !(k > 0)))) {
        fprintf(stderr, "usage: bigram [CORPUS] [K > 0]\n");
        return 2;
    }
    const double t0 = now();
    magna_error err;
    magna_corpus c;
    magna_tokenizer *tok = NULL;
    int32_t *train = NULL, *val = NULL, *sample = NULL;
    uint8_t *text = NULL;
    int64_t cut, n_train, n_val, n_text;
    magna_bigram m = {0};
    if (magna_corpus_load(path, &c, &err) != MAGNA_OK) {
        fprintf(stderr, "bigram: %s\n", err.message);
        return 1;
    }
    double loss_train = 0, loss_val = 0, t_model = 0;
    int rc = 1;
    if (magna_text_split(c.data, c.size, 0.1, &cut, &err) != MAGNA_OK ||
        magna_tokenizer_train_chars(c.data, cut, /*unk*/ true, &tok, &err) != MAGNA_OK ||
        magna_tokenizer_encode(tok, c.data, cut, &train, &n_train, &err) != MAGNA_OK ||
        magna_tokenizer_encode(tok, c.data + cut, c.size - cut, &val, &n_val, &err) != MAGNA_OK)
        goto out;
    const int32_t V = magna_tokenizer_vocab_size(tok);
    int64_t unknown = 0;
    for (int64_t i = 0; i < n_val; i++) unknown += val[i] == magna_tokenizer_unk_id(tok);
    printf("corpus %s: %d files, %lld bytes; train %lld chars, val %lld chars (%lld <unk>); vocab %d\n", path, c.files,
           (long long)c.size, (long long)n_train, (long long)n_val, (long long)unknown, V);
    const double t1 = now();
    if (magna_bigram_fit(&m, train, n_train, V, k, &err) != MAGNA_OK ||
        magna_bigram_loss(&m, train, n_train, &loss_train, &err) != MAGNA_OK ||
        magna_bigram_loss(&m, val, n_val, &loss_val, &err) != MAGNA_OK)
        goto out;
    t_model = now() - t1;
    const int64_t n_sample = 300;
    if (!(sample = malloc(n_sample * sizeof *sample))) {
        snprintf(err.message, sizeof err.message, "out of memory");
        goto out;
    }
    if (magna_bigram_sample(&m, train[0], n_sample, 42, sample, &err) != MAGNA_OK ||
        magna_tokenizer_decode(tok, sample, n_sample, &text, &n_text, &err) != MAGNA_OK)
        goto out;
    printf("sample (seed 42):\n%s\n", (const char *)text);
    printf("train_loss=%.4f uniform_loss=%.4f k=%g\n", loss_train, log((double)V), k);
    /* tokens/s: characters fitted and scored per second of model time (counting + the two losses) */
    printf("val_loss=%.4f tokens_per_s=%.0f seconds=%.3f\n", loss_val, (double)(2 * n_train + n_val) / t_model, now() - t0);
    rc = 0;
out:
    if (rc) fprintf(stderr, "bigram: %s\n", err.message);
    magna_bigram_free(&m);
    free(train), free(val), free(sample), free(text);
    magna_tokenizer_free(tok);
    magna_corpus_free(&c);
    return rc;
}
