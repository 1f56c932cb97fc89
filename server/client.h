/* client.h: the C client of the embed protocol (docs/PROTOCOL.md), over nng REQ.
 * Synchronous and asynchronous calls, a timeout per call, and retries with exponential
 * backoff when the server answers "busy" or "shutting down" or the call times out. */
#ifndef CV_CLIENT_H
#define CV_CLIENT_H

#include <stddef.h>

#include "../common/cv_err.h"

typedef struct cv_client_opts {
    int timeout_ms; /* per attempt (default 30000) */
    int retries;    /* extra attempts after a retriable failure (default 5) */
    int backoff_ms; /* first backoff, doubled per retry up to 1000 ms (default 10) */
    int f16;        /* ask for half-precision vectors on the wire (converted back to float) */
} cv_client_opts;

typedef struct cv_client cv_client;

/* Dials url (tcp://, ipc://, inproc://) without blocking: the connection is made, and
 * remade after a disconnect, in the background. o may be NULL for defaults. */
cv_err cv_client_open(const char *url, const cv_client_opts *o, cv_client **out);
void cv_client_close(cv_client *c);

/* Embeds n texts into out (n * dim floats, caller-owned, out_cap_dim at least the model's dimension; *dim
 * gets the server's dimension). On failure returns: CV_ERR_FORMAT (the server rejected the request; not
 * retried), CV_ERR_ARG (over a server limit), CV_ERR_BUSY / CV_ERR_SHUTDOWN / CV_ERR_TIMEOUT (still failing
 * after the retries), CV_ERR_IO; msg (may be NULL) gets the server's message. Thread-safe: many calls may run
 * at once on one client. */
cv_err cv_client_embed(cv_client *c, const char *const *texts, const size_t *lens, int n, float *out,
                       int out_cap_dim, int *dim, char *msg, size_t msg_len);

/* The same for searches: the model's query prompt instead of the document prompt
 * (CV_PROTO_FLAG_QUERY). */
cv_err cv_client_embed_query(cv_client *c, const char *const *texts, const size_t *lens, int n, float *out,
                             int out_cap_dim, int *dim, char *msg, size_t msg_len);

/* The model the server runs (CV_PROTO_FLAG_INFO): *info gets its facts as JSON text
 * ({"id", "revision", "dim", ...}; malloc'd, caller frees), *dim (may be NULL) its dimension.
 * One attempt (the caller retries), given up at once when the process is stopping
 * (CV_ERR_TIMEOUT, as a timeout). A server of an earlier version answers bad_request:
 * CV_ERR_FORMAT. Other errors as cv_client_embed's. */
cv_err cv_client_info(cv_client *c, char **info, int *dim, char *msg, size_t msg_len);

/* Asynchronous form: returns at once; cb runs exactly once, on an nng thread, with the
 * vectors (borrowed for the callback's duration) or the error. texts are copied. */
typedef void (*cv_client_cb)(void *arg, cv_err err, const float *vec, int n, int dim, const char *msg);
cv_err cv_client_embed_async(cv_client *c, const char *const *texts, const size_t *lens, int n,
                             cv_client_cb cb, void *arg);

#endif
