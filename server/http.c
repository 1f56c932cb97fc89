/* http.c: the HTTP front door of `cdcvec serve` and `cdcvec sync --http`, on GNU libmicrohttpd.
 *
 * Threads: MHD's internal polling threads (epoll on Linux, a pool of o.threads) run every
 * connection; nothing on them waits for the model. An embedding request is parsed on its
 * polling thread, handed to the batcher, and its connection is suspended; the batch thread
 * builds the reply and resumes it. Searches run on threads of their own and answer the same
 * way. So /healthz answers while the model is busy, and thousands of idle connections cost a
 * file descriptor and a small memory pool each, not a thread.
 *
 * Limits, each where it is cheapest:
 *   - connections: the connection cap (clamped below RLIMIT_NOFILE) and per-client cap, in the
 *     accept policy, idle connections evicted near the cap (http_admit.c);
 *   - time: MHD's idle timeout (no traffic), and a deadline thread that shuts down a connection
 *     whose request line + headers (or body) take too long, e.g. a client sending 1 byte/s, or
 *     whose body falls behind the minimum rate (http_admit.c);
 *   - Host, Origin, framing and content types (http_guard.c);
 *   - request line and headers: MHD's per-connection memory pool; MHD answers 414 / 431 itself
 *     (with its own short HTML body: libmicrohttpd 0.9.75 has no hook for those pages);
 *   - bodies: Content-Length above the limit is answered 413 before a byte of the body is
 *     read (no 100 Continue is sent); a chunked body is cut at the limit (413 if it ends within
 *     another limit's worth, else the connection is closed); a byte budget for all bodies held
 *     at once, reserved by bytes received, per client (http_admit.c; 503 + Retry-After when it
 *     is spent), and a cap on bodies decoded at once (503 + Retry-After); malloc_trim after
 *     large bodies.
 * Every answer cdcvec makes is JSON (but the search page's HTML) with a reason phrase from MHD. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "../common/cv_time.h"
#include "http_impl.h"

enum { RQ_NEW, RQ_BODY, RQ_WAIT };

/* ---- answers -------------------------------------------------------------------------- */

static void add_std_headers(cv_http_req *r, struct MHD_Response *resp, int status, const char *ctype) {
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (strncmp(ctype, "text/html", 9) == 0)
        MHD_add_response_header(resp, "Content-Security-Policy",
                                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'");
    if (status == 503 || status == 429) MHD_add_response_header(resp, "Retry-After", "1");
    if (r->close) MHD_add_response_header(resp, "Connection", "close");
    cv_http_cors_headers(r, resp);
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"cdcvec\"");
    if (status == 405 && r->ep) MHD_add_response_header(resp, "Allow", r->ep->post ? "POST" : "GET, HEAD");
}

/* Stores the answer; resumes the connection when its request is suspended. */
static void set_answer(cv_http_req *r, int status, struct MHD_Response *resp, const char *ctype) {
    if (resp && ctype) add_std_headers(r, resp, status, ctype);
    pthread_mutex_lock(&r->mu);
    CV_ASSERT(!r->answered); /* answered once */
    r->answered = 1;
    r->resp = resp;
    r->status = resp ? (unsigned)status : 0;
    int resume = r->suspended;
    r->suspended = 0;
    if (resume) MHD_resume_connection(r->conn);
    pthread_mutex_unlock(&r->mu);
}

void cv_http_answer_response(cv_http_req *r, int status, struct MHD_Response *resp) {
    if (resp) {
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        cv_http_cors_headers(r, resp);
    }
    set_answer(r, status, resp, NULL);
}

void cv_http_answer(cv_http_req *r, int status, const char *ctype, const char *body, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) cv_error("event=http_answer_failed status=%d bytes=%zu error=\"out of memory\"", status, len);
    set_answer(r, status, resp, ctype);
}

void cv_http_answer_owned(cv_http_req *r, int status, const char *ctype, char *body, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        cv_error("event=http_answer_failed status=%d bytes=%zu error=\"out of memory\"", status, len);
    }
    set_answer(r, status, resp, ctype);
}

static void verror(cv_http_req *r, int status, const char *type, const char *fmt, va_list ap) {
    cv_buf msg = {0}, b = {0};
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n >= 0 && (msg.p = malloc((size_t)n + 1))) vsnprintf(msg.p, (size_t)n + 1, fmt, ap);
    const char *m = msg.p ? msg.p : "out of memory";
    cv_buf_puts(&b, "{\"error\":{\"message\":");
    cv_json_string(&b, m, strlen(m));
    cv_buf_puts(&b, ",\"type\":");
    cv_json_string(&b, type, strlen(type));
    cv_buf_printf(&b, ",\"code\":%d}}", status);
    free(msg.p);
    if (b.oom) {
        static const char oom[] =
            "{\"error\":{\"message\":\"out of memory\",\"type\":\"internal\",\"code\":500}}";
        free(b.p);
        cv_http_answer(r, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    cv_http_answer_owned(r, status, "application/json", b.p, b.len);
}

void cv_http_error(cv_http_req *r, int status, const char *type, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(r, status, type, fmt, ap);
    va_end(ap);
}

void cv_http_reply(void *reply_handle, int status, const char *content_type, const char *body, size_t len) {
    cv_http_answer(reply_handle, status, content_type, body, len);
}

void cv_http_reply_error(void *reply_handle, int status, const char *type, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(reply_handle, status, type, fmt, ap);
    va_end(ap);
}

int cv_http_submit_begin(cv_http_req *r) {
    pthread_rwlock_rdlock(&r->h->submit_lock);
    if (!r->h->quiesced) return 1;
    pthread_rwlock_unlock(&r->h->submit_lock);
    return 0;
}

void cv_http_submit_end(cv_http_req *r) { pthread_rwlock_unlock(&r->h->submit_lock); }

/* Hands r's answer to MHD now, or suspends the connection until another thread answers. */
static enum MHD_Result finish(cv_http_req *r) {
    pthread_mutex_lock(&r->mu);
    if (!r->answered) {
        r->state = RQ_WAIT;
        r->suspended = 1;
        MHD_suspend_connection(r->conn);
        pthread_mutex_unlock(&r->mu);
        return MHD_YES;
    }
    struct MHD_Response *resp = r->resp;
    r->resp = NULL;
    pthread_mutex_unlock(&r->mu);
    if (!resp) return MHD_NO; /* no memory for an answer: close */
    enum MHD_Result ok = MHD_queue_response(r->conn, r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* ---- requests --------------------------------------------------------------------------- */

/* MHD: the request line is in (headers follow); the request's state starts here. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    cv_http *h = cls;
    cv_http_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->uri = strdup(uri ? uri : "/");
    if (!r->uri) {
        free(r);
        return NULL;
    }
    r->s = h->s;
    r->h = h;
    r->conn = conn;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    r->hc = ci ? ci->socket_context : NULL;
    pthread_mutex_init(&r->mu, NULL);
    cv_http_mark_request(h, r->hc, 1);
    return r;
}

static void release_body(cv_http_req *r) {
    if (r->body_cap > r->peak) r->peak = r->body_cap;
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    cv_http_budget_release(r);
}

/* MHD: the request is over (answered, or the connection failed). */
static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    cv_http *h = cls;
    cv_http_req *r = *con_cls;
    if (!r) return;
    release_body(r);
    if (r->hc) { /* keep-alive: the next request's headers are due */
        cv_http_set_phase(h, r->hc, PH_HEAD);
        cv_http_mark_request(h, r->hc, 0);
    }
    free(r->cors);
    if (r->resp) MHD_destroy_response(r->resp);
    pthread_mutex_destroy(&r->mu);
    if (r->peak >= (1u << 20)) malloc_trim(0); /* give a large body's pages back */
    free(r->uri);
    free(r);
    *con_cls = NULL;
}

/* Constant-time comparison of a presented key with the configured one. */
int cv_http_key_equal(const char *given, size_t glen, const char *key) {
    size_t klen = strlen(key);
    unsigned diff = glen != klen;
    for (size_t i = 0; i < klen; i++)
        diff |= (unsigned char)key[i] ^ (unsigned char)(i < glen ? given[i] : 0);
    return diff == 0;
}

/* The request carries "Authorization: Bearer <key>" (scheme in any case) with the right key. */
static int authorized(cv_http_req *r) {
    const char *key = r->s->o.api_key;
    if (!key || !*key) return 1;
    const char *a = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (!a) return 0;
    while (*a == ' ' || *a == '\t')
        a++;
    if (strncasecmp(a, "Bearer", 6) != 0 || (a[6] != ' ' && a[6] != '\t')) return 0;
    a += 6;
    while (*a == ' ' || *a == '\t')
        a++;
    size_t n = strlen(a);
    while (n && (a[n - 1] == ' ' || a[n - 1] == '\t'))
        n--;
    return cv_http_key_equal(a, n, key);
}

/* The endpoint at path for the method (POST or not), else any at path (answered 405). */
static const http_endpoint *find_endpoint(cv_http *h, const char *path, int is_post) {
    const http_endpoint *any = NULL;
    for (int i = 0; i < h->neps; i++) {
        if (strcmp(h->eps[i].path, path) != 0) continue;
        if (!h->eps[i].post == !is_post) return &h->eps[i];
        if (!any) any = &h->eps[i];
    }
    return any;
}

const char *cv_http_body(void *reply_handle, size_t *len) {
    cv_http_req *r = reply_handle;
    *len = r->body ? r->body_len : 0;
    return r->body ? r->body : "";
}

/* Runs the endpoint now that the whole request (and its body) is in. */
static void dispatch(cv_http_req *r) {
    if (r->ep->route >= 0) {
        const cv_http_route *rt = &r->s->o.routes[r->ep->route];
        rt->cb(rt->arg, r->uri, r);
    } else {
        r->ep->fn(r);
    }
}

/* First call: the headers are in. Framing, Host, Origin, routing, method, key, content type,
 * client, body size; no byte of a body read yet. */
static enum MHD_Result on_headers(cv_http *h, cv_http_req *r, const char *url, const char *method) {
    cv_metric_add(r->s->m_req_http, 1);
    int is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int is_post = strcmp(method, "POST") == 0, is_options = strcmp(method, "OPTIONS") == 0;
    r->ep = find_endpoint(h, url, is_post);
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    const char *te = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Transfer-Encoding");
    unsigned long long len = cl ? strtoull(cl, NULL, 10) : 0; /* MHD has checked its syntax */
    int has_body = len > 0 || (te && strcasecmp(te, "identity") != 0);
    if (!cv_http_guard_framing(r) || !cv_http_guard_request(r)) {
        /* answered */
    } else if (!r->ep) {
        cv_http_error(r, 404, "not_found", "no such endpoint: %s", url);
    } else if (is_options) {
        cv_http_on_options(r);
    } else if ((r->ep->post && !is_post) || (!r->ep->post && !is_get)) {
        cv_http_error(r, 405, "method_not_allowed", "%s takes %s, not %s", r->ep->path,
                      r->ep->post ? "POST" : "GET", method);
    } else if (r->ep->open != 2 && (!r->ep->open || h->o.metrics_auth) && !authorized(r) &&
               !(r->ep->route >= 0 && !r->ep->post && cv_http_session_ok(r))) {
        cv_metric_add(r->s->m_err_auth, 1);
        if (r->ep->route >= 0 && !strcmp(r->ep->path, "/")) /* a person at the page: the login form */
            cv_http_login_page(r, 401, NULL, r->uri);
        else
            cv_http_error(r, 401, "unauthorized",
                          "missing or wrong API key: send 'Authorization: Bearer <key>' (CDCVEC_API_KEY)%s",
                          r->ep->route >= 0 && !r->ep->post ? ", or log in at /login (a session cookie)"
                                                            : "");
    } else if (!r->ep->post && has_body) {
        cv_http_error(r, 400, "bad_request", "a GET request carries no body");
    } else if (has_body && len > (unsigned long long)h->o.max_body_bytes) {
        cv_server_count_error(r->s, CV_ST_TOO_LARGE);
        cv_http_error(r, 413, "too_large", "body of %llu bytes is over the limit of %ld bytes", len,
                      h->o.max_body_bytes);
    } else if (!cv_http_guard_type(r, has_body)) {
        cv_server_count_error(r->s, CV_ST_BAD_REQUEST);
    } else if (!cv_http_attribute(r)) {
        r->close = 1;
        cv_server_count_error(r->s, CV_ST_BUSY);
        cv_http_error(
            r, 429, "too_many_connections",
            "client %s holds --http-max-per-client (%d) connections through the proxy already; close "
            "some, or retry after a backoff",
            r->cl ? r->cl->key : "-", h->o.max_per_client);
    } else if (has_body) {
        r->declared = cl ? (size_t)len : (size_t)h->o.max_body_bytes;
        r->sized = cl != NULL;
        if (!cv_http_budget_open(h)) {
            cv_metric_add(h->m_refused_budget, 1);
            cv_server_count_error(r->s, CV_ST_BUSY);
            cv_http_error(r, 503, "busy", "too many request bodies in flight; retry after a backoff");
        } else { /* a first grant when the arriving share has room; else the body's bytes must find it */
            cv_http_budget_take(r, r->declared + 1 < HTTP_FIRST_GRANT ? r->declared + 1 : HTTP_FIRST_GRANT,
                                0);
            r->state = RQ_BODY;
            cv_http_set_phase(h, r->hc, PH_BODY);
            cv_http_body_progress(h, r->hc, 0, r->declared);
            return MHD_YES; /* MHD sends 100 Continue when asked, then the body */
        }
    } else { /* no body: MHD calls again at the end of the request (answering now would close) */
        r->state = RQ_BODY;
        return MHD_YES;
    }
    cv_http_set_phase(h, r->hc, PH_BUSY);
    return finish(r);
}

/* Grows r's buffer (and its share of the body budget) to hold need bytes, exactly when they
 * complete the body (whole); 0 when the budget cannot grow. */
static int grow_body(cv_http *h, cv_http_req *r, size_t need, int whole) {
    size_t limit = r->declared + 1;
    size_t cap = r->body_cap ? r->body_cap * 2 : r->reserved;
    if (cap < 4096) cap = 4096;
    while (cap < need)
        cap *= 2;
    if (cap > limit || whole) cap = whole ? need : limit;
    if (cap > r->reserved && !cv_http_budget_take(r, cap, whole)) return 0;
    char *p = realloc(r->body, cap);
    if (!p) {
        cv_error("event=http_body_alloc_failed bytes=%zu", cap);
        return 0;
    }
    r->body = p;
    r->body_cap = cap;
    return 1;
}

/* A piece of the body. */
static enum MHD_Result on_body_data(cv_http *h, cv_http_req *r, const char *data, size_t n) {
    if (r->too_large || r->over_budget) { /* dropped: past the limit, close once it goes on for another */
        r->discarded += n;
        cv_http_body_progress(h, r->hc, r->body_len + r->discarded, r->declared);
        return r->too_large && r->discarded > (size_t)h->o.max_body_bytes ? MHD_NO : MHD_YES;
    }
    if (r->body_len + n > (size_t)h->o.max_body_bytes) {
        r->too_large = 1;
        r->discarded = n;
        release_body(r);
        return MHD_YES;
    }
    if (r->body_len + n + 1 > r->body_cap &&
        !grow_body(h, r, r->body_len + n + 1, r->sized && r->body_len + n == r->declared)) {
        r->over_budget = 1;
        r->discarded = r->body_len + n;
        release_body(r);
        return MHD_YES;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    cv_http_body_progress(h, r->hc, r->body_len, r->declared);
    return MHD_YES;
}

/* The request is complete: decode its body (within the cap on decodes at once), run the endpoint. */
static enum MHD_Result on_body_end(cv_http *h, cv_http_req *r) {
    cv_http_set_phase(h, r->hc, PH_BUSY);
    cv_http_budget_arrived(r);
    if (r->too_large) {
        cv_server_count_error(r->s, CV_ST_TOO_LARGE);
        cv_http_error(r, 413, "too_large", "body over the limit of %ld bytes", h->o.max_body_bytes);
        return finish(r);
    }
    if (r->over_budget) {
        cv_metric_add(h->m_refused_budget, 1);
        cv_server_count_error(r->s, CV_ST_BUSY);
        cv_http_error(r, 503, "busy",
                      "the memory for request bodies is in use by other uploads (--http-body-memory-bytes); "
                      "retry after a backoff");
        return finish(r);
    }
    if (!r->ep->post) {
        dispatch(r);
        return finish(r);
    }
    if (atomic_fetch_add(&h->parsing, 1) >= h->o.max_parses) {
        atomic_fetch_sub(&h->parsing, 1);
        release_body(r);
        cv_metric_add(h->m_refused_parse, 1);
        cv_server_count_error(r->s, CV_ST_BUSY);
        cv_http_error(r, 503, "busy", "too many request bodies being decoded; retry after a backoff");
        return finish(r);
    }
    if (r->body) r->body[r->body_len] = 0;
    dispatch(r);
    atomic_fetch_sub(&h->parsing, 1);
    release_body(r);
    return finish(r);
}

/* MHD's access handler: called at the headers, for each piece of body, at its end, on resume. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    cv_http *h = cls;
    cv_http_req *r = *con_cls;
    if (!r && !(r = *con_cls = on_uri(h, url, conn))) return MHD_NO;
    switch (r->state) {
    case RQ_NEW: return on_headers(h, r, url, method);
    case RQ_BODY:
        if (*upload_data_size) {
            size_t n = *upload_data_size;
            *upload_data_size = 0;
            return on_body_data(h, r, upload_data, n);
        }
        return on_body_end(h, r);
    default: return finish(r);
    }
}

/* MHD's log lines: debug level, and kept while starting (to say why a start failed). */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    cv_http *h = cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
        line[--n] = 0;
    if (h->starting) {
        h->start_err.len = 0;
        cv_buf_puts(&h->start_err, line);
    }
    cv_debug("event=http_library msg=\"%s\"", line);
}

/* ---- start and stop ---------------------------------------------------------------------- */

static void fill_defaults(cv_http_opts *o) {
    if (o->max_body_bytes <= 0) o->max_body_bytes = 16L << 20;
    if (o->body_memory_bytes <= 0) o->body_memory_bytes = 64L << 20;
    /* bodies still arriving grow within 3/4 of the budget (http_admit.c): one largest body fits */
    if (o->body_memory_bytes < o->max_body_bytes + o->max_body_bytes / 3 + 4096)
        o->body_memory_bytes = o->max_body_bytes + o->max_body_bytes / 3 + 4096;
    if (o->max_parses <= 0) o->max_parses = 2;
    if (o->max_connections <= 0) o->max_connections = 1000;
    if (o->max_per_client == 0) o->max_per_client = 128;
    if (o->header_timeout_s <= 0) o->header_timeout_s = 10;
    if (o->body_timeout_s <= 0) o->body_timeout_s = 60;
    if (o->idle_timeout_s <= 0) o->idle_timeout_s = 30;
    if (o->max_header_bytes <= 0) o->max_header_bytes = 32768;
    if (o->threads <= 0) o->threads = 2;
    if (o->min_body_rate <= 0) o->min_body_rate = 32768;
}

/* host:port (host may be [v6], empty or * for any) into an address for MHD. */
static cv_err resolve(const char *hostport, struct addrinfo **out) {
    const char *colon = strrchr(hostport, ':');
    if (!colon || !colon[1]) return CV_ERR_ARG;
    size_t hl = (size_t)(colon - hostport);
    char *host = strndup(hostport, hl);
    if (!host) return CV_ERR_NOMEM;
    char *hp = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') host[hl - 1] = 0, hp++;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    int rv = getaddrinfo(*hp && strcmp(hp, "*") ? hp : NULL, colon + 1, &hints, out);
    free(host);
    return rv ? CV_ERR_ARG : CV_OK;
}

static cv_err build_endpoints(cv_http *h) {
    cv_server_opts *so = &h->s->o;
    h->eps = calloc((size_t)so->nroutes + 10, sizeof *h->eps);
    if (!h->eps) return CV_ERR_NOMEM;
    const http_endpoint fixed[] = {
        {"/healthz", 0, 1, -1, cv_http_on_healthz},      {"/readyz", 0, 1, -1, cv_http_on_readyz},
        {"/metrics", 0, 1, -1, cv_http_on_metrics},      {"/embed", 1, 0, -1, cv_http_on_embed},
        {"/v1/embeddings", 1, 0, -1, cv_http_on_openai}, {"/v1/models", 0, 0, -1, cv_http_on_models}};
    for (int i = 0; i < (h->s->m ? 6 : 3); i++) /* no model (capture): /healthz, /readyz, /metrics */
        h->eps[h->neps++] = fixed[i];
    for (int i = 0; i < so->nroutes; i++)
        h->eps[h->neps++] = (http_endpoint){so->routes[i].path, so->routes[i].post, 0, i, NULL};
    if (so->nroutes) { /* a page for people: log in with the key (http_login.c) */
        h->eps[h->neps++] = (http_endpoint){"/login", 0, 2, -1, cv_http_on_login};
        h->eps[h->neps++] = (http_endpoint){"/login", 1, 2, -1, cv_http_on_login};
        h->eps[h->neps++] = (http_endpoint){"/logout", 1, 2, -1, cv_http_on_logout};
    }
    return CV_OK;
}

static double body_bytes_gauge(void *arg) {
    cv_http *h = arg;
    pthread_mutex_lock(&h->conn_mu);
    long n = h->body_bytes;
    pthread_mutex_unlock(&h->conn_mu);
    return (double)n;
}

static double conns_gauge(void *arg) {
    cv_http *h = arg;
    pthread_mutex_lock(&h->conn_mu);
    int n = h->nconns;
    pthread_mutex_unlock(&h->conn_mu);
    return n;
}

static void register_metrics(cv_http *h) {
    cv_metrics *m = h->s->reg;
    static const char *th = "HTTP connections shut down for missing a deadline, by phase.";
    h->m_timeout_head = cv_metrics_counter(m, "cdcvec_http_deadline_closes_total", th, "phase=\"headers\"");
    h->m_timeout_body = cv_metrics_counter(m, "cdcvec_http_deadline_closes_total", th, "phase=\"body\"");
    static const char *rh = "HTTP requests answered 503 by a limit on request bodies, by limit.";
    h->m_refused_budget = cv_metrics_counter(m, "cdcvec_http_body_refusals_total", rh, "limit=\"memory\"");
    h->m_refused_parse = cv_metrics_counter(m, "cdcvec_http_body_refusals_total", rh, "limit=\"decoding\"");
    h->m_slow_body = cv_metrics_counter(m, "cdcvec_http_deadline_closes_total", th, "phase=\"body_rate\"");
    static const char *ch = "HTTP connections refused at accept or shut down to make room, by reason.";
    h->m_refused_conns = cv_metrics_counter(m, "cdcvec_http_connection_refusals_total", ch, "reason=\"cap\"");
    h->m_refused_client =
        cv_metrics_counter(m, "cdcvec_http_connection_refusals_total", ch, "reason=\"per_client\"");
    h->m_evicted =
        cv_metrics_counter(m, "cdcvec_http_connection_refusals_total", ch, "reason=\"idle_evicted\"");
    static const char *gh = "HTTP requests refused by a guard (Host, Origin), by guard.";
    h->m_refused_host = cv_metrics_counter(m, "cdcvec_http_guard_refusals_total", gh, "guard=\"host\"");
    h->m_refused_origin = cv_metrics_counter(m, "cdcvec_http_guard_refusals_total", gh, "guard=\"origin\"");
    cv_metrics_gauge_fn(m, "cdcvec_http_connections", "Open HTTP connections.", NULL, conns_gauge, h);
    cv_metrics_gauge_fn(m, "cdcvec_http_body_bytes", "Bytes of the request body budget in use.", NULL,
                        body_bytes_gauge, h);
}

cv_err cv_http_start(cv_server *s) {
    cv_http *h = calloc(1, sizeof *h);
    if (!h) return CV_ERR_NOMEM;
    s->http = h;
    h->s = s;
    h->o = s->o.http_opts;
    fill_defaults(&h->o);
    pthread_rwlock_init(&h->submit_lock, NULL);
    pthread_mutex_init(&h->conn_mu, NULL);
    pthread_cond_init(&h->conn_cv, NULL);
    cv_err err = build_endpoints(h);
    if (!err) err = cv_http_admit_init(h);
    if (err) return err;
    register_metrics(h);
    struct addrinfo *ai = NULL;
    if (resolve(s->o.http, &ai)) {
        cv_error("event=http_address address=%s error=\"not host:port\" fix=\"use host:port, e.g. "
                 "127.0.0.1:9464\"",
                 s->o.http);
        return CV_ERR_ARG;
    }
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    h->starting = 1;
    h->d = MHD_start_daemon(
        flags, 0, cv_http_accept, h, on_request, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)h->o.threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(h->cap + HTTP_CAP_SLACK), MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)h->o.idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)h->o.max_header_bytes, MHD_OPTION_URI_LOG_CALLBACK,
        on_uri, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_NOTIFY_CONNECTION,
        cv_http_on_connection, h, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h, MHD_OPTION_END);
    int eno = errno;
    h->starting = 0;
    freeaddrinfo(ai);
    if (!h->d) {
        cv_error("event=http_listen address=%s error=\"%s\" library=\"%s\" fix=\"check the address, or that "
                 "nothing else listens there\"",
                 s->o.http, strerror(eno), h->start_err.p ? h->start_err.p : "-");
        return CV_ERR_IO;
    }
    if (pthread_create(&h->reaper, NULL, cv_http_reaper_main, h) != 0) {
        cv_error("event=http_thread error=\"cannot start the deadline thread\"");
        return CV_ERR_NOMEM;
    }
    h->have_reaper = 1;
    return CV_OK;
}

void cv_http_quiesce(cv_server *s) {
    cv_http *h = s->http;
    if (!h) return;
    pthread_rwlock_wrlock(&h->submit_lock);
    h->quiesced = 1;
    pthread_rwlock_unlock(&h->submit_lock);
}

void cv_http_stop(cv_server *s) {
    cv_http *h = s->http;
    if (!h) return;
    if (h->d) MHD_stop_daemon(h->d);
    if (h->have_reaper) {
        pthread_mutex_lock(&h->conn_mu);
        h->stop = 1;
        pthread_cond_signal(&h->conn_cv);
        pthread_mutex_unlock(&h->conn_mu);
        pthread_join(h->reaper, NULL);
    }
    pthread_rwlock_destroy(&h->submit_lock);
    pthread_mutex_destroy(&h->conn_mu);
    pthread_cond_destroy(&h->conn_cv);
    cv_http_admit_free(h);
    free(h->eps);
    free(h->start_err.p);
    free(h);
    s->http = NULL;
}
