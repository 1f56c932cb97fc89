/* sink_stage.c: `cdcvec sink`: the embeddings topic into a store, through the apply stage.
 *
 * The same rules as `cdcvec sync`: a batch is collapsed by key, deletes go first, a vector is
 * written only when the stored text hash differs (else the payload alone), and what cannot be
 * applied is recorded with its reason. Messages without a vector (a text still to embed: the
 * tutorial's CDC topic read directly) are embedded here. Offsets are committed only after the
 * store committed the batch; a crash replays from the committed offsets, idempotently.
 *
 * One sink process reads every partition of the topic (assigned, not balanced: the group only
 * keeps its offsets), because a TRUNCATE arrives as one copy per partition and is applied once
 * every partition has reached its copy: a row's earlier changes, in whatever partition, are
 * then behind it, and its later ones wait (that partition is paused) until it is applied. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "../common/cv_signal.h"
#include "../common/cv_time.h"
#include "../common/cv_lsn.h"
#include "../ingest/sync_impl.h"
#include "../search/search.h"
#include "consumer.h"
#include "kafka.h"

typedef struct {
    cv_sync s;
    const cv_sink_stage_opts *k;
    cv_kafka_url in;
    cv_kafka_metrics km_own, *km; /* the process's (the first table's) */
    double lag_seen;              /* this table's part of km->lag */
    struct sink_tables *all;      /* a pipeline file's tables (cv_sink_stage_run_tables), or NULL */
    int idx;                      /* this table's place in it */
    rd_kafka_t *rk;
    cv_kafka_producer *dlq;
    int parts;
    /* the store, opened for the first message's table */
    cv_sink *sink;
    char *schema, *table, *stream;
    cv_wire_table keys; /* the store's key columns (owned: the store borrows them) */
    cv_wlock wlock;     /* the store table's writer lock (wlock.c), held while the store is open */
    int chunked;        /* the store holds chunks: the first message's "chunked" (a chunking worker's) */
    int index_ready;
    /* a truncate in progress: partitions that reached it, and what came after them */
    uint64_t floor; /* the last truncate applied (recorded in the store as its backfill position):
                       a change or truncate copy from before it is a replayed duplicate */
    uint64_t trunc_lsn;
    int trunc_copies, *at_trunc;
    cv_kin_msg *held, *trunc_msgs;
    int nheld, capheld, ntrunc;
    /* the batch being gathered */
    cv_change *chg;
    int nchg, cap;    /* cap: messages a batch holds (each gives at most 2 changes) */
    cv_kin_msg *done; /* messages whose offsets the batch commits */
    int ndone;
    uint64_t pos;
    double commit_unix;
    cv_metric *m_dead, *m_replayed;
    cv_err dead_err; /* a dead letter could not be sent to the topic (on_dead) */
    /* read-your-writes: per partition, the last position mark taken into the batch and the last
     * one applied (everything of the table up to it in that partition is in the store) */
    uint64_t *mark_taken, *mark_applied;
    int mark_copies, mark_mismatch_logged;
} stage;

/* The dead-letter topic gets m with the reason. */
static cv_err dead_letter(stage *st, const cv_kin_msg *m, const char *why) {
    return cv_kin_dead_letter(st->dlq, "sink", st->in.topic, m, why, st->m_dead);
}

/* What ended the session, for the retry line (cv_sync_retry_text): the store's fault kind and
 * its last error (a refused connection, a server that went away), else the store's own line. */
static void store_failed(stage *st, cv_err e) {
    const char *kind = NULL, *fix = NULL;
    cv_sink_last_fault(st->sink, &kind, &fix);
    const char *msg = cv_pg_last_message();
    snprintf(st->s.why, sizeof st->s.why, "the store failed (%s): %s", kind ? kind : "connection",
             *msg                  ? msg
             : e == CV_ERR_TIMEOUT ? "the store's line above says what"
                                   : cv_strerror(e));
}

/* One writer per store table (wlock.c): a sync of the table into the same store, or verify
 * --repair, is never run beside this sink. Without a state database (Qdrant, Upstash without
 * --state) there is nowhere to hold it. */
static cv_err lock_store(stage *st, const cv_sink_table *t) {
    cv_buf key = {0}, holder = {0};
    const char *home;
    cv_wlock_place(st->s.o.sink, st->s.o.sink, st->k->state, t, &home, &key);
    cv_pg_fault f = {1, "connection", NULL};
    cv_err e = CV_OK;
    if (!home)
        cv_info(
            "event=writer_lock_none table=%s.%s note=\"no state database (--state): verify --repair cannot "
            "see that this sink runs\"",
            t->schema, t->table);
    else
        e = cv_wlock_take(&st->wlock, home, NULL, key.p, "sink (writer lock)", &holder, &f);
    if (e == CV_ERR_BUSY)
        cv_warn(
            "event=table_busy table=%s.%s holder=\"%s\" note=\"another process writes this table's vectors "
            "into this store (a cdcvec sync, another sink stage or verify --repair); waiting for it to "
            "stop\"",
            t->schema, t->table, holder.p);
    if (e == CV_ERR_BUSY)
        snprintf(st->s.why, sizeof st->s.why, "table_busy: another writer of this store holds %s.%s (%s)",
                 t->schema, t->table, holder.p);
    free(key.p), free(holder.p);
    return e == CV_ERR_BUSY || e == CV_ERR_TIMEOUT ? CV_ERR_TIMEOUT : e;
}

/* A change the store or the apply stage could not take (cv_sink_on_dead): its message goes to
 * the dead-letter topic with the key and reason, acknowledged before the batch's offsets are
 * committed (flush waits for it), so no refusal lives only in a log line, with or without
 * --state. A failed send fails the session, which replays the batch. */
static void on_dead(void *arg, const char *key, const char *reason) {
    stage *st = arg;
    const cv_kin_msg *m = NULL;
    for (int i = st->ndone - 1; i >= 0 && !m; i--) /* the last change of the key: the one applied */
        if (st->done[i].keytext && !strcmp(st->done[i].keytext, key)) m = &st->done[i];
    cv_kin_msg none = {.partition = -1, .offset = -1, .keytext = (char *)key};
    cv_err e = cv_kin_dead_letter(st->dlq, "sink", st->in.topic, m ? m : &none, reason, st->m_dead);
    if (e && !st->dead_err) st->dead_err = e;
}

/* Opens the store for the table of w (the first message's). */
static cv_err open_store(stage *st, const cv_wire_msg *w) {
    cv_buf stream = {0};
    cv_buf_printf(&stream, "kafka_%s", st->in.topic);
    st->stream = stream.p;
    st->schema = strdup(w->t.schema), st->table = strdup(w->t.table);
    st->keys.nkeys = w->t.nkeys;
    st->keys.key_names = calloc((size_t)w->t.nkeys + 1, sizeof(char *));
    st->keys.key_types = calloc((size_t)w->t.nkeys + 1, sizeof(char *));
    CV_ASSERT(st->keys.key_names && st->keys.key_types);
    for (int k = 0; k < w->t.nkeys; k++)
        st->keys.key_names[k] = strdup(w->t.key_names[k]), st->keys.key_types[k] = strdup(w->t.key_types[k]);
    /* every store takes chunks: pgvector one row per (key, chunk), Qdrant and Upstash one point per
     * (key, chunk) under the delivery rule of sink/chunks_remote.h, as sync writes them */
    st->chunked = w->t.chunked;
    cv_sink_table t = {.schema = st->schema,
                       .table = st->table,
                       .nkeys = w->t.nkeys,
                       .key_names = (const char *const *)st->keys.key_names,
                       .key_types = (const char *const *)st->keys.key_types,
                       .dim = st->s.rt.dim,
                       .model_id = st->s.rt.mf.id,
                       .stream = st->stream,
                       .state_conninfo = st->k->state && *st->k->state ? st->k->state : NULL,
                       .ns = st->s.o.ns,
                       .uuid_ids = st->s.o.uuid_ids,
                       .chunked = st->chunked};
    cv_err e = cv_sink_open(st->s.o.sink, &t, &st->sink);
    if (e) {
        const char *kind, *fix;
        cv_sink_last_fault(st->sink, &kind, &fix);
        cv_error("event=sink_open table=%s.%s kind=%s%s%s%s", st->schema, st->table,
                 kind ? kind : "connection", fix ? " fix=\"" : "", fix ? fix : "", fix ? "\"" : "");
        store_failed(st, e);
        cv_sink_close(st->sink);
        st->sink = NULL;
        return e == CV_ERR_TIMEOUT ? e : CV_ERR_UNSUPPORTED;
    }
    if ((e = lock_store(st, &t))) {
        cv_sink_close(st->sink);
        st->sink = NULL;
        return e;
    }
    cv_sink_on_dead(st->sink, on_dead, st);
    uint64_t pos, bpos;
    int done;
    if (!cv_sink_state(st->sink, &pos, &done, &bpos)) st->index_ready = done, st->floor = bpos;
    cv_apply_set_sink(st->s.rt.apply, st->sink, NULL, NULL, 0);
    cv_info("event=sink_store table=%s.%s stream=%s", st->schema, st->table, st->stream);
    return CV_OK;
}

/* A pipeline file's tables: /wait (on the first table's runtime) covers what every table's store
 * covers. */
typedef struct sink_tables {
    pthread_mutex_t mu;
    uint64_t *covered; /* per table; 0: no mark yet */
    int n;
    cv_sync *s0;
} sink_tables;

static void wait_advance(stage *st, uint64_t covered) {
    sink_tables *a = st->all;
    if (!a) {
        cv_wait_advance(&st->s, covered);
        return;
    }
    pthread_mutex_lock(&a->mu);
    a->covered[st->idx] = covered;
    uint64_t m = UINT64_MAX;
    for (int i = 0; i < a->n; i++)
        if (a->covered[i] < m) m = a->covered[i];
    if (m) cv_wait_advance(a->s0, m);
    pthread_mutex_unlock(&a->mu);
}

/* The batch is in the store: its marks count. /wait covers the smallest mark every partition
 * has reached (a partition without one yet holds it at 0). */
static void advance_marks(stage *st) {
    if (!st->mark_taken) return;
    uint64_t covered = UINT64_MAX;
    for (int p = 0; p < st->parts; p++) {
        if (st->mark_taken[p] > st->mark_applied[p]) st->mark_applied[p] = st->mark_taken[p];
        if (st->mark_applied[p] < covered) covered = st->mark_applied[p];
    }
    if (st->mark_copies && st->mark_copies != st->parts) {
        if (!st->mark_mismatch_logged++)
            cv_warn(
                "event=sink_marks_unusable topic=%s partitions=%d source_partitions=%d note=\"/wait cannot "
                "answer: the embeddings topic must have as many partitions as the change topic (a "
                "worker keeps each change in its partition number)\"",
                st->in.topic, st->parts, st->mark_copies);
        return;
    }
    if (covered && covered != UINT64_MAX) wait_advance(st, covered);
}

/* Applies the gathered batch, then commits its offsets. */
static cv_err flush(stage *st) {
    if (st->nchg == 0 && st->ndone == 0) return CV_OK;
    cv_err e = CV_OK;
    if (st->nchg) {
        e = cv_apply_batch(st->s.rt.apply, st->chg, st->nchg, 0, st->pos, 0, st->commit_unix);
        st->nchg = 0;
        cv_health_store(&st->s, e == CV_OK || e == CV_ERR_ARG);
        if (e == CV_ERR_ARG) return CV_ERR_UNSUPPORTED; /* --on-error stop: logged with the key */
        if (e == CV_ERR_TIMEOUT || e == CV_ERR_BUSY || e == CV_ERR_SHUTDOWN) {
            store_failed(st, e);
            return CV_ERR_TIMEOUT;
        }
        if (e) { /* said here: the store's own lines may not name it */
            const char *kind, *fix;
            cv_sink_last_fault(st->sink, &kind, &fix);
            cv_error("event=batch_failed stage=sink table=%s.%s kind=%s error=\"%s\"%s%s%s", st->schema,
                     st->table, kind ? kind : "data", cv_strerror(e), fix ? " fix=\"" : "", fix ? fix : "",
                     fix ? "\"" : "");
            return CV_ERR_UNSUPPORTED;
        }
    }
    if (!e && st->dead_err) e = st->dead_err; /* a dead letter not sent: replay the batch */
    st->dead_err = CV_OK;
    if (!e && (e = cv_kafka_producer_wait(st->dlq, NULL)))
        snprintf(st->s.why, sizeof st->s.why, "Kafka: the dead-letter topic did not acknowledge (%s)",
                 cv_strerror(e));
    if (!e && (e = cv_kin_commit(st->rk, st->in.topic, st->done, st->ndone)))
        snprintf(st->s.why, sizeof st->s.why,
                 "Kafka: committing offsets of %s failed (event=kafka_commit_failed)", st->in.topic);
    if (!e) advance_marks(st);
    for (int i = 0; i < st->ndone; i++)
        cv_kin_msg_free(&st->done[i]);
    st->ndone = 0;
    st->pos = 0, st->commit_unix = 0;
    return e;
}

static void push_change(stage *st, cv_change *c) {
    st->chg[st->nchg++] = *c;
    memset(c, 0, sizeof *c);
}

static void keep_done(stage *st, cv_kin_msg *m) {
    st->done[st->ndone++] = *m;
    memset(m, 0, sizeof *m);
}

static cv_err take(stage *st, cv_kin_msg *m);

/* Every partition reached the truncate: apply it, then what waited behind it. */
static cv_err finish_truncate(stage *st) {
    cv_err e = flush(st);
    if (!e) e = cv_apply_batch(st->s.rt.apply, NULL, 0, 1, st->trunc_lsn, 0, 0);
    /* the truncate's LSN becomes the store's floor, kept across restarts (and the HNSW index,
     * pgvector's, is built now if it was not) */
    if (!e) e = cv_sink_backfill_mark(st->sink, st->trunc_lsn, 1);
    if (e == CV_ERR_TIMEOUT && !st->s.why[0]) store_failed(st, e);
    if (e) return e == CV_ERR_TIMEOUT ? e : CV_ERR_UNSUPPORTED;
    st->floor = st->trunc_lsn, st->index_ready = 1;
    char l[24];
    cv_lsn_format(st->trunc_lsn, l);
    cv_info("event=sink_truncated table=%s.%s lsn=%s", st->schema, st->table, l);
    e = cv_kin_commit(st->rk, st->in.topic, st->trunc_msgs, st->ntrunc);
    for (int i = 0; i < st->ntrunc; i++)
        cv_kin_msg_free(&st->trunc_msgs[i]);
    st->ntrunc = 0;
    st->trunc_lsn = 0;
    rd_kafka_topic_partition_list_t *l2 = rd_kafka_topic_partition_list_new(st->parts);
    for (int p = 0; p < st->parts; p++)
        if (st->at_trunc[p]) rd_kafka_topic_partition_list_add(l2, st->in.topic, p);
    rd_kafka_resume_partitions(st->rk, l2);
    rd_kafka_topic_partition_list_destroy(l2);
    memset(st->at_trunc, 0, sizeof(int) * (size_t)st->parts);
    int nh = st->nheld;
    cv_kin_msg *h = st->held;
    st->held = NULL, st->nheld = st->capheld = 0;
    for (int i = 0; i < nh; i++) {
        if (!e) e = take(st, &h[i]);
        cv_kin_msg_free(&h[i]);
    }
    free(h);
    return e;
}

/* Takes one message into the batch (or the truncate in progress). m's contents are moved. */
static cv_err take(stage *st, cv_kin_msg *m) {
    if (st->trunc_lsn && st->at_trunc[m->partition]) { /* behind a truncate: waits for it */
        if (st->nheld == st->capheld) {
            st->capheld = st->capheld ? 2 * st->capheld : 64;
            st->held = realloc(st->held, sizeof *st->held * (size_t)st->capheld);
            CV_ASSERT(st->held);
        }
        st->held[st->nheld++] = *m;
        memset(m, 0, sizeof *m);
        return CV_OK;
    }
    if (st->ndone >= st->cap) { /* full (the messages a truncate held come in beyond a poll's batch) */
        cv_err e = flush(st);
        if (e) return e;
    }
    if (m->format == CV_KIN_BAD) {
        cv_err e = dead_letter(st, m, m->why);
        keep_done(st, m);
        return e;
    }
    cv_wire_msg *w = &m->m;
    if (!st->sink) {
        cv_err e = open_store(st, w);
        if (e) return e;
    }
    if (strcmp(w->t.schema, st->schema) || strcmp(w->t.table, st->table)) {
        cv_buf why = {0};
        cv_buf_printf(&why, "a change of table %s.%s; this sink applies %s.%s (one table per sink process)",
                      w->t.schema, w->t.table, st->schema, st->table);
        cv_err e = dead_letter(st, m, why.p);
        free(why.p);
        keep_done(st, m);
        return e;
    }
    if (w->op == CV_WIRE_UPSERT && (w->c.vec || w->c.nchunks) && (w->c.nchunks > 0) != (st->chunked != 0)) {
        cv_buf why = {0};
        cv_buf_printf(
            &why,
            "the message carries %s, the store table %s.%s holds %s: every worker of the group must "
            "run with the same --chunk-max-tokens (0: one vector per row); then replay this message",
            w->c.nchunks ? "chunks" : "one vector", st->schema, st->table,
            st->chunked ? "chunks (one row per key and chunk)" : "one vector per row");
        cv_err e = dead_letter(st, m, why.p);
        free(why.p);
        keep_done(st, m);
        return e;
    }
    if (w->c.lsn && (w->op == CV_WIRE_TRUNCATE ? w->c.lsn <= st->floor : w->c.lsn < st->floor)) {
        /* before the last truncate applied: a duplicate a worker produced again (at least once) */
        char l[24], f[24];
        cv_lsn_format(w->c.lsn, l), cv_lsn_format(st->floor, f);
        cv_debug("event=sink_skip_replayed partition=%d offset=%lld lsn=%s truncated_at=%s", m->partition,
                 (long long)m->offset, l, f);
        cv_metric_add(st->m_replayed, 1);
        keep_done(st, m);
        return CV_OK;
    }
    if (w->op == CV_WIRE_MARK) { /* counts once the batch before it is in the store */
        if (st->mark_taken && w->c.lsn > st->mark_taken[m->partition])
            st->mark_taken[m->partition] = w->c.lsn;
        st->mark_copies = w->copies;
        keep_done(st, m);
        return CV_OK;
    }
    if (w->op == CV_WIRE_TRUNCATE) {
        if (st->trunc_lsn && w->c.lsn != st->trunc_lsn) {
            char a[24], b[24];
            cv_lsn_format(st->trunc_lsn, a), cv_lsn_format(w->c.lsn, b);
            cv_warn(
                "event=sink_truncate_overlap partition=%d waiting_lsn=%s got_lsn=%s note=\"a second truncate "
                "reached this partition before the first one completed\"",
                m->partition, a, b);
        }
        if (!st->trunc_lsn) st->trunc_lsn = w->c.lsn ? w->c.lsn : 1, st->trunc_copies = w->copies;
        int copies = st->trunc_copies < st->parts ? st->trunc_copies : st->parts;
        st->at_trunc[m->partition] = 1;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, st->in.topic, m->partition);
        rd_kafka_pause_partitions(st->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        st->trunc_msgs = realloc(st->trunc_msgs, sizeof *st->trunc_msgs * (size_t)(st->ntrunc + 1));
        CV_ASSERT(st->trunc_msgs);
        st->trunc_msgs[st->ntrunc++] = *m;
        memset(m, 0, sizeof *m);
        int all = 1, at = 0;
        for (int p = 0; p < copies; p++)
            all &= st->at_trunc[p], at += st->at_trunc[p];
        cv_info("event=sink_truncate_barrier partition=%d reached=%d of=%d", m->partition, at, copies);
        return all ? finish_truncate(st) : CV_OK;
    }
    if (w->c.lsn > st->pos) st->pos = w->c.lsn;
    if (w->c.commit_unix > st->commit_unix) st->commit_unix = w->c.commit_unix;
    cv_buf kt = {0}; /* to find the message of a dead letter (on_dead) */
    cv_wire_key(&kt, w->c.key);
    m->keytext = kt.p;
    if (m->m_old.op == CV_WIRE_DELETE) push_change(st, &m->m_old.c);
    push_change(st, &w->c);
    keep_done(st, m);
    return CV_OK;
}

static void session_close(stage *st) {
    if (st->rk) {
        rd_kafka_consumer_close(st->rk);
        rd_kafka_destroy(st->rk);
    }
    cv_kafka_producer_free(st->dlq);
    st->rk = NULL, st->dlq = NULL;
    for (int i = 0; i < st->nchg; i++)
        cv_change_free(&st->chg[i]);
    for (int i = 0; i < st->ndone; i++)
        cv_kin_msg_free(&st->done[i]);
    for (int i = 0; i < st->nheld; i++)
        cv_kin_msg_free(&st->held[i]);
    for (int i = 0; i < st->ntrunc; i++)
        cv_kin_msg_free(&st->trunc_msgs[i]);
    free(st->held), free(st->trunc_msgs), free(st->at_trunc);
    free(st->mark_taken), free(st->mark_applied);
    st->held = st->trunc_msgs = NULL, st->at_trunc = NULL;
    st->mark_taken = st->mark_applied = NULL;
    st->nchg = st->ndone = st->nheld = st->capheld = st->ntrunc = 0;
    st->trunc_lsn = 0;
    st->dead_err = CV_OK;
    if (st->sink) {
        cv_apply_set_sink(st->s.rt.apply, NULL, NULL, NULL, 1);
        cv_sink_close(st->sink);
        st->sink = NULL;
    }
    cv_wlock_release(&st->wlock);
    free(st->schema), free(st->table), free(st->stream);
    st->schema = st->table = st->stream = NULL;
    cv_wire_table_free(&st->keys);
}

/* Assigns every partition of the topic, from the group's committed offsets. */
static cv_err assign_all(stage *st) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(st->rk, st->in.topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    cv_err e = CV_OK;
    for (int attempt = 0; attempt < 250 && !cv_stopping(); attempt++) {
        rd_kafka_resp_err_t ke = rd_kafka_metadata(st->rk, 0, rkt, &md, 1000); /* short: a stop is noticed */
        if (!ke && md->topic_cnt == 1 && md->topics[0].partition_cnt > 0) break;
        if (md) rd_kafka_metadata_destroy(md), md = NULL;
        if (ke && !cv_kafka_retriable(ke)) {
            cv_error("event=kafka_metadata topic=%s error=\"%s\"", st->in.topic, rd_kafka_err2str(ke));
            e = CV_ERR_UNSUPPORTED;
            break;
        }
        rd_kafka_poll(st->rk, 200);
    }
    rd_kafka_topic_destroy(rkt);
    if (!md && !e)
        snprintf(st->s.why, sizeof st->s.why, "Kafka: no metadata for topic %s from %s (no broker answers)",
                 st->in.topic, st->in.bootstrap);
    if (!md) return e ? e : CV_ERR_TIMEOUT;
    st->parts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(st->parts);
    for (int p = 0; p < st->parts; p++)
        rd_kafka_topic_partition_list_add(l, st->in.topic, p);
    rd_kafka_resp_err_t ke = rd_kafka_committed(st->rk, l, 10000);
    if (!ke) ke = rd_kafka_assign(st->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (ke) {
        cv_warn("event=kafka_assign topic=%s error=\"%s\"", st->in.topic, rd_kafka_err2str(ke));
        snprintf(st->s.why, sizeof st->s.why, "Kafka: assigning topic %s: %s", st->in.topic,
                 rd_kafka_err2str(ke));
        return cv_kafka_retriable(ke) ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    }
    st->at_trunc = calloc((size_t)st->parts, sizeof(int));
    st->mark_taken = calloc((size_t)st->parts, sizeof(uint64_t));
    st->mark_applied = calloc((size_t)st->parts, sizeof(uint64_t));
    CV_ASSERT(st->at_trunc && st->mark_taken && st->mark_applied);
    return CV_OK;
}

static cv_err session(stage *st, volatile sig_atomic_t *stop) {
    const cv_sink_stage_opts *k = st->k;
    st->s.why[0] = 0;
    cv_pg_last_message_clear();
    cv_err e = cv_kafka_consumer_new(st->in.bootstrap, k->group, k->props, st->km, &st->rk);
    if (!e) e = cv_kafka_producer_new(st->in.bootstrap, k->dead_letter, k->props, st->km, &st->dlq);
    if (!e) e = assign_all(st);
    if (e) return e;
    cv_info("event=sink_started from=%s partitions=%d group=%s dead_letters=%s", st->in.topic, st->parts,
            k->group, k->dead_letter);
    int max = (int)k->batch_rows;
    cv_kin_msg *msgs = calloc((size_t)max, sizeof *msgs);
    st->cap = max;
    st->chg = calloc((size_t)max * 2 + 2, sizeof *st->chg);
    st->done = calloc((size_t)max + 1, sizeof *st->done);
    CV_ASSERT(msgs && st->chg && st->done);
    cv_kin_opts ko = {.key_columns = k->key_columns, .text_column = st->s.o.text_column, .dim = st->s.rt.dim};
    while (!e && !*stop) {
        int n = cv_kin_poll(st->rk, &ko, st->km, msgs, max, 0.5, stop);
        for (int i = 0; i < n; i++) {
            if (!e) e = take(st, &msgs[i]);
            cv_kin_msg_free(&msgs[i]);
        }
        if (!e) e = flush(st);
        double lag = cv_kafka_consumer_lag(st->rk);
        if (lag >= 0) /* the gauge sums the tables' lags */
            cv_metric_add(st->km->lag, lag - st->lag_seen), st->lag_seen = lag;
        if (!e && lag == 0 && n == 0 && st->sink && !st->index_ready) { /* caught up: build the index now */
            if (!cv_sink_backfill_mark(st->sink, st->floor, 1)) st->index_ready = 1;
        }
    }
    free(msgs);
    free(st->chg), free(st->done);
    st->chg = NULL, st->done = NULL;
    return e;
}

/* One attempt of the stage loop (runtime/loop.h). */
static cv_err attempt(void *arg, volatile sig_atomic_t *stop, cv_stage_end *end) {
    stage *st = arg;
    end->since = cv_now();
    st->s.fault = (cv_pg_fault){0}; /* this attempt's, when one is classified */
    st->s.why[0] = 0;               /* and its own story for the retry line */
    cv_pg_last_message_clear();
    cv_err e = session(st, stop);
    end->fault = st->s.fault;
    cv_sync_retry_text(&st->s, e, end->why, sizeof end->why);
    session_close(st);
    return e;
}

static int run_one(void *arg, volatile sig_atomic_t *stop) {
    stage *st = arg;
    const cv_stage stl = {.name = "sink", .attempt = attempt, .arg = st};
    return cv_stage_run(&stl, stop);
}

int cv_sink_stage_run_tables(const cv_sync_opts *o, const cv_sink_stage_opts *k, int n,
                             volatile sig_atomic_t *stop) {
    stage *st = calloc((size_t)n, sizeof *st);
    void **args = calloc((size_t)n, sizeof *args);
    sink_tables all = {.n = n, .s0 = &st[0].s};
    all.covered = calloc((size_t)n, sizeof *all.covered);
    CV_ASSERT(st && args && all.covered);
    pthread_mutex_init(&all.mu, NULL);
    int rc = 0, opened = 0;
    for (int i = 0; i < n && !rc; i++) {
        char err[512];
        st[i].k = &k[i], st[i].km = &st[0].km_own, st[i].idx = i;
        st[i].all = n > 1 ? &all : NULL;
        args[i] = &st[i];
        if (cv_kafka_url_parse(k[i].from, &st[i].in, err, sizeof err)) {
            cv_error("event=bad_option option=--from error=\"%s\"", err);
            rc = 2;
        }
    }
    cv_outlet out = *cv_wait_outlet(); /* /wait; no search page */
    out.no_model = 1;                  /* the vectors come with the messages */
    if (!rc && (opened = 1) && cv_kafka_stage_open(&st[0].s, &o[0], &out, "sink", st[0].km, &st[0].m_dead))
        rc = 1;
    if (!rc) {
        st[0].m_replayed =
            cv_metrics_counter(st[0].s.rt.reg, "cdcvec_kafka_superseded_total",
                               "Replayed messages from before the last truncate applied: skipped, the "
                               "truncate removed what they wrote.",
                               "stage=\"sink\"");
    }
    for (int i = 1; i < n && !rc; i++) { /* the first table's runtime, an apply stage each */
        st[i].s.o = o[i];
        st[i].s.o.outlet = NULL, st[i].s.o.http = NULL;
        st[i].s.rt = st[0].s.rt;
        st[i].s.stop = stop;
        CV_ASSERT(cv_apply_twin(st[0].s.rt.apply, &st[i].s.rt.apply) == CV_OK);
        st[i].m_dead = st[0].m_dead, st[i].m_replayed = st[0].m_replayed;
    }
    if (!rc) rc = cv_kafka_run_threads(n, run_one, args, stop);
    for (int i = 1; i < n; i++)
        if (st[i].s.rt.apply != st[0].s.rt.apply) cv_apply_free(st[i].s.rt.apply);
    if (opened) cv_sync_runtime_close(&st[0].s);
    for (int i = 0; i < n; i++)
        cv_kafka_url_free(&st[i].in);
    pthread_mutex_destroy(&all.mu);
    free(all.covered), free(st), free(args);
    return rc;
}

int cv_sink_stage_run(const cv_sync_opts *o, const cv_sink_stage_opts *k, volatile sig_atomic_t *stop) {
    return cv_sink_stage_run_tables(o, k, 1, stop);
}
