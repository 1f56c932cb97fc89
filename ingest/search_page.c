/* search_page.c: the search page of `cdcvec sync --http`: GET / is a query box (plain HTML,
 * the Streamlit page of the original tutorial), GET /search?q=...&limit=5 answers JSON
 * {"query":..., "results":[{"rank":1,"similarity":0.71,"key":"4","payload":{...}}]}.
 * Each search runs on a thread of its own (embedding waits on the model), with a sink
 * connection of its own (libpq connections are not shared between threads). */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "sync_impl.h"

static const char PAGE[] =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>cdcvec search</title>"
    "<style>body{font:16px system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em}"
    "input{width:70%;font-size:1.1em;padding:.3em}li{margin:.6em "
    "0}.s{color:#666;font-size:.9em}</style></head>"
    "<body><h1>Search the catalog</h1><form id=f><input id=q autofocus placeholder=\"books like star wars\">"
    " <button>Search</button></form><ol id=r></ol><p class=s>Live: the index follows the table through "
    "logical replication. JSON: <code>/search?q=...&amp;limit=5</code></p><script>"
    "document.getElementById('f').onsubmit=async e=>{e.preventDefault();"
    "const q=document.getElementById('q').value,r=document.getElementById('r');r.textContent='';"
    "const a=await(await fetch('/search?limit=10&q='+encodeURIComponent(q))).json();"
    "if(a.error){r.textContent=a.error.message;return}"
    "for(const h of a.results){const li=document.createElement('li'),p=h.payload||{};"
    "li.textContent=(p.name||('key '+h.key))+' \\u2014 '+Object.entries(p).filter(([k])=>k!='name')"
    ".map(([k,v])=>k+': '+v).join(', ');const s=document.createElement('span');s.className='s';"
    "s.textContent=' (similarity '+h.similarity.toFixed(3)+')';li.appendChild(s);r.appendChild(li)}}"
    "</script></body></html>";

static void on_page(void *arg, const char *uri, void *reply) {
    (void)arg, (void)uri;
    cv_http_reply(reply, 200, "text/html; charset=utf-8", PAGE, sizeof PAGE - 1);
}

/* Value of ?name=... in uri, URL-decoded into out; 0 when absent. */
static int query_param(const char *uri, const char *name, char *out, size_t len) {
    const char *q = strchr(uri, '?');
    size_t nl = strlen(name);
    for (const char *p = q; p && *p;) {
        p++;
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t o = 0;
            for (p += nl + 1; *p && *p != '&' && o + 1 < len; p++) {
                int hi, lo;
                if (*p == '+')
                    out[o++] = ' ';
                else if (*p == '%' && p[1] && p[2] && sscanf(p + 1, "%1x%1x", &hi, &lo) == 2) {
                    out[o++] = (char)(hi << 4 | lo);
                    p += 2;
                } else
                    out[o++] = *p;
            }
            out[o] = 0;
            return 1;
        }
        p = strchr(p, '&');
    }
    return 0;
}

typedef struct {
    cv_sync *s;
    char *uri;
    void *reply;
} search_req;

static void add_hit(void *arg, int rank, double sim, const char *key, const char *payload) {
    json_t *hit = json_pack("{s:i,s:f,s:s}", "rank", rank, "similarity", sim, "key", key);
    json_t *p = json_loads(payload, 0, NULL);
    json_object_set_new(hit, "payload", p ? p : json_string(payload));
    json_array_append_new((json_t *)arg, hit);
}

static void reply_json(void *reply, int status, json_t *o) {
    char *body = json_dumps(o, JSON_COMPACT);
    cv_http_reply(reply, status, "application/json", body ? body : "{}", body ? strlen(body) : 2);
    free(body);
    json_decref(o);
}

static void *search_thread(void *p) {
    search_req *r = p;
    cv_sync *s = r->s;
    char q[2048], lim[16];
    long limit = 5;
    if (query_param(r->uri, "limit", lim, sizeof lim)) limit = strtol(lim, NULL, 10);
    if (!query_param(r->uri, "q", q, sizeof q) || !*q || limit < 1 || limit > 100) {
        reply_json(r->reply, 400,
                   json_pack("{s:{s:s}}", "error", "message", "expected /search?q=TEXT&limit=1..100"));
    } else {
        float vec[4096];
        int dim;
        char msg[256];
        const char *tx[1] = {q};
        size_t ln[1] = {strlen(q)};
        cv_err e = cv_client_embed(s->client, tx, ln, 1, vec, 4096, &dim, msg, sizeof msg);
        json_t *hits = json_array();
        pthread_mutex_lock(&s->search_mu);
        if (!e && !s->search_table.table) e = CV_ERR_BUSY; /* no session has described the table yet */
        if (!e && !s->search_sink) e = cv_sink_open(s->sink_conninfo, &s->search_table, &s->search_sink);
        if (!e) e = cv_sink_search(s->search_sink, vec, (int)limit, add_hit, hits);
        if (e && s->search_sink) { /* reconnect on the next search */
            cv_sink_close(s->search_sink);
            s->search_sink = NULL;
        }
        pthread_mutex_unlock(&s->search_mu);
        if (e) {
            json_decref(hits);
            reply_json(r->reply, 503, json_pack("{s:{s:s}}", "error", "message", cv_strerror(e)));
        } else {
            reply_json(r->reply, 200, json_pack("{s:s,s:o}", "query", q, "results", hits));
        }
    }
    pthread_mutex_lock(&s->search_mu);
    s->searching--;
    pthread_cond_signal(&s->search_idle);
    pthread_mutex_unlock(&s->search_mu);
    free(r->uri);
    free(r);
    return NULL;
}

static void on_search(void *arg, const char *uri, void *reply) {
    cv_sync *s = arg;
    search_req *r = calloc(1, sizeof *r);
    pthread_t th;
    if (r) *r = (search_req){s, strdup(uri), reply};
    pthread_mutex_lock(&s->search_mu);
    s->searching++;
    pthread_mutex_unlock(&s->search_mu);
    if (!r || !r->uri || pthread_create(&th, NULL, search_thread, r) != 0) {
        pthread_mutex_lock(&s->search_mu);
        s->searching--;
        pthread_mutex_unlock(&s->search_mu);
        if (r) free(r->uri);
        free(r);
        cv_http_reply(reply, 503, "application/json", "{\"error\":{\"message\":\"busy\"}}", 28);
        return;
    }
    pthread_detach(th);
}

void cv_search_routes(cv_sync *s) {
    s->routes[0] = (cv_http_route){"/", on_page, s};
    s->routes[1] = (cv_http_route){"/search", on_search, s};
}

static void search_table_free(cv_sync *s) {
    for (int i = 0; i < s->n_search_own; i++)
        free(s->search_own[i]);
    free(s->search_own);
    free((void *)s->search_table.key_names), free((void *)s->search_table.key_types);
    s->search_own = NULL;
    s->n_search_own = 0;
    memset(&s->search_table, 0, sizeof s->search_table);
}

/* With search_mu held: waits for searches in flight, closes their sink, forgets the table. */
static void search_idle_reset(cv_sync *s) {
    while (s->searching > 0)
        pthread_cond_wait(&s->search_idle, &s->search_mu);
    if (s->search_sink) cv_sink_close(s->search_sink);
    s->search_sink = NULL;
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
                                      .dim = s->dim,
                                      .model_id = "sentence-transformers/all-MiniLM-L6-v2",
                                      .stream = own(s, s->stream),
                                      .ns = s->o.ns ? own(s, s->o.ns) : NULL};
    pthread_mutex_unlock(&s->search_mu);
}
