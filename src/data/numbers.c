/* numbers.c — the words -> digits task of magna/numbers.h: numbers in English words, their digits, and the
 * seeded draw of training and held-out examples. The model and the decoding are in train/numbers.c. */
#include "magna/numbers.h"
#include "../graph/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { S = MAGNA_NUMBERS_SRC_LEN, TT = MAGNA_NUMBERS_TGT_LEN };

static const char *const ones[] = {"zero",    "one",     "two",       "three",    "four",     "five",    "six",
                                   "seven",   "eight",   "nine",      "ten",      "eleven",   "twelve",  "thirteen",
                                   "fourteen", "fifteen", "sixteen",  "seventeen", "eighteen", "nineteen"};
static const char *const tens[] = {"", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"};

/* 1..999 in words, appended to out */
static void below_thousand(int n, char *out) {
    if (n >= 100) {
        strcat(out, ones[n / 100]), strcat(out, " hundred");
        n %= 100;
        if (n) strcat(out, " ");
    }
    if (n >= 20) {
        strcat(out, tens[n / 10]);
        if (n % 10) strcat(out, "-"), strcat(out, ones[n % 10]);
    } else if (n > 0) {
        strcat(out, ones[n]);
    }
}

void magna_number_words(int n, char *out) {
    out[0] = 0;
    if (n <= 0 || n > 999999) {
        strcpy(out, "zero");
        return;
    }
    if (n >= 1000) {
        below_thousand(n / 1000, out), strcat(out, " thousand");
        if (n % 1000) strcat(out, " ");
    }
    if (n % 1000) below_thousand(n % 1000, out);
}

/* A tenth of the numbers, picked by a hash, are only ever test numbers. */
static bool held_out(int n, uint64_t seed) { return magna_rand_u64(seed, 0x7e57, (uint64_t)n) % 10 == 0; }

/* A number with 1..6 digits (the count uniform first, so short numbers are not drowned out). */
static int draw_number(uint64_t seed, uint64_t stream, uint64_t i) {
    static const int lo[7] = {0, 0, 10, 100, 1000, 10000, 100000};
    const int digits = 1 + (int)(magna_rand_u64(seed, stream, 2 * i) % 6);
    return lo[digits] + (int)(magna_rand_u64(seed, stream, 2 * i + 1) % (uint64_t)(lo[digits] * 9 + (digits == 1) * 10));
}

/* Source ids: a=1..z=26, space 27, hyphen 28; 0 pads (masked). -1: not one of them. */
static int32_t src_id(char c) {
    return c == ' ' ? 27 : c == '-' ? 28 : c >= 'a' && c <= 'z' ? (int32_t)(c - 'a' + 1) : -1;
}

static bool alloc_rows(magna_numbers *e, int64_t rows) {
    *e = (magna_numbers){.rows = rows};
    e->number = malloc((size_t)rows * sizeof *e->number);
    e->src = malloc((size_t)rows * S * sizeof *e->src);
    e->len = malloc((size_t)rows * sizeof *e->len);
    e->tgt_in = malloc((size_t)rows * TT * sizeof *e->tgt_in);
    e->labels = malloc((size_t)rows * TT * sizeof *e->labels);
    if (e->number && e->src && e->len && e->tgt_in && e->labels) return true;
    magna_numbers_free(e);
    return false;
}

/* One example: source ids, their length, the decoder's input (BOS + digits, BOS-padded) and labels (digits +
 * EOS, then ignored). */
static void encode(int n, int32_t *src, int32_t *len, int32_t *tgt_in, int32_t *labels) {
    char words[160], digits[16];
    magna_number_words(n, words);
    const int L = (int)strlen(words);
    for (int i = 0; i < S; i++) src[i] = i < L ? src_id(words[i]) : 0;
    *len = L;
    snprintf(digits, sizeof digits, "%d", n);
    const int nd = (int)strlen(digits);
    for (int t = 0; t < TT; t++) {
        tgt_in[t] = t == 0 ? MAGNA_NUMBERS_BOS : t <= nd ? digits[t - 1] - '0' : MAGNA_NUMBERS_BOS;
        labels[t] = t < nd ? digits[t] - '0' : t == nd ? MAGNA_NUMBERS_EOS : MAGNA_IGNORE_LABEL;
    }
}

magna_status magna_numbers_make(magna_numbers *e, int64_t rows, uint64_t seed, uint64_t stream, bool test,
                                magna_error *err) {
    *e = (magna_numbers){0};
    if (rows < 1) return magna_error_set(err, MAGNA_ERR_ARG, "numbers: %lld examples asked for", (long long)rows);
    if (!alloc_rows(e, rows)) return magna_error_set(err, MAGNA_ERR_NOMEM, "numbers: out of memory for %lld examples",
                                                     (long long)rows);
    for (int64_t r = 0, i = 0; r < rows; i++) {
        const int n = draw_number(seed, stream, (uint64_t)i);
        if (held_out(n, seed) != test) continue;
        e->number[r] = n;
        encode(n, e->src + r * S, e->len + r, e->tgt_in + r * TT, e->labels + r * TT);
        r++;
    }
    if (err) err->status = MAGNA_OK, err->message[0] = 0;
    return MAGNA_OK;
}

magna_status magna_numbers_from_words(magna_numbers *e, const char *words, magna_error *err) {
    *e = (magna_numbers){0};
    const size_t L = strlen(words);
    if (L < 1 || L > S)
        return magna_error_set(err, MAGNA_ERR_ARG, "numbers: the words must be 1 to %d characters (got %zu)", S, L);
    for (size_t i = 0; i < L; i++)
        if (src_id(words[i]) < 0)
            return magna_error_set(err, MAGNA_ERR_ARG,
                                   "numbers: '%c' (byte 0x%02X) at position %zu: the words take a-z, space and '-' only",
                                   words[i] >= 32 && words[i] < 127 ? words[i] : '?', (unsigned char)words[i], i);
    if (!alloc_rows(e, 1)) return magna_error_set(err, MAGNA_ERR_NOMEM, "numbers: out of memory");
    e->number[0] = -1;
    for (int i = 0; i < S; i++) e->src[i] = i < (int)L ? src_id(words[i]) : 0;
    e->len[0] = (int32_t)L;
    for (int t = 0; t < TT; t++) e->tgt_in[t] = MAGNA_NUMBERS_BOS, e->labels[t] = MAGNA_IGNORE_LABEL;
    if (err) err->status = MAGNA_OK, err->message[0] = 0;
    return MAGNA_OK;
}

void magna_numbers_free(magna_numbers *e) {
    free(e->number), free(e->src), free(e->len), free(e->tgt_in), free(e->labels);
    *e = (magna_numbers){0};
}

magna_dataset magna_numbers_dataset(const magna_numbers *e) {
    return (magna_dataset){.rows = e->rows, .x_i32 = e->src, .more_x_i32 = {e->tgt_in, e->len}, .labels = e->labels};
}
