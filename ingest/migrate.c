/* migrate.c: `cdcvec migrate`: a table's index rebuilt with another model or text source beside
 * the live one, verified, and switched in atomically (docs/ARCHITECTURE.md, "Migrations").
 *
 * The pipeline runs as cdcvec sync runs it (every table of the file on its slot, or the one
 * table of the flags), with one more pipe: the migrated table again, into a shadow index
 * (sink.h: index suffix "__next", a state row of its own), embedded by the new model, loaded in
 * this process beside the old one. The stream gives each change of the table to both pipes:
 * the old model keeps the live index current while the new one fills the shadow. The shadow
 * joins as any new table does (tables.c): backfilled through a temporary slot's exported
 * snapshot while the others stream, then streaming from the pipeline's slot.
 *
 * Once it streams, a checkpoint: a second temporary slot's exported snapshot, at position X.
 * The stream applies every transaction ending at or before X, then pauses at the first one past
 * it (sync.c; the slot replays the rest later), so the shadow holds exactly the snapshot's rows.
 * verify (verify.c) compares the source as of the snapshot with the shadow; only with zero
 * differences is it switched in: one transaction of the store renames the live index to "__old"
 * and the shadow to the live name (sink/pgvector_migrate.c). Then the process stops: the next
 * cdcvec sync, with the new model, finds its stamp and position in the live index. Rollback swaps
 * them back and marks the restored index for a backfill (its rows since the switch are brought
 * back by a hash-checked backfill through a snapshot and a sweep of orphans, slot.c). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "../common/cv_time.h"
#include "sync_impl.h"

#define SHADOW "__next"
#define OLD    "__old"

enum { M_FILLING = 0, M_CHECKPOINT, M_VERIFYING, M_SWITCHED };

#define MAX_MIGRATE 256

struct cv_migration {
    int n;                                      /* tables migrated */
    int live[MAX_MIGRATE], shadow[MAX_MIGRATE]; /* their pipes (no reloads during a migration: they stay) */
    int owner;    /* the shadow pipe that loaded the new model (-1: none yet); the others share it */
    int phase;    /* M_* */
    PGconn *snap; /* the replication connection whose temporary slot exported the snapshot */
    char *snapshot;
    cv_metric *m_phase, *m_differences;
    double started;
    cv_tables *T;    /* for the progress gauges */
    cv_metrics *reg; /* the shadows' apply counters, freed after the run (a scrape may read them) */
};

cv_err cv_migrate_shadow_open(cv_tables *T, cv_pipe *p) {
    cv_sync *s = p->s;
    const cv_sync_opts *o = &s->o;
    struct cv_migration *m = T->mig;
    if (m && m->owner >= 0) { /* the new model is loaded: this shadow shares it (a twin apply stage) */
        cv_pipe *w = &T->p[m->owner];
        s->rt.mf = w->s->rt.mf;
        s->rt.dim = w->s->rt.dim;
        s->rt.model = w->model;
        s->rt.client = w->client;
        cv_apply_free(p->apply);
        p->apply = NULL;
        cv_err e = cv_apply_twin(w->apply, &p->apply);
        if (e) return e;
        cv_apply_set_chunk(p->apply, o->chunk_max_tokens, o->chunk_overlap);
        s->rt.apply = p->apply;
        return CV_OK;
    }
    cv_minilm_opts mo = {.threads = o->threads, .device = o->device};
    cv_err e = cv_minilm_load(o->model_dir && *o->model_dir ? o->model_dir : cv_minilm_default_dir(), &mo,
                              &p->model);
    if (e) {
        cv_error("event=model_unavailable model=%s fix=\"give --to-model a sentence-transformers folder (the "
                 "line above says what is wrong with it)\"",
                 o->model_dir ? o->model_dir : "(default)");
        return e;
    }
    s->rt.mf = *cv_minilm_facts(p->model);
    s->rt.dim = s->rt.mf.dim;
    s->rt.model = p->model;
    cv_buf url = {0};
    cv_buf_printf(&url, "inproc://cdcvec-migrate-%d", (int)getpid());
    cv_server_opts so = {.listen = url.p,
                         .batch_tokens = 16384,
                         .batch_deadline_ms = 2,
                         .max_queue_tokens = 1 << 22,
                         .max_inflight = 64,
                         .max_message_bytes = 1 << 30,
                         .max_texts = 4096,
                         .max_text_bytes = 1 << 30,
                         .model_id = s->rt.mf.id};
    cv_client_opts co = {.timeout_ms = 120000, .retries = 20, .backoff_ms = 20};
    if (!(e = cv_server_start(p->model, &so, &p->server))) e = cv_client_open(url.p, &co, &p->client);
    cv_buf_free(&url);
    if (e) return e;
    s->rt.client = p->client;
    /* its own counters: the exported ones are the live table's */
    p->reg = cv_metrics_new();
    cv_apply_opts ao = {.client = p->client,
                        .dim = s->rt.dim,
                        .reg = p->reg,
                        .on_error_stop = o->on_error_stop,
                        .fetch = cv_sync_fetch,
                        .fetch_arg = s,
                        .table = o->table,
                        .tok = cv_minilm_tok(p->model),
                        .max_seq = s->rt.mf.max_seq,
                        .chunk = {.max_tokens = o->chunk_max_tokens,
                                  .overlap = o->chunk_overlap,
                                  .max_seq = s->rt.mf.max_seq}};
    cv_apply_free(p->apply);
    p->apply = NULL;
    if ((e = cv_apply_new(&ao, &p->apply))) return e;
    s->rt.apply = p->apply;
    if (m) m->owner = (int)(p - T->p), m->reg = p->reg;
    cv_info(
        "event=migrate_model model=%s revision=%.12s dim=%d note=\"the shadow index's model, loaded beside "
        "the live one\"",
        s->rt.mf.id, s->rt.mf.revision ? s->rt.mf.revision : "-", s->rt.dim);
    return CV_OK;
}

void cv_migrate_shadow_close(cv_pipe *p) {
    if (!p->model) return;
    cv_client_close(p->client);
    if (p->server) {
        cv_server_drain(p->server, 5000);
        cv_server_free(p->server);
    }
    cv_minilm_free(p->model);
    p->model = NULL, p->server = NULL, p->client = NULL, p->reg = NULL; /* reg: freed by cv_migrate_run */
}

static void snap_close(struct cv_migration *m) {
    if (m->snap) PQfinish(m->snap); /* the temporary slot goes with it */
    m->snap = NULL;
    free(m->snapshot);
    m->snapshot = NULL;
}

/* A counter of the shadows' own apply stages (their registry is not exported), read from its text. */
static double shadow_counter(struct cv_migration *m, const char *name) {
    if (!m->reg) return 0;
    size_t len = 0;
    char *text = cv_metrics_render(m->reg, &len);
    double v = 0;
    size_t nl = strlen(name);
    for (char *l = text; l && *l;) {
        if (!strncmp(l, name, nl) && l[nl] == ' ') v = strtod(l + nl + 1, NULL);
        char *e = strchr(l, '\n');
        l = e ? e + 1 : NULL;
    }
    free(text);
    return v;
}

cv_err cv_migrate_tick(cv_tables *T) {
    struct cv_migration *m = T->mig;
    if (m->phase != M_FILLING) return CV_OK;
    /* every pipe streams in this session: the shadows have joined (before this session) */
    for (int i = 0; i < T->n; i++)
        if (T->p[i].state != CV_PIPE_STREAMING || !T->p[i].open || T->p[i].join_done) return CV_OK;
    cv_sync *s = T->p[m->shadow[0]].s;
    m->snap = cv_pg_connect(s->o.source, 1, "migrate checkpoint");
    if (PQstatus(m->snap) != CONNECTION_OK) {
        cv_warn("event=migrate_checkpoint_failed error=\"%s\" note=\"tried again later\"",
                PQerrorMessage(m->snap));
        snap_close(m);
        return CV_OK;
    }
    static int seq;
    cv_buf name = {0};
    cv_buf_printf(&name, "cdcvec_migrate_%d_%d", (int)getpid(), ++seq);
    uint64_t at = 0;
    cv_err e = cv_slot_create(s, m->snap, name.p, 1, &at, &m->snapshot);
    cv_buf_free(&name);
    if (e) {
        snap_close(m);
        return CV_OK; /* logged; the next tick tries again */
    }
    T->stop_at = at;
    T->paused = 0;
    m->phase = M_CHECKPOINT;
    cv_metric_set(m->m_phase, M_CHECKPOINT);
    char l[24];
    cv_lsn_format(at, l);
    cv_info(
        "event=migrate_checkpoint tables=%d position=%s note=\"live and shadow indexes take every change up "
        "to here, then each shadow is verified against the source as of this position\"",
        m->n, l);
    return CV_OK;
}

/* The checkpoint given up (a table held meanwhile): the stream starts again, a new one later. */
static cv_err not_now(cv_tables *T, const char *why) {
    struct cv_migration *m = T->mig;
    snap_close(m);
    T->stop_at = 0;
    T->paused = 0;
    m->phase = M_FILLING;
    cv_metric_set(m->m_phase, M_FILLING);
    cv_warn("event=migrate_checkpoint_again reason=\"%s\"", why);
    cv_sync *s0 = T->p[0].s;
    snprintf(s0->why, sizeof s0->why, "migrate_checkpoint: %s", why);
    s0->restart_now = 1;
    return CV_ERR_TIMEOUT;
}

/* Shadow k against the source through db (in the checkpoint's snapshot): *total differences. */
static cv_err check_one(cv_tables *T, int k, PGconn *db, volatile sig_atomic_t *stop, long *total) {
    struct cv_migration *m = T->mig;
    cv_sync *s = T->p[m->shadow[k]].s;
    PGconn *own = s->src;
    s->src = db;
    long src_rows = 0, store_rows = 0;
    double t0 = cv_now();
    cv_info("event=migrate_verify table=%s note=\"the shadow index against the source as of the checkpoint\"",
            s->t.qualified);
    cv_err e = cv_verify_session(s, 20, stop, total, &src_rows, &store_rows);
    s->src = own;
    if (!e)
        cv_info(
            "event=migrate_verified table=%s source_rows=%ld shadow_rows=%ld differences=%ld seconds=%.1f",
            s->t.qualified, src_rows, store_rows, *total, cv_now() - t0);
    if (!e && *total)
        cv_error(
            "event=migrate_refused table=%s differences=%ld error=\"the shadow index does not equal the "
            "source as of the checkpoint (the lines above name the keys): no switch\" fix=\"the live "
            "indexes are untouched; look for dead letters of the new model (cdcvec dead-letters list), then "
            "run cdcvec migrate again (it builds the shadows again)\"",
            s->t.qualified, *total);
    return e;
}

cv_err cv_migrate_checkpoint(cv_tables *T, volatile sig_atomic_t *stop) {
    struct cv_migration *m = T->mig;
    T->paused = 0;
    if (!m || m->phase != M_CHECKPOINT) return CV_OK;
    for (int i = 0; i < T->n; i++)
        if (T->p[i].state != CV_PIPE_STREAMING || !T->p[i].open)
            return not_now(T, "a table was held or is joining");
    cv_sync *s = T->p[m->shadow[0]].s;
    m->phase = M_VERIFYING;
    cv_metric_set(m->m_phase, M_VERIFYING);
    /* the source as of the checkpoint: the snapshot, on a connection of its own */
    PGconn *db = cv_pg_connect(s->o.source, 0, "migrate verify");
    cv_buf set = {0};
    cv_buf_printf(&set, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '%s'",
                  m->snapshot);
    PGresult *r = PQstatus(db) == CONNECTION_OK ? PQexec(db, set.p) : NULL;
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        cv_warn("event=migrate_snapshot_failed error=\"%s\"",
                r ? PQresultErrorMessage(r) : PQerrorMessage(db));
    PQclear(r);
    cv_buf_free(&set);
    if (!ok) {
        PQfinish(db);
        return not_now(T, "the checkpoint's snapshot could not be imported");
    }
    long all = 0;
    cv_err e = CV_OK;
    for (int k = 0; k < m->n && !e; k++) {
        long total = 0;
        e = check_one(T, k, db, stop, &total);
        all += total;
    }
    PQfinish(db);
    snap_close(m);
    T->stop_at = 0;
    if (e) {
        if (*stop) return e;
        return not_now(T, "a shadow's check failed (the lines above say why)");
    }
    cv_metric_set(m->m_differences, (double)all);
    if (all) {
        s->fault = (cv_pg_fault){0, "data", "see the migrate_refused lines"};
        T->p[0].s->fault = s->fault;
        return CV_ERR_UNSUPPORTED;
    }
    /* the switches: one transaction of each table's store */
    for (int k = 0; k < m->n; k++) {
        cv_pipe *lv = &T->p[m->live[k]];
        cv_sync *sh = T->p[m->shadow[k]].s;
        cv_sink_table t = {.schema = lv->s->t.schema, .table = lv->s->t.name, .stream = lv->s->stream};
        e = cv_sink_index_swap(lv->s->sink_conninfo, &t, SHADOW, OLD, 0);
        if (e) {
            cv_error("event=migrate_switch_failed table=%s switched_before=%d fix=\"the tables named in "
                     "migrate_switched lines before this one are switched, this one and the ones after are "
                     "not: run cdcvec migrate again for them (--table), or --rollback the switched ones\"",
                     lv->s->t.qualified, k);
            s->fault = (cv_pg_fault){0, "sink", "see the migrate_switch_failed line"};
            T->p[0].s->fault = s->fault;
            return CV_ERR_UNSUPPORTED;
        }
        cv_info("event=migrate_switched table=%s model=%s text_source=\"%s\" old_index_suffix=%s",
                lv->s->t.qualified, sh->rt.mf.id, sh->t.text_source ? sh->t.text_source : "-", OLD);
    }
    m->phase = M_SWITCHED;
    cv_metric_set(m->m_phase, M_SWITCHED);
    cv_info(
        "event=migrate_done tables=%d seconds=%.0f embedded=%.0f kept=%.0f next=\"start cdcvec sync with the "
        "new model (--model / the file's model:) and text; rollback: cdcvec migrate --rollback; free the old "
        "indexes: cdcvec migrate --drop-old\"",
        m->n, cv_now() - m->started, shadow_counter(m, "cdcvec_sync_embedded_total"),
        shadow_counter(m, "cdcvec_sync_reembed_skipped_total"));
    *stop = 1; /* this process was the migration: the sync of the new indexes is the user's to start */
    return CV_OK;
}

/* ---- the command ---- */

/* The live index's names (schema, table, state key) as sync computes them, into s (s->src open). */
static cv_err live_names(const cv_sync_opts *o, cv_sync *s, char **schema, char **table) {
    memset(s, 0, sizeof *s);
    s->o = *o;
    s->src = cv_pg_connect(o->source, 0, "migrate");
    if (PQstatus(s->src) != CONNECTION_OK) {
        cv_error("event=migrate_failed step=connect error=\"%s\"", PQerrorMessage(s->src));
        PQfinish(s->src);
        s->src = NULL;
        return CV_ERR_TIMEOUT;
    }
    cv_sync_stream_names(s);
    const char *dot = strchr(o->table, '.');
    *schema = dot ? strndup(o->table, (size_t)(dot - o->table)) : strdup("public");
    *table = strdup(dot ? dot + 1 : o->table);
    s->t.schema = *schema;
    s->t.name = *table;
    cv_buf q = {0};
    cv_buf_printf(&q, "%s.%s", *schema, *table);
    s->t.qualified = q.p;
    return CV_OK;
}

static void live_free(cv_sync *s, char *schema, char *table) {
    cv_wlock_release(&s->wlock);
    if (s->src) PQfinish(s->src);
    free(s->slot), free(s->publication), free(s->stream), free(s->t.qualified);
    free(schema), free(table);
}

/* --rollback and --drop-old: the store's indexes, with no sync of the table running. */
static int manage(const cv_sync_opts *o, const cv_migrate_opts *mo) {
    cv_sync s;
    char *schema = NULL, *table = NULL;
    if (live_names(o, &s, &schema, &table)) return 1;
    const char *store = o->sink && *o->sink ? o->sink : o->source;
    const char *cmd = mo->rollback ? "migrate --rollback" : "migrate --drop-old";
    int rc = 1;
    cv_sink_table t = {.schema = schema, .table = table, .stream = s.stream};
    int tab = 0, st = 0;
    if (cv_sync_writer_lock_for(&s, "migrate", cmd, NULL)) goto out;
    if (cv_sink_index_has(store, &t, OLD, &tab, &st)) goto out;
    if (!tab) {
        cv_error("event=migrate_refused table=%s.%s error=\"no old index (%s) to %s\" fix=\"%s\"", schema,
                 table, OLD, mo->rollback ? "go back to" : "drop",
                 mo->rollback ? "a rollback follows a switch of cdcvec migrate; a dropped old index is gone"
                              : "nothing to free");
        rc = mo->rollback ? 1 : 0;
        goto out;
    }
    if (mo->rollback) {
        /* the restored index missed the changes since the switch: a sync backfills it again
         * (hash-checked: only changed texts are embedded) and sweeps the rows deleted meanwhile */
        if (cv_sink_index_swap(store, &t, OLD, OLD, 1)) goto out;
        cv_info(
            "event=migrate_rolled_back table=%s.%s note=\"the old index is live again, the new one kept as "
            "%s; start cdcvec sync with the old model: it backfills the old index again first (only texts "
            "changed since the switch are embedded; rows deleted meanwhile are swept)\"",
            schema, table, OLD);
        rc = 0;
    } else {
        int dropped = 0;
        if (cv_sink_index_drop(store, &t, OLD, &dropped)) goto out;
        cv_info("event=migrate_old_dropped table=%s.%s", schema, table);
        rc = 0;
    }
out:
    live_free(&s, schema, table);
    return rc;
}

/* Before a migration of o's table: refused while an earlier switch's old index is there; an
 * earlier migration's unfinished shadow dropped (it is built again). 0, or an exit status. */
static int leftovers(const cv_sync_opts *o) {
    cv_sync s;
    char *schema = NULL, *table = NULL;
    if (live_names(o, &s, &schema, &table)) return 1;
    const char *store = o->sink && *o->sink ? o->sink : o->source;
    cv_sink_table t = {.schema = schema, .table = table, .stream = s.stream};
    int tab = 0, st = 0, rc = 1;
    /* a sync of the table running: refused now (its pipe would wait for the lock, retrying) */
    if (cv_sync_writer_lock_for(&s, "migrate", "migrate", "(with the new model once it has switched)")) goto out;
    cv_wlock_release(&s.wlock);
    if (cv_sink_index_has(store, &t, OLD, &tab, &st)) goto out;
    if (tab) {
        cv_error(
            "event=migrate_refused table=%s.%s error=\"an old index from an earlier switch is still there "
            "(%s)\" fix=\"free it with cdcvec migrate --drop-old (or go back to it with --rollback)\"",
            schema, table, OLD);
        goto out;
    }
    if (cv_sink_index_has(store, &t, SHADOW, &tab, &st)) goto out;
    if (tab || st) {
        int dropped = 0;
        if (cv_sink_index_drop(store, &t, SHADOW, &dropped)) goto out;
        cv_info(
            "event=migrate_shadow_dropped table=%s.%s note=\"an earlier migration's unfinished shadow: built "
            "again from a new snapshot\"",
            schema, table);
    }
    rc = 0;
out:
    live_free(&s, schema, table);
    return rc;
}

int cv_migrate_run(const cv_sync_opts *o, int n, const int *which, int nwhich, const cv_migrate_opts *mo,
                   volatile sig_atomic_t *stop) {
    if (nwhich < 1 || nwhich > MAX_MIGRATE) return 2;
    if (mo->rollback || mo->drop_old) {
        int rc = 0;
        for (int k = 0; k < nwhich; k++) {
            int r = manage(&o[which[k]], mo);
            if (r > rc) rc = r;
        }
        return rc;
    }
    for (int k = 0; k < nwhich; k++) {
        if (o[which[k]].embed && *o[which[k]].embed) {
            cv_error(
                "event=migrate_refused error=\"the live index's model runs in a remote server (--embed)\" "
                "fix=\"run cdcvec migrate with both models in this process (drop --embed, give --model)\"");
            return 2;
        }
        int rc = leftovers(&o[which[k]]);
        if (rc) return rc;
    }
    /* the pipeline, with the shadows last */
    cv_sync_opts *all = calloc((size_t)(n + nwhich), sizeof *all);
    CV_ASSERT(all);
    memcpy(all, o, sizeof *o * (size_t)n);
    struct cv_migration m = {.n = nwhich, .owner = -1, .started = cv_now()};
    for (int k = 0; k < nwhich; k++) {
        cv_sync_opts *sh = &all[n + k];
        *sh = o[which[k]];
        sh->index_suffix = SHADOW;
        sh->outlet = NULL;
        sh->http = NULL;
        sh->resnapshot = 0;
        if (mo->to_model) sh->model_dir = mo->to_model;
        if (mo->to_template) sh->template_ = mo->to_template;
        /* the same model: the live index's vectors are copied first, and only rows whose text
         * changes under the new template are embedded (the backfill's hash check) */
        sh->index_seed = !mo->to_model;
        m.live[k] = which[k];
        m.shadow[k] = n + k;
        cv_info(
            "event=migrate_started table=%s to_model=%s to_template=\"%s\" note=\"a shadow index fills from "
            "a snapshot while both indexes take the live changes; searches stay on the live one until the "
            "switch\"",
            o[which[k]].table, mo->to_model ? mo->to_model : "(the same)",
            mo->to_template ? mo->to_template : "(the same)");
    }
    int rc = cv_sync_run_pipeline(all, n + nwhich, NULL, NULL, &m, stop, NULL);
    snap_close(&m);
    cv_metrics_free(m.reg);
    free(all);
    if (!rc && m.phase != M_SWITCHED) {
        cv_warn(
            "event=migrate_stopped note=\"stopped before the switch: the live indexes are untouched; cdcvec "
            "migrate builds the shadows again\"");
        return 1;
    }
    return rc;
}

/* Progress over the shadows' backfills. */
static double g_rows(void *arg) {
    struct cv_migration *m = arg;
    double v = 0;
    for (int k = 0; m->T && k < m->n; k++)
        if (m->T->p[m->shadow[k]].s) v += (double)m->T->p[m->shadow[k]].s->bf_rows;
    return v;
}
static double g_total(void *arg) {
    struct cv_migration *m = arg;
    double v = 0;
    for (int k = 0; m->T && k < m->n; k++)
        if (m->T->p[m->shadow[k]].s) v += (double)m->T->p[m->shadow[k]].s->bf_total;
    return v;
}
static double g_eta(void *arg) {
    struct cv_migration *m = arg;
    double v = 0;
    for (int k = 0; m->T && k < m->n; k++)
        if (m->T->p[m->shadow[k]].s && m->T->p[m->shadow[k]].s->bf_eta_s > v)
            v = m->T->p[m->shadow[k]].s->bf_eta_s;
    return v;
}
static double g_embedded(void *arg) { return shadow_counter(arg, "cdcvec_sync_embedded_total"); }
static double g_kept(void *arg) { return shadow_counter(arg, "cdcvec_sync_reembed_skipped_total"); }

void cv_migrate_metrics(cv_tables *T, cv_metrics *reg) {
    struct cv_migration *m = T->mig;
    if (!m) return;
    m->m_phase = cv_metrics_gauge(reg, "cdcvec_migrate_phase",
                                  "cdcvec migrate: 0 filling the shadow index (its backfill, then its "
                                  "catching up: cdcvec_table_lag_seconds{table=\"...__next\"}), 1 at the "
                                  "checkpoint, 2 verifying, 3 switched.",
                                  NULL);
    m->m_differences =
        cv_metrics_gauge(reg, "cdcvec_migrate_differences",
                         "cdcvec migrate: differences the last check of the shadow found.", NULL);
    m->T = T;
    cv_metrics_gauge_fn(reg, "cdcvec_migrate_backfill_rows",
                        "cdcvec migrate: rows of the shadows' backfills done.", NULL, g_rows, m);
    cv_metrics_gauge_fn(
        reg, "cdcvec_migrate_backfill_rows_estimate",
        "cdcvec migrate: the migrated tables' rows, as PostgreSQL estimates them when their backfills start.",
        NULL, g_total, m);
    cv_metrics_gauge_fn(reg, "cdcvec_migrate_backfill_eta_seconds",
                        "cdcvec migrate: seconds left in the slowest shadow backfill at its rate so far.",
                        NULL, g_eta, m);
    cv_metrics_gauge_fn(reg, "cdcvec_migrate_embedded",
                        "cdcvec migrate: rows the new model embedded into the shadow.", NULL, g_embedded, m);
    cv_metrics_gauge_fn(
        reg, "cdcvec_migrate_kept",
        "cdcvec migrate: rows whose vector the shadow kept (a template-only change: the text did "
        "not change).",
        NULL, g_kept, m);
}
