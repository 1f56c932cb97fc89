/* pgoutput.h: decoder for PostgreSQL's pgoutput logical replication messages, protocol
 * version 1, non-streaming (../shared/PROTOCOLS.md §1.5). Every length is checked against
 * the buffer; a malformed message is an error naming the message type and byte offset. */
#ifndef CV_PGOUTPUT_H
#define CV_PGOUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/cv_err.h"
#include "../common/cv_lsn.h"

typedef struct cv_pg_col {
    char kind;       /* 'n' NULL, 'u' unchanged TOASTed value (no data), 't' text */
    const char *val; /* 't': text bytes inside the message buffer (not NUL-terminated) */
    uint32_t len;
} cv_pg_col;

typedef struct cv_pg_tuple {
    int ncols;
    cv_pg_col *col; /* (ncols) owned by the message */
} cv_pg_tuple;

typedef struct cv_pg_relcol {
    char *name;
    uint32_t type_oid;
    int32_t typmod;
    int key; /* part of the replica identity */
} cv_pg_relcol;

typedef struct cv_pg_rel {
    uint32_t oid;
    char *nsp, *name; /* "" namespace means pg_catalog */
    char replident;   /* 'd' default, 'n' nothing, 'f' full, 'i' index */
    int ncols;
    cv_pg_relcol *col; /* (ncols) */
} cv_pg_rel;

typedef struct cv_pg_msg {
    char type;                    /* 'B' begin, 'C' commit, 'R' relation, 'I' insert, 'U' update, 'D' delete,
                                     'T' truncate, 'Y' type, 'O' origin, 'M' message */
    uint64_t final_lsn;           /* B */
    uint64_t commit_lsn, end_lsn; /* C */
    int64_t commit_ts;            /* B, C: microseconds since 2000-01-01 */
    uint32_t xid;                 /* B */
    uint32_t relid;               /* I U D */
    char old_kind;                /* U D: 'K' key, 'O' old row, 0 none */
    cv_pg_tuple old_tup, new_tup;
    int ntrunc;            /* T */
    uint32_t *trunc_relid; /* (ntrunc) owned */
    uint8_t trunc_flags;   /* 1 CASCADE, 2 RESTART IDENTITY */
    cv_pg_rel rel;         /* R (owned; move it out with cv_pg_rel_take) */
} cv_pg_msg;

/* Decodes one pgoutput message (the payload of an XLogData 'w'). On failure returns
 * CV_ERR_FORMAT with a message in err. Free with cv_pg_msg_free. Column text points into
 * buf, which must outlive the message. */
cv_err cv_pg_decode(const uint8_t *buf, size_t len, cv_pg_msg *m, char *err, size_t errlen);
void cv_pg_msg_free(cv_pg_msg *m);
void cv_pg_rel_free(cv_pg_rel *r);

#endif
