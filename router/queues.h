/*  queues — named job queues of the router and the job records they hold.

    queues_t owns every queue_t (a hash by name) and every job_t (an index by
    msgid that holds only pointers: ck_hs). A queue's waiting list and a peer's in-flight set only borrow job
    records. A queue also keeps the job managers that serve it (borrowed
    peer_t pointers with their weight for this queue), ordered by weight,
    highest first; among equals the least recently used one is chosen.
*/
#ifndef EMQ_ROUTER_QUEUES_H
#define EMQ_ROUTER_QUEUES_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "emqp.h"
#include "headers.h"

#include <sys/queue.h>

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

typedef struct queues_origin_t queues_origin_t;

//  What a job needs only in some states: kept apart so that a queued job
//  stays small. Allocated on first use by job_more.
typedef struct {
    double run_at;          // unix seconds, while JOB_SCHEDULED (or pending
                            // and delayed)
    void *scheduled_handle; // handle in the router's scheduled list
    zlistx_t *watchers;     // zframe_t * routing ids that FETCHed it, or NULL
    uint64_t prior_epoch;   // while JOB_QUEUED: the epoch it had (a DONE of
                            // that dispatch still ends it), see job_epoch
    //  Its outcome, while JOB_ENDED (the store's commit of it pending).
    int end_state;          // store_state_t
    int end_status;         // emqp_status_t
    zframe_t *end_value;    // value or error text
    char *end_usage;
    double ended_at;
} job_more_t;

//  Flags of a job.
#define JOB_CANCEL_REQUESTED 1  // CANCEL sent to its job manager
#define JOB_RETURNED 2          // a job manager gave it back unstarted
                                // (RETURN): a free slot only, no prefetch
#define JOB_MSGID_UUID 4        // msgid is a canonical UUID kept as 16 bytes

//  A job record: one allocation holding the record, its msgid and its
//  payload (a queued 64-byte job with a UUID msgid is 160 bytes of heap).
//  Read the msgid with job_msgid and the payload with job_payload.
typedef struct job_t job_t;
struct job_t {
    //  A queued job is linked in its waiting list; any other has a dispatch
    //  epoch and maybe a job manager (queue_push/queue_unlink switch them).
    union {
        TAILQ_ENTRY (job_t) link;   // while JOB_QUEUED
        struct {
            peer_t *peer;   // borrowed; the job manager running it, or NULL
            uint64_t epoch; // fencing token of the latest dispatch
        };
    };
    int64_t row;            // the job's key in the store (0: none)
    queue_t *queue;         // borrowed; its name is the queue frame
    queues_origin_t *origin;    // headers and submitter (interned: shared by
                                // the jobs of one client with equal headers)
    job_more_t *more;       // or NULL
    uint32_t attempt;       // dispatches so far
    uint32_t retries_left;
    uint32_t payload_size;
    uint32_t queued_at;     // monotonic ms (mod 2^32) when it (re)entered
                            // the queue: waits are differences, so right up
                            // to 49 days
    uint8_t state;          // job_state_t
    uint8_t flags;          // JOB_*
    uint8_t msgid_size;     // bytes of data[] that hold the msgid
    char data[];            // msgid (text + NUL, or 16 UUID bytes), payload
};

//  The job's msgid as text; buf is used when it is kept packed.
typedef struct {
    char text[EMQP_MSGID_MAX + 1];
} job_msgid_t;
const char *job_msgid (const job_t *job, job_msgid_t *buf);
//  For log lines and one-off uses: the text lives until the end of the
//  enclosing block.
#define JOB_MSGID(job) job_msgid ((job), &(job_msgid_t) { .text = "" })
const void *job_payload (const job_t *job);
const char *job_headers (const job_t *job);
const headers_t *job_parsed (const job_t *job);
//  The submitter's routing id, or NULL (e.g. after a router restart).
zframe_t *job_client (const job_t *job);
//  The epoch of the job's latest dispatch, whatever its state (0: none).
uint64_t job_epoch (const job_t *job);
//  The job's optional part, allocated on first use; NULL if out of memory.
job_more_t *job_more (job_t *job);
static inline bool
job_flag (const job_t *job, uint8_t flag)
{
    return (job->flags & flag) != 0;
}
static inline void
job_set_flag (job_t *job, uint8_t flag, bool on)
{
    job->flags = on ? (uint8_t) (job->flags | flag) : (uint8_t) (job->flags & ~flag);
}

struct queue_t {
    char *name;
    TAILQ_HEAD (, job_t) waiting;   // borrowed, FIFO
    size_t waiting_count;
    size_t jobs;            // job records that point at it, in any state
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

//  Names come from the network, so the number of queue records is capped.
//  A queue stays while jobs or job managers point at it; when the cap is
//  reached, queues that nothing points at make room (their counters go).
#define QUEUES_MAX 10000

//  Finds or creates a queue. Returns NULL when it would be new and
//  QUEUES_MAX queues are in use (or memory ran out).
queue_t *queues_require (queues_t *self, const char *name);
queue_t *queues_lookup (queues_t *self, const char *name);
//  Iteration over queues (zhashx order).
queue_t *queues_first (queues_t *self);
queue_t *queues_next (queues_t *self);
size_t queues_hwm (queues_t *self);

//  Jobs. job_lookup returns a borrowed record or NULL.
job_t *queues_job_lookup (queues_t *self, const char *msgid);
//  Creates a job in state JOB_PENDING, not yet in a waiting list. The
//  payload and the client's routing id (may be NULL) are copied. NULL when
//  out of memory, or when the msgid or payload is too large for a record
//  (EMQP_MSGID_MAX, 4 GiB: the codec refuses those first).
job_t *queues_job_new (queues_t *self, const char *msgid, const char *queue_name,
                       const char *headers, const headers_t *parsed,
                       const void *payload, size_t payload_size,
                       const void *client, size_t client_size);
//  Removes and frees a job; it must not be in a waiting list or in flight.
void queues_job_delete (queues_t *self, job_t *job);
size_t queues_job_count (queues_t *self);
//  When no job is held, shrinks the job index back to its initial size: a
//  hash table never shrinks by itself, and after a large backlog its empty
//  slots would keep that memory. Returns true if it did.
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
