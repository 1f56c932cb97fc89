/* cv_metrics.c: registry kept as a list under one mutex; scrape renders families in
 * registration order of their first series. */
#define _POSIX_C_SOURCE 200809L
#include "cv_metrics.h"

#include "cv_buf.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { K_COUNTER, K_GAUGE, K_GAUGE_FN, K_HIST } kind;

struct cv_metric {
    cv_metrics *reg;
    kind k;
    char *name, *help, *labels;
    double value;
    cv_gauge_fn fn;
    void *arg;
    double *bounds;
    unsigned long long *counts; /* (nb + 1) non-cumulative, last = +Inf */
    int nb;
    double sum;
    unsigned long long count;
    cv_metric *next;
};

struct cv_metrics {
    pthread_mutex_t mu;
    cv_metric *head, *tail;
};

cv_metrics *cv_metrics_new(void) {
    cv_metrics *r = calloc(1, sizeof *r);
    if (r) pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void metric_free(cv_metric *m) {
    free(m->name), free(m->help), free(m->labels), free(m->bounds), free(m->counts), free(m);
}

void cv_metrics_free(cv_metrics *r) {
    if (!r) return;
    for (cv_metric *m = r->head, *n; m; m = n) {
        n = m->next;
        metric_free(m);
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static cv_metric *add(cv_metrics *r, kind k, const char *name, const char *help, const char *labels) {
    if (!r) return NULL;
    cv_metric *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->reg = r;
    m->k = k;
    m->name = strdup(name);
    m->help = strdup(help);
    m->labels = labels ? strdup(labels) : NULL;
    if (!m->name || !m->help || (labels && !m->labels)) {
        metric_free(m);
        return NULL;
    }
    pthread_mutex_lock(&r->mu);
    if (r->tail)
        r->tail->next = m;
    else
        r->head = m;
    r->tail = m;
    pthread_mutex_unlock(&r->mu);
    return m;
}

cv_metric *cv_metrics_counter(cv_metrics *r, const char *name, const char *help, const char *labels) {
    return add(r, K_COUNTER, name, help, labels);
}
cv_metric *cv_metrics_gauge(cv_metrics *r, const char *name, const char *help, const char *labels) {
    return add(r, K_GAUGE, name, help, labels);
}
cv_metric *cv_metrics_gauge_fn(cv_metrics *r, const char *name, const char *help, const char *labels,
                               cv_gauge_fn fn, void *arg) {
    cv_metric *m = add(r, K_GAUGE_FN, name, help, labels);
    if (m) m->fn = fn, m->arg = arg;
    return m;
}
cv_metric *cv_metrics_histogram(cv_metrics *r, const char *name, const char *help, const char *labels,
                                const double *bounds, int nb) {
    cv_metric *m = add(r, K_HIST, name, help, labels);
    if (!m) return NULL;
    m->bounds = malloc(sizeof(double) * (size_t)(nb ? nb : 1));
    m->counts = calloc((size_t)nb + 1, sizeof *m->counts);
    if (m->bounds && m->counts) {
        memcpy(m->bounds, bounds, sizeof(double) * (size_t)nb);
        m->nb = nb;
    }
    return m;
}

void cv_metric_add(cv_metric *m, double v) {
    if (!m) return;
    pthread_mutex_lock(&m->reg->mu);
    m->value += v;
    pthread_mutex_unlock(&m->reg->mu);
}

void cv_metric_set(cv_metric *m, double v) {
    if (!m) return;
    pthread_mutex_lock(&m->reg->mu);
    m->value = v;
    pthread_mutex_unlock(&m->reg->mu);
}

void cv_metric_observe(cv_metric *m, double v) {
    if (!m || !m->counts) return;
    int i = 0;
    while (i < m->nb && v > m->bounds[i])
        i++;
    pthread_mutex_lock(&m->reg->mu);
    m->counts[i]++;
    m->sum += v;
    m->count++;
    pthread_mutex_unlock(&m->reg->mu);
}

static void series(cv_buf *b, const char *name, const char *suffix, const char *labels, const char *extra,
                   double v) {
    const int has = labels && *labels, hase = extra && *extra;
    cv_buf_printf(b, "%s%s", name, suffix);
    if (has || hase)
        cv_buf_printf(b, "{%s%s%s}", has ? labels : "", has && hase ? "," : "", hase ? extra : "");
    cv_buf_printf(b, " %.17g\n", v);
}

char *cv_metrics_render(cv_metrics *r, size_t *len) {
    cv_buf b = {0};
    cv_buf_puts(&b, "");
    /* gauge callbacks run outside the lock: they may take their own locks */
    for (cv_metric *m = r->head; m; m = m->next)
        if (m->k == K_GAUGE_FN) {
            double v = m->fn(m->arg);
            cv_metric_set(m, v);
        }
    pthread_mutex_lock(&r->mu);
    static const char *const types[] = {"counter", "gauge", "gauge", "histogram"};
    for (cv_metric *m = r->head; m; m = m->next) {
        int seen = 0;
        for (cv_metric *p = r->head; p != m; p = p->next)
            if (strcmp(p->name, m->name) == 0) seen = 1;
        if (seen) continue; /* family already written */
        cv_buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, types[m->k]);
        for (cv_metric *s = m; s; s = s->next) {
            if (strcmp(s->name, m->name) != 0) continue;
            if (s->k != K_HIST) {
                series(&b, s->name, "", s->labels, NULL, s->value);
                continue;
            }
            unsigned long long cum = 0;
            char le[64];
            for (int i = 0; i < s->nb; i++) {
                cum += s->counts[i];
                snprintf(le, sizeof le, "le=\"%.17g\"", s->bounds[i]);
                series(&b, s->name, "_bucket", s->labels, le, (double)cum);
            }
            series(&b, s->name, "_bucket", s->labels, "le=\"+Inf\"", (double)s->count);
            series(&b, s->name, "_sum", s->labels, NULL, s->sum);
            series(&b, s->name, "_count", s->labels, NULL, (double)s->count);
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (b.oom) {
        cv_buf_free(&b);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
