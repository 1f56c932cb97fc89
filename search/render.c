/* render.c: the search page's HTML (form with filters, count and sort; results; downloads;
 * latency and freshness), the CSV download, and sorting the hits. Everything from the table
 * or the request is HTML-escaped; the page runs no script (CSP default-src 'none'). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_jnum.h"
#include "../server/server.h"
#include "page_impl.h"

static const char HEAD[] =
    "<!doctype html><html lang=en><head><meta charset=\"utf-8\">"
    "<meta name=viewport content=\"width=device-width, initial-scale=1\"><title>cdcvec search</title>"
    "<style>*{box-sizing:border-box}body{font:16px/1.45 system-ui,sans-serif;max-width:50em;margin:1.5em "
    "auto;"
    "padding:0 1em;overflow-wrap:anywhere}h1{font-size:1.5em;margin:.2em 0 .6em}"
    "label.q{display:block;font-weight:600;margin-bottom:.3em}.row{display:flex;gap:.5em}"
    "input,select,button{font:inherit;padding:.35em "
    ".5em;max-width:100%}input[type=search]{flex:1;min-width:0}"
    "fieldset{border:1px solid #ccc;border-radius:.4em;margin:.8em 0;padding:.4em .8em;display:flex;"
    "flex-wrap:wrap;gap:.4em 1em}fieldset label{display:flex;flex-direction:column;font-size:.9em}"
    "fieldset input{width:10em}fieldset input[type=number]{width:7em}ol{padding-left:1.4em}"
    "li.hit{margin:1em 0}.t{font-weight:600;font-size:1.1em}.s{color:#555;font-size:.9em}"
    ".x{margin:.3em 0}.f{color:#444;font-size:.9em}.f b{font-weight:500}.err{color:#a00;font-weight:600}"
    ".dl a{margin-right:1em}@media (max-width:600px){body{margin:.8em auto}fieldset input,fieldset "
    "input[type=number]{width:100%}fieldset label{flex:1 1 40%}}</style></head><body><h1>Search the "
    "catalog</h1>";

/* Appends s[0..n) to b, HTML-escaped. */
static void put_html(cv_buf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '&': cv_buf_puts(b, "&amp;"); break;
        case '<': cv_buf_puts(b, "&lt;"); break;
        case '>': cv_buf_puts(b, "&gt;"); break;
        case '"': cv_buf_puts(b, "&quot;"); break;
        case '\'': cv_buf_puts(b, "&#39;"); break;
        default: cv_buf_put(b, &s[i], 1);
        }
    }
}

static void put_html_s(cv_buf *b, const char *s) { put_html(b, s, strlen(s)); }

size_t cv_page_cp_offset(const char *s, size_t n) {
    size_t i = 0;
    for (; s[i] && n; n--) /* one code point: a byte, then its continuation bytes */
        for (i++; ((unsigned char)s[i] & 0xC0) == 0x80; i++)
            ;
    return i;
}

#define CV_PAGE_CONTEXT 160 /* code points shown around a matched passage */

/* The row's text with its matched passage (the best chunk) marked, and up to CV_PAGE_CONTEXT
 * code points on either side of it (elided beyond), all HTML-escaped. */
static void put_passage(cv_buf *b, const char *text, json_t *ps) {
    size_t off = (size_t)json_integer_value(json_object_get(ps, "char_off")),
           len = (size_t)json_integer_value(json_object_get(ps, "char_len"));
    size_t from = cv_page_cp_offset(text, off > CV_PAGE_CONTEXT ? off - CV_PAGE_CONTEXT : 0);
    size_t a = cv_page_cp_offset(text, off), e = a + cv_page_cp_offset(text + a, len);
    size_t to = e + cv_page_cp_offset(text + e, CV_PAGE_CONTEXT);
    if (from) cv_buf_puts(b, "&hellip;");
    put_html(b, text + from, a - from);
    cv_buf_puts(b, "<mark class=passage>");
    put_html(b, text + a, e - a);
    cv_buf_puts(b, "</mark>");
    put_html(b, text + e, to - e);
    if (text[to]) cv_buf_puts(b, "&hellip;");
}

/* A JSON value as text: strings as they are, anything else as compact JSON (null: nothing). */
static void put_value(cv_buf *b, json_t *v, int html) {
    if (!v || json_is_null(v)) return;
    if (json_is_string(v) && !cv_jnum_number(v, NULL)) {
        if (html)
            put_html(b, json_string_value(v), json_string_length(v));
        else
            cv_buf_put(b, json_string_value(v), json_string_length(v));
        return;
    }
    char *t = cv_jnum_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY, CV_JNUM_EXACT);
    if (t && html) put_html_s(b, t);
    if (t && !html) cv_buf_puts(b, t);
    free(t);
}

const char *cv_page_text_column(const char *source) {
    const char *sp = source && strncmp(source, "column ", 7) == 0 ? strchr(source + 7, ' ') : NULL;
    return sp ? sp + 1 : NULL;
}

/* The payload's title: its name or title field, else the key. */
static void put_title(cv_buf *b, json_t *hit) {
    json_t *p = json_object_get(hit, "payload");
    json_t *t = json_object_get(p, "name");
    if (!json_is_string(t)) t = json_object_get(p, "title");
    if (json_is_string(t) && json_string_length(t)) {
        put_value(b, t, 1);
        return;
    }
    cv_buf_puts(b, "key ");
    put_html_s(b, json_string_value(json_object_get(hit, "key")));
}

/* The value the request gave for parameter name (HTML-escaped), for the form to keep it. */
static void put_param(cv_buf *b, const search_req *r, const char *name) {
    cv_buf v = {0};
    if (!r->post && cv_http_query_param(r->uri, name, 1024, &v) == CV_QP_OK) put_html(b, v.p, v.len);
    free(v.p);
}

static void put_sort_option(cv_buf *b, const search_req *r, const char *value, const char *label,
                            const char *field) {
    const char *cur = r->sort ? r->sort : "score";
    cv_buf_puts(b, "<option value=\"");
    put_html_s(b, value);
    cv_buf_printf(b, "\"%s>", strcmp(cur, value) ? "" : " selected");
    if (field) put_html_s(b, field);
    cv_buf_puts(b, label);
    cv_buf_puts(b, "</option>");
}

/* The form: query (labelled, kept), a box per filterable field, result count, sort. */
static void put_form(cv_buf *b, const search_req *r) {
    cv_buf_puts(b, "<form method=get action=\"/\" role=search><label class=q for=q>What are you looking for?"
                   "</label><div class=row><input type=search id=q name=q autofocus "
                   "placeholder=\"books like star wars\" value=\"");
    if (r->q.p) put_html(b, r->q.p, r->q.len);
    cv_buf_puts(b, "\"><button id=go>Search</button></div>");
    const cv_search_fields *fs = r->fields;
    cv_buf nm = {0};
    if (fs && fs->n) cv_buf_puts(b, "<fieldset><legend>Filters</legend>");
    for (int i = 0; fs && i < fs->n; i++) {
        int k = fs->kind[i];
        if (k < 0) continue;
        for (int j = 0; j < (k == CV_FV_NUM ? 2 : 1); j++) {
            nm.len = 0;
            cv_buf_printf(&nm, "%s%s", fs->name[i], k == CV_FV_NUM ? (j ? ".lte" : ".gte") : "");
            cv_buf_puts(b, "<label>");
            put_html_s(b, fs->name[i]);
            cv_buf_puts(b, k == CV_FV_NUM ? (j ? " to" : " from") : "");
            if (k == CV_FV_BOOL) {
                cv_buf v = {0};
                if (!r->post) cv_http_query_param(r->uri, nm.p, 8, &v);
                cv_buf_puts(b, " <select name=\"");
                put_html_s(b, nm.p);
                cv_buf_printf(
                    b,
                    "\"><option value=\"\">any</option><option%s>true</option><option%s>false</option>"
                    "</select></label>",
                    v.p && !strcmp(v.p, "true") ? " selected" : "",
                    v.p && !strcmp(v.p, "false") ? " selected" : "");
                free(v.p);
                continue;
            }
            cv_buf_printf(b, " <input %sname=\"", k == CV_FV_NUM ? "type=number step=any " : "");
            put_html_s(b, nm.p);
            cv_buf_puts(b, "\" value=\"");
            put_param(b, r, nm.p);
            cv_buf_puts(b, "\"></label>");
        }
    }
    if (fs && fs->n) cv_buf_puts(b, "</fieldset>");
    cv_buf_puts(b, "<div class=row><label>Results <select name=limit id=limit>");
    static const int counts[] = {5, 10, 20, 50, 100};
    for (int i = 0, shown = 0; i < 5 || !shown; i++) { /* a count from a link that is not listed: too */
        long n = i < 5 ? counts[i] : r->limit;
        if (i < 5 && !shown && r->limit < n) n = r->limit, i--;
        shown |= n == r->limit;
        cv_buf_printf(b, "<option%s>%ld</option>", n == r->limit ? " selected" : "", n);
    }
    cv_buf_puts(b, "</select></label> <label>Sort <select name=sort id=sort>");
    put_sort_option(b, r, "score", "best match first", NULL);
    for (int i = 0; fs && i < fs->n; i++) {
        if (fs->kind[i] < 0) continue;
        put_sort_option(b, r, fs->name[i], fs->kind[i] == CV_FV_NUM ? " ascending" : " A to Z", fs->name[i]);
        nm.len = 0;
        cv_buf_printf(&nm, "-%s", fs->name[i]);
        put_sort_option(b, r, nm.p, fs->kind[i] == CV_FV_NUM ? " descending" : " Z to A", fs->name[i]);
    }
    cv_buf_puts(b, "</select></label></div></form>");
    free(nm.p);
}

/* The request's query string without format=, HTML-escaped (for the download links). */
static void put_links(cv_buf *b, const search_req *r) {
    cv_buf qs = {0};
    const char *q = strchr(r->uri, '?');
    for (const char *p = q; p && *p && *p != '#';) {
        p++;
        size_t n = strcspn(p, "&#");
        if (n && strncmp(p, "format=", 7)) {
            if (qs.len) cv_buf_puts(&qs, "&");
            cv_buf_put(&qs, p, n);
        }
        p += n;
        if (*p != '&') break;
    }
    static const char *const fmt[] = {"csv", "json"};
    cv_buf_puts(b, "<p class=dl>Download: ");
    for (int i = 0; i < 2; i++) {
        cv_buf_printf(b, "<a id=dl-%s download=\"search.%s\" href=\"/search?", fmt[i], fmt[i]);
        put_html(b, qs.p ? qs.p : "", qs.len);
        cv_buf_printf(b, "&amp;format=%s\">%s</a>", fmt[i], i ? "JSON" : "CSV");
    }
    cv_buf_puts(b, "</p>");
    free(qs.p);
}

/* Latency and freshness, under the results. */
static void put_footer(cv_buf *b, const search_req *r, size_t n) {
    json_t *f = r->fresh;
    cv_buf_printf(b, "<p class=s id=stats>%zu result%s in %.0f ms (embedding %.0f ms, store %.0f ms)", n,
                  n == 1 ? "" : "s", r->embed_ms + r->store_ms, r->embed_ms, r->store_ms);
    if (f) {
        cv_buf_puts(b, " &middot; index applied through ");
        put_html_s(b, json_string_value(json_object_get(f, "applied_lsn"))
                          ? json_string_value(json_object_get(f, "applied_lsn"))
                          : "?");
        json_t *ls = json_object_get(f, "lag_seconds"), *lb = json_object_get(f, "lag_bytes");
        if (json_is_number(ls)) cv_buf_printf(b, ", lag %.1f s", json_number_value(ls));
        if (json_is_number(lb)) cv_buf_printf(b, " (%.0f bytes of WAL)", json_number_value(lb));
    }
    cv_buf_puts(b, "</p>");
}

void cv_page_render(search_req *r, int status, const char *error) {
    cv_buf b = {0};
    cv_buf_puts(&b, HEAD);
    put_form(&b, r);
    if (error) {
        cv_buf_puts(&b, "<p class=err id=error role=alert>");
        put_html_s(&b, error);
        cv_buf_puts(&b, "</p>");
    } else if (r->hits) {
        const char *tcol = cv_page_text_column(r->text_source);
        cv_buf_printf(&b, "<ol id=results>");
        size_t i;
        json_t *hit;
        json_array_foreach(r->hits, i, hit) {
            json_t *p = json_object_get(hit, "payload");
            cv_buf_printf(&b, "<li class=hit><div class=t>");
            put_title(&b, hit);
            cv_buf_printf(&b, "</div><div class=s>score %.3f &middot; id ",
                          json_real_value(json_object_get(hit, "similarity")));
            put_html_s(&b, json_string_value(json_object_get(hit, "key")));
            cv_buf_puts(&b, "</div><div class=x>");
            json_t *ps = json_object_get(hit, "passage");
            if (ps && json_string_length(json_object_get(hit, "text")))
                put_passage(&b, json_string_value(json_object_get(hit, "text")), ps);
            else
                put_value(&b, json_object_get(hit, "text"), 1);
            cv_buf_puts(&b, "</div><div class=f>");
            const char *k;
            json_t *v;
            int first = 1;
            json_object_foreach(p, k, v) {
                if (!strcmp(k, "name") || !strcmp(k, "title") || (tcol && !strcmp(k, tcol))) continue;
                cv_buf_puts(&b, first ? "" : " &middot; ");
                first = 0;
                cv_buf_puts(&b, "<b>");
                put_html_s(&b, k);
                cv_buf_puts(&b, "</b>: ");
                put_value(&b, v, 1);
            }
            cv_buf_puts(&b, "</div></li>");
        }
        cv_buf_puts(&b, "</ol>");
        if (!json_array_size(r->hits)) cv_buf_puts(&b, "<p id=results>No results.</p>");
        put_footer(&b, r, json_array_size(r->hits));
        if (json_array_size(r->hits)) put_links(&b, r);
    }
    cv_buf_puts(&b, "<p class=s>Live: the index follows the table through logical replication. Link a search "
                    "as <code>/?q=...&amp;author=...&amp;year.gte=1950</code>; JSON: "
                    "<code>/search?q=...&amp;limit=5</code>.</p></body></html>");
    if (b.oom)
        cv_http_reply_error(r->reply, 500, "internal", "out of memory");
    else
        cv_http_reply(r->reply, status, "text/html; charset=utf-8", b.p, b.len);
    free(b.p);
}

/* A cell a spreadsheet would run as a formula (=, +, -, @, tab or CR first; a plain number
 * aside): written with a quote before it (OWASP, CSV injection). */
static int formula_like(const char *s, size_t n) {
    if (!n || !strchr("=+-@\t\r", s[0])) return 0;
    char *end;
    strtod(s, &end);
    return end != s + n; /* "-3.5" is a number, "-1+2" or "=A1" is not */
}

/* One CSV field (RFC 4180: quoted when it holds a comma, quote or line break). */
static void csv_field(cv_buf *b, const char *s, size_t n, int first) {
    if (!first) cv_buf_puts(b, ",");
    int defuse = formula_like(s, n);
    if (strcspn(s, ",\"\r\n") >= n) {
        if (defuse) cv_buf_puts(b, "'");
        cv_buf_put(b, s, n);
        return;
    }
    cv_buf_puts(b, "\"");
    if (defuse) cv_buf_puts(b, "'");
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') cv_buf_puts(b, "\"");
        cv_buf_put(b, &s[i], 1);
    }
    cv_buf_puts(b, "\"");
}

void cv_page_csv(search_req *r) {
    cv_buf b = {0}, v = {0};
    const cv_search_fields *fs = r->fields;
    cv_buf_puts(&b, "rank,similarity,key,text");
    for (int i = 0; fs && i < fs->n; i++)
        csv_field(&b, fs->name[i], strlen(fs->name[i]), 0);
    cv_buf_puts(&b, "\r\n");
    size_t i;
    json_t *hit;
    json_array_foreach(r->hits, i, hit) {
        cv_buf_printf(&b, "%d,%.6f", (int)json_integer_value(json_object_get(hit, "rank")),
                      json_real_value(json_object_get(hit, "similarity")));
        const char *key = json_string_value(json_object_get(hit, "key"));
        csv_field(&b, key ? key : "", key ? strlen(key) : 0, 0);
        v.len = 0;
        put_value(&v, json_object_get(hit, "text"), 0);
        csv_field(&b, v.p ? v.p : "", v.len, 0);
        for (int f = 0; fs && f < fs->n; f++) {
            v.len = 0;
            put_value(&v, json_object_get(json_object_get(hit, "payload"), fs->name[f]), 0);
            csv_field(&b, v.p ? v.p : "", v.len, 0);
        }
        cv_buf_puts(&b, "\r\n");
    }
    if (b.oom)
        cv_http_reply_error(r->reply, 500, "internal", "out of memory");
    else
        cv_http_reply(r->reply, 200, "text/csv; charset=utf-8", b.p, b.len);
    free(b.p), free(v.p);
}

static const char *sort_field;
static int sort_desc;

/* Numbers before strings, missing or null last; ties by rank. */
static int cmp_hits(const void *a, const void *b) {
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    json_t *u = json_object_get(json_object_get(x, "payload"), sort_field),
           *w = json_object_get(json_object_get(y, "payload"), sort_field);
    int nu = !u || json_is_null(u), nw = !w || json_is_null(w), c = 0;
    double du, dw;
    if (nu || nw) {
        c = nu - nw;
        if (c) return c;
    } else if (cv_jnum_number(u, &du) && cv_jnum_number(w, &dw)) {
        c = (du > dw) - (du < dw);
    } else if (json_is_string(u) && json_is_string(w)) {
        c = strcmp(json_string_value(u), json_string_value(w));
    }
    if (sort_desc) c = -c;
    if (c) return c;
    return (int)(json_integer_value(json_object_get(x, "rank")) -
                 json_integer_value(json_object_get(y, "rank")));
}

void cv_page_sort(search_req *r) {
    if (!r->sort || !strcmp(r->sort, "score") || json_array_size(r->hits) < 2) return;
    size_t n = json_array_size(r->hits);
    json_t **v = malloc(n * sizeof *v);
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(r->hits, i));
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* qsort has no argument: one sort at a time */
    pthread_mutex_lock(&mu);
    sort_desc = r->sort[0] == '-';
    sort_field = r->sort + sort_desc;
    qsort(v, n, sizeof *v, cmp_hits);
    pthread_mutex_unlock(&mu);
    json_array_clear(r->hits);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(r->hits, v[i]);
    free(v);
}
