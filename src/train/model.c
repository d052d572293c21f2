/* model.c — a model is a graph with one input, one output, a target, a loss and an optimizer; fit,
 * evaluate and predict move rows of a dataset through it batch by batch. */
#include "model_internal.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

magna_status model_error(magna_model *m, magna_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->errmsg, sizeof m->errmsg, fmt, ap);
    va_end(ap);
    return st;
}

/* A graph error becomes the model's. */
static magna_status from_graph(magna_model *m, magna_status st) {
    if (st != MAGNA_OK) snprintf(m->errmsg, sizeof m->errmsg, "%s", magna_graph_errmsg(m->g));
    return st;
}

magna_model *magna_model_new(uint64_t seed, int64_t batch) {
    magna_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->g = magna_graph_new(seed);
    if (!m->g) {
        free(m);
        return NULL;
    }
    m->seed = seed;
    m->batch = batch;
    if (batch < 1) graph_error(m->g, MAGNA_ERR_ARG, "model: batch size must be at least 1, got %lld", (long long)batch);
    return m;
}

void magna_model_free(magna_model *m) {
    if (!m) return;
    magna_optimizer_free(m->opt);
    magna_graph_free(m->g);
    free(m->best_params);
    free(m->best_states);
    free(m->resume);
    magna_st_metadata_free(&m->resume_md);
    free(m->full_state[0]), free(m->full_state[1]);
    free(m);
}

const char *magna_model_errmsg(const magna_model *m) {
    if (!m) return "model is NULL";
    return m->errmsg[0] ? m->errmsg : magna_graph_errmsg(m->g);
}
magna_graph *magna_model_graph(magna_model *m) { return m->g; }
magna_optimizer *magna_model_optimizer(magna_model *m) { return m->opt; }
magna_node *magna_model_output(magna_model *m) { return m->output; }
int64_t magna_model_step(const magna_model *m) { return m->step; }

magna_node *magna_model_input(magna_model *m, const char *name, magna_dtype dtype, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim >= MAGNA_MAX_DIMS || (ndim > 0 && !shape)) {
        graph_error(m->g, MAGNA_ERR_SHAPE, "model input '%s': a sample needs 0..%d dims, got %d", name ? name : "",
                    MAGNA_MAX_DIMS - 1, ndim);
        return NULL;
    }
    int64_t full[MAGNA_MAX_DIMS];
    full[0] = m->batch;
    for (int d = 0; d < ndim; d++) full[d + 1] = shape[d];
    if (m->n_inputs == MAGNA_MODEL_MAX_IO) {
        graph_error(m->g, MAGNA_ERR_ARG, "model input '%s': a model takes at most %d inputs", name ? name : "",
                    MAGNA_MODEL_MAX_IO);
        return NULL;
    }
    magna_node *x = magna_input(m->g, name, dtype, ndim + 1, full);
    if (x) m->inputs[m->n_inputs++] = x;
    if (x && !m->input) m->input = x;
    return x;
}

magna_node *magna_model_sequential(magna_model *m, const magna_layer_spec *layers, int count) {
    if (!m->input) {
        graph_error(m->g, MAGNA_ERR_STATE, "sequential: declare the input first (magna_model_input)");
        return NULL;
    }
    magna_node *out = magna_layers_apply(m->g, m->input, layers, count);
    if (out) m->output = m->outputs[0] = out, m->n_outputs = 1;
    return out;
}

magna_status magna_model_set_outputs(magna_model *m, int count, magna_node *const *outs) {
    if (count < 1 || count > MAGNA_MODEL_MAX_IO || !outs)
        return model_error(m, MAGNA_ERR_ARG, "set_outputs: a model has 1 to %d outputs, got %d", MAGNA_MODEL_MAX_IO,
                           count);
    for (int k = 0; k < count; k++)
        if (!outs[k])
            return from_graph(m, magna_graph_status(m->g) != MAGNA_OK ? magna_graph_status(m->g) : MAGNA_ERR_ARG);
    for (int k = 0; k < count; k++) m->outputs[k] = outs[k];
    m->n_outputs = count;
    m->output = outs[0];
    return MAGNA_OK;
}

magna_status magna_model_set_output(magna_model *m, magna_node *out) { return magna_model_set_outputs(m, 1, &out); }

/* The L2 term: sum over weights of lambda/2 ||w||^2, with the global lambda for weights of >= 2 dims
 * that have none of their own. NULL when nothing is penalised. */
static magna_node *l2_penalty(magna_model *m, float global) {
    magna_node *total = NULL;
    for (int i = 0; i < m->g->n_param_nodes; i++) {
        magna_node *p = m->g->param_nodes[i];
        float lambda = p->l2 > 0 ? p->l2 : (p->ndim >= 2 ? global : 0);
        if (!(lambda > 0)) continue;
        magna_node *term = magna_scale(m->g, magna_sum(m->g, magna_mul(m->g, p, p), MAGNA_ALL_AXES, false), lambda / 2);
        total = total ? magna_add(m->g, total, term) : term;
    }
    return total;
}

magna_status magna_model_compile(magna_model *m, const magna_compile_opts *opts) {
    magna_graph *g = m->g;
    if (m->compiled) return model_error(m, MAGNA_ERR_STATE, "compile: the model is already compiled");
    if (magna_graph_status(g) != MAGNA_OK) return from_graph(m, magna_graph_status(g));
    if (!m->input || !m->output)
        return model_error(m, MAGNA_ERR_STATE, "compile: the model needs an input and an output first");
    m->c = *opts;
    for (int k = 0; k < m->n_outputs; k++) {
        magna_node *out = m->outputs[k];
        const magna_loss kind = opts->output_losses ? opts->output_losses[k] : opts->loss;
        char tname[32];
        snprintf(tname, sizeof tname, k ? "target%d" : "target", k);
        magna_node *term = NULL;
        m->kinds[k] = kind;
        switch (kind) {
        case MAGNA_LOSS_MSE:
        case MAGNA_LOSS_MAE:
        case MAGNA_LOSS_BCE:
            m->targets[k] = magna_input(g, tname, MAGNA_F32, out->ndim, out->shape);
            term = kind == MAGNA_LOSS_MSE   ? magna_mse(g, out, m->targets[k])
                   : kind == MAGNA_LOSS_BCE ? magna_bce_with_logits(g, out, m->targets[k])
                                            : magna_mean(g, magna_abs(g, magna_sub(g, out, m->targets[k])),
                                                         MAGNA_ALL_AXES, false);
            break;
        case MAGNA_LOSS_SPARSE_CE:
            if (out->ndim < 2)
                return model_error(m, MAGNA_ERR_SHAPE,
                                   "compile: sparse cross-entropy needs logits [batch, ..., classes] (output %d)", k);
            m->targets[k] = magna_input(g, tname, MAGNA_I32, out->ndim - 1, out->shape);
            if (k == 0) m->classes = out->shape[out->ndim - 1];
            if (opts->class_weights && k == 0) {
                m->class_weights = magna_input_unbatched(g, "class_weights", MAGNA_F32, 1, (int64_t[]){m->classes});
                term = magna_cross_entropy_weighted(g, out, m->targets[k], m->class_weights);
            } else {
                term = magna_cross_entropy(g, out, m->targets[k]);
            }
            break;
        default: return model_error(m, MAGNA_ERR_ARG, "compile: unknown loss %d for output %d", (int)kind, k);
        }
        if (opts->loss_weights && opts->loss_weights[k] != 1.0f) term = magna_scale(g, term, opts->loss_weights[k]);
        m->data_loss = k ? magna_add(g, m->data_loss, term) : term;
    }
    m->target = m->targets[0];
    m->c.loss = m->kinds[0]; /* metrics follow output 0 */
    magna_node *penalty = l2_penalty(m, opts->l2);
    m->loss = penalty ? magna_add(g, m->data_loss, penalty) : m->data_loss;
    for (int k = 0; k < m->n_outputs; k++) magna_graph_keep(g, m->outputs[k]);
    magna_graph_keep(g, m->data_loss);
    magna_status st = MAGNA_OK;
    if (opts->fp32 && opts->bf16) return model_error(m, MAGNA_ERR_ARG, "compile: fp32 and bf16 both asked for");
    if (opts->device == MAGNA_DEVICE_CPU && opts->bf16 && (st = magna_graph_set_bf16(g, true)) != MAGNA_OK)
        return from_graph(m, st);
    if (opts->device != MAGNA_DEVICE_CPU) {
        if ((st = magna_graph_set_device(g, opts->device)) != MAGNA_OK ||
            (!opts->fp32 && (st = magna_graph_set_bf16(g, true)) != MAGNA_OK))
            return from_graph(m, st);
    }
    if ((st = magna_graph_compile(g, m->loss)) != MAGNA_OK) return from_graph(m, st);
    if (m->class_weights) magna_node_set(m->class_weights, opts->class_weights, m->classes);
    magna_error err;
    m->opt = magna_optimizer_new(g, opts->optimizer, &err);
    if (!m->opt) return model_error(m, err.status, "%s", err.message);
    m->base_lr = opts->optimizer.lr;
    m->x_size = m->input->numel / m->batch;
    m->out_size = m->output->numel / m->batch;
    m->y_size = m->target->numel / m->batch;
    m->compiled = true;
    m->errmsg[0] = '\0';
    return MAGNA_OK;
}

/* ---- moving rows ------------------------------------------------------------------------------- */

/* The array of a dataset that feeds input k, or target k (float or int32 as the node wants). */
static const void *input_array(const magna_dataset *d, int k, magna_dtype dtype) {
    if (dtype == MAGNA_I32) return k ? (const void *)d->more_x_i32[k - 1] : (const void *)d->x_i32;
    return k ? (const void *)d->more_x[k - 1] : (const void *)d->x;
}
static const void *target_array(const magna_dataset *d, int k, magna_dtype dtype) {
    if (dtype == MAGNA_I32) return k ? (const void *)d->more_labels[k - 1] : (const void *)d->labels;
    return k ? (const void *)d->more_y[k - 1] : (const void *)d->y;
}

/* CUDA: whether forward brings the outputs back to the host (a training step whose metrics do not read them
 * leaves them on the device: a GPT's logits are most of a step's bytes). */
static void fetch_outputs(magna_model *m, bool fetch) {
    for (int k = 0; k < m->n_outputs; k++) m->outputs[k]->skip_fetch = !fetch;
}

static magna_status check_dataset(magna_model *m, const magna_dataset *d, bool need_targets, const char *what) {
    m->errmsg[0] = '\0'; /* every public call that takes data starts here: no stale message */
    fetch_outputs(m, true);
    if (!m->compiled) return model_error(m, MAGNA_ERR_STATE, "%s: compile the model first", what);
    if (!d || d->rows < 1) return model_error(m, MAGNA_ERR_ARG, "%s: the dataset has no rows", what);
    for (int k = 0; k < m->n_inputs; k++) {
        const bool ids = m->inputs[k]->dtype == MAGNA_I32;
        if (!input_array(d, k, m->inputs[k]->dtype))
            return model_error(m, MAGNA_ERR_ARG, "%s: the dataset has no %s for input %d ('%s', %s)", what,
                               ids ? (k ? "more_x_i32" : "x_i32") : (k ? "more_x" : "x"), k, m->inputs[k]->name,
                               magna_dtype_name(m->inputs[k]->dtype));
    }
    for (int k = 0; need_targets && k < m->n_outputs; k++) {
        const bool ce = m->kinds[k] == MAGNA_LOSS_SPARSE_CE;
        if (!target_array(d, k, m->targets[k]->dtype))
            return model_error(m, MAGNA_ERR_ARG, "%s: the dataset has no %s for output %d", what,
                               ce ? (k ? "more_labels (int32 class indices)" : "labels (int32 class indices)")
                                  : (k ? "more_y (float targets)" : "float targets (y)"),
                               k);
    }
    return MAGNA_OK;
}

/* Copies rows order[from .. from+count) into the input and target nodes, shrinking the batch if needed. */
static void load_rows(magna_model *m, const magna_dataset *d, const int64_t *order, int64_t from, int64_t count,
                      bool targets) {
    magna_graph_set_batch(m->g, count);
    for (int k = 0; k < m->n_inputs + (targets ? m->n_outputs : 0); k++) {
        const bool is_input = k < m->n_inputs;
        const int j = is_input ? k : k - m->n_inputs;
        magna_node *node = is_input ? m->inputs[j] : m->targets[j];
        const char *src = is_input ? input_array(d, j, node->dtype) : target_array(d, j, node->dtype);
        const size_t row_bytes = (size_t)(node->numel / count) * magna_dtype_size(node->dtype);
        char *dst = node_host(node);
        for (int64_t r = 0; r < count; r++) {
            const int64_t row = order ? order[from + r] : from + r;
            memcpy(dst + (size_t)r * row_bytes, src + (size_t)row * row_bytes, row_bytes);
        }
    }
}


/* The batch's loss and, when the outputs came back from the device (always on the CPU), their metrics. */
static void tally_batch(magna_model *m, tally *t, int64_t rows) {
    const float *out = host_f32(m->output);
    const bool have_out = !m->output->skip_fetch;
    t->samples += rows;
    if (m->c.loss == MAGNA_LOSS_SPARSE_CE) {
        const int64_t C = m->classes, n = rows * m->y_size;
        const int k = m->c.top_k > 0 ? m->c.top_k : 5;
        const int32_t *label = host_i32(m->target);
        int64_t counted = 0; /* the batch loss is a mean over the labels that are not padding */
        for (int64_t i = 0; i < n; i++) counted += label[i] != MAGNA_IGNORE_LABEL;
        t->loss_sum += (double)host_f32(m->data_loss)[0] * (double)counted;
        t->loss_weight += (double)counted;
        if (!have_out) return;
        for (int64_t i = 0; i < n; i++) {
            if (label[i] == MAGNA_IGNORE_LABEL) continue;
            const float *z = out + i * C;
            int64_t above = 0; /* classes scoring higher than the true one: its rank */
            for (int64_t j = 0; j < C; j++) above += z[j] > z[label[i]];
            t->correct += above == 0;
            t->top_correct += above < k;
        }
        t->rows_cls += counted;
        return;
    }
    t->loss_sum += (double)host_f32(m->data_loss)[0] * (double)rows;
    t->loss_weight += (double)rows;
    if (!have_out) return;
    const float *y = host_f32(m->target);
    const int64_t n = rows * m->out_size;
    for (int64_t i = 0; i < n; i++) {
        double e = (double)out[i] - y[i];
        t->sse += e * e, t->sae += fabs(e), t->y_sum += y[i], t->y2_sum += (double)y[i] * y[i];
        if (m->c.loss == MAGNA_LOSS_BCE) t->correct += (out[i] > 0) == (y[i] > 0.5f);
    }
    t->values += n;
    if (m->c.loss == MAGNA_LOSS_BCE) t->rows_cls += n;
}

static magna_scores tally_scores(const tally *t) {
    magna_scores s = {0};
    s.samples = t->samples;
    s.loss = t->loss_weight > 0 ? t->loss_sum / t->loss_weight : NAN;
    if (t->values) {
        const double n = (double)t->values, sst = t->y2_sum - t->y_sum * t->y_sum / n;
        s.mse = t->sse / n, s.rmse = sqrt(s.mse), s.mae = t->sae / n;
        s.r2 = sst > 0 ? 1.0 - t->sse / sst : NAN;
    }
    if (t->rows_cls) {
        s.accuracy = (double)t->correct / (double)t->rows_cls;
        s.top_k = (double)t->top_correct / (double)t->rows_cls;
    }
    return s;
}

/* ---- data parallel (magna/dist.h): the hooks fit and evaluate call; all no-ops without a dist ---------- */

magna_status magna_model_set_dist(magna_model *m, magna_dist *d) {
    m->dist = magna_dist_size(d) > 1 ? d : NULL; /* one rank is the plain single-process path */
    return MAGNA_OK;
}

/* This rank's contiguous share of rows [from, from + count): equal parts, the first count % ranks one longer. */
static void dist_share(const magna_model *m, int64_t from, int64_t count, int64_t *lo, int64_t *hi) {
    const int64_t n = magna_dist_size(m->dist), r = magna_dist_rank(m->dist), base = count / n, rem = count % n;
    *lo = from + r * base + (r < rem ? r : rem);
    *hi = *lo + base + (r < rem);
}

/* An error on one rank would leave the others waiting in the next collective: end the job with it. */
static magna_status dist_fail(magna_model *m, magna_status st) {
    if (st != MAGNA_OK && m->dist) magna_dist_abort(m->dist, 1, magna_model_errmsg(m));
    return st;
}

static magna_status dist_error(magna_model *m, const magna_error *err) {
    return model_error(m, err->status, "%s", err->message);
}

/* The sums of every rank's tally, so that rank 0 reports the global loss and metrics. */
static magna_status dist_tally(magna_model *m, tally *t, const char *what) {
    if (!m->dist) return MAGNA_OK;
    double v[] = {t->loss_sum, t->loss_weight, t->sse, t->sae, t->y_sum, t->y2_sum, (double)t->values,
                  (double)t->samples, (double)t->rows_cls, (double)t->correct, (double)t->top_correct};
    magna_error err;
    if (magna_dist_allreduce_sum(m->dist, v, (int)(sizeof v / sizeof v[0]), m->step, what, &err) != MAGNA_OK)
        return dist_error(m, &err);
    *t = (tally){v[0], v[1], v[2], v[3], v[4], v[5], (int64_t)v[6], (int64_t)v[7], (int64_t)v[8], (int64_t)v[9],
                 (int64_t)v[10]};
    return MAGNA_OK;
}

/* Before the first step: the same data and model on every rank, rank 0's weights everywhere, the optimizer
 * sharded (ZeRO 1), and each rank its own dropout stream. */
static magna_status dist_begin_fit(magna_model *m, int64_t rows, bool verbose) {
    magna_error err;
    const int64_t same[] = {rows, m->batch, (int64_t)m->g->n_params, (int64_t)m->g->n_states, (int64_t)m->seed,
                            (int64_t)m->g->device};
    if (magna_dist_check_same(m->dist, same, 6, "fit: training rows, batch, params, states, seed and device", &err) !=
            MAGNA_OK ||
        magna_dist_broadcast_params(m->dist, m->g, m->step, &err) != MAGNA_OK ||
        magna_dist_shard_optimizer(m->dist, m->opt, &err) != MAGNA_OK)
        return dist_error(m, &err);
    const int rank = magna_dist_rank(m->dist);
    m->g->seed = rank ? magna_rand_u64(m->seed, 0xd157ull, (uint64_t)rank) : m->seed;
    if (verbose && rank == 0) magna_dist_describe(m->dist, m->g, m->opt, m->batch, stdout);
    return MAGNA_OK;
}

/* After backward: the mean gradient over the global batch, and `flags` summed over ranks. */
static magna_status dist_reduce_grads(magna_model *m, int64_t rows, double *flags, int n_flags) {
    magna_error err;
    /* weights in batches, not rows: 1 in a full step, where the gradients then need no scaling before the sum */
    const double weight = (double)rows / (double)m->batch;
    if (magna_dist_allreduce_grads(m->dist, m->g, weight, flags, n_flags, m->step, &err) != MAGNA_OK)
        return dist_error(m, &err);
    return MAGNA_OK;
}

/* data parallel: the gradient allreduce may start during backward (magna_dist_backward_begin), with the weight
 * dist_reduce_grads will give */
static magna_status dist_backward_begin(magna_model *m, int64_t rows) {
    magna_error err;
    if (m->dist && magna_dist_backward_begin(m->dist, m->g, (double)rows / (double)m->batch, m->step, &err) != MAGNA_OK)
        return dist_error(m, &err);
    return MAGNA_OK;
}

static magna_status dist_update(magna_model *m) {
    magna_error err;
    if (!m->dist) {
        magna_optimizer_step(m->opt);
        return MAGNA_OK;
    }
    if (magna_dist_optimizer_step(m->dist, m->opt, m->g, m->step, &err) != MAGNA_OK) return dist_error(m, &err);
    return MAGNA_OK;
}

/* At an epoch's end: batch-norm statistics averaged, and a check that every rank holds rank 0's weights. */
static magna_status dist_end_epoch(magna_model *m) {
    magna_error err;
    if (magna_dist_average_states(m->dist, m->g, m->step, &err) != MAGNA_OK) return dist_error(m, &err);
    uint64_t h = 0x9e3779b97f4a7c15ull; /* FNV-style hash of the weights' bits */
    size_t n = 0;
    const float *w = magna_graph_params(m->g, &n); /* on CUDA, the device's weights brought down */
    if (!w) return from_graph(m, magna_graph_status(m->g));
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &w[i], sizeof b);
        h = (h ^ b) * 0x100000001b3ull;
    }
    const int64_t v = (int64_t)h;
    if (magna_dist_check_same(m->dist, &v, 1, "fit: the weights' hash at the end of an epoch", &err) != MAGNA_OK)
        return dist_error(m, &err);
    return MAGNA_OK;
}

magna_status magna_model_evaluate(magna_model *m, const magna_dataset *d, magna_scores *scores) {
    magna_status st = check_dataset(m, d, true, "evaluate");
    if (st != MAGNA_OK) return st;
    const bool was_training = m->g->training;
    magna_graph_set_training(m->g, false);
    tally t = {0};
    int64_t lo, hi; /* data parallel: this rank's contiguous share of the rows, the tallies summed after */
    dist_share(m, 0, d->rows, &lo, &hi);
    for (int64_t from = lo; from < hi && st == MAGNA_OK; from += m->batch) {
        const int64_t count = hi - from < m->batch ? hi - from : m->batch;
        load_rows(m, d, NULL, from, count, true);
        st = magna_graph_forward(m->g);
        if (st == MAGNA_OK) tally_batch(m, &t, count);
    }
    magna_graph_set_training(m->g, was_training);
    if (st != MAGNA_OK) return dist_fail(m, from_graph(m, st));
    if ((st = dist_tally(m, &t, "the allreduce of the evaluation metrics")) != MAGNA_OK) return st;
    if (scores) *scores = tally_scores(&t);
    return MAGNA_OK;
}

magna_status magna_model_predict(magna_model *m, const magna_dataset *d, float *out) {
    magna_status st = check_dataset(m, d, false, "predict");
    if (st != MAGNA_OK) return st;
    if (!out) return model_error(m, MAGNA_ERR_ARG, "predict: out is NULL");
    const bool was_training = m->g->training;
    magna_graph_set_training(m->g, false);
    for (int64_t from = 0; from < d->rows && st == MAGNA_OK; from += m->batch) {
        const int64_t count = d->rows - from < m->batch ? d->rows - from : m->batch;
        load_rows(m, d, NULL, from, count, false);
        /* the loss is not computed here: only the output's ancestors matter, but forward runs the whole
         * plan, so give the target something harmless (class 0, zeros) */
        for (int k = 0; k < m->n_outputs; k++)
            memset(node_host(m->targets[k]), 0, (size_t)m->targets[k]->numel * magna_dtype_size(m->targets[k]->dtype));
        st = magna_graph_forward(m->g);
        if (st == MAGNA_OK) memcpy(out + from * m->out_size, host_f32(m->output), (size_t)(count * m->out_size) * sizeof(float));
    }
    magna_graph_set_training(m->g, was_training);
    return st == MAGNA_OK ? MAGNA_OK : from_graph(m, st);
}

magna_status magna_model_confusion(magna_model *m, const magna_dataset *d, int64_t *confusion, double *precision,
                                   double *recall, double *f1) {
    magna_status st = check_dataset(m, d, true, "confusion");
    if (st != MAGNA_OK) return st;
    if (m->c.loss != MAGNA_LOSS_SPARSE_CE || !confusion)
        return model_error(m, MAGNA_ERR_ARG, "confusion: needs a classifier (sparse cross-entropy) and a matrix");
    const int64_t C = m->classes;
    memset(confusion, 0, (size_t)(C * C) * sizeof *confusion);
    const bool was_training = m->g->training;
    magna_graph_set_training(m->g, false);
    for (int64_t from = 0; from < d->rows && st == MAGNA_OK; from += m->batch) {
        const int64_t count = d->rows - from < m->batch ? d->rows - from : m->batch;
        load_rows(m, d, NULL, from, count, true);
        st = magna_graph_forward(m->g);
        for (int64_t i = 0; st == MAGNA_OK && i < count * m->y_size; i++) {
            const float *z = host_f32(m->output) + i * C;
            int64_t best = 0;
            for (int64_t j = 1; j < C; j++)
                if (z[j] > z[best]) best = j;
            confusion[(int64_t)host_i32(m->target)[i] * C + best]++;
        }
    }
    magna_graph_set_training(m->g, was_training);
    if (st != MAGNA_OK) return from_graph(m, st);
    for (int64_t k = 0; k < C; k++) {
        int64_t tp = confusion[k * C + k], predicted = 0, actual = 0;
        for (int64_t j = 0; j < C; j++) predicted += confusion[j * C + k], actual += confusion[k * C + j];
        double p = predicted ? (double)tp / (double)predicted : 0, r = actual ? (double)tp / (double)actual : 0;
        if (precision) precision[k] = p;
        if (recall) recall[k] = r;
        if (f1) f1[k] = p + r > 0 ? 2 * p * r / (p + r) : 0;
    }
    return MAGNA_OK;
}

/* ---- fit ---------------------------------------------------------------------------------------- */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void print_scores(FILE *f, const magna_model *m, const char *prefix, const magna_scores *s) {
    fprintf(f, " - %sloss: %.4f", prefix, s->loss);
    const unsigned k = m->c.metrics;
    if (k & MAGNA_METRIC_MSE) fprintf(f, " - %smse: %.4f", prefix, s->mse);
    if (k & MAGNA_METRIC_RMSE) fprintf(f, " - %srmse: %.4f", prefix, s->rmse);
    if (k & MAGNA_METRIC_MAE) fprintf(f, " - %smae: %.4f", prefix, s->mae);
    if (k & MAGNA_METRIC_R2) fprintf(f, " - %sr2: %.4f", prefix, s->r2);
    if (k & MAGNA_METRIC_ACCURACY) fprintf(f, " - %saccuracy: %.4f", prefix, s->accuracy);
    if (k & MAGNA_METRIC_TOP_K) fprintf(f, " - %stop%d: %.4f", prefix, m->c.top_k > 0 ? m->c.top_k : 5, s->top_k);
}

/* Keras's bar on a terminal, redrawn in place; nothing per step when the output is a file or a pipe. */
static void progress(FILE *f, int64_t done, int64_t total, double elapsed, double loss) {
    enum { WIDTH = 30 };
    const int filled = (int)(WIDTH * done / total);
    char bar[WIDTH + 1];
    for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '=' : i == filled ? '>' : '.';
    bar[WIDTH] = '\0';
    const double eta = done ? elapsed / (double)done * (double)(total - done) : 0;
    fprintf(f, "\r%5lld/%lld [%s] - ETA: %.0fs - loss: %.4f", (long long)done, (long long)total, bar, eta, loss);
    fflush(f);
}

static magna_status save_best(magna_model *m) {
    size_t np, ns;
    float *p = magna_graph_params(m->g, &np), *s = magna_graph_states(m->g, &ns);
    if (!m->best_params) m->best_params = malloc((np + 1) * sizeof(float));
    if (!m->best_states) m->best_states = malloc((ns + 1) * sizeof(float));
    if (!m->best_params || !m->best_states) return model_error(m, MAGNA_ERR_NOMEM, "fit: out of memory");
    memcpy(m->best_params, p, np * sizeof(float));
    memcpy(m->best_states, s, ns * sizeof(float));
    return MAGNA_OK;
}

/* The best model so far, to a safetensors file (atomically), with weights_metadata. */
static magna_status save_checkpoint(magna_model *m, const magna_fit_opts *o, int epoch, bool has_val,
                                    double monitored) {
    const char *path = o->checkpoint_path;
    char e[32], v[64];
    snprintf(e, sizeof e, "%d", epoch);
    snprintf(v, sizeof v, "%.17g", monitored);
    const char *kv[2 * CKPT_KV + 6] = {"epoch", e, has_val ? "val_loss" : "loss", v};
    int n = 4;
    for (int i = 0; o->weights_metadata && o->weights_metadata[i] && n < 2 * CKPT_KV; i += 2)
        kv[n++] = o->weights_metadata[i], kv[n++] = o->weights_metadata[i + 1];
    kv[n] = NULL;
    magna_error err;
    magna_status st = magna_save_safetensors(m->g, path, kv, &err);
    if (st != MAGNA_OK) return model_error(m, st, "fit: checkpoint at epoch %d: %s", epoch, err.message);
    return MAGNA_OK;
}

static magna_status history_push(magna_model *m, magna_history *h, const magna_epoch_log *log) {
    if (!h) return MAGNA_OK;
    if (h->count == h->capacity) {
        int cap = h->capacity ? 2 * h->capacity : 64;
        magna_epoch_log *e = realloc(h->epochs, (size_t)cap * sizeof *e);
        if (!e) return model_error(m, MAGNA_ERR_NOMEM, "fit: out of memory for the history");
        h->epochs = e, h->capacity = cap;
    }
    h->epochs[h->count++] = *log;
    return MAGNA_OK;
}

/* One epoch into the log directory: lr, the losses and each metric the model reports. */
static magna_status log_epoch(magna_model *m, magna_train_log *tl, const magna_epoch_log *log) {
    static const struct { unsigned bit; const char *train, *val; size_t off; } metrics[] = {
        {MAGNA_METRIC_MSE, "train/mse", "val/mse", offsetof(magna_scores, mse)},
        {MAGNA_METRIC_RMSE, "train/rmse", "val/rmse", offsetof(magna_scores, rmse)},
        {MAGNA_METRIC_MAE, "train/mae", "val/mae", offsetof(magna_scores, mae)},
        {MAGNA_METRIC_R2, "train/r2", "val/r2", offsetof(magna_scores, r2)},
        {MAGNA_METRIC_ACCURACY, "train/accuracy", "val/accuracy", offsetof(magna_scores, accuracy)},
        {MAGNA_METRIC_TOP_K, "train/top_k", "val/top_k", offsetof(magna_scores, top_k)},
    };
    magna_log_scalar s[3 + 2 * sizeof metrics / sizeof metrics[0]];
    int n = 0;
    s[n++] = (magna_log_scalar){"lr", log->lr};
    s[n++] = (magna_log_scalar){"train/loss", log->train.loss};
    if (log->has_val) s[n++] = (magna_log_scalar){"val/loss", log->val.loss};
    for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++) {
        if (!(m->c.metrics & metrics[i].bit)) continue;
        s[n++] = (magna_log_scalar){metrics[i].train, *(const double *)((const char *)&log->train + metrics[i].off)};
        if (log->has_val)
            s[n++] = (magna_log_scalar){metrics[i].val, *(const double *)((const char *)&log->val + metrics[i].off)};
    }
    magna_error err;
    magna_status st = magna_train_log_epoch(tl, log->epoch, m->step, n, s, &err);
    if (st != MAGNA_OK) return model_error(m, st, "fit: log at epoch %d: %s", log->epoch, err.message);
    return MAGNA_OK;
}

void magna_history_free(magna_history *h) {
    if (!h) return;
    free(h->epochs);
    memset(h, 0, sizeof *h);
}

/* Any rank's `mine` (a stop asked for on one rank): the same answer on every rank. */
static bool dist_any(magna_model *m, bool mine, magna_status *st) {
    double v = mine;
    magna_error err;
    if (m->dist && magna_dist_allreduce_sum(m->dist, &v, 1, m->step, "the allreduce of a stop flag", &err) != MAGNA_OK)
        *st = dist_error(m, &err);
    return v > 0;
}

/* A checkpoint (a step's when name is NULL). Data parallel, every rank takes part: the epoch's running sums
 * (mid-epoch) and ZeRO 1's optimizer slices are gathered to rank 0, which alone writes. The state is then
 * the whole run's, which resumes on any number of ranks. */
static magna_status dist_checkpoint(magna_model *m, const magna_fit_opts *o, const run_state *rs, const char *name) {
    if (!m->dist) return name ? model_save_state(m, o, rs, name) : model_save_step_checkpoint(m, o, rs);
    run_state all = *rs;
    magna_status st;
    if (!rs->epoch_done && (st = dist_tally(m, &all.t, "the allreduce of the running metrics for a checkpoint")) !=
                               MAGNA_OK)
        return st;
    const bool lead = magna_dist_rank(m->dist) == 0, gather = magna_dist_zero1(m->dist);
    for (int k = 0; gather && k < 2; k++) {
        magna_error err;
        if (!magna_optimizer_state(m->opt, k, NULL)) continue;
        if (lead && !m->full_state[k] && !(m->full_state[k] = malloc((m->g->n_params + 1) * sizeof(float))))
            return dist_fail(m, model_error(m, MAGNA_ERR_NOMEM, "fit: out of memory for a checkpoint"));
        if (magna_dist_gather_state(m->dist, m->opt, k, m->full_state[k], m->step, &err) != MAGNA_OK)
            return dist_error(m, &err);
    }
    st = !lead ? MAGNA_OK : name ? model_save_state(m, o, &all, name) : model_save_step_checkpoint(m, o, &all);
    for (int k = 0; k < 2; k++) free(m->full_state[k]), m->full_state[k] = NULL; /* the slices are the state again */
    if (st != MAGNA_OK) return dist_fail(m, st);
    /* the others wait for the write: a rank that went on (and, stopped, exited) could end the job under it */
    dist_any(m, false, &st);
    return st;
}

magna_status magna_model_fit(magna_model *m, const magna_dataset *train_in, const magna_dataset *val_in,
                             const magna_fit_opts *o, magna_history *history) {
    magna_status st = check_dataset(m, train_in, true, "fit");
    if (st != MAGNA_OK) return st;
    if (!o || o->epochs < 1) return model_error(m, MAGNA_ERR_ARG, "fit: epochs must be at least 1");
    if (!(o->validation_split >= 0 && o->validation_split < 1))
        return model_error(m, MAGNA_ERR_ARG, "fit: validation_split must be in [0, 1), got %g", o->validation_split);
    if (val_in && (st = check_dataset(m, val_in, true, "fit (validation data)")) != MAGNA_OK) return st;
    if (history) memset(history, 0, sizeof *history);

    magna_dataset train = *train_in, split_val;
    const magna_dataset *val = val_in;
    if (!val && o->validation_split > 0) {
        const int64_t n_val = (int64_t)((double)train.rows * o->validation_split);
        if (n_val < 1 || n_val >= train.rows)
            return model_error(m, MAGNA_ERR_ARG, "fit: validation_split %g of %lld rows leaves no rows on one side",
                               o->validation_split, (long long)train.rows);
        train.rows -= n_val;
        split_val = *train_in;
        split_val.rows = n_val;
        const int64_t at = train.rows;
        for (int k = 0; k < m->n_inputs; k++) { /* every array moves forward by `at` rows of its own width */
            const int64_t w = m->inputs[k]->capacity / m->batch;
            if (k == 0 && split_val.x) split_val.x += at * w;
            if (k == 0 && split_val.x_i32) split_val.x_i32 += at * w;
            if (k > 0 && split_val.more_x[k - 1]) split_val.more_x[k - 1] += at * w;
            if (k > 0 && split_val.more_x_i32[k - 1]) split_val.more_x_i32[k - 1] += at * w;
        }
        for (int k = 0; k < m->n_outputs; k++) {
            const int64_t w = m->targets[k]->capacity / m->batch;
            if (k == 0 && split_val.y) split_val.y += at * w;
            if (k == 0 && split_val.labels) split_val.labels += at * w;
            if (k > 0 && split_val.more_y[k - 1]) split_val.more_y[k - 1] += at * w;
            if (k > 0 && split_val.more_labels[k - 1]) split_val.more_labels[k - 1] += at * w;
        }
        val = &split_val;
    }
    /* data parallel: a step takes `global` rows, its share on each rank; rank 0 alone prints and writes */
    const int64_t ranks = magna_dist_size(m->dist), global = ranks * m->batch;
    const bool lead = magna_dist_rank(m->dist) == 0;
    const int64_t steps_per_epoch = (train.rows + global - 1) / global;
    run_state rs = {.epoch = 1, .run_start_step = m->step, .train_rows = train.rows, .batch = global,
                    .best = INFINITY, .lr = m->base_lr};
    const bool resumed = m->resume != NULL;
    if (m->resume) { /* a resumed run: the same data and (global) batch, or the position means nothing */
        if (m->resume->train_rows != train.rows || m->resume->batch != global)
            return dist_fail(m, model_error(m, MAGNA_ERR_ARG,
                                            "fit: the resumed checkpoint was trained on %lld rows in batches of %lld, "
                                            "this fit has %lld rows in batches of %lld (%lld rank%s x %lld)",
                                            (long long)m->resume->train_rows, (long long)m->resume->batch,
                                            (long long)train.rows, (long long)global, (long long)ranks,
                                            ranks > 1 ? "s" : "", (long long)m->batch));
        rs = *m->resume;
        free(m->resume);
        m->resume = NULL;
        if (!lead) rs.t = (tally){0}; /* the epoch's running sums so far are rank 0's to carry */
        if (rs.epoch_done) rs.epoch++, rs.epoch_step = 0, rs.epoch_done = false;
        if (history) history->best_epoch = rs.best_epoch, history->stopped_early = rs.finished;
        if (rs.finished) rs.epoch = o->epochs + 1; /* early stopping had ended it: nothing left but restore_best */
    }
    if (m->dist && (st = dist_begin_fit(m, train.rows, o->verbose)) != MAGNA_OK) return dist_fail(m, st);
    if (o->checkpoint_dir && lead) {
        char failed[4096] = "";
        const int e = magna_io_mkdirs(o->checkpoint_dir, failed, sizeof failed);
        if (e) return model_error(m, MAGNA_ERR_IO, "fit: %s: cannot create: %s", failed[0] ? failed : o->checkpoint_dir,
                                  strerror(e));
    }
    magna_train_log *tl = NULL;
    if (o->log_dir && lead) {
        magna_error err;
        tl = resumed ? magna_train_log_reopen(o->log_dir, rs.epoch, &err) : magna_train_log_open(o->log_dir, &err);
        if (!tl) return model_error(m, err.status, "fit: %s", err.message);
    }
    int64_t *order = malloc((size_t)train.rows * sizeof *order);
    if (!order) {
        magna_train_log_close(tl);
        return model_error(m, MAGNA_ERR_NOMEM, "fit: out of memory");
    }
    const int64_t total_steps = rs.run_start_step + steps_per_epoch * o->epochs;
    const int verbose = lead ? o->verbose : 0;
    const bool tty = verbose && isatty(fileno(stdout));
    bool interrupted = false;
    magna_graph_set_training(m->g, true);

    for (; rs.epoch <= o->epochs && st == MAGNA_OK; rs.epoch++) {
        const int epoch = rs.epoch;
        const double t0 = now_seconds();
        if (rs.epoch_step == 0) rs.epoch_start_step = m->step, rs.t = (tally){0};
        for (int64_t i = 0; i < train.rows; i++) order[i] = i;
        if (!o->no_shuffle) /* Fisher-Yates from (seed, the epoch's first step): a resumed run shuffles the same */
            for (int64_t i = train.rows - 1; i > 0; i--) {
                int64_t j = (int64_t)(magna_rand_u64(m->seed ^ 0x5eed5eedull, (uint64_t)rs.epoch_start_step,
                                                     (uint64_t)i) %
                                      (uint64_t)(i + 1));
                int64_t t = order[i];
                order[i] = order[j], order[j] = t;
            }
        if (tty) printf("Epoch %d/%d\n", epoch, o->epochs);
        for (int64_t s = rs.epoch_step; s < steps_per_epoch && st == MAGNA_OK; s++) {
            /* this rank's share of the step's global batch (all of it on one process) */
            int64_t from, to;
            dist_share(m, s * global, train.rows - s * global < global ? train.rows - s * global : global, &from, &to);
            const int64_t count = to - from;
            magna_graph_zero_grad(m->g);
            float loss = 0;
            if (count > 0) { /* a short last step may leave a rank without rows: it adds zero gradients */
                load_rows(m, &train, order, from, count, true);
                fetch_outputs(m, m->g->device == MAGNA_DEVICE_CPU || m->c.metrics != 0);
                if ((st = magna_graph_forward(m->g)) != MAGNA_OK) {
                    from_graph(m, st);
                    break;
                }
                if (isfinite(loss = host_f32(m->loss)[0]) && (st = dist_backward_begin(m, count)) != MAGNA_OK) break;
                if (isfinite(loss) && (st = magna_graph_backward(m->g)) != MAGNA_OK) {
                    from_graph(m, st);
                    break;
                }
            } else {
                m->g->rng_step++; /* the dropout counter stays in step with the ranks that ran */
            }
            /* summed over ranks with the gradients, so every rank stops at the same step */
            double flags[2] = {!isfinite(loss), o->stop && *o->stop};
            if (m->dist && (st = dist_reduce_grads(m, isfinite(loss) ? count : 0, flags, 2)) != MAGNA_OK) break;
            if (flags[0] > 0) {
                st = model_error(m, MAGNA_ERR_NUMERIC,
                                 "fit: the loss is %g at epoch %d, step %lld: stopped before the update reached the "
                                 "weights (try a lower learning rate or clipping)",
                                 isfinite(loss) ? (double)NAN : (double)loss, epoch, (long long)s + 1);
                break;
            }
            if (m->c.clip_norm > 0) magna_clip_grad_norm(m->g, m->c.clip_norm);
            if (!magna_grads_finite(m->g)) {
                st = model_error(m, MAGNA_ERR_NUMERIC, "fit: a gradient is NaN or Inf at epoch %d, step %lld", epoch,
                                 (long long)s + 1);
                break;
            }
            rs.lr = magna_schedule_lr(&m->c.schedule, m->base_lr, m->step, total_steps);
            magna_optimizer_set_lr(m->opt, rs.lr);
            if ((st = dist_update(m)) != MAGNA_OK) break;
            if (m->g->device != MAGNA_DEVICE_CPU && (st = magna_graph_status(m->g)) != MAGNA_OK) { /* a failed launch */
                from_graph(m, st);
                break;
            }
            m->step++;
            if (o->on_step) o->on_step(m, m->step, count > 0 ? (double)loss : NAN, o->user);
            if (count > 0) tally_batch(m, &rs.t, count);
            fetch_outputs(m, true);
            rs.epoch_step = s + 1;
            if (tty) progress(stdout, s + 1, steps_per_epoch, now_seconds() - t0, rs.t.loss_sum / rs.t.loss_weight);
            interrupted = (m->dist ? flags[1] > 0 : o->stop && *o->stop) ||
                          (o->max_steps > 0 && m->step >= o->max_steps);
            if (o->checkpoint_dir && (interrupted || (o->save_every > 0 && m->step % o->save_every == 0)) &&
                (st = dist_checkpoint(m, o, &rs, NULL)) != MAGNA_OK)
                break;
            if (interrupted) break;
        }
        if (st != MAGNA_OK || interrupted) break;
        if (m->dist && ((st = dist_tally(m, &rs.t, "the allreduce of the epoch's metrics")) != MAGNA_OK ||
                        (st = dist_end_epoch(m)) != MAGNA_OK))
            break;
        magna_epoch_log log = {.epoch = epoch, .lr = rs.lr, .train = tally_scores(&rs.t), .has_val = val != NULL};
        if (val && (st = magna_model_evaluate(m, val, &log.val)) != MAGNA_OK) break;
        log.seconds = now_seconds() - t0;
        if (verbose) {
            if (tty)
                printf("\r%5lld/%lld [==============================] - %.2fs", (long long)steps_per_epoch,
                       (long long)steps_per_epoch, log.seconds);
            else
                printf("epoch %d/%d - %.3fs", epoch, o->epochs, log.seconds);
            print_scores(stdout, m, "", &log.train);
            if (val) print_scores(stdout, m, "val_", &log.val);
            printf("\n");
            fflush(stdout);
        }
        if ((st = history_push(m, history, &log)) != MAGNA_OK) break;
        if (tl && (st = log_epoch(m, tl, &log)) != MAGNA_OK) break;
        const double monitored = val ? log.val.loss : log.train.loss;
        const bool improved = monitored < rs.best - o->min_delta;
        bool stop_early = false;
        if (improved) {
            rs.best = monitored, rs.wait = 0, rs.best_epoch = epoch;
            if (history) history->best_epoch = epoch;
            if (o->restore_best && (st = save_best(m)) != MAGNA_OK) break;
            if (o->checkpoint_path && lead &&
                (st = save_checkpoint(m, o, epoch, val != NULL, monitored)) != MAGNA_OK)
                break;
        } else if (o->patience > 0 && ++rs.wait >= o->patience) {
            if (history) history->stopped_early = true;
            if (verbose) printf("early stopping at epoch %d: no improvement for %d epochs\n", epoch, rs.wait);
            stop_early = true;
        }
        rs.epoch_done = true, rs.finished = stop_early;
        if (o->checkpoint_dir && improved && (st = dist_checkpoint(m, o, &rs, "best.safetensors")) != MAGNA_OK) break;
        if (o->checkpoint_dir && o->save_each_epoch && (st = dist_checkpoint(m, o, &rs, NULL)) != MAGNA_OK) break;
        rs.epoch_done = false, rs.epoch_step = 0;
        if (stop_early) break;
        /* any rank's "stop" (the callback's, a signal's) stops every rank */
        if (o->on_epoch_end && dist_any(m, !o->on_epoch_end(m, &log, o->user), &st)) break;
        if (st != MAGNA_OK) break;
        if (dist_any(m, o->stop && *o->stop, &st)) { /* a signal during the epoch's end: its checkpoint is above */
            interrupted = true;
            if (o->checkpoint_dir && !o->save_each_epoch) {
                rs.epoch_done = true;
                if ((st = dist_checkpoint(m, o, &rs, NULL)) != MAGNA_OK) break;
            }
            break;
        }
        if (st != MAGNA_OK) break;
    }
    if (history) history->interrupted = interrupted;
    free(order);
    magna_train_log_close(tl);
    if (st == MAGNA_OK && !interrupted && o->restore_best && m->best_params) {
        size_t np, ns;
        float *params = magna_graph_params(m->g, &np), *states = magna_graph_states(m->g, &ns);
        memcpy(params, m->best_params, np * sizeof(float));
        memcpy(states, m->best_states, ns * sizeof(float));
    }
    magna_graph_set_batch(m->g, m->batch);
    return dist_fail(m, st);
}

/* ---- summary ------------------------------------------------------------------------------------ */

void magna_model_summary(magna_model *m, FILE *f) {
    magna_graph *g = m->g;
    char shape[SHAPE_STR_MAX];
    fprintf(f, "%-28s %-22s %12s\n", "Layer (params)", "Shape", "Param #");
    fprintf(f, "%.*s\n", 64, "================================================================");
    if (m->input) fprintf(f, "%-28s %-22s %12s\n", m->input->name, shape_str(m->input, shape, sizeof shape), "0");
    int64_t total = 0, trainable = 0;
    for (int i = 0; i < g->n_param_nodes;) { /* params grouped by the layer name: all but the last part */
        const magna_node *p = g->param_nodes[i];
        const char *dot = strrchr(p->name, '.');
        const int len = dot ? (int)(dot - p->name) : (int)strlen(p->name);
        int64_t count = 0;
        char shapes[128] = "";
        int j = i;
        for (; j < g->n_param_nodes && strncmp(g->param_nodes[j]->name, p->name, (size_t)len) == 0 &&
               (g->param_nodes[j]->name[len] == '.' || g->param_nodes[j]->name[len] == '\0');
             j++) {
            count += g->param_nodes[j]->numel;
            size_t used = strlen(shapes);
            snprintf(shapes + used, sizeof shapes - used, "%s%s", used ? " " : "",
                     shape_str(g->param_nodes[j], shape, sizeof shape));
        }
        fprintf(f, "%-28.*s %-22s %12lld\n", len, p->name, shapes, (long long)count);
        total += count, trainable += count;
        i = j;
    }
    for (int i = 0; i < g->n_state_nodes; i++) total += g->state_nodes[i]->numel;
    if (m->output) fprintf(f, "%-28s %-22s\n", "output", shape_str(m->output, shape, sizeof shape));
    fprintf(f, "%.*s\n", 64, "================================================================");
    fprintf(f, "Total params: %lld\nTrainable params: %lld\nNon-trainable params: %lld\n", (long long)total,
            (long long)trainable, (long long)(total - trainable));
    if (m->compiled) { /* the memory plan's size (MAGNA_PLAN_REPORT=1 says what is in it) */
        int stored16 = 0;
        for (int i = 0; i < g->n_nodes; i++) stored16 += g->nodes[i]->stored16;
        const double b = (double)g->arena_bytes;
        const int unit = b >= 1073741824.0 ? 3 : b >= 1048576.0 ? 2 : 1;
        fprintf(f, "Activation memory: %.1f %s at batch %lld", b / (unit == 3 ? 1073741824.0 : unit == 2 ? 1048576.0 : 1024.0),
                unit == 3 ? "GiB" : unit == 2 ? "MiB" : "KiB", (long long)g->compiled_batch);
        if (stored16) fprintf(f, " (%d tensors kept in bf16)", stored16);
        fprintf(f, "\n");
    }
}
