/* proto.c: encode/decode of the embed protocol v1 (docs/PROTOCOL.md), bounds-checked. */
#define _POSIX_C_SOURCE 200809L
#include "proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/cv_half.h"

static const char *const status_names[] = {"ok",       "bad_request", "too_large", "busy", "shutting_down",
                                           "internal", "bad_version"};

const char *cv_status_name(cv_status st) {
    return (unsigned)st < sizeof status_names / sizeof status_names[0] ? status_names[st] : "unknown";
}

int cv_status_retriable(cv_status st) {
    return st == CV_ST_BUSY || st == CV_ST_SHUTTING_DOWN || st == CV_ST_INTERNAL;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}
static void wr64(uint8_t *p, uint64_t v) {
    wr32(p, (uint32_t)v);
    wr32(p + 4, (uint32_t)(v >> 32));
}

long cv_utf8_invalid_at(const char *str, size_t len) {
    const uint8_t *s = (const uint8_t *)str;
    size_t i = 0;
    while (i < len) {
        uint8_t b = s[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        int need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF)
            need = 1;
        else if (b >= 0xE0 && b <= 0xEF)
            need = 2, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
        else if (b >= 0xF0 && b <= 0xF4)
            need = 3, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
        else
            return (long)i;
        for (int k = 1; k <= need; k++) {
            if (i + (size_t)k >= len) return (long)i;
            uint8_t c = s[i + (size_t)k];
            if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xBF)) return (long)i;
        }
        i += (size_t)need + 1;
    }
    return -1;
}

cv_status cv_proto_decode_request(const void *buf, size_t len, const cv_proto_limits *lim, cv_proto_req *req,
                                  char *msg, size_t msg_len) {
    const uint8_t *p = buf;
    memset(req, 0, sizeof *req);
    if (len < CV_PROTO_REQ_HEADER) {
        snprintf(msg, msg_len, "frame of %zu bytes is shorter than the %d-byte header", len,
                 CV_PROTO_REQ_HEADER);
        return CV_ST_BAD_REQUEST;
    }
    if (memcmp(p, CV_PROTO_REQ_MAGIC, 4) != 0) {
        snprintf(msg, msg_len, "bad magic at byte 0: expected \"CVEQ\"");
        return CV_ST_BAD_REQUEST;
    }
    req->id = rd64(p + 8);
    if (p[4] != CV_PROTO_VERSION) {
        snprintf(msg, msg_len, "protocol version %u at byte 4 is not served (this server speaks %d)", p[4],
                 CV_PROTO_VERSION);
        return CV_ST_BAD_VERSION;
    }
    req->flags = p[5];
    if (req->flags & ~(CV_PROTO_FLAG_F16 | CV_PROTO_FLAG_QUERY | CV_PROTO_FLAG_INFO)) {
        snprintf(msg, msg_len, "unknown flags 0x%02x at byte 5", req->flags);
        return CV_ST_BAD_REQUEST;
    }
    if (p[6] || p[7]) {
        snprintf(msg, msg_len, "reserved bytes 6-7 must be zero");
        return CV_ST_BAD_REQUEST;
    }
    uint32_t n = rd32(p + 16);
    if (req->flags & CV_PROTO_FLAG_INFO) { /* the model's facts: no texts */
        if (n != 0 || len != CV_PROTO_REQ_HEADER) {
            snprintf(msg, msg_len,
                     "an info request (flag 0x04) carries no texts: n must be 0, the frame 20 bytes");
            return CV_ST_BAD_REQUEST;
        }
        req->n = 0;
        return CV_ST_OK;
    }
    if (n == 0) {
        snprintf(msg, msg_len, "request has no texts");
        return CV_ST_BAD_REQUEST;
    }
    if (n > lim->max_texts) {
        snprintf(msg, msg_len, "%u texts, more than the limit of %u per request", n, lim->max_texts);
        return CV_ST_TOO_LARGE;
    }
    if ((size_t)n * 4 > len - CV_PROTO_REQ_HEADER) {
        snprintf(msg, msg_len, "frame of %zu bytes cannot hold %u texts (truncated?)", len, n);
        return CV_ST_BAD_REQUEST;
    }
    req->text = malloc(sizeof(char *) * n);
    req->len = malloc(sizeof(uint32_t) * n);
    if (!req->text || !req->len) {
        cv_proto_req_free(req);
        snprintf(msg, msg_len, "out of memory");
        return CV_ST_INTERNAL;
    }
    size_t off = CV_PROTO_REQ_HEADER;
    for (uint32_t i = 0; i < n; i++) {
        if (len - off < 4) {
            snprintf(msg, msg_len, "text %u: length field at byte %zu past the end of the frame (truncated)",
                     i, off);
            goto bad;
        }
        uint32_t l = rd32(p + off);
        off += 4;
        if (l > lim->max_text_bytes) {
            snprintf(msg, msg_len, "text %u: %u bytes, more than the limit of %u", i, l, lim->max_text_bytes);
            cv_proto_req_free(req);
            return CV_ST_TOO_LARGE;
        }
        if (l > len - off) {
            snprintf(msg, msg_len, "text %u: %u bytes at byte %zu run past the end of the frame (truncated)",
                     i, l, off);
            goto bad;
        }
        long at = cv_utf8_invalid_at((const char *)p + off, l);
        if (at >= 0) {
            snprintf(msg, msg_len, "text %u: invalid UTF-8 at byte %ld of the text", i, at);
            goto bad;
        }
        req->text[i] = (const char *)p + off;
        req->len[i] = l;
        off += l;
    }
    if (off != len) {
        snprintf(msg, msg_len, "%zu trailing bytes after the last text", len - off);
        goto bad;
    }
    req->n = n;
    return CV_ST_OK;
bad:
    cv_proto_req_free(req);
    return CV_ST_BAD_REQUEST;
}

void cv_proto_req_free(cv_proto_req *req) {
    free(req->text);
    free(req->len);
    req->text = NULL;
    req->len = NULL;
    req->n = 0;
}

size_t cv_proto_encode_request(uint64_t id, uint8_t flags, const char *const *texts, const size_t *lens,
                               uint32_t n, uint8_t **out) {
    size_t size = CV_PROTO_REQ_HEADER;
    for (uint32_t i = 0; i < n; i++) {
        if (lens[i] > UINT32_MAX) return 0;
        size += 4 + lens[i];
    }
    uint8_t *p = malloc(size);
    if (!p) return 0;
    memcpy(p, CV_PROTO_REQ_MAGIC, 4);
    p[4] = CV_PROTO_VERSION;
    p[5] = flags;
    p[6] = p[7] = 0;
    wr64(p + 8, id);
    wr32(p + 16, n);
    size_t off = CV_PROTO_REQ_HEADER;
    for (uint32_t i = 0; i < n; i++) {
        wr32(p + off, (uint32_t)lens[i]);
        memcpy(p + off + 4, texts[i], lens[i]);
        off += 4 + lens[i];
    }
    *out = p;
    return size;
}

size_t cv_proto_reply_ok_size(uint32_t n, uint32_t dim, int f16) {
    return CV_PROTO_REP_HEADER + 8 + (size_t)n * dim * (f16 ? 2 : 4);
}

static void write_rep_header(uint8_t *p, uint64_t id, cv_status st, uint8_t dtype) {
    memcpy(p, CV_PROTO_REP_MAGIC, 4);
    p[4] = CV_PROTO_VERSION;
    p[5] = (uint8_t)st;
    p[6] = dtype;
    p[7] = 0;
    wr64(p + 8, id);
}

void cv_proto_write_reply_ok(uint8_t *p, uint64_t id, const float *vec, uint32_t n, uint32_t dim, int f16) {
    write_rep_header(p, id, CV_ST_OK, f16 ? 1 : 0);
    wr32(p + 16, n);
    wr32(p + 20, dim);
    uint8_t *d = p + 24;
    const size_t count = (size_t)n * dim;
    if (f16) {
        for (size_t i = 0; i < count; i++) {
            uint16_t h = cv_float_to_half(vec[i]);
            d[2 * i] = (uint8_t)h, d[2 * i + 1] = (uint8_t)(h >> 8);
        }
    } else {
        for (size_t i = 0; i < count; i++) {
            uint32_t b;
            memcpy(&b, &vec[i], 4);
            wr32(d + 4 * i, b);
        }
    }
}

size_t cv_proto_write_reply_err(uint8_t *p, uint64_t id, cv_status st, const char *msg) {
    size_t ml = strlen(msg);
    write_rep_header(p, id, st, 0);
    wr32(p + 16, (uint32_t)st);
    wr32(p + 20, (uint32_t)ml);
    memcpy(p + 24, msg, ml);
    return 24 + ml;
}

size_t cv_proto_write_reply_info(uint8_t **out, uint64_t id, uint32_t dim, const char *json) {
    size_t jl = strlen(json), size = 28 + jl;
    uint8_t *p = *out = malloc(size);
    if (!p) return 0;
    write_rep_header(p, id, CV_ST_OK, CV_PROTO_DTYPE_INFO);
    wr32(p + 16, 0);
    wr32(p + 20, dim);
    wr32(p + 24, (uint32_t)jl);
    memcpy(p + 28, json, jl);
    return size;
}

cv_err cv_proto_decode_reply(const void *buf, size_t len, cv_proto_rep *rep) {
    const uint8_t *p = buf;
    memset(rep, 0, sizeof *rep);
    if (len < 24 || memcmp(p, CV_PROTO_REP_MAGIC, 4) != 0 || p[4] != CV_PROTO_VERSION) {
        snprintf(rep->msg, sizeof rep->msg, "malformed reply (%zu bytes)", len);
        return CV_ERR_FORMAT;
    }
    rep->id = rd64(p + 8);
    rep->status = (cv_status)p[5];
    if (rep->status != CV_ST_OK) {
        uint32_t ml = rd32(p + 20);
        if (ml > len - 24) ml = (uint32_t)(len - 24);
        if (ml >= sizeof rep->msg) ml = sizeof rep->msg - 1;
        memcpy(rep->msg, p + 24, ml);
        rep->msg[ml] = 0;
        return CV_OK;
    }
    rep->n = rd32(p + 16);
    rep->dim = rd32(p + 20);
    if (p[6] == CV_PROTO_DTYPE_INFO) { /* the model's facts */
        uint32_t jl = len >= 28 ? rd32(p + 24) : 0;
        if (len < 28 || rep->n != 0 || jl != len - 28 || cv_utf8_invalid_at((const char *)p + 28, jl) >= 0) {
            snprintf(rep->msg, sizeof rep->msg, "malformed info reply (%zu bytes)", len);
            return CV_ERR_FORMAT;
        }
        if (!(rep->info = malloc((size_t)jl + 1))) return CV_ERR_NOMEM;
        memcpy(rep->info, p + 28, jl);
        rep->info[jl] = 0;
        return CV_OK;
    }
    const int f16 = p[6] == 1;
    if (p[6] > 1 || rep->dim == 0 || rep->dim > 65536 ||
        (uint64_t)rep->n * rep->dim * (f16 ? 2 : 4) != (uint64_t)(len - 24)) {
        snprintf(rep->msg, sizeof rep->msg, "reply size %zu does not match %u vectors of %u", len, rep->n,
                 rep->dim);
        return CV_ERR_FORMAT;
    }
    const size_t count = (size_t)rep->n * rep->dim;
    rep->vec = malloc(sizeof(float) * (count ? count : 1));
    if (!rep->vec) return CV_ERR_NOMEM;
    const uint8_t *d = p + 24;
    for (size_t i = 0; i < count; i++) {
        if (f16) {
            rep->vec[i] = cv_half_to_float((uint16_t)(d[2 * i] | d[2 * i + 1] << 8));
        } else {
            uint32_t b = rd32(d + 4 * i);
            memcpy(&rep->vec[i], &b, 4);
        }
    }
    return CV_OK;
}

void cv_proto_rep_free(cv_proto_rep *rep) {
    free(rep->vec), free(rep->info);
    rep->vec = NULL;
    rep->info = NULL;
}
