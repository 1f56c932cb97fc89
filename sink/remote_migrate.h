/* remote_migrate.h: cv_sink_index_has / _swap / _drop (sink.h) for Qdrant and Upstash
 * (remote_migrate.c); pgvector_migrate.c dispatches here for a remote sink string. */
#ifndef CV_REMOTE_MIGRATE_H
#define CV_REMOTE_MIGRATE_H

#include "sink_impl.h"

cv_err cv_rindex_has(const char *url, const cv_sink_table *t, const char *suffix, int *table, int *state);
cv_err cv_rindex_swap(const char *url, const cv_sink_table *t, const char *in, const char *keep,
                      int backfill_again);
cv_err cv_rindex_seed(const char *url, const cv_sink_table *t, const char *suffix, const char *text_source,
                      long *copied);
cv_err cv_rindex_drop(const char *url, const cv_sink_table *t, const char *suffix, int *dropped);

#endif
