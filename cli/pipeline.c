/* pipeline.c: reading, checking, resolving and printing the pipeline file (pipeline.h). */
#define _POSIX_C_SOURCE 200809L
#include "pipeline.h"

#include <ctype.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"

/* keys of the file that are not (yet) options of the command: where, columns, chunk */
static const char *const RESERVED[] = {"where", "columns", "chunk"};
#define NRESERVED 3

typedef struct {
    const char *cmd, *path;
    const cv_conf_prop *props;
    const unsigned char *scope;
    const char *const *choices;
    int n, errors;
    yaml_document_t *doc;
    cv_pipeline *pl;
} loader;

const char *cv_pipeline_key(const char *prop, char *buf, size_t n) {
    if (!strcmp(prop, "text-column")) prop = "text";
    if (!strcmp(prop, "sink")) prop = "store";
    snprintf(buf, n, "%s", prop);
    for (char *p = buf; *p; p++)
        if (*p == '-') *p = '_';
    return buf;
}

static void err(loader *L, const yaml_node_t *at, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void err(loader *L, const yaml_node_t *at, const char *key, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "cdcvec %s: %s", L->cmd, L->path);
    if (at) fprintf(stderr, ":%zu:%zu", at->start_mark.line + 1, at->start_mark.column + 1);
    fprintf(stderr, ": %s: ", key);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    L->errors++;
}

static yaml_node_t *node(loader *L, int i) { return yaml_document_get_node(L->doc, i); }

static const char *kind(const yaml_node_t *v) {
    return v->type == YAML_MAPPING_NODE ? "a mapping" : v->type == YAML_SEQUENCE_NODE ? "a list" : "a value";
}

static int is_null(const yaml_node_t *v) {
    if (v->type != YAML_SCALAR_NODE || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = (const char *)v->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), d[64];
    if (lb >= 63) return 99;
    for (size_t j = 0; j <= lb; j++)
        d[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t prev = d[0];
        d[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t t = d[j],
                   c = prev + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            if (d[j] + 1 < c) c = d[j] + 1;
            if (d[j - 1] + 1 < c) c = d[j - 1] + 1;
            d[j] = c;
            prev = t;
        }
    }
    return d[lb];
}

/* where: 0 top level, 1 defaults:, 2 a table's entry. The keys known there, ", "-joined. */
static void known_keys(loader *L, int where, cv_buf *out) {
    char k[64];
    if (where == 0) {
        cv_buf_puts(out, "source, defaults, tables");
        return;
    }
    for (int i = 0; i < L->n; i++) {
        int s = L->scope[i];
        if (s == CV_PIPE_TABLE || (s == CV_PIPE_PROCESS && where == 1)) {
            if (where == 1 && !strcmp(L->props[i].name, "table")) continue;
            cv_buf_printf(out, "%s%s", out->len ? ", " : "", cv_pipeline_key(L->props[i].name, k, sizeof k));
        }
    }
    for (int r = 0; r < NRESERVED; r++)
        if (where == 2 || !strcmp(RESERVED[r], "chunk")) cv_buf_printf(out, ", %s", RESERVED[r]);
}

static void unknown_key(loader *L, const yaml_node_t *kn, const char *path, const char *key, int where) {
    char k[64];
    for (int i = 0; i < L->n; i++) { /* a known property in the wrong place */
        if (strcmp(cv_pipeline_key(L->props[i].name, k, sizeof k), key)) continue;
        int s = L->scope[i];
        if (s == CV_PIPE_CLI) {
            err(L, kn, path, "an option of one run, not a pipeline key; fix: pass --%s on the command line",
                L->props[i].name);
            return;
        }
        if (s == CV_PIPE_PROCESS && where == 2) {
            err(L, kn, path, "applies to the whole process, not one table; fix: move it under defaults:");
            return;
        }
        if (s == CV_PIPE_SOURCE) {
            err(L, kn, path, "one source per file; fix: write it once at the top level (source: ...)");
            return;
        }
        if (!strcmp(key, "table") && where == 1) {
            err(L, kn, path, "defaults name no table; fix: list tables under tables: (- table: schema.name)");
            return;
        }
    }
    if (where != 2 && (!strcmp(key, "where") || !strcmp(key, "columns"))) {
        err(L, kn, path, "belongs to one table; fix: move it into that table's entry under tables:");
        return;
    }
    cv_buf known = {0};
    known_keys(L, where, &known);
    const char *best = NULL;
    size_t bd = 99;
    char *save = NULL, *list = known.p ? strdup(known.p) : NULL;
    for (char *t = list ? strtok_r(list, ", ", &save) : NULL; t; t = strtok_r(NULL, ", ", &save)) {
        size_t d = edit_distance(key, t);
        if (d < bd) bd = d, best = t;
    }
    size_t len = strlen(key);
    if (best && bd <= (len > 6 ? 3 : 2))
        err(L, kn, path, "unknown key; fix: did you mean '%s'? (known here: %s)", best, known.p);
    else
        err(L, kn, path, "unknown key; fix: use one of %s", known.p ? known.p : "");
    free(list);
    cv_buf_free(&known);
}

/* A PostgreSQL connection string without a password, or a store form. 0 when fine. */
static int check_conninfo(loader *L, const yaml_node_t *v, const char *path, const char *s, int store) {
    if (store) {
        if (!strcmp(s, "pgvector") || !strncmp(s, "qdrant://", 9) || !strncmp(s, "qdrants://", 10) ||
            !strncmp(s, "upstash://", 10))
            return 0;
    }
    const char *sep = strstr(s, "://");
    if (sep && strncmp(s, "postgres://", 11) && strncmp(s, "postgresql://", 13) &&
        !memchr(s, '=', (size_t)(sep - s))) {
        err(L, v, path, "unknown scheme '%.*s://'; fix: %s", (int)(sep - s), s,
            store ? "pgvector (the source database), postgresql://user@host/db (pgvector there), "
                    "qdrant://HOST:PORT/COLLECTION (qdrants:// for TLS) or upstash:// (namespace: NAME)"
                  : "postgresql://user@host:5432/db or key=value pairs such as 'host=db dbname=shop'");
        return -1;
    }
    if (strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == strlen(s)) return 0;
    char *e = NULL;
    PQconninfoOption *o = PQconninfoParse(s, &e);
    if (!o) {
        size_t n = e ? strlen(e) : 0;
        while (n && (e[n - 1] == '\n' || e[n - 1] == ' '))
            n--;
        err(L, v, path, "not a PostgreSQL connection string (%.*s); fix: postgresql://user@host:5432/db",
            (int)n, e ? e : "out of memory");
        PQfreemem(e);
        return -1;
    }
    int pw = 0;
    for (PQconninfoOption *p = o; p->keyword; p++)
        if (!strcmp(p->keyword, "password") && p->val && *p->val) pw = 1;
    PQconninfoFree(o);
    if (pw) {
        err(L, v, path,
            "a password does not belong in the file; fix: remove it and set PGPASSWORD or PGPASSWORD_FILE "
            "(or ~/.pgpass)");
        return -1;
    }
    return 0;
}

static int find_prop(loader *L, const char *key) {
    char k[64];
    for (int i = 0; i < L->n; i++)
        if (!strcmp(cv_pipeline_key(L->props[i].name, k, sizeof k), key)) return i;
    return -1;
}

static int check_number(loader *L, const yaml_node_t *v, const char *path, const cv_conf_prop *p,
                        const char *s) {
    char *end;
    errno = 0;
    double d = p->type == CV_CONF_INT ? (double)strtol(s, &end, 10) : strtod(s, &end);
    if (errno || end == s || *end || d < p->min || d > p->max) {
        err(L, v, path, "expected %s in [%.*f, %.*f], got '%s'; fix: write a number in that range",
            p->type == CV_CONF_INT ? "an integer" : "a number", p->type == CV_CONF_INT ? 0 : 3, p->min,
            p->type == CV_CONF_INT ? 0 : 3, p->max, s);
        return -1;
    }
    return 0;
}

static void add_val(cv_pipe_val **vals, int *n, int prop, const yaml_node_t *v, const char *text,
                    const char *key) {
    cv_pipe_val *nv = realloc(*vals, sizeof **vals * (size_t)(*n + 1));
    if (!nv) return;
    *vals = nv;
    nv[*n] = (cv_pipe_val){prop, strdup(text), (int)v->start_mark.line + 1, (int)v->start_mark.column + 1,
                           strdup(key)};
    (*n)++;
}

static int scalar(loader *L, const yaml_node_t *v, const char *path) {
    if (v->type != YAML_SCALAR_NODE) {
        err(L, v, path, "expected a single value, got %s; fix: write %s: VALUE", kind(v), path);
        return -1;
    }
    if (is_null(v)) {
        err(L, v, path, "has no value; fix: write one after the colon");
        return -1;
    }
    return 0;
}

static void reserved(loader *L, cv_pipe_table *t, const yaml_node_t *v, const char *path, const char *key) {
    if (!strcmp(key, "where")) {
        if (scalar(L, v, path)) return;
        t->where = strdup((const char *)v->data.scalar.value);
        t->where_line = (int)v->start_mark.line + 1;
    } else if (!strcmp(key, "columns")) {
        if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top == v->data.sequence.items.start) {
            err(L, v, path, "expected a list of column names, got %s; fix: columns: [id, title, body]",
                v->type == YAML_SEQUENCE_NODE ? "an empty list" : kind(v));
            return;
        }
        cv_buf b = {0};
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            yaml_node_t *c = node(L, *it);
            if (c->type != YAML_SCALAR_NODE || is_null(c)) {
                err(L, c, path, "expected a column name, got %s; fix: columns: [id, title, body]", kind(c));
                cv_buf_free(&b);
                return;
            }
            cv_buf_printf(&b, "%s%s", b.len ? "," : "", (const char *)c->data.scalar.value);
        }
        t->columns = b.p;
        t->columns_line = (int)v->start_mark.line + 1;
        cv_buf at = {0};
        cv_buf_printf(&at, "%s:%zu:%zu: %s", L->path, v->start_mark.line + 1, v->start_mark.column + 1, path);
        t->columns_at = at.p;
    } else { /* chunk */
        if (v->type != YAML_MAPPING_NODE) {
            err(L, v, path, "expected a mapping, got %s; fix: chunk: {max_tokens: 256, overlap: 32}",
                kind(v));
            return;
        }
        static const cv_conf_prop mt = {"max_tokens", NULL, CV_CONF_INT, "", 8, 8192, 0, ""},
                                  ov = {"overlap", NULL, CV_CONF_INT, "", 0, 8191, 0, ""};
        t->chunk_line = (int)v->start_mark.line + 1;
        for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
            yaml_node_t *k = node(L, p->key), *x = node(L, p->value);
            char sub[480];
            const char *ks = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
            snprintf(sub, sizeof sub, "%s.%s", path, ks);
            int is_mt = !strcmp(ks, "max_tokens");
            if (!is_mt && strcmp(ks, "overlap")) {
                err(L, k, sub, "unknown key; fix: chunk takes max_tokens and overlap");
                continue;
            }
            if (scalar(L, x, sub) ||
                check_number(L, x, sub, is_mt ? &mt : &ov, (const char *)x->data.scalar.value))
                continue;
            *(is_mt ? &t->chunk_max_tokens : &t->chunk_overlap) =
                strtol((const char *)x->data.scalar.value, NULL, 10);
        }
        if (!t->chunk_max_tokens)
            err(L, v, path, "max_tokens missing; fix: chunk: {max_tokens: 256, overlap: 32}");
        else if (t->chunk_overlap >= t->chunk_max_tokens)
            err(L, v, path, "overlap %ld is not below max_tokens %ld; fix: a smaller overlap",
                t->chunk_overlap, t->chunk_max_tokens);
    }
}

static int one_of(const char *alts, const char *s) {
    size_t n = strlen(s);
    for (const char *a = alts; a;) {
        const char *bar = strchr(a, '|');
        size_t l = bar ? (size_t)(bar - a) : strlen(a);
        if (l == n && !strncmp(a, s, n)) return 1;
        a = bar ? bar + 1 : NULL;
    }
    return 0;
}

/* A mapping of keys (defaults: where 1, a table: where 2) into vals / t. */
static void keys(loader *L, const yaml_node_t *m, const char *base, int where, cv_pipe_val **vals, int *nvals,
                 cv_pipe_table *t) {
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(L, p->key), *v = node(L, p->value);
        char path[400];
        if (k->type != YAML_SCALAR_NODE) {
            err(L, k, base, "a key must be a name, got %s; fix: key: value", kind(k));
            continue;
        }
        const char *key = (const char *)k->data.scalar.value;
        snprintf(path, sizeof path, "%s.%s", base, key);
        int dup = 0;
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p && !dup; q++) {
            yaml_node_t *qk = node(L, q->key);
            if (qk->type == YAML_SCALAR_NODE && !strcmp((const char *)qk->data.scalar.value, key)) {
                err(L, k, path, "given twice (first at line %zu); fix: keep one", qk->start_mark.line + 1);
                dup = 1;
            }
        }
        if (dup) continue;
        int i = find_prop(L, key);
        int ok = i >= 0 && (L->scope[i] == CV_PIPE_TABLE || (L->scope[i] == CV_PIPE_PROCESS && where == 1)) &&
                 !(where == 1 && !strcmp(key, "table"));
        if (!ok) {
            int r = 0;
            while (r < NRESERVED && strcmp(RESERVED[r], key))
                r++;
            if (i < 0 && r < NRESERVED && (where == 2 || !strcmp(key, "chunk"))) {
                reserved(L, t, v, path, key);
                continue;
            }
            unknown_key(L, k, path, key, where);
            continue;
        }
        if (scalar(L, v, path)) continue;
        const char *s = (const char *)v->data.scalar.value;
        if (L->props[i].type != CV_CONF_STR && check_number(L, v, path, &L->props[i], s)) continue;
        if (L->choices && L->choices[i] && !one_of(L->choices[i], s)) {
            cv_buf alts = {0};
            for (const char *c = L->choices[i]; *c; c++)
                cv_buf_put(&alts, *c == '|' ? ", " : c, *c == '|' ? 2 : 1);
            err(L, v, path, "'%s' is not accepted; fix: write one of %s", s, alts.p);
            cv_buf_free(&alts);
            continue;
        }
        if (!strcmp(key, "store")) {
            if (check_conninfo(L, v, path, s, 1)) continue;
            if (!strcmp(s, "pgvector")) s = "";
        }
        if (!strcmp(key, "table") && !*s) {
            err(L, v, path, "empty; fix: table: schema.name");
            continue;
        }
        if (!strcmp(key, "table")) {
            t->table = strdup(s);
            t->line = (int)k->start_mark.line + 1;
            t->col = (int)k->start_mark.column + 1;
        }
        add_val(vals, nvals, i, v, s, path);
    }
}

static int has(const cv_pipe_val *v, int n, const cv_conf_prop *props, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(props[v[i].prop].name, name)) return 1;
    return 0;
}

/* schema.table as PostgreSQL folds it, for finding two entries of one table */
static void norm_table(const char *s, char *out, size_t n) {
    snprintf(out, n, "%s%s", strchr(s, '.') ? "" : "public.", s);
    if (!strchr(out, '"'))
        for (char *p = out; *p; p++)
            *p = (char)tolower((unsigned char)*p);
}

static void top(loader *L, const yaml_node_t *root) {
    cv_pipeline *pl = L->pl;
    const yaml_node_t *tables = NULL, *defaults = NULL;
    if (root->type != YAML_MAPPING_NODE) {
        err(L, root, "(top)",
            "expected a mapping with source:, defaults: and tables:, got %s; fix: see the example "
            "in docs/CONFIG.md",
            kind(root));
        return;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node(L, p->key), *v = node(L, p->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        int seen = 0;
        for (yaml_node_pair_t *q = root->data.mapping.pairs.start; q < p && !seen; q++) {
            yaml_node_t *qk = node(L, q->key);
            if (qk->type == YAML_SCALAR_NODE && !strcmp((const char *)qk->data.scalar.value, key)) {
                err(L, k, key, "given twice (first at line %zu); fix: keep one", qk->start_mark.line + 1);
                seen = 1;
            }
        }
        if (seen) continue;
        if (!strcmp(key, "source")) {
            if (scalar(L, v, key)) continue;
            const char *s = (const char *)v->data.scalar.value;
            if (check_conninfo(L, v, key, s, 0)) continue;
            pl->source = strdup(s);
            pl->source_line = (int)v->start_mark.line + 1;
        } else if (!strcmp(key, "defaults")) {
            if (is_null(v)) continue;
            if (v->type != YAML_MAPPING_NODE) {
                err(L, v, key,
                    "expected a mapping, got %s; fix: defaults: {model: all-MiniLM-L6-v2, store: pgvector}",
                    kind(v));
                continue;
            }
            defaults = v;
        } else if (!strcmp(key, "tables")) {
            if (v->type != YAML_SEQUENCE_NODE) {
                err(L, v, key,
                    "expected a list, got %s; fix: tables: [{table: public.books, text: description}]",
                    kind(v));
                continue;
            }
            tables = v;
        } else {
            unknown_key(L, k, key, key, 0);
        }
    }
    if (!pl->source && !L->errors)
        err(L, root, "source",
            "missing; fix: add source: postgresql://user@host/db (the password from PGPASSWORD or "
            "PGPASSWORD_FILE)");
    cv_pipe_table dt = {0}; /* defaults: a chunk there applies to the tables without one */
    if (defaults) keys(L, defaults, "defaults", 1, &pl->defaults, &pl->ndefaults, &dt);
    if (!tables) {
        if (!L->errors)
            err(L, root, "tables", "missing; fix: add tables: [{table: public.books, text: description}]");
        return;
    }
    int n = (int)(tables->data.sequence.items.top - tables->data.sequence.items.start);
    if (!n) err(L, tables, "tables", "empty; fix: list at least one table (- table: public.books)");
    pl->tables = calloc((size_t)(n ? n : 1), sizeof *pl->tables);
    if (!pl->tables) return;
    for (int j = 0; j < n; j++) {
        yaml_node_t *e = node(L, tables->data.sequence.items.start[j]);
        cv_pipe_table *t = &pl->tables[pl->ntables++];
        char base[32];
        snprintf(base, sizeof base, "tables[%d]", j);
        t->line = (int)e->start_mark.line + 1;
        t->col = (int)e->start_mark.column + 1;
        if (e->type != YAML_MAPPING_NODE) {
            err(L, e, base, "expected a mapping, got %s; fix: {table: public.books, text: description}",
                kind(e));
            continue;
        }
        int before = L->errors;
        keys(L, e, base, 2, &t->vals, &t->nvals, t);
        if (L->errors > before) continue;
        if (!t->table) {
            err(L, e, base, "no table; fix: add table: schema.name to this entry");
            continue;
        }
        int tx = has(t->vals, t->nvals, L->props, "text-column"),
            tp = has(t->vals, t->nvals, L->props, "template");
        if (tx && tp)
            err(L, e, base,
                "both text and template (%s); fix: keep one: text: COLUMN or template: \"{a} {b}\"",
                t->table);
        else if (!tx && !tp && !has(pl->defaults, pl->ndefaults, L->props, "text-column") &&
                 !has(pl->defaults, pl->ndefaults, L->props, "template"))
            err(L, e, base,
                "neither text nor template (%s); fix: add text: COLUMN or template: \"{title}: {body}\"",
                t->table);
        if (!t->chunk_line && dt.chunk_line) {
            t->chunk_max_tokens = dt.chunk_max_tokens, t->chunk_overlap = dt.chunk_overlap;
            t->chunk_line = dt.chunk_line;
        }
        char a[256], b[256];
        norm_table(t->table, a, sizeof a);
        for (int i = 0; i < j; i++) {
            if (!pl->tables[i].table) continue;
            norm_table(pl->tables[i].table, b, sizeof b);
            if (!strcmp(a, b))
                err(L, e, base, "%s is already tables[%d] (line %d); fix: one entry per table: merge the two",
                    a, i, pl->tables[i].line);
        }
    }
}

int cv_pipeline_load(const char *cmd, const char *path, const cv_conf_prop *props, const unsigned char *scope,
                     const char *const *choices, int n, cv_pipeline *pl) {
    memset(pl, 0, sizeof *pl);
    pl->file = strdup(path);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cdcvec %s: --config %s: cannot read it (%s); fix: name an existing YAML file\n", cmd,
                path, strerror(errno));
        return -1;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    loader L = {cmd, path, props, scope, choices, n, 0, &doc, pl};
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_mark_t m = parser.problem_mark;
        fprintf(stderr,
                "cdcvec %s: %s:%zu:%zu: YAML syntax error: %s%s%s; fix: correct the YAML at that place\n",
                cmd, path, m.line + 1, m.column + 1, parser.problem ? parser.problem : "unreadable",
                parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        fclose(f);
        return -1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root)
        fprintf(stderr, "cdcvec %s: %s: empty; fix: write source: and tables: (docs/CONFIG.md)\n", cmd, path),
            L.errors++;
    else
        top(&L, root);
    yaml_document_t more; /* a second document is an error, not ignored */
    if (root && !yaml_parser_load(&parser, &more)) {
        fprintf(stderr, "cdcvec %s: %s:%zu:%zu: YAML syntax error: %s; fix: correct the YAML at that place\n",
                cmd, path, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                parser.problem ? parser.problem : "unreadable");
        L.errors++;
    } else if (root) {
        yaml_node_t *r2 = yaml_document_get_root_node(&more);
        if (r2) {
            fprintf(stderr,
                    "cdcvec %s: %s:%zu:%zu: a second YAML document; fix: one pipeline per file (remove the "
                    "---)\n",
                    cmd, path, r2->start_mark.line + 1, r2->start_mark.column + 1);
            L.errors++;
        }
        yaml_document_delete(&more);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return L.errors ? -1 : 0;
}

void cv_pipeline_explicit(const cv_conf_prop *props, int n, int argc, char **argv, unsigned char *explicit_) {
    for (int i = 0; i < n; i++) {
        const char *e = props[i].env ? getenv(props[i].env) : NULL;
        explicit_[i] = e != NULL;
        size_t l = strlen(props[i].name);
        for (int a = 1; a < argc; a++)
            if (!strncmp(argv[a], "--", 2) && !strncmp(argv[a] + 2, props[i].name, l) &&
                (argv[a][2 + l] == 0 || argv[a][2 + l] == '='))
                explicit_[i] = 1;
    }
}

int cv_pipeline_open(const char *cmd, const char *path, const cv_conf_prop *props, const unsigned char *scope,
                     const char *const *choices, int n, int argc, char **argv, const void *base, size_t size,
                     cv_pipeline *pl) {
    static const char *const named[] = {"source", "table", "text-column", "template", "sink", "namespace"};
    unsigned char *expl = calloc((size_t)n, 1);
    int bad = 0, given = 0;
    memset(pl, 0, sizeof *pl);
    if (!expl) return -1;
    cv_pipeline_explicit(props, n, argc, argv, expl);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 6; k++)
            if (expl[i] && !strcmp(props[i].name, named[k])) {
                if (!strcmp(named[k], "table") && strcmp(cmd, "sync") != 0) { /* picks one of the file's */
                    given = 1;
                    continue;
                }
                char key[64];
                const char *env = props[i].env && getenv(props[i].env) ? props[i].env : NULL;
                fprintf(
                    stderr,
                    "cdcvec %s: %s%s set together with --config %s: the file names the source, the tables "
                    "and their stores; fix: write %s: in the file and %s%s\n",
                    cmd, env ? env : "--", env ? "" : props[i].name, path,
                    cv_pipeline_key(props[i].name, key, sizeof key), env ? "unset " : "drop --",
                    env ? env : props[i].name);
                bad = 1;
            }
    if (bad || cv_pipeline_load(cmd, path, props, scope, choices, n, pl) ||
        cv_pipeline_resolve(pl, props, scope, n, expl, base, size)) {
        free(expl);
        return -1;
    }
    pl->table_given = given;
    free(expl);
    const char *e = NULL; /* the password: PGPASSWORD, else the file PGPASSWORD_FILE names */
    char *pw = getenv("PGPASSWORD") ? NULL : cv_conf_secret("PGPASSWORD", &e);
    if (e) {
        fprintf(stderr, "cdcvec %s: PGPASSWORD_FILE=%s: %s; fix: name a readable file\n", cmd,
                getenv("PGPASSWORD_FILE"), e);
        return -1;
    }
    if (pw) setenv("PGPASSWORD", pw, 1), free(pw);
    return 0;
}

int cv_pipeline_index(const cv_pipeline *pl, const char *table) {
    char want[256], have[256];
    norm_table(table, want, sizeof want);
    for (int j = 0; j < pl->ntables; j++) {
        norm_table(pl->tables[j].table, have, sizeof have);
        if (!strcmp(want, have)) return j;
    }
    return -1;
}

int cv_pipeline_pick(const char *cmd, cv_pipeline *pl, const char *table) {
    for (int j = cv_pipeline_index(pl, table); j >= 0;) {
        cv_pipe_table keep = pl->tables[j];
        for (int k = 0; k < pl->ntables; k++) {
            if (k == j) continue;
            cv_pipe_table *t = &pl->tables[k];
            for (int i = 0; i < t->nvals; i++)
                free(t->vals[i].text), free(t->vals[i].key);
            free(t->vals), free(t->table), free(t->where), free(t->columns), free(t->columns_at),
                free(t->conf);
        }
        pl->tables[0] = keep;
        pl->ntables = 1;
        return 0;
    }
    cv_buf b = {0};
    for (int j = 0; j < pl->ntables; j++)
        cv_buf_printf(&b, "%s%s", j ? ", " : "", pl->tables[j].table);
    fprintf(stderr, "cdcvec %s: --table %s: not a table of %s (it has %s); fix: name one of them\n", cmd,
            table, pl->file, b.p ? b.p : "none");
    cv_buf_free(&b);
    return -1;
}

int cv_pipeline_runnable(const char *cmd, const cv_pipeline *pl) {
    if (pl->ntables > 1 && strcmp(cmd, "sync") && strcmp(cmd, "migrate") && strcmp(cmd, "capture") &&
        strcmp(cmd, "worker") && strcmp(cmd, "sink")) { /* the Kafka stages run every table too (KAFKA.md) */
        cv_buf b = {0};
        for (int j = 0; j < pl->ntables; j++)
            cv_buf_printf(&b, "%s%s (line %d)", j ? ", " : "", pl->tables[j].table, pl->tables[j].line);
        cv_error(
            "event=pipeline_refused file=%s tables=%d error=\"cdcvec %s works on one table; the file lists "
            "%s\" fix=\"name one with --table (cdcvec %s --config %s --table TABLE); cdcvec sync runs the "
            "whole file\"",
            pl->file, pl->ntables, cmd, b.p, cmd, pl->file);
        cv_buf_free(&b);
        return -1;
    }
    return 0; /* chunk:, where: and columns: run (cmd_sync.c, ingest/source.c) */
}

static int apply(const cv_pipe_val *v, const cv_conf_prop *props, const char *file, void *conf) {
    char src[256];
    snprintf(src, sizeof src, "%s:%d:%d: %s", file, v->line, v->col, v->key);
    return cv_conf_set(&props[v->prop], conf, v->text, src);
}

int cv_pipeline_resolve(cv_pipeline *pl, const cv_conf_prop *props, const unsigned char *scope, int n,
                        const unsigned char *explicit_, const void *base, size_t size) {
    (void)scope;
    for (int j = 0; j < pl->ntables; j++) {
        cv_pipe_table *t = &pl->tables[j];
        t->conf = malloc(size);
        if (!t->conf) return -1;
        memcpy(t->conf, base, size);
        int tx = has(t->vals, t->nvals, props, "text-column"), tp = has(t->vals, t->nvals, props, "template");
        for (int i = 0; i < pl->ndefaults; i++) {
            const char *name = props[pl->defaults[i].prop].name;
            if (explicit_[pl->defaults[i].prop]) continue;
            if ((tx || tp) && (!strcmp(name, "text-column") || !strcmp(name, "template"))) continue;
            if (apply(&pl->defaults[i], props, pl->file, t->conf)) return -1;
        }
        for (int i = 0; i < t->nvals; i++)
            if (apply(&t->vals[i], props, pl->file, t->conf)) return -1;
        for (int i = 0; i < n && (tx || tp); i++) /* the table's own text or template, not the other */
            if (!strcmp(props[i].name, tx ? "template" : "text-column"))
                *(const char **)((char *)t->conf + props[i].offset) = "";
    }
    return 0;
}

int cv_pipeline_from_flags(cv_pipeline *pl, const char *source, const char *table, const void *base,
                           size_t size) {
    memset(pl, 0, sizeof *pl);
    pl->source = strdup(source);
    pl->tables = calloc(1, sizeof *pl->tables);
    if (!pl->tables || !pl->source) return -1;
    pl->ntables = 1;
    pl->tables[0].table = strdup(table);
    pl->tables[0].conf = malloc(size);
    if (!pl->tables[0].conf) return -1;
    memcpy(pl->tables[0].conf, base, size);
    return 0;
}

void cv_pipeline_free(cv_pipeline *pl) {
    for (int i = 0; i < pl->ndefaults; i++)
        free(pl->defaults[i].text), free(pl->defaults[i].key);
    free(pl->defaults);
    for (int j = 0; j < pl->ntables; j++) {
        cv_pipe_table *t = &pl->tables[j];
        for (int i = 0; i < t->nvals; i++)
            free(t->vals[i].text), free(t->vals[i].key);
        free(t->vals), free(t->table), free(t->where), free(t->columns), free(t->columns_at), free(t->conf);
    }
    free(pl->tables), free(pl->file), free(pl->source);
    memset(pl, 0, sizeof *pl);
}
