/* idx.c — the IDX format of the MNIST family: 0x00 0x00 <type> <ndim>, ndim big-endian uint32 dims, then
 * the elements big-endian, row-major. The header is the only thing that says how much to allocate, so it
 * is checked against what the file can hold before any allocation: exactly for a plain file (its size is
 * known), by deflate's greatest compression ratio for a gzip file, whose buffer then grows only with the
 * data that really arrives — a header that lies costs an error message, never gigabytes. */
#include "magna/image.h"
#include "../graph/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef MAGNA_HAVE_ZLIB
#include <zlib.h>
#endif

/* deflate never compresses better than about 1032:1 (258-byte matches coded in 2 bits, see zlib's FAQ) */
#define DEFLATE_MAX_RATIO 1032
/* the first allocation for streamed data; doubled up to the header's size as data arrives */
#define STREAM_FIRST_CHUNK ((size_t)1 << 20)

const char *magna_idx_type_name(magna_idx_type type) {
    switch (type) {
    case MAGNA_IDX_U8: return "ubyte";
    case MAGNA_IDX_I8: return "byte";
    case MAGNA_IDX_I16: return "short";
    case MAGNA_IDX_I32: return "int";
    case MAGNA_IDX_F32: return "float";
    case MAGNA_IDX_F64: return "double";
    }
    return NULL;
}

static size_t type_size(magna_idx_type type) {
    switch (type) {
    case MAGNA_IDX_U8:
    case MAGNA_IDX_I8: return 1;
    case MAGNA_IDX_I16: return 2;
    case MAGNA_IDX_I32:
    case MAGNA_IDX_F32: return 4;
    case MAGNA_IDX_F64: return 8;
    }
    return 0;
}

void magna_idx_free(magna_idx *idx) {
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

/* ---- a byte source: a plain file or a gzip stream ---------------------------------------------- */

typedef struct source {
    const char *path;
    FILE *f;
#ifdef MAGNA_HAVE_ZLIB
    gzFile gz;
#endif
    bool gzip;
    bool regular;   /* a plain regular file: size is its exact length */
    long long size; /* the file's size on disk (compressed size for gzip), -1 when unknown */
} source;

static magna_status source_open(source *s, const char *path, magna_error *err) {
    memset(s, 0, sizeof *s);
    s->path = path;
    s->size = -1;
    if (!(s->f = fopen(path, "rb"))) return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(s->f), &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return magna_error_set(err, MAGNA_ERR_IO, "%s: is a directory, not a file", path);
        if (S_ISREG(sb.st_mode)) s->size = (long long)sb.st_size;
    }
    unsigned char magic[2];
    size_t n = fread(magic, 1, 2, s->f);
    if (ferror(s->f)) return magna_error_set(err, MAGNA_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    s->gzip = n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (!s->gzip) {
        /* a regular file is seekable; anything else (a pipe) is streamed and checked as it arrives */
        s->regular = s->size >= 0;
        if (s->regular) {
            if (fseek(s->f, 0, SEEK_SET) != 0)
                return magna_error_set(err, MAGNA_ERR_IO, "%s: seek failed: %s", path, strerror(errno));
        } else {
            return magna_error_set(err, MAGNA_ERR_UNSUPPORTED, "%s: not a regular file (IDX files are read from disk)", path);
        }
        return MAGNA_OK;
    }
#ifdef MAGNA_HAVE_ZLIB
    fclose(s->f), s->f = NULL;
    errno = 0;
    if (!(s->gz = gzopen(path, "rb")))
        return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot open: %s", path, strerror(errno ? errno : ENOMEM));
    gzbuffer(s->gz, 1 << 16);
    return MAGNA_OK;
#else
    return magna_error_set(err, MAGNA_ERR_UNSUPPORTED, "%s: a gzip file, and this magna was built without zlib", path);
#endif
}

static void source_close(source *s) {
    if (s->f) fclose(s->f);
#ifdef MAGNA_HAVE_ZLIB
    if (s->gz) gzclose(s->gz);
#endif
    s->f = NULL;
}

/* Reads up to n bytes; *got < n only at the end of the data. `what` says which part was being read. */
static magna_status source_read(source *s, void *buf, size_t n, size_t *got, const char *what, magna_error *err) {
    *got = 0;
#ifdef MAGNA_HAVE_ZLIB
    if (s->gz) {
        while (*got < n) {
            size_t want = n - *got;
            if (want > (1u << 30)) want = 1u << 30; /* gzread counts in unsigned int */
            int r = gzread(s->gz, (char *)buf + *got, (unsigned)want), code = Z_OK;
            const char *msg = gzerror(s->gz, &code);
            /* a truncated stream sets Z_BUF_ERROR while zlib still holds bytes it inflated: those keep coming
             * until a read returns none, so the error names the part that is really missing */
            if (r > 0) {
                *got += (size_t)r;
                continue;
            }
            if (r < 0 || (code != Z_OK && code != Z_STREAM_END)) {
                size_t pl = strlen(s->path); /* zlib's message starts with the path: say it once */
                if (strncmp(msg, s->path, pl) == 0 && strncmp(msg + pl, ": ", 2) == 0) msg += pl + 2;
                return magna_error_set(err, code == Z_ERRNO ? MAGNA_ERR_IO : MAGNA_ERR_FORMAT,
                            "%s: gzip stream broken while reading the %s: %s", s->path, what,
                            code == Z_ERRNO ? strerror(errno) : msg);
            }
            break;
        }
        return MAGNA_OK;
    }
#endif
    *got = fread(buf, 1, n, s->f);
    if (*got < n && ferror(s->f))
        return magna_error_set(err, MAGNA_ERR_IO, "%s: read failed while reading the %s: %s", s->path, what, strerror(errno));
    return MAGNA_OK;
}

/* ---- the reader --------------------------------------------------------------------------------- */

/* "10000 x 28 x 28 ubyte" */
static void dims_str(const magna_idx *x, char *buf, size_t cap) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < x->ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", i ? " x " : "", (long long)x->dims[i]);
    if (used < cap) snprintf(buf + used, cap - used, " %s", magna_idx_type_name(x->type));
}

static void to_host_order(void *data, int64_t count, size_t size) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    (void)data, (void)count, (void)size;
#else
    unsigned char *p = data;
    if (size == 2)
        for (int64_t i = 0; i < count; i++, p += 2) {
            uint16_t v;
            memcpy(&v, p, 2);
            v = __builtin_bswap16(v);
            memcpy(p, &v, 2);
        }
    else if (size == 4)
        for (int64_t i = 0; i < count; i++, p += 4) {
            uint32_t v;
            memcpy(&v, p, 4);
            v = __builtin_bswap32(v);
            memcpy(p, &v, 4);
        }
    else if (size == 8)
        for (int64_t i = 0; i < count; i++, p += 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            v = __builtin_bswap64(v);
            memcpy(p, &v, 8);
        }
#endif
}

static magna_status read_header(source *s, magna_idx *x, size_t *header_bytes, magna_error *err) {
    const char *path = s->path;
    unsigned char magic[4];
    size_t got;
    magna_status st = source_read(s, magic, 4, &got, "header", err);
    if (st != MAGNA_OK) return st;
    if (got < 4)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: %zu bytes, too short for an IDX file (a 4-byte magic number and dims)",
                    path, got);
    if (magic[0] != 0 || magic[1] != 0)
        return magna_error_set(err, MAGNA_ERR_FORMAT,
                    "%s: not an IDX file: the magic number is %02x %02x %02x %02x, expected 00 00 <type> <dims>", path,
                    magic[0], magic[1], magic[2], magic[3]);
    x->type = (magna_idx_type)magic[2];
    if (!magna_idx_type_name(x->type))
        return magna_error_set(err, MAGNA_ERR_FORMAT,
                    "%s: unknown IDX type 0x%02x in the magic number (expected 0x08 ubyte, 0x09 byte, 0x0b short, "
                    "0x0c int, 0x0d float or 0x0e double)",
                    path, magic[2]);
    x->elem_size = type_size(x->type);
    x->ndim = magic[3];
    if (x->ndim < 1 || x->ndim > MAGNA_MAX_DIMS)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: the magic number gives %d dims, expected 1 to %d", path, x->ndim,
                    MAGNA_MAX_DIMS);
    unsigned char d[4 * MAGNA_MAX_DIMS];
    const size_t want = 4 * (size_t)x->ndim;
    if ((st = source_read(s, d, want, &got, "header", err)) != MAGNA_OK) return st;
    if (got < want)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: truncated header: %d dims need %zu header bytes, the file has %zu",
                    path, x->ndim, 4 + want, 4 + got);
    *header_bytes = 4 + want;
    x->count = 1;
    for (int i = 0; i < x->ndim; i++) {
        x->dims[i] = (int64_t)d[4 * i] << 24 | (int64_t)d[4 * i + 1] << 16 | (int64_t)d[4 * i + 2] << 8 | d[4 * i + 3];
        if (x->dims[i] == 0) return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: dim %d of %d is 0: no data", path, i + 1, x->ndim);
        /* each dim < 2^32: the product stays below 2^63 until it passes the limit checked here */
        if (x->count > (int64_t)(SIZE_MAX / 2 / x->elem_size) / x->dims[i])
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: the header's dims multiply to more elements than memory holds",
                        path);
        x->count *= x->dims[i];
    }
    return MAGNA_OK;
}

magna_status magna_idx_read(const char *path, magna_idx *out, magna_error *err) {
    if (!out) return magna_error_set(err, MAGNA_ERR_ARG, "idx: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return magna_error_set(err, MAGNA_ERR_ARG, "idx: path is NULL");
    source s;
    magna_idx x = {0};
    size_t header = 0;
    magna_status st = source_open(&s, path, err);
    if (st == MAGNA_OK) st = read_header(&s, &x, &header, err);
    if (st != MAGNA_OK) {
        source_close(&s);
        return st;
    }
    const size_t need = (size_t)x.count * x.elem_size;
    char dims[160];
    dims_str(&x, dims, sizeof dims);

    if (s.regular) { /* the exact size is known: compare before allocating */
        const long long have = s.size - (long long)header;
        if (have != (long long)need) {
            source_close(&s);
            if (have < (long long)need)
                return magna_error_set(err, MAGNA_ERR_FORMAT,
                            "%s: truncated: the header's %s needs %zu bytes of data, the file has %lld", path, dims,
                            need, have);
            return magna_error_set(err, MAGNA_ERR_FORMAT,
                        "%s: %lld bytes after the data: the header's %s needs %zu bytes of data, the file has %lld",
                        path, have - (long long)need, dims, need, have);
        }
    } else if (s.size >= 0 && (double)need > (double)s.size * DEFLATE_MAX_RATIO) {
        source_close(&s);
        return magna_error_set(err, MAGNA_ERR_FORMAT,
                    "%s: the header's %s needs %zu bytes of data, more than a gzip file of %lld bytes can hold "
                    "(deflate compresses at most %d:1)",
                    path, dims, need, s.size, DEFLATE_MAX_RATIO);
    }

    /* a plain file gets its exact buffer at once; a stream's grows with what arrives */
    size_t cap = s.regular || need <= STREAM_FIRST_CHUNK ? need : STREAM_FIRST_CHUNK, have = 0;
    unsigned char *data = malloc(cap);
    if (!data) {
        source_close(&s);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory for %zu bytes of data (%s)", path, need, dims);
    }
    for (;;) {
        size_t got;
        if ((st = source_read(&s, data + have, cap - have, &got, "data", err)) != MAGNA_OK) break;
        have += got;
        if (have < cap || cap == need) break; /* the end of the data, or all the header promised */
        size_t grown = cap > need / 2 ? need : cap * 2;
        unsigned char *bigger = realloc(data, grown);
        if (!bigger) {
            st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory for %zu bytes of data (%s)", path, need, dims);
            break;
        }
        data = bigger, cap = grown;
    }
    if (st == MAGNA_OK && have < need)
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: truncated: the header's %s needs %zu bytes of data, the file has %zu",
                  path, dims, need, have);
    if (st == MAGNA_OK && !s.regular) { /* whatever follows the data is counted for the message */
        unsigned char rest[4096];
        size_t got, extra = 0;
        do {
            if ((st = source_read(&s, rest, sizeof rest, &got, "bytes after the data", err)) != MAGNA_OK) break;
            extra += got;
        } while (got == sizeof rest);
        if (st == MAGNA_OK && extra)
            st = magna_error_set(err, MAGNA_ERR_FORMAT,
                      "%s: %zu bytes after the data: the header's %s needs %zu bytes of data, the file has %zu", path,
                      extra, dims, need, need + extra);
    }
    source_close(&s);
    if (st != MAGNA_OK) {
        free(data);
        return st;
    }
    to_host_order(data, x.count, x.elem_size);
    x.data = data;
    *out = x;
    return MAGNA_OK;
}
