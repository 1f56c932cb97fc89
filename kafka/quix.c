/* quix.c: the tutorial's CDC message (wal2json v1 change re-printed by Python's json.dumps)
 * and its embeddings message (simplified row + vector, orjson), written and parsed.
 *
 * Writing a CDC message replays two programs: wal2json 2.5 (tuple_to_stringinfo in
 * wal2json.c: numbers unquoted, NaN/Infinity as null, bool as true/false, bytea as its hex
 * digits without "\x", everything else as a string of the type's text output, unchanged
 * TOASTed columns omitted, NULL keys omitted from oldkeys) and then the tutorial's CDC
 * service, json.loads + json.dumps (ints stay ints, other numbers become doubles printed by
 * repr, strings re-escaped with ensure_ascii). See docs/TUTORIAL_FORMAT.md. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cv_jnum.h"
#include "kafka/quix.h"

cv_err cv_quix_fail(cv_buf *why, cv_err err, const char *fmt, ...) {
    if (!why) return err;
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *m = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (m) vsnprintf(m, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    why->len = 0;
    cv_buf_puts(why, m ? m : "out of memory");
    free(m);
    return err;
}

/* Whether typoid is one wal2json prints as a bare number (int2/4/8, oid, float4/8, numeric). */
static int is_number_type(uint32_t typoid) {
    return typoid == 20 || typoid == 21 || typoid == 23 || typoid == 26 || typoid == 700 || typoid == 701 ||
           typoid == 1700;
}

/* Length of the JSON number at s (Python json's NUMBER_RE), setting *is_int when it has no
 * fraction and no exponent; 0 when s does not start with one. */
static size_t json_number_len(const char *s, size_t len, int *is_int) {
    size_t i = 0;
    *is_int = 1;
    if (i < len && s[i] == '-') i++;
    if (i < len && s[i] == '0')
        i++;
    else if (i < len && s[i] >= '1' && s[i] <= '9')
        while (i < len && isdigit((unsigned char)s[i]))
            i++;
    else
        return 0;
    if (i + 1 < len && s[i] == '.' && isdigit((unsigned char)s[i + 1])) {
        *is_int = 0;
        for (i++; i < len && isdigit((unsigned char)s[i]);)
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < len && (s[j] == '+' || s[j] == '-')) j++;
        if (j < len && isdigit((unsigned char)s[j])) {
            *is_int = 0;
            for (i = j; i < len && isdigit((unsigned char)s[i]);)
                i++;
        }
    }
    return i;
}

/* Appends a number column's value as wal2json writes it and Python re-prints it. */
static cv_err put_number(cv_buf *b, const cv_quix_val *v, cv_buf *why) {
    const char *s = v->val;
    size_t len = v->len;
    if ((len >= 3 && strncasecmp(s, "NaN", 3) == 0) || (len >= 8 && strncasecmp(s, "Infinity", 8) == 0) ||
        (len >= 9 && strncasecmp(s, "-Infinity", 9) == 0)) {
        cv_buf_puts(b, "null"); /* wal2json: NaN and Infinity are not JSON numbers */
        return CV_OK;
    }
    if (len == 0 || strspn(s, "0123456789+-eE.") < len)
        return cv_quix_fail(why, CV_ERR_FORMAT,
                            "column %s: wal2json refuses a number of this text (\"is not a number\")",
                            v->name);
    int is_int;
    if (json_number_len(s, len, &is_int) != len)
        return cv_quix_fail(why, CV_ERR_FORMAT,
                            "column %s: the value is no JSON number, the tutorial's json.loads fails",
                            v->name);
    if (is_int) {
        size_t digits = len - (s[0] == '-');
        if (digits > 4300) /* Python >= 3.11: int('...') over 4300 digits raises ValueError */
            return cv_quix_fail(why, CV_ERR_FORMAT,
                                "column %s: an integer of %zu digits, over Python's 4300-digit limit",
                                v->name, digits);
        if (len == 2 && s[0] == '-' && s[1] == '0')
            cv_buf_put(b, "0", 1);
        else
            cv_buf_put(b, s, len);
        return CV_OK;
    }
    char *z = strndup(s, len);
    if (!z) return CV_ERR_NOMEM;
    double d = strtod(z, NULL); /* as Python's float(): correctly rounded, overflow to inf */
    free(z);
    cv_quix_put_pyfloat(b, d);
    return CV_OK;
}

/* Appends the type name as wal2json writes it (a quoted identifier from format_type() is
 * written raw, so its outer quotes vanish) and Python re-prints it. */
static cv_err put_type(cv_buf *b, const cv_quix_val *v, cv_buf *why) {
    const char *t = v->type ? v->type : "";
    size_t n = strlen(t);
    if (n && t[0] == '"' && t[n - 1] != ']') {
        if (n < 2 || t[n - 1] != '"' || memchr(t + 1, '"', n - 2) || memchr(t + 1, '\\', n - 2))
            return cv_quix_fail(why, CV_ERR_FORMAT,
                                "column %s: wal2json writes its type name as invalid JSON", v->name);
        t++, n -= 2;
    }
    if (cv_quix_put_pystr(b, t, n))
        return cv_quix_fail(why, CV_ERR_FORMAT, "column %s: type name not UTF-8", v->name);
    return CV_OK;
}

/* Appends a column's value (kind 't' or 'n'). */
static cv_err put_value(cv_buf *b, const cv_quix_val *v, cv_buf *why) {
    if (v->kind == 'n') {
        cv_buf_puts(b, "null");
        return CV_OK;
    }
    if (!v->val && v->len)
        return cv_quix_fail(why, CV_ERR_ARG, "column %s: value NULL with a length", v->name);
    if (is_number_type(v->typoid)) return put_number(b, v, why);
    if (v->typoid == 16) {
        cv_buf_puts(b, v->len == 1 && v->val[0] == 't' ? "true" : "false");
        return CV_OK;
    }
    const char *s = v->val ? v->val : "";
    size_t len = v->len;
    if (v->typoid == 17) { /* bytea: wal2json skips the leading "\x" */
        size_t skip = len < 2 ? len : 2;
        s += skip, len -= skip;
    }
    if (cv_quix_put_pystr(b, s, len))
        return cv_quix_fail(why, CV_ERR_FORMAT, "column %s: value not UTF-8", v->name);
    return CV_OK;
}

/* Appends `"<pfx>names": [...], "<pfx>types": [...], "<pfx>values": [...]` for the columns
 * kept (unchanged TOAST always dropped; NULLs dropped when keys). */
static cv_err put_columns(cv_buf *b, const char *pfx, const cv_quix_val *c, int n, int keys, cv_buf *why) {
    cv_err e = CV_OK;
    for (int part = 0; part < 3 && !e; part++) {
        static const char *const what[] = {"names", "types", "values"};
        cv_buf_printf(b, "%s\"%s%s\": [", part ? ", " : "", pfx, what[part]);
        int first = 1;
        for (int i = 0; i < n && !e; i++) {
            if (c[i].kind != 'n' && c[i].kind != 'u' && c[i].kind != 't')
                return cv_quix_fail(why, CV_ERR_ARG, "column %s: kind '%c' is none of n, u, t",
                                    c[i].name ? c[i].name : "?", c[i].kind);
            if (!c[i].name) return cv_quix_fail(why, CV_ERR_ARG, "column %d has no name", i);
            if (c[i].kind == 'u' || (keys && c[i].kind == 'n')) continue;
            if (!first) cv_buf_puts(b, ", ");
            first = 0;
            if (part == 0 && cv_quix_put_pystr(b, c[i].name, strlen(c[i].name)))
                e = cv_quix_fail(why, CV_ERR_FORMAT, "column name %s is not UTF-8", c[i].name);
            if (part == 1) e = put_type(b, &c[i], why);
            if (part == 2) e = put_value(b, &c[i], why);
        }
        cv_buf_puts(b, "]");
    }
    return e;
}

char *cv_quix_change(const char *kind, const char *schema, const char *table, const cv_quix_val *cols,
                     int ncols, const cv_quix_val *oldkeys, int nkeys, cv_err *err, cv_buf *why) {
    cv_err e = CV_OK, dummy;
    if (!err) err = &dummy;
    int ins = kind && !strcmp(kind, "insert"), upd = kind && !strcmp(kind, "update"),
        del = kind && !strcmp(kind, "delete");
    if (!ins && !upd && !del)
        e = cv_quix_fail(why, CV_ERR_ARG, "kind %s is none of insert, update, delete",
                         kind ? kind : "(null)");
    else if (!schema || !table)
        e = cv_quix_fail(why, CV_ERR_ARG, "schema and table are required");
    else if ((!del && ncols > 0 && !cols) || (!ins && nkeys > 0 && !oldkeys) || ncols < 0 || nkeys < 0)
        e = cv_quix_fail(why, CV_ERR_ARG, "column arrays missing or negative counts");
    if (e) {
        *err = e;
        return NULL;
    }
    cv_buf b = {0};
    cv_buf_printf(&b, "{\"kind\": \"%s\", \"schema\": ", kind);
    if (cv_quix_put_pystr(&b, schema, strlen(schema)))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "schema %s not UTF-8", schema);
    cv_buf_puts(&b, ", \"table\": ");
    if (!e && cv_quix_put_pystr(&b, table, strlen(table)))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "table %s not UTF-8", table);
    if (!e && !del) {
        cv_buf_puts(&b, ", ");
        e = put_columns(&b, "column", cols, ncols, 0, why);
    }
    if (!e && !ins) {
        cv_buf_puts(&b, ", \"oldkeys\": {");
        e = put_columns(&b, "key", oldkeys, nkeys, 1, why);
        cv_buf_puts(&b, "}");
    }
    cv_buf_puts(&b, "}");
    if (!e && b.oom) e = CV_ERR_NOMEM;
    if (e) {
        cv_buf_free(&b);
        *err = e;
        return NULL;
    }
    *err = CV_OK;
    return b.p;
}

/* The array member key of o, or NULL; a present non-array sets *bad. */
static json_t *get_array(json_t *o, const char *key, int *bad) {
    json_t *a = json_object_get(o, key);
    if (a && !json_is_array(a)) *bad = 1;
    return json_is_array(a) ? a : NULL;
}

/* Checks that every element of names (and types, when given) is a string; returns the index
 * of the first that is not, or -1. */
static long first_non_string(json_t *a) {
    for (size_t i = 0; a && i < json_array_size(a); i++)
        if (!json_is_string(json_array_get(a, i))) return (long)i;
    return -1;
}

/* Validates one names/types/values triple of o (prefix "column" or "key", inside what). */
static cv_err get_triple(json_t *o, const char *pfx, const char *what, json_t **names, json_t **types,
                         json_t **values, size_t *n, cv_buf *why) {
    char kn[32], kt[32], kv[32]; /* "columnnames" etc.: fixed names of our own */
    snprintf(kn, sizeof kn, "%snames", pfx);
    snprintf(kt, sizeof kt, "%stypes", pfx);
    snprintf(kv, sizeof kv, "%svalues", pfx);
    int bad = 0;
    *names = get_array(o, kn, &bad), *types = get_array(o, kt, &bad), *values = get_array(o, kv, &bad);
    if (bad) return cv_quix_fail(why, CV_ERR_FORMAT, "%s: a names/types/values member is not an array", what);
    if (!*names) return cv_quix_fail(why, CV_ERR_FORMAT, "%s: no \"%s\" array", what, kn);
    if (!*values) return cv_quix_fail(why, CV_ERR_FORMAT, "%s: no \"%s\" array", what, kv);
    *n = json_array_size(*names);
    if (json_array_size(*values) != *n || (*types && json_array_size(*types) != *n)) {
        return cv_quix_fail(why, CV_ERR_FORMAT, "%s: lengths differ: %zu names, %zu types, %zu values", what,
                            *n, *types ? json_array_size(*types) : *n, json_array_size(*values));
    }
    long i = first_non_string(*names);
    if (i >= 0) return cv_quix_fail(why, CV_ERR_FORMAT, "%s: name %ld is not a string", what, i);
    if ((i = first_non_string(*types)) >= 0)
        return cv_quix_fail(why, CV_ERR_FORMAT, "%s: type %ld is not a string", what, i);
    return CV_OK;
}

cv_err cv_quix_parse_change(const char *json, size_t len, cv_quix_change_msg *out, cv_buf *why) {
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = cv_jnum_loadb(json, len, JSON_REJECT_DUPLICATES, &je); /* numbers: every digit */
    if (!root) {
        return cv_quix_fail(why, CV_ERR_FORMAT, "not JSON: %s at line %d column %d", je.text, je.line,
                            je.column);
    }
    cv_err e = CV_OK;
    json_t *k = json_object_get(root, "kind"), *s = json_object_get(root, "schema"),
           *t = json_object_get(root, "table");
    if (!json_is_object(root))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "not a JSON object");
    else if (!json_is_string(k))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "no string \"kind\"");
    else if (strcmp(json_string_value(k), "insert") && strcmp(json_string_value(k), "update") &&
             strcmp(json_string_value(k), "delete"))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "unknown kind \"%s\" (insert, update, delete)",
                         json_string_value(k));
    else if (!json_is_string(t))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "no string \"table\"");
    else if (s && !json_is_string(s))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "\"schema\" is not a string");
    if (e) {
        json_decref(root);
        return e;
    }
    out->root = root;
    out->kind = json_string_value(k);
    out->schema = s ? json_string_value(s) : NULL;
    out->table = json_string_value(t);
    int del = !strcmp(out->kind, "delete");
    if (!del)
        e = get_triple(root, "column", "columns", &out->names, &out->types, &out->values, &out->ncols, why);
    json_t *ok = json_object_get(root, "oldkeys");
    if (!e && ok && !json_is_object(ok))
        e = cv_quix_fail(why, CV_ERR_FORMAT, "\"oldkeys\" is not an object");
    else if (!e && !ok && del)
        e = cv_quix_fail(why, CV_ERR_FORMAT, "a delete without \"oldkeys\"");
    else if (!e && ok)
        e = get_triple(ok, "key", "oldkeys", &out->keynames, &out->keytypes, &out->keyvalues, &out->nkeys,
                       why);
    if (e) cv_quix_change_msg_free(out);
    return e;
}

void cv_quix_change_msg_free(cv_quix_change_msg *m) {
    json_decref(m->root);
    memset(m, 0, sizeof *m);
}
