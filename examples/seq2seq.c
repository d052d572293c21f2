/* seq2seq.c — an encoder-decoder transformer that reads numbers written in English words and writes their
 * digits ("three hundred forty-two thousand one hundred five" -> "342105"), on data generated here: numbers
 * below a million, a seeded tenth of them (by a hash of the number) never used in training and kept for the
 * test. Characters in, digits out; teacher forcing in training; greedy and beam-search decoding at the end.
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

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { S = 64, TT = 8, BATCH = 64, D = 128, HEADS = 4, LAYERS = 2 };
enum { SRC_VOCAB = 29, TGT_VOCAB = 12, BOS = 10, EOS = 11 };

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the task ------------------------------------------------------------------------------------ */

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

/* 0..999999 in words: "three hundred forty-two thousand one hundred five". */
static void number_words(int n, char *out) {
    out[0] = 0;
    if (n == 0) {
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

/* Source ids: a=1..z=26, space 27, hyphen 28; 0 pads (masked). */
static int32_t src_id(char c) { return c == ' ' ? 27 : c == '-' ? 28 : (int32_t)(c - 'a' + 1); }

/* One example: source ids, their length, the decoder's input (BOS + digits, BOS-padded) and labels (digits +
 * EOS, then ignored). */
static void encode(int n, int32_t *src, int32_t *len, int32_t *tgt_in, int32_t *labels) {
    char words[160], digits[16];
    number_words(n, words);
    const int L = (int)strlen(words);
    for (int i = 0; i < S; i++) src[i] = i < L ? src_id(words[i]) : 0;
    *len = L;
    snprintf(digits, sizeof digits, "%d", n);
    const int nd = (int)strlen(digits);
    for (int t = 0; t < TT; t++) {
        tgt_in[t] = t == 0 ? BOS : t <= nd ? digits[t - 1] - '0' : BOS;
        labels[t] = t < nd ? digits[t] - '0' : t == nd ? EOS : MAGNA_IGNORE_LABEL;
    }
}

typedef struct examples {
    int64_t rows;
    int *number;
    int32_t *src, *len, *tgt_in, *labels;
} examples;

static bool examples_make(examples *e, int64_t rows, uint64_t seed, uint64_t stream, bool test) {
    e->rows = rows;
    e->number = malloc((size_t)rows * sizeof *e->number);
    e->src = malloc((size_t)rows * S * sizeof *e->src);
    e->len = malloc((size_t)rows * sizeof *e->len);
    e->tgt_in = malloc((size_t)rows * TT * sizeof *e->tgt_in);
    e->labels = malloc((size_t)rows * TT * sizeof *e->labels);
    if (!e->number || !e->src || !e->len || !e->tgt_in || !e->labels) return false;
    for (int64_t r = 0, i = 0; r < rows; i++) {
        const int n = draw_number(seed, stream, (uint64_t)i);
        if (held_out(n, seed) != test) continue;
        e->number[r] = n;
        encode(n, e->src + r * S, e->len + r, e->tgt_in + r * TT, e->labels + r * TT);
        r++;
    }
    return true;
}

static void examples_free(examples *e) {
    free(e->number), free(e->src), free(e->len), free(e->tgt_in), free(e->labels);
}

static magna_dataset dataset_of(const examples *e, const int32_t *tgt_in) {
    return (magna_dataset){.rows = e->rows, .x_i32 = e->src, .more_x_i32 = {tgt_in, e->len}, .labels = e->labels};
}

/* ---- the model ----------------------------------------------------------------------------------- */

static magna_model *build(uint64_t seed) {
    magna_model *m = magna_model_new(seed, BATCH);
    if (!m) return NULL;
    magna_graph *g = magna_model_graph(m);
    magna_node *src = magna_model_input(m, "src", MAGNA_I32, 1, (int64_t[]){S});
    magna_node *tgt = magna_model_input(m, "tgt_in", MAGNA_I32, 1, (int64_t[]){TT});
    magna_node *len = magna_reshape(g, magna_model_input(m, "src_len", MAGNA_I32, 1, (int64_t[]){1}), 1,
                                    (int64_t[]){-1});
    magna_node *mem = magna_layer_positional(g, "src_pos", magna_layer_embedding(g, "src_emb", src, SRC_VOCAB, D), S,
                                             MAGNA_POS_SINUSOIDAL, NULL);
    magna_transformer_opts o = {.heads = HEADS, .key_lengths = len, .memory_lengths = len, .depth = LAYERS};
    char name[32];
    for (int l = 0; l < LAYERS; l++) {
        snprintf(name, sizeof name, "enc%d", l);
        mem = magna_layer_transformer_encoder(g, name, mem, o);
    }
    mem = magna_layer_layer_norm(g, "enc_ln", mem, 1e-5f);
    magna_node *h = magna_layer_positional(g, "tgt_pos", magna_layer_embedding(g, "tgt_emb", tgt, TGT_VOCAB, D), TT,
                                           MAGNA_POS_LEARNED, NULL);
    for (int l = 0; l < LAYERS; l++) {
        snprintf(name, sizeof name, "dec%d", l);
        h = magna_layer_transformer_decoder(g, name, h, mem, o);
    }
    h = magna_layer_layer_norm(g, "dec_ln", h, 1e-5f);
    magna_model_set_output(m, magna_layer_dense(g, "head", h, TGT_VOCAB, (magna_dense_opts){0}));
    return m;
}

/* ---- decoding ------------------------------------------------------------------------------------ */

/* Logits [rows, TT, V] for the decoder inputs in tgt_in. */
static bool decoder_logits(magna_model *m, const examples *e, const int32_t *tgt_in, float *logits) {
    magna_dataset d = dataset_of(e, tgt_in);
    if (magna_model_predict(m, &d, logits) != MAGNA_OK) {
        fprintf(stderr, "seq2seq: %s\n", magna_model_errmsg(m));
        return false;
    }
    return true;
}

static int digits_value(const int32_t *t, int n) { /* -1 when not 1..7 digits */
    if (n < 1 || n > 7) return -1;
    int v = 0;
    for (int i = 0; i < n; i++) v = v * 10 + t[i];
    return v;
}

/* Greedy: one position at a time, the most likely token fed back. Returns the exact-match count. */
static int64_t greedy(magna_model *m, const examples *e, float *logits, int *decoded) {
    int32_t *in = malloc((size_t)e->rows * TT * sizeof *in), *out = calloc((size_t)e->rows * TT, sizeof *out);
    int *done = calloc((size_t)e->rows, sizeof *done);
    for (int64_t i = 0; i < e->rows * TT; i++) in[i] = BOS;
    for (int t = 0; t < TT; t++) {
        if (!decoder_logits(m, e, in, logits)) break;
        for (int64_t r = 0; r < e->rows; r++) {
            if (done[r]) continue;
            const float *z = logits + (r * TT + t) * TGT_VOCAB;
            int best = 0;
            for (int v = 1; v < TGT_VOCAB; v++) best = z[v] > z[best] ? v : best;
            if (best == EOS || best == BOS) {
                done[r] = t + 1;
                continue;
            }
            out[r * TT + t] = best;
            if (t + 1 < TT) in[r * TT + t + 1] = best;
        }
    }
    int64_t hits = 0;
    for (int64_t r = 0; r < e->rows; r++) {
        decoded[r] = done[r] ? digits_value(out + r * TT, done[r] - 1) : -1;
        hits += decoded[r] == e->number[r];
    }
    free(in), free(out), free(done);
    return hits;
}

/* Beam search with K beams per example: the K best prefixes by total log-probability; a beam that emits EOS
 * is finished and competes with its final score. The rows of `beams` are examples x K. */
static int64_t beam_search(magna_model *m, const examples *e, int K, int *decoded) {
    const int64_t N = e->rows, R = N * K;
    examples b = {.rows = R};
    b.number = malloc((size_t)R * sizeof *b.number);
    b.src = malloc((size_t)R * S * sizeof *b.src);
    b.len = malloc((size_t)R * sizeof *b.len);
    b.labels = malloc((size_t)R * TT * sizeof *b.labels);
    int32_t *in = malloc((size_t)R * TT * sizeof *in), *next = malloc((size_t)R * TT * sizeof *next);
    double *score = malloc((size_t)R * sizeof *score), *next_score = malloc((size_t)R * sizeof *next_score);
    int *finished = calloc((size_t)R, sizeof *finished), *next_finished = malloc((size_t)R * sizeof *next_finished);
    float *logits = malloc((size_t)R * TT * TGT_VOCAB * sizeof *logits);
    for (int64_t r = 0; r < R; r++) {
        const int64_t x = r / K;
        memcpy(b.src + r * S, e->src + x * S, S * sizeof *b.src);
        b.len[r] = e->len[x], b.number[r] = e->number[x];
        for (int t = 0; t < TT; t++) in[r * TT + t] = BOS, b.labels[r * TT + t] = MAGNA_IGNORE_LABEL;
        b.labels[r * TT] = 0;
        score[r] = r % K == 0 ? 0.0 : -INFINITY; /* K copies of one start: expand only the first */
    }
    for (int t = 0; t < TT; t++) {
        if (!decoder_logits(m, &b, in, logits)) break;
        for (int64_t x = 0; x < N; x++) {
            /* candidates: each live beam extended by each token, or a finished beam as it is */
            double cand[64 * TGT_VOCAB];
            int from[64 * TGT_VOCAB], tok[64 * TGT_VOCAB], nc = 0;
            for (int k = 0; k < K; k++) {
                const int64_t r = x * K + k;
                if (score[r] == -INFINITY) continue;
                if (finished[r]) {
                    cand[nc] = score[r], from[nc] = k, tok[nc++] = -1;
                    continue;
                }
                const float *z = logits + (r * TT + t) * TGT_VOCAB;
                double mx = z[0], sum = 0;
                for (int v = 1; v < TGT_VOCAB; v++) mx = z[v] > mx ? z[v] : mx;
                for (int v = 0; v < TGT_VOCAB; v++) sum += exp(z[v] - mx);
                for (int v = 0; v < TGT_VOCAB; v++)
                    if (v != BOS) cand[nc] = score[r] + z[v] - mx - log(sum), from[nc] = k, tok[nc++] = v;
            }
            for (int k = 0; k < K; k++) { /* pick the K best, ties to the earlier candidate */
                const int64_t r = x * K + k;
                int best = -1;
                for (int c = 0; c < nc; c++)
                    if (from[c] >= 0 && (best < 0 || cand[c] > cand[best])) best = c;
                if (best < 0) {
                    next_score[r] = -INFINITY, next_finished[r] = 1;
                    memcpy(next + r * TT, in + (x * K) * TT, TT * sizeof *next);
                    continue;
                }
                const int64_t src_row = x * K + from[best];
                memcpy(next + r * TT, in + src_row * TT, TT * sizeof *next);
                next_score[r] = cand[best];
                next_finished[r] = finished[src_row];
                if (tok[best] == EOS) next_finished[r] = t + 1;
                else if (tok[best] >= 0 && t + 1 < TT) next[r * TT + t + 1] = tok[best];
                else if (tok[best] >= 0) next_finished[r] = TT + 1; /* ran out of room: no EOS */
                from[best] = -1;
            }
        }
        int32_t *ti = in; in = next, next = ti;
        double *ts = score; score = next_score, next_score = ts;
        int *tf = finished; finished = next_finished, next_finished = tf;
    }
    int64_t hits = 0;
    for (int64_t x = 0; x < N; x++) {
        int64_t best = -1;
        for (int k = 0; k < K; k++) {
            const int64_t r = x * K + k;
            if (finished[r] >= 1 && finished[r] <= TT && (best < 0 || score[r] > score[best])) best = r;
        }
        decoded[x] = best < 0 ? -1 : digits_value(in + best * TT + 1, finished[best] - 1);
        hits += decoded[x] == e->number[x];
    }
    free(in), free(next), free(score), free(next_score), free(finished), free(next_finished), free(logits);
    examples_free(&b);
    return hits;
}

/* ---- main ---------------------------------------------------------------------------------------- */

static bool parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

int main(int argc, char **argv) {
    long long steps = 2000, beam = 4, test_rows = 2000, seed = 42, threads = 0;
    for (int i = 1; i < argc; i++) {
        long long *dst = strcmp(argv[i], "--steps") == 0 ? &steps : strcmp(argv[i], "--beam") == 0 ? &beam
                       : strcmp(argv[i], "--test") == 0 ? &test_rows : strcmp(argv[i], "--seed") == 0 ? &seed
                       : strcmp(argv[i], "--threads") == 0 ? &threads : NULL;
        const long long hi = dst == &beam ? 64 : (long long)1 << 40;
        if (!dst || i + 1 >= argc || !parse_int(argv[i + 1], dst == &beam || dst == &steps || dst == &test_rows, hi, dst)) {
            fprintf(stderr, "usage: seq2seq [--steps N] [--beam K (1..64)] [--test N] [--seed S] [--threads T]\n");
            return 2;
        }
        i++;
    }
    if (threads > 0) magna_set_threads((int)threads);
    printf("%s\n", magna_runtime_info());
    char words[160];
    number_words(342105, words);
    printf("task: \"%s\" -> 342105; numbers below 1e6, a tenth held out for the test\n", words);

    examples train, test;
    const int64_t train_rows = steps * BATCH;
    if (!examples_make(&train, train_rows, (uint64_t)seed, 1, false) ||
        !examples_make(&test, test_rows, (uint64_t)seed, 2, true)) {
        fprintf(stderr, "seq2seq: out of memory\n");
        return 1;
    }
    magna_model *m = build((uint64_t)seed);
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
    magna_dataset d = dataset_of(&train, train.tgt_in);
    magna_history h = {0};
    const double t0 = now();
    if (magna_model_fit(m, &d, NULL, &(magna_fit_opts){.epochs = 1, .verbose = 1}, &h) != MAGNA_OK) {
        fprintf(stderr, "seq2seq: %s\n", magna_model_errmsg(m));
        return 1;
    }
    const double train_seconds = now() - t0;
    const double tokens = (double)train_rows * (S + TT);

    float *logits = malloc((size_t)test.rows * TT * TGT_VOCAB * sizeof *logits);
    int *by_greedy = malloc((size_t)test.rows * sizeof *by_greedy), *by_beam = malloc((size_t)test.rows * sizeof *by_beam);
    const int64_t greedy_hits = greedy(m, &test, logits, by_greedy);
    const int64_t beam_hits = beam_search(m, &test, (int)beam, by_beam);
    printf("held-out examples (beam %lld):\n", beam);
    for (int64_t r = 0; r < 6 && r < test.rows; r++) {
        number_words(test.number[r], words);
        printf("  %-60s -> %d %s\n", words, by_beam[r], by_beam[r] == test.number[r] ? "" : "(wrong)");
    }
    int shown = 0;
    for (int64_t r = 0; r < test.rows && shown < 4; r++)
        if (by_beam[r] != test.number[r]) {
            number_words(test.number[r], words);
            printf("  mistake: %-51s -> %d (want %d)\n", words, by_beam[r], test.number[r]);
            shown++;
        }
    printf("exact_match=%.4f greedy_exact_match=%.4f train_loss=%.4f tokens_per_s=%.0f seconds=%.2f steps=%lld "
           "beam=%lld test=%lld\n",
           (double)beam_hits / (double)test.rows, (double)greedy_hits / (double)test.rows,
           h.count ? h.epochs[h.count - 1].train.loss : NAN, tokens / train_seconds, now() - t0, steps, beam,
           test_rows);
    free(logits), free(by_greedy), free(by_beam);
    magna_history_free(&h);
    magna_model_free(m);
    examples_free(&train), examples_free(&test);
    return 0;
}
