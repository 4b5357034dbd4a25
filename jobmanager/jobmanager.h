/*  jobmanager — the job manager object: the eMQP side of emq-jobmanager.

    It owns a DEALER socket to the router's backend, its settings
    (settings.h), its workers (workers.h: the forked processes and the jobs
    they run) and what it holds for the router (held.h: jobs that arrived
    while no worker was free, outcomes not sent yet). One zloop drives
    everything: the socket, one poller per worker pipe (the workers'), a
    self-pipe that signal handlers write to, and a 50 ms housekeeping timer
    (heartbeats, router liveness, INFORM retries, job timeouts, held jobs
    given back, the shutdown grace period).

    Connection states (state x event -> actions, next state):
        CONNECTING  ACK(inform id)  -> flush outbox, READY per idle worker, ACTIVE
        CONNECTING  no ACK in heartbeat_timeout -> INFORM again, CONNECTING
        ACTIVE      REQUEST         -> run on an idle worker, or queue it
        ACTIVE      HEARTBEAT       -> replace dead workers
        any         silence for timeout x liveness, or KBYE
                                    -> new socket, new identity, INFORM, CONNECTING
        any         DISCONNECT, SIGTERM, SIGINT -> drain (no READY), then
                                       KBYE and stop
    See docs/jobmanager.md for the whole behaviour.
*/
#ifndef EMQ_JOBMANAGER_H
#define EMQ_JOBMANAGER_H

#include "settings.h"
#include <stdbool.h>
#include <stddef.h>

typedef struct jobmanager_t jobmanager_t;

//  Builds fresh settings for SIGHUP (file, environment, and the command
//  line again). Returns settings the caller owns, or NULL with the reason
//  in err.
typedef jobmanager_settings_t *(jobmanager_reload_fn) (void *arg, char *err,
                                                       size_t errlen);

//  Creates a job manager from *settings_p (validated by
//  jobmanager_settings_new), which it takes. Returns NULL with the reason
//  in err (out of memory). Nothing is started yet.
jobmanager_t *jobmanager_new (jobmanager_settings_t **settings_p, char *err,
                              size_t errlen);

//  Destroys the job manager (workers are killed if still there) and nulls
//  the pointer; NULL is fine.
void jobmanager_destroy (jobmanager_t **self_p);

//  Sets how SIGHUP rebuilds the configuration (arg borrowed). Without it,
//  SIGHUP only logs that reloading is not available.
void jobmanager_set_reload (jobmanager_t *self, jobmanager_reload_fn *fn, void *arg);

//  Forks the workers, connects, and runs until a graceful stop (SIGTERM,
//  SIGINT, DISCONNECT). Installs handlers for SIGCHLD, SIGTERM, SIGINT,
//  SIGHUP, SIGUSR1 and SIGPIPE for the duration. Returns 0 after a graceful
//  stop, 1 after a fatal error (logged).
int jobmanager_run (jobmanager_t *self);

//  Asks a running job manager to stop gracefully, as SIGTERM does (safe
//  from a signal handler or another thread).
void jobmanager_stop (void);

void jobmanager_test (bool verbose);

#endif
