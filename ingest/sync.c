/* sync.c: the replication stream of `cdcvec sync`, and its retries.
 *
 * One session = one replication connection: make sure the publication and slot exist (a new
 * slot exports a snapshot, through which the existing rows are embedded before anything
 * else is sent on that connection), START_REPLICATION from the slot's confirmed position,
 * then read CopyData: 'w' carries one pgoutput message, 'k' a keepalive. Changes of a
 * transaction are buffered until its Commit; committed transactions accumulate into a
 * batch that the apply stage writes (one store transaction, recording the last commit's end
 * LSN) when it holds --batch-rows changes or its oldest change waited --batch-ms. Only then
 * is that LSN sent as the flush position.
 *
 * Schema changes: row images are mapped to the table's columns by name, and a column a row
 * image does not have keeps its stored payload value. A renamed text column is followed (by
 * attnum); a dropped one stops the sync with the fix. Every few seconds the catalog is
 * probed: a new column set, or a table dropped and recreated (a new OID), ends the session
 * after the pending batch, and the next one refreshes every row's payload (texts re-embedded
 * only where they changed) or rebuilds from a new snapshot.
 *
 * Retries: every failure is classified where it enters. Permanent ones (privileges,
 * configuration, authentication, missing objects) stop with exit 1 and the fix; retriable
 * ones start a new session after an exponential backoff with jitter, capped at 30 s, that
 * only resets after a session streamed for a minute. The model, the embedding server and its
 * HTTP port stay up across sessions. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "pgoutput.h"
#include "sync_impl.h"

#define FEEDBACK_INTERVAL 10.0 /* seconds; wal_sender_timeout defaults to 60 */
#define PROBE_INTERVAL    2.0  /* seconds between catalog probes */
#define PG_EPOCH_UNIX     946684800.0

typedef struct {
    cv_tables *T;
    PGconn *repl;
    uint64_t confirmed; /* flush position reported: the smallest of the tables' applied positions */
    uint64_t received;  /* latest server position seen */
    int in_txn;
    double last_feedback, last_probe;
} stream;

static uint64_t be64(const char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (uint8_t)p[i];
    return v;
}
static void put64(char *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (char)(v & 0xFF);
}

static void list_push(cv_chg_list *l, cv_change *c) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = realloc(l->v, sizeof(cv_change) * (size_t)l->cap);
        CV_ASSERT(l->v != NULL);
    }
    l->v[l->n++] = *c;
}
static void list_clear(cv_chg_list *l) {
    for (int i = 0; i < l->n; i++)
        cv_change_free(&l->v[i]);
    l->n = 0;
}

/* Logs a replication-connection failure, classified; returns the session's error. */
static cv_err repl_failed(stream *st, PGresult *r, const char *step) {
    return cv_sync_repl_failed(st->T->p[0].s, st->repl, r, step);
}

/* The position every table has in its store: the smallest of their applied positions (a held
 * or joining table keeps the slot where its store is). */
static uint64_t position_all(const stream *st) {
    uint64_t m = UINT64_MAX;
    for (int i = 0; i < st->T->n; i++)
        if (st->T->p[i].applied < m) m = st->T->p[i].applied;
    return m == UINT64_MAX ? st->confirmed : m;
}

static int pipe_clean(const cv_pipe *p) {
    return p->state == CV_PIPE_STREAMING && p->pend.n == 0 && !p->pend_truncate && p->txn.n == 0 &&
           !p->txn_truncate;
}

static cv_err send_feedback(stream *st) {
    uint64_t pos = position_all(st);
    for (int i = 0; i < st->T->n; i++)
        cv_health_position(st->T->p[i].s, st->T->p[i].applied);
    if (pos > st->confirmed) st->confirmed = pos;
    st->T->confirmed = st->confirmed;
    char buf[34];
    buf[0] = 'r';
    put64(buf + 1, st->received > st->confirmed ? st->received : st->confirmed); /* written */
    put64(buf + 9, st->confirmed);                                               /* flushed: slot advances */
    put64(buf + 17, st->confirmed);                                              /* applied */
    put64(buf + 25, (uint64_t)((cv_wall_now() - PG_EPOCH_UNIX) * 1e6));
    buf[33] = 0;
    if (PQputCopyData(st->repl, buf, sizeof buf) != 1 || PQflush(st->repl) != 0)
        return repl_failed(st, NULL, "feedback");
    st->last_feedback = cv_now();
    return CV_OK;
}

/* Everything up to pos is delivered in every table (0: the stream is idle): the outlet's hook
 * (outlet.h), on the first table's state, which carries the outlet. */
static void reached(stream *st, uint64_t pos) {
    cv_sync *s = st->T->p[0].s;
    if (s->o.outlet && s->o.outlet->reached) s->o.outlet->reached(s, pos);
}

/* What follows pipe p's delivery (e: its result): counters and its position, or the table held
 * when its store failed and other tables can go on (tables.c). */
static cv_err delivered(stream *st, cv_pipe *p, cv_err e) {
    cv_sync *s = p->s;
    p->pend.n =
        0; /* consumed either way: on failure the session ends (or the table is held) and the slot replays */
    p->pend_truncate = 0;
    if (e) return cv_tables_hold(st->T, p, e);
    cv_metric_add(s->rt.m_changes_ins, (double)p->n_ins);
    cv_metric_add(s->rt.m_changes_upd, (double)p->n_upd);
    cv_metric_add(s->rt.m_changes_del, (double)p->n_del);
    cv_metric_add(s->rt.m_changes_trunc, (double)p->n_trunc);
    p->n_ins = p->n_upd = p->n_del = p->n_trunc = 0;
    if (p->pend_end > p->applied) p->applied = p->pend_end;
    cv_health_applied(s); /* the lag in bytes is the server's figure (health.c) */
    return CV_OK;
}

static int pending(const cv_pipe *p) { return p->pend.n > 0 || p->pend_truncate; }

static cv_err deliver(cv_pipe *p) {
    return cv_sync_deliver(p->s, p->pend.v, p->pend.n, p->pend_truncate, p->pend_end, 0, p->pend_commit_unix);
}

static cv_err flush_pipe(stream *st, cv_pipe *p) { return pending(p) ? delivered(st, p, deliver(p)) : CV_OK; }

/* After deliveries: the position reached in every table, to /wait and to the server. */
static cv_err advanced(stream *st) {
    uint64_t pos = position_all(st);
    reached(st, pos);
    return send_feedback(st);
}

static cv_err flush_pending(stream *st, cv_pipe *p) {
    cv_err e = flush_pipe(st, p);
    return e ? e : advanced(st);
}

static void *deliver_main(void *arg) {
    cv_pipe *p = arg;
    p->flush_err = deliver(p);
    return NULL;
}

/* Every table's pending batch (when one is due, before a restart, a probe's finding, a stop).
 * Several tables' batches go at once, each on a thread of its own with its own apply stage and
 * store: their texts meet in the embedding server's batches (filled across tables), and a slow
 * store does not delay the others' commits. */
static cv_err flush_all(stream *st) {
    cv_tables *T = st->T;
    int n = 0;
    for (int i = 0; i < T->n; i++)
        n += pending(&T->p[i]);
    if (!n) return CV_OK;
    pthread_t *th = n > 1 && T->apply ? calloc((size_t)T->n, sizeof *th) : NULL;
    char *started = th ? calloc((size_t)T->n, 1) : NULL;
    for (int i = 0; i < T->n && th; i++) {
        cv_pipe *p = &T->p[i];
        if (pending(p)) started[i] = pthread_create(&th[i], NULL, deliver_main, p) == 0;
    }
    cv_err first = CV_OK;
    for (int i = 0; i < T->n; i++) {
        cv_pipe *p = &T->p[i];
        if (!pending(p)) continue;
        cv_err e;
        if (started && started[i]) {
            pthread_join(th[i], NULL);
            e = delivered(st, p, p->flush_err);
        } else {
            e = flush_pipe(st, p); /* one table, or no thread */
        }
        if (e && !first) first = e;
    }
    free(th), free(started);
    return first ? first : advanced(st);
}

/* Table-column values of a tuple, through the relation map: a column the row image does not
 * have is unknown (its stored value stays), never NULL. */
static void rowvals(const cv_pipe *p, const cv_pg_tuple *tup, cv_rowval *v) {
    const cv_table *t = &p->s->t;
    for (int i = 0; i < t->ncols; i++)
        v[i] = (cv_rowval){'u', NULL, 0};
    for (int i = 0; i < tup->ncols && i < p->rel_ncols; i++) {
        int c = p->relmap[i];
        if (c < 0) continue;
        v[c] = (cv_rowval){tup->col[i].kind, tup->col[i].val, tup->col[i].len};
    }
}

static int same_key(char **a, char **b) {
    for (int k = 0; a[k] || b[k]; k++)
        if (!a[k] || !b[k] || strcmp(a[k], b[k]) != 0) return 0;
    return 1;
}

/* The text column is not in a Relation message by its name: renamed (follow it, by attnum)
 * or dropped (stop). Returns the relation's column index of the text column, or -1 with
 * *e set. */
static int text_column_moved(cv_pipe *p, const cv_pg_rel *rel, cv_err *e) {
    cv_sync *s = p->s;
    cv_table *t = &s->t;
    char oid[16], att[16];
    snprintf(oid, sizeof oid, "%u", t->oid);
    snprintf(att, sizeof att, "%d", t->attnum[t->text_col]);
    const char *par[2] = {oid, att};
    PGresult *r =
        PQexecParams(s->src,
                     "SELECT attname, attisdropped FROM pg_attribute WHERE attrelid = $1::oid AND attnum = "
                     "$2::int2",
                     2, NULL, par, NULL, NULL, 0);
    int at = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 1)[0] == 'f') {
        for (int i = 0; i < rel->ncols; i++)
            if (strcmp(rel->col[i].name, PQgetvalue(r, 0, 0)) == 0) at = i;
    }
    if (at >= 0) {
        cv_warn("event=text_column_renamed table=%s from=%s to=%s note=\"following the rename; pass "
                "--text-column "
                "%s from now on\"",
                t->qualified, t->col[t->text_col], rel->col[at].name, rel->col[at].name);
        free(t->col[t->text_col]);
        t->col[t->text_col] = strdup(rel->col[at].name);
    } else {
        cv_error(
            "event=text_column_dropped table=%s column=%s error=\"the embedded column is gone from the "
            "table: "
            "later changes would have no text\" fix=\"choose another with --text-column or --template, and "
            "--resnapshot 1\"",
            t->qualified, t->col[t->text_col]);
        s->fault = (cv_pg_fault){0, "config",
                                 "choose another column with --text-column or --template, and "
                                 "--resnapshot 1"};
        *e = CV_ERR_UNSUPPORTED;
    }
    PQclear(r);
    return at;
}

static cv_err on_relation(stream *st, cv_pipe *p, const cv_pg_rel *rel) {
    cv_table *t = &p->s->t;
    free(p->relmap);
    p->rel_ncols = rel->ncols;
    p->relmap = malloc(sizeof(int) * (size_t)(rel->ncols ? rel->ncols : 1));
    CV_ASSERT(p->relmap);
    int text_at = -1;
    for (int i = 0; i < rel->ncols; i++) {
        p->relmap[i] = -1;
        for (int k = 0; k < t->ncols; k++)
            if (strcmp(t->col[k], rel->col[i].name) == 0) p->relmap[i] = k;
        if (t->text_col >= 0 && t->text_alias && strcmp(rel->col[i].name, t->text_alias) == 0)
            p->relmap[i] = t->text_col; /* an earlier name of the followed column */
        if (t->text_col >= 0 && p->relmap[i] == t->text_col) text_at = i;
    }
    cv_err e = CV_OK;
    if (t->text_col >= 0 && text_at < 0) {
        if ((e = flush_pending(st, p))) return e; /* what came before is fine */
        text_at = text_column_moved(p, rel, &e);
        if (text_at >= 0) p->relmap[text_at] = t->text_col;
    }
    return e;
}

/* The next streaming pipe after `after` (NULL: from the first) whose relation this is, or NULL (a
 * table of the publication we do not follow, or one held or joining: its changes come again from
 * the slot later). A table has two pipes while cdcvec migrate fills a shadow index beside the
 * live one (migrate.c): each gets every change, through its own description. */
static cv_pipe *pipe_of(stream *st, uint32_t relid, cv_pipe *after) {
    for (int i = after ? (int)(after - st->T->p) + 1 : 0; i < st->T->n; i++) {
        cv_pipe *p = &st->T->p[i];
        if (p->open && p->s->t.oid == relid && p->state == CV_PIPE_STREAMING) return p;
    }
    return NULL;
}

/* A change of pipe p: I, U or D. */
static cv_err on_change(cv_pipe *p, const cv_pg_msg *m) {
    cv_sync *s = p->s;
    cv_table *t = &s->t;
    cv_err e = CV_OK;
    if (!p->relmap) {
        cv_error("event=bad_replication_stream table=%s error=\"change before its Relation message\"",
                 t->qualified);
        s->fault = (cv_pg_fault){1, "server", NULL};
        return CV_ERR_TIMEOUT;
    }
    cv_rowval *v = calloc((size_t)t->ncols + 1, sizeof *v);
    CV_ASSERT(v);
    cv_change c;
    /* the outlet's look at a row's values while they are at hand (outlet.h) */
    void (*row)(cv_sync *, const cv_rowval *, const cv_rowval *, const char *, cv_change *) =
        s->o.outlet ? s->o.outlet->row : NULL;
    if (m->type == 'D' || (m->type == 'U' && m->old_kind)) {
        rowvals(p, &m->old_tup, v);
        if ((e = cv_change_from_row(t, v, 1, &c))) goto out;
        if (m->type == 'U') {
            cv_rowval *nv = calloc((size_t)t->ncols + 1, sizeof *nv);
            CV_ASSERT(nv);
            rowvals(p, &m->new_tup, nv);
            cv_change nc;
            e = cv_change_from_row(t, nv, 0, &nc);
            if (!e && row) row(s, nv, v, "update", &nc);
            free(nv);
            if (e) {
                cv_change_free(&c);
                goto out;
            }
            if (same_key(c.key, nc.key))
                cv_change_free(&c); /* old row image, key unchanged */
            else
                list_push(&p->txn, &c); /* key changed: delete the old key */
            list_push(&p->txn, &nc);
            p->n_upd++;
        } else {
            if (row) row(s, v, NULL, "delete", &c);
            list_push(&p->txn, &c);
            p->n_del++;
        }
        goto out;
    }
    rowvals(p, &m->new_tup, v);
    if ((e = cv_change_from_row(t, v, 0, &c))) goto out;
    if (row) row(s, v, NULL, m->type == 'I' ? "insert" : "update", &c);
    list_push(&p->txn, &c);
    if (m->type == 'I')
        p->n_ins++;
    else
        p->n_upd++;
out:
    free(v);
    if (e == CV_ERR_FORMAT) { /* a row image without its key: the replica identity changed under us */
        s->fault = (cv_pg_fault){0, "config",
                                 "ALTER TABLE ... REPLICA IDENTITY DEFAULT, then start cdcvec sync again"};
        cv_sync_error(s, "source", &s->fault);
        e = CV_ERR_UNSUPPORTED;
    }
    return e;
}

/* A Commit: each table's changes of the transaction join its pending batch. */
static void on_commit(stream *st, const cv_pg_msg *m) {
    double commit_unix = (double)m->commit_ts / 1e6 + PG_EPOCH_UNIX;
    for (int i = 0; i < st->T->n; i++) {
        cv_pipe *p = &st->T->p[i];
        if (p->txn.n == 0 && !p->txn_truncate) {
            if (pipe_clean(p) && m->end_lsn > p->applied) p->applied = m->end_lsn;
            continue;
        }
        if (m->end_lsn <= p->skip_upto || p->state != CV_PIPE_STREAMING) {
            /* applied before a restart (replayed by the slot), or the table is held */
            list_clear(&p->txn);
            p->txn_truncate = 0;
            if (pipe_clean(p) && m->end_lsn > p->applied) p->applied = m->end_lsn;
            continue;
        }
        if (p->txn_truncate) {
            list_clear(&p->pend);
            p->pend_truncate = 1;
        }
        if (p->pend.n == 0) p->pend_since = cv_now();
        for (int k = 0; k < p->txn.n; k++)
            list_push(&p->pend, &p->txn.v[k]);
        p->pend_end = m->end_lsn;
        p->pend_commit_unix = commit_unix;
        cv_health_unapplied(p->s, commit_unix);
        for (int k = 0; k < p->txn.n; k++) { /* where each change comes from (Kafka messages carry it) */
            cv_change *cc = &p->pend.v[p->pend.n - p->txn.n + k];
            cc->lsn = m->end_lsn;
            cc->commit_unix = commit_unix;
            cc->txn_seq = k;
            cc->txn_size = p->txn.n;
        }
        p->txn.n = 0; /* moved */
        p->txn_truncate = 0;
    }
}

static cv_err on_message(stream *st, const uint8_t *data, size_t len) {
    cv_pg_msg m;
    char err[256];
    cv_sync *s0 = st->T->p[0].s;
    if (cv_pg_decode(data, len, &m, err, sizeof err)) {
        cv_error("event=bad_replication_message error=\"%s\"", err);
        s0->fault = (cv_pg_fault){1, "server", NULL};
        cv_sync_error(s0, "source", &s0->fault);
        return CV_ERR_TIMEOUT; /* the session restarts and replays: nothing is skipped */
    }
    cv_err e = CV_OK;
    cv_pipe *p;
    switch (m.type) {
    case 'B':
        st->in_txn = 1;
        for (int i = 0; i < st->T->n; i++) {
            list_clear(&st->T->p[i].txn);
            st->T->p[i].txn_truncate = 0;
        }
        break;
    case 'R':
        for (p = pipe_of(st, m.rel.oid, NULL); p && !e; p = pipe_of(st, m.rel.oid, p))
            e = on_relation(st, p, &m.rel);
        break;
    case 'I':
    case 'U':
    case 'D':
        for (p = pipe_of(st, m.relid, NULL); p && !e; p = pipe_of(st, m.relid, p)) {
            e = on_change(p, &m);
            if (e && p->s != s0) s0->fault = p->s->fault; /* the retry line's */
        }
        break;
    case 'T':
        for (int i = 0; i < m.ntrunc; i++)
            for (p = pipe_of(st, m.trunc_relid[i], NULL); p; p = pipe_of(st, m.trunc_relid[i], p)) {
                p->txn_truncate = 1;
                list_clear(&p->txn); /* everything before the truncate is gone */
                p->n_trunc++;
            }
        break;
    case 'C':
        st->in_txn = 0;
        if (st->T->stop_at && m.end_lsn > st->T->stop_at) { /* past a migration's checkpoint: the slot
                                                              replays it after the checkpoint */
            for (int i = 0; i < st->T->n; i++) {
                list_clear(&st->T->p[i].txn);
                st->T->p[i].txn_truncate = 0;
            }
            st->T->paused = 1;
            break;
        }
        on_commit(st, &m);
        break;
    default: break; /* Y, O, M */
    }
    cv_pg_msg_free(&m);
    return e;
}

/* Pipe p, every PROBE_INTERVAL between transactions: has the table been recreated, or its
 * columns changed? Then the session ends (after the pending batches) and the next one picks
 * it up. */
static cv_err probe_pipe(stream *st, cv_pipe *p) {
    cv_sync *s = p->s;
    if (!cv_wlock_alive(&s->wlock)) { /* its own connection, to the store's database, was closed */
        cv_warn("event=writer_lock_lost table=%s note=\"the connection holding the table's writer lock was "
                "closed; starting a new session\"",
                s->t.qualified);
        snprintf(st->T->p[0].s->why, sizeof s->why,
                 "writer_lock_lost: the connection holding the writer lock of %s was closed", s->t.qualified);
        s->fault = (cv_pg_fault){1, "connection", NULL};
        cv_sync_error(s, "sink", &s->fault);
        st->T->p[0].s->fault = s->fault;
        return CV_ERR_TIMEOUT;
    }
    uint32_t oid;
    char *layout;
    cv_pg_fault f = {1, "connection", NULL};
    cv_err e = cv_table_probe(s->src, &s->t, &oid, &layout, &f);
    if (e) {
        cv_sync_error(s, "source", &f);
        st->T->p[0].s->fault = f;
        return e;
    }
    if (oid == 0) { /* dropped; perhaps about to be recreated (a migration): keep streaming */
        if (!p->gone_logged++)
            cv_warn("event=table_gone table=%s note=\"the table was dropped; waiting for it to come back\"",
                    s->t.qualified);
    } else if (oid != s->t.oid || strcmp(layout, s->t.layout) != 0) {
        cv_info("event=%s table=%s action=\"finishing the batch in hand, then starting a new session\"",
                oid != s->t.oid ? "table_recreated_seen" : "schema_change_seen", s->t.qualified);
        if (!(e = flush_all(st))) {
            st->T->p[0].s->restart_now = 1;
            e = CV_ERR_TIMEOUT;
        }
    }
    free(layout);
    return e;
}

static cv_err probe(stream *st) {
    st->last_probe = cv_now();
    for (int i = 0; i < st->T->n; i++) {
        cv_pipe *p = &st->T->p[i];
        if (p->state != CV_PIPE_STREAMING || !p->open) continue;
        cv_err e = probe_pipe(st, p);
        if (e) return e;
    }
    return CV_OK;
}

/* START_REPLICATION from the slot's confirmed position. */
static cv_err start_replication(stream *st) {
    cv_sync *s = st->T->p[0].s;
    cv_buf sql = {0};
    cv_buf_puts(&sql, "START_REPLICATION SLOT ");
    cv_pg_ident(&sql, s->slot);
    cv_buf_puts(&sql, " LOGICAL 0/0 (proto_version '1', publication_names ");
    {
        cv_buf pubname = {0}, lit = {0};
        cv_pg_ident(&pubname, s->publication);
        char *q = PQescapeLiteral(st->repl, pubname.p, strlen(pubname.p));
        cv_buf_puts(&lit, q ? q : "''");
        PQfreemem(q);
        cv_buf_puts(&sql, lit.p);
        free(pubname.p), free(lit.p);
    }
    cv_buf_puts(&sql, ")");
    PGresult *r = PQexec(st->repl, sql.p);
    free(sql.p);
    cv_err e = CV_OK;
    if (PQresultStatus(r) != PGRES_COPY_BOTH) e = repl_failed(st, r, "start_replication");
    PQclear(r);
    return e;
}

/* Is any table's batch due (or must it go now)? */
static int due(const stream *st, double now, int stopping) {
    for (int i = 0; i < st->T->n; i++) {
        const cv_pipe *p = &st->T->p[i];
        if (p->pend.n == 0 && !p->pend_truncate) continue;
        if (p->pend.n >= p->s->o.batch_rows || now - p->pend_since >= p->s->o.batch_ms / 1000.0 ||
            (stopping && !st->in_txn))
            return 1;
    }
    return 0;
}

/* Seconds until the first table's batch is due (or cap). */
static double next_due(const stream *st, double now, double cap) {
    for (int i = 0; i < st->T->n; i++) {
        const cv_pipe *p = &st->T->p[i];
        if (p->pend.n == 0 && !p->pend_truncate) continue;
        double d = p->s->o.batch_ms / 1000.0 - (now - p->pend_since);
        if (d < cap) cap = d;
    }
    return cap;
}

static int all_clean(const stream *st) {
    for (int i = 0; i < st->T->n; i++)
        if (st->T->p[i].state == CV_PIPE_STREAMING && !pipe_clean(&st->T->p[i])) return 0;
    return 1;
}

/* One replication session; returns when stopped (CV_OK) or on an error. */
static cv_err session(cv_tables *T, volatile sig_atomic_t *stop, double *streaming_since) {
    cv_sync *s = T->p[0].s;
    stream st = {.T = T};
    cv_err e = cv_tables_session_open(T); /* first: its checks name what is missing (privileges) */
    if (e) return e;
    st.repl = cv_pg_connect(s->o.source, 1, "replication");
    if (PQstatus(st.repl) != CONNECTION_OK) {
        cv_pg_classify_connect(st.repl, &s->fault);
        cv_pg_log_fault("replication_connect", NULL, NULL, &s->fault, PQerrorMessage(st.repl));
        cv_sync_error(s, "source", &s->fault);
        PQfinish(st.repl);
        return s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    }
    uint64_t start = 0;
    if ((e = cv_tables_slot(T, st.repl, stop, &start))) goto out;
    st.confirmed = start;
    T->confirmed = start;
    reached(&st, position_all(&st));
    if ((e = start_replication(&st))) goto out;
    char l[24];
    cv_lsn_format(start, l);
    if (T->n == 1)
        cv_info("event=streaming slot=%s publication=%s table=%s from=%s", s->slot, s->publication,
                s->t.qualified, l);
    else {
        cv_buf names = {0};
        for (int i = 0; i < T->n; i++)
            cv_buf_printf(&names, "%s%s%s", i ? "," : "",
                          T->p[i].s->t.qualified ? T->p[i].s->t.qualified : "?",
                          T->p[i].state == CV_PIPE_HELD      ? "(held)"
                          : T->p[i].state == CV_PIPE_JOINING ? "(joining)"
                                                             : "");
        cv_info("event=streaming slot=%s publication=%s tables=%s from=%s", s->slot, s->publication, names.p,
                l);
        cv_buf_free(&names);
    }
    *streaming_since = cv_now();
    for (int i = 0; i < T->n; i++)
        cv_health_streaming(T->p[i].s, T->p[i].state == CV_PIPE_STREAMING);
    st.last_feedback = st.last_probe = cv_now();
    while (!e) {
        double now = cv_now();
        if (due(&st, now, *stop) && (e = flush_all(&st))) break;
        if (*stop) break;
        if (!st.in_txn && (e = cv_tables_tick(T, stop))) {
            if (!flush_all(&st)) send_feedback(&st);
            break;
        }
        if (!st.in_txn && all_clean(&st)) reached(&st, 0); /* idle */
        if (now - st.last_feedback >= FEEDBACK_INTERVAL && (e = send_feedback(&st))) break;
        if (!st.in_txn && now - st.last_probe >= PROBE_INTERVAL && (e = probe(&st))) break;
        char *buf = NULL;
        int n = PQgetCopyData(st.repl, &buf, 1);
        if (n == 0) {
            double wait = next_due(&st, now, FEEDBACK_INTERVAL - (now - st.last_feedback));
            if (wait > 0.1) wait = 0.1; /* stop requests are noticed within 100 ms */
            if (wait < 0) wait = 0;
            fd_set fds;
            FD_ZERO(&fds);
            int sock = PQsocket(st.repl);
            FD_SET(sock, &fds);
            struct timeval tv = {(long)wait, (long)((wait - (long)wait) * 1e6)};
            if (select(sock + 1, &fds, NULL, NULL, &tv) < 0) continue;
            if (!PQconsumeInput(st.repl)) e = repl_failed(&st, NULL, "receive");
            continue;
        }
        if (n < 0) {
            PGresult *end = PQgetResult(st.repl);
            e = repl_failed(&st, end && PQresultStatus(end) == PGRES_FATAL_ERROR ? end : NULL,
                            "stream_ended");
            PQclear(end);
            break;
        }
        if (buf[0] == 'k' && n >= 18) {
            uint64_t end = be64(buf + 1);
            if (end > st.received) st.received = end;
            /* nothing of ours in flight: the position may move with the server's */
            int moved = 0;
            if (!st.in_txn && all_clean(&st)) {
                for (int i = 0; i < T->n; i++)
                    if (T->p[i].state == CV_PIPE_STREAMING && end > T->p[i].applied) T->p[i].applied = end;
                moved = position_all(&st) > st.confirmed;
            }
            if (moved) /* and answered at once: the next WAL brings the next keepalive */
                reached(&st, position_all(&st));
            if (buf[17] || moved) e = send_feedback(&st);
            /* the server has sent everything before a migration's checkpoint (sentPtr past it) */
            if (T->stop_at && end >= T->stop_at && !st.in_txn) T->paused = 1;
        } else if (buf[0] == 'w' && n >= 25) {
            uint64_t end = be64(buf + 9);
            if (end > st.received) st.received = end;
            e = on_message(&st, (const uint8_t *)buf + 25, (size_t)n - 25);
        }
        PQfreemem(buf);
        if (!e && T->paused && !st.in_txn) { /* a migration's checkpoint (migrate.c) */
            if (!(e = flush_all(&st)) && !(e = send_feedback(&st))) {
                PQfinish(st.repl); /* the check may take long: no walsender waits on this connection */
                st.repl = NULL;
                e = cv_migrate_checkpoint(T, stop);
            }
            goto out;
        }
    }
    if (!e && *stop) e = send_feedback(&st);
out:
    for (int i = 0; i < T->n; i++) {
        cv_pipe *p = &T->p[i];
        cv_health_streaming(p->s, 0);
        list_clear(&p->txn);
        list_clear(&p->pend);
        free(p->txn.v);
        free(p->pend.v);
        free(p->relmap);
        p->txn = p->pend = (cv_chg_list){0};
        p->relmap = NULL;
        p->rel_ncols = 0;
        p->txn_truncate = p->pend_truncate = 0;
        p->n_ins = p->n_upd = p->n_del = p->n_trunc = 0;
    }
    PQfinish(st.repl);
    return e;
}

/* One attempt of the stage loop (runtime/loop.h): a session, from connecting to its end. */
static cv_err attempt(void *arg, volatile sig_atomic_t *stop, cv_stage_end *end) {
    cv_tables *T = arg;
    cv_sync *s = T->p[0].s;
    s->restart_now = 0;
    cv_err e = session(T, stop, &end->since);
    end->fault = s->fault;
    cv_sync_retry_text(s, e, end->why, sizeof end->why);
    end->restart_now = s->restart_now;
    cv_tables_session_close(T);
    return e;
}

int cv_sync_run_tables(const cv_sync_opts *o, int n, cv_sync_reload_fn reload, void *reload_arg,
                       volatile sig_atomic_t *stop, volatile sig_atomic_t *hup) {
    return cv_sync_run_pipeline(o, n, reload, reload_arg, NULL, stop, hup);
}

int cv_sync_run_pipeline(const cv_sync_opts *o, int n, cv_sync_reload_fn reload, void *reload_arg,
                         struct cv_migration *mig, volatile sig_atomic_t *stop, volatile sig_atomic_t *hup) {
    cv_sync s;
    if (cv_sync_runtime_open(&s, &o[0])) {
        cv_error("event=sync_stopped kind=config error=\"cannot start the model or the embedding client\"");
        cv_sync_runtime_close(&s);
        return 1;
    }
    s.stop = stop;
    cv_tables T = {
        .many = o[0].pipeline || n > 1, .reload = reload, .reload_arg = reload_arg, .hup = hup, .mig = mig};
    int rc = 1;
    cv_migrate_metrics(&T, s.rt.reg);
    if (cv_tables_open(&T, &s, o, n)) goto out;
    if (cv_health_monitor(&s, 1)) goto out;
    const cv_stage st = {.name = "sync", .attempt = attempt, .arg = &T, .m_retries = s.rt.m_retries};
    rc = cv_stage_run(&st, stop);
out:
    cv_tables_close(&T);
    cv_sync_runtime_close(&s);
    return rc;
}

int cv_sync_run(const cv_sync_opts *o, volatile sig_atomic_t *stop) {
    return cv_sync_run_tables(o, 1, NULL, NULL, stop, NULL);
}
