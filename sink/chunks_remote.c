/* chunks_remote.c: chunked tables in Qdrant and Upstash (chunks_remote.h). */
#define _POSIX_C_SOURCE 200809L
#include "chunks_remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_jnum.h"
#include "../common/cv_log.h"

struct cv_rchunks {
    cv_sink *s;
    const cv_sink_table *t;
    cv_rstate *st;
    const cv_rchunks_io *io;
    json_t *got;  /* id text -> {"payload", "vector"}: points read this batch */
    json_t *plan; /* key text -> {"n", "text_hash", "kept": [[i, from, off, len], ...]} (cv_rchunks_set) */
    json_t *tail; /* chunk 0's id text -> [id JSON, vector JSON, payload]: sent at the commit */
    json_t *top;  /* key text -> 1 + the highest chunk number found (CV_RCHUNKS_PROBE past chunk 0's count) */
    json_t
        *cleared; /* chunk 0's id text -> true: its text hash cleared this batch (sent, not yet waited for) */
    cv_buf dels;  /* ids to delete once the clearing is acknowledged: JSON, comma-separated */
    int ndels, pending; /* ids in dels; clearings sent and not waited for */
};

/* Chunk numbers read past what chunk 0 says, to find chunks an interrupted longer write left */
#define CV_RCHUNKS_PROBE 8

cv_rchunks *cv_rchunks_new(cv_sink *s, const cv_sink_table *t, cv_rstate *st, const cv_rchunks_io *io) {
    cv_rchunks *rc = calloc(1, sizeof *rc);
    CV_ASSERT(rc);
    *rc = (cv_rchunks){.s = s,
                       .t = t,
                       .st = st,
                       .io = io,
                       .got = json_object(),
                       .plan = json_object(),
                       .tail = json_object(),
                       .top = json_object(),
                       .cleared = json_object()};
    return rc;
}

void cv_rchunks_free(cv_rchunks *rc) {
    if (!rc) return;
    json_decref(rc->got), json_decref(rc->plan), json_decref(rc->tail), json_decref(rc->top);
    json_decref(rc->cleared);
    free(rc->dels.p);
    free(rc);
}

void cv_rchunks_reset(cv_rchunks *rc) {
    json_object_clear(rc->got), json_object_clear(rc->plan), json_object_clear(rc->tail);
    json_object_clear(rc->top), json_object_clear(rc->cleared);
    rc->dels.len = 0, rc->ndels = rc->pending = 0;
}

static json_t *cdcvec_of(json_t *payload) { return json_object_get(payload, "cdcvec"); }

/* How many chunks the stored chunk 0 says its text has (1: a point written without chunking). */
static int count_of(json_t *c0) {
    json_t *n = json_object_get(cdcvec_of(json_object_get(c0, "payload")), "chunks");
    return json_is_integer(n) && json_integer_value(n) > 0 ? (int)json_integer_value(n) : 1;
}

int cv_rchunks_passage(json_t *payload, cv_sink_passage *p) {
    json_t *c = cdcvec_of(payload), *n = json_object_get(c, "chunk");
    double o = 0, l = 0;
    if (!json_is_integer(n) || !cv_jnum_number(json_object_get(c, "char_off"), &o) ||
        !cv_jnum_number(json_object_get(c, "char_len"), &l))
        return 0;
    *p = (cv_sink_passage){(int)json_integer_value(n), (long)o, (long)l};
    return 1;
}

/* A stored point's vector as JSON text, each number as a float written back exactly (the store's
 * answer is read with numbers kept as their text, common/cv_jnum.h); NULL: none. */
static char *vec_text(cv_rchunks *rc, json_t *v) {
    if (!json_is_array(v) || (int)json_array_size(v) != rc->t->dim) return NULL;
    float *f = malloc(sizeof(float) * json_array_size(v));
    CV_ASSERT(f);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        double d = 0;
        cv_jnum_number(x, &d);
        f[i] = (float)d;
    }
    cv_buf b = {0};
    cv_sink_vec_json(&b, f, rc->t->dim);
    free(f);
    return b.p;
}

/* Reads the points of ids into rc->got, each vector kept as the JSON text it is written back
 * as ("vec": a few KB a chunk, not a JSON array of numbers kept as text). */
static cv_err get(cv_rchunks *rc, const char *ids, int n) {
    json_t *out = json_object(), *pt;
    cv_err e = rc->io->get(rc->s, ids, n, out);
    const char *id;
    json_object_foreach(out, id, pt) {
        char *v = vec_text(rc, json_object_get(pt, "vector"));
        json_object_set_new(rc->got, id,
                            json_pack("{s:O,s:s?}", "payload", json_object_get(pt, "payload"), "vec", v));
        free(v);
    }
    json_decref(out);
    return e;
}

/* A point's vector as JSON text (NULL: none); the caller frees. */
static char *vec_of(json_t *pt) {
    const char *v = json_string_value(json_object_get(pt, "vec"));
    return v ? strdup(v) : NULL;
}

/* Reads chunks [j0, j1) of key that this batch has not read yet. */
static cv_err load(cv_rchunks *rc, const char *const *key, int j0, int j1) {
    cv_buf ids = {0};
    int n = 0;
    cv_err e = CV_OK;
    for (int j = j0; j < j1; j++) {
        cv_buf js = {0}, str = {0};
        rc->io->id(rc->s, key, j, &js, &str);
        if (!json_object_get(rc->got, str.p)) {
            cv_buf_puts(&ids, n++ ? "," : "[");
            cv_buf_put(&ids, js.p, js.len);
        }
        free(js.p), free(str.p);
        if (n == 1000 || (j == j1 - 1 && n)) {
            cv_buf_puts(&ids, "]");
            if (!e) e = get(rc, ids.p, n);
            ids.len = 0, n = 0;
        }
    }
    free(ids.p);
    return e;
}

/* The point read for chunk j of key (NULL: none stored). */
static json_t *got_of(cv_rchunks *rc, const char *const *key, int j) {
    cv_buf str = {0};
    rc->io->id(rc->s, key, j, NULL, &str);
    json_t *p = json_object_get(rc->got, str.p);
    free(str.p);
    return p;
}

/* Chunk 0 of keys[0..n) not read yet, in one request per 1,000. */
static cv_err load0(cv_rchunks *rc, const char *const *const *keys, int n) {
    cv_buf ids = {0};
    int m = 0;
    cv_err e = CV_OK;
    for (int i = 0; i < n; i++) {
        cv_buf js = {0}, str = {0};
        rc->io->id(rc->s, keys[i], 0, &js, &str);
        if (!json_object_get(rc->got, str.p)) {
            cv_buf_puts(&ids, m++ ? "," : "[");
            cv_buf_put(&ids, js.p, js.len);
        }
        free(js.p), free(str.p);
        if (m == 1000 || (i == n - 1 && m)) {
            cv_buf_puts(&ids, "]");
            if (!e) e = get(rc, ids.p, m);
            ids.len = 0, m = 0;
        }
    }
    free(ids.p);
    return e;
}

/* Clears the text hash of key's stored chunk 0 (zeros: no text has them), its vector and the rest
 * kept; sent, acknowledged at the next barrier. Once a batch. */
static cv_err clear0(cv_rchunks *rc, const char *const *key) {
    cv_buf js = {0}, str = {0};
    rc->io->id(rc->s, key, 0, &js, &str);
    json_t *c0 = json_object_get(rc->got, str.p);
    const char *v = json_string_value(json_object_get(c0, "vec"));
    cv_err e = CV_OK;
    if (c0 && v && !json_object_get(rc->cleared, str.p)) {
        json_t *p = json_deep_copy(json_object_get(c0, "payload"));
        json_object_set_new(json_object_get(p, "cdcvec"), "text_hash",
                            json_string("0000000000000000000000000000000000000000000000000000000000000000"));
        char *text = cv_sink_point_text(p);
        json_decref(p);
        if (text) e = rc->io->upsert(rc->s, js.p, v, text);
        free(text);
        json_object_set_new(rc->cleared, str.p, json_true());
        rc->pending++;
    }
    free(js.p), free(str.p);
    return e;
}

/* Before any other write: the clearings sent are acknowledged, then the deletes queued behind
 * them are sent (and acknowledged). */
static cv_err barrier(cv_rchunks *rc) {
    cv_err e = CV_OK;
    if (rc->pending) e = rc->io->wait(rc->s);
    rc->pending = 0;
    if (!e && rc->ndels) {
        cv_buf_puts(&rc->dels, "]");
        e = rc->io->del(rc->s, rc->dels.p, rc->ndels);
    }
    rc->dels.len = 0, rc->ndels = 0;
    return e;
}

/* Queues the deletes of chunks [j0, j1) of key (sent by barrier). */
static cv_err del_later(cv_rchunks *rc, const char *const *key, int j0, int j1) {
    cv_err e = CV_OK;
    for (; !e && j0 < j1; j0++) {
        cv_buf str = {0};
        cv_buf_puts(&rc->dels, rc->ndels++ ? "," : "[");
        rc->io->id(rc->s, key, j0, &rc->dels, &str);
        json_object_del(rc->got, str.p);
        free(str.p);
        if (rc->ndels == 1000) e = barrier(rc);
    }
    return e;
}

/* Deletes chunks [j0, j1) of key (waited for). */
static cv_err del_range(cv_rchunks *rc, const char *const *key, int j0, int j1) {
    cv_err e = CV_OK;
    while (!e && j0 < j1) {
        cv_buf ids = {0};
        int n = 0;
        for (; j0 < j1 && n < 1000; j0++, n++) {
            cv_buf str = {0};
            cv_buf_puts(&ids, n ? "," : "[");
            rc->io->id(rc->s, key, j0, &ids, &str);
            json_object_del(rc->got, str.p);
            free(str.p);
        }
        cv_buf_puts(&ids, "]");
        e = rc->io->del(rc->s, ids.p, n);
        free(ids.p);
    }
    return e;
}

/* 1 + the highest chunk number stored for key (0: none): chunks up to chunk 0's count and
 * CV_RCHUNKS_PROBE past it are read (once a batch). */
static cv_err top_of(cv_rchunks *rc, const char *const *key, int *top) {
    char *kt = cv_sink_key_text(rc->t, key);
    json_t *known = json_object_get(rc->top, kt);
    cv_err e = CV_OK;
    if (known) {
        *top = (int)json_integer_value(known);
    } else {
        e = load(rc, key, 0, 1);
        json_t *c0 = e ? NULL : got_of(rc, key, 0);
        int n = c0 ? count_of(c0) : 0;
        if (!e) e = load(rc, key, 1, n + CV_RCHUNKS_PROBE);
        *top = 0;
        for (int j = 0; !e && j < n + CV_RCHUNKS_PROBE; j++)
            if (got_of(rc, key, j)) *top = j + 1;
        if (!e) json_object_set_new(rc->top, kt, json_integer(*top));
    }
    free(kt);
    return e;
}

cv_err cv_rchunks_hashes(cv_rchunks *rc, const char *const *key, uint8_t (**hash)[32], int *m) {
    *hash = NULL, *m = 0;
    int n = 0;
    cv_err e = top_of(rc, key, &n);
    if (e || !n) return e;
    *hash = calloc((size_t)n, 32);
    CV_ASSERT(*hash);
    *m = n;
    for (int j = 0; j < n; j++) {
        json_t *c = cdcvec_of(json_object_get(got_of(rc, key, j), "payload"));
        const char *hx = json_string_value(json_object_get(c, "chunk_hash"));
        json_t *num = json_object_get(c, "chunk");
        if (!hx || strlen(hx) != 64 || !json_is_integer(num) || json_integer_value(num) != j) continue;
        for (int b = 0; b < 32; b++) {
            unsigned v;
            sscanf(hx + 2 * b, "%2x", &v);
            (*hash)[j][b] = (uint8_t)v;
        }
    }
    return CV_OK;
}

cv_err cv_rchunks_set(cv_rchunks *rc, const char *const *key, int n, const int *from, const long *off,
                      const long *len, const uint8_t *text_hash) {
    int old = 0;
    cv_err e = top_of(rc, key, &old);
    char hx[65];
    for (int b = 0; b < 32; b++)
        snprintf(hx + 2 * b, 3, "%02x", text_hash[b]);
    json_t *kept = json_array();
    for (int i = 0; !e && i < n; i++) {
        if (from[i] < 0) continue;
        if (!got_of(rc, key, from[i])) e = load(rc, key, from[i], from[i] + 1); /* its vector, kept */
        json_array_append_new(kept,
                              json_pack("[i,i,I,I]", i, from[i], (json_int_t)off[i], (json_int_t)len[i]));
    }
    char *kt = cv_sink_key_text(rc->t, key);
    json_object_set_new(rc->plan, kt, json_pack("{s:i,s:s,s:o}", "n", n, "text_hash", hx, "kept", kept));
    free(kt);
    if (!e) e = clear0(rc, key); /* a replay never takes the half-written row for unchanged */
    if (!e && old > n) e = del_later(rc, key, n, old); /* past the new end: gone before chunk 0 tells it */
    kt = cv_sink_key_text(rc->t, key);
    if (!e) json_object_set_new(rc->top, kt, json_integer(n));
    free(kt);
    return e;
}

/* The key's values as a JSON array of strings. */
static json_t *key_json(cv_rchunks *rc, const char *const *key) {
    json_t *a = json_array();
    for (int k = 0; k < rc->t->nkeys; k++)
        json_array_append_new(a, json_string(key[k]));
    return a;
}

/* One chunk's point: the row's payload (stored: chunk 0's, for kept columns and, without
 * r->hash, the text hash), the chunk's fields; chunk 0 held for the commit. 1: the row cannot be
 * stored (a dead letter noted). */
static int point(cv_rchunks *rc, const cv_sink_row *r, const char *kt, int j, const char *vec_js,
                 const char *chunk_hx, long off, long len, int nchunks, json_t *stored, uint64_t position,
                 const char *now, cv_err *e) {
    json_t *p = cv_sink_point_payload(rc->t, r, kt, stored, position, now);
    if (!p) {
        cv_sink_dead_note(rc->s, rc->st, kt, CV_SINK_BAD_PAYLOAD);
        return 1;
    }
    json_t *c = cdcvec_of(p);
    json_object_set_new(c, "chunk", json_integer(j));
    json_object_set_new(c, "chunk_hash", json_string(chunk_hx ? chunk_hx : ""));
    json_object_set_new(c, "char_off", json_integer(off));
    json_object_set_new(c, "char_len", json_integer(len));
    json_object_set_new(c, "chunks", json_integer(nchunks));
    char *text = cv_sink_point_text(p);
    json_decref(p);
    if (!text) {
        cv_sink_dead_note(rc->s, rc->st, kt, CV_SINK_BAD_PAYLOAD);
        return 1;
    }
    if (rc->io->max_payload && strlen(text) > rc->io->max_payload) {
        cv_buf why = {0};
        cv_buf_printf(
            &why,
            "its metadata is %zu bytes with the chunk's fields, over the store's limit of %zu bytes per "
            "vector: shorten the row's columns (or embed from a table with fewer of them)",
            strlen(text), rc->io->max_payload);
        cv_sink_dead_note(rc->s, rc->st, kt, why.p);
        free(why.p), free(text);
        return 1;
    }
    cv_buf js = {0}, str = {0};
    rc->io->id(rc->s, r->key, j, &js, &str);
    if (j == 0)
        json_object_set_new(
            rc->tail, str.p,
            json_pack("[s,s,s,i,o,s]", js.p, vec_js, text, nchunks, key_json(rc, r->key), kt));
    else if (!*e)
        *e = rc->io->upsert(rc->s, js.p, vec_js, text);
    free(js.p), free(str.p), free(text);
    return 0;
}

cv_err cv_rchunks_put(cv_rchunks *rc, const cv_sink_row *rows, int n, uint64_t position) {
    char now[48];
    cv_sink_now_iso(now);
    const char ***need = calloc((size_t)n + 1, sizeof *need), ***bad = calloc((size_t)n + 1, sizeof *bad);
    CV_ASSERT(need && bad);
    int nn = 0, nb = 0;
    for (int i = 0; i < n; i++)
        if (!rows[i].vec || rows[i].keep) need[nn++] = (const char **)rows[i].key;
    cv_err e = barrier(rc);
    if (!e && nn) e = load0(rc, (const char *const *const *)need, nn);
    free(need);
    for (int i = 0; !e && i < n; i++) {
        const cv_sink_row *r = &rows[i];
        char *kt = cv_sink_key_text(rc->t, r->key);
        json_t *c0 = got_of(rc, r->key, 0), *plan = json_object_get(rc->plan, kt);
        json_t *stored = json_object_get(c0, "payload");
        int refused = 0;
        if (r->vec) { /* an embedded chunk */
            cv_buf v = {0};
            char hx[65] = "";
            for (int b = 0; r->chunk_hash && b < 32; b++)
                snprintf(hx + 2 * b, 3, "%02x", r->chunk_hash[b]);
            cv_sink_vec_json(&v, r->vec, rc->t->dim);
            refused = point(rc, r, kt, r->chunk, v.p, hx, r->char_off, r->char_len,
                            r->nchunks > 0 ? r->nchunks : 1, stored, position, now, &e);
            free(v.p);
        } else if (plan) { /* a changed text's kept chunks: their stored vectors at their new numbers */
            uint8_t th[32];
            const char *hx = json_string_value(json_object_get(plan, "text_hash"));
            for (int b = 0; b < 32; b++) {
                unsigned x;
                sscanf(hx + 2 * b, "%2x", &x);
                th[b] = (uint8_t)x;
            }
            cv_sink_row r2 = *r;
            r2.hash = th;
            int nc = (int)json_integer_value(json_object_get(plan, "n"));
            size_t k;
            json_t *kp;
            json_array_foreach(json_object_get(plan, "kept"), k, kp) {
                json_t *src = got_of(rc, r->key, (int)json_integer_value(json_array_get(kp, 1)));
                char *v = vec_of(src);
                const char *ch = json_string_value(
                    json_object_get(cdcvec_of(json_object_get(src, "payload")), "chunk_hash"));
                if (v && !refused)
                    refused =
                        point(rc, &r2, kt, (int)json_integer_value(json_array_get(kp, 0)), v, ch,
                              (long)json_integer_value(json_array_get(kp, 2)),
                              (long)json_integer_value(json_array_get(kp, 3)), nc, stored, position, now, &e);
                free(v);
            }
        } else if (c0) { /* the same text: every chunk takes the new payload, its vector kept */
            int nc = count_of(c0);
            e = load(rc, r->key, 1, nc);
            for (int j = 0; !e && !refused && j < nc; j++) {
                json_t *src = got_of(rc, r->key, j), *c = cdcvec_of(json_object_get(src, "payload"));
                char *v = vec_of(src);
                double o = 0, l = 0;
                cv_jnum_number(json_object_get(c, "char_off"), &o);
                cv_jnum_number(json_object_get(c, "char_len"), &l);
                if (v)
                    refused = point(rc, r, kt, j, v, json_string_value(json_object_get(c, "chunk_hash")),
                                    (long)o, (long)l, nc, json_object_get(src, "payload"), position, now, &e);
                free(v);
            }
        }
        if (refused) bad[nb++] = (const char **)r->key; /* its stale chunks go */
        free(kt);
    }
    if (!e && nb) e = cv_rchunks_delete(rc, (const char *const *const *)bad, nb);
    free(bad);
    return e;
}

cv_err cv_rchunks_delete(cv_rchunks *rc, const char *const *const *keys, int n) {
    cv_err e = barrier(rc);
    if (!e) e = load0(rc, keys, n);
    for (int i = 0; !e && i < n; i++) /* chunk 0 cleared first: a replay never finds the row whole */
        if (got_of(rc, keys[i], 0) && count_of(got_of(rc, keys[i], 0)) > 1) e = clear0(rc, keys[i]);
    if (!e) e = barrier(rc);
    cv_buf ids = {0}, ids0 = {0};
    int m = 0, m0 = 0;
    for (int i = 0; !e && i < n; i++) { /* chunks 1.. next: chunk 0 says which exist */
        json_t *c0 = got_of(rc, keys[i], 0);
        for (int j = 1; c0 && j < count_of(c0); j++) {
            cv_buf_puts(&ids, m++ ? "," : "[");
            rc->io->id(rc->s, keys[i], j, &ids, NULL);
            if (m == 1000) {
                cv_buf_puts(&ids, "]");
                e = rc->io->del(rc->s, ids.p, m);
                ids.len = 0, m = 0;
            }
        }
    }
    if (!e && m) {
        cv_buf_puts(&ids, "]");
        e = rc->io->del(rc->s, ids.p, m);
    }
    for (int i = 0; i < n; i++) {
        cv_buf str = {0};
        cv_buf_puts(&ids0, m0++ ? "," : "[");
        rc->io->id(rc->s, keys[i], 0, &ids0, &str);
        json_object_del(rc->tail, str.p), json_object_del(rc->got, str.p);
        char *kt = cv_sink_key_text(rc->t, keys[i]);
        json_object_del(rc->plan, kt), json_object_del(rc->top, kt);
        free(kt), free(str.p);
        if (m0 == 1000 || i == n - 1) {
            cv_buf_puts(&ids0, "]");
            if (!e) e = rc->io->del(rc->s, ids0.p, m0);
            ids0.len = 0, m0 = 0;
        }
    }
    free(ids.p), free(ids0.p);
    return e;
}

/* Before chunk 0 tells a key's count: chunks at or past it that an interrupted earlier write of
 * a longer text left (chunk 0 then told another text, or was not there) are found, CV_RCHUNKS_PROBE
 * numbers at a time while some are, and deleted. Keys whose chunks past the end this batch
 * already read and deleted (cv_rchunks_set) are skipped. */
static cv_err sweep(cv_rchunks *rc) {
    json_t *todo = json_array(), *v; /* [[key values], from, keytext] */
    const char *id;
    json_object_foreach(rc->tail, id, v) {
        int n = (int)json_integer_value(json_array_get(v, 3));
        json_t *top = json_object_get(rc->top, json_string_value(json_array_get(v, 5)));
        if (!top || json_integer_value(top) > n)
            json_array_append_new(todo, json_pack("[O,i]", json_array_get(v, 4), n));
    }
    cv_err e = CV_OK;
    for (int round = 0; !e && json_array_size(todo) && round < 64; round++) {
        cv_buf ids = {0};
        int m = 0;
        size_t i;
        json_t *t;
        const char *kv[rc->t->nkeys + 1];
        json_array_foreach(todo, i, t) { /* read the next window of each key */
            for (int k = 0; k < rc->t->nkeys; k++)
                kv[k] = json_string_value(json_array_get(json_array_get(t, 0), (size_t)k));
            int from = (int)json_integer_value(json_array_get(t, 1));
            for (int j = from; j < from + CV_RCHUNKS_PROBE; j++) {
                cv_buf str = {0};
                rc->io->id(rc->s, kv, j, NULL, &str);
                int known = json_object_get(rc->got, str.p) != NULL;
                free(str.p);
                if (known) continue;
                cv_buf_puts(&ids, m++ ? "," : "[");
                rc->io->id(rc->s, kv, j, &ids, NULL);
                if (m == 1000) {
                    cv_buf_puts(&ids, "]");
                    if (!e) e = get(rc, ids.p, m);
                    ids.len = 0, m = 0;
                }
            }
        }
        if (m) {
            cv_buf_puts(&ids, "]");
            if (!e) e = get(rc, ids.p, m);
        }
        free(ids.p);
        json_t *next = json_array();
        json_array_foreach(todo, i, t) { /* keys with chunks there: deleted, and the next window */
            for (int k = 0; k < rc->t->nkeys; k++)
                kv[k] = json_string_value(json_array_get(json_array_get(t, 0), (size_t)k));
            int from = (int)json_integer_value(json_array_get(t, 1)), last = -1;
            for (int j = from; j < from + CV_RCHUNKS_PROBE; j++)
                if (got_of(rc, kv, j)) last = j;
            if (e || last < 0) continue;
            e = del_range(rc, kv, from, last + 1);
            json_array_append_new(next, json_pack("[O,i]", json_array_get(t, 0), from + CV_RCHUNKS_PROBE));
        }
        json_decref(todo);
        todo = next;
    }
    json_decref(todo);
    return e;
}

cv_err cv_rchunks_tail(cv_rchunks *rc) {
    const char *id;
    json_t *v;
    cv_err e = barrier(rc);
    if (!e) e = sweep(rc);
    json_object_foreach(rc->tail, id, v) {
        if (!e)
            e = rc->io->upsert(rc->s, json_string_value(json_array_get(v, 0)),
                               json_string_value(json_array_get(v, 1)),
                               json_string_value(json_array_get(v, 2)));
    }
    json_object_clear(rc->tail);
    return e;
}
