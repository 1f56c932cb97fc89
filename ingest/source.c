/* source.c: catalog lookups, publication set-up, row -> change conversion, keyset paging. */
#define _POSIX_C_SOURCE 200809L
#include "source.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "../sink/sink.h"

static int ok(PGresult *r) {
    return PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK;
}

static cv_err query_failed(PGconn *db, PGresult *r, const char *what) {
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    cv_error("event=source_query_failed step=%s sqlstate=%s error=\"%s\"", what, state ? state : "-",
             PQresultErrorMessage(r));
    return PQstatus(db) != CONNECTION_OK ? CV_ERR_TIMEOUT : CV_ERR_IO;
}

static int col_index(const cv_table *t, const char *name, size_t n) {
    for (int i = 0; i < t->ncols; i++)
        if (strlen(t->col[i]) == n && strncmp(t->col[i], name, n) == 0) return i;
    return -1;
}

static cv_err parse_template(cv_table *t, const char *tpl) {
    int cap = 8;
    t->seg_text = calloc((size_t)cap, sizeof(char *));
    t->seg_col = calloc((size_t)cap, sizeof(int));
    for (const char *p = tpl; *p;) {
        if (t->nseg + 1 >= cap) {
            cap *= 2;
            t->seg_text = realloc(t->seg_text, sizeof(char *) * (size_t)cap);
            t->seg_col = realloc(t->seg_col, sizeof(int) * (size_t)cap);
        }
        if (*p == '{') {
            const char *e = strchr(p, '}');
            int c = e ? col_index(t, p + 1, (size_t)(e - p - 1)) : -1;
            if (c < 0) {
                cv_error("event=bad_template template=\"%s\" at=%ld error=\"%s\"", tpl, (long)(p - tpl),
                         e ? "unknown column in {...}" : "unclosed {");
                return CV_ERR_ARG;
            }
            t->seg_text[t->nseg] = NULL;
            t->seg_col[t->nseg++] = c;
            p = e + 1;
        } else {
            const char *e = strchr(p, '{');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            t->seg_text[t->nseg] = strndup(p, n);
            t->seg_col[t->nseg++] = -1;
            p += n;
        }
    }
    return CV_OK;
}

cv_err cv_table_describe(PGconn *db, const char *qualified, const char *text_column, const char *template_,
                         cv_table *t) {
    memset(t, 0, sizeof *t);
    const char *dot = strchr(qualified, '.');
    t->schema = dot ? strndup(qualified, (size_t)(dot - qualified)) : strdup("public");
    t->name = strdup(dot ? dot + 1 : qualified);
    char qs[300], qn[300];
    cv_sql_ident(t->schema, qs, sizeof qs);
    cv_sql_ident(t->name, qn, sizeof qn);
    size_t ql = strlen(qs) + strlen(qn) + 2;
    t->qualified = malloc(ql);
    snprintf(t->qualified, ql, "%s.%s", qs, qn);
    const char *p[2] = {t->schema, t->name};
    PGresult *r = PQexecParams(db,
                               "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                               "WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                               2, NULL, p, NULL, NULL, 0);
    if (!ok(r)) {
        cv_err e = query_failed(db, r, "find_table");
        PQclear(r);
        return e;
    }
    if (PQntuples(r) != 1) {
        cv_error("event=table_missing table=%s.%s fix=\"create the table, or pass --table schema.table\"",
                 t->schema, t->name);
        PQclear(r);
        return CV_ERR_NOTFOUND;
    }
    t->oid = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    char oid[16];
    snprintf(oid, sizeof oid, "%u", t->oid);
    const char *po[1] = {oid};
    r = PQexecParams(db,
                     "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid FROM pg_attribute a "
                     "WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped "
                     "AND a.attgenerated = '' ORDER BY a.attnum",
                     1, NULL, po, NULL, NULL, 0);
    if (!ok(r)) {
        cv_err e = query_failed(db, r, "columns");
        PQclear(r);
        return e;
    }
    t->ncols = PQntuples(r);
    t->col = calloc((size_t)t->ncols, sizeof(char *));
    t->coltype = calloc((size_t)t->ncols, sizeof(char *));
    t->typoid = calloc((size_t)t->ncols, sizeof(uint32_t));
    for (int i = 0; i < t->ncols; i++) {
        t->col[i] = strdup(PQgetvalue(r, i, 0));
        t->coltype[i] = strdup(PQgetvalue(r, i, 1));
        t->typoid[i] = (uint32_t)strtoul(PQgetvalue(r, i, 2), NULL, 10);
    }
    PQclear(r);
    r = PQexecParams(
        db,
        "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, "
        "ord) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY k.ord",
        1, NULL, po, NULL, NULL, 0);
    if (!ok(r)) {
        cv_err e = query_failed(db, r, "primary_key");
        PQclear(r);
        return e;
    }
    t->nkeys = PQntuples(r);
    if (t->nkeys == 0) {
        cv_error("event=no_primary_key table=%s.%s error=\"cdcvec keys vectors by primary key\" "
                 "fix=\"ALTER TABLE %s ADD PRIMARY KEY (...)\"",
                 t->schema, t->name, t->qualified);
        PQclear(r);
        return CV_ERR_ARG;
    }
    t->key = calloc((size_t)t->nkeys, sizeof(int));
    t->keyname = calloc((size_t)t->nkeys, sizeof(char *));
    t->keytype = calloc((size_t)t->nkeys, sizeof(char *));
    for (int k = 0; k < t->nkeys; k++) {
        const char *kn = PQgetvalue(r, k, 0);
        t->key[k] = col_index(t, kn, strlen(kn));
        t->keyname[k] = t->col[t->key[k]];
        t->keytype[k] = t->coltype[t->key[k]];
    }
    PQclear(r);
    t->text_col = -1;
    if (template_ && *template_) return parse_template(t, template_);
    t->text_col = col_index(t, text_column, strlen(text_column));
    if (t->text_col < 0) {
        char cols[1024] = "";
        for (int i = 0; i < t->ncols; i++) {
            strncat(cols, i ? ", " : "", sizeof cols - strlen(cols) - 1);
            strncat(cols, t->col[i], sizeof cols - strlen(cols) - 1);
        }
        cv_error("event=text_column_missing table=%s.%s column=%s columns=\"%s\" fix=\"pass --text-column or "
                 "--template\"",
                 t->schema, t->name, text_column, cols);
        return CV_ERR_NOTFOUND;
    }
    return CV_OK;
}

void cv_table_free(cv_table *t) {
    for (int i = 0; i < t->ncols; i++)
        free(t->col[i]), free(t->coltype[i]);
    for (int i = 0; i < t->nseg; i++)
        free(t->seg_text[i]);
    free(t->col), free(t->coltype), free(t->typoid), free(t->key), free(t->keyname), free(t->keytype);
    free(t->seg_text), free(t->seg_col), free(t->schema), free(t->name), free(t->qualified);
    memset(t, 0, sizeof *t);
}

/* JSON value of a column's text form, by type: numbers, booleans and JSON stay typed. */
static json_t *json_of(uint32_t typoid, const char *v, size_t n) {
    switch (typoid) {
    case 16: return json_boolean(n > 0 && v[0] == 't');
    case 20:
    case 21:
    case 23:
    case 700:
    case 701:
    case 1700: {
        json_t *j = json_loadb(v, n, JSON_DECODE_ANY, NULL); /* NaN/Infinity are not JSON: text */
        if (j && json_is_number(j)) return j;
        json_decref(j);
        return json_stringn(v, n);
    }
    case 114:
    case 3802: {
        json_t *j = json_loadb(v, n, JSON_DECODE_ANY, NULL);
        return j ? j : json_stringn(v, n);
    }
    default: return json_stringn(v, n);
    }
}

cv_err cv_change_from_row(const cv_table *t, const cv_rowval *v, int del, cv_change *c) {
    memset(c, 0, sizeof *c);
    c->del = del;
    c->key = calloc((size_t)t->nkeys + 1, sizeof(char *)); /* NULL-terminated */
    for (int k = 0; k < t->nkeys; k++) {
        const cv_rowval *kv = &v[t->key[k]];
        if (kv->kind != 't') {
            cv_error("event=bad_change table=%s.%s error=\"primary key column %s is %s\"", t->schema, t->name,
                     t->col[t->key[k]], kv->kind == 'n' ? "NULL" : "missing");
            cv_change_free(c);
            return CV_ERR_FORMAT;
        }
        c->key[k] = strndup(kv->val, kv->len);
    }
    if (del) return CV_OK;
    /* the text */
    if (t->text_col >= 0) {
        const cv_rowval *tv = &v[t->text_col];
        c->text_state = tv->kind == 't' ? CV_TEXT_KNOWN : tv->kind == 'n' ? CV_TEXT_NULL : CV_TEXT_UNKNOWN;
        if (tv->kind == 't') c->text = strndup(tv->val, tv->len);
    } else {
        size_t len = 0;
        for (int s = 0; s < t->nseg; s++) {
            if (t->seg_col[s] < 0)
                len += strlen(t->seg_text[s]);
            else if (v[t->seg_col[s]].kind == 'u')
                c->text_state = CV_TEXT_UNKNOWN;
            else if (v[t->seg_col[s]].kind == 't')
                len += v[t->seg_col[s]].len;
        }
        if (c->text_state == CV_TEXT_KNOWN) {
            c->text = malloc(len + 1);
            size_t o = 0;
            for (int s = 0; s < t->nseg; s++) {
                const char *src = t->seg_col[s] < 0 ? t->seg_text[s] : v[t->seg_col[s]].val;
                size_t n = t->seg_col[s] < 0              ? strlen(src)
                           : v[t->seg_col[s]].kind == 't' ? v[t->seg_col[s]].len
                                                          : 0;
                if (n) memcpy(c->text + o, src, n);
                o += n;
            }
            c->text[o] = 0;
        }
    }
    /* the payload: every other column (not keys, not the embedded column) */
    json_t *obj = json_object();
    for (int i = 0; i < t->ncols; i++) {
        int is_key = 0;
        for (int k = 0; k < t->nkeys; k++)
            is_key |= t->key[k] == i;
        if (is_key || i == t->text_col || v[i].kind == 'u') continue;
        json_object_set_new(obj, t->col[i],
                            v[i].kind == 'n' ? json_null() : json_of(t->typoid[i], v[i].val, v[i].len));
    }
    c->payload = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return c->payload ? CV_OK : CV_ERR_NOMEM;
}

void cv_change_free(cv_change *c) {
    for (int k = 0; c->key && c->key[k]; k++)
        free(c->key[k]);
    free(c->key);
    free(c->text);
    free(c->payload);
    c->key = NULL;
    c->text = c->payload = NULL;
}

/* SELECT list: every column as text, in attnum order. */
static void select_list(const cv_table *t, char *out, size_t len) {
    size_t o = 0;
    char id[300];
    for (int i = 0; i < t->ncols && o < len; i++) {
        cv_sql_ident(t->col[i], id, sizeof id);
        o += (size_t)snprintf(out + o, len - o, "%s%s::text", i ? ", " : "", id);
    }
}

static void rowvals_from_result(const cv_table *t, PGresult *r, int row, cv_rowval *v) {
    for (int i = 0; i < t->ncols; i++) {
        if (PQgetisnull(r, row, i))
            v[i] = (cv_rowval){'n', NULL, 0};
        else
            v[i] = (cv_rowval){'t', PQgetvalue(r, row, i), (size_t)PQgetlength(r, row, i)};
    }
}

cv_err cv_fetch_texts(PGconn *db, const cv_table *t, cv_change **chg, int n) {
    char sel[8192], where[2048], id[300], sql[12288];
    select_list(t, sel, sizeof sel);
    size_t o = 0;
    for (int k = 0; k < t->nkeys; k++) {
        cv_sql_ident(t->keyname[k], id, sizeof id);
        o += (size_t)snprintf(where + o, sizeof where - o, "%s%s = $%d::%s", k ? " AND " : "", id, k + 1,
                              t->keytype[k]);
    }
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE %s", sel, t->qualified, where);
    cv_rowval *v = calloc((size_t)t->ncols, sizeof *v);
    cv_err e = CV_OK;
    for (int i = 0; i < n && !e; i++) {
        PGresult *r = PQexecParams(db, sql, t->nkeys, NULL, (const char *const *)chg[i]->key, NULL, NULL, 0);
        if (!ok(r)) {
            e = query_failed(db, r, "fetch_text");
        } else if (PQntuples(r) == 0) {
            chg[i]->text_state = CV_TEXT_NULL; /* gone since: a later delete in the stream removes it */
        } else {
            rowvals_from_result(t, r, 0, v);
            cv_change fresh;
            if ((e = cv_change_from_row(t, v, 0, &fresh)) == CV_OK) {
                free(chg[i]->text);
                chg[i]->text = fresh.text;
                chg[i]->text_state = fresh.text_state;
                fresh.text = NULL;
                cv_change_free(&fresh);
            }
        }
        PQclear(r);
    }
    free(v);
    return e;
}

cv_err cv_read_page(PGconn *db, const cv_table *t, char **after, int limit, cv_change *out, int *n) {
    char sel[8192], keys[2048] = "", params[2048] = "", id[300], sql[16384];
    select_list(t, sel, sizeof sel);
    size_t o = 0, q = 0;
    for (int k = 0; k < t->nkeys; k++) {
        cv_sql_ident(t->keyname[k], id, sizeof id);
        /* qualified: a bare name in ORDER BY would mean the ::text output column */
        o += (size_t)snprintf(keys + o, sizeof keys - o, "%ssrc.%s", k ? ", " : "", id);
        q +=
            (size_t)snprintf(params + q, sizeof params - q, "%s$%d::%s", k ? ", " : "", k + 1, t->keytype[k]);
    }
    if (after)
        snprintf(sql, sizeof sql, "SELECT %s FROM %s AS src WHERE (%s) > (%s) ORDER BY %s LIMIT %d", sel,
                 t->qualified, keys, params, keys, limit);
    else
        snprintf(sql, sizeof sql, "SELECT %s FROM %s AS src ORDER BY %s LIMIT %d", sel, t->qualified, keys,
                 limit);
    PGresult *r =
        PQexecParams(db, sql, after ? t->nkeys : 0, NULL, (const char *const *)after, NULL, NULL, 0);
    *n = 0;
    if (!ok(r)) {
        cv_err e = query_failed(db, r, "backfill_page");
        PQclear(r);
        return e;
    }
    cv_rowval *v = calloc((size_t)t->ncols, sizeof *v);
    cv_err e = CV_OK;
    for (int i = 0; i < PQntuples(r) && !e; i++) {
        rowvals_from_result(t, r, i, v);
        if ((e = cv_change_from_row(t, v, 0, &out[i])) == CV_OK) (*n)++;
    }
    free(v);
    PQclear(r);
    return e;
}

cv_err cv_source_prepare(PGconn *db, const cv_table *t, const char *publication) {
    PGresult *r =
        PQexec(db, "SELECT current_setting('wal_level'), (SELECT rolreplication OR rolsuper FROM pg_roles "
                   "WHERE rolname = current_user), current_user");
    if (!ok(r)) {
        cv_err e = query_failed(db, r, "server_settings");
        PQclear(r);
        return e;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "logical") != 0) {
        cv_error(
            "event=wal_level_not_logical wal_level=%s fix=\"set wal_level = logical in postgresql.conf and "
            "restart PostgreSQL\"",
            PQgetvalue(r, 0, 0));
        PQclear(r);
        return CV_ERR_UNSUPPORTED;
    }
    if (PQgetvalue(r, 0, 1)[0] != 't') {
        cv_error("event=no_replication_privilege role=%s fix=\"ALTER ROLE %s REPLICATION (as a superuser)\"",
                 PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 2));
        PQclear(r);
        return CV_ERR_UNSUPPORTED;
    }
    PQclear(r);
    const char *p[3] = {publication, t->schema, t->name};
    r = PQexecParams(db,
                     "SELECT (SELECT count(*) FROM pg_publication WHERE pubname = $1), (SELECT count(*) FROM "
                     "pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
                     3, NULL, p, NULL, NULL, 0);
    if (!ok(r)) {
        cv_err e = query_failed(db, r, "publication");
        PQclear(r);
        return e;
    }
    int exists = atoi(PQgetvalue(r, 0, 0)), has = atoi(PQgetvalue(r, 0, 1));
    PQclear(r);
    if (has) return CV_OK;
    char pub[300], sql[1024];
    cv_sql_ident(publication, pub, sizeof pub);
    if (exists)
        snprintf(sql, sizeof sql, "ALTER PUBLICATION %s ADD TABLE %s", pub, t->qualified);
    else
        snprintf(sql, sizeof sql, "CREATE PUBLICATION %s FOR TABLE %s", pub, t->qualified);
    r = PQexec(db, sql);
    cv_err e = ok(r) ? CV_OK : query_failed(db, r, "create_publication");
    if (!e) cv_info("event=publication_ready publication=%s table=%s", publication, t->qualified);
    PQclear(r);
    return e;
}
