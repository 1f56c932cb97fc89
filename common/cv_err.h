/* cv_err.h: the one error enum of cdcvec, its messages, and a failure's classification. */
#ifndef CV_ERR_H
#define CV_ERR_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cv_err {
    CV_OK = 0,
    CV_ERR_NOMEM,       /* allocation failed */
    CV_ERR_IO,          /* a file or stream could not be read or written */
    CV_ERR_NOTFOUND,    /* a required file, tensor or key is missing */
    CV_ERR_FORMAT,      /* malformed input: file, header, JSON, option value */
    CV_ERR_MISMATCH,    /* well-formed but disagrees with the model config (shape, dtype) */
    CV_ERR_ARG,         /* invalid argument from the caller */
    CV_ERR_DEVICE,      /* an accelerator failed or is absent */
    CV_ERR_UNSUPPORTED, /* valid request this build cannot serve */
    CV_ERR_BUSY,        /* over capacity, retry later */
    CV_ERR_TIMEOUT,     /* deadline passed, retry later */
    CV_ERR_SHUTDOWN,    /* the service is stopping: retry elsewhere or later */
    CV_ERR__COUNT
} cv_err;

/* Static, never NULL. */
const char *cv_strerror(cv_err e);

/* A failure classified once, where it entered (libpq: cv_pg.h; the stores: sink.h; Kafka:
 * kafka/); the stage loop decides retry or stop from it (runtime/loop.h). */
typedef struct cv_fault {
    int retriable; /* 1: the same call may succeed later (back off, retry); 0: stop, fix first */
    /* static label, usable as a Prometheus label value: "connection", "auth", "privilege",
     * "missing_object", "config", "resources", "data", "conflict" or "server"; NULL: not
     * classified */
    const char *kind;
    /* static sentence naming what the user should do (no '%' in it), or NULL when retrying
     * is the fix */
    const char *fix;
} cv_fault;

/* Broken invariant: abort with file:line. Not for errors from outside the process. */
#define CV_ASSERT(cond)                                                                                      \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "cdcvec: assertion failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

#ifdef __cplusplus
}
#endif

#endif
