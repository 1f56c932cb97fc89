/* cv_names.c: slot, publication, sink table and index names that fit in 63 bytes. */
#include "cv_names.h"

#include <openssl/evp.h>
#include <string.h>

#define HASH_LEN 9 /* "_" + 8 hex digits */

/* Appends "_" + the first 4 bytes of SHA-256(v[0] '\0' v[1] '\0' ... v[n-1]) in hex; on failure
 * marks out oom. */
static void put_hash_n(cv_buf *out, const char *const *v, int n) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (int i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, v[i], strlen(v[i]) + (i + 1 < n));
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen >= 4;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        out->oom = 1;
        return;
    }
    static const char hex[] = "0123456789abcdef";
    char h[HASH_LEN] = {'_'};
    for (int i = 0; i < 4; i++) {
        h[1 + 2 * i] = hex[md[i] >> 4];
        h[2 + 2 * i] = hex[md[i] & 15];
    }
    cv_buf_put(out, h, HASH_LEN);
}

static void put_hash(cv_buf *out, const char *a, const char *b) {
    const char *v[2] = {a, b};
    put_hash_n(out, v, 2);
}

/* Largest n <= max (and <= len) that does not end inside a UTF-8 character of s[0..len). */
static size_t utf8_cut(const char *s, size_t len, size_t max) {
    if (len <= max) return len;
    size_t n = max;
    for (int back = 0; n > 0 && back < 3 && ((unsigned char)s[n] & 0xC0) == 0x80; back++)
        n--;
    return n;
}

/* Appends up to max bytes of s mapped to [a-z0-9_]; returns how many it appended. */
static size_t put_slug(cv_buf *out, const char *s, size_t max) {
    size_t n = 0;
    for (; s[n] && n < max; n++) {
        char c = s[n];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            c = '_';
        cv_buf_put(out, &c, 1);
    }
    return n;
}

/* prefix + readable part + hash, at most CV_NAME_MAX bytes. */
static void slot_name(const char *prefix, const char *schema, const char *table, cv_buf *out) {
    size_t room = CV_NAME_MAX - strlen(prefix) - HASH_LEN;
    cv_buf_puts(out, prefix);
    room -= put_slug(out, schema, room);
    if (room > 0) {
        cv_buf_put(out, "_", 1);
        put_slug(out, table, room - 1);
    }
    put_hash(out, schema, table);
}

void cv_name_slot(const char *schema, const char *table, cv_buf *out) {
    slot_name("cdcvec_", schema, table, out);
}

void cv_name_capture_slot(const char *schema, const char *table, cv_buf *out) {
    slot_name("cdcvec_capture_", schema, table, out);
}

void cv_name_slot_in(const char *database, const char *schema, const char *table, const char *store,
                     int capture, cv_buf *out) {
    const char *prefix = capture ? "cdcvec_capture_" : "cdcvec_";
    size_t room = CV_NAME_MAX - strlen(prefix) - HASH_LEN;
    cv_buf_puts(out, prefix);
    const char *part[3] = {database, schema, table};
    for (int i = 0; i < 3 && room > (i ? 1u : 0u); i++) {
        if (i) cv_buf_put(out, "_", 1), room--;
        room -= put_slug(out, part[i], room);
    }
    const char *v[4] = {database, schema, table, store ? store : ""};
    put_hash_n(out, v, 4);
}

void cv_name_sink_table(const char *schema, const char *table, cv_buf *out) {
    size_t ls = strlen(schema), lt = strlen(table);
    size_t room = CV_NAME_MAX - HASH_LEN; /* 54 readable bytes */
    if (ls + 1 + lt <= CV_NAME_MAX) {
        cv_buf_put(out, schema, ls);
        cv_buf_put(out, "_", 1);
        cv_buf_put(out, table, lt);
        return;
    }
    if (ls >= room) {
        cv_buf_put(out, schema, utf8_cut(schema, ls, room));
    } else {
        cv_buf_put(out, schema, ls);
        cv_buf_put(out, "_", 1);
        cv_buf_put(out, table, utf8_cut(table, lt, room - ls - 1));
    }
    put_hash(out, schema, table);
}

void cv_name_index(const char *sink_table, const char *suffix, cv_buf *out) {
    size_t lt = strlen(sink_table), lx = strlen(suffix);
    size_t room = CV_NAME_MAX - HASH_LEN; /* 54 readable bytes */
    if (lt + lx <= CV_NAME_MAX) {
        cv_buf_put(out, sink_table, lt);
        cv_buf_put(out, suffix, lx);
        return;
    }
    if (lx <= 40) { /* keep the suffix whole: it says what the index is */
        cv_buf_put(out, sink_table, utf8_cut(sink_table, lt, room - lx));
        cv_buf_put(out, suffix, lx);
    } else if (lt >= room) {
        cv_buf_put(out, sink_table, utf8_cut(sink_table, lt, room));
    } else {
        cv_buf_put(out, sink_table, lt);
        cv_buf_put(out, suffix, utf8_cut(suffix, lx, room - lt));
    }
    put_hash(out, sink_table, suffix);
}
