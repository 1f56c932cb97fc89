/* cmd_embed.c: cdcvec embed: texts in (lines or JSONL), vectors out (JSONL or raw f32). */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_log.h"
#include "cli.h"
#include "textio.h"

static void usage(FILE *f) {
    fprintf(f, "usage: cdcvec embed [options] [FILE]\n\n"
               "Reads texts from FILE (default stdin), one per line, and writes one vector per text.\n\n"
               "  --jsonl             input lines are JSON: a string, or an object with a \"text\" field\n"
               "  --field NAME        with --jsonl, the object field holding the text (default text)\n"
               "  --format jsonl|f32  output: {\"index\":i,\"embedding\":[...]} lines (default), or raw\n"
               "                      little-endian float32, the model's dimension per text, no framing\n"
               "  -o, --output FILE   write to FILE instead of stdout\n"
               "  --model DIR         model folder (default $CDCVEC_MODEL_DIR or\n"
               "                      ~/.cache/cdcvec/" CV_MODEL_SHORT_ID ")\n"
               "  --threads N         CPU threads (default: all online CPUs)\n"
               "  --device D          auto (default), cpu or cuda\n"
               "  --precision P       fp32 (default, exact), bf16x3 (CPU with AMX: fp32 GEMMs as three\n"
               "                      bf16 products, ~2e-5 relative per GEMM output) or bf16 (CPU with\n"
               "                      AVX512-BF16; fast with AMX; min cosine 0.99995 to fp32 on the\n"
               "                      golden texts)\n"
               "  --batch N           texts per batch (default 64)\n");
}

static int write_jsonl(FILE *out, const float *v, int n, int dim, long first) {
    for (int i = 0; i < n; i++) {
        fprintf(out, "{\"index\":%ld,\"embedding\":[", first + i);
        for (int j = 0; j < dim; j++)
            fprintf(out, j ? ",%.9g" : "%.9g", (double)v[(size_t)i * dim + j]);
        fputs("]}\n", out);
    }
    return ferror(out) ? -1 : 0;
}

int cv_cmd_embed(int argc, char **argv) {
    enum { O_JSONL = 256, O_FIELD, O_FORMAT, O_MODEL, O_THREADS, O_DEVICE, O_BATCH, O_PRECISION };
    static const struct option opts[] = {{"jsonl", no_argument, 0, O_JSONL},
                                         {"field", required_argument, 0, O_FIELD},
                                         {"format", required_argument, 0, O_FORMAT},
                                         {"output", required_argument, 0, 'o'},
                                         {"model", required_argument, 0, O_MODEL},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {"device", required_argument, 0, O_DEVICE},
                                         {"batch", required_argument, 0, O_BATCH},
                                         {"precision", required_argument, 0, O_PRECISION},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int jsonl = 0, f32 = 0;
    const char *field = "text", *outpath = NULL, *model = cv_minilm_default_dir();
    long threads = 0, batch = 64;
    cv_device dev = CV_DEVICE_AUTO;
    cv_precision precision = CV_PRECISION_FP32;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case O_JSONL: jsonl = 1; break;
        case O_FIELD: field = optarg; break;
        case O_FORMAT:
            if (strcmp(optarg, "f32") == 0)
                f32 = 1;
            else if (strcmp(optarg, "jsonl") == 0)
                f32 = 0;
            else {
                fprintf(stderr, "cdcvec embed: --format: expected jsonl or f32, got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'o': outpath = optarg; break;
        case O_MODEL: model = optarg; break;
        case O_THREADS:
            if (cv_cli_parse_int("--threads", optarg, 1, 256, &threads)) return 2;
            break;
        case O_PRECISION:
            if (cv_cli_parse_precision(optarg, &precision)) return 2;
            break;
        case O_DEVICE:
            if (cv_cli_parse_device(optarg, &dev)) return 2;
            break;
        case O_BATCH:
            if (cv_cli_parse_int("--batch", optarg, 1, 65536, &batch)) return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "cdcvec embed: at most one input file\n");
        return 2;
    }
    const char *inname = optind < argc ? argv[optind] : "stdin";
    FILE *in = optind < argc ? fopen(argv[optind], "rb") : stdin;
    if (!in) {
        fprintf(stderr, "cdcvec embed: cannot open %s\n", argv[optind]);
        return 1;
    }
    FILE *out = outpath ? fopen(outpath, "wb") : stdout;
    if (!out) {
        fprintf(stderr, "cdcvec embed: cannot create %s\n", outpath);
        if (in != stdin) fclose(in);
        return 1;
    }
    cv_minilm *m = NULL;
    int rc = 0;
    if (cv_cli_load_model(model, (int)threads, dev, precision, &m)) {
        rc = 1;
        goto done;
    }
    const int dim = cv_minilm_cfg(m)->hidden;
    float *vec = malloc(sizeof(float) * (size_t)batch * dim);
    cv_textbuf tb = {0};
    long lineno = 0, index = 0;
    while (vec) {
        cv_textbuf_clear(&tb);
        cv_err err = cv_textbuf_read(&tb, in, inname, &lineno, (int)batch, jsonl, field);
        if (err) {
            rc = err == CV_ERR_FORMAT ? 2 : 1;
            break;
        }
        if (tb.n == 0) break;
        if ((err = cv_minilm_embed(m, (const char *const *)tb.text, tb.len, tb.n, vec, NULL))) {
            fprintf(stderr, "cdcvec embed: batch at input line %ld failed: %s\n", lineno, cv_strerror(err));
            rc = 1;
            break;
        }
        int werr = f32 ? (fwrite(vec, sizeof(float) * dim, (size_t)tb.n, out) != (size_t)tb.n)
                       : write_jsonl(out, vec, tb.n, dim, index);
        if (werr) {
            fprintf(stderr, "cdcvec embed: write failed\n");
            rc = 1;
            break;
        }
        index += tb.n;
    }
    if (!vec) rc = 1;
    free(vec);
    cv_textbuf_free(&tb);
    cv_minilm_free(m);
done:
    if (in != stdin) fclose(in);
    if (fflush(out) != 0 || (out != stdout && fclose(out) != 0)) {
        fprintf(stderr, "cdcvec embed: write failed\n");
        rc = 1;
    }
    return rc;
}
