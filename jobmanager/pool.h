/*  pool — the job manager's worker processes: fork, the pid table, the pipe
    to each worker, reaping, and the per-pid job counts.

    The pool owns one record per worker process from fork until it is
    reaped. A record's fd is the job manager's end of the worker's
    socketpair; the pool never blocks on it except to hand a job over. The
    pool knows nothing of ZeroMQ or of the event loop: the job manager
    registers each fd with its loop and calls pool_reap() when SIGCHLD says
    a child changed state.

    Each worker runs in its own process group (its pid), so pool_kill()
    reaches whatever the worker started.

    Pipelining: a busy worker may be handed up to POOL_QUEUE_MAX more jobs,
    which wait in its pipe behind the one it runs. Each job handed has a
    ticket and a word in a page shared with the worker (worker/handoff.h);
    pool_retract takes back the queued jobs the worker has not taken yet.
*/
#ifndef EMQ_POOL_H
#define EMQ_POOL_H

#include "worker/handoff.h"
#include "worker/wire.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

//  Jobs a busy worker may be handed beyond the one it runs.
#define POOL_QUEUE_MAX 4

typedef enum {
    POOL_STARTING = 0,  // forked, HELLO not yet received
    POOL_IDLE,          // waiting for a job
    POOL_BUSY,          // running a job (or about to take it)
    POOL_GONE,          // pipe closed (leaving, killed or broken); not reaped yet
    POOL_STATE_COUNT
} pool_state_t;

typedef struct {
    pid_t pid;
    int fd;  // job manager's end of the socketpair, -1 when closed
    pool_state_t state;
    uint64_t jobs_done;     // outcomes received from this worker
    uint64_t generation;    // configuration generation it was forked with
    bool retiring;          // must not get another job (config changed, limits)
    void *job;              // the job manager's job record while BUSY (borrowed)
    int64_t started_ms;     // monotonic time of the fork
    wire_reader_t *reader;  // partial messages from the worker
    //  Pipelining (see above).
    handoff_t *handoff;                      // shared with the worker (owned)
    uint32_t job_ticket;                     // job's ticket
    void *queued[POOL_QUEUE_MAX];            // handed behind job, oldest first
    uint32_t queued_ticket[POOL_QUEUE_MAX];  // their tickets
    size_t queued_count;
    uint32_t next_ticket;  // the next job's
    uint32_t unread_from;  // tickets from this one on may still be unread
    bool queue_closed;     // a queued job was taken back: none more until job ends
} pool_worker_t;

typedef struct pool_t pool_t;

//  Runs in the forked child with its end of the socketpair, the parent's
//  pid and the page it shares with the job manager; must not return (the
//  pool _exit()s the child if it does).
typedef void (pool_child_fn) (int fd, pid_t parent, handoff_t *handoff, void *arg);

//  Called by pool_reap for each worker that ended, before its record is
//  freed. status is from wait(2); usage is the child's resource use.
typedef void (pool_reaped_fn) (pool_worker_t *worker, int status,
                               const struct rusage *usage, void *arg);

//  Creates an empty pool whose workers run child (arg borrowed). Caller
//  owns the pool.
pool_t *pool_new (pool_child_fn *child, void *arg);
//  Kills every remaining worker group (SIGKILL), reaps them, frees the pool
//  and nulls the pointer; NULL is fine.
void pool_destroy (pool_t **self_p);

//  Changes what new workers get (e.g. a reloaded configuration) and bumps
//  the generation. Running workers keep what they were forked with.
void pool_set_child_arg (pool_t *self, void *arg);
uint64_t pool_generation (pool_t *self);

//  Forks one worker. Returns its record (borrowed; the pool owns it), or
//  NULL with errno set when socketpair or fork fails.
pool_worker_t *pool_spawn (pool_t *self);

//  Workers not yet reaped / in one state.
size_t pool_size (pool_t *self);
size_t pool_count (pool_t *self, pool_state_t state);
//  Workers that are STARTING, IDLE or BUSY (not GONE).
size_t pool_live (pool_t *self);

//  Iteration over all records (borrowed); do not spawn or reap meanwhile.
pool_worker_t *pool_first (pool_t *self);
pool_worker_t *pool_next (pool_t *self);

//  Finds a record by pid or by fd; NULL if none.
pool_worker_t *pool_lookup (pool_t *self, pid_t pid);
pool_worker_t *pool_lookup_fd (pool_t *self, int fd);
//  Returns an idle worker that is not retiring, or NULL.
pool_worker_t *pool_idle (pool_t *self);

//  Hands a JOB message (its ticket is set here) to an idle worker, which
//  becomes BUSY with job as its record, or to a busy one for which
//  pool_may_queue holds, behind what it has. The write blocks, bounded by a
//  send timeout; a queued job must be small (the caller's rule), so that
//  it fits in the pipe beside the others. Returns 0, or -1 with errno set
//  (the worker is then broken: close and kill it).
int pool_send_job (pool_t *self, pool_worker_t *worker, wire_msg_t *job_msg, void *job);
//  Whether a busy worker may be handed one more job now: room in its queue
//  and in its tickets, no job taken back since its current one started,
//  and not retiring.
bool pool_may_queue (const pool_worker_t *worker);
//  Takes back the worker's queued jobs that it has not taken, newest
//  first, stopping at the first it took (the ones before it ran or run);
//  with_head, then its current job as well (a worker about to go, or one
//  that died). Writes what it took back into out, oldest first, and returns
//  how many (at most POOL_QUEUE_MAX + 1). A worker left without a job
//  becomes IDLE (unless GONE).
size_t pool_retract (pool_t *self, pool_worker_t *worker, bool with_head,
                     void *out[POOL_QUEUE_MAX + 1]);

//  Reads from a worker without blocking; see wire_reader_recv for returns.
int pool_recv (pool_t *self, pool_worker_t *worker, wire_msg_t **msg_p, char *err,
               size_t errlen);
//  The next message the last pool_recv already read, if whole; no system
//  call. See wire_reader_next for returns.
int pool_recv_buffered (pool_t *self, pool_worker_t *worker, wire_msg_t **msg_p,
                        char *err, size_t errlen);

//  Records that the worker's current job ended with an OUTCOME for ticket
//  (jobs_done, pid distribution, tickets read): its first queued job
//  becomes its job, or it becomes IDLE.
void pool_job_done (pool_t *self, pool_worker_t *worker, uint32_t ticket);

//  Closes the job manager's end of the worker's pipe (an idle worker then
//  exits on its own) and marks it GONE. Idempotent.
void pool_close (pool_t *self, pool_worker_t *worker);

//  Sends sig to the worker's whole process group. Returns 0 or -1 (errno).
int pool_kill (pool_t *self, pool_worker_t *worker, int sig);

//  Reaps every child that ended (waitpid(-1, WNOHANG) until none), calling
//  fn for each known worker, then freeing its record. Returns the number of
//  workers reaped.
size_t pool_reap (pool_t *self, pool_reaped_fn *fn, void *arg);

//  Calls fn for each pid that completed jobs, dead workers included (the
//  latest POOL_DEAD_KEPT dead ones).
#define POOL_DEAD_KEPT 256
typedef void (pool_visit_fn) (pid_t pid, uint64_t jobs, void *arg);
void pool_distribution (pool_t *self, pool_visit_fn *fn, void *arg);

//  State names for logs: "starting", "idle", "busy", "gone".
const char *pool_state_name (pool_state_t state);

void pool_test (bool verbose);

#endif
