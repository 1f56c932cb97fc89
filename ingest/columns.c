/* columns.c: a pipeline table's column list (columns:, source.h cv_table_columns). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "source.h"

static char columns_fix[600]; /* the refusal's fix (the fault keeps a pointer to it) */

/* Whether name is in the comma-joined list. */
static int listed(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        p = e ? e + 1 : p + len;
    }
    return 0;
}

static cv_err refused(const cv_table *t, const char *at, const char *columns, const char *error,
                      const char *fix, cv_pg_fault *f) {
    cv_error("event=columns_refused table=%s at=\"%s\" columns=\"%s\" error=\"%s\" fix=\"%s\"", t->qualified,
             at ? at : "columns", columns, error, fix);
    snprintf(columns_fix, sizeof columns_fix, "%s (%s)", fix, at ? at : "columns:");
    if (f) *f = (cv_pg_fault){0, "config", columns_fix};
    return CV_ERR_UNSUPPORTED;
}

cv_err cv_table_columns(cv_table *t, const char *columns, const char *at, cv_pg_fault *f) {
    if (!columns || !*columns) return CV_OK;
    cv_buf error = {0}, fix = {0}, all = {0};
    for (int i = 0; i < t->ncols; i++)
        cv_buf_printf(&all, "%s%s", i ? ", " : "", t->col[i]);
    /* every name a column of the table (generated ones are not: PostgreSQL 15 publishes none) */
    for (const char *p = columns; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        int found = 0;
        for (int i = 0; i < t->ncols && !found; i++)
            found = strlen(t->col[i]) == len && !strncmp(t->col[i], p, len);
        if (!found && !error.len) {
            cv_buf_printf(&error, "%s has no published column %.*s (a generated column is never published)",
                          t->qualified, (int)len, p);
            cv_buf_printf(&fix, "write columns: with the table's columns only: %s", all.p ? all.p : "");
        }
        p = e ? e + 1 : p + len;
    }
    /* the key, the embedded column and the template's columns must travel with every change */
    cv_buf miss = {0};
    for (int k = 0; k < t->nkeys; k++)
        if (!listed(columns, t->keyname[k]))
            cv_buf_printf(&miss, "%s%s", miss.len ? ", " : "", t->keyname[k]);
    int keys_missing = miss.len > 0;
    if (t->text_col >= 0 && !listed(columns, t->col[t->text_col]))
        cv_buf_printf(&miss, "%s%s", miss.len ? ", " : "", t->col[t->text_col]);
    for (int s = 0; s < t->nseg; s++) {
        int c = t->seg_col[s];
        if (c < 0 || listed(columns, t->col[c])) continue;
        cv_buf w = {0};
        cv_buf_printf(&w, ", %s,", t->col[c]);
        cv_buf m2 = {0};
        cv_buf_printf(&m2, ", %s,", miss.p ? miss.p : "");
        if (!strstr(m2.p, w.p)) cv_buf_printf(&miss, "%s%s", miss.len ? ", " : "", t->col[c]);
        free(w.p), free(m2.p);
    }
    if (miss.len && !error.len) {
        cv_buf_printf(&error, "columns: lacks %s: %s", miss.p,
                      keys_missing
                          ? "the primary key and the embedded text must be published with every change"
                          : "the embedded text (its column, or the template's columns) must be published");
        cv_buf_printf(&fix, "add %s to columns: (columns: [", miss.p);
        for (const char *q = columns; *q; q++) /* the list as the file writes it */
            cv_buf_put(&fix, *q == ',' ? ", " : q, *q == ',' ? 2 : 1);
        cv_buf_printf(&fix, ", %s])", miss.p);
    }
    free(miss.p);
    if (error.len) {
        cv_err e = refused(t, at, columns, error.p, fix.p, f);
        free(error.p), free(fix.p), free(all.p);
        return e;
    }
    free(error.p), free(fix.p), free(all.p);
    /* only the listed columns are read, kept and published, in the table's order (the layout
     * stays the whole table's: a schema change is noticed as before) */
    int *map = malloc(sizeof(int) * (size_t)(t->ncols + 1)), n = 0;
    CV_ASSERT(map);
    cv_buf pub = {0};
    for (int i = 0; i < t->ncols; i++) {
        if (!listed(columns, t->col[i])) {
            map[i] = -1;
            free(t->col[i]), free(t->coltype[i]);
            cv_pgtypes_free(&t->types[i], 1);
            continue;
        }
        map[i] = n;
        cv_buf_printf(&pub, "%s%s", n ? "," : "", t->col[i]);
        t->col[n] = t->col[i], t->coltype[n] = t->coltype[i], t->typoid[n] = t->typoid[i];
        t->attnum[n] = t->attnum[i], t->types[n] = t->types[i];
        n++;
    }
    for (int i = n; i < t->ncols; i++)
        t->col[i] = t->coltype[i] = NULL;
    t->ncols = n;
    for (int k = 0; k < t->nkeys; k++) {
        t->key[k] = map[t->key[k]];
        t->keyname[k] = t->col[t->key[k]], t->keytype[k] = t->coltype[t->key[k]];
    }
    if (t->text_col >= 0) t->text_col = map[t->text_col];
    for (int s = 0; s < t->nseg; s++)
        if (t->seg_col[s] >= 0) t->seg_col[s] = map[t->seg_col[s]];
    free(map);
    t->pubcols = pub.p;
    t->columns_at = at ? strdup(at) : NULL;
    return CV_OK;
}
