/* sync_impl.h: state shared by sync.c (streaming) and backfill.c (snapshot and on-demand
 * backfill, search). */
#ifndef CV_SYNC_IMPL_H
#define CV_SYNC_IMPL_H

#include <libpq-fe.h>
#include <pthread.h>

#include "../common/cv_metrics.h"
#include "../common/cv_time.h"
#include "../server/client.h"
#include "../server/server.h"
#include "../sink/sink.h"
#include "ingest.h"
#include "source.h"

typedef struct cv_sync {
    cv_sync_opts o;
    char slot[128], publication[128], stream[160];
    cv_table t;
    PGconn *src; /* ordinary connection to the source */
    cv_sink *sink;
    cv_minilm *model; /* in-process embedding (NULL with --embed) */
    cv_server *server;
    cv_client *client;
    cv_metrics *reg; /* the server's registry, or our own */
    int own_reg;
    int dim;
    cv_metric *m_changes_ins, *m_changes_upd, *m_changes_del, *m_changes_trunc;
    cv_metric *m_batches, *m_embedded, *m_skipped, *m_lag, *m_latency, *m_err_source, *m_err_sink,
        *m_err_embed;
    /* the search page (search_page.c) */
    cv_sink_table sink_table;
    const char *sink_conninfo;
    cv_http_route routes[2];
    pthread_mutex_t search_mu;
    pthread_cond_t search_idle;
    cv_sink *search_sink;
    int searching;
} cv_sync;

/* Fills s->routes with GET / (the page) and GET /search (JSON). */
void cv_search_routes(cv_sync *s);
/* Waits for searches in flight, closes their sink connection. */
void cv_search_close(cv_sync *s);

/* Opens the source connection, the model/server/client and the sink (everything but the
 * replication stream). replication: also check the server's settings and the role's
 * privilege, and create the publication. */
cv_err cv_sync_open(cv_sync *s, const cv_sync_opts *o, int replication);
void cv_sync_close(cv_sync *s);

/* Applies changes (in commit order) to the sink in one transaction recorded at position:
 * collapses them by key, re-embeds only texts whose hash changed, fetches texts the stream
 * could not give. truncate: clear the sink first. force: embed even unchanged texts.
 * commit_ts: when the last change committed (unix seconds; 0 = unknown) for the latency
 * histogram. The changes are consumed (freed). */
cv_err cv_sync_flush(cv_sync *s, cv_change *chg, int n, int truncate, uint64_t position, int force,
                     double commit_unix);

/* Embeds the table's rows through db's current transaction (snapshot), in key order,
 * recording position; progress on stderr (with the last key done, for --after). start_after:
 * NULL, or "v1,v2" to start after that primary key. */
cv_err cv_sync_backfill(cv_sync *s, PGconn *db, uint64_t position, int force, const char *start_after,
                        volatile sig_atomic_t *stop, long *rows);

#endif
