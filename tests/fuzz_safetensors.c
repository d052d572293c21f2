/* fuzz_safetensors.c — the safetensors loader's fuzz target: whatever the bytes, every reader returns a
 * status with a message (never crashes, never reads out of bounds, never leaks). Built two ways:
 *   - with libFuzzer (clang -fsanitize=fuzzer,address; CMake option MAGNA_FUZZ, target fuzz_safetensors):
 *       build/fuzz_safetensors -max_total_time=60 CORPUS_DIR   (seed it with test_fuzz_safetensors --corpus DIR)
 *   - into test_fuzz_safetensors (any compiler), whose main replays seeds and seeded mutations of them.
 * The input goes to a memfd read back through /proc/self/fd, so the real file code path runs. */
#define _GNU_SOURCE
#include "fuzz_safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static magna_model *model;
int fuzz_accepted[3];
static float *moment_m, *moment_v;
static size_t n_moments; /* Adam's moments have the flat parameter buffer's length (aligned, so > 15) */

magna_model *fuzz_model(void) {
    if (model) return model;
    magna_set_threads(1);
    model = magna_model_new(5, 4);
    magna_model_input(model, "x", MAGNA_F32, 1, (int64_t[]){4});
    magna_model_sequential(model, (magna_layer_spec[]){MAGNA_DENSE(3, 0)}, 1);
    if (magna_model_compile(model, &(magna_compile_opts){.loss = MAGNA_LOSS_MSE,
                                                         .optimizer = {.kind = MAGNA_ADAM, .lr = 1e-2f}}) != MAGNA_OK) {
        fprintf(stderr, "fuzz_safetensors: %s\n", magna_model_errmsg(model));
        abort();
    }
    magna_graph_params(magna_model_graph(model), &n_moments);
    moment_m = calloc(n_moments + 1, sizeof(float)), moment_v = calloc(n_moments + 1, sizeof(float));
    if (!moment_m || !moment_v) abort();
    return model;
}

/* A failure must say what failed, with one of the loader's statuses. */
static void check(magna_status st, const magna_error *err, const char *what) {
    if (st == MAGNA_OK) return;
    const bool known = st == MAGNA_ERR_FORMAT || st == MAGNA_ERR_IO || st == MAGNA_ERR_NOMEM;
    if (!known || !err->message[0]) {
        fprintf(stderr, "fuzz_safetensors: %s returned %s with message '%s'\n", what, magna_status_name(st),
                err->message);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    magna_model *m = fuzz_model();
    magna_graph *g = magna_model_graph(m);
    const int fd = memfd_create("fuzz-safetensors", MFD_CLOEXEC);
    if (fd < 0) return 0;
    size_t done = 0;
    while (done < size) {
        const ssize_t n = write(fd, data + done, size - done);
        if (n <= 0) break;
        done += (size_t)n;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    magna_error err;
    magna_st_metadata md;
    magna_status st = magna_load_safetensors(g, path, &err);
    check(st, &err, "load_safetensors");
    fuzz_accepted[0] += st == MAGNA_OK;
    const magna_st_tensor extra[2] = {{"optimizer.m", 1, {(int64_t)n_moments}, moment_m},
                                      {"optimizer.v", 1, {(int64_t)n_moments}, moment_v}};
    st = magna_load_safetensors_ex(g, extra, 2, path, &md, &err);
    check(st, &err, "load_safetensors_ex");
    fuzz_accepted[1] += st == MAGNA_OK;
    magna_st_metadata_free(&md);
    st = magna_read_safetensors_metadata(path, &md, &err);
    check(st, &err, "read_safetensors_metadata");
    for (int i = 0; st == MAGNA_OK && i < md.count; i++) /* every key and value is a readable string */
        if (strlen(md.keys[i]) > size || strlen(md.values[i]) > size) abort();
    magna_st_metadata_free(&md);
    /* the checkpoint reader on top: its metadata parsing; an error is the model's message */
    st = magna_model_resume(m, path);
    if (st != MAGNA_OK && !magna_model_errmsg(m)[0]) abort();
    fuzz_accepted[2] += st == MAGNA_OK;
    close(fd);
    return 0;
}
