/* cv_time.h: the two clocks: monotonic seconds for intervals, wall-clock seconds for times
 * compared with other machines' (PostgreSQL commit timestamps). */
#ifndef CV_TIME_H
#define CV_TIME_H

#include <time.h>

static inline double cv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline double cv_wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
