/* magna/image.h — image data: the IDX files of the MNIST family (plain or gzip), images with their labels as
 * the float pixels and int32 labels that magna_dataset (magna/train.h) takes, a seeded validation split,
 * seeded augmentation (shifts, flips, crops after padding), and an SVG grid of images with their labels.
 *
 *   magna_image_set train, test, fit, val;
 *   magna_error err;
 *   if (magna_mnist_load("/usr/share/datasets/fashion-mnist", "train", 10, &train, &err) != MAGNA_OK ||
 *       magna_mnist_load("/usr/share/datasets/fashion-mnist", "t10k", 10, &test, &err) != MAGNA_OK ||
 *       magna_image_split(&train, 5000, 42, &fit, &val, &err) != MAGNA_OK)
 *       puts(err.message);
 *   magna_dataset d = {.rows = fit.count, .x = fit.pixels, .labels = fit.labels};   // pixels in [0, 1]
 *   ... magna_image_set_free(&train) (and the others)
 *
 * Images are [count, channels, height, width] floats, row-major, as a conv layer's input. Arrays handed
 * out here are plain malloc'd memory. Every rejection is a magna_error whose message names the file, what
 * was expected and what was found:
 *   t10k-images-idx3-ubyte.gz: truncated: the header's 10000 x 28 x 28 ubyte needs 7840000 bytes of data,
 *   the file has 392000 */
#ifndef MAGNA_IMAGE_H
#define MAGNA_IMAGE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- IDX files ---------------------------------------------------------------------------------- */

/* The element type: the third byte of an IDX file's magic number. */
typedef enum magna_idx_type {
    MAGNA_IDX_U8 = 0x08,
    MAGNA_IDX_I8 = 0x09,
    MAGNA_IDX_I16 = 0x0B,
    MAGNA_IDX_I32 = 0x0C,
    MAGNA_IDX_F32 = 0x0D,
    MAGNA_IDX_F64 = 0x0E,
} magna_idx_type;

typedef struct magna_idx {
    magna_idx_type type;
    int ndim;                     /* 1 ... MAGNA_MAX_DIMS */
    int64_t dims[MAGNA_MAX_DIMS]; /* outermost first; none is 0 */
    int64_t count;                /* the product of dims */
    size_t elem_size;             /* bytes per element: 1, 2, 4 or 8 */
    void *data;                   /* count elements in this machine's byte order (the file is big-endian) */
} magna_idx;

/* "ubyte", "byte", "short", "int", "float", "double", or NULL for a code that is no IDX type. */
const char *magna_idx_type_name(magna_idx_type type);

/* Reads an IDX file (gzip, found by its magic bytes whatever the name, or plain) into *out (zeroed first;
 * nothing left to free on failure). The header is checked before the data is allocated: two zero bytes,
 * a known type code, 1 to MAGNA_MAX_DIMS dims, none zero, whose product fits in memory and, for a plain
 * file, matches the file's size exactly (a gzip file's data may not claim more than deflate's greatest
 * ratio, 1032:1, of its compressed size, and its buffer grows only with data that really arrives).
 * Rejected: a short header, bad magic, an unknown type, bad dims, truncated data, bytes after the data,
 * a broken gzip stream. */
magna_status magna_idx_read(const char *path, magna_idx *out, magna_error *err);
void magna_idx_free(magna_idx *idx);

/* ---- image sets --------------------------------------------------------------------------------- */

typedef struct magna_image_set {
    int64_t count, channels, height, width;
    float *pixels;   /* count x channels x height x width */
    int32_t *labels; /* count class indices */
    int32_t classes; /* labels lie in [0, classes) */
} magna_image_set;

void magna_image_set_free(magna_image_set *s);
/* Pixels per image: channels x height x width. */
int64_t magna_image_size(const magna_image_set *s);

/* Loads an images file (ubyte, [N, H, W] as the MNIST family, or [N, C, H, W]) and a labels file (ubyte,
 * [N]) into *out with pixels / 255 in [0, 1]. Checked: the types and ranks, equal counts in both files,
 * and, when classes > 0, every label below classes (classes 0: out->classes is the largest label + 1). */
magna_status magna_image_load_idx(const char *images_path, const char *labels_path, int32_t classes,
                                  magna_image_set *out, magna_error *err);
/* The MNIST family's file names in `dir`: "<part>-images-idx3-ubyte" and "<part>-labels-idx1-ubyte", each
 * with ".gz" when that file exists (as Debian ships them), else plain. part: "train" or "t10k". */
magna_status magna_mnist_load(const char *dir, const char *part, int32_t classes, magna_image_set *out,
                              magna_error *err);

/* Fashion-MNIST's ten class names, by label. */
extern const char *const magna_fashion_mnist_classes[10];

/* Deals a seeded shuffle of s's images into val (val_count of them) and train (the rest), both new copies;
 * the order depends on the seed alone (magna_rand_u64, stream 1, as magna_table_split). val may be NULL
 * only when val_count is 0. */
magna_status magna_image_split(const magna_image_set *s, int64_t val_count, uint64_t seed, magna_image_set *train,
                               magna_image_set *val, magna_error *err);

/* Per-channel mean and (population) standard deviation of s's pixels, `channels` values each. */
magna_status magna_image_mean_std(const magna_image_set *s, double *mean, double *std, magna_error *err);
/* pixel = (pixel - mean[c]) / std[c] for every image; a std of 0 only centres. Fit on the training images
 * and apply the same values to validation and test images. */
magna_status magna_image_standardize(magna_image_set *s, const double *mean, const double *std, magna_error *err);

/* ---- augmentation ------------------------------------------------------------------------------- */

/* Every transform moves the image by whole pixels; what moves in is `fill` (0, the background of the MNIST
 * family; after standardisation pass the standardised 0). The zero value changes nothing. */
typedef struct magna_augment_opts {
    int max_shift; /* shift by dx, dy, each uniform in [-max_shift, max_shift] (Keras's RandomTranslation) */
    int crop_pad;  /* pad every side by crop_pad, then crop H x W at a uniform offset (torchvision's
                    * RandomCrop(size, padding)): the same law as a shift in [-crop_pad, crop_pad], and
                    * composed with max_shift by adding the two offsets */
    bool hflip;    /* mirror left-right with probability 1/2 (before the shift) */
    float fill;
} magna_augment_opts;

/* Writes an augmented copy of src's pixels to dst (src->count x magna_image_size(src) floats, not
 * overlapping src). Each image's draw depends only on (seed, epoch, image index), through magna_rand_u64
 * stream 0x417 + epoch: the same in any thread count, and a fresh draw every epoch. Typical use: fit one
 * epoch at a time (or from on_epoch_end) on a dataset whose x is dst, regenerated before each epoch. */
magna_status magna_image_augment(const magna_image_set *src, float *dst, const magna_augment_opts *opts, uint64_t seed,
                                 uint64_t epoch, magna_error *err);

/* ---- pictures ----------------------------------------------------------------------------------- */

typedef struct magna_grid_opts {
    int columns;                    /* images per row; 0: 8 */
    int scale;                      /* screen pixels per image pixel; 0: 3 */
    float lo, hi;                   /* the pixel values shown black and white; both 0: [0, 1] */
    const char *const *class_names; /* label -> name, or NULL for numbers */
    int32_t classes;                /* entries of class_names (labels beyond it are shown as numbers) */
    const char *title;              /* a line above the grid, or NULL */
} magna_grid_opts;

/* Writes an SVG file of images [count, channels, height, width] in a grid (channels 1: grey, 3: RGB), each
 * drawn as rectangles (one per run of equal pixels in a row; no raster, no dependency) with its label under
 * it: the predicted label when `predicted` is given, the true one from `labels` (either may be NULL). An
 * image whose prediction differs from its label is framed in red and shows both. */
magna_status magna_svg_image_grid(const char *path, const float *pixels, int64_t count, int64_t channels,
                                  int64_t height, int64_t width, const int32_t *labels, const int32_t *predicted,
                                  const magna_grid_opts *opts, magna_error *err);

#ifdef __cplusplus
}
#endif
#endif
