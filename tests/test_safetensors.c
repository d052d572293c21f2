/* test_safetensors.c — checkpoints: a saved model loads back bit for bit, fit's checkpoint holds the best
 * epoch's weights, every kind of malformed file gets its own error (and changes nothing), and a failed
 * save leaves the previous file as it was. Synthetic data; files live in a temp directory. */
#include "check.h"
#include "magna.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

enum { ROWS = 96, FEATURES = 4, BATCH = 16 };
static float X[ROWS * FEATURES], Y[ROWS];
static char dir[64];

static void make_data(void) {
    for (int r = 0; r < ROWS; r++) {
        float y = 0.3f;
        for (int j = 0; j < FEATURES; j++) {
            X[r * FEATURES + j] = 2 * magna_rand_uniform(9, 1, (uint64_t)(r * FEATURES + j)) - 1;
            y += (float)(j + 1) * X[r * FEATURES + j] * X[r * FEATURES + j] - 0.5f * X[r * FEATURES + j];
        }
        Y[r] = y;
    }
}

/* dense -> batch norm (state nodes) -> relu dense -> dense */
static magna_model *make_model_lr(uint64_t seed, bool small, float lr) {
    magna_model *m = magna_model_new(seed, BATCH);
    magna_model_input(m, "x", MAGNA_F32, 1, SHAPE(FEATURES));
    if (small)
        magna_model_sequential(m, (magna_layer_spec[]){MAGNA_DENSE(3, 0)}, 1);
    else
        magna_model_sequential(m,
                               (magna_layer_spec[]){MAGNA_DENSE(16, 0), MAGNA_BATCH_NORM(),
                                                    MAGNA_DENSE(16, MAGNA_ACT_RELU), MAGNA_DENSE(1, 0)},
                               4);
    magna_status st = magna_model_compile(
        m, &(magna_compile_opts){.loss = MAGNA_LOSS_MSE, .optimizer = {.kind = MAGNA_ADAM, .lr = lr}});
    CHECK(st == MAGNA_OK, "compile: %s", magna_model_errmsg(m));
    return m;
}
static magna_model *make_model(uint64_t seed, bool small) { return make_model_lr(seed, small, 1e-2f); }

static char *path_in(const char *name) {
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)n + 1);
    *len = fread(p, 1, (size_t)n, f);
    fclose(f);
    return p;
}

static void test_round_trip(void) {
    magna_model *a = make_model(1, false);
    magna_dataset d = {.rows = ROWS, .x = X, .y = Y};
    CHECK(magna_model_fit(a, &d, NULL, &(magna_fit_opts){.epochs = 3}, NULL) == MAGNA_OK, "%s", magna_model_errmsg(a));
    magna_error err;
    const char *p = path_in("round.safetensors");
    const char *const meta[] = {"note", "quote \" backslash \\ newline \n tab \t ctl \x01 é", "k2", "", NULL};
    CHECK(magna_save_safetensors(magna_model_graph(a), p, meta, &err) == MAGNA_OK, "%s", err.message);

    /* the header is 8-byte aligned, parses, and carries the metadata and every tensor */
    size_t len = 0;
    unsigned char *bytes = read_file(p, &len);
    CHECK(bytes && len >= 8, "file read back");
    if (bytes && len >= 8) {
        uint64_t hlen = 0;
        for (int i = 0; i < 8; i++) hlen |= (uint64_t)bytes[i] << (8 * i);
        CHECK(hlen % 8 == 0 && hlen + 8 <= len, "header length %llu", (unsigned long long)hlen);
        json_error_t je;
        json_t *root = json_loadb((const char *)bytes + 8, hlen, JSON_REJECT_DUPLICATES, &je);
        CHECK(root != NULL, "header parses: %s", je.text);
        if (root) {
            json_t *m = json_object_get(root, "__metadata__");
            CHECK(m && strcmp(json_string_value(json_object_get(m, "note")), meta[1]) == 0, "metadata escaped and back");
            magna_graph *g = magna_model_graph(a);
            const int n = magna_graph_param_count(g) + magna_graph_state_count(g);
            CHECK((int)json_object_size(root) == n + 1, "%d tensors + metadata, got %zu", n, json_object_size(root));
            CHECK(magna_graph_state_count(g) > 0, "the model has state nodes");
            json_decref(root);
        }
    }
    free(bytes);

    magna_model *b = make_model(77, false); /* other seed: other weights until loaded */
    CHECK(magna_load_safetensors(magna_model_graph(b), p, &err) == MAGNA_OK, "%s", err.message);
    static float pa[ROWS], pb[ROWS];
    CHECK(magna_model_predict(a, &d, pa) == MAGNA_OK, "%s", magna_model_errmsg(a));
    CHECK(magna_model_predict(b, &d, pb) == MAGNA_OK, "%s", magna_model_errmsg(b));
    CHECK(memcmp(pa, pb, sizeof pa) == 0, "predictions identical bit for bit after load");
    size_t np, ns, np2, ns2;
    float *wa = magna_graph_params(magna_model_graph(a), &np), *wb = magna_graph_params(magna_model_graph(b), &np2);
    float *sa = magna_graph_states(magna_model_graph(a), &ns), *sb = magna_graph_states(magna_model_graph(b), &ns2);
    CHECK(np == np2 && memcmp(wa, wb, np * sizeof(float)) == 0, "params identical");
    CHECK(ns == ns2 && memcmp(sa, sb, ns * sizeof(float)) == 0, "states identical");

    /* an architecture that differs is refused by shape / name */
    magna_model *c = make_model(1, true);
    CHECK(magna_load_safetensors(magna_model_graph(c), p, &err) == MAGNA_ERR_FORMAT, "other architecture refused");
    magna_model_free(a), magna_model_free(b), magna_model_free(c);
}

static void test_checkpoint_in_fit(void) {
    /* a high learning rate, so the val loss goes up and down and the best epoch is not the last */
    magna_model *m = make_model_lr(3, false, 0.2f);
    magna_dataset d = {.rows = ROWS, .x = X, .y = Y};
    magna_history h;
    const char *p = path_in("best.safetensors");
    CHECK(magna_model_fit(m, &d, NULL,
                          &(magna_fit_opts){.epochs = 20, .validation_split = 0.25f, .checkpoint_path = p}, &h) ==
              MAGNA_OK,
          "%s", magna_model_errmsg(m));
    CHECK(h.best_epoch >= 1 && h.best_epoch <= h.count, "best epoch %d of %d", h.best_epoch, h.count);
    CHECK(h.best_epoch < h.count, "the best epoch (%d) is not the last (%d): the checkpoint is not just the final weights",
          h.best_epoch, h.count);
    double best_val = h.best_epoch >= 1 ? h.epochs[h.best_epoch - 1].val.loss : NAN;
    for (int i = 0; i < h.count; i++) CHECK(h.epochs[i].val.loss >= best_val, "epoch %d is no better", i + 1);

    magna_model *fresh = make_model(99, false);
    magna_error err;
    CHECK(magna_load_safetensors(magna_model_graph(fresh), p, &err) == MAGNA_OK, "%s", err.message);
    const int64_t n_val = (int64_t)(ROWS * 0.25f);
    magna_dataset val = {.rows = n_val, .x = X + (ROWS - n_val) * FEATURES, .y = Y + (ROWS - n_val)};
    magna_scores s;
    CHECK(magna_model_evaluate(fresh, &val, &s) == MAGNA_OK, "%s", magna_model_errmsg(fresh));
    CHECK(s.loss == best_val, "checkpoint scores the best val loss: %.9g vs %.9g", s.loss, best_val);

    size_t len = 0;
    unsigned char *bytes = read_file(p, &len);
    char want[64];
    snprintf(want, sizeof want, "\"epoch\":\"%d\"", h.best_epoch);
    CHECK(bytes && strstr((const char *)bytes + 8, want) && strstr((const char *)bytes + 8, "\"val_loss\":\""),
          "metadata names the best epoch (%s)", want);
    free(bytes);
    magna_history_free(&h);

    /* a checkpoint that cannot be written stops fit with the error */
    CHECK(magna_model_fit(m, &d, NULL,
                          &(magna_fit_opts){.epochs = 2, .checkpoint_path = "/nonexistent-magna-dir/x.safetensors"},
                          NULL) == MAGNA_ERR_IO,
          "failed checkpoint stops fit");
    CHECK(strstr(magna_model_errmsg(m), "checkpoint") != NULL, "message: %s", magna_model_errmsg(m));
    magna_model_free(m), magna_model_free(fresh);
}

/* ---- malformed files, against the small model (w [4, 3], b [3]) ----------------------------------- */

static const char *wname, *bname;

static void write_raw(const char *path, uint64_t hlen, const char *hdr, size_t hdr_bytes, size_t data_bytes) {
    FILE *f = fopen(path, "wb");
    unsigned char l8[8];
    for (int i = 0; i < 8; i++) l8[i] = (unsigned char)(hlen >> (8 * i));
    fwrite(l8, 1, 8, f);
    if (hdr_bytes) fwrite(hdr, 1, hdr_bytes, f);
    for (size_t i = 0; i < data_bytes; i++) fputc(0x3f, f);
    fclose(f);
}

static void write_st(const char *path, const char *hdr, size_t data_bytes) {
    write_raw(path, strlen(hdr), hdr, strlen(hdr), data_bytes);
}

static void expect_format(magna_model *m, const char *path, magna_status want, const char *needle, const char *what) {
    magna_error err = {0};
    size_t np;
    float *w = magna_graph_params(magna_model_graph(m), &np);
    float *before = malloc(np * sizeof(float));
    memcpy(before, w, np * sizeof(float));
    magna_status st = magna_load_safetensors(magna_model_graph(m), path, &err);
    CHECK(st == want, "%s: status %s, want %s (%s)", what, magna_status_name(st), magna_status_name(want), err.message);
    CHECK(strstr(err.message, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.message, needle);
    CHECK(strstr(err.message, path) != NULL, "%s: message names the file: %s", what, err.message);
    CHECK(memcmp(before, w, np * sizeof(float)) == 0, "%s: weights untouched", what);
    free(before);
}

static void test_malformed(void) {
    magna_model *m = make_model(5, true);
    magna_graph *g = magna_model_graph(m);
    CHECK(magna_graph_param_count(g) == 2 && magna_graph_state_count(g) == 0, "small model: w and b");
    wname = magna_node_name(magna_graph_param_at(g, 0));
    bname = magna_node_name(magna_graph_param_at(g, 1));
    CHECK(magna_node_numel(magna_graph_param_at(g, 0)) == 12 && magna_node_numel(magna_graph_param_at(g, 1)) == 3,
          "shapes [4, 3] and [3]");
    char h[1024];
    const char *p = path_in("bad.safetensors");
#define TENSORS(w_dtype, w_shape, w_off, b_off)                                                                       \
    snprintf(h, sizeof h,                                                                                              \
             "{\"%s\":{\"dtype\":\"%s\",\"shape\":%s,\"data_offsets\":%s},"                                           \
             "\"%s\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":%s}}",                                         \
             wname, w_dtype, w_shape, w_off, bname, b_off)

    /* a good hand-written file loads (the baseline the cases below break one field of) */
    TENSORS("F32", "[4,3]", "[0,48]", "[48,60]");
    write_st(p, h, 60);
    magna_error err;
    CHECK(magna_load_safetensors(g, p, &err) == MAGNA_OK, "hand-written file: %s", err.message);

    write_raw(p, 0, NULL, 0, 0);
    truncate(p, 5);
    expect_format(m, p, MAGNA_ERR_FORMAT, "truncated", "truncated header length");
    write_raw(p, 1000, "{}", 2, 0);
    expect_format(m, p, MAGNA_ERR_FORMAT, "past the end", "header length beyond the file");
    FILE *zf = fopen(p, "wb"); /* what torch.save writes: a zip archive */
    static const char zip[] = "PK\x03\x04\x14\x00\x00\x00\x08\x00archive/data.pkl";
    fwrite(zip, 1, sizeof zip - 1, zf);
    fclose(zf);
    expect_format(m, p, MAGNA_ERR_FORMAT, "not a safetensors file: it starts 50 4b 03 04", "wrong magic (a zip)");
    write_raw(p, 2, "[]", 2, 0);
    expect_format(m, p, MAGNA_ERR_FORMAT, "not a safetensors file", "a header that is not an object");
    write_raw(p, 1, "{", 1, 0);
    expect_format(m, p, MAGNA_ERR_FORMAT, "not sane", "a header length too short for JSON");
    TENSORS("F32", "[4,3]", "[0,48]", "[48,60]");
    write_st(p, h, 60);
    truncate(p, 8 + (off_t)strlen(h) + 30);
    expect_format(m, p, MAGNA_ERR_FORMAT, "out of range (the data section is 30 bytes)", "a file cut in its data");
    truncate(p, 8 + 40);
    expect_format(m, p, MAGNA_ERR_FORMAT, "past the end", "a file cut in its header");
    TENSORS("F32", "[4,3]", "[-4,44]", "[48,60]");
    write_st(p, h, 60);
    expect_format(m, p, MAGNA_ERR_FORMAT, "out of range", "a negative offset");
    TENSORS("F32", "[4,3]", "[0,18446744073709551615]", "[48,60]");
    write_st(p, h, 60);
    expect_format(m, p, MAGNA_ERR_FORMAT, "too big integer", "an offset beyond int64");
    TENSORS("F32", "[4,-3]", "[0,48]", "[48,60]");
    write_st(p, h, 60);
    expect_format(m, p, MAGNA_ERR_FORMAT, "negative entry", "a negative dimension");
    TENSORS("F32", "[4,3]", "[48,0]", "[48,60]");
    write_st(p, h, 60);
    expect_format(m, p, MAGNA_ERR_FORMAT, "out of range", "begin after end");
    write_st(p, "{this is not json}", 0);
    expect_format(m, p, MAGNA_ERR_FORMAT, "not valid JSON", "not JSON");
    snprintf(h, sizeof h,
             "{\"%s\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},"
             "\"%s\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},"
             "\"%s\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}}",
             wname, wname, bname);
    write_st(p, h, 60);
    expect_format(m, p, MAGNA_ERR_FORMAT, "duplicate", "duplicate keys");
    TENSORS("F64", "[4,3]", "[0,48]", "[48,60]");
    write_st(p, h, 60);
    expect_format(m, p, MAGNA_ERR_FORMAT, "dtype 'F64'", "wrong dtype");
    TENSORS("F32", "[3,4]", "[0,48]", "[48,60]");
    write_st(p, h, 60);
    expect_format(m, p, MAGNA_ERR_FORMAT, "shape [3, 4]", "wrong shape");
    TENSORS("F32", "[4,3]", "[0,48]", "[48,60]");
    write_st(p, h, 56);
    expect_format(m, p, MAGNA_ERR_FORMAT, "out of range", "offsets out of range");
    TENSORS("F32", "[4,3]", "[0,48]", "[40,52]");
    write_st(p, h, 60);
    expect_format(m, p, MAGNA_ERR_FORMAT, "overlap", "overlapping offsets");
    TENSORS("F32", "[4,3]", "[0,44]", "[44,56]");
    write_st(p, h, 56);
    expect_format(m, p, MAGNA_ERR_FORMAT, "span 44 bytes", "offsets that don't match the shape");
    TENSORS("F32", "[4,3]", "[0,48]", "[48,60]");
    write_st(p, h, 64);
    expect_format(m, p, MAGNA_ERR_FORMAT, "data size mismatch", "data size mismatch");
    TENSORS("F32", "[4,3]", "[12,60]", "[60,72]");
    write_st(p, h, 72);
    expect_format(m, p, MAGNA_ERR_FORMAT, "gap", "a gap in the data");
    snprintf(h, sizeof h, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]}}", wname);
    write_st(p, h, 48);
    char want[128];
    snprintf(want, sizeof want, "missing tensor '%s'", bname);
    expect_format(m, p, MAGNA_ERR_FORMAT, want, "missing tensor");
    snprintf(h, sizeof h,
             "{\"%s\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},"
             "\"%s\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]},"
             "\"ghost\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[60,64]}}",
             wname, bname);
    write_st(p, h, 64);
    expect_format(m, p, MAGNA_ERR_FORMAT, "unknown tensor 'ghost'", "unknown tensor");
    snprintf(h, sizeof h,
             "{\"__metadata__\":{\"epoch\":3},\"%s\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},"
             "\"%s\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}}",
             wname, bname);
    write_st(p, h, 60);
    expect_format(m, p, MAGNA_ERR_FORMAT, "__metadata__", "non-string metadata");
    FILE *f = fopen(p, "wb");
    fclose(f);
    expect_format(m, p, MAGNA_ERR_FORMAT, "empty file", "empty file");
    expect_format(m, path_in("no-such-file.safetensors"), MAGNA_ERR_IO, "No such file", "missing file");
#undef TENSORS
    magna_model_free(m);
}

/* ---- atomicity ------------------------------------------------------------------------------------ */

static int count_temp_files(void) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

static void test_atomic(void) {
    magna_model *a = make_model(11, false), *b = make_model(12, false);
    magna_error err;
    CHECK(magna_save_safetensors(magna_model_graph(a), "/nonexistent-magna-dir/m.safetensors", NULL, &err) ==
              MAGNA_ERR_IO,
          "a directory that doesn't exist");
    CHECK(strstr(err.message, "No such file") != NULL, "strerror in: %s", err.message);

    /* a path whose parent is a regular file */
    const char *reg = path_in("regular");
    FILE *f = fopen(reg, "wb");
    fputs("x", f);
    fclose(f);
    char under[300];
    snprintf(under, sizeof under, "%s/m.safetensors", reg);
    CHECK(magna_save_safetensors(magna_model_graph(a), under, NULL, &err) == MAGNA_ERR_IO, "parent is a file");
    CHECK(strstr(err.message, "Not a directory") != NULL, "strerror in: %s", err.message);

    /* the disk "fills" mid-write (RLIMIT_FSIZE, which root does not bypass): the old file stays as it was */
    const char *p = path_in("keep.safetensors");
    CHECK(magna_save_safetensors(magna_model_graph(a), p, NULL, &err) == MAGNA_OK, "%s", err.message);
    size_t len0 = 0, len1 = 0;
    unsigned char *before = read_file(p, &len0);
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit small = {.rlim_cur = 100, .rlim_max = old.rlim_max};
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0, "setrlimit: %s", strerror(errno));
    magna_status st = magna_save_safetensors(magna_model_graph(b), p, NULL, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(st == MAGNA_ERR_IO, "a save that cannot write fails: %s", magna_status_name(st));
    CHECK(strstr(err.message, "too large") != NULL, "strerror (EFBIG) in: %s", err.message);
    unsigned char *after = read_file(p, &len1);
    CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0, "the old file's bytes are identical");
    CHECK(count_temp_files() == 0, "the temp file was removed");
    free(before), free(after);
    /* and it still loads as the first model's weights */
    magna_model *c = make_model(13, false);
    CHECK(magna_load_safetensors(magna_model_graph(c), p, &err) == MAGNA_OK, "%s", err.message);
    size_t n1, n2;
    float *w1 = magna_graph_params(magna_model_graph(a), &n1), *w2 = magna_graph_params(magna_model_graph(c), &n2);
    CHECK(n1 == n2 && memcmp(w1, w2, n1 * sizeof(float)) == 0, "old weights intact");

    /* a save over an existing file replaces it */
    CHECK(magna_save_safetensors(magna_model_graph(b), p, NULL, &err) == MAGNA_OK, "%s", err.message);
    CHECK(magna_load_safetensors(magna_model_graph(c), p, &err) == MAGNA_OK, "%s", err.message);
    w1 = magna_graph_params(magna_model_graph(b), &n1);
    CHECK(memcmp(w1, w2, n1 * sizeof(float)) == 0, "new weights after a good save");
    CHECK(count_temp_files() == 0, "no temp file left");
    magna_model_free(a), magna_model_free(b), magna_model_free(c);
}

/* Optional: the `safetensors` Python package reads our file, when it is installed. */
static void test_python_reader(void) {
    /* a Python with safetensors: $MAGNA_ST_PYTHON (ctest: .venv-interop's), else python3 */
    const char *py = getenv("MAGNA_ST_PYTHON") && access(getenv("MAGNA_ST_PYTHON"), X_OK) == 0 ? getenv("MAGNA_ST_PYTHON")
                                                                                              : "python3";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import safetensors, numpy' >/dev/null 2>&1", py);
    if (system(cmd) != 0) {
        printf("python safetensors not installed: skipping the cross-check\n");
        return;
    }
    snprintf(cmd, sizeof cmd,
             "'%s' -c 'from safetensors.numpy import load_file; t = load_file(\"%s\"); "
             "assert len(t) > 0 and all(v.dtype.name == \"float32\" for v in t.values())'",
             py, path_in("round.safetensors"));
    CHECK(system(cmd) == 0, "python safetensors loads our file");
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/magna_st_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    make_data();
    test_round_trip();
    test_checkpoint_in_fit();
    test_malformed();
    test_atomic();
    test_python_reader();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    return check_finish("test_safetensors");
}
