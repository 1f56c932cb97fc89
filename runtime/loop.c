/* loop.c: the one stage loop (loop.h). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <time.h>

#include "../common/cv_log.h"
#include "../common/cv_time.h"
#include "loop.h"

#define BACKOFF_BASE    0.2
#define BACKOFF_CAP     30.0
#define HEALTHY_SESSION 60.0 /* seconds of running well after which the backoff starts over */

int cv_stage_retriable(cv_err e, const cv_fault *f) {
    if (e == CV_ERR_ARG || e == CV_ERR_UNSUPPORTED || e == CV_ERR_NOTFOUND) return 0;
    if (f && f->kind) return f->retriable;
    return e == CV_ERR_TIMEOUT || e == CV_ERR_BUSY || e == CV_ERR_SHUTDOWN || e == CV_ERR_IO;
}

/* Exponential backoff with full jitter in [d/2, d], d = base * 2^attempt capped. */
double cv_stage_backoff(int attempt) {
    double d = BACKOFF_BASE;
    for (int i = 1; i < attempt && d < BACKOFF_CAP; i++)
        d *= 2;
    if (d > BACKOFF_CAP) d = BACKOFF_CAP;
    return d / 2 + d / 2 * ((double)rand() / RAND_MAX);
}

void cv_stage_sleep(double d, volatile sig_atomic_t *stop) {
    for (double w = 0; w < d && !*stop; w += 0.05) {
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
}

int cv_stage_run(const cv_stage *st, volatile sig_atomic_t *stop) {
    srand((unsigned)(cv_wall_now() * 1e3));
    int attempt = 0, rc = 0;
    while (!*stop) {
        cv_stage_end end = {0};
        cv_err e = st->attempt(st->arg, stop, &end);
        if (!e || *stop) break;
        const cv_fault *f = &end.fault;
        if (!cv_stage_retriable(e, f)) {
            cv_error("event=%s_stopped kind=%s error=\"%s: a permanent error, retrying cannot help (the "
                     "level=error lines before this one say where)\"%s%s%s",
                     st->name, f->kind ? f->kind : "config", cv_strerror(e), f->fix ? " fix=\"" : "",
                     f->fix ? f->fix : "", f->fix ? "\"" : "");
            rc = 1;
            break;
        }
        if (end.restart_now) continue;
        if (end.since > 0 && cv_now() - end.since >= HEALTHY_SESSION) attempt = 0;
        attempt++;
        double d = cv_stage_backoff(attempt);
        cv_metric_add(st->m_retries, 1);
        cv_warn("event=%s_retry attempt=%d in_seconds=%.2f kind=%s error=\"%s\"", st->name, attempt, d,
                f->kind ? f->kind : "connection", end.why[0] ? end.why : cv_strerror(e));
        cv_stage_sleep(d, stop);
    }
    if (!rc) cv_info("event=%s_stopped reason=signal", st->name);
    return rc;
}
