/* wlock.c: one writer per store table.
 *
 * Every process that writes a store's copy of a table (cdcvec sync, the Kafka sink stage,
 * verify --repair, dead-letters retry, cdcvec backfill) holds a session advisory lock in the database that
 * keeps that store's state: pgvector's own database, or the state database of Qdrant and Upstash (the source
 * database for sync and verify, --state for the Kafka sink). The key names the store and the table, never the
 * slot: a second sync of the table with a --slot of its own, or a repair beside a Kafka sink, waits or is
 * refused instead of writing beside the first. Advisory locks belong to one database, so the same
 * schema.table in two databases never contend. PostgreSQL releases the lock when the holder's connection
 * ends, kill -9 included. */
#define _POSIX_C_SOURCE 200809L
#include "wlock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "../pg/cv_names.h"

void cv_wlock_place(const char *sink, const char *source, const char *state_db, const cv_sink_table *t,
                    const char **home, cv_buf *key) {
    if (!strcmp(cv_sink_kind(sink), "pgvector")) {
        *home = sink && *sink ? sink : source;
        cv_buf_puts(key, "cdcvec writer pgvector cdcvec.");
        cv_sink_pg_table(t, key); /* a migration's shadow: its own lock */
        return;
    }
    *home = state_db && *state_db ? state_db : NULL;
    cv_buf_puts(key, "cdcvec writer ");
    cv_sink_store_id(sink, t, key);
    cv_buf_printf(key, " %s.%s", t->schema, t->table);
}

/* What pg_stat_activity shows of the process holding the lock. */
static void describe_holder(PGconn *db, const char *key, cv_buf *holder) {
    const char *p[1] = {key};
    PGresult *r = PQexecParams(
        db,
        "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'), "
        "to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM pg_locks l JOIN "
        "pg_stat_activity a ON a.pid = l.pid, (SELECT hashtextextended($1, 0) AS k) x WHERE l.locktype = "
        "'advisory' AND l.granted AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE "
        "datname = current_database()) AND l.classid = ((x.k >> 32) & 4294967295)::oid AND l.objid = (x.k & "
        "4294967295)::oid LIMIT 1",
        1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        cv_buf_printf(holder, "pid=%s application=%s client=%s since=%s", PQgetvalue(r, 0, 0),
                      *PQgetvalue(r, 0, 1) ? PQgetvalue(r, 0, 1) : "-", PQgetvalue(r, 0, 2),
                      PQgetvalue(r, 0, 3));
    else
        cv_buf_puts(holder, "a process that has just ended");
    PQclear(r);
}

cv_err cv_wlock_take(cv_wlock *l, const char *home, PGconn *reuse, const char *key, const char *role,
                     cv_buf *holder, cv_pg_fault *f) {
    l->db = reuse, l->own = 0;
    if (!reuse) {
        char r[64];
        snprintf(r, sizeof r, "%s", role ? role : "lock");
        l->db = cv_pg_connect(home, 0, r);
        l->own = 1;
        if (PQstatus(l->db) != CONNECTION_OK) {
            cv_pg_classify_connect(l->db, f);
            cv_pg_log_fault("lock_connect", NULL, NULL, f, PQerrorMessage(l->db));
            cv_wlock_release(l);
            return f->retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
        }
    }
    const char *p[1] = {key};
    PGresult *r = PQexecParams(l->db, "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", 1, NULL, p,
                               NULL, NULL, 0);
    cv_err e = CV_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cv_pg_classify_result(l->db, r, f);
        cv_pg_log_fault("lock_failed", NULL, PQresultErrorField(r, PG_DIAG_SQLSTATE), f,
                        PQresultErrorMessage(r));
        e = f->retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    } else if (PQgetvalue(r, 0, 0)[0] != 't') {
        describe_holder(l->db, key, holder);
        *f = (cv_pg_fault){1, "conflict", NULL};
        e = CV_ERR_BUSY;
    }
    PQclear(r);
    if (e) cv_wlock_release(l);
    return e;
}

int cv_wlock_alive(cv_wlock *l) {
    if (!l->db || !l->own) return 1;
    PQconsumeInput(l->db); /* reads what arrived (an administrator's termination), never waits */
    return PQstatus(l->db) == CONNECTION_OK;
}

void cv_wlock_release(cv_wlock *l) {
    if (l->db && l->own) PQfinish(l->db);
    l->db = NULL, l->own = 0;
}
