/* backfill.c: the table's rows in key order into the apply stage (the snapshot backfill of a
 * new slot, refreshes after schema changes, `cdcvec backfill`). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../pg/cv_keytext.h"
#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "sync_impl.h"

/* The page after the one being applied is read meanwhile: its statement is sent on db before
 * the page goes to cv_sync_deliver and its rows are received after (cv_read_page_send/_recv),
 * so PostgreSQL scans, formats and sends it while the model and the sink work.
 *
 * Why libpq's asynchronous calls and not a reader thread: the rows must come from db itself
 * (the initial backfill reads through the replication slot's exported snapshot, imported into
 * db's transaction; another connection would need a snapshot exported again from db and a
 * transaction of its own), and a PGconn takes one thread and one statement at a time. Sending
 * the next statement keeps db in this thread and everything else as it was: the row hook, the
 * error classification, cv_sync_error and the stop flag all run where they ran. Nothing else
 * uses db while a page is applied: the initial snapshot's db is a connection of its own; for
 * `cdcvec backfill` and refreshes db is the session's source connection, which delivery reaches
 * only through cv_sync_fetch, for changes whose text the stream could not give (a page read
 * gives every text; cv_sync_fetch asserts it). What stays unoverlapped: converting the rows
 * (cv_change_from_row, after delivery), and, for pages larger than the socket buffers, the part
 * of the page the server could not send yet. Memory: the page being applied (changes) plus the
 * next one (libpq's result): two pages. */
cv_err cv_sync_backfill(cv_sync *s, PGconn *db, uint64_t position, int force, const char *start_after,
                        volatile sig_atomic_t *stop, long *rows) {
    /* rows per sink transaction: 512, or what fills the store's requests (Upstash: 1000) */
    const int page = cv_sink_batch_rows(s->sink) > 512 ? cv_sink_batch_rows(s->sink) : 512;
    char **after = NULL;
    if (start_after && *start_after) {
        cv_buf err = {0};
        if (cv_key_parse(start_after, s->t.nkeys, &after, &err)) {
            cv_error(
                "event=bad_option option=--after value=\"%s\" error=\"%s (expected %d primary key value(s), "
                "as the progress line prints them)\"",
                start_after, err.p ? err.p : "", s->t.nkeys);
            free(err.p);
            s->fault = (cv_pg_fault){0, "config", NULL};
            return CV_ERR_ARG;
        }
        free(err.p);
    }
    cv_change *chg = calloc(page, sizeof *chg);
    CV_ASSERT(chg);
    long done = 0, total = 0;
    cv_buf sql = {0};
    cv_buf_printf(&sql, "SELECT count(*) FROM %s", s->t.qualified);
    PGresult *r = PQexec(db, sql.p);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) total = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    free(sql.p);
    const double t0 = cv_wall_now();
    double last_print = 0;
    cv_pg_fault f = {1, "connection", NULL};
    cv_err e = CV_OK, next_e = CV_OK; /* next_e: sending the next page's statement failed */
    int in_flight = 0;                /* a page's statement is sent and not received */
    if (!(stop && *stop)) {
        if ((e = cv_read_page_send(db, &s->t, after, page, &f)))
            cv_sync_error(s, "source", &f);
        else
            in_flight = 1;
    }
    while (!e) {
        if (stop && *stop) {
            e = CV_ERR_SHUTDOWN;
            break;
        }
        int n = 0;
        const double tr = cv_now(); /* read_ms: receiving and converting this page, sending the next */
        CV_ASSERT(in_flight);
        in_flight = 0;
        if ((e = cv_read_page_recv(db, &s->t, chg, &n, &f))) {
            cv_sync_error(s, "source", &f);
            break;
        }
        if (n == 0) break;
        /* the next page starts after this page's last key */
        cv_key_free(after);
        after = calloc((size_t)s->t.nkeys + 1, sizeof(char *));
        CV_ASSERT(after);
        for (int k = 0; k < s->t.nkeys; k++)
            after[k] = strdup(chg[n - 1].key[k]);
        for (int i = 0; i < n; i++)
            chg[i].lsn = position;
        if (!(stop && *stop)) { /* the next page is read while this one is applied */
            cv_pg_fault nf = {1, "connection", NULL};
            if ((next_e = cv_read_page_send(db, &s->t, after, page, &nf)))
                f = nf;
            else
                in_flight = 1;
        }
        const double tp = cv_now();
        if ((e = cv_sync_deliver(s, chg, n, 0, position, force, 0))) break; /* classified */
        cv_debug("event=backfill_page table=%s rows=%d read_ms=%.1f apply_ms=%.1f next_in_flight=%d",
                 s->t.qualified, n, (tp - tr) * 1e3, (cv_now() - tp) * 1e3, in_flight);
        done += n;
        s->bf_done.len = 0;
        cv_key_format((const char *const *)after, s->t.nkeys, &s->bf_done);
        double now = cv_wall_now();
        double rate = done / (now - t0 > 1e-6 ? now - t0 : 1e-6),
               eta = total > done ? (total - done) / rate : 0;
        s->bf_rows = done, s->bf_total = total, s->bf_eta_s = eta;
        if (now - last_print > 1.0 || n < page) {
            cv_buf last = {0};
            cv_key_format((const char *const *)after, s->t.nkeys, &last);
            fprintf(stderr, "backfill %s: %ld/%ld rows, %.0f rows/s, ETA %.0f s, last key %s\n",
                    s->t.qualified, done, total, rate, eta, last.p ? last.p : "");
            free(last.p);
            last_print = now;
        }
        memset(chg, 0, sizeof *chg * page);
        if (next_e) { /* after the page in hand was applied, as when reading it failed */
            cv_sync_error(s, "source", &f);
            e = next_e;
        }
    }
    if (in_flight) cv_read_page_discard(db); /* stopped or failed: db is free for what follows */
    cv_key_free(after);
    free(chg);
    if (rows) *rows = done;
    return e;
}

/* `cdcvec backfill` writes the store's copy of the table: it takes the writer lock (wlock.c) a
 * sync, a Kafka sink stage or verify --repair of the table holds, and is refused while one
 * runs. Beside a running stream it would race it: a row it read before the stream deleted or
 * changed it would be written back afterwards, stale, with nothing left to correct it. */
static cv_err lock_writer(cv_sync *s) {
    return cv_sync_writer_lock_for(s, "backfill", "backfill",
                                   "(a running sync keeps the store up to date without one)");
}

/* `cdcvec backfill`: a retriable failure (the source or the store unreachable, the embedding
 * service busy) opens a new session after a backoff and goes on after the last key applied, so
 * a long backfill survives a restart of either database. */
int cv_backfill_run(const cv_sync_opts *o, volatile sig_atomic_t *stop) {
    cv_sync s;
    srand((unsigned)(cv_wall_now() * 1e3));
    cv_err e = cv_sync_runtime_open(&s, o);
    char *resume = o->after && *o->after ? strdup(o->after) : NULL;
    long total = 0;
    for (int attempt = 0; !e;) {
        e = cv_sync_session_open(&s, 0);
        if (!e) e = lock_writer(&s);
        if (!e) {
            uint64_t pos, bpos;
            int done;
            e = cv_sink_state(s.sink, &pos, &done, &bpos);
            long rows = 0;
            s.bf_done.len = 0;
            /* rows keep the last applied position: the stream replays idempotently over them */
            if (!e) e = cv_sync_backfill(&s, s.src, pos, o->force, resume, stop, &rows);
            total += rows;
            if (s.bf_done.len) {
                free(resume);
                resume = strdup(s.bf_done.p);
                attempt = 0; /* progress: the backoff starts over */
            }
        }
        cv_pg_fault f = s.fault;
        cv_sync_session_close(&s);
        if (!e || (stop && *stop) || e != CV_ERR_TIMEOUT) break;
        double d = cv_stage_backoff(++attempt);
        cv_warn("event=backfill_retry attempt=%d in_seconds=%.2f kind=%s after=\"%s\"", attempt, d,
                f.kind ? f.kind : "connection", resume ? resume : "");
        cv_stage_sleep(d, stop);
        if (stop && *stop) break;
        e = CV_OK;
    }
    if (!e && !(stop && *stop)) {
        cv_info("event=backfill_done table=%s rows=%ld", o->table, total);
    } else {
        if (s.fault.fix) cv_error("event=backfill_stopped kind=%s fix=\"%s\"", s.fault.kind, s.fault.fix);
        if (resume) /* what resumes it, as the progress line prints it */
            cv_warn("event=backfill_interrupted rows=%ld resume=\"--after %s\"", total, resume);
        if (!e) e = CV_ERR_SHUTDOWN;
    }
    free(resume);
    cv_sync_runtime_close(&s);
    return e ? 1 : 0;
}
