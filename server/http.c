/* http.c: HTTP endpoints on nng's HTTP server.
 *   GET  /healthz          {"status":"ok",...}; 503 while draining
 *   GET  /metrics          Prometheus text format 0.0.4
 *   POST /embed            {"inputs": "text" | ["text", ...]} -> [[384 floats], ...]
 *   POST /v1/embeddings    OpenAI-compatible: {"input": ..., "encoding_format": "float"|"base64"}
 * Errors are JSON: {"error": {"message": "...", "type": "..."}} with a 4xx/5xx status.
 * Embedding requests join the same batcher as nng requests and complete asynchronously. */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "server_impl.h"

typedef struct {
    cv_job job;
    cv_server *s;
    nng_aio *aio;
    int openai, b64;
} http_job;

static void respond(nng_aio *aio, uint16_t status, const char *ctype, const char *body, size_t len,
                    const char *retry_after) {
    nng_http_res *res;
    if (nng_http_res_alloc(&res) != 0) {
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_http_res_set_status(res, status);
    nng_http_res_set_header(res, "Content-Type", ctype);
    if (retry_after) nng_http_res_set_header(res, "Retry-After", retry_after);
    if (nng_http_res_copy_data(res, body, len) != 0) {
        nng_http_res_free(res);
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

static void respond_error(nng_aio *aio, uint16_t status, const char *type, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_pack("{s:{s:s,s:s,s:i}}", "error", "message", msg, "type", type, "code", status);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    const char *text = body ? body : "{\"error\":{\"message\":\"out of memory\",\"type\":\"internal\"}}";
    respond(aio, status, "application/json", text, strlen(text), status == 503 ? "1" : NULL);
    free(body);
    json_decref(o);
}

static cv_server *server_of(nng_aio *aio) {
    return nng_http_handler_get_data((nng_http_handler *)nng_aio_get_input(aio, 1));
}

static void on_healthz(nng_aio *aio) {
    cv_server *s = server_of(aio);
    char body[512];
    int draining = atomic_load(&s->draining);
    int n =
        snprintf(body, sizeof body, "{\"status\":\"%s\",\"device\":\"%s\",\"model\":\"%s\"}",
                 draining ? "draining" : "ok", cv_minilm_device(s->m), s->o.model_id ? s->o.model_id : "");
    respond(aio, draining ? 503 : 200, "application/json", body, (size_t)n, NULL);
}

static void on_metrics(nng_aio *aio) {
    cv_server *s = server_of(aio);
    size_t len;
    char *text = cv_metrics_render(s->reg, &len);
    if (!text) {
        respond_error(aio, 500, "internal", "out of memory");
        return;
    }
    respond(aio, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
    free(text);
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

/* Batch thread: vectors ready (or failed). */
static void http_job_done(cv_job *j) {
    http_job *h = (http_job *)j;
    cv_server *s = h->s;
    const int dim = cv_minilm_cfg(s->m)->hidden;
    cv_metric_observe(s->m_latency, cv_now() - j->t_submit);
    atomic_fetch_sub(&s->inflight, 1);
    if (j->err) {
        respond_error(h->aio, 500, "internal", "embedding failed: %s", cv_strerror(j->err));
    } else {
        cv_buf b = {0};
        char tmp[256];
        if (h->openai) {
            cv_buf_puts(&b, "{\"object\":\"list\",\"data\":[");
            for (int i = 0; i < j->n; i++) {
                snprintf(tmp, sizeof tmp,
                         "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
                cv_buf_puts(&b, tmp);
                put_vector(&b, j->vec + (size_t)i * dim, dim, h->b64);
                cv_buf_puts(&b, "}");
            }
            snprintf(tmp, sizeof tmp,
                     "],\"model\":\"%s\",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}}",
                     s->o.model_id ? s->o.model_id : "", j->ntokens, j->ntokens);
            cv_buf_puts(&b, tmp);
        } else {
            cv_buf_puts(&b, "[");
            for (int i = 0; i < j->n; i++) {
                if (i) cv_buf_puts(&b, ",");
                put_vector(&b, j->vec + (size_t)i * dim, dim, 0);
            }
            cv_buf_puts(&b, "]");
        }
        if (b.oom)
            respond_error(h->aio, 500, "internal", "out of memory");
        else
            respond(h->aio, 200, "application/json", b.p, b.len, NULL);
        free(b.p);
    }
    cv_job_release(j);
    free(h);
}

static int authorized(cv_server *s, nng_http_req *req) {
    if (!s->o.api_key || !*s->o.api_key) return 1;
    const char *h = nng_http_req_get_header(req, "Authorization");
    return h && strncmp(h, "Bearer ", 7) == 0 && strcmp(h + 7, s->o.api_key) == 0;
}

static void embed_common(nng_aio *aio, int openai) {
    cv_server *s = server_of(aio);
    nng_http_req *req = nng_aio_get_input(aio, 0);
    cv_metric_add(s->m_req_http, 1);
    if (!authorized(s, req)) {
        cv_metric_add(s->m_err_auth, 1);
        respond_error(aio, 401, "unauthorized", "missing or wrong 'Authorization: Bearer' API key");
        return;
    }
    if (atomic_load(&s->draining)) {
        cv_server_count_error(s, CV_ST_SHUTTING_DOWN);
        respond_error(aio, 503, "shutting_down", "server is shutting down; retry on another instance");
        return;
    }
    void *data;
    size_t len;
    nng_http_req_get_data(req, &data, &len);
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    const char *field = openai ? "input" : "inputs";
    json_t *in = json_is_object(root) ? json_object_get(root, field) : NULL;
    int b64 = 0;
    const char **texts = NULL;
    size_t *lens = NULL, n = 0;
    cv_status st = CV_ST_BAD_REQUEST;
    char msg[300] = "";
    if (!root) {
        snprintf(msg, sizeof msg, "invalid JSON body at line %d, column %d: %s", je.line, je.column, je.text);
        goto refuse;
    }
    if (!in) {
        snprintf(msg, sizeof msg,
                 "body must be a JSON object with field \"%s\" (a string or an array of strings)", field);
        goto refuse;
    }
    if (openai) {
        json_t *fmt = json_object_get(root, "encoding_format"), *dims = json_object_get(root, "dimensions");
        if (fmt && (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") != 0 &&
                                             strcmp(json_string_value(fmt), "base64") != 0))) {
            snprintf(msg, sizeof msg, "encoding_format must be \"float\" or \"base64\"");
            goto refuse;
        }
        b64 = fmt && strcmp(json_string_value(fmt), "base64") == 0;
        if (dims && (!json_is_integer(dims) || json_integer_value(dims) != cv_minilm_cfg(s->m)->hidden)) {
            snprintf(msg, sizeof msg, "dimensions must be %d for this model", cv_minilm_cfg(s->m)->hidden);
            goto refuse;
        }
    }
    n = json_is_array(in) ? json_array_size(in) : 1;
    if (!json_is_string(in) && !json_is_array(in)) {
        snprintf(msg, sizeof msg, "\"%s\" must be a string or an array of strings", field);
        goto refuse;
    }
    if (n == 0) {
        snprintf(msg, sizeof msg, "\"%s\" is an empty array", field);
        goto refuse;
    }
    if (n > (size_t)s->o.max_texts) {
        st = CV_ST_TOO_LARGE;
        snprintf(msg, sizeof msg, "%zu texts, more than the limit of %d per request", n, s->o.max_texts);
        goto refuse;
    }
    texts = malloc(sizeof(char *) * n);
    lens = malloc(sizeof(size_t) * n);
    if (!texts || !lens) {
        st = CV_ST_INTERNAL;
        snprintf(msg, sizeof msg, "out of memory");
        goto refuse;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_is_array(in) ? json_array_get(in, i) : in;
        if (!json_is_string(t)) {
            snprintf(msg, sizeof msg, "\"%s\"[%zu] is not a string (token arrays are not supported)", field,
                     i);
            goto refuse;
        }
        texts[i] = json_string_value(t);
        lens[i] = json_string_length(t);
        if (lens[i] > (size_t)s->o.max_text_bytes) {
            st = CV_ST_TOO_LARGE;
            snprintf(msg, sizeof msg, "\"%s\"[%zu] has %zu bytes, more than the limit of %ld", field, i,
                     lens[i], s->o.max_text_bytes);
            goto refuse;
        }
    }
    http_job *h = calloc(1, sizeof *h);
    if (!h || cv_job_prepare(&h->job, s->m, texts, lens, (int)n) != CV_OK) {
        free(h);
        st = CV_ST_INTERNAL;
        snprintf(msg, sizeof msg, "out of memory");
        goto refuse;
    }
    free(texts), free(lens);
    json_decref(root);
    h->s = s;
    h->aio = aio;
    h->openai = openai;
    h->b64 = b64;
    h->job.done = http_job_done;
    cv_metric_add(s->m_texts, h->job.n);
    cv_metric_add(s->m_tokens, (double)h->job.ntokens);
    atomic_fetch_add(&s->inflight, 1);
    cv_err e = cv_batcher_submit(s->batcher, &h->job);
    if (e) {
        atomic_fetch_sub(&s->inflight, 1);
        cv_job_release(&h->job);
        free(h);
        cv_server_count_error(s, e == CV_ERR_BUSY ? CV_ST_BUSY : CV_ST_SHUTTING_DOWN);
        respond_error(aio, 503, e == CV_ERR_BUSY ? "busy" : "shutting_down",
                      e == CV_ERR_BUSY ? "queue full; retry after a backoff" : "server is shutting down");
    }
    return;
refuse:
    free(texts), free(lens);
    json_decref(root);
    cv_server_count_error(s, st);
    respond_error(aio,
                  st == CV_ST_TOO_LARGE  ? 413
                  : st == CV_ST_INTERNAL ? 500
                                         : 400,
                  cv_status_name(st), "%s", msg);
}

static void on_embed(nng_aio *aio) { embed_common(aio, 0); }
static void on_openai(nng_aio *aio) { embed_common(aio, 1); }

void cv_http_reply(void *reply_handle, int status, const char *content_type, const char *body, size_t len) {
    respond((nng_aio *)reply_handle, (uint16_t)status, content_type, body, len, NULL);
}

static void on_route(nng_aio *aio) {
    const cv_http_route *r = nng_http_handler_get_data((nng_http_handler *)nng_aio_get_input(aio, 1));
    nng_http_req *req = nng_aio_get_input(aio, 0);
    r->cb(r->arg, nng_http_req_get_uri(req), aio);
}

static cv_err add_handler_data(cv_server *s, const char *path, const char *method, void (*cb)(nng_aio *),
                               void *data) {
    nng_http_handler *h;
    int rv = nng_http_handler_alloc(&h, path, cb);
    if (!rv) rv = nng_http_handler_set_method(h, method);
    if (!rv && strcmp(method, "POST") == 0)
        rv = nng_http_handler_collect_body(h, true, (size_t)s->o.max_message_bytes);
    if (!rv) rv = nng_http_handler_set_data(h, data, NULL);
    if (!rv) rv = nng_http_server_add_handler(s->http, h);
    if (rv) {
        cv_error("event=http_handler path=%s error=\"%s\"", path, nng_strerror(rv));
        return CV_ERR_IO;
    }
    return CV_OK;
}

static cv_err add_handler(cv_server *s, const char *path, const char *method, void (*cb)(nng_aio *)) {
    return add_handler_data(s, path, method, cb, s);
}

cv_err cv_http_start(cv_server *s) {
    cv_buf url = {0};
    cv_buf_printf(&url, "http://%s", s->o.http);
    if (url.oom) return CV_ERR_NOMEM;
    nng_url *u;
    int rv = nng_url_parse(&u, url.p);
    free(url.p);
    if (rv) {
        cv_error("event=http_address address=%s error=\"%s\" fix=\"use host:port, e.g. 127.0.0.1:9464\"",
                 s->o.http, nng_strerror(rv));
        return CV_ERR_ARG;
    }
    rv = nng_http_server_hold(&s->http, u);
    nng_url_free(u);
    if (rv) {
        cv_error("event=http_server address=%s error=\"%s\"", s->o.http, nng_strerror(rv));
        return CV_ERR_IO;
    }
    cv_err err;
    if ((err = add_handler(s, "/healthz", "GET", on_healthz)) ||
        (err = add_handler(s, "/metrics", "GET", on_metrics)) ||
        (err = add_handler(s, "/embed", "POST", on_embed)) ||
        (err = add_handler(s, "/v1/embeddings", "POST", on_openai)))
        return err;
    /* errors nng answers by itself (body over the limit, unknown path or method): JSON too */
    static const struct {
        uint16_t code;
        const char *body;
    } pages[] = {
        {400, "{\"error\":{\"message\":\"bad request (a body over --max-message-bytes is refused)\",\"type\":"
              "\"bad_request\",\"code\":400}}"},
        {404, "{\"error\":{\"message\":\"no such endpoint\",\"type\":\"not_found\",\"code\":404}}"},
        {405, "{\"error\":{\"message\":\"method not allowed here\",\"type\":\"method_not_allowed\","
              "\"code\":405}}"},
    };
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++)
        nng_http_server_set_error_page(s->http, pages[i].code, pages[i].body);
    for (int i = 0; i < s->o.nroutes; i++)
        if ((err = add_handler_data(s, s->o.routes[i].path, "GET", on_route, (void *)&s->o.routes[i])))
            return err;
    if ((rv = nng_http_server_start(s->http)) != 0) {
        cv_error(
            "event=http_listen address=%s error=\"%s\" fix=\"check the address, or that nothing else listens "
            "there\"",
            s->o.http, nng_strerror(rv));
        return CV_ERR_IO;
    }
    return CV_OK;
}

void cv_http_stop(cv_server *s) {
    if (!s->http) return;
    nng_http_server_stop(s->http);
    nng_http_server_release(s->http);
    s->http = NULL;
}
