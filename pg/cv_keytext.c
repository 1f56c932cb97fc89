/* cv_keytext.c: key values <-> one line of text (comma-separated, quoted only when needed). */
#define _POSIX_C_SOURCE 200809L
#include "cv_keytext.h"

#include <stdlib.h>
#include <string.h>

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* True when v must be quoted to read back as itself. */
static int needs_quotes(const char *v) {
    size_t n = strlen(v);
    if (n == 0 || is_blank(v[0]) || is_blank(v[n - 1])) return 1;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p == ',' || *p == '"' || *p == '\\' || *p < 0x20 || *p == 0x7f) return 1;
    return 0;
}

void cv_key_format(const char *const *vals, int n, cv_buf *out) {
    for (int i = 0; i < n; i++) {
        CV_ASSERT(vals[i] != NULL);
        if (i) cv_buf_put(out, ",", 1);
        if (!needs_quotes(vals[i])) {
            cv_buf_puts(out, vals[i]);
            continue;
        }
        cv_buf_put(out, "\"", 1);
        for (const unsigned char *p = (const unsigned char *)vals[i]; *p; p++) {
            if (*p == '"')
                cv_buf_put(out, "\"\"", 2);
            else if (*p == '\\')
                cv_buf_put(out, "\\\\", 2);
            else if (*p == '\n')
                cv_buf_put(out, "\\n", 2);
            else if (*p == '\r')
                cv_buf_put(out, "\\r", 2);
            else if (*p == '\t')
                cv_buf_put(out, "\\t", 2);
            else if (*p < 0x20 || *p == 0x7f)
                cv_buf_printf(out, "\\x%02x", *p);
            else
                cv_buf_put(out, (const char *)p, 1);
        }
        cv_buf_put(out, "\"", 1);
    }
}

void cv_key_free(char **vals) {
    if (!vals) return;
    for (char **v = vals; *v; v++)
        free(*v);
    free(vals);
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The byte an escape stands for (s: the text after the backslash), or -1 when invalid. */
static int unescape(const char *s) {
    switch (s[0]) {
    case '\\': return '\\';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'x': {
        int hi = hexval(s[1]), lo = hi < 0 ? -1 : hexval(s[2]);
        return lo < 0 || (hi == 0 && lo == 0) ? -1 : hi * 16 + lo; /* \x00 would end the string */
    }
    default: return -1;
    }
}

/* Moves the bytes of b into a new string (b is left empty); NULL when out of memory. */
static char *take(cv_buf *b) {
    char *s = b->oom ? NULL : b->p ? b->p : strdup("");
    if (b->oom) cv_buf_free(b);
    *b = (cv_buf){0};
    return s;
}

cv_err cv_key_parse(const char *text, int n, char ***out, cv_buf *err) {
    cv_buf tmp = {0};
    if (!err) err = &tmp; /* messages go nowhere */
    *out = NULL;
    if (!text || n < 1) {
        cv_buf_printf(err, "a key needs text and at least one value (got %d)", n);
        cv_buf_free(&tmp);
        return CV_ERR_ARG;
    }
    char **vals = calloc((size_t)n + 1, sizeof *vals);
    if (!vals) return CV_ERR_NOMEM;
    cv_err e = CV_OK;
    cv_buf v = {0};
    size_t p = 0;
    for (int k = 0;; k++) {
        while (is_blank(text[p]))
            p++;
        if (text[p] == '"') {
            size_t open = p++;
            for (;;) {
                size_t q = p + strcspn(text + p, "\"\\");
                cv_buf_put(&v, text + p, q - p);
                if (!text[q]) {
                    cv_buf_printf(err, "value %d: the quote opened at byte %zu is never closed", k + 1, open);
                    e = CV_ERR_ARG;
                    goto out;
                }
                if (text[q] == '"') {
                    if (text[q + 1] != '"') {
                        p = q + 1;
                        break;
                    }
                    cv_buf_put(&v, "\"", 1); /* "" stands for one " */
                    p = q + 2;
                    continue;
                }
                int c = unescape(text + q + 1);
                if (c < 0) {
                    cv_buf_printf(err, "value %d: unknown escape at byte %zu (use \\\\ \\n \\r \\t or \\xHH)",
                                  k + 1, q);
                    e = CV_ERR_ARG;
                    goto out;
                }
                char ch = (char)c;
                cv_buf_put(&v, &ch, 1);
                p = q + (text[q + 1] == 'x' ? 4 : 2);
            }
            while (is_blank(text[p]))
                p++;
            if (text[p] && text[p] != ',') {
                unsigned char c = (unsigned char)text[p];
                if (c >= 0x20 && c < 0x7f)
                    cv_buf_printf(err, "value %d: unexpected '%c' at byte %zu after the closing quote", k + 1,
                                  c, p);
                else
                    cv_buf_printf(err, "value %d: unexpected byte 0x%02x at byte %zu after the closing quote",
                                  k + 1, c, p);
                e = CV_ERR_ARG;
                goto out;
            }
        } else {
            size_t start = p, end;
            while (text[p] && text[p] != ',' && text[p] != '"')
                p++;
            if (text[p] == '"') {
                cv_buf_printf(err,
                              "value %d: '\"' at byte %zu inside an unquoted value (quote the whole value)",
                              k + 1, p);
                e = CV_ERR_ARG;
                goto out;
            }
            for (end = p; end > start && is_blank(text[end - 1]);)
                end--;
            if (end == start) {
                cv_buf_printf(err, "value %d at byte %zu is empty (write \"\" for an empty string)", k + 1,
                              start);
                e = CV_ERR_ARG;
                goto out;
            }
            cv_buf_put(&v, text + start, end - start);
        }
        if (!(vals[k] = take(&v))) {
            e = CV_ERR_NOMEM;
            goto out;
        }
        if (!text[p]) {
            if (k + 1 == n) break;
            cv_buf_printf(err, "expected %d comma-separated values, found %d (the text ends at byte %zu)", n,
                          k + 1, p);
            e = CV_ERR_ARG;
            goto out;
        }
        if (k + 1 == n) {
            cv_buf_printf(err, "expected %d comma-separated values, found more (',' at byte %zu)", n, p);
            e = CV_ERR_ARG;
            goto out;
        }
        p++; /* the ',' */
    }
out:
    cv_buf_free(&v);
    cv_buf_free(&tmp);
    if (e) {
        cv_key_free(vals);
        return e;
    }
    *out = vals;
    return CV_OK;
}
