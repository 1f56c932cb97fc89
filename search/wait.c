/* wait.c: read-your-writes for `cdcvec sync --http`.
 *
 * The covered position is the stream position up to which every change of the table is in the
 * sink and visible to /search: the end LSN of the last batch the sink committed, and past it the
 * position of a keepalive that arrived with nothing of ours in flight (the walsender decoded
 * everything before it; a transaction that did not touch the table is covered once the stream
 * passed it). It only moves forward, lives in memory (a new process starts from the position the
 * sink recorded) and is exported as cdcvec_sync_applied_lsn.
 *
 *   GET /wait?lsn=X/Y&timeout_ms=N   200 {"lsn","applied_lsn","waited_ms"} once covered >= lsn;
 *                                    504 with the same fields and an error after timeout_ms;
 *                                    400 on a malformed lsn or timeout_ms; 503 when
 *                                    CV_WAIT_MAX_WAITERS requests already wait.
 * Waiting requests hold no thread: their connections stay suspended in the HTTP layer and one
 * thread of this module answers them when the position moves or their deadline passes.
 * /search?min_lsn= waits on the same position from its own (bounded) search thread. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "../ingest/sync_impl.h"
#include "search.h"

#define CV_WAIT_MAX_WAITERS 1024
#define CV_WAIT_DEFAULT_MS  10000
#define CV_WAIT_MAX_MS      60000

typedef struct {
    void *reply;
    uint64_t lsn;
    double since, deadline; /* cv_now() seconds */
} waiter;

struct cv_waitq {
    pthread_mutex_t mu;
    pthread_cond_t moved; /* the position moved, a waiter came, or stop */
    pthread_t th;
    int started, stop;
    uint64_t covered;
    waiter w[CV_WAIT_MAX_WAITERS];
    int n;
    cv_metric *m_applied, *m_waiters, *m_answered, *m_timeouts;
};

int cv_wait_parse_lsn(const char *s, uint64_t *out) {
    uint64_t part[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        int digits = 0;
        for (; *s && *s != '/'; s++, digits++) {
            int c = (unsigned char)*s, v = c >= '0' && c <= '9'   ? c - '0'
                                           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                                  : -1;
            if (v < 0 || digits >= 8) return -1;
            part[k] = part[k] << 4 | (uint64_t)v;
        }
        if (!digits || (k == 0 && *s++ != '/')) return -1;
    }
    if (*s) return -1;
    *out = part[0] << 32 | part[1];
    return 0;
}

/* The JSON of an answer: the asked and the covered positions, how long it waited. */
static void answer(void *reply, int status, uint64_t lsn, uint64_t covered, double waited_s) {
    char a[24], c[24];
    cv_lsn_format(lsn, a);
    cv_lsn_format(covered, c);
    cv_buf b = {0};
    cv_buf_printf(&b, "{\"lsn\":\"%s\",\"applied_lsn\":\"%s\",\"waited_ms\":%.0f", a, c, waited_s * 1e3);
    if (status == 504)
        cv_buf_printf(&b,
                      ",\"error\":{\"message\":\"the index does not cover %s yet (it covers %s); retry, "
                      "or raise timeout_ms\",\"type\":\"timeout\",\"code\":504}",
                      a, c);
    cv_buf_puts(&b, "}");
    if (b.oom)
        cv_http_reply_error(reply, 500, "internal", "out of memory");
    else
        cv_http_reply(reply, status, "application/json", b.p, b.len);
    free(b.p);
}

/* The answering thread: answers covered waiters (200) and expired ones (504), sleeps until the
 * next deadline or a change. */
static void *wait_thread(void *arg) {
    struct cv_waitq *q = arg;
    pthread_mutex_lock(&q->mu);
    while (!q->stop) {
        double now = cv_now(), next = now + 3600;
        for (int i = 0; i < q->n;) {
            waiter *w = &q->w[i];
            if (w->lsn <= q->covered || now >= w->deadline) {
                int ok = w->lsn <= q->covered;
                answer(w->reply, ok ? 200 : 504, w->lsn, q->covered, now - w->since);
                cv_metric_add(ok ? q->m_answered : q->m_timeouts, 1);
                *w = q->w[--q->n];
                continue;
            }
            if (w->deadline < next) next = w->deadline;
            i++;
        }
        cv_metric_set(q->m_waiters, q->n);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        double d = next - now;
        ts.tv_sec += (time_t)d;
        ts.tv_nsec += (long)((d - (double)(long)d) * 1e9);
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&q->moved, &q->mu, &ts);
    }
    for (int i = 0; i < q->n; i++) /* shutting down */
        cv_http_reply_error(q->w[i].reply, 503, "unavailable", "cdcvec sync is stopping; retry");
    q->n = 0;
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* Parses lsn= (required when need) and timeout_ms=; 0 after answering 400. */
static int wait_params(const char *uri, const char *lsn_name, int need, uint64_t *lsn, int *has_lsn,
                       long *timeout_ms, void *reply) {
    cv_buf v = {0};
    *has_lsn = 0;
    *timeout_ms = CV_WAIT_DEFAULT_MS;
    cv_qp st = cv_http_query_param(uri, lsn_name, 32, &v);
    if (st == CV_QP_OK && cv_wait_parse_lsn(v.p, lsn) == 0)
        *has_lsn = 1;
    else if (st != CV_QP_ABSENT || need) {
        free(v.p);
        cv_http_reply_error(reply, 400, "bad_request",
                            "%s must be a PostgreSQL LSN such as 16/B374D848 (SELECT "
                            "pg_current_wal_insert_lsn() after your commit)",
                            lsn_name);
        return 0;
    }
    st = cv_http_query_param(uri, "timeout_ms", 12, &v);
    char *end = NULL;
    if (st == CV_QP_OK) *timeout_ms = strtol(v.p, &end, 10);
    int bad = st != CV_QP_ABSENT &&
              (st != CV_QP_OK || !v.len || *end || *timeout_ms < 0 || *timeout_ms > CV_WAIT_MAX_MS);
    free(v.p);
    if (bad) {
        cv_http_reply_error(reply, 400, "bad_request", "timeout_ms must be a whole number from 0 to %d",
                            CV_WAIT_MAX_MS);
        return 0;
    }
    return 1;
}

/* GET /wait: answers now when covered, else queues the request for the answering thread. */
static void on_wait(void *arg, const char *uri, void *reply) {
    cv_sync *s = arg;
    struct cv_waitq *q = s->waitq;
    uint64_t lsn;
    int has;
    long ms;
    if (!wait_params(uri, "lsn", 1, &lsn, &has, &ms, reply)) return;
    if (!q) {
        cv_http_reply_error(reply, 503, "unavailable", "not ready yet; retry shortly");
        return;
    }
    pthread_mutex_lock(&q->mu);
    if (lsn <= q->covered || ms == 0 || q->stop) {
        int ok = lsn <= q->covered;
        answer(reply, ok ? 200 : 504, lsn, q->covered, 0);
        cv_metric_add(ok ? q->m_answered : q->m_timeouts, 1);
    } else if (q->n >= CV_WAIT_MAX_WAITERS) {
        cv_http_reply_error(reply, 503, "busy", "%d requests are waiting already; retry shortly",
                            CV_WAIT_MAX_WAITERS);
    } else {
        double now = cv_now();
        q->w[q->n++] = (waiter){reply, lsn, now, now + (double)ms / 1e3};
        cv_metric_set(q->m_waiters, q->n);
        pthread_cond_broadcast(&q->moved);
    }
    pthread_mutex_unlock(&q->mu);
}

cv_err cv_wait_open(cv_sync *s) {
    struct cv_waitq *q = calloc(1, sizeof *q);
    if (!q) return CV_ERR_NOMEM;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->moved, &ca);
    pthread_condattr_destroy(&ca);
    q->m_applied = cv_metrics_gauge(s->rt.reg, "cdcvec_sync_applied_lsn",
                                    "Stream position (LSN as a number) up to which every change of the "
                                    "table is searchable: /wait and /search?min_lsn= wait on it.",
                                    NULL);
    q->m_waiters =
        cv_metrics_gauge(s->rt.reg, "cdcvec_sync_wait_waiters", "Requests waiting on /wait.", NULL);
    q->m_answered = cv_metrics_counter(s->rt.reg, "cdcvec_sync_wait_total", "/wait answers, by outcome.",
                                       "outcome=\"covered\"");
    q->m_timeouts = cv_metrics_counter(s->rt.reg, "cdcvec_sync_wait_total", "/wait answers, by outcome.",
                                       "outcome=\"timeout\"");
    s->waitq = q;
    if (pthread_create(&q->th, NULL, wait_thread, q) != 0) {
        cv_error("event=wait_thread_failed error=\"cannot start the /wait thread\"");
        return CV_ERR_NOMEM;
    }
    q->started = 1;
    return CV_OK;
}

void cv_wait_stop(cv_sync *s) {
    struct cv_waitq *q = s->waitq;
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->moved);
    pthread_mutex_unlock(&q->mu);
    if (q->started) pthread_join(q->th, NULL);
    q->started = 0;
}

void cv_wait_close(cv_sync *s) {
    struct cv_waitq *q = s->waitq;
    if (!q) return;
    cv_wait_stop(s);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->moved);
    free(q);
    s->waitq = NULL;
}

void cv_wait_advance(cv_sync *s, uint64_t pos) {
    struct cv_waitq *q = s->waitq;
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    if (pos > q->covered) {
        q->covered = pos;
        cv_metric_set(q->m_applied, (double)pos);
        pthread_cond_broadcast(&q->moved); /* the answering thread and /search?min_lsn= */
    }
    pthread_mutex_unlock(&q->mu);
}

int cv_wait_until(cv_sync *s, uint64_t lsn, long timeout_ms, uint64_t *covered) {
    struct cv_waitq *q = s->waitq;
    *covered = 0;
    if (!q) return 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += timeout_ms % 1000 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&q->mu);
    int r = 0;
    while (lsn > q->covered && !q->stop && r != ETIMEDOUT)
        r = pthread_cond_timedwait(&q->moved, &q->mu, &ts);
    int ok = lsn <= q->covered;
    *covered = q->covered;
    pthread_mutex_unlock(&q->mu);
    return ok;
}

int cv_wait_search_params(const char *uri, uint64_t *min_lsn, int *has, long *timeout_ms, void *reply) {
    return wait_params(uri, "min_lsn", 0, min_lsn, has, timeout_ms, reply);
}

void cv_wait_reply_timeout(void *reply, uint64_t lsn, uint64_t covered, double waited_s) {
    answer(reply, 504, lsn, covered, waited_s);
}

void cv_wait_route(cv_sync *s, cv_http_route *r) { *r = (cv_http_route){"/wait", on_wait, s, 0}; }

json_t *cv_search_freshness(cv_sync *s) {
    uint64_t covered = 0;
    cv_wait_until(s, 0, 0, &covered);
    char c[24];
    cv_lsn_format(covered, c);
    json_t *o = json_pack("{s:s}", "applied_lsn", c);
    cv_buf d = {0};
    cv_health_ready(s, &d);
    json_t *h = d.p ? json_loads(d.p, 0, NULL) : NULL;
    json_t *v;
    if ((v = json_object_get(h, "lag_seconds"))) json_object_set(o, "lag_seconds", v);
    if ((v = json_object_get(h, "lag_bytes"))) json_object_set(o, "lag_bytes", v);
    json_decref(h);
    free(d.p);
    return o;
}
