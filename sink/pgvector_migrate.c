/* pgvector_migrate.c: indexes of one table side by side, for cdcvec migrate (ingest/migrate.c).
 *
 * The live index of a table is cdcvec."<schema>_<table>" with its state row keyed by the
 * stream; a migration builds another beside it, cdcvec."<schema>_<table>__next" with its state
 * row keyed stream + "__next". The switch renames, in one transaction, the live table to
 * "__old" and the shadow to the live name, with their indexes (primary key, HNSW, payload GIN,
 * renamed to the names pgvector.c would give them, so that a later migration finds the names
 * free), their state rows and their dead letters. A search by the live name that runs during
 * the switch waits for its lock and then reads the new table (PostgreSQL resolves the name again
 * once the lock is granted, and a prepared plan is analysed again from its text): it sees the old
 * index or the new one, whole, never neither and never a half-built one. */
#define _POSIX_C_SOURCE 200809L
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "../pg/cv_names.h"
#include "../pg/cv_pg.h"
#include "sink.h"

static const char *const INDEX_SUFFIX[] = {"_embedding_hnsw", "_payload_gin", NULL};

void cv_sink_pg_table(const cv_sink_table *t, cv_buf *out) {
    cv_buf name = {0};
    cv_buf_printf(&name, "%s%s", t->table, t->index_suffix ? t->index_suffix : "");
    cv_name_sink_table(t->schema, name.p, out);
    cv_buf_free(&name);
}

static int pgvector_only(const char *conninfo, const char *what) {
    if (!strcmp(cv_sink_kind(conninfo), "pgvector")) return 1;
    cv_error(
        "event=migrate_refused store=%s step=%s error=\"cdcvec migrate builds a shadow index on pgvector "
        "only for now\" fix=\"for Qdrant or Upstash: sync the table into a new collection or namespace "
        "(--sink .../NEW or --namespace NEW) with the new model, check it with cdcvec verify, then "
        "point the searchers at it\"",
        cv_sink_kind(conninfo), what);
    return 0;
}

/* A connection to the store's database, or NULL after logging why. */
static PGconn *connect_store(const char *conninfo, const char *what) {
    PGconn *db = cv_pg_connect(conninfo, 0, "migrate");
    if (PQstatus(db) == CONNECTION_OK) return db;
    cv_error("event=migrate_failed step=%s error=\"%s\"", what, PQerrorMessage(db));
    PQfinish(db);
    return NULL;
}

/* One statement (several, one string: one transaction when it opens with BEGIN); 0 when it ran. */
static int run(PGconn *db, const char *sql, const char *what) {
    PGresult *r = PQexec(db, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
        cv_buf m = {0};
        cv_error("event=migrate_failed step=%s error=\"%s\"", what,
                 cv_pg_errtext(PQresultErrorMessage(r), &m));
        cv_buf_free(&m);
    }
    PQclear(r);
    return ok ? 0 : -1;
}

static int exists(PGconn *db, const char *qname, int *yes) {
    const char *p[1] = {qname};
    PGresult *r = PQexecParams(db, "SELECT to_regclass($1) IS NOT NULL", 1, NULL, p, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    if (ok) *yes = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    return ok ? 0 : -1;
}

static void qualified(const char *name, cv_buf *out) {
    cv_buf_puts(out, "cdcvec.");
    cv_pg_ident(out, name);
}

cv_err cv_sink_index_has(const char *conninfo, const cv_sink_table *t, const char *suffix, int *table,
                         int *state) {
    *table = *state = 0;
    if (!pgvector_only(conninfo, "look")) return CV_ERR_UNSUPPORTED;
    PGconn *db = connect_store(conninfo, "look");
    if (!db) return CV_ERR_TIMEOUT;
    cv_sink_table u = *t;
    u.index_suffix = suffix;
    cv_buf name = {0}, qn = {0}, key = {0};
    cv_sink_pg_table(&u, &name);
    qualified(name.p, &qn);
    cv_buf_printf(&key, "%s%s", t->stream, suffix ? suffix : "");
    cv_err e = exists(db, qn.p, table) ? CV_ERR_TIMEOUT : CV_OK;
    if (!e) {
        const char *p[1] = {key.p};
        PGresult *r = PQexecParams(db,
                                   "SELECT to_regclass('cdcvec.state') IS NOT NULL AND EXISTS (SELECT 1 "
                                   "FROM cdcvec.state WHERE stream = $1)",
                                   1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            *state = PQgetvalue(r, 0, 0)[0] == 't';
        else /* the state table may not exist: to_regclass guards only the plan's first step */
            *state = 0;
        PQclear(r);
    }
    PQfinish(db);
    cv_buf_free(&name), cv_buf_free(&qn), cv_buf_free(&key);
    return e;
}

/* Into sql: rename table `from` (unquoted; the name it has at this point of the transaction) to
 * `to`, with its indexes named as pgvector.c names them for the new name (the primary key's as
 * cv_name_index(to, "_pkey")); `lookup`: the name the table has in the catalog now (its indexes
 * are found through it; when it differs from `from`, an earlier step renamed them after `from`). */
static int rename_table(PGconn *db, const char *lookup, const char *from, const char *to, cv_buf *sql) {
    cv_buf qn = {0}, ql = {0};
    qualified(from, &qn);
    qualified(lookup, &ql);
    const char *p[1] = {ql.p};
    PGresult *r = PQexecParams(db,
                               "SELECT c.relname, coalesce(x.indisprimary, false) FROM pg_index x JOIN "
                               "pg_class c ON c.oid = x.indexrelid WHERE x.indrelid = to_regclass($1)",
                               1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cv_error("event=migrate_failed step=indexes table=%s error=\"%s\"", ql.p, PQresultErrorMessage(r));
        PQclear(r);
        cv_buf_free(&qn), cv_buf_free(&ql);
        return -1;
    }
    int same = !strcmp(lookup, from);
    for (int i = 0; i < PQntuples(r); i++) {
        const char *idx = PQgetvalue(r, i, 0);
        const char *kind = PQgetvalue(r, i, 1)[0] == 't' ? "_pkey" : NULL;
        for (int k = 0; !kind && INDEX_SUFFIX[k]; k++) {
            cv_buf had = {0};
            cv_name_index(lookup, INDEX_SUFFIX[k], &had);
            if (!strcmp(had.p, idx)) kind = INDEX_SUFFIX[k];
            cv_buf_free(&had);
        }
        if (!kind) continue; /* an index of the user's own keeps its name */
        cv_buf now = {0}, want = {0};
        if (same)
            cv_buf_puts(&now, idx);
        else
            cv_name_index(from, kind, &now);
        cv_name_index(to, kind, &want);
        if (strcmp(want.p, now.p)) {
            cv_buf_puts(sql, "ALTER INDEX ");
            qualified(now.p, sql);
            cv_buf_puts(sql, " RENAME TO ");
            cv_pg_ident(sql, want.p);
            cv_buf_puts(sql, "; ");
        }
        cv_buf_free(&now), cv_buf_free(&want);
    }
    PQclear(r);
    cv_buf_printf(sql, "ALTER TABLE %s RENAME TO ", qn.p);
    cv_pg_ident(sql, to);
    cv_buf_puts(sql, "; ");
    cv_buf_free(&qn), cv_buf_free(&ql);
    return 0;
}

/* Into sql: the state row and dead letters of stream key `from` moved to `to`. */
static void rename_stream(PGconn *db, const char *from, const char *to, cv_buf *sql) {
    char *f = PQescapeLiteral(db, from, strlen(from)), *t = PQescapeLiteral(db, to, strlen(to));
    CV_ASSERT(f && t);
    cv_buf_printf(sql, "UPDATE cdcvec.state SET stream = %s WHERE stream = %s; ", t, f);
    cv_buf_printf(sql, "UPDATE cdcvec.dead_letters SET stream = %s WHERE stream = %s; ", t, f);
    PQfreemem(f), PQfreemem(t);
}

cv_err cv_sink_index_swap(const char *conninfo, const cv_sink_table *t, const char *in, const char *keep,
                          int backfill_again) {
    if (!pgvector_only(conninfo, "switch")) return CV_ERR_UNSUPPORTED;
    PGconn *db = connect_store(conninfo, "switch");
    if (!db) return CV_ERR_TIMEOUT;
    int swap = !strcmp(in, keep); /* a rollback: the two trade places */
    cv_sink_table u = *t;
    cv_buf live = {0}, next = {0}, kept = {0}, tmp = {0}, qkept = {0}, sql = {0};
    cv_buf sin = {0}, skeep = {0}, stmp = {0};
    u.index_suffix = NULL;
    cv_sink_pg_table(&u, &live);
    u.index_suffix = in;
    cv_sink_pg_table(&u, &next);
    u.index_suffix = keep;
    cv_sink_pg_table(&u, &kept);
    u.index_suffix = "__swap";
    cv_sink_pg_table(&u, &tmp);
    qualified(kept.p, &qkept);
    cv_buf_printf(&sin, "%s%s", t->stream, in);
    cv_buf_printf(&skeep, "%s%s", t->stream, keep);
    cv_buf_printf(&stmp, "%s__swap", t->stream);
    cv_err e = CV_OK;
    int there = 0;
    if (exists(db, qkept.p, &there)) e = CV_ERR_TIMEOUT;
    if (!e && there && !swap) {
        cv_error(
            "event=migrate_refused table=%s.%s error=\"an index %s is already there\" fix=\"free it first "
            "with cdcvec migrate --drop-old (after checking nothing searches it)\"",
            t->schema, t->table, qkept.p);
        e = CV_ERR_MISMATCH;
    }
    cv_buf_puts(&sql, "BEGIN; SET LOCAL lock_timeout = '30s'; ");
    if (!e && swap) { /* in -> tmp, live -> in, tmp -> live */
        if (rename_table(db, next.p, next.p, tmp.p, &sql) || rename_table(db, live.p, live.p, next.p, &sql) ||
            rename_table(db, next.p, tmp.p, live.p, &sql))
            e = CV_ERR_TIMEOUT;
        rename_stream(db, sin.p, stmp.p, &sql);
        rename_stream(db, t->stream, sin.p, &sql);
        rename_stream(db, stmp.p, t->stream, &sql);
    } else if (!e) { /* live -> keep, in -> live */
        if (rename_table(db, live.p, live.p, kept.p, &sql) || rename_table(db, next.p, next.p, live.p, &sql))
            e = CV_ERR_TIMEOUT;
        rename_stream(db, t->stream, skeep.p, &sql);
        rename_stream(db, sin.p, t->stream, &sql);
    }
    if (!e) {
        if (backfill_again) {
            char *k = PQescapeLiteral(db, t->stream, strlen(t->stream));
            cv_buf_printf(&sql, "UPDATE cdcvec.state SET backfill_done = false WHERE stream = %s; ", k);
            PQfreemem(k);
        }
        cv_buf_puts(&sql, "COMMIT");
        if (run(db, sql.p, "switch")) {
            PQclear(PQexec(db, "ROLLBACK"));
            e = CV_ERR_TIMEOUT;
        }
    }
    PQfinish(db);
    cv_buf_free(&live), cv_buf_free(&next), cv_buf_free(&kept), cv_buf_free(&tmp), cv_buf_free(&qkept);
    cv_buf_free(&sql), cv_buf_free(&sin), cv_buf_free(&skeep), cv_buf_free(&stmp);
    return e;
}

cv_err cv_sink_index_drop(const char *conninfo, const cv_sink_table *t, const char *suffix, int *dropped) {
    *dropped = 0;
    if (!pgvector_only(conninfo, "drop")) return CV_ERR_UNSUPPORTED;
    PGconn *db = connect_store(conninfo, "drop");
    if (!db) return CV_ERR_TIMEOUT;
    cv_sink_table u = *t;
    u.index_suffix = suffix;
    cv_buf name = {0}, qn = {0}, key = {0}, sql = {0};
    cv_sink_pg_table(&u, &name);
    qualified(name.p, &qn);
    cv_buf_printf(&key, "%s%s", t->stream, suffix);
    cv_err e = exists(db, qn.p, dropped) ? CV_ERR_TIMEOUT : CV_OK;
    if (!e) {
        char *k = PQescapeLiteral(db, key.p, strlen(key.p));
        CV_ASSERT(k);
        cv_buf_printf(&sql,
                      "BEGIN; DROP TABLE IF EXISTS %s; DELETE FROM cdcvec.state WHERE stream = %s; "
                      "DELETE FROM cdcvec.dead_letters WHERE stream = %s; COMMIT",
                      qn.p, k, k);
        PQfreemem(k);
        if (run(db, sql.p, "drop")) {
            PQclear(PQexec(db, "ROLLBACK"));
            e = CV_ERR_TIMEOUT;
        }
    }
    PQfinish(db);
    cv_buf_free(&name), cv_buf_free(&qn), cv_buf_free(&key), cv_buf_free(&sql);
    return e;
}

cv_err cv_sink_index_seed(const char *conninfo, const cv_sink_table *t, const char *suffix,
                          const char *text_source, long *copied) {
    *copied = 0;
    if (!pgvector_only(conninfo, "seed")) return CV_ERR_UNSUPPORTED;
    PGconn *db = connect_store(conninfo, "seed");
    if (!db) return CV_ERR_TIMEOUT;
    cv_sink_table u = *t;
    u.index_suffix = NULL;
    cv_buf live = {0}, next = {0}, ql = {0}, qn = {0}, cols = {0}, sel = {0}, sql = {0};
    cv_sink_pg_table(&u, &live);
    u.index_suffix = suffix;
    cv_sink_pg_table(&u, &next);
    qualified(live.p, &ql);
    qualified(next.p, &qn);
    /* the columns both tables have (an older live table may lack the newer stamp columns) */
    const char *p[2] = {ql.p, qn.p};
    PGresult *r =
        PQexecParams(db,
                     "SELECT a.attname FROM pg_attribute a JOIN pg_attribute b ON b.attname = a.attname "
                     "AND b.attrelid = to_regclass($2) AND b.attnum > 0 AND NOT b.attisdropped "
                     "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped "
                     "ORDER BY a.attnum",
                     2, NULL, p, NULL, NULL, 0);
    cv_err e = CV_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) == 0) {
        cv_error("event=migrate_failed step=seed error=\"%s\"",
                 PQresultStatus(r) == PGRES_TUPLES_OK ? "no columns in common" : PQresultErrorMessage(r));
        e = CV_ERR_TIMEOUT;
    }
    for (int i = 0; !e && i < PQntuples(r); i++) {
        const char *c = PQgetvalue(r, i, 0);
        if (i) cv_buf_puts(&cols, ", "), cv_buf_puts(&sel, ", ");
        cv_pg_ident(&cols, c);
        if (!strcmp(c, "text_source"))
            cv_buf_puts(&sel, "$1");
        else
            cv_pg_ident(&sel, c);
    }
    PQclear(r);
    if (!e) {
        cv_buf_printf(&sql, "INSERT INTO %s (%s) SELECT %s FROM %s ON CONFLICT DO NOTHING", qn.p, cols.p,
                      sel.p, ql.p);
        const char *v[1] = {text_source};
        r = PQexecParams(db, sql.p, 1, NULL, v, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            cv_error("event=migrate_failed step=seed error=\"%s\"", PQresultErrorMessage(r));
            e = CV_ERR_TIMEOUT;
        } else
            *copied = atol(PQcmdTuples(r));
        PQclear(r);
    }
    PQfinish(db);
    cv_buf_free(&live), cv_buf_free(&next), cv_buf_free(&ql), cv_buf_free(&qn), cv_buf_free(&cols);
    cv_buf_free(&sel), cv_buf_free(&sql);
    return e;
}
