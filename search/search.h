/* search.h: the search page (GET / and GET /search, page.c), read-your-writes (GET /wait,
 * wait.c) and `cdcvec search` (command.c), over the store a sync writes. The page and /wait
 * come to a sync as its outlet (outlet.c, ingest/outlet.h): the stream knows neither. */
#ifndef CV_SEARCH_H
#define CV_SEARCH_H

#include <jansson.h>
#include <stdint.h>

#include "../common/cv_err.h"
#include "../ingest/ingest.h"
#include "../server/server.h"

typedef struct cv_sync cv_sync;

/* What `cdcvec sync` adds to its source session: the apply stage, the page and /wait. */
const cv_outlet *cv_search_outlet(void);
/* What the Kafka sink stage adds: /wait alone. */
const cv_outlet *cv_wait_outlet(void);

/* Embeds query and prints the nearest rows: rank, similarity, key and payload. */
int cv_search_run(const cv_sync_opts *o, const char *query, int limit);

/* Fills s->routes with GET / (the page) and GET /search (JSON). */
void cv_search_routes(cv_sync *s);
/* Waits for searches in flight, closes their sink connection. */
void cv_search_close(cv_sync *s);
/* Points the search page at the session's sink table. */
void cv_search_set_table(cv_sync *s);

/* wait.c: read-your-writes. The covered position moves forward only (cv_wait_advance: after a
 * sink commit, or a keepalive with nothing of ours in flight); GET /wait answers from a thread
 * of its own, /search?min_lsn= waits on a search thread (cv_wait_until: 1 when covered, else 0
 * after timeout_ms; *covered: the position then). */
cv_err cv_wait_open(cv_sync *s);
/* Answers the waiting requests 503 and stops the thread (later requests are answered at once);
 * close frees, once the HTTP server is gone. */
void cv_wait_stop(cv_sync *s);
void cv_wait_close(cv_sync *s);
void cv_wait_advance(cv_sync *s, uint64_t pos);
int cv_wait_until(cv_sync *s, uint64_t lsn, long timeout_ms, uint64_t *covered);
void cv_wait_route(cv_sync *s, cv_http_route *r);
/* "X/Y" (1 to 8 hex digits each, nothing else) into *out; 0 on success. */
int cv_wait_parse_lsn(const char *s, uint64_t *out);
/* /search's min_lsn= and timeout_ms=: 0 after answering 400. */
int cv_wait_search_params(const char *uri, uint64_t *min_lsn, int *has, long *timeout_ms, void *reply);
/* How fresh the index is, for a search's answer: {"applied_lsn": "X/Y" (the covered position),
 * "lag_seconds" and, with replication, "lag_bytes" (health.c's, as /readyz reports them)}. */
json_t *cv_search_freshness(cv_sync *s);
/* The 504 of a search whose min_lsn was not covered in time. */
void cv_wait_reply_timeout(void *reply, uint64_t lsn, uint64_t covered, double waited_s);

#endif
