/* publication.c: a table into the publication of its slot, with its row filter (source.h).
 *
 * A pipeline's table may carry a PostgreSQL 15 publication row filter (`where:`): then only its
 * rows that pass the filter are published, an UPDATE that moves a row out of (or into) the filter
 * is published as a DELETE (an INSERT), and the backfill reads the same rows (source.c, page_sql).
 * PostgreSQL refuses UPDATE and DELETE on a published table whose filter names a column outside
 * the replica identity: the filter is tried first, in a transaction that is rolled back, with an
 * UPDATE and a DELETE that touch no row (their executor start runs that check), so a filter that
 * would break the application's writes is refused with the fix before it is ever committed. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "source.h"

/* The table's row filter in the publication as PostgreSQL deparses it ("" : none; NULL: not in
 * it), into *out (caller frees). */
static cv_err filter_now(PGconn *db, const cv_table *t, const char *publication, char **out, int *exists,
                         int *viaroot, cv_pg_fault *f) {
    char oid[16];
    snprintf(oid, sizeof oid, "%u", t->oid);
    const char *p[2] = {publication, oid};
    PGresult *r = PQexecParams(
        db,
        "SELECT (SELECT count(*) FROM pg_publication WHERE pubname = $1), "
        "(SELECT coalesce(pg_get_expr(pr.prqual, pr.prrelid), '') FROM pg_publication_rel pr "
        "JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = $1 AND pr.prrelid = $2::oid), "
        "(SELECT pubviaroot FROM pg_publication WHERE pubname = $1)",
        2, NULL, p, NULL, NULL, 0);
    if (!cv_source_ok(r)) {
        cv_err e = cv_source_failed(db, r, "publication", f);
        PQclear(r);
        return e;
    }
    *exists = atoi(PQgetvalue(r, 0, 0));
    *out = PQgetisnull(r, 0, 1) ? NULL : strdup(PQgetvalue(r, 0, 1));
    *viaroot = PQgetvalue(r, 0, 2)[0] == 't';
    PQclear(r);
    return CV_OK;
}

/* The statements that put the table (with its filter) in the publication. */
static void statements(const cv_table *t, const char *pub, int exists, const char *had, int viaroot,
                       cv_buf *sql) {
    int partitioned = t->relkind == 'p';
    cv_buf w = {0};
    if (t->where) cv_buf_printf(&w, " WHERE (%s)", t->where);
    if (!exists) {
        cv_buf_printf(sql, "CREATE PUBLICATION %s FOR TABLE %s%s%s;", pub, t->qualified, w.p ? w.p : "",
                      partitioned ? " WITH (publish_via_partition_root = true)" : "");
    } else {
        if (had && (t->where || *had)) /* a filter to set, or one to remove: the table again */
            cv_buf_printf(sql, "ALTER PUBLICATION %s DROP TABLE %s; ", pub, t->qualified);
        if (!had || t->where || *had)
            cv_buf_printf(sql, "ALTER PUBLICATION %s ADD TABLE %s%s; ", pub, t->qualified, w.p ? w.p : "");
        /* changes to partitions must arrive as the partitioned table's */
        if (partitioned && !viaroot)
            cv_buf_printf(sql, "ALTER PUBLICATION %s SET (publish_via_partition_root = true);", pub);
    }
    cv_buf_free(&w);
}

cv_err cv_publication_add(PGconn *db, const cv_table *t, const char *publication, int *added,
                          cv_pg_fault *f) {
    if (added) *added = 0;
    char *had = NULL;
    int exists = 0, viaroot = 0;
    cv_err e = filter_now(db, t, publication, &had, &exists, &viaroot, f);
    if (e) return e;
    cv_buf sql = {0}, pub = {0};
    cv_pg_ident(&pub, publication);
    statements(t, pub.p, exists, had, viaroot, &sql);
    if (!sql.p) {
        free(had), free(pub.p);
        return CV_OK; /* in it already, as it should be */
    }
    PGresult *r;
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
            free(had), free(sql.p), free(pub.p);
            return f->retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
        }
    }
    cv_buf tx = {0};
    cv_buf_printf(&tx, "BEGIN; %s COMMIT;", sql.p);
    r = PQexec(db, tx.p);
    e = cv_source_ok(r) ? CV_OK : cv_source_failed(db, r, "create_publication", f);
    PQclear(r);
    if (e) PQclear(PQexec(db, "ROLLBACK"));
    char *now = NULL;
    if (!e) e = filter_now(db, t, publication, &now, &exists, &viaroot, f);
    if (!e) {
        /* a table new to the publication, or whose filter changed: its rows are read again */
        int changed = !had || !now || strcmp(had, now) != 0;
        if (added) *added = changed;
        if (changed)
            cv_info("event=publication_ready publication=%s table=%s via_partition_root=%d where=\"%s\"%s",
                    publication, t->qualified, t->relkind == 'p', now ? now : "",
                    had && *had != (now ? *now : 0) ? " note=\"the row filter changed\"" : "");
    }
    free(had), free(now), free(sql.p), free(pub.p), free(tx.p);
    return e;
}
