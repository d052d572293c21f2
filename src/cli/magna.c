/* magna.c — the `magna` command: trains, evaluates and summarises models described by model files
 * (models/<name>.ini, the format is described in README.md "Command line" and at the top of each file);
 * predict and generate, which use trained weights, are in infer.c, the pieces all commands share in cli.h.
 *
 *   magna train MODEL_FILE [--epochs N] [--batch N] [--lr X] [--seed N] [--threads N] [--out DIR]
 *               [--save-every STEPS] [--keep K] [--steps N] [--resume CHECKPOINT]
 *               [--dist] [--zero1] [--timeout SECONDS]          (data parallel: mpirun -np N magna train ...)
 *   magna eval MODEL_FILE --weights FILE [--seed N] [--threads N]
 *   magna predict MODEL_FILE --weights CHECKPOINT --input FILE.csv|FILE.idx[.gz] --output OUT.csv
 *   magna generate MODEL_FILE --weights CKPT [--prompt TEXT] [--length N] [--temperature X] [--top-k K]
 *                  [--top-p P] [--seed S] [--beam K]
 *   magna summary MODEL_FILE
 *   magna --version
 *
 * A model file is read strictly: an unknown section or key, a value that does not parse or is out of range,
 * a missing required key are errors naming the file and the line ("models/x.ini:12: [layer] dense: unknown
 * key 'unit'"). Exit status: 0 on success, 1 when the run fails, 2 for a bad command line or model file,
 * 128 + the signal (130 SIGINT, 143 SIGTERM) when a signal stopped `magna train` after saving a checkpoint. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "cli.h"
#include "data.h"
#include "model_file.h"
#include "graph/internal.h" /* magna_io_mkdirs */

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- commands -------------------------------------------------------------------------------------- */

/* The model of the file, compiled, for `batch` rows a step; vocab: a text model's tokenizer's. Without
 * `compile` (summary) only built: shapes and parameters are known then, and compiling allocates the
 * activations of a whole step (tens of GiB for GPT-2 124M at batch 64). */
static magna_model *build_model(const config *cf, int64_t vocab, int64_t batch, bool compile) {
    magna_model *m = cf->model == MODEL_SEQ2SEQ ? magna_numbers_model(cf->seed, batch, &cf->seq2seq)
                                                : magna_model_new(cf->seed, batch);
    if (!m) {
        cli_fail("out of memory");
        return NULL;
    }
    if (cf->kind == DATA_TEXT) {
        magna_node *ids = magna_model_input(m, "ids", MAGNA_I32, 1, (int64_t[]){cf->context});
        if (cf->model == MODEL_GPT) {
            magna_gpt_config g = cf->gpt;
            g.vocab = vocab;
            magna_model_set_output(m, magna_gpt(magna_model_graph(m), "gpt", ids, &g, NULL, NULL));
        } else {
            magna_layer_spec layers[MAX_LAYERS];
            memcpy(layers, cf->layers, (size_t)cf->nlayers * sizeof *layers);
            for (int i = 0; i < cf->nlayers; i++) {
                if (layers[i].kind == MAGNA_LAYER_EMBEDDING) layers[i].vocab = vocab;
                if (cf->units_vocab[i]) layers[i].units = vocab;
            }
            magna_model_sequential(m, layers, cf->nlayers);
        }
    } else if (cf->model == MODEL_SEQUENTIAL) {
        magna_model_input(m, "x", MAGNA_F32, cf->input_ndim, cf->input);
        magna_model_sequential(m, cf->layers, cf->nlayers);
    }
    magna_graph *g = magna_model_graph(m);
    if (compile ? magna_model_compile(m, &cf->compile) != MAGNA_OK : magna_graph_status(g) != MAGNA_OK) {
        cli_fail("%s: %s", cf->path, compile ? magna_model_errmsg(m) : magna_graph_errmsg(g));
        magna_model_free(m);
        return NULL;
    }
    magna_node *out = magna_model_output(m);
    const int64_t width = magna_node_shape(out)[magna_node_ndim(out) - 1];
    /* a GPT's padded vocabulary: wider logits, of which the ids past the tokenizer's are never used */
    const int64_t logits = cf->model == MODEL_GPT ? magna_gpt_padded_vocab(&(magna_gpt_config){.vocab = vocab,
                                                                                                .pad_vocab =
                                                                                                    cf->gpt.pad_vocab})
                                                  : vocab;
    if (cf->kind == DATA_TEXT && width != logits) {
        cli_fail("%s: the model gives %lld logits a position, the tokenizer has %lld ids (the last layer: dense with "
                 "units = vocab)",
                 cf->path, (long long)width, (long long)vocab);
        magna_model_free(m);
        return NULL;
    }
    return m;
}

magna_model *build(const config *cf, int64_t vocab, int64_t batch) {
    return build_model(cf, vocab, batch, true);
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

/* mkdir -p through the library's own helper (io/tensorboard.c), the one fit's log folder uses. */
static bool make_dirs(const char *dir) {
    char failed[4096] = "";
    const int e = magna_io_mkdirs(dir, failed, sizeof failed);
    if (e) return cli_fail("%s: cannot create: %s", failed[0] ? failed : dir, strerror(e));
    return true;
}

static const char *USAGE =
    "usage: magna COMMAND ...\n"
    "  magna train MODEL_FILE [--set SECTION.KEY=VALUE]... [--log-steps FILE]\n"
    "              [--epochs N] [--batch N] [--lr X] [--seed N] [--threads N] [--out DIR]\n"
    "              [--save-every STEPS] [--keep K] [--steps N] [--resume CHECKPOINT]\n"
    "              [--dist] [--zero1] [--timeout SECONDS] [--device cpu|cuda] [--fp32|--bf16]\n"
    "  magna eval MODEL_FILE --weights FILE [--seed N] [--threads N]\n"
    "  magna predict MODEL_FILE --weights CHECKPOINT --input FILE.csv|FILE.idx[.gz] --output OUT.csv\n"
    "  magna generate MODEL_FILE --weights CHECKPOINT [--prompt TEXT] [--length N] [--temperature X]\n"
    "                 [--top-k K] [--top-p P] [--seed S] [--beam K]\n"
    "  magna summary MODEL_FILE\n"
    "  magna --version\n"
    "A MODEL_FILE has sections [data], [model], one [layer] per layer, and [train] (see README.md, "
    "\"Command line\");\n"
    "every command that reads one takes --set SECTION.KEY=VALUE to change a key of [data], [model] or [train].\n";
static const char *USAGE_TRAIN =
    "usage: magna train MODEL_FILE [--epochs N] [--batch N] [--lr X] [--seed N] [--threads N] [--out DIR]\n"
    "                   [--save-every STEPS] [--keep K] [--steps N] [--device cpu|cuda] [--fp32|--bf16]\n"
    "       magna train [MODEL_FILE] --resume CHECKPOINT [--threads N] [--steps N] ...\n"
    "       magna train MODEL_FILE --set SECTION.KEY=VALUE [--set ...] [--log-steps FILE] ...\n"
    "Trains the model the file describes on its data, evaluates it on the test split and writes\n"
    "DIR/model.safetensors (the best epoch's weights, which are also the ones evaluated), DIR/logs\n"
    "(TensorBoard events, log.csv, curves.svg) and DIR/checkpoints: full-state checkpoints (weights,\n"
    "optimizer moments, step, epoch position, RNG, schedule, early stopping, the model file) at each\n"
    "epoch's end and every --save-every steps, the last K (--keep, default 3) kept, and best.safetensors.\n"
    "DIR defaults to runs/<model file name>. The options override the file's [train] epochs, batch, lr\n"
    "and seed (--seed sets the data split's seed too). --steps N stops after optimizer step N (mid-epoch\n"
    "too) with a checkpoint there. --resume takes a checkpoint file or folder (its newest step-*) and\n"
    "continues that run exactly, with its model file, settings and DIR unless given again.\n"
    "SIGINT or SIGTERM: the current step finishes, a checkpoint is saved, and the command exits with\n"
    "status 128 + the signal's number (130, 143) and a line saying how to resume; a second signal ends\n"
    "it at once.\n"
    "Data parallel: started by mpirun/mpiexec/srun (or with --dist), each of N ranks takes its share\n"
    "of a global batch of N x batch rows and the gradients are averaged; rank 0 alone prints and writes.\n"
    "A checkpoint of N ranks resumes on M with --batch (N x batch) / M, the same global batch.\n"
    "--zero1 shards the optimizer state across ranks; --timeout is the deadline of every collective\n"
    "(default $MAGNA_DIST_TIMEOUT or 300 s): a rank that dies or stops answering ends the job, named.\n"
    "Without --threads, each rank runs cores / ranks-on-this-machine threads.\n"
    "--device cuda trains on the GPU (bf16 matmuls with float32 accumulation; --fp32 keeps every op float32);\n"
    "--bf16 on the cpu runs the convolutions in bf16 (oneDNN, on CPUs with avx512_bf16; float32 otherwise).\n"
    "without a CUDA build or a device it fails at once with the reason. Data parallel on cuda takes one GPU\n"
    "per rank (its rank on the machine % GPUs there) and sums the gradients with NCCL.\n"
    "The last line is key=value results.\n"
    "Language models ([data] kind = text or numbers) train one epoch of [train] steps batches of fresh random\n"
    "windows (or examples); their tokenizer goes into the weights and checkpoints. The last line has\n"
    "val_loss (nats a token over the validation windows), bigram_val_loss and tokens_per_s for text, and\n"
    "exact_match (beam search) and greedy_exact_match on the held-out numbers for seq2seq. [data] kind =\n"
    "random_tokens (models/gpt2-124m.ini) has no validation: train_loss, tokens_per_s and\n"
    "tokens_per_s_median (batch x context / the median step time).\n"
    "--set SECTION.KEY=VALUE (repeatable) changes a key of the file's [data], [model] or [train] before it\n"
    "is read (--set model.layers=2 --set data.context=64); checkpoints keep the file as changed.\n"
    "--log-steps FILE writes step,loss,ms for every step (a loss curve to compare across devices). Every\n"
    "results line has step_ms_median: the median step time in milliseconds after the first tenth of the\n"
    "steps (warm-up).\n";
static const char *USAGE_EVAL =
    "usage: magna eval MODEL_FILE --weights FILE [--seed N] [--threads N] [--set SECTION.KEY=VALUE]...\n"
    "Loads the weights into the model the file describes and evaluates it on the test split\n"
    "(the same split as training: same file, same seed); a text model on its validation windows, with the\n"
    "tokenizer the weights hold; seq2seq by exact match on the held-out numbers. The last line is key=value\n"
    "results.\n";
static const char *USAGE_SUMMARY = "usage: magna summary MODEL_FILE [--set SECTION.KEY=VALUE]...\n"
                                   "Checks the model file, builds the model and prints its layers, shapes and "
                                   "parameter counts\n(without compiling it: nothing of a training step is "
                                   "allocated).\n";

/* Options after the command; `allowed` lists the ones this command takes, as "--epochs --batch ...". */
bool parse_options(int argc, char **argv, const char *cmd, const char *allowed, options *o) {
    *o = (options){.epochs = -1, .batch = -1, .seed = -1, .threads = -1, .lr = -1, .save_every = -1, .keep = -1,
                   .steps = -1, .length = 200, .temperature = 0.8, .top_p = 1};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = true;
            return true;
        }
        if (a[0] != '-') {
            if (o->model_file) return cli_fail("magna %s: one model file only ('%s' and '%s')", cmd, o->model_file, a);
            o->model_file = a;
            continue;
        }
        char flag[32];
        snprintf(flag, sizeof flag, "%s", a);
        const char *p = strstr(allowed, flag);
        if (strncmp(a, "--", 2) != 0 || !p || (p[strlen(flag)] != ' ' && p[strlen(flag)] != 0))
            return cli_fail("magna %s: unknown option '%s' (see magna %s --help)", cmd, a, cmd);
        if (strcmp(a, "--dist") == 0 || strcmp(a, "--zero1") == 0 || strcmp(a, "--fp32") == 0 ||
            strcmp(a, "--bf16") == 0) { /* the flags without a value */
            *(a[2] == 'd' ? &o->dist : a[2] == 'z' ? &o->zero1 : a[2] == 'f' ? &o->fp32 : &o->bf16) = true;
            continue;
        }
        if (i + 1 >= argc) return cli_fail("magna %s: %s needs a value", cmd, a);
        const char *v = argv[++i];
        int64_t n = 0;
        double x = 0;
        if (strcmp(a, "--out") == 0) o->out = v;
        else if (strcmp(a, "--weights") == 0) o->weights = v;
        else if (strcmp(a, "--resume") == 0) o->resume = v;
        else if (strcmp(a, "--input") == 0) o->input = v;
        else if (strcmp(a, "--output") == 0) o->output = v;
        else if (strcmp(a, "--prompt") == 0) o->prompt = v;
        else if (strcmp(a, "--device") == 0) o->device = v;
        else if (strcmp(a, "--log-steps") == 0) o->log_steps = v;
        else if (strcmp(a, "--set") == 0) {
            if (o->nsets == MAX_SETS) return cli_fail("magna %s: more than %d --set options", cmd, MAX_SETS);
            o->sets[o->nsets++] = v;
        }
        else if (strcmp(a, "--lr") == 0) {
            if (!parse_double(v, &x) || x <= 0) return cli_fail("magna %s: --lr: '%s' is not a number > 0", cmd, v);
            o->lr = x;
        } else if (strcmp(a, "--timeout") == 0) {
            if (!parse_double(v, &x) || !(x > 0))
                return cli_fail("magna %s: --timeout: '%s' is not a number of seconds > 0", cmd, v);
            o->timeout = x;
        } else if (strcmp(a, "--temperature") == 0) {
            if (!parse_double(v, &x) || x < 0 || x > 1e6)
                return cli_fail("magna %s: --temperature: '%s' is not a number >= 0 (0: greedy)", cmd, v);
            o->temperature = x;
        } else if (strcmp(a, "--top-p") == 0) {
            if (!parse_double(v, &x) || x <= 0 || x > 1)
                return cli_fail("magna %s: --top-p: '%s' is not a number in (0, 1]", cmd, v);
            o->top_p = x;
        } else if (strcmp(a, "--beam") == 0) {
            if (!parse_int(v, &n) || n < 1 || n > 64) return cli_fail("magna %s: --beam: '%s' is not in 1..64", cmd, v);
            o->beam = n;
        } else {
            const bool big = strcmp(a, "--seed") == 0 || strcmp(a, "--steps") == 0 || strcmp(a, "--save-every") == 0;
            if (!parse_int(v, &n) || n < (strcmp(a, "--seed") == 0 ? 0 : 1) || (!big && n > (1 << 24)))
                return cli_fail("magna %s: %s: '%s' is not a whole number in range", cmd, a, v);
            if (strcmp(a, "--epochs") == 0) o->epochs = n;
            else if (strcmp(a, "--length") == 0) o->length = n;
            else if (strcmp(a, "--top-k") == 0) o->top_k = n;
            else if (strcmp(a, "--save-every") == 0) o->save_every = n;
            else if (strcmp(a, "--keep") == 0) o->keep = n;
            else if (strcmp(a, "--steps") == 0) o->steps = n;
            else if (strcmp(a, "--batch") == 0) o->batch = n;
            else if (strcmp(a, "--seed") == 0) o->seed = n;
            else o->threads = n;
        }
    }
    if (!o->model_file && !o->resume) return cli_fail("magna %s: no model file (see magna %s --help)", cmd, cmd);
    return true;
}

bool apply_options(const options *o, config *cf) {
    if (o->epochs > 0 && (cf->kind == DATA_TEXT || cf->kind == DATA_NUMBERS))
        return cli_fail("magna: --epochs: %s trains by steps ([train] steps; --steps N stops at step N)", cf->path);
    if (o->epochs > 0) cf->epochs = o->epochs;
    if (o->batch > 0) cf->batch = o->batch;
    if (o->lr > 0) cf->compile.optimizer.lr = (float)o->lr;
    if (o->seed >= 0) cf->seed = cf->data_seed = (uint64_t)o->seed;
    if (o->threads > 0) magna_set_threads((int)o->threads);
    if (o->device) { /* checked by cmd_train before any data is read */
        magna_error err;
        if (magna_device_parse(o->device, &cf->compile.device, &err) != MAGNA_OK)
            return cli_fail("magna: --device: %s", err.message);
    }
    if (o->fp32 && o->bf16) return cli_fail("magna: --fp32 and --bf16: choose one");
    cf->compile.fp32 = o->fp32, cf->compile.bf16 = o->bf16;
    return true;
}

/* A whole file as a string (malloc'd), or NULL with the error set. */
static char *file_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return cli_fail("%s: cannot open: %s", path, strerror(errno)), NULL;
    char *text = NULL;
    size_t len = 0;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && (text = malloc((size_t)n + 1)) && fseek(f, 0, SEEK_SET) == 0) len = fread(text, 1, (size_t)n, f);
    if (text) text[len] = '\0';
    else cli_fail("%s: cannot read: %s", path, n < 0 ? strerror(errno) : "out of memory");
    fclose(f);
    return text;
}

/* Reads the model file `name` (or `text`, a checkpoint's copy of it) with the --set overrides applied into cf;
 * the text it read (overrides applied: what checkpoints keep) into *used when not NULL (malloc'd). */
bool read_config(const options *o, const char *name, const char *text, config *cf, char **used) {
    static char named[4400]; /* cf keeps the name it was read under, for its messages */
    char *t = text ? strdup(text) : file_text(name);
    if (!t) return text ? cli_fail("out of memory") : false;
    if (o->nsets > 0) {
        char *overridden = config_override(t, o->sets, o->nsets);
        free(t);
        if (!(t = overridden)) return false;
        snprintf(named, sizeof named, "%s (with --set)", name);
        name = named;
    }
    const bool ok = config_read_text(name, t, cf);
    if (ok && used) *used = t;
    else free(t);
    return ok;
}

bool load_config(const options *o, config *cf) {
    if (!read_config(o, o->model_file, NULL, cf, NULL)) return false;
    if (apply_options(o, cf)) return true;
    config_free(cf);
    return false;
}

/* A text model's tokenizer from the metadata of its weights (model.safetensors or a checkpoint, file or
 * folder): malloc'd text, or NULL with the error set. */
char *weights_tokenizer(const char *weights) {
    char file[4200];
    magna_error err;
    magna_st_metadata md;
    if (magna_checkpoint_find(weights, file, sizeof file, &err) != MAGNA_OK ||
        magna_read_safetensors_metadata(file, &md, &err) != MAGNA_OK) {
        cli_fail("%s", err.message);
        return NULL;
    }
    const char *t = magna_st_metadata_get(&md, "tokenizer");
    char *text = t ? strdup(t) : NULL;
    if (!t) cli_fail("%s: no tokenizer in its metadata (weights of a text model are written by magna train)", file);
    else if (!text) cli_fail("out of memory");
    magna_st_metadata_free(&md);
    return text;
}

static int cmd_summary(int argc, char **argv) {
    options o;
    if (!parse_options(argc, argv, "summary", "--set", &o)) return EXIT_USAGE;
    if (o.help) return fputs(USAGE_SUMMARY, stdout), 0;
    config cf;
    if (!read_config(&o, o.model_file, NULL, &cf, NULL)) return EXIT_USAGE;
    data d = {0};
    /* a text model's vocabulary is its tokenizer's, trained on the corpus */
    if (cf.kind == DATA_TEXT && !load_data(&cf, NULL, false, &d)) {
        config_free(&cf);
        return EXIT_RUN;
    }
    magna_model *m = build_model(&cf, d.vocab, cf.batch, false);
    int rc = EXIT_RUN;
    if (m) {
        if (cf.kind == DATA_TEXT) printf("%s\n", d.desc);
        if (cf.kind == DATA_TEXT || cf.kind == DATA_NUMBERS)
            printf("%s: %s model; %s, batch %lld, %lld steps\n", o.model_file, MODEL_KINDS[cf.model],
                   LOSSES[cf.compile.loss], (long long)cf.batch, (long long)cf.steps);
        else
            printf("%s: %d layers; %s, batch %lld, %lld epochs\n", o.model_file, cf.nlayers, LOSSES[cf.compile.loss],
                   (long long)cf.batch, (long long)cf.epochs);
        magna_model_summary(m, stdout);
        magna_model_free(m);
        rc = 0;
    }
    data_free(&d);
    config_free(&cf);
    return rc;
}

/* The signal that asked `magna train` to stop (0: none); fit finishes its step and saves a checkpoint. */
static volatile sig_atomic_t stop_signal;
static void on_stop_signal(int sig) { stop_signal = sig; }

/* The settings a resumed run must keep: the model file's, as the first run's flags overrode them. */
static void run_settings(const config *cf, const char *out, char *buf, size_t n) {
    snprintf(buf, n, "epochs=%lld batch=%lld lr=%.9g seed=%llu data_seed=%llu out=%s", (long long)cf->epochs,
             (long long)cf->batch, (double)cf->compile.optimizer.lr, (unsigned long long)cf->seed,
             (unsigned long long)cf->data_seed, out);
}
static bool apply_run_settings(const char *s, config *cf, char *out, size_t n) {
    long long epochs, batch;
    unsigned long long seed, data_seed;
    double lr;
    int at = 0;
    if (!s || sscanf(s, "epochs=%lld batch=%lld lr=%lf seed=%llu data_seed=%llu out=%n", &epochs, &batch, &lr, &seed,
                     &data_seed, &at) != 5 || at == 0)
        return false;
    cf->epochs = epochs, cf->batch = batch, cf->compile.optimizer.lr = (float)lr;
    cf->seed = seed, cf->data_seed = data_seed;
    snprintf(out, n, "%s", s + at);
    return true;
}

/* Every step's time and loss, from fit's on_step: --log-steps FILE gets "step,loss,ms" lines (a loss curve to
 * compare across devices), and the results line the median step time. */
typedef struct step_times {
    FILE *f;
    double last;   /* when the step before ended (or fit started) */
    double *ms;    /* each step's milliseconds */
    int64_t n, cap;
    double loss;   /* the last step's */
    bool failed;   /* out of memory: no median */
} step_times;

static void on_step(magna_model *m, int64_t step, double loss, void *user) {
    (void)m;
    step_times *st = user;
    const double t = now(), ms = 1e3 * (t - st->last);
    st->last = t, st->loss = loss;
    if (st->f) fprintf(st->f, "%lld,%.6g,%.3f\n", (long long)step, loss, ms);
    if (st->n == st->cap) {
        const int64_t cap = st->cap ? 2 * st->cap : 256;
        double *p = realloc(st->ms, (size_t)cap * sizeof *p);
        if (!p) {
            st->failed = true;
            return;
        }
        st->ms = p, st->cap = cap;
    }
    st->ms[st->n++] = ms;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median step time after warm-up (the first tenth of the steps, at least one when there are two), in ms;
 * 0 when no step was timed. */
static double median_step_ms(step_times *st) {
    if (st->failed || st->n == 0) return 0;
    int64_t skip = (st->n + 9) / 10;
    if (st->n == 1) skip = 0;
    const int64_t n = st->n - skip;
    qsort(st->ms + skip, (size_t)n, sizeof *st->ms, cmp_double);
    return n % 2 ? st->ms[skip + n / 2] : 0.5 * (st->ms[skip + n / 2 - 1] + st->ms[skip + n / 2]);
}

/* The end of a language model's training: the validation loss (text) or the exact match of greedy and
 * beam-search decoding on the held-out numbers, and the training speed in tokens a second. */
static int lm_results(const config *cf, data *d, magna_model *m, const magna_history *h, int64_t steps,
                      double seconds, const step_times *times, double step_ms, double bigram_val, const char *ckpt,
                      const char *out) {
    const magna_epoch_log *last = h->count ? &h->epochs[h->count - 1] : NULL;
    char train_loss[64] = "";
    if (last) snprintf(train_loss, sizeof train_loss, " train_loss=%.4f", last->train.loss);
    if (h->interrupted)
        printf("stopped at step %lld (--steps): checkpoint %s\n", (long long)magna_model_step(m),
               magna_model_last_checkpoint(m));
    else
        printf("wrote %s, %s/checkpoints and %s/logs\n", ckpt, out, out);
    const double step_tokens = (double)cf->batch * (double)cf->context;
    if (cf->random_tokens) { /* nothing to validate: the speed, and the loss going down from ln(vocab) */
        printf("train_loss=%.4f uniform_loss=%.4f tokens_per_s=%.0f step_ms_median=%.3f tokens_per_s_median=%.0f "
               "step=%lld vocab=%lld batch=%lld context=%lld seed=%llu threads=%d seconds=%.3f out=%s\n",
               times->n ? times->loss : (double)NAN, log((double)d->vocab),
               seconds > 0 ? (double)steps * step_tokens / seconds : 0.0, step_ms,
               step_ms > 0 ? step_tokens / (1e-3 * step_ms) : 0.0, (long long)magna_model_step(m), (long long)d->vocab,
               (long long)cf->batch, (long long)cf->context, (unsigned long long)cf->seed, magna_get_threads(), seconds,
               out);
        return 0;
    }
    if (cf->kind == DATA_TEXT) {
        const double tokens = (double)steps * step_tokens;
        magna_scores s = last && last->has_val && !h->interrupted ? last->val : (magna_scores){0};
        if (!(last && last->has_val && !h->interrupted) && magna_model_evaluate(m, &d->val, &s) != MAGNA_OK)
            return cli_fail("%s: %s", cf->path, magna_model_errmsg(m)), EXIT_RUN;
        printf("val_loss=%.4f bigram_val_loss=%.4f%s tokens_per_s=%.0f step_ms_median=%.3f step=%lld vocab=%lld "
               "val_windows=%lld seed=%llu threads=%d seconds=%.3f out=%s\n",
               s.loss, bigram_val, train_loss, seconds > 0 ? tokens / seconds : 0.0, step_ms,
               (long long)magna_model_step(m),
               (long long)d->vocab, (long long)d->val.rows, (unsigned long long)cf->seed, magna_get_threads(), seconds,
               out);
        return 0;
    }
    const magna_numbers *test = &d->numbers[1];
    int *greedy = malloc((size_t)test->rows * sizeof *greedy), *beam = malloc((size_t)test->rows * sizeof *beam);
    magna_scores s;
    int64_t g = -1, b = -1;
    if (!greedy || !beam) cli_fail("out of memory");
    else if (magna_model_evaluate(m, &d->test, &s) != MAGNA_OK || (g = magna_numbers_decode(m, test, 1, greedy)) < 0 ||
             (b = magna_numbers_decode(m, test, (int)cf->beam, beam)) < 0)
        cli_fail("%s: %s", cf->path, magna_model_errmsg(m));
    else {
        char words[160];
        for (int64_t r = 0; r < 4 && r < test->rows; r++) {
            magna_number_words(test->number[r], words);
            printf("  %-60s -> %d%s\n", words, beam[r], beam[r] == test->number[r] ? "" : " (wrong)");
        }
        const double tokens = (double)steps * (double)cf->batch * (MAGNA_NUMBERS_SRC_LEN + MAGNA_NUMBERS_TGT_LEN);
        printf("exact_match=%.4f greedy_exact_match=%.4f test_loss=%.4f%s tokens_per_s=%.0f step=%lld beam=%lld "
               "test=%lld seed=%llu threads=%d seconds=%.3f out=%s\n",
               (double)b / (double)test->rows, (double)g / (double)test->rows, s.loss, train_loss,
               seconds > 0 ? tokens / seconds : 0.0, (long long)magna_model_step(m), (long long)cf->beam,
               (long long)test->rows, (unsigned long long)cf->seed, magna_get_threads(), seconds, out);
    }
    free(greedy), free(beam);
    return b >= 0 ? 0 : EXIT_RUN;
}

/* Data parallel when an MPI launcher started this process (or --dist): rank 0 alone prints; unless told,
 * each rank runs as many threads as it has cores to itself (ranks sharing cores with busy-waiting OpenMP
 * threads ran 6x slower, DESIGN.md 3). */
static bool start_dist(const options *o, magna_dist **out) {
    *out = NULL;
    if (!o->dist && !o->zero1 && !magna_dist_launched()) return true;
    magna_error err;
    magna_dist *d = magna_dist_init(&(magna_dist_opts){.timeout = o->timeout, .zero1 = o->zero1}, &err);
    if (!d) return cli_fail("magna train: %s", err.message);
    if (magna_dist_rank(d) != 0 && !freopen("/dev/null", "w", stdout)) {
        magna_dist_finalize(d);
        return cli_fail("magna train: cannot silence rank %d's output", magna_dist_rank(d));
    }
    if (o->threads <= 0 && !getenv("MAGNA_THREADS") && !getenv("OMP_NUM_THREADS")) {
        cpu_set_t set;
        const long online = sysconf(_SC_NPROCESSORS_ONLN);
        const int mine = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
        /* bound by the launcher (fewer cores than the machine's): those are ours; else a share of the machine */
        const int threads = mine < online ? mine : mine / magna_dist_local_size();
        magna_set_threads(threads > 0 ? threads : 1);
    }
    *out = d;
    return true;
}

static int cmd_train_run(const options *o, magna_dist *dist);

static int cmd_train(int argc, char **argv) {
    options o;
    if (!parse_options(argc, argv, "train", "--set --log-steps "
                       "--epochs --batch --lr --seed --threads --out --resume --save-every --keep --steps --dist "
                       "--zero1 --timeout --device --fp32 --bf16",
                       &o))
        return EXIT_USAGE;
    if (o.help) return fputs(USAGE_TRAIN, stdout), 0;
    if (o.device) { /* before any data is read: asking for a device that cannot run is a one-line error */
        magna_device device;
        magna_error err;
        if (magna_device_parse(o.device, &device, &err) != MAGNA_OK)
            return cli_fail("magna train: --device: %s", err.message), EXIT_USAGE;
        if (magna_device_check(device, &err) != MAGNA_OK)
            return cli_fail("magna train: --device %s: %s", o.device, err.message), EXIT_RUN;
    }
    magna_dist *dist;
    if (!start_dist(&o, &dist)) return EXIT_RUN;
    const int rc = cmd_train_run(&o, dist);
    if (rc != 0 && magna_dist_size(dist) > 1) {
        /* a failure on this rank would leave the others waiting: end the job */
        if (rc == EXIT_RUN || rc == EXIT_USAGE) {
            fprintf(stderr, "%s\n", cli_error[0] ? cli_error : "magna: failed");
            magna_dist_abort(dist, rc, NULL);
        }
        /* a signal stopped every rank at the same step: rank 0 says where its checkpoint is, before the final
         * barrier (mpirun ends the other ranks as soon as one exits non-zero) */
        if (magna_dist_rank(dist) == 0) fprintf(stderr, "%s\n", cli_error);
        fflush(stderr);
        magna_dist_finalize(dist);
        exit(rc);
    }
    magna_dist_finalize(dist);
    return rc;
}

static int cmd_train_run(const options *op, magna_dist *dist) {
    options o = *op;
    if (o.help) return fputs(USAGE_TRAIN, stdout), 0;
    if (!o.model_file && !o.resume)
        return cli_fail("magna train: no model file (see magna train --help)"), EXIT_USAGE;
    /* resuming: the checkpoint holds the model file's text and the first run's settings */
    char resume_path[4200] = "", resume_name[4300], out[4096] = "", saved_out[4096] = "";
    magna_st_metadata md = {0};
    if (o.resume) {
        magna_error err;
        if (magna_checkpoint_find(o.resume, resume_path, sizeof resume_path, &err) != MAGNA_OK ||
            magna_read_safetensors_metadata(resume_path, &md, &err) != MAGNA_OK)
            return cli_fail("magna train --resume: %s", err.message), EXIT_RUN;
        if (!magna_st_metadata_get(&md, "model_file") || !magna_st_metadata_get(&md, "run")) {
            magna_st_metadata_free(&md);
            return cli_fail("magna train --resume: %s was not written by magna train (no model file in its metadata)",
                            resume_path),
                   EXIT_RUN;
        }
    }
    config cf;
    snprintf(resume_name, sizeof resume_name, "%s (model file)", resume_path);
    const bool from_ckpt = o.resume && !o.model_file;
    /* the model file's text (--set applied) goes into every checkpoint */
    char *text = NULL;
    if (!read_config(&o, from_ckpt ? resume_name : o.model_file,
                     from_ckpt ? magna_st_metadata_get(&md, "model_file") : NULL, &cf, &text)) {
        magna_st_metadata_free(&md);
        return EXIT_USAGE;
    }
    if (o.resume && !apply_run_settings(magna_st_metadata_get(&md, "run"), &cf, saved_out, sizeof saved_out)) {
        magna_st_metadata_free(&md);
        config_free(&cf);
        free(text);
        return cli_fail("magna train --resume: %s: metadata 'run' is malformed", resume_path), EXIT_RUN;
    }
    if (!apply_options(&o, &cf)) {
        magna_st_metadata_free(&md);
        config_free(&cf);
        free(text);
        return EXIT_USAGE;
    }
    if (o.out) snprintf(out, sizeof out, "%s", o.out);
    else if (o.resume) snprintf(out, sizeof out, "%s", saved_out);
    else {
        const char *base = strrchr(o.model_file, '/');
        base = base ? base + 1 : o.model_file;
        int len = (int)strlen(base);
        const char *dot = strrchr(base, '.');
        if (dot && dot != base) len = (int)(dot - base);
        snprintf(out, sizeof out, "runs/%.*s", len, base);
    }
    char ckpt[4200], logs[4200], ckdir[4200], settings[4400];
    snprintf(ckpt, sizeof ckpt, "%s/model.safetensors", out);
    snprintf(logs, sizeof logs, "%s/logs", out);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", out);
    run_settings(&cf, out, settings, sizeof settings);
    /* a resumed text model keeps its tokenizer (the same one, whatever the corpus's copy would train) */
    const char *saved_tok = o.resume ? magna_st_metadata_get(&md, "tokenizer") : NULL;
    char *tok_text = saved_tok ? strdup(saved_tok) : NULL;
    const bool tok_lost = saved_tok && !tok_text;
    magna_st_metadata_free(&md);
    if (tok_lost) {
        free(text);
        config_free(&cf);
        return cli_fail("out of memory"), EXIT_RUN;
    }
    printf("%s\n", magna_runtime_info());
    data d;
    if (!load_data(&cf, tok_text, true, &d)) {
        free(text), free(tok_text);
        config_free(&cf);
        return EXIT_RUN;
    }
    free(tok_text), tok_text = NULL;
    magna_error terr;
    if (d.tok && magna_tokenizer_to_string(d.tok, &tok_text, &terr) != MAGNA_OK) {
        free(text);
        data_free(&d);
        config_free(&cf);
        return cli_fail("%s", terr.message), EXIT_RUN;
    }
    printf("%s\n", d.desc);
    const bool lm = cf.kind == DATA_TEXT || cf.kind == DATA_NUMBERS;
    double bigram_val = NAN;
    if (cf.kind == DATA_TEXT && !cf.random_tokens) { /* the baseline every model must beat, on the same split */
        magna_bigram bg;
        if (magna_bigram_fit(&bg, d.ids[0], d.n_ids[0], (int32_t)d.vocab, 0.1, &terr) == MAGNA_OK) {
            if (magna_bigram_loss(&bg, d.ids[1], d.n_ids[1], &bigram_val, &terr) == MAGNA_OK)
                printf("bigram baseline: validation loss %.4f nats/token (uniform: %.4f)\n", bigram_val,
                       log((double)d.vocab));
            magna_bigram_free(&bg);
        }
    }
    int rc = EXIT_RUN;
    magna_model *m = build(&cf, d.vocab, cf.batch);
    magna_history h = {0};
    step_times times = {0};
    if (m && magna_model_set_dist(m, dist) != MAGNA_OK) { /* (every rank meets it: no other waits) */
        cli_fail("magna train: %s", magna_model_errmsg(m));
    } else if (m && o.resume && magna_model_resume(m, resume_path) != MAGNA_OK) {
        cli_fail("magna train: %s", magna_model_errmsg(m));
    } else if (m && (magna_dist_rank(dist) != 0 || make_dirs(out))) {
        if (o.resume) printf("resuming from %s at step %lld\n", resume_path, (long long)magna_model_step(m));
        magna_model_summary(m, stdout);
        fflush(stdout);
        /* SA_RESETHAND: a second Ctrl-C ends the command at once (the checkpoint being written is atomic) */
        struct sigaction sa = {.sa_handler = on_stop_signal, .sa_flags = SA_RESETHAND}, old_int, old_term;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        const double t0 = now();
        /* the training split's standardisation, so a checkpoint alone can prepare new rows (NumPy, other tools) */
        char *names = NULL, *means = NULL, *sds = NULL;
        size_t nn = 0, nm = 0, ns = 0;
        FILE *fn = open_memstream(&names, &nn), *fm = open_memstream(&means, &nm), *fs = open_memstream(&sds, &ns);
        for (int64_t k = 0; fn && fm && fs && k < d.st.count; k++) {
            fprintf(fn, "%s%s", k ? "," : "", d.st.names[k]);
            fprintf(fm, "%s%.17g", k ? " " : "", d.st.mean[k]);
            fprintf(fs, "%s%.17g", k ? " " : "", d.st.std[k]);
        }
        if (fn) fclose(fn);
        if (fm) fclose(fm);
        if (fs) fclose(fs);
        const bool stats = d.st.count > 0 && names && means && sds;
        const char *const meta_stats[] = {"model_file", text, "run", settings, stats ? "standardise_columns" : NULL,
                                          names, "standardise_mean", means, "standardise_std", sds, NULL};
        const char *const meta_text[] = {"model_file", text, "run", settings, "tokenizer", tok_text, NULL};
        const char *const *meta = tok_text ? meta_text : meta_stats;
        /* what the weights file needs to be used alone: the model file and a text model's tokenizer */
        const char *const wmeta[] = {"model_file", text, tok_text ? "tokenizer" : NULL, tok_text, NULL};
        const int64_t step0 = magna_model_step(m);
        magna_fit_opts fo = {.epochs = (int)cf.epochs, .verbose = 1, .patience = (int)cf.patience,
                             .no_shuffle = cf.kind == DATA_TEXT, /* the windows are drawn at random already */
                             .restore_best = true, .checkpoint_path = ckpt, .log_dir = logs,
                             .checkpoint_dir = ckdir, .save_every = o.save_every > 0 ? o.save_every : 0,
                             .save_each_epoch = true, .keep_last = o.keep > 0 ? (int)o.keep : 3,
                             .checkpoint_metadata = meta, .weights_metadata = wmeta,
                             .max_steps = o.steps > 0 ? o.steps : 0, .stop = &stop_signal,
                             .on_step = on_step, .user = &times};
        magna_status st = MAGNA_ERR_IO;
        if (o.log_steps && magna_dist_rank(dist) == 0 && !(times.f = fopen(o.log_steps, "w")))
            cli_fail("magna train: --log-steps %s: cannot create: %s", o.log_steps, strerror(errno));
        else {
            if (times.f) fputs("step,loss,ms\n", times.f);
            times.last = now();
            st = magna_model_fit(m, &d.train, d.has_val ? &d.val : NULL, &fo, &h);
        }
        if (times.f && fclose(times.f) != 0 && st == MAGNA_OK)
            cli_fail("magna train: --log-steps %s: write failed: %s", o.log_steps, strerror(errno)), st = MAGNA_ERR_IO;
        const double step_ms = median_step_ms(&times);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        free(names), free(means), free(sds);
        if (st != MAGNA_OK)
            cli_fail("%s: %s", cf.path, magna_model_errmsg(m));
        else if (h.interrupted && (stop_signal || !(o.steps > 0 && magna_model_step(m) >= o.steps))) {
            /* a signal, here or (data parallel) on another rank: every rank stopped at this step */
            const int sig = stop_signal ? (int)stop_signal : SIGTERM;
            cli_fail("magna train: interrupted by %s%s at step %lld: checkpoint %s (continue with: magna train --resume "
                     "%s)",
                     sig == SIGINT ? "SIGINT" : "SIGTERM", stop_signal ? "" : " on another rank",
                     (long long)magna_model_step(m), magna_model_last_checkpoint(m), ckdir);
            rc = 128 + sig;
        } else if (lm) {
            rc = lm_results(&cf, &d, m, &h, magna_model_step(m) - step0, now() - t0, &times, step_ms, bigram_val, ckpt,
                            out);
        } else {
            const double seconds = now() - t0;
            magna_scores s;
            char kv[512] = "", vkv[512] = "";
            if (d.has_test && magna_model_evaluate(m, &d.test, &s) != MAGNA_OK)
                cli_fail("%s: %s", cf.path, magna_model_errmsg(m));
            else {
                if (d.has_test) scores_kv("test", &s, cf.compile.metrics, kv, sizeof kv);
                else if (h.count) scores_kv("train", &h.epochs[h.count - 1].train, cf.compile.metrics, kv, sizeof kv);
                for (int i = 0; d.has_val && i < h.count; i++) /* " val_loss=... val_acc=...", the best epoch's */
                    if (h.epochs[i].epoch == h.best_epoch) {
                        vkv[0] = ' ';
                        scores_kv("val", &h.epochs[i].val, cf.compile.metrics, vkv + 1, sizeof vkv - 1);
                    }
                if (h.interrupted)
                    printf("stopped at step %lld (--steps): checkpoint %s\n", (long long)magna_model_step(m),
                           magna_model_last_checkpoint(m));
                else
                    printf("wrote %s (epoch %d), %s and %s\n", ckpt, h.best_epoch, ckdir, logs);
                printf("%s%s best_epoch=%d epochs=%d step=%lld seed=%llu threads=%d ranks=%d seconds=%.3f "
                       "step_ms_median=%.3f out=%s\n",
                       kv, vkv, h.best_epoch, h.count ? h.epochs[h.count - 1].epoch : 0,
                       (long long)magna_model_step(m), (unsigned long long)cf.seed, magna_get_threads(),
                       magna_dist_size(dist), seconds, step_ms, out);
                rc = 0;
            }
        }
    }
    free(text), free(tok_text);
    free(times.ms);
    magna_history_free(&h);
    magna_model_free(m);
    data_free(&d);
    config_free(&cf);
    return rc;
}


/* eval of a text model: the validation loss over the sequential windows; of seq2seq: exact match. */
static int eval_lm(const options *o, const config *cf) {
    if (cf->random_tokens)
        return cli_fail("magna eval: %s trains on random tokens: there is nothing to evaluate (its train run reports "
                        "train_loss)",
                        cf->path),
               EXIT_USAGE;
    char *tok = cf->kind == DATA_TEXT ? weights_tokenizer(o->weights) : NULL;
    if (cf->kind == DATA_TEXT && !tok) return EXIT_RUN;
    data d;
    const bool loaded = load_data(cf, tok, false, &d);
    free(tok);
    if (!loaded) return EXIT_RUN;
    magna_model *m = build(cf, d.vocab, cf->batch);
    int rc = EXIT_RUN;
    if (m && load_weights(m, o->weights)) {
        printf("%s\n", d.desc);
        magna_scores s;
        if (cf->kind == DATA_TEXT) {
            if (magna_model_evaluate(m, &d.val, &s) != MAGNA_OK) cli_fail("%s: %s", cf->path, magna_model_errmsg(m));
            else {
                printf("val_loss=%.4f perplexity=%.3f val_windows=%lld vocab=%lld weights=%s\n", s.loss, exp(s.loss),
                       (long long)d.val.rows, (long long)d.vocab, o->weights);
                rc = 0;
            }
        } else {
            const magna_numbers *test = &d.numbers[1];
            int *decoded = malloc((size_t)test->rows * sizeof *decoded);
            int64_t g = -1, b = -1;
            if (!decoded) cli_fail("out of memory");
            else if (magna_model_evaluate(m, &d.test, &s) != MAGNA_OK ||
                     (g = magna_numbers_decode(m, test, 1, decoded)) < 0 ||
                     (b = magna_numbers_decode(m, test, (int)cf->beam, decoded)) < 0)
                cli_fail("%s: %s", cf->path, magna_model_errmsg(m));
            else {
                printf("exact_match=%.4f greedy_exact_match=%.4f test_loss=%.4f beam=%lld test=%lld seed=%llu "
                       "weights=%s\n",
                       (double)b / (double)test->rows, (double)g / (double)test->rows, s.loss, (long long)cf->beam,
                       (long long)test->rows, (unsigned long long)cf->data_seed, o->weights);
                rc = 0;
            }
            free(decoded);
        }
    }
    magna_model_free(m);
    data_free(&d);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    options o;
    if (!parse_options(argc, argv, "eval", "--weights --seed --threads --set", &o)) return EXIT_USAGE;
    if (o.help) return fputs(USAGE_EVAL, stdout), 0;
    if (!o.weights) return cli_fail("magna eval: --weights FILE is required"), EXIT_USAGE;
    config cf;
    if (!load_config(&o, &cf)) return EXIT_USAGE;
    if (cf.kind == DATA_TEXT || cf.kind == DATA_NUMBERS) {
        const int lrc = eval_lm(&o, &cf);
        config_free(&cf);
        return lrc;
    }
    data d;
    if (!load_data(&cf, NULL, false, &d)) {
        config_free(&cf);
        return EXIT_RUN;
    }
    int rc = EXIT_RUN;
    magna_model *m = build(&cf, 0, cf.batch);
    magna_error err;
    if (m) {
        const magna_dataset *set = d.has_test ? &d.test : d.has_val ? &d.val : &d.train;
        const char *name = d.has_test ? "test" : d.has_val ? "val" : "train";
        magna_scores s;
        char kv[512];
        if (magna_load_safetensors(magna_model_graph(m), o.weights, &err) != MAGNA_OK) cli_fail("%s", err.message);
        else if (magna_model_evaluate(m, set, &s) != MAGNA_OK) cli_fail("%s: %s", o.model_file, magna_model_errmsg(m));
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

/* Puts weights into m: a weights file (model.safetensors), or a full-state checkpoint file or folder. */
bool load_weights(magna_model *m, const char *path) {
    char file[4200];
    magna_error err;
    magna_st_metadata md;
    if (magna_checkpoint_find(path, file, sizeof file, &err) != MAGNA_OK ||
        magna_read_safetensors_metadata(file, &md, &err) != MAGNA_OK)
        return cli_fail("%s", err.message);
    const bool full = magna_st_metadata_get(&md, "magna_checkpoint") != NULL;
    magna_st_metadata_free(&md);
    if (full) return magna_model_resume(m, file) == MAGNA_OK || cli_fail("%s", magna_model_errmsg(m));
    return magna_load_safetensors(magna_model_graph(m), file, &err) == MAGNA_OK || cli_fail("%s", err.message);
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
    else if (strcmp(cmd, "predict") == 0) rc = cmd_predict(argc - 2, argv + 2);
    else if (strcmp(cmd, "summary") == 0) rc = cmd_summary(argc - 2, argv + 2);
    else if (strcmp(cmd, "generate") == 0) rc = cmd_generate(argc - 2, argv + 2);
    else {
        cli_fail("magna: unknown command '%s' (expected train, eval, predict, generate, summary, --version or --help)",
                 cmd);
        rc = EXIT_USAGE;
    }
    if (rc != 0) fprintf(stderr, "%s\n", cli_error[0] ? cli_error : "magna: failed");
    return rc;
}
