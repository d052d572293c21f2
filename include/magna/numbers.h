/* magna/numbers.h — a sequence-to-sequence task made in process: numbers below a million written in English
 * words ("three hundred forty-two thousand one hundred five") to their digits ("342105"); the
 * encoder-decoder transformer that learns it; greedy and beam-search decoding. Used by examples/seq2seq.c
 * and by `magna train models/seq2seq.ini`.
 *
 *   magna_numbers train, test;
 *   magna_numbers_make(&train, 3000 * 64, seed, 1, false, &err);   // fresh examples, held-out numbers never
 *   magna_numbers_make(&test, 2000, seed, 2, true, &err);          // only held-out ones
 *   magna_model *m = magna_numbers_model(seed, 64, &(magna_numbers_model_config){.d_model = 128, .heads = 4,
 *                                                                                .layers = 2});
 *   magna_model_compile(m, ...);
 *   magna_dataset d = magna_numbers_dataset(&train);
 *   magna_model_fit(m, &d, NULL, &fit, &h);
 *   int *decoded = malloc(test.rows * sizeof *decoded);
 *   int64_t hits = magna_numbers_decode(m, &test, 4, decoded);     // beam 4; 1 is greedy
 *
 * Source: characters a=1..z=26, space 27, hyphen 28, padded with 0 to MAGNA_NUMBERS_SRC_LEN (the padding is
 * masked through the source length). Target: digits 0-9, BOS 10, EOS 11; the decoder reads BOS + digits
 * and is trained to write digits + EOS, label padding past EOS being MAGNA_IGNORE_LABEL. */
#ifndef MAGNA_NUMBERS_H
#define MAGNA_NUMBERS_H

#include "train.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MAGNA_NUMBERS_SRC_LEN = 64,   /* source characters (the longest number in words has 59) */
    MAGNA_NUMBERS_TGT_LEN = 8,    /* decoder positions: BOS + 6 digits + 1 */
    MAGNA_NUMBERS_SRC_VOCAB = 29, /* padding, a-z, space, hyphen */
    MAGNA_NUMBERS_TGT_VOCAB = 12, /* digits, BOS, EOS */
    MAGNA_NUMBERS_BOS = 10,
    MAGNA_NUMBERS_EOS = 11,
};

/* rows examples: number[r], src [rows, SRC_LEN], len [rows], tgt_in and labels [rows, TGT_LEN]. */
typedef struct magna_numbers {
    int64_t rows;
    int *number; /* -1 for an example made from words (magna_numbers_from_words) */
    int32_t *src, *len, *tgt_in, *labels;
} magna_numbers;

/* n in 0..999999 in words into out (160 bytes is enough): "three hundred forty-two thousand one hundred five". */
void magna_number_words(int n, char *out);

/* rows examples drawn with (seed, stream): the digit count uniform in 1..6, then the number uniform among
 * those. A tenth of all numbers, picked by a hash of (seed, number), are test numbers: test = false draws
 * only the others, test = true only those, so no test number is ever trained on. */
magna_status magna_numbers_make(magna_numbers *e, int64_t rows, uint64_t seed, uint64_t stream, bool test,
                                magna_error *err);
/* One example from text to translate (its number -1, its labels ignored): lower-case letters, spaces and
 * hyphens, 1..SRC_LEN of them; anything else is an error naming the character and its position. */
magna_status magna_numbers_from_words(magna_numbers *e, const char *words, magna_error *err);
void magna_numbers_free(magna_numbers *e);
/* The examples as the model's inputs (src, then tgt_in, then len) and labels. */
magna_dataset magna_numbers_dataset(const magna_numbers *e);

typedef struct magna_numbers_model_config {
    int64_t d_model;
    int heads, layers; /* the encoder's and the decoder's blocks each */
    int64_t d_ff;      /* 0: 4 d_model */
    float dropout;
} magna_numbers_model_config;

/* The encoder-decoder (not compiled): source characters -> embedding "src_emb" + sinusoidal positions ->
 * `layers` pre-LN encoder blocks (key padding mask from the source length) -> layer norm; BOS + digits ->
 * embedding "tgt_emb" + learned positions -> `layers` decoder blocks (causal self-attention, cross-attention
 * with the same mask) -> layer norm -> "head", 12 logits a position. NULL when out of memory; a bad config
 * shows up at compile, in magna_model_errmsg. */
magna_model *magna_numbers_model(uint64_t seed, int64_t batch, const magna_numbers_model_config *cfg);

/* Decodes every example of e with the model: greedy (beam <= 1) feeds back the most likely token one position
 * at a time; beam search keeps the `beam` (<= 64) best prefixes by total log-probability, a beam that emits
 * EOS competing with its final score. decoded[r] is the number written, or -1 when the output is not 1..7
 * digits then EOS. Returns how many equal e->number[r], or -1 on an error (magna_model_errmsg says). */
int64_t magna_numbers_decode(magna_model *m, const magna_numbers *e, int beam, int *decoded);

#ifdef __cplusplus
}
#endif
#endif
