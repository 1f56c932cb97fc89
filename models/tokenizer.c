/* tokenizer.c: BERT uncased WordPiece (PROTOCOLS.md §9), streaming and bounded.
 *
 * Design. The reference pipeline is normalize(whole text) -> split -> WordPiece -> truncate.
 * Every step except NFD's canonical reordering is a function of one code point, and the
 * reference's per-code-point behaviour is captured in tokenizer_unicode.h (generated from
 * the reference itself). So we run the pipeline as one left-to-right pass:
 *
 *   bytes -> code point -> class (DROP / SPACE / SPLIT / KEEP) -> normal form -> word buffer
 *
 * A word ends at SPACE or SPLIT; it is then WordPiece-encoded and its ids appended. We stop
 * as soon as the id budget is full, so a 10 MB text costs what its first words cost.
 * Canonical reordering only moves combining marks of nonzero class; the nonspacing ones
 * are removed anyway, which leaves spacing combining marks with nonzero class (a handful of
 * musical symbols) as the only case where order could differ from the reference.
 *
 * Vocabulary: two open-addressing hash tables, one for word-initial pieces and one for
 * "##" continuations (stored without the prefix), so a lookup hashes the bytes in place. */
#define _POSIX_C_SOURCE 200809L
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "../common/cv_log.h"
#include "minilm.h"
#include "tokenizer_unicode.h"

#define MAX_WORD_CHARS 100 /* tokenizer.json: max_input_chars_per_word */
#define MAX_WORD_BYTES (4 * (MAX_WORD_CHARS + 1) + 64)

typedef struct {
    uint32_t hash;
    int32_t id; /* -1 = empty slot */
    uint32_t off;
    uint32_t len;
} slot;

typedef struct {
    slot *slots; /* (cap) */
    uint32_t mask;
    uint32_t max_len; /* longest key in bytes: bounds the longest-match search */
} table;

/* BERT's special tokens: matched verbatim in the raw text before normalization, as the
 * reference's added_tokens (normalized=false, no strip) are, and each a word of its own. */
static const char *const SPECIALS[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
#define NSPECIALS 5

struct cv_tok {
    int32_t special_id[NSPECIALS];
    char *blob; /* vocab.txt contents; keys point into it */
    int nvocab;
    table init, cont;
    int32_t cls_id, sep_id, unk_id;
    int cased;                  /* cv_tok_set_cased */
    uint8_t bmp_class[0x10000]; /* cv_tok_class per BMP code point */
};

static uint32_t hash_bytes(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h ? h : 1;
}

static int32_t table_get(const table *t, const char *blob, const char *s, size_t n) {
    if (n > t->max_len) return -1;
    uint32_t h = hash_bytes(s, n);
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const slot *e = &t->slots[i];
        if (e->id < 0) return -1;
        if (e->hash == h && e->len == n && memcmp(blob + e->off, s, n) == 0) return e->id;
    }
}

static void table_put(table *t, const char *blob, uint32_t off, uint32_t n, int32_t id) {
    uint32_t h = hash_bytes(blob + off, n);
    for (uint32_t i = h & t->mask;; i = (i + 1) & t->mask) {
        slot *e = &t->slots[i];
        if (e->id < 0) {
            *e = (slot){h, id, off, n};
            if (n > t->max_len) t->max_len = n;
            return;
        }
        if (e->hash == h && e->len == n && memcmp(blob + e->off, blob + off, n) == 0)
            return; /* duplicate line: the first id wins, as in the reference vocab */
    }
}

static cv_err table_init(table *t, int n) {
    uint32_t cap = 64;
    while (cap < (uint32_t)n * 2u)
        cap <<= 1;
    t->slots = malloc(sizeof(slot) * cap);
    if (!t->slots) return CV_ERR_NOMEM;
    for (uint32_t i = 0; i < cap; i++)
        t->slots[i].id = -1;
    t->mask = cap - 1;
    t->max_len = 0;
    return CV_OK;
}

static int in_ranges(const cv_cp_range *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid].lo)
            hi = mid;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

#define NRANGES(a) (sizeof(a) / sizeof((a)[0]))

static cv_tok_class classify_slow(uint32_t cp) {
    if (in_ranges(cv_uc_drop, NRANGES(cv_uc_drop), cp)) return CV_TOK_DROP;
    if (in_ranges(cv_uc_space, NRANGES(cv_uc_space), cp)) return CV_TOK_SPACE;
    if (in_ranges(cv_uc_split, NRANGES(cv_uc_split), cp)) return CV_TOK_SPLIT;
    return CV_TOK_KEEP;
}

cv_tok_class cv_tok_classify(const cv_tok *t, int32_t cp) {
    if (cp < 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return CV_TOK_DROP;
    if (cp < 0x10000) return (cv_tok_class)t->bmp_class[cp];
    return classify_slow((uint32_t)cp);
}

cv_err cv_tok_load(const char *vocab_path, cv_tok **out) {
    *out = NULL;
    FILE *f = fopen(vocab_path, "rb");
    if (!f) {
        cv_error("event=vocab_open path=%s error=\"cannot open\" fix=\"%s\"", vocab_path,
                 cv_minilm_fetch_fix());
        return CV_ERR_NOTFOUND;
    }
    cv_tok *t = calloc(1, sizeof *t);
    if (!t) {
        fclose(f);
        return CV_ERR_NOMEM;
    }
    cv_err err = CV_OK;
    if (fseek(f, 0, SEEK_END) != 0) err = CV_ERR_IO;
    long size = err ? -1 : ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0 || size > (64L << 20)) err = CV_ERR_IO;
    if (!err && !(t->blob = malloc((size_t)size + 1))) err = CV_ERR_NOMEM;
    if (!err && fread(t->blob, 1, (size_t)size, f) != (size_t)size) err = CV_ERR_IO;
    fclose(f);
    if (err) {
        cv_error("event=vocab_read path=%s error=\"%s\"", vocab_path, cv_strerror(err));
        cv_tok_free(t);
        return err;
    }
    t->blob[size] = '\n';
    int lines = 0;
    for (long i = 0; i < size; i++)
        lines += t->blob[i] == '\n';
    if (size > 0 && t->blob[size - 1] != '\n') lines++;
    if ((err = table_init(&t->init, lines)) || (err = table_init(&t->cont, lines))) {
        cv_tok_free(t);
        return err;
    }
    t->cls_id = t->sep_id = t->unk_id = -1;
    long start = 0;
    int id = 0;
    for (long i = 0; i <= size && start < size; i++) {
        if (t->blob[i] != '\n') continue;
        long end = i;
        if (end > start && t->blob[end - 1] == '\r') end--; /* tolerate CRLF */
        uint32_t n = (uint32_t)(end - start);
        if (n > 2 && memcmp(t->blob + start, "##", 2) == 0)
            table_put(&t->cont, t->blob, (uint32_t)start + 2, n - 2, id);
        else if (n > 0)
            table_put(&t->init, t->blob, (uint32_t)start, n, id);
        id++;
        start = i + 1;
    }
    t->nvocab = id;
    t->cls_id = table_get(&t->init, t->blob, "[CLS]", 5);
    t->sep_id = table_get(&t->init, t->blob, "[SEP]", 5);
    t->unk_id = table_get(&t->init, t->blob, "[UNK]", 5);
    for (int k = 0; k < NSPECIALS; k++)
        t->special_id[k] = table_get(&t->init, t->blob, SPECIALS[k], strlen(SPECIALS[k]));
    if (t->cls_id < 0 || t->sep_id < 0 || t->unk_id < 0) {
        cv_error("event=vocab_invalid path=%s error=\"[CLS], [SEP] or [UNK] missing\" tokens=%d", vocab_path,
                 id);
        cv_tok_free(t);
        return CV_ERR_FORMAT;
    }
    for (uint32_t cp = 0; cp < 0x10000; cp++)
        t->bmp_class[cp] = (cp >= 0xD800 && cp <= 0xDFFF) ? CV_TOK_DROP : classify_slow(cp);
    *out = t;
    return CV_OK;
}

void cv_tok_free(cv_tok *t) {
    if (!t) return;
    free(t->init.slots);
    free(t->cont.slots);
    free(t->blob);
    free(t);
}

int cv_tok_vocab_size(const cv_tok *t) { return t->nvocab; }
void cv_tok_set_cased(cv_tok *t, int cased) { t->cased = cased; }

int cv_tok_normalize_cp(const cv_tok *t, int32_t cp, int32_t out[16]) {
    if (cv_tok_classify(t, cp) == CV_TOK_DROP &&
        !(t->cased && utf8proc_category(cp) == UTF8PROC_CATEGORY_MN)) /* cased: marks stay */
        return 0;
    if (t->cased) {
        out[0] = cp;
        return 1;
    }
    if (cp < 0x80) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    /* characters newer than utf8proc's tables, and full-case mappings */
    size_t lo = 0, hi = NRANGES(cv_uc_override);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if ((uint32_t)cp < cv_uc_override[mid].cp) {
            hi = mid;
        } else if ((uint32_t)cp > cv_uc_override[mid].cp) {
            lo = mid + 1;
        } else {
            for (int i = 0; i < cv_uc_override[mid].n; i++)
                out[i] = (int32_t)cv_uc_override[mid].x[i];
            return cv_uc_override[mid].n;
        }
    }
    utf8proc_int32_t dec[16];
    int boundclass = UTF8PROC_BOUNDCLASS_START;
    utf8proc_ssize_t n = utf8proc_decompose_char(cp, dec, 16, UTF8PROC_DECOMPOSE, &boundclass);
    if (n < 0 || n > 16) {
        out[0] = cp;
        return 1;
    }
    int k = 0;
    for (utf8proc_ssize_t i = 0; i < n; i++) {
        if (cv_tok_classify(t, dec[i]) == CV_TOK_DROP) continue; /* strip accents */
        out[k++] = utf8proc_tolower(dec[i]);
    }
    return k;
}

/* Decodes one code point at s[*i..len); invalid or truncated sequences read as U+FFFD and
 * consume only the bytes that cannot start a new sequence. */
static int32_t next_cp(const uint8_t *s, size_t len, size_t *i) {
    size_t p = *i;
    uint8_t b0 = s[p];
    if (b0 < 0x80) {
        *i = p + 1;
        return b0;
    }
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    int32_t cp;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
        cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        cp = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        cp = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        *i = p + 1;
        return 0xFFFD;
    }
    p++;
    for (int k = 0; k < need; k++, p++) {
        if (p >= len || s[p] < lo || s[p] > hi) {
            *i = p;
            return 0xFFFD;
        }
        cp = (cp << 6) | (s[p] & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    *i = p;
    return cp;
}

typedef struct {
    char bytes[MAX_WORD_BYTES];
    uint16_t off[MAX_WORD_CHARS + 2]; /* byte offset of each char; off[nchars] = end */
    int nbytes;
    int nchars; /* may exceed MAX_WORD_CHARS: then only counted */
} word_buf;

static inline void word_push(word_buf *w, int32_t cp) {
    if (w->nchars > MAX_WORD_CHARS) {
        w->nchars = MAX_WORD_CHARS + 1; /* already too long: [UNK] whatever follows */
        return;
    }
    w->off[w->nchars] = (uint16_t)w->nbytes;
    if (cp < 0x80) {
        w->bytes[w->nbytes++] = (char)cp;
    } else {
        w->nbytes += (int)utf8proc_encode_char(cp, (utf8proc_uint8_t *)w->bytes + w->nbytes);
    }
    w->nchars++;
    w->off[w->nchars] = (uint16_t)w->nbytes;
}

/* Appends the word's WordPiece ids to ids[*n..limit). Returns 1 when the budget is full. */
static int word_flush(const cv_tok *t, word_buf *w, int32_t *ids, int *n, int limit) {
    if (w->nchars == 0) return *n >= limit;
    int32_t pieces[MAX_WORD_CHARS];
    int np = 0;
    if (w->nchars > MAX_WORD_CHARS) {
        pieces[np++] = t->unk_id;
    } else {
        int start = 0;
        while (start < w->nchars) {
            const table *tab = start == 0 ? &t->init : &t->cont;
            int end = w->nchars;
            /* skip ends whose piece is longer than any key */
            while (end > start && (uint32_t)(w->off[end] - w->off[start]) > tab->max_len)
                end--;
            int32_t id = -1;
            for (; end > start; end--) {
                id = table_get(tab, t->blob, w->bytes + w->off[start], (size_t)(w->off[end] - w->off[start]));
                if (id >= 0) break;
            }
            if (id < 0) {
                np = 0;
                pieces[np++] = t->unk_id;
                break;
            }
            pieces[np++] = id;
            start = end;
        }
    }
    for (int i = 0; i < np && *n < limit; i++)
        ids[(*n)++] = pieces[i];
    w->nchars = 0;
    w->nbytes = 0;
    return *n >= limit;
}

/* ASCII classes: 0 keep, 1 drop, 2 space, 3 split (matches the generated tables). */
static inline int ascii_class(int c) {
    if (c == '\t' || c == '\n' || c == '\r' || c == ' ') return CV_TOK_SPACE;
    if (c < 0x20 || c == 0x7F) return CV_TOK_DROP;
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126))
        return CV_TOK_SPLIT;
    return CV_TOK_KEEP;
}

/* Index of the special token that starts at s, or -1. */
static int special_at(const cv_tok *t, const uint8_t *s, size_t len) {
    for (int k = 0; k < NSPECIALS; k++) {
        size_t n = strlen(SPECIALS[k]);
        if (t->special_id[k] >= 0 && len >= n && memcmp(s, SPECIALS[k], n) == 0) return k;
    }
    return -1;
}

/* Encodes one segment into ids from *n on, the word in w carried over from the segment before
 * (a prompt and its text read as one string). Returns 1 once the budget (limit) is full. */
static int encode_seg(const cv_tok *t, const char *text, size_t len, int32_t *ids, int *np, int limit,
                      word_buf *wp) {
    const uint8_t *s = (const uint8_t *)text;
    int n = *np;
    word_buf w = *wp;
    int full = n >= limit;
    size_t i = 0;
    while (i < len && !full) {
        int32_t cp;
        int cls;
        if (s[i] == '[') {
            int k = special_at(t, s + i, len - i);
            if (k >= 0) {
                if ((full = word_flush(t, &w, ids, &n, limit))) break;
                ids[n++] = t->special_id[k];
                full = n >= limit;
                i += strlen(SPECIALS[k]);
                continue;
            }
        }
        if (s[i] < 0x80) {
            cp = s[i++];
            cls = ascii_class(cp);
            if (cls == CV_TOK_KEEP) {
                word_push(&w, (cp >= 'A' && cp <= 'Z' && !t->cased) ? cp + 32 : cp);
                continue;
            }
        } else {
            cp = next_cp(s, len, &i);
            cls = cv_tok_classify(t, cp);
            if (cls == CV_TOK_DROP && t->cased && utf8proc_category(cp) == UTF8PROC_CATEGORY_MN)
                cls = CV_TOK_KEEP; /* only uncased BERT strips accents */
        }
        switch (cls) {
        case CV_TOK_DROP: break;
        case CV_TOK_SPACE: full = word_flush(t, &w, ids, &n, limit); break;
        case CV_TOK_SPLIT:
        case CV_TOK_KEEP: {
            int32_t norm[16];
            int k = cv_tok_normalize_cp(t, cp, norm);
            if (cls == CV_TOK_SPLIT && (full = word_flush(t, &w, ids, &n, limit))) break;
            for (int j = 0; j < k; j++)
                word_push(&w, norm[j]);
            if (cls == CV_TOK_SPLIT) full = word_flush(t, &w, ids, &n, limit);
            break;
        }
        }
    }
    *np = n;
    *wp = w;
    return full;
}

int cv_tok_encode_prefixed(const cv_tok *t, const char *prefix, size_t plen, const char *text, size_t len,
                           int32_t *ids, int max_tokens) {
    CV_ASSERT(max_tokens >= 2);
    int n = 0, limit = max_tokens - 1;
    ids[n++] = t->cls_id;
    word_buf w;
    w.nchars = w.nbytes = 0;
    int full = n >= limit;
    if (!full && plen) full = encode_seg(t, prefix, plen, ids, &n, limit, &w);
    if (!full) full = encode_seg(t, text, len, ids, &n, limit, &w);
    if (!full) word_flush(t, &w, ids, &n, limit);
    ids[n++] = t->sep_id;
    return n;
}

int cv_tok_encode(const cv_tok *t, const char *text, size_t len, int32_t *ids, int max_tokens) {
    return cv_tok_encode_prefixed(t, NULL, 0, text, len, ids, max_tokens);
}
