/*  held — what the job manager holds for the router beyond its workers:
    jobs that wait for a free worker (a FIFO), and outcomes whose DONE has
    not gone out yet (an outbox).

    A REQUEST that finds no idle worker (the router's prefetch, or a race)
    waits here and runs when a worker frees. One that waited
    prefetch_hold_ms is given back with RETURN, so that a long job here does
    not hold it hostage; held says which (held_due) and when the next one
    will be (held_deadline), the job manager sends the RETURN and arms its
    timer. Outcomes wait here while the job manager is not registered, or
    while older ones wait, so that a reconnect never loses one.

    held owns the jobs in its FIFO and the outcomes in its outbox. It knows
    nothing of sockets or the event loop.
*/
#ifndef EMQ_HELD_H
#define EMQ_HELD_H

#include "job.h"
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct held_t held_t;

//  An outcome waiting to go out as DONE (owned by held).
typedef struct {
    char *ref;  // the job's msgid
    uint64_t epoch;
    emqp_status_t status;
    char *value;  // msgpack value or error text
    size_t value_size;
    char *usage;  // "wall_us=N cpu_us=N maxrss_kb=N"
} held_outcome_t;

//  Creates an empty FIFO and outbox; caller owns it, NULL when out of memory.
held_t *held_new (void);
//  Destroys the held jobs and outcomes, and nulls the pointer; NULL is fine.
void held_destroy (held_t **self_p);

//  Adds a job at the end of the FIFO, or back at its head (a worker broke
//  while taking it). Takes the job (nulls *job_p). Returns 0, or -1 when
//  out of memory (the job is then destroyed).
int held_push (held_t *self, jm_job_t **job_p);
int held_push_front (held_t *self, jm_job_t **job_p);
//  Takes the oldest job out of the FIFO: caller owns it; NULL if none.
jm_job_t *held_pop (held_t *self);
//  Jobs in the FIFO.
size_t held_size (held_t *self);
//  Takes the job msgid out of the FIFO (any epoch when epoch is 0): caller
//  owns it; NULL if it does not wait here.
jm_job_t *held_cancel (held_t *self, const char *msgid, uint64_t epoch);

//  The oldest job that may go back to the router: one that came on
//  connection, past the first skip ones in line (workers now starting
//  will take those, they are not held by long jobs). When it has waited
//  hold_ms by now, held_due returns it (borrowed; NULL otherwise, and when
//  hold_ms is 0: never); held_deadline returns when it will have (monotonic
//  ms), or -1 if there is none.
jm_job_t *held_due (held_t *self, uint64_t connection, size_t skip, int64_t hold_ms,
                    int64_t now_ms);
int64_t held_deadline (held_t *self, uint64_t connection, size_t skip, int64_t hold_ms);
//  Takes job (borrowed from held_due) out of the FIFO and destroys it: it
//  went back to the router.
void held_drop (held_t *self, jm_job_t *job);

//  Appends a copy of an outcome to the outbox. Returns 0, or -1 when out
//  of memory (nothing kept).
int held_keep_outcome (held_t *self, const char *ref, uint64_t epoch,
                       emqp_status_t status, const char *value, size_t value_size,
                       const char *usage);
//  The oldest outcome waiting (borrowed), or NULL; held_sent drops it once
//  its DONE went out.
const held_outcome_t *held_outcome_first (held_t *self);
//  The one after the last held_outcome_first/next returned, or NULL.
const held_outcome_t *held_outcome_next (held_t *self);
void held_sent (held_t *self);
//  Outcomes waiting.
size_t held_outcomes (held_t *self);

//  The jobs_held list for stats: the msgids waiting for a worker, then
//  those whose DONE has not gone out. Caller owns it (json_decref); NULL
//  when out of memory.
json_t *held_json (held_t *self);

void held_test (bool verbose);

#endif
