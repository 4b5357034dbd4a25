/*  slowsync — an LD_PRELOAD library for the integration tests: a slow
    disk. Every fdatasync and fsync of the process waits EMQ_SLOWSYNC_MS
    milliseconds (0 when unset) before it does the real call, as a disk
    whose cache flush takes that long would. Nothing else changes.
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void
s_wait (void)
{
    const char *value = getenv ("EMQ_SLOWSYNC_MS");
    long ms = value ? atol (value) : 0;
    if (ms <= 0)
        return;
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep (&ts, &ts) != 0)
        ;  // a signal: sleep the rest
}

int
fdatasync (int fd)
{
    static int (*real) (int);
    if (!real)
        *(void **) &real = dlsym (RTLD_NEXT, "fdatasync");
    s_wait ();
    return real (fd);
}

int
fsync (int fd)
{
    static int (*real) (int);
    if (!real)
        *(void **) &real = dlsym (RTLD_NEXT, "fsync");
    s_wait ();
    return real (fd);
}
