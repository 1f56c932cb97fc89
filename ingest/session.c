/* session.c: the two lifetimes of `cdcvec sync` (sync_impl.h). The runtime (model, embedding
 * server and its HTTP port, client, metrics, the apply stage) is opened once per process; a
 * session (source connection, table description and checks, names, sink, what changed since
 * the last run) once per attempt. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "../pg/cv_names.h"
#include "stamp.h"
#include "sync_impl.h"

void cv_sync_error(cv_sync *s, const char *stage, const cv_pg_fault *f) {
    const char *kind = f && f->kind ? f->kind : "connection";
    if (f) s->fault = *f;
    cv_metric *m = NULL;
    for (int i = 0; i < s->rt.n_err_series; i++)
        if (!strcmp(s->rt.err_series[i].stage, stage) && !strcmp(s->rt.err_series[i].kind, kind))
            m = s->rt.err_series[i].m;
    if (!m && s->rt.reg && s->rt.n_err_series < (int)(sizeof s->rt.err_series / sizeof s->rt.err_series[0])) {
        cv_buf labels = {0};
        cv_buf_printf(&labels, "stage=\"%s\",kind=\"%s\"", stage, kind);
        m = cv_metrics_counter(s->rt.reg, "cdcvec_sync_errors_total", "Sync errors by stage and kind.",
                               labels.p);
        free(labels.p);
        s->rt.err_series[s->rt.n_err_series].stage = stage; /* static strings */
        s->rt.err_series[s->rt.n_err_series].kind = kind;
        s->rt.err_series[s->rt.n_err_series++].m = m;
    }
    cv_metric_add(m, 1);
}

void cv_sync_retry_text(const cv_sync *s, cv_err e, char *out, size_t n) {
    snprintf(out, n, "%s",
             s->why[0]               ? s->why
             : *cv_pg_last_message() ? cv_pg_last_message()
             : e == CV_ERR_TIMEOUT   ? "the line above says what"
                                     : cv_strerror(e));
}

/* A failed batch: counted by stage and kind; permanent when the store refused for good or a
 * change failed under --on-error stop. */
cv_err cv_sync_batch_failed(cv_sync *s, cv_err e) {
    if (e == CV_ERR_ARG) {
        s->fault = (cv_pg_fault){0, "data",
                                 "fix the row (its key and reason are logged above) or run with "
                                 "--on-error dead-letter to record it and go on"};
        cv_sync_error(s, "sink", &s->fault);
        return CV_ERR_UNSUPPORTED;
    }
    const char *kind, *fix;
    cv_sink_last_fault(s->sink, &kind, &fix);
    int embed =
        e == CV_ERR_BUSY || e == CV_ERR_SHUTDOWN || (e == CV_ERR_TIMEOUT && !strcmp(kind, "connection"));
    cv_pg_fault f = {e == CV_ERR_TIMEOUT || e == CV_ERR_BUSY || e == CV_ERR_SHUTDOWN, kind, fix};
    if (!f.retriable) /* said here: the store's own lines may not name it */
        cv_error("event=batch_failed stage=%s kind=%s error=\"%s\"%s%s%s", embed ? "embed" : "sink",
                 kind ? kind : "data", cv_strerror(e), fix ? " fix=\"" : "", fix ? fix : "", fix ? "\"" : "");
    cv_sync_error(s, embed ? "embed" : "sink", &f);
    cv_health_store(s, 0);
    return f.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
}

/* HTTP without an in-process model (capture; sync --embed): /metrics, /healthz and the routes
 * given (sync --embed: the search page, which embeds through the remote server, and /wait). */
static cv_err http_without_model(cv_sync *s, const cv_sync_opts *o, const cv_http_route *routes,
                                 int nroutes) {
    cv_server_opts so = {.http = o->http,
                         .api_key = o->api_key,
                         .http_opts = o->http_opts,
                         .routes = routes,
                         .nroutes = nroutes,
                         .ready = cv_health_ready,
                         .ready_arg = s};
    cv_err e = cv_server_start(NULL, &so, &s->rt.server);
    if (!e) s->rt.reg = cv_server_metrics(s->rt.server);
    return e;
}

cv_server_opts cv_sync_inproc_server(const char *url, const char *model_id) {
    return (cv_server_opts){.listen = url,
                            .batch_tokens = 16384,
                            .batch_deadline_ms = 2,
                            .max_queue_tokens = 1 << 22,
                            .max_inflight = 64,
                            .max_message_bytes = 1 << 30,
                            .max_texts = 4096,
                            .max_text_bytes = 1 << 30,
                            .model_id = model_id};
}

cv_err cv_sync_runtime_open(cv_sync *s, const cv_sync_opts *o) {
    memset(s, 0, sizeof *s);
    s->o = *o;
    /* with --embed (and capture): the facts CV_MODEL_ID declares, the server being a cdcvec serve
     * of it; its answers of another dimension are refused (apply.c) */
    s->rt.mf = (cv_model_facts){.id = CV_MODEL_ID, .dim = CV_MODEL_DIM, .pooling = "mean"};
    s->rt.dim = s->rt.mf.dim;
    pthread_mutex_init(&s->search_mu, NULL);
    pthread_cond_init(&s->search_idle, NULL);
    const cv_outlet *out = o->outlet;
    int nroutes = out && out->routes ? out->nroutes : 0;
    if (nroutes) out->routes(s, s->rt.routes);
    int no_model = out && out->no_model;
    cv_err e;
    cv_buf url = {0};
    if (no_model || (o->embed && *o->embed)) {
        /* no model here: capture and the Kafka sink stage (vectors come with the changes), or
         * sync --embed (a remote server embeds); HTTP for /metrics and the outlet's routes */
        if (!no_model) cv_buf_puts(&url, o->embed);
        if (o->http && *o->http) {
            if ((e = http_without_model(s, o, s->rt.routes, nroutes))) {
                free(url.p);
                return e;
            }
        } else {
            s->rt.reg = cv_metrics_new();
            s->rt.own_reg = 1;
        }
    } else {
        cv_minilm_opts mo = {.threads = o->threads, .device = o->device};
        if ((e = cv_minilm_load(o->model_dir && *o->model_dir ? o->model_dir : cv_minilm_default_dir(), &mo,
                                &s->rt.model))) {
            cv_error("event=model_unavailable fix=\"%s\"", cv_minilm_fetch_fix());
            return e;
        }
        s->rt.mf = *cv_minilm_facts(s->rt.model);
        s->rt.dim = s->rt.mf.dim;
        cv_buf_printf(&url, "inproc://cdcvec-sync-%d", (int)getpid());
        /* in-process, a text is only ever read up to its first 256 tokens: no size limit but
         * PostgreSQL's own (1 GB a value) */
        cv_server_opts so = cv_sync_inproc_server(url.p, s->rt.mf.id);
        so.http = o->http;
        so.api_key = o->api_key;
        so.http_opts = o->http_opts;
        so.routes = s->rt.routes;
        so.nroutes = nroutes;
        so.ready = cv_health_ready;
        so.ready_arg = s;
        if ((e = cv_server_start(s->rt.model, &so, &s->rt.server))) {
            free(url.p);
            return e;
        }
        s->rt.reg = cv_server_metrics(s->rt.server);
    }
    if (!no_model) {
        cv_client_opts co = {.timeout_ms = 120000, .retries = 20, .backoff_ms = 20};
        e = cv_client_open(url.p, &co, &s->rt.client);
    }
    free(url.p);
    if (e) return e;
    cv_metrics *r = s->rt.reg;
    static const char *ch = "Source changes applied, by kind.";
    s->rt.m_changes_ins = cv_metrics_counter(r, "cdcvec_sync_changes_total", ch, "kind=\"insert\"");
    s->rt.m_changes_upd = cv_metrics_counter(r, "cdcvec_sync_changes_total", ch, "kind=\"update\"");
    s->rt.m_changes_del = cv_metrics_counter(r, "cdcvec_sync_changes_total", ch, "kind=\"delete\"");
    s->rt.m_changes_trunc = cv_metrics_counter(r, "cdcvec_sync_changes_total", ch, "kind=\"truncate\"");
    s->rt.m_lag = cv_metrics_gauge(r, "cdcvec_sync_replication_lag_bytes",
                                   "pg_current_wal_lsn() minus the slot's confirmed_flush_lsn (the position "
                                   "committed to the store), read from the server every second.",
                                   NULL);
    if (s->o.wal_warn_mb <= 0) s->o.wal_warn_mb = 1024;
    if (s->o.ready_lag_s <= 0) s->o.ready_lag_s = 60;
    if (s->o.broker_down_s <= 0) s->o.broker_down_s = 60;
    if ((e = cv_health_open(s))) return e;
    s->rt.m_retries = cv_metrics_counter(r, "cdcvec_sync_session_retries_total",
                                         "Sessions started again after a retriable error.", NULL);
    /* every series of the errors counter exists from the start, at 0 */
    static const char *stages[] = {"source", "sink", "embed"};
    static const char *kinds[] = {"connection", "auth", "privilege", "missing_object", "config",
                                  "resources",  "data", "conflict",  "server"};
    for (size_t i = 0; i < 3; i++)
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            cv_buf labels = {0};
            cv_buf_printf(&labels, "stage=\"%s\",kind=\"%s\"", stages[i], kinds[k]);
            s->rt.err_series[s->rt.n_err_series].stage = stages[i];
            s->rt.err_series[s->rt.n_err_series].kind = kinds[k];
            s->rt.err_series[s->rt.n_err_series++].m =
                cv_metrics_counter(r, "cdcvec_sync_errors_total", "Sync errors by stage and kind.", labels.p);
            free(labels.p);
        }
    if (out && out->open && (e = out->open(s))) return e;
    if (out && out->no_apply) return CV_OK;
    cv_apply_opts ao = {.client = s->rt.client,
                        .dim = s->rt.dim,
                        .reg = r,
                        .on_error_stop = o->on_error_stop,
                        .max_text_bytes = o->embed && *o->embed ? (size_t)o->max_text_bytes : 0,
                        .fetch = cv_sync_fetch,
                        .fetch_arg = s,
                        .table = o->table,
                        .tok = s->rt.model ? cv_minilm_tok(s->rt.model) : NULL,
                        .max_seq = s->rt.model ? cv_minilm_facts(s->rt.model)->max_seq : 0,
                        .chunk = {.max_tokens = o->chunk_max_tokens,
                                  .overlap = o->chunk_overlap,
                                  .max_seq = s->rt.model ? cv_minilm_facts(s->rt.model)->max_seq : 0}};
    if (o->chunk_max_tokens > 0 && !o->search) {
        char why[300];
        if (!s->rt.model) {
            cv_error(
                "event=config_invalid option=chunk-max-tokens fix=\"chunking counts the model's own tokens: "
                "run the model in this process (drop --embed)\"");
            return CV_ERR_ARG;
        }
        if (cv_chunk_check(&ao.chunk, why, sizeof why)) {
            cv_error("event=config_invalid option=chunk-max-tokens fix=\"%s\"", why);
            return CV_ERR_ARG;
        }
        if (ao.chunk.max_tokens > cv_chunk_limit(&ao.chunk))
            cv_info("event=chunk_limit max_tokens=%d used=%d note=\"the model reads %d tokens with [CLS] and "
                    "[SEP]\"",
                    ao.chunk.max_tokens, cv_chunk_limit(&ao.chunk), ao.chunk.max_seq);
    }
    return cv_apply_new(&ao, &s->rt.apply);
}

void cv_sync_runtime_close(cv_sync *s) {
    cv_sync_session_close(s);
    cv_health_stop(s); /* its thread sets metrics of the server's registry */
    const cv_outlet *out = s->o.outlet;
    if (out && out->stop) out->stop(s);
    cv_client_close(s->rt.client);
    if (s->rt.server) {
        cv_server_drain(s->rt.server, 5000);
        cv_server_free(s->rt.server);
    }
    if (out && out->close) out->close(s);
    cv_health_close(s);
    cv_apply_free(s->rt.apply);
    cv_buf_free(&s->bf_done);
    if (s->rt.own_reg) cv_metrics_free(s->rt.reg);
    cv_minilm_free(s->rt.model);
    pthread_mutex_destroy(&s->search_mu);
    pthread_cond_destroy(&s->search_idle);
    memset(s, 0, sizeof *s);
}

cv_err cv_sync_deliver(cv_sync *s, cv_change *chg, int n, int truncate, uint64_t position, int force,
                       double commit_unix) {
    const cv_outlet *out = s->o.outlet;
    if (out && out->deliver) return out->deliver(s, chg, n, truncate, position, commit_unix);
    cv_err e = cv_apply_batch(s->rt.apply, chg, n, truncate, position, force, commit_unix);
    return e ? cv_sync_batch_failed(s, e) : CV_OK;
}

cv_err cv_sync_fetch(void *arg, cv_change **chg, int n) {
    cv_sync *s = arg;
    /* never while a backfill page's statement is in flight on the same connection (backfill.c):
     * the changes of a page read carry their texts */
    CV_ASSERT(PQtransactionStatus(s->src) != PQTRANS_ACTIVE);
    cv_pg_fault f = {1, "connection", NULL};
    cv_err e = cv_fetch_texts(s->src, &s->t, chg, n, &f);
    if (e) cv_sync_error(s, "source", &f);
    return e;
}

/* One writer per store table (wlock.c): the key names the table and the store (capture: the
 * topic), never the slot, so a second sync with a --slot of its own waits here too. */
static cv_err lock_table(cv_sync *s) {
    const cv_sync_opts *o = &s->o;
    cv_buf key = {0}, holder = {0}, store = {0};
    const char *home;
    cv_sink_table st = {
        .schema = s->t.schema, .table = s->t.name, .ns = o->ns, .index_suffix = o->index_suffix};
    const cv_outlet *out = o->outlet;
    const char *writer = out && out->writer ? out->writer : "writer of this store";
    if (out && out->store) { /* the lock lives beside the slot */
        home = o->source;
        cv_buf_printf(&key, "%s %s.%s %s", writer, s->t.schema, s->t.name, out->store);
        cv_buf_puts(&store, out->store);
    } else {
        cv_wlock_place(o->sink, o->source, o->source, &st, &home, &key);
        cv_sink_store_id(o->sink, &st, &store);
    }
    PGconn *reuse = !strcmp(home, o->source) ? s->src : NULL;
    cv_err e = cv_wlock_take(&s->wlock, home, reuse, key.p, "sync (writer lock)", &holder, &s->fault);
    if (e == CV_ERR_BUSY) {
        if (out && out->store)
            cv_warn("event=table_busy table=%s store=%s holder=\"%s\" note=\"another %s of this table into "
                    "the same place is running; waiting for it to stop\"",
                    s->t.qualified, out->store, holder.p, writer);
        else
            cv_warn(
                "event=table_busy table=%s store=%s holder=\"%s\" note=\"another process writes this table's "
                "vectors into this store (a cdcvec sync, a Kafka sink stage or verify --repair); waiting for "
                "it to stop\"",
                s->t.qualified, store.p, holder.p);
        snprintf(s->why, sizeof s->why, "table_busy: another %s holds %s (%s)", writer, s->t.qualified,
                 holder.p);
        e = CV_ERR_TIMEOUT;
    }
    free(key.p), free(holder.p), free(store.p);
    return e;
}

cv_err cv_sync_writer_lock(cv_sync *s, const char *role, cv_buf *holder) {
    const cv_sync_opts *o = &s->o;
    cv_buf key = {0};
    const char *home;
    cv_sink_table st = {
        .schema = s->t.schema, .table = s->t.name, .ns = o->ns, .index_suffix = o->index_suffix};
    cv_wlock_place(o->sink, o->source, o->source, &st, &home, &key);
    cv_pg_fault f = {1, "connection", NULL};
    cv_err e =
        cv_wlock_take(&s->wlock, home, !strcmp(home, o->source) ? s->src : NULL, key.p, role, holder, &f);
    free(key.p);
    return e;
}

/* An install from before slots were named per database and store: its slot (named by schema
 * and table alone) is kept when it is in this database and this store recorded this table
 * under it (event=slot_adopted); one that is not is named, for it holds WAL until dropped. A
 * slot of another database is never touched. */
static cv_err adopt_legacy(cv_sync *s, cv_buf *slot, const char *legacy, const char *schema,
                           const char *table) {
    const cv_sync_opts *o = &s->o;
    const char *p[4] = {slot->p, legacy, schema, table};
    PGresult *r = PQexecParams(
        s->src,
        "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1), (SELECT database = "
        "current_database() FROM pg_replication_slots WHERE slot_name = $2), (SELECT c.oid FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $3 AND c.relname = $4)",
        4, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cv_pg_classify_result(s->src, r, &s->fault);
        cv_pg_log_fault("source_failed", "slot_names", PQresultErrorField(r, PG_DIAG_SQLSTATE), &s->fault,
                        PQresultErrorMessage(r));
        PQclear(r);
        return s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    }
    int ours = PQgetvalue(r, 0, 1)[0] == 't', fresh = PQgetvalue(r, 0, 0)[0] != 't';
    uint32_t oid = (uint32_t)strtoul(PQgetvalue(r, 0, 2), NULL, 10);
    PQclear(r);
    if (!fresh || !ours) return CV_OK;
    cv_sink_meta m = {0};
    cv_sink_table peek = {.table = table, .stream = legacy, .state_conninfo = o->source, .ns = o->ns};
    cv_sink_meta_peek_table(s->sink_conninfo, &peek, &m);
    if (m.relid && m.relid == oid) {
        cv_info("event=slot_adopted slot=%s table=%s.%s note=\"the slot (and position) of an earlier cdcvec, "
                "kept; a new install would use %s\"",
                legacy, schema, table, slot->p);
        slot->len = 0;
        cv_buf_puts(slot, legacy);
    } else {
        cv_warn(
            "event=slot_legacy slot=%s table=%s.%s note=\"a slot named the way earlier cdcvec versions named "
            "them is in this database, but this store has no record of the table under it, so it is not "
            "used; it keeps WAL until dropped: SELECT pg_drop_replication_slot('%s') once no cdcvec process "
            "uses it\"",
            legacy, schema, table, legacy);
    }
    cv_sink_meta_free(&m);
    return CV_OK;
}

/* The slot, publication and stream (the state key) of the session: --slot, else a name unique
 * per database and store (cv_name_slot_in), or an earlier version's slot (adopt_legacy). */
static cv_err names(cv_sync *s) {
    const cv_sync_opts *o = &s->o;
    const char *dot = strchr(o->table, '.');
    char *schema = dot ? strndup(o->table, (size_t)(dot - o->table)) : strdup("public");
    const char *table = dot ? dot + 1 : o->table;
    cv_buf slot = {0}, pub = {0}, store = {0}, legacy = {0};
    cv_err e = CV_OK;
    int many = o->pipeline; /* a file: its slot and state keys (a migration of a flags sync: the flags') */
    if (o->slot && *o->slot) {
        cv_buf_puts(&slot, o->slot);
    } else if (many) { /* a pipeline: one slot per source database, whatever its tables and stores */
        PGresult *r = PQexec(s->src, "SELECT current_database()");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            cv_pg_classify_result(s->src, r, &s->fault);
            cv_pg_log_fault("source_failed", "current_database", PQresultErrorField(r, PG_DIAG_SQLSTATE),
                            &s->fault, PQresultErrorMessage(r));
            e = s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
        } else if (o->outlet && o->outlet->store) /* capture --config: not sync's pipeline slot */
            cv_name_slot_in(PQgetvalue(r, 0, 0), "pipeline", "tables", "kafka", 1, &slot);
        else
            cv_name_slot_in(PQgetvalue(r, 0, 0), "pipeline", "tables", "", 0, &slot);
        PQclear(r);
    } else {
        PGresult *r = PQexec(s->src, "SELECT current_database()");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            cv_pg_classify_result(s->src, r, &s->fault);
            cv_pg_log_fault("source_failed", "current_database", PQresultErrorField(r, PG_DIAG_SQLSTATE),
                            &s->fault, PQresultErrorMessage(r));
            e = s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
        } else {
            cv_sink_table st = {.schema = schema, .table = table, .ns = o->ns};
            int own_store = o->outlet && o->outlet->store; /* capture: its topic */
            if (own_store)
                cv_buf_puts(&store, o->outlet->store);
            else
                cv_sink_store_id(o->sink, &st, &store);
            cv_name_slot_in(PQgetvalue(r, 0, 0), schema, table, store.p, own_store, &slot);
            if (own_store)
                cv_name_capture_slot(schema, table, &legacy);
            else
                cv_name_slot(schema, table, &legacy);
            e = adopt_legacy(s, &slot, legacy.p, schema, table);
        }
        PQclear(r);
    }
    if (o->publication && *o->publication)
        cv_buf_puts(&pub, o->publication);
    else
        cv_buf_puts(&pub, slot.p ? slot.p : "");
    s->slot = slot.p ? slot.p : strdup("");
    s->publication = pub.p;
    if (many) { /* each table's state in its store: its own key */
        cv_buf st = {0};
        cv_buf_printf(&st, "%s/%s.%s", s->slot, schema, table);
        s->stream = st.p;
    } else
        s->stream = strdup(s->slot);
    if (o->index_suffix && *o->index_suffix) { /* a migration's shadow index: a state row of its own */
        cv_buf st = {0};
        cv_buf_printf(&st, "%s%s", s->stream, o->index_suffix);
        free(s->stream);
        s->stream = st.p;
    }
    free(schema), free(store.p), free(legacy.p);
    return e;
}

/* A backfill row handed to the outlet as an insert (cv_table.row_hook). */
static void backfill_row(void *arg, const cv_rowval *v, cv_change *c) {
    cv_sync *s = arg;
    s->o.outlet->row(s, v, NULL, "insert", c);
}

cv_err cv_sync_session_open(cv_sync *s, int replication) {
    s->in_session = 1;
    s->resnapshot = s->refresh = s->restart_now = s->pub_added = 0;
    s->fault = (cv_pg_fault){1, "connection", NULL};
    s->why[0] = 0;
    cv_pg_last_message_clear();
    const cv_sync_opts *o = &s->o;
    s->sink_conninfo = o->sink && *o->sink ? o->sink : o->source;
    s->src = cv_pg_connect(o->source, 0, "source");
    if (PQstatus(s->src) != CONNECTION_OK) {
        cv_pg_classify_connect(s->src, &s->fault);
        cv_pg_log_fault("source_connect", NULL, NULL, &s->fault, PQerrorMessage(s->src));
        cv_sync_error(s, "source", &s->fault);
        return s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    }
    cv_err e = names(s);
    if (e) {
        cv_sync_error(s, "source", &s->fault);
        return e;
    }
    /* what an earlier run recorded (to follow a renamed text column) */
    cv_sink_meta meta = {0};
    /* Qdrant / Upstash keep position and meta in the source database (sink/sink.h) */
    cv_sink_table peek = {.table = o->table,
                          .stream = s->stream,
                          .state_conninfo = o->source,
                          .ns = o->ns,
                          .uuid_ids = o->uuid_ids};
    const char *dot = strchr(o->table, '.');
    if (dot) peek.table = dot + 1;
    cv_sink_meta_peek_table(s->sink_conninfo, &peek, &meta);
    const char *text = o->search ? NULL : o->text_column && *o->text_column ? o->text_column : "description";
    e = cv_table_describe(s->src, o->table, text, o->search ? NULL : o->template_, meta.text_source, &s->t,
                          &s->fault);
    if (e) {
        cv_sync_error(s, "source", &s->fault);
        cv_sink_meta_free(&meta);
        return e;
    }
    if (o->where && *o->where) s->t.where = strdup(o->where); /* the backfill reads what is published */
    if (!e && o->columns && !o->search) e = cv_table_columns(&s->t, o->columns, o->columns_at, &s->fault);
    if (e) {
        cv_sync_error(s, "source", &s->fault);
        cv_sink_meta_free(&meta);
        return e;
    }
    const cv_outlet *out = o->outlet;
    int no_model = out && out->no_model;
    if (out && out->row) {
        s->t.row_hook = backfill_row; /* a backfill's rows, as inserts */
        s->t.row_hook_arg = s;
    }
    if (replication) {
        if ((e = lock_table(s)) ||
            (e = cv_source_prepare(s->src, &s->t, s->publication, &s->pub_added, &s->fault))) {
            if (e != CV_ERR_TIMEOUT || strcmp(s->fault.kind, "conflict"))
                cv_sync_error(s, "source", &s->fault);
            cv_sink_meta_free(&meta);
            return e;
        }
    }
    if ((e = cv_stamp_check(s, &meta))) { /* stamp.c: another model or text source recorded */
        cv_sink_meta_free(&meta);
        return e;
    }
    cv_sink_table st = {.schema = s->t.schema,
                        .table = s->t.name,
                        .nkeys = s->t.nkeys,
                        .key_names = s->t.keyname,
                        .key_types = s->t.keytype,
                        .dim = no_model ? 0 : s->rt.dim, /* capture: its bookkeeping only */
                        .model_id = s->rt.mf.id,
                        .model_revision = s->rt.mf.revision,
                        .text_source = s->t.text_source,
                        .stream = s->stream,
                        .state_conninfo = o->source,
                        .ns = o->ns,
                        .uuid_ids = o->uuid_ids,
                        .writers = o->sink_writers,
                        .key_exact = s->t.key_exact,
                        .index_mem_mb = o->index_memory_mb,
                        .chunked = o->search ? -1 : o->chunk_max_tokens > 0,
                        .index_suffix = o->index_suffix,
                        .retry_s = s->tables && s->tables->n > 1 ? 2 : 0};
    if ((e = cv_sink_open(s->sink_conninfo, &st, &s->sink))) {
        const char *kind, *fix;
        cv_sink_last_fault(s->sink, &kind, &fix);
        cv_pg_fault f = {e == CV_ERR_TIMEOUT, kind, fix};
        cv_sync_error(s, "sink", &f);
        cv_health_store(s, 0);
        cv_sink_meta_free(&meta);
        return e;
    }
    /* a store of an earlier version (or one written with --embed, which knows no revision) */
    if (replication && (e = cv_stamp_adopt(s, &meta))) {
        cv_sink_meta_free(&meta);
        return e;
    }
    cv_health_store(s, 1);
    cv_health_slot(s, s->slot);
    if (s->rt.apply) {
        cv_apply_set_sink(s->rt.apply, s->sink, cv_sync_fetch, s, s->t.key_exact);
        cv_buf name = {0};
        cv_buf_printf(&name, "%s.%s", s->t.schema, s->t.name);
        CV_ASSERT(name.p && !name.oom);
        cv_apply_set_table(s->rt.apply, name.p);
        free(name.p);
    }
    if (out && out->described) out->described(s);
    /* what changed since the last run */
    if (replication && meta.relid && meta.relid != s->t.oid) {
        cv_warn(
            "event=table_recreated table=%s old_oid=%u new_oid=%u action=\"rebuilding the index from a new "
            "snapshot\"",
            s->t.qualified, meta.relid, s->t.oid);
        s->resnapshot = 1;
    } else if (replication && meta.layout && strcmp(meta.layout, s->t.layout) != 0) {
        cv_info(
            "event=schema_changed table=%s action=\"refreshing every row's payload (texts re-embedded only "
            "where they changed)\"",
            s->t.qualified);
        s->refresh = 1;
    }
    cv_sink_meta_free(&meta);
    return CV_OK;
}

void cv_sync_session_close(cv_sync *s) {
    if (!s->in_session) return;
    if (s->rt.apply) cv_apply_set_sink(s->rt.apply, NULL, NULL, NULL, 1);
    cv_sink_close(s->sink);
    if (s->src) PQfinish(s->src);
    cv_table_free(&s->t);
    cv_wlock_release(&s->wlock);
    free(s->slot), free(s->publication), free(s->stream);
    s->slot = s->publication = s->stream = NULL;
    s->sink = NULL;
    s->src = NULL;
    s->in_session = 0;
}

void cv_sync_stream_names(cv_sync *s) { names(s); }

cv_err cv_sync_writer_lock_for(cv_sync *s, const char *event, const char *cmd, const char *extra) {
    cv_buf holder = {0};
    cv_err e = cv_sync_writer_lock(s, cmd, &holder);
    if (e == CV_ERR_BUSY)
        cv_error(
            "event=%s_stopped table=%s holder=\"%s\" error=\"a cdcvec sync of this table is running (or "
            "a Kafka sink stage, verify --repair or a backfill writes it into this store): a %s beside it "
            "would race it\" fix=\"stop it, run cdcvec %s, start it again%s%s\"",
            event, s->t.qualified, holder.p ? holder.p : "-", cmd, cmd, extra ? " " : "", extra ? extra : "");
    free(holder.p);
    return e;
}
