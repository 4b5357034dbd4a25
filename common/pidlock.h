/*  pidlock — one process of a kind per data directory (emq-router,
    emq-scheduler), through a locked pidfile (libbsd pidfile_open: an flock
    held for the life of the process).

    PIDLOCK_FAIL      a second process exits, naming the pid holding the lock
    PIDLOCK_STANDBY   it waits, trying again every 2 s, and goes on when free
    PIDLOCK_TAKEOVER  it asks the holder to stop (SIGTERM), waits until that
                      process has fully exited, then takes the lock
*/
#ifndef EMQ_PIDLOCK_H
#define EMQ_PIDLOCK_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { PIDLOCK_FAIL, PIDLOCK_STANDBY, PIDLOCK_TAKEOVER } pidlock_mode_t;

typedef struct pidlock_t pidlock_t;

//  Takes the lock on <dir>/<name>.pid (name, e.g. "emq-router", also names
//  the holder in messages). Returns the lock (release it with
//  pidlock_release), or NULL with the reason in err. Standby and takeover
//  give up when *interrupted becomes true (a signal) or after timeout_s of
//  waiting for a takeover (0 = wait forever).
pidlock_t *pidlock_acquire (const char *dir, const char *name, pidlock_mode_t mode,
                            volatile int *interrupted, double timeout_s, char *err,
                            size_t errlen);
//  Removes the pidfile and releases the lock; NULL is fine.
void pidlock_release (pidlock_t **self_p);

void pidlock_test (bool verbose);

#endif
