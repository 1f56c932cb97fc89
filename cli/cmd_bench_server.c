/* cmd_bench_server.c: cdcvec bench server: requests/s and latency through the nng server
 * on TCP loopback, at 1, 8 and 64 concurrent clients with 1 and 32 texts per request,
 * beside the in-process engine's own throughput and latency measured in the same run. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/cv_log.h"
#include "../server/client.h"
#include "../server/server.h"
#include "bench_corpus.h"
#include "cli.h"

typedef struct {
    const char *url;
    const corpus *c;
    int per_req, offset, dim; /* dim: the model's */
    double until;
    long reqs, texts, errors;
    double *lat;
    long nlat, cap;
} bench_client;

static void *client_run(void *p) {
    bench_client *b = p;
    cv_client *cl;
    cv_client_opts o = {.timeout_ms = 60000, .retries = 100, .backoff_ms = 1};
    if (cv_client_open(b->url, &o, &cl)) return NULL;
    const char **tx = malloc(sizeof(char *) * (size_t)b->per_req);
    size_t *ln = malloc(sizeof(size_t) * (size_t)b->per_req);
    float *out = malloc(sizeof(float) * (size_t)b->dim * (size_t)b->per_req);
    int pos = b->offset;
    while (cv_now() < b->until) {
        for (int i = 0; i < b->per_req; i++, pos = (pos + 1) % b->c->n)
            tx[i] = b->c->text[pos], ln[i] = b->c->len[pos];
        double t0 = cv_now();
        int dim;
        if (cv_client_embed(cl, tx, ln, b->per_req, out, b->dim, &dim, NULL, 0) != CV_OK) {
            b->errors++;
            continue;
        }
        if (b->nlat == b->cap) {
            b->cap = b->cap ? 2 * b->cap : 1024;
            b->lat = realloc(b->lat, sizeof(double) * (size_t)b->cap);
        }
        b->lat[b->nlat++] = cv_now() - t0;
        b->reqs++;
        b->texts += b->per_req;
    }
    free(tx), free(ln), free(out);
    cv_client_close(cl);
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Engine alone: sentences/s at batch bs for secs, or the p50 latency of single texts. */
static double engine_rate(cv_minilm *m, const corpus *c, int bs, double secs) {
    const char **tx = malloc(sizeof(char *) * (size_t)bs);
    size_t *ln = malloc(sizeof(size_t) * (size_t)bs);
    float *out = malloc(sizeof(float) * (size_t)cv_minilm_facts(m)->dim * (size_t)bs);
    long n = 0;
    int pos = 0;
    double t0 = cv_now(), t;
    do {
        for (int i = 0; i < bs; i++, pos = (pos + 1) % c->n)
            tx[i] = c->text[pos], ln[i] = c->len[pos];
        cv_minilm_embed(m, tx, ln, bs, out, NULL);
        n += bs;
        t = cv_now() - t0;
    } while (t < secs);
    free(tx), free(ln), free(out);
    return (double)n / t;
}

static double engine_p50(cv_minilm *m, const corpus *c, int runs) {
    double *lat = malloc(sizeof(double) * (size_t)runs);
    float *out = malloc(sizeof(float) * (size_t)cv_minilm_facts(m)->dim);
    for (int i = 0; i < runs; i++) {
        const char *tx = c->text[i % c->n];
        size_t ln = c->len[i % c->n];
        double t0 = cv_now();
        cv_minilm_embed(m, &tx, &ln, 1, out, NULL);
        lat[i] = cv_now() - t0;
    }
    qsort(lat, (size_t)runs, sizeof(double), cmp_d);
    double p = lat[runs / 2];
    free(lat), free(out);
    return p;
}

int cv_bench_server(int argc, char **argv) {
    long secs = 3, threads = 0;
    const char *model = cv_minilm_default_dir();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            if (cv_cli_parse_int("--seconds", argv[++i], 1, 3600, &secs)) return 2;
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            if (cv_cli_parse_int("--threads", argv[++i], 1, 256, &threads)) return 2;
        } else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model = argv[++i];
        } else {
            fprintf(stderr, "usage: cdcvec bench server [--seconds S] [--threads N] [--model DIR]\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    cv_minilm *m;
    if (cv_cli_load_model(model, (int)threads, CV_DEVICE_AUTO, CV_PRECISION_FP32, &m)) return 1;
    corpus c;
    corpus_make(&c, "short", 2048, 10, 48, 0x9E3779B97F4A7C15ull);
    /* the engine alone, same texts */
    engine_rate(m, &c, 64, 0.5); /* warm-up */
    const double eng_rate = engine_rate(m, &c, 256, (double)secs), eng_p50 = engine_p50(m, &c, 300);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", 30000 + (int)(getpid() % 20000));
    cv_server_opts o = {.listen = url,
                        .batch_tokens = 16384,
                        .batch_deadline_ms = 2,
                        .max_queue_tokens = 1 << 22,
                        .max_inflight = 256,
                        .max_message_bytes = 1 << 24,
                        .max_texts = 4096,
                        .max_text_bytes = 1 << 20,
                        .model_id = "bench"};
    cv_server *s;
    if (cv_server_start(m, &o, &s)) return 1;
    printf("# cdcvec bench server: device=%s threads=%d, nng over TCP loopback, %ld s per row\n",
           cv_minilm_device(m), cv_minilm_threads(m), secs);
    printf("engine alone (same run): %.1f sentences/s at batch 256; single text p50 %.3f ms\n\n", eng_rate,
           eng_p50 * 1e3);
    printf("| clients | texts/request | requests/s | sentences/s | p50 ms | p99 ms | vs engine |\n");
    printf("|---:|---:|---:|---:|---:|---:|---|\n");
    static const int clients[] = {1, 8, 64}, per[] = {1, 32};
    for (int pi = 0; pi < 2; pi++)
        for (int ci = 0; ci < 3; ci++) {
            const int nc = clients[ci];
            bench_client *b = calloc((size_t)nc, sizeof *b);
            pthread_t *th = malloc(sizeof(pthread_t) * (size_t)nc);
            double until = cv_now() + (double)secs, t0 = cv_now();
            for (int i = 0; i < nc; i++) {
                b[i] = (bench_client){.url = url,
                                      .c = &c,
                                      .dim = cv_minilm_facts(m)->dim,
                                      .per_req = per[pi],
                                      .offset = (i * 97) % c.n,
                                      .until = until};
                pthread_create(&th[i], NULL, client_run, &b[i]);
            }
            long reqs = 0, texts = 0, errors = 0, nlat = 0;
            for (int i = 0; i < nc; i++) {
                pthread_join(th[i], NULL);
                reqs += b[i].reqs, texts += b[i].texts, errors += b[i].errors, nlat += b[i].nlat;
            }
            double el = cv_now() - t0;
            double *all = malloc(sizeof(double) * (size_t)(nlat ? nlat : 1));
            long k = 0;
            for (int i = 0; i < nc; i++) {
                memcpy(all + k, b[i].lat, sizeof(double) * (size_t)b[i].nlat);
                k += b[i].nlat;
                free(b[i].lat);
            }
            qsort(all, (size_t)nlat, sizeof(double), cmp_d);
            double p50 = nlat ? all[nlat / 2] : 0, p99 = nlat ? all[nlat * 99 / 100] : 0;
            char vs[96];
            if (nc == 1 && per[pi] == 1)
                snprintf(vs, sizeof vs, "%+.3f ms vs engine p50", (p50 - eng_p50) * 1e3);
            else
                snprintf(vs, sizeof vs, "%.0f%% of engine sentences/s",
                         100.0 * (double)texts / el / eng_rate);
            printf("| %d | %d | %.1f | %.1f | %.2f | %.2f | %s%s |\n", nc, per[pi], (double)reqs / el,
                   (double)texts / el, p50 * 1e3, p99 * 1e3, vs, errors ? " (errors!)" : "");
            fflush(stdout);
            free(all), free(b), free(th);
        }
    cv_server_drain(s, 5000);
    cv_server_free(s);
    corpus_free(&c);
    cv_minilm_free(m);
    return 0;
}
