/* http_impl.h: one HTTP request, shared by http.c (libmicrohttpd: connections, limits, deadlines,
 * authentication, replies) and http_routes.c (the endpoints). */
#ifndef CV_HTTP_IMPL_H
#define CV_HTTP_IMPL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stddef.h>

#include "server_impl.h"

typedef struct cv_http cv_http;
typedef struct cv_http_req cv_http_req;

struct cv_http_req {
    cv_server *s;
    cv_http *h;
    struct MHD_Connection *conn;
    struct http_conn *hc; /* the connection's deadline entry, or NULL */
    char *uri;            /* request target as the client sent it (owned) */
    char *body;           /* (body_cap) owned; the request body, body_len bytes so far */
    size_t body_len, body_cap;
    size_t reserved;  /* bytes of the body budget held */
    size_t discarded; /* bytes dropped after the body passed the limit */
    size_t peak;      /* largest body buffer this request had (memory is trimmed after big ones) */
    int state;
    int too_large;
    const struct http_endpoint *ep;
    pthread_mutex_t mu; /* resp / suspended: an answer may come from another thread */
    struct MHD_Response *resp;
    unsigned status;
    int suspended;
    int answered;
};

/* Answers r: status, content type and a copy of body. Callable from any thread, once. */
void cv_http_answer(cv_http_req *r, int status, const char *ctype, const char *body, size_t len);
/* Like cv_http_answer, taking ownership of body (malloc'd). */
void cv_http_answer_owned(cv_http_req *r, int status, const char *ctype, char *body, size_t len);
/* Answers r with {"error":{"message":...,"type":...,"code":status}}. */
void cv_http_error(cv_http_req *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Takes a read lock that keeps the batcher alive; 0 when the HTTP layer is quiescing (then
 * no lock is held). Pair with cv_http_submit_end. */
int cv_http_submit_begin(cv_http_req *r);
void cv_http_submit_end(cv_http_req *r);

/* The endpoints (http_routes.c). A POST endpoint finds its body in r->body / r->body_len. */
void cv_http_on_healthz(cv_http_req *r);
void cv_http_on_readyz(cv_http_req *r);
void cv_http_on_metrics(cv_http_req *r);
void cv_http_on_embed(cv_http_req *r);
void cv_http_on_openai(cv_http_req *r);

#endif
