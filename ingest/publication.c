/* publication.c: a table into the publication of its slot, with its row filter (source.h).
 *
 * A pipeline's table may carry a PostgreSQL 15 publication row filter (`where:`): then only its
 * rows that pass the filter are published, an UPDATE that moves a row out of (or into) the filter
 * is published as a DELETE (an INSERT), and the backfill reads the same rows (source.c, page_sql).
 * PostgreSQL refuses UPDATE and DELETE on a published table whose filter names a column outside
 * the replica identity: the filter is tried first, in a transaction that is rolled back, with an
 * UPDATE and a DELETE that touch no row (their executor start runs that check), so a filter that
 * would break the application's writes is refused with the fix before it is ever committed.
 *
 * It may carry a column list too (`columns:`, PostgreSQL 15): the table is published with only
 * those columns (ADD TABLE t (a, b)). PostgreSQL refuses UPDATE and DELETE on a published table
 * whose column list lacks a replica identity column (REPLICA IDENTITY FULL: any column left out;
 * USING INDEX: one of the index's): the list is tried first the same way, alone, and refused with
 * the fix, naming the file's place. A changed list reads the table's rows again, as a changed
 * filter does. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "source.h"

/* The table's row filter in the publication as PostgreSQL deparses it ("" : none; NULL: not in
 * it), into *out (caller frees), and its column list (names comma-joined in the table's order,
 * "" : none) into *cols (when not NULL; caller frees). */
static cv_err filter_now(PGconn *db, const cv_table *t, const char *publication, char **out, int *exists,
                         int *viaroot, char **cols, cv_pg_fault *f) {
    char oid[16];
    snprintf(oid, sizeof oid, "%u", t->oid);
    const char *p[2] = {publication, oid};
    PGresult *r = PQexecParams(
        db,
        "SELECT (SELECT count(*) FROM pg_publication WHERE pubname = $1), "
        "(SELECT coalesce(pg_get_expr(pr.prqual, pr.prrelid), '') FROM pg_publication_rel pr "
        "JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1 AND pr.prrelid = $2::oid), "
        "(SELECT pubviaroot FROM pg_publication WHERE pubname = $1), "
        "(SELECT coalesce((SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_attribute a "
        "WHERE a.attrelid = pr.prrelid AND a.attnum = ANY (pr.prattrs::int2[])), '') FROM pg_publication_rel "
        "pr JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1 AND pr.prrelid = $2::oid)",
        2, NULL, p, NULL, NULL, 0);
    if (!cv_source_ok(r)) {
        cv_err e = cv_source_failed(db, r, "publication", f);
        PQclear(r);
        return e;
    }
    *exists = atoi(PQgetvalue(r, 0, 0));
    *out = PQgetisnull(r, 0, 1) ? NULL : strdup(PQgetvalue(r, 0, 1));
    *viaroot = PQgetvalue(r, 0, 2)[0] == 't';
    if (cols) *cols = strdup(PQgetvalue(r, 0, 3));
    PQclear(r);
    return CV_OK;
}

/* The statements that put the table (with its column list and filter) in the publication;
 * had_cols: the column list it has there ("" : none). */
static void statements(const cv_table *t, const char *pub, int exists, const char *had, const char *had_cols,
                       int viaroot, cv_buf *sql) {
    int partitioned = t->relkind == 'p';
    cv_buf w = {0};
    if (t->pubcols) { /* (a, b): the column list */
        cv_buf_puts(&w, " (");
        const char *p = t->pubcols;
        for (int n = 0; *p; n++) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            char *c = strndup(p, len);
            CV_ASSERT(c);
            if (n) cv_buf_puts(&w, ", ");
            cv_pg_ident(&w, c);
            free(c);
            p = e ? e + 1 : p + len;
        }
        cv_buf_puts(&w, ")");
    }
    if (t->where) cv_buf_printf(&w, " WHERE (%s)", t->where);
    int again = t->where || t->pubcols || (had && *had) || (had_cols && *had_cols);
    if (!exists) {
        cv_buf_printf(sql, "CREATE PUBLICATION %s FOR TABLE %s%s%s;", pub, t->qualified, w.p ? w.p : "",
                      partitioned ? " WITH (publish_via_partition_root = true)" : "");
    } else {
        if (had && again) /* a filter or column list to set, or one to remove: the table again */
            cv_buf_printf(sql, "ALTER PUBLICATION %s DROP TABLE %s; ", pub, t->qualified);
        if (!had || again)
            cv_buf_printf(sql, "ALTER PUBLICATION %s ADD TABLE %s%s; ", pub, t->qualified, w.p ? w.p : "");
        /* changes to partitions must arrive as the partitioned table's */
        if (partitioned && !viaroot)
            cv_buf_printf(sql, "ALTER PUBLICATION %s SET (publish_via_partition_root = true);", pub);
    }
    cv_buf_free(&w);
}

/* The column list alone, tried in a transaction rolled back: would the application's UPDATE and
 * DELETE still work (the list covers the replica identity)? Refused with the fix otherwise. */
static cv_err probe_columns(PGconn *db, const cv_table *t, const char *pub, int exists, const char *had,
                            const char *had_cols, int viaroot, cv_pg_fault *f) {
    cv_table alone = *t;
    alone.where = NULL; /* a filter's own probe follows (cv_publication_add) */
    cv_buf sql = {0}, probe = {0};
    statements(&alone, pub, exists, had, had_cols, viaroot, &sql);
    cv_buf_printf(&probe, "BEGIN; %s UPDATE %s SET ", sql.p ? sql.p : "", t->qualified);
    cv_pg_ident(&probe, t->keyname[0]);
    cv_buf_puts(&probe, " = ");
    cv_pg_ident(&probe, t->keyname[0]);
    cv_buf_printf(&probe, " WHERE false; DELETE FROM %s WHERE false;", t->qualified);
    PGresult *r = PQexec(db, probe.p);
    cv_err e = CV_OK;
    if (!cv_source_ok(r)) {
        const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cv_buf m = {0};
        cv_pg_errtext(PQresultErrorMessage(r), &m);
        if (code && !strcmp(code, "42P10")) { /* invalid_column_reference: the replica identity's check */
            cv_error("event=columns_refused table=%s at=\"%s\" columns=\"%s\" error=\"%s: the column list "
                     "lacks a column of the table's replica identity (%s), so PostgreSQL would refuse the "
                     "application's UPDATE and DELETE\" fix=\"add the replica identity's columns to columns: "
                     "(REPLICA IDENTITY FULL: every column, so drop columns:), or ALTER TABLE %s REPLICA "
                     "IDENTITY DEFAULT (the primary key)\"",
                     t->qualified, t->columns_at ? t->columns_at : "columns", t->pubcols, m.p ? m.p : "",
                     t->replident == 'f' ? "FULL: every column" : "an index's columns", t->qualified);
            *f = (cv_pg_fault){0, "config",
                               "add the replica identity's columns to columns:, or ALTER TABLE ... REPLICA "
                               "IDENTITY DEFAULT"};
            e = CV_ERR_UNSUPPORTED;
        } else {
            e = cv_source_failed(db, r, "publication_columns", f);
        }
        cv_buf_free(&m);
    }
    PQclear(r);
    PQclear(PQexec(db, "ROLLBACK"));
    cv_buf_free(&sql), cv_buf_free(&probe);
    return e;
}

cv_err cv_publication_add(PGconn *db, const cv_table *t, const char *publication, int *added,
                          cv_pg_fault *f) {
    if (added) *added = 0;
    char *had = NULL, *had_cols = NULL;
    int exists = 0, viaroot = 0;
    cv_err e = filter_now(db, t, publication, &had, &exists, &viaroot, &had_cols, f);
    if (e) return e;
    cv_buf sql = {0}, pub = {0};
    cv_pg_ident(&pub, publication);
    statements(t, pub.p, exists, had, had_cols, viaroot, &sql);
    if (!sql.p) {
        free(had), free(had_cols), free(pub.p);
        return CV_OK; /* in it already, as it should be */
    }
    PGresult *r;
    if (t->pubcols && (e = probe_columns(db, t, pub.p, exists, had, had_cols, viaroot, f))) {
        free(had), free(had_cols), free(sql.p), free(pub.p);
        return e;
    }
    if (t->where) { /* tried first: would the application's UPDATE and DELETE still work? */
        cv_buf probe = {0};
        cv_buf_printf(&probe, "BEGIN; %s UPDATE %s SET ", sql.p, t->qualified);
        cv_pg_ident(&probe, t->keyname[0]);
        cv_buf_puts(&probe, " = ");
        cv_pg_ident(&probe, t->keyname[0]);
        cv_buf_printf(&probe, " WHERE false; DELETE FROM %s WHERE false;", t->qualified);
        r = PQexec(db, probe.p);
        int good = cv_source_ok(r);
        if (!good) {
            const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            cv_buf m = {0};
            cv_pg_errtext(PQresultErrorMessage(r), &m);
            int identity = code && !strcmp(code, "42P10"); /* invalid_column_reference: the check's */
            if (identity) {
                cv_error("event=row_filter_refused table=%s where=\"%s\" error=\"%s\" fix=\"ALTER TABLE %s "
                         "REPLICA "
                         "IDENTITY FULL (the filter's columns then travel with every change), or filter on "
                         "primary key columns only\"",
                         t->qualified, t->where, m.p ? m.p : "", t->qualified);
                *f = (cv_pg_fault){
                    0, "config",
                    "ALTER TABLE ... REPLICA IDENTITY FULL, or a where: on primary key columns only"};
            } else {
                cv_error(
                    "event=row_filter_refused table=%s where=\"%s\" error=\"%s\" fix=\"correct where: in the "
                    "pipeline file (a boolean SQL expression on the table's columns, as CREATE PUBLICATION "
                    "... "
                    "WHERE takes it)\"",
                    t->qualified, t->where, m.p ? m.p : "");
                cv_pg_classify_result(db, r, f);
                if (!f->retriable) *f = (cv_pg_fault){0, "config", "correct where: in the pipeline file"};
            }
            cv_buf_free(&m);
        }
        PQclear(r);
        PQclear(PQexec(db, "ROLLBACK"));
        cv_buf_free(&probe);
        if (!good) {
            free(had), free(had_cols), free(sql.p), free(pub.p);
            return f->retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
        }
    }
    cv_buf tx = {0};
    cv_buf_printf(&tx, "BEGIN; %s COMMIT;", sql.p);
    r = PQexec(db, tx.p);
    e = cv_source_ok(r) ? CV_OK : cv_source_failed(db, r, "create_publication", f);
    PQclear(r);
    if (e) PQclear(PQexec(db, "ROLLBACK"));
    char *now = NULL, *now_cols = NULL;
    if (!e) e = filter_now(db, t, publication, &now, &exists, &viaroot, &now_cols, f);
    if (!e) {
        /* a table new to the publication, or whose filter or column list changed: its rows are
         * read again */
        int changed =
            !had || !now || strcmp(had, now) != 0 || strcmp(had_cols ? had_cols : "", now_cols) != 0;
        if (added) *added = changed;
        if (changed)
            cv_info("event=publication_ready publication=%s table=%s via_partition_root=%d where=\"%s\" "
                    "columns=\"%s\"%s",
                    publication, t->qualified, t->relkind == 'p', now ? now : "", now_cols ? now_cols : "",
                    had && *had != (now ? *now : 0) ? " note=\"the row filter changed\"" : "");
    }
    free(had), free(had_cols), free(now), free(now_cols), free(sql.p), free(pub.p), free(tx.p);
    return e;
}
