/* bench_corpus.c: generated texts for the benchmarks (deterministic). */
#define _POSIX_C_SOURCE 200809L
#include "bench_corpus.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const WORDS[] = {
    "the",         "a",          "of",           "and",          "to",         "in",          "is",
    "his",         "her",        "their",        "world",        "humanity",   "alien",       "invasion",
    "planet",      "desert",     "political",    "intrigue",     "power",      "struggle",    "mathematician",
    "science",     "future",     "civilization", "collapse",     "virtual",    "reality",     "metaverse",
    "martian",     "earth",      "chaos",        "dystopian",    "society",    "teenagers",   "televised",
    "spectacle",   "peaceful",   "childhood",    "meteor",       "shower",     "population",  "aggressive",
    "plant",       "ocean",      "depths",       "residents",    "replaced",   "physical",    "copies",
    "senior",      "citizens",   "recruited",    "interstellar", "war",        "discovering", "cultures",
    "threats",     "young",      "woman",        "famous",       "mysterious", "artifact",    "city",
    "genetically", "engineered", "conditioned",  "travels",      "time",       "witnesses",   "evolution",
    "internet",    "evolved",    "survive",      "minds",        "detective",  "murder",      "mystery",
    "kingdom",     "dragon",     "quest",        "romance",      "betrayal",   "family",      "secrets",
    "journey",     "island",     "empire",       "rebellion",    "magic",      "ancient"};
#define NWORDS ((int)(sizeof WORDS / sizeof WORDS[0]))

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A sentence-like text of nwords words. */
static char *make_text(uint64_t *rng, int nwords) {
    size_t cap = (size_t)nwords * 16 + 8, n = 0;
    char *s = malloc(cap);
    for (int i = 0; i < nwords; i++) {
        const char *w = WORDS[rng_next(rng) % NWORDS];
        n += (size_t)snprintf(s + n, cap - n, i ? " %s" : "%s", w);
        if (i && i % 12 == 11) n += (size_t)snprintf(s + n, cap - n, ",");
    }
    snprintf(s + n, cap - n, ".");
    if (s[0] >= 'a' && s[0] <= 'z') s[0] = (char)(s[0] - 32);
    return s;
}

void corpus_make(corpus *c, const char *name, int n, int wmin, int wmax, unsigned long long seed) {
    c->name = name;
    c->n = n;
    c->text = malloc(sizeof(char *) * (size_t)n);
    c->len = malloc(sizeof(size_t) * (size_t)n);
    uint64_t rng = seed;
    for (int i = 0; i < n; i++) {
        c->text[i] = make_text(&rng, wmin + (int)(rng_next(&rng) % (uint64_t)(wmax - wmin + 1)));
        c->len[i] = strlen(c->text[i]);
    }
}

void corpus_free(corpus *c) {
    for (int i = 0; i < c->n; i++)
        free(c->text[i]);
    free(c->text);
    free(c->len);
}

int write_corpus(const corpus *c, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    for (int i = 0; i < c->n; i++)
        fprintf(f, "%s\n", c->text[i]);
    return fclose(f);
}
