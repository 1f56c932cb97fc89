/* test_quix.c: cv_quix (the tutorial's wire formats) on hand cases: float layouts of Python
 * and orjson, string escapes, wal2json's value rules re-printed by Python, the embeddings
 * message, and parse errors that say what is wrong. tests/test_quix_format.sh compares the
 * same code with real wal2json, Python and orjson. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../kafka/quix.h"
#include "../kafka/wire.h"

/* Python's and orjson's text of x, checked. */
static void check_float(double x, const char *py, const char *oj) {
    cv_buf a = {0}, b = {0};
    cv_quix_put_pyfloat(&a, x);
    cv_quix_put_orjson_float(&b, x);
    if (strcmp(a.p, py) || strcmp(b.p, oj))
        fail_msg("%.17g: py %s (want %s), orjson %s (want %s)", x, a.p, py, b.p, oj);
    cv_buf_free(&a), cv_buf_free(&b);
}

/* Layouts and shortest digits, values printed by Python 3.11 and orjson 3.10.3. */
static void test_floats(void **s) {
    (void)s;
    check_float(0.0, "0.0", "0.0");
    check_float(-0.0, "-0.0", "-0.0");
    check_float(1.5, "1.5", "1.5");
    check_float(100.0, "100.0", "100.0");
    check_float(1e20, "1e+20", "1e20");
    check_float(1e16, "1e+16", "1e16");
    check_float(1e15, "1000000000000000.0", "1000000000000000.0");
    check_float(1e-4, "0.0001", "0.0001");
    check_float(1e-5, "1e-05", "0.00001");
    check_float(1.5e-6, "1.5e-06", "1.5e-6");
    check_float(0.1, "0.1", "0.1");
    check_float(0.30000000000000004, "0.30000000000000004", "0.30000000000000004");
    check_float(5e-324, "5e-324", "5e-324");
    check_float(1.7976931348623157e308, "1.7976931348623157e+308", "1.7976931348623157e308");
    check_float((double)0.1f, "0.10000000149011612", "0.10000000149011612");
    check_float(1.2000000424450263e-05, "1.2000000424450263e-05", "0.000012000000424450263");
    check_float(9.313225746154785e-10, "9.313225746154785e-10", "9.313225746154785e-10");
    check_float(NAN, "NaN", "null");
    check_float(INFINITY, "Infinity", "null");
    check_float(-INFINITY, "-Infinity", "null");
}

/* String escapes: Python's ensure_ascii (surrogate pairs, \u007f) and orjson's raw UTF-8. */
static void test_strings(void **s) {
    (void)s;
    const char in[] = "q\"b\\/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80";
    cv_buf a = {0}, b = {0};
    assert_int_equal(cv_quix_put_pystr(&a, in, strlen(in)), 0);
    assert_string_equal(a.p,
                        "\"q\\\"b\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\\u00e9\\u2028\\ud83d\\ude00\"");
    assert_int_equal(cv_quix_put_orjson_str(&b, in, strlen(in)), 0);
    assert_string_equal(
        b.p, "\"q\\\"b\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\xc3\xa9\xe2\x80\xa8\xf0\x9f\x98\x80\"");
    cv_buf_free(&a), cv_buf_free(&b);
    const char *bad[] = {"\xc3", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(cv_quix_put_pystr(&a, bad[i], strlen(bad[i])), -1);
        assert_int_equal(cv_quix_put_orjson_str(&b, bad[i], strlen(bad[i])), -1);
        cv_buf_free(&a), cv_buf_free(&b);
    }
}

/* Length of a value, 0 for NULL. */
static size_t slen(const char *v) { return v ? strlen(v) : 0; }
#define V(n, t, oid, k, v)                                                                                   \
    { n, t, oid, k, v, slen(v) }

/* wal2json's value rules, re-printed by Python: the whole message of an insert. */
static void test_change_values(void **s) {
    (void)s;
    cv_quix_val c[] = {
        V("id", "integer", 23, 't', "-0"),
        V("n", "numeric", 1700, 't', "1.50"),
        V("nan", "numeric", 1700, 't', "NaN"),
        V("inf", "double precision", 701, 't', "-Infinity"),
        V("f", "double precision", 701, 't', "1e+20"),
        V("big", "numeric", 1700, 't', "123456789012345678901234567890"),
        V("b", "boolean", 16, 't', "t"),
        V("c", "boolean", 16, 't', "f"),
        V("by", "bytea", 17, 't', "\\x00ff"),
        V("t", "text", 25, 't', "caf\xc3\xa9"),
        V("nul", "text", 25, 'n', NULL),
        V("toast", "text", 25, 'u', NULL),
        V("d", "posint", 99999, 't', "7"),
        V("q", "\"Mood\"", 99998, 't', "ok"),
        V("a", "\"Mood\"[]", 99997, 't', "{ok}"),
    };
    cv_err e;
    cv_buf why = {0};
    char *m = cv_quix_change("insert", "public", "t", c, (int)(sizeof c / sizeof c[0]), NULL, 0, &e, &why);
    assert_non_null(m);
    assert_string_equal(
        m,
        "{\"kind\": \"insert\", \"schema\": \"public\", \"table\": \"t\", \"columnnames\": [\"id\", \"n\", "
        "\"nan\", "
        "\"inf\", \"f\", \"big\", \"b\", \"c\", \"by\", \"t\", \"nul\", \"d\", \"q\", \"a\"], "
        "\"columntypes\": "
        "[\"integer\", \"numeric\", \"numeric\", \"double precision\", \"double precision\", \"numeric\", "
        "\"boolean\", \"boolean\", \"bytea\", \"text\", \"text\", \"posint\", \"Mood\", \"\\\"Mood\\\"[]\"], "
        "\"columnvalues\": [0, 1.5, null, null, 1e+20, 123456789012345678901234567890, true, false, "
        "\"00ff\", "
        "\"caf\\u00e9\", null, \"7\", \"ok\", \"{ok}\"]}");
    free(m);
    /* update and delete: oldkeys without NULL or unchanged keys */
    cv_quix_val k[] = {V("id", "integer", 23, 't', "5"), V("x", "text", 25, 'n', NULL)};
    m = cv_quix_change("delete", "s", "t", NULL, 0, k, 2, &e, &why);
    assert_string_equal(
        m, "{\"kind\": \"delete\", \"schema\": \"s\", \"table\": \"t\", \"oldkeys\": {\"keynames\": "
           "[\"id\"], \"keytypes\": [\"integer\"], \"keyvalues\": [5]}}");
    free(m);
    m = cv_quix_change("update", "s", "t", k, 1, k, 1, &e, &why);
    assert_string_equal(
        m, "{\"kind\": \"update\", \"schema\": \"s\", \"table\": \"t\", \"columnnames\": [\"id\"], "
           "\"columntypes\": [\"integer\"], \"columnvalues\": [5], \"oldkeys\": {\"keynames\": "
           "[\"id\"], \"keytypes\": [\"integer\"], \"keyvalues\": [5]}}");
    free(m);
    /* what the tutorial cannot carry */
    cv_quix_val bad[] = {V("n", "numeric", 1700, 't', "1.2.3"), V("n", "numeric", 1700, 't', ".5"),
                         V("t", "text", 25, 't', "\xff"), V("x", "\"a\".b", 1, 't', "v")};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_null(cv_quix_change("insert", "s", "t", &bad[i], 1, NULL, 0, &e, &why));
        assert_int_not_equal(e, CV_OK);
        assert_non_null(strstr(why.p, "column"));
    }
    assert_null(cv_quix_change("truncate", "s", "t", NULL, 0, NULL, 0, &e, &why));
    assert_int_equal(e, CV_ERR_ARG);
    cv_buf_free(&why);
}

/* Parse errors name what is wrong. */
static void test_parse_errors(void **s) {
    (void)s;
    struct {
        const char *json, *says;
    } cases[] = {
        {"{\"kind\": \"insert\"", "not JSON"},
        {"[1]", "object"},
        {"{\"table\": \"t\"}", "kind"},
        {"{\"kind\": \"truncate\", \"table\": \"t\"}", "unknown kind"},
        {"{\"kind\": \"insert\"}", "table"},
        {"{\"kind\": \"insert\", \"table\": \"t\", \"columnvalues\": []}", "columnnames"},
        {"{\"kind\": \"insert\", \"table\": \"t\", \"columnnames\": [\"a\"], \"columnvalues\": []}",
         "lengths differ"},
        {"{\"kind\": \"insert\", \"table\": \"t\", \"columnnames\": [1], \"columnvalues\": [1]}", "name 0"},
        {"{\"kind\": \"delete\", \"table\": \"t\"}", "oldkeys"},
        {"{\"kind\": \"update\", \"table\": \"t\", \"columnnames\": [], \"columnvalues\": [], \"oldkeys\": "
         "{\"keynames\": [\"a\"], \"keyvalues\": [1, 2]}}",
         "oldkeys: lengths"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cv_quix_change_msg m;
        cv_buf why = {0};
        assert_int_equal(cv_quix_parse_change(cases[i].json, strlen(cases[i].json), &m, &why), CV_ERR_FORMAT);
        if (!strstr(why.p, cases[i].says))
            fail_msg("%s: '%s' lacks '%s'", cases[i].json, why.p, cases[i].says);
        cv_buf_free(&why);
    }
}

/* The embeddings message of an update (year made a string, duplicate names in place) and of
 * a delete, then parsed back. */
static void test_embeddings(void **s) {
    (void)s;
    const char *ch =
        "{\"kind\": \"update\", \"schema\": \"public\", \"table\": \"books\", \"columnnames\": [\"id\", "
        "\"kind\", \"year\", \"d\"], \"columntypes\": [], \"columnvalues\": [1, \"k\", 1965, "
        "\"caf\\u00e9\"], \"oldkeys\": {\"keynames\": [\"id\"], \"keyvalues\": [1]}}";
    cv_quix_change_msg m;
    cv_buf why = {0};
    cv_err e = cv_quix_parse_change(ch, strlen(ch), &m, &why);
    assert_int_equal(e, CV_ERR_FORMAT); /* columntypes of another length */
    ch = "{\"kind\": \"update\", \"schema\": \"public\", \"table\": \"books\", \"columnnames\": [\"id\", "
         "\"kind\", "
         "\"year\", \"d\"], \"columnvalues\": [1, \"k\", 1965, \"caf\\u00e9\"], \"oldkeys\": {\"keynames\": "
         "[\"id\"], "
         "\"keyvalues\": [1]}}";
    assert_int_equal(cv_quix_parse_change(ch, strlen(ch), &m, &why), CV_OK);
    float vec[3] = {0.1f, -1.5e-6f, 2.0f};
    char *out = cv_quix_embeddings(&m, vec, 3, 1700000000123456789LL, &e, &why);
    assert_string_equal(
        out, "{\"kind\":\"k\",\"table\":\"books\",\"id\":1,\"year\":\"1965\",\"d\":\"caf\xc3\xa9\","
             "\"embeddings\":[0.10000000149011612,-1.500000053056283e-6,2.0],"
             "\"Timestamp\":1700000000123456789}");
    cv_quix_embed_msg em;
    assert_int_equal(cv_quix_parse_embeddings(out, strlen(out), 3, &em, &why), CV_OK);
    assert_string_equal(em.kind, "k" /* the row's own "kind" column wins, as in the tutorial */);
    assert_int_equal(em.dim, 3);
    assert_true(em.vec[1] == vec[1]);
    assert_true(em.timestamp_ns == 1700000000123456789LL);
    assert_int_equal(json_object_size(em.row), 3);
    cv_quix_embed_msg_free(&em);
    assert_int_equal(cv_quix_parse_embeddings(out, strlen(out), 384, &em, &why), CV_ERR_MISMATCH);
    assert_non_null(strstr(why.p, "384"));
    free(out);
    cv_quix_change_msg_free(&m);

    ch = "{\"kind\": \"delete\", \"schema\": \"public\", \"table\": \"books\", \"oldkeys\": {\"keynames\": "
         "[\"id\"], "
         "\"keytypes\": [\"integer\"], \"keyvalues\": [7]}}";
    assert_int_equal(cv_quix_parse_change(ch, strlen(ch), &m, &why), CV_OK);
    out = cv_quix_embeddings(&m, NULL, 0, 5, &e, &why);
    assert_string_equal(out, "{\"kind\":\"delete\",\"table\":\"books\",\"id\":7,\"Timestamp\":5}");
    assert_int_equal(cv_quix_parse_embeddings(out, strlen(out), 384, &em, &why), CV_OK);
    assert_null(em.vec);
    assert_int_equal(json_integer_value(json_object_get(em.row, "id")), 7);
    cv_quix_embed_msg_free(&em);
    free(out);
    cv_quix_change_msg_free(&m);
    const char *bad = "{\"kind\":\"insert\",\"table\":\"books\",\"embeddings\":[1,\"x\"]}";
    assert_int_equal(cv_quix_parse_embeddings(bad, strlen(bad), 0, &em, &why), CV_ERR_FORMAT);
    assert_non_null(strstr(why.p, "[1]"));
    cv_buf_free(&why);
}

/* cdcvec/1 out of a worker: an unchunked message as before (no "chunked", one "vector"); a
 * chunking worker's message carries "chunked" and each chunk's number, hash, offsets and
 * vector, and decodes back exactly; a bad chunk is refused naming it. */
static void test_wire_chunks(void **s) {
    (void)s;
    char *kn[] = {"id", NULL}, *kt[] = {"integer", NULL}, *key[] = {"7", NULL};
    cv_wire_table t = {.schema = "public", .table = "docs", .nkeys = 1, .key_names = kn, .key_types = kt};
    float v1[2] = {0.5f, -1.25f}, v2[2] = {3.0f, 0.0f};
    cv_change c = {
        .key = key, .text_state = CV_TEXT_KNOWN, .payload = "{\"id\":7}", .vec = v1, .lsn = 0x16B3748};
    memset(c.vec_hash, 0xab, 32);
    cv_buf b = {0};
    cv_wire_encode(&b, &t, &c, "m", 2);
    assert_null(strstr(b.p, "chunk"));
    assert_non_null(strstr(b.p, ",\"model\":\"m\",\"dim\":2,\"text_hash\":\"abab"));
    assert_non_null(strstr(b.p, "\",\"vector\":\"AAAAPwAAoL8=\"}"));
    free(b.p), b = (cv_buf){0};
    cv_change_chunk ck[2] = {{.char_off = 0, .char_len = 10, .vec = v1},
                             {.char_off = 8, .char_len = 5, .vec = v2}};
    memset(ck[0].hash, 0x01, 32), memset(ck[1].hash, 0xfe, 32);
    c.vec = NULL, c.chunks = ck, c.nchunks = 2;
    t.chunked = 1;
    cv_wire_encode(&b, &t, &c, "m", 2);
    assert_non_null(strstr(b.p, ",\"chunked\":true"));
    assert_null(strstr(b.p, "\",\"vector\"")); /* no vector of the whole text */
    cv_wire_msg m;
    char err[256];
    assert_int_equal(cv_wire_decode(b.p, b.len, 2, &m, err, sizeof err), CV_OK);
    assert_int_equal(m.t.chunked, 1);
    assert_null(m.c.vec);
    assert_int_equal(m.c.nchunks, 2);
    assert_int_equal(m.c.text_state, CV_TEXT_KNOWN);
    assert_memory_equal(m.c.vec_hash, c.vec_hash, 32);
    for (int i = 0; i < 2; i++) {
        assert_memory_equal(m.c.chunks[i].hash, ck[i].hash, 32);
        assert_int_equal(m.c.chunks[i].char_off, ck[i].char_off);
        assert_int_equal(m.c.chunks[i].char_len, ck[i].char_len);
        assert_memory_equal(m.c.chunks[i].vec, ck[i].vec, sizeof v1);
    }
    cv_wire_msg_free(&m);
    char *bad = strdup(b.p), *n1 = strstr(bad, "\"n\":1");
    n1[4] = '5'; /* chunks out of order */
    assert_int_equal(cv_wire_decode(bad, strlen(bad), 2, &m, err, sizeof err), CV_ERR_FORMAT);
    assert_non_null(strstr(err, "\"chunks\"[1]"));
    free(bad), free(b.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_floats),        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_change_values), cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_embeddings),    cmocka_unit_test(test_wire_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
