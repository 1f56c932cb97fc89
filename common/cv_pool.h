/* cv_pool.h: a fixed pool of worker threads that runs n indexed tasks and waits for them. */
#ifndef CV_POOL_H
#define CV_POOL_H

#include "cv_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cv_pool cv_pool;
typedef void (*cv_pool_fn)(void *arg, int task);

/* nthreads >= 1 counts the caller: nthreads-1 workers are started. Idle workers poll for a
 * fraction of a millisecond after each run, then sleep. */
cv_err cv_pool_new(int nthreads, cv_pool **out);
void cv_pool_free(cv_pool *p);
int cv_pool_size(const cv_pool *p);

/* Runs fn(arg, 0..ntasks-1), 1 <= ntasks <= 65535, each task once, on whichever of the
 * caller and the workers claims it first (the caller takes part; with ntasks > threads,
 * tasks balance themselves). Returns when all have finished. Not reentrant: one run at a
 * time per pool, and fn must not call cv_pool_run on the same pool. */
void cv_pool_run(cv_pool *p, int ntasks, cv_pool_fn fn, void *arg);

#ifdef __cplusplus
}
#endif

#endif
