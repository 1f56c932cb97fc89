/* cv_jnum.h: JSON through jansson with every number kept exactly.
 *
 * jansson holds an integer as int64 and any other number as a double: 9223372036854775808 is
 * "too big integer", 1e400 "real number overflow", 0.1000000000000000000001 reads as 0.1, and
 * json_dumps writes 0.1 back as 0.10000000000000001. PostgreSQL's numeric and jsonb keep every
 * digit, so a row's payload would be refused or changed on its way. Here:
 *   - cv_jnum_loadb keeps an integer that fits int64 as a jansson integer and every other
 *     number as its text, in a string node that starts with U+FDD0 (a Unicode noncharacter,
 *     never meant for interchange); a string of the document that itself starts with U+FDD0 is
 *     read with a second U+FDD0 in front, so the two never mix;
 *   - cv_jnum_dumps writes such numbers back, in one of two forms:
 *       CV_JNUM_EXACT   their text, as read (pgvector's jsonb and cdcvec's Kafka messages keep
 *                       every digit);
 *       CV_JNUM_DOUBLE  a number where a double holds the same decimal value (written with the
 *                       shortest digits that read back as that double: 0.1, 1e+300), else a JSON
 *                       string of the exact text (Qdrant and Upstash keep JSON numbers as
 *                       doubles: 9223372036854775808, 1e400 or 0.1000000000000000000001 would be
 *                       refused or silently rounded there);
 *   - cv_jnum_equal compares numbers by their decimal value (1.50 = 1.5, 1e2 = 100).
 * Trees from cv_jnum_loadb hold ordinary jansson strings, objects and arrays: read them with
 * jansson, read their numbers with cv_jnum_number, write them with cv_jnum_dumps. */
#ifndef CV_JNUM_H
#define CV_JNUM_H

#include <jansson.h>
#include <stddef.h>

enum { CV_JNUM_EXACT = 0, CV_JNUM_DOUBLE = 1 };

/* Parses len bytes of JSON as json_loadb does (flags, err as jansson's), numbers kept as above.
 * NULL on a syntax error (err says where, as jansson counts). Caller decrefs. */
json_t *cv_jnum_loadb(const char *buf, size_t len, size_t flags, json_error_t *err);
json_t *cv_jnum_loads(const char *s, size_t flags, json_error_t *err);

/* Writes j as json_dumps does (flags but JSON_ENSURE_ASCII), its numbers in the form of mode
 * (CV_JNUM_EXACT or CV_JNUM_DOUBLE). NULL on failure. Caller frees (free()). */
char *cv_jnum_dumps(const json_t *j, size_t flags, int mode);

/* A string of the document as it was written (the U+FDD0 that cv_jnum_loadb put in front of
 * one that starts with U+FDD0 taken off), its length in *len; NULL when j is no string or is
 * a number kept as text. */
const char *cv_jnum_string(const json_t *j, size_t *len);

/* Whether j is a number (a jansson integer or real, or a number kept as text); *v its nearest
 * double (inf beyond the range of one) when v is given. */
int cv_jnum_number(const json_t *j, double *v);

/* Whether a and b hold the same JSON: objects with the same keys, arrays in the same order,
 * strings byte for byte, numbers of the same decimal value. */
int cv_jnum_equal(const json_t *a, const json_t *b);

/* Whether the JSON number text s (n bytes) reads as a double of the same decimal value. */
int cv_jnum_double_exact(const char *s, size_t n);

#endif
