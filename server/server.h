/* server.h: the inference server: nng REQ/REP front door (docs/PROTOCOL.md), dynamic
 * token-budget batching, and HTTP (/healthz, /metrics, /embed, /v1/embeddings). */
#ifndef CV_SERVER_H
#define CV_SERVER_H

#include "../common/cv_err.h"
#include "../common/cv_metrics.h"
#include "../models/minilm.h"

/* An extra GET endpoint on the HTTP server (e.g. the search page of `cdcvec sync`). cb runs
 * on an nng thread with the request URI (path and query string); it must answer exactly once
 * through cv_http_reply, from any thread, later if it likes. */
typedef void (*cv_http_fn)(void *arg, const char *uri, void *reply_handle);
typedef struct cv_http_route {
    const char *path;
    cv_http_fn cb;
    void *arg;
} cv_http_route;
/* Answers a request handed to a cv_http_fn. body is copied. */
void cv_http_reply(void *reply_handle, int status, const char *content_type, const char *body, size_t len);

typedef struct cv_server_opts {
    const char *listen;          /* nng URL (tcp://, ipc://, inproc://); NULL or "" = none */
    const char *http;            /* host:port for HTTP; NULL or "" = none */
    long batch_tokens;           /* token budget per batch (16384) */
    double batch_deadline_ms;    /* longest wait for a batch to fill (2) */
    long max_queue_tokens;       /* queued tokens before "busy" (262144) */
    int max_inflight;            /* nng contexts = requests in flight on the socket (256) */
    long max_message_bytes;      /* largest nng request / HTTP body (16 MiB) */
    int max_texts;               /* texts per request (2048) */
    long max_text_bytes;         /* bytes per text (1 MiB) */
    const char *api_key;         /* HTTP bearer token; NULL = no auth */
    const char *model_id;        /* reported in /metrics and /v1/embeddings */
    const cv_http_route *routes; /* extra GET endpoints, or NULL */
    int nroutes;
} cv_server_opts;

typedef struct cv_server cv_server;

/* Starts listening; m is borrowed and must outlive the server. Errors are logged with the
 * address that failed. *out owned by the caller (cv_server_free). */
cv_err cv_server_start(cv_minilm *m, const cv_server_opts *o, cv_server **out);

/* Stops accepting work (new requests are answered "shutting down", retriable; /healthz
 * turns 503), waits up to timeout_ms for in-flight requests to be answered. Returns the
 * number still pending. */
int cv_server_drain(cv_server *s, int timeout_ms);
void cv_server_free(cv_server *s);

cv_metrics *cv_server_metrics(cv_server *s);

#endif
