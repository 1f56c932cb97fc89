/* pgvalue.c: text output form -> to_jsonb() JSON (see pgvalue.h for the rules).
 *
 * How to_jsonb works (PostgreSQL 15, jsonb.c datum_to_jsonb): the type, domains resolved,
 * picks a category by oid: bool; the six numeric types (output text, then numeric_in: a
 * number unless the text holds 'N'/'n', i.e. NaN/Infinity); date, timestamp, timestamptz
 * (ISO 8601 "XSD" form: 'T' between date and time, offsets always with minutes); json and
 * jsonb (parsed into jsonb); true arrays (typlen -1 with an element type); composites;
 * everything else is its output text as a string. The result is jsonb, so what its ::text
 * shows is jsonb's form: numbers as numeric_out writes them, object keys sorted (shorter
 * first, then bytewise) with the last of duplicate keys kept, ", " and ": " separators.
 * We rebuild that from the text form: numbers are rewritten digit by digit (never a double),
 * array and record literals are parsed as array_in/record_in do and each element converted
 * by its own type, json text is parsed and written in jsonb's order. */
#define _POSIX_C_SOURCE 200809L
#include "pgvalue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../common/cv_log.h"

enum {
    MAX_DEPTH = 10000,          /* nesting (PostgreSQL's default stack allows about this much json) */
    ARRAY_MAXDIM = 6,           /* PostgreSQL's MAXDIM */
    NUMERIC_DSCALE_MAX = 16383, /* numeric's limits: beyond them PostgreSQL refuses the value */
    NUMERIC_INT_DIGITS_MAX = 131072,
};

#define TRY(x)                                                                                               \
    do {                                                                                                     \
        cv_err e_ = (x);                                                                                     \
        if (e_) return e_;                                                                                   \
    } while (0)
#define NEED(cond) TRY((cond) ? CV_OK : CV_ERR_FORMAT)

/* A read cursor over text that is not NUL-terminated. */
typedef struct cur {
    const char *s, *e;
} cur;

static int is_space(char c) { return c && strchr(" \t\n\r\v\f", c); }
static int is_jspace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int at(const cur *c, char ch) { return c->s < c->e && *c->s == ch; }
static int eat(cur *c, char ch) { return at(c, ch) ? (c->s++, 1) : 0; }
static size_t skip(cur *c, int (*cls)(char)) {
    const char *s = c->s;
    while (c->s < c->e && cls(*c->s))
        c->s++;
    return (size_t)(c->s - s);
}

static cv_err str(cv_buf *out, const char *v, size_t n) {
    cv_json_string(out, v, n);
    return CV_OK;
}

/* ---- numbers: numeric_in's grammar to numeric_out's text ---- */

/* No exponent, no '+', no leading zeros, zero unsigned; scale = fraction digits - exponent. */
static cv_err number(cv_buf *out, const char *v, size_t n) {
    if (memchr(v, 'N', n) || memchr(v, 'n', n)) return str(out, v, n); /* NaN, Infinity */
    cur c = {v, v + n};
    skip(&c, is_space);
    while (c.e > c.s && is_space(c.e[-1]))
        c.e--;
    int neg = eat(&c, '-');
    if (!neg) eat(&c, '+');
    const char *ip = c.s, *fp;
    size_t ni = skip(&c, is_digit), nf = 0;
    fp = c.s;
    if (eat(&c, '.')) fp = c.s, nf = skip(&c, is_digit);
    NEED(ni + nf > 0);
    long ex = 0;
    if (eat(&c, 'e') || eat(&c, 'E')) {
        int eneg = eat(&c, '-');
        if (!eneg) eat(&c, '+');
        const char *s = c.s;
        NEED(skip(&c, is_digit) > 0);
        for (; s < c.s; s++)
            ex = ex < 100000000 ? ex * 10 + (*s - '0') : ex;
        ex = eneg ? -ex : ex;
    }
    NEED(c.s == c.e);
    /* the digit string int||frac, '0' outside; the point sits after `point` of its digits */
    long nd = (long)(ni + nf), point = (long)ni + ex, scale = (long)nf - ex < 0 ? 0 : (long)nf - ex,
         first = 0;
#define DIGIT(k) ((k) < 0 || (k) >= nd ? '0' : (k) < (long)ni ? ip[k] : fp[(k) - (long)ni])
    NEED(scale <= NUMERIC_DSCALE_MAX);
    while (first < point && first < nd && DIGIT(first) == '0')
        first++;
    if (first >= nd || first > point) first = point; /* integer part 0 */
    NEED(point - first <= NUMERIC_INT_DIGITS_MAX);
    int zero = 1;
    for (long k = 0; k < nd && zero; k++)
        zero = DIGIT(k) == '0';
    if (neg && !zero) cv_buf_put(out, "-", 1);
    if (first >= point) cv_buf_put(out, "0", 1);
    for (long k = first; k < point + scale; k++) {
        char d = DIGIT(k);
        if (k == point) cv_buf_put(out, ".", 1);
        cv_buf_put(out, &d, 1);
    }
#undef DIGIT
    return CV_OK;
}

/* ---- objects in jsonb's key order ---- */

typedef struct member {
    size_t koff, klen, voff, vlen; /* key (raw UTF-8) and value (JSON) in members.buf */
    const char *k;                 /* set once buf stops moving */
    int order;
} member;

typedef struct members {
    member *m; /* (n) owned */
    int n, cap;
    cv_buf buf; /* keys and values */
} members;

/* The member whose key starts at koff and value at voff, up to the end of buf. */
static cv_err members_add(members *ms, size_t koff, size_t voff) {
    if (ms->n == ms->cap) {
        member *m = realloc(ms->m, (size_t)(ms->cap = ms->cap ? ms->cap * 2 : 8) * sizeof *m);
        if (!m) return CV_ERR_NOMEM;
        ms->m = m;
    }
    ms->m[ms->n] = (member){koff, voff - koff, voff, ms->buf.len - voff, NULL, ms->n};
    ms->n++;
    return CV_OK;
}

/* jsonb: shorter keys first, then bytewise; equal keys latest first (the one kept). */
static int member_cmp(const void *a, const void *b) {
    const member *x = a, *y = b;
    if (x->klen != y->klen) return x->klen < y->klen ? -1 : 1;
    int c = memcmp(x->k, y->k, x->klen);
    return c ? c : x->order > y->order ? -1 : 1;
}

/* Writes the object, frees ms. */
static cv_err members_write(members *ms, cv_buf *out, cv_err e) {
    if (!e && ms->buf.oom) e = CV_ERR_NOMEM;
    for (int i = 0; !e && i < ms->n; i++)
        ms->m[i].k = ms->buf.p + ms->m[i].koff;
    if (!e && ms->n) qsort(ms->m, (size_t)ms->n, sizeof *ms->m, member_cmp);
    if (!e) cv_buf_put(out, "{", 1);
    for (int i = 0, w = 0; !e && i < ms->n; i++) {
        const member *m = &ms->m[i];
        if (i && m->klen == m[-1].klen && memcmp(m->k, m[-1].k, m->klen) == 0) continue;
        cv_buf_put(out, ", ", w++ ? 2 : 0);
        cv_json_string(out, m->k, m->klen);
        cv_buf_put(out, ": ", 2);
        cv_buf_put(out, ms->buf.p + m->voff, m->vlen);
    }
    if (!e) cv_buf_put(out, "}", 1);
    free(ms->m);
    cv_buf_free(&ms->buf);
    return e;
}

/* ---- json text -> jsonb's form ---- */

static int hex4(const cur *c, unsigned *u) {
    *u = 0;
    for (int i = 0; i < 4; i++) {
        char h = c->e - c->s > i ? c->s[i] : 0;
        int d = is_digit(h) ? h - '0' : (h | 32) >= 'a' && (h | 32) <= 'f' ? (h | 32) - 'a' + 10 : -1;
        if (d < 0) return -1;
        *u = *u << 4 | (unsigned)d;
    }
    return 0;
}

static void put_utf8(cv_buf *b, unsigned u) {
    char o[4];
    int n = u < 0x80 ? 1 : u < 0x800 ? 2 : u < 0x10000 ? 3 : 4;
    for (int i = n - 1; i > 0; i--, u >>= 6)
        o[i] = (char)(0x80 | (u & 0x3F));
    o[0] = (char)(n == 1 ? u : (0xF00u >> n & 0xF0) | u);
    cv_buf_put(b, o, (size_t)n);
}

/* A json string literal, decoded into raw (as jsonb stores it: \u0000 is refused). */
static cv_err j_string(cur *c, cv_buf *raw) {
    NEED(eat(c, '"'));
    for (;;) {
        NEED(c->s < c->e);
        unsigned char ch = (unsigned char)*c->s++;
        unsigned u, lo;
        const char *x;
        if (ch == '"') return CV_OK;
        NEED(ch >= 0x20);
        if (ch != '\\') {
            cv_buf_put(raw, (const char *)&ch, 1);
        } else if (eat(c, 'u')) {
            NEED(hex4(c, &u) == 0 && u != 0 && (u < 0xDC00 || u > 0xDFFF));
            c->s += 4;
            if (u >= 0xD800 && u <= 0xDBFF) { /* a surrogate pair */
                NEED(eat(c, '\\') && eat(c, 'u') && hex4(c, &lo) == 0 && lo >= 0xDC00 && lo <= 0xDFFF);
                c->s += 4;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(raw, u);
        } else {
            static const char pairs[] = "\"\"\\\\//b\bf\fn\nr\rt\t"; /* escape, then what it stands for */
            NEED(c->s < c->e && *c->s && (x = strchr(pairs, *c->s)) && (x - pairs) % 2 == 0);
            cv_buf_put(raw, x + 1, 1);
            c->s++;
        }
    }
}

static cv_err j_value(cur *c, cv_buf *out, int depth);

static cv_err j_members(cur *c, members *ms, int depth) {
    if (skip(c, is_jspace), eat(c, '}')) return CV_OK;
    do {
        size_t koff = ms->buf.len;
        skip(c, is_jspace);
        TRY(j_string(c, &ms->buf));
        size_t voff = ms->buf.len;
        skip(c, is_jspace);
        NEED(eat(c, ':'));
        TRY(j_value(c, &ms->buf, depth));
        TRY(members_add(ms, koff, voff));
    } while (skip(c, is_jspace), eat(c, ','));
    NEED(eat(c, '}'));
    return CV_OK;
}

static cv_err j_number(cur *c, cv_buf *out) { /* JSON's grammar, then numeric_in's rewrite */
    const char *s = c->s;
    eat(c, '-');
    NEED(c->s < c->e && is_digit(*c->s));
    if (!eat(c, '0')) skip(c, is_digit);
    if (eat(c, '.')) NEED(skip(c, is_digit) > 0);
    if (eat(c, 'e') || eat(c, 'E')) {
        if (!eat(c, '+')) eat(c, '-');
        NEED(skip(c, is_digit) > 0);
    }
    return number(out, s, (size_t)(c->s - s));
}

static cv_err j_value(cur *c, cv_buf *out, int depth) {
    static const char *const lit[] = {"true", "false", "null"};
    NEED(depth < MAX_DEPTH);
    skip(c, is_jspace);
    if (eat(c, '{')) {
        members ms = {0};
        return members_write(&ms, out, j_members(c, &ms, depth + 1));
    }
    if (eat(c, '[')) {
        cv_buf_put(out, "[", 1);
        if (skip(c, is_jspace), !eat(c, ']')) {
            int i = 0;
            do {
                cv_buf_put(out, ", ", i++ ? 2 : 0);
                TRY(j_value(c, out, depth + 1));
            } while (skip(c, is_jspace), eat(c, ','));
            NEED(eat(c, ']'));
        }
        cv_buf_put(out, "]", 1);
        return CV_OK;
    }
    if (at(c, '"')) {
        cv_buf raw = {0};
        cv_err e = j_string(c, &raw);
        if (!e) cv_json_string(out, raw.p ? raw.p : "", raw.len);
        e = e ? e : raw.oom ? CV_ERR_NOMEM : CV_OK;
        cv_buf_free(&raw);
        return e;
    }
    if (at(c, '-') || (c->s < c->e && is_digit(*c->s))) return j_number(c, out);
    for (int i = 0; i < 3; i++) {
        size_t l = strlen(lit[i]);
        if ((size_t)(c->e - c->s) >= l && memcmp(c->s, lit[i], l) == 0) {
            cv_buf_put(out, lit[i], l);
            c->s += l;
            return CV_OK;
        }
    }
    return CV_ERR_FORMAT;
}

static cv_err json_norm(cv_buf *out, const char *v, size_t n) {
    cur c = {v, v + n};
    TRY(j_value(&c, out, 0));
    skip(&c, is_jspace);
    NEED(c.s == c.e);
    return CV_OK;
}

/* ---- timestamps: ISO text -> XSD form ---- */

/* DateStyle ISO: "2024-01-02...", or infinity. Another DateStyle is refused, not misread. */
static int iso_date(const char *v, size_t n) {
    size_t i = 0;
    while (i < n && is_digit(v[i]))
        i++;
    if (i < n && v[0] == '-') return n == 9 && !memcmp(v, "-infinity", 9);
    if (i == 0) return n == 8 && !memcmp(v, "infinity", 8);
    return i >= 4 && n >= i + 6 && v[i] == '-' && is_digit(v[i + 1]) && is_digit(v[i + 2]) &&
           v[i + 3] == '-' && is_digit(v[i + 4]) && is_digit(v[i + 5]);
}

/* "2024-01-02 03:04:05.5+00 BC" -> "2024-01-02T03:04:05.5+00:00 BC"; infinity as is. */
static cv_err timestamp(cv_buf *out, int tz, const char *v, size_t n) {
    const char *sp = memchr(v, ' ', n);
    NEED(iso_date(v, n));
    if (!is_digit(*v)) return str(out, v, n); /* infinity */
    NEED(sp && sp + 1 < v + n && is_digit(sp[1]));
    cur c = {sp + 1, v + n};
    while (c.s < c.e && (is_digit(*c.s) || *c.s == ':' || *c.s == '.'))
        c.s++;
    int colons = 0;
    if (tz) {
        NEED(eat(&c, '+') || eat(&c, '-'));
        for (; c.s < c.e && (is_digit(*c.s) || *c.s == ':'); c.s++)
            colons += *c.s == ':';
    }
    cv_buf b = {0};
    cv_buf_put(&b, v, (size_t)(sp - v));
    cv_buf_put(&b, "T", 1);
    cv_buf_put(&b, sp + 1, (size_t)(c.s - sp - 1));
    cv_buf_put(&b, ":00", tz && !colons ? 3 : 0); /* +00 -> +00:00 */
    cv_buf_put(&b, c.s, (size_t)(c.e - c.s));
    if (!b.oom) cv_json_string(out, b.p, b.len);
    out->oom |= b.oom;
    cv_buf_free(&b);
    return CV_OK;
}

/* ---- arrays and records ---- */

static cv_err conv(cv_buf *out, const cv_pgtype *t, int as_elem, const char *v, size_t n, int depth);

/* int2vector, oidvector: "1 2 3", an array of the element type. */
static cv_err vector(cv_buf *out, const cv_pgtype *t, const char *v, size_t n, int depth) {
    cur c = {v, v + n};
    cv_buf_put(out, "[", 1);
    for (int i = 0; skip(&c, is_space), c.s < c.e; i++) {
        const char *s = c.s;
        while (c.s < c.e && !is_space(*c.s))
            c.s++;
        cv_buf_put(out, ", ", i ? 2 : 0);
        TRY(conv(out, t, 1, s, (size_t)(c.s - s), depth + 1));
    }
    cv_buf_put(out, "]", 1);
    return CV_OK;
}

typedef struct arrp {
    cur c;
    const cv_pgtype *t;
    int depth, ndim;         /* ndim: -1 until the first element fixes it */
    long dims[ARRAY_MAXDIM]; /* items per level, fixed by the first complete sub-array */
    cv_buf tmp;              /* one element's text, unescaped */
} arrp;

static cv_err a_elem(arrp *a, cv_buf *out) {
    cur *c = &a->c;
    char delim = a->t->delim ? a->t->delim : ',';
    int quoted = eat(c, '"'), escaped = 0;
    size_t keep = 0; /* length without trailing unescaped space */
    a->tmp.len = 0;
    while (quoted ? !eat(c, '"') : c->s < c->e && *c->s != delim && *c->s != '}') {
        NEED(c->s < c->e && (quoted || (*c->s != '{' && *c->s != '"')));
        int esc = *c->s == '\\';
        if (esc) NEED(++c->s < c->e);
        escaped |= esc;
        cv_buf_put(&a->tmp, c->s, 1);
        if (quoted || esc || !is_space(*c->s)) keep = a->tmp.len;
        c->s++;
    }
    NEED(quoted || keep > 0);
    if (a->tmp.oom) return CV_ERR_NOMEM;
    a->tmp.len = keep;
    if (!quoted && !escaped && keep == 4 && strncasecmp(a->tmp.p, "NULL", 4) == 0) {
        cv_buf_put(out, "null", 4);
        return CV_OK;
    }
    return conv(out, a->t, 1, a->tmp.p ? a->tmp.p : "", keep, a->depth + 1);
}

/* After a '{' at level: its items up to the matching '}'. */
static cv_err a_level(arrp *a, cv_buf *out, int level) {
    long count = 0;
    NEED(level < ARRAY_MAXDIM);
    cv_buf_put(out, "[", 1);
    do {
        cv_buf_put(out, ", ", count++ ? 2 : 0);
        skip(&a->c, is_space);
        if (eat(&a->c, '{')) {
            NEED(a->ndim < 0 || a->ndim > level + 1);
            TRY(a_level(a, out, level + 1));
        } else {
            a->ndim = a->ndim < 0 ? level + 1 : a->ndim;
            NEED(a->ndim == level + 1);
            TRY(a_elem(a, out));
        }
    } while (skip(&a->c, is_space), eat(&a->c, a->t->delim ? a->t->delim : ','));
    NEED(eat(&a->c, '}') && (!a->dims[level] || a->dims[level] == count)); /* rectangular */
    a->dims[level] = count;
    cv_buf_put(out, "]", 1);
    return CV_OK;
}

static int a_int(cur *c, long *v) {
    int neg = eat(c, '-'), nd = 0;
    for (*v = 0; c->s < c->e && is_digit(*c->s) && nd < 10; nd++)
        *v = *v * 10 + (*c->s++ - '0');
    *v = neg ? -*v : *v;
    return nd > 0;
}

/* array_in's grammar: an optional [lo:hi]... = prefix, nested braces, elements quoted or not. */
static cv_err array_in(arrp *a, cv_buf *out) {
    long ext[ARRAY_MAXDIM], lo, hi;
    int next = 0;
    cur *c = &a->c;
    skip(c, is_space);
    for (; eat(c, '['); skip(c, is_space)) {
        NEED(next < ARRAY_MAXDIM && a_int(c, &hi));
        lo = 1;
        if (eat(c, ':')) {
            lo = hi;
            NEED(a_int(c, &hi));
        }
        NEED(eat(c, ']') && hi >= lo);
        ext[next++] = hi - lo + 1;
    }
    NEED(!next || eat(c, '='));
    skip(c, is_space);
    NEED(eat(c, '{'));
    if (skip(c, is_space), !next && eat(c, '}')) { /* empty: no dimensions */
        cv_buf_put(out, "[]", 2);
    } else {
        TRY(a_level(a, out, 0));
        NEED(!next || next == a->ndim);
        for (int i = 0; i < next; i++)
            NEED(ext[i] == a->dims[i]);
    }
    skip(c, is_space);
    NEED(c->s == c->e);
    return CV_OK;
}

static cv_err array(cv_buf *out, const cv_pgtype *t, const char *v, size_t n, int depth) {
    arrp a = {{v, v + n}, t, depth, -1, {0}, {0}};
    cv_err e = array_in(&a, out);
    cv_buf_free(&a.tmp);
    return e;
}

/* record_in's grammar: (f1,"f 2",,...); an unquoted empty field is NULL. Fields are t's. */
static cv_err record_in(cur *c, const cv_pgtype *t, members *ms, cv_buf *tmp, int depth) {
    skip(c, is_space);
    NEED(eat(c, '('));
    for (int i = 0; i < t->nfields; i++) {
        int inq = 0, any = 0;
        for (tmp->len = 0; inq || !(at(c, ',') || at(c, ')')); any = 1) {
            NEED(c->s < c->e);
            if (eat(c, '"')) {
                if (inq && at(c, '"'))
                    cv_buf_put(tmp, c->s++, 1); /* "" inside quotes */
                else
                    inq = !inq;
                continue;
            }
            if (*c->s == '\\') NEED(++c->s < c->e);
            cv_buf_put(tmp, c->s++, 1);
        }
        NEED(eat(c, i + 1 < t->nfields ? ',' : ')'));
        if (tmp->oom) return CV_ERR_NOMEM;
        size_t koff = ms->buf.len;
        cv_buf_puts(&ms->buf, t->fields[i].name);
        size_t voff = ms->buf.len;
        if (!any)
            cv_buf_put(&ms->buf, "null", 4);
        else
            TRY(conv(&ms->buf, &t->fields[i].type, 0, tmp->p ? tmp->p : "", tmp->len, depth + 1));
        TRY(members_add(ms, koff, voff));
    }
    NEED(t->nfields > 0 || eat(c, ')'));
    skip(c, is_space);
    NEED(c->s == c->e);
    return CV_OK;
}

static cv_err record(cv_buf *out, const cv_pgtype *t, const char *v, size_t n, int depth) {
    cur c = {v, v + n};
    members ms = {0};
    cv_buf tmp = {0};
    cv_err e = record_in(&c, t, &ms, &tmp, depth);
    cv_buf_free(&tmp);
    return members_write(&ms, out, e);
}

/* ---- dispatch ---- */

/* One value of t (as_elem: of its element type). */
static cv_err conv(cv_buf *out, const cv_pgtype *t, int as_elem, const char *v, size_t n, int depth) {
    uint32_t base = as_elem ? t->elem : t->base;
    NEED(depth < MAX_DEPTH);
    switch (base) {
    case 16: /* bool: "t" from its output function, "true" from bool::text */
        NEED((n == 1 && (*v == 't' || *v == 'f')) || (n == 4 && !memcmp(v, "true", 4)) ||
             (n == 5 && !memcmp(v, "false", 5)));
        cv_buf_puts(out, *v == 't' ? "true" : "false");
        return CV_OK;
    case 20:
    case 21:
    case 23:
    case 700:
    case 701:
    case 1700: return number(out, v, n);
    case 114:
    case 3802: return json_norm(out, v, n);
    case 1114:
    case 1184: return timestamp(out, base == 1184, v, n);
    case 1082: NEED(iso_date(v, n)); break; /* date: its ISO text is to_jsonb's */
    case 22:                                /* int2vector, oidvector */
    case 30:
        if (!as_elem && t->elem) return vector(out, t, v, n, depth);
        break;
    default:
        if (!as_elem && t->elem) return array(out, t, v, n, depth);
        if ((as_elem ? t->elem_category : t->category) == 'C') return record(out, t, v, n, depth);
    }
    return str(out, v, n); /* everything else: the text */
}

cv_err cv_pgvalue_json(cv_buf *out, const cv_pgtype *t, const char *val, size_t len) {
    size_t mark = out->len;
    cv_err e = out->oom ? CV_ERR_NOMEM : conv(out, t, 0, val, len, 0);
    if (!e && out->oom) e = CV_ERR_NOMEM;
    if (e && out->p) out->p[out->len = mark] = 0;
    return e;
}
/* ---- the catalog ---- */

/* Every type the columns need: domains' bases, array elements, composite fields, nested. One
 * row per type, or per field for composites (attname NULL otherwise), ordered by oid, attnum. */
static const char TYPES_SQL[] =
    "WITH RECURSIVE t(oid) AS (SELECT unnest($1::oid[]) UNION SELECT s.x FROM t JOIN pg_type p ON p.oid = "
    "t.oid,"
    " LATERAL (SELECT p.typbasetype WHERE p.typtype = 'd'"
    " UNION ALL SELECT p.typelem WHERE p.typtype <> 'd' AND p.typlen = -1 AND p.typelem <> 0"
    " UNION ALL SELECT a.atttypid FROM pg_attribute a WHERE p.typtype = 'c' AND a.attrelid = p.typrelid"
    " AND a.attnum > 0 AND NOT a.attisdropped) s(x))"
    " SELECT p.oid, p.typtype, p.typbasetype, p.typcategory,"
    " CASE WHEN p.typtype <> 'd' AND p.typlen = -1 THEN p.typelem ELSE 0 END, p.typdelim,"
    " p.oid >= 16384 AND EXISTS (SELECT 1 FROM pg_cast c WHERE c.castsource = p.oid"
    " AND c.casttarget = 'json'::regtype AND c.castmethod = 'f'), a.attname, a.atttypid"
    " FROM t JOIN pg_type p ON p.oid = t.oid LEFT JOIN pg_attribute a ON p.typtype = 'c'"
    " AND a.attrelid = p.typrelid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY p.oid, a.attnum";

static uint32_t col_u32(PGresult *r, int row, int col) {
    return (uint32_t)strtoul(PQgetvalue(r, row, col), NULL, 10);
}

/* First row of oid, or -1. */
static int type_row(PGresult *r, uint32_t oid) {
    for (int i = 0; i < PQntuples(r); i++)
        if (col_u32(r, i, 0) == oid) return i;
    return -1;
}

/* Follows domains to the base type's row. */
static int base_row(PGresult *r, uint32_t oid) {
    int row = type_row(r, oid);
    for (int hops = 0; row >= 0 && *PQgetvalue(r, row, 1) == 'd' && hops < 100; hops++)
        row = type_row(r, col_u32(r, row, 2));
    return row >= 0 && *PQgetvalue(r, row, 1) == 'd' ? -1 : row;
}

static cv_err fill(PGresult *r, uint32_t oid, cv_pgtype *t, int depth) {
    memset(t, 0, sizeof *t);
    t->oid = oid;
    int row = base_row(r, oid), comp;
    if (row < 0 || depth > 100) return CV_ERR_NOTFOUND;
    t->base = col_u32(r, row, 0);
    t->category = *PQgetvalue(r, row, 3);
    t->jsoncast = *PQgetvalue(r, row, 6) == 't';
    comp = row;
    uint32_t elem = col_u32(r, row, 4);
    if (elem) {
        int er = type_row(r, elem), eb = base_row(r, elem);
        if (er < 0 || eb < 0) return CV_ERR_NOTFOUND;
        t->delim = *PQgetvalue(r, er, 5);
        t->elem = col_u32(r, eb, 0);
        t->elem_category = *PQgetvalue(r, eb, 3);
        t->jsoncast = *PQgetvalue(r, eb, 6) == 't';
        comp = eb;
    }
    if (*PQgetvalue(r, comp, 1) != 'c') return CV_OK;
    int nf = 0;
    while (comp + nf < PQntuples(r) && col_u32(r, comp + nf, 0) == col_u32(r, comp, 0) &&
           !PQgetisnull(r, comp + nf, 7))
        nf++;
    if (!(t->fields = calloc((size_t)nf + 1, sizeof *t->fields))) return CV_ERR_NOMEM;
    for (int i = 0; i < nf; i++) {
        t->nfields = i + 1;
        if (!(t->fields[i].name = strdup(PQgetvalue(r, comp + i, 7)))) return CV_ERR_NOMEM;
        cv_err e = fill(r, col_u32(r, comp + i, 8), &t->fields[i].type, depth + 1);
        if (e) return e;
    }
    return CV_OK;
}

cv_err cv_pgtypes_load(PGconn *db, const uint32_t *typoids, int n, cv_pgtype *out) {
    cv_buf arr = {0};
    cv_buf_puts(&arr, "{");
    for (int i = 0; i < n; i++)
        cv_buf_printf(&arr, "%s%u", i ? "," : "", typoids[i]);
    cv_buf_puts(&arr, "}");
    if (arr.oom) return CV_ERR_NOMEM;
    const char *param = arr.p;
    PGresult *r = PQexecParams(db, TYPES_SQL, 1, NULL, &param, NULL, NULL, 0);
    cv_buf_free(&arr);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        cv_error("event=source_query_failed step=load_types sqlstate=%s error=\"%s\"", state ? state : "-",
                 PQresultErrorMessage(r));
        PQclear(r);
        return PQstatus(db) != CONNECTION_OK ? CV_ERR_TIMEOUT : CV_ERR_IO;
    }
    cv_err e = CV_OK;
    memset(out, 0, (size_t)n * sizeof *out);
    for (int i = 0; i < n && !e; i++)
        if ((e = fill(r, typoids[i], &out[i], 0)) == CV_ERR_NOTFOUND)
            cv_error(
                "event=type_missing oid=%u fix=\"the column's type was dropped or changed: restart sync\"",
                typoids[i]);
    PQclear(r);
    if (e) cv_pgtypes_free(out, n);
    return e;
}

static void type_free(cv_pgtype *t) {
    for (int i = 0; i < t->nfields; i++) {
        free(t->fields[i].name);
        type_free(&t->fields[i].type);
    }
    free(t->fields);
    t->fields = NULL;
    t->nfields = 0;
}

void cv_pgtypes_free(cv_pgtype *t, int n) {
    for (int i = 0; t && i < n; i++)
        type_free(&t[i]);
}
