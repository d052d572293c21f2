/* tokenizer.c — one interface over three tokenizers (bytes, characters, byte-level BPE), and the text
 * form a tokenizer travels in (a checkpoint's metadata, or a file of its own). The text is read strictly:
 * a tokenizer that loads wrong would encode every later text wrong without a sign, so each malformed
 * line is its own error with the line number. BPE training and encoding are in bpe.c. */
#define _GNU_SOURCE
#include "tokenizer.h"
#include "../graph/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RAW_BYTE 0x110000u /* a character that is one raw byte b is 0x110000 + b */
#define MAX_MERGES (1 << 24)
#define MAX_FILE ((size_t)256 << 20)

static void clear(magna_error *err) {
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
}

void magna_tokenizer_free(magna_tokenizer *t) {
    if (!t) return;
    free(t->blob), free(t->off), free(t->units), free(t->merges), free(t->rank_keys), free(t->rank_vals);
    free(t);
}

magna_tokenizer_kind magna_tokenizer_get_kind(const magna_tokenizer *t) { return t->kind; }
int32_t magna_tokenizer_vocab_size(const magna_tokenizer *t) { return t ? t->vocab : 0; }
int32_t magna_tokenizer_unk_id(const magna_tokenizer *t) { return t ? t->unk : -1; }

const char *magna_tokenizer_kind_name(magna_tokenizer_kind kind) {
    switch (kind) {
    case MAGNA_TOKENIZER_BYTES: return "bytes";
    case MAGNA_TOKENIZER_CHARS: return "chars";
    case MAGNA_TOKENIZER_BPE: return "bpe";
    }
    return "unknown";
}

const uint8_t *magna_tokenizer_token(const magna_tokenizer *t, int32_t id, int32_t *len) {
    if (!t || id < 0 || id >= t->vocab) return NULL;
    if (len) *len = (int32_t)(t->off[id + 1] - t->off[id]);
    return t->blob + t->off[id];
}

static magna_tokenizer *tok_new(magna_tokenizer_kind kind) {
    magna_tokenizer *t = calloc(1, sizeof *t);
    if (t) t->kind = kind, t->unk = -1;
    return t;
}

magna_status magna_tokenizer_bytes(magna_tokenizer **out, magna_error *err) {
    clear(err);
    if (!out) return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_bytes: out is NULL");
    magna_tokenizer *t = *out = tok_new(MAGNA_TOKENIZER_BYTES);
    if (t) t->blob = malloc(256), t->off = malloc(257 * sizeof *t->off);
    if (!t || !t->blob || !t->off) {
        magna_tokenizer_free(t), *out = NULL;
        return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer_bytes: out of memory");
    }
    for (int i = 0; i < 256; i++) t->blob[i] = (uint8_t)i, t->off[i] = i;
    t->off[256] = 256, t->vocab = 256;
    return MAGNA_OK;
}

/* ---- characters ----------------------------------------------------------------------------------- */

/* The character at s[i]: a code point from a valid shortest-form UTF-8 sequence (no surrogates, at most
 * U+10FFFF), else the raw byte s[i] alone. Returns its length in bytes. */
static int next_unit(const uint8_t *s, int64_t n, int64_t i, uint32_t *unit) {
    const uint8_t c = s[i];
    if (c < 0x80) return *unit = c, 1;
    int len = 0;
    uint32_t cp = 0;
    uint8_t lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    if (len && i + len <= n) {
        int k = 1;
        for (; k < len; k++) {
            const uint8_t b = s[i + k];
            if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) break;
            cp = cp << 6 | (b & 0x3F);
        }
        if (k == len) return *unit = cp, len;
    }
    return *unit = RAW_BYTE + c, 1;
}

/* The UTF-8 bytes of a character (1..4), or its raw byte. */
static int unit_bytes(uint32_t u, uint8_t *o) {
    if (u >= RAW_BYTE) return o[0] = (uint8_t)(u - RAW_BYTE), 1;
    if (u < 0x80) return o[0] = (uint8_t)u, 1;
    if (u < 0x800) return o[0] = (uint8_t)(0xC0 | u >> 6), o[1] = (uint8_t)(0x80 | (u & 0x3F)), 2;
    if (u < 0x10000)
        return o[0] = (uint8_t)(0xE0 | u >> 12), o[1] = (uint8_t)(0x80 | (u >> 6 & 0x3F)), o[2] = (uint8_t)(0x80 | (u & 0x3F)), 3;
    o[0] = (uint8_t)(0xF0 | u >> 18), o[1] = (uint8_t)(0x80 | (u >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (u >> 6 & 0x3F)), o[3] = (uint8_t)(0x80 | (u & 0x3F));
    return 4;
}

static bool unit_valid(uint32_t u) { return u < RAW_BYTE + 256 && (u >= RAW_BYTE || u < 0xD800 || u > 0xDFFF); }

/* Builds blob/off and the ASCII table from units (increasing) and unk. */
static magna_status chars_finish(magna_tokenizer *t, magna_error *err) {
    t->vocab = t->n_units + (t->unk >= 0);
    t->blob = malloc((size_t)t->vocab * 4 + 1);
    t->off = malloc(((size_t)t->vocab + 1) * sizeof *t->off);
    if (!t->blob || !t->off) return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer: out of memory");
    for (int c = 0; c < 128; c++) t->ascii[c] = -1;
    int64_t o = 0;
    for (int32_t i = 0; i < t->n_units; i++) {
        t->off[i] = o;
        o += unit_bytes(t->units[i], t->blob + o);
        if (t->units[i] < 128) t->ascii[t->units[i]] = i;
    }
    if (t->unk >= 0) t->off[t->unk] = o, o += unit_bytes(0xFFFD, t->blob + o);
    t->off[t->vocab] = o;
    return MAGNA_OK;
}

magna_status magna_tokenizer_train_chars(const uint8_t *text, int64_t n, bool unk, magna_tokenizer **out,
                                         magna_error *err) {
    clear(err);
    if (!out) return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_train_chars: out is NULL");
    *out = NULL;
    if (n < 0 || (n > 0 && !text)) return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_train_chars: no text");
    if (n == 0 && !unk)
        return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_train_chars: empty text gives an empty vocabulary");
    uint64_t *seen = calloc((RAW_BYTE + 256) / 64, sizeof *seen);
    magna_tokenizer *t = tok_new(MAGNA_TOKENIZER_CHARS);
    if (!seen || !t) {
        free(seen), magna_tokenizer_free(t);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer_train_chars: out of memory");
    }
    int32_t count = 0;
    for (int64_t i = 0; i < n;) {
        uint32_t u;
        i += next_unit(text, n, i, &u);
        if (!(seen[u / 64] >> (u % 64) & 1)) seen[u / 64] |= 1ull << (u % 64), count++;
    }
    t->units = malloc(((size_t)count + 1) * sizeof *t->units);
    if (!t->units) {
        free(seen), magna_tokenizer_free(t);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer_train_chars: out of memory");
    }
    for (uint32_t w = 0; w < (RAW_BYTE + 256) / 64; w++)
        for (uint64_t b = seen[w]; b; b &= b - 1) t->units[t->n_units++] = w * 64 + (uint32_t)__builtin_ctzll(b);
    free(seen);
    t->unk = unk ? t->n_units : -1;
    magna_status st = chars_finish(t, err);
    if (st != MAGNA_OK) return magna_tokenizer_free(t), st;
    *out = t;
    return MAGNA_OK;
}

static int32_t chars_id(const magna_tokenizer *t, uint32_t u) {
    if (u < 128) return t->ascii[u];
    int32_t lo = 0, hi = t->n_units;
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        if (t->units[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < t->n_units && t->units[lo] == u ? lo : -1;
}

static void unit_name(uint32_t u, char *buf, size_t cap) {
    if (u >= RAW_BYTE)
        snprintf(buf, cap, "byte 0x%02X (not UTF-8)", u - RAW_BYTE);
    else if (u >= 0x20 && u < 0x7F)
        snprintf(buf, cap, "U+%04X '%c'", u, (char)u);
    else
        snprintf(buf, cap, "U+%04X", u);
}

/* ---- encode / decode ------------------------------------------------------------------------------ */

magna_status magna_tokenizer_encode(const magna_tokenizer *t, const uint8_t *text, int64_t n, int32_t **ids,
                                    int64_t *count, magna_error *err) {
    clear(err);
    if (!t || !ids || !count || n < 0 || (n > 0 && !text))
        return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_encode: bad arguments");
    *ids = NULL, *count = 0;
    /* no tokenizer makes more ids than bytes */
    int32_t *o = malloc(((size_t)n + 1) * sizeof *o);
    if (!o) return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer_encode: out of memory for %lld ids", (long long)n);
    int64_t m = 0;
    if (t->kind == MAGNA_TOKENIZER_BYTES) {
        for (int64_t i = 0; i < n; i++) o[i] = text[i];
        m = n;
    } else if (t->kind == MAGNA_TOKENIZER_CHARS) {
        for (int64_t i = 0; i < n;) {
            uint32_t u;
            const int len = next_unit(text, n, i, &u);
            int32_t id = chars_id(t, u);
            if (id < 0) {
                if (t->unk < 0) {
                    char name[48];
                    unit_name(u, name, sizeof name);
                    free(o);
                    return magna_error_set(err, MAGNA_ERR_RANGE, "tokenizer_encode: byte offset %lld: character %s is "
                                           "not in the vocabulary of %d (train with unk to map it to <unk>)",
                                           (long long)i, name, t->vocab);
                }
                id = t->unk;
            }
            o[m++] = id;
            i += len;
        }
    } else {
        m = bpe_encode(t, text, n, o);
    }
    int32_t *shrunk = realloc(o, ((size_t)m + 1) * sizeof *o);
    *ids = shrunk ? shrunk : o;
    *count = m;
    return MAGNA_OK;
}

magna_status magna_tokenizer_decode(const magna_tokenizer *t, const int32_t *ids, int64_t count, uint8_t **text,
                                    int64_t *n, magna_error *err) {
    clear(err);
    if (!t || !text || !n || count < 0 || (count > 0 && !ids))
        return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_decode: bad arguments");
    *text = NULL, *n = 0;
    int64_t len = 0;
    for (int64_t i = 0; i < count; i++) {
        if (ids[i] < 0 || ids[i] >= t->vocab)
            return magna_error_set(err, MAGNA_ERR_RANGE, "tokenizer_decode: id %d at position %lld is outside [0, %d)",
                                   ids[i], (long long)i, t->vocab);
        len += t->off[ids[i] + 1] - t->off[ids[i]];
    }
    uint8_t *o = malloc((size_t)len + 1);
    if (!o) return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer_decode: out of memory for %lld bytes", (long long)len);
    int64_t p = 0;
    for (int64_t i = 0; i < count; i++) {
        const int64_t a = t->off[ids[i]], b = t->off[ids[i] + 1];
        memcpy(o + p, t->blob + a, (size_t)(b - a));
        p += b - a;
    }
    o[p] = 0;
    *text = o, *n = p;
    return MAGNA_OK;
}

/* ---- the text form -------------------------------------------------------------------------------- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    char tmp[96];
    va_list ap;
    va_start(ap, fmt);
    const int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (b->len + (size_t)k + 1 > b->cap) {
        size_t c = b->cap ? b->cap * 2 : 1024;
        while (c < b->len + (size_t)k + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q, b->cap = c;
    }
    memcpy(b->p + b->len, tmp, (size_t)k + 1);
    b->len += (size_t)k;
}

magna_status magna_tokenizer_to_string(const magna_tokenizer *t, char **out, magna_error *err) {
    clear(err);
    if (!t || !out) return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_to_string: bad arguments");
    *out = NULL;
    strbuf b = {0};
    sb_printf(&b, "magna-tokenizer 1\nkind %s\n", magna_tokenizer_kind_name(t->kind));
    if (t->kind == MAGNA_TOKENIZER_CHARS) {
        sb_printf(&b, "chars %d\nunk %d\n", t->n_units, t->unk >= 0);
        for (int32_t i = 0; i < t->n_units; i++) {
            const uint32_t u = t->units[i];
            if (u >= RAW_BYTE)
                sb_printf(&b, "byte 0x%02X\n", u - RAW_BYTE);
            else
                sb_printf(&b, "U+%04X\n", u);
        }
    } else if (t->kind == MAGNA_TOKENIZER_BPE) {
        sb_printf(&b, "merges %d\n", t->n_merges);
        for (int32_t i = 0; i < t->n_merges; i++) sb_printf(&b, "%d %d\n", t->merges[2 * i], t->merges[2 * i + 1]);
    }
    if (b.oom) {
        free(b.p);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer_to_string: out of memory");
    }
    *out = b.p;
    return MAGNA_OK;
}

/* Lines of a NUL-terminated text; `where` names it in messages ("path" or "tokenizer string"). */
typedef struct lines {
    const char *where, *p;
    int line;
    char buf[128];
} lines;

/* The next line into l->buf (without its \n); false at the end of the text. A line too long for any
 * valid item is cut, and then fails to parse as whatever was expected. */
static bool next_line(lines *l) {
    if (!*l->p) return false;
    const char *e = strchr(l->p, '\n');
    size_t len = e ? (size_t)(e - l->p) : strlen(l->p);
    size_t keep = len < sizeof l->buf - 1 ? len : sizeof l->buf - 1;
    memcpy(l->buf, l->p, keep);
    l->buf[keep] = 0;
    if (keep && l->buf[keep - 1] == '\r') l->buf[keep - 1] = 0;
    l->p += len + (e != NULL);
    l->line++;
    return true;
}

static int count_lines(const char *p) {
    int n = 0;
    for (; *p; n++) {
        const char *e = strchr(p, '\n');
        if (!e) return n + 1;
        p = e + 1;
    }
    return n;
}

/* A decimal integer at *s, optionally negative, at most 10 digits (no spaces, no '+'); advances *s. */
static bool parse_long(const char **s, long *v) {
    const char *p = *s;
    const bool neg = *p == '-';
    p += neg;
    if (*p < '0' || *p > '9') return false;
    long x = 0;
    for (int d = 0; *p >= '0' && *p <= '9'; p++)
        if (++d > 10) return false;
        else x = x * 10 + (*p - '0');
    *v = neg ? -x : x, *s = p;
    return true;
}

/* 1 to 8 hex digits and nothing after them */
static bool parse_hex(const char *p, unsigned long *v) {
    unsigned long x = 0;
    int d = 0;
    for (; *p; p++, d++) {
        const int h = *p >= '0' && *p <= '9' ? *p - '0' : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10
                    : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        if (h < 0 || d == 8) return false;
        x = x << 4 | (unsigned long)h;
    }
    *v = x;
    return d > 0;
}

/* "key N" with N a decimal integer in [lo, hi] */
static magna_status keyed_int(lines *l, const char *key, long lo, long hi, long *v, magna_error *err) {
    if (!next_line(l))
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%d: truncated: the text ends before '%s N'", l->where,
                               l->line + 1, key);
    const size_t kl = strlen(key);
    if (strncmp(l->buf, key, kl) != 0 || l->buf[kl] != ' ')
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%d: expected '%s N', got '%s'", l->where, l->line, key, l->buf);
    const char *p = l->buf + kl + 1;
    if (!parse_long(&p, v) || *p || *v < lo || *v > hi)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%d: '%s' needs a whole number in [%ld, %ld], got '%s'",
                               l->where, l->line, key, lo, hi, l->buf + kl + 1);
    return MAGNA_OK;
}

static magna_status parse_chars(lines *l, magna_tokenizer *t, magna_error *err) {
    long n, unk;
    magna_status st = keyed_int(l, "chars", 0, RAW_BYTE + 256, &n, err);
    if (st == MAGNA_OK) st = keyed_int(l, "unk", 0, 1, &unk, err);
    if (st != MAGNA_OK) return st;
    if (n == 0 && !unk) return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%d: an empty vocabulary", l->where, l->line);
    const int left = count_lines(l->p);
    if (left < n)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: truncated: %ld characters declared, %d lines follow",
                               l->where, n, left);
    if (!(t->units = malloc(((size_t)n + 1) * sizeof *t->units)))
        return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", l->where);
    for (long i = 0; i < n; i++) {
        next_line(l);
        unsigned long u;
        if (strncmp(l->buf, "U+", 2) == 0) {
            if (!parse_hex(l->buf + 2, &u) || u >= RAW_BYTE || !unit_valid((uint32_t)u))
                return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%d: '%s' is not a Unicode scalar value", l->where,
                                       l->line, l->buf);
        } else if (strncmp(l->buf, "byte 0x", 7) == 0) {
            if (!parse_hex(l->buf + 7, &u) || u < 0x80 || u > 0xFF)
                return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%d: '%s': a raw byte is 0x80..0xFF", l->where, l->line,
                                       l->buf);
            u += RAW_BYTE;
        } else {
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%d: expected 'U+XXXX' or 'byte 0xXX', got '%s'", l->where,
                                   l->line, l->buf);
        }
        if (i > 0 && u <= t->units[i - 1])
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%d: '%s' %s the character before it (they must increase)",
                                   l->where, l->line, l->buf, u == t->units[i - 1] ? "repeats" : "comes before");
        t->units[t->n_units++] = (uint32_t)u;
    }
    t->unk = unk ? t->n_units : -1;
    return chars_finish(t, err);
}

static magna_status parse_bpe(lines *l, magna_tokenizer *t, magna_error *err) {
    long n;
    magna_status st = keyed_int(l, "merges", 0, MAX_MERGES, &n, err);
    if (st != MAGNA_OK) return st;
    const int left = count_lines(l->p);
    if (left < n)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: truncated: %ld merges declared, %d lines follow", l->where, n,
                               left);
    if (!(t->merges = malloc(((size_t)n + 1) * 2 * sizeof *t->merges)))
        return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", l->where);
    for (long i = 0; i < n; i++) {
        next_line(l);
        long a, b;
        const char *p = l->buf;
        if (!parse_long(&p, &a) || *p++ != ' ' || !parse_long(&p, &b) || *p)
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%d: merge %ld: expected two ids, got '%s'", l->where, l->line,
                                   i, l->buf);
        const long have = 256 + i; /* ids that exist before this merge */
        if (a < 0 || a >= have || b < 0 || b >= have)
            return magna_error_set(err, MAGNA_ERR_RANGE, "%s:%d: merge %ld: id %ld is out of range (ids before this "
                                   "merge are 0..%ld)", l->where, l->line, i, a < 0 || a >= have ? a : b, have - 1);
        t->merges[2 * i] = (int32_t)a, t->merges[2 * i + 1] = (int32_t)b;
        t->n_merges++;
    }
    /* bpe_finish builds the pair table, which finds a merge that repeats an earlier one */
    int32_t dup = -1, first = -1;
    st = bpe_finish(t, &dup, &first, err);
    if (st == MAGNA_ERR_FORMAT && dup >= 0)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%d: merge %d (%d %d) repeats merge %d", l->where,
                               l->line - (int)(n - 1 - dup), dup, t->merges[2 * dup], t->merges[2 * dup + 1], first);
    return st;
}

static magna_status parse(const char *s, const char *where, magna_tokenizer **out, magna_error *err) {
    *out = NULL;
    lines l = {.where = where, .p = s};
    if (!next_line(&l)) return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: empty (not a magna tokenizer)", where);
    if (strcmp(l.buf, "magna-tokenizer 1") != 0)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:1: not a magna tokenizer: expected 'magna-tokenizer 1', got '%.60s'",
                               where, l.buf);
    if (!next_line(&l)) return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:2: truncated: the text ends before 'kind'", where);
    magna_tokenizer_kind kind;
    if (strcmp(l.buf, "kind bytes") == 0) kind = MAGNA_TOKENIZER_BYTES;
    else if (strcmp(l.buf, "kind chars") == 0) kind = MAGNA_TOKENIZER_CHARS;
    else if (strcmp(l.buf, "kind bpe") == 0) kind = MAGNA_TOKENIZER_BPE;
    else
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:2: expected 'kind bytes|chars|bpe', got '%.60s'", where, l.buf);
    magna_tokenizer *t = NULL;
    magna_status st;
    if (kind == MAGNA_TOKENIZER_BYTES) {
        st = magna_tokenizer_bytes(&t, err);
    } else if (!(t = tok_new(kind))) {
        st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", where);
    } else {
        st = kind == MAGNA_TOKENIZER_CHARS ? parse_chars(&l, t, err) : parse_bpe(&l, t, err);
    }
    while (st == MAGNA_OK && next_line(&l))
        if (l.buf[0]) st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%d: text after the end: '%.60s'", where, l.line, l.buf);
    if (st != MAGNA_OK) return magna_tokenizer_free(t), st;
    *out = t;
    return MAGNA_OK;
}

magna_status magna_tokenizer_from_string(const char *s, magna_tokenizer **out, magna_error *err) {
    clear(err);
    if (!s || !out) return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_from_string: bad arguments");
    return parse(s, "tokenizer", out, err);
}

magna_status magna_tokenizer_load(const char *path, magna_tokenizer **out, magna_error *err) {
    clear(err);
    if (!path || !out) return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_load: bad arguments");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *s = malloc(MAX_FILE + 1);
    size_t n = s ? fread(s, 1, MAX_FILE + 1, f) : 0;
    const bool failed = !s || ferror(f);
    const int e = errno;
    fclose(f);
    magna_status st = MAGNA_OK;
    if (!s) st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", path);
    else if (failed) st = magna_error_set(err, MAGNA_ERR_IO, "%s: read failed: %s", path, strerror(e));
    else if (n > MAX_FILE) st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: larger than %zu MiB: not a tokenizer", path, MAX_FILE >> 20);
    else if (memchr(s, 0, n)) st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: byte %zu is NUL: not a tokenizer", path,
                                                   (size_t)((char *)memchr(s, 0, n) - s) + 1);
    if (st == MAGNA_OK) {
        s[n] = 0;
        st = parse(s, path, out, err);
    }
    free(s);
    return st;
}

magna_status magna_tokenizer_save(const magna_tokenizer *t, const char *path, magna_error *err) {
    clear(err);
    if (!t || !path || !*path) return magna_error_set(err, MAGNA_ERR_ARG, "tokenizer_save: bad arguments");
    char *s;
    magna_status st = magna_tokenizer_to_string(t, &s, err);
    if (st != MAGNA_OK) return st;
    /* a temp file beside the target, then a rename over it: a reader never sees half a tokenizer */
    const size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (!tmp) {
        free(s);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "tokenizer_save %s: out of memory", path);
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = magna_error_set(err, MAGNA_ERR_IO, "tokenizer_save %s: cannot create %s: %s", path, tmp, strerror(errno));
        free(tmp), free(s);
        return st;
    }
    const size_t len = strlen(s);
    size_t done = 0;
    while (done < len) {
        const ssize_t w = write(fd, s + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    free(s);
    if (done < len || fsync(fd) != 0) {
        const int e = errno;
        close(fd), unlink(tmp);
        st = magna_error_set(err, MAGNA_ERR_IO, "tokenizer_save %s: writing %s failed: %s", path, tmp, strerror(e));
    } else if (close(fd) != 0) {
        const int e = errno;
        unlink(tmp);
        st = magna_error_set(err, MAGNA_ERR_IO, "tokenizer_save %s: closing %s failed: %s", path, tmp, strerror(e));
    } else if (rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        st = magna_error_set(err, MAGNA_ERR_IO, "tokenizer_save %s: renaming %s over it failed: %s", path, tmp, strerror(e));
    }
    free(tmp);
    return st;
}
