/* cv_buf.h: a growable, NUL-terminated byte buffer for building SQL, JSON and text. On
 * allocation failure it stops growing and sets oom; callers check oom once at the end. */
#ifndef CV_BUF_H
#define CV_BUF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cv_buf {
    char *p; /* owned; NULL until the first write */
    size_t len, cap;
    int oom;
} cv_buf;

void cv_buf_put(cv_buf *b, const char *s, size_t n);
void cv_buf_puts(cv_buf *b, const char *s);
void cv_buf_printf(cv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Releases the memory; b can be reused. */
void cv_buf_free(cv_buf *b);
/* Appends s (n bytes, UTF-8, borrowed) as a JSON string with RFC 8259 escaping, as PostgreSQL
 * writes it: \" \\ \b \f \n \r \t, other bytes below 0x20 as \u00xx, everything else as is. */
void cv_json_string(cv_buf *out, const char *s, size_t n);

#ifdef __cplusplus
}
#endif

#endif
