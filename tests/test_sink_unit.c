/* test_sink_unit.c: the remote stores' pure parts, no service: Qdrant point ids (integers and
 * UUIDv5, checked against Python's uuid.uuid5), the JSON a point carries (keys typed, kept
 * columns, the cdcvec object, the stored hash reused), search payloads, the store picked by
 * the sink string, secrets from *_FILE, and sink URLs with a key refused before any request. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/cv_conf.h"
#include "../common/cv_jnum.h"
#include "../sink/sink_impl.h"

static const char *kn1[] = {"id"}, *kt_int[] = {"integer"}, *kt_text[] = {"text"}, *kn2[] = {"a", "b"},
                  *kt2[] = {"text", "text"};

static void expect_id(const cv_sink_table *t, const char *const *key, const char *js, const char *str) {
    cv_buf j = {0}, s = {0};
    cv_qdrant_point_id(t, key, &j, &s);
    assert_string_equal(j.p, js);
    assert_string_equal(s.p, str);
    free(j.p), free(s.p);
}

static void test_point_ids(void **state) {
    (void)state;
    cv_sink_table books = {
        .schema = "public", .table = "books", .nkeys = 1, .key_names = kn1, .key_types = kt_int};
    expect_id(&books, (const char *[]){"42"}, "42", "42");
    expect_id(&books, (const char *[]){"0"}, "0", "0");
    expect_id(&books, (const char *[]){"18446744073709551615"}, "18446744073709551615",
              "18446744073709551615");
    /* expected values: python3 -c "import uuid; print(uuid.uuid5(uuid.UUID('3acb4b64-d471-55a5-8e5b-
     * 2ffa680abb72'), 'public.books:-5'))" */
    expect_id(&books, (const char *[]){"-5"}, "\"d79de058-4f66-52c1-b141-4d5d85ecd90e\"",
              "d79de058-4f66-52c1-b141-4d5d85ecd90e");
    expect_id(&books, (const char *[]){"18446744073709551616"}, "\"512ace24-e477-5f4d-9813-5ed09c115c15\"",
              "512ace24-e477-5f4d-9813-5ed09c115c15");
    cv_sink_table t = {.schema = "public", .table = "t", .nkeys = 1, .key_names = kn1, .key_types = kt_text};
    expect_id(&t, (const char *[]){"abc"}, "\"82b9c467-6c46-5e78-a6e8-4203071531aa\"",
              "82b9c467-6c46-5e78-a6e8-4203071531aa");
}

static void test_point_ids_text_digits(void **state) {
    (void)state; /* a text key that looks like a number is still a UUID: ids never depend on the value */
    cv_sink_table t = {.schema = "public", .table = "t", .nkeys = 1, .key_names = kn1, .key_types = kt_text};
    cv_buf j = {0};
    cv_qdrant_point_id(&t, (const char *[]){"42"}, &j, NULL);
    assert_int_equal(j.p[0], '"');
    assert_int_equal(strlen(j.p), 38);
    free(j.p);
    cv_sink_table c = {.schema = "public", .table = "t", .nkeys = 2, .key_names = kn2, .key_types = kt2};
    expect_id(&c, (const char *[]){"a", "b,c"}, "\"0ff82545-41c6-5a34-9623-d491425c4ec6\"",
              "0ff82545-41c6-5a34-9623-d491425c4ec6");
}

static void test_payload(void **state) {
    (void)state;
    cv_sink_table t = {.schema = "public",
                       .table = "books",
                       .nkeys = 1,
                       .key_names = kn1,
                       .key_types = kt_int,
                       .model_id = "m"};
    uint8_t h[32];
    for (int i = 0; i < 32; i++)
        h[i] = (uint8_t)i;
    cv_sink_row r = {.key = (const char *[]){"7"}, .payload = "{\"name\":\"Dune\",\"year\":1965}", .hash = h};
    json_t *p = cv_sink_point_payload(&t, &r, "7", NULL, 123, "2026-01-01T00:00:00.000Z");
    assert_non_null(p);
    assert_int_equal(json_integer_value(json_object_get(p, "id")), 7);
    assert_string_equal(json_string_value(json_object_get(p, "name")), "Dune");
    json_t *c = json_object_get(p, "cdcvec");
    assert_string_equal(json_string_value(json_object_get(c, "table")), "public.books");
    assert_string_equal(json_string_value(json_object_get(c, "key")), "7");
    assert_string_equal(json_string_value(json_object_get(c, "model")), "m");
    assert_int_equal(json_integer_value(json_object_get(c, "lsn")), 123);
    assert_string_equal(json_string_value(json_object_get(c, "text_hash")),
                        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    uint8_t back[32];
    assert_true(cv_sink_stored_hash(p, back));
    assert_memory_equal(back, h, 32);
    /* payload-only: no hash in the row, kept column and hash from what is stored */
    cv_sink_row r2 = {.key = (const char *[]){"7"}, .payload = "{\"year\":1966}", .keep = "[\"name\"]"};
    json_t *p2 = cv_sink_point_payload(&t, &r2, "7", p, 124, "2026-01-01T00:00:01.000Z");
    assert_string_equal(json_string_value(json_object_get(p2, "name")), "Dune");
    assert_int_equal(json_integer_value(json_object_get(p2, "year")), 1966);
    assert_true(cv_sink_stored_hash(p2, back));
    assert_memory_equal(back, h, 32);
    char *pub = cv_sink_public_payload(&t, p2);
    assert_string_equal(pub, "{\"name\":\"Dune\",\"year\":1966}");
    free(pub);
    cv_sink_row bad = {.key = (const char *[]){"7"}, .payload = "[1]"};
    assert_null(cv_sink_point_payload(&t, &bad, "7", NULL, 1, "x"));
    json_decref(p), json_decref(p2);
}

static void test_kind_and_urls(void **state) {
    (void)state;
    assert_string_equal(cv_sink_kind("qdrant://h:6333/c"), "qdrant");
    assert_string_equal(cv_sink_kind("qdrants://h/c"), "qdrant");
    assert_string_equal(cv_sink_kind("upstash://"), "upstash");
    assert_string_equal(cv_sink_kind("postgres://u@h/db"), "pgvector");
    assert_string_equal(cv_sink_kind("host=h dbname=d"), "pgvector");
    cv_sink_table t = {.schema = "public",
                       .table = "books",
                       .nkeys = 1,
                       .key_names = kn1,
                       .key_types = kt_int,
                       .dim = 384,
                       .stream = "s"};
    cv_sink *s = (cv_sink *)1;
    const char *kind, *fix;
    assert_int_equal(cv_sink_open("qdrant://secretkey@127.0.0.1:1/c", &t, &s), CV_ERR_UNSUPPORTED);
    assert_null(s);
    cv_sink_last_fault(NULL, &kind, &fix);
    assert_string_equal(kind, "config");
    assert_non_null(strstr(fix, "QDRANT_API_KEY"));
    assert_null(strstr(fix, "secretkey"));
    assert_int_equal(cv_sink_open("upstash://tok@example.invalid", &t, &s), CV_ERR_UNSUPPORTED);
    cv_sink_last_fault(NULL, &kind, &fix);
    assert_non_null(strstr(fix, "UPSTASH_VECTOR_REST_TOKEN"));
    unsetenv("UPSTASH_VECTOR_REST_URL"), unsetenv("UPSTASH_VECTOR_REST_URL_FILE");
    assert_int_equal(cv_sink_open("upstash://", &t, &s), CV_ERR_UNSUPPORTED);
    cv_sink_last_fault(NULL, &kind, &fix);
    assert_non_null(strstr(fix, "UPSTASH_VECTOR_REST_URL"));
}

static void test_secret_file(void **state) {
    (void)state;
    char path[] = "/tmp/cv_sink_secretXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("k-123\n", f);
    fclose(f);
    unsetenv("CV_TEST_SECRET");
    setenv("CV_TEST_SECRET_FILE", path, 1);
    const char *err;
    char *v = cv_conf_secret("CV_TEST_SECRET", &err);
    assert_string_equal(v, "k-123");
    free(v);
    setenv("CV_TEST_SECRET", "direct", 1);
    v = cv_conf_secret("CV_TEST_SECRET", &err);
    assert_string_equal(v, "direct");
    free(v);
    unsetenv("CV_TEST_SECRET");
    setenv("CV_TEST_SECRET_FILE", "/nonexistent/x", 1);
    assert_null(cv_conf_secret("CV_TEST_SECRET", &err));
    assert_non_null(err);
    unlink(path);
}

static void test_float_text(void **state) {
    (void)state; /* every float reads back bit for bit, over many magnitudes, and zero / signs */
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    char buf[24];
    for (int i = 0; i < 2000000; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        uint32_t bits = (uint32_t)seed;
        float f;
        memcpy(&f, &bits, 4);
        if (!isfinite(f)) continue;
        int n = cv_sink_float_text(f, buf);
        buf[n] = 0;
        float back = strtof(buf, NULL);
        if (memcmp(&back, &f, 4) != 0 && !(f == 0 && back == 0))
            fail_msg("%.9g -> %s -> %.9g", (double)f, buf, (double)back);
    }
    const float fixed[] = {0.0f,  1.0f,           -1.0f,        0.5f,    0.1f,
                           1e-7f, -0.0123456789f, 123456789.0f, 3.4e38f, 1.4e-45f};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        int n = cv_sink_float_text(fixed[i], buf);
        buf[n] = 0;
        assert_true(strtof(buf, NULL) == fixed[i]);
    }
    cv_sink_float_text(0.1f, buf);
    assert_int_equal(strncmp(buf, "1.00000001e-1", 13), 0);
}

/* Numbers kept exactly (common/cv_jnum.h): what jansson alone refuses or rounds. */
static void expect_dump(const char *in, int mode, const char *out) {
    json_error_t je;
    json_t *j = cv_jnum_loads(in, JSON_DECODE_ANY, &je);
    if (!j) fail_msg("%s: %s", in, je.text);
    char *s = cv_jnum_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY, mode);
    if (!s || strcmp(s, out)) fail_msg("%s (mode %d) -> %s, expected %s", in, mode, s ? s : "NULL", out);
    free(s);
    json_decref(j);
}

static int jeq(const char *a, const char *b) {
    json_t *x = cv_jnum_loads(a, 0, NULL), *y = cv_jnum_loads(b, 0, NULL);
    int eq = x && y && cv_jnum_equal(x, y);
    json_decref(x), json_decref(y);
    return eq;
}

static void test_jnum(void **state) {
    (void)state;
    static const char *exact[] = {"{\"n\":9223372036854775808}",
                                  "{\"n\":-9223372036854775809}",
                                  "{\"n\":9223372036854775807}",
                                  "{\"n\":0.1000000000000000000001}",
                                  "{\"n\":1e400}",
                                  "{\"n\":0.1}",
                                  "{\"n\":1.50}",
                                  "[1e-400,-0,0.0,123456789012345678901234567890,2.5E+3]",
                                  "{\"a\":{\"b\":[1,2.0,{\"c\":1e300}]}}",
                                  "\"plain\"",
                                  "{\"s\":\"12.5\"}"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        expect_dump(exact[i], CV_JNUM_EXACT, exact[i]);
    char big[400] = "{\"x\":1";
    for (int i = 0; i < 300; i++)
        strcat(big, "0");
    strcat(big, "}");
    expect_dump(big, CV_JNUM_EXACT, big);
    /* the doubles' form: a number where a double holds the decimal, else the exact text as a string */
    expect_dump(big, CV_JNUM_DOUBLE, "{\"x\":1e+300}");
    expect_dump("{\"n\":9223372036854775808}", CV_JNUM_DOUBLE, "{\"n\":\"9223372036854775808\"}");
    expect_dump("{\"n\":9223372036854775807}", CV_JNUM_DOUBLE, "{\"n\":9223372036854775807}");
    expect_dump("{\"n\":1e400}", CV_JNUM_DOUBLE, "{\"n\":\"1e400\"}");
    expect_dump("{\"n\":0.1000000000000000000001}", CV_JNUM_DOUBLE, "{\"n\":\"0.1000000000000000000001\"}");
    expect_dump("[0.1,1.50,2.5E+3,-0.25]", CV_JNUM_DOUBLE, "[0.1,1.5,2500.0,-0.25]");
    /* strings that start with the mark (U+FDD0), raw or escaped, come back unchanged */
    expect_dump("[\"\xef\xb7\x90"
                "1.5\",\"\xef\xb7\x90\",\"x\xef\xb7\x90\"]",
                CV_JNUM_EXACT,
                "[\"\xef\xb7\x90"
                "1.5\",\"\xef\xb7\x90\",\"x\xef\xb7\x90\"]");
    expect_dump("[\"\\ufdd02\"]", CV_JNUM_DOUBLE,
                "[\"\xef\xb7\x90"
                "2\"]");
    json_t *j = cv_jnum_loads("[\"\xef\xb7\x90"
                              "1.5\",1.5]",
                              0, NULL);
    assert_false(cv_jnum_number(json_array_get(j, 0), NULL));
    double v = 0;
    assert_true(cv_jnum_number(json_array_get(j, 1), &v));
    assert_true(v == 1.5);
    /* cv_jnum_string: the document's string (its U+FDD0 as written), never a kept number */
    size_t sl = 0;
    const char *sv = cv_jnum_string(json_array_get(j, 0), &sl);
    assert_true(sv && sl == 6 &&
                memcmp(sv,
                       "\xef\xb7\x90"
                       "1.5",
                       6) == 0);
    assert_null(cv_jnum_string(json_array_get(j, 1), NULL));
    json_decref(j);
    j = cv_jnum_loads("[18446744073709551616,\"x\"]", 0, NULL);
    assert_null(cv_jnum_string(json_array_get(j, 0), NULL));
    assert_true(cv_jnum_number(json_array_get(j, 0), NULL));
    assert_string_equal(cv_jnum_string(json_array_get(j, 1), &sl), "x");
    json_decref(j);
    /* not JSON stays not JSON */
    assert_null(cv_jnum_loads("{\"n\":01}", 0, NULL));
    assert_null(cv_jnum_loads("{\"n\":1.}", 0, NULL));
    assert_null(cv_jnum_loads("[1e400", 0, NULL));
    /* equal by decimal value */
    assert_true(jeq("{\"a\":1.50,\"b\":[100]}", "{\"b\":[1e2],\"a\":1.5}"));
    assert_true(jeq(big, "{\"x\":1e300}"));
    assert_true(jeq("[0,-0,0.0]", "[0.00,0,-0.0e5]"));
    assert_false(jeq("{\"n\":9223372036854775808}", "{\"n\":9223372036854775807}"));
    assert_false(jeq("{\"n\":0.1000000000000000000001}", "{\"n\":0.1}"));
    assert_false(jeq("{\"n\":\"1.5\"}", "{\"n\":1.5}"));
    assert_false(jeq("{\"n\":1}", "{\"n\":1,\"m\":2}"));
    char l1[200], l2[200]; /* long mantissas: every digit counts */
    snprintf(l1, sizeof l1, "[0.%s1]",
             "1234567890123456789012345678901234567890123456789012345678901234567890");
    snprintf(l2, sizeof l2, "[0.%s2]",
             "1234567890123456789012345678901234567890123456789012345678901234567890");
    assert_false(jeq(l1, l2));
    assert_true(jeq(l1, l1));
    assert_true(cv_jnum_double_exact("0.1", 3));
    assert_false(cv_jnum_double_exact("9007199254740993", 16));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_point_ids),   cmocka_unit_test(test_point_ids_text_digits),
        cmocka_unit_test(test_payload),     cmocka_unit_test(test_kind_and_urls),
        cmocka_unit_test(test_secret_file), cmocka_unit_test(test_float_text),
        cmocka_unit_test(test_jnum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
