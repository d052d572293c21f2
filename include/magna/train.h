/* magna/train.h — models and the training loop: compile, fit, evaluate, predict, as in Keras.
 *
 *   magna_model *m = magna_model_new(42, 32);                       // seed, batch size
 *   magna_model_input(m, "x", MAGNA_F32, 1, (int64_t[]){13});        // one sample's shape
 *   magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(64, MAGNA_ACT_RELU), MAGNA_DENSE(1, 0)}, 2);
 *   magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_MSE,
 *                                                .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-3f},
 *                                                .metrics = MAGNA_METRIC_RMSE});
 *   magna_model_fit(m, &train, NULL, &(magna_fit_opts){.epochs = 200, .validation_split = 0.1f}, &history);
 *   magna_model_evaluate(m, &test, &scores);
 *
 * A functional model is built on the model's graph with the layer functions of magna/nn.h (several
 * inputs, residual connections), then handed over with magna_model_set_output. The batch size is fixed
 * when the model is made (the graph is static); a shorter last batch runs on the same plan. */
#ifndef MAGNA_TRAIN_H
#define MAGNA_TRAIN_H

#include <signal.h>
#include <stdio.h>

#include "cuda.h"
#include "nn.h"
#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct magna_model magna_model;

/* A functional model may have up to this many inputs and outputs. */
#define MAGNA_MODEL_MAX_IO 8

typedef enum magna_loss {
    MAGNA_LOSS_MSE = 0,    /* float targets shaped like the output */
    MAGNA_LOSS_MAE,        /* float targets shaped like the output */
    MAGNA_LOSS_SPARSE_CE,  /* output: logits [..., classes]; targets: int32 class indices [...] */
    MAGNA_LOSS_BCE,        /* output: logits; targets: floats in [0, 1] shaped like the output */
} magna_loss;

enum {
    MAGNA_METRIC_MSE = 1u << 0,
    MAGNA_METRIC_RMSE = 1u << 1,
    MAGNA_METRIC_MAE = 1u << 2,
    MAGNA_METRIC_R2 = 1u << 3,
    MAGNA_METRIC_ACCURACY = 1u << 4,
    MAGNA_METRIC_TOP_K = 1u << 5, /* top_k of magna_compile_opts, default 5 */
};

typedef struct magna_compile_opts {
    magna_loss loss;
    magna_optimizer_opts optimizer;
    magna_schedule schedule;    /* zero value: constant learning rate */
    float l2;                   /* lambda/2 ||W||^2 added to the loss for every weight (>= 2 dims) that has no
                                 * lambda of its own (magna_param_set_l2, a layer's .l2) */
    float clip_norm;            /* > 0: clip the gradients to this global L2 norm before each update */
    unsigned metrics;           /* MAGNA_METRIC_* */
    int top_k;
    const float *class_weights; /* SPARSE_CE: one weight per class (Keras's class_weight), or NULL */
    /* Several outputs: output k's loss is output_losses[k] when output_losses is set (else `loss`), weighted
     * by loss_weights[k] (else 1) in the total. Metrics are reported for output 0. */
    const magna_loss *output_losses;
    const float *loss_weights;
    /* Where it trains: MAGNA_DEVICE_CPU (the zero value) or MAGNA_DEVICE_CUDA (magna/cuda.h), and in which
     * precision (magna_graph_set_bf16): bf16 mixed precision is the default on CUDA (fp32 turns it off) and
     * asked for on the CPU (bf16: oneDNN's convolutions, on CPUs with avx512_bf16). */
    magna_device device;
    bool fp32, bf16;
} magna_compile_opts;

/* Rows of data, each row one sample laid out as the input's sample shape (row-major). Targets: `y` for
 * float losses (one row per sample, the output's sample shape), `labels` for SPARSE_CE. x_i32 replaces
 * x for int32 inputs (token ids). A model with several inputs or outputs takes inputs 1.. and the
 * targets of outputs 1.. from the more_ arrays, in the order they were declared. */
typedef struct magna_dataset {
    int64_t rows;
    const float *x;
    const int32_t *x_i32;
    const float *y;
    const int32_t *labels;
    const float *more_x[MAGNA_MODEL_MAX_IO - 1];
    const int32_t *more_x_i32[MAGNA_MODEL_MAX_IO - 1];
    const float *more_y[MAGNA_MODEL_MAX_IO - 1];
    const int32_t *more_labels[MAGNA_MODEL_MAX_IO - 1];
} magna_dataset;

typedef struct magna_scores {
    double loss; /* the data loss (without the L2 term), mean over samples */
    double mse, rmse, mae, r2, accuracy, top_k;
    int64_t samples;
} magna_scores;

/* One epoch's line of history. */
typedef struct magna_epoch_log {
    int epoch;
    float lr;
    double seconds;
    magna_scores train, val;
    bool has_val;
} magna_epoch_log;

typedef struct magna_history {
    magna_epoch_log *epochs;
    int count, capacity;
    int best_epoch;   /* by the monitored value */
    bool stopped_early;
    bool interrupted; /* fit stopped at the end of a step: *stop was set, or max_steps was reached */
} magna_history;

void magna_history_free(magna_history *h);

/* Called after every epoch; return false to stop training. */
typedef bool (*magna_epoch_callback)(magna_model *m, const magna_epoch_log *log, void *user);
/* Called after every optimizer step (the model's step count, already advanced, and the step's mean loss over
 * this process's rows): a per-step loss curve, or step times (the loss is read back from the device, so
 * the step has finished when it is called). */
typedef void (*magna_step_callback)(magna_model *m, int64_t step, double loss, void *user);

typedef struct magna_fit_opts {
    int epochs;
    float validation_split; /* the last fraction of the training rows, taken before shuffling, as Keras */
    bool no_shuffle;
    int verbose;            /* 0 silent; 1 a progress bar on a terminal, one line per epoch otherwise */
    /* early stopping on val_loss (or loss without validation data) */
    int patience;           /* 0: off */
    float min_delta;
    bool restore_best;      /* put back the weights of the best epoch at the end */
    /* When set, the graph's params and states are saved here (safetensors, atomically; metadata "epoch" and
     * "val_loss" or "loss", and weights_metadata) each time the monitored value improves. A failed save stops
     * fit with its error. */
    const char *checkpoint_path;
    const char *const *weights_metadata; /* NULL-terminated key, value pairs (e.g. a tokenizer), or NULL */
    /* When set, a training log directory (created if needed; magna_train_log in magna/io.h): per epoch the
     * TensorBoard scalars "lr", "train/loss", "val/loss" and "train/<metric>", "val/<metric>", a line of
     * log.csv and a fresh curves.svg. A failed write stops fit with its error. */
    const char *log_dir;
    /* Full-state checkpoints, from which magna_model_resume continues exactly: each holds the params and
     * states, the optimizer's moments and step, the epoch and the position in it, the RNG state (seed, the
     * dropout counter, the shuffle order's step), the schedule's run length, early stopping's best value and
     * patience, the best weights kept for restore_best, and checkpoint_metadata. Safetensors, written
     * atomically into checkpoint_dir (created if needed) as step-<step>.safetensors; the last keep_last of
     * those are kept (0: 3), and best.safetensors is rewritten whenever the monitored value improves. */
    const char *checkpoint_dir;
    int64_t save_every;                     /* a checkpoint every this many optimizer steps (0: none by count) */
    bool save_each_epoch;                   /* a checkpoint at the end of every epoch */
    int keep_last;
    const char *const *checkpoint_metadata; /* NULL-terminated key, value pairs stored too (e.g. the model file) */
    /* Stopping at the end of a step (mid-epoch too), with a checkpoint there when checkpoint_dir is set: once
     * the model's step reaches max_steps (> 0), or when *stop becomes non-zero (a signal handler's flag).
     * fit then returns MAGNA_OK with history->interrupted set. */
    int64_t max_steps;
    const volatile sig_atomic_t *stop;
    magna_epoch_callback on_epoch_end;
    magna_step_callback on_step;
    void *user; /* both callbacks' */
} magna_fit_opts;

/* The model: a graph built for `batch` rows per step, seeded. NULL only when out of memory. */
magna_model *magna_model_new(uint64_t seed, int64_t batch);
void magna_model_free(magna_model *m);
const char *magna_model_errmsg(const magna_model *m);
magna_graph *magna_model_graph(magna_model *m);
/* The optimizer compile made (NULL before compile). */
magna_optimizer *magna_model_optimizer(magna_model *m);

/* Declares an input; `shape` is one sample's (the batch dimension is added in front). */
magna_node *magna_model_input(magna_model *m, const char *name, magna_dtype dtype, int ndim, const int64_t *shape);
/* Applies the layers to the (single) input and makes the result the output. */
magna_node *magna_model_sequential(magna_model *m, const magna_layer_spec *layers, int count);
/* Makes a node built on magna_model_graph the output (functional models), or several the outputs. */
magna_status magna_model_set_output(magna_model *m, magna_node *output);
magna_status magna_model_set_outputs(magna_model *m, int count, magna_node *const *outputs);
magna_node *magna_model_output(magna_model *m);

magna_status magna_model_compile(magna_model *m, const magna_compile_opts *opts);
/* Layers (params grouped by name prefix), output shapes, parameter counts; once compiled, the planned activation
 * memory (and how many tensors a bf16 CUDA graph keeps in bf16). */
void magna_model_summary(magna_model *m, FILE *out);

magna_status magna_model_fit(magna_model *m, const magna_dataset *train, const magna_dataset *val,
                             const magna_fit_opts *opts, magna_history *history);
magna_status magna_model_evaluate(magna_model *m, const magna_dataset *data, magna_scores *scores);
/* out: rows x (output 0's sample size) floats — logits for the from-logits losses. */
magna_status magna_model_predict(magna_model *m, const magna_dataset *data, float *out);
/* Per-class counts over `data`: confusion[true * classes + predicted] (classes from the output's last dim);
 * and per-class precision, recall and F1 when those pointers are not NULL (arrays of `classes`). */
magna_status magna_model_confusion(magna_model *m, const magna_dataset *data, int64_t *confusion,
                                   double *precision, double *recall, double *f1);
int64_t magna_model_step(const magna_model *m);

/* Loads a full-state checkpoint of fit (magna_fit_opts.checkpoint_dir) into a compiled model of the same
 * architecture and optimizer: `path` is a checkpoint file or a folder (its step-*.safetensors with the highest
 * step). The weights, optimizer and RNG state are in place at once; the next magna_model_fit, given the same
 * data and options (`epochs` counts the whole run's epochs, as at the start), continues the run where it
 * stopped, so 2N steps straight and N, checkpoint, resume, N more give the same weights bit for bit. Every
 * check runs before anything changes: a weights-only file, another optimizer, missing or extra tensors, other
 * shapes or dtypes are MAGNA_ERR_FORMAT naming the file; a run on other data or another batch size is refused
 * by fit. The checkpoint's metadata (checkpoint_metadata included) stays readable until the next resume. */
magna_status magna_model_resume(magna_model *m, const char *path);
/* A value of the last resumed checkpoint's metadata, or NULL. */
const char *magna_model_resume_metadata(const magna_model *m, const char *key);
/* The path of the last checkpoint fit wrote into checkpoint_dir ("" when none). */
const char *magna_model_last_checkpoint(const magna_model *m);
/* The newest step-*.safetensors of a checkpoint folder (or `path` itself when it is a file) into out;
 * MAGNA_ERR_IO when there is none. */
magna_status magna_checkpoint_find(const char *path, char *out, size_t cap, magna_error *err);

#ifdef __cplusplus
}
#endif
#endif
