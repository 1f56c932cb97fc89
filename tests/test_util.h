/* test_util.h: helpers shared by the tests (fixtures, model folder, random data). */
#ifndef CV_TEST_UTIL_H
#define CV_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Reads a whole file; *len gets its size. Caller frees. NULL when unreadable. */
char *tu_read_file(const char *path, size_t *len);
/* Deterministic uniform floats in [lo, hi). */
void tu_fill(float *x, size_t n, float lo, float hi, uint64_t *seed);
uint64_t tu_rand(uint64_t *seed);

#endif
