/* pgvector_chunks.c: chunked tables (cv_sink_table.chunked): one row per (key, chunk number),
 * with the chunk's hash and character offsets beside the whole text's hash. A row's chunks are
 * read by hash (cv_sink_chunk_hashes) and set in three statements of the batch's transaction
 * (cv_sink_chunks_set): the chunks kept move to their new numbers, negated (a shift by one
 * would collide with the primary key otherwise), the others are deleted, the kept ones take
 * their numbers; the chunks embedded again are put after. One writer (connection 0). */
#define _POSIX_C_SOURCE 200809L
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "pgvector_impl.h"

cv_err cv_pgv_chunks_layout(pg_sink *s) {
    cv_buf q = {0};
    cv_buf_puts(&q,
                "SELECT count(*) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'chunk' AND "
                "NOT attisdropped");
    const char *p[1] = {s->qtable};
    PGresult *r = PQexecParams(s->db, q.p, 1, NULL, p, NULL, NULL, 0);
    free(q.p);
    cv_err e = exec_ok(s, r, "chunk_layout");
    int has = !e && PQntuples(r) == 1 && atoi(PQgetvalue(r, 0, 0)) > 0;
    PQclear(r);
    if (!e && s->t.chunked < 0) s->t.chunked = has; /* a reader: whatever the table holds */
    if (e || has == (s->t.chunked != 0)) return e;
    cv_buf fix = {0};
    cv_buf_printf(
        &fix,
        "%s holds %s; chunking cannot be turned %s on a table that has vectors: write to a new store "
        "table (another --sink database), or drop %s and start again with --resnapshot 1",
        s->qtable, has ? "chunks (one row per key and chunk)" : "one vector per row",
        s->t.chunked ? "on" : "off", s->qtable);
    cv_error("event=chunk_layout_mismatch table=%s chunked=%d fix=\"%s\"", s->qtable, s->t.chunked, fix.p);
    cv_sink_fault(&s->base, "config", fix.p); /* and the open's failure reports it (pgvector.c) */
    s->fault = (cv_pg_fault){.retriable = 0, .kind = "config", .fix = cv_sink_intern(fix.p)};
    free(fix.p);
    return CV_ERR_UNSUPPORTED;
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* Runs sql with the key's arrays ($1..$nkeys) and extra params after them, on connection 0. */
static PGresult *exec_key(pg_sink *s, const char *sql, const char *const *key, int nx, const char *const *x) {
    const int nk = s->t.nkeys;
    char *kp[nk];
    const char *const *keys[1] = {key};
    cv_pgv_key_arrays(s, keys, 1, kp);
    const char *params[nk + nx + 1];
    for (int i = 0; i < nk; i++)
        params[i] = kp[i];
    for (int i = 0; i < nx; i++)
        params[nk + i] = x[i];
    PGresult *r = PQexecParams(s->db, sql, nk + nx, NULL, params, NULL, NULL, 0);
    for (int i = 0; i < nk; i++)
        free(kp[i]);
    return r;
}

cv_err cv_pgv_chunk_hashes(cv_sink *sk, const char *const *key, uint8_t (**hash)[32], int *m) {
    pg_sink *s = (pg_sink *)sk;
    cv_buf sql = {0}, ucols = {0}, match = {0};
    cv_pgv_key_sql(s, &ucols, &match);
    cv_buf_printf(&sql,
                  "SELECT t.chunk, encode(t.chunk_hash, 'hex') FROM unnest(%s) AS u(%s) JOIN %s t ON %s "
                  "WHERE t.chunk >= 0 ORDER BY t.chunk",
                  s->keycast, ucols.p, s->qtable, match.p);
    PGresult *r = exec_key(s, sql.p, key, 0, NULL);
    cv_err e = exec_ok(s, r, "lookup_chunks");
    int n = e ? 0 : PQntuples(r);
    int top = n ? atoi(PQgetvalue(r, n - 1, 0)) + 1 : 0;
    if (!e && top > 0) {
        *hash = calloc((size_t)top, 32);
        CV_ASSERT(*hash);
        *m = top;
        for (int row = 0; row < n; row++) {
            int c = atoi(PQgetvalue(r, row, 0));
            const char *hx = PQgetvalue(r, row, 1);
            if (c < 0 || c >= top || strlen(hx) != 64) continue;
            for (int b = 0; b < 32; b++)
                (*hash)[c][b] = (uint8_t)(hexval(hx[2 * b]) << 4 | hexval(hx[2 * b + 1]));
        }
    }
    PQclear(r);
    free(sql.p), free(ucols.p), free(match.p);
    if (e) cv_pgv_rollback(&s->base);
    return e;
}

cv_err cv_pgv_chunks_set(cv_sink *sk, const char *const *key, int n, const int *from, const long *off,
                         const long *len, const uint8_t *text_hash) {
    pg_sink *s = (pg_sink *)sk;
    const int nk = s->t.nkeys;
    cv_buf old = {0}, nw = {0}, o = {0}, l = {0}, hx = {0}, ucols = {0}, match = {0}, q1 = {0}, q2 = {0},
           q3 = {0};
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (from[i] < 0) continue;
        const char *sep = kept++ ? "," : "{";
        cv_buf_printf(&old, "%s%d", sep, from[i]);
        cv_buf_printf(&nw, "%s%d", sep, i);
        cv_buf_printf(&o, "%s%ld", sep, off[i]);
        cv_buf_printf(&l, "%s%ld", sep, len[i]);
    }
    cv_buf_puts(&hx, "\\x");
    for (int b = 0; b < 32; b++)
        cv_buf_printf(&hx, "%02x", text_hash[b]);
    cv_pgv_key_sql(s, &ucols, &match);
    cv_err e = CV_OK;
    if (kept) { /* the chunks kept: to their new numbers, negated for now */
        cv_buf_puts(&old, "}"), cv_buf_puts(&nw, "}"), cv_buf_puts(&o, "}"), cv_buf_puts(&l, "}");
        cv_buf_printf(&q1,
                      "UPDATE %s AS t SET chunk = -1 - m.nw, char_off = m.o, char_len = m.l, text_hash = "
                      "$%d::bytea FROM unnest(%s) AS u(%s), unnest($%d::int[], $%d::int[], $%d::int[], "
                      "$%d::int[]) AS m(old, nw, o, l) WHERE %s AND t.chunk = m.old",
                      s->qtable, nk + 1, s->keycast, ucols.p, nk + 2, nk + 3, nk + 4, nk + 5, match.p);
        const char *x[5] = {hx.p, old.p, nw.p, o.p, l.p};
        PGresult *r = exec_key(s, q1.p, key, 5, x);
        e = exec_ok(s, r, "chunks_keep");
        PQclear(r);
    }
    if (!e) { /* every other chunk of the key: gone (past the end of a shorter text too) */
        cv_buf_printf(&q2, "DELETE FROM %s AS t USING unnest(%s) AS u(%s) WHERE %s AND t.chunk >= 0",
                      s->qtable, s->keycast, ucols.p, match.p);
        PGresult *r = exec_key(s, q2.p, key, 0, NULL);
        e = exec_ok(s, r, "chunks_delete");
        PQclear(r);
    }
    if (!e && kept) {
        cv_buf_printf(
            &q3, "UPDATE %s AS t SET chunk = -1 - t.chunk FROM unnest(%s) AS u(%s) WHERE %s AND t.chunk < 0",
            s->qtable, s->keycast, ucols.p, match.p);
        PGresult *r = exec_key(s, q3.p, key, 0, NULL);
        e = exec_ok(s, r, "chunks_renumber");
        PQclear(r);
    }
    s->wrote[0] = 1;
    free(old.p), free(nw.p), free(o.p), free(l.p), free(hx.p), free(ucols.p), free(match.p);
    free(q1.p), free(q2.p), free(q3.p);
    if (e) cv_pgv_rollback(&s->base);
    return e;
}
