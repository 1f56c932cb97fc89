/* capture_quix.c: `cdcvec capture --format quix`: each change as the tutorial's CDC service
 * sends it (a wal2json format-version-1 change object, kafka/quix.h), built from the row
 * values the stream decoded, in their PostgreSQL text form. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "../ingest/sync_impl.h"
#include "kafka.h"
#include "quix.h"

/* The columns of t with values v, as cv_quix wants them. */
static void quix_vals(const cv_table *t, const cv_rowval *v, cv_quix_val *out) {
    for (int i = 0; i < t->ncols; i++)
        out[i] = (cv_quix_val){.name = t->col[i],
                               .type = t->coltype[i],
                               .typoid = t->typoid[i],
                               .kind = v[i].kind,
                               .val = v[i].val,
                               .len = v[i].len};
}

void cv_capture_wire(cv_sync *s, const cv_rowval *v, const cv_rowval *old, const char *kind, cv_change *c) {
    const cv_table *t = &s->t;
    cv_quix_val *cols = calloc((size_t)t->ncols + 1, sizeof *cols),
                *keys = calloc((size_t)t->nkeys + 1, sizeof *keys);
    CV_ASSERT(cols && keys);
    quix_vals(t, v, cols);
    const cv_rowval *kv = old ? old : v; /* wal2json: the old tuple's identity when there is one */
    for (int k = 0; k < t->nkeys; k++) {
        int i = t->key[k];
        keys[k] = (cv_quix_val){.name = t->col[i],
                                .type = t->coltype[i],
                                .typoid = t->typoid[i],
                                .kind = kv[i].kind == 'u' ? v[i].kind : kv[i].kind,
                                .val = kv[i].kind == 'u' ? v[i].val : kv[i].val,
                                .len = kv[i].kind == 'u' ? v[i].len : kv[i].len};
    }
    int is_insert = strcmp(kind, "insert") == 0;
    free(c->encoded);
    cv_err e = CV_OK;
    cv_buf why = {0};
    c->encoded = cv_quix_change(kind, t->schema, t->name, cols, t->ncols, is_insert ? NULL : keys,
                                is_insert ? 0 : t->nkeys, &e, &why);
    if (!c->encoded && !c->fail) { /* the tutorial's format cannot carry it: a dead letter downstream */
        cv_buf f = {0};
        cv_buf_printf(&f, "the tutorial's message format cannot carry this row: %s",
                      why.p ? why.p : cv_strerror(e));
        c->fail = f.p;
    }
    free(why.p);
    free(cols), free(keys);
}
