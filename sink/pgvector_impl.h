/* pgvector_impl.h: the pgvector store's insides, shared by pgvector.c (open, DDL, state, meta,
 * commit, the table of operations), pgvector_write.c (COPY staging, upserts, payload updates,
 * deletes, dead letters, the parallel writers) and pgvector_read.c (hash lookups, search,
 * verify's fetch and key walk). See pgvector.c for the layout in PostgreSQL. */
#ifndef CV_SINK_PGVECTOR_IMPL_H
#define CV_SINK_PGVECTOR_IMPL_H

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../pg/cv_pg.h"
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
static inline int sql_oom(void) {
    fprintf(stderr, "cdcvec: out of memory while building SQL\n");
    abort();
}

#define cv_buf_put(b, s, n) ((cv_buf_put)((b), (s), (n)), (void)(!(b)->oom || sql_oom()))

#define cv_buf_puts(b, s) ((cv_buf_puts)((b), (s)), (void)(!(b)->oom || sql_oom()))

#define cv_buf_printf(b, ...) ((cv_buf_printf)((b), __VA_ARGS__), (void)(!(b)->oom || sql_oom()))

/* Classifies a failed statement on connection c once, here (pg/cv_pg.h), logs it with the fix. */
static inline cv_err exec_on(pg_sink *s, PGconn *c, PGresult *r, const char *what) {
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return CV_OK;
    cv_pg_classify_result(c, r, &s->fault);
    s->base.kind = s->fault.kind, s->base.fix = s->fault.fix;
    cv_pg_log_fault("sink_failed", what, r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL, &s->fault,
                    r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    if (s->fault.retriable) return CV_ERR_TIMEOUT;
    return strcmp(s->fault.kind, "data") == 0 ? CV_ERR_FORMAT : CV_ERR_UNSUPPORTED;
}

static inline cv_err exec_ok(pg_sink *s, PGresult *r, const char *what) { return exec_on(s, s->db, r, what); }

static inline cv_err run_on(pg_sink *s, PGconn *c, const char *sql, const char *what) {
    PGresult *r = PQexec(c, sql);
    cv_err e = exec_on(s, c, r, what);
    PQclear(r);
    return e;
}

static inline cv_err run(pg_sink *s, const char *sql, const char *what) {
    return run_on(s, s->db, sql, what);
}

/* The result of the command in flight on c: the first failure, else the last result (all read,
 * so the connection is ready for the next command). */
static inline PGresult *finish(PGconn *c) {
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
static inline cv_err collect(pg_sink *s, const int *sent, PGresult **results, const char *what) {
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
static inline void send_on(pg_sink *s, int i, const char *sql, int np, const char *const *params, int *sent) {
    sent[i] = PQsendQueryParams(s->w[i], sql, np, NULL, params, NULL, NULL, 0) ? 1 : -1;
}

/* The part (connection) a key belongs to in this batch: FNV-1a of its text values. */
static inline int part_of(const pg_sink *s, const char *const *key) {
    if (s->active <= 1) return 0;
    uint64_t h = 1469598103934665603ull;
    for (int k = 0; k < s->t.nkeys; k++) {
        for (const unsigned char *p = (const unsigned char *)key[k]; *p; p++)
            h = (h ^ *p) * 1099511628211ull;
        h = (h ^ 0x1f) * 1099511628211ull;
    }
    return (int)(h % (uint64_t)s->active);
}

/* The stored payload's values for the keys named in the JSON array `kp`, over which the new
 * payload `p` goes (a payload replaces the stored one but for the values a change did not
 * carry). `old` is the stored row's alias. */
#define MERGED_PAYLOAD(old)                                                                                  \
    "coalesce((SELECT jsonb_object_agg(o.key, o.value) FROM jsonb_each(" old ".payload) o WHERE o.key IN "   \
    "(SELECT jsonb_array_elements_text(u.kp::jsonb))), '{}') || u.p::jsonb"

/* keys[0..n) split by part: idx[p] lists the positions of part p's keys, cnt[p] their number. */
typedef struct parts {
    int cnt[MAX_WRITERS];
    int *idx[MAX_WRITERS];
    const char *const **keys[MAX_WRITERS];
} parts;

/* pgvector.c */
void cv_pgv_rollback(cv_sink *sk);

/* pgvector_write.c: the batch's writes */
cv_err cv_pgv_begin(cv_sink *sk, int truncate);
cv_err cv_pgv_delete(cv_sink *sk, const char *const *const *keys, int n);
cv_err cv_pgv_put(cv_sink *sk, const cv_sink_row *rows, int n, uint64_t position);
cv_err cv_pgv_dead_put(cv_sink *sk, const cv_sink_dead *d, int n, uint64_t position);

/* pgvector_chunks.c: chunked tables */
cv_err cv_pgv_chunks_layout(pg_sink *s);
cv_err cv_pgv_chunk_hashes(cv_sink *sk, const char *const *key, uint8_t (**hash)[32], int *m);
cv_err cv_pgv_chunks_set(cv_sink *sk, const char *const *key, int n, const int *from, const long *off,
                         const long *len, const uint8_t *text_hash);

/* pgvector_read.c: key arrays and parts (also used by the writes), lookups, search, verify */
void cv_pgv_key_arrays(const pg_sink *s, const char *const *const *keys, int n, char **params);
void cv_pgv_key_sql(const pg_sink *s, cv_buf *ucols, cv_buf *match);
void cv_pgv_parts_split(const pg_sink *s, const char *const *const *keys, int n, parts *p);
void cv_pgv_parts_free(parts *p);
cv_err cv_pgv_hashes(cv_sink *sk, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32]);
cv_err cv_pgv_search(cv_sink *sk, const float *q, int limit, const cv_sink_filter *f, cv_sink_hit_cb cb,
                     void *arg);
cv_err cv_pgv_fetch(cv_sink *sk, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32],
                    char **payload);
cv_err cv_pgv_scan(cv_sink *sk, cv_buf *cursor, int limit, cv_sink_key_cb cb, void *arg, int *more);
/* cv_sink_count_estimate (pgvector_read.c) */
cv_err cv_pgv_count(cv_sink *sk, double *rows);

#endif
