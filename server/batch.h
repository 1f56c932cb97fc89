/* batch.h: dynamic batching by token budget. Requests (jobs) are tokenized by the caller's
 * threads, queued, merged into batches of at most `budget` tokens (or whatever arrived
 * before the deadline), run on the model by one batch thread, and completed through each
 * job's callback. The deadline applies under concurrency only: after a batch of a single
 * job, the next batch starts as soon as a job arrives (no added latency for lone callers).
 * The queue is bounded in tokens: over capacity, submit fails at once. */
#ifndef CV_BATCH_H
#define CV_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "../common/cv_err.h"
#include "../common/cv_metrics.h"
#include "../common/cv_time.h"
#include "../models/minilm.h"

typedef struct cv_job cv_job;
typedef void (*cv_job_done)(cv_job *job);

struct cv_job {
    int n;         /* texts */
    int32_t *ids;  /* (ntokens) owned */
    int32_t *offs; /* (n+1) owned */
    long ntokens;
    float *vec;       /* (n * dim) owned, filled by the batch thread */
    int raw;          /* 0: unit vectors; 1: the mean-pooled vectors before the L2 normalization
                       * (TEI's "normalize": false); set after cv_job_prepare */
    cv_err err;       /* CV_OK, or why the batch failed */
    double t_submit;  /* monotonic seconds */
    cv_job_done done; /* called once, from the batch thread (or submit's caller on refusal: never) */
    void *arg;
    cv_job *next;
};

/* Tokenizes texts into j (ids, offs, ntokens, vec allocated). Returns CV_ERR_NOMEM or CV_OK. */
cv_err cv_job_prepare(cv_job *j, const cv_minilm *m, cv_text_kind kind, const char *const *texts,
                      const size_t *lens, int n);
/* Frees what cv_job_prepare allocated (not j itself). */
void cv_job_release(cv_job *j);

typedef struct cv_batcher cv_batcher;

/* m is borrowed and must outlive the batcher; reg may be NULL. */
cv_err cv_batcher_new(cv_minilm *m, long budget_tokens, double deadline_s, long max_queue_tokens,
                      cv_metrics *reg, cv_batcher **out);
/* The same for one of several models served: model (NULL: the first) labels its series. */
cv_err cv_batcher_new_for(cv_minilm *m, long budget_tokens, double deadline_s, long max_queue_tokens,
                          cv_metrics *reg, const char *model, cv_batcher **out);
/* Queues j; on CV_OK its done() will be called exactly once. CV_ERR_BUSY when the queue
 * is full, CV_ERR_SHUTDOWN after cv_batcher_close: then done() is never called. */
cv_err cv_batcher_submit(cv_batcher *b, cv_job *j);
long cv_batcher_queued_tokens(cv_batcher *b);
int cv_batcher_busy(cv_batcher *b); /* jobs queued or running */
/* Refuses new jobs, finishes the queued ones, joins the thread, frees. */
void cv_batcher_free(cv_batcher *b);

#endif
