/* dead_letters.c: `cdcvec dead-letters list | retry | clear` and the clean-up after a repair.
 *
 * A change that could not be applied is recorded in cdcvec.dead_letters (id, stream, lsn, key,
 * reason, failed_at) where the store keeps its position: pgvector in its own database, Qdrant
 * and Upstash in the source database under their state key (cv_sink_dead_where). The command
 * finds the entries of one table and store the way the sync names them (--table, --sink,
 * --slot, --namespace), and
 *   list   prints one line per entry (id, table, key, position, time, reason) and a count;
 *   retry  reads each key's row from the source as it is now and sends it through the apply
 *          stage (a row gone is a delete), at the position the store recorded (never moved
 *          back), beside no running sync (the writer lock, wlock.c); the old entries of the keys are
 *          removed and those that fail again get a new entry, which is printed (exit 3);
 *   clear  removes the entries (--key: of that key only).
 * verify --repair removes the entries of the keys it repaired (cv_dl_clear_keys). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../pg/cv_keytext.h"
#include "../common/cv_log.h"
#include "sync_impl.h"

#define DL_PAGE 500

/* Logs a failed statement on the dead-letter connection; CV_ERR_TIMEOUT or CV_ERR_UNSUPPORTED. */
static cv_err dl_failed(cv_sync *s, PGconn *db, PGresult *r, const char *what) {
    cv_pg_fault f;
    if (r)
        cv_pg_classify_result(db, r, &f);
    else
        cv_pg_classify_connect(db, &f);
    cv_pg_log_fault("dead_letters_failed", what, r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL, &f,
                    r ? PQresultErrorMessage(r) : PQerrorMessage(db));
    s->fault = f;
    return f.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
}

cv_err cv_dl_open(cv_sync *s, cv_dl *d) {
    memset(d, 0, sizeof *d);
    const cv_sync_opts *o = &s->o;
    const char *dot = strchr(o->table, '.');
    cv_sink_table t = {
        .table = dot ? dot + 1 : o->table, .stream = s->stream, .state_conninfo = o->source, .ns = o->ns};
    cv_buf stream = {0};
    const char *where = cv_sink_dead_where(s->sink_conninfo, &t, &stream);
    d->stream = stream.p ? stream.p : strdup("");
    d->maxid = strdup("0");
    if (!where || !*d->stream) return CV_OK;
    d->db = cv_pg_connect(where, 0, "dead-letters");
    if (PQstatus(d->db) != CONNECTION_OK) return dl_failed(s, d->db, NULL, "connect");
    const char *p[1] = {d->stream};
    PGresult *r = PQexecParams(d->db,
                               "SELECT to_regclass('cdcvec.dead_letters') IS NOT NULL AND EXISTS (SELECT 1 "
                               "FROM pg_tables WHERE schemaname = 'cdcvec' AND tablename = 'dead_letters')",
                               0, NULL, NULL, NULL, NULL, 0);
    cv_err e = PQresultStatus(r) == PGRES_TUPLES_OK ? CV_OK : dl_failed(s, d->db, r, "find_table");
    d->exists = !e && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (e || !d->exists) return e;
    r = PQexecParams(d->db, "SELECT coalesce(max(id), 0) FROM cdcvec.dead_letters WHERE stream = $1", 1, NULL,
                     p, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        free(d->maxid);
        d->maxid = strdup(PQgetvalue(r, 0, 0));
    } else {
        e = dl_failed(s, d->db, r, "newest_entry");
    }
    PQclear(r);
    return e;
}

void cv_dl_close(cv_dl *d) {
    if (d->db) PQfinish(d->db);
    free(d->stream), free(d->maxid);
    memset(d, 0, sizeof *d);
}

static char *text_array(char *const *v, int n) {
    cv_buf a = {0};
    cv_buf_put(&a, "{", 1);
    for (int i = 0; i < n; i++)
        cv_pg_array_elem(&a, v[i], i == 0);
    cv_buf_put(&a, "}", 1);
    CV_ASSERT(!a.oom);
    return a.p;
}

cv_err cv_dl_clear_keys(cv_sync *s, cv_dl *d, char *const *keytexts, int n, long *cleared) {
    if (cleared) *cleared = 0;
    if (!d->db || !d->exists || n == 0) return CV_OK;
    char *arr = text_array(keytexts, n);
    const char *p[3] = {d->stream, arr, d->maxid};
    PGresult *r =
        PQexecParams(d->db,
                     "DELETE FROM cdcvec.dead_letters WHERE stream = $1 AND key = ANY($2::text[]) AND "
                     "id <= $3::bigint",
                     3, NULL, p, NULL, NULL, 0);
    cv_err e = PQresultStatus(r) == PGRES_COMMAND_OK ? CV_OK : dl_failed(s, d->db, r, "clear");
    if (!e && cleared) *cleared = strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    free(arr);
    return e;
}

/* A value for a key=value line: quotes and backslashes escaped, newlines as \n. */
static void quoted(FILE *f, const char *v) {
    fputc('"', f);
    for (const char *c = v; *c; c++) {
        if (*c == '"' || *c == '\\')
            fputc('\\', f), fputc(*c, f);
        else if (*c == '\n')
            fputs("\\n", f);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

/* list: one line per entry, oldest first. */
static cv_err dl_list(cv_sync *s, cv_dl *d, const char *key, long *count) {
    *count = 0;
    if (!d->db || !d->exists) return CV_OK;
    const char *p[2] = {d->stream, key};
    PGresult *r =
        PQexecParams(d->db,
                     "SELECT id, key, lsn::text, to_char(failed_at AT TIME ZONE 'UTC', "
                     "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), reason FROM cdcvec.dead_letters WHERE stream = "
                     "$1 AND ($2::text IS NULL OR key = $2) ORDER BY id",
                     2, NULL, p, NULL, NULL, 0);
    cv_err e = PQresultStatus(r) == PGRES_TUPLES_OK ? CV_OK : dl_failed(s, d->db, r, "list");
    for (int i = 0; !e && i < PQntuples(r); i++) {
        printf("dead_letter id=%s table=%s key=", PQgetvalue(r, i, 0), s->o.table);
        quoted(stdout, PQgetvalue(r, i, 1));
        printf(" position=%s failed_at=%s reason=", PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
        quoted(stdout, PQgetvalue(r, i, 4));
        putchar('\n');
        (*count)++;
    }
    PQclear(r);
    return e;
}

/* clear: every entry of the stream, or those of one key. */
static cv_err dl_clear(cv_sync *s, cv_dl *d, const char *key, long *count) {
    *count = 0;
    if (!d->db || !d->exists) return CV_OK;
    const char *p[2] = {d->stream, key};
    PGresult *r = PQexecParams(
        d->db, "DELETE FROM cdcvec.dead_letters WHERE stream = $1 AND ($2::text IS NULL OR key = $2)", 2,
        NULL, p, NULL, NULL, 0);
    cv_err e = PQresultStatus(r) == PGRES_COMMAND_OK ? CV_OK : dl_failed(s, d->db, r, "clear");
    if (!e) *count = strtol(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return e;
}

/* One writer per table and store: the writer lock (wlock.c) a sync or Kafka sink stage holds, as
 * verify --repair takes it. */
static cv_err lock_writer(cv_sync *s) {
    return cv_sync_writer_lock_for(s, "dead_letters", "dead-letters retry", NULL);
}

/* retry: the keys of the entries, a page at a time, through the apply stage; *retried: keys
 * sent, *skipped: entries whose key does not parse as this table's (printed, kept), *failed:
 * new entries afterwards (printed). */
static cv_err dl_retry(cv_sync *s, cv_dl *d, const char *key, long *retried, long *skipped, long *failed) {
    *retried = *skipped = *failed = 0;
    if (!d->db || !d->exists) return CV_OK;
    const char *p[2] = {d->stream, key};
    PGresult *keys =
        PQexecParams(d->db,
                     "SELECT key FROM cdcvec.dead_letters WHERE stream = $1 AND ($2::text IS NULL "
                     "OR key = $2) GROUP BY key ORDER BY min(id)",
                     2, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(keys) != PGRES_TUPLES_OK) {
        cv_err e = dl_failed(s, d->db, keys, "keys");
        PQclear(keys);
        return e;
    }
    uint64_t pos = 0, bpos;
    int done;
    cv_err e = cv_sink_state(s->sink, &pos, &done, &bpos);
    if (e) e = cv_sync_batch_failed(s, e);
    int nk = PQntuples(keys);
    cv_change *chg = calloc(DL_PAGE, sizeof *chg);
    char ***vals = calloc(DL_PAGE, sizeof *vals), **kt = calloc(DL_PAGE, sizeof *kt);
    CV_ASSERT(chg && vals && kt);
    for (int at = 0; !e && at < nk; at += DL_PAGE) {
        if (s->stop && *s->stop) {
            e = CV_ERR_SHUTDOWN;
            break;
        }
        int n = 0;
        for (int i = at; i < nk && i < at + DL_PAGE; i++) {
            const char *k = PQgetvalue(keys, i, 0);
            cv_buf why = {0};
            if (cv_key_parse(k, s->t.nkeys, &vals[n], &why)) {
                printf("retry_skipped key=");
                quoted(stdout, k);
                printf(" reason=");
                quoted(stdout, why.p ? why.p : "not a key of this table");
                putchar('\n');
                free(why.p);
                (*skipped)++;
                continue;
            }
            kt[n++] = (char *)k;
        }
        cv_pg_fault f = {1, "connection", NULL};
        if ((e = cv_read_keys(s->src, &s->t, vals, n, chg, &f))) cv_sync_error(s, "source", &f);
        for (int i = 0; i < n; i++)
            cv_key_free(vals[i]);
        if (!e) { /* consumed */
            e = cv_sync_deliver(s, chg, n, 0, pos, 0, 0);
        } else {
            for (int i = 0; i < n; i++)
                cv_change_free(&chg[i]);
        }
        memset(chg, 0, sizeof *chg * DL_PAGE);
        if (!e) e = cv_dl_clear_keys(s, d, kt, n, NULL);
        if (!e) *retried += n;
    }
    free(chg), free(vals), free(kt);
    PQclear(keys);
    if (e) return e;
    /* what failed again has an entry newer than the ones retried */
    const char *q[3] = {d->stream, key, d->maxid};
    PGresult *r =
        PQexecParams(d->db,
                     "SELECT key, reason FROM cdcvec.dead_letters WHERE stream = $1 AND ($2::text IS "
                     "NULL OR key = $2) AND id > $3::bigint ORDER BY id",
                     3, NULL, q, NULL, NULL, 0);
    e = PQresultStatus(r) == PGRES_TUPLES_OK ? CV_OK : dl_failed(s, d->db, r, "failed_again");
    for (int i = 0; !e && i < PQntuples(r); i++) {
        printf("retry_failed key=");
        quoted(stdout, PQgetvalue(r, i, 0));
        printf(" reason=");
        quoted(stdout, PQgetvalue(r, i, 1));
        putchar('\n');
        (*failed)++;
    }
    PQclear(r);
    return e;
}

int cv_dead_letters_run(const cv_sync_opts *o, const char *action, const char *key,
                        volatile sig_atomic_t *stop) {
    cv_sync s;
    cv_dl d = {0};
    int retry = strcmp(action, "retry") == 0;
    cv_err e;
    if (retry) { /* the model (or --embed) and the store: the apply stage */
        e = cv_sync_runtime_open(&s, o);
        if (!e) e = cv_sync_session_open(&s, 0);
        if (!e) e = lock_writer(&s);
    } else { /* only the database that keeps the entries */
        memset(&s, 0, sizeof s);
        s.o = *o;
        s.src = cv_pg_connect(o->source, 0, "source");
        e = PQstatus(s.src) == CONNECTION_OK ? CV_OK : dl_failed(&s, s.src, NULL, "source_connect");
        if (!e) cv_sync_stream_names(&s);
        s.sink_conninfo = o->sink && *o->sink ? o->sink : o->source;
    }
    s.stop = stop;
    if (!e) e = cv_dl_open(&s, &d);
    long count = 0, skipped = 0, failed = 0;
    if (!e && !strcmp(action, "list")) {
        e = dl_list(&s, &d, key, &count);
        if (!e)
            printf("dead_letters table=%s store=%s count=%ld\n", o->table, cv_sink_kind(s.sink_conninfo),
                   count);
    } else if (!e && !strcmp(action, "clear")) {
        e = dl_clear(&s, &d, key, &count);
        if (!e) printf("dead_letters_cleared table=%s count=%ld\n", o->table, count);
    } else if (!e) {
        e = dl_retry(&s, &d, key, &count, &skipped, &failed);
        if (!e)
            printf("dead_letters_retried table=%s keys=%ld applied=%ld failed=%ld skipped=%ld\n", o->table,
                   count + skipped, count - (failed < count ? failed : count), failed, skipped);
    }
    fflush(stdout);
    if (e && s.fault.fix)
        cv_error("event=dead_letters_stopped kind=%s fix=\"%s\"", s.fault.kind, s.fault.fix);
    cv_dl_close(&d);
    if (retry) {
        cv_sync_runtime_close(&s);
    } else {
        if (s.src) PQfinish(s.src);
        free(s.slot), free(s.publication), free(s.stream);
    }
    return e ? 1 : failed || skipped ? 3 : 0;
}
