/* http_guard.c: checks every request passes before an endpoint sees it, and the addresses of
 * forwarded clients.
 *   - Host (DNS rebinding): a page on evil.example whose name is made to point at 127.0.0.1
 *     sends "Host: evil.example". Accepted: no Host (HTTP/1.0), IP addresses, localhost and
 *     *.localhost, the --http host, this machine's host name, and --http-allowed-hosts; else 403.
 *   - Origin (browsers): a cross-origin request (Origin not this Host) is refused 403 unless
 *     its origin is in --http-cors-origins; then the answer carries CORS headers and OPTIONS
 *     preflights are answered 204.
 *   - framing (request smuggling, RFC 9112 6.3): two different Content-Length values, or
 *     Transfer-Encoding with Content-Length: 400, and the connection is closed.
 *   - content type: an endpoint that takes JSON takes only Content-Type: application/json (415
 *     otherwise): the types a web page may send without a preflight (text/plain, forms) never
 *     reach the model.
 *   - forwarded clients: X-Forwarded-For / Forwarded, honoured only from --http-trusted-proxies,
 *     read from the right past trusted proxies. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../common/cv_log.h"
#include "http_impl.h"

/* ---- addresses ------------------------------------------------------------------------------- */

/* sa as family + bytes (IPv4-mapped IPv6 as IPv4); 0 for other families. */
static int addr_bytes(const struct sockaddr *sa, unsigned char out[16]) {
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            memcpy(out, a->s6_addr + 12, 4);
            return AF_INET;
        }
        memcpy(out, a->s6_addr, 16);
        return AF_INET6;
    }
    return 0;
}

void cv_http_addr_text(const struct sockaddr *sa, char *out, size_t cap) {
    unsigned char b[16];
    int fam = addr_bytes(sa, b);
    if (!fam || !inet_ntop(fam, b, out, (socklen_t)cap)) snprintf(out, cap, "-");
}

/* An address in s[0..n): bare, "v4:port", "[v6]" or "[v6]:port", optionally quoted. */
static int parse_addr(const char *s, size_t n, int *fam, unsigned char out[16]) {
    char t[64];
    while (n && (*s == ' ' || *s == '\t' || *s == '"'))
        s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '"'))
        n--;
    if (n == 0 || n >= sizeof t) return 0;
    memcpy(t, s, n);
    t[n] = 0;
    char *a = t;
    if (*a == '[') {
        char *e = strchr(a, ']');
        if (!e) return 0;
        *e = 0;
        a++;
    } else {
        char *c = strchr(a, ':');
        if (c && !strchr(c + 1, ':')) *c = 0; /* v4:port */
    }
    if (inet_pton(AF_INET, a, out) == 1) return *fam = AF_INET, 1;
    if (inet_pton(AF_INET6, a, out) == 1) {
        if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)out)) {
            memmove(out, out + 12, 4);
            return *fam = AF_INET, 1;
        }
        return *fam = AF_INET6, 1;
    }
    return 0;
}

cv_err cv_http_parse_nets(const char *list, http_net **out, int *n, cv_buf *err) {
    *out = NULL;
    *n = 0;
    if (!list || !*list) return CV_OK;
    int cap = 1;
    for (const char *p = list; *p; p++)
        cap += *p == ',';
    http_net *v = calloc((size_t)cap, sizeof *v);
    if (!v) return CV_ERR_NOMEM;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        const char *slash = memchr(p, '/', len);
        size_t alen = slash ? (size_t)(slash - p) : len;
        http_net *w = &v[*n];
        int bits = -1;
        if (slash) {
            char *end;
            bits = (int)strtol(slash + 1, &end, 10);
            if (end == slash + 1 || end != p + len) bits = -2;
        }
        int max = 0;
        if (alen && parse_addr(p, alen, &w->family, w->addr)) max = w->family == AF_INET ? 32 : 128;
        if (!max || bits == -2 || bits > max) {
            cv_buf_printf(err, "'%.*s' is not an address or CIDR", (int)len, p);
            free(v);
            return CV_ERR_ARG;
        }
        w->bits = bits < 0 ? max : bits;
        (*n)++;
        p += len;
        if (*p == ',') p++;
    }
    *out = v;
    return CV_OK;
}

static int match_bytes(const http_net *nets, int n, int fam, const unsigned char *b) {
    for (int i = 0; i < n; i++) {
        if (nets[i].family != fam) continue;
        int bits = nets[i].bits, k = bits / 8;
        if (memcmp(nets[i].addr, b, (size_t)k) != 0) continue;
        if (bits % 8 && ((nets[i].addr[k] ^ b[k]) & (0xFF00 >> (bits % 8)) & 0xFF)) continue;
        return 1;
    }
    return 0;
}

int cv_http_net_match(const http_net *nets, int n, const struct sockaddr *sa) {
    unsigned char b[16];
    int fam = n ? addr_bytes(sa, b) : 0;
    return fam && match_bytes(nets, n, fam, b);
}

typedef struct {
    const char *name;
    cv_buf *b;
} hdr_collect;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value) {
    hdr_collect *c = cls;
    (void)kind;
    if (key && value && strcasecmp(key, c->name) == 0) {
        if (c->b->len) cv_buf_put(c->b, ",", 1);
        cv_buf_puts(c->b, value);
    }
    return MHD_YES;
}

int cv_http_forwarded_client(cv_http *h, struct MHD_Connection *conn, cv_buf *out) {
    cv_buf v = {0};
    hdr_collect c = {"Forwarded", &v};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, &c);
    int fwd = v.len > 0;
    if (!fwd) {
        c.name = "X-Forwarded-For";
        MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, &c);
    }
    int found = 0;
    for (size_t end = v.len; !v.oom && end > 0 && !found;) { /* elements from the right */
        size_t start = end;
        while (start > 0 && v.p[start - 1] != ',')
            start--;
        const char *e = v.p + start;
        size_t n = end - start;
        if (fwd) { /* for=... among the element's ;-separated pairs */
            const char *f = NULL;
            for (size_t i = 0; i + 4 <= n; i++)
                if (strncasecmp(e + i, "for=", 4) == 0 && (i == 0 || strchr("; \t", e[i - 1]))) {
                    f = e + i + 4;
                    break;
                }
            if (!f) break;
            const char *semi = memchr(f, ';', (size_t)(e + n - f));
            n = (size_t)((semi ? semi : e + n) - f);
            e = f;
        }
        int fam;
        unsigned char b[16];
        char text[64];
        if (!parse_addr(e, n, &fam, b)) break; /* unknown or obfuscated: the proxy is the client */
        if (!match_bytes(h->proxies, h->nproxies, fam, b) || start == 0) {
            inet_ntop(fam, b, text, sizeof text);
            out->len = 0;
            cv_buf_puts(out, text);
            found = !out->oom;
        }
        end = start ? start - 1 : 0;
    }
    free(v.p);
    return found;
}

/* ---- per-request checks ------------------------------------------------------------------------ */

/* 1 when name (n bytes, lower case) matches a comma list entry: exact, ".suffix" or "*". */
static int in_list(const char *list, const char *name, size_t n) {
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ",");
        size_t l = len;
        while (l && p[l - 1] == ' ')
            l--;
        if (l == 1 && p[0] == '*') return 1;
        if (l && l == n && strncasecmp(p, name, n) == 0) return 1;
        if (l > 1 && p[0] == '.' && n > l && strncasecmp(name + n - l, p, l) == 0) return 1;
        if (l > 1 && p[0] == '.' && n == l - 1 && strncasecmp(name, p + 1, n) == 0) return 1;
        p += len;
    }
    return 0;
}

static int host_allowed(cv_http *h, const char *host) {
    size_t n = strlen(host);
    if (n == 0) return 1;
    char t[256];
    if (n >= sizeof t) return 0;
    memcpy(t, host, n + 1);
    for (char *p = t; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    char *name = t;
    if (*name == '[') { /* [v6]:port */
        char *e = strchr(name, ']');
        if (!e) return 0;
        *e = 0;
        name++;
    } else {
        char *c = strrchr(name, ':');
        if (c) *c = 0;
    }
    n = strlen(name);
    while (n && name[n - 1] == '.') /* "localhost." */
        name[--n] = 0;
    unsigned char b[16];
    if (inet_pton(AF_INET, name, b) == 1 || inet_pton(AF_INET6, name, b) == 1) return 1;
    if (strcmp(name, "localhost") == 0 || (n > 10 && strcmp(name + n - 10, ".localhost") == 0)) return 1;
    if (*h->listen_host && strcmp(name, h->listen_host) == 0) return 1;
    char me[256];
    if (gethostname(me, sizeof me) == 0 && (me[sizeof me - 1] = 0, strcasecmp(name, me) == 0)) return 1;
    return in_list(h->o.allowed_hosts, name, n);
}

int cv_http_guard_request(cv_http_req *r) {
    cv_http *h = r->h;
    const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
    if (host && !host_allowed(h, host)) {
        cv_metric_add(h->m_refused_host, 1);
        cv_http_error(r, 403, "host_not_allowed",
                      "Host '%.200s' is not served here (a guard against DNS rebinding): use the address, or "
                      "list the name in --http-allowed-hosts (CDCVEC_HTTP_ALLOWED_HOSTS)",
                      host);
        return 0;
    }
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    if (!origin) return 1;
    size_t on = strlen(origin);
    if (in_list(h->o.cors_origins, origin, on)) {
        r->cors = strdup(origin);
        return 1;
    }
    const char *sep = strstr(origin, "://");
    if (host && sep && strcasecmp(sep + 3, host) == 0) return 1; /* same origin */
    cv_metric_add(h->m_refused_origin, 1);
    cv_http_error(r, 403, "origin_not_allowed",
                  "cross-origin request from '%.200s' refused: list the origin in --http-cors-origins "
                  "(CDCVEC_HTTP_CORS_ORIGINS) to let its pages call this API",
                  origin);
    return 0;
}

typedef struct {
    int n, differ;
    const char *first;
} cl_count;

static enum MHD_Result count_cl(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    cl_count *c = cls;
    (void)kind;
    if (!key || strcasecmp(key, "Content-Length") != 0) return MHD_YES;
    if (c->n++ == 0)
        c->first = value;
    else if (!value || !c->first || strcmp(value, c->first) != 0)
        c->differ = 1;
    return MHD_YES;
}

int cv_http_guard_framing(cv_http_req *r) {
    cl_count c = {0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_cl, &c);
    const char *te = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Transfer-Encoding");
    if (c.differ || (te && c.n)) {
        r->close = 1;
        cv_http_error(r, 400, "bad_request",
                      c.differ
                          ? "two different Content-Length headers: the body's length is ambiguous (RFC 9112 "
                            "6.3); send one"
                          : "Transfer-Encoding and Content-Length together: the body's length is ambiguous "
                            "(RFC 9112 6.3); send one of them");
        return 0;
    }
    return 1;
}

int cv_http_guard_type(cv_http_req *r, int has_body) {
    if (!has_body || !r->ep->post) return 1;
    const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Type");
    size_t n = ct ? strcspn(ct, "; \t") : 0;
    if (ct && n == 16 && strncasecmp(ct, "application/json", 16) == 0) return 1;
    if (ct && r->ep->open == 2 && n == 33 && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0)
        return 1; /* the login form */
    cv_http_error(r, 415, "unsupported_media_type",
                  "%s takes a JSON body: send 'Content-Type: application/json'%s%.100s%s (curl: -H "
                  "'Content-Type: application/json')",
                  r->ep->path, ct ? ", not '" : " (none was sent)", ct ? ct : "", ct ? "'" : "");
    return 0;
}

void cv_http_cors_headers(cv_http_req *r, struct MHD_Response *resp) {
    if (!r->cors) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->cors);
    MHD_add_response_header(resp, "Vary", "Origin");
}

void cv_http_on_options(cv_http_req *r) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        cv_http_error(r, 500, "internal", "out of memory");
        return;
    }
    int get = 0, post = 0; /* a path may have a GET and a POST endpoint (sync's /search) */
    for (int i = 0; i < r->h->neps; i++)
        if (!strcmp(r->h->eps[i].path, r->ep->path)) post |= r->h->eps[i].post, get |= !r->h->eps[i].post;
    const char *methods = get && post ? "GET, HEAD, POST, OPTIONS"
                          : post      ? "POST, OPTIONS"
                                      : "GET, HEAD, OPTIONS";
    MHD_add_response_header(resp, "Allow", methods);
    if (r->cors) {
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", methods);
        MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    cv_http_answer_response(r, 204, resp);
}
