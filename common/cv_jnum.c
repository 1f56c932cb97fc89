/* cv_jnum.c: JSON through jansson with every number kept exactly (cv_jnum.h).
 *
 * Reading rewrites the text before jansson sees it: each number token that is not an int64
 * becomes the string "\uFDD0<token>", and each string that starts with U+FDD0 gets one more in
 * front. Only well-formed number tokens are rewritten, so jansson still refuses what is not
 * JSON. Writing lets jansson write the tree, then undoes the same two marks in its output
 * (jansson writes U+FDD0 as its three UTF-8 bytes when JSON_ENSURE_ASCII is not given). */
#define _POSIX_C_SOURCE 200809L
#include "common/cv_jnum.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cv_buf.h"
#include "common/cv_pyjson.h"

static const char MARK[] = "\xEF\xB7\x90"; /* U+FDD0 in UTF-8 */
#define MARK_LEN 3

static int digit(char c) { return c >= '0' && c <= '9'; }

/* The length of the JSON number token at s (before e), 0 when there is none. *integer: no
 * fraction, no exponent. */
static size_t number_len(const char *s, const char *e, int *integer) {
    const char *p = s;
    *integer = 1;
    if (p < e && *p == '-') p++;
    if (p >= e || !digit(*p)) return 0;
    if (*p == '0')
        p++;
    else
        while (p < e && digit(*p))
            p++;
    if (p < e && *p == '.') {
        *integer = 0;
        if (++p >= e || !digit(*p)) return 0;
        while (p < e && digit(*p))
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        *integer = 0;
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || !digit(*p)) return 0;
        while (p < e && digit(*p))
            p++;
    }
    return (size_t)(p - s);
}

/* Whether the integer token s (n bytes, no fraction or exponent) fits int64. */
static int fits_int64(const char *s, size_t n) {
    int neg = *s == '-';
    s += neg, n -= (size_t)neg;
    if (n < 19) return 1;
    if (n > 19) return 0;
    return memcmp(s, neg ? "9223372036854775808" : "9223372036854775807", 19) <= 0;
}

/* Whether a string's content starting at s (before e) starts with U+FDD0, raw or escaped. */
static int starts_marked(const char *s, const char *e) {
    if (e - s >= MARK_LEN && memcmp(s, MARK, MARK_LEN) == 0) return 1;
    if (e - s >= 6 && s[0] == '\\' && (s[1] == 'u') && strncasecmp(s + 2, "fdd0", 4) == 0) return 1;
    return 0;
}

json_t *cv_jnum_loadb(const char *buf, size_t len, size_t flags, json_error_t *err) {
    cv_buf b = {0};
    const char *p = buf, *e = buf + len, *run = buf;
    while (p < e) {
        if (*p == '"') {
            const char *q = p + 1;
            if (starts_marked(q, e)) {
                cv_buf_put(&b, run, (size_t)(q - run));
                cv_buf_put(&b, MARK, MARK_LEN);
                run = q;
            }
            while (q < e && *q != '"')
                q += *q == '\\' && q + 1 < e ? 2 : 1;
            p = q < e ? q + 1 : e;
            continue;
        }
        int integer;
        size_t n = (*p == '-' || digit(*p)) ? number_len(p, e, &integer) : 0;
        if (n && (!integer || !fits_int64(p, n) ||
                  (n == 2 && p[0] == '-' && p[1] == '0'))) { /* -0: an int64 loses the sign */
            cv_buf_put(&b, run, (size_t)(p - run));
            cv_buf_put(&b, "\"", 1);
            cv_buf_put(&b, MARK, MARK_LEN);
            cv_buf_put(&b, p, n);
            cv_buf_put(&b, "\"", 1);
            run = p + n;
        }
        p += n ? n : 1;
    }
    if (!b.p) return json_loadb(buf, len, flags, err); /* nothing rewritten */
    cv_buf_put(&b, run, (size_t)(e - run));
    json_t *j = b.oom ? NULL : json_loadb(b.p, b.len, flags, err);
    free(b.p);
    return j;
}

json_t *cv_jnum_loads(const char *s, size_t flags, json_error_t *err) {
    return cv_jnum_loadb(s, strlen(s), flags, err);
}

/* ---- decimal values ---- */

typedef struct {
    int neg, zero;
    char d[64]; /* significant digits, no leading or trailing zeros (the first 63: see below) */
    int nd;
    int more;     /* digits beyond the 63 kept that are not all zero */
    long ndigits; /* all significant digits (with more) */
    long exp;     /* value = 0.d1d2... * 10^exp */
} decimal;

/* Reads a JSON number token (validated) into its decimal value. Digits past the 63rd are
 * compared by a hash-free rule: two values compare equal only when they have the same
 * significant digits, so the rest is compared by the caller on the text (see same_value). */
static void decimal_read(const char *s, size_t n, decimal *v) {
    memset(v, 0, sizeof *v);
    const char *e = s + n;
    if (s < e && *s == '-') v->neg = 1, s++;
    long point = 0; /* digits before the point seen so far (for exp) */
    int seen_nonzero = 0, in_frac = 0;
    long lead_zero_frac = 0;
    for (; s < e && (digit(*s) || *s == '.'); s++) {
        if (*s == '.') {
            in_frac = 1;
            continue;
        }
        if (!seen_nonzero && *s == '0') {
            if (in_frac) lead_zero_frac++;
            continue;
        }
        seen_nonzero = 1;
        if (!in_frac) point++;
        if (v->nd < 63)
            v->d[v->nd++] = *s;
        else if (*s != '0')
            v->more = 1;
        v->ndigits++;
    }
    long ex = 0;
    if (s < e && (*s == 'e' || *s == 'E')) {
        s++;
        int eneg = 0;
        if (s < e && (*s == '+' || *s == '-')) eneg = *s++ == '-';
        for (; s < e && digit(*s); s++)
            ex = ex < 1000000000000L ? ex * 10 + (*s - '0') : ex;
        if (eneg) ex = -ex;
    }
    while (v->nd > 0 && v->d[v->nd - 1] == '0' && !v->more)
        v->nd--;
    v->d[v->nd] = 0;
    if (!seen_nonzero) {
        v->zero = 1, v->neg = 0, v->nd = 0, v->exp = 0;
        return;
    }
    v->exp = (point ? point : -lead_zero_frac) + ex;
}

/* The significant digits of a token from the first non-zero one, '.' and exponent aside,
 * trailing zeros dropped: into out. */
static void all_digits(const char *s, size_t n, cv_buf *out) {
    const char *e = s + n;
    int started = 0;
    for (; s < e && *s != 'e' && *s != 'E'; s++) {
        if (!digit(*s) || (!started && *s == '0')) continue;
        started = 1;
        cv_buf_put(out, s, 1);
    }
    while (out->len && out->p[out->len - 1] == '0')
        out->p[--out->len] = 0;
}

/* Whether two number tokens have the same decimal value. */
static int same_value(const char *a, size_t na, const char *b, size_t nb) {
    decimal x, y;
    decimal_read(a, na, &x);
    decimal_read(b, nb, &y);
    if (x.zero || y.zero) return x.zero && y.zero;
    if (x.neg != y.neg || x.exp != y.exp || x.nd != y.nd || x.more != y.more || strcmp(x.d, y.d)) return 0;
    if (!x.more) return 1;
    cv_buf da = {0}, db = {0}; /* long mantissas: every digit */
    all_digits(a, na, &da);
    all_digits(b, nb, &db);
    int eq = da.len == db.len && memcmp(da.p, db.p, da.len) == 0;
    free(da.p), free(db.p);
    return eq;
}

/* The shortest text that reads back as the double of token s: into out; 0 when the token is
 * beyond a double's range. */
static int shortest(const char *s, size_t n, cv_buf *out) {
    char tmp[64];
    double d;
    if (n < sizeof tmp) {
        memcpy(tmp, s, n);
        tmp[n] = 0;
        d = strtod(tmp, NULL);
    } else {
        char *t = strndup(s, n);
        d = strtod(t, NULL);
        free(t);
    }
    if (!isfinite(d)) return 0;
    cv_quix_put_pyfloat(out, d);
    return !out->oom;
}

int cv_jnum_double_exact(const char *s, size_t n) {
    cv_buf b = {0};
    int ok = shortest(s, n, &b) && same_value(s, n, b.p, b.len);
    free(b.p);
    return ok;
}

/* ---- writing ---- */

char *cv_jnum_dumps(const json_t *j, size_t flags, int mode) {
    char *s = json_dumps(j, flags & ~(size_t)JSON_ENSURE_ASCII);
    if (!s || !strstr(s, MARK)) return s;
    cv_buf b = {0};
    const char *p = s, *run = s;
    while (*p) {
        if (*p != '"') {
            p++;
            continue;
        }
        const char *q = p + 1, *c = q;
        while (*q && *q != '"')
            q += *q == '\\' && q[1] ? 2 : 1;
        if (strncmp(c, MARK, MARK_LEN) != 0) {
            p = *q ? q + 1 : q;
            continue;
        }
        cv_buf_put(&b, run, (size_t)(p - run));
        c += MARK_LEN;
        size_t n = (size_t)(q - c);
        if (strncmp(c, MARK, MARK_LEN) == 0) { /* a string that starts with U+FDD0 */
            cv_buf_put(&b, "\"", 1);
            cv_buf_put(&b, c, n);
            cv_buf_put(&b, "\"", 1);
        } else if (mode == CV_JNUM_EXACT) {
            cv_buf_put(&b, c, n);
        } else {
            cv_buf sh = {0};
            if (shortest(c, n, &sh) && same_value(c, n, sh.p, sh.len)) {
                cv_buf_put(&b, sh.p, sh.len);
            } else { /* a double cannot hold it: its exact text, as a string */
                cv_buf_put(&b, "\"", 1);
                cv_buf_put(&b, c, n);
                cv_buf_put(&b, "\"", 1);
            }
            free(sh.p);
        }
        p = *q ? q + 1 : q;
        run = p;
    }
    cv_buf_put(&b, run, strlen(run));
    free(s);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- reading numbers, comparing ---- */

/* A number kept as text: its token (and length), else NULL. */
static const char *kept_number(const json_t *j, size_t *n) {
    if (!json_is_string(j)) return NULL;
    const char *s = json_string_value(j);
    size_t l = json_string_length(j);
    if (l <= MARK_LEN || memcmp(s, MARK, MARK_LEN) != 0 || memcmp(s + MARK_LEN, MARK, MARK_LEN) == 0)
        return NULL;
    *n = l - MARK_LEN;
    return s + MARK_LEN;
}

const char *cv_jnum_string(const json_t *j, size_t *len) {
    if (!json_is_string(j)) return NULL;
    const char *s = json_string_value(j);
    size_t l = json_string_length(j);
    if (l >= MARK_LEN && memcmp(s, MARK, MARK_LEN) == 0) {
        if (l < 2 * MARK_LEN || memcmp(s + MARK_LEN, MARK, MARK_LEN) != 0) return NULL; /* a number */
        s += MARK_LEN, l -= MARK_LEN;
    }
    if (len) *len = l;
    return s;
}

int cv_jnum_number(const json_t *j, double *v) {
    size_t n;
    const char *t = kept_number(j, &n);
    if (t) {
        if (v) {
            char *c = strndup(t, n);
            *v = c ? strtod(c, NULL) : 0;
            free(c);
        }
        return 1;
    }
    if (!json_is_number(j)) return 0;
    if (v) *v = json_number_value(j);
    return 1;
}

/* A number's token: kept text, or the integer / real written out (into tmp). */
static const char *number_text(const json_t *j, char tmp[48], size_t *n) {
    const char *t = kept_number(j, n);
    if (t) return t;
    if (json_is_integer(j)) {
        *n = (size_t)snprintf(tmp, 48, "%lld", (long long)json_integer_value(j));
        return tmp;
    }
    if (json_is_real(j)) {
        cv_buf b = {0};
        cv_quix_put_pyfloat(&b, json_real_value(j));
        *n = b.len < 47 ? b.len : 47;
        memcpy(tmp, b.p ? b.p : "0", *n);
        tmp[*n] = 0;
        free(b.p);
        return tmp;
    }
    return NULL;
}

int cv_jnum_equal(const json_t *a, const json_t *b) {
    if (!a || !b) return a == b;
    char ta[48], tb[48];
    size_t na, nb;
    const char *xa = number_text(a, ta, &na), *xb = number_text(b, tb, &nb);
    if (xa || xb) return xa && xb && same_value(xa, na, xb, nb);
    if (json_typeof(a) != json_typeof(b)) return 0;
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b)) return 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)a, k, v) {
            if (!cv_jnum_equal(v, json_object_get(b, k))) return 0;
        }
        return 1;
    }
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!cv_jnum_equal(json_array_get(a, i), json_array_get(b, i))) return 0;
        return 1;
    }
    return json_equal((json_t *)a, (json_t *)b);
}
