/* pgvector.c: the pgvector sink over libpq.
 *
 * Table cdcvec."<schema>_<table>" (common/cv_names.h: within 63 bytes): the source's primary
 * key columns (same types), embedding vector(dim), payload jsonb, text_hash bytea (SHA-256 of
 * the embedded text), model text, source_lsn pg_lsn, updated_at timestamptz; HNSW index with
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
#include "../common/cv_keytext.h"
#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "../common/cv_names.h"
#include "../common/cv_pg.h"
#include "../common/cv_time.h"
#include "sink_impl.h"

#define MAX_WRITERS 16

typedef struct pg_sink {
    cv_sink base; /* first: the handle sink.c dispatches on */
    PGconn *db;   /* w[0]: state, meta, search, verify, dead letters and the position */
    PGconn *w[MAX_WRITERS];
    int nw;                   /* connections open */
    int active;               /* connections in the open batch's transaction (0: none open) */
    int staged[MAX_WRITERS];  /* the staging table exists in this transaction */
    int wrote[MAX_WRITERS];   /* this batch wrote through this connection */
    long multi, fault_at;     /* batches written through several parts; CDCVEC_TEST_FAULT */
    char *upsert, *upsert_kp; /* INSERT from the staging table: payload replaced / merged */
    int ef_search;            /* hnsw.ef_search set on connection 0 (0: not yet) */
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

/* Classifies a failed statement on connection c once, here (common/cv_pg.h), logs it with the fix. */
static cv_err exec_on(pg_sink *s, PGconn *c, PGresult *r, const char *what) {
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return CV_OK;
    cv_pg_classify_result(c, r, &s->fault);
    s->base.kind = s->fault.kind, s->base.fix = s->fault.fix;
    cv_pg_log_fault("sink_failed", what, r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL, &s->fault,
                    r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    if (s->fault.retriable) return CV_ERR_TIMEOUT;
    return strcmp(s->fault.kind, "data") == 0 ? CV_ERR_FORMAT : CV_ERR_UNSUPPORTED;
}

static cv_err exec_ok(pg_sink *s, PGresult *r, const char *what) { return exec_on(s, s->db, r, what); }

static cv_err run_on(pg_sink *s, PGconn *c, const char *sql, const char *what) {
    PGresult *r = PQexec(c, sql);
    cv_err e = exec_on(s, c, r, what);
    PQclear(r);
    return e;
}

static cv_err run(pg_sink *s, const char *sql, const char *what) { return run_on(s, s->db, sql, what); }

/* The result of the command in flight on c: the first failure, else the last result (all read,
 * so the connection is ready for the next command). */
static PGresult *finish(PGconn *c) {
    PGresult *keep = NULL, *r;
    while ((r = PQgetResult(c))) {
        if (PQresultStatus(r) == PGRES_COPY_IN) { /* never left open: end it as failed */
            PQputCopyEnd(c, "cdcvec: abandoned");
            PQclear(r);
            continue;
        }
        ExecStatusType kst = PQresultStatus(keep);
        if (keep && kst != PGRES_COMMAND_OK && kst != PGRES_TUPLES_OK) {
            PQclear(r); /* the first failure stays */
        } else {
            PQclear(keep);
            keep = r;
        }
    }
    return keep;
}

/* For each connection i < s->active with sent[i] (1: sent, -1: the send failed): the command's
 * outcome; results[i] keeps a successful result when results is not NULL (the caller clears
 * them). Every connection is drained; the first failure is classified and returned. */
static cv_err collect(pg_sink *s, const int *sent, PGresult **results, const char *what) {
    cv_err first = CV_OK;
    for (int i = 0; i < s->active; i++) {
        if (!sent[i]) continue;
        PGresult *r = sent[i] > 0 ? finish(s->w[i]) : NULL;
        ExecStatusType st = PQresultStatus(r);
        int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
        if (!ok && !first) first = exec_on(s, s->w[i], r, what);
        if (results && ok)
            results[i] = r;
        else
            PQclear(r);
    }
    return first;
}

/* Sends sql with params on connection i (asynchronously); sent[i] records the outcome. */
static void send_on(pg_sink *s, int i, const char *sql, int np, const char *const *params, int *sent) {
    sent[i] = PQsendQueryParams(s->w[i], sql, np, NULL, params, NULL, NULL, 0) ? 1 : -1;
}

/* The part (connection) a key belongs to in this batch: FNV-1a of its text values. */
static int part_of(const pg_sink *s, const char *const *key) {
    if (s->active <= 1) return 0;
    uint64_t h = 1469598103934665603ull;
    for (int k = 0; k < s->t.nkeys; k++) {
        for (const unsigned char *p = (const unsigned char *)key[k]; *p; p++)
            h = (h ^ *p) * 1099511628211ull;
        h = (h ^ 0x1f) * 1099511628211ull;
    }
    return (int)(h % (uint64_t)s->active);
}

static void pg_close(cv_sink *sk);
static void pg_rollback(cv_sink *sk);
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

/* The stored payload's values for the keys named in the JSON array `kp`, over which the new
 * payload `p` goes (a payload replaces the stored one but for the values a change did not
 * carry). `old` is the stored row's alias. */
#define MERGED_PAYLOAD(old)                                                                                  \
    "coalesce((SELECT jsonb_object_agg(o.key, o.value) FROM jsonb_each(" old ".payload) o WHERE o.key IN "   \
    "(SELECT jsonb_array_elements_text(u.kp::jsonb))), '{}') || u.p::jsonb"

/* The staging table of connection c (temporary: one per connection, emptied at commit). */
static void stage_ddl(const pg_sink *s, cv_buf *sql) {
    cv_buf_puts(sql, "CREATE TEMP TABLE IF NOT EXISTS cdcvec_stage (");
    for (int k = 0; k < s->t.nkeys; k++)
        cv_buf_printf(sql, "k%d text, ", k);
    cv_buf_printf(sql, "e vector(%d), h bytea, p text, kp text) ON COMMIT DELETE ROWS", s->t.dim);
}

/* INSERT ... SELECT from the staging table (emptied as it is read), $1 model, $2 position;
 * merged: stored payload values named in kp are kept. */
static char *upsert_sql(const pg_sink *s, int merged) {
    cv_buf sql = {0}, cast = {0}, xmatch = {0};
    for (int k = 0; k < s->t.nkeys; k++) {
        cv_buf_printf(&cast, "%su.k%d::%s", k ? ", " : "", k, s->t.key_types[k]);
        cv_buf_printf(&xmatch, "%sx.", k ? " AND " : "");
        cv_pg_ident(&xmatch, s->t.key_names[k]);
        cv_buf_printf(&xmatch, " = u.k%d::%s", k, s->t.key_types[k]);
    }
    cv_buf_printf(
        &sql,
        "WITH u AS (DELETE FROM pg_temp.cdcvec_stage RETURNING *) INSERT INTO %s AS t (%s, embedding, "
        "payload, text_hash, model, source_lsn, updated_at) SELECT %s, u.e, %s, u.h, $1, $2::pg_lsn, "
        "now() FROM u ",
        s->qtable, s->keylist, cast.p, merged ? MERGED_PAYLOAD("x") : "u.p::jsonb");
    if (merged) cv_buf_printf(&sql, "LEFT JOIN %s x ON %s ", s->qtable, xmatch.p);
    cv_buf_printf(
        &sql,
        "ON CONFLICT (%s) DO UPDATE SET embedding = EXCLUDED.embedding, payload = EXCLUDED.payload, "
        "text_hash = EXCLUDED.text_hash, model = EXCLUDED.model, source_lsn = EXCLUDED.source_lsn, "
        "updated_at = EXCLUDED.updated_at",
        s->keylist);
    free(cast.p), free(xmatch.p);
    return sql.p;
}

static cv_err pg_open(const char *conninfo, const cv_sink_table *t, cv_sink **out) {
    *out = NULL;
    pg_sink *s = calloc(1, sizeof *s);
    if (!s) return CV_ERR_NOMEM;
    s->base.ops = &cv_sink_pgvector_ops;
    s->t = *t;
    s->db = s->w[0] = cv_pg_connect(conninfo, 0, "sink");
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
        cv_buf_printf(
            &sql,
            "embedding vector(%d) NOT NULL, payload jsonb NOT NULL DEFAULT '{}', text_hash bytea NOT NULL, "
            "model text NOT NULL, source_lsn pg_lsn NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (%s)); ",
            t->dim, s->keylist);
        s->upsert = upsert_sql(s, 0);
        s->upsert_kp = upsert_sql(s, 1);
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
    /* the other writers' connections */
    int want = t->dim && t->writers > 1 ? t->writers : 1;
    if (want > MAX_WRITERS) want = MAX_WRITERS;
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

/* Fills params[0..nkeys) with key arrays for n rows. Caller frees the strings. */
static void key_arrays(const pg_sink *s, const char *const *const *keys, int n, char **params) {
    for (int k = 0; k < s->t.nkeys; k++) {
        cv_buf b = {0};
        cv_buf_put(&b, "{", 1);
        for (int i = 0; i < n; i++)
            cv_pg_array_elem(&b, keys[i][k], i == 0);
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

/* keys[0..n) split by part: idx[p] lists the positions of part p's keys, cnt[p] their number. */
typedef struct parts {
    int cnt[MAX_WRITERS];
    int *idx[MAX_WRITERS];
    const char *const **keys[MAX_WRITERS];
} parts;

static void parts_split(const pg_sink *s, const char *const *const *keys, int n, parts *p) {
    memset(p, 0, sizeof *p);
    const int np = s->active > 1 ? s->active : 1;
    for (int i = 0; i < np; i++) {
        p->idx[i] = malloc(sizeof(int) * (size_t)(n + 1));
        p->keys[i] = malloc(sizeof(char **) * (size_t)(n + 1));
        CV_ASSERT(p->idx[i] && p->keys[i]);
    }
    for (int i = 0; i < n; i++) {
        int w = part_of(s, keys[i]);
        p->idx[w][p->cnt[w]] = i;
        p->keys[w][p->cnt[w]++] = keys[i];
    }
}

static void parts_free(parts *p) {
    for (int i = 0; i < MAX_WRITERS; i++)
        free(p->idx[i]), free((void *)p->keys[i]);
}

static cv_err pg_hashes(cv_sink *sk, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32]) {
    pg_sink *s = (pg_sink *)sk;
    for (int i = 0; i < n; i++)
        found[i] = 0;
    if (n == 0) return CV_OK;
    const int nk = s->t.nkeys;
    /* the request's position comes back with each row (WITH ORDINALITY): keys are compared by
     * PostgreSQL with their own types, and matching is O(n). Outside a batch: connection 0. */
    cv_buf sql = {0}, ucols = {0}, match = {0};
    key_sql(s, &ucols, &match);
    cv_buf_printf(&sql,
                  "SELECT u.ord, encode(t.text_hash, 'hex') FROM unnest(%s) WITH ORDINALITY AS u(%s, ord) "
                  "JOIN %s t ON %s",
                  s->keycast, ucols.p, s->qtable, match.p);
    const int saved = s->active;
    if (!s->active) s->active = 1;
    parts p;
    parts_split(s, keys, n, &p);
    int sent[MAX_WRITERS] = {0};
    PGresult *res[MAX_WRITERS] = {0};
    for (int w = 0; w < s->active; w++) {
        if (!p.cnt[w]) continue;
        char *params[nk];
        key_arrays(s, p.keys[w], p.cnt[w], params);
        send_on(s, w, sql.p, nk, (const char *const *)params, sent);
        for (int i = 0; i < nk; i++)
            free(params[i]);
    }
    cv_err e = collect(s, sent, res, "lookup_hashes");
    for (int w = 0; w < s->active; w++) {
        for (int row = 0; !e && res[w] && row < PQntuples(res[w]); row++) {
            long j = strtol(PQgetvalue(res[w], row, 0), NULL, 10) - 1;
            const char *hx = PQgetvalue(res[w], row, 1);
            if (j < 0 || j >= p.cnt[w] || strlen(hx) != 64) continue;
            int i = p.idx[w][j];
            for (int b = 0; b < 32; b++)
                hash[i][b] = (uint8_t)(hexval(hx[2 * b]) << 4 | hexval(hx[2 * b + 1]));
            found[i] = 1;
        }
        PQclear(res[w]);
    }
    s->active = saved;
    parts_free(&p);
    free(ucols.p), free(match.p), free(sql.p);
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

/* Payload-only updates of rows[0..n) (existing rows; the vector stays), sent on connection w. */
static void send_update(pg_sink *s, int w, const cv_sink_row *const *rows, int n, const char *lsn,
                        int *sent) {
    const int nk = s->t.nkeys;
    const char ***keys = malloc(sizeof(char **) * (size_t)(n > 0 ? n : 1)); /* batches can be large */
    CV_ASSERT(keys);
    for (int i = 0; i < n; i++)
        keys[i] = (const char **)rows[i]->key;
    char *params[nk + 3];
    key_arrays(s, (const char *const *const *)keys, n, params);
    free(keys);
    cv_buf pay = {0}, keep = {0}, sql = {0}, ucols = {0}, match = {0};
    cv_buf_put(&pay, "{", 1);
    cv_buf_put(&keep, "{", 1);
    for (int i = 0; i < n; i++) {
        cv_pg_array_elem(&pay, rows[i]->payload ? rows[i]->payload : "{}", i == 0);
        cv_pg_array_elem(&keep, rows[i]->keep ? rows[i]->keep : "[]", i == 0);
    }
    cv_buf_put(&pay, "}", 1);
    cv_buf_put(&keep, "}", 1);
    key_sql(s, &ucols, &match);
    params[nk] = pay.p, params[nk + 1] = keep.p, params[nk + 2] = (char *)lsn;
    cv_buf_printf(
        &sql,
        "UPDATE %s AS t SET payload = " MERGED_PAYLOAD("t") ", source_lsn = $%d::pg_lsn, updated_at = "
                                                            "now() FROM unnest(%s, $%d::text[], "
                                                            "$%d::text[]) AS u(%s, p, kp) WHERE %s",
        s->qtable, nk + 3, s->keycast, nk + 1, nk + 2, ucols.p, match.p);
    send_on(s, w, sql.p, nk + 3, (const char *const *)params, sent);
    for (int i = 0; i < nk; i++)
        free(params[i]);
    free(pay.p), free(keep.p), free(sql.p), free(ucols.p), free(match.p);
}

static void be16(cv_buf *b, uint16_t v) {
    char x[2] = {(char)(v >> 8), (char)v};
    cv_buf_put(b, x, 2);
}

static void be32(cv_buf *b, uint32_t v) {
    char x[4] = {(char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v};
    cv_buf_put(b, x, 4);
}

static void field(cv_buf *b, const void *p, size_t n) {
    be32(b, (uint32_t)n);
    cv_buf_put(b, p, n);
}

/* rows[0..n) into connection w's staging table: COPY (FORMAT BINARY): the keys and payloads as
 * text, the vector as pgvector's binary form (int16 dim, int16 0, dim big-endian float4), the
 * hash as bytea. */
static cv_err stage_copy(pg_sink *s, int w, const cv_sink_row *const *rows, int n) {
    PGconn *c = s->w[w];
    cv_err e = CV_OK;
    if (!s->staged[w]) {
        cv_buf ddl = {0};
        stage_ddl(s, &ddl);
        e = run_on(s, c, ddl.p, "create_staging");
        free(ddl.p);
        if (e) return e;
        s->staged[w] = 1;
    }
    cv_buf b = {0};
    cv_buf_put(&b, "PGCOPY\n\377\r\n\0", 11);
    be32(&b, 0), be32(&b, 0);
    const int dim = s->t.dim;
    for (int i = 0; i < n; i++) {
        const cv_sink_row *r = rows[i];
        be16(&b, (uint16_t)(s->t.nkeys + 4));
        for (int k = 0; k < s->t.nkeys; k++)
            field(&b, r->key[k], strlen(r->key[k]));
        be32(&b, (uint32_t)(4 + 4 * dim));
        be16(&b, (uint16_t)dim), be16(&b, 0);
        for (int j0 = 0; j0 < dim; j0 += 256) { /* big-endian float4s, 1 KB at a time */
            unsigned char x[1024];
            int m = dim - j0 < 256 ? dim - j0 : 256;
            for (int j = 0; j < m; j++) {
                uint32_t u;
                memcpy(&u, &r->vec[j0 + j], 4);
                x[4 * j] = (unsigned char)(u >> 24), x[4 * j + 1] = (unsigned char)(u >> 16);
                x[4 * j + 2] = (unsigned char)(u >> 8), x[4 * j + 3] = (unsigned char)u;
            }
            cv_buf_put(&b, (const char *)x, (size_t)m * 4);
        }
        field(&b, r->hash, 32);
        const char *pay = r->payload ? r->payload : "{}";
        field(&b, pay, strlen(pay));
        if (r->keep)
            field(&b, r->keep, strlen(r->keep));
        else
            be32(&b, 0xffffffffu); /* NULL */
    }
    be16(&b, 0xffff);
    PGresult *res = PQexec(c, "COPY pg_temp.cdcvec_stage FROM STDIN (FORMAT BINARY)");
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        e = exec_on(s, c, res, "copy_staging");
        PQclear(res);
        free(b.p);
        return e;
    }
    PQclear(res);
    int ok = 1;
    for (size_t off = 0; ok && off < b.len; off += 1 << 18) {
        size_t m = b.len - off < (size_t)1 << 18 ? b.len - off : (size_t)1 << 18;
        ok = PQputCopyData(c, b.p + off, (int)m) == 1;
    }
    ok = PQputCopyEnd(c, ok ? NULL : "cdcvec: send failed") == 1 && ok;
    free(b.p);
    res = finish(c);
    e = exec_on(s, c, res, "copy_staging");
    PQclear(res);
    return e;
}

static cv_err pg_begin(cv_sink *sk, int truncate) {
    pg_sink *s = (pg_sink *)sk;
    s->active = truncate ? 1 : s->nw; /* TRUNCATE's lock would block the other parts */
    int sent[MAX_WRITERS] = {0};
    for (int w = 0; w < s->active; w++) {
        s->staged[w] = s->wrote[w] = 0;
        send_on(s, w, "BEGIN", 0, NULL, sent);
    }
    cv_err e = collect(s, sent, NULL, "begin");
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
    if (!n) return CV_OK;
    cv_buf q = {0};
    cv_buf_printf(&q, "DELETE FROM %s WHERE (%s) IN (SELECT * FROM unnest(%s))", s->qtable, s->keylist,
                  s->keycast);
    parts p;
    parts_split(s, keys, n, &p);
    int sent[MAX_WRITERS] = {0};
    for (int w = 0; w < s->active; w++) {
        if (!p.cnt[w]) continue;
        char *params[s->t.nkeys];
        key_arrays(s, p.keys[w], p.cnt[w], params);
        send_on(s, w, q.p, s->t.nkeys, (const char *const *)params, sent);
        s->wrote[w] = 1;
        for (int i = 0; i < s->t.nkeys; i++)
            free(params[i]);
    }
    cv_err e = collect(s, sent, NULL, "delete");
    parts_free(&p);
    free(q.p);
    if (e) pg_rollback(&s->base);
    return e;
}

/* Rows without a vector update payloads (all parts at once), then rows with vectors are staged
 * and upserted (all parts at once). */
static cv_err pg_put(cv_sink *sk, const cv_sink_row *rows, int n, uint64_t position) {
    pg_sink *s = (pg_sink *)sk;
    if (!n) return CV_OK;
    char lsn[24];
    cv_lsn_format(position, lsn);
    const int np = s->active > 1 ? s->active : 1;
    const cv_sink_row **vecs[MAX_WRITERS], **pays[MAX_WRITERS];
    int nv[MAX_WRITERS] = {0}, npay[MAX_WRITERS] = {0}, kp[MAX_WRITERS] = {0};
    for (int w = 0; w < np; w++) {
        vecs[w] = malloc(sizeof(cv_sink_row *) * (size_t)n);
        pays[w] = malloc(sizeof(cv_sink_row *) * (size_t)n);
        CV_ASSERT(vecs[w] && pays[w]);
    }
    for (int i = 0; i < n; i++) {
        int w = part_of(s, rows[i].key);
        if (rows[i].vec) {
            vecs[w][nv[w]++] = &rows[i];
            kp[w] |= rows[i].keep != NULL;
        } else {
            pays[w][npay[w]++] = &rows[i];
        }
    }
    int sent[MAX_WRITERS] = {0};
    for (int w = 0; w < np; w++)
        if (npay[w]) send_update(s, w, pays[w], npay[w], lsn, sent), s->wrote[w] = 1;
    cv_err e = collect(s, sent, NULL, "update_payload");
    memset(sent, 0, sizeof sent);
    /* each part's COPY is quick (a temporary table: no WAL); its INSERT runs while the next part
     * is staged */
    for (int w = 0; !e && w < np; w++) {
        if (!nv[w]) continue;
        e = stage_copy(s, w, vecs[w], nv[w]);
        if (!e) {
            const char *params[2] = {s->t.model_id, lsn};
            send_on(s, w, kp[w] ? s->upsert_kp : s->upsert, 2, params, sent);
            s->wrote[w] = 1;
        }
    }
    cv_err e2 = collect(s, sent, NULL, "upsert");
    if (!e) e = e2;
    for (int w = 0; w < np; w++)
        free(vecs[w]), free(pays[w]);
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
        cv_pg_array_elem(&keys, d[i].key, i == 0);
        cv_pg_array_elem(&why, d[i].reason, i == 0);
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
    const char *p[6] = {s->stream, relid, m->layout, m->text_source, m->model, m->model_revision};
    PGresult *r = PQexecParams(s->db, CV_SINK_META_SET, 6, NULL, p, NULL, NULL, 0);
    cv_err e = exec_ok(s, r, "write_meta");
    PQclear(r);
    return e;
}

void cv_sink_meta_peek(const char *conninfo, const char *stream, cv_sink_meta *m) {
    memset(m, 0, sizeof *m);
    PGconn *db = cv_pg_connect(conninfo, 0, "sink");
    if (PQstatus(db) == CONNECTION_OK) {
        const char *p[1] = {stream};
        PGresult *r = PQexecParams(db, CV_SINK_META_PEEK, 1, NULL, p, NULL, NULL, 0);
        cv_sink_meta_row(r, m);
        PQclear(r);
    }
    PQfinish(db);
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
        pg_rollback(&s->base);
    else
        s->active = 0;
    return e;
}

static void pg_rollback(cv_sink *sk) {
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
    /* pgvector's HNSW scan returns at most hnsw.ef_search rows (default 40): at least the limit,
     * and at least 100 (recall@10 0.995 against 0.978 at 40 on 100,000 MiniLM rows:
     * bench/RESULTS.md, "HNSW parameters and recall@10") */
    int ef = limit > 100 ? limit : 100;
    cv_err e = CV_OK;
    if (!s->ef_search) {
        /* rows deleted or updated since the graph was built still take candidates' places, so
         * even ef_search = limit can return fewer; pgvector 0.8's iterative scan goes on until
         * the limit is met, in exact order (older versions lack it: then say so, once) */
        PGresult *r = PQexec(s->db, "SET hnsw.iterative_scan = strict_order");
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            cv_info("event=search_iterative_scan available=0 note=\"pgvector before 0.8: a search over an "
                    "index with many deleted rows may return fewer rows than its limit\"");
        PQclear(r);
    }
    if (ef != s->ef_search) {
        char set[64];
        snprintf(set, sizeof set, "SET hnsw.ef_search = %d", ef);
        if (!(e = run(s, set, "search_ef"))) s->ef_search = ef;
    }
    const char *p[2] = {v.p, lim};
    PGresult *r = e ? NULL : PQexecParams(s->db, sql.p, 2, NULL, p, NULL, NULL, 0);
    if (!e) e = exec_ok(s, r, "search");
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
        /* qualified: a bare name in ORDER BY means the output column, key::text, whose text
         * order (1, 10, 100, ...) is not the WHERE's (the key type's) order */
        cv_buf_printf(&cols, "%st.%s", i ? "," : "", k.p);
        cv_buf_printf(&vals, "%s$%d::%s", i ? "," : "", i + 1, s->t.key_types[i]);
        free(k.p);
    }
    cv_buf_puts(&sql, "SELECT ");
    for (int i = 0; i < nk; i++) {
        cv_buf_printf(&sql, "%st.", i ? "," : "");
        cv_pg_ident(&sql, s->t.key_names[i]);
        cv_buf_puts(&sql, "::text");
    }
    cv_buf_printf(&sql, " FROM %s AS t", s->qtable);
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
