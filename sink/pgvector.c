/* pgvector.c: the pgvector sink over libpq.
 *
 * Table cdcvec."<schema>_<table>" (pg/cv_names.h: within 63 bytes): the source's primary
 * key columns (same types), embedding vector(dim), payload jsonb, text_hash bytea (SHA-256 of
 * the embedded text), model text, model_revision text (SHA-256 of the weights; NULL: unknown),
 * text_source text (the stamp, sink.h), source_lsn pg_lsn, updated_at timestamptz; HNSW index with
 * vector_cosine_ops. Table cdcvec.state(stream, lsn, backfill_lsn, backfill_done, relid,
 * layout, text_source) records the applied position in the same transaction as the rows, and
 * what the source table looked like; cdcvec.dead_letters the changes that could not be
 * applied. A payload replaces the stored one, except for the keys a change names in `keep`
 * (values it did not carry).
 *
 * Rows with vectors travel by COPY (FORMAT BINARY) into a temporary staging table (vectors in
 * pgvector's binary form: no float text to print or parse) and move into the table with one
 * INSERT ... ON CONFLICT that empties the staging table as it reads it; key sets for deletes,
 * lookups and payload-only updates travel as arrays expanded with unnest(). A batch costs a
 * handful of statements whatever its size.
 *
 * Parallel writers (cv_sink_table.writers > 1, keys that compare exactly by their text): a
 * batch's rows are split by a hash of the key over that many connections, each in its own
 * transaction, sent together with libpq's asynchronous calls (PostgreSQL's backends do the
 * work side by side: heap, WAL and HNSW inserts); one key is always in the same part, so no two
 * concurrent transactions touch the same row. Commit: every other part commits first, then
 * connection 0 commits its own part with the position. A crash in between leaves rows written
 * but the position not recorded: the batch is replayed from it, idempotently (upserts and
 * deletes by key). A batch that truncates runs on connection 0 alone (TRUNCATE's lock would
 * block the other parts). */
#define _POSIX_C_SOURCE 200809L
#include <libpq-fe.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "../pg/cv_names.h"
#include "../pg/cv_pg.h"
#include "../common/cv_time.h"
#include "pgvector_impl.h"

static void pg_close(cv_sink *sk);
static cv_err pg_state(cv_sink *sk, uint64_t *pos, int *done, uint64_t *bpos);

/* Notices during the index build: pgvector says when the graph outgrew maintenance_work_mem
 * (the build goes on, slower); remembered for the warning that names the fix. */
static void build_notice(void *arg, const char *message) {
    if (strstr(message, "no longer fits into maintenance_work_mem")) *(int *)arg = 1;
    cv_pg_notice(NULL, message);
}

/* CREATE INDEX IF NOT EXISTS ... USING hnsw (embedding vector_cosine_ops), sized to the table
 * and the server: maintenance_work_mem for the whole graph (pgvector builds fastest while the
 * graph fits in it; estimated at rows x (4 x dim + 1200) bytes x 1.5, at least 64 MB, at most
 * cv_sink_table.index_mem_mb), and as many parallel maintenance workers as the server's
 * max_parallel_workers allows (PostgreSQL picks how many of those the table's size deserves).
 * A parallel build keeps the graph in dynamic shared memory: where that fails (a container's
 * small /dev/shm), the build is retried without workers. */
static cv_err ensure_index(pg_sink *s) {
    cv_buf name = {0}, sql = {0};
    cv_name_index(s->tname, "_embedding_hnsw", &name);
    cv_buf qn = {0};
    cv_buf_puts(&qn, "cdcvec.");
    cv_pg_ident(&qn, name.p);
    PGresult *r = PQexecParams(s->db, "SELECT to_regclass($1) IS NOT NULL", 1, NULL,
                               (const char *const[]){qn.p}, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "find_index");
    int exists = !e && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    free(qn.p);
    if (e || exists) {
        free(name.p);
        return e;
    }
    cv_buf_printf(&sql, "SELECT count(*), current_setting('max_parallel_workers')::int FROM %s", s->qtable);
    r = PQexec(s->db, sql.p);
    e = exec_ok(s, r, "count_rows");
    long rows = e ? 0 : atol(PQgetvalue(r, 0, 0));
    int workers = e ? 0 : atoi(PQgetvalue(r, 0, 1));
    PQclear(r);
    long cap = s->t.index_mem_mb > 0 ? s->t.index_mem_mb : 1024;
    long mb = (long)((double)rows * (4.0 * s->t.dim + 1200) * 1.5 / 1048576.0) + 1;
    if (mb < 64) mb = 64;
    if (mb > cap) mb = cap;
    if (workers > 64) workers = 64;
    const double t0 = cv_wall_now();
    for (int attempt = 0; !e; attempt++) {
        sql.len = 0;
        cv_buf_printf(&sql, "SET maintenance_work_mem = '%ldMB'; SET max_parallel_maintenance_workers = %d; ",
                      mb, workers);
        cv_buf_puts(&sql, "CREATE INDEX IF NOT EXISTS ");
        cv_pg_ident(&sql, name.p);
        cv_buf_printf(&sql,
                      " ON %s USING hnsw (embedding vector_cosine_ops); RESET maintenance_work_mem; RESET "
                      "max_parallel_maintenance_workers;",
                      s->qtable);
        int spilled = 0;
        PQnoticeProcessor prev = PQsetNoticeProcessor(s->db, build_notice, &spilled);
        r = PQexec(s->db, sql.p);
        PQsetNoticeProcessor(s->db, prev, NULL);
        if (spilled)
            cv_warn(
                "event=index_build_slow table=%s maintenance_work_mem_mb=%ld note=\"the HNSW graph outgrew "
                "maintenance_work_mem: the build went on, slower\" fix=\"raise --index-memory (and the "
                "server's memory for it)\"",
                s->qtable, mb);
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && workers > 0 && attempt == 0 && PQstatus(s->db) == CONNECTION_OK) {
            cv_warn(
                "event=index_build_retry table=%s workers=%d error=\"%s\" note=\"retrying without parallel "
                "workers (a parallel build needs maintenance_work_mem of shared memory)\"",
                s->qtable, workers, PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
            PQclear(r);
            PQclear(PQexec(s->db, "RESET maintenance_work_mem; RESET max_parallel_maintenance_workers;"));
            workers = 0;
            continue;
        }
        e = exec_ok(s, r, "create_index");
        PQclear(r);
        break;
    }
    if (!e)
        cv_info("event=index_built table=%s rows=%ld seconds=%.1f maintenance_work_mem_mb=%ld "
                "max_parallel_maintenance_workers=%d",
                s->qtable, rows, cv_wall_now() - t0, mb, workers);
    free(sql.p), free(name.p);
    return e;
}

/* The GIN index (jsonb_path_ops) on payload that serves a search filter's equality
 * conditions (payload @> '{"author": "..."}'); built with the HNSW index, once the backfill is
 * done (IF NOT EXISTS: a store made before it gets it at its next open). Its upkeep on writes
 * is small (jsonb_path_ops: one hash per path and value). */
static cv_err ensure_payload_index(pg_sink *s) {
    cv_buf name = {0}, sql = {0};
    cv_name_index(s->tname, "_payload_gin", &name);
    cv_buf_puts(&sql, "CREATE INDEX IF NOT EXISTS ");
    cv_pg_ident(&sql, name.p);
    cv_buf_printf(&sql, " ON %s USING gin (payload jsonb_path_ops)", s->qtable);
    PGresult *r = PQexec(s->db, sql.p);
    cv_err e = exec_ok(s, r, "create_payload_index");
    PQclear(r);
    free(sql.p), free(name.p);
    return e;
}

/* INSERT ... SELECT from the staging table (emptied as it is read), $1 model, $2 position,
 * $3 model revision, $4 text source (the stamp, sink.h);
 * merged: stored payload values named in kp are kept. */
static char *upsert_sql(const pg_sink *s, int merged) {
    cv_buf sql = {0}, cast = {0}, xmatch = {0};
    for (int k = 0; k < s->t.nkeys; k++) {
        cv_buf_printf(&cast, "%su.k%d::%s", k ? ", " : "", k, s->t.key_types[k]);
        cv_buf_printf(&xmatch, "%sx.", k ? " AND " : "");
        cv_pg_ident(&xmatch, s->t.key_names[k]);
        cv_buf_printf(&xmatch, " = u.k%d::%s", k, s->t.key_types[k]);
    }
    const int ch = s->t.chunked; /* and the chunk's number, hash and offsets */
    cv_buf_printf(
        &sql,
        "WITH u AS (DELETE FROM pg_temp.cdcvec_stage RETURNING *) INSERT INTO %s AS t (%s, embedding, "
        "payload, text_hash, model, model_revision, text_source, source_lsn, updated_at%s) SELECT %s, u.e, "
        "%s, u.h, $1, $3, $4, $2::pg_lsn, now()%s FROM u ",
        s->qtable, s->keylist, ch ? ", chunk, chunk_hash, char_off, char_len" : "", cast.p,
        merged ? MERGED_PAYLOAD("x") : "u.p::jsonb", ch ? ", u.c, u.ch, u.co, u.cl" : "");
    if (merged && ch) /* the key's rows (chunks) share one payload */
        cv_buf_printf(&sql, "LEFT JOIN LATERAL (SELECT payload FROM %s x WHERE %s LIMIT 1) x ON true ",
                      s->qtable, xmatch.p);
    else if (merged)
        cv_buf_printf(&sql, "LEFT JOIN %s x ON %s ", s->qtable, xmatch.p);
    cv_buf_printf(
        &sql,
        "ON CONFLICT (%s%s) DO UPDATE SET embedding = EXCLUDED.embedding, payload = EXCLUDED.payload, "
        "text_hash = EXCLUDED.text_hash, model = EXCLUDED.model, model_revision = EXCLUDED.model_revision, "
        "text_source = EXCLUDED.text_source, source_lsn = EXCLUDED.source_lsn, "
        "updated_at = EXCLUDED.updated_at%s",
        s->keylist, ch ? ", chunk" : "",
        ch ? ", chunk_hash = EXCLUDED.chunk_hash, char_off = EXCLUDED.char_off, char_len = EXCLUDED.char_len"
           : "");
    free(cast.p), free(xmatch.p);
    return sql.p;
}

/* The stamp's columns (model_revision, text_source) in a table of an earlier version: added,
 * NULL in its rows (no rewrite). Looked up first, so that an open (a search's, a writer's)
 * takes no ACCESS EXCLUSIVE lock on a table that has them. */
static cv_err stamp_columns(pg_sink *s) {
    const char *p[1] = {s->qtable};
    PGresult *r =
        PQexecParams(s->db,
                     "SELECT count(*) FROM pg_attribute WHERE attrelid = $1::regclass AND attname IN "
                     "('model_revision', 'text_source') AND NOT attisdropped",
                     1, NULL, p, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "stamp_columns");
    int have = !e && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    if (e || have == 2) return e;
    cv_buf sql = {0};
    cv_buf_printf(&sql,
                  CV_DDL_LOCK
                  "ALTER TABLE %s ADD COLUMN IF NOT EXISTS model_revision text, ADD COLUMN IF NOT "
                  "EXISTS text_source text",
                  s->qtable);
    e = run(s, sql.p, "stamp_columns");
    free(sql.p);
    return e;
}

static cv_err pg_open(const char *conninfo, const cv_sink_table *t, cv_sink **out) {
    *out = NULL;
    pg_sink *s = calloc(1, sizeof *s);
    if (!s) return CV_ERR_NOMEM;
    s->base.ops = &cv_sink_pgvector_ops;
    s->t = *t;
    s->db = s->w[0] = cv_pg_connect(conninfo, 0, t->role ? t->role : "sink");
    s->nw = 1;
    if (PQstatus(s->db) != CONNECTION_OK) {
        cv_pg_classify_connect(s->db, &s->fault);
        cv_pg_log_fault("sink_connect", NULL, NULL, &s->fault, PQerrorMessage(s->db));
        cv_err e = s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
        cv_sink_open_failed(s->fault.kind, s->fault.fix);
        pg_close(&s->base);
        return e;
    }
    const char *fault = getenv("CDCVEC_TEST_FAULT"); /* tests: die between the parts' commits */
    if (fault && strncmp(fault, "parts_committed:", 16) == 0) s->fault_at = atol(fault + 16);
    cv_buf name = {0}, tab = {0}, keys = {0}, cast = {0}, sql = {0};
    cv_sink_pg_table(t, &name); /* with the index suffix of a migration's shadow */
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
    cv_buf_puts(&sql, CV_DDL_LOCK); /* one statement string: one transaction, the lock held to its end */
    if (t->dim == 0) {              /* state only (capture): no vectors here */
        cv_buf_puts(&sql, "CREATE SCHEMA IF NOT EXISTS cdcvec; ");
    } else {
        cv_buf_puts(&sql, "CREATE EXTENSION IF NOT EXISTS vector; CREATE SCHEMA IF NOT EXISTS cdcvec; ");
        cv_buf_printf(&sql, "CREATE TABLE IF NOT EXISTS %s (", s->qtable);
        for (int i = 0; i < t->nkeys; i++) {
            cv_pg_ident(&sql, t->key_names[i]);
            cv_buf_printf(&sql, " %s NOT NULL, ", t->key_types[i]);
        }
        if (t->chunked > 0) /* one row per chunk of the text (models/chunk.h) */
            cv_buf_puts(&sql, "chunk int NOT NULL DEFAULT 0, chunk_hash bytea, char_off int, char_len int, ");
        cv_buf_printf(
            &sql,
            "embedding vector(%d) NOT NULL, payload jsonb NOT NULL DEFAULT '{}', text_hash bytea NOT NULL, "
            "model text NOT NULL, source_lsn pg_lsn NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (%s%s)); ",
            t->dim, s->keylist, t->chunked > 0 ? ", chunk" : "");
        s->upsert = upsert_sql(s, 0);
        s->upsert_kp = upsert_sql(s, 1);
    }
    cv_buf_puts(&sql, cv_rstate_ddl);
    cv_err e = run(s, sql.p, "create_tables");
    free(sql.p);
    if (!e && t->dim) e = stamp_columns(s);
    if (!e && t->dim && !(e = cv_pgv_chunks_layout(s))) { /* the layout found (readers adopt it) */
        free(s->upsert), free(s->upsert_kp);
        s->upsert = upsert_sql(s, 0);
        s->upsert_kp = upsert_sql(s, 1);
    }
    /* the HNSW index is built once the initial backfill is done (pgvector: "add any indexes
     * after loading the initial data"; inserting 100k rows into a live graph was 3x slower) */
    uint64_t pos, bpos;
    int done;
    if (!e) e = pg_state(&s->base, &pos, &done, &bpos);
    if (!e && done && t->dim) e = ensure_index(s);
    if (!e && done && t->dim) e = ensure_payload_index(s);
    /* the other writers' connections */
    int want = t->dim && t->writers > 1 ? t->writers : 1;
    if (want > MAX_WRITERS) want = MAX_WRITERS;
    if (want > 1 && s->t.chunked) {
        cv_info("event=sink_writers table=%s writers=1 requested=%d note=\"a chunked table has one writer\"",
                s->qtable, want);
        want = 1;
    }
    if (want > 1 && !t->key_exact) {
        cv_info(
            "event=sink_writers table=%s writers=1 requested=%d note=\"a primary key column does not compare "
            "exactly by its text form: one connection writes\"",
            s->qtable, want);
        want = 1;
    }
    while (!e && s->nw < want) {
        PGconn *c = s->w[s->nw++] = cv_pg_connect(conninfo, 0, "sink writer");
        if (PQstatus(c) != CONNECTION_OK) {
            cv_pg_classify_connect(c, &s->fault);
            cv_pg_log_fault("sink_connect", "writer", NULL, &s->fault, PQerrorMessage(c));
            e = s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
        }
    }
    if (e) {
        cv_sink_open_failed(s->fault.kind, s->fault.fix);
        pg_close(&s->base);
        return e;
    }
    if (s->nw > 1) cv_info("event=sink_writers table=%s writers=%d", s->qtable, s->nw);
    *out = &s->base;
    return CV_OK;
}

static void pg_close(cv_sink *sk) {
    pg_sink *s = (pg_sink *)sk;
    if (!s) return;
    for (int i = 0; i < s->nw; i++)
        if (s->w[i]) PQfinish(s->w[i]);
    free(s->tname), free(s->qtable), free(s->keylist), free(s->keycast), free(s->stream);
    free(s->upsert), free(s->upsert_kp);
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

static cv_err pg_meta_set(cv_sink *sk, const cv_sink_meta *m) {
    pg_sink *s = (pg_sink *)sk;
    char relid[16];
    snprintf(relid, sizeof relid, "%u", m->relid);
    const char *p[6] = {s->stream, relid, m->layout, m->text_source, m->model, m->model_revision};
    PGresult *r = PQexecParams(s->db, CV_SINK_META_SET, 6, NULL, p, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "write_meta");
    PQclear(r);
    return e;
}

/* Every other part commits, then connection 0 commits its part with the position. */
static cv_err pg_commit(cv_sink *sk, uint64_t position) {
    pg_sink *s = (pg_sink *)sk;
    cv_err e = CV_OK;
    if (s->active > 1) {
        int sent[MAX_WRITERS] = {0}, nparts = s->wrote[0];
        for (int w = 1; w < s->active; w++) {
            send_on(s, w, "COMMIT", 0, NULL, sent);
            nparts += s->wrote[w];
        }
        e = collect(s, sent, NULL, "commit_part");
        if (!e && nparts > 1 && ++s->multi == s->fault_at) {
            cv_warn("event=test_fault fault=parts_committed:%ld note=\"CDCVEC_TEST_FAULT: killed before the "
                    "position is recorded\"",
                    s->multi);
            kill(getpid(), SIGKILL);
        }
    }
    char lsn[24];
    cv_lsn_format(position, lsn);
    const char *p[2] = {s->stream, lsn};
    if (!e) {
        PGresult *r = PQexecParams(
            s->db,
            "INSERT INTO cdcvec.state (stream, lsn) VALUES ($1, $2::pg_lsn) ON CONFLICT (stream) "
            "DO UPDATE SET lsn = greatest(cdcvec.state.lsn, EXCLUDED.lsn), updated_at = now()",
            2, NULL, p, NULL, NULL, 0);
        e = exec_ok(s, r, "record_position");
        PQclear(r);
    }
    if (!e) e = run(s, "COMMIT", "commit");
    if (e)
        cv_pgv_rollback(&s->base);
    else
        s->active = 0;
    return e;
}

void cv_pgv_rollback(cv_sink *sk) {
    pg_sink *s = (pg_sink *)sk;
    const int n = s->active > 1 ? s->active : 1;
    for (int w = 0; w < n; w++)
        PQclear(PQexec(s->w[w], "ROLLBACK"));
    s->active = 0;
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
    if (!e && done && s->t.dim) e = ensure_payload_index(s);
    return e;
}

/* The pgvector store's row in the table of stores (sink_impl.h). */
const cv_sink_ops cv_sink_pgvector_ops = {"pgvector",        pg_open,         pg_close,
                                          pg_state,          cv_pgv_hashes,   cv_pgv_begin,
                                          cv_pgv_delete,     cv_pgv_put,      cv_pgv_dead_put,
                                          pg_commit,         cv_pgv_rollback, pg_meta_set,
                                          pg_backfill_mark,  cv_pgv_search,   NULL,
                                          cv_pgv_fetch,      cv_pgv_scan,     cv_pgv_chunk_hashes,
                                          cv_pgv_chunks_set, cv_pgv_count};
