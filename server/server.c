/* server.c: nng REP socket with one context per in-flight request.
 *
 * Each context runs a small state machine on its aio: RECV (a request arrived: decode,
 * tokenize, submit to the batcher) -> WAIT (the batch thread calls job_done, which builds
 * the reply) -> SEND (reply handed to nng) -> RECV. Refusals (malformed, too large, busy,
 * draining) are answered at once from RECV. REQ resends after a disconnect arrive as new
 * requests; embedding is a pure function of the texts, so answering twice is harmless. */
#define _POSIX_C_SOURCE 200809L
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "../kernels/blas.h"
#include "server_impl.h"

enum { ST_RECV, ST_WAIT, ST_SEND };

typedef struct ctx_worker {
    cv_server *s;
    nng_aio *aio;
    nng_ctx ctx;
    int state;
    uint64_t req_id;
    uint8_t flags;
    cv_job job;
} ctx_worker;

void cv_server_count_error(cv_server *s, cv_status st) {
    switch (st) {
    case CV_ST_BAD_REQUEST:
    case CV_ST_BAD_VERSION: cv_metric_add(s->m_err_bad, 1); break;
    case CV_ST_TOO_LARGE: cv_metric_add(s->m_err_large, 1); break;
    case CV_ST_BUSY: cv_metric_add(s->m_err_busy, 1); break;
    case CV_ST_SHUTTING_DOWN: cv_metric_add(s->m_err_shutdown, 1); break;
    default: break;
    }
}

static void send_msg(ctx_worker *w, const uint8_t *body, size_t len, int counts_inflight) {
    nng_msg *msg;
    w->state = ST_SEND;
    if (nng_msg_alloc(&msg, len) != 0) {
        cv_error("event=reply_alloc_failed bytes=%zu", len);
        if (counts_inflight) atomic_fetch_sub(&w->s->inflight, 1);
        w->state = ST_RECV;
        nng_ctx_recv(w->ctx, w->aio);
        return;
    }
    memcpy(nng_msg_body(msg), body, len);
    nng_aio_set_msg(w->aio, msg);
    nng_ctx_send(w->ctx, w->aio);
}

static void reply_error(ctx_worker *w, cv_status st, const char *msg) {
    uint8_t buf[CV_PROTO_REP_HEADER + 8 + 512];
    char m[512];
    snprintf(m, sizeof m, "%s", msg);
    cv_server_count_error(w->s, st);
    cv_debug("event=request_refused transport=nng id=%llu status=%s msg=\"%s\"",
             (unsigned long long)w->req_id, cv_status_name(st), m);
    atomic_fetch_add(&w->s->inflight, 1); /* the error reply is in flight too */
    send_msg(w, buf, cv_proto_write_reply_err(buf, w->req_id, st, m), 1);
}

/* Batch thread: the vectors (or the failure) are in w->job. */
static void job_done(cv_job *j) {
    ctx_worker *w = j->arg;
    cv_server *s = w->s;
    const uint32_t dim = (uint32_t)cv_minilm_cfg(s->m)->hidden;
    cv_metric_observe(s->m_latency, cv_now() - j->t_submit);
    if (j->err) {
        uint8_t buf[CV_PROTO_REP_HEADER + 8 + 128];
        char m[128];
        snprintf(m, sizeof m, "embedding failed: %s", cv_strerror(j->err));
        cv_job_release(j);
        send_msg(w, buf, cv_proto_write_reply_err(buf, w->req_id, CV_ST_INTERNAL, m), 1);
        return;
    }
    const int f16 = (w->flags & CV_PROTO_FLAG_F16) != 0;
    size_t size = cv_proto_reply_ok_size((uint32_t)j->n, dim, f16);
    nng_msg *msg;
    w->state = ST_SEND;
    if (nng_msg_alloc(&msg, size) != 0) {
        cv_job_release(j);
        uint8_t buf[64];
        send_msg(w, buf, cv_proto_write_reply_err(buf, w->req_id, CV_ST_INTERNAL, "out of memory"), 1);
        return;
    }
    cv_proto_write_reply_ok(nng_msg_body(msg), w->req_id, j->vec, (uint32_t)j->n, dim, f16);
    cv_job_release(j);
    nng_aio_set_msg(w->aio, msg);
    nng_ctx_send(w->ctx, w->aio);
}

/* An info request: the facts of the model this socket serves (the first), for a sync with
 * --embed to stamp its store with (docs/PROTOCOL.md). */
static void reply_info(ctx_worker *w) {
    cv_server *s = w->s;
    const cv_model_facts *f = cv_minilm_facts(s->m);
    cv_buf j = {0};
    cv_buf_puts(&j, "{\"id\":");
    cv_json_string(&j, f->id, strlen(f->id));
    cv_buf_puts(&j, ",\"revision\":");
    cv_json_string(&j, f->revision, strlen(f->revision));
    cv_buf_puts(&j, ",\"served_as\":");
    cv_json_string(&j, s->models[0].id, strlen(s->models[0].id));
    cv_buf_printf(&j, ",\"dim\":%d,\"pooling\":\"%s\",\"normalize\":%s,\"max_seq\":%d}", f->dim, f->pooling,
                  f->normalize ? "true" : "false", f->max_seq);
    uint8_t *body = NULL;
    size_t len = j.p && !j.oom ? cv_proto_write_reply_info(&body, w->req_id, (uint32_t)f->dim, j.p) : 0;
    free(j.p);
    if (!len) {
        reply_error(w, CV_ST_INTERNAL, "out of memory");
        return;
    }
    atomic_fetch_add(&s->inflight, 1);
    send_msg(w, body, len, 1);
    free(body);
}

static void on_request(ctx_worker *w, nng_msg *msg) {
    cv_server *s = w->s;
    cv_proto_limits lim = {(uint32_t)s->o.max_texts, (uint32_t)s->o.max_text_bytes};
    cv_proto_req req;
    char err[512];
    cv_metric_add(s->m_req_nng, 1);
    cv_status st = cv_proto_decode_request(nng_msg_body(msg), nng_msg_len(msg), &lim, &req, err, sizeof err);
    w->req_id = req.id;
    w->flags = req.flags;
    if (st != CV_ST_OK) {
        nng_msg_free(msg);
        reply_error(w, st, err);
        return;
    }
    if (atomic_load(&s->draining)) {
        cv_proto_req_free(&req);
        nng_msg_free(msg);
        reply_error(w, CV_ST_SHUTTING_DOWN, "server is shutting down; retry on another instance");
        return;
    }
    if (req.flags & CV_PROTO_FLAG_INFO) {
        cv_proto_req_free(&req);
        nng_msg_free(msg);
        reply_info(w);
        return;
    }
    size_t *lens = malloc(sizeof(size_t) * req.n);
    cv_err e = lens ? CV_OK : CV_ERR_NOMEM;
    for (uint32_t i = 0; lens && i < req.n; i++)
        lens[i] = req.len[i];
    const cv_text_kind kind = req.flags & CV_PROTO_FLAG_QUERY ? CV_TEXT_QUERY : CV_TEXT_DOCUMENT;
    if (!e) e = cv_job_prepare(&w->job, s->m, kind, req.text, lens, (int)req.n);
    free(lens);
    cv_proto_req_free(&req);
    nng_msg_free(msg);
    if (e) {
        reply_error(w, CV_ST_INTERNAL, "out of memory");
        return;
    }
    cv_metric_add(s->m_texts, w->job.n);
    cv_metric_add(s->m_tokens, (double)w->job.ntokens);
    w->job.done = job_done;
    w->job.arg = w;
    w->state = ST_WAIT;
    atomic_fetch_add(&s->inflight, 1);
    e = cv_batcher_submit(s->batcher, &w->job);
    if (e) {
        atomic_fetch_sub(&s->inflight, 1);
        cv_job_release(&w->job);
        reply_error(w, e == CV_ERR_BUSY ? CV_ST_BUSY : CV_ST_SHUTTING_DOWN,
                    e == CV_ERR_BUSY ? "queue full; retry after a backoff" : "server is shutting down");
    }
}

static void ctx_cb(void *arg) {
    ctx_worker *w = arg;
    int rv = nng_aio_result(w->aio);
    switch (w->state) {
    case ST_RECV:
        if (rv != 0) {
            if (rv == NNG_ECLOSED) return;
            nng_ctx_recv(w->ctx, w->aio); /* e.g. a peer vanished mid-request */
            return;
        }
        on_request(w, nng_aio_get_msg(w->aio));
        return;
    case ST_SEND:
        if (rv != 0) nng_msg_free(nng_aio_get_msg(w->aio)); /* requester gone: drop the reply */
        atomic_fetch_sub(&w->s->inflight, 1);
        if (rv == NNG_ECLOSED) return;
        w->state = ST_RECV;
        nng_ctx_recv(w->ctx, w->aio);
        return;
    default: return;
    }
}

static double queue_tokens_gauge(void *arg) {
    cv_server *s = arg;
    long n = 0;
    for (int i = 0; i < s->nmodels; i++)
        n += cv_batcher_queued_tokens(s->models[i].batcher);
    return (double)n;
}
static double inflight_gauge(void *arg) { return (double)atomic_load(&((cv_server *)arg)->inflight); }

static void register_metrics(cv_server *s) {
    cv_metrics *r = s->reg;
    static const char *req_help = "Requests received, by transport.";
    s->m_req_nng = cv_metrics_counter(r, "cdcvec_requests_total", req_help, "transport=\"nng\"");
    s->m_req_http = cv_metrics_counter(r, "cdcvec_requests_total", req_help, "transport=\"http\"");
    s->m_texts = cv_metrics_counter(r, "cdcvec_texts_total", "Texts accepted for embedding.", NULL);
    s->m_tokens = cv_metrics_counter(r, "cdcvec_tokens_total", "Tokens of the accepted texts.", NULL);
    static const double lat_b[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10};
    s->m_latency = cv_metrics_histogram(r, "cdcvec_request_duration_seconds",
                                        "Time from a request's submission to its vectors.", NULL, lat_b, 14);
    static const char *err_help = "Errors by kind.";
    s->m_err_bad = cv_metrics_counter(r, "cdcvec_errors_total", err_help, "kind=\"bad_request\"");
    s->m_err_large = cv_metrics_counter(r, "cdcvec_errors_total", err_help, "kind=\"too_large\"");
    s->m_err_busy = cv_metrics_counter(r, "cdcvec_errors_total", err_help, "kind=\"busy\"");
    s->m_err_shutdown = cv_metrics_counter(r, "cdcvec_errors_total", err_help, "kind=\"shutting_down\"");
    s->m_err_auth = cv_metrics_counter(r, "cdcvec_errors_total", err_help, "kind=\"unauthorized\"");
    cv_metrics_gauge_fn(r, "cdcvec_queue_tokens", "Tokens waiting for a batch.", NULL, queue_tokens_gauge, s);
    cv_metrics_gauge_fn(r, "cdcvec_inflight_requests", "Requests accepted and not yet answered.", NULL,
                        inflight_gauge, s);
    cv_buf labels = {0};
    for (int i = 0; i < s->nmodels; i++) { /* one series per model served */
        labels.len = 0;
        cv_buf_printf(&labels, "device=\"%s\",model=\"%s\"", cv_minilm_device(s->models[i].m),
                      s->models[i].id);
        if (!labels.oom)
            cv_metric_set(
                cv_metrics_gauge(r, "cdcvec_info", "Device in use and model served (value 1).", labels.p), 1);
    }
    cv_blas_info bi;
    cv_blas_info_get(&bi);
    labels.len = 0;
    cv_buf_printf(&labels, "library=\"%s\",kernel=\"%s\",chosen_by=\"%s\",cpu_best=\"%s\"", bi.library,
                  bi.kernel, bi.chosen_by, bi.best);
    if (!labels.oom)
        cv_metric_set(
            cv_metrics_gauge(r, "cdcvec_blas_info",
                             "BLAS kernel of the CPU path (value 1): a kernel below cpu_best is slow.",
                             labels.p),
            1);
    free(labels.p);
}

static cv_err start_nng(cv_server *s) {
    int rv;
    if ((rv = nng_rep0_open(&s->sock)) != 0) {
        cv_error("event=nng_open error=\"%s\"", nng_strerror(rv));
        return CV_ERR_IO;
    }
    s->have_sock = 1;
    /* limits before listening (nng_options.5) */
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, (size_t)s->o.max_message_bytes);
    s->workers = calloc((size_t)s->o.max_inflight, sizeof(ctx_worker));
    if (!s->workers) return CV_ERR_NOMEM;
    for (int i = 0; i < s->o.max_inflight; i++) {
        ctx_worker *w = &s->workers[i];
        w->s = s;
        if ((rv = nng_aio_alloc(&w->aio, ctx_cb, w)) != 0 || (rv = nng_ctx_open(&w->ctx, s->sock)) != 0) {
            cv_error("event=nng_ctx error=\"%s\"", nng_strerror(rv));
            return CV_ERR_IO;
        }
    }
    if ((rv = nng_listen(s->sock, s->o.listen, &s->listener, 0)) != 0) {
        cv_error(
            "event=listen_failed url=%s error=\"%s\" fix=\"check the address, or that nothing else listens "
            "there\"",
            s->o.listen, nng_strerror(rv));
        return CV_ERR_IO;
    }
    s->have_listener = 1;
    for (int i = 0; i < s->o.max_inflight; i++) {
        s->workers[i].state = ST_RECV;
        nng_ctx_recv(s->workers[i].ctx, s->workers[i].aio);
    }
    return CV_OK;
}

/* A batcher for each model served (m, then o.more_models); two models of one id are refused. */
static cv_err serve_models(cv_server *s) {
    const cv_server_opts *o = &s->o;
    s->models = calloc((size_t)o->nmore + 1, sizeof *s->models);
    if (!s->models) return CV_ERR_NOMEM;
    for (int i = 0; i <= o->nmore; i++) {
        cv_served *sv = &s->models[i];
        sv->m = i ? o->more_models[i - 1] : s->m;
        sv->id = i ? cv_minilm_facts(sv->m)->id : s->o.model_id;
        for (int j = 0; j < i; j++)
            if (!strcmp(s->models[j].id, sv->id)) {
                cv_error(
                    "event=config_invalid option=model model=%s error=\"two models served under one id\" "
                    "fix=\"serve each model once (a model's id is its folder's name)\"",
                    sv->id);
                return CV_ERR_ARG;
            }
        cv_err e = cv_batcher_new_for(sv->m, o->batch_tokens, o->batch_deadline_ms / 1000.0,
                                      o->max_queue_tokens, s->reg, i ? sv->id : NULL, &sv->batcher);
        if (e) return e;
        s->nmodels = i + 1;
        if (i) cv_info("event=model_served model=%s dim=%d", sv->id, cv_minilm_facts(sv->m)->dim);
    }
    s->batcher = s->models[0].batcher;
    return CV_OK;
}

cv_err cv_server_start(cv_minilm *m, const cv_server_opts *o, cv_server **out) {
    *out = NULL;
    cv_server *s = calloc(1, sizeof *s);
    if (!s) return CV_ERR_NOMEM;
    s->m = m;
    s->o = *o;
    if ((!s->o.model_id || !*s->o.model_id) && m) s->o.model_id = cv_minilm_facts(m)->id;
    if (s->o.max_inflight < 1) s->o.max_inflight = 1;
    s->reg = cv_metrics_new();
    cv_err err = s->reg ? CV_OK : CV_ERR_NOMEM;
    if (!err && m) err = serve_models(s);
    if (!err && m) register_metrics(s);
    if (!err && m && o->listen && *o->listen) err = start_nng(s);
    if (!err && o->http && *o->http) err = cv_http_start(s);
    if (err) {
        cv_server_free(s);
        return err;
    }
    cv_info("event=serving listen=%s http=%s device=%s batch_tokens=%ld batch_deadline_ms=%g max_inflight=%d",
            o->listen && *o->listen ? o->listen : "-", o->http && *o->http ? o->http : "-",
            m ? cv_minilm_device(m) : "none", o->batch_tokens, o->batch_deadline_ms, s->o.max_inflight);
    *out = s;
    return CV_OK;
}

static int models_busy(cv_server *s) {
    for (int i = 0; i < s->nmodels; i++)
        if (cv_batcher_busy(s->models[i].batcher)) return 1;
    return 0;
}

int cv_server_drain(cv_server *s, int timeout_ms) {
    /* the listener stays open: closing it would close the pipes it accepted, and with them
     * the replies still owed; new requests are answered "shutting down" instead */
    atomic_store(&s->draining, 1);
    const double until = cv_now() + timeout_ms / 1000.0;
    while ((atomic_load(&s->inflight) > 0 || models_busy(s)) && cv_now() < until) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    /* replies are handed to the pipes; give them a moment to reach the wire */
    struct timespec grace = {0, 50000000};
    nanosleep(&grace, NULL);
    int left = atomic_load(&s->inflight);
    cv_info("event=drained pending=%d", left);
    return left;
}

void cv_server_free(cv_server *s) {
    if (!s) return;
    cv_http_quiesce(s);                   /* HTTP submits nothing more */
    if (s->have_sock) nng_close(s->sock); /* aborts receives: callbacks see NNG_ECLOSED */
    for (int i = 0; i < s->nmodels; i++)  /* finishes queued jobs: their sends fail on the closed socket */
        cv_batcher_free(s->models[i].batcher);
    free(s->models);
    if (s->workers) {
        for (int i = 0; i < s->o.max_inflight; i++)
            if (s->workers[i].aio) nng_aio_stop(s->workers[i].aio);
        for (int i = 0; i < s->o.max_inflight; i++)
            if (s->workers[i].aio) nng_aio_free(s->workers[i].aio);
        free(s->workers);
    }
    cv_http_stop(s); /* after the batcher: its last jobs answered their HTTP requests */
    cv_metrics_free(s->reg);
    free(s);
}

cv_metrics *cv_server_metrics(cv_server *s) { return s->reg; }
