/* tensorboard.c — TensorBoard event files (DESIGN §5): TFRecord framing with masked CRC-32C around Event
 * protobufs, encoded by hand (no protobuf library):
 *
 *   Event         { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 *   Summary       { repeated Value value = 1; }
 *   Summary.Value { string tag = 1; float simple_value = 2; }
 *
 * Also the directory helper (mkdir -p) shared with train_log.c through magna_io_mkdirs. */
#include "magna/io.h"
#include "../graph/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tensorboard.c copies doubles and floats as stored in memory: little-endian hosts only"
#endif

#define TAG_MAX 1024

/* ---- CRC-32C ------------------------------------------------------------------------------------ */

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    __atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE); /* racing initialisers write the same values */
}

uint32_t magna_crc32c(const void *data, size_t n) {
    if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE)) crc_init();
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t masked_crc(const void *data, size_t n) {
    const uint32_t c = magna_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ---- directories -------------------------------------------------------------------------------- */

/* mkdir -p; returns 0 or an errno, with the component that failed in `failed` (size `cap`). */
int magna_io_mkdirs(const char *dir, char *failed, size_t cap) {
    const size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (!p) return ENOMEM;
    memcpy(p, dir, n + 1);
    int rc = 0;
    for (size_t i = 1; i <= n && !rc; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        const char save = p[i];
        p[i] = '\0';
        struct stat sb;
        if (mkdir(p, 0755) != 0) {
            const int e = errno;
            if (e != EEXIST) rc = e;
            else if (stat(p, &sb) != 0) rc = errno;
            else if (!S_ISDIR(sb.st_mode)) rc = ENOTDIR;
        }
        if (rc && failed && cap) snprintf(failed, cap, "%s", p);
        p[i] = save;
    }
    free(p);
    return rc;
}

/* ---- writer ------------------------------------------------------------------------------------- */

struct magna_tb_writer {
    FILE *f;
    char *path;
    char errmsg[512];
};

static double wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static size_t put_varint(unsigned char *b, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) b[n++] = (unsigned char)(v | 0x80), v >>= 7;
    b[n++] = (unsigned char)v;
    return n;
}

/* One TFRecord around `data`. */
static magna_status write_record(magna_tb_writer *w, const unsigned char *data, size_t n) {
    unsigned char head[12], tail[4];
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)n >> (8 * i));
    const uint32_t lc = masked_crc(head, 8), dc = masked_crc(data, n);
    for (int i = 0; i < 4; i++) head[8 + i] = (unsigned char)(lc >> (8 * i)), tail[i] = (unsigned char)(dc >> (8 * i));
    if (fwrite(head, 1, 12, w->f) != 12 || fwrite(data, 1, n, w->f) != n || fwrite(tail, 1, 4, w->f) != 4) {
        snprintf(w->errmsg, sizeof w->errmsg, "%s: write failed: %s", w->path, strerror(errno));
        return MAGNA_ERR_IO;
    }
    return MAGNA_OK;
}

/* Event header fields: wall_time (1, fixed64) and step (2, varint). */
static size_t put_event_head(unsigned char *b, int64_t step) {
    size_t n = 0;
    const double t = wall_time();
    b[n++] = 0x09;
    memcpy(b + n, &t, 8), n += 8;
    b[n++] = 0x10;
    n += put_varint(b + n, (uint64_t)step);
    return n;
}

magna_tb_writer *magna_tb_open(const char *dir, magna_error *err) {
    if (err) err->status = MAGNA_OK, err->message[0] = '\0';
    if (!dir || !*dir) {
        magna_error_set(err, MAGNA_ERR_ARG, "tensorboard: a directory is required");
        return NULL;
    }
    char failed[512];
    int e = magna_io_mkdirs(dir, failed, sizeof failed);
    if (e) {
        magna_error_set(err, MAGNA_ERR_IO, "tensorboard %s: cannot create the directory %s: %s", dir, failed, strerror(e));
        return NULL;
    }
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0 || !host[0]) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *c = host; *c; c++)
        if (*c == '/') *c = '_';
    magna_tb_writer *w = calloc(1, sizeof *w);
    const size_t plen = strlen(dir) + strlen(host) + 96;
    if (w) w->path = malloc(plen);
    if (!w || !w->path) {
        free(w);
        magna_error_set(err, MAGNA_ERR_NOMEM, "tensorboard %s: out of memory", dir);
        return NULL;
    }
    snprintf(w->path, plen, "%s/events.out.tfevents.%lld.%s.%ld.magna", dir, (long long)time(NULL), host,
             (long)getpid());
    int fd = open(w->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    w->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!w->f) {
        magna_error_set(err, MAGNA_ERR_IO, "tensorboard: cannot create %s: %s", w->path, strerror(errno));
        if (fd >= 0) close(fd);
        free(w->path), free(w);
        return NULL;
    }
    /* first event: the file version */
    static const char version[] = "brain.Event:2";
    unsigned char b[64];
    size_t n = put_event_head(b, 0);
    b[n++] = 0x1a;
    b[n++] = (unsigned char)(sizeof version - 1);
    memcpy(b + n, version, sizeof version - 1), n += sizeof version - 1;
    if (write_record(w, b, n) != MAGNA_OK || fflush(w->f) != 0) {
        magna_error_set(err, MAGNA_ERR_IO, "tensorboard: writing %s failed: %s", w->path, strerror(errno));
        magna_tb_close(w);
        return NULL;
    }
    return w;
}

magna_status magna_tb_scalar(magna_tb_writer *w, const char *tag, int64_t step, float value) {
    if (!w) return MAGNA_ERR_ARG;
    const size_t tlen = tag ? strlen(tag) : 0;
    if (!tag || !tlen || tlen > TAG_MAX) {
        snprintf(w->errmsg, sizeof w->errmsg, "%s: a scalar's tag must be 1 to %d bytes", w->path, TAG_MAX);
        return MAGNA_ERR_ARG;
    }
    unsigned char value_msg[TAG_MAX + 16], summary[TAG_MAX + 32], event[TAG_MAX + 64];
    size_t nv = 0, ns = 0, ne;
    value_msg[nv++] = 0x0a; /* Value.tag */
    nv += put_varint(value_msg + nv, tlen);
    memcpy(value_msg + nv, tag, tlen), nv += tlen;
    value_msg[nv++] = 0x15; /* Value.simple_value, fixed32 */
    memcpy(value_msg + nv, &value, 4), nv += 4;
    summary[ns++] = 0x0a; /* Summary.value */
    ns += put_varint(summary + ns, nv);
    memcpy(summary + ns, value_msg, nv), ns += nv;
    ne = put_event_head(event, step);
    event[ne++] = 0x2a; /* Event.summary */
    ne += put_varint(event + ne, ns);
    memcpy(event + ne, summary, ns), ne += ns;
    return write_record(w, event, ne);
}

const char *magna_tb_errmsg(const magna_tb_writer *w) { return w ? w->errmsg : "tensorboard: no writer"; }
const char *magna_tb_path(const magna_tb_writer *w) { return w ? w->path : NULL; }

void magna_tb_flush(magna_tb_writer *w) {
    if (w && w->f) fflush(w->f);
}

void magna_tb_close(magna_tb_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    free(w->path);
    free(w);
}
