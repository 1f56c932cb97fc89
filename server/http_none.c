/* http_none.c: the HTTP layer of an engine-only build (-DCDCVEC_ENGINE_ONLY=ON, no
 * libmicrohttpd): the nng server alone, as `cdcvec bench server` uses it; asking for HTTP fails. */
#define _POSIX_C_SOURCE 200809L
#include "../common/cv_log.h"
#include "server_impl.h"

cv_err cv_http_start(cv_server *s) {
    cv_error("event=http_unavailable listen=%s reason=\"engine-only build (-DCDCVEC_ENGINE_ONLY=ON) has no "
             "HTTP layer\" fix=\"configure without -DCDCVEC_ENGINE_ONLY\"",
             s->o.http);
    return CV_ERR_UNSUPPORTED;
}

void cv_http_quiesce(cv_server *s) { (void)s; }

void cv_http_stop(cv_server *s) { (void)s; }
