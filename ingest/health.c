/* health.c: what /readyz and the lag metrics say about a running stage (sync_impl.h).
 *
 * Liveness and readiness are kept apart, as Kubernetes means them: /healthz answers 200 while
 * the process runs (a source or store outage is not a reason to restart it), /readyz answers
 * 200 only while the stage does its job now: streaming from the slot (or consuming its topic),
 * the source database and the store reachable, the oldest committed change not yet in the
 * store younger than --ready-lag-s, the slot's retained WAL under --wal-warn-mb, and each peer
 * a stage registered (cv_health_peer: a Kafka client's brokers, kafka/client.h) reachable within
 * --broker-down-s.
 *
 * The lag is read from the server, not guessed from the stream: every second a connection of
 * its own reads pg_current_wal_lsn() against the slot's confirmed_flush_lsn (lag) and
 * restart_lsn (retained WAL), and the slot's wal_status (max_slot_wal_keep_size: 'unreserved'
 * warns, 'lost' is an error with the fix). So the figures move while the session is down
 * (a store outage) and fall back once the slot is confirmed again. The age of the oldest
 * unapplied commit comes from the stream itself (the commit timestamps of transactions
 * received but not yet in the store, kept across session retries). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "../common/cv_signal.h"
#include "pgvalue.h"
#include "store_rows.h"
#include "sync_impl.h"

#define MONITOR_INTERVAL 1.0   /* seconds between lag readings */
#define RETAINED_REWARN  300.0 /* seconds between repeated warnings while over the threshold */
#define MB               (1024.0 * 1024.0)

struct cv_health {
    pthread_mutex_t mu;
    pthread_t th;
    int started, stop;
    cv_sync *s;
    int replication; /* a slot to watch (sync, capture) */
    char *slot;
    int streaming, store_ok, source_up;
    double oldest_unapplied; /* wall-clock commit time of the oldest change not in the store; 0: none */
    double lag_bytes, retained, lag_s;
    double skew; /* the source's clock minus ours: commit times are the source's */
    int over, lost, unreserved;
    double over_logged;
    cv_health_peer peer[4]; /* peers whose contact counts (Kafka clients' brokers) */
    int npeer;
    cv_metric *m_lag_s, *m_retained, *m_over, *m_lost, *m_source_up, *m_ready;
    /* a pipeline's tables (ingest/tables.c), each with its own readiness and freshness; none
     * for a stage of one table (its figures are the stage's) */
    struct table_health {
        const cv_sync *s;
        char *name;
        uint32_t oid;
        int streaming, store_ok, gone;
        double oldest_unapplied, lag_s, lag_bytes;
        uint64_t applied;
        cv_metric *m_lag_s, *m_lag_bytes, *m_applied, *m_streaming, *m_rows, *m_rows_store;
    } * tab;
    int ntab;
    cv_store_rows *rows; /* cdcvec_table_rows_store (store_rows.h), started with the first table */
    uint64_t wal_lsn;    /* pg_current_wal_lsn() at the last reading */
    int readings;
};

/* The entry of a pipeline's table (h->mu held), or NULL (a stage of one table). */
static struct table_health *entry(struct cv_health *h, const cv_sync *s) {
    for (int i = 0; i < h->ntab; i++)
        if (h->tab[i].s == s && !h->tab[i].gone) return &h->tab[i];
    return NULL;
}

static void label(cv_buf *b, const char *table) {
    cv_buf_puts(b, "table=\"");
    for (const char *p = table; *p; p++) { /* a label value escapes \\ and \" */
        if (*p == '\\' || *p == '"') cv_buf_put(b, "\\", 1);
        cv_buf_put(b, p, 1);
    }
    cv_buf_puts(b, "\"");
}

void cv_health_table(cv_sync *s, int on) {
    struct cv_health *h = s->rt.health;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    struct table_health *t = NULL;
    cv_buf nm = {0}; /* the label: schema.table, as the apply stage's per-table series have it */
    if (s->t.schema && s->t.name)
        cv_buf_printf(&nm, "%s.%s", s->t.schema, s->t.name);
    else
        cv_buf_printf(&nm, "%s%s", strchr(s->o.table, '.') ? "" : "public.", s->o.table);
    if (s->o.index_suffix) cv_buf_puts(&nm, s->o.index_suffix); /* a migration's shadow: its own series */
    const char *name = nm.p;
    for (int i = 0; i < h->ntab && !t; i++)
        if (h->tab[i].s == s || (h->tab[i].gone && !strcmp(h->tab[i].name, name))) t = &h->tab[i];
    if (!on) {
        if (t) t->gone = 1, t->s = NULL;
        cv_store_rows_drop(h->rows, name);
        pthread_mutex_unlock(&h->mu);
        cv_buf_free(&nm);
        return;
    }
    if (!t) {
        struct table_health *n = realloc(h->tab, sizeof *h->tab * (size_t)(h->ntab + 1));
        CV_ASSERT(n);
        h->tab = n;
        t = &h->tab[h->ntab++];
        memset(t, 0, sizeof *t);
        t->store_ok = 1;
        t->name = strdup(name);
        cv_buf l = {0};
        label(&l, name);
        cv_metrics *r = s->rt.reg;
        t->m_lag_s = cv_metrics_gauge(r, "cdcvec_table_lag_seconds",
                                      "Age of the table's oldest committed change not yet in its store (0: "
                                      "none waiting).",
                                      l.p);
        t->m_lag_bytes =
            cv_metrics_gauge(r, "cdcvec_table_lag_bytes",
                             "pg_current_wal_lsn() minus the position the table's store holds.", l.p);
        t->m_applied = cv_metrics_gauge(r, "cdcvec_table_applied_lsn",
                                        "The position (LSN, as a number) up to which the table's store holds "
                                        "every change.",
                                        l.p);
        t->m_streaming =
            cv_metrics_gauge(r, "cdcvec_table_streaming",
                             "1 while the table's changes are applied as they come (0: starting, "
                             "joining, or held because its store failed).",
                             l.p);
        t->m_rows =
            cv_metrics_gauge(r, "cdcvec_table_rows_source",
                             "Live rows of the source table (pg_stat_user_tables.n_live_tup, read every "
                             "10 s: an estimate).",
                             l.p);
        t->m_rows_store = cv_metrics_gauge(
            r, "cdcvec_table_rows_store",
            "Rows of the table in its store, read every 10 s (pgvector: the store table's n_live_tup, an "
            "estimate; chunked: its chunk-0 rows counted; Qdrant: the table's points but chunks past 0, "
            "counted exactly; Upstash: the namespace's vectors).",
            l.p);
        cv_buf_free(&l);
    }
    t->s = s;
    t->gone = 0;
    if (s->t.oid) t->oid = s->t.oid;
    if (s->sink && s->t.name && s->t.nkeys > 0) { /* its session is open: its store, as described now */
        if (!h->rows) h->rows = cv_store_rows_start();
        cv_sink_table st = {.schema = s->t.schema,
                            .table = s->t.name,
                            .nkeys = s->t.nkeys,
                            .key_names = (const char *const *)s->t.keyname,
                            .key_types = (const char *const *)s->t.keytype,
                            .dim = s->rt.dim,
                            .model_id = s->rt.mf.id,
                            .model_revision = s->rt.mf.revision,
                            .text_source = s->t.text_source,
                            .stream = s->stream,
                            .ns = s->o.ns,
                            .uuid_ids = s->o.uuid_ids,
                            .chunked = s->o.chunk_max_tokens > 0,
                            .index_suffix = s->o.index_suffix}; /* a migration's shadow: its own index */
        cv_store_rows_set(h->rows, name, s->sink_conninfo, &st, t->m_rows_store);
    }
    pthread_mutex_unlock(&h->mu);
    cv_buf_free(&nm);
}

void cv_health_position(cv_sync *s, uint64_t pos) {
    struct cv_health *h = s->rt.health;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    struct table_health *t = entry(h, s);
    if (t && pos > t->applied) {
        t->applied = pos;
        cv_metric_set(t->m_applied, (double)pos);
    }
    pthread_mutex_unlock(&h->mu);
}

cv_err cv_health_open(cv_sync *s) {
    struct cv_health *h = calloc(1, sizeof *h);
    if (!h) return CV_ERR_NOMEM;
    pthread_mutex_init(&h->mu, NULL);
    h->s = s;
    h->store_ok = h->source_up = 1;
    cv_metrics *r = s->rt.reg;
    h->m_ready = cv_metrics_gauge(r, "cdcvec_ready",
                                  "1 while /readyz answers 200 (the stage does its job now).", NULL);
    s->rt.health = h;
    return CV_OK;
}

void cv_health_stop(cv_sync *s) {
    struct cv_health *h = s->rt.health;
    if (!h || !h->started) return;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->th, NULL);
    h->started = 0;
    cv_store_rows_stop(h->rows);
    h->rows = NULL;
}

void cv_health_close(cv_sync *s) {
    struct cv_health *h = s->rt.health;
    if (!h) return;
    cv_health_stop(s);
    cv_store_rows_stop(h->rows);
    pthread_mutex_destroy(&h->mu);
    for (int i = 0; i < h->ntab; i++)
        free(h->tab[i].name);
    free(h->tab);
    free(h->slot);
    free(h);
    s->rt.health = NULL;
}

void cv_health_peer_add(cv_sync *s, const cv_health_peer *p) {
    struct cv_health *h = s->rt.health;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    int have = 0;
    for (int i = 0; i < h->npeer; i++)
        have |= h->peer[i].arg == p->arg;
    if (!have && h->npeer < 4) h->peer[h->npeer++] = *p;
    pthread_mutex_unlock(&h->mu);
}

void cv_health_streaming(cv_sync *s, int on) {
    struct cv_health *h = s->rt.health;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    struct table_health *t = entry(h, s);
    if (t) {
        t->streaming = on;
        cv_metric_set(t->m_streaming, on);
    }
    if (!t) h->streaming = on; /* a pipeline's tables say it each (verdict) */
    pthread_mutex_unlock(&h->mu);
}

void cv_health_slot(cv_sync *s, const char *slot) {
    struct cv_health *h = s->rt.health;
    if (!h || !slot) return;
    pthread_mutex_lock(&h->mu);
    if (!h->slot || strcmp(h->slot, slot)) {
        free(h->slot);
        h->slot = strdup(slot);
    }
    pthread_mutex_unlock(&h->mu);
}

void cv_health_store(cv_sync *s, int ok) {
    struct cv_health *h = s->rt.health;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    struct table_health *t = entry(h, s);
    if (t)
        t->store_ok = ok;
    else
        h->store_ok = ok;
    pthread_mutex_unlock(&h->mu);
}

void cv_health_unapplied(cv_sync *s, double commit_unix) {
    struct cv_health *h = s->rt.health;
    if (!h) return;
    if (commit_unix <= 0) commit_unix = cv_wall_now();
    pthread_mutex_lock(&h->mu);
    struct table_health *t = entry(h, s);
    double *oldest = t ? &t->oldest_unapplied : &h->oldest_unapplied;
    if (!*oldest || commit_unix < *oldest) *oldest = commit_unix;
    pthread_mutex_unlock(&h->mu);
}

void cv_health_applied(cv_sync *s) {
    struct cv_health *h = s->rt.health;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    struct table_health *t = entry(h, s);
    if (t)
        t->oldest_unapplied = 0, t->store_ok = 1;
    else
        h->oldest_unapplied = 0, h->store_ok = 1;
    pthread_mutex_unlock(&h->mu);
}

/* The readiness verdict and its reasons (h->mu held); detail gets a JSON object, may be NULL. */
static int verdict(struct cv_health *h, cv_buf *detail) {
    const cv_sync_opts *o = &h->s->o;
    double now = cv_wall_now() + h->skew; /* on the source's clock */
    h->lag_s = h->oldest_unapplied ? now - h->oldest_unapplied : 0;
    if (h->lag_s < 0) h->lag_s = 0;
    for (int i = 0; i < h->ntab; i++) { /* the stage's lag: its most behind table's */
        struct table_health *t = &h->tab[i];
        if (t->gone) continue;
        t->lag_s = t->oldest_unapplied ? now - t->oldest_unapplied : 0;
        if (t->lag_s < 0) t->lag_s = 0;
        cv_metric_set(t->m_lag_s, t->lag_s);
        if (t->lag_s > h->lag_s) h->lag_s = t->lag_s;
    }
    int ok = 1;
    cv_buf why = {0};
#define FAIL(...)                                                                                            \
    do {                                                                                                     \
        if (!ok) cv_buf_puts(&why, "; ");                                                                    \
        cv_buf_printf(&why, __VA_ARGS__);                                                                    \
        ok = 0;                                                                                              \
    } while (0)
    if (h->replication) {
        if (!h->streaming && !h->ntab)
            FAIL("not streaming from the slot (starting, backfilling or retrying)");
        if (!h->source_up) FAIL("the source database does not answer");
        if (h->lost) FAIL("the slot was invalidated (max_slot_wal_keep_size)");
        if (h->over)
            FAIL("the slot retains %.0f MB of WAL (--wal-warn-mb %ld)", h->retained / MB, o->wal_warn_mb);
    }
    if (!h->store_ok) FAIL("the store does not accept writes");
    for (int i = 0; i < h->ntab; i++) {
        struct table_health *t = &h->tab[i];
        if (t->gone) continue;
        if (!t->store_ok)
            FAIL("%s: its store does not accept writes (the table is held; the others go on)", t->name);
        else if (!t->streaming)
            FAIL("%s: not streaming (starting, joining, or held)", t->name);
        if (o->ready_lag_s > 0 && t->lag_s > o->ready_lag_s)
            FAIL("%s: the oldest change not yet in its store committed %.1f s ago (--ready-lag-s %g)",
                 t->name, t->lag_s, o->ready_lag_s);
    }
    if (o->ready_lag_s > 0 && h->lag_s > o->ready_lag_s)
        FAIL("the oldest change not yet in the store committed %.1f s ago (--ready-lag-s %g)", h->lag_s,
             o->ready_lag_s);
    for (int i = 0; i < h->npeer; i++) {
        double down = h->peer[i].down_s(h->peer[i].arg);
        if (o->broker_down_s > 0 && down > o->broker_down_s)
            FAIL("no %s reachable for %.0f s (%s; --broker-down-s %g)", h->peer[i].what, down,
                 h->peer[i].stage, o->broker_down_s);
    }
#undef FAIL
    if (detail) {
        cv_buf_printf(detail, "{\"status\":\"%s\"", ok ? "ready" : "not_ready");
        if (!ok) {
            cv_buf_puts(detail, ",\"reason\":");
            cv_json_string(detail, why.p, why.len);
        }
        if (h->replication)
            cv_buf_printf(detail, ",\"lag_bytes\":%.0f,\"retained_wal_bytes\":%.0f", h->lag_bytes,
                          h->retained);
        cv_buf_printf(detail, ",\"lag_seconds\":%.3f", h->lag_s);
        if (h->ntab) {
            cv_buf_puts(detail, ",\"tables\":[");
            int k = 0;
            for (int i = 0; i < h->ntab; i++) {
                struct table_health *t = &h->tab[i];
                if (t->gone) continue;
                cv_buf_puts(detail, k++ ? ",{\"table\":" : "{\"table\":");
                cv_json_string(detail, t->name, strlen(t->name));
                cv_buf_printf(
                    detail, ",\"streaming\":%s,\"store_ok\":%s,\"lag_seconds\":%.3f,\"lag_bytes\":%.0f}",
                    t->streaming ? "true" : "false", t->store_ok ? "true" : "false", t->lag_s, t->lag_bytes);
            }
            cv_buf_puts(detail, "]");
        }
        cv_buf_puts(detail, "}");
    }
    free(why.p);
    cv_metric_set(h->m_ready, ok);
    if (h->m_lag_s) cv_metric_set(h->m_lag_s, h->lag_s);
    return ok;
}

int cv_health_ready(void *arg, cv_buf *detail) {
    cv_sync *s = arg;
    struct cv_health *h = s->rt.health;
    if (!h) {
        if (detail) cv_buf_puts(detail, "{\"status\":\"not_ready\",\"reason\":\"starting\"}");
        return 0;
    }
    pthread_mutex_lock(&h->mu);
    int ok = verdict(h, detail);
    pthread_mutex_unlock(&h->mu);
    return ok;
}

/* One reading of the slot on db (the monitor's connection); 0 on success, else the error in
 * *why (owned by the caller). */
static int read_slot(struct cv_health *h, PGconn *db, cv_buf *why) {
    pthread_mutex_lock(&h->mu);
    char *slot = h->slot ? strdup(h->slot) : NULL;
    pthread_mutex_unlock(&h->mu);
    const char *p[1] = {slot ? slot : ""};
    double asked = cv_wall_now();
    /* one row always: the server's clock, then the slot's figures (NULL without the slot) */
    PGresult *r = PQexecParams(db,
                               "SELECT extract(epoch FROM clock_timestamp())::float8, "
                               "(pg_current_wal_lsn() - confirmed_flush_lsn)::float8, "
                               "(pg_current_wal_lsn() - restart_lsn)::float8, wal_status, "
                               "safe_wal_size::float8, pg_current_wal_lsn()::text FROM (SELECT 1) one LEFT "
                               "JOIN pg_replication_slots ON slot_name = $1",
                               1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        cv_pg_errtext(PQresultErrorMessage(r), why);
        PQclear(r);
        free(slot);
        return 1;
    }
    double answered = cv_wall_now();
    const cv_sync_opts *o = &h->s->o;
    pthread_mutex_lock(&h->mu);
    h->skew = atof(PQgetvalue(r, 0, 0)) - (asked + answered) / 2;
    cv_lsn_parse(PQgetvalue(r, 0, 5), &h->wal_lsn);
    for (int i = 0; i < h->ntab; i++) {
        struct table_health *t = &h->tab[i];
        if (t->gone || !t->applied) continue;
        t->lag_bytes = h->wal_lsn > t->applied ? (double)(h->wal_lsn - t->applied) : 0;
        cv_metric_set(t->m_lag_bytes, t->lag_bytes);
    }
    if (slot && !PQgetisnull(r, 0, 3)) {
        h->lag_bytes = PQgetisnull(r, 0, 1) ? h->lag_bytes : atof(PQgetvalue(r, 0, 1));
        h->retained = PQgetisnull(r, 0, 2) ? h->retained : atof(PQgetvalue(r, 0, 2));
        if (h->lag_bytes < 0) h->lag_bytes = 0;
        if (h->retained < 0) h->retained = 0;
        const char *ws = PQgetvalue(r, 0, 3);
        int lost = !strcmp(ws, "lost"), unreserved = !strcmp(ws, "unreserved");
        if (lost && !h->lost)
            cv_error(
                "event=slot_lost slot=%s wal_status=lost error=\"the server removed WAL the slot still "
                "needed (it retained more than max_slot_wal_keep_size): changes since the last confirmed "
                "position can no longer be streamed\" fix=\"the next session drops the slot and rebuilds "
                "the index from a new snapshot (or run with --resnapshot 1); raise "
                "max_slot_wal_keep_size, or keep the store up, so that it does not happen again\"",
                slot);
        if (unreserved && !h->unreserved)
            cv_warn(
                "event=slot_wal_unreserved slot=%s safe_wal_bytes=%s note=\"the slot retains more WAL than "
                "max_slot_wal_keep_size: the next checkpoint may remove it and invalidate the slot\"",
                slot, PQgetisnull(r, 0, 4) ? "-" : PQgetvalue(r, 0, 4));
        h->lost = lost, h->unreserved = unreserved;
        double limit = (double)o->wal_warn_mb * MB;
        double now = cv_now();
        if (h->retained > limit) {
            if (!h->over || now - h->over_logged >= RETAINED_REWARN) {
                cv_warn(
                    "event=wal_retained_high slot=%s retained_mb=%.0f threshold_mb=%ld lag_mb=%.1f "
                    "note=\"the slot keeps WAL on the source's disk until cdcvec confirms it: is the store "
                    "down or slow?\" fix=\"bring the store back (cdcvec catches up by itself); a slot that "
                    "is no longer wanted: SELECT pg_drop_replication_slot('%s')\"",
                    slot, h->retained / MB, o->wal_warn_mb, h->lag_bytes / MB, slot);
                h->over_logged = now;
            }
            h->over = 1;
        } else if (h->over) {
            cv_info("event=wal_retained_ok slot=%s retained_mb=%.1f threshold_mb=%ld", slot, h->retained / MB,
                    o->wal_warn_mb);
            h->over = 0;
        }
        cv_metric_set(h->s->rt.m_lag, h->lag_bytes);
        cv_metric_set(h->m_retained, h->retained);
        cv_metric_set(h->m_over, h->over);
        cv_metric_set(h->m_lost, h->lost);
    }
    pthread_mutex_unlock(&h->mu);
    PQclear(r);
    free(slot);
    return 0;
}

/* Every 10 s: each table's live rows, as the statistics collector counts them (cheap). */
static void read_rows(struct cv_health *h, PGconn *db) {
    cv_buf oids = {0};
    pthread_mutex_lock(&h->mu);
    for (int i = 0; i < h->ntab; i++)
        if (!h->tab[i].gone && h->tab[i].oid)
            cv_buf_printf(&oids, "%s%u", oids.len ? "," : "{", h->tab[i].oid);
    pthread_mutex_unlock(&h->mu);
    if (!oids.len) return;
    cv_buf_puts(&oids, "}");
    const char *p[1] = {oids.p};
    PGresult *r =
        PQexecParams(db,
                     "SELECT relid::int8, n_live_tup::float8 FROM pg_stat_user_tables WHERE relid = "
                     "ANY($1::oid[])",
                     1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        pthread_mutex_lock(&h->mu);
        for (int k = 0; k < PQntuples(r); k++) {
            uint32_t oid = (uint32_t)strtoul(PQgetvalue(r, k, 0), NULL, 10);
            for (int i = 0; i < h->ntab; i++)
                if (!h->tab[i].gone && h->tab[i].oid == oid)
                    cv_metric_set(h->tab[i].m_rows, atof(PQgetvalue(r, k, 1)));
        }
        pthread_mutex_unlock(&h->mu);
    }
    PQclear(r);
    cv_buf_free(&oids);
}

static void *monitor(void *arg) {
    struct cv_health *h = arg;
    PGconn *db = NULL;
    double next = 0;
    int down_logged = 0;
    for (;;) {
        pthread_mutex_lock(&h->mu);
        int stop = h->stop;
        verdict(h, NULL); /* keeps cdcvec_ready and the lag in seconds current */
        pthread_mutex_unlock(&h->mu);
        if (stop || cv_stopping()) break;
        for (int i = 0; i < h->npeer; i++) /* npeer only grows before the thread starts */
            if (h->peer[i].watch) h->peer[i].watch(h->peer[i].arg, h->s->o.broker_down_s);
        if (h->replication && cv_now() >= next) {
            next = cv_now() + MONITOR_INTERVAL;
            if (!db) {
                db = cv_pg_connect(h->s->o.source, 0, "monitor");
                if (PQstatus(db) == CONNECTION_OK) PQclear(PQexec(db, "SET statement_timeout = 5000"));
            }
            cv_buf why = {0};
            int up = 0;
            if (PQstatus(db) == CONNECTION_OK) up = read_slot(h, db, &why) == 0;
            if (up && h->readings++ % 10 == 0)
                read_rows(h, db);
            else
                cv_pg_errtext(PQerrorMessage(db), &why);
            if (up) {
                down_logged = 0;
            } else {
                if (!down_logged++ && !cv_stopping())
                    cv_warn(
                        "event=lag_monitor_source_down error=\"%s\" note=\"the lag cannot be read; /readyz "
                        "answers 503 until the source answers\"",
                        why.p ? why.p : "");
                PQfinish(db);
                db = NULL;
            }
            free(why.p);
            pthread_mutex_lock(&h->mu);
            h->source_up = up;
            cv_metric_set(h->m_source_up, up);
            pthread_mutex_unlock(&h->mu);
        }
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
    if (db) PQfinish(db);
    return NULL;
}

cv_err cv_health_monitor(cv_sync *s, int replication) {
    struct cv_health *h = s->rt.health;
    if (!h || h->started) return CV_OK;
    cv_metrics *r = s->rt.reg;
    h->replication = replication;
    if (!replication) goto start;
    h->m_lag_s = cv_metrics_gauge(r, "cdcvec_sync_replication_lag_seconds",
                                  "Age of the oldest committed change of the table not yet in the store (0: "
                                  "none waiting).",
                                  NULL);
    h->m_retained =
        cv_metrics_gauge(r, "cdcvec_sync_slot_retained_wal_bytes",
                         "WAL the slot keeps on the source: pg_current_wal_lsn() - restart_lsn.", NULL);
    h->m_over = cv_metrics_gauge(r, "cdcvec_sync_slot_retained_wal_over_threshold",
                                 "1 while the slot's retained WAL is above --wal-warn-mb.", NULL);
    h->m_lost =
        cv_metrics_gauge(r, "cdcvec_sync_slot_lost",
                         "1 when the slot was invalidated (wal_status lost: max_slot_wal_keep_size).", NULL);
    h->m_source_up = cv_metrics_gauge(r, "cdcvec_sync_source_up",
                                      "1 while the source database answers the lag monitor.", NULL);
    cv_metric_set(h->m_source_up, 1);
start:
    if (pthread_create(&h->th, NULL, monitor, h) != 0) {
        cv_error("event=lag_monitor_failed error=\"cannot start the lag monitor thread\"");
        return CV_ERR_NOMEM;
    }
    h->started = 1;
    return CV_OK;
}
