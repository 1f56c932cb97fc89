/* command.c: `cdcvec search`: embeds the query and prints the nearest rows of the store. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>

#include "../ingest/sync_impl.h"
#include "search.h"

typedef struct {
    int printed;
} search_out;

static void print_hit(void *arg, int rank, double sim, const char *key, const char *payload,
                      const cv_sink_passage *ps) {
    ((search_out *)arg)->printed++;
    printf("%2d. %.4f  key=%s  %s", rank, sim, key, payload);
    if (ps) printf("  chunk=%d chars=%ld+%ld", ps->chunk, ps->char_off, ps->char_len);
    printf("\n");
}

int cv_search_run(const cv_sync_opts *o, const char *query, int limit) {
    cv_sync s;
    cv_err e = cv_sync_runtime_open(&s, o);
    if (!e) e = cv_sync_session_open(&s, 0);
    if (!e) {
        float *q = malloc(sizeof(float) * (size_t)s.rt.dim);
        CV_ASSERT(q);
        e = cv_apply_embed1(s.rt.apply, query, q);
        search_out out = {0};
        if (!e) e = cv_sink_search(s.sink, q, limit, print_hit, &out);
        if (!e && out.printed == 0) printf("(no rows in the index yet)\n");
        free(q);
    }
    cv_sync_runtime_close(&s);
    return e ? 1 : 0;
}
