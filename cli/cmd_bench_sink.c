/* cmd_bench_sink.c: cdcvec bench sink: a store's write throughput with precomputed vectors
 * (the model is not measured): points/s and HTTP requests per 10,000 changes, driving the sink
 * the way the apply stage does (per transaction: begin, look up the stored text hashes, put in
 * chunks of 128, commit). bench/run_sink.sh runs it beside the tutorial's own ingest. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "../common/cv_time.h"
#include "../sink/sink.h"
#include "cli.h"

#define DIM   384
#define CHUNK 128

/* A reproducible unit vector per row (xorshift). */
static void fill_vec(float *v, uint64_t seed) {
    double n = 0;
    for (int j = 0; j < DIM; j++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        v[j] = (float)((double)(seed >> 11) / 9007199254740992.0 - 0.5);
        n += (double)v[j] * v[j];
    }
    for (int j = 0; j < DIM; j++)
        v[j] = (float)(v[j] / sqrt(n));
}

int cv_bench_sink(int argc, char **argv) {
    const char *url = NULL, *state = NULL, *table = "bench_sink";
    long rows = 10000, txn = 0, first = 1; /* txn 0: the store's cv_sink_batch_rows */
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--sink"))
            url = argv[i + 1];
        else if (!strcmp(argv[i], "--rows"))
            rows = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch-rows"))
            txn = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--first-id"))
            first = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--state"))
            state = argv[i + 1];
        else if (!strcmp(argv[i], "--table"))
            table = argv[i + 1];
        else {
            url = NULL;
            break;
        }
    }
    if (!url || rows < 1 || txn < 0) {
        fprintf(stderr, "usage: cdcvec bench sink --sink URL [--rows 10000] [--batch-rows N (default: the "
                        "store's batch)] [--first-id 1] "
                        "[--table bench_sink] [--state CONNINFO]\n");
        return 2;
    }
    static const char *kn[] = {"id"}, *kt[] = {"integer"};
    cv_sink_table t = {.schema = "public",
                       .table = table,
                       .nkeys = 1,
                       .key_names = kn,
                       .key_types = kt,
                       .dim = DIM,
                       .model_id = "bench",
                       .stream = "cdcvec_bench_sink",
                       .state_conninfo = state};
    cv_sink *s;
    cv_err e = cv_sink_open(url, &t, &s);
    if (e) {
        const char *kind, *fix;
        cv_sink_last_fault(NULL, &kind, &fix);
        fprintf(stderr, "bench sink: cannot open the sink (%s): %s\n", kind, fix ? fix : cv_strerror(e));
        return 1;
    }
    if (txn == 0) txn = cv_sink_batch_rows(s);
    float *vec = malloc(sizeof(float) * DIM * (size_t)rows);
    char(*keys)[24] = malloc(24 * (size_t)rows), (*pay)[64] = malloc(64 * (size_t)rows);
    const char **kp = malloc(sizeof(char *) * (size_t)rows);
    uint8_t(*hash)[32] = malloc(32 * (size_t)rows);
    cv_sink_row *r = calloc((size_t)rows, sizeof *r);
    int *found = calloc((size_t)txn, sizeof(int));
    uint8_t(*stored)[32] = malloc(32 * (size_t)txn);
    const char *const **kk = malloc(sizeof(char **) * (size_t)rows);
    CV_ASSERT(vec && keys && pay && kp && hash && r && found && stored && kk);
    for (long i = 0; i < rows; i++) {
        fill_vec(vec + (size_t)i * DIM, (uint64_t)(first + i) * 2654435761u + 1);
        snprintf(keys[i], 24, "%ld", first + i);
        snprintf(pay[i], 64, "{\"name\":\"bench %ld\",\"year\":%ld}", first + i, 2000 + (first + i) % 20);
        kp[i] = keys[i];
        unsigned int hl = 32;
        EVP_Digest(pay[i], strlen(pay[i]), hash[i], &hl, EVP_sha256(), NULL);
        r[i] = (cv_sink_row){.key = &kp[i], .vec = vec + (size_t)i * DIM, .payload = pay[i], .hash = hash[i]};
        kk[i] = &kp[i];
    }
    long req0, retry0, req1, retry1;
    cv_sink_stats(s, &req0, &retry0);
    double t0 = cv_now();
    for (long a = 0; !e && a < rows; a += txn) {
        long n = rows - a < txn ? rows - a : txn;
        e = cv_sink_begin(s, 0);
        if (!e) e = cv_sink_hashes(s, kk + a, (int)n, found, stored);
        for (long c = 0; !e && c < n; c += CHUNK)
            e = cv_sink_put(s, r + a + c, (int)(n - c < CHUNK ? n - c : CHUNK), (uint64_t)(a + n));
        if (!e) e = cv_sink_commit(s, (uint64_t)(a + n));
    }
    double dt = cv_now() - t0;
    cv_sink_stats(s, &req1, &retry1);
    if (e) {
        const char *kind, *fix;
        cv_sink_last_fault(s, &kind, &fix);
        fprintf(stderr, "bench sink: failed (%s): %s\n", kind, fix ? fix : cv_strerror(e));
    } else {
        long req = req1 - req0;
        printf("{\"store\":\"%s\",\"rows\":%ld,\"batch_rows\":%ld,\"seconds\":%.3f,\"points_per_s\":%.0f,"
               "\"requests\":%ld,\"retries\":%ld,\"requests_per_10k\":%.1f}\n",
               cv_sink_kind(url), rows, txn, dt, rows / dt, req, retry1 - retry0, req * 10000.0 / rows);
    }
    cv_sink_close(s);
    free(vec), free(keys), free(pay), free(kp), free(hash), free(r), free(found), free(stored), free(kk);
    return e ? 1 : 0;
}
