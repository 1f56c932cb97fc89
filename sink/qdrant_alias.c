/* qdrant_alias.c: the alias of a Qdrant collection written by cdcvec, for searchers outside cdcvec
 * (docs/ARCHITECTURE.md, "Migrations"): "<collection>__live", where <collection> is the one the
 * sink URL names, points at the table's live collection. cdcvec makes it when it creates the live
 * collection (only when there is no such alias: a collection created again by a writer that does
 * not know the state never takes it), and cdcvec migrate moves it at the switch (and back at a rollback) with
 * one request of Qdrant's alias API, POST /collections/aliases {"actions": [{"delete_alias": ...},
 * {"create_alias": ...}]}, which Qdrant applies atomically: a search by the alias reads the old
 * collection or the new one, never neither. cdcvec's own readers find the live collection in the
 * state database (cdcvec.state.index_name), not through the alias. */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "http.h"

static const char *qerr(json_t *r) {
    const char *m = json_string_value(json_object_get(json_object_get(r, "status"), "error"));
    return m ? m : "-";
}

/* The collection alias points at now (strdup'd), NULL when there is no such alias. */
static cv_err alias_target(cv_sink *s, const char *alias, char **coll) {
    *coll = NULL;
    long st = 0;
    json_t *r = NULL;
    cv_err e = cv_http_call(s->http, "GET", "/aliases", NULL, 0, 1, &st, &r);
    if (!e && st != 200) {
        cv_error("event=qdrant_alias_failed step=list status=%ld error=\"%s\"", st, qerr(r));
        e = CV_ERR_UNSUPPORTED;
    }
    json_t *a = json_object_get(json_object_get(r, "result"), "aliases"), *it;
    size_t i;
    json_array_foreach(a, i, it) {
        const char *n = json_string_value(json_object_get(it, "alias_name"));
        const char *c = json_string_value(json_object_get(it, "collection_name"));
        if (!e && n && c && !strcmp(n, alias)) *coll = strdup(c);
    }
    json_decref(r);
    return e;
}

cv_err cv_qdrant_alias_move(cv_sink *s, const char *given, const char *coll, int move) {
    cv_buf alias = {0};
    cv_buf_printf(&alias, "%s__live", given);
    char *now = NULL;
    cv_err e = alias_target(s, alias.p, &now);
    if (!e && now && !move && strcmp(now, coll))
        cv_warn("event=qdrant_alias_kept alias=%s collection=%s created=%s note=\"the alias is moved only by "
                "cdcvec migrate\"",
                alias.p, now, coll);
    else if (!e && !(now && !strcmp(now, coll))) {
        json_t *acts = json_array();
        if (now) json_array_append_new(acts, json_pack("{s:{s:s}}", "delete_alias", "alias_name", alias.p));
        json_array_append_new(
            acts, json_pack("{s:{s:s,s:s}}", "create_alias", "collection_name", coll, "alias_name", alias.p));
        json_t *req = json_pack("{s:o}", "actions", acts);
        char *txt = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        long st = 0;
        json_t *r = NULL;
        e = cv_http_call(s->http, "POST", "/collections/aliases", txt, strlen(txt), 1, &st, &r);
        if (!e && st != 200) {
            cv_error("event=qdrant_alias_failed step=move alias=%s collection=%s status=%ld error=\"%s\"",
                     alias.p, coll, st, qerr(r));
            e = CV_ERR_UNSUPPORTED;
        }
        json_decref(r);
        if (!e)
            cv_info("event=qdrant_alias_moved alias=%s collection=%s was=%s", alias.p, coll, now ? now : "-");
    }
    free(now);
    cv_buf_free(&alias);
    return e;
}

cv_err cv_qdrant_drop(cv_sink *s, const char *name) {
    char *esc = curl_easy_escape(NULL, name, 0);
    cv_buf path = {0};
    cv_buf_printf(&path, "/collections/%s", esc);
    curl_free(esc);
    long st = 0;
    cv_err e = cv_http_call(s->http, "DELETE", path.p, NULL, 0, 1, &st, NULL);
    cv_buf_free(&path);
    if (!e && st != 200 && st != 404) {
        cv_error("event=qdrant_drop_failed collection=%s status=%ld", name, st);
        e = CV_ERR_UNSUPPORTED;
    }
    return e;
}
