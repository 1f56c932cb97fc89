/* main.c: the cdcvec command: dispatch to subcommands, shared option helpers. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "../common/cv_signal.h"
#include "../kernels/blas.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(
        f,
        "cdcvec %s: keep a vector index in step with PostgreSQL tables\n\n"
        "usage: cdcvec <command> [options]\n\n"
        "commands:\n"
        "  embed    embed texts (one per line, or JSONL) into vectors\n"
        "  serve    inference server: nng binary protocol + HTTP (/v1/embeddings, /metrics)\n"
        "  sync     keep a pgvector index in step with a PostgreSQL table (logical replication)\n"
        "  backfill re-embed a table on demand (skips unchanged texts unless --force 1)\n"
        "  search   nearest rows to a query: cdcvec search \"books like star wars\"\n"
        "  verify   compare the store with the source; --repair 1 fixes the differences\n"
        "  migrate  rebuild a table's index with another model or template beside the live one, verify it,\n"
        "           switch searches to it atomically (--rollback, --drop-old)\n"
        "  dead-letters list|retry|clear  changes that could not be applied: print, re-apply, remove\n"
        "  wait     wait until a running sync made a committed LSN searchable (read-your-writes)\n"
        "  capture  PostgreSQL changes into a Kafka topic (the first stage of the Kafka path)\n"
        "  worker   embed a Kafka change topic into an embeddings topic (consumer group)\n"
        "  sink     apply a Kafka embeddings topic to a vector store\n"
        "  bench    benchmarks: bench embed | server | pipeline [ROWS] | kafka [ROWS] | chunks [DOCS]\n\n"
        "Run 'cdcvec <command> --help' for a command's options.\n"
        "Environment: CDCVEC_MODEL_DIR (model folder), CDCVEC_LOG (debug|info|warn|error|off).\n",
        CDCVEC_VERSION);
}

void cv_cli_on_stop(volatile sig_atomic_t *flag) { cv_signal_on_stop(flag); }

int cv_cli_point_ids(const char *cmd, const char *s, int *uuid) {
    if (!s || !*s || strcmp(s, "auto") == 0)
        *uuid = 0;
    else if (strcmp(s, "uuid") == 0)
        *uuid = 1;
    else {
        fprintf(stderr, "cdcvec %s: --point-ids: expected auto or uuid, got '%s'\n", cmd, s);
        return -1;
    }
    return 0;
}

int cv_cli_parse_device(const char *s, cv_device *out) {
    if (strcmp(s, "auto") == 0)
        *out = CV_DEVICE_AUTO;
    else if (strcmp(s, "cpu") == 0)
        *out = CV_DEVICE_CPU;
    else if (strcmp(s, "cuda") == 0)
        *out = CV_DEVICE_CUDA;
    else {
        fprintf(stderr, "cdcvec: --device: expected auto, cpu or cuda, got '%s'\n", s);
        return -1;
    }
    return 0;
}

int cv_cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "cdcvec: %s: expected an integer in [%ld, %ld], got '%s'\n", opt, lo, hi,
                s ? s : "(nothing)");
        return -1;
    }
    *out = v;
    return 0;
}

int cv_cli_parse_precision(const char *s, cv_precision *out) {
    if (strcmp(s, "fp32") == 0)
        *out = CV_PRECISION_FP32;
    else if (strcmp(s, "bf16") == 0)
        *out = CV_PRECISION_BF16;
    else if (strcmp(s, "bf16x3") == 0)
        *out = CV_PRECISION_BF16X3;
    else {
        fprintf(stderr, "cdcvec: --precision: expected fp32, bf16x3 or bf16, got '%s'\n", s);
        return -1;
    }
    return 0;
}

int cv_cli_load_model(const char *dir, int threads, cv_device dev, cv_precision precision, cv_minilm **out) {
    cv_minilm_opts o = {.threads = threads, .device = dev, .precision = precision};
    cv_err err = cv_minilm_load(dir, &o, out);
    if (err == CV_ERR_NOTFOUND || err == CV_ERR_FORMAT || err == CV_ERR_MISMATCH) {
        const char *fix = cv_minilm_fetch_fix();
        if (strncmp(fix, "python3", 7) == 0)
            fprintf(stderr,
                    "cdcvec: cannot load the model from %s: %s\n"
                    "  fetch it with: python3 models/fetch_model.py --dest %s\n",
                    dir, cv_strerror(err), dir);
        else
            fprintf(stderr, "cdcvec: cannot load the model from %s: %s\n  %s\n", dir, cv_strerror(err), fix);
    } else if (err) {
        fprintf(stderr, "cdcvec: cannot start the model: %s (see the log line above)\n", cv_strerror(err));
    }
    return err ? -1 : 0;
}

int main(int argc, char **argv) {
    cv_log_init_from_env();
    cv_blas_ensure_best(argv); /* may re-execute this program with the right OpenBLAS kernel */
    cv_signal_init();          /* SIGHUP: ignored and logged, in every command */
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        cv_blas_info bi;
        cv_blas_info_get(&bi);
        printf(
            "cdcvec %s\nBLAS: %s, kernel %s (chosen by %s; OpenBLAS's own choice %s; best for this CPU %s)\n",
            CDCVEC_VERSION, bi.library, bi.kernel, bi.chosen_by, bi.openblas_default, bi.best);
        return 0;
    }
    if (strcmp(argv[1], "embed") == 0) return cv_cmd_embed(argc - 1, argv + 1);
    if (strcmp(argv[1], "bench") == 0) return cv_cmd_bench(argc - 1, argv + 1);
    if (strcmp(argv[1], "serve") == 0) return cv_cmd_serve(argc - 1, argv + 1);
    if (strcmp(argv[1], "wait") == 0) return cv_cmd_wait(argc - 1, argv + 1);
    if (strcmp(argv[1], "capture") == 0 || strcmp(argv[1], "worker") == 0 || strcmp(argv[1], "sink") == 0)
        return cv_cmd_kafka(argc - 1, argv + 1, argv[1]);
    if (strcmp(argv[1], "sync") == 0 || strcmp(argv[1], "backfill") == 0 || strcmp(argv[1], "search") == 0 ||
        strcmp(argv[1], "verify") == 0 || strcmp(argv[1], "dead-letters") == 0 ||
        strcmp(argv[1], "migrate") == 0)
        return cv_cmd_sync(argc - 1, argv + 1, argv[1]);
    fprintf(stderr, "cdcvec: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
