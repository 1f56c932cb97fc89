/* pgvector.c: the pgvector sink over libpq.
 *
 * Table cdcvec."<schema>_<table>" (common/cv_names.h: within 63 bytes): the source's primary
 * key columns (same types), embedding vector(dim), payload jsonb, text_hash bytea (SHA-256 of
 * the embedded text), model text, source_lsn pg_lsn, updated_at timestamptz; HNSW index with
 * vector_cosine_ops. Table cdcvec.state(stream, lsn, backfill_lsn, backfill_done, relid,
 * layout, text_source) records the applied position in the same transaction as the rows, and
 * what the source table looked like; cdcvec.dead_letters the changes that could not be
 * applied. Row sets travel as arrays and are expanded with unnest(), so a batch costs a
 * handful of statements whatever its size. A payload replaces the stored one, except for the
 * keys a change names in `keep` (values it did not carry). */
#define _POSIX_C_SOURCE 200809L
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_keytext.h"
#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "../common/cv_names.h"
#include "../common/cv_pg.h"
#include "sink_impl.h"

typedef struct pg_sink {
    cv_sink base; /* first: the handle sink.c dispatches on */
    PGconn *db;
    cv_sink_table t;
    cv_pg_fault fault; /* of the last error */
    char *tname;       /* schema_table (unquoted) */
    char *qtable;      /* cdcvec."schema_table" */
    char *keylist;     /* "k1","k2" */
    char *keycast;     /* unnest arguments: $1::t1[],$2::t2[] */
    char *stream;
} pg_sink;

/* SQL must be whole: running out of memory while building a statement is fatal here. */
static int sql_oom(void) {
    fprintf(stderr, "cdcvec: out of memory while building SQL\n");
    abort();
}
#define cv_buf_put(b, s, n)   ((cv_buf_put)((b), (s), (n)), (void)(!(b)->oom || sql_oom()))
#define cv_buf_puts(b, s)     ((cv_buf_puts)((b), (s)), (void)(!(b)->oom || sql_oom()))
#define cv_buf_printf(b, ...) ((cv_buf_printf)((b), __VA_ARGS__), (void)(!(b)->oom || sql_oom()))

/* Appends one element of a PostgreSQL array literal: "value" with \ and " escaped. */
static void arr_elem(cv_buf *b, const char *v, int first) {
    if (!first) cv_buf_put(b, ",", 1);
    cv_buf_put(b, "\"", 1);
    for (const char *p = v; *p; p++) {
        if (*p == '"' || *p == '\\') cv_buf_put(b, "\\", 1);
        cv_buf_put(b, p, 1);
    }
    cv_buf_put(b, "\"", 1);
}

/* Classifies a failed statement once, here (common/cv_pg.h), logs it with the fix. */
static cv_err exec_ok(pg_sink *s, PGresult *r, const char *what) {
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return CV_OK;
    cv_pg_classify_result(s->db, r, &s->fault);
    s->base.kind = s->fault.kind, s->base.fix = s->fault.fix;
    cv_pg_log_fault("sink_failed", what, r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL, &s->fault,
                    r ? PQresultErrorMessage(r) : PQerrorMessage(s->db));
    if (s->fault.retriable) return CV_ERR_TIMEOUT;
    return strcmp(s->fault.kind, "data") == 0 ? CV_ERR_FORMAT : CV_ERR_UNSUPPORTED;
}

static cv_err run(pg_sink *s, const char *sql, const char *what) {
    PGresult *r = PQexec(s->db, sql);
    cv_err e = exec_ok(s, r, what);
    PQclear(r);
    return e;
}

static void pg_close(cv_sink *sk);
static void pg_rollback(cv_sink *sk);
static cv_err pg_state(cv_sink *sk, uint64_t *pos, int *done, uint64_t *bpos);

/* CREATE INDEX IF NOT EXISTS ... USING hnsw (embedding vector_cosine_ops), with room to build. */
static cv_err ensure_index(pg_sink *s) {
    cv_buf name = {0}, sql = {0};
    cv_name_index(s->tname, "_embedding_hnsw", &name);
    cv_buf_puts(&sql, "SET maintenance_work_mem = '512MB'; CREATE INDEX IF NOT EXISTS ");
    cv_pg_ident(&sql, name.p);
    cv_buf_printf(&sql, " ON %s USING hnsw (embedding vector_cosine_ops); RESET maintenance_work_mem;",
                  s->qtable);
    cv_err e = run(s, sql.p, "create_index");
    free(sql.p), free(name.p);
    return e;
}

static cv_err pg_open(const char *conninfo, const cv_sink_table *t, cv_sink **out) {
    *out = NULL;
    pg_sink *s = calloc(1, sizeof *s);
    if (!s) return CV_ERR_NOMEM;
    s->base.ops = &cv_sink_pgvector_ops;
    s->t = *t;
    s->db = cv_pg_connect(conninfo, 0, "sink");
    if (PQstatus(s->db) != CONNECTION_OK) {
        cv_pg_classify_connect(s->db, &s->fault);
        cv_pg_log_fault("sink_connect", NULL, NULL, &s->fault, PQerrorMessage(s->db));
        cv_err e = s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
        cv_sink_open_failed(s->fault.kind, s->fault.fix);
        pg_close(&s->base);
        return e;
    }
    cv_buf name = {0}, tab = {0}, keys = {0}, cast = {0}, sql = {0};
    cv_name_sink_table(t->schema, t->table, &name);
    cv_buf_puts(&tab, "cdcvec.");
    cv_pg_ident(&tab, name.p);
    for (int i = 0; i < t->nkeys; i++) {
        if (i) cv_buf_puts(&keys, ",");
        cv_pg_ident(&keys, t->key_names[i]);
        cv_buf_printf(&cast, "%s$%d::%s[]", i ? "," : "", i + 1, t->key_types[i]);
    }
    s->tname = name.p;
    s->qtable = tab.p;
    s->keylist = keys.p;
    s->keycast = cast.p;
    s->stream = strdup(t->stream);
    if (t->dim == 0) { /* state only (capture): no vectors here */
        cv_buf_puts(&sql, "CREATE SCHEMA IF NOT EXISTS cdcvec; ");
    } else {
        cv_buf_puts(&sql, "CREATE EXTENSION IF NOT EXISTS vector; CREATE SCHEMA IF NOT EXISTS cdcvec; ");
        cv_buf_printf(&sql, "CREATE TABLE IF NOT EXISTS %s (", s->qtable);
        for (int i = 0; i < t->nkeys; i++) {
            cv_pg_ident(&sql, t->key_names[i]);
            cv_buf_printf(&sql, " %s NOT NULL, ", t->key_types[i]);
        }
        cv_buf_printf(
            &sql,
            "embedding vector(%d) NOT NULL, payload jsonb NOT NULL DEFAULT '{}', text_hash bytea NOT NULL, "
            "model text NOT NULL, source_lsn pg_lsn NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (%s)); ",
            t->dim, s->keylist);
    }
    cv_buf_puts(&sql, cv_rstate_ddl);
    cv_err e = run(s, sql.p, "create_tables");
    free(sql.p);
    /* the HNSW index is built once the initial backfill is done (pgvector: "add any indexes
     * after loading the initial data"; inserting 100k rows into a live graph was 3x slower) */
    uint64_t pos, bpos;
    int done;
    if (!e) e = pg_state(&s->base, &pos, &done, &bpos);
    if (!e && done && t->dim) e = ensure_index(s);
    if (e) {
        cv_sink_open_failed(s->fault.kind, s->fault.fix);
        pg_close(&s->base);
        return e;
    }
    *out = &s->base;
    return CV_OK;
}

static void pg_close(cv_sink *sk) {
    pg_sink *s = (pg_sink *)sk;
    if (!s) return;
    if (s->db) PQfinish(s->db);
    free(s->tname), free(s->qtable), free(s->keylist), free(s->keycast), free(s->stream);
    free(s);
}

static cv_err pg_state(cv_sink *sk, uint64_t *pos, int *done, uint64_t *bpos) {
    pg_sink *s = (pg_sink *)sk;
    const char *p[1] = {s->stream};
    PGresult *r = PQexecParams(s->db,
                               "SELECT lsn::text, backfill_done, coalesce(backfill_lsn::text, '0/0') "
                               "FROM cdcvec.state WHERE stream = $1",
                               1, NULL, p, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "read_state");
    *pos = 0, *done = 0, *bpos = 0;
    if (!e && PQntuples(r) == 1) {
        cv_lsn_parse(PQgetvalue(r, 0, 0), pos);
        *done = PQgetvalue(r, 0, 1)[0] == 't';
        cv_lsn_parse(PQgetvalue(r, 0, 2), bpos);
    }
    PQclear(r);
    return e;
}

/* Fills params[0..nkeys) with key arrays for n rows. Caller frees the strings. */
static void key_arrays(const pg_sink *s, const char *const *const *keys, int n, char **params) {
    for (int k = 0; k < s->t.nkeys; k++) {
        cv_buf b = {0};
        cv_buf_put(&b, "{", 1);
        for (int i = 0; i < n; i++)
            arr_elem(&b, keys[i][k], i == 0);
        cv_buf_put(&b, "}", 1);
        params[k] = b.p;
    }
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* "k1","k2" as unnest output columns, and "t.k1 = u.k1 AND ...". */
static void key_sql(const pg_sink *s, cv_buf *ucols, cv_buf *match) {
    for (int i = 0; i < s->t.nkeys; i++) {
        cv_buf k = {0};
        cv_pg_ident(&k, s->t.key_names[i]);
        cv_buf_printf(ucols, "%s%s", i ? "," : "", k.p);
        if (match) cv_buf_printf(match, "%st.%s = u.%s", i ? " AND " : "", k.p, k.p);
        free(k.p);
    }
}

static cv_err pg_hashes(cv_sink *sk, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32]) {
    pg_sink *s = (pg_sink *)sk;
    for (int i = 0; i < n; i++)
        found[i] = 0;
    if (n == 0) return CV_OK;
    const int nk = s->t.nkeys;
    char **params = calloc((size_t)nk, sizeof(char *));
    key_arrays(s, keys, n, params);
    /* the request's position comes back with each row (WITH ORDINALITY): keys are compared by
     * PostgreSQL with their own types, and matching is O(n) */
    cv_buf sql = {0}, ucols = {0}, match = {0};
    key_sql(s, &ucols, &match);
    cv_buf_printf(&sql,
                  "SELECT u.ord, encode(t.text_hash, 'hex') FROM unnest(%s) WITH ORDINALITY AS u(%s, ord) "
                  "JOIN %s t ON %s",
                  s->keycast, ucols.p, s->qtable, match.p);
    PGresult *r = PQexecParams(s->db, sql.p, nk, NULL, (const char *const *)params, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "lookup_hashes");
    for (int row = 0; !e && row < PQntuples(r); row++) {
        long i = strtol(PQgetvalue(r, row, 0), NULL, 10) - 1;
        const char *hx = PQgetvalue(r, row, 1);
        if (i < 0 || i >= n || strlen(hx) != 64) continue;
        for (int b = 0; b < 32; b++)
            hash[i][b] = (uint8_t)(hexval(hx[2 * b]) << 4 | hexval(hx[2 * b + 1]));
        found[i] = 1;
    }
    free(ucols.p), free(match.p);
    PQclear(r);
    for (int i = 0; i < nk; i++)
        free(params[i]);
    free(params);
    free(sql.p);
    return e;
}

static void vec_text(cv_buf *b, const float *v, int dim) {
    char num[32];
    cv_buf_put(b, "[", 1);
    for (int j = 0; j < dim; j++) {
        int n = snprintf(num, sizeof num, j ? ",%.9g" : "%.9g", (double)v[j]);
        cv_buf_put(b, num, (size_t)n);
    }
    cv_buf_put(b, "]", 1);
}

/* The stored payload's values for the keys named in the JSON array `kp`, over which the new
 * payload `p` goes (a payload replaces the stored one but for the values a change did not
 * carry). `old` is the stored row's alias. */
#define MERGED_PAYLOAD(old)                                                                                  \
    "coalesce((SELECT jsonb_object_agg(o.key, o.value) FROM jsonb_each(" old ".payload) o WHERE o.key IN "   \
    "(SELECT jsonb_array_elements_text(u.kp::jsonb))), '{}') || u.p::jsonb"

static cv_err apply_rows(pg_sink *s, const cv_sink_row *rows, int n, int with_vec, const char *lsn) {
    if (n == 0) return CV_OK;
    const int nk = s->t.nkeys;
    const char **keys[n > 0 ? n : 1];
    for (int i = 0; i < n; i++)
        keys[i] = (const char **)rows[i].key;
    char *params[nk + 6];
    key_arrays(s, (const char *const *const *)keys, n, params);
    cv_buf pay = {0}, keep = {0}, vec = {0}, hash = {0}, sql = {0};
    cv_buf_put(&pay, "{", 1);
    cv_buf_put(&keep, "{", 1);
    cv_buf_put(&vec, "{", 1);
    cv_buf_put(&hash, "{", 1);
    for (int i = 0; i < n; i++) {
        arr_elem(&pay, rows[i].payload ? rows[i].payload : "{}", i == 0);
        arr_elem(&keep, rows[i].keep ? rows[i].keep : "[]", i == 0);
        if (with_vec) {
            cv_buf v = {0};
            vec_text(&v, rows[i].vec, s->t.dim);
            arr_elem(&vec, v.p, i == 0);
            free(v.p);
            char hx[65];
            for (int b = 0; b < 32; b++)
                snprintf(hx + 2 * b, 3, "%02x", rows[i].hash[b]);
            arr_elem(&hash, hx, i == 0);
        }
    }
    cv_buf_put(&pay, "}", 1);
    cv_buf_put(&keep, "}", 1);
    cv_buf_put(&vec, "}", 1);
    cv_buf_put(&hash, "}", 1);
    cv_buf ucols = {0}, match = {0}, xmatch = {0}, uq = {0};
    key_sql(s, &ucols, &match);
    for (int i = 0; i < nk; i++) {
        cv_buf k = {0};
        cv_pg_ident(&k, s->t.key_names[i]);
        cv_buf_printf(&xmatch, "%sx.%s = u.%s", i ? " AND " : "", k.p, k.p);
        cv_buf_printf(&uq, "%su.%s", i ? ", " : "", k.p);
        free(k.p);
    }
    int np;
    if (with_vec) {
        params[nk] = pay.p, params[nk + 1] = vec.p, params[nk + 2] = hash.p, params[nk + 3] = keep.p;
        params[nk + 4] = (char *)s->t.model_id, params[nk + 5] = (char *)lsn;
        np = nk + 6;
        cv_buf_printf(
            &sql, "INSERT INTO %s AS t (%s, embedding, payload, text_hash, model, source_lsn, updated_at) ",
            s->qtable, s->keylist);
        cv_buf_printf(
            &sql,
            "SELECT %s, u.e::vector, " MERGED_PAYLOAD("x") ", decode(u.h, 'hex'), $%d, $%d::pg_lsn, now() ",
            uq.p, nk + 5, nk + 6);
        cv_buf_printf(
            &sql,
            "FROM unnest(%s, $%d::text[], $%d::text[], $%d::text[], $%d::text[]) AS u(%s, p, e, h, kp) "
            "LEFT JOIN %s x ON %s ",
            s->keycast, nk + 1, nk + 2, nk + 3, nk + 4, ucols.p, s->qtable, xmatch.p);
        cv_buf_printf(
            &sql,
            "ON CONFLICT (%s) DO UPDATE SET embedding = EXCLUDED.embedding, payload = EXCLUDED.payload, "
            "text_hash = EXCLUDED.text_hash, model = EXCLUDED.model, "
            "source_lsn = EXCLUDED.source_lsn, updated_at = EXCLUDED.updated_at",
            s->keylist);
    } else {
        params[nk] = pay.p, params[nk + 1] = keep.p, params[nk + 2] = (char *)lsn;
        np = nk + 3;
        cv_buf_printf(
            &sql,
            "UPDATE %s AS t SET payload = " MERGED_PAYLOAD(
                "t") ", source_lsn = $%d::pg_lsn, "
                     "updated_at = now() FROM unnest(%s, $%d::text[], $%d::text[]) AS u(%s, p, kp) WHERE %s",
            s->qtable, nk + 3, s->keycast, nk + 1, nk + 2, ucols.p, match.p);
    }
    PGresult *r = PQexecParams(s->db, sql.p, np, NULL, (const char *const *)params, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, with_vec ? "upsert" : "update_payload");
    PQclear(r);
    for (int i = 0; i < nk; i++)
        free(params[i]);
    free(pay.p), free(keep.p), free(vec.p), free(hash.p), free(sql.p), free(ucols.p), free(match.p),
        free(xmatch.p), free(uq.p);
    return e;
}

static cv_err pg_begin(cv_sink *sk, int truncate) {
    pg_sink *s = (pg_sink *)sk;
    cv_err e = run(s, "BEGIN", "begin");
    if (!e && truncate) {
        cv_buf q = {0};
        cv_buf_printf(&q, "TRUNCATE %s", s->qtable);
        e = run(s, q.p, "truncate");
        free(q.p);
    }
    if (e) pg_rollback(&s->base);
    return e;
}

static cv_err pg_delete(cv_sink *sk, const char *const *const *keys, int n) {
    pg_sink *s = (pg_sink *)sk;
    cv_err e = CV_OK;
    if (n) {
        char *params[s->t.nkeys];
        key_arrays(s, keys, n, params);
        cv_buf q = {0};
        cv_buf_printf(&q, "DELETE FROM %s WHERE (%s) IN (SELECT * FROM unnest(%s))", s->qtable, s->keylist,
                      s->keycast);
        PGresult *r = PQexecParams(s->db, q.p, s->t.nkeys, NULL, (const char *const *)params, NULL, NULL, 0);
        e = exec_ok(s, r, "delete");
        PQclear(r);
        free(q.p);
        for (int i = 0; i < s->t.nkeys; i++)
            free(params[i]);
    }
    if (e) pg_rollback(&s->base);
    return e;
}

static cv_err pg_put(cv_sink *sk, const cv_sink_row *rows, int n, uint64_t position) {
    pg_sink *s = (pg_sink *)sk;
    char lsn[24];
    cv_lsn_format(position, lsn);
    cv_sink_row *without = malloc(sizeof(cv_sink_row) * (size_t)(n + 1)),
                *with = malloc(sizeof(cv_sink_row) * (size_t)(n + 1));
    CV_ASSERT(without && with);
    int a = 0, b = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i].vec)
            with[b++] = rows[i];
        else
            without[a++] = rows[i];
    }
    cv_err e = apply_rows(s, without, a, 0, lsn);
    if (!e) e = apply_rows(s, with, b, 1, lsn);
    free(without), free(with);
    if (e) pg_rollback(&s->base);
    return e;
}

static cv_err pg_dead_put(cv_sink *sk, const cv_sink_dead *d, int n, uint64_t position) {
    pg_sink *s = (pg_sink *)sk;
    if (n == 0) return CV_OK;
    char lsn[24];
    cv_lsn_format(position, lsn);
    cv_buf keys = {0}, why = {0};
    cv_buf_put(&keys, "{", 1);
    cv_buf_put(&why, "{", 1);
    for (int i = 0; i < n; i++) {
        arr_elem(&keys, d[i].key, i == 0);
        arr_elem(&why, d[i].reason, i == 0);
    }
    cv_buf_put(&keys, "}", 1);
    cv_buf_put(&why, "}", 1);
    const char *p[4] = {s->stream, lsn, keys.p, why.p};
    PGresult *r =
        PQexecParams(s->db,
                     "INSERT INTO cdcvec.dead_letters (stream, lsn, key, reason) SELECT $1, $2::pg_lsn, k, "
                     "w FROM unnest($3::text[], $4::text[]) AS u(k, w)",
                     4, NULL, p, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "dead_letters");
    PQclear(r);
    free(keys.p), free(why.p);
    if (e) pg_rollback(&s->base);
    return e;
}

static cv_err pg_meta_get(cv_sink *sk, cv_sink_meta *m) {
    pg_sink *s = (pg_sink *)sk;
    memset(m, 0, sizeof *m);
    const char *p[1] = {s->stream};
    PGresult *r = PQexecParams(s->db, "SELECT relid, layout, text_source FROM cdcvec.state WHERE stream = $1",
                               1, NULL, p, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "read_meta");
    if (!e && PQntuples(r) == 1) {
        if (!PQgetisnull(r, 0, 0)) m->relid = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
        if (!PQgetisnull(r, 0, 1)) m->layout = strdup(PQgetvalue(r, 0, 1));
        if (!PQgetisnull(r, 0, 2)) m->text_source = strdup(PQgetvalue(r, 0, 2));
    }
    PQclear(r);
    return e;
}

static cv_err pg_meta_set(cv_sink *sk, const cv_sink_meta *m) {
    pg_sink *s = (pg_sink *)sk;
    char relid[16];
    snprintf(relid, sizeof relid, "%u", m->relid);
    const char *p[4] = {s->stream, relid, m->layout, m->text_source};
    PGresult *r =
        PQexecParams(s->db,
                     "INSERT INTO cdcvec.state (stream, lsn, relid, layout, text_source) VALUES ($1, '0/0', "
                     "$2::oid, $3, $4) ON CONFLICT (stream) DO UPDATE SET relid = EXCLUDED.relid, "
                     "layout = EXCLUDED.layout, text_source = EXCLUDED.text_source",
                     4, NULL, p, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "write_meta");
    PQclear(r);
    return e;
}

void cv_sink_meta_peek(const char *conninfo, const char *stream, cv_sink_meta *m) {
    memset(m, 0, sizeof *m);
    PGconn *db = cv_pg_connect(conninfo, 0, "sink");
    if (PQstatus(db) == CONNECTION_OK) {
        const char *p[1] = {stream};
        PGresult *r =
            PQexecParams(db,
                         "SELECT relid, layout, text_source FROM cdcvec.state WHERE stream = $1 AND "
                         "to_regclass('cdcvec.state') IS NOT NULL",
                         1, NULL, p, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            if (!PQgetisnull(r, 0, 0)) m->relid = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
            if (!PQgetisnull(r, 0, 1)) m->layout = strdup(PQgetvalue(r, 0, 1));
            if (!PQgetisnull(r, 0, 2)) m->text_source = strdup(PQgetvalue(r, 0, 2));
        }
        PQclear(r);
    }
    PQfinish(db);
}

static cv_err pg_commit(cv_sink *sk, uint64_t position) {
    pg_sink *s = (pg_sink *)sk;
    char lsn[24];
    cv_lsn_format(position, lsn);
    const char *p[2] = {s->stream, lsn};
    PGresult *r =
        PQexecParams(s->db,
                     "INSERT INTO cdcvec.state (stream, lsn) VALUES ($1, $2::pg_lsn) ON CONFLICT (stream) "
                     "DO UPDATE SET lsn = greatest(cdcvec.state.lsn, EXCLUDED.lsn), updated_at = now()",
                     2, NULL, p, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "record_position");
    PQclear(r);
    if (!e)
        e = run(s, "COMMIT", "commit");
    else
        pg_rollback(&s->base);
    return e;
}

static void pg_rollback(cv_sink *sk) {
    pg_sink *s = (pg_sink *)sk;
    PQclear(PQexec(s->db, "ROLLBACK"));
}

static cv_err pg_backfill_mark(cv_sink *sk, uint64_t p, int done) {
    pg_sink *s = (pg_sink *)sk;
    char lsn[24];
    cv_lsn_format(p, lsn);
    const char *params[3] = {s->stream, lsn, done ? "true" : "false"};
    cv_err e = run(s, "BEGIN", "begin");
    if (!e && done && s->t.dim) {
        cv_buf q = {0};
        cv_buf_printf(&q, "DELETE FROM %s WHERE source_lsn < $1::pg_lsn", s->qtable);
        const char *pp[1] = {lsn};
        PGresult *r = PQexecParams(s->db, q.p, 1, NULL, pp, NULL, NULL, 0);
        e = exec_ok(s, r, "delete_orphans");
        PQclear(r);
        free(q.p);
    }
    if (!e) {
        PGresult *r =
            PQexecParams(s->db,
                         "INSERT INTO cdcvec.state (stream, lsn, backfill_lsn, backfill_done) VALUES "
                         "($1, $2::pg_lsn, $2::pg_lsn, $3::boolean) ON CONFLICT (stream) DO UPDATE SET "
                         "lsn = EXCLUDED.lsn, backfill_lsn = EXCLUDED.backfill_lsn, backfill_done = "
                         "EXCLUDED.backfill_done, updated_at = now()",
                         3, NULL, params, NULL, NULL, 0);
        e = exec_ok(s, r, "backfill_state");
        PQclear(r);
    }
    if (!e)
        e = run(s, "COMMIT", "commit");
    else
        PQclear(PQexec(s->db, "ROLLBACK"));
    if (!e && done && s->t.dim) e = ensure_index(s);
    return e;
}

static cv_err pg_search(cv_sink *sk, const float *q, int limit, cv_sink_hit_cb cb, void *arg) {
    pg_sink *s = (pg_sink *)sk;
    cv_buf v = {0}, sql = {0}, keyexpr = {0};
    vec_text(&v, q, s->t.dim);
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    for (int i = 0; i < s->t.nkeys; i++) {
        if (i) cv_buf_puts(&keyexpr, " || ',' || ");
        cv_pg_ident(&keyexpr, s->t.key_names[i]);
        cv_buf_puts(&keyexpr, "::text");
    }
    cv_buf_printf(&sql,
                  "SELECT 1 - (embedding <=> $1::vector), %s, payload::text FROM %s ORDER BY embedding <=> "
                  "$1::vector LIMIT $2::int",
                  keyexpr.p, s->qtable);
    const char *p[2] = {v.p, lim};
    PGresult *r = PQexecParams(s->db, sql.p, 2, NULL, p, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "search");
    for (int i = 0; !e && i < PQntuples(r); i++)
        cb(arg, i + 1, strtod(PQgetvalue(r, i, 0), NULL), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2));
    PQclear(r);
    free(v.p), free(sql.p), free(keyexpr.p);
    return e;
}

static cv_err pg_fetch(cv_sink *sk, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32],
                       char **payload) {
    pg_sink *s = (pg_sink *)sk;
    const int nk = s->t.nkeys;
    char **params = calloc((size_t)nk, sizeof(char *));
    CV_ASSERT(params);
    key_arrays(s, keys, n, params);
    cv_buf sql = {0}, ucols = {0}, match = {0};
    key_sql(s, &ucols, &match);
    cv_buf_printf(
        &sql,
        "SELECT u.ord, encode(t.text_hash, 'hex'), t.payload::text FROM unnest(%s) WITH ORDINALITY AS "
        "u(%s, ord) JOIN %s t ON %s",
        s->keycast, ucols.p, s->qtable, match.p);
    PGresult *r = PQexecParams(s->db, sql.p, nk, NULL, (const char *const *)params, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "verify_fetch");
    for (int row = 0; !e && row < PQntuples(r); row++) {
        long i = strtol(PQgetvalue(r, row, 0), NULL, 10) - 1;
        const char *hx = PQgetvalue(r, row, 1);
        if (i < 0 || i >= n || strlen(hx) != 64) continue;
        for (int b = 0; b < 32; b++)
            hash[i][b] = (uint8_t)(hexval(hx[2 * b]) << 4 | hexval(hx[2 * b + 1]));
        found[i] = 1;
        payload[i] = strdup(PQgetvalue(r, row, 2));
    }
    PQclear(r);
    for (int i = 0; i < nk; i++)
        free(params[i]);
    free(params), free(sql.p), free(ucols.p), free(match.p);
    return e;
}

/* Keyset pages over the primary key: WHERE (k...) > (cursor...) ORDER BY k... LIMIT n. */
static cv_err pg_scan(cv_sink *sk, cv_buf *cursor, int limit, cv_sink_key_cb cb, void *arg, int *more) {
    pg_sink *s = (pg_sink *)sk;
    const int nk = s->t.nkeys;
    char **after = NULL;
    if (cursor->len && cv_key_parse(cursor->p, nk, &after, NULL)) return CV_ERR_ARG;
    cv_buf sql = {0}, cols = {0}, vals = {0};
    for (int i = 0; i < nk; i++) {
        cv_buf k = {0};
        cv_pg_ident(&k, s->t.key_names[i]);
        cv_buf_printf(&cols, "%s%s", i ? "," : "", k.p);
        cv_buf_printf(&vals, "%s$%d::%s", i ? "," : "", i + 1, s->t.key_types[i]);
        free(k.p);
    }
    cv_buf_puts(&sql, "SELECT ");
    for (int i = 0; i < nk; i++) {
        cv_buf_printf(&sql, "%s", i ? "," : "");
        cv_pg_ident(&sql, s->t.key_names[i]);
        cv_buf_puts(&sql, "::text");
    }
    cv_buf_printf(&sql, " FROM %s", s->qtable);
    if (after) cv_buf_printf(&sql, " WHERE (%s) > (%s)", cols.p, vals.p);
    cv_buf_printf(&sql, " ORDER BY %s LIMIT %d", cols.p, limit);
    PGresult *r = PQexecParams(s->db, sql.p, after ? nk : 0, NULL, (const char *const *)after, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "verify_scan");
    int rows = e ? 0 : PQntuples(r);
    const char **v = calloc((size_t)nk + 1, sizeof(char *));
    CV_ASSERT(v);
    for (int row = 0; row < rows; row++) {
        for (int k = 0; k < nk; k++)
            v[k] = PQgetvalue(r, row, k);
        cv_buf kt = {0};
        cv_key_format(v, nk, &kt);
        cb(arg, kt.p);
        if (row == rows - 1) {
            cursor->len = 0;
            cv_buf_put(cursor, kt.p, kt.len);
        }
        free(kt.p);
    }
    *more = !e && rows == limit;
    free(v);
    PQclear(r);
    cv_key_free(after);
    free(sql.p), free(cols.p), free(vals.p);
    return e;
}

/* The pgvector store's row in the table of stores (sink_impl.h). */
const cv_sink_ops cv_sink_pgvector_ops = {"pgvector",  pg_open,     pg_close,    pg_state,         pg_hashes,
                                          pg_begin,    pg_delete,   pg_put,      pg_dead_put,      pg_commit,
                                          pg_rollback, pg_meta_get, pg_meta_set, pg_backfill_mark, pg_search,
                                          NULL,        pg_fetch,    pg_scan};
