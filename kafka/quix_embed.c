/* quix_embed.c: the tutorial's embeddings message, written and parsed.
 *
 * The tutorial's embedding service ("Create Embeddings*" /main.py) reads the CDC message with
 * orjson, keeps {"kind", "table"} and zips columnnames with columnvalues into one Python dict
 * (a later equal name overwrites the value in place, keeping the first position), makes
 * "year" a string with str(), adds "embeddings" (numpy float32 -> tolist(): each float widened
 * to double) and "Timestamp" (time.time_ns()), and writes it with orjson.dumps: compact, raw
 * UTF-8, orjson's float layout. Deletes crash it (KeyError 'columnnames'): cdcvec's delete
 * message is {"kind":"delete","table":T, old key columns by name, "Timestamp":ns}. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cv_jnum.h"
#include "kafka/quix.h"

/* A number the change kept as text (cv_jnum_loadb: beyond int64, or not an integer): whether
 * it is one; *d its double and *exact whether it is a float (Python's json reads it as one)
 * whose double has its decimal value. An integer (Python: an int of any size) is never exact. */
static int kept_number(json_t *v, double *d, int *exact) {
    size_t n;
    if (!json_is_string(v) || cv_jnum_string(v, &n) || !cv_jnum_number(v, d)) return 0;
    char *t = cv_jnum_dumps(v, JSON_ENCODE_ANY, CV_JNUM_EXACT);
    *exact = t && strpbrk(t, ".eE") && cv_jnum_double_exact(t, strlen(t));
    free(t);
    return 1;
}

/* Appends the exact text of the kept number v. */
static void put_text(cv_buf *b, json_t *v) {
    char *t = cv_jnum_dumps(v, JSON_ENCODE_ANY, CV_JNUM_EXACT);
    cv_buf_puts(b, t ? t : "null");
    free(t);
}

/* Appends v as orjson.dumps writes it (compact); -1 on a string that is not UTF-8. A number a
 * double cannot hold (beyond int64, more digits than a double keeps) is written as it came,
 * every digit, where the tutorial's service would fail or round it. */
static int put_orjson(cv_buf *b, json_t *v) {
    double d;
    int exact;
    size_t n;
    const char *str;
    switch (json_typeof(v)) {
    case JSON_STRING:
        if (kept_number(v, &d, &exact)) {
            if (exact)
                cv_quix_put_orjson_float(b, d);
            else
                put_text(b, v);
            return 0;
        }
        str = cv_jnum_string(v, &n);
        return cv_quix_put_orjson_str(b, str, n);
    case JSON_INTEGER: cv_buf_printf(b, "%lld", (long long)json_integer_value(v)); return 0;
    case JSON_REAL: cv_quix_put_orjson_float(b, json_real_value(v)); return 0;
    case JSON_TRUE: cv_buf_puts(b, "true"); return 0;
    case JSON_FALSE: cv_buf_puts(b, "false"); return 0;
    case JSON_NULL: cv_buf_puts(b, "null"); return 0;
    case JSON_ARRAY:
        cv_buf_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) cv_buf_put(b, ",", 1);
            if (put_orjson(b, json_array_get(v, i))) return -1;
        }
        cv_buf_put(b, "]", 1);
        return 0;
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        int first = 1;
        cv_buf_put(b, "{", 1);
        json_object_foreach(v, k, x) {
            if (!first) cv_buf_put(b, ",", 1);
            first = 0;
            if (cv_quix_put_orjson_str(b, k, strlen(k))) return -1;
            cv_buf_put(b, ":", 1);
            if (put_orjson(b, x)) return -1;
        }
        cv_buf_put(b, "}", 1);
        return 0;
    }
    }
    return -1;
}

/* Python's str() of a JSON scalar as orjson.loads gave it; NULL for arrays and objects.
 * Returns a new jansson string. */
static json_t *python_str(json_t *v) {
    cv_buf b = {0};
    double d;
    int exact;
    switch (json_typeof(v)) {
    case JSON_STRING:
        if (!kept_number(v, &d, &exact)) return json_incref(v);
        if (exact)
            cv_quix_put_pyfloat(&b, d);
        else
            put_text(&b, v); /* Python's str() of an int: its digits */
        break;
    case JSON_INTEGER: cv_buf_printf(&b, "%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL: cv_quix_put_pyfloat(&b, json_real_value(v)); break;
    case JSON_TRUE: cv_buf_puts(&b, "True"); break;
    case JSON_FALSE: cv_buf_puts(&b, "False"); break;
    case JSON_NULL: cv_buf_puts(&b, "None"); break;
    default: return NULL;
    }
    json_t *s = b.oom ? NULL : json_stringn(b.p, b.len);
    cv_buf_free(&b);
    return s;
}

/* An ordered Python-dict-like row: names[i] -> vals[i] (borrowed), set() keeps first position. */
typedef struct row_t {
    const char **names; /* (n) */
    json_t **vals;      /* (n) */
    size_t n, cap;
} row_t;

/* Sets name to v in r (in place when present); returns -1 on allocation failure. */
static int row_set(row_t *r, const char *name, json_t *v) {
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->names[i], name) == 0) {
            r->vals[i] = v;
            return 0;
        }
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 16;
        const char **nn = realloc(r->names, cap * sizeof *nn);
        if (!nn) return -1;
        r->names = nn;
        json_t **nv = realloc(r->vals, cap * sizeof *nv);
        if (!nv) return -1;
        r->vals = nv;
        r->cap = cap;
    }
    r->names[r->n] = name;
    r->vals[r->n++] = v;
    return 0;
}

/* Index of name in r, or -1. */
static long row_find(const row_t *r, const char *name) {
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->names[i], name) == 0) return (long)i;
    return -1;
}

char *cv_quix_embeddings(const cv_quix_change_msg *m, const float *vec, int dim, int64_t timestamp_ns,
                         cv_err *err, cv_buf *why) {
    cv_err e = CV_OK, dummy;
    if (!err) err = &dummy;
    int del = m && m->kind && !strcmp(m->kind, "delete");
    json_t *kind = NULL, *table = NULL, *year = NULL, *emb = NULL, *ts = NULL;
    row_t r = {0};
    cv_buf b = {0};
    if (!m || !m->root || !m->kind || !m->table) {
        *err = cv_quix_fail(why, CV_ERR_ARG, "no parsed change");
        return NULL;
    }
    if (!del && (!vec || dim <= 0)) {
        *err = cv_quix_fail(why, CV_ERR_ARG, "an %s needs its vector (dim %d)", m->kind, dim);
        return NULL;
    }
    json_t *names = del ? m->keynames : m->names, *values = del ? m->keyvalues : m->values;
    size_t n = del ? m->nkeys : m->ncols;
    kind = json_string(m->kind), table = json_string(m->table), ts = json_integer(timestamp_ns);
    int oom = !kind || !table || !ts || row_set(&r, "kind", kind) || row_set(&r, "table", table);
    for (size_t i = 0; i < n && !oom; i++)
        oom = row_set(&r, json_string_value(json_array_get(names, i)), json_array_get(values, i));
    long y = del ? -1 : row_find(&r, "year");
    if (!oom && y >= 0) { /* the tutorial: new_structure["year"] = str(new_structure["year"]) */
        year = python_str(r.vals[y]);
        if (!year)
            e = cv_quix_fail(why, CV_ERR_FORMAT, "\"year\" is an array or object: no Python str() rule here");
        else
            r.vals[y] = year;
    }
    if (!oom && !e && !del) {
        emb = json_array();
        for (int i = 0; emb && i < dim && !oom; i++)
            oom = json_array_append_new(emb, json_real((double)vec[i])) != 0;
        oom = oom || !emb || row_set(&r, "embeddings", emb);
    }
    if (!oom && !e) oom = row_set(&r, "Timestamp", ts);
    if (!oom && !e) {
        cv_buf_put(&b, "{", 1);
        for (size_t i = 0; i < r.n && !e; i++) {
            if (i) cv_buf_put(&b, ",", 1);
            if (cv_quix_put_orjson_str(&b, r.names[i], strlen(r.names[i])) || (cv_buf_put(&b, ":", 1), 0) ||
                put_orjson(&b, r.vals[i]))
                e = cv_quix_fail(why, CV_ERR_FORMAT, "column %s: not UTF-8", r.names[i]);
        }
        cv_buf_put(&b, "}", 1);
        oom = b.oom;
    }
    if (oom && !e) e = cv_quix_fail(why, CV_ERR_NOMEM, "out of memory");
    json_decref(kind), json_decref(table), json_decref(year), json_decref(emb), json_decref(ts);
    free(r.names), free(r.vals);
    if (e) {
        cv_buf_free(&b);
        *err = e;
        return NULL;
    }
    *err = CV_OK;
    return b.p;
}

cv_err cv_quix_parse_embeddings(const char *json, size_t len, int want_dim, cv_quix_embed_msg *out,
                                cv_buf *why) {
    memset(out, 0, sizeof *out);
    out->timestamp_ns = -1;
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return cv_quix_fail(why, CV_ERR_FORMAT, "not JSON: %s at line %d column %d", je.text, je.line,
                            je.column);
    out->root = root;
    cv_err e = CV_OK;
    json_t *k = json_object_get(root, "kind"), *t = json_object_get(root, "table");
    json_t *emb = json_object_get(root, "embeddings"), *ts = json_object_get(root, "Timestamp");
    if (!json_is_object(root))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "not a JSON object");
    else if (!json_is_string(k))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "no string \"kind\"");
    else if (!json_is_string(t))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "no string \"table\"");
    else if (ts && !json_is_integer(ts))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "\"Timestamp\" is not an integer");
    else if (emb && !json_is_array(emb))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "\"embeddings\" is not an array");
    else if (!emb && strcmp(json_string_value(k), "delete"))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "an %s without \"embeddings\"", json_string_value(k));
    if (!e && emb) {
        size_t n = json_array_size(emb);
        if (want_dim > 0 && n != (size_t)want_dim)
            e = cv_quix_fail(why, CV_ERR_MISMATCH, "\"embeddings\" has %zu floats, the model makes %d", n,
                             want_dim);
        else if (n == 0)
            e = cv_quix_fail(why, CV_ERR_FORMAT, "\"embeddings\" is empty");
        else if (!(out->vec = malloc(n * sizeof *out->vec)))
            e = cv_quix_fail(why, CV_ERR_NOMEM, "out of memory");
        for (size_t i = 0; !e && i < n; i++) {
            json_t *x = json_array_get(emb, i);
            double d = json_number_value(x);
            if (!json_is_number(x) || !isfinite(d) || fabs(d) > 3.4028234663852886e38)
                e = cv_quix_fail(why, CV_ERR_FORMAT, "\"embeddings\"[%zu] is not a finite float32", i);
            else
                out->vec[i] = (float)d;
        }
        out->dim = (int)n;
    }
    if (!e && !(out->row = json_object())) e = cv_quix_fail(why, CV_ERR_NOMEM, "out of memory");
    if (!e) {
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v) {
            if (strcmp(key, "kind") && strcmp(key, "table") && strcmp(key, "embeddings") &&
                strcmp(key, "Timestamp") && json_object_set(out->row, key, v)) {
                e = cv_quix_fail(why, CV_ERR_NOMEM, "out of memory");
                break;
            }
        }
    }
    if (e) {
        cv_quix_embed_msg_free(out);
        return e;
    }
    out->kind = json_string_value(k);
    out->table = json_string_value(t);
    out->timestamp_ns = ts ? (int64_t)json_integer_value(ts) : -1;
    return CV_OK;
}

void cv_quix_embed_msg_free(cv_quix_embed_msg *m) {
    json_decref(m->row);
    json_decref(m->root);
    free(m->vec);
    memset(m, 0, sizeof *m);
    m->timestamp_ns = -1;
}
