/* chunk.c: long texts cut into chunks on the model's own tokens (chunk.h).
 *
 * The method (docs/ARCHITECTURE.md, "Chunks"):
 * 1. Words are the runs of bytes between ASCII whitespace (space, tab, CR, LF): the tokenizer
 *    flushes its word there, so the word pieces of a range that starts and ends at such a gap
 *    are exactly the sum of its words' (each counted alone once), and every range is checked
 *    with one more count before it is emitted. The gap after a word is a paragraph break (two
 *    or more LF), a line or sentence end (one LF; the word ends in . ! ? and closing quotes or
 *    brackets), or a plain word gap.
 * 2. A text that fits in one chunk is one chunk: the whole text, unchanged.
 * 3. Otherwise paragraphs are grouped: a group ends after each paragraph of at least a quarter
 *    of a chunk (a heading or list items join the paragraph that follows them). Groups are
 *    packed separately, so an edit changes the chunks of its group only (and of the next group
 *    when it makes its paragraph cross the quarter-chunk line).
 * 4. In a group, chunks are packed greedily from the group's start: words are added while they
 *    fit (max_tokens less the overlap taken); when the next does not, the chunk ends at the last
 *    paragraph break in its second half, else at its last sentence end, else at its last word.
 *    Each chunk after the group's first starts with the last words of the one before, up to
 *    `overlap` word pieces (never across groups). A word longer than a chunk is cut alone into
 *    pieces on word-piece boundaries (the longest prefix that fits whose word pieces are the
 *    whole word's first ones; found by bisection, then a short walk back). */
#define _POSIX_C_SOURCE 200809L
#include "chunk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CV_MODEL_NO_REVISION
#include <openssl/evp.h>
#endif

enum { GAP_WORD = 1, GAP_SENT = 2, GAP_PARA = 3 };

typedef struct {
    size_t s, e; /* bytes of the word: text[s .. e) */
    int tok;     /* its word pieces alone, up to lim + 1 (over a chunk) */
    int gap;     /* GAP_* after it */
} word;

typedef struct {
    const cv_tok *t;
    const char *text;
    size_t len;
    int lim, overlap;
    int32_t *ids, *ids2; /* (lim + 3) scratch */
    word *w;
    int nw;
    cv_chunk *out;
    int n, cap;
} ctx;

int cv_chunk_limit(const cv_chunk_opts *o) {
    int lim = o->max_tokens;
    if (o->max_seq > 0 && lim > o->max_seq - 2) lim = o->max_seq - 2;
    return lim;
}

cv_err cv_chunk_check(const cv_chunk_opts *o, char *why, size_t why_len) {
    int lim = cv_chunk_limit(o);
    if (o->max_tokens < CV_CHUNK_MIN_TOKENS || lim < CV_CHUNK_MIN_TOKENS) {
        snprintf(
            why, why_len,
            "chunk max_tokens %d (read as %d, the model reading %d with [CLS] and [SEP]) is under %d: give "
            "%d or more",
            o->max_tokens, lim, o->max_seq, CV_CHUNK_MIN_TOKENS, CV_CHUNK_MIN_TOKENS);
        return CV_ERR_ARG;
    }
    if (o->overlap < 0 || o->overlap > lim / 2) {
        snprintf(why, why_len,
                 "chunk overlap %d is outside 0..%d (half of max_tokens %d): give a smaller overlap",
                 o->overlap, lim / 2, lim);
        return CV_ERR_ARG;
    }
    return CV_OK;
}

int cv_chunk_count(const cv_tok *t, const char *text, size_t len, int cap, int32_t *ids) {
    return cv_tok_encode(t, text, len, ids, cap + 3) - 2;
}

static int count(ctx *c, size_t s, size_t e) {
    return cv_chunk_count(c->t, c->text + s, e - s, c->lim, c->ids);
}

static int is_space(unsigned char b) { return b == ' ' || b == '\t' || b == '\n' || b == '\r'; }

/* 1 when the word text[s..e) ends a sentence: . ! ? (or their full-width forms, or an
 * ellipsis) before any closing quotes and brackets. */
static int ends_sentence(const char *text, size_t s, size_t e) {
    const unsigned char *p = (const unsigned char *)text;
    for (;;) { /* closing quotes and brackets: " ' ) ] } ” ’ » */
        if (e > s && strchr("\"')]}", p[e - 1]) && p[e - 1]) {
            e--;
        } else if (e >= s + 3 && p[e - 3] == 0xE2 && p[e - 2] == 0x80 &&
                   (p[e - 1] == 0x9D || p[e - 1] == 0x99)) {
            e -= 3;
        } else if (e >= s + 2 && p[e - 2] == 0xC2 && p[e - 1] == 0xBB) {
            e -= 2;
        } else {
            break;
        }
    }
    if (e == s) return 0;
    if (p[e - 1] == '.' || p[e - 1] == '!' || p[e - 1] == '?') return 1;
    if (e >= s + 3) { /* 。 ！ ？ … */
        const unsigned char *q = p + e - 3;
        if ((q[0] == 0xE3 && q[1] == 0x80 && q[2] == 0x82) ||
            (q[0] == 0xEF && q[1] == 0xBC && (q[2] == 0x81 || q[2] == 0x9F)) ||
            (q[0] == 0xE2 && q[1] == 0x80 && q[2] == 0xA6))
            return 1;
    }
    return 0;
}

/* The words of the text, each with its count and the gap after it. */
static cv_err split_words(ctx *c) {
    int cap = 0;
    size_t i = 0;
    while (i < c->len) {
        while (i < c->len && is_space((unsigned char)c->text[i]))
            i++;
        if (i == c->len) break;
        size_t s = i;
        while (i < c->len && !is_space((unsigned char)c->text[i]))
            i++;
        if (c->nw == cap) {
            cap = cap ? 2 * cap : 256;
            word *w = realloc(c->w, sizeof *w * (size_t)cap);
            if (!w) return CV_ERR_NOMEM;
            c->w = w;
        }
        int nl = 0;
        size_t g = i;
        while (g < c->len && is_space((unsigned char)c->text[g]))
            nl += c->text[g++] == '\n';
        word *w = &c->w[c->nw++];
        w->s = s, w->e = i;
        w->tok = count(c, s, i);
        w->gap = nl >= 2 ? GAP_PARA : nl == 1 || ends_sentence(c->text, s, i) ? GAP_SENT : GAP_WORD;
    }
    return CV_OK;
}

/* Appends the chunk text[s..e) with its exact count. */
static cv_err emit(ctx *c, size_t s, size_t e, int tokens) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        cv_chunk *o = realloc(c->out, sizeof *o * (size_t)c->cap);
        if (!o) return CV_ERR_NOMEM;
        c->out = o;
    }
    cv_chunk *k = &c->out[c->n++];
    memset(k, 0, sizeof *k);
    k->off = s, k->len = e - s, k->tokens = tokens;
    return CV_OK;
}

static size_t next_char(const char *t, size_t i, size_t end) {
    i++;
    while (i < end && ((unsigned char)t[i] & 0xC0) == 0x80)
        i++;
    return i;
}

/* The word text[s..e), over a chunk, as pieces of at most lim word pieces each. */
static cv_err split_long_word(ctx *c, size_t s, size_t e) {
    size_t p = s;
    while (p < e) {
        int k = count(c, p, e);
        if (k <= c->lim) return emit(c, p, e, k);
        int nfull =
            cv_tok_encode(c->t, c->text + p, e - p, c->ids2, c->lim + 3); /* the word's first pieces */
        size_t lo = next_char(c->text, p, e), hi = e; /* count(p..lo) fits; count(p..hi) does not */
        while (1) {
            size_t mid = lo + (hi - lo) / 2;
            while (mid > lo && ((unsigned char)c->text[mid] & 0xC0) == 0x80)
                mid--;
            if (mid <= lo) mid = next_char(c->text, lo, e);
            if (mid >= hi) break;
            if (count(c, p, mid) <= c->lim)
                lo = mid;
            else
                hi = mid;
        }
        size_t cut = lo; /* walk back to where the prefix reads as the word's own first pieces */
        for (size_t q = lo; q > p && lo - q <= 64; q--) {
            if (((unsigned char)c->text[q] & 0xC0) == 0x80) continue;
            int n = cv_tok_encode(c->t, c->text + p, q - p, c->ids, c->lim + 3);
            if (n - 2 <= c->lim && n - 1 <= nfull - 1 &&
                memcmp(c->ids + 1, c->ids2 + 1, sizeof(int32_t) * (size_t)(n - 2)) == 0) {
                cut = q;
                break;
            }
        }
        cv_err err = emit(c, p, cut, count(c, p, cut));
        if (err) return err;
        p = cut;
    }
    return CV_OK;
}

/* Where the chunk of words from..last (all fitting) should end. */
static int best_end(ctx *c, int from, int last, int ov_tok) {
    int para = -1, sent = -1;
    long cum = ov_tok;
    for (int i = from; i < last; i++) {
        cum += c->w[i].tok;
        if (c->w[i].gap == GAP_PARA && cum >= c->lim / 2) para = i;
        if (c->w[i].gap >= GAP_SENT) sent = i;
    }
    return para >= 0 ? para : sent >= 0 ? sent : last;
}

/* Packs the words a..b (one group) into chunks. */
static cv_err pack_group(ctx *c, int a, int b) {
    int pos = a, prev_from = -1; /* prev_from: first word of the previous chunk (-1: none, or cut mid-word) */
    while (pos <= b) {
        int ov = pos, ov_tok = 0;
        if (prev_from >= 0 && c->overlap > 0)
            for (int w = pos - 1; w > prev_from && ov_tok + c->w[w].tok <= c->overlap; w--)
                ov_tok += c->w[w].tok, ov = w;
        if (c->w[pos].tok > c->lim - ov_tok) ov = pos, ov_tok = 0; /* the word needs the whole chunk */
        if (c->w[pos].tok > c->lim) {
            cv_err err = split_long_word(c, c->w[pos].s, c->w[pos].e);
            if (err) return err;
            pos++, prev_from = -1;
            continue;
        }
        long t = ov_tok;
        int j = pos;
        while (j <= b && t + c->w[j].tok <= c->lim)
            t += c->w[j++].tok;
        int end = j > b ? b : best_end(c, pos, j - 1, ov_tok);
        int k;
        while ((k = count(c, c->w[ov].s, c->w[end].e)) > c->lim && end > pos) /* never: counts add up */
            end--;
        if (k > c->lim) { /* never either; cut it as a long word would be */
            cv_err err = split_long_word(c, c->w[ov].s, c->w[end].e);
            if (err) return err;
            pos = end + 1, prev_from = -1;
            continue;
        }
        cv_err err = emit(c, c->w[ov].s, c->w[end].e, k);
        if (err) return err;
        prev_from = pos, pos = end + 1;
    }
    return CV_OK;
}

/* Char offsets (one sweep: offsets and ends both grow) and hashes. */
static void finish(ctx *c) {
    const unsigned char *p = (const unsigned char *)c->text;
    size_t bo = 0, co = 0, be = 0, ce = 0;
    for (int i = 0; i < c->n; i++) {
        cv_chunk *k = &c->out[i];
        for (; bo < k->off; bo++)
            co += (p[bo] & 0xC0) != 0x80;
        for (; be < k->off + k->len; be++)
            ce += (p[be] & 0xC0) != 0x80;
        k->char_off = co, k->char_len = ce - co;
#ifndef CV_MODEL_NO_REVISION
        unsigned int hl = 32;
        EVP_Digest(c->text + k->off, k->len, k->hash, &hl, EVP_sha256(), NULL);
#endif
    }
}

int cv_chunk_match(const cv_chunk *k, int n, const uint8_t (*stored)[32], int m, int *from) {
    uint8_t *used = calloc((size_t)m + 1, 1);
    CV_ASSERT(used);
    int embed = 0;
    for (int i = 0; i < n; i++) { /* the same number first: nothing to move */
        from[i] = -1;
        if (i < m && memcmp(k[i].hash, stored[i], 32) == 0) from[i] = i, used[i] = 1;
    }
    for (int i = 0; i < n; i++) {
        for (int j = 0; from[i] < 0 && j < m; j++)
            if (!used[j] && memcmp(k[i].hash, stored[j], 32) == 0) from[i] = j, used[j] = 1;
        embed += from[i] < 0;
    }
    free(used);
    return embed;
}

cv_err cv_chunk_text(const cv_tok *t, const cv_chunk_opts *o, const char *text, size_t len, cv_chunk **out,
                     int *n) {
    *out = NULL, *n = 0;
    char why[256];
    if (cv_chunk_check(o, why, sizeof why)) return CV_ERR_ARG;
    if (len == 0) return CV_OK;
    ctx c = {.t = t, .text = text, .len = len, .lim = cv_chunk_limit(o), .overlap = o->overlap};
    c.ids = malloc(sizeof(int32_t) * ((size_t)c.lim + 3));
    c.ids2 = malloc(sizeof(int32_t) * ((size_t)c.lim + 3));
    cv_err err = c.ids && c.ids2 ? CV_OK : CV_ERR_NOMEM;
    int whole = err ? 0 : count(&c, 0, len);
    if (!err && whole <= c.lim) {
        err = emit(&c, 0, len, whole); /* one chunk: the text as it is */
    } else if (!err) {
        err = split_words(&c);
        int a = 0;
        long ptok = 0;
        for (int i = 0; !err && i < c.nw; i++) { /* groups end after paragraphs of a quarter chunk or more */
            ptok += c.w[i].tok;
            int para_end = c.w[i].gap == GAP_PARA || i == c.nw - 1;
            if (para_end && (ptok >= c.lim / 4 || i == c.nw - 1)) {
                err = pack_group(&c, a, i);
                a = i + 1;
            }
            if (para_end) ptok = 0;
        }
    }
    if (!err) finish(&c);
    free(c.ids), free(c.ids2), free(c.w);
    if (err) {
        free(c.out);
        return err;
    }
    *out = c.out, *n = c.n;
    return CV_OK;
}
