/* filter.h: search filters on the row's payload fields, as people write them (filter.c).
 *
 * URL (GET / and GET /search):  FIELD=VALUE            equality
 *                               FIELD.gt=N  .gte=N  .lt=N  .lte=N   number ranges
 *   e.g. /search?q=space&author=Frank+Herbert&year.gte=1950&year.lt=2000. An empty value is no
 *   condition (what an empty form box sends). Parameters that are neither the search's own (q,
 *   limit, min_lsn, timeout_ms, sort, format) nor FIELD[.op] of a filterable field are refused.
 * JSON (POST /search, "filter"): {"author": "Frank Herbert", "year": {"gte": 1950, "lt": 2000}}
 *   a field maps to its value (equality) or to an object of eq/gt/gte/lt/lte.
 * Filterable fields: the table's columns but its keys and the embedded column (what the payload
 * holds), named as identifiers ([A-Za-z_][A-Za-z0-9_]*); numbers (smallint, integer, bigint,
 * real, double precision, numeric) take ranges and equality, booleans true/false, text types
 * (text, varchar, char, name, uuid, date, timestamp...) equality. Anything else (json, arrays)
 * is refused with the reason. All conditions must hold (AND). */
#ifndef CV_SEARCH_FILTER_H
#define CV_SEARCH_FILTER_H

#include <jansson.h>

#include "../common/cv_buf.h"
#include "../sink/sink.h"

struct cv_table;

typedef struct cv_search_fields {
    int n;
    char **name;
    char **type; /* format_type() */
    int *kind;   /* cv_fkind, or -1: not filterable (why: type or name) */
} cv_search_fields;

/* The payload fields of table t (keys and the embedded column left out). Caller frees. */
cv_search_fields *cv_search_fields_of(const struct cv_table *t);
cv_search_fields *cv_search_fields_copy(const cv_search_fields *f);
void cv_search_fields_free(cv_search_fields *f);

typedef struct cv_search_filter {
    cv_sink_filter f; /* f.c points into c */
    cv_sink_cond *c;
    int cap;
} cv_search_filter;

/* The filter in uri's query string: 1 on success, else 0 with the reason (naming the
 * parameter, and the fix) in err. */
int cv_search_filter_url(const char *uri, const cv_search_fields *fs, cv_search_filter *out, cv_buf *err);
/* The filter of a JSON body's "filter" object; same answers. */
int cv_search_filter_json(json_t *filter, const cv_search_fields *fs, cv_search_filter *out, cv_buf *err);
/* The condition on field with op, or NULL. */
const cv_sink_cond *cv_search_filter_find(const cv_search_filter *f, const char *field, cv_fop op);
void cv_search_filter_free(cv_search_filter *f);

#endif
