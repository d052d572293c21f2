/* test_text.c — text data for language models: the corpus loader on a made-up folder (what it reads, what
 * it skips, each error), the split, every tokenizer's round trip on random bytes (NUL and invalid UTF-8
 * included), BPE against a known example and against a plain recount-every-merge trainer, the text form
 * (round trip, and one malformed text per error, each message asserted whole), the windows, and the bigram
 * model on hand-computed numbers. */
#include "magna.h"
#include "data/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

#define S(lit) (const uint8_t *)lit, (int64_t)(sizeof(lit) - 1) /* a literal with its length: NUL bytes count */

static char dir[64];

static void write_file(const char *name, const char *data, size_t len) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
}

static uint8_t *random_bytes(uint64_t seed, int64_t n) {
    uint8_t *p = malloc((size_t)n + 1);
    for (int64_t i = 0; i < n; i++) p[i] = (uint8_t)magna_rand_u64(seed, 1, (uint64_t)i);
    return p;
}

/* encode then decode gives the bytes back; returns the id count (-1 on failure) */
static int64_t round_trip(const magna_tokenizer *t, const uint8_t *text, int64_t n, const char *what) {
    magna_error e;
    int32_t *ids = NULL;
    uint8_t *back = NULL;
    int64_t count = -1, m = -1;
    magna_status st = magna_tokenizer_encode(t, text, n, &ids, &count, &e);
    CHECK(st == MAGNA_OK, "%s: encode: %s", what, e.message);
    if (st == MAGNA_OK) {
        st = magna_tokenizer_decode(t, ids, count, &back, &m, &e);
        CHECK(st == MAGNA_OK, "%s: decode: %s", what, e.message);
        CHECK(m == n && (n == 0 || memcmp(back, text, (size_t)n) == 0), "%s: %lld bytes came back as %lld", what,
              (long long)n, (long long)m);
        for (int64_t i = 0; i < count; i++)
            if (ids[i] < 0 || ids[i] >= magna_tokenizer_vocab_size(t)) {
                CHECK(false, "%s: id %d out of range", what, ids[i]);
                break;
            }
    }
    free(ids), free(back);
    return st == MAGNA_OK ? count : -1;
}

static void expect_error(magna_status got, const magna_error *e, magna_status status, const char *want) {
    CHECK(got == status && e->status == status && strcmp(e->message, want) == 0, "got %s \"%s\", want %s \"%s\"",
          magna_status_name(got), e->message, magna_status_name(status), want);
}

/* ---- corpus ----------------------------------------------------------------------------------------- */

static void test_corpus(void) {
    magna_error e;
    magna_corpus c;
    char path[256], want[512];
    write_file("b.txt", "world\n", 6);
    write_file("a.txt", "hello\0 ", 7); /* a NUL byte is data like any other */
    write_file("a.txt.dat", "INDEX", 5);
    snprintf(path, sizeof path, "%s/sub", dir);
    mkdir(path, 0755);
    write_file("sub/c.txt", "SUB", 3);
    snprintf(path, sizeof path, "%s/0link", dir);
    CHECK(symlink("a.txt", path) == 0, "symlink");
    magna_status st = magna_corpus_load(dir, &c, &e);
    CHECK(st == MAGNA_OK && c.files == 2 && c.size == 13 && memcmp(c.data, "hello\0 world\n", 13) == 0,
          "folder: %s, %d files, %lld bytes", e.message, c.files, (long long)c.size);
    magna_corpus_free(&c);
    /* one file, and a link to one when named directly */
    st = magna_corpus_load(path, &c, &e);
    CHECK(st == MAGNA_OK && c.files == 1 && c.size == 7, "a named link is followed: %s", e.message);
    magna_corpus_free(&c);

    snprintf(path, sizeof path, "%s/missing", dir);
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    expect_error(magna_corpus_load(path, &c, &e), &e, MAGNA_ERR_IO, want);
    CHECK(c.data == NULL && c.size == 0, "a failed load leaves an empty corpus");
    snprintf(path, sizeof path, "%s/empty", dir);
    write_file("empty", "", 0);
    snprintf(want, sizeof want, "%s: empty corpus (1 file, 0 bytes)", path);
    expect_error(magna_corpus_load(path, &c, &e), &e, MAGNA_ERR_FORMAT, want);
    snprintf(path, sizeof path, "%s/sub2", dir);
    mkdir(path, 0755);
    write_file("sub2/x.dat", "X", 1);
    snprintf(want, sizeof want, "%s: no files to read in the folder (.dat files, links and sub-folders are skipped)", path);
    expect_error(magna_corpus_load(path, &c, &e), &e, MAGNA_ERR_FORMAT, want);
    write_file("sub2/y", "", 0);
    snprintf(want, sizeof want, "%s: empty corpus (1 file, 0 bytes)", path);
    expect_error(magna_corpus_load(path, &c, &e), &e, MAGNA_ERR_FORMAT, want);
    if (geteuid() != 0) { /* root reads anything */
        write_file("sub2/z", "Z", 1);
        snprintf(path, sizeof path, "%s/sub2/z", dir);
        chmod(path, 0);
        snprintf(want, sizeof want, "%s: cannot open: Permission denied", path);
        snprintf(path, sizeof path, "%s/sub2", dir);
        expect_error(magna_corpus_load(path, &c, &e), &e, MAGNA_ERR_IO, want);
    }
    expect_error(magna_corpus_load("", &c, &e), &e, MAGNA_ERR_ARG, "corpus_load: no path given");

    /* the split: 10% of 20 bytes is 2, and the cut never lands inside a UTF-8 character */
    int64_t cut = -1;
    CHECK(magna_text_split(S("abcdefghijklmnopqrst"), 0.1, &cut, &e) == MAGNA_OK && cut == 18, "cut %lld", (long long)cut);
    CHECK(magna_text_split(S("abcdefghijklmnopqrstuvwxyz\xE2\x82\xACz"), 0.1, &cut, &e) == MAGNA_OK && cut == 29,
          "cut %lld moves past the euro sign's continuation bytes", (long long)cut);
    CHECK(magna_text_split(S("abc"), 0.0, &cut, &e) == MAGNA_OK && cut == 3, "val_frac 0: all training");
    expect_error(magna_text_split(S("ab"), 0.1, &cut, &e), &e, MAGNA_ERR_ARG,
                 "text_split: 2 bytes are too few to give both parts some (val_frac 0.1)");
    expect_error(magna_text_split(S("ab"), 1.0, &cut, &e), &e, MAGNA_ERR_ARG, "text_split: val_frac 1 is not in [0, 1)");
}

/* ---- tokenizers ------------------------------------------------------------------------------------- */

static char *to_string(const magna_tokenizer *t) {
    char *s = NULL;
    magna_error e;
    CHECK(magna_tokenizer_to_string(t, &s, &e) == MAGNA_OK, "to_string: %s", e.message);
    return s;
}

/* the text form loads back to a tokenizer that writes the same text and encodes `text` to the same ids */
static void check_reload(const magna_tokenizer *t, const uint8_t *text, int64_t n, const char *what) {
    magna_error e;
    char *s = to_string(t), path[256];
    magna_tokenizer *u = NULL, *v = NULL;
    CHECK(magna_tokenizer_from_string(s, &u, &e) == MAGNA_OK, "%s: from_string: %s", what, e.message);
    snprintf(path, sizeof path, "%s/tok.txt", dir);
    CHECK(magna_tokenizer_save(t, path, &e) == MAGNA_OK, "%s: save: %s", what, e.message);
    CHECK(magna_tokenizer_load(path, &v, &e) == MAGNA_OK, "%s: load: %s", what, e.message);
    if (u && v) {
        char *s2 = to_string(u), *s3 = to_string(v);
        CHECK(strcmp(s, s2) == 0 && strcmp(s, s3) == 0, "%s: the text form changes on reload", what);
        CHECK(magna_tokenizer_get_kind(u) == magna_tokenizer_get_kind(t) &&
              magna_tokenizer_vocab_size(u) == magna_tokenizer_vocab_size(t) &&
              magna_tokenizer_unk_id(u) == magna_tokenizer_unk_id(t), "%s: kind, vocab or unk differ", what);
        int32_t *a = NULL, *b = NULL, *c = NULL;
        int64_t na = -1, nb = -2, nc = -3;
        magna_tokenizer_encode(t, text, n, &a, &na, &e);
        magna_tokenizer_encode(u, text, n, &b, &nb, &e);
        magna_tokenizer_encode(v, text, n, &c, &nc, &e);
        CHECK(na == nb && na == nc && memcmp(a, b, (size_t)na * 4) == 0 && memcmp(a, c, (size_t)na * 4) == 0,
              "%s: a reloaded tokenizer encodes differently", what);
        free(a), free(b), free(c), free(s2), free(s3);
    }
    magna_tokenizer_free(u), magna_tokenizer_free(v);
    free(s);
}

static void test_bytes_and_chars(void) {
    magna_error e;
    magna_tokenizer *t = NULL;
    uint8_t *r = random_bytes(7, 5000);
    CHECK(magna_tokenizer_bytes(&t, &e) == MAGNA_OK && magna_tokenizer_vocab_size(t) == 256, "bytes");
    CHECK(round_trip(t, r, 5000, "bytes, random") == 5000, "one id per byte");
    check_reload(t, r, 5000, "bytes");
    magna_tokenizer_free(t);

    /* characters trained on random bytes: every byte string splits into characters and back */
    CHECK(magna_tokenizer_train_chars(r, 5000, false, &t, &e) == MAGNA_OK, "chars: %s", e.message);
    round_trip(t, r, 5000, "chars, random");
    round_trip(t, r + 1, 3000, "chars, random, shifted by a byte");
    check_reload(t, r, 5000, "chars");
    magna_tokenizer_free(t);

    /* what a character is: é (C3 A9) and € (E2 82 AC) and U+10348 are one each; an overlong NUL (C0 80), a
     * surrogate (ED A0 80), > U+10FFFF (F4 90 80 80) and a truncated € (E2 82) are raw bytes */
    const uint8_t mixed[] = "\xC3\xA9\xE2\x82\xAC\xF0\x90\x8D\x88\xC0\x80\xED\xA0\x80\xF4\x90\x80\x80" "a\0\xE2\x82";
    CHECK(magna_tokenizer_train_chars(mixed, sizeof mixed - 1, false, &t, &e) == MAGNA_OK, "chars: %s", e.message);
    char *s = to_string(t);
    CHECK(s && strcmp(s, "magna-tokenizer 1\nkind chars\nchars 13\nunk 0\nU+0000\nU+0061\nU+00E9\nU+20AC\nU+10348\n"
                         "byte 0x80\nbyte 0x82\nbyte 0x90\nbyte 0xA0\nbyte 0xC0\nbyte 0xE2\nbyte 0xED\nbyte 0xF4\n") == 0,
          "the vocabulary of mixed bytes:\n%s", s);
    free(s);
    CHECK(round_trip(t, mixed, sizeof mixed - 1, "chars, mixed") == 16, "characters counted");
    int32_t *ids;
    int64_t n;
    expect_error(magna_tokenizer_encode(t, S("aab"), &ids, &n, &e), &e, MAGNA_ERR_RANGE,
                 "tokenizer_encode: byte offset 2: character U+0062 'b' is not in the vocabulary of 13 (train with unk "
                 "to map it to <unk>)");
    expect_error(magna_tokenizer_encode(t, S("a\xFF"), &ids, &n, &e), &e, MAGNA_ERR_RANGE,
                 "tokenizer_encode: byte offset 1: character byte 0xFF (not UTF-8) is not in the vocabulary of 13 (train "
                 "with unk to map it to <unk>)");
    uint8_t *back;
    expect_error(magna_tokenizer_decode(t, (const int32_t[]){0, 13}, 2, &back, &n, &e), &e, MAGNA_ERR_RANGE,
                 "tokenizer_decode: id 13 at position 1 is outside [0, 13)");
    magna_tokenizer_free(t);

    /* <unk>, by request: the last id, unseen characters become it, and it decodes as U+FFFD */
    CHECK(magna_tokenizer_train_chars(S("abc"), true, &t, &e) == MAGNA_OK && magna_tokenizer_vocab_size(t) == 4 &&
          magna_tokenizer_unk_id(t) == 3, "chars with unk");
    CHECK(magna_tokenizer_encode(t, S("cxa\xC3\xA9"), &ids, &n, &e) == MAGNA_OK && n == 4 && ids[0] == 2 && ids[1] == 3 &&
          ids[2] == 0 && ids[3] == 3, "unseen characters become <unk>");
    CHECK(magna_tokenizer_decode(t, ids, n, &back, &n, &e) == MAGNA_OK && n == 8 &&
          memcmp(back, "c\xEF\xBF\xBD" "a\xEF\xBF\xBD", 8) == 0, "<unk> decodes as U+FFFD");
    free(ids), free(back);
    check_reload(t, S("abcx"), "chars with unk");
    magna_tokenizer_free(t);
    free(r);
}

/* The plain trainer the incremental one must agree with: recount every pair of every piece per merge. */
static int32_t naive_bpe(const uint8_t *text, int64_t n, int32_t vocab, int32_t *merges) {
    int32_t *sym = malloc((size_t)n * sizeof *sym), *plen = malloc((size_t)n * sizeof *plen), np = 0, nm = 0;
    int64_t *pstart = malloc((size_t)n * sizeof *pstart);
    for (int64_t i = 0; i < n;) {
        const int64_t l = bpe_piece(text, n, i);
        pstart[np] = i, plen[np++] = (int32_t)l;
        i += l;
    }
    for (int64_t i = 0; i < n; i++) sym[i] = text[i];
    int64_t *cnt = malloc((size_t)vocab * vocab * sizeof *cnt); /* ids < vocab: a dense table of counts */
    while (256 + nm < vocab) {
        memset(cnt, 0, (size_t)vocab * vocab * sizeof *cnt);
        for (int32_t p = 0; p < np; p++)
            for (int32_t k = 0; k + 1 < plen[p]; k++) cnt[(int64_t)sym[pstart[p] + k] * vocab + sym[pstart[p] + k + 1]]++;
        int64_t best = 0, arg = -1;
        for (int64_t q = 0; q < (int64_t)vocab * vocab; q++)
            if (cnt[q] > best) best = cnt[q], arg = q; /* increasing q: ties go to the smaller (a, b) */
        if (best < 2) break;
        const int32_t a = (int32_t)(arg / vocab), b = (int32_t)(arg % vocab), z = 256 + nm;
        merges[2 * nm] = a, merges[2 * nm + 1] = b, nm++;
        for (int32_t p = 0; p < np; p++) {
            int32_t *s = sym + pstart[p], m = 0;
            for (int32_t k = 0; k < plen[p]; k++) {
                if (k + 1 < plen[p] && s[k] == a && s[k + 1] == b)
                    s[m++] = z, k++;
                else
                    s[m++] = s[k];
            }
            plen[p] = m;
        }
    }
    free(sym), free(plen), free(pstart), free(cnt);
    return nm;
}

static void test_bpe(void) {
    magna_error e;
    magna_tokenizer *t = NULL;
    /* pieces: " word" keeps its space, runs of one class, whitespace leaves its last character to a word */
    const uint8_t txt[] = "Hello, world!  It's 42\n\nok";
    const char *want[] = {"Hello", ",", " world", "!", " ", " It", "'", "s", " 42", "\n", "\n", "ok"};
    int k = 0;
    for (int64_t i = 0, n = sizeof txt - 1; i < n; k++) {
        const int64_t l = bpe_piece(txt, n, i);
        CHECK(k < 12 && l == (int64_t)strlen(want[k]) && memcmp(txt + i, want[k], (size_t)l) == 0, "piece %d: '%.*s'", k,
              (int)l, (const char *)txt + i);
        i += l;
    }
    CHECK(k == 12, "%d pieces", k);
    uint8_t run[300];
    memset(run, 'x', sizeof run);
    CHECK(bpe_piece(run, 300, 0) == 128 && bpe_piece(run, 300, 256) == 44, "a long run is cut every 128 bytes");

    /* the classic example: aa (4), then ab (2, tied with "aa a" and won by the smaller first id), then aa+ab */
    CHECK(magna_tokenizer_train_bpe(S("aaabdaaabac"), 1000, &t, &e) == MAGNA_OK, "bpe: %s", e.message);
    char *s = to_string(t);
    CHECK(s && strcmp(s, "magna-tokenizer 1\nkind bpe\nmerges 3\n97 97\n97 98\n256 257\n") == 0, "merges:\n%s", s);
    free(s);
    CHECK(magna_tokenizer_vocab_size(t) == 259, "stops when no pair occurs twice: %d", magna_tokenizer_vocab_size(t));
    int32_t *ids;
    int64_t n;
    CHECK(magna_tokenizer_encode(t, S("aaabdaaabac"), &ids, &n, &e) == MAGNA_OK && n == 5 && ids[0] == 258 &&
          ids[1] == 'd' && ids[2] == 258 && ids[3] == 'a' && ids[4] == 'c', "encoding");
    free(ids);
    int32_t len;
    const uint8_t *tok = magna_tokenizer_token(t, 258, &len);
    CHECK(tok && len == 4 && memcmp(tok, "aaab", 4) == 0, "id 258 is 'aaab'");
    /* vocab_size caps the merges; pieces keep merges from crossing a space */
    magna_tokenizer_free(t);
    CHECK(magna_tokenizer_train_bpe(S("aaabdaaabac"), 257, &t, &e) == MAGNA_OK && magna_tokenizer_vocab_size(t) == 257,
          "vocab_size 257: one merge");
    magna_tokenizer_free(t);
    CHECK(magna_tokenizer_train_bpe(S("ab ab ab"), 300, &t, &e) == MAGNA_OK, "bpe: %s", e.message);
    s = to_string(t);
    CHECK(s && strcmp(s, "magna-tokenizer 1\nkind bpe\nmerges 2\n97 98\n32 256\n") == 0,
          "ab (3), then ' ' + ab (2), and nothing across the spaces:\n%s", s);
    free(s);
    magna_tokenizer_free(t);

    /* against the plain trainer, on word-like text from a small alphabet (many ties) */
    const int64_t N = 6000;
    uint8_t *text = malloc(N);
    for (int64_t i = 0; i < N; i++) {
        const uint64_t r = magna_rand_u64(3, 2, (uint64_t)i) % 16;
        text[i] = r < 3 ? ' ' : r == 3 ? '\n' : r == 4 ? '.' : r == 5 ? (uint8_t)('0' + i % 3) : (uint8_t)("abcdeeeeoo"[r - 6]);
    }
    int32_t merges[2 * 200];
    const int32_t nm = naive_bpe(text, N, 456, merges);
    CHECK(magna_tokenizer_train_bpe(text, N, 456, &t, &e) == MAGNA_OK, "bpe: %s", e.message);
    CHECK(t && t->n_merges == nm && nm > 100 && memcmp(t->merges, merges, (size_t)nm * 2 * sizeof *merges) == 0,
          "the incremental trainer disagrees with recounting: %d merges, %d by recount", t ? t->n_merges : -1, nm);
    /* any bytes round-trip, trained on them or not; training text encodes to fewer ids */
    uint8_t *r = random_bytes(11, 4000);
    round_trip(t, r, 4000, "bpe, random bytes");
    const int64_t ids_n = round_trip(t, text, N, "bpe, its training text");
    CHECK(ids_n > 0 && ids_n < N * 6 / 10, "merges shorten the training text: %lld ids for %lld bytes", (long long)ids_n,
          (long long)N);
    check_reload(t, text, N, "bpe");
    check_reload(t, r, 4000, "bpe, random bytes");
    magna_tokenizer_free(t);
    /* trained on random bytes (NUL, invalid UTF-8) */
    CHECK(magna_tokenizer_train_bpe(r, 4000, 400, &t, &e) == MAGNA_OK, "bpe on random bytes: %s", e.message);
    round_trip(t, r, 4000, "bpe trained on random bytes");
    round_trip(t, text, N, "bpe trained on random bytes, other text");
    magna_tokenizer_free(t);
    expect_error(magna_tokenizer_train_bpe(r, 10, 100, &t, &e), &e, MAGNA_ERR_ARG,
                 "tokenizer_train_bpe: vocab_size 100 is not in [256, 16777472] (256 byte ids come first)");
    free(r), free(text);
}

/* from_string must fail with this status and "tokenizer<suffix>" */
static void malformed(const char *text, magna_status status, const char *suffix) {
    magna_error e;
    magna_tokenizer *t = (magna_tokenizer *)1;
    char want[600];
    snprintf(want, sizeof want, "tokenizer%s", suffix);
    expect_error(magna_tokenizer_from_string(text, &t, &e), &e, status, want);
    CHECK(t == NULL, "a failed load hands out no tokenizer");
}

static void test_malformed(void) {
    const magna_status F = MAGNA_ERR_FORMAT;
    malformed("", F, ": empty (not a magna tokenizer)");
    malformed("magna-tokenizer 2\nkind bpe\n", F, ":1: not a magna tokenizer: expected 'magna-tokenizer 1', got 'magna-tokenizer 2'");
    malformed("{\"model\": \"bpe\"}", F, ":1: not a magna tokenizer: expected 'magna-tokenizer 1', got '{\"model\": \"bpe\"}'");
    malformed("magna-tokenizer 1\n", F, ":2: truncated: the text ends before 'kind'");
    malformed("magna-tokenizer 1\nkind words\n", F, ":2: expected 'kind bytes|chars|bpe', got 'kind words'");
    malformed("magna-tokenizer 1\nkind bpe\n", F, ":3: truncated: the text ends before 'merges N'");
    malformed("magna-tokenizer 1\nkind bpe\nmerge 1\n97 97\n", F, ":3: expected 'merges N', got 'merge 1'");
    malformed("magna-tokenizer 1\nkind bpe\nmerges -1\n", F, ":3: 'merges' needs a whole number in [0, 16777216], got '-1'");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 3\n97 97\n97 98\n", F, ": truncated: 3 merges declared, 2 lines follow");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 2000000\n97 97\n", F, ": truncated: 2000000 merges declared, 1 lines follow");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 2\n97 97\n300 98\n", MAGNA_ERR_RANGE,
              ":5: merge 1: id 300 is out of range (ids before this merge are 0..256)");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 1\n97 256\n", MAGNA_ERR_RANGE,
              ":4: merge 0: id 256 is out of range (ids before this merge are 0..255)");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 1\n-1 97\n", MAGNA_ERR_RANGE,
              ":4: merge 0: id -1 is out of range (ids before this merge are 0..255)");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 4\n97 97\n97 98\n98 98\n97 97\n", F, ":7: merge 3 (97 97) repeats merge 0");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 2\n97 97\n97\n", F, ":5: merge 1: expected two ids, got '97'");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 1\n97 97 98\n", F, ":4: merge 0: expected two ids, got '97 97 98'");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 1\n97  97\n", F, ":4: merge 0: expected two ids, got '97  97'");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 1\n+97 97\n", F, ":4: merge 0: expected two ids, got '+97 97'");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 1\n97 99999999999\n", F,
              ":4: merge 0: expected two ids, got '97 99999999999'");
    malformed("magna-tokenizer 1\nkind bpe\nmerges  1\n97 97\n", F, ":3: 'merges' needs a whole number in [0, 16777216], got ' 1'");
    malformed("magna-tokenizer 1\nkind bpe\nmerges 1\n97 97\n98 98\n", F, ":5: text after the end: '98 98'");
    malformed("magna-tokenizer 1\nkind bytes\nmerges 0\n", F, ":3: text after the end: 'merges 0'");
    malformed("magna-tokenizer 1\nkind chars\nchars 2\nunk 2\n", F, ":4: 'unk' needs a whole number in [0, 1], got '2'");
    malformed("magna-tokenizer 1\nkind chars\nchars 2\nunk 0\nU+0062\nU+0061\n", F,
              ":6: 'U+0061' comes before the character before it (they must increase)");
    malformed("magna-tokenizer 1\nkind chars\nchars 2\nunk 0\nU+0061\nU+0061\n", F,
              ":6: 'U+0061' repeats the character before it (they must increase)");
    malformed("magna-tokenizer 1\nkind chars\nchars 1\nunk 0\nU+D800\n", F, ":5: 'U+D800' is not a Unicode scalar value");
    malformed("magna-tokenizer 1\nkind chars\nchars 1\nunk 0\nU+110000\n", F, ":5: 'U+110000' is not a Unicode scalar value");
    malformed("magna-tokenizer 1\nkind chars\nchars 1\nunk 0\nbyte 0x41\n", F, ":5: 'byte 0x41': a raw byte is 0x80..0xFF");
    malformed("magna-tokenizer 1\nkind chars\nchars 1\nunk 0\nU+ 41\n", F, ":5: 'U+ 41' is not a Unicode scalar value");
    malformed("magna-tokenizer 1\nkind chars\nchars 1\nunk 0\nU+-41\n", F, ":5: 'U+-41' is not a Unicode scalar value");
    malformed("magna-tokenizer 1\nkind chars\nchars 1\nunk 0\nA\n", F, ":5: expected 'U+XXXX' or 'byte 0xXX', got 'A'");
    malformed("magna-tokenizer 1\nkind chars\nchars 0\nunk 0\n", F, ":4: an empty vocabulary");

    /* files: the path in the message */
    magna_error e;
    magna_tokenizer *t = NULL;
    char path[256], want[600];
    snprintf(path, sizeof path, "%s/no-such-tokenizer", dir);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    expect_error(magna_tokenizer_load(path, &t, &e), &e, MAGNA_ERR_IO, want);
    write_file("nul.tok", "magna-tokenizer 1\nkind bytes\n\0", 30);
    snprintf(path, sizeof path, "%s/nul.tok", dir);
    snprintf(want, sizeof want, "%s: byte 30 is NUL: not a tokenizer", path);
    expect_error(magna_tokenizer_load(path, &t, &e), &e, MAGNA_ERR_FORMAT, want);
    write_file("short.tok", "magna-tokenizer 1\nkind bpe\nmerges 2\n97 97\n", 41);
    snprintf(path, sizeof path, "%s/short.tok", dir);
    snprintf(want, sizeof want, "%s: truncated: 2 merges declared, 1 lines follow", path);
    expect_error(magna_tokenizer_load(path, &t, &e), &e, MAGNA_ERR_FORMAT, want);
    snprintf(path, sizeof path, "%s/no-such-dir/tok", dir);
    CHECK(magna_tokenizer_bytes(&t, &e) == MAGNA_OK, "bytes");
    CHECK(magna_tokenizer_save(t, path, &e) == MAGNA_ERR_IO && strstr(e.message, "cannot create"), "save: %s", e.message);
    magna_tokenizer_free(t);
    /* CRLF line ends, as a text editor may leave them, still load */
    CHECK(magna_tokenizer_from_string("magna-tokenizer 1\r\nkind bpe\r\nmerges 1\r\n97 97\r\n", &t, &e) == MAGNA_OK &&
          magna_tokenizer_vocab_size(t) == 257, "CRLF: %s", e.message);
    magna_tokenizer_free(t);
}

/* Random edits of valid texts: each loads or fails with a message, never crashes (ASan runs this too), and a
 * text that loads gives a working tokenizer. */
static void test_mutations(void) {
    magna_error e;
    magna_tokenizer *a = NULL, *b = NULL;
    const uint8_t *text = (const uint8_t *)"the theme of the thesis: then the other, \xC3\xA9t\xC3\xA9 \xFF 1234 1234 ...\n";
    const int64_t n = (int64_t)strlen((const char *)text);
    magna_tokenizer_train_bpe(text, n, 300, &a, &e);
    magna_tokenizer_train_chars(text, n, true, &b, &e);
    char *src[2] = {to_string(a), to_string(b)};
    uint8_t *r = random_bytes(21, 300);
    int loaded = 0, failed = 0;
    bool ok = true;
    for (int it = 0; it < 3000; it++) {
        const char *orig = src[it % 2];
        const size_t len = strlen(orig);
        char *m = malloc(len + 1);
        memcpy(m, orig, len + 1);
        const int edits = 1 + (int)(magna_rand_u64(4, 1, (uint64_t)it) % 3);
        size_t ml = len;
        for (int k = 0; k < edits && ml > 0; k++) {
            const uint64_t x = magna_rand_u64(4, 2, (uint64_t)(it * 4 + k));
            const size_t at = (size_t)(x % ml);
            const int op = (int)(x >> 32) % 4;
            if (op == 0) m[at] = "0123456789 \n-+xU"[(x >> 40) % 17];       /* replace */
            else if (op == 1) memmove(m + at, m + at + 1, ml - at), ml--; /* delete (the NUL moves too) */
            else if (op == 2) m[at] = 0, ml = at;                       /* truncate */
            else m[at] = (char)('0' + (x >> 40) % 10);                   /* another digit */
        }
        magna_tokenizer *t = NULL;
        const magna_status st = magna_tokenizer_from_string(m, &t, &e);
        if (st == MAGNA_OK) {
            loaded++;
            int32_t *ids = NULL;
            uint8_t *back = NULL;
            int64_t c = 0, bn = -1;
            const bool chars = magna_tokenizer_get_kind(t) == MAGNA_TOKENIZER_CHARS && magna_tokenizer_unk_id(t) < 0;
            if (!chars) { /* bytes, BPE: any bytes round-trip */
                ok = ok && magna_tokenizer_encode(t, r, 300, &ids, &c, &e) == MAGNA_OK &&
                     magna_tokenizer_decode(t, ids, c, &back, &bn, &e) == MAGNA_OK &&
                     (magna_tokenizer_unk_id(t) >= 0 || (bn == 300 && memcmp(back, r, 300) == 0));
            }
            free(ids), free(back);
            magna_tokenizer_free(t);
        } else {
            failed++;
            ok = ok && t == NULL && e.status == st && e.message[0] && (st == MAGNA_ERR_FORMAT || st == MAGNA_ERR_RANGE);
        }
        free(m);
    }
    CHECK(ok, "every edited text loads into a working tokenizer or fails with a message");
    CHECK(loaded > 100 && failed > 1000, "%d loaded, %d failed", loaded, failed);
    free(src[0]), free(src[1]), free(r);
    magna_tokenizer_free(a), magna_tokenizer_free(b);
}

/* ---- windows ---------------------------------------------------------------------------------------- */

static void test_windows(void) {
    magna_error e;
    enum { N = 50, T = 8, B = 400 };
    int32_t tok[N], x[B * T], y[B * T], x2[B * T], y2[B * T];
    for (int i = 0; i < N; i++) tok[i] = 1000 + i; /* a token says where it is */
    CHECK(magna_lm_windows_random(tok, N, T, B, 5, 0, x, y, &e) == MAGNA_OK, "random: %s", e.message);
    bool seen[N] = {0}, ok = true;
    for (int j = 0; j < B; j++) {
        const int o = x[j * T] - 1000;
        ok = ok && o >= 0 && o <= N - T - 1;
        if (o >= 0 && o < N) seen[o] = true;
        for (int t = 0; t < T; t++) ok = ok && x[j * T + t] == 1000 + o + t && y[j * T + t] == x[j * T + t] + 1;
    }
    CHECK(ok, "every window is a run of the tokens, in range, with y the next token");
    int hit = 0;
    for (int o = 0; o < N; o++) hit += seen[o];
    CHECK(hit == N - T && seen[0] && seen[N - T - 1], "all %d offsets drawn, both ends included (%d)", N - T, hit);
    CHECK(magna_lm_windows_random(tok, N, T, B, 5, 0, x2, y2, &e) == MAGNA_OK && memcmp(x, x2, sizeof x) == 0 &&
          memcmp(y, y2, sizeof y) == 0, "same seed, same windows");
    /* `first` continues the sequence: windows 100.. of one call are windows 0.. of a call that starts there */
    CHECK(magna_lm_windows_random(tok, N, T, B - 100, 5, 100, x2, y2, &e) == MAGNA_OK &&
          memcmp(x + 100 * T, x2, (B - 100) * T * 4) == 0, "first = windows drawn before");
    CHECK(magna_lm_windows_random(tok, N, T, B, 6, 0, x2, y2, &e) == MAGNA_OK && memcmp(x, x2, sizeof x) != 0,
          "another seed, other windows");
    expect_error(magna_lm_windows_random(tok, 8, 8, 1, 5, 0, x, y, &e), &e, MAGNA_ERR_ARG,
                 "lm_windows_random: 8 tokens are too few for windows of 8 (need more than T)");
    CHECK(magna_lm_windows_random(tok, 9, 8, 3, 5, 0, x, y, &e) == MAGNA_OK && x[0] == 1000 && y[7] == 1008, "n = T + 1");

    /* sequential: 10 tokens, T 4: windows at 0, 4, 8; the last predicts one token and pads */
    CHECK(magna_lm_window_count(10, 4) == 3 && magna_lm_window_count(9, 4) == 2 && magna_lm_window_count(1, 4) == 0,
          "window counts");
    CHECK(magna_lm_windows_sequential(tok, 10, 4, x, y, &e) == MAGNA_OK, "sequential: %s", e.message);
    const int32_t wx[12] = {1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 0, 0, 0};
    const int32_t wy[12] = {1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, MAGNA_IGNORE_LABEL, MAGNA_IGNORE_LABEL,
                            MAGNA_IGNORE_LABEL};
    CHECK(memcmp(x, wx, sizeof wx) == 0 && memcmp(y, wy, sizeof wy) == 0, "sequential windows");
    expect_error(magna_lm_windows_sequential(tok, 1, 4, x, y, &e), &e, MAGNA_ERR_ARG,
                 "lm_windows_sequential: 1 tokens: nothing to predict");
}

/* ---- bigram ----------------------------------------------------------------------------------------- */

static void test_bigram(void) {
    magna_error e;
    magna_bigram m;
    /* 0 1 0 1 0 2: counts (0,1) 2, (1,0) 2, (0,2) 1; k = 1, V = 3:
     * P(1|0) = 3/6, P(2|0) = 2/6, P(0|0) = 1/6; P(0|1) = 3/5, others 1/5; after 2 (never followed): 1/3 */
    const int32_t tr[] = {0, 1, 0, 1, 0, 2};
    CHECK(magna_bigram_fit(&m, tr, 6, 3, 1.0, &e) == MAGNA_OK, "fit: %s", e.message);
    const double want[3][3] = {{1 / 6.0, 3 / 6.0, 2 / 6.0}, {3 / 5.0, 1 / 5.0, 1 / 5.0}, {1 / 3.0, 1 / 3.0, 1 / 3.0}};
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            CHECK(fabs(magna_bigram_prob(&m, a, b) - want[a][b]) < 1e-12, "P(%d|%d) = %g, want %g", b, a,
                  magna_bigram_prob(&m, a, b), want[a][b]);
    double loss = 0;
    CHECK(magna_bigram_loss(&m, (const int32_t[]){0, 1, 0, 2, 2}, 5, &loss, &e) == MAGNA_OK &&
          fabs(loss - -(log(0.5) + log(0.6) + log(1 / 3.0) + log(1 / 3.0)) / 4) < 1e-12, "loss %g", loss);
    CHECK(magna_bigram_loss(&m, tr, 6, &loss, &e) == MAGNA_OK && loss < log(3.0), "train loss %g < log 3", loss);
    expect_error(magna_bigram_loss(&m, (const int32_t[]){0, 3}, 2, &loss, &e), &e, MAGNA_ERR_RANGE,
                 "bigram_loss: token 1 is 3, outside [0, 3)");
    /* sampling: seeded, and its transitions follow the probabilities */
    enum { S = 30000 };
    int32_t *s1 = malloc(S * sizeof *s1), *s2 = malloc(S * sizeof *s2);
    CHECK(magna_bigram_sample(&m, 0, S, 9, s1, &e) == MAGNA_OK && magna_bigram_sample(&m, 0, S, 9, s2, &e) == MAGNA_OK &&
          memcmp(s1, s2, S * sizeof *s1) == 0 && s1[0] == 0, "same seed, same sample");
    int64_t from[3] = {0}, pair[3][3] = {{0}};
    for (int i = 1; i < S; i++) from[s1[i - 1]]++, pair[s1[i - 1]][s1[i]]++;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 3; b++)
            CHECK(fabs((double)pair[a][b] / (double)from[a] - want[a][b]) < 0.025, "sampled P(%d|%d) = %g, want %g", b, a,
                  (double)pair[a][b] / (double)from[a], want[a][b]);
    free(s1), free(s2);
    magna_bigram_free(&m);
    expect_error(magna_bigram_fit(&m, tr, 6, 2, 1.0, &e), &e, MAGNA_ERR_RANGE, "bigram_fit: token 5 is 2, outside [0, 2)");

    /* on text with structure: chars of a repetitive text, validation below the uniform log V */
    const char *text = "the cat sat on the mat. the rat ate the hat. that is that. ";
    magna_tokenizer *t;
    int32_t *ids;
    int64_t n;
    char big[4000] = "";
    for (int i = 0; i < 60; i++) strcat(big, text);
    CHECK(magna_tokenizer_train_chars((const uint8_t *)big, (int64_t)strlen(big), false, &t, &e) == MAGNA_OK &&
          magna_tokenizer_encode(t, (const uint8_t *)big, (int64_t)strlen(big), &ids, &n, &e) == MAGNA_OK, "chars");
    const int32_t V = magna_tokenizer_vocab_size(t);
    int64_t cut = n * 9 / 10;
    CHECK(magna_bigram_fit(&m, ids, cut, V, 0.1, &e) == MAGNA_OK && magna_bigram_loss(&m, ids + cut, n - cut, &loss, &e) == MAGNA_OK,
          "fit: %s", e.message);
    CHECK(loss < 0.6 * log((double)V), "validation loss %g well below log V = %g", loss, log((double)V));
    magna_bigram_free(&m);
    free(ids);
    magna_tokenizer_free(t);
}

/* The windows as magna_dataset takes them: an embedding + dense model sees one token per prediction, so it
 * can learn no more than a bigram; trained on random windows it must come close to the count bigram's
 * validation loss (and beat the uniform). */
static void test_model_on_windows(void) {
    magna_error e;
    char text[6000] = "";
    const char *lines[] = {"a cat sat. ", "the dog ate. ", "a bat ran to the cat. ", "dogs dig. "};
    for (int i = 0; strlen(text) < 5500; i++) strcat(text, lines[magna_rand_u64(8, 1, (uint64_t)i) % 4]);
    const int64_t n = (int64_t)strlen(text);
    magna_tokenizer *t = NULL;
    int32_t *ids = NULL;
    int64_t count = 0, cut = 0;
    CHECK(magna_text_split((const uint8_t *)text, n, 0.2, &cut, &e) == MAGNA_OK &&
          magna_tokenizer_train_chars((const uint8_t *)text, n, false, &t, &e) == MAGNA_OK &&
          magna_tokenizer_encode(t, (const uint8_t *)text, n, &ids, &count, &e) == MAGNA_OK, "%s", e.message);
    const int32_t V = magna_tokenizer_vocab_size(t);
    enum { T = 16, B = 32, W = 640 };
    int32_t *x = malloc(W * T * 4), *y = malloc(W * T * 4);
    const int64_t nv = count - cut, wv = magna_lm_window_count(nv, T);
    int32_t *vx = malloc((size_t)wv * T * 4), *vy = malloc((size_t)wv * T * 4);
    CHECK(magna_lm_windows_random(ids, cut, T, W, 1, 0, x, y, &e) == MAGNA_OK &&
          magna_lm_windows_sequential(ids + cut, nv, T, vx, vy, &e) == MAGNA_OK, "%s", e.message);
    magna_bigram bg;
    double bigram = 0;
    CHECK(magna_bigram_fit(&bg, ids, cut, V, 0.01, &e) == MAGNA_OK && magna_bigram_loss(&bg, ids + cut, nv, &bigram, &e) == MAGNA_OK,
          "%s", e.message);
    magna_bigram_free(&bg);

    magna_model *m = magna_model_new(3, B);
    magna_model_input(m, "x", MAGNA_I32, 1, (int64_t[]){T});
    magna_model_sequential(m, (magna_layer_spec[]){MAGNA_EMBEDDING(V, 16), MAGNA_DENSE(V, MAGNA_ACT_NONE)}, 2);
    magna_status st = magna_model_compile(m, &(magna_compile_opts){.loss = MAGNA_LOSS_SPARSE_CE,
                                                                     .optimizer = {.kind = MAGNA_ADAM, .lr = 3e-2f}});
    CHECK(st == MAGNA_OK, "compile: %s", magna_model_errmsg(m));
    const magna_dataset train = {.rows = W, .x_i32 = x, .labels = y}, val = {.rows = wv, .x_i32 = vx, .labels = vy};
    magna_scores sc = {0};
    if (st == MAGNA_OK) {
        CHECK(magna_model_fit(m, &train, NULL, &(magna_fit_opts){.epochs = 15}, NULL) == MAGNA_OK, "fit: %s",
              magna_model_errmsg(m));
        CHECK(magna_model_evaluate(m, &val, &sc) == MAGNA_OK, "evaluate: %s", magna_model_errmsg(m));
    }
    CHECK(sc.loss < bigram + 0.06 && sc.loss > bigram - 0.06, "the neural bigram's validation loss %.4f is within 0.06 of "
          "the count bigram's %.4f (uniform %.4f)", sc.loss, bigram, log((double)V));
    magna_model_free(m);
    free(x), free(y), free(vx), free(vy), free(ids);
    magna_tokenizer_free(t);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/magna_test_text_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_corpus();
    test_bytes_and_chars();
    test_bpe();
    test_malformed();
    test_mutations();
    test_windows();
    test_bigram();
    test_model_on_windows();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("could not remove %s\n", dir);
    return check_finish("test_text");
}
