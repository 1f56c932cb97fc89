/* cmd_kafka.c: cdcvec capture | worker | sink: the stages joined by Kafka topics
 * (docs/KAFKA.md). Options from one property table per command; librdkafka properties with
 * -X key=value (repeatable) or --kafka-config FILE; secrets from the environment only. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_conf.h"
#include "../common/cv_log.h"
#include "../ingest/ingest.h"
#include "../kafka/client.h"
#include "../kafka/kafka.h"
#include "cli.h"
#include "pipeline.h"

typedef struct {
    const char *source, *table, *text_column, *template_, *to, *from, *format, *slot, *publication, *group,
        *dead_letter, *key_columns, *sink, *embed, *model, *device, *http, *kafka_config, *on_error, *state,
        *ns, *point_ids, *config, *topic, *emb_topic;
    long batch_rows, threads, resnapshot, wal_warn_mb, chunk_max_tokens, chunk_overlap, chunk_cache_mb;
    double batch_ms, ready_lag_s, broker_down_s;
    cv_cli_http hl;
} kconf;

#define F(x) offsetof(kconf, x)
#define P_CONFIG                                                                                             \
    {                                                                                                        \
        "config", "CDCVEC_CONFIG", CV_CONF_STR, "", 0, 0, F(config),                                         \
            "pipeline file (YAML, as cdcvec sync --config reads it; docs/KAFKA.md, \"Many tables\"): every " \
            "table of the file, each with its own topic: and embeddings_topic:; --table picks one"           \
    }
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
    P_CONFIG,
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
    P_CONFIG,
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
    P_CONFIG,
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
/* Keys of the pipeline file only (each table's topics), beside the three stages' options. */
static const cv_conf_prop FILE_ONLY[] = {
    {"topic", NULL, CV_CONF_STR, "", 0, 0, F(topic),
     "the table's change topic, kafka://HOST:PORT/TOPIC: what capture writes (its --to) and the workers read "
     "(their --from); one topic per table (capture, worker)"},
    {"embeddings-topic", NULL, CV_CONF_STR, "", 0, 0, F(emb_topic),
     "the table's embeddings topic, kafka://HOST:PORT/TOPIC: what the workers write (their --to) and the "
     "sink reads (its --from); one per table (worker, sink)"},
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

/* ---- --config FILE: the pipeline file's tables (docs/KAFKA.md, "Many tables") ---- */

#define NFILE                                                                                                \
    ((int)(sizeof CAPTURE / sizeof *CAPTURE + sizeof WORKER / sizeof *WORKER + sizeof SINK / sizeof *SINK +  \
           sizeof FILE_ONLY / sizeof *FILE_ONLY))

/* One file for the three stages: every stage reads the keys of all of them (a key another stage
 * uses is accepted and left to it). */
static int file_props(cv_conf_prop *out) {
    const cv_conf_prop *t[] = {CAPTURE, WORKER, SINK, FILE_ONLY};
    int len[] = {(int)(sizeof CAPTURE / sizeof *CAPTURE), (int)(sizeof WORKER / sizeof *WORKER),
                 (int)(sizeof SINK / sizeof *SINK), (int)(sizeof FILE_ONLY / sizeof *FILE_ONLY)};
    int n = 0;
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < len[k]; i++) {
            int dup = 0;
            for (int j = 0; j < n && !dup; j++)
                dup = !strcmp(out[j].name, t[k][i].name);
            if (!dup) out[n++] = t[k][i];
        }
    return n;
}

/* Where a Kafka option stands in the file (pipeline.h). The options that differ from one
 * stage's process to the next (--to, --from, --group, --http ...) stay on the command line. */
static unsigned char kscope(const char *name) {
    static const char *const table[] = {
        "table",     "text-column", "template",   "topic",    "embeddings-topic", "sink",
        "namespace", "point-ids",   "batch-rows", "batch-ms", "key-columns",      NULL};
    static const char *const cli[] = {
        "config",        "to",           "from", "group", "http", "resnapshot", "chunk-max-tokens",
        "chunk-overlap", "metrics-auth", NULL};
    if (!strcmp(name, "source")) return CV_PIPE_SOURCE;
    for (int i = 0; table[i]; i++)
        if (!strcmp(name, table[i])) return CV_PIPE_TABLE;
    for (int i = 0; cli[i]; i++)
        if (!strcmp(name, cli[i])) return CV_PIPE_CLI;
    if (!strncmp(name, "http-", 5)) return CV_PIPE_CLI;
    return CV_PIPE_PROCESS;
}

static const char *kchoice(const char *name) {
    return !strcmp(name, "format")      ? "cdcvec|quix"
           : !strcmp(name, "on-error")  ? "dead-letter|stop"
           : !strcmp(name, "point-ids") ? "auto|uuid"
           : !strcmp(name, "device")    ? "auto|cpu|cuda"
                                        : NULL;
}

/* "schema.table" of a table as written (schema defaults to public), in buf. */
static const char *qualified(const char *t, char *buf, size_t n) {
    snprintf(buf, n, "%s%s", strchr(t, '.') ? "" : "public.", t);
    return buf;
}

/* Each table has its topics, none shared with another table. -1 after printing. */
static int check_topics(const char *which, const cv_pipeline *pl) {
    int bad = 0, need_t = strcmp(which, "sink") != 0, need_e = strcmp(which, "capture") != 0;
    for (int j = 0; j < pl->ntables; j++) {
        const kconf *a = pl->tables[j].conf;
        const char *keys[2] = {"topic", "embeddings_topic"}, *v[2] = {a->topic, a->emb_topic};
        int needed[2] = {need_t, need_e};
        for (int x = 0; x < 2; x++) {
            if (needed[x] && (!v[x] || !*v[x])) {
                fprintf(
                    stderr,
                    "cdcvec %s: %s:%d: tables[%d] (%s): %s: missing; fix: add %s: kafka://HOST:PORT/TOPIC "
                    "to the table's entry (%s)\n",
                    which, pl->file, pl->tables[j].line, j, pl->tables[j].table, keys[x], keys[x],
                    x ? "the topic the workers write its vectors to and the sink reads"
                      : "the topic capture writes its changes to and the workers read");
                bad = 1;
                continue;
            }
            for (int i = 0; i < j && v[x] && *v[x]; i++) {
                const kconf *b = pl->tables[i].conf;
                const char *w = x ? b->emb_topic : b->topic;
                if (!w || strcmp(w, v[x])) continue;
                fprintf(
                    stderr,
                    "cdcvec %s: %s:%d: tables[%d] (%s): %s: %s is also the %s of tables[%d] (%s, line %d); "
                    "fix: one topic per table (a topic holds one table's messages)\n",
                    which, pl->file, pl->tables[j].line, j, pl->tables[j].table, keys[x], v[x], keys[x], i,
                    pl->tables[i].table, pl->tables[i].line);
                bad = 1;
            }
        }
        if (a->topic && a->emb_topic && *a->topic && !strcmp(a->topic, a->emb_topic)) {
            fprintf(stderr,
                    "cdcvec %s: %s:%d: tables[%d] (%s): topic and embeddings_topic are both %s; fix: two "
                    "topics (the changes, then their vectors)\n",
                    which, pl->file, pl->tables[j].line, j, pl->tables[j].table, a->topic);
            bad = 1;
        }
    }
    return bad ? -1 : 0;
}

/* `cdcvec capture|worker|sink --config FILE`: every table of the file (or the one --table picks). */
static int run_file(const char *which, kconf *c, int argc, char **argv, cv_kafka_props *kp) {
    if ((c->to && *c->to) || (c->from && *c->from)) {
        const char *opt = c->to && *c->to ? "to" : "from";
        fprintf(stderr,
                "cdcvec %s: --%s set together with --config %s: each table's topics are in the file; fix: "
                "write topic: and embeddings_topic: in each table's entry and drop --%s\n",
                which, opt, c->config, opt);
        return 2;
    }
    cv_conf_prop props[NFILE];
    int n = file_props(props);
    unsigned char scope[NFILE];
    const char *choices[NFILE];
    for (int i = 0; i < n; i++)
        scope[i] = kscope(props[i].name), choices[i] = kchoice(props[i].name);
    cv_pipeline pl = {0};
    int rc = 2, quix = 0;
    char *key = NULL;
    int nt = 0;
    cv_sync_opts *o = NULL;
    char **groups = NULL;
    if (cv_pipeline_open(which, c->config, props, scope, choices, n, argc, argv, c, sizeof *c, &pl) ||
        (pl.table_given && cv_pipeline_pick(which, &pl, c->table)) || cv_pipeline_runnable(which, &pl) ||
        check_topics(which, &pl))
        goto out;
    nt = pl.ntables;
    const kconf *p0 = pl.tables[0].conf; /* the process's options: the same in every table */
    if (parse_format(which, p0->format ? p0->format : "cdcvec", &quix) || cv_cli_api_key(which, &key))
        goto out;
    /* kafka_config: under defaults: (the command line's, when given, was read already) */
    if (p0->kafka_config && *p0->kafka_config &&
        (!c->kafka_config || strcmp(c->kafka_config, p0->kafka_config)) &&
        cv_kafka_props_from_file(kp, p0->kafka_config))
        goto out;
    o = calloc((size_t)nt, sizeof *o);
    groups = calloc((size_t)nt, sizeof *groups);
    CV_ASSERT(o && groups);
    for (int j = 0; j < nt; j++) {
        const kconf *t = pl.tables[j].conf;
        char q[600];
        qualified(pl.tables[j].table, q, sizeof q);
        cv_buf g = {0}; /* a consumer group per table: a table's rebalance never stops another's */
        cv_buf_printf(&g, "%s.%s", c->group ? c->group : "", q);
        CV_ASSERT(!g.oom);
        groups[j] = g.p;
        o[j] = (cv_sync_opts){.source = pl.source,
                              .table = t->table,
                              .text_column = t->text_column,
                              .template_ = t->template_,
                              .batch_rows = t->batch_rows,
                              .batch_ms = t->batch_ms,
                              .wal_warn_mb = p0->wal_warn_mb,
                              .ready_lag_s = p0->ready_lag_s,
                              .broker_down_s = p0->broker_down_s,
                              .http = j ? NULL : c->http,
                              .api_key = key,
                              .pipeline = 1,
                              .where = pl.tables[j].where,
                              .columns = pl.tables[j].columns,
                              .columns_at = pl.tables[j].columns_at};
        cv_cli_http_opts(&c->hl, &o[j].http_opts);
    }
    cv_cli_on_stop(&stop_flag);
    if (!strcmp(which, "capture")) {
        if (cv_cli_check_pg(which, "source", pl.source)) goto out;
        cv_capture_opts *k = calloc((size_t)nt, sizeof *k);
        CV_ASSERT(k);
        for (int j = 0; j < nt; j++) {
            const kconf *t = pl.tables[j].conf;
            o[j].slot = p0->slot, o[j].publication = p0->publication, o[j].resnapshot = (int)c->resnapshot;
            k[j] = (cv_capture_opts){.to = t->topic, .quix = quix, .props = kp};
        }
        rc = cv_capture_run_tables(o, k, nt, &stop_flag);
        free(k);
        goto out;
    }
    if (!strcmp(which, "worker")) {
        cv_worker_opts *w = calloc((size_t)nt, sizeof *w);
        CV_ASSERT(w);
        if (p0->device && cv_cli_parse_device(p0->device, &o[0].device)) {
            free(w);
            goto out;
        }
        o[0].embed = p0->embed, o[0].model_dir = p0->model, o[0].threads = (int)p0->threads;
        for (int j = 0; j < nt; j++) {
            const kconf *t = pl.tables[j].conf;
            const cv_pipe_table *pt = &pl.tables[j];
            w[j] = (cv_worker_opts){
                .from = t->topic,
                .to = t->emb_topic,
                .group = groups[j],
                .dead_letter = p0->dead_letter,
                .quix = quix,
                .key_columns = t->key_columns,
                .batch_rows = t->batch_rows,
                .chunk_max_tokens = (int)(pt->chunk_line ? pt->chunk_max_tokens : c->chunk_max_tokens),
                .chunk_overlap = (int)(pt->chunk_line ? pt->chunk_overlap : c->chunk_overlap),
                .chunk_cache_mb = (int)p0->chunk_cache_mb,
                .props = kp};
        }
        rc = cv_worker_run_tables(o, w, nt, &stop_flag);
        free(w);
        goto out;
    }
    cv_sink_stage_opts *k = calloc((size_t)nt, sizeof *k);
    CV_ASSERT(k);
    int bad = cv_cli_check_pg(which, "state", p0->state ? p0->state : "");
    if (p0->on_error && strcmp(p0->on_error, "stop") == 0) o[0].on_error_stop = 1;
    for (int j = 0; j < nt && !bad; j++) {
        const kconf *t = pl.tables[j].conf;
        o[j].sink = t->sink && *t->sink ? t->sink : pl.source; /* store: pgvector: the source database */
        o[j].ns = t->ns;
        bad = cv_cli_check_sink(which, o[j].sink) || cv_cli_point_ids(which, t->point_ids, &o[j].uuid_ids);
        k[j] = (cv_sink_stage_opts){.from = t->emb_topic,
                                    .group = groups[j],
                                    .dead_letter = p0->dead_letter,
                                    .key_columns = t->key_columns,
                                    .batch_rows = t->batch_rows,
                                    .state = p0->state,
                                    .props = kp};
    }
    if (!bad) rc = cv_sink_stage_run_tables(o, k, nt, &stop_flag);
    free(k);
out:
    for (int j = 0; groups && j < nt; j++)
        free(groups[j]);
    free(groups), free(o), free(key);
    cv_pipeline_free(&pl);
    return rc;
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
    if (argc > 1 && strcmp(argv[1], "--pipeline-markdown") == 0) { /* one file for the three stages */
        cv_conf_prop fp[NFILE];
        unsigned char scope[NFILE];
        int n = file_props(fp);
        for (int i = 0; i < n; i++)
            scope[i] = kscope(fp[i].name);
        cv_pipeline_markdown(stdout, fp, scope, n);
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
    if (c.config && *c.config) {
        rc = run_file(which, &c, argc, argv, &kp);
        cv_kafka_props_free(&kp);
        return rc;
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
