/*  job — the router's job record and its state machine.

    A job_t is one allocation: the record, its msgid and its payload. It is
    owned by queues_t (queues_job_new / queues_job_delete); waiting lists,
    a peer's in-flight set and the router's lists only borrow it.

    A job's state changes in one place only: job_fire, which looks the pair
    (state, event) up in one table (docs/job-states.md is the same table,
    and job_test checks that it is), moves the job and keeps the counters
    that follow from the move (in flight, dispatched, processed, failed,
    its attempt). It sends and stores nothing: the router acts on the
    move (sends, store writes, list membership).
*/
#ifndef EMQ_ROUTER_JOB_H
#define EMQ_ROUTER_JOB_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "emqp.h"

typedef struct peer_t peer_t;
typedef struct queue_t queue_t;
typedef struct queues_origin_t queues_origin_t;

typedef enum {
    JOB_PENDING = 0,  // accepted, waiting for the store's commit
    JOB_QUEUED,       // waiting for a job manager
    JOB_RUNNING,      // dispatched to a job manager, outcome pending
    JOB_SCHEDULED,    // delayed, or waiting out a retry's backoff
    JOB_ENDED,        // ended; kept until the store has its outcome
    JOB_STATE_COUNT
} job_state_t;

typedef enum {
    JOB_EV_ACCEPT = 0,  // its row is committed (or loaded): due now
    JOB_EV_DELAY,       // its row is committed (or loaded): due later
    JOB_EV_DUE,         // its time came
    JOB_EV_DISPATCH,    // sent to a job manager (one more attempt)
    JOB_EV_RESUME,      // the DONE of the dispatch it had before a
                        // router restart came: it ran after all
    JOB_EV_REQUEUE,     // its job manager is gone, or never got it
    JOB_EV_RETURN,      // given back unstarted (the attempt is undone)
    JOB_EV_SUCCEED,     // it ended well
    JOB_EV_RETRY,       // it failed with retries left: backing off
    JOB_EV_FAIL,        // it failed for good (failed, or dead)
    JOB_EV_CANCEL,      // cancelled
    JOB_EV_COUNT
} job_event_t;

//  The counters a queue keeps about its jobs; job_fire maintains them.
typedef struct {
    uint64_t inflight;    // jobs running (dispatched, no outcome yet)
    uint64_t dispatched;  // dispatches so far (retries count again)
    uint64_t processed;   // jobs that ended well
    uint64_t failed;      // jobs that failed for good
} job_counts_t;

//  What a job needs only in some states: kept apart so that a queued job
//  stays small. Allocated on first use by job_more.
typedef struct {
    double run_at;           // unix seconds, while JOB_SCHEDULED (or pending
                             // and delayed)
    void *scheduled_handle;  // handle in the router's scheduled list
    zlistx_t *watchers;      // zframe_t * routing ids that FETCHed it, or NULL
    uint64_t prior_epoch;    // while linked in a waiting list: the epoch it
                             // had (a DONE of that dispatch still ends it)
    //  Its outcome, while JOB_ENDED (the store's commit of it pending).
    int end_state;        // store_state_t
    int end_status;       // emqp_status_t
    zframe_t *end_value;  // value or error text
    char *end_usage;
    double ended_at;
} job_more_t;

//  Flags of a job.
#define JOB_CANCEL_REQUESTED 1  // CANCEL sent to its job manager
#define JOB_RETURNED 2          // given back unstarted (RETURN): a free slot only
#define JOB_MSGID_UUID 4        // msgid is a canonical UUID kept as 16 bytes
#define JOB_LINKED 8            // in a waiting list: link, not peer and epoch, in use

//  A job record (a queued 64-byte job with a UUID msgid is 160 bytes of
//  heap). Read the msgid with job_msgid and the payload with job_payload.
typedef struct job_t job_t;
struct job_t {
    //  A job in a waiting list (JOB_LINKED) is linked there; any other has
    //  a dispatch epoch and maybe a job manager.
    union {
        TAILQ_ENTRY (job_t) link;  // while JOB_LINKED
        struct {
            peer_t *peer;    // borrowed; the job manager running it, or NULL
            uint64_t epoch;  // fencing token of the latest dispatch
        };
    };
    int64_t row;              // the job's key in the store (0: none)
    queue_t *queue;           // borrowed; its name is the queue frame
    queues_origin_t *origin;  // headers and submitter (interned: shared by
                              // the jobs of one client with equal headers)
    job_more_t *more;         // or NULL
    uint32_t attempt;         // dispatches so far
    uint32_t retries_left;
    uint32_t payload_size;
    uint32_t queued_at;  // monotonic ms (mod 2^32) when it (re)entered
                         // the queue: waits are differences, so right up
                         // to 49 days
    uint8_t state;       // job_state_t; changed by job_fire only
    uint8_t flags;       // JOB_*
    uint8_t msgid_size;  // bytes of data[] that hold the msgid
    char data[];         // msgid (text + NUL, or 16 UUID bytes), payload
};

//  The state an event moves a job to from a state, or -1 if the table has
//  no such move.
int job_next (job_state_t state, job_event_t event);

//  Moves a job by an event: its state, the counters, its attempt and the
//  RETURNED flag. Returns 0, or -1 (nothing changed) when the job's state
//  does not take that event: the caller's bug or a stale report, which it
//  logs. counts may be NULL (a job outside any queue's accounts).
int job_fire (job_t *job, job_event_t event, job_counts_t *counts);

//  Names for logs and docs ("queued", "dispatch"); "?" when out of range.
const char *job_state_name (int state);
const char *job_event_name (int event);

//  The job's msgid as text; buf is used when it is kept packed.
typedef struct {
    char text[EMQP_MSGID_MAX + 1];
} job_msgid_t;
const char *job_msgid (const job_t *job, job_msgid_t *buf);
//  For log lines and one-off uses: the text lives until the end of the
//  enclosing block.
#define JOB_MSGID(job) job_msgid ((job), &(job_msgid_t){ .text = "" })
//  Writes the stored form of msgid into job's flags and data (which must
//  have room for strlen (msgid) + 1 bytes); returns its size in data, or
//  0 if it is longer than EMQP_MSGID_MAX.
size_t job_msgid_store (job_t *job, const char *msgid);
//  Bytes job_msgid_store would use for msgid (0: too long).
size_t job_msgid_size (const char *msgid);
const void *job_payload (const job_t *job);
//  The epoch of the job's latest dispatch, whatever its state (0: none).
uint64_t job_epoch (const job_t *job);
//  The job's optional part, allocated on first use; NULL if out of memory.
job_more_t *job_more (job_t *job);
//  Frees a record and its optional part (the owner's destructor).
void job_free (job_t *job);

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

void job_test (bool verbose);

#endif
