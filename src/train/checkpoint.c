/* checkpoint.c — full-state checkpoints (weights, optimizer moments, step, epoch position, RNG, schedule,
 * early stopping) and the resume that continues a run from one exactly. */
#include "model_internal.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- full-state checkpoints ---------------------------------------------------------------------- */


static const char *const OPTIMIZER_NAMES[] = {"sgd", "adam", "adamw"};

/* The optimizer's moments and restore_best's copies as extra tensors; returns their count. */
static int checkpoint_extras(magna_model *m, magna_st_tensor *x, bool with_best) {
    int n = 0;
    static const char *const names[] = {"optimizer.m", "optimizer.v"};
    for (int k = 0; k < 2; k++) {
        size_t count;
        float *s = magna_optimizer_state(m->opt, k, &count);
        if (s && m->full_state[k]) s = m->full_state[k], count = m->g->n_params; /* ZeRO 1, while saving */
        if (s) x[n++] = (magna_st_tensor){names[k], 1, {(int64_t)count}, s};
    }
    if (with_best) {
        x[n++] = (magna_st_tensor){"fit.best_params", 1, {(int64_t)m->g->n_params}, m->best_params};
        if (m->g->n_states) x[n++] = (magna_st_tensor){"fit.best_states", 1, {(int64_t)m->g->n_states}, m->best_states};
    }
    return n;
}

/* Deletes all but the newest `keep` step-*.safetensors of dir. */
static void prune_checkpoints(const char *dir, int keep) {
    DIR *d = opendir(dir);
    if (!d) return;
    long long *steps = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long step;
        char tail[32];
        if (sscanf(e->d_name, "step-%lld%31s", &step, tail) != 2 || strcmp(tail, ".safetensors") != 0) continue;
        if (n == cap) {
            long long *p = realloc(steps, (cap = cap ? 2 * cap : 16) * sizeof *p);
            if (!p) break;
            steps = p;
        }
        steps[n++] = step;
    }
    closedir(d);
    for (size_t i = 0; n > (size_t)keep && i < n; i++) {
        size_t newer = 0; /* how many are newer than this one */
        for (size_t j = 0; j < n; j++) newer += steps[j] > steps[i];
        if (newer >= (size_t)keep) {
            char path[4200];
            snprintf(path, sizeof path, "%s/step-%09lld.safetensors", dir, steps[i]);
            unlink(path);
        }
    }
    free(steps);
}

/* The whole state to dir/name (atomically). */
magna_status model_save_state(magna_model *m, const magna_fit_opts *o, const run_state *rs, const char *name) {
    char path[4200], v[CKPT_KV][160];
    snprintf(path, sizeof path, "%s/%s", o->checkpoint_dir, name);
    const char *kv[2 * CKPT_KV + 2];
    int n = 0, k = 0;
#define KV(key, ...) (snprintf(v[k], sizeof v[k], __VA_ARGS__), kv[n++] = key, kv[n++] = v[k++])
    kv[n++] = "magna_checkpoint", kv[n++] = "1";
    kv[n++] = "optimizer", kv[n++] = OPTIMIZER_NAMES[magna_optimizer_get_kind(m->opt)];
    KV("step", "%lld", (long long)m->step);
    KV("optimizer_steps", "%lld", (long long)magna_optimizer_steps(m->opt));
    KV("seed", "%llu", (unsigned long long)m->seed);
    KV("rng_step", "%llu", (unsigned long long)magna_graph_rng_step(m->g));
    KV("epoch", "%d", rs->epoch);
    KV("epoch_step", "%lld", (long long)rs->epoch_step);
    KV("epoch_done", "%d", (int)rs->epoch_done);
    KV("epoch_start_step", "%lld", (long long)rs->epoch_start_step);
    KV("run_start_step", "%lld", (long long)rs->run_start_step);
    KV("train_rows", "%lld", (long long)rs->train_rows);
    KV("batch", "%lld", (long long)rs->batch);
    KV("lr", "%.9g", (double)rs->lr);
    KV("base_lr", "%.9g", (double)m->base_lr);
    KV("schedule", "%d %lld %lld %.9g %lld %.9g", (int)m->c.schedule.kind, (long long)m->c.schedule.warmup_steps,
       (long long)m->c.schedule.step_size, (double)m->c.schedule.gamma, (long long)m->c.schedule.decay_steps,
       (double)m->c.schedule.min_lr);
    KV("best", "%.17g", rs->best);
    KV("wait", "%d", rs->wait);
    KV("best_epoch", "%d", rs->best_epoch);
    KV("finished", "%d", (int)rs->finished);
    KV("has_best_weights", "%d", m->best_params != NULL);
    KV("tally", "%.17g %.17g %.17g %.17g %.17g %.17g", rs->t.loss_sum, rs->t.loss_weight, rs->t.sse, rs->t.sae,
       rs->t.y_sum, rs->t.y2_sum);
    KV("tally_counts", "%lld %lld %lld %lld %lld", (long long)rs->t.values, (long long)rs->t.samples,
       (long long)rs->t.rows_cls, (long long)rs->t.correct, (long long)rs->t.top_correct);
#undef KV
    for (int i = 0; o->checkpoint_metadata && o->checkpoint_metadata[i] && n < 2 * CKPT_KV; i += 2)
        kv[n++] = o->checkpoint_metadata[i], kv[n++] = o->checkpoint_metadata[i + 1];
    kv[n] = NULL;
    magna_st_tensor extra[4];
    const int ne = checkpoint_extras(m, extra, m->best_params != NULL);
    magna_error err;
    magna_status st = magna_save_safetensors_ex(m->g, extra, ne, path, kv, &err);
    if (st != MAGNA_OK) return model_error(m, st, "fit: checkpoint at step %lld: %s", (long long)m->step, err.message);
    snprintf(m->last_checkpoint, sizeof m->last_checkpoint, "%s", path);
    return MAGNA_OK;
}

magna_status model_save_step_checkpoint(magna_model *m, const magna_fit_opts *o, const run_state *rs) {
    char name[64];
    snprintf(name, sizeof name, "step-%09lld.safetensors", (long long)m->step);
    magna_status st = model_save_state(m, o, rs, name);
    if (st == MAGNA_OK) prune_checkpoints(o->checkpoint_dir, o->keep_last > 0 ? o->keep_last : 3);
    return st;
}

magna_status magna_checkpoint_find(const char *path, char *out, size_t cap, magna_error *err) {
    struct stat sb;
    if (!path || stat(path, &sb) != 0)
        return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot open: %s", path ? path : "(null)", strerror(errno));
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(out, cap, "%s", path);
        return MAGNA_OK;
    }
    DIR *d = opendir(path);
    if (!d) return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    long long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long step;
        char tail[32];
        if (sscanf(e->d_name, "step-%lld%31s", &step, tail) == 2 && strcmp(tail, ".safetensors") == 0 && step > best)
            best = step;
    }
    closedir(d);
    if (best < 0) return magna_error_set(err, MAGNA_ERR_IO, "%s: no checkpoint (step-*.safetensors) in this folder", path);
    snprintf(out, cap, "%s/step-%09lld.safetensors", path, best);
    return MAGNA_OK;
}

/* Whole-string numbers of the checkpoint's metadata. */
static bool md_i64(const magna_st_metadata *md, const char *key, int64_t *out) {
    const char *s = magna_st_metadata_get(md, key);
    char *end;
    if (!s || !*s) return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}
static bool md_f64(const magna_st_metadata *md, const char *key, double *out) {
    const char *s = magna_st_metadata_get(md, key);
    char *end;
    if (!s || !*s) return false;
    *out = strtod(s, &end);
    return *end == '\0';
}

magna_status magna_model_resume(magna_model *m, const char *where) {
    m->errmsg[0] = '\0';
    if (!m->compiled) return model_error(m, MAGNA_ERR_STATE, "resume: compile the model first");
    magna_error err;
    char path[4200];
    if (magna_checkpoint_find(where, path, sizeof path, &err) != MAGNA_OK)
        return model_error(m, err.status, "resume: %s", err.message);
    magna_st_metadata md;
    if (magna_read_safetensors_metadata(path, &md, &err) != MAGNA_OK)
        return model_error(m, err.status, "resume: %s", err.message);
    run_state rs = {0};
    int64_t step, opt_steps, seed, rng, epoch, done, wait, best_epoch, has_best;
    double lr;
    const char *bad = NULL, *opt = magna_st_metadata_get(&md, "optimizer");
    const char *want = OPTIMIZER_NAMES[magna_optimizer_get_kind(m->opt)];
    magna_status st = MAGNA_ERR_FORMAT;
    if (!magna_st_metadata_get(&md, "magna_checkpoint")) {
        model_error(m, st, "resume: %s: not a full-state checkpoint (no 'magna_checkpoint' metadata; weights alone "
                           "load with magna_load_safetensors)", path);
        goto fail;
    }
    if (!opt || strcmp(opt, want) != 0) {
        model_error(m, st, "resume: %s: the checkpoint's optimizer is %s, the model's is %s", path, opt ? opt : "missing",
                    want);
        goto fail;
    }
    const char *tally = magna_st_metadata_get(&md, "tally"), *counts = magna_st_metadata_get(&md, "tally_counts");
    long long c[5];
    if (!md_i64(&md, bad = "step", &step) || !md_i64(&md, bad = "optimizer_steps", &opt_steps) ||
        !md_i64(&md, bad = "seed", &seed) || !md_i64(&md, bad = "rng_step", &rng) ||
        !md_i64(&md, bad = "epoch", &epoch) || !md_i64(&md, bad = "epoch_step", &rs.epoch_step) ||
        !md_i64(&md, bad = "epoch_done", &done) || !md_i64(&md, bad = "epoch_start_step", &rs.epoch_start_step) ||
        !md_i64(&md, bad = "run_start_step", &rs.run_start_step) ||
        !md_i64(&md, bad = "train_rows", &rs.train_rows) || !md_i64(&md, bad = "batch", &rs.batch) ||
        !md_f64(&md, bad = "lr", &lr) || !md_f64(&md, bad = "best", &rs.best) || !md_i64(&md, bad = "wait", &wait) ||
        !md_i64(&md, bad = "best_epoch", &best_epoch) || !md_i64(&md, bad = "has_best_weights", &has_best) ||
        (bad = "tally", !tally) ||
        sscanf(tally, "%lf %lf %lf %lf %lf %lf", &rs.t.loss_sum, &rs.t.loss_weight, &rs.t.sse, &rs.t.sae,
               &rs.t.y_sum, &rs.t.y2_sum) != 6 ||
        (bad = "tally_counts", !counts) ||
        sscanf(counts, "%lld %lld %lld %lld %lld", &c[0], &c[1], &c[2], &c[3], &c[4]) != 5 ||
        (bad = "epoch", epoch < 1 || epoch > INT32_MAX) || (bad = "step", step < 0 || rs.epoch_step < 0)) {
        model_error(m, st, "resume: %s: metadata '%s' is missing or malformed", path, bad);
        goto fail;
    }
    int64_t finished = 0;
    md_i64(&md, "finished", &finished); /* optional */
    rs.finished = finished != 0;
    rs.epoch = (int)epoch, rs.epoch_done = done != 0, rs.wait = (int)wait, rs.best_epoch = (int)best_epoch;
    rs.lr = (float)lr;
    rs.t.values = c[0], rs.t.samples = c[1], rs.t.rows_cls = c[2], rs.t.correct = c[3], rs.t.top_correct = c[4];
    /* everything read; now the tensors (best weights into fresh buffers, so a failure changes nothing) */
    float *bp = NULL, *bs = NULL;
    if (has_best) {
        bp = malloc((m->g->n_params + 1) * sizeof *bp), bs = malloc((m->g->n_states + 1) * sizeof *bs);
        if (!bp || !bs) {
            free(bp), free(bs);
            model_error(m, st = MAGNA_ERR_NOMEM, "resume: out of memory");
            goto fail;
        }
    }
    float *keep_p = m->best_params, *keep_s = m->best_states;
    m->best_params = bp, m->best_states = bs;
    magna_st_tensor extra[4];
    const int ne = checkpoint_extras(m, extra, has_best);
    m->best_params = keep_p, m->best_states = keep_s;
    magna_st_metadata_free(&md);
    if ((st = magna_load_safetensors_ex(m->g, extra, ne, path, &md, &err)) != MAGNA_OK) {
        free(bp), free(bs);
        model_error(m, st, "resume: %s", err.message);
        goto fail;
    }
    if (has_best) {
        free(m->best_params), free(m->best_states);
        m->best_params = bp, m->best_states = bs;
    }
    if (!m->resume && !(m->resume = malloc(sizeof *m->resume))) {
        model_error(m, st = MAGNA_ERR_NOMEM, "resume: out of memory");
        goto fail;
    }
    *m->resume = rs;
    m->step = step;
    m->seed = (uint64_t)seed, m->g->seed = (uint64_t)seed; /* the run's RNG, whatever this model was made with */
    magna_graph_set_rng_step(m->g, (uint64_t)rng);
    magna_optimizer_set_steps(m->opt, opt_steps);
    magna_st_metadata_free(&m->resume_md);
    m->resume_md = md;
    return MAGNA_OK;
fail:
    magna_st_metadata_free(&md);
    return st;
}

const char *magna_model_resume_metadata(const magna_model *m, const char *key) {
    return magna_st_metadata_get(&m->resume_md, key);
}
const char *magna_model_last_checkpoint(const magna_model *m) { return m->last_checkpoint; }

