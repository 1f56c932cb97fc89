/* sink.h: vector stores behind one interface: pgvector (libpq, sink/pgvector.c), Qdrant and
 * Upstash Vector (libcurl + jansson, sink/qdrant.c, sink/upstash.c). cv_sink_open picks the
 * store from the sink string: `qdrant://host:port/COLLECTION` (`qdrants://` for TLS),
 * `upstash://` (URL and token from UPSTASH_VECTOR_REST_URL / UPSTASH_VECTOR_REST_TOKEN, or
 * their *_FILE variants), anything else is a PostgreSQL conninfo or URI: pgvector. A sink
 * stores, per source row key, the embedding, a JSON payload, the hash of the embedded text,
 * the model stamp (model id, weights' SHA-256, text source) and the source position (an opaque, increasing
 * 64-bit number: ingest passes LSNs), and records the highest applied position.
 *
 * Where the position lives. pgvector records it in the same transaction as the rows. Qdrant
 * and Upstash have no transactions: their writes are idempotent (upsert by point id, delete by
 * id), cv_sink_commit returns only after the store acknowledged every write of the batch, and
 * then records the position, the meta, backfill marks and dead letters in the state database
 * (cv_sink_table.state_conninfo: tables cdcvec.state and cdcvec.dead_letters, as pgvector
 * keeps them, keyed by stream and store). A crash between the store's acknowledgement and the
 * state write replays the batch, which converges. Without a state database (state_conninfo
 * NULL: a Kafka sink stage that keeps its own offsets) cv_sink_state reads 0, the meta is not
 * kept, and dead letters are logged at warn level with their key and reason
 * (event=dead_letter) and handed to the caller's cv_sink_on_dead callback, for it to route. The text hash per
 * key is kept in the store itself (payload / metadata `cdcvec.text_hash`), so it survives whatever cdcvec
 * loses. Secrets (QDRANT_API_KEY, UPSTASH_VECTOR_REST_TOKEN) come from the environment or files, never from
 * the sink string; one holding userinfo is refused. */
#ifndef CV_SINK_H
#define CV_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "../common/cv_buf.h"
#include "../common/cv_err.h"

typedef struct cv_sink_table {
    const char *schema, *table; /* the source table mirrored */
    int nkeys;
    const char *const *key_names; /* (nkeys) primary key columns */
    const char *const *key_types; /* (nkeys) SQL types, as format_type() writes them */
    int dim;                      /* vector dimension; 0: the store keeps only the stream's state (position,
                                     backfill marks, meta: cdcvec capture's bookkeeping), no vectors */
    /* the stamp every row or point carries (docs/CONFIG.md, "The model stamp"): the model's id,
     * the SHA-256 of its weights (NULL: unknown, as with --embed) and what is embedded (the
     * table's text source: "column <attnum> <name>" or "template <text>"; NULL: none) */
    const char *model_id, *model_revision, *text_source;
    const char *stream; /* name of the change stream (the replication slot): keys the state row */
    /* Qdrant / Upstash only: the PostgreSQL database (conninfo or URI) where cdcvec keeps the
     * position, meta, backfill marks and dead letters; NULL: none kept (see above) */
    const char *state_conninfo;
    const char *ns; /* Upstash namespace; NULL or "": the table's name */
    /* Qdrant: 0: a point's id is the key itself when it is one integer column (>= 0), else a
     * UUIDv5 of table and key; 1: always the UUIDv5, so that several tables with integer keys
     * can share a collection (a table whose ids would collide with another's is refused) */
    int uuid_ids;
    /* pgvector only: connections writing each batch in parallel, rows split by key (0 or 1: one;
     * at most 16), used when key_exact (every key column compares exactly by its text form, so
     * one key always lands on the same connection); index_mem_mb: the most maintenance_work_mem
     * the HNSW build may ask for (0: 1024) */
    int writers, key_exact, index_mem_mb;
    /* 1: a row's text is stored as chunks (models/chunk.h): pgvector one row per (key, chunk number)
     * with the chunk's hash and offsets, one writer, a table of the other layout refused; Qdrant and
     * Upstash one point per (key, chunk number) (sink/chunks_remote.h). -1 (readers: search):
     * whatever layout the table has. */
    int chunked;
    /* Qdrant, Upstash: how long one request is retried before the batch fails as retriable (0:
     * 120 s); a pipeline of several tables asks for less, so that a store down holds its table
     * (ingest/tables.c) instead of stalling the others behind it */
    double retry_s;
    /* cdcvec migrate (ingest/migrate.c): another index of the same table beside the live one, NULL or
     * "": the live index. pgvector: table cdcvec."<schema>_<table><suffix>", its state row keyed
     * stream (which the caller suffixes the same way). Qdrant, Upstash: refused (not built yet). */
    const char *index_suffix;
    /* pgvector: the connection's role in its application_name ("cdcvec <role>"; NULL: "sink"):
     * "monitor" for the store-size reader of ingest/store_rows.c */
    const char *role;
} cv_sink_table;

typedef struct cv_sink_row {
    const char *const *key; /* (nkeys) values in their text form */
    const float *vec;       /* (dim) new embedding, or NULL: payload-only update of an existing row */
    const char *payload;    /* JSON object text: replaces the stored payload, except for... */
    const char *keep;       /* ...the keys named in this JSON array (or NULL), whose stored values stay */
    const uint8_t *hash;    /* 32-byte SHA-256 of the embedded text (with vec) */
    /* chunked tables, with vec: the chunk's number, the SHA-256 of its bytes, its offsets in the
     * text, in characters (hash is the whole text's) */
    int chunk;
    const uint8_t *chunk_hash;
    long char_off, char_len;
    int nchunks; /* chunked tables, with vec: the text's number of chunks (Qdrant, Upstash keep it) */
} cv_sink_row;

typedef struct cv_sink_dead {
    const char *key;    /* the key as one line of text (pg/cv_keytext.h) */
    const char *reason; /* why it could not be applied */
} cv_sink_dead;

/* What the store records about the source table, to notice changes between runs. */
typedef struct cv_sink_meta {
    uint32_t relid;       /* the source table's OID (0: not recorded) */
    char *layout;         /* its columns, as ingest describes them (NULL: not recorded) */
    char *text_source;    /* what is embedded: text column attnum or template (NULL: not recorded) */
    char *model;          /* the model that wrote the vectors: its id (models/model.h; NULL: not recorded) */
    char *model_revision; /* and the SHA-256 of its weights (NULL: not recorded) */
} cv_sink_meta;

typedef struct cv_sink cv_sink;

/* Connects to conninfo and creates what is missing (pgvector: extension, schema cdcvec, the
 * table, the state table, and the HNSW cosine index once the initial backfill is done;
 * Qdrant: the collection (dim, Cosine) when missing, never recreated; all remote stores: the
 * state tables in t->state_conninfo). *out owned by the caller. On failure *out is NULL and
 * cv_sink_last_fault(NULL, ...) tells this thread's last failed open. */
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
/* Qdrant / Upstash: the steps are sent as they come (upserts gathered into requests of the
 * store's batch size, sent while later puts arrive), a failed step leaves what was written
 * (idempotent: the replay converges), rollback forgets the dead letters not yet recorded, and
 * commit waits for every acknowledgement before recording the position. A row the store
 * refuses for its size (Upstash metadata over 48 KB) or whose payload cannot be read becomes a
 * dead letter naming its key, its stale vector deleted: never a lost batch. (A batch refused by
 * the store as a whole, CV_ERR_FORMAT, is applied again row by row by apply/apply.c.) */

/* Where the dead letters of table t in the store at url are kept (cdcvec dead-letters): returns
 * the database (a conninfo: url itself for pgvector, t->state_conninfo for Qdrant and Upstash,
 * NULL when none) and appends to stream the value of cdcvec.dead_letters.stream (pgvector:
 * t->stream; the others: their state key; empty when url does not parse). Needs only t's
 * table, stream, state_conninfo and ns. */
const char *cv_sink_dead_where(const char *url, const cv_sink_table *t, cv_buf *stream);

/* Every dead letter of this sink, as it is found (apply's through cv_sink_dead_put, and rows
 * the store itself refuses), goes to cb too, before the commit that records it: a caller
 * without a state database (a Kafka sink stage) routes them to a durable place of its own. A
 * batch that fails and is replayed reports its dead letters again. cb NULL: none. */
typedef void (*cv_sink_dead_cb)(void *arg, const char *key, const char *reason);
void cv_sink_on_dead(cv_sink *s, cv_sink_dead_cb cb, void *arg);

/* The payload text (a JSON object) as this store keeps it: pgvector's jsonb keeps every digit
 * (the same text); Qdrant and Upstash keep numbers as doubles, so a number a double cannot hold
 * exactly (beyond int64, beyond a double's range, more digits than it keeps) is stored as a
 * string of its exact text. NULL when payload is not JSON. Caller frees. (verify compares the
 * source's row in this form with what the store holds.) */
char *cv_sink_payload_stored(const cv_sink *s, const char *payload);

/* Chunked tables (all stores), in the batch's transaction: the hashes
 * of the chunks stored for key, by chunk number, into *hash (malloc'd, *m entries, caller frees;
 * a number not stored reads as zeros; NULL and 0 when none). */
cv_err cv_sink_chunk_hashes(cv_sink *s, const char *const *key, uint8_t (**hash)[32], int *m);
/* The chunks of key become n: stored chunk from[i] (>= 0) is renumbered i, with offsets off[i] and
 * len[i] (characters) and the text's new hash text_hash, its vector kept; every other stored chunk
 * of the key is deleted (those past the end of a shorter text too). The chunks with from[i] < 0
 * are written after by cv_sink_put. */
cv_err cv_sink_chunks_set(cv_sink *s, const char *const *key, int n, const int *from, const long *off,
                          const long *len, const uint8_t *text_hash);

/* Records changes that could not be applied (the dead-letter table), in the transaction. */
cv_err cv_sink_dead_put(cv_sink *s, const cv_sink_dead *d, int n, uint64_t position);
cv_err cv_sink_commit(cv_sink *s, uint64_t position);
void cv_sink_rollback(cv_sink *s);

/* The kind ("connection", "auth", "privilege", "config", "data", ...) and the fix (or NULL) of
 * the last error; s NULL: of this thread's last failed cv_sink_open. The strings live as long
 * as the process. */
void cv_sink_last_fault(const cv_sink *s, const char **kind, const char **fix);

/* "pgvector", "qdrant" or "upstash": the store a sink string names. */
const char *cv_sink_kind(const char *conninfo_or_url);

/* Rows per transaction that fill the store's requests (Qdrant 1024: 4 upserts of 256 and one
 * lookup; Upstash 1000; pgvector 512): a hint for callers that choose their batch size. */
int cv_sink_batch_rows(const cv_sink *s);

/* Requests sent to the store (HTTP requests, retries included; 0 for pgvector) and retries. */
void cv_sink_stats(const cv_sink *s, long *requests, long *retries);

/* The recorded facts about the source table (fields NULL/0 when never recorded; strings
 * owned by the caller), and recording them (a NULL model or model_revision keeps the recorded
 * one). */
cv_err cv_sink_meta_set(cv_sink *s, const cv_sink_meta *m);
void cv_sink_meta_free(cv_sink_meta *m);
/* The same, before the sink is opened (its table needs what the meta helps to describe):
 * connects, reads, disconnects; empty when nothing is recorded or the store is unreachable
 * (the open that follows reports that). */
void cv_sink_meta_peek(const char *conninfo, const char *stream, cv_sink_meta *m);
/* The same for any store: reads t->state_conninfo for Qdrant / Upstash (under the state key
 * that store uses), conninfo itself for pgvector. */
void cv_sink_meta_peek_table(const char *conninfo_or_url, const cv_sink_table *t, cv_sink_meta *m);

/* What identifies the store a sink string and table write to, for names and locks (no
 * credentials): Qdrant / Upstash "<store>:<url>/<collection or namespace>" (the state key
 * without its stream); pgvector "pgvector:" + host, port and dbname of the conninfo ("" : the
 * source database). Appended to out. */
void cv_sink_store_id(const char *conninfo_or_url, const cv_sink_table *t, cv_buf *out);
/* Backfill bookkeeping: started at position p (done=0), or finished (done=1): then rows
 * stored at a position below p (left by an interrupted earlier backfill) are deleted and the
 * HNSW index is built if missing. */
cv_err cv_sink_backfill_mark(cv_sink *s, uint64_t p, int done);

/* A hit's best chunk (chunked tables): its number and its offsets in the row's text, in characters. */
typedef struct cv_sink_passage {
    int chunk;
    long char_off, char_len;
} cv_sink_passage;
/* Nearest rows to q by cosine distance; cb gets rank, cosine similarity (Upstash's
 * (1 + cos) / 2 converted back), key text, payload (the row's columns) and, on a chunked table,
 * the row's best chunk (NULL otherwise). On a chunked table each row comes at most once, with its
 * nearest chunk, and limit counts rows: pgvector DISTINCT ON over the nearest chunks (fetched
 * until limit rows are found or none are left), Qdrant its grouping query (points/query/groups
 * by cdcvec.key), Upstash over-fetch (topK grown up to 1000) and group. */
typedef void (*cv_sink_hit_cb)(void *arg, int rank, double similarity, const char *key, const char *payload,
                               const cv_sink_passage *passage);
cv_err cv_sink_search(cv_sink *s, const float *q, int limit, cv_sink_hit_cb cb, void *arg);

/* A filter on the payload: conditions on top-level payload fields, all of which must hold
 * (AND). Field names are identifiers ([A-Za-z_][A-Za-z0-9_]*, not "cdcvec"); the caller
 * (search/filter.c) checks them against the table's columns and their types. Strings and
 * booleans compare by equality only; numbers by = < <= > >= (as doubles in Qdrant and Upstash,
 * exactly in pgvector). Each store runs it where the vectors are: pgvector a WHERE on the
 * payload (equality as containment, served by the GIN index on payload; ranges on the
 * number), in the same HNSW scan, which goes on until limit rows pass (iterative scan, pgvector
 * 0.8); Qdrant its filter (must: match / range), after creating a payload index for each
 * filtered field (keyword, float or bool; once per field and sink); Upstash its metadata filter
 * language (f = 'v' AND y >= 1950). So a filter never cuts the results short of limit while as
 * many rows match. */
typedef enum { CV_FOP_EQ, CV_FOP_GT, CV_FOP_GTE, CV_FOP_LT, CV_FOP_LTE } cv_fop;
typedef enum { CV_FV_STR, CV_FV_NUM, CV_FV_BOOL } cv_fkind;
typedef struct cv_sink_cond {
    const char *field;
    cv_fop op; /* not EQ: only with CV_FV_NUM */
    cv_fkind kind;
    const char *str; /* CV_FV_STR: the value; CV_FV_NUM: the number as JSON text (exact) */
    double num;      /* CV_FV_NUM: the value; CV_FV_BOOL: 0 or 1 */
} cv_sink_cond;
typedef struct cv_sink_filter {
    int n;
    const cv_sink_cond *c;
} cv_sink_filter;
/* cv_sink_search with a filter (NULL or n == 0: none). */
cv_err cv_sink_search_filtered(cv_sink *s, const float *q, int limit, const cv_sink_filter *f,
                               cv_sink_hit_cb cb, void *arg);
/* ">=" for CV_FOP_GTE and so on; the JSON name ("gte") with json = 1. */
const char *cv_sink_fop_name(cv_fop op, int json);

/* ---- verify (ingest/verify.c): what the store holds, read back ---- */

/* The stored text hash and payload of keys[0..n): found[i] = 1 and hash[i], payload[i] filled
 * when the row exists. payload[i]: the JSON object as pgvector keeps it (the row's columns but
 * the keys and the embedded one; remote stores: their point's payload without the keys and the
 * "cdcvec" object), malloc'd, the caller frees; NULL when not found. */
cv_err cv_sink_fetch(cv_sink *s, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32],
                     char **payload);

/* One page of the store's keys (as one line of text, pg/cv_keytext.h) to cb, at most limit,
 * continuing from *cursor (empty at first; opaque, owned by the caller); *more = 0 after the
 * last page. pgvector walks the primary key in order (keyset), Qdrant scrolls by point id
 * (filtered on the table), Upstash ranges over its namespace. */
typedef void (*cv_sink_key_cb)(void *arg, const char *keytext);
cv_err cv_sink_scan(cv_sink *s, cv_buf *cursor, int limit, cv_sink_key_cb cb, void *arg, int *more);

/* ---- migrations (cdcvec migrate, ingest/migrate.c): indexes of one table side by side ---- */

/* The pgvector table of t (with t->index_suffix), unquoted, within 63 bytes (pg/cv_names.h). */
void cv_sink_pg_table(const cv_sink_table *t, cv_buf *out);
/* Whether conninfo's store has t's index with suffix (and its state row, t->stream + suffix):
 * *table, *state. pgvector only (CV_ERR_UNSUPPORTED otherwise, with the reason logged). */
cv_err cv_sink_index_has(const char *conninfo, const cv_sink_table *t, const char *suffix, int *table,
                         int *state);
/* The switch, in one transaction of the store: the live index (t, no suffix; state row t->stream)
 * is renamed to suffix `keep`, the index of suffix `in` becomes the live one (table, HNSW index,
 * state row, dead letters). Searches by the live name see the old index or the new one, whole,
 * never neither. An index under `keep` already there is refused (CV_ERR_MISMATCH). backfill_again:
 * the new live index's state is marked as not backfilled (it was left behind by a switch: a sync
 * backfills it again, hash-checked, before it streams). */
cv_err cv_sink_index_swap(const char *conninfo, const cv_sink_table *t, const char *in, const char *keep,
                          int backfill_again);
/* A template-only migration: the shadow index (suffix; created) gets a copy of the live index's
 * rows, stamped with text_source (the same model: their vectors stay valid where the text does
 * not change); *copied: rows copied. */
cv_err cv_sink_index_seed(const char *conninfo, const cv_sink_table *t, const char *suffix,
                          const char *text_source, long *copied);
/* Drops the index of t with suffix (table, state row, dead letters); *dropped: it existed. */
cv_err cv_sink_index_drop(const char *conninfo, const cv_sink_table *t, const char *suffix, int *dropped);
/* ---- the store's size (ingest/store_rows.c: the metric cdcvec_table_rows_store) ---- */

/* A cheap count or estimate of the rows of this sink's table in the store, into *rows: pgvector
 * the store table's n_live_tup (pg_stat_user_tables, the estimate cdcvec_table_rows_source reads
 * of the source), a chunked table (t->chunked > 0) its rows of chunk 0 counted (one per source
 * row: a scan); Qdrant the exact count of the table's points (cdcvec.table) that are not a
 * chunk past 0 (rows, chunked or not); Upstash the namespace's vectorCount and
 * pendingVectorCount (/info: every vector of the namespace, so a chunked table's chunks). */
cv_err cv_sink_count_estimate(cv_sink *s, double *rows);

#endif
