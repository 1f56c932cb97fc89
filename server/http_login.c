/* http_login.c: a page a person can open when an API key is set (issue 27). The search page's
 * GET routes (sync --http: /, /search, /wait) take, besides `Authorization: Bearer <key>`, a
 * session cookie that a login form gives for the key:
 *   GET /login, and GET / without the key or a session: 401 with the form (key, and the page
 *                            to go back to)
 *   POST /login  key=...&next=/?q=...  (application/x-www-form-urlencoded): the key compared in
 *                constant time; right: 303 to next with `Set-Cookie: cdcvec_session=<256 random
 *                bits>; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200` (+ Secure behind a
 *                trusted proxy that says X-Forwarded-Proto: https); wrong: 401 with the form
 *   POST /logout forgets the session, clears the cookie, 303 to /login.
 * CSRF: the cookie is SameSite=Strict (never sent on another site's requests), and it opens only
 * read-only GET routes: never a POST (the JSON API, /v1/embeddings and /embed keep the Bearer
 * key). `next` is a path on this server only (no open redirect). Sessions live in memory (at
 * most 1024; the oldest go first), 12 hours each: a restart logs everyone out. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "http_impl.h"

#define SESSION_MAX   1024
#define SESSION_TTL_S 43200
#define COOKIE        "cdcvec_session"

static struct {
    char tok[65];
    time_t expires;
} sessions[SESSION_MAX];
static pthread_mutex_t sess_mu = PTHREAD_MUTEX_INITIALIZER;

static int token_equal(const char *a, const char *b) {
    unsigned char d = 0;
    for (int i = 0; i < 64; i++)
        d |= (unsigned char)(a[i] ^ b[i]);
    return d == 0;
}

int cv_http_session_ok(cv_http_req *r) {
    const char *c = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, COOKIE);
    if (!c || strlen(c) != 64) return 0;
    time_t now = time(NULL);
    int ok = 0;
    pthread_mutex_lock(&sess_mu);
    for (int i = 0; i < SESSION_MAX; i++)
        ok |= sessions[i].expires > now && token_equal(sessions[i].tok, c);
    pthread_mutex_unlock(&sess_mu);
    return ok;
}

/* A new session's token into tok (65 bytes); 0 when no randomness could be had. */
static int session_new(char *tok) {
    unsigned char raw[32];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) return 0;
    for (int i = 0; i < 32; i++)
        snprintf(tok + 2 * i, 3, "%02x", raw[i]);
    time_t now = time(NULL);
    pthread_mutex_lock(&sess_mu);
    int slot = 0;
    for (int i = 1; i < SESSION_MAX; i++)
        if (sessions[i].expires < sessions[slot].expires) slot = i;
    memcpy(sessions[slot].tok, tok, 65);
    sessions[slot].expires = now + SESSION_TTL_S;
    pthread_mutex_unlock(&sess_mu);
    return 1;
}

static void session_drop(cv_http_req *r) {
    const char *c = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, COOKIE);
    if (!c || strlen(c) != 64) return;
    pthread_mutex_lock(&sess_mu);
    for (int i = 0; i < SESSION_MAX; i++)
        if (token_equal(sessions[i].tok, c)) sessions[i].expires = 0;
    pthread_mutex_unlock(&sess_mu);
}

static void put_html(cv_buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': cv_buf_puts(b, "&amp;"); break;
        case '<': cv_buf_puts(b, "&lt;"); break;
        case '>': cv_buf_puts(b, "&gt;"); break;
        case '"': cv_buf_puts(b, "&quot;"); break;
        case '\'': cv_buf_puts(b, "&#39;"); break;
        default: cv_buf_put(b, s, 1);
        }
    }
}

/* next: a path on this server ("/..." but not "//..." or "/\..."), else "/". */
static const char *safe_next(const char *next) {
    return next && next[0] == '/' && next[1] != '/' && next[1] != '\\' && !strpbrk(next, "\r\n") ? next : "/";
}

void cv_http_login_page(cv_http_req *r, int status, const char *msg, const char *next) {
    cv_buf b = {0};
    cv_buf_puts(&b,
                "<!doctype html><html lang=en><head><meta charset=\"utf-8\"><meta name=viewport "
                "content=\"width=device-width, initial-scale=1\"><title>cdcvec: log in</title><style>"
                "body{font:16px/1.45 system-ui,sans-serif;max-width:30em;margin:2em auto;padding:0 1em}"
                "input,button{font:inherit;padding:.35em .5em}input{width:100%;box-sizing:border-box;"
                "margin:.3em 0 .8em}.err{color:#a00;font-weight:600}</style></head><body><h1>Log in</h1>");
    if (msg) {
        cv_buf_puts(&b, "<p class=err id=error role=alert>");
        put_html(&b, msg);
        cv_buf_puts(&b, "</p>");
    }
    cv_buf_puts(&b, "<form method=post action=\"/login\"><label for=key>API key (CDCVEC_API_KEY)</label>"
                    "<input type=password id=key name=key autocomplete=current-password autofocus required>"
                    "<input type=hidden name=next value=\"");
    put_html(&b, safe_next(next));
    cv_buf_puts(&b, "\"><button id=login>Log in</button></form><p>The key opens the search page in this "
                    "browser for 12 hours (a cookie); the JSON API takes <code>Authorization: Bearer "
                    "&lt;key&gt;</code>.</p></body></html>");
    if (b.oom)
        cv_http_error(r, 500, "internal", "out of memory");
    else
        cv_http_answer_owned(r, status, "text/html; charset=utf-8", b.p, b.len);
}

/* 303 to location, setting (or clearing, tok NULL) the session cookie. */
static void redirect(cv_http_req *r, const char *location, const char *tok) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        cv_http_error(r, 500, "internal", "out of memory");
        return;
    }
    const char *proto = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Forwarded-Proto");
    int secure = proto && r->hc && r->hc->from_proxy && !strcasecmp(proto, "https");
    char cookie[200];
    snprintf(cookie, sizeof cookie, COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%d%s",
             tok ? tok : "", tok ? SESSION_TTL_S : 0, secure ? "; Secure" : "");
    MHD_add_response_header(resp, "Set-Cookie", cookie);
    MHD_add_response_header(resp, "Location", location);
    MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    cv_http_answer_response(r, 303, resp);
}

void cv_http_on_login(cv_http_req *r) {
    cv_buf key = {0}, next = {0}, form = {0};
    if (!r->ep->post) {
        cv_http_query_param(r->uri, "next", 4096, &next);
        cv_http_login_page(r, 200, NULL, next.p);
        free(next.p);
        return;
    }
    cv_buf_puts(&form, "?");
    cv_buf_put(&form, r->body ? r->body : "", r->body ? r->body_len : 0);
    cv_buf_put(&form, "", 1);
    cv_http_query_param(form.p ? form.p : "", "next", 4096, &next);
    const char *want = r->s->o.api_key;
    if (!want || !*want) {
        redirect(r, safe_next(next.p), NULL); /* no key set: nothing to log in to */
    } else if (cv_http_query_param(form.p ? form.p : "", "key", 4096, &key) == CV_QP_OK &&
               cv_http_key_equal(key.p, key.len, want)) {
        char tok[65];
        if (!session_new(tok)) {
            cv_http_error(r, 500, "internal", "no randomness for a session token");
        } else {
            cv_info("event=login outcome=ok");
            redirect(r, safe_next(next.p), tok);
        }
    } else {
        cv_warn("event=login outcome=wrong_key");
        cv_http_login_page(r, 401, "Wrong key: give the key the server was started with (CDCVEC_API_KEY).",
                           next.p);
    }
    if (key.p) memset(key.p, 0, key.len);
    if (form.p) memset(form.p, 0, form.len);
    free(key.p), free(next.p), free(form.p);
}

void cv_http_on_logout(cv_http_req *r) {
    session_drop(r);
    redirect(r, "/login", NULL);
}
