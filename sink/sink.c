/* sink.c: one interface over several stores (sink.h): picks the store from the sink string
 * and dispatches each call through its table of operations (sink_impl.h). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "../common/cv_jnum.h"
#include "sink_impl.h"

static _Thread_local const char *open_kind, *open_fix;

/* The store a sink string names. */
static const cv_sink_ops *ops_for(const char *url) {
    if (url && (!strncmp(url, "qdrant://", 9) || !strncmp(url, "qdrants://", 10))) return &cv_sink_qdrant_ops;
    if (url && !strncmp(url, "upstash://", 10)) return &cv_sink_upstash_ops;
    return &cv_sink_pgvector_ops;
}

const char *cv_sink_kind(const char *url) { return ops_for(url)->name; }

const char *cv_sink_intern(const char *s) {
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static char **v;
    static int n, cap;
    if (!s) return NULL;
    pthread_mutex_lock(&mu);
    const char *r = NULL;
    for (int i = 0; i < n && !r; i++)
        if (!strcmp(v[i], s)) r = v[i];
    if (!r) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            v = realloc(v, sizeof *v * (size_t)cap);
            CV_ASSERT(v);
        }
        r = v[n++] = strdup(s);
        CV_ASSERT(r);
    }
    pthread_mutex_unlock(&mu);
    return r;
}

void cv_sink_fault(cv_sink *s, const char *kind, const char *fix) {
    s->kind = kind;
    s->fix = cv_sink_intern(fix);
}

void cv_sink_open_failed(const char *kind, const char *fix) {
    open_kind = kind;
    open_fix = cv_sink_intern(fix);
}

cv_err cv_sink_open(const char *conninfo, const cv_sink_table *t, cv_sink **out) {
    *out = NULL;
    open_kind = "connection", open_fix = NULL;
    cv_err e = ops_for(conninfo)->open(conninfo, t, out);
    if (e && *out) { /* an open that kept its handle on failure: report through the thread */
        open_kind = (*out)->kind, open_fix = (*out)->fix;
        cv_sink_close(*out);
        *out = NULL;
    }
    return e;
}

void cv_sink_close(cv_sink *s) {
    if (s) s->ops->close(s);
}

void cv_sink_last_fault(const cv_sink *s, const char **kind, const char **fix) {
    *kind = s ? (s->kind ? s->kind : "connection") : (open_kind ? open_kind : "connection");
    *fix = s ? s->fix : open_fix;
}

int cv_sink_batch_rows(const cv_sink *s) { return s && s->batch_rows > 0 ? s->batch_rows : 512; }

void cv_sink_stats(const cv_sink *s, long *requests, long *retries) {
    *requests = s ? s->requests : 0;
    *retries = s ? s->retries : 0;
}

cv_err cv_sink_state(cv_sink *s, uint64_t *pos, int *done, uint64_t *bpos) {
    return s->ops->state(s, pos, done, bpos);
}

cv_err cv_sink_hashes(cv_sink *s, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32]) {
    return s->ops->hashes(s, keys, n, found, hash);
}

cv_err cv_sink_begin(cv_sink *s, int truncate) { return s->ops->begin(s, truncate); }
cv_err cv_sink_chunk_hashes(cv_sink *s, const char *const *key, uint8_t (**hash)[32], int *m) {
    *hash = NULL, *m = 0;
    return s->ops->chunk_hashes ? s->ops->chunk_hashes(s, key, hash, m) : CV_ERR_UNSUPPORTED;
}
cv_err cv_sink_chunks_set(cv_sink *s, const char *const *key, int n, const int *from, const long *off,
                          const long *len, const uint8_t *text_hash) {
    return s->ops->chunks_set ? s->ops->chunks_set(s, key, n, from, off, len, text_hash) : CV_ERR_UNSUPPORTED;
}

cv_err cv_sink_delete(cv_sink *s, const char *const *const *keys, int n) { return s->ops->del(s, keys, n); }

cv_err cv_sink_put(cv_sink *s, const cv_sink_row *rows, int n, uint64_t position) {
    return s->ops->put(s, rows, n, position);
}

cv_err cv_sink_dead_put(cv_sink *s, const cv_sink_dead *d, int n, uint64_t position) {
    for (int i = 0; s->dead_cb && i < n; i++)
        s->dead_cb(s->dead_arg, d[i].key, d[i].reason);
    return s->ops->dead_put(s, d, n, position);
}

void cv_sink_on_dead(cv_sink *s, cv_sink_dead_cb cb, void *arg) { s->dead_cb = cb, s->dead_arg = arg; }

char *cv_sink_payload_stored(const cv_sink *s, const char *payload) {
    json_t *j = cv_jnum_loads(payload ? payload : "{}", 0, NULL);
    char *t = !j                                ? NULL
              : s->ops == &cv_sink_pgvector_ops ? strdup(payload ? payload : "{}")
                                                : cv_sink_point_text(j);
    json_decref(j);
    return t;
}

cv_err cv_sink_commit(cv_sink *s, uint64_t position) { return s->ops->commit(s, position); }

void cv_sink_rollback(cv_sink *s) { s->ops->rollback(s); }

cv_err cv_sink_meta_set(cv_sink *s, const cv_sink_meta *m) { return s->ops->meta_set(s, m); }

void cv_sink_meta_free(cv_sink_meta *m) {
    free(m->layout), free(m->text_source), free(m->model), free(m->model_revision);
    memset(m, 0, sizeof *m);
}

void cv_sink_meta_peek_table(const char *url, const cv_sink_table *t, cv_sink_meta *m) {
    const cv_sink_ops *ops = ops_for(url);
    if (!ops->state_key) {
        cv_sink_meta_peek(url, t->stream, m);
        return;
    }
    memset(m, 0, sizeof *m);
    if (!t->state_conninfo) return;
    cv_buf key = {0};
    ops->state_key(url, t, &key);
    if (key.p) cv_sink_meta_peek(t->state_conninfo, key.p, m);
    free(key.p);
}

void cv_sink_store_id(const char *url, const cv_sink_table *t, cv_buf *out) {
    const cv_sink_ops *ops = ops_for(url);
    if (ops->state_key) { /* the state key without its stream: "<store>:<url>/<collection or namespace>" */
        cv_sink_table u = *t;
        u.stream = "";
        cv_buf key = {0};
        ops->state_key(url, &u, &key);
        cv_buf_puts(out, key.p ? key.p + (key.p[0] == '@') : ops->name);
        free(key.p);
        return;
    }
    cv_buf_puts(out, "pgvector:");
    if (!url || !*url) return; /* the source database */
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &err); /* the place, never the credentials */
    PQfreemem(err);
    if (!opts) {
        cv_buf_puts(out, "?");
        return;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && *o->val &&
            (!strcmp(o->keyword, "host") || !strcmp(o->keyword, "hostaddr") || !strcmp(o->keyword, "port") ||
             !strcmp(o->keyword, "dbname")))
            cv_buf_printf(out, "%s=%s;", o->keyword, o->val);
    PQconninfoFree(opts);
}

const char *cv_sink_dead_where(const char *url, const cv_sink_table *t, cv_buf *stream) {
    const cv_sink_ops *ops = ops_for(url);
    if (!ops->state_key) {
        cv_buf_puts(stream, t->stream);
        return url;
    }
    ops->state_key(url, t, stream);
    return t->state_conninfo;
}

cv_err cv_sink_backfill_mark(cv_sink *s, uint64_t p, int done) { return s->ops->backfill_mark(s, p, done); }

cv_err cv_sink_search(cv_sink *s, const float *q, int limit, cv_sink_hit_cb cb, void *arg) {
    return s->ops->search(s, q, limit, NULL, cb, arg);
}

cv_err cv_sink_search_filtered(cv_sink *s, const float *q, int limit, const cv_sink_filter *f,
                               cv_sink_hit_cb cb, void *arg) {
    return s->ops->search(s, q, limit, f && f->n ? f : NULL, cb, arg);
}

const char *cv_sink_fop_name(cv_fop op, int json) {
    static const char *const sql[] = {"=", ">", ">=", "<", "<="}, *const js[] = {"eq", "gt", "gte", "lt",
                                                                                 "lte"};
    return (unsigned)op < 5 ? (json ? js : sql)[op] : "?";
}

cv_err cv_sink_fetch(cv_sink *s, const char *const *const *keys, int n, int *found, uint8_t (*hash)[32],
                     char **payload) {
    for (int i = 0; i < n; i++)
        found[i] = 0, payload[i] = NULL;
    return n ? s->ops->fetch(s, keys, n, found, hash, payload) : CV_OK;
}

cv_err cv_sink_scan(cv_sink *s, cv_buf *cursor, int limit, cv_sink_key_cb cb, void *arg, int *more) {
    return s->ops->scan(s, cursor, limit, cb, arg, more);
}

cv_err cv_sink_count_estimate(cv_sink *s, double *rows) {
    *rows = 0;
    return s->ops->count ? s->ops->count(s, rows) : CV_ERR_UNSUPPORTED;
}
