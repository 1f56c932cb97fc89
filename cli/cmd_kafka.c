/* cmd_kafka.c: cdcvec capture | worker | sink: the stages joined by Kafka topics
 * (docs/KAFKA.md). Options from one property table per command; librdkafka properties with
 * -X key=value (repeatable) or --kafka-config FILE; secrets from the environment only. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_conf.h"
#include "../common/cv_log.h"
#include "../ingest/ingest.h"
#include "../kafka/client.h"
#include "../kafka/kafka.h"
#include "cli.h"

typedef struct {
    const char *source, *table, *text_column, *template_, *to, *from, *format, *slot, *publication, *group,
        *dead_letter, *key_columns, *sink, *embed, *model, *device, *http, *kafka_config, *on_error, *state,
        *ns, *point_ids;
    long batch_rows, threads, resnapshot, wal_warn_mb, chunk_max_tokens, chunk_overlap, chunk_cache_mb;
    double batch_ms, ready_lag_s, broker_down_s;
    cv_cli_http hl;
} kconf;

#define F(x) offsetof(kconf, x)
#define P_KCONF                                                                                              \
    {                                                                                                        \
        "kafka-config", "CDCVEC_KAFKA_CONFIG", CV_CONF_STR, "", 0, 0, F(kafka_config),                       \
            "a librdkafka properties file (key=value lines; may hold secrets); -X key=value sets one "       \
            "property"                                                                                       \
    }
#define P_BATCH(rows)                                                                                        \
    {"batch-rows",                                                                                           \
     "CDCVEC_BATCH_ROWS",                                                                                    \
     CV_CONF_INT,                                                                                            \
     rows,                                                                                                   \
     1,                                                                                                      \
     100000,                                                                                                 \
     F(batch_rows),                                                                                          \
     "changes per batch (whole source transactions): produced, acknowledged, then confirmed to the slot"},   \
    {                                                                                                        \
        "batch-ms", "CDCVEC_BATCH_MS", CV_CONF_DOUBLE, "5", 0, 60000, F(batch_ms),                           \
            "longest a committed change waits for its batch, in milliseconds (a batch costs capture one "    \
            "acknowledgement wait and one small write: the workers batch for the model)"                     \
    }
#define P_ROWS(rows)                                                                                         \
    {                                                                                                        \
        "batch-rows", "CDCVEC_BATCH_ROWS", CV_CONF_INT, rows, 1, 100000, F(batch_rows),                      \
            "most messages per batch (a batch is what has arrived: an idle stage does not wait to fill it)"  \
    }
#define P_HTTP(what)                                                                                         \
    { "http", "CDCVEC_STAGE_HTTP", CV_CONF_STR, "", 0, 0, F(http), "host:port for " what " (empty: none)" }
#define P_MODEL                                                                                              \
    {"embed",     "CDCVEC_EMBED",                                                                            \
     CV_CONF_STR, "",                                                                                        \
     0,           0,                                                                                         \
     F(embed),    "nng URL of a remote cdcvec serve (empty: the model runs in-process)"},                    \
        {"model", "CDCVEC_MODEL_DIR", CV_CONF_STR, "", 0, 0, F(model), "model folder"},                      \
        {"device", "CDCVEC_DEVICE", CV_CONF_STR, "auto", 0, 0, F(device), "auto, cpu or cuda"},              \
        {"threads", "CDCVEC_THREADS", CV_CONF_INT, "0", 0, 256, F(threads), "CPU threads; 0: all"},          \
        P_HTTP("/metrics, /healthz and /readyz (in-process model only)")
#define P_BROKER_DOWN                                                                                        \
    {                                                                                                        \
        "broker-down-s", "CDCVEC_BROKER_DOWN_S", CV_CONF_DOUBLE, "60", 0.5, 86400, F(broker_down_s),         \
            "seconds without a reachable Kafka broker after which the stage logs an error "                  \
            "(event=kafka_brokers_unreachable) and /readyz answers 503 (cdcvec_kafka_broker_up shows it "    \
            "at once); the stage keeps reconnecting"                                                         \
    }
#define P_TUTORIAL                                                                                           \
    {"key-columns",                                                                                          \
     "CDCVEC_KEY_COLUMNS",                                                                                   \
     CV_CONF_STR,                                                                                            \
     "id",                                                                                                   \
     0,                                                                                                      \
     0,                                                                                                      \
     F(key_columns),                                                                                         \
     "the tutorial's messages (which do not name an insert's key): key columns, comma-separated"},           \
    {                                                                                                        \
        "text-column", "CDCVEC_TEXT_COLUMN", CV_CONF_STR, "description", 0, 0, F(text_column),               \
            "the tutorial's messages: the column embedded"                                                   \
    }

static const cv_conf_prop CAPTURE[] = {
    {"source", "CDCVEC_SOURCE", CV_CONF_STR, "", 0, 0, F(source),
     "source database: libpq connection string or postgres:// URI (required; a password belongs in "
     "PGPASSWORD "
     "or ~/.pgpass)"},
    {"table", "CDCVEC_TABLE", CV_CONF_STR, "public.books", 0, 0, F(table), "table to capture, schema.table"},
    {"text-column", "CDCVEC_TEXT_COLUMN", CV_CONF_STR, "description", 0, 0, F(text_column),
     "column whose text the workers embed"},
    {"template", "CDCVEC_TEMPLATE", CV_CONF_STR, "", 0, 0, F(template_),
     "embed a template of columns instead, e.g. '{name}: {description}'"},
    {"to", "CDCVEC_TO", CV_CONF_STR, "", 0, 0, F(to), "kafka://host:port/topic the changes go to (required)"},
    {"format", "CDCVEC_FORMAT", CV_CONF_STR, "cdcvec", 0, 0, F(format),
     "cdcvec (docs/KAFKA.md) or quix (the tutorial's wal2json v1 messages, docs/TUTORIAL_FORMAT.md)"},
    {"slot", "CDCVEC_SLOT", CV_CONF_STR, "", 0, 0, F(slot),
     "replication slot (empty: cdcvec_capture_<database>_<schema>_<table>_<hash>, unique per database, table "
     "and topic; an earlier version's cdcvec_capture_<schema>_<table>_<hash> of this database is kept)"},
    {"publication", "CDCVEC_PUBLICATION", CV_CONF_STR, "", 0, 0, F(publication),
     "publication (empty: the slot's name)"},
    P_BATCH("512"),
    {"resnapshot", NULL, CV_CONF_INT, "0", 0, 1, F(resnapshot),
     "1: drop the slot and send every row again from a new snapshot"},
    {"http", "CDCVEC_STAGE_HTTP", CV_CONF_STR, "", 0, 0, F(http),
     "host:port for /metrics, /healthz and /readyz (empty: none)"},
    {"wal-warn-mb", "CDCVEC_WAL_WARN_MB", CV_CONF_INT, "1024", 1, 100000000, F(wal_warn_mb),
     "WAL the slot keeps on the source, in MB, above which capture warns and /readyz answers 503"},
    {"ready-lag-s", "CDCVEC_READY_LAG_S", CV_CONF_DOUBLE, "60", 0.1, 86400, F(ready_lag_s),
     "/readyz answers 503 while the oldest committed change not yet produced is older than this, in "
     "seconds"},
    P_BROKER_DOWN,
    CV_CLI_HTTP_PROPS(kconf),
    P_KCONF,
};

static const cv_conf_prop WORKER[] = {
    {"from", "CDCVEC_FROM", CV_CONF_STR, "", 0, 0, F(from),
     "kafka://host:port/topic of the changes (required)"},
    {"to", "CDCVEC_TO", CV_CONF_STR, "", 0, 0, F(to),
     "kafka://host:port/topic the embeddings go to (required)"},
    {"group", "CDCVEC_GROUP", CV_CONF_STR, "cdcvec-workers", 0, 0, F(group),
     "consumer group: the workers of one group split the partitions"},
    {"format", "CDCVEC_FORMAT", CV_CONF_STR, "cdcvec", 0, 0, F(format),
     "what is produced: cdcvec or quix (the tutorial's embeddings message); either is consumed"},
    {"dead-letter", "CDCVEC_DEAD_LETTER", CV_CONF_STR, "cdcvec-dead-letters", 0, 0, F(dead_letter),
     "topic (same brokers) for messages that cannot be read or embedded, with the reason"},
    P_TUTORIAL,
    P_ROWS("256"),
    {"chunk-max-tokens", "CDCVEC_CHUNK_MAX_TOKENS", CV_CONF_INT, "0", 0, 100000, F(chunk_max_tokens),
     "0: one vector per text (as cdcvec sync); 16 or more: each text is cut into chunks of at most this many "
     "of the model's word pieces, one vector each, sent with their hashes and offsets (the sink stores one "
     "row per key and chunk and keeps the vectors of unchanged chunks; docs/KAFKA.md). In-process model "
     "and --format cdcvec only; every worker of a group must use the same value"},
    {"chunk-overlap", "CDCVEC_CHUNK_OVERLAP", CV_CONF_INT, "32", 0, 50000, F(chunk_overlap),
     "with --chunk-max-tokens: word pieces of a chunk's end repeated at the start of the next, at most half "
     "of --chunk-max-tokens"},
    {"chunk-cache-mb", "CDCVEC_CHUNK_CACHE_MB", CV_CONF_INT, "64", 0, 65536, F(chunk_cache_mb),
     "with --chunk-max-tokens: memory for the vectors of the chunks embedded last, by chunk hash, in MB "
     "(64: about 42,000 chunks at 384 dimensions): an edit re-embeds only the chunks it changed while the "
     "cache holds the others (a worker that restarts, or takes over a partition, embeds them once); 0: "
     "every chunk of a changed text is embedded"},
    P_MODEL,
    P_BROKER_DOWN,
    CV_CLI_HTTP_PROPS(kconf),
    P_KCONF,
};

static const cv_conf_prop SINK[] = {
    {"from", "CDCVEC_FROM", CV_CONF_STR, "", 0, 0, F(from),
     "kafka://host:port/topic of the embeddings (required)"},
    {"sink", "CDCVEC_SINK", CV_CONF_STR, "", 0, 0, F(sink),
     "the store (required): a pgvector database (libpq connection string or postgres:// URI), "
     "qdrant://host:port/COLLECTION or upstash:// (docs/CONFIG.md)"},
    {"state", "CDCVEC_STATE", CV_CONF_STR, "", 0, 0, F(state),
     "Qdrant/Upstash: a PostgreSQL database keeping the dead letters and the applied position (empty: "
     "dead letters are logged with their key and reason; the offsets are the position)"},
    {"namespace", "CDCVEC_NAMESPACE", CV_CONF_STR, "", 0, 0, F(ns),
     "Upstash namespace (empty: the table's name)"},
    CV_CLI_POINT_IDS_PROP(kconf),
    {"group", "CDCVEC_GROUP", CV_CONF_STR, "cdcvec-sink", 0, 0, F(group),
     "consumer group keeping the offsets"},
    {"dead-letter", "CDCVEC_DEAD_LETTER", CV_CONF_STR, "cdcvec-dead-letters", 0, 0, F(dead_letter),
     "topic (same brokers) for messages that cannot be read, with the reason"},
    {"on-error", "CDCVEC_ON_ERROR", CV_CONF_STR, "dead-letter", 0, 0, F(on_error),
     "a change the store cannot take: dead-letter (cdcvec.dead_letters) or stop (exit 1)"},
    P_TUTORIAL,
    P_ROWS("512"),
    P_HTTP("/metrics, /healthz, /readyz and /wait (the sink stage loads no model: the vectors come with "
           "the messages)"),
    P_BROKER_DOWN,
    CV_CLI_HTTP_PROPS(kconf),
    P_KCONF,
};
#undef F

static volatile sig_atomic_t stop_flag;

/* -X properties, the --kafka-config file, then the environment's secrets. */
static int kafka_props(cv_kafka_props *p, const kconf *c, int from_argv_rc) {
    if (from_argv_rc) return -1;
    if (*c->kafka_config && cv_kafka_props_from_file(p, c->kafka_config)) return -1;
    return cv_kafka_props_from_env(p);
}

static int need(const char *cmd, const char *opt, const char *v, const char *example) {
    if (v && *v) return 0;
    fprintf(stderr, "cdcvec %s: --%s is required, e.g. --%s %s\n", cmd, opt, opt, example);
    return -1;
}

static int parse_format(const char *cmd, const char *f, int *quix) {
    if (strcmp(f, "cdcvec") == 0)
        *quix = 0;
    else if (strcmp(f, "quix") == 0)
        *quix = 1;
    else {
        fprintf(stderr, "cdcvec %s: --format: expected cdcvec or quix, got '%s'\n", cmd, f);
        return -1;
    }
    return 0;
}

int cv_cmd_kafka(int argc, char **argv, const char *which) {
    const cv_conf_prop *props = !strcmp(which, "capture")  ? CAPTURE
                                : !strcmp(which, "worker") ? WORKER
                                                           : SINK;
    int nprops = !strcmp(which, "capture")  ? (int)(sizeof CAPTURE / sizeof *CAPTURE)
                 : !strcmp(which, "worker") ? (int)(sizeof WORKER / sizeof *WORKER)
                                            : (int)(sizeof SINK / sizeof *SINK);
    if (argc > 1 && strcmp(argv[1], "--config-markdown") == 0) {
        cv_conf_markdown(stdout, props, nprops);
        return 0;
    }
    cv_kafka_props kp = {0};
    int xrc = cv_kafka_props_from_argv(&kp, &argc, argv);
    kconf c = {0}; /* fields another command's table does not list stay 0 (defaults) */
    char usage[512];
    snprintf(
        usage, sizeof usage, "usage: cdcvec %s [options] [-X librdkafka.property=value ...]\n\n%s", which,
        !strcmp(which, "capture")
            ? "PostgreSQL logical replication into a Kafka topic, one message per row change."
        : !strcmp(which, "worker")
            ? "Embeds the texts of a change topic into an embeddings topic (one consumer group of workers)."
            : "Applies an embeddings topic to a vector store.");
    int rc = xrc ? 2 : cv_conf_parse(props, nprops, &c, argc, argv, usage);
    if (rc) {
        cv_kafka_props_free(&kp);
        return rc == 1 ? 0 : 2;
    }
    if (kafka_props(&kp, &c, 0)) {
        cv_kafka_props_free(&kp);
        return 2;
    }
    cv_sync_opts o = {.text_column = c.text_column,
                      .batch_rows = c.batch_rows,
                      .batch_ms = c.batch_ms,
                      .wal_warn_mb = c.wal_warn_mb,
                      .ready_lag_s = c.ready_lag_s,
                      .broker_down_s = c.broker_down_s};
    int quix = 0;
    char *key = NULL;
    rc = 2;
    cv_cli_on_stop(&stop_flag);
    if (!strcmp(which, "capture")) {
        if (need(which, "source", c.source, "postgres://user@host/db") ||
            need(which, "to", c.to, "kafka://localhost:9092/postgres-cdc-data") ||
            parse_format(which, c.format, &quix) || cv_cli_check_pg(which, "source", c.source))
            goto out;
        o.source = c.source, o.table = c.table, o.template_ = c.template_, o.slot = c.slot,
        o.publication = c.publication, o.resnapshot = (int)c.resnapshot, o.http = c.http;
        cv_cli_http_opts(&c.hl, &o.http_opts);
        if (cv_cli_api_key(which, &key)) goto out; /* --metrics-auth 1 puts /metrics behind it */
        o.api_key = key;
        cv_capture_opts k = {.to = c.to, .quix = quix, .props = &kp};
        rc = cv_capture_run(&o, &k, &stop_flag);
        goto out;
    }
    if (c.device && cv_cli_parse_device(c.device, &o.device)) goto out; /* none: the sink (no model) */
    o.embed = c.embed, o.model_dir = c.model, o.threads = (int)c.threads, o.http = c.http;
    cv_cli_http_opts(&c.hl, &o.http_opts);
    if (cv_cli_api_key(which, &key)) goto out; /* its HTTP port serves embeddings: one rule (CONFIG.md) */
    o.api_key = key;
    if (!strcmp(which, "worker")) {
        if (need(which, "from", c.from, "kafka://localhost:9092/postgres-cdc-data") ||
            need(which, "to", c.to, "kafka://localhost:9092/embeddings") ||
            parse_format(which, c.format, &quix))
            goto out;
        o.table = "kafka";
        cv_worker_opts w = {.from = c.from,
                            .to = c.to,
                            .group = c.group,
                            .dead_letter = c.dead_letter,
                            .quix = quix,
                            .key_columns = c.key_columns,
                            .batch_rows = c.batch_rows,
                            .chunk_max_tokens = (int)c.chunk_max_tokens,
                            .chunk_overlap = (int)c.chunk_overlap,
                            .chunk_cache_mb = (int)c.chunk_cache_mb,
                            .props = &kp};
        rc = cv_worker_run(&o, &w, &stop_flag);
    } else {
        if (need(which, "from", c.from, "kafka://localhost:9092/embeddings") ||
            need(which, "sink", c.sink, "postgres://user@host/db") || cv_cli_check_sink(which, c.sink) ||
            cv_cli_check_pg(which, "state", c.state))
            goto out;
        if (strcmp(c.on_error, "stop") == 0)
            o.on_error_stop = 1;
        else if (strcmp(c.on_error, "dead-letter") != 0) {
            fprintf(stderr, "cdcvec sink: --on-error: expected dead-letter or stop, got '%s'\n", c.on_error);
            goto out;
        }
        o.sink = c.sink, o.table = "kafka", o.ns = c.ns;
        if (cv_cli_point_ids(which, c.point_ids, &o.uuid_ids)) goto out;
        cv_sink_stage_opts k = {.from = c.from,
                                .group = c.group,
                                .dead_letter = c.dead_letter,
                                .key_columns = c.key_columns,
                                .batch_rows = c.batch_rows,
                                .state = c.state,
                                .props = &kp};
        rc = cv_sink_stage_run(&o, &k, &stop_flag);
    }
out:
    cv_kafka_props_free(&kp);
    free(key);
    return rc;
}
