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
    cv_change *v;
    int n, cap;
} chg_list;

typedef struct {
    cv_sync *s;
    PGconn *repl;
    uint64_t applied;   /* end LSN committed to the sink */
    uint64_t confirmed; /* flush position reported */
    uint64_t received;  /* latest server position seen */
    uint64_t skip_upto; /* transactions ending here or before are in the sink already */
    int in_txn, txn_truncate;
    chg_list txn, pend;
    int pend_truncate;
    uint64_t pend_end;
    double pend_since, pend_commit_unix, last_feedback, last_probe;
    long n_ins, n_upd, n_del, n_trunc;
    int *relmap; /* relation column -> table column, for the table's latest Relation message */
    int rel_ncols;
    int table_gone_logged;
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

static void list_push(chg_list *l, cv_change *c) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->v = realloc(l->v, sizeof(cv_change) * (size_t)l->cap);
        CV_ASSERT(l->v != NULL);
    }
    l->v[l->n++] = *c;
}
static void list_clear(chg_list *l) {
    for (int i = 0; i < l->n; i++)
        cv_change_free(&l->v[i]);
    l->n = 0;
}

/* Logs a replication-connection failure, classified; returns the session's error. */
static cv_err repl_failed(stream *st, PGresult *r, const char *step) {
    return cv_sync_repl_failed(st->s, st->repl, r, step);
}

static cv_err send_feedback(stream *st) {
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

/* Everything up to pos is delivered (0: the stream is idle): the outlet's hook (outlet.h). */
static void reached(cv_sync *s, uint64_t pos) {
    if (s->o.outlet && s->o.outlet->reached) s->o.outlet->reached(s, pos);
}

static cv_err flush_pending(stream *st) {
    if (st->pend.n == 0 && !st->pend_truncate) return CV_OK;
    cv_sync *s = st->s;
    cv_err e =
        cv_sync_deliver(s, st->pend.v, st->pend.n, st->pend_truncate, st->pend_end, 0, st->pend_commit_unix);
    st->pend.n = 0; /* consumed either way: on failure the session ends and the slot replays */
    if (e) return e;
    cv_metric_add(s->rt.m_changes_ins, (double)st->n_ins);
    cv_metric_add(s->rt.m_changes_upd, (double)st->n_upd);
    cv_metric_add(s->rt.m_changes_del, (double)st->n_del);
    cv_metric_add(s->rt.m_changes_trunc, (double)st->n_trunc);
    st->n_ins = st->n_upd = st->n_del = st->n_trunc = 0;
    st->pend_truncate = 0;
    st->applied = st->confirmed = st->pend_end;
    reached(s, st->applied);
    cv_health_applied(s); /* the lag in bytes is the server's figure (health.c) */
    return send_feedback(st);
}

/* Table-column values of a tuple, through the relation map: a column the row image does not
 * have is unknown (its stored value stays), never NULL. */
static void rowvals(stream *st, const cv_pg_tuple *tup, cv_rowval *v) {
    const cv_table *t = &st->s->t;
    for (int i = 0; i < t->ncols; i++)
        v[i] = (cv_rowval){'u', NULL, 0};
    for (int i = 0; i < tup->ncols && i < st->rel_ncols; i++) {
        int c = st->relmap[i];
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
static int text_column_moved(stream *st, const cv_pg_rel *rel, cv_err *e) {
    cv_sync *s = st->s;
    cv_table *t = &s->t;
    char oid[16], att[16];
    snprintf(oid, sizeof oid, "%u", t->oid);
    snprintf(att, sizeof att, "%d", t->attnum[t->text_col]);
    const char *p[2] = {oid, att};
    PGresult *r =
        PQexecParams(s->src,
                     "SELECT attname, attisdropped FROM pg_attribute WHERE attrelid = $1::oid AND attnum = "
                     "$2::int2",
                     2, NULL, p, NULL, NULL, 0);
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

static cv_err on_relation(stream *st, const cv_pg_rel *rel) {
    cv_table *t = &st->s->t;
    free(st->relmap);
    st->rel_ncols = rel->ncols;
    st->relmap = malloc(sizeof(int) * (size_t)(rel->ncols ? rel->ncols : 1));
    CV_ASSERT(st->relmap);
    int text_at = -1;
    for (int i = 0; i < rel->ncols; i++) {
        st->relmap[i] = -1;
        for (int k = 0; k < t->ncols; k++)
            if (strcmp(t->col[k], rel->col[i].name) == 0) st->relmap[i] = k;
        if (t->text_col >= 0 && t->text_alias && strcmp(rel->col[i].name, t->text_alias) == 0)
            st->relmap[i] = t->text_col; /* an earlier name of the followed column */
        if (t->text_col >= 0 && st->relmap[i] == t->text_col) text_at = i;
    }
    cv_err e = CV_OK;
    if (t->text_col >= 0 && text_at < 0) {
        if ((e = flush_pending(st))) return e; /* what came before is fine */
        text_at = text_column_moved(st, rel, &e);
        if (text_at >= 0) st->relmap[text_at] = t->text_col;
    }
    return e;
}

static cv_err on_message(stream *st, const uint8_t *data, size_t len) {
    cv_pg_msg m;
    char err[256];
    cv_sync *s = st->s;
    if (cv_pg_decode(data, len, &m, err, sizeof err)) {
        cv_error("event=bad_replication_message error=\"%s\"", err);
        s->fault = (cv_pg_fault){1, "server", NULL};
        cv_sync_error(s, "source", &s->fault);
        return CV_ERR_TIMEOUT; /* the session restarts and replays: nothing is skipped */
    }
    cv_table *t = &s->t;
    cv_err e = CV_OK;
    cv_rowval *v = calloc((size_t)t->ncols + 1, sizeof *v);
    CV_ASSERT(v);
    cv_change c;
    /* the outlet's look at a row's values while they are at hand (outlet.h) */
    void (*row)(cv_sync *, const cv_rowval *, const cv_rowval *, const char *, cv_change *) =
        s->o.outlet ? s->o.outlet->row : NULL;
    switch (m.type) {
    case 'B':
        st->in_txn = 1;
        st->txn_truncate = 0;
        list_clear(&st->txn);
        break;
    case 'R':
        if (m.rel.oid == t->oid) e = on_relation(st, &m.rel);
        break;
    case 'I':
    case 'U':
    case 'D':
        if (m.relid != t->oid) break;
        if (!st->relmap) {
            cv_error("event=bad_replication_stream error=\"change before its Relation message\"");
            s->fault = (cv_pg_fault){1, "server", NULL};
            e = CV_ERR_TIMEOUT;
            break;
        }
        if (m.type == 'D' || (m.type == 'U' && m.old_kind)) {
            rowvals(st, &m.old_tup, v);
            if ((e = cv_change_from_row(t, v, 1, &c))) break;
            if (m.type == 'U') {
                cv_rowval *nv = calloc((size_t)t->ncols + 1, sizeof *nv);
                CV_ASSERT(nv);
                rowvals(st, &m.new_tup, nv);
                cv_change nc;
                e = cv_change_from_row(t, nv, 0, &nc);
                if (!e && row) row(s, nv, v, "update", &nc);
                free(nv);
                if (e) {
                    cv_change_free(&c);
                    break;
                }
                if (same_key(c.key, nc.key))
                    cv_change_free(&c); /* old row image, key unchanged */
                else
                    list_push(&st->txn, &c); /* key changed: delete the old key */
                list_push(&st->txn, &nc);
                st->n_upd++;
            } else {
                if (row) row(s, v, NULL, "delete", &c);
                list_push(&st->txn, &c);
                st->n_del++;
            }
            break;
        }
        rowvals(st, &m.new_tup, v);
        if ((e = cv_change_from_row(t, v, 0, &c))) break;
        if (row) row(s, v, NULL, m.type == 'I' ? "insert" : "update", &c);
        list_push(&st->txn, &c);
        if (m.type == 'I')
            st->n_ins++;
        else
            st->n_upd++;
        break;
    case 'T':
        for (int i = 0; i < m.ntrunc; i++)
            if (m.trunc_relid[i] == t->oid) {
                st->txn_truncate = 1;
                list_clear(&st->txn); /* everything before the truncate is gone */
                st->n_trunc++;
            }
        break;
    case 'C':
        st->in_txn = 0;
        if (m.end_lsn <= st->skip_upto) { /* applied before a restart: replayed by the slot */
            list_clear(&st->txn);
            break;
        }
        if (st->txn.n == 0 && !st->txn_truncate) {
            if (st->pend.n == 0 && !st->pend_truncate) st->confirmed = st->applied = m.end_lsn;
            break;
        }
        if (st->txn_truncate) {
            list_clear(&st->pend);
            st->pend_truncate = 1;
        }
        if (st->pend.n == 0) st->pend_since = cv_now();
        for (int i = 0; i < st->txn.n; i++)
            list_push(&st->pend, &st->txn.v[i]);
        st->pend_end = m.end_lsn;
        st->pend_commit_unix = (double)m.commit_ts / 1e6 + PG_EPOCH_UNIX;
        cv_health_unapplied(s, st->pend_commit_unix);
        for (int i = 0; i < st->txn.n; i++) { /* where each change comes from (Kafka messages carry it) */
            cv_change *cc = &st->pend.v[st->pend.n - st->txn.n + i];
            cc->lsn = m.end_lsn;
            cc->commit_unix = st->pend_commit_unix;
            cc->txn_seq = i;
            cc->txn_size = st->txn.n;
        }
        st->txn.n = 0; /* moved */
        if (st->pend.n == 0 && st->pend_truncate) st->pend_since = cv_now();
        break;
    default: break; /* Y, O, M */
    }
    if (e == CV_ERR_FORMAT) { /* a row image without its key: the replica identity changed under us */
        s->fault = (cv_pg_fault){0, "config",
                                 "ALTER TABLE ... REPLICA IDENTITY DEFAULT, then start cdcvec sync again"};
        cv_sync_error(s, "source", &s->fault);
        e = CV_ERR_UNSUPPORTED;
    }
    free(v);
    cv_pg_msg_free(&m);
    return e;
}

/* Every PROBE_INTERVAL between transactions: has the table been recreated, or its columns
 * changed? Then the session ends (after the pending batch) and the next one picks it up. */
static cv_err probe(stream *st) {
    cv_sync *s = st->s;
    st->last_probe = cv_now();
    if (!cv_wlock_alive(&s->wlock)) { /* its own connection, to the store's database, was closed */
        cv_warn("event=writer_lock_lost table=%s note=\"the connection holding the table's writer lock was "
                "closed; starting a new session\"",
                s->t.qualified);
        snprintf(s->why, sizeof s->why,
                 "writer_lock_lost: the connection holding the writer lock was closed");
        s->fault = (cv_pg_fault){1, "connection", NULL};
        cv_sync_error(s, "sink", &s->fault);
        return CV_ERR_TIMEOUT;
    }
    uint32_t oid;
    char *layout;
    cv_pg_fault f = {1, "connection", NULL};
    cv_err e = cv_table_probe(s->src, &s->t, &oid, &layout, &f);
    if (e) {
        cv_sync_error(s, "source", &f);
        return e;
    }
    if (oid == 0) { /* dropped; perhaps about to be recreated (a migration): keep streaming */
        if (!st->table_gone_logged++)
            cv_warn("event=table_gone table=%s note=\"the table was dropped; waiting for it to come back\"",
                    s->t.qualified);
    } else if (oid != s->t.oid || strcmp(layout, s->t.layout) != 0) {
        cv_info("event=%s table=%s action=\"finishing the batch in hand, then starting a new session\"",
                oid != s->t.oid ? "table_recreated_seen" : "schema_change_seen", s->t.qualified);
        if (!(e = flush_pending(st))) {
            s->restart_now = 1;
            e = CV_ERR_TIMEOUT;
        }
    }
    free(layout);
    return e;
}

/* One replication session; returns when stopped (CV_OK) or on an error. */
static cv_err session(cv_sync *s, volatile sig_atomic_t *stop, double *streaming_since) {
    stream st = {.s = s};
    cv_err e;
    st.repl = cv_pg_connect(s->o.source, 1, "replication");
    if (PQstatus(st.repl) != CONNECTION_OK) {
        cv_pg_classify_connect(st.repl, &s->fault);
        cv_pg_log_fault("replication_connect", NULL, NULL, &s->fault, PQerrorMessage(st.repl));
        cv_sync_error(s, "source", &s->fault);
        PQfinish(st.repl);
        return s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    }
    if ((e = cv_slot_ensure(s, st.repl, stop, &st.applied))) goto out;
    st.skip_upto = st.confirmed = st.applied;
    reached(s, st.applied);
    if (s->refresh) { /* columns or the embedded text changed since the last run */
        long rows = 0;
        if (!(e = cv_sync_backfill(s, s->src, st.applied, 0, NULL, stop, &rows))) e = cv_sync_record_meta(s);
        if (e) goto out;
        cv_info("event=refresh_done table=%s rows=%ld", s->t.qualified, rows);
    }
    cv_buf sql = {0};
    cv_buf_puts(&sql, "START_REPLICATION SLOT ");
    cv_pg_ident(&sql, s->slot);
    cv_buf_puts(&sql, " LOGICAL 0/0 (proto_version '1', publication_names ");
    {
        cv_buf pubname = {0}, lit = {0};
        cv_pg_ident(&pubname, s->publication);
        char *q = PQescapeLiteral(st.repl, pubname.p, strlen(pubname.p));
        cv_buf_puts(&lit, q ? q : "''");
        PQfreemem(q);
        cv_buf_puts(&sql, lit.p);
        free(pubname.p), free(lit.p);
    }
    cv_buf_puts(&sql, ")");
    PGresult *r = PQexec(st.repl, sql.p);
    free(sql.p);
    if (PQresultStatus(r) != PGRES_COPY_BOTH) {
        e = repl_failed(&st, r, "start_replication");
        PQclear(r);
        goto out;
    }
    PQclear(r);
    char l[24];
    cv_lsn_format(st.applied, l);
    cv_info("event=streaming slot=%s publication=%s table=%s from=%s", s->slot, s->publication,
            s->t.qualified, l);
    *streaming_since = cv_now();
    cv_health_streaming(s, 1);
    st.last_feedback = st.last_probe = cv_now();
    const double batch_s = s->o.batch_ms / 1000.0;
    while (!e) {
        double now = cv_now();
        if (st.pend.n >= s->o.batch_rows ||
            ((st.pend.n || st.pend_truncate) && now - st.pend_since >= batch_s) || (*stop && !st.in_txn))
            if ((e = flush_pending(&st))) break;
        if (*stop) break;
        if (!st.in_txn && st.pend.n == 0 && !st.pend_truncate) reached(s, 0); /* idle */
        if (now - st.last_feedback >= FEEDBACK_INTERVAL && (e = send_feedback(&st))) break;
        if (!st.in_txn && now - st.last_probe >= PROBE_INTERVAL && (e = probe(&st))) break;
        char *buf = NULL;
        int n = PQgetCopyData(st.repl, &buf, 1);
        if (n == 0) {
            double wait = FEEDBACK_INTERVAL - (now - st.last_feedback);
            if (st.pend.n || st.pend_truncate) {
                double d = batch_s - (now - st.pend_since);
                if (d < wait) wait = d;
            }
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
            int moved = !st.in_txn && st.pend.n == 0 && !st.pend_truncate && end > st.confirmed;
            if (moved) /* and answered at once: the next WAL brings the next keepalive */
                reached(s, st.confirmed = end);
            if (buf[17] || moved) e = send_feedback(&st);
        } else if (buf[0] == 'w' && n >= 25) {
            uint64_t end = be64(buf + 9);
            if (end > st.received) st.received = end;
            e = on_message(&st, (const uint8_t *)buf + 25, (size_t)n - 25);
        }
        PQfreemem(buf);
    }
    if (!e && *stop) e = send_feedback(&st);
out:
    cv_health_streaming(s, 0);
    list_clear(&st.txn);
    list_clear(&st.pend);
    free(st.txn.v);
    free(st.pend.v);
    free(st.relmap);
    PQfinish(st.repl);
    return e;
}

/* One attempt of the stage loop (runtime/loop.h): a session, from connecting to its end. */
static cv_err attempt(void *arg, volatile sig_atomic_t *stop, cv_stage_end *end) {
    cv_sync *s = arg;
    cv_err e = cv_sync_session_open(s, 1);
    if (!e) e = session(s, stop, &end->since);
    end->fault = s->fault;
    cv_sync_retry_text(s, e, end->why, sizeof end->why);
    end->restart_now = s->restart_now;
    cv_sync_session_close(s);
    return e;
}

int cv_sync_run(const cv_sync_opts *o, volatile sig_atomic_t *stop) {
    cv_sync s;
    if (cv_sync_runtime_open(&s, o)) {
        cv_error("event=sync_stopped kind=config error=\"cannot start the model or the embedding client\"");
        cv_sync_runtime_close(&s);
        return 1;
    }
    s.stop = stop;
    if (cv_health_monitor(&s, 1)) {
        cv_sync_runtime_close(&s);
        return 1;
    }
    const cv_stage st = {.name = "sync", .attempt = attempt, .arg = &s, .m_retries = s.rt.m_retries};
    int rc = cv_stage_run(&st, stop);
    cv_sync_runtime_close(&s);
    return rc;
}
