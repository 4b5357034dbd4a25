/*  dispatch — the router's dispatch policy: which job manager gets the
    next job of a queue, and whether a job manager has room for one more.

    Pure decisions over the peers' and queues' records (borrowed): nothing
    here sends, pops a job or changes a count; the router does that with
    what these functions return. A new policy is this file and its test.

    The policy: a job goes to the job manager serving its queue with the
    highest weight, among equals the least recently used; free slots before
    prefetch room. Only emq/2 job managers (done_frees: they give back what
    they cannot start soon) get prefetched jobs, at most prefetch_max each.
    A job that came back by RETURN waits at the head of its queue for a
    free slot, and no job manager serving that queue gets prefetched jobs
    meanwhile (each slot that frees would only repay the prefetch).

    How many jobs beyond its free slots a job manager gets follows how fast
    it finishes them: about DISPATCH_PREFETCH_MS of its work, at least
    DISPATCH_PREFETCH_MIN and at most prefetch_max; a job manager that
    gives a job back (it could not start it in time) has its pace halved. Quick jobs are then
    pipelined deep (no round trip to the router between two of them),
    while a prefetched job still normally starts well within the job
    manager's prefetch_hold_ms (100 ms by default), after which it would
    come back (RETURN) to run elsewhere.
*/
#ifndef EMQ_ROUTER_DISPATCH_H
#define EMQ_ROUTER_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peers.h"
#include "queues.h"

//  True when peer may take one more job: a free slot, or (with_prefetch)
//  room in its prefetch allowance of prefetch_max.
bool dispatch_has_room (const peer_t *peer, bool with_prefetch, uint32_t prefetch_max);

#define DISPATCH_PREFETCH_MS 25
#define DISPATCH_PREFETCH_MIN 2
//  The jobs peer may hold beyond its free slots now (0 with prefetch off).
uint32_t dispatch_prefetch_allowance (const peer_t *peer, uint32_t prefetch_max);

//  The job manager to receive the head job of queue (which must have one
//  waiting), or NULL if none has room.
peer_t *dispatch_pick (queue_t *queue, uint32_t prefetch_max);

//  The next queue peer should take its head job from, in the peer's weight
//  order, or NULL when it has no room or nothing waits for it. *cursor
//  (start at 0) remembers where the walk is, so that a peer's queues are
//  walked once per dispatch round.
queue_t *dispatch_next_queue (const peer_t *peer, uint32_t prefetch_max, size_t *cursor);

void dispatch_test (bool verbose);

#endif
