/*  workers — the job manager's worker table. See workers.h.

    Ownership: the pool owns the worker records; this table owns the jobs
    handed to workers (self->running), each also borrowed by its worker's
    record: as its current job (pool_worker_t.job) or queued behind it
    (pipelining). A job leaves the table in two places: s_end_job (reported
    through `ended`, then freed) and s_give_back (never run: `returned`).

    Pipelining: a job that finds no idle worker may be queued on a busy one
    whose current job started less than half the hold ago, if the job is
    small and itself younger than half the hold. The worker then takes it
    the moment it ends the previous one, with no round trip through the job
    manager's loop. Every job handed has a word in a page shared with its
    worker (worker/handoff.h), so that a queued job can be taken back for
    certain: by a cancel, by the hold check (its worker's current job has
    run the whole hold: it goes back and, past the hold, to the router), or
    because its worker goes (retires, stale settings, crash, shutdown).
    Such a job goes back to the job manager (`returned`) unrun, at the head
    of its held jobs.

    Replacement: a worker that retires after its job (max_job_count, RSS),
    one that is stale (settings changed, the pool shrank) and one lost with
    its job (crash, timeout, cancel) are replaced at once; an idle one that
    died is replaced when the job manager next calls workers_replenish (on
    the router's HEARTBEAT). Nothing starts while stopping.
*/
#include "workers.h"
#include "clock.h"
#include "log.h"
#include "payload.h"
#include "procstat.h"
#include "tests/testutil.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

//  The largest payload queued behind a running job: POOL_QUEUE_MAX of them
//  fit in a socket buffer with room to spare, so handing one never blocks.
#define S_QUEUE_PAYLOAD_MAX (16 * 1024)
//  A worker that died holding a job it had not taken gives the job back;
//  after this many such deaths the job is reported crashed instead.
#define S_UNRUN_DEATHS_MAX 2

struct workers_t {
    pool_t *pool;              // the processes (owns the records)
    worker_config_t *wconfig;  // what new workers are forked with (owned)
    zlistx_t *running;         // jm_job_t handed to workers, owned
    zloop_t *loop;             // watches the pipes (borrowed), NULL until attached
    const char *id;            // the job manager's name in logs (borrowed)
    size_t target;             // live workers wanted
    bool stopping;             // no new workers
    bool replace_due;          // a worker was lost with its job: replace it now
    int64_t hold_ms;           // how long a queued job may wait; 0: no queueing
    int queue_timer;           // checks queued jobs every hold_ms / 2; -1: none
    workers_ended_fn *ended;
    workers_changed_fn *changed;
    workers_returned_fn *returned;
    void *arg;  // for the callbacks
};

static void
s_worker_child (int fd, pid_t parent, handoff_t *handoff, void *arg)
{
    worker_main (fd, parent, handoff, (const worker_config_t *) arg);
}

//  What a forked worker runs; the self test swaps in misbehaving ones.
static pool_child_fn *s_child = s_worker_child;

workers_t *
workers_new (worker_config_t **wconfig_p, size_t target, const char *id,
             workers_ended_fn *ended, workers_changed_fn *changed,
             workers_returned_fn *returned, void *arg)
{
    assert (wconfig_p && *wconfig_p && id && ended && changed && returned);
    workers_t *self = calloc (1, sizeof *self);
    if (!self) {
        worker_config_destroy (wconfig_p);
        return NULL;
    }
    self->wconfig = *wconfig_p;
    *wconfig_p = NULL;
    self->pool = pool_new (s_child, self->wconfig);
    self->running = zlistx_new ();
    if (!self->pool || !self->running) {
        workers_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->running, jm_job_destructor);
    self->target = target;
    self->id = id;
    self->queue_timer = -1;
    self->ended = ended;
    self->changed = changed;
    self->returned = returned;
    self->arg = arg;
    return self;
}

void
workers_destroy (workers_t **self_p)
{
    assert (self_p);
    workers_t *self = *self_p;
    if (!self)
        return;
    if (self->queue_timer != -1 && self->loop)
        zloop_timer_end (self->loop, self->queue_timer);
    //  Workers first: their records borrow the running jobs.
    pool_destroy (&self->pool);
    zlistx_destroy (&self->running);
    worker_config_destroy (&self->wconfig);
    free (self);
    *self_p = NULL;
}

void
workers_attach (workers_t *self, zloop_t *loop)
{
    assert (self && loop && pool_size (self->pool) == 0);
    self->loop = loop;
}

void
workers_set_hold (workers_t *self, int64_t hold_ms)
{
    assert (self && hold_ms >= 0);
    self->hold_ms = hold_ms;
    //  The check runs every hold / 2: the next queued job arms it anew.
    if (self->queue_timer != -1) {
        zloop_timer_end (self->loop, self->queue_timer);
        self->queue_timer = -1;
    }
}

//  --------------------------------------------------------------------------
//  One worker

static int s_on_readable (zloop_t *loop, zmq_pollitem_t *item, void *arg);
static bool s_read (workers_t *self, pool_worker_t *worker);

static pool_worker_t *
s_spawn (workers_t *self)
{
    assert (self->loop);
    pool_worker_t *worker = pool_spawn (self->pool);
    if (!worker) {
        log_error ("jobmanager %s: cannot start a worker: %s", self->id,
                   strerror (errno));
        return NULL;
    }
    zmq_pollitem_t item = { NULL, worker->fd, ZMQ_POLLIN, 0 };
    if (zloop_poller (self->loop, &item, s_on_readable, self)) {
        log_error ("jobmanager %s: cannot watch worker %d", self->id, (int) worker->pid);
        pool_kill (self->pool, worker, SIGKILL);
        pool_close (self->pool, worker);
        return NULL;
    }
    zloop_poller_set_tolerant (self->loop, &item);
    log_debug ("jobmanager %s: worker %d started", self->id, (int) worker->pid);
    return worker;
}

//  Stops watching a worker's pipe and closes it (the worker leaves at EOF).
static void
s_close (workers_t *self, pool_worker_t *worker)
{
    if (worker->fd >= 0 && self->loop) {
        zmq_pollitem_t item = { NULL, worker->fd, ZMQ_POLLIN, 0 };
        zloop_poller_end (self->loop, &item);
    }
    pool_close (self->pool, worker);
}

//  The worker's current job starts now (it was handed to an idle worker,
//  or the job before it just ended): its clock and deadline.
static void
s_start (jm_job_t *job)
{
    job->started_ms = clock_mono_ms ();
    job->started_ts = zclock_time () / 1000.0;
    job->deadline_ms =
        job->timeout_s ? job->started_ms + (int64_t) job->timeout_s * 1000 : 0;
}

//  Reports the worker's current job with outcome and forgets it.
static void
s_end_job (workers_t *self, pool_worker_t *worker, const jm_outcome_t *outcome)
{
    jm_job_t *job = worker->job;
    assert (job);
    self->ended (job, outcome, self->arg);
    worker->job = NULL;
    zlistx_delete (self->running, job->handle);
}

//  Reports a queued job that will never run (cancelled, or its worker died
//  with it) and forgets it.
static void
s_end_queued (workers_t *self, jm_job_t *job, emqp_status_t status, const char *text)
{
    jm_outcome_t outcome = { .status = status,
                             .value = text,
                             .value_size = strlen (text) };
    self->ended (job, &outcome, self->arg);
    zlistx_delete (self->running, job->handle);
}

//  Takes back what the worker has not taken (see pool_retract) and gives
//  it to the job manager, unrun, in order; a job that matches msgid (and
//  epoch, unless 0) is reported cancelled instead. Returns how many came
//  back.
static size_t
s_give_back (workers_t *self, pool_worker_t *worker, bool with_head,
             const char *cancel_msgid, uint64_t cancel_epoch)
{
    void *back[POOL_QUEUE_MAX + 1];
    size_t count = pool_retract (self->pool, worker, with_head, back);
    jm_job_t *jobs[POOL_QUEUE_MAX + 1];
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        jm_job_t *job = back[i];
        if (cancel_msgid && streq (job->msgid, cancel_msgid)
            && (!cancel_epoch || cancel_epoch == job->epoch)) {
            log_info ("jobmanager %s: job %s cancelled before it started (taken back "
                      "from worker %d)",
                      self->id, job->msgid, (int) worker->pid);
            s_end_queued (self, job, EMQP_STATUS_CANCELLED,
                          "cancelled before it started");
            continue;
        }
        zlistx_detach (self->running, job->handle);
        job->handle = NULL;
        job->pid = 0;
        job->started_ms = 0;
        job->deadline_ms = 0;
        jobs[kept++] = job;
    }
    if (kept) {
        log_debug ("jobmanager %s: %zu job(s) taken back from worker %d", self->id, kept,
                   (int) worker->pid);
        self->returned (jobs, kept, self->arg);
    }
    return count;
}

//  Before the worker's current job is killed (timeout, cancel): its queued
//  jobs go back. If the worker took one of them, the current job has ended
//  and its OUTCOME waits in the pipe: that is read instead, and false
//  returned (the worker's current job is another now, or none).
static bool
s_clear_queue (workers_t *self, pool_worker_t *worker)
{
    s_give_back (self, worker, false, NULL, 0);
    if (worker->queued_count == 0)
        return true;
    if (s_read (self, worker))
        self->changed (self->arg);
    return false;
}

//  Reports the worker's job with an error text and forgets it, then closes
//  the worker we killed: it is replaced at once (workers_replace_lost).
static void
s_end_killed (workers_t *self, pool_worker_t *worker, emqp_status_t status,
              const char *text, int64_t now_ms)
{
    jm_outcome_t outcome = { .status = status,
                             .value = text,
                             .value_size = strlen (text),
                             .wall_us = jm_job_wall_us (worker->job, now_ms) };
    s_end_job (self, worker, &outcome);
    s_close (self, worker);
    self->replace_due = true;
}

//  The worker broke its pipe or its protocol: kill it; its jobs are
//  reported (or given back, if it never took them) when it is reaped.
static void
s_broken (workers_t *self, pool_worker_t *worker, const char *reason)
{
    log_warning ("jobmanager %s: worker %d %s: %s", self->id, (int) worker->pid,
                 pool_state_name (worker->state), reason);
    jm_job_t *job = worker->job;
    if (job && !job->crash_reason) {
        char text[600];
        snprintf (text, sizeof text, "worker pid %d failed: %s", (int) worker->pid,
                  reason);
        job->crash_reason = strdup (text);
    }
    if (job)
        self->replace_due = true;  // its DONE counted as a slot
    pool_kill (self->pool, worker, SIGKILL);
    s_close (self, worker);
}

//  Whether the worker must go after its current job: stale settings, a
//  pool that shrank, or marked retiring.
static bool
s_must_go (workers_t *self, pool_worker_t *worker)
{
    return worker->retiring || worker->generation != pool_generation (self->pool)
           || pool_live (self->pool) > self->target;
}

//  An OUTCOME: the job ends; the worker goes on with its next queued job,
//  takes another, or goes. Returns true if a worker is free for a job (or
//  jobs came back to the job manager).
static bool
s_on_outcome (workers_t *self, pool_worker_t *worker, wire_msg_t *msg)
{
    if (worker->state != POOL_BUSY || !worker->job) {
        s_broken (self, worker, "sent an outcome without a job");
        return false;
    }
    if (msg->ticket != worker->job_ticket) {
        s_broken (self, worker, "sent the outcome of another job");
        return false;
    }
    jm_outcome_t outcome = { .status = msg->status,
                             .value = msg->value,
                             .value_size = msg->value_size,
                             .wall_us = msg->wall_us,
                             .cpu_us = msg->cpu_us,
                             .maxrss_kb = msg->maxrss_kb };
    s_end_job (self, worker, &outcome);
    pool_job_done (self->pool, worker, msg->ticket);
    if (worker->job)
        s_start (worker->job);  // the next queued one: the worker takes it now

    //  The DONE counted as this worker's READY. If the worker goes, the
    //  router now counts one slot too many: its replacement's HELLO then
    //  brings no READY (the job manager settles that).
    if (msg->retiring) {
        //  The worker exits by itself now (max_job_count or max RSS),
        //  without taking what was queued for it.
        log_info ("jobmanager %s: worker %d retires after %" PRIu64 " jobs%s", self->id,
                  (int) worker->pid, worker->jobs_done,
                  self->wconfig->max_rss_kb && msg->maxrss_kb > self->wconfig->max_rss_kb
                      ? " (RSS limit)"
                      : "");
        s_give_back (self, worker, true, NULL, 0);
        if (worker->job) {
            //  It took a job after all, and exits: that job is reported
            //  crashed when the worker is reaped.
            s_broken (self, worker, "took a job after saying it retires");
            return true;
        }
        s_close (self, worker);
        if (!self->stopping && pool_live (self->pool) < self->target)
            s_spawn (self);
    }
    else if (s_must_go (self, worker)) {
        //  Stale configuration or a shrunk pool: this worker goes once what
        //  it took is done; a replacement if the pool still needs one.
        s_give_back (self, worker, true, NULL, 0);
        if (worker->job)
            worker->retiring = true;
        else {
            s_close (self, worker);
            workers_replenish (self);
        }
    }
    return true;
}

//  A HELLO: the worker is ready, or its setup hook failed. Returns true
//  if it is ready.
static bool
s_on_hello (workers_t *self, pool_worker_t *worker, wire_msg_t *msg)
{
    if (worker->state != POOL_STARTING) {
        s_broken (self, worker, "sent HELLO twice");
        return false;
    }
    if (msg->error) {
        log_error ("jobmanager %s: worker %d: %s", self->id, (int) worker->pid,
                   msg->error);
        s_close (self, worker);
        return false;
    }
    worker->state = POOL_IDLE;
    return true;
}

//  Reads what a worker wrote: outcomes, HELLO, or the end of its pipe.
//  Returns true if that made a worker free for a job.
static bool
s_read (workers_t *self, pool_worker_t *worker)
{
    //  Reads once per wake-up (until a whole message is in, for a large
    //  one), then takes what that read brought: reading again would only
    //  say EAGAIN, and the loop calls us again when there is more. Nothing
    //  buffered may stay behind: no wake-up would come for it.
    bool freed = false;
    for (bool first = true; worker->fd >= 0; first = false) {
        wire_msg_t *msg = NULL;
        char err[512];
        int rc = first ? pool_recv (self->pool, worker, &msg, err, sizeof err)
                       : pool_recv_buffered (self->pool, worker, &msg, err, sizeof err);
        if (rc == 0)
            break;
        if (rc < 0) {
            if (rc == -1 && streq (err, "end of file")) {
                //  The worker is exiting (or died): its exit status, when we
                //  reap it, says why; a busy one's job is reported then.
                log_debug ("jobmanager %s: worker %d closed its pipe", self->id,
                           (int) worker->pid);
                s_close (self, worker);
            }
            else
                s_broken (self, worker, err);
            break;
        }
        if (msg->type == WIRE_OUTCOME)
            freed |= s_on_outcome (self, worker, msg);
        else if (msg->type == WIRE_HELLO)
            freed |= s_on_hello (self, worker, msg);
        else
            s_broken (self, worker, "sent a JOB message");
        wire_msg_destroy (&msg);
    }
    return freed;
}

static int
s_on_readable (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    workers_t *self = arg;
    pool_worker_t *worker = pool_lookup_fd (self->pool, item->fd);
    if (!worker)
        return 0;  // closed earlier in this loop turn
    if (s_read (self, worker))
        self->changed (self->arg);
    return 0;
}

static void
s_on_reaped (pool_worker_t *worker, int status, const struct rusage *usage, void *arg)
{
    workers_t *self = arg;
    //  A worker that retires writes its last outcome and exits at once: the
    //  exit can be reaped before the loop has read the pipe. Read it first,
    //  so that outcome counts and the job is not taken for a crash.
    if (worker->job && worker->fd >= 0)
        s_read (self, worker);
    //  What it had not taken yet never ran: it goes back, the current job
    //  too unless it keeps killing the workers that hold it unrun.
    s_give_back (self, worker, false, NULL, 0);
    jm_job_t *head = worker->job;
    if (head && worker->queued_count == 0
        && !handoff_taken (worker->handoff, worker->job_ticket)
        && ++head->unrun_deaths <= S_UNRUN_DEATHS_MAX)
        s_give_back (self, worker, true, NULL, 0);
    char how[128];
    if (WIFSIGNALED (status)) {
        const char *name = sigabbrev_np (WTERMSIG (status));
        snprintf (how, sizeof how, "signal %d (SIG%s)", WTERMSIG (status),
                  name ? name : "?");
    }
    else
        snprintf (how, sizeof how, "exit status %d", WEXITSTATUS (status));
    jm_job_t *job = worker->job;
    bool had_job = job != NULL;
    if (had_job) {
        char text[800];
        if (job->crash_reason)
            snprintf (text, sizeof text, "%s (%s)", job->crash_reason, how);
        else
            snprintf (text, sizeof text, "worker pid %d died: %s", (int) worker->pid,
                      how);
        jm_outcome_t outcome = {
            .status = EMQP_STATUS_CRASHED,
            .value = text,
            .value_size = strlen (text),
            .wall_us = (uint64_t) (clock_mono_ms () - job->started_ms) * 1000,
            .cpu_us = (uint64_t) usage->ru_utime.tv_sec * 1000000
                      + (uint64_t) usage->ru_utime.tv_usec
                      + (uint64_t) usage->ru_stime.tv_sec * 1000000
                      + (uint64_t) usage->ru_stime.tv_usec,
            .maxrss_kb = (uint64_t) usage->ru_maxrss
        };
        s_end_job (self, worker, &outcome);
        //  Queued jobs the worker took without saying its current one ended
        //  (it broke its protocol) died with it.
        while (worker->queued_count > 0)
            s_end_queued (self, worker->queued[--worker->queued_count],
                          EMQP_STATUS_CRASHED, text);
        self->replace_due = true;
    }
    //  A worker we closed (GONE) was replaced, if needed, when we did; one
    //  that died with a job is replaced at once (workers_replace_lost), as
    //  its DONE counted as a free slot; an idle one on the next router
    //  HEARTBEAT.
    bool expected =
        worker->state == POOL_GONE && (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    if (expected)
        log_debug ("jobmanager %s: worker %d left", self->id, (int) worker->pid);
    else
        log_info ("jobmanager %s: worker %d ended: %s%s", self->id, (int) worker->pid,
                  how,
                  self->stopping || worker->state == POOL_GONE ? ""
                  : had_job                                    ? "; replaced now"
                            : "; replaced on the next router heartbeat");
    if (worker->fd >= 0 && self->loop) {
        zmq_pollitem_t item = { NULL, worker->fd, ZMQ_POLLIN, 0 };
        zloop_poller_end (self->loop, &item);
    }
}

//  --------------------------------------------------------------------------
//  The table

void
workers_replenish (workers_t *self)
{
    assert (self);
    if (self->stopping)
        return;
    size_t live = pool_live (self->pool);
    if (live < self->target)
        log_debug ("jobmanager %s: starting %zu worker(s)", self->id,
                   self->target - live);
    while (live < self->target && s_spawn (self))
        live++;
}

void
workers_replace_lost (workers_t *self)
{
    assert (self);
    //  A crash loop is bounded by the jobs (and their retries): a setup
    //  hook that fails still waits for a HEARTBEAT.
    if (self->replace_due) {
        self->replace_due = false;
        workers_replenish (self);
    }
}

//  Gives back every queued job the workers have not taken.
static void
s_give_back_all (workers_t *self)
{
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool))
        if (worker->queued_count)
            s_give_back (self, worker, false, NULL, 0);
}

bool
workers_configure (workers_t *self, worker_config_t **wconfig_p, size_t target)
{
    assert (self && wconfig_p && *wconfig_p);
    self->target = target;
    bool changed = !worker_config_equal (*wconfig_p, self->wconfig);
    if (changed) {
        //  New workers get the new settings; idle ones are replaced now, busy
        //  ones when their job ends. (The fork copied the old settings into
        //  every running worker, so the old struct can go.)
        log_info ("jobmanager %s: worker settings changed (plugin dirs, exec allow-list, "
                  "hooks or limits); restarting idle workers",
                  self->id);
        pool_set_child_arg (self->pool, *wconfig_p);
        worker_config_destroy (&self->wconfig);
        self->wconfig = *wconfig_p;
        *wconfig_p = NULL;
        for (pool_worker_t *worker = pool_first (self->pool); worker;
             worker = pool_next (self->pool)) {
            if (worker->state == POOL_IDLE)
                s_close (self, worker);
            else if (worker->state != POOL_GONE)
                worker->retiring = true;
        }
    }
    else
        worker_config_destroy (wconfig_p);
    //  A smaller pool: idle workers past the target go now, busy ones later.
    for (pool_worker_t *worker = pool_first (self->pool);
         worker && pool_live (self->pool) > target; worker = pool_next (self->pool))
        if (worker->state == POOL_IDLE)
            s_close (self, worker);
    //  What waits on a worker that goes runs on the new ones instead.
    if (changed || pool_live (self->pool) > target)
        s_give_back_all (self);
    workers_replenish (self);
    return changed;
}

void
workers_stop (workers_t *self)
{
    assert (self);
    self->stopping = true;
    //  Queued jobs are held ones again: the router requeues them.
    s_give_back_all (self);
}

//  Every hold_ms / 2 while jobs are queued: a worker whose current job has
//  run the whole hold gives back what waits behind it.
static int
s_on_queue_check (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    workers_t *self = arg;
    int64_t now = clock_mono_ms ();
    size_t queued = 0, back = 0;
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool)) {
        jm_job_t *job = worker->job;
        if (worker->queued_count && job && now - job->started_ms >= self->hold_ms)
            back += s_give_back (self, worker, false, NULL, 0);
        queued += worker->queued_count;
    }
    if (queued == 0) {
        zloop_timer_end (self->loop, self->queue_timer);
        self->queue_timer = -1;
    }
    if (back)
        self->changed (self->arg);
    return 0;
}

//  The busy worker that job may queue on, or NULL: see "Pipelining" above.
static pool_worker_t *
s_queue_target (workers_t *self, const jm_job_t *job, int64_t now)
{
    int64_t half = self->hold_ms / 2;
    if (!half || !self->loop || zframe_size (job->payload) > S_QUEUE_PAYLOAD_MAX
        || now - job->received_ms >= half || pool_live (self->pool) > self->target)
        return NULL;
    pool_worker_t *best = NULL;
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool)) {
        jm_job_t *current = worker->job;
        if (!pool_may_queue (worker) || !current || now - current->started_ms >= half
            || worker->generation != pool_generation (self->pool))
            continue;
        if (!best || worker->queued_count < best->queued_count)
            best = worker;
    }
    return best;
}

int
workers_assign (workers_t *self, jm_job_t **job_p)
{
    assert (self && job_p && *job_p);
    jm_job_t *job = *job_p;
    int64_t now = clock_mono_ms ();
    pool_worker_t *worker = pool_idle (self->pool);
    if (!worker && !self->stopping)
        worker = s_queue_target (self, job, now);
    if (!worker)
        return -1;
    bool queued = worker->state == POOL_BUSY;
    //  The message only borrows the job's fields: it is encoded and written
    //  here, never destroyed. (An empty payload still needs a pointer.)
    size_t payload_size = zframe_size (job->payload);
    wire_msg_t msg = { .type = WIRE_JOB,
                       .msgid = job->msgid,
                       .queue = job->queue,
                       .attempt = job->attempt,
                       .timeout_s = job->timeout_s,
                       .payload = payload_size ? (char *) zframe_data (job->payload)
                                               : (char *) "",
                       .payload_size = payload_size };
    job->handle = zlistx_add_end (self->running, job);
    if (!job->handle)
        return -1;
    if (pool_send_job (self->pool, worker, &msg, job)) {
        char reason[128];
        snprintf (reason, sizeof reason, "cannot hand over a job: %s", strerror (errno));
        zlistx_detach (self->running, job->handle);
        job->handle = NULL;
        //  A busy worker may just have ended its job and left (it retires
        //  after it): read what it wrote before calling it broken, or the
        //  job it finished would be taken for a crash.
        if (queued)
            s_read (self, worker);
        if (worker->fd >= 0)
            s_broken (self, worker, reason);
        return -2;
    }
    job->pid = worker->pid;
    if (queued) {
        if (self->queue_timer == -1)
            self->queue_timer = zloop_timer (self->loop, (size_t) (self->hold_ms / 2), 0,
                                             s_on_queue_check, self);
    }
    else
        s_start (job);
    log_debug ("jobmanager %s: job %s queue=%s attempt=%u -> worker %d%s", self->id,
               job->msgid, job->queue, job->attempt, (int) worker->pid,
               queued ? " (queued behind its job)" : "");
    *job_p = NULL;
    return 0;
}

//  Kills the worker's process group (logged if that fails).
static void
s_kill (workers_t *self, pool_worker_t *worker)
{
    if (pool_kill (self->pool, worker, SIGKILL))
        log_warning ("jobmanager %s: kill worker %d: %s", self->id, (int) worker->pid,
                     strerror (errno));
}

//  Whether job is msgid (of epoch, unless 0).
static bool
s_is (const jm_job_t *job, const char *msgid, uint64_t epoch)
{
    return job && streq (job->msgid, msgid) && (!epoch || epoch == job->epoch);
}

bool
workers_cancel (workers_t *self, const char *msgid, uint64_t epoch)
{
    assert (self && msgid);
    //  Each round either ends the job or reads an OUTCOME that moved it
    //  forward in its worker's queue; a few rounds settle it.
    for (int round = 0; round < POOL_QUEUE_MAX + 2; round++) {
        pool_worker_t *found = NULL;
        bool queued = false;
        for (pool_worker_t *worker = pool_first (self->pool); worker && !found;
             worker = pool_next (self->pool)) {
            if (worker->state != POOL_BUSY)
                continue;
            if (s_is (worker->job, msgid, epoch))
                found = worker;
            for (size_t i = 0; i < worker->queued_count && !found; i++)
                if (s_is (worker->queued[i], msgid, epoch))
                    found = worker, queued = true;
        }
        if (!found)
            return false;
        if (queued) {
            //  Taken back (with what queues behind it) unless the worker
            //  took it: then its job before it ended; read that and look
            //  again.
            s_give_back (self, found, false, msgid, epoch);
            bool gone = true;
            for (size_t i = 0; i < found->queued_count; i++)
                gone &= !s_is (found->queued[i], msgid, epoch);
            if (gone)
                return true;
            if (s_read (self, found))
                self->changed (self->arg);
            continue;
        }
        if (!s_clear_queue (self, found))
            continue;  // its job ended meanwhile: look again
        jm_job_t *job = found->job;
        s_kill (self, found);
        log_info ("jobmanager %s: job %s cancelled; worker %d killed", self->id,
                  job->msgid, (int) found->pid);
        s_end_killed (self, found, EMQP_STATUS_CANCELLED, "cancelled while running",
                      clock_mono_ms ());
        return true;
    }
    return false;
}

void
workers_check_timeouts (workers_t *self, int64_t now_ms)
{
    assert (self);
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool)) {
        jm_job_t *job = worker->job;
        if (worker->state != POOL_BUSY || !job || !job->deadline_ms
            || now_ms < job->deadline_ms)
            continue;
        //  If the job ended meanwhile, the next one has a deadline of its
        //  own (the next check looks at it).
        if (!s_clear_queue (self, worker) || worker->job != job)
            continue;
        char text[128];
        snprintf (text, sizeof text, "timed out after %u s", job->timeout_s);
        s_kill (self, worker);
        s_end_killed (self, worker, EMQP_STATUS_TIMEOUT, text, now_ms);
    }
}

void
workers_kill_all (workers_t *self)
{
    assert (self);
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool)) {
        //  What a worker has not taken goes back (the router requeues it).
        s_give_back (self, worker, true, NULL, 0);
        if (worker->state == POOL_BUSY && worker->job) {
            pool_kill (self->pool, worker, SIGKILL);
            const char *text = "killed at shutdown";
            jm_outcome_t outcome = { .status = EMQP_STATUS_CRASHED,
                                     .value = text,
                                     .value_size = strlen (text),
                                     .wall_us =
                                         jm_job_wall_us (worker->job, clock_mono_ms ()) };
            s_end_job (self, worker, &outcome);
            while (worker->queued_count > 0)
                s_end_queued (self, worker->queued[--worker->queued_count],
                              EMQP_STATUS_CRASHED, text);
        }
        s_close (self, worker);
    }
}

size_t
workers_reap (workers_t *self)
{
    assert (self);
    return pool_reap (self->pool, s_on_reaped, self);
}

void
workers_close_all (workers_t *self, int64_t timeout_ms)
{
    assert (self);
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool))
        s_close (self, worker);
    int64_t deadline = clock_mono_ms () + timeout_ms;
    while (pool_size (self->pool) > 0 && clock_mono_ms () < deadline) {
        pool_reap (self->pool, s_on_reaped, self);
        if (pool_size (self->pool) > 0)
            zclock_sleep (10);
    }
}

size_t
workers_size (workers_t *self)
{
    assert (self);
    return pool_size (self->pool);
}

size_t
workers_live (workers_t *self)
{
    assert (self);
    return pool_live (self->pool);
}

size_t
workers_idle (workers_t *self)
{
    assert (self);
    return pool_count (self->pool, POOL_IDLE);
}

size_t
workers_ready (workers_t *self)
{
    assert (self);
    size_t ready = 0;
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool))
        ready += worker->state == POOL_IDLE && !worker->retiring;
    return ready;
}

size_t
workers_starting (workers_t *self)
{
    assert (self);
    return pool_count (self->pool, POOL_STARTING);
}

size_t
workers_coming (workers_t *self)
{
    assert (self);
    size_t live = pool_live (self->pool);
    return workers_starting (self) + (live < self->target ? self->target - live : 0);
}

size_t
workers_running (workers_t *self)
{
    assert (self);
    size_t running = 0;
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool))
        running += worker->job != NULL;
    return running;
}

size_t
workers_queued (workers_t *self)
{
    assert (self);
    size_t queued = 0;
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool))
        queued += worker->queued_count;
    return queued;
}

json_t *
workers_in_flight_json (workers_t *self)
{
    assert (self);
    json_t *in_flight = json_object ();
    for (jm_job_t *job = zlistx_first (self->running); in_flight && job;
         job = zlistx_next (self->running)) {
        if (!job->started_ms)
            continue;  // queued behind another: it waits, as held ones do
        json_t *item = json_pack ("{s:i, s:s, s:f}", "pid", (json_int_t) job->pid,
                                  "queue", job->queue, "started", job->started_ts);
        //  What the worker uses now, for emq-web and emq-cli top.
        procstat_t usage;
        if (item && procstat_read (job->pid, &usage) == 0) {
            json_object_set_new (item, "rss_kb",
                                 json_integer ((json_int_t) (usage.rss_bytes / 1024)));
            json_object_set_new (item, "cpu_s", json_real (usage.cpu_s));
        }
        json_object_set_new (in_flight, job->msgid, item);
    }
    return in_flight;
}

void
workers_queued_json (workers_t *self, json_t *msgids)
{
    assert (self);
    for (pool_worker_t *worker = pool_first (self->pool); msgids && worker;
         worker = pool_next (self->pool))
        for (size_t i = 0; i < worker->queued_count; i++)
            json_array_append_new (msgids,
                                   json_string (((jm_job_t *) worker->queued[i])->msgid));
}

static void
s_visit_pid (pid_t pid, uint64_t jobs, void *arg)
{
    char key[32];
    snprintf (key, sizeof key, "%d", (int) pid);
    json_object_set_new ((json_t *) arg, key, json_integer ((json_int_t) jobs));
}

json_t *
workers_distribution_json (workers_t *self)
{
    assert (self);
    json_t *distribution = json_object ();
    if (distribution)
        pool_distribution (self->pool, s_visit_pid, distribution);
    return distribution;
}

//  --------------------------------------------------------------------------
//  Self test: real workers (worker_main) on a zloop, no router.

typedef struct {
    int ended;                // jobs reported
    int changed;              // `changed` calls
    int returned;             // jobs given back
    char returned_msgid[64];  // the last one given back
    char log[1024];           // "msgid:status;" for each job reported
    char msgid[64];           // the last job reported
    emqp_status_t status;
    char value[256];  // its value or text (NUL-terminated copy)
    size_t value_size;
} s_seen_t;

static void
s_test_ended (const jm_job_t *job, const jm_outcome_t *outcome, void *arg)
{
    s_seen_t *seen = arg;
    seen->ended++;
    snprintf (seen->msgid, sizeof seen->msgid, "%s", job->msgid);
    size_t used = strlen (seen->log);
    snprintf (seen->log + used, sizeof seen->log - used, "%s:%d;", job->msgid,
              (int) outcome->status);
    seen->status = outcome->status;
    seen->value_size = outcome->value_size;
    size_t size = outcome->value_size < sizeof seen->value - 1 ? outcome->value_size
                                                               : sizeof seen->value - 1;
    memcpy (seen->value, outcome->value, size);
    seen->value[size] = 0;
}

static void
s_test_changed (void *arg)
{
    ((s_seen_t *) arg)->changed++;
}

static void
s_test_returned (jm_job_t **jobs, size_t count, void *arg)
{
    s_seen_t *seen = arg;
    for (size_t i = 0; i < count; i++) {
        seen->returned++;
        snprintf (seen->returned_msgid, sizeof seen->returned_msgid, "%s",
                  jobs[i]->msgid);
        jm_job_destroy (&jobs[i]);
    }
}

//  The worker that holds msgid as its job or queued, or NULL.
static pool_worker_t *
s_test_holder (workers_t *workers, const char *msgid, bool *queued)
{
    for (pool_worker_t *worker = pool_first (workers->pool); worker;
         worker = pool_next (workers->pool)) {
        if (worker->job && streq (((jm_job_t *) worker->job)->msgid, msgid)) {
            *queued = false;
            return worker;
        }
        for (size_t i = 0; i < worker->queued_count; i++)
            if (streq (((jm_job_t *) worker->queued[i])->msgid, msgid)) {
                *queued = true;
                return worker;
            }
    }
    return NULL;
}

//  Waits (5 s at most) until the worker handed msgid has taken it: only
//  then does killing the worker count as a crash of the job.
static bool
s_test_taken (workers_t *workers, const char *msgid)
{
    for (int i = 0; i < 1000; i++) {
        bool queued = false;
        pool_worker_t *worker = s_test_holder (workers, msgid, &queued);
        if (worker && !queued && handoff_taken (worker->handoff, worker->job_ticket))
            return true;
        zclock_sleep (5);
    }
    return false;
}

//  What the loop waits for: a count of something to reach a value.
typedef struct {
    workers_t *workers;
    size_t (*count) (workers_t *);  // a workers_ counter, or NULL
    const int *seen_count;          // or a counter of s_seen_t
    size_t want;
    int64_t deadline_ms;
} s_until_t;

static int
s_test_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    s_until_t *until = arg;
    workers_reap (until->workers);
    size_t have =
        until->count ? until->count (until->workers) : (size_t) *until->seen_count;
    return have == until->want || zclock_mono () > until->deadline_ms ? -1 : 0;
}

//  Runs the loop until the counter reaches want (5 s at most); true if it did.
static bool
s_test_until (zloop_t *loop, workers_t *workers, size_t (*count) (workers_t *),
              const int *seen_count, size_t want)
{
    s_until_t until = { workers, count, seen_count, want, zclock_mono () + 5000 };
    int timer = zloop_timer (loop, 5, 0, s_test_tick, &until);
    zloop_start (loop);
    zloop_timer_end (loop, timer);
    return (count ? count (workers) : (size_t) *seen_count) == want;
}

//  A job running argv (an exec job), with a timeout.
static jm_job_t *
s_test_job (const char *msgid, char **argv, uint32_t timeout_s)
{
    payload_t payload = { .kind = PAYLOAD_EXEC, .argv = argv };
    while (argv[payload.argc])
        payload.argc++;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    payload_encode (&payload, &sbuf);
    emqp_msg_t *msg = emqp_msg_new (EMQP_REQUEST);
    jm_job_t *job = NULL;
    if (msg) {
        msg->msgid = strdup (msgid);
        msg->queue = strdup ("default");
        msg->payload = zframe_new (sbuf.data, sbuf.size);
        job = jm_job_new (msg, 1, zclock_mono ());
    }
    if (job)
        job->timeout_s = timeout_s;
    emqp_msg_destroy (&msg);
    msgpack_sbuffer_destroy (&sbuf);
    return job;
}

//  A worker that says HELLO, then answers its first JOB with bytes that are
//  no message.
static void
s_garbage_child (int fd, pid_t parent, handoff_t *handoff, void *arg)
{
    (void) parent;
    (void) arg;
    wire_msg_t *hello = wire_msg_new (WIRE_HELLO);
    hello->pid = getpid ();
    if (wire_write (fd, hello))
        _exit (2);
    wire_msg_destroy (&hello);
    char err[256];
    wire_msg_t *job = wire_read (fd, err, sizeof err);
    if (!job || !handoff_take (handoff, job->ticket))
        _exit (2);
    wire_msg_destroy (&job);
    if (write (fd, "\0\0\0\1\xc1", 5) != 5)
        _exit (2);
    pause ();
    _exit (0);
}

static worker_config_t *
s_test_wconfig (uint64_t max_job_count)
{
    worker_config_t *wconfig = worker_config_new ();
    if (wconfig && worker_config_add_exec_allow (wconfig, "/bin/*"))
        worker_config_destroy (&wconfig);
    if (wconfig)
        wconfig->max_job_count = max_job_count;
    return wconfig;
}

//  A table of target workers running child, attached to loop, reporting to
//  seen, queueing for hold_ms: started, and every worker said HELLO.
static workers_t *
s_test_workers (zloop_t *loop, pool_child_fn *child, uint64_t max_job_count,
                size_t target, int64_t hold_ms, s_seen_t *seen)
{
    worker_config_t *wconfig = s_test_wconfig (max_job_count);
    s_child = child;
    workers_t *workers = workers_new (&wconfig, target, "test", s_test_ended,
                                      s_test_changed, s_test_returned, seen);
    s_child = s_worker_child;
    REQUIRE_OR_NULL (workers);
    workers_attach (workers, loop);
    workers_set_hold (workers, hold_ms);
    workers_replenish (workers);
    CHECK (s_test_until (loop, workers, workers_ready, NULL, target));
    return workers;
}

//  A misbehaving worker: its job is reported crashed with the reason, and
//  the worker is replaced at once.
static void
s_test_garbage (zloop_t *loop, bool verbose)
{
    (void) verbose;
    s_seen_t seen = { 0 };
    workers_t *workers = s_test_workers (loop, s_garbage_child, 0, 1, 0, &seen);
    REQUIRE (workers);
    char *echo[] = { "/bin/echo", "x", NULL };
    jm_job_t *job = s_test_job ("bad", echo, 0);
    CHECK (workers_assign (workers, &job) == 0);
    CHECK (s_test_until (loop, workers, NULL, &seen.ended, 1));
    CHECK (seen.status == EMQP_STATUS_CRASHED && streq (seen.msgid, "bad"));
    CHECK_CONTAINS (seen.value, "failed: ");
    CHECK_CONTAINS (seen.value, "(signal 9 (SIGKILL))");
    CHECK (workers_live (workers) == 0 && workers_running (workers) == 0);
    workers_destroy (&workers);
}

//  Pipelining: jobs queued on busy workers start when the job ahead ends,
//  and come back unrun when cancelled, held too long, or when their worker
//  dies or goes.
static void
s_test_pipeline (zloop_t *loop, bool verbose)
{
    (void) verbose;
    s_seen_t seen = { 0 };
    workers_t *workers = s_test_workers (loop, s_worker_child, 0, 2, 0, &seen);
    REQUIRE (workers);
    char *sleeper[] = { "/bin/sleep", "30", NULL };
    char *echo[] = { "/bin/echo", "q", NULL };
    char *short_sleep[] = { "/bin/sleep", "0.3", NULL };
    char ok[64];

    //  No hold set: nothing queues.
    jm_job_t *job = s_test_job ("a", short_sleep, 0);
    CHECK (workers_assign (workers, &job) == 0);
    job = s_test_job ("b", short_sleep, 0);
    CHECK (workers_assign (workers, &job) == 0);
    job = s_test_job ("c", echo, 0);
    CHECK (workers_assign (workers, &job) == -1 && job);
    workers_set_hold (workers, 10000);

    //  Queued behind a running job: not in flight yet; it runs as soon as
    //  the job ahead ends, on the worker it queued on.
    job->timeout_s = 5;
    CHECK (workers_assign (workers, &job) == 0 && job == NULL);
    bool queued = false;
    pool_worker_t *w = s_test_holder (workers, "c", &queued);
    CHECK (w && queued && workers_queued (workers) == 1);
    CHECK (workers_running (workers) == 2);
    json_t *in_flight = workers_in_flight_json (workers);
    CHECK (json_object_get (in_flight, "c") == NULL && json_object_size (in_flight) == 2);
    json_decref (in_flight);
    pid_t pid = w ? w->pid : 0;
    CHECK (s_test_until (loop, workers, NULL, &seen.ended, 3));
    snprintf (ok, sizeof ok, "c:%d;", (int) EMQP_STATUS_OK);
    CHECK_CONTAINS (seen.log, ok);
    CHECK (workers_queued (workers) == 0 && workers_running (workers) == 0);
    json_t *distribution = workers_distribution_json (workers);
    char key[32];
    snprintf (key, sizeof key, "%d", (int) pid);
    CHECK (json_integer_value (json_object_get (distribution, key)) == 2);
    json_decref (distribution);
    CHECK (seen.returned == 0);

    //  A worker killed with a job queued: its job crashed, the queued one
    //  comes back unrun.
    job = s_test_job ("run-1", sleeper, 0);
    CHECK (workers_assign (workers, &job) == 0);
    job = s_test_job ("run-2", sleeper, 0);
    CHECK (workers_assign (workers, &job) == 0);
    CHECK (s_test_taken (workers, "run-1") && s_test_taken (workers, "run-2"));
    job = s_test_job ("doomed", echo, 0);
    CHECK (workers_assign (workers, &job) == 0);
    w = s_test_holder (workers, "doomed", &queued);
    CHECK (w && queued);
    pid = w ? w->pid : 0;
    char running[64];
    snprintf (running, sizeof running, "%s", w ? ((jm_job_t *) w->job)->msgid : "");
    int ended = seen.ended;
    CHECK (pid > 0 && kill (pid, SIGKILL) == 0);
    CHECK (s_test_until (loop, workers, NULL, &seen.ended, (size_t) ended + 1));
    CHECK (seen.status == EMQP_STATUS_CRASHED && streq (seen.msgid, running));
    CHECK (seen.returned == 1 && streq (seen.returned_msgid, "doomed"));
    workers_replace_lost (workers);
    CHECK (s_test_until (loop, workers, workers_ready, NULL, 1));

    //  Both busy with long jobs: queued jobs spread over them.
    job = s_test_job ("run-3", sleeper, 0);
    CHECK (workers_assign (workers, &job) == 0);
    CHECK (s_test_taken (workers, "run-3"));
    const char *ids[] = { "q-1", "q-2", "q-3" };
    for (int i = 0; i < 3; i++) {
        job = s_test_job (ids[i], echo, 0);
        CHECK (workers_assign (workers, &job) == 0);
    }
    pool_worker_t *w1 = s_test_holder (workers, "q-1", &queued);
    pool_worker_t *w2 = s_test_holder (workers, "q-2", &queued);
    CHECK (w1 && w2 && w1 != w2 && workers_queued (workers) == 3);

    //  Cancel of a queued job: it (and what queued behind it) comes out
    //  unrun; the worker and its job go on.
    ended = seen.ended;
    int returned = seen.returned;
    size_t behind_q2 = w2 ? w2->queued_count - 1 : 0;
    CHECK (workers_cancel (workers, "q-2", 0));
    CHECK (seen.ended == ended + 1 && streq (seen.msgid, "q-2"));
    CHECK (seen.status == EMQP_STATUS_CANCELLED);
    CHECK_STREQ (seen.value, "cancelled before it started");
    CHECK (seen.returned == returned + (int) behind_q2);
    CHECK (workers_live (workers) == 2 && workers_running (workers) == 2);
    CHECK (!s_test_holder (workers, "q-2", &queued));
    CHECK (w2 && !pool_may_queue (w2));  // until its job ends

    //  Cancel of a running job with jobs queued behind it: they come back,
    //  then the worker is killed.
    returned = seen.returned;
    size_t behind = w1 ? w1->queued_count : 0;
    snprintf (running, sizeof running, "%s", w1 ? ((jm_job_t *) w1->job)->msgid : "");
    CHECK (workers_cancel (workers, running, 0));
    CHECK (seen.status == EMQP_STATUS_CANCELLED && streq (seen.msgid, running));
    CHECK_STREQ (seen.value, "cancelled while running");
    CHECK (behind >= 1 && seen.returned == returned + (int) behind);
    CHECK (!s_test_holder (workers, "q-1", &queued));
    workers_replace_lost (workers);
    CHECK (s_test_until (loop, workers, workers_ready, NULL, 1));

    //  The hold runs out behind a long job: what queued there comes back
    //  (a check every hold / 2). A job older than half the hold does not
    //  queue at all.
    workers_set_hold (workers, 300);
    job = s_test_job ("filler", sleeper, 0);  // the fresh worker: busy too
    CHECK (workers_assign (workers, &job) == 0);
    job = s_test_job ("held", echo, 0);
    CHECK (workers_assign (workers, &job) == 0);
    CHECK (s_test_holder (workers, "held", &queued) && queued);
    returned = seen.returned;
    CHECK (s_test_until (loop, workers, NULL, &seen.returned, (size_t) returned + 1));
    CHECK_STREQ (seen.returned_msgid, "held");
    CHECK (workers_queued (workers) == 0 && workers_running (workers) == 2);
    job = s_test_job ("old", echo, 0);
    job->received_ms -= 200;
    CHECK (workers_assign (workers, &job) == -1 && job);
    jm_job_destroy (&job);

    workers_stop (workers);
    workers_kill_all (workers);
    CHECK (workers_running (workers) == 0 && workers_queued (workers) == 0);
    workers_close_all (workers, 2000);
    workers_destroy (&workers);
}

//  max_job_count 1: a worker that retires after its job gives back what
//  was queued on it, unrun. Then stopping gives back what is queued.
static void
s_test_pipeline_retire (zloop_t *loop, bool verbose)
{
    (void) verbose;
    s_seen_t seen = { 0 };
    workers_t *workers = s_test_workers (loop, s_worker_child, 1, 1, 10000, &seen);
    REQUIRE (workers);
    char *short_sleep[] = { "/bin/sleep", "0.2", NULL };
    jm_job_t *job = s_test_job ("first", short_sleep, 0);
    CHECK (workers_assign (workers, &job) == 0);
    job = s_test_job ("second", short_sleep, 0);
    CHECK (workers_assign (workers, &job) == 0);
    CHECK (workers_queued (workers) == 1);
    CHECK (s_test_until (loop, workers, NULL, &seen.returned, 1));
    CHECK (seen.ended == 1 && streq (seen.msgid, "first"));
    CHECK_STREQ (seen.returned_msgid, "second");
    CHECK (workers_queued (workers) == 0);

    //  Stopping: queued jobs come back; the running one is killed at
    //  shutdown.
    CHECK (s_test_until (loop, workers, workers_ready, NULL, 1));
    char *sleeper[] = { "/bin/sleep", "30", NULL };
    job = s_test_job ("last-run", sleeper, 0);
    CHECK (workers_assign (workers, &job) == 0);
    CHECK (s_test_taken (workers, "last-run"));
    job = s_test_job ("last-queued", short_sleep, 0);
    CHECK (workers_assign (workers, &job) == 0);
    workers_stop (workers);
    CHECK (seen.returned == 2 && streq (seen.returned_msgid, "last-queued"));
    workers_kill_all (workers);
    CHECK (seen.ended == 2 && streq (seen.msgid, "last-run"));
    CHECK_STREQ (seen.value, "killed at shutdown");
    workers_close_all (workers, 2000);
    workers_destroy (&workers);
}

void
workers_test (bool verbose)
{
    if (verbose)
        printf (" * workers: ");
    //  The workers log as a job manager would; only errors unless verbose.
    log_level_t level = log_enabled (LOG_LEVEL_DEBUG)     ? LOG_LEVEL_DEBUG
                        : log_enabled (LOG_LEVEL_INFO)    ? LOG_LEVEL_INFO
                        : log_enabled (LOG_LEVEL_WARNING) ? LOG_LEVEL_WARNING
                                                          : LOG_LEVEL_ERROR;
    log_set_level (verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
    s_seen_t seen = { 0 };
    zloop_t *loop = zloop_new ();
    REQUIRE (loop);
    worker_config_t *wconfig = s_test_wconfig (0);
    REQUIRE (wconfig);
    workers_t *workers = workers_new (&wconfig, 2, "test", s_test_ended, s_test_changed,
                                      s_test_returned, &seen);
    REQUIRE (workers && wconfig == NULL);
    workers_attach (workers, loop);
    CHECK (workers_coming (workers) == 2);
    workers_replenish (workers);
    CHECK (workers_live (workers) == 2 && workers_starting (workers) == 2);
    CHECK (workers_coming (workers) == 2 && workers_ready (workers) == 0);
    jm_job_t *job = s_test_job ("early", (char *[]){ "/bin/true", NULL }, 0);
    CHECK (workers_assign (workers, &job) == -1 && job);  // nobody said HELLO yet
    jm_job_destroy (&job);

    //  Both HELLOs: each frees a worker.
    CHECK (s_test_until (loop, workers, workers_ready, NULL, 2));
    CHECK (seen.changed == 2 && workers_idle (workers) == 2
           && workers_coming (workers) == 0);

    //  A job: handed over, in flight, then reported with its stdout.
    char *echo[] = { "/bin/echo", "hi", NULL };
    job = s_test_job ("job-1", echo, 0);
    CHECK (workers_assign (workers, &job) == 0 && job == NULL);
    CHECK (workers_running (workers) == 1 && workers_ready (workers) == 1);
    json_t *in_flight = workers_in_flight_json (workers);
    CHECK (json_object_get (in_flight, "job-1") != NULL);
    json_decref (in_flight);
    CHECK (s_test_until (loop, workers, NULL, &seen.ended, 1));
    CHECK (seen.status == EMQP_STATUS_OK && streq (seen.msgid, "job-1"));
    CHECK (seen.value_size == 5 && memcmp (seen.value + 2, "hi\n", 3) == 0);
    CHECK (seen.changed == 3 && workers_running (workers) == 0);
    json_t *distribution = workers_distribution_json (workers);
    CHECK (json_object_size (distribution) == 2);
    json_decref (distribution);

    //  Past its deadline: killed, reported timed out, replaced when asked.
    char *sleeper[] = { "/bin/sleep", "30", NULL };
    job = s_test_job ("job-2", sleeper, 1);
    CHECK (workers_assign (workers, &job) == 0);
    workers_check_timeouts (workers, zclock_mono ());
    CHECK_EQ (seen.ended, 1);  // not yet
    workers_check_timeouts (workers, zclock_mono () + 1500);
    CHECK (seen.ended == 2 && seen.status == EMQP_STATUS_TIMEOUT);
    CHECK_STREQ (seen.value, "timed out after 1 s");
    CHECK (workers_live (workers) == 1 && workers_coming (workers) == 1);
    workers_replace_lost (workers);
    CHECK (workers_live (workers) == 2);
    workers_replace_lost (workers);  // only once
    CHECK (workers_live (workers) == 2);
    CHECK (s_test_until (loop, workers, workers_ready, NULL, 2));

    //  Cancelled while running: the other epoch is not it.
    job = s_test_job ("job-3", sleeper, 0);
    job->epoch = 5;
    CHECK (workers_assign (workers, &job) == 0);
    CHECK (!workers_cancel (workers, "job-3", 6) && !workers_cancel (workers, "nope", 0));
    CHECK (workers_cancel (workers, "job-3", 5));
    CHECK (seen.ended == 3 && seen.status == EMQP_STATUS_CANCELLED);
    CHECK_STREQ (seen.value, "cancelled while running");
    workers_replace_lost (workers);
    CHECK (s_test_until (loop, workers, workers_ready, NULL, 2));

    //  A worker killed from outside: its job crashed, with the signal.
    job = s_test_job ("job-4", sleeper, 0);
    CHECK (workers_assign (workers, &job) == 0);
    pid_t pid = 0;
    in_flight = workers_in_flight_json (workers);
    pid = (pid_t) json_integer_value (
        json_object_get (json_object_get (in_flight, "job-4"), "pid"));
    json_decref (in_flight);
    CHECK (s_test_taken (workers, "job-4"));
    CHECK (pid > 0 && kill (pid, SIGKILL) == 0);
    CHECK (s_test_until (loop, workers, NULL, &seen.ended, 4));
    //  "died: signal 9 (SIGKILL)", or "failed: <the pipe's error> (signal 9
    //  (SIGKILL))" when the broken pipe was read before the exit was reaped.
    CHECK (seen.status == EMQP_STATUS_CRASHED);
    char expect[128];
    snprintf (expect, sizeof expect, "worker pid %d ", (int) pid);
    CHECK (strncmp (seen.value, expect, strlen (expect)) == 0);
    CHECK_CONTAINS (seen.value, "signal 9 (SIGKILL)");
    workers_replace_lost (workers);
    CHECK (s_test_until (loop, workers, workers_ready, NULL, 2));

    //  The same settings change nothing; new ones restart the idle workers;
    //  a smaller pool keeps one.
    wconfig = s_test_wconfig (0);
    CHECK (!workers_configure (workers, &wconfig, 2) && wconfig == NULL);
    CHECK (workers_live (workers) == 2 && workers_ready (workers) == 2);
    wconfig = s_test_wconfig (1);
    CHECK (workers_configure (workers, &wconfig, 1) && wconfig == NULL);
    CHECK (workers_live (workers) == 1 && workers_starting (workers) == 1);
    CHECK (s_test_until (loop, workers, workers_ready, NULL, 1));

    //  max_job_count 1: the worker retires after its job and is replaced.
    job = s_test_job ("job-5", echo, 0);
    CHECK (workers_assign (workers, &job) == 0);
    CHECK (s_test_until (loop, workers, NULL, &seen.ended, 5));
    CHECK (seen.status == EMQP_STATUS_OK && streq (seen.msgid, "job-5"));
    CHECK (s_test_until (loop, workers, workers_ready, NULL, 1));
    CHECK (workers_live (workers) == 1);

    //  Shutdown: the busy one is killed and reported; all pipes close; no
    //  new workers.
    job = s_test_job ("job-6", sleeper, 0);
    CHECK (workers_assign (workers, &job) == 0);
    CHECK (s_test_taken (workers, "job-6"));
    workers_stop (workers);
    workers_kill_all (workers);
    CHECK (seen.ended == 6 && seen.status == EMQP_STATUS_CRASHED);
    CHECK_STREQ (seen.value, "killed at shutdown");
    CHECK (workers_live (workers) == 0 && workers_running (workers) == 0);
    workers_replenish (workers);
    CHECK (workers_live (workers) == 0);
    workers_close_all (workers, 2000);
    CHECK_EQ (workers_size (workers), 0);
    workers_destroy (&workers);
    CHECK (workers == NULL);
    workers_destroy (&workers);

    s_test_garbage (loop, verbose);
    s_test_pipeline (loop, verbose);
    s_test_pipeline_retire (loop, verbose);
    zloop_destroy (&loop);
    log_set_level (level);
    if (verbose)
        printf ("OK\n");
}
