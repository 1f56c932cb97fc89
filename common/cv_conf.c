/* cv_conf.c: parsing and documenting a property table. */
#define _POSIX_C_SOURCE 200809L
#include "cv_conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cv_buf.h"

int cv_conf_set(const cv_conf_prop *p, void *target, const char *value, const char *source) {
    char *end;
    errno = 0;
    switch (p->type) {
    case CV_CONF_STR: *(const char **)((char *)target + p->offset) = value; return 0;
    case CV_CONF_INT: {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < p->min || v > p->max) {
            fprintf(stderr, "cdcvec: %s: expected an integer in [%.0f, %.0f], got '%s'\n", source, p->min,
                    p->max, value);
            return -1;
        }
        *(long *)((char *)target + p->offset) = v;
        return 0;
    }
    case CV_CONF_DOUBLE: {
        double v = strtod(value, &end);
        if (errno || end == value || *end || v < p->min || v > p->max) {
            fprintf(stderr, "cdcvec: %s: expected a number in [%g, %g], got '%s'\n", source, p->min, p->max,
                    value);
            return -1;
        }
        *(double *)((char *)target + p->offset) = v;
        return 0;
    }
    }
    return -1;
}

int cv_conf_parse(const cv_conf_prop *props, int n, void *target, int argc, char **argv,
                  const char *usage_line) {
    char src[160];
    for (int i = 0; i < n; i++)
        if (cv_conf_set(&props[i], target, props[i].def, "default")) return 2;
    for (int i = 0; i < n; i++) {
        const char *v = props[i].env ? getenv(props[i].env) : NULL;
        if (!v) continue;
        snprintf(src, sizeof src, "environment variable %s", props[i].env);
        if (cv_conf_set(&props[i], target, v, src)) return 2;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cv_conf_usage(stdout, props, n, usage_line);
            return 1;
        }
        if (strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "cdcvec: unexpected argument '%s'\n", arg);
            cv_conf_usage(stderr, props, n, usage_line);
            return 2;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const cv_conf_prop *p = NULL;
        for (int i = 0; i < n; i++)
            if (strlen(props[i].name) == nl && strncmp(props[i].name, name, nl) == 0) p = &props[i];
        if (!p) {
            fprintf(stderr, "cdcvec: unknown option '--%.*s'\n", (int)nl, name);
            cv_conf_usage(stderr, props, n, usage_line);
            return 2;
        }
        const char *v = eq ? eq + 1 : (a + 1 < argc ? argv[++a] : NULL);
        if (!v) {
            fprintf(stderr, "cdcvec: --%s needs a value\n", p->name);
            return 2;
        }
        snprintf(src, sizeof src, "--%s", p->name);
        if (cv_conf_set(p, target, v, src)) return 2;
    }
    return 0;
}

void cv_conf_usage(FILE *f, const cv_conf_prop *props, int n, const char *usage_line) {
    fprintf(f, "%s\n\n", usage_line);
    for (int i = 0; i < n; i++) {
        char opt[64];
        snprintf(opt, sizeof opt, "--%s %s", props[i].name,
                 props[i].type == CV_CONF_STR   ? "S"
                 : props[i].type == CV_CONF_INT ? "N"
                                                : "X");
        fprintf(f, "  %-28s %s (default %s%s%s)\n", opt, props[i].doc, *props[i].def ? props[i].def : "none",
                props[i].env ? "; env " : "", props[i].env ? props[i].env : "");
    }
}

void cv_conf_markdown(FILE *f, const cv_conf_prop *props, int n) {
    fprintf(f, "| option | environment | type | default | range | meaning |\n|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        char range[64] = "";
        if (props[i].type != CV_CONF_STR)
            snprintf(range, sizeof range, "%g .. %g", props[i].min, props[i].max);
        fprintf(f, "| `--%s` | `%s` | %s | `%s` | %s | %s |\n", props[i].name,
                props[i].env ? props[i].env : "",
                props[i].type == CV_CONF_STR   ? "string"
                : props[i].type == CV_CONF_INT ? "integer"
                                               : "number",
                props[i].def, range, props[i].doc);
    }
}

char *cv_conf_secret(const char *name, const char **err) {
    *err = NULL;
    const char *v = getenv(name);
    if (v && *v) return strdup(v);
    char fname[128];
    snprintf(fname, sizeof fname, "%s_FILE", name);
    const char *path = getenv(fname);
    if (!path || !*path) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *err = strerror(errno);
        return NULL;
    }
    cv_buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        cv_buf_put(&b, chunk, n);
    fclose(f);
    while (b.p && b.len && isspace((unsigned char)b.p[b.len - 1]))
        b.p[--b.len] = 0;
    if (!b.p) b.p = strdup("");
    return b.p;
}
