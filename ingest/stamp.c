/* stamp.c: the store's model stamp checked at the start of a session, and adopted where an
 * earlier version recorded none (stamp.h). */
#define _POSIX_C_SOURCE 200809L
#include "stamp.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "../server/client.h"
#include "sync_impl.h"

/* The way out: cdcvec migrate (migrate.c), run with the recorded model and text (the live index's)
 * and the new ones as its target; or a new store. */
#define MIGRATE_FIX(to)                                                                                      \
    "run cdcvec migrate with this command's options but the recorded model and text, plus " to               \
    " (it builds the new index beside the live one from a snapshot while searches use the live one, "        \
    "verifies it and switches atomically; then start this command again), or point --sink at a new "         \
    "table/collection (another --sink database, Qdrant collection or Upstash --namespace) and move your "    \
    "readers to it"

/* The column number of a "column <attnum> <name>" source, and where its name starts; 0 when
 * the source is a template. */
static int column_of(const char *src, const char **name) {
    int n = 0, at = 0;
    if (sscanf(src, "column %d %n", &n, &at) == 1 && at > 0) {
        *name = src + at;
        return n;
    }
    return 0;
}

/* 1 when the recorded text source is the session's: the same template text, or the same column
 * (by number: a rename keeps it; by name when the table was recreated, its numbers new). */
static int same_source(const char *recorded, const char *now, int recreated) {
    const char *rn = NULL, *nn = NULL;
    int rc = column_of(recorded, &rn), nc = column_of(now, &nn);
    if (rc && nc) return recreated ? strcmp(rn, nn) == 0 : rc == nc;
    return strcmp(recorded, now) == 0;
}

static cv_err refuse(cv_sync *s, const char *why, const char *fix) {
    s->fault = (cv_pg_fault){0, "config", fix};
    snprintf(s->why, sizeof s->why, "%s", why);
    cv_sync_error(s, "sink", &s->fault);
    return CV_ERR_UNSUPPORTED;
}

/* With --embed: the model the remote cdcvec serve runs, asked once per process (the embed
 * protocol's info request, docs/PROTOCOL.md) into the runtime's facts. A serve of an earlier
 * version does not answer it: the facts stay those CV_MODEL_ID declares, no revision (a
 * warning). An unreachable one fails the session, retriably. */
static char remote_id[256], remote_rev[80]; /* the facts' strings, for the process's life */
static int remote_asked;

static cv_err remote_facts(cv_sync *s) {
    if (remote_asked) return CV_OK;
    cv_client_opts co = {.timeout_ms = 10000, .retries = 0};
    cv_client *c = NULL;
    char *info = NULL, msg[256] = "";
    int dim = 0;
    cv_err e = cv_client_open(s->o.embed, &co, &c);
    if (!e) e = cv_client_info(c, &info, &dim, msg, sizeof msg);
    cv_client_close(c);
    if (e == CV_ERR_FORMAT) {
        cv_warn(
            "event=embed_model_unknown url=%s note=\"the remote cdcvec serve does not say which model "
            "it runs (an earlier version): the store is stamped %s without a revision; upgrade it to have "
            "its model's id and revision recorded\"",
            s->o.embed, s->rt.mf.id);
        remote_asked = 1;
        return CV_OK;
    }
    if (e) {
        cv_warn(
            "event=embed_unreachable url=%s error=\"%s\" note=\"asking the embedding server which model it "
            "runs (the store's stamp); retrying\"",
            s->o.embed, msg);
        snprintf(s->why, sizeof s->why, "embed_unreachable: %s does not answer (%s)", s->o.embed, msg);
        s->fault = (cv_pg_fault){1, "connection", NULL};
        cv_sync_error(s, "embed", &s->fault);
        return CV_ERR_TIMEOUT;
    }
    json_error_t je;
    json_t *j = json_loads(info, 0, &je);
    const char *id = json_string_value(json_object_get(j, "id")),
               *rev = json_string_value(json_object_get(j, "revision"));
    if (id && *id && strlen(id) < sizeof remote_id && rev && strlen(rev) < sizeof remote_rev) {
        snprintf(remote_id, sizeof remote_id, "%s", id);
        snprintf(remote_rev, sizeof remote_rev, "%s", rev);
        s->rt.mf.id = remote_id;
        s->rt.mf.revision = strcmp(remote_rev, "unknown") ? remote_rev : NULL;
        cv_info("event=embed_model url=%s model=%s revision=%s dim=%d", s->o.embed, remote_id, remote_rev,
                dim);
    } else {
        cv_warn("event=embed_model_unknown url=%s note=\"the remote's answer names no model: the store "
                "is stamped %s without a revision\"",
                s->o.embed, s->rt.mf.id);
    }
    json_decref(j);
    free(info);
    remote_asked = 1;
    return CV_OK;
}

cv_err cv_stamp_check(cv_sync *s, const cv_sink_meta *m) {
    if (s->o.outlet && s->o.outlet->no_model) return CV_OK;
    cv_err re = !s->rt.model && s->o.embed && *s->o.embed ? remote_facts(s) : CV_OK;
    if (re) return re;
    const cv_model_facts *f = &s->rt.mf;
    int id_differs = m->model && strcmp(m->model, f->id) != 0;
    int rev_differs = m->model_revision && f->revision && strcmp(m->model_revision, f->revision) != 0;
    if (id_differs || rev_differs) {
        cv_error("event=model_changed table=%s recorded_model=%s recorded_revision=%s model=%s revision=%s "
                 "error=\"the store's vectors were made by another model (or other weights) than this one: "
                 "vectors of two models in one index cannot be compared\" fix=\"" MIGRATE_FIX(
                     "--to-model DIR") "\"",
                 s->t.qualified, m->model, m->model_revision ? m->model_revision : "unknown", f->id,
                 f->revision ? f->revision : "unknown");
        cv_buf why = {0};
        cv_buf_printf(&why, "model_changed: the store holds vectors of %s revision %s", m->model,
                      m->model_revision ? m->model_revision : "unknown");
        cv_err e = refuse(s, why.p ? why.p : "model_changed", MIGRATE_FIX("--to-model DIR"));
        free(why.p);
        return e;
    }
    const char *now = s->t.text_source;
    if (s->o.search || !now || !m->text_source) return CV_OK;
    if (same_source(m->text_source, now, m->relid && m->relid != s->t.oid)) return CV_OK;
    cv_error("event=text_source_changed table=%s recorded=\"%s\" now=\"%s\" error=\"the store's vectors "
             "embed another text than this one (another --text-column or --template): the index would mix "
             "both\" fix=\"" MIGRATE_FIX("--to-template T") "\"",
             s->t.qualified, m->text_source, now);
    cv_buf why = {0};
    cv_buf_printf(&why, "text_source_changed: the store's vectors embed %s", m->text_source);
    cv_err e = refuse(s, why.p ? why.p : "text_source_changed", MIGRATE_FIX("--to-template T"));
    free(why.p);
    return e;
}

cv_err cv_stamp_adopt(cv_sync *s, cv_sink_meta *m) {
    const cv_model_facts *f = &s->rt.mf;
    int model = !m->model || (!m->model_revision && f->revision);
    int text = !m->text_source && s->t.text_source && !s->o.search;
    if (!m->layout || (s->o.outlet && s->o.outlet->no_model) || (!model && !text)) return CV_OK;
    if (model) {
        free(m->model), free(m->model_revision);
        m->model = strdup(f->id);
        m->model_revision = f->revision ? strdup(f->revision) : NULL;
    }
    if (text) m->text_source = strdup(s->t.text_source);
    cv_err e = cv_sink_meta_set(s->sink, m);
    if (e) {
        const char *kind, *fix;
        cv_sink_last_fault(s->sink, &kind, &fix);
        cv_pg_fault flt = {e == CV_ERR_TIMEOUT, kind, fix};
        cv_sync_error(s, "sink", &flt);
        return e;
    }
    cv_warn("event=stamp_adopted table=%s model=%s revision=%s text_source=\"%s\" note=\"the store had no "
            "model%s recorded, as an earlier cdcvec or a sync with --embed left it: its vectors are taken to "
            "be this model's and this text's; rows written from now on carry the stamp\"",
            s->t.qualified, m->model, m->model_revision ? m->model_revision : "unknown",
            m->text_source ? m->text_source : "-", text ? " or text source" : " (or no revision)");
    return CV_OK;
}
