/* pgvalue.h: a PostgreSQL value in its text output form (pgoutput text tuples, text results) to
 * the JSON that PostgreSQL's own to_jsonb(value)::text writes, byte for byte, for a session
 * with DateStyle 'ISO, MDY', TimeZone 'UTC', IntervalStyle 'postgres', extra_float_digits 1
 * and bytea_output 'hex' (the caller forces these on its connections).
 *
 * The JSON type depends on the column type only, never on the value (exceptions are to_jsonb's
 * own: NaN/Infinity/-Infinity numbers are strings; json/jsonb are whatever JSON they hold):
 *   int2/int4/int8/float4/float8/numeric  number, every digit, as numeric_out writes it
 *                                         (1e-05 -> 0.00001, -0 -> 0; never through a double)
 *   bool                                  true / false
 *   json, jsonb                           embedded, normalized as jsonb stores it (keys sorted
 *                                         by length then bytes, duplicates: last wins,
 *                                         ", " and ": " separators, \uXXXX decoded)
 *   date                                  "2024-01-02", "0044-03-15 BC", "infinity"
 *   timestamp                             "2024-01-02T03:04:05.5", "0044-03-15T12:00:00 BC"
 *   timestamptz                           "2024-01-02T03:04:05+00:00" (offset with minutes)
 *   arrays (also int2vector)              JSON arrays, nested per dimension, NULL -> null,
 *                                         elements by their element type, bounds dropped
 *   composites                            objects keyed by field name (jsonb key order)
 *   anything else (time, timetz, interval, money, uuid, bytea, enums, ranges, ...)
 *                                         a JSON string of the text form
 * Domains behave as their base type.
 *
 * The input must be the output function's text: what pgoutput sends, and what a text-format
 * SELECT of the bare column returns. `col::text` differs for three types (PostgreSQL 15):
 * bool::text is "true" (taken too), char(n)::text loses the padding and inet::text adds the
 * "/32" that to_jsonb does not write: a backfill should select the bare columns.
 * A text that is not PostgreSQL's output for the type (an array or record literal that does
 * not parse, a bad number or json, a date in another DateStyle) is CV_ERR_FORMAT, never a
 * guess. Reentrant: no state but the arguments.
 *
 * Known differences from to_jsonb:
 *   - a user-defined type with a cast to json (hstore) is written by to_jsonb through that
 *     cast; here it is a string of its text form (cv_pgtype.jsoncast is set so the caller can
 *     say so);
 *   - arrays of int2vector/oidvector: to_jsonb nests them, here the elements are strings;
 *   - json nested deeper than 10000 levels is CV_ERR_FORMAT (PostgreSQL, with its default
 *     2 MB stack, takes a little more); parsing takes about 200 bytes of stack per level. */
#ifndef CV_PGVALUE_H
#define CV_PGVALUE_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/cv_buf.h"
#include "../common/cv_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cv_pgfield cv_pgfield;

typedef struct cv_pgtype {
    uint32_t oid;       /* the column's type oid */
    uint32_t base;      /* after resolving domains */
    char category;      /* pg_type.typcategory of base */
    uint32_t elem;      /* arrays: element base type (domains resolved), else 0 */
    char elem_category; /* arrays: typcategory of elem */
    char delim;         /* arrays: element delimiter (pg_type.typdelim of the element type); 0: ',' */
    int jsoncast;       /* base (arrays: elem) is a user type with a cast to json: see above */
    int nfields;        /* composites (arrays: of the element composite): fields, attnum order */
    cv_pgfield *fields; /* (nfields) owned by the array cv_pgtypes_load filled */
} cv_pgtype;

struct cv_pgfield {
    char *name;     /* owned */
    cv_pgtype type; /* the field's type, composites nested */
};

/* Fills out[i] for each type oid with one catalog query (composite fields included, nested
 * ones too). out (n entries) is the caller's; release with cv_pgtypes_free. An oid that is
 * not in pg_type gives CV_ERR_NOTFOUND; a failed query CV_ERR_IO, or CV_ERR_TIMEOUT when the
 * connection is lost (retriable). Errors are logged. */
cv_err cv_pgtypes_load(PGconn *db, const uint32_t *typoids, int n, cv_pgtype *out);

/* Frees what cv_pgtypes_load allocated inside out[0..n) (not out itself). */
void cv_pgtypes_free(cv_pgtype *t, int n);

/* Appends to out the to_jsonb() JSON of one non-NULL value given in PostgreSQL's text output
 * form (val: len bytes, not NUL-terminated, borrowed). Malformed input (an array or record
 * literal, number or json text that does not parse, see above) gives CV_ERR_FORMAT, and
 * CV_ERR_NOMEM when out could not grow (or was out of memory before); on any error the text of
 * out is left as it was. */
cv_err cv_pgvalue_json(cv_buf *out, const cv_pgtype *t, const char *val, size_t len);

#ifdef __cplusplus
}
#endif

#endif
