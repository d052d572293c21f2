/* onednn.h — the oneDNN CPU engine and stream that magna's ops share. Only built with MAGNA_HAVE_DNNL
 * (CMake defines it when it finds dnnl.h and libdnnl). */
#ifndef MAGNA_OPS_ONEDNN_H
#define MAGNA_OPS_ONEDNN_H

#ifdef MAGNA_HAVE_DNNL
#include <dnnl.h>

/* The one CPU engine and its in-order stream, made on first use (at infer, never inside a step: making
 * them allocates). Returns oneDNN's status; on failure *engine and *stream are NULL. */
dnnl_status_t magna_dnnl_engine(dnnl_engine_t *engine, dnnl_stream_t *stream);
/* oneDNN's name for a status ("out_of_memory", "unimplemented", ...). */
const char *magna_dnnl_status_str(dnnl_status_t s);
/* "oneDNN 2.6.3" (the library loaded at run time, not the header built against). */
const char *magna_dnnl_version(void);
#endif

#endif
