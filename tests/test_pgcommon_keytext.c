/* test_pgcommon_keytext.c: cv_keytext, part of test_pgcommon. Fixed texts both ways, parse
 * errors with their byte offsets, and parse(format(v)) == v over random byte strings. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../pg/cv_keytext.h"
#include "test_util.h"

static void expect_format(const char *const *vals, int n, const char *want) {
    cv_buf b = {0};
    cv_key_format(vals, n, &b);
    assert_false(b.oom);
    assert_string_equal(b.p ? b.p : "", want);
    cv_buf_free(&b);
}

static void test_format(void **state) {
    (void)state;
    expect_format((const char *[]){"42"}, 1, "42");
    expect_format((const char *[]){"1", "2"}, 2, "1,2"); /* as the progress line always printed */
    expect_format((const char *[]){"2024-01-01 10:00:00+00", "abc"}, 2, "2024-01-01 10:00:00+00,abc");
    expect_format((const char *[]){"héllo wörld", "日本"}, 2, "héllo wörld,日本");
    expect_format((const char *[]){""}, 1, "\"\"");
    expect_format((const char *[]){"a,b", "c"}, 2, "\"a,b\",c");
    expect_format((const char *[]){"say \"hi\""}, 1, "\"say \"\"hi\"\"\"");
    expect_format((const char *[]){" x", "x ", "\tx"}, 3, "\" x\",\"x \",\"\\tx\"");
    expect_format((const char *[]){"C:\\tmp"}, 1, "\"C:\\\\tmp\"");
    expect_format((const char *[]){"line\nbreak\r\x01\x7f"}, 1, "\"line\\nbreak\\r\\x01\\x7f\"");
}

static char **expect_parse(const char *text, int n) {
    char **v = NULL;
    cv_buf err = {0};
    cv_err e = cv_key_parse(text, n, &v, &err);
    if (e) fail_msg("parse %s: %s", text, err.p ? err.p : "?");
    cv_buf_free(&err);
    return v;
}

static void test_parse(void **state) {
    (void)state;
    char **v = expect_parse("1,2", 2);
    assert_string_equal(v[0], "1");
    assert_string_equal(v[1], "2");
    assert_null(v[2]);
    cv_key_free(v);
    v = expect_parse(" 1 ,\t2 ", 2); /* typed by a person */
    assert_string_equal(v[0], "1");
    assert_string_equal(v[1], "2");
    cv_key_free(v);
    v = expect_parse(" \"a,b\" , \"say \"\"hi\"\"\",\"\"", 3);
    assert_string_equal(v[0], "a,b");
    assert_string_equal(v[1], "say \"hi\"");
    assert_string_equal(v[2], "");
    cv_key_free(v);
    v = expect_parse("C:\\tmp,\"C:\\\\tmp\\n\\x41\"", 2); /* unquoted: backslash is literal */
    assert_string_equal(v[0], "C:\\tmp");
    assert_string_equal(v[1], "C:\\tmp\nA");
    cv_key_free(v);
    v = expect_parse("a b", 1);
    assert_string_equal(v[0], "a b");
    cv_key_free(v);
}

static void expect_error(const char *text, int n, const char *want) {
    char **v = (char **)1;
    cv_buf err = {0};
    assert_int_equal(cv_key_parse(text, n, &v, &err), CV_ERR_ARG);
    assert_null(v);
    if (!err.p || !strstr(err.p, want)) fail_msg("parse %s: error \"%s\" lacks \"%s\"", text, err.p, want);
    cv_buf_free(&err);
}

static void test_parse_errors(void **state) {
    (void)state;
    expect_error("1,2", 3, "expected 3 comma-separated values, found 2 (the text ends at byte 3)");
    expect_error("1,2,3", 2, "found more (',' at byte 3)");
    expect_error("\"abc", 1, "the quote opened at byte 0 is never closed");
    expect_error("1,\"ab\"\"", 2, "the quote opened at byte 2 is never closed");
    expect_error("\"a\"x,1", 2, "unexpected 'x' at byte 3 after the closing quote");
    expect_error("\"a\" \n", 1, "unexpected byte 0x0a at byte 4");
    expect_error("a\"b\"", 1, "'\"' at byte 1 inside an unquoted value");
    expect_error("", 1, "value 1 at byte 0 is empty");
    expect_error("1,,2", 3, "value 2 at byte 2 is empty");
    expect_error("1, ", 2, "value 2 at byte 3 is empty");
    expect_error("\"a\\qb\"", 1, "unknown escape at byte 2");
    expect_error("\"\\x0\"", 1, "unknown escape at byte 1");
    expect_error("\"\\x00\"", 1, "unknown escape at byte 1");
    expect_error("1", 0, "at least one value");
    char **v = NULL;
    assert_int_equal(cv_key_parse("1,2", 1, &v, NULL), CV_ERR_ARG); /* err may be NULL */
    assert_null(v);
}

/* A random value: empty, or 1-16 pieces biased towards the bytes that need care. */
static void rand_value(char *out, uint64_t *seed) {
    static const char *const pieces[] = {",",  "\"",  "\"\"", " ",    "\t", "\n",  "\r",
                                         "\\", "\\n", "'",    "a",    "Z",  "0",   "é",
                                         "日", "😀",   "\x01", "\x7f", "x",  ",\"", "\\x41"};
    int n = (int)(tu_rand(seed) % 17);
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        if (tu_rand(seed) % 4 == 0) { /* any byte but NUL */
            out[len++] = (char)(1 + tu_rand(seed) % 255);
            out[len] = 0;
            continue;
        }
        const char *p = pieces[tu_rand(seed) % (sizeof pieces / sizeof pieces[0])];
        memcpy(out + len, p, strlen(p) + 1);
        len += strlen(p);
    }
}

static void test_roundtrip(void **state) {
    (void)state;
    uint64_t seed = 12345;
    for (int it = 0; it < 5000; it++) {
        int n = 1 + (int)(tu_rand(&seed) % 5);
        char vals[5][128];
        const char *pv[5];
        for (int i = 0; i < n; i++) {
            rand_value(vals[i], &seed);
            pv[i] = vals[i];
        }
        cv_buf b = {0};
        cv_key_format(pv, n, &b);
        assert_non_null(b.p);
        for (const unsigned char *p = (const unsigned char *)b.p; *p; p++) /* one line, printable */
            if (*p < 0x20 || *p == 0x7f) fail_msg("control byte 0x%02x in %s", *p, b.p);
        char **got = NULL;
        cv_buf err = {0};
        if (cv_key_parse(b.p, n, &got, &err)) fail_msg("iteration %d: %s reads back as: %s", it, b.p, err.p);
        for (int i = 0; i < n; i++)
            if (strcmp(got[i], vals[i]))
                fail_msg("iteration %d: value %d %s came back as %s", it, i, vals[i], got[i]);
        assert_null(got[n]);
        /* the wrong count is always caught */
        char **none = NULL;
        assert_int_equal(cv_key_parse(b.p, n + 1, &none, NULL), CV_ERR_ARG);
        if (n > 1) assert_int_equal(cv_key_parse(b.p, n - 1, &none, NULL), CV_ERR_ARG);
        cv_key_free(got);
        cv_buf_free(&err);
        cv_buf_free(&b);
    }
}

int run_keytext_tests(void);
int run_keytext_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_roundtrip),
    };
    return cmocka_run_group_tests_name("cv_keytext", tests, NULL, NULL);
}
