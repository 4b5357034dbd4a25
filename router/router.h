/*  router — the emq broker object: frontend (clients, schedulers), backend
    (job managers) and admin ROUTER sockets, queues, dispatch, heartbeats.
    main.c only parses settings and runs it, so tests can run it in-process.
*/
#ifndef EMQ_ROUTER_H
#define EMQ_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct {
    const char *frontend;  // bind address for clients/schedulers
    const char *backend;   // bind address for job managers
    const char *admin;     // bind address for admin commands
    const char *events;    // bind address of the event stream (PUB); NULL
                           // or "": no stream
    size_t queue_hwm;      // waiting jobs per queue before QUEUE_FULL
    int64_t heartbeat_interval_ms;
    int64_t heartbeat_timeout_ms;      // silence counted as one miss
    uint32_t heartbeat_liveness;       // misses before a peer is declared dead
    size_t payload_max;                // largest payload frame accepted
    store_backend_t store;             // which database keeps the jobs
    const char *db_path;               // SQLite file, ":memory:", or a libpq
                                       // connection string (PostgreSQL)
    store_fsync_t fsync;               // what a commit waits for
    double lease_ttl_s;                // PostgreSQL: the leader's lease
    bool standby;                      // PostgreSQL: wait for the lead
    double result_ttl_s;               // ended jobs' results are kept this long
    double dead_ttl_s;                 // dead jobs are kept this long
    double retry_backoff_s;            // first retry's delay; doubles each time
    double retry_backoff_max_s;        // cap on a retry's delay
    uint32_t prefetch;                 // jobs a job manager may hold beyond its
                                       // free slots (queued there, run next)
    const char *curve_secret_cert;     // CURVE key pair file; NULL/"": plain
    const char *curve_clients_dir;     // admitted clients' public certificates;
                                       // NULL/"": any client key
    const char *scheduler_identities;  // without CURVE roles: scheduler
                                       // names that may register; NULL/"":
                                       // any on loopback/ipc; "*": any
    size_t client_queues_max;          // queues in use per client identity
                                       // (0: the default, 100)
} router_settings_t;

typedef struct router_t router_t;

//  Opens the store, loads the jobs it holds (running ones go back to their
//  queues), binds the three sockets. Returns NULL with the reason in err.
router_t *router_new (const router_settings_t *settings, char *err, size_t errlen);
void router_destroy (router_t **self_p);

//  Builds fresh settings on SIGHUP (re-reading the configuration): fills
//  *fresh (strings borrowed until the next call) and returns 0, or -1 with
//  the reason in err. arg is borrowed.
typedef int (router_reload_fn) (void *arg, router_settings_t *fresh, char *err,
                                size_t errlen);
//  Sets how SIGHUP rebuilds the settings; without it SIGHUP only logs.
void router_set_reload (router_t *self, router_reload_fn *fn, void *arg);

//  Applies what can change while running: queue_hwm, heartbeats, result
//  and dead retention, retry backoff, prefetch, the CURVE clients
//  directory. The others (addresses, store, payload limit, server key) are
//  kept; program_reload has said they need a restart. Logs what changed.
void router_apply (router_t *self, const router_settings_t *fresh);

//  Runs until an admin DISCONNECT or SIGINT/SIGTERM; then commits what is
//  pending and says KBYE to every peer. Tells systemd READY=1 once running
//  (and WATCHDOG=1 every half WATCHDOG_USEC); SIGHUP reloads. Returns 0; or
//  ROUTER_DEPOSED at once, when another router took the lead of a shared
//  database (its exit status: the supervisor starts it again, as a
//  standby).
#define ROUTER_DEPOSED 6
int router_run (router_t *self);

void router_test (bool verbose);

#endif
