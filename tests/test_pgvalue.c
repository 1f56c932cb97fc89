/* test_pgvalue.c: cv_pgvalue_json() by hand, one group per rule of pgvalue.h, with the
 * cv_pgtype filled by hand. The expected texts are what PostgreSQL 15's to_jsonb(v)::text
 * prints (checked against the server by test_pgvalue_live.sh). */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../ingest/pgvalue.h"

/* oids and categories as in pg_type: scalars (a domain: oid != base) and arrays */
#define S(o, b, cat)                                                                                         \
    { .oid = o, .base = b, .category = cat }
#define A(o, e, ecat, dl)                                                                                    \
    { .oid = o, .base = o, .category = 'A', .elem = e, .elem_category = ecat, .delim = dl }
static const cv_pgtype INT4 = S(23, 23, 'N'), INT2 = S(21, 21, 'N'), INT8 = S(20, 20, 'N'),
                       FLOAT4 = S(700, 700, 'N'), FLOAT8 = S(701, 701, 'N'), NUMERIC = S(1700, 1700, 'N'),
                       BOOL = S(16, 16, 'B'), JSON = S(114, 114, 'U'), JSONB = S(3802, 3802, 'U'),
                       TEXT = S(25, 25, 'S'), DATE = S(1082, 1082, 'D'), TS = S(1114, 1114, 'D'),
                       TSTZ = S(1184, 1184, 'D'), TIME = S(1083, 1083, 'D'), TIMETZ = S(1266, 1266, 'D'),
                       INTERVAL = S(1186, 1186, 'T'), MONEY = S(790, 790, 'N'), OID = S(26, 26, 'N'),
                       UUID = S(2950, 2950, 'U'), BYTEA = S(17, 17, 'U'),
                       PRICE = S(16500, 1700, 'N') /* a domain over numeric */,
                       INT4ARR = A(1007, 23, 'N', ','), TEXTARR = A(1009, 25, 'S', ','),
                       BOOLARR = A(1000, 16, 'B', ','), NUMARR = A(1231, 1700, 'N', ','),
                       JSONBARR = A(3807, 3802, 'U', ','), DATEARR = A(1182, 1082, 'D', ','),
                       TSARR = A(1115, 1114, 'D', ','), BOXARR = A(1020, 603, 'G', ';'),
                       PRICEARR = A(16501, 1700, 'N', ','), INT2VEC = A(22, 21, 'N', ',');

/* Appends the JSON of in to a buffer holding "<<" and checks it against want; want NULL:
 * CV_ERR_FORMAT and the buffer untouched. */
static void check_(const cv_pgtype *t, const char *in, size_t n, const char *want, int line) {
    cv_buf b = {0};
    cv_buf_puts(&b, "<<");
    cv_err e = cv_pgvalue_json(&b, t, in, n);
    if (want ? e != CV_OK || strcmp(b.p + 2, want) != 0 : e != CV_ERR_FORMAT || strcmp(b.p, "<<") != 0) {
        fprintf(stderr, "line %d: input [%.*s]\n  got  (%s) [%s]\n  want [%s]\n", line, (int)n, in,
                cv_strerror(e), b.p, want ? want : "<< and CV_ERR_FORMAT");
        fail();
    }
    cv_buf_free(&b);
}
#define check(t, in, want) check_(&(t), (in), strlen(in), (want), __LINE__)

/* "1" followed by n zeros, or "0." (n-1 zeros) "1" for n < 0 */
static char *pow10_text(int n) {
    size_t len = (size_t)(n < 0 ? -n : n) + 3;
    char *s = malloc(len);
    if (n >= 0) {
        s[0] = '1';
        memset(s + 1, '0', (size_t)n);
        s[n + 1] = 0;
    } else {
        memcpy(s, "0.", 2);
        memset(s + 2, '0', (size_t)(-n - 1));
        strcpy(s + 1 - n, "1");
    }
    return s;
}

static void test_json_string(void **state) {
    (void)state;
    cv_buf b = {0};
    const char in[] = "a\"b\\c/\b\f\n\r\t\x01\x1f\x7f \xc3\xa9\xe2\x98\x83\0z";
    cv_json_string(&b, in, sizeof in - 1);
    assert_string_equal(b.p,
                        "\"a\\\"b\\\\c/\\b\\f\\n\\r\\t\\u0001\\u001f\x7f \xc3\xa9\xe2\x98\x83\\u0000z\"");
    cv_buf_free(&b);
    cv_json_string(&b, "", 0);
    assert_string_equal(b.p, "\"\"");
    cv_buf_free(&b);
    check(TEXT, "say \"hi\"\n", "\"say \\\"hi\\\"\\n\"");
}

static void test_numbers(void **state) {
    (void)state;
    check(NUMERIC, "19.99", "19.99");
    check(NUMERIC, "123456789012345678.901234567890", "123456789012345678.901234567890");
    check(NUMERIC, "12345678901234567890123456789012345678", "12345678901234567890123456789012345678");
    check(NUMERIC, "-99999999999999999999999999999999999999", "-99999999999999999999999999999999999999");
    check(NUMERIC, "0.000", "0.000");
    check(NUMERIC, "-0.000", "0.000"); /* numeric has no negative zero */
    check(NUMERIC, "12345.678900", "12345.678900");
    check(NUMERIC, "NaN", "\"NaN\"");
    check(NUMERIC, "Infinity", "\"Infinity\"");
    check(NUMERIC, "-Infinity", "\"-Infinity\"");
    check(PRICE, "19.99", "19.99"); /* domains are their base type */
    check(INT2, "-32768", "-32768");
    check(INT4, "2147483647", "2147483647");
    check(INT8, "-9223372036854775808", "-9223372036854775808");
    check(INT4, "0", "0");
    /* floats: the shortest text, then numeric_in: no exponent, scale = fraction digits - exponent */
    check(FLOAT8, "0.1", "0.1");
    check(FLOAT8, "-0", "0");
    check(FLOAT4, "-0", "0");
    check(FLOAT8, "1e-05", "0.00001");
    check(FLOAT8, "-1.5e-07", "-0.00000015");
    check(FLOAT8, "1.2345678901234568e-05", "0.000012345678901234568");
    check(FLOAT8, "123456.789", "123456.789");
    check(FLOAT8, "1.25e+02", "125");
    check(FLOAT8, "1.2345e+2", "123.45");
    check(FLOAT4, "3.4028235e+38", "340282350000000000000000000000000000000");
    check(FLOAT8, "NaN", "\"NaN\"");
    check(FLOAT8, "Infinity", "\"Infinity\"");
    check(FLOAT4, "-Infinity", "\"-Infinity\"");
    char *big = pow10_text(300), *tiny = pow10_text(-300), *in;
    check(FLOAT8, "1e+300", big);
    check(FLOAT8, "1e-300", tiny);
    in = pow10_text(-324);
    in[strlen(in) - 1] = '5';
    check(FLOAT8, "5e-324", in);
    free(big), free(tiny), free(in);
    /* what numeric_in takes */
    check(NUMERIC, " +1.5 ", "1.5");
    check(NUMERIC, ".5", "0.5");
    check(NUMERIC, "5.", "5");
    check(NUMERIC, "0001.0", "1.0");
    check(NUMERIC, "0e9", "0");
    check(NUMERIC, "-0e-3", "0.000");
    const char *bad[] = {"",    " ",   "abc", "1e", "1e+",  "1.2.3",    "--1",
                         "+-1", "1 2", ".",   "e5", "0x10", "1e131072", "1e-16384"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        check(NUMERIC, bad[i], NULL);
    check(INT4, "12a", NULL);
}

static void test_bool(void **state) {
    (void)state;
    check(BOOL, "t", "true");
    check(BOOL, "f", "false");
    check(BOOL, "true", "true"); /* bool::text */
    check(BOOL, "false", "false");
    check(BOOL, "x", NULL);
    check(BOOL, "", NULL);
    check(BOOL, "tr", NULL);
    check(BOOL, "falsey", NULL);
}

static void test_json(void **state) {
    (void)state;
    /* jsonb's form: keys by length then bytes, the last duplicate wins, ", " and ": " */
    check(JSON,
          " {\"b\": 1,   \"a\" :[1, 2.50, -0, 1E3, 1e-2, -0.0],\n \"b\":  {\"z\": 1, \"y\": null, \"\": "
          "true}} ",
          "{\"a\": [1, 2.50, 0, 1000, 0.01, 0.0], \"b\": {\"\": true, \"y\": null, \"z\": 1}}");
    check(JSON, "{\"ab\":1,\"b\":2,\"a\":3,\"B\":4}", "{\"B\": 4, \"a\": 3, \"b\": 2, \"ab\": 1}");
    check(JSON, "{\"a\":1,\"a\":{\"b\":1}}", "{\"a\": {\"b\": 1}}");
    check(JSON, "{\"k\":{\"x\":1,\"x\":2},\"k\":3}", "{\"k\": 3}");
    /* strings: escapes decoded, then written as PostgreSQL does */
    check(JSON, "\"\\u00e9\\u001F\\/\\\"\\\\\\b\\f\\n\\r\\t\"",
          "\"\xc3\xa9\\u001f/\\\"\\\\\\b\\f\\n\\r\\t\"");
    check(JSON, "\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"");
    check(JSON, "\"\\u0041\\u07ff\\uffff\"", "\"A\xdf\xbf\xef\xbf\xbf\"");
    check(JSON, "\"\xc3\xa9 raw\"", "\"\xc3\xa9 raw\"");
    check(JSON, "{\"\\u0061\":1,\"a\":2}", "{\"a\": 2}");
    /* scalars and empty containers */
    check(JSON, "12", "12");
    check(JSON, "1e2", "100");
    check(JSON, "-0.10", "-0.10");
    check(JSON, "true", "true");
    check(JSON, "false", "false");
    check(JSON, "null", "null");
    check(JSON, "\"s\"", "\"s\"");
    check(JSON, "[]", "[]");
    check(JSON, "{}", "{}");
    check(JSON, "[ [ ] , { } ,[1,[2]]]", "[[], {}, [1, [2]]]");
    check(JSONB, "{\"e\": {}, \"k\": [true, false, null], \"n\": 1.0, \"s\": \"x\\ty\"}",
          "{\"e\": {}, \"k\": [true, false, null], \"n\": 1.0, \"s\": \"x\\ty\"}");
    /* what PostgreSQL refuses */
    const char *bad[] = {"",
                         " ",
                         "{",
                         "[1,]",
                         "{\"a\"}",
                         "{\"a\":}",
                         "{a:1}",
                         "01",
                         "1.",
                         ".5",
                         "+1",
                         "1e",
                         "tru",
                         "truex",
                         "nul",
                         "[1] x",
                         "\"\\u0000\"",
                         "\"\\ud83d\"",
                         "\"\\ude00\"",
                         "\"\\ud83dx\"",
                         "\"\\x\"",
                         "\"\\u12\"",
                         "\"a\nb\"",
                         "\"open",
                         "[1 2]",
                         "{\"a\":1 \"b\":2}",
                         "NaN",
                         "Infinity",
                         "'s'",
                         "{\"a\":1,}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        check(JSON, bad[i], NULL);
}

static void test_json_depth(void **state) {
    (void)state;
    size_t d = 5000;
    char *in = malloc(2 * d + 1), *want = malloc(2 * d + 1);
    memset(in, '[', d), memset(in + d, ']', d), in[2 * d] = 0;
    memcpy(want, in, 2 * d + 1);
    check(JSONB, in, want);
    free(in), free(want);
    d = 20000;
    in = malloc(2 * d + 1);
    memset(in, '[', d), memset(in + d, ']', d), in[2 * d] = 0;
    check(JSONB, in, NULL); /* past the nesting limit: refused, not truncated */
    free(in);
}

static void test_arrays(void **state) {
    (void)state;
    check(INT4ARR, "{1,2,3}", "[1, 2, 3]");
    check(INT4ARR, "{}", "[]");
    check(INT4ARR, "{{1,2},{3,NULL}}", "[[1, 2], [3, null]]");
    check(INT4ARR, "{{{1,2},{3,4}},{{5,6},{7,8}}}", "[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]");
    check(INT4ARR, "[0:2]={1,2,3}", "[1, 2, 3]"); /* bounds dropped */
    check(INT4ARR, "[-3:-2][1:2]={{1,2},{3,4}}", "[[1, 2], [3, 4]]");
    check(INT4ARR, "[2]={1,2}", "[1, 2]");
    check(INT4ARR, " { 1 , 2 } ", "[1, 2]");
    check(INT4ARR, "{null,NuLL}", "[null, null]");
    check(TEXTARR,
          "{\"a\\\"b\",\"c,d\",\"e\\\\f\",\"\",\"NULL\",NULL,\" sp \",\xc3\xbcn,\"{x}\",\"tab\tx\",a b}",
          "[\"a\\\"b\", \"c,d\", \"e\\\\f\", \"\", \"NULL\", null, \" sp \", \"\xc3\xbcn\", \"{x}\", "
          "\"tab\\tx\", \"a b\"]");
    check(TEXTARR, "{a\\,b,c\\ ,\\NULL}", "[\"a,b\", \"c \", \"NULL\"]"); /* array_in's escapes */
    check(TEXTARR, "[-3:-2][1:2]={{a,\"b c\"},{NULL,\"\"}}", "[[\"a\", \"b c\"], [null, \"\"]]");
    check(BOOLARR, "{t,f,NULL}", "[true, false, null]");
    check(NUMARR, "{19.99,NaN,-0.000,Infinity,1e-5}", "[19.99, \"NaN\", 0.000, \"Infinity\", 0.00001]");
    check(PRICEARR, "{1.50,NULL}", "[1.50, null]");
    check(JSONBARR, "{\"{\\\"a\\\": 1}\",\"[1, 2]\",null,\"\\\"s\\\"\",NULL}",
          "[{\"a\": 1}, [1, 2], null, \"s\", null]");
    check(DATEARR, "{2024-01-02,infinity,\"0044-03-15 BC\"}",
          "[\"2024-01-02\", \"infinity\", \"0044-03-15 BC\"]");
    check(TSARR, "{\"2024-01-02 03:04:05.5\",infinity}", "[\"2024-01-02T03:04:05.5\", \"infinity\"]");
    check(BOXARR, "{(1,1),(0,0);(3,3),(2,2)}", "[\"(1,1),(0,0)\", \"(3,3),(2,2)\"]"); /* ';' delimits */
    check(INT2VEC, "1 -2 3", "[1, -2, 3]");
    check(INT2VEC, "", "[]");
    const char *bad[] = {"",
                         "1,2",
                         "{1,2",
                         "{1,2}}",
                         "{1,,2}",
                         "{,}",
                         "{1,}",
                         "{{1,2},{3}}",
                         "{{1},2}",
                         "{1,{2}}",
                         "{{}}",
                         "{1}x",
                         "{\"a}",
                         "{a\"b}",
                         "{a{b}",
                         "[0:1]={1,2,3}",
                         "[1:2]={{1,2}}",
                         "[1:2]{1,2}",
                         "[2:1]={}",
                         "[a]={1}",
                         "{{{{{{{1}}}}}}}",
                         "{1,x}",
                         "{1\\",
                         "[1:2]={}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        check(INT4ARR, bad[i], NULL);
    check(TEXTARR, "{{{{{{a}}}}}}", "[[[[[[\"a\"]]]]]]");
    check(BOOLARR, "{t,maybe}", NULL); /* elements are checked by their type */
}

static void test_datetime(void **state) {
    (void)state;
    check(DATE, "2024-01-02", "\"2024-01-02\"");
    check(DATE, "0044-03-15 BC", "\"0044-03-15 BC\"");
    check(DATE, "infinity", "\"infinity\"");
    check(DATE, "-infinity", "\"-infinity\"");
    check(TS, "2024-01-02 03:04:05", "\"2024-01-02T03:04:05\"");
    check(TS, "2024-01-02 03:04:05.123456", "\"2024-01-02T03:04:05.123456\"");
    check(TS, "0044-03-15 12:00:00 BC", "\"0044-03-15T12:00:00 BC\"");
    check(TS, "12345-01-01 00:00:00", "\"12345-01-01T00:00:00\"");
    check(TS, "infinity", "\"infinity\"");
    check(TS, "-infinity", "\"-infinity\"");
    check(TSTZ, "2024-01-02 03:04:05+00", "\"2024-01-02T03:04:05+00:00\"");
    check(TSTZ, "2024-01-02 03:04:05.5-08", "\"2024-01-02T03:04:05.5-08:00\"");
    check(TSTZ, "2024-01-02 03:04:05+05:30", "\"2024-01-02T03:04:05+05:30\"");
    check(TSTZ, "1850-01-02 03:04:05+00:53:28", "\"1850-01-02T03:04:05+00:53:28\"");
    check(TSTZ, "0044-03-15 12:00:00+00 BC", "\"0044-03-15T12:00:00+00:00 BC\"");
    check(TSTZ, "infinity", "\"infinity\"");
    /* not date, timestamp or timestamptz: the text as is */
    check(TIME, "03:04:05", "\"03:04:05\"");
    check(TIME, "24:00:00", "\"24:00:00\"");
    check(TIMETZ, "03:04:05+05:30", "\"03:04:05+05:30\"");
    check(TIMETZ, "03:04:05-08", "\"03:04:05-08\"");
    check(INTERVAL, "1 year 2 mons -3 days 04:05:06.5", "\"1 year 2 mons -3 days 04:05:06.5\"");
    /* another DateStyle than ISO: refused rather than written wrong */
    check(DATE, "01/02/2024", NULL);
    check(TS, "Tue Jan 02 03:04:05 2024", NULL);
    check(TSTZ, "2024-01-02 03:04:05", NULL);
}

static void test_strings(void **state) {
    (void)state;
    check(MONEY, "$1,234.50", "\"$1,234.50\""); /* category N, yet not a number for to_jsonb */
    check(OID, "4294967295", "\"4294967295\"");
    check(UUID, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"");
    check(BYTEA, "\\x00ff", "\"\\\\x00ff\"");
    check(TEXT, "", "\"\"");
    cv_pgtype hstore = {
        .oid = 16600, .base = 16600, .category = 'U', .jsoncast = 1}; /* known difference: written as text */
    check(hstore, "\"a\"=>\"1\"", "\"\\\"a\\\"=>\\\"1\\\"\"");
}

static void test_composite(void **state) {
    (void)state;
    cv_pgfield f[] = {{"zz", INT4}, {"a", TEXT}, {"b c", NUMERIC}, {"d", DATEARR}};
    cv_pgtype comp = {.oid = 16700, .base = 16700, .category = 'C', .nfields = 4, .fields = f};
    check(comp, "(1,\"x y,\"\"\\\\\",19.99,\"{2024-01-01,infinity}\")",
          "{\"a\": \"x y,\\\"\\\\\", \"d\": [\"2024-01-01\", \"infinity\"], \"zz\": 1, \"b c\": 19.99}");
    check(comp, "(,\"\",,)", "{\"a\": \"\", \"d\": null, \"zz\": null, \"b c\": null}");
    check(comp, "(1,a\\,b\"c,d\"e,1,{})", "{\"a\": \"a,bc,de\", \"d\": [], \"zz\": 1, \"b c\": 1}");
    cv_pgfield g[] = {{"in", comp}, {"t", TS}, {"j", JSONB}};
    cv_pgtype outer = {.oid = 16701, .base = 16701, .category = 'C', .nfields = 3, .fields = g};
    check(outer, "(\"(1,q,2,{})\",\"2024-01-01 00:00:00\",\"{\"\"b\"\": 1, \"\"a\"\": 2}\")",
          "{\"j\": {\"a\": 2, \"b\": 1}, \"t\": \"2024-01-01T00:00:00\", \"in\": {\"a\": \"q\", \"d\": [], "
          "\"zz\": 1, "
          "\"b c\": 2}}");
    cv_pgtype arr = A(16702, 16700, 'C', ',');
    arr.nfields = 4, arr.fields = f;
    check(arr, "{\"(2,\\\"(\\\",3,{})\",NULL}", "[{\"a\": \"(\", \"d\": [], \"zz\": 2, \"b c\": 3}, null]");
    cv_pgtype none = S(16703, 16703, 'C');
    check(none, "()", "{}");
    const char *bad[] = {"",          "1,2,3,4",     "(1,a,2)",    "(1,a,2,{},5)",
                         "(1,a,2,{}", "(1,a,2,{})x", "(x,a,2,{})", "(1,\"a,2,{})",
                         "(1,a,2,{1)"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        check(comp, bad[i], NULL);
}

/* One JSON type per column type: no value of a number column is a string except NaN/Infinity. */
static void test_type_by_column(void **state) {
    (void)state;
    const cv_pgtype *num[] = {&INT2, &INT4, &INT8, &FLOAT4, &FLOAT8, &NUMERIC};
    const char *vals[] = {"0",
                          "-0",
                          "1",
                          "-1",
                          "12345678901234567890123456789012345678",
                          "1e-300",
                          "1e+308",
                          "0.1",
                          "3.4028235e+38",
                          "-9223372036854775808",
                          "5e-324",
                          "19.99"};
    for (size_t i = 0; i < sizeof num / sizeof *num; i++)
        for (size_t k = 0; k < sizeof vals / sizeof *vals; k++) {
            cv_buf b = {0};
            assert_int_equal(cv_pgvalue_json(&b, num[i], vals[k], strlen(vals[k])), CV_OK);
            assert_true(b.p[0] == '-' || (b.p[0] >= '0' && b.p[0] <= '9'));
            cv_buf_free(&b);
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_string), cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_bool),        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_depth),  cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_datetime),    cmocka_unit_test(test_strings),
        cmocka_unit_test(test_composite),   cmocka_unit_test(test_type_by_column),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
