/* loop.h: the one stage loop. sync, capture, worker and sink (and a backfill's retries) run
 * their attempts under it: the same backoff, the same rule for retry or stop, the same lines.
 *
 * An attempt (one session: connect, run until stopped or failed, close) ends with its error
 * and how that error was classified where it entered (libpq, libcurl, librdkafka, nng: a
 * cv_fault with retriable, kind and fix). The rule, once, here (cv_stage_retriable):
 *   - ARG, UNSUPPORTED, NOTFOUND: permanent (a wrong option, a missing object: retrying
 *     cannot help);
 *   - else a classified fault decides (fault.kind set: fault.retriable);
 *   - else TIMEOUT, BUSY, SHUTDOWN and IO are transient, the rest permanent.
 * A transient failure is retried after an exponential backoff with full jitter
 * (event=<stage>_retry attempt= in_seconds= kind= error=), starting over after a healthy
 * minute; a permanent one stops the stage with exit status 1 (event=<stage>_stopped kind=
 * error= fix=); a signal stops it with 0 (event=<stage>_stopped reason=signal). */
#ifndef CV_STAGE_LOOP_H
#define CV_STAGE_LOOP_H

#include <signal.h>

#include "../common/cv_err.h"
#include "../common/cv_metrics.h"

typedef struct cv_stage_end {
    cv_fault fault;  /* how it failed, classified where it happened (kind NULL: not classified) */
    char why[512];   /* the retry line's error text ("": the error's name) */
    int restart_now; /* start again at once, no backoff (a schema change to pick up) */
    double since;    /* cv_now() since when the attempt ran well (0: it never did) */
} cv_stage_end;

typedef struct cv_stage {
    const char *name; /* "sync", "capture", "worker", "sink": event=<name>_retry, <name>_stopped */
    /* one attempt; 0 when it ended because *stop was set */
    cv_err (*attempt)(void *arg, volatile sig_atomic_t *stop, cv_stage_end *end);
    void *arg;
    cv_metric *m_retries; /* counts the attempts started again (may be NULL) */
} cv_stage;

/* Runs attempts until *stop (returns 0) or a permanent failure (returns 1, logged). */
int cv_stage_run(const cv_stage *st, volatile sig_atomic_t *stop);

/* The rule above: 1 when retrying can help. */
int cv_stage_retriable(cv_err e, const cv_fault *f);

/* Exponential backoff with full jitter for retry attempt n (1, 2, ...), capped at 30 s; and a
 * sleep of d seconds that ends early when *stop is set. */
double cv_stage_backoff(int attempt);
void cv_stage_sleep(double d, volatile sig_atomic_t *stop);

#endif
