/* quix_probe.c: cv_quix driven by lines on stdin, for tests that compare it with Python.
 *   quix_probe change  lines {"kind","schema","table","cols":[{"name","type","typoid","kind","val"}],
 *                      "oldkeys":[...]} -> cv_quix_change's message, or "ERROR <why>"
 *   quix_probe floats  lines with a double (C99 hex or decimal) -> "<repr>\t<orjson>"
 *   quix_probe embed   lines {"change": "<CDC message>", "vec": [floats], "ts": ns}
 *                      -> cv_quix_embeddings' message, or "ERROR <why>"
 * One output line per input line. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/quix.h"

/* Fills vals from a JSON array of column objects; returns the count, -1 on a bad entry. */
static int read_cols(json_t *a, cv_quix_val **out) {
    size_t n = json_array_size(a);
    *out = calloc(n ? n : 1, sizeof **out);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(a, i), *v = json_object_get(c, "val");
        const char *k = json_string_value(json_object_get(c, "kind"));
        cv_quix_val *q = &(*out)[i];
        q->name = json_string_value(json_object_get(c, "name"));
        q->type = json_string_value(json_object_get(c, "type"));
        q->typoid = (uint32_t)json_integer_value(json_object_get(c, "typoid"));
        q->kind = k ? k[0] : '?';
        q->val = json_string_value(v);
        q->len = v ? json_string_length(v) : 0;
        if (!q->name || !q->type) return -1;
    }
    return (int)n;
}

/* One "change" line. */
static void do_change(const char *line, size_t len) {
    json_error_t je;
    json_t *o = json_loadb(line, len, 0, &je);
    if (!o) {
        printf("ERROR input: %s\n", je.text);
        return;
    }
    cv_quix_val *cols = NULL, *keys = NULL;
    int nc = read_cols(json_object_get(o, "cols"), &cols),
        nk = read_cols(json_object_get(o, "oldkeys"), &keys);
    cv_buf why = {0};
    cv_err e;
    char *msg = nc < 0 || nk < 0 ? NULL
                                 : cv_quix_change(json_string_value(json_object_get(o, "kind")),
                                                  json_string_value(json_object_get(o, "schema")),
                                                  json_string_value(json_object_get(o, "table")), cols, nc,
                                                  keys, nk, &e, &why);
    if (msg)
        printf("%s\n", msg);
    else
        printf("ERROR %s\n", why.p ? why.p : "bad column entry");
    free(msg), free(cols), free(keys), cv_buf_free(&why);
    json_decref(o);
}

/* One "embed" line. */
static void do_embed(const char *line, size_t len) {
    json_error_t je;
    json_t *o = json_loadb(line, len, 0, &je);
    json_t *ch = json_object_get(o, "change"), *vec = json_object_get(o, "vec");
    if (!o || !json_is_string(ch)) {
        printf("ERROR input\n");
        json_decref(o);
        return;
    }
    size_t dim = json_array_size(vec);
    float *v = calloc(dim ? dim : 1, sizeof *v);
    for (size_t i = 0; i < dim; i++)
        v[i] = (float)json_number_value(json_array_get(vec, i));
    cv_quix_change_msg m;
    cv_buf why = {0};
    cv_err e = cv_quix_parse_change(json_string_value(ch), json_string_length(ch), &m, &why);
    char *msg = NULL;
    if (!e) msg = cv_quix_embeddings(&m, v, (int)dim, json_integer_value(json_object_get(o, "ts")), &e, &why);
    if (msg)
        printf("%s\n", msg);
    else
        printf("ERROR %s\n", why.p ? why.p : "?");
    if (!e) cv_quix_change_msg_free(&m);
    free(msg), free(v), cv_buf_free(&why);
    json_decref(o);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "change") && strcmp(mode, "floats") && strcmp(mode, "embed")) {
        fprintf(stderr, "usage: quix_probe change|floats|embed < lines\n");
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        if (mode[0] == 'c') {
            do_change(line, (size_t)n);
        } else if (mode[0] == 'e') {
            do_embed(line, (size_t)n);
        } else {
            cv_buf b = {0};
            double x = strtod(line, NULL);
            cv_quix_put_pyfloat(&b, x);
            cv_buf_put(&b, "\t", 1);
            cv_quix_put_orjson_float(&b, x);
            printf("%s\n", b.p);
            cv_buf_free(&b);
        }
    }
    free(line);
    return 0;
}
