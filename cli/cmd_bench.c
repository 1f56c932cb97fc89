/* cmd_bench.c: cdcvec bench embed: sentences/s and tokens/s at several batch sizes,
 * single-text latency, tokenizer MB/s, and anchors (sentence-transformers, onnxruntime, ...) run
 * on the same texts in the same invocation, one sent/s and one ratio column each. */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h> /* openblas_get_corename, openblas_get_config */

#include "../common/cv_buf.h"
#include "../common/cv_log.h"
#include "bench_corpus.h"
#include "cli.h"

/* Embeds batches of bs texts, cycling through the corpus, for at least secs seconds. */
static void measure(cv_minilm *m, const corpus *c, int bs, double secs, double *sps, double *tps) {
    float *out = malloc(sizeof(float) * (size_t)bs * (size_t)cv_minilm_cfg(m)->hidden);
    const char **tx = malloc(sizeof(char *) * (size_t)bs);
    size_t *ln = malloc(sizeof(size_t) * (size_t)bs);
    long sent = 0, toks = 0;
    int pos = 0;
    /* warm-up: one batch */
    for (int i = 0; i < bs; i++)
        tx[i] = c->text[i % c->n], ln[i] = c->len[i % c->n];
    cv_minilm_embed(m, tx, ln, bs, out, NULL);
    double t0 = cv_now(), t;
    do {
        for (int i = 0; i < bs; i++) {
            tx[i] = c->text[pos];
            ln[i] = c->len[pos];
            pos = (pos + 1) % c->n;
        }
        long nt;
        cv_minilm_embed(m, tx, ln, bs, out, &nt);
        sent += bs;
        toks += nt;
        t = cv_now() - t0;
    } while (t < secs);
    *sps = (double)sent / t;
    *tps = (double)toks / t;
    free(out);
    free(tx);
    free(ln);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Parses the anchor's JSON lines {"set":..,"batch":..,"sent_per_s":..} into a table. */
typedef struct {
    char set[16];
    int batch;
    double sps;
} anchor_row;

static int run_anchor(const char *cmd, anchor_row *rows, int max) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, p) && n < max) {
        anchor_row r;
        if (sscanf(line, "{\"set\": \"%15[^\"]\", \"batch\": %d, \"sent_per_s\": %lf", r.set, &r.batch,
                   &r.sps) == 3)
            rows[n++] = r;
        else
            fputs(line, stderr);
    }
    int st = pclose(p);
    return st == 0 ? n : -1;
}

/* One --anchor NAME=CMD: the command that benchmarks NAME on the same texts, and its rows. */
enum { MAX_ANCHORS = 8, MAX_ANCHOR_ROWS = 128 };
typedef struct {
    const char *name, *cmd; /* point into argv; the name is name_len bytes */
    int name_len;
    anchor_row rows[MAX_ANCHOR_ROWS];
    int n; /* rows read; -1 when the command failed */
} anchor;

/* Splits NAME=CMD; without a NAME= prefix, CMD is sentence-transformers (the old --anchor CMD). */
static int anchor_parse(const char *arg, anchor *a) {
    size_t k = strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-");
    if (k > 0 && arg[k] == '=')
        a->name = arg, a->name_len = (int)k, a->cmd = arg + k + 1;
    else
        a->name = "sentence-transformers", a->name_len = (int)strlen(a->name), a->cmd = arg;
    a->n = 0;
    return *a->cmd ? 0 : -1;
}

static double anchor_lookup(const anchor_row *rows, int n, const char *set, int batch) {
    for (int i = 0; i < n; i++)
        if (rows[i].batch == batch && strcmp(rows[i].set, set) == 0) return rows[i].sps;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: cdcvec bench embed [options]\n\n"
               "  --model DIR      model folder\n"
               "  --threads N      threads (default: all online CPUs)\n"
               "  --seconds S      time per measurement (default 3)\n"
               "  --device D       auto (default), cpu or cuda\n"
               "  --precision P    fp32 (default), bf16x3 (CPU with AMX) or bf16 (CPU with AVX512-BF16)\n"
               "  --batches LIST   batch sizes, comma-separated (default 1,8,64,256)\n"
               "  --anchor NAME=CMD\n"
               "                   command that benchmarks NAME on the same texts; repeatable (up to 8),\n"
               "                   one sent/s and one ratio column each, in order; a bare CMD means\n"
               "                   sentence-transformers. It gets --short FILE --long FILE --batches LIST\n"
               "                   --seconds S --threads N --device D and prints\n"
               "                   {\"set\":..,\"batch\":..,\"sent_per_s\":..} lines\n"
               "                   (bench/st_anchor.py, bench/ort_anchor.py)\n");
}

/* bench pipeline / bench kafka: a script sets up a private PostgreSQL (and the mock broker)
 * around this binary. */
static int run_script(const char *what, const char *script_name, const char *rows) {
    char script[4096];
    snprintf(script, sizeof script, "%s/bench/%s", CDCVEC_SOURCE_DIR, script_name);
    execl("/bin/bash", "bash", script, rows, (char *)NULL);
    fprintf(stderr, "cdcvec bench %s: cannot run %s\n", what, script);
    return 1;
}

/* cdcvec bench embed's options. */
typedef struct {
    const char *model, *batch_list;
    anchor an[MAX_ANCHORS];
    int nan;
    cv_device dev;
    cv_precision precision;
    long threads, secs;
    int batches[32], nb;
} bench_opts;

/* --batches LIST into o->batches. 0, else 2 after printing why. */
static int parse_batches(bench_opts *o) {
    for (const char *p = o->batch_list; *p && o->nb < 32;) {
        char *end;
        long b = strtol(p, &end, 10);
        if (end == p || b < 1 || b > 65536 || (*end && *end != ',')) {
            fprintf(stderr,
                    "cdcvec bench: --batches: expected sizes in [1, 65536] separated by commas, got '%s'\n",
                    o->batch_list);
            return 2;
        }
        o->batches[o->nb++] = (int)b;
        p = *end ? end + 1 : end;
    }
    return 0;
}

/* -1 to go on, else the exit code (after --help or an error). */
static int parse_opts(int argc, char **argv, bench_opts *o) {
    enum { O_MODEL = 256, O_THREADS, O_SECONDS, O_ANCHOR, O_DEVICE, O_BATCHES, O_PRECISION };
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {"seconds", required_argument, 0, O_SECONDS},
                                         {"anchor", required_argument, 0, O_ANCHOR},
                                         {"device", required_argument, 0, O_DEVICE},
                                         {"precision", required_argument, 0, O_PRECISION},
                                         {"batches", required_argument, 0, O_BATCHES},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    o->model = cv_minilm_default_dir(), o->batch_list = "1,8,64,256";
    o->dev = CV_DEVICE_AUTO;
    o->precision = CV_PRECISION_FP32;
    o->threads = 0, o->secs = 3;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL: o->model = optarg; break;
        case O_THREADS:
            if (cv_cli_parse_int("--threads", optarg, 1, 256, &o->threads)) return 2;
            break;
        case O_SECONDS:
            if (cv_cli_parse_int("--seconds", optarg, 1, 3600, &o->secs)) return 2;
            break;
        case O_ANCHOR:
            if (o->nan == MAX_ANCHORS || anchor_parse(optarg, &o->an[o->nan++])) {
                fprintf(stderr, "cdcvec bench: --anchor: expected NAME=CMD (at most %d), got '%s'\n",
                        MAX_ANCHORS, optarg);
                return 2;
            }
            break;
        case O_PRECISION:
            if (cv_cli_parse_precision(optarg, &o->precision)) return 2;
            break;
        case O_DEVICE:
            if (cv_cli_parse_device(optarg, &o->dev)) return 2;
            break;
        case O_BATCHES: o->batch_list = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    return parse_batches(o) ? 2 : -1;
}

/* Runs each anchor on the same texts (written to temporary files) and reads its rows. */
static void run_anchors(bench_opts *o, const corpus *sets, int nt, cv_minilm *m) {
    char sp[] = "/tmp/cdcvec-bench-short-XXXXXX", lp[] = "/tmp/cdcvec-bench-long-XXXXXX";
    int fs = mkstemp(sp), fl = mkstemp(lp);
    if (fs >= 0) close(fs);
    if (fl >= 0) close(fl);
    if (fs < 0 || fl < 0 || write_corpus(&sets[0], sp) || write_corpus(&sets[1], lp)) {
        fprintf(stderr, "cdcvec bench: cannot write the corpus for the anchors\n");
    } else {
        for (int i = 0; i < o->nan; i++) {
            anchor *an = &o->an[i];
            cv_buf cmd = {0};
            cv_buf_printf(&cmd, "%s --short %s --long %s --batches %s --seconds %ld --threads %d --device %s",
                          an->cmd, sp, lp, o->batch_list, o->secs, nt, cv_minilm_device(m));
            fprintf(stderr, "anchor %.*s: %s\n", an->name_len, an->name, cmd.oom ? "(out of memory)" : cmd.p);
            an->n = cmd.oom ? -1 : run_anchor(cmd.p, an->rows, MAX_ANCHOR_ROWS);
            if (an->n < 0)
                fprintf(stderr, "cdcvec bench: anchor %.*s failed; no ratios for it\n", an->name_len,
                        an->name);
            cv_buf_free(&cmd);
        }
    }
    unlink(sp);
    unlink(lp);
}

/* Prints the tokenizer's throughput on one thread, and what a 10 MB text costs (what its first
 * 256 tokens cost), after the bench's header line. */
static void bench_tokenizer(cv_minilm *m, const corpus *sets, int nt, long secs) {
    const cv_tok *tok = cv_minilm_tok(m);
    int32_t ids[512];
    double bytes = 0, t0 = cv_now(), t;
    long ntexts = 0;
    do {
        for (int i = 0; i < sets[0].n; i++) {
            cv_tok_encode(tok, sets[0].text[i], sets[0].len[i], ids, cv_minilm_cfg(m)->max_seq);
            bytes += (double)sets[0].len[i];
        }
        ntexts += sets[0].n;
        t = cv_now() - t0;
    } while (t < 1.0);
    double tok_mbs = bytes / t / 1e6;
    size_t big_len = 10u << 20;
    char *big = malloc(big_len + 1);
    for (size_t i = 0; i < big_len; i++)
        big[i] = sets[1].text[0][i % sets[1].len[0]];
    t0 = cv_now();
    for (int i = 0; i < 100; i++)
        cv_tok_encode(tok, big, big_len, ids, cv_minilm_cfg(m)->max_seq);
    double big_us = (cv_now() - t0) / 100 * 1e6;
    free(big);

    printf("# cdcvec bench embed: device=%s threads=%d seconds/measurement=%ld blas_core=%s "
           "blas_config=\"%s\"\n",
           cv_minilm_device(m), nt, secs, openblas_get_corename(), openblas_get_config());
    printf("tokenizer: %.1f MB/s on one thread (%ld short texts); 10 MB text: %.1f us per encode\n\n",
           tok_mbs, ntexts, big_us);
}

/* The table: sent/s, tok/s and GEMM GFLOP/s per set and batch size, beside each anchor. */
static void bench_table(cv_minilm *m, const bench_opts *o, const corpus *sets) {
    /* GEMM work per token: 2 flops per weight of the encoder's matrices */
    const cv_minilm_config *cf = cv_minilm_cfg(m);
    const double gemm_flop =
        2.0 * cf->layers * (4.0 * cf->hidden * cf->hidden + 2.0 * (double)cf->hidden * cf->intermediate);
    printf("| set | batch | cdcvec sent/s | cdcvec tok/s | GEMM GFLOP/s |");
    for (int i = 0; i < o->nan; i++)
        printf(" %.*s sent/s | ratio |", o->an[i].name_len, o->an[i].name);
    printf("\n|---|---:|---:|---:|---:|");
    for (int i = 0; i < o->nan; i++)
        printf("---:|---:|");
    printf("\n");
    for (int s = 0; s < 2; s++)
        for (int b = 0; b < o->nb; b++) {
            double sps, tps;
            measure(m, &sets[s], o->batches[b], (double)o->secs, &sps, &tps);
            printf("| %s | %d | %.1f | %.0f | %.1f |", sets[s].name, o->batches[b], sps, tps,
                   tps * gemm_flop / 1e9);
            for (int i = 0; i < o->nan; i++) {
                double a = anchor_lookup(o->an[i].rows, o->an[i].n, sets[s].name, o->batches[b]);
                if (a > 0)
                    printf(" %.1f | %.2fx |", a, sps / a);
                else
                    printf(" - | - |");
            }
            printf("\n");
            fflush(stdout);
        }
}

/* Single-text latency over the short set. */
static void bench_latency(cv_minilm *m, const corpus *c) {
    const int runs = 300;
    double lat[300];
    float out[1024];
    for (int i = 0; i < runs; i++) {
        const char *tx = c->text[i % c->n];
        size_t ln = c->len[i % c->n];
        double a = cv_now();
        cv_minilm_embed(m, &tx, &ln, 1, out, NULL);
        lat[i] = (cv_now() - a) * 1e3;
    }
    qsort(lat, runs, sizeof(double), cmp_double);
    printf("\nsingle-text latency (short set, %d runs): p50 %.2f ms, p99 %.2f ms\n", runs, lat[runs / 2],
           lat[runs * 99 / 100]);
}

int cv_cmd_bench(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "server") == 0) return cv_bench_server(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "sink") == 0) return cv_bench_sink(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "tables") == 0)
        return run_script("tables", "run_tables.sh", argc > 2 ? argv[2] : "10000");
    if (argc >= 2 && strcmp(argv[1], "pipeline") == 0)
        return run_script("pipeline", "run_pipeline.sh", argc > 2 ? argv[2] : "100000");
    if (argc >= 2 && strcmp(argv[1], "kafka") == 0)
        return run_script("kafka", "run_kafka.sh", argc > 2 ? argv[2] : "3000");
    if (argc >= 2 && strcmp(argv[1], "chunks") == 0)
        return run_script("chunks", "run_chunks.sh", argc > 2 ? argv[2] : "1000");
    if (argc < 2 || strcmp(argv[1], "embed") != 0) {
        fprintf(stderr, "cdcvec bench: expected 'embed', 'server', 'pipeline [ROWS]', 'tables [ROWS]', "
                        "'kafka [ROWS]' or 'chunks [DOCS]'\n");
        usage(stderr);
        return 2;
    }
    bench_opts o = {0};
    int rc = parse_opts(argc - 1, argv + 1, &o);
    if (rc >= 0) return rc;
    cv_minilm *m;
    if (cv_cli_load_model(o.model, (int)o.threads, o.dev, o.precision, &m)) return 1;
    const int nt = cv_minilm_threads(m);
    corpus sets[2];
    corpus_make(&sets[0], "short", 2048, 10, 48, 0x9E3779B97F4A7C15ull); /* ~15-60 tokens */
    corpus_make(&sets[1], "long", 256, 260, 320, 0xD1B54A32D192ED03ull); /* truncated at 256 */
    if (o.nan) run_anchors(&o, sets, nt, m);
    bench_tokenizer(m, sets, nt, o.secs);
    bench_table(m, &o, sets);
    bench_latency(m, &sets[0]);
    corpus_free(&sets[0]);
    corpus_free(&sets[1]);
    cv_minilm_free(m);
    return 0;
}
