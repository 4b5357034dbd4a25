/*  queues — named job queues of the router and the job records they hold.

    queues_t owns every queue_t (a hash by name) and every job_t (job.h; an
    index by msgid that holds only pointers: ck_hs). A queue's waiting list
    and a peer's in-flight set only borrow job records. A queue also keeps the job managers that serve it (borrowed
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
#include "job.h"

//  The job's origin: headers as submitted and parsed, and the submitter's
//  routing id, or NULL (e.g. after a router restart).
const char *job_headers (const job_t *job);
const headers_t *job_parsed (const job_t *job);
zframe_t *job_client (const job_t *job);

struct queue_t {
    char *name;
    TAILQ_HEAD (, job_t) waiting;  // borrowed, FIFO
    size_t waiting_count;
    size_t accepting;     // jobs accepted this turn, not yet committed:
                          // they count against the high-water mark
    size_t jobs;          // job records that point at it, in any state
    zlistx_t *servers;    // queue_server_t *, owned, by weight desc
    job_counts_t counts;  // in flight, dispatched, processed, failed:
                          // kept by job_fire
    int64_t latency_ms;   // wait of the latest dispatched job
    int64_t max_latency_ms;
    void *creator;             // the client that created it (its count of
                               // queues, queues.c), or NULL
    bool paused;               // takes jobs, dispatches none (ADMIN queue_pause)
    size_t *returned_waiting;  // the container's count of returned jobs
                               // (JOB_RETURNED) waiting in any queue
};

typedef struct {
    uint32_t weight;
    peer_t *peer;  // borrowed
} queue_server_t;

typedef struct queues_t queues_t;

//  Creates the container; hwm is the per-queue limit of waiting jobs.
queues_t *queues_new (size_t hwm);
void queues_destroy (queues_t **self_p);

//  Names come from the network, so the number of queue records is capped.
//  A queue stays while jobs or job managers point at it; when a cap is
//  reached, queues that nothing points at (no waiting, running or
//  scheduled job, no job manager) make room (their counters go). Clients
//  may create QUEUES_MAX queues; job managers QUEUES_JM_RESERVE more, so
//  that clients' queues never keep a served queue out.
#define QUEUES_MAX 10000
#define QUEUES_JM_RESERVE 1000

typedef enum {
    QUEUES_OK = 0,
    QUEUES_FULL,         // QUEUES_MAX (clients) or + reserve (job managers)
    QUEUES_CLIENT_FULL,  // the creator holds creator_max queues
    QUEUES_NO_MEMORY
} queues_refusal_t;

//  Finds or creates a queue for a client whose routing id is creator
//  (borrowed), or for a job manager or the store (creator NULL). A client
//  may hold creator_max queues it created (each counts while it exists).
//  Returns NULL with the reason in *why (may be NULL) when it would be new
//  and a cap is reached, or memory ran out.
queue_t *queues_require_for (queues_t *self, const char *name, zframe_t *creator,
                             size_t creator_max, queues_refusal_t *why);
//  The same for a job manager (creator NULL).
queue_t *queues_require (queues_t *self, const char *name);
queue_t *queues_lookup (queues_t *self, const char *name);
//  Iteration over queues (zhashx order).
queue_t *queues_first (queues_t *self);
queue_t *queues_next (queues_t *self);
size_t queues_hwm (queues_t *self);
//  Changes the limit (SIGHUP); queues already past it keep their jobs.
void queues_set_hwm (queues_t *self, size_t hwm);

//  Jobs. job_lookup returns a borrowed record or NULL.
job_t *queues_job_lookup (queues_t *self, const char *msgid);
//  Creates a job in state JOB_PENDING, not yet in a waiting list. The
//  payload and the client's routing id (may be NULL) are copied. NULL when
//  out of memory, or when the msgid or payload is too large for a record
//  (EMQP_MSGID_MAX, 4 GiB: the codec refuses those first).
job_t *queues_job_new (queues_t *self, const char *msgid, const char *queue_name,
                       const char *headers, const headers_t *parsed, const void *payload,
                       size_t payload_size, const void *client, size_t client_size);
//  Removes and frees a job; it must be pending or ended, in no waiting
//  list and not in flight.
void queues_job_delete (queues_t *self, job_t *job);
size_t queues_job_count (queues_t *self);
//  Shrinks the job index once it holds at most an eighth of the jobs it
//  was sized for (back to its initial size when it holds none): a hash
//  table never shrinks by itself, and after a large backlog its empty
//  slots would keep that memory. Returns true if it did.
bool queues_compact (queues_t *self);

//  Waiting lists: they link and unlink a job (JOB_LINKED), whose state
//  job_fire has already made (or is about to make) queued. push appends
//  (new work), push_front puts a job back at the head (work taken away
//  from a job manager that died goes first).
void queue_push (queue_t *self, job_t *job, int64_t now_ms);
void queue_push_front (queue_t *self, job_t *job, int64_t now_ms);
job_t *queue_pop (queue_t *self);
//  The job queue_pop would return, left in place; NULL if none waits.
job_t *queue_head (queue_t *self);
//  Removes a waiting job from the list (e.g. cancel); nothing if it is not
//  linked.
void queue_unlink (queue_t *self, job_t *job);
size_t queue_waiting (queue_t *self);

//  Servers. add keeps the weight order; remove forgets the peer.
void queue_add_server (queue_t *self, peer_t *peer, uint32_t weight);
void queue_remove_server (queue_t *self, peer_t *peer);

void queues_test (bool verbose);

#endif
