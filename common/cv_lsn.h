/* cv_lsn.h: 64-bit stream positions in PostgreSQL's text form "X/X" (hi/lo hex). */
#ifndef CV_LSN_H
#define CV_LSN_H

#include <stdint.h>
#include <stdio.h>

static inline void cv_lsn_format(uint64_t lsn, char out[24]) {
    snprintf(out, 24, "%X/%X", (unsigned)(lsn >> 32), (unsigned)lsn);
}

/* Parses "X/X"; 0 on success. */
static inline int cv_lsn_parse(const char *s, uint64_t *lsn) {
    unsigned hi, lo;
    char tail;
    if (!s || sscanf(s, "%X/%X%c", &hi, &lo, &tail) != 2) return -1;
    *lsn = (uint64_t)hi << 32 | lo;
    return 0;
}

#endif
