/* http.c: the remote stores' HTTP client (http.h).
 *
 * A request occupies one slot (an easy handle, reused: curl_easy_reset keeps the multi
 * handle's connection cache, so connections stay open) from its first attempt until it
 * succeeds or fails for good. Between attempts the slot sleeps until its wake time; the pump
 * loop starts sleeping slots that are due, drives the multi handle, and finishes what
 * completed. Backoff: d = 100 ms * 2^(attempt-1) capped at 5 s, slept for a uniform time in
 * [d/2, d]; a 429 sleeps Retry-After seconds (capped at 60) instead when the store sent one.
 * A request is retried until retry_s after its first attempt, then fails as retriable: the
 * caller's batch is replayed from the last recorded position. */
#define _POSIX_C_SOURCE 200809L
#include "http.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/cv_jnum.h"
#include "../common/cv_log.h"
#include "../common/cv_signal.h"
#include "../common/cv_time.h"

#define BACKOFF_BASE    0.1
#define BACKOFF_CAP     5.0
#define RETRY_AFTER_CAP 60.0

enum { IDLE = 0, RUNNING, SLEEPING };

typedef struct slot {
    CURL *easy;
    int state;
    char *method, *url, *what; /* what: "METHOD /path" for logs (never a secret) */
    char *body;
    size_t len;
    cv_http_done cb;
    void *arg;
    int accept_4xx;
    cv_buf resp;
    double deadline, wake, retry_after;
    int attempt;
} slot;

struct cv_http {
    cv_sink *sink;
    cv_http_opts o;
    char *base, *store, *auth_fix;
    CURLM *multi;
    struct curl_slist *headers;
    slot *slots;
    int n;
    cv_err err; /* first error since the last wait */
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg) {
    cv_buf_put(arg, p, sz * n);
    return ((cv_buf *)arg)->oom ? 0 : sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg) {
    slot *sl = arg;
    size_t len = sz * n;
    if (len > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        char tmp[64];
        size_t m = len - 12 < sizeof tmp - 1 ? len - 12 : sizeof tmp - 1;
        memcpy(tmp, p + 12, m);
        tmp[m] = 0;
        char *end;
        double v = strtod(tmp, &end);
        if (end != tmp && v >= 0) sl->retry_after = v; /* seconds; an HTTP date falls back to backoff */
    }
    return len;
}

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

cv_err cv_http_new(cv_sink *s, const cv_http_opts *o, cv_http **out) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_init_once); /* sinks may open on search threads too */
    cv_http *h = calloc(1, sizeof *h);
    CV_ASSERT(h);
    h->sink = s;
    h->o = *o;
    h->base = strdup(o->base), h->store = strdup(o->store),
    h->auth_fix = o->auth_fix ? strdup(o->auth_fix) : NULL;
    h->n = o->max_inflight < 1 ? 1 : o->max_inflight > 16 ? 16 : o->max_inflight;
    if (h->o.retry_s <= 0) h->o.retry_s = 120;
    h->multi = curl_multi_init();
    h->slots = calloc((size_t)h->n, sizeof *h->slots);
    CV_ASSERT(h->multi && h->slots && h->base);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)h->n);
    h->headers = curl_slist_append(NULL, "Content-Type: application/json");
    h->headers = curl_slist_append(h->headers, "Accept: application/json");
    h->headers = curl_slist_append(h->headers, "Expect:"); /* no 100-continue round trip */
    if (o->auth_header) h->headers = curl_slist_append(h->headers, o->auth_header);
    for (int i = 0; i < h->n; i++) {
        h->slots[i].easy = curl_easy_init();
        CV_ASSERT(h->slots[i].easy);
    }
    *out = h;
    return CV_OK;
}

/* Releases what a finished request held; the slot becomes idle. */
static void slot_clear(slot *sl) {
    free(sl->method), free(sl->url), free(sl->what), free(sl->body), free(sl->resp.p);
    CURL *easy = sl->easy;
    memset(sl, 0, sizeof *sl);
    sl->easy = easy;
}

void cv_http_free(cv_http *h) {
    if (!h) return;
    for (int i = 0; i < h->n; i++) {
        if (h->slots[i].state == RUNNING) curl_multi_remove_handle(h->multi, h->slots[i].easy);
        slot_clear(&h->slots[i]);
        curl_easy_cleanup(h->slots[i].easy);
    }
    curl_multi_cleanup(h->multi);
    curl_slist_free_all(h->headers);
    free(h->slots), free(h->base), free(h->store), free(h->auth_fix);
    free(h);
}

/* Sends one attempt of the slot's request. */
static void attempt(cv_http *h, slot *sl) {
    CURL *c = sl->easy;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, sl->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sl->resp);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, sl);
    if (strcmp(sl->method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, sl->method);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, sl->body ? sl->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(sl->body ? sl->len : 0));
    }
    cv_buf_free(&sl->resp);
    sl->retry_after = -1;
    sl->attempt++;
    sl->state = RUNNING;
    h->sink->requests++;
    curl_multi_add_handle(h->multi, c);
}

/* Exponential backoff with full jitter in [d/2, d]. */
static double backoff(int attempt) {
    double d = BACKOFF_BASE;
    for (int i = 1; i < attempt && d < BACKOFF_CAP; i++)
        d *= 2;
    if (d > BACKOFF_CAP) d = BACKOFF_CAP;
    return d / 2 + d / 2 * ((double)rand() / RAND_MAX);
}

static void set_err(cv_http *h, cv_err e) {
    if (e && !h->err) h->err = e;
}

/* A transport failure that retrying cannot help (the URL or TLS set-up is wrong). */
static int transport_permanent(CURLcode rc) {
    return rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT ||
           rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
           rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_NOT_BUILT_IN;
}

/* Classifies a finished attempt, once: success, retry (the slot sleeps), or failure. */
static void finish(cv_http *h, slot *sl, CURLcode rc) {
    long status = 0;
    curl_multi_remove_handle(h->multi, sl->easy);
    curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &status);
    const char *kind = NULL;
    if (rc != CURLE_OK) {
        if (transport_permanent(rc)) {
            cv_error(
                "event=sink_request_failed store=%s request=\"%s\" kind=config error=\"%s\" fix=\"check the "
                "sink URL's scheme and host, and the server's TLS certificate\"",
                h->store, sl->what, curl_easy_strerror(rc));
            cv_sink_fault(h->sink, "config",
                          "check the sink URL's scheme and host, and the server's TLS certificate");
            set_err(h, CV_ERR_UNSUPPORTED);
            slot_clear(sl);
            return;
        }
        kind = "connection";
    } else if (status == 429) {
        kind = "resources";
    } else if (status == 408 || status >= 500) {
        kind = "server";
    }
    if (kind && cv_stopping()) { /* no retries once stopping: the batch replays from the position */
        cv_info("event=sink_request_abandoned store=%s request=\"%s\" reason=stopping", h->store, sl->what);
        cv_sink_fault(h->sink, kind, NULL);
        set_err(h, CV_ERR_SHUTDOWN);
        slot_clear(sl);
        return;
    }
    if (kind) {
        double now = cv_now(), d = backoff(sl->attempt);
        if (status == 429 && sl->retry_after >= 0)
            d = (sl->retry_after < RETRY_AFTER_CAP ? sl->retry_after : RETRY_AFTER_CAP) + 0.05 * d;
        if (now + d > sl->deadline) {
            cv_error("event=sink_request_failed store=%s request=\"%s\" kind=%s attempts=%d status=%ld "
                     "error=\"%s\" "
                     "note=\"gave up after %.0f s of retries; the batch is replayed from the last recorded "
                     "position\"",
                     h->store, sl->what, kind, sl->attempt, status,
                     rc != CURLE_OK ? curl_easy_strerror(rc) : "the store kept refusing", h->o.retry_s);
            cv_sink_fault(h->sink, kind, NULL);
            set_err(h, CV_ERR_TIMEOUT);
            slot_clear(sl);
            return;
        }
        cv_warn("event=sink_retry store=%s request=\"%s\" kind=%s status=%ld attempt=%d in_seconds=%.2f "
                "error=\"%s\"",
                h->store, sl->what, kind, status, sl->attempt, d,
                rc != CURLE_OK ? curl_easy_strerror(rc) : "retriable status");
        h->sink->retries++;
        sl->state = SLEEPING;
        sl->wake = now + d;
        return;
    }
    /* numbers kept exactly (payloads read back): cv_jnum_number reads them */
    json_t *body = sl->resp.p ? cv_jnum_loadb(sl->resp.p, sl->resp.len, 0, NULL) : NULL;
    cv_err e = CV_OK;
    if (status == 401 || status == 403) {
        const char *msg = json_string_value(json_object_get(body, "error"));
        if (!msg) msg = json_string_value(json_object_get(json_object_get(body, "status"), "error"));
        cv_error(
            "event=sink_unauthorized store=%s request=\"%s\" status=%ld kind=auth error=\"%s\" fix=\"%s\"",
            h->store, sl->what, status, msg ? msg : "unauthorized", h->auth_fix ? h->auth_fix : "");
        cv_sink_fault(h->sink, "auth", h->auth_fix);
        e = CV_ERR_UNSUPPORTED;
    } else if (status >= 200 && status < 300) {
        if (sl->cb) e = sl->cb(sl->arg, status, body);
    } else if (sl->accept_4xx && sl->cb) {
        e = sl->cb(sl->arg, status, body);
    } else {
        e = h->o.judge(h->sink, status, body, sl->what);
    }
    json_decref(body);
    set_err(h, e);
    slot_clear(sl);
}

/* Drives requests until a slot is idle (all = 0) or every slot is (all = 1). */
static void pump(cv_http *h, int all) {
    for (;;) {
        /* stopping: retries waiting end now, requests in flight 0.5 s after the signal (a drain
         * that the store answers completes; a store that does not answer holds nothing up) */
        double age = cv_stop_age();
        for (int i = 0; age >= 0 && i < h->n; i++) {
            slot *sl = &h->slots[i];
            if (sl->state == SLEEPING || (sl->state == RUNNING && age >= 0.5)) {
                if (sl->state == RUNNING) curl_multi_remove_handle(h->multi, sl->easy);
                cv_info("event=sink_request_abandoned store=%s request=\"%s\" reason=stopping", h->store,
                        sl->what);
                cv_sink_fault(h->sink, "connection", NULL);
                set_err(h, CV_ERR_SHUTDOWN);
                slot_clear(sl);
            }
        }
        double now = cv_now(), next = now + 0.1;
        int idle = 0, busy = 0;
        for (int i = 0; i < h->n; i++) {
            slot *sl = &h->slots[i];
            if (sl->state == SLEEPING && sl->wake <= now) attempt(h, sl);
            if (sl->state == SLEEPING && sl->wake < next) next = sl->wake;
            if (sl->state == IDLE)
                idle++;
            else
                busy++;
        }
        if (all ? busy == 0 : idle > 0) return;
        int running, left, done = 0;
        curl_multi_perform(h->multi, &running);
        CURLMsg *m;
        while ((m = curl_multi_info_read(h->multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            for (int i = 0; i < h->n; i++)
                if (h->slots[i].easy == m->easy_handle && h->slots[i].state == RUNNING) {
                    finish(h, &h->slots[i], m->data.result);
                    done++;
                    break;
                }
        }
        if (done) continue;
        int ms = (int)((next - cv_now()) * 1e3);
        curl_multi_poll(h->multi, NULL, 0, ms < 1 ? 1 : ms, NULL);
    }
}

cv_err cv_http_submit(cv_http *h, const char *method, const char *path, char *body, size_t len,
                      cv_http_done cb, void *arg) {
    pump(h, 0);
    slot *sl = NULL;
    for (int i = 0; i < h->n && !sl; i++)
        if (h->slots[i].state == IDLE) sl = &h->slots[i];
    CV_ASSERT(sl);
    cv_buf url = {0}, what = {0};
    cv_buf_printf(&url, "%s%s", h->base, path);
    cv_buf_printf(&what, "%s %s", method, path);
    CV_ASSERT(!url.oom && !what.oom);
    sl->method = strdup(method), sl->url = url.p, sl->what = what.p;
    sl->body = body, sl->len = len, sl->cb = cb, sl->arg = arg;
    sl->deadline = cv_now() + h->o.retry_s;
    attempt(h, sl);
    curl_multi_perform(h->multi, &(int){0});
    return h->err;
}

cv_err cv_http_wait(cv_http *h) {
    pump(h, 1);
    cv_err e = h->err;
    h->err = CV_OK;
    return e;
}

typedef struct {
    long status;
    json_t *body;
} call_out;

static cv_err call_done(void *arg, long status, json_t *body) {
    call_out *o = arg;
    o->status = status;
    o->body = json_incref(body);
    return CV_OK;
}

cv_err cv_http_call(cv_http *h, const char *method, const char *path, char *body, size_t len, int accept_4xx,
                    long *status, json_t **resp) {
    call_out o = {0};
    cv_err e = cv_http_wait(h);
    if (e) {
        free(body);
        return e;
    }
    cv_http_submit(h, method, path, body, len, call_done, &o);
    for (int i = 0; i < h->n; i++) /* the slot just taken */
        if (h->slots[i].arg == &o) h->slots[i].accept_4xx = accept_4xx;
    e = cv_http_wait(h);
    if (status) *status = o.status;
    if (resp)
        *resp = o.body;
    else
        json_decref(o.body);
    return e;
}
