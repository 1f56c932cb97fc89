/* proto.h: the embed protocol over nng REQ/REP, version 1 (docs/PROTOCOL.md).
 * All integers little-endian. Decoders validate every length against the buffer and the
 * limits before use and never read outside [buf, buf + len). */
#ifndef CV_PROTO_H
#define CV_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "../common/cv_err.h"

#define CV_PROTO_VERSION    1
#define CV_PROTO_REQ_MAGIC  "CVEQ"
#define CV_PROTO_REP_MAGIC  "CVER"
#define CV_PROTO_REQ_HEADER 20 /* magic 4, version 1, flags 1, reserved 2, id 8, count 4 */
#define CV_PROTO_REP_HEADER 16 /* magic 4, version 1, status 1, dtype 1, reserved 1, id 8 */

#define CV_PROTO_FLAG_F16 0x01 /* reply vectors as IEEE half precision */
#define CV_PROTO_FLAG_QUERY                                                                                  \
    0x02 /* the texts are searches: the model's query prompt, not the document one                           \
          */
/* no texts (n = 0): the reply names the model served (dtype CV_PROTO_DTYPE_INFO) */
#define CV_PROTO_FLAG_INFO  0x04
#define CV_PROTO_DTYPE_INFO 2 /* reply: n 0, dim, then u32 length and the model's facts as JSON */

/* Reply status: 0 ok, else the kind of error (stable numbers, part of the protocol). */
typedef enum {
    CV_ST_OK = 0,
    CV_ST_BAD_REQUEST = 1,   /* malformed frame or text: do not retry */
    CV_ST_TOO_LARGE = 2,     /* over a limit (texts, bytes): do not retry as is */
    CV_ST_BUSY = 3,          /* queue full: retry after a backoff */
    CV_ST_SHUTTING_DOWN = 4, /* server draining: retry elsewhere or later */
    CV_ST_INTERNAL = 5,      /* model/device failure: retry may succeed */
    CV_ST_BAD_VERSION = 6,   /* protocol version not served: do not retry */
} cv_status;

const char *cv_status_name(cv_status st);
/* True for BUSY, SHUTTING_DOWN and INTERNAL. */
int cv_status_retriable(cv_status st);

typedef struct cv_proto_limits {
    uint32_t max_texts;      /* per request */
    uint32_t max_text_bytes; /* per text */
} cv_proto_limits;

/* A decoded request: texts point into the caller's buffer (borrowed). */
typedef struct cv_proto_req {
    uint64_t id;
    uint8_t flags;
    uint32_t n;
    const char **text; /* (n) borrowed pointers into the frame, owned array */
    uint32_t *len;     /* (n) owned array */
} cv_proto_req;

/* Decodes a request frame. On failure returns a status (BAD_REQUEST, TOO_LARGE,
 * BAD_VERSION) and writes a message naming what and where into msg; *req->id holds the
 * request id when the header was readable (0 otherwise). On success, free with
 * cv_proto_req_free. Texts must be valid UTF-8. */
cv_status cv_proto_decode_request(const void *buf, size_t len, const cv_proto_limits *lim, cv_proto_req *req,
                                  char *msg, size_t msg_len);
void cv_proto_req_free(cv_proto_req *req);

/* Encodes a request into *out (malloc'd, caller frees); returns its size, 0 on overflow. */
size_t cv_proto_encode_request(uint64_t id, uint8_t flags, const char *const *texts, const size_t *lens,
                               uint32_t n, uint8_t **out);

/* Reply sizes, for preallocating. */
size_t cv_proto_reply_ok_size(uint32_t n, uint32_t dim, int f16);
/* Writes an ok reply with n vectors of dim floats into buf (cv_proto_reply_ok_size bytes). */
void cv_proto_write_reply_ok(uint8_t *buf, uint64_t id, const float *vec, uint32_t n, uint32_t dim, int f16);
/* An info reply (CV_PROTO_FLAG_INFO): the model's dimension and its facts as JSON text, into
 * *out (malloc'd, caller frees); returns its size, 0 without memory. */
size_t cv_proto_write_reply_info(uint8_t **out, uint64_t id, uint32_t dim, const char *json);
/* Writes an error reply into buf (room for CV_PROTO_REP_HEADER + 8 + strlen(msg)); returns size. */
size_t cv_proto_write_reply_err(uint8_t *buf, uint64_t id, cv_status st, const char *msg);

/* A decoded reply. vec is converted to float32 into an owned array. */
typedef struct cv_proto_rep {
    uint64_t id;
    cv_status status;
    uint32_t n, dim;
    float *vec;    /* (n * dim) owned, NULL on error */
    char *info;    /* an info reply (CV_PROTO_FLAG_INFO): the model's facts as JSON text, owned; else NULL */
    char msg[256]; /* error message */
} cv_proto_rep;

/* Decodes a reply frame; returns CV_OK or CV_ERR_FORMAT (with rep->msg saying why). */
cv_err cv_proto_decode_reply(const void *buf, size_t len, cv_proto_rep *rep);
void cv_proto_rep_free(cv_proto_rep *rep);

/* Returns the byte offset of the first invalid UTF-8 sequence in s, or -1 when valid. */
long cv_utf8_invalid_at(const char *s, size_t len);

#endif
