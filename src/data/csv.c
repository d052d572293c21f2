/* csv.c — a strict reader for numeric CSV tables. Every rejection names the file, the line and the
 * column, because a silently misparsed row is worse than a stopped run. */
#include "magna/data.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static magna_status fail(magna_error *err, magna_status st, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
        err->status = st;
    }
    return st;
}

/* Reads one line into *buf (grown as needed); returns its length without the newline, -1 at EOF. */
static long read_line(FILE *f, char **buf, size_t *cap) {
    ssize_t n = getline(buf, cap, f);
    if (n < 0) return -1;
    while (n > 0 && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r')) (*buf)[--n] = '\0';
    return (long)n;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) *--e = '\0';
    return s;
}

void magna_table_free(magna_table *t) {
    if (!t) return;
    for (int64_t c = 0; t->names && c < t->cols; c++) free(t->names[c]);
    free(t->names);
    free(t->values);
    memset(t, 0, sizeof *t);
}

int64_t magna_table_column(const magna_table *t, const char *name) {
    for (int64_t c = 0; c < t->cols; c++)
        if (strcmp(t->names[c], name) == 0) return c;
    return -1;
}

magna_status magna_csv_read(const char *path, int skip_lines, magna_table *out, magna_error *err) {
    memset(out, 0, sizeof *out);
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return fail(err, MAGNA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, vcap = 0;
    long len;
    int64_t lineno = 0;
    magna_status st = MAGNA_OK;
    for (int i = 0; i < skip_lines; i++, lineno++)
        if (read_line(f, &line, &cap) < 0) {
            st = fail(err, MAGNA_ERR_FORMAT, "%s: empty file (expected %d line(s) before the header)", path,
                      skip_lines);
            goto done;
        }
    if ((len = read_line(f, &line, &cap)) < 0 || len == 0) {
        st = fail(err, MAGNA_ERR_FORMAT, "%s:%lld: %s", path, (long long)lineno + 1,
                  len < 0 ? "empty file: expected a header line of column names" : "the header line is empty");
        goto done;
    }
    lineno++;
    for (char *p = line; *p; p++) out->cols += *p == ',';
    out->cols++;
    out->names = calloc((size_t)out->cols, sizeof *out->names);
    if (!out->names) goto nomem;
    {
        char *save = NULL, *field = strtok_r(line, ",", &save);
        for (int64_t c = 0; c < out->cols; c++) {
            char *name = field ? trim(field) : "";
            size_t nl = strlen(name);
            if (nl >= 2 && name[0] == '"' && name[nl - 1] == '"') name[nl - 1] = '\0', name++; /* "CRIM" */
            out->names[c] = strdup(name);
            if (!out->names[c]) goto nomem;
            field = strtok_r(NULL, ",", &save);
        }
    }
    while ((len = read_line(f, &line, &cap)) >= 0) {
        lineno++;
        if (len == 0) continue; /* blank lines (a trailing newline) carry no row */
        if ((size_t)((out->rows + 1) * out->cols) > vcap) {
            vcap = vcap ? 2 * vcap : (size_t)out->cols * 256;
            float *v = realloc(out->values, vcap * sizeof *v);
            if (!v) goto nomem;
            out->values = v;
        }
        char *p = line;
        for (int64_t c = 0; c < out->cols; c++) {
            char *end = strchr(p, ',');
            if (!end && c < out->cols - 1) {
                st = fail(err, MAGNA_ERR_FORMAT, "%s:%lld: %lld field(s), the header has %lld", path, (long long)lineno,
                          (long long)c + 1, (long long)out->cols);
                goto done;
            }
            if (end) *end = '\0';
            char *field = trim(p), *stop;
            if (!*field) {
                st = fail(err, MAGNA_ERR_FORMAT, "%s:%lld: column %lld ('%s') is empty", path, (long long)lineno,
                          (long long)c + 1, out->names[c]);
                goto done;
            }
            errno = 0;
            double v = strtod(field, &stop);
            if (*stop || !isfinite(v) || errno == ERANGE) {
                st = fail(err, MAGNA_ERR_FORMAT, "%s:%lld: column %lld ('%s'): '%s' is not a finite number", path,
                          (long long)lineno, (long long)c + 1, out->names[c], field);
                goto done;
            }
            out->values[out->rows * out->cols + c] = (float)v;
            if (c == out->cols - 1 && end) {
                st = fail(err, MAGNA_ERR_FORMAT, "%s:%lld: more fields than the header's %lld", path,
                          (long long)lineno, (long long)out->cols);
                goto done;
            }
            p = end ? end + 1 : p + strlen(p);
        }
        out->rows++;
    }
    if (out->rows == 0) st = fail(err, MAGNA_ERR_FORMAT, "%s: no data rows after the header", path);
    goto done;
nomem:
    st = fail(err, MAGNA_ERR_NOMEM, "%s: out of memory", path);
done:
    free(line);
    fclose(f);
    if (st != MAGNA_OK) magna_table_free(out);
    return st;
}
