/* pgvalue_probe.c: for every row and column of a table, cv_pgvalue_json() of `col::text` must
 * equal the server's own `to_jsonb(col)::text`, byte for byte, and a column's JSON type (and its
 * array elements' type) must not depend on the value. The input is the output function's
 * text (what pgoutput sends and a text-format SELECT of the bare column returns); col::text is
 * checked too, and where it differs from that text and gives another JSON, that is reported as
 * KNOWN (bool::text is "true" and is handled; char(n)::text loses the padding, inet::text adds
 * the /32: a backfill must select the bare column). Connects with the session settings
 * cdcvec forces. Prints each mismatch with column, input and both outputs; a mismatch on a
 * documented known difference (pgvalue.h: types with a cast to json) is printed as KNOWN.
 *   usage: pgvalue_probe CONNINFO TABLE      exit 0: no mismatch other than KNOWN ones */
#define _POSIX_C_SOURCE 200809L
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../ingest/pgvalue.h"

static const char SESSION[] = "-c DateStyle=ISO,MDY -c TimeZone=UTC -c IntervalStyle=postgres -c "
                              "extra_float_digits=1 -c bytea_output=hex";

enum { J_STRING = 1, J_NUMBER = 2, J_BOOL = 4, J_OBJECT = 8, J_ARRAY = 16 };

static int jtype(char c) {
    return c == '"'               ? J_STRING
           : c == '{'             ? J_OBJECT
           : c == '['             ? J_ARRAY
           : c == 't' || c == 'f' ? J_BOOL
                                  : J_NUMBER;
}

static int is_nan(const char *v, size_t n) {
    return (n == 5 && !memcmp(v, "\"NaN\"", 5)) || (n == 10 && !memcmp(v, "\"Infinity\"", 10)) ||
           (n == 11 && !memcmp(v, "\"-Infinity\"", 11));
}

/* Skips the (valid) JSON value at p; adds to *types the JSON types of the non-null elements of
 * arrays, at any depth (not inside objects): what a column's array elements are. NaN and
 * Infinity strings count as numbers where nan_num. */
static const char *scan(const char *p, int *types, int nan_num) {
    const char *v = p;
    if (*p == '[') {
        for (p++; *p != ']';)
            p = *p == ',' || *p == ' ' ? p + 1 : scan(p, types, nan_num);
        return p + 1;
    }
    if (*p == '{') { /* a composite element: skip it whole */
        int d = 0;
        do {
            if (*p == '"')
                for (p++; *p != '"'; p++)
                    p += *p == '\\';
            d += *p == '{' || *p == '[' ? 1 : *p == '}' || *p == ']' ? -1 : 0;
        } while (*p++ && d);
    } else if (*p == '"') {
        for (p++; *p != '"'; p++)
            p += *p == '\\';
        p++;
    } else {
        while (*p && *p != ',' && *p != ']')
            p++;
    }
    if (strncmp(v, "null", 4)) *types |= nan_num && is_nan(v, (size_t)(p - v)) ? J_NUMBER : jtype(*v);
    return p;
}

static int is_numeric_type(uint32_t oid) {
    return oid == 20 || oid == 21 || oid == 23 || oid == 700 || oid == 701 || oid == 1700;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: pgvalue_probe CONNINFO TABLE\n");
        return 2;
    }
    const char *kw[] = {"dbname", "options", NULL}, *vals[] = {argv[1], SESSION, NULL};
    PGconn *db = PQconnectdbParams(kw, vals, 1);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "connect: %s", PQerrorMessage(db));
        return 2;
    }
    const char *tab = argv[2];
    PGresult *cols =
        PQexecParams(db,
                     "SELECT attname, atttypid, format_type(atttypid, atttypmod) FROM pg_attribute"
                     " WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                     1, NULL, &tab, NULL, NULL, 0);
    int nc = PQntuples(cols);
    if (PQresultStatus(cols) != PGRES_TUPLES_OK || nc == 0) {
        fprintf(stderr, "columns of %s: %s", tab, PQerrorMessage(db));
        return 2;
    }
    uint32_t *oids = calloc((size_t)nc, sizeof *oids);
    cv_pgtype *types = calloc((size_t)nc, sizeof *types);
    cv_buf sql = {0};
    cv_buf_puts(&sql, "SELECT ");
    for (int i = 0; i < nc; i++) {
        oids[i] = (uint32_t)strtoul(PQgetvalue(cols, i, 1), NULL, 10);
        char *id = PQescapeIdentifier(db, PQgetvalue(cols, i, 0), strlen(PQgetvalue(cols, i, 0)));
        cv_buf_printf(&sql, "%s%s, to_jsonb(%s)::text, %s::text", i ? ", " : "", id, id, id);
        PQfreemem(id);
    }
    cv_buf_printf(&sql, " FROM %s ORDER BY 1", tab);
    if (cv_pgtypes_load(db, oids, nc, types) != CV_OK) {
        fprintf(stderr, "cv_pgtypes_load failed\n");
        return 2;
    }
    PGresult *r = PQexec(db, sql.p);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "select: %s", PQerrorMessage(db));
        return 2;
    }
    int bad = 0, known = 0, checked = 0;
    for (int c = 0; c < nc; c++) {
        const char *name = PQgetvalue(cols, c, 0), *tname = PQgetvalue(cols, c, 2);
        const cv_pgtype *t = &types[c];
        int free_type = t->base == 114 || t->base == 3802 || t->elem == 114 || t->elem == 3802;
        int top = 0, leaves = 0;
        for (int row = 0; row < PQntuples(r); row++) {
            if (PQgetisnull(r, row, 3 * c)) continue; /* NULLs are the caller's */
            const char *in = PQgetvalue(r, row, 3 * c), *want = PQgetvalue(r, row, 3 * c + 1);
            cv_buf got = {0};
            cv_err e = cv_pgvalue_json(&got, t, in, (size_t)PQgetlength(r, row, 3 * c));
            checked++;
            if (e || strcmp(got.p ? got.p : "", want) != 0) {
                int k = t->jsoncast && !e;
                printf("%s column=%s type=%s input=%s\n  got:  %s\n  want: %s\n", k ? "KNOWN" : "MISMATCH",
                       name, tname, in, e ? cv_strerror(e) : got.p, want);
                k ? known++ : bad++;
            } else if (!free_type) { /* the JSON type depends on the column type only */
                int nan = is_numeric_type(t->base) && got.p[0] == '"';
                top |= nan ? J_NUMBER : jtype(got.p[0]);
                if (t->elem && got.p[0] == '[') scan(got.p, &leaves, is_numeric_type(t->elem));
            }
            cv_buf_free(&got);
            /* col::text is not always the output function's text (pgoutput's): when it differs,
             * is the JSON still right? (bool: yes; char(n), inet: no, a known difference) */
            const char *cast = PQgetvalue(r, row, 3 * c + 2);
            if (!strcmp(in, cast)) continue;
            e = cv_pgvalue_json(&got, t, cast, strlen(cast));
            if (e || strcmp(got.p, want) != 0) {
                printf("KNOWN column=%s type=%s: col::text is '%s' where the output function writes '%s'\n"
                       "  got:  %s\n  want: %s\n",
                       name, tname, cast, in, e ? cv_strerror(e) : got.p, want);
                known++;
            }
            cv_buf_free(&got);
        }
        if ((top & (top - 1)) || (leaves & (leaves - 1))) {
            printf("TYPE_VARIES column=%s type=%s top=%#x elements=%#x\n", name, tname, top, leaves);
            bad++;
        }
    }
    printf("%d values in %d columns x %d rows: %d mismatches, %d known differences\n", checked, nc,
           PQntuples(r), bad, known);
    PQclear(r);
    PQclear(cols);
    cv_pgtypes_free(types, nc);
    free(types);
    free(oids);
    cv_buf_free(&sql);
    PQfinish(db);
    return bad ? 1 : 0;
}
