/* source.h: what ingest knows about the source table, and the rows it turns into changes. */
#ifndef CV_SOURCE_H
#define CV_SOURCE_H

#include <libpq-fe.h>
#include <stdint.h>

#include "../apply/apply.h"
#include "../common/cv_err.h"
#include "../pg/cv_pg.h"
#include "pgvalue.h"

struct cv_rowval;

typedef struct cv_table {
    char *schema, *name;
    char *qualified; /* "schema"."name" */
    uint32_t oid;
    char relkind;     /* 'r' table, 'p' partitioned */
    char replident;   /* pg_class.relreplident: d default, n nothing, f full, i index */
    char persistence; /* p permanent, u unlogged, t temporary */
    int ncols;
    char **col;       /* (ncols) column names, attnum order (generated columns left out) */
    char **coltype;   /* (ncols) format_type() */
    uint32_t *typoid; /* (ncols) */
    int *attnum;      /* (ncols) */
    cv_pgtype *types; /* (ncols) how each column's text becomes JSON */
    int nkeys;
    int *key;                        /* (nkeys) column index of each primary key column, in key order */
    const char **keyname, **keytype; /* (nkeys) views into col / coltype */
    int key_exact;                   /* keys compare exactly by their text form */
    int text_col;                    /* embedded column, or -1 with a template */
    char *text_alias;                /* an earlier name of the embedded column (followed rename), or NULL */
    int nseg;                        /* template: literal and column segments */
    char **seg_text;                 /* (nseg) literal text or NULL */
    int *seg_col;                    /* (nseg) column index or -1 */
    char *layout;                    /* "attnum:name:typoid,..." of every column: a schema change alters it */
    char *text_source;               /* "column <attnum> <name>" or "template <text>": what is embedded */
    char *where;      /* the pipeline's row filter (a PostgreSQL 15 publication WHERE), or NULL: every row */
    char *pubcols;    /* the pipeline's column list (columns:, comma-joined, table order): only these
                         are published and described (col...); NULL: every column */
    char *columns_at; /* where the file writes it ("FILE:LINE:COL: tables[N].columns"), or NULL */
    /* called by cv_read_page with each row's values and its change (capture --format quix) */
    void (*row_hook)(void *arg, const struct cv_rowval *v, struct cv_change *c);
    void *row_hook_arg;
} cv_table;

/* A row's values by column index: kind 'n' NULL, 'u' unknown (an unchanged TOASTed value, or a
 * column the row image does not have), 't' text. */
typedef struct cv_rowval {
    char kind;
    const char *val;
    size_t len;
} cv_rowval;

/* Describes schema.table on db: columns, their types, the primary key, the text column or
 * template (text_column NULL and no template: no text, for searches). recorded_text_source:
 * what an earlier run embedded ("column <attnum> <name>"), to follow a rename (NULL: none). Errors are logged
 * with the fix; *fault says whether it is permanent. */
cv_err cv_table_describe(PGconn *db, const char *qualified, const char *text_column, const char *template_,
                         const char *recorded_text_source, cv_table *t, cv_pg_fault *fault);
void cv_table_free(cv_table *t);

/* columns.c: a pipeline table's column list (columns:, comma-joined; NULL: none), after
 * cv_table_describe: every name must be a published column of the table, and the primary key,
 * the text column and the template's columns among them (else refused with the fix, naming at,
 * the file's place); then t describes only those columns (the backfill reads them, changes carry
 * them, the payload holds them; t->layout stays the whole table's) and t->pubcols lists them for
 * the publication (publication.c). */
cv_err cv_table_columns(cv_table *t, const char *columns, const char *at, cv_pg_fault *fault);

/* The table's OID and layout now (as cv_table's), for noticing a schema change or a table
 * dropped and recreated; *oid 0 when the table is gone. layout owned by the caller. */
cv_err cv_table_probe(PGconn *db, const cv_table *t, uint32_t *oid, char **layout, cv_pg_fault *fault);

/* Builds a change from row values (by column index). del: key only. A value that cannot be
 * converted makes the change a failed one (c->fail), never a silent wrong payload. */
cv_err cv_change_from_row(const cv_table *t, const cv_rowval *v, int del, cv_change *c);

/* Reads the current text of the rows (by key) from the source: for texts the stream could
 * not give (unchanged TOASTed values). Sets text/text_state of each change. */
cv_err cv_fetch_texts(PGconn *db, const cv_table *t, cv_change **chg, int n, cv_pg_fault *fault);

/* The rows of keys[0..n) (each nkeys values, text form) as they are now, into out[0..n) (owned
 * by the caller): a row, or a delete of the key when the source no longer has it. */
cv_err cv_read_keys(PGconn *db, const cv_table *t, char **const *keys, int n, cv_change *out,
                    cv_pg_fault *fault);

/* One page of rows in key order after `after` (NULL: from the start), within whatever
 * transaction db has open. Returns the number of changes written into out (<= limit), each
 * owned by the caller; t->row_hook is called with each. */
cv_err cv_read_page(PGconn *db, const cv_table *t, char **after, int limit, cv_change *out, int *n,
                    cv_pg_fault *fault);

/* cv_read_page in two halves, so that the server reads the next page while the caller works:
 * _send sends the page's statement (after: copied, the caller keeps it) and returns; until
 * _recv (or _discard) nothing else may be sent on db. _recv waits for the rows and converts
 * them as cv_read_page does. _discard drops a statement sent and not received (after an error
 * elsewhere), leaving db free; it does nothing when none is in flight. */
cv_err cv_read_page_send(PGconn *db, const cv_table *t, char **after, int limit, cv_pg_fault *fault);
cv_err cv_read_page_recv(PGconn *db, const cv_table *t, cv_change *out, int *n, cv_pg_fault *fault);
void cv_read_page_discard(PGconn *db);

/* Checks what the server and the table must provide (wal_level=logical, REPLICATION, a
 * logged table, a replica identity that carries the primary key) and creates or completes the
 * publication for the table (partitioned tables through publish_via_partition_root). *added
 * (may be NULL): 1 when this call put the table in the publication (it was not there). */
cv_err cv_source_prepare(PGconn *db, const cv_table *t, const char *publication, int *added,
                         cv_pg_fault *fault);

/* A statement's result is good (tuples or command OK). */
int cv_source_ok(PGresult *r);
/* Logs a failed statement at step with its class and fix (f: may be NULL); CV_ERR_TIMEOUT when
 * retriable, else CV_ERR_UNSUPPORTED. */
cv_err cv_source_failed(PGconn *db, PGresult *r, const char *step, cv_pg_fault *f);

/* publication.c: the table into the publication (created if missing), with its row filter
 * (t->where) when it has one; the rest as cv_source_prepare says. A row filter is tried first
 * in a transaction rolled back: PostgreSQL refuses a table's UPDATE and DELETE once a filter
 * names columns outside its replica identity, and that would stop the application's writes:
 * such a filter is refused with the fix (REPLICA IDENTITY FULL, or a filter on the key).
 * *added is also 1 when the table's filter changed (its rows must be read again). */
cv_err cv_publication_add(PGconn *db, const cv_table *t, const char *publication, int *added, cv_pg_fault *f);

#endif
