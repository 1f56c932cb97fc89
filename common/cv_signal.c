/* cv_signal.c: stop flags, SIGHUP ignored and logged (or counted for a reload), stop hooks
 * (cv_signal.h).
 *
 * The handlers write flags only; one detached thread polls them every 100 ms to log the
 * SIGHUP line and run the stop hooks (async-signal-safe handlers cannot log or cancel). */
#define _POSIX_C_SOURCE 200809L
#include "cv_signal.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "cv_log.h"

double cv_stop_age(void);
static volatile sig_atomic_t *user_flag, *reload_flag;
static volatile sig_atomic_t stop_seen, hup_seen;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static void (*hooks[8])(void);
static int nhooks, thread_started;

static struct timespec stop_ts; /* written once, before stop_seen (async-signal-safe clock) */

static void on_stop(int sig) {
    (void)sig;
    if (!stop_seen) clock_gettime(CLOCK_MONOTONIC, &stop_ts);
    stop_seen = 1;
    if (user_flag) *user_flag = 1;
}

static void on_hup(int sig) {
    (void)sig;
    hup_seen++;
    if (reload_flag) ++*reload_flag;
}

static void *watch(void *arg) {
    (void)arg;
    int hups = 0, hooked = 0;
    for (;;) {
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
        int h = hup_seen;
        if (h != hups && reload_flag) {
            hups = h; /* the command reads its file again and says so */
        } else if (h != hups) {
            cv_warn("event=sighup_ignored signals=%d note=\"cdcvec reads its options once and has nothing to "
                    "reload; it keeps running (stop it with SIGTERM, then start it with the new options)\"",
                    h - hups);
            hups = h;
        }
        if (stop_seen && !hooked) {
            if (cv_stop_age() >= 0.5) {
                hooked = 1;
                pthread_mutex_lock(&mu);
                int n = nhooks;
                void (*fn[8])(void);
                memcpy(fn, hooks, sizeof fn);
                pthread_mutex_unlock(&mu);
                for (int i = 0; i < n; i++)
                    fn[i]();
            }
        }
    }
    return NULL;
}

static void start_thread(void) {
    pthread_mutex_lock(&mu);
    if (!thread_started) {
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        /* the thread must not take the stop signals from the main thread's waits */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        if (pthread_create(&th, &a, watch, NULL) == 0) thread_started = 1;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&a);
    }
    pthread_mutex_unlock(&mu);
}

void cv_signal_init(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_hup;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGHUP, &sa, NULL);
    start_thread();
}

void cv_signal_on_stop(volatile sig_atomic_t *flag) {
    user_flag = flag;
    if (stop_seen && flag) *flag = 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    start_thread();
}

void cv_signal_on_reload(volatile sig_atomic_t *flag) {
    reload_flag = flag;
    cv_signal_init();
}

int cv_stopping(void) { return stop_seen != 0; }

double cv_stop_age(void) {
    if (!stop_seen) return -1;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - stop_ts.tv_sec) + (double)(now.tv_nsec - stop_ts.tv_nsec) * 1e-9;
}

void cv_signal_request_stop(void) { on_stop(0); }

void cv_signal_add_stop_hook(void (*fn)(void)) {
    pthread_mutex_lock(&mu);
    int have = 0;
    for (int i = 0; i < nhooks; i++)
        have |= hooks[i] == fn;
    if (!have && nhooks < 8) hooks[nhooks++] = fn;
    pthread_mutex_unlock(&mu);
}
