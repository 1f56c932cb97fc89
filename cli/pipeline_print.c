/* pipeline_print.c: the resolved pipeline as YAML (--print) and the file's keys as Markdown
 * (docs/CONFIG.md), both from the command's property table. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "pipeline.h"

/* s with a password (URI user:PASSWORD@ or password=...) replaced by *** */
static void redacted(cv_buf *out, const char *s) {
    cv_buf b = {0};
    const char *sep = strstr(s, "://"), *pw = strstr(s, "password=");
    if (sep) {
        const char *at = strchr(sep + 3, '@'), *slash = strchr(sep + 3, '/'), *colon = strchr(sep + 3, ':');
        if (at && (!slash || at < slash) && colon && colon < at) {
            cv_buf_put(&b, s, (size_t)(colon + 1 - s));
            cv_buf_puts(&b, "***");
            s = at;
        }
    } else if (pw && (pw == s || isspace((unsigned char)pw[-1]))) {
        cv_buf_put(&b, s, (size_t)(pw + 9 - s));
        cv_buf_puts(&b, "***");
        s = pw + 9;
        if (*s == '\'')
            for (s++; *s && *s != '\''; s++)
                if (*s == '\\' && s[1]) s++;
        while (*s && !isspace((unsigned char)*s))
            s++;
    }
    cv_buf_puts(&b, s);
    cv_json_string(out, b.p ? b.p : "", b.len);
    cv_buf_free(&b);
}

static void value(FILE *f, const cv_conf_prop *p, const void *conf) {
    const char *at = (const char *)conf + p->offset;
    cv_buf b = {0};
    if (p->type == CV_CONF_INT)
        cv_buf_printf(&b, "%ld", *(const long *)at);
    else if (p->type == CV_CONF_DOUBLE)
        cv_buf_printf(&b, "%.17g", *(const double *)at);
    else {
        const char *s = *(const char *const *)at;
        if (!s) s = "";
        if (!strcmp(p->name, "sink") && !*s)
            cv_buf_puts(&b, "pgvector");
        else if (!strcmp(p->name, "sink") || !strcmp(p->name, "embed"))
            redacted(&b, s);
        else
            cv_json_string(&b, s, strlen(s));
    }
    fputs(b.p ? b.p : "", f);
    cv_buf_free(&b);
}

void cv_pipeline_print(FILE *f, const cv_pipeline *pl, const cv_conf_prop *props, const unsigned char *scope,
                       int n) {
    char k[64];
    cv_buf b = {0};
    fprintf(f,
            "# the resolved pipeline of %s: a table's own keys > command line > environment > defaults: > "
            "built-in\n",
            pl->file ? pl->file : "the command line");
    redacted(&b, pl->source ? pl->source : "");
    fprintf(f, "source: %s\ndefaults:\n", b.p);
    cv_buf_free(&b);
    const void *c0 = pl->ntables ? pl->tables[0].conf : NULL;
    for (int i = 0; i < n && c0; i++)
        if (scope[i] == CV_PIPE_PROCESS) {
            fprintf(f, "  %s: ", cv_pipeline_key(props[i].name, k, sizeof k));
            value(f, &props[i], c0);
            fputc('\n', f);
        }
    fprintf(f, "tables:\n");
    for (int j = 0; j < pl->ntables; j++) {
        const cv_pipe_table *t = &pl->tables[j];
        int first = 1, tmpl = 0;
        for (int i = 0; i < n; i++)
            if (!strcmp(props[i].name, "template"))
                tmpl = **(const char *const *)((const char *)t->conf + props[i].offset) != 0;
        for (int i = 0; i < n; i++) {
            if (scope[i] != CV_PIPE_TABLE) continue;
            if (!strcmp(props[i].name, tmpl ? "text-column" : "template")) continue;
            fprintf(f, "%s%s: ", first ? "  - " : "    ", cv_pipeline_key(props[i].name, k, sizeof k));
            value(f, &props[i], t->conf);
            fputc('\n', f);
            first = 0;
        }
        if (t->where) {
            cv_json_string(&b, t->where, strlen(t->where));
            fprintf(f, "    where: %s\n", b.p);
            cv_buf_free(&b);
        }
        if (t->columns) {
            fprintf(f, "    columns: [");
            char *cols = strdup(t->columns), *save = NULL;
            int c = 0;
            for (char *x = cols ? strtok_r(cols, ",", &save) : NULL; x; x = strtok_r(NULL, ",", &save), c++) {
                cv_json_string(&b, x, strlen(x));
                fprintf(f, "%s%s", c ? ", " : "", b.p);
                cv_buf_free(&b);
            }
            free(cols);
            fprintf(f, "]\n");
        }
        if (t->chunk_max_tokens)
            fprintf(f, "    chunk: {max_tokens: %ld, overlap: %ld}\n", t->chunk_max_tokens, t->chunk_overlap);
    }
}

void cv_pipeline_markdown(FILE *f, const cv_conf_prop *props, const unsigned char *scope, int n) {
    char k[64];
    fprintf(f, "| key | where | option | type | meaning |\n|---|---|---|---|---|\n");
    fprintf(f,
            "| `source` | top level (required) | `--source` | string | the source database; never a password "
            "(PGPASSWORD, PGPASSWORD_FILE or ~/.pgpass) |\n");
    for (int i = 0; i < n; i++) {
        if (scope[i] != CV_PIPE_PROCESS && scope[i] != CV_PIPE_TABLE) continue;
        const char *where = scope[i] == CV_PIPE_PROCESS       ? "defaults"
                            : !strcmp(props[i].name, "table") ? "table (required)"
                                                              : "table, defaults";
        char opt[80]; /* a key of the file alone has no option (nor variable) */
        snprintf(opt, sizeof opt, props[i].env ? "`--%s`" : "(file only)", props[i].name);
        fprintf(f, "| `%s` | %s | %s | %s | %s%s |\n", cv_pipeline_key(props[i].name, k, sizeof k), where,
                opt,
                props[i].type == CV_CONF_STR   ? "string"
                : props[i].type == CV_CONF_INT ? "integer"
                                               : "number",
                !strcmp(props[i].name, "sink")
                    ? "`pgvector` (the source database), a pgvector database's URL, or "
                      "the same URLs as `--sink`: "
                    : "",
                props[i].doc);
    }
    fprintf(
        f, "| `where` | table | | string | PostgreSQL 15 publication row filter, e.g. `published AND NOT "
           "draft`: only the rows that pass it are embedded (backfill and stream; a row that stops passing "
           "it is removed); a filter on columns outside the replica identity is refused unless the table has "
           "REPLICA IDENTITY FULL (see below) |\n");
    fprintf(f,
            "| `columns` | table | | list of strings | PostgreSQL 15 publication column list: only these "
            "columns are "
            "published, backfilled and kept in the payload; it must hold the primary key and the text column "
            "(or the template's columns), and cover the replica identity (see below) |\n");
    fprintf(f,
            "| `chunk` | table, defaults | | `{max_tokens: 8..8192, overlap: 0..max_tokens-1}` | split "
            "long texts "
            "on the model's tokens, as --chunk-max-tokens and --chunk-overlap (pgvector and the in-process "
            "model) |\n");
}
