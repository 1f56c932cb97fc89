/* cv_pyjson.c: numbers and strings as Python's json.dumps and orjson print them.
 *
 * Both print a float with the shortest decimal digits that read back as the same double
 * (David Gay's mode 0 in Python's repr; Ryu in orjson); they differ only in layout:
 *   Python repr: exponent form when the decimal exponent e < -4 or e >= 16, written e-05 / e+16
 *                (sign, at least two digits); else fixed with ".0" for integral values.
 *   orjson:      exponent form when e < -5 or e >= 16, written e-6 / e16; else as Python.
 * The shortest digits come from glibc's correctly rounded printf: the smallest precision p
 * whose rounded value reads back as x (binary search; round-trip success is monotone in p
 * because the rounding interval is symmetric), then, for powers of two, whose interval is
 * narrower below, one more try of p-1 digits rounded up. tests/test_quix.c checks both
 * layouts against Python 3.11 and orjson 3.10 on edge cases and random doubles. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cv_pyjson.h"

/* Rounds x (finite, > 0) to p significant digits: digits (no dot, trailing zeros stripped)
 * into d, returns the count; *decpt is the decimal point position (x = 0.d1d2... * 10^decpt). */
static int round_digits(double x, int p, char d[32], int *decpt) {
    char buf[48]; /* "%.16e" of a double: at most 24 characters */
    snprintf(buf, sizeof buf, "%.*e", p - 1, x);
    int n = 0;
    const char *s = buf;
    for (; *s && *s != 'e'; s++)
        if (*s >= '0' && *s <= '9') d[n++] = *s;
    *decpt = atoi(s + 1) + 1;
    while (n > 1 && d[n - 1] == '0')
        n--;
    d[n] = '\0';
    return n;
}

/* Whether digits d (n of them) with decimal point decpt read back as exactly x. */
static int reads_back(const char *d, int n, int decpt, double x) {
    char buf[64];
    snprintf(buf, sizeof buf, "0.%.*se%d", n, d, decpt);
    return strtod(buf, NULL) == x;
}

/* Adds one unit in the last place of d (n digits); returns the new count, adjusting decpt on
 * a carry out of the first digit (999 -> 1). */
static int bump_last(char d[32], int n, int *decpt) {
    int i = n - 1;
    while (i >= 0 && d[i] == '9')
        d[i--] = '0';
    if (i < 0) {
        d[0] = '1';
        (*decpt)++;
        n = 1;
    } else {
        d[i]++;
        n = i + 1; /* digits after i are now zeros: stripped */
    }
    d[n] = '\0';
    return n;
}

/* The shortest round-trip digits of x (finite, > 0), closest to x among the shortest. */
static int shortest_digits(double x, char d[32], int *decpt) {
    int lo = 1, hi = 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2, dp;
        char t[32];
        int n = round_digits(x, mid, t, &dp);
        if (reads_back(t, n, dp, x))
            hi = mid;
        else
            lo = mid + 1;
    }
    int n = round_digits(x, lo, d, decpt);
    int e2;
    if (lo > 1 && frexp(x, &e2) == 0.5) { /* power of two: try p-1 digits rounded up */
        char t[32];
        int dp, m = round_digits(x, lo - 1, t, &dp);
        while (m < lo - 1)
            t[m++] = '0'; /* back to lo-1 digits before adding one */
        m = bump_last(t, m, &dp);
        if (reads_back(t, m, dp, x)) {
            memcpy(d, t, (size_t)m + 1);
            *decpt = dp;
            n = m;
        }
    }
    return n;
}

/* Appends the fixed layout of digits d (n) with decimal point decpt: 0.000ddd, ddd00.0, dd.dd. */
static void put_fixed(cv_buf *b, const char *d, int n, int decpt) {
    if (decpt <= 0) {
        cv_buf_puts(b, "0.");
        for (int i = 0; i < -decpt; i++)
            cv_buf_put(b, "0", 1);
        cv_buf_put(b, d, (size_t)n);
    } else if (decpt >= n) {
        cv_buf_put(b, d, (size_t)n);
        for (int i = n; i < decpt; i++)
            cv_buf_put(b, "0", 1);
        cv_buf_puts(b, ".0");
    } else {
        cv_buf_put(b, d, (size_t)decpt);
        cv_buf_put(b, ".", 1);
        cv_buf_put(b, d + decpt, (size_t)(n - decpt));
    }
}

/* Appends x in Python's or orjson's layout (py != 0: Python). */
static void put_float(cv_buf *b, double x, int py) {
    if (isnan(x)) {
        cv_buf_puts(b, py ? "NaN" : "null");
        return;
    }
    if (isinf(x)) {
        cv_buf_puts(b, py ? (x < 0 ? "-Infinity" : "Infinity") : "null");
        return;
    }
    if (signbit(x)) cv_buf_put(b, "-", 1);
    x = fabs(x);
    if (x == 0) {
        cv_buf_puts(b, "0.0");
        return;
    }
    char d[32];
    int decpt, n = shortest_digits(x, d, &decpt), e = decpt - 1;
    if (e >= 16 || e < (py ? -4 : -5)) {
        cv_buf_put(b, d, 1);
        if (n > 1) {
            cv_buf_put(b, ".", 1);
            cv_buf_put(b, d + 1, (size_t)(n - 1));
        }
        if (py)
            cv_buf_printf(b, "e%c%02d", e < 0 ? '-' : '+', abs(e));
        else
            cv_buf_printf(b, "e%d", e);
    } else {
        put_fixed(b, d, n, decpt);
    }
}

void cv_quix_put_pyfloat(cv_buf *b, double x) { put_float(b, x, 1); }

void cv_quix_put_orjson_float(cv_buf *b, double x) { put_float(b, x, 0); }

/* Decodes one UTF-8 code point at s[*i] (strict: no overlongs, surrogates or > U+10FFFF);
 * returns it and advances *i, or -1. */
static long utf8_next(const unsigned char *s, size_t len, size_t *i) {
    unsigned c = s[*i];
    int n;
    long cp;
    if (c < 0x80) {
        (*i)++;
        return c;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 1, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3, cp = c & 0x07;
    } else {
        return -1;
    }
    if (*i + (size_t)n >= len) return -1;
    for (int k = 1; k <= n; k++) {
        unsigned cc = s[*i + (size_t)k];
        if ((cc & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return -1;
    *i += (size_t)n + 1;
    return cp;
}

/* Appends the short escape of c (\" \\ \b \f \n \r \t), or returns 0 when it has none. */
static int put_short_escape(cv_buf *b, long c) {
    const char *e = NULL;
    switch (c) {
    case '"': e = "\\\""; break;
    case '\\': e = "\\\\"; break;
    case '\b': e = "\\b"; break;
    case '\f': e = "\\f"; break;
    case '\n': e = "\\n"; break;
    case '\r': e = "\\r"; break;
    case '\t': e = "\\t"; break;
    default: return 0;
    }
    cv_buf_puts(b, e);
    return 1;
}

int cv_quix_put_pystr(cv_buf *b, const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    cv_buf_put(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        size_t start = i;
        while (i < len && u[i] >= 0x20 && u[i] < 0x7f && u[i] != '"' && u[i] != '\\')
            i++;
        cv_buf_put(b, s + start, i - start);
        if (i == len) break;
        long c = utf8_next(u, len, &i);
        if (c < 0) return -1;
        if (put_short_escape(b, c)) continue;
        if (c > 0xFFFF) {
            long v = c - 0x10000;
            cv_buf_printf(b, "\\u%04lx\\u%04lx", 0xD800 | (v >> 10), 0xDC00 | (v & 0x3FF));
        } else {
            cv_buf_printf(b, "\\u%04lx", c);
        }
    }
    cv_buf_put(b, "\"", 1);
    return 0;
}

int cv_quix_put_orjson_str(cv_buf *b, const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    cv_buf_put(b, "\"", 1);
    for (size_t i = 0; i < len;) {
        size_t start = i;
        while (i < len && u[i] >= 0x20 && u[i] < 0x80 && u[i] != '"' && u[i] != '\\')
            i++;
        cv_buf_put(b, s + start, i - start);
        if (i == len) break;
        size_t at = i;
        long c = utf8_next(u, len, &i);
        if (c < 0) return -1;
        if (c >= 0x80) {
            cv_buf_put(b, s + at, i - at);
        } else if (!put_short_escape(b, c)) {
            cv_buf_printf(b, "\\u%04lx", c);
        }
    }
    cv_buf_put(b, "\"", 1);
    return 0;
}
