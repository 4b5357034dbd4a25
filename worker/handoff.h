/*  handoff — who runs a job handed to a worker: the worker, or nobody.

    The job manager may hand a worker its next jobs while it runs one
    (pipelining, jobmanager/workers.c). A job written into the worker's pipe
    cannot be taken back out of it, so each job also has a word in a page
    the two processes share (mmap'd before fork): the job manager marks it
    QUEUED before writing the job, the worker turns it to TAKEN before
    running the job, and the job manager may turn a QUEUED one to RETRACTED
    (a cancel, the hold running out behind a long job, a worker that
    retires). Both turns are compare-and-swaps, so exactly one side wins:
    a job the job manager retracted is never run, and one the worker took
    is never given to anyone else.

    Each job has a ticket (the count of jobs handed to the worker, in the JOB
    message); its word is slot ticket % HANDOFF_SLOTS and holds the ticket
    beside the state, so a word reused by a later job never passes for an
    earlier one. The job manager keeps fewer than HANDOFF_SLOTS tickets
    unconsumed per worker (see workers.c).

    The page is shared with a process that runs untrusted jobs: the job
    manager reads only the words of tickets it handed, and treats anything
    else it finds there as taken.
*/
#ifndef EMQ_HANDOFF_H
#define EMQ_HANDOFF_H

#include <stdbool.h>
#include <stdint.h>

#define HANDOFF_SLOTS 16

typedef enum {
    HANDOFF_QUEUED = 1,     // handed, not yet taken
    HANDOFF_TAKEN = 2,      // the worker runs it (or ran it)
    HANDOFF_RETRACTED = 3,  // the job manager took it back: never runs
} handoff_state_t;

typedef struct handoff_t handoff_t;

//  Maps a zeroed shared page (MAP_SHARED, inherited by fork). Returns it,
//  or NULL with errno set.
handoff_t *handoff_new (void);
//  Unmaps the page and nulls the pointer; NULL is fine. A forked worker
//  unmaps the pages of the other workers this way.
void handoff_destroy (handoff_t **self_p);

//  Job manager: marks ticket QUEUED, before its JOB is written.
void handoff_offer (handoff_t *self, uint32_t ticket);
//  Job manager: turns ticket from QUEUED to RETRACTED. Returns true if it
//  did (the worker will drop the job unrun), false if the worker took it.
bool handoff_retract (handoff_t *self, uint32_t ticket);
//  Job manager: whether the worker took ticket (false while it is QUEUED or
//  RETRACTED; a word the worker scribbled on counts as taken).
bool handoff_taken (handoff_t *self, uint32_t ticket);

//  Worker: turns ticket from QUEUED to TAKEN. Returns false if the job was
//  retracted (drop it, unrun).
bool handoff_take (handoff_t *self, uint32_t ticket);

void handoff_test (bool verbose);

#endif
