/* test_data.c — the CSV reader and the tabular helpers. One malformed file per reader error, each
 * asserting the whole message (file, line, column); scikit-learn's data sets loading with one call each;
 * the split, standardisation, imputation and encodings; and random bytes that must never crash it. */
#include "magna.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define SKLEARN "/usr/lib/python3/dist-packages/sklearn/datasets/data/"
#define S(lit) lit, sizeof(lit) - 1 /* a literal with its length: NUL bytes count */
#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})

static char dir[64];
static char *written[128];
static int n_written;

static const char *write_file(const char *name, const char *data, size_t len) {
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    if (n_written < 128) written[n_written++] = path;
    return path;
}

/* Reads `data` as file `name`; the read must fail with `status` and the message "<path><suffix>". */
static void expect_error(const char *name, const char *data, size_t len, const magna_csv_options *o,
                         magna_status status, const char *suffix) {
    const char *path = write_file(name, data, len);
    magna_table t;
    magna_error e;
    magna_status st = magna_csv_read(path, o, &t, &e);
    char want[700];
    snprintf(want, sizeof want, "%s%s", path, suffix);
    CHECK(st == status && e.status == status && strcmp(e.message, want) == 0, "%s: got %s \"%s\", want %s \"%s\"", name,
          magna_status_name(st), e.message, magna_status_name(status), want);
    CHECK(t.rows == 0 && t.values == NULL && t.names == NULL, "%s: a failed read leaves an empty table", name);
    CHECK(magna_csv_read(path, o, &t, NULL) == status, "%s: the same without a magna_error", name);
}

static magna_table load(const char *name, const char *data, size_t len, const magna_csv_options *o) {
    magna_table t;
    magna_error e;
    magna_status st = magna_csv_read(write_file(name, data, len), o, &t, &e);
    CHECK(st == MAGNA_OK, "%s: %s", name, e.message);
    return t;
}

static void malformed(void) {
    const magna_csv_options none = {0}, nonum = {.no_header = true};
    expect_error("empty.csv", S(""), NULL, MAGNA_ERR_FORMAT, ": empty file");
    expect_error("blank.csv", S("\n\r\n\n"), NULL, MAGNA_ERR_FORMAT, ":3: the file ends before its header");
    expect_error("header_only.csv", S("a,b"), NULL, MAGNA_ERR_FORMAT, ":1: no data rows after the header");
    expect_error("header_nl.csv", S("a,b\n"), NULL, MAGNA_ERR_FORMAT, ":1: no data rows after the header");
    expect_error("header_crlf.csv", S("a,b\r\n\r\n"), &none, MAGNA_ERR_FORMAT, ":1: no data rows after the header");
    expect_error("skip_past_end.csv", S("506,13\n"), &(magna_csv_options){.skip_lines = 3}, MAGNA_ERR_FORMAT,
                 ": 1 line, expected 3 to skip before the header");
    expect_error("not_a_number.csv", S("a,b\n1,2\n3,12abc\n"), NULL, MAGNA_ERR_FORMAT,
                 ":3: column 2 ('b'): '12abc' is not a number");
    expect_error("hex.csv", S("a,b\n0x10,2\n"), NULL, MAGNA_ERR_FORMAT, ":2: column 1 ('a'): '0x10' is not a number");
    expect_error("two_dots.csv", S("a,b\n1.2.3,2\n"), NULL, MAGNA_ERR_FORMAT,
                 ":2: column 1 ('a'): '1.2.3' is not a number");
    expect_error("bare_exponent.csv", S("a,b\n1e,2\n"), NULL, MAGNA_ERR_FORMAT,
                 ":2: column 1 ('a'): '1e' is not a number");
    expect_error("inner_space.csv", S("a,b\n1 2,3\n"), NULL, MAGNA_ERR_FORMAT,
                 ":2: column 1 ('a'): '1 2' is not a number");
    expect_error("nan.csv", S("a,b\n1,2\nNaN,4\n"), NULL, MAGNA_ERR_FORMAT,
                 ":3: column 1 ('a'): 'NaN' is not finite (set allow_nonfinite to accept it)");
    expect_error("inf.csv", S("a,b\n1,-inf\n"), NULL, MAGNA_ERR_FORMAT,
                 ":2: column 2 ('b'): '-inf' is not finite (set allow_nonfinite to accept it)");
    expect_error("overflow.csv", S("a,b\n1,1e39\n"), NULL, MAGNA_ERR_FORMAT,
                 ":2: column 2 ('b'): '1e39' is out of range for float32");
    expect_error("short_row.csv", S("a,b,c,d\n1,2,3,4\n1,2,3\n"), NULL, MAGNA_ERR_FORMAT,
                 ":3: 3 fields, the header has 4");
    expect_error("long_row.csv", S("a,b,c,d\n1,2,3,4,5\n"), NULL, MAGNA_ERR_FORMAT, ":2: 5 fields, the header has 4");
    expect_error("one_field.csv", S("a,b\n1,2\n7\n"), NULL, MAGNA_ERR_FORMAT, ":3: 1 field, the header has 2");
    expect_error("ragged_no_header.csv", S("1,2,3\n4,5,6\n7,8\n"), &nonum, MAGNA_ERR_FORMAT,
                 ":3: 2 fields, line 1 has 3");
    expect_error("empty_field.csv", S("a,b\n1,\n"), NULL, MAGNA_ERR_FORMAT,
                 ":2: column 2 ('b'): missing value (empty field)");
    expect_error("na_field.csv", S("a,b\n1,2\nNA,3\n"), NULL, MAGNA_ERR_FORMAT,
                 ":3: column 1 ('a'): missing value 'NA'");
    expect_error("unclosed_quote.csv", S("a,b\n1,\"2\n3,4\n"), NULL, MAGNA_ERR_FORMAT,
                 ":2: column 2: a quote is not closed (fields cannot span lines)");
    expect_error("after_quote.csv", S("a,b\n\"1\"x,2\n"), NULL, MAGNA_ERR_FORMAT,
                 ":2: column 1: text after a closing quote");
    expect_error("nul.csv", S("a,b\n1,\0002\n"), NULL, MAGNA_ERR_FORMAT, ":2: byte 3 is NUL (not a text file?)");
    expect_error("no_name.csv", S("a,,c\n1,2,3\n"), NULL, MAGNA_ERR_FORMAT, ":1: column 2 has no name");
    expect_error("same_name.csv", S("a,b,a\n1,2,3\n"), NULL, MAGNA_ERR_FORMAT,
                 ":1: columns 1 and 3 are both named 'a'");
    expect_error("unknown_column.csv", S("a,b\n1,2\n"), &(magna_csv_options){.columns = NAMES("b", "z")},
                 MAGNA_ERR_FORMAT, ":1: no column named 'z' (selected in `columns`)");
    expect_error("unknown_categorical.csv", S("a,b\n1,2\n"), &(magna_csv_options){.categorical = NAMES("z")},
                 MAGNA_ERR_FORMAT, ":1: categorical column 'z' is not in the file");
    expect_error("unselected_categorical.csv", S("a,b\n1,x\n"),
                 &(magna_csv_options){.columns = NAMES("a"), .categorical = NAMES("b")}, MAGNA_ERR_FORMAT,
                 ":1: categorical column 'b' is not among the selected `columns`");
    expect_error("names_count.csv", S("1,2,3\n"), &(magna_csv_options){.no_header = true, .names = NAMES("x", "y")},
                 MAGNA_ERR_FORMAT, ":1: 3 fields, but 2 names were given");
    expect_error("all_dropped.csv", S("a,b\n1,NA\n?,2\n"), &(magna_csv_options){.missing = MAGNA_MISSING_DROP_ROW},
                 MAGNA_ERR_FORMAT, ": all 2 rows have a missing value (dropped)");
    expect_error("string_in_numeric.csv", S("a,species\n1,setosa\n"), NULL, MAGNA_ERR_FORMAT,
                 ":2: column 2 ('species'): 'setosa' is not a number");
    /* the first 1000 bytes of digits.csv.gz: 24 whole lines, then the stream breaks off */
    FILE *f = fopen(SKLEARN "digits.csv.gz", "rb");
    char gz[1000];
    size_t got = f ? fread(gz, 1, sizeof gz, f) : 0;
    if (f) fclose(f);
    CHECK(got == sizeof gz, "digits.csv.gz is readable");
    magna_status gz_status = MAGNA_ERR_FORMAT;
    const char *gz_msg = ":25: gzip: unexpected end of file";
    magna_table probe;
    if (magna_csv_read(SKLEARN "digits.csv.gz", &nonum, &probe, NULL) == MAGNA_ERR_UNSUPPORTED) /* no zlib */
        gz_status = MAGNA_ERR_UNSUPPORTED, gz_msg = ": a gzip file, and this magna was built without zlib";
    magna_table_free(&probe);
    expect_error("truncated.csv.gz", gz, got, &nonum, gz_status, gz_msg);
    expect_error("garbage.gz", S("\x1f\x8b not really gzip"), &nonum, gz_status,
                 gz_status == MAGNA_ERR_FORMAT ? ":1: gzip: unknown compression method" : gz_msg);
    expect_error("bad_skip.csv", S("a\n1\n"), &(magna_csv_options){.skip_lines = -1}, MAGNA_ERR_ARG,
                 ": skip_lines is negative (-1)");

    /* a missing file, and a directory */
    magna_table t;
    magna_error e;
    char missing[128], sub[128];
    snprintf(missing, sizeof missing, "%s/no_such.csv", dir);
    CHECK(magna_csv_read(missing, NULL, &t, &e) == MAGNA_ERR_IO && strstr(e.message, "no_such.csv: cannot open: ") &&
              strstr(e.message, "No such file"),
          "missing file: %s", e.message);
    snprintf(sub, sizeof sub, "%s/a_directory", dir);
    mkdir(sub, 0700);
    char want[200];
    snprintf(want, sizeof want, "%s: is a directory, not a file", sub);
    CHECK(magna_csv_read(sub, NULL, &t, &e) == MAGNA_ERR_IO && strcmp(e.message, want) == 0, "directory: %s",
          e.message);
    rmdir(sub);
    CHECK(magna_csv_read(NULL, NULL, &t, &e) == MAGNA_ERR_ARG, "NULL path: %s", e.message);
}

/* Files that are odd but fine. */
static void edge_cases(void) {
    magna_table t = load("crlf.csv", S("a,b\r\n1,2\r\n3,4\r\n"), NULL);
    CHECK(t.rows == 2 && t.cols == 2 && strcmp(t.names[1], "b") == 0 && t.values[3] == 4, "\\r\\n endings");
    magna_table_free(&t);
    t = load("no_final_newline.csv", S("a,b\n1,2\n3,4"), NULL);
    CHECK(t.rows == 2 && t.values[3] == 4 && t.line[1] == 3, "no final newline: %lld rows", (long long)t.rows);
    magna_table_free(&t);
    t = load("bom_quotes_spaces.csv", S("\xEF\xBB\xBF\"x 1\" , \"y\"\"q\"\n 1.5 ,\t-2e3\n\n\"3\",+.5\n"), NULL);
    CHECK(t.rows == 2 && strcmp(t.names[0], "x 1") == 0 && strcmp(t.names[1], "y\"q") == 0 && t.values[0] == 1.5f &&
              t.values[1] == -2000 && t.values[2] == 3 && t.values[3] == 0.5f && t.line[1] == 4,
          "BOM, quotes, spaces, a blank line: '%s' '%s'", t.rows ? t.names[0] : "", t.rows ? t.names[1] : "");
    magna_table_free(&t);
    t = load("nan_allowed.csv", S("a,b\nNaN,inf\n-Infinity,1\n"), &(magna_csv_options){.allow_nonfinite = true});
    CHECK(t.rows == 2 && isnan(t.values[0]) && isinf(t.values[1]) && t.values[1] > 0 && isinf(t.values[2]) &&
              t.values[2] < 0 && !t.missing,
          "NaN and infinities accepted with allow_nonfinite");
    magna_table_free(&t);
    t = load("subnormal.csv", S("a\n1e-50\n"), NULL);
    CHECK(t.rows == 1 && t.values[0] == 0, "a value below float32's range reads as 0");
    magna_table_free(&t);
    t = load("semicolon.csv", S("a;b;c\n1;2;3\n"), &(magna_csv_options){.delimiter = ';', .columns = NAMES("c", "a")});
    CHECK(t.rows == 1 && t.cols == 2 && strcmp(t.names[0], "c") == 0 && t.values[0] == 3 && t.values[1] == 1,
          "delimiter and column selection in the given order");
    magna_table_free(&t);
    t = load("unparsed.csv", S("id,x\nabc,1\n"), &(magna_csv_options){.columns = NAMES("x")});
    CHECK(t.rows == 1 && t.cols == 1 && t.values[0] == 1, "columns not selected are not parsed");
    magna_table_free(&t);

    /* a line of 80 000 bytes: 20 000 columns */
    enum { WIDE = 20000 };
    char *wide = malloc(WIDE * 4 * 2 + 8);
    size_t n = 0;
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < WIDE; c++) n += (size_t)sprintf(wide + n, "%d.5%c", r, c + 1 < WIDE ? ',' : '\n');
    t = load("wide.csv", wide, n, &(magna_csv_options){.no_header = true});
    CHECK(t.rows == 2 && t.cols == WIDE && t.values[WIDE + 7] == 1.5f && strcmp(t.names[WIDE - 1], "19999") == 0,
          "a line over 64 KiB: %lld x %lld", (long long)t.rows, (long long)t.cols);
    magna_table_free(&t);
    /* one field of 100 000 digits: a number too large for float32, said in a message cut to fit */
    free(wide);
    char *huge = malloc(100000 + 8);
    memcpy(huge, "a\n", 2);
    memset(huge + 2, '9', 100000);
    huge[100002] = '\n';
    magna_error e;
    CHECK(magna_csv_read(write_file("huge_field.csv", huge, 100003), NULL, &t, &e) == MAGNA_ERR_FORMAT &&
              strstr(e.message, ":2: column 1 ('a'): '9999") && strlen(e.message) < sizeof e.message,
          "a 100 000-digit field: %.80s", e.message);
    free(huge);
}

static double col_mean(const magna_table *t, int64_t c) {
    double s = 0;
    for (int64_t r = 0; r < t->rows; r++) s += t->values[r * t->cols + c];
    return s / (double)t->rows;
}

static void datasets(void) {
    magna_table t;
    magna_error e;
    CHECK(magna_csv_read(SKLEARN "boston_house_prices.csv", &(magna_csv_options){.skip_lines = 1}, &t, &e) == MAGNA_OK,
          "boston: %s", e.message);
    int64_t medv = magna_table_column(&t, "MEDV");
    CHECK(t.rows == 506 && t.cols == 14 && medv == 13 && strcmp(t.names[0], "CRIM") == 0 && t.values[0] == 0.00632f &&
              t.values[13] == 24.0f,
          "boston: %lld x %lld, MEDV at %lld", (long long)t.rows, (long long)t.cols, (long long)medv);
    magna_table_free(&t);

    /* iris: a count line with the class names, then rows of 4 floats and a class index */
    magna_csv_options iris = {.skip_lines = 1,
                              .no_header = true,
                              .names = NAMES("sepal length", "sepal width", "petal length", "petal width", "species")};
    CHECK(magna_csv_read(SKLEARN "iris.csv", &iris, &t, &e) == MAGNA_OK, "iris: %s", e.message);
    int32_t *labels = NULL, classes = 0;
    CHECK(magna_table_labels(&t, "species", &labels, &classes, &e) == MAGNA_OK, "iris labels: %s", e.message);
    CHECK(t.rows == 150 && t.cols == 5 && classes == 3 && labels && labels[0] == 0 && labels[149] == 2 &&
              t.line[0] == 2,
          "iris: %lld rows, %d classes", (long long)t.rows, (int)classes);
    free(labels);
    magna_table_free(&t);
    /* the class column as a categorical one: codes in order of first appearance, names kept */
    iris.categorical = NAMES("species");
    CHECK(magna_csv_read(SKLEARN "iris.csv", &iris, &t, &e) == MAGNA_OK, "iris categorical: %s", e.message);
    CHECK(t.categories[4].count == 3 && strcmp(t.categories[4].names[2], "2") == 0 && t.categories[0].count == 0,
          "iris categorical: %d categories", (int)t.categories[4].count);
    magna_table_free(&t);

    magna_csv_options digits = {.no_header = true};
    magna_status st = magna_csv_read(SKLEARN "digits.csv.gz", &digits, &t, &e);
    CHECK(st == MAGNA_OK && t.rows == 1797 && t.cols == 65, "digits.csv.gz: %s %lld x %lld", e.message,
          (long long)t.rows, (long long)t.cols);
    if (st == MAGNA_OK) {
        CHECK(magna_table_labels(&t, "64", &labels, &classes, &e) == MAGNA_OK && classes == 10, "digits labels: %s",
              e.message);
        free(labels);
        float *x;
        int64_t w;
        CHECK(magna_table_features(&t, NULL, "64", &x, &w, &e) == MAGNA_OK && w == 64 && x[3] == 13,
              "digits features: %s", e.message);
        free(x);
    }
    magna_table_free(&t);

    CHECK(magna_csv_read(SKLEARN "breast_cancer.csv", &(magna_csv_options){.skip_lines = 1, .no_header = true}, &t,
                         &e) == MAGNA_OK &&
              t.rows == 569 && t.cols == 31,
          "breast_cancer: %s", e.message);
    magna_table_free(&t);
    CHECK(magna_csv_read(SKLEARN "wine_data.csv", &(magna_csv_options){.skip_lines = 1, .no_header = true}, &t, &e) ==
                  MAGNA_OK &&
              t.rows == 178 && t.cols == 14,
          "wine: %s", e.message);
    magna_table_free(&t);
    CHECK(magna_csv_read(SKLEARN "linnerud_exercise.csv", &(magna_csv_options){.delimiter = ' '}, &t, &e) == MAGNA_OK &&
              t.rows == 20 && t.cols == 3 && strcmp(t.names[2], "Jumps") == 0,
          "linnerud (space-separated): %s", e.message);
    magna_table_free(&t);
}

static bool same_table(const magna_table *a, const magna_table *b) {
    return a->rows == b->rows && a->cols == b->cols &&
           memcmp(a->values, b->values, (size_t)(a->rows * a->cols) * sizeof(float)) == 0 &&
           memcmp(a->line, b->line, (size_t)a->rows * sizeof(int64_t)) == 0;
}

static void split_and_scale(void) {
    magna_table t, tr, va, te, tr2, va2, te2;
    magna_error e;
    magna_csv_options iris = {.skip_lines = 1, .no_header = true};
    CHECK(magna_csv_read(SKLEARN "iris.csv", &iris, &t, &e) == MAGNA_OK, "iris: %s", e.message);
    CHECK(magna_table_split(&t, 0.1, 0.2, 7, &tr, &va, &te, &e) == MAGNA_OK, "split: %s", e.message);
    CHECK(tr.rows == 105 && va.rows == 15 && te.rows == 30, "split sizes %lld/%lld/%lld", (long long)tr.rows,
          (long long)va.rows, (long long)te.rows);
    /* every row lands in exactly one part */
    int seen[152] = {0};
    const magna_table *parts[3] = {&tr, &va, &te};
    for (int p = 0; p < 3; p++)
        for (int64_t r = 0; r < parts[p]->rows; r++) seen[parts[p]->line[r]]++;
    bool partition = true;
    for (int l = 2; l <= 151; l++) partition &= seen[l] == 1;
    CHECK(partition, "the three parts hold every row once");
    CHECK(magna_table_split(&t, 0.1, 0.2, 7, &tr2, &va2, &te2, &e) == MAGNA_OK && same_table(&tr, &tr2) &&
              same_table(&va, &va2) && same_table(&te, &te2),
          "the same seed gives the same split");
    magna_table_free(&tr2), magna_table_free(&va2), magna_table_free(&te2);
    CHECK(magna_table_split(&t, 0.1, 0.2, 8, &tr2, &va2, &te2, &e) == MAGNA_OK && !same_table(&tr, &tr2),
          "another seed gives another split");
    magna_table_free(&tr2), magna_table_free(&va2), magna_table_free(&te2);
    /* the permutation is a function of the seed alone: pin one value so a change of RNG or shuffle shows */
    CHECK(tr.line[0] == 122, "seed 7 puts file line 122 first, got %lld", (long long)tr.line[0]);
    { /* the split as row indices, for another program: line 122 is row 120 (line 1 skipped, line 2 row 0) */
        char json[256], text[4096] = "";
        snprintf(json, sizeof json, "%s/split.json", dir);
        CHECK(magna_table_dump_split(json, &t, &tr, &te, &e) == MAGNA_OK, "dump_split: %s", e.message);
        FILE *f = fopen(json, "r");
        size_t got = f ? fread(text, 1, sizeof text - 1, f) : 0;
        if (f) fclose(f);
        int commas = 0;
        for (size_t i = 0; i < got; i++) commas += text[i] == ',';
        CHECK(strstr(text, "\"rows\": 150") && strstr(text, "\"train\": [120, ") && commas == 2 + 104 + 1 + 29,
              "dump_split wrote: %.120s (%d commas)", text, commas);
        CHECK(magna_table_dump_split("/proc/nope/split.json", &t, &tr, &te, &e) == MAGNA_ERR_IO, "dump to nowhere");
    }
    CHECK(magna_table_split(&t, 0.5, 0.5, 7, &tr2, &va2, &te2, &e) == MAGNA_ERR_ARG &&
              strstr(e.message, "split: 150 rows leave no training rows (75 validation, 75 test)"),
          "a split with no training rows: %s", e.message);
    CHECK(magna_table_split(&t, 0, 0.2, 7, &tr2, NULL, NULL, &e) == MAGNA_ERR_ARG, "a test fraction needs a table");

    magna_standardizer s;
    CHECK(magna_standardizer_fit(&s, &tr, NULL, "4", &e) == MAGNA_OK && s.count == 4, "fit: %s", e.message);
    CHECK(magna_standardizer_apply(&s, &tr, &e) == MAGNA_OK && magna_standardizer_apply(&s, &te, &e) == MAGNA_OK,
          "apply: %s", e.message);
    for (int64_t c = 0; c < 4; c++) {
        double m = col_mean(&tr, c), v = 0;
        for (int64_t r = 0; r < tr.rows; r++) v += (tr.values[r * 5 + c] - m) * (tr.values[r * 5 + c] - m);
        CHECK(fabs(m) < 1e-5 && fabs(sqrt(v / (double)tr.rows) - 1) < 1e-4, "train column %lld: mean %g std %g",
              (long long)c, m, sqrt(v / (double)tr.rows));
        CHECK(fabs(col_mean(&te, c)) > 1e-4, "test column %lld is scaled with training statistics: mean %g",
              (long long)c, col_mean(&te, c));
    }
    CHECK(tr.values[4] == t.values[(tr.line[0] - 2) * 5 + 4], "the class column is left alone");
    magna_standardizer_free(&s);
    magna_table_free(&tr), magna_table_free(&va), magna_table_free(&te), magna_table_free(&t);

    /* a constant column is centred, not divided by 0 */
    t = load("constant.csv", S("a,b\n5,1\n5,2\n5,3\n"), NULL);
    CHECK(magna_standardizer_fit(&s, &t, NULL, NULL, &e) == MAGNA_OK && s.std[0] == 0, "fit constant: %s", e.message);
    magna_standardizer_apply(&s, &t, &e);
    CHECK(t.values[0] == 0 && t.values[2] == 0 && t.values[4] == 0 && isfinite(t.values[1]), "constant column -> 0");
    magna_standardizer_free(&s);
    magna_table_free(&t);
}

static void missing_values(void) {
    const char *csv = "a,b,c\n1,2,x\nNA,4,y\n5,,x\n7,8,?\n9,10,y\n";
    magna_error e;
    magna_table t = load("drop.csv", csv, strlen(csv),
                         &(magna_csv_options){.missing = MAGNA_MISSING_DROP_ROW, .categorical = NAMES("c")});
    CHECK(t.rows == 2 && t.dropped_rows == 3 && t.line[0] == 2 && t.line[1] == 6 && t.values[3] == 9 &&
              t.values[5] == 1 && !t.missing,
          "drop: %lld rows, %lld dropped", (long long)t.rows, (long long)t.dropped_rows);
    CHECK(t.categories[2].count == 2 && strcmp(t.categories[2].names[1], "y") == 0,
          "drop: categories of kept rows only");
    magna_table_free(&t);

    t = load("impute.csv", csv, strlen(csv),
             &(magna_csv_options){.missing = MAGNA_MISSING_IMPUTE_MEAN, .categorical = NAMES("c")});
    CHECK(t.rows == 5 && t.missing && t.missing[3] && isnan(t.values[3]) && t.missing[7] && t.missing[11],
          "impute: rows kept, cells marked");
    float *x = NULL;
    int64_t w;
    CHECK(magna_table_features(&t, NULL, NULL, &x, &w, &e) == MAGNA_ERR_FORMAT &&
              strstr(e.message, "impute.csv:3: features: column 'a': missing value (impute it"),
          "features refuse missing cells: %s", e.message);
    magna_table copy;
    CHECK(magna_table_split(&t, 0, 0, 1, &copy, NULL, NULL, &e) == MAGNA_OK && !copy.missing, "impute via split: %s",
          e.message);
    magna_table_free(&copy);
    CHECK(magna_table_impute_mean(&t, &t, &e) == MAGNA_OK && !t.missing, "impute on itself: %s", e.message);
    CHECK(t.values[3] == (1 + 5 + 7 + 9) / 4.0f && t.values[7] == (2 + 4 + 8 + 10) / 4.0f && t.values[11] == 0,
          "impute: means %g %g, mode %g", t.values[3], t.values[7], t.values[11]);
    magna_table_free(&t);

    /* the training rows' mean, not the file's: 60 rows, a fifth of them missing */
    char big[4096];
    size_t n = (size_t)sprintf(big, "v,w\n");
    for (int r = 0; r < 60; r++)
        n += (size_t)(r % 5 == 3 ? sprintf(big + n, "NA,%d\n", r) : sprintf(big + n, "%d,%d\n", r * r, r));
    t = load("impute_split.csv", big, n, &(magna_csv_options){.missing = MAGNA_MISSING_IMPUTE_MEAN});
    magna_table tr, te;
    CHECK(magna_table_split(&t, 0, 0.3, 3, &tr, NULL, &te, &e) == MAGNA_OK && !tr.missing && !te.missing,
          "split imputes: %s", e.message);
    double sum = 0;
    int64_t count = 0;
    for (int64_t r = 0; r < tr.rows; r++) /* the original value of row r is (line - 2)^2 unless missing */
        if ((tr.line[r] - 2) % 5 != 3) sum += (double)((tr.line[r] - 2) * (tr.line[r] - 2)), count++;
    float train_mean = (float)(sum / (double)count);
    int imputed = 0, wrong = 0;
    for (int p = 0; p < 2; p++) {
        const magna_table *part = p ? &te : &tr;
        for (int64_t r = 0; r < part->rows; r++)
            if ((part->line[r] - 2) % 5 == 3) imputed++, wrong += part->values[r * 2] != train_mean;
    }
    CHECK(imputed == 12 && wrong == 0, "missing cells get the training mean %g (%d imputed, %d wrong)",
          (double)train_mean, imputed, wrong);
    double file_sum = 0;
    for (int r = 0; r < 60; r++) file_sum += r % 5 == 3 ? 0 : r * r;
    CHECK(train_mean != (float)(file_sum / 48), "the training mean %g is not the file's %g", (double)train_mean,
          file_sum / 48);
    magna_table_free(&tr), magna_table_free(&te), magna_table_free(&t);

    /* the standardizer refuses a missing training value */
    t = load("impute_fit.csv", S("a\n1\nNA\n"), &(magna_csv_options){.missing = MAGNA_MISSING_IMPUTE_MEAN});
    magna_standardizer s;
    CHECK(magna_standardizer_fit(&s, &t, NULL, NULL, &e) == MAGNA_ERR_FORMAT &&
              strstr(e.message, "impute_fit.csv:3: standardizer: column 'a': missing value (impute first)"),
          "standardizer on a missing value: %s", e.message);
    magna_table_free(&t);
}

static void encodings(void) {
    magna_error e;
    float *oh = NULL;
    CHECK(magna_one_hot((const int32_t[]){0, 2, 1}, 3, 3, &oh, &e) == MAGNA_OK && oh[0] == 1 && oh[1] == 0 &&
              oh[5] == 1 && oh[7] == 1 && oh[3] + oh[4] + oh[5] == 1,
          "one_hot: %s", e.message);
    free(oh);
    CHECK(magna_one_hot((const int32_t[]){0, 3}, 2, 3, &oh, &e) == MAGNA_ERR_RANGE && !oh &&
              strcmp(e.message, "one_hot: codes[1] = 3, expected 0 to 2") == 0,
          "one_hot out of range: %s", e.message);

    magna_table t = load("cat.csv", S("size,color,price\n1,red,3\n2,\"blue, dark\",4\n3,red,5\n"),
                         &(magna_csv_options){.categorical = NAMES("color")});
    CHECK(t.categories[1].count == 2 && strcmp(t.categories[1].names[1], "blue, dark") == 0 && t.values[4] == 1,
          "label encoding in order of first appearance");
    float *x = NULL, *y = NULL;
    int64_t w = 0;
    CHECK(magna_table_features(&t, NULL, "price", &x, &w, &e) == MAGNA_OK && w == 3, "features: %s", e.message);
    CHECK(x && x[0] == 1 && x[1] == 1 && x[2] == 0 && x[3] == 2 && x[4] == 0 && x[5] == 1, "one-hot in features");
    free(x);
    CHECK(magna_table_target(&t, "price", &y, &e) == MAGNA_OK && y[2] == 5, "target: %s", e.message);
    free(y);
    CHECK(magna_table_target(&t, "color", &y, &e) == MAGNA_ERR_ARG && strstr(e.message, "is categorical"),
          "a categorical target: %s", e.message);
    CHECK(magna_table_features(&t, NAMES("nope"), NULL, &x, &w, &e) == MAGNA_ERR_ARG &&
              strstr(e.message, "cat.csv: features: no column named 'nope'"),
          "unknown feature: %s", e.message);
    int32_t *labels = NULL, classes = 0;
    CHECK(magna_table_labels(&t, "color", &labels, &classes, &e) == MAGNA_OK && classes == 2 && labels[1] == 1,
          "categorical labels: %s", e.message);
    free(labels);
    magna_table_free(&t);
    t = load("frac_labels.csv", S("a\n1\n2.5\n"), NULL);
    CHECK(magna_table_labels(&t, "a", &labels, &classes, &e) == MAGNA_ERR_RANGE && !labels &&
              strstr(e.message, "frac_labels.csv:3: labels: column 'a': 2.5 is not a class index (0, 1, ...)"),
          "fractional labels: %s", e.message);
    magna_table_free(&t);
}

/* Random small files of CSV-ish rows, some mangled, under every option: each must load or fail with a
 * message, and what loads must split and give features. */
static void never_crash(void) {
    static const char *const fields[] = {"1",   "2.5",  "-3e2", "",  "NA",  "?", "\"x\"", "nan",     "abc", "1e99",
                                         "0x1", "\"\"", "a",    "7", "+.5", "-", " 8 ",   "\"a,b\"", "\"q", "inf"};
    char buf[1024], path[128];
    snprintf(path, sizeof path, "%s/fuzz.csv", dir);
    int loaded = 0, failed = 0, silent = 0;
    for (uint64_t k = 0; k < 1000; k++) {
        uint64_t draw = 0;
#define DRAW(n) (magna_rand_u64(99, k, draw++) % (uint64_t)(n))
        int cols = 1 + (int)DRAW(4), rows = (int)DRAW(6);
        bool header = DRAW(2);
        size_t len = 0;
        for (int r = -1; r < rows; r++) {
            if (r < 0 && !header) continue;
            int n = cols + (DRAW(10) == 0); /* now and then a field too many, or too few */
            n -= DRAW(10) == 0;
            for (int c = 0; c < n; c++) {
                const char *f = r < 0 ? (const char *[]){"0", "1", "2", "3", "4"}[c % 5]
                                      : fields[DRAW(k % 4 == 0 ? 20 : 3)]; /* mostly clean numbers */
                len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", c ? "," : "", f);
            }
            len += (size_t)snprintf(buf + len, sizeof buf - len, "%s", DRAW(8) == 0 ? "\r\n" : "\n");
        }
        if (len && DRAW(10) == 0) len--;                 /* no final newline */
        if (len && DRAW(20) == 0) buf[DRAW(len)] = '\0'; /* a NUL byte */
        if (len > 1 && DRAW(20) == 0) buf[0] = '\x1f', buf[1] = (char)0x8b;
#undef DRAW
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, len, f);
        fclose(f);
        magna_csv_options o = {.skip_lines = (int)(k % 11 == 0),
                               .no_header = !header,
                               .allow_nonfinite = k % 5 == 0,
                               .missing = (magna_missing)(k % 3),
                               .categorical = k % 7 == 0 ? NAMES("0") : NULL};
        magna_table t, tr, te;
        magna_error e;
        if (magna_csv_read(path, &o, &t, &e) == MAGNA_OK) {
            loaded++;
            if (magna_table_split(&t, 0, 0.3, k, &tr, NULL, &te, &e) == MAGNA_OK) {
                float *x = NULL;
                int64_t w;
                magna_standardizer s;
                if (magna_standardizer_fit(&s, &tr, NULL, NULL, &e) == MAGNA_OK) {
                    magna_standardizer_apply(&s, &te, &e);
                    magna_standardizer_free(&s);
                }
                if (magna_table_features(&tr, NULL, NULL, &x, &w, &e) == MAGNA_OK) free(x);
                magna_table_free(&tr), magna_table_free(&te);
            }
            magna_table_free(&t);
        } else {
            failed++;
            silent += e.message[0] == '\0';
        }
    }
    printf("random files: %d loaded, %d failed\n", loaded, failed);
    CHECK(silent == 0 && loaded > 100 && failed > 100, "random files: %d loaded, %d failed, %d without a message",
          loaded, failed, silent);
    unlink(path);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/magna_test_data_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    malformed();
    edge_cases();
    datasets();
    split_and_scale();
    missing_values();
    encodings();
    never_crash();
    for (int i = 0; i < n_written; i++) unlink(written[i]), free(written[i]);
    rmdir(dir);
    return check_finish("test_data");
}
