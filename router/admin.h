/*  admin — the JSON answers to the router's admin commands, shaped like
    EventMQ's (STATUS, ROUTER_SHOW_WORKERS, ROUTER_SHOW_SCHEDULERS) with emq's
    extra keys. Reads the router's state, never changes it.
*/
#ifndef EMQ_ROUTER_ADMIN_H
#define EMQ_ROUTER_ADMIN_H

#include <jansson.h>

#include "peers.h"
#include "queues.h"
#include "store.h"

#include <jansson.h>

typedef struct {
    const char *kind;   // "sqlite" or "memory"
    const char *path;   // database file, or NULL
    const char *fsync;  // fsync policy name
    int64_t dead;       // dead jobs kept
    size_t scheduled;   // delayed jobs and retries waiting out backoff
    bool failing;       // the last commit failed
    //  PostgreSQL: this router's lead of the database (epoch 0: none).
    int64_t lead_epoch;
    const char *lead_holder;  // this router, as the leader row names it
    double lead_since;        // unix seconds it took the lead
    json_t *routers;          // the other routers of the database (borrowed),
                              // store.routers; NULL: none listed
} admin_storage_t;

//  Messages in and out of the router, for STATUS "traffic".
typedef struct {
    uint64_t batches_in;     // BATCH messages received
    uint64_t batched_in;     // messages that came in them
    uint64_t batches_out;    // BATCH messages sent
    uint64_t batched_out;    // messages that went in them
    uint64_t undeliverable;  // sends that could not reach their peer
} admin_traffic_t;

//  Each returns a malloc'd compact JSON string the caller frees, or NULL.
//  extra (taken, may be NULL): keys added to STATUS as they are, and, under
//  its "queues" key, keys added to each queue's object (emq-web's gauges).
char *admin_status_json (queues_t *queues, peers_t *job_managers,
                         const admin_storage_t *storage, const admin_traffic_t *traffic,
                         json_t *extra);
char *admin_workers_json (peers_t *job_managers, int64_t now_mono_ms);
char *admin_schedulers_json (peers_t *schedulers, int64_t now_mono_ms);

//  Job and queue admin (ADMIN): JSON objects for one job, new references
//  the caller owns. A live job (held by the router; running_on its job
//  manager's id or NULL); full adds headers, payload and history.
json_t *admin_job_json (const job_t *job, const char *running_on, bool full);
//  A stored row (ended, dead, or a live job's committed row).
json_t *admin_row_json (const store_row_t *row, bool full);
//  The name ADMIN "jobs" uses for a live job's state: waiting, scheduled,
//  retrying (scheduled after a failed attempt), running, pending, ended.
const char *admin_job_state (const job_t *job);

void admin_test (bool verbose);

#endif
