/* test_pgcommon.c: cv_pg (failure classification on SQLSTATEs and on the exact libpq
 * messages observed from PostgreSQL 15 / libpq 15.20, one-line messages, identifiers,
 * notices), cv_names (fixed names, and length, charset, determinism, UTF-8 and collision
 * properties over thousands of random tables) and cv_keytext (fixed cases, errors with their
 * byte offsets, and a format/parse round trip over random byte strings). No server needed:
 * tests/test_pgerr_live.sh drives the classifier against real ones. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "../pg/cv_keytext.h"
#include "../common/cv_log.h"
#include "../pg/cv_names.h"
#include "../pg/cv_pg.h"
#include "test_util.h"

static const char *const KINDS[] = {"connection", "auth", "privilege", "missing_object", "config",
                                    "resources",  "data", "conflict",  "server"};

/* Every fault: a known kind, a fix exactly when permanent, no '%' in the fix. */
static void check_fault(const cv_pg_fault *f, const char *what) {
    int known = 0;
    for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++)
        known |= f->kind && strcmp(f->kind, KINDS[i]) == 0;
    if (!known) fail_msg("%s: kind %s", what, f->kind ? f->kind : "(null)");
    if (f->retriable && f->fix) fail_msg("%s: retriable with a fix", what);
    if (!f->retriable && (!f->fix || !*f->fix)) fail_msg("%s: permanent without a fix", what);
    if (f->fix && strchr(f->fix, '%')) fail_msg("%s: '%%' in the fix", what);
}

typedef struct {
    const char *state, *msg;
    int retriable;
    const char *kind, *fix_has; /* fix_has: a word the fix must contain, or NULL */
} state_case;

static const state_case STATES[] = {
    /* retriable */
    {"08006", "server closed the connection unexpectedly", 1, "connection", NULL},
    {"08001", NULL, 1, "connection", NULL},
    {"08P01", "protocol violation", 1, "connection", NULL},
    {"40001", "could not serialize access due to concurrent update", 1, "conflict", NULL},
    {"40P01", "deadlock detected", 1, "conflict", NULL},
    {"53000", NULL, 1, "resources", NULL},
    {"53100", "could not extend file", 1, "resources", NULL},
    {"53200", "out of memory", 1, "resources", NULL},
    {"53300", "sorry, too many clients already", 1, "resources", NULL},
    {"57P01", "terminating connection due to administrator command", 1, "server", NULL},
    {"57P02", NULL, 1, "server", NULL},
    {"57P03", "the database system is starting up", 1, "server", NULL},
    {"57014", "canceling statement due to statement timeout", 1, "server", NULL},
    {"58000", NULL, 1, "server", NULL},
    {"58030", "could not write to file", 1, "server", NULL},
    {"55006", "replication slot \"s1\" is active for PID 8031", 1, "conflict", NULL},
    {"55P03", "could not obtain lock on relation", 1, "conflict", NULL},
    {"XX000", "cache lookup failed", 1, "server", NULL},
    {"XX001", NULL, 1, "server", NULL},
    {NULL, "no SQLSTATE at all", 1, "server", NULL},
    {"25P02", "current transaction is aborted", 1, "server", NULL}, /* unmapped: retriable */
    {"ZZ999", NULL, 1, "server", NULL},
    {"123", NULL, 1, "server", NULL}, /* malformed */
    /* permanent */
    {"28000", "role \"x\" is not permitted to log in", 0, "auth", "password"},
    {"28P01", "password authentication failed for user \"alice\"", 0, "auth", "password"},
    {"42501", "must be owner of table t_owned", 0, "privilege", "owner"},
    {"42501", "must be superuser or replication role to use replication slots", 0, "privilege",
     "REPLICATION"},
    {"42501", "permission denied for table t_owned", 0, "privilege", "GRANT"},
    {"42501", "permission denied to create extension \"vector\"", 0, "privilege", "as a superuser"},
    {"42501", NULL, 0, "privilege", "GRANT"},
    {"42P01", "relation \"nope\" does not exist", 0, "missing_object", "table"},
    {"42703", "column \"x\" does not exist", 0, "missing_object", "column"},
    {"42704", "type \"vector\" does not exist", 0, "missing_object", "CREATE EXTENSION vector"},
    {"42704", "access method \"hnsw\" does not exist", 0, "missing_object", "0.5"},
    {"42704", "replication slot \"s\" does not exist", 0, "missing_object", "resnapshot"},
    {"42704", "publication \"p\" does not exist", 0, "missing_object", "create"},
    {"3D000", "database \"nosuchdb\" does not exist", 0, "missing_object", "database"},
    {"3F000", "schema \"nosuch\" does not exist", 0, "missing_object", "schema"},
    {"53400", "all replication slots are in use", 0, "config", "max_replication_slots"},
    {"53400", "too many range table entries", 0, "config", "setting"},
    {"55000", "logical decoding requires wal_level >= logical", 0, "config", "wal_level = logical"},
    {"55000", "cannot read from logical replication slot \"s\"", 0, "config", "resnapshot"},
    {"55000", "cannot update table \"t\" because it does not have a replica identity and publishes updates",
     0, "config", "REPLICA IDENTITY"},
    {"55000", "something else", 0, "config", NULL},
    {"55P02", NULL, 0, "config", NULL},
    {"0A000", "extension \"nosuchext\" is not available", 0, "config", "package"},
    {"0A000", "logical decoding cannot be used while in recovery", 0, "config", "primary"},
    {"0A000", NULL, 0, "config", NULL},
    {"22023", "cannot add relation \"t_unlogged\" to publication", 0, "config", "SET LOGGED"},
    {"22023", "invalid value for parameter", 0, "data", NULL},
    {"22012", "division by zero", 0, "data", NULL},
    {"22P02", "invalid input syntax for type integer", 0, "data", NULL},
    {"23505", "duplicate key value violates unique constraint", 0, "data", "constraint"},
    {"42601", "syntax error at or near", 0, "config", NULL},
    {"42710", "replication slot \"s\" already exists", 0, "config", "one cdcvec"},
    {"42883", "function f() does not exist", 0, "config", NULL},
    {"57P04", "database dropped", 0, "missing_object", "database"},
};

static void test_classify_sqlstate(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof STATES / sizeof STATES[0]; i++) {
        const state_case *c = &STATES[i];
        char what[256];
        snprintf(what, sizeof what, "%s \"%s\"", c->state ? c->state : "(none)", c->msg ? c->msg : "");
        cv_pg_fault f, g;
        cv_pg_classify_sqlstate(c->state, c->msg, &f);
        check_fault(&f, what);
        if (f.retriable != c->retriable || strcmp(f.kind, c->kind) != 0)
            fail_msg("%s: got retriable=%d kind=%s, want %d %s", what, f.retriable, f.kind, c->retriable,
                     c->kind);
        if (c->fix_has && !strstr(f.fix, c->fix_has))
            fail_msg("%s: fix \"%s\" lacks %s", what, f.fix, c->fix_has);
        /* the message never decides retriability (servers translate messages) */
        cv_pg_classify_sqlstate(c->state, NULL, &g);
        if (g.retriable != f.retriable) fail_msg("%s: retriability depends on the message", what);
        cv_pg_classify_sqlstate(c->state, "message traduit", &g);
        if (g.retriable != f.retriable) fail_msg("%s: retriability depends on the message", what);
    }
}

typedef struct {
    const char *msg;
    int retriable;
    const char *kind, *fix_has;
} text_case;

/* libpq 15.20 against PostgreSQL 15 (observed, see cv_pg.c), then synthetic ones. */
static const text_case TEXTS[] = {
    {"connection to server at \"127.0.0.1\", port 45432 failed: FATAL:  password authentication failed for "
     "user \"alice\"\n",
     0, "auth", "password"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: fe_sendauth: no password supplied\n", 0,
     "auth", "PGPASSWORD"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: FATAL:  role \"ghost\" does not exist\n", 0,
     "auth", "role"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: FATAL:  database \"nosuchdb\" does not "
     "exist\n",
     0, "missing_object", "database"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: FATAL:  no pg_hba.conf entry for replication "
     "connection from host \"127.0.0.1\", user \"alice\", no encryption\n",
     0, "auth", "pg_hba.conf"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: FATAL:  pg_hba.conf rejects connection for "
     "host "
     "\"127.0.0.1\", user \"dave\", database \"postgres\", no encryption\n",
     0, "auth", "pg_hba.conf"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: FATAL:  role \"nologin_u\" is not permitted "
     "to "
     "log in\n",
     0, "auth", "LOGIN"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: FATAL:  must be superuser or replication "
     "role "
     "to start walsender\n",
     0, "privilege", "REPLICATION"},
    {"invalid sslmode value: \"bogus\"\n", 0, "config", "connection string"},
    {"invalid connection option \"foo\"\n", 0, "config", "connection string"},
    {"missing \"=\" after \"user\" in connection info string\n", 0, "config", "connection string"},
    {"invalid URI query parameter: \"foo\"\n", 0, "config", "connection string"},
    {"end of string reached when looking for matching \"]\" in IPv6 host address in URI: "
     "\"postgres://[::1:45432/postgres\"\n",
     0, "config", "connection string"},
    {"invalid integer value \"abc\" for connection option \"port\"\n", 0, "config", "connection string"},
    {"invalid target_session_attrs value: \"bogus\"\n", 0, "config", "connection string"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: server does not support SSL, but SSL was "
     "required\n",
     0, "config", "ssl = on"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: root certificate file "
     "\"/tmp/nonexistent.crt\" "
     "does not exist\nEither provide the file or change sslmode to disable server certificate "
     "verification.\n",
     0, "config", "sslrootcert"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: SSL error: certificate verify failed\n", 0,
     "config", "sslrootcert"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: server certificate for \"localhost\" does "
     "not "
     "match host name \"127.0.0.1\"\n",
     0, "config", "verify-ca"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: certificate present, but not private key "
     "file "
     "\"/tmp/nonexistent.key\"\n",
     0, "config", "sslkey"},
    {"connection to server at \"127.0.0.1\", port 45432 failed: GSSAPI encryption required but was "
     "impossible "
     "(possibly no credential cache, no server support, or using a local socket)\n",
     0, "config", "gssencmode"},
    {"connection to server at \"127.0.0.1\", port 45433 failed: FATAL:  remaining connection slots are "
     "reserved "
     "for non-replication superuser connections\n",
     1, "resources", NULL},
    {"connection to server at \"127.0.0.1\", port 45433 failed: FATAL:  the database system is shutting "
     "down\n",
     1, "server", NULL},
    {"connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server running on "
     "that "
     "host and accepting TCP/IP connections?\n",
     1, "connection", NULL},
    {"could not translate host name \"no-such-host.invalid\" to address: Name or service not known\n", 1,
     "connection", NULL},
    {"connection to server on socket \"/tmp/nonexistent/.s.PGSQL.45432\" failed: No such file or "
     "directory\n\tIs "
     "the server running locally and accepting connections on that socket?\n",
     1, "connection", NULL},
    /* synthetic: libpq/server texts not reproduced here */
    {"connection to server at \"10.0.0.1\", port 5432 failed: timeout expired\n", 1, "connection", NULL},
    {"connection to server at \"h\", port 5432 failed: FATAL:  the database system is starting up\n", 1,
     "server", NULL},
    {"connection to server at \"h\", port 5432 failed: FATAL:  the database system is in recovery mode\n", 1,
     "server", NULL},
    {"connection to server at \"h\", port 5432 failed: FATAL:  sorry, too many clients already\n", 1,
     "resources", NULL},
    {"connection to server at \"h\", port 5432 failed: FATAL:  too many connections for role \"u\"\n", 1,
     "resources", NULL},
    {"could not connect to server: No route to host\n", 1, "connection", NULL},
    {"something nobody has seen before\n", 1, "connection", NULL},
    {"", 1, "connection", NULL},
    /* two hosts: one down, one refusing the password: the permanent one decides */
    {"connection to server at \"a\", port 5432 failed: Connection refused\n\tIs the server running on that "
     "host "
     "and accepting TCP/IP connections?\nconnection to server at \"b\", port 5432 failed: FATAL:  password "
     "authentication failed for user \"u\"\n",
     0, "auth", NULL},
};

static void test_classify_message(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) {
        const text_case *c = &TEXTS[i];
        cv_pg_fault f;
        cv_pg_classify_message(c->msg, &f);
        check_fault(&f, c->msg);
        if (f.retriable != c->retriable || strcmp(f.kind, c->kind) != 0)
            fail_msg("%s: got retriable=%d kind=%s, want %d %s", c->msg, f.retriable, f.kind, c->retriable,
                     c->kind);
        if (c->fix_has && !strstr(f.fix, c->fix_has))
            fail_msg("%s: fix \"%s\" lacks %s", c->msg, f.fix, c->fix_has);
    }
    cv_pg_fault f;
    cv_pg_classify_message(NULL, &f);
    assert_int_equal(f.retriable, 1);
}

/* Real PGconn/PGresult objects that need no server. */
static void test_classify_objects(void **state) {
    (void)state;
    cv_pg_fault f;
    cv_pg_classify_connect(NULL, &f); /* PQconnectdb out of memory */
    assert_int_equal(f.retriable, 1);
    assert_string_equal(f.kind, "resources");

    PGconn *c = PQconnectdb("host=127.0.0.1 sslmode=bogus");
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    cv_pg_classify_connect(c, &f);
    assert_int_equal(f.retriable, 0);
    assert_string_equal(f.kind, "config");
    /* a lost or failed connection is retriable whatever the result says */
    PGresult *r = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
    cv_pg_classify_result(c, r, &f);
    assert_int_equal(f.retriable, 1);
    assert_string_equal(f.kind, "connection");
    PQfinish(c);

    cv_pg_classify_result(NULL, r, &f); /* no SQLSTATE: retriable */
    assert_int_equal(f.retriable, 1);
    assert_string_equal(f.kind, "server");
    PQclear(r);
    cv_pg_classify_result(NULL, NULL, &f); /* PQexec returned NULL */
    assert_int_equal(f.retriable, 1);

    c = PQconnectdb("host=127.0.0.1 foo=bar");
    cv_pg_classify_connect(c, &f);
    assert_int_equal(f.retriable, 0);
    assert_string_equal(f.kind, "config");
    PQfinish(c);
}

static void test_errtext(void **state) {
    (void)state;
    cv_buf b = {0};
    assert_string_equal(cv_pg_errtext("ERROR:  relation \"t\" does not exist\nDETAIL:  x\n", &b),
                        "ERROR:  relation 't' does not exist; DETAIL:  x");
    cv_buf_free(&b);
    assert_string_equal(
        cv_pg_errtext("connection to server at \"h\", port 1 failed: Connection refused\n\tIs the "
                      "server running?\n\n",
                      &b),
        "connection to server at 'h', port 1 failed: Connection refused; Is the server running?");
    cv_buf_free(&b);
    assert_string_equal(cv_pg_errtext("a\r\n\r\nb\tc\x01", &b), "a; b c ");
    cv_buf_free(&b);
    assert_string_equal(cv_pg_errtext("", &b), "");
    assert_non_null(b.p);
    cv_buf_free(&b);
    assert_string_equal(cv_pg_errtext(NULL, &b), "");
    cv_buf_free(&b);
    /* appends: returns the appended part */
    cv_buf_puts(&b, "pre ");
    assert_string_equal(cv_pg_errtext("x\n", &b), "x");
    assert_string_equal(b.p, "pre x");
    cv_buf_free(&b);
    /* longer than any fixed buffer */
    char *big = malloc(100001);
    memset(big, 'q', 100000);
    big[100000] = 0;
    assert_int_equal(strlen(cv_pg_errtext(big, &b)), 100000);
    cv_buf_free(&b);
    free(big);
}

static void test_ident(void **state) {
    (void)state;
    cv_buf b = {0};
    cv_pg_ident(&b, "a\"b");
    cv_buf_puts(&b, ".");
    cv_pg_ident(&b, "");
    cv_buf_puts(&b, ".");
    cv_pg_ident(&b, "\"\"");
    assert_string_equal(b.p, "\"a\"\"b\".\"\".\"\"\"\"\"\"");
    cv_buf_free(&b);
    char name[1001];
    for (int i = 0; i < 1000; i++)
        name[i] = i % 7 ? 'x' : '"';
    name[1000] = 0;
    cv_pg_ident(&b, name);
    assert_int_equal(b.len, 1000 + 143 + 2); /* every '"' doubled, nothing cut */
    cv_buf_free(&b);
}

static void test_notice(void **state) {
    (void)state;
    char path[] = "/tmp/test_pgcommon_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    cv_log_level old = cv_log_min;
    cv_log_min = CV_LOG_DEBUG;
    cv_pg_notice(NULL, "NOTICE:  relation \"t\" already exists, skipping\n");
    cv_log_min = CV_LOG_INFO;
    cv_pg_notice(NULL, "NOTICE:  not logged\n");
    cv_log_min = old;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    size_t len = 0;
    char *got = tu_read_file(path, &len);
    close(fd);
    unlink(path);
    assert_non_null(got);
    assert_non_null(
        strstr(got, "event=postgres_notice message=\"NOTICE:  relation 't' already exists, skipping\""));
    assert_null(strstr(got, "not logged"));
    free(got);
}

int run_names_tests(void);
int run_keytext_tests(void);

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_sqlstate),
        cmocka_unit_test(test_classify_message),
        cmocka_unit_test(test_classify_objects),
        cmocka_unit_test(test_errtext),
        cmocka_unit_test(test_ident),
        cmocka_unit_test(test_notice),
    };
    int failed = cmocka_run_group_tests_name("cv_pg", tests, NULL, NULL);
    failed += run_names_tests();
    failed += run_keytext_tests();
    return failed ? 1 : 0;
}
