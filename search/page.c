/* page.c: the search page of `cdcvec sync --http`.
 *   GET /                   a query box (plain HTML form, no script)
 *   GET /?q=...&limit=10    the same page with the results rendered on the server, so a search
 *                           can be linked: each hit shows its title, score, the matched text (the
 *                           embedded column, or the template filled, read from the source table
 *                           by key: the sink keeps only its hash) and the row's
 *                           other fields (the tutorial's Streamlit page: name, description, score,
 *                           author, year, id)
 *   GET /search?q=...&limit=5&min_lsn=X/Y&timeout_ms=N  JSON {"query":...,
 * "results":[{"rank":1,"similarity":0.71,"key":"4", "text":"...", "payload":{...}}]} min_lsn: search only
 * once the index covers that LSN (wait.c; 504 after timeout_ms). q: URL-decoded, at most CV_SEARCH_MAX_Q
 * bytes (414 beyond), valid UTF-8 and no NUL (400); nothing is cut. Everything from the table is
 * HTML-escaped. Each search runs on a thread of its own (embedding waits on the model) with a sink connection
 * of its own (libpq connections are not shared between threads); at most CV_SEARCH_MAX_AT_ONCE at once, more
 * are answered 503. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_jnum.h"
#include "../common/cv_buf.h"
#include "../pg/cv_keytext.h"
#include "../common/cv_log.h"
#include "../pg/cv_pg.h"
#include "../ingest/sync_impl.h"
#include "search.h"

#define CV_SEARCH_MAX_Q       2048 /* bytes of a query, decoded */
#define CV_SEARCH_MAX_AT_ONCE 16

static const char HEAD[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>cdcvec search</title>"
    "<style>body{font:16px system-ui,sans-serif;max-width:50em;margin:2em auto;padding:0 1em}"
    "input[type=search]{width:70%;font-size:1.1em;padding:.3em}ol{padding-left:1.4em}"
    "li.hit{margin:1em 0}.t{font-weight:600;font-size:1.1em}.s{color:#666;font-size:.9em}"
    ".x{margin:.3em 0}.f{color:#444;font-size:.9em}.f b{font-weight:500}.err{color:#a00}</style></head><body>"
    "<h1>Search the catalog</h1><form method=get action=\"/\"><input type=search name=q autofocus "
    "placeholder=\"books like star wars\" value=\"";

/* Appends s[0..n) to b, HTML-escaped. */
static void put_html(cv_buf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '&': cv_buf_puts(b, "&amp;"); break;
        case '<': cv_buf_puts(b, "&lt;"); break;
        case '>': cv_buf_puts(b, "&gt;"); break;
        case '"': cv_buf_puts(b, "&quot;"); break;
        case '\'': cv_buf_puts(b, "&#39;"); break;
        default: cv_buf_put(b, &s[i], 1);
        }
    }
}

static void put_html_s(cv_buf *b, const char *s) { put_html(b, s, strlen(s)); }

/* A JSON value as text: strings as they are, anything else as compact JSON. */
static void put_value(cv_buf *b, json_t *v, int html) {
    if (json_is_string(v) && !cv_jnum_number(v, NULL)) {
        if (html)
            put_html(b, json_string_value(v), json_string_length(v));
        else
            cv_buf_put(b, json_string_value(v), json_string_length(v));
        return;
    }
    char *t = cv_jnum_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY, CV_JNUM_EXACT);
    if (t && html) put_html_s(b, t);
    if (t && !html) cv_buf_puts(b, t);
    free(t);
}

typedef struct {
    cv_sync *s;
    char *uri;
    void *reply;
    int html;
    cv_buf q; /* the query, decoded and checked */
    long limit;
    uint64_t min_lsn; /* with has_min: wait until the index covers it (wait.c) */
    int has_min;
    long wait_ms;
    char *text_source; /* the table's "column N name" or "template T" when the search began */
    json_t *hits;
} search_req;

/* The embedded column's name, or NULL with a template. */
static const char *text_column(const char *source) {
    const char *sp = source && strncmp(source, "column ", 7) == 0 ? strchr(source + 7, ' ') : NULL;
    return sp ? sp + 1 : NULL;
}

static void add_hit(void *arg, int rank, double sim, const char *key, const char *payload) {
    search_req *r = arg;
    json_t *hit = json_pack("{s:i,s:f,s:s}", "rank", rank, "similarity", sim, "key", key);
    json_t *p = cv_jnum_loads(payload, 0, NULL); /* numbers: every digit */
    json_object_set_new(hit, "text", json_string(""));
    json_object_set_new(hit, "payload", p ? p : json_string(payload));
    json_array_append_new(r->hits, hit);
}

/* SQL reading the embedded text (the column, or the template filled) of one row by key. */
static void text_sql(PGconn *db, const cv_sink_table *t, const char *source, cv_buf *sql) {
    char *id;
    cv_buf_puts(sql, "SELECT ");
    if (strncmp(source, "column ", 7) == 0) {
        id = PQescapeIdentifier(db, text_column(source), strlen(text_column(source)));
        cv_buf_printf(sql, "%s::text", id ? id : "\"\"");
        PQfreemem(id);
    } else {
        cv_buf_puts(sql, "''");
        for (const char *p = source + 9; *p;) {
            const char *e = *p == '{' ? strchr(p, '}') : NULL;
            size_t len = e ? (size_t)(e - p - 1)
                           : (p[1] && strchr(p + 1, '{') ? (size_t)(strchr(p + 1, '{') - p) : strlen(p));
            char *v = e ? PQescapeIdentifier(db, p + 1, len) : PQescapeLiteral(db, p, len);
            cv_buf_printf(sql, e ? " || coalesce(%s::text, '')" : " || %s", v ? v : "''");
            PQfreemem(v);
            p = e ? e + 1 : p + len;
        }
    }
    char *sc = PQescapeIdentifier(db, t->schema, strlen(t->schema)),
         *tb = PQescapeIdentifier(db, t->table, strlen(t->table));
    cv_buf_printf(sql, " FROM %s.%s WHERE ", sc ? sc : "", tb ? tb : "");
    PQfreemem(sc), PQfreemem(tb);
    for (int k = 0; k < t->nkeys; k++) {
        id = PQescapeIdentifier(db, t->key_names[k], strlen(t->key_names[k]));
        cv_buf_printf(sql, "%s%s::text = $%d", k ? " AND " : "", id ? id : "", k + 1);
        PQfreemem(id);
    }
}

/* With search_mu held: the matched text of each hit, read from the source table by key (the
 * sink keeps the text's hash, not the text). A failure leaves the texts empty, logged. */
static void fetch_texts(cv_sync *s, search_req *r) {
    if (!r->text_source || !json_array_size(r->hits)) return;
    if (s->search_src && PQstatus(s->search_src) != CONNECTION_OK)
        PQfinish(s->search_src), s->search_src = NULL;
    if (!s->search_src) s->search_src = cv_pg_connect(s->o.source, 0, "search");
    if (PQstatus(s->search_src) != CONNECTION_OK) {
        cv_warn("event=search_text_unavailable error=\"%s\"", PQerrorMessage(s->search_src));
        return;
    }
    cv_buf sql = {0};
    text_sql(s->search_src, &s->search_table, r->text_source, &sql);
    size_t i;
    json_t *hit;
    json_array_foreach(r->hits, i, hit) {
        char **vals = NULL;
        if (sql.oom ||
            cv_key_parse(json_string_value(json_object_get(hit, "key")), s->search_table.nkeys, &vals, NULL))
            continue;
        PGresult *res = PQexecParams(s->search_src, sql.p, s->search_table.nkeys, NULL,
                                     (const char *const *)vals, NULL, NULL, 0);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0))
            json_object_set_new(hit, "text", json_string(PQgetvalue(res, 0, 0)));
        else if (PQresultStatus(res) != PGRES_TUPLES_OK)
            cv_warn("event=search_text_failed error=\"%s\"", PQresultErrorMessage(res));
        PQclear(res);
        cv_key_free(vals);
    }
    free(sql.p);
}

/* The payload's title: its name or title field, else the key. */
static void put_title(cv_buf *b, json_t *hit) {
    json_t *p = json_object_get(hit, "payload");
    json_t *t = json_object_get(p, "name");
    if (!json_is_string(t)) t = json_object_get(p, "title");
    if (json_is_string(t) && json_string_length(t)) {
        put_value(b, t, 1);
        return;
    }
    cv_buf_puts(b, "key ");
    put_html_s(b, json_string_value(json_object_get(hit, "key")));
}

/* The whole page: the form (with the query), then an error or the hits. */
static void render_page(search_req *r, int status, const char *error) {
    cv_buf b = {0};
    cv_buf_puts(&b, HEAD);
    if (r->q.p) put_html(&b, r->q.p, r->q.len);
    cv_buf_puts(&b, "\"> <button>Search</button></form>");
    if (error) {
        cv_buf_puts(&b, "<p class=err id=error>");
        put_html_s(&b, error);
        cv_buf_puts(&b, "</p>");
    } else if (r->hits) {
        const char *tcol = text_column(r->text_source);
        cv_buf_printf(&b, "<ol id=results>");
        size_t i;
        json_t *hit;
        json_array_foreach(r->hits, i, hit) {
            json_t *p = json_object_get(hit, "payload");
            cv_buf_printf(&b, "<li class=hit><div class=t>");
            put_title(&b, hit);
            cv_buf_printf(&b, "</div><div class=s>score %.3f &middot; id ",
                          json_real_value(json_object_get(hit, "similarity")));
            put_html_s(&b, json_string_value(json_object_get(hit, "key")));
            cv_buf_puts(&b, "</div><div class=x>");
            put_value(&b, json_object_get(hit, "text"), 1);
            cv_buf_puts(&b, "</div><div class=f>");
            const char *k;
            json_t *v;
            int first = 1;
            json_object_foreach(p, k, v) {
                if (!strcmp(k, "name") || !strcmp(k, "title") || (tcol && !strcmp(k, tcol))) continue;
                cv_buf_puts(&b, first ? "" : " &middot; ");
                first = 0;
                cv_buf_puts(&b, "<b>");
                put_html_s(&b, k);
                cv_buf_puts(&b, "</b>: ");
                put_value(&b, v, 1);
            }
            cv_buf_puts(&b, "</div></li>");
        }
        cv_buf_puts(&b, "</ol>");
        if (!json_array_size(r->hits)) cv_buf_puts(&b, "<p id=results>No results.</p>");
    }
    cv_buf_puts(&b,
                "<p class=s>Live: the index follows the table through logical replication. Link a search "
                "as <code>/?q=...</code>; JSON: <code>/search?q=...&amp;limit=5</code>.</p></body></html>");
    if (b.oom)
        cv_http_reply_error(r->reply, 500, "internal", "out of memory");
    else
        cv_http_reply(r->reply, status, "text/html; charset=utf-8", b.p, b.len);
    free(b.p);
}

static void reply_json(void *reply, int status, json_t *o) {
    char *body = cv_jnum_dumps(o, JSON_COMPACT, CV_JNUM_EXACT);
    if (body)
        cv_http_reply(reply, status, "application/json", body, strlen(body));
    else
        cv_http_reply_error(reply, 500, "internal", "out of memory");
    free(body);
    json_decref(o);
}

/* Answers an error: on the page (HTML) or as JSON. */
static void refuse(search_req *r, int status, const char *type, const char *msg) {
    if (r->html)
        render_page(r, status, msg);
    else
        cv_http_reply_error(r->reply, status, type, "%s", msg);
}

/* Embeds the query and asks the sink; 0 or the error. */
static cv_err run_search(search_req *r) {
    cv_sync *s = r->s;
    float vec[4096];
    int dim;
    char msg[256];
    const char *tx[1] = {r->q.p};
    size_t ln[1] = {r->q.len};
    cv_err e =
        cv_client_embed_query(s->rt.client, tx, ln, 1, vec, 4096, &dim, msg, sizeof msg); /* query prompt */
    r->hits = json_array();
    pthread_mutex_lock(&s->search_mu);
    if (!e && !s->search_table.table) e = CV_ERR_BUSY; /* no session has described the table yet */
    if (!e && !s->search_sink) e = cv_sink_open(s->sink_conninfo, &s->search_table, &s->search_sink);
    if (!e) {
        r->text_source = s->search_text_source ? strdup(s->search_text_source) : NULL;
        e = cv_sink_search(s->search_sink, vec, (int)r->limit, add_hit, r);
        if (!e) fetch_texts(s, r);
    }
    if (e && s->search_sink) { /* reconnect on the next search */
        cv_sink_close(s->search_sink);
        s->search_sink = NULL;
    }
    pthread_mutex_unlock(&s->search_mu);
    return e;
}

static void *search_thread(void *p) {
    search_req *r = p;
    cv_sync *s = r->s;
    uint64_t covered;
    double t0 = cv_now();
    cv_err e = CV_OK;
    if (r->has_min && !cv_wait_until(s, r->min_lsn, r->wait_ms, &covered))
        cv_wait_reply_timeout(r->reply, r->min_lsn, covered, cv_now() - t0);
    else if ((e = run_search(r))) {
        cv_buf m = {0};
        cv_buf_printf(&m, "search failed: %s%s", cv_strerror(e),
                      e == CV_ERR_BUSY ? " (the table is not described yet; retry shortly)" : "");
        refuse(r, 503, "unavailable", m.p ? m.p : "search failed");
        free(m.p);
    } else if (r->html) {
        render_page(r, 200, NULL);
    } else {
        reply_json(r->reply, 200, json_pack("{s:s%,s:O}", "query", r->q.p, r->q.len, "results", r->hits));
    }
    json_decref(r->hits);
    pthread_mutex_lock(&s->search_mu);
    s->searching--;
    pthread_cond_signal(&s->search_idle);
    pthread_mutex_unlock(&s->search_mu);
    free(r->text_source);
    free(r->q.p);
    free(r->uri);
    free(r);
    return NULL;
}

/* Checks q and limit; 0 after answering an error. A page without q is the bare form. */
static int check_params(search_req *r) {
    char msg[160];
    cv_buf lim = {0};
    if (!cv_wait_search_params(r->uri, &r->min_lsn, &r->has_min, &r->wait_ms, r->reply)) return 0;
    cv_qp st = cv_http_query_param(r->uri, "q", CV_SEARCH_MAX_Q, &r->q);
    cv_qp sl = cv_http_query_param(r->uri, "limit", 8, &lim);
    char *end = NULL;
    if (sl == CV_QP_OK) r->limit = strtol(lim.p, &end, 10);
    int bad_limit =
        sl != CV_QP_ABSENT && (sl != CV_QP_OK || !lim.len || *end || r->limit < 1 || r->limit > 100);
    free(lim.p);
    if (st != CV_QP_OK && r->q.p) r->q.p[r->q.len = 0] = 0; /* never echo a refused query */
    if (st == CV_QP_TOO_LONG) {
        snprintf(msg, sizeof msg, "q is longer than %d bytes (decoded); shorten the query", CV_SEARCH_MAX_Q);
        refuse(r, 414, "too_large", msg);
    } else if (st != CV_QP_OK && st != CV_QP_ABSENT) {
        snprintf(msg, sizeof msg, "q %s", cv_qp_message(st));
        refuse(r, 400, "bad_request", msg);
    } else if (bad_limit) {
        refuse(r, 400, "bad_request", "limit must be a whole number from 1 to 100");
    } else if (!r->html && (st == CV_QP_ABSENT || !r->q.len)) {
        refuse(r, 400, "bad_request", "expected /search?q=TEXT&limit=1..100 (q not empty)");
    } else if (r->html && (st == CV_QP_ABSENT || !r->q.len)) {
        render_page(r, 200, NULL); /* the bare form */
    } else {
        return 1;
    }
    return 0;
}

/* GET / and GET /search: checks the query, then searches on a thread of its own. */
static void on_search_common(cv_sync *s, const char *uri, void *reply, int html) {
    search_req *r = calloc(1, sizeof *r);
    if (!r || !(r->uri = strdup(uri))) {
        free(r);
        cv_http_reply_error(reply, 500, "internal", "out of memory");
        return;
    }
    r->s = s, r->reply = reply, r->html = html, r->limit = html ? 10 : 5;
    if (!check_params(r)) goto done;
    pthread_mutex_lock(&s->search_mu);
    int busy = s->searching >= CV_SEARCH_MAX_AT_ONCE;
    if (!busy) s->searching++;
    pthread_mutex_unlock(&s->search_mu);
    pthread_t th;
    if (busy || pthread_create(&th, NULL, search_thread, r) != 0) {
        if (!busy) {
            pthread_mutex_lock(&s->search_mu);
            s->searching--;
            pthread_cond_signal(&s->search_idle);
            pthread_mutex_unlock(&s->search_mu);
        }
        refuse(r, 503, "busy", "too many searches at once; retry shortly");
        goto done;
    }
    pthread_detach(th);
    return;
done:
    free(r->q.p);
    free(r->uri);
    free(r);
}

static void on_page(void *arg, const char *uri, void *reply) { on_search_common(arg, uri, reply, 1); }
static void on_search(void *arg, const char *uri, void *reply) { on_search_common(arg, uri, reply, 0); }

void cv_search_routes(cv_sync *s) {
    s->rt.routes[0] = (cv_http_route){"/", on_page, s};
    s->rt.routes[1] = (cv_http_route){"/search", on_search, s};
}

static void search_table_free(cv_sync *s) {
    for (int i = 0; i < s->n_search_own; i++)
        free(s->search_own[i]);
    free(s->search_own);
    free((void *)s->search_table.key_names), free((void *)s->search_table.key_types);
    s->search_own = NULL;
    s->n_search_own = 0;
    s->search_text_source = NULL;
    memset(&s->search_table, 0, sizeof s->search_table);
}

/* With search_mu held: waits for searches in flight, closes their sink, forgets the table. */
static void search_idle_reset(cv_sync *s) {
    while (s->searching > 0)
        pthread_cond_wait(&s->search_idle, &s->search_mu);
    if (s->search_sink) cv_sink_close(s->search_sink);
    s->search_sink = NULL;
    if (s->search_src) PQfinish(s->search_src);
    s->search_src = NULL;
    search_table_free(s);
}

void cv_search_close(cv_sync *s) {
    pthread_mutex_lock(&s->search_mu);
    search_idle_reset(s);
    pthread_mutex_unlock(&s->search_mu);
}

static const char *own(cv_sync *s, const char *v) {
    s->search_own[s->n_search_own] = strdup(v);
    CV_ASSERT(s->search_own[s->n_search_own]);
    return s->search_own[s->n_search_own++];
}

void cv_search_set_table(cv_sync *s) {
    pthread_mutex_lock(&s->search_mu);
    search_idle_reset(s);
    const cv_table *t = &s->t;
    s->search_own = calloc((size_t)(2 * t->nkeys + 5), sizeof(char *));
    const char **names = calloc((size_t)t->nkeys + 1, sizeof(char *)),
               **types = calloc((size_t)t->nkeys + 1, sizeof(char *));
    CV_ASSERT(s->search_own && names && types);
    for (int k = 0; k < t->nkeys; k++)
        names[k] = own(s, t->keyname[k]), types[k] = own(s, t->keytype[k]);
    s->search_table = (cv_sink_table){.schema = own(s, t->schema),
                                      .table = own(s, t->name),
                                      .nkeys = t->nkeys,
                                      .key_names = names,
                                      .key_types = types,
                                      .dim = s->rt.dim,
                                      .model_id = s->rt.mf.id,
                                      .stream = own(s, s->stream),
                                      .ns = s->o.ns ? own(s, s->o.ns) : NULL};
    s->search_text_source = t->text_source ? own(s, t->text_source) : NULL;
    pthread_mutex_unlock(&s->search_mu);
}
