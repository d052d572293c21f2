/* magna/data.h — tabular data: a strict CSV reader (plain or gzip), missing values, categorical columns,
 * a seeded train/validation/test split, standardisation fitted on the training split, and the float
 * features, float targets and int32 labels that magna_dataset (magna/train.h) takes.
 *
 *   magna_table t, train, test;
 *   magna_error err;
 *   magna_csv_options o = {.skip_lines = 1};                  // scikit-learn's files start with a count line
 *   if (magna_csv_read("boston_house_prices.csv", &o, &t, &err) != MAGNA_OK) puts(err.message);
 *   magna_table_split(&t, 0.0, 0.2, 42, &train, NULL, &test, &err);
 *   magna_standardizer s;
 *   magna_standardizer_fit(&s, &train, NULL, "MEDV", &err);     // every column but the target
 *   magna_standardizer_apply(&s, &train, &err), magna_standardizer_apply(&s, &test, &err);
 *   float *x, *y;
 *   int64_t width;
 *   magna_table_features(&train, NULL, "MEDV", &x, &width, &err);
 *   magna_table_target(&train, "MEDV", &y, &err);
 *   ... free(x), free(y), magna_standardizer_free(&s), magna_table_free(&t) (and train, test)
 *
 * Column lists (`columns`, `categorical`, `names`) are NULL-terminated arrays of names:
 * (const char *[]){"species", NULL}. Arrays handed out by this module are plain malloc'd memory: free()
 * them. Every rejection is a magna_error whose message names the file, the line and the column (1-based):
 *   iris.csv:17: column 3 ('petal length'): '12abc' is not a number
 *   data.csv:5: 3 fields, the header has 4 */
#ifndef MAGNA_DATA_H
#define MAGNA_DATA_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the reader does with a missing value. A missing value is a field that is empty (after trimming
 * spaces and tabs, and after removing quotes), "NA" or "?" (R's and the UCI repository's markers). "NaN"
 * is not missing: it is a number, accepted only with allow_nonfinite. */
typedef enum magna_missing {
    MAGNA_MISSING_ERROR = 0,   /* reject the file, naming the line and column */
    MAGNA_MISSING_DROP_ROW,    /* leave the row out of the table */
    MAGNA_MISSING_IMPUTE_MEAN, /* keep the row with the cell marked missing; magna_table_split (or
                                * magna_table_impute_mean) fills it with the training rows' mean, or for a
                                * categorical column their most frequent category */
} magna_missing;

/* The zero value reads a comma-separated file with a header row of names, every column numeric. */
typedef struct magna_csv_options {
    int skip_lines;                 /* lines skipped before the header (or the first row): 1 for scikit-learn's
                                     * files, whose first line holds counts */
    bool no_header;                 /* no row of names: columns are named by `names`, else "0", "1", ... */
    const char *const *names;       /* with no_header: one name per field */
    char delimiter;                 /* 0: ',' */
    bool allow_nonfinite;           /* accept nan, inf, infinity (any case, signed) as values */
    magna_missing missing;
    const char *const *columns;     /* keep only these columns, in this order (the others are not parsed);
                                     * NULL: all, in file order */
    const char *const *categorical; /* columns of strings: each distinct value gets an int32 code in order of
                                     * first appearance (label encoding), kept as the value */
} magna_csv_options;

/* A categorical column's values: names[code] for code in [0, count). count is 0 for a numeric column. */
typedef struct magna_categories {
    int32_t count;
    char **names;
} magna_categories;

/* rows x cols float values, row-major. A categorical column holds its codes (0, 1, ...). */
typedef struct magna_table {
    int64_t rows, cols;
    float *values;
    char **names;                 /* cols names */
    magna_categories *categories; /* cols entries */
    uint8_t *missing;             /* rows x cols, 1 where a cell is still missing (MAGNA_MISSING_IMPUTE_MEAN
                                   * before imputation); NULL when no cell is */
    int64_t *line;                /* the file line each row came from, for messages */
    int64_t dropped_rows;         /* rows left out by MAGNA_MISSING_DROP_ROW */
    char *path;                   /* the file read */
} magna_table;

/* Reads a CSV file into *out (zeroed first; freed again on failure). A gzip file (found by its magic
 * bytes, whatever its name) is decompressed on the fly. opts NULL: the zero options. Fields may be
 * quoted ("a, b", "say ""hi"""), but not span lines; spaces and tabs around fields are ignored; an
 * empty line is no row; \r\n endings and a missing final newline are fine. Rejected, each with
 * file, line and column: an empty file, a header without data rows, a field that is not a decimal number
 * ("12abc", "0x10"), NaN or infinity (unless allowed), a value beyond float32, a missing value (under
 * MAGNA_MISSING_ERROR), a row with more or fewer fields than the header, an unclosed quote, a NUL byte,
 * an empty or repeated column name, an unknown name in `columns` or `categorical`. */
magna_status magna_csv_read(const char *path, const magna_csv_options *opts, magna_table *out, magna_error *err);
void magna_table_free(magna_table *t);
/* The index of the column with this name, or -1. */
int64_t magna_table_column(const magna_table *t, const char *name);

/* Shuffles the rows with `seed` (magna_rand_u64, so the same seed gives the same split on every machine)
 * and deals them into train, val and test: ceil(rows * test_frac) test rows, ceil(rows * val_frac)
 * validation rows, the rest training rows. val and test may be NULL when their fraction is 0. Missing
 * cells (MAGNA_MISSING_IMPUTE_MEAN) are filled in all three with the training rows' statistics. */
magna_status magna_table_split(const magna_table *t, double val_frac, double test_frac, uint64_t seed,
                               magna_table *train, magna_table *val, magna_table *test, magna_error *err);
/* Fills t's missing cells with the mean (categorical: most frequent code) of the non-missing cells of
 * `fit` (t itself, or the training split t came from, laid out alike). */
magna_status magna_table_impute_mean(magna_table *t, const magna_table *fit, magna_error *err);

/* Per-column mean and standard deviation (population, as scikit-learn's StandardScaler) of training rows,
 * applied as (x - mean) / std to any table with those columns. A column with std 0 is only centred. */
typedef struct magna_standardizer {
    int64_t count;
    char **names;
    double *mean, *std;
} magna_standardizer;

/* Fits on the numeric columns named (NULL: every numeric column except `except`, which may be NULL);
 * categorical columns are never standardised. A missing or non-finite training value is an error. */
magna_status magna_standardizer_fit(magna_standardizer *s, const magna_table *train, const char *const *columns,
                                    const char *except, magna_error *err);
magna_status magna_standardizer_apply(const magna_standardizer *s, magna_table *t, magna_error *err);
void magna_standardizer_free(magna_standardizer *s);

/* The named columns (NULL: all except `except`) as a rows x *width float matrix, one row per table row; a
 * categorical column becomes its one-hot encoding (one float per category). */
magna_status magna_table_features(const magna_table *t, const char *const *columns, const char *except, float **x,
                                  int64_t *width, magna_error *err);
/* One numeric column as floats (a regression target). */
magna_status magna_table_target(const magna_table *t, const char *column, float **y, magna_error *err);
/* One column as int32 class indices: a categorical column's codes, or a numeric column of whole numbers
 * >= 0. *classes: the category count, or the largest index + 1. */
magna_status magna_table_labels(const magna_table *t, const char *column, int32_t **labels, int32_t *classes,
                                magna_error *err);
/* codes (n of them, each in [0, classes)) as an n x classes matrix of 0s and 1s. */
/* Writes which rows of `all` went to `train` and `test` (0-based row indices, in order) as JSON
 * {"file": ..., "rows": N, "train": [...], "test": [...]}, so another program — PyTorch in bench/ — can
 * train on exactly the same rows. */
magna_status magna_table_dump_split(const char *path, const magna_table *all, const magna_table *train,
                                    const magna_table *test, magna_error *err);
magna_status magna_one_hot(const int32_t *codes, int64_t n, int32_t classes, float **out, magna_error *err);

#ifdef __cplusplus
}
#endif
#endif
