/* wire.h: cdcvec's own Kafka message format ("cdcvec/1", docs/KAFKA.md), between capture,
 * the embed workers and the sink: one JSON object per row change, keyed by the row's primary
 * key, carrying what the tutorial's wal2json messages lose: the transaction's commit LSN and
 * its boundaries, unchanged-TOAST markers (keep), the key's column names and types, and, out
 * of a worker, the model id, the text hash and the vector (base64 of little-endian float32, so
 * it round-trips exactly). Also the reading of the tutorial's own messages (--format quix). */
#ifndef CV_WIRE_H
#define CV_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "../apply/apply.h"
#include "../common/cv_buf.h"

/* The table a message belongs to. */
typedef struct cv_wire_table {
    char *schema, *table;
    int nkeys;
    char **key_names, **key_types; /* (nkeys) */
    int chunked; /* out of a worker that chunks (--chunk-max-tokens): every message says so ("chunked":
                    true), and an upsert carries its text's chunks (cv_change.chunks), not one vector */
} cv_wire_table;

/* CV_WIRE_MARK: a position mark (read-your-writes on the Kafka path, docs/KAFKA.md): capture
 * sends one to every partition after each acknowledged batch (and when the source's position
 * moved without a change of the table); every change of the table up to its LSN is before it
 * in its partition. Workers pass it on to the same partition number; the sink's /wait covers
 * the smallest mark every partition has reached. */
enum { CV_WIRE_UPSERT = 0, CV_WIRE_DELETE, CV_WIRE_TRUNCATE, CV_WIRE_MARK };

/* A decoded message: op, its table, and (upsert/delete) the change; strings owned. */
typedef struct cv_wire_msg {
    int op;
    cv_wire_table t;
    cv_change c; /* key, text, payload, keep, fail, vec + vec_hash, lsn, commit_unix, txn */
    char *model; /* with a vector: the model that made it */
    int copies;  /* truncate, mark: the number of partitions it was sent to (one copy each) */
} cv_wire_msg;

void cv_wire_msg_free(cv_wire_msg *m);
void cv_wire_table_free(cv_wire_table *t);

/* Appends the message for change c of table t to b. With vec (dim floats) or chunks (each with
 * its vector): model and the text hash go with it. op: CV_WIRE_UPSERT or CV_WIRE_DELETE (c->del decides when
 * -1). */
void cv_wire_encode(cv_buf *b, const cv_wire_table *t, const cv_change *c, const char *model, int dim);
/* Appends a truncate message (sent once to each of `copies` partitions). */
void cv_wire_encode_truncate(cv_buf *b, const cv_wire_table *t, uint64_t lsn, double commit_unix, int copies);

/* Appends a position mark (sent once to each of `copies` partitions). */
void cv_wire_encode_mark(cv_buf *b, const cv_wire_table *t, uint64_t lsn, int copies);

/* Decodes a cdcvec/1 message. dim: the vector dimension expected (0: any). Errors say what is
 * wrong and where (field name) in err; CV_ERR_FORMAT. */
cv_err cv_wire_decode(const char *buf, size_t len, int dim, cv_wire_msg *m, char *err, size_t errlen);

/* Whether buf looks like a cdcvec/1 message (else: the tutorial's). */
int cv_wire_is_cdcvec(const char *buf, size_t len);

/* The key of a change as the Kafka message key: its key text (pg/cv_keytext.h). */
void cv_wire_key(cv_buf *b, char *const *key);

#endif
