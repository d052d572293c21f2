/* tabular.c — what comes after reading a table: a seeded split, imputation and standardisation fitted
 * on the training rows only (statistics of validation or test rows must not leak into training), and
 * the float / int32 arrays a model takes. Messages name the table's file, and the file line of a row. */
#include "magna/data.h"
#include "../graph/internal.h"

#include <math.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Class indices are kept below this (also the reader's category limit: codes are exact in a float). */
#define MAX_CLASSES (1 << 24)

static void clear(magna_error *err) {
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
}

static const char *src(const magna_table *t) { return t->path ? t->path : "table"; }

static bool cell_missing(const magna_table *t, int64_t r, int64_t c) {
    return t->missing && t->missing[r * t->cols + c];
}

/* n x m elements of `size` bytes, or NULL when that overflows or memory is out. */
static void *alloc_array(int64_t n, int64_t m, size_t size) {
    if (n < 0 || m < 0 || (m && (uint64_t)n > SIZE_MAX / size / (uint64_t)m)) return NULL;
    return malloc((size_t)n * (size_t)m * size + 1); /* + 1: a 0-row table still gets a pointer */
}

/* The columns named (NULL: every column but `except`, and, if numeric_only, but the categorical ones). */
static magna_status pick_columns(const magna_table *t, const char *const *columns, const char *except,
                                 bool numeric_only, const char *what, int64_t **idx, int64_t *n, magna_error *err) {
    *idx = NULL, *n = 0;
    if (except && magna_table_column(t, except) < 0)
        return magna_error_set(err, MAGNA_ERR_ARG, "%s: %s: no column named '%s' (in `except`)", src(t), what, except);
    int64_t want = 0;
    while (columns && columns[want]) want++;
    if (!(*idx = alloc_array(columns ? want : t->cols, 1, sizeof **idx)))
        return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", src(t));
    if (columns) {
        for (int64_t k = 0; k < want; k++) {
            int64_t c = magna_table_column(t, columns[k]);
            if (c < 0) return magna_error_set(err, MAGNA_ERR_ARG, "%s: %s: no column named '%s'", src(t), what, columns[k]);
            if (numeric_only && t->categories[c].count)
                return magna_error_set(err, MAGNA_ERR_ARG, "%s: %s: column '%s' is categorical", src(t), what, columns[k]);
            (*idx)[(*n)++] = c;
        }
    } else {
        for (int64_t c = 0; c < t->cols; c++)
            if ((!except || strcmp(t->names[c], except) != 0) && !(numeric_only && t->categories[c].count))
                (*idx)[(*n)++] = c;
    }
    if (*n == 0) return magna_error_set(err, MAGNA_ERR_ARG, "%s: %s: no columns selected", src(t), what);
    return MAGNA_OK;
}

/* ---- copies and the split ---------------------------------------------------------------------- */

/* out = the rows rows[0..n) of t, everything else copied alike. */
static magna_status table_take(const magna_table *t, const int64_t *rows, int64_t n, magna_table *out,
                               magna_error *err) {
    memset(out, 0, sizeof *out);
    out->cols = t->cols;
    out->dropped_rows = t->dropped_rows;
    out->names = calloc((size_t)t->cols, sizeof *out->names);
    out->categories = calloc((size_t)t->cols, sizeof *out->categories);
    out->values = alloc_array(n, t->cols, sizeof *out->values);
    out->line = alloc_array(n, 1, sizeof *out->line);
    out->path = t->path ? strdup(t->path) : NULL;
    if (t->missing) out->missing = alloc_array(n, t->cols, 1);
    if (!out->names || !out->categories || !out->values || !out->line || (t->path && !out->path) ||
        (t->missing && !out->missing))
        goto nomem;
    for (int64_t c = 0; c < t->cols; c++) {
        if (!(out->names[c] = strdup(t->names[c]))) goto nomem;
        int32_t k = t->categories[c].count;
        if (!k) continue;
        if (!(out->categories[c].names = calloc((size_t)k, sizeof(char *)))) goto nomem;
        out->categories[c].count = k;
        for (int32_t i = 0; i < k; i++)
            if (!(out->categories[c].names[i] = strdup(t->categories[c].names[i]))) goto nomem;
    }
    size_t width = (size_t)t->cols;
    for (int64_t r = 0; r < n; r++) {
        memcpy(out->values + (size_t)r * width, t->values + (size_t)rows[r] * width, width * sizeof(float));
        if (t->missing) memcpy(out->missing + (size_t)r * width, t->missing + (size_t)rows[r] * width, width);
        out->line[r] = t->line ? t->line[rows[r]] : rows[r] + 1;
    }
    out->rows = n;
    return MAGNA_OK;
nomem:
    magna_table_free(out);
    return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", src(t));
}

/* What imputation puts in each column: the mean of the finite non-missing values, or for a categorical
 * column the most frequent code (the lowest on a tie); NaN where `fit` has no value to take. */
static magna_status impute_values(const magna_table *fit, double **fill, magna_error *err) {
    *fill = alloc_array(fit->cols, 1, sizeof **fill);
    if (!*fill) return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", src(fit));
    for (int64_t c = 0; c < fit->cols; c++) {
        int32_t k = fit->categories[c].count;
        if (k) {
            int64_t *counts = calloc((size_t)k, sizeof *counts), best = -1;
            if (!counts) {
                free(*fill);
                *fill = NULL;
                return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", src(fit));
            }
            for (int64_t r = 0; r < fit->rows; r++) {
                float v = fit->values[r * fit->cols + c];
                if (!cell_missing(fit, r, c) && v >= 0 && v < (float)k) counts[(int32_t)v]++;
            }
            for (int32_t i = 0; i < k; i++)
                if (counts[i] && (best < 0 || counts[i] > counts[best])) best = i;
            free(counts);
            (*fill)[c] = best < 0 ? NAN : (double)best;
        } else {
            double sum = 0;
            int64_t n = 0;
            for (int64_t r = 0; r < fit->rows; r++) {
                float v = fit->values[r * fit->cols + c];
                if (!cell_missing(fit, r, c) && isfinite(v)) sum += v, n++;
            }
            (*fill)[c] = n ? sum / (double)n : NAN;
        }
    }
    return MAGNA_OK;
}

static magna_status impute_apply(magna_table *t, const double *fill, magna_error *err) {
    if (!t->missing) return MAGNA_OK;
    for (int64_t r = 0; r < t->rows; r++)
        for (int64_t c = 0; c < t->cols; c++) {
            if (!t->missing[r * t->cols + c]) continue;
            if (isnan(fill[c]))
                return magna_error_set(err, MAGNA_ERR_FORMAT, "%s:%lld: column '%s': missing, and no training value to impute",
                            src(t), (long long)t->line[r], t->names[c]);
            t->values[r * t->cols + c] = (float)fill[c];
        }
    free(t->missing);
    t->missing = NULL;
    return MAGNA_OK;
}

static bool same_layout(const magna_table *a, const magna_table *b) {
    if (a->cols != b->cols) return false;
    for (int64_t c = 0; c < a->cols; c++)
        if (strcmp(a->names[c], b->names[c]) != 0 || a->categories[c].count != b->categories[c].count) return false;
    return true;
}

magna_status magna_table_impute_mean(magna_table *t, const magna_table *fit, magna_error *err) {
    clear(err);
    if (!t || !fit) return magna_error_set(err, MAGNA_ERR_ARG, "impute: no table");
    if (!same_layout(t, fit))
        return magna_error_set(err, MAGNA_ERR_ARG, "%s: impute: the table to fit on has other columns", src(t));
    double *fill;
    magna_status st = impute_values(fit, &fill, err);
    if (st == MAGNA_OK) st = impute_apply(t, fill, err);
    free(fill);
    return st;
}

/* ceil(n * frac), forgiving the last bit of a product like 10 * 0.3 = 3.0000000000000004. */
static int64_t held_out(int64_t n, double frac) { return frac > 0 ? (int64_t)ceil((double)n * frac - 1e-9) : 0; }

magna_status magna_table_split(const magna_table *t, double val_frac, double test_frac, uint64_t seed,
                               magna_table *train, magna_table *val, magna_table *test, magna_error *err) {
    clear(err);
    if (train) memset(train, 0, sizeof *train);
    if (val) memset(val, 0, sizeof *val);
    if (test) memset(test, 0, sizeof *test);
    if (!t || !train) return magna_error_set(err, MAGNA_ERR_ARG, "split: no table");
    if (!(val_frac >= 0 && val_frac < 1 && test_frac >= 0 && test_frac < 1))
        return magna_error_set(err, MAGNA_ERR_ARG, "%s: split: fractions must be in [0, 1), got %g and %g", src(t), val_frac,
                    test_frac);
    if ((val_frac > 0 && !val) || (test_frac > 0 && !test))
        return magna_error_set(err, MAGNA_ERR_ARG, "%s: split: a %s fraction > 0 needs a table to fill", src(t),
                    val_frac > 0 && !val ? "validation" : "test");
    int64_t n = t->rows, n_val = held_out(n, val_frac), n_test = held_out(n, test_frac);
    if (n_val + n_test >= n)
        return magna_error_set(err, MAGNA_ERR_ARG, "%s: split: %lld rows leave no training rows (%lld validation, %lld test)",
                    src(t), (long long)n, (long long)n_val, (long long)n_test);
    int64_t n_train = n - n_val - n_test, *perm = alloc_array(n, 1, sizeof *perm);
    if (!perm) return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", src(t));
    /* Fisher-Yates on stream 1 of the counter-based RNG: the order depends on the seed alone */
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(magna_rand_u64(seed, 1, (uint64_t)i) % (uint64_t)(i + 1)), tmp = perm[i];
        perm[i] = perm[j], perm[j] = tmp;
    }
    magna_table empty;
    magna_status st = table_take(t, perm, n_train, train, err);
    if (st == MAGNA_OK) st = table_take(t, perm + n_train, n_val, val ? val : &empty, err);
    if (st == MAGNA_OK && !val) magna_table_free(&empty);
    if (st == MAGNA_OK) st = table_take(t, perm + n_train + n_val, n_test, test ? test : &empty, err);
    if (st == MAGNA_OK && !test) magna_table_free(&empty);
    free(perm);
    if (st == MAGNA_OK && t->missing) { /* fill all three with the training rows' statistics */
        double *fill;
        st = impute_values(train, &fill, err);
        if (st == MAGNA_OK) st = impute_apply(train, fill, err);
        if (st == MAGNA_OK && val) st = impute_apply(val, fill, err);
        if (st == MAGNA_OK && test) st = impute_apply(test, fill, err);
        free(fill);
    }
    if (st != MAGNA_OK) {
        magna_table_free(train);
        if (val) magna_table_free(val);
        if (test) magna_table_free(test);
    }
    return st;
}

/* ---- standardisation --------------------------------------------------------------------------- */

void magna_standardizer_free(magna_standardizer *s) {
    if (!s) return;
    for (int64_t k = 0; s->names && k < s->count; k++) free(s->names[k]);
    free(s->names);
    free(s->mean);
    free(s->std);
    memset(s, 0, sizeof *s);
}

magna_status magna_standardizer_fit(magna_standardizer *s, const magna_table *train, const char *const *columns,
                                    const char *except, magna_error *err) {
    clear(err);
    if (!s) return magna_error_set(err, MAGNA_ERR_ARG, "standardizer: none given");
    memset(s, 0, sizeof *s);
    if (!train || train->rows < 1) return magna_error_set(err, MAGNA_ERR_ARG, "standardizer: no training rows");
    int64_t *idx, n;
    magna_status st = pick_columns(train, columns, except, true, "standardizer", &idx, &n, err);
    if (st != MAGNA_OK) {
        free(idx);
        return st;
    }
    s->names = calloc((size_t)n, sizeof *s->names);
    s->mean = alloc_array(n, 1, sizeof *s->mean);
    s->std = alloc_array(n, 1, sizeof *s->std);
    if (!s->names || !s->mean || !s->std) {
        st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", src(train));
        goto done;
    }
    s->count = n;
    const int64_t rows = train->rows, cols = train->cols;
    for (int64_t k = 0; k < n; k++) {
        int64_t c = idx[k];
        if (!(s->names[k] = strdup(train->names[c]))) {
            st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", src(train));
            goto done;
        }
        double mean = 0, var = 0;
        for (int64_t r = 0; r < rows; r++) {
            float v = train->values[r * cols + c];
            if (cell_missing(train, r, c) || !isfinite(v)) {
                st = magna_error_set(err, cell_missing(train, r, c) ? MAGNA_ERR_FORMAT : MAGNA_ERR_NUMERIC,
                          "%s:%lld: standardizer: column '%s': %s", src(train), (long long)train->line[r],
                          train->names[c], cell_missing(train, r, c) ? "missing value (impute first)" : "not finite");
                goto done;
            }
            mean += v;
        }
        mean /= (double)rows;
        for (int64_t r = 0; r < rows; r++) {
            double d = train->values[r * cols + c] - mean;
            var += d * d;
        }
        s->mean[k] = mean;
        s->std[k] = sqrt(var / (double)rows);
    }
done:
    free(idx);
    if (st != MAGNA_OK) magna_standardizer_free(s);
    return st;
}

magna_status magna_standardizer_apply(const magna_standardizer *s, magna_table *t, magna_error *err) {
    clear(err);
    if (!s || !t) return magna_error_set(err, MAGNA_ERR_ARG, "standardizer: no table");
    for (int64_t k = 0; k < s->count; k++) { /* check every column before changing any */
        int64_t c = magna_table_column(t, s->names[k]);
        if (c < 0) return magna_error_set(err, MAGNA_ERR_ARG, "%s: standardizer: no column named '%s'", src(t), s->names[k]);
        if (t->categories[c].count)
            return magna_error_set(err, MAGNA_ERR_ARG, "%s: standardizer: column '%s' is categorical", src(t), s->names[k]);
    }
    for (int64_t k = 0; k < s->count; k++) {
        int64_t c = magna_table_column(t, s->names[k]);
        double mean = s->mean[k], sd = s->std[k] > 0 ? s->std[k] : 1; /* a constant column is only centred */
        for (int64_t r = 0; r < t->rows; r++)
            if (!cell_missing(t, r, c)) t->values[r * t->cols + c] = (float)((t->values[r * t->cols + c] - mean) / sd);
    }
    return MAGNA_OK;
}

/* ---- arrays for a model ------------------------------------------------------------------------ */

static magna_status check_present(const magna_table *t, int64_t c, const char *what, magna_error *err) {
    for (int64_t r = 0; t->missing && r < t->rows; r++)
        if (t->missing[r * t->cols + c])
            return magna_error_set(err, MAGNA_ERR_FORMAT,
                        "%s:%lld: %s: column '%s': missing value (impute it: magna_table_split or "
                        "magna_table_impute_mean)",
                        src(t), (long long)t->line[r], what, t->names[c]);
    return MAGNA_OK;
}

magna_status magna_table_features(const magna_table *t, const char *const *columns, const char *except, float **x,
                                  int64_t *width, magna_error *err) {
    clear(err);
    if (!x || !width) return magna_error_set(err, MAGNA_ERR_ARG, "features: nowhere to put them");
    *x = NULL, *width = 0;
    if (!t) return magna_error_set(err, MAGNA_ERR_ARG, "features: no table");
    int64_t *idx, n, w = 0;
    magna_status st = pick_columns(t, columns, except, false, "features", &idx, &n, err);
    for (int64_t k = 0; st == MAGNA_OK && k < n; k++) {
        st = check_present(t, idx[k], "features", err);
        w += t->categories[idx[k]].count ? t->categories[idx[k]].count : 1;
    }
    if (st == MAGNA_OK && !(*x = alloc_array(t->rows, w, sizeof **x)))
        st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: features: out of memory (%lld x %lld)", src(t), (long long)t->rows,
                  (long long)w);
    for (int64_t r = 0; st == MAGNA_OK && r < t->rows; r++) {
        float *out = *x + r * w;
        for (int64_t k = 0; k < n; k++) {
            float v = t->values[r * t->cols + idx[k]];
            int32_t classes = t->categories[idx[k]].count;
            if (!classes) {
                *out++ = v;
                continue;
            }
            if (!(v >= 0 && v < (float)classes)) { /* only a caller's edit of the codes gets here */
                st = magna_error_set(err, MAGNA_ERR_RANGE, "%s:%lld: features: column '%s': code %g of %d categories", src(t),
                          (long long)t->line[r], t->names[idx[k]], (double)v, (int)classes);
                break;
            }
            memset(out, 0, (size_t)classes * sizeof *out);
            out[(int32_t)v] = 1;
            out += classes;
        }
    }
    free(idx);
    if (st != MAGNA_OK) {
        free(*x);
        *x = NULL;
        return st;
    }
    *width = w;
    return MAGNA_OK;
}

magna_status magna_table_target(const magna_table *t, const char *column, float **y, magna_error *err) {
    clear(err);
    if (!y) return magna_error_set(err, MAGNA_ERR_ARG, "target: nowhere to put it");
    *y = NULL;
    if (!t) return magna_error_set(err, MAGNA_ERR_ARG, "target: no table");
    int64_t c = magna_table_column(t, column);
    if (c < 0) return magna_error_set(err, MAGNA_ERR_ARG, "%s: target: no column named '%s'", src(t), column ? column : "(null)");
    if (t->categories[c].count)
        return magna_error_set(err, MAGNA_ERR_ARG, "%s: target: column '%s' is categorical (use magna_table_labels)", src(t),
                    column);
    magna_status st = check_present(t, c, "target", err);
    if (st != MAGNA_OK) return st;
    if (!(*y = alloc_array(t->rows, 1, sizeof **y))) return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", src(t));
    for (int64_t r = 0; r < t->rows; r++) (*y)[r] = t->values[r * t->cols + c];
    return MAGNA_OK;
}

magna_status magna_table_labels(const magna_table *t, const char *column, int32_t **labels, int32_t *classes,
                                magna_error *err) {
    clear(err);
    if (!labels || !classes) return magna_error_set(err, MAGNA_ERR_ARG, "labels: nowhere to put them");
    *labels = NULL, *classes = 0;
    if (!t) return magna_error_set(err, MAGNA_ERR_ARG, "labels: no table");
    int64_t c = magna_table_column(t, column);
    if (c < 0) return magna_error_set(err, MAGNA_ERR_ARG, "%s: labels: no column named '%s'", src(t), column ? column : "(null)");
    magna_status st = check_present(t, c, "labels", err);
    if (st != MAGNA_OK) return st;
    if (!(*labels = alloc_array(t->rows, 1, sizeof **labels)))
        return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", src(t));
    int32_t most = -1;
    for (int64_t r = 0; r < t->rows; r++) {
        float v = t->values[r * t->cols + c];
        if (!(v >= 0 && v < (float)MAX_CLASSES && v == floorf(v))) {
            free(*labels);
            *labels = NULL;
            return magna_error_set(err, MAGNA_ERR_RANGE, "%s:%lld: labels: column '%s': %g is not a class index (0, 1, ...)",
                        src(t), (long long)t->line[r], column, (double)v);
        }
        (*labels)[r] = (int32_t)v;
        if ((int32_t)v > most) most = (int32_t)v;
    }
    *classes = t->categories[c].count ? t->categories[c].count : most + 1;
    return MAGNA_OK;
}

magna_status magna_one_hot(const int32_t *codes, int64_t n, int32_t classes, float **out, magna_error *err) {
    clear(err);
    if (!out) return magna_error_set(err, MAGNA_ERR_ARG, "one_hot: nowhere to put it");
    *out = NULL;
    if (n < 0 || (n > 0 && !codes) || classes < 1)
        return magna_error_set(err, MAGNA_ERR_ARG, "one_hot: %lld codes, %d classes", (long long)n, (int)classes);
    for (int64_t i = 0; i < n; i++)
        if (codes[i] < 0 || codes[i] >= classes)
            return magna_error_set(err, MAGNA_ERR_RANGE, "one_hot: codes[%lld] = %d, expected 0 to %d", (long long)i,
                        (int)codes[i], (int)classes - 1);
    if (!(*out = alloc_array(n, classes, sizeof **out)))
        return magna_error_set(err, MAGNA_ERR_NOMEM, "one_hot: out of memory (%lld x %d)", (long long)n, (int)classes);
    memset(*out, 0, (size_t)n * (size_t)classes * sizeof **out);
    for (int64_t i = 0; i < n; i++) (*out)[i * classes + codes[i]] = 1;
    return MAGNA_OK;
}

magna_status magna_table_dump_split(const char *path, const magna_table *all, const magna_table *train,
                                    const magna_table *test, magna_error *err) {
    FILE *f = fopen(path, "w");
    if (!f) return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    const magna_table *parts[2] = {train, test};
    const char *names[2] = {"train", "test"};
    fprintf(f, "{\"file\": \"%s\", \"rows\": %lld", all->path ? all->path : "", (long long)all->rows);
    for (int p = 0; p < 2; p++) {
        fprintf(f, ",\n \"%s\": [", names[p]);
        for (int64_t r = 0; parts[p] && r < parts[p]->rows; r++) {
            int64_t lo = 0, hi = all->rows - 1, line = parts[p]->line[r];
            while (lo < hi) { /* all->line ascends: find the row read from that line */
                int64_t mid = (lo + hi) / 2;
                if (all->line[mid] < line)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            fprintf(f, "%s%lld", r ? ", " : "", (long long)lo);
        }
        fprintf(f, "]");
    }
    fprintf(f, "}\n");
    if (fclose(f) != 0) return magna_error_set(err, MAGNA_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return MAGNA_OK;
}
