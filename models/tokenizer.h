/* tokenizer.h: BERT uncased WordPiece, exactly as all-MiniLM-L6-v2's tokenizer.json does it.
 *
 * Normalization (clean text, CJK spacing, NFD, strip nonspacing marks, lowercase),
 * pre-tokenization (whitespace and punctuation) and greedy longest-match WordPiece.
 * Character classes come from models/tokenizer_unicode.h, derived from the reference
 * tokenizer; NFD and lowercasing come from utf8proc. The special tokens [PAD] [UNK] [CLS]
 * [SEP] [MASK] written literally in a text are recognized, as the reference does. Any byte
 * string is accepted:
 * invalid UTF-8 reads as U+FFFD, which clean-text drops. */
#ifndef CV_TOKENIZER_H
#define CV_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "../common/cv_err.h"

typedef struct cv_tok cv_tok;

/* Loads vocab.txt (one token per line, id = line number). On success *out is owned by the
 * caller and released with cv_tok_free. */
cv_err cv_tok_load(const char *vocab_path, cv_tok **out);
void cv_tok_free(cv_tok *t);

/* Cased vocabularies (a BERT normalizer with lowercase and strip_accents false): text keeps its
 * case and accents (no NFD, combining marks kept); cleaning, CJK and punctuation splitting as
 * uncased. The default (after cv_tok_load) is uncased. Call before any encode. */
void cv_tok_set_cased(cv_tok *t, int cased);

/* Number of tokens in the vocabulary. */
int cv_tok_vocab_size(const cv_tok *t);

/* Encodes text[0..len) as [CLS] w1 .. wk [SEP] into ids (caller-owned, room for
 * max_tokens >= 2). Truncates to max_tokens ids in all; scanning stops once the budget
 * is full, so the cost is bounded by max_tokens, not by len (except for one pathological
 * word, which is scanned to its end). Returns the number of ids written. Thread-safe. */
int cv_tok_encode(const cv_tok *t, const char *text, size_t len, int32_t *ids, int max_tokens);
/* The same for prefix + text read as one string (a model's prompt, valid UTF-8 ending between
 * code points), without copying the text. */
int cv_tok_encode_prefixed(const cv_tok *t, const char *prefix, size_t plen, const char *text, size_t len,
                           int32_t *ids, int max_tokens);

/* The reference normal form of one code point (NFD, nonspacing marks removed, lowercase)
 * into out (room for 16). Returns the count; 0 when the code point is dropped. Exposed for
 * the exhaustive Unicode test. */
int cv_tok_normalize_cp(const cv_tok *t, int32_t cp, int32_t out[16]);

/* Character class of a code point as the reference tokenizer sees it. */
typedef enum { CV_TOK_KEEP = 0, CV_TOK_DROP, CV_TOK_SPACE, CV_TOK_SPLIT } cv_tok_class;
cv_tok_class cv_tok_classify(const cv_tok *t, int32_t cp);

#endif
