/* outlet.h: where a source session's batches go, and what the command adds around it.
 *
 * The replication stream and the session (ingest/) know nothing of Kafka, the search page or
 * /wait: the room above that composes a command hands them an outlet, and they call its hooks.
 *   sync:    search/ (cv_search_outlet): batches go to the apply stage (deliver NULL); the
 *            search page and /wait are its routes; the table described points the page at
 *            its store; a position reached moves /wait.
 *   capture: kafka/ (capture.c): batches go to a Kafka topic; no model, no apply stage; a
 *            position reached is a position mark on the topic.
 * The Kafka stages that read topics (worker, sink) run on the same runtime without a session:
 * the sink stage's outlet adds /wait and loads no model; the worker's is none.
 * Commands of ingest/ alone (backfill, verify, dead-letters) run with no outlet: the apply
 * stage, no routes. Every hook may be NULL. */
#ifndef CV_OUTLET_H
#define CV_OUTLET_H

#include <stdint.h>

#include "../common/cv_err.h"
#include "../server/server.h"

typedef struct cv_sync cv_sync;
struct cv_change;
struct cv_rowval;

typedef struct cv_outlet {
    void *arg;          /* the composer's own (capture: its options) */
    const char *store;  /* the destination in slot names and the writer lock's key (capture:
                           "kafka:<topic>"); NULL: the store (--sink) */
    const char *writer; /* who writes there, in the lock's messages; NULL: "writer of this store" */
    int no_model;       /* the runtime loads no model (and has no embedding client) */
    int no_apply;       /* the runtime opens no apply stage (its deliver takes every batch) */
    int each_table;     /* a pipeline's every table keeps its own outlet (capture: a topic each); else
                           only the first table's state carries it (the search page, /wait) */
    int nroutes;        /* HTTP routes it adds, filled by routes before the server starts */
    void (*routes)(cv_sync *s, cv_http_route *r);
    cv_err (*open)(cv_sync *s);    /* the runtime is up (its metrics registry too) */
    void (*stop)(cv_sync *s);      /* the runtime closes: first, before the server drains */
    void (*close)(cv_sync *s);     /* last, once the HTTP server is gone */
    void (*described)(cv_sync *s); /* a session described its table (s->t), before streaming */
    /* a row's values as decoded, while they are at hand (stream and backfill): the outlet may
     * keep its own encoding of the change in c->encoded. kind: "insert", "update", "delete";
     * old: the old row image, or NULL */
    void (*row)(cv_sync *s, const struct cv_rowval *v, const struct cv_rowval *old, const char *kind,
                struct cv_change *c);
    /* a batch (chg consumed, as cv_apply_batch takes it); its failure classified where it
     * happened (CV_ERR_TIMEOUT: retriable). NULL: the apply stage */
    cv_err (*deliver)(cv_sync *s, struct cv_change *chg, int n, int truncate, uint64_t position,
                      double commit_unix);
    /* everything up to position is delivered (0: nothing new, the stream is idle) */
    void (*reached)(cv_sync *s, uint64_t position);
} cv_outlet;

#endif
