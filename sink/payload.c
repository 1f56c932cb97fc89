/* payload.c: the JSON a remote store keeps with a point (sink_impl.h): the row's columns as
 * the apply stage hands them (typed as pgvector's payload), the key columns, and an object
 * "cdcvec" with what cdcvec needs back: table, key text, text hash, model, position, time. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/cv_jnum.h"
#include "../pg/cv_keytext.h"
#include "../common/cv_log.h"
#include "sink_impl.h"

char *cv_sink_key_text(const cv_sink_table *t, const char *const *key) {
    cv_buf b = {0};
    cv_key_format(key, t->nkeys, &b);
    if (!b.p) b.p = strdup("");
    CV_ASSERT(b.p && !b.oom);
    return b.p;
}

/* Whether an SQL type (format_type()) is an integer type. */
static int int_type(const char *ty) {
    return !strcmp(ty, "integer") || !strcmp(ty, "bigint") || !strcmp(ty, "smallint");
}

int cv_sink_int_key(const cv_sink_table *t) { return t->nkeys == 1 && int_type(t->key_types[0]); }

void cv_sink_now_iso(char out[48]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
}

int cv_sink_stored_hash(json_t *payload, uint8_t hash[32]) {
    const char *hx = json_string_value(json_object_get(json_object_get(payload, "cdcvec"), "text_hash"));
    if (!hx || strlen(hx) != 64) return 0;
    for (int b = 0; b < 32; b++) {
        unsigned v;
        if (sscanf(hx + 2 * b, "%2x", &v) != 1) return 0;
        hash[b] = (uint8_t)v;
    }
    return 1;
}

json_t *cv_sink_point_payload(const cv_sink_table *t, const cv_sink_row *r, const char *keytext,
                              json_t *stored, uint64_t position, const char *now_iso) {
    json_t *p = cv_jnum_loads(r->payload ? r->payload : "{}", 0, NULL); /* numbers as their text */
    if (!json_is_object(p)) {
        json_decref(p);
        return NULL;
    }
    if (r->keep && stored) { /* values the change did not carry: the stored ones stay */
        json_t *keep = cv_jnum_loads(r->keep, 0, NULL);
        size_t i;
        json_t *k;
        json_array_foreach(keep, i, k) {
            json_t *v = json_object_get(stored, json_string_value(k));
            if (json_string_value(k) && v) json_object_set(p, json_string_value(k), v);
        }
        json_decref(keep);
    }
    for (int k = 0; k < t->nkeys; k++) {
        json_t *v = NULL;
        if (int_type(t->key_types[k])) {
            char *end;
            long long n = strtoll(r->key[k], &end, 10);
            if (!*end) v = json_integer(n);
        }
        json_object_set_new(p, t->key_names[k], v ? v : json_string(r->key[k]));
    }
    char hx[65] = "";
    uint8_t h[32];
    if (r->hash) {
        for (int b = 0; b < 32; b++)
            snprintf(hx + 2 * b, 3, "%02x", r->hash[b]);
    } else if (stored && cv_sink_stored_hash(stored, h)) {
        for (int b = 0; b < 32; b++)
            snprintf(hx + 2 * b, 3, "%02x", h[b]);
    }
    cv_buf tn = {0};
    cv_buf_printf(&tn, "%s.%s", t->schema, t->table);
    json_object_set_new(p, "cdcvec",
                        json_pack("{s:s, s:s, s:s, s:s, s:s*, s:s*, s:I, s:s}", "table", tn.p, "key", keytext,
                                  "text_hash", hx, "model", t->model_id ? t->model_id : "", "model_revision",
                                  t->model_revision, "text_source", t->text_source, "lsn",
                                  (json_int_t)position, "updated_at", now_iso));
    free(tn.p);
    return p;
}

char *cv_sink_point_text(const json_t *p) { return cv_jnum_dumps(p, JSON_COMPACT, CV_JNUM_DOUBLE); }

void cv_sink_dead_note(cv_sink *s, cv_rstate *st, const char *key, const char *reason) {
    cv_warn("event=dead_letter store=%s key=\"%s\" reason=\"%s\"", s->ops->name, key, reason);
    if (s->dead_cb) s->dead_cb(s->dead_arg, key, reason);
    cv_rstate_dead_add(st, key, reason);
}

char *cv_sink_public_payload(const cv_sink_table *t, json_t *payload) {
    json_t *c = json_is_object(payload) ? json_copy(payload) : json_object();
    json_object_del(c, "cdcvec");
    for (int k = 0; k < t->nkeys; k++)
        json_object_del(c, t->key_names[k]);
    char *s = cv_jnum_dumps(c, JSON_COMPACT | JSON_SORT_KEYS, CV_JNUM_EXACT);
    json_decref(c);
    return s ? s : strdup("{}");
}

/* Writes f with 9 significant digits (enough for a float to read back bit for bit), as
 * d.dddddddde±x, trailing zeros dropped; out needs 20 bytes. Integer digits, no printf: a
 * vector is hundreds of these (one per dimension) and printf was most of a sink's CPU time. Returns the
 * length. */
int cv_sink_float_text(float f, char *out) {
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    double v = f;
    char *p = out;
    if (!isfinite(v)) return snprintf(out, 20, "0"); /* JSON has no NaN: never embedded (checked upstream) */
    if (v == 0) {
        *p++ = '0';
        return (int)(p - out);
    }
    if (v < 0) *p++ = '-', v = -v;
    int e = (int)floor(log10(v));
    int k = 8 - e; /* v * 10^k has 9 digits before the point */
    double sc = k >= 0 ? (k <= 22 ? v * p10[k] : v * 1e22 * pow(10, k - 22))
                       : (-k <= 22 ? v / p10[-k] : v / pow(10, -k));
    uint64_t m = (uint64_t)(sc + 0.5);
    if (m >= 1000000000u) m = (m + 5) / 10, e++;            /* rounded up to 10 digits, or log10 was low */
    if (m < 100000000u) m = (uint64_t)(sc * 10 + 0.5), e--; /* log10 was high */
    char d[9];
    for (int i = 8; i >= 0; i--)
        d[i] = (char)('0' + m % 10), m /= 10;
    int nd = 9;
    while (nd > 1 && d[nd - 1] == '0')
        nd--;
    *p++ = d[0];
    if (nd > 1) {
        *p++ = '.';
        memcpy(p, d + 1, (size_t)nd - 1);
        p += nd - 1;
    }
    if (e) {
        *p++ = 'e';
        if (e < 0) *p++ = '-', e = -e;
        if (e >= 10) *p++ = (char)('0' + e / 10);
        *p++ = (char)('0' + e % 10);
    }
    return (int)(p - out);
}

void cv_sink_vec_json(cv_buf *b, const float *v, int dim) {
    char num[24];
    cv_buf_put(b, "[", 1);
    for (int j = 0; j < dim; j++) {
        int n = 0;
        if (j) num[n++] = ',';
        n += cv_sink_float_text(v[j], num + n);
        cv_buf_put(b, num, (size_t)n);
    }
    cv_buf_put(b, "]", 1);
}

/* ---- search filters in the remote stores' languages (sink.h, cv_sink_filter) ------------ */

void cv_sink_filter_qdrant(const cv_sink_filter *f, cv_buf *b) {
    for (int i = 0; f && i < f->n; i++) {
        const cv_sink_cond *c = &f->c[i];
        cv_buf_puts(b, ",{\"key\":");
        cv_json_string(b, c->field, strlen(c->field));
        if (c->kind == CV_FV_STR) {
            cv_buf_puts(b, ",\"match\":{\"value\":");
            cv_json_string(b, c->str, strlen(c->str));
            cv_buf_puts(b, "}}");
        } else if (c->kind == CV_FV_BOOL) {
            cv_buf_printf(b, ",\"match\":{\"value\":%s}}", c->num ? "true" : "false");
        } else if (c->op == CV_FOP_EQ) { /* a number: Qdrant's match takes integers only */
            cv_buf_printf(b, ",\"range\":{\"gte\":%.17g,\"lte\":%.17g}}", c->num, c->num);
        } else {
            cv_buf_printf(b, ",\"range\":{\"%s\":%.17g}}", cv_sink_fop_name(c->op, 1), c->num);
        }
    }
}

const char *cv_sink_filter_qdrant_schema(const cv_sink_cond *c) {
    return c->kind == CV_FV_STR ? "keyword" : c->kind == CV_FV_BOOL ? "bool" : "float";
}

void cv_sink_filter_upstash(const cv_sink_filter *f, cv_buf *b) {
    for (int i = 0; f && i < f->n; i++) {
        const cv_sink_cond *c = &f->c[i];
        cv_buf_printf(b, "%s%s %s ", i ? " AND " : "", c->field, cv_sink_fop_name(c->op, 0));
        if (c->kind == CV_FV_STR) { /* 'single-quoted', \ before ' and \ */
            cv_buf_puts(b, "'");
            for (const char *p = c->str; *p; p++) {
                if (*p == '\'' || *p == '\\') cv_buf_puts(b, "\\");
                cv_buf_put(b, p, 1);
            }
            cv_buf_puts(b, "'");
        } else if (c->kind == CV_FV_BOOL) {
            cv_buf_puts(b, c->num ? "true" : "false");
        } else {
            cv_buf_printf(b, "%.17g", c->num);
        }
    }
}
