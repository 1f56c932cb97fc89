/* stage_open.c: what the two consuming stages (worker, sink) start on the runtime before their
 * first poll: the runtime with what their outlet asks for, their Kafka metrics, the brokers as
 * a readiness peer, the health monitor, and their dead-letter counter; and the threads of a
 * pipeline file's tables (one per table, the runtime shared). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "../common/cv_log.h"
#include "../ingest/sync_impl.h"
#include "client.h"
#include "kafka.h"

int cv_kafka_stage_open(cv_sync *s, const cv_sync_opts *o, const cv_outlet *out, const char *stage,
                        cv_kafka_metrics *km, cv_metric **m_dead) {
    cv_sync_opts so = *o;
    so.outlet = out;
    if (cv_sync_runtime_open(s, &so)) {
        cv_error("event=%s_stopped kind=config error=\"cannot start the runtime (%s, HTTP, metrics): the "
                 "lines above say why\"",
                 stage, out->no_model ? "no model" : "the model or the embedding client");
        return 1;
    }
    cv_kafka_metrics_init(km, s->rt.reg, stage);
    cv_health_peer_add(
        s, &(cv_health_peer){"Kafka broker", stage, cv_kafka_broker_down_s, cv_kafka_broker_watch, km});
    if (cv_health_monitor(s, 0)) return 1;
    cv_buf labels = {0};
    cv_buf_printf(&labels, "stage=\"%s\"", stage);
    *m_dead = cv_metrics_counter(s->rt.reg, "cdcvec_kafka_dead_letters_total",
                                 "Messages sent to the dead-letter topic, with their reason.", labels.p);
    free(labels.p);
    return 0;
}

typedef struct {
    int (*run)(void *arg, volatile sig_atomic_t *stop);
    void *arg;
    volatile sig_atomic_t *flag;
    pthread_t th;
    int started, rc;
    volatile int done;
} stage_thread;

static void *thread_main(void *arg) {
    stage_thread *t = arg;
    t->rc = t->run(t->arg, t->flag);
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

int cv_kafka_run_threads(int n, int (*run)(void *arg, volatile sig_atomic_t *stop), void *const *args,
                         volatile sig_atomic_t *stop) {
    if (n == 1) return run(args[0], stop);
    static volatile sig_atomic_t flag; /* one set of stage threads per process */
    flag = 0;
    stage_thread *t = calloc((size_t)n, sizeof *t);
    CV_ASSERT(t);
    int rc = 0, left = n;
    for (int i = 0; i < n; i++) {
        t[i] = (stage_thread){.run = run, .arg = args[i], .flag = &flag};
        t[i].started = pthread_create(&t[i].th, NULL, thread_main, &t[i]) == 0;
        if (!t[i].started) {
            cv_error("event=thread_failed error=\"cannot start a table's thread\"");
            flag = 1;
            rc = 1;
            left--;
        }
    }
    while (left > 0) {
        if (*stop) flag = 1;
        left = 0;
        for (int i = 0; i < n; i++) {
            if (!t[i].started) continue;
            if (!__atomic_load_n(&t[i].done, __ATOMIC_ACQUIRE)) {
                left++;
                continue;
            }
            if (t[i].rc && !rc) rc = t[i].rc;
            if (t[i].rc) flag = 1; /* a permanent failure of one table stops the others */
        }
        if (left) nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
    }
    for (int i = 0; i < n; i++)
        if (t[i].started) pthread_join(t[i].th, NULL);
    free(t);
    return rc;
}
