/* cv_signal.h: the process's signals, the same in every command.
 *
 * SIGTERM and SIGINT ask the process to stop: the handler only sets flags (the command's own
 * and cv_stop_requested), the loops drain and return. Waits that are not the loops' own (a
 * store request's retries, a libpq connect or statement, a Kafka metadata request) look at
 * cv_stopping() at least every 100 ms; statements blocked in PostgreSQL (a lock) are
 * cancelled by the hooks registered here 0.5 s after the signal, so a stop is noticed within
 * a second whatever the process waits on. SIGHUP reloads nothing (cdcvec reads its options
 * once): it is ignored, and a thread logs event=sighup_ignored, never the handler; except in
 * cdcvec sync --config, which reads its pipeline file again (cv_signal_on_reload). */
#ifndef CV_SIGNAL_H
#define CV_SIGNAL_H

#include <signal.h>

/* SIGHUP ignored and logged (every command, from main()). Idempotent. */
void cv_signal_init(void);
/* SIGHUP increments *flag instead (cdcvec sync --config: the pipeline file is read again). */
void cv_signal_on_reload(volatile sig_atomic_t *flag);
/* SIGTERM and SIGINT set *flag (may be NULL) and cv_stopping(); SIGPIPE ignored. */
void cv_signal_on_stop(volatile sig_atomic_t *flag);
/* 1 once a stop signal arrived (or cv_signal_request_stop was called). */
int cv_stopping(void);
/* Seconds since the first stop signal, or -1 before one. */
double cv_stop_age(void);
/* Behaves as if a stop signal arrived (tests, fatal paths). */
void cv_signal_request_stop(void);
/* fn runs once, on the signal thread, 0.5 s after a stop signal (cancels what blocks). At most
 * 8 hooks; the same fn twice is kept once. */
void cv_signal_add_stop_hook(void (*fn)(void));

#endif
