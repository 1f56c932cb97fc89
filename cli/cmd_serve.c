/* cmd_serve.c: cdcvec serve: the inference server until SIGTERM/SIGINT, then a drain; one model
 * or several (--model repeated). */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/cv_conf.h"
#include "../common/cv_log.h"
#include "../server/server.h"
#include "cli.h"

typedef struct {
    const char *listen, *http, *model, *device, *model_id;
    long threads, batch_tokens, max_queue_tokens, max_inflight, max_message_bytes, max_texts, max_text_bytes;
    long drain_timeout_ms;
    double batch_deadline_ms;
    cv_cli_http hl;
} serve_conf;

#define F(x) offsetof(serve_conf, x)
static const cv_conf_prop PROPS[] = {
    {"listen", "CDCVEC_LISTEN", CV_CONF_STR, "tcp://127.0.0.1:5557", 0, 0, F(listen),
     "nng address for the binary protocol (tcp://, ipc://); empty: none"},
    {"http", "CDCVEC_HTTP", CV_CONF_STR, "127.0.0.1:9464", 0, 0, F(http),
     "host:port for HTTP (/healthz, /metrics, /embed, /v1/embeddings); empty: none"},
    {"model", "CDCVEC_MODEL_DIR", CV_CONF_STR, "", 0, 0, F(model),
     "model folder (empty: $CDCVEC_MODEL_DIR, else ~/.cache/cdcvec/ and the model's name); repeat it to "
     "serve several models, each loaded once: /v1/embeddings answers by the request's \"model\" (the "
     "folder's name, or the model's id), the first also answers the nng protocol and /embed"},
    {"model-id", "CDCVEC_MODEL_ID", CV_CONF_STR, "", 0, 0, F(model_id),
     "name of the first model in /metrics and /v1/embeddings (empty: the model's id)"},
    {"device", "CDCVEC_DEVICE", CV_CONF_STR, "auto", 0, 0, F(device), "auto, cpu or cuda"},
    {"threads", "CDCVEC_THREADS", CV_CONF_INT, "0", 0, 256, F(threads), "CPU threads; 0: all online CPUs"},
    {"batch-tokens", "CDCVEC_BATCH_TOKENS", CV_CONF_INT, "16384", 256, 1 << 22, F(batch_tokens),
     "token budget of one batch"},
    {"batch-deadline-ms", "CDCVEC_BATCH_DEADLINE_MS", CV_CONF_DOUBLE, "2", 0, 10000, F(batch_deadline_ms),
     "longest wait for a batch to fill, in milliseconds"},
    {"max-queue-tokens", "CDCVEC_MAX_QUEUE_TOKENS", CV_CONF_INT, "262144", 256, 1L << 30, F(max_queue_tokens),
     "tokens queued before requests are answered \"busy\""},
    {"max-inflight", "CDCVEC_MAX_INFLIGHT", CV_CONF_INT, "256", 1, 65536, F(max_inflight),
     "requests served at once on the nng socket (one context each)"},
    {"max-message-bytes", "CDCVEC_MAX_MESSAGE_BYTES", CV_CONF_INT, "16777216", 1024, 1L << 30,
     F(max_message_bytes), "largest nng request frame, in bytes (HTTP bodies: --http-max-body-bytes)"},
    {"max-texts", "CDCVEC_MAX_TEXTS", CV_CONF_INT, "2048", 1, 1 << 20, F(max_texts), "texts per request"},
    {"max-text-bytes", "CDCVEC_MAX_TEXT_BYTES", CV_CONF_INT, "1048576", 1, 1L << 30, F(max_text_bytes),
     "bytes per text"},
    {"drain-timeout-ms", "CDCVEC_DRAIN_TIMEOUT_MS", CV_CONF_INT, "10000", 0, 3600000, F(drain_timeout_ms),
     "on SIGTERM, how long to wait for in-flight requests"},
    CV_CLI_HTTP_PROPS(serve_conf),
};
#undef F
#define NPROPS ((int)(sizeof PROPS / sizeof PROPS[0]))

static volatile sig_atomic_t stop_requested;

/* The values of every --model in argv, in order (the table keeps the last one only): *dirs
 * malloc'd (caller frees), pointing into argv. Every option takes a value, so one that is not
 * --model skips the next argument unless written --name=value. */
static int model_args(int argc, char **argv, const char ***dirs) {
    int n = 0;
    *dirs = calloc((size_t)argc + 1, sizeof **dirs);
    if (!*dirs) return 0;
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0) continue;
        int eq = strchr(arg, '=') != NULL;
        if (!strcmp(arg, "--model") && a + 1 < argc)
            (*dirs)[n++] = argv[++a];
        else if (!strncmp(arg, "--model=", 8))
            (*dirs)[n++] = arg + 8;
        else if (!eq)
            a++;
    }
    return n;
}

static void free_models(cv_minilm **more, int n) {
    for (int i = 0; i < n; i++)
        cv_minilm_free(more[i]);
    free(more);
}

int cv_cmd_serve(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--config-markdown") == 0) {
        cv_conf_markdown(stdout, PROPS, NPROPS);
        cv_cli_api_key_markdown(stdout);
        return 0;
    }
    serve_conf c;
    int rc = cv_conf_parse(
        PROPS, NPROPS, &c, argc, argv,
        "usage: cdcvec serve [options]\n\nServes embeddings over nng (docs/PROTOCOL.md) and HTTP "
        "until SIGTERM or SIGINT, then drains.\nThe HTTP API key is read from CDCVEC_API_KEY or the file "
        "named "
        "by CDCVEC_API_KEY_FILE.");
    if (rc) return rc == 1 ? 0 : 2;
    char *key;
    if (cv_cli_api_key("serve", &key)) return 2;
    cv_device dev;
    if (cv_cli_parse_device(c.device, &dev)) return 2;
    const char **dirs;
    int ndirs = model_args(argc, argv, &dirs);
    cv_minilm *m, **more = calloc((size_t)ndirs + 1, sizeof *more);
    int nmore = 0;
    const char *first = ndirs ? dirs[0] : *c.model ? c.model : cv_minilm_default_dir();
    if (!more || cv_cli_load_model(first, (int)c.threads, dev, CV_PRECISION_FP32, &m)) {
        free(dirs), free(more), free(key);
        return 1;
    }
    for (; nmore + 1 < ndirs; nmore++) /* each model loaded once, with its own batcher */
        if (cv_cli_load_model(dirs[nmore + 1], (int)c.threads, dev, CV_PRECISION_FP32, &more[nmore])) {
            free_models(more, nmore), free(dirs), free(key);
            cv_minilm_free(m);
            return 1;
        }
    free(dirs);
    cv_server_opts o = {
        .listen = c.listen,
        .http = c.http,
        .batch_tokens = c.batch_tokens,
        .batch_deadline_ms = c.batch_deadline_ms,
        .max_queue_tokens = c.max_queue_tokens,
        .max_inflight = (int)c.max_inflight,
        .max_message_bytes = c.max_message_bytes,
        .max_texts = (int)c.max_texts,
        .max_text_bytes = c.max_text_bytes,
        .api_key = key,
        .model_id = c.model_id,
        .more_models = more,
        .nmore = nmore,
    };
    cv_cli_http_opts(&c.hl, &o.http_opts);
    cv_cli_on_stop(&stop_requested);
    cv_server *s;
    if (cv_server_start(m, &o, &s)) {
        cv_minilm_free(m);
        free_models(more, nmore);
        free(key);
        return 1;
    }
    while (!stop_requested) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    cv_info("event=stopping reason=signal drain_timeout_ms=%ld", c.drain_timeout_ms);
    int left = cv_server_drain(s, (int)c.drain_timeout_ms);
    cv_server_free(s);
    cv_minilm_free(m);
    free_models(more, nmore);
    free(key);
    return left ? 1 : 0;
}
