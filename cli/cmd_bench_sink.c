/* cmd_bench_sink.c: cdcvec bench sink: a store's write throughput with precomputed vectors
 * (the model is not measured): points/s and HTTP requests per 10,000 changes, driving the sink
 * the way the apply stage does (per transaction: begin, look up the stored text hashes, put in
 * chunks of 128, commit). bench/run_sink.sh runs it beside the tutorial's own ingest;
 * bench/run_sink_pg.sh into pgvector, without and with the HNSW index, 1 and N writers. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "../common/cv_time.h"
#include "../models/model.h"
#include "../sink/sink.h"
#include "cli.h"

#define DIM   CV_MODEL_DIM /* random vectors of the model's size */
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

/* Writes rows first..first+count as the apply stage does, in transactions of txn rows (begin,
 * look up the stored hashes, put in chunks of CHUNK, commit). 0 or an error. */
static cv_err write_range(cv_sink *s, long first, long count, long txn, double *seconds) {
    float *vec = malloc(sizeof(float) * DIM * (size_t)txn);
    char(*keys)[24] = malloc(24 * (size_t)txn), (*pay)[64] = malloc(64 * (size_t)txn);
    const char **kp = malloc(sizeof(char *) * (size_t)txn);
    uint8_t(*hash)[32] = malloc(32 * (size_t)txn);
    cv_sink_row *r = calloc((size_t)txn, sizeof *r);
    int *found = calloc((size_t)txn, sizeof(int));
    uint8_t(*stored)[32] = malloc(32 * (size_t)txn);
    const char *const **kk = malloc(sizeof(char **) * (size_t)txn);
    CV_ASSERT(vec && keys && pay && kp && hash && r && found && stored && kk);
    cv_err e = CV_OK;
    double spent = 0;
    for (long a = 0; !e && a < count; a += txn) {
        long n = count - a < txn ? count - a : txn;
        for (long i = 0; i < n; i++) { /* the vectors exist before the clock runs */
            long id = first + a + i;
            fill_vec(vec + (size_t)i * DIM, (uint64_t)id * 2654435761u + 1);
            snprintf(keys[i], 24, "%ld", id);
            snprintf(pay[i], 64, "{\"name\":\"bench %ld\",\"year\":%ld}", id, 2000 + id % 20);
            kp[i] = keys[i];
            unsigned int hl = 32;
            EVP_Digest(pay[i], strlen(pay[i]), hash[i], &hl, EVP_sha256(), NULL);
            r[i] = (cv_sink_row){
                .key = &kp[i], .vec = vec + (size_t)i * DIM, .payload = pay[i], .hash = hash[i]};
            kk[i] = &kp[i];
        }
        double t0 = cv_now();
        e = cv_sink_begin(s, 0);
        if (!e) e = cv_sink_hashes(s, kk, (int)n, found, stored);
        for (long c = 0; !e && c < n; c += CHUNK)
            e = cv_sink_put(s, r + c, (int)(n - c < CHUNK ? n - c : CHUNK), (uint64_t)(first + a + n));
        if (!e) e = cv_sink_commit(s, (uint64_t)(first + a + n));
        spent += cv_now() - t0;
    }
    *seconds = spent;
    free(vec), free(keys), free(pay), free(kp), free(hash), free(r), free(found), free(stored), free(kk);
    return e;
}

static void fail(cv_sink *s, const char *what, cv_err e) {
    const char *kind, *fix;
    cv_sink_last_fault(s, &kind, &fix);
    fprintf(stderr, "bench sink: %s (%s): %s\n", what, kind, fix ? fix : cv_strerror(e));
}

int cv_bench_sink(int argc, char **argv) {
    const char *url = NULL, *state = NULL, *table = "bench_sink";
    long rows = 10000, txn = 0, first = 1, writers = 1, prefill = 0, index = 0;
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
        else if (!strcmp(argv[i], "--writers"))
            writers = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--prefill"))
            prefill = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--index"))
            index = atol(argv[i + 1]);
        else {
            url = NULL;
            break;
        }
    }
    if (!url || rows < 1 || txn < 0 || writers < 1 || writers > 16 || prefill < 0 || index < 0 || index > 1) {
        fprintf(stderr,
                "usage: cdcvec bench sink --sink URL [--rows 10000] [--batch-rows N (default: the store's "
                "batch)] "
                "[--first-id 1] [--writers 1..16 (pgvector)] [--prefill N (rows loaded first, timed apart)] "
                "[--index 0|1 (pgvector: build the HNSW index before the timed rows, as after a backfill)] "
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
                       .state_conninfo = state,
                       .writers = (int)writers,
                       .key_exact = 1};
    cv_sink *s;
    cv_err e = cv_sink_open(url, &t, &s);
    if (e) {
        fail(NULL, "cannot open the sink", e);
        return 1;
    }
    if (txn == 0) txn = cv_sink_batch_rows(s);
    double pre_s = 0, index_s = 0, dt = 0;
    if (prefill) e = write_range(s, first, prefill, cv_sink_batch_rows(s), &pre_s);
    if (!e && index) {
        double t0 = cv_now();
        e = cv_sink_backfill_mark(s, 0, 1); /* a finished backfill builds the index */
        index_s = cv_now() - t0;
    }
    long req0, retry0, req1, retry1;
    cv_sink_stats(s, &req0, &retry0);
    if (!e) e = write_range(s, first + prefill, rows, txn, &dt);
    cv_sink_stats(s, &req1, &retry1);
    if (e) {
        fail(s, "failed", e);
    } else {
        long req = req1 - req0;
        printf("{\"store\":\"%s\",\"writers\":%ld,\"rows\":%ld,\"batch_rows\":%ld,\"seconds\":%.3f,"
               "\"points_per_s\":%.0f,\"requests\":%ld,\"retries\":%ld,\"requests_per_10k\":%.1f",
               cv_sink_kind(url), writers, rows, txn, dt, rows / dt, req, retry1 - retry0,
               req * 10000.0 / rows);
        if (prefill) printf(",\"prefill_rows\":%ld,\"prefill_rows_per_s\":%.0f", prefill, prefill / pre_s);
        if (index) printf(",\"index_build_s\":%.2f", index_s);
        printf("}\n");
    }
    cv_sink_close(s);
    return e ? 1 : 0;
}
