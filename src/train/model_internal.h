/* model_internal.h — what the model's files share (src/train/model.c: building, fit, evaluate; checkpoint.c:
 * full-state checkpoints and resume): the model itself and where a run stands. */
#ifndef MAGNA_TRAIN_MODEL_INTERNAL_H
#define MAGNA_TRAIN_MODEL_INTERNAL_H

#include "../graph/internal.h"
#include "magna/dist.h"
#include "magna/io.h"
#include "magna/train.h"

struct magna_model {
    magna_graph *g;
    int64_t batch;
    uint64_t seed;
    magna_node *input, *output, *target, *data_loss, *loss, *class_weights; /* input, output, target: [0] */
    magna_node *inputs[MAGNA_MODEL_MAX_IO], *outputs[MAGNA_MODEL_MAX_IO], *targets[MAGNA_MODEL_MAX_IO];
    magna_loss kinds[MAGNA_MODEL_MAX_IO];
    int n_inputs, n_outputs;
    magna_optimizer *opt;
    magna_compile_opts c;
    float base_lr;
    bool compiled;
    int64_t step;
    int64_t classes;  /* SPARSE_CE: the output's last dim */
    int64_t x_size;   /* one sample's input elements */
    int64_t y_size;   /* one sample's target elements (labels per sample for SPARSE_CE) */
    int64_t out_size; /* one sample's output elements */
    float *best_params, *best_states;
    struct run_state *resume;      /* the position fit continues from, set by magna_model_resume */
    magna_st_metadata resume_md;   /* that checkpoint's metadata */
    char last_checkpoint[4200];
    magna_dist *dist;      /* data parallel over these ranks (NULL: one process) */
    float *full_state[2];  /* ZeRO 1: the optimizer state gathered on rank 0 while a checkpoint is written */
    char errmsg[1024];
};

/* Running sums for the metrics of one pass over data. */
typedef struct tally {
    double loss_sum, loss_weight, sse, sae, y_sum, y2_sum;
    int64_t values, samples, rows_cls, correct, top_correct;
} tally;

/* Where a run stands between two steps: with the weights, the optimizer and the graph's RNG counter, all that
 * the next step depends on. The shuffle order of an epoch is a function of (seed, epoch_start_step). */
typedef struct run_state {
    int epoch;                /* 1-based, of the whole run */
    int64_t epoch_step;       /* steps done in this epoch */
    bool epoch_done;          /* its end (validation, logs, early stopping) is done too */
    int64_t epoch_start_step; /* the model's step when the epoch began: the shuffle's */
    int64_t run_start_step;   /* the model's step when the run began: the schedule's total counts from it */
    int64_t train_rows, batch;
    float lr;                 /* the last step's, for the epoch's log */
    double best;              /* early stopping: the best monitored value, epochs without improvement */
    int wait, best_epoch;
    bool finished;            /* early stopping ended the run at this epoch's end */
    tally t;                  /* the epoch's running sums so far */
} run_state;

/* The most key/value pairs of metadata a caller may add to a checkpoint or the weights file. */
enum { CKPT_KV = 64 };

/* Sets the model's message; returns st. */
magna_status model_error(magna_model *m, magna_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A full-state checkpoint named `name` in the fit options' checkpoint folder; the next step-<step> one there
 * (keeping the last K). checkpoint.c. */
magna_status model_save_state(magna_model *m, const magna_fit_opts *o, const run_state *rs, const char *name);
magna_status model_save_step_checkpoint(magna_model *m, const magna_fit_opts *o, const run_state *rs);

#endif
