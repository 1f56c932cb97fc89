/* pgvector_write.c: the pgvector store's writes (pgvector.c describes the tables): rows with
 * vectors by COPY (FORMAT BINARY) into the staging table and one INSERT ... ON CONFLICT from it,
 * payload-only updates and deletes as unnest() arrays, dead letters; split over the parallel
 * writers' connections by key. */
#define _POSIX_C_SOURCE 200809L
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_lsn.h"
#include "../pg/cv_pg.h"
#include "pgvector_impl.h"

/* The staging table of connection c (temporary: one per connection, emptied at commit). */
static void stage_ddl(const pg_sink *s, cv_buf *sql) {
    cv_buf_puts(sql, "CREATE TEMP TABLE IF NOT EXISTS cdcvec_stage (");
    for (int k = 0; k < s->t.nkeys; k++)
        cv_buf_printf(sql, "k%d text, ", k);
    cv_buf_printf(sql, "e vector(%d), h bytea, p text, kp text%s) ON COMMIT DELETE ROWS", s->t.dim,
                  s->t.chunked ? ", c int, ch bytea, co int, cl int" : "");
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
    cv_pgv_key_arrays(s, (const char *const *const *)keys, n, params);
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
    cv_pgv_key_sql(s, &ucols, &match);
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
        be16(&b, (uint16_t)(s->t.nkeys + (s->t.chunked ? 8 : 4)));
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
        if (s->t.chunked) {        /* int4 fields: length 4, big-endian value */
            be32(&b, 4), be32(&b, (uint32_t)r->chunk);
            field(&b, r->chunk_hash ? r->chunk_hash : r->hash, 32);
            be32(&b, 4), be32(&b, (uint32_t)r->char_off);
            be32(&b, 4), be32(&b, (uint32_t)r->char_len);
        }
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

cv_err cv_pgv_begin(cv_sink *sk, int truncate) {
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
    if (e) cv_pgv_rollback(&s->base);
    return e;
}

cv_err cv_pgv_delete(cv_sink *sk, const char *const *const *keys, int n) {
    pg_sink *s = (pg_sink *)sk;
    if (!n) return CV_OK;
    cv_buf q = {0};
    cv_buf_printf(&q, "DELETE FROM %s WHERE (%s) IN (SELECT * FROM unnest(%s))", s->qtable, s->keylist,
                  s->keycast);
    parts p;
    cv_pgv_parts_split(s, keys, n, &p);
    int sent[MAX_WRITERS] = {0};
    for (int w = 0; w < s->active; w++) {
        if (!p.cnt[w]) continue;
        char *params[s->t.nkeys];
        cv_pgv_key_arrays(s, p.keys[w], p.cnt[w], params);
        send_on(s, w, q.p, s->t.nkeys, (const char *const *)params, sent);
        s->wrote[w] = 1;
        for (int i = 0; i < s->t.nkeys; i++)
            free(params[i]);
    }
    cv_err e = collect(s, sent, NULL, "delete");
    cv_pgv_parts_free(&p);
    free(q.p);
    if (e) cv_pgv_rollback(&s->base);
    return e;
}

/* Rows without a vector update payloads (all parts at once), then rows with vectors are staged
 * and upserted (all parts at once). */
cv_err cv_pgv_put(cv_sink *sk, const cv_sink_row *rows, int n, uint64_t position) {
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
            const char *params[4] = {s->t.model_id, lsn, s->t.model_revision, s->t.text_source};
            send_on(s, w, kp[w] ? s->upsert_kp : s->upsert, 4, params, sent);
            s->wrote[w] = 1;
        }
    }
    cv_err e2 = collect(s, sent, NULL, "upsert");
    if (!e) e = e2;
    for (int w = 0; w < np; w++)
        free(vecs[w]), free(pays[w]);
    if (e) cv_pgv_rollback(&s->base);
    return e;
}

cv_err cv_pgv_dead_put(cv_sink *sk, const cv_sink_dead *d, int n, uint64_t position) {
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
    if (e) cv_pgv_rollback(&s->base);
    return e;
}
