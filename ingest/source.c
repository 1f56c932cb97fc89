/* source.c: catalog lookups, publication set-up, row -> change conversion, keyset paging.
 *
 * Every failure is classified once, where it enters (pg/cv_pg.h): the fault says whether
 * retrying can help, its kind, and the fix; the log line names the step. */
#define _POSIX_C_SOURCE 200809L
#include "source.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../pg/cv_keytext.h"
#include "../common/cv_log.h"

int cv_source_ok(PGresult *r) {
    return PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK;
}

cv_err cv_source_failed(PGconn *db, PGresult *r, const char *step, cv_pg_fault *f) {
    cv_pg_fault local;
    if (!f) f = &local;
    cv_pg_classify_result(db, r, f);
    cv_pg_log_fault("source_failed", step, r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL, f,
                    r ? PQresultErrorMessage(r) : PQerrorMessage(db));
    return f->retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
}

/* A permanent set-up problem found by our own checks; the fix is kept for the final line. */
static char refusal_fix[512];
static cv_err refuse(cv_pg_fault *f, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static cv_err refuse(cv_pg_fault *f, const char *kind, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(refusal_fix, sizeof refusal_fix, fmt, ap);
    va_end(ap);
    if (f) *f = (cv_pg_fault){0, kind, refusal_fix};
    return CV_ERR_UNSUPPORTED;
}

static int col_index(const cv_table *t, const char *name, size_t n) {
    for (int i = 0; i < t->ncols; i++)
        if (strlen(t->col[i]) == n && strncmp(t->col[i], name, n) == 0) return i;
    return -1;
}

static cv_err parse_template(cv_table *t, const char *tpl, cv_buf *generated, cv_pg_fault *f) {
    int cap = 8;
    t->seg_text = calloc((size_t)cap, sizeof(char *));
    t->seg_col = calloc((size_t)cap, sizeof(int));
    for (const char *p = tpl; *p;) {
        if (t->nseg + 1 >= cap) {
            cap *= 2;
            t->seg_text = realloc(t->seg_text, sizeof(char *) * (size_t)cap);
            t->seg_col = realloc(t->seg_col, sizeof(int) * (size_t)cap);
            CV_ASSERT(t->seg_text && t->seg_col);
        }
        if (*p == '{') {
            const char *e = strchr(p, '}');
            int c = e ? col_index(t, p + 1, (size_t)(e - p - 1)) : -1;
            if (c < 0) {
                int gen = 0;
                if (e && generated->p) {
                    cv_buf want = {0};
                    cv_buf_printf(&want, ",%.*s,", (int)(e - p - 1), p + 1);
                    gen = want.p && strstr(generated->p, want.p) != NULL;
                    free(want.p);
                }
                cv_error("event=bad_template template=\"%s\" at=%ld error=\"%s\" fix=\"%s\"", tpl,
                         (long)(p - tpl),
                         !e    ? "unclosed {"
                         : gen ? "a generated column: PostgreSQL 15 does not publish generated columns"
                               : "unknown column in {...}",
                         gen ? "use the columns it is computed from in the template"
                             : "name a column of the table");
                return refuse(f, "config", "%s",
                              gen ? "use the columns it is computed from in the template"
                                  : "name a column of the table");
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

/* Key types whose equality is the equality of their text form. */
static int exact_type(uint32_t oid) {
    switch (oid) {
    case 16:   /* bool */
    case 18:   /* "char" */
    case 19:   /* name */
    case 20:   /* int8 */
    case 21:   /* int2 */
    case 23:   /* int4 */
    case 25:   /* text (deterministic collations) */
    case 26:   /* oid */
    case 1043: /* varchar */
    case 1082: /* date */
    case 2950: /* uuid */ return 1;
    default: return 0;
    }
}

/* The table's names and its pg_class row: oid, kind, replica identity, persistence. */
static cv_err describe_class(PGconn *db, const char *qualified, cv_table *t, cv_pg_fault *f) {
    const char *dot = strchr(qualified, '.');
    t->schema = dot ? strndup(qualified, (size_t)(dot - qualified)) : strdup("public");
    t->name = strdup(dot ? dot + 1 : qualified);
    cv_buf q = {0};
    cv_pg_ident(&q, t->schema);
    cv_buf_puts(&q, ".");
    cv_pg_ident(&q, t->name);
    t->qualified = q.p;
    const char *p[2] = {t->schema, t->name};
    PGresult *r =
        PQexecParams(db,
                     "SELECT c.oid, c.relkind, c.relreplident, c.relpersistence FROM pg_class c JOIN "
                     "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 "
                     "AND c.relkind IN ('r', 'p')",
                     2, NULL, p, NULL, NULL, 0);
    if (!cv_source_ok(r)) {
        cv_err e = cv_source_failed(db, r, "find_table", f);
        PQclear(r);
        return e;
    }
    if (PQntuples(r) != 1) {
        cv_error("event=table_missing table=%s.%s fix=\"create the table, or pass --table schema.table\"",
                 t->schema, t->name);
        PQclear(r);
        if (f) *f = (cv_pg_fault){0, "missing_object", NULL};
        return CV_ERR_NOTFOUND;
    }
    t->oid = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
    t->relkind = PQgetvalue(r, 0, 1)[0];
    t->replident = PQgetvalue(r, 0, 2)[0];
    t->persistence = PQgetvalue(r, 0, 3)[0];
    PQclear(r);
    return CV_OK;
}

/* The published columns and their types (generated ones, which PostgreSQL 15 does not publish,
 * listed in `generated` as ",a,b," for the messages). */
static cv_err describe_columns(PGconn *db, const char *const *po, cv_table *t, cv_buf *generated,
                               cv_pg_fault *f) {
    PGresult *r = PQexecParams(
        db,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.attnum, a.attgenerated "
        "FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        1, NULL, po, NULL, NULL, 0);
    if (!cv_source_ok(r)) {
        cv_err e = cv_source_failed(db, r, "columns", f);
        PQclear(r);
        return e;
    }
    int nall = PQntuples(r);
    t->col = calloc((size_t)nall + 1, sizeof(char *));
    t->coltype = calloc((size_t)nall + 1, sizeof(char *));
    t->typoid = calloc((size_t)nall + 1, sizeof(uint32_t));
    t->attnum = calloc((size_t)nall + 1, sizeof(int));
    cv_buf layout = {0};
    cv_buf_puts(generated, ",");
    for (int i = 0; i < nall; i++) {
        if (PQgetvalue(r, i, 4)[0]) { /* generated: PostgreSQL 15 does not publish these */
            cv_buf_printf(generated, "%s,", PQgetvalue(r, i, 0));
            continue;
        }
        int c = t->ncols++;
        t->col[c] = strdup(PQgetvalue(r, i, 0));
        t->coltype[c] = strdup(PQgetvalue(r, i, 1));
        t->typoid[c] = (uint32_t)strtoul(PQgetvalue(r, i, 2), NULL, 10);
        t->attnum[c] = atoi(PQgetvalue(r, i, 3));
        cv_buf_printf(&layout, "%s%d:%s:%u", c ? "," : "", t->attnum[c], t->col[c], t->typoid[c]);
    }
    t->layout = layout.p ? layout.p : strdup("");
    PQclear(r);
    t->types = calloc((size_t)t->ncols + 1, sizeof(cv_pgtype));
    cv_err e = cv_pgtypes_load(db, t->typoid, t->ncols, t->types);
    if (e && f) *f = (cv_pg_fault){e == CV_ERR_TIMEOUT, "connection", NULL};
    return e;
}

/* The primary key's columns, and whether they all compare exactly by their text. */
static cv_err describe_key(PGconn *db, const char *const *po, cv_table *t, cv_pg_fault *f) {
    PGresult *r = PQexecParams(
        db,
        "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, "
        "ord) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "WHERE i.indrelid = $1::oid AND i.indisprimary ORDER BY k.ord",
        1, NULL, po, NULL, NULL, 0);
    if (!cv_source_ok(r)) {
        cv_err e = cv_source_failed(db, r, "primary_key", f);
        PQclear(r);
        return e;
    }
    t->nkeys = PQntuples(r);
    if (t->nkeys == 0) {
        cv_error("event=no_primary_key table=%s.%s error=\"cdcvec keys vectors by primary key\" "
                 "fix=\"ALTER TABLE %s ADD PRIMARY KEY (...)\"",
                 t->schema, t->name, t->qualified);
        PQclear(r);
        return refuse(f, "config", "ALTER TABLE %s ADD PRIMARY KEY (...)", t->qualified);
    }
    t->key = calloc((size_t)t->nkeys, sizeof(int));
    t->keyname = calloc((size_t)t->nkeys, sizeof(char *));
    t->keytype = calloc((size_t)t->nkeys, sizeof(char *));
    t->key_exact = 1;
    for (int k = 0; k < t->nkeys; k++) {
        const char *kn = PQgetvalue(r, k, 0);
        t->key[k] = col_index(t, kn, strlen(kn));
        CV_ASSERT(t->key[k] >= 0); /* a generated column cannot be in a primary key */
        t->keyname[k] = t->col[t->key[k]];
        t->keytype[k] = t->coltype[t->key[k]];
        t->key_exact &= exact_type(t->types[t->key[k]].base);
    }
    PQclear(r);
    return CV_OK;
}

/* The text column asked for, following a rename recorded ("column <attnum> <name>"); refused
 * with the fix when it is missing, generated or dropped. src: the text source to record. */
static cv_err describe_text_column(cv_table *t, const char *text_column, const char *recorded,
                                   const cv_buf *generated, cv_buf *src, cv_pg_fault *f) {
    cv_err e = CV_OK;
    t->text_col = col_index(t, text_column, strlen(text_column));
    int rec = 0, at = 0;
    /* recorded "column <attnum> <name>": when the name asked for is the one recorded and is
     * gone, while that attnum lives on under another name, the column was renamed: follow */
    if (recorded && sscanf(recorded, "column %d %n", &rec, &at) == 1 && at > 0 &&
        strcmp(recorded + at, text_column) != 0)
        rec = 0; /* another column asked for than the one recorded: no rename to follow */
    if (rec && t->text_col < 0) {
        for (int i = 0; i < t->ncols; i++)
            if (t->attnum[i] == rec) t->text_col = i;
        if (t->text_col >= 0) {
            t->text_alias = strdup(text_column);
            cv_warn("event=text_column_renamed table=%s from=%s to=%s note=\"following the rename; pass "
                    "--text-column %s from now on\"",
                    t->qualified, text_column, t->col[t->text_col], t->col[t->text_col]);
        }
    }
    if (t->text_col < 0) {
        cv_buf want = {0};
        cv_buf_printf(&want, ",%s,", text_column);
        int gen = want.p && generated->p && strstr(generated->p, want.p);
        free(want.p);
        cv_buf cols = {0};
        for (int i = 0; i < t->ncols; i++)
            cv_buf_printf(&cols, "%s%s", i ? ", " : "", t->col[i]);
        if (gen)
            cv_error("event=text_column_generated table=%s.%s column=%s error=\"%s is a generated column: "
                     "PostgreSQL 15 does not publish generated columns through logical replication\" "
                     "fix=\"embed the columns it is computed from with --template '{a} {b}'\"",
                     t->schema, t->name, text_column, text_column);
        else if (rec)
            cv_error("event=text_column_dropped table=%s.%s column=%s columns=\"%s\" error=\"the embedded "
                     "column was dropped\" fix=\"choose another with --text-column or --template, and "
                     "--resnapshot 1\"",
                     t->schema, t->name, text_column, cols.p ? cols.p : "");
        else
            cv_error(
                "event=text_column_missing table=%s.%s column=%s columns=\"%s\" fix=\"pass --text-column "
                "or --template\"",
                t->schema, t->name, text_column, cols.p ? cols.p : "");
        free(cols.p);
        e = refuse(f, "config", "%s",
                   gen   ? "embed the columns it is computed from with --template"
                   : rec ? "choose another column with --text-column or --template, and --resnapshot 1"
                         : "choose the column with --text-column or --template");
    } else {
        cv_buf_printf(src, "column %d %s", t->attnum[t->text_col], t->col[t->text_col]);
    }
    return e;
}

cv_err cv_table_describe(PGconn *db, const char *qualified, const char *text_column, const char *template_,
                         const char *recorded, cv_table *t, cv_pg_fault *f) {
    memset(t, 0, sizeof *t);
    cv_err e = describe_class(db, qualified, t, f);
    if (e) return e;
    char oid[16];
    snprintf(oid, sizeof oid, "%u", t->oid);
    const char *po[1] = {oid};
    cv_buf generated = {0};
    if ((e = describe_columns(db, po, t, &generated, f)) || (e = describe_key(db, po, t, f))) goto out;
    t->text_col = -1;
    cv_buf src = {0};
    if (template_ && *template_) {
        e = parse_template(t, template_, &generated, f);
        cv_buf_printf(&src, "template %s", template_);
    } else if (!text_column) { /* searching: the text is not needed */
        cv_buf_puts(&src, "none");
    } else {
        e = describe_text_column(t, text_column, recorded, &generated, &src, f);
    }
    t->text_source = src.p;
out:
    free(generated.p);
    return e;
}

void cv_table_free(cv_table *t) {
    for (int i = 0; i < t->ncols; i++)
        free(t->col[i]), free(t->coltype[i]);
    for (int i = 0; i < t->nseg; i++)
        free(t->seg_text[i]);
    if (t->types) cv_pgtypes_free(t->types, t->ncols);
    free(t->types), free(t->attnum), free(t->layout), free(t->text_source), free(t->text_alias),
        free(t->where), free(t->pubcols), free(t->columns_at);
    free(t->col), free(t->coltype), free(t->typoid), free(t->key), free(t->keyname), free(t->keytype);
    free(t->seg_text), free(t->seg_col), free(t->schema), free(t->name), free(t->qualified);
    memset(t, 0, sizeof *t);
}

cv_err cv_table_probe(PGconn *db, const cv_table *t, uint32_t *oid, char **layout, cv_pg_fault *f) {
    *oid = 0;
    *layout = NULL;
    const char *p[2] = {t->schema, t->name};
    PGresult *r = PQexecParams(
        db,
        "SELECT c.oid, coalesce(string_agg(a.attnum || ':' || a.attname || ':' || a.atttypid, ',' ORDER BY "
        "a.attnum), '') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attribute "
        "a ON "
        "a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' WHERE n.nspname "
        "= $1 "
        "AND c.relname = $2 AND c.relkind IN ('r', 'p') GROUP BY c.oid",
        2, NULL, p, NULL, NULL, 0);
    if (!cv_source_ok(r)) {
        cv_err e = cv_source_failed(db, r, "probe_table", f);
        PQclear(r);
        return e;
    }
    if (PQntuples(r) == 1) {
        *oid = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
        *layout = strdup(PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    return CV_OK;
}

static int is_key(const cv_table *t, int i) {
    for (int k = 0; k < t->nkeys; k++)
        if (t->key[k] == i) return 1;
    return 0;
}

/* The offset of the first byte of s[0..n) that does not start or continue valid UTF-8
 * (overlong forms, surrogates and code points beyond U+10FFFF refused), or n when all is. */
static size_t utf8_bad(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80             ? 1
                   : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4
                                        : 0;
        if (!k || i + k > n) return i;
        unsigned cp = k == 1 ? c : k == 2 ? c & 0x1F : k == 3 ? c & 0x0F : c & 0x07;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += k;
    }
    return n;
}

/* Why a row cannot be read (a value that is not UTF-8: a SQL_ASCII database stores any bytes),
 * or NULL. The caller frees. */
static char *row_not_utf8(const cv_table *t, const cv_rowval *v) {
    for (int i = 0; i < t->ncols; i++) {
        if (v[i].kind != 't') continue;
        size_t at = utf8_bad((const unsigned char *)v[i].val, v[i].len);
        if (at == v[i].len) continue;
        cv_buf why = {0};
        cv_buf_printf(
            &why,
            "column %s holds bytes that are not UTF-8 (byte 0x%02x at offset %zu of %zu; the "
            "database's encoding, SQL_ASCII, does not check what it stores): the row is left out of "
            "the store; correct the value at the source",
            t->col[i], (unsigned char)v[i].val[at], at, v[i].len);
        return why.p ? why.p : strdup("a value is not UTF-8");
    }
    return NULL;
}

cv_err cv_change_from_row(const cv_table *t, const cv_rowval *v, int del, cv_change *c) {
    memset(c, 0, sizeof *c);
    c->del = del;
    c->key = calloc((size_t)t->nkeys + 1, sizeof(char *)); /* NULL-terminated */
    CV_ASSERT(c->key);
    for (int k = 0; k < t->nkeys; k++) {
        const cv_rowval *kv = &v[t->key[k]];
        if (kv->kind != 't') {
            cv_error("event=bad_change table=%s error=\"primary key column %s is %s in the row image\" "
                     "fix=\"ALTER TABLE %s REPLICA IDENTITY DEFAULT\"",
                     t->qualified, t->col[t->key[k]], kv->kind == 'n' ? "NULL" : "missing", t->qualified);
            cv_change_free(c);
            return CV_ERR_FORMAT;
        }
        c->key[k] = strndup(kv->val, kv->len);
    }
    if (del) return CV_OK;
    if ((c->fail = row_not_utf8(t, v))) { /* a dead letter naming its key; its stale vector goes */
        c->text_state = CV_TEXT_NULL;
        c->payload = strdup("{}");
        return CV_OK;
    }
    /* the text */
    if (t->text_col >= 0) {
        const cv_rowval *tv = &v[t->text_col];
        c->text_state = tv->kind == 't' ? CV_TEXT_KNOWN : tv->kind == 'n' ? CV_TEXT_NULL : CV_TEXT_UNKNOWN;
        if (tv->kind == 't') c->text = strndup(tv->val, tv->len);
    } else {
        for (int s = 0; s < t->nseg; s++)
            if (t->seg_col[s] >= 0 && v[t->seg_col[s]].kind == 'u') c->text_fetch = 1;
        if (c->text_fetch) { /* the template's other columns may have changed: read the row */
            c->text_state = CV_TEXT_UNKNOWN;
        } else {
            cv_buf b = {0};
            cv_buf_put(&b, "", 0);
            for (int s = 0; s < t->nseg; s++) {
                if (t->seg_col[s] < 0)
                    cv_buf_puts(&b, t->seg_text[s]);
                else if (v[t->seg_col[s]].kind == 't')
                    cv_buf_put(&b, v[t->seg_col[s]].val, v[t->seg_col[s]].len);
            }
            if (b.oom) return CV_ERR_NOMEM;
            c->text = b.p ? b.p : strdup("");
            c->text_state = CV_TEXT_KNOWN;
        }
    }
    /* the payload: every other column (not keys, not the embedded column), as to_jsonb() */
    cv_buf pay = {0}, keep = {0};
    cv_buf_puts(&pay, "{");
    int np = 0, nk = 0;
    for (int i = 0; i < t->ncols && !c->fail; i++) {
        if (is_key(t, i) || i == t->text_col) continue;
        if (v[i].kind == 'u') { /* not in this row image: the stored value stays */
            cv_buf_puts(&keep, nk++ ? "," : "[");
            cv_json_string(&keep, t->col[i], strlen(t->col[i]));
            continue;
        }
        if (np++) cv_buf_puts(&pay, ",");
        cv_json_string(&pay, t->col[i], strlen(t->col[i]));
        cv_buf_puts(&pay, ":");
        if (v[i].kind == 'n') {
            cv_buf_puts(&pay, "null");
        } else if (cv_pgvalue_json(&pay, &t->types[i], v[i].val, v[i].len)) {
            cv_buf why = {0};
            cv_buf_printf(&why, "column %s: its value (%zu bytes) could not be converted to JSON", t->col[i],
                          v[i].len);
            c->fail = why.p ? why.p : strdup("a value could not be converted to JSON");
        }
    }
    cv_buf_puts(&pay, "}");
    if (nk) cv_buf_puts(&keep, "]");
    if (pay.oom || keep.oom) {
        free(pay.p), free(keep.p);
        cv_change_free(c);
        return CV_ERR_NOMEM;
    }
    c->payload = pay.p;
    c->keep = keep.p;
    return CV_OK;
}

/* SELECT list: every column, bare (text-format results are the output functions' text, as
 * pgoutput sends: `col::text` differs for char(n) and inet). */
static void select_list(const cv_table *t, cv_buf *out) {
    for (int i = 0; i < t->ncols; i++) {
        if (i) cv_buf_puts(out, ", ");
        cv_buf_puts(out, "src.");
        cv_pg_ident(out, t->col[i]);
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

/* The statement that reads one row by its key ($1.. the key's text values) into sql, which
 * stays the caller's. */
static cv_err key_lookup_sql(const cv_table *t, cv_buf *sql) {
    cv_buf_puts(sql, "SELECT ");
    select_list(t, sql);
    cv_buf_printf(sql, " FROM %s AS src WHERE ", t->qualified);
    for (int k = 0; k < t->nkeys; k++) {
        if (k) cv_buf_puts(sql, " AND ");
        cv_buf_puts(sql, "src.");
        cv_pg_ident(sql, t->keyname[k]);
        cv_buf_printf(sql, " = $%d::%s", k + 1, t->keytype[k]);
    }
    if (!sql->oom) return CV_OK;
    free(sql->p);
    return CV_ERR_NOMEM;
}

cv_err cv_fetch_texts(PGconn *db, const cv_table *t, cv_change **chg, int n, cv_pg_fault *f) {
    cv_buf sql = {0};
    if (key_lookup_sql(t, &sql)) return CV_ERR_NOMEM;
    cv_rowval *v = calloc((size_t)t->ncols + 1, sizeof *v);
    cv_err e = CV_OK;
    for (int i = 0; i < n && !e; i++) {
        PGresult *r =
            PQexecParams(db, sql.p, t->nkeys, NULL, (const char *const *)chg[i]->key, NULL, NULL, 0);
        if (!cv_source_ok(r)) {
            e = cv_source_failed(db, r, "fetch_text", f);
        } else if (PQntuples(r) == 0) {
            chg[i]->text_state = CV_TEXT_NULL; /* gone since: a later delete in the stream removes it */
            chg[i]->text_fetch = 0;
        } else {
            rowvals_from_result(t, r, 0, v);
            cv_change fresh;
            if ((e = cv_change_from_row(t, v, 0, &fresh)) == CV_OK) {
                free(chg[i]->text);
                chg[i]->text = fresh.text;
                chg[i]->text_state = fresh.text_state;
                chg[i]->text_fetch = 0;
                if (fresh.fail && !chg[i]->fail) chg[i]->fail = fresh.fail, fresh.fail = NULL; /* not UTF-8 */
                fresh.text = NULL;
                cv_change_free(&fresh);
            }
        }
        PQclear(r);
    }
    free(v);
    free(sql.p);
    return e;
}

cv_err cv_read_keys(PGconn *db, const cv_table *t, char **const *keys, int n, cv_change *out,
                    cv_pg_fault *f) {
    cv_buf sql = {0};
    if (key_lookup_sql(t, &sql)) return CV_ERR_NOMEM;
    cv_rowval *v = calloc((size_t)t->ncols + 1, sizeof *v);
    CV_ASSERT(v);
    cv_err e = CV_OK;
    for (int i = 0; i < n && !e; i++) {
        memset(&out[i], 0, sizeof out[i]);
        PGresult *r = PQexecParams(db, sql.p, t->nkeys, NULL, (const char *const *)keys[i], NULL, NULL, 0);
        if (!cv_source_ok(r)) {
            e = cv_source_failed(db, r, "read_row", f);
        } else if (PQntuples(r) == 0) { /* gone: its vector must go too */
            out[i].del = 1;
            out[i].key = calloc((size_t)t->nkeys + 1, sizeof(char *));
            CV_ASSERT(out[i].key);
            for (int k = 0; k < t->nkeys; k++)
                out[i].key[k] = strdup(keys[i][k]);
        } else {
            rowvals_from_result(t, r, 0, v);
            e = cv_change_from_row(t, v, 0, &out[i]);
        }
        PQclear(r);
    }
    free(v);
    free(sql.p);
    return e;
}

/* The page's statement: every column, in key order, after `after` (NULL: from the start). */
static cv_err page_sql(const cv_table *t, int after, int limit, cv_buf *sql) {
    cv_buf keys = {0}, params = {0};
    for (int k = 0; k < t->nkeys; k++) {
        /* qualified: a bare name in ORDER BY could mean an output column */
        cv_buf_puts(&keys, k ? ", src." : "src.");
        cv_pg_ident(&keys, t->keyname[k]);
        cv_buf_printf(&params, "%s$%d::%s", k ? ", " : "", k + 1, t->keytype[k]);
    }
    cv_buf_puts(sql, "SELECT ");
    select_list(t, sql);
    cv_buf_printf(sql, " FROM %s AS src", t->qualified);
    if (after) cv_buf_printf(sql, " WHERE (%s) > (%s)", keys.p, params.p);
    if (t->where) cv_buf_printf(sql, " %s (%s)", after ? "AND" : "WHERE", t->where); /* the row filter */
    cv_buf_printf(sql, " ORDER BY %s LIMIT %d", keys.p, limit);
    cv_err e = sql->oom || keys.oom || params.oom ? CV_ERR_NOMEM : CV_OK;
    free(keys.p), free(params.p);
    return e;
}

cv_err cv_read_page_send(PGconn *db, const cv_table *t, char **after, int limit, cv_pg_fault *f) {
    cv_buf sql = {0};
    cv_err e = page_sql(t, after != NULL, limit, &sql);
    if (e) {
        free(sql.p);
        return e;
    }
    /* libpq copies the parameters into its output buffer and, on a blocking connection, sends
     * the statement before returning */
    if (!PQsendQueryParams(db, sql.p, after ? t->nkeys : 0, NULL, (const char *const *)after, NULL, NULL, 0))
        e = cv_source_failed(db, NULL, "backfill_page", f);
    free(sql.p);
    return e;
}

cv_err cv_read_page_recv(PGconn *db, const cv_table *t, cv_change *out, int *n, cv_pg_fault *f) {
    *n = 0;
    PGresult *r = PQgetResult(db);
    cv_read_page_discard(db); /* nothing else follows one statement; the connection is free again */
    if (!cv_source_ok(r)) {
        cv_err e = cv_source_failed(db, r, "backfill_page", f);
        PQclear(r);
        return e;
    }
    cv_rowval *v = calloc((size_t)t->ncols + 1, sizeof *v);
    CV_ASSERT(v);
    cv_err e = CV_OK;
    for (int i = 0; i < PQntuples(r) && !e; i++) {
        rowvals_from_result(t, r, i, v);
        if ((e = cv_change_from_row(t, v, 0, &out[i])) == CV_OK) {
            if (t->row_hook) t->row_hook(t->row_hook_arg, v, &out[i]);
            (*n)++;
        }
    }
    free(v);
    PQclear(r);
    return e;
}

void cv_read_page_discard(PGconn *db) {
    PGresult *r;
    while ((r = PQgetResult(db)) != NULL)
        PQclear(r);
}

cv_err cv_read_page(PGconn *db, const cv_table *t, char **after, int limit, cv_change *out, int *n,
                    cv_pg_fault *f) {
    *n = 0;
    cv_err e = cv_read_page_send(db, t, after, limit, f);
    return e ? e : cv_read_page_recv(db, t, out, n, f);
}

/* The table itself must be publishable and its row images must carry the primary key. */
static cv_err check_table(PGconn *db, const cv_table *t, cv_pg_fault *f) {
    if (t->persistence != 'p') {
        cv_error("event=table_not_logged table=%s error=\"%s tables are not written to the WAL, so logical "
                 "replication cannot see their changes\" fix=\"ALTER TABLE %s SET LOGGED\"",
                 t->qualified, t->persistence == 'u' ? "unlogged" : "temporary", t->qualified);
        return refuse(f, "config", "ALTER TABLE %s SET LOGGED", t->qualified);
    }
    if (t->replident == 'n') {
        cv_error("event=replica_identity_nothing table=%s error=\"REPLICA IDENTITY NOTHING: deletes and key "
                 "changes would not say which row they touch, and publishing the table would make the "
                 "application's own UPDATE and DELETE fail\" fix=\"ALTER TABLE %s REPLICA IDENTITY DEFAULT\"",
                 t->qualified, t->qualified);
        return refuse(f, "config", "ALTER TABLE %s REPLICA IDENTITY DEFAULT", t->qualified);
    }
    if (t->replident == 'i') { /* the identity index must hold every primary key column */
        char oid[16];
        snprintf(oid, sizeof oid, "%u", t->oid);
        const char *p[1] = {oid};
        PGresult *r =
            PQexecParams(db,
                         "SELECT coalesce((SELECT array_agg(k) FROM pg_index i, unnest(i.indkey) k WHERE "
                         "i.indrelid = $1::oid AND i.indisreplident) @> (SELECT array_agg(k) FROM "
                         "pg_index i, unnest(i.indkey) k WHERE i.indrelid = $1::oid AND i.indisprimary), "
                         "false)",
                         1, NULL, p, NULL, NULL, 0);
        if (!cv_source_ok(r)) {
            cv_err e = cv_source_failed(db, r, "replica_identity", f);
            PQclear(r);
            return e;
        }
        int covers = PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        if (!covers) {
            cv_error(
                "event=replica_identity_index table=%s error=\"the REPLICA IDENTITY index does not include "
                "the primary key, so a DELETE would not say which vector to remove\" fix=\"ALTER TABLE %s "
                "REPLICA IDENTITY DEFAULT (or FULL)\"",
                t->qualified, t->qualified);
            return refuse(f, "config", "ALTER TABLE %s REPLICA IDENTITY DEFAULT (or FULL)", t->qualified);
        }
    }
    return CV_OK;
}

cv_err cv_source_prepare(PGconn *db, const cv_table *t, const char *publication, int *added, cv_pg_fault *f) {
    PGresult *r =
        PQexec(db, "SELECT current_setting('wal_level'), (SELECT rolreplication OR rolsuper FROM pg_roles "
                   "WHERE rolname = current_user), current_user");
    if (!cv_source_ok(r)) {
        cv_err e = cv_source_failed(db, r, "server_settings", f);
        PQclear(r);
        return e;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "logical") != 0) {
        cv_error(
            "event=wal_level_not_logical wal_level=%s fix=\"set wal_level = logical in postgresql.conf and "
            "restart PostgreSQL\"",
            PQgetvalue(r, 0, 0));
        PQclear(r);
        return refuse(f, "config", "set wal_level = logical in postgresql.conf and restart PostgreSQL");
    }
    if (PQgetvalue(r, 0, 1)[0] != 't') {
        cv_error("event=no_replication_privilege role=%s fix=\"ALTER ROLE %s REPLICATION (as a superuser)\"",
                 PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 2));
        cv_err e = refuse(f, "privilege", "ALTER ROLE %s REPLICATION (as a superuser)", PQgetvalue(r, 0, 2));
        PQclear(r);
        return e;
    }
    PQclear(r);
    cv_err e = check_table(db, t, f); /* before any publication exists: never in the application's way */
    if (e) return e;
    return cv_publication_add(db, t, publication, added, f);
}
