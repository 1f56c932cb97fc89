/* cv_buf.c: doubling growth; printf formats straight into the spare room. */
#include "cv_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int reserve(cv_buf *b, size_t extra) {
    if (b->oom) return -1;
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = (b->cap ? b->cap * 2 : 1024) + extra;
    char *q = realloc(b->p, cap);
    if (!q) {
        b->oom = 1;
        return -1;
    }
    b->p = q;
    b->cap = cap;
    return 0;
}

void cv_buf_put(cv_buf *b, const char *s, size_t n) {
    if (reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void cv_buf_puts(cv_buf *b, const char *s) { cv_buf_put(b, s, strlen(s)); }

void cv_buf_printf(cv_buf *b, const char *fmt, ...) {
    for (size_t want = 256;;) {
        if (reserve(b, want)) return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        want = (size_t)n + 1;
    }
}

void cv_buf_free(cv_buf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

void cv_json_string(cv_buf *out, const char *s, size_t n) {
    static const char *const esc[32] = {
        ['\b'] = "\\b", ['\f'] = "\\f", ['\n'] = "\\n", ['\r'] = "\\r", ['\t'] = "\\t"};
    cv_buf_put(out, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        cv_buf_put(out, s + run, i - run);
        if (c >= 0x20)
            cv_buf_put(out, c == '"' ? "\\\"" : "\\\\", 2);
        else if (esc[c])
            cv_buf_puts(out, esc[c]);
        else
            cv_buf_printf(out, "\\u%04x", c);
        run = i + 1;
    }
    cv_buf_put(out, s + run, n - run);
    cv_buf_put(out, "\"", 1);
}
