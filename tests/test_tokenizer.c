/* test_tokenizer.c: token ids equal to the reference tokenizer's (tests/data/
 * tokenizer_golden.jsonl, from tests/golden/gen_golden.py), every code point's normal form
 * equal to the reference's (tests/data/unicode_map.tsv), truncation and bounded cost. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

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

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static void test_golden_ids(void **state) {
    (void)state;
    FILE *f = fopen(CV_TEST_DATA "/tokenizer_golden.jsonl", "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    int n = 0, bad = 0;
    int32_t ids[256];
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        assert_non_null(o);
        const char *hex = json_string_value(json_object_get(o, "hex"));
        json_t *want = json_object_get(o, "ids");
        size_t blen = strlen(hex) / 2;
        char *bytes = malloc(blen + 1);
        for (size_t i = 0; i < blen; i++)
            bytes[i] = (char)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
        int got = cv_tok_encode(tok, bytes, blen, ids, 256);
        int ok = (size_t)got == json_array_size(want);
        for (int i = 0; ok && i < got; i++)
            ok = ids[i] == json_integer_value(json_array_get(want, (size_t)i));
        if (!ok) {
            bad++;
            if (bad <= 5) {
                fprintf(stderr, "mismatch on hex=%.120s\n  got :", hex);
                for (int i = 0; i < got && i < 40; i++)
                    fprintf(stderr, " %d", ids[i]);
                fprintf(stderr, "\n  want:");
                for (size_t i = 0; i < json_array_size(want) && i < 40; i++)
                    fprintf(stderr, " %lld", (long long)json_integer_value(json_array_get(want, i)));
                fprintf(stderr, "\n");
            }
        }
        free(bytes);
        json_decref(o);
        n++;
    }
    free(line);
    fclose(f);
    print_message("tokenizer golden: %d strings, %d mismatches\n", n, bad);
    assert_true(n >= 500);
    assert_int_equal(bad, 0);
}

/* Every code point: class and normal form as the reference's (exhaustive). */
static void test_every_code_point(void **state) {
    (void)state;
    FILE *f = fopen(CV_TEST_DATA "/unicode_map.tsv", "r");
    assert_non_null(f);
    char line[512];
    uint32_t next_cp = 0;
    long checked = 0, bad = 0;
    int32_t want[16], got[16];
    int have = 0, nwant = 0;
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        while (!have || next_cp < cp) {
            if (!fgets(line, sizeof line, f)) {
                next_cp = 0x110000;
                have = 1;
                break;
            }
            if (line[0] == '#') continue;
            char *p = line;
            next_cp = (uint32_t)strtoul(p, &p, 16);
            nwant = 0;
            while (*p == '\t' || *p == ' ') {
                p++;
                if (*p == '\n' || !*p) break;
                want[nwant++] = (int32_t)strtoul(p, &p, 16);
            }
            have = 1;
        }
        cv_tok_class cls = cv_tok_classify(tok, (int32_t)cp);
        if (cls == CV_TOK_DROP || cls == CV_TOK_SPACE) continue;
        int n = cv_tok_normalize_cp(tok, (int32_t)cp, got);
        int ok;
        if (next_cp == cp) {
            ok = n == nwant && memcmp(got, want, sizeof(int32_t) * (size_t)n) == 0;
        } else {
            ok = n == 1 && got[0] == (int32_t)cp;
        }
        checked++;
        if (!ok && ++bad <= 10) fprintf(stderr, "U+%04X: normal form differs (n=%d)\n", cp, n);
    }
    fclose(f);
    print_message("code points checked=%ld mismatches=%ld\n", checked, bad);
    assert_int_equal(bad, 0);
}

static void test_truncation_and_budget(void **state) {
    (void)state;
    /* a 10 MB text gives the ids of its first 254 word pieces, the same as its first 2 KB */
    const char *unit = "The quick brown fox jumps over the lazy dog. ";
    size_t ul = strlen(unit), big = 10u << 20;
    char *s = malloc(big);
    for (size_t i = 0; i < big; i++)
        s[i] = unit[i % ul];
    int32_t a[256], b[256];
    int na = cv_tok_encode(tok, s, big, a, 256);
    int nb = cv_tok_encode(tok, s, 2048, b, 256);
    assert_int_equal(na, 256);
    assert_int_equal(nb, 256);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(a[0], 101);
    assert_int_equal(a[255], 102);
    /* budget 2: [CLS] [SEP] only */
    assert_int_equal(cv_tok_encode(tok, s, big, a, 2), 2);
    assert_int_equal(a[1], 102);
    /* one 10 MB word: [UNK] */
    memset(s, 'a', big);
    assert_int_equal(cv_tok_encode(tok, s, big, a, 256), 3);
    assert_int_equal(a[1], 100);
    free(s);
}

static void test_any_bytes(void **state) {
    (void)state;
    uint64_t seed = 99;
    int32_t ids[64];
    unsigned char buf[300];
    for (int r = 0; r < 20000; r++) {
        size_t n = tu_rand(&seed) % sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)tu_rand(&seed);
        int k = cv_tok_encode(tok, (const char *)buf, n, ids, 64);
        assert_true(k >= 2 && k <= 64);
        assert_int_equal(ids[0], 101);
        assert_int_equal(ids[k - 1], 102);
        for (int i = 0; i < k; i++)
            assert_true(ids[i] >= 0 && ids[i] < cv_tok_vocab_size(tok));
    }
    /* invalid bytes inside a word vanish like U+FFFD: "ab\xffcd" == "abcd" */
    int32_t x[16], y[16];
    int nx = cv_tok_encode(tok, "hel\xfflo", 6, x, 16), ny = cv_tok_encode(tok, "hello", 5, y, 16);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, sizeof(int32_t) * (size_t)nx);
}

static void test_bad_vocab(void **state) {
    (void)state;
    cv_tok *t = NULL;
    assert_int_equal(cv_tok_load("/nonexistent/vocab.txt", &t), CV_ERR_NOTFOUND);
    char path[] = "/tmp/cdcvec-vocab-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("[PAD]\nhello\nworld\n", f); /* no [CLS]/[SEP]/[UNK] */
    fclose(f);
    assert_int_equal(cv_tok_load(path, &t), CV_ERR_FORMAT);
    assert_null(t);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_ids),
        cmocka_unit_test(test_every_code_point),
        cmocka_unit_test(test_truncation_and_budget),
        cmocka_unit_test(test_any_bytes),
        cmocka_unit_test(test_bad_vocab),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
