/* qdrant.c: the Qdrant sink over its REST API (PROTOCOLS.md §5), through sink/http.c.
 *
 * One collection (`qdrant://host:port/COLLECTION`, default the table's name) of unnamed
 * vectors (dim, Cosine), created when missing and never recreated or wiped; one that exists
 * with another size or distance stops the sink with a fix. Point id: the primary key when it
 * is one integer column holding a value >= 0, else a UUIDv5 (namespace CV_QDRANT_NS, name
 * "schema.table:" + the key as one line of text, pg/cv_keytext.h). Payload: the row's
 * columns, its key columns and "cdcvec" {table, key, text_hash, model, lsn, updated_at}
 * (payload.c). Several tables may share a collection: TRUNCATE, searches and the clean-up of
 * an interrupted backfill filter on cdcvec.table (integer ids of two tables would collide:
 * give each table its collection).
 *
 * Writes: upserts are gathered into requests of CV_QDRANT_BATCH points (`PUT
 * .../points?wait=true`), sent while later rows arrive, two at a time; deletes by id; payload-
 * only updates as one `POST .../points/batch?wait=true` of overwrite_payload operations (the
 * vector is not sent again), with the stored values of `keep` columns and the stored text hash
 * read back by cv_sink_hashes (retrieve by ids). Everything is flushed and acknowledged
 * before a delete, a lookup, and the commit, which then records the position in the state
 * database (state.c). */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_conf.h"
#include "../common/cv_jnum.h"
#include "../common/cv_log.h"
#include "chunks_remote.h"
#include "http.h"

#define CV_QDRANT_BATCH 256
#define CV_QDRANT_IDS   1024 /* ids per retrieve / delete request */
/* uuid5(NAMESPACE_URL, "https://cdcvec.dev/qdrant-point-id"): fixed forever (ids depend on it) */
static const uint8_t CV_QDRANT_NS[16] = {0x3a, 0xcb, 0x4b, 0x64, 0xd4, 0x71, 0x55, 0xa5,
                                         0x8e, 0x5b, 0x2f, 0xfa, 0x68, 0x0a, 0xbb, 0x72};

typedef struct q_sink {
    cv_sink base;
    cv_sink_table t;
    cv_http *http;
    cv_rstate *st;
    char *coll, *cpath; /* the collection, and "/collections/<escaped>" */
    char *tname;        /* schema.table */
    char *where;        /* "Qdrant collection X at http://host:port", for messages */
    int no_batch;       /* the server has no /points/batch (the test stand-in) */
    json_t *stored;     /* point id text -> stored payload, read by cv_sink_hashes for this batch */
    cv_buf pend;        /* points gathered for the next upsert: JSON objects, comma-separated */
    int npend;
    json_t *indexed; /* payload fields given an index for search filters (name -> true) */
    cv_rchunks *rc;  /* a chunked table (chunks_remote.h), else NULL */
    int grouped;     /* search by row: the table holds chunks (seen once, or written so) */
} q_sink;

/* ---- point ids ------------------------------------------------------------------------- */

/* The point id as JSON (a number or a quoted UUID) into js, and as text (the key to match
 * what Qdrant returns) into str. */
void cv_qdrant_point_id(const cv_sink_table *t, const char *const *key, cv_buf *js, cv_buf *str) {
    cv_qdrant_chunk_id(t, key, 0, js, str);
}

/* The UUIDv5 of "schema.table:" + key text (chunk > 0: + TAB + chunk; chunks_remote.h). */
static void uuid_id(const cv_sink_table *t, const char *const *key, int chunk, cv_buf *js, cv_buf *str) {
    char *kt = cv_sink_key_text(t, key);
    cv_buf name = {0};
    cv_buf_put(&name, (const char *)CV_QDRANT_NS, 16);
    cv_buf_printf(&name, "%s.%s:%s", t->schema, t->table, kt);
    if (chunk > 0) cv_buf_printf(&name, "\t%d", chunk);
    free(kt);
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    EVP_Digest(name.p, name.len, d, &dl, EVP_sha1(), NULL);
    free(name.p);
    d[6] = (uint8_t)((d[6] & 0x0f) | 0x50);
    d[8] = (uint8_t)((d[8] & 0x3f) | 0x80);
    char u[40];
    snprintf(u, sizeof u, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", d[0], d[1],
             d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]);
    if (js) cv_buf_printf(js, "\"%s\"", u);
    if (str) cv_buf_puts(str, u);
}

void cv_qdrant_chunk_id(const cv_sink_table *t, const char *const *key, int chunk, cv_buf *js, cv_buf *str) {
    if (chunk > 0) return uuid_id(t, key, chunk, js, str);
    if (!t->uuid_ids && cv_sink_int_key(t) && key[0][0] && strspn(key[0], "0123456789") == strlen(key[0]) &&
        strlen(key[0]) <= 20) {
        unsigned long long v = strtoull(key[0], NULL, 10);
        char num[24];
        snprintf(num, sizeof num, "%llu", v);
        if (strlen(key[0]) < 20 || strcmp(num, key[0]) == 0) { /* fits uint64 */
            if (js) cv_buf_puts(js, num);
            if (str) cv_buf_puts(str, num);
            return;
        }
    }
    uuid_id(t, key, 0, js, str);
}

/* The point id of a key of this sink's table. */
static void point_id(const q_sink *q, const char *const *key, cv_buf *js, cv_buf *str) {
    cv_qdrant_point_id(&q->t, key, js, str);
}

/* A returned id (number or string) as text. */
static void id_text(json_t *id, char out[48]) {
    char *big = cv_jnum_number(id, NULL) && !json_is_integer(id)
                    ? cv_jnum_dumps(id, JSON_ENCODE_ANY, CV_JNUM_EXACT)
                    : NULL; /* an id beyond int64 */
    if (json_is_integer(id))
        snprintf(out, 48, "%lld", (long long)json_integer_value(id));
    else if (big)
        snprintf(out, 48, "%s", big);
    else
        snprintf(out, 48, "%s", json_string_value(id) ? json_string_value(id) : "");
    free(big);
}

/* ---- failures ---------------------------------------------------------------------------- */

/* Qdrant's error text: {"status":{"error":"..."}}. */
static const char *err_text(json_t *body) {
    const char *m = json_string_value(json_object_get(json_object_get(body, "status"), "error"));
    return m ? m : "(no message)";
}

/* A 4xx: the collection is gone or has another vector size (config), else the data. */
static cv_err judge(cv_sink *s, long status, json_t *body, const char *what) {
    q_sink *q = (q_sink *)s;
    const char *m = err_text(body);
    cv_buf fix = {0};
    const char *kind = "data";
    cv_err e = CV_ERR_FORMAT;
    if (strstr(m, "dimension") || strstr(m, "Wrong input: Vector")) {
        kind = "config", e = CV_ERR_UNSUPPORTED;
        cv_buf_printf(
            &fix,
            "%s holds vectors of another size than this model's %d: sync into another collection "
            "(--sink qdrant://HOST:PORT/NEW_NAME, created for you) or delete that collection in Qdrant "
            "if it is yours to rebuild",
            q->where, q->t.dim);
    } else if (status == 404) {
        kind = "missing_object", e = CV_ERR_UNSUPPORTED;
        cv_buf_printf(&fix,
                      "%s is gone (deleted while cdcvec ran?): run cdcvec sync again with --resnapshot 1 to "
                      "recreate and refill it",
                      q->where);
    } else {
        cv_buf_printf(&fix, "%s refused the data (%s: status %ld: %s)", q->where, what, status, m);
    }
    cv_error("event=sink_failed store=qdrant request=\"%s\" status=%ld kind=%s error=\"%s\" fix=\"%s\"", what,
             status, kind, m, fix.p);
    cv_sink_fault(s, kind, fix.p);
    free(fix.p);
    return e;
}

/* A fatal set-up fault at open, logged with its fix. */
static cv_err setup_fault(q_sink *q, const char *event, const char *kind, const char *fix) {
    cv_error("event=%s store=qdrant collection=%s kind=%s fix=\"%s\"", event, q->coll ? q->coll : "-", kind,
             fix);
    cv_sink_fault(&q->base, kind, fix);
    return CV_ERR_UNSUPPORTED;
}

/* ---- open / close ------------------------------------------------------------------------- */

/* Splits qdrant[s]://host[:port][/collection] into base URL and collection; refuses userinfo. */
static int parse_url(const char *url, const cv_sink_table *t, cv_buf *base, cv_buf *coll, const char **why) {
    int tls = !strncmp(url, "qdrants://", 10);
    const char *h = url + (tls ? 10 : 9), *slash = strchr(h, '/'), *at = strchr(h, '@'), *q = strchr(h, '?');
    if (at && (!slash || at < slash)) {
        *why = "the sink URL holds a user or key: put the key in QDRANT_API_KEY or QDRANT_API_KEY_FILE, "
               "never on the "
               "command line";
        return -1;
    }
    if (q) {
        *why = "the sink URL has a query string: settings and keys do not go there (the key: QDRANT_API_KEY)";
        return -1;
    }
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0) {
        *why = "the sink URL names no host: qdrant://HOST[:PORT]/COLLECTION";
        return -1;
    }
    cv_buf_printf(base, "%s://%.*s", tls ? "https" : "http", (int)hl, h);
    if (!memchr(h, ':', hl)) cv_buf_puts(base, ":6333");
    const char *c = slash && slash[1] ? slash + 1 : t->table;
    if (strchr(c, '/')) {
        *why = "a collection name cannot hold '/': qdrant://HOST[:PORT]/COLLECTION";
        return -1;
    }
    cv_buf_puts(coll, c);
    return 0;
}

static void q_state_key(const char *url, const cv_sink_table *t, cv_buf *key) {
    cv_buf base = {0}, coll = {0};
    const char *why;
    if (!parse_url(url, t, &base, &coll, &why))
        cv_buf_printf(key, "%s@qdrant:%s/%s%s", t->stream, base.p, coll.p, t->uuid_ids ? "#uuid-ids" : "");
    free(base.p), free(coll.p);
}

static void q_close(cv_sink *s) {
    q_sink *q = (q_sink *)s;
    if (!q) return;
    cv_http_free(q->http);
    cv_rstate_close(q->st);
    json_decref(q->stored), json_decref(q->indexed);
    cv_rchunks_free(q->rc);
    free(q->coll), free(q->cpath), free(q->tname), free(q->where), free(q->pend.p);
    free(q);
}

/* Checks the collection's vectors (size, distance), creating it when missing. */
static cv_err ensure_collection(q_sink *q) {
    for (int round = 0; round < 2; round++) {
        long st;
        json_t *r = NULL;
        cv_err e = cv_http_call(q->http, "GET", q->cpath, NULL, 0, 1, &st, &r);
        if (e) return e;
        if (st == 200) {
            json_t *v = json_object_get(
                json_object_get(json_object_get(json_object_get(r, "result"), "config"), "params"),
                "vectors");
            json_t *size = json_object_get(v, "size");
            const char *dist = json_string_value(json_object_get(v, "distance"));
            cv_buf fix = {0};
            if (!json_is_integer(size))
                cv_buf_printf(
                    &fix,
                    "%s has named vectors; cdcvec writes one unnamed %d-dimensional Cosine vector per "
                    "point: use another collection (--sink qdrant://HOST:PORT/NEW_NAME)",
                    q->where, q->t.dim);
            else if (json_integer_value(size) != q->t.dim || !dist || strcmp(dist, "Cosine"))
                cv_buf_printf(
                    &fix,
                    "%s holds %lld-dimensional %s vectors, this model writes %d-dimensional Cosine "
                    "ones: use another collection (--sink qdrant://HOST:PORT/NEW_NAME, created for you); "
                    "cdcvec never recreates a collection",
                    q->where, (long long)json_integer_value(size), dist ? dist : "?", q->t.dim);
            json_decref(r);
            if (fix.p) {
                e = setup_fault(q, "sink_schema_mismatch", "config", fix.p);
                free(fix.p);
                return e;
            }
            return CV_OK;
        }
        json_decref(r);
        if (st != 404) {
            cv_buf fix = {0};
            cv_buf_printf(&fix, "%s answered %ld to a collection lookup: check the URL", q->where, st);
            e = setup_fault(q, "sink_collection_lookup", "config", fix.p);
            free(fix.p);
            return e;
        }
        cv_buf body = {0};
        cv_buf_printf(&body, "{\"vectors\":{\"size\":%d,\"distance\":\"Cosine\"}}", q->t.dim);
        e = cv_http_call(q->http, "PUT", q->cpath, body.p, body.len, 1, &st, &r);
        json_decref(r);
        if (e) return e;
        if (st == 200) {
            cv_info("event=collection_created store=qdrant collection=%s size=%d distance=Cosine", q->coll,
                    q->t.dim);
            /* an index on cdcvec.table for truncates and searches; optional */
            cv_buf ix = {0}, path = {0};
            cv_buf_puts(&ix, "{\"field_name\":\"cdcvec.table\",\"field_schema\":\"keyword\"}");
            cv_buf_printf(&path, "%s/index?wait=true", q->cpath);
            e = cv_http_call(q->http, "PUT", path.p, ix.p, ix.len, 1, &st, NULL);
            free(path.p);
            if (e) return e;
            return CV_OK;
        }
        /* 409: created meanwhile by someone else: look again */
    }
    return setup_fault(q, "sink_collection_create", "config",
                       "the collection could neither be found nor created");
}

/* A table whose point ids are its integer keys refuses a collection where another table's
 * points have integer ids too: the two would overwrite each other's points (id 7 of one table is
 * id 7 of the other). Looks at up to 64 points of other tables. */
static cv_err check_shared(q_sink *q) {
    if (q->t.uuid_ids || !cv_sink_int_key(&q->t)) return CV_OK; /* UUIDs of table + key never meet */
    cv_buf body = {0}, path = {0};
    cv_buf_puts(&body, "{\"filter\":{\"must_not\":[{\"key\":\"cdcvec.table\",\"match\":{\"value\":");
    cv_json_string(&body, q->tname, strlen(q->tname));
    cv_buf_puts(&body, "}}]},\"limit\":64,\"with_payload\":true,\"with_vector\":false}");
    cv_buf_printf(&path, "%s/points/scroll", q->cpath);
    json_t *r = NULL;
    cv_err e = cv_http_call(q->http, "POST", path.p, body.p, body.len, 0, NULL, &r);
    free(path.p);
    size_t i;
    json_t *pt;
    const char *other = NULL;
    json_array_foreach(json_object_get(json_object_get(r, "result"), "points"), i, pt) {
        if (!json_is_integer(json_object_get(pt, "id"))) continue;
        other = json_string_value(
            json_object_get(json_object_get(json_object_get(pt, "payload"), "cdcvec"), "table"));
        if (!other) other = "(a point cdcvec did not write)";
        break;
    }
    if (!e && other) {
        cv_buf fix = {0};
        cv_buf_printf(
            &fix,
            "%s already holds points of %s with integer ids, and %s's ids would be its integer keys "
            "too: the two tables would overwrite each other's points. Give %s a collection of its "
            "own (--sink qdrant://HOST:PORT/NEW_NAME), or run %s with --point-ids uuid (ids from "
            "table and key, which never meet another table's)",
            q->where, other, q->tname, q->tname, q->tname);
        e = setup_fault(q, "sink_collection_shared", "config", fix.p);
        free(fix.p);
    }
    json_decref(r);
    return e;
}

static const cv_rchunks_io RC_IO;

/* A writer without chunking refuses a collection where this table's points are chunks (one
 * vector per row would leave the chunks after the first behind), as pgvector refuses a store
 * table of the other layout. */
static cv_err check_layout(q_sink *q) {
    if (q->t.chunked != 0) return CV_OK;
    cv_buf body = {0}, path = {0};
    cv_buf_puts(&body, "{\"filter\":{\"must\":[{\"key\":\"cdcvec.table\",\"match\":{\"value\":");
    cv_json_string(&body, q->tname, strlen(q->tname));
    cv_buf_puts(&body, "}},{\"key\":\"cdcvec.chunk\",\"range\":{\"gt\":0}}]},\"exact\":false}");
    cv_buf_printf(&path, "%s/points/count", q->cpath);
    json_t *r = NULL;
    cv_err e = cv_http_call(q->http, "POST", path.p, body.p, body.len, 0, NULL, &r);
    free(path.p);
    json_t *n = json_object_get(json_object_get(r, "result"), "count");
    if (!e && json_is_integer(n) && json_integer_value(n) > 0) {
        cv_buf fix = {0};
        cv_buf_printf(&fix,
                      "%s holds %s's texts as chunks (one point per key and chunk): run with the "
                      "--chunk-max-tokens the sync has (verify and backfill too), or sync into another "
                      "collection (--sink qdrant://HOST:PORT/NEW_NAME)",
                      q->where, q->tname);
        e = setup_fault(q, "chunk_layout_mismatch", "config", fix.p);
        free(fix.p);
    }
    json_decref(r);
    return e;
}

static cv_err q_open(const char *url, const cv_sink_table *t, cv_sink **out) {
    q_sink *q = calloc(1, sizeof *q);
    CV_ASSERT(q);
    q->base.ops = &cv_sink_qdrant_ops;
    q->base.batch_rows = 4 * CV_QDRANT_BATCH;
    *out = &q->base;
    q->t = *t;
    cv_buf base = {0}, coll = {0}, tn = {0};
    const char *why = NULL;
    if (parse_url(url, t, &base, &coll, &why)) {
        free(base.p), free(coll.p);
        return setup_fault(q, "bad_sink_url", "config", why);
    }
    q->coll = coll.p;
    cv_buf_printf(&tn, "%s.%s", t->schema, t->table);
    q->tname = tn.p;
    char *esc = curl_easy_escape(NULL, q->coll, 0);
    cv_buf p = {0}, w = {0};
    cv_buf_printf(&p, "/collections/%s", esc);
    curl_free(esc);
    q->cpath = p.p;
    cv_buf_printf(&w, "Qdrant collection %s at %s", q->coll, base.p);
    q->where = w.p;
    q->stored = json_object();
    const char *ferr;
    char *key = cv_conf_secret("QDRANT_API_KEY", &ferr);
    if (ferr) {
        free(base.p);
        return setup_fault(q, "sink_secret_unreadable", "config",
                           "QDRANT_API_KEY_FILE names a file this process cannot read");
    }
    cv_buf auth = {0}, afix = {0};
    if (key) cv_buf_printf(&auth, "api-key: %s", key);
    cv_buf_printf(&afix,
                  "%s refused the API key: set QDRANT_API_KEY (or QDRANT_API_KEY_FILE) to a key of that "
                  "cluster with read-write access%s",
                  q->where, key ? "" : " (none is set now)");
    cv_http_opts ho = {.base = base.p,
                       .store = "qdrant",
                       .auth_header = auth.p,
                       .auth_fix = afix.p,
                       .judge = judge,
                       .max_inflight = 2,
                       .retry_s = t->retry_s};
    cv_err e = cv_http_new(&q->base, &ho, &q->http);
    if (auth.p) memset(auth.p, 0, auth.len);
    if (key) memset(key, 0, strlen(key));
    free(auth.p), free(key), free(afix.p);
    if (!e) e = ensure_collection(q);
    if (!e) e = check_shared(q);
    if (!e && t->dim) e = check_layout(q);
    cv_buf sk = {0};
    /* other point ids are another store: a switch of --point-ids backfills again, and the
     * clean-up after it removes the points under the old ids */
    cv_buf_printf(&sk, "%s@qdrant:%s/%s%s", t->stream, base.p, q->coll, t->uuid_ids ? "#uuid-ids" : "");
    free(base.p);
    if (!e) e = cv_rstate_open(&q->base, t->state_conninfo, sk.p, &q->st);
    free(sk.p);
    if (!e && t->chunked > 0) {
        q->rc = cv_rchunks_new(&q->base, &q->t, q->st, &RC_IO);
        q->grouped = 1;
    }
    return e;
}

/* ---- writes ------------------------------------------------------------------------------- */

/* Sends the gathered points as one upsert (not waited for). */
static cv_err flush(q_sink *q) {
    if (!q->npend) return CV_OK;
    cv_buf body = {0}, path = {0};
    cv_buf_puts(&body, "{\"points\":[");
    cv_buf_put(&body, q->pend.p, q->pend.len);
    cv_buf_puts(&body, "]}");
    CV_ASSERT(!body.oom);
    cv_buf_free(&q->pend);
    q->npend = 0;
    cv_buf_printf(&path, "%s/points?wait=true", q->cpath);
    cv_err e = cv_http_submit(q->http, "PUT", path.p, body.p, body.len, NULL, NULL);
    free(path.p);
    return e;
}

/* Flushes, then waits for every request in flight. */
static cv_err settle(q_sink *q) {
    cv_err e = flush(q);
    cv_err w = cv_http_wait(q->http);
    return e ? e : w;
}

/* Reads the stored payloads of keys[0..n) into q->stored. */
static cv_err retrieve(q_sink *q, const char *const *const *keys, int n) {
    for (int i0 = 0; i0 < n; i0 += CV_QDRANT_IDS) {
        int m = n - i0 < CV_QDRANT_IDS ? n - i0 : CV_QDRANT_IDS;
        cv_buf body = {0}, path = {0};
        cv_buf_puts(&body, "{\"ids\":[");
        for (int i = 0; i < m; i++) {
            if (i) cv_buf_put(&body, ",", 1);
            point_id(q, keys[i0 + i], &body, NULL);
        }
        cv_buf_puts(&body, "],\"with_payload\":true,\"with_vector\":false}");
        cv_buf_printf(&path, "%s/points", q->cpath);
        json_t *r = NULL;
        cv_err e = cv_http_call(q->http, "POST", path.p, body.p, body.len, 0, NULL, &r);
        free(path.p);
        size_t k;
        json_t *pt;
        json_array_foreach(json_object_get(r, "result"), k, pt) {
            json_t *pl = json_object_get(pt, "payload");
            const char *tab = json_string_value(json_object_get(json_object_get(pl, "cdcvec"), "table"));
            char id[48];
            id_text(json_object_get(pt, "id"), id);
            if (tab && !strcmp(tab, q->tname)) json_object_set(q->stored, id, pl);
        }
        json_decref(r);
        if (e) return e;
    }
    return CV_OK;
}

static cv_err q_hashes(cv_sink *s, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32]) {
    q_sink *q = (q_sink *)s;
    cv_err e = settle(q);
    if (!e) e = retrieve(q, keys, n);
    for (int i = 0; i < n; i++) {
        cv_buf id = {0};
        point_id(q, keys[i], NULL, &id);
        found[i] = !e && cv_sink_stored_hash(json_object_get(q->stored, id.p), hash[i]);
        free(id.p);
    }
    return e;
}

/* Deletes by a filter on this table's points (and, lt > 0, cdcvec.lsn < lt), waited for. */
static cv_err delete_filter(q_sink *q, uint64_t lt) {
    cv_buf body = {0}, path = {0};
    cv_buf_puts(&body, "{\"filter\":{\"must\":[{\"key\":\"cdcvec.table\",\"match\":{\"value\":");
    cv_json_string(&body, q->tname, strlen(q->tname));
    cv_buf_puts(&body, "}}");
    if (lt) cv_buf_printf(&body, ",{\"key\":\"cdcvec.lsn\",\"range\":{\"lt\":%llu}}", (unsigned long long)lt);
    cv_buf_puts(&body, "]}}");
    cv_buf_printf(&path, "%s/points/delete?wait=true", q->cpath);
    cv_err e = cv_http_call(q->http, "POST", path.p, body.p, body.len, 0, NULL, NULL);
    free(path.p);
    return e;
}

static cv_err q_begin(cv_sink *s, int truncate) {
    q_sink *q = (q_sink *)s;
    json_object_clear(q->stored);
    cv_buf_free(&q->pend);
    q->npend = 0;
    cv_rstate_reset(q->st);
    if (q->rc) cv_rchunks_reset(q->rc);
    return truncate ? delete_filter(q, 0) : CV_OK;
}

static cv_err q_delete(cv_sink *s, const char *const *const *keys, int n) {
    q_sink *q = (q_sink *)s;
    if (q->rc) return cv_rchunks_delete(q->rc, keys, n);
    cv_err e = flush(q);
    for (int i0 = 0; !e && i0 < n; i0 += CV_QDRANT_IDS) {
        int m = n - i0 < CV_QDRANT_IDS ? n - i0 : CV_QDRANT_IDS;
        cv_buf body = {0}, path = {0};
        /* by id, within this table's points: never another table's point of the same id */
        cv_buf_puts(&body, "{\"filter\":{\"must\":[{\"has_id\":[");
        for (int i = 0; i < m; i++) {
            cv_buf id = {0};
            if (i) cv_buf_put(&body, ",", 1);
            point_id(q, keys[i0 + i], &body, &id);
            json_object_del(q->stored, id.p);
            free(id.p);
        }
        cv_buf_puts(&body, "]},{\"key\":\"cdcvec.table\",\"match\":{\"value\":");
        cv_json_string(&body, q->tname, strlen(q->tname));
        cv_buf_puts(&body, "}}]}}");
        cv_buf_printf(&path, "%s/points/delete?wait=true", q->cpath);
        e = cv_http_submit(q->http, "POST", path.p, body.p, body.len, NULL, NULL);
        free(path.p);
    }
    cv_err w = cv_http_wait(q->http);
    return e ? e : w;
}

/* Sends overwrite_payload operations (comma-separated in ops, emptied): one batch request
 * (`POST .../points/batch`), or one `PUT .../points/payload` each where the server has no
 * batch API (found once: a 404). */
static cv_err payload_ops(q_sink *q, cv_buf *ops) {
    cv_err e = CV_OK;
    if (!q->no_batch) {
        cv_buf body = {0}, path = {0};
        cv_buf_puts(&body, "{\"operations\":[");
        cv_buf_put(&body, ops->p, ops->len);
        cv_buf_puts(&body, "]}");
        cv_buf_printf(&path, "%s/points/batch?wait=true", q->cpath);
        long st = 200;
        e = cv_http_call(q->http, "POST", path.p, body.p, body.len, 1, &st, NULL);
        free(path.p);
        if (!e && st == 404) {
            q->no_batch = 1;
            cv_info("event=qdrant_no_batch_api collection=%s note=\"payload-only updates go one request per "
                    "point\"",
                    q->coll);
        } else if (!e && st != 200) {
            e = judge(&q->base, st, NULL, "POST /points/batch");
        }
    }
    if (!e && q->no_batch) {
        cv_buf b = {0}; /* ops is a list without its brackets */
        cv_buf_printf(&b, "[%.*s]", (int)ops->len, ops->p);
        json_t *all = cv_jnum_loads(b.p, 0, NULL);
        free(b.p);
        size_t i;
        json_t *op;
        cv_buf path = {0};
        cv_buf_printf(&path, "%s/points/payload?wait=true", q->cpath);
        json_array_foreach(all, i, op) {
            char *ob = cv_jnum_dumps(json_object_get(op, "overwrite_payload"), JSON_COMPACT, CV_JNUM_EXACT);
            if (!e)
                e = cv_http_submit(q->http, "PUT", path.p, ob, strlen(ob), NULL, NULL);
            else
                free(ob);
        }
        free(path.p);
        json_decref(all);
    }
    cv_buf_free(ops);
    return e;
}

static cv_err q_put(cv_sink *s, const cv_sink_row *rows, int n, uint64_t position) {
    q_sink *q = (q_sink *)s;
    if (q->rc) return cv_rchunks_put(q->rc, rows, n, position);
    char now[48];
    cv_sink_now_iso(now);
    cv_err e = CV_OK;
    /* rows that need what is stored (payload-only updates, kept columns) and were not read */
    const char ***miss = calloc((size_t)n + 1, sizeof *miss);
    CV_ASSERT(miss);
    int nm = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i].vec && !rows[i].keep) continue;
        cv_buf id = {0};
        point_id(q, rows[i].key, NULL, &id);
        if (!json_object_get(q->stored, id.p)) miss[nm++] = (const char **)rows[i].key;
        free(id.p);
    }
    if (nm) e = retrieve(q, (const char *const *const *)miss, nm);
    free(miss);
    cv_buf ops = {0};
    int nops = 0, nbad = 0;
    const char ***bad = calloc((size_t)n + 1, sizeof *bad);
    CV_ASSERT(bad);
    for (int i = 0; !e && i < n; i++) {
        const cv_sink_row *r = &rows[i];
        cv_buf id = {0}, js = {0};
        point_id(q, r->key, &js, &id);
        json_t *stored = json_object_get(q->stored, id.p);
        char *kt = cv_sink_key_text(&q->t, r->key);
        json_t *p = cv_sink_point_payload(&q->t, r, kt, stored, position, now);
        char *ptext = p ? cv_sink_point_text(p) : NULL;
        json_decref(p);
        if (!ptext) { /* this row alone: a dead letter, its stale point deleted */
            cv_sink_dead_note(s, q->st, kt, CV_SINK_BAD_PAYLOAD);
            bad[nbad++] = (const char **)r->key;
        } else if (r->vec) {
            if (q->npend) cv_buf_put(&q->pend, ",", 1);
            cv_buf_printf(&q->pend, "{\"id\":%s,\"vector\":", js.p);
            cv_sink_vec_json(&q->pend, r->vec, q->t.dim);
            cv_buf_printf(&q->pend, ",\"payload\":%s}", ptext);
            if (++q->npend >= CV_QDRANT_BATCH) e = flush(q);
        } else if (stored) { /* payload only: the vector stays as stored */
            cv_buf_printf(&ops, "%s{\"overwrite_payload\":{\"payload\":%s,\"points\":[%s]}}",
                          nops++ ? "," : "", ptext, js.p);
        }
        free(ptext), free(id.p), free(js.p), free(kt);
        if (!e && nops && (nops >= CV_QDRANT_BATCH || i == n - 1)) {
            e = payload_ops(q, &ops);
            nops = 0;
        }
    }
    free(ops.p);
    if (!e && nbad) e = q_delete(s, (const char *const *const *)bad, nbad);
    free(bad);
    CV_ASSERT(!q->pend.oom);
    return e;
}

/* ---- chunked tables (chunks_remote.h) ---- */

static void rc_id(const cv_sink *s, const char *const *key, int j, cv_buf *js, cv_buf *str) {
    cv_qdrant_chunk_id(&((const q_sink *)s)->t, key, j, js, str);
}

static cv_err rc_get(cv_sink *s, const char *ids, int n, json_t *out) {
    q_sink *q = (q_sink *)s;
    (void)n;
    cv_buf body = {0}, path = {0};
    cv_buf_printf(&body, "{\"ids\":%s,\"with_payload\":true,\"with_vector\":true}", ids);
    cv_buf_printf(&path, "%s/points", q->cpath);
    json_t *r = NULL;
    cv_err e = cv_http_call(q->http, "POST", path.p, body.p, body.len, 0, NULL, &r);
    free(path.p);
    size_t k;
    json_t *pt;
    json_array_foreach(json_object_get(r, "result"), k, pt) {
        json_t *pl = json_object_get(pt, "payload");
        const char *tab = json_string_value(json_object_get(json_object_get(pl, "cdcvec"), "table"));
        char id[48];
        id_text(json_object_get(pt, "id"), id);
        if (tab && !strcmp(tab, q->tname))
            json_object_set_new(
                out, id, json_pack("{s:O,s:O}", "payload", pl, "vector", json_object_get(pt, "vector")));
    }
    json_decref(r);
    return e;
}

static cv_err rc_upsert(cv_sink *s, const char *id_js, const char *vec_js, const char *payload) {
    q_sink *q = (q_sink *)s;
    if (q->npend) cv_buf_put(&q->pend, ",", 1);
    cv_buf_printf(&q->pend, "{\"id\":%s,\"vector\":%s,\"payload\":%s}", id_js, vec_js, payload);
    return ++q->npend >= CV_QDRANT_BATCH ? flush(q) : CV_OK;
}

static cv_err rc_del(cv_sink *s, const char *ids, int n) {
    q_sink *q = (q_sink *)s;
    (void)n;
    cv_err e = flush(q);
    cv_buf body = {0}, path = {0};
    cv_buf_printf(
        &body, "{\"filter\":{\"must\":[{\"has_id\":%s},{\"key\":\"cdcvec.table\",\"match\":{\"value\":", ids);
    cv_json_string(&body, q->tname, strlen(q->tname));
    cv_buf_puts(&body, "}}]}}");
    cv_buf_printf(&path, "%s/points/delete?wait=true", q->cpath);
    if (!e)
        e = cv_http_submit(q->http, "POST", path.p, body.p, body.len, NULL, NULL);
    else
        free(body.p);
    free(path.p);
    cv_err w = cv_http_wait(q->http);
    return e ? e : w;
}

static cv_err rc_wait(cv_sink *s) { return settle((q_sink *)s); }

static const cv_rchunks_io RC_IO = {rc_id, rc_get, rc_upsert, rc_del, rc_wait, 0};

static cv_err q_chunk_hashes(cv_sink *s, const char *const *key, uint8_t (**hash)[32], int *m) {
    q_sink *q = (q_sink *)s;
    return q->rc ? cv_rchunks_hashes(q->rc, key, hash, m) : CV_ERR_UNSUPPORTED;
}

static cv_err q_chunks_set(cv_sink *s, const char *const *key, int n, const int *from, const long *off,
                           const long *len, const uint8_t *text_hash) {
    q_sink *q = (q_sink *)s;
    return q->rc ? cv_rchunks_set(q->rc, key, n, from, off, len, text_hash) : CV_ERR_UNSUPPORTED;
}

static cv_err q_dead_put(cv_sink *s, const cv_sink_dead *d, int n, uint64_t position) {
    (void)position;
    for (int i = 0; i < n; i++)
        cv_rstate_dead_add(((q_sink *)s)->st, d[i].key, d[i].reason);
    return CV_OK;
}

static cv_err q_commit(cv_sink *s, uint64_t position) {
    q_sink *q = (q_sink *)s;
    cv_err e = settle(q);
    if (!e && q->rc && !(e = cv_rchunks_tail(q->rc))) e = settle(q); /* chunk 0 last (chunks_remote.h) */
    if (!e) e = cv_rstate_commit(s, q->st, position);
    json_object_clear(q->stored);
    if (q->rc) cv_rchunks_reset(q->rc);
    return e;
}

static void q_rollback(cv_sink *s) {
    q_sink *q = (q_sink *)s;
    cv_http_wait(q->http); /* what was sent stays: the replay converges */
    cv_buf_free(&q->pend);
    q->npend = 0;
    json_object_clear(q->stored);
    cv_rstate_reset(q->st);
    if (q->rc) cv_rchunks_reset(q->rc);
}

static cv_err q_state(cv_sink *s, uint64_t *pos, int *done, uint64_t *bpos) {
    return cv_rstate_get(s, ((q_sink *)s)->st, pos, done, bpos);
}
static cv_err q_meta_set(cv_sink *s, const cv_sink_meta *m) {
    return cv_rstate_meta_set(s, ((q_sink *)s)->st, m);
}

static cv_err q_backfill_mark(cv_sink *s, uint64_t p, int done) {
    q_sink *q = (q_sink *)s;
    cv_err e = settle(q);
    /* points an interrupted earlier backfill left (written below p, and not since) */
    if (!e && done && p) e = delete_filter(q, p);
    if (!e) e = cv_rstate_backfill(s, q->st, p, done);
    return e;
}

/* A payload index for each filtered field not given one yet by this sink (Qdrant: "filtering
 * without a payload index is slow, and refused in strict mode"; creating one that exists is a
 * no-op there). */
static cv_err index_fields(q_sink *q, const cv_sink_filter *f) {
    cv_err e = CV_OK;
    if (!q->indexed) q->indexed = json_object();
    for (int i = 0; !e && f && i < f->n; i++) {
        if (json_object_get(q->indexed, f->c[i].field)) continue;
        cv_buf body = {0}, path = {0};
        cv_buf_puts(&body, "{\"field_name\":");
        cv_json_string(&body, f->c[i].field, strlen(f->c[i].field));
        cv_buf_printf(&body, ",\"field_schema\":\"%s\"}", cv_sink_filter_qdrant_schema(&f->c[i]));
        cv_buf_printf(&path, "%s/index?wait=true", q->cpath);
        e = cv_http_call(q->http, "PUT", path.p, body.p, body.len, 0, NULL, NULL);
        if (!e) {
            json_object_set_new(q->indexed, f->c[i].field, json_true());
            cv_info("event=payload_index_created store=qdrant collection=%s field=%s schema=%s", q->coll,
                    f->c[i].field, cv_sink_filter_qdrant_schema(&f->c[i]));
        }
        free(path.p); /* the body is the call's */
    }
    return e;
}

/* One query: the nearest points (grouped: the nearest point of each of the nearest keys,
 * Qdrant's points/query/groups by cdcvec.key, one hit per group) as a JSON array of points. */
static cv_err query(q_sink *q, const float *v, int limit, const cv_sink_filter *f, int grouped,
                    json_t **pts) {
    cv_buf body = {0}, path = {0};
    cv_buf_puts(&body, "{\"query\":");
    cv_sink_vec_json(&body, v, q->t.dim);
    if (grouped) cv_buf_puts(&body, ",\"group_by\":\"cdcvec.key\",\"group_size\":1");
    cv_buf_printf(&body,
                  ",\"limit\":%d,\"with_payload\":true,\"filter\":{\"must\":[{\"key\":\"cdcvec.table\","
                  "\"match\":{\"value\":",
                  limit);
    cv_json_string(&body, q->tname, strlen(q->tname));
    cv_buf_puts(&body, "}}");
    cv_sink_filter_qdrant(f, &body);
    cv_buf_puts(&body, "]}}");
    cv_buf_printf(&path, "%s/points/query%s", q->cpath, grouped ? "/groups" : "");
    json_t *r = NULL;
    cv_err e = cv_http_call(q->http, "POST", path.p, body.p, body.len, 0, NULL, &r);
    free(path.p);
    json_t *res = json_object_get(r, "result");
    if (!grouped) {
        *pts = json_incref(json_object_get(res, "points"));
    } else {
        *pts = json_array();
        size_t i;
        json_t *g;
        json_array_foreach(json_object_get(res, "groups"), i, g) {
            json_t *hit = json_array_get(json_object_get(g, "hits"), 0);
            if (hit) json_array_append(*pts, hit);
        }
    }
    if (!*pts) *pts = json_array();
    json_decref(r);
    return e;
}

/* Search by row groups on cdcvec.key: a keyword index for it (once per sink). */
static cv_err index_key(q_sink *q) {
    cv_sink_cond kc = {.field = "cdcvec.key", .kind = CV_FV_STR};
    cv_sink_filter kf = {.n = 1, .c = &kc};
    return index_fields(q, &kf);
}

static cv_err q_search(cv_sink *s, const float *v, int limit, const cv_sink_filter *f, cv_sink_hit_cb cb,
                       void *arg) {
    q_sink *q = (q_sink *)s;
    cv_err e = index_fields(q, f);
    json_t *pts = NULL;
    if (!e && q->grouped) e = index_key(q);
    if (!e) e = query(q, v, limit, f, q->grouped, &pts);
    size_t i;
    json_t *pt;
    cv_sink_passage ps;
    json_array_foreach(pts, i, pt) { /* chunks: search by row from now on */
        if (e || q->grouped || !cv_rchunks_passage(json_object_get(pt, "payload"), &ps)) continue;
        cv_info(
            "event=search_by_row store=qdrant collection=%s note=\"the table holds chunks: one hit per row\"",
            q->coll);
        q->grouped = 1;
        json_decref(pts), pts = NULL;
        if (!(e = index_key(q))) e = query(q, v, limit, f, 1, &pts);
        break;
    }
    json_array_foreach(pts, i, pt) {
        if (e) break;
        json_t *pl = json_object_get(pt, "payload");
        const char *key = json_string_value(json_object_get(json_object_get(pl, "cdcvec"), "key"));
        char *pub = cv_sink_public_payload(&q->t, pl);
        double score = 0;
        cv_jnum_number(json_object_get(pt, "score"), &score);
        cb(arg, (int)i + 1, score, key ? key : "", pub, cv_rchunks_passage(pl, &ps) ? &ps : NULL);
        free(pub);
    }
    json_decref(pts);
    return e;
}

/* verify: the stored hash and public payload of keys (retrieve into a map of its own). */
static cv_err q_fetch(cv_sink *s, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32],
                      char **payload) {
    q_sink *q = (q_sink *)s;
    cv_err e = settle(q);
    json_t *keep = q->stored;
    if (q->rc) cv_rchunks_reset(q->rc); /* verify: what the last page read goes */
    q->stored = json_object();
    if (!e) e = retrieve(q, keys, n);
    for (int i = 0; !e && i < n; i++) {
        cv_buf id = {0};
        point_id(q, keys[i], NULL, &id);
        json_t *pl = json_object_get(q->stored, id.p);
        found[i] = pl != NULL;
        if (pl && !cv_sink_stored_hash(pl, hash[i])) memset(hash[i], 0, 32);
        if (pl) payload[i] = cv_sink_public_payload(&q->t, pl);
        free(id.p);
    }
    json_decref(q->stored);
    q->stored = keep;
    return e;
}

/* verify: one page of this table's points (scroll by id, filtered on cdcvec.table); the cursor
 * is the next page's offset as JSON. */
static cv_err q_scan(cv_sink *s, cv_buf *cursor, int limit, cv_sink_key_cb cb, void *arg, int *more) {
    q_sink *q = (q_sink *)s;
    cv_buf body = {0}, path = {0};
    cv_buf_puts(&body, "{\"filter\":{\"must\":[{\"key\":\"cdcvec.table\",\"match\":{\"value\":");
    cv_json_string(&body, q->tname, strlen(q->tname));
    cv_buf_printf(&body, "}}]},\"limit\":%d,\"with_payload\":true,\"with_vector\":false", limit);
    if (cursor->len) cv_buf_printf(&body, ",\"offset\":%s", cursor->p);
    cv_buf_puts(&body, "}");
    cv_buf_printf(&path, "%s/points/scroll", q->cpath);
    json_t *r = NULL;
    cv_err e = cv_http_call(q->http, "POST", path.p, body.p, body.len, 0, NULL, &r);
    free(path.p);
    json_t *res = json_object_get(r, "result"), *pt;
    size_t k;
    json_array_foreach(json_object_get(res, "points"), k, pt) {
        const char *kt = json_string_value(
            json_object_get(json_object_get(json_object_get(pt, "payload"), "cdcvec"), "key"));
        if (kt) cb(arg, kt);
    }
    json_t *next = json_object_get(res, "next_page_offset");
    *more = !e && next && !json_is_null(next);
    cursor->len = 0;
    if (*more) {
        char *t = json_dumps(next, JSON_ENCODE_ANY | JSON_COMPACT);
        cv_buf_puts(cursor, t ? t : "null");
        free(t);
    }
    json_decref(r);
    return e;
}

/* The exact count of the table's points, chunks past 0 left out: its rows (sink.h). */
static cv_err q_count(cv_sink *s, double *rows) {
    q_sink *q = (q_sink *)s;
    cv_buf body = {0}, path = {0};
    cv_buf_puts(&body, "{\"filter\":{\"must\":[{\"key\":\"cdcvec.table\",\"match\":{\"value\":");
    cv_json_string(&body, q->tname, strlen(q->tname));
    cv_buf_puts(&body,
                "}}],\"must_not\":[{\"key\":\"cdcvec.chunk\",\"range\":{\"gte\":1}}]},\"exact\":true}");
    cv_buf_printf(&path, "%s/points/count", q->cpath);
    json_t *r = NULL;
    cv_err e = cv_http_call(q->http, "POST", path.p, body.p, body.len, 0, NULL, &r);
    free(path.p);
    json_t *n = json_object_get(json_object_get(r, "result"), "count");
    if (!e && !json_is_integer(n)) e = CV_ERR_FORMAT;
    if (!e) *rows = (double)json_integer_value(n);
    json_decref(r);
    return e;
}

/* The Qdrant store's row in the table of stores (sink_impl.h). */
const cv_sink_ops cv_sink_qdrant_ops = {"qdrant",   q_open,     q_close,         q_state,      q_hashes,
                                        q_begin,    q_delete,   q_put,           q_dead_put,   q_commit,
                                        q_rollback, q_meta_set, q_backfill_mark, q_search,     q_state_key,
                                        q_fetch,    q_scan,     q_chunk_hashes,  q_chunks_set, q_count};
