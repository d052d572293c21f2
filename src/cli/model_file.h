/* model_file.h — the `magna` command's model files: reading one into a config (model_file.c), and the
 * first error of the command, kept as one line. */
#ifndef MAGNA_CLI_MODEL_FILE_H
#define MAGNA_CLI_MODEL_FILE_H

#include "magna.h"

enum { MAX_LAYERS = 64, EXIT_RUN = 1, EXIT_USAGE = 2 };

typedef enum { DATA_CSV, DATA_IDX, DATA_TEXT, DATA_NUMBERS } data_kind;
/* sequential: the [layer] sections; gpt (text) and seq2seq (numbers): the shape given in [model] */
typedef enum { MODEL_SEQUENTIAL, MODEL_GPT, MODEL_SEQ2SEQ } model_kind;

/* Where a text model's corpus is when the file names none: fortune's cookies. */
#define DEFAULT_CORPUS "/usr/share/games/fortunes"

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
    /* [data] kind = text: the tokenizer (bpe_vocab ids for bpe, unk for chars), windows of `context` tokens,
     * at most eval_windows (0: all) validation windows; validation is the fraction at the corpus's end */
    magna_tokenizer_kind tokenizer;
    int64_t bpe_vocab, context, eval_windows;
    bool unk;
    /* [data] kind = random_tokens: kind is DATA_TEXT without a corpus or tokenizer; ids uniform in
     * [0, random_vocab) from the data seed, no validation windows */
    bool random_tokens;
    int64_t random_vocab;
    /* [data] kind = numbers: held-out examples for exact_match */
    int64_t test_rows;
    /* [model] */
    int model_line, input_ndim;
    magna_init_scheme init; /* [model] init = keras|torch: the dense and conv layers' initialisation */
    int64_t input[MAGNA_MAX_DIMS];
    model_kind model;
    magna_gpt_config gpt;               /* gpt: vocab is the tokenizer's, context the data's */
    magna_numbers_model_config seq2seq; /* seq2seq */
    /* [layer] */
    magna_layer_spec layers[MAX_LAYERS];
    char *layer_names[MAX_LAYERS];
    bool units_vocab[MAX_LAYERS]; /* dense units = vocab: the tokenizer's vocabulary size, known when built */
    int nlayers;
    /* [train] */
    magna_compile_opts compile;
    int64_t batch, epochs, patience;
    int64_t steps, beam; /* text and numbers train by steps (one epoch of steps x batch rows); beam: numbers */
    uint64_t seed;
} config;

/* Reads and checks a model file strictly; false with cli_error set ("file:line: ..."). */
bool config_read(const char *path, config *cf);
/* The same from the file's text (a checkpoint's copy); `path` names it in messages and must outlive cf. */
bool config_read_text(const char *path, const char *text, config *cf);
void config_free(config *cf);
/* The model file's text with each of `sets` ("SECTION.KEY=VALUE", section data, model or train: the
 * command's --set) applied: the key's line replaced in place, or added after the section's header, or a new
 * section at the end. malloc'd; NULL with cli_error set. */
char *config_override(const char *text, const char *const *sets, int n);

/* Whole-string number parsing (no trailing characters, finite); shared with the command's flags. */
bool parse_int(const char *s, int64_t *v);
bool parse_double(const char *s, double *v);

/* The [model] kinds, indexed by model_kind. */
extern const char *const MODEL_KINDS[];
/* The loss names of model files, indexed by magna_loss. */
extern const char *const LOSSES[];

/* The first error of the command, one line; cli_fail keeps the first one and returns false. */
extern char cli_error[1024];
bool cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
