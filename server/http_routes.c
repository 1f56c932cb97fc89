/* http_routes.c: the HTTP endpoints of the inference server.
 *   GET  /healthz          liveness: {"status":"ok",...}; 503 only while draining
 *   GET  /readyz           readiness: 200 {"status":"ready"} or 503 with the reason (the
 *                          process's hook: streaming, source and store up, lag under bounds)
 *   GET  /metrics          Prometheus text format 0.0.4
 *   POST /embed            {"inputs": "text" | ["text", ...], "truncate": bool, "normalize": bool}
 *                          -> [[dim floats], ...] (TEI's; "truncate": false refuses a text over
 *                          the model's 256 tokens with 413, as TEI does; "normalize": false
 *                          answers the mean-pooled vectors before the L2 normalization)
 *   POST /v1/embeddings    OpenAI-compatible: {"input": ..., "model": ..., "encoding_format":
 *                          "float"|"base64"}, answered by the model named (of several served;
 *                          left out: the only one)
 *   GET  /v1/models        the models served, in OpenAI's list format
 *  Errors are JSON: {"error": {"message": "...", "type": "...", "code": status}}. A body's
 * shape is counted before it is decoded (values, depth), so a body of millions of empty arrays is refused for
 * the price of one pass over its bytes, not a JSON tree 30 times its size. Embedding requests join the same
 * batcher as nng requests and complete asynchronously (http.c suspends the connection until the batch thread
 * answers). */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "http_impl.h"

typedef struct {
    cv_job job;
    cv_http_req *r;
    cv_server *s;
    cv_served *sv; /* the model asked for */
    int openai, b64;
} http_job;

/* Answers the JSON built in b (taken over) with status, or 500 when building it ran out of memory. */
static void answer_json(cv_http_req *r, int status, cv_buf *b) {
    if (b->oom) {
        free(b->p);
        cv_http_error(r, 500, "internal", "out of memory");
        return;
    }
    cv_http_answer_owned(r, status, "application/json", b->p, b->len);
}

/* Liveness; a process without a model (capture, the Kafka sink stage) says device "none". */
void cv_http_on_healthz(cv_http_req *r) {
    cv_server *s = r->s;
    cv_buf b = {0};
    int draining = atomic_load(&s->draining);
    cv_buf_printf(&b, "{\"status\":\"%s\",\"device\":\"%s\",\"model\":\"%s\"}", draining ? "draining" : "ok",
                  s->m ? cv_minilm_device(s->m) : "none", s->o.model_id ? s->o.model_id : "");
    answer_json(r, draining ? 503 : 200, &b);
}

/* Readiness (Kubernetes' meaning: send traffic here now?): 503 while draining or while the
 * process's hook says it is not doing its job; /healthz stays the liveness probe. */
void cv_http_on_readyz(cv_http_req *r) {
    cv_server *s = r->s;
    cv_buf b = {0};
    int ok;
    if (atomic_load(&s->draining)) {
        ok = 0;
        cv_buf_puts(&b, "{\"status\":\"draining\"}");
    } else if (s->o.ready) {
        ok = s->o.ready(s->o.ready_arg, &b);
    } else {
        ok = 1;
        cv_buf_puts(&b, "{\"status\":\"ready\"}");
    }
    answer_json(r, ok ? 200 : 503, &b);
}

void cv_http_on_metrics(cv_http_req *r) {
    size_t len;
    char *text = cv_metrics_render(r->s->reg, &len);
    if (!text) {
        cv_http_error(r, 500, "internal", "out of memory");
        return;
    }
    cv_http_answer_owned(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void put_base64(cv_buf *b, const uint8_t *d, size_t n) {
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v =
            (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        q[0] = B64[v >> 18 & 63], q[1] = B64[v >> 12 & 63];
        q[2] = i + 1 < n ? B64[v >> 6 & 63] : '=';
        q[3] = i + 2 < n ? B64[v & 63] : '=';
        cv_buf_put(b, q, 4);
    }
}

static void put_vector(cv_buf *b, const float *v, int dim, int b64) {
    char num[32];
    if (b64) { /* little-endian float32, as OpenAI's clients decode it */
        cv_buf_put(b, "\"", 1);
        put_base64(b, (const uint8_t *)v, sizeof(float) * (size_t)dim);
        cv_buf_put(b, "\"", 1);
        return;
    }
    cv_buf_put(b, "[", 1);
    for (int j = 0; j < dim; j++) {
        int n = snprintf(num, sizeof num, j ? ",%.9g" : "%.9g", (double)v[j]);
        cv_buf_put(b, num, (size_t)n);
    }
    cv_buf_put(b, "]", 1);
}

/* Batch thread: vectors ready (or failed); answers the suspended request. */
static void http_job_done(cv_job *j) {
    http_job *h = (http_job *)j;
    cv_server *s = h->s;
    const int dim = cv_minilm_cfg(h->sv->m)->hidden;
    cv_metric_observe(s->m_latency, cv_now() - j->t_submit);
    if (j->err) {
        cv_http_error(h->r, 500, "internal", "embedding failed: %s", cv_strerror(j->err));
    } else {
        cv_buf b = {0};
        if (h->openai) {
            cv_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
            for (int i = 0; i < j->n; i++) {
                cv_buf_printf(&b, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
                put_vector(&b, j->vec + (size_t)i * dim, dim, h->b64);
                cv_buf_puts(&b, "}");
            }
            cv_buf_puts(&b, "],\"model\":");
            cv_json_string(&b, h->sv->id, strlen(h->sv->id));
            cv_buf_printf(&b, ",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}}", j->ntokens,
                          j->ntokens);
        } else {
            cv_buf_puts(&b, "[");
            for (int i = 0; i < j->n; i++) {
                if (i) cv_buf_puts(&b, ",");
                put_vector(&b, j->vec + (size_t)i * dim, dim, 0);
            }
            cv_buf_puts(&b, "]");
        }
        answer_json(h->r, 200, &b);
    }
    cv_job_release(j);
    free(h);
    atomic_fetch_sub(&s->inflight, 1); /* last: the drain may free the server after this */
}

/* One pass over a JSON text: the number of values and the deepest nesting, strings skipped.
 * It does not validate (jansson does, after): it only bounds what decoding will build. */
static void json_shape(const char *p, size_t n, size_t *values, int *depth) {
    size_t v = 0;
    int d = 0, maxd = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
            v++;
        } else if (c == '[' || c == '{') {
            v++;
            if (++d > maxd) maxd = d;
        } else if (c == ']' || c == '}') {
            d--;
        } else if (c == ',') {
            v++;
        }
    }
    *values = v;
    *depth = maxd;
}

/* 1 when the body's field holds token ids ("input": [1, 2] or [[1, 2], ...]): found by a look at
 * its first bytes, so a long token array gets the message meant for it, not the size limit's. */
static int token_ids(const char *p, size_t n, const char *field) {
    char key[16];
    int kl = snprintf(key, sizeof key, "\"%s\"", field);
    const char *e = p + n, *k = memmem(p, n, key, (size_t)kl);
    if (!k) return 0;
    const char *q = k + kl;
    int brackets = 0;
    for (; q < e; q++) {
        if (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n' || (*q == ':' && brackets == 0)) continue;
        if (*q == '[' && brackets < 2) {
            brackets++;
            continue;
        }
        break;
    }
    return brackets > 0 && q < e && (*q == '-' || (*q >= '0' && *q <= '9'));
}

/* 1 when name names the model served as sv: its id or the id's last part, and its facts' id
 * (models/model.h) or that id's last part (--model-id renames the first model). */
static int model_named(const cv_served *sv, const char *name) {
    const char *ids[2] = {sv->id, cv_minilm_facts(sv->m)->id};
    for (int k = 0; k < 2; k++) {
        const char *slash = strrchr(ids[k], '/');
        if (!strcmp(name, ids[k]) || (slash && !strcmp(name, slash + 1))) return 1;
    }
    return 0;
}

/* The ids served, as "a", "b" (for messages), into b. */
static void served_list(cv_server *s, cv_buf *b) {
    for (int i = 0; i < s->nmodels; i++)
        cv_buf_printf(b, "%s\"%s\"", i ? ", " : "", s->models[i].id);
}

/* Checks the OpenAI fields other than input and picks the model (*sv): the one named by
 * "model", or the only one served when "model" is left out; 0 after answering an error
 * (404 for a model not served, 400 for none named among several, both naming those served). */
static int openai_fields(cv_http_req *r, json_t *root, int *b64, cv_served **sv) {
    cv_server *s = r->s;
    json_t *fmt = json_object_get(root, "encoding_format"), *dims = json_object_get(root, "dimensions"),
           *model = json_object_get(root, "model");
    *sv = NULL;
    if (model && !json_is_null(model) && !json_is_string(model)) {
        cv_http_error(r, 400, "bad_request", "\"model\" must be a string");
        return 0;
    }
    const char *name = json_string_value(model);
    for (int i = 0; name && !*sv && i < s->nmodels; i++)
        if (model_named(&s->models[i], name)) *sv = &s->models[i];
    if (!name && s->nmodels == 1) *sv = &s->models[0];
    if (!*sv) {
        cv_buf l = {0};
        served_list(s, &l);
        if (name)
            cv_http_error(r, 404, "model_not_found",
                          "the model '%s' is not served here: use one of %s (GET /v1/models lists them)",
                          name, l.p ? l.p : "");
        else
            cv_http_error(r, 400, "bad_request",
                          "\"model\" is required: this server serves several models: %s (GET /v1/models)",
                          l.p ? l.p : "");
        free(l.p);
        return 0;
    }
    if (fmt && (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") != 0 &&
                                         strcmp(json_string_value(fmt), "base64") != 0))) {
        cv_http_error(r, 400, "bad_request", "encoding_format must be \"float\" or \"base64\"");
        return 0;
    }
    *b64 = fmt && strcmp(json_string_value(fmt), "base64") == 0;
    const int dim = cv_minilm_cfg((*sv)->m)->hidden;
    if (dims && (!json_is_integer(dims) || json_integer_value(dims) != dim)) {
        cv_http_error(r, 400, "bad_request", "dimensions must be %d for the model %s", dim, (*sv)->id);
        return 0;
    }
    return 1;
}

/* GET /v1/models: the models served, in OpenAI's list format. */
void cv_http_on_models(cv_http_req *r) {
    cv_server *s = r->s;
    cv_buf b = {0};
    cv_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < s->nmodels; i++) {
        cv_buf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
        cv_json_string(&b, s->models[i].id, strlen(s->models[i].id));
        cv_buf_printf(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"cdcvec\",\"dimensions\":%d}",
                      cv_minilm_facts(s->models[i].m)->dim);
    }
    cv_buf_puts(&b, "]}");
    answer_json(r, 200, &b);
}

/* Tokens text would have untruncated ([CLS] and [SEP] included); -1 without memory. */
static long count_tokens(const cv_minilm *m, cv_text_kind kind, const char *text, size_t len) {
    const cv_model_facts *f = cv_minilm_facts(m);
    const char *p = kind == CV_TEXT_QUERY ? f->query_prompt : f->doc_prompt;
    const size_t room = len + strlen(p) + 2; /* the prompt's tokens count too */
    int32_t *ids = malloc(sizeof(int32_t) * room);
    if (!ids) return -1;
    long n = cv_tok_encode_prefixed(cv_minilm_tok(m), p, strlen(p), text, len, ids, (int)room);
    free(ids);
    return n;
}

/* Checks TEI's options of /embed: "truncate" (absent: true, as TEI with --auto-truncate),
 * "normalize" (absent: true; false: the mean-pooled vectors before the L2 norm, as TEI answers)
 * and "prompt_name" ("query": the model's query prompt, for searches; "document" or "passage",
 * or absent: its document prompt); 0 after answering. */
static int tei_fields(cv_http_req *r, json_t *root, int *truncate, int *raw, cv_text_kind *kind) {
    json_t *pn = json_object_get(root, "prompt_name");
    const char *pname = json_is_string(pn) ? json_string_value(pn) : NULL;
    if ((pn && !json_is_null(pn) && !pname) ||
        (pname && strcmp(pname, "query") && strcmp(pname, "document") && strcmp(pname, "passage"))) {
        cv_http_error(
            r, 400, "bad_request",
            "\"prompt_name\" must be \"query\" (searches) or \"document\" (texts to index), or absent");
        return 0;
    }
    *kind = pname && !strcmp(pname, "query") ? CV_TEXT_QUERY : CV_TEXT_DOCUMENT;
    json_t *t = json_object_get(root, "truncate"), *nz = json_object_get(root, "normalize");
    if ((t && !json_is_boolean(t) && !json_is_null(t)) || (nz && !json_is_boolean(nz) && !json_is_null(nz))) {
        cv_http_error(r, 400, "bad_request", "\"%s\" must be true or false",
                      t && !json_is_boolean(t) ? "truncate" : "normalize");
        return 0;
    }
    *truncate = !json_is_false(t);
    *raw = json_is_false(nz);
    return 1;
}

/* Tokenizes the texts of in and hands them to the batcher; answers on refusal. With truncate 0
 * (TEI's "truncate": false) a text over the model's sequence length is refused, as TEI does;
 * with raw 1 (TEI's "normalize": false) the vectors come back before the L2 normalization. */
static void submit(cv_http_req *r, cv_served *sv, json_t *in, const char *field, int openai, int b64,
                   int truncate, cv_text_kind kind, int raw) {
    cv_server *s = r->s;
    const int max_seq = cv_minilm_cfg(sv->m)->max_seq;
    size_t n = json_is_array(in) ? json_array_size(in) : 1;
    const char **texts = malloc(sizeof(char *) * n);
    size_t *lens = malloc(sizeof(size_t) * n);
    http_job *h = calloc(1, sizeof *h);
    if (!texts || !lens || !h) goto oom;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_is_array(in) ? json_array_get(in, i) : in;
        if (!json_is_string(t)) {
            cv_server_count_error(s, CV_ST_BAD_REQUEST);
            if (json_is_integer(t) || json_is_array(t))
                cv_http_error(
                    r, 400, "bad_request",
                    "\"%s\"[%zu] is an array of token ids: send the text instead. Token ids are not "
                    "accepted because a client's ids (tiktoken's cl100k) are not this model's "
                    "vocabulary. LangChain's OpenAIEmbeddings sends them by default: pass "
                    "check_embedding_ctx_length=False (and model=\"" CV_MODEL_SHORT_ID "\")",
                    field, i);
            else
                cv_http_error(r, 400, "bad_request", "\"%s\"[%zu] is not a string", field, i);
            goto out;
        }
        texts[i] = json_string_value(t);
        lens[i] = json_string_length(t);
        if (lens[i] > (size_t)s->o.max_text_bytes) {
            cv_server_count_error(s, CV_ST_TOO_LARGE);
            cv_http_error(r, 413, "too_large", "\"%s\"[%zu] has %zu bytes, more than the limit of %ld", field,
                          i, lens[i], s->o.max_text_bytes);
            goto out;
        }
        long nt = truncate ? 0 : count_tokens(sv->m, kind, texts[i], lens[i]);
        if (nt < 0) goto oom;
        if (nt > max_seq) {
            cv_server_count_error(s, CV_ST_TOO_LARGE);
            cv_http_error(
                r, 413, "validation",
                "Input validation error: `%s` must have less than %d tokens. Given: %ld (\"%s\"[%zu]); "
                "send \"truncate\": true to embed its first %d tokens",
                field, max_seq, nt, field, i, max_seq);
            goto out;
        }
    }
    if (cv_job_prepare(&h->job, sv->m, kind, texts, lens, (int)n) != CV_OK) goto oom;
    h->job.raw = raw;
    h->s = s;
    h->sv = sv;
    h->r = r;
    h->openai = openai;
    h->b64 = b64;
    h->job.done = http_job_done;
    cv_metric_add(s->m_texts, h->job.n);
    cv_metric_add(s->m_tokens, (double)h->job.ntokens);
    atomic_fetch_add(&s->inflight, 1);
    cv_err e = CV_ERR_SHUTDOWN;
    if (cv_http_submit_begin(r)) { /* the batcher stays alive while we submit */
        e = cv_batcher_submit(sv->batcher, &h->job);
        cv_http_submit_end(r);
    }
    if (e) {
        atomic_fetch_sub(&s->inflight, 1);
        cv_job_release(&h->job);
        cv_server_count_error(s, e == CV_ERR_BUSY ? CV_ST_BUSY : CV_ST_SHUTTING_DOWN);
        cv_http_error(r, 503, e == CV_ERR_BUSY ? "busy" : "shutting_down",
                      e == CV_ERR_BUSY ? "queue full; retry after a backoff" : "server is shutting down");
        goto out;
    }
    free(texts), free(lens);
    return;
oom:
    cv_server_count_error(s, CV_ST_INTERNAL);
    cv_http_error(r, 500, "internal", "out of memory");
out:
    free(texts), free(lens), free(h);
}

static void embed_common(cv_http_req *r, int openai) {
    cv_server *s = r->s;
    const char *field = openai ? "input" : "inputs";
    if (atomic_load(&s->draining)) {
        cv_server_count_error(s, CV_ST_SHUTTING_DOWN);
        cv_http_error(r, 503, "shutting_down", "server is shutting down; retry on another instance");
        return;
    }
    if (!r->body_len) {
        cv_server_count_error(s, CV_ST_BAD_REQUEST);
        cv_http_error(
            r, 400, "bad_request",
            "empty body: expected a JSON object with field \"%s\" (a string or an array of strings)", field);
        return;
    }
    if (token_ids(r->body, r->body_len, field)) {
        cv_server_count_error(s, CV_ST_BAD_REQUEST);
        cv_http_error(r, 400, "bad_request",
                      "\"%s\" holds token ids: send the text instead. Token ids are not accepted because a "
                      "client's ids (tiktoken's cl100k) are not this model's vocabulary. LangChain's "
                      "OpenAIEmbeddings sends them by default: pass check_embedding_ctx_length=False (and "
                      "model=\"" CV_MODEL_SHORT_ID "\")",
                      field);
        return;
    }
    size_t values;
    int depth;
    json_shape(r->body, r->body_len, &values, &depth);
    if (values > 2 * (size_t)s->o.max_texts + 64 || depth > 4) {
        cv_server_count_error(s, CV_ST_TOO_LARGE);
        cv_http_error(r, 413, "too_large",
                      "body holds %zu JSON values nested %d deep; a request takes at most %d texts in a flat "
                      "array",
                      values, depth, s->o.max_texts);
        return;
    }
    json_error_t je;
    json_t *root = json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &je);
    json_t *in = json_is_object(root) ? json_object_get(root, field) : NULL;
    int b64 = 0, truncate = 1, raw = 0;
    cv_served *sv = &s->models[0];        /* /embed (TEI has no model field): the first */
    cv_text_kind kind = CV_TEXT_DOCUMENT; /* OpenAI's API has no prompt: texts to index */
    size_t n = json_is_array(in) ? json_array_size(in) : 1;
    cv_status st = CV_ST_BAD_REQUEST;
    if (!root)
        cv_http_error(r, 400, "bad_request", "invalid JSON body at line %d, column %d: %s", je.line,
                      je.column, je.text);
    else if (!in)
        cv_http_error(r, 400, "bad_request",
                      "body must be a JSON object with field \"%s\" (a string or an array of strings)",
                      field);
    else if (openai && !openai_fields(r, root, &b64, &sv))
        st = CV_ST_OK; /* answered */
    else if (!openai && !tei_fields(r, root, &truncate, &raw, &kind))
        ; /* answered */
    else if (!json_is_string(in) && !json_is_array(in))
        cv_http_error(r, 400, "bad_request", "\"%s\" must be a string or an array of strings", field);
    else if (n == 0)
        cv_http_error(r, 400, "bad_request", "\"%s\" is an empty array", field);
    else if (n > (size_t)s->o.max_texts) {
        st = CV_ST_TOO_LARGE;
        cv_http_error(r, 413, "too_large", "%zu texts, more than the limit of %d per request", n,
                      s->o.max_texts);
    } else {
        st = CV_ST_OK;
        submit(r, sv, in, field, openai, b64, truncate, kind, raw);
    }
    if (st != CV_ST_OK) cv_server_count_error(s, st);
    json_decref(root);
}

void cv_http_on_embed(cv_http_req *r) { embed_common(r, 0); }
void cv_http_on_openai(cv_http_req *r) { embed_common(r, 1); }
