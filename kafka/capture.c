/* capture.c: `cdcvec capture`: the replication stream of `cdcvec sync` (ingest/), with an
 * outlet (ingest/outlet.h) that delivers to a Kafka topic instead of the apply stage.
 *
 * One message per row change, keyed by the row's primary key (its key text), so that a
 * partition keeps each row's changes in commit order; each carries its transaction's commit
 * LSN. A batch is produced, then waited for until the broker acknowledged every message of it
 * (idempotent producer, acks=all); only then is its position recorded (cdcvec.state in the
 * source database, beside the slot) and confirmed to PostgreSQL as the slot's flush position.
 * A crash before that replays the batch from the slot: consumers downstream are idempotent.
 *
 * A TRUNCATE is one message sent to every partition of the topic: whatever partition a row
 * went to, its consumer meets the truncate after that row's earlier changes (the sink stage
 * applies it once every partition reached it).
 *
 * With --format quix the messages are the tutorial's: wal2json format-version-1 change objects
 * as its CDC service writes them (capture_quix.c), key "<schema>.<table>". */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "../common/cv_time.h"
#include "../ingest/sync_impl.h"
#include "client.h"
#include "kafka.h"
#include "wire.h"

/* One table's capture: its topic and producer. A pipeline file's tables (cv_capture_run_tables)
 * each have their own, on the table's own outlet (ingest/outlet.h: each_table): one topic per
 * table, so a one-table pipeline's messages are those of today's flags, and a table's batch
 * waits only for its own acknowledgements. */
typedef struct cv_capture {
    cv_kafka_url url;
    const cv_capture_opts *k;
    cv_kafka_producer *p;
    cv_kafka_metrics *km; /* the process's (capture_run) */
    int partitions;       /* of the topic, read once per producer */
    cv_metric *m_truncate_quix;
    uint64_t mark_want, mark_sent; /* position marks (read-your-writes): wanted, last produced */
    double mark_at;                /* cv_now() of the last marks */
} cv_capture;

/* The process's: the Kafka metrics, and every table's capture. */
typedef struct capture_run {
    cv_kafka_metrics km;
    cv_capture *c; /* n, one per table */
    cv_outlet *out;
    char **store;
    int n;
} capture_run;

#define MARK_INTERVAL 0.1 /* seconds between the marks of a moving position without changes */

/* The capture of s: its table's outlet is one of the run's. */
static cv_capture *cap(const cv_sync *s) {
    const cv_outlet *out = s->o.outlet;
    if (!out) return NULL;
    const capture_run *r = out->arg;
    return &r->c[out - r->out];
}

static cv_err capture_open(cv_sync *s) {
    capture_run *r = (capture_run *)s->o.outlet->arg;
    cv_kafka_metrics_init(&r->km, s->rt.reg, "capture");
    cv_health_peer_add(s, &(cv_health_peer){"Kafka broker", "capture", cv_kafka_broker_down_s,
                                            cv_kafka_broker_watch, &r->km});
    cv_metric *tq = cv_metrics_counter(
        s->rt.reg, "cdcvec_capture_truncates_quix_total",
        "TRUNCATEs sent as {\"kind\":\"truncate\"} messages (wal2json v1 has no truncate).", NULL);
    for (int i = 0; i < r->n; i++)
        r->c[i].km = &r->km, r->c[i].m_truncate_quix = tq;
    return CV_OK;
}

/* Every table's producer, before the metrics they write to go. */
static void capture_close(cv_sync *s) {
    capture_run *r = s->o.outlet ? s->o.outlet->arg : NULL;
    for (int i = 0; r && i < r->n; i++) {
        cv_kafka_producer_free(r->c[i].p);
        r->c[i].p = NULL;
    }
}

/* A Kafka failure: counted, remembered as the session's fault. */
static cv_err kafka_failed(cv_sync *s, cv_err e, const char *what) {
    int retriable = e == CV_ERR_TIMEOUT || e == CV_ERR_SHUTDOWN;
    s->fault = (cv_pg_fault){
        retriable, retriable ? "connection" : "config",
        retriable ? NULL : "check the --to URL and the -X properties (the line above says which)"};
    cv_sync_error(s, "kafka", &s->fault);
    cv_health_store(s, 0);
    if (e != CV_ERR_SHUTDOWN)
        cv_warn("event=capture_batch_failed step=%s error=\"%s\"", what, cv_strerror(e));
    return retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
}

/* The producer, created on first use (and again after a fatal producer error). */
static cv_err producer(cv_sync *s) {
    cv_capture *c = cap(s);
    if (c->p) return CV_OK;
    cv_err e = cv_kafka_producer_new(c->url.bootstrap, c->url.topic, c->k->props, c->km, &c->p);
    if (!e) e = cv_kafka_producer_partitions(c->p, &c->partitions);
    if (e) {
        cv_kafka_producer_free(c->p);
        c->p = NULL;
        return kafka_failed(s, e, "producer");
    }
    cv_info("event=capture_topic topic=%s partitions=%d format=%s", c->url.topic, c->partitions,
            c->k->quix ? "quix" : "cdcvec");
    return CV_OK;
}

/* The table of s as the messages name it (borrowed from s->t). */
static cv_wire_table wire_table(const cv_sync *s) {
    return (cv_wire_table){.schema = s->t.schema,
                           .table = s->t.name,
                           .nkeys = s->t.nkeys,
                           .key_names = (char **)s->t.keyname,
                           .key_types = (char **)s->t.keytype};
}

/* Produces a position mark to every partition (cdcvec format only; the tutorial's has none). */
static cv_err produce_marks(cv_sync *s, uint64_t pos) {
    cv_capture *c = cap(s);
    if (c->k->quix || !c->p || !pos) return CV_OK;
    cv_wire_table wt = wire_table(s);
    cv_buf key = {0}, val = {0};
    cv_wire_encode_mark(&val, &wt, pos, c->partitions);
    cv_buf_printf(&key, "%s.%s", s->t.schema, s->t.name);
    CV_ASSERT(!key.oom && !val.oom);
    cv_err e = CV_OK;
    for (int p = 0; !e && p < c->partitions; p++)
        e = cv_kafka_produce(c->p, p, key.p, key.len, val.p, val.len);
    free(key.p), free(val.p);
    if (!e) {
        if (pos > c->mark_sent) c->mark_sent = pos;
        c->mark_at = cv_now();
    }
    return e;
}

/* The stream is covered up to pos (a batch delivered, a keepalive with nothing in flight; 0:
 * idle): position marks go to every partition at most every MARK_INTERVAL. */
static void reached_one(cv_sync *s, uint64_t pos) {
    cv_capture *c = cap(s);
    if (!c) return;
    cv_kafka_producer_poll(c->p); /* idle: the broker's health is still watched (statistics) */
    if (pos > c->mark_want) c->mark_want = pos;
    if (c->mark_want > c->mark_sent && cv_now() - c->mark_at >= MARK_INTERVAL && s->t.name)
        produce_marks(s, c->mark_want); /* not waited for: a lost mark is followed by the next */
}

/* Several tables: each streaming table's topic gets marks at the position its own changes were
 * delivered to (a held or joining table's topic gets none until it streams again). */
static void capture_reached(cv_sync *s, uint64_t pos) {
    cv_tables *T = s->tables;
    if (!T || T->n == 1) {
        reached_one(s, pos);
        return;
    }
    for (int i = 0; i < T->n; i++) {
        cv_pipe *p = &T->p[i];
        if (p->open && p->state == CV_PIPE_STREAMING) reached_one(p->s, pos ? p->applied : 0);
    }
}

static cv_err capture_deliver(cv_sync *s, cv_change *chg, int n, int truncate, uint64_t position,
                              double commit_unix) {
    cv_capture *c = cap(s);
    cv_err e = producer(s);
    /* a template whose column is an unchanged TOASTed value: the text is read now (the workers
     * downstream have no source connection) */
    cv_change **fetch = calloc((size_t)n + 1, sizeof *fetch);
    CV_ASSERT(fetch);
    int nf = 0;
    for (int i = 0; i < n; i++)
        if (!chg[i].del && chg[i].text_fetch) fetch[nf++] = &chg[i];
    if (!e && nf && !c->k->quix) {
        if ((e = cv_sync_fetch(s, fetch, nf))) e = s->fault.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
        for (int i = 0; i < nf; i++)
            fetch[i]->text_fetch = 0;
    }
    free(fetch);
    cv_wire_table wt = wire_table(s);
    cv_buf key = {0}, val = {0};
    if (!e && truncate) { /* one copy per partition, before the batch's changes (they follow it) */
        if (c->k->quix) {
            cv_buf_puts(&val, "{\"kind\": \"truncate\", \"schema\": ");
            cv_json_string(&val, s->t.schema, strlen(s->t.schema));
            cv_buf_puts(&val, ", \"table\": ");
            cv_json_string(&val, s->t.name, strlen(s->t.name));
            cv_buf_puts(&val, "}");
            cv_metric_add(c->m_truncate_quix, 1);
        } else {
            cv_wire_encode_truncate(&val, &wt, position, commit_unix, c->partitions);
        }
        cv_buf_printf(&key, "%s.%s", s->t.schema, s->t.name);
        for (int p = 0; !e && p < c->partitions; p++)
            if ((e = cv_kafka_produce(c->p, p, key.p, key.len, val.p, val.len)))
                e = kafka_failed(s, e, "produce");
    }
    for (int i = 0; !e && i < n; i++) {
        key.len = val.len = 0;
        if (c->k->quix) {
            if (!chg[i].encoded) continue; /* the old key of a key-changing update: in the update's oldkeys */
            cv_buf_printf(&key, "%s.%s", s->t.schema, s->t.name);
            cv_buf_puts(&val, chg[i].encoded);
        } else {
            cv_wire_key(&key, chg[i].key);
            cv_wire_encode(&val, &wt, &chg[i], NULL, 0);
        }
        CV_ASSERT(!key.oom && !val.oom);
        if ((e = cv_kafka_produce(c->p, -1, key.p, key.len, val.p, val.len)))
            e = kafka_failed(s, e, "produce");
    }
    free(key.p), free(val.p);
    if (!e && (e = produce_marks(s, position))) /* behind the batch in every partition */
        e = kafka_failed(s, e, "produce");
    if (!e && (e = cv_kafka_producer_wait(c->p, s->stop))) { /* a stop ends the wait: the slot replays */
        e = kafka_failed(s, e, "acknowledgement");
        cv_kafka_producer_free(c->p); /* a fresh producer (and idempotence epoch) for the replay */
        c->p = NULL;
    }
    /* every message is in the log: record the position (the slot is confirmed by the caller) */
    if (!e) {
        cv_err se = cv_sink_begin(s->sink, 0);
        if (!se) se = cv_sink_commit(s->sink, position);
        if (se) e = cv_sync_batch_failed(s, se); /* classified as a store failure, like sync's */
    }
    for (int i = 0; i < n; i++)
        cv_change_free(&chg[i]);
    if (!e) {
        char l[24];
        cv_lsn_format(position, l);
        cv_debug("event=capture_batch changes=%d truncate=%d position=%s", n, truncate, l);
    }
    return e;
}

int cv_capture_run_tables(const cv_sync_opts *o, const cv_capture_opts *k, int n,
                          volatile sig_atomic_t *stop) {
    capture_run r = {.n = n};
    r.c = calloc((size_t)n, sizeof *r.c);
    r.out = calloc((size_t)n, sizeof *r.out);
    r.store = calloc((size_t)n, sizeof *r.store);
    cv_sync_opts *oc = calloc((size_t)n, sizeof *oc);
    CV_ASSERT(r.c && r.out && r.store && oc);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char err[512];
        r.c[i].k = &k[i];
        if (cv_kafka_url_parse(k[i].to, &r.c[i].url, err, sizeof err)) {
            cv_error("event=bad_option option=--to table=%s error=\"%s\"", o[i].table, err);
            rc = 2;
            continue;
        }
        cv_buf store = {0};
        cv_buf_printf(&store, "kafka:%s", k[i].to);
        CV_ASSERT(!store.oom);
        r.store[i] = store.p;
        r.out[i] = (cv_outlet){.arg = &r,
                               .store = store.p,
                               .writer = "cdcvec capture",
                               .no_model = 1,
                               .no_apply = 1,
                               .each_table = 1,
                               .open = capture_open,
                               .stop = capture_close,
                               .row = k[i].quix ? cv_capture_wire : NULL,
                               .deliver = capture_deliver,
                               .reached = capture_reached};
        oc[i] = o[i];
        oc[i].outlet = &r.out[i];
        oc[i].embed = NULL;
    }
    if (!rc) rc = cv_sync_run_tables(oc, n, NULL, NULL, stop, NULL);
    for (int i = 0; i < n; i++) {
        cv_kafka_url_free(&r.c[i].url);
        free(r.store[i]);
    }
    free(r.c), free(r.out), free(r.store), free(oc);
    return rc;
}

int cv_capture_run(const cv_sync_opts *o, const cv_capture_opts *k, volatile sig_atomic_t *stop) {
    return cv_capture_run_tables(o, k, 1, stop);
}
