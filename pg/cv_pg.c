/* cv_pg.c: classification of libpq failures, one-line messages, identifiers, notices.
 *
 * Two tables decide everything: SQLSTATE rules for failed statements and message rules for
 * failed connections; the first matching row wins, so specific rows come before general ones.
 *
 * What PostgreSQL 15.x really raises (reproduced with psql, \set VERBOSITY verbose, against
 * private servers from scripts/pg.sh; tests/test_pgerr_live.sh repeats most of them):
 *
 *   case                                     SQLSTATE  primary message
 *   CREATE PUBLICATION ... FOR TABLE unlogged 22023    cannot add relation "t" to publication
 *                                                      (DETAIL: ... not supported for unlogged
 *                                                      tables; same code for temporary tables
 *                                                      and views)
 *   CREATE PUBLICATION on another's table     42501    must be owner of table t_owned
 *   SELECT without the privilege              42501    permission denied for table t_owned
 *   slot functions without REPLICATION        42501    must be superuser or replication role
 *                                                      to use replication slots
 *   slot creation, max_replication_slots full 53400    all replication slots are in use
 *                                                      (HINT: Free one or increase
 *                                                      max_replication_slots.) — both
 *                                                      CREATE_REPLICATION_SLOT and the SQL
 *                                                      functions
 *   START_REPLICATION on a slot in use        55006    replication slot "s1" is active for
 *                                                      PID 8031 (pg_drop_replication_slot: same)
 *   logical slot with wal_level = replica     55000    logical decoding requires wal_level >=
 *                                                      logical (CREATE PUBLICATION only warns)
 *   missing table / schema                    42P01 / 3F000  relation "nope" does not exist /
 *                                                      schema "nosuch" does not exist
 *   vector type without pgvector              42704    type "vector" does not exist
 *   hnsw without pgvector >= 0.5              42704    access method "hnsw" does not exist
 *   CREATE EXTENSION of an absent package     0A000    extension "x" is not available
 *   division by zero                          22012    division by zero
 *
 * Failed connections carry no SQLSTATE in libpq; PQerrorMessage (libpq 15.20) said:
 *   connection to server at "127.0.0.1", port 45432 failed: FATAL:  password authentication
 *     failed for user "alice"                                          (scram-sha-256 and md5)
 *   ... failed: fe_sendauth: no password supplied
 *   ... failed: FATAL:  role "ghost" does not exist
 *   ... failed: FATAL:  database "nosuchdb" does not exist
 *   ... failed: FATAL:  no pg_hba.conf entry for replication connection from host
 *     "127.0.0.1", user "alice", no encryption
 *   ... failed: FATAL:  pg_hba.conf rejects connection for host "127.0.0.1", user "dave",
 *     database "postgres", no encryption
 *   ... failed: FATAL:  role "nologin_u" is not permitted to log in
 *   ... failed: FATAL:  must be superuser or replication role to start walsender
 *   ... failed: server does not support SSL, but SSL was required
 *   ... failed: root certificate file "/tmp/x.crt" does not exist\nEither provide the file or
 *     change sslmode to disable server certificate verification.
 *   ... failed: SSL error: certificate verify failed
 *   ... failed: server certificate for "localhost" does not match host name "127.0.0.1"
 *   ... failed: certificate present, but not private key file "/tmp/nonexistent.key"
 *   ... failed: FATAL:  remaining connection slots are reserved for non-replication superuser
 *     connections
 *   ... failed: FATAL:  the database system is shutting down
 *   ... port 1 failed: Connection refused\n\tIs the server running on that host and accepting
 *     TCP/IP connections?
 *   invalid sslmode value: "bogus"            invalid connection option "foo"
 *   missing "=" after "user" in connection info string
 *   invalid URI query parameter: "foo"        invalid integer value "abc" for connection
 *                                             option "port"
 *   could not translate host name "no-such-host.invalid" to address: Name or service not known
 */
#define _POSIX_C_SOURCE 200809L
#include "cv_pg.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/cv_log.h"
#include "../common/cv_signal.h"

/* Fix sentences: static, no '%', each names what to do. */
#define FIX_OWNER                                                                                            \
    "create the publication as the owner of the table (or as a superuser), or make the connecting role "     \
    "its owner: ALTER TABLE ... OWNER TO role"
#define FIX_REPLROLE                                                                                         \
    "give the connecting role replication rights (ALTER ROLE name REPLICATION) or connect as a role that "   \
    "has them"
#define FIX_PRIV                                                                                             \
    "grant the connecting role the privilege the error names (GRANT SELECT ON the table, GRANT USAGE ON "    \
    "its schema, GRANT CREATE ON the database or schema)"
#define FIX_EXT_SUPER                                                                                        \
    "only a superuser can create pgvector: run CREATE EXTENSION vector once as a superuser in the sink "     \
    "database (e.g. psql -U postgres -d DB -c 'CREATE EXTENSION vector'); cdcvec then finds it"
#define FIX_AUTH                                                                                             \
    "check the user name and password (PGPASSWORD or a password file, not the command line) and the "        \
    "server's pg_hba.conf"
#define FIX_TABLE  "create the table or correct the schema.table name"
#define FIX_COLUMN "correct the column name (text column, template, key) or add the column to the table"
#define FIX_VECTOR "install pgvector in the sink database: CREATE EXTENSION vector"
#define FIX_HNSW   "upgrade pgvector to 0.5.0 or later, which brings HNSW indexes"
#define FIX_SLOTGONE                                                                                         \
    "the replication slot is gone: run cdcvec sync with --resnapshot 1 to create it and backfill"
#define FIX_OBJECT "create the object the error names or correct its name"
#define FIX_DB     "create the database or correct the database name in the connection string"
#define FIX_SCHEMA "create the schema or correct the schema name"
#define FIX_SLOTS                                                                                            \
    "raise max_replication_slots on the source server (needs a restart) or drop unused slots listed in "     \
    "pg_replication_slots: SELECT pg_drop_replication_slot(slot_name)"
#define FIX_LIMIT "raise the server setting the error names (most need a restart) or use less of it"
#define FIX_WAL   "set wal_level = logical in the source server's postgresql.conf and restart the server"
#define FIX_INVALIDATED                                                                                      \
    "the slot lost the WAL it needed (max_slot_wal_keep_size): run cdcvec sync with --resnapshot 1 to "      \
    "drop it and backfill again"
#define FIX_REPLIDENT                                                                                        \
    "give the table a primary key or a replica identity: ALTER TABLE ... REPLICA IDENTITY FULL"
#define FIX_PREREQ "bring the object the error names into the state the operation needs (see DETAIL and HINT)"
#define FIX_STANDBY                                                                                          \
    "connect the source to the primary server: PostgreSQL 15 cannot decode changes on a standby"
#define FIX_EXT_NA                                                                                           \
    "install the extension's package on the database server (pgvector: postgresql-15-pgvector), then "       \
    "CREATE EXTENSION"
#define FIX_UNSUPPORTED "the server does not support this operation: upgrade it or change the set-up"
#define FIX_PUBREL                                                                                           \
    "publish an ordinary logged table: ALTER TABLE ... SET LOGGED for an unlogged one; temporary tables "    \
    "and views cannot be replicated"
#define FIX_DATA       "correct the value or the column type the error names"
#define FIX_CONSTRAINT "correct the row or the constraint the error names"
#define FIX_EXISTS                                                                                           \
    "another process created this object: make sure one cdcvec syncs each table, or drop the object"
#define FIX_SQL "correct the statement or the object definition the error names"

/* One SQLSTATE rule: code is an exact SQLSTATE (5 characters) or a class (2); needle, when set,
 * must occur in the primary message, and only chooses kind and fix: rows sharing a code agree
 * on retriable, so a translated message never turns a retriable failure permanent. */
typedef struct {
    const char *code, *needle;
    int retriable;
    const char *kind, *fix;
} state_rule;

static const state_rule STATE_RULES[] = {
    /* retriable: the same statement may succeed once the cause passes */
    {"08", NULL, 1, "connection", NULL}, /* connection exceptions */
    {"40", NULL, 1, "conflict", NULL},   /* serialization failure, deadlock */
    {"53400", "replication slots", 0, "config", FIX_SLOTS},
    {"53400", NULL, 0, "config", FIX_LIMIT},      /* configuration_limit_exceeded */
    {"53", NULL, 1, "resources", NULL},           /* disk full, out of memory, too many connections */
    {"57P04", NULL, 0, "missing_object", FIX_DB}, /* database dropped */
    {"57", NULL, 1, "server", NULL},      /* admin/crash shutdown, cannot connect now, query canceled */
    {"58", NULL, 1, "server", NULL},      /* system and I/O errors */
    {"55006", NULL, 1, "conflict", NULL}, /* object in use: "replication slot ... is active for PID" */
    {"55P03", NULL, 1, "conflict", NULL}, /* lock not available */
    {"XX", NULL, 1, "server", NULL},      /* internal error, corruption */
    /* permanent: retrying repeats the failure until someone changes the set-up */
    {"28", NULL, 0, "auth", FIX_AUTH},
    {"42501", "must be owner", 0, "privilege", FIX_OWNER},
    {"42501", "replication role", 0, "privilege", FIX_REPLROLE},
    {"42501", "to create extension", 0, "privilege", FIX_EXT_SUPER}, /* not GRANTs: a superuser's step */
    {"42501", NULL, 0, "privilege", FIX_PRIV},
    {"42P01", NULL, 0, "missing_object", FIX_TABLE},
    {"42703", NULL, 0, "missing_object", FIX_COLUMN},
    {"42704", "type \"vector\"", 0, "missing_object", FIX_VECTOR},
    {"42704", "\"hnsw\"", 0, "missing_object", FIX_HNSW},
    {"42704", "replication slot", 0, "missing_object", FIX_SLOTGONE},
    {"42704", NULL, 0, "missing_object", FIX_OBJECT},
    {"3D000", NULL, 0, "missing_object", FIX_DB},
    {"3F000", NULL, 0, "missing_object", FIX_SCHEMA},
    {"42710", "already exists", 0, "config", FIX_EXISTS},
    {"42", NULL, 0, "config", FIX_SQL}, /* syntax, definitions */
    {"55000", "wal_level", 0, "config", FIX_WAL},
    {"55000", "cannot read from logical replication slot", 0, "config", FIX_INVALIDATED},
    {"55000", "replica identity", 0, "config", FIX_REPLIDENT},
    {"55", NULL, 0, "config", FIX_PREREQ}, /* object not in prerequisite state, and the rest */
    {"0A000", "in recovery", 0, "config", FIX_STANDBY},
    {"0A000", "is not available", 0, "config", FIX_EXT_NA},
    {"0A000", NULL, 0, "config", FIX_UNSUPPORTED},
    {"22023", "cannot add relation", 0, "config", FIX_PUBREL}, /* unlogged/temp table, view */
    {"22", NULL, 0, "data", FIX_DATA},
    {"23", NULL, 0, "data", FIX_CONSTRAINT},
};

void cv_pg_classify_sqlstate(const char *sqlstate, const char *primary, cv_pg_fault *f) {
    *f = (cv_pg_fault){1, "server", NULL}; /* none or unknown: retriable */
    if (!sqlstate || strlen(sqlstate) != 5) return;
    for (size_t i = 0; i < sizeof STATE_RULES / sizeof STATE_RULES[0]; i++) {
        const state_rule *r = &STATE_RULES[i];
        size_t n = strlen(r->code);
        if (strncmp(sqlstate, r->code, n) != 0) continue;
        if (r->needle && !(primary && strstr(primary, r->needle))) continue;
        *f = (cv_pg_fault){r->retriable, r->kind, r->fix};
        return;
    }
}

void cv_pg_classify_result(const PGconn *c, const PGresult *r, cv_pg_fault *f) {
    if (c && PQstatus(c) != CONNECTION_OK) {
        *f = (cv_pg_fault){1, "connection", NULL};
        return;
    }
    if (!r) { /* PQexec: out of memory, or the command could not be sent */
        *f = (cv_pg_fault){1, "resources", NULL};
        return;
    }
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *constraint = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
    if (state && !strcmp(state, "23505") && constraint && !strncmp(constraint, "pg_", 3)) {
        /* a unique index of the system catalogs: two sessions ran the same CREATE ... IF NOT
         * EXISTS at once (pg_namespace_nspname_index); the loser's retry finds the object */
        *f = (cv_pg_fault){1, "conflict", NULL};
        return;
    }
    cv_pg_classify_sqlstate(state, PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY), f);
}

#define FIX_C_PASSWORD                                                                                       \
    "supply the password through PGPASSWORD or a password file (~/.pgpass), not the command line"
#define FIX_C_ROLE "create the role or correct the user name in the connection string"
#define FIX_C_HBA                                                                                            \
    "add a pg_hba.conf line for this host, user and database (for physical replication: database "           \
    "replication) and reload the server"
#define FIX_C_LOGIN    "allow the role to log in: ALTER ROLE name LOGIN"
#define FIX_C_CONNECT  "grant the role CONNECT on the database"
#define FIX_C_CONNINFO "correct the connection string (see the libpq connection parameters)"
#define FIX_C_SSLREQ   "turn SSL on in the server (ssl = on) or choose sslmode=prefer in the connection string"
#define FIX_C_CHANNEL                                                                                        \
    "use scram-sha-256 authentication over SSL on the server, or drop channel_binding=require"
#define FIX_C_GSS "set the server up for GSSAPI encryption or choose gssencmode=prefer"
#define FIX_C_ROOTCERT                                                                                       \
    "give sslrootcert the CA certificate that signed the server's certificate, or choose sslmode=require "   \
    "(encrypted, not verified)"
#define FIX_C_HOSTNAME "connect by the host name the server's certificate names, or choose sslmode=verify-ca"
#define FIX_C_CLIENTCERT                                                                                     \
    "check sslcert and sslkey: both files must exist, be readable, belong together, and the key must not "   \
    "be readable by others (chmod 600)"

/* One connection-message rule: a must occur, then b (when set) after it. */
typedef struct {
    const char *a, *b;
    int retriable;
    const char *kind, *fix;
} text_rule;

static const text_rule TEXT_RULES[] = {
    /* permanent first: with several hosts in the string, one such failure is enough to stop */
    {" authentication failed for user", NULL, 0, "auth", FIX_AUTH}, /* password, md5, ident, ... */
    {"no password supplied", NULL, 0, "auth", FIX_C_PASSWORD},
    {"role \"", "\" does not exist", 0, "auth", FIX_C_ROLE},
    {"database \"", "\" does not exist", 0, "missing_object", FIX_DB},
    {"no pg_hba.conf entry", NULL, 0, "auth", FIX_C_HBA},
    {"pg_hba.conf rejects connection", NULL, 0, "auth", FIX_C_HBA},
    {"is not permitted to log in", NULL, 0, "auth", FIX_C_LOGIN},
    {"must be superuser or replication role", NULL, 0, "privilege", FIX_REPLROLE},
    {"permission denied for database", NULL, 0, "privilege", FIX_C_CONNECT},
    {"invalid connection option", NULL, 0, "config", FIX_C_CONNINFO},
    {"missing \"=\" after", NULL, 0, "config", FIX_C_CONNINFO},
    {"invalid ", "value", 0, "config", FIX_C_CONNINFO}, /* sslmode, integer, target_session_attrs */
    {" URI", NULL, 0, "config", FIX_C_CONNINFO},
    {"percent-encoded", NULL, 0, "config", FIX_C_CONNINFO},
    {"could not match ", " to ", 0, "config", FIX_C_CONNINFO}, /* host/hostaddr/port counts */
    {"SSL was required", NULL, 0, "config", FIX_C_SSLREQ},
    {"channel binding", NULL, 0, "auth", FIX_C_CHANNEL},
    {"GSSAPI encryption required", NULL, 0, "config", FIX_C_GSS},
    {"root certificate", NULL, 0, "config", FIX_C_ROOTCERT},
    {"certificate verify failed", NULL, 0, "config", FIX_C_ROOTCERT},
    {"certificate could not be obtained", NULL, 0, "config", FIX_C_ROOTCERT},
    {"does not match host name", NULL, 0, "config", FIX_C_HOSTNAME},
    {"SSL certificate's", NULL, 0, "config", FIX_C_HOSTNAME},
    {"private key", NULL, 0, "config", FIX_C_CLIENTCERT},
    {"certificate file", NULL, 0, "config", FIX_C_CLIENTCERT},
    /* retriable, with a more telling kind than the default */
    {"too many clients", NULL, 1, "resources", NULL},
    {"too many connections", NULL, 1, "resources", NULL},
    {"remaining connection slots are reserved", NULL, 1, "resources", NULL},
    {"exceeds max_wal_senders", NULL, 1, "resources", NULL},
    {"the database system is", NULL, 1, "server", NULL}, /* starting up, shutting down, in recovery */
    /* DNS is retried: a name that does not resolve yet is common while containers, VMs or
     * service records come up, and a resolver can fail for a moment; a misspelt name keeps
     * failing, which the capped back-off and the logged message make visible. */
    {"could not translate host name", NULL, 1, "connection", NULL},
    {"timeout expired", NULL, 1, "connection", NULL},
    {"Connection refused", NULL, 1, "connection", NULL},
    {"could not connect", NULL, 1, "connection", NULL},
};

void cv_pg_classify_message(const char *msg, cv_pg_fault *f) {
    *f = (cv_pg_fault){1, "connection", NULL}; /* unknown: retriable */
    if (!msg) return;
    for (size_t i = 0; i < sizeof TEXT_RULES / sizeof TEXT_RULES[0]; i++) {
        const text_rule *r = &TEXT_RULES[i];
        const char *p = strstr(msg, r->a);
        if (!p || (r->b && !strstr(p + strlen(r->a), r->b))) continue;
        *f = (cv_pg_fault){r->retriable, r->kind, r->fix};
        return;
    }
}

void cv_pg_classify_connect(const PGconn *c, cv_pg_fault *f) {
    if (!c) { /* PQconnectdb could not allocate the connection */
        *f = (cv_pg_fault){1, "resources", NULL};
        return;
    }
    cv_pg_classify_message(PQerrorMessage(c), f);
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

const char *cv_pg_errtext(const char *msg, cv_buf *out) {
    size_t start = out->len;
    if (!msg) msg = "";
    size_t end = strlen(msg);
    while (end > 0 && is_space(msg[end - 1]))
        end--;
    cv_buf_put(out, "", 0); /* allocates, so an empty message still yields a string */
    for (size_t i = 0; i < end; i++) {
        char c = msg[i];
        if (c == '\n' || c == '\r') {
            while (i + 1 < end && is_space(msg[i + 1]))
                i++;
            cv_buf_put(out, "; ", 2);
            continue;
        }
        if (c == '"')
            c = '\'';
        else if ((unsigned char)c < 0x20 || c == 0x7f)
            c = ' ';
        cv_buf_put(out, &c, 1);
    }
    return out->oom ? "" : out->p + start;
}

void cv_pg_array_elem(cv_buf *b, const char *v, int first) {
    if (!first) cv_buf_put(b, ",", 1);
    cv_buf_put(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\') cv_buf_put(b, "\\", 1);
        cv_buf_put(b, p, 1);
    }
    cv_buf_put(b, "\"", 1);
}

void cv_pg_ident(cv_buf *out, const char *name) {
    cv_buf_put(out, "\"", 1);
    for (const char *p = name;;) {
        const char *q = strchr(p, '"');
        if (!q) {
            cv_buf_puts(out, p);
            break;
        }
        cv_buf_put(out, p, (size_t)(q - p) + 1);
        cv_buf_put(out, "\"", 1);
        p = q + 1;
    }
    cv_buf_put(out, "\"", 1);
}

void cv_pg_notice(void *arg, const char *message) {
    (void)arg;
    if (CV_LOG_DEBUG < cv_log_min) return;
    cv_buf b = {0};
    cv_debug("event=postgres_notice message=\"%s\"", cv_pg_errtext(message, &b));
    cv_buf_free(&b);
}

/* Connections a stop signal cancels (cv_signal.h): the cancel handles of the last CANCEL_RING
 * connections made. A handle outlives its connection harmlessly: a cancel request names the
 * backend by pid and secret key, so a stale one cancels nothing. */
#define CANCEL_RING 256
static pthread_mutex_t cancel_mu = PTHREAD_MUTEX_INITIALIZER;
static PGcancel *cancel_ring[CANCEL_RING];
static unsigned cancel_next;

static void cancel_all(void) {
    char err[256];
    pthread_mutex_lock(&cancel_mu);
    for (int i = 0; i < CANCEL_RING; i++)
        if (cancel_ring[i]) PQcancel(cancel_ring[i], err, sizeof err);
    pthread_mutex_unlock(&cancel_mu);
}

static void remember_cancel(PGconn *c) {
    PGcancel *k = PQgetCancel(c);
    if (!k) return;
    cv_signal_add_stop_hook(cancel_all);
    pthread_mutex_lock(&cancel_mu);
    unsigned i = cancel_next++ % CANCEL_RING;
    if (cancel_ring[i]) PQfreeCancel(cancel_ring[i]);
    cancel_ring[i] = k;
    pthread_mutex_unlock(&cancel_mu);
}

/* PQconnectdbParams, but a stop signal ends the wait within 100 ms (an unreachable host would
 * hold it for the TCP timeout): the connection is then returned unfinished (not CONNECTION_OK).
 * connect_timeout, which libpq enforces only in its blocking calls, bounds the whole attempt. */
static PGconn *connect_interruptible(const char *const *kw, const char *const *val) {
    PGconn *c = PQconnectStartParams(kw, val, 1);
    if (!c || PQstatus(c) == CONNECTION_BAD) return c;
    double limit = 0;
    PQconninfoOption *opts = PQconninfo(c);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (!strcmp(o->keyword, "connect_timeout") && o->val && *o->val) limit = atof(o->val);
    PQconninfoFree(opts);
    if (limit > 0 && limit < 2) limit = 2; /* libpq's own minimum */
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED && !cv_stopping()) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (limit > 0 && (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) * 1e-9 > limit) {
            cv_warn(
                "event=pg_connect_timeout connect_timeout=%.0f note=\"the server did not answer in time\"",
                limit);
            break;
        }
        int sock = PQsocket(c);
        if (sock < 0) break;
        struct pollfd pfd = {sock, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
        int r = poll(&pfd, 1, 100);
        if (r < 0 && errno != EINTR) break;
        if (r > 0) st = PQconnectPoll(c);
    }
    return c;
}

PGconn *cv_pg_connect(const char *conninfo, int replication, const char *role) {
    char app[64];
    snprintf(app, sizeof app, "cdcvec %s", role ? role : "");
    const char *kw[] = {"dbname", "options", "fallback_application_name", replication ? "replication" : NULL,
                        NULL};
    const char *val[] = {
        conninfo,
        "-c DateStyle=ISO,MDY -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=1 "
        "-c bytea_output=hex -c client_encoding=UTF8",
        app, "database", NULL};
    PGconn *c = connect_interruptible(kw, val);
    if (c && PQstatus(c) == CONNECTION_OK) {
        PQsetNoticeProcessor(c, cv_pg_notice, NULL);
        remember_cancel(c);
        /* A SQL_ASCII database stores any bytes. With client_encoding UTF8 the server checks
         * every value it sends, so one byte that is not UTF-8 fails the whole statement (a
         * backfill page, the replication stream): take the bytes as stored instead; the
         * reader checks each row and makes a bad one a dead letter (ingest/source.c). */
        const char *enc = PQparameterStatus(c, "server_encoding");
        if (enc && !strcmp(enc, "SQL_ASCII")) PQsetClientEncoding(c, "SQL_ASCII");
    }
    return c;
}

static _Thread_local char last_message[512];

const char *cv_pg_last_message(void) { return last_message; }

void cv_pg_last_message_clear(void) { last_message[0] = 0; }

void cv_pg_log_fault(const char *event, const char *step, const char *sqlstate, const cv_pg_fault *f,
                     const char *libpq_message) {
    cv_buf m = {0};
    snprintf(last_message, sizeof last_message, "%s", cv_pg_errtext(libpq_message ? libpq_message : "", &m));
    m.len = 0;
    cv_error("event=%s%s%s%s%s kind=%s retriable=%d error=\"%s\"%s%s%s", event, step ? " step=" : "",
             step ? step : "", sqlstate ? " sqlstate=" : "", sqlstate ? sqlstate : "", f->kind, f->retriable,
             cv_pg_errtext(libpq_message ? libpq_message : "", &m), f->fix ? " fix=\"" : "",
             f->fix ? f->fix : "", f->fix ? "\"" : "");
    free(m.p);
}
