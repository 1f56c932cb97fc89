/* cv_metrics.h: a small Prometheus registry: counters, gauges (set or computed on scrape)
 * and histograms, rendered in the text exposition format 0.0.4. Thread-safe. */
#ifndef CV_METRICS_H
#define CV_METRICS_H

#include <stddef.h>

#include "cv_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cv_metrics cv_metrics;
typedef struct cv_metric cv_metric;
typedef double (*cv_gauge_fn)(void *arg);

cv_metrics *cv_metrics_new(void);
void cv_metrics_free(cv_metrics *reg);

/* Registers a series. name: [a-zA-Z_:][a-zA-Z0-9_:]*; labels: NULL or `k="v",k2="v2"`
 * (copied). Series of one name share HELP/TYPE; register them with the same help. The
 * returned handle lives as long as reg. NULL on allocation failure (then updates are
 * no-ops: every update function accepts NULL). */
cv_metric *cv_metrics_counter(cv_metrics *reg, const char *name, const char *help, const char *labels);
cv_metric *cv_metrics_gauge(cv_metrics *reg, const char *name, const char *help, const char *labels);
cv_metric *cv_metrics_gauge_fn(cv_metrics *reg, const char *name, const char *help, const char *labels,
                               cv_gauge_fn fn, void *arg);
/* bounds: ascending upper bounds (copied); +Inf is implicit. */
cv_metric *cv_metrics_histogram(cv_metrics *reg, const char *name, const char *help, const char *labels,
                                const double *bounds, int nbounds);

void cv_metric_add(cv_metric *m, double v);     /* counters and gauges */
void cv_metric_set(cv_metric *m, double v);     /* gauges */
void cv_metric_observe(cv_metric *m, double v); /* histograms */

/* The exposition text, malloc'd (caller frees); *len gets its length. */
char *cv_metrics_render(cv_metrics *reg, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
