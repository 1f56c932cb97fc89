/* http_query.c: query-string parameters, decoded and checked (URL escapes, NUL, UTF-8, length),
 * for endpoints that take text in the URL (the search page). Nothing is cut silently: a value
 * over the limit is an error the caller answers. */
#include <stdint.h>
#include <string.h>

#include "server.h"

static int hexval(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* 1 when p[0..n) is well-formed UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
static int utf8_valid(const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (p[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

cv_qp cv_http_query_param(const char *uri, const char *name, size_t max_bytes, cv_buf *out) {
    out->len = 0;
    out->oom = 0;
    cv_buf_put(out, "", 0);
    const char *q = strchr(uri, '?');
    size_t nl = strlen(name);
    for (const char *p = q; p && *p;) {
        p++; /* past '?' or '&' */
        if (strncmp(p, name, nl) != 0 || (p[nl] != '=' && p[nl] != '&' && p[nl] != 0 && p[nl] != '#')) {
            p = strchr(p, '&');
            continue;
        }
        p += nl;
        if (*p == '=') p++;
        for (; *p && *p != '&' && *p != '#'; p++) {
            char c = *p;
            if (c == '+') {
                c = ' ';
            } else if (c == '%') {
                int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
                if (hi < 0 || lo < 0) return CV_QP_BAD_ESCAPE;
                c = (char)(hi << 4 | lo);
                p += 2;
            }
            if (c == 0) return CV_QP_NUL;
            if (out->len >= max_bytes) return CV_QP_TOO_LONG;
            cv_buf_put(out, &c, 1);
        }
        if (out->oom) return CV_QP_TOO_LONG;
        return utf8_valid((const unsigned char *)out->p, out->len) ? CV_QP_OK : CV_QP_BAD_UTF8;
    }
    return CV_QP_ABSENT;
}

const char *cv_qp_message(cv_qp q) {
    switch (q) {
    case CV_QP_OK: return "is fine";
    case CV_QP_ABSENT: return "is missing";
    case CV_QP_BAD_ESCAPE: return "has a '%' not followed by two hexadecimal digits";
    case CV_QP_NUL: return "holds a NUL byte (%00)";
    case CV_QP_BAD_UTF8: return "is not valid UTF-8";
    case CV_QP_TOO_LONG: return "is over the length limit";
    }
    return "is invalid";
}
