/*  admin — the JSON answers to the router's admin commands, shaped like
    EventMQ's (STATUS, ROUTER_SHOW_WORKERS, ROUTER_SHOW_SCHEDULERS) with emq's
    extra keys. Reads the router's state, never changes it.
*/
#ifndef EMQ_ROUTER_ADMIN_H
#define EMQ_ROUTER_ADMIN_H

#include "peers.h"
#include "queues.h"

typedef struct {
    const char *kind;       // "sqlite" or "memory"
    const char *path;       // database file, or NULL
    const char *fsync;      // fsync policy name
    int64_t dead;           // dead jobs kept
    size_t scheduled;       // delayed jobs and retries waiting out backoff
    bool failing;           // the last commit failed
} admin_storage_t;

//  Each returns a malloc'd compact JSON string the caller frees, or NULL.
char *admin_status_json (queues_t *queues, peers_t *job_managers,
                         const admin_storage_t *storage);
char *admin_workers_json (peers_t *job_managers, int64_t now_mono_ms);
char *admin_schedulers_json (peers_t *schedulers, int64_t now_mono_ms);

void admin_test (bool verbose);

#endif
