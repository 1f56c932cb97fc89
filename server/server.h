/* server.h: the inference server: nng REQ/REP front door (docs/PROTOCOL.md), dynamic
 * token-budget batching, and HTTP (/healthz, /metrics, /embed, /v1/embeddings, /v1/models); one
 * model or several (cv_server_opts.more_models). */
#ifndef CV_SERVER_H
#define CV_SERVER_H

#include <stddef.h>

#include "../common/cv_buf.h"
#include "../common/cv_err.h"
#include "../common/cv_buf.h"
#include "../common/cv_metrics.h"
#include "../models/minilm.h"

/* An extra GET endpoint on the HTTP server (e.g. the search page of `cdcvec sync`). cb runs
 * on an HTTP thread with the request target as the client sent it (path and raw query
 * string); it must answer exactly once through cv_http_reply, from any thread, now or later.
 * Routes need the API key when one is set (docs/CONFIG.md, "Authentication"). */
typedef void (*cv_http_fn)(void *arg, const char *uri, void *reply_handle);
typedef struct cv_http_route {
    const char *path;
    cv_http_fn cb;
    void *arg;
    int post; /* 1: POST with a JSON body (cv_http_body) instead of GET; a path may have one of each */
} cv_http_route;
/* The body of a POST route's request (not NUL-terminated), valid until the reply. */
const char *cv_http_body(void *reply_handle, size_t *len);
/* Answers a request handed to a cv_http_fn. body is copied. */
void cv_http_reply(void *reply_handle, int status, const char *content_type, const char *body, size_t len);
/* Answers a request handed to a cv_http_fn with a JSON error body
 * {"error":{"message":...,"type":...,"code":status}}; 503 carries Retry-After. */
void cv_http_reply_error(void *reply_handle, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* What a query parameter's value was found to be (cv_http_query_param). */
typedef enum {
    CV_QP_OK = 0,     /* present, URL-decoded, valid UTF-8, no NUL, within the limit */
    CV_QP_ABSENT,     /* no such parameter */
    CV_QP_BAD_ESCAPE, /* a '%' not followed by two hex digits */
    CV_QP_NUL,        /* a NUL byte (%00) */
    CV_QP_BAD_UTF8,   /* not valid UTF-8 */
    CV_QP_TOO_LONG    /* more than max_bytes once decoded */
} cv_qp;
/* The value of ?name=... (or &name=...) in uri, decoded ('+' is a space, %XX a byte) into out
 * (reset first; owned by the caller, NUL-terminated). The first occurrence counts. */
cv_qp cv_http_query_param(const char *uri, const char *name, size_t max_bytes, cv_buf *out);
/* A sentence for a cv_qp that is not CV_QP_OK, e.g. "is not valid UTF-8". */
const char *cv_qp_message(cv_qp q);

/* The HTTP front door's limits (docs/CONFIG.md); 0 in a field means its default. */
typedef struct cv_http_opts {
    long max_body_bytes;    /* largest request body; larger is answered 413 before it is read (16 MiB) */
    long body_memory_bytes; /* request bodies held at once, reserved by bytes received (64 MiB) */
    int max_parses;         /* bodies decoded at once; more are answered 503 + Retry-After (2) */
    int max_connections;    /* connections at once, at most RLIMIT_NOFILE - 64 (1000) */
    int max_per_client;     /* connections at once from one IP address; -1 = no limit (128) */
    int header_timeout_s;   /* a request's line and headers must arrive within this (10) */
    int body_timeout_s;     /* a request's body must arrive within this (60) */
    int idle_timeout_s;     /* a connection without traffic is closed after this (30) */
    int max_header_bytes;   /* request line + headers (per-connection memory): 414 / 431 beyond (32 KiB) */
    int threads;            /* polling threads (2) */
    int metrics_auth;       /* 1: /metrics and /healthz need the API key too */
    long min_body_rate;     /* bytes/s a body must keep up after a 2 s grace, or be closed (32 KiB/s) */
    const char *trusted_proxies; /* comma list of addresses/CIDRs whose X-Forwarded-For / Forwarded
                                    name the client (per-client limits); NULL or "" = none */
    const char *allowed_hosts;   /* comma list of host names accepted in Host besides IP literals,
                                    localhost and the listen host; "*" = any */
    const char *cors_origins;    /* comma list of origins answered with CORS headers; "*" = any */
} cv_http_opts;

typedef struct cv_server_opts {
    const char *listen;          /* nng URL (tcp://, ipc://, inproc://); NULL or "" = none */
    const char *http;            /* host:port for HTTP; NULL or "" = none */
    long batch_tokens;           /* token budget per batch (16384) */
    double batch_deadline_ms;    /* longest wait for a batch to fill (2) */
    long max_queue_tokens;       /* queued tokens before "busy" (262144) */
    int max_inflight;            /* nng contexts = requests in flight on the socket (256) */
    long max_message_bytes;      /* largest nng request (16 MiB) */
    int max_texts;               /* texts per request (2048) */
    long max_text_bytes;         /* bytes per text (1 MiB) */
    const char *api_key;         /* HTTP bearer token; NULL or "" = no auth */
    cv_http_opts http_opts;      /* HTTP limits */
    const char *model_id;        /* reported in /metrics and /v1/embeddings */
    const cv_http_route *routes; /* extra GET endpoints, or NULL */
    int nroutes;
    /* GET /readyz: 1 when ready; body: the JSON answer (appended). NULL: ready once started. */
    int (*ready)(void *arg, cv_buf *body);
    void *ready_arg;
    /* more models served beside m (cdcvec serve --model A --model B), borrowed, outliving the
     * server, each with its own batcher: POST /v1/embeddings picks one by its "model" field
     * (their ids: their facts' id); m (the first) answers the nng protocol and /embed */
    cv_minilm *const *more_models;
    int nmore;
} cv_server_opts;

typedef struct cv_server cv_server;

/* Starts listening; m is borrowed and must outlive the server. m NULL: HTTP only, serving
 * /healthz, /metrics and the extra routes (a process without a model: cdcvec capture). Errors
 * are logged with the address that failed. *out owned by the caller (cv_server_free). */
cv_err cv_server_start(cv_minilm *m, const cv_server_opts *o, cv_server **out);

/* Stops accepting work (new requests are answered "shutting down", retriable; /healthz
 * turns 503), waits up to timeout_ms for in-flight requests to be answered. Returns the
 * number still pending. */
int cv_server_drain(cv_server *s, int timeout_ms);
void cv_server_free(cv_server *s);

cv_metrics *cv_server_metrics(cv_server *s);

#endif
