/*  queues — named job queues of the router and the job records they hold.

    queues_t owns every queue_t (a hash by name) and every job_t (a hash by
    msgid). A queue's waiting list and a peer's in-flight set only borrow job
    records. A queue also keeps the job managers that serve it (borrowed
    peer_t pointers with their weight for this queue), ordered by weight,
    highest first; among equals the least recently used one is chosen.
*/
#ifndef EMQ_ROUTER_QUEUES_H
#define EMQ_ROUTER_QUEUES_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "headers.h"

typedef struct peer_t peer_t;
typedef struct queue_t queue_t;

typedef enum {
    JOB_PENDING = 0,        // accepted, waiting for the store's commit
    JOB_QUEUED,             // in its queue's waiting list
    JOB_RUNNING,            // dispatched to a job manager, outcome pending
    JOB_SCHEDULED,          // delayed, or waiting out a retry's backoff
    JOB_ENDED,              // ended; kept until the store has its outcome
    JOB_STATE_COUNT
} job_state_t;

typedef struct queues_intern_t queues_intern_t;

typedef struct {
    int64_t row;            // the job's key in the store (0: none)
    char *msgid;            // the client's message id, unique per router
    const char *headers;    // headers frame as submitted (interned: jobs
                            // with the same headers share one copy)
    headers_t parsed;       // headers_parse of the above
    char *payload;          // never decoded by the router; exact size
    size_t payload_size;
    zframe_t *client;       // routing id of the submitter on the frontend
                            // (interned: one frame per client), or NULL
    queues_intern_t *headers_ref;
    queues_intern_t *client_ref;
    queue_t *queue;         // borrowed; its name is the queue frame
    job_state_t state;
    uint64_t epoch;         // fencing token of the latest dispatch
    uint32_t attempt;       // dispatches so far
    uint32_t retries_left;
    peer_t *peer;           // borrowed; the job manager running it
    int64_t queued_at_ms;   // monotonic, when it (re)entered the queue
    int64_t dispatched_at_ms;
    void *waiting_handle;   // zlistx handle while JOB_QUEUED
    double run_at;          // unix seconds, while JOB_SCHEDULED
    void *scheduled_handle; // handle in the router's scheduled list
    zlistx_t *watchers;     // zframe_t * routing ids that FETCHed it, or NULL
    bool cancel_requested;  // CANCEL sent to its job manager
    bool returned;          // a job manager gave it back unstarted (RETURN):
                            // it goes to a free slot only, never prefetched
    //  Its outcome, while JOB_ENDED (the store's commit of it pending).
    int end_state;          // store_state_t
    int end_status;         // emqp_status_t
    zframe_t *end_value;    // value or error text
    char *end_usage;
    double ended_at;
} job_t;

struct queue_t {
    char *name;
    zlistx_t *waiting;      // job_t *, borrowed, FIFO
    zlistx_t *servers;      // queue_server_t *, owned, by weight desc
    uint64_t processed;     // jobs that ended ok
    uint64_t failed;        // jobs that ended failed (after retries)
    uint64_t inflight;      // jobs dispatched and not yet ended
    uint64_t dispatched;    // dispatches so far (retries count again)
    int64_t latency_ms;     // wait of the latest dispatched job
    int64_t max_latency_ms;
};

typedef struct {
    uint32_t weight;
    peer_t *peer;           // borrowed
} queue_server_t;

typedef struct queues_t queues_t;

//  Creates the container; hwm is the per-queue limit of waiting jobs.
queues_t *queues_new (size_t hwm);
void queues_destroy (queues_t **self_p);

//  Queue records live as long as the router (jobs and job managers point at
//  them), so their number is capped: names come from the network.
#define QUEUES_MAX 10000

//  Finds or creates a queue. Returns NULL when it would be new and
//  QUEUES_MAX queues exist already (or memory ran out).
queue_t *queues_require (queues_t *self, const char *name);
queue_t *queues_lookup (queues_t *self, const char *name);
//  Iteration over queues (zhashx order).
queue_t *queues_first (queues_t *self);
queue_t *queues_next (queues_t *self);
size_t queues_hwm (queues_t *self);

//  Jobs. job_lookup returns a borrowed record or NULL.
job_t *queues_job_lookup (queues_t *self, const char *msgid);
//  Creates a job in state JOB_PENDING, not yet in a waiting list. The
//  payload and the client's routing id (may be NULL) are copied.
job_t *queues_job_new (queues_t *self, const char *msgid, const char *queue_name,
                       const char *headers, const headers_t *parsed,
                       const void *payload, size_t payload_size,
                       const void *client, size_t client_size);
//  Frees a job's payload once it is no longer needed (it ended).
void queues_job_drop_payload (job_t *job);
//  Removes and frees a job; it must not be in a waiting list or in flight.
void queues_job_delete (queues_t *self, job_t *job);
size_t queues_job_count (queues_t *self);
//  When no job is held, replaces the job table with a fresh one: a hash
//  table never shrinks, and after a large backlog its empty buckets would
//  keep that memory. Returns true if it did.
bool queues_compact (queues_t *self);

//  Waiting lists. push appends (new work), push_front puts a job back at the
//  head (work taken away from a job manager that died goes first).
void queue_push (queue_t *self, job_t *job, int64_t now_ms);
void queue_push_front (queue_t *self, job_t *job, int64_t now_ms);
job_t *queue_pop (queue_t *self);
//  The job queue_pop would return, left in place; NULL if none waits.
job_t *queue_head (queue_t *self);
//  Removes a waiting job from the list (e.g. cancel).
void queue_unlink (queue_t *self, job_t *job);
size_t queue_waiting (queue_t *self);

//  Servers. add keeps the weight order; remove forgets the peer.
void queue_add_server (queue_t *self, peer_t *peer, uint32_t weight);
void queue_remove_server (queue_t *self, peer_t *peer);

void queues_test (bool verbose);

#endif
