/* onednn.c — the shared oneDNN engine and stream (see onednn.h). One of each for the process: oneDNN's CPU
 * engine has no state of its own worth separating per graph, and primitives made on it are cached by
 * oneDNN across graphs with the same shapes. They live until the process ends. */
#ifdef MAGNA_HAVE_DNNL
#include "onednn.h"

#include <dnnl_debug.h>
#include <pthread.h>
#include <stdio.h>

static struct {
    pthread_once_t once;
    dnnl_status_t status;
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    char version[32];
} dn = {.once = PTHREAD_ONCE_INIT};

static void make_engine(void) {
    dn.status = dnnl_engine_create(&dn.engine, dnnl_cpu, 0);
    if (dn.status == dnnl_success) dn.status = dnnl_stream_create(&dn.stream, dn.engine, dnnl_stream_default_flags);
    if (dn.status != dnnl_success) {
        if (dn.engine) dnnl_engine_destroy(dn.engine);
        dn.engine = NULL, dn.stream = NULL;
    }
}

dnnl_status_t magna_dnnl_engine(dnnl_engine_t *engine, dnnl_stream_t *stream) {
    pthread_once(&dn.once, make_engine);
    *engine = dn.engine, *stream = dn.stream;
    return dn.status;
}

const char *magna_dnnl_status_str(dnnl_status_t s) { return dnnl_status2str(s); }

const char *magna_dnnl_version(void) {
    if (!dn.version[0]) {
        const dnnl_version_t *v = dnnl_version();
        snprintf(dn.version, sizeof dn.version, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
    }
    return dn.version;
}
#else
typedef int magna_onednn_absent; /* ISO C wants something in every file */
#endif
