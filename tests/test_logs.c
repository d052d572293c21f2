/* test_logs.c — training logs: CRC-32C's check value; an event file read back by a small TFRecord and
 * protobuf reader written here (both CRCs, tag, step, value); fit with log_dir writes log.csv and
 * curves.svg; a log_dir that cannot be created stops fit with MAGNA_ERR_IO naming the path; a log reopened for a
 * resumed run keeps the earlier epochs' rows and curve and refuses other columns. */
#include "check.h"
#include "magna.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

static char dir[64];

static unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)n + 1);
    *len = fread(p, 1, (size_t)n, f);
    p[*len] = '\0';
    fclose(f);
    return p;
}

/* The one events.out.tfevents.* file in `d` (name into out). */
static bool find_event_file(const char *d, char *out, size_t cap) {
    DIR *dd = opendir(d);
    if (!dd) return false;
    int found = 0;
    struct dirent *e;
    while ((e = readdir(dd)))
        if (strncmp(e->d_name, "events.out.tfevents.", 20) == 0) snprintf(out, cap, "%s/%s", d, e->d_name), found++;
    closedir(dd);
    return found == 1;
}

static uint32_t unmask(uint32_t m) {
    const uint32_t r = m - 0xa282ead8u;
    return (r >> 17) | (r << 15);
}
static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}
static bool varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        const unsigned char b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return true;
    }
    return false;
}

typedef struct event {
    double wall_time;
    int64_t step;
    char version[32];
    char tag[64];
    float value;
    bool has_value;
} event;

/* Decodes Summary.Value (tag, simple_value). */
static bool decode_value(const unsigned char *p, const unsigned char *end, event *ev) {
    while (p < end) {
        uint64_t key, len;
        if (!varint(&p, end, &key)) return false;
        if (key == 0x0a) {
            if (!varint(&p, end, &len) || len >= sizeof ev->tag || len > (uint64_t)(end - p)) return false;
            memcpy(ev->tag, p, len), ev->tag[len] = '\0', p += len;
        } else if (key == 0x15) {
            if (end - p < 4) return false;
            memcpy(&ev->value, p, 4), p += 4, ev->has_value = true;
        } else
            return false;
    }
    return true;
}

static bool decode_event(const unsigned char *p, const unsigned char *end, event *ev) {
    memset(ev, 0, sizeof *ev);
    while (p < end) {
        uint64_t key, v;
        if (!varint(&p, end, &key)) return false;
        switch (key) {
        case 0x09:
            if (end - p < 8) return false;
            memcpy(&ev->wall_time, p, 8), p += 8;
            break;
        case 0x10:
            if (!varint(&p, end, &v)) return false;
            ev->step = (int64_t)v;
            break;
        case 0x1a:
            if (!varint(&p, end, &v) || v >= sizeof ev->version || v > (uint64_t)(end - p)) return false;
            memcpy(ev->version, p, v), ev->version[v] = '\0', p += v;
            break;
        case 0x2a: { /* Summary: one Value expected */
            if (!varint(&p, end, &v) || v > (uint64_t)(end - p)) return false;
            const unsigned char *s = p, *se = p + v;
            p = se;
            while (s < se) {
                uint64_t k2, l2;
                if (!varint(&s, se, &k2) || k2 != 0x0a || !varint(&s, se, &l2) || l2 > (uint64_t)(se - s)) return false;
                if (!decode_value(s, s + l2, ev)) return false;
                s += l2;
            }
            break;
        }
        default:
            return false;
        }
    }
    return true;
}

/* Reads every record of an event file, checking both CRCs. Returns the count, -1 on a bad record. */
static int read_events(const char *path, event *evs, int cap) {
    size_t len;
    unsigned char *b = slurp(path, &len);
    if (!b) return -1;
    int n = 0;
    size_t at = 0;
    while (at < len) {
        if (len - at < 12) return free(b), -1;
        const uint64_t dlen = le(b + at, 8);
        if (unmask((uint32_t)le(b + at + 8, 4)) != magna_crc32c(b + at, 8)) return free(b), -1;
        if (dlen > len - at - 16) return free(b), -1;
        const unsigned char *d = b + at + 12;
        if (unmask((uint32_t)le(d + dlen, 4)) != magna_crc32c(d, dlen)) return free(b), -1;
        if (n >= cap || !decode_event(d, d + dlen, &evs[n])) return free(b), -1;
        n++;
        at += 16 + dlen;
    }
    free(b);
    return n;
}

static void test_crc(void) {
    CHECK(magna_crc32c("123456789", 9) == 0xE3069283u, "crc32c = %08x", magna_crc32c("123456789", 9));
    CHECK(magna_crc32c("", 0) == 0, "crc32c of nothing = %08x", magna_crc32c("", 0));
    unsigned char zeros[32] = {0}; /* RFC 3720 B.4: 32 bytes of zeros */
    CHECK(magna_crc32c(zeros, 32) == 0x8A9136AAu, "crc32c(32 zeros) = %08x", magna_crc32c(zeros, 32));
}

static void test_event_file(void) {
    char sub[128], path[512];
    snprintf(sub, sizeof sub, "%s/tb/run1", dir); /* two levels created */
    magna_error err;
    magna_tb_writer *w = magna_tb_open(sub, &err);
    CHECK(w != NULL, "tb_open: %s", err.message);
    if (!w) return;
    CHECK(strstr(magna_tb_path(w), "events.out.tfevents.") && strstr(magna_tb_path(w), ".magna"), "path %s",
          magna_tb_path(w));
    CHECK(magna_tb_scalar(w, "train/loss", 1, 0.75f) == MAGNA_OK, "%s", magna_tb_errmsg(w));
    CHECK(magna_tb_scalar(w, "val/accuracy", 300, 0.5f) == MAGNA_OK, "%s", magna_tb_errmsg(w));
    CHECK(magna_tb_scalar(w, "lr", 1LL << 40, 1e-3f) == MAGNA_OK, "%s", magna_tb_errmsg(w));
    CHECK(magna_tb_scalar(w, "", 1, 0) == MAGNA_ERR_ARG, "empty tag accepted");
    magna_tb_flush(w);
    magna_tb_close(w);
    CHECK(find_event_file(sub, path, sizeof path), "no single event file in %s", sub);
    event ev[8];
    const int n = read_events(path, ev, 8);
    CHECK(n == 4, "read %d events from %s", n, path);
    if (n != 4) return;
    CHECK(strcmp(ev[0].version, "brain.Event:2") == 0, "file_version '%s'", ev[0].version);
    CHECK(ev[0].wall_time > 1.6e9, "wall_time %f", ev[0].wall_time);
    CHECK(strcmp(ev[1].tag, "train/loss") == 0 && ev[1].step == 1 && ev[1].value == 0.75f && ev[1].has_value,
          "event 1: %s %lld %g", ev[1].tag, (long long)ev[1].step, ev[1].value);
    CHECK(strcmp(ev[2].tag, "val/accuracy") == 0 && ev[2].step == 300 && ev[2].value == 0.5f, "event 2: %s %lld %g",
          ev[2].tag, (long long)ev[2].step, ev[2].value);
    CHECK(strcmp(ev[3].tag, "lr") == 0 && ev[3].step == (1LL << 40) && ev[3].value == 1e-3f, "event 3: %s %lld %g",
          ev[3].tag, (long long)ev[3].step, ev[3].value);

    /* optional: TensorBoard's own loader, where a Python has it ($MAGNA_TB_PYTHON, else .venv/bin/python) */
    const char *py = getenv("MAGNA_TB_PYTHON") ? getenv("MAGNA_TB_PYTHON") : ".venv/bin/python";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import tensorboard' >/dev/null 2>&1", py);
    if (access(py, X_OK) == 0 && system(cmd) == 0) {
        snprintf(cmd, sizeof cmd,
                 "'%s' -c \"import sys; from tensorboard.backend.event_processing import "
                 "event_file_loader as L; e=list(L.EventFileLoader(sys.argv[1]).Load()); "
                 "v=e[1].summary.value[0]; "
                 "assert len(e)==4 and e[0].file_version=='brain.Event:2' and v.tag=='train/loss' and "
                 "e[2].step==300 and list(v.tensor.float_val)==[0.75], e\" '%s'",
                 py, path);
        CHECK(system(cmd) == 0, "tensorboard could not read %s", path);
        printf("(tensorboard read the event file)\n");
    } else
        printf("(tensorboard not installed: skipping its reader)\n");
}

enum { ROWS = 64, FEATURES = 3, CLASSES = 3, BATCH = 16, EPOCHS = 4 };
static float X[ROWS * FEATURES];
static int32_t L[ROWS];

static magna_model *make_model(void) {
    for (int r = 0; r < ROWS; r++) {
        L[r] = r % CLASSES;
        for (int j = 0; j < FEATURES; j++)
            X[r * FEATURES + j] = (j == L[r] ? 1.0f : 0.0f) + 0.3f * magna_rand_uniform(3, 1, (uint64_t)(r * 8 + j));
    }
    magna_model *m = magna_model_new(7, BATCH);
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(8, MAGNA_ACT_RELU), MAGNA_DENSE(CLASSES, 0)}, 2);
    magna_status st = magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                                   .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-2f},
                                                                   .metrics = MAGNA_METRIC_ACCURACY});
    CHECK(st == MAGNA_OK, "compile: %s", magna_model_errmsg(m));
    return m;
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void test_fit_logs(void) {
    magna_model *m = make_model();
    char logdir[128], path[512];
    snprintf(logdir, sizeof logdir, "%s/fit", dir);
    magna_dataset d = {.rows = ROWS, .x = X, .labels = L};
    magna_history h;
    magna_status st = magna_model_fit(
        m, &d, NULL, &(magna_fit_opts){.epochs = EPOCHS, .validation_split = 0.25f, .log_dir = logdir}, &h);
    CHECK(st == MAGNA_OK, "fit: %s", magna_model_errmsg(m));

    size_t len;
    snprintf(path, sizeof path, "%s/log.csv", logdir);
    char *csv = (char *)slurp(path, &len);
    CHECK(csv != NULL, "no %s", path);
    if (csv) {
        CHECK(count(csv, "\n") == EPOCHS + 1, "%d lines in log.csv:\n%s", count(csv, "\n"), csv);
        static const char header[] = "epoch,step,lr,loss,val_loss,accuracy,val_accuracy\n";
        CHECK(strncmp(csv, header, strlen(header)) == 0, "header: %.80s", csv);
        /* the last line's loss matches the history */
        const char *last = csv + len - 1;
        while (last > csv && last[-1] != '\n') last--;
        int ep;
        long long step;
        double lr, loss, val_loss;
        CHECK(sscanf(last, "%d,%lld,%lf,%lf,%lf", &ep, &step, &lr, &loss, &val_loss) == 5, "last line %s", last);
        CHECK(ep == EPOCHS && step == magna_model_step(m), "epoch %d step %lld", ep, step);
        CHECK(h.count == EPOCHS && fabs(loss - h.epochs[EPOCHS - 1].train.loss) < 1e-6 * (1 + fabs(loss)) &&
                  fabs(val_loss - h.epochs[EPOCHS - 1].val.loss) < 1e-6 * (1 + fabs(val_loss)),
              "loss %g val_loss %g", loss, val_loss);
        free(csv);
    }
    snprintf(path, sizeof path, "%s/curves.svg", logdir);
    char *svg = (char *)slurp(path, &len);
    CHECK(svg != NULL, "no %s", path);
    if (svg) {
        CHECK(strstr(svg, "<svg") != NULL && strstr(svg, "</svg>") != NULL, "not an svg");
        CHECK(count(svg, "<polyline") == 2, "%d polylines", count(svg, "<polyline"));
        CHECK(strstr(svg, "val loss") != NULL, "no legend");
        free(svg);
    }
    /* no temp file left behind; one event file with 1 + EPOCHS * 5 events */
    DIR *dd = opendir(logdir);
    int tmp = 0;
    for (struct dirent *e; dd && (e = readdir(dd));) tmp += strstr(e->d_name, ".tmp") != NULL;
    if (dd) closedir(dd);
    CHECK(tmp == 0, "%d temp files left", tmp);
    CHECK(find_event_file(logdir, path, sizeof path), "no event file in %s", logdir);
    event ev[64];
    const int n = read_events(path, ev, 64);
    CHECK(n == 1 + EPOCHS * 5, "%d events", n);
    if (n == 1 + EPOCHS * 5) {
        CHECK(strcmp(ev[1].tag, "lr") == 0 && strcmp(ev[2].tag, "train/loss") == 0 &&
                  strcmp(ev[3].tag, "val/loss") == 0 && strcmp(ev[5].tag, "val/accuracy") == 0,
              "tags %s %s %s %s", ev[1].tag, ev[2].tag, ev[3].tag, ev[5].tag);
        CHECK(ev[n - 1].step == EPOCHS, "last step %lld", (long long)ev[n - 1].step);
        CHECK(fabsf(ev[n - 2].value - (float)h.epochs[EPOCHS - 1].train.accuracy) < 1e-6f, "accuracy %g vs %g",
              ev[n - 2].value, h.epochs[EPOCHS - 1].train.accuracy);
    }
    magna_history_free(&h);

    /* a log_dir under a regular file cannot be made */
    char blocker[128], bad[192];
    snprintf(blocker, sizeof blocker, "%s/plainfile", dir);
    FILE *f = fopen(blocker, "w");
    if (f) fputs("x", f), fclose(f);
    snprintf(bad, sizeof bad, "%s/logs", blocker);
    st = magna_model_fit(m, &d, NULL, &(magna_fit_opts){.epochs = 1, .log_dir = bad}, NULL);
    CHECK(st == MAGNA_ERR_IO, "fit with an impossible log_dir: %d", st);
    CHECK(strstr(magna_model_errmsg(m), bad) != NULL, "message does not name %s: %s", bad, magna_model_errmsg(m));
    printf("(impossible log_dir: %s)\n", magna_model_errmsg(m));
    magna_model_free(m);
}

/* Reopening for a resumed run keeps the rows of earlier epochs, drops later ones, and refuses other columns. */
static void test_reopen(void) {
    char d[128], csv[160];
    snprintf(d, sizeof d, "%s/reopen", dir);
    snprintf(csv, sizeof csv, "%s/log.csv", d);
    magna_error err;
    magna_train_log *l = magna_train_log_open(d, &err);
    CHECK(l != NULL, "%s", err.message);
    if (!l) return;
    for (int e = 1; e <= 3; e++) {
        const magna_log_scalar s[] = {{"lr", 0.5}, {"train/loss", 1.0 / e}, {"val/loss", 2.0 / e}};
        CHECK(magna_train_log_epoch(l, e, 10 * e, 3, s, &err) == MAGNA_OK, "%s", err.message);
    }
    magna_train_log_close(l);
    l = magna_train_log_reopen(d, 3, &err); /* epoch 3 runs again */
    CHECK(l != NULL, "%s", err.message);
    if (!l) return;
    const magna_log_scalar s[] = {{"lr", 0.5}, {"train/loss", 0.25}, {"val/loss", 0.75}};
    CHECK(magna_train_log_epoch(l, 3, 30, 3, s, &err) == MAGNA_OK, "%s", err.message);
    magna_train_log_close(l);
    size_t len;
    char *text = (char *)slurp(csv, &len);
    CHECK(text && strcmp(text, "epoch,step,lr,loss,val_loss\n1,10,0.5,1,2\n2,20,0.5,0.5,1\n3,30,0.5,0.25,0.75\n") == 0,
          "epochs 1-2 kept, 3 replaced: %s", text ? text : "(none)");
    free(text);
    snprintf(csv, sizeof csv, "%s/curves.svg", d);
    text = (char *)slurp(csv, &len);
    int points = 0;
    for (char *p = text; p && (p = strstr(p, "<circle")); p++) points++;
    CHECK(points == 6, "curves.svg has 3 epochs of train and validation loss after the reopen (%d markers)", points);
    free(text);
    l = magna_train_log_reopen(d, 2, &err);
    CHECK(l != NULL, "%s", err.message);
    if (!l) return;
    const magna_log_scalar other[] = {{"lr", 0.5}, {"train/loss", 0.25}};
    CHECK(magna_train_log_epoch(l, 2, 20, 2, other, &err) == MAGNA_ERR_FORMAT && strstr(err.message, "columns"),
          "other columns refused: %s", err.message);
    magna_train_log_close(l);
}

static void rm_rf(const char *p) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", p);
}

int main(void) {
    magna_error err;
    if (magna_runtime_init(&err) != MAGNA_OK) {
        printf("runtime: %s\n", err.message);
        return 1;
    }
    snprintf(dir, sizeof dir, "/tmp/magna_logs_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_crc();
    test_event_file();
    test_fit_logs();
    test_reopen();
    if (!getenv("MAGNA_KEEP_LOGS")) rm_rf(dir); else printf("kept %s\n", dir);
    return check_finish("test_logs");
}
