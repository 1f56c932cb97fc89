/* sink.h: vector stores behind one interface. Today: pgvector (libpq). A sink stores, per
 * source row key, the embedding, a JSON payload, the hash of the embedded text, the model
 * id and the source position (an opaque, increasing 64-bit number: ingest passes LSNs), and
 * records the highest applied position in the same transaction as the rows it covers. */
#ifndef CV_SINK_H
#define CV_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "../common/cv_err.h"

typedef struct cv_sink_table {
    const char *schema, *table; /* the source table mirrored */
    int nkeys;
    const char *const *key_names; /* (nkeys) primary key columns */
    const char *const *key_types; /* (nkeys) SQL types, as format_type() writes them */
    int dim;                      /* vector dimension */
    const char *model_id;
    const char *stream; /* name of the change stream (the replication slot): keys the state row */
} cv_sink_table;

typedef struct cv_sink_row {
    const char *const *key; /* (nkeys) values in their text form */
    const float *vec;       /* (dim) new embedding, or NULL: payload-only update of an existing row */
    const char *payload;    /* JSON object text; merged over the stored payload */
    const uint8_t *hash;    /* 32-byte SHA-256 of the embedded text (with vec) */
} cv_sink_row;

typedef struct cv_sink_batch {
    int truncate; /* clear the table first */
    const cv_sink_row *del;
    int ndel;
    const cv_sink_row *up;
    int nup;
    uint64_t position; /* recorded as applied, atomically with the rows */
} cv_sink_batch;

typedef struct cv_sink cv_sink;

/* Connects to conninfo and creates what is missing (extension, schema cdcvec, the table, the
 * state table, and the HNSW cosine index once the initial backfill is done). *out owned by
 * the caller. */
cv_err cv_sink_open(const char *conninfo, const cv_sink_table *t, cv_sink **out);
void cv_sink_close(cv_sink *s);

/* The position recorded by the last apply (0 if none) and whether the initial backfill
 * finished, and at which position it was taken. */
cv_err cv_sink_state(cv_sink *s, uint64_t *position, int *backfill_done, uint64_t *backfill_position);

/* For n keys (keys[i] is an array of nkeys text values), the stored text hashes: found[i]
 * is set to 1 and hash[i] filled when the row exists. */
cv_err cv_sink_hashes(cv_sink *s, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32]);

/* Applies a batch in one transaction, in steps, so that rows can be written while later
 * vectors are computed: begin (truncate, deletes and b's payload-only rows, those with vec NULL), put rows
 * with vectors (any number of times), commit (records position). A failed step rolls back. */
cv_err cv_sink_begin(cv_sink *s, const cv_sink_batch *b);
cv_err cv_sink_put(cv_sink *s, const cv_sink_row *rows, int n, uint64_t position);
cv_err cv_sink_commit(cv_sink *s, uint64_t position);
void cv_sink_rollback(cv_sink *s);

/* Backfill bookkeeping: started at position p (done=0), or finished (done=1): then rows
 * stored at a position below p (left by an interrupted earlier backfill) are deleted and the
 * HNSW index is built if missing. */
cv_err cv_sink_backfill_mark(cv_sink *s, uint64_t p, int done);

/* Nearest rows to q by cosine distance; cb gets rank, similarity, key text and payload. */
typedef void (*cv_sink_hit_cb)(void *arg, int rank, double similarity, const char *key, const char *payload);
cv_err cv_sink_search(cv_sink *s, const float *q, int limit, cv_sink_hit_cb cb, void *arg);

/* libpq notice processor that logs server notices at debug level. */
void cv_pg_notice(void *arg, const char *message);

/* SQL-quoted identifier "a""b" into out. */
void cv_sql_ident(const char *name, char *out, size_t len);

#endif
