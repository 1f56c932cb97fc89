/* cmd_sync.c: cdcvec sync | backfill | search | verify: options from one property table. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_conf.h"
#include "../common/cv_log.h"
#include "../common/cv_signal.h"
#include "../ingest/ingest.h"
#include "../models/chunk.h"
#include "../sink/sink.h"
#include "../search/search.h"
#include "cli.h"
#include "pipeline.h"

typedef struct {
    const char *source, *table, *text_column, *template_, *sink, *ns, *embed, *slot, *publication, *http,
        *model, *device, *after, *on_error, *key, *point_ids, *config, *to_model, *to_template;
    long rollback, drop_old, print, batch_rows, threads, resnapshot, force, limit, max_text_bytes, repair,
        show, sink_writers, index_memory, wal_warn_mb, chunk_max_tokens, chunk_overlap, search_queue_ms;
    double batch_ms, ready_lag_s;
    cv_cli_http hl;
} sync_conf;

#define F(x) offsetof(sync_conf, x)
static const cv_conf_prop PROPS[] = {
    {"config", "CDCVEC_CONFIG", CV_CONF_STR, "", 0, 0, F(config),
     "pipeline file (YAML: source, defaults, tables; see 'The pipeline file' below); the command line may "
     "then set only what the file leaves to defaults"},
    {"print", NULL, CV_CONF_INT, "0", 0, 1, F(print),
     "1 (or --print alone): print the resolved pipeline as YAML (no password) and exit without connecting"},
    {"source", "CDCVEC_SOURCE", CV_CONF_STR, "", 0, 0, F(source),
     "source database: libpq connection string or postgres:// URI (required; a password belongs in "
     "PGPASSWORD "
     "or ~/.pgpass)"},
    {"table", "CDCVEC_TABLE", CV_CONF_STR, "public.books", 0, 0, F(table), "table to mirror, schema.table"},
    {"text-column", "CDCVEC_TEXT_COLUMN", CV_CONF_STR, "description", 0, 0, F(text_column),
     "column embedded"},
    {"template", "CDCVEC_TEMPLATE", CV_CONF_STR, "", 0, 0, F(template_),
     "embed a template of columns instead, e.g. '{name}: {description}'"},
    {"sink", "CDCVEC_SINK", CV_CONF_STR, "", 0, 0, F(sink),
     "where the vectors go: a PostgreSQL database with pgvector (empty: the source database, schema cdcvec), "
     "qdrant://HOST:PORT/COLLECTION (qdrants:// for TLS; key in QDRANT_API_KEY or QDRANT_API_KEY_FILE) or "
     "upstash:// (URL and token in UPSTASH_VECTOR_REST_URL and UPSTASH_VECTOR_REST_TOKEN, or their _FILE "
     "variants); with Qdrant and Upstash the position and dead letters stay in the source database (schema "
     "cdcvec)"},
    {"namespace", "CDCVEC_NAMESPACE", CV_CONF_STR, "", 0, 0, F(ns),
     "Upstash namespace of the table's vectors (empty: the table's name; TRUNCATE resets it)"},
    CV_CLI_POINT_IDS_PROP(sync_conf),
    {"embed", "CDCVEC_EMBED", CV_CONF_STR, "", 0, 0, F(embed),
     "nng URL of a remote cdcvec serve (empty: the model runs in-process)"},
    {"slot", "CDCVEC_SLOT", CV_CONF_STR, "", 0, 0, F(slot),
     "replication slot (empty: cdcvec_<database>_<schema>_<table>_<hash>, unique per database, table and "
     "store, at most 63 bytes; an earlier version's cdcvec_<schema>_<table>_<hash> of this database is "
     "kept; with --config, every table of the file on one slot: cdcvec_<database>_pipeline_tables_<hash>, "
     "one per database: give two pipelines of one database a slot each); "
     "a slot of another database is never used or dropped"},
    {"publication", "CDCVEC_PUBLICATION", CV_CONF_STR, "", 0, 0, F(publication),
     "publication (empty: the slot's name)"},
    {"batch-rows", "CDCVEC_BATCH_ROWS", CV_CONF_INT, "512", 1, 1000000, F(batch_rows),
     "changes per sink transaction (whole source transactions)"},
    {"sink-writers", "CDCVEC_SINK_WRITERS", CV_CONF_INT, "2", 1, 16, F(sink_writers),
     "pgvector: connections that write each batch in parallel, rows split by primary key (one key is never "
     "in two concurrent transactions; the position is recorded after every part committed); 1 when a key "
     "column does not compare exactly by its text form"},
    {"index-memory", "CDCVEC_INDEX_MEMORY", CV_CONF_INT, "1024", 64, 262144, F(index_memory),
     "pgvector: the most maintenance_work_mem, in MB, the HNSW index build after the backfill asks for (it "
     "asks for what the graph needs, from 64 MB, and for the server's max_parallel_workers)"},
    {"batch-ms", "CDCVEC_BATCH_MS", CV_CONF_DOUBLE, "20", 0, 60000, F(batch_ms),
     "longest a committed change waits for its batch, in milliseconds"},
    {"http", "CDCVEC_SYNC_HTTP", CV_CONF_STR, "", 0, 0, F(http),
     "host:port for HTTP: the search page (/ and /search), /v1/embeddings, /embed, /metrics, /healthz "
     "(empty: none); with --embed: the search page, /wait, /metrics (this process's counters, dead letters "
     "and lag) and /healthz, the embeddings being the remote server's"},
    {"model", "CDCVEC_MODEL_DIR", CV_CONF_STR, "", 0, 0, F(model), "model folder"},
    {"device", "CDCVEC_DEVICE", CV_CONF_STR, "auto", 0, 0, F(device), "auto, cpu or cuda"},
    {"threads", "CDCVEC_THREADS", CV_CONF_INT, "0", 0, 256, F(threads), "CPU threads; 0: all"},
    {"resnapshot", NULL, CV_CONF_INT, "0", 0, 1, F(resnapshot),
     "1: drop the slot and backfill again (after the slot was lost or dropped)"},
    {"force", NULL, CV_CONF_INT, "0", 0, 1, F(force), "backfill: 1 re-embeds rows whose text is unchanged"},
    {"after", NULL, CV_CONF_STR, "", 0, 0, F(after),
     "backfill: resume after this primary key, as the progress line prints it (v1,v2 for composite keys; "
     "\"a,b\" quoted when a value holds a comma or a quote)"},
    {"limit", NULL, CV_CONF_INT, "5", 1, 1000, F(limit), "search: results"},
    {"repair", NULL, CV_CONF_INT, "0", 0, 1, F(repair),
     "verify: 1 fixes the differences through the apply stage (missing and stale rows re-embedded, drifted "
     "payloads rewritten, orphans deleted); refused while a sync or Kafka sink stage writes the table into "
     "the same store"},
    {"key", NULL, CV_CONF_STR, "", 0, 0, F(key),
     "dead-letters: only the entries of this primary key, as list prints it (empty: every entry of the "
     "table)"},
    {"show", NULL, CV_CONF_INT, "20", 0, 1000000000, F(show),
     "verify: lines printed per kind of difference (a not_shown line counts the rest); 0: every one"},
    {"max-text-bytes", "CDCVEC_MAX_TEXT_BYTES", CV_CONF_INT, "1048576", 1, 1L << 30, F(max_text_bytes),
     "with --embed: longer texts are recorded as dead letters and not sent (the server's own "
     "--max-text-bytes; "
     "in-process, any size is embedded)"},
    {"chunk-max-tokens", "CDCVEC_CHUNK_MAX_TOKENS", CV_CONF_INT, "0", 0, 100000, F(chunk_max_tokens),
     "0: one vector per row (a text longer than the model reads is embedded from its beginning, and counted "
     "in cdcvec_texts_truncated_total); 16 or more: each text is stored as chunks of at most this many of "
     "the model's word pieces (capped at what the model reads: 254 for all-MiniLM-L6-v2), cut at paragraph, "
     "then sentence, then word ends, one row per (key, chunk) with its hash and character offsets; an edit "
     "re-embeds only the chunks whose hash changed (pgvector: one row per chunk; Qdrant, Upstash: one "
     "point per chunk). The in-process model only (on the Kafka path the workers chunk: cdcvec worker "
     "--chunk-max-tokens); pgvector's store table layout is chosen at its creation"},
    {"chunk-overlap", "CDCVEC_CHUNK_OVERLAP", CV_CONF_INT, "32", 0, 50000, F(chunk_overlap),
     "with --chunk-max-tokens: word pieces of a chunk's end repeated at the start of the next (whole "
     "words, within a paragraph group), at most half of --chunk-max-tokens"},
    {"on-error", "CDCVEC_ON_ERROR", CV_CONF_STR, "dead-letter", 0, 0, F(on_error),
     "a change that cannot be applied: dead-letter (record it in cdcvec.dead_letters with its reason and go "
     "on) "
     "or stop (exit 1)"},
    {"wal-warn-mb", "CDCVEC_WAL_WARN_MB", CV_CONF_INT, "1024", 1, 100000000, F(wal_warn_mb),
     "sync: WAL the slot keeps on the source (pg_current_wal_lsn() - restart_lsn), in MB, above which "
     "cdcvec warns (event=wal_retained_high), sets cdcvec_sync_slot_retained_wal_over_threshold and "
     "answers /readyz 503"},
    {"ready-lag-s", "CDCVEC_READY_LAG_S", CV_CONF_DOUBLE, "60", 0.1, 86400, F(ready_lag_s),
     "sync: /readyz answers 503 while the oldest committed change not yet in the store is older than "
     "this, in seconds"},
    {"search-queue-ms", "CDCVEC_SEARCH_QUEUE_MS", CV_CONF_INT, "1000", 0, 60000, F(search_queue_ms),
     "sync --http: a search that arrives while 16 run waits up to this long for one of them to finish (at "
     "most 64 wait) before 503; 0: 503 at once"},
    CV_CLI_HTTP_PROPS(sync_conf),
    /* cdcvec migrate only (migrate_only) */
    {"to-model", "CDCVEC_TO_MODEL", CV_CONF_STR, "", 0, 0, F(to_model),
     "migrate: the new model's folder (a sentence-transformers BERT model; empty: the live index's model)"},
    {"to-template", "CDCVEC_TO_TEMPLATE", CV_CONF_STR, "", 0, 0, F(to_template),
     "migrate: the new template of columns, e.g. '{name}: {description}' (empty: the live text source)"},
    {"rollback", NULL, CV_CONF_INT, "0", 0, 1, F(rollback),
     "migrate: 1 (or --rollback alone): the index the last switch replaced is live again (the next sync, "
     "with the old model, backfills it again first, hash-checked)"},
    {"drop-old", NULL, CV_CONF_INT, "0", 0, 1, F(drop_old),
     "migrate: 1 (or --drop-old alone): drops the index the last switch replaced"},
};
#undef F
#define NPROPS ((int)(sizeof PROPS / sizeof PROPS[0]))

static volatile sig_atomic_t stop_flag, reload_flag;

/* The options of cdcvec migrate alone. */
static int migrate_only(const char *name) {
    return !strcmp(name, "to-model") || !strcmp(name, "to-template") || !strcmp(name, "rollback") ||
           !strcmp(name, "drop-old");
}

/* Where each option may stand in the pipeline file (pipeline.h): the table's own, the process's,
 * or only the command line. */
static unsigned char scope_of(const char *name) {
    static const char *const table[] = {"table",        "text-column", "template",   "sink",
                                        "namespace",    "point-ids",   "batch-rows", "sink-writers",
                                        "index-memory", "batch-ms",    "on-error",   NULL};
    static const char *const cli[] = {
        "config",        "print",    "resnapshot",       "force",    "after",    "limit", "repair",
        "key",           "show",     "chunk-max-tokens", /* file: chunk: */
        "chunk-overlap", "to-model", "to-template",      "rollback", "drop-old", NULL};
    if (!strcmp(name, "source")) return CV_PIPE_SOURCE;
    for (int i = 0; table[i]; i++)
        if (!strcmp(name, table[i])) return CV_PIPE_TABLE;
    for (int i = 0; cli[i]; i++)
        if (!strcmp(name, cli[i])) return CV_PIPE_CLI;
    return CV_PIPE_PROCESS;
}

/* The options of one table for the runtime; the values that are names checked (-1 after saying
 * which is wrong). */
/* What chunking needs of the run (not of --print): the model's tokenizer here, a store (not Kafka). */
static int chunk_runnable(const char *which, const sync_conf *c) {
    if (c->chunk_max_tokens <= 0) return 0;
    if (*c->embed) {
        fprintf(stderr,
                "cdcvec %s: --chunk-max-tokens counts the model's own tokens: run the model in this "
                "process (drop --embed)\n",
                which);
        return -1;
    }
    if (strncmp(c->sink, "kafka://", 8) == 0) {
        fprintf(stderr,
                "cdcvec %s: --chunk-max-tokens: with --sink %s the capture sends whole texts and the Kafka "
                "workers chunk them: give --chunk-max-tokens to cdcvec worker, and 0 here\n",
                which, c->sink);
        return -1;
    }
    return 0;
}

static int conf_opts(const char *which, const sync_conf *c, cv_sync_opts *o) {
    *o = (cv_sync_opts){.source = c->source,
                        .table = c->table,
                        .text_column = c->text_column,
                        .template_ = c->template_,
                        .sink = c->sink,
                        .ns = c->ns,
                        .embed = c->embed,
                        .slot = c->slot,
                        .publication = c->publication,
                        .batch_rows = c->batch_rows,
                        .batch_ms = c->batch_ms,
                        .wal_warn_mb = c->wal_warn_mb,
                        .ready_lag_s = c->ready_lag_s,
                        .search_queue_ms = c->search_queue_ms,
                        .http = c->http,
                        .model_dir = c->model,
                        .threads = (int)c->threads,
                        .resnapshot = (int)c->resnapshot,
                        .force = (int)c->force,
                        .after = c->after,
                        .max_text_bytes = c->max_text_bytes,
                        .sink_writers = (int)c->sink_writers,
                        .index_memory_mb = (int)c->index_memory,
                        .chunk_max_tokens = (int)c->chunk_max_tokens,
                        .chunk_overlap = (int)c->chunk_overlap};
    if (c->chunk_max_tokens > 0 && strcmp(which, "search") != 0) { /* what chunking needs, refused first */
        char why[300];
        cv_chunk_opts co = {.max_tokens = (int)c->chunk_max_tokens, .overlap = (int)c->chunk_overlap};
        if (cv_chunk_check(&co, why, sizeof why)) {
            fprintf(stderr, "cdcvec %s: --chunk-max-tokens / --chunk-overlap: %s\n", which, why);
            return -1;
        }
    }
    cv_cli_http_opts(&c->hl, &o->http_opts);
    if (cv_cli_parse_device(c->device, &o->device)) return -1;
    if (cv_cli_point_ids(which, c->point_ids, &o->uuid_ids)) return -1;
    if (strcmp(c->on_error, "stop") == 0)
        o->on_error_stop = 1;
    else if (strcmp(c->on_error, "dead-letter") != 0) {
        fprintf(stderr, "cdcvec %s: --on-error: expected dead-letter or stop, got '%s'\n", which,
                c->on_error);
        return -1;
    }
    return 0;
}

/* --config: the file's one table into c (0), or -1 / 1 (printed) after refusing. */
static int from_file(const char *which, const cv_conf_prop *props, int n, int argc, char **argv, sync_conf *c,
                     cv_pipeline *pl) {
    unsigned char scope[NPROPS];
    const char *choices[NPROPS];
    for (int i = 0; i < n; i++) {
        scope[i] = scope_of(props[i].name);
        choices[i] = !strcmp(props[i].name, "on-error")    ? "dead-letter|stop"
                     : !strcmp(props[i].name, "point-ids") ? "auto|uuid"
                     : !strcmp(props[i].name, "device")    ? "auto|cpu|cuda"
                                                           : NULL;
    }
    if (cv_pipeline_open(which, c->config, props, scope, choices, n, argc, argv, c, sizeof *c, pl)) return -1;
    /* migrate runs the whole file (the slot is every table's) and migrates its --table */
    if (pl->table_given && strcmp(which, "migrate") && cv_pipeline_pick(which, pl, c->table)) return -1;
    for (int j = 0; j < pl->ntables; j++) {
        char w[512];
        snprintf(w, sizeof w, "%s: %s:%d: tables[%d] (%s)", which, pl->file, pl->tables[j].line, j,
                 pl->tables[j].table);
        if (pl->tables[j].chunk_line) { /* chunk: {max_tokens, overlap} */
            sync_conf *tc = pl->tables[j].conf;
            tc->chunk_max_tokens = pl->tables[j].chunk_max_tokens,
            tc->chunk_overlap = pl->tables[j].chunk_overlap;
        }
        if (conf_opts(w, pl->tables[j].conf, &pl->tables[j].opts)) return -1;
        pl->tables[j].opts.source = pl->source;
    }
    if (c->print) {
        cv_pipeline_print(stdout, pl, props, scope, n);
        return 1;
    }
    if (cv_pipeline_runnable(which, pl)) return -1;
    *c = *(const sync_conf *)pl->tables[0].conf;
    c->source = pl->source;
    return 0;
}

/* ---- cdcvec sync --config FILE: every table of the file in one process ---- */

typedef struct {
    const char *which;
    const cv_conf_prop *props;
    int nprops, argc;
    char **argv;
    sync_conf base; /* the command line's options, before the file */
    const char *source, *api_key;
} tables_ctx;

/* The file's tables as options (o[0] carries the search page and /wait). */
static int tables_opts(const tables_ctx *x, cv_pipeline *pl, cv_sync_opts **out, int *n) {
    cv_sync_opts *o = calloc((size_t)pl->ntables, sizeof *o);
    if (!o) return -1;
    for (int j = 0; j < pl->ntables; j++) {
        char w[512];
        snprintf(w, sizeof w, "%s: %s:%d: tables[%d] (%s)", x->which, pl->file, pl->tables[j].line, j,
                 pl->tables[j].table);
        if (chunk_runnable(w, pl->tables[j].conf) || cv_cli_check_sink(w, pl->tables[j].opts.sink)) {
            free(o);
            return -1;
        }
        o[j] = pl->tables[j].opts;
        o[j].api_key = x->api_key;
        o[j].pipeline = 1;
        o[j].where = pl->tables[j].where;
        o[j].columns = pl->tables[j].columns, o[j].columns_at = pl->tables[j].columns_at;
    }
    o[0].outlet = cv_search_outlet();
    *out = o;
    *n = pl->ntables;
    return 0;
}

/* SIGHUP: the file again. The pipeline read stays for the process (its strings are the options'). */
static int reload_file(void *arg, cv_sync_opts **o, int *n) {
    tables_ctx *x = arg;
    cv_pipeline *pl = calloc(1, sizeof *pl);
    sync_conf c = x->base;
    if (!pl || from_file(x->which, x->props, x->nprops, x->argc, x->argv, &c, pl)) {
        if (pl) cv_pipeline_free(pl);
        free(pl);
        return -1;
    }
    if (strcmp(pl->source, x->source) != 0) {
        cv_error("event=reload_refused file=%s error=\"source: changed\" fix=\"restart cdcvec sync to stream "
                 "from another database\"",
                 pl->file);
        cv_pipeline_free(pl);
        free(pl);
        return -1;
    }
    return tables_opts(x, pl, o, n);
}

/* cdcvec migrate: the pipeline as sync runs it (the file's tables, or the flags' one table), its
 * --table migrated (ingest/migrate.c). */
static int migrate(const sync_conf *c, cv_sync_opts *o, cv_pipeline *pl, const cv_conf_prop *props,
                   int nprops, int argc, char **argv, char *key) {
    cv_migrate_opts m = {.to_model = *c->to_model ? c->to_model : NULL,
                         .to_template = *c->to_template ? c->to_template : NULL,
                         .rollback = (int)c->rollback,
                         .drop_old = (int)c->drop_old};
    if (m.rollback + m.drop_old + (m.to_model || m.to_template) != 1) {
        fprintf(stderr, "cdcvec migrate: give --to-model DIR and/or --to-template T (a migration), or "
                        "--rollback, or --drop-old: one of the three\n");
        return 2;
    }
    if (!*c->config) {
        o->outlet = cv_search_outlet();
        int only = 0;
        return cv_migrate_run(o, 1, &only, 1, &m, &stop_flag);
    }
    /* a file: its --table, or (a new model: the process has one) every table */
    int *which = calloc((size_t)pl->ntables, sizeof *which), nw = 0;
    if (!which) return 1;
    if (pl->table_given) {
        which[nw] = cv_pipeline_index(pl, c->table);
        nw += which[nw] >= 0;
    } else if (pl->ntables == 1 || m.to_model || m.rollback || m.drop_old) {
        for (int j = 0; j < pl->ntables; j++)
            which[nw++] = j;
    }
    if (!nw) {
        fprintf(stderr, "cdcvec migrate: %s: %s\n", pl->file,
                pl->table_given ? "--table names no table of the file"
                                : "a new template is one table's: name it with --table");
        free(which);
        return 2;
    }
    if (m.to_model && nw < pl->ntables) {
        fprintf(stderr,
                "cdcvec migrate: %s: --to-model with --table: a pipeline runs one model for all its "
                "tables; fix: migrate them all (drop --table), or give the table a pipeline file (and "
                "slot:) of its own first\n",
                pl->file);
        free(which);
        return 2;
    }
    static tables_ctx x;
    x = (tables_ctx){.which = "migrate",
                     .props = props,
                     .nprops = nprops,
                     .argc = argc,
                     .argv = argv,
                     .source = pl->source,
                     .api_key = key};
    cv_sync_opts *to = NULL;
    int n = 0, rc = 2;
    if (!tables_opts(&x, pl, &to, &n)) rc = cv_migrate_run(to, n, which, nw, &m, &stop_flag);
    free(to);
    free(which);
    return rc;
}

int cv_cmd_sync(int argc, char **argv, const char *which) {
    int migrates = strcmp(which, "migrate") == 0;
    cv_conf_prop mine[NPROPS];
    int nmine = 0;
    for (int i = 0; i < NPROPS; i++)
        if (migrates || !migrate_only(PROPS[i].name)) mine[nmine++] = PROPS[i];
    if (argc > 1 && strcmp(argv[1], "--config-markdown") == 0) {
        if (migrates) { /* its own options; the rest are sync's (docs/CONFIG.md) */
            cv_conf_prop own[NPROPS];
            int n = 0;
            for (int i = 0; i < NPROPS; i++)
                if (migrate_only(PROPS[i].name)) own[n++] = PROPS[i];
            cv_conf_markdown(stdout, own, n);
            return 0;
        }
        cv_conf_markdown(stdout, mine, nmine);
        cv_cli_api_key_markdown(stdout);
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "--pipeline-markdown") == 0) {
        unsigned char scope[NPROPS];
        for (int i = 0; i < nmine; i++)
            scope[i] = scope_of(mine[i].name);
        cv_pipeline_markdown(stdout, mine, scope, nmine);
        return 0;
    }
    const char *query = NULL;
    if (strcmp(which, "search") == 0) { /* the query is the one operand, before or after the options */
        int at = -1;
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--") == 0) {
                at = i + 1 < argc ? i + 1 : -1;
                if (at > 0)
                    memmove(&argv[i], &argv[i + 1], sizeof(char *) * (size_t)(argc - i - 1)), argc--, at = i;
                break;
            }
            if (argv[i][0] == '-' && argv[i][1]) {
                if (!strchr(argv[i], '=') && strcmp(argv[i], "--help") && strcmp(argv[i], "-h"))
                    i++; /* its value */
                continue;
            }
            at = i;
            break;
        }
        if (at < 0) {
            fprintf(stderr, "usage: cdcvec search \"query\" [--limit N] [--source ...] [--table ...]\n");
            return 2;
        }
        query = argv[at];
        memmove(&argv[at], &argv[at + 1], sizeof(char *) * (size_t)(argc - at - 1));
        argc--;
    }
    const char *action = NULL;
    if (strcmp(which, "dead-letters") == 0) { /* the action is the first operand */
        if (argc > 1 &&
            (!strcmp(argv[1], "list") || !strcmp(argv[1], "retry") || !strcmp(argv[1], "clear"))) {
            action = argv[1];
            memmove(&argv[1], &argv[2], sizeof(char *) * (size_t)(argc - 2));
            argc--;
        } else if (argc < 2 || (strcmp(argv[1], "--help") && strcmp(argv[1], "-h"))) {
            fprintf(stderr,
                    "cdcvec dead-letters: expected list, retry or clear, got '%s'\n"
                    "usage: cdcvec dead-letters list|retry|clear --source ... --table ... [--sink ...] "
                    "[--key KEY]\n",
                    argc > 1 ? argv[1] : "");
            return 2;
        }
    }
    /* backfill, search and verify serve no HTTP: their tables leave the HTTP options out */
    int serves = strcmp(which, "sync") == 0 || migrates, nprops = 0;
    cv_conf_prop props[NPROPS];
    for (int i = 0; i < nmine; i++)
        if (serves || (strcmp(mine[i].name, "http") && strncmp(mine[i].name, "http-", 5) &&
                       strcmp(mine[i].name, "metrics-auth") && strcmp(mine[i].name, "search-queue-ms")))
            props[nprops++] = mine[i];
    sync_conf c;
    memset(&c, 0, sizeof c);
    c.http = "";
    char usage[512];
    snprintf(
        usage, sizeof usage, "usage: cdcvec %s%s [options]%s", which,
        action || strcmp(which, "dead-letters") ? "" : " list|retry|clear",
        !strcmp(which, "dead-letters")
            ? "\n\nlist: the table's dead letters (key, position, time, reason); retry: re-read each key's "
              "row from the source and apply it again (refused while a sync of the table runs); clear: "
              "remove "
              "them (--key: one key's)."
        : strcmp(which, "sync") == 0
            ? "\n\nKeeps a pgvector index in step with a PostgreSQL table until SIGTERM.\nThe HTTP API key "
              "(--http) is read from CDCVEC_API_KEY or the file named by CDCVEC_API_KEY_FILE."
            : "");
    for (int i = 1; i < argc; i++) /* --print alone (and migrate's --rollback, --drop-old) */
        for (int k = 0; k < 3; k++) {
            static const char *const alone[] = {"--print", "--rollback", "--drop-old"},
                                     *one[] = {"--print=1", "--rollback=1", "--drop-old=1"};
            if (!strcmp(argv[i], alone[k]) &&
                (i + 1 == argc || (strcmp(argv[i + 1], "0") && strcmp(argv[i + 1], "1"))))
                argv[i] = (char *)one[k];
        }
    int rc = cv_conf_parse(props, nprops, &c, argc, argv, usage);
    if (rc) return rc == 1 ? 0 : 2;
    cv_pipeline pl = {0};
    sync_conf base = c;
    if (*c.config) {
        rc = from_file(which, props, nprops, argc, argv, &c, &pl);
        if (rc) {
            cv_pipeline_free(&pl);
            return rc == 1 ? 0 : 2;
        }
    }
    if (!*c.source) {
        fprintf(stderr, "cdcvec %s: --source (or CDCVEC_SOURCE) is required, e.g. postgres://user@host/db\n",
                which);
        return 2;
    }
    if (cv_cli_check_pg(which, "source", c.source) || cv_cli_check_sink(which, c.sink)) return 2;
    if (c.print) { /* today's flags: a pipeline of one table */
        unsigned char scope[NPROPS];
        for (int i = 0; i < nprops; i++)
            scope[i] = scope_of(props[i].name);
        if (!cv_pipeline_from_flags(&pl, c.source, c.table, &c, sizeof c))
            cv_pipeline_print(stdout, &pl, props, scope, nprops);
        cv_pipeline_free(&pl);
        return 0;
    }
    cv_sync_opts o;
    if (conf_opts(which, &c, &o) || (!query && chunk_runnable(which, &c))) return 2;
    o.search = query != NULL;
    o.pipeline = *c.config != 0;        /* the file's slot and state keys (cdcvec sync runs it whole) */
    if (*c.config && pl.ntables == 1) { /* verify reads what is published */
        o.where = pl.tables[0].where;
        o.columns = pl.tables[0].columns, o.columns_at = pl.tables[0].columns_at;
    }
    char *key = NULL;
    if (strcmp(which, "sync") == 0 && cv_cli_api_key(which, &key)) return 2;
    o.api_key = key;
    cv_cli_on_stop(&stop_flag);
    if (query) return cv_search_run(&o, query, (int)c.limit);
    if (strcmp(which, "backfill") == 0) return cv_backfill_run(&o, &stop_flag);
    if (action) return cv_dead_letters_run(&o, action, *c.key ? c.key : NULL, &stop_flag);
    if (strcmp(which, "verify") == 0) return cv_verify_run(&o, (int)c.repair, c.show, &stop_flag);
    if (migrates) {
        rc = migrate(&c, &o, &pl, props, nprops, argc, argv, key);
        free(key);
        cv_pipeline_free(&pl);
        return rc;
    }
    if (*c.config) { /* the file's tables on one slot; SIGHUP reads it again */
        static tables_ctx x;
        x = (tables_ctx){.which = which,
                         .props = props,
                         .nprops = nprops,
                         .argc = argc,
                         .argv = argv,
                         .base = base,
                         .source = pl.source,
                         .api_key = key};
        cv_sync_opts *to = NULL;
        int n = 0;
        if (tables_opts(&x, &pl, &to, &n)) {
            free(key);
            cv_pipeline_free(&pl);
            return 2;
        }
        cv_signal_on_reload(&reload_flag);
        rc = cv_sync_run_tables(to, n, reload_file, &x, &stop_flag, &reload_flag);
        free(to);
        free(key);
        cv_pipeline_free(&pl);
        return rc;
    }
    o.outlet = cv_search_outlet(); /* the apply stage, the search page and /wait */
    rc = cv_sync_run(&o, &stop_flag);
    free(key);
    cv_pipeline_free(&pl);
    return rc;
}
