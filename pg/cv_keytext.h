/* cv_keytext.h: a primary key's values as one line of text, and back: the backfill progress
 * line prints it, `--after KEY` reads it.
 *
 * Values are joined by ','. A value is written as is (so 42 and 1,2 look as they always did)
 * unless it is empty or holds ',', '"', a backslash, a control character, or leading or
 * trailing white space: then it is written in double quotes, each '"' doubled, and, so that
 * the text stays on one line, each backslash written as two and each control character as
 * \n, \r, \t or \xHH ("a,b", "say ""hi""", "", "C:\\tmp", "line\nbreak"). Bytes from 0x80 up
 * (UTF-8) are written as they are. Library: cv_pgcommon. */
#ifndef CV_KEYTEXT_H
#define CV_KEYTEXT_H

#include "../common/cv_buf.h"
#include "../common/cv_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Appends the n values vals[0..n) (none NULL) to out; vals and out stay the caller's. */
void cv_key_format(const char *const *vals, int n, cv_buf *out);

/* Reads exactly n (>= 1) values from text, the inverse of cv_key_format. Also accepted, for
 * people typing keys: spaces and tabs around a value or around a quoted value are dropped
 * ("1, 2" is 1 and 2), and an unquoted value is taken byte for byte (a backslash there is
 * just a backslash). Rejected: a wrong count, an unterminated quote, anything but ',' after a
 * closing quote, an escape other than \\ \n \r \t \xHH inside quotes, a '"' inside an
 * unquoted value, an empty unquoted value (write "").
 * On CV_OK *out is a new NULL-terminated array of n strings, owned by the caller: release it
 * with cv_key_free. On CV_ERR_ARG *out is NULL and err (may be NULL) gets one sentence saying
 * what is wrong and at which byte offset; CV_ERR_NOMEM when memory runs out. */
cv_err cv_key_parse(const char *text, int n, char ***out, cv_buf *err);

/* Frees an array from cv_key_parse; NULL is a no-op. */
void cv_key_free(char **vals);

#ifdef __cplusplus
}
#endif

#endif
