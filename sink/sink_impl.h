/* sink_impl.h: what the stores behind sink/sink.h share: the table of operations each store
 * fills in (sink.c dispatches through it), the fault every sink remembers, the state database
 * of the stores without transactions (state.c), and the JSON a remote store's point carries
 * (payload.c). Internal to sink/. */
#ifndef CV_SINK_IMPL_H
#define CV_SINK_IMPL_H

#include <jansson.h>
#include <libpq-fe.h>

#include "../common/cv_buf.h"
#include "sink.h"

typedef struct cv_sink_ops {
    const char *name; /* "pgvector", "qdrant", "upstash" */
    cv_err (*open)(const char *url, const cv_sink_table *t, cv_sink **out);
    void (*close)(cv_sink *s);
    cv_err (*state)(cv_sink *s, uint64_t *pos, int *done, uint64_t *bpos);
    cv_err (*hashes)(cv_sink *s, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32]);
    cv_err (*begin)(cv_sink *s, int truncate);
    cv_err (*del)(cv_sink *s, const char *const *const *keys, int n);
    cv_err (*put)(cv_sink *s, const cv_sink_row *rows, int n, uint64_t position);
    cv_err (*dead_put)(cv_sink *s, const cv_sink_dead *d, int n, uint64_t position);
    cv_err (*commit)(cv_sink *s, uint64_t position);
    void (*rollback)(cv_sink *s);
    cv_err (*meta_set)(cv_sink *s, const cv_sink_meta *m);
    cv_err (*backfill_mark)(cv_sink *s, uint64_t p, int done);
    cv_err (*search)(cv_sink *s, const float *q, int limit, const cv_sink_filter *f, cv_sink_hit_cb cb,
                     void *arg);
    /* the state key and database of a remote store (NULL for pgvector): for the meta peek */
    void (*state_key)(const char *url, const cv_sink_table *t, cv_buf *key);
    cv_err (*fetch)(cv_sink *s, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32],
                    char **payload);
    cv_err (*scan)(cv_sink *s, cv_buf *cursor, int limit, cv_sink_key_cb cb, void *arg, int *more);
    /* chunked tables (NULL: the store keeps one vector per row) */
    cv_err (*chunk_hashes)(cv_sink *s, const char *const *key, uint8_t (**hash)[32], int *m);
    cv_err (*chunks_set)(cv_sink *s, const char *const *key, int n, const int *from, const long *off,
                         const long *len, const uint8_t *text_hash);
    cv_err (*count)(cv_sink *s, double *rows); /* cv_sink_count_estimate (NULL: unsupported) */
} cv_sink_ops;

/* Every store's handle starts with this. */
struct cv_sink {
    const cv_sink_ops *ops;
    const char *kind, *fix;  /* the last error's fault (static or cv_sink_intern strings) */
    long requests, retries;  /* HTTP requests sent and retried (remote stores) */
    int batch_rows;          /* cv_sink_batch_rows (0: 512) */
    cv_sink_dead_cb dead_cb; /* cv_sink_on_dead */
    void *dead_arg;
};

extern const cv_sink_ops cv_sink_pgvector_ops, cv_sink_qdrant_ops, cv_sink_upstash_ops;

/* A copy of s that lives as long as the process (fix sentences that name a collection must
 * outlive the sink that built them); the same text gives the same pointer. */
const char *cv_sink_intern(const char *s);
/* Records a fault: kind static, fix copied (cv_sink_intern) or NULL. */
void cv_sink_fault(cv_sink *s, const char *kind, const char *fix);
/* The failed open's fault, for cv_sink_last_fault(NULL). */
void cv_sink_open_failed(const char *kind, const char *fix);

/* ---- the state database of stores without transactions (state.c) ---- */

typedef struct cv_rstate cv_rstate;

/* Opens (creates cdcvec.state and cdcvec.dead_letters when missing) the state kept under key
 * in conninfo; conninfo NULL: a state that keeps nothing. Errors set s's fault. */
cv_err cv_rstate_open(cv_sink *s, const char *conninfo, const char *key, cv_rstate **out);
void cv_rstate_close(cv_rstate *r);
cv_err cv_rstate_get(cv_sink *s, cv_rstate *r, uint64_t *pos, int *done, uint64_t *bpos);
/* Buffers a dead letter until cv_rstate_commit (copies the strings). */
void cv_rstate_dead_add(cv_rstate *r, const char *key, const char *reason);
/* Forgets the buffered dead letters (begin, rollback). */
void cv_rstate_reset(cv_rstate *r);
/* Records the buffered dead letters and the position (never moving back), in one transaction. */
cv_err cv_rstate_commit(cv_sink *s, cv_rstate *r, uint64_t pos);
cv_err cv_rstate_meta_set(cv_sink *s, cv_rstate *r, const cv_sink_meta *m);
cv_err cv_rstate_backfill(cv_sink *s, cv_rstate *r, uint64_t p, int done);
/* The meta's statements, shared by pgvector.c and state.c: the peek reads ($1 the stream)
 * relid, layout, text_source, model, model_revision, also from a cdcvec.state of an earlier
 * version without the model columns (before the open adds them); the set writes ($1..$6 stream,
 * relid, layout, text_source, model, model_revision), a NULL model keeping the recorded one. */
#define CV_SINK_META_PEEK                                                                                    \
    "SELECT relid, layout, text_source, to_jsonb(s)->>'model', to_jsonb(s)->>'model_revision' "              \
    "FROM cdcvec.state s WHERE stream = $1 AND to_regclass('cdcvec.state') IS NOT NULL"
#define CV_SINK_META_SET                                                                                     \
    "INSERT INTO cdcvec.state (stream, lsn, relid, layout, text_source, model, model_revision) VALUES "      \
    "($1, '0/0', $2::oid, $3, $4, $5, $6) ON CONFLICT (stream) DO UPDATE SET relid = EXCLUDED.relid, "       \
    "layout = EXCLUDED.layout, text_source = EXCLUDED.text_source, model = COALESCE(EXCLUDED.model, "        \
    "cdcvec.state.model), model_revision = COALESCE(EXCLUDED.model_revision, cdcvec.state.model_revision)"
/* Fills m from a row of CV_SINK_META_PEEK (nothing when res has no row). */
void cv_sink_meta_row(PGresult *res, cv_sink_meta *m);
/* The CREATE statements of the state tables (shared with pgvector.c), after CV_DDL_LOCK. */
extern const char cv_rstate_ddl[];
/* First statement of every string of CREATE ... IF NOT EXISTS: a simple query of several
 * statements is one transaction, so processes starting at once (docker compose) create the
 * schema, extension and tables one after the other instead of failing on the catalogs' unique
 * indexes (pg_namespace_nspname_index). */
#define CV_DDL_LOCK "SELECT pg_advisory_xact_lock(hashtextextended('cdcvec ddl', 0)); "

/* ---- a remote point's JSON (payload.c) ---- */

/* The key as one line of text (pg/cv_keytext.h); caller frees. */
char *cv_sink_key_text(const cv_sink_table *t, const char *const *key);
/* The payload a remote store keeps for a row: the change's payload, its keys (integers as
 * numbers), the stored values of the keys named in keep (from stored, may be NULL), and the
 * object "cdcvec": {table, key, text_hash (hex; from the row, else the stored one), model,
 * model_revision, text_source (both left out when NULL), lsn, updated_at}. NULL when the change's payload is
 * not a JSON object. Caller decrefs. */
json_t *cv_sink_point_payload(const cv_sink_table *t, const cv_sink_row *r, const char *keytext,
                              json_t *stored, uint64_t position, const char *now_iso);
/* The text a remote store receives for a point's payload: numbers a double holds exactly as
 * numbers, others (beyond int64 and a double's range or digits) as strings of their exact text
 * (common/cv_jnum.h, CV_JNUM_DOUBLE): Qdrant and Upstash keep JSON numbers as doubles. NULL
 * when it cannot be written. Caller frees. */
char *cv_sink_point_text(const json_t *p);
/* Why a row whose payload cannot be read is a dead letter (the rest of its batch goes on). */
#define CV_SINK_BAD_PAYLOAD                                                                                  \
    "its payload is not a JSON object that can be read (invalid JSON or UTF-8): the row is left out of the " \
    "store; correct the row at the source"
/* A row the store cannot take, found by the store itself: logged, handed to cv_sink_on_dead's
 * callback, and buffered in st for the commit (cv_rstate_dead_add). */
void cv_sink_dead_note(cv_sink *s, cv_rstate *st, const char *key, const char *reason);
/* The stored text hash (payload.cdcvec.text_hash): 1 and hash filled when present. */
int cv_sink_stored_hash(json_t *payload, uint8_t hash[32]);
/* The payload without the "cdcvec" object and the key columns (as pgvector's payload), as
 * text, for search results; caller frees. */
char *cv_sink_public_payload(const cv_sink_table *t, json_t *payload);
/* Qdrant's point id of a key: a number (one integer key column, value >= 0, fitting uint64) or
 * a UUIDv5; as JSON into js and as text into str (either may be NULL). qdrant.c. */
void cv_qdrant_point_id(const cv_sink_table *t, const char *const *key, cv_buf *js, cv_buf *str);
/* The same for chunk `chunk` of the key (chunk 0: the point id; chunks_remote.h). qdrant.c. */
void cv_qdrant_chunk_id(const cv_sink_table *t, const char *const *key, int chunk, cv_buf *js, cv_buf *str);
/* Now as 2026-01-02T03:04:05.678Z. */
void cv_sink_now_iso(char out[48]);
/* f with 9 significant digits (reads back as the same float); out: 20 bytes; the length. */
int cv_sink_float_text(float f, char *out);
/* Appends a vector as a JSON array (cv_sink_float_text: round-trips every float). */
void cv_sink_vec_json(cv_buf *b, const float *v, int dim);
/* A search filter as Qdrant conditions (each ",{...}", to append to a "must" array), the payload
 * index type a condition's field needs there, and as an Upstash filter string (payload.c). */
void cv_sink_filter_qdrant(const cv_sink_filter *f, cv_buf *b);
const char *cv_sink_filter_qdrant_schema(const cv_sink_cond *c);
void cv_sink_filter_upstash(const cv_sink_filter *f, cv_buf *b);
/* Whether the key is one integer column (smallint, integer, bigint). */
int cv_sink_int_key(const cv_sink_table *t);

#endif
