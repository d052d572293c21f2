/* svg_grid.c — a grid of images with their labels as an SVG file. Each image is drawn as rectangles, one per
 * run of equal pixels in a row over a background rectangle, so the file needs no raster encoder (no libpng)
 * and stays small for the MNIST family's mostly empty images (about 200 rectangles per 28 x 28 image). */
#include "magna/image.h"
#include "../graph/internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PAD = 6, LINE = 12, FONT = 10, TITLE_H = 22 };

/* Writes s with the five XML special characters escaped. */
static void put_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void put_label(FILE *f, const magna_grid_opts *o, int32_t label) {
    if (o->class_names && label >= 0 && label < o->classes && o->class_names[label])
        put_text(f, o->class_names[label]);
    else
        fprintf(f, "%d", label);
}

/* A pixel's 0..255 level for the value range [lo, hi] (NaN shows as black). */
static int level(float v, float lo, float hi) {
    float t = (v - lo) / (hi - lo);
    if (!(t > 0)) return 0;
    if (t >= 1) return 255;
    return (int)lrintf(t * 255.0f);
}

static uint32_t colour(const float *img, int64_t channels, int64_t plane, int64_t at, float lo, float hi) {
    if (channels == 1) {
        uint32_t g = (uint32_t)level(img[at], lo, hi);
        return g << 16 | g << 8 | g;
    }
    return (uint32_t)level(img[at], lo, hi) << 16 | (uint32_t)level(img[plane + at], lo, hi) << 8 |
           (uint32_t)level(img[2 * plane + at], lo, hi);
}

magna_status magna_svg_image_grid(const char *path, const float *pixels, int64_t count, int64_t channels,
                                  int64_t height, int64_t width, const int32_t *labels, const int32_t *predicted,
                                  const magna_grid_opts *opts, magna_error *err) {
    if (!path || !pixels) return magna_error_set(err, MAGNA_ERR_ARG, "image grid: path or pixels is NULL");
    if (count < 1 || (channels != 1 && channels != 3) || height < 1 || width < 1 || height > 4096 || width > 4096)
        return magna_error_set(err, MAGNA_ERR_ARG,
                    "%s: image grid: need at least one image of 1 or 3 channels and 1 to 4096 pixels a side, got "
                    "%lld images of %lld x %lld x %lld",
                    path, (long long)count, (long long)channels, (long long)height, (long long)width);
    magna_grid_opts o = opts ? *opts : (magna_grid_opts){0};
    if (o.columns <= 0) o.columns = 8;
    if (o.scale <= 0) o.scale = 3;
    if (o.lo == 0 && o.hi == 0) o.hi = 1;
    if (!(o.hi > o.lo))
        return magna_error_set(err, MAGNA_ERR_ARG, "%s: image grid: hi (%g) must exceed lo (%g)", path, o.hi, o.lo);
    const int64_t cols = count < o.columns ? count : o.columns, rows = (count + cols - 1) / cols;
    const int lines = (labels != NULL) + (predicted != NULL);
    const int64_t iw = width * o.scale, ih = height * o.scale;
    /* a cell at least 80 pixels wide, so that "T-shirt/top" fits under a small image */
    const int64_t cw = (iw > 80 ? iw : 80) + 2 * PAD, chh = ih + 2 * PAD + lines * LINE;
    const int64_t top = o.title ? TITLE_H : 0, W = cols * cw, H = top + rows * chh;

    FILE *f = fopen(path, "w");
    if (!f) return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%lld\" height=\"%lld\" viewBox=\"0 0 %lld %lld\" "
            "font-family=\"sans-serif\" font-size=\"%d\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            (long long)W, (long long)H, (long long)W, (long long)H, FONT);
    if (o.title) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\">", PAD, TITLE_H - 7);
        put_text(f, o.title);
        fputs("</text>\n", f);
    }
    const int64_t plane = height * width;
    for (int64_t i = 0; i < count; i++) {
        const float *img = pixels + i * channels * plane;
        const int64_t x0 = (i % cols) * cw + (cw - iw) / 2, y0 = top + (i / cols) * chh + PAD;
        const bool wrong = labels && predicted && labels[i] != predicted[i];
        /* the image in its own units (one per pixel), scaled: crispEdges keeps seams out between runs */
        fprintf(f, "<g transform=\"translate(%lld %lld) scale(%d)\" shape-rendering=\"crispEdges\">\n", (long long)x0,
                (long long)y0, o.scale);
        fprintf(f, "<rect width=\"%lld\" height=\"%lld\" fill=\"#000000\"/>\n", (long long)width, (long long)height);
        for (int64_t y = 0; y < height; y++)
            for (int64_t x = 0; x < width;) {
                const uint32_t c = colour(img, channels, plane, y * width + x, o.lo, o.hi);
                int64_t end = x + 1;
                while (end < width && colour(img, channels, plane, y * width + end, o.lo, o.hi) == c) end++;
                if (c != 0) /* black is the background already */
                    fprintf(f, "<rect x=\"%lld\" y=\"%lld\" width=\"%lld\" height=\"1\" fill=\"#%06x\"/>\n",
                            (long long)x, (long long)y, (long long)(end - x), c);
                x = end;
            }
        fputs("</g>\n", f);
        if (wrong)
            fprintf(f,
                    "<rect x=\"%lld\" y=\"%lld\" width=\"%lld\" height=\"%lld\" fill=\"none\" stroke=\"#e00000\" "
                    "stroke-width=\"3\"/>\n",
                    (long long)x0 - 2, (long long)y0 - 2, (long long)iw + 4, (long long)ih + 4);
        const int64_t tx = (i % cols) * cw + cw / 2;
        int64_t ty = y0 + ih + LINE;
        if (predicted) {
            fprintf(f, "<text x=\"%lld\" y=\"%lld\" text-anchor=\"middle\" fill=\"%s\">", (long long)tx, (long long)ty,
                    wrong ? "#e00000" : "#000000");
            put_label(f, &o, predicted[i]);
            fputs("</text>\n", f);
            ty += LINE;
        }
        if (labels && (!predicted || wrong)) { /* a right prediction's name says it all */
            fprintf(f, "<text x=\"%lld\" y=\"%lld\" text-anchor=\"middle\">%s", (long long)tx, (long long)ty,
                    predicted ? "true: " : "");
            put_label(f, &o, labels[i]);
            fputs("</text>\n", f);
        }
    }
    fputs("</svg>\n", f);
    const bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) return magna_error_set(err, MAGNA_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return MAGNA_OK;
}
