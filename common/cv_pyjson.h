/* cv_pyjson.h: numbers and strings as Python's json.dumps and orjson print them (cv_pyjson.c):
 * the tutorial's formats (kafka/quix.h) write with them, and cv_jnum takes the shortest text
 * of a double from cv_quix_put_pyfloat. The cv_quix_ prefix is the one they had in
 * common/cv_quix.h, kept while other work edits their callers. */
#ifndef CV_PYJSON_H
#define CV_PYJSON_H

#include <stddef.h>

#include "common/cv_buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Appends Python's repr(x) (json.dumps' form: NaN, Infinity, -Infinity for non-finite). */
void cv_quix_put_pyfloat(cv_buf *b, double x);
/* Appends orjson.dumps(x): shortest digits, exponent when < 1e-5 or >= 1e16, null if not finite. */
void cv_quix_put_orjson_float(cv_buf *b, double x);
/* Appends a JSON string as Python's json.dumps writes it (ensure_ascii); -1 on invalid UTF-8. */
int cv_quix_put_pystr(cv_buf *b, const char *s, size_t len);
/* Appends a JSON string as orjson writes it (raw UTF-8); -1 on invalid UTF-8. */
int cv_quix_put_orjson_str(cv_buf *b, const char *s, size_t len);

#ifdef __cplusplus
}
#endif

#endif
