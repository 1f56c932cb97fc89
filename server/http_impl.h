/* http_impl.h: the HTTP layer's insides, shared by http.c (libmicrohttpd: requests, authentication,
 * replies), http_admit.c (connections, clients, deadlines, the body budget), http_guard.c (Host,
 * Origin/CORS, content types, message framing, forwarded client addresses) and http_routes.c
 * (the endpoints). */
#ifndef CV_HTTP_IMPL_H
#define CV_HTTP_IMPL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/socket.h>

#include "../common/cv_buf.h"
#include "server_impl.h"

typedef struct cv_http cv_http;
typedef struct cv_http_req cv_http_req;

enum { PH_HEAD, PH_BODY, PH_BUSY }; /* what a connection is waiting for: deadlines apply to the first two */

/* One client address (the peer, or the address a trusted proxy forwarded): what it holds. */
typedef struct http_client {
    char *key;       /* numeric address (owned) */
    int conns;       /* connections attributed to it */
    long body_bytes; /* body budget its requests hold */
    struct http_client *next;
} http_client;

/* One open connection (under conn_mu). */
typedef struct http_conn {
    int fd;
    int phase;
    int shut;
    int in_request;   /* a request line arrived and its answer is not sent yet */
    int from_proxy;   /* the peer is a trusted proxy */
    double since;     /* monotonic seconds when the phase began */
    size_t body_got;  /* body bytes received in PH_BODY */
    size_t body_want; /* bytes the body announced (or the limit, chunked) */
    http_client *cl;  /* who it is attributed to */
    struct http_conn *prev, *next;
} http_conn;

/* An address range of --http-trusted-proxies. */
typedef struct http_net {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    int bits;
} http_net;

typedef struct http_endpoint {
    const char *path;
    int post;  /* POST with a JSON body; else GET (and HEAD) */
    int open;  /* 1: no API key needed, unless metrics_auth; 2: never (/login) */
    int route; /* index in o.routes, or -1 */
    void (*fn)(cv_http_req *r);
} http_endpoint;

#define HTTP_CLIENT_BUCKETS 1024
#define HTTP_CAP_SLACK      32 /* MHD's own limit is this far above ours (evicted connections closing) */

struct cv_http {
    cv_server *s;
    cv_http_opts o; /* defaults filled in */
    struct MHD_Daemon *d;
    http_endpoint *eps;
    int neps;
    atomic_int parsing; /* bodies being decoded */
    pthread_rwlock_t submit_lock;
    int quiesced; /* under submit_lock */
    /* connections, clients, the body budget: under conn_mu */
    pthread_mutex_t conn_mu;
    pthread_cond_t conn_cv;
    http_conn *conns;
    int nconns, cap, stop, have_reaper;
    http_client *clients[HTTP_CLIENT_BUCKETS];
    long body_bytes;    /* body budget held */
    long body_arriving; /* of which by bodies still arriving */
    long body_keep;     /* budget kept for first grants: arriving bodies grow within the rest */
    long body_per_client;
    pthread_t reaper;
    http_net *proxies;
    int nproxies;
    char *listen_host; /* the --http host, lower case, brackets dropped */
    cv_metric *m_timeout_head, *m_timeout_body, *m_slow_body, *m_refused_budget, *m_refused_parse,
        *m_refused_conns, *m_refused_client, *m_evicted, *m_refused_host, *m_refused_origin;
    cv_buf start_err; /* MHD's messages while starting */
    int starting;
};

struct cv_http_req {
    cv_server *s;
    cv_http *h;
    struct MHD_Connection *conn;
    struct http_conn *hc; /* the connection's deadline entry, or NULL */
    char *uri;            /* request target as the client sent it (owned) */
    char *body;           /* (body_cap) owned; the request body, body_len bytes so far */
    size_t body_len, body_cap;
    size_t reserved;  /* bytes of the body budget held (the body buffer's capacity) */
    size_t declared;  /* Content-Length, or the body limit for a chunked body */
    int sized;        /* declared is a Content-Length */
    int arriving;     /* reserved counts as a body still arriving */
    int over_budget;  /* the budget could not grow: the rest is dropped, 503 at the end */
    http_client *cl;  /* the client the body's bytes are charged to */
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
    int close;  /* close the connection after the answer */
    char *cors; /* the request's Origin when CORS allows it (owned) */
};

/* http_login.c: a session cookie for the page's GET routes, given for the key by /login. */
int cv_http_session_ok(cv_http_req *r);
void cv_http_login_page(cv_http_req *r, int status, const char *msg, const char *next);
void cv_http_on_login(cv_http_req *r);
void cv_http_on_logout(cv_http_req *r);
/* given[0..glen) is key, compared in constant time. */
int cv_http_key_equal(const char *given, size_t glen, const char *key);

/* Answers r: status, content type and a copy of body. Callable from any thread, once. */
void cv_http_answer(cv_http_req *r, int status, const char *ctype, const char *body, size_t len);
/* Answers r with a response made by the caller (ownership passes). */
void cv_http_answer_response(cv_http_req *r, int status, struct MHD_Response *resp);
/* Like cv_http_answer, taking ownership of body (malloc'd). */
void cv_http_answer_owned(cv_http_req *r, int status, const char *ctype, char *body, size_t len);
/* Answers r with {"error":{"message":...,"type":...,"code":status}}. */
void cv_http_error(cv_http_req *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Takes a read lock that keeps the batcher alive; 0 when the HTTP layer is quiescing (then
 * no lock is held). Pair with cv_http_submit_end. */
int cv_http_submit_begin(cv_http_req *r);
void cv_http_submit_end(cv_http_req *r);

/* ---- http_admit.c ---- */
/* Fills h->cap, the trusted proxies and the listen host; CV_ERR_ARG after a log line. */
cv_err cv_http_admit_init(cv_http *h);
void cv_http_admit_free(cv_http *h);
/* MHD callbacks: the accept policy (caps, eviction of idle connections), connection start/end. */
enum MHD_Result cv_http_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
void cv_http_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                           enum MHD_ConnectionNotificationCode code);
void *cv_http_reaper_main(void *arg);
void cv_http_set_phase(cv_http *h, http_conn *c, int phase);
/* A request line arrived (1) or its answer went out (0) on c. */
void cv_http_mark_request(cv_http *h, http_conn *c, int on);
/* Attributes c to the client a trusted proxy forwarded (when c comes from one); 0 when that client
 * is over --http-max-per-client. */
int cv_http_attribute(cv_http_req *r);
enum { HTTP_FIRST_GRANT = 64 << 10 }; /* body bytes reserved at the headers, at most */
/* 0 when the whole body budget is held (a new body is answered 503 before it is read). */
int cv_http_budget_open(cv_http *h);
/* Grows r's reservation to want bytes in all: whole 0, as a body still arriving (within the
 * budget less the quarter kept); whole 1, for bytes that complete the body (within the whole
 * budget). 0 when it cannot. */
int cv_http_budget_take(cv_http_req *r, size_t want, int whole);
/* The body has arrived: its bytes no longer count as arriving. */
void cv_http_budget_arrived(cv_http_req *r);
void cv_http_budget_release(cv_http_req *r);
/* Body bytes received so far, for the rate deadline. */
void cv_http_body_progress(cv_http *h, http_conn *c, size_t got, size_t want);

/* ---- http_guard.c ---- */
/* Parses a comma list of addresses / CIDRs; CV_ERR_ARG with what is wrong in err. */
cv_err cv_http_parse_nets(const char *list, http_net **out, int *n, cv_buf *err);
int cv_http_net_match(const http_net *nets, int n, const struct sockaddr *sa);
/* The client a chain of forwarding headers names, walking from the right past trusted proxies;
 * written to out (numeric). 0 when none parses. */
int cv_http_forwarded_client(cv_http *h, struct MHD_Connection *conn, cv_buf *out);
/* Numeric form of an address (IPv4-mapped IPv6 as IPv4). */
void cv_http_addr_text(const struct sockaddr *sa, char *out, size_t cap);
/* Checks made on every request at its headers, before routing; 0 after answering. */
int cv_http_guard_request(cv_http_req *r);
/* The body's framing (one length; not both Content-Length and Transfer-Encoding); 0 after
 * answering 400 with the connection closed. */
int cv_http_guard_framing(cv_http_req *r);
/* A body sent to a JSON endpoint is application/json; 0 after answering 415. */
int cv_http_guard_type(cv_http_req *r, int has_body);
/* Adds CORS headers to resp when the request's Origin is allowed. */
void cv_http_cors_headers(cv_http_req *r, struct MHD_Response *resp);
/* Answers an OPTIONS request (CORS preflight). */
void cv_http_on_options(cv_http_req *r);

/* The endpoints (http_routes.c). A POST endpoint finds its body in r->body / r->body_len. */
void cv_http_on_healthz(cv_http_req *r);
void cv_http_on_readyz(cv_http_req *r);
void cv_http_on_metrics(cv_http_req *r);
void cv_http_on_embed(cv_http_req *r);
void cv_http_on_openai(cv_http_req *r);
void cv_http_on_models(cv_http_req *r); /* GET /v1/models */

#endif
