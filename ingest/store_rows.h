/* store_rows.h: cdcvec_table_rows_store{table}: each pipeline table's rows in its store, counted
 * or estimated (cv_sink_count_estimate) every 10 s by a thread of its own with a sink connection
 * of its own per table, so that a slow or unreachable store delays neither the stream nor the
 * lag monitor (health.c). */
#ifndef CV_STORE_ROWS_H
#define CV_STORE_ROWS_H

#include "../common/cv_metrics.h"
#include "../sink/sink.h"

typedef struct cv_store_rows cv_store_rows;

/* Starts the thread; NULL if it cannot be started (logged). */
cv_store_rows *cv_store_rows_start(void);
/* The table name (its label) is in store url, described by t (copied: a session's description;
 * a later call for the same name replaces it, and the thread reopens its sink), its figure
 * goes to m (a gauge that outlives the thread). */
void cv_store_rows_set(cv_store_rows *r, const char *name, const char *url, const cv_sink_table *t,
                       cv_metric *m);
/* The table left the pipeline: no longer counted. */
void cv_store_rows_drop(cv_store_rows *r, const char *name);
/* Stops and joins the thread, closes its sinks, frees r (NULL: nothing). */
void cv_store_rows_stop(cv_store_rows *r);

#endif
