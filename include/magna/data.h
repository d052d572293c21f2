/* magna/data.h — reading data: numeric CSV tables. */
#ifndef MAGNA_DATA_H
#define MAGNA_DATA_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A numeric table: rows x cols float values, row-major, with the header's column names. */
typedef struct magna_table {
    int64_t rows, cols;
    float *values;
    char **names;
} magna_table;

/* Reads a comma-separated file of numbers with one header line of names, after skipping `skip_lines`
 * lines (scikit-learn's files start with a line of counts). Rejects, naming file, line and column: an
 * empty file, a missing header, a field that is not a whole number ("12abc"), NaN or Inf, an empty
 * field, and a row with a different number of fields than the header. */
magna_status magna_csv_read(const char *path, int skip_lines, magna_table *out, magna_error *err);
void magna_table_free(magna_table *t);
/* The index of the column with this name, or -1. */
int64_t magna_table_column(const magna_table *t, const char *name);

#ifdef __cplusplus
}
#endif
#endif
