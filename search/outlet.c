/* outlet.c: what `cdcvec sync` adds to the source session (ingest/outlet.h): batches go to the
 * apply stage; the search page (GET /, GET and POST /search) and read-your-writes (GET /wait) are its
 * routes; a session that described its table points the page at its store; a position the
 * store has reached moves /wait. */
#define _POSIX_C_SOURCE 200809L
#include "../ingest/sync_impl.h"
#include "search.h"

static void routes(cv_sync *s, cv_http_route *r) {
    cv_search_routes(s); /* r[0..2]: r is s->rt.routes */
    cv_wait_route(s, &r[3]);
}

static void stop(cv_sync *s) {
    cv_search_close(s);
    cv_wait_stop(s);
}

static const cv_outlet search_outlet = {.nroutes = 4,
                                        .routes = routes,
                                        .open = cv_wait_open,
                                        .stop = stop,
                                        .close = cv_wait_close,
                                        .described = cv_search_set_table,
                                        .reached = cv_wait_advance};

const cv_outlet *cv_search_outlet(void) { return &search_outlet; }

/* The Kafka sink stage: /wait alone (its position moves with the offsets it committed). */
static void wait_route(cv_sync *s, cv_http_route *r) { cv_wait_route(s, r); }

static const cv_outlet wait_outlet = {
    .nroutes = 1, .routes = wait_route, .open = cv_wait_open, .stop = cv_wait_stop, .close = cv_wait_close};

const cv_outlet *cv_wait_outlet(void) { return &wait_outlet; }
