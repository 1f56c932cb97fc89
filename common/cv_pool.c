/* cv_pool.c: fork/join over pthreads, tasks claimed from one atomic word.
 *
 * A run publishes (generation, ntasks, next = 0) in one 64-bit word; the caller and the
 * workers claim task indices by compare-and-swap on it. A worker that is slow to wake (a
 * busy machine, a descheduled thread) therefore never stalls a run: the caller takes the
 * tasks it has not claimed. Idle workers poll for SPIN_NS (the ops of one forward pass come
 * microseconds apart; a futex wake-up costs tens) and then sleep on a condition variable;
 * the poll is short because on a busy machine it takes CPU from someone else.
 * Word layout: generation in bits 32-63, ntasks in 16-31, next task in 0-15. */
#define _POSIX_C_SOURCE 200809L
#include "cv_pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define SPIN_NS     20000L /* an idle worker polls this long (ns) before it sleeps */
#define MAX_TASKS   0xffff
#define YIELD_AFTER 20000L /* the caller yields its CPU after waiting this long (ns) */

struct cv_pool {
    int n;
    pthread_t *th; /* (n-1) */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    _Atomic uint64_t work;
    atomic_int done;     /* tasks of the current generation finished */
    atomic_int sleepers; /* workers waiting on wake */
    atomic_int stop;
    uint32_t gen;  /* caller side: the last generation published */
    cv_pool_fn fn; /* of the current generation, written before work is published */
    void *arg;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Claims the next task of generation gen: its index, or -1 when none is left. */
static int claim(cv_pool *p, uint32_t gen) {
    uint64_t w = atomic_load_explicit(&p->work, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(w >> 32) != gen || (w & 0xffff) >= ((w >> 16) & 0xffff)) return -1;
        if (atomic_compare_exchange_weak_explicit(&p->work, &w, w + 1, memory_order_acq_rel,
                                                  memory_order_acquire))
            return (int)(w & 0xffff);
    }
}

/* Runs claimed tasks of generation gen until none is left; returns how many it ran. A
 * successful claim means the run is not over, so fn and arg are still this generation's. */
static int drain(cv_pool *p, uint32_t gen) {
    int t, ran = 0;
    while ((t = claim(p, gen)) >= 0) {
        p->fn(p->arg, t);
        ran++;
    }
    return ran;
}

static void *worker(void *a) {
    cv_pool *p = a;
    uint32_t seen = 0;
    for (;;) {
        uint64_t w = atomic_load_explicit(&p->work, memory_order_acquire);
        long t0 = 0;
        for (int i = 1; (uint32_t)(w >> 32) == seen && !atomic_load(&p->stop); i++) {
            cpu_relax();
            if (i % 64 == 0) {
                long t = now_ns();
                if (!t0) t0 = t;
                if (t - t0 > SPIN_NS) { /* idle: sleep until the next publish */
                    pthread_mutex_lock(&p->mu);
                    atomic_fetch_add(&p->sleepers, 1);
                    while ((uint32_t)(atomic_load(&p->work) >> 32) == seen && !atomic_load(&p->stop))
                        pthread_cond_wait(&p->wake, &p->mu);
                    atomic_fetch_sub(&p->sleepers, 1);
                    pthread_mutex_unlock(&p->mu);
                    t0 = 0;
                }
            }
            w = atomic_load_explicit(&p->work, memory_order_acquire);
        }
        if (atomic_load(&p->stop)) break;
        seen = (uint32_t)(w >> 32);
        int ran = drain(p, seen);
        if (ran) atomic_fetch_add_explicit(&p->done, ran, memory_order_release);
    }
    return NULL;
}

cv_err cv_pool_new(int nthreads, cv_pool **out) {
    if (nthreads < 1) return CV_ERR_ARG;
    cv_pool *p = calloc(1, sizeof *p);
    if (!p) return CV_ERR_NOMEM;
    p->n = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->th = calloc((size_t)nthreads, sizeof *p->th);
    if (!p->th) {
        free(p);
        return CV_ERR_NOMEM;
    }
    for (int i = 1; i < nthreads; i++) {
        if (pthread_create(&p->th[i - 1], NULL, worker, p) != 0) {
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
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->th[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->th);
    free(p);
}

int cv_pool_size(const cv_pool *p) { return p->n; }

void cv_pool_run(cv_pool *p, int ntasks, cv_pool_fn fn, void *arg) {
    CV_ASSERT(ntasks >= 1 && ntasks <= MAX_TASKS);
    if (ntasks == 1 || p->n == 1) {
        for (int t = 0; t < ntasks; t++)
            fn(arg, t);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    const uint32_t gen = ++p->gen;
    /* seq_cst store then seq_cst load of sleepers, against the worker's increment of
     * sleepers then load of work: one of the two sees the other, no lost wake-up */
    atomic_store(&p->work, (uint64_t)gen << 32 | (uint64_t)ntasks << 16);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    int ran = drain(p, gen);
    if (atomic_fetch_add_explicit(&p->done, ran, memory_order_acq_rel) + ran == ntasks) return;
    long t0 = 0;
    for (int i = 1; atomic_load_explicit(&p->done, memory_order_acquire) < ntasks; i++) {
        cpu_relax();
        if (i % 64 == 0) { /* a worker holds a task: if it is descheduled, let it run */
            long t = now_ns();
            if (!t0) t0 = t;
            if (t - t0 > YIELD_AFTER) sched_yield();
        }
    }
}
