/* filter.c: search filters from a URL's query string or a JSON body, checked against the
 * table's payload fields (filter.h); the stores run them (sink.h, cv_sink_filter). */
#define _POSIX_C_SOURCE 200809L
#include "filter.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../ingest/pgvalue.h"
#include "../ingest/source.h"
#include "../server/server.h"

#define MAX_CONDS 32

static const char *const OWN_PARAMS[] = {"q", "limit", "min_lsn", "timeout_ms", "sort", "format", NULL};
static const char *const OPS[] = {"eq", "gt", "gte", "lt", "lte", NULL};

static int is_ident(const char *p) {
    if (!*p || (*p >= '0' && *p <= '9')) return 0;
    for (; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return 1;
}

static int kind_of(const cv_pgtype *t) {
    if (t->elem) return -1;
    if (t->category == 'N' && t->base != 790 /* money: text in JSON */) return CV_FV_NUM;
    if (t->category == 'B') return CV_FV_BOOL;
    if (t->category == 'S' || t->category == 'E' || t->base == 2950 /* uuid */ || t->base == 1082 /* date */)
        return CV_FV_STR;
    return -1;
}

cv_search_fields *cv_search_fields_of(const struct cv_table *t) {
    cv_search_fields *f = calloc(1, sizeof *f);
    CV_ASSERT(f);
    f->name = calloc((size_t)t->ncols + 1, sizeof *f->name);
    f->type = calloc((size_t)t->ncols + 1, sizeof *f->type);
    f->kind = calloc((size_t)t->ncols + 1, sizeof *f->kind);
    CV_ASSERT(f->name && f->type && f->kind);
    for (int i = 0; i < t->ncols; i++) {
        int key = 0;
        for (int k = 0; k < t->nkeys; k++)
            key |= t->key[k] == i;
        if (key || i == t->text_col || !strcmp(t->col[i], "cdcvec")) continue;
        f->name[f->n] = strdup(t->col[i]);
        f->type[f->n] = strdup(t->coltype[i]);
        CV_ASSERT(f->name[f->n] && f->type[f->n]);
        f->kind[f->n] = is_ident(t->col[i]) && t->types ? kind_of(&t->types[i]) : -1;
        f->n++;
    }
    return f;
}

void cv_search_fields_free(cv_search_fields *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++)
        free(f->name[i]), free(f->type[i]);
    free(f->name), free(f->type), free(f->kind), free(f);
}

void cv_search_filter_free(cv_search_filter *f) {
    for (int i = 0; i < f->f.n; i++)
        free((char *)f->c[i].field), free((char *)f->c[i].str);
    free(f->c);
    memset(f, 0, sizeof *f);
}

const cv_sink_cond *cv_search_filter_find(const cv_search_filter *f, const char *field, cv_fop op) {
    for (int i = 0; i < f->f.n; i++)
        if (f->c[i].op == op && !strcmp(f->c[i].field, field)) return &f->c[i];
    return NULL;
}

/* "the filterable fields are: a (text), b (number)" */
static void list_fields(const cv_search_fields *fs, cv_buf *err) {
    int any = 0;
    cv_buf_puts(err, "; filterable fields: ");
    for (int i = 0; i < fs->n; i++) {
        if (fs->kind[i] < 0) continue;
        cv_buf_printf(err, "%s%s (%s)", any ? ", " : "", fs->name[i],
                      fs->kind[i] == CV_FV_NUM    ? "number: =, .gt, .gte, .lt, .lte"
                      : fs->kind[i] == CV_FV_BOOL ? "true/false"
                                                  : "text: =");
        any = 1;
    }
    if (!any) cv_buf_puts(err, "none");
}

/* The field named name (len n), or -1 with the reason in err. */
static int field_of(const cv_search_fields *fs, const char *name, size_t n, cv_buf *err) {
    for (int i = 0; i < fs->n; i++) {
        if (strlen(fs->name[i]) != n || memcmp(fs->name[i], name, n)) continue;
        if (fs->kind[i] >= 0) return i;
        cv_buf_printf(err,
                      "field '%s' (%s) cannot be filtered: only number, boolean and text columns named as "
                      "identifiers can",
                      fs->name[i], fs->type[i]);
        list_fields(fs, err);
        return -1;
    }
    cv_buf_puts(err, "unknown filter field '");
    cv_buf_put(err, name, n);
    cv_buf_puts(err, "' (the table's keys and the embedded column are not filterable)");
    list_fields(fs, err);
    return -1;
}

/* A JSON number's text (strict JSON syntax): 1 when s is one. */
static int json_number_text(const char *s) {
    const char *p = s;
    if (*p == '-') p++;
    if (!(*p >= '0' && *p <= '9')) return 0;
    if (*p == '0' && p[1] >= '0' && p[1] <= '9') return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (!(*p >= '0' && *p <= '9')) return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == 0 && isfinite(strtod(s, NULL));
}

/* Adds field op value (text, as given in the URL, or from JSON: jv) after checking its type. */
static int add_cond(cv_search_filter *out, const cv_search_fields *fs, int fi, cv_fop op, const char *text,
                    json_t *jv, const char *shown, cv_buf *err) {
    cv_sink_cond c = {.op = op, .kind = (cv_fkind)fs->kind[fi]};
    char num[40];
    if (cv_search_filter_find(out, fs->name[fi], op)) {
        cv_buf_printf(err, "%s is given twice; give each condition once", shown);
        return 0;
    }
    if (out->f.n >= MAX_CONDS) {
        cv_buf_printf(err, "more than %d filter conditions", MAX_CONDS);
        return 0;
    }
    if (op != CV_FOP_EQ && c.kind != CV_FV_NUM) {
        cv_buf_printf(err, "%s: ranges apply to number fields; '%s' is %s: filter it with %s=VALUE", shown,
                      fs->name[fi], c.kind == CV_FV_BOOL ? "a boolean" : "text", fs->name[fi]);
        return 0;
    }
    if (c.kind == CV_FV_NUM) {
        if (jv && json_is_number(jv)) {
            snprintf(num, sizeof num, "%.17g", json_number_value(jv));
            text = num;
        }
        if (!text || !json_number_text(text)) {
            cv_buf_printf(err, "%s takes a number (like 1950 or -2.5)", shown);
            return 0;
        }
        c.num = strtod(text, NULL);
        c.str = strdup(text);
    } else if (c.kind == CV_FV_BOOL) {
        if (jv && json_is_boolean(jv)) text = json_is_true(jv) ? "true" : "false";
        if (!text || (strcmp(text, "true") && strcmp(text, "false"))) {
            cv_buf_printf(err, "%s takes true or false", shown);
            return 0;
        }
        c.num = !strcmp(text, "true");
        c.str = strdup(text);
    } else {
        if (jv) text = json_string_value(jv);
        if (!text) {
            cv_buf_printf(err, "%s takes a string", shown);
            return 0;
        }
        c.str = strdup(text);
    }
    c.field = strdup(fs->name[fi]);
    CV_ASSERT(c.field && c.str);
    if (out->f.n == out->cap) {
        out->cap = out->cap ? 2 * out->cap : 8;
        out->c = realloc(out->c, sizeof *out->c * (size_t)out->cap);
        CV_ASSERT(out->c);
    }
    out->c[out->f.n++] = c;
    out->f.c = out->c;
    return 1;
}

static int hexval(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

int cv_search_filter_url(const char *uri, const cv_search_fields *fs, cv_search_filter *out, cv_buf *err) {
    const char *q = strchr(uri, '?');
    cv_buf name = {0}, raw = {0}, val = {0};
    int ok = 1;
    for (const char *p = q; ok && p && *p && *p != '#';) {
        p++;
        size_t n = strcspn(p, "=&#");
        name.len = raw.len = 0;
        cv_buf_put(&raw, p, n);
        cv_buf_put(&raw, "", 1);
        for (size_t i = 0; i < n; i++) { /* the name, decoded */
            char c = p[i];
            if (c == '+') c = ' ';
            if (c == '%' && i + 2 < n + 1 && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0)
                c = (char)(hexval(p[i + 1]) << 4 | hexval(p[i + 2])), i += 2;
            cv_buf_put(&name, &c, 1);
        }
        cv_buf_put(&name, "", 1);
        p = strchr(p, '&');
        if (!name.p[0] && raw.p[0] == 0) continue; /* "&&" */
        int own = 0;
        for (int i = 0; OWN_PARAMS[i]; i++)
            own |= !strcmp(name.p, OWN_PARAMS[i]);
        if (own) continue;
        cv_qp st = cv_http_query_param(uri, raw.p, 1024, &val);
        if (st != CV_QP_OK && st != CV_QP_ABSENT) {
            cv_buf_printf(err, "parameter %s %s", name.p, cv_qp_message(st));
            ok = 0;
            break;
        }
        const char *dot = strrchr(name.p, '.');
        cv_fop op = CV_FOP_EQ;
        size_t flen = strlen(name.p);
        if (dot) {
            int k = -1;
            for (int i = 0; OPS[i]; i++)
                if (!strcmp(dot + 1, OPS[i])) k = i;
            if (k < 0) {
                cv_buf_printf(
                    err, "unknown parameter '%s': a filter is FIELD=VALUE or FIELD.gt|.gte|.lt|.lte=NUMBER",
                    name.p);
                list_fields(fs, err);
                ok = 0;
                break;
            }
            op = (cv_fop)k, flen = (size_t)(dot - name.p);
        }
        int fi = field_of(fs, name.p, flen, err);
        if (fi >= 0 && !val.len) continue; /* an empty box of a known field: no condition */
        ok = fi >= 0 && add_cond(out, fs, fi, op, val.p, NULL, name.p, err);
    }
    free(name.p), free(raw.p), free(val.p);
    return ok;
}

int cv_search_filter_json(json_t *filter, const cv_search_fields *fs, cv_search_filter *out, cv_buf *err) {
    if (!filter || json_is_null(filter)) return 1;
    if (!json_is_object(filter)) {
        cv_buf_puts(
            err,
            "\"filter\" must be an object like {\"author\": \"Frank Herbert\", \"year\": {\"gte\": 1950}}");
        return 0;
    }
    const char *k;
    json_t *v;
    cv_buf shown = {0};
    int ok = 1;
    json_object_foreach(filter, k, v) {
        int fi = field_of(fs, k, strlen(k), err);
        if (fi < 0) {
            ok = 0;
            break;
        }
        if (!json_is_object(v)) {
            shown.len = 0;
            cv_buf_printf(&shown, "filter.%s", k);
            if (!(ok = add_cond(out, fs, fi, CV_FOP_EQ, NULL, v, shown.p, err))) break;
            continue;
        }
        const char *ok_name;
        json_t *ov;
        json_object_foreach(v, ok_name, ov) {
            int o = -1;
            for (int i = 0; OPS[i]; i++)
                if (!strcmp(ok_name, OPS[i])) o = i;
            shown.len = 0;
            cv_buf_printf(&shown, "filter.%s.%s", k, ok_name);
            if (o < 0) {
                cv_buf_printf(err, "unknown operator %s: use eq, gt, gte, lt or lte", shown.p);
                ok = 0;
            } else {
                ok = add_cond(out, fs, fi, (cv_fop)o, NULL, ov, shown.p, err);
            }
            if (!ok) break;
        }
        if (!ok) break;
        if (!json_object_size(v)) {
            cv_buf_printf(err, "filter.%s is an empty object: give a value or eq/gt/gte/lt/lte", k);
            ok = 0;
            break;
        }
    }
    free(shown.p);
    return ok;
}

cv_search_fields *cv_search_fields_copy(const cv_search_fields *f) {
    if (!f) return NULL;
    cv_search_fields *c = calloc(1, sizeof *c);
    CV_ASSERT(c);
    c->name = calloc((size_t)f->n + 1, sizeof *c->name);
    c->type = calloc((size_t)f->n + 1, sizeof *c->type);
    c->kind = calloc((size_t)f->n + 1, sizeof *c->kind);
    CV_ASSERT(c->name && c->type && c->kind);
    for (int i = 0; i < f->n; i++) {
        c->name[i] = strdup(f->name[i]), c->type[i] = strdup(f->type[i]), c->kind[i] = f->kind[i];
        CV_ASSERT(c->name[i] && c->type[i]);
    }
    c->n = f->n;
    return c;
}
