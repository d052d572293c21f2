/* magna/io.h — checkpoints in the safetensors format (DESIGN §5), readable by PyTorch and NumPy through
 * the `safetensors` package.
 *
 *   magna_error err;
 *   if (magna_save_safetensors(g, "model.safetensors", (const char *const[]){"epoch", "12", NULL}, &err))
 *       puts(err.message);
 *   if (magna_load_safetensors(g2, "model.safetensors", &err)) puts(err.message);
 *
 * The file is an 8-byte little-endian header length N, N bytes of JSON (padded with spaces to a multiple
 * of 8) mapping each tensor name to {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} plus an
 * optional "__metadata__" object of string -> string, then the raw data, offsets counted from its start. */
#ifndef MAGNA_IO_H
#define MAGNA_IO_H

#include "core.h"
#include "graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes every param and state node of a compiled graph, by name, as F32, contiguous from offset 0.
 * metadata_kv: NULL-terminated key, value, key, value, ... pairs (or NULL) stored in "__metadata__".
 * Atomic: the data goes to `path.tmp.<pid>`, is flushed and fsynced, then renamed over `path` and the
 * directory fsynced; on any failure the temp file is removed and a file already at `path` is untouched.
 * Errors: MAGNA_ERR_IO (with the system's reason), MAGNA_ERR_STATE (not compiled), MAGNA_ERR_ARG. */
magna_status magna_save_safetensors(magna_graph *g, const char *path, const char *const *metadata_kv,
                                    magna_error *err);

/* Reads a safetensors file into the param and state nodes of a compiled graph with the same architecture.
 * Everything is validated before a value is copied: header length, JSON (duplicate keys rejected), dtype
 * F32, shapes equal to the nodes', offsets in range, matching the sizes, non-overlapping and covering the
 * data exactly; every param/state node present and no unknown tensor. A failure leaves the graph as it was
 * and returns MAGNA_ERR_FORMAT (or MAGNA_ERR_IO / MAGNA_ERR_NOMEM) with a message naming the file and the
 * tensor or field. */
magna_status magna_load_safetensors(magna_graph *g, const char *path, magna_error *err);

#ifdef __cplusplus
}
#endif
#endif
