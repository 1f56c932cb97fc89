/* tables.c: the tables of a pipeline on one slot (sync_impl.h: cv_tables, cv_pipe).
 *
 * One replication connection streams every table of the pipeline file; each table has its own
 * session (source connection, description, writer lock, store) and its own position in its
 * store. The slot is confirmed at the smallest of the tables' positions, so no table is ever
 * acknowledged past what its store holds (docs/ARCHITECTURE.md, "Many tables on one slot").
 *
 * A table whose store fails is held: its changes are let go (the slot keeps them), the others
 * go on, and its store is tried again with the stage loop's backoff; once it answers, the
 * session starts again from the slot, and every other table skips what it already has.
 * A table new to the slot (added to the file, or whose backfill never finished) joins: a
 * thread backfills it through the exported snapshot of a temporary slot of its own, created
 * after the table entered the publication, so that its changes after the snapshot come from
 * the pipeline's slot (which is held at or before the snapshot's position meanwhile) and those
 * before it are in the snapshot: no gap, no duplicate. Then the session starts again. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "../common/cv_time.h"
#include "sync_impl.h"

#define MAX_TABLES 256

/* Pipe p's own apply stage (a twin of the first table's: the same counters), so that the tables'
 * batches are delivered at once, on threads of their own (sync.c), and a joining table's backfill
 * needs nothing of the stream's. The first table uses the runtime's. */
static void own_apply(cv_tables *T, cv_pipe *p) {
    if (!T->apply || p->s == T->p[0].s) return;
    CV_ASSERT(cv_apply_twin(T->apply, &p->apply) == CV_OK);
    p->s->rt.apply = p->apply;
    cv_apply_set_chunk(p->apply, p->s->o.chunk_max_tokens, p->s->o.chunk_overlap);
}

int cv_tables_open(cv_tables *T, cv_sync *s0, const cv_sync_opts *o, int n) {
    if (n > MAX_TABLES) {
        cv_error("event=config_invalid tables=%d error=\"a pipeline runs at most %d tables\" fix=\"split the "
                 "file: one pipeline (and slot, --slot) per group of tables\"",
                 n, MAX_TABLES);
        return -1;
    }
    T->p = calloc(MAX_TABLES, sizeof *T->p); /* never moves: join threads hold their pipe */
    CV_ASSERT(T->p);
    T->cap = MAX_TABLES;
    T->apply = s0->rt.apply;
    s0->tables = T;
    T->p[0].s = s0;
    T->n = 1;
    for (int i = 1; i < n; i++) {
        cv_sync *s = calloc(1, sizeof *s);
        CV_ASSERT(s);
        s->o = o[i];
        if (!s->o.outlet || !s->o.outlet->each_table)
            s->o.outlet = NULL; /* the first table's state carries the outlet (search page, /wait) */
        s->o.http = NULL;
        s->rt = s0->rt; /* borrowed: never closed through this copy */
        s->stop = s0->stop;
        s->tables = T;
        T->p[T->n].s = s;
        own_apply(T, &T->p[T->n++]);
        if (s->o.index_suffix && T->mops && T->mops->shadow_open(T, &T->p[T->n - 1])) return -1;
    }
    return 0;
}

static void join_wait(cv_pipe *p) {
    if (!p->th_started) return;
    p->join_stop = 1;
    pthread_join(p->th, NULL);
    p->th_started = 0;
}

static void pipe_free(cv_tables *T, int i) {
    cv_pipe *p = &T->p[i];
    join_wait(p);
    cv_sync_session_close(p->s);
    if (i > 0) {
        cv_apply_free(p->apply);
        if (T->mops) T->mops->shadow_close(p);
        cv_buf_free(&p->s->bf_done);
        free(p->s);
    }
    memset(p, 0, sizeof *p);
}

void cv_tables_close(cv_tables *T) {
    if (!T->p) return;
    for (int i = T->n - 1; i >= 0; i--)
        pipe_free(T, i);
    free(T->p);
    T->p = NULL;
    T->n = 0;
}

/* The error of pipe p becomes the session's (the retry line and the exit read p[0]'s). */
static void take_fault(cv_tables *T, cv_pipe *p) {
    cv_sync *s0 = T->p[0].s;
    if (p->s == s0) return;
    s0->fault = p->s->fault;
    if (p->s->why[0]) {
        cv_buf w = {0};
        cv_buf_printf(&w, "%s: %s", p->s->t.qualified ? p->s->t.qualified : p->s->o.table, p->s->why);
        snprintf(s0->why, sizeof s0->why, "%s", w.p ? w.p : "");
        cv_buf_free(&w);
    }
}

cv_err cv_tables_hold(cv_tables *T, cv_pipe *p, cv_err e) {
    if (T->n == 1 || !cv_stage_retriable(e, &p->s->fault)) {
        take_fault(T, p);
        return e;
    }
    char why[512];
    cv_sync_retry_text(p->s, e, why, sizeof why);
    p->state = CV_PIPE_HELD;
    p->failures++;
    double in = cv_stage_backoff(p->failures);
    p->retry_at = cv_now() + in;
    for (int k = 0; k < p->pend.n; k++)
        cv_change_free(&p->pend.v[k]);
    for (int k = 0; k < p->txn.n; k++)
        cv_change_free(&p->txn.v[k]);
    p->pend.n = p->txn.n = 0;
    p->pend_truncate = p->txn_truncate = 0;
    cv_health_streaming(p->s, 0);
    cv_health_store(p->s, 0);
    char l[24];
    cv_lsn_format(p->applied, l);
    cv_warn("event=table_held table=%s attempt=%d in_seconds=%.1f kind=%s error=\"%s\" position=%s "
            "note=\"the other tables go on; the slot keeps this table's changes from its position\"",
            p->s->t.qualified ? p->s->t.qualified : p->s->o.table, p->failures, in,
            p->s->fault.kind ? p->s->fault.kind : "connection", why, l);
    return CV_OK;
}

cv_err cv_tables_session_open(cv_tables *T) {
    int nopen = 0;
    cv_err last = CV_OK;
    for (int i = 0; i < T->n; i++) {
        cv_pipe *p = &T->p[i];
        p->state = CV_PIPE_STREAMING;
        p->applied = p->skip_upto = 0;
        p->open = 0;
        p->join_done = 0;
        cv_err e = cv_sync_session_open(p->s, 1);
        if (!e) {
            p->open = 1;
            nopen++;
            if (T->many) cv_health_table(p->s, 1);
            continue;
        }
        last = e;
        if (T->n == 1 || !cv_stage_retriable(e, &p->s->fault)) {
            take_fault(T, p);
            return e;
        }
        cv_health_table(p->s, 1);
        cv_tables_hold(T, p, e);
        cv_sync_session_close(p->s);
    }
    return nopen ? CV_OK : last;
}

/* One table's first backfill, through the new slot's snapshot (a thread of its own). */
typedef struct first_job {
    cv_pipe *p;
    uint64_t cp;
    const char *snapshot;
    volatile sig_atomic_t *stop;
    pthread_t th;
    int run, started;
    cv_err e;
} first_job;

static void *first_main(void *arg) {
    first_job *j = arg;
    j->e = cv_slot_backfill(j->p->s, j->cp, j->snapshot, j->stop);
    return NULL;
}

/* The pipeline's slot for every open table: an existing one gives each table its position
 * (*start: the slot's confirmed position), tables new to it are marked JOINING; a missing one is
 * created and every table backfilled through its snapshot. */
static cv_err ensure_slot(cv_tables *T, PGconn *repl, volatile sig_atomic_t *stop, uint64_t *start) {
    cv_sync *s = NULL; /* the first table whose session is open: the slot's checks run on its connection */
    for (int i = 0; i < T->n && !s; i++)
        if (T->p[i].open) s = T->p[i].s;
    CV_ASSERT(s);
    cv_slot_seen v = {.holder = "-"};
    cv_err e = cv_slot_look(s, &v);
    if (e) return e;
    int rebuild = s->o.resnapshot || v.lost;
    if (v.exists && rebuild) { /* every table is backfilled again from a new snapshot */
        if ((e = cv_slot_rebuild(s, &v, 0, 1))) return e;
    }
    if (v.exists) {
        *start = v.confirmed;
        for (int i = 0; i < T->n; i++) {
            cv_pipe *p = &T->p[i];
            p->applied = v.confirmed;
            if (!p->open) continue;
            uint64_t pos, bpos;
            int done;
            if ((e = cv_sink_state(p->s->sink, &pos, &done, &bpos))) {
                e = cv_sync_batch_failed(p->s, e);
                if ((e = cv_tables_hold(T, p, e))) return e;
                continue;
            }
            /* a table new to the slot (or one that left the publication and came back, or whose
             * backfill did not finish, or that was recreated): backfilled beside the others
             * through a snapshot of its own (tables.c) */
            const char *why = !done ? "its backfill has not finished (or never started)"
                              : p->s->pub_added
                                  ? "it was not in the publication: changes may have been missed"
                              : p->s->resnapshot ? "the table was dropped and recreated"
                              : p->s->refresh    ? "its columns or its text changed since the last run"
                                                 : NULL;
            if (why) {
                cv_info("event=table_joining table=%s reason=\"%s\"", p->s->t.qualified, why);
                p->state = CV_PIPE_JOINING;
                continue;
            }
            p->skip_upto = pos;
            if (pos > p->applied) p->applied = pos;
        }
        return CV_OK;
    }
    /* no slot: created, and every table backfilled through its snapshot */
    for (int i = 0; i < T->n; i++) {
        cv_pipe *p = &T->p[i];
        if (!p->open) continue;
        uint64_t pos, bpos;
        int done;
        if ((e = cv_sink_state(p->s->sink, &pos, &done, &bpos))) return cv_sync_batch_failed(p->s, e);
        cv_slot_seen none = {.holder = "-"};
        if ((e = cv_slot_rebuild(p->s, &none, pos, done))) return e; /* a store that was done: refused */
    }
    uint64_t cp = 0;
    char *snapshot = NULL;
    if ((e = cv_slot_create(s, repl, s->slot, 0, &cp, &snapshot))) return e;
    *start = cp;
    /* every table at once, each through the same exported snapshot on a connection of its own
     * (repl stays idle meanwhile, which keeps the snapshot), with its own apply stage */
    first_job *jobs = calloc((size_t)T->n, sizeof *jobs);
    CV_ASSERT(jobs);
    for (int i = 0; i < T->n; i++) {
        cv_pipe *p = &T->p[i];
        p->applied = p->skip_upto = cp;
        if (!p->open || p->state != CV_PIPE_STREAMING) continue;
        jobs[i] = (first_job){.p = p, .cp = cp, .snapshot = snapshot, .stop = stop, .run = 1};
        jobs[i].started =
            T->apply && T->n > 1 && pthread_create(&jobs[i].th, NULL, first_main, &jobs[i]) == 0;
        if (!jobs[i].started) first_main(&jobs[i]);
    }
    for (int i = 0; i < T->n; i++) {
        if (!jobs[i].run) continue;
        if (jobs[i].started) pthread_join(jobs[i].th, NULL);
        if (jobs[i].e && !e) {
            e = jobs[i].e;
            take_fault(T, jobs[i].p);
        }
    }
    free(jobs);
    free(snapshot);
    return e;
}

cv_err cv_tables_slot(cv_tables *T, PGconn *repl, volatile sig_atomic_t *stop, uint64_t *start) {
    cv_sync *s0 = T->p[0].s;
    if (!T->many) { /* one table: its own slot, as it always had */
        cv_pipe *p = &T->p[0];
        cv_err e = cv_slot_ensure(s0, repl, stop, &p->applied);
        if (e) return e;
        p->skip_upto = p->applied;
        *start = p->applied;
        if (s0->refresh) { /* columns or the embedded text changed since the last run */
            long rows = 0;
            if (!(e = cv_sync_backfill(s0, s0->src, p->applied, 0, NULL, stop, &rows)))
                e = cv_sync_record_meta(s0);
            if (e) return e;
            cv_info("event=refresh_done table=%s rows=%ld", s0->t.qualified, rows);
        }
        return CV_OK;
    }
    cv_err e = ensure_slot(T, repl, stop, start);
    for (int i = 0; i < T->n && !e; i++)
        if (T->p[i].state == CV_PIPE_JOINING) e = cv_tables_join(T, &T->p[i]);
    return e;
}

void cv_tables_session_close(cv_tables *T) {
    for (int i = 0; i < T->n; i++) {
        cv_pipe *p = &T->p[i];
        if (p->state == CV_PIPE_JOINING) { /* the thread sees the stop flag or finishes its page */
            join_wait(p);
            p->state = CV_PIPE_STREAMING;
        }
        join_wait(p); /* a held table's probe of its store (try_store) */
        cv_sync_session_close(p->s);
        p->open = 0;
    }
}

/* ---- joining ---- */

static void *join_main(void *arg) {
    cv_pipe *p = arg;
    uint64_t at = 0;
    cv_err e = cv_slot_join(p->s, &p->join_stop, &at);
    if (!e) {
        char l[24];
        cv_lsn_format(at, l);
        cv_info("event=table_joined table=%s position=%s note=\"backfilled beside the other tables; its "
                "changes after the snapshot come from the pipeline's slot\"",
                p->s->t.qualified, l);
    }
    p->join_err = e;
    __atomic_store_n(&p->joined, e ? -1 : 1, __ATOMIC_RELEASE);
    return NULL;
}

cv_err cv_tables_join(cv_tables *T, cv_pipe *p) {
    (void)T;
    p->joined = 0;
    p->join_stop = *p->s->stop;
    cv_health_streaming(p->s, 0);
    if (pthread_create(&p->th, NULL, join_main, p) != 0) return CV_ERR_NOMEM;
    p->th_started = 1;
    return CV_OK;
}

/* ---- between transactions ---- */

/* A held table's store, tried again on a thread of its own (a store that hangs would stall the
 * stream thread, and every other table, for as long as its connection attempt lasts): its session
 * opened anew and its state read; p->probed 1 when it answers, -1 (probe_err) when not. */
static void *probe_main(void *arg) {
    cv_pipe *p = arg;
    cv_sync_session_close(p->s);
    cv_err e = cv_sync_session_open(p->s, 1);
    if (!e) {
        uint64_t pos, bpos;
        int done;
        if ((e = cv_sink_state(p->s->sink, &pos, &done, &bpos))) e = cv_sync_batch_failed(p->s, e);
    }
    if (e) cv_sync_session_close(p->s);
    p->probe_err = e;
    __atomic_store_n(&p->probed, e ? -1 : 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Held pipe p: its probe started when due, its answer taken when done. 1: its store answers (the
 * session starts again); 0: not yet, or held again; *fatal: a permanent error. */
static int try_store(cv_tables *T, cv_pipe *p, double now, cv_err *fatal) {
    if (!p->th_started) {
        if (now < p->retry_at) return 0;
        p->open = 0;
        p->probed = 0;
        if (pthread_create(&p->th, NULL, probe_main, p) == 0)
            p->th_started = 1;
        else
            probe_main(p);
    }
    if (!__atomic_load_n(&p->probed, __ATOMIC_ACQUIRE)) return 0; /* still trying */
    join_wait(p);
    cv_err e = p->probe_err;
    if (!e) {
        cv_info("event=table_store_back table=%s note=\"starting a new session: the slot replays its changes "
                "from its position\"",
                p->s->t.qualified);
        return 1;
    }
    if (!cv_stage_retriable(e, &p->s->fault)) {
        take_fault(T, p);
        *fatal = e;
        return 0;
    }
    cv_tables_hold(T, p, e);
    return 0;
}

/* The reload (SIGHUP): tables added (they join after a new session starts), tables removed
 * (their pipe stops; their store stays as it is, their table leaves the publication). A table
 * whose options changed, or the removal of the first table, is refused with the fix; the rest
 * of the file applies. 1: the set changed. */
static int reload(cv_tables *T) {
    cv_sync_opts *o = NULL;
    int n = 0;
    if (T->reload(T->reload_arg, &o, &n) || n < 1) {
        cv_error("event=reload_refused note=\"the pipeline file could not be read (the line above says why); "
                 "running on with the tables as they were\"");
        free(o);
        return 0;
    }
    int changed = 0;
    cv_sync *s0 = T->p[0].s;
    /* removed */
    for (int i = T->n - 1; i >= 0; i--) {
        cv_sync *s = T->p[i].s;
        int keep = 0;
        for (int j = 0; j < n && !keep; j++)
            keep = !strcmp(o[j].table, s->o.table);
        if (keep) continue;
        if (i == 0) {
            cv_error(
                "event=reload_refused table=%s error=\"the first table of the file carries the search page "
                "and /wait\" fix=\"keep it first in the file, or restart cdcvec sync to remove it\"",
                s->o.table);
            continue;
        }
        if (s0->src && s->t.qualified) { /* its changes are no longer decoded for it */
            cv_buf sql = {0}, pub = {0};
            cv_pg_ident(&pub, s->publication ? s->publication : s0->publication);
            cv_buf_printf(&sql, "ALTER PUBLICATION %s DROP TABLE %s", pub.p, s->t.qualified);
            PGresult *r = PQexec(s0->src, sql.p);
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                cv_warn("event=publication_drop_failed table=%s error=\"%s\"", s->t.qualified,
                        PQresultErrorMessage(r));
            PQclear(r);
            free(sql.p), free(pub.p);
        }
        cv_info("event=table_removed table=%s note=\"its pipe stops; its store is left as it is\"",
                s->o.table);
        cv_health_table(s, 0);
        pipe_free(T, i);
        memmove(&T->p[i], &T->p[i + 1], sizeof *T->p * (size_t)(T->n - i - 1));
        T->n--;
        memset(&T->p[T->n], 0, sizeof *T->p);
        changed = 1;
    }
    /* added, or changed */
    for (int j = 0; j < n; j++) {
        cv_pipe *have = NULL;
        for (int i = 0; i < T->n && !have; i++)
            if (!strcmp(T->p[i].s->o.table, o[j].table)) have = &T->p[i];
        if (have) {
            const cv_sync_opts *a = &have->s->o, *b = &o[j];
#define DIFF(f) strcmp(a->f ? a->f : "", b->f ? b->f : "")
            if (DIFF(text_column) || DIFF(template_) || DIFF(sink) || DIFF(ns) ||
                a->chunk_max_tokens != b->chunk_max_tokens || a->chunk_overlap != b->chunk_overlap)
                cv_error("event=reload_refused table=%s error=\"its text, store or chunking changed\" "
                         "fix=\"restart cdcvec sync to apply it (a changed text source also needs a new "
                         "store: the restart refuses to mix two in one index)\"",
                         o[j].table);
#undef DIFF
            continue;
        }
        if (T->n == T->cap) {
            cv_error("event=reload_refused table=%s error=\"a pipeline runs at most %d tables\"", o[j].table,
                     T->cap);
            continue;
        }
        cv_sync *s = calloc(1, sizeof *s);
        CV_ASSERT(s);
        s->o = o[j];
        s->o.outlet = NULL;
        s->o.http = NULL;
        s->rt = s0->rt;
        s->rt.apply = T->apply;
        s->stop = s0->stop;
        s->tables = T;
        T->p[T->n].s = s;
        own_apply(T, &T->p[T->n++]);
        cv_info(
            "event=table_added table=%s note=\"it joins now: backfilled from a snapshot of its own while the "
            "others stream\"",
            o[j].table);
        changed = 1;
    }
    free(o);
    return changed;
}

/* A table added by a reload starts joining at once, the others streaming on: its session,
 * then its backfill thread; the slot stays where it is now (T->confirmed) until it is done. */
static cv_err start_added(cv_tables *T, cv_pipe *p) {
    p->applied = T->confirmed;
    cv_err e = cv_sync_session_open(p->s, 1);
    if (!e) {
        p->open = 1;
        cv_health_table(p->s, 1);
        cv_info("event=table_joining table=%s reason=\"added to the pipeline file\"", p->s->t.qualified);
        p->state = CV_PIPE_JOINING;
        return cv_tables_join(T, p);
    }
    if (!cv_stage_retriable(e, &p->s->fault)) {
        take_fault(T, p);
        return e;
    }
    cv_health_table(p->s, 1);
    cv_sync_session_close(p->s);
    return cv_tables_hold(T, p, e); /* its store tried again later; then the session starts again */
}

cv_err cv_tables_tick(cv_tables *T, volatile sig_atomic_t *stop) {
    cv_sync *s0 = T->p[0].s;
    if (*stop) return CV_OK;
    if (T->reload && T->hup && *T->hup != T->hup_done) {
        T->hup_done = *T->hup;
        cv_info("event=sighup_reload note=\"reading the pipeline file again\"");
        reload(T);
        for (int i = 0; i < T->n; i++) /* the added ones: not open, yet streaming as far as a session knows */
            if (!T->p[i].open && T->p[i].state == CV_PIPE_STREAMING) {
                cv_err e = start_added(T, &T->p[i]);
                if (e) return e;
            }
    }
    /* a joined table, or a held one whose store answers, needs the stream again from the slot: the
     * session starts again, but only once no other table is still joining (a restart would begin
     * its backfill again) */
    int running = 0, ready = 0;
    for (int i = 0; i < T->n; i++) {
        cv_pipe *p = &T->p[i];
        if (p->state != CV_PIPE_JOINING || p->join_done) continue;
        if (!__atomic_load_n(&p->joined, __ATOMIC_ACQUIRE)) {
            running++;
            continue;
        }
        int ok = p->joined > 0;
        join_wait(p);
        if (ok) {
            p->failures = 0;
            p->join_done = 1;
            continue;
        }
        if (!cv_stage_retriable(p->join_err, &p->s->fault)) {
            take_fault(T, p);
            return p->join_err;
        }
        cv_tables_hold(T, p, p->join_err);
    }
    for (int i = 0; i < T->n; i++)
        ready += T->p[i].join_done;
    if (running) return CV_OK;
    if (ready) {
        snprintf(s0->why, sizeof s0->why,
                 "table_joined: the session starts again for the tables that joined");
        s0->restart_now = 1;
        return CV_ERR_TIMEOUT;
    }
    if (T->mig && T->mops) {
        cv_err e = T->mops->tick(T);
        if (e) return e;
    }
    double now = cv_now();
    for (int i = 0; i < T->n; i++) {
        cv_pipe *p = &T->p[i];
        if (p->state != CV_PIPE_HELD) continue;
        cv_err fatal = CV_OK;
        if (try_store(T, p, now, &fatal)) {
            p->failures = 0;
            snprintf(s0->why, sizeof s0->why, "table_store_back: %s", p->s->t.qualified);
            s0->restart_now = 1;
            return CV_ERR_TIMEOUT;
        }
        if (fatal) return fatal;
    }
    return CV_OK;
}
