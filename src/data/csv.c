/* csv.c — a strict CSV reader for tabular data. Every rejection names the file, the line and the column,
 * because a silently misparsed row is worse than a stopped run. Lines are read in chunks with lengths
 * kept (not fgets/getline + strlen), so a NUL byte, a line of any length or a file without a final
 * newline are handled, not truncated; a gzip file is read through zlib when magna is built with it. */
#define _GNU_SOURCE /* strtod_l */
#include "magna/data.h"
#include "../graph/internal.h"

#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#ifdef MAGNA_HAVE_ZLIB
#include <zlib.h>
#endif

/* A line longer than this is not a table row; the cap keeps a binary file from eating memory. */
#define MAX_LINE ((size_t)256 << 20)
/* Codes are stored as floats, which are exact integers up to 2^24. */
#define MAX_CATEGORIES (1 << 24)

/* Grows *p to hold at least `need` elements of `size` bytes, doubling; false on overflow or no memory. */
static bool grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 16;
    while (c < need) {
        if (c > SIZE_MAX / 2) return false;
        c *= 2;
    }
    if (c > SIZE_MAX / size) return false;
    void *q = realloc(*p, c * size);
    if (!q) return false;
    *p = q, *cap = c;
    return true;
}

/* ---- lines ------------------------------------------------------------------------------------- */

typedef struct reader {
    const char *path;
    FILE *f;
#ifdef MAGNA_HAVE_ZLIB
    gzFile gz;
    bool gz_broken;
#endif
    char chunk[16384];
    size_t pos, len;
    bool eof;
    char *line;
    size_t cap;
    int64_t lineno;
} reader;

static magna_status reader_fill(reader *r, magna_error *err) {
    r->pos = r->len = 0;
#ifdef MAGNA_HAVE_ZLIB
    if (r->gz) {
        /* zlib reports a truncated stream as Z_BUF_ERROR alongside the data it could still inflate: that
         * data is read first, so the message names the line where the stream broke off */
        int n = r->gz_broken ? 0 : gzread(r->gz, r->chunk, sizeof r->chunk), code = Z_OK;
        const char *msg = gzerror(r->gz, &code);
        r->gz_broken = code != Z_OK && code != Z_STREAM_END;
        if (n < 0 || (r->gz_broken && n == 0)) {
            size_t pl = strlen(r->path); /* zlib's message starts with the path: say it once */
            if (strncmp(msg, r->path, pl) == 0 && strncmp(msg + pl, ": ", 2) == 0) msg += pl + 2;
            return magna_error_set(err, code == Z_ERRNO ? MAGNA_ERR_IO : MAGNA_ERR_FORMAT, "%s:%lld: gzip: %s", r->path,
                        (long long)r->lineno + 1, code == Z_ERRNO ? strerror(errno) : msg);
        }
        r->len = (size_t)n;
        r->eof = n == 0;
        return MAGNA_OK;
    }
#endif
    r->len = fread(r->chunk, 1, sizeof r->chunk, r->f);
    if (r->len == 0) {
        if (ferror(r->f)) return magna_error_set(err, MAGNA_ERR_IO, "%s: read failed: %s", r->path, strerror(errno));
        r->eof = true;
    }
    return MAGNA_OK;
}

/* Reads the next line into r->line (NUL-terminated, without its \n or \r\n); *got is false at the end. */
static magna_status reader_line(reader *r, size_t *out_len, bool *got, magna_error *err) {
    size_t n = 0;
    *got = false;
    for (;;) {
        if (r->pos == r->len) {
            magna_status st = r->eof ? MAGNA_OK : reader_fill(r, err);
            if (st != MAGNA_OK) return st;
            if (r->eof) break;
        }
        *got = true;
        char *start = r->chunk + r->pos, *nl = memchr(start, '\n', r->len - r->pos);
        size_t take = nl ? (size_t)(nl - start) : r->len - r->pos;
        char *nul = memchr(start, '\0', take);
        if (nul)
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: byte %zu is NUL (not a text file?)", r->path,
                        (long long)r->lineno + 1, n + (size_t)(nul - start) + 1);
        if (n + take >= MAX_LINE)
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: line longer than %zu MiB", r->path, (long long)r->lineno + 1,
                        MAX_LINE >> 20);
        if (!grow((void **)&r->line, &r->cap, n + take + 1, 1))
            return magna_error_set(err, MAGNA_ERR_NOMEM, "%s:%lld: out of memory", r->path, (long long)r->lineno + 1);
        memcpy(r->line + n, start, take);
        n += take;
        r->pos += take + (nl != NULL);
        if (nl) break;
    }
    if (!*got) return MAGNA_OK;
    r->lineno++;
    if (n > 0 && r->line[n - 1] == '\r') n--;
    r->line[n] = '\0';
    *out_len = n;
    return MAGNA_OK;
}

static magna_status reader_open(reader *r, const char *path, magna_error *err) {
    memset(r, 0, sizeof *r);
    r->path = path;
    if (!(r->f = fopen(path, "rb"))) return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(r->f), &sb) == 0 && S_ISDIR(sb.st_mode))
        return magna_error_set(err, MAGNA_ERR_IO, "%s: is a directory, not a file", path);
    /* the first two bytes tell gzip; they stay in the chunk (no rewind), so a pipe works too */
    r->len = fread(r->chunk, 1, 2, r->f);
    if (ferror(r->f)) return magna_error_set(err, MAGNA_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    if (!(r->len == 2 && (unsigned char)r->chunk[0] == 0x1f && (unsigned char)r->chunk[1] == 0x8b)) return MAGNA_OK;
#ifdef MAGNA_HAVE_ZLIB
    fclose(r->f), r->f = NULL;
    r->len = 0;
    errno = 0;
    if (!(r->gz = gzopen(path, "rb")))
        return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot open: %s", path, strerror(errno ? errno : ENOMEM));
    gzbuffer(r->gz, 1 << 16);
    return MAGNA_OK;
#else
    return magna_error_set(err, MAGNA_ERR_UNSUPPORTED, "%s: a gzip file, and this magna was built without zlib", path);
#endif
}

static void reader_close(reader *r) {
    if (r->f) fclose(r->f);
#ifdef MAGNA_HAVE_ZLIB
    if (r->gz) gzclose(r->gz);
#endif
    free(r->line);
}

/* ---- fields ------------------------------------------------------------------------------------ */

static bool is_blank(char c, char delim) { return (c == ' ' || c == '\t') && c != delim; }

/* Splits `line` in place at `delim` into *fields (grown as needed); quoted fields lose their quotes and
 * "" inside them becomes ". Returns the field count, or -1 with *why and the 1-based column *bad set. */
static int64_t split_fields(char *line, char delim, char ***fields, size_t *cap, int64_t *bad, const char **why) {
    int64_t n = 0;
    char *p = line;
    for (;;) {
        if (!grow((void **)fields, cap, (size_t)n + 1, sizeof **fields)) {
            *bad = n + 1, *why = "out of memory";
            return -1;
        }
        while (is_blank(*p, delim)) p++;
        if (*p == '"') {
            char *w = p, *q = p + 1;
            (*fields)[n++] = p;
            for (;;) {
                if (!*q) {
                    *bad = n, *why = "a quote is not closed (fields cannot span lines)";
                    return -1;
                }
                if (*q == '"') {
                    if (q[1] != '"') break;
                    q++;
                }
                *w++ = *q++;
            }
            q++;
            while (is_blank(*q, delim)) q++;
            if (*q && *q != delim) {
                *bad = n, *why = "text after a closing quote";
                return -1;
            }
            char end = *q;
            *w = '\0';
            if (!end) return n;
            p = q + 1;
        } else {
            char *e = strchr(p, delim), *stop = e ? e : p + strlen(p);
            while (stop > p && is_blank(stop[-1], delim)) stop--;
            *stop = '\0';
            (*fields)[n++] = p;
            if (!e) return n;
            p = e + 1;
        }
    }
}

static bool is_missing(const char *s) { return !*s || strcmp(s, "NA") == 0 || strcmp(s, "?") == 0; }

typedef enum { NUM_OK, NUM_BAD, NUM_NONFINITE, NUM_RANGE } num_result;

/* A data file's "1.5" means 1.5 whatever LC_NUMERIC the program runs under (strtod alone would stop at
 * the '.' under a locale with decimal commas), so numbers are converted in the C locale. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static void make_c_locale(void) { c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

static double to_double(const char *s) {
    pthread_once(&c_locale_once, make_c_locale);
    return c_locale ? strtod_l(s, NULL, c_locale) : strtod(s, NULL);
}

/* Decimal numbers only: [+-] digits [. digits] [e [+-] digits], or nan/inf/infinity. strtod alone would
 * also take hex ("0x10"), leading spaces and "nan(123)", none of which belong in a table. */
static num_result parse_number(const char *s, bool allow_nonfinite, float *out) {
    const char *p = s + (*s == '+' || *s == '-');
    if (strcasecmp(p, "nan") == 0 || strcasecmp(p, "inf") == 0 || strcasecmp(p, "infinity") == 0) {
        if (!allow_nonfinite) return NUM_NONFINITE;
        *out = (float)to_double(s);
        return NUM_OK;
    }
    int digits = 0;
    while (*p >= '0' && *p <= '9') p++, digits++;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++) digits++;
    if (!digits) return NUM_BAD;
    if (*p == 'e' || *p == 'E') {
        p++;
        p += *p == '+' || *p == '-';
        if (!(*p >= '0' && *p <= '9')) return NUM_BAD;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p) return NUM_BAD;
    double v = to_double(s); /* underflow to 0 or a subnormal is fine; only overflow is refused */
    if (!(fabs(v) <= FLT_MAX)) return NUM_RANGE;
    *out = (float)v;
    return NUM_OK;
}

/* ---- string -> code maps (categories; repeated header names) ----------------------------------- */

typedef struct strmap {
    int32_t count;
    size_t names_cap;
    char **names;
    int32_t *slots; /* open addressing: code + 1, 0 empty */
    size_t nslots;
} strmap;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The code of s, adding it if new (*added set). -1 when out of memory. */
static int32_t strmap_code(strmap *m, const char *s, bool *added) {
    *added = false;
    if ((size_t)m->count * 2 + 2 > m->nslots) {
        size_t ns = m->nslots ? m->nslots * 2 : 64;
        int32_t *slots = calloc(ns, sizeof *slots);
        if (!slots) return -1;
        for (int32_t c = 0; c < m->count; c++) {
            size_t i = hash_str(m->names[c]) & (ns - 1);
            while (slots[i]) i = (i + 1) & (ns - 1);
            slots[i] = c + 1;
        }
        free(m->slots);
        m->slots = slots, m->nslots = ns;
    }
    size_t i = hash_str(s) & (m->nslots - 1);
    for (; m->slots[i]; i = (i + 1) & (m->nslots - 1))
        if (strcmp(m->names[m->slots[i] - 1], s) == 0) return m->slots[i] - 1;
    if (!grow((void **)&m->names, &m->names_cap, (size_t)m->count + 1, sizeof *m->names)) return -1;
    if (!(m->names[m->count] = strdup(s))) return -1;
    m->slots[i] = ++m->count;
    *added = true;
    return m->count - 1;
}

static void strmap_free(strmap *m) {
    for (int32_t c = 0; c < m->count; c++) free(m->names[c]);
    free(m->names);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- the table --------------------------------------------------------------------------------- */

void magna_table_free(magna_table *t) {
    if (!t) return;
    for (int64_t c = 0; c < t->cols; c++) {
        if (t->names) free(t->names[c]);
        if (t->categories) {
            for (int32_t k = 0; k < t->categories[c].count; k++) free(t->categories[c].names[k]);
            free(t->categories[c].names);
        }
    }
    free(t->names);
    free(t->categories);
    free(t->values);
    free(t->missing);
    free(t->line);
    free(t->path);
    memset(t, 0, sizeof *t);
}

int64_t magna_table_column(const magna_table *t, const char *name) {
    for (int64_t c = 0; t && name && c < t->cols; c++)
        if (strcmp(t->names[c], name) == 0) return c;
    return -1;
}

static int64_t list_len(const char *const *list) {
    int64_t n = 0;
    while (list && list[n]) n++;
    return n;
}

/* The state of one read, freed in one place whatever the outcome. */
typedef struct csv_state {
    reader r;
    char **fields;
    size_t fields_cap;
    int64_t nfile;     /* fields per line */
    char **file_names; /* nfile names */
    strmap seen;       /* file column names -> file column */
    int64_t *src;      /* table column -> file column */
    strmap *cats;      /* per table column: the categories seen so far */
    bool *is_cat;
    float *row; /* one parsed row */
    uint8_t *row_missing;
    size_t values_cap, missing_cap, line_cap;
} csv_state;

/* Names the file's columns from the header line (or `names`, or 0, 1, ...), picks the table's columns
 * and marks the categorical ones. */
static magna_status setup_columns(csv_state *s, const magna_csv_options *o, magna_table *t, int64_t header_line,
                                  magna_error *err) {
    const char *path = s->r.path;
    long long hl = (long long)header_line;
    int64_t given = list_len(o->names);
    if (!o->no_header && given)
        return magna_error_set(err, MAGNA_ERR_ARG, "%s: `names` is for a file without a header (set no_header)", path);
    if (o->no_header && given && given != s->nfile)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: %lld field%s, but %lld names were given", path, hl,
                    (long long)s->nfile, s->nfile == 1 ? "" : "s", (long long)given);
    if (!(s->file_names = calloc((size_t)s->nfile, sizeof *s->file_names))) goto nomem;
    for (int64_t c = 0; c < s->nfile; c++) {
        char num[24];
        snprintf(num, sizeof num, "%lld", (long long)c);
        const char *name = !o->no_header ? s->fields[c] : given ? o->names[c] : num;
        if (!*name) return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: column %lld has no name", path, hl, (long long)c + 1);
        bool added;
        int32_t code = strmap_code(&s->seen, name, &added);
        if (code < 0 || !(s->file_names[c] = strdup(name))) goto nomem;
        if (!added)
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: columns %lld and %lld are both named '%s'", path, hl,
                        (long long)code + 1, (long long)c + 1, name);
    }
    t->cols = o->columns ? list_len(o->columns) : s->nfile;
    if (t->cols == 0) return magna_error_set(err, MAGNA_ERR_ARG, "%s: `columns` names no column", path);
    s->src = calloc((size_t)t->cols, sizeof *s->src);
    t->names = calloc((size_t)t->cols, sizeof *t->names);
    t->categories = calloc((size_t)t->cols, sizeof *t->categories);
    s->cats = calloc((size_t)t->cols, sizeof *s->cats);
    s->is_cat = calloc((size_t)t->cols, sizeof *s->is_cat);
    s->row = calloc((size_t)t->cols, sizeof *s->row);
    s->row_missing = calloc((size_t)t->cols, sizeof *s->row_missing);
    if (!s->src || !t->names || !t->categories || !s->cats || !s->is_cat || !s->row || !s->row_missing) goto nomem;
    for (int64_t c = 0; c < t->cols; c++) {
        bool added;
        int32_t code = o->columns ? strmap_code(&s->seen, o->columns[c], &added) : (int32_t)c;
        if (code < 0) goto nomem;
        if (code >= s->nfile)
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: no column named '%s' (selected in `columns`)", path, hl,
                        o->columns[c]);
        for (int64_t k = 0; k < c; k++)
            if (s->src[k] == code)
                return magna_error_set(err, MAGNA_ERR_ARG, "%s: column '%s' is selected twice", path, o->columns[c]);
        s->src[c] = code;
        if (!(t->names[c] = strdup(s->file_names[code]))) goto nomem;
    }
    for (int64_t k = 0; o->categorical && o->categorical[k]; k++) {
        int64_t c = magna_table_column(t, o->categorical[k]);
        if (c < 0) {
            bool in_file = false;
            for (int64_t f = 0; f < s->nfile; f++) in_file |= strcmp(s->file_names[f], o->categorical[k]) == 0;
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: categorical column '%s' %s", path, hl, o->categorical[k],
                        in_file ? "is not among the selected `columns`" : "is not in the file");
        }
        s->is_cat[c] = true;
    }
    return MAGNA_OK;
nomem:
    return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", path);
}

/* Parses one data line (already split) into the table, or drops it, or rejects it. */
static magna_status add_row(csv_state *s, const magna_csv_options *o, magna_table *t, magna_error *err) {
    const char *path = s->r.path;
    long long line = (long long)s->r.lineno;
    bool any_missing = false;
    for (int64_t c = 0; c < t->cols; c++) {
        const char *field = s->fields[s->src[c]];
        long long col = (long long)s->src[c] + 1;
        s->row_missing[c] = is_missing(field);
        if (s->row_missing[c]) {
            if (o->missing == MAGNA_MISSING_ERROR)
                return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: column %lld ('%s'): missing value%s%s%s", path, line, col,
                            t->names[c], *field ? " '" : " (empty field)", field, *field ? "'" : "");
            any_missing = true;
            s->row[c] = NAN;
            continue;
        }
        if (s->is_cat[c]) continue; /* coded below, once the row is known to stay */
        switch (parse_number(field, o->allow_nonfinite, &s->row[c])) {
        case NUM_OK:
            break;
        case NUM_BAD:
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: column %lld ('%s'): '%s' is not a number", path, line, col,
                        t->names[c], field);
        case NUM_NONFINITE:
            return magna_error_set(err, MAGNA_ERR_FORMAT,
                        "%s:%lld: column %lld ('%s'): '%s' is not finite (set allow_nonfinite to accept it)", path,
                        line, col, t->names[c], field);
        case NUM_RANGE:
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: column %lld ('%s'): '%s' is out of range for float32", path,
                        line, col, t->names[c], field);
        }
    }
    if (any_missing && o->missing == MAGNA_MISSING_DROP_ROW) {
        t->dropped_rows++;
        return MAGNA_OK;
    }
    for (int64_t c = 0; c < t->cols; c++) {
        if (!s->is_cat[c] || s->row_missing[c]) continue;
        bool added;
        int32_t code = strmap_code(&s->cats[c], s->fields[s->src[c]], &added);
        if (code < 0) return magna_error_set(err, MAGNA_ERR_NOMEM, "%s:%lld: out of memory", path, line);
        if (code >= MAX_CATEGORIES)
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: column %lld ('%s'): more than %d categories", path, line,
                        (long long)s->src[c] + 1, t->names[c], MAX_CATEGORIES);
        s->row[c] = (float)code;
    }
    if (t->rows >= INT64_MAX / t->cols || (uint64_t)(t->rows + 1) * (uint64_t)t->cols > SIZE_MAX / sizeof(float))
        return magna_error_set(err, MAGNA_ERR_NOMEM, "%s:%lld: too many rows", path, line);
    size_t cells = (size_t)(t->rows + 1) * (size_t)t->cols;
    if (!grow((void **)&t->values, &s->values_cap, cells, sizeof *t->values) ||
        !grow((void **)&t->line, &s->line_cap, (size_t)t->rows + 1, sizeof *t->line))
        return magna_error_set(err, MAGNA_ERR_NOMEM, "%s:%lld: out of memory", path, line);
    if (any_missing || t->missing) {
        size_t old = s->missing_cap;
        if (!grow((void **)&t->missing, &s->missing_cap, cells, 1))
            return magna_error_set(err, MAGNA_ERR_NOMEM, "%s:%lld: out of memory", path, line);
        memset(t->missing + old, 0, s->missing_cap - old); /* the rows before the first missing cell had none */
        memcpy(t->missing + (size_t)t->rows * (size_t)t->cols, s->row_missing, (size_t)t->cols);
    }
    memcpy(t->values + (size_t)t->rows * (size_t)t->cols, s->row, (size_t)t->cols * sizeof *s->row);
    t->line[t->rows++] = line;
    return MAGNA_OK;
}

/* Splits r.line into s->fields; checks the count against the header (or the first row). */
static magna_status split_line(csv_state *s, char delim, bool no_header, int64_t first_line, magna_error *err) {
    int64_t bad;
    const char *why;
    int64_t n = split_fields(s->r.line, delim, &s->fields, &s->fields_cap, &bad, &why);
    if (n < 0)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: column %lld: %s", s->r.path, (long long)s->r.lineno,
                    (long long)bad, why);
    if (s->nfile == 0) { /* the header (or first row) itself */
        s->nfile = n;
        return MAGNA_OK;
    }
    if (n == s->nfile) return MAGNA_OK;
    char ref[64];
    if (no_header)
        snprintf(ref, sizeof ref, "line %lld has %lld", (long long)first_line, (long long)s->nfile);
    else
        snprintf(ref, sizeof ref, "the header has %lld", (long long)s->nfile);
    return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: %lld field%s, %s", s->r.path, (long long)s->r.lineno, (long long)n,
                n == 1 ? "" : "s", ref);
}

static magna_status read_table(csv_state *s, const magna_csv_options *o, magna_table *out, magna_error *err) {
    const char *path = s->r.path;
    char delim = o->delimiter ? o->delimiter : ',';
    size_t len = 0;
    bool got = false;
    magna_status st;
    for (int i = 0; i < o->skip_lines; i++) {
        if ((st = reader_line(&s->r, &len, &got, err)) != MAGNA_OK) return st;
        if (!got)
            return s->r.lineno == 0 ? magna_error_set(err, MAGNA_ERR_FORMAT, "%s: empty file", path)
                                    : magna_error_set(err, MAGNA_ERR_FORMAT, "%s: %lld line%s, expected %d to skip before the %s",
                                           path, (long long)s->r.lineno, s->r.lineno == 1 ? "" : "s", o->skip_lines,
                                           o->no_header ? "data" : "header");
    }
    do { /* the header, or the first row, which fixes the number of fields */
        if ((st = reader_line(&s->r, &len, &got, err)) != MAGNA_OK) return st;
    } while (got && len == 0);
    if (!got)
        return s->r.lineno == 0 ? magna_error_set(err, MAGNA_ERR_FORMAT, "%s: empty file", path)
                                : magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: the file ends before its %s", path,
                                       (long long)s->r.lineno, o->no_header ? "first row" : "header");
    int64_t first_line = s->r.lineno;
    if (first_line == 1 && len >= 3 && memcmp(s->r.line, "\xEF\xBB\xBF", 3) == 0) /* Excel's UTF-8 mark */
        memmove(s->r.line, s->r.line + 3, len - 2);
    if ((st = split_line(s, delim, o->no_header, first_line, err)) != MAGNA_OK) return st;
    if ((st = setup_columns(s, o, out, first_line, err)) != MAGNA_OK) return st;
    if (o->no_header && (st = add_row(s, o, out, err)) != MAGNA_OK) return st; /* the first line is a row */
    for (;;) {
        if ((st = reader_line(&s->r, &len, &got, err)) != MAGNA_OK) return st;
        if (!got) break;
        if (len == 0) continue;
        if ((st = split_line(s, delim, o->no_header, first_line, err)) != MAGNA_OK) return st;
        if ((st = add_row(s, o, out, err)) != MAGNA_OK) return st;
    }
    if (out->rows == 0)
        return out->dropped_rows
                   ? magna_error_set(err, MAGNA_ERR_FORMAT, "%s: all %lld rows have a missing value (dropped)", path,
                          (long long)out->dropped_rows)
                   : magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: no data rows after the header", path, (long long)first_line);
    for (int64_t c = 0; c < out->cols; c++) { /* hand the category names over to the table */
        out->categories[c].count = s->cats[c].count;
        out->categories[c].names = s->cats[c].names;
        s->cats[c].names = NULL, s->cats[c].count = 0;
        if (s->is_cat[c] && out->categories[c].count == 0)
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: categorical column '%s' has only missing values", path,
                        out->names[c]);
    }
    return MAGNA_OK;
}

magna_status magna_csv_read(const char *path, const magna_csv_options *opts, magna_table *out, magna_error *err) {
    static const magna_csv_options defaults;
    const magna_csv_options *o = opts ? opts : &defaults;
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
    if (!out) return magna_error_set(err, MAGNA_ERR_ARG, "csv: no table to read into");
    memset(out, 0, sizeof *out);
    if (!path) return magna_error_set(err, MAGNA_ERR_ARG, "csv: no path");
    if (o->skip_lines < 0) return magna_error_set(err, MAGNA_ERR_ARG, "%s: skip_lines is negative (%d)", path, o->skip_lines);
    if ((unsigned)o->missing > MAGNA_MISSING_IMPUTE_MEAN)
        return magna_error_set(err, MAGNA_ERR_ARG, "%s: unknown missing-value policy %d", path, (int)o->missing);
    if (o->delimiter == '"' || o->delimiter == '\n' || o->delimiter == '\r')
        return magna_error_set(err, MAGNA_ERR_ARG, "%s: '%c' cannot be the delimiter", path, o->delimiter);
    csv_state *s = calloc(1, sizeof *s);
    if (!s) return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", path);
    magna_status st = reader_open(&s->r, path, err);
    if (st == MAGNA_OK)
        st = (out->path = strdup(path)) ? read_table(s, o, out, err)
                                        : magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", path);
    reader_close(&s->r);
    free(s->fields);
    for (int64_t c = 0; s->file_names && c < s->nfile; c++) free(s->file_names[c]);
    free(s->file_names);
    strmap_free(&s->seen);
    for (int64_t c = 0; s->cats && c < out->cols; c++) strmap_free(&s->cats[c]);
    free(s->cats);
    free(s->src);
    free(s->is_cat);
    free(s->row);
    free(s->row_missing);
    free(s);
    if (st != MAGNA_OK) magna_table_free(out);
    return st;
}
