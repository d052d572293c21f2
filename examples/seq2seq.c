/* seq2seq.c — an encoder-decoder transformer that reads numbers written in English words and writes their
 * digits ("three hundred forty-two thousand one hundred five" -> "342105"), on data made in process by the
 * library (magna/numbers.h, which `magna train models/seq2seq.ini` uses too): numbers below a million, a
 * seeded tenth of them (by a hash of the number) never used in training and kept for the test. Characters
 * in, digits out; teacher forcing in training; greedy and beam-search decoding at the end.
 *
 *   build/seq2seq [--steps N] [--beam K] [--test N] [--seed S] [--threads T]
 *
 * Model: source characters -> embedding 128 + sinusoidal positions -> 2 pre-LN encoder blocks (4 heads,
 * key padding mask from the source lengths); target: BOS + digits -> embedding + learned positions -> 2
 * decoder blocks (causal self-attention, cross-attention to the encoder with the same padding mask) -> 12
 * logits (digits, BOS, EOS); label padding past EOS is MAGNA_IGNORE_LABEL. AdamW 1e-3 with warm-up and cosine
 * decay, batch 64. The last line: exact_match=... (beam search) greedy_exact_match=... tokens_per_s=...
 * seconds=... */
#include "magna.h"

#include "args.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { BATCH = 64 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- main ---------------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    long long steps = 2000, beam = 4, test_rows = 2000, seed = 42, threads = 0;
    for (int i = 1; i < argc; i++) {
        long long *dst = strcmp(argv[i], "--steps") == 0 ? &steps : strcmp(argv[i], "--beam") == 0 ? &beam
                       : strcmp(argv[i], "--test") == 0 ? &test_rows : strcmp(argv[i], "--seed") == 0 ? &seed
                       : strcmp(argv[i], "--threads") == 0 ? &threads : NULL;
        const long long hi = dst == &beam ? 64 : (long long)1 << 40;
        if (!dst || i + 1 >= argc || !arg_int(argv[i + 1], dst == &beam || dst == &steps || dst == &test_rows, hi, dst)) {
            fprintf(stderr, "usage: seq2seq [--steps N] [--beam K (1..64)] [--test N] [--seed S] [--threads T]\n");
            return 2;
        }
        i++;
    }
    if (threads > 0) magna_set_threads((int)threads);
    printf("%s\n", magna_runtime_info());
    char words[160];
    magna_number_words(342105, words);
    printf("task: \"%s\" -> 342105; numbers below 1e6, a tenth held out for the test\n", words);

    magna_numbers train, test;
    magna_error err;
    const int64_t train_rows = steps * BATCH;
    if (magna_numbers_make(&train, train_rows, (uint64_t)seed, 1, false, &err) != MAGNA_OK ||
        magna_numbers_make(&test, test_rows, (uint64_t)seed, 2, true, &err) != MAGNA_OK) {
        fprintf(stderr, "seq2seq: %s\n", err.message);
        return 1;
    }
    magna_model *m = magna_numbers_model((uint64_t)seed, BATCH,
                                         &(magna_numbers_model_config){.d_model = 128, .heads = 4, .layers = 2});
    magna_compile_opts co = {.loss = MAGNA_LOSS_SPARSE_CE,
                             .optimizer = {.kind = MAGNA_ADAMW, .lr = 1e-3f, .weight_decay = 0.01f},
                             .schedule = {.kind = MAGNA_SCHEDULE_COSINE, .warmup_steps = 200, .min_lr = 1e-5f},
                             .clip_norm = 1.0f,
                             .metrics = MAGNA_METRIC_ACCURACY};
    if (!m || magna_model_compile(m, &co) != MAGNA_OK) {
        fprintf(stderr, "seq2seq: %s\n", m ? magna_model_errmsg(m) : "out of memory");
        return 1;
    }
    magna_model_summary(m, stdout);
    /* one epoch over steps * 64 fresh examples: every training example is seen once */
    magna_dataset d = magna_numbers_dataset(&train);
    magna_history h = {0};
    const double t0 = now();
    if (magna_model_fit(m, &d, NULL, &(magna_fit_opts){.epochs = 1, .verbose = 1}, &h) != MAGNA_OK) {
        fprintf(stderr, "seq2seq: %s\n", magna_model_errmsg(m));
        return 1;
    }
    const double train_seconds = now() - t0;
    const double tokens = (double)train_rows * (MAGNA_NUMBERS_SRC_LEN + MAGNA_NUMBERS_TGT_LEN);

    int *by_greedy = malloc((size_t)test.rows * sizeof *by_greedy), *by_beam = malloc((size_t)test.rows * sizeof *by_beam);
    const int64_t greedy_hits = magna_numbers_decode(m, &test, 1, by_greedy);
    const int64_t beam_hits = magna_numbers_decode(m, &test, (int)beam, by_beam);
    if (greedy_hits < 0 || beam_hits < 0) {
        fprintf(stderr, "seq2seq: %s\n", magna_model_errmsg(m));
        return 1;
    }
    printf("held-out examples (beam %lld):\n", beam);
    for (int64_t r = 0; r < 6 && r < test.rows; r++) {
        magna_number_words(test.number[r], words);
        printf("  %-60s -> %d %s\n", words, by_beam[r], by_beam[r] == test.number[r] ? "" : "(wrong)");
    }
    int shown = 0;
    for (int64_t r = 0; r < test.rows && shown < 4; r++)
        if (by_beam[r] != test.number[r]) {
            magna_number_words(test.number[r], words);
            printf("  mistake: %-51s -> %d (want %d)\n", words, by_beam[r], test.number[r]);
            shown++;
        }
    printf("exact_match=%.4f greedy_exact_match=%.4f train_loss=%.4f tokens_per_s=%.0f seconds=%.2f steps=%lld "
           "beam=%lld test=%lld\n",
           (double)beam_hits / (double)test.rows, (double)greedy_hits / (double)test.rows,
           h.count ? h.epochs[h.count - 1].train.loss : NAN, tokens / train_seconds, now() - t0, steps, beam,
           test_rows);
    free(by_greedy), free(by_beam);
    magna_history_free(&h);
    magna_model_free(m);
    magna_numbers_free(&train), magna_numbers_free(&test);
    return 0;
}
