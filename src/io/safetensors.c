/* safetensors.c — save and load a graph's params and states as safetensors (DESIGN §5).
 *
 * Save writes the JSON header by hand and the file atomically (temp file, fsync, rename, fsync of the
 * directory). Load parses the header with jansson and checks every length, offset and shape against the
 * file and the graph before it copies a single value. */
#include "magna/io.h"
#include "../graph/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c writes floats as stored in memory: little-endian hosts only"
#endif

#define HEADER_MAX ((uint64_t)100 << 20) /* 100 MiB, as the safetensors package */

/* One tensor of a file: a graph's param or state node, or one of the caller's extra tensors. */
typedef struct view {
    const char *name;
    int ndim;
    const int64_t *shape;
    int64_t numel;
    void *data;
    magna_dtype dtype;
} view;

/* The param nodes, then the state nodes, then the extras, as one list (NULL with err set when out of memory). */
static view *gather(magna_graph *g, const magna_st_tensor *extra, int n_extra, int *count, magna_error *err) {
    const int np = g ? magna_graph_param_count(g) : 0, ns = g ? magna_graph_state_count(g) : 0;
    const int n = np + ns + (n_extra > 0 ? n_extra : 0);
    view *v = calloc((size_t)n + 1, sizeof *v);
    if (!v) {
        magna_error_set(err, MAGNA_ERR_NOMEM, "safetensors: out of memory");
        return NULL;
    }
    for (int i = 0; i < np + ns; i++) {
        magna_node *t = i < np ? magna_graph_param_at(g, i) : magna_graph_state_at(g, i - np);
        v[i] = (view){magna_node_name(t), magna_node_ndim(t), magna_node_shape(t), magna_node_numel(t),
                      magna_node_data(t), magna_node_dtype(t)};
    }
    for (int i = 0; i < n_extra; i++) {
        const magna_st_tensor *e = &extra[i];
        int64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) numel *= e->shape[d];
        v[np + ns + i] = (view){e->name, e->ndim, e->shape, numel, e->data, MAGNA_F32};
    }
    *count = n;
    return v;
}

/* ---- save --------------------------------------------------------------------------------------- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}
static void sb_str(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_fmt(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(strbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}
/* A JSON string literal: quotes, backslashes and control characters escaped; other bytes as they are
 * (names are expected to be UTF-8). */
static void sb_json_string(strbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        default:
            if (*c < 0x20)
                sb_fmt(b, "\\u%04x", *c);
            else
                sb_put(b, (const char *)c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static bool write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

/* fsync the directory holding `path`, so the rename itself survives a crash. */
static int sync_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (!dir) return ENOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0) return errno;
    int rc = fsync(fd) == 0 || errno == EINVAL || errno == EROFS ? 0 : errno; /* some file systems can't */
    close(fd);
    return rc;
}

magna_status magna_save_safetensors(magna_graph *g, const char *path, const char *const *metadata_kv,
                                    magna_error *err) {
    if (!g) {
        if (err) err->status = MAGNA_OK, err->message[0] = '\0';
        return magna_error_set(err, MAGNA_ERR_ARG, "save_safetensors: graph and path are required");
    }
    return magna_save_safetensors_ex(g, NULL, 0, path, metadata_kv, err);
}

static magna_status save_views(const view *tv, int n, const char *path, const char *const *metadata_kv,
                               magna_error *err);

magna_status magna_save_safetensors_ex(magna_graph *g, const magna_st_tensor *extra, int n_extra, const char *path,
                                       const char *const *metadata_kv, magna_error *err) {
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
    if (!path || !*path || n_extra < 0 || (n_extra > 0 && !extra))
        return magna_error_set(err, MAGNA_ERR_ARG, "save_safetensors: a path is required (and extras when counted)");
    int n = 0;
    view *tv = gather(g, extra, n_extra, &n, err);
    if (!tv) return err ? err->status : MAGNA_ERR_NOMEM;
    magna_status st = save_views(tv, n, path, metadata_kv, err);
    free(tv);
    return st;
}

static magna_status save_views(const view *tv, int n, const char *path, const char *const *metadata_kv,
                               magna_error *err) {
    /* validate the tensors and build the header */
    strbuf h = {0};
    sb_str(&h, "{");
    bool first = true;
    if (metadata_kv && metadata_kv[0]) {
        sb_str(&h, "\"__metadata__\":{");
        for (int i = 0; metadata_kv[i]; i += 2) {
            if (!metadata_kv[i + 1]) {
                free(h.p);
                return magna_error_set(err, MAGNA_ERR_ARG, "save_safetensors %s: metadata key '%s' has no value", path,
                            metadata_kv[i]);
            }
            if (i) sb_str(&h, ",");
            sb_json_string(&h, metadata_kv[i]);
            sb_str(&h, ":");
            sb_json_string(&h, metadata_kv[i + 1]);
        }
        sb_str(&h, "}");
        first = false;
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const view *t = &tv[i];
        const char *name = t->name;
        if (!name || !*name || strcmp(name, "__metadata__") == 0) {
            free(h.p);
            return magna_error_set(err, MAGNA_ERR_ARG, "save_safetensors %s: tensor %d has the name '%s', which cannot be saved",
                        path, i, name ? name : "");
        }
        for (int j = 0; j < i; j++)
            if (strcmp(tv[j].name, name) == 0) {
                free(h.p);
                return magna_error_set(err, MAGNA_ERR_ARG, "save_safetensors %s: two tensors are named '%s'", path, name);
            }
        if (t->dtype != MAGNA_F32) {
            free(h.p);
            return magna_error_set(err, MAGNA_ERR_DTYPE, "save_safetensors %s: tensor '%s' is %s, only F32 is saved", path, name,
                        magna_dtype_name(t->dtype));
        }
        const int64_t numel = t->numel;
        if (numel > 0 && !t->data) {
            free(h.p);
            return magna_error_set(err, MAGNA_ERR_STATE, "save_safetensors %s: tensor '%s' has no storage (compile the graph first)",
                        path, name);
        }
        if (!first) sb_str(&h, ",");
        first = false;
        sb_json_string(&h, name);
        sb_str(&h, ":{\"dtype\":\"F32\",\"shape\":[");
        const int64_t *shape = t->shape;
        for (int d = 0; d < t->ndim; d++) sb_fmt(&h, "%s%lld", d ? "," : "", (long long)shape[d]);
        const uint64_t bytes = (uint64_t)numel * sizeof(float);
        sb_fmt(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset, (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    sb_str(&h, "}");
    while (!h.oom && h.len % 8) sb_str(&h, " ");
    if (h.oom) {
        free(h.p);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "save_safetensors %s: out of memory for the header", path);
    }

    /* write to a temp file beside the target, then rename over it */
    const size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (!tmp) {
        free(h.p);
        return magna_error_set(err, MAGNA_ERR_NOMEM, "save_safetensors %s: out of memory", path);
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    magna_status st = MAGNA_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        st = magna_error_set(err, MAGNA_ERR_IO, "save_safetensors %s: cannot create %s: %s", path, tmp, strerror(errno));
        if (fd >= 0) close(fd), unlink(tmp);
        free(tmp), free(h.p);
        return st;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
    bool ok = write_all(f, len8, 8) && write_all(f, h.p, h.len);
    for (int i = 0; ok && i < n; i++) ok = write_all(f, tv[i].data, (size_t)tv[i].numel * sizeof(float));
    free(h.p);
    if (!ok || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        const int e = errno;
        fclose(f);
        unlink(tmp);
        st = magna_error_set(err, MAGNA_ERR_IO, "save_safetensors %s: writing %s failed: %s", path, tmp, strerror(e));
        free(tmp);
        return st;
    }
    if (fclose(f) != 0) {
        const int e = errno;
        unlink(tmp);
        st = magna_error_set(err, MAGNA_ERR_IO, "save_safetensors %s: closing %s failed: %s", path, tmp, strerror(e));
        free(tmp);
        return st;
    }
    if (rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        st = magna_error_set(err, MAGNA_ERR_IO, "save_safetensors %s: renaming %s over it failed: %s", path, tmp, strerror(e));
        free(tmp);
        return st;
    }
    free(tmp);
    const int e = sync_dir(path);
    if (e) /* the new file is in place; only its durability across a crash is in doubt */
        return magna_error_set(err, MAGNA_ERR_IO, "save_safetensors %s: written, but syncing its directory failed: %s", path,
                    strerror(e));
    return MAGNA_OK;
}

/* ---- load --------------------------------------------------------------------------------------- */

typedef struct span {
    uint64_t begin, end;
    int node; /* index in the view list */
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static bool read_exact(FILE *f, void *p, size_t n) { return n == 0 || fread(p, 1, n, f) == n; }

/* Checks one tensor entry against its node; fills *sp. */
static magna_status check_entry(const char *path, const char *name, json_t *v, const view *t, uint64_t data_size,
                                span *sp, magna_error *err) {
    if (!json_is_object(v)) return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);
    json_t *dtype = json_object_get(v, "dtype");
    if (!json_is_string(dtype))
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: tensor '%s': field 'dtype' is missing or not a string", path, name);
    if (strcmp(json_string_value(dtype), "F32") != 0)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: tensor '%s': dtype '%s', expected 'F32'", path, name,
                    json_string_value(dtype));
    json_t *shape = json_object_get(v, "shape");
    if (!json_is_array(shape))
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: tensor '%s': field 'shape' is missing or not an array", path, name);
    const int ndim = t->ndim;
    const int64_t *want = t->shape;
    char wbuf[128];
    magna_shape_str(ndim, want, wbuf, sizeof wbuf);
    bool same = json_array_size(shape) == (size_t)ndim;
    for (size_t d = 0; d < json_array_size(shape); d++) {
        json_t *x = json_array_get(shape, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: tensor '%s': field 'shape' has a non-integer or negative entry",
                        path, name);
        if (same && json_integer_value(x) != want[d]) same = false;
    }
    if (!same) {
        char got[128];
        size_t used = 0;
        got[0] = '\0';
        used += (size_t)snprintf(got, sizeof got, "[");
        for (size_t d = 0; d < json_array_size(shape) && used < sizeof got; d++)
            used += (size_t)snprintf(got + used, sizeof got - used, "%s%lld", d ? ", " : "",
                                     (long long)json_integer_value(json_array_get(shape, d)));
        if (used < sizeof got) snprintf(got + used, sizeof got - used, "]");
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: tensor '%s': shape %s in the file, the model's is %s", path, name, got,
                    wbuf);
    }
    json_t *off = json_object_get(v, "data_offsets");
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)))
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: tensor '%s': field 'data_offsets' is not [begin, end] integers", path,
                    name);
    const json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
    if (b < 0 || e < b || (uint64_t)e > data_size)
        return magna_error_set(err, MAGNA_ERR_FORMAT,
                    "%s: tensor '%s': data_offsets [%lld, %lld] out of range (the data section is %llu bytes)", path,
                    name, (long long)b, (long long)e, (unsigned long long)data_size);
    const uint64_t want_bytes = (uint64_t)t->numel * sizeof(float);
    if ((uint64_t)(e - b) != want_bytes)
        return magna_error_set(err, MAGNA_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] span %lld bytes, shape %s F32 needs %llu",
                    path, name, (long long)b, (long long)e, (long long)(e - b), wbuf, (unsigned long long)want_bytes);
    sp->begin = (uint64_t)b, sp->end = (uint64_t)e;
    return MAGNA_OK;
}

const char *magna_st_metadata_get(const magna_st_metadata *md, const char *key) {
    for (int i = 0; md && key && i < md->count; i++)
        if (strcmp(md->keys[i], key) == 0) return md->values[i];
    return NULL;
}

void magna_st_metadata_free(magna_st_metadata *md) {
    if (!md) return;
    for (int i = 0; i < md->count; i++) free(md->keys[i]), free(md->values[i]);
    free(md->keys), free(md->values);
    memset(md, 0, sizeof *md);
}

/* Copies the header's __metadata__ (already checked to be string -> string) out. */
static magna_status copy_metadata(json_t *meta, magna_st_metadata *md) {
    const size_t n = meta ? json_object_size(meta) : 0;
    md->keys = calloc(n + 1, sizeof *md->keys), md->values = calloc(n + 1, sizeof *md->values);
    if (!md->keys || !md->values) return MAGNA_ERR_NOMEM;
    const char *k;
    json_t *v;
    if (meta)
        json_object_foreach(meta, k, v) {
            md->keys[md->count] = strdup(k), md->values[md->count] = strdup(json_string_value(v));
            if (!md->keys[md->count] || !md->values[md->count]) {
                free(md->keys[md->count]), free(md->values[md->count]);
                return MAGNA_ERR_NOMEM;
            }
            md->count++;
        }
    return MAGNA_OK;
}

static magna_status load_views(const view *tv, int n, bool tensors, const char *path, magna_st_metadata *md,
                               magna_error *err);

magna_status magna_load_safetensors(magna_graph *g, const char *path, magna_error *err) {
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
    if (!g || !path) return magna_error_set(err, MAGNA_ERR_ARG, "load_safetensors: graph and path are required");
    return magna_load_safetensors_ex(g, NULL, 0, path, NULL, err);
}

magna_status magna_load_safetensors_ex(magna_graph *g, const magna_st_tensor *extra, int n_extra, const char *path,
                                       magna_st_metadata *md, magna_error *err) {
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
    if (md) memset(md, 0, sizeof *md);
    if (!path || n_extra < 0 || (n_extra > 0 && !extra))
        return magna_error_set(err, MAGNA_ERR_ARG, "load_safetensors: a path is required (and extras when counted)");
    int n = 0;
    view *tv = gather(g, extra, n_extra, &n, err);
    if (!tv) return err ? err->status : MAGNA_ERR_NOMEM;
    magna_status st = load_views(tv, n, true, path, md, err);
    free(tv);
    return st;
}

magna_status magna_read_safetensors_metadata(const char *path, magna_st_metadata *md, magna_error *err) {
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
    if (md) memset(md, 0, sizeof *md);
    if (!path || !md) return magna_error_set(err, MAGNA_ERR_ARG, "read_safetensors_metadata: path and md are required");
    return load_views(NULL, 0, false, path, md, err);
}

/* Validates the file; with `tensors`, checks it holds exactly tv[0..n) and copies them in; fills md (when
 * not NULL) only on success. */
static magna_status load_views(const view *tv, int n, bool tensors, const char *path, magna_st_metadata *md,
                               magna_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        const int e = errno;
        fclose(f);
        return magna_error_set(err, MAGNA_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        fclose(f);
        return magna_error_set(err, MAGNA_ERR_IO, "%s: not a regular file", path);
    }
    const uint64_t fsize = (uint64_t)sb.st_size;
    magna_status st = MAGNA_OK;
    char *hdr = NULL;
    json_t *root = NULL;
    span *spans = NULL;
    float *data = NULL;

    if (fsize == 0) {
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: empty file (a safetensors file starts with an 8-byte header length)", path);
        goto done;
    }
    if (fsize < 8) {
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: header length truncated: the file is %llu bytes, fewer than 8", path,
                  (unsigned long long)fsize);
        goto done;
    }
    unsigned char len8[8];
    if (!read_exact(f, len8, 8)) {
        st = magna_error_set(err, MAGNA_ERR_IO, "%s: reading the header length failed", path);
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)len8[i] << (8 * i);
    /* safetensors has no magic number; its JSON header's '{' right after the length is the nearest thing, and
     * checking it first names a file of another kind (a PyTorch zip, a pickle, text) for what it is */
    const int first = fsize > 8 ? fgetc(f) : EOF;
    if (fsize > 8 && first != '{') {
        st = magna_error_set(err, MAGNA_ERR_FORMAT,
                             "%s: not a safetensors file: it starts %02x %02x %02x %02x %02x %02x %02x %02x %02x, "
                             "not an 8-byte header length then '{'",
                             path, len8[0], len8[1], len8[2], len8[3], len8[4], len8[5], len8[6], len8[7],
                             (unsigned)(first == EOF ? 0 : first));
        goto done;
    }
    if (fsize > 8 && ungetc(first, f) == EOF) {
        st = magna_error_set(err, MAGNA_ERR_IO, "%s: reading the header failed", path);
        goto done;
    }
    if (hlen > fsize - 8) {
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%llu bytes)", path,
                  (unsigned long long)hlen, (unsigned long long)fsize);
        goto done;
    }
    if (hlen > HEADER_MAX || hlen < 2) {
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: header length %llu is not sane (2 bytes .. 100 MiB)", path,
                  (unsigned long long)hlen);
        goto done;
    }
    const uint64_t data_size = fsize - 8 - hlen;
    if (!(hdr = malloc((size_t)hlen))) {
        st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory for a %llu-byte header", path, (unsigned long long)hlen);
        goto done;
    }
    if (!read_exact(f, hdr, (size_t)hlen)) {
        st = magna_error_set(err, MAGNA_ERR_IO, "%s: reading the header failed", path);
        goto done;
    }
    json_error_t jerr;
    if (!(root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr))) {
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: header is not valid JSON: %s (line %d, column %d)", path, jerr.text,
                  jerr.line, jerr.column);
        goto done;
    }
    if (!json_is_object(root)) {
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta) {
        if (!json_is_object(meta)) {
            st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: field '__metadata__' is not an object", path);
            goto done;
        }
        const char *k;
        json_t *v;
        json_object_foreach(meta, k, v) {
            if (!json_is_string(v)) {
                st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: __metadata__ value of '%s' is not a string", path, k);
                goto done;
            }
        }
    }
    if (!tensors) { /* metadata only: the header's structure is checked, the tensors are not read */
        if (copy_metadata(meta, md) != MAGNA_OK) {
            magna_st_metadata_free(md);
            st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", path);
        }
        goto done;
    }
    if (!(spans = calloc((size_t)n + 1, sizeof *spans))) {
        st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n; i++) spans[i].node = -1;
    {
        const char *k;
        json_t *v;
        json_object_foreach(root, k, v) {
            if (strcmp(k, "__metadata__") == 0) continue;
            int idx = -1;
            for (int i = 0; i < n && idx < 0; i++)
                if (strcmp(tv[i].name, k) == 0 && spans[i].node < 0) idx = i;
            if (idx < 0) {
                st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: unknown tensor '%s' (the model has no param or state by that name)",
                          path, k);
                goto done;
            }
            if ((st = check_entry(path, k, v, &tv[idx], data_size, &spans[idx], err)) != MAGNA_OK) goto done;
            spans[idx].node = idx;
        }
    }
    for (int i = 0; i < n; i++)
        if (spans[i].node < 0) {
            st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: missing tensor '%s'", path, tv[i].name);
            goto done;
        }
    qsort(spans, (size_t)n, sizeof *spans, span_cmp);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (spans[i].begin < at) {
            st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s'", path,
                      tv[spans[i].node].name, (unsigned long long)spans[i].begin,
                      (unsigned long long)spans[i].end, tv[spans[i - 1].node].name);
            goto done;
        }
        if (spans[i].begin > at) {
            st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: tensor '%s': data_offsets leave a gap of bytes [%llu, %llu) no tensor covers",
                      path, tv[spans[i].node].name, (unsigned long long)at,
                      (unsigned long long)spans[i].begin);
            goto done;
        }
        at = spans[i].end;
    }
    if (at != data_size) {
        st = magna_error_set(err, MAGNA_ERR_FORMAT, "%s: data size mismatch: the data section is %llu bytes, the tensors cover %llu",
                  path, (unsigned long long)data_size, (unsigned long long)at);
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (tv[i].numel > 0 && !tv[i].data) {
            st = magna_error_set(err, MAGNA_ERR_STATE, "%s: tensor '%s' has no storage in the graph (compile it first)", path,
                      tv[i].name);
            goto done;
        }
    /* all checks passed: read the data whole, then copy it in, so a short read changes nothing */
    if (!(data = malloc((size_t)data_size + 1))) {
        st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory for %llu bytes of data", path, (unsigned long long)data_size);
        goto done;
    }
    if (!read_exact(f, data, (size_t)data_size)) {
        st = magna_error_set(err, MAGNA_ERR_IO, "%s: reading the data failed (the file changed while read?)", path);
        goto done;
    }
    if (md && copy_metadata(meta, md) != MAGNA_OK) {
        magna_st_metadata_free(md);
        st = magna_error_set(err, MAGNA_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n; i++)
        if (spans[i].end > spans[i].begin)
            memcpy(tv[spans[i].node].data, (const char *)data + spans[i].begin, (size_t)(spans[i].end - spans[i].begin));
done:
    free(data);
    free(spans);
    json_decref(root);
    free(hdr);
    fclose(f);
    return st;
}
