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
#include "../server/server.h"
#include "outlet.h"

typedef struct cv_sync_opts {
    const char *source;      /* libpq connection string or URI of the source database */
    const char *table;       /* schema.table (schema defaults to public) */
    const char *text_column; /* column embedded (default "description") */
    const char *template_;   /* or a template like "{name}: {description}" (overrides text_column) */
    const char *sink;        /* pgvector database, qdrant://host:port/COLLECTION or upstash://
                                (sink/sink.h); NULL or "" = the source database */
    const char *ns;          /* Upstash namespace; NULL or "" = the table's name */
    int uuid_ids;            /* Qdrant: point ids from table + key, always (several tables per collection) */
    const char *embed;       /* nng URL of a remote `cdcvec serve`; NULL or "" = in-process model */
    const char *slot, *publication; /* default cdcvec_<schema>_<table> */
    long batch_rows;                /* changes per sink transaction (at transaction boundaries) */
    double batch_ms;                /* longest a committed change waits for its batch */
    const char *http;               /* host:port for HTTP (search page, embeddings); NULL or "" = none */
    const char *api_key;            /* HTTP API key (docs/CONFIG.md, Authentication); NULL = none */
    cv_http_opts http_opts;         /* HTTP limits; zeros = defaults */
    const char *model_dir;
    cv_device device;
    int threads;
    int resnapshot;          /* drop the slot and the sink state, then backfill again */
    int force;               /* backfill: re-embed even when the text hash is unchanged */
    const char *after;       /* backfill: resume after this primary key (the progress line's key text) */
    int search;              /* only searching: the text column is not needed */
    long max_text_bytes;     /* with --embed: longer texts become dead letters, never sent */
    int on_error_stop;       /* 1: a change that cannot be applied stops the sync (exit 1) instead of
                                going to cdcvec.dead_letters */
    int sink_writers;        /* pgvector: connections writing each batch in parallel (0: 1) */
    int index_memory_mb;     /* pgvector: the most maintenance_work_mem the HNSW build asks for (0: 1024) */
    int chunk_max_tokens;    /* > 0: texts stored as chunks (models/chunk.h; any store but Kafka, in-process
                                model);    0: one vector per row, longer texts counted as truncated */
    int chunk_overlap;       /* with chunk_max_tokens: word pieces repeated from the previous chunk */
    const cv_outlet *outlet; /* what the command adds: where batches go, its routes (outlet.h);
                                NULL: the apply stage, no routes */
    long wal_warn_mb;        /* the slot's retained WAL above which cdcvec warns and is not ready (0: 1024) */
    double ready_lag_s;      /* /readyz: 503 while the oldest unapplied commit is older (0: 60 s) */
    long search_queue_ms;    /* sync --http: a search beyond 16 at once waits this long for a slot (0: 503 at
                                once) */
    double broker_down_s;    /* Kafka stages: no broker this long is an error and not ready (0: 60 s) */
    const char *where;       /* a pipeline table's row filter (where:): only its rows that pass it, as a
                                PostgreSQL 15 publication row filter; NULL: every row */
    const char *index_suffix; /* cdcvec migrate: this table's shadow index ("__next", sink.h), its state
                                 row the stream's name + the suffix; NULL: the live index */
    int index_seed;           /* with index_suffix: the shadow starts as a copy of the live index (same
                                 model: only texts that change are embedded by its backfill) */
    const char *columns;      /* a pipeline table's column list (columns:), comma-joined: only those are
                                 published, read and kept in the payload; NULL: every column */
    const char *columns_at;   /* where columns: is written ("FILE:LINE:COL: tables[N].columns") */
    int pipeline;             /* from a pipeline file: the pipeline's slot (one per source database) and a
                                 state key per table (ingest/tables.c), whatever the number of tables */
} cv_sync_opts;

/* Runs until *stop becomes nonzero (then finishes the batch in hand, acknowledges, returns
 * 0) or a fatal error (returns 1 after logging what and how to fix it). Lost connections to
 * the source or the sink are retried with backoff. */
int cv_sync_run(const cv_sync_opts *o, volatile sig_atomic_t *stop);

/* The tables of a pipeline file, o[0..n), on one replication slot and one publication per
 * source database, in one process (ingest/tables.c): each table keeps its own position in its
 * store, the slot is confirmed at the smallest. reload (may be NULL): on SIGHUP, the file read
 * again into *o (malloc'd array, freed by the caller; its strings stay valid for the process)
 * and *n; 0 on success; hup: the count of SIGHUPs (cv_signal_on_reload). Returns an exit
 * status, as cv_sync_run. */
typedef int (*cv_sync_reload_fn)(void *arg, cv_sync_opts **o, int *n);
int cv_sync_run_tables(const cv_sync_opts *o, int n, cv_sync_reload_fn reload, void *reload_arg,
                       volatile sig_atomic_t *stop, volatile sig_atomic_t *hup);

/* cdcvec migrate (migrate.c): the tables o[which[0..nwhich)] of the pipeline o[0..n) (as cdcvec sync
 * would run it) each get a shadow index filled by the new model or text source while live changes reach both,
 * verified against a snapshot and switched in atomically; then the process stops (0). rollback: the old index
 * back (marked for a backfill by the next sync); drop_old: the old index dropped. Exit status: 0; 1 an
 * error or the shadow differed (no switch); 2 a usage error. */
typedef struct cv_migrate_opts {
    const char *to_model;    /* the new model folder, or NULL: the live one's */
    const char *to_template; /* the new template, or NULL: the live text source */
    int rollback, drop_old;
} cv_migrate_opts;
int cv_migrate_run(const cv_sync_opts *o, int n, const int *which, int nwhich, const cv_migrate_opts *m,
                   volatile sig_atomic_t *stop);

/* Re-embeds the table on demand, in primary-key order, with a progress line; rows whose
 * text hash is unchanged are skipped unless o->force. Returns an exit status. */
int cv_backfill_run(const cv_sync_opts *o, volatile sig_atomic_t *stop);

/* cdcvec verify: compares the source with the store (missing, stale, payload drift, orphans);
 * repair: fixes them through the apply stage; show: lines printed per kind of difference (0:
 * all). Exit status: 0 none, 3 found, 1 error (verify.c). */
int cv_verify_run(const cv_sync_opts *o, int repair, long show, volatile sig_atomic_t *stop);

/* cdcvec dead-letters list | retry | clear (dead_letters.c): the table's dead letters in its
 * store's state (key: only that key's, or NULL). Exit status: 0; 3: retry left some failing;
 * 1: an error. */
int cv_dead_letters_run(const cv_sync_opts *o, const char *action, const char *key,
                        volatile sig_atomic_t *stop);

#endif
