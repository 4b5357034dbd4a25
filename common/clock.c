/*  clock — monotonic and wall-clock time. See clock.h. */
#include "clock.h"

#include <czmq.h>
#include <time.h>

int64_t
clock_mono_ms (void)
{
    return zclock_mono ();
}

int64_t
clock_mono_us (void)
{
    return zclock_usecs ();
}

double
clock_wall_s (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

uint64_t
clock_wall_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
clock_test (bool verbose)
{
    if (verbose)
        printf (" * clock: ");
    int64_t mono_ms = clock_mono_ms ();
    int64_t mono_us = clock_mono_us ();
    CHECK (mono_ms >= 0 && mono_us >= 0);
    //  Both monotonic clocks are one clock at two resolutions.
    CHECK (mono_us / 1000 - mono_ms <= 5 && mono_ms - mono_us / 1000 <= 5);
    zclock_sleep (2);
    CHECK (clock_mono_ms () >= mono_ms + 2);
    CHECK (clock_mono_us () >= mono_us + 2000);

    double wall_s = clock_wall_s ();
    uint64_t wall_us = clock_wall_us ();
    CHECK (wall_s > 1.7e9);  // after 2023
    CHECK_NEAR ((double) wall_us / 1e6, wall_s, 1.0);
    CHECK_NEAR (wall_s, (double) time (NULL), 2.0);
    if (verbose)
        printf ("OK\n");
}
