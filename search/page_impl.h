/* page_impl.h: what page.c (requests, threads) and render.c (HTML, CSV, JSON answers) share. */
#ifndef CV_SEARCH_PAGE_IMPL_H
#define CV_SEARCH_PAGE_IMPL_H

#include <jansson.h>
#include <stdint.h>

#include "../common/cv_buf.h"
#include "filter.h"
#include "search.h"

enum { FMT_HTML, FMT_JSON, FMT_CSV };

typedef struct search_req {
    cv_sync *s;
    char *uri;
    void *reply;
    int fmt;  /* FMT_* */
    int post; /* POST /search (JSON body) */
    cv_buf q; /* the query, decoded and checked */
    long limit;
    uint64_t min_lsn; /* with has_min: wait until the index covers it (wait.c) */
    int has_min;
    long wait_ms;
    char *sort;               /* "score" (NULL), FIELD or -FIELD */
    char *text_source;        /* the table's "column N name" or "template T" when the search began */
    cv_search_fields *fields; /* a copy of the table's, taken when the request arrived */
    cv_search_filter filter;
    json_t *hits;
    double t0, embed_ms, store_ms; /* arrival; the query's embedding and the store's search */
    json_t *fresh;                 /* {"applied_lsn", "lag_seconds", "lag_bytes"} after the search */
} search_req;

/* render.c */
void cv_page_render(search_req *r, int status, const char *error);
void cv_page_csv(search_req *r);
/* The embedded column's name, or NULL with a template. */
const char *cv_page_text_column(const char *source);
/* The byte offset of code point n of the UTF-8 text s (its length when shorter; a stray byte
 * counts as one code point, as models/chunk.h counts them). */
size_t cv_page_cp_offset(const char *s, size_t n);
/* Sorts r->hits by r->sort (stable; score: as the store ranked them). */
void cv_page_sort(search_req *r);

#endif
