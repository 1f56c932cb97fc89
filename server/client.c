/* client.c: REQ socket, one nng context per call; the async path is a state machine on
 * one aio per call: SEND -> RECV -> (backoff SLEEP -> SEND)* -> callback. */
#define _POSIX_C_SOURCE 200809L
#include "client.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/cv_log.h"
#include "../common/cv_signal.h"
#include "proto.h"

struct cv_client {
    nng_socket sock;
    cv_client_opts o;
    atomic_ullong next_id;
    int remote; /* not inproc:// (registered below) */
};

/* Remote clients a stop signal closes (cv_signal.h): a request to a server that hangs would
 * otherwise hold the process for its timeout; closing the socket ends every wait on it at once.
 * In-process requests are left to finish (the model answers in seconds). */
static pthread_mutex_t remote_mu = PTHREAD_MUTEX_INITIALIZER;
static cv_client *remote[16];

static void close_remote(void) {
    pthread_mutex_lock(&remote_mu);
    for (int i = 0; i < 16; i++)
        if (remote[i]) nng_close(remote[i]->sock);
    pthread_mutex_unlock(&remote_mu);
}

static void remote_set(cv_client *c, int on) {
    pthread_mutex_lock(&remote_mu);
    for (int i = 0; i < 16; i++)
        if (on ? !remote[i] : remote[i] == c) {
            remote[i] = on ? c : NULL;
            break;
        }
    pthread_mutex_unlock(&remote_mu);
}

cv_err cv_client_open(const char *url, const cv_client_opts *o, cv_client **out) {
    *out = NULL;
    cv_client *c = calloc(1, sizeof *c);
    if (!c) return CV_ERR_NOMEM;
    c->o = o ? *o : (cv_client_opts){0};
    if (c->o.timeout_ms <= 0) c->o.timeout_ms = 30000;
    if (c->o.retries < 0) c->o.retries = 0;
    if (!o) c->o.retries = 5;
    if (c->o.backoff_ms <= 0) c->o.backoff_ms = 10;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    atomic_init(&c->next_id, ((unsigned long long)ts.tv_nsec << 20) ^ ((unsigned long long)getpid() << 40) ^
                                 (unsigned long long)ts.tv_sec);
    int rv = nng_req0_open(&c->sock);
    if (!rv) rv = nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, c->o.timeout_ms);
    if (!rv) rv = nng_dial(c->sock, url, NULL, NNG_FLAG_NONBLOCK);
    if (rv) {
        cv_error("event=client_dial url=%s error=\"%s\"", url, nng_strerror(rv));
        nng_close(c->sock);
        free(c);
        return rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP ? CV_ERR_ARG : CV_ERR_IO;
    }
    c->remote = strncmp(url, "inproc://", 9) != 0;
    if (c->remote) {
        remote_set(c, 1);
        cv_signal_add_stop_hook(close_remote);
    }
    *out = c;
    return CV_OK;
}

void cv_client_close(cv_client *c) {
    if (!c) return;
    if (c->remote) remote_set(c, 0);
    nng_close(c->sock);
    free(c);
}

static cv_err err_of_status(cv_status st) {
    switch (st) {
    case CV_ST_OK: return CV_OK;
    case CV_ST_BUSY: return CV_ERR_BUSY;
    case CV_ST_SHUTTING_DOWN: return CV_ERR_SHUTDOWN;
    case CV_ST_TOO_LARGE: return CV_ERR_ARG;
    case CV_ST_INTERNAL: return CV_ERR_DEVICE;
    default: return CV_ERR_FORMAT;
    }
}

static int backoff_ms(const cv_client *c, int attempt) {
    long ms = (long)c->o.backoff_ms << (attempt < 10 ? attempt : 10);
    return (int)(ms > 1000 ? 1000 : ms);
}

static cv_err embed_flags(cv_client *c, uint8_t flags, const char *const *texts, const size_t *lens, int n,
                          float *out, int out_cap_dim, int *dim, char *msg, size_t msg_len);

cv_err cv_client_embed(cv_client *c, const char *const *texts, const size_t *lens, int n, float *out,
                       int out_cap_dim, int *dim, char *msg, size_t msg_len) {
    return embed_flags(c, 0, texts, lens, n, out, out_cap_dim, dim, msg, msg_len);
}

cv_err cv_client_embed_query(cv_client *c, const char *const *texts, const size_t *lens, int n, float *out,
                             int out_cap_dim, int *dim, char *msg, size_t msg_len) {
    return embed_flags(c, CV_PROTO_FLAG_QUERY, texts, lens, n, out, out_cap_dim, dim, msg, msg_len);
}

/* Sends frame (request id) and decodes the answer into *rep, retrying timeouts and the
 * retriable statuses; CV_OK with an ok reply (free rep), else the error with last filled. */
static cv_err roundtrip(cv_client *c, const uint8_t *frame, size_t size, cv_proto_rep *rep, char last[256]) {
    cv_err err = CV_ERR_IO;
    for (int attempt = 0; attempt <= c->o.retries; attempt++) {
        if (attempt && cv_stopping()) break; /* no retries once stopping (cv_signal.h) */
        if (attempt) nng_msleep(backoff_ms(c, attempt - 1));
        nng_ctx ctx;
        nng_msg *m = NULL;
        int rv = nng_ctx_open(&ctx, c->sock);
        if (rv) {
            snprintf(last, 256, "%s", nng_strerror(rv));
            err = CV_ERR_IO;
            break;
        }
        nng_aio *aio = NULL;
        if (!(rv = nng_aio_alloc(&aio, NULL, NULL)) && !(rv = nng_msg_alloc(&m, size))) {
            memcpy(nng_msg_body(m), frame, size);
            nng_aio_set_timeout(aio, c->o.timeout_ms);
            nng_aio_set_msg(aio, m);
            nng_ctx_send(ctx, aio);
            nng_aio_wait(aio);
            if ((rv = nng_aio_result(aio)) != 0) nng_msg_free(m);
        }
        if (!rv) {
            nng_aio_set_timeout(aio, c->o.timeout_ms);
            nng_ctx_recv(ctx, aio);
            nng_aio_wait(aio);
            if (!(rv = nng_aio_result(aio))) m = nng_aio_get_msg(aio);
        }
        if (aio) nng_aio_free(aio);
        nng_ctx_close(ctx);
        if (rv) {
            snprintf(last, 256, "%s", nng_strerror(rv));
            err = rv == NNG_ETIMEDOUT ? CV_ERR_TIMEOUT : CV_ERR_IO;
            if (rv == NNG_ETIMEDOUT) continue;
            break;
        }
        cv_err de = cv_proto_decode_reply(nng_msg_body(m), nng_msg_len(m), rep);
        nng_msg_free(m);
        if (de) {
            snprintf(last, 256, "%.250s", rep->msg);
            err = de;
            break;
        }
        if (rep->status != CV_ST_OK) {
            snprintf(last, 256, "%s: %.200s", cv_status_name(rep->status), rep->msg);
            err = err_of_status(rep->status);
            if (cv_status_retriable(rep->status) && rep->status != CV_ST_INTERNAL) continue;
            break;
        }
        return CV_OK;
    }
    return err;
}

static cv_err embed_flags(cv_client *c, uint8_t flags, const char *const *texts, const size_t *lens, int n,
                          float *out, int out_cap_dim, int *dim, char *msg, size_t msg_len) {
    if (n <= 0) return CV_ERR_ARG;
    uint8_t *frame;
    uint64_t id = atomic_fetch_add(&c->next_id, 1);
    size_t size = cv_proto_encode_request(id, (uint8_t)(flags | (c->o.f16 ? CV_PROTO_FLAG_F16 : 0)), texts,
                                          lens, (uint32_t)n, &frame);
    if (!size) return CV_ERR_NOMEM;
    char last[256] = "";
    cv_proto_rep rep = {0};
    cv_err err = roundtrip(c, frame, size, &rep, last);
    if (!err && (rep.id != id || rep.n != (uint32_t)n || rep.info ||
                 (out_cap_dim && rep.dim > (uint32_t)out_cap_dim))) {
        snprintf(last, sizeof last, "reply does not match the request (id or %u vectors of %u)", rep.n,
                 rep.dim);
        err = CV_ERR_FORMAT;
    } else if (!err) {
        memcpy(out, rep.vec, sizeof(float) * (size_t)rep.n * rep.dim);
        if (dim) *dim = (int)rep.dim;
    }
    cv_proto_rep_free(&rep);
    free(frame);
    if (err && msg) snprintf(msg, msg_len, "%s", last);
    return err;
}

/* An aio whose completion a flag tells (nng has no way to ask a callback-less aio). */
static void info_done(void *arg) { atomic_store((atomic_int *)arg, 1); }

/* Waits for aio (completion flag done, reset here), cancelling it once the process is stopping
 * (cv_signal.h). */
static void wait_or_stop(nng_aio *aio, atomic_int *done) {
    while (!atomic_load(done)) {
        if (cv_stopping()) nng_aio_cancel(aio);
        nng_msleep(20);
    }
    nng_aio_wait(aio);
    atomic_store(done, 0);
}

cv_err cv_client_info(cv_client *c, char **info, int *dim, char *msg, size_t msg_len) {
    uint8_t *frame;
    *info = NULL;
    uint64_t id = atomic_fetch_add(&c->next_id, 1);
    size_t size = cv_proto_encode_request(id, CV_PROTO_FLAG_INFO, NULL, NULL, 0, &frame);
    if (!size) return CV_ERR_NOMEM;
    char last[256] = "";
    nng_ctx ctx;
    nng_aio *aio = NULL;
    nng_msg *m = NULL;
    cv_err err = CV_ERR_IO;
    atomic_int done = 0;
    int rv = nng_ctx_open(&ctx, c->sock);
    if (!rv) { /* one attempt, the stop heeded: the caller (a session) retries */
        if (!(rv = nng_aio_alloc(&aio, info_done, &done)) && !(rv = nng_msg_alloc(&m, size))) {
            memcpy(nng_msg_body(m), frame, size);
            nng_aio_set_timeout(aio, c->o.timeout_ms);
            nng_aio_set_msg(aio, m);
            nng_ctx_send(ctx, aio);
            wait_or_stop(aio, &done);
            if ((rv = nng_aio_result(aio)) != 0) nng_msg_free(m);
        }
        if (!rv) {
            nng_aio_set_timeout(aio, c->o.timeout_ms);
            nng_ctx_recv(ctx, aio);
            wait_or_stop(aio, &done);
            if (!(rv = nng_aio_result(aio))) m = nng_aio_get_msg(aio);
        }
        if (aio) nng_aio_free(aio);
        nng_ctx_close(ctx);
    }
    free(frame);
    cv_proto_rep rep = {0};
    if (rv) {
        snprintf(last, sizeof last, "%s", nng_strerror(rv));
        err = rv == NNG_ETIMEDOUT || rv == NNG_ECANCELED ? CV_ERR_TIMEOUT : CV_ERR_IO;
    } else if ((err = cv_proto_decode_reply(nng_msg_body(m), nng_msg_len(m), &rep))) {
        snprintf(last, sizeof last, "%.250s", rep.msg);
    } else if (rep.status != CV_ST_OK) {
        snprintf(last, sizeof last, "%s: %.200s", cv_status_name(rep.status), rep.msg);
        err = err_of_status(rep.status);
    } else if (rep.id != id || !rep.info) {
        snprintf(last, sizeof last, "the reply is not a model's facts");
        err = CV_ERR_FORMAT;
    } else {
        *info = rep.info;
        rep.info = NULL;
        if (dim) *dim = (int)rep.dim;
    }
    if (!rv) nng_msg_free(m);
    cv_proto_rep_free(&rep);
    if (err && msg) snprintf(msg, msg_len, "%s", last);
    return err;
}

/* ---- async ---------------------------------------------------------------------------- */

enum { A_SEND, A_RECV, A_SLEEP };

typedef struct {
    cv_client *c;
    nng_ctx ctx;
    nng_aio *aio;
    uint8_t *frame;
    size_t size;
    uint64_t id;
    int n, state, attempt;
    cv_client_cb cb;
    void *arg;
} async_call;

static void async_finish(async_call *a, cv_err err, const float *vec, int dim, const char *msg) {
    a->cb(a->arg, err, vec, a->n, dim, msg);
    nng_ctx_close(a->ctx);
    free(a->frame);
    /* the aio is freed from a thread of our own: nng_aio_free may not run in its callback */
    nng_aio_reap(a->aio);
    free(a);
}

static void async_send(async_call *a) {
    nng_msg *m;
    if (nng_msg_alloc(&m, a->size) != 0) {
        async_finish(a, CV_ERR_NOMEM, NULL, 0, "out of memory");
        return;
    }
    memcpy(nng_msg_body(m), a->frame, a->size);
    a->state = A_SEND;
    nng_aio_set_msg(a->aio, m);
    nng_aio_set_timeout(a->aio, a->c->o.timeout_ms);
    nng_ctx_send(a->ctx, a->aio);
}

static void async_retry_or_fail(async_call *a, cv_err err, const char *msg) {
    if (a->attempt < a->c->o.retries && !cv_stopping()) {
        a->state = A_SLEEP;
        nng_sleep_aio(backoff_ms(a->c, a->attempt++), a->aio);
        return;
    }
    async_finish(a, err, NULL, 0, msg);
}

static void async_cb(void *arg) {
    async_call *a = arg;
    int rv = nng_aio_result(a->aio);
    switch (a->state) {
    case A_SEND:
        if (rv) {
            nng_msg_free(nng_aio_get_msg(a->aio));
            if (rv == NNG_ETIMEDOUT)
                async_retry_or_fail(a, CV_ERR_TIMEOUT, nng_strerror(rv));
            else
                async_finish(a, CV_ERR_IO, NULL, 0, nng_strerror(rv));
            return;
        }
        a->state = A_RECV;
        nng_aio_set_timeout(a->aio, a->c->o.timeout_ms);
        nng_ctx_recv(a->ctx, a->aio);
        return;
    case A_RECV: {
        if (rv) {
            if (rv == NNG_ETIMEDOUT)
                async_retry_or_fail(a, CV_ERR_TIMEOUT, nng_strerror(rv));
            else
                async_finish(a, CV_ERR_IO, NULL, 0, nng_strerror(rv));
            return;
        }
        nng_msg *m = nng_aio_get_msg(a->aio);
        cv_proto_rep rep;
        cv_err de = cv_proto_decode_reply(nng_msg_body(m), nng_msg_len(m), &rep);
        nng_msg_free(m);
        if (de) {
            async_finish(a, de, NULL, 0, rep.msg);
        } else if (rep.status != CV_ST_OK) {
            char msg[300];
            snprintf(msg, sizeof msg, "%s: %s", cv_status_name(rep.status), rep.msg);
            if (cv_status_retriable(rep.status) && rep.status != CV_ST_INTERNAL)
                async_retry_or_fail(a, err_of_status(rep.status), msg);
            else
                async_finish(a, err_of_status(rep.status), NULL, 0, msg);
        } else if (rep.id != a->id || rep.n != (uint32_t)a->n) {
            cv_proto_rep_free(&rep);
            async_finish(a, CV_ERR_FORMAT, NULL, 0, "reply does not match the request");
        } else {
            async_finish(a, CV_OK, rep.vec, (int)rep.dim, "");
            cv_proto_rep_free(&rep);
        }
        return;
    }
    case A_SLEEP:
        if (rv == NNG_ECANCELED || rv == NNG_ECLOSED) {
            async_finish(a, CV_ERR_IO, NULL, 0, "client closed");
            return;
        }
        async_send(a);
        return;
    }
}

cv_err cv_client_embed_async(cv_client *c, const char *const *texts, const size_t *lens, int n,
                             cv_client_cb cb, void *arg) {
    if (n <= 0) return CV_ERR_ARG;
    async_call *a = calloc(1, sizeof *a);
    if (!a) return CV_ERR_NOMEM;
    a->c = c;
    a->n = n;
    a->cb = cb;
    a->arg = arg;
    a->id = atomic_fetch_add(&c->next_id, 1);
    a->size =
        cv_proto_encode_request(a->id, c->o.f16 ? CV_PROTO_FLAG_F16 : 0, texts, lens, (uint32_t)n, &a->frame);
    if (!a->size || nng_aio_alloc(&a->aio, async_cb, a) != 0) {
        free(a->frame);
        free(a);
        return CV_ERR_NOMEM;
    }
    if (nng_ctx_open(&a->ctx, c->sock) != 0) {
        nng_aio_free(a->aio);
        free(a->frame);
        free(a);
        return CV_ERR_IO;
    }
    async_send(a);
    return CV_OK;
}
