/* magna/io.h — what magna writes for other tools: checkpoints in the safetensors format (DESIGN §5),
 * readable by PyTorch and NumPy through the `safetensors` package, and training logs (TensorBoard event
 * files, a CSV of the same scalars, an SVG plot of the loss curves; `fit(.log_dir)` writes all three).
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

/* Tensors beside a graph's: the optimizer's moments, a run's best weights, anything flat in F32. `data`
 * is read by save and written by load (it must hold the shape's elements). */
typedef struct magna_st_tensor {
    const char *name;
    int ndim;
    int64_t shape[MAGNA_MAX_DIMS];
    float *data;
} magna_st_tensor;

/* A file's "__metadata__", string -> string, as read back. */
typedef struct magna_st_metadata {
    int count;
    char **keys, **values;
} magna_st_metadata;
const char *magna_st_metadata_get(const magna_st_metadata *md, const char *key); /* NULL when absent */
void magna_st_metadata_free(magna_st_metadata *md);

/* As save/load above, with `extra` tensors after the graph's (g may be NULL: the extras only) and, for load,
 * the metadata handed back in *md (when md is not NULL; free it with magna_st_metadata_free). Load checks
 * the extras as it checks the nodes: each present once, shape equal, dtype F32, nothing unknown. */
magna_status magna_save_safetensors_ex(magna_graph *g, const magna_st_tensor *extra, int n_extra, const char *path,
                                       const char *const *metadata_kv, magna_error *err);
magna_status magna_load_safetensors_ex(magna_graph *g, const magna_st_tensor *extra, int n_extra, const char *path,
                                       magna_st_metadata *md, magna_error *err);
/* Validates the header (length, JSON, __metadata__ strings) and returns the metadata alone. */
magna_status magna_read_safetensors_metadata(const char *path, magna_st_metadata *md, magna_error *err);

/* ---- training logs (DESIGN §5) -------------------------------------------------------------------- */

/* CRC-32C (Castagnoli, reflected 0x82F63B78), as TFRecord uses: magna_crc32c("123456789", 9) = 0xE3069283. */
uint32_t magna_crc32c(const void *data, size_t n);

/* A TensorBoard event file: TFRecord records (uint64 length LE, masked CRC-32C of the length, the data,
 * masked CRC-32C of the data) each holding an Event protobuf; the first carries file_version
 * "brain.Event:2", the others one Summary.Value{tag, simple_value}.
 *
 *   magna_tb_writer *w = magna_tb_open("runs/exp1", &err);   // creates the directory (and parents)
 *   magna_tb_scalar(w, "train/loss", epoch, loss);
 *   magna_tb_close(w);
 *
 * The file is `<dir>/events.out.tfevents.<unix seconds>.<hostname>.<pid>.magna`. */
typedef struct magna_tb_writer magna_tb_writer;
magna_tb_writer *magna_tb_open(const char *dir, magna_error *err); /* NULL with err set on failure */
/* MAGNA_ERR_IO on a failed write (reason in magna_tb_errmsg), MAGNA_ERR_ARG for a NULL or over-long tag. */
magna_status magna_tb_scalar(magna_tb_writer *w, const char *tag, int64_t step, float value);
const char *magna_tb_errmsg(const magna_tb_writer *w);
const char *magna_tb_path(const magna_tb_writer *w);
void magna_tb_flush(magna_tb_writer *w);
void magna_tb_close(magna_tb_writer *w);

/* A training log directory: the TensorBoard event file, `log.csv` (one line per epoch: epoch, step, then one
 * column per scalar, named from its tag: "train/x" -> "x", "val/x" -> "val_x", other '/' -> '_') and
 * `curves.svg` (the "train/loss" and "val/loss" curves over epochs, rewritten atomically every epoch).
 * magna_model_fit writes one when magna_fit_opts.log_dir is set. log.csv is started afresh by open. */
typedef struct magna_log_scalar {
    const char *tag; /* TensorBoard tag: "lr", "train/loss", "val/loss", "val/accuracy", ... */
    double value;
} magna_log_scalar;
typedef struct magna_train_log magna_train_log;
magna_train_log *magna_train_log_open(const char *dir, magna_error *err);
/* Every epoch must pass the same tags in the same order (they are the CSV's columns); TensorBoard's step is
 * the epoch. Errors: MAGNA_ERR_IO naming the file, MAGNA_ERR_ARG, MAGNA_ERR_NOMEM. */
magna_status magna_train_log_epoch(magna_train_log *l, int epoch, int64_t step, int n, const magna_log_scalar *s,
                                   magna_error *err);
/* For a resumed run: log.csv keeps its header and its rows of epochs before first_epoch (rewritten atomically;
 * the run's columns must be the same), curves.svg starts from their losses, and a new event file continues
 * the TensorBoard run. Without a log.csv it is open. fit does this when it continues a magna_model_resume. */
magna_train_log *magna_train_log_reopen(const char *dir, int first_epoch, magna_error *err);
void magna_train_log_close(magna_train_log *l);

#ifdef __cplusplus
}
#endif
#endif
