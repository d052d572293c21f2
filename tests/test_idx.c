/* test_idx.c — the IDX reader and the image helpers. One malformed file per reader error (plain and gzip),
 * each asserting the whole message (file, what was expected, what was found); the images+labels loader's
 * checks; every IDX type's byte order; the real Fashion-MNIST test and training sets; the seeded split,
 * standardisation, augmentation and the SVG grid. */
#include "magna.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static char dir[64];
static char *written[64];
static int n_written;

/* An IDX file's bytes: header of (type, dims) then `data_len` bytes of data (a pattern when data is NULL). */
static size_t idx_bytes(unsigned char *buf, int type, int ndim, const uint32_t *dims, const void *data,
                        size_t data_len) {
    size_t n = 0;
    buf[n++] = 0, buf[n++] = 0, buf[n++] = (unsigned char)type, buf[n++] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++) {
        buf[n++] = (unsigned char)(dims[i] >> 24), buf[n++] = (unsigned char)(dims[i] >> 16);
        buf[n++] = (unsigned char)(dims[i] >> 8), buf[n++] = (unsigned char)dims[i];
    }
    for (size_t i = 0; i < data_len; i++) buf[n + i] = data ? ((const unsigned char *)data)[i] : (unsigned char)(i * 7);
    return n + data_len;
}

static const char *path_of(const char *name) {
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    if (n_written < 64) written[n_written++] = path;
    return path;
}

static const char *write_plain(const char *name, const void *data, size_t len) {
    const char *path = path_of(name);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    return path;
}

static const char *write_gz(const char *name, const void *data, size_t len) {
    const char *path = path_of(name);
    gzFile f = gzopen(path, "wb");
    gzwrite(f, data, (unsigned)len);
    gzclose(f);
    return path;
}

/* The read must fail with `status` and the message "<path><suffix>". */
static void expect_error(const char *path, magna_status status, const char *suffix) {
    magna_idx x;
    magna_error e;
    magna_status st = magna_idx_read(path, &x, &e);
    char want[700];
    snprintf(want, sizeof want, "%s%s", path, suffix);
    CHECK(st == status, "%s: status %s, expected %s (%s)", path, magna_status_name(st), magna_status_name(status),
          st ? e.message : "no error");
    CHECK(st != MAGNA_OK && strcmp(e.message, want) == 0, "message\n  got  '%s'\n  want '%s'",
          st ? e.message : "(none)", want);
    CHECK(x.data == NULL && x.count == 0, "a failed read leaves *out zeroed");
}

static void test_reader_errors(void) {
    static unsigned char buf[1 << 16];
    size_t n;
    const uint32_t d3[3] = {10, 4, 5};

    expect_error(path_of("missing.idx"), MAGNA_ERR_IO, ": cannot open: No such file or directory");
    expect_error(write_plain("short.idx", "\0\0\x08", 3), MAGNA_ERR_FORMAT,
                 ": 3 bytes, too short for an IDX file (a 4-byte magic number and dims)");
    n = idx_bytes(buf, 0x08, 3, d3, NULL, 200);
    buf[0] = 0x1f, buf[1] = 0x8c;
    expect_error(write_plain("magic.idx", buf, n), MAGNA_ERR_FORMAT,
                 ": not an IDX file: the magic number is 1f 8c 08 03, expected 00 00 <type> <dims>");
    n = idx_bytes(buf, 0x0a, 3, d3, NULL, 200);
    expect_error(write_plain("dtype.idx", buf, n), MAGNA_ERR_FORMAT,
                 ": unknown IDX type 0x0a in the magic number (expected 0x08 ubyte, 0x09 byte, 0x0b short, 0x0c int, "
                 "0x0d float or 0x0e double)");
    n = idx_bytes(buf, 0x08, 0, d3, NULL, 0);
    expect_error(write_plain("ndim0.idx", buf, n), MAGNA_ERR_FORMAT,
                 ": the magic number gives 0 dims, expected 1 to 8");
    n = idx_bytes(buf, 0x08, 3, d3, NULL, 0);
    expect_error(write_plain("header.idx", buf, 12), MAGNA_ERR_FORMAT,
                 ": truncated header: 3 dims need 16 header bytes, the file has 12");
    n = idx_bytes(buf, 0x08, 3, (const uint32_t[]){10, 0, 5}, NULL, 0);
    expect_error(write_plain("dim0.idx", buf, n), MAGNA_ERR_FORMAT, ": dim 2 of 3 is 0: no data");
    n = idx_bytes(buf, 0x0e, 4, (const uint32_t[]){0xffffffffu, 0xffffffffu, 0xffffffffu, 2}, NULL, 0);
    expect_error(write_plain("overflow.idx", buf, n), MAGNA_ERR_FORMAT,
                 ": the header's dims multiply to more elements than memory holds");
    /* dims that claim far more than the file holds: refused from the size, before any allocation */
    n = idx_bytes(buf, 0x08, 3, (const uint32_t[]){10000, 28, 28}, NULL, 100);
    expect_error(write_plain("big.idx", buf, n), MAGNA_ERR_FORMAT,
                 ": truncated: the header's 10000 x 28 x 28 ubyte needs 7840000 bytes of data, the file has 100");
    n = idx_bytes(buf, 0x0c, 3, d3, NULL, 799);
    expect_error(write_plain("trunc.idx", buf, n), MAGNA_ERR_FORMAT,
                 ": truncated: the header's 10 x 4 x 5 int needs 800 bytes of data, the file has 799");
    n = idx_bytes(buf, 0x08, 3, d3, NULL, 203);
    expect_error(write_plain("trailing.idx", buf, n), MAGNA_ERR_FORMAT,
                 ": 3 bytes after the data: the header's 10 x 4 x 5 ubyte needs 200 bytes of data, the file has 203");

    /* the same through gzip, where the size is only known by reading */
    n = idx_bytes(buf, 0x08, 3, (const uint32_t[]){100, 28, 28}, NULL, 100);
    expect_error(write_gz("big.idx.gz", buf, n), MAGNA_ERR_FORMAT,
                 ": truncated: the header's 100 x 28 x 28 ubyte needs 78400 bytes of data, the file has 100");
    n = idx_bytes(buf, 0x08, 3, d3, NULL, 203);
    expect_error(write_gz("trailing.idx.gz", buf, n), MAGNA_ERR_FORMAT,
                 ": 3 bytes after the data: the header's 10 x 4 x 5 ubyte needs 200 bytes of data, the file has 203");
    n = idx_bytes(buf, 0x08, 3, d3, NULL, 200);
    buf[2] = 0x07;
    expect_error(write_gz("dtype.idx.gz", buf, n), MAGNA_ERR_FORMAT,
                 ": unknown IDX type 0x07 in the magic number (expected 0x08 ubyte, 0x09 byte, 0x0b short, 0x0c int, "
                 "0x0d float or 0x0e double)");
    /* a header claiming 4 GiB in a gzip file of a few dozen bytes: more than deflate can expand to */
    n = idx_bytes(buf, 0x08, 2, (const uint32_t[]){65536, 65536}, NULL, 10);
    const char *bomb = write_gz("claims.idx.gz", buf, n);
    magna_idx x;
    magna_error e;
    CHECK(magna_idx_read(bomb, &x, &e) == MAGNA_ERR_FORMAT &&
              strstr(e.message, ": the header's 65536 x 65536 ubyte needs 4294967296 bytes of data, more than a gzip "
                                "file of ") &&
              strstr(e.message, "bytes can hold (deflate compresses at most 1032:1)"),
          "gzip bomb header: %s", e.message);
    /* a gzip stream cut short: zlib's own complaint, naming the part being read */
    n = idx_bytes(buf, 0x08, 3, (const uint32_t[]){100, 10, 10}, NULL, 10000);
    const char *whole = write_gz("whole.idx.gz", buf, n);
    FILE *f = fopen(whole, "rb");
    static unsigned char gz[1 << 16];
    size_t gz_len = fread(gz, 1, sizeof gz, f);
    fclose(f);
    expect_error(write_plain("cut.idx.gz", gz, gz_len / 2), MAGNA_ERR_FORMAT,
                 ": gzip stream broken while reading the data: unexpected end of file");
    /* cut inside the 8-byte trailer (CRC and length): all the data inflates, and still the file is refused */
    expect_error(write_plain("cut_trailer.idx.gz", gz, gz_len - 3), MAGNA_ERR_FORMAT,
                 ": gzip stream broken while reading the bytes after the data: unexpected end of file");
    CHECK(magna_idx_read(whole, &x, &e) == MAGNA_OK && x.count == 10000, "the whole gzip file reads: %s", e.message);
    magna_idx_free(&x);
    printf("idx: reader errors checked\n");
}

/* Random damage to a valid file, plain and gzip: every read either succeeds with a consistent header or
 * fails with a message naming the file; none crashes (the sanitizer build runs this too). */
static void test_random_damage(void) {
    static unsigned char good[512], bad[512];
    const size_t n = idx_bytes(good, 0x0b, 3, (const uint32_t[]){5, 4, 3}, NULL, 120);
    const char *path = path_of("damaged.idx"), *gz_path = path_of("damaged.idx.gz");
    int ok = 0, refused = 0;
    bool sane = true;
    for (uint64_t k = 0; k < 400; k++) {
        memcpy(bad, good, n);
        size_t len = n;
        const uint64_t r = magna_rand_u64(9, 1, k);
        if (r % 3 == 0) len = (size_t)(magna_rand_u64(9, 2, k) % (n + 1)); /* cut anywhere */
        for (uint64_t j = 0; j < 1 + r % 4; j++)                           /* and flip a few bytes */
            bad[magna_rand_u64(9, 3, k * 8 + j) % (k % 2 ? 16 : n)] ^=
                (unsigned char)(1 + magna_rand_u64(9, 4, k * 8 + j) % 255);
        const char *p = k % 4 == 3 ? gz_path : path;
        if (p == gz_path) {
            gzFile f = gzopen(p, "wb");
            gzwrite(f, bad, (unsigned)len);
            gzclose(f);
        } else {
            FILE *f = fopen(p, "wb");
            fwrite(bad, 1, len, f);
            fclose(f);
        }
        magna_idx x;
        magna_error e;
        if (magna_idx_read(p, &x, &e) == MAGNA_OK) {
            int64_t count = 1;
            for (int i = 0; i < x.ndim; i++) count *= x.dims[i];
            sane &= count == x.count && 4 + 4 * (size_t)x.ndim + (size_t)x.count * x.elem_size == len;
            ok++;
            magna_idx_free(&x);
        } else {
            sane &= strncmp(e.message, p, strlen(p)) == 0 && strlen(e.message) > strlen(p) + 10;
            refused++;
        }
    }
    CHECK(sane && refused > 0, "random damage: %d read, %d refused", ok, refused);
    printf("idx: 400 damaged files: %d read (damage in the data only), %d refused, no crash\n", ok, refused);
}

/* Every type's big-endian elements come out in this machine's order. */
static void test_types(void) {
    static unsigned char buf[256];
    const uint32_t dim[1] = {2};
    magna_idx x;
    magna_error e;
    struct {
        int type;
        unsigned char be[16];
        size_t len;
        double want[2];
    } cases[] = {
        {0x08, {0x00, 0xff}, 2, {0, 255}},
        {0x09, {0x7f, 0x80}, 2, {127, -128}},
        {0x0b, {0x01, 0x02, 0xff, 0xfe}, 4, {258, -2}},
        {0x0c, {0x00, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff, 0xfd}, 8, {65536, -3}},
        {0x0d, {0x3f, 0xc0, 0x00, 0x00, 0xc1, 0x20, 0x00, 0x00}, 8, {1.5, -10}},
        {0x0e, {0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18, 0xbf, 0xf0, 0, 0, 0, 0, 0, 0}, 16, {M_PI, -1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        size_t n = idx_bytes(buf, cases[c].type, 1, dim, cases[c].be, cases[c].len);
        char name[32];
        snprintf(name, sizeof name, "type%02x.idx", cases[c].type);
        const char *path = write_plain(name, buf, n);
        magna_status st = magna_idx_read(path, &x, &e);
        CHECK(st == MAGNA_OK && x.count == 2 && x.ndim == 1 && (int)x.type == cases[c].type, "%s: %s", name,
              st ? e.message : "bad header");
        if (st != MAGNA_OK) continue;
        for (int i = 0; i < 2; i++) {
            double v = 0;
            switch (x.type) {
            case MAGNA_IDX_U8: v = ((uint8_t *)x.data)[i]; break;
            case MAGNA_IDX_I8: v = ((int8_t *)x.data)[i]; break;
            case MAGNA_IDX_I16: v = ((int16_t *)x.data)[i]; break;
            case MAGNA_IDX_I32: v = ((int32_t *)x.data)[i]; break;
            case MAGNA_IDX_F32: v = ((float *)x.data)[i]; break;
            case MAGNA_IDX_F64: v = ((double *)x.data)[i]; break;
            }
            CHECK(v == cases[c].want[i], "%s element %d: %g, expected %g", magna_idx_type_name(x.type), i, v,
                  cases[c].want[i]);
        }
        magna_idx_free(&x);
    }
}

/* The images+labels loader: counts, types, ranks, label range. */
static void expect_pair_error(const char *images, const char *labels, int32_t classes, magna_status status,
                              const char *want) {
    magna_image_set s;
    magna_error e;
    magna_status st = magna_image_load_idx(images, labels, classes, &s, &e);
    CHECK(st == status && strcmp(e.message, want) == 0, "pair: status %s, message\n  got  '%s'\n  want '%s'",
          magna_status_name(st), st ? e.message : "(none)", want);
    CHECK(s.pixels == NULL && s.labels == NULL, "a failed load leaves nothing to free");
}

static void test_pairs(void) {
    static unsigned char buf[4096];
    char want[700];
    size_t n = idx_bytes(buf, 0x08, 3, (const uint32_t[]){3, 2, 2},
                         (const unsigned char[]){0, 255, 51, 102, 1, 2, 3, 4, 5, 6, 7, 8}, 12);
    const char *images = write_plain("img3.idx", buf, n);
    n = idx_bytes(buf, 0x08, 1, (const uint32_t[]){3}, (const unsigned char[]){9, 12, 0}, 3);
    const char *labels = write_gz("lab3.idx.gz", buf, n);
    n = idx_bytes(buf, 0x08, 1, (const uint32_t[]){2}, (const unsigned char[]){1, 2}, 2);
    const char *labels2 = write_plain("lab2.idx", buf, n);
    n = idx_bytes(buf, 0x0c, 1, (const uint32_t[]){3}, NULL, 12);
    const char *labels_int = write_plain("lab3int.idx", buf, n);
    n = idx_bytes(buf, 0x08, 2, (const uint32_t[]){3, 4}, NULL, 12);
    const char *images2d = write_plain("img2d.idx", buf, n);

    snprintf(want, sizeof want, "%s and %s: 3 images but 2 labels", images, labels2);
    expect_pair_error(images, labels2, 10, MAGNA_ERR_FORMAT, want);
    snprintf(want, sizeof want, "%s: label 12 of image 1 (0-based) is not below the class count 10", labels);
    expect_pair_error(images, labels, 10, MAGNA_ERR_RANGE, want);
    snprintf(want, sizeof want, "%s: labels must be 1-dim ubyte, the file holds 1-dim int", labels_int);
    expect_pair_error(images, labels_int, 10, MAGNA_ERR_FORMAT, want);
    snprintf(want, sizeof want,
             "%s: images must be ubyte [count, height, width] or [count, channels, height, width], the file holds "
             "2-dim ubyte",
             images2d);
    expect_pair_error(images2d, labels, 10, MAGNA_ERR_FORMAT, want);

    /* the reader itself takes a label of 12; so does the loader with classes 0, which counts 13 classes */
    magna_image_set s;
    magna_error e;
    CHECK(magna_image_load_idx(images, labels, 0, &s, &e) == MAGNA_OK, "%s", e.message);
    CHECK(s.count == 3 && s.channels == 1 && s.height == 2 && s.width == 2 && s.classes == 13,
          "shape %lld %lld %lld "
          "%lld, classes %d",
          (long long)s.count, (long long)s.channels, (long long)s.height, (long long)s.width, s.classes);
    CHECK(s.pixels && s.pixels[1] == 1.0f && s.pixels[2] == 0.2f && s.labels[1] == 12, "pixels / 255 and labels");
    magna_image_set_free(&s);
}

static void test_fashion_mnist(void) {
    magna_image_set test, train;
    magna_error e;
    magna_status st = magna_mnist_load(FMNIST, "t10k", 10, &test, &e);
    CHECK(st == MAGNA_OK, "%s (Debian's dataset-fashion-mnist: apt-get install dataset-fashion-mnist)",
          st ? e.message : "");
    if (st != MAGNA_OK) return;
    CHECK(test.count == 10000 && test.channels == 1 && test.height == 28 && test.width == 28 && test.classes == 10,
          "t10k: %lld images of %lld x %lld", (long long)test.count, (long long)test.height, (long long)test.width);
    int64_t per_class[10] = {0};
    float lo = 1, hi = 0;
    for (int64_t i = 0; i < test.count; i++)
        per_class[test.labels[i] >= 0 && test.labels[i] < 10 ? test.labels[i] : 0]++;
    for (int64_t i = 0; i < test.count * 784; i++) lo = fminf(lo, test.pixels[i]), hi = fmaxf(hi, test.pixels[i]);
    bool balanced = true;
    for (int k = 0; k < 10; k++) balanced &= per_class[k] == 1000;
    CHECK(balanced, "t10k: 1000 images per class (class 0: %lld)", (long long)per_class[0]);
    CHECK(lo == 0 && hi == 1, "pixels span [0, 1]: [%g, %g]", lo, hi);
    /* the first test images are an ankle boot, a pullover and two trousers (Zalando's README figure) */
    CHECK(test.labels[0] == 9 && test.labels[1] == 2 && test.labels[2] == 1 && test.labels[3] == 1,
          "first labels %d %d %d %d", test.labels[0], test.labels[1], test.labels[2], test.labels[3]);
    CHECK(strcmp(magna_fashion_mnist_classes[9], "Ankle boot") == 0, "class names");

    st = magna_mnist_load(FMNIST, "train", 10, &train, &e);
    CHECK(st == MAGNA_OK && train.count == 60000, "train: %s", st ? e.message : "count");
    if (st == MAGNA_OK)
        printf("idx: Fashion-MNIST: %lld training and %lld test images of 28 x 28, 10 classes\n",
               (long long)train.count, (long long)test.count);
    magna_image_set_free(&train);

    /* wrong file names: the error names the .gz file Debian ships */
    st = magna_mnist_load(dir, "t10k", 10, &train, &e);
    char want[700];
    snprintf(want, sizeof want, "%s/t10k-labels-idx1-ubyte.gz: cannot open: No such file or directory", dir);
    CHECK(st == MAGNA_ERR_IO && strcmp(e.message, want) == 0, "missing files: '%s'", e.message);
    magna_image_set_free(&test);
}

/* Synthetic images: image i, pixel k = (i * 31 + k) % 17 / 16, labels i % 5. */
static magna_image_set synthetic(int64_t count, int64_t c, int64_t h, int64_t w) {
    magna_image_set s = {.count = count, .channels = c, .height = h, .width = w, .classes = 5};
    const int64_t size = c * h * w;
    s.pixels = malloc((size_t)(count * size) * sizeof(float));
    s.labels = malloc((size_t)count * sizeof(int32_t));
    for (int64_t i = 0; i < count; i++) {
        s.labels[i] = (int32_t)(i % 5);
        for (int64_t k = 0; k < size; k++) s.pixels[i * size + k] = (float)((i * 31 + k) % 17) / 16.0f;
    }
    return s;
}

static void test_split_and_scaling(void) {
    magna_image_set s = synthetic(100, 1, 3, 4), tr, va, tr2, va2;
    magna_error e;
    for (int64_t i = 0; i < s.count; i++) s.pixels[i * 12] = (float)i; /* pixel 0 names the image */
    CHECK(magna_image_split(&s, 30, 7, &tr, &va, &e) == MAGNA_OK, "%s", e.message);
    CHECK(magna_image_split(&s, 30, 7, &tr2, &va2, &e) == MAGNA_OK, "%s", e.message);
    CHECK(tr.count == 70 && va.count == 30, "split sizes %lld %lld", (long long)tr.count, (long long)va.count);
    int seen[100] = {0};
    bool rows_ok = true;
    for (int64_t i = 0; i < tr.count; i++)
        seen[(int)tr.pixels[i * 12]]++, rows_ok &= tr.labels[i] == (int)tr.pixels[i * 12] % 5;
    for (int64_t i = 0; i < va.count; i++)
        seen[(int)va.pixels[i * 12]]++, rows_ok &= va.labels[i] == (int)va.pixels[i * 12] % 5;
    bool each_once = true, moved = false;
    for (int i = 0; i < 100; i++) each_once &= seen[i] == 1;
    for (int64_t i = 0; i < tr.count; i++) moved |= tr.pixels[i * 12] != (float)i;
    CHECK(each_once && rows_ok && moved, "every image in exactly one split, with its label, shuffled");
    CHECK(memcmp(tr.pixels, tr2.pixels, (size_t)(tr.count * 12) * sizeof(float)) == 0 &&
              memcmp(va.labels, va2.labels, (size_t)va.count * sizeof(int32_t)) == 0,
          "the same seed gives the same split");
    magna_image_set_free(&tr), magna_image_set_free(&va), magna_image_set_free(&tr2), magna_image_set_free(&va2);
    CHECK(magna_image_split(&s, 100, 7, &tr, &va, &e) == MAGNA_ERR_ARG &&
              strcmp(e.message, "image split: 100 validation images of 100 leave no training images") == 0 &&
              !tr.pixels && !va.pixels,
          "split: '%s'", e.message);

    double mean[3], std[3];
    magna_image_set rgb = synthetic(20, 3, 4, 4);
    CHECK(magna_image_mean_std(&rgb, mean, std, &e) == MAGNA_OK &&
              magna_image_standardize(&rgb, mean, std, &e) == MAGNA_OK,
          "%s", e.message);
    CHECK(magna_image_mean_std(&rgb, mean, std, &e) == MAGNA_OK, "%s", e.message);
    for (int c = 0; c < 3; c++)
        CHECK(fabs(mean[c]) < 1e-5 && fabs(std[c] - 1) < 1e-5, "channel %d after standardising: mean %g std %g", c,
              mean[c], std[c]);
    magna_image_set_free(&rgb), magna_image_set_free(&s);
}

static void test_augment(void) {
    magna_image_set s = synthetic(64, 2, 6, 5);
    const int64_t size = magna_image_size(&s), n = s.count * size;
    float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    magna_error e;
    CHECK(magna_image_augment(&s, a, NULL, 1, 0, &e) == MAGNA_OK && memcmp(a, s.pixels, (size_t)n * sizeof(float)) == 0,
          "no options: an exact copy");
    /* a flip alone: each image is its mirror or itself, and about half are mirrored */
    magna_augment_opts flip = {.hflip = true};
    CHECK(magna_image_augment(&s, a, &flip, 1, 0, &e) == MAGNA_OK, "%s", e.message);
    int mirrored = 0;
    bool exact = true;
    for (int64_t i = 0; i < s.count; i++) {
        bool same = true, mirror = true;
        for (int64_t r = 0; r < 2 * 6; r++)
            for (int64_t x = 0; x < 5; x++) {
                float v = a[i * size + r * 5 + x];
                same &= v == s.pixels[i * size + r * 5 + x];
                mirror &= v == s.pixels[i * size + r * 5 + 4 - x];
            }
        exact &= same || mirror;
        mirrored += mirror && !same;
    }
    CHECK(exact && mirrored > 16 && mirrored < 48, "flips: %d of 64 mirrored", mirrored);
    /* shifts: every output pixel is the fill or the source pixel (y - dy, x - dx) for one (dx, dy) per image */
    magna_augment_opts shift = {.max_shift = 2, .crop_pad = 1, .fill = -1};
    CHECK(magna_image_augment(&s, a, &shift, 3, 5, &e) == MAGNA_OK, "%s", e.message);
    bool consistent = true;
    int moved = 0;
    for (int64_t i = 0; i < s.count; i++) {
        bool found = false;
        for (int dy = -3; dy <= 3 && !found; dy++)
            for (int dx = -3; dx <= 3 && !found; dx++) {
                bool ok = true;
                for (int64_t c = 0; c < 2; c++)
                    for (int64_t y = 0; y < 6; y++)
                        for (int64_t x = 0; x < 5; x++) {
                            int64_t sy = y - dy, sx = x - dx;
                            float want = sy < 0 || sy >= 6 || sx < 0 || sx >= 5
                                             ? -1
                                             : s.pixels[i * size + (c * 6 + sy) * 5 + sx];
                            ok &= a[i * size + (c * 6 + y) * 5 + x] == want;
                        }
                if (ok) found = true, moved += dx != 0 || dy != 0;
            }
        consistent &= found;
    }
    CHECK(consistent && moved > 32, "shifts within +-3 with fill: %d of 64 moved", moved);
    /* the draw depends on (seed, epoch, image) only: not on the thread count; a new epoch draws anew */
    const int threads = magna_get_threads();
    magna_set_threads(1);
    CHECK(magna_image_augment(&s, b, &shift, 3, 5, &e) == MAGNA_OK, "%s", e.message);
    magna_set_threads(threads);
    CHECK(memcmp(a, b, (size_t)n * sizeof(float)) == 0, "the same draws on 1 thread and on %d", threads);
    CHECK(magna_image_augment(&s, b, &shift, 3, 6, &e) == MAGNA_OK && memcmp(a, b, (size_t)n * sizeof(float)) != 0,
          "another epoch, other draws");
    CHECK(magna_image_augment(&s, b, &(magna_augment_opts){.max_shift = -1}, 3, 6, &e) == MAGNA_ERR_ARG &&
              strcmp(e.message, "augment: max_shift (-1) and crop_pad (0) must be >= 0") == 0,
          "augment: '%s'", e.message);
    free(a), free(b), magna_image_set_free(&s);
}

static void test_grid(void) {
    magna_image_set s = synthetic(10, 1, 4, 4);
    int32_t pred[10];
    for (int i = 0; i < 10; i++) pred[i] = i == 3 ? 4 : s.labels[i];
    const char *names[5] = {"zero", "one", "two", "th<r>ee", "four"};
    const char *path = path_of("grid.svg");
    magna_error e;
    CHECK(magna_svg_image_grid(path, s.pixels, 10, 1, 4, 4, s.labels, pred,
                               &(magna_grid_opts){.columns = 4, .class_names = names, .classes = 5, .title = "a & b"},
                               &e) == MAGNA_OK,
          "%s", e.message);
    FILE *f = fopen(path, "rb");
    static char svg[1 << 16];
    size_t len = f ? fread(svg, 1, sizeof svg - 1, f) : 0;
    if (f) fclose(f);
    svg[len] = '\0';
    int red_frames = 0;
    for (const char *p = svg; (p = strstr(p, "stroke=\"#e00000\"")); p++) red_frames++;
    CHECK(strncmp(svg, "<svg ", 5) == 0 && strstr(svg, "</svg>\n") && strstr(svg, ">a &amp; b</text>") &&
              strstr(svg, ">true: th&lt;r&gt;ee</text>") && red_frames == 1,
          "grid SVG: one red frame (%d), escaped names", red_frames);
    CHECK(magna_svg_image_grid(path, s.pixels, 10, 2, 4, 4, NULL, NULL, NULL, &e) == MAGNA_ERR_ARG,
          "2 channels are refused");
    magna_image_set_free(&s);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/magna_idx_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_reader_errors();
    test_random_damage();
    test_types();
    test_pairs();
    test_fashion_mnist();
    test_split_and_scaling();
    test_augment();
    test_grid();
    for (int i = 0; i < n_written; i++) unlink(written[i]), free(written[i]);
    rmdir(dir);
    return check_finish("test_idx");
}
