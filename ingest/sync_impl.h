/* sync_impl.h: the state of a source session and the runtime around it, shared by the files
 * of ingest/ and read by the rooms above that compose commands on it (kafka/, search/), which
 * reach the stream only through the outlet (outlet.h).
 *
 * Two lifetimes: the runtime (model, embedding server with its HTTP port, client, metrics,
 * the apply stage) is opened once per process and stays up across session retries, so
 * counters never go back and /metrics answers throughout; a session (source connection, the
 * table as described now, the sink) is opened per attempt. */
#ifndef CV_SYNC_IMPL_H
#define CV_SYNC_IMPL_H

#include <libpq-fe.h>
#include <pthread.h>

#include "../apply/apply.h"
#include "../common/cv_metrics.h"
#include "../pg/cv_pg.h"
#include "../common/cv_time.h"
#include "../models/model.h"
#include "../runtime/loop.h"
#include "../server/client.h"
#include "../server/server.h"
#include "../sink/sink.h"
#include "ingest.h"
#include "source.h"
#include "wlock.h"

#define CV_ERR_STAGES 3 /* source, sink, embed */

/* The runtime: the whole process, opened once (cv_sync_runtime_open) and kept across session
 * retries, so counters never go back and /metrics answers throughout. It starts what the
 * outlet asks for (outlet.h: no model, no apply stage). */
typedef struct cv_runtime {
    cv_minilm *model; /* in-process embedding (NULL with --embed, or no model) */
    cv_server *server;
    cv_client *client; /* NULL: no model (capture, the Kafka sink stage) */
    cv_metrics *reg;   /* the server's registry, or our own */
    int own_reg;
    /* the model's facts (models/model.h): the in-process model's; with --embed those CV_MODEL_ID
     * declares (the embed protocol carries neither id nor revision: a cdcvec serve runs it), no
     * revision */
    cv_model_facts mf;
    int dim;         /* mf.dim */
    cv_apply *apply; /* NULL: the outlet takes every batch (capture) or none comes (worker) */
    cv_metric *m_changes_ins, *m_changes_upd, *m_changes_del, *m_changes_trunc, *m_lag, *m_retries;
    struct {
        const char *stage, *kind;
        cv_metric *m;
    } err_series[64];
    int n_err_series;
    cv_http_route routes[4];  /* the outlet's (sync: /, GET and POST /search, /wait) */
    struct cv_health *health; /* readiness and lag (health.c) */
} cv_runtime;

typedef struct cv_tables cv_tables;

/* A stage on the runtime: its options, the runtime, the source session of the current attempt,
 * and the outlet's state. In a pipeline of several tables (tables.c) each table has its own
 * (its options and session); the first table's owns the runtime, the others borrow it. */
typedef struct cv_sync {
    cv_sync_opts o;
    cv_runtime rt;
    cv_buf bf_done; /* the last key whose page cv_sync_backfill applied (key text; empty: none) */
    /* the backfill in progress (backfill.c): rows done, the table's estimated rows, the ETA in
     * seconds (cdcvec migrate's progress metrics read them) */
    volatile long bf_rows, bf_total;
    volatile double bf_eta_s;
    /* ---- the search page (search/page.c, the sync's outlet): its own sink connection,
     * reopened when the session changes; /wait's queue ---- */
    struct cv_waitq *waitq; /* read-your-writes (wait.c), NULL without the outlet */
    pthread_mutex_t search_mu;
    pthread_cond_t search_idle;
    cv_sink *search_sink;
    cv_sink_table search_table;     /* strings owned (search_own) */
    const char *search_text_source; /* the table's text_source (owned in search_own), or NULL */
    PGconn *search_src;             /* the search page's source connection (matched texts), or NULL */
    char **search_own;
    int n_search_own;
    struct cv_search_fields *search_fields; /* the payload fields a search may filter (search/filter.h) */
    const char *sink_conninfo;
    int searching;      /* search threads, running or waiting for a slot */
    int search_running; /* of which running (at most 16; search/page.c) */
    /* ---- session ---- */
    char *slot, *publication, *stream;
    cv_table t;
    PGconn *src; /* ordinary connection to the source */
    cv_sink *sink;
    cv_pg_fault fault; /* why the session ended */
    char why[512];     /* and what happened, for the retry line ("" : the last error logged) */
    cv_wlock wlock;    /* one writer per store table (wlock.c) */
    int in_session;
    /* what the session start found, for the stream to act on */
    int resnapshot;          /* the table was dropped and recreated: rebuild from a new snapshot */
    int refresh;             /* columns or the embedded text changed: refresh every row (hash-checked) */
    int restart_now;         /* the session ended to pick up a schema change: reconnect at once */
    int pub_added;           /* this session added the table to the publication (it was not there) */
    uint64_t slot_confirmed; /* the slot's confirmed_flush_lsn when the session looked (0: none) */
    cv_tables *tables;       /* the pipeline the table is one of (tables.c), or NULL: alone */
    /* ---- the outlet's own state (outlet.h; capture: its Kafka producer) ---- */
    void *outlet_state;
    volatile sig_atomic_t *stop; /* the process's stop flag (cv_sync_run), or NULL */
} cv_sync;

/* ---- many tables on one slot (sync.c streams them, tables.c keeps the set) ---- */
typedef struct cv_chg_list {
    cv_change *v;
    int n, cap;
} cv_chg_list;

enum {
    CV_PIPE_STREAMING = 0, /* its changes are applied as they come */
    CV_PIPE_HELD,          /* its store failed: its changes are let go, the slot held at applied, and
                              its store tried again at retry_at; when it answers the session restarts */
    CV_PIPE_JOINING        /* being backfilled (a thread, through a temporary slot's snapshot) */
};

/* One table of the pipeline on the shared stream. */
typedef struct cv_pipe {
    cv_sync *s; /* the table's own options and session */
    int state;  /* CV_PIPE_* */
    int open;   /* its session is open */
    int failures;
    double retry_at; /* HELD: when to try its store again */
    /* JOINING: the backfill thread; joined: 1 done, -1 failed (join_err); HELD: its store's probe */
    pthread_t th;
    int th_started;
    volatile int joined;
    int join_done; /* joined: waits for the session to start again (once no other table joins) */
    volatile sig_atomic_t join_stop; /* set when the session ends (or the process stops) */
    cv_err join_err;
    volatile int probed; /* HELD: its store's probe (the same thread): 1 answers, -1 probe_err */
    cv_err probe_err;
    cv_apply *apply;  /* its own apply stage (a twin of the first table's), or NULL: the first table's */
    cv_err flush_err; /* a delivery on a thread of its own (sync.c) */
    /* the stream's, per session */
    int *relmap, rel_ncols;
    cv_chg_list txn, pend;
    int txn_truncate, pend_truncate;
    uint64_t pend_end;
    uint64_t applied;   /* everything of this table up to here is in its store */
    uint64_t skip_upto; /* its transactions ending here or before are in its store already */
    double pend_since, pend_commit_unix;
    long n_ins, n_upd, n_del, n_trunc;
    int gone_logged;
    /* a migration's shadow (migrate.c): the model it embeds with, served in this process */
    cv_minilm *model;
    cv_server *server;
    cv_client *client;
    cv_metrics *reg; /* its apply stage's counters (the live table's are the ones exported) */
} cv_pipe;

/* The pipeline's tables (tables.c). p[0]'s cv_sync owns the runtime (model, server, search page,
 * /wait) and is the one the outlet's hooks get. */
struct cv_tables {
    cv_pipe *p;
    int n, cap;
    int many;        /* a pipeline file: one slot per source database, a state key per table */
    cv_apply *apply; /* the shared apply stage (p[0]'s runtime's) */
    cv_sync_reload_fn reload;
    void *reload_arg;
    uint64_t confirmed;         /* the slot's position the stream reported last */
    volatile sig_atomic_t *hup; /* SIGHUPs seen (NULL: none asked for) */
    int hup_done;
    /* cdcvec migrate (migrate.c): NULL, or the migration of one table to a shadow index. stop_at: the
     * stream applies every transaction ending there or before, then pauses (paused = 1) at the
     * first one past it (or a keepalive past it), for the migration's checkpoint */
    struct cv_migration *mig;
    uint64_t stop_at;
    int paused;
};

/* cv_sync_run_tables with a migration (migrate.c; NULL: none). */
int cv_sync_run_pipeline(const cv_sync_opts *o, int n, cv_sync_reload_fn reload, void *reload_arg,
                         struct cv_migration *mig, volatile sig_atomic_t *stop, volatile sig_atomic_t *hup);
/* migrate.c: its metrics (cdcvec_migrate_*), on the runtime's registry. */
void cv_migrate_metrics(cv_tables *T, cv_metrics *reg);
/* migrate.c: a shadow pipe's own model, server, client and apply stage (in place of the twin). */
cv_err cv_migrate_shadow_open(cv_tables *T, cv_pipe *p);
void cv_migrate_shadow_close(cv_pipe *p);
/* Between transactions (cv_tables_tick): once the shadow streams beside the live index, a
 * checkpoint is taken (a temporary slot's exported snapshot; T->stop_at its position). */
cv_err cv_migrate_tick(cv_tables *T);
/* The stream paused at T->stop_at, everything delivered, the replication connection closed: the
 * shadow is verified against the source as of the checkpoint and, with no difference, switched
 * in (the process then stops: *stop set). CV_ERR_TIMEOUT with restart_now: not now (a table held),
 * the stream starts again. */
cv_err cv_migrate_checkpoint(cv_tables *T, volatile sig_atomic_t *stop);

/* verify.c: the store's rows whose key the source, read through snap (a transaction in a
 * snapshot), does not have are deleted at pos (a backfill into a store that held rows already:
 * rows deleted while it was not followed); *deleted: how many. */
cv_err cv_verify_sweep(cv_sync *s, PGconn *snap, uint64_t pos, volatile sig_atomic_t *stop, long *deleted);
/* verify.c: the source (s->src, in whatever snapshot its transaction has) against s's store,
 * without repair; differences printed (show per kind), counted into *total, rows seen into
 * *source_rows / *store_rows. */
cv_err cv_verify_session(cv_sync *s, long show, volatile sig_atomic_t *stop, long *total, long *source_rows,
                         long *store_rows);

/* tables.c: the pipeline's session: every table's session opened (a store that does not
 * answer holds its table, not the others; one table alone: its error), and closed. A pipe's hold, its retry,
 * the reload on SIGHUP. */
int cv_tables_open(cv_tables *T, cv_sync *s0, const cv_sync_opts *o, int n);
void cv_tables_close(cv_tables *T);
cv_err cv_tables_session_open(cv_tables *T);
/* Then, on the replication connection: the slot for every open table, each table's position
 * (*start: where the stream starts), the joins started. */
cv_err cv_tables_slot(cv_tables *T, PGconn *repl, volatile sig_atomic_t *stop, uint64_t *start);
/* Starts pipe p's join: a thread backfills its table through a temporary slot's snapshot. */
cv_err cv_tables_join(cv_tables *T, cv_pipe *p);
void cv_tables_session_close(cv_tables *T);
/* pipe p's store failed with e (retriable): held (its pending changes let go, the slot kept at
 * its position), retried later; returns CV_OK, or e when the pipeline cannot go on without it
 * (one table alone). */
cv_err cv_tables_hold(cv_tables *T, cv_pipe *p, cv_err e);
/* What the stream loop asks between transactions: held tables whose store answers again, joined
 * tables, a reload. CV_ERR_TIMEOUT with restart_now set on p[0]: start a new session now. */
cv_err cv_tables_tick(cv_tables *T, volatile sig_atomic_t *stop);

/* Hands a batch to the outlet (outlet.h), or to the apply stage when it has no deliver (same
 * contract as cv_apply_batch: chg consumed); a failure comes back classified (CV_ERR_TIMEOUT:
 * retriable, cv_sync_batch_failed). */
cv_err cv_sync_deliver(cv_sync *s, cv_change *chg, int n, int truncate, uint64_t position, int force,
                       double commit_unix);

/* health.c: /readyz and the lag. open: with the runtime (registers cdcvec_ready); monitor: the
 * thread that reads the slot every second (replication: sync, capture) and watches the peers
 * registered with cv_health_peer_add (before the monitor starts); stop joins it; close
 * frees, once the HTTP server is gone. The stream reports what it does: streaming or not, a
 * store failure or success, a commit received but not applied (its commit time), everything
 * applied. cv_health_ready is the server's readiness hook (arg: the cv_sync); detail gets the
 * JSON body of /readyz. */
cv_err cv_health_open(cv_sync *s);
cv_err cv_health_monitor(cv_sync *s, int replication);
/* A peer the stage needs (a Kafka client's brokers): not ready while down_s(arg) passes
 * --broker-down-s; watch(arg, bound), if any, is called by the monitor every second. */
typedef struct cv_health_peer {
    const char *what, *stage; /* "Kafka broker", "capture" */
    double (*down_s)(void *arg);
    void (*watch)(void *arg, double bound_s);
    void *arg;
} cv_health_peer;
void cv_health_peer_add(cv_sync *s, const cv_health_peer *p);
void cv_health_stop(cv_sync *s);
void cv_health_close(cv_sync *s);
void cv_health_slot(cv_sync *s, const char *slot);
void cv_health_streaming(cv_sync *s, int on);
void cv_health_store(cv_sync *s, int ok);
void cv_health_unapplied(cv_sync *s, double commit_unix);
void cv_health_applied(cv_sync *s);
int cv_health_ready(void *arg, cv_buf *detail);
/* A pipeline's table (on: its session opened; 0: it left the pipeline): readiness and freshness
 * of its own (cdcvec_table_*{table}); the calls above then act on its entry. */
void cv_health_table(cv_sync *s, int on);
/* Everything of s's table up to pos is in its store (cdcvec_table_applied_lsn, _lag_bytes). */
void cv_health_position(cv_sync *s, uint64_t pos);

/* The runtime: model (or remote client), server with HTTP, metrics, apply stage. */
cv_err cv_sync_runtime_open(cv_sync *s, const cv_sync_opts *o);
void cv_sync_runtime_close(cv_sync *s);

/* A session: source connection, table description (+ the checks of a replication source,
 * and the publication, when replication), sink, and what changed since the last run. */
cv_err cv_sync_session_open(cv_sync *s, int replication);
void cv_sync_session_close(cv_sync *s);

/* The session's slot, publication and stream names (s->o; after s->src is connected), as a
 * session sets them: for commands that need the names without a session (dead-letters). */
void cv_sync_stream_names(cv_sync *s);

/* dead_letters.c: the dead letters of the session's table and store, as cdcvec.dead_letters
 * keeps them. open: connects (s->o, s->stream and s->sink_conninfo set) and remembers the
 * newest entry, so that clear_keys removes only entries written before it (a repair's own
 * new dead letters stay). clear_keys: the entries of these key texts; *cleared: how many. */
typedef struct cv_dl {
    PGconn *db;   /* NULL: no state database (nothing kept) */
    char *stream; /* cdcvec.dead_letters.stream */
    char *maxid;  /* the newest entry's id when opened ("0": none) */
    int exists;   /* the table exists */
} cv_dl;
cv_err cv_dl_open(cv_sync *s, cv_dl *d);
cv_err cv_dl_clear_keys(cv_sync *s, cv_dl *d, char *const *keytexts, int n, long *cleared);
void cv_dl_close(cv_dl *d);

/* One writer per store table (wlock.c), for a command that writes beside no sync (verify
 * --repair, dead-letters retry): takes the lock a sync or Kafka sink stage of the table into
 * the same store holds (released by cv_sync_session_close). CV_ERR_BUSY: one runs (holder says
 * which process); other errors are logged. role names the lock's own connection, if any. */
cv_err cv_sync_writer_lock(cv_sync *s, const char *role, cv_buf *holder);
/* cv_sync_writer_lock for command cmd ("verify --repair", "backfill", "dead-letters retry";
 * also the lock's role): a held lock is logged as event=<event>_stopped with the holder, that a
 * writer beside it would race it, and the fix (stop it, run cmd, start it again; more: extra,
 * or NULL). */
cv_err cv_sync_writer_lock_for(cv_sync *s, const char *event, const char *cmd, const char *extra);

/* The retry line's error text (sync_retry, sink_retry, worker_retry): what happened, never a
 * bare "timed out": s->why (set where the session ended: table_busy, slot_busy, a broker
 * error, the store's fault), else the last PostgreSQL error this thread logged (a refused
 * connection, an administrator's termination), else a pointer to the line above. Into out. */
void cv_sync_retry_text(const cv_sync *s, cv_err e, char *out, size_t n);

/* Counts an error of a stage ("source", "sink", "embed") and kind, and remembers the fault. */
void cv_sync_error(cv_sync *s, const char *stage, const cv_pg_fault *f);

/* A failed cv_apply_batch (or sink step): counted by stage and kind, the fault remembered;
 * CV_ERR_TIMEOUT when retrying can help, else CV_ERR_UNSUPPORTED. */
cv_err cv_sync_batch_failed(cv_sync *s, cv_err e);

/* Embeds the table's rows through db's current transaction (snapshot), in key order,
 * recording position; progress on stderr (with the last key done, for --after). start_after:
 * NULL, or the progress line's key text. */
cv_err cv_sync_backfill(cv_sync *s, PGconn *db, uint64_t position, int force, const char *start_after,
                        volatile sig_atomic_t *stop, long *rows);

/* slot.c: ensures the session's slot on the replication connection repl, before
 * START_REPLICATION: an existing one is checked against the store's position (and rebuilt when
 * they disagree); a new one is created with an exported snapshot, through which the table is
 * backfilled. *applied: the position the stream starts after (everything up to it is in the
 * store). record_meta: the table's and the model's facts into the store's meta. */
cv_err cv_slot_ensure(cv_sync *s, PGconn *repl, volatile sig_atomic_t *stop, uint64_t *applied);
/* Backfills s's table through snapshot (exported at cp), then records the meta. */
cv_err cv_slot_backfill(cv_sync *s, uint64_t cp, const char *snapshot, volatile sig_atomic_t *stop);
/* What pg_replication_slots says of the session's slot (s->slot). */
typedef struct cv_slot_seen {
    int exists, lost, active;
    uint64_t confirmed; /* confirmed_flush_lsn */
    char holder[16];    /* the pid of the walsender streaming from it, "-" when none */
} cv_slot_seen;
/* Looks the slot up; refuses a slot of another database or program (slots are cluster-wide). */
cv_err cv_slot_look(cv_sync *s, cv_slot_seen *v);
/* Drops the slot to rebuild (--resnapshot, a recreated table, lost WAL, a backfill that had not
 * finished: done 0) unless another process streams from it; refuses a missing slot behind a
 * finished backfill at pos (changes after it may be lost). */
cv_err cv_slot_rebuild(cv_sync *s, cv_slot_seen *v, uint64_t pos, int done);
/* CREATE_REPLICATION_SLOT name [TEMPORARY] LOGICAL pgoutput EXPORT_SNAPSHOT on repl: *cp the
 * consistent point, *snapshot the exported snapshot's name (caller frees). */
cv_err cv_slot_create(cv_sync *s, PGconn *repl, const char *name, int temporary, uint64_t *cp,
                      char **snapshot);
/* A table joining a running pipeline: a temporary slot's exported snapshot, through which it is
 * backfilled; *at: the snapshot's position (its changes after it come from the pipeline's slot). */
cv_err cv_slot_join(cv_sync *s, volatile sig_atomic_t *stop, uint64_t *at);
cv_err cv_sync_record_meta(cv_sync *s);
/* A failure on the replication connection (r: its result, or NULL: the connection itself) at
 * step: classified, logged, counted; CV_ERR_TIMEOUT when retriable, else CV_ERR_UNSUPPORTED. */
cv_err cv_sync_repl_failed(cv_sync *s, PGconn *repl, PGresult *r, const char *step);

/* Reads texts for the apply stage from the session's source connection (cv_apply_fetch_fn). */
cv_err cv_sync_fetch(void *arg, cv_change **chg, int n);

#endif
