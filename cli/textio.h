/* textio.h: reading texts for the CLI: one per line, or JSONL ({"text": ...} or a JSON string). */
#ifndef CV_TEXTIO_H
#define CV_TEXTIO_H

#include <stdio.h>

#include "../common/cv_err.h"

typedef struct cv_textbuf {
    char **text; /* (n) owned, each NUL-terminated (may contain NULs: use len) */
    size_t *len; /* (n) */
    int n, cap;
} cv_textbuf;

/* Reads up to max texts from f into tb (appending). name and *lineno are for messages.
 * jsonl: each line is a JSON string or an object whose field `field` is a string.
 * Returns CV_OK (check tb->n for EOF), or CV_ERR_FORMAT after logging "name:line: what". */
cv_err cv_textbuf_read(cv_textbuf *tb, FILE *f, const char *name, long *lineno, int max, int jsonl,
                       const char *field);
void cv_textbuf_clear(cv_textbuf *tb);
void cv_textbuf_free(cv_textbuf *tb);

#endif
