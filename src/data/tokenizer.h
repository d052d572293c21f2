/* tokenizer.h — the struct behind magna_tokenizer, shared by tokenizer.c (the interface, bytes, chars,
 * the text format) and bpe.c (training and encoding merges). Library-internal. */
#ifndef MAGNA_DATA_TOKENIZER_H
#define MAGNA_DATA_TOKENIZER_H

#include "magna/text.h"

struct magna_tokenizer {
    magna_tokenizer_kind kind;
    int32_t vocab;
    int32_t unk; /* chars: the id of <unk>, or -1 */
    /* the bytes of every id: id i is blob[off[i] .. off[i + 1]) */
    uint8_t *blob;
    int64_t *off;
    /* chars: the characters (code points, or 0x110000 + b for a raw byte b), increasing; ascii[c] is the
     * id of ASCII character c or -1, the common case without a search */
    uint32_t *units;
    int32_t n_units;
    int32_t ascii[128];
    /* bpe: merge i joins ids merges[2i], merges[2i + 1] into id 256 + i; an open-addressing table from a
     * pair (a << 32 | b) to its merge index, for encoding */
    int32_t n_merges;
    int32_t *merges;
    uint64_t *rank_keys; /* UINT64_MAX: empty slot */
    int32_t *rank_vals;
    size_t rank_cap;     /* a power of two */
};

/* bpe.c: fills t->vocab, blob/off and the rank table from t->merges (ids already checked in range). A
 * merge that repeats an earlier one is MAGNA_ERR_FORMAT with *dup its index and *first the earlier one's
 * (the caller words the message); other failures set err. */
magna_status bpe_finish(magna_tokenizer *t, int32_t *dup, int32_t *first, magna_error *err);
/* bpe.c: encodes with t's merges into *ids (capacity n + 1, as many ids as bytes at most). */
int64_t bpe_encode(const magna_tokenizer *t, const uint8_t *text, int64_t n, int32_t *ids);
#define BPE_MAX_PIECE 128
/* bpe.c: the length of the pre-split piece starting at text[i] (>= 1 when i < n). */
int64_t bpe_piece(const uint8_t *text, int64_t n, int64_t i);

#endif
