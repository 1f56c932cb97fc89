/* remote_migrate.c: indexes of one table side by side in Qdrant and Upstash, for cdcvec migrate
 * (ingest/migrate.c; pgvector's: pgvector_migrate.c, which dispatches here).
 *
 * A remote store has no transaction that could rename a collection or a namespace, so the name of
 * the live index lives in cdcvec's state database, in the table's state row (cdcvec.state,
 * column index_name; NULL: the name given, the URL's collection or the namespace), and every
 * reader and writer of cdcvec resolves it there when it opens the sink (cv_rstate_index). The
 * state row of a shadow (stream key + "__next") records the shadow's own name, a new generation
 * "<given>__g<N>" (N one more than the live index's), before the shadow is created. Since each
 * state row carries the name of its index, the switch is the pgvector one on the state rows: one
 * transaction of the state database moves the live row to the "__old" key and the shadow's to the
 * live key (with their dead letters); a sink opened after it reads the new name, one opened
 * before it goes on with the old index, whole. Qdrant first moves the alias "<given>__live"
 * (qdrant_alias.c) for searchers outside cdcvec. */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_jnum.h"
#include "../common/cv_log.h"
#include "../pg/cv_pg.h"
#include "http.h"
#include "remote_migrate.h"

int cv_rindex_live_stream(const cv_sink_table *t, cv_buf *out) {
    const char *sx = t->index_suffix;
    if (!sx || !*sx || !t->stream) return 0;
    size_t n = strlen(t->stream), k = strlen(sx);
    if (n < k || strcmp(t->stream + n - k, sx)) return 0;
    cv_buf_printf(out, "%.*s", (int)(n - k), t->stream);
    return 1;
}

/* The state key of t's index with suffix (sink.c: the store's state key of stream + suffix). */
static void key_of(const char *url, const cv_sink_table *t, const char *suffix, cv_buf *key) {
    cv_sink_table u = *t;
    cv_buf st = {0};
    cv_buf_printf(&st, "%s%s", t->stream, suffix ? suffix : "");
    u.stream = st.p;
    cv_sink_dead_where(url, &u, key);
    cv_buf_free(&st);
}

static PGconn *state_db(const char *url, const cv_sink_table *t, const char *what) {
    if (!t->state_conninfo) {
        cv_error("event=migrate_refused store=%s step=%s error=\"no state database: cdcvec migrate keeps the "
                 "live index's name there\" fix=\"run cdcvec migrate with --source (the state database)\"",
                 cv_sink_kind(url), what);
        return NULL;
    }
    PGconn *db = cv_pg_connect(t->state_conninfo, 0, "migrate");
    if (PQstatus(db) == CONNECTION_OK) return db;
    cv_error("event=migrate_failed step=%s error=\"%s\"", what, PQerrorMessage(db));
    PQfinish(db);
    return NULL;
}

/* Whether the state row of key exists: 1, 0, or -1 (the error logged). */
static int row_exists(PGconn *db, const char *key) {
    const char *p[1] = {key};
    PGresult *r = PQexecParams(db,
                               "SELECT to_regclass('cdcvec.state') IS NOT NULL AND EXISTS (SELECT 1 FROM "
                               "cdcvec.state WHERE stream = $1)",
                               1, NULL, p, NULL, NULL, 0);
    int v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? PQgetvalue(r, 0, 0)[0] == 't' : -1;
    if (v < 0) cv_error("event=migrate_failed step=look error=\"%s\"", PQresultErrorMessage(r));
    PQclear(r);
    return v;
}

cv_err cv_rindex_has(const char *url, const cv_sink_table *t, const char *suffix, int *table, int *state) {
    *table = *state = 0;
    PGconn *db = state_db(url, t, "look");
    if (!db) return t->state_conninfo ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    cv_buf key = {0};
    key_of(url, t, suffix, &key);
    int v = row_exists(db, key.p);
    PQfinish(db);
    cv_buf_free(&key);
    if (v < 0) return CV_ERR_TIMEOUT;
    *table = *state = v; /* the row is recorded before its index is created, and dropped after it */
    return CV_OK;
}

/* The store's client, for the index of state stream t->stream + suffix (s->index: its name). */
static cv_err admin_open(const char *url, const cv_sink_table *t, const char *suffix, cv_sink **s) {
    cv_sink_table u = *t;
    cv_buf st = {0};
    cv_buf_printf(&st, "%s%s", t->stream, suffix ? suffix : "");
    u.stream = st.p;
    u.index_suffix = NULL; /* resolve the recorded name, never make one */
    u.admin = 1;
    cv_err e = cv_sink_open(url, &u, s);
    cv_buf_free(&st);
    if (e) {
        const char *kind, *fix;
        cv_sink_last_fault(NULL, &kind, &fix);
        cv_error("event=migrate_failed step=store_open kind=%s fix=\"%s\"", kind, fix ? fix : "-");
    }
    return e;
}

/* Into sql: the state row and dead letters of key `from` moved to key `to`. */
static void move_row(PGconn *db, const char *from, const char *to, cv_buf *sql) {
    char *f = PQescapeLiteral(db, from, strlen(from)), *t = PQescapeLiteral(db, to, strlen(to));
    CV_ASSERT(f && t);
    cv_buf_printf(sql, "UPDATE cdcvec.state SET stream = %s WHERE stream = %s; ", t, f);
    cv_buf_printf(sql, "UPDATE cdcvec.dead_letters SET stream = %s WHERE stream = %s; ", t, f);
    PQfreemem(f), PQfreemem(t);
}

static cv_err run_tx(PGconn *db, const char *sql, const char *what) {
    PGresult *r = PQexec(db, sql);
    cv_err e = PQresultStatus(r) == PGRES_COMMAND_OK ? CV_OK : CV_ERR_TIMEOUT;
    if (e) {
        cv_error("event=migrate_failed step=%s error=\"%s\"", what, PQresultErrorMessage(r));
        PQclear(PQexec(db, "ROLLBACK"));
    }
    PQclear(r);
    return e;
}

cv_err cv_rindex_swap(const char *url, const cv_sink_table *t, const char *in, const char *keep,
                      int backfill_again) {
    PGconn *db = state_db(url, t, "switch");
    if (!db) return t->state_conninfo ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    int swap = !strcmp(in, keep); /* a rollback: the two trade places */
    cv_buf klive = {0}, kin = {0}, kkeep = {0}, ktmp = {0}, sql = {0};
    key_of(url, t, NULL, &klive);
    key_of(url, t, in, &kin);
    key_of(url, t, keep, &kkeep);
    key_of(url, t, "__swap", &ktmp);
    cv_err e = CV_OK;
    int there = row_exists(db, kkeep.p), has_in = row_exists(db, kin.p);
    if (there < 0 || has_in < 0)
        e = CV_ERR_TIMEOUT;
    else if (!has_in) {
        cv_error("event=migrate_refused table=%s.%s error=\"no index %s to switch to\"", t->schema, t->table,
                 in);
        e = CV_ERR_MISMATCH;
    } else if (there && !swap) {
        cv_error(
            "event=migrate_refused table=%s.%s error=\"an index %s is already there\" fix=\"free it first "
            "with cdcvec migrate --drop-old (after checking nothing searches it)\"",
            t->schema, t->table, keep);
        e = CV_ERR_MISMATCH;
    }
    /* Qdrant: the alias for searchers outside cdcvec first (a failed switch moves it again) */
    cv_sink *s = NULL;
    if (!e && !strcmp(cv_sink_kind(url), "qdrant") && !(e = admin_open(url, t, in, &s)))
        e = cv_qdrant_alias_move(s, s->given, s->index, 1);
    cv_sink_close(s);
    if (!e) {
        cv_buf_puts(&sql, "BEGIN; ");
        if (swap) {
            move_row(db, kin.p, ktmp.p, &sql);
            move_row(db, klive.p, kin.p, &sql);
            move_row(db, ktmp.p, klive.p, &sql);
        } else {
            move_row(db, klive.p, kkeep.p, &sql);
            move_row(db, kin.p, klive.p, &sql);
        }
        if (backfill_again) {
            char *k = PQescapeLiteral(db, klive.p, klive.len);
            cv_buf_printf(&sql, "UPDATE cdcvec.state SET backfill_done = false WHERE stream = %s; ", k);
            PQfreemem(k);
        }
        cv_buf_puts(&sql, "COMMIT");
        e = run_tx(db, sql.p, "switch");
    }
    PQfinish(db);
    cv_buf_free(&klive), cv_buf_free(&kin), cv_buf_free(&kkeep), cv_buf_free(&ktmp), cv_buf_free(&sql);
    return e;
}

/* Upstash: namespace ns deleted (DELETE /delete-namespace/{ns}; gone already: fine). */
static cv_err upstash_drop(cv_sink *s, const char *ns) {
    char *esc = curl_easy_escape(NULL, ns, 0);
    cv_buf path = {0};
    cv_buf_printf(&path, "/delete-namespace/%s", esc);
    curl_free(esc);
    long st = 0;
    cv_err e = cv_http_call(s->http, "DELETE", path.p, NULL, 0, 1, &st, NULL);
    cv_buf_free(&path);
    if (!e && st != 200 && st != 404) {
        cv_error("event=upstash_drop_failed namespace=%s status=%ld", ns, st);
        e = CV_ERR_UNSUPPORTED;
    }
    return e;
}

cv_err cv_rindex_drop(const char *url, const cv_sink_table *t, const char *suffix, int *dropped) {
    *dropped = 0;
    PGconn *db = state_db(url, t, "drop");
    if (!db) return t->state_conninfo ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    cv_buf key = {0}, sql = {0};
    key_of(url, t, suffix, &key);
    int v = row_exists(db, key.p);
    cv_err e = v < 0 ? CV_ERR_TIMEOUT : CV_OK;
    cv_sink *s = NULL, *live = NULL;
    if (!e && v && !(e = admin_open(url, t, suffix, &s)) && !(e = admin_open(url, t, NULL, &live))) {
        if (!strcmp(s->index, live->index)) { /* never the live one, whatever the rows say */
            cv_error("event=migrate_refused table=%s.%s error=\"the index %s of %s is the live one\"",
                     t->schema, t->table, s->index, suffix);
            e = CV_ERR_MISMATCH;
        } else {
            e = !strcmp(cv_sink_kind(url), "qdrant") ? cv_qdrant_drop(s, s->index)
                                                     : upstash_drop(s, s->index);
            if (!e) cv_info("event=migrate_index_dropped store=%s index=%s", cv_sink_kind(url), s->index);
        }
    }
    cv_sink_close(s), cv_sink_close(live);
    if (!e && v) {
        char *k = PQescapeLiteral(db, key.p, key.len);
        CV_ASSERT(k);
        cv_buf_printf(
            &sql,
            "BEGIN; DELETE FROM cdcvec.state WHERE stream = %s; DELETE FROM cdcvec.dead_letters WHERE "
            "stream = %s; COMMIT",
            k, k);
        PQfreemem(k);
        e = run_tx(db, sql.p, "drop");
        if (!e) *dropped = 1;
    }
    PQfinish(db);
    cv_buf_free(&key), cv_buf_free(&sql);
    return e;
}

/* The points of one page (Qdrant: points [{id, payload, vector}]; Upstash: vectors [{id, metadata,
 * vector}]) with cdcvec.text_source set, as the body of an upsert into the shadow. */
static char *seed_body(json_t *pts, const char *meta_key, const char *text_source, int qdrant) {
    json_t *out = json_array(), *p;
    size_t i;
    json_array_foreach(pts, i, p) {
        json_t *c = json_deep_copy(p);
        json_t *cd = json_object_get(json_object_get(c, meta_key), "cdcvec");
        if (cd && text_source) json_object_set_new(cd, "text_source", json_string(text_source));
        json_array_append_new(out, c);
    }
    json_t *body = qdrant ? json_pack("{s:o}", "points", out) : out;
    char *txt = cv_jnum_dumps(body, JSON_COMPACT, CV_JNUM_EXACT);
    json_decref(body);
    return txt;
}

/* One page of the live index (from *cursor; NULL after the last) into the shadow. */
static cv_err seed_page(cv_sink *ls, cv_sink *ss, const cv_sink_table *t, const char *text_source, int qdrant,
                        json_t **cursor, long *copied) {
    cv_buf path = {0}, put = {0}, tn = {0};
    char *le = curl_easy_escape(NULL, ls->index, 0), *se = curl_easy_escape(NULL, ss->index, 0);
    json_t *req;
    cv_buf_printf(&tn, "%s.%s", t->schema, t->table);
    if (qdrant) {
        cv_buf_printf(&path, "/collections/%s/points/scroll", le);
        cv_buf_printf(&put, "/collections/%s/points?wait=true", se);
        req = json_pack("{s:i,s:b,s:b,s:{s:[{s:s,s:{s:s}}]}}", "limit", 256, "with_payload", 1, "with_vector",
                        1, "filter", "must", "key", "cdcvec.table", "match", "value", tn.p);
    } else {
        cv_buf_printf(&path, "/range/%s", le);
        cv_buf_printf(&put, "/upsert/%s", se);
        req = json_pack("{s:i,s:b,s:b}", "limit", 1000, "includeMetadata", 1, "includeVectors", 1);
        json_object_set_new(req, "cursor", json_string(""));
    }
    curl_free(le), curl_free(se);
    if (*cursor) json_object_set(req, qdrant ? "offset" : "cursor", *cursor);
    char *txt = cv_jnum_dumps(req, JSON_COMPACT, CV_JNUM_EXACT);
    json_decref(req);
    json_t *r = NULL;
    cv_err e = cv_http_call(ls->http, qdrant ? "POST" : "POST", path.p, txt, strlen(txt), 0, NULL, &r);
    json_t *res = json_object_get(r, "result");
    json_t *pts = json_object_get(res, qdrant ? "points" : "vectors");
    json_t *next = json_object_get(res, qdrant ? "next_page_offset" : "nextCursor");
    json_decref(*cursor);
    *cursor = next && !json_is_null(next) &&
                      !(json_is_string(next) &&
                        (!*json_string_value(next) || !strcmp(json_string_value(next), "0")))
                  ? json_incref(next)
                  : NULL;
    if (!e && json_array_size(pts)) {
        char *b = seed_body(pts, qdrant ? "payload" : "metadata", text_source, qdrant);
        e = cv_http_call(ss->http, qdrant ? "PUT" : "POST", put.p, b, strlen(b), 0, NULL, NULL);
        if (!e) *copied += (long)json_array_size(pts);
    }
    json_decref(r);
    cv_buf_free(&path), cv_buf_free(&put), cv_buf_free(&tn);
    return e;
}

cv_err cv_rindex_seed(const char *url, const cv_sink_table *t, const char *suffix, const char *text_source,
                      long *copied) {
    *copied = 0;
    if (!t->stream || !t->state_conninfo) {
        cv_error("event=migrate_failed step=seed error=\"no state key for the live index\"");
        return CV_ERR_UNSUPPORTED;
    }
    cv_sink *ls = NULL, *ss = NULL;
    cv_err e = admin_open(url, t, NULL, &ls);
    if (!e) e = admin_open(url, t, suffix, &ss);
    int qdrant = !strcmp(cv_sink_kind(url), "qdrant");
    json_t *cursor = NULL;
    do {
        if (!e) e = seed_page(ls, ss, t, text_source, qdrant, &cursor, copied);
    } while (!e && cursor);
    json_decref(cursor);
    cv_sink_close(ls), cv_sink_close(ss);
    return e;
}
