/* consumer.h: the consuming side of the Kafka stages (worker, sink): messages polled in
 * batches and decoded into row changes, whichever format they come in: cdcvec/1 (wire.h) or
 * the tutorial's (a wal2json v1 change object from its CDC service, or its embeddings
 * message). A message that cannot be read is kept with the reason, for the dead-letter topic:
 * never dropped. Offsets are committed by the caller, after its output is safe. */
#ifndef CV_KAFKA_IN_H
#define CV_KAFKA_IN_H

#include <librdkafka/rdkafka.h>
#include <signal.h>

#include "client.h"
#include "wire.h"

enum { CV_KIN_CDCVEC = 0, CV_KIN_QUIX_CHANGE, CV_KIN_QUIX_EMBEDDING, CV_KIN_BAD };

typedef struct cv_kin_msg {
    int32_t partition;
    int64_t offset;
    int format;        /* CV_KIN_* */
    cv_wire_msg m;     /* the change (or truncate) */
    cv_wire_msg m_old; /* a tutorial update that changed the key: the old key's delete (op -1: none) */
    char *row;         /* tutorial formats: the row's columns as a JSON object (for the tutorial's output) */
    char *kind;        /* tutorial formats: "insert", "update", "delete" */
    char *key, *raw;   /* the Kafka key and value, copied */
    size_t klen, rlen;
    char *why;     /* CV_KIN_BAD: why it could not be read */
    char *keytext; /* the row's key as one line (pg/cv_keytext.h), when a stage noted it, or NULL */
} cv_kin_msg;

typedef struct cv_kin_opts {
    const char *key_columns; /* tutorial messages: the key columns, comma-separated (default "id") */
    const char *text_column; /* tutorial messages: the embedded column (default "description") */
    const char *schema;      /* tutorial embeddings messages (no schema in them): default "public" */
    int dim;                 /* vectors carried must have it */
} cv_kin_opts;

/* Polls up to max messages into out: waits up to wait_s for the first, then takes what the
 * client has fetched already, without waiting (under load the batch fills from librdkafka's
 * prefetch; idle, a lone change goes on at once). Returns the number taken; consumer errors
 * are logged and counted. */
int cv_kin_poll(rd_kafka_t *rk, const cv_kin_opts *o, cv_kafka_metrics *km, cv_kin_msg *out, int max,
                double wait_s, volatile sig_atomic_t *stop);
/* Decodes one message value (len bytes) into m (format, m, m_old, row, kind, or why). */
void cv_kin_decode(const cv_kin_opts *o, const char *val, size_t len, cv_kin_msg *m);
void cv_kin_msg_free(cv_kin_msg *m);

/* Commits, for each partition of topic among msgs, the offset after its last message there
 * (synchronously). */
cv_err cv_kin_commit(rd_kafka_t *rk, const char *topic, const cv_kin_msg *msgs, int n);

/* Sends m's original value to the dead-letter topic of dlq with the reason, as
 * {"format":"cdcvec-dead-letter/1","stage","topic","partition","offset","reason","value"} (and
 * "key": the row's key, when m->keytext is set), logged and counted in dead. */
cv_err cv_kin_dead_letter(cv_kafka_producer *dlq, const char *stage, const char *topic, const cv_kin_msg *m,
                          const char *why, cv_metric *dead);

#endif
