/* model_file.h — the `magna` command's model files: reading one into a config (model_file.c), and the
 * first error of the command, kept as one line. */
#ifndef MAGNA_CLI_MODEL_FILE_H
#define MAGNA_CLI_MODEL_FILE_H

#include "magna.h"

enum { MAX_LAYERS = 64, EXIT_RUN = 1, EXIT_USAGE = 2 };

typedef enum { DATA_CSV, DATA_IDX } data_kind;

typedef struct config {
    const char *path;
    /* [data] */
    int data_line;
    data_kind kind;
    char *data_path, *target, *label, **names;
    int64_t skip, limit;
    bool header, standardise, has_data_seed;
    double scale, validation, test;
    int64_t classes;
    uint64_t data_seed;
    /* [model] */
    int model_line, input_ndim;
    int64_t input[MAGNA_MAX_DIMS];
    /* [layer] */
    magna_layer_spec layers[MAX_LAYERS];
    char *layer_names[MAX_LAYERS];
    int nlayers;
    /* [train] */
    magna_compile_opts compile;
    int64_t batch, epochs, patience;
    uint64_t seed;
} config;

/* Reads and checks a model file strictly; false with cli_error set ("file:line: ..."). */
bool config_read(const char *path, config *cf);
/* The same from the file's text (a checkpoint's copy); `path` names it in messages and must outlive cf. */
bool config_read_text(const char *path, const char *text, config *cf);
void config_free(config *cf);

/* Whole-string number parsing (no trailing characters, finite); shared with the command's flags. */
bool parse_int(const char *s, int64_t *v);
bool parse_double(const char *s, double *v);

/* The loss names of model files, indexed by magna_loss. */
extern const char *const LOSSES[];

/* The first error of the command, one line; cli_fail keeps the first one and returns false. */
extern char cli_error[1024];
bool cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
