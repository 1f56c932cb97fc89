/* page.c: the search page of `cdcvec sync --http` (rendered by render.c).
 *   GET /                   a query box with a box per filterable field, result count and sort
 *                           (plain HTML form, no script)
 *   GET /?q=...&limit=10&author=...&year.gte=1950&sort=-year
 *                           the same page with the results rendered on the server, so a search
 *                           can be linked: each hit shows its title, score, the matched text (the
 *                           embedded column, or the template filled, read from the source table
 *                           by key: the sink keeps only its hash) and the row's other fields;
 *                           under them the latency, how fresh the index is, and CSV / JSON downloads
 *   GET /search?q=...&limit=5&min_lsn=X/Y&timeout_ms=N&FILTERS&sort=S&format=json|csv
 *                           JSON {"query":..., "results":[{"rank":1,"similarity":0.71,"key":"4",
 *                           "text":"...", "payload":{...}}], "took_ms":..., "index":{"applied_lsn",
 *                           "lag_seconds","lag_bytes"}}, or the same rows as CSV
 *   POST /search            {"q": "...", "filter": {"author": "...", "year": {"gte": 1950}},
 *                           "limit": 5, "sort": "score"}: the JSON answer above
 * Filters: search/filter.h (unknown or malformed: 400 naming them). sort: score (best first,
 * default), FIELD or -FIELD (the hits found, reordered). min_lsn: search only once the index
 * covers that LSN (wait.c; 504 after timeout_ms). q: URL-decoded, at most CV_SEARCH_MAX_Q bytes
 * (414 beyond), valid UTF-8 and no NUL (400); nothing is cut. Each search runs on a thread of
 * its own (embedding waits on the model) with a sink connection of its own (libpq connections
 * are not shared between threads); at most CV_SEARCH_MAX_AT_ONCE at once; more wait for a slot
 * up to --search-queue-ms (at most CV_SEARCH_MAX_WAITING of them), then are answered 503. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_jnum.h"
#include "../common/cv_buf.h"
#include "../pg/cv_keytext.h"
#include "../common/cv_log.h"
#include "../pg/cv_pg.h"
#include "../ingest/sync_impl.h"
#include "page_impl.h"

#define CV_SEARCH_MAX_Q       2048 /* bytes of a query, decoded */
#define CV_SEARCH_MAX_AT_ONCE 16
#define CV_SEARCH_MAX_WAITING 64 /* with --search-queue-ms: searches waiting for a slot */

static void add_hit(void *arg, int rank, double sim, const char *key, const char *payload,
                    const cv_sink_passage *ps) {
    search_req *r = arg;
    json_t *hit = json_pack("{s:i,s:f,s:s}", "rank", rank, "similarity", sim, "key", key);
    json_t *p = cv_jnum_loads(payload, 0, NULL); /* numbers: every digit */
    json_object_set_new(hit, "text", json_string(""));
    json_object_set_new(hit, "payload", p ? p : json_string(payload));
    if (ps) /* the row's best chunk: its text is cut from the row's (fetch_texts) */
        json_object_set_new(hit, "passage",
                            json_pack("{s:i,s:I,s:I,s:s}", "chunk", ps->chunk, "char_off",
                                      (json_int_t)ps->char_off, "char_len", (json_int_t)ps->char_len, "text",
                                      ""));
    json_array_append_new(r->hits, hit);
}

/* SQL reading the embedded text (the column, or the template filled) of one row by key. */
static void text_sql(PGconn *db, const cv_sink_table *t, const char *source, cv_buf *sql) {
    char *id;
    cv_buf_puts(sql, "SELECT ");
    if (strncmp(source, "column ", 7) == 0) {
        id = PQescapeIdentifier(db, cv_page_text_column(source), strlen(cv_page_text_column(source)));
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
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
            const char *text = PQgetvalue(res, 0, 0);
            json_t *ps = json_object_get(hit, "passage");
            json_object_set_new(hit, "text", json_string(text));
            if (ps) { /* the chunk: code points [char_off, char_off + char_len) of the row's text */
                size_t a =
                    cv_page_cp_offset(text, (size_t)json_integer_value(json_object_get(ps, "char_off")));
                size_t b = a + cv_page_cp_offset(text + a,
                                                 (size_t)json_integer_value(json_object_get(ps, "char_len")));
                json_object_set_new(ps, "text", json_stringn(text + a, b - a));
            }
        } else if (PQresultStatus(res) != PGRES_TUPLES_OK)
            cv_warn("event=search_text_failed error=\"%s\"", PQresultErrorMessage(res));
        PQclear(res);
        cv_key_free(vals);
    }
    free(sql.p);
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
    if (r->fmt == FMT_HTML)
        cv_page_render(r, status, msg);
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
    double t = cv_now();
    cv_err e =
        cv_client_embed_query(s->rt.client, tx, ln, 1, vec, 4096, &dim, msg, sizeof msg); /* query prompt */
    r->embed_ms = (cv_now() - t) * 1e3;
    r->hits = json_array();
    pthread_mutex_lock(&s->search_mu);
    t = cv_now();
    if (!e && !s->search_table.table) e = CV_ERR_BUSY; /* no session has described the table yet */
    if (!e && !s->search_sink) e = cv_sink_open(s->sink_conninfo, &s->search_table, &s->search_sink);
    if (!e) {
        r->text_source = s->search_text_source ? strdup(s->search_text_source) : NULL;
        e = cv_sink_search_filtered(s->search_sink, vec, (int)r->limit, &r->filter.f, add_hit, r);
        r->store_ms = (cv_now() - t) * 1e3;
        if (!e) fetch_texts(s, r);
    }
    if (e && s->search_sink) { /* reconnect on the next search */
        cv_sink_close(s->search_sink);
        s->search_sink = NULL;
    }
    pthread_mutex_unlock(&s->search_mu);
    if (!e) {
        cv_page_sort(r);
        r->fresh = cv_search_freshness(s);
    }
    return e;
}

static void req_free(search_req *r) {
    json_decref(r->hits), json_decref(r->fresh);
    cv_search_filter_free(&r->filter);
    cv_search_fields_free(r->fields);
    free(r->text_source), free(r->sort), free(r->q.p), free(r->uri);
    free(r);
}

/* Takes one of the CV_SEARCH_MAX_AT_ONCE slots, waiting up to --search-queue-ms; 0: none came. */
static int take_slot(cv_sync *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ms = s->o.search_queue_ms;
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += ms % 1000 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&s->search_mu);
    int rc = 0;
    while (s->search_running >= CV_SEARCH_MAX_AT_ONCE && ms > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s->search_idle, &s->search_mu, &ts);
    int got = s->search_running < CV_SEARCH_MAX_AT_ONCE;
    if (got) s->search_running++;
    pthread_mutex_unlock(&s->search_mu);
    return got;
}

static void *search_thread(void *p) {
    search_req *r = p;
    cv_sync *s = r->s;
    uint64_t covered;
    double t0 = cv_now();
    cv_err e = CV_OK;
    int slot = take_slot(s);
    if (!slot) {
        cv_buf m = {0};
        cv_buf_printf(
            &m, "too many searches at once (%d running; waited %ld ms, --search-queue-ms); retry shortly",
            CV_SEARCH_MAX_AT_ONCE, s->o.search_queue_ms);
        refuse(r, 503, "busy", m.p ? m.p : "too many searches at once");
        free(m.p);
    } else if (r->has_min && !cv_wait_until(s, r->min_lsn, r->wait_ms, &covered))
        cv_wait_reply_timeout(r->reply, r->min_lsn, covered, cv_now() - t0);
    else if ((e = run_search(r))) {
        cv_buf m = {0};
        cv_buf_printf(&m, "search failed: %s%s", cv_strerror(e),
                      e == CV_ERR_BUSY ? " (the table is not described yet; retry shortly)" : "");
        refuse(r, 503, "unavailable", m.p ? m.p : "search failed");
        free(m.p);
    } else if (r->fmt == FMT_HTML) {
        cv_page_render(r, 200, NULL);
    } else if (r->fmt == FMT_CSV) {
        cv_page_csv(r);
    } else {
        reply_json(r->reply, 200,
                   json_pack("{s:s%,s:O,s:f,s:O}", "query", r->q.p, r->q.len, "results", r->hits, "took_ms",
                             (cv_now() - r->t0) * 1e3, "index", r->fresh ? r->fresh : json_null()));
    }
    pthread_mutex_lock(&s->search_mu);
    s->searching--;
    s->search_running -= slot;
    pthread_cond_broadcast(&s->search_idle); /* searches waiting for a slot, and search_idle_reset */
    pthread_mutex_unlock(&s->search_mu);
    req_free(r);
    return NULL;
}

/* sort: "score", FIELD or -FIELD of a filterable field; 0 with the reason in err. */
static int check_sort(search_req *r, cv_buf *err) {
    if (!r->sort || !strcmp(r->sort, "score")) return 1;
    const char *f = r->sort + (r->sort[0] == '-');
    for (int i = 0; r->fields && i < r->fields->n; i++)
        if (r->fields->kind[i] >= 0 && !strcmp(r->fields->name[i], f)) return 1;
    cv_buf_puts(err, "sort must be score, FIELD or -FIELD (descending) of a filterable field; not '");
    cv_buf_puts(err, r->sort);
    cv_buf_puts(err, "'");
    return 0;
}

/* POST /search's body: q, limit, filter, sort; 0 after answering 400. */
static int check_body(search_req *r) {
    size_t n;
    const char *body = cv_http_body(r->reply, &n);
    json_error_t je;
    json_t *o = json_loadb(body, n, JSON_REJECT_DUPLICATES, &je);
    cv_buf err = {0};
    if (!json_is_object(o)) {
        cv_buf_printf(&err,
                      "the body must be a JSON object {\"q\": TEXT, \"filter\": {...}, \"limit\": N}%s%s",
                      o ? "" : ": ", o ? "" : je.text);
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) {
            if (strcmp(k, "q") && strcmp(k, "filter") && strcmp(k, "limit") && strcmp(k, "sort")) {
                cv_buf_printf(&err, "unknown key \"%s\" in the body: it takes q, filter, limit and sort", k);
                break;
            }
        }
        json_t *q = json_object_get(o, "q"), *lim = json_object_get(o, "limit"),
               *so = json_object_get(o, "sort");
        if (err.len) {
        } else if (!json_is_string(q) || !json_string_length(q)) {
            cv_buf_puts(&err, "\"q\" must be a non-empty string");
        } else if (json_string_length(q) > CV_SEARCH_MAX_Q) {
            cv_buf_printf(&err, "q is longer than %d bytes; shorten the query", CV_SEARCH_MAX_Q);
        } else if (strlen(json_string_value(q)) != json_string_length(q)) {
            cv_buf_puts(&err, "q holds a NUL character");
        } else if (lim &&
                   (!json_is_integer(lim) || json_integer_value(lim) < 1 || json_integer_value(lim) > 100)) {
            cv_buf_puts(&err, "limit must be a whole number from 1 to 100");
        } else if (so && !json_is_string(so)) {
            cv_buf_puts(&err, "sort must be a string");
        } else {
            cv_buf_put(&r->q, json_string_value(q), json_string_length(q));
            if (lim) r->limit = (long)json_integer_value(lim);
            if (so) r->sort = strdup(json_string_value(so));
            if (cv_search_filter_json(json_object_get(o, "filter"), r->fields, &r->filter, &err))
                check_sort(r, &err);
        }
    }
    json_decref(o);
    if (err.len) refuse(r, 400, "bad_request", err.p);
    free(err.p);
    return !err.len;
}

/* Checks q, limit, the filter, sort and format; 0 after answering an error. A page without q
 * is the bare form. */
static int check_params(search_req *r) {
    char msg[160];
    cv_buf lim = {0}, srt = {0}, fmt = {0}, err = {0};
    if (!cv_wait_search_params(r->uri, &r->min_lsn, &r->has_min, &r->wait_ms, r->reply)) return 0;
    cv_qp st = cv_http_query_param(r->uri, "q", CV_SEARCH_MAX_Q, &r->q);
    cv_qp sl = cv_http_query_param(r->uri, "limit", 8, &lim);
    if (cv_http_query_param(r->uri, "sort", 256, &srt) == CV_QP_OK && srt.len) r->sort = strdup(srt.p);
    cv_qp sf = r->fmt == FMT_HTML ? CV_QP_ABSENT : cv_http_query_param(r->uri, "format", 8, &fmt);
    int bad_fmt = sf != CV_QP_ABSENT && (sf != CV_QP_OK || (strcmp(fmt.p, "json") && strcmp(fmt.p, "csv")));
    if (sf == CV_QP_OK && !strcmp(fmt.p, "csv")) r->fmt = FMT_CSV;
    char *end = NULL;
    if (sl == CV_QP_OK) r->limit = strtol(lim.p, &end, 10);
    int bad_limit =
        sl != CV_QP_ABSENT && (sl != CV_QP_OK || !lim.len || *end || r->limit < 1 || r->limit > 100);
    free(lim.p), free(srt.p), free(fmt.p);
    if (st != CV_QP_OK && r->q.p) r->q.p[r->q.len = 0] = 0; /* never echo a refused query */
    int ok = 0;
    if (st == CV_QP_TOO_LONG) {
        snprintf(msg, sizeof msg, "q is longer than %d bytes (decoded); shorten the query", CV_SEARCH_MAX_Q);
        refuse(r, 414, "too_large", msg);
    } else if (st != CV_QP_OK && st != CV_QP_ABSENT) {
        snprintf(msg, sizeof msg, "q %s", cv_qp_message(st));
        refuse(r, 400, "bad_request", msg);
    } else if (bad_limit) {
        refuse(r, 400, "bad_request", "limit must be a whole number from 1 to 100");
    } else if (bad_fmt) {
        refuse(r, 400, "bad_request", "format must be json or csv");
    } else if (!cv_search_filter_url(r->uri, r->fields, &r->filter, &err) || !check_sort(r, &err)) {
        refuse(r, 400, "bad_request", err.p ? err.p : "bad filter");
    } else if (r->fmt != FMT_HTML && (st == CV_QP_ABSENT || !r->q.len)) {
        refuse(r, 400, "bad_request", "expected /search?q=TEXT&limit=1..100 (q not empty)");
    } else if (r->fmt == FMT_HTML && (st == CV_QP_ABSENT || !r->q.len)) {
        cv_page_render(r, 200, NULL); /* the bare form */
    } else {
        ok = 1;
    }
    free(err.p);
    return ok;
}

/* GET /, GET and POST /search: checks the request, then searches on a thread of its own. */
static void on_search_common(cv_sync *s, const char *uri, void *reply, int fmt, int post) {
    search_req *r = calloc(1, sizeof *r);
    if (!r || !(r->uri = strdup(uri))) {
        free(r);
        cv_http_reply_error(reply, 500, "internal", "out of memory");
        return;
    }
    r->s = s, r->reply = reply, r->fmt = fmt, r->post = post, r->limit = fmt == FMT_HTML ? 10 : 5;
    r->t0 = cv_now();
    pthread_mutex_lock(&s->search_mu);
    r->fields = cv_search_fields_copy(s->search_fields);
    pthread_mutex_unlock(&s->search_mu);
    if (!r->fields) r->fields = calloc(1, sizeof *r->fields); /* not described yet: nothing to filter */
    CV_ASSERT(r->fields);
    if (!(post ? check_body(r) : check_params(r))) goto done;
    pthread_mutex_lock(&s->search_mu);
    int busy = s->searching >= CV_SEARCH_MAX_AT_ONCE + (s->o.search_queue_ms > 0 ? CV_SEARCH_MAX_WAITING : 0);
    if (!busy) s->searching++;
    pthread_mutex_unlock(&s->search_mu);
    pthread_t th;
    if (busy || pthread_create(&th, NULL, search_thread, r) != 0) {
        if (!busy) {
            pthread_mutex_lock(&s->search_mu);
            s->searching--;
            pthread_cond_broadcast(&s->search_idle);
            pthread_mutex_unlock(&s->search_mu);
        }
        refuse(r, 503, "busy", "too many searches at once; retry shortly");
        goto done;
    }
    pthread_detach(th);
    return;
done:
    req_free(r);
}

static void on_page(void *arg, const char *uri, void *reply) {
    on_search_common(arg, uri, reply, FMT_HTML, 0);
}
static void on_search(void *arg, const char *uri, void *reply) {
    on_search_common(arg, uri, reply, FMT_JSON, 0);
}
static void on_search_post(void *arg, const char *uri, void *reply) {
    on_search_common(arg, uri, reply, FMT_JSON, 1);
}

void cv_search_routes(cv_sync *s) {
    s->rt.routes[0] = (cv_http_route){"/", on_page, s, 0};
    s->rt.routes[1] = (cv_http_route){"/search", on_search, s, 0};
    s->rt.routes[2] = (cv_http_route){"/search", on_search_post, s, 1};
}

static void search_table_free(cv_sync *s) {
    for (int i = 0; i < s->n_search_own; i++)
        free(s->search_own[i]);
    free(s->search_own);
    free((void *)s->search_table.key_names), free((void *)s->search_table.key_types);
    s->search_own = NULL;
    s->n_search_own = 0;
    s->search_text_source = NULL;
    cv_search_fields_free(s->search_fields);
    s->search_fields = NULL;
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
                                      .ns = s->o.ns ? own(s, s->o.ns) : NULL,
                                      /* chunked: search by row; else a reader of whatever is there */
                                      .chunked = s->o.chunk_max_tokens > 0 ? 1 : -1};
    s->search_text_source = t->text_source ? own(s, t->text_source) : NULL;
    s->search_fields = cv_search_fields_of(t);
    pthread_mutex_unlock(&s->search_mu);
}
