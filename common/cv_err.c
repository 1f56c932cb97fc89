/* cv_err.c: messages and retriability of cv_err. */
#include "cv_err.h"

static const char *const messages[CV_ERR__COUNT] = {
    [CV_OK] = "ok",
    [CV_ERR_NOMEM] = "out of memory",
    [CV_ERR_IO] = "input/output error",
    [CV_ERR_NOTFOUND] = "not found",
    [CV_ERR_FORMAT] = "malformed input",
    [CV_ERR_MISMATCH] = "does not match the model configuration",
    [CV_ERR_ARG] = "invalid argument",
    [CV_ERR_DEVICE] = "device error",
    [CV_ERR_UNSUPPORTED] = "not supported by this build",
    [CV_ERR_BUSY] = "busy, retry later",
    [CV_ERR_TIMEOUT] = "timed out",
    [CV_ERR_SHUTDOWN] = "shutting down",
};

const char *cv_strerror(cv_err e) {
    if ((unsigned)e >= CV_ERR__COUNT) return "unknown error";
    return messages[e];
}
