/* http.h: the HTTP client of the remote stores (Qdrant, Upstash): one libcurl multi handle
 * with a few easy handles kept and reused (keep-alive: the connections stay open between
 * requests), JSON bodies, and every failure classified once, here: 429 (waiting as long as
 * Retry-After says), 408, 5xx, timeouts and lost connections are retried with exponential
 * backoff and full jitter, capped, the same request body sent again (a batch is never split
 * or lost); 401 / 403 stop at once with the store's fix; other 4xx go to the store's judge.
 * Secrets travel only in the header given at creation and are never logged. */
#ifndef CV_SINK_HTTP_H
#define CV_SINK_HTTP_H

#include <jansson.h>
#include <stddef.h>

#include "sink_impl.h"

typedef struct cv_http cv_http;

/* Decides what a 4xx response other than 401/403/408/429 means for the store: sets the
 * sink's fault (cv_sink_fault), logs it, returns the error. what: "METHOD /path". */
typedef cv_err (*cv_http_judge)(cv_sink *s, long status, json_t *body, const char *what);

typedef struct cv_http_opts {
    const char *base;        /* scheme://host:port, no trailing slash */
    const char *store;       /* "Qdrant", "Upstash": for logs */
    const char *auth_header; /* "api-key: KEY", "Authorization: Bearer TOKEN", or NULL; never logged */
    const char *auth_fix;    /* the fix logged with a 401 / 403 */
    cv_http_judge judge;
    int max_inflight; /* requests at once (1..16) */
    double retry_s;   /* how long one request keeps being retried (0: 120 s) */
} cv_http_opts;

/* A finished 2xx request (and, for cv_http_call with accept_4xx, a 4xx): body parsed (NULL if
 * empty or not JSON; borrowed). Returns CV_OK or the error that ends the request. */
typedef cv_err (*cv_http_done)(void *arg, long status, json_t *body);

/* s: the sink whose fault and counters the client keeps. Strings in o are copied. */
cv_err cv_http_new(cv_sink *s, const cv_http_opts *o, cv_http **out);
void cv_http_free(cv_http *h);

/* Starts a request (body: owned by the call from now on, freed when done; NULL for none),
 * waiting first for a free handle when max_inflight are in flight. cb (may be NULL) runs on
 * its 2xx answer. Returns the first error of any request finished since the last wait. */
cv_err cv_http_submit(cv_http *h, const char *method, const char *path, char *body, size_t len,
                      cv_http_done cb, void *arg);
/* Waits until every request started has finished; the first error since the last wait. */
cv_err cv_http_wait(cv_http *h);
/* One request, waited for (after those in flight). accept_4xx: a 4xx other than 401/403/408/
 * 429 comes back in *status instead of going to the judge. *body (may be NULL) owned by the
 * caller (json_decref). */
cv_err cv_http_call(cv_http *h, const char *method, const char *path, char *body, size_t len, int accept_4xx,
                    long *status, json_t **resp);

#endif
