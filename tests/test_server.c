/* test_server.c: the inference server over real sockets (nng over TCP, HTTP via libcurl).
 *   - many concurrent clients get exactly their own vectors (equal to cv_minilm_embed's);
 *   - clients that vanish mid-request and raw garbage on the port do not disturb others;
 *   - malformed frames, wrong version, too many / too long texts, invalid UTF-8: typed errors,
 *     and the server keeps serving; over capacity: "busy";
 *   - HTTP: /healthz, /metrics (promtool check metrics), /embed, /v1/embeddings (float and
 *     base64), 4xx JSON errors, model names, API key (scheme in any case, --metrics-auth);
 *   - the batcher: jobs asking for the vectors before the L2 norm (TEI's "normalize": false)
 *     and jobs asking for unit vectors in one batch each get what they asked for;
 *   - query parameters of the search page (escapes, NUL, UTF-8, the length limit);
 *   - `cdcvec serve` (argv[1]) answers in-flight requests after SIGTERM, then exits 0. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../common/cv_time.h"
#include "../common/cv_metrics.h"
#include "../models/minilm.h"
#include "../server/batch.h"
#include "../server/client.h"
#include "../server/proto.h"
#include "../server/server.h"

#define DIM 384
static cv_minilm *model;
static cv_server *server;
static char url[64], http_addr[64];
static int port;
static const char *cdcvec_bin;

static const char *TEXTS[] = {
    "A desert planet is the site of political intrigue.",
    "Aliens invade the Earth.",
    "books like star wars",
    "A mathematician predicts the fall of an empire.",
    "time travel",
    "",
    "Slug-like aliens control human minds.",
    "cozy mystery in a village",
    "Ünïcödé tëxt 中文",
    "The quick brown fox jumps over the lazy dog.",
};
#define NTEXTS 10
static float ref[NTEXTS][DIM];

static cv_server_opts opts(void) {
    cv_server_opts o = {.listen = url,
                        .http = http_addr,
                        .batch_tokens = 16384,
                        .batch_deadline_ms = 2,
                        .max_queue_tokens = 1 << 20,
                        .max_inflight = 64,
                        .max_message_bytes = 1 << 20,
                        .max_texts = 16,
                        .max_text_bytes = 4000,
                        .api_key = NULL,
                        .http_opts = {.max_body_bytes = 1 << 20},
                        .model_id = "test-model"};
    return o;
}

static int setup(void **state) {
    (void)state;
    port = 20000 + (int)(getpid() % 20000);
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    snprintf(http_addr, sizeof http_addr, "127.0.0.1:%d", port + 1);
    cv_minilm_opts mo = {.threads = 2, .device = CV_DEVICE_CPU};
    if (cv_minilm_load(cv_minilm_default_dir(), &mo, &model)) return -1;
    size_t lens[NTEXTS];
    for (int i = 0; i < NTEXTS; i++)
        lens[i] = strlen(TEXTS[i]);
    if (cv_minilm_embed(model, TEXTS, lens, NTEXTS, &ref[0][0], NULL)) return -1;
    cv_server_opts o = opts();
    curl_global_init(CURL_GLOBAL_ALL);
    return cv_server_start(model, &o, &server) == CV_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    cv_server_drain(server, 1000);
    cv_server_free(server);
    cv_minilm_free(model);
    curl_global_cleanup();
    return 0;
}

static void assert_vec_eq(const float *a, const float *b) {
    for (int j = 0; j < DIM; j++)
        assert_true(fabsf(a[j] - b[j]) < 1e-5f);
}

/* ---- concurrency --------------------------------------------------------------------- */

typedef struct {
    int seed, ok, fail;
} client_arg;

static void *client_thread(void *p) {
    client_arg *a = p;
    cv_client *c;
    cv_client_opts co = {.timeout_ms = 20000, .retries = 5, .backoff_ms = 5, .f16 = a->seed % 3 == 0};
    if (cv_client_open(url, &co, &c)) return NULL;
    unsigned r = (unsigned)a->seed * 2654435761u;
    for (int k = 0; k < 12; k++) {
        int n = 1 + (int)((r >> 3) % 4), idx[4];
        const char *tx[4];
        size_t ln[4];
        for (int i = 0; i < n; i++) {
            r = r * 1103515245u + 12345u;
            idx[i] = (int)((r >> 8) % NTEXTS);
            tx[i] = TEXTS[idx[i]];
            ln[i] = strlen(tx[i]);
        }
        float out[4 * DIM];
        int dim = 0;
        char msg[256];
        if (cv_client_embed(c, tx, ln, n, out, DIM, &dim, msg, sizeof msg) != CV_OK || dim != DIM) {
            a->fail++;
            continue;
        }
        int same = 1;
        const float tol = co.f16 ? 2e-3f : 1e-5f; /* half precision on the wire */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < DIM; j++)
                if (fabsf(out[i * DIM + j] - ref[idx[i]][j]) > tol) same = 0;
        if (same)
            a->ok++;
        else
            a->fail++;
    }
    cv_client_close(c);
    return NULL;
}

/* Sends a request and closes the socket before the reply: the server's send fails. */
static void *vanishing_client(void *p) {
    (void)p;
    for (int k = 0; k < 10; k++) {
        nng_socket s;
        nng_req0_open(&s);
        if (nng_dial(s, url, NULL, 0) == 0) {
            const char *tx[1] = {"a request whose requester vanishes before the answer"};
            size_t ln[1] = {strlen(tx[0])};
            uint8_t *f;
            size_t size = cv_proto_encode_request(1000 + (uint64_t)k, 0, tx, ln, 1, &f);
            nng_send(s, f, size, 0);
            free(f);
        }
        nng_close(s);
        /* and raw garbage on the TCP port: not even the SP handshake */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            ssize_t w = write(fd, "GET / HTTP/1.0\r\n\r\n\xff\xfe garbage", 28);
            (void)w;
        }
        close(fd);
    }
    return NULL;
}

static void test_concurrent_clients(void **state) {
    (void)state;
    enum { N = 16 };
    pthread_t th[N + 2];
    client_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (client_arg){.seed = i + 1};
        pthread_create(&th[i], NULL, client_thread, &args[i]);
    }
    pthread_create(&th[N], NULL, vanishing_client, NULL);
    pthread_create(&th[N + 1], NULL, vanishing_client, NULL);
    int ok = 0, fail = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
        fail += args[i].fail;
    }
    pthread_join(th[N], NULL);
    pthread_join(th[N + 1], NULL);
    print_message("concurrent clients: %d requests got their own vectors, %d failed\n", ok, fail);
    assert_int_equal(fail, 0);
    assert_int_equal(ok, N * 12);
}

/* ---- bad input over nng ---------------------------------------------------------------- */

/* Sends raw bytes on a REQ socket; returns the reply status (or -1 without a reply). */
static int raw_request(const void *frame, size_t len, char *msg, size_t msg_len) {
    nng_socket s;
    nng_req0_open(&s);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000);
    int st = -1;
    if (nng_dial(s, url, NULL, 0) == 0 && nng_send(s, (void *)frame, len, 0) == 0) {
        void *buf;
        size_t n;
        if (nng_recv(s, &buf, &n, NNG_FLAG_ALLOC) == 0) {
            cv_proto_rep rep;
            if (cv_proto_decode_reply(buf, n, &rep) == CV_OK) {
                st = (int)rep.status;
                snprintf(msg, msg_len, "%s", rep.msg);
                cv_proto_rep_free(&rep);
            }
            nng_free(buf, n);
        }
    }
    nng_close(s);
    return st;
}

static int encode_and_send(const char *const *tx, const size_t *ln, uint32_t n, int mutate, char *msg) {
    uint8_t *f;
    size_t size = cv_proto_encode_request(7, 0, tx, ln, n, &f);
    if (mutate == 1) f[4] = 9;   /* version */
    if (mutate == 2) size -= 3;  /* truncated */
    if (mutate == 3) f[0] = 'X'; /* magic */
    int st = raw_request(f, size, msg, 256);
    free(f);
    return st;
}

static void test_bad_frames(void **state) {
    (void)state;
    char msg[256];
    const char *one[1] = {"hello"};
    size_t one_len[1] = {5};
    assert_int_equal(encode_and_send(one, one_len, 1, 1, msg), CV_ST_BAD_VERSION);
    print_message("wrong version: %s\n", msg);
    assert_int_equal(encode_and_send(one, one_len, 1, 2, msg), CV_ST_BAD_REQUEST);
    print_message("truncated: %s\n", msg);
    assert_non_null(strstr(msg, "truncated"));
    assert_int_equal(encode_and_send(one, one_len, 1, 3, msg), CV_ST_BAD_REQUEST);
    const char *many[17];
    size_t many_len[17];
    for (int i = 0; i < 17; i++)
        many[i] = "x", many_len[i] = 1;
    assert_int_equal(encode_and_send(many, many_len, 17, 0, msg), CV_ST_TOO_LARGE);
    print_message("too many texts: %s\n", msg);
    char *big = malloc(5000);
    memset(big, 'a', 5000);
    const char *bt[1] = {big};
    size_t bl[1] = {5000};
    assert_int_equal(encode_and_send(bt, bl, 1, 0, msg), CV_ST_TOO_LARGE);
    free(big);
    const char *bad8[2] = {"fine", "caf\xe9"};
    size_t bad8_len[2] = {4, 4};
    assert_int_equal(encode_and_send(bad8, bad8_len, 2, 0, msg), CV_ST_BAD_REQUEST);
    print_message("invalid UTF-8: %s\n", msg);
    assert_non_null(strstr(msg, "text 1"));
    assert_int_equal(raw_request("\x01\x02\x03", 3, msg, sizeof msg), CV_ST_BAD_REQUEST);
    assert_int_equal(raw_request("", 0, msg, sizeof msg), CV_ST_BAD_REQUEST);
    unsigned char garbage[300];
    for (int i = 0; i < 300; i++)
        garbage[i] = (unsigned char)(i * 37 + 11);
    assert_int_equal(raw_request(garbage, sizeof garbage, msg, sizeof msg), CV_ST_BAD_REQUEST);
    /* still serving */
    cv_client *c;
    assert_int_equal(cv_client_open(url, NULL, &c), CV_OK);
    float out[DIM];
    int dim;
    assert_int_equal(cv_client_embed(c, &TEXTS[2], (size_t[]){strlen(TEXTS[2])}, 1, out, DIM, &dim, NULL, 0),
                     CV_OK);
    assert_vec_eq(out, ref[2]);
    /* a search (the query flag): this model has no query prompt, so the same vector */
    assert_int_equal(
        cv_client_embed_query(c, &TEXTS[2], (size_t[]){strlen(TEXTS[2])}, 1, out, DIM, &dim, msg, sizeof msg),
        CV_OK);
    assert_vec_eq(out, ref[2]);
    /* the client reports a rejected request as such, without retrying */
    assert_int_equal(cv_client_embed(c, many, many_len, 17, out, DIM, &dim, msg, sizeof msg), CV_ERR_ARG);
    /* the info request (flag 0x04): the model's facts, for a sync --embed's stamp */
    char *info = NULL;
    dim = 0;
    assert_int_equal(cv_client_info(c, &info, &dim, msg, sizeof msg), CV_OK);
    assert_int_equal(dim, DIM);
    char want[200];
    snprintf(want, sizeof want, "\"revision\":\"%s\"", cv_minilm_facts(model)->revision);
    assert_non_null(strstr(info, "\"id\":\"" CV_MODEL_ID "\""));
    assert_non_null(strstr(info, want));
    assert_non_null(strstr(info, "\"served_as\":\"test-model\""));
    free(info);
    /* an info request with texts is malformed */
    uint8_t *frame;
    size_t fl = cv_proto_encode_request(7, CV_PROTO_FLAG_INFO, one, one_len, 1, &frame);
    assert_int_equal(raw_request(frame, fl, msg, sizeof msg), CV_ST_BAD_REQUEST);
    assert_non_null(strstr(msg, "info request"));
    free(frame);
    cv_client_close(c);
}

/* ---- busy ---------------------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    int done, ok, busy, other;
} tally;

static void tally_cb(void *arg, cv_err err, const float *vec, int n, int dim, const char *msg) {
    tally *t = arg;
    pthread_mutex_lock(&t->mu);
    t->done++;
    if (err == CV_OK)
        t->ok++;
    else if (err == CV_ERR_BUSY)
        t->busy++;
    else
        t->other++;
    pthread_mutex_unlock(&t->mu);
}

static void test_busy(void **state) {
    (void)state;
    /* a second server with a tiny queue and a long deadline */
    char u2[64];
    snprintf(u2, sizeof u2, "tcp://127.0.0.1:%d", port + 2);
    cv_server_opts o = opts();
    o.listen = u2;
    o.http = NULL;
    o.max_queue_tokens = 300;
    o.batch_deadline_ms = 300;
    cv_server *s2;
    assert_int_equal(cv_server_start(model, &o, &s2), CV_OK);
    cv_client *c;
    cv_client_opts co = {.timeout_ms = 10000, .retries = 0};
    assert_int_equal(cv_client_open(u2, &co, &c), CV_OK);
    tally t = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char text[600];
    for (int i = 0; i < 599; i++)
        text[i] = "abcdefgh "[i % 9];
    text[599] = 0;
    const char *tx[1] = {text};
    size_t ln[1] = {599};
    for (int i = 0; i < 12; i++)
        assert_int_equal(cv_client_embed_async(c, tx, ln, 1, tally_cb, &t), CV_OK);
    for (int w = 0; w < 500; w++) {
        pthread_mutex_lock(&t.mu);
        int d = t.done;
        pthread_mutex_unlock(&t.mu);
        if (d == 12) break;
        usleep(20000);
    }
    print_message("busy: %d ok, %d busy, %d other of 12\n", t.ok, t.busy, t.other);
    assert_int_equal(t.done, 12);
    assert_true(t.busy > 0);
    assert_true(t.ok > 0);
    assert_int_equal(t.other, 0);
    cv_client_close(c);
    cv_server_drain(s2, 2000);
    cv_server_free(s2);
}

/* ---- HTTP ---------------------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n;
} body;

static size_t collect(char *d, size_t sz, size_t nm, void *u) {
    body *b = u;
    b->p = realloc(b->p, b->n + sz * nm + 1);
    memcpy(b->p + b->n, d, sz * nm);
    b->n += sz * nm;
    b->p[b->n] = 0;
    return sz * nm;
}

static long http(const char *method, const char *path, const char *data, size_t len, const char *auth,
                 body *out) {
    CURL *h = curl_easy_init();
    char u[256];
    snprintf(u, sizeof u, "http://%s%s", http_addr, path);
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    if (auth) hd = curl_slist_append(hd, auth);
    curl_easy_setopt(h, CURLOPT_URL, u);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    out->p = NULL;
    out->n = 0;
    long code = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    return code;
}

static long post(const char *path, const char *json, body *out) {
    return http("POST", path, json, strlen(json), NULL, out);
}

static void check_error_json(const body *b) {
    json_t *o = json_loads(b->p, 0, NULL);
    assert_non_null(o);
    assert_true(json_is_string(json_object_get(json_object_get(o, "error"), "message")));
    json_decref(o);
}

static int b64v(char c) {
    return c >= 'A' && c <= 'Z'   ? c - 'A'
           : c >= 'a' && c <= 'z' ? c - 'a' + 26
           : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+'             ? 62
                                  : 63;
}

static void test_http(void **state) {
    (void)state;
    body b;
    assert_int_equal(http("GET", "/healthz", NULL, 0, NULL, &b), 200);
    assert_non_null(strstr(b.p, "\"ok\""));
    free(b.p);
    /* OpenAI-compatible, floats */
    char req[512];
    snprintf(req, sizeof req, "{\"model\":\"all-MiniLM-L6-v2\",\"input\":[\"%s\",\"%s\"]}", TEXTS[0],
             TEXTS[3]);
    assert_int_equal(post("/v1/embeddings", req, &b), 200);
    json_t *o = json_loads(b.p, 0, NULL);
    assert_non_null(o);
    json_t *data = json_object_get(o, "data");
    assert_int_equal(json_array_size(data), 2);
    json_t *e1 = json_object_get(json_array_get(data, 1), "embedding");
    assert_int_equal(json_array_size(e1), DIM);
    for (int j = 0; j < DIM; j++)
        assert_true(fabs(json_real_value(json_array_get(e1, (size_t)j)) - ref[3][j]) < 1e-5);
    assert_true(json_integer_value(json_object_get(json_object_get(o, "usage"), "total_tokens")) > 10);
    json_decref(o);
    free(b.p);
    /* base64: little-endian float32 */
    snprintf(req, sizeof req, "{\"input\":\"%s\",\"encoding_format\":\"base64\"}", TEXTS[4]);
    assert_int_equal(post("/v1/embeddings", req, &b), 200);
    o = json_loads(b.p, 0, NULL);
    const char *s64 =
        json_string_value(json_object_get(json_array_get(json_object_get(o, "data"), 0), "embedding"));
    assert_non_null(s64);
    assert_int_equal(strlen(s64), (DIM * 4 + 2) / 3 * 4);
    uint8_t raw[DIM * 4 + 3];
    size_t k = 0;
    for (size_t i = 0; s64[i] && s64[i + 1]; i += 4) {
        uint32_t v = (uint32_t)b64v(s64[i]) << 18 | (uint32_t)b64v(s64[i + 1]) << 12 |
                     (uint32_t)(s64[i + 2] == '=' ? 0 : b64v(s64[i + 2])) << 6 |
                     (uint32_t)(s64[i + 3] == '=' ? 0 : b64v(s64[i + 3]));
        raw[k++] = (uint8_t)(v >> 16), raw[k++] = (uint8_t)(v >> 8), raw[k++] = (uint8_t)v;
    }
    float v64[DIM];
    memcpy(v64, raw, sizeof v64);
    assert_vec_eq(v64, ref[4]);
    json_decref(o);
    free(b.p);
    /* /embed */
    snprintf(req, sizeof req, "{\"inputs\":\"%s\"}", TEXTS[1]);
    assert_int_equal(post("/embed", req, &b), 200);
    o = json_loads(b.p, 0, NULL);
    assert_int_equal(json_array_size(json_array_get(o, 0)), DIM);
    json_decref(o);
    free(b.p);
    /* bad bodies: each a 4xx with a JSON message */
    static const char *bad[] = {"{bad json",
                                "[1,2]",
                                "{\"input\":42}",
                                "{\"input\":[]}",
                                "{\"input\":[\"a\",7]}",
                                "{\"input\":\"a\",\"encoding_format\":\"hex\"}",
                                "{\"input\":\"a\",\"dimensions\":128}",
                                "{\"input\":\"caf\xe9\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        long code = post("/v1/embeddings", bad[i], &b);
        print_message("bad body %zu -> %ld %s\n", i, code, b.p ? b.p : "");
        assert_int_equal(code, 400);
        check_error_json(&b);
        free(b.p);
    }
    /* a model this server does not serve: 404, as OpenAI answers */
    assert_int_equal(post("/v1/embeddings", "{\"model\":\"text-embedding-3-small\",\"input\":\"a\"}", &b),
                     404);
    check_error_json(&b);
    free(b.p);
    assert_int_equal(post("/v1/embeddings", "{\"model\":\"test-model\",\"input\":\"a\"}", &b), 200);
    free(b.p);
    /* too many texts: 413 */
    char many[400] = "{\"inputs\":[";
    for (int i = 0; i < 17; i++)
        strcat(many, i ? ",\"x\"" : "\"x\"");
    strcat(many, "]}");
    assert_int_equal(post("/embed", many, &b), 413);
    check_error_json(&b);
    free(b.p);
    /* oversized body (> max_message_bytes): refused by the HTTP layer with a 4xx */
    size_t big = (1 << 20) + 100;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    long code = http("POST", "/embed", huge, big, NULL, &b);
    print_message("oversized body -> %ld %s\n", code, b.p ? b.p : "");
    assert_true(code >= 400 && code < 500);
    check_error_json(&b);
    free(b.p);
    assert_int_equal(http("GET", "/nope", NULL, 0, NULL, &b), 404);
    check_error_json(&b);
    free(huge);
    free(b.p);
    /* TEI's prompt_name: "query" (searches) or "document"; another name is refused */
    assert_int_equal(post("/embed", "{\"inputs\":\"a\",\"prompt_name\":\"query\"}", &b), 200);
    free(b.p);
    assert_int_equal(post("/embed", "{\"inputs\":\"a\",\"prompt_name\":\"classification\"}", &b), 400);
    check_error_json(&b);
    assert_non_null(strstr(b.p, "prompt_name"));
    free(b.p);
    /* still serving; metrics pass promtool */
    assert_int_equal(post("/embed", "{\"inputs\":[\"still here\"]}", &b), 200);
    free(b.p);
    assert_int_equal(http("GET", "/metrics", NULL, 0, NULL, &b), 200);
    assert_non_null(strstr(b.p, "cdcvec_requests_total{transport=\"http\"}"));
    assert_non_null(strstr(b.p, "cdcvec_errors_total{kind=\"bad_request\"}"));
    assert_non_null(strstr(b.p, "cdcvec_info{device=\"cpu\",model=\"test-model\"} 1"));
    char path[] = "/tmp/cdcvec-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b.p, b.n), (ssize_t)b.n);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    int rc = system(cmd);
    unlink(path);
    assert_int_equal(rc, 0);
    free(b.p);
}

static void test_http_api_key(void **state) {
    (void)state;
    char a2[64], u3[64];
    snprintf(a2, sizeof a2, "127.0.0.1:%d", port + 3);
    snprintf(u3, sizeof u3, "inproc://auth-test");
    cv_server_opts o = opts();
    o.listen = u3;
    o.http = a2;
    o.api_key = "s3cret";
    cv_server *s3;
    assert_int_equal(cv_server_start(model, &o, &s3), CV_OK);
    char saved[64];
    snprintf(saved, sizeof saved, "%s", http_addr);
    snprintf(http_addr, sizeof http_addr, "%s", a2);
    body b;
    const char *req = "{\"input\":\"hello\"}";
    assert_int_equal(http("POST", "/v1/embeddings", req, strlen(req), NULL, &b), 401);
    check_error_json(&b);
    free(b.p);
    assert_int_equal(http("POST", "/v1/embeddings", req, strlen(req), "Authorization: Bearer wrong", &b),
                     401);
    free(b.p);
    assert_int_equal(http("POST", "/v1/embeddings", req, strlen(req), "Authorization: Bearer s3cret", &b),
                     200);
    free(b.p);
    /* the scheme in any case, spaces around the key */
    assert_int_equal(http("POST", "/embed", "{\"inputs\":\"a\"}", 14, "Authorization: bEaReR   s3cret ", &b),
                     200);
    free(b.p);
    /* a key that is a prefix of the right one, or longer: refused */
    assert_int_equal(http("POST", "/embed", "{\"inputs\":\"a\"}", 14, "Authorization: Bearer s3cre", &b),
                     401);
    free(b.p);
    assert_int_equal(http("POST", "/embed", "{\"inputs\":\"a\"}", 14, "Authorization: Bearer s3cretX", &b),
                     401);
    free(b.p);
    /* /healthz and /metrics stay open by default */
    assert_int_equal(http("GET", "/healthz", NULL, 0, NULL, &b), 200);
    free(b.p);
    assert_int_equal(http("GET", "/metrics", NULL, 0, NULL, &b), 200);
    free(b.p);
    snprintf(http_addr, sizeof http_addr, "%s", saved);
    /* --metrics-auth 1: they need the key too */
    {
        char a4[64];
        snprintf(a4, sizeof a4, "127.0.0.1:%d", port + 4);
        cv_server_opts o4 = opts();
        o4.listen = NULL;
        o4.http = a4;
        o4.api_key = "s3cret";
        o4.http_opts.metrics_auth = 1;
        cv_server *s4;
        assert_int_equal(cv_server_start(model, &o4, &s4), CV_OK);
        snprintf(http_addr, sizeof http_addr, "%s", a4);
        assert_int_equal(http("GET", "/metrics", NULL, 0, NULL, &b), 401);
        check_error_json(&b);
        free(b.p);
        assert_int_equal(http("GET", "/healthz", NULL, 0, NULL, &b), 401);
        free(b.p);
        assert_int_equal(http("GET", "/metrics", NULL, 0, "Authorization: Bearer s3cret", &b), 200);
        free(b.p);
        snprintf(http_addr, sizeof http_addr, "%s", saved);
        cv_server_drain(s4, 1000);
        cv_server_free(s4);
    }
    /* inproc:// works for in-process users (cdcvec sync) */
    cv_client *c;
    assert_int_equal(cv_client_open(u3, NULL, &c), CV_OK);
    float out[DIM];
    int dim;
    assert_int_equal(cv_client_embed(c, &TEXTS[5], (size_t[]){0}, 1, out, DIM, &dim, NULL, 0), CV_OK);
    assert_vec_eq(out, ref[5]);
    cv_client_close(c);
    cv_server_drain(s3, 1000);
    cv_server_free(s3);
}

/* ---- query parameters (the search page's q) ---------------------------------------------- */

static void test_query_param(void **state) {
    (void)state;
    cv_buf v = {0};
    assert_int_equal(cv_http_query_param("/search?q=a+b%21&limit=3", "q", 100, &v), CV_QP_OK);
    assert_string_equal(v.p, "a b!");
    assert_int_equal(cv_http_query_param("/search?qq=x&q=y&q=z", "q", 100, &v), CV_QP_OK);
    assert_string_equal(v.p, "y"); /* the first q, not qq */
    assert_int_equal(cv_http_query_param("/search?limit=3", "q", 100, &v), CV_QP_ABSENT);
    assert_int_equal(cv_http_query_param("/search", "q", 100, &v), CV_QP_ABSENT);
    assert_int_equal(cv_http_query_param("/?q=", "q", 100, &v), CV_QP_OK);
    assert_int_equal(v.len, 0);
    assert_int_equal(cv_http_query_param("/?q=%e2%82%ac", "q", 100, &v), CV_QP_OK); /* the euro sign */
    assert_string_equal(v.p, "\xe2\x82\xac");
    assert_int_equal(cv_http_query_param("/?q=%F0%9F%98%80", "q", 100, &v), CV_QP_OK); /* 4 bytes */
    assert_int_equal(cv_http_query_param("/?q=a%00b", "q", 100, &v), CV_QP_NUL);
    assert_int_equal(cv_http_query_param("/?q=%ZZ", "q", 100, &v), CV_QP_BAD_ESCAPE);
    assert_int_equal(cv_http_query_param("/?q=%4", "q", 100, &v), CV_QP_BAD_ESCAPE);
    static const char *bad[] = {"/?q=%FF",          "/?q=%E2%82",    "/?q=%C0%AF", "/?q=%ED%A0%80",
                                "/?q=%F4%90%80%80", "/?q=%E0%80%80", "/?q=%80",    "/?q=a%C3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cv_http_query_param(bad[i], "q", 100, &v), CV_QP_BAD_UTF8);
    assert_int_equal(cv_http_query_param("/?q=abcd", "q", 4, &v), CV_QP_OK);
    assert_int_equal(cv_http_query_param("/?q=abcde", "q", 4, &v), CV_QP_TOO_LONG); /* never cut */
    cv_buf_free(&v);
}

/* ---- SIGTERM drains ---------------------------------------------------------------------- */

/* SIGTERM with requests in flight: every request is answered and the server exits 0. The work
 * is sized to this machine's measured speed (a slow CPU gets fewer requests, a fast one more)
 * and the drain limit is generous against that measure, so the test checks the drain, not the
 * machine's speed; SIGTERM is sent once the first answer shows the server is busy. */
static void test_sigterm_drains(void **state) {
    (void)state;
    /* long texts (256 tokens each) */
    char longtext[1400];
    for (int i = 0; i < 1399; i++)
        longtext[i] = "word "[i % 5];
    longtext[1399] = 0;
    const char *tx[8];
    size_t ln[8];
    for (int i = 0; i < 8; i++)
        tx[i] = longtext, ln[i] = strlen(longtext);
    /* one request's time on this machine, in-process with the same threads */
    cv_minilm *m;
    cv_minilm_opts mo = {.threads = 2, .device = CV_DEVICE_CPU};
    assert_int_equal(cv_minilm_load(cv_minilm_default_dir(), &mo, &m), CV_OK);
    static float vec[8 * DIM];
    cv_minilm_embed(m, tx, ln, 8, vec, NULL); /* warm-up */
    double t0 = cv_now();
    assert_int_equal(cv_minilm_embed(m, tx, ln, 8, vec, NULL), CV_OK);
    double per_req = cv_now() - t0;
    cv_minilm_free(m);
    /* about 1.5 s of queued work, at least 6 requests, at most 200; --batch-tokens holds one
     * request (8 x 256 tokens) per batch, so the answers come one batch at a time */
    int nreq = (int)(1.5 / (per_req > 1e-4 ? per_req : 1e-4));
    nreq = nreq < 6 ? 6 : nreq > 200 ? 200 : nreq;
    long drain_ms = (long)(20 * nreq * per_req * 1000) + 30000;
    char u4[64], portarg[80], drainarg[64];
    snprintf(u4, sizeof u4, "tcp://127.0.0.1:%d", port + 4);
    snprintf(portarg, sizeof portarg, "--listen=%s", u4);
    snprintf(drainarg, sizeof drainarg, "--drain-timeout-ms=%ld", drain_ms);
    pid_t pid = fork();
    if (pid == 0) {
        execl(cdcvec_bin, cdcvec_bin, "serve", portarg, "--http=", "--threads=2", "--batch-deadline-ms=50",
              "--batch-tokens=2048", drainarg, (char *)NULL);
        _exit(127);
    }
    cv_client *c;
    cv_client_opts co = {.timeout_ms = (int)drain_ms + 30000, .retries = 50, .backoff_ms = 50};
    assert_int_equal(cv_client_open(u4, &co, &c), CV_OK);
    /* wait until it answers */
    float out[DIM];
    int dim;
    assert_int_equal(cv_client_embed(c, &TEXTS[0], (size_t[]){strlen(TEXTS[0])}, 1, out, DIM, &dim, NULL, 0),
                     CV_OK);
    tally t = {.mu = PTHREAD_MUTEX_INITIALIZER};
    for (int i = 0; i < nreq; i++)
        assert_int_equal(cv_client_embed_async(c, tx, ln, 8, tally_cb, &t), CV_OK);
    /* the first answer: the server has the requests and is working through them */
    for (;;) {
        pthread_mutex_lock(&t.mu);
        int d = t.done;
        pthread_mutex_unlock(&t.mu);
        if (d > 0) break;
        usleep(2000);
    }
    pthread_mutex_lock(&t.mu);
    int done_at_kill = t.done;
    pthread_mutex_unlock(&t.mu);
    kill(pid, SIGTERM);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    /* replies already sent may still be on their way: wait for them while they keep coming */
    for (int last = -1, idle = 0; idle < 500;) {
        pthread_mutex_lock(&t.mu);
        int d = t.done;
        pthread_mutex_unlock(&t.mu);
        if (d == nreq) break;
        idle = d == last ? idle + 1 : 0;
        last = d;
        usleep(10000);
    }
    print_message("SIGTERM after %d of %d answers (%.0f ms each here, drain limit %ld ms): exit %d, %d ok, "
                  "%d other, %d unanswered\n",
                  done_at_kill, nreq, per_req * 1e3, drain_ms, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                  t.ok, t.other + t.busy, nreq - t.done);
    assert_true(done_at_kill < nreq); /* the drain had work to finish */
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(t.done, nreq);
    assert_int_equal(t.ok, nreq);
    cv_client_close(c);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
} jobs_done;
static jobs_done jd = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
static void job_done(cv_job *j) {
    (void)j;
    pthread_mutex_lock(&jd.mu);
    jd.done++;
    pthread_cond_broadcast(&jd.cv);
    pthread_mutex_unlock(&jd.mu);
}

/* A long job that fills the token budget (a batch of its own), then raw, unit and raw jobs: the
 * three share the next batch, and each gets what it asked for. */
static void test_batcher_raw(void **state) {
    (void)state;
    cv_metrics *reg = cv_metrics_new();
    cv_batcher *b = NULL;
    char *lng = malloc(4000);
    for (int i = 0; i < 3999; i++)
        lng[i] = i % 6 == 5 ? ' ' : (char)('a' + i % 5);
    lng[3999] = 0;
    const char *long_texts[16];
    size_t long_lens[16], lens[NTEXTS];
    for (int i = 0; i < 16; i++)
        long_texts[i] = lng, long_lens[i] = 3999;
    for (int i = 0; i < NTEXTS; i++)
        lens[i] = strlen(TEXTS[i]);
    cv_job jobs[4];
    assert_int_equal(cv_job_prepare(&jobs[0], model, CV_TEXT_DOCUMENT, long_texts, long_lens, 16), CV_OK);
    for (int k = 1; k < 4; k++) {
        assert_int_equal(cv_job_prepare(&jobs[k], model, CV_TEXT_DOCUMENT, TEXTS, lens, NTEXTS), CV_OK);
        jobs[k].raw = k != 2;
    }
    assert_int_equal(cv_batcher_new(model, jobs[0].ntokens, 0.002, 1 << 22, reg, &b), CV_OK);
    jd.done = 0;
    for (int k = 0; k < 4; k++) {
        jobs[k].done = job_done;
        assert_int_equal(cv_batcher_submit(b, &jobs[k]), CV_OK);
    }
    pthread_mutex_lock(&jd.mu);
    while (jd.done < 4)
        pthread_cond_wait(&jd.cv, &jd.mu);
    pthread_mutex_unlock(&jd.mu);
    size_t len = 0;
    char *text = cv_metrics_render(reg, &len);
    const char *bt = strstr(text, "\ncdcvec_batches_total ");
    const int batches = bt ? atoi(bt + strlen("\ncdcvec_batches_total ")) : -1;
    free(text);
    double unit_err = 0, dir_err = 0, min_norm = 1e9;
    for (int k = 1; k < 4; k++) {
        assert_int_equal(jobs[k].err, CV_OK);
        for (int i = 0; i < NTEXTS; i++) {
            const float *v = jobs[k].vec + (size_t)i * DIM;
            double n = 0;
            for (int j = 0; j < DIM; j++)
                n += (double)v[j] * v[j];
            n = sqrt(n);
            for (int j = 0; j < DIM; j++) {
                if (k == 2)
                    unit_err = fmax(unit_err, fabs(v[j] - ref[i][j]));
                else
                    dir_err = fmax(dir_err, fabs(v[j] / n - ref[i][j]));
            }
            if (k != 2)
                min_norm = fmin(min_norm, n);
            else
                unit_err = fmax(unit_err, fabs(n - 1));
        }
    }
    /* raw job 3 equals raw job 1 */
    assert_memory_equal(jobs[1].vec, jobs[3].vec, sizeof(float) * NTEXTS * DIM);
    print_message(
        "batcher: %d batches; unit job max |diff| %.2e; raw jobs: direction max |diff| %.2e, min norm "
        "%.3f\n",
        batches, unit_err, dir_err, min_norm);
    assert_int_equal(batches, 2); /* the three small jobs shared a batch */
    assert_true(unit_err < 1e-5);
    assert_true(dir_err < 1e-5);
    assert_true(min_norm > 1.5); /* all-MiniLM-L6-v2's mean-pooled vectors are several units long */
    for (int k = 0; k < 4; k++)
        cv_job_release(&jobs[k]);
    free(lng);
    cv_batcher_free(b);
    cv_metrics_free(reg);
}

int main(int argc, char **argv) {
    cdcvec_bin = argc > 1 ? argv[1] : "./cdcvec";
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_clients),
        cmocka_unit_test(test_bad_frames),
        cmocka_unit_test(test_busy),
        cmocka_unit_test(test_batcher_raw),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_http_api_key),
        cmocka_unit_test(test_query_param),
        cmocka_unit_test(test_sigterm_drains),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
