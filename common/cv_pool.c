/* cv_pool.c: generation-counted fork/join over pthreads. */
#include "cv_pool.h"

#include <pthread.h>
#include <stdlib.h>

struct cv_pool {
    int n;
    pthread_t *th; /* (n-1) */
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    unsigned long gen;
    int ntasks, pending, stop;
    cv_pool_fn fn;
    void *arg;
};

typedef struct {
    cv_pool *p;
    int idx;
} worker_arg;

static void *worker(void *a) {
    worker_arg *wa = a;
    cv_pool *p = wa->p;
    int idx = wa->idx;
    free(wa);
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->gen == seen)
            pthread_cond_wait(&p->start, &p->mu);
        if (p->stop) break;
        seen = p->gen;
        if (idx < p->ntasks) {
            cv_pool_fn fn = p->fn;
            void *arg = p->arg;
            pthread_mutex_unlock(&p->mu);
            fn(arg, idx);
            pthread_mutex_lock(&p->mu);
            if (--p->pending == 0) pthread_cond_signal(&p->done);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

cv_err cv_pool_new(int nthreads, cv_pool **out) {
    if (nthreads < 1) return CV_ERR_ARG;
    cv_pool *p = calloc(1, sizeof *p);
    if (!p) return CV_ERR_NOMEM;
    p->n = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    p->th = calloc((size_t)nthreads, sizeof *p->th);
    if (!p->th) {
        free(p);
        return CV_ERR_NOMEM;
    }
    for (int i = 1; i < nthreads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) *wa = (worker_arg){p, i};
        if (!wa || pthread_create(&p->th[i - 1], NULL, worker, wa) != 0) {
            free(wa);
            p->n = i; /* the started ones are joined by free */
            cv_pool_free(p);
            return CV_ERR_NOMEM;
        }
    }
    *out = p;
    return CV_OK;
}

void cv_pool_free(cv_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->th[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->th);
    free(p);
}

int cv_pool_size(const cv_pool *p) { return p->n; }

void cv_pool_run(cv_pool *p, int ntasks, cv_pool_fn fn, void *arg) {
    CV_ASSERT(ntasks >= 1 && ntasks <= p->n);
    if (ntasks > 1) {
        pthread_mutex_lock(&p->mu);
        p->fn = fn;
        p->arg = arg;
        p->ntasks = ntasks;
        p->pending = ntasks - 1;
        p->gen++;
        pthread_cond_broadcast(&p->start);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0);
    if (ntasks > 1) {
        pthread_mutex_lock(&p->mu);
        while (p->pending > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
