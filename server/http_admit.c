/* http_admit.c: who may hold what of the HTTP port: connections, clients, deadlines, body bytes.
 *
 * Connections. libmicrohttpd stops polling its listening socket when its connection limit is
 * reached, so new clients would wait in the kernel's queue. Its limit is therefore set a little
 * above ours (h->cap + HTTP_CAP_SLACK) and ours is applied in the accept policy: near the cap
 * the connection idle for the longest (no request in progress: an idle keep-alive connection, or
 * one that never sent a byte) is shut down to make room; at the cap with none idle, the new
 * connection is accepted and closed at once. So a new client is answered or refused at once,
 * never queued.
 *
 * Clients. Every connection is attributed to a client address: its peer, or, when the peer is
 * one of --http-trusted-proxies, the address the proxy forwarded (X-Forwarded-For / Forwarded,
 * read at each request's headers). --http-max-per-client applies per client; connections of a
 * trusted proxy that have not sent a request yet count only against the global cap.
 *
 * Body budget (--http-body-memory-bytes). A body reserves what it has received, not what it
 * announced: a first grant of at most HTTP_FIRST_GRANT bytes at the headers, then, as bytes
 * arrive, its buffer's capacity (doubling up to the announced size). Bodies still arriving may
 * grow within the budget less a quarter kept for first grants, so small requests that arrive
 * whole go through while large uploads fill the rest; one client's bodies hold at most a quarter
 * of the budget (at least one largest body). A body must also keep up --http-min-body-rate after
 * a grace of HTTP_RATE_GRACE_S seconds, or its connection is shut down: a client cannot hold the
 * budget with promises and 1 byte a second. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/cv_log.h"
#include "../common/cv_time.h"
#include "http_impl.h"

#define HTTP_RATE_GRACE_S 2.0

/* ---- clients -------------------------------------------------------------------------------- */

static unsigned key_hash(const char *k) {
    unsigned x = 2166136261u;
    for (; *k; k++)
        x = (x ^ (unsigned char)*k) * 16777619u;
    return x % HTTP_CLIENT_BUCKETS;
}

/* The client entry for key, made when missing (under conn_mu); NULL without memory. */
static http_client *client_get(cv_http *h, const char *key) {
    unsigned b = key_hash(key);
    for (http_client *c = h->clients[b]; c; c = c->next)
        if (strcmp(c->key, key) == 0) return c;
    http_client *c = calloc(1, sizeof *c);
    if (!c || !(c->key = strdup(key))) {
        free(c);
        return NULL;
    }
    c->next = h->clients[b];
    h->clients[b] = c;
    return c;
}

/* Frees cl when nothing is attributed to it any more (under conn_mu). */
static void client_put(cv_http *h, http_client *cl) {
    if (!cl || cl->conns > 0 || cl->body_bytes > 0) return;
    for (http_client **p = &h->clients[key_hash(cl->key)]; *p; p = &(*p)->next)
        if (*p == cl) {
            *p = cl->next;
            free(cl->key);
            free(cl);
            return;
        }
}

static int client_full(const cv_http *h, const http_client *cl) {
    return h->o.max_per_client > 0 && cl && cl->conns >= h->o.max_per_client;
}

/* ---- connections ------------------------------------------------------------------------------ */

/* Shuts down the connection idle for the longest (under conn_mu); 0 when none is idle. */
static int evict_idle(cv_http *h) {
    http_conn *victim = NULL;
    for (http_conn *c = h->conns; c; c = c->next)
        if (!c->shut && c->phase == PH_HEAD && !c->in_request && (!victim || c->since < victim->since))
            victim = c;
    if (!victim) return 0;
    victim->shut = 1;
    shutdown(victim->fd, SHUT_RDWR);
    cv_metric_add(h->m_evicted, 1);
    return 1;
}

enum MHD_Result cv_http_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    cv_http *h = cls;
    (void)addrlen;
    char key[64];
    cv_http_addr_text(addr, key, sizeof key);
    int proxy = cv_http_net_match(h->proxies, h->nproxies, addr);
    enum MHD_Result ok = MHD_YES;
    const char *why = "";
    pthread_mutex_lock(&h->conn_mu);
    unsigned b = key_hash(key);
    http_client *cl = NULL;
    for (cl = h->clients[b]; cl && strcmp(cl->key, key) != 0; cl = cl->next)
        ;
    int live = 0;
    for (http_conn *c = h->conns; c && live < h->cap; c = c->next) /* connections not being shut */
        live += !c->shut;
    if (!proxy && client_full(h, cl)) {
        cv_metric_add(h->m_refused_client, 1);
        ok = MHD_NO, why = "per_client";
    } else if (live >= h->cap - (h->cap >= 40 ? h->cap / 20 : 1) && !evict_idle(h) && live >= h->cap) {
        cv_metric_add(h->m_refused_conns, 1);
        ok = MHD_NO, why = "cap";
    }
    pthread_mutex_unlock(&h->conn_mu);
    if (!ok) cv_debug("event=http_refused client=%s reason=%s", key, why);
    return ok;
}

void cv_http_set_phase(cv_http *h, http_conn *c, int phase) {
    if (!c) return;
    pthread_mutex_lock(&h->conn_mu);
    c->phase = phase;
    c->since = cv_now();
    c->body_got = c->body_want = 0;
    pthread_mutex_unlock(&h->conn_mu);
}

void cv_http_mark_request(cv_http *h, http_conn *c, int on) {
    if (!c) return;
    pthread_mutex_lock(&h->conn_mu);
    c->in_request = on;
    pthread_mutex_unlock(&h->conn_mu);
}

void cv_http_body_progress(cv_http *h, http_conn *c, size_t got, size_t want) {
    if (!c) return;
    pthread_mutex_lock(&h->conn_mu);
    c->body_got = got;
    c->body_want = want;
    pthread_mutex_unlock(&h->conn_mu);
}

/* MHD: a connection opened or closed (before its socket is closed). */
void cv_http_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode code) {
    cv_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        http_conn *c = calloc(1, sizeof *c);
        if (!c || !ci) { /* without an entry only MHD's idle timeout applies */
            free(c);
            return;
        }
        char key[64] = "-";
        if (ai && ai->client_addr) {
            cv_http_addr_text(ai->client_addr, key, sizeof key);
            c->from_proxy = cv_http_net_match(h->proxies, h->nproxies, ai->client_addr);
        }
        c->fd = ci->connect_fd;
        c->since = cv_now();
        pthread_mutex_lock(&h->conn_mu);
        if ((c->cl = client_get(h, key))) c->cl->conns++;
        c->next = h->conns;
        if (h->conns) h->conns->prev = c;
        h->conns = c;
        h->nconns++;
        pthread_mutex_unlock(&h->conn_mu);
        *socket_context = c;
        return;
    }
    http_conn *c = *socket_context;
    if (!c) return;
    pthread_mutex_lock(&h->conn_mu);
    if (c->prev) c->prev->next = c->next;
    if (c->next) c->next->prev = c->prev;
    if (h->conns == c) h->conns = c->next;
    h->nconns--;
    if (c->cl) {
        c->cl->conns--;
        client_put(h, c->cl);
    }
    pthread_mutex_unlock(&h->conn_mu);
    free(c);
    *socket_context = NULL;
}

int cv_http_attribute(cv_http_req *r) {
    cv_http *h = r->h;
    http_conn *c = r->hc;
    if (!c || !c->from_proxy) {
        r->cl = c ? c->cl : NULL;
        return 1;
    }
    cv_buf who = {0};
    int ok = 1;
    if (cv_http_forwarded_client(h, r->conn, &who)) {
        pthread_mutex_lock(&h->conn_mu);
        if (!c->cl || strcmp(c->cl->key, who.p) != 0) {
            http_client *to = client_get(h, who.p);
            if (to && client_full(h, to)) {
                cv_metric_add(h->m_refused_client, 1);
                ok = 0;
            } else if (to) {
                if (c->cl) c->cl->conns--, client_put(h, c->cl);
                c->cl = to;
                to->conns++;
            }
            if (to && !ok) client_put(h, to);
        }
        pthread_mutex_unlock(&h->conn_mu);
    }
    r->cl = c->cl;
    free(who.p);
    return ok;
}

/* ---- the body budget ------------------------------------------------------------------------- */

int cv_http_budget_open(cv_http *h) {
    pthread_mutex_lock(&h->conn_mu);
    int open = h->body_bytes < h->o.body_memory_bytes;
    pthread_mutex_unlock(&h->conn_mu);
    return open;
}

int cv_http_budget_take(cv_http_req *r, size_t want, int whole) {
    cv_http *h = r->h;
    if (want <= r->reserved) return 1;
    long d = (long)(want - r->reserved);
    int ok = 0;
    pthread_mutex_lock(&h->conn_mu);
    if (h->body_bytes + d <= h->o.body_memory_bytes &&
        (whole || h->body_arriving + d <= h->o.body_memory_bytes - h->body_keep) &&
        (!r->cl || r->cl->body_bytes + d <= h->body_per_client)) {
        ok = 1;
        h->body_bytes += d;
        if (r->cl) r->cl->body_bytes += d;
        if (whole) { /* arrived: nothing of it counts as arriving any more */
            if (r->arriving) h->body_arriving -= (long)r->reserved;
            r->arriving = 0;
        } else {
            h->body_arriving += d;
            r->arriving = 1;
        }
        r->reserved = want;
    }
    pthread_mutex_unlock(&h->conn_mu);
    return ok;
}

void cv_http_budget_arrived(cv_http_req *r) {
    if (!r->arriving) return;
    pthread_mutex_lock(&r->h->conn_mu);
    r->h->body_arriving -= (long)r->reserved;
    r->arriving = 0;
    pthread_mutex_unlock(&r->h->conn_mu);
}

void cv_http_budget_release(cv_http_req *r) {
    if (!r->reserved) return;
    cv_http *h = r->h;
    pthread_mutex_lock(&h->conn_mu);
    h->body_bytes -= (long)r->reserved;
    if (r->arriving) h->body_arriving -= (long)r->reserved;
    if (r->cl) {
        r->cl->body_bytes -= (long)r->reserved;
        client_put(h, r->cl);
    }
    pthread_mutex_unlock(&h->conn_mu);
    r->reserved = 0;
    r->arriving = 0;
}

/* ---- deadlines -------------------------------------------------------------------------------- */

/* 1 when c's body is behind the minimum rate (under conn_mu). */
static int body_too_slow(const cv_http *h, const http_conn *c, double now) {
    double t = now - c->since - HTTP_RATE_GRACE_S;
    if (t <= 0) return 0;
    double need = t * (double)h->o.min_body_rate;
    if (c->body_want && need > (double)c->body_want) need = (double)c->body_want;
    return (double)c->body_got < need;
}

/* Deadline thread: shuts down connections whose headers or body are overdue or too slow (MHD
 * then sees the end of the stream and closes them on its own thread). */
void *cv_http_reaper_main(void *arg) {
    cv_http *h = arg;
    pthread_mutex_lock(&h->conn_mu);
    while (!h->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&h->conn_cv, &h->conn_mu, &ts);
        const double now = cv_now();
        for (http_conn *c = h->conns; c; c = c->next) {
            double limit = c->phase == PH_HEAD   ? h->o.header_timeout_s
                           : c->phase == PH_BODY ? h->o.body_timeout_s
                                                 : -1;
            if (c->shut || limit < 0) continue;
            int slow = c->phase == PH_BODY && body_too_slow(h, c, now);
            if (!slow && now - c->since <= limit) continue;
            c->shut = 1;
            shutdown(c->fd, SHUT_RDWR);
            cv_metric_add(slow                  ? h->m_slow_body
                          : c->phase == PH_HEAD ? h->m_timeout_head
                                                : h->m_timeout_body,
                          1);
            cv_debug("event=http_deadline phase=%s after_s=%.1f body_bytes=%zu client=%s",
                     slow                  ? "body_rate"
                     : c->phase == PH_HEAD ? "headers"
                                           : "body",
                     now - c->since, c->body_got, c->cl ? c->cl->key : "-");
        }
    }
    pthread_mutex_unlock(&h->conn_mu);
    return NULL;
}

/* ---- start and stop ---------------------------------------------------------------------------- */

/* The connection cap, below the descriptors this process may open (MHD's limit is
 * HTTP_CAP_SLACK above it). */
static int connection_cap(const cv_http_opts *o) {
    struct rlimit rl;
    int cap = o->max_connections;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur - 64 < cap) {
        cap = (long)rl.rlim_cur > 128 ? (int)rl.rlim_cur - 64 : (int)rl.rlim_cur / 2;
        cv_warn("event=http_connection_cap wanted=%d cap=%d nofile=%ld fix=\"raise ulimit -n to serve more "
                "connections\"",
                o->max_connections, cap, (long)rl.rlim_cur);
    }
    return cap;
}

cv_err cv_http_admit_init(cv_http *h) {
    h->cap = connection_cap(&h->o);
    h->body_keep = h->o.body_memory_bytes / 4;
    h->body_per_client = h->o.body_memory_bytes / 4;
    if (h->body_per_client < h->o.max_body_bytes + 1) h->body_per_client = h->o.max_body_bytes + 1;
    cv_buf err = {0};
    if (cv_http_parse_nets(h->o.trusted_proxies, &h->proxies, &h->nproxies, &err)) {
        cv_error("event=http_trusted_proxies value=\"%s\" error=\"%s\" fix=\"--http-trusted-proxies takes a "
                 "comma list of IP addresses or CIDRs, e.g. 10.0.0.5,172.16.0.0/12\"",
                 h->o.trusted_proxies, err.p ? err.p : "out of memory");
        free(err.p);
        return CV_ERR_ARG;
    }
    const char *hp = h->s->o.http, *colon = strrchr(hp, ':');
    size_t n = colon ? (size_t)(colon - hp) : strlen(hp);
    if (n >= 2 && hp[0] == '[' && hp[n - 1] == ']') hp++, n -= 2;
    if (!(h->listen_host = strndup(hp, n))) return CV_ERR_NOMEM;
    for (char *p = h->listen_host; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    return CV_OK;
}

void cv_http_admit_free(cv_http *h) {
    for (int b = 0; b < HTTP_CLIENT_BUCKETS; b++)
        while (h->clients[b]) {
            http_client *c = h->clients[b];
            h->clients[b] = c->next;
            free(c->key);
            free(c);
        }
    free(h->proxies);
    free(h->listen_host);
}
