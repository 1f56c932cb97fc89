/* backfill.c: what streaming and backfill share: opening the stages, applying a batch of
 * changes to the sink (collapse by key, hash check, embed, one transaction), the snapshot
 * backfill with progress, and `cdcvec backfill` / `cdcvec search`. */
#define _POSIX_C_SOURCE 200809L
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "sync_impl.h"

static void sha256(const char *s, size_t n, uint8_t out[32]) {
    unsigned int len = 32;
    EVP_Digest(s, n, out, &len, EVP_sha256(), NULL);
}

cv_err cv_sync_open(cv_sync *s, const cv_sync_opts *o, int replication) {
    memset(s, 0, sizeof *s);
    s->o = *o;
    s->dim = 384;
    pthread_mutex_init(&s->search_mu, NULL);
    pthread_cond_init(&s->search_idle, NULL);
    cv_search_routes(s);
    s->src = PQconnectdb(o->source);
    if (PQstatus(s->src) != CONNECTION_OK) {
        cv_error("event=source_connect error=\"%s\" fix=\"check --source\"", PQerrorMessage(s->src));
        return CV_ERR_TIMEOUT;
    }
    PQsetNoticeProcessor(s->src, cv_pg_notice, NULL);
    cv_err e = cv_table_describe(s->src, o->table, o->text_column ? o->text_column : "description",
                                 o->template_, &s->t);
    if (e) return e;
    if (o->slot && *o->slot)
        snprintf(s->slot, sizeof s->slot, "%s", o->slot);
    else
        snprintf(s->slot, sizeof s->slot, "cdcvec_%s_%s", s->t.schema, s->t.name);
    for (char *p = s->slot; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) *p = '_';
    if (o->publication && *o->publication)
        snprintf(s->publication, sizeof s->publication, "%s", o->publication);
    else
        snprintf(s->publication, sizeof s->publication, "%s", s->slot);
    snprintf(s->stream, sizeof s->stream, "%s", s->slot);
    /* sync: the server must allow logical replication; checked before anything is created */
    if (replication && (e = cv_source_prepare(s->src, &s->t, s->publication))) return e;
    /* embedding: a remote server, or the model in-process behind inproc:// */
    char url[128];
    if (o->embed && *o->embed) {
        snprintf(url, sizeof url, "%s", o->embed);
        s->reg = cv_metrics_new();
        s->own_reg = 1;
    } else {
        cv_minilm_opts mo = {.threads = o->threads, .device = o->device};
        if ((e = cv_minilm_load(o->model_dir && *o->model_dir ? o->model_dir : cv_minilm_default_dir(), &mo,
                                &s->model))) {
            cv_error("event=model_unavailable fix=\"python3 models/fetch_model.py\"");
            return e;
        }
        s->dim = cv_minilm_cfg(s->model)->hidden;
        snprintf(url, sizeof url, "inproc://cdcvec-sync-%d", (int)getpid());
        cv_server_opts so = {.listen = url,
                             .http = o->http,
                             .batch_tokens = 16384,
                             .batch_deadline_ms = 2,
                             .max_queue_tokens = 1 << 22,
                             .max_inflight = 64,
                             .max_message_bytes = 1 << 28,
                             .max_texts = 4096,
                             .max_text_bytes = 1 << 24,
                             .model_id = "sentence-transformers/all-MiniLM-L6-v2",
                             .routes = s->routes,
                             .nroutes = 2};
        if ((e = cv_server_start(s->model, &so, &s->server))) return e;
        s->reg = cv_server_metrics(s->server);
    }
    cv_client_opts co = {.timeout_ms = 120000, .retries = 20, .backoff_ms = 20};
    if ((e = cv_client_open(url, &co, &s->client))) return e;
    cv_metrics *r = s->reg;
    static const char *ch = "Source changes applied, by kind.";
    s->m_changes_ins = cv_metrics_counter(r, "cdcvec_sync_changes_total", ch, "kind=\"insert\"");
    s->m_changes_upd = cv_metrics_counter(r, "cdcvec_sync_changes_total", ch, "kind=\"update\"");
    s->m_changes_del = cv_metrics_counter(r, "cdcvec_sync_changes_total", ch, "kind=\"delete\"");
    s->m_changes_trunc = cv_metrics_counter(r, "cdcvec_sync_changes_total", ch, "kind=\"truncate\"");
    s->m_batches = cv_metrics_counter(r, "cdcvec_sync_batches_total", "Sink transactions committed.", NULL);
    s->m_embedded = cv_metrics_counter(r, "cdcvec_sync_embedded_total", "Rows (re-)embedded.", NULL);
    s->m_skipped =
        cv_metrics_counter(r, "cdcvec_sync_reembed_skipped_total",
                           "Upserts whose text hash was unchanged: payload updated, no embedding.", NULL);
    s->m_lag = cv_metrics_gauge(r, "cdcvec_sync_replication_lag_bytes",
                                "Server WAL position minus the position committed to the sink.", NULL);
    static const double lat_b[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    s->m_latency =
        cv_metrics_histogram(r, "cdcvec_sync_commit_to_searchable_seconds",
                             "From the source commit to the sink commit of its vectors.", NULL, lat_b, 12);
    static const char *eh = "Sync errors by stage.";
    s->m_err_source = cv_metrics_counter(r, "cdcvec_sync_errors_total", eh, "stage=\"source\"");
    s->m_err_sink = cv_metrics_counter(r, "cdcvec_sync_errors_total", eh, "stage=\"sink\"");
    s->m_err_embed = cv_metrics_counter(r, "cdcvec_sync_errors_total", eh, "stage=\"embed\"");
    cv_sink_table st = {.schema = s->t.schema,
                        .table = s->t.name,
                        .nkeys = s->t.nkeys,
                        .key_names = s->t.keyname,
                        .key_types = s->t.keytype,
                        .dim = s->dim,
                        .model_id = "sentence-transformers/all-MiniLM-L6-v2",
                        .stream = s->stream};
    s->sink_table = st;
    s->sink_conninfo = o->sink && *o->sink ? o->sink : o->source;
    if ((e = cv_sink_open(s->sink_conninfo, &st, &s->sink))) {
        cv_metric_add(s->m_err_sink, 1);
        return e;
    }
    return CV_OK;
}

void cv_sync_close(cv_sync *s) {
    cv_search_close(s);
    cv_client_close(s->client);
    if (s->server) {
        cv_server_drain(s->server, 5000);
        cv_server_free(s->server);
    }
    if (s->own_reg) cv_metrics_free(s->reg);
    cv_minilm_free(s->model);
    cv_sink_close(s->sink);
    if (s->src) PQfinish(s->src);
    cv_table_free(&s->t);
    pthread_mutex_destroy(&s->search_mu);
    pthread_cond_destroy(&s->search_idle);
    memset(s, 0, sizeof *s);
}

/* Joined key for collapsing: values separated by 0x1f. */
static char *key_join(char **key) {
    size_t n = 0;
    for (int k = 0; key[k]; k++)
        n += strlen(key[k]) + 1;
    char *j = malloc(n + 1), *p = j;
    for (int k = 0; key[k]; k++)
        p += sprintf(p, "%s\x1f", key[k]);
    *p = 0;
    return j;
}

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Keeps the last change of every key, in the order of those last changes. */
static int collapse(cv_change *chg, int n) {
    int cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    int *slot = malloc(sizeof(int) * (size_t)cap);
    char **kj = malloc(sizeof(char *) * (size_t)(n ? n : 1));
    for (int i = 0; i < cap; i++)
        slot[i] = -1;
    for (int i = 0; i < n; i++) {
        kj[i] = key_join(chg[i].key);
        for (uint64_t h = fnv(kj[i]) & (uint64_t)(cap - 1);; h = (h + 1) & (uint64_t)(cap - 1)) {
            if (slot[h] < 0) {
                slot[h] = i;
                break;
            }
            if (strcmp(kj[slot[h]], kj[i]) == 0) {
                cv_change_free(&chg[slot[h]]); /* superseded */
                chg[slot[h]].del = -1;
                slot[h] = i;
                break;
            }
        }
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        free(kj[i]);
        if (chg[i].del >= 0) chg[m++] = chg[i];
    }
    free(kj);
    free(slot);
    return m;
}

/* Embedding of one chunk at a time through the asynchronous client: the caller writes the
 * previous chunk to the sink meanwhile. */
#define EMBED_CHUNK 128

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy; /* a call is in flight */
    cv_err err;
    float *dst;
    int dim;
    char msg[256];
} embed_call;

static embed_call ec = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, CV_OK, NULL, 0, ""};

static void embed_done(void *arg, cv_err err, const float *v, int n, int dim, const char *msg) {
    embed_call *c = arg;
    pthread_mutex_lock(&c->mu);
    c->err = err;
    if (!err && dim == c->dim)
        memcpy(c->dst, v, sizeof(float) * (size_t)n * (size_t)dim);
    else if (!err)
        c->err = CV_ERR_FORMAT, snprintf(c->msg, sizeof c->msg, "dimension %d, expected %d", dim, c->dim);
    else
        snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "");
    c->busy = 0;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

/* Starts embedding texts[from .. from+EMBED_CHUNK) into vec (n texts in all). */
static cv_err embed_start(cv_sync *s, const char **texts, int n, float *vec, int from) {
    if (from >= n) return CV_OK;
    int m = n - from < EMBED_CHUNK ? n - from : EMBED_CHUNK;
    size_t lens[EMBED_CHUNK];
    for (int k = 0; k < m; k++)
        lens[k] = strlen(texts[from + k]);
    pthread_mutex_lock(&ec.mu);
    ec.busy = 1;
    ec.err = CV_OK;
    ec.dst = vec + (size_t)from * s->dim;
    ec.dim = s->dim;
    pthread_mutex_unlock(&ec.mu);
    cv_err e = cv_client_embed_async(s->client, texts + from, lens, m, embed_done, &ec);
    if (e) {
        pthread_mutex_lock(&ec.mu);
        ec.busy = 0;
        pthread_mutex_unlock(&ec.mu);
    }
    return e;
}

/* Waits for the call in flight; errors are retriable for the session (it replays). */
static cv_err embed_wait(cv_sync *s) {
    pthread_mutex_lock(&ec.mu);
    while (ec.busy)
        pthread_cond_wait(&ec.cv, &ec.mu);
    cv_err e = ec.err;
    pthread_mutex_unlock(&ec.mu);
    if (e) {
        cv_metric_add(s->m_err_embed, 1);
        cv_error("event=embed_failed error=\"%s: %s\"", cv_strerror(e), ec.msg);
        return e == CV_ERR_FORMAT || e == CV_ERR_ARG ? CV_ERR_IO : CV_ERR_TIMEOUT;
    }
    return CV_OK;
}

/* After a failure: never leave a call writing into freed memory. */
static void embed_drain(cv_sync *s) {
    (void)s;
    pthread_mutex_lock(&ec.mu);
    while (ec.busy)
        pthread_cond_wait(&ec.cv, &ec.mu);
    pthread_mutex_unlock(&ec.mu);
}

/* Synchronous form, for single queries. */
static cv_err embed(cv_sync *s, const char **texts, int n, float *vec) {
    cv_err e = CV_OK;
    for (int c = 0; !e && c < n; c += EMBED_CHUNK) {
        e = embed_start(s, texts, n, vec, c);
        if (!e) e = embed_wait(s);
    }
    return e;
}

cv_err cv_sync_flush(cv_sync *s, cv_change *chg, int n, int truncate, uint64_t position, int force,
                     double commit_unix) {
    n = collapse(chg, n);
    int *found_up = calloc((size_t)n + 1, sizeof(int)), *found = calloc((size_t)n + 1, sizeof(int)),
        *need = calloc((size_t)n + 1, sizeof(int));
    uint8_t(*old)[32] = calloc((size_t)n + 1, 32), (*hash)[32] = calloc((size_t)n + 1, 32);
    const char ***keys = calloc((size_t)n + 1, sizeof(char **));
    cv_change **fetch = calloc((size_t)n + 1, sizeof(cv_change *));
    cv_err e = CV_OK;
    int nk = 0, nf = 0;
    for (int i = 0; i < n; i++)
        if (!chg[i].del) keys[nk++] = (const char **)chg[i].key;
    if (!truncate && nk) e = cv_sink_hashes(s->sink, (const char *const *const *)keys, nk, found_up, old);
    if (e) cv_metric_add(s->m_err_sink, 1);
    /* decide, per upsert: embed, payload only, or read the text from the source first */
    for (int i = 0, u = 0; !e && i < n; i++) {
        if (chg[i].del) continue;
        int f = found[i] = found_up[u]; /* by change index from here on */
        memcpy(hash[i], old[u], 32);
        u++;
        if (chg[i].text_state == CV_TEXT_UNKNOWN && (!f || force)) fetch[nf++] = &chg[i];
    }
    if (!e && nf) {
        e = cv_fetch_texts(s->src, &s->t, fetch, nf);
        if (e) cv_metric_add(s->m_err_source, 1);
    }
    int nemb = 0;
    const char **texts = calloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; !e && i < n; i++) {
        if (chg[i].del) continue;
        if (chg[i].text_state == CV_TEXT_NULL) { /* no text, no vector: documented behaviour */
            chg[i].del = 1;
            continue;
        }
        if (chg[i].text_state == CV_TEXT_UNKNOWN) continue; /* unchanged TOASTed text: payload only */
        uint8_t h[32];
        sha256(chg[i].text, strlen(chg[i].text), h);
        if (found[i] && !force && memcmp(h, hash[i], 32) == 0) continue; /* same text */
        memcpy(hash[i], h, 32);
        need[i] = 1;
        texts[nemb++] = chg[i].text;
    }
    float *vec = malloc(sizeof(float) * (size_t)s->dim * (size_t)(nemb ? nemb : 1));
    const double t0 = cv_wall_now();
    double t_wait = 0;
    if (!e) {
        cv_sink_row *up = calloc((size_t)n + 1, sizeof *up), *del = calloc((size_t)n + 1, sizeof *del);
        int nu = 0, nd = 0, v = 0, skipped = 0;
        for (int i = 0; i < n; i++) {
            if (chg[i].del) {
                del[nd++] = (cv_sink_row){.key = (const char *const *)chg[i].key};
                continue;
            }
            cv_sink_row r = {.key = (const char *const *)chg[i].key, .payload = chg[i].payload};
            if (need[i])
                r.vec = vec + (size_t)(v++) * s->dim, r.hash = hash[i];
            else
                skipped++;
            up[nu++] = r;
        }
        /* rows in the order of texts[] (need[] order), for the chunked writes */
        cv_sink_row *emb = calloc((size_t)nemb + 1, sizeof *emb);
        for (int i = 0, k = 0; i < nu; i++)
            if (up[i].vec) emb[k++] = up[i];
        cv_sink_batch b = {
            .truncate = truncate, .del = del, .ndel = nd, .up = up, .nup = nu, .position = position};
        /* one sink transaction; chunk k's rows are written while chunk k+1 is being embedded */
        e = embed_start(s, texts, nemb, vec, 0);
        if (!e) e = cv_sink_begin(s->sink, &b);
        for (int c = 0; !e && c < nemb; c += EMBED_CHUNK) {
            double w0 = cv_wall_now();
            e = embed_wait(s);
            t_wait += cv_wall_now() - w0;
            if (!e && c + EMBED_CHUNK < nemb) e = embed_start(s, texts, nemb, vec, c + EMBED_CHUNK);
            if (!e)
                e = cv_sink_put(s->sink, emb + c, nemb - c < EMBED_CHUNK ? nemb - c : EMBED_CHUNK, position);
            else
                cv_sink_rollback(s->sink);
        }
        if (!e) e = cv_sink_commit(s->sink, position);
        embed_drain(s);
        if (e) {
            cv_metric_add(s->m_err_sink, 1);
        } else {
            cv_metric_add(s->m_batches, 1);
            cv_metric_add(s->m_embedded, nemb);
            cv_metric_add(s->m_skipped, skipped);
            if (commit_unix > 0) cv_metric_observe(s->m_latency, cv_wall_now() - commit_unix);
            char lsn[24];
            cv_lsn_format(position, lsn);
            cv_debug(
                "event=batch_applied position=%s upserts=%d deletes=%d embedded=%d skipped=%d truncate=%d "
                "total_ms=%.1f embed_wait_ms=%.1f",
                lsn, nu, nd, nemb, skipped, truncate, (cv_wall_now() - t0) * 1e3, t_wait * 1e3);
        }
        free(emb);
        free(up);
        free(del);
    }
    for (int i = 0; i < n; i++)
        cv_change_free(&chg[i]);
    free(found_up), free(found), free(need), free(old), free(hash), free(keys), free(fetch), free(texts),
        free(vec);
    return e;
}

/* "k1,k2" -> NULL-terminated array of nkeys values; NULL when the count differs. */
static char **split_key(const char *text, int nkeys) {
    char **k = calloc((size_t)nkeys + 1, sizeof(char *));
    const char *p = text;
    for (int i = 0; i < nkeys; i++) {
        const char *e = i + 1 < nkeys ? strchr(p, ',') : p + strlen(p);
        if (!e || (i + 1 == nkeys && strchr(p, ','))) {
            for (int j = 0; j < i; j++)
                free(k[j]);
            free(k);
            return NULL;
        }
        k[i] = strndup(p, (size_t)(e - p));
        p = e + 1;
    }
    return k;
}

cv_err cv_sync_backfill(cv_sync *s, PGconn *db, uint64_t position, int force, const char *start_after,
                        volatile sig_atomic_t *stop, long *rows) {
    const int page = 512;
    char **after = NULL;
    if (start_after && *start_after && !(after = split_key(start_after, s->t.nkeys))) {
        cv_error(
            "event=bad_option option=--after value=\"%s\" error=\"expected %d comma-separated primary key "
            "value(s)\"",
            start_after, s->t.nkeys);
        return CV_ERR_ARG;
    }
    cv_change *chg = calloc(page, sizeof *chg);
    long done = 0, total = 0;
    PGresult *r;
    char sql[1024];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", s->t.qualified);
    r = PQexec(db, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) total = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    const double t0 = cv_wall_now();
    double last_print = 0;
    cv_err e = CV_OK;
    for (;;) {
        if (stop && *stop) {
            e = CV_ERR_SHUTDOWN;
            break;
        }
        int n = 0;
        if ((e = cv_read_page(db, &s->t, after, page, chg, &n))) break;
        if (n == 0) break;
        /* the next page starts after this page's last key */
        if (after) {
            for (int k = 0; after[k]; k++)
                free(after[k]);
            free(after);
        }
        after = calloc((size_t)s->t.nkeys + 1, sizeof(char *));
        for (int k = 0; k < s->t.nkeys; k++)
            after[k] = strdup(chg[n - 1].key[k]);
        if ((e = cv_sync_flush(s, chg, n, 0, position, force, 0))) break;
        done += n;
        double now = cv_wall_now();
        if (now - last_print > 1.0 || n < page) {
            double rate = done / (now - t0 > 1e-6 ? now - t0 : 1e-6),
                   eta = total > done ? (total - done) / rate : 0;
            char last[256] = "";
            for (int k = 0; after && after[k]; k++)
                snprintf(last + strlen(last), sizeof last - strlen(last), "%s%s", k ? "," : "", after[k]);
            fprintf(stderr, "backfill %s: %ld/%ld rows, %.0f rows/s, ETA %.0f s, last key %s\n",
                    s->t.qualified, done, total, rate, eta, last);
            last_print = now;
        }
        memset(chg, 0, sizeof *chg * page);
    }
    if (after) {
        for (int k = 0; after[k]; k++)
            free(after[k]);
        free(after);
    }
    free(chg);
    if (rows) *rows = done;
    return e;
}

int cv_backfill_run(const cv_sync_opts *o, volatile sig_atomic_t *stop) {
    cv_sync s;
    cv_err e = cv_sync_open(&s, o, 0);
    if (!e) {
        uint64_t pos, bpos;
        int done;
        e = cv_sink_state(s.sink, &pos, &done, &bpos);
        long rows = 0;
        /* rows keep the last applied position: the stream replays idempotently over them */
        if (!e) e = cv_sync_backfill(&s, s.src, pos, o->force, o->after, stop, &rows);
        if (!e) cv_info("event=backfill_done table=%s rows=%ld", s.t.qualified, rows);
    }
    cv_sync_close(&s);
    return e ? 1 : 0;
}

typedef struct {
    int printed;
} search_out;

static void print_hit(void *arg, int rank, double sim, const char *key, const char *payload) {
    ((search_out *)arg)->printed++;
    printf("%2d. %.4f  key=%s  %s\n", rank, sim, key, payload);
}

int cv_search_run(const cv_sync_opts *o, const char *query, int limit) {
    cv_sync s;
    cv_err e = cv_sync_open(&s, o, 0);
    if (!e) {
        float q[4096];
        const char *tx[1] = {query};
        e = embed(&s, tx, 1, q);
        search_out out = {0};
        if (!e) e = cv_sink_search(s.sink, q, limit, print_hit, &out);
        if (!e && out.printed == 0) printf("(no rows in the index yet)\n");
    }
    cv_sync_close(&s);
    return e ? 1 : 0;
}
