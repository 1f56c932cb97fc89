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
    int dim;                      /* vector dimension; 0: the store keeps only the stream's state (position,
                                     backfill marks, meta: cdcvec capture's bookkeeping), no vectors */
    const char *model_id;
    const char *stream; /* name of the change stream (the replication slot): keys the state row */
} cv_sink_table;

typedef struct cv_sink_row {
    const char *const *key; /* (nkeys) values in their text form */
    const float *vec;       /* (dim) new embedding, or NULL: payload-only update of an existing row */
    const char *payload;    /* JSON object text: replaces the stored payload, except for... */
    const char *keep;       /* ...the keys named in this JSON array (or NULL), whose stored values stay */
    const uint8_t *hash;    /* 32-byte SHA-256 of the embedded text (with vec) */
} cv_sink_row;

typedef struct cv_sink_dead {
    const char *key;    /* the key as one line of text (common/cv_keytext.h) */
    const char *reason; /* why it could not be applied */
} cv_sink_dead;

/* What the store records about the source table, to notice changes between runs. */
typedef struct cv_sink_meta {
    uint32_t relid;    /* the source table's OID (0: not recorded) */
    char *layout;      /* its columns, as ingest describes them (NULL: not recorded) */
    char *text_source; /* what is embedded: text column attnum or template (NULL: not recorded) */
} cv_sink_meta;

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
 * vectors are computed: begin (truncate when asked), delete keys, put rows (with vectors:
 * upsert; without: payload-only update of existing rows; any number of times; cv_sink_hashes
 * and cv_sink_dead may be called in between and see the transaction), commit (records
 * position). A failed step rolls back. Errors: CV_ERR_TIMEOUT (retriable: connection, conflicts,
 * resources), CV_ERR_FORMAT (the data was refused), CV_ERR_UNSUPPORTED (set-up: privileges,
 * missing objects); cv_sink_last_fault says more. */
cv_err cv_sink_begin(cv_sink *s, int truncate);
cv_err cv_sink_delete(cv_sink *s, const char *const *const *keys, int n);
cv_err cv_sink_put(cv_sink *s, const cv_sink_row *rows, int n, uint64_t position);
/* Records changes that could not be applied (the dead-letter table), in the transaction. */
cv_err cv_sink_dead_put(cv_sink *s, const cv_sink_dead *d, int n, uint64_t position);
cv_err cv_sink_commit(cv_sink *s, uint64_t position);
void cv_sink_rollback(cv_sink *s);

/* The kind ("connection", "privilege", "data", ...) and the fix (or NULL) of the last error. */
void cv_sink_last_fault(const cv_sink *s, const char **kind, const char **fix);

/* The recorded facts about the source table (fields NULL/0 when never recorded; strings
 * owned by the caller), and recording them. */
cv_err cv_sink_meta_get(cv_sink *s, cv_sink_meta *m);
cv_err cv_sink_meta_set(cv_sink *s, const cv_sink_meta *m);
void cv_sink_meta_free(cv_sink_meta *m);
/* The same, before the sink is opened (its table needs what the meta helps to describe):
 * connects, reads, disconnects; empty when nothing is recorded or the store is unreachable
 * (the open that follows reports that). */
void cv_sink_meta_peek(const char *conninfo, const char *stream, cv_sink_meta *m);

/* Backfill bookkeeping: started at position p (done=0), or finished (done=1): then rows
 * stored at a position below p (left by an interrupted earlier backfill) are deleted and the
 * HNSW index is built if missing. */
cv_err cv_sink_backfill_mark(cv_sink *s, uint64_t p, int done);

/* Nearest rows to q by cosine distance; cb gets rank, similarity, key text and payload. */
typedef void (*cv_sink_hit_cb)(void *arg, int rank, double similarity, const char *key, const char *payload);
cv_err cv_sink_search(cv_sink *s, const float *q, int limit, cv_sink_hit_cb cb, void *arg);

#endif
