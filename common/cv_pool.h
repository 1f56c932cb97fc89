/* cv_pool.h: a fixed pool of worker threads that runs n indexed tasks and waits for them. */
#ifndef CV_POOL_H
#define CV_POOL_H

#include "cv_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cv_pool cv_pool;
typedef void (*cv_pool_fn)(void *arg, int task);

/* nthreads >= 1 counts the caller: nthreads-1 workers are started. */
cv_err cv_pool_new(int nthreads, cv_pool **out);
void cv_pool_free(cv_pool *p);
int cv_pool_size(const cv_pool *p);

/* Runs fn(arg, 0..ntasks-1), ntasks <= cv_pool_size(p); task 0 runs in the caller.
 * Returns when all have finished. Not reentrant: one run at a time per pool. */
void cv_pool_run(cv_pool *p, int ntasks, cv_pool_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif
