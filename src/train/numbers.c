/* numbers.c — the encoder-decoder of the words -> digits task (magna/numbers.h) and its greedy and
 * beam-search decoding, run through magna_model_predict on the whole decoder input each position. */
#include "magna/numbers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { S = MAGNA_NUMBERS_SRC_LEN, TT = MAGNA_NUMBERS_TGT_LEN, V = MAGNA_NUMBERS_TGT_VOCAB };
enum { BOS = MAGNA_NUMBERS_BOS, EOS = MAGNA_NUMBERS_EOS, MAX_BEAM = 64 };

magna_model *magna_numbers_model(uint64_t seed, int64_t batch, const magna_numbers_model_config *cfg) {
    magna_model *m = magna_model_new(seed, batch);
    if (!m) return NULL;
    magna_graph *g = magna_model_graph(m);
    magna_node *src = magna_model_input(m, "src", MAGNA_I32, 1, (int64_t[]){S});
    magna_node *tgt = magna_model_input(m, "tgt_in", MAGNA_I32, 1, (int64_t[]){TT});
    magna_node *len = magna_reshape(g, magna_model_input(m, "src_len", MAGNA_I32, 1, (int64_t[]){1}), 1,
                                    (int64_t[]){-1});
    const int64_t D = cfg->d_model;
    magna_node *mem = magna_layer_positional(g, "src_pos", magna_layer_embedding(g, "src_emb", src, MAGNA_NUMBERS_SRC_VOCAB, D),
                                             S, MAGNA_POS_SINUSOIDAL, NULL);
    magna_transformer_opts o = {.heads = cfg->heads, .d_ff = cfg->d_ff, .dropout = cfg->dropout, .key_lengths = len,
                                .memory_lengths = len, .depth = cfg->layers};
    char name[32];
    for (int l = 0; l < cfg->layers; l++) {
        snprintf(name, sizeof name, "enc%d", l);
        mem = magna_layer_transformer_encoder(g, name, mem, o);
    }
    mem = magna_layer_layer_norm(g, "enc_ln", mem, 1e-5f);
    magna_node *h = magna_layer_positional(g, "tgt_pos", magna_layer_embedding(g, "tgt_emb", tgt, V, D), TT,
                                           MAGNA_POS_LEARNED, NULL);
    for (int l = 0; l < cfg->layers; l++) {
        snprintf(name, sizeof name, "dec%d", l);
        h = magna_layer_transformer_decoder(g, name, h, mem, o);
    }
    h = magna_layer_layer_norm(g, "dec_ln", h, 1e-5f);
    magna_model_set_output(m, magna_layer_dense(g, "head", h, V, (magna_dense_opts){0}));
    return m;
}

/* Logits [rows, TT, V] for the decoder inputs in tgt_in. */
static bool decoder_logits(magna_model *m, const magna_numbers *e, const int32_t *tgt_in, float *logits) {
    magna_dataset d = magna_numbers_dataset(e);
    d.more_x_i32[0] = tgt_in;
    return magna_model_predict(m, &d, logits) == MAGNA_OK;
}

static int digits_value(const int32_t *t, int n) { /* -1 when not 1..7 digits */
    if (n < 1 || n > 7) return -1;
    int v = 0;
    for (int i = 0; i < n; i++) v = v * 10 + t[i];
    return v;
}

/* One position at a time, the most likely token fed back. */
static int64_t greedy(magna_model *m, const magna_numbers *e, int *decoded) {
    int32_t *in = malloc((size_t)e->rows * TT * sizeof *in), *out = calloc((size_t)e->rows * TT, sizeof *out);
    int *done = calloc((size_t)e->rows, sizeof *done);
    float *logits = malloc((size_t)e->rows * TT * V * sizeof *logits);
    int64_t hits = -1;
    if (in && out && done && logits) {
        for (int64_t i = 0; i < e->rows * TT; i++) in[i] = BOS;
        bool ok = true;
        for (int t = 0; t < TT && ok; t++) {
            if (!(ok = decoder_logits(m, e, in, logits))) break;
            for (int64_t r = 0; r < e->rows; r++) {
                if (done[r]) continue;
                const float *z = logits + (r * TT + t) * V;
                int best = 0;
                for (int v = 1; v < V; v++) best = z[v] > z[best] ? v : best;
                if (best == EOS || best == BOS) {
                    done[r] = t + 1;
                    continue;
                }
                out[r * TT + t] = best;
                if (t + 1 < TT) in[r * TT + t + 1] = best;
            }
        }
        if (ok) {
            hits = 0;
            for (int64_t r = 0; r < e->rows; r++) {
                decoded[r] = done[r] ? digits_value(out + r * TT, done[r] - 1) : -1;
                hits += decoded[r] == e->number[r];
            }
        }
    }
    free(in), free(out), free(done), free(logits);
    return hits;
}

/* K beams per example as rows examples x K of one batch; beam 0 starts alone (the K copies of one start
 * would otherwise fill the beams with the same prefix). */
static int64_t beam_search(magna_model *m, const magna_numbers *e, int K, int *decoded) {
    const int64_t N = e->rows, R = N * K;
    magna_numbers b = {.rows = R};
    b.number = malloc((size_t)R * sizeof *b.number);
    b.src = malloc((size_t)R * S * sizeof *b.src);
    b.len = malloc((size_t)R * sizeof *b.len);
    b.labels = malloc((size_t)R * TT * sizeof *b.labels);
    b.tgt_in = malloc((size_t)R * TT * sizeof *b.tgt_in);
    int32_t *next = malloc((size_t)R * TT * sizeof *next);
    double *score = malloc((size_t)R * sizeof *score), *next_score = malloc((size_t)R * sizeof *next_score);
    int *finished = calloc((size_t)R, sizeof *finished), *next_finished = malloc((size_t)R * sizeof *next_finished);
    float *logits = malloc((size_t)R * TT * V * sizeof *logits);
    int64_t hits = -1;
    if (!b.number || !b.src || !b.len || !b.labels || !b.tgt_in || !next || !score || !next_score || !finished ||
        !next_finished || !logits)
        goto done;
    int32_t *in = b.tgt_in;
    for (int64_t r = 0; r < R; r++) {
        const int64_t x = r / K;
        memcpy(b.src + r * S, e->src + x * S, S * sizeof *b.src);
        b.len[r] = e->len[x], b.number[r] = e->number[x];
        for (int t = 0; t < TT; t++) in[r * TT + t] = BOS, b.labels[r * TT + t] = MAGNA_IGNORE_LABEL;
        score[r] = r % K == 0 ? 0.0 : -INFINITY;
    }
    bool ok = true;
    for (int t = 0; t < TT && ok; t++) {
        b.tgt_in = in;
        if (!(ok = decoder_logits(m, &b, in, logits))) break;
        for (int64_t x = 0; x < N; x++) {
            /* candidates: each live beam extended by each token, or a finished beam as it is */
            double cand[MAX_BEAM * V];
            int from[MAX_BEAM * V], tok[MAX_BEAM * V], nc = 0;
            for (int k = 0; k < K; k++) {
                const int64_t r = x * K + k;
                if (score[r] == -INFINITY) continue;
                if (finished[r]) {
                    cand[nc] = score[r], from[nc] = k, tok[nc++] = -1;
                    continue;
                }
                const float *z = logits + (r * TT + t) * V;
                double mx = z[0], sum = 0;
                for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
                for (int v = 0; v < V; v++) sum += exp(z[v] - mx);
                for (int v = 0; v < V; v++)
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
    b.tgt_in = in; /* freed below, whichever buffer it is */
    if (ok) {
        hits = 0;
        for (int64_t x = 0; x < N; x++) {
            int64_t best = -1;
            for (int k = 0; k < K; k++) {
                const int64_t r = x * K + k;
                if (finished[r] >= 1 && finished[r] <= TT && (best < 0 || score[r] > score[best])) best = r;
            }
            decoded[x] = best < 0 ? -1 : digits_value(in + best * TT + 1, finished[best] - 1);
            hits += decoded[x] == e->number[x];
        }
    }
done:
    free(next), free(score), free(next_score), free(finished), free(next_finished), free(logits);
    magna_numbers_free(&b);
    return hits;
}

int64_t magna_numbers_decode(magna_model *m, const magna_numbers *e, int beam, int *decoded) {
    if (beam > MAX_BEAM) beam = MAX_BEAM;
    return beam <= 1 ? greedy(m, e, decoded) : beam_search(m, e, beam, decoded);
}
