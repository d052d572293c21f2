/* text.c — a text corpus from a file or a folder, its split by position, the context windows language
 * models train and evaluate on, and the bigram baseline. Tokenizers live in tokenizer.c and bpe.c. */
#define _GNU_SOURCE /* strndup */
#include "magna/text.h"
#include "../graph/internal.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void clear(magna_error *err) {
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
}

/* ---- corpus --------------------------------------------------------------------------------------- */

void magna_corpus_free(magna_corpus *c) {
    if (!c) return;
    free(c->data);
    memset(c, 0, sizeof *c);
}

/* Appends the whole of the regular file `path` to c->data (capacity *cap). The size from fstat is a
 * hint, not a promise: the loop reads to the end, so a file that grows or shrinks meanwhile is read as
 * it is. */
static magna_status append_file(magna_corpus *c, size_t *cap, const char *path, magna_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        const int e = errno;
        fclose(f);
        return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        fclose(f);
        return magna_error_set(err, MAGNA_ERR_IO, "%s: is a directory, not a file", path);
    }
    size_t want = (size_t)c->size + (sb.st_size > 0 ? (size_t)sb.st_size : 0) + 1;
    for (;;) {
        if (want > *cap) {
            size_t nc = *cap ? *cap : 4096;
            while (nc < want) nc *= 2;
            uint8_t *p = realloc(c->data, nc);
            if (!p) {
                fclose(f);
                return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory reading %lld bytes", path,
                                       (long long)c->size);
            }
            c->data = p, *cap = nc;
        }
        size_t room = *cap - (size_t)c->size - 1, got = fread(c->data + c->size, 1, room, f);
        c->size += (int64_t)got;
        if (got < room) break;
        want = *cap + 1; /* full: grow and read on */
    }
    if (ferror(f)) {
        const int e = errno;
        fclose(f);
        return magna_error_set(err, MAGNA_ERR_IO, "%s: read failed: %s", path, strerror(e));
    }
    fclose(f);
    c->data[c->size] = 0;
    c->files++;
    return MAGNA_OK;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static magna_status load_folder(const char *dir, magna_corpus *c, size_t *cap, magna_error *err) {
    DIR *d = opendir(dir);
    if (!d) return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot open the folder: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, ncap = 0;
    magna_status st = MAGNA_OK;
    const size_t dlen = strlen(dir);
    char *path = NULL;
    for (struct dirent *e; (errno = 0, e = readdir(d));) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        if (ends_with(e->d_name, ".dat")) continue;
        /* lstat, not the dirent's type (not every file system fills it): links are skipped, not followed */
        free(path);
        if (!(path = malloc(dlen + strlen(e->d_name) + 2))) {
            st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        sprintf(path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(path, &sb) != 0) {
            st = magna_error_set(err, MAGNA_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
            break;
        }
        if (!S_ISREG(sb.st_mode)) continue;
        if (n == ncap) {
            ncap = ncap ? 2 * ncap : 64;
            char **p = realloc(names, ncap * sizeof *names);
            if (!p) {
                st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            names = p;
        }
        if (!(names[n] = strdup(e->d_name))) {
            st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        n++;
    }
    if (st == MAGNA_OK && errno) st = magna_error_set(err, MAGNA_ERR_IO, "%s: reading the folder failed: %s", dir, strerror(errno));
    closedir(d);
    if (st == MAGNA_OK && n == 0)
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: no files to read in the folder (.dat files, links and "
                             "sub-folders are skipped)", dir);
    if (st == MAGNA_OK) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n && st == MAGNA_OK; i++) {
        free(path);
        if (!(path = malloc(dlen + strlen(names[i]) + 2))) {
            st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        sprintf(path, "%s/%s", dir, names[i]);
        st = append_file(c, cap, path, err);
    }
    free(path);
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

magna_status magna_corpus_load(const char *path, magna_corpus *out, magna_error *err) {
    clear(err);
    if (!out) return magna_error_set(err, MAGNA_ERR_ARG, "corpus_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path || !*path) return magna_error_set(err, MAGNA_ERR_ARG, "corpus_load: no path given");
    struct stat sb;
    if (stat(path, &sb) != 0) return magna_error_set(err, MAGNA_ERR_IO, "%s: %s", path, strerror(errno));
    size_t cap = 0;
    magna_status st = S_ISDIR(sb.st_mode) ? load_folder(path, out, &cap, err) : append_file(out, &cap, path, err);
    if (st == MAGNA_OK && out->size == 0)
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: empty corpus (%d file%s, 0 bytes)", path, out->files,
                             out->files == 1 ? "" : "s");
    if (st != MAGNA_OK) magna_corpus_free(out);
    return st;
}

magna_status magna_text_split(const uint8_t *data, int64_t n, double val_frac, int64_t *cut, magna_error *err) {
    clear(err);
    if (!cut || (n > 0 && !data) || n < 0) return magna_error_set(err, MAGNA_ERR_ARG, "text_split: bad arguments");
    if (!(val_frac >= 0.0 && val_frac < 1.0))
        return magna_error_set(err, MAGNA_ERR_ARG, "text_split: val_frac %g is not in [0, 1)", val_frac);
    int64_t c = n - (int64_t)llround((double)n * val_frac);
    for (int k = 0; k < 3 && c > 0 && c < n && (data[c] & 0xC0) == 0x80; k++) c++;
    if (val_frac > 0 && (c <= 0 || c >= n))
        return magna_error_set(err, MAGNA_ERR_ARG, "text_split: %lld bytes are too few to give both parts some "
                               "(val_frac %g)", (long long)n, val_frac);
    *cut = c;
    return MAGNA_OK;
}

/* ---- windows -------------------------------------------------------------------------------------- */

magna_status magna_lm_windows_random(const int32_t *tokens, int64_t n, int64_t T, int64_t count, uint64_t seed,
                                     uint64_t first, int32_t *x, int32_t *y, magna_error *err) {
    clear(err);
    if (!tokens || !x || !y || T < 1 || count < 0)
        return magna_error_set(err, MAGNA_ERR_ARG, "lm_windows_random: bad arguments (T %lld, count %lld)",
                               (long long)T, (long long)count);
    if (n <= T)
        return magna_error_set(err, MAGNA_ERR_ARG, "lm_windows_random: %lld tokens are too few for windows of %lld "
                               "(need more than T)", (long long)n, (long long)T);
    const uint64_t range = (uint64_t)(n - T); /* offsets 0 .. n - T - 1 */
    for (int64_t j = 0; j < count; j++) {
        /* the high bits of a 64 x 64 product: uniform up to 2^-64 * range, and no division */
        const uint64_t r = magna_rand_u64(seed, MAGNA_TEXT_STREAM, first + (uint64_t)j);
        const int64_t o = (int64_t)(((unsigned __int128)r * range) >> 64);
        memcpy(x + j * T, tokens + o, (size_t)T * sizeof *x);
        memcpy(y + j * T, tokens + o + 1, (size_t)T * sizeof *y);
    }
    return MAGNA_OK;
}

int64_t magna_lm_window_count(int64_t n, int64_t T) {
    if (n < 2 || T < 1) return 0;
    return (n - 1 + T - 1) / T;
}

magna_status magna_lm_windows_sequential(const int32_t *tokens, int64_t n, int64_t T, int32_t *x, int32_t *y,
                                         magna_error *err) {
    clear(err);
    if (!tokens || !x || !y || T < 1)
        return magna_error_set(err, MAGNA_ERR_ARG, "lm_windows_sequential: bad arguments (T %lld)", (long long)T);
    if (n < 2)
        return magna_error_set(err, MAGNA_ERR_ARG, "lm_windows_sequential: %lld tokens: nothing to predict", (long long)n);
    const int64_t w = magna_lm_window_count(n, T);
    for (int64_t j = 0; j < w; j++) {
        const int64_t o = j * T, len = o + T <= n - 1 ? T : n - 1 - o; /* predicted positions in this window */
        for (int64_t t = 0; t < T; t++) {
            x[j * T + t] = t < len ? tokens[o + t] : 0;
            y[j * T + t] = t < len ? tokens[o + t + 1] : -1; /* MAGNA_IGNORE_LABEL */
        }
    }
    return MAGNA_OK;
}

/* ---- bigram --------------------------------------------------------------------------------------- */

void magna_bigram_free(magna_bigram *m) {
    if (!m) return;
    free(m->row_start), free(m->next), free(m->counts), free(m->row_total);
    memset(m, 0, sizeof *m);
}

static int cmp_u64(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

magna_status magna_bigram_fit(magna_bigram *m, const int32_t *tokens, int64_t n, int32_t vocab, double k,
                              magna_error *err) {
    clear(err);
    if (!m) return magna_error_set(err, MAGNA_ERR_ARG, "bigram_fit: model is NULL");
    memset(m, 0, sizeof *m);
    if (!tokens || n < 2 || vocab < 1 || !(k > 0) || !isfinite(k))
        return magna_error_set(err, MAGNA_ERR_ARG, "bigram_fit: needs at least 2 tokens, vocab >= 1 and k > 0 "
                               "(got %lld tokens, vocab %d, k %g)", (long long)n, vocab, k);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return magna_error_set(err, MAGNA_ERR_RANGE, "bigram_fit: token %lld is %d, outside [0, %d)", (long long)i,
                                   tokens[i], vocab);
    /* pairs as prev * vocab + next, sorted: equal pairs become runs, rows come out in order */
    uint64_t *keys = malloc((size_t)(n - 1) * sizeof *keys);
    m->row_start = calloc((size_t)vocab + 1, sizeof *m->row_start);
    m->row_total = calloc((size_t)vocab, sizeof *m->row_total);
    if (!keys || !m->row_start || !m->row_total) {
        free(keys), magna_bigram_free(m);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "bigram_fit: out of memory for %lld tokens", (long long)n);
    }
    for (int64_t i = 0; i + 1 < n; i++) keys[i] = (uint64_t)tokens[i] * (uint64_t)vocab + (uint64_t)tokens[i + 1];
    qsort(keys, (size_t)(n - 1), sizeof *keys, cmp_u64);
    int64_t distinct = 0;
    for (int64_t i = 0; i + 1 < n; i++) distinct += i == 0 || keys[i] != keys[i - 1];
    m->next = malloc((size_t)distinct * sizeof *m->next);
    m->counts = malloc((size_t)distinct * sizeof *m->counts);
    if (!m->next || !m->counts) {
        free(keys), magna_bigram_free(m);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "bigram_fit: out of memory for %lld pairs", (long long)distinct);
    }
    int64_t e = -1;
    for (int64_t i = 0; i + 1 < n; i++) {
        const int32_t prev = (int32_t)(keys[i] / (uint64_t)vocab), next = (int32_t)(keys[i] % (uint64_t)vocab);
        if (i == 0 || keys[i] != keys[i - 1]) {
            e++;
            m->next[e] = next, m->counts[e] = 0;
            m->row_start[prev + 1]++;
        }
        m->counts[e]++;
        m->row_total[prev]++;
    }
    for (int32_t v = 0; v < vocab; v++) m->row_start[v + 1] += m->row_start[v];
    free(keys);
    m->vocab = vocab, m->k = k;
    return MAGNA_OK;
}

static int64_t pair_count(const magna_bigram *m, int32_t prev, int32_t next) {
    int64_t lo = m->row_start[prev], hi = m->row_start[prev + 1];
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (m->next[mid] < next)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->row_start[prev + 1] && m->next[lo] == next ? m->counts[lo] : 0;
}

double magna_bigram_prob(const magna_bigram *m, int32_t prev, int32_t next) {
    if (!m || !m->row_start || prev < 0 || prev >= m->vocab || next < 0 || next >= m->vocab) return 0.0;
    return ((double)pair_count(m, prev, next) + m->k) / ((double)m->row_total[prev] + m->k * m->vocab);
}

magna_status magna_bigram_loss(const magna_bigram *m, const int32_t *tokens, int64_t n, double *nats,
                               magna_error *err) {
    clear(err);
    if (!m || !m->row_start || !tokens || !nats || n < 2)
        return magna_error_set(err, MAGNA_ERR_ARG, "bigram_loss: needs a fitted model and at least 2 tokens");
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->vocab)
            return magna_error_set(err, MAGNA_ERR_RANGE, "bigram_loss: token %lld is %d, outside [0, %d)", (long long)i,
                                   tokens[i], m->vocab);
    for (int64_t i = 1; i < n; i++) sum -= log(magna_bigram_prob(m, tokens[i - 1], tokens[i]));
    *nats = sum / (double)(n - 1);
    return MAGNA_OK;
}

magna_status magna_bigram_sample(const magna_bigram *m, int32_t first, int64_t n, uint64_t seed, int32_t *out,
                                 magna_error *err) {
    clear(err);
    if (!m || !m->row_start || !out || n < 1)
        return magna_error_set(err, MAGNA_ERR_ARG, "bigram_sample: needs a fitted model and n >= 1");
    if (first < 0 || first >= m->vocab)
        return magna_error_set(err, MAGNA_ERR_RANGE, "bigram_sample: first token %d is outside [0, %d)", first, m->vocab);
    out[0] = first;
    for (int64_t i = 1; i < n; i++) {
        const int32_t prev = out[i - 1];
        /* u in [0, total mass); every id carries k, seen ones their count as well: walk ids in order,
         * stepping through the row's sparse entries alongside */
        const double total = (double)m->row_total[prev] + m->k * m->vocab;
        const double u = (double)(magna_rand_u64(seed, MAGNA_TEXT_STREAM + 1, (uint64_t)i) >> 11) * 0x1.0p-53 * total;
        double acc = 0.0;
        int64_t e = m->row_start[prev];
        int32_t pick = m->vocab - 1;
        for (int32_t v = 0; v < m->vocab; v++) {
            acc += m->k;
            if (e < m->row_start[prev + 1] && m->next[e] == v) acc += (double)m->counts[e++];
            if (u < acc) {
                pick = v;
                break;
            }
        }
        out[i] = pick;
    }
    return MAGNA_OK;
}
