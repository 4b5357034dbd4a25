/*  job — a job the job manager got from the router, and the outcome it
    reports for it: the record the held jobs (held.h) and the workers
    (workers.h) pass between them.

    A job is owned by exactly one list at a time: the held FIFO while it
    waits for a worker, the workers' running list while a worker runs it.
    Its handle is its place in whichever holds it. The prefix is jm_ so the
    selftest binary, which also links the router (its job_t), has one name
    per symbol.
*/
#ifndef EMQ_JM_JOB_H
#define EMQ_JM_JOB_H

#include "emqp.h"
#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    char *msgid;
    char *queue;
    uint64_t epoch;  // dispatch epoch (fencing token), echoed in DONE
    uint32_t attempt;
    uint32_t timeout_s;     // 0 = none
    zframe_t *payload;      // msgpack job payload
    pid_t pid;              // worker running it (or queued on), 0 while held
    int64_t started_ms;     // monotonic; 0 while held or queued on a worker
    double started_ts;      // wall clock, for status
    int64_t received_ms;    // monotonic, when the REQUEST arrived (hold deadline)
    uint64_t connection;    // the job manager's connection it arrived on; RETURN
                            // only on that one
    int64_t deadline_ms;    // monotonic; 0 = no timeout
    char *crash_reason;     // why its worker was killed, when it was
    uint32_t unrun_deaths;  // workers that died holding it before taking it
    void *handle;           // its place in the list that owns it
} jm_job_t;

//  How a job ended, as its DONE says it. Everything is borrowed.
typedef struct {
    emqp_status_t status;
    const char *value;  // msgpack result (ok), else the error text
    size_t value_size;
    uint64_t wall_us;
    uint64_t cpu_us;
    uint64_t maxrss_kb;
} jm_outcome_t;

//  Creates a job from a REQUEST, taking its msgid, queue and payload (the
//  message's fields are nulled) and copying the rest; received now on
//  connection. Headers are the caller's to parse (timeout_s). Returns a job
//  the caller owns, or NULL when out of memory (the message is untouched).
jm_job_t *jm_job_new (emqp_msg_t *request, uint64_t connection, int64_t now_ms);

//  Destroys a job and nulls the pointer; NULL is fine.
void jm_job_destroy (jm_job_t **job_p);

//  The destructor for lists that own jobs (zlistx_set_destructor).
void jm_job_destructor (void **item);

//  The job's wall time so far in microseconds: 0 if it never started.
uint64_t jm_job_wall_us (const jm_job_t *job, int64_t now_ms);

void jm_job_test (bool verbose);

#endif
