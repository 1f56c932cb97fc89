/* batch.c: one batch thread; the queue is a FIFO list under a mutex. A batch takes jobs
 * from the head while they fit the token budget (always at least one), once the queued
 * tokens reach the budget or the oldest job has waited `deadline`. */
#define _POSIX_C_SOURCE 200809L
#include "batch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"

struct cv_batcher {
    cv_minilm *m;
    long budget, max_queue;
    double deadline;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    cv_job *head, *tail;
    long queued_tokens;
    int running;   /* jobs in the batch being computed */
    int last_jobs; /* jobs in the previous batch */
    int closing;
    int32_t *ids, *offs; /* batch staging (grown) */
    long ids_cap, offs_cap;
    float *vec, *norms; /* norms: (nseq), only for batches with a raw job */
    long vec_cap, norms_cap;
    cv_metric *m_batches, *m_batch_texts, *m_batch_tokens, *m_batch_seconds, *m_errors;
};

cv_err cv_job_prepare(cv_job *j, const cv_minilm *m, cv_text_kind kind, const char *const *texts,
                      const size_t *lens, int n) {
    const int ms = cv_minilm_cfg(m)->max_seq, dim = cv_minilm_cfg(m)->hidden;
    memset(j, 0, sizeof *j);
    j->n = n;
    j->offs = malloc(sizeof(int32_t) * ((size_t)n + 1));
    j->vec = malloc(sizeof(float) * (size_t)n * dim + 1);
    int32_t *tmp = malloc(sizeof(int32_t) * (size_t)n * ms);
    if (!j->offs || !j->vec || !tmp) {
        free(tmp);
        cv_job_release(j);
        return CV_ERR_NOMEM;
    }
    j->offs[0] = 0;
    for (int i = 0; i < n; i++) {
        int k = cv_minilm_tokenize(m, kind, texts[i], lens[i], tmp + j->offs[i]);
        j->offs[i + 1] = j->offs[i] + k;
    }
    j->ntokens = j->offs[n];
    j->ids = realloc(tmp, sizeof(int32_t) * (size_t)j->ntokens);
    if (!j->ids) j->ids = tmp;
    return CV_OK;
}

void cv_job_release(cv_job *j) {
    free(j->ids);
    free(j->offs);
    free(j->vec);
    j->ids = j->offs = NULL;
    j->vec = NULL;
}

static int grow(void **p, long *cap, long need, size_t el) {
    if (need <= *cap) return 0;
    long c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * el);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static void run_batch(cv_batcher *b, cv_job *list, int njobs, long tokens) {
    const int dim = cv_minilm_cfg(b->m)->hidden;
    const int unnorm = !cv_minilm_cfg(b->m)->normalize; /* no Normalize module: what it returns */
    int nseq = 0, raw = unnorm;
    for (cv_job *j = list; j; j = j->next)
        nseq += j->n, raw |= j->raw;
    cv_err err = CV_OK;
    if (grow((void **)&b->ids, &b->ids_cap, tokens, sizeof(int32_t)) ||
        grow((void **)&b->offs, &b->offs_cap, nseq + 1, sizeof(int32_t)) ||
        grow((void **)&b->vec, &b->vec_cap, (long)nseq * dim, sizeof(float)) ||
        (raw && grow((void **)&b->norms, &b->norms_cap, nseq, sizeof(float))))
        err = CV_ERR_NOMEM;
    const double t0 = cv_now();
    if (!err) {
        long t = 0;
        int s = 0;
        b->offs[0] = 0;
        for (cv_job *j = list; j; j = j->next) {
            memcpy(b->ids + t, j->ids, sizeof(int32_t) * (size_t)j->ntokens);
            for (int i = 0; i < j->n; i++, s++)
                b->offs[s + 1] = (int32_t)(t + j->offs[i + 1]);
            t += j->ntokens;
        }
        err = cv_minilm_embed_ids_norms(b->m, b->ids, b->offs, nseq, b->vec, raw ? b->norms : NULL);
    }
    cv_metric_add(b->m_batches, 1);
    cv_metric_observe(b->m_batch_texts, nseq);
    cv_metric_observe(b->m_batch_tokens, (double)tokens);
    cv_metric_observe(b->m_batch_seconds, cv_now() - t0);
    if (err) {
        cv_metric_add(b->m_errors, 1);
        cv_error("event=batch_failed jobs=%d texts=%d tokens=%ld error=\"%s\"", njobs, nseq, tokens,
                 cv_strerror(err));
    }
    int s = 0;
    for (cv_job *j = list, *next; j; j = next) {
        next = j->next;
        j->err = err;
        if (!err) memcpy(j->vec, b->vec + (size_t)s * dim, sizeof(float) * (size_t)j->n * dim);
        if (!err && (j->raw || unnorm)) /* unit vector times its norm: the pooled vector back */
            for (int i = 0; i < j->n; i++)
                for (int d = 0; d < dim; d++)
                    j->vec[(size_t)i * dim + d] *= b->norms[s + i];
        s += j->n;
        j->done(j);
    }
}

static void *batch_thread(void *arg) {
    cv_batcher *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->head && !b->closing)
            pthread_cond_wait(&b->cv, &b->mu);
        if (!b->head && b->closing) break;
        /* wait for a full budget or the oldest job's deadline, but only under concurrency:
         * when the last batch held a single job, requests are arriving one at a time and
         * waiting would only add latency (batches grow by themselves while the model runs) */
        while (!b->closing && b->queued_tokens < b->budget && b->last_jobs > 1) {
            double due = b->head->t_submit + b->deadline, now = cv_now();
            if (now >= due) break;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            double wait = due - now;
            ts.tv_sec += (time_t)wait;
            ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        }
        cv_job *list = b->head, *last = b->head;
        long tokens = last->ntokens;
        int njobs = 1;
        while (last->next && tokens + last->next->ntokens <= b->budget) {
            last = last->next;
            tokens += last->ntokens;
            njobs++;
        }
        b->head = last->next;
        if (!b->head) b->tail = NULL;
        last->next = NULL;
        b->queued_tokens -= tokens;
        b->running = njobs;
        b->last_jobs = njobs;
        pthread_mutex_unlock(&b->mu);
        run_batch(b, list, njobs, tokens);
        pthread_mutex_lock(&b->mu);
        b->running = 0;
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

cv_err cv_batcher_new(cv_minilm *m, long budget, double deadline, long max_queue, cv_metrics *reg,
                      cv_batcher **out) {
    return cv_batcher_new_for(m, budget, deadline, max_queue, reg, NULL, out);
}

cv_err cv_batcher_new_for(cv_minilm *m, long budget, double deadline, long max_queue, cv_metrics *reg,
                          const char *model, cv_batcher **out) {
    cv_batcher *b = calloc(1, sizeof *b);
    if (!b) return CV_ERR_NOMEM;
    b->m = m;
    b->budget = budget;
    b->deadline = deadline;
    b->max_queue = max_queue;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    static const double texts_b[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
    static const double tokens_b[] = {64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
    static const double secs_b[] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5};
    cv_buf lm = {0}, le = {0}; /* a model beside the first: its series labelled with its id */
    if (model) cv_buf_printf(&lm, "model=\"%s\"", model);
    cv_buf_printf(&le, "kind=\"model\"%s%s", model ? "," : "", model ? lm.p : "");
    b->m_batches = cv_metrics_counter(reg, "cdcvec_batches_total", "Batches run on the model.", lm.p);
    b->m_batch_texts = cv_metrics_histogram(reg, "cdcvec_batch_texts", "Texts per batch.", lm.p, texts_b, 11);
    b->m_batch_tokens =
        cv_metrics_histogram(reg, "cdcvec_batch_tokens", "Tokens per batch.", lm.p, tokens_b, 9);
    b->m_batch_seconds =
        cv_metrics_histogram(reg, "cdcvec_batch_duration_seconds", "Model time per batch.", lm.p, secs_b, 13);
    b->m_errors = cv_metrics_counter(reg, "cdcvec_errors_total", "Errors by kind.", le.p);
    free(lm.p), free(le.p);
    if (pthread_create(&b->th, NULL, batch_thread, b) != 0) {
        free(b);
        return CV_ERR_NOMEM;
    }
    *out = b;
    return CV_OK;
}

cv_err cv_batcher_submit(cv_batcher *b, cv_job *j) {
    pthread_mutex_lock(&b->mu);
    cv_err err = CV_OK;
    if (b->closing) err = CV_ERR_SHUTDOWN;
    /* a job larger than the whole queue is still taken when the queue is empty */
    else if (b->head && b->queued_tokens + j->ntokens > b->max_queue)
        err = CV_ERR_BUSY;
    if (!err) {
        j->next = NULL;
        j->t_submit = cv_now();
        if (b->tail)
            b->tail->next = j;
        else
            b->head = j;
        b->tail = j;
        b->queued_tokens += j->ntokens;
        pthread_cond_signal(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    return err;
}

long cv_batcher_queued_tokens(cv_batcher *b) {
    pthread_mutex_lock(&b->mu);
    long v = b->queued_tokens;
    pthread_mutex_unlock(&b->mu);
    return v;
}

int cv_batcher_busy(cv_batcher *b) {
    pthread_mutex_lock(&b->mu);
    int v = b->head != NULL || b->running > 0;
    pthread_mutex_unlock(&b->mu);
    return v;
}

void cv_batcher_free(cv_batcher *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->closing = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->th, NULL);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b->ids), free(b->offs), free(b->vec), free(b->norms);
    free(b);
}
