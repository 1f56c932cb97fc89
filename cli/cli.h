/* cli.h: subcommands of the cdcvec binary and the options they share. */
#ifndef CV_CLI_H
#define CV_CLI_H

#include <signal.h>

#include "../models/minilm.h"

int cv_cmd_embed(int argc, char **argv);
int cv_cmd_bench(int argc, char **argv);
int cv_cmd_serve(int argc, char **argv);
int cv_bench_server(int argc, char **argv);
/* cdcvec bench sink: a store's write throughput with precomputed vectors (cmd_bench_sink.c). */
int cv_bench_sink(int argc, char **argv);
/* sync, backfill or search (which) */
int cv_cmd_sync(int argc, char **argv, const char *which);

/* SIGTERM and SIGINT set *flag (the handler does nothing else); SIGPIPE is ignored. */
void cv_cli_on_stop(volatile sig_atomic_t *flag);

/* Parses auto|cpu|cuda; returns 0 on success. */
int cv_cli_parse_device(const char *s, cv_device *out);

/* Parses a positive integer option value in [lo, hi]; prints an error naming opt. */
int cv_cli_parse_int(const char *opt, const char *s, long lo, long hi, long *out);

/* Loads the model and prints a fix-it hint when the files are missing. */
int cv_cli_load_model(const char *dir, int threads, cv_device dev, cv_precision precision, cv_minilm **out);
/* "fp32" or "bf16"; -1 after printing an error naming the option. */
int cv_cli_parse_precision(const char *s, cv_precision *out);

#endif
