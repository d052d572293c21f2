/* model_file.c — reads a `magna` model file (the format: README.md "Command line" and the top of each file
 * in models/) into a config, strictly: an unknown section or key, a value that does not parse or is out of
 * range, a missing required key are errors naming the file and the line. */
#include "model_file.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the first error, one line --------------------------------------------------------------------- */

char cli_error[1024];

bool cli_fail(const char *fmt, ...) {
    if (cli_error[0]) return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cli_error, sizeof cli_error, fmt, ap);
    va_end(ap);
    return false;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- the INI-like file ----------------------------------------------------------------------------- */

typedef struct entry {
    char *key, *value;
    int line;
    bool used;
} entry;

typedef struct section {
    char *name;
    int line;
    entry *e;
    int n, cap;
} section;

typedef struct ini {
    const char *path;
    section *s;
    int n, cap;
} ini;

static void ini_free(ini *f) {
    for (int i = 0; i < f->n; i++) {
        for (int j = 0; j < f->s[i].n; j++) free(f->s[i].e[j].key), free(f->s[i].e[j].value);
        free(f->s[i].e);
        free(f->s[i].name);
    }
    free(f->s);
    f->s = NULL, f->n = f->cap = 0;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = 0;
    return s;
}

static const char *const SECTIONS[] = {"data", "model", "layer", "train", NULL};

/* From the file at `path`, or from `text` (a checkpoint's copy of the file) when it is not NULL. */
static bool ini_read(const char *path, const char *text, ini *f) {
    *f = (ini){.path = path};
    FILE *in = text ? fmemopen((void *)text, strlen(text), "r") : fopen(path, "r");
    if (!in) return cli_fail("%s: cannot open: %s", path, strerror(errno));
    char buf[4096];
    int line = 0;
    bool ok = true;
    while (ok && fgets(buf, sizeof buf, in)) {
        line++;
        if (!strchr(buf, '\n') && !feof(in)) {
            ok = cli_fail("%s:%d: line longer than %d characters", path, line, (int)sizeof buf - 2);
            break;
        }
        char *s = trim(buf);
        if (!*s || *s == '#' || *s == ';') continue;
        for (char *c = s + 1; *c; c++) /* an inline comment starts with whitespace then '#' or ';' */
            if ((*c == '#' || *c == ';') && (c[-1] == ' ' || c[-1] == '\t')) {
                *c = 0;
                break;
            }
        s = trim(s);
        if (*s == '[') {
            size_t n = strlen(s);
            if (s[n - 1] != ']') {
                ok = cli_fail("%s:%d: '%s': a section header ends with ']'", path, line, s);
                break;
            }
            s[n - 1] = 0;
            char *name = trim(s + 1);
            int k = 0;
            while (SECTIONS[k] && strcmp(SECTIONS[k], name) != 0) k++;
            if (!SECTIONS[k]) {
                ok = cli_fail("%s:%d: unknown section [%s] (expected [data], [model], [layer] or [train])", path, line,
                          name);
                break;
            }
            for (int i = 0; i < f->n && strcmp(name, "layer") != 0; i++)
                if (strcmp(f->s[i].name, name) == 0) {
                    ok = cli_fail("%s:%d: a second [%s] section (the first is at line %d)", path, line, name, f->s[i].line);
                    break;
                }
            if (!ok) break;
            if (f->n == f->cap) {
                int cap = f->cap ? 2 * f->cap : 8;
                section *ns = realloc(f->s, (size_t)cap * sizeof *ns);
                if (!ns) {
                    ok = cli_fail("%s: out of memory", path);
                    break;
                }
                f->s = ns, f->cap = cap;
            }
            f->s[f->n++] = (section){.name = dup_str(name), .line = line};
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            ok = cli_fail("%s:%d: '%s': expected 'key = value' or a [section]", path, line, s);
            break;
        }
        *eq = 0;
        char *key = trim(s), *value = trim(eq + 1);
        if (!*key) {
            ok = cli_fail("%s:%d: a value without a key", path, line);
            break;
        }
        if (f->n == 0) {
            ok = cli_fail("%s:%d: key '%s' is outside any section", path, line, key);
            break;
        }
        section *sec = &f->s[f->n - 1];
        for (int j = 0; j < sec->n; j++)
            if (strcmp(sec->e[j].key, key) == 0) {
                ok = cli_fail("%s:%d: [%s] key '%s' given twice (first at line %d)", path, line, sec->name, key,
                          sec->e[j].line);
                break;
            }
        if (!ok) break;
        if (!*value) {
            ok = cli_fail("%s:%d: [%s] key '%s' has no value", path, line, sec->name, key);
            break;
        }
        if (sec->n == sec->cap) {
            int cap = sec->cap ? 2 * sec->cap : 8;
            entry *ne = realloc(sec->e, (size_t)cap * sizeof *ne);
            if (!ne) {
                ok = cli_fail("%s: out of memory", path);
                break;
            }
            sec->e = ne, sec->cap = cap;
        }
        sec->e[sec->n++] = (entry){.key = dup_str(key), .value = dup_str(value), .line = line};
    }
    if (ok && ferror(in)) ok = cli_fail("%s: read error", path);
    fclose(in);
    if (!ok) ini_free(f);
    return ok;
}

static section *find_section(ini *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->s[i].name, name) == 0) return &f->s[i];
    return NULL;
}

/* A section's context in messages: "[layer] dense" or "[train]". */
typedef struct ctx {
    ini *f;
    section *s;
    const char *what; /* e.g. "dense", or NULL */
} ctx;

static const char *where(const ctx *c, char *buf, size_t n) {
    if (c->what) snprintf(buf, n, "[%s] %s", c->s->name, c->what);
    else snprintf(buf, n, "[%s]", c->s->name);
    return buf;
}

static entry *lookup(const ctx *c, const char *key, bool required) {
    for (int j = 0; j < c->s->n; j++)
        if (strcmp(c->s->e[j].key, key) == 0) {
            c->s->e[j].used = true;
            return &c->s->e[j];
        }
    if (required) {
        char w[96];
        cli_fail("%s:%d: %s needs '%s'", c->f->path, c->s->line, where(c, w, sizeof w), key);
    }
    return NULL;
}

/* Each getter leaves *out alone when the key is absent and not required; false on an error. */
static bool get_str(const ctx *c, const char *key, bool required, const char **out) {
    entry *e = lookup(c, key, required);
    if (!e) return !required;
    *out = e->value;
    return true;
}

bool parse_int(const char *s, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end) return false;
    *v = x;
    return true;
}

bool parse_double(const char *s, double *v) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(x)) return false;
    *v = x;
    return true;
}

static bool get_int(const ctx *c, const char *key, bool required, int64_t lo, int64_t hi, int64_t *out) {
    entry *e = lookup(c, key, required);
    if (!e) return !required;
    char w[96];
    int64_t v;
    if (!parse_int(e->value, &v))
        return cli_fail("%s:%d: %s key '%s': '%s' is not a whole number", c->f->path, e->line, where(c, w, sizeof w), key,
                    e->value);
    if (v < lo || v > hi)
        return cli_fail("%s:%d: %s key '%s': %lld is out of range [%lld, %lld]", c->f->path, e->line,
                    where(c, w, sizeof w), key, (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return true;
}

static bool get_num(const ctx *c, const char *key, bool required, double lo, double hi, double *out) {
    entry *e = lookup(c, key, required);
    if (!e) return !required;
    char w[96];
    double v;
    if (!parse_double(e->value, &v))
        return cli_fail("%s:%d: %s key '%s': '%s' is not a number", c->f->path, e->line, where(c, w, sizeof w), key,
                    e->value);
    if (v < lo || v > hi)
        return cli_fail("%s:%d: %s key '%s': %g is out of range [%g, %g]", c->f->path, e->line, where(c, w, sizeof w), key,
                    v, lo, hi);
    *out = v;
    return true;
}

static bool get_float(const ctx *c, const char *key, bool required, double lo, double hi, float *out) {
    double v = *out;
    if (!get_num(c, key, required, lo, hi, &v)) return false;
    *out = (float)v;
    return true;
}

/* One of `names` (NULL-terminated): *out is its index. */
static bool get_enum(const ctx *c, const char *key, bool required, const char *const *names, int *out) {
    entry *e = lookup(c, key, required);
    if (!e) return !required;
    for (int k = 0; names[k]; k++)
        if (strcmp(names[k], e->value) == 0) {
            *out = k;
            return true;
        }
    char list[256] = "", w[96];
    for (int k = 0; names[k]; k++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", names[k]);
    return cli_fail("%s:%d: %s key '%s': unknown value '%s' (expected one of: %s)", c->f->path, e->line,
                where(c, w, sizeof w), key, e->value, list);
}

static bool get_bool(const ctx *c, const char *key, bool *out) {
    int v = *out ? 1 : 0;
    if (!get_enum(c, key, false, (const char *const[]){"false", "true", NULL}, &v)) return false;
    *out = v == 1;
    return true;
}

/* Every key of the section must have been read. */
static bool no_unknown_keys(const ctx *c, const char *takes) {
    for (int j = 0; j < c->s->n; j++)
        if (!c->s->e[j].used) {
            char w[96];
            return cli_fail("%s:%d: %s: unknown key '%s' (it takes: %s)", c->f->path, c->s->e[j].line,
                        where(c, w, sizeof w), c->s->e[j].key, takes);
        }
    return true;
}

/* Every key of the section is in `takes` ("a, b, c (a note)"): checked before any value is read, so that a
 * misspelt key is reported as such rather than as the missing key it was meant to be. */
static bool check_keys(const ctx *c, const char *takes) {
    for (int j = 0; j < c->s->n; j++) {
        const char *key = c->s->e[j].key;
        const size_t n = strlen(key);
        bool found = false;
        for (const char *p = takes; *p && !found;) {
            while (*p == ' ' || *p == ',') p++;
            size_t len = strcspn(p, " ,(");
            found = len == n && strncmp(p, key, n) == 0;
            p += len;
            if (*p == '(') p += strcspn(p, ")");
            if (*p) p++;
        }
        if (!found) {
            char w[96];
            return cli_fail("%s:%d: %s: unknown key '%s' (it takes: %s)", c->f->path, c->s->e[j].line,
                        where(c, w, sizeof w), key, takes);
        }
    }
    return true;
}

/* A comma-separated list, each item trimmed: a NULL-terminated array of malloc'd strings. */
static char **split_list(const char *s, int *count) {
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    char **out = calloc((size_t)n + 1, sizeof *out);
    char *copy = dup_str(s);
    if (!out || !copy) {
        free(out), free(copy);
        return NULL;
    }
    int k = 0;
    for (char *tok = copy, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = 0;
        out[k++] = dup_str(trim(tok));
    }
    free(copy);
    if (count) *count = k;
    return out;
}

static void free_list(char **l) {
    for (int k = 0; l && l[k]; k++) free(l[k]);
    free(l);
}

/* ---- the model file's meaning ---------------------------------------------------------------------- */


void config_free(config *c) {
    free(c->data_path), free(c->target), free(c->label);
    free_list(c->names);
    for (int i = 0; i < c->nlayers; i++) free(c->layer_names[i]);
}

static const char *const ACTIVATIONS[] = {"none", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", NULL};

typedef struct layer_type {
    const char *name;
    magna_layer_kind kind;
    const char *takes;
} layer_type;

static const layer_type LAYER_TYPES[] = {
    {"dense", MAGNA_LAYER_DENSE, "type, name, units, activation, l2"},
    {"conv2d", MAGNA_LAYER_CONV2D, "type, name, filters, kernel, stride, padding, activation, l2"},
    {"max_pool2d", MAGNA_LAYER_MAX_POOL2D, "type, kernel, stride"},
    {"avg_pool2d", MAGNA_LAYER_AVG_POOL2D, "type, kernel, stride"},
    {"flatten", MAGNA_LAYER_FLATTEN, "type"},
    {"dropout", MAGNA_LAYER_DROPOUT, "type, rate"},
    {"batch_norm", MAGNA_LAYER_BATCH_NORM, "type, name"},
    {"layer_norm", MAGNA_LAYER_LAYER_NORM, "type, name"},
    {"activation", MAGNA_LAYER_ACTIVATION, "type, activation, rate (the leaky_relu slope)"},
    {"global_avg_pool2d", MAGNA_LAYER_GLOBAL_AVG_POOL2D, "type"},
    {"embedding", MAGNA_LAYER_EMBEDDING, "type, name, units (the vector size; the vocabulary is the tokenizer's)"},
    {"lstm", MAGNA_LAYER_LSTM, "type, name, units"},
    {"gru", MAGNA_LAYER_GRU, "type, name, units"},
    {"rnn", MAGNA_LAYER_RNN, "type, name, units"},
};
enum { LAYER_TYPE_COUNT = sizeof LAYER_TYPES / sizeof LAYER_TYPES[0] };

static const char *const TOKENIZERS[] = {"bytes", "chars", "bpe", NULL}; /* magna_tokenizer_kind's order */

/* [data] of a language model: kind = text (a corpus, a tokenizer, windows), random_tokens (windows of random
 * ids, no corpus) or numbers (the words -> digits task, made in process). */
static bool read_lm_data(const ctx *c, config *cf) {
    if (cf->random_tokens) { /* token windows without a corpus: a throughput benchmark's data */
        const char *takes = "kind, vocab (the ids are drawn uniformly from 0 .. vocab-1), context, seed";
        int64_t seed = -1;
        cf->context = 128;
        if (!check_keys(c, takes) || !get_int(c, "vocab", true, 2, 1 << 24, &cf->random_vocab) ||
            !get_int(c, "context", false, 1, 1 << 16, &cf->context) || !get_int(c, "seed", false, 0, INT64_MAX, &seed))
            return false;
        if (seed >= 0) cf->data_seed = (uint64_t)seed, cf->has_data_seed = true;
        return no_unknown_keys(c, takes);
    }
    const char *takes = cf->kind == DATA_TEXT
                            ? "kind, path (a file or a folder; default " DEFAULT_CORPUS "), tokenizer (chars, bytes "
                              "or bpe), vocab (bpe), unk (chars), validation, context, eval_windows, seed"
                            : "kind, test (held-out examples), seed";
    if (!check_keys(c, takes)) return false;
    int64_t seed = -1;
    if (!get_int(c, "seed", false, 0, INT64_MAX, &seed)) return false;
    if (seed >= 0) cf->data_seed = (uint64_t)seed, cf->has_data_seed = true;
    if (cf->kind == DATA_NUMBERS) {
        cf->test_rows = 2000;
        return get_int(c, "test", false, 1, 1 << 24, &cf->test_rows) && no_unknown_keys(c, takes);
    }
    const char *path = DEFAULT_CORPUS;
    int tok = MAGNA_TOKENIZER_CHARS;
    cf->unk = true, cf->validation = 0.1, cf->context = 128;
    if (!get_str(c, "path", false, &path) || !get_enum(c, "tokenizer", false, TOKENIZERS, &tok) ||
        !get_int(c, "vocab", false, 257, 1 << 20, &cf->bpe_vocab) || !get_bool(c, "unk", &cf->unk) ||
        !get_num(c, "validation", false, 1e-6, 0.9, &cf->validation) ||
        !get_int(c, "context", false, 1, 1 << 16, &cf->context) ||
        !get_int(c, "eval_windows", false, 1, INT64_MAX, &cf->eval_windows))
        return false;
    cf->tokenizer = (magna_tokenizer_kind)tok;
    entry *e;
    if (cf->tokenizer == MAGNA_TOKENIZER_BPE && !cf->bpe_vocab)
        return cli_fail("%s:%d: [data] tokenizer = bpe needs 'vocab' (the vocabulary size, e.g. 2048)", c->f->path,
                        c->s->line);
    if (cf->tokenizer != MAGNA_TOKENIZER_BPE && (e = lookup(c, "vocab", false)))
        return cli_fail("%s:%d: [data] key 'vocab': only tokenizer = bpe takes it (%s's vocabulary comes from the text)",
                        c->f->path, e->line, TOKENIZERS[tok]);
    if (cf->tokenizer != MAGNA_TOKENIZER_CHARS && (e = lookup(c, "unk", false)))
        return cli_fail("%s:%d: [data] key 'unk': only tokenizer = chars takes it", c->f->path, e->line);
    if (!(cf->data_path = dup_str(path))) return cli_fail("%s: out of memory", c->f->path);
    return no_unknown_keys(c, takes);
}

static bool read_data(ini *f, config *cf) {
    section *s = find_section(f, "data");
    if (!s) return cli_fail("%s: no [data] section (it needs kind and path)", f->path);
    ctx c = {f, s, NULL};
    cf->data_line = s->line;
    int kind = 0;
    const char *path = NULL, *target = NULL, *label = NULL, *names = NULL;
    if (!get_enum(&c, "kind", true, (const char *const[]){"csv", "idx", "text", "numbers", "random_tokens", NULL},
                  &kind))
        return false;
    /* random tokens are a text model's windows without the corpus: everything downstream is the same */
    cf->random_tokens = kind == 4;
    cf->kind = cf->random_tokens ? DATA_TEXT : (data_kind)kind;
    if (cf->kind == DATA_TEXT || cf->kind == DATA_NUMBERS) return read_lm_data(&c, cf);
    if (!get_str(&c, "path", true, &path)) return false;
    const char *takes = cf->kind == DATA_CSV ? "kind, path, target, label, skip, header, names, standardise, scale, "
                                               "validation, test, seed, limit"
                                             : "kind, path (the folder of the MNIST-style files), classes, "
                                               "standardise, scale, validation, seed, limit";
    if (!check_keys(&c, takes)) return false;
    cf->header = true;
    cf->scale = 1.0;
    cf->data_path = dup_str(path);
    if (!get_bool(&c, "standardise", &cf->standardise) || !get_num(&c, "scale", false, -1e30, 1e30, &cf->scale) ||
        !get_num(&c, "validation", false, 0, 1e12, &cf->validation) ||
        !get_int(&c, "limit", false, 0, INT64_MAX, &cf->limit))
        return false;
    int64_t seed = -1;
    if (!get_int(&c, "seed", false, 0, INT64_MAX, &seed)) return false;
    if (seed >= 0) cf->data_seed = (uint64_t)seed, cf->has_data_seed = true;
    if (cf->kind == DATA_CSV) {
        if (!get_str(&c, "target", false, &target) || !get_str(&c, "label", false, &label) ||
            !get_int(&c, "skip", false, 0, 1000000, &cf->skip) || !get_bool(&c, "header", &cf->header) ||
            !get_str(&c, "names", false, &names) || !get_num(&c, "test", false, 0, 0.99, &cf->test))
            return false;
        if (!target == !label)
            return cli_fail("%s:%d: [data] needs exactly one of 'target' (a regression column) and 'label' (a class "
                        "column)",
                        f->path, s->line);
        if (names && cf->header)
            return cli_fail("%s:%d: [data] 'names' names the columns of a file without a header: add header = false",
                        f->path, s->line);
        if (target) cf->target = dup_str(target);
        if (label) cf->label = dup_str(label);
        if (names && !(cf->names = split_list(names, NULL))) return cli_fail("%s: out of memory", f->path);
        return no_unknown_keys(&c, takes);
    }
    if (!get_int(&c, "classes", false, 0, 1 << 20, &cf->classes)) return false;
    return no_unknown_keys(&c, takes);
}

const char *const MODEL_KINDS[] = {"sequential", "gpt", "seq2seq", NULL}; /* model_kind's order */

/* [model] of a language model: sequential (the [layer]s, on token ids of the data's context), a GPT (text)
 * or the encoder-decoder (numbers), their shapes here. */
static bool read_lm_model(const ctx *c, config *cf) {
    int kind = cf->kind == DATA_TEXT ? MODEL_SEQUENTIAL : MODEL_SEQ2SEQ;
    if (!get_enum(c, "kind", false, MODEL_KINDS, &kind)) return false;
    cf->model = (model_kind)kind;
    entry *e = lookup(c, "kind", false);
    const int line = e ? e->line : c->s->line;
    if (cf->kind == DATA_TEXT && cf->model == MODEL_SEQ2SEQ)
        return cli_fail("%s:%d: [model] key 'kind': seq2seq reads numbers in words: it needs [data] kind = numbers",
                        c->f->path, line);
    if (cf->kind == DATA_NUMBERS && cf->model != MODEL_SEQ2SEQ)
        return cli_fail("%s:%d: [model] key 'kind': [data] kind = numbers trains the encoder-decoder: kind = seq2seq",
                        c->f->path, line);
    const char *takes = cf->model == MODEL_SEQUENTIAL ? "kind (its layers are the [layer] sections; the input is "
                                                        "[data] context token ids)"
                        : cf->model == MODEL_GPT      ? "kind, layers, heads, d_model, d_ff, positions, dropout, "
                                                        "pad_vocab"
                                                      : "kind, layers, heads, d_model, d_ff, dropout";
    if (!check_keys(c, takes)) return false;
    if (cf->model == MODEL_SEQUENTIAL) {
        cf->input_ndim = 1, cf->input[0] = cf->context;
        return true;
    }
    int64_t layers = 0, heads = 0, d = 0, d_ff = 0, pad = 0;
    float dropout = 0;
    int pos = 0;
    if (!get_int(c, "layers", true, 1, 1024, &layers) || !get_int(c, "heads", true, 1, 1024, &heads) ||
        !get_int(c, "d_model", true, 1, 1 << 16, &d) || !get_int(c, "d_ff", false, 1, 1 << 20, &d_ff) ||
        !get_float(c, "dropout", false, 0, 0.999, &dropout) ||
        (cf->model == MODEL_GPT &&
         (!get_enum(c, "positions", false, (const char *const[]){"learned", "sinusoidal", NULL}, &pos) ||
          !get_int(c, "pad_vocab", false, 1, 1 << 16, &pad))))
        return false;
    if (d % heads != 0) {
        e = lookup(c, "heads", false);
        return cli_fail("%s:%d: [model] key 'heads': d_model %lld does not split into %lld heads", c->f->path, e->line,
                        (long long)d, (long long)heads);
    }
    if (cf->model == MODEL_GPT)
        cf->gpt = (magna_gpt_config){.context = cf->context, .d_model = d, .heads = (int)heads, .layers = (int)layers,
                                     .d_ff = d_ff, .dropout = dropout, .positions = (magna_position_kind)pos,
                                     .pad_vocab = pad};
    else {
        cf->seq2seq = (magna_numbers_model_config){.d_model = d, .heads = (int)heads, .layers = (int)layers,
                                                   .d_ff = d_ff, .dropout = dropout};
        cf->input_ndim = 1, cf->input[0] = MAGNA_NUMBERS_SRC_LEN;
    }
    return no_unknown_keys(c, takes);
}

static bool read_model(ini *f, config *cf) {
    section *s = find_section(f, "model");
    const bool lm = cf->kind == DATA_TEXT || cf->kind == DATA_NUMBERS;
    if (!s) return cli_fail("%s: no [model] section (it needs %s)", f->path, lm ? "kind" : "input");
    ctx c = {f, s, NULL};
    cf->model_line = s->line;
    if (lm) return read_lm_model(&c, cf);
    const char *input = NULL;
    int init = MAGNA_INIT_KERAS;
    if (!check_keys(&c, "input, init") || !get_str(&c, "input", true, &input) ||
        !get_enum(&c, "init", false, (const char *const[]){"keras", "torch", NULL}, &init))
        return false;
    cf->init = (magna_init_scheme)init;
    entry *e = lookup(&c, "input", false);
    int n = 0;
    char **dims = split_list(input, &n);
    if (!dims) return cli_fail("%s: out of memory", f->path);
    bool ok = n <= MAGNA_MAX_DIMS - 1;
    for (int k = 0; ok && k < n; k++) ok = parse_int(dims[k], &cf->input[k]) && cf->input[k] >= 1;
    free_list(dims);
    if (!ok)
        return cli_fail("%s:%d: [model] key 'input': '%s' is not a shape (one to %d whole numbers >= 1, separated by "
                    "commas)",
                    f->path, e->line, input, MAGNA_MAX_DIMS - 1);
    cf->input_ndim = n;
    return no_unknown_keys(&c, "input, init");
}

static bool read_layer(ini *f, section *s, config *cf) {
    ctx c = {f, s, NULL};
    if (cf->nlayers == MAX_LAYERS) return cli_fail("%s:%d: more than %d layers", f->path, s->line, MAX_LAYERS);
    const char *type = NULL;
    if (!get_str(&c, "type", true, &type)) return false;
    const layer_type *t = NULL;
    for (int k = 0; k < LAYER_TYPE_COUNT; k++)
        if (strcmp(LAYER_TYPES[k].name, type) == 0) t = &LAYER_TYPES[k];
    if (!t) {
        entry *e = lookup(&c, "type", false);
        return cli_fail("%s:%d: [layer] unknown layer type '%s' (expected one of: dense, conv2d, max_pool2d, avg_pool2d, "
                    "flatten, dropout, batch_norm, layer_norm, activation, global_avg_pool2d, embedding, lstm, gru, "
                    "rnn)",
                    f->path, e->line, type);
    }
    c.what = t->name;
    if (cf->model != MODEL_SEQUENTIAL)
        return cli_fail("%s:%d: [layer] a %s model takes no [layer] sections: its shape is in [model]", f->path, s->line,
                        MODEL_KINDS[cf->model]);
    const bool ids = t->kind == MAGNA_LAYER_EMBEDDING;
    if (ids && cf->kind != DATA_TEXT)
        return cli_fail("%s:%d: [layer] embedding: an embedding reads token ids, which only [data] kind = text gives",
                        f->path, s->line);
    if (cf->kind == DATA_TEXT && ids != (cf->nlayers == 0))
        return cli_fail("%s:%d: [layer] %s: %s", f->path, s->line, t->name,
                        ids ? "the embedding is the first layer (it reads the token ids)"
                            : "a text model's first layer is an embedding (its input is token ids)");
    if (!check_keys(&c, t->takes)) return false;
    magna_layer_spec *l = &cf->layers[cf->nlayers];
    *l = (magna_layer_spec){.kind = t->kind};
    const char *name = NULL;
    int act = 0, pad = 0;
    int64_t units = 0, kernel = 0, stride = 0;
    bool ok = true;
    switch (t->kind) {
    case MAGNA_LAYER_DENSE: {
        entry *e = cf->kind == DATA_TEXT ? lookup(&c, "units", false) : NULL;
        if (e && strcmp(e->value, "vocab") == 0) /* the tokenizer's vocabulary size, known when the model is built */
            cf->units_vocab[cf->nlayers] = true, units = 1;
        else if (!get_int(&c, "units", true, 1, 1 << 30, &units)) {
            if (cf->kind == DATA_TEXT) snprintf(cli_error + strlen(cli_error), sizeof cli_error - strlen(cli_error),
                                                " (or 'vocab')");
            return false;
        }
        ok = get_enum(&c, "activation", false, ACTIVATIONS, &act) &&
             get_float(&c, "l2", false, 0, 1e6, &l->l2) && get_str(&c, "name", false, &name);
        l->units = units;
        break;
    }
    case MAGNA_LAYER_EMBEDDING:
    case MAGNA_LAYER_LSTM:
    case MAGNA_LAYER_GRU:
    case MAGNA_LAYER_RNN:
        ok = get_int(&c, "units", true, 1, 1 << 20, &units) && get_str(&c, "name", false, &name);
        l->units = units;
        break;
    case MAGNA_LAYER_CONV2D:
        ok = get_int(&c, "filters", true, 1, 1 << 30, &units) && get_int(&c, "kernel", true, 1, 1024, &kernel) &&
             get_int(&c, "stride", false, 1, 1024, &stride) &&
             get_enum(&c, "padding", false, (const char *const[]){"same", "valid", NULL}, &pad) &&
             get_enum(&c, "activation", false, ACTIVATIONS, &act) && get_float(&c, "l2", false, 0, 1e6, &l->l2) &&
             get_str(&c, "name", false, &name);
        l->units = units, l->kernel = (int)kernel, l->stride = (int)stride, l->same = pad == 0;
        break;
    case MAGNA_LAYER_MAX_POOL2D:
    case MAGNA_LAYER_AVG_POOL2D:
        ok = get_int(&c, "kernel", false, 1, 1024, &kernel) && get_int(&c, "stride", false, 1, 1024, &stride);
        l->kernel = (int)kernel, l->stride = (int)stride;
        break;
    case MAGNA_LAYER_DROPOUT: ok = get_float(&c, "rate", true, 0, 0.999, &l->rate); break;
    case MAGNA_LAYER_BATCH_NORM:
    case MAGNA_LAYER_LAYER_NORM: ok = get_str(&c, "name", false, &name); break;
    case MAGNA_LAYER_ACTIVATION:
        ok = get_enum(&c, "activation", true, ACTIVATIONS, &act) && get_float(&c, "rate", false, 0, 1e6, &l->rate);
        break;
    default: break;
    }
    if (!ok || !no_unknown_keys(&c, t->takes)) return false;
    l->activation = (magna_activation)act;
    if (name) l->name = cf->layer_names[cf->nlayers] = dup_str(name);
    cf->nlayers++;
    return true;
}

const char *const LOSSES[] = {"mse", "mae", "sparse_cross_entropy", "binary_cross_entropy", NULL};
static const char *const METRICS[] = {"mse", "rmse", "mae", "r2", "accuracy", "top_k", NULL};

static const char *TRAIN_KEYS = "loss, optimizer, lr, momentum, beta1, beta2, eps, weight_decay, l2, batch, epochs, "
                                "schedule, warmup, step_size, gamma, decay_steps, min_lr, clip, metrics, top_k, "
                                "patience, seed";

static const char *LM_TRAIN_KEYS = "loss, optimizer, lr, momentum, beta1, beta2, eps, weight_decay, l2, batch, steps, "
                                   "schedule, warmup, step_size, gamma, decay_steps, min_lr, clip, metrics, top_k, "
                                   "seed";
static const char *SEQ2SEQ_TRAIN_KEYS = "loss, optimizer, lr, momentum, beta1, beta2, eps, weight_decay, l2, batch, "
                                        "steps, schedule, warmup, step_size, gamma, decay_steps, min_lr, clip, "
                                        "metrics, top_k, seed, beam";

static bool read_train(ini *f, config *cf) {
    section *s = find_section(f, "train");
    const bool lm = cf->kind == DATA_TEXT || cf->kind == DATA_NUMBERS;
    if (!s)
        return cli_fail("%s: no [train] section (it needs loss, optimizer, lr, batch and %s)", f->path,
                        lm ? "steps" : "epochs");
    ctx c = {f, s, NULL};
    const char *keys = cf->kind == DATA_NUMBERS ? SEQ2SEQ_TRAIN_KEYS : lm ? LM_TRAIN_KEYS : TRAIN_KEYS;
    /* a language model trains one epoch of `steps` batches of fresh windows (or examples) */
    cf->epochs = 1, cf->beam = 4;
    if (lm && (!check_keys(&c, keys) || !get_int(&c, "steps", true, 1, 1 << 30, &cf->steps) ||
               !get_int(&c, "beam", false, 1, 64, &cf->beam)))
        return false;
    magna_compile_opts *o = &cf->compile;
    int loss = 0, opt = 0, sched = 0;
    int64_t seed = 42, warmup = 0, step_size = 0, decay = 0, top_k = 0;
    const char *metrics = NULL;
    o->optimizer.momentum = -1;
    if (!check_keys(&c, keys) || !get_enum(&c, "loss", true, LOSSES, &loss) ||
        !get_enum(&c, "optimizer", true, (const char *const[]){"sgd", "momentum", "nesterov", "adam", "adamw", NULL},
                  &opt) ||
        !get_float(&c, "lr", true, 1e-12, 1e6, &o->optimizer.lr) ||
        !get_int(&c, "batch", true, 1, 1 << 24, &cf->batch) || (!lm && !get_int(&c, "epochs", true, 1, 1 << 24, &cf->epochs)) ||
        !get_float(&c, "momentum", false, 0, 0.9999, &o->optimizer.momentum) ||
        !get_float(&c, "beta1", false, 1e-6, 0.999999, &o->optimizer.beta1) ||
        !get_float(&c, "beta2", false, 1e-6, 0.999999, &o->optimizer.beta2) ||
        !get_float(&c, "eps", false, 1e-30, 1, &o->optimizer.eps) ||
        !get_float(&c, "weight_decay", false, 0, 1e6, &o->optimizer.weight_decay) ||
        !get_float(&c, "l2", false, 0, 1e6, &o->l2) ||
        !get_enum(&c, "schedule", false, (const char *const[]){"constant", "step", "exponential", "cosine", NULL},
                  &sched) ||
        !get_int(&c, "warmup", false, 0, INT64_MAX, &warmup) ||
        !get_int(&c, "step_size", false, 1, INT64_MAX, &step_size) ||
        !get_float(&c, "gamma", false, 1e-9, 1, &o->schedule.gamma) ||
        !get_int(&c, "decay_steps", false, 1, INT64_MAX, &decay) ||
        !get_float(&c, "min_lr", false, 0, 1e6, &o->schedule.min_lr) ||
        !get_float(&c, "clip", false, 0, 1e12, &o->clip_norm) || !get_str(&c, "metrics", false, &metrics) ||
        !get_int(&c, "top_k", false, 1, 1 << 20, &top_k) || !get_int(&c, "patience", false, 0, 1 << 24, &cf->patience) ||
        !get_int(&c, "seed", false, 0, INT64_MAX, &seed))
        return false;
    o->loss = (magna_loss)loss;
    const magna_optimizer_kind kinds[] = {MAGNA_SGD, MAGNA_SGD, MAGNA_SGD, MAGNA_ADAM, MAGNA_ADAMW};
    o->optimizer.kind = kinds[opt];
    o->optimizer.nesterov = opt == 2;
    for (const char *const *k = (const char *const[]){"beta1", "beta2", "eps", NULL}; opt <= 2 && *k; k++) {
        entry *e = lookup(&c, *k, false);
        if (e) return cli_fail("%s:%d: [train] key '%s': only adam and adamw take it", f->path, e->line, *k);
    }
    if (o->optimizer.momentum < 0) o->optimizer.momentum = opt == 1 || opt == 2 ? 0.9f : 0.0f;
    else if (opt > 2) {
        entry *e = lookup(&c, "momentum", false);
        return cli_fail("%s:%d: [train] key 'momentum': only sgd, momentum and nesterov take it", f->path, e->line);
    }
    o->schedule.kind = (magna_schedule_kind)sched;
    o->schedule.warmup_steps = warmup, o->schedule.step_size = step_size, o->schedule.decay_steps = decay;
    o->top_k = (int)top_k;
    cf->seed = (uint64_t)seed;
    if (metrics) {
        int n = 0;
        char **list = split_list(metrics, &n);
        if (!list) return cli_fail("%s: out of memory", f->path);
        for (int k = 0; k < n; k++) {
            int m = 0;
            while (METRICS[m] && strcmp(METRICS[m], list[k]) != 0) m++;
            if (!METRICS[m]) {
                entry *e = lookup(&c, "metrics", false);
                cli_fail("%s:%d: [train] key 'metrics': unknown metric '%s' (expected some of: mse, rmse, mae, r2, "
                     "accuracy, top_k)",
                     f->path, e->line, list[k]);
                free_list(list);
                return false;
            }
            o->metrics |= 1u << m; /* METRICS is in the order of the MAGNA_METRIC_* bits */
        }
        free_list(list);
    } else
        o->metrics = o->loss == MAGNA_LOSS_SPARSE_CE ? MAGNA_METRIC_ACCURACY : MAGNA_METRIC_RMSE;
    if (lm && o->loss != MAGNA_LOSS_SPARSE_CE) {
        entry *e = lookup(&c, "loss", false);
        return cli_fail("%s:%d: [train] key 'loss': a %s model predicts token ids: sparse_cross_entropy", f->path,
                        e->line, cf->kind == DATA_TEXT ? "language" : "seq2seq");
    }
    return no_unknown_keys(&c, keys);
}

bool config_read(const char *path, config *cf) { return config_read_text(path, NULL, cf); }

/* ---- --set SECTION.KEY=VALUE ----------------------------------------------------------------------- */

/* The section a line opens ("data" for "[data]  # comment"), into name; false when it opens none. */
static bool header_name(const char *line, char *name, size_t n) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", line);
    char *t = trim(buf);
    if (*t != '[') return false;
    char *end = strchr(t, ']');
    if (!end) return false;
    *end = 0;
    snprintf(name, n, "%s", trim(t + 1));
    return true;
}

/* Whether a line sets `key` ("key = value", not a comment). */
static bool line_sets(const char *line, const char *key) {
    while (*line == ' ' || *line == '\t') line++;
    if (*line == '#' || *line == ';' || *line == '[') return false;
    const char *eq = strchr(line, '=');
    if (!eq) return false;
    size_t len = (size_t)(eq - line);
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t')) len--;
    return len == strlen(key) && strncmp(line, key, len) == 0;
}

char *config_override(const char *text, const char *const *sets, int n) {
    /* the text as lines (one more slot per override, for the lines they add) */
    int cap = 3 * n + 2, count = 0;
    for (const char *p = text; *p; p++) cap += *p == '\n';
    char **lines = calloc((size_t)cap, sizeof *lines);
    if (!lines) return cli_fail("out of memory"), NULL;
    bool ok = true;
    for (const char *p = text; ok && *p;) {
        const size_t len = strcspn(p, "\n");
        if (!(lines[count] = malloc(len + 1))) ok = cli_fail("out of memory");
        else memcpy(lines[count], p, len), lines[count++][len] = 0;
        p += len + (p[len] == '\n');
    }
    for (int k = 0; ok && k < n; k++) {
        const char *a = sets[k], *dot = strchr(a, '.'), *eq = strchr(a, '=');
        char section[64] = "", key[128] = "", value[1024] = "";
        if (dot && eq && dot < eq) {
            snprintf(section, sizeof section, "%.*s", (int)(dot - a), a);
            snprintf(key, sizeof key, "%.*s", (int)(eq - dot - 1), dot + 1);
            snprintf(value, sizeof value, "%s", eq + 1);
        }
        char *sec = trim(section), *ky = trim(key), *val = trim(value);
        if (!*sec || !*ky || !*val || strchr(val, '\n') || strpbrk(ky, " \t[]")) {
            ok = cli_fail("--set '%s': expected SECTION.KEY=VALUE, e.g. --set model.layers=2", a);
            break;
        }
        if (strcmp(sec, "data") != 0 && strcmp(sec, "model") != 0 && strcmp(sec, "train") != 0) {
            ok = cli_fail("--set '%s': the section is data, model or train%s", a,
                          strcmp(sec, "layer") == 0 ? " ([layer] sections repeat: edit a copy of the file)" : "");
            break;
        }
        char *set = malloc(strlen(ky) + strlen(val) + 4);
        if (!set) {
            ok = cli_fail("out of memory");
            break;
        }
        sprintf(set, "%s = %s", ky, val);
        int header = -1, found = -1;
        char name[64];
        for (int i = 0; i < count; i++) {
            if (header_name(lines[i], name, sizeof name)) {
                if (header >= 0) break; /* the section ended */
                if (strcmp(name, sec) == 0) header = i;
            } else if (header >= 0 && line_sets(lines[i], ky)) {
                found = i;
                break;
            }
        }
        if (found >= 0) { /* in place: the other lines keep their numbers */
            free(lines[found]);
            lines[found] = set;
        } else if (header >= 0) { /* a key the file leaves out: right after the section's header */
            memmove(lines + header + 2, lines + header + 1, (size_t)(count - header - 1) * sizeof *lines);
            lines[header + 1] = set, count++;
        } else { /* no such section: a new one at the end */
            const size_t len = strlen(sec) + 3;
            if (!(lines[count] = malloc(len))) {
                free(set);
                ok = cli_fail("out of memory");
                break;
            }
            snprintf(lines[count++], len, "[%s]", sec);
            lines[count++] = set;
        }
    }
    size_t total = 1;
    for (int i = 0; i < count; i++) total += strlen(lines[i]) + 1;
    char *out = ok ? malloc(total) : NULL;
    if (ok && !out) cli_fail("out of memory");
    for (size_t at = 0, i = 0; out && i < (size_t)count; i++) {
        const size_t len = strlen(lines[i]);
        memcpy(out + at, lines[i], len);
        out[at + len] = '\n';
        at += len + 1;
        out[at] = 0;
    }
    if (out && count == 0) out[0] = 0;
    for (int i = 0; i < count; i++) free(lines[i]);
    free(lines);
    return out;
}

bool config_read_text(const char *path, const char *text, config *cf) {
    *cf = (config){.path = path};
    ini f;
    if (!ini_read(path, text, &f)) return false;
    bool ok = read_data(&f, cf) && read_model(&f, cf);
    for (int i = 0; ok && i < f.n; i++)
        if (strcmp(f.s[i].name, "layer") == 0) ok = read_layer(&f, &f.s[i], cf);
    for (int i = 0; ok && i < cf->nlayers; i++) cf->layers[i].init = cf->init; /* [model] init, every layer */
    if (ok && cf->nlayers == 0 && cf->model == MODEL_SEQUENTIAL)
        ok = cli_fail("%s: no [layer] section (a model needs at least one layer)", path);
    ok = ok && read_train(&f, cf);
    if (ok && !cf->has_data_seed) cf->data_seed = cf->seed;
    if (ok && cf->kind == DATA_CSV && (cf->label != NULL) != (cf->compile.loss == MAGNA_LOSS_SPARSE_CE))
        ok = cli_fail("%s:%d: [data] %s", path, cf->data_line,
                  cf->label ? "'label' gives class indices: the loss must be sparse_cross_entropy"
                            : "'target' gives float targets: sparse_cross_entropy needs a 'label' column");
    if (ok && cf->kind == DATA_IDX && cf->compile.loss != MAGNA_LOSS_SPARSE_CE)
        ok = cli_fail("%s:%d: [data] idx images come with class labels: the loss must be sparse_cross_entropy", path,
                  cf->data_line);
    ini_free(&f);
    if (!ok) config_free(cf);
    return ok;
}

