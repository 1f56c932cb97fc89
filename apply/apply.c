/* apply.c: the apply stage (apply.h).
 *
 * A batch is collapsed to the last change of each key, in the order of those last changes.
 * Keys whose types compare exactly by their text (integers, text, uuid...) are then applied in
 * one step; for other key types (citext, numeric: 'a@x' = 'A@X', 1.0 = 1.00) a delete that
 * follows an upsert of a differently spelled key starts a new step, so that the store sees
 * them in source order. Each step, inside the batch's one store transaction: delete, look up
 * the stored text hashes (after the deletes: a key deleted and re-inserted under an equal
 * spelling is a new row, not a payload-only update), read from the source the texts the
 * stream could not give, update payloads alone where the text hash is unchanged, and embed
 * the rest chunk by chunk, each chunk written while the next one is embedded. A text the
 * embedding service refuses (too long for a remote server, say) is isolated and recorded as a
 * dead letter, its stale vector removed; retriable failures abort the batch, which the caller
 * replays. With chunking (cv_apply_opts.chunk, a chunked store table), a changed text is cut into
 * chunks (models/chunk.h): those whose hash the store holds for the key keep their vectors
 * (renumbered), the others are embedded, every other stored chunk of the key goes
 * (docs/ARCHITECTURE.md, "Chunks"). Without it, a text over the model's max_seq is counted and
 * logged once per table (cv_apply_set_table). */
#define _POSIX_C_SOURCE 200809L
#include "apply.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../pg/cv_keytext.h"
#include "../common/cv_log.h"
#include "../common/cv_lsn.h"
#include "../common/cv_time.h"

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

/* The stage's counters. */
typedef struct cv_apply_metrics {
    cv_metric *batches, *embedded, *skipped, *dead, *latency, *chunks_embedded, *chunks_kept;
} cv_apply_metrics;

/* Per table (schema.table): texts embedded from their first max_seq tokens only; dead letters
 * and commit-to-searchable of its batches. */
typedef struct trunc_table {
    char *name;
    cv_metric *m, *m_dead, *m_lat;
    int logged; /* the text_truncated line was written */
    struct trunc_table *next;
} trunc_table;

struct cv_apply {
    cv_apply_opts o;
    embed_call ec;
    int nkeys; /* learned from the first change */
    cv_apply_metrics m;
    trunc_table *tables, *cur;    /* every table seen (the owner's list); cur: the one being applied */
    const struct cv_apply *owner; /* a twin's (cv_apply_twin): whose counters and tables it shares */
    int32_t *tok_ids;             /* (max_seq + 1) scratch of the truncation check */
};

void cv_change_free(cv_change *c) {
    for (int k = 0; c->key && c->key[k]; k++)
        free(c->key[k]);
    free(c->key), free(c->text), free(c->payload), free(c->keep), free(c->fail), free(c->vec),
        free(c->encoded);
    for (int k = 0; k < c->nchunks; k++)
        free(c->chunks[k].vec);
    free(c->chunks);
    memset(c, 0, sizeof *c);
}

cv_err cv_apply_new(const cv_apply_opts *o, cv_apply **out) {
    cv_apply *a = calloc(1, sizeof *a);
    if (!a) return CV_ERR_NOMEM;
    a->o = *o;
    pthread_mutex_init(&a->ec.mu, NULL);
    pthread_cond_init(&a->ec.cv, NULL);
    cv_metrics *r = o->reg;
    a->m.batches = cv_metrics_counter(r, "cdcvec_sync_batches_total", "Sink transactions committed.", NULL);
    a->m.embedded = cv_metrics_counter(r, "cdcvec_sync_embedded_total", "Rows (re-)embedded.", NULL);
    a->m.skipped =
        cv_metrics_counter(r, "cdcvec_sync_reembed_skipped_total",
                           "Upserts whose text hash was unchanged: payload updated, no embedding.", NULL);
    a->m.dead =
        cv_metrics_counter(r, "cdcvec_sync_dead_letters_total",
                           "Changes that could not be applied, recorded in cdcvec.dead_letters.", NULL);
    a->m.chunks_embedded =
        cv_metrics_counter(r, "cdcvec_chunks_embedded_total",
                           "Chunks of texts embedded (chunking on): new, or their hash changed.", NULL);
    a->m.chunks_kept = cv_metrics_counter(
        r, "cdcvec_chunks_kept_total",
        "Chunks of changed texts whose hash the store already held: vector kept (renumbered if need be).",
        NULL);
    static const double lat_b[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    a->m.latency =
        cv_metrics_histogram(r, "cdcvec_sync_commit_to_searchable_seconds",
                             "From the source commit to the sink commit of its vectors.", NULL, lat_b, 12);
    *out = a;
    return CV_OK;
}

/* the owners' lists of tables, shared with their twins (another thread) */
static pthread_mutex_t tables_mu = PTHREAD_MUTEX_INITIALIZER;

cv_err cv_apply_twin(const cv_apply *a, cv_apply **out) {
    cv_apply *b = calloc(1, sizeof *b);
    if (!b) return CV_ERR_NOMEM;
    b->o = a->o;
    b->m = a->m;
    b->owner = a->owner ? a->owner : a;
    pthread_mutex_init(&b->ec.mu, NULL);
    pthread_cond_init(&b->ec.cv, NULL);
    *out = b;
    return CV_OK;
}

void cv_apply_set_chunk(cv_apply *a, int max_tokens, int overlap) {
    a->o.chunk.max_tokens = max_tokens;
    a->o.chunk.overlap = overlap;
}

void cv_apply_free(cv_apply *a) {
    if (!a) return;
    for (trunc_table *t = a->owner ? NULL : a->tables, *next; t; t = next)
        next = t->next, free(t->name), free(t);
    free(a->tok_ids);
    pthread_mutex_destroy(&a->ec.mu);
    pthread_cond_destroy(&a->ec.cv);
    free(a);
}

void cv_apply_set_sink(cv_apply *a, cv_sink *sink, cv_apply_fetch_fn fetch, void *fetch_arg, int key_exact) {
    a->o.sink = sink, a->o.fetch = fetch, a->o.fetch_arg = fetch_arg, a->o.key_exact = key_exact;
}

void cv_apply_set_table(cv_apply *a, const char *schema_table) {
    cv_apply *o = (cv_apply *)(a->owner ? a->owner : a);
    pthread_mutex_lock(&tables_mu);
    for (trunc_table *t = o->tables; t; t = t->next)
        if (strcmp(t->name, schema_table) == 0) {
            a->cur = t;
            pthread_mutex_unlock(&tables_mu);
            return;
        }
    trunc_table *t = calloc(1, sizeof *t);
    CV_ASSERT(t && (t->name = strdup(schema_table)));
    cv_buf labels = {0};
    cv_buf_puts(&labels, "table=\"");
    for (const char *p = schema_table; *p; p++) { /* a label value escapes \\ and \" */
        if (*p == '\\' || *p == '"') cv_buf_put(&labels, "\\", 1);
        cv_buf_put(&labels, p, 1);
    }
    cv_buf_puts(&labels, "\"");
    CV_ASSERT(labels.p && !labels.oom);
    t->m = cv_metrics_counter(a->o.reg, "cdcvec_texts_truncated_total",
                              "Texts longer than the model reads, embedded from their first max_seq tokens "
                              "only (the rest is invisible to search): enable chunking.",
                              labels.p);
    t->m_dead =
        cv_metrics_counter(a->o.reg, "cdcvec_table_dead_letters_total",
                           "Changes of the table that could not be applied (dead letters).", labels.p);
    static const double lat_b[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
    t->m_lat = cv_metrics_histogram(a->o.reg, "cdcvec_table_commit_to_searchable_seconds",
                                    "From the source commit to the store commit of the table's vectors.",
                                    labels.p, lat_b, 12);
    free(labels.p);
    t->next = o->tables;
    o->tables = a->cur = t;
    pthread_mutex_unlock(&tables_mu);
}

/* Counts the text when the model reads only its beginning, and says so once per table. */
static void check_truncated(cv_apply *a, const char *text, size_t len) {
    if (!a->o.tok || a->o.max_seq < 2) return;
    if (!a->tok_ids) CV_ASSERT(a->tok_ids = malloc(sizeof(int32_t) * ((size_t)a->o.max_seq + 1)));
    /* one id over the limit is enough to know: the scan stops there */
    if (cv_tok_encode(a->o.tok, text, len, a->tok_ids, a->o.max_seq + 1) <= a->o.max_seq) return;
    if (!a->cur) cv_apply_set_table(a, a->o.table ? a->o.table : "");
    cv_metric_add(a->cur->m, 1);
    if (a->cur->logged) return;
    a->cur->logged = 1;
    long n = -1; /* the whole count ([CLS] and [SEP] included), once: len + 2 ids hold any text's */
    int32_t *ids = len < (size_t)1 << 28 ? malloc(sizeof(int32_t) * (len + 2)) : NULL;
    if (ids) n = cv_tok_encode(a->o.tok, text, len, ids, (int)(len + 2));
    free(ids);
    cv_warn("event=text_truncated table=%s tokens=%ld max=%d fix=\"the model reads %d tokens of a text "
            "([CLS] and [SEP] included); the "
            "rest is invisible to search. Enable chunking: --chunk-max-tokens (and --chunk-overlap) / chunk: "
            "{max_tokens, overlap} in the pipeline file\" note=\"logged once per table; "
            "cdcvec_texts_truncated_total counts them\"",
            a->cur->name, n, a->o.max_seq, a->o.max_seq);
}

static void sha256(const char *s, size_t n, uint8_t out[32]) {
    unsigned int len = 32;
    EVP_Digest(s, n, out, &len, EVP_sha256(), NULL);
}

/* ---- collapse ---------------------------------------------------------------------------- */

static char *key_join(char **key) {
    cv_buf b = {0};
    for (int k = 0; key[k]; k++) {
        cv_buf_puts(&b, key[k]);
        cv_buf_put(&b, "\x1f", 1);
    }
    if (!b.p) b.p = strdup("");
    CV_ASSERT(b.p && !b.oom);
    return b.p;
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
    CV_ASSERT(slot && kj);
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

/* ---- embedding through the asynchronous client -------------------------------------------- */

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

/* Starts embedding texts[from .. from+m) into vec rows from.. */
static cv_err embed_start(cv_apply *a, const char **texts, int m, float *vec, int from) {
    size_t lens[EMBED_CHUNK];
    for (int k = 0; k < m; k++)
        lens[k] = strlen(texts[from + k]);
    embed_call *c = &a->ec;
    pthread_mutex_lock(&c->mu);
    c->busy = 1;
    c->err = CV_OK;
    c->msg[0] = 0;
    c->dst = vec + (size_t)from * a->o.dim;
    c->dim = a->o.dim;
    pthread_mutex_unlock(&c->mu);
    cv_err e = cv_client_embed_async(a->o.client, texts + from, lens, m, embed_done, c);
    if (e) {
        pthread_mutex_lock(&c->mu);
        c->busy = 0;
        c->err = e;
        snprintf(c->msg, sizeof c->msg, "%s", cv_strerror(e));
        pthread_mutex_unlock(&c->mu);
    }
    return CV_OK; /* the outcome is read by embed_wait */
}

/* Waits for the call in flight; its error (and message in msg). */
static cv_err embed_wait(cv_apply *a, char *msg, size_t len) {
    embed_call *c = &a->ec;
    pthread_mutex_lock(&c->mu);
    while (c->busy)
        pthread_cond_wait(&c->cv, &c->mu);
    cv_err e = c->err;
    if (msg) snprintf(msg, len, "%s", c->msg);
    pthread_mutex_unlock(&c->mu);
    return e;
}

/* Refusals that concern the texts themselves (too long, invalid): isolate them. */
static int embed_refused(cv_err e) {
    return e == CV_ERR_ARG || e == CV_ERR_FORMAT || e == CV_ERR_UNSUPPORTED || e == CV_ERR_MISMATCH;
}

cv_err cv_apply_embed1(cv_apply *a, const char *text, float *vec) {
    if (!a->o.client) return CV_ERR_UNSUPPORTED;
    const char *t[1] = {text};
    size_t len[1] = {strlen(text)};
    char msg[256] = "";
    int dim = 0;
    /* a search: the model's query prompt */
    cv_err e = cv_client_embed_query(a->o.client, t, len, 1, vec, a->o.dim, &dim, msg, sizeof msg);
    if (!e && dim != a->o.dim)
        e = CV_ERR_FORMAT, snprintf(msg, sizeof msg, "dimension %d, expected %d", dim, a->o.dim);
    if (e) cv_error("event=embed_failed error=\"%s: %s\"", cv_strerror(e), msg);
    return e;
}

/* ---- one step of a batch ------------------------------------------------------------------ */

typedef struct {
    cv_buf key;   /* the key as one line */
    char *reason; /* owned */
} dead_rec;

typedef struct {
    dead_rec *v;
    int n, cap;
} dead_list;

static void dead_add(dead_list *d, char **key, const char *reason) {
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 16;
        d->v = realloc(d->v, sizeof *d->v * (size_t)d->cap);
        CV_ASSERT(d->v);
    }
    dead_rec *r = &d->v[d->n++];
    memset(r, 0, sizeof *r);
    int nk = 0;
    while (key[nk])
        nk++;
    cv_key_format((const char *const *)key, nk, &r->key);
    r->reason = strdup(reason);
}

static cv_err delete_keys(cv_apply *a, cv_change **c, int n) {
    if (n == 0) return CV_OK;
    const char ***keys = malloc(sizeof(char **) * (size_t)n);
    CV_ASSERT(keys);
    for (int i = 0; i < n; i++)
        keys[i] = (const char **)c[i]->key;
    cv_err e = cv_sink_delete(a->o.sink, (const char *const *const *)keys, n);
    free(keys);
    return e;
}

/* One step's changes and what is decided for them (apply_step). */
typedef struct step {
    cv_apply *a;
    uint64_t position;
    int force;
    dead_list *dead;
    cv_change **up; /* changes that may keep a vector */
    int nu;
    int *found;          /* per up[i]: the store holds the key, with text hash hash[i] */
    uint8_t (*hash)[32]; /* per up[i] */
    const char **texts;  /* to embed: texts[k] of change embc[k], written as row emb[k] */
    cv_change **embc;
    cv_sink_row *emb, *rows, *pre; /* to embed; payload only; embedded upstream */
    cv_change **gone;              /* no vector any more */
    int nt, nr, npre, ng;
    float *vec;   /* nt vectors, emb[k].vec */
    int cap_t;    /* room in texts, embc, emb (chunks: more than one per change) */
    int cap_pre;  /* room in pre (chunks embedded upstream: more than one per change) */
    int nr_kept;  /* rows[] entries for chunked texts' kept chunks (not skipped rows) */
    void **owned; /* chunk texts and chunk lists, freed with the step */
    int nowned, cap_owned;
} step;

static void own(step *s, void *p) {
    if (s->nowned == s->cap_owned) {
        s->cap_owned = s->cap_owned ? 2 * s->cap_owned : 16;
        s->owned = realloc(s->owned, sizeof(void *) * (size_t)s->cap_owned);
        CV_ASSERT(s->owned);
    }
    s->owned[s->nowned++] = p;
}

/* Queues text for embedding as row r of change c. */
static void add_embed(step *s, cv_change *c, const cv_sink_row *r, const char *text) {
    if (s->nt == s->cap_t) {
        s->cap_t *= 2;
        s->texts = realloc(s->texts, sizeof(char *) * (size_t)s->cap_t);
        s->embc = realloc(s->embc, sizeof(cv_change *) * (size_t)s->cap_t);
        s->emb = realloc(s->emb, sizeof(cv_sink_row) * (size_t)s->cap_t);
        CV_ASSERT(s->texts && s->embc && s->emb);
    }
    s->embc[s->nt] = c;
    s->emb[s->nt] = *r;
    s->texts[s->nt++] = text;
}

cv_err cv_apply_chunks(cv_apply *a, const char *text, cv_chunk **out, int *n) {
    if (a->o.chunk.max_tokens <= 0 || !a->o.tok) return CV_ERR_UNSUPPORTED;
    cv_err e = cv_chunk_text(a->o.tok, &a->o.chunk, text, strlen(text), out, n);
    if (!e && *n == 0) { /* the empty text: one chunk, as it is embedded without chunking */
        *out = calloc(1, sizeof **out);
        CV_ASSERT(*out);
        sha256(text, 0, (*out)->hash);
        *n = 1;
    }
    return e;
}

/* Queues row r, embedded upstream, for writing. */
static void add_pre(step *s, const cv_sink_row *r) {
    if (s->npre == s->cap_pre) {
        s->cap_pre *= 2;
        s->pre = realloc(s->pre, sizeof(cv_sink_row) * (size_t)s->cap_pre);
        CV_ASSERT(s->pre);
    }
    s->pre[s->npre++] = *r;
}

/* Change up[i], its text changed, with its chunks embedded upstream (a Kafka worker): as
 * decide_chunks, with the vectors the change carries for the chunks the store lacks. */
static cv_err decide_chunks_pre(step *s, int i, const cv_sink_row *r0) {
    cv_apply *a = s->a;
    cv_change *c = s->up[i];
    int n = c->nchunks;
    cv_chunk *k = calloc((size_t)n, sizeof *k);
    int *from = malloc(sizeof(int) * (size_t)n);
    long *off = malloc(sizeof(long) * (size_t)n), *clen = malloc(sizeof(long) * (size_t)n);
    CV_ASSERT(k && from && off && clen);
    for (int j = 0; j < n; j++) {
        memcpy(k[j].hash, c->chunks[j].hash, 32);
        from[j] = -1, off[j] = c->chunks[j].char_off, clen[j] = c->chunks[j].char_len;
    }
    uint8_t(*stored)[32] = NULL;
    int m = 0, kept = 0;
    cv_err e = CV_OK;
    if (s->found[i] && !s->force)
        e = cv_sink_chunk_hashes(a->o.sink, (const char *const *)c->key, &stored, &m);
    if (!e && m) kept = n - cv_chunk_match(k, n, (const uint8_t(*)[32])stored, m, from);
    if (!e && s->found[i])
        e = cv_sink_chunks_set(a->o.sink, (const char *const *)c->key, n, from, off, clen, s->hash[i]);
    for (int j = 0; !e && j < n; j++) {
        if (from[j] >= 0) continue;
        cv_sink_row r = *r0;
        r.vec = c->chunks[j].vec;
        r.chunk = j, r.chunk_hash = c->chunks[j].hash, r.char_off = off[j], r.char_len = clen[j],
        r.nchunks = n;
        add_pre(s, &r);
    }
    if (!e && kept) { /* the kept chunks take the change's payload */
        cv_sink_row r = *r0;
        r.hash = NULL;
        s->rows[s->nr++] = r;
        s->nr_kept++;
    }
    cv_metric_add(a->m.chunks_embedded, e ? 0 : n - kept);
    cv_metric_add(a->m.chunks_kept, e ? 0 : kept);
    free(k), free(stored), free(from), free(off), free(clen);
    return e;
}

/* The text of change up[i] (hash h, changed) as chunks: the chunks whose hash the store holds
 * for the key keep their vectors (renumbered), the others are queued for embedding, every other
 * stored chunk of the key goes; the payload of the kept chunks follows. */
static cv_err decide_chunks(step *s, int i, const cv_sink_row *r0) {
    cv_apply *a = s->a;
    cv_change *c = s->up[i];
    cv_chunk *k;
    int n;
    cv_err e = cv_apply_chunks(a, c->text, &k, &n);
    if (e) return e;
    own(s, k);
    int *from = malloc(sizeof(int) * (size_t)n);
    long *off = malloc(sizeof(long) * (size_t)n), *clen = malloc(sizeof(long) * (size_t)n);
    CV_ASSERT(from && off && clen);
    uint8_t(*stored)[32] = NULL;
    int m = 0, kept = 0;
    if (s->found[i] && !s->force)
        e = cv_sink_chunk_hashes(a->o.sink, (const char *const *)c->key, &stored, &m);
    for (int j = 0; j < n; j++)
        from[j] = -1, off[j] = (long)k[j].char_off, clen[j] = (long)k[j].char_len;
    if (!e && m) kept = n - cv_chunk_match(k, n, (const uint8_t(*)[32])stored, m, from);
    if (!e && s->found[i])
        e = cv_sink_chunks_set(a->o.sink, (const char *const *)c->key, n, from, off, clen, s->hash[i]);
    for (int j = 0; !e && j < n; j++) {
        if (from[j] >= 0) continue;
        char *t = malloc(k[j].len + 1);
        CV_ASSERT(t);
        memcpy(t, c->text + k[j].off, k[j].len);
        t[k[j].len] = 0;
        own(s, t);
        cv_sink_row r = *r0;
        r.chunk = j, r.chunk_hash = k[j].hash, r.char_off = off[j], r.char_len = clen[j], r.nchunks = n;
        add_embed(s, c, &r, t);
    }
    if (!e && kept) { /* the kept chunks take the change's payload */
        cv_sink_row r = *r0;
        r.hash = NULL;
        s->rows[s->nr++] = r;
        s->nr_kept++;
    }
    cv_metric_add(a->m.chunks_embedded, e ? 0 : n - kept);
    cv_metric_add(a->m.chunks_kept, e ? 0 : kept);
    free(stored), free(from), free(off), free(clen);
    return e;
}

/* chg[0..n) into the changes that lose their vector (del) and the others (s->up); returns nd. */
static int step_sort(step *s, cv_change *chg, int n, cv_change **del) {
    int nd = 0;
    for (int i = 0; i < n; i++) {
        cv_change *c = &chg[i];
        if (c->fail) { /* recorded, and its (stale) vector removed */
            dead_add(s->dead, c->key, c->fail);
            del[nd++] = c;
        } else if (c->del || (c->text_state == CV_TEXT_NULL && !c->text_fetch)) {
            del[nd++] = c; /* a NULL text has no vector: documented */
        } else {
            s->up[s->nu++] = c;
        }
    }
    return nd;
}

/* The stored hashes (after this step's deletes), then the texts read from the source where a
 * change did not carry its text and the stored vector cannot be kept. */
static cv_err step_lookup(step *s) {
    cv_apply *a = s->a;
    int nu = s->nu, nf = 0;
    cv_err e = CV_OK;
    const char ***keys = calloc((size_t)nu + 1, sizeof(char **));
    cv_change **fetch = calloc((size_t)nu + 1, sizeof *fetch);
    CV_ASSERT(keys && fetch);
    for (int i = 0; i < nu; i++)
        keys[i] = (const char **)s->up[i]->key;
    if (nu) e = cv_sink_hashes(a->o.sink, (const char *const *const *)keys, nu, s->found, s->hash);
    for (int i = 0; !e && i < nu; i++) {
        cv_change *c = s->up[i];
        if (!(c->text_fetch || (c->text_state == CV_TEXT_UNKNOWN && (!s->found[i] || s->force)))) continue;
        if (a->o.fetch) {
            fetch[nf++] = c;
        } else { /* a Kafka sink has no source to read the text from */
            dead_add(s->dead, c->key,
                     "the text is unknown (an unchanged TOASTed value, or a template column missing from the "
                     "row image) and the store has no vector for this key to keep; run cdcvec backfill");
            c->text_state = CV_TEXT_NULL; /* nothing stale stays */
        }
    }
    if (!e && nf) e = a->o.fetch(a->o.fetch_arg, fetch, nf);
    for (int k = 0; !e && k < nf; k++)
        if (fetch[k]->fail) { /* the row read cannot be applied (a value that is not UTF-8) */
            dead_add(s->dead, fetch[k]->key, fetch[k]->fail);
            fetch[k]->text_state = CV_TEXT_NULL, fetch[k]->text_fetch = 0; /* its stale vector goes */
        }
    free(keys), free(fetch);
    return e;
}

/* Decides each of s->up: vector gone (text NULL now, or too long), payload only, or embed. */
static cv_err step_decide(step *s) {
    cv_apply *a = s->a;
    for (int i = 0; i < s->nu; i++) {
        cv_change *c = s->up[i];
        if (c->text_state == CV_TEXT_NULL) {
            s->gone[s->ng++] = c;
            continue;
        }
        cv_sink_row r = {.key = (const char *const *)c->key, .payload = c->payload, .keep = c->keep};
        if (c->text_state == CV_TEXT_KNOWN && a->o.max_text_bytes && strlen(c->text) > a->o.max_text_bytes) {
            char why[200];
            snprintf(why, sizeof why,
                     "the text is %zu bytes, over --max-text-bytes %zu (the embedding server's limit)",
                     strlen(c->text), a->o.max_text_bytes);
            dead_add(s->dead, c->key, why);
            s->gone[s->ng++] = c; /* its stale vector goes */
            continue;
        }
        if (c->nchunks) { /* chunks embedded upstream */
            if (!s->found[i] || s->force || memcmp(c->vec_hash, s->hash[i], 32) != 0) {
                memcpy(s->hash[i], c->vec_hash, 32);
                r.hash = s->hash[i];
                cv_err e = decide_chunks_pre(s, i, &r);
                if (e) return e;
            } else {
                s->rows[s->nr++] = r;
            }
            continue;
        }
        if (c->vec) { /* embedded upstream */
            if (!s->found[i] || s->force || memcmp(c->vec_hash, s->hash[i], 32) != 0) {
                r.vec = c->vec;
                r.hash = c->vec_hash;
                add_pre(s, &r);
            } else {
                s->rows[s->nr++] = r;
            }
            continue;
        }
        if (c->text_state == CV_TEXT_KNOWN) {
            uint8_t h[32];
            sha256(c->text, strlen(c->text), h);
            if (!s->found[i] || s->force || memcmp(h, s->hash[i], 32) != 0) {
                if (!a->o.client) { /* a Kafka sink stage: it embeds nothing */
                    dead_add(s->dead, c->key,
                             "the change carries a text and no vector, and this process has no model: read "
                             "a worker's embeddings topic (cdcvec worker), not the change topic");
                    s->gone[s->ng++] = c; /* its stale vector goes */
                    continue;
                }
                memcpy(s->hash[i], h, 32);
                r.hash = s->hash[i];
                if (a->o.chunk.max_tokens > 0) {
                    cv_err e = decide_chunks(s, i, &r);
                    if (e) return e;
                    continue;
                }
                check_truncated(a, c->text, strlen(c->text));
                add_embed(s, c, &r, c->text);
                continue;
            }
        }
        if (s->found[i]) s->rows[s->nr++] = r; /* same text (or an unchanged TOASTed one): payload only */
    }
    return CV_OK;
}

/* Starts embedding the chunk of texts from `from`. */
static void embed_next(step *s, int from) {
    embed_start(s->a, s->texts, s->nt - from < EMBED_CHUNK ? s->nt - from : EMBED_CHUNK, s->vec, from);
}

/* The chunk [c0, c0 + m) was refused as a whole: its texts one at a time; the refused ones
 * become dead letters (their stale vectors deleted), the others are written. */
static cv_err embed_one_by_one(step *s, int c0, int m, int *nembedded) {
    cv_apply *a = s->a;
    cv_err e = CV_OK;
    char msg[256];
    cv_change **bad = calloc((size_t)m, sizeof *bad);
    int nb = 0, keep = 0;
    CV_ASSERT(bad);
    for (int k = c0; k < c0 + m && !e; k++) {
        embed_start(a, s->texts, 1, s->vec, k);
        cv_err e1 = embed_wait(a, msg, sizeof msg);
        if (!e1) {
            s->emb[c0 + keep] = s->emb[k];
            s->emb[c0 + keep].vec = s->vec + (size_t)k * a->o.dim;
            keep++;
        } else if (embed_refused(e1)) {
            char why[400];
            snprintf(why, sizeof why, "the embedding service refused the text (%zu bytes): %s: %s",
                     strlen(s->texts[k]), cv_strerror(e1), msg);
            dead_add(s->dead, s->embc[k]->key, why);
            bad[nb++] = s->embc[k];
        } else {
            e = e1;
        }
    }
    if (!e) e = delete_keys(a, bad, nb);
    free(bad);
    if (!e && c0 + m < s->nt) embed_next(s, c0 + m);
    if (!e && keep) e = cv_sink_put(a->o.sink, s->emb + c0, keep, s->position);
    *nembedded += keep;
    return e;
}

/* Embeds chunk by chunk, writing chunk k while chunk k+1 is embedded. */
static cv_err step_embed(step *s, int *nembedded) {
    cv_apply *a = s->a;
    cv_err e = CV_OK;
    int nt = s->nt;
    s->vec = malloc(sizeof(float) * (size_t)a->o.dim * (size_t)(nt ? nt : 1));
    CV_ASSERT(s->vec);
    for (int i = 0; i < nt; i++)
        s->emb[i].vec = s->vec + (size_t)i * a->o.dim;
    if (nt) embed_next(s, 0);
    for (int c0 = 0; !e && c0 < nt; c0 += EMBED_CHUNK) {
        int m = nt - c0 < EMBED_CHUNK ? nt - c0 : EMBED_CHUNK;
        char msg[256];
        cv_err ee = embed_wait(a, msg, sizeof msg);
        if (ee && embed_refused(ee)) { /* find the texts refused, one at a time; the others go on */
            e = embed_one_by_one(s, c0, m, nembedded);
            continue;
        }
        if (ee) {
            cv_error("event=embed_failed table=%s error=\"%s: %s\"", a->o.table, cv_strerror(ee), msg);
            e = ee == CV_ERR_BUSY || ee == CV_ERR_SHUTDOWN ? ee : CV_ERR_TIMEOUT;
            break;
        }
        if (c0 + m < nt) embed_next(s, c0 + m);
        e = cv_sink_put(a->o.sink, s->emb + c0, m, s->position);
        *nembedded += m;
    }
    return e;
}

/* Applies chg[0..n) (collapsed, in order, within an open store transaction). */
static cv_err apply_step(cv_apply *a, cv_change *chg, int n, uint64_t position, int force, dead_list *dead,
                         int *nembedded, int *nskipped) {
    step s = {.a = a, .position = position, .force = force, .dead = dead};
    cv_change **del = calloc((size_t)n + 1, sizeof *del);
    s.up = calloc((size_t)n + 1, sizeof *s.up);
    CV_ASSERT(del && s.up);
    cv_err e = delete_keys(a, del, step_sort(&s, chg, n, del));
    size_t nu1 = (size_t)s.nu + 1;
    s.found = calloc(nu1, sizeof(int));
    s.hash = calloc(nu1, 32);
    s.texts = calloc(nu1, sizeof(char *));
    s.rows = calloc(nu1, sizeof *s.rows), s.emb = calloc(nu1, sizeof *s.emb),
    s.pre = calloc(nu1, sizeof *s.pre);
    s.gone = calloc(nu1, sizeof *s.gone), s.embc = calloc(nu1, sizeof *s.embc);
    CV_ASSERT(s.found && s.hash && s.texts && s.rows && s.emb && s.pre && s.gone && s.embc);
    if (!e) e = step_lookup(&s);
    s.cap_t = s.cap_pre = (int)nu1;
    if (!e) e = step_decide(&s);
    if (!e) e = delete_keys(a, s.gone, s.ng);
    if (!e && s.nr) e = cv_sink_put(a->o.sink, s.rows, s.nr, position);
    *nskipped += s.nr - s.nr_kept;
    if (!e && s.npre) e = cv_sink_put(a->o.sink, s.pre, s.npre, position);
    *nembedded += s.npre;
    if (!e) e = step_embed(&s, nembedded);
    embed_wait(a, NULL, 0); /* never leave a call writing into freed memory */
    for (int i = 0; i < s.nowned; i++)
        free(s.owned[i]);
    free(s.owned);
    free(s.vec), free(s.texts), free(s.rows), free(s.emb), free(s.pre), free(s.gone), free(s.embc);
    free(s.found), free(s.hash), free(del), free(s.up);
    return e;
}

/* Where the next step must start: a delete after an upsert of a differently spelled key, when
 * keys do not compare exactly by their text. */
static int step_end(const cv_change *chg, int from, int n, int key_exact) {
    if (key_exact) return n;
    int seen_up = 0;
    for (int i = from; i < n; i++) {
        int is_del = chg[i].del || chg[i].fail;
        if (is_del && seen_up) return i;
        if (!is_del) seen_up = 1;
    }
    return n;
}

/* The store refused the batch's data (CV_ERR_FORMAT: a row it cannot take): the changes again,
 * one transaction each, recorded at the position the store had (so a crash midway replays the
 * whole batch), and the ones the store refuses alone become dead letters with its reason, their
 * stale vectors deleted; then the dead letters and the batch's position, together. Retriable
 * failures return as they are (the caller replays the batch). */
static cv_err isolate(cv_apply *a, cv_change *chg, int n, int truncate, uint64_t position, int force,
                      dead_list *dead, int *nemb, int *nskip) {
    uint64_t pos0 = 0, bpos;
    int done;
    cv_err e = cv_sink_state(a->o.sink, &pos0, &done, &bpos);
    if (e) return e;
    cv_warn("event=batch_refused table=%s changes=%d note=\"the store refused the batch's data: its changes "
            "go one at a time to find the rows it cannot take\"",
            a->o.table, n);
    if (truncate && !(e = cv_sink_begin(a->o.sink, 1))) e = cv_sink_commit(a->o.sink, pos0);
    for (int i = 0; !e && i < n; i++) {
        dead_list one = {0};
        e = cv_sink_begin(a->o.sink, 0);
        if (!e) e = apply_step(a, &chg[i], 1, position, force, &one, nemb, nskip);
        for (int k = 0; !e && k < one.n; k++)
            dead_add(dead, chg[i].key, one.v[k].reason);
        for (int k = 0; k < one.n; k++)
            free(one.v[k].key.p), free(one.v[k].reason);
        free(one.v);
        if (!e)
            e = cv_sink_commit(a->o.sink, pos0);
        else
            cv_sink_rollback(a->o.sink);
        if (e != CV_ERR_FORMAT) continue;
        const char *kind, *fix;
        cv_sink_last_fault(a->o.sink, &kind, &fix);
        cv_buf why = {0};
        cv_buf_printf(&why, "the store refused the row: %s", fix ? fix : "its data (see the log)");
        dead_add(dead, chg[i].key, why.p);
        free(why.p);
        const char *const *k1[1] = {(const char *const *)chg[i].key};
        if (!(e = cv_sink_begin(a->o.sink, 0)) && !(e = cv_sink_delete(a->o.sink, k1, 1)))
            e = cv_sink_commit(a->o.sink, pos0); /* its stale vector goes */
        else if (e)
            cv_sink_rollback(a->o.sink);
    }
    if (!e) e = cv_sink_begin(a->o.sink, 0);
    if (!e && dead->n) {
        cv_sink_dead *d = calloc((size_t)dead->n, sizeof *d);
        CV_ASSERT(d);
        for (int i = 0; i < dead->n; i++) {
            d[i] = (cv_sink_dead){dead->v[i].key.p ? dead->v[i].key.p : "", dead->v[i].reason};
            cv_warn("event=dead_letter table=%s key=\"%s\" reason=\"%s\"", a->o.table, d[i].key, d[i].reason);
        }
        e = cv_sink_dead_put(a->o.sink, d, dead->n, position);
        free(d);
    }
    if (!e)
        e = cv_sink_commit(a->o.sink, position);
    else
        cv_sink_rollback(a->o.sink);
    return e;
}

cv_err cv_apply_batch(cv_apply *a, cv_change *chg, int n, int truncate, uint64_t position, int force,
                      double commit_unix) {
    const double t0 = cv_wall_now();
    n = collapse(chg, n);
    dead_list dead = {0};
    int nemb = 0, nskip = 0;
    cv_err e = cv_sink_begin(a->o.sink, truncate);
    for (int from = 0; !e && from < n;) {
        int to = step_end(chg, from, n, a->o.key_exact);
        e = apply_step(a, chg + from, to - from, position, force, &dead, &nemb, &nskip);
        from = to;
    }
    if (!e && dead.n && a->o.on_error_stop) {
        cv_error("event=change_failed table=%s key=\"%s\" reason=\"%s\" note=\"--on-error stop\"", a->o.table,
                 dead.v[0].key.p ? dead.v[0].key.p : "", dead.v[0].reason);
        cv_sink_rollback(a->o.sink);
        e = CV_ERR_ARG;
    } else if (!e && dead.n) {
        cv_sink_dead *d = calloc((size_t)dead.n, sizeof *d);
        CV_ASSERT(d);
        for (int i = 0; i < dead.n; i++) {
            d[i] = (cv_sink_dead){dead.v[i].key.p ? dead.v[i].key.p : "", dead.v[i].reason};
            cv_warn("event=dead_letter table=%s key=\"%s\" reason=\"%s\"", a->o.table, d[i].key, d[i].reason);
        }
        e = cv_sink_dead_put(a->o.sink, d, dead.n, position);
        free(d);
    }
    if (!e)
        e = cv_sink_commit(a->o.sink, position);
    else
        cv_sink_rollback(a->o.sink);
    if (e == CV_ERR_FORMAT && !a->o.on_error_stop && n > 0) { /* one row the store cannot take */
        for (int i = 0; i < dead.n; i++)
            free(dead.v[i].key.p), free(dead.v[i].reason);
        dead.n = 0, nemb = 0, nskip = 0;
        e = isolate(a, chg, n, truncate, position, force, &dead, &nemb, &nskip);
    }
    if (!e) {
        cv_metric_add(a->m.batches, 1);
        cv_metric_add(a->m.embedded, nemb);
        cv_metric_add(a->m.skipped, nskip);
        cv_metric_add(a->m.dead, dead.n);
        if (commit_unix > 0) cv_metric_observe(a->m.latency, cv_wall_now() - commit_unix);
        if (a->cur) {
            cv_metric_add(a->cur->m_dead, dead.n);
            if (commit_unix > 0) cv_metric_observe(a->cur->m_lat, cv_wall_now() - commit_unix);
        }
        char lsn[24];
        cv_lsn_format(position, lsn);
        cv_debug(
            "event=batch_applied table=%s position=%s changes=%d embedded=%d skipped=%d dead=%d truncate=%d "
            "total_ms=%.1f",
            a->o.table, lsn, n, nemb, nskip, dead.n, truncate, (cv_wall_now() - t0) * 1e3);
    }
    for (int i = 0; i < dead.n; i++)
        free(dead.v[i].key.p), free(dead.v[i].reason);
    free(dead.v);
    for (int i = 0; i < n; i++)
        cv_change_free(&chg[i]);
    return e;
}
