/* kafka.h: the Kafka stages (capture, worker, sink; docs/KAFKA.md) and capture's hooks into
 * the replication stream.
 *
 * The stages still run on the sync runtime and reach into its state (cv_sync,
 * ingest/sync_impl.h); the stream still calls capture by name (cv_capture_*). Both ties are
 * the runtime/outlet split left to do (docs/ARCHITECTURE.md, "Ties left between the rooms"). */
#ifndef CV_KAFKA_STAGES_H
#define CV_KAFKA_STAGES_H

#include <signal.h>

#include "../apply/apply.h"
#include "../common/cv_err.h"
#include "../ingest/ingest.h"

typedef struct cv_sync cv_sync;
struct cv_rowval;

/* `cdcvec capture`: the replication stream (and the initial backfill through the slot's
 * snapshot) into a Kafka topic, one message per row change keyed by its primary key; the
 * slot's flush position is confirmed only once every message up to it is acknowledged. */
typedef struct cv_capture_opts {
    const char *to;                     /* kafka://host:port/topic */
    int quix;                           /* 1: the tutorial's messages (wal2json v1 change objects) */
    const struct cv_kafka_props *props; /* librdkafka properties from the user */
} cv_capture_opts;
int cv_capture_run(const cv_sync_opts *o, const cv_capture_opts *k, volatile sig_atomic_t *stop);

/* `cdcvec worker`: the change topic into the embeddings topic, embedding the texts (the
 * model from o: in-process, or o->embed). Offsets are committed once the output is
 * acknowledged. */
typedef struct cv_worker_opts {
    const char *from, *to;   /* kafka:// URLs */
    const char *group;       /* consumer group */
    const char *dead_letter; /* topic for messages that cannot be read or embedded */
    int quix;                /* 1: produce the tutorial's embeddings messages */
    const char *key_columns; /* the tutorial's messages: key columns (default "id") */
    long batch_rows;         /* most messages per batch */
    const struct cv_kafka_props *props;
} cv_worker_opts;
int cv_worker_run(const cv_sync_opts *o, const cv_worker_opts *w, volatile sig_atomic_t *stop);

/* `cdcvec sink`: the embeddings (or change) topic into the store o->sink, through the apply
 * stage. Offsets are committed once the store committed. */
typedef struct cv_sink_stage_opts {
    const char *from;        /* kafka:// URL */
    const char *group;       /* keeps the offsets */
    const char *dead_letter; /* topic for messages that cannot be read */
    const char *key_columns; /* the tutorial's messages: key columns (default "id") */
    long batch_rows;
    const char *state; /* Qdrant/Upstash: PostgreSQL database for dead letters and position */
    const struct cv_kafka_props *props;
} cv_sink_stage_opts;
int cv_sink_stage_run(const cv_sync_opts *o, const cv_sink_stage_opts *k, volatile sig_atomic_t *stop);

/* capture.c: opening the producer with the runtime, delivering a batch, closing. */
cv_err cv_capture_open(cv_sync *s);
cv_err cv_capture_deliver(cv_sync *s, cv_change *chg, int n, int truncate, uint64_t position,
                          double commit_unix);
void cv_capture_close(cv_sync *s);
/* The stream is covered up to pos without a change of the table (a keepalive): position marks
 * go to every partition at most every 100 ms (call it with 0 to send what is due). */
void cv_capture_mark(cv_sync *s, uint64_t pos);
/* capture --format quix: the tutorial's message for a change made from row values v (old:
 * the old row's values for an update's oldkeys, or NULL: the key of v), set as c->wire. */
void cv_capture_wire(const cv_sync *s, const struct cv_rowval *v, const struct cv_rowval *old,
                     const char *kind, cv_change *c);
/* cv_table.row_hook for the backfill of capture --format quix (arg: the cv_sync). */
void cv_capture_row_hook(void *arg, const struct cv_rowval *v, cv_change *c);

#endif
