/* chunks_remote.h: chunked tables (cv_sink_table.chunked) in the stores without transactions
 * (Qdrant, Upstash): one point per (key, chunk number), written under the delivery rule
 * (docs/ARCHITECTURE.md, "Chunks").
 *
 * Ids. Chunk 0 of a key is the point a row has without chunking (Qdrant: the integer key or the
 * UUIDv5 of "schema.table:" + key text; Upstash: the key text), so --point-ids and unchunked
 * tables keep their ids. Chunk n > 0: Qdrant the UUIDv5 (same namespace) of "schema.table:" +
 * key text + TAB + n; Upstash the key text + TAB + n. A key text is one line with its control
 * characters escaped (pg/cv_keytext.h): it never holds a TAB, so no two (key, chunk) meet.
 *
 * Payload: the row's payload (payload.c) on every chunk, and in "cdcvec" the whole text's
 * text_hash plus chunk (number), chunk_hash (hex SHA-256 of the chunk's bytes), char_off,
 * char_len (characters) and chunks (how many the text has).
 *
 * Order, so that a crash at any point converges on replay and leaves no orphan chunk: chunk 0
 * is the row's record (cv_sink_hashes reads its text hash, and its `chunks` says which ids
 * exist). Before any other chunk of a stored row is written or deleted, chunk 0's text hash is
 * cleared (zeros, which no text has; acknowledged first), so a replay never takes the row for
 * unchanged, even when the source went back to the old text meanwhile; then a changed text's
 * chunks past the new end are deleted, the others upserted (kept chunks with their stored vector,
 * read back once, at their new numbers), and chunk 0 is written last: its upserts are held until
 * the commit and sent after every other request of the batch was acknowledged (cv_rchunks_tail),
 * after chunks past its count that an interrupted longer write left were looked for and deleted.
 * A deleted row clears chunk 0, deletes chunks 1.., then chunk 0. A replay finds the text changed,
 * compares the chunks by hash (those already written are kept) and deletes past the end again. */
#ifndef CV_SINK_CHUNKS_REMOTE_H
#define CV_SINK_CHUNKS_REMOTE_H

#include <jansson.h>

#include "sink_impl.h"

typedef struct cv_rchunks_io {
    /* chunk j's point id of key: as JSON (js) and as the text the store answers with (str) */
    void (*id)(const cv_sink *s, const char *const *key, int j, cv_buf *js, cv_buf *str);
    /* reads the points whose ids are the JSON array ids (n of them), of this table only, into out:
     * id text -> {"payload": {...}, "vector": [...]} */
    cv_err (*get)(cv_sink *s, const char *ids, int n, json_t *out);
    /* queues one upsert (sent while later ones come): id as JSON, vector as a JSON array, payload */
    cv_err (*upsert)(cv_sink *s, const char *id_js, const char *vec_js, const char *payload);
    /* deletes the points of the JSON array ids (n of them) and waits for every request in flight */
    cv_err (*del)(cv_sink *s, const char *ids, int n);
    /* sends what is gathered and waits for every request in flight */
    cv_err (*wait)(cv_sink *s);
    size_t max_payload; /* bytes of payload a point may have (0: no limit) */
} cv_rchunks_io;

typedef struct cv_rchunks cv_rchunks;

cv_rchunks *cv_rchunks_new(cv_sink *s, const cv_sink_table *t, cv_rstate *st, const cv_rchunks_io *io);
void cv_rchunks_free(cv_rchunks *rc);
/* Forgets what this batch read and held (begin, rollback, after commit). */
void cv_rchunks_reset(cv_rchunks *rc);
/* The sink operations of a chunked table (sink.h). */
cv_err cv_rchunks_put(cv_rchunks *rc, const cv_sink_row *rows, int n, uint64_t position);
cv_err cv_rchunks_delete(cv_rchunks *rc, const char *const *const *keys, int n);
cv_err cv_rchunks_hashes(cv_rchunks *rc, const char *const *key, uint8_t (**hash)[32], int *m);
cv_err cv_rchunks_set(cv_rchunks *rc, const char *const *key, int n, const int *from, const long *off,
                      const long *len, const uint8_t *text_hash);
/* The commit's second phase, after every other request was acknowledged: queues the held
 * chunk-0 upserts (the caller then waits for them before recording the position). */
cv_err cv_rchunks_tail(cv_rchunks *rc);

/* A stored point's chunk (cdcvec.chunk, char_off, char_len): 1 when it is one. */
int cv_rchunks_passage(json_t *payload, cv_sink_passage *p);

#endif
