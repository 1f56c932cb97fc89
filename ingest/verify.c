/* verify.c: `cdcvec verify [--repair 1]`: does the store hold what the source has?
 *
 * Two walks, each in pages of CV_VERIFY_PAGE rows, so memory is bounded whatever the size:
 *   1. the source in primary-key order (keyset pages, cv_read_page): each page's keys are read
 *      back from the store (cv_sink_fetch: text hash and payload) and compared: a row with a text
 *      but no vector is *missing*, a stored hash that is not SHA-256 of the text is *stale*, a
 *      payload that differs from the row's columns (compared as JSON) is *payload drift*, and a
 *      vector for a row whose text is NULL is an *orphan*;
 *      on a chunked table (--chunk-max-tokens), a row whose text hash is right has its chunks
 *      compared by number with its text's (cv_apply_chunks, cv_sink_chunk_hashes): a chunk
 *      missing, *stale* (another hash) or past the end (*orphan*) is a difference, repaired by
 *      embedding the row again (force);
 *   2. the store in its own order (cv_sink_scan: pgvector's primary key, Qdrant's point ids,
 *      Upstash's range): each page's keys are looked up in the source; a key the source does
 *      not have is an *orphan*.
 * With --repair 1 the differing rows go through the apply stage as the backfill sends them
 * (its hash check re-embeds stale and missing rows and rewrites drifted payloads alone) and
 * orphans as deletes, at the position the store recorded (never moved back). Deleting while
 * scanning can shift a store's cursor (Upstash), so after a pass that deleted anything the
 * store walk runs again until it finds nothing. A repair refuses to run beside a sync or a
 * Kafka sink stage of the same table and store (their writer lock, wlock.c): it would race them. The dead
 * letters of the keys a repair fixed are removed (dead_letters.c; those the repair itself wrote stay).
 * Output: one line per difference (the first --show of each kind, all with --show 0; a line
 * `not_shown kind=... count=N` says how many more each kind had), a summary line on stdout, counters
 * cdcvec_verify_differences_total{kind}. Exit 0: none; 3: differences were found (repaired with --repair); 1:
 * an error. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_jnum.h"
#include "../pg/cv_keytext.h"
#include "../common/cv_log.h"
#include "sync_impl.h"

#define CV_VERIFY_PAGE 500

enum { D_MISSING, D_STALE, D_DRIFT, D_ORPHAN, D_MCHUNK, D_SCHUNK, D_OCHUNK, D_KINDS };
static const char *const KIND[D_KINDS] = {"missing",       "stale",       "payload_drift", "orphan",
                                          "missing_chunk", "stale_chunk", "orphan_chunk"};

typedef struct {
    cv_sync *s;
    int repair;
    long show; /* lines printed per kind; 0: all */
    long found[D_KINDS], source_rows, store_rows;
    cv_metric *m[D_KINDS];
    char **page; /* store walk: this page's key texts */
    int npage;
    cv_dl dl;       /* --repair: the dead letters of the keys repaired are removed */
    long cleared;   /* dead letters removed */
    int no_metrics; /* a migration's check (cv_verify_session): counted in its own line, not here */
} verify;

/* After a repair of keys kt[0..n): their dead letters (older than this run) are resolved. */
static cv_err clear_dead(verify *v, char *const *kt, int n) {
    long c = 0;
    cv_err e = cv_dl_clear_keys(v->s, &v->dl, kt, n, &c);
    v->cleared += c;
    return e;
}

/* Counts and reports one difference. */
static void diff(verify *v, int kind, const char *keytext) {
    if (v->show == 0 || v->found[kind] < v->show) printf("%s key=%s\n", KIND[kind], keytext);
    v->found[kind]++;
    cv_metric_add(v->m[kind], 1);
}

/* Whether the source row's payload (JSON object text), in the form the store keeps it
 * (cv_sink_payload_stored: remote stores keep numbers a double cannot hold as their text), and
 * the stored one hold the same values, numbers compared exactly by their decimal value. */
static int same_payload(const cv_sink *sink, const char *src, const char *stored) {
    char *a = cv_sink_payload_stored(sink, src);
    json_t *x = a ? cv_jnum_loads(a, 0, NULL) : NULL, *y = cv_jnum_loads(stored ? stored : "{}", 0, NULL);
    int eq = x && y && cv_jnum_equal(x, y);
    json_decref(x), json_decref(y);
    free(a);
    return eq;
}

/* Chunked tables: a row whose text hash is right, its stored chunks by number against the chunks
 * of its text (a chunk missing, one whose hash differs, one past the end); the first kind found,
 * or -1. */
static int chunk_diff(verify *v, cv_change *c, cv_err *e) {
    cv_chunk *k = NULL;
    int n = 0, m = 0, kind = -1;
    if (cv_apply_chunks(v->s->rt.apply, c->text, &k, &n)) return -1; /* not chunked */
    uint8_t(*st)[32] = NULL;
    static const uint8_t zero[32];
    *e = cv_sink_chunk_hashes(v->s->sink, (const char *const *)c->key, &st, &m);
    for (int j = 0; !*e && kind < 0 && j < (n > m ? n : m); j++) {
        int have = j < m && memcmp(st[j], zero, 32) != 0;
        kind = j >= n                         ? (have ? D_OCHUNK : -1)
               : !have                        ? D_MCHUNK
               : memcmp(st[j], k[j].hash, 32) ? D_SCHUNK
                                              : -1;
    }
    free(k), free(st);
    return kind;
}

/* Walk 1: a page of source rows against the store; the differing ones repaired. */
static cv_err check_page(verify *v, cv_change *chg, int n, uint64_t pos) {
    cv_sync *s = v->s;
    const char **keys[CV_VERIFY_PAGE] = {0};
    int found[CV_VERIFY_PAGE], bad[CV_VERIFY_PAGE];
    char *badkt[CV_VERIFY_PAGE];
    uint8_t hash[CV_VERIFY_PAGE][32];
    char *payload[CV_VERIFY_PAGE];
    for (int i = 0; i < n; i++)
        keys[i] = (const char **)chg[i].key;
    cv_err e = cv_sink_fetch(s->sink, (const char *const *const *)keys, n, found, hash, payload);
    int nbad = 0, force = 0;
    for (int i = 0; !e && i < n; i++) {
        cv_buf kt = {0};
        cv_key_format((const char *const *)chg[i].key, s->t.nkeys, &kt);
        int kind = -1;
        if (chg[i].text_state != CV_TEXT_KNOWN || chg[i].fail) {
            if (found[i]) kind = D_ORPHAN; /* no text: the row has no vector */
        } else if (!found[i]) {
            kind = D_MISSING;
        } else {
            uint8_t h[32];
            unsigned hl = 32;
            EVP_Digest(chg[i].text, strlen(chg[i].text), h, &hl, EVP_sha256(), NULL);
            if (memcmp(h, hash[i], 32) != 0)
                kind = D_STALE;
            else if (!same_payload(s->sink, chg[i].payload, payload[i]))
                kind = D_DRIFT;
            int ck = kind < 0 || kind == D_DRIFT ? chunk_diff(v, &chg[i], &e) : -1;
            if (ck >= 0) kind = ck, force = 1; /* the text hash is right: re-embedded by force */
        }
        if (kind >= 0) diff(v, kind, kt.p ? kt.p : "");
        bad[i] = kind >= 0;
        if (bad[i])
            badkt[nbad++] = kt.p ? kt.p : strdup("");
        else
            free(kt.p);
    }
    for (int i = 0; i < n; i++)
        free(payload[i]);
    if (!e && v->repair && nbad) { /* the differing rows, moved to the front, through the apply stage */
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (!bad[i]) continue;
            cv_change c = chg[m];
            chg[m++] = chg[i];
            chg[i] = c;
        }
        for (int i = m; i < n; i++)
            cv_change_free(&chg[i]);
        e = cv_sync_deliver(s, chg, m, 0, pos, force, 0);
        if (!e) e = clear_dead(v, badkt, nbad);
    } else {
        for (int i = 0; i < n; i++)
            cv_change_free(&chg[i]);
    }
    memset(chg, 0, sizeof *chg * (size_t)n);
    for (int i = 0; i < nbad; i++)
        free(badkt[i]);
    return e;
}

/* cv_sink_scan's callback: keeps the page's key texts. */
static void on_key(void *arg, const char *kt) {
    verify *v = arg;
    for (int i = 0; i < v->npage; i++) /* a key of several chunks: once a page */
        if (!strcmp(v->page[i], kt)) return;
    v->page[v->npage++] = strdup(kt);
}

/* Walk 2: which of the page's keys the source lacks (gone[i] = 1). */
static cv_err lookup_source(verify *v, char ***vals, int n, int *gone) {
    cv_sync *s = v->s;
    const cv_table *t = &s->t;
    cv_buf sql = {0}, cast = {0}, cols = {0}, match = {0};
    char **params = calloc((size_t)t->nkeys, sizeof(char *));
    CV_ASSERT(params);
    for (int k = 0; k < t->nkeys; k++) {
        cv_buf a = {0}, id = {0};
        cv_buf_put(&a, "{", 1);
        for (int i = 0; i < n; i++)
            cv_pg_array_elem(&a, vals[i][k], i == 0);
        cv_buf_put(&a, "}", 1);
        params[k] = a.p;
        cv_pg_ident(&id, t->keyname[k]);
        cv_buf_printf(&cast, "%s$%d::%s[]", k ? "," : "", k + 1, t->keytype[k]);
        cv_buf_printf(&cols, "%s%s", k ? "," : "", id.p);
        cv_buf_printf(&match, "%st.%s = u.%s", k ? " AND " : "", id.p, id.p);
        free(id.p);
    }
    cv_buf_printf(
        &sql,
        "SELECT u.ord FROM unnest(%s) WITH ORDINALITY AS u(%s, ord) WHERE NOT EXISTS (SELECT 1 FROM %s "
        "t WHERE %s)",
        cast.p, cols.p, t->qualified, match.p);
    PGresult *r = PQexecParams(s->src, sql.p, t->nkeys, NULL, (const char *const *)params, NULL, NULL, 0);
    cv_err e = CV_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        cv_pg_fault f;
        cv_pg_classify_result(s->src, r, &f);
        cv_pg_log_fault("verify_failed", "source_lookup", PQresultErrorField(r, PG_DIAG_SQLSTATE), &f,
                        PQresultErrorMessage(r));
        cv_sync_error(s, "source", &f);
        e = f.retriable ? CV_ERR_TIMEOUT : CV_ERR_UNSUPPORTED;
    }
    for (int i = 0; i < n; i++)
        gone[i] = 0;
    for (int row = 0; !e && row < PQntuples(r); row++) {
        long i = strtol(PQgetvalue(r, row, 0), NULL, 10) - 1;
        if (i >= 0 && i < n) gone[i] = 1;
    }
    PQclear(r);
    for (int k = 0; k < t->nkeys; k++)
        free(params[k]);
    free(params), free(sql.p), free(cast.p), free(cols.p), free(match.p);
    return e;
}

/* Walk 2, once over the store; *deleted: orphans deleted in this pass. */
static cv_err store_walk(verify *v, uint64_t pos, int count, long *deleted, volatile sig_atomic_t *stop) {
    cv_sync *s = v->s;
    cv_buf cursor = {0};
    char *page[CV_VERIFY_PAGE];
    int more = 1;
    cv_err e = CV_OK;
    *deleted = 0;
    while (!e && more) {
        if (stop && *stop) {
            e = CV_ERR_SHUTDOWN;
            break;
        }
        v->page = page, v->npage = 0;
        if ((e = cv_sink_scan(s->sink, &cursor, CV_VERIFY_PAGE, on_key, v, &more))) {
            e = cv_sync_batch_failed(s, e);
        }
        char **vals[CV_VERIFY_PAGE];
        int gone[CV_VERIFY_PAGE], nv = 0, ngone = 0;
        for (int i = 0; i < v->npage; i++) /* a key that does not parse cannot be in the source */
            if (cv_key_parse(page[i], s->t.nkeys, &vals[nv], NULL) == 0) page[nv] = page[i], nv++;
        if (!e && nv) e = lookup_source(v, vals, nv, gone);
        if (count) v->store_rows += v->npage;
        cv_change del[CV_VERIFY_PAGE];
        char *delkt[CV_VERIFY_PAGE];
        for (int i = 0; !e && i < nv; i++) {
            if (!gone[i]) continue;
            if (count) diff(v, D_ORPHAN, page[i]);
            delkt[ngone] = page[i];
            del[ngone++] = (cv_change){.del = 1, .key = vals[i]};
            vals[i] = NULL;
        }
        if (!e && v->repair && ngone) {
            e = cv_sync_deliver(s, del, ngone, 0, pos, 0, 0);
            if (!e) e = clear_dead(v, delkt, ngone);
            *deleted += ngone;
        } else {
            for (int i = 0; i < ngone; i++)
                cv_change_free(&del[i]);
        }
        for (int i = 0; i < nv; i++) {
            cv_key_free(vals[i]);
            free(page[i]);
        }
    }
    free(cursor.p);
    return e;
}

/* A repair writes: it takes the store table's writer lock (wlock.c) that a sync or a Kafka sink
 * stage of the table holds while it runs, and is refused while one does. */
static cv_err lock_store(cv_sync *s) {
    return cv_sync_writer_lock_for(s, "verify", "verify --repair", "(or verify without --repair)");
}

/* Both walks over s's open session, at the store's position pos. */
static cv_err walks(verify *v, uint64_t pos, volatile sig_atomic_t *stop) {
    cv_sync *s = v->s;
    cv_err e = CV_OK;
    for (int k = 0; k < D_KINDS && !v->no_metrics; k++) {
        cv_buf l = {0};
        cv_buf_printf(&l, "kind=\"%s\"", KIND[k]);
        v->m[k] =
            cv_metrics_counter(s->rt.reg, "cdcvec_verify_differences_total",
                               "Differences between the source and the store found by cdcvec verify.", l.p);
        free(l.p);
    }
    char **after = NULL;
    cv_change *chg = calloc(CV_VERIFY_PAGE, sizeof *chg);
    CV_ASSERT(chg);
    while (!e) { /* walk 1: the source, in key order */
        if (stop && *stop) {
            e = CV_ERR_SHUTDOWN;
            break;
        }
        int n = 0;
        cv_pg_fault f = {1, "connection", NULL};
        if ((e = cv_read_page(s->src, &s->t, after, CV_VERIFY_PAGE, chg, &n, &f))) {
            cv_sync_error(s, "source", &f);
            break;
        }
        if (n == 0) break;
        cv_key_free(after);
        after = calloc((size_t)s->t.nkeys + 1, sizeof(char *));
        CV_ASSERT(after);
        for (int k = 0; k < s->t.nkeys; k++)
            after[k] = strdup(chg[n - 1].key[k]);
        v->source_rows += n;
        e = check_page(v, chg, n, pos);
    }
    cv_key_free(after);
    free(chg);
    long deleted = 0;
    if (!e) e = store_walk(v, pos, 1, &deleted, stop);
    for (int pass = 0; !e && v->repair && deleted && pass < 10; pass++) /* a cursor the deletes shifted */
        e = store_walk(v, pos, 0, &deleted, stop);
    return e;
}

cv_err cv_verify_session(cv_sync *s, long show, volatile sig_atomic_t *stop, long *total, long *source_rows,
                         long *store_rows) {
    verify v = {.s = s, .show = show, .no_metrics = 1};
    uint64_t pos = 0, bpos;
    int done;
    cv_err e = cv_sink_state(s->sink, &pos, &done, &bpos);
    if (e) return cv_sync_batch_failed(s, e);
    if ((e = walks(&v, pos, stop))) return e;
    *total = 0;
    for (int k = 0; k < D_KINDS; k++)
        *total += v.found[k];
    *source_rows = v.source_rows;
    *store_rows = v.store_rows;
    fflush(stdout);
    return CV_OK;
}

cv_err cv_verify_sweep(cv_sync *s, PGconn *snap, uint64_t pos, volatile sig_atomic_t *stop, long *deleted) {
    verify v = {.s = s, .repair = 1, .no_metrics = 1};
    PGconn *own = s->src;
    s->src = snap;
    long d = 0;
    *deleted = 0;
    cv_err e = store_walk(&v, pos, 0, &d, stop);
    *deleted += d;
    for (int pass = 0; !e && d && pass < 10; pass++) { /* a cursor the deletes shifted */
        e = store_walk(&v, pos, 0, &d, stop);
        *deleted += d;
    }
    s->src = own;
    return e;
}

int cv_verify_run(const cv_sync_opts *o, int repair, long show, volatile sig_atomic_t *stop) {
    cv_sync s;
    verify v = {.s = &s, .repair = repair, .show = show};
    cv_err e = cv_sync_runtime_open(&s, o);
    if (!e) e = cv_sync_session_open(&s, 0);
    if (!e && repair) e = lock_store(&s);
    if (!e && repair) e = cv_dl_open(&s, &v.dl);
    uint64_t pos = 0, bpos;
    int done;
    if (!e && (e = cv_sink_state(s.sink, &pos, &done, &bpos))) e = cv_sync_batch_failed(&s, e);
    if (!e) e = walks(&v, pos, stop);
    long total = 0;
    for (int k = 0; k < D_KINDS; k++) {
        total += v.found[k];
        if (!e && show && v.found[k] > show)
            printf("not_shown kind=%s count=%ld note=\"--show 0 prints every one\"\n", KIND[k],
                   v.found[k] - show);
    }
    if (!e)
        printf(
            "verify table=%s store=%s source_rows=%ld store_rows=%ld missing=%ld stale=%ld payload_drift=%ld "
            "orphans=%ld differences=%ld%s\n",
            s.t.qualified, cv_sink_kind(s.sink_conninfo), v.source_rows, v.store_rows, v.found[D_MISSING],
            v.found[D_STALE], v.found[D_DRIFT], v.found[D_ORPHAN], total,
            repair ? (total ? " repaired=1" : " repaired=0") : "");
    if (!e && o->chunk_max_tokens > 0)
        printf("verify_chunks table=%s missing_chunks=%ld stale_chunks=%ld orphan_chunks=%ld\n",
               s.t.qualified, v.found[D_MCHUNK], v.found[D_SCHUNK], v.found[D_OCHUNK]);
    if (!e && v.cleared) printf("dead_letters_cleared table=%s count=%ld\n", s.t.qualified, v.cleared);
    fflush(stdout);
    if (e && s.fault.fix) cv_error("event=verify_stopped kind=%s fix=\"%s\"", s.fault.kind, s.fault.fix);
    cv_dl_close(&v.dl);
    cv_sync_runtime_close(&s);
    return e ? 1 : total ? 3 : 0;
}
