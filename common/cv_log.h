/* cv_log.h: one line per event, key=value fields, level checked before formatting. */
#ifndef CV_LOG_H
#define CV_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CV_LOG_DEBUG = 0, CV_LOG_INFO, CV_LOG_WARN, CV_LOG_ERROR, CV_LOG_OFF } cv_log_level;

extern cv_log_level cv_log_min;

/* Reads CDCVEC_LOG (debug|info|warn|error|off); default info. */
void cv_log_init_from_env(void);

void cv_log_write(cv_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CV_LOG(lvl, ...)                                                                                     \
    do {                                                                                                     \
        if ((lvl) >= cv_log_min) cv_log_write((lvl), __VA_ARGS__);                                           \
    } while (0)
#define cv_debug(...) CV_LOG(CV_LOG_DEBUG, __VA_ARGS__)
#define cv_info(...)  CV_LOG(CV_LOG_INFO, __VA_ARGS__)
#define cv_warn(...)  CV_LOG(CV_LOG_WARN, __VA_ARGS__)
#define cv_error(...) CV_LOG(CV_LOG_ERROR, __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif
