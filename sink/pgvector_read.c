/* pgvector_read.c: the pgvector store's reads (pgvector.c describes the tables): the stored
 * text hashes of a batch's keys, search, and verify's fetch and walk over the keys. Also the key
 * arrays and parts the writes share. */
#define _POSIX_C_SOURCE 200809L
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../pg/cv_keytext.h"
#include "../common/cv_log.h"
#include "../pg/cv_pg.h"
#include "pgvector_impl.h"

/* Fills params[0..nkeys) with key arrays for n rows. Caller frees the strings. */
void cv_pgv_key_arrays(const pg_sink *s, const char *const *const *keys, int n, char **params) {
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
void cv_pgv_key_sql(const pg_sink *s, cv_buf *ucols, cv_buf *match) {
    for (int i = 0; i < s->t.nkeys; i++) {
        cv_buf k = {0};
        cv_pg_ident(&k, s->t.key_names[i]);
        cv_buf_printf(ucols, "%s%s", i ? "," : "", k.p);
        if (match) cv_buf_printf(match, "%st.%s = u.%s", i ? " AND " : "", k.p, k.p);
        free(k.p);
    }
}

void cv_pgv_parts_split(const pg_sink *s, const char *const *const *keys, int n, parts *p) {
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

void cv_pgv_parts_free(parts *p) {
    for (int i = 0; i < MAX_WRITERS; i++)
        free(p->idx[i]), free((void *)p->keys[i]);
}

cv_err cv_pgv_hashes(cv_sink *sk, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32]) {
    pg_sink *s = (pg_sink *)sk;
    for (int i = 0; i < n; i++)
        found[i] = 0;
    if (n == 0) return CV_OK;
    const int nk = s->t.nkeys;
    /* the request's position comes back with each row (WITH ORDINALITY): keys are compared by
     * PostgreSQL with their own types, and matching is O(n). Outside a batch: connection 0. */
    cv_buf sql = {0}, ucols = {0}, match = {0};
    cv_pgv_key_sql(s, &ucols, &match);
    cv_buf_printf(&sql,
                  "SELECT u.ord, encode(t.text_hash, 'hex') FROM unnest(%s) WITH ORDINALITY AS u(%s, ord) "
                  "JOIN %s t ON %s",
                  s->keycast, ucols.p, s->qtable, match.p);
    const int saved = s->active;
    if (!s->active) s->active = 1;
    parts p;
    cv_pgv_parts_split(s, keys, n, &p);
    int sent[MAX_WRITERS] = {0};
    PGresult *res[MAX_WRITERS] = {0};
    for (int w = 0; w < s->active; w++) {
        if (!p.cnt[w]) continue;
        char *params[nk];
        cv_pgv_key_arrays(s, p.keys[w], p.cnt[w], params);
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
    cv_pgv_parts_free(&p);
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

/* The filter's conditions as SQL over payload, AND-ed, with their values in params[2..]
 * (*np counted on). Equality is containment (payload @> '{"f": v}'), which the GIN index on
 * payload serves; a range compares the field as a number (rows where it is not one fail). */
static void filter_sql(const cv_sink_filter *f, cv_buf *sql, const char **params, char **own, int *np) {
    for (int i = 0; f && i < f->n; i++) {
        const cv_sink_cond *c = &f->c[i];
        cv_buf v = {0};
        cv_buf_puts(sql, i ? " AND " : " WHERE ");
        if (c->op == CV_FOP_EQ) {
            cv_buf_puts(&v, "{");
            cv_json_string(&v, c->field, strlen(c->field));
            cv_buf_puts(&v, ":");
            if (c->kind == CV_FV_STR)
                cv_json_string(&v, c->str, strlen(c->str));
            else if (c->kind == CV_FV_NUM)
                cv_buf_puts(&v, c->str);
            else
                cv_buf_puts(&v, c->num ? "true" : "false");
            cv_buf_puts(&v, "}");
            cv_buf_printf(sql, "payload @> $%d::jsonb", *np + 1);
        } else { /* fields are identifiers (search/filter.c): safe as literals */
            cv_buf_puts(&v, c->str);
            cv_buf_printf(
                sql,
                "(CASE WHEN jsonb_typeof(payload->'%s') = 'number' THEN (payload->>'%s')::numeric END) "
                "%s $%d::numeric",
                c->field, c->field, cv_sink_fop_name(c->op, 0), *np + 1);
        }
        params[*np] = own[*np] = v.p;
        (*np)++;
    }
}

/* 1 when every filtered field is an identifier (they are written into the SQL). */
static int filter_fields_ok(const cv_sink_filter *f) {
    for (int i = 0; f && i < f->n; i++) {
        const char *p = f->c[i].field;
        if (!*p || (*p >= '0' && *p <= '9')) return 0;
        for (; *p; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                  *p == '_'))
                return 0;
    }
    return 1;
}

cv_err cv_pgv_search(cv_sink *sk, const float *q, int limit, const cv_sink_filter *f, cv_sink_hit_cb cb,
                     void *arg) {
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
    if (!filter_fields_ok(f)) {
        free(v.p), free(keyexpr.p);
        return CV_ERR_ARG;
    }
    int nf = f ? f->n : 0, np = 2;
    const char **params = calloc((size_t)nf + 2, sizeof *params);
    char **own = calloc((size_t)nf + 2, sizeof *own);
    CV_ASSERT(params && own);
    const int ch = s->t.chunked > 0;
    char over[16];
    int nover = limit < 25 ? 100 : 4 * limit; /* chunks fetched to find limit rows (x4 while short) */
    if (ch) /* search by row: each row once, with its nearest chunk, among the nearest chunks */
        cv_buf_printf(&sql,
                      "WITH c AS (SELECT 1 - (embedding <=> $1::vector) AS sim, %s AS k, payload::text AS p, "
                      "chunk, char_off, char_len, embedding <=> $1::vector AS d FROM %s",
                      keyexpr.p, s->qtable);
    else
        cv_buf_printf(&sql, "SELECT 1 - (embedding <=> $1::vector), %s, payload::text FROM %s", keyexpr.p,
                      s->qtable);
    filter_sql(f, &sql, params, own, &np);
    const int npf = np;
    cv_buf_puts(&sql, " ORDER BY embedding <=> $1::vector LIMIT $2::int");
    if (ch)
        cv_buf_printf(&sql,
                      ") SELECT sim, k, p, chunk, char_off, char_len, (SELECT count(*) FROM c) FROM (SELECT "
                      "DISTINCT ON (k) * FROM c ORDER BY k, d, chunk) r ORDER BY d, k LIMIT $%d::int",
                      np + 1);
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
    params[0] = v.p, params[1] = lim;
    if (ch) { /* $2: chunks, $np+1: rows */
        params = realloc(params, sizeof *params * ((size_t)np + 1));
        CV_ASSERT(params);
        params[1] = over, params[np++] = lim;
    }
    PGresult *r = NULL;
    for (;;) {
        snprintf(over, sizeof over, "%d", nover);
        r = e ? NULL : PQexecParams(s->db, sql.p, np, NULL, params, NULL, NULL, 0);
        if (!e) e = exec_ok(s, r, "search");
        /* fewer rows than limit, and the nearest nover chunks were all there: look further */
        if (e || !ch || PQntuples(r) >= limit || PQntuples(r) == 0 || atol(PQgetvalue(r, 0, 6)) < nover ||
            nover >= 1000000)
            break;
        PQclear(r);
        nover *= 4;
    }
    if (!e && nf && PQntuples(r) < limit) {
        /* a selective filter over a graph with many dead entries: the iterative scan stops at
         * hnsw.max_scan_tuples before it meets the few rows that match. Those rows are few, so
         * the exact answer is cheap: the same query without the HNSW index (the payload's GIN
         * index finds them, the distances are sorted), in a transaction of its own */
        cv_debug("event=search_exact rows=%d limit=%d note=\"the index scan under a filter came back short\"",
                 PQntuples(r), limit);
        PQclear(r);
        r = NULL;
        if (!(e = run(s, "BEGIN", "search_exact")) &&
            !(e = run(s, "SET LOCAL enable_indexscan = off", "search_exact"))) {
            r = PQexecParams(s->db, sql.p, np, NULL, params, NULL, NULL, 0);
            e = exec_ok(s, r, "search");
        }
        if (PQtransactionStatus(s->db) != PQTRANS_IDLE) PQclear(PQexec(s->db, e ? "ROLLBACK" : "COMMIT"));
    }
    for (int i = 0; !e && i < PQntuples(r); i++) {
        cv_sink_passage ps = {0};
        if (ch)
            ps = (cv_sink_passage){atoi(PQgetvalue(r, i, 3)), atol(PQgetvalue(r, i, 4)),
                                   atol(PQgetvalue(r, i, 5))};
        cb(arg, i + 1, strtod(PQgetvalue(r, i, 0), NULL), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
           ch ? &ps : NULL);
    }
    PQclear(r);
    for (int i = 2; i < npf; i++)
        free(own[i]);
    free(own), free(params);
    free(v.p), free(sql.p), free(keyexpr.p);
    return e;
}

cv_err cv_pgv_fetch(cv_sink *sk, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32],
                    char **payload) {
    pg_sink *s = (pg_sink *)sk;
    const int nk = s->t.nkeys;
    char **params = calloc((size_t)nk, sizeof(char *));
    CV_ASSERT(params);
    cv_pgv_key_arrays(s, keys, n, params);
    cv_buf sql = {0}, ucols = {0}, match = {0};
    cv_pgv_key_sql(s, &ucols, &match);
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
cv_err cv_pgv_scan(cv_sink *sk, cv_buf *cursor, int limit, cv_sink_key_cb cb, void *arg, int *more) {
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

/* n_live_tup of the store table (an estimate, as cdcvec_table_rows_source reads the source's);
 * a chunked table: its rows of chunk 0 counted, one per source row (sink.h). */
cv_err cv_pgv_count(cv_sink *sk, double *rows) {
    pg_sink *s = (pg_sink *)sk;
    cv_buf sql = {0};
    const char *p[1] = {s->qtable};
    if (s->t.chunked > 0)
        cv_buf_printf(&sql, "SELECT count(*)::float8 FROM %s WHERE chunk = 0", s->qtable);
    else
        cv_buf_puts(&sql, "SELECT coalesce((SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = "
                          "to_regclass($1)), 0)::float8");
    PGresult *r = PQexecParams(s->db, sql.p, s->t.chunked > 0 ? 0 : 1, NULL, p, NULL, NULL, 0);
    free(sql.p);
    cv_err e = exec_ok(s, r, "count_rows");
    if (!e) *rows = PQntuples(r) == 1 ? atof(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return e;
}
