/* quix.h: the Quix tutorial's own wire formats (quixio/template-vector-cdc-local@3956625),
 * byte for byte, so cdcvec's stages and the tutorial's services can share topics.
 *
 *  - CDC message (topic postgres-cdc-data, key "<schema>.<table>"): one wal2json format-version-1
 *    change object, as the tutorial's CDC service re-prints it with Python's json.dumps after
 *    json.loads: ", " and ": " separators, ensure_ascii escapes, numbers re-printed by Python.
 *  - Embeddings message: the tutorial's "simplified row" plus "embeddings" and "Timestamp",
 *    serialized by quixstreams' orjson (compact, raw UTF-8, orjson's float layout).
 * docs/TUTORIAL_FORMAT.md has every rule and where it was read. */
#ifndef CV_QUIX_H
#define CV_QUIX_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/cv_buf.h"
#include "common/cv_err.h"
#include "common/cv_pyjson.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One column of a change, as cdcvec's capture knows it. name: the attribute name; type: what
 * format_type(atttypid, atttypmod) prints ("integer", "character varying(255)", "text[]");
 * typoid: atttypid (a domain's own oid: wal2json quotes domain values, whatever the base type);
 * kind: 'n' NULL, 'u' unchanged TOASTed value (the column is omitted, as wal2json does), 't'
 * a value: val/len is the type's text output (UTF-8, not NUL-terminated). Borrowed. */
typedef struct cv_quix_val {
    const char *name, *type;
    uint32_t typoid;
    char kind;
    const char *val;
    size_t len;
} cv_quix_val;

/* The tutorial's CDC message value for one change; kind "insert", "update" or "delete".
 * cols/ncols: the new row (insert, update; ignored for delete). oldkeys/nkeys: the replica
 * identity columns (update: of the old tuple, or of the new one when PostgreSQL sent no old
 * tuple; delete: of the old tuple); NULL and unchanged-TOAST keys are omitted like wal2json.
 * Returns a malloc'd NUL-terminated string the caller frees, or NULL with *err set and a
 * one-line reason in why (when why is not NULL) for a value the tutorial could not carry
 * (e.g. a number Python's json.loads refuses, invalid UTF-8). */
char *cv_quix_change(const char *kind, const char *schema, const char *table, const cv_quix_val *cols,
                     int ncols, const cv_quix_val *oldkeys, int nkeys, cv_err *err, cv_buf *why);

/* A parsed tutorial CDC message. All pointers borrow from root, which the struct owns. */
typedef struct cv_quix_change_msg {
    json_t *root;                      /* owned */
    const char *kind, *schema, *table; /* kind is "insert", "update" or "delete" */
    json_t *names, *types, *values;    /* arrays of ncols; NULL for a delete */
    size_t ncols;
    json_t *keynames, *keytypes, *keyvalues; /* arrays of nkeys; NULL without "oldkeys" */
    size_t nkeys;
} cv_quix_change_msg;

/* Parses a tutorial CDC message value (json/len, need not be NUL-terminated) into *out.
 * CV_ERR_FORMAT with a reason in why (bad JSON with line/column, a missing or mistyped field,
 * arrays of different lengths, an unknown kind) when it is not one. On success free *out with
 * cv_quix_change_msg_free; on failure *out holds nothing to free. schema is optional (wal2json
 * omits it with include-schemas=false); integers beyond int64 are refused. */
cv_err cv_quix_parse_change(const char *json, size_t len, cv_quix_change_msg *out, cv_buf *why);
/* Releases what cv_quix_parse_change allocated; *m can be reused. */
void cv_quix_change_msg_free(cv_quix_change_msg *m);

/* The tutorial's embeddings message for a parsed insert/update and its vector (dim floats):
 * {"kind","table", each column by name (later names overwrite earlier ones in place, like a
 * Python dict), "year" made a string with Python's str() when the row has a "year" column,
 * "embeddings": the floats widened to double, "Timestamp": timestamp_ns}, compact orjson.
 * For a delete (the tutorial crashes on it) vec is ignored and the message is cdcvec's
 * definition: {"kind":"delete","table":T, each old key column by name, "Timestamp":ns}.
 * Returns malloc'd text the caller frees, or NULL with *err and why set. */
char *cv_quix_embeddings(const cv_quix_change_msg *m, const float *vec, int dim, int64_t timestamp_ns,
                         cv_err *err, cv_buf *why);

/* A parsed tutorial embeddings message. Pointers borrow from root, which the struct owns. */
typedef struct cv_quix_embed_msg {
    json_t *root; /* owned */
    const char *kind, *table;
    json_t *row; /* owned: the row's fields, without kind, table, embeddings, Timestamp */
    float *vec;  /* owned: dim floats; NULL for a delete */
    int dim;
    int64_t timestamp_ns; /* -1 when absent */
} cv_quix_embed_msg;

/* Parses an embeddings message; want_dim > 0 requires that many floats (inserts and updates).
 * kind is any string (a row's own "kind" column overwrites it in the tutorial's dict); only
 * "delete" may come without "embeddings".
 * CV_ERR_FORMAT / CV_ERR_MISMATCH (dimension) with a reason in why. Free with
 * cv_quix_embed_msg_free on success. */
cv_err cv_quix_parse_embeddings(const char *json, size_t len, int want_dim, cv_quix_embed_msg *out,
                                cv_buf *why);
/* Releases what cv_quix_parse_embeddings allocated. */
void cv_quix_embed_msg_free(cv_quix_embed_msg *m);

/* Records a reason in why (when given, replacing what it held) and returns err (shared by the
 * cv_quix*.c files). */
cv_err cv_quix_fail(cv_buf *why, cv_err err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
