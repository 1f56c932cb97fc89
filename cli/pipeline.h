/* pipeline.h: the pipeline file (docs/CONFIG.md, "The pipeline file"): one source, optional
 * defaults, a list of tables, read with libyaml and checked against a command's own property
 * table (cv_conf_prop), so the file's keys are the options' names (text -> text-column,
 * store -> sink, '_' for '-'). Errors name the file, line, column, key and the fix. Today's
 * flags are a pipeline of one table (cv_pipeline_from_flags). */
#ifndef CV_PIPELINE_H
#define CV_PIPELINE_H

#include <stdio.h>

#include "../common/cv_conf.h"
#include "../ingest/ingest.h"

/* Where a property may be written in the file. */
enum {
    CV_PIPE_CLI = 0, /* a command-line option of one run (--resnapshot, --after ...): not a file key */
    CV_PIPE_PROCESS, /* one value for the whole process (model, http, slot ...): under defaults: */
    CV_PIPE_TABLE,   /* per table: under defaults: or in a table's entry */
    CV_PIPE_SOURCE   /* the top-level source: key */
};

typedef struct cv_pipe_val {
    int prop;      /* index in the property table */
    char *text;    /* the value as text (a list joined with ',') */
    int line, col; /* 1-based, of the value */
    char *key;     /* as written, with its path: "tables[2].batch_rows" */
} cv_pipe_val;

typedef struct cv_pipe_table {
    char *table;                          /* as written */
    int line, col;                        /* of its entry */
    char *where;                          /* publication row filter (PostgreSQL 15); NULL: none */
    char *columns;                        /* column list, comma-joined; NULL: every column */
    char *columns_at;                     /* "FILE:LINE:COL: tables[N].columns", for its errors */
    long chunk_max_tokens, chunk_overlap; /* chunk: {max_tokens, overlap}; 0: not given */
    int where_line, columns_line, chunk_line;
    cv_pipe_val *vals; /* the entry's keys that are properties */
    int nvals;
    void *conf;        /* resolved: the command's option struct (cv_pipeline_resolve), owned */
    cv_sync_opts opts; /* resolved: what the runtime takes (cmd_sync.c; strings borrowed from conf) */
} cv_pipe_table;

typedef struct cv_pipeline {
    char *file;   /* the path; NULL: from the command line */
    char *source; /* conninfo (never a password) */
    int source_line;
    cv_pipe_val *defaults;
    int ndefaults;
    cv_pipe_table *tables;
    int ntables;
    int table_given; /* a one-table command (verify, backfill, ...) named --table: it picks that one */
} cv_pipeline;

/* The file key of a property name (text-column -> text, sink -> store, '-' -> '_'), in buf. */
const char *cv_pipeline_key(const char *prop, char *buf, size_t n);

/* Reads and checks path against props (scope[i]: CV_PIPE_* of props[i]; choices[i]: NULL or the
 * accepted values of a string, '|'-separated, e.g. "auto|cpu|cuda"). Every problem is
 * printed as "cdcvec CMD: FILE:LINE:COL: KEY: what; fix: ..." on stderr; returns 0, or -1 when
 * there was any (nothing else was done). */
int cv_pipeline_load(const char *cmd, const char *path, const cv_conf_prop *props, const unsigned char *scope,
                     const char *const *choices, int n, cv_pipeline *pl);

/* The properties set on the command line or in the environment (explicit[i] = 1). */
void cv_pipeline_explicit(const cv_conf_prop *props, int n, int argc, char **argv, unsigned char *explicit_);

/* Each table's conf: a copy of base (built-in defaults < environment < flags), then the file's
 * defaults: for the properties not explicit, then the table's own keys. 0, or -1 after printing
 * the value refused with its file, line and key. */
int cv_pipeline_resolve(cv_pipeline *pl, const cv_conf_prop *props, const unsigned char *scope, int n,
                        const unsigned char *explicit_, const void *base, size_t size);

/* --config FILE: refuses the options that name the source, a table or a store on the command
 * line or in the environment (the file names them), loads and resolves (above), and takes the
 * password from PGPASSWORD_FILE when PGPASSWORD is unset. 0, or -1 after printing. */
int cv_pipeline_open(const char *cmd, const char *path, const cv_conf_prop *props, const unsigned char *scope,
                     const char *const *choices, int n, int argc, char **argv, const void *base, size_t size,
                     cv_pipeline *pl);

/* The index of table (schema.table; public by default) among pl's tables, or -1. */
int cv_pipeline_index(const cv_pipeline *pl, const char *table);
/* A one-table command's --table beside --config: the file's entry for table (schema defaults to
 * public) becomes the only one. 0, or -1 after printing what the file has. */
int cv_pipeline_pick(const char *cmd, cv_pipeline *pl, const char *table);

/* 0 when cmd runs pl (several tables: sync only); else -1 after logging event=pipeline_refused
 * with the fix. */
int cv_pipeline_runnable(const char *cmd, const cv_pipeline *pl);

/* A pipeline of one table from today's flags: conf is a copy of base. */
int cv_pipeline_from_flags(cv_pipeline *pl, const char *source, const char *table, const void *base,
                           size_t size);

/* The resolved pipeline as YAML that cv_pipeline_load reads back (passwords replaced). */
void cv_pipeline_print(FILE *f, const cv_pipeline *pl, const cv_conf_prop *props, const unsigned char *scope,
                       int n);

/* The file's keys as a Markdown table (docs/CONFIG.md), from the same property table. */
void cv_pipeline_markdown(FILE *f, const cv_conf_prop *props, const unsigned char *scope, int n);

void cv_pipeline_free(cv_pipeline *pl);

#endif
