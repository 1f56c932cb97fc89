/* source.h: what ingest knows about the source table, and the rows it turns into changes. */
#ifndef CV_SOURCE_H
#define CV_SOURCE_H

#include <libpq-fe.h>
#include <stdint.h>

#include "../common/cv_err.h"

typedef struct cv_table {
    char *schema, *name;
    char *qualified; /* "schema"."name" */
    uint32_t oid;
    int ncols;
    char **col;       /* (ncols) column names, attnum order */
    char **coltype;   /* (ncols) format_type() */
    uint32_t *typoid; /* (ncols) */
    int nkeys;
    int *key;                        /* (nkeys) column index of each primary key column, in key order */
    const char **keyname, **keytype; /* (nkeys) views into col / coltype */
    int text_col;                    /* embedded column, or -1 with a template */
    int nseg;                        /* template: literal and column segments */
    char **seg_text;                 /* (nseg) literal text or NULL */
    int *seg_col;                    /* (nseg) column index or -1 */
} cv_table;

/* A row's values by column index: kind 'n' NULL, 'u' unchanged TOASTed (unknown), 't'. */
typedef struct cv_rowval {
    char kind;
    const char *val;
    size_t len;
} cv_rowval;

enum { CV_TEXT_KNOWN = 0, CV_TEXT_NULL, CV_TEXT_UNKNOWN };

typedef struct cv_change {
    int del;    /* 1: delete by key */
    char **key; /* (nkeys) owned, NULL-terminated */
    char *text; /* CV_TEXT_KNOWN: the text to embed */
    int text_state;
    char *payload;      /* JSON object of the other columns (unchanged TOASTed ones left out) */
    double commit_time; /* monotonic seconds when its commit was seen, for latency */
} cv_change;

/* Describes schema.table on db; checks the primary key, the text column or template.
 * Errors are logged with the fix. */
cv_err cv_table_describe(PGconn *db, const char *qualified, const char *text_column, const char *template_,
                         cv_table *t);
void cv_table_free(cv_table *t);

/* Builds a change from row values (by column index). del: key only. */
cv_err cv_change_from_row(const cv_table *t, const cv_rowval *v, int del, cv_change *c);
void cv_change_free(cv_change *c);

/* Reads the current text of the rows (by key) from the source: for texts the stream could
 * not give (unchanged TOASTed values). Sets text/text_state of each change. */
cv_err cv_fetch_texts(PGconn *db, const cv_table *t, cv_change **chg, int n);

/* One page of rows in key order after `after` (NULL: from the start), within whatever
 * transaction db has open. Returns the number of changes written into out (<= limit). */
cv_err cv_read_page(PGconn *db, const cv_table *t, char **after, int limit, cv_change *out, int *n);

/* Checks what the server must provide (wal_level=logical, REPLICATION privilege), and
 * creates the publication for the table if missing. */
cv_err cv_source_prepare(PGconn *db, const cv_table *t, const char *publication);

#endif
