/* client.h: what cdcvec's Kafka stages share over librdkafka: kafka:// URLs, the user's
 * librdkafka properties (-X key=value, a properties file, secrets from the environment), a
 * producer that tells when every message sent so far is acknowledged, and a consumer whose
 * offsets are committed only by the caller, after its output is safe.
 *
 * Delivery: the producer is idempotent (acks=all, retries without end, ordered per
 * partition); a stage acknowledges its input (the replication slot, or its consumer offsets)
 * only after cv_kafka_producer_wait said every message up to there is in the log. The
 * settings that guarantee this cannot be overridden by -X (an attempt is refused with why). */
#ifndef CV_KAFKA_H
#define CV_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/cv_err.h"
#include "../common/cv_metrics.h"

/* kafka://host:port[,host:port...]/topic */
typedef struct cv_kafka_url {
    char *bootstrap; /* "host:port,..." */
    char *topic;
} cv_kafka_url;

/* Parses url; on error writes what is wrong into err. u's strings owned (cv_kafka_url_free). */
cv_err cv_kafka_url_parse(const char *url, cv_kafka_url *u, char *err, size_t errlen);
void cv_kafka_url_free(cv_kafka_url *u);

/* librdkafka properties from the user, in the order given (later ones win). */
typedef struct cv_kafka_props {
    int n, cap;
    char **key, **val; /* owned */
} cv_kafka_props;

/* Takes every `-X key=value` (or `-Xkey=value`) out of argv (argc updated) into p. Secret
 * properties (passwords, keys, tokens) are refused here: they belong in the environment or a
 * file. Returns 0, or -1 after printing what is wrong. */
int cv_kafka_props_from_argv(cv_kafka_props *p, int *argc, char **argv);
/* Reads a Java-style properties file (key=value lines, # comments). -1 after printing why. */
int cv_kafka_props_from_file(cv_kafka_props *p, const char *path);
/* Secrets from the environment: CDCVEC_KAFKA_SASL_USERNAME, CDCVEC_KAFKA_SASL_PASSWORD,
 * CDCVEC_KAFKA_SSL_KEY_PASSWORD, CDCVEC_KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET, each also as
 * *_FILE (a file holding the value). -1 after printing why (an unreadable file). */
int cv_kafka_props_from_env(cv_kafka_props *p);
void cv_kafka_props_free(cv_kafka_props *p);

/* Per-stage Kafka series: messages in/out, errors by kind, produce latency, consumer lag. */
typedef struct cv_kafka_metrics {
    cv_metric *in, *out, *lag, *produce_latency, *broker_up;
    cv_metrics *reg;
    const char *stage;
    /* broker contact, from librdkafka's statistics (statistics.interval.ms, 1 s by default
     * here): cv_now() since when the clients of this stage saw no broker UP, 0 while one is */
    _Atomic double down_since;
    int down_logged;
} cv_kafka_metrics;
void cv_kafka_metrics_init(cv_kafka_metrics *m, cv_metrics *reg, const char *stage);
/* Seconds this stage's clients (arg: its cv_kafka_metrics) have seen no broker up (0: a broker
 * is up, or not known yet). With cv_kafka_broker_watch, the stage's health peer
 * (cv_health_peer, kafka.h: cv_kafka_health). */
double cv_kafka_broker_down_s(void *arg);
/* Logs at error level once an outage passed bound_s seconds (event=kafka_brokers_unreachable,
 * with the fix), and at info level when a broker is back. Call it now and then (one thread). */
void cv_kafka_broker_watch(void *arg, double bound_s);
/* Counts an error of this kind (a new series on first use). */
void cv_kafka_metrics_error(cv_kafka_metrics *m, const char *kind);

/* ---- producer ---------------------------------------------------------------------------- */

typedef struct cv_kafka_producer cv_kafka_producer;

/* An idempotent producer to topic. The caller's props are applied over cdcvec's defaults;
 * the delivery settings are fixed. m may be NULL. */
cv_err cv_kafka_producer_new(const char *bootstrap, const char *topic, const cv_kafka_props *props,
                             cv_kafka_metrics *m, cv_kafka_producer **out);
void cv_kafka_producer_free(cv_kafka_producer *p);
/* Serves the producer's callbacks (deliveries, errors, statistics) without waiting. */
void cv_kafka_producer_poll(cv_kafka_producer *p);
/* The topic's partition count (metadata; the topic is created if the broker auto-creates). */
cv_err cv_kafka_producer_partitions(cv_kafka_producer *p, int *n);
/* Queues one message (copied). partition -1: by key (librdkafka's default partitioner,
 * murmur2 like the Java client). Waits while the local queue is full. */
cv_err cv_kafka_produce(cv_kafka_producer *p, int partition, const void *key, size_t klen, const void *val,
                        size_t vlen);
/* Waits until every message queued so far is acknowledged by the broker or failed. Any
 * failure since the last wait makes it return CV_ERR_TIMEOUT (the caller sends the batch
 * again: the consumers downstream are idempotent). *stop cuts the wait short (CV_ERR_SHUTDOWN). */
cv_err cv_kafka_producer_wait(cv_kafka_producer *p, volatile sig_atomic_t *stop);

/* ---- consumer ---------------------------------------------------------------------------- */

/* A consumer in group: offsets are stored and committed only by the caller (rd_kafka_commit
 * after its output is safe); a group with no committed offset starts at the beginning. */
cv_err cv_kafka_consumer_new(const char *bootstrap, const char *group, const cv_kafka_props *props,
                             cv_kafka_metrics *m, rd_kafka_t **out);
/* Sum over the partitions of rk's assignment of (high watermark - position), from cached
 * watermarks; -1 when unknown. */
double cv_kafka_consumer_lag(rd_kafka_t *rk);

/* Whether a librdkafka error is worth retrying (broker down, timeouts, leader changes). */
int cv_kafka_retriable(rd_kafka_resp_err_t err);

#endif
