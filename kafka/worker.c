/* worker.c: `cdcvec worker`: the embed stage between two topics.
 *
 * Consumes the change topic in a consumer group (several workers split its partitions),
 * embeds the batch's texts (in-process model or --embed tcp://...), and produces each change
 * with its vector to the embeddings topic, to the same partition number it came from (so a
 * partition downstream holds exactly one partition upstream, in order, truncates included).
 * Offsets are committed only after every produced message is acknowledged: a worker killed
 * mid-batch leaves its batch uncommitted, and whoever owns the partitions next embeds it again
 * (the sink is idempotent). A message that cannot be read or embedded goes to the
 * dead-letter topic with the reason in its headers, never dropped.
 *
 * Any failure of the broker or the embedding service ends the session: consumer and producers
 * are closed, and after a backoff with jitter a new session resumes from the committed offsets. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/cv_jnum.h"
#include "../models/chunk.h"
#include "../models/minilm.h"
#include "../common/cv_log.h"
#include "../common/cv_time.h"
#include "../ingest/sync_impl.h"
#include "consumer.h"
#include "kafka.h"
#include "quix.h"

typedef struct {
    cv_sync s; /* the runtime: model or client, metrics, HTTP */
    const cv_worker_opts *w;
    cv_kafka_url in, out;
    cv_kafka_metrics km_own, *km; /* the process's (the first table's) */
    double lag_seen;              /* this table's part of km->lag */
    rd_kafka_t *rk;
    cv_kafka_producer *p, *dlq;
    int out_parts;
    cv_metric *m_dead, *m_chunks, *m_cached;
    const cv_tok *tok;   /* chunking on: the model's tokenizer */
    cv_chunk_opts chunk; /* max_tokens > 0: texts are sent as chunks */
    /* the vectors of the chunks embedded last, by chunk hash (direct-mapped: a newer chunk takes
     * the slot of an older one): an edit re-embeds only the chunks it changed while the cache
     * holds the others (the same bytes give the same vector); ncache 0: none */
    uint8_t (*ckey)[32];
    float *cvec;
    size_t ncache;
} worker;

/* The slot of chunk hash h in the cache. */
static size_t cache_slot(const worker *wk, const uint8_t h[32]) {
    uint64_t x;
    memcpy(&x, h, sizeof x);
    return (size_t)(x % wk->ncache);
}

/* 1 and the cached vector of h in out (dim floats), or 0. */
static int cache_get(const worker *wk, const uint8_t h[32], float *out) {
    if (!wk->ncache) return 0;
    size_t i = cache_slot(wk, h);
    if (memcmp(wk->ckey[i], h, 32) != 0) return 0;
    memcpy(out, wk->cvec + i * (size_t)wk->s.rt.dim, sizeof(float) * (size_t)wk->s.rt.dim);
    return 1;
}

static void cache_put(worker *wk, const uint8_t h[32], const float *v) {
    if (!wk->ncache) return;
    size_t i = cache_slot(wk, h);
    memcpy(wk->ckey[i], h, 32);
    memcpy(wk->cvec + i * (size_t)wk->s.rt.dim, v, sizeof(float) * (size_t)wk->s.rt.dim);
}

/* A message's text as chunks (chunking on): n texts of the batch, one after the other. */
typedef struct {
    cv_chunk *k;
    int n;
} msg_chunks;

/* The dead-letter topic gets m with the reason. */
static cv_err dead_letter(worker *wk, const cv_kin_msg *m, const char *why) {
    return cv_kin_dead_letter(wk->dlq, "worker", wk->in.topic, m, why, wk->m_dead);
}

static void sha256_hex(const char *s, uint8_t out[32]) {
    unsigned int l = 32;
    EVP_Digest(s, strlen(s), out, &l, EVP_sha256(), NULL);
}

/* The tutorial's embeddings message: the row's columns, kind and table, "embeddings" and
 * "Timestamp" (ns) (docs/TUTORIAL_FORMAT.md). */
static void quix_out(cv_buf *b, const cv_kin_msg *m, const cv_wire_msg *w, const float *vec, int dim) {
    json_t *row = NULL;
    if (!w->c.del) {
        row = m->row ? cv_jnum_loads(m->row, 0, NULL) : NULL;
        if (!row && w->c.payload) row = cv_jnum_loads(w->c.payload, 0, NULL);
    }
    if (!row) row = json_object();
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(w->c.del ? "delete" : m->kind ? m->kind : "update"));
    json_object_set_new(o, "table", json_string(w->t.table));
    json_object_update(o, row);
    if (w->c.del) /* the shape of docs/TUTORIAL_FORMAT.md: the old key's columns by name */
        for (int k = 0; k < w->t.nkeys; k++) {
            const char *ty = w->t.key_types[k], *v = w->c.key[k];
            char *end;
            long long n = strtoll(v, &end, 10);
            int integer =
                (!strcmp(ty, "integer") || !strcmp(ty, "bigint") || !strcmp(ty, "smallint")) && *v && !*end;
            json_object_set_new(o, w->t.key_names[k], integer ? json_integer(n) : json_string(v));
        }
    if (vec) {
        json_t *a = json_array();
        for (int i = 0; i < dim; i++)
            json_array_append_new(a, json_real((double)vec[i]));
        json_object_set_new(o, "embeddings", a);
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_object_set_new(o, "Timestamp", json_integer((json_int_t)ts.tv_sec * 1000000000 + ts.tv_nsec));
    char *s = cv_jnum_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9), CV_JNUM_EXACT);
    cv_buf_puts(b, s);
    free(s);
    json_decref(o), json_decref(row);
}

/* One output message for w (vec: its vector or NULL). */
static cv_err emit(worker *wk, const cv_kin_msg *m, const cv_wire_msg *w, const float *vec,
                   const msg_chunks *mc) {
    cv_buf v = {0}, key = {0};
    cv_change c = w->c; /* borrowed view */
    c.vec = (float *)vec;
    if (vec && c.text) sha256_hex(c.text, c.vec_hash);
    cv_wire_table t = w->t; /* borrowed view: a chunking worker says so on every message */
    t.chunked = wk->chunk.max_tokens > 0;
    cv_change_chunk *ck = NULL;
    if (mc && mc->n && vec) { /* vec: the first chunk's; the others follow it */
        ck = calloc((size_t)mc->n, sizeof *ck);
        CV_ASSERT(ck);
        for (int i = 0; i < mc->n; i++) {
            memcpy(ck[i].hash, mc->k[i].hash, 32);
            ck[i].char_off = (long)mc->k[i].char_off, ck[i].char_len = (long)mc->k[i].char_len;
            ck[i].vec = (float *)vec + (size_t)i * (size_t)wk->s.rt.dim;
        }
        c.chunks = ck, c.nchunks = mc->n, c.vec = NULL;
    }
    if (w->op == CV_WIRE_MARK && wk->w->quix) return CV_OK; /* the tutorial's format has no marks */
    if (wk->w->quix && m->format == CV_KIN_QUIX_CHANGE && w == &m->m && w->op != CV_WIRE_TRUNCATE) {
        /* the tutorial's own embeddings message, byte for byte as its service writes it */
        cv_quix_change_msg qm;
        cv_buf why = {0};
        cv_err qe = cv_quix_parse_change(m->raw, m->rlen, &qm, &why);
        char *s = NULL;
        if (!qe) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            s = cv_quix_embeddings(&qm, vec, wk->s.rt.dim, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec, &qe,
                                   &why);
            cv_quix_change_msg_free(&qm);
        }
        if (s) cv_buf_puts(&v, s);
        free(s);
        if (!s) {
            cv_err de =
                dead_letter(wk, m, why.p ? why.p : "the tutorial's embeddings message cannot carry it");
            free(why.p), free(v.p);
            return de;
        }
        free(why.p);
    } else if (wk->w->quix) {
        quix_out(&v, m, w, vec, wk->s.rt.dim);
    } else if (w->op == CV_WIRE_TRUNCATE) {
        cv_wire_encode_truncate(&v, &t, w->c.lsn, w->c.commit_unix, w->copies);
    } else if (w->op == CV_WIRE_MARK) { /* to the same partition number, behind what came before it */
        cv_wire_encode_mark(&v, &t, w->c.lsn, w->copies);
    } else {
        cv_wire_encode(&v, &t, &c, wk->s.rt.mf.id, wk->s.rt.dim);
    }
    free(ck);
    if (m->key)
        cv_buf_put(&key, m->key, m->klen);
    else if (w->c.key)
        cv_wire_key(&key, w->c.key);
    int part = m->partition < wk->out_parts ? m->partition : -1;
    cv_err e = cv_kafka_produce(wk->p, part, key.p, key.len, v.p, v.len);
    free(v.p), free(key.p);
    return e;
}

/* The first text of the message of text k (its texts follow one another). */
static int first_of(const int *idx, int k) {
    while (k > 0 && idx[k - 1] == idx[k])
        k--;
    return k;
}

/* Embeds, produces and acknowledges one batch; then commits its offsets. */
static cv_err batch(worker *wk, cv_kin_msg *msgs, int n, volatile sig_atomic_t *stop) {
    int cap = n + 1, nt = 0, dim = wk->s.rt.dim;
    const char **texts = calloc((size_t)cap, sizeof *texts);
    size_t *lens = calloc((size_t)cap, sizeof *lens);
    int *idx = calloc((size_t)cap, sizeof *idx);
    msg_chunks *mc = calloc((size_t)n + 1, sizeof *mc);
    CV_ASSERT(texts && lens && idx && mc);
    cv_err e = CV_OK;
    for (int i = 0; i < n && !e; i++) {
        cv_wire_msg *w = &msgs[i].m;
        if (!(msgs[i].format != CV_KIN_BAD && w->op == CV_WIRE_UPSERT && !w->c.fail &&
              w->c.text_state == CV_TEXT_KNOWN && !w->c.vec && w->c.text))
            continue;
        const char *tx = w->c.text;
        size_t len = strlen(tx);
        int nk = 1;
        if (wk->chunk.max_tokens > 0) { /* its chunks, each a text of its own */
            e = cv_chunk_text(wk->tok, &wk->chunk, tx, len, &mc[i].k, &mc[i].n);
            if (e) break;
            if (mc[i].n == 0) { /* the empty text: one chunk, as sync stores it */
                mc[i].k = calloc(1, sizeof *mc[i].k);
                CV_ASSERT(mc[i].k);
                sha256_hex(tx, mc[i].k->hash);
                mc[i].n = 1;
            }
            nk = mc[i].n;
        }
        if (nt + nk >= cap) {
            cap = 2 * (nt + nk) + 1;
            texts = realloc(texts, sizeof *texts * (size_t)cap);
            lens = realloc(lens, sizeof *lens * (size_t)cap);
            idx = realloc(idx, sizeof *idx * (size_t)cap);
            CV_ASSERT(texts && lens && idx);
        }
        for (int j = 0; j < nk; j++) {
            texts[nt] = mc[i].k ? tx + mc[i].k[j].off : tx;
            lens[nt] = mc[i].k ? mc[i].k[j].len : len;
            idx[nt++] = i;
        }
    }
    float *vec = malloc(sizeof(float) * (size_t)dim * (size_t)(nt ? nt : 1));
    int *refused = calloc((size_t)nt + 1, sizeof(int)), *pos = calloc((size_t)nt + 1, sizeof(int)), ne = 0;
    const char **et = calloc((size_t)nt + 1, sizeof *et);
    size_t *el = calloc((size_t)nt + 1, sizeof *el);
    CV_ASSERT(vec && refused && pos && et && el);
    for (int k = 0; k < nt; k++) { /* the chunks whose vector the cache holds are not embedded again */
        const msg_chunks *c = &mc[idx[k]];
        if (c->k && cache_get(wk, c->k[k - first_of(idx, k)].hash, vec + (size_t)k * dim)) continue;
        et[ne] = texts[k], el[ne] = lens[k], pos[ne++] = k;
    }
    float *ev = malloc(sizeof(float) * (size_t)dim * (size_t)(ne ? ne : 1));
    int *eref = calloc((size_t)ne + 1, sizeof(int));
    CV_ASSERT(ev && eref);
    char msg[256] = "";
    if (e) {
        snprintf(wk->s.why, sizeof wk->s.why, "chunking failed: %s", cv_strerror(e));
    } else if (ne) {
        int got = dim;
        e = cv_client_embed(wk->s.rt.client, et, el, ne, ev, dim, &got, msg, sizeof msg);
        if (e == CV_ERR_ARG || e == CV_ERR_FORMAT) { /* a text refused: find which, one at a time */
            e = CV_OK;
            for (int k = 0; k < ne && !e; k++) {
                cv_err e1 = cv_client_embed(wk->s.rt.client, et + k, el + k, 1, ev + (size_t)k * dim, dim,
                                            &got, msg, sizeof msg);
                if (e1 == CV_ERR_ARG || e1 == CV_ERR_FORMAT)
                    eref[k] = 1;
                else
                    e = e1;
            }
        }
        if (e) {
            cv_warn("event=worker_embed_failed texts=%d error=\"%s: %s\"", ne, cv_strerror(e), msg);
            snprintf(wk->s.why, sizeof wk->s.why, "the embedding service failed: %s%s%s", cv_strerror(e),
                     *msg ? ": " : "", msg);
        }
    }
    for (int j = 0; !e && j < ne; j++) {
        int k = pos[j];
        refused[k] = eref[j];
        memcpy(vec + (size_t)k * dim, ev + (size_t)j * dim, sizeof(float) * (size_t)dim);
        const msg_chunks *c = &mc[idx[k]];
        if (c->k && !eref[j]) cache_put(wk, c->k[k - first_of(idx, k)].hash, ev + (size_t)j * dim);
    }
    if (!e && wk->m_chunks) { /* chunking on: every text is a chunk */
        cv_metric_add(wk->m_chunks, ne);
        cv_metric_add(wk->m_cached, nt - ne);
    }
    free(ev), free(eref), free(pos), free(et), free(el);
    float **vof = calloc((size_t)n + 1, sizeof *vof);
    CV_ASSERT(vof);
    for (int k = nt - 1; k >= 0; k--) /* a message's first text (chunks: its first chunk) */
        vof[idx[k]] = vec + (size_t)k * dim;
    for (int k = 0; !e && k < nt; k++) /* a chunk refused: its whole message is */
        if (refused[k] && msgs[idx[k]].format != CV_KIN_BAD) {
            cv_buf why = {0};
            cv_buf_printf(&why, "the embedding service refused the text (%zu bytes): %s", lens[k], msg);
            e = dead_letter(wk, &msgs[idx[k]], why.p);
            free(why.p);
            msgs[idx[k]].format = CV_KIN_BAD; /* handled */
        }
    for (int i = 0; !e && i < n; i++) {
        cv_kin_msg *m = &msgs[i];
        if (m->format == CV_KIN_BAD) {
            if (m->why) e = dead_letter(wk, m, m->why);
            continue;
        }
        if (m->m_old.op == CV_WIRE_DELETE && (e = emit(wk, m, &m->m_old, NULL, NULL))) break;
        if (m->m.op == CV_WIRE_UPSERT && m->format == CV_KIN_QUIX_EMBEDDING) { /* embedded already */
            e = emit(wk, m, &m->m, m->m.c.vec, NULL);
            continue;
        }
        e = emit(wk, m, &m->m, vof[i], &mc[i]);
    }
    if (!e && (e = cv_kafka_producer_wait(wk->p, stop)))
        snprintf(wk->s.why, sizeof wk->s.why, "Kafka: topic %s did not acknowledge (%s)", wk->out.topic,
                 cv_strerror(e));
    if (!e && (e = cv_kafka_producer_wait(wk->dlq, stop)))
        snprintf(wk->s.why, sizeof wk->s.why, "Kafka: the dead-letter topic did not acknowledge (%s)",
                 cv_strerror(e));
    if (!e && (e = cv_kin_commit(wk->rk, wk->in.topic, msgs, n)))
        snprintf(wk->s.why, sizeof wk->s.why,
                 "Kafka: committing offsets of %s failed (event=kafka_commit_failed)", wk->in.topic);
    for (int i = 0; i < n; i++)
        free(mc[i].k);
    free(texts), free(lens), free(idx), free(vec), free(refused), free(vof), free(mc);
    return e;
}

static void session_close(worker *wk) {
    if (wk->rk) {
        rd_kafka_consumer_close(wk->rk);
        rd_kafka_destroy(wk->rk);
    }
    cv_kafka_producer_free(wk->p);
    cv_kafka_producer_free(wk->dlq);
    wk->rk = NULL, wk->p = wk->dlq = NULL;
}

/* One session: consumer, producers, then batches until stopped or failed. */
static cv_err session(worker *wk, volatile sig_atomic_t *stop) {
    const cv_worker_opts *w = wk->w;
    cv_err e = cv_kafka_consumer_new(wk->in.bootstrap, w->group, w->props, wk->km, &wk->rk);
    if (!e) e = cv_kafka_producer_new(wk->out.bootstrap, wk->out.topic, w->props, wk->km, &wk->p);
    if (!e) e = cv_kafka_producer_new(wk->out.bootstrap, w->dead_letter, w->props, wk->km, &wk->dlq);
    if (!e && (e = cv_kafka_producer_partitions(wk->p, &wk->out_parts)))
        snprintf(wk->s.why, sizeof wk->s.why, "Kafka: no partitions of topic %s from %s (%s)", wk->out.topic,
                 wk->out.bootstrap, cv_strerror(e));
    if (e) return e;
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, wk->in.topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t ke = rd_kafka_subscribe(wk->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (ke) {
        cv_error("event=kafka_subscribe topic=%s error=\"%s\"", wk->in.topic, rd_kafka_err2str(ke));
        return CV_ERR_UNSUPPORTED;
    }
    cv_info("event=worker_started from=%s to=%s group=%s format=%s dead_letters=%s", wk->in.topic,
            wk->out.topic, w->group, w->quix ? "quix" : "cdcvec", w->dead_letter);
    int max = (int)w->batch_rows;
    cv_kin_msg *msgs = calloc((size_t)max, sizeof *msgs);
    CV_ASSERT(msgs);
    cv_kin_opts ko = {.key_columns = w->key_columns, .text_column = wk->s.o.text_column, .dim = wk->s.rt.dim};
    while (!e && !*stop) {
        int n = cv_kin_poll(wk->rk, &ko, wk->km, msgs, max, 0.5, stop);
        if (n) e = batch(wk, msgs, n, stop);
        for (int i = 0; i < n; i++)
            cv_kin_msg_free(&msgs[i]);
        double lag = cv_kafka_consumer_lag(wk->rk);
        if (lag >= 0) /* the gauge sums the tables' lags */
            cv_metric_add(wk->km->lag, lag - wk->lag_seen), wk->lag_seen = lag;
    }
    free(msgs);
    return e == CV_ERR_SHUTDOWN ? CV_OK : e;
}

/* Chunking (--chunk-max-tokens): the model's own tokenizer, here; the sink stores what comes. */
static int chunk_setup(worker *wk) {
    const cv_worker_opts *w = wk->w;
    char why[300];
    if (!wk->s.rt.model) {
        cv_error("event=config_invalid option=chunk-max-tokens fix=\"chunking counts the model's own tokens: "
                 "run the model in this process (drop --embed)\"");
        return -1;
    }
    if (w->quix) {
        cv_error("event=config_invalid option=chunk-max-tokens fix=\"the tutorial's embeddings message "
                 "(--format quix) has one vector per row: use --format cdcvec, or --chunk-max-tokens 0\"");
        return -1;
    }
    const cv_model_facts *f = cv_minilm_facts(wk->s.rt.model);
    wk->chunk = (cv_chunk_opts){
        .max_tokens = w->chunk_max_tokens, .overlap = w->chunk_overlap, .max_seq = f->max_seq};
    if (cv_chunk_check(&wk->chunk, why, sizeof why)) {
        cv_error("event=config_invalid option=chunk-max-tokens fix=\"%s\"", why);
        return -1;
    }
    wk->tok = cv_minilm_tok(wk->s.rt.model);
    size_t dim = (size_t)wk->s.rt.dim;
    wk->ncache = (size_t)w->chunk_cache_mb * 1024 * 1024 / (32 + sizeof(float) * dim);
    if (wk->ncache) {
        wk->ckey = calloc(wk->ncache, 32);
        wk->cvec = malloc(wk->ncache * dim * sizeof(float));
        if (!wk->ckey || !wk->cvec) {
            cv_error("event=config_invalid option=chunk-cache-mb fix=\"%d MB cannot be allocated: a smaller "
                     "--chunk-cache-mb\"",
                     w->chunk_cache_mb);
            return -1;
        }
    }
    if (wk->m_chunks) goto done; /* another table's registered them */
    wk->m_chunks = cv_metrics_counter(wk->s.rt.reg, "cdcvec_chunks_embedded_total",
                                      "Chunks of texts embedded (chunking on): those whose vector the "
                                      "worker's cache (--chunk-cache-mb) did not hold.",
                                      "stage=\"worker\"");
    wk->m_cached = cv_metrics_counter(wk->s.rt.reg, "cdcvec_chunks_cached_total",
                                      "Chunks of changed texts whose vector came from the worker's cache "
                                      "(the same bytes embedded before): not embedded again.",
                                      "stage=\"worker\"");
done:
    cv_info("event=worker_chunks table=%s max_tokens=%d used=%d overlap=%d cache_chunks=%zu", wk->s.o.table,
            wk->chunk.max_tokens, cv_chunk_limit(&wk->chunk), wk->chunk.overlap, wk->ncache);
    return 0;
}

/* One attempt of the stage loop (runtime/loop.h). */
static cv_err attempt(void *arg, volatile sig_atomic_t *stop, cv_stage_end *end) {
    worker *wk = arg;
    end->since = cv_now();
    wk->s.fault = (cv_pg_fault){0}; /* this attempt's, when one is classified */
    wk->s.why[0] = 0;
    cv_pg_last_message_clear();
    cv_err e = session(wk, stop);
    end->fault = wk->s.fault;
    cv_sync_retry_text(&wk->s, e, end->why, sizeof end->why);
    session_close(wk);
    return e;
}

static int run_one(void *arg, volatile sig_atomic_t *stop) {
    worker *wk = arg;
    const cv_stage st = {.name = "worker", .attempt = attempt, .arg = wk};
    return cv_stage_run(&st, stop);
}

int cv_worker_run_tables(const cv_sync_opts *o, const cv_worker_opts *w, int n, volatile sig_atomic_t *stop) {
    worker *wk = calloc((size_t)n, sizeof *wk);
    void **args = calloc((size_t)n, sizeof *args);
    CV_ASSERT(wk && args);
    int rc = 0, opened = 0;
    for (int i = 0; i < n && !rc; i++) {
        char err[512];
        wk[i].w = &w[i];
        wk[i].km = &wk[0].km_own;
        args[i] = &wk[i];
        if (cv_kafka_url_parse(w[i].from, &wk[i].in, err, sizeof err)) {
            cv_error("event=bad_option option=--from error=\"%s\"", err);
            rc = 2;
        } else if (cv_kafka_url_parse(w[i].to, &wk[i].out, err, sizeof err)) {
            cv_error("event=bad_option option=--to error=\"%s\"", err);
            rc = 2;
        }
    }
    static const cv_outlet out = {.no_apply = 1}; /* the model; no store, no routes */
    if (!rc && (opened = 1) && cv_kafka_stage_open(&wk[0].s, &o[0], &out, "worker", wk[0].km, &wk[0].m_dead))
        rc = 1;
    for (int i = 1; i < n && !rc; i++) { /* the other tables borrow the first one's runtime */
        wk[i].s.o = o[i];
        wk[i].s.o.outlet = NULL, wk[i].s.o.http = NULL;
        wk[i].s.rt = wk[0].s.rt;
        wk[i].m_dead = wk[0].m_dead;
    }
    for (int i = 0; i < n && !rc; i++) {
        if (i) wk[i].m_chunks = wk[0].m_chunks, wk[i].m_cached = wk[0].m_cached;
        for (int j = 0; j < i && !wk[i].m_chunks; j++)
            wk[i].m_chunks = wk[j].m_chunks, wk[i].m_cached = wk[j].m_cached;
        if (w[i].chunk_max_tokens > 0 && chunk_setup(&wk[i])) rc = 2;
    }
    if (!rc) rc = cv_kafka_run_threads(n, run_one, args, stop);
    if (opened) cv_sync_runtime_close(&wk[0].s);
    for (int i = 0; i < n; i++) {
        free(wk[i].ckey), free(wk[i].cvec);
        cv_kafka_url_free(&wk[i].in), cv_kafka_url_free(&wk[i].out);
    }
    free(wk), free(args);
    return rc;
}

int cv_worker_run(const cv_sync_opts *o, const cv_worker_opts *w, volatile sig_atomic_t *stop) {
    return cv_worker_run_tables(o, w, 1, stop);
}
