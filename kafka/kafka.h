/* kafka.h: the Kafka stages (capture, worker, sink; docs/KAFKA.md). Capture is the replication
 * stream of ingest/ with an outlet of its own (ingest/outlet.h): the stream knows no Kafka. */
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
/* A pipeline file's n tables (o[i], k[i]: table i's options and topic) from one slot, each
 * table into its own topic (one producer each), as `cdcvec sync --config` streams them. */
int cv_capture_run_tables(const cv_sync_opts *o, const cv_capture_opts *k, int n,
                          volatile sig_atomic_t *stop);

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
    int chunk_max_tokens;    /* > 0: texts are cut into chunks (models/chunk.h), one vector each */
    int chunk_overlap;       /* with chunk_max_tokens: word pieces repeated from the previous chunk */
    int chunk_cache_mb;      /* with chunk_max_tokens: the cache of chunk vectors by hash, MB (0: none) */
    const struct cv_kafka_props *props;
} cv_worker_opts;
int cv_worker_run(const cv_sync_opts *o, const cv_worker_opts *w, volatile sig_atomic_t *stop);
/* A pipeline file's n tables: one model (o[0]'s runtime), a thread per table with its own
 * consumer (w[i].group) from its change topic into its embeddings topic. */
int cv_worker_run_tables(const cv_sync_opts *o, const cv_worker_opts *w, int n, volatile sig_atomic_t *stop);

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
/* A pipeline file's n tables: a thread per table, each with its own consumer (k[i].group), store
 * (o[i].sink), offsets, truncate barrier and apply stage; o[0]'s runtime serves /metrics and
 * /wait, which covers a position once every table's store has it. */
int cv_sink_stage_run_tables(const cv_sync_opts *o, const cv_sink_stage_opts *k, int n,
                             volatile sig_atomic_t *stop);

/* stage_open.c: the runtime of a consuming stage (worker, sink) with outlet out, its Kafka
 * metrics km, the brokers as a readiness peer, the health monitor, and its dead-letter counter;
 * 0, or 1 after logging event=<stage>_stopped. */
struct cv_kafka_metrics;
/* Runs run(args[i], flag) for i < n, each on a thread of its own; flag is set for all of them
 * when *stop is, or when one returned non-zero (a permanent failure stops the process). The
 * first non-zero return, or 0. */
int cv_kafka_run_threads(int n, int (*run)(void *arg, volatile sig_atomic_t *stop), void *const *args,
                         volatile sig_atomic_t *stop);
int cv_kafka_stage_open(cv_sync *s, const cv_sync_opts *o, const cv_outlet *out, const char *stage,
                        struct cv_kafka_metrics *km, cv_metric **m_dead);

/* capture.c: the outlet of `cdcvec capture` (ingest/outlet.h): the producer opened with the
 * runtime, each batch produced and acknowledged, position marks (read-your-writes) at most
 * every 100 ms. capture_quix.c: with --format quix, the tutorial's message for a change made
 * from row values v (old: the old row's values for an update's oldkeys, or NULL: the key of
 * v), kept as c->encoded (the outlet's row hook). */
void cv_capture_wire(cv_sync *s, const struct cv_rowval *v, const struct cv_rowval *old, const char *kind,
                     cv_change *c);

#endif
