/*  workers — the job manager's worker table: which workers there are,
    what each one runs, their pipes, and their replacement.

    Built on the pool (pool.h: fork, pid table, reaping), it owns the
    configuration new workers are forked with and the jobs that run (one
    per busy worker). It watches each worker's pipe on the job manager's
    zloop, reads HELLOs and OUTCOMEs, hands jobs over, kills workers whose
    job timed out or was cancelled, and starts workers until there are
    `target` of them (not while stopping).

    A job may also be queued on a busy worker, to start the moment its
    job ends (pipelining: see workers.c); one taken back from there, unrun,
    goes to the `returned` callback.

    It knows nothing of the router: every job that ends, however it ends,
    is given to the `ended` callback (the job manager sends or keeps its
    DONE), and `changed` says that a worker became free (pending jobs can
    start, the router's count of free slots may need settling). No callback
    may destroy the workers or call into them.
*/
#ifndef EMQ_WORKERS_H
#define EMQ_WORKERS_H

#include "job.h"
#include "pool.h"
#include "worker/worker.h"
#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct workers_t workers_t;

//  A job ended: its worker's OUTCOME, or the worker died with it, it timed
//  out, it was cancelled, or it was killed at shutdown. job and outcome
//  are borrowed; the job is destroyed when the callback returns.
typedef void (workers_ended_fn) (const jm_job_t *job, const jm_outcome_t *outcome,
                                 void *arg);
//  A worker said HELLO or finished a job: it may take a pending job.
typedef void (workers_changed_fn) (void *arg);
//  Jobs handed to a worker that it never took come back, oldest first
//  (they go back at the head of what waits); the caller owns them now.
typedef void (workers_returned_fn) (jm_job_t **jobs, size_t count, void *arg);

//  Creates an empty table whose workers run with *wconfig_p (taken), up to
//  target of them. id is how logs name the job manager (borrowed: its
//  identity buffer, read at each log line); the callbacks get arg.
//  Returns the table (caller owns it), or NULL when out of memory (the
//  configuration is destroyed).
workers_t *workers_new (worker_config_t **wconfig_p, size_t target, const char *id,
                        workers_ended_fn *ended, workers_changed_fn *changed,
                        workers_returned_fn *returned, void *arg);

//  Kills every worker still there (their jobs are not reported), frees the
//  jobs and nulls the pointer; NULL is fine.
void workers_destroy (workers_t **self_p);

//  Watches the pipes on loop (borrowed) from now on. Must be called before
//  the first worker starts.
void workers_attach (workers_t *self, zloop_t *loop);

//  Lets jobs queue on busy workers for at most about hold_ms (the job
//  manager's prefetch_hold_ms); 0 (the default) queues none.
void workers_set_hold (workers_t *self, int64_t hold_ms);

//  Starts workers until there are target live ones (not while stopping).
//  A worker that cannot start is logged; the next call tries again.
void workers_replenish (workers_t *self);

//  Replenishes if a worker was lost with its job since the last call
//  (crash, timeout, cancel, a broken pipe): the job's DONE told the router
//  its slot is free, so its replacement should not wait for a HEARTBEAT.
void workers_replace_lost (workers_t *self);

//  Takes new worker settings (*wconfig_p, taken) and pool size (SIGHUP).
//  Changed settings restart idle workers now and busy ones after their
//  job; a smaller pool retires idle workers past target now, busy ones
//  after their job; then it replenishes. Returns true if the settings
//  changed.
bool workers_configure (workers_t *self, worker_config_t **wconfig_p, size_t target);

//  The job manager is stopping: no worker starts any more; queued jobs
//  come back.
void workers_stop (workers_t *self);

//  Hands *job_p to an idle worker that does not retire, or queues it on a
//  busy one that may take it soon, and takes the job. Returns 0; -1 if no
//  worker could take it (none idle or soon free, out of memory);
//  -2 if the worker broke taking it (it is killed; another may take the
//  job). On failure the job stays the caller's.
int workers_assign (workers_t *self, jm_job_t **job_p);

//  CANCEL of a running or queued job (any epoch when epoch is 0): kills the
//  worker running it, or takes it back from the one it is queued on, and
//  reports it cancelled. Returns true if it did.
bool workers_cancel (workers_t *self, const char *msgid, uint64_t epoch);

//  Kills the workers of jobs past their deadline at now_ms, reporting
//  each job timed out.
void workers_check_timeouts (workers_t *self, int64_t now_ms);

//  Shutdown: kills the busy workers, reporting their jobs crashed ("killed
//  at shutdown"; queued jobs not taken come back), and closes every pipe
//  (idle workers then leave).
void workers_kill_all (workers_t *self);

//  Reaps the workers that ended (SIGCHLD); a job whose worker died is
//  reported crashed (or comes back, if the worker had not taken it). Does
//  not call `changed`: the caller lets pending jobs start afterwards.
//  Returns the number reaped.
size_t workers_reap (workers_t *self);

//  Closes every pipe (idle workers leave at end of file) and waits up to
//  timeout_ms for the workers to go, reaping them.
void workers_close_all (workers_t *self, int64_t timeout_ms);

//  Workers not yet reaped; live ones (starting, idle or busy); idle ones;
//  ready ones (idle and not retiring: each can take a job); starting ones
//  (no HELLO yet); coming ones (starting, plus those replenish would start);
//  jobs running; jobs queued behind running ones.
size_t workers_size (workers_t *self);
size_t workers_live (workers_t *self);
size_t workers_idle (workers_t *self);
size_t workers_ready (workers_t *self);
size_t workers_starting (workers_t *self);
size_t workers_coming (workers_t *self);
size_t workers_running (workers_t *self);
size_t workers_queued (workers_t *self);

//  The jobs_in_flight object for stats (msgid -> {pid, queue, started})
//  and the pid_distribution one (pid -> jobs completed, the latest dead
//  workers included). Caller owns them (json_decref).
json_t *workers_in_flight_json (workers_t *self);
json_t *workers_distribution_json (workers_t *self);
//  Appends the msgid of each job queued behind a running one to msgids
//  (a JSON array; NULL is fine): the router counts them with the held ones.
void workers_queued_json (workers_t *self, json_t *msgids);

void workers_test (bool verbose);

#endif
