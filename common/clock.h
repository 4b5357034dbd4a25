/*  clock — the two clocks every emq program reads.

    Monotonic milliseconds (or microseconds) measure intervals, timeouts and
    deadlines: they never jump. Wall-clock seconds since 1970 are for what
    peers and people see (heartbeat timestamps, when a job ended, a fire
    time); they jump when the system clock is set. Do not mix the two.
*/
#ifndef EMQ_CLOCK_H
#define EMQ_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

//  Monotonic milliseconds (czmq's zclock_mono): for timeouts and deadlines.
int64_t clock_mono_ms (void);
//  Monotonic microseconds: for measuring how long something took.
int64_t clock_mono_us (void);
//  Unix time in seconds with the fraction (CLOCK_REALTIME), as eMQP
//  heartbeat timestamps carry it.
double clock_wall_s (void);
//  Unix time in whole microseconds (CLOCK_REALTIME).
uint64_t clock_wall_us (void);

void clock_test (bool verbose);

#endif
