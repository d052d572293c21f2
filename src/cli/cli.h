/* cli.h — what the `magna` command's files share: the parsed command line and the steps every command takes
 * (parse, read the model file, apply the options, build the model, load weights). magna.c has train, eval
 * and summary; infer.c predict and generate. */
#ifndef MAGNA_CLI_H
#define MAGNA_CLI_H

#include "data.h"
#include "model_file.h"

enum { MAX_SETS = 32 };

typedef struct options {
    const char *sets[MAX_SETS], *log_steps; /* --set SECTION.KEY=VALUE, in order; --log-steps FILE */
    int nsets;
    const char *model_file, *out, *weights, *resume, *input, *output, *prompt, *device;
    int64_t epochs, batch, seed, threads, save_every, keep, steps;
    int64_t length, top_k, beam; /* generate */
    double lr, temperature, top_p, timeout;
    bool help, dist, zero1, fp32, bf16;
} options;

/* Options after the command; `allowed` lists the ones this command takes, as "--epochs --batch ...". */
bool parse_options(int argc, char **argv, const char *cmd, const char *allowed, options *o);
/* The command line's overrides of the model file (epochs, batch, lr, seed, threads, device, precision). */
bool apply_options(const options *o, config *cf);
/* The model file `name` (or its text), with --set applied; *used (when not NULL) gets the text read. */
bool read_config(const options *o, const char *name, const char *text, config *cf, char **used);
/* o's model file read (read_config) with the command line's overrides applied (apply_options); on failure the
 * error is printed and cf freed. */
bool load_config(const options *o, config *cf);
/* The model of the file, compiled, for `batch` rows a step; vocab: a text model's tokenizer's. */
magna_model *build(const config *cf, int64_t vocab, int64_t batch);
/* Puts weights into m: a weights file (model.safetensors), or a full-state checkpoint file or folder. */
bool load_weights(magna_model *m, const char *path);
/* A text model's tokenizer from the metadata of its weights: malloc'd text, or NULL with the error set. */
char *weights_tokenizer(const char *weights);

int cmd_predict(int argc, char **argv);  /* infer.c */
int cmd_generate(int argc, char **argv); /* infer.c */

#endif
