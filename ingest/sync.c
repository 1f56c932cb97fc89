/* sync.c: the replication stream of `cdcvec sync`.
 *
 * One session = one replication connection: make sure the publication and slot exist (a new
 * slot exports a snapshot, through which the existing rows are embedded before anything
 * else is sent on that connection), START_REPLICATION from the slot's confirmed position,
 * then read CopyData: 'w' carries one pgoutput message, 'k' a keepalive. Changes of a
 * transaction are buffered until its Commit; committed transactions accumulate into a
 * batch that is applied to the sink (one sink transaction, recording the last commit's end
 * LSN) when it holds --batch-rows changes or its oldest change waited --batch-ms. Only then
 * is that LSN sent as the flush position. A failed session is retried with backoff; it
 * replays from the slot, and transactions at or below the sink's recorded LSN are skipped. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include "../common/cv_log.h"
#include "pgoutput.h"
#include "sync_impl.h"

#define FEEDBACK_INTERVAL 10.0 /* seconds; wal_sender_timeout defaults to 60 */
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
    double pend_since, pend_commit_unix, last_feedback;
    long n_ins, n_upd, n_del, n_trunc;
    int *relmap; /* relation column -> table column, for the table's latest Relation message */
    int rel_ncols;
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

static cv_err send_feedback(stream *st) {
    char buf[34];
    buf[0] = 'r';
    put64(buf + 1, st->received > st->confirmed ? st->received : st->confirmed); /* written */
    put64(buf + 9, st->confirmed);                                               /* flushed: slot advances */
    put64(buf + 17, st->confirmed);                                              /* applied */
    put64(buf + 25, (uint64_t)((cv_wall_now() - PG_EPOCH_UNIX) * 1e6));
    buf[33] = 0;
    if (PQputCopyData(st->repl, buf, sizeof buf) != 1 || PQflush(st->repl) != 0) {
        cv_error("event=feedback_failed error=\"%s\"", PQerrorMessage(st->repl));
        return CV_ERR_TIMEOUT;
    }
    st->last_feedback = cv_now();
    return CV_OK;
}

static cv_err flush_pending(stream *st) {
    if (st->pend.n == 0 && !st->pend_truncate) return CV_OK;
    cv_sync *s = st->s;
    cv_err e =
        cv_sync_flush(s, st->pend.v, st->pend.n, st->pend_truncate, st->pend_end, 0, st->pend_commit_unix);
    st->pend.n = 0; /* consumed either way: on failure the session ends and the slot replays */
    if (e) return e;
    cv_metric_add(s->m_changes_ins, (double)st->n_ins);
    cv_metric_add(s->m_changes_upd, (double)st->n_upd);
    cv_metric_add(s->m_changes_del, (double)st->n_del);
    cv_metric_add(s->m_changes_trunc, (double)st->n_trunc);
    st->n_ins = st->n_upd = st->n_del = st->n_trunc = 0;
    st->pend_truncate = 0;
    st->applied = st->confirmed = st->pend_end;
    cv_metric_set(s->m_lag, st->received > st->applied ? (double)(st->received - st->applied) : 0);
    return send_feedback(st);
}

/* Table-column values of a tuple, through the relation map. */
static void rowvals(stream *st, const cv_pg_tuple *tup, cv_rowval *v) {
    const cv_table *t = &st->s->t;
    for (int i = 0; i < t->ncols; i++)
        v[i] = (cv_rowval){'n', NULL, 0};
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

static cv_err on_message(stream *st, const uint8_t *data, size_t len) {
    cv_pg_msg m;
    char err[256];
    if (cv_pg_decode(data, len, &m, err, sizeof err)) {
        cv_error("event=bad_replication_message error=\"%s\"", err);
        return CV_ERR_FORMAT; /* the session restarts and replays: nothing is skipped */
    }
    cv_sync *s = st->s;
    cv_table *t = &s->t;
    cv_err e = CV_OK;
    cv_rowval *v = calloc((size_t)t->ncols + 1, sizeof *v);
    cv_change c;
    switch (m.type) {
    case 'B':
        st->in_txn = 1;
        st->txn_truncate = 0;
        list_clear(&st->txn);
        break;
    case 'R':
        if (m.rel.oid == t->oid) {
            free(st->relmap);
            st->rel_ncols = m.rel.ncols;
            st->relmap = malloc(sizeof(int) * (size_t)(m.rel.ncols ? m.rel.ncols : 1));
            for (int i = 0; i < m.rel.ncols; i++) {
                st->relmap[i] = -1;
                for (int k = 0; k < t->ncols; k++)
                    if (strcmp(t->col[k], m.rel.col[i].name) == 0) st->relmap[i] = k;
                if (st->relmap[i] < 0)
                    cv_warn(
                        "event=unknown_column table=%s column=%s note=\"not in the payload until restart\"",
                        t->qualified, m.rel.col[i].name);
            }
        }
        break;
    case 'I':
    case 'U':
    case 'D':
        if (m.relid != t->oid) break;
        if (!st->relmap) {
            cv_error("event=bad_replication_stream error=\"change before its Relation message\"");
            e = CV_ERR_FORMAT;
            break;
        }
        if (m.type == 'D' || (m.type == 'U' && m.old_kind)) {
            rowvals(st, &m.old_tup, v);
            if ((e = cv_change_from_row(t, v, 1, &c))) break;
            if (m.type == 'U') {
                cv_rowval *nv = calloc((size_t)t->ncols + 1, sizeof *nv);
                rowvals(st, &m.new_tup, nv);
                cv_change nc;
                e = cv_change_from_row(t, nv, 0, &nc);
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
                list_push(&st->txn, &c);
                st->n_del++;
            }
            break;
        }
        rowvals(st, &m.new_tup, v);
        if ((e = cv_change_from_row(t, v, 0, &c))) break;
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
        st->txn.n = 0; /* moved */
        st->pend_end = m.end_lsn;
        st->pend_commit_unix = (double)m.commit_ts / 1e6 + PG_EPOCH_UNIX;
        if (st->pend.n == 0 && st->pend_truncate) st->pend_since = cv_now();
        break;
    default: break; /* Y, O, M */
    }
    free(v);
    cv_pg_msg_free(&m);
    return e;
}

/* Ensures the slot (creating it and backfilling through its snapshot when needed). */
static cv_err ensure_slot(stream *st, volatile sig_atomic_t *stop) {
    cv_sync *s = st->s;
    uint64_t pos, bpos;
    int done;
    cv_err e = cv_sink_state(s->sink, &pos, &done, &bpos);
    if (e) return e;
    const char *p[1] = {s->slot};
    PGresult *r =
        PQexecParams(s->src, "SELECT plugin, wal_status FROM pg_replication_slots WHERE slot_name = $1", 1,
                     NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cv_error("event=slot_query error=\"%s\"", PQresultErrorMessage(r));
        PQclear(r);
        return CV_ERR_TIMEOUT;
    }
    int exists = PQntuples(r) == 1;
    int lost = exists && strcmp(PQgetvalue(r, 0, 1), "lost") == 0;
    PQclear(r);
    if (exists && (s->o.resnapshot || !done || lost)) {
        cv_warn("event=slot_recreate slot=%s reason=\"%s\"", s->slot,
                s->o.resnapshot ? "--resnapshot"
                : lost          ? "slot lost its WAL (max_slot_wal_keep_size)"
                                : "backfill had not finished");
        r = PQexecParams(s->src, "SELECT pg_drop_replication_slot($1)", 1, NULL, p, NULL, NULL, 0);
        PQclear(r);
        exists = 0;
        done = 0;
    } else if (!exists && done && !s->o.resnapshot) {
        char l[24];
        cv_lsn_format(pos, l);
        cv_error(
            "event=slot_missing slot=%s sink_position=%s error=\"the replication slot is gone, so changes "
            "after %s may be lost\" fix=\"run cdcvec sync again with --resnapshot to rebuild the index\"",
            s->slot, l, l);
        return CV_ERR_NOTFOUND;
    }
    st->skip_upto = st->applied = st->confirmed = pos;
    if (exists) return CV_OK;
    char sql[1024];
    snprintf(sql, sizeof sql, "CREATE_REPLICATION_SLOT \"%s\" LOGICAL pgoutput EXPORT_SNAPSHOT", s->slot);
    r = PQexec(st->repl, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cv_error("event=slot_create slot=%s error=\"%s\"", s->slot, PQresultErrorMessage(r));
        PQclear(r);
        return CV_ERR_TIMEOUT;
    }
    uint64_t cp = 0;
    cv_lsn_parse(PQgetvalue(r, 0, 1), &cp);
    char snapshot[128], cps[24];
    snprintf(snapshot, sizeof snapshot, "%s", PQgetvalue(r, 0, 2));
    PQclear(r);
    cv_lsn_format(cp, cps);
    cv_info("event=slot_created slot=%s consistent_point=%s snapshot=%s", s->slot, cps, snapshot);
    /* backfill through the exported snapshot, before any other command on the replication
     * connection (which would end the snapshot) */
    PGconn *bf = PQconnectdb(s->o.source);
    e = PQstatus(bf) == CONNECTION_OK ? CV_OK : CV_ERR_TIMEOUT;
    if (!e) {
        char set[256];
        snprintf(set, sizeof set,
                 "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '%s'", snapshot);
        r = PQexec(bf, set);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            cv_error("event=snapshot_import error=\"%s\"", PQresultErrorMessage(r));
            e = CV_ERR_TIMEOUT;
        }
        PQclear(r);
    }
    long rows = 0;
    if (!e) e = cv_sink_backfill_mark(s->sink, cp, 0);
    if (!e) e = cv_sync_backfill(s, bf, cp, 0, NULL, stop, &rows);
    if (!e) PQclear(PQexec(bf, "COMMIT"));
    PQfinish(bf);
    if (!e) e = cv_sink_backfill_mark(s->sink, cp, 1);
    if (e) return e;
    char l[24];
    cv_lsn_format(cp, l);
    cv_info("event=backfill_done table=%s rows=%ld position=%s", s->t.qualified, rows, l);
    st->skip_upto = st->applied = st->confirmed = cp;
    return CV_OK;
}

/* One replication session; returns when stopped (CV_OK) or on an error. */
static cv_err session(cv_sync *s, volatile sig_atomic_t *stop) {
    stream st = {.s = s};
    cv_err e;
    const char *kw[] = {"dbname", "replication", NULL}, *val[] = {s->o.source, "database", NULL};
    st.repl = PQconnectdbParams(kw, val, 1);
    PQsetNoticeProcessor(st.repl, cv_pg_notice, NULL);
    if (PQstatus(st.repl) != CONNECTION_OK) {
        cv_error("event=replication_connect error=\"%s\"", PQerrorMessage(st.repl));
        PQfinish(st.repl);
        return CV_ERR_TIMEOUT;
    }
    if ((e = ensure_slot(&st, stop))) goto out;
    char sql[600], from[24];
    cv_lsn_format(0, from);
    snprintf(sql, sizeof sql,
             "START_REPLICATION SLOT \"%s\" LOGICAL %s (proto_version '1', publication_names '\"%s\"')",
             s->slot, from, s->publication);
    PGresult *r = PQexec(st.repl, sql);
    if (PQresultStatus(r) != PGRES_COPY_BOTH) {
        cv_error("event=start_replication slot=%s error=\"%s\"", s->slot, PQresultErrorMessage(r));
        PQclear(r);
        e = CV_ERR_TIMEOUT;
        goto out;
    }
    PQclear(r);
    char l[24];
    cv_lsn_format(st.applied, l);
    cv_info("event=streaming slot=%s publication=%s table=%s from=%s", s->slot, s->publication,
            s->t.qualified, l);
    st.last_feedback = cv_now();
    const double batch_s = s->o.batch_ms / 1000.0;
    while (!e) {
        double now = cv_now();
        if (st.pend.n >= s->o.batch_rows ||
            ((st.pend.n || st.pend_truncate) && now - st.pend_since >= batch_s) || (*stop && !st.in_txn))
            if ((e = flush_pending(&st))) break;
        if (*stop) break;
        if (now - st.last_feedback >= FEEDBACK_INTERVAL && (e = send_feedback(&st))) break;
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
            if (!PQconsumeInput(st.repl)) {
                cv_error("event=replication_lost error=\"%s\"", PQerrorMessage(st.repl));
                e = CV_ERR_TIMEOUT;
            }
            continue;
        }
        if (n < 0) {
            cv_error("event=replication_ended error=\"%s\"", PQerrorMessage(st.repl));
            e = CV_ERR_TIMEOUT;
            break;
        }
        if (buf[0] == 'k' && n >= 18) {
            uint64_t end = be64(buf + 1);
            if (end > st.received) st.received = end;
            /* nothing of ours in flight: the position may move with the server's */
            if (!st.in_txn && st.pend.n == 0 && !st.pend_truncate && end > st.confirmed) st.confirmed = end;
            if (buf[17]) e = send_feedback(&st);
        } else if (buf[0] == 'w' && n >= 25) {
            uint64_t end = be64(buf + 9);
            if (end > st.received) st.received = end;
            e = on_message(&st, (const uint8_t *)buf + 25, (size_t)n - 25);
        }
        PQfreemem(buf);
    }
    if (!e && *stop) e = send_feedback(&st);
out:
    list_clear(&st.txn);
    list_clear(&st.pend);
    free(st.txn.v);
    free(st.pend.v);
    free(st.relmap);
    PQfinish(st.repl);
    return e;
}

int cv_sync_run(const cv_sync_opts *o, volatile sig_atomic_t *stop) {
    double backoff = 0.1;
    while (!*stop) {
        cv_sync s;
        cv_err e = cv_sync_open(&s, o, 1);
        if (!e) {
            backoff = 0.1;
            e = session(&s, stop);
        }
        int fatal = e && !cv_err_retriable(e) && e != CV_ERR_IO && e != CV_ERR_FORMAT;
        cv_sync_close(&s);
        if (!e || *stop) break;
        if (fatal) {
            cv_error("event=sync_stopped error=\"%s\"", cv_strerror(e));
            return 1;
        }
        cv_warn("event=sync_retry in_seconds=%.1f error=\"%s\"", backoff, cv_strerror(e));
        for (double w = 0; w < backoff && !*stop; w += 0.05) {
            struct timespec ts = {0, 50000000};
            nanosleep(&ts, NULL);
        }
        backoff = backoff * 2 > 5 ? 5 : backoff * 2;
    }
    cv_info("event=sync_stopped reason=signal");
    return 0;
}
