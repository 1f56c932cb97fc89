/* upstash.c: the Upstash Vector sink over its REST API (PROTOCOLS.md §6, §12), through
 * sink/http.c.
 *
 * `--sink upstash://`: the index's REST URL and token come from UPSTASH_VECTOR_REST_URL and
 * UPSTASH_VECTOR_REST_TOKEN (or the files named by *_FILE), never from the command line;
 * `upstash://HOST` names the index's host instead of the URL variable (https). Each table
 * lives in a namespace of its own (cv_sink_table.ns, `--namespace`; default the table's name),
 * so TRUNCATE is `/reset/NAMESPACE`. The index must have the model's dimension and the cosine
 * similarity (checked with /info at open: a mismatch stops the sink with the fix).
 *
 * Vector id: the primary key as one line of text (pg/cv_keytext.h: 42, or a,b for a
 * composite key). Metadata: the row's columns, its key columns and "cdcvec" {table, key,
 * text_hash, model, lsn, updated_at} (payload.c); a row whose metadata is over 48 KB (Upstash's
 * limit) becomes a dead letter naming its key, its stale vector deleted, and the rest of the
 * batch goes on. Upserts gather up to 1000 vectors per request (and at most CV_UPSTASH_BODY
 * bytes), sent while later rows arrive; deletes by ids; metadata-only updates with /update
 * (OVERWRITE, the stored values of `keep` columns and the stored text hash read back with
 * /fetch by cv_sink_hashes), several in flight. Search converts Upstash's score, (1 + cos) / 2
 * for cosine, back to the cosine. Position, meta and dead letters: the state database
 * (state.c), written at commit once every request was acknowledged. After a backfill, vectors
 * left below its position are deleted by a metadata filter (a full scan of the namespace, O(N))
 * only when some can exist: not when the namespace was empty at the start, nor when it holds no
 * more vectors than the backfill wrote (u_backfill_mark). */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_conf.h"
#include "../common/cv_jnum.h"
#include "../common/cv_log.h"
#include "chunks_remote.h"
#include "http.h"

#define CV_UPSTASH_BATCH    1000        /* vectors per upsert, fetch or delete request */
#define CV_UPSTASH_BODY     (8 << 20)   /* bytes per upsert request */
#define CV_UPSTASH_METADATA (48 * 1024) /* bytes of metadata per vector */

typedef struct u_sink {
    cv_sink base;
    cv_sink_table t;
    cv_http *http;
    cv_rstate *st;
    char *ns, *nsq; /* namespace, and "/<escaped namespace>" to append to paths */
    char *tname;    /* schema.table */
    char *where;    /* "Upstash index at https://... namespace X", for messages */
    json_t *stored; /* id -> stored metadata, read by cv_sink_hashes for this batch */
    cv_buf pend;    /* vectors gathered for the next upsert: JSON objects, comma-separated */
    int npend;
    /* the backfill's clean-up (u_backfill_mark): ids written and sent for deletion by this
     * batch, and since the backfill at position bf_p began (bf_on), committed batches only;
     * bf_empty: the namespace held nothing then */
    long b_puts, b_dels, bf_puts, bf_dels;
    uint64_t bf_p;
    int bf_on, bf_empty;
    cv_rchunks *rc; /* a chunked table (chunks_remote.h), else NULL */
} u_sink;

/* Upstash's error text: {"error":"...","status":N}. */
static const char *err_text(json_t *body) {
    const char *m = json_string_value(json_object_get(body, "error"));
    return m ? m : "(no message)";
}

/* A 4xx: a dimension the index does not have (config), else the data. */
static cv_err judge(cv_sink *s, long status, json_t *body, const char *what) {
    u_sink *u = (u_sink *)s;
    const char *m = err_text(body);
    cv_buf fix = {0};
    const char *kind = "data";
    cv_err e = CV_ERR_FORMAT;
    if (strstr(m, "dimension")) {
        kind = "config", e = CV_ERR_UNSUPPORTED;
        cv_buf_printf(
            &fix,
            "the %s has another dimension than this model's %d: create an index of dimension %d with the "
            "cosine similarity and point UPSTASH_VECTOR_REST_URL / UPSTASH_VECTOR_REST_TOKEN at it",
            u->where, u->t.dim, u->t.dim);
    } else {
        cv_buf_printf(&fix, "the %s refused the data (%s: status %ld: %s)", u->where, what, status, m);
    }
    cv_error("event=sink_failed store=upstash request=\"%s\" status=%ld kind=%s error=\"%s\" fix=\"%s\"",
             what, status, kind, m, fix.p);
    cv_sink_fault(s, kind, fix.p);
    free(fix.p);
    return e;
}

static cv_err setup_fault(u_sink *u, const char *event, const char *kind, const char *fix) {
    cv_error("event=%s store=upstash namespace=%s kind=%s fix=\"%s\"", event, u->ns ? u->ns : "-", kind, fix);
    cv_sink_fault(&u->base, kind, fix);
    return CV_ERR_UNSUPPORTED;
}

/* The REST base URL: upstash://HOST, else UPSTASH_VECTOR_REST_URL(_FILE). NULL + why. */
static char *base_url(const char *url, const char **why) {
    const char *h = url + 10;
    *why = NULL;
    if (strchr(h, '@') || strchr(h, '?')) {
        *why = "the sink URL holds a user, token or query: the token belongs in UPSTASH_VECTOR_REST_TOKEN or "
               "UPSTASH_VECTOR_REST_TOKEN_FILE, never on the command line";
        return NULL;
    }
    cv_buf b = {0};
    if (*h) {
        size_t hl = strcspn(h, "/");
        cv_buf_printf(&b, "https://%.*s", (int)hl, h);
        return b.p;
    }
    const char *ferr;
    char *v = cv_conf_secret("UPSTASH_VECTOR_REST_URL", &ferr);
    if (!v) {
        *why =
            ferr
                ? "UPSTASH_VECTOR_REST_URL_FILE names a file this process cannot read"
                : "set UPSTASH_VECTOR_REST_URL (or UPSTASH_VECTOR_REST_URL_FILE) to the index's REST URL, as "
                  "the Upstash console shows it";
        return NULL;
    }
    size_t n = strlen(v);
    while (n && v[n - 1] == '/')
        v[--n] = 0;
    if (strncmp(v, "http://", 7) && strncmp(v, "https://", 8)) {
        cv_buf_printf(&b, "https://%s", v);
        free(v);
        return b.p;
    }
    return v;
}

static const char *ns_of(const cv_sink_table *t) { return t->ns && *t->ns ? t->ns : t->table; }

static void u_state_key(const char *url, const cv_sink_table *t, cv_buf *key) {
    const char *why;
    char *b = base_url(url, &why);
    if (b) cv_buf_printf(key, "%s@upstash:%s/%s", t->stream, b, ns_of(t));
    free(b);
}

static void u_close(cv_sink *s) {
    u_sink *u = (u_sink *)s;
    if (!u) return;
    cv_http_free(u->http);
    cv_rstate_close(u->st);
    json_decref(u->stored);
    cv_rchunks_free(u->rc);
    free(u->ns), free(u->nsq), free(u->tname), free(u->where), free(u->pend.p);
    free(u);
}

/* A path with the namespace: "/op/ns". Caller frees. */
static char *path_of(const u_sink *u, const char *op) {
    cv_buf p = {0};
    cv_buf_printf(&p, "/%s%s", op, u->nsq);
    return p.p;
}

/* Checks the index's dimension and similarity (/info). */
static cv_err check_index(u_sink *u) {
    json_t *r = NULL;
    long st = 0;
    cv_err e = cv_http_call(u->http, "POST", "/info", NULL, 0, 1, &st, &r);
    if (e) return e;
    json_t *res = json_object_get(r, "result");
    json_int_t dim = json_integer_value(json_object_get(res, "dimension"));
    const char *sim = json_string_value(json_object_get(res, "similarityFunction"));
    cv_buf fix = {0};
    if (st != 200)
        cv_buf_printf(&fix, "the %s answered %ld to /info: check UPSTASH_VECTOR_REST_URL", u->where, st);
    else if (dim != u->t.dim || (sim && strcmp(sim, "COSINE")))
        cv_buf_printf(&fix,
                      "the %s has dimension %lld and similarity %s, this model writes %d-dimensional vectors "
                      "compared by cosine: create an index with dimension %d and COSINE, and point "
                      "UPSTASH_VECTOR_REST_URL / UPSTASH_VECTOR_REST_TOKEN at it",
                      u->where, (long long)dim, sim ? sim : "?", u->t.dim, u->t.dim);
    json_decref(r);
    if (fix.p) e = setup_fault(u, "sink_schema_mismatch", "config", fix.p);
    free(fix.p);
    return e;
}

/* A namespace holding another table's vectors is refused: ids are the keys' text, so the two
 * tables would overwrite each other's vectors, and a TRUNCATE (/reset of the namespace) would
 * empty both. One query: the nearest vector whose cdcvec.table is another. */
static cv_err check_namespace(u_sink *u) {
    if (strchr(u->tname, '\'')) return CV_OK; /* not expressible in the filter language: not checked */
    cv_buf body = {0};
    cv_buf_puts(&body, "{\"vector\":[1");
    for (int i = 1; i < u->t.dim; i++)
        cv_buf_puts(&body, ",0");
    cv_buf_printf(&body, "],\"topK\":1,\"includeMetadata\":true,\"filter\":\"cdcvec.table != '%s'\"}",
                  u->tname);
    char *path = path_of(u, "query");
    json_t *r = NULL;
    long st = 0;
    cv_err e = cv_http_call(u->http, "POST", path, body.p, body.len, 1, &st, &r);
    free(path); /* body: the call's now */
    json_t *hit = json_array_get(json_object_get(r, "result"), 0);
    const char *other = json_string_value(
        json_object_get(json_object_get(json_object_get(hit, "metadata"), "cdcvec"), "table"));
    if (!e && st == 200 && other) {
        cv_buf fix = {0};
        cv_buf_printf(
            &fix,
            "the %s already holds vectors of %s: its ids are key values too, so the two tables would "
            "overwrite each other's vectors and a TRUNCATE of either would empty both; give %s a "
            "namespace of its own (--namespace, default: the table's name)",
            u->where, other, u->tname);
        e = setup_fault(u, "sink_namespace_shared", "config", fix.p);
        free(fix.p);
    }
    json_decref(r);
    return e;
}

static const cv_rchunks_io RC_IO;

static cv_err u_open(const char *url, const cv_sink_table *t, cv_sink **out) {
    u_sink *u = calloc(1, sizeof *u);
    CV_ASSERT(u);
    u->base.ops = &cv_sink_upstash_ops;
    u->base.batch_rows = CV_UPSTASH_BATCH;
    *out = &u->base;
    u->t = *t;
    u->ns = strdup(ns_of(t));
    char *esc = curl_easy_escape(NULL, u->ns, 0);
    cv_buf nsq = {0}, tn = {0}, w = {0};
    cv_buf_printf(&nsq, "/%s", esc);
    curl_free(esc);
    u->nsq = nsq.p;
    cv_buf_printf(&tn, "%s.%s", t->schema, t->table);
    u->tname = tn.p;
    u->stored = json_object();
    const char *why;
    char *base = base_url(url, &why);
    if (!base) return setup_fault(u, "bad_sink_url", "config", why);
    cv_buf_printf(&w, "Upstash index at %s (namespace %s)", base, u->ns);
    u->where = w.p;
    const char *ferr;
    char *tok = cv_conf_secret("UPSTASH_VECTOR_REST_TOKEN", &ferr);
    if (!tok) {
        free(base);
        return setup_fault(
            u, "sink_token_missing", "config",
            ferr ? "UPSTASH_VECTOR_REST_TOKEN_FILE names a file this process cannot read"
                 : "set UPSTASH_VECTOR_REST_TOKEN (or UPSTASH_VECTOR_REST_TOKEN_FILE) to the index's "
                   "REST token, as the Upstash console shows it");
    }
    cv_buf auth = {0}, afix = {0};
    cv_buf_printf(&auth, "Authorization: Bearer %s", tok);
    cv_buf_printf(
        &afix,
        "the %s refused the token: set UPSTASH_VECTOR_REST_TOKEN (or UPSTASH_VECTOR_REST_TOKEN_FILE) "
        "to this index's read-write REST token",
        u->where);
    cv_http_opts ho = {.base = base,
                       .store = "upstash",
                       .auth_header = auth.p,
                       .auth_fix = afix.p,
                       .judge = judge,
                       .max_inflight = 4,
                       .retry_s = t->retry_s};
    cv_err e = cv_http_new(&u->base, &ho, &u->http);
    memset(auth.p, 0, auth.len);
    memset(tok, 0, strlen(tok));
    free(auth.p), free(tok), free(afix.p);
    if (!e) e = check_index(u);
    if (!e) e = check_namespace(u);
    cv_buf sk = {0};
    cv_buf_printf(&sk, "%s@upstash:%s/%s", t->stream, base, u->ns);
    free(base);
    if (!e) e = cv_rstate_open(&u->base, t->state_conninfo, sk.p, &u->st);
    free(sk.p);
    if (!e && t->chunked > 0) u->rc = cv_rchunks_new(&u->base, &u->t, u->st, &RC_IO);
    return e;
}

/* ---- writes ------------------------------------------------------------------------------- */

static cv_err flush(u_sink *u) {
    if (!u->npend) return CV_OK;
    cv_buf body = {0};
    cv_buf_puts(&body, "[");
    cv_buf_put(&body, u->pend.p, u->pend.len);
    cv_buf_puts(&body, "]");
    CV_ASSERT(!body.oom);
    cv_buf_free(&u->pend);
    u->npend = 0;
    char *path = path_of(u, "upsert");
    cv_err e = cv_http_submit(u->http, "POST", path, body.p, body.len, NULL, NULL);
    free(path);
    return e;
}

static cv_err settle(u_sink *u) {
    cv_err e = flush(u);
    cv_err w = cv_http_wait(u->http);
    return e ? e : w;
}

/* Appends the ids of keys[0..n) as a JSON array of strings. */
static void ids_json(const u_sink *u, const char *const *const *keys, int n, cv_buf *b) {
    cv_buf_put(b, "[", 1);
    for (int i = 0; i < n; i++) {
        char *kt = cv_sink_key_text(&u->t, keys[i]);
        if (i) cv_buf_put(b, ",", 1);
        cv_json_string(b, kt, strlen(kt));
        free(kt);
    }
    cv_buf_put(b, "]", 1);
}

/* Reads the stored metadata of keys[0..n) into u->stored (/fetch). */
static cv_err fetch(u_sink *u, const char *const *const *keys, int n) {
    for (int i0 = 0; i0 < n; i0 += CV_UPSTASH_BATCH) {
        int m = n - i0 < CV_UPSTASH_BATCH ? n - i0 : CV_UPSTASH_BATCH;
        cv_buf body = {0};
        cv_buf_puts(&body, "{\"ids\":");
        ids_json(u, keys + i0, m, &body);
        cv_buf_puts(&body, ",\"includeMetadata\":true,\"includeVectors\":false}");
        char *path = path_of(u, "fetch");
        json_t *r = NULL;
        cv_err e = cv_http_call(u->http, "POST", path, body.p, body.len, 0, NULL, &r);
        free(path);
        size_t k;
        json_t *v;
        json_array_foreach(json_object_get(r, "result"), k, v) {
            const char *id = json_string_value(json_object_get(v, "id"));
            json_t *md = json_object_get(v, "metadata");
            if (id && json_is_object(md)) json_object_set(u->stored, id, md);
        }
        json_decref(r);
        if (e) return e;
    }
    return CV_OK;
}

static cv_err u_hashes(cv_sink *s, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32]) {
    u_sink *u = (u_sink *)s;
    cv_err e = settle(u);
    if (!e) e = fetch(u, keys, n);
    for (int i = 0; i < n; i++) {
        char *kt = cv_sink_key_text(&u->t, keys[i]);
        found[i] = !e && cv_sink_stored_hash(json_object_get(u->stored, kt), hash[i]);
        free(kt);
    }
    return e;
}

static cv_err u_begin(cv_sink *s, int truncate) {
    u_sink *u = (u_sink *)s;
    u->b_puts = u->b_dels = 0;
    json_object_clear(u->stored);
    cv_buf_free(&u->pend);
    u->npend = 0;
    cv_rstate_reset(u->st);
    if (u->rc) cv_rchunks_reset(u->rc);
    if (!truncate) return CV_OK;
    char *path = path_of(u, "reset");
    cv_err e = cv_http_call(u->http, "POST", path, NULL, 0, 0, NULL, NULL);
    free(path);
    return e;
}

/* Sends deletes of keys[0..n) by id (not waited for). */
static cv_err delete_ids(u_sink *u, const char *const *const *keys, int n) {
    cv_err e = flush(u);
    for (int i0 = 0; !e && i0 < n; i0 += CV_UPSTASH_BATCH) {
        int m = n - i0 < CV_UPSTASH_BATCH ? n - i0 : CV_UPSTASH_BATCH;
        cv_buf body = {0};
        cv_buf_puts(&body, "{\"ids\":");
        ids_json(u, keys + i0, m, &body);
        cv_buf_puts(&body, "}");
        u->b_dels += m;
        for (int i = 0; i < m; i++) {
            char *kt = cv_sink_key_text(&u->t, keys[i0 + i]);
            json_object_del(u->stored, kt);
            free(kt);
        }
        char *path = path_of(u, "delete");
        e = cv_http_submit(u->http, "POST", path, body.p, body.len, NULL, NULL);
        free(path);
    }
    return e;
}

static cv_err u_delete(cv_sink *s, const char *const *const *keys, int n) {
    u_sink *u = (u_sink *)s;
    if (u->rc) return cv_rchunks_delete(u->rc, keys, n);
    cv_err e = delete_ids(u, keys, n);
    cv_err w = cv_http_wait(u->http);
    return e ? e : w;
}

static cv_err u_put(cv_sink *s, const cv_sink_row *rows, int n, uint64_t position) {
    u_sink *u = (u_sink *)s;
    if (u->rc) return cv_rchunks_put(u->rc, rows, n, position);
    char now[48];
    cv_sink_now_iso(now);
    cv_err e = CV_OK;
    const char ***miss = calloc((size_t)n + 1, sizeof *miss), ***big = calloc((size_t)n + 1, sizeof *big);
    CV_ASSERT(miss && big);
    int nm = 0, nb = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i].vec && !rows[i].keep) continue;
        char *kt = cv_sink_key_text(&u->t, rows[i].key);
        if (!json_object_get(u->stored, kt)) miss[nm++] = (const char **)rows[i].key;
        free(kt);
    }
    if (nm) e = fetch(u, (const char *const *const *)miss, nm);
    char *upath = path_of(u, "update");
    for (int i = 0; !e && i < n; i++) {
        const cv_sink_row *r = &rows[i];
        char *kt = cv_sink_key_text(&u->t, r->key);
        json_t *stored = json_object_get(u->stored, kt);
        json_t *p = cv_sink_point_payload(&u->t, r, kt, stored, position, now);
        char *md = p ? cv_sink_point_text(p) : NULL;
        json_decref(p);
        if (!md) { /* this row alone: a dead letter, its stale vector deleted */
            cv_sink_dead_note(s, u->st, kt, CV_SINK_BAD_PAYLOAD);
            big[nb++] = (const char **)r->key;
        } else if (strlen(md) > CV_UPSTASH_METADATA) {
            cv_buf why = {0};
            cv_buf_printf(&why,
                          "its metadata is %zu bytes, over Upstash's limit of 48 KB (%d bytes) per vector: "
                          "shorten the row's "
                          "columns (or embed from a table with fewer of them)",
                          strlen(md), CV_UPSTASH_METADATA);
            cv_sink_dead_note(s, u->st, kt, why.p);
            free(why.p);
            big[nb++] = (const char **)r->key; /* its stale vector goes */
        } else if (r->vec) {
            cv_buf one = {0};
            cv_buf_puts(&one, "{\"id\":");
            cv_json_string(&one, kt, strlen(kt));
            cv_buf_puts(&one, ",\"vector\":");
            cv_sink_vec_json(&one, r->vec, u->t.dim);
            cv_buf_printf(&one, ",\"metadata\":%s}", md);
            CV_ASSERT(!one.oom);
            if (u->npend && u->pend.len + one.len + 2 > CV_UPSTASH_BODY) e = flush(u);
            if (u->npend) cv_buf_put(&u->pend, ",", 1);
            cv_buf_put(&u->pend, one.p, one.len);
            free(one.p);
            u->b_puts++;
            if (!e && ++u->npend >= CV_UPSTASH_BATCH) e = flush(u);
        } else if (stored) { /* metadata only: the vector stays as stored */
            cv_buf body = {0};
            cv_buf_puts(&body, "{\"id\":");
            cv_json_string(&body, kt, strlen(kt));
            cv_buf_printf(&body, ",\"metadata\":%s,\"metadataUpdateMode\":\"OVERWRITE\"}", md);
            e = cv_http_submit(u->http, "POST", upath, body.p, body.len, NULL, NULL);
            u->b_puts++;
        }
        free(md), free(kt);
    }
    free(upath);
    if (!e && nb) e = delete_ids(u, (const char *const *const *)big, nb);
    free(miss), free(big);
    CV_ASSERT(!u->pend.oom);
    return e;
}

/* ---- chunked tables (chunks_remote.h): chunk j > 0 of a key is the id "KEY\tj" ---- */

static void rc_id(const cv_sink *s, const char *const *key, int j, cv_buf *js, cv_buf *str) {
    char *kt = cv_sink_key_text(&((const u_sink *)s)->t, key);
    cv_buf id = {0};
    cv_buf_puts(&id, kt);
    if (j > 0) cv_buf_printf(&id, "\t%d", j);
    if (js) cv_json_string(js, id.p, id.len);
    if (str) cv_buf_put(str, id.p, id.len);
    free(kt), free(id.p);
}

static cv_err rc_get(cv_sink *s, const char *ids, int n, json_t *out) {
    u_sink *u = (u_sink *)s;
    (void)n;
    cv_buf body = {0};
    cv_buf_printf(&body, "{\"ids\":%s,\"includeMetadata\":true,\"includeVectors\":true}", ids);
    char *path = path_of(u, "fetch");
    json_t *r = NULL;
    cv_err e = cv_http_call(u->http, "POST", path, body.p, body.len, 0, NULL, &r);
    free(path);
    size_t k;
    json_t *v;
    json_array_foreach(json_object_get(r, "result"), k, v) {
        const char *id = json_string_value(json_object_get(v, "id"));
        json_t *md = json_object_get(v, "metadata");
        if (id && json_is_object(md))
            json_object_set_new(
                out, id, json_pack("{s:O,s:O}", "payload", md, "vector", json_object_get(v, "vector")));
    }
    json_decref(r);
    return e;
}

static cv_err rc_upsert(cv_sink *s, const char *id_js, const char *vec_js, const char *payload) {
    u_sink *u = (u_sink *)s;
    cv_err e = CV_OK;
    cv_buf one = {0};
    cv_buf_printf(&one, "{\"id\":%s,\"vector\":%s,\"metadata\":%s}", id_js, vec_js, payload);
    CV_ASSERT(!one.oom);
    if (u->npend && u->pend.len + one.len + 2 > CV_UPSTASH_BODY) e = flush(u);
    if (u->npend) cv_buf_put(&u->pend, ",", 1);
    cv_buf_put(&u->pend, one.p, one.len);
    free(one.p);
    u->b_puts++;
    if (!e && ++u->npend >= CV_UPSTASH_BATCH) e = flush(u);
    return e;
}

static cv_err rc_del(cv_sink *s, const char *ids, int n) {
    u_sink *u = (u_sink *)s;
    cv_err e = flush(u);
    cv_buf body = {0};
    cv_buf_printf(&body, "{\"ids\":%s}", ids);
    u->b_dels += n;
    char *path = path_of(u, "delete");
    if (!e)
        e = cv_http_submit(u->http, "POST", path, body.p, body.len, NULL, NULL);
    else
        free(body.p);
    free(path);
    cv_err w = cv_http_wait(u->http);
    return e ? e : w;
}

static cv_err rc_wait(cv_sink *s) { return settle((u_sink *)s); }

static const cv_rchunks_io RC_IO = {rc_id, rc_get, rc_upsert, rc_del, rc_wait, CV_UPSTASH_METADATA};

static cv_err u_chunk_hashes(cv_sink *s, const char *const *key, uint8_t (**hash)[32], int *m) {
    u_sink *u = (u_sink *)s;
    return u->rc ? cv_rchunks_hashes(u->rc, key, hash, m) : CV_ERR_UNSUPPORTED;
}

static cv_err u_chunks_set(cv_sink *s, const char *const *key, int n, const int *from, const long *off,
                           const long *len, const uint8_t *text_hash) {
    u_sink *u = (u_sink *)s;
    return u->rc ? cv_rchunks_set(u->rc, key, n, from, off, len, text_hash) : CV_ERR_UNSUPPORTED;
}

static cv_err u_dead_put(cv_sink *s, const cv_sink_dead *d, int n, uint64_t position) {
    (void)position;
    for (int i = 0; i < n; i++)
        cv_rstate_dead_add(((u_sink *)s)->st, d[i].key, d[i].reason);
    return CV_OK;
}

static cv_err u_commit(cv_sink *s, uint64_t position) {
    u_sink *u = (u_sink *)s;
    cv_err e = settle(u);
    if (!e && u->rc && !(e = cv_rchunks_tail(u->rc))) e = settle(u); /* chunk 0 last (chunks_remote.h) */
    if (!e) e = cv_rstate_commit(s, u->st, position);
    json_object_clear(u->stored);
    if (u->rc) cv_rchunks_reset(u->rc);
    if (!e) u->bf_puts += u->b_puts, u->bf_dels += u->b_dels;
    u->b_puts = u->b_dels = 0;
    return e;
}

static void u_rollback(cv_sink *s) {
    u_sink *u = (u_sink *)s;
    cv_http_wait(u->http);
    u->bf_dels += u->b_dels; /* sent, so perhaps done; the writes do not count */
    u->b_puts = u->b_dels = 0;
    cv_buf_free(&u->pend);
    u->npend = 0;
    json_object_clear(u->stored);
    cv_rstate_reset(u->st);
    if (u->rc) cv_rchunks_reset(u->rc);
}

static cv_err u_state(cv_sink *s, uint64_t *pos, int *done, uint64_t *bpos) {
    return cv_rstate_get(s, ((u_sink *)s)->st, pos, done, bpos);
}
static cv_err u_meta_set(cv_sink *s, const cv_sink_meta *m) {
    return cv_rstate_meta_set(s, ((u_sink *)s)->st, m);
}

/* The vectors in the namespace now, pending ones included (/info). */
static cv_err ns_count(u_sink *u, long long *n) {
    json_t *r = NULL;
    *n = 0;
    cv_err e = cv_http_call(u->http, "POST", "/info", NULL, 0, 0, NULL, &r);
    json_t *ns = json_object_get(json_object_get(json_object_get(r, "result"), "namespaces"), u->ns);
    if (!e && ns)
        *n = json_integer_value(json_object_get(ns, "vectorCount")) +
             json_integer_value(json_object_get(ns, "pendingVectorCount"));
    json_decref(r);
    return e;
}

/* The namespace's vectors (sink.h: a chunked table's chunks; whatever else shares it). */
static cv_err u_count(cv_sink *s, double *rows) {
    long long n = 0;
    cv_err e = ns_count((u_sink *)s, &n);
    if (!e) *rows = (double)n;
    return e;
}

/* Whether the finished backfill at p can have left vectors written below p (an interrupted
 * earlier backfill's rows deleted since): not when the namespace was empty when it began, nor
 * when it holds no more vectors than the backfill wrote (every id it wrote is there with a
 * position >= p; an id sent for deletion counts against it). Otherwise Upstash's delete by a
 * metadata filter, which scans the whole namespace (O(N)), finds them. */
static cv_err stale_possible(u_sink *u, uint64_t p, int *stale, long long *count) {
    *stale = 1, *count = -1;
    if (!u->bf_on || u->bf_p != p) return CV_OK; /* not this process's backfill: scan */
    if (u->bf_empty) {
        *stale = 0;
        return CV_OK;
    }
    if (u->rc) return CV_OK; /* chunks rewrite their ids: the count proves nothing */
    cv_err e = ns_count(u, count);
    if (!e && *count <= u->bf_puts - u->bf_dels) *stale = 0;
    return e;
}

static cv_err u_backfill_mark(cv_sink *s, uint64_t p, int done) {
    u_sink *u = (u_sink *)s;
    cv_err e = settle(u);
    if (!e && !done && p) { /* a backfill begins: count from here */
        long long n = 0;
        e = ns_count(u, &n);
        u->bf_on = !e, u->bf_p = p, u->bf_empty = n == 0, u->bf_puts = u->bf_dels = 0;
    }
    int stale = 1;
    long long count = -1;
    if (!e && done && p) e = stale_possible(u, p, &stale, &count);
    if (!e && done && p)
        cv_info("event=backfill_cleanup store=upstash namespace=%s written=%ld deleted=%ld "
                "namespace_vectors=%lld "
                "method=%s",
                u->ns, u->bf_puts, u->bf_dels, count, stale ? "filter" : "none");
    if (!e && done && p && stale) { /* vectors an interrupted earlier backfill left (written below p) */
        cv_buf body = {0};
        cv_buf_printf(&body, "{\"filter\":\"cdcvec.lsn < %llu\"}", (unsigned long long)p);
        char *path = path_of(u, "delete");
        e = cv_http_call(u->http, "POST", path, body.p, body.len, 0, NULL, NULL);
        free(path);
    }
    if (done) u->bf_on = 0;
    if (!e) e = cv_rstate_backfill(s, u->st, p, done);
    return e;
}

/* The nearest topK vectors (a JSON array of hits). */
static cv_err query(u_sink *u, const float *v, int topk, const cv_sink_filter *f, json_t **hits) {
    cv_buf body = {0};
    cv_buf_puts(&body, "{\"vector\":");
    cv_sink_vec_json(&body, v, u->t.dim);
    cv_buf_printf(&body, ",\"topK\":%d,\"includeMetadata\":true,\"includeVectors\":false", topk);
    if (f) {
        cv_buf flt = {0};
        cv_sink_filter_upstash(f, &flt);
        cv_buf_puts(&body, ",\"filter\":");
        cv_json_string(&body, flt.p, flt.len);
        free(flt.p);
    }
    cv_buf_puts(&body, "}");
    char *path = path_of(u, "query");
    json_t *r = NULL;
    cv_err e = cv_http_call(u->http, "POST", path, body.p, body.len, 0, NULL, &r);
    free(path);
    *hits = json_incref(json_object_get(r, "result"));
    if (!json_is_array(*hits)) json_decref(*hits), *hits = json_array();
    json_decref(r);
    return e;
}

/* A hit's row key (cdcvec.key, else its id). */
static const char *hit_key(json_t *hit) {
    const char *key = json_string_value(
        json_object_get(json_object_get(json_object_get(hit, "metadata"), "cdcvec"), "key"));
    return key ? key : json_string_value(json_object_get(hit, "id"));
}

/* Search by row: on a table of chunks the nearest topK chunks are grouped by key (the first of a
 * key is its best); while that gives fewer than limit rows and more chunks exist, topK grows
 * (x4, up to Upstash's 1000), so the first limit rows are exactly the nearest by best chunk. */
static cv_err u_search(cv_sink *s, const float *v, int limit, const cv_sink_filter *f, cv_sink_hit_cb cb,
                       void *arg) {
    u_sink *u = (u_sink *)s;
    int topk = limit;
    json_t *hits = NULL, *rows = NULL;
    cv_err e = CV_OK;
    for (;;) {
        json_decref(hits), json_decref(rows);
        rows = json_array();
        json_t *seen = json_object(), *hit;
        size_t i;
        int chunked = 0;
        cv_sink_passage ps;
        e = query(u, v, topk, f, &hits);
        json_array_foreach(hits, i, hit) {
            chunked |= cv_rchunks_passage(json_object_get(hit, "metadata"), &ps);
            const char *key = hit_key(hit);
            if (!key || json_object_get(seen, key)) continue;
            json_object_set_new(seen, key, json_true());
            if ((int)json_array_size(rows) < limit) json_array_append(rows, hit);
        }
        json_decref(seen);
        if (e || !chunked || (int)json_array_size(rows) >= limit || (int)json_array_size(hits) < topk ||
            topk >= 1000)
            break;
        topk = topk * 4 > 1000 ? 1000 : topk * 4;
    }
    size_t i;
    json_t *hit;
    json_array_foreach(rows, i, hit) {
        if (e) break;
        json_t *md = json_object_get(hit, "metadata");
        const char *key = hit_key(hit);
        char *pub = cv_sink_public_payload(&u->t, md);
        cv_sink_passage ps;
        /* Upstash reports (1 + cos) / 2 for the cosine similarity */
        double score = 0;
        cv_jnum_number(json_object_get(hit, "score"), &score);
        cb(arg, (int)i + 1, 2.0 * score - 1.0, key ? key : "", pub, cv_rchunks_passage(md, &ps) ? &ps : NULL);
        free(pub);
    }
    json_decref(hits), json_decref(rows);
    return e;
}

/* verify: the stored hash and public payload of keys (/fetch into a map of its own). */
static cv_err u_fetch(cv_sink *s, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32],
                      char **payload) {
    u_sink *u = (u_sink *)s;
    cv_err e = settle(u);
    json_t *keep = u->stored;
    if (u->rc) cv_rchunks_reset(u->rc); /* verify: what the last page read goes */
    u->stored = json_object();
    if (!e) e = fetch(u, keys, n);
    for (int i = 0; !e && i < n; i++) {
        char *kt = cv_sink_key_text(&u->t, keys[i]);
        json_t *md = json_object_get(u->stored, kt);
        found[i] = md != NULL;
        if (md && !cv_sink_stored_hash(md, hash[i])) memset(hash[i], 0, 32);
        if (md) payload[i] = cv_sink_public_payload(&u->t, md);
        free(kt);
    }
    json_decref(u->stored);
    u->stored = keep;
    return e;
}

/* verify: one page of the namespace's ids (/range; the cursor is Upstash's nextCursor). */
static cv_err u_scan(cv_sink *s, cv_buf *cursor, int limit, cv_sink_key_cb cb, void *arg, int *more) {
    u_sink *u = (u_sink *)s;
    cv_buf body = {0};
    cv_buf_puts(&body, "{\"cursor\":");
    const char *from = cursor->len ? cursor->p : "0";
    cv_json_string(&body, from, strlen(from));
    cv_buf_printf(&body, ",\"limit\":%d,\"includeMetadata\":false,\"includeVectors\":false}", limit);
    char *path = path_of(u, "range");
    json_t *r = NULL;
    cv_err e = cv_http_call(u->http, "POST", path, body.p, body.len, 0, NULL, &r);
    free(path);
    json_t *res = json_object_get(r, "result"), *v;
    size_t k;
    cv_buf prev = {0};
    json_array_foreach(json_object_get(res, "vectors"), k, v) {
        const char *id = json_string_value(json_object_get(v, "id"));
        size_t kl = id ? strcspn(id, "\t") : 0; /* a chunk's id: its key, once per run of its chunks */
        if (!id || (prev.p && prev.len == kl && !memcmp(prev.p, id, kl))) continue;
        prev.len = 0;
        cv_buf_put(&prev, id, kl);
        cb(arg, prev.p);
    }
    free(prev.p);
    const char *next = json_string_value(json_object_get(res, "nextCursor"));
    *more = !e && next && *next;
    cursor->len = 0;
    if (*more) cv_buf_puts(cursor, next);
    json_decref(r);
    return e;
}

/* The Upstash store's row in the table of stores (sink_impl.h). */
const cv_sink_ops cv_sink_upstash_ops = {"upstash",  u_open,     u_close,         u_state,      u_hashes,
                                         u_begin,    u_delete,   u_put,           u_dead_put,   u_commit,
                                         u_rollback, u_meta_set, u_backfill_mark, u_search,     u_state_key,
                                         u_fetch,    u_scan,     u_chunk_hashes,  u_chunks_set, u_count};
