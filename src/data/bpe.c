/* bpe.c — byte-level BPE: pre-splitting into pieces, training, encoding.
 *
 * Training works on distinct pieces with their counts (the fortunes corpus: ~600k pieces, ~60k distinct).
 * Each pair of adjacent ids has a count (summed over pieces, weighted by piece count) and a list of the
 * pieces it occurs in. A max-heap holds (count, pair) entries; an entry whose count no longer matches its
 * pair's is stale and dropped when it surfaces, and every pair whose count changes gets a fresh entry.
 * A merge therefore touches only the pieces that hold its pair: re-count those pieces' pairs (minus
 * before, plus after) and push the pairs that changed. */
#include "tokenizer.h"
#include "../graph/internal.h"

#include <stdlib.h>
#include <string.h>

#define EMPTY UINT64_MAX

static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }

static size_t hash64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k;
}

/* ---- a map from uint64 keys to int32 values (open addressing, linear probing) --------------------- */

typedef struct map {
    uint64_t *keys;
    int32_t *vals;
    size_t cap, len; /* cap: a power of two */
} map;

static bool map_init(map *m, size_t want) {
    size_t c = 64;
    while (c < want * 2) c *= 2;
    m->keys = malloc(c * sizeof *m->keys), m->vals = malloc(c * sizeof *m->vals);
    if (!m->keys || !m->vals) return false;
    memset(m->keys, 0xff, c * sizeof *m->keys);
    m->cap = c, m->len = 0;
    return true;
}

static void map_free(map *m) { free(m->keys), free(m->vals); }

static int32_t map_get(const map *m, uint64_t k) {
    for (size_t i = hash64(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == k) return m->vals[i];
        if (m->keys[i] == EMPTY) return -1;
    }
}

/* Inserts k -> v unless k is there; returns the value k has afterwards, or -2 when out of memory. */
static int32_t map_put(map *m, uint64_t k, int32_t v) {
    if ((m->len + 1) * 2 > m->cap) {
        map old = *m;
        size_t c = m->cap * 2;
        m->keys = malloc(c * sizeof *m->keys), m->vals = malloc(c * sizeof *m->vals);
        if (!m->keys || !m->vals) {
            free(m->keys), free(m->vals), *m = old;
            return -2;
        }
        memset(m->keys, 0xff, c * sizeof *m->keys);
        m->cap = c;
        for (size_t i = 0; i < old.cap; i++)
            if (old.keys[i] != EMPTY) {
                size_t j = hash64(old.keys[i]) & (c - 1);
                while (m->keys[j] != EMPTY) j = (j + 1) & (c - 1);
                m->keys[j] = old.keys[i], m->vals[j] = old.vals[i];
            }
        map_free(&old);
    }
    size_t i = hash64(k) & (m->cap - 1);
    for (; m->keys[i] != EMPTY; i = (i + 1) & (m->cap - 1))
        if (m->keys[i] == k) return m->vals[i];
    m->keys[i] = k, m->vals[i] = v, m->len++;
    return v;
}

/* ---- pieces --------------------------------------------------------------------------------------- */

enum { C_LETTER, C_DIGIT, C_SPACE, C_OTHER };

static int cls(uint8_t c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return C_LETTER;
    if (c >= '0' && c <= '9') return C_DIGIT;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') return C_SPACE;
    return C_OTHER;
}

int64_t bpe_piece(const uint8_t *s, int64_t n, int64_t i) {
    int64_t j = i;
    if (s[i] == ' ' && i + 1 < n && cls(s[i + 1]) != C_SPACE) j = i + 1; /* " word" */
    /* a cap keeps training and encoding linear in the text: merging within one piece costs its length per
     * merge, and a megabyte without a space (a binary file, a base64 blob) would otherwise be one piece */
    const int64_t end = n - i > BPE_MAX_PIECE ? i + BPE_MAX_PIECE : n;
    const int c = cls(s[j]);
    int64_t e = j + 1;
    while (e < end && cls(s[e]) == c) e++;
    /* whitespace before a non-space keeps its last character back: it may start the next piece */
    if (c == C_SPACE && e < n && e - i > 1 && cls(s[e]) != C_SPACE) e--;
    return e - i;
}

/* ---- encoding ------------------------------------------------------------------------------------- */

static int32_t rank_of(const magna_tokenizer *t, int32_t a, int32_t b) {
    const uint64_t k = pair_key(a, b);
    for (size_t i = hash64(k) & (t->rank_cap - 1);; i = (i + 1) & (t->rank_cap - 1)) {
        if (t->rank_keys[i] == k) return t->rank_vals[i];
        if (t->rank_keys[i] == EMPTY) return -1;
    }
}

/* Merges within ids[0..len) the pair of lowest rank, all its occurrences left to right, until no pair
 * has a rank: the order training applied the merges in, so a training piece encodes as it was trained. */
static int64_t merge_piece(const magna_tokenizer *t, int32_t *ids, int64_t len) {
    while (len > 1) {
        int32_t best = -1;
        for (int64_t i = 0; i + 1 < len; i++) {
            const int32_t r = rank_of(t, ids[i], ids[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) best = r;
        }
        if (best < 0) break;
        const int32_t a = t->merges[2 * best], b = t->merges[2 * best + 1], z = 256 + best;
        int64_t w = 0;
        for (int64_t i = 0; i < len; i++) {
            if (i + 1 < len && ids[i] == a && ids[i + 1] == b)
                ids[w++] = z, i++;
            else
                ids[w++] = ids[i];
        }
        len = w;
    }
    return len;
}

int64_t bpe_encode(const magna_tokenizer *t, const uint8_t *text, int64_t n, int32_t *ids) {
    int64_t m = 0;
    for (int64_t i = 0; i < n;) {
        const int64_t len = bpe_piece(text, n, i);
        for (int64_t k = 0; k < len; k++) ids[m + k] = text[i + k];
        m += t->n_merges ? merge_piece(t, ids + m, len) : len;
        i += len;
    }
    return m;
}

magna_status bpe_finish(magna_tokenizer *t, int32_t *dup, int32_t *first, magna_error *err) {
    if (dup) *dup = -1;
    if (first) *first = -1;
    const int32_t V = 256 + t->n_merges;
    map m;
    if (!map_init(&m, (size_t)t->n_merges + 1)) {
        map_free(&m);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer: out of memory for %d merges", t->n_merges);
    }
    for (int32_t i = 0; i < t->n_merges; i++) {
        const int32_t got = map_put(&m, pair_key(t->merges[2 * i], t->merges[2 * i + 1]), i);
        if (got == -2) {
            map_free(&m);
            return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer: out of memory for %d merges", t->n_merges);
        }
        if (got != i) {
            map_free(&m);
            if (dup) *dup = i;
            if (first) *first = got;
            return magna_error_set(err, MAGNA_ERR_FORMAT, "tokenizer: merge %d repeats merge %d", i, got);
        }
    }
    t->rank_keys = m.keys, t->rank_vals = m.vals, t->rank_cap = m.cap;
    /* each id's bytes: a merge's are its two parts' one after the other */
    int64_t *len = malloc((size_t)V * sizeof *len);
    t->off = malloc(((size_t)V + 1) * sizeof *t->off);
    if (!len || !t->off) {
        free(len);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer: out of memory");
    }
    for (int32_t i = 0; i < V; i++)
        len[i] = i < 256 ? 1 : len[t->merges[2 * (i - 256)]] + len[t->merges[2 * (i - 256) + 1]];
    t->off[0] = 0;
    for (int32_t i = 0; i < V; i++) t->off[i + 1] = t->off[i] + len[i];
    free(len);
    if (!(t->blob = malloc((size_t)t->off[V] + 1))) return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer: out of memory");
    for (int32_t i = 0; i < V; i++) {
        if (i < 256) {
            t->blob[t->off[i]] = (uint8_t)i;
            continue;
        }
        const int32_t a = t->merges[2 * (i - 256)], b = t->merges[2 * (i - 256) + 1];
        const int64_t la = t->off[a + 1] - t->off[a];
        memcpy(t->blob + t->off[i], t->blob + t->off[a], (size_t)la);
        memcpy(t->blob + t->off[i] + la, t->blob + t->off[b], (size_t)(t->off[b + 1] - t->off[b]));
    }
    t->vocab = V;
    return MAGNA_OK;
}

/* ---- training ------------------------------------------------------------------------------------- */

typedef struct pair {
    int32_t a, b;
    int64_t count;
    int64_t before; /* count when first touched by the current merge; -1 when untouched */
    int32_t *occ;   /* pieces it (may) occur in; stale entries are checked away */
    int32_t n_occ, cap_occ;
} pair;

typedef struct entry {
    int64_t count;
    int32_t a, b, pair;
} entry;

typedef struct trainer {
    pair *pairs;
    int32_t n_pairs, cap_pairs;
    map index; /* pair key -> index into pairs */
    entry *heap;
    size_t n_heap, cap_heap;
    int32_t *touched; /* pairs touched by the current merge */
    int32_t n_touched, cap_touched;
    bool oom;
} trainer;

/* a before b in the heap: the larger count, then the smaller (a, b) */
static bool above(const entry *x, const entry *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static void heap_push(trainer *tr, entry e) {
    if (tr->n_heap == tr->cap_heap) {
        size_t c = tr->cap_heap ? tr->cap_heap * 2 : 1024;
        entry *h = realloc(tr->heap, c * sizeof *h);
        if (!h) {
            tr->oom = true;
            return;
        }
        tr->heap = h, tr->cap_heap = c;
    }
    size_t i = tr->n_heap++;
    while (i > 0 && above(&e, &tr->heap[(i - 1) / 2])) tr->heap[i] = tr->heap[(i - 1) / 2], i = (i - 1) / 2;
    tr->heap[i] = e;
}

static entry heap_pop(trainer *tr) {
    entry top = tr->heap[0], last = tr->heap[--tr->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= tr->n_heap) break;
        if (c + 1 < tr->n_heap && above(&tr->heap[c + 1], &tr->heap[c])) c++;
        if (!above(&tr->heap[c], &last)) break;
        tr->heap[i] = tr->heap[c], i = c;
    }
    if (tr->n_heap) tr->heap[i] = last;
    return top;
}

static bool grow32(int32_t **p, int32_t *cap, int32_t need) {
    if (need <= *cap) return true;
    int32_t c = *cap ? *cap * 2 : 4;
    while (c < need) c *= 2;
    int32_t *q = realloc(*p, (size_t)c * sizeof *q);
    if (!q) return false;
    *p = q, *cap = c;
    return true;
}

/* The index of pair (a, b), made when new; -1 when out of memory. */
static int32_t pair_index(trainer *tr, int32_t a, int32_t b) {
    const uint64_t k = pair_key(a, b);
    int32_t p = map_get(&tr->index, k);
    if (p >= 0) return p;
    if (tr->n_pairs == tr->cap_pairs) {
        int32_t c = tr->cap_pairs ? tr->cap_pairs * 2 : 4096;
        pair *q = realloc(tr->pairs, (size_t)c * sizeof *q);
        if (!q) return tr->oom = true, -1;
        tr->pairs = q, tr->cap_pairs = c;
    }
    p = tr->n_pairs;
    if (map_put(&tr->index, k, p) == -2) return tr->oom = true, -1;
    tr->pairs[p] = (pair){.a = a, .b = b, .before = -1};
    tr->n_pairs++;
    return p;
}

/* Adds delta to pair (a, b) in piece w; records the piece in its list when `note`. */
static void pair_add(trainer *tr, int32_t a, int32_t b, int64_t delta, int32_t w, bool note) {
    const int32_t p = pair_index(tr, a, b);
    if (p < 0) return;
    pair *q = &tr->pairs[p];
    if (q->before < 0) {
        q->before = q->count;
        if (!grow32(&tr->touched, &tr->cap_touched, tr->n_touched + 1)) return (void)(tr->oom = true);
        tr->touched[tr->n_touched++] = p;
    }
    q->count += delta;
    if (note && (q->n_occ == 0 || q->occ[q->n_occ - 1] != w)) {
        if (!grow32(&q->occ, &q->cap_occ, q->n_occ + 1)) return (void)(tr->oom = true);
        q->occ[q->n_occ++] = w;
    }
}

/* Pushes a fresh heap entry for every touched pair whose count changed, and forgets the touches. */
static void flush_touched(trainer *tr) {
    for (int32_t i = 0; i < tr->n_touched; i++) {
        pair *q = &tr->pairs[tr->touched[i]];
        if (q->count != q->before && q->count > 0)
            heap_push(tr, (entry){.count = q->count, .a = q->a, .b = q->b, .pair = tr->touched[i]});
        q->before = -1;
    }
    tr->n_touched = 0;
}

magna_status magna_tokenizer_train_bpe(const uint8_t *text, int64_t n, int32_t vocab_size, magna_tokenizer **out,
                                       magna_error *err) {
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
    if (!out) return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_train_bpe: out is NULL");
    *out = NULL;
    if (n < 0 || (n > 0 && !text)) return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_train_bpe: no text");
    if (vocab_size < 256 || vocab_size > 256 + (1 << 24))
        return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_train_bpe: vocab_size %d is not in [256, %d] (256 byte ids "
                               "come first)", vocab_size, 256 + (1 << 24));
    /* distinct pieces: their first occurrence, length and count */
    int64_t *start = NULL, *count = NULL;
    int32_t *len = NULL, n_words = 0, cap_words = 0;
    map words = {0};
    trainer tr = {0};
    int32_t *sym = NULL, *wstart = NULL, *wlen = NULL, *stamp = NULL, *merges = NULL;
    magna_status st = MAGNA_OK;
    if (!map_init(&words, 1 << 16) || !map_init(&tr.index, 1 << 16)) goto oom;
    int64_t total_bytes = 0; /* over distinct pieces */
    for (int64_t i = 0; i < n;) {
        const int64_t l = bpe_piece(text, n, i);
        /* hash the bytes; a collision of 64-bit hashes is checked by comparing the bytes */
        uint64_t h = 0xcbf29ce484222325ull;
        for (int64_t k = 0; k < l; k++) h = (h ^ text[i + k]) * 0x100000001b3ull;
        for (;; h++) {
            if (h == EMPTY) continue;
            int32_t w = map_get(&words, h);
            if (w < 0) {
                if (n_words == cap_words) {
                    cap_words = cap_words ? cap_words * 2 : 4096;
                    int64_t *s2 = realloc(start, (size_t)cap_words * sizeof *s2);
                    if (s2) start = s2;
                    int64_t *c2 = realloc(count, (size_t)cap_words * sizeof *c2);
                    if (c2) count = c2;
                    int32_t *l2 = realloc(len, (size_t)cap_words * sizeof *l2);
                    if (l2) len = l2;
                    if (!s2 || !c2 || !l2) goto oom;
                }
                if (l > INT32_MAX / 2) {
                    st = magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_train_bpe: a piece of %lld bytes at offset %lld is "
                                         "too long", (long long)l, (long long)i);
                    goto done;
                }
                if (map_put(&words, h, n_words) == -2) goto oom;
                start[n_words] = i, len[n_words] = (int32_t)l, count[n_words] = 1;
                n_words++;
                total_bytes += l;
                break;
            }
            if (len[w] == l && memcmp(text + start[w], text + i, (size_t)l) == 0) {
                count[w]++;
                break;
            }
        }
        i += l;
    }
    map_free(&words), words = (map){0};
    /* every distinct piece as ids, initially its bytes */
    sym = malloc(((size_t)total_bytes + 1) * sizeof *sym);
    wstart = malloc(((size_t)n_words + 1) * sizeof *wstart);
    wlen = malloc(((size_t)n_words + 1) * sizeof *wlen);
    stamp = calloc((size_t)n_words + 1, sizeof *stamp);
    const int32_t want = vocab_size - 256;
    merges = malloc(((size_t)want + 1) * 2 * sizeof *merges);
    if (!sym || !wstart || !wlen || !stamp || !merges) goto oom;
    if (total_bytes > INT32_MAX) {
        st = magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_train_bpe: the distinct pieces hold %lld bytes, more than "
                             "this trainer indexes", (long long)total_bytes);
        goto done;
    }
    {
        int64_t o = 0;
        for (int32_t w = 0; w < n_words; w++) {
            wstart[w] = (int32_t)o, wlen[w] = len[w];
            for (int32_t k = 0; k < len[w]; k++) sym[o + k] = text[start[w] + k];
            o += len[w];
            for (int32_t k = 0; k + 1 < len[w]; k++) pair_add(&tr, sym[wstart[w] + k], sym[wstart[w] + k + 1], count[w], w, true);
            if (tr.oom) goto oom;
        }
    }
    flush_touched(&tr);
    int32_t n_merges = 0;
    while (n_merges < want && tr.n_heap > 0) {
        if (tr.oom) goto oom;
        const entry e = heap_pop(&tr);
        pair *top = &tr.pairs[e.pair];
        if (top->count != e.count) continue; /* stale */
        if (e.count < 2) break;              /* a pair met once saves nothing */
        const int32_t a = top->a, b = top->b, z = 256 + n_merges;
        merges[2 * n_merges] = a, merges[2 * n_merges + 1] = b;
        n_merges++;
        /* the list may grow while we walk it (never for (a, b) itself, which no later merge can make) */
        for (int32_t k = 0; k < tr.pairs[e.pair].n_occ; k++) {
            const int32_t w = tr.pairs[e.pair].occ[k];
            if (stamp[w] == n_merges) continue; /* listed twice */
            stamp[w] = n_merges;
            int32_t *s = sym + wstart[w];
            int32_t l = wlen[w], i;
            for (i = 0; i + 1 < l && !(s[i] == a && s[i + 1] == b); i++) {}
            if (i + 1 >= l) continue; /* stale: merged away already */
            for (i = 0; i + 1 < l; i++) pair_add(&tr, s[i], s[i + 1], -count[w], w, false);
            int32_t m = 0;
            for (i = 0; i < l; i++) {
                if (i + 1 < l && s[i] == a && s[i + 1] == b)
                    s[m++] = z, i++;
                else
                    s[m++] = s[i];
            }
            wlen[w] = l = m;
            for (i = 0; i + 1 < l; i++) pair_add(&tr, s[i], s[i + 1], count[w], w, s[i] == z || s[i + 1] == z);
            if (tr.oom) goto oom;
        }
        /* (a, b) now occurs nowhere; free its list */
        free(tr.pairs[e.pair].occ);
        tr.pairs[e.pair].occ = NULL, tr.pairs[e.pair].n_occ = tr.pairs[e.pair].cap_occ = 0;
        flush_touched(&tr);
    }
    {
        magna_tokenizer *t = calloc(1, sizeof *t);
        if (!t) goto oom;
        t->kind = MAGNA_TOKENIZER_BPE, t->unk = -1;
        t->merges = merges, merges = NULL;
        t->n_merges = n_merges;
        st = bpe_finish(t, NULL, NULL, err);
        if (st != MAGNA_OK)
            magna_tokenizer_free(t);
        else
            *out = t;
    }
    goto done;
oom:
    st = magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer_train_bpe: out of memory");
done:
    map_free(&words), map_free(&tr.index);
    for (int32_t p = 0; p < tr.n_pairs; p++) free(tr.pairs[p].occ);
    free(tr.pairs), free(tr.heap), free(tr.touched);
    free(start), free(count), free(len), free(sym), free(wstart), free(wlen), free(stamp), free(merges);
    return st;
}
