/* test_chunk.c: models/chunk.h against the model's tokenizer: exact token counts, offsets that
 * round-trip, stable boundaries under a one-sentence edit, overlap, long sentences and words,
 * texts of one chunk left as they are, option checks. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "../common/cv_buf.h"
#include "../models/chunk.h"
#include "../models/minilm.h"
#include "../models/tokenizer.h"
#include "test_util.h"

static cv_tok *tok;

static int setup(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", cv_minilm_default_dir());
    if (cv_tok_load(path, &tok) != CV_OK) {
        fprintf(stderr, "cannot load %s: run python3 models/fetch_model.py\n", path);
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cv_tok_free(tok);
    return 0;
}

/* Word pieces of text[0..len) alone, [CLS] and [SEP] excluded (no cap). */
static int pieces(const char *text, size_t len) {
    int32_t *ids = malloc(sizeof(int32_t) * (len + 2));
    int n = cv_tok_encode(tok, text, len, ids, (int)(len + 2)) - 2;
    free(ids);
    return n;
}

static int is_sp(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int hashes_on(const cv_chunk *k, int n) { /* the engine-only build has no SHA-256 */
    for (int i = 0; i < n; i++)
        for (int b = 0; b < 32; b++)
            if (k[i].hash[b]) return 1;
    return 0;
}

/* Every chunk: its count is the tokenizer's, within the limit; its char offsets are its byte
 * offsets'; equal texts have equal hashes; the chunks cover every word, in order. */
static void check_chunks(const char *text, size_t len, const cv_chunk *k, int n, int lim) {
    size_t covered = 0;
    int hashes = hashes_on(k, n);
    for (int i = 0; i < n; i++) {
        assert_true(k[i].off + k[i].len <= len);
        assert_int_equal(k[i].tokens, pieces(text + k[i].off, k[i].len));
        assert_true(k[i].tokens <= lim);
        size_t co = 0, cl = 0;
        for (size_t b = 0; b < k[i].off; b++)
            co += ((unsigned char)text[b] & 0xC0) != 0x80;
        for (size_t b = k[i].off; b < k[i].off + k[i].len; b++)
            cl += ((unsigned char)text[b] & 0xC0) != 0x80;
        assert_int_equal(k[i].char_off, co);
        assert_int_equal(k[i].char_len, cl);
        for (size_t b = covered; b < k[i].off; b++) /* nothing but whitespace left out */
            assert_true(is_sp(text[b]));
        if (k[i].off + k[i].len > covered) covered = k[i].off + k[i].len;
        if (i > 0) assert_true(k[i].off > k[i - 1].off);
        for (int j = 0; hashes && j < i; j++) {
            int same = k[j].len == k[i].len && memcmp(text + k[j].off, text + k[i].off, k[i].len) == 0;
            assert_int_equal(same, memcmp(k[j].hash, k[i].hash, 32) == 0);
        }
    }
    for (size_t b = covered; b < len; b++)
        assert_true(is_sp(text[b]));
}

static const char *WORDS[] = {
    "the",     "catalog",  "search", "vector", "index",   "table",   "row",     "change",  "model",
    "store",   "text",     "update", "delete", "insert",  "query",   "result",  "ranking", "payload",
    "key",     "position", "stream", "slot",   "replica", "commit",  "batch",   "embed",   "sentence",
    "token",   "piece",    "chunk",  "paris",  "london",  "river",   "bridge",  "morning", "evening",
    "quietly", "rapidly",  "under",  "beyond", "with",    "without", "because", "after",   "before",
    "green",   "ancient",  "modern", "large",  "small"};
#define NWORDS (sizeof WORDS / sizeof WORDS[0])

/* One sentence of 8..20 words from the seed. */
static void sentence(cv_buf *b, uint64_t *seed) {
    int n = 8 + (int)(tu_rand(seed) % 13);
    for (int i = 0; i < n; i++) {
        const char *w = WORDS[tu_rand(seed) % NWORDS];
        if (i == 0) {
            char up[32];
            snprintf(up, sizeof up, "%c%s", w[0] - 32, w + 1);
            cv_buf_puts(b, up);
        } else {
            cv_buf_printf(b, " %s", w);
        }
        if (i == n / 2 && tu_rand(seed) % 3 == 0) cv_buf_puts(b, ",");
    }
    cv_buf_puts(b, tu_rand(seed) % 5 == 0 ? "?" : ".");
}

/* A document of paragraphs (2..7 sentences) of at least min_tokens word pieces, or of *paras
 * paragraphs when it is not 0 (*paras gets the count). Sentence edit_at (counted from 0; -1:
 * none) is written from another seed. */
static char *document(int min_tokens, int edit_at, size_t *len, int *paras) {
    uint64_t seed = 7, other = 99;
    cv_buf b = {0};
    int s = 0, np = 0;
    while (*paras ? np < *paras : pieces(b.p ? b.p : "", b.len) < min_tokens) {
        np++;
        int ns = 2 + (int)(tu_rand(&seed) % 6);
        if (b.len) cv_buf_puts(&b, "\n\n");
        for (int i = 0; i < ns; i++, s++) {
            if (i) cv_buf_puts(&b, " ");
            if (s == edit_at) {
                cv_buf edit = {0};
                sentence(&edit, &seed); /* the same draws for the rest of the document */
                sentence(&b, &other);
                b.len--; /* and longer: a clause before its full stop */
                cv_buf_puts(&b, ", which the edit added in the middle of the document.");
                free(edit.p);
            } else {
                sentence(&b, &seed);
            }
        }
    }
    *len = b.len, *paras = np;
    return b.p;
}

static void test_one_chunk(void **state) {
    (void)state;
    const char *texts[] = {"A boy wizard attends a school of magic.", "  padded\n\ntext with breaks  \n",
                           "x"};
    cv_chunk_opts o = {.max_tokens = 256, .overlap = 32, .max_seq = 256};
    for (size_t i = 0; i < 3; i++) {
        cv_chunk *k;
        int n;
        assert_int_equal(cv_chunk_text(tok, &o, texts[i], strlen(texts[i]), &k, &n), CV_OK);
        assert_int_equal(n, 1);
        assert_int_equal(k[0].off, 0);
        assert_int_equal(k[0].len, strlen(texts[i])); /* text == original, surrounding spaces kept */
        check_chunks(texts[i], strlen(texts[i]), k, n, 254);
        free(k);
    }
    cv_chunk *k = (cv_chunk *)1;
    int n = 1;
    assert_int_equal(cv_chunk_text(tok, &o, "", 0, &k, &n), CV_OK);
    assert_int_equal(n, 0);
    assert_null(k);
}

static void test_exact_and_offsets(void **state) {
    (void)state;
    size_t len;
    int np = 0;
    char *doc = document(3000, -1, &len, &np);
    /* and text the tokenizer finds hard: accents, CJK, emoji, special tokens, punctuation runs */
    cv_buf b = {0};
    cv_buf_put(&b, doc, len);
    cv_buf_puts(
        &b,
        "\n\nCafé naïve façade Ünïcödé. 東京は日本の首都です。 Emoji 🙂🙂 here! [CLS] "
        "literal "
        "[SEP] and "
        "[MASK]. a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z!!! ... ?! \t tab\r\nCRLF line.");
    for (int i = 0; i < 40; i++)
        cv_buf_puts(&b, " naïve-café_token#42,");
    free(doc);
    static const int lims[][2] = {{254, 32}, {64, 16}, {16, 0}, {16, 8}};
    for (size_t l = 0; l < sizeof lims / sizeof lims[0]; l++) {
        cv_chunk_opts o = {.max_tokens = lims[l][0], .overlap = lims[l][1], .max_seq = 256};
        cv_chunk *k;
        int n;
        assert_int_equal(cv_chunk_text(tok, &o, b.p, b.len, &k, &n), CV_OK);
        assert_true(n > 1);
        check_chunks(b.p, b.len, k, n, lims[l][0]);
        free(k);
    }
    free(b.p);
}

/* Chunks of b (chunked as kb) whose text and hash a's chunks (ka) do not have. */
static int changed_chunks(const char *a, const cv_chunk *ka, int na, const char *b, const cv_chunk *kb,
                          int nb) {
    int changed = 0;
    for (int i = 0; i < nb; i++) {
        int found = 0;
        for (int j = 0; j < na && !found; j++)
            found = ka[j].len == kb[i].len && memcmp(a + ka[j].off, b + kb[i].off, kb[i].len) == 0 &&
                    memcmp(ka[j].hash, kb[i].hash, 32) == 0;
        changed += !found;
    }
    return changed;
}

static void test_stable_under_edit(void **state) {
    (void)state;
    size_t l0, l1;
    int np = 0;
    char *a = document(5000, -1, &l0, &np);
    assert_true(pieces(a, l0) >= 5000);
    int nsent = 0;
    for (size_t i = 0; i < l0; i++)
        nsent += a[i] == '.' || a[i] == '?';
    cv_chunk_opts o = {.max_tokens = 256, .overlap = 32, .max_seq = 256};
    cv_chunk *ka, *kb;
    int na, nb;
    assert_int_equal(cv_chunk_text(tok, &o, a, l0, &ka, &na), CV_OK);
    check_chunks(a, l0, ka, na, 254);
    assert_true(na >= 20);
    struct timespec t0, t1; /* the cost, for the record: chunking against embedding the same tokens */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < 20; r++) {
        cv_chunk *kr;
        int nr;
        assert_int_equal(cv_chunk_text(tok, &o, a, l0, &kr, &nr), CV_OK);
        free(kr);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double sec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    fprintf(stderr, "chunking: %.2f ms per %zu-byte document (%.1f MB/s)\n", sec / 20 * 1e3, l0,
            20.0 * (double)l0 / sec / 1e6);
    /* one sentence in the middle rewritten (and longer), at nine places in turn */
    for (int at = nsent / 2 - 20; at <= nsent / 2 + 20; at += 5) {
        char *b = document(5000, at, &l1, &np);
        assert_true(l0 != l1 || memcmp(a, b, l0) != 0);
        assert_int_equal(cv_chunk_text(tok, &o, b, l1, &kb, &nb), CV_OK);
        check_chunks(b, l1, kb, nb, 254);
        int changed = changed_chunks(a, ka, na, b, kb, nb);
        fprintf(stderr, "sentence %d of %d rewritten in a %d-token document: %d -> %d chunks, %d changed\n",
                at, nsent, pieces(a, l0), na, nb, changed);
        assert_true(changed >= 1);
        assert_true(changed <= 2);
        assert_true(na - nb <= 1 && nb - na <= 1);
        /* what a store re-embeds: the new chunks whose hash it does not hold, whatever their number */
        uint8_t(*stored)[32] = malloc(32 * (size_t)na);
        int *from = malloc(sizeof(int) * (size_t)nb);
        for (int j = 0; j < na; j++)
            memcpy(stored[j], ka[j].hash, 32);
        int by_number = 0;
        for (int i = 0; i < nb; i++)
            by_number += i >= na || memcmp(kb[i].hash, stored[i], 32) != 0;
        int embed = cv_chunk_match(kb, nb, (const uint8_t(*)[32])stored, na, from);
        fprintf(stderr, "  to embed: %d matched by hash, %d compared by chunk number\n", embed, by_number);
        if (hashes_on(ka, na)) assert_int_equal(embed, changed);
        for (int i = 0; i < nb; i++)
            if (from[i] >= 0) assert_memory_equal(kb[i].hash, ka[from[i]].hash, 32);
        if (nb > na) assert_true(by_number > embed); /* numbers shifted: matching by number re-embeds more */
        free(stored), free(from);
        free(kb), free(b);
    }
    free(ka), free(a);
}

static void test_overlap(void **state) {
    (void)state;
    /* one paragraph of many sentences: every chunk after the first repeats the end of the one
     * before, up to 24 word pieces, whole words */
    cv_buf b = {0};
    uint64_t seed = 3;
    for (int i = 0; i < 60; i++) {
        if (i) cv_buf_puts(&b, " ");
        sentence(&b, &seed);
    }
    cv_chunk_opts o = {.max_tokens = 100, .overlap = 24, .max_seq = 256};
    cv_chunk *k;
    int n;
    assert_int_equal(cv_chunk_text(tok, &o, b.p, b.len, &k, &n), CV_OK);
    check_chunks(b.p, b.len, k, n, 100);
    assert_true(n >= 5);
    for (int i = 1; i < n; i++) {
        size_t prev_end = k[i - 1].off + k[i - 1].len;
        assert_true(k[i].off < prev_end); /* overlaps */
        assert_true(k[i].off > k[i - 1].off);
        assert_true(is_sp(b.p[k[i].off - 1])); /* from a word's start */
        int ov = pieces(b.p + k[i].off, prev_end - k[i].off);
        assert_true(ov > 0 && ov <= 24);
        assert_true(k[i - 1].tokens >= 50); /* and chunks are not tiny */
    }
    o.overlap = 0;
    free(k);
    assert_int_equal(cv_chunk_text(tok, &o, b.p, b.len, &k, &n), CV_OK);
    for (int i = 1; i < n; i++)
        assert_true(k[i].off >= k[i - 1].off + k[i - 1].len);
    /* sentence boundaries preferred: without overlap every chunk ends a sentence */
    for (int i = 0; i < n - 1; i++) {
        char last = b.p[k[i].off + k[i].len - 1];
        assert_true(last == '.' || last == '?');
    }
    free(k), free(b.p);
}

static void test_long_sentence_and_word(void **state) {
    (void)state;
    cv_buf b = {0};
    uint64_t seed = 5;
    for (int i = 0; i < 700; i++) /* one sentence of 700 words: cut on word boundaries */
        cv_buf_printf(&b, "%s%s", i ? " " : "", WORDS[tu_rand(&seed) % NWORDS]);
    cv_chunk_opts o = {.max_tokens = 64, .overlap = 0, .max_seq = 256};
    cv_chunk *k;
    int n;
    assert_int_equal(cv_chunk_text(tok, &o, b.p, b.len, &k, &n), CV_OK);
    check_chunks(b.p, b.len, k, n, 64);
    for (int i = 0; i < n; i++) {
        size_t e = k[i].off + k[i].len;
        assert_true(k[i].off == 0 || is_sp(b.p[k[i].off - 1]));
        assert_true(e == b.len || is_sp(b.p[e]));
        if (i < n - 1) assert_true(k[i].tokens >= 60); /* packed full */
    }
    free(k);
    free(b.p);
    /* one word of ~30 word pieces (one pre-token under 100 characters), then one of punctuation
     * runs: cut on word-piece boundaries, pieces in order, nothing lost */
    const char *words[] = {
        "unbelievablyinternationalizationcounterrevolutionaryneuroscientificallyxylophonist",
        "a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t-u-v-w-x-y-z-a-b-c-d-e-f-g-h-i-j-k-l-m-n"};
    o.max_tokens = 16;
    for (size_t w = 0; w < 2; w++) {
        const char *t = words[w];
        size_t len = strlen(t);
        assert_true(pieces(t, len) > 16);
        assert_int_equal(cv_chunk_text(tok, &o, t, len, &k, &n), CV_OK);
        check_chunks(t, len, k, n, 16);
        assert_true(n >= 2);
        size_t at = 0;
        for (int i = 0; i < n; i++) {
            assert_int_equal(k[i].off, at); /* contiguous */
            int32_t whole[256], part[256];
            int nw = cv_tok_encode(tok, t + at, len - at, whole, 256);
            int np = cv_tok_encode(tok, t + at, k[i].len, part, 256);
            assert_true(np <= nw); /* the piece reads as the rest of the word's first pieces */
            assert_memory_equal(part + 1, whole + 1, sizeof(int32_t) * (size_t)(np - 2));
            at += k[i].len;
        }
        assert_int_equal(at, len);
        free(k);
    }
}

static void test_options(void **state) {
    (void)state;
    char why[256];
    cv_chunk_opts o = {.max_tokens = 8, .overlap = 0, .max_seq = 256};
    assert_int_equal(cv_chunk_check(&o, why, sizeof why), CV_ERR_ARG);
    assert_non_null(strstr(why, "max_tokens"));
    o = (cv_chunk_opts){.max_tokens = 100, .overlap = 51, .max_seq = 256};
    assert_int_equal(cv_chunk_check(&o, why, sizeof why), CV_ERR_ARG);
    assert_non_null(strstr(why, "overlap"));
    o = (cv_chunk_opts){.max_tokens = 512, .overlap = 32, .max_seq = 256};
    assert_int_equal(cv_chunk_check(&o, why, sizeof why), CV_OK);
    assert_int_equal(cv_chunk_limit(&o), 254); /* never more than the model reads */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_chunk),
        cmocka_unit_test(test_exact_and_offsets),
        cmocka_unit_test(test_stable_under_edit),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_long_sentence_and_word),
        cmocka_unit_test(test_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
