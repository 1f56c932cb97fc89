/* server_impl.h: state shared by server.c (nng), http.c (the HTTP layer) and http_routes.c. */
#ifndef CV_SERVER_IMPL_H
#define CV_SERVER_IMPL_H

#include <nng/nng.h>
#include <stdatomic.h>

#include "batch.h"
#include "proto.h"
#include "server.h"

/* One model served: its batcher and the id clients name it by. */
typedef struct cv_served {
    cv_minilm *m;
    cv_batcher *batcher;
    const char *id;
} cv_served;

struct cv_server {
    cv_minilm *m; /* models[0].m: the nng protocol's and /embed's */
    cv_server_opts o;
    cv_batcher *batcher; /* models[0].batcher */
    cv_served *models;   /* (nmodels) m first, then o.more_models; NULL without a model */
    int nmodels;
    cv_metrics *reg;
    nng_socket sock;
    nng_listener listener;
    int have_sock, have_listener;
    struct ctx_worker *workers; /* (o.max_inflight) */
    struct cv_http *http;       /* the HTTP layer (http.c), or NULL */
    atomic_int inflight;        /* requests accepted and not yet answered */
    atomic_int draining;
    cv_metric *m_req_nng, *m_req_http, *m_texts, *m_tokens, *m_latency;
    cv_metric *m_err_bad, *m_err_large, *m_err_busy, *m_err_shutdown, *m_err_auth;
};

/* Counts an error reply of status st. */
void cv_server_count_error(cv_server *s, cv_status st);
/* Starts the HTTP server on s->o.http. */
cv_err cv_http_start(cv_server *s);
/* Refuses new embedding work on HTTP (answered 503), before the batcher goes away. */
void cv_http_quiesce(cv_server *s);
/* Stops the HTTP server and frees it (after cv_http_quiesce and the batcher's last jobs). */
void cv_http_stop(cv_server *s);

#endif
