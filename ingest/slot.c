/* slot.c: the replication slot of a session (sync.c): found, adopted or rebuilt when the
 * store and the slot disagree, or created with an exported snapshot that the first backfill
 * reads through, so that the stream starts exactly where the snapshot ends. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "sync_impl.h"

cv_err cv_sync_record_meta(cv_sync *s) {
    cv_sink_meta m = {s->t.oid, s->t.layout, s->t.text_source, (char *)s->rt.mf.id,
                      (char *)s->rt.mf.revision};
    cv_err e = cv_sink_meta_set(s->sink, &m);
    if (e) {
        const char *kind, *fix;
        cv_sink_last_fault(s->sink, &kind, &fix);
        cv_pg_fault f = {e == CV_ERR_TIMEOUT, kind, fix};
        cv_sync_error(s, "sink", &f);
    }
    return e;
}

/* A new slot: inactive cdcvec slots of the same table in this database (another store, an
 * earlier configuration) are named, for each keeps WAL until it is dropped. */
static void warn_other_slots(cv_sync *s) {
    const char *p[3] = {s->slot, s->t.schema, s->t.name};
    PGresult *r = PQexecParams(
        s->src,
        "SELECT string_agg(s.slot_name, ' ' ORDER BY s.slot_name) FROM pg_replication_slots s WHERE "
        "s.database = current_database() AND NOT s.active AND s.slot_name <> $1 AND s.slot_name LIKE "
        "'cdcvec%' AND EXISTS "
        "(SELECT 1 FROM pg_publication_tables t WHERE t.pubname = s.slot_name AND t.schemaname = $2 AND "
        "t.tablename = $3)",
        3, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && !PQgetisnull(r, 0, 0))
        cv_warn(
            "event=slot_other table=%s slots=\"%s\" note=\"inactive cdcvec slots of this table (a sync into "
            "another store, or an earlier configuration) keep WAL until dropped: SELECT "
            "pg_drop_replication_slot('NAME') for each one no cdcvec process uses\"",
            s->t.qualified, PQgetvalue(r, 0, 0));
    PQclear(r);
}

/* Looks the slot up; refuses a slot of another database or program (slots are cluster-wide). */
cv_err cv_slot_look(cv_sync *s, cv_slot_seen *v) {
    const char *p[1] = {s->slot};
    PGresult *r =
        PQexecParams(s->src,
                     "SELECT plugin, wal_status, active, active_pid, coalesce(database::text, '-'), "
                     "current_database(), slot_type, coalesce(confirmed_flush_lsn::text, '0/0') FROM "
                     "pg_replication_slots WHERE slot_name = $1",
                     1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cv_pg_classify_result(s->src, r, &s->fault);
        cv_sync_error(s, "source", &s->fault);
        cv_error("event=slot_query kind=%s", s->fault.kind);
        PQclear(r);
        return s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    }
    int exists = PQntuples(r) == 1;
    if (exists &&
        (strcmp(PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5)) || strcmp(PQgetvalue(r, 0, 0), "pgoutput"))) {
        /* slots are cluster-wide: one of another database (or another program) is never dropped
         * or streamed from; that would stop its owner for good */
        int other_db = strcmp(PQgetvalue(r, 0, 4), "-") && strcmp(PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 5));
        cv_error(
            "event=slot_clash slot=%s slot_database=%s slot_plugin=%s database=%s table=%s error=\"%s\" "
            "fix=\"pass --slot with a name of its own (for example --slot %s_%s), or drop the slot if "
            "nothing uses it\"",
            s->slot, PQgetvalue(r, 0, 4), PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 6) : PQgetvalue(r, 0, 0),
            PQgetvalue(r, 0, 5), s->t.qualified,
            other_db ? "the replication slot belongs to another database: using or dropping it would stop "
                       "that database's sync"
                     : "the replication slot is not a pgoutput slot of cdcvec: another program uses it",
            s->slot, PQgetvalue(r, 0, 5));
        s->fault = (cv_pg_fault){0, "conflict", "pass --slot with a name no other database or program uses"};
        PQclear(r);
        return CV_ERR_UNSUPPORTED;
    }
    v->exists = exists;
    v->lost = exists && strcmp(PQgetvalue(r, 0, 1), "lost") == 0;
    v->active = exists && PQgetvalue(r, 0, 2)[0] == 't';
    if (v->active) snprintf(v->holder, sizeof v->holder, "%s", PQgetvalue(r, 0, 3));
    if (exists) cv_lsn_parse(PQgetvalue(r, 0, 7), &v->confirmed);
    PQclear(r);
    return CV_OK;
}

/* Drops a slot to rebuild (--resnapshot, a recreated table, lost WAL, a backfill that had not
 * finished) unless another process streams from it; refuses a missing slot behind a finished
 * backfill (changes after it may be lost). */
cv_err cv_slot_rebuild(cv_sync *s, cv_slot_seen *v, uint64_t pos, int done) {
    const char *p[1] = {s->slot};
    int exists = v->exists, lost = v->lost, active = v->active;
    const char *holder = v->holder;
    int rebuild = s->o.resnapshot || s->resnapshot;
    if (exists && (rebuild || !done || lost)) {
        if (active) { /* never drop a slot another process streams from */
            cv_warn("event=slot_busy slot=%s walsender_pid=%s note=\"the slot is in use; waiting\"", s->slot,
                    holder);
            snprintf(s->why, sizeof s->why, "slot_busy: walsender pid %s streams from slot %s", holder,
                     s->slot);
            s->fault = (cv_pg_fault){1, "conflict", NULL};
            cv_sync_error(s, "source", &s->fault);
            return CV_ERR_TIMEOUT;
        }
        cv_warn("event=slot_recreate slot=%s reason=\"%s\"", s->slot,
                s->o.resnapshot ? "--resnapshot"
                : s->resnapshot ? "the table was dropped and recreated"
                : lost          ? "slot lost its WAL (max_slot_wal_keep_size)"
                                : "backfill had not finished");
        PGresult *r = PQexecParams(s->src, "SELECT pg_drop_replication_slot($1)", 1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            cv_pg_classify_result(s->src, r, &s->fault);
            cv_sync_error(s, "source", &s->fault);
            PQclear(r);
            return s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
        }
        PQclear(r);
        v->exists = 0;
    } else if (!exists && done && !rebuild) {
        char l[24];
        cv_lsn_format(pos, l);
        cv_error(
            "event=slot_missing slot=%s sink_position=%s error=\"the replication slot is gone, so changes "
            "after %s may be lost\" fix=\"run cdcvec sync again with --resnapshot 1 to rebuild the index\"",
            s->slot, l, l);
        s->fault = (cv_pg_fault){0, "missing_object", "run cdcvec sync again with --resnapshot 1"};
        return CV_ERR_NOTFOUND;
    }
    return CV_OK;
}

cv_err cv_sync_repl_failed(cv_sync *s, PGconn *repl, PGresult *r, const char *step) {
    if (r)
        cv_pg_classify_result(repl, r, &s->fault);
    else
        s->fault = (cv_pg_fault){1, "connection", NULL};
    cv_pg_log_fault("replication_failed", step, r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL, &s->fault,
                    r ? PQresultErrorMessage(r) : PQerrorMessage(repl));
    cv_sync_error(s, "source", &s->fault);
    return s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
}

/* CREATE_REPLICATION_SLOT name [TEMPORARY] ... EXPORT_SNAPSHOT: the consistent point and the
 * exported snapshot's name (caller frees). */
cv_err cv_slot_create(cv_sync *s, PGconn *repl, const char *name, int temporary, uint64_t *cp,
                      char **snapshot) {
    cv_buf sql = {0};
    cv_buf_puts(&sql, "CREATE_REPLICATION_SLOT ");
    cv_pg_ident(&sql, name);
    cv_buf_puts(&sql, temporary ? " TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT"
                                : " LOGICAL pgoutput EXPORT_SNAPSHOT");
    PGresult *r = PQexec(repl, sql.p);
    free(sql.p);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cv_err e = cv_sync_repl_failed(s, repl, r, "create_slot");
        PQclear(r);
        return e;
    }
    cv_lsn_parse(PQgetvalue(r, 0, 1), cp);
    char cps[24];
    *snapshot = strdup(PQgetvalue(r, 0, 2));
    PQclear(r);
    cv_lsn_format(*cp, cps);
    cv_info("event=slot_created slot=%s%s consistent_point=%s snapshot=%s", name,
            temporary ? " temporary=1" : "", cps, *snapshot);
    return CV_OK;
}

/* Backfills through the slot's exported snapshot, before any other command on the replication
 * connection (which would end the snapshot), then records the meta. */
cv_err cv_slot_backfill(cv_sync *s, uint64_t cp, const char *snapshot, volatile sig_atomic_t *stop) {
    cv_err e = CV_OK;
    PGresult *r;
    PGconn *bf = cv_pg_connect(s->o.source, 0, "backfill");
    if (PQstatus(bf) != CONNECTION_OK) {
        cv_pg_classify_connect(bf, &s->fault);
        cv_sync_error(s, "source", &s->fault);
        e = s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    }
    if (!e && strspn(snapshot, "0123456789ABCDEFabcdef-") !=
                  strlen(snapshot)) { /* an id like 00000003-0000001B-1 */
        cv_error("event=snapshot_import error=\"unexpected snapshot name from the server\"");
        s->fault = (cv_pg_fault){1, "server", NULL};
        e = CV_ERR_TIMEOUT;
    }
    if (!e) {
        cv_buf set = {0};
        cv_buf_printf(&set, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '%s'",
                      snapshot);
        r = PQexec(bf, set.p);
        free(set.p);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            cv_pg_classify_result(bf, r, &s->fault);
            cv_sync_error(s, "source", &s->fault);
            cv_buf m = {0};
            cv_error("event=snapshot_import kind=%s error=\"%s\"", s->fault.kind,
                     cv_pg_errtext(PQresultErrorMessage(r), &m));
            free(m.p);
            e = s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
        }
        PQclear(r);
    }
    long rows = 0, swept = 0;
    uint64_t had = 0, bpos;
    int done;
    /* a store that held rows (a table that joins again, a rollback's restored index): rows deleted
     * while it was not followed are swept after the backfill, through the same snapshot */
    if (!e && (e = cv_sink_state(s->sink, &had, &done, &bpos))) e = cv_sync_batch_failed(s, e);
    if (!e && !had && s->o.index_suffix && s->o.index_seed) { /* a migration's shadow, same model */
        cv_sink_table live = {.schema = s->t.schema, .table = s->t.name};
        long copied = 0;
        if ((e = cv_sink_index_seed(s->sink_conninfo, &live, s->o.index_suffix, s->t.text_source, &copied)))
            e = cv_sync_batch_failed(s, e);
        else
            cv_info(
                "event=migrate_seeded table=%s rows=%ld note=\"the live index's vectors copied: the backfill "
                "embeds only the texts the new template changes\"",
                s->t.qualified, copied);
        had = 1; /* the copy's rows the snapshot lacks are swept */
    }
    if (!e && (e = cv_sink_backfill_mark(s->sink, cp, 0))) e = cv_sync_batch_failed(s, e);
    if (!e) e = cv_sync_backfill(s, bf, cp, 0, NULL, stop, &rows);
    if (!e && had) e = cv_verify_sweep(s, bf, cp, stop, &swept);
    if (!e && swept)
        cv_info(
            "event=backfill_swept table=%s rows=%ld note=\"rows deleted while the table was not followed\"",
            s->t.qualified, swept);
    if (!e) PQclear(PQexec(bf, "COMMIT"));
    PQfinish(bf);
    if (!e && (e = cv_sink_backfill_mark(s->sink, cp, 1))) e = cv_sync_batch_failed(s, e);
    if (!e) e = cv_sync_record_meta(s);
    if (e) return e;
    char l[24];
    cv_lsn_format(cp, l);
    cv_info("event=backfill_done table=%s rows=%ld position=%s", s->t.qualified, rows, l);
    s->refresh = 0; /* the backfill read every row as it is now */
    return CV_OK;
}

cv_err cv_slot_ensure(cv_sync *s, PGconn *repl, volatile sig_atomic_t *stop, uint64_t *applied) {
    uint64_t pos, bpos;
    int done;
    cv_err e = cv_sink_state(s->sink, &pos, &done, &bpos);
    if (e) return cv_sync_batch_failed(s, e);
    cv_slot_seen v = {.holder = "-"};
    if ((e = cv_slot_look(s, &v)) || (e = cv_slot_rebuild(s, &v, pos, done))) return e;
    *applied = pos;
    if (v.exists) return CV_OK;
    uint64_t cp = 0;
    char *snapshot = NULL;
    if ((e = cv_slot_create(s, repl, s->slot, 0, &cp, &snapshot))) return e;
    warn_other_slots(s);
    e = cv_slot_backfill(s, cp, snapshot, stop);
    free(snapshot);
    if (!e) *applied = cp;
    return e;
}

cv_err cv_slot_join(cv_sync *s, volatile sig_atomic_t *stop, uint64_t *at) {
    PGconn *repl = cv_pg_connect(s->o.source, 1, "join");
    if (PQstatus(repl) != CONNECTION_OK) {
        cv_pg_classify_connect(repl, &s->fault);
        cv_pg_log_fault("replication_connect", "join", NULL, &s->fault, PQerrorMessage(repl));
        cv_sync_error(s, "source", &s->fault);
        PQfinish(repl);
        return s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    }
    static int seq;
    cv_buf name = {0};
    cv_buf_printf(&name, "cdcvec_join_%d_%d", (int)getpid(), __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
    uint64_t cp = 0;
    char *snapshot = NULL;
    /* the temporary slot exists only while repl is open: its snapshot is read before it closes */
    cv_err e = cv_slot_create(s, repl, name.p, 1, &cp, &snapshot);
    if (!e) e = cv_slot_backfill(s, cp, snapshot, stop);
    free(snapshot);
    free(name.p);
    PQfinish(repl);
    if (!e) *at = cp;
    return e;
}
