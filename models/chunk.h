/* chunk.h: long texts cut into chunks on the model's own tokens.
 *
 * A chunk is a byte range of the source text whose word pieces (counted by the model's
 * tokenizer, exactly: the count is what cv_tok_encode gives that range alone, [CLS] and [SEP]
 * excluded) are at most max_tokens, never more than the model reads. Cuts prefer paragraph,
 * then sentence, then word boundaries; a word longer than a chunk is cut on word-piece
 * boundaries. Boundaries are anchored on the text's own paragraphs, so an edit changes only
 * the chunks of its paragraph group (docs/ARCHITECTURE.md, "Chunks"). A text that fits in one
 * chunk is one chunk: the whole text, unchanged. */
#ifndef CV_CHUNK_H
#define CV_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "../common/cv_err.h"
#include "tokenizer.h"

typedef struct cv_chunk_opts {
    int max_tokens; /* word pieces per chunk ([CLS] and [SEP] excluded), capped at max_seq - 2 */
    int overlap;    /* word pieces of the previous chunk repeated at the start of the next, 0..max/2 */
    int max_seq;    /* the model's sequence length, [CLS] and [SEP] included; 0: no cap */
} cv_chunk_opts;

typedef struct cv_chunk {
    size_t off, len;           /* bytes: text[off .. off + len) */
    size_t char_off, char_len; /* the same in code points (UTF-8 lead bytes; a stray byte counts as one) */
    int tokens;                /* word pieces the model reads of it ([CLS] and [SEP] excluded), exact */
    uint8_t hash[32]; /* SHA-256 of its bytes (zero in the engine-only build, which has no OpenSSL) */
} cv_chunk;

/* Smallest max_tokens accepted. */
#define CV_CHUNK_MIN_TOKENS 16

/* Checks o (max_tokens >= CV_CHUNK_MIN_TOKENS, 0 <= overlap <= max_tokens / 2); on CV_ERR_ARG
 * why gets what is wrong and the fix. */
cv_err cv_chunk_check(const cv_chunk_opts *o, char *why, size_t why_len);

/* The word pieces per chunk o allows: max_tokens capped at max_seq - 2. */
int cv_chunk_limit(const cv_chunk_opts *o);

/* Cuts text[0..len) (any bytes) into *n chunks, in order, into *out (malloc'd, caller frees;
 * NULL when len is 0 and *n is 0). Thread-safe with one t shared. Errors: CV_ERR_ARG (o
 * invalid), CV_ERR_NOMEM. */
cv_err cv_chunk_text(const cv_tok *t, const cv_chunk_opts *o, const char *text, size_t len, cv_chunk **out,
                     int *n);

/* Which vectors of the chunks a store holds for a row the new chunks k[0..n) can keep.
 * stored[0..m): the stored chunks' hashes, by chunk number. from[i] (caller-owned, n ints) gets
 * the number of a stored chunk with k[i]'s hash (its vector is kept; renumbered to i when the
 * numbers differ), or -1: embed k[i]. A stored chunk serves one new chunk at most, its own
 * number first. The stored chunks no new one took are deleted by the caller (numbers n and up
 * among them). Compare by hash, never by number: an edit that adds a chunk shifts the numbers
 * of every chunk after it. Returns how many to embed. */
int cv_chunk_match(const cv_chunk *k, int n, const uint8_t (*stored)[32], int m, int *from);

/* Word pieces of text[0..len) alone ([CLS] and [SEP] excluded), counted up to cap: cap + 1
 * means more than cap. ids: scratch of cap + 3 ids, caller-owned. */
int cv_chunk_count(const cv_tok *t, const char *text, size_t len, int cap, int32_t *ids);

#endif
