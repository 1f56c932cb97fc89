/* cli.h: subcommands of the cdcvec binary and the options they share. */
#ifndef CV_CLI_H
#define CV_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

#include "../models/minilm.h"
#include "../server/server.h"

int cv_cmd_embed(int argc, char **argv);
int cv_cmd_bench(int argc, char **argv);
int cv_cmd_serve(int argc, char **argv);
int cv_bench_server(int argc, char **argv);
/* cdcvec bench sink: a store's write throughput with precomputed vectors (cmd_bench_sink.c). */
int cv_bench_sink(int argc, char **argv);
/* sync, backfill or search (which) */
int cv_cmd_sync(int argc, char **argv, const char *which);
/* cdcvec wait --lsn: read-your-writes through a running sync's /wait (cmd_wait.c). */
int cv_cmd_wait(int argc, char **argv);
/* capture | worker | sink (cmd_kafka.c) */
int cv_cmd_kafka(int argc, char **argv, const char *which);

/* dsn_check.c: 0 when v (an option's value; empty: unset) is a PostgreSQL connection string
 * (postgres:// or postgresql:// URI, key=value pairs that libpq parses, or a database name of
 * [A-Za-z0-9_.-]), or for --sink also qdrant://, qdrants:// or upstash://; else -1 after printing what is
 * wrong and the accepted forms (the caller exits 2). */
int cv_cli_check_pg(const char *cmd, const char *opt, const char *v);
int cv_cli_check_sink(const char *cmd, const char *v);

/* SIGTERM and SIGINT set *flag (the handler does nothing else); SIGPIPE is ignored. */
void cv_cli_on_stop(volatile sig_atomic_t *flag);

/* Parses auto|cpu|cuda; returns 0 on success. */
int cv_cli_parse_device(const char *s, cv_device *out);

/* --point-ids: a property for a command's conf struct T with `const char *point_ids;`, and its
 * parser (auto: 0, uuid: 1; -1 after printing an error naming the command). */
#define CV_CLI_POINT_IDS_PROP(T)                                                                             \
    {                                                                                                        \
        "point-ids", "CDCVEC_POINT_IDS", CV_CONF_STR, "auto", 0, 0, offsetof(T, point_ids),                  \
            "Qdrant point ids: auto (the key itself when it is one integer column, else a UUID of table "    \
            "and "                                                                                           \
            "key) or uuid (always the UUID: several tables with integer keys in one collection; a table "    \
            "whose integer ids would meet another table's there is refused)"                                 \
    }
int cv_cli_point_ids(const char *cmd, const char *s, int *uuid);

/* Parses a positive integer option value in [lo, hi]; prints an error naming opt. */
int cv_cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);

/* Loads the model and prints a fix-it hint when the files are missing. */
int cv_cli_load_model(const char *dir, int threads, cv_device dev, cv_precision precision, cv_minilm **out);
/* "fp32" or "bf16"; -1 after printing an error naming the option. */
int cv_cli_parse_precision(const char *s, cv_precision *out);

/* The HTTP front door's options (cv_http_opts), one set for serve and sync: a command's conf
 * struct T holds `cv_cli_http hl;` and its property table lists CV_CLI_HTTP_PROPS(T). */
typedef struct {
    long max_body_bytes, body_memory_bytes, max_parses, max_connections, max_per_client, header_timeout_s,
        body_timeout_s, idle_timeout_s, max_header_bytes, threads, metrics_auth, min_body_rate;
    const char *trusted_proxies, *allowed_hosts, *cors_origins;
} cv_cli_http;
/* clang-format off */
#define CV_CLI_HTTP_PROPS(T)                                                                             \
    {"http-max-body-bytes", "CDCVEC_HTTP_MAX_BODY_BYTES", CV_CONF_INT, "16777216", 1024, 1L << 30,      \
     offsetof(T, hl.max_body_bytes),                                                                    \
     "largest HTTP request body: a larger one is answered 413 before it is read"},                      \
    {"http-body-memory-bytes", "CDCVEC_HTTP_BODY_MEMORY_BYTES", CV_CONF_INT, "67108864", 1024, 1L << 34, \
     offsetof(T, hl.body_memory_bytes),                                                                 \
     "request bodies held at once, reserved by bytes received (a quarter kept for bodies that "        \
     "arrive whole, a quarter per client); beyond: 503 with Retry-After"},                              \
    {"http-max-parses", "CDCVEC_HTTP_MAX_PARSES", CV_CONF_INT, "2", 1, 1024, offsetof(T, hl.max_parses), \
     "request bodies decoded at once; more: 503 with Retry-After"},                                     \
    {"http-max-connections", "CDCVEC_HTTP_MAX_CONNECTIONS", CV_CONF_INT, "1000", 1, 1000000,            \
     offsetof(T, hl.max_connections), "HTTP connections at once (at most the open-file limit - 64)"},   \
    {"http-max-per-client", "CDCVEC_HTTP_MAX_PER_CLIENT", CV_CONF_INT, "128", -1, 1000000,              \
     offsetof(T, hl.max_per_client), "HTTP connections at once from one IP address; -1: no limit"},    \
    {"http-header-timeout-s", "CDCVEC_HTTP_HEADER_TIMEOUT_S", CV_CONF_INT, "10", 1, 3600,               \
     offsetof(T, hl.header_timeout_s),                                                                  \
     "a request line and its headers must arrive within this many seconds (of the connection's "        \
     "opening or the previous answer), or the connection is closed"},                                  \
    {"http-body-timeout-s", "CDCVEC_HTTP_BODY_TIMEOUT_S", CV_CONF_INT, "60", 1, 3600,                   \
     offsetof(T, hl.body_timeout_s), "a request body must arrive within this many seconds"},            \
    {"http-idle-timeout-s", "CDCVEC_HTTP_IDLE_TIMEOUT_S", CV_CONF_INT, "30", 1, 86400,                  \
     offsetof(T, hl.idle_timeout_s),                                                                    \
     "an HTTP connection without traffic is closed after this many seconds"},                           \
    {"http-max-header-bytes", "CDCVEC_HTTP_MAX_HEADER_BYTES", CV_CONF_INT, "32768", 4096, 1 << 24,      \
     offsetof(T, hl.max_header_bytes),                                                                  \
     "memory for a request line and its headers: a longer request line is answered 414, longer "        \
     "headers 431"},                                                                                    \
    {"http-threads", "CDCVEC_HTTP_THREADS", CV_CONF_INT, "2", 1, 256, offsetof(T, hl.threads),          \
     "HTTP polling threads (each serves many connections; none waits for the model)"},                  \
    {"metrics-auth", "CDCVEC_METRICS_AUTH", CV_CONF_INT, "0", 0, 1, offsetof(T, hl.metrics_auth),       \
     "1: /metrics and /healthz need the API key too (docs/CONFIG.md, Authentication)"},               \
    {"http-min-body-rate", "CDCVEC_HTTP_MIN_BODY_RATE", CV_CONF_INT, "32768", 1, 1L << 30,            \
     offsetof(T, hl.min_body_rate),                                                                     \
     "bytes per second a request body must keep up after a 2 s grace, or its connection is closed"},   \
    {"http-trusted-proxies", "CDCVEC_HTTP_TRUSTED_PROXIES", CV_CONF_STR, "", 0, 0,                       \
     offsetof(T, hl.trusted_proxies),                                                                   \
     "comma list of proxy addresses or CIDRs (e.g. 172.16.0.0/12) whose X-Forwarded-For / Forwarded "   \
     "name the client for the per-client limits; empty: none trusted"},                                 \
    {"http-allowed-hosts", "CDCVEC_HTTP_ALLOWED_HOSTS", CV_CONF_STR, "", 0, 0,                           \
     offsetof(T, hl.allowed_hosts),                                                                     \
     "comma list of names accepted in the Host header besides IP addresses, localhost and the --http "  \
     "host (DNS rebinding); .example.com: any subdomain; *: any"},                                      \
    {"http-cors-origins", "CDCVEC_HTTP_CORS_ORIGINS", CV_CONF_STR, "", 0, 0,                             \
     offsetof(T, hl.cors_origins),                                                                      \
     "comma list of web origins (https://app.example.com) allowed to call the API from a browser "      \
     "(CORS, OPTIONS preflight); *: any; empty: none"}
/* clang-format on */

/* cv_cli_http -> cv_http_opts. */
void cv_cli_http_opts(const cv_cli_http *c, cv_http_opts *o);
/* The HTTP API key from CDCVEC_API_KEY or the file named by CDCVEC_API_KEY_FILE (one line; the
 * newline is dropped); *key is NULL when neither is set, else owned by the caller. Returns 0,
 * or -1 after printing what is wrong (both set, unreadable or empty file). */
int cv_cli_api_key(const char *cmd, char **key);
/* The environment-only rows of the configuration table (the API key). */
void cv_cli_api_key_markdown(FILE *f);

#endif
