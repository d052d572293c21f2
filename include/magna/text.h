/* magna/text.h — text for language models: a corpus read from a file or a folder, a train/validation
 * split by position, tokenizers (bytes, characters, byte-level BPE) behind one interface, the context
 * windows a model trains and evaluates on, and a bigram baseline every model must beat.
 *
 *   magna_corpus c;
 *   magna_error err;
 *   if (magna_corpus_load("/usr/share/games/fortunes", &c, &err) != MAGNA_OK) puts(err.message);
 *   int64_t cut;
 *   magna_text_split(c.data, c.size, 0.1, &cut, &err);               // train: [0, cut), val: [cut, size)
 *   magna_tokenizer *tok;
 *   magna_tokenizer_train_bpe(c.data, cut, 2048, &tok, &err);         // or _chars, or magna_tokenizer_bytes
 *   int32_t *ids;
 *   int64_t n;
 *   magna_tokenizer_encode(tok, c.data, cut, &ids, &n, &err);
 *   int32_t *x = malloc(64 * 128 * 4), *y = malloc(64 * 128 * 4);
 *   magna_lm_windows_random(ids, n, 128, 64, seed, step * 64, x, y, &err);   // one batch of 64 windows
 *   magna_dataset d = {.rows = 64, .x_i32 = x, .labels = y};        // magna/train.h, as it is
 *
 * Arrays handed out by this module are plain malloc'd memory: free() them. Every failure is a magna_error
 * whose message says what and where (file name, line, byte offset); nothing here aborts on bad input. */
#ifndef MAGNA_TEXT_H
#define MAGNA_TEXT_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- corpus --------------------------------------------------------------------------------------- */

/* The bytes of a text corpus, as read (no decoding, no newline conversion). */
typedef struct magna_corpus {
    uint8_t *data; /* size bytes, plus a NUL after them that is not part of the corpus */
    int64_t size;
    int files;     /* how many files were concatenated */
} magna_corpus;

/* Reads `path`: a file (a link to one is followed), or a folder, whose plain regular files are read in
 * byte order of their names (strcmp) and concatenated without separators. In a folder, names ending
 * ".dat" (fortune's index files), symbolic links (fortune's .u8 links), sub-folders and anything else
 * that is not a regular file are skipped. Rejected, naming the path: a path that does not exist or
 * cannot be read, a folder without a file to read, and an empty corpus (zero bytes in all). */
magna_status magna_corpus_load(const char *path, magna_corpus *out, magna_error *err);
void magna_corpus_free(magna_corpus *c);

/* Splits n bytes by position: training text [0, *cut), validation text [*cut, n), with about val_frac of
 * the bytes (rounded) at the end. The cut moves forward past UTF-8 continuation bytes (at most 3) so no
 * character is cut in two. val_frac in [0, 1); with val_frac > 0 both parts must be non-empty. */
magna_status magna_text_split(const uint8_t *data, int64_t n, double val_frac, int64_t *cut, magna_error *err);

/* ---- tokenizers ----------------------------------------------------------------------------------- */

typedef enum magna_tokenizer_kind {
    MAGNA_TOKENIZER_BYTES = 0, /* 256 ids, id = byte value: every byte string round-trips */
    MAGNA_TOKENIZER_CHARS,     /* one id per character seen in the training text (see below) */
    MAGNA_TOKENIZER_BPE,       /* byte-level BPE: 256 byte ids, then one id per merge */
} magna_tokenizer_kind;

typedef struct magna_tokenizer magna_tokenizer;

/* The byte tokenizer. */
magna_status magna_tokenizer_bytes(magna_tokenizer **out, magna_error *err);

/* Characters are Unicode code points, read from UTF-8. A byte that does not start a valid, shortest-form
 * UTF-8 sequence (a stray continuation byte, a truncated sequence, an overlong form, a surrogate, > U+10FFFF)
 * is a character of its own, "byte 0xNN", so any byte string splits into characters and back without loss.
 * The vocabulary is the characters of the training text, ids in increasing order (code points first, then
 * the raw bytes). Encoding a character the vocabulary lacks is an error naming its byte offset — unless
 * the tokenizer was trained with `unk`: then one more id, the last, is <unk>, unseen characters become
 * it (the caller can count them: ids equal to magna_tokenizer_unk_id) and decoding writes U+FFFD for it.
 * That is the one lossy path, and only by request. */
magna_status magna_tokenizer_train_chars(const uint8_t *text, int64_t n, bool unk, magna_tokenizer **out,
                                         magna_error *err);

/* Byte-level BPE, as GPT-2: the text is first cut into pieces at word boundaries (below), then within
 * pieces the most frequent adjacent pair of ids is merged into a new id, 256, 257, ..., until vocab_size
 * ids exist or no pair occurs twice (the vocabulary is then smaller: see magna_tokenizer_vocab_size).
 * Ties are broken by the smaller first id, then the smaller second id, so ids are deterministic.
 * Pieces (ASCII classes; every byte >= 0x80 counts as a letter, so UTF-8 words stay whole): an optional
 * single space followed by a run of letters, or of digits, or of other non-space characters; or a run of
 * whitespace, less its last character when a non-space follows it (that space then starts the next
 * piece: " world" rather than "world"); a piece longer than 128 bytes is cut every 128 bytes. Pair
 * counts are updated incrementally with a priority queue, so training costs about the pieces each merge
 * touches, not a recount of the corpus: the 2.6 MB fortunes corpus trains to 4096 ids in 0.1-0.2 s
 * here. */
magna_status magna_tokenizer_train_bpe(const uint8_t *text, int64_t n, int32_t vocab_size, magna_tokenizer **out,
                                       magna_error *err);

void magna_tokenizer_free(magna_tokenizer *t);
magna_tokenizer_kind magna_tokenizer_get_kind(const magna_tokenizer *t);
const char *magna_tokenizer_kind_name(magna_tokenizer_kind kind); /* "bytes", "chars", "bpe" */
int32_t magna_tokenizer_vocab_size(const magna_tokenizer *t);
int32_t magna_tokenizer_unk_id(const magna_tokenizer *t); /* -1 when there is none */

/* Encodes n bytes into *count ids (*ids malloc'd, at least one element even for no text). */
magna_status magna_tokenizer_encode(const magna_tokenizer *t, const uint8_t *text, int64_t n, int32_t **ids,
                                    int64_t *count, magna_error *err);
/* Decodes ids into *n bytes (*text malloc'd, NUL after the n bytes). An id outside [0, vocab) is an error
 * naming its position. */
magna_status magna_tokenizer_decode(const magna_tokenizer *t, const int32_t *ids, int64_t count, uint8_t **text,
                                    int64_t *n, magna_error *err);
/* The bytes of one id (for printing a vocabulary); NULL for an id out of range. */
const uint8_t *magna_tokenizer_token(const magna_tokenizer *t, int32_t id, int32_t *len);

/* A tokenizer as printable ASCII text, one item a line, so it can travel in a checkpoint's metadata
 * (magna_save_safetensors' metadata_kv) or a file of its own:
 *   magna-tokenizer 1
 *   kind bpe                  | kind chars          | kind bytes
 *   merges 2                  | chars 3             |
 *   97 97                     | unk 1               |
 *   256 98                    | U+000A              |
 *                             | U+0041              |
 *                             | byte 0xC3           |
 * BPE: merge i (from 0) makes id 256 + i from the two ids on its line. Chars: ids in line order.
 * Loading checks everything before trusting it: the header, the kind, counts against the lines there are,
 * each id against the ids that exist at that merge, repeated merges or characters, characters out of
 * order, text after the end; each is its own error naming the line. */
magna_status magna_tokenizer_to_string(const magna_tokenizer *t, char **out, magna_error *err);
magna_status magna_tokenizer_from_string(const char *s, magna_tokenizer **out, magna_error *err);
/* The same text in a file, written atomically (temp file, fsync, rename). */
magna_status magna_tokenizer_save(const magna_tokenizer *t, const char *path, magna_error *err);
magna_status magna_tokenizer_load(const char *path, magna_tokenizer **out, magna_error *err);

/* ---- windows for language models ------------------------------------------------------------------ */

/* `count` windows of T tokens at random offsets, uniform over [0, n - T - 1]: x[j] = tokens[o .. o+T),
 * y[j] = tokens[o+1 .. o+T+1) (the next token of each position). x and y are count x T int32, row-major:
 * magna_dataset{.rows = count, .x_i32 = x, .labels = y} for a model with input [T] and output [T, V].
 * Window j's offset is drawn with magna_rand_u64(seed, MAGNA_TEXT_STREAM, first + j): pass first = the
 * number of windows drawn before (step * count) and a resumed run draws the same batches. Needs n > T. */
#define MAGNA_TEXT_STREAM 0x7465787400000000ull /* "text" */
magna_status magna_lm_windows_random(const int32_t *tokens, int64_t n, int64_t T, int64_t count, uint64_t seed,
                                     uint64_t first, int32_t *x, int32_t *y, magna_error *err);
/* Non-overlapping windows for evaluation: window j starts at j*T and every token but the first is
 * predicted exactly once. The last window may be short: its x is padded with id 0 and its y with
 * MAGNA_IGNORE_LABEL (-1), which the cross-entropy leaves out. magna_lm_window_count says how many
 * windows (ceil((n - 1) / T); 0 when n < 2). */
int64_t magna_lm_window_count(int64_t n, int64_t T);
magna_status magna_lm_windows_sequential(const int32_t *tokens, int64_t n, int64_t T, int32_t *x, int32_t *y,
                                         magna_error *err);

/* ---- bigram baseline ------------------------------------------------------------------------------ */

/* P(next | prev) = (count(prev, next) + k) / (count(prev) + k V), counts from the training tokens
 * (count(prev) counts prev followed by anything). Stored sparsely (one entry per pair seen), so a
 * BPE vocabulary of thousands costs memory by the text, not V^2. */
typedef struct magna_bigram {
    int32_t vocab;
    double k;
    int64_t *row_start; /* vocab + 1: row prev's pairs are entries [row_start[prev], row_start[prev + 1]) */
    int32_t *next;      /* per entry, increasing within a row */
    int64_t *counts;    /* per entry */
    int64_t *row_total; /* vocab */
} magna_bigram;

/* Fits on n tokens (each in [0, vocab)); k > 0. */
magna_status magna_bigram_fit(magna_bigram *m, const int32_t *tokens, int64_t n, int32_t vocab, double k,
                              magna_error *err);
void magna_bigram_free(magna_bigram *m);
double magna_bigram_prob(const magna_bigram *m, int32_t prev, int32_t next);
/* Mean negative log-likelihood in nats of tokens[1..n) given the token before each (n >= 2). */
magna_status magna_bigram_loss(const magna_bigram *m, const int32_t *tokens, int64_t n, double *nats,
                               magna_error *err);
/* out[0] = first, then n - 1 tokens drawn from the model; draw i uses magna_rand_u64(seed, MAGNA_TEXT_STREAM + 1, i). */
magna_status magna_bigram_sample(const magna_bigram *m, int32_t first, int64_t n, uint64_t seed, int32_t *out,
                                 magna_error *err);

#ifdef __cplusplus
}
#endif
#endif
