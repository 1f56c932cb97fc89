/* bench_corpus.h: generated texts for the benchmarks (deterministic, seeded). */
#ifndef CV_BENCH_CORPUS_H
#define CV_BENCH_CORPUS_H

#include <stddef.h>

#include "../common/cv_time.h"

typedef struct {
    const char *name;
    char **text; /* (n) owned */
    size_t *len; /* (n) */
    int n;
} corpus;

/* n sentence-like texts of wmin..wmax words from a fixed vocabulary. */
void corpus_make(corpus *c, const char *name, int n, int wmin, int wmax, unsigned long long seed);
void corpus_free(corpus *c);
/* One text per line; 0 on success. */
int write_corpus(const corpus *c, const char *path);

#endif
