/* test_pgcommon_names.c: cv_names, part of test_pgcommon. Fixed names (pinned: a name that
 * changes between versions orphans a slot or a table), then properties over random tables. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../pg/cv_names.h"
#include "test_util.h"

static char *slot(const char *s, const char *t) {
    cv_buf b = {0};
    cv_name_slot(s, t, &b);
    assert_false(b.oom);
    return b.p;
}

static char *sink(const char *s, const char *t) {
    cv_buf b = {0};
    cv_name_sink_table(s, t, &b);
    assert_false(b.oom);
    return b.p;
}

static char *idx(const char *t, const char *suffix) {
    cv_buf b = {0};
    cv_name_index(t, suffix, &b);
    assert_false(b.oom);
    return b.p;
}

static int slot_charset_ok(const char *n) {
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) return 0;
    return 1;
}

/* Valid UTF-8 (no truncated or stray sequences; overlongs are not the point here). */
static int utf8_ok(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80             ? 0
                : (*p & 0xE0) == 0xC0 ? 1
                : (*p & 0xF0) == 0xE0 ? 2
                : (*p & 0xF8) == 0xF0 ? 3
                                      : -1;
        if (n < 0) return 0;
        p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xC0) != 0x80) return 0;
    }
    return 1;
}

static void test_fixed(void **state) {
    (void)state;
    char *n;
    /* SHA-256("public\0books") starts c883cb8b (python3 hashlib) */
    assert_string_equal(n = slot("public", "books"), "cdcvec_public_books_c883cb8b");
    free(n);
    assert_string_equal(n = slot("public", "Notes"), "cdcvec_public_notes_afe7aabe");
    free(n);
    assert_string_equal(n = slot("public", "Votes"), "cdcvec_public_votes_01ce523f");
    free(n);
    assert_string_equal(n = slot("a_b", "c"), "cdcvec_a_b_c_0c1d18f5");
    free(n);
    assert_string_equal(n = slot("a", "b_c"), "cdcvec_a_b_c_662f0bbb");
    free(n);
    char *a = slot("public", "Notes"), *b = slot("public", "notes");
    assert_string_not_equal(a, b); /* same readable part, different hash */
    free(a), free(b);
    a = slot("My Schema", "Ünïcode-Table.1");
    assert_true(strncmp(a, "cdcvec_my_schema_", 17) == 0 && slot_charset_ok(a));
    free(a);

    assert_string_equal(n = sink("public", "books"), "public_books"); /* as before */
    free(n);
    assert_string_equal(n = sink("Public", "Mixed Case \"q\""), "Public_Mixed Case \"q\"");
    free(n);
    assert_string_equal(n = idx("public_books", "_embedding_hnsw"), "public_books_embedding_hnsw");
    free(n);

    /* two 60-byte names that differ in their last byte */
    char t1[61], t2[61];
    memset(t1, 'n', 60);
    t1[60] = 0;
    memcpy(t2, t1, 61);
    t2[59] = 'm';
    a = slot("public", t1), b = slot("public", t2);
    assert_true(strlen(a) <= CV_NAME_MAX && strlen(b) <= CV_NAME_MAX);
    assert_string_not_equal(a, b);
    free(a), free(b);
    a = sink("public", t1), b = sink("public", t2);
    assert_int_equal(strlen(a), CV_NAME_MAX);
    assert_true(strncmp(a, "public_nnnn", 11) == 0);
    assert_string_not_equal(a, b);
    char *ia = idx(a, "_embedding_hnsw"), *ib = idx(b, "_embedding_hnsw");
    assert_true(strlen(ia) <= CV_NAME_MAX && strlen(ib) <= CV_NAME_MAX);
    assert_non_null(strstr(ia, "_embedding_hnsw_"));
    assert_string_not_equal(ia, ib);
    free(ia), free(ib), free(a), free(b);

    /* a long suffix is cut too, the result still fits */
    a = idx("t", "_a_very_long_suffix_that_is_longer_than_forty_bytes_and_then_some");
    assert_true(strlen(a) <= CV_NAME_MAX);
    free(a);
    /* 63 bytes exactly is kept; 64 is hashed */
    char s31[32], t31[32], t32[33];
    memset(s31, 's', 31), s31[31] = 0;
    memset(t31, 't', 31), t31[31] = 0;
    memset(t32, 't', 32), t32[32] = 0;
    a = sink(s31, t31);
    assert_int_equal(strlen(a), 63);
    assert_null(strchr(a + 32, '_'));
    free(a);
    a = sink(s31, t32);
    assert_int_equal(strlen(a), 63);
    assert_int_equal(a[54], '_');
    free(a);
}

/* Multi-byte characters on every cut position: the cut never splits one. */
static void test_utf8_cut(void **state) {
    (void)state;
    static const char *const chars[] = {"é", "日", "😀"};
    for (int c = 0; c < 3; c++)
        for (int pad = 0; pad < 4; pad++) {
            char t[400] = {0};
            memset(t, 'x', (size_t)pad);
            while (strlen(t) < 120)
                strcat(t, chars[c]);
            char *n = sink("s", t);
            assert_true(strlen(n) <= CV_NAME_MAX);
            assert_true(utf8_ok(n));
            char *i = idx(n, "_embedding_hnsw");
            assert_true(strlen(i) <= CV_NAME_MAX && utf8_ok(i));
            char *i2 = idx(t, "_x"); /* sink table name itself long */
            assert_true(strlen(i2) <= CV_NAME_MAX && utf8_ok(i2));
            free(n), free(i), free(i2);
        }
}

/* A random identifier: ASCII of all kinds and whole UTF-8 characters, 0-120 bytes. */
static void rand_ident(char *out, size_t cap, uint64_t *seed) {
    static const char *const pieces[] = {"a", "b", "z", "A", "Q",    "0", "9", "_", "_", ".", "\"", " ",
                                         "-", "$", "é", "Ü", "日本", "😀", "n", "o", "t", "e", "s"};
    size_t want = tu_rand(seed) % 121, n = 0;
    out[0] = 0;
    while (n < want) {
        const char *p = pieces[tu_rand(seed) % (sizeof pieces / sizeof pieces[0])];
        size_t l = strlen(p);
        if (n + l >= cap) break;
        memcpy(out + n, p, l + 1);
        n += l;
    }
}

typedef struct {
    char *name, *schema, *table;
} named;

static int cmp_named(const void *a, const void *b) {
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

#define NFUZZ 4000

static void test_fuzz(void **state) {
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    named *slots = calloc(NFUZZ, sizeof *slots), *sinks = calloc(NFUZZ, sizeof *sinks);
    named *idxs = calloc(NFUZZ, sizeof *idxs);
    for (int i = 0; i < NFUZZ; i++) {
        char s[200], t[200];
        rand_ident(s, sizeof s, &seed);
        rand_ident(t, sizeof t, &seed);
        if (i % 5 == 0) { /* many pairs that only differ late in long names */
            memset(t, 'k', 70);
            snprintf(t + 70, 16, "%u", (unsigned)i);
        }
        char *a = slot(s, t), *b = slot(s, t);
        assert_string_equal(a, b); /* deterministic */
        if (strlen(a) > CV_NAME_MAX || !slot_charset_ok(a) || strncmp(a, "cdcvec_", 7) != 0)
            fail_msg("slot name %s for \"%s\".\"%s\"", a, s, t);
        free(b);
        char *k = sink(s, t), *k2 = sink(s, t);
        assert_string_equal(k, k2);
        free(k2);
        if (strlen(k) > CV_NAME_MAX || !utf8_ok(k)) fail_msg("sink table %s for \"%s\".\"%s\"", k, s, t);
        if (strlen(s) + 1 + strlen(t) <= CV_NAME_MAX) { /* fits: exactly as before */
            char legacy[400];
            snprintf(legacy, sizeof legacy, "%s_%s", s, t);
            assert_string_equal(k, legacy);
        }
        char *x = idx(k, "_embedding_hnsw");
        if (strlen(x) > CV_NAME_MAX || !utf8_ok(x)) fail_msg("index %s for %s", x, k);
        slots[i] = (named){a, strdup(s), strdup(t)};
        sinks[i] = (named){k, strdup(s), strdup(t)};
        idxs[i] = (named){x, strdup(k), NULL};
    }
    /* no collisions: equal names only for equal inputs */
    qsort(slots, NFUZZ, sizeof *slots, cmp_named);
    qsort(sinks, NFUZZ, sizeof *sinks, cmp_named);
    qsort(idxs, NFUZZ, sizeof *idxs, cmp_named);
    int distinct_slots = 1;
    for (int i = 1; i < NFUZZ; i++) {
        if (!strcmp(slots[i].name, slots[i - 1].name)) {
            if (strcmp(slots[i].schema, slots[i - 1].schema) || strcmp(slots[i].table, slots[i - 1].table))
                fail_msg("slot collision %s", slots[i].name);
        } else {
            distinct_slots++;
        }
        /* sink tables: the legacy schema_table form is kept as is, so "a_b"."c" and "a"."b_c"
         * share a name by design; beyond that, no collisions */
        if (!strcmp(sinks[i].name, sinks[i - 1].name)) {
            char l1[400], l2[400];
            snprintf(l1, sizeof l1, "%s_%s", sinks[i].schema, sinks[i].table);
            snprintf(l2, sizeof l2, "%s_%s", sinks[i - 1].schema, sinks[i - 1].table);
            if (strcmp(l1, l2) || strlen(l1) > CV_NAME_MAX)
                fail_msg("sink table collision %s", sinks[i].name);
        }
        if (!strcmp(idxs[i].name, idxs[i - 1].name) && strcmp(idxs[i].schema, idxs[i - 1].schema))
            fail_msg("index collision %s", idxs[i].name);
    }
    assert_true(distinct_slots > NFUZZ * 9 / 10); /* the generator does produce distinct tables */
    for (int i = 0; i < NFUZZ; i++) {
        free(slots[i].name), free(slots[i].schema), free(slots[i].table);
        free(sinks[i].name), free(sinks[i].schema), free(sinks[i].table);
        free(idxs[i].name), free(idxs[i].schema);
    }
    free(slots), free(sinks), free(idxs);
}

static char *slot_in(const char *db, const char *s, const char *t, const char *store, int capture) {
    cv_buf b = {0};
    cv_name_slot_in(db, s, t, store, capture, &b);
    assert_false(b.oom);
    assert_true(b.len <= CV_NAME_MAX);
    assert_true(slot_charset_ok(b.p));
    return b.p;
}

/* Slots are cluster-wide: the default name differs per database, per store, sync or capture;
 * pinned, since a name that changes between versions orphans a slot holding WAL. */
static void test_slot_in(void **state) {
    (void)state;
    char *a = slot_in("shop_a", "public", "books", "pgvector:", 0),
         *b = slot_in("shop_b", "public", "books", "pgvector:", 0),
         *q = slot_in("shop_a", "public", "books", "qdrant:http://h:6333/books", 0),
         *c = slot_in("shop_a", "public", "books", "kafka:kafka://h:9092/cdc", 1),
         *l = slot_in("Shop-A", "public", "books", "pgvector:", 0),
         *x = slot_in("a_very_long_database_name_indeed_it_is", "a_long_schema_name_too", "and_a_long_table",
                      "", 0);
    assert_string_equal(a, "cdcvec_shop_a_public_books_dd7dbd8f");
    assert_true(strncmp(b, "cdcvec_shop_b_public_books_", 27) == 0);
    assert_true(strcmp(a + 27, b + 27) != 0);
    assert_true(strncmp(q, "cdcvec_shop_a_public_books_", 27) == 0 && strcmp(q, a) != 0);
    assert_true(strncmp(c, "cdcvec_capture_shop_a_public_books_", 35) == 0);
    assert_true(strncmp(l, "cdcvec_shop_a_public_books_", 27) == 0 &&
                strcmp(l, a) != 0); /* the hash has the exact name */
    assert_int_equal(strlen(x), CV_NAME_MAX);
    free(a), free(b), free(q), free(c), free(l), free(x);
}

int run_names_tests(void);
int run_names_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed),
        cmocka_unit_test(test_utf8_cut),
        cmocka_unit_test(test_fuzz),
        cmocka_unit_test(test_slot_in),
    };
    return cmocka_run_group_tests_name("cv_names", tests, NULL, NULL);
}
