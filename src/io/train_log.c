/* train_log.c — a training log directory (DESIGN §5): the TensorBoard event file, log.csv and curves.svg,
 * a plain SVG of the train and validation loss over epochs, written by hand and replaced atomically
 * (temp file, rename) after every epoch so a browser never sees half of one. */
#include "magna/io.h"
#include "../graph/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


struct magna_train_log {
    char *dir, *csv_path, *svg_path;
    magna_tb_writer *tb;
    FILE *csv;
    int ncols;        /* scalars per epoch, fixed by the first epoch; -1 before it */
    char **tags;      /* the first epoch's tags */
    int *epochs;      /* curve points */
    double *loss, *val;
    int n, cap;
    char *kept_header; /* reopened: log.csv's header line, which this run's columns must match */
};

static char *join(const char *dir, const char *name) {
    const size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static magna_status add_point(magna_train_log *l, int epoch, double loss, double val, magna_error *err);
static magna_status keep_rows(magna_train_log *l, int first_epoch, magna_error *err);

magna_train_log *magna_train_log_open(const char *dir, magna_error *err) { return magna_train_log_reopen(dir, 0, err); }

magna_train_log *magna_train_log_reopen(const char *dir, int first_epoch, magna_error *err) {
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
    if (!dir || !*dir) {
        magna_error_set(err, MAGNA_ERR_ARG, "train log: a directory is required");
        return NULL;
    }
    char failed[512];
    const int e = magna_io_mkdirs(dir, failed, sizeof failed);
    if (e) {
        magna_error_set(err, MAGNA_ERR_IO, "train log %s: cannot create the directory %s: %s", dir, failed, strerror(e));
        return NULL;
    }
    magna_train_log *l = calloc(1, sizeof *l);
    if (!l || !(l->dir = strdup(dir)) || !(l->csv_path = join(dir, "log.csv")) ||
        !(l->svg_path = join(dir, "curves.svg"))) {
        magna_error_set(err, MAGNA_ERR_NOMEM, "train log %s: out of memory", dir);
        magna_train_log_close(l);
        return NULL;
    }
    l->ncols = -1;
    if (!(l->tb = magna_tb_open(dir, err))) {
        magna_train_log_close(l);
        return NULL;
    }
    if (first_epoch > 0 && keep_rows(l, first_epoch, err) != MAGNA_OK) {
        magna_train_log_close(l);
        return NULL;
    }
    int fd = open(l->csv_path, O_WRONLY | O_CREAT | (l->kept_header ? O_APPEND : O_TRUNC) | O_CLOEXEC, 0644);
    if (fd < 0 || !(l->csv = fdopen(fd, "w"))) {
        magna_error_set(err, MAGNA_ERR_IO, "train log: cannot create %s: %s", l->csv_path, strerror(errno));
        if (fd >= 0) close(fd);
        magna_train_log_close(l);
        return NULL;
    }
    return l;
}

/* Reopening for a resumed run: log.csv keeps its header and the rows of epochs before first_epoch (rewritten
 * atomically), and those rows' losses become the curve's first points. No log.csv, or an empty one (a run
 * stopped before its first epoch ended): a fresh one. */
static magna_status keep_rows(magna_train_log *l, int first_epoch, magna_error *err) {
    FILE *in = fopen(l->csv_path, "r");
    if (!in) return errno == ENOENT ? MAGNA_OK : magna_error_set(err, MAGNA_ERR_IO, "train log: cannot read %s: %s",
                                                                 l->csv_path, strerror(errno));
    char *line = NULL, *tmp = NULL;
    size_t cap = 0;
    ssize_t len;
    magna_status st = MAGNA_OK;
    FILE *out = NULL;
    if ((len = getline(&line, &cap, in)) <= 0 && !ferror(in)) { /* empty: the run stopped in its first epoch */
        free(line);
        fclose(in);
        return MAGNA_OK;
    }
    if (len <= 0 || strncmp(line, "epoch,step", 10) != 0) {
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "train log: %s has no 'epoch,step,...' header", l->csv_path);
        goto done;
    }
    if (line[len - 1] == '\n') line[--len] = '\0';
    if (!(l->kept_header = strdup(line)) || !(tmp = malloc(strlen(l->csv_path) + 32))) {
        st = magna_error_set(err, MAGNA_ERR_NOMEM, "train log %s: out of memory", l->dir);
        goto done;
    }
    int loss_col = -1, val_col = -1, col = 0; /* the columns of the curve's points */
    for (char *c = line, *end; c; c = end ? end + 1 : NULL, col++) {
        end = strchr(c, ',');
        const size_t n = end ? (size_t)(end - c) : strlen(c);
        if (n == 4 && strncmp(c, "loss", 4) == 0) loss_col = col;
        if (n == 8 && strncmp(c, "val_loss", 8) == 0) val_col = col;
    }
    sprintf(tmp, "%s.tmp.%ld", l->csv_path, (long)getpid());
    if (!(out = fopen(tmp, "w"))) {
        st = magna_error_set(err, MAGNA_ERR_IO, "train log: cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    fprintf(out, "%s\n", l->kept_header);
    while ((len = getline(&line, &cap, in)) > 0) {
        char *end;
        const long epoch = strtol(line, &end, 10);
        if (end == line || *end != ',' || epoch >= first_epoch) continue;
        fputs(line, out);
        if (line[len - 1] != '\n') fputc('\n', out);
        double loss = NAN, val = NAN;
        col = 0;
        for (char *c = line; c; c = strchr(c, ','), c = c ? c + 1 : NULL, col++) {
            if (col == loss_col) loss = strtod(c, NULL);
            if (col == val_col) val = strtod(c, NULL);
        }
        if ((st = add_point(l, (int)epoch, loss, val, err)) != MAGNA_OK) goto done;
    }
    if (fflush(out) != 0 || ferror(out) || fsync(fileno(out)) != 0) {
        st = magna_error_set(err, MAGNA_ERR_IO, "train log: writing %s failed: %s", tmp, strerror(errno));
        goto done;
    }
    fclose(out), out = NULL;
    if (rename(tmp, l->csv_path) != 0)
        st = magna_error_set(err, MAGNA_ERR_IO, "train log: renaming %s failed: %s", tmp, strerror(errno));
done:
    if (out) fclose(out);
    if (st != MAGNA_OK && tmp) unlink(tmp);
    free(tmp), free(line);
    fclose(in);
    return st;
}

void magna_train_log_close(magna_train_log *l) {
    if (!l) return;
    magna_tb_close(l->tb);
    if (l->csv) fclose(l->csv);
    if (l->tags)
        for (int i = 0; i < l->ncols; i++) free(l->tags[i]);
    free(l->tags);
    free(l->epochs), free(l->loss), free(l->val);
    free(l->dir), free(l->csv_path), free(l->svg_path), free(l->kept_header);
    free(l);
}

/* "train/x" -> "x", "val/x" -> "val_x", other '/' -> '_'; commas and quotes (not expected) -> '_'. */
static void csv_column(FILE *f, const char *tag) {
    if (strncmp(tag, "train/", 6) == 0) tag += 6;
    else if (strncmp(tag, "val/", 4) == 0) fputs("val_", f), tag += 4;
    for (; *tag; tag++) fputc(*tag == '/' || *tag == ',' || *tag == '"' || *tag == '\n' ? '_' : *tag, f);
}

/* ---- SVG ---------------------------------------------------------------------------------------- */

/* A "nice" tick spacing (1, 2 or 5 times a power of ten) for about `want` ticks over `range`. */
static double nice_step(double range, int want) {
    const double raw = range / want, p = pow(10, floor(log10(raw))), r = raw / p;
    return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * p;
}

enum { W = 720, H = 440, ML = 70, MR = 20, MT = 40, MB = 50 };

static void polyline(FILE *f, const magna_train_log *l, const double *v, double x0, double x1, double y0, double y1,
                     const char *color) {
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
    for (int i = 0; i < l->n; i++) {
        if (!isfinite(v[i])) continue;
        const double px = ML + (l->epochs[i] - x0) / (x1 - x0) * (W - ML - MR);
        const double py = H - MB - (v[i] - y0) / (y1 - y0) * (H - MT - MB);
        fprintf(f, "%.2f,%.2f ", px, py);
    }
    fprintf(f, "\"/>\n");
    if (l->n <= 40) /* markers, so a single epoch shows too */
        for (int i = 0; i < l->n; i++)
            if (isfinite(v[i]))
                fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n",
                        ML + (l->epochs[i] - x0) / (x1 - x0) * (W - ML - MR),
                        H - MB - (v[i] - y0) / (y1 - y0) * (H - MT - MB), color);
}

static bool write_svg(FILE *f, const magna_train_log *l) {
    bool has_val = false;
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < l->n; i++) {
        if (isfinite(l->loss[i])) lo = fmin(lo, l->loss[i]), hi = fmax(hi, l->loss[i]);
        if (isfinite(l->val[i])) has_val = true, lo = fmin(lo, l->val[i]), hi = fmax(hi, l->val[i]);
    }
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-12 * fmax(1, fabs(hi))) lo -= 0.5 * fmax(fabs(lo), 1e-3), hi += 0.5 * fmax(fabs(hi), 1e-3);
    const double ystep = nice_step(hi - lo, 5), y0 = floor(lo / ystep) * ystep, y1 = ceil(hi / ystep) * ystep;
    const int last = l->n ? l->epochs[l->n - 1] : 1, first = l->n ? l->epochs[0] : 1;
    const double x0 = first, x1 = last > first ? last : first + 1;
    const double xstep = fmax(1, ceil(nice_step(x1 - x0, 8)));

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"15\">loss</text>\n", ML);
    /* grid, ticks and labels */
    for (int k = 0;; k++) {
        const double v = y0 + k * ystep;
        if (v > y1 + 1e-9 * ystep) break;
        const double py = H - MB - (v - y0) / (y1 - y0) * (H - MT - MB);
        fprintf(f, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"#e0e0e0\"/>\n", ML, py, W - MR, py);
        fprintf(f, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\" stroke=\"black\"/>\n", ML - 5, py, ML, py);
        fprintf(f, "<text x=\"%d\" y=\"%.2f\" text-anchor=\"end\">%.4g</text>\n", ML - 8, py + 4,
                fabs(v) < 1e-12 * ystep ? 0.0 : v);
    }
    for (double v = x0; v <= x1 + 1e-9; v += xstep) {
        const double px = ML + (v - x0) / (x1 - x0) * (W - ML - MR);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"black\"/>\n", px, H - MB, px, H - MB + 5);
        fprintf(f, "<text x=\"%.2f\" y=\"%d\" text-anchor=\"middle\">%.0f</text>\n", px, H - MB + 19, v);
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", ML, MT, ML, H - MB);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", ML, H - MB, W - MR, H - MB);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">epoch</text>\n", (ML + W - MR) / 2, H - 12);
    /* curves */
    polyline(f, l, l->loss, x0, x1, y0, y1, "#1f77b4");
    if (has_val) polyline(f, l, l->val, x0, x1, y0, y1, "#ff7f0e");
    /* legend */
    const int lx = W - MR - 130;
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"120\" height=\"%d\" fill=\"white\" stroke=\"#999\"/>\n", lx, MT + 6,
            has_val ? 44 : 26);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n", lx + 8,
            MT + 19, lx + 32, MT + 19);
    fprintf(f, "<text x=\"%d\" y=\"%d\">train loss</text>\n", lx + 38, MT + 23);
    if (has_val) {
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ff7f0e\" stroke-width=\"2\"/>\n", lx + 8,
                MT + 37, lx + 32, MT + 37);
        fprintf(f, "<text x=\"%d\" y=\"%d\">val loss</text>\n", lx + 38, MT + 41);
    }
    fprintf(f, "</svg>\n");
    return !ferror(f);
}

/* curves.svg through `curves.svg.tmp.<pid>` and a rename. */
static magna_status refresh_svg(magna_train_log *l, magna_error *err) {
    const size_t tlen = strlen(l->svg_path) + 32;
    char *tmp = malloc(tlen);
    if (!tmp) return magna_error_set(err, MAGNA_ERR_NOMEM, "train log %s: out of memory", l->svg_path);
    snprintf(tmp, tlen, "%s.tmp.%ld", l->svg_path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        magna_status st = magna_error_set(err, MAGNA_ERR_IO, "train log %s: cannot create %s: %s", l->svg_path, tmp, strerror(errno));
        if (fd >= 0) close(fd), unlink(tmp);
        free(tmp);
        return st;
    }
    const bool ok = write_svg(f, l);
    const int e = errno;
    if (fclose(f) != 0 || !ok) {
        unlink(tmp);
        magna_status st = magna_error_set(err, MAGNA_ERR_IO, "train log %s: writing %s failed: %s", l->svg_path, tmp,
                               strerror(ok ? errno : e));
        free(tmp);
        return st;
    }
    if (rename(tmp, l->svg_path) != 0) {
        const int re = errno;
        unlink(tmp);
        magna_status st = magna_error_set(err, MAGNA_ERR_IO, "train log %s: renaming %s over it failed: %s", l->svg_path, tmp,
                               strerror(re));
        free(tmp);
        return st;
    }
    free(tmp);
    return MAGNA_OK;
}

/* ---- one epoch ---------------------------------------------------------------------------------- */

magna_status magna_train_log_epoch(magna_train_log *l, int epoch, int64_t step, int n, const magna_log_scalar *s,
                                   magna_error *err) {
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
    if (!l || n < 0 || (n > 0 && !s)) return magna_error_set(err, MAGNA_ERR_ARG, "train log: a log and scalars are required");
    if (l->ncols < 0) { /* first epoch: the columns */
        if (!(l->tags = calloc((size_t)n + 1, sizeof *l->tags)))
            return magna_error_set(err, MAGNA_ERR_NOMEM, "train log %s: out of memory", l->dir);
        for (int i = 0; i < n; i++)
            if (!s[i].tag || !*s[i].tag || !(l->tags[i] = strdup(s[i].tag))) {
                for (int j = 0; j < i; j++) free(l->tags[j]);
                free(l->tags), l->tags = NULL;
                return magna_error_set(err, s[i].tag && *s[i].tag ? MAGNA_ERR_NOMEM : MAGNA_ERR_ARG,
                            "train log %s: scalar %d has no tag (or out of memory)", l->dir, i);
            }
        l->ncols = n;
        char *head = NULL;
        size_t hn = 0;
        FILE *h = open_memstream(&head, &hn);
        if (!h) return magna_error_set(err, MAGNA_ERR_NOMEM, "train log %s: out of memory", l->dir);
        fputs("epoch,step", h);
        for (int i = 0; i < n; i++) fputc(',', h), csv_column(h, s[i].tag);
        fclose(h);
        const bool same = l->kept_header && strcmp(l->kept_header, head) == 0;
        if (l->kept_header && !same) {
            magna_error_set(err, MAGNA_ERR_FORMAT, "train log: %s has the columns '%s', this run logs '%s'",
                            l->csv_path, l->kept_header, head);
            free(head);
            return err ? err->status : MAGNA_ERR_FORMAT;
        }
        if (!same) fprintf(l->csv, "%s\n", head);
        free(head);
    } else {
        if (n != l->ncols) return magna_error_set(err, MAGNA_ERR_ARG, "train log %s: %d scalars, the first epoch had %d", l->dir, n, l->ncols);
        for (int i = 0; i < n; i++)
            if (!s[i].tag || strcmp(s[i].tag, l->tags[i]) != 0)
                return magna_error_set(err, MAGNA_ERR_ARG, "train log %s: scalar %d is '%s', the first epoch had '%s'", l->dir, i,
                            s[i].tag ? s[i].tag : "(null)", l->tags[i]);
    }
    /* TensorBoard */
    for (int i = 0; i < n; i++) {
        magna_status st = magna_tb_scalar(l->tb, s[i].tag, epoch, (float)s[i].value);
        if (st != MAGNA_OK) return magna_error_set(err, st, "train log: %s", magna_tb_errmsg(l->tb));
    }
    magna_tb_flush(l->tb);
    /* CSV */
    fprintf(l->csv, "%d,%lld", epoch, (long long)step);
    for (int i = 0; i < n; i++) fprintf(l->csv, ",%.9g", s[i].value);
    fputc('\n', l->csv);
    if (fflush(l->csv) != 0 || ferror(l->csv))
        return magna_error_set(err, MAGNA_ERR_IO, "train log: writing %s failed: %s", l->csv_path, strerror(errno));
    /* curves */
    double loss = NAN, val = NAN;
    for (int i = 0; i < n; i++) {
        if (strcmp(s[i].tag, "train/loss") == 0) loss = s[i].value;
        if (strcmp(s[i].tag, "val/loss") == 0) val = s[i].value;
    }
    magna_status st = add_point(l, epoch, loss, val, err);
    return st != MAGNA_OK ? st : refresh_svg(l, err);
}

static magna_status add_point(magna_train_log *l, int epoch, double loss, double val, magna_error *err) {
    if (l->n == l->cap) {
        const int cap = l->cap ? 2 * l->cap : 64;
        int *ep = realloc(l->epochs, (size_t)cap * sizeof *ep);
        if (ep) l->epochs = ep;
        double *lo = realloc(l->loss, (size_t)cap * sizeof *lo);
        if (lo) l->loss = lo;
        double *va = realloc(l->val, (size_t)cap * sizeof *va);
        if (va) l->val = va;
        if (!ep || !lo || !va) return magna_error_set(err, MAGNA_ERR_NOMEM, "train log %s: out of memory", l->dir);
        l->cap = cap;
    }
    l->epochs[l->n] = epoch, l->loss[l->n] = loss, l->val[l->n] = val;
    l->n++;
    return MAGNA_OK;
}
