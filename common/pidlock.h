/*  lock — one router per data directory, through a locked pidfile (libbsd
    pidfile_open: an flock held for the life of the process).

    LOCK_FAIL      a second router exits, naming the pid holding the lock
    LOCK_STANDBY   it waits, trying again every 2 s, and goes on when free
    LOCK_TAKEOVER  it asks the holder to stop (SIGTERM), waits until that
                   process has fully exited, then takes the lock
*/
#ifndef EMQ_ROUTER_LOCK_H
#define EMQ_ROUTER_LOCK_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { LOCK_FAIL, LOCK_STANDBY, LOCK_TAKEOVER } lock_mode_t;

typedef struct lock_t lock_t;

//  Takes the lock on <dir>/<name>.pid. Returns the lock (release it with
//  lock_release), or NULL with the reason in err. Standby and takeover
//  give up when *interrupted becomes true (a signal) or after timeout_s of
//  waiting for a takeover (0 = wait forever).
lock_t *lock_acquire (const char *dir, const char *name, lock_mode_t mode,
                      volatile int *interrupted, double timeout_s,
                      char *err, size_t errlen);
//  Removes the pidfile and releases the lock; NULL is fine.
void lock_release (lock_t **self_p);

void lock_test (bool verbose);

#endif
