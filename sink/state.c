/* state.c: where Qdrant and Upstash sinks keep what must survive a crash besides the vectors:
 * the applied position, the backfill marks, the meta (relid, layout, text source) and the dead
 * letters, in a PostgreSQL "state database" (the source database for `cdcvec sync`), in the
 * tables pgvector uses (cdcvec.state, cdcvec.dead_letters), keyed by a state key that names
 * the stream and the store. Written only after the store acknowledged the writes they cover.
 * Without a database (conninfo NULL) nothing is kept and dead letters are logged. */
#define _POSIX_C_SOURCE 200809L
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "../pg/cv_pg.h"
#include "sink_impl.h"

const char cv_rstate_ddl[] = CV_DDL_LOCK
    "CREATE SCHEMA IF NOT EXISTS cdcvec; "
    "CREATE TABLE IF NOT EXISTS cdcvec.state (stream text PRIMARY KEY, lsn pg_lsn NOT NULL, "
    "backfill_lsn pg_lsn, backfill_done boolean NOT NULL DEFAULT false, "
    "updated_at timestamptz NOT NULL DEFAULT now()); "
    "ALTER TABLE cdcvec.state ADD COLUMN IF NOT EXISTS relid oid, "
    "ADD COLUMN IF NOT EXISTS layout text, ADD COLUMN IF NOT EXISTS text_source text, "
    "ADD COLUMN IF NOT EXISTS model text, ADD COLUMN IF NOT EXISTS model_revision text, "
    "ADD COLUMN IF NOT EXISTS index_name text; "
    "CREATE TABLE IF NOT EXISTS cdcvec.dead_letters (id bigserial PRIMARY KEY, stream text NOT NULL, "
    "lsn pg_lsn NOT NULL, key text NOT NULL, reason text NOT NULL, "
    "failed_at timestamptz NOT NULL DEFAULT now());";

struct cv_rstate {
    char *conninfo; /* NULL: keeps nothing */
    PGconn *db;     /* connected lazily, reconnected after a failure */
    char *key;
    char **dkey, **dwhy; /* buffered dead letters */
    int nd, capd;
};

/* Classifies a failed statement or connection (pg/cv_pg.h) into the sink's fault. */
static cv_err failed(cv_sink *s, cv_rstate *r, PGresult *res, const char *what) {
    cv_pg_fault f;
    if (PQstatus(r->db) != CONNECTION_OK && !res)
        cv_pg_classify_connect(r->db, &f);
    else
        cv_pg_classify_result(r->db, res, &f);
    cv_pg_log_fault("sink_state_failed", what, res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL, &f,
                    res ? PQresultErrorMessage(res) : PQerrorMessage(r->db));
    cv_sink_fault(s, f.kind, f.fix);
    if (PQstatus(r->db) != CONNECTION_OK) { /* next call reconnects */
        PQfinish(r->db);
        r->db = NULL;
    }
    return f.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
}

/* The connection, made (and the tables created) on first use. */
static cv_err conn(cv_sink *s, cv_rstate *r) {
    if (r->db) return CV_OK;
    r->db = cv_pg_connect(r->conninfo, 0, "state");
    if (PQstatus(r->db) != CONNECTION_OK) return failed(s, r, NULL, "connect");
    PGresult *res = PQexec(r->db, cv_rstate_ddl);
    cv_err e = PQresultStatus(res) == PGRES_COMMAND_OK ? CV_OK : failed(s, r, res, "create_tables");
    PQclear(res);
    return e;
}

/* Runs one statement with parameters; *out (may be NULL) gets the result. */
static cv_err exec(cv_sink *s, cv_rstate *r, const char *sql, int n, const char *const *p, PGresult **out,
                   const char *what) {
    cv_err e = conn(s, r);
    if (e) return e;
    PGresult *res = PQexecParams(r->db, sql, n, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        e = failed(s, r, res, what);
        PQclear(res);
        return e;
    }
    if (out)
        *out = res;
    else
        PQclear(res);
    return CV_OK;
}

cv_err cv_rstate_open(cv_sink *s, const char *conninfo, const char *key, cv_rstate **out) {
    cv_rstate *r = calloc(1, sizeof *r);
    CV_ASSERT(r);
    r->conninfo = conninfo ? strdup(conninfo) : NULL;
    r->key = strdup(key);
    cv_err e = r->conninfo ? conn(s, r) : CV_OK;
    if (e) {
        cv_rstate_close(r);
        return e;
    }
    *out = r;
    return CV_OK;
}

void cv_rstate_close(cv_rstate *r) {
    if (!r) return;
    cv_rstate_reset(r);
    if (r->db) PQfinish(r->db);
    free(r->dkey), free(r->dwhy), free(r->conninfo), free(r->key);
    free(r);
}

cv_err cv_rstate_get(cv_sink *s, cv_rstate *r, uint64_t *pos, int *done, uint64_t *bpos) {
    *pos = 0, *done = 0, *bpos = 0;
    if (!r->conninfo) return CV_OK;
    const char *p[1] = {r->key};
    PGresult *res = NULL;
    cv_err e = exec(s, r,
                    "SELECT lsn::text, backfill_done, coalesce(backfill_lsn::text, '0/0') FROM cdcvec.state "
                    "WHERE stream = $1",
                    1, p, &res, "read_state");
    if (e) return e;
    if (PQntuples(res) == 1) {
        cv_lsn_parse(PQgetvalue(res, 0, 0), pos);
        *done = PQgetvalue(res, 0, 1)[0] == 't';
        cv_lsn_parse(PQgetvalue(res, 0, 2), bpos);
    }
    PQclear(res);
    return CV_OK;
}

void cv_rstate_dead_add(cv_rstate *r, const char *key, const char *reason) {
    if (r->nd == r->capd) {
        r->capd = r->capd ? 2 * r->capd : 16;
        r->dkey = realloc(r->dkey, sizeof(char *) * (size_t)r->capd);
        r->dwhy = realloc(r->dwhy, sizeof(char *) * (size_t)r->capd);
        CV_ASSERT(r->dkey && r->dwhy);
    }
    r->dkey[r->nd] = strdup(key);
    r->dwhy[r->nd++] = strdup(reason);
}

void cv_rstate_reset(cv_rstate *r) {
    for (int i = 0; i < r->nd; i++)
        free(r->dkey[i]), free(r->dwhy[i]);
    r->nd = 0;
}

cv_err cv_rstate_commit(cv_sink *s, cv_rstate *r, uint64_t pos) {
    char lsn[24];
    cv_lsn_format(pos, lsn);
    if (!r->conninfo) {
        for (int i = 0; i < r->nd; i++) /* s->dead_cb (a Kafka sink's dead-letter topic) had each */
            cv_warn("event=dead_letter position=%s key=\"%s\" reason=\"%s\" note=\"no state database: %s\"",
                    lsn, r->dkey[i], r->dwhy[i],
                    s->dead_cb ? "sent to the caller's dead-letter topic" : "not recorded");
        cv_rstate_reset(r);
        return CV_OK;
    }
    cv_buf keys = {0}, why = {0};
    cv_buf_put(&keys, "{", 1);
    cv_buf_put(&why, "{", 1);
    for (int i = 0; i < r->nd; i++)
        cv_pg_array_elem(&keys, r->dkey[i], i == 0), cv_pg_array_elem(&why, r->dwhy[i], i == 0);
    cv_buf_put(&keys, "}", 1);
    cv_buf_put(&why, "}", 1);
    CV_ASSERT(!keys.oom && !why.oom);
    const char *p[4] = {r->key, lsn, keys.p, why.p};
    /* one statement, so one transaction: the dead letters and the position together */
    cv_err e = exec(s, r,
                    "WITH d AS (INSERT INTO cdcvec.dead_letters (stream, lsn, key, reason) SELECT $1, "
                    "$2::pg_lsn, k, w FROM unnest($3::text[], $4::text[]) AS u(k, w)) "
                    "INSERT INTO cdcvec.state (stream, lsn) VALUES ($1, $2::pg_lsn) ON CONFLICT (stream) DO "
                    "UPDATE SET lsn = greatest(cdcvec.state.lsn, EXCLUDED.lsn), updated_at = now()",
                    4, p, NULL, "record_position");
    free(keys.p), free(why.p);
    if (!e) cv_rstate_reset(r);
    return e;
}

/* Fills m from a result row (relid, layout, text_source[, model, model_revision]). */
void cv_sink_meta_row(PGresult *res, cv_sink_meta *m) {
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) return;
    if (!PQgetisnull(res, 0, 0)) m->relid = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    if (!PQgetisnull(res, 0, 1)) m->layout = strdup(PQgetvalue(res, 0, 1));
    if (!PQgetisnull(res, 0, 2)) m->text_source = strdup(PQgetvalue(res, 0, 2));
    if (PQnfields(res) > 3 && !PQgetisnull(res, 0, 3)) m->model = strdup(PQgetvalue(res, 0, 3));
    if (PQnfields(res) > 4 && !PQgetisnull(res, 0, 4)) m->model_revision = strdup(PQgetvalue(res, 0, 4));
}

cv_err cv_rstate_meta_set(cv_sink *s, cv_rstate *r, const cv_sink_meta *m) {
    if (!r->conninfo) return CV_OK;
    char relid[16];
    snprintf(relid, sizeof relid, "%u", m->relid);
    const char *p[6] = {r->key, relid, m->layout, m->text_source, m->model, m->model_revision};
    return exec(s, r, CV_SINK_META_SET, 6, p, NULL, "write_meta");
}

cv_err cv_rstate_backfill(cv_sink *s, cv_rstate *r, uint64_t pos, int done) {
    if (!r->conninfo) return CV_OK;
    char lsn[24];
    cv_lsn_format(pos, lsn);
    const char *p[3] = {r->key, lsn, done ? "true" : "false"};
    return exec(
        s, r,
        "INSERT INTO cdcvec.state (stream, lsn, backfill_lsn, backfill_done) VALUES ($1, $2::pg_lsn, "
        "$2::pg_lsn, $3::boolean) ON CONFLICT (stream) DO UPDATE SET lsn = EXCLUDED.lsn, backfill_lsn = "
        "EXCLUDED.backfill_lsn, backfill_done = EXCLUDED.backfill_done, updated_at = now()",
        3, p, NULL, "backfill_state");
}

/* pgvector's own database and the state database of the other stores hold the same table. */
void cv_sink_meta_peek(const char *conninfo, const char *key, cv_sink_meta *m) {
    memset(m, 0, sizeof *m);
    PGconn *db = cv_pg_connect(conninfo, 0, "sink");
    if (PQstatus(db) == CONNECTION_OK) {
        const char *p[1] = {key};
        PGresult *res = PQexecParams(db, CV_SINK_META_PEEK, 1, NULL, p, NULL, NULL, 0);
        cv_sink_meta_row(res, m);
        PQclear(res);
    }
    PQfinish(db);
}

/* The generation of an index name: N of given + "__g" + N, else 0. */
static long generation(const char *name, const char *given) {
    size_t n = strlen(given);
    if (strncmp(name, given, n) || strncmp(name + n, "__g", 3)) return 0;
    const char *d = name + n + 3;
    if (!*d || strspn(d, "0123456789") != strlen(d) || strlen(d) > 9) return 0;
    return strtol(d, NULL, 10);
}

cv_err cv_rstate_index(cv_sink *s, cv_rstate *r, const char *live_key, const char *given, int shadow,
                       cv_buf *out) {
    if (!r->conninfo) {
        cv_buf_puts(out, given);
        return CV_OK;
    }
    const char *p[2] = {r->key, NULL};
    PGresult *res = NULL;
    cv_err e = exec(s, r, "SELECT index_name FROM cdcvec.state WHERE stream = $1 AND index_name IS NOT NULL",
                    1, p, &res, "read_index_name");
    if (e) return e;
    if (PQntuples(res) == 1) {
        cv_buf_puts(out, PQgetvalue(res, 0, 0));
        PQclear(res);
        return CV_OK;
    }
    PQclear(res);
    if (!shadow) {
        cv_buf_puts(out, given);
        return CV_OK;
    }
    p[0] = live_key;
    if ((e = exec(s, r, "SELECT index_name FROM cdcvec.state WHERE stream = $1 AND index_name IS NOT NULL", 1,
                  p, &res, "read_index_name")))
        return e;
    long g = PQntuples(res) == 1 ? generation(PQgetvalue(res, 0, 0), given) : 0;
    PQclear(res);
    cv_buf name = {0};
    cv_buf_printf(&name, "%s__g%ld", given, g + 1);
    p[0] = r->key, p[1] = name.p;
    e = exec(
        s, r,
        "INSERT INTO cdcvec.state (stream, lsn, index_name) VALUES ($1, '0/0', $2) ON CONFLICT (stream) DO "
        "UPDATE SET index_name = coalesce(cdcvec.state.index_name, EXCLUDED.index_name) RETURNING index_name",
        2, p, &res, "record_index_name");
    cv_buf_free(&name);
    if (e) return e;
    cv_buf_puts(out, PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : given);
    PQclear(res);
    return CV_OK;
}
