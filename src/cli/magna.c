/* magna.c — the `magna` command: trains, evaluates and summarises models described by model files
 * (models/<name>.ini, the format is described in README.md "Command line" and at the top of each file).
 *
 *   magna train MODEL_FILE [--epochs N] [--batch N] [--lr X] [--seed N] [--threads N] [--out DIR]
 *   magna eval MODEL_FILE --weights FILE [--seed N] [--threads N]
 *   magna summary MODEL_FILE
 *   magna --version
 *
 * A model file is read strictly: an unknown section or key, a value that does not parse or is out of range,
 * a missing required key are errors naming the file and the line ("models/x.ini:12: [layer] dense: unknown
 * key 'unit'"). Exit status: 0 on success, 1 when the run fails, 2 for a bad command line or model file. */
#include "magna.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum { MAX_LAYERS = 64, EXIT_RUN = 1, EXIT_USAGE = 2 };

/* ---- the first error, one line --------------------------------------------------------------------- */

static char g_err[1024];

static bool fail(const char *fmt, ...) {
    if (g_err[0]) return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
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

static bool ini_read(const char *path, ini *f) {
    *f = (ini){.path = path};
    FILE *in = fopen(path, "r");
    if (!in) return fail("%s: cannot open: %s", path, strerror(errno));
    char buf[4096];
    int line = 0;
    bool ok = true;
    while (ok && fgets(buf, sizeof buf, in)) {
        line++;
        if (!strchr(buf, '\n') && !feof(in)) {
            ok = fail("%s:%d: line longer than %d characters", path, line, (int)sizeof buf - 2);
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
                ok = fail("%s:%d: '%s': a section header ends with ']'", path, line, s);
                break;
            }
            s[n - 1] = 0;
            char *name = trim(s + 1);
            int k = 0;
            while (SECTIONS[k] && strcmp(SECTIONS[k], name) != 0) k++;
            if (!SECTIONS[k]) {
                ok = fail("%s:%d: unknown section [%s] (expected [data], [model], [layer] or [train])", path, line,
                          name);
                break;
            }
            for (int i = 0; i < f->n && strcmp(name, "layer") != 0; i++)
                if (strcmp(f->s[i].name, name) == 0) {
                    ok = fail("%s:%d: a second [%s] section (the first is at line %d)", path, line, name, f->s[i].line);
                    break;
                }
            if (!ok) break;
            if (f->n == f->cap) {
                int cap = f->cap ? 2 * f->cap : 8;
                section *ns = realloc(f->s, (size_t)cap * sizeof *ns);
                if (!ns) {
                    ok = fail("%s: out of memory", path);
                    break;
                }
                f->s = ns, f->cap = cap;
            }
            f->s[f->n++] = (section){.name = dup_str(name), .line = line};
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            ok = fail("%s:%d: '%s': expected 'key = value' or a [section]", path, line, s);
            break;
        }
        *eq = 0;
        char *key = trim(s), *value = trim(eq + 1);
        if (!*key) {
            ok = fail("%s:%d: a value without a key", path, line);
            break;
        }
        if (f->n == 0) {
            ok = fail("%s:%d: key '%s' is outside any section", path, line, key);
            break;
        }
        section *sec = &f->s[f->n - 1];
        for (int j = 0; j < sec->n; j++)
            if (strcmp(sec->e[j].key, key) == 0) {
                ok = fail("%s:%d: [%s] key '%s' given twice (first at line %d)", path, line, sec->name, key,
                          sec->e[j].line);
                break;
            }
        if (!ok) break;
        if (!*value) {
            ok = fail("%s:%d: [%s] key '%s' has no value", path, line, sec->name, key);
            break;
        }
        if (sec->n == sec->cap) {
            int cap = sec->cap ? 2 * sec->cap : 8;
            entry *ne = realloc(sec->e, (size_t)cap * sizeof *ne);
            if (!ne) {
                ok = fail("%s: out of memory", path);
                break;
            }
            sec->e = ne, sec->cap = cap;
        }
        sec->e[sec->n++] = (entry){.key = dup_str(key), .value = dup_str(value), .line = line};
    }
    if (ok && ferror(in)) ok = fail("%s: read error", path);
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
        fail("%s:%d: %s needs '%s'", c->f->path, c->s->line, where(c, w, sizeof w), key);
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

static bool parse_int(const char *s, int64_t *v) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end) return false;
    *v = x;
    return true;
}

static bool parse_double(const char *s, double *v) {
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
        return fail("%s:%d: %s key '%s': '%s' is not a whole number", c->f->path, e->line, where(c, w, sizeof w), key,
                    e->value);
    if (v < lo || v > hi)
        return fail("%s:%d: %s key '%s': %lld is out of range [%lld, %lld]", c->f->path, e->line,
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
        return fail("%s:%d: %s key '%s': '%s' is not a number", c->f->path, e->line, where(c, w, sizeof w), key,
                    e->value);
    if (v < lo || v > hi)
        return fail("%s:%d: %s key '%s': %g is out of range [%g, %g]", c->f->path, e->line, where(c, w, sizeof w), key,
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
    return fail("%s:%d: %s key '%s': unknown value '%s' (expected one of: %s)", c->f->path, e->line,
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
            return fail("%s:%d: %s: unknown key '%s' (it takes: %s)", c->f->path, c->s->e[j].line,
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
            return fail("%s:%d: %s: unknown key '%s' (it takes: %s)", c->f->path, c->s->e[j].line,
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

static void config_free(config *c) {
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
};
enum { LAYER_TYPE_COUNT = sizeof LAYER_TYPES / sizeof LAYER_TYPES[0] };

static bool read_data(ini *f, config *cf) {
    section *s = find_section(f, "data");
    if (!s) return fail("%s: no [data] section (it needs kind and path)", f->path);
    ctx c = {f, s, NULL};
    cf->data_line = s->line;
    int kind = 0;
    const char *path = NULL, *target = NULL, *label = NULL, *names = NULL;
    if (!get_enum(&c, "kind", true, (const char *const[]){"csv", "idx", NULL}, &kind) ||
        !get_str(&c, "path", true, &path))
        return false;
    cf->kind = (data_kind)kind;
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
            return fail("%s:%d: [data] needs exactly one of 'target' (a regression column) and 'label' (a class "
                        "column)",
                        f->path, s->line);
        if (names && cf->header)
            return fail("%s:%d: [data] 'names' names the columns of a file without a header: add header = false",
                        f->path, s->line);
        if (target) cf->target = dup_str(target);
        if (label) cf->label = dup_str(label);
        if (names && !(cf->names = split_list(names, NULL))) return fail("%s: out of memory", f->path);
        return no_unknown_keys(&c, takes);
    }
    if (!get_int(&c, "classes", false, 0, 1 << 20, &cf->classes)) return false;
    return no_unknown_keys(&c, takes);
}

static bool read_model(ini *f, config *cf) {
    section *s = find_section(f, "model");
    if (!s) return fail("%s: no [model] section (it needs input)", f->path);
    ctx c = {f, s, NULL};
    cf->model_line = s->line;
    const char *input = NULL;
    if (!check_keys(&c, "input") || !get_str(&c, "input", true, &input)) return false;
    entry *e = lookup(&c, "input", false);
    int n = 0;
    char **dims = split_list(input, &n);
    if (!dims) return fail("%s: out of memory", f->path);
    bool ok = n <= MAGNA_MAX_DIMS - 1;
    for (int k = 0; ok && k < n; k++) ok = parse_int(dims[k], &cf->input[k]) && cf->input[k] >= 1;
    free_list(dims);
    if (!ok)
        return fail("%s:%d: [model] key 'input': '%s' is not a shape (one to %d whole numbers >= 1, separated by "
                    "commas)",
                    f->path, e->line, input, MAGNA_MAX_DIMS - 1);
    cf->input_ndim = n;
    return no_unknown_keys(&c, "input");
}

static bool read_layer(ini *f, section *s, config *cf) {
    ctx c = {f, s, NULL};
    if (cf->nlayers == MAX_LAYERS) return fail("%s:%d: more than %d layers", f->path, s->line, MAX_LAYERS);
    const char *type = NULL;
    if (!get_str(&c, "type", true, &type)) return false;
    const layer_type *t = NULL;
    for (int k = 0; k < LAYER_TYPE_COUNT; k++)
        if (strcmp(LAYER_TYPES[k].name, type) == 0) t = &LAYER_TYPES[k];
    if (!t) {
        entry *e = lookup(&c, "type", false);
        return fail("%s:%d: [layer] unknown layer type '%s' (expected one of: dense, conv2d, max_pool2d, avg_pool2d, "
                    "flatten, dropout, batch_norm, layer_norm, activation, global_avg_pool2d)",
                    f->path, e->line, type);
    }
    c.what = t->name;
    if (!check_keys(&c, t->takes)) return false;
    magna_layer_spec *l = &cf->layers[cf->nlayers];
    *l = (magna_layer_spec){.kind = t->kind};
    const char *name = NULL;
    int act = 0, pad = 0;
    int64_t units = 0, kernel = 0, stride = 0;
    bool ok = true;
    switch (t->kind) {
    case MAGNA_LAYER_DENSE:
        ok = get_int(&c, "units", true, 1, 1 << 30, &units) && get_enum(&c, "activation", false, ACTIVATIONS, &act) &&
             get_float(&c, "l2", false, 0, 1e6, &l->l2) && get_str(&c, "name", false, &name);
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

static const char *const LOSSES[] = {"mse", "mae", "sparse_cross_entropy", "binary_cross_entropy", NULL};
static const char *const METRICS[] = {"mse", "rmse", "mae", "r2", "accuracy", "top_k", NULL};

static const char *TRAIN_KEYS = "loss, optimizer, lr, momentum, weight_decay, l2, batch, epochs, schedule, warmup, "
                                "step_size, gamma, decay_steps, min_lr, clip, metrics, top_k, patience, seed";

static bool read_train(ini *f, config *cf) {
    section *s = find_section(f, "train");
    if (!s) return fail("%s: no [train] section (it needs loss, optimizer, lr, batch and epochs)", f->path);
    ctx c = {f, s, NULL};
    magna_compile_opts *o = &cf->compile;
    int loss = 0, opt = 0, sched = 0;
    int64_t seed = 42, warmup = 0, step_size = 0, decay = 0, top_k = 0;
    const char *metrics = NULL;
    o->optimizer.momentum = -1;
    if (!check_keys(&c, TRAIN_KEYS) || !get_enum(&c, "loss", true, LOSSES, &loss) ||
        !get_enum(&c, "optimizer", true, (const char *const[]){"sgd", "momentum", "nesterov", "adam", "adamw", NULL},
                  &opt) ||
        !get_float(&c, "lr", true, 1e-12, 1e6, &o->optimizer.lr) ||
        !get_int(&c, "batch", true, 1, 1 << 24, &cf->batch) || !get_int(&c, "epochs", true, 1, 1 << 24, &cf->epochs) ||
        !get_float(&c, "momentum", false, 0, 0.9999, &o->optimizer.momentum) ||
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
    if (o->optimizer.momentum < 0) o->optimizer.momentum = opt == 1 || opt == 2 ? 0.9f : 0.0f;
    else if (opt > 2) {
        entry *e = lookup(&c, "momentum", false);
        return fail("%s:%d: [train] key 'momentum': only sgd, momentum and nesterov take it", f->path, e->line);
    }
    o->schedule.kind = (magna_schedule_kind)sched;
    o->schedule.warmup_steps = warmup, o->schedule.step_size = step_size, o->schedule.decay_steps = decay;
    o->top_k = (int)top_k;
    cf->seed = (uint64_t)seed;
    if (metrics) {
        int n = 0;
        char **list = split_list(metrics, &n);
        if (!list) return fail("%s: out of memory", f->path);
        for (int k = 0; k < n; k++) {
            int m = 0;
            while (METRICS[m] && strcmp(METRICS[m], list[k]) != 0) m++;
            if (!METRICS[m]) {
                entry *e = lookup(&c, "metrics", false);
                fail("%s:%d: [train] key 'metrics': unknown metric '%s' (expected some of: mse, rmse, mae, r2, "
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
    return no_unknown_keys(&c, TRAIN_KEYS);
}

static bool config_read(const char *path, config *cf) {
    *cf = (config){.path = path};
    ini f;
    if (!ini_read(path, &f)) return false;
    bool ok = read_data(&f, cf) && read_model(&f, cf);
    for (int i = 0; ok && i < f.n; i++)
        if (strcmp(f.s[i].name, "layer") == 0) ok = read_layer(&f, &f.s[i], cf);
    if (ok && cf->nlayers == 0) ok = fail("%s: no [layer] section (a model needs at least one layer)", path);
    ok = ok && read_train(&f, cf);
    if (ok && !cf->has_data_seed) cf->data_seed = cf->seed;
    if (ok && cf->kind == DATA_CSV && (cf->label != NULL) != (cf->compile.loss == MAGNA_LOSS_SPARSE_CE))
        ok = fail("%s:%d: [data] %s", path, cf->data_line,
                  cf->label ? "'label' gives class indices: the loss must be sparse_cross_entropy"
                            : "'target' gives float targets: sparse_cross_entropy needs a 'label' column");
    if (ok && cf->kind == DATA_IDX && cf->compile.loss != MAGNA_LOSS_SPARSE_CE)
        ok = fail("%s:%d: [data] idx images come with class labels: the loss must be sparse_cross_entropy", path,
                  cf->data_line);
    ini_free(&f);
    if (!ok) config_free(cf);
    return ok;
}

/* ---- data ------------------------------------------------------------------------------------------ */

typedef struct data {
    magna_dataset train, val, test;
    bool has_val, has_test;
    int64_t width;
    void *owned[9];
    magna_image_set sets[3];
    char desc[512];
} data;

static void data_free(data *d) {
    for (int k = 0; k < 9; k++) free(d->owned[k]);
    for (int k = 0; k < 3; k++) magna_image_set_free(&d->sets[k]);
}

static void scale_rows(float *x, int64_t n, double scale) {
    if (x && scale != 1.0)
        for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] * scale);
}

static bool load_csv(const config *cf, data *d) {
    magna_csv_options o = {.skip_lines = (int)cf->skip, .no_header = !cf->header,
                           .names = (const char *const *)cf->names};
    magna_table t, part[3] = {0};
    magna_error err;
    if (magna_csv_read(cf->data_path, &o, &t, &err) != MAGNA_OK) return fail("%s", err.message);
    const char *col = cf->target ? cf->target : cf->label;
    if (magna_table_column(&t, col) < 0) {
        magna_table_free(&t);
        return fail("%s: no column '%s' (%s:%d, [data] %s)", cf->data_path, col, cf->path, cf->data_line,
                    cf->target ? "target" : "label");
    }
    double val = cf->validation;
    if (val >= 1) val = (val - 0.5) / (double)t.rows; /* a count of rows; split takes ceil(rows * fraction) */
    bool ok = true;
    magna_standardizer st = {0};
    if (magna_table_split(&t, val, cf->test, cf->data_seed, &part[0], val > 0 ? &part[1] : NULL,
                          cf->test > 0 ? &part[2] : NULL, &err) != MAGNA_OK)
        ok = fail("%s", err.message);
    if (ok && cf->standardise &&
        (magna_standardizer_fit(&st, &part[0], NULL, col, &err) != MAGNA_OK ||
         magna_standardizer_apply(&st, &part[0], &err) != MAGNA_OK ||
         (val > 0 && magna_standardizer_apply(&st, &part[1], &err) != MAGNA_OK) ||
         (cf->test > 0 && magna_standardizer_apply(&st, &part[2], &err) != MAGNA_OK)))
        ok = fail("%s", err.message);
    magna_dataset *sets[3] = {&d->train, &d->val, &d->test};
    for (int k = 0; ok && k < 3; k++) {
        if (k == 1 && !(val > 0)) continue;
        if (k == 2 && !(cf->test > 0)) continue;
        float *x = NULL, *y = NULL;
        int32_t *labels = NULL, classes = 0;
        int64_t width = 0;
        if (magna_table_features(&part[k], NULL, col, &x, &width, &err) != MAGNA_OK ||
            (cf->target ? magna_table_target(&part[k], col, &y, &err)
                        : magna_table_labels(&part[k], col, &labels, &classes, &err)) != MAGNA_OK)
            ok = fail("%s", err.message);
        d->owned[3 * k] = x, d->owned[3 * k + 1] = y, d->owned[3 * k + 2] = labels;
        if (!ok) break;
        scale_rows(x, part[k].rows * width, cf->scale);
        *sets[k] = (magna_dataset){.rows = part[k].rows, .x = x, .y = y, .labels = labels};
        if (cf->limit > 0 && sets[k]->rows > cf->limit) sets[k]->rows = cf->limit;
        d->width = width;
    }
    d->has_val = val > 0, d->has_test = cf->test > 0;
    if (ok)
        snprintf(d->desc, sizeof d->desc,
                 "%s: %lld rows, %lld features; split seed %llu: %lld training, %lld validation, %lld test rows",
                 cf->data_path, (long long)t.rows, (long long)d->width, (unsigned long long)cf->data_seed,
                 (long long)d->train.rows, (long long)d->val.rows, (long long)d->test.rows);
    magna_standardizer_free(&st);
    magna_table_free(&t);
    for (int k = 0; k < 3; k++) magna_table_free(&part[k]);
    return ok;
}

static bool load_idx(const config *cf, data *d) {
    magna_image_set all = {0};
    magna_error err;
    int64_t val = (int64_t)cf->validation;
    if (magna_mnist_load(cf->data_path, "train", (int32_t)cf->classes, &all, &err) != MAGNA_OK ||
        magna_mnist_load(cf->data_path, "t10k", (int32_t)cf->classes, &d->sets[2], &err) != MAGNA_OK) {
        magna_image_set_free(&all);
        return fail("%s", err.message);
    }
    if (cf->validation > 0 && cf->validation < 1) val = (int64_t)ceil(cf->validation * (double)all.count);
    if (val >= all.count) {
        magna_image_set_free(&all);
        return fail("%s: validation asks for %lld of the %lld training images (%s:%d)", cf->data_path, (long long)val,
                    (long long)all.count, cf->path, cf->data_line);
    }
    magna_status st = magna_image_split(&all, val, cf->data_seed, &d->sets[0], val > 0 ? &d->sets[1] : NULL, &err);
    magna_image_set_free(&all);
    if (st != MAGNA_OK) return fail("%s", err.message);
    const int64_t c = d->sets[0].channels;
    if (cf->standardise) {
        double *mean = calloc((size_t)c, sizeof *mean), *sd = calloc((size_t)c, sizeof *sd);
        bool ok = mean && sd && magna_image_mean_std(&d->sets[0], mean, sd, &err) == MAGNA_OK;
        for (int k = 0; ok && k < 3; k++)
            if (d->sets[k].count) ok = magna_image_standardize(&d->sets[k], mean, sd, &err) == MAGNA_OK;
        free(mean), free(sd);
        if (!ok) return fail("%s", err.message);
    }
    magna_dataset *sets[3] = {&d->train, &d->val, &d->test};
    for (int k = 0; k < 3; k++) {
        magna_image_set *s = &d->sets[k];
        if (cf->limit > 0 && s->count > cf->limit) s->count = cf->limit;
        scale_rows(s->pixels, s->count * magna_image_size(s), cf->scale);
        *sets[k] = (magna_dataset){.rows = s->count, .x = s->pixels, .labels = s->labels};
    }
    d->width = magna_image_size(&d->sets[0]);
    d->has_val = val > 0, d->has_test = true;
    snprintf(d->desc, sizeof d->desc,
             "%s: %lld training, %lld validation (split seed %llu), %lld test images of %lld x %lld x %lld",
             cf->data_path, (long long)d->train.rows, (long long)d->val.rows, (unsigned long long)cf->data_seed,
             (long long)d->test.rows, (long long)c, (long long)d->sets[0].height, (long long)d->sets[0].width);
    return true;
}

static bool load_data(const config *cf, data *d) {
    *d = (data){0};
    bool ok = cf->kind == DATA_CSV ? load_csv(cf, d) : load_idx(cf, d);
    if (ok) {
        int64_t n = 1;
        for (int k = 0; k < cf->input_ndim; k++) n *= cf->input[k];
        if (n != d->width)
            ok = fail("%s:%d: [model] input has %lld values per sample, the data has %lld", cf->path, cf->model_line,
                      (long long)n, (long long)d->width);
    }
    if (!ok) data_free(d);
    return ok;
}

/* ---- commands -------------------------------------------------------------------------------------- */

static magna_model *build(const config *cf) {
    magna_model *m = magna_model_new(cf->seed, cf->batch);
    if (!m) {
        fail("out of memory");
        return NULL;
    }
    magna_model_input(m, "x", MAGNA_F32, cf->input_ndim, cf->input);
    magna_model_sequential(m, cf->layers, cf->nlayers);
    if (magna_model_compile(m, &cf->compile) != MAGNA_OK) {
        fail("%s: %s", cf->path, magna_model_errmsg(m));
        magna_model_free(m);
        return NULL;
    }
    return m;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* "test_loss=... test_rmse=..." for the compiled metrics. */
static void scores_kv(const char *prefix, const magna_scores *s, unsigned metrics, char *buf, size_t n) {
    size_t u = 0;
    u += (size_t)snprintf(buf + u, n - u, "%s_loss=%.4f", prefix, s->loss);
    if (metrics & MAGNA_METRIC_MSE && u < n) u += (size_t)snprintf(buf + u, n - u, " %s_mse=%.4f", prefix, s->mse);
    if (metrics & MAGNA_METRIC_RMSE && u < n) u += (size_t)snprintf(buf + u, n - u, " %s_rmse=%.3f", prefix, s->rmse);
    if (metrics & MAGNA_METRIC_MAE && u < n) u += (size_t)snprintf(buf + u, n - u, " %s_mae=%.3f", prefix, s->mae);
    if (metrics & MAGNA_METRIC_R2 && u < n) u += (size_t)snprintf(buf + u, n - u, " %s_r2=%.4f", prefix, s->r2);
    if (metrics & MAGNA_METRIC_ACCURACY && u < n)
        u += (size_t)snprintf(buf + u, n - u, " %s_acc=%.4f", prefix, s->accuracy);
    if (metrics & MAGNA_METRIC_TOP_K && u < n) snprintf(buf + u, n - u, " %s_top_k=%.4f", prefix, s->top_k);
}

static bool make_dirs(const char *dir) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return fail("%s: path too long", dir);
    for (char *p = buf + 1;; p++) {
        const bool end = *p == 0;
        if (*p == '/' || end) {
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST) return fail("%s: cannot create: %s", buf, strerror(errno));
            if (end) break;
            *p = '/';
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return fail("%s: not a directory", dir);
    return true;
}

static const char *USAGE =
    "usage: magna COMMAND ...\n"
    "  magna train MODEL_FILE [--epochs N] [--batch N] [--lr X] [--seed N] [--threads N] [--out DIR]\n"
    "  magna eval MODEL_FILE --weights FILE [--seed N] [--threads N]\n"
    "  magna summary MODEL_FILE\n"
    "  magna --version\n"
    "A MODEL_FILE has sections [data], [model], one [layer] per layer, and [train] (see README.md, "
    "\"Command line\").\n";
static const char *USAGE_TRAIN =
    "usage: magna train MODEL_FILE [--epochs N] [--batch N] [--lr X] [--seed N] [--threads N] [--out DIR]\n"
    "Trains the model the file describes on its data, evaluates it on the test split and writes\n"
    "DIR/model.safetensors (the best epoch's weights, which are also the ones evaluated) and DIR/logs\n"
    "(TensorBoard events, log.csv, curves.svg). DIR defaults to runs/<model file name>. The options\n"
    "override the file's [train] epochs, batch, lr and seed (--seed sets the data split's seed too).\n"
    "The last line is key=value results.\n";
static const char *USAGE_EVAL = "usage: magna eval MODEL_FILE --weights FILE [--seed N] [--threads N]\n"
                                "Loads the weights into the model the file describes and evaluates it on the "
                                "test split\n(the same split as training: same file, same seed). The last line "
                                "is key=value results.\n";
static const char *USAGE_SUMMARY = "usage: magna summary MODEL_FILE\n"
                                   "Checks the model file, builds the model and prints its layers, shapes and "
                                   "parameter counts.\n";

typedef struct options {
    const char *model_file, *out, *weights;
    int64_t epochs, batch, seed, threads;
    double lr;
    bool help;
} options;

/* Options after the command; `allowed` lists the ones this command takes, as "--epochs --batch ...". */
static bool parse_options(int argc, char **argv, const char *cmd, const char *allowed, options *o) {
    *o = (options){.epochs = -1, .batch = -1, .seed = -1, .threads = -1, .lr = -1};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = true;
            return true;
        }
        if (a[0] != '-') {
            if (o->model_file) return fail("magna %s: one model file only ('%s' and '%s')", cmd, o->model_file, a);
            o->model_file = a;
            continue;
        }
        char flag[32];
        snprintf(flag, sizeof flag, "%s", a);
        const char *p = strstr(allowed, flag);
        if (strncmp(a, "--", 2) != 0 || !p || (p[strlen(flag)] != ' ' && p[strlen(flag)] != 0))
            return fail("magna %s: unknown option '%s' (see magna %s --help)", cmd, a, cmd);
        if (i + 1 >= argc) return fail("magna %s: %s needs a value", cmd, a);
        const char *v = argv[++i];
        int64_t n = 0;
        double x = 0;
        if (strcmp(a, "--out") == 0) o->out = v;
        else if (strcmp(a, "--weights") == 0) o->weights = v;
        else if (strcmp(a, "--lr") == 0) {
            if (!parse_double(v, &x) || x <= 0) return fail("magna %s: --lr: '%s' is not a number > 0", cmd, v);
            o->lr = x;
        } else {
            if (!parse_int(v, &n) || n < (strcmp(a, "--seed") == 0 ? 0 : 1) || (strcmp(a, "--seed") != 0 && n > (1 << 24)))
                return fail("magna %s: %s: '%s' is not a whole number in range", cmd, a, v);
            if (strcmp(a, "--epochs") == 0) o->epochs = n;
            else if (strcmp(a, "--batch") == 0) o->batch = n;
            else if (strcmp(a, "--seed") == 0) o->seed = n;
            else o->threads = n;
        }
    }
    if (!o->model_file) return fail("magna %s: no model file (see magna %s --help)", cmd, cmd);
    return true;
}

static void apply_options(const options *o, config *cf) {
    if (o->epochs > 0) cf->epochs = o->epochs;
    if (o->batch > 0) cf->batch = o->batch;
    if (o->lr > 0) cf->compile.optimizer.lr = (float)o->lr;
    if (o->seed >= 0) cf->seed = cf->data_seed = (uint64_t)o->seed;
    if (o->threads > 0) magna_set_threads((int)o->threads);
}

static int cmd_summary(int argc, char **argv) {
    options o;
    if (!parse_options(argc, argv, "summary", "", &o)) return EXIT_USAGE;
    if (o.help) return fputs(USAGE_SUMMARY, stdout), 0;
    config cf;
    if (!config_read(o.model_file, &cf)) return EXIT_USAGE;
    magna_model *m = build(&cf);
    int rc = EXIT_RUN;
    if (m) {
        printf("%s: %d layers; %s, batch %lld, %lld epochs\n", o.model_file, cf.nlayers, LOSSES[cf.compile.loss],
               (long long)cf.batch, (long long)cf.epochs);
        magna_model_summary(m, stdout);
        magna_model_free(m);
        rc = 0;
    }
    config_free(&cf);
    return rc;
}

static int cmd_train(int argc, char **argv) {
    options o;
    if (!parse_options(argc, argv, "train", "--epochs --batch --lr --seed --threads --out", &o)) return EXIT_USAGE;
    if (o.help) return fputs(USAGE_TRAIN, stdout), 0;
    config cf;
    if (!config_read(o.model_file, &cf)) return EXIT_USAGE;
    apply_options(&o, &cf);
    char out[4096], ckpt[4200], logs[4200];
    if (o.out) snprintf(out, sizeof out, "%s", o.out);
    else {
        const char *base = strrchr(o.model_file, '/');
        base = base ? base + 1 : o.model_file;
        int len = (int)strlen(base);
        const char *dot = strrchr(base, '.');
        if (dot && dot != base) len = (int)(dot - base);
        snprintf(out, sizeof out, "runs/%.*s", len, base);
    }
    snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", out);
    snprintf(logs, sizeof logs, "%s/logs", out);
    printf("%s\n", magna_runtime_info());
    data d;
    if (!load_data(&cf, &d)) {
        config_free(&cf);
        return EXIT_RUN;
    }
    printf("%s\n", d.desc);
    int rc = EXIT_RUN;
    magna_model *m = build(&cf);
    magna_history h = {0};
    if (m && make_dirs(out)) {
        magna_model_summary(m, stdout);
        fflush(stdout);
        const double t0 = now();
        magna_fit_opts fo = {.epochs = (int)cf.epochs, .verbose = 1, .patience = (int)cf.patience,
                             .restore_best = true, .checkpoint_path = ckpt, .log_dir = logs};
        if (magna_model_fit(m, &d.train, d.has_val ? &d.val : NULL, &fo, &h) != MAGNA_OK)
            fail("%s: %s", o.model_file, magna_model_errmsg(m));
        else {
            const double seconds = now() - t0;
            magna_scores s;
            char kv[512] = "", vkv[512] = "";
            if (d.has_test && magna_model_evaluate(m, &d.test, &s) != MAGNA_OK)
                fail("%s: %s", o.model_file, magna_model_errmsg(m));
            else {
                if (d.has_test) scores_kv("test", &s, cf.compile.metrics, kv, sizeof kv);
                else scores_kv("train", &h.epochs[h.count - 1].train, cf.compile.metrics, kv, sizeof kv);
                if (d.has_val && h.best_epoch >= 1) { /* " val_loss=... val_acc=...", the best epoch's */
                    vkv[0] = ' ';
                    scores_kv("val", &h.epochs[h.best_epoch - 1].val, cf.compile.metrics, vkv + 1, sizeof vkv - 1);
                }
                printf("wrote %s (epoch %d) and %s\n", ckpt, h.best_epoch, logs);
                printf("%s%s best_epoch=%d epochs=%d seed=%llu threads=%d seconds=%.3f out=%s\n", kv, vkv,
                       h.best_epoch, h.count, (unsigned long long)cf.seed, magna_get_threads(), seconds, out);
                rc = 0;
            }
        }
    }
    magna_history_free(&h);
    magna_model_free(m);
    data_free(&d);
    config_free(&cf);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    options o;
    if (!parse_options(argc, argv, "eval", "--weights --seed --threads", &o)) return EXIT_USAGE;
    if (o.help) return fputs(USAGE_EVAL, stdout), 0;
    if (!o.weights) return fail("magna eval: --weights FILE is required"), EXIT_USAGE;
    config cf;
    if (!config_read(o.model_file, &cf)) return EXIT_USAGE;
    apply_options(&o, &cf);
    data d;
    if (!load_data(&cf, &d)) {
        config_free(&cf);
        return EXIT_RUN;
    }
    int rc = EXIT_RUN;
    magna_model *m = build(&cf);
    magna_error err;
    if (m) {
        const magna_dataset *set = d.has_test ? &d.test : d.has_val ? &d.val : &d.train;
        const char *name = d.has_test ? "test" : d.has_val ? "val" : "train";
        magna_scores s;
        char kv[512];
        if (magna_load_safetensors(magna_model_graph(m), o.weights, &err) != MAGNA_OK) fail("%s", err.message);
        else if (magna_model_evaluate(m, set, &s) != MAGNA_OK) fail("%s: %s", o.model_file, magna_model_errmsg(m));
        else {
            printf("%s\n", d.desc);
            scores_kv(name, &s, cf.compile.metrics, kv, sizeof kv);
            printf("%s rows=%lld seed=%llu weights=%s\n", kv, (long long)s.samples, (unsigned long long)cf.data_seed,
                   o.weights);
            rc = 0;
        }
    }
    magna_model_free(m);
    data_free(&d);
    config_free(&cf);
    return rc;
}

int main(int argc, char **argv) {
    int rc;
    if (argc < 2) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("%s\n", magna_runtime_info());
        return 0;
    }
    if (strcmp(cmd, "train") == 0) rc = cmd_train(argc - 2, argv + 2);
    else if (strcmp(cmd, "eval") == 0) rc = cmd_eval(argc - 2, argv + 2);
    else if (strcmp(cmd, "summary") == 0) rc = cmd_summary(argc - 2, argv + 2);
    else {
        fail("magna: unknown command '%s' (expected train, eval, summary, --version or --help)", cmd);
        rc = EXIT_USAGE;
    }
    if (rc != 0) fprintf(stderr, "%s\n", g_err[0] ? g_err : "magna: failed");
    return rc;
}
