/* textio.c: line and JSONL readers with line-numbered errors. */
#define _POSIX_C_SOURCE 200809L
#include "textio.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"

static cv_err push(cv_textbuf *tb, const char *s, size_t n) {
    if (tb->n == tb->cap) {
        int cap = tb->cap ? tb->cap * 2 : 64;
        char **t = realloc(tb->text, sizeof(char *) * (size_t)cap);
        if (!t) return CV_ERR_NOMEM;
        tb->text = t;
        size_t *l = realloc(tb->len, sizeof(size_t) * (size_t)cap);
        if (!l) return CV_ERR_NOMEM;
        tb->len = l;
        tb->cap = cap;
    }
    char *c = malloc(n + 1);
    if (!c) return CV_ERR_NOMEM;
    memcpy(c, s, n);
    c[n] = 0;
    tb->text[tb->n] = c;
    tb->len[tb->n++] = n;
    return CV_OK;
}

cv_err cv_textbuf_read(cv_textbuf *tb, FILE *f, const char *name, long *lineno, int max, int jsonl,
                       const char *field) {
    char *line = NULL;
    size_t cap = 0;
    cv_err err = CV_OK;
    int got = 0;
    while (got < max) {
        ssize_t n = getline(&line, &cap, f);
        if (n < 0) break;
        ++*lineno;
        if (n > 0 && line[n - 1] == '\n') n--;
        if (n > 0 && line[n - 1] == '\r') n--;
        if (!jsonl) {
            if ((err = push(tb, line, (size_t)n))) break;
            got++;
            continue;
        }
        json_error_t je;
        json_t *v = json_loadb(line, (size_t)n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        json_t *s = json_is_object(v) ? json_object_get(v, field) : v;
        if (!v) {
            cv_error("event=bad_input input=%s line=%ld column=%d error=\"invalid JSON: %s\"", name, *lineno,
                     je.column, je.text);
            err = CV_ERR_FORMAT;
        } else if (!json_is_string(s)) {
            cv_error("event=bad_input input=%s line=%ld error=\"expected a JSON string or an object "
                     "with a string field '%s'\"",
                     name, *lineno, field);
            err = CV_ERR_FORMAT;
        } else {
            err = push(tb, json_string_value(s), json_string_length(s));
        }
        json_decref(v);
        if (err) break;
        got++;
    }
    if (!err && ferror(f)) {
        cv_error("event=read_failed input=%s line=%ld", name, *lineno);
        err = CV_ERR_IO;
    }
    free(line);
    return err;
}

void cv_textbuf_clear(cv_textbuf *tb) {
    for (int i = 0; i < tb->n; i++)
        free(tb->text[i]);
    tb->n = 0;
}

void cv_textbuf_free(cv_textbuf *tb) {
    cv_textbuf_clear(tb);
    free(tb->text);
    free(tb->len);
    memset(tb, 0, sizeof *tb);
}
