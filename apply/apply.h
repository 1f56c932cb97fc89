/* apply.h: the apply stage: a batch of row changes, in commit order, into a vector store.
 *
 * Whatever feeds it (the replication stream, a backfill, a Kafka consumer) and wherever it
 * writes, the rules are the same: collapse by key within the batch, delete, then look up the
 * stored text hashes (inside the store's transaction, so a key deleted in this batch is not
 * taken for an existing row), re-embed only texts whose hash changed, update payloads alone
 * otherwise, record what cannot be applied as a dead letter with its reason, and record the
 * batch's position in the same transaction. */
#ifndef CV_APPLY_H
#define CV_APPLY_H

#include <stdint.h>

#include "../common/cv_err.h"
#include "../common/cv_metrics.h"
#include "../models/chunk.h"
#include "../models/tokenizer.h"
#include "../server/client.h"
#include "../sink/sink.h"

enum { CV_TEXT_KNOWN = 0, CV_TEXT_NULL, CV_TEXT_UNKNOWN };

/* One chunk of a text embedded upstream (a Kafka worker that chunks, docs/KAFKA.md): its number
 * is its index in cv_change.chunks. */
typedef struct cv_change_chunk {
    uint8_t hash[32];        /* SHA-256 of the chunk's bytes */
    long char_off, char_len; /* in characters of the whole text */
    float *vec;              /* (dim) owned */
} cv_change_chunk;

/* One row change. All strings owned (cv_change_free). */
typedef struct cv_change {
    int del;    /* 1: delete by key */
    char **key; /* (nkeys) NULL-terminated, text form */
    char *text; /* CV_TEXT_KNOWN: the text to embed */
    int text_state;
    int text_fetch;       /* the text must be read from the source before deciding (template with an
                             unchanged TOASTed column) */
    char *payload;        /* JSON object of the columns known in this change */
    char *keep;           /* JSON array of column names whose stored payload values stay (unchanged
                             TOASTed values, columns the change's row image does not have), or NULL */
    char *fail;           /* the change cannot be applied: why (it becomes a dead letter) */
    float *vec;           /* (dim) the text's embedding, computed upstream (a Kafka embed worker), or NULL */
    uint8_t vec_hash[32]; /* with vec or chunks: SHA-256 of the text it embeds (text itself may be NULL) */
    cv_change_chunk *chunks; /* (nchunks) the text's chunks with their vectors, embedded upstream, or NULL
                                (a chunked store table: only the chunks whose hash the store lacks are
                                written, the others keep their vectors, renumbered) */
    int nchunks;
    /* where it comes from (kept by the Kafka stages; 0 when unknown) */
    uint64_t lsn;          /* end LSN of the source transaction */
    double commit_unix;    /* its commit time */
    int txn_seq, txn_size; /* position within the transaction, and its number of changes */
    char *
        encoded; /* the outlet's own encoding of the change, made from the row's values (outlet.h), or NULL */
} cv_change;

void cv_change_free(cv_change *c);

/* Reads the current texts of these changes (by key) from the source, setting text and
 * text_state; a row gone since reads as CV_TEXT_NULL. */
typedef cv_err (*cv_apply_fetch_fn)(void *arg, cv_change **chg, int n);

typedef struct cv_apply_opts {
    cv_sink *sink;
    cv_client *client; /* embedding service (in-process or remote); NULL: none (a Kafka sink stage:
                          a change without a vector is a dead letter) */
    int dim;
    cv_metrics *reg;       /* counters registered once here; they live as long as reg */
    int key_exact;         /* 1: two keys are equal exactly when their text forms are (int, text, uuid...) */
    int on_error_stop;     /* 1: a change that cannot be applied stops the batch (CV_ERR_ARG) */
    size_t max_text_bytes; /* texts longer than this are dead letters, never sent (a remote server's
                              limit: frames over its size are dropped without a reply); 0: none */
    cv_apply_fetch_fn fetch;
    void *fetch_arg;
    const char *table;   /* for logs */
    const cv_tok *tok;   /* the model's tokenizer when it runs in this process (borrowed), else NULL:
                            texts over max_seq tokens are counted and logged (truncation is never silent) */
    int max_seq;         /* with tok: tokens the model reads, [CLS] and [SEP] included */
    cv_chunk_opts chunk; /* max_tokens > 0 (with tok and a chunked store table): texts are stored as
                            chunks, only the chunks whose hash the store lacks embedded */
} cv_apply_opts;

typedef struct cv_apply cv_apply;

cv_err cv_apply_new(const cv_apply_opts *o, cv_apply **out);
void cv_apply_free(cv_apply *a);
/* A second apply stage for another thread (a table joining a running pipeline, ingest/tables.c):
 * a's options, counters and table labels, shared; its own store and embedding call. Freed with
 * cv_apply_free before a. */
cv_err cv_apply_twin(const cv_apply *a, cv_apply **out);
/* Chunking for the table applied next (a pipeline's tables each have their own). */
void cv_apply_set_chunk(cv_apply *a, int max_tokens, int overlap);
/* The store and the source reader change with each session; the counters stay. */
void cv_apply_set_sink(cv_apply *a, cv_sink *sink, cv_apply_fetch_fn fetch, void *fetch_arg, int key_exact);

/* The table the changes belong to, as schema.table (copied): the label of
 * cdcvec_texts_truncated_total{table} (registered on the first call for a name, at 0) and of
 * the text_truncated log line, written once per table and process. */
void cv_apply_set_table(cv_apply *a, const char *schema_table);

/* Applies n changes (consumed: freed) in one store transaction recorded at position. A change
 * with vec is written with that vector unless the stored text hash equals vec_hash (then its
 * payload alone); a text that is unknown (an unchanged TOASTed value), with no stored row and no
 * source to read it from, becomes a dead letter.
 * truncate: empty the table first; force: re-embed unchanged texts too; commit_unix: when the
 * last change committed at the source (unix seconds, 0 = unknown), for the latency histogram.
 * A batch whose data the store refuses (CV_ERR_FORMAT) is applied again one change at a time,
 * each recorded at the store's current position: the changes refused alone become dead
 * letters with the store's reason, then the batch's position is recorded with them.
 * Errors: retriable ones (store or embedding service unreachable) and CV_ERR_ARG when
 * on_error_stop and a change failed (logged with its key and reason). */
cv_err cv_apply_batch(cv_apply *a, cv_change *chg, int n, int truncate, uint64_t position, int force,
                      double commit_unix);

/* The chunks the apply stage stores for text (models/chunk.h; the empty text is one chunk, of the
 * text's hash), for verify: CV_ERR_UNSUPPORTED when it does not chunk. *out: caller frees. */
cv_err cv_apply_chunks(cv_apply *a, const char *text, cv_chunk **out, int *n);

/* Embeds one text synchronously (queries). */
cv_err cv_apply_embed1(cv_apply *a, const char *text, float *vec);

#endif
