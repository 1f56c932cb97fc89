/* wire.c: cdcvec/1 Kafka messages (wire.h, docs/KAFKA.md). Encoding splices the payload,
 * which is JSON already, into the message text; decoding validates every field it reads and
 * gives the payload back with every number as written (common/cv_jnum.h: a numeric beyond
 * int64 or a double's range is as valid in a message as in the row). */
#define _POSIX_C_SOURCE 200809L
#include "wire.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_jnum.h"
#include "../pg/cv_keytext.h"
#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "../ingest/pgvalue.h"

#define FORMAT "cdcvec/1"

void cv_wire_table_free(cv_wire_table *t) {
    for (int i = 0; i < t->nkeys; i++) {
        if (t->key_names) free(t->key_names[i]);
        if (t->key_types) free(t->key_types[i]);
    }
    free(t->key_names), free(t->key_types), free(t->schema), free(t->table);
    memset(t, 0, sizeof *t);
}

void cv_wire_msg_free(cv_wire_msg *m) {
    cv_wire_table_free(&m->t);
    cv_change_free(&m->c);
    free(m->model);
    memset(m, 0, sizeof *m);
}

static void str(cv_buf *b, const char *s) { cv_json_string(b, s, strlen(s)); }

static void str_array(cv_buf *b, char *const *v, int n) {
    cv_buf_puts(b, "[");
    for (int i = 0; i < n; i++) {
        if (i) cv_buf_puts(b, ",");
        str(b, v[i]);
    }
    cv_buf_puts(b, "]");
}

static void head(cv_buf *b, const char *op, const cv_wire_table *t, uint64_t lsn, double commit_unix) {
    char l[24];
    cv_lsn_format(lsn, l);
    cv_buf_printf(b, "{\"format\":\"" FORMAT "\",\"op\":\"%s\",\"schema\":", op);
    str(b, t->schema);
    cv_buf_puts(b, ",\"table\":");
    str(b, t->table);
    cv_buf_puts(b, ",\"key_columns\":");
    str_array(b, t->key_names, t->nkeys);
    cv_buf_puts(b, ",\"key_types\":");
    str_array(b, t->key_types, t->nkeys);
    cv_buf_printf(b, ",\"lsn\":\"%s\",\"commit_time\":%.6f", l, commit_unix);
    if (t->chunked) cv_buf_puts(b, ",\"chunked\":true");
}

static void hex32(cv_buf *b, const uint8_t h[32]) {
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", h[i]);
    cv_buf_put(b, hex, 64);
}

/* v (dim floats) as base64 of little-endian float32, quoted. */
static void vector(cv_buf *b, const float *v, int dim) {
    size_t raw = sizeof(float) * (size_t)dim, enc = 4 * ((raw + 2) / 3) + 1;
    char *tmp = malloc(enc);
    CV_ASSERT(tmp);
    /* little-endian float32: the x86-64 and arm64 layout, copied as is */
    int m = EVP_EncodeBlock((unsigned char *)tmp, (const unsigned char *)v, (int)raw);
    cv_buf_puts(b, "\"");
    cv_buf_put(b, tmp, (size_t)m);
    cv_buf_puts(b, "\"");
    free(tmp);
}

void cv_wire_key(cv_buf *b, char *const *key) {
    int n = 0;
    while (key[n])
        n++;
    cv_key_format((const char *const *)key, n, b);
}

void cv_wire_encode(cv_buf *b, const cv_wire_table *t, const cv_change *c, const char *model, int dim) {
    head(b, c->del ? "delete" : "upsert", t, c->lsn, c->commit_unix);
    cv_buf_puts(b, ",\"key\":");
    int nk = 0;
    while (c->key[nk])
        nk++;
    str_array(b, c->key, nk);
    if (c->txn_size) cv_buf_printf(b, ",\"txn\":{\"seq\":%d,\"size\":%d}", c->txn_seq, c->txn_size);
    if (c->fail) {
        cv_buf_puts(b, ",\"fail\":");
        str(b, c->fail);
    }
    if (!c->del) {
        static const char *const states[] = {"known", "null", "unknown"};
        cv_buf_printf(b, ",\"text_state\":\"%s\"", states[c->text_state]);
        if (c->text_fetch) cv_buf_puts(b, ",\"text_fetch\":true");
        if (c->text_state == CV_TEXT_KNOWN && c->text && !c->vec && !c->nchunks) {
            cv_buf_puts(b, ",\"text\":");
            str(b, c->text);
        }
        cv_buf_puts(b, ",\"payload\":");
        cv_buf_puts(b, c->payload ? c->payload : "{}");
        if (c->keep) {
            cv_buf_puts(b, ",\"keep\":");
            cv_buf_puts(b, c->keep);
        }
        if (c->vec || c->nchunks) {
            cv_buf_puts(b, ",\"model\":");
            str(b, model ? model : "");
            cv_buf_printf(b, ",\"dim\":%d,\"text_hash\":\"", dim);
            hex32(b, c->vec_hash);
            cv_buf_puts(b, "\"");
        }
        if (c->nchunks) { /* one entry per chunk, in order: its number, hash, offsets, vector */
            cv_buf_puts(b, ",\"chunks\":[");
            for (int i = 0; i < c->nchunks; i++) {
                const cv_change_chunk *k = &c->chunks[i];
                cv_buf_printf(b, "%s{\"n\":%d,\"hash\":\"", i ? "," : "", i);
                hex32(b, k->hash);
                cv_buf_printf(b, "\",\"char_off\":%ld,\"char_len\":%ld,\"vector\":", k->char_off,
                              k->char_len);
                vector(b, k->vec, dim);
                cv_buf_puts(b, "}");
            }
            cv_buf_puts(b, "]");
        } else if (c->vec) {
            cv_buf_puts(b, ",\"vector\":");
            vector(b, c->vec, dim);
        }
    }
    cv_buf_puts(b, "}");
}

void cv_wire_encode_truncate(cv_buf *b, const cv_wire_table *t, uint64_t lsn, double commit_unix,
                             int copies) {
    head(b, "truncate", t, lsn, commit_unix);
    cv_buf_printf(b, ",\"copies\":%d}", copies);
}

void cv_wire_encode_mark(cv_buf *b, const cv_wire_table *t, uint64_t lsn, int copies) {
    head(b, "mark", t, lsn, 0);
    cv_buf_printf(b, ",\"copies\":%d}", copies);
}

int cv_wire_is_cdcvec(const char *buf, size_t len) {
    /* cheap: our encoder always starts with the format field */
    static const char pre[] = "{\"format\":\"" FORMAT "\"";
    if (len >= sizeof pre - 1 && memcmp(buf, pre, sizeof pre - 1) == 0) return 1;
    /* someone else's encoder (any field order) */
    json_t *j = cv_jnum_loadb(buf, len, 0, NULL);
    int yes = j && json_is_string(json_object_get(j, "format")) &&
              strcmp(json_string_value(json_object_get(j, "format")), FORMAT) == 0;
    json_decref(j);
    return yes;
}

#define FAIL(...)                                                                                            \
    do {                                                                                                     \
        snprintf(err, errlen, __VA_ARGS__);                                                                  \
        goto bad;                                                                                            \
    } while (0)

/* A JSON array of strings into a NULL-terminated owned array; -1 if not one (or not n long). */
static int strings(json_t *a, int n, char ***out) {
    if (!json_is_array(a) || (n >= 0 && (int)json_array_size(a) != n)) return -1;
    size_t k = json_array_size(a);
    char **v = calloc(k + 1, sizeof *v);
    CV_ASSERT(v);
    for (size_t i = 0; i < k; i++) {
        json_t *s = json_array_get(a, i);
        if (!json_is_string(s) || memchr(json_string_value(s), 0, json_string_length(s))) {
            cv_key_free(v);
            return -1;
        }
        v[i] = strdup(json_string_value(s));
    }
    *out = v;
    return 0;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* v: base64 of dim little-endian float32, finite, into *out (malloc'd); -1 with err naming what. */
static int vec_decode(json_t *v, int dim, float **out, const char *what, char *err, size_t errlen) {
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s: expected base64 of little-endian float32", what);
        return -1;
    }
    size_t raw = sizeof(float) * (size_t)dim, bl = json_string_length(v);
    if (bl != 4 * ((raw + 2) / 3)) {
        snprintf(err, errlen, "%s: %zu base64 characters, expected %zu for %d floats", what, bl,
                 4 * ((raw + 2) / 3), dim);
        return -1;
    }
    unsigned char *tmp = malloc(bl + 3);
    CV_ASSERT(tmp);
    int got = EVP_DecodeBlock(tmp, (const unsigned char *)json_string_value(v), (int)bl);
    if (got < (int)raw) {
        free(tmp);
        snprintf(err, errlen, "%s: not valid base64", what);
        return -1;
    }
    float *f = malloc(raw);
    CV_ASSERT(f);
    memcpy(f, tmp, raw);
    free(tmp);
    *out = f; /* owned by the message from here: freed with it on failure too */
    for (int i = 0; i < dim; i++)
        if (!(f[i] == f[i]) || f[i] > 1e30f || f[i] < -1e30f) {
            snprintf(err, errlen, "%s: element %d is not a finite number", what, i);
            return -1;
        }
    return 0;
}

/* h: 64 lowercase hex digits (a SHA-256) into out; -1 with err naming what. */
static int hash_decode(json_t *h, uint8_t out[32], const char *what, char *err, size_t errlen) {
    const char *x = json_string_value(h);
    if (!x || strlen(x) != 64) {
        snprintf(err, errlen, "%s: expected 64 hex digits (SHA-256)", what);
        return -1;
    }
    for (int i = 0; i < 32; i++) {
        int hi = hexval(x[2 * i]), lo = hexval(x[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            snprintf(err, errlen, "%s: expected 64 lowercase hex digits", what);
            return -1;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* "chunks": [{"n", "hash", "char_off", "char_len", "vector"}...] in order into c; -1 with err. */
static int chunks_decode(json_t *a, int dim, cv_change *c, char *err, size_t errlen) {
    if (!json_is_array(a) || json_array_size(a) == 0 || json_array_size(a) > 1000000) {
        snprintf(err, errlen, "\"chunks\": expected a non-empty array of chunks");
        return -1;
    }
    int n = (int)json_array_size(a);
    c->chunks = calloc((size_t)n, sizeof *c->chunks);
    CV_ASSERT(c->chunks);
    c->nchunks = n;
    for (int i = 0; i < n; i++) {
        json_t *o = json_array_get(a, i), *num = json_object_get(o, "n");
        json_t *co = json_object_get(o, "char_off"), *cl = json_object_get(o, "char_len");
        char what[48];
        snprintf(what, sizeof what, "\"chunks\"[%d]", i);
        if (!json_is_object(o) || !json_is_integer(num) || json_integer_value(num) != i) {
            snprintf(err, errlen, "%s: expected an object with \"n\": %d (chunks in order)", what, i);
            return -1;
        }
        if (!json_is_integer(co) || !json_is_integer(cl) || json_integer_value(co) < 0 ||
            json_integer_value(cl) < 0 || json_integer_value(co) > INT32_MAX ||
            json_integer_value(cl) > INT32_MAX) {
            snprintf(err, errlen, "%s: \"char_off\" and \"char_len\": expected characters, 0 or more", what);
            return -1;
        }
        c->chunks[i].char_off = (long)json_integer_value(co),
        c->chunks[i].char_len = (long)json_integer_value(cl);
        char w2[64];
        snprintf(w2, sizeof w2, "%s.hash", what);
        if (hash_decode(json_object_get(o, "hash"), c->chunks[i].hash, w2, err, errlen)) return -1;
        snprintf(w2, sizeof w2, "%s.vector", what);
        if (vec_decode(json_object_get(o, "vector"), dim, &c->chunks[i].vec, w2, err, errlen)) return -1;
    }
    return 0;
}

cv_err cv_wire_decode(const char *buf, size_t len, int dim, cv_wire_msg *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    json_error_t je;
    json_t *j = cv_jnum_loadb(buf, len, JSON_REJECT_DUPLICATES, &je); /* the payload's numbers: every digit */
    if (!j) {
        snprintf(err, errlen, "not JSON: %s at line %d column %d", je.text, je.line, je.column);
        return CV_ERR_FORMAT;
    }
    const char *s;
    if (!json_is_object(j)) FAIL("not a JSON object");
    s = json_string_value(json_object_get(j, "format"));
    if (!s || strcmp(s, FORMAT) != 0) FAIL("\"format\" is not \"" FORMAT "\"");
    s = json_string_value(json_object_get(j, "op"));
    if (!s) FAIL("\"op\" missing");
    m->op = strcmp(s, "upsert") == 0     ? CV_WIRE_UPSERT
            : strcmp(s, "delete") == 0   ? CV_WIRE_DELETE
            : strcmp(s, "truncate") == 0 ? CV_WIRE_TRUNCATE
            : strcmp(s, "mark") == 0     ? CV_WIRE_MARK
                                         : -1;
    if (m->op < 0) FAIL("\"op\" is \"%s\", expected upsert, delete, truncate or mark", s);
    json_t *sc = json_object_get(j, "schema"), *tb = json_object_get(j, "table");
    if (!json_is_string(sc) || !json_is_string(tb) || !json_string_length(tb))
        FAIL("\"schema\"/\"table\" missing");
    m->t.schema = strdup(json_string_value(sc));
    m->t.table = strdup(json_string_value(tb));
    json_t *kn = json_object_get(j, "key_columns");
    if (!json_is_array(kn) || json_array_size(kn) == 0 || json_array_size(kn) > 32)
        FAIL("\"key_columns\": expected 1 to 32 column names");
    m->t.nkeys = (int)json_array_size(kn);
    if (strings(kn, m->t.nkeys, &m->t.key_names)) FAIL("\"key_columns\": expected strings");
    if (strings(json_object_get(j, "key_types"), m->t.nkeys, &m->t.key_types))
        FAIL("\"key_types\": expected %d strings", m->t.nkeys);
    s = json_string_value(json_object_get(j, "lsn"));
    if (!s || cv_lsn_parse(s, &m->c.lsn)) FAIL("\"lsn\": expected a PostgreSQL LSN like \"0/16B3748\"");
    m->t.chunked = json_is_true(json_object_get(j, "chunked"));
    json_t *ct = json_object_get(j, "commit_time");
    if (ct && !cv_jnum_number(ct, &m->c.commit_unix))
        FAIL("\"commit_time\": expected a number (unix seconds)");
    if (m->op == CV_WIRE_TRUNCATE || m->op == CV_WIRE_MARK) {
        json_t *cp = json_object_get(j, "copies");
        if (!json_is_integer(cp) || json_integer_value(cp) < 1)
            FAIL("\"copies\": expected a positive integer");
        m->copies = (int)json_integer_value(cp);
        json_decref(j);
        return CV_OK;
    }
    if (strings(json_object_get(j, "key"), m->t.nkeys, &m->c.key))
        FAIL("\"key\": expected %d strings (one per key column)", m->t.nkeys);
    json_t *txn = json_object_get(j, "txn");
    if (txn) {
        json_t *q = json_object_get(txn, "seq"), *z = json_object_get(txn, "size");
        if (!json_is_integer(q) || !json_is_integer(z)) FAIL("\"txn\": expected {\"seq\":int,\"size\":int}");
        m->c.txn_seq = (int)json_integer_value(q), m->c.txn_size = (int)json_integer_value(z);
    }
    json_t *f = json_object_get(j, "fail");
    if (f) {
        if (!json_is_string(f)) FAIL("\"fail\": expected a string");
        m->c.fail = strdup(json_string_value(f));
    }
    m->c.del = m->op == CV_WIRE_DELETE;
    if (m->c.del) {
        json_decref(j);
        return CV_OK;
    }
    s = json_string_value(json_object_get(j, "text_state"));
    if (!s) FAIL("\"text_state\" missing");
    m->c.text_state = strcmp(s, "known") == 0     ? CV_TEXT_KNOWN
                      : strcmp(s, "null") == 0    ? CV_TEXT_NULL
                      : strcmp(s, "unknown") == 0 ? CV_TEXT_UNKNOWN
                                                  : -1;
    if (m->c.text_state < 0) FAIL("\"text_state\" is \"%s\", expected known, null or unknown", s);
    m->c.text_fetch = json_is_true(json_object_get(j, "text_fetch"));
    json_t *p = json_object_get(j, "payload");
    if (!json_is_object(p)) FAIL("\"payload\": expected an object");
    m->c.payload = cv_jnum_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY, CV_JNUM_EXACT);
    json_t *k = json_object_get(j, "keep");
    if (k) {
        char **tmp = NULL;
        if (strings(k, -1, &tmp)) FAIL("\"keep\": expected an array of column names");
        cv_key_free(tmp);
        m->c.keep = json_dumps(k, JSON_COMPACT);
    }
    json_t *v = json_object_get(j, "vector");
    json_t *t = json_object_get(j, "text");
    if (t) {
        if (!json_is_string(t)) FAIL("\"text\": expected a string");
        m->c.text = strndup(json_string_value(t), json_string_length(t));
    }
    if (m->c.text_state == CV_TEXT_KNOWN && !t && !v && !json_object_get(j, "chunks"))
        FAIL("text_state is known but neither \"text\" nor \"vector\" nor \"chunks\" is given");
    json_t *ch = json_object_get(j, "chunks");
    if (v && ch) FAIL("\"vector\" and \"chunks\" both given: a message carries one or the other");
    if (v || ch) {
        json_t *d = json_object_get(j, "dim");
        if (!json_is_integer(d) || json_integer_value(d) < 1 || json_integer_value(d) > 65536)
            FAIL("\"dim\": expected the vector's dimension");
        int vd = (int)json_integer_value(d);
        if (dim && vd != dim) FAIL("\"dim\" is %d, the store holds %d-dimensional vectors", vd, dim);
        if (v && vec_decode(v, vd, &m->c.vec, "\"vector\"", err, errlen)) goto bad;
        if (hash_decode(json_object_get(j, "text_hash"), m->c.vec_hash, "\"text_hash\"", err, errlen))
            goto bad;
        if (ch && chunks_decode(ch, vd, &m->c, err, errlen)) goto bad;
        s = json_string_value(json_object_get(j, "model"));
        m->model = strdup(s ? s : "");
        m->c.text_state = CV_TEXT_KNOWN;
    }
    json_decref(j);
    return CV_OK;
bad:
    json_decref(j);
    cv_wire_msg_free(m);
    return CV_ERR_FORMAT;
}
