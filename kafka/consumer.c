/* consumer.c: polling and decoding for the consuming Kafka stages (consumer.h).
 *
 * The tutorial's messages are read as documented in docs/TUTORIAL_FORMAT.md: a CDC message is
 * a wal2json format-version-1 change object (kind, schema, table, columnnames, columntypes,
 * columnvalues, oldkeys); an embeddings message is its simplified row (kind, table, the
 * columns) plus "embeddings" and "Timestamp". Neither names the primary key of an insert, so
 * the key columns come from the options (the tutorial's is "id"). Values become their text
 * form for keys (a JSON number as written, a string as is) and stay JSON in the payload. */
#define _POSIX_C_SOURCE 200809L
#include "consumer.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_jnum.h"
#include "../common/cv_log.h"
#include "../common/cv_time.h"
#include "../ingest/pgvalue.h"

void cv_kin_msg_free(cv_kin_msg *m) {
    cv_wire_msg_free(&m->m);
    cv_wire_msg_free(&m->m_old);
    free(m->row), free(m->kind), free(m->key), free(m->raw), free(m->why), free(m->keytext);
    memset(m, 0, sizeof *m);
}

/* A JSON scalar's text form (a key value); NULL for null, objects and arrays. Numbers as
 * written (read by cv_jnum_loadb: every digit). */
static char *scalar_text(json_t *v) {
    size_t n;
    const char *str = cv_jnum_string(v, &n);
    if (str) return strndup(str, n);
    if (json_is_true(v)) return strdup("true");
    if (json_is_false(v)) return strdup("false");
    if (cv_jnum_number(v, NULL)) return cv_jnum_dumps(v, JSON_ENCODE_ANY, CV_JNUM_EXACT);
    return NULL;
}

/* A row's JSON: compact, every number as written. */
static char *row_text(const json_t *row) { return cv_jnum_dumps(row, JSON_COMPACT, CV_JNUM_EXACT); }

/* Splits "a,b" into names; returns the count. */
static int split_cols(const char *s, char ***out) {
    int n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    char **v = calloc((size_t)n + 1, sizeof *v);
    CV_ASSERT(v);
    int k = 0;
    for (const char *p = s;;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        v[k++] = strndup(p, l);
        if (!c) break;
        p = c + 1;
    }
    *out = v;
    return k;
}

/* Fills t's key columns (from the options) and key text of m->c from the object row; the key
 * types are unknown in the tutorial's embeddings message: "text" unless given by types. */
static int key_from(const cv_kin_opts *o, json_t *row, json_t *types_by_name, cv_wire_msg *m, char **why) {
    char **names;
    int nk = split_cols(o->key_columns && *o->key_columns ? o->key_columns : "id", &names);
    m->t.nkeys = nk;
    m->t.key_names = names;
    m->t.key_types = calloc((size_t)nk + 1, sizeof(char *));
    m->c.key = calloc((size_t)nk + 1, sizeof(char *));
    CV_ASSERT(m->t.key_types && m->c.key);
    for (int k = 0; k < nk; k++) {
        json_t *v = json_object_get(row, names[k]);
        json_t *ty = types_by_name ? json_object_get(types_by_name, names[k]) : NULL;
        m->t.key_types[k] = strdup(cv_jnum_string(ty, NULL)  ? cv_jnum_string(ty, NULL)
                                   : json_is_integer(v)      ? "bigint"
                                   : cv_jnum_number(v, NULL) ? "numeric"
                                                             : "text");
        m->c.key[k] = v ? scalar_text(v) : NULL;
        if (!m->c.key[k]) {
            cv_buf b = {0};
            cv_buf_printf(&b, "key column \"%s\" is %s (the key columns are --key-columns %s)", names[k],
                          v ? "not a scalar" : "missing", o->key_columns ? o->key_columns : "id");
            *why = b.p;
            return -1;
        }
    }
    return 0;
}

/* The text to embed from row's text column: known, null, or unknown (column absent: an
 * unchanged TOASTed value wal2json left out). */
static void text_from(const cv_kin_opts *o, json_t *row, cv_change *c) {
    const char *col = o->text_column && *o->text_column ? o->text_column : "description";
    json_t *v = json_object_get(row, col);
    if (!v) {
        c->text_state = CV_TEXT_UNKNOWN;
        cv_buf b = {0};
        cv_buf_puts(&b, "[");
        cv_json_string(&b, col, strlen(col));
        cv_buf_puts(&b, "]");
        c->keep = b.p;
    } else if (json_is_null(v)) {
        c->text_state = CV_TEXT_NULL;
    } else {
        c->text_state = CV_TEXT_KNOWN;
        size_t n;
        const char *str = cv_jnum_string(v, &n);
        c->text = str ? strndup(str, n) : cv_jnum_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT, CV_JNUM_EXACT);
    }
}

/* A wal2json v1 change object (the tutorial's CDC message). */
static void decode_quix_change(const cv_kin_opts *o, json_t *j, cv_kin_msg *km) {
    char *why = NULL;
    cv_wire_msg *m = &km->m;
    const char *kind = json_string_value(json_object_get(j, "kind"));
    json_t *schema = json_object_get(j, "schema"), *table = json_object_get(j, "table");
    json_t *names = json_object_get(j, "columnnames"), *types = json_object_get(j, "columntypes"),
           *vals = json_object_get(j, "columnvalues"), *old = json_object_get(j, "oldkeys");
    json_t *row = json_object(), *tys = json_object(), *oldrow = NULL, *oldtys = NULL;
#define BAD(...)                                                                                             \
    do {                                                                                                     \
        cv_buf b_ = {0};                                                                                     \
        cv_buf_printf(&b_, __VA_ARGS__);                                                                     \
        why = b_.p;                                                                                          \
        goto out;                                                                                            \
    } while (0)
    if (!kind || (strcmp(kind, "insert") && strcmp(kind, "update") && strcmp(kind, "delete") &&
                  strcmp(kind, "truncate")))
        BAD("\"kind\" is not insert, update, delete or truncate");
    if (!json_is_string(schema) || !json_is_string(table))
        BAD("\"schema\" or \"table\" missing (a wal2json v1 change)");
    m->t.schema = strdup(json_string_value(schema));
    m->t.table = strdup(json_string_value(table));
    km->kind = strdup(kind);
    if (!strcmp(kind, "truncate")) { /* cdcvec capture --format quix's extension */
        m->op = CV_WIRE_TRUNCATE;
        m->copies = 1;
        goto out;
    }
    if (strcmp(kind, "delete")) {
        if (!json_is_array(names) || !json_is_array(vals) || json_array_size(names) != json_array_size(vals))
            BAD("\"columnnames\" and \"columnvalues\" must be arrays of one length");
        if (types && (!json_is_array(types) || json_array_size(types) != json_array_size(names)))
            BAD("\"columntypes\" must match \"columnnames\"");
        for (size_t i = 0; i < json_array_size(names); i++) {
            json_t *n = json_array_get(names, i);
            if (!json_is_string(n)) BAD("\"columnnames\"[%zu] is not a string", i);
            json_object_set(row, json_string_value(n), json_array_get(vals, i));
            if (types) json_object_set(tys, json_string_value(n), json_array_get(types, i));
        }
    }
    if (old) {
        json_t *kn = json_object_get(old, "keynames"), *kt = json_object_get(old, "keytypes"),
               *kv = json_object_get(old, "keyvalues");
        if (!json_is_array(kn) || !json_is_array(kv) || json_array_size(kn) != json_array_size(kv) ||
            json_array_size(kn) == 0)
            BAD("\"oldkeys\" needs keynames and keyvalues of one length");
        oldrow = json_object(), oldtys = json_object();
        cv_buf cols = {0};
        for (size_t i = 0; i < json_array_size(kn); i++) {
            json_t *n = json_array_get(kn, i);
            if (!json_is_string(n)) BAD("\"oldkeys\".keynames[%zu] is not a string", i);
            json_object_set(oldrow, json_string_value(n), json_array_get(kv, i));
            if (json_is_array(kt)) json_object_set(oldtys, json_string_value(n), json_array_get(kt, i));
            cv_buf_printf(&cols, "%s%s", i ? "," : "", json_string_value(n));
        }
        /* the change names its key: it wins over --key-columns */
        cv_kin_opts o2 = *o;
        o2.key_columns = cols.p;
        int r = key_from(&o2, !strcmp(kind, "delete") ? oldrow : row, !strcmp(kind, "delete") ? oldtys : tys,
                         m, &why);
        if (!r && !strcmp(kind, "update")) {
            /* the key changed: the old key goes */
            cv_wire_msg *d = &km->m_old;
            r = key_from(&o2, oldrow, oldtys, d, &why);
            int same = 1;
            for (int k = 0; !r && k < d->t.nkeys; k++)
                same &= !strcmp(d->c.key[k], m->c.key[k]);
            if (!r && !same) {
                d->op = CV_WIRE_DELETE;
                d->c.del = 1;
                d->t.schema = strdup(m->t.schema), d->t.table = strdup(m->t.table);
            } else {
                cv_wire_msg_free(d);
                d->op = -1;
            }
        }
        free(cols.p);
        if (r) goto out;
    } else {
        if (!strcmp(kind, "delete")) BAD("a delete without \"oldkeys\"");
        if (key_from(o, row, tys, m, &why)) goto out;
    }
    m->op = !strcmp(kind, "delete") ? CV_WIRE_DELETE : CV_WIRE_UPSERT;
    m->c.del = m->op == CV_WIRE_DELETE;
    if (!m->c.del) {
        text_from(o, row, &m->c);
        m->c.payload = row_text(row);
    }
out:
#undef BAD
    if (!why) km->row = row_text(m->op == CV_WIRE_DELETE && oldrow ? oldrow : row);
    json_decref(row), json_decref(tys), json_decref(oldrow), json_decref(oldtys);
    if (why) km->format = CV_KIN_BAD, km->why = why;
}

/* The tutorial's embeddings message: the simplified row plus "embeddings" and "Timestamp". */
static void decode_quix_embedding(const cv_kin_opts *o, json_t *j, cv_kin_msg *km) {
    char *why = NULL;
    cv_wire_msg *m = &km->m;
    const char *kind = json_string_value(json_object_get(j, "kind"));
    const char *table = json_string_value(json_object_get(j, "table"));
    json_t *emb = json_object_get(j, "embeddings");
    json_t *row = json_deep_copy(j);
    json_object_del(row, "kind"), json_object_del(row, "table"), json_object_del(row, "embeddings"),
        json_object_del(row, "Timestamp"), json_object_del(row, "schema");
    if (!kind || (strcmp(kind, "insert") && strcmp(kind, "update") && strcmp(kind, "delete"))) {
        why = strdup("\"kind\" is not insert, update or delete");
        goto out;
    }
    if (!table) {
        why = strdup("\"table\" missing");
        goto out;
    }
    const char *sc = json_string_value(json_object_get(j, "schema"));
    m->t.schema = strdup(sc ? sc : o->schema && *o->schema ? o->schema : "public");
    m->t.table = strdup(table);
    km->kind = strdup(kind);
    if (key_from(o, row, NULL, m, &why)) goto out;
    m->op = strcmp(kind, "delete") ? CV_WIRE_UPSERT : CV_WIRE_DELETE;
    m->c.del = m->op == CV_WIRE_DELETE;
    if (m->c.del) goto out;
    if (!json_is_array(emb) || (o->dim && (int)json_array_size(emb) != o->dim)) {
        cv_buf b = {0};
        cv_buf_printf(&b, "\"embeddings\": expected an array of %d numbers, got %s", o->dim,
                      json_is_array(emb) ? "another length" : "no array");
        why = b.p;
        goto out;
    }
    int dim = (int)json_array_size(emb);
    m->c.vec = malloc(sizeof(float) * (size_t)(dim ? dim : 1));
    CV_ASSERT(m->c.vec);
    for (int i = 0; i < dim; i++) {
        json_t *x = json_array_get(emb, (size_t)i);
        double d;
        if (!cv_jnum_number(x, &d)) {
            cv_buf b = {0};
            cv_buf_printf(&b, "\"embeddings\"[%d] is not a number", i);
            why = b.p;
            goto out;
        }
        m->c.vec[i] = (float)d;
    }
    text_from(o, row, &m->c);
    /* the hash that decides whether the stored vector is rewritten: the text's, as cdcvec's
     * own; without the text column, the vector's bytes */
    unsigned int hl = 32;
    if (m->c.text)
        EVP_Digest(m->c.text, strlen(m->c.text), m->c.vec_hash, &hl, EVP_sha256(), NULL);
    else
        EVP_Digest(m->c.vec, sizeof(float) * (size_t)dim, m->c.vec_hash, &hl, EVP_sha256(), NULL);
    free(m->c.keep), m->c.keep = NULL;
    m->c.text_state = CV_TEXT_KNOWN;
    m->c.payload = row_text(row);
    m->model = strdup("");
out:
    if (!why) km->row = row_text(row);
    json_decref(row);
    if (why) km->format = CV_KIN_BAD, km->why = why;
}

void cv_kin_decode(const cv_kin_opts *o, const char *val, size_t len, cv_kin_msg *km) {
    km->m_old.op = -1;
    if (!val || len == 0) {
        km->format = CV_KIN_BAD;
        km->why = strdup("an empty message (a tombstone?): nothing to apply");
        return;
    }
    if (cv_wire_is_cdcvec(val, len)) {
        char err[512];
        km->format = CV_KIN_CDCVEC;
        if (cv_wire_decode(val, len, o->dim, &km->m, err, sizeof err)) {
            km->format = CV_KIN_BAD;
            cv_buf b = {0};
            cv_buf_printf(&b, "cdcvec/1 message: %s", err);
            km->why = b.p;
        }
        return;
    }
    json_error_t je;
    json_t *j = cv_jnum_loadb(val, len, 0, &je); /* numbers beyond int64 or a double: every digit */
    if (!json_is_object(j)) {
        cv_buf b = {0};
        if (j)
            cv_buf_puts(&b, "not a JSON object");
        else
            cv_buf_printf(&b, "not JSON: %s at line %d column %d", je.text, je.line, je.column);
        km->format = CV_KIN_BAD, km->why = b.p;
        json_decref(j);
        return;
    }
    if (json_object_get(j, "embeddings") || json_object_get(j, "Timestamp")) { /* wal2json has neither */
        km->format = CV_KIN_QUIX_EMBEDDING;
        decode_quix_embedding(o, j, km);
    } else if (json_object_get(j, "kind")) {
        km->format = CV_KIN_QUIX_CHANGE;
        decode_quix_change(o, j, km);
    } else {
        km->format = CV_KIN_BAD;
        km->why = strdup("neither a cdcvec/1 message nor one of the tutorial's (no \"format\", \"kind\" or "
                         "\"embeddings\")");
    }
    json_decref(j);
}

int cv_kin_poll(rd_kafka_t *rk, const cv_kin_opts *o, cv_kafka_metrics *km, cv_kin_msg *out, int max,
                double wait_s, volatile sig_atomic_t *stop) {
    int n = 0;
    double t0 = cv_now();
    while (n < max && !(stop && *stop)) {
        double left = t0 + wait_s - cv_now();
        if (!n && left <= 0) break;
        int ms = n ? 0 : (int)(left * 1000) + 1; /* after the first: only what is here already */
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(rk, ms > 100 ? 100 : ms);
        if (!msg) {
            if (n) break;
            continue;
        }
        if (msg->err) {
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                cv_warn("event=kafka_consume_error topic=%s partition=%d error=\"%s\"",
                        msg->rkt ? rd_kafka_topic_name(msg->rkt) : "-", msg->partition,
                        rd_kafka_message_errstr(msg));
                cv_kafka_metrics_error(km, "consume");
            }
            rd_kafka_message_destroy(msg);
            continue;
        }
        cv_kin_msg *m = &out[n++];
        memset(m, 0, sizeof *m);
        m->partition = msg->partition;
        m->offset = msg->offset;
        m->key = msg->key ? strndup(msg->key, msg->key_len) : NULL;
        m->klen = msg->key ? msg->key_len : 0;
        m->raw = malloc(msg->len + 1);
        CV_ASSERT(m->raw);
        if (msg->len) memcpy(m->raw, msg->payload, msg->len);
        m->raw[msg->len] = 0;
        m->rlen = msg->len;
        cv_kin_decode(o, m->raw, m->rlen, m);
        if (km) cv_metric_add(km->in, 1);
        rd_kafka_message_destroy(msg);
    }
    return n;
}

cv_err cv_kin_commit(rd_kafka_t *rk, const char *topic, const cv_kin_msg *msgs, int n) {
    if (n == 0) return CV_OK;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    for (int i = 0; i < n; i++) {
        rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(l, topic, msgs[i].partition);
        if (!p) p = rd_kafka_topic_partition_list_add(l, topic, msgs[i].partition), p->offset = -1;
        if (msgs[i].offset + 1 > p->offset) p->offset = msgs[i].offset + 1;
    }
    rd_kafka_resp_err_t e = rd_kafka_commit(rk, l, 0);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        /* not fatal: the messages will be delivered again and applied again (idempotently) */
        cv_warn("event=kafka_commit_failed topic=%s error=\"%s\"", topic, rd_kafka_err2str(e));
        return cv_kafka_retriable(e) || e == RD_KAFKA_RESP_ERR__STATE ||
                       e == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION || e == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID
                   ? CV_ERR_TIMEOUT
                   : CV_ERR_UNSUPPORTED;
    }
    return CV_OK;
}

cv_err cv_kin_dead_letter(cv_kafka_producer *dlq, const char *stage, const char *topic, const cv_kin_msg *m,
                          const char *why, cv_metric *dead) {
    cv_warn("event=dead_letter stage=%s topic=%s partition=%d offset=%lld%s%s%s reason=\"%s\"", stage, topic,
            m->partition, (long long)m->offset, m->keytext ? " key=\"" : "", m->keytext ? m->keytext : "",
            m->keytext ? "\"" : "", why);
    cv_metric_add(dead, 1);
    cv_buf v = {0};
    cv_buf_printf(&v, "{\"format\":\"cdcvec-dead-letter/1\",\"stage\":\"%s\",\"topic\":", stage);
    cv_json_string(&v, topic, strlen(topic));
    cv_buf_printf(&v, ",\"partition\":%d,\"offset\":%lld,", m->partition, (long long)m->offset);
    if (m->keytext) {
        cv_buf_puts(&v, "\"key\":");
        cv_json_string(&v, m->keytext, strlen(m->keytext));
        cv_buf_puts(&v, ",");
    }
    cv_buf_puts(&v, "\"reason\":");
    cv_json_string(&v, why, strlen(why));
    cv_buf_puts(&v, ",\"value\":");
    cv_json_string(&v, m->raw ? m->raw : "", m->rlen);
    cv_buf_puts(&v, "}");
    cv_err e = cv_kafka_produce(dlq, -1, m->key, m->klen, v.p, v.len);
    free(v.p);
    return e;
}
