/* image.c — image sets from IDX files, the seeded validation split, standardisation and augmentation.
 * Augmentation makes a whole new copy per epoch rather than transforming batches inside fit: fit takes a
 * dataset and copies its rows batch by batch, so regenerating the dataset's pixels between epochs gives
 * every epoch fresh draws with no hook in the training loop, and a draw that depends on (seed, epoch,
 * image) alone is the same in any thread count and after a resume. */
#include "magna/image.h"
#include "../graph/internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const magna_fashion_mnist_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                     "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

void magna_image_set_free(magna_image_set *s) {
    if (!s) return;
    free(s->pixels);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

int64_t magna_image_size(const magna_image_set *s) { return s->channels * s->height * s->width; }

/* ---- loading ------------------------------------------------------------------------------------ */

magna_status magna_image_load_idx(const char *images_path, const char *labels_path, int32_t classes,
                                  magna_image_set *out, magna_error *err) {
    if (!out) return magna_error_set(err, MAGNA_ERR_ARG, "image load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!images_path || !labels_path) return magna_error_set(err, MAGNA_ERR_ARG, "image load: a path is NULL");
    if (classes < 0 || classes > 256)
        return magna_error_set(err, MAGNA_ERR_ARG, "image load: classes must be 0 (any) or 1 to 256 (ubyte labels), got %d",
                    classes);
    /* the labels first: the small file, so a mismatch between the two is found before the big one inflates */
    magna_idx lab, img;
    magna_status st = magna_idx_read(labels_path, &lab, err);
    if (st != MAGNA_OK) return st;
    if (lab.type != MAGNA_IDX_U8 || lab.ndim != 1) {
        magna_error_set(err, MAGNA_ERR_FORMAT, "%s: labels must be 1-dim ubyte, the file holds %d-dim %s", labels_path, lab.ndim,
             magna_idx_type_name(lab.type));
        magna_idx_free(&lab);
        return MAGNA_ERR_FORMAT;
    }
    if ((st = magna_idx_read(images_path, &img, err)) != MAGNA_OK) {
        magna_idx_free(&lab);
        return st;
    }
    if (img.type != MAGNA_IDX_U8 || (img.ndim != 3 && img.ndim != 4)) {
        st = magna_error_set(err, MAGNA_ERR_FORMAT,
                  "%s: images must be ubyte [count, height, width] or [count, channels, height, width], the file "
                  "holds %d-dim %s",
                  images_path, img.ndim, magna_idx_type_name(img.type));
    } else if (img.dims[0] != lab.dims[0]) {
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s and %s: %lld images but %lld labels", images_path, labels_path,
                  (long long)img.dims[0], (long long)lab.dims[0]);
    }
    const uint8_t *l = lab.data;
    int32_t largest = 0;
    for (int64_t i = 0; st == MAGNA_OK && i < lab.count; i++) {
        if (classes > 0 && l[i] >= classes)
            st = magna_error_set(err, MAGNA_ERR_RANGE, "%s: label %d of image %lld (0-based) is not below the class count %d",
                      labels_path, l[i], (long long)i, classes);
        if (l[i] > largest) largest = l[i];
    }
    if (st == MAGNA_OK) {
        out->count = img.dims[0];
        out->channels = img.ndim == 4 ? img.dims[1] : 1;
        out->height = img.dims[img.ndim - 2];
        out->width = img.dims[img.ndim - 1];
        out->classes = classes > 0 ? classes : largest + 1;
        /* count x pixels < SIZE_MAX / 2 was checked by the reader for bytes; floats are 4 times that */
        if ((uint64_t)img.count > SIZE_MAX / sizeof(float) ||
            !(out->pixels = malloc((size_t)img.count * sizeof(float))) ||
            !(out->labels = malloc((size_t)out->count * sizeof(int32_t)))) {
            magna_image_set_free(out);
            st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory for %lld pixels", images_path, (long long)img.count);
        }
    }
    if (st == MAGNA_OK) {
        const uint8_t *p = img.data;
        for (int64_t i = 0; i < img.count; i++) out->pixels[i] = (float)p[i] / 255.0f;
        for (int64_t i = 0; i < out->count; i++) out->labels[i] = l[i];
    }
    magna_idx_free(&img);
    magna_idx_free(&lab);
    return st;
}

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

magna_status magna_mnist_load(const char *dir, const char *part, int32_t classes, magna_image_set *out,
                              magna_error *err) {
    if (out) memset(out, 0, sizeof *out);
    if (!dir || !part) return magna_error_set(err, MAGNA_ERR_ARG, "mnist load: dir or part is NULL");
    char images[4096], labels[4096];
    const char *kinds[2] = {"images-idx3", "labels-idx1"};
    char *paths[2] = {images, labels};
    for (int k = 0; k < 2; k++) {
        int n = snprintf(paths[k], sizeof images, "%s/%s-%s-ubyte.gz", dir, part, kinds[k]);
        if (n < 0 || (size_t)n >= sizeof images) return magna_error_set(err, MAGNA_ERR_ARG, "mnist load: %s: path too long", dir);
        if (!file_exists(paths[k])) {
            paths[k][n - 3] = '\0'; /* the plain file, as the original site's files after gunzip */
            if (!file_exists(paths[k])) paths[k][n - 3] = '.'; /* neither: the error names the .gz Debian ships */
        }
    }
    return magna_image_load_idx(images, labels, classes, out, err);
}

/* ---- split and scaling -------------------------------------------------------------------------- */

static magna_status take(const magna_image_set *s, const int64_t *idx, int64_t n, magna_image_set *out,
                         magna_error *err) {
    const int64_t size = magna_image_size(s);
    *out = (magna_image_set){
        .count = n, .channels = s->channels, .height = s->height, .width = s->width, .classes = s->classes};
    out->pixels = malloc((size_t)(n * size) * sizeof(float) + 1);
    out->labels = malloc((size_t)n * sizeof(int32_t) + 1);
    if (!out->pixels || !out->labels) {
        magna_image_set_free(out);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "image split: out of memory for %lld images", (long long)n);
    }
    for (int64_t i = 0; i < n; i++) {
        memcpy(out->pixels + i * size, s->pixels + idx[i] * size, (size_t)size * sizeof(float));
        out->labels[i] = s->labels ? s->labels[idx[i]] : 0;
    }
    return MAGNA_OK;
}

magna_status magna_image_split(const magna_image_set *s, int64_t val_count, uint64_t seed, magna_image_set *train,
                               magna_image_set *val, magna_error *err) {
    if (train) memset(train, 0, sizeof *train);
    if (val) memset(val, 0, sizeof *val);
    if (!s || !s->pixels || !train) return magna_error_set(err, MAGNA_ERR_ARG, "image split: no images or no train set");
    if (val_count < 0 || val_count >= s->count)
        return magna_error_set(err, MAGNA_ERR_ARG, "image split: %lld validation images of %lld leave no training images",
                    (long long)val_count, (long long)s->count);
    if (val_count > 0 && !val) return magna_error_set(err, MAGNA_ERR_ARG, "image split: validation images need a set to fill");
    int64_t *perm = malloc((size_t)s->count * sizeof *perm);
    if (!perm) return magna_error_set(err, MAGNA_ERR_NOMEM, "image split: out of memory");
    /* Fisher-Yates on stream 1 of the counter-based RNG, as magna_table_split: the order depends on the seed */
    for (int64_t i = 0; i < s->count; i++) perm[i] = i;
    for (int64_t i = s->count - 1; i > 0; i--) {
        int64_t j = (int64_t)(magna_rand_u64(seed, 1, (uint64_t)i) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    const int64_t n_train = s->count - val_count;
    magna_status st = take(s, perm, n_train, train, err);
    if (st == MAGNA_OK && val_count > 0 && (st = take(s, perm + n_train, val_count, val, err)) != MAGNA_OK)
        magna_image_set_free(train);
    free(perm);
    return st;
}

magna_status magna_image_mean_std(const magna_image_set *s, double *mean, double *std, magna_error *err) {
    if (!s || !s->pixels || s->count < 1 || !mean || !std)
        return magna_error_set(err, MAGNA_ERR_ARG, "image mean/std: no images or no output arrays");
    const int64_t hw = s->height * s->width;
    for (int64_t c = 0; c < s->channels; c++) {
        double sum = 0, sum2 = 0; /* double sums: 47M pixels in float would lose the low digits */
        for (int64_t i = 0; i < s->count; i++) {
            const float *p = s->pixels + (i * s->channels + c) * hw;
            for (int64_t k = 0; k < hw; k++) sum += p[k], sum2 += (double)p[k] * p[k];
        }
        const double n = (double)(s->count * hw), m = sum / n, var = sum2 / n - m * m;
        mean[c] = m;
        std[c] = var > 0 ? sqrt(var) : 0;
    }
    return MAGNA_OK;
}

magna_status magna_image_standardize(magna_image_set *s, const double *mean, const double *std, magna_error *err) {
    if (!s || !s->pixels || !mean || !std) return magna_error_set(err, MAGNA_ERR_ARG, "image standardize: no images or values");
    const int64_t hw = s->height * s->width;
    for (int64_t c = 0; c < s->channels; c++)
        if (!isfinite(mean[c]) || !isfinite(std[c]) || std[c] < 0)
            return magna_error_set(err, MAGNA_ERR_NUMERIC, "image standardize: channel %lld: mean %g, std %g", (long long)c,
                        mean[c], std[c]);
    for (int64_t i = 0; i < s->count; i++)
        for (int64_t c = 0; c < s->channels; c++) {
            const float m = (float)mean[c], inv = std[c] > 0 ? (float)(1.0 / std[c]) : 1.0f;
            float *p = s->pixels + (i * s->channels + c) * hw;
            for (int64_t k = 0; k < hw; k++) p[k] = (p[k] - m) * inv;
        }
    return MAGNA_OK;
}

/* ---- augmentation ------------------------------------------------------------------------------- */

/* A uniform integer in [-r, r] from one 64-bit draw (the modulo bias is below 2^-50 for any r used here). */
static int draw_offset(uint64_t u, int r) { return r > 0 ? (int)(u % (uint64_t)(2 * r + 1)) - r : 0; }

magna_status magna_image_augment(const magna_image_set *src, float *dst, const magna_augment_opts *opts, uint64_t seed,
                                 uint64_t epoch, magna_error *err) {
    if (!src || !src->pixels || !dst) return magna_error_set(err, MAGNA_ERR_ARG, "augment: no source images or no output");
    const magna_augment_opts o = opts ? *opts : (magna_augment_opts){0};
    if (o.max_shift < 0 || o.crop_pad < 0)
        return magna_error_set(err, MAGNA_ERR_ARG, "augment: max_shift (%d) and crop_pad (%d) must be >= 0", o.max_shift,
                    o.crop_pad);
    const int64_t C = src->channels, H = src->height, W = src->width, size = C * H * W;
    const uint64_t stream = 0x417 + epoch;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < src->count; i++) {
        /* counters 8i .. 8i+4 are image i's own: flip, the shift's dx and dy, the crop's dx and dy */
        const uint64_t base = (uint64_t)i * 8;
        const bool flip = o.hflip && (magna_rand_u64(seed, stream, base) & 1);
        const int dx = draw_offset(magna_rand_u64(seed, stream, base + 1), o.max_shift) +
                       draw_offset(magna_rand_u64(seed, stream, base + 3), o.crop_pad);
        const int dy = draw_offset(magna_rand_u64(seed, stream, base + 2), o.max_shift) +
                       draw_offset(magna_rand_u64(seed, stream, base + 4), o.crop_pad);
        const float *in = src->pixels + i * size;
        float *out = dst + i * size;
        for (int64_t c = 0; c < C; c++)
            for (int64_t y = 0; y < H; y++) {
                const int64_t sy = y - dy; /* the output pixel (y, x) comes from (y - dy, x - dx) */
                float *row = out + (c * H + y) * W;
                if (sy < 0 || sy >= H) {
                    for (int64_t x = 0; x < W; x++) row[x] = o.fill;
                    continue;
                }
                const float *srow = in + (c * H + sy) * W;
                for (int64_t x = 0; x < W; x++) {
                    int64_t sx = x - dx;
                    if (sx < 0 || sx >= W) {
                        row[x] = o.fill;
                        continue;
                    }
                    row[x] = srow[flip ? W - 1 - sx : sx];
                }
            }
    }
    return MAGNA_OK;
}
