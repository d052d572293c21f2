/* test_fuzz_safetensors.c — the fuzz target (fuzz_safetensors.c) in the normal suite: seeds (a checkpoint of
 * fit, a weights file, small hand-written headers) and a few thousand seeded mutations of them (bit flips,
 * interesting bytes, truncation, header lengths, numbers in the JSON swapped for huge or negative ones), each
 * through every reader. Under `make sanitize` it runs with ASan + UBSan. --corpus DIR writes the seeds for
 * libFuzzer; --iterations N changes the count. */
#include "check.h"
#include "fuzz_safetensors.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct blob {
    unsigned char *p;
    size_t n;
} blob;

static blob read_all(const char *path) {
    blob b = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return b;
    fseek(f, 0, SEEK_END);
    const long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.p = malloc((size_t)n + 1);
    b.n = fread(b.p, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static blob from_header(const char *h, size_t data) {
    const size_t hl = strlen(h);
    blob b = {malloc(8 + hl + data + 1), 8 + hl + data};
    for (int i = 0; i < 8; i++) b.p[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(b.p + 8, h, hl);
    memset(b.p + 8 + hl, 0x3f, data);
    return b;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) { /* xorshift64*: the same mutations on every machine */
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}
static size_t below(size_t n) { return n ? (size_t)(next() % n) : 0; }

/* One to four mutations of a copy of `s`. */
static blob mutate(const blob *s) {
    blob b = {malloc(s->n + 64), s->n};
    memcpy(b.p, s->p, s->n);
    static const unsigned char interesting[] = {'{', '}', '[', ']', '"', ',', ':', '-', '0', '9', 'e', '\\', 0, 0xff, 0x80};
    static const char *const numbers[] = {"18446744073709551615", "-1", "99999999999", "0", "9223372036854775807",
                                          "1e308", "4294967296"};
    const int k = 1 + (int)below(4);
    for (int i = 0; i < k && b.n > 0; i++) {
        switch (below(6)) {
        case 0: b.p[below(b.n)] ^= (unsigned char)(1u << below(8)); break;
        case 1: b.p[below(b.n)] = interesting[below(sizeof interesting)]; break;
        case 2: b.n = below(b.n + 1); break; /* truncated */
        case 3: {                            /* the header length: off by a little, or absurd */
            const uint64_t hl = b.n >= 8 ? (uint64_t)b.p[0] | (uint64_t)b.p[1] << 8 | (uint64_t)b.p[2] << 16 : 0;
            const uint64_t vals[] = {0, 1, 2, hl + 1, hl - 1, (uint64_t)b.n, (uint64_t)b.n - 8, UINT64_MAX, 1ull << 40};
            const uint64_t v = vals[below(sizeof vals / sizeof vals[0])];
            for (int j = 0; j < 8 && (size_t)j < b.n; j++) b.p[j] = (unsigned char)(v >> (8 * j));
            break;
        }
        case 4: { /* a number in the header becomes another (offsets, shapes) */
            size_t at = 8 + below(b.n > 8 ? b.n - 8 : 1);
            while (at < b.n && !(b.p[at] >= '0' && b.p[at] <= '9')) at++;
            if (at >= b.n) break;
            size_t end = at;
            while (end < b.n && b.p[end] >= '0' && b.p[end] <= '9') end++;
            const char *r = numbers[below(sizeof numbers / sizeof numbers[0])];
            const size_t rl = strlen(r), grow = rl > end - at ? rl - (end - at) : 0;
            unsigned char *p = realloc(b.p, b.n + grow + 64);
            if (!p) break;
            b.p = p;
            memmove(b.p + at + rl, b.p + end, b.n - end);
            memcpy(b.p + at, r, rl);
            b.n = b.n - (end - at) + rl;
            break;
        }
        default: { /* a byte deleted */
            const size_t at = below(b.n);
            memmove(b.p + at, b.p + at + 1, b.n - at - 1);
            b.n--;
        }
        }
    }
    return b;
}

int main(int argc, char **argv) {
    const char *corpus = NULL;
    long iterations = 3000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--corpus") == 0) corpus = argv[i + 1];
        if (strcmp(argv[i], "--iterations") == 0) iterations = atol(argv[i + 1]);
    }
    magna_model *m = fuzz_model();
    char dir[] = "/tmp/magna-fuzz-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");

    /* seeds: a checkpoint of fit (with Adam's moments and the run's metadata), a weights file, small headers */
    enum { ROWS = 8 };
    float x[ROWS * 4], y[ROWS * 3];
    for (int i = 0; i < ROWS * 4; i++) x[i] = (float)(i % 7) / 7.0f;
    for (int i = 0; i < ROWS * 3; i++) y[i] = (float)(i % 5) / 5.0f;
    magna_dataset d = {.rows = ROWS, .x = x, .y = y};
    CHECK(magna_model_fit(m, &d, NULL, &(magna_fit_opts){.epochs = 1, .checkpoint_dir = dir, .max_steps = 1}, NULL) ==
              MAGNA_OK,
          "%s", magna_model_errmsg(m));
    char path[128];
    snprintf(path, sizeof path, "%s/step-000000001.safetensors", dir);
    blob seeds[6];
    int ns = 0;
    seeds[ns++] = read_all(path);
    CHECK(seeds[0].n > 8, "the checkpoint seed (%s)", path);
    CHECK(magna_model_resume(m, path) == MAGNA_OK, "the seed resumes: %s", magna_model_errmsg(m));
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    magna_error err;
    CHECK(magna_save_safetensors(magna_model_graph(m), path, (const char *const[]){"epoch", "1", NULL}, &err) == MAGNA_OK,
          "%s", err.message);
    seeds[ns++] = read_all(path);
    seeds[ns++] = from_header("{}", 0);
    seeds[ns++] = from_header("{\"__metadata__\":{\"magna_checkpoint\":\"1\",\"optimizer\":\"adam\",\"step\":\"3\"}}", 0);
    seeds[ns++] = from_header("{\"dense1.weight\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,48]},"
                              "\"dense1.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[48,60]}}",
                              60);
    seeds[ns++] = from_header("[1,2,3]", 4);
    if (corpus) {
        mkdir(corpus, 0755);
        for (int i = 0; i < ns; i++) {
            char p[4200];
            snprintf(p, sizeof p, "%s/seed-%d.safetensors", corpus, i);
            FILE *f = fopen(p, "wb");
            if (f) fwrite(seeds[i].p, 1, seeds[i].n, f), fclose(f);
        }
        printf("wrote %d seeds to %s\n", ns, corpus);
    }

    for (int i = 0; i < ns; i++) LLVMFuzzerTestOneInput(seeds[i].p, seeds[i].n);
    const int seeds_ok = fuzz_accepted[1];
    CHECK(fuzz_accepted[2] >= 1 && seeds_ok >= 1, "the checkpoint seed passes every reader (%d, %d, %d)",
          fuzz_accepted[0], fuzz_accepted[1], fuzz_accepted[2]);
    for (long i = 0; i < iterations; i++) {
        blob b = mutate(&seeds[below((size_t)ns)]);
        LLVMFuzzerTestOneInput(b.p, b.n); /* aborts on a status without a message; sanitizers catch the rest */
        free(b.p);
    }
    printf("%ld mutations: accepted by load %d, load with moments %d, resume %d\n", iterations, fuzz_accepted[0],
           fuzz_accepted[1], fuzz_accepted[2]);
    CHECK(fuzz_accepted[1] > seeds_ok, "some mutations still load (the mutations are not all fatal)");
    CHECK(fuzz_accepted[1] < iterations / 2, "most mutations are refused");
    for (int i = 0; i < ns; i++) free(seeds[i].p);
    magna_model_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    return check_finish("test_fuzz_safetensors");
}
