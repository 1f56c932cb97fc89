/* pgoutput.c: bounds-checked reader over one message (big-endian integers, NUL-terminated
 * strings), per PostgreSQL's src/backend/replication/logical/proto.c. */
#define _POSIX_C_SOURCE 200809L
#include "pgoutput.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t len, off;
    int bad;
} rd;

static int need(rd *r, size_t n) {
    if (r->bad || r->len - r->off < n) {
        r->bad = 1;
        return 0;
    }
    return 1;
}
static uint8_t u8(rd *r) { return need(r, 1) ? r->p[r->off++] : 0; }
static uint16_t u16(rd *r) {
    if (!need(r, 2)) return 0;
    uint16_t v = (uint16_t)(r->p[r->off] << 8 | r->p[r->off + 1]);
    r->off += 2;
    return v;
}
static uint32_t u32(rd *r) {
    if (!need(r, 4)) return 0;
    const uint8_t *p = r->p + r->off;
    r->off += 4;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t u64(rd *r) {
    uint64_t hi = u32(r);
    return hi << 32 | u32(r);
}
/* A NUL-terminated string, copied. */
static char *str(rd *r) {
    if (r->bad) return NULL;
    const uint8_t *z = memchr(r->p + r->off, 0, r->len - r->off);
    if (!z) {
        r->bad = 1;
        return NULL;
    }
    size_t n = (size_t)(z - (r->p + r->off));
    char *s = malloc(n + 1);
    if (!s) {
        r->bad = 1;
        return NULL;
    }
    memcpy(s, r->p + r->off, n + 1);
    r->off += n + 1;
    return s;
}
static void skip_str(rd *r) {
    char *s = str(r);
    free(s);
}

static void tuple(rd *r, cv_pg_tuple *t) {
    t->ncols = u16(r);
    if (r->bad) return;
    t->col = calloc((size_t)(t->ncols ? t->ncols : 1), sizeof *t->col);
    if (!t->col) {
        r->bad = 1;
        return;
    }
    for (int i = 0; i < t->ncols && !r->bad; i++) {
        cv_pg_col *c = &t->col[i];
        c->kind = (char)u8(r);
        if (c->kind == 't' || c->kind == 'b') {
            c->len = u32(r);
            if (!need(r, c->len)) return;
            c->val = (const char *)r->p + r->off;
            r->off += c->len;
            if (c->kind == 'b') r->bad = 1; /* binary mode is never requested */
        } else if (c->kind != 'n' && c->kind != 'u') {
            r->bad = 1;
        }
    }
}

cv_err cv_pg_decode(const uint8_t *buf, size_t len, cv_pg_msg *m, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    rd r = {buf, len, 0, 0};
    m->type = (char)u8(&r);
    switch (m->type) {
    case 'B':
        m->final_lsn = u64(&r);
        m->commit_ts = (int64_t)u64(&r);
        m->xid = u32(&r);
        break;
    case 'C':
        if (u8(&r) != 0 && !r.bad) {
            snprintf(err, errlen, "commit message with nonzero flags");
            return CV_ERR_FORMAT;
        }
        m->commit_lsn = u64(&r);
        m->end_lsn = u64(&r);
        m->commit_ts = (int64_t)u64(&r);
        break;
    case 'R': {
        cv_pg_rel *rel = &m->rel;
        rel->oid = u32(&r);
        rel->nsp = str(&r);
        rel->name = str(&r);
        rel->replident = (char)u8(&r);
        rel->ncols = u16(&r);
        if (r.bad) break;
        rel->col = calloc((size_t)(rel->ncols ? rel->ncols : 1), sizeof *rel->col);
        if (!rel->col) r.bad = 1;
        for (int i = 0; i < rel->ncols && !r.bad; i++) {
            rel->col[i].key = u8(&r) & 1;
            rel->col[i].name = str(&r);
            rel->col[i].type_oid = u32(&r);
            rel->col[i].typmod = (int32_t)u32(&r);
        }
        break;
    }
    case 'I':
        m->relid = u32(&r);
        if (u8(&r) != 'N')
            r.bad = 1;
        else
            tuple(&r, &m->new_tup);
        break;
    case 'U': {
        m->relid = u32(&r);
        uint8_t k = u8(&r);
        if (k == 'K' || k == 'O') {
            m->old_kind = (char)k;
            tuple(&r, &m->old_tup);
            k = u8(&r);
        }
        if (k != 'N')
            r.bad = 1;
        else
            tuple(&r, &m->new_tup);
        break;
    }
    case 'D': {
        m->relid = u32(&r);
        uint8_t k = u8(&r);
        if (k != 'K' && k != 'O') r.bad = 1;
        m->old_kind = (char)k;
        tuple(&r, &m->old_tup);
        break;
    }
    case 'T':
        m->ntrunc = (int)u32(&r);
        m->trunc_flags = u8(&r);
        if (r.bad || m->ntrunc < 0 || (size_t)m->ntrunc > (len - r.off) / 4) {
            r.bad = 1;
            break;
        }
        m->trunc_relid = malloc(sizeof(uint32_t) * (size_t)(m->ntrunc ? m->ntrunc : 1));
        if (!m->trunc_relid) r.bad = 1;
        for (int i = 0; i < m->ntrunc && !r.bad; i++)
            m->trunc_relid[i] = u32(&r);
        break;
    case 'Y':
        u32(&r);
        skip_str(&r);
        skip_str(&r);
        break;
    case 'O':
        u64(&r);
        skip_str(&r);
        break;
    case 'M':
        u8(&r);
        u64(&r);
        skip_str(&r);
        if (!r.bad) {
            uint32_t n = u32(&r);
            if (need(&r, n)) r.off += n;
        }
        break;
    default:
        snprintf(err, errlen, "unknown pgoutput message type 0x%02x at byte 0", (unsigned char)m->type);
        return CV_ERR_FORMAT;
    }
    if (r.bad) {
        snprintf(err, errlen, "malformed pgoutput '%c' message: %zu bytes, failed at byte %zu", m->type, len,
                 r.off);
        cv_pg_msg_free(m);
        return CV_ERR_FORMAT;
    }
    return CV_OK;
}

void cv_pg_rel_free(cv_pg_rel *rel) {
    for (int i = 0; rel->col && i < rel->ncols; i++)
        free(rel->col[i].name);
    free(rel->col);
    free(rel->nsp);
    free(rel->name);
    memset(rel, 0, sizeof *rel);
}

void cv_pg_msg_free(cv_pg_msg *m) {
    free(m->old_tup.col);
    free(m->new_tup.col);
    free(m->trunc_relid);
    cv_pg_rel_free(&m->rel);
    m->old_tup.col = m->new_tup.col = NULL;
    m->trunc_relid = NULL;
}
