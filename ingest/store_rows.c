/* store_rows.c: cdcvec_table_rows_store (store_rows.h). */
#define _POSIX_C_SOURCE 200809L
#include "store_rows.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/cv_log.h"
#include "../common/cv_signal.h"
#include "../common/cv_time.h"

#define ROWS_INTERVAL 10.0 /* seconds between counts, as cdcvec_table_rows_source */
#define ROWS_RETRY_S  2.0  /* how long one count's request is retried (an unreachable store) */

/* A table's description, strings owned. */
typedef struct desc {
    char *name, *url;
    cv_sink_table t;
    char **own; /* every string of t */
    int nown;
    cv_metric *m;
} desc;

static void desc_free(desc *d);

/* The thread's sink of a table and the description it was opened with (the sink borrows its
 * strings). */
typedef struct opened {
    cv_sink *sink;
    desc d;
    int gen;
} opened;

static void opened_close(opened *o) {
    cv_sink_close(o->sink);
    desc_free(&o->d);
    memset(o, 0, sizeof *o);
}

typedef struct entry {
    desc d;      /* under mu */
    int gen;     /* bumped by each set */
    int dropped; /* left the pipeline: the thread closes its sink and forgets it */
    opened o;    /* the thread's (taken out while it counts) */
    int failed_logged;
} entry;

struct cv_store_rows {
    pthread_mutex_t mu;
    pthread_t th;
    int stop;
    entry *e;
    int n;
};

static const char *own(desc *d, const char *v) {
    if (!v) return NULL;
    d->own[d->nown] = strdup(v);
    CV_ASSERT(d->own[d->nown]);
    return d->own[d->nown++];
}

static void desc_free(desc *d) {
    for (int i = 0; i < d->nown; i++)
        free(d->own[i]);
    free(d->own);
    free((void *)d->t.key_names), free((void *)d->t.key_types);
    free(d->name), free(d->url);
    memset(d, 0, sizeof *d);
}

static void desc_copy(desc *d, const char *name, const char *url, const cv_sink_table *t, cv_metric *m) {
    memset(d, 0, sizeof *d);
    d->name = strdup(name), d->url = strdup(url ? url : "");
    d->own = calloc((size_t)(2 * t->nkeys + 8), sizeof(char *));
    const char **names = calloc((size_t)t->nkeys + 1, sizeof(char *)),
               **types = calloc((size_t)t->nkeys + 1, sizeof(char *));
    CV_ASSERT(d->name && d->url && d->own && names && types);
    for (int k = 0; k < t->nkeys; k++)
        names[k] = own(d, t->key_names[k]), types[k] = own(d, t->key_types[k]);
    d->t = (cv_sink_table){.schema = own(d, t->schema),
                           .table = own(d, t->table),
                           .nkeys = t->nkeys,
                           .key_names = names,
                           .key_types = types,
                           .dim = t->dim,
                           .model_id = own(d, t->model_id),
                           .model_revision = own(d, t->model_revision),
                           .text_source = own(d, t->text_source),
                           .stream = own(d, t->stream),
                           .ns = own(d, t->ns),
                           .uuid_ids = t->uuid_ids,
                           .chunked = t->chunked,
                           .retry_s = ROWS_RETRY_S, /* no state database: it only reads */
                           .role = "monitor"};      /* not the sink's writes (tests/sync_lib.sh) */
    d->m = m;
}

/* Counts one table (the thread): opens its sink if it has none or its description changed. */
static void count_one(cv_store_rows *r, int i) {
    pthread_mutex_lock(&r->mu);
    entry *e = &r->e[i];
    opened o = e->o; /* the thread's while it counts (set and drop touch only d, gen, dropped) */
    memset(&e->o, 0, sizeof e->o);
    desc d = {0};
    int gen = e->gen, reopen = !o.sink || o.gen != gen;
    if (reopen) desc_copy(&d, e->d.name, e->d.url, &e->d.t, e->d.m);
    cv_metric *m = e->d.m;
    char *name = strdup(e->d.name);
    CV_ASSERT(name);
    pthread_mutex_unlock(&r->mu);
    cv_err err = CV_OK;
    if (reopen) {
        opened_close(&o);
        o.d = d, o.gen = gen;
        err = cv_sink_open(o.d.url, &o.d.t, &o.sink);
    }
    double rows = 0;
    if (!err) err = cv_sink_count_estimate(o.sink, &rows);
    if (!err) cv_metric_set(m, rows);
    if (err) opened_close(&o); /* reopened next time */
    pthread_mutex_lock(&r->mu);
    e = &r->e[i]; /* the array may have grown meanwhile */
    if (err && !e->failed_logged++)
        cv_warn("event=store_rows_failed table=%s error=\"%s\" note=\"cdcvec_table_rows_store is not updated "
                "while the store does not answer; retried every %.0f s\"",
                name, cv_strerror(err), ROWS_INTERVAL);
    if (!err) e->failed_logged = 0;
    e->o = o;
    pthread_mutex_unlock(&r->mu);
    free(name);
}

static void *run(void *arg) {
    cv_store_rows *r = arg;
    double next = 0;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        int stop = r->stop, n = r->n;
        for (int i = 0; i < r->n; i++) /* those that left: their sinks closed */
            if (r->e[i].dropped && r->e[i].o.sink) opened_close(&r->e[i].o);
        pthread_mutex_unlock(&r->mu);
        if (stop || cv_stopping()) break;
        if (cv_now() >= next) {
            next = cv_now() + ROWS_INTERVAL;
            for (int i = 0; i < n && !cv_stopping(); i++) {
                pthread_mutex_lock(&r->mu);
                int skip = r->e[i].dropped || r->stop;
                pthread_mutex_unlock(&r->mu);
                if (!skip) count_one(r, i);
            }
        }
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

cv_store_rows *cv_store_rows_start(void) {
    cv_store_rows *r = calloc(1, sizeof *r);
    CV_ASSERT(r);
    pthread_mutex_init(&r->mu, NULL);
    if (pthread_create(&r->th, NULL, run, r) != 0) {
        cv_error("event=store_rows_failed error=\"cannot start the thread counting the stores' rows\"");
        pthread_mutex_destroy(&r->mu);
        free(r);
        return NULL;
    }
    return r;
}

void cv_store_rows_set(cv_store_rows *r, const char *name, const char *url, const cv_sink_table *t,
                       cv_metric *m) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    entry *e = NULL;
    for (int i = 0; i < r->n && !e; i++)
        if (!strcmp(r->e[i].d.name, name)) e = &r->e[i];
    if (!e) {
        entry *ne = realloc(r->e, sizeof *r->e * (size_t)(r->n + 1));
        CV_ASSERT(ne);
        r->e = ne;
        e = &r->e[r->n++];
        memset(e, 0, sizeof *e);
    } else {
        desc_free(&e->d);
    }
    desc_copy(&e->d, name, url, t, m);
    e->gen++;
    e->dropped = 0;
    pthread_mutex_unlock(&r->mu);
}

void cv_store_rows_drop(cv_store_rows *r, const char *name) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->e[i].d.name, name)) r->e[i].dropped = 1;
    pthread_mutex_unlock(&r->mu);
}

void cv_store_rows_stop(cv_store_rows *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->th, NULL);
    for (int i = 0; i < r->n; i++) {
        opened_close(&r->e[i].o);
        desc_free(&r->e[i].d);
    }
    free(r->e);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
