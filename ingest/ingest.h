/* ingest.h: change data capture from PostgreSQL into a vector sink.
 *
 * cv_sync_run keeps the sink in step with one table: on first start it creates the
 * publication and the replication slot (exporting a snapshot), embeds the existing rows
 * through that snapshot, then streams pgoutput changes from the slot's consistent point.
 * Delivery rule (docs/ARCHITECTURE.md): the flush position confirmed to PostgreSQL is the
 * end LSN of the last transaction whose vectors the sink has committed, and the sink stores
 * that LSN in the same transaction as the vectors. A crash anywhere replays from the slot
 * and converges; texts whose hash is unchanged are never embedded again. */
#ifndef CV_INGEST_H
#define CV_INGEST_H

#include <signal.h>

#include "../common/cv_err.h"
#include "../models/minilm.h"

typedef struct cv_sync_opts {
    const char *source;             /* libpq connection string or URI of the source database */
    const char *table;              /* schema.table (schema defaults to public) */
    const char *text_column;        /* column embedded (default "description") */
    const char *template_;          /* or a template like "{name}: {description}" (overrides text_column) */
    const char *sink;               /* pgvector database, qdrant://host:port/COLLECTION or upstash://
                                       (sink/sink.h); NULL or "" = the source database */
    const char *ns;                 /* Upstash namespace; NULL or "" = the table's name */
    const char *embed;              /* nng URL of a remote `cdcvec serve`; NULL or "" = in-process model */
    const char *slot, *publication; /* default cdcvec_<schema>_<table> */
    long batch_rows;                /* changes per sink transaction (at transaction boundaries) */
    double batch_ms;                /* longest a committed change waits for its batch */
    const char *http;               /* host:port for /metrics and /healthz; NULL or "" = none */
    const char *model_dir;
    cv_device device;
    int threads;
    int resnapshot;      /* drop the slot and the sink state, then backfill again */
    int force;           /* backfill: re-embed even when the text hash is unchanged */
    const char *after;   /* backfill: resume after this primary key (the progress line's key text) */
    int search;          /* only searching: the text column is not needed */
    long max_text_bytes; /* with --embed: longer texts become dead letters, never sent */
    int on_error_stop;   /* 1: a change that cannot be applied stops the sync (exit 1) instead of
                            going to cdcvec.dead_letters */
} cv_sync_opts;

/* Runs until *stop becomes nonzero (then finishes the batch in hand, acknowledges, returns
 * 0) or a fatal error (returns 1 after logging what and how to fix it). Lost connections to
 * the source or the sink are retried with backoff. */
int cv_sync_run(const cv_sync_opts *o, volatile sig_atomic_t *stop);

/* Re-embeds the table on demand, in primary-key order, with a progress line; rows whose
 * text hash is unchanged are skipped unless o->force. Returns an exit status. */
int cv_backfill_run(const cv_sync_opts *o, volatile sig_atomic_t *stop);

/* Embeds query and prints the nearest rows: rank, similarity, key and payload. */
int cv_search_run(const cv_sync_opts *o, const char *query, int limit);

#endif
