/*  settings — the job manager's settings, typed.

    main.c fills one from the configuration (common/config.h: defaults,
    file, environment, flags) at start-up, and again on SIGHUP; everything
    the config module cannot check alone is validated here, once (the
    queues JSON, the hooks, the CURVE keys). The job manager then reads
    fields, never settings by name. A jobmanager_settings_t owns its
    strings and its worker configuration, so the config can go.
*/
#ifndef EMQ_JM_SETTINGS_H
#define EMQ_JM_SETTINGS_H

#include "config.h"
#include "log.h"
#include "worker/worker.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *backend_addr;     // the router's backend
    char **failover_addrs;  // more backends, tried in turn on silence
    size_t failover_count;
    char *queues;                   // JSON [[weight,"name"],...], checked
    char *name;                     // prefix of the identity; "" = "jm"
    size_t concurrent_jobs;         // worker processes
    int64_t heartbeat_interval_ms;  // between our HEARTBEATs
    int64_t heartbeat_timeout_ms;   // silence counted as one miss; INFORM retry
    int64_t heartbeat_liveness;     // misses before reconnecting
    int64_t kill_grace_ms;          // jobs get this long to finish when stopping
    int64_t prefetch_hold_ms;       // a held job goes back after this; 0 = never
    uint32_t default_timeout_s;     // for jobs without timeout:N; 0 = none
    size_t payload_max;             // largest payload frame accepted
    log_level_t log_level;
    char *log_level_name;     // as configured, for logs
    char *log_format;         // auto, plain or journal (log lines)
    char *curve_server_key;   // CURVE: router's key; "" = plain
    char *curve_cert;         // CURVE: our key pair file; "" = fresh
    worker_config_t *worker;  // what new workers get (owned; the job
                              // manager hands it to its workers)
} jobmanager_settings_t;

//  Fills settings from config (borrowed) and validates what config does
//  not. Returns settings the caller owns, or NULL with the reason in err.
jobmanager_settings_t *jobmanager_settings_new (config_t *config, char *err,
                                                size_t errlen);

//  Destroys settings and nulls the pointer; NULL is fine.
void jobmanager_settings_destroy (jobmanager_settings_t **self_p);

//  The backend to connect to for the index-th attempt: backend_addr, then
//  each failover address, then backend_addr again (borrowed).
const char *jobmanager_settings_backend (const jobmanager_settings_t *self, size_t index);

void jobmanager_settings_test (bool verbose);

#endif
