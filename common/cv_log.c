/* cv_log.c: stderr logger with an ISO-8601 timestamp and level prefix. */
#define _POSIX_C_SOURCE 200809L
#include "cv_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

cv_log_level cv_log_min = CV_LOG_INFO;

void cv_log_init_from_env(void) {
    const char *v = getenv("CDCVEC_LOG");
    if (!v) return;
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = 0; i <= CV_LOG_OFF; i++)
        if (strcmp(v, names[i]) == 0) cv_log_min = (cv_log_level)i;
}

void cv_log_write(cv_log_level lvl, const char *fmt, ...) {
    static const char *const tags[] = {"debug", "info", "warn", "error", "off"};
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L,
                     tags[lvl]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
