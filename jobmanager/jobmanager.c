/*  jobmanager — the eMQP side of emq-jobmanager. See jobmanager.h.

    Ownership: the job manager owns the config, the worker config new
    workers are forked with, the pool (which owns the worker records), the
    socket, and the jobs: pending ones in self->pending, running ones in
    self->running (each running job is also borrowed by its worker record).
    Outcomes waiting to be sent live in self->outbox until the router has
    taken them, so a reconnect never loses one.

    Slot accounting (agent emq/2). The router counts our free slots; for an
    emq/2 job manager every READY, every DONE and every RETURN it receives
    from us while we are registered is one slot more, every REQUEST it
    sends us one less (the router may go below zero by its `prefetch`
    allowance). self->announced is that count as we know it:

        announced = READYs + DONEs + RETURNs sent while registered
                    - REQUESTs received

    and our target is (idle workers that do not retire - pending jobs).
    After every event s_settle() sends READYs while announced < target.
    A finished job's DONE is its worker's READY, a rejected or cancelled
    pending job's DONE gives back the slot it took, a RETURN gives back a
    held job's slot: none of them needs a READY. When announced > target
    (a worker that was counted died, retired or was replaced: its DONE or
    its READY counted, and it is gone) no READY is sent until the target
    catches up, normally when the replacement says HELLO. What no coming
    HELLO can absorb (the pool shrank while busy; DONEs of jobs that came
    on an earlier connection, which this registration never sent) would
    stay counted for good: then we INFORM again on the same connection,
    which resets the router's count of free slots (s_settle).

    Resets: a new socket is a new peer, announced = 0. The router answers an
    INFORM by forgetting our free slots but keeping its count of jobs it
    prefetched to us, so at the ACK announced = min (announced, 0), counting
    the REQUESTs that arrived between INFORM and ACK (the router sent them
    before it read the INFORM). Nothing counted is sent before the ACK:
    outcomes wait in the outbox and are flushed right after it, each DONE
    one slot, and s_settle() then sends only what is still missing.
*/
#include "jobmanager.h"
#include "curve.h"
#include "emqp.h"
#include "headers.h"
#include "log.h"
#include "pool.h"
#include "worker/worker.h"
#include "tests/testutil.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_TICK_MS 50
#define S_DRAIN_BATCH 100

typedef enum {
    S_CONNECTING = 0,       // INFORM sent, waiting for its ACK
    S_ACTIVE                // ACKed: READY, REQUEST, HEARTBEAT flow
} s_state_t;

static const char *s_state_names [] = { "connecting", "active" };

//  A job from the router, pending or running.
typedef struct {
    char *msgid;
    char *queue;
    uint64_t epoch;         // dispatch epoch (fencing token), echoed in DONE
    uint32_t attempt;
    uint32_t timeout_s;     // 0 = none
    zframe_t *payload;      // msgpack job payload
    pid_t pid;              // worker running it, 0 while pending
    int64_t started_ms;     // monotonic
    double started_ts;      // wall clock, for status
    int64_t received_ms;    // monotonic, when the REQUEST arrived (hold deadline)
    uint64_t connection;    // self->connection it arrived on; RETURN only on that one
    int64_t deadline_ms;    // monotonic; 0 = no timeout
    char *crash_reason;     // why we killed its worker, when we did
    void *handle;           // in self->running
} s_job_t;

//  An outcome waiting to go out as DONE.
typedef struct {
    char *ref;
    uint64_t epoch;
    emqp_status_t status;
    char *value;
    size_t value_size;
    char *usage;
} s_done_t;

struct jobmanager_t {
    config_t *config;               // current settings (owned)
    worker_config_t *wconfig;       // what new workers are forked with (owned)
    jobmanager_reload_fn *reload;
    void *reload_arg;
    pool_t *pool;
    zloop_t *loop;
    zsock_t *dealer;                // to the router's backend
    char identity [256];
    size_t addr_index;              // into backend_addr + backend_failover_addrs
    s_state_t state;
    char inform_msgid [37];         // the INFORM whose ACK we wait for
    int64_t inform_sent_ms;
    int64_t last_heard_ms;          // anything from the router
    int64_t last_heartbeat_ms;      // our last HEARTBEAT
    bool reconnect_due;             // set by handlers, done by the timer
    zlistx_t *pending;              // s_job_t, owned, FIFO
    zlistx_t *running;              // s_job_t, owned
    zlistx_t *outbox;               // s_done_t, owned
    int64_t announced;              // the router's count of our free slots, see above
    bool router_emq2;               // its ACK said emq/2: DONE and RETURN free
                                    // slots there; else READY follows a DONE
                                    // and nothing is returned (older routers)
    uint64_t connection;            // bumped with every new socket (identity)
    int hold_timer;                 // zloop timer of the oldest held job, -1: none
    int64_t hold_ms;                // prefetch_hold_ms; 0 = never return
    size_t concurrent_jobs;         // the pool's target size
    bool replace_due;               // a worker was lost with its job: replace it now
    bool draining;                  // stopping: no READY, no new workers
    int64_t drain_deadline_ms;
    bool finished;
    emqp_limits_t limits;
    uint64_t total_requests;
    uint64_t total_ready_sent;
    uint64_t total_returned;
    uint64_t max_epoch;             // highest dispatch epoch received on this connection
};

//  The self-pipe the signal handlers write to; one job manager runs at a
//  time per process.
static int s_signal_pipe [2] = { -1, -1 };

static void s_connect (jobmanager_t *self);
static void s_inform (jobmanager_t *self);
static void s_balance (jobmanager_t *self);
static void s_replenish (jobmanager_t *self);

//  --------------------------------------------------------------------------
//  Small helpers

static int64_t
s_now_ms (void)
{
    return zclock_mono ();
}

static int64_t
s_seconds_ms (double seconds)
{
    return (int64_t) (seconds * 1000.0 + 0.5);
}

static void
s_job_destroy (s_job_t **job_p)
{
    s_job_t *job = *job_p;
    if (!job)
        return;
    free (job->msgid);
    free (job->queue);
    free (job->crash_reason);
    zframe_destroy (&job->payload);
    free (job);
    *job_p = NULL;
}

static void
s_job_destructor (void **item)
{
    s_job_destroy ((s_job_t **) item);
}

static void
s_done_destructor (void **item)
{
    s_done_t *done = *item;
    if (!done)
        return;
    free (done->ref);
    free (done->value);
    free (done->usage);
    free (done);
    *item = NULL;
}

//  Copies text, replacing every byte that is not part of valid UTF-8 with
//  U+FFFD, so an error text can travel as text. Caller owns the result.
static char *
s_utf8_sanitize (const char *data, size_t size, size_t *out_size)
{
    char *out = malloc (size * 3 + 1);
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *) data;
    size_t i = 0, o = 0;
    while (i < size) {
        unsigned char c = p [i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
                   : (c >> 3) == 30 ? 4 : 0;
        bool valid = len > 0 && i + len <= size && c != 0;
        for (size_t k = 1; valid && k < len; k++)
            valid = (p [i + k] & 0xC0) == 0x80;
        if (valid && len > 1) {
            //  Reject overlong forms, surrogates and code points past U+10FFFF.
            uint32_t cp = len == 2 ? (uint32_t) (c & 0x1F) << 6 | (p [i + 1] & 0x3F)
                        : len == 3 ? (uint32_t) (c & 0x0F) << 12 | (uint32_t) (p [i + 1] & 0x3F) << 6
                                     | (p [i + 2] & 0x3F)
                        : (uint32_t) (c & 0x07) << 18 | (uint32_t) (p [i + 1] & 0x3F) << 12
                          | (uint32_t) (p [i + 2] & 0x3F) << 6 | (p [i + 3] & 0x3F);
            uint32_t min = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
            valid = cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
        }
        if (valid) {
            memcpy (out + o, p + i, len);
            o += len;
            i += len;
        }
        else {
            memcpy (out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out [o] = 0;
    *out_size = o;
    return out;
}

//  --------------------------------------------------------------------------
//  Sending to the router

static const char *
s_id (jobmanager_t *self)
{
    return self->identity;
}

//  Sends a message; logs a failure (the caller decides whether it matters).
static int
s_send (jobmanager_t *self, emqp_msg_t **msg_p)
{
    if (!self->dealer) {
        emqp_msg_destroy (msg_p);
        errno = ENOTCONN;
        return -1;
    }
    const char *name = emqp_command_name ((*msg_p)->command);
    int rc = emqp_send (msg_p, self->dealer);
    if (rc)
        log_debug ("jobmanager %s: could not send %s: %s", s_id (self), name,
                   strerror (errno));
    return rc;
}

//  Brings the router's count of our free slots up to (idle workers that do
//  not retire - pending jobs) with READYs; see "Slot accounting" above.
//  Nothing while unregistered or stopping.
static void
s_settle (jobmanager_t *self)
{
    if (self->state != S_ACTIVE || self->draining)
        return;
    size_t idle = 0, starting = 0;
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool)) {
        idle += worker->state == POOL_IDLE && !worker->retiring;
        starting += worker->state == POOL_STARTING;
    }
    int64_t target = (int64_t) idle - (int64_t) zlistx_size (self->pending);
    while (self->announced < target) {
        emqp_msg_t *msg = emqp_msg_new (EMQP_READY);
        if (!msg || s_send (self, &msg))
            return;             // the next event or tick tries again
        self->announced++;
        self->total_ready_sent++;
    }
    //  Over the target, the HELLOs of starting workers and of those replaced
    //  on the next router HEARTBEAT absorb the difference. What they cannot
    //  absorb (the pool shrank while its workers were busy; outcomes of
    //  jobs from an earlier connection flushed after the ACK) the router
    //  would count for good: register again, which resets its count of
    //  free slots. It cannot go below zero that way, so we do it only while
    //  the router counts free slots. Not more than every 100 ms, in case
    //  an ACK finds the same again.
    size_t live = pool_live (self->pool);
    int64_t absorbed = (int64_t) starting
                     + (live < self->concurrent_jobs ? (int64_t) (self->concurrent_jobs - live) : 0);
    if (self->announced > target + absorbed && self->announced > 0
    &&  s_now_ms () - self->inform_sent_ms >= 100) {
        log_info ("jobmanager %s: the router counts %" PRId64 " free slot(s), we have %"
                  PRId64 "; registering again to reset its count", s_id (self),
                  self->announced, target);
        s_inform (self);
    }
}

//  Sends queued outcomes, oldest first, while the router takes them. Each
//  DONE is one free slot more for the router (emq/2).
static void
s_flush_outbox (jobmanager_t *self)
{
    if (self->state != S_ACTIVE)
        return;
    s_done_t *done;
    while ((done = zlistx_first (self->outbox))) {
        emqp_msg_t *msg = emqp_msg_new (EMQP_DONE);
        if (!msg)
            return;
        msg->ref = strdup (done->ref);
        msg->epoch = done->epoch;
        msg->status = done->status;
        msg->payload = zframe_new (done->value, done->value_size);
        msg->usage = strdup (done->usage);
        if (!msg->ref || !msg->payload || !msg->usage) {
            emqp_msg_destroy (&msg);
            return;
        }
        if (s_send (self, &msg))
            return;             // try again on the next tick
        if (self->router_emq2)
            self->announced++;
        zlistx_delete (self->outbox, zlistx_cursor (self->outbox));
    }
}

//  Writes v in decimal at p; returns the end.
static char *
s_put_u64 (char *p, uint64_t v)
{
    char digits [20];
    size_t n = 0;
    do {
        digits [n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = digits [--n];
    return p;
}

//  Formats "wall_us=N cpu_us=N maxrss_kb=N" into usage (S_USAGE_MAX bytes)
//  without printf's machinery: this runs once per job.
#define S_USAGE_MAX 96
static void
s_format_usage (char *usage, uint64_t wall_us, uint64_t cpu_us, uint64_t maxrss_kb)
{
    char *p = usage;
    memcpy (p, "wall_us=", 8);
    p = s_put_u64 (p + 8, wall_us);
    memcpy (p, " cpu_us=", 8);
    p = s_put_u64 (p + 8, cpu_us);
    memcpy (p, " maxrss_kb=", 11);
    p = s_put_u64 (p + 11, maxrss_kb);
    *p = 0;
}

//  Reports job's outcome with DONE: at once when registered and nothing
//  older waits, else through the outbox (which keeps it until the router
//  takes it). value is the msgpack result (ok) or the error text, which is
//  made UTF-8-safe.
static void
s_report (jobmanager_t *self, s_job_t *job, emqp_status_t status, const char *value,
          size_t value_size, uint64_t wall_us, uint64_t cpu_us, uint64_t maxrss_kb)
{
    char usage [S_USAGE_MAX];
    s_format_usage (usage, wall_us, cpu_us, maxrss_kb);
    char *text = NULL;
    if (status != EMQP_STATUS_OK) {
        text = s_utf8_sanitize (value ? value : "", value ? value_size : 0, &value_size);
        if (!text) {
            log_error ("jobmanager %s: out of memory reporting job %s", s_id (self),
                       job->msgid);
            return;
        }
        value = text;
        char shown [200];
        log_info ("jobmanager %s: job %s %s: %s", s_id (self), job->msgid,
                  emqp_status_name (status),
                  emqp_printable (value, value_size, shown, sizeof shown));
    }
    else
        log_debug ("jobmanager %s: job %s ok %s", s_id (self), job->msgid, usage);
    if (!value)
        value = "";

    if (self->state == S_ACTIVE && zlistx_size (self->outbox) == 0) {
        emqp_msg_t *msg = emqp_msg_new (EMQP_DONE);
        if (msg) {
            msg->ref = strdup (job->msgid);
            msg->epoch = job->epoch;
            msg->status = status;
            msg->payload = zframe_new (value, value_size);
            msg->usage = strdup (usage);
        }
        if (msg && msg->ref && msg->payload && msg->usage && s_send (self, &msg) == 0) {
            if (self->router_emq2)
                self->announced++;  // emq/2: the DONE is one free slot
            free (text);
            return;
        }
        emqp_msg_destroy (&msg);    // (s_send took it; what failed is kept below)
    }
    s_done_t *done = calloc (1, sizeof *done);
    if (done) {
        done->ref = strdup (job->msgid);
        done->epoch = job->epoch;
        done->status = status;
        done->usage = strdup (usage);
        if (text) {
            done->value = text;
            text = NULL;
        }
        else
        if ((done->value = malloc (value_size ? value_size : 1)) && value_size)
            memcpy (done->value, value, value_size);
        done->value_size = value_size;
    }
    free (text);
    if (!done || !done->ref || !done->usage || !done->value) {
        void *item = done;
        s_done_destructor (&item);
        log_error ("jobmanager %s: out of memory reporting job %s", s_id (self), job->msgid);
        return;
    }
    zlistx_add_end (self->outbox, done);
    s_flush_outbox (self);
}

//  Reports a job with an error text (one that never reached a worker, or
//  whose worker we killed).
static void
s_report_text (jobmanager_t *self, s_job_t *job, emqp_status_t status, const char *text)
{
    uint64_t wall_us = job->started_ms ? (uint64_t) (s_now_ms () - job->started_ms) * 1000 : 0;
    s_report (self, job, status, text, strlen (text), wall_us, 0, 0);
}

//  --------------------------------------------------------------------------
//  Status

static void
s_visit_pid (pid_t pid, uint64_t jobs, void *arg)
{
    char key [32];
    snprintf (key, sizeof key, "%d", (int) pid);
    json_object_set_new ((json_t *) arg, key, json_integer ((json_int_t) jobs));
}

//  Builds the status object; caller owns it (json_decref).
static json_t *
s_status_json (jobmanager_t *self)
{
    json_t *in_flight = json_object ();
    for (s_job_t *job = zlistx_first (self->running); job; job = zlistx_next (self->running))
        json_object_set_new (in_flight, job->msgid,
                             json_pack ("{s:i, s:s, s:f}", "pid", (json_int_t) job->pid,
                                        "queue", job->queue, "started", job->started_ts));
    //  Jobs waiting here for a worker, and ended ones whose DONE has not
    //  gone out: with jobs_in_flight, every job the router may think we
    //  hold (it requeues one missing from both whose epoch is at most
    //  max_epoch: its REQUEST was lost, not late).
    json_t *held = json_array ();
    for (s_job_t *job = zlistx_first (self->pending); job; job = zlistx_next (self->pending))
        json_array_append_new (held, json_string (job->msgid));
    for (s_done_t *done = zlistx_first (self->outbox); done; done = zlistx_next (self->outbox))
        json_array_append_new (held, json_string (done->ref));
    json_t *distribution = json_object ();
    pool_distribution (self->pool, s_visit_pid, distribution);
    return json_pack ("{s:o, s:o, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}",
                      "jobs_in_flight", in_flight,
                      "jobs_held", held,
                      "max_epoch", (json_int_t) self->max_epoch,
                      "pid_distribution", distribution,
                      "total_requests", (json_int_t) self->total_requests,
                      "total_ready_sent", (json_int_t) self->total_ready_sent,
                      "total_returned", (json_int_t) self->total_returned,
                      "slots_announced", (json_int_t) self->announced,
                      "workers", (json_int_t) pool_live (self->pool),
                      "idle_workers", (json_int_t) pool_count (self->pool, POOL_IDLE),
                      "queued_locally", (json_int_t) zlistx_size (self->pending),
                      "state", self->draining ? "draining" : s_state_names [self->state]);
}

static void
s_log_status (jobmanager_t *self)
{
    json_t *status = s_status_json (self);
    if (!status)
        return;
    char *in_flight = json_dumps (json_object_get (status, "jobs_in_flight"), JSON_COMPACT);
    char *distribution = json_dumps (json_object_get (status, "pid_distribution"),
                                     JSON_COMPACT);
    log_info ("jobmanager %s: status jobs_in_flight=%s pid_distribution=%s "
              "total_requests=%" PRIu64 " total_ready_sent=%" PRIu64 " total_returned=%"
              PRIu64 " workers=%zu idle=%zu queued_locally=%zu", s_id (self),
              in_flight ? in_flight : "?", distribution ? distribution : "?",
              self->total_requests, self->total_ready_sent, self->total_returned,
              pool_live (self->pool),
              pool_count (self->pool, POOL_IDLE), zlistx_size (self->pending));
    free (in_flight);
    free (distribution);
    json_decref (status);
}

static void
s_send_heartbeat (jobmanager_t *self)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_HEARTBEAT);
    if (!msg)
        return;
    msg->heartbeat_ts = zclock_time () / 1000.0;
    json_t *status = s_status_json (self);
    char *stats = status ? json_dumps (status, JSON_COMPACT) : NULL;
    json_decref (status);
    if (stats && strlen (stats) <= EMQP_STATS_MAX)
        msg->stats = stats;
    else
        free (stats);
    s_send (self, &msg);
    self->last_heartbeat_ms = s_now_ms ();
}

//  --------------------------------------------------------------------------
//  Workers

static int s_on_worker (zloop_t *loop, zmq_pollitem_t *item, void *arg);

static pool_worker_t *
s_spawn (jobmanager_t *self)
{
    pool_worker_t *worker = pool_spawn (self->pool);
    if (!worker) {
        log_error ("jobmanager %s: cannot start a worker: %s", s_id (self), strerror (errno));
        return NULL;
    }
    zmq_pollitem_t item = { NULL, worker->fd, ZMQ_POLLIN, 0 };
    if (zloop_poller (self->loop, &item, s_on_worker, self)) {
        log_error ("jobmanager %s: cannot watch worker %d", s_id (self), (int) worker->pid);
        pool_kill (self->pool, worker, SIGKILL);
        pool_close (self->pool, worker);
        return NULL;
    }
    zloop_poller_set_tolerant (self->loop, &item);
    log_debug ("jobmanager %s: worker %d started", s_id (self), (int) worker->pid);
    return worker;
}

//  Stops watching a worker's pipe and closes it (the worker leaves at EOF).
static void
s_worker_close (jobmanager_t *self, pool_worker_t *worker)
{
    if (worker->fd >= 0) {
        zmq_pollitem_t item = { NULL, worker->fd, ZMQ_POLLIN, 0 };
        zloop_poller_end (self->loop, &item);
    }
    pool_close (self->pool, worker);
}

//  Takes an idle worker out of service (s_settle sees the slot go).
static void
s_retire_idle (jobmanager_t *self, pool_worker_t *worker)
{
    assert (worker->state == POOL_IDLE);
    s_worker_close (self, worker);
}

//  The worker broke its pipe or its protocol: kill it; its job (if any) is
//  reported when it is reaped.
static void
s_worker_broken (jobmanager_t *self, pool_worker_t *worker, const char *reason)
{
    log_warning ("jobmanager %s: worker %d %s: %s", s_id (self), (int) worker->pid,
                 pool_state_name (worker->state), reason);
    s_job_t *job = worker->job;
    if (job && !job->crash_reason) {
        char text [600];
        snprintf (text, sizeof text, "worker pid %d failed: %s", (int) worker->pid, reason);
        job->crash_reason = strdup (text);
    }
    if (job)
        self->replace_due = true;   // its DONE counted as a slot (see s_balance)
    pool_kill (self->pool, worker, SIGKILL);
    s_worker_close (self, worker);
}

//  Removes a running job from the books (after it was reported).
static void
s_job_forget (jobmanager_t *self, s_job_t *job)
{
    zlistx_delete (self->running, job->handle);
}

static void
s_on_outcome (jobmanager_t *self, pool_worker_t *worker, wire_msg_t *outcome)
{
    s_job_t *job = worker->job;
    if (worker->state != POOL_BUSY || !job) {
        s_worker_broken (self, worker, "sent an outcome without a job");
        return;
    }
    s_report (self, job, outcome->status, outcome->value, outcome->value_size,
              outcome->wall_us, outcome->cpu_us, outcome->maxrss_kb);
    s_job_forget (self, job);
    pool_job_done (self->pool, worker);

    //  The DONE counted as this worker's READY. If the worker goes, the
    //  router now counts one slot too many: its replacement's HELLO then
    //  brings no READY (s_settle).
    if (outcome->retiring) {
        //  The worker exits by itself now (max_job_count or max RSS).
        log_info ("jobmanager %s: worker %d retires after %" PRIu64 " jobs%s", s_id (self),
                  (int) worker->pid, worker->jobs_done,
                  self->wconfig->max_rss_kb && outcome->maxrss_kb > self->wconfig->max_rss_kb
                  ? " (RSS limit)" : "");
        s_worker_close (self, worker);
        if (!self->draining && pool_live (self->pool) < self->concurrent_jobs)
            s_spawn (self);
    }
    else
    if (worker->retiring || worker->generation != pool_generation (self->pool)
    ||  pool_live (self->pool) > self->concurrent_jobs) {
        //  Stale configuration or a shrunk pool: this worker goes; a
        //  replacement if the pool still needs one.
        s_worker_close (self, worker);
        s_replenish (self);
    }
    s_balance (self);
}

static void
s_on_hello (jobmanager_t *self, pool_worker_t *worker, wire_msg_t *hello)
{
    if (worker->state != POOL_STARTING) {
        s_worker_broken (self, worker, "sent HELLO twice");
        return;
    }
    if (hello->error) {
        log_error ("jobmanager %s: worker %d: %s", s_id (self), (int) worker->pid, hello->error);
        s_worker_close (self, worker);
        return;
    }
    worker->state = POOL_IDLE;
    s_balance (self);
}

//  Reads what a worker wrote: outcomes, HELLO, or the end of its pipe.
static void
s_read_worker (jobmanager_t *self, pool_worker_t *worker)
{
    //  Reads once per wake-up (until a whole message is in, for a large
    //  one), then takes what that read brought: reading again would only
    //  say EAGAIN, and the loop calls us again when there is more. Nothing
    //  buffered may stay behind: no wake-up would come for it.
    for (bool first = true; worker->fd >= 0; first = false) {
        wire_msg_t *msg = NULL;
        char err [512];
        int rc = first ? pool_recv (self->pool, worker, &msg, err, sizeof err)
                       : pool_recv_buffered (self->pool, worker, &msg, err, sizeof err);
        if (rc == 0)
            break;
        if (rc < 0) {
            if (rc == -1 && streq (err, "end of file")) {
                //  The worker is exiting (or died): its exit status, when we
                //  reap it, says why; a busy one's job is reported then.
                log_debug ("jobmanager %s: worker %d closed its pipe", s_id (self),
                           (int) worker->pid);
                s_worker_close (self, worker);
            }
            else
                s_worker_broken (self, worker, err);
            break;
        }
        if (msg->type == WIRE_OUTCOME)
            s_on_outcome (self, worker, msg);
        else
        if (msg->type == WIRE_HELLO)
            s_on_hello (self, worker, msg);
        else
            s_worker_broken (self, worker, "sent a JOB message");
        wire_msg_destroy (&msg);
    }
}

static int
s_on_worker (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    jobmanager_t *self = arg;
    pool_worker_t *worker = pool_lookup_fd (self->pool, item->fd);
    if (!worker)
        return 0;               // closed earlier in this loop turn
    s_read_worker (self, worker);
    return 0;
}

static void
s_on_reaped (pool_worker_t *worker, int status, const struct rusage *usage, void *arg)
{
    jobmanager_t *self = arg;
    //  A worker that retires writes its last outcome and exits at once: the
    //  exit can be reaped before the loop has read the pipe. Read it first,
    //  so that outcome counts and the job is not taken for a crash.
    if (worker->job && worker->fd >= 0)
        s_read_worker (self, worker);
    char how [128];
    if (WIFSIGNALED (status)) {
        const char *name = sigabbrev_np (WTERMSIG (status));
        snprintf (how, sizeof how, "signal %d (SIG%s)", WTERMSIG (status), name ? name : "?");
    }
    else
        snprintf (how, sizeof how, "exit status %d", WEXITSTATUS (status));
    s_job_t *job = worker->job;
    if (job) {
        char text [800];
        if (job->crash_reason)
            snprintf (text, sizeof text, "%s (%s)", job->crash_reason, how);
        else
            snprintf (text, sizeof text, "worker pid %d died: %s", (int) worker->pid, how);
        uint64_t cpu_us = (uint64_t) usage->ru_utime.tv_sec * 1000000
                        + (uint64_t) usage->ru_utime.tv_usec
                        + (uint64_t) usage->ru_stime.tv_sec * 1000000
                        + (uint64_t) usage->ru_stime.tv_usec;
        s_report (self, job, EMQP_STATUS_CRASHED, text, strlen (text),
                  (uint64_t) (s_now_ms () - job->started_ms) * 1000, cpu_us,
                  (uint64_t) usage->ru_maxrss);
        worker->job = NULL;
        s_job_forget (self, job);
        self->replace_due = true;
    }
    //  A worker we closed (GONE) was replaced, if needed, when we did; one
    //  that died with a job is replaced at once (s_balance), as its DONE
    //  counted as a free slot; an idle one on the next router HEARTBEAT.
    bool expected = worker->state == POOL_GONE
                 && (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    if (expected)
        log_debug ("jobmanager %s: worker %d left", s_id (self), (int) worker->pid);
    else
        log_info ("jobmanager %s: worker %d ended: %s%s", s_id (self), (int) worker->pid, how,
                  self->draining || worker->state == POOL_GONE ? ""
                  : job ? "; replaced now" : "; replaced on the next router heartbeat");
    if (worker->fd >= 0) {
        zmq_pollitem_t item = { NULL, worker->fd, ZMQ_POLLIN, 0 };
        zloop_poller_end (self->loop, &item);
    }
}

//  Brings the pool back to concurrent_jobs workers (not while stopping).
static void
s_replenish (jobmanager_t *self)
{
    if (self->draining)
        return;
    size_t target = self->concurrent_jobs;
    size_t live = pool_live (self->pool);
    if (live < target)
        log_debug ("jobmanager %s: starting %zu worker(s)", s_id (self), target - live);
    while (live < target && s_spawn (self))
        live++;
}

//  --------------------------------------------------------------------------
//  Jobs

//  Hands the job to a worker. Returns 0, or -1 if the worker broke (the job
//  is then still the caller's).
static int
s_start (jobmanager_t *self, s_job_t *job, pool_worker_t *worker)
{
    //  The message only borrows the job's fields: it is encoded and written
    //  here, never destroyed. (An empty payload still needs a pointer.)
    size_t payload_size = zframe_size (job->payload);
    wire_msg_t msg = {
        .type = WIRE_JOB, .msgid = job->msgid, .queue = job->queue,
        .attempt = job->attempt, .timeout_s = job->timeout_s,
        .payload = payload_size ? (char *) zframe_data (job->payload) : (char *) "",
        .payload_size = payload_size
    };
    int rc = -1;
    job->handle = zlistx_add_end (self->running, job);
    if (job->handle) {
        if (pool_send_job (self->pool, worker, &msg, job) == 0) {
            job->pid = worker->pid;
            job->started_ms = s_now_ms ();
            job->started_ts = zclock_time () / 1000.0;
            job->deadline_ms = job->timeout_s
                             ? job->started_ms + (int64_t) job->timeout_s * 1000 : 0;
            log_debug ("jobmanager %s: job %s queue=%s attempt=%u -> worker %d", s_id (self),
                       job->msgid, job->queue, job->attempt, (int) worker->pid);
            rc = 0;
        }
        else {
            char reason [128];
            snprintf (reason, sizeof reason, "cannot hand over a job: %s", strerror (errno));
            zlistx_detach (self->running, job->handle);
            job->handle = NULL;
            s_worker_broken (self, worker, reason);
        }
    }
    return rc;
}

//  Starts pending jobs on idle workers, oldest first (not while stopping:
//  what waits then is the router's to requeue), then settles the router's
//  count of our free slots.
static void
s_balance (jobmanager_t *self)
{
    s_job_t *job;
    pool_worker_t *worker;
    while (!self->draining && (job = zlistx_first (self->pending))
       &&  (worker = pool_idle (self->pool))) {
        zlistx_detach_cur (self->pending);
        if (s_start (self, job, worker))
            zlistx_add_start (self->pending, job);
    }
    //  A worker lost with its job (crash, timeout, cancel) is replaced now,
    //  not on the next router HEARTBEAT: the job's DONE told the router its
    //  slot is free, and a job it sends for that slot should not wait (or
    //  go back) for want of a worker. A crash loop is bounded by the jobs
    //  (and their retries): a setup hook that fails still waits for a
    //  HEARTBEAT.
    if (self->replace_due) {
        self->replace_due = false;
        s_replenish (self);
    }
    s_settle (self);
}

//  --------------------------------------------------------------------------
//  Held jobs: a job the router prefetched waits in self->pending for a
//  worker. One that waited prefetch_hold_ms goes back to the router
//  (RETURN) so that a long job here does not hold it hostage; the router
//  counts the RETURN as one free slot. Only jobs that came on the current
//  connection, and only while registered: a job from an earlier connection
//  belongs to a dispatch the router requeues (or fences) on its own.
//  One zloop timer, armed for the oldest such job's deadline.

static int s_on_hold (zloop_t *loop, int timer_id, void *arg);

static bool
s_is_returnable (jobmanager_t *self, s_job_t *job)
{
    return job->connection == self->connection;
}

//  The oldest job that may go back: one that came on the current
//  connection, past the first ones in line, which the workers now starting
//  will take (they are not held by long jobs). Leaves the pending list's
//  cursor on it.
static s_job_t *
s_first_held (jobmanager_t *self)
{
    size_t starting = pool_count (self->pool, POOL_STARTING);
    for (s_job_t *job = zlistx_first (self->pending); job; job = zlistx_next (self->pending)) {
        if (starting > 0)
            starting--;
        else
        if (s_is_returnable (self, job))
            return job;
    }
    return NULL;
}

//  Arms the hold timer for the oldest job that may go back, unless armed.
static void
s_hold_arm (jobmanager_t *self)
{
    if (self->hold_timer != -1 || self->hold_ms == 0 || !self->loop
    ||  self->state != S_ACTIVE || !self->router_emq2)
        return;
    s_job_t *job = s_first_held (self);
    if (!job)
        return;
    int64_t delay = job->received_ms + self->hold_ms - s_now_ms ();
    self->hold_timer = zloop_timer (self->loop, delay > 0 ? (size_t) delay : 1, 1, s_on_hold,
                                    self);
}

//  Returns every job that may go back and waited hold_ms or longer. pending
//  is in arrival order: the first one too young ends it.
static void
s_return_held (jobmanager_t *self, int64_t now)
{
    if (self->state != S_ACTIVE || self->hold_ms == 0 || !self->router_emq2)
        return;
    s_job_t *job;
    while ((job = s_first_held (self)) && now - job->received_ms >= self->hold_ms) {
        emqp_msg_t *msg = emqp_msg_new (EMQP_RETURN);
        if (!msg)
            return;
        msg->ref = strdup (job->msgid);
        msg->epoch = job->epoch;
        if (!msg->ref || s_send (self, &msg)) {
            emqp_msg_destroy (&msg);
            return;             // the next check tries again
        }
        self->announced++;
        self->total_returned++;
        log_info ("jobmanager %s: job %s returned to the router after %" PRId64
                  " ms waiting for a worker", s_id (self), job->msgid, now - job->received_ms);
        zlistx_detach_cur (self->pending);
        s_job_destroy (&job);
    }
}

static int
s_on_hold (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    jobmanager_t *self = arg;
    self->hold_timer = -1;      // a one-shot timer, gone after this call
    s_return_held (self, s_now_ms ());
    s_hold_arm (self);
    return 0;
}

static void
s_on_request (jobmanager_t *self, emqp_msg_t *msg)
{
    self->total_requests++;
    self->announced--;          // the router spent a slot (or prefetch room)
    if (msg->epoch > self->max_epoch)
        self->max_epoch = msg->epoch;
    s_job_t *job = calloc (1, sizeof *job);
    if (!job) {
        log_error ("jobmanager %s: out of memory for job %s", s_id (self), msg->msgid);
        return;
    }
    job->msgid = msg->msgid;
    msg->msgid = NULL;
    job->queue = msg->queue;
    msg->queue = NULL;
    job->payload = msg->payload;
    msg->payload = NULL;
    job->epoch = msg->epoch;
    job->attempt = msg->attempt ? msg->attempt : 1;
    job->received_ms = s_now_ms ();
    job->connection = self->connection;
    headers_t headers;
    char err [300];
    if (headers_parse (msg->headers ? msg->headers : "", &headers, err, sizeof err)) {
        log_warning ("jobmanager %s: REQUEST %s: bad headers: %s", s_id (self), job->msgid, err);
        char text [400];
        snprintf (text, sizeof text, "bad headers: %s", err);
        //  Its DONE gives the router the slot back.
        s_report_text (self, job, EMQP_STATUS_REJECTED, text);
        s_job_destroy (&job);
        return;
    }
    job->timeout_s = headers.timeout_s;
    pool_worker_t *worker = self->draining ? NULL : pool_idle (self->pool);
    if (worker && s_start (self, job, worker) == 0)
        return;
    //  Expected when the router prefetches; it runs when a worker frees, or
    //  goes back to the router after prefetch_hold_ms.
    log_debug ("jobmanager %s: REQUEST %s while no worker is free; queued locally "
               "(%zu waiting)", s_id (self), job->msgid, zlistx_size (self->pending) + 1);
    zlistx_add_end (self->pending, job);
    s_hold_arm (self);
    if (worker)
        s_balance (self);       // that worker broke; another may take it
}

//  Kills the workers of jobs past their deadline.
static void
s_check_timeouts (jobmanager_t *self, int64_t now)
{
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool)) {
        s_job_t *job = worker->job;
        if (worker->state != POOL_BUSY || !job || !job->deadline_ms || now < job->deadline_ms)
            continue;
        char text [128];
        snprintf (text, sizeof text, "timed out after %u s", job->timeout_s);
        if (pool_kill (self->pool, worker, SIGKILL))
            log_warning ("jobmanager %s: kill worker %d: %s", s_id (self), (int) worker->pid,
                         strerror (errno));
        s_report (self, job, EMQP_STATUS_TIMEOUT, text, strlen (text),
                  (uint64_t) (now - job->started_ms) * 1000, 0, 0);
        worker->job = NULL;
        s_job_forget (self, job);
        s_worker_close (self, worker);
        self->replace_due = true;
    }
}

//  CANCEL from the router: a job still waiting here is dropped; a running
//  one has its worker's process group killed. Either way DONE says
//  "cancelled"; a killed worker is replaced at once (s_balance).
static void
s_on_cancel (jobmanager_t *self, emqp_msg_t *msg)
{
    for (s_job_t *job = zlistx_first (self->pending); job; job = zlistx_next (self->pending))
        if (streq (job->msgid, msg->ref) && (!msg->epoch || msg->epoch == job->epoch)) {
            zlistx_detach_cur (self->pending);
            log_info ("jobmanager %s: job %s cancelled before it started", s_id (self),
                      job->msgid);
            //  Its DONE gives the router the slot back.
            s_report_text (self, job, EMQP_STATUS_CANCELLED, "cancelled before it started");
            s_job_destroy (&job);
            return;
        }
    int64_t now = s_now_ms ();
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool)) {
        s_job_t *job = worker->job;
        if (worker->state != POOL_BUSY || !job || !streq (job->msgid, msg->ref)
        ||  (msg->epoch && msg->epoch != job->epoch))
            continue;
        if (pool_kill (self->pool, worker, SIGKILL))
            log_warning ("jobmanager %s: kill worker %d: %s", s_id (self), (int) worker->pid,
                         strerror (errno));
        log_info ("jobmanager %s: job %s cancelled; worker %d killed", s_id (self),
                  job->msgid, (int) worker->pid);
        const char *text = "cancelled while running";
        s_report (self, job, EMQP_STATUS_CANCELLED, text, strlen (text),
                  (uint64_t) (now - job->started_ms) * 1000, 0, 0);
        worker->job = NULL;
        s_job_forget (self, job);
        s_worker_close (self, worker);
        self->replace_due = true;
        s_balance (self);
        return;
    }
    log_info ("jobmanager %s: CANCEL for %s: not here (already ended?)", s_id (self), msg->ref);
}

//  --------------------------------------------------------------------------
//  Router connection

static const char *
s_backend_addr (jobmanager_t *self)
{
    size_t failovers = config_list_size (self->config, "backend_failover_addrs");
    size_t index = self->addr_index % (failovers + 1);
    return index == 0 ? config_str (self->config, "backend_addr")
                      : config_list_item (self->config, "backend_failover_addrs", index - 1);
}

static void
s_make_identity (jobmanager_t *self)
{
    char host [128];
    if (gethostname (host, sizeof host))
        strcpy (host, "localhost");
    host [sizeof host - 1] = 0;
    const char *name = config_str (self->config, "name");
    snprintf (self->identity, sizeof self->identity, "%.64s-%.100s-%d-%08x",
              name && *name ? name : "jm", host, (int) getpid (), arc4random ());
}

static int s_on_dealer (zloop_t *loop, zsock_t *reader, void *arg);

static void
s_inform (jobmanager_t *self)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_INFORM);
    if (!msg)
        return;
    emqp_msgid_new (self->inform_msgid);
    msg->msgid = strdup (self->inform_msgid);
    msg->queues = strdup (config_str (self->config, "queues"));
    msg->peer_type = strdup ("worker");
    msg->agent = strdup ("emq/2");
    self->state = S_CONNECTING;
    self->inform_sent_ms = s_now_ms ();
    s_send (self, &msg);
}

//  (Re)creates the socket with a fresh identity and INFORMs. Jobs keep
//  running; their outcomes go out once the new connection is ACKed.
//  Makes sock a CURVE client of the router when curve_server_key is set.
//  Returns 0, or -1 (logged).
static int
s_curve_apply (jobmanager_t *self, zsock_t *sock)
{
    const char *key = config_str (self->config, "curve_server_key");
    if (!key || !*key)
        return 0;
    char reason[512];
    if (curve_client_apply (sock, key, config_str (self->config, "curve_cert"), reason,
                            sizeof reason) == 0)
        return 0;
    log_error ("jobmanager %s: CURVE: %s", s_id (self), reason);
    return -1;
}

static void
s_connect (jobmanager_t *self)
{
    if (self->dealer) {
        zloop_reader_end (self->loop, self->dealer);
        zsock_set_linger (self->dealer, 0);
        zsock_destroy (&self->dealer);
        s_make_identity (self);     // a new connection is a new peer
    }
    //  The new peer starts with no slots at the router; jobs that came on
    //  the old connection are no longer returnable.
    self->connection++;
    self->announced = 0;
    self->max_epoch = 0;
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer) {
        log_error ("jobmanager %s: cannot create a socket: %s", s_id (self), zmq_strerror (errno));
        return;
    }
    zsock_set_identity (self->dealer, self->identity);
    zsock_set_linger (self->dealer, 2000);
    if (s_curve_apply (self, self->dealer)) {
        zsock_destroy (&self->dealer);
        return;
    }
    const char *addr = s_backend_addr (self);
    if (zsock_connect (self->dealer, "%s", addr)) {
        log_error ("jobmanager %s: cannot connect to %s: %s", s_id (self), addr,
                   zmq_strerror (errno));
        zsock_destroy (&self->dealer);
        return;
    }
    if (zloop_reader (self->loop, self->dealer, s_on_dealer, self)) {
        log_error ("jobmanager %s: cannot watch the socket", s_id (self));
        zsock_destroy (&self->dealer);
        return;
    }
    zloop_reader_set_tolerant (self->loop, self->dealer);
    log_info ("jobmanager %s: connecting to %s queues=%s", s_id (self), addr,
              config_str (self->config, "queues"));
    self->last_heard_ms = s_now_ms ();
    s_inform (self);
}

static void
s_on_ack (jobmanager_t *self, emqp_msg_t *msg)
{
    if (self->state != S_CONNECTING || !streq (msg->ref, self->inform_msgid)) {
        log_debug ("jobmanager %s: ACK %s ignored", s_id (self), msg->ref);
        return;
    }
    self->state = S_ACTIVE;
    self->last_heartbeat_ms = s_now_ms ();
    //  What the router understands: an older emq router (no agent in its
    //  ACK) needs a READY after every DONE and knows no RETURN.
    self->router_emq2 = msg->agent && strncmp (msg->agent, "emq/", 4) == 0
                     && atoi (msg->agent + 4) >= 2;
    log_info ("jobmanager %s: registered with the router (%s)", s_id (self),
              self->router_emq2 ? msg->agent : "no emq/2: READY after each DONE");
    //  The router forgot our free slots, not the jobs it prefetched to us
    //  (a fresh peer has neither). Outcomes kept while unregistered go out
    //  first, each one slot; s_settle announces what is still missing.
    if (self->announced > 0)
        self->announced = 0;
    s_flush_outbox (self);
    s_balance (self);
    s_hold_arm (self);
}

//  Starts a graceful stop: no more READY, running jobs get the grace period.
static void
s_drain_start (jobmanager_t *self, const char *reason)
{
    if (self->draining)
        return;
    self->draining = true;
    double grace = config_double (self->config, "kill_grace_period");
    self->drain_deadline_ms = s_now_ms () + s_seconds_ms (grace);
    log_info ("jobmanager %s: stopping (%s): %zu job(s) running, grace period %g s",
              s_id (self), reason, zlistx_size (self->running), grace);
}

static void
s_on_router_message (jobmanager_t *self, emqp_msg_t *msg)
{
    self->last_heard_ms = s_now_ms ();
    switch (msg->command) {
        case EMQP_ACK:
            s_on_ack (self, msg);
            break;
        case EMQP_REQUEST:
            s_on_request (self, msg);
            break;
        case EMQP_HEARTBEAT:
            s_replenish (self);
            break;
        case EMQP_CANCEL:
            s_on_cancel (self, msg);
            break;
        case EMQP_KBYE:
            log_info ("jobmanager %s: router said KBYE; reconnecting", s_id (self));
            self->reconnect_due = true;
            break;
        case EMQP_DISCONNECT:
            s_drain_start (self, "DISCONNECT from the router");
            break;
        case EMQP_ERROR:
            if (streq (msg->error_code, "UNKNOWN_PEER") && self->state == S_ACTIVE) {
                //  The router restarted and does not know us: register again.
                log_info ("jobmanager %s: router does not know us; registering again",
                          s_id (self));
                self->reconnect_due = true;
                break;
            }
            log_warning ("jobmanager %s: router sent ERROR %s for %s: %s", s_id (self),
                         msg->error_code, msg->ref ? msg->ref : "-",
                         msg->error_text ? msg->error_text : "");
            break;
        default:
            log_warning ("jobmanager %s: unexpected %s from the router ignored", s_id (self),
                         emqp_command_name (msg->command));
    }
}

static int
s_on_dealer (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    jobmanager_t *self = arg;
    for (int count = 0; count < S_DRAIN_BATCH && reader == self->dealer; count++) {
        emqp_fault_t fault;
        emqp_msg_t *msg = NULL;
        int rc = emqp_recv (reader, false, &self->limits, &msg, NULL, &fault);
        if (rc == 0)
            break;              // nothing more waiting
        if (rc < 0) {
            self->last_heard_ms = s_now_ms ();
            log_warning ("jobmanager %s: malformed message from the router dropped: %s",
                         s_id (self), fault.text);
            continue;
        }
        log_debug ("jobmanager %s: <- %s %s", s_id (self), emqp_command_name (msg->command),
                   msg->msgid);
        s_on_router_message (self, msg);
        emqp_msg_destroy (&msg);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Configuration

//  Builds the worker configuration from settings. Returns NULL with the
//  reason in err.
static worker_config_t *
s_worker_config (config_t *config, char *err, size_t errlen)
{
    worker_config_t *wconfig = worker_config_new ();
    if (!wconfig) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < config_list_size (config, "plugin_dirs"); i++)
        if (worker_config_add_plugin_dir (wconfig, config_list_item (config, "plugin_dirs", i)))
            goto oom;
    for (size_t i = 0; i < config_list_size (config, "exec_allow"); i++)
        if (worker_config_add_exec_allow (wconfig, config_list_item (config, "exec_allow", i)))
            goto oom;
    static const char *hooks [] = { "setup", "job_entry", "job_exit" };
    for (size_t i = 0; i < 3; i++)
        if (worker_config_set_hook (wconfig, hooks [i], config_str (config, hooks [i]),
                                    err, errlen)) {
            worker_config_destroy (&wconfig);
            return NULL;
        }
    wconfig->max_job_count = (uint64_t) config_int (config, "max_job_count");
    wconfig->max_rss_kb = (uint64_t) config_int (config, "max_worker_rss_kb");
    return wconfig;
oom:
    snprintf (err, errlen, "out of memory");
    worker_config_destroy (&wconfig);
    return NULL;
}

//  Checks the queues JSON: an array of [integer weight, "name"].
static int
s_check_queues (const char *text, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *queues = json_loads (text, 0, &jerr);
    int rc = -1;
    if (!queues)
        snprintf (err, errlen, "queues: '%s' is not JSON: %s", text, jerr.text);
    else
    if (!json_is_array (queues) || json_array_size (queues) == 0)
        snprintf (err, errlen, "queues: '%s' is not a non-empty array", text);
    else {
        size_t index;
        json_t *pair;
        rc = 0;
        json_array_foreach (queues, index, pair) {
            if (!json_is_array (pair) || json_array_size (pair) != 2
            ||  !json_is_integer (json_array_get (pair, 0))
            ||  !json_is_string (json_array_get (pair, 1))
            ||  !*json_string_value (json_array_get (pair, 1))) {
                snprintf (err, errlen, "queues: item %zu of '%s' is not [weight, \"name\"]",
                          index + 1, text);
                rc = -1;
                break;
            }
        }
    }
    json_decref (queues);
    return rc;
}

static void
s_apply_log_level (config_t *config)
{
    log_level_t level;
    if (log_level_parse (config_str (config, "log_level"), &level) == 0)
        log_set_level (level);
}

static bool
s_str_changed (config_t *a, config_t *b, const char *name)
{
    return !streq (config_str (a, name), config_str (b, name));
}

static void
s_reload (jobmanager_t *self)
{
    if (!self->reload) {
        log_warning ("jobmanager %s: SIGHUP: reloading is not available", s_id (self));
        return;
    }
    char err [512];
    config_t *fresh = self->reload (self->reload_arg, err, sizeof err);
    worker_config_t *wconfig = NULL;
    if (fresh && s_check_queues (config_str (fresh, "queues"), err, sizeof err) == 0)
        wconfig = s_worker_config (fresh, err, sizeof err);
    if (!fresh || !wconfig) {
        log_error ("jobmanager %s: SIGHUP: configuration not reloaded: %s", s_id (self), err);
        config_destroy (&fresh);
        return;
    }
    config_t *old = self->config;
    self->config = fresh;
    log_info ("jobmanager %s: SIGHUP: configuration reloaded", s_id (self));
    s_apply_log_level (fresh);
    bool reconnect = s_str_changed (old, fresh, "backend_addr");
    bool reinform = s_str_changed (old, fresh, "queues");
    if (s_str_changed (old, fresh, "log_level"))
        log_info ("jobmanager %s: log_level %s -> %s", s_id (self),
                  config_str (old, "log_level"), config_str (fresh, "log_level"));
    if (reconnect)
        log_info ("jobmanager %s: backend_addr %s -> %s", s_id (self),
                  config_str (old, "backend_addr"), config_str (fresh, "backend_addr"));
    if (reinform)
        log_info ("jobmanager %s: queues %s -> %s", s_id (self),
                  config_str (old, "queues"), config_str (fresh, "queues"));
    int64_t jobs_old = config_int (old, "concurrent_jobs");
    int64_t jobs_new = config_int (fresh, "concurrent_jobs");
    if (jobs_old != jobs_new)
        log_info ("jobmanager %s: concurrent_jobs %" PRId64 " -> %" PRId64, s_id (self),
                  jobs_old, jobs_new);
    self->concurrent_jobs = (size_t) jobs_new;
    if (config_int (old, "prefetch_hold_ms") != config_int (fresh, "prefetch_hold_ms"))
        log_info ("jobmanager %s: prefetch_hold_ms %" PRId64 " -> %" PRId64, s_id (self),
                  config_int (old, "prefetch_hold_ms"), config_int (fresh, "prefetch_hold_ms"));
    self->hold_ms = config_int (fresh, "prefetch_hold_ms");
    static const char *seconds [] = { "heartbeat_interval", "heartbeat_timeout",
                                      "kill_grace_period" };
    for (size_t i = 0; i < 3; i++)
        if (config_double (old, seconds [i]) != config_double (fresh, seconds [i]))
            log_info ("jobmanager %s: %s %g -> %g", s_id (self), seconds [i],
                      config_double (old, seconds [i]), config_double (fresh, seconds [i]));
    config_destroy (&old);
    self->limits.payload_max = (size_t) config_int (fresh, "max_message_size");

    if (!worker_config_equal (wconfig, self->wconfig)) {
        //  New workers get the new settings; idle ones are replaced now, busy
        //  ones when their job ends. (The fork copied the old settings into
        //  every running worker, so the old struct can go.)
        log_info ("jobmanager %s: worker settings changed (plugin dirs, exec allow-list, "
                  "hooks or limits); restarting idle workers", s_id (self));
        pool_set_child_arg (self->pool, wconfig);
        worker_config_destroy (&self->wconfig);
        self->wconfig = wconfig;
        for (pool_worker_t *worker = pool_first (self->pool); worker;
             worker = pool_next (self->pool)) {
            if (worker->state == POOL_IDLE)
                s_retire_idle (self, worker);
            else
            if (worker->state != POOL_GONE)
                worker->retiring = true;
        }
    }
    else
        worker_config_destroy (&wconfig);
    //  A smaller pool: idle workers past the target go now, busy ones later.
    size_t target = (size_t) jobs_new;
    for (pool_worker_t *worker = pool_first (self->pool);
         worker && pool_live (self->pool) > target; worker = pool_next (self->pool))
        if (worker->state == POOL_IDLE)
            s_retire_idle (self, worker);
    s_replenish (self);
    if (reconnect)
        self->reconnect_due = true;
    else
    if (reinform && self->dealer)
        s_inform (self);        // the router forgets our slots; the ACK re-announces
    s_balance (self);
    s_hold_arm (self);
}

//  --------------------------------------------------------------------------
//  Signals and the timer

static void
s_signal_handler (int sig)
{
    int saved = errno;
    unsigned char byte = (unsigned char) sig;
    if (s_signal_pipe [1] >= 0 && write (s_signal_pipe [1], &byte, 1) < 0) {
        //  A full pipe already holds a wake-up; nothing to do.
    }
    errno = saved;
}

void
jobmanager_stop (void)
{
    s_signal_handler (SIGTERM);
}

static int
s_on_signal (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    jobmanager_t *self = arg;
    unsigned char bytes [64];
    ssize_t n = read (item->fd, bytes, sizeof bytes);
    for (ssize_t i = 0; i < n; i++) {
        switch (bytes [i]) {
            case SIGCHLD:
                pool_reap (self->pool, s_on_reaped, self);
                break;
            case SIGTERM:
                s_drain_start (self, "SIGTERM");
                break;
            case SIGINT:
                s_drain_start (self, "SIGINT");
                break;
            case SIGHUP:
                s_reload (self);
                break;
            case SIGUSR1:
                s_log_status (self);
                break;
            default:
                break;
        }
    }
    s_balance (self);
    return 0;
}

//  Ends the drain: reports what is still running as killed, says KBYE.
static void
s_finish (jobmanager_t *self)
{
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool)) {
        s_job_t *job = worker->job;
        if (worker->state == POOL_BUSY && job) {
            pool_kill (self->pool, worker, SIGKILL);
            s_report_text (self, job, EMQP_STATUS_CRASHED, "killed at shutdown");
            worker->job = NULL;
            s_job_forget (self, job);
        }
        s_worker_close (self, worker);
    }
    if (zlistx_size (self->pending))
        log_info ("jobmanager %s: %zu queued job(s) never started; the router requeues them",
                  s_id (self), zlistx_size (self->pending));
    s_flush_outbox (self);
    if (zlistx_size (self->outbox))
        log_warning ("jobmanager %s: %zu outcome(s) could not be sent before leaving",
                     s_id (self), zlistx_size (self->outbox));
    if (self->dealer) {
        emqp_msg_t *kbye = emqp_msg_new (EMQP_KBYE);
        if (kbye)
            s_send (self, &kbye);
    }
    self->finished = true;
    log_info ("jobmanager %s: stopped", s_id (self));
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    jobmanager_t *self = arg;
    int64_t now = s_now_ms ();
    //  Reaping here too covers a SIGCHLD that raced with our handler setup.
    pool_reap (self->pool, s_on_reaped, self);
    s_check_timeouts (self, now);

    int64_t interval_ms = s_seconds_ms (config_double (self->config, "heartbeat_interval"));
    int64_t timeout_ms = s_seconds_ms (config_double (self->config, "heartbeat_timeout"));
    int64_t liveness = config_int (self->config, "heartbeat_liveness");
    if (!self->reconnect_due && now - self->last_heard_ms > timeout_ms * liveness) {
        log_warning ("jobmanager %s: router silent for %.1f s (%" PRId64 " heartbeats missed); "
                     "reconnecting", s_id (self), (now - self->last_heard_ms) / 1000.0, liveness);
        self->reconnect_due = true;
        self->addr_index++;     // try the next failover address, if any
    }
    if (self->reconnect_due && !self->draining) {
        self->reconnect_due = false;
        s_connect (self);
    }
    else
    if (self->state == S_CONNECTING && now - self->inform_sent_ms > timeout_ms) {
        log_debug ("jobmanager %s: no ACK for INFORM; sending it again", s_id (self));
        s_inform (self);
    }
    if (self->state == S_ACTIVE && now - self->last_heartbeat_ms >= interval_ms)
        s_send_heartbeat (self);
    s_flush_outbox (self);
    s_balance (self);
    //  Also here: a signal restarts zloop, which pushes every timer back.
    s_return_held (self, now);
    s_hold_arm (self);

    if (self->draining) {
        //  Jobs still pending are never started now: the router requeues
        //  them when our KBYE removes us.
        if (zlistx_size (self->running) == 0)
            s_finish (self);
        else
        if (now >= self->drain_deadline_ms) {
            log_warning ("jobmanager %s: grace period over; killing %zu job(s)", s_id (self),
                         zlistx_size (self->running));
            s_finish (self);
        }
    }
    return self->finished ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  The object

static void
s_worker_child (int fd, pid_t parent, void *arg)
{
    worker_main (fd, parent, (const worker_config_t *) arg);
}

jobmanager_t *
jobmanager_new (config_t **config_p, char *err, size_t errlen)
{
    assert (config_p && *config_p);
    jobmanager_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        config_destroy (config_p);
        return NULL;
    }
    self->config = *config_p;
    *config_p = NULL;
    if (s_check_queues (config_str (self->config, "queues"), err, errlen))
        goto fail;
    //  Bad CURVE keys are said now, not at each reconnect.
    const char *curve_key = config_str (self->config, "curve_server_key");
    char reason[512];
    if (*curve_key && curve_client_check (curve_key, config_str (self->config, "curve_cert"),
                                          reason, sizeof reason)) {
        snprintf (err, errlen, "CURVE: %s", reason);
        goto fail;
    }
    if (!(self->wconfig = s_worker_config (self->config, err, errlen)))
        goto fail;
    self->pool = pool_new (s_worker_child, self->wconfig);
    self->pending = zlistx_new ();
    self->running = zlistx_new ();
    self->outbox = zlistx_new ();
    if (!self->pool || !self->pending || !self->running || !self->outbox) {
        snprintf (err, errlen, "out of memory");
        goto fail;
    }
    zlistx_set_destructor (self->pending, s_job_destructor);
    zlistx_set_destructor (self->running, s_job_destructor);
    zlistx_set_destructor (self->outbox, s_done_destructor);
    self->limits.payload_max = (size_t) config_int (self->config, "max_message_size");
    self->concurrent_jobs = (size_t) config_int (self->config, "concurrent_jobs");
    self->hold_ms = config_int (self->config, "prefetch_hold_ms");
    self->hold_timer = -1;
    s_make_identity (self);
    return self;
fail:
    jobmanager_destroy (&self);
    return NULL;
}

void
jobmanager_destroy (jobmanager_t **self_p)
{
    assert (self_p);
    jobmanager_t *self = *self_p;
    if (!self)
        return;
    //  Workers first: their records borrow jobs from the lists below.
    pool_destroy (&self->pool);
    zlistx_destroy (&self->pending);
    zlistx_destroy (&self->running);
    zlistx_destroy (&self->outbox);
    zsock_destroy (&self->dealer);
    zloop_destroy (&self->loop);
    worker_config_destroy (&self->wconfig);
    config_destroy (&self->config);
    free (self);
    *self_p = NULL;
}

void
jobmanager_set_reload (jobmanager_t *self, jobmanager_reload_fn *fn, void *arg)
{
    assert (self);
    self->reload = fn;
    self->reload_arg = arg;
}

//  Waits up to timeout_ms for closed workers to leave, reaping them.
static void
s_wait_workers (jobmanager_t *self, int64_t timeout_ms)
{
    int64_t deadline = s_now_ms () + timeout_ms;
    while (pool_size (self->pool) > 0 && s_now_ms () < deadline) {
        pool_reap (self->pool, s_on_reaped, self);
        if (pool_size (self->pool) > 0)
            zclock_sleep (10);
    }
}

int
jobmanager_run (jobmanager_t *self)
{
    assert (self);
    static const int signals [] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
    struct sigaction saved [5], saved_pipe;
    int rc = 1;
    if (pipe2 (s_signal_pipe, O_CLOEXEC | O_NONBLOCK)) {
        log_error ("jobmanager: pipe: %s", strerror (errno));
        return 1;
    }
    struct sigaction action = { .sa_handler = s_signal_handler, .sa_flags = SA_RESTART };
    sigemptyset (&action.sa_mask);
    for (size_t i = 0; i < 5; i++)
        sigaction (signals [i], &action, &saved [i]);
    struct sigaction ignore = { .sa_handler = SIG_IGN };
    sigemptyset (&ignore.sa_mask);
    sigaction (SIGPIPE, &ignore, &saved_pipe);

    self->loop = zloop_new ();
    if (!self->loop) {
        log_error ("jobmanager: cannot create the event loop");
        goto done;
    }
    //  Our own handlers decide when to stop, not czmq's interrupt flag.
    zloop_set_nonstop (self->loop, true);
    zmq_pollitem_t signal_item = { NULL, s_signal_pipe [0], ZMQ_POLLIN, 0 };
    if (zloop_poller (self->loop, &signal_item, s_on_signal, self) == -1
    ||  zloop_timer (self->loop, S_TICK_MS, 0, s_on_tick, self) == -1) {
        log_error ("jobmanager: cannot set up the event loop");
        goto done;
    }
    s_apply_log_level (self->config);
    s_replenish (self);
    if (pool_live (self->pool) == 0) {
        log_error ("jobmanager %s: no worker could be started", s_id (self));
        goto done;
    }
    s_connect (self);
    if (!self->dealer)
        goto done;
    //  zloop_start returns 0 when poll() is interrupted, which every signal
    //  does (SA_RESTART does not restart poll): go on unless a handler ended
    //  the loop (-1) or the error was not an interruption.
    while (!self->finished) {
        errno = 0;
        if (zloop_start (self->loop) == -1 || self->finished)
            break;
        if (errno != EINTR) {
            log_error ("jobmanager %s: event loop failed: %s", s_id (self),
                       zmq_strerror (errno));
            break;
        }
    }
    rc = self->finished ? 0 : 1;

done:
    //  Closed pipes make idle workers leave; the rest are killed.
    if (self->pool) {
        for (pool_worker_t *worker = pool_first (self->pool); worker;
             worker = pool_next (self->pool))
            pool_close (self->pool, worker);
        s_wait_workers (self, 1000);
    }
    for (size_t i = 0; i < 5; i++)
        sigaction (signals [i], &saved [i], NULL);
    sigaction (SIGPIPE, &saved_pipe, NULL);
    close (s_signal_pipe [0]);
    close (s_signal_pipe [1]);
    s_signal_pipe [0] = s_signal_pipe [1] = -1;
    return rc;
}

//  --------------------------------------------------------------------------
//  Self test: a job manager in a thread against a fake router in the test.

#define S_CHECK(expr) do { \
    emq_test_checks++; \
    if (!(expr)) { \
        TESTUTIL_FAIL_ ("CHECK failed: %s", #expr); \
        goto cleanup; \
    } \
} while (0)

#include <pthread.h>

typedef struct {
    jobmanager_t *jm;
    int rc;
} s_runner_t;

static void *
s_runner (void *arg)
{
    s_runner_t *runner = arg;
    runner->rc = jobmanager_run (runner->jm);
    return NULL;
}

//  Receives one message from the job manager (timeout_ms at most, NULL
//  if none came), skipping HEARTBEATs unless wanted.
static emqp_msg_t *
s_test_recv_ms (zsock_t *router, bool heartbeats, int timeout_ms)
{
    zpoller_t *poller = zpoller_new (router, NULL);
    emqp_msg_t *msg = NULL;
    int64_t deadline = zclock_mono () + timeout_ms;
    while (!msg && zclock_mono () < deadline) {
        if (!zpoller_wait (poller, 20))
            continue;
        zmsg_t *zmsg = zmsg_recv (router);
        char err [256];
        msg = emqp_decode (&zmsg, true, NULL, NULL, err, sizeof err);
        if (msg && msg->command == EMQP_HEARTBEAT && !heartbeats)
            emqp_msg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    return msg;
}

static emqp_msg_t *
s_test_recv (zsock_t *router, bool heartbeats)
{
    return s_test_recv_ms (router, heartbeats, 5000);
}

//  Sends an exec REQUEST for argv with optional headers.
static void
s_test_request (zsock_t *router, zframe_t *identity, const char *msgid, char **argv,
                const char *headers, uint64_t epoch)
{
    payload_t payload = { .kind = PAYLOAD_EXEC, .argv = argv };
    while (argv [payload.argc])
        payload.argc++;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    payload_encode (&payload, &sbuf);
    emqp_msg_t *msg = emqp_msg_new (EMQP_REQUEST);
    msg->identity = zframe_dup (identity);
    msg->msgid = strdup (msgid);
    msg->queue = strdup ("default");
    msg->headers = strdup (headers);
    msg->payload = zframe_new (sbuf.data, sbuf.size);
    msg->epoch = epoch;
    msg->attempt = 1;
    msgpack_sbuffer_destroy (&sbuf);
    emqp_send (&msg, router);
}

//  The fake router is an emq/2 router unless a test makes it an older one,
//  whose ACK names no agent.
static bool s_test_router_old;

static void
s_test_simple (zsock_t *router, zframe_t *identity, emqp_command_t command, const char *ref)
{
    emqp_msg_t *msg = emqp_msg_new (command);
    msg->identity = zframe_dup (identity);
    if (ref)
        msg->ref = strdup (ref);
    if (command == EMQP_ACK && !s_test_router_old)
        msg->agent = strdup ("emq/2");
    if (command == EMQP_HEARTBEAT)
        msg->heartbeat_ts = zclock_time () / 1000.0;
    emqp_send (&msg, router);
}

//  A job manager in a thread and the fake router it talks to.
typedef struct {
    zsock_t *router;
    jobmanager_t *jm;
    pthread_t thread;
    bool started;
    s_runner_t runner;
    zframe_t *identity;         // the job manager's, from its INFORM
    config_t *reload;           // what SIGHUP loads, when set
} s_fake_t;

static config_t *
s_fake_reload (void *arg, char *err, size_t errlen)
{
    (void) err;
    (void) errlen;
    s_fake_t *fake = arg;
    config_t *config = fake->reload;
    fake->reload = NULL;
    return config;
}

//  Builds a test configuration for a job manager connecting to port:
//  defaults for the tests, then the NULL-terminated name/value pairs.
static config_t *
s_fake_config (int port, const char *const *settings, bool verbose)
{
    config_t *config = config_new ();
    if (!config)
        return NULL;
    char err [256], addr [64];
    snprintf (addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    const char *defaults [] = {
        "backend_addr", addr, "concurrent_jobs", "2", "heartbeat_interval", "0.2",
        "heartbeat_timeout", "2", "exec_allow", "/bin/*", "kill_grace_period", "5",
        "log_level", verbose ? "debug" : "error", NULL
    };
    for (size_t i = 0; defaults [i]; i += 2)
        if (config_set (config, defaults [i], defaults [i + 1], err, sizeof err))
            goto fail;
    for (size_t i = 0; settings && settings [i]; i += 2)
        if (config_set (config, settings [i], settings [i + 1], err, sizeof err))
            goto fail;
    return config;
fail:
    fprintf (stderr, "jobmanager test: %s\n", err);
    config_destroy (&config);
    return NULL;
}

//  Starts a job manager with those settings against a fresh fake router,
//  answers its INFORM and takes the READYs it then sends (expect_ready of
//  them). Returns 0, or -1 (fake_stop cleans up either way).
static int
s_fake_start (s_fake_t *fake, const char *const *settings, int expect_ready, bool verbose)
{
    memset (fake, 0, sizeof *fake);
    fake->router = zsock_new (ZMQ_ROUTER);
    int port = fake->router ? zsock_bind (fake->router, "tcp://127.0.0.1:*") : -1;
    if (port <= 0)
        return -1;
    config_t *config = s_fake_config (port, settings, verbose);
    if (!config)
        return -1;
    char err [256];
    fake->jm = jobmanager_new (&config, err, sizeof err);
    if (!fake->jm)
        return -1;
    jobmanager_set_reload (fake->jm, s_fake_reload, fake);
    fake->runner.jm = fake->jm;
    if (pthread_create (&fake->thread, NULL, s_runner, &fake->runner))
        return -1;
    fake->started = true;
    emqp_msg_t *msg = s_test_recv (fake->router, false);
    bool ok = msg && msg->command == EMQP_INFORM && msg->agent && streq (msg->agent, "emq/2");
    if (ok) {
        fake->identity = zframe_dup (msg->identity);
        s_test_simple (fake->router, fake->identity, EMQP_ACK, msg->msgid);
    }
    emqp_msg_destroy (&msg);
    for (int i = 0; ok && i < expect_ready; i++) {
        msg = s_test_recv (fake->router, false);
        ok = msg && msg->command == EMQP_READY;
        emqp_msg_destroy (&msg);
    }
    return ok ? 0 : -1;
}

//  Stops the job manager (SIGTERM path) and frees everything.
static void
s_fake_stop (s_fake_t *fake)
{
    if (fake->started) {
        jobmanager_stop ();
        pthread_join (fake->thread, NULL);
        fake->started = false;
    }
    zframe_destroy (&fake->identity);
    jobmanager_destroy (&fake->jm);
    config_destroy (&fake->reload);
    zsock_destroy (&fake->router);
}

//  The status the job manager reported in its next HEARTBEAT; caller owns
//  it (json_decref).
static json_t *
s_fake_stats (s_fake_t *fake)
{
    for (int i = 0; i < 50; i++) {
        emqp_msg_t *msg = s_test_recv (fake->router, true);
        if (!msg)
            return NULL;
        json_t *stats = msg->command == EMQP_HEARTBEAT && msg->stats
                      ? json_loads (msg->stats, 0, NULL) : NULL;
        emqp_msg_destroy (&msg);
        if (stats)
            return stats;
    }
    return NULL;
}

static int64_t
s_stat (json_t *stats, const char *key)
{
    return (int64_t) json_integer_value (json_object_get (stats, key));
}

//  Waits for a HEARTBEAT whose stats have key == value (5 s at most);
//  other messages are collected into *seen (commands, counted).
static bool
s_fake_wait_stat (s_fake_t *fake, const char *key, int64_t value, int *seen)
{
    int64_t deadline = zclock_mono () + 5000;
    while (zclock_mono () < deadline) {
        emqp_msg_t *msg = s_test_recv_ms (fake->router, true, 500);
        if (!msg)
            continue;
        if (msg->command != EMQP_HEARTBEAT)
            seen [msg->command]++;
        json_t *stats = msg->command == EMQP_HEARTBEAT && msg->stats
                      ? json_loads (msg->stats, 0, NULL) : NULL;
        emqp_msg_destroy (&msg);
        bool found = stats && s_stat (stats, key) == value;
        json_decref (stats);
        if (found)
            return true;
    }
    return false;
}

//  emq/2 accounting with workers that retire after each job
//  (max_job_count 1): the DONE counts as the slot, so the replacement's
//  HELLO brings no READY, and the router's count stays right.
static void
s_test_retiring (bool verbose)
{
    s_fake_t fake;
    emqp_msg_t *msg = NULL;
    json_t *stats = NULL;
    const char *settings [] = { "concurrent_jobs", "1", "max_job_count", "1", NULL };
    S_CHECK (s_fake_start (&fake, settings, 1, verbose) == 0);
    char *echo [] = { "/bin/echo", "x", NULL };
    for (int round = 0; round < 3; round++) {
        char msgid [32];
        snprintf (msgid, sizeof msgid, "retire-%d", round);
        s_test_request (fake.router, fake.identity, msgid, echo, "", 100 + (uint64_t) round);
        msg = s_test_recv (fake.router, false);
        S_CHECK (msg && msg->command == EMQP_DONE && streq (msg->ref, msgid));
        S_CHECK (msg->status == EMQP_STATUS_OK && msg->epoch == 100 + (uint64_t) round);
        emqp_msg_destroy (&msg);
        //  The replacement comes up (a new pid, idle) without a READY.
        int seen [EMQP_COMMAND_COUNT] = { 0 };
        S_CHECK (s_fake_wait_stat (&fake, "idle_workers", 1, seen));
        S_CHECK (seen [EMQP_READY] == 0);
        msg = s_test_recv_ms (fake.router, false, 300);
        S_CHECK (msg == NULL);
    }
    stats = s_fake_stats (&fake);
    S_CHECK (stats && s_stat (stats, "slots_announced") == 1);
    S_CHECK (s_stat (stats, "total_ready_sent") == 1 && s_stat (stats, "total_requests") == 3);
cleanup:
    json_decref (stats);
    emqp_msg_destroy (&msg);
    s_fake_stop (&fake);
}

//  Prefetch: a job that waits for a worker longer than prefetch_hold_ms
//  goes back with RETURN (ref, epoch), no READY; a pending job cancelled
//  or with bad headers ends with DONE only.
//  A router without emq/2 (its ACK names no agent): READY follows every
//  DONE, and a held job is never returned (the router knows no RETURN).
static void
s_test_old_router (bool verbose)
{
    s_fake_t fake;
    emqp_msg_t *msg = NULL;
    json_t *stats = NULL;
    s_test_router_old = true;
    const char *settings [] = { "concurrent_jobs", "1", "prefetch_hold_ms", "100", NULL };
    S_CHECK (s_fake_start (&fake, settings, 1, verbose) == 0);
    char *nap [] = { "/bin/sleep", "0.5", NULL };
    char *echo [] = { "/bin/echo", "x", NULL };
    s_test_request (fake.router, fake.identity, "first", nap, "", 1);
    s_test_request (fake.router, fake.identity, "second", echo, "", 2);
    //  "second" waits past the hold: not returned; each ends with DONE and
    //  then READY.
    const char *expect [] = { "first", "second" };
    for (int i = 0; i < 2; i++) {
        msg = s_test_recv (fake.router, false);
        S_CHECK (msg && msg->command == EMQP_DONE && streq (msg->ref, expect [i]));
        emqp_msg_destroy (&msg);
        msg = s_test_recv (fake.router, false);
        S_CHECK (msg && msg->command == EMQP_READY);
        emqp_msg_destroy (&msg);
    }
    stats = s_fake_stats (&fake);
    S_CHECK (stats && s_stat (stats, "total_returned") == 0);
    S_CHECK (s_stat (stats, "total_ready_sent") == 3);
cleanup:
    s_test_router_old = false;
    json_decref (stats);
    emqp_msg_destroy (&msg);
    s_fake_stop (&fake);
}

static void
s_test_hold (bool verbose)
{
    s_fake_t fake;
    emqp_msg_t *msg = NULL;
    json_t *stats = NULL;
    const char *settings [] = { "concurrent_jobs", "1", "prefetch_hold_ms", "300", NULL };
    S_CHECK (s_fake_start (&fake, settings, 1, verbose) == 0);
    char *sleeper [] = { "/bin/sleep", "3", NULL };
    char *echo [] = { "/bin/echo", "x", NULL };
    s_test_request (fake.router, fake.identity, "long", sleeper, "", 1);
    //  Bad headers: rejected at once, its DONE gives the slot back.
    s_test_request (fake.router, fake.identity, "bad", echo, "timeout:x", 2);
    msg = s_test_recv (fake.router, false);
    S_CHECK (msg && msg->command == EMQP_DONE && streq (msg->ref, "bad"));
    S_CHECK (msg->status == EMQP_STATUS_REJECTED && msg->epoch == 2);
    emqp_msg_destroy (&msg);
    //  Cancelled while pending: DONE cancelled, nothing else.
    s_test_request (fake.router, fake.identity, "cancel-me", echo, "", 3);
    msg = emqp_msg_new (EMQP_CANCEL);
    msg->identity = zframe_dup (fake.identity);
    msg->ref = strdup ("cancel-me");
    msg->epoch = 3;
    emqp_send (&msg, fake.router);
    msg = s_test_recv (fake.router, false);
    S_CHECK (msg && msg->command == EMQP_DONE && streq (msg->ref, "cancel-me"));
    S_CHECK (msg->status == EMQP_STATUS_CANCELLED);
    emqp_msg_destroy (&msg);
    //  Held: back after about 300 ms.
    int64_t sent = zclock_mono ();
    s_test_request (fake.router, fake.identity, "held", echo, "", 4);
    msg = s_test_recv (fake.router, false);
    int64_t waited = zclock_mono () - sent;
    S_CHECK (msg && msg->command == EMQP_RETURN && streq (msg->ref, "held") && msg->epoch == 4);
    if (waited < 280 || waited > 3000)
        TESTUTIL_FAIL_ ("RETURN after %" PRId64 " ms, expected about 300", waited);
    emqp_msg_destroy (&msg);
    msg = s_test_recv_ms (fake.router, false, 300);
    S_CHECK (msg == NULL);
    stats = s_fake_stats (&fake);
    S_CHECK (stats && s_stat (stats, "total_returned") == 1);
    S_CHECK (s_stat (stats, "queued_locally") == 0 && s_stat (stats, "slots_announced") == 0);
    S_CHECK (s_stat (stats, "total_ready_sent") == 1);
    json_decref (stats);
    stats = NULL;
    //  Two held at once: both back, oldest first; then the long job ends
    //  with its DONE and no READY.
    s_test_request (fake.router, fake.identity, "held-2", echo, "", 5);
    zclock_sleep (50);
    s_test_request (fake.router, fake.identity, "held-3", echo, "", 6);
    msg = s_test_recv (fake.router, false);
    S_CHECK (msg && msg->command == EMQP_RETURN && streq (msg->ref, "held-2"));
    emqp_msg_destroy (&msg);
    msg = s_test_recv (fake.router, false);
    S_CHECK (msg && msg->command == EMQP_RETURN && streq (msg->ref, "held-3"));
    emqp_msg_destroy (&msg);
    msg = s_test_recv (fake.router, false);
    S_CHECK (msg && msg->command == EMQP_DONE && streq (msg->ref, "long"));
    emqp_msg_destroy (&msg);
    msg = s_test_recv_ms (fake.router, false, 300);
    S_CHECK (msg == NULL);
    stats = s_fake_stats (&fake);
    S_CHECK (stats && s_stat (stats, "slots_announced") == 1 && s_stat (stats, "idle_workers") == 1);
cleanup:
    json_decref (stats);
    emqp_msg_destroy (&msg);
    s_fake_stop (&fake);
}

//  Outcomes kept across a reconnect: after the new ACK the flushed DONE
//  counts as a slot, so only the rest is announced with READY. A pending
//  job from the old connection is not returned.
static void
s_test_reconnect (bool verbose)
{
    s_fake_t fake;
    emqp_msg_t *msg = NULL;
    json_t *stats = NULL;
    const char *settings [] = { "concurrent_jobs", "2", "prefetch_hold_ms", "100", NULL };
    S_CHECK (s_fake_start (&fake, settings, 2, verbose) == 0);
    char *nap [] = { "/bin/sleep", "0.5", NULL };
    char *echo [] = { "/bin/echo", "x", NULL };
    s_test_request (fake.router, fake.identity, "nap-1", nap, "", 11);
    s_test_request (fake.router, fake.identity, "nap-2", nap, "", 12);
    s_test_request (fake.router, fake.identity, "queued", echo, "", 13);
    s_test_simple (fake.router, fake.identity, EMQP_KBYE, NULL);
    //  A new identity registers; its DONEs wait for our ACK.
    msg = s_test_recv (fake.router, false);
    S_CHECK (msg && msg->command == EMQP_INFORM && streq (msg->agent, "emq/2"));
    S_CHECK (!zframe_eq (msg->identity, fake.identity));
    zframe_destroy (&fake.identity);
    fake.identity = zframe_dup (msg->identity);
    char inform_id [64];
    snprintf (inform_id, sizeof inform_id, "%s", msg->msgid);
    emqp_msg_destroy (&msg);
    //  nap-1 and nap-2 end, queued runs and ends: three outcomes kept. No
    //  RETURN of queued although it waited past the hold.
    zclock_sleep (900);
    msg = s_test_recv_ms (fake.router, false, 100);
    S_CHECK (msg == NULL || msg->command == EMQP_INFORM);     // INFORM again is fine
    if (msg) {
        snprintf (inform_id, sizeof inform_id, "%s", msg->msgid);
        emqp_msg_destroy (&msg);
    }
    s_test_simple (fake.router, fake.identity, EMQP_ACK, inform_id);
    int done = 0, ready = 0;
    while (done < 3 && (msg = s_test_recv_ms (fake.router, false, 500))) {
        done += msg->command == EMQP_DONE;
        ready += msg->command == EMQP_READY;
        S_CHECK (msg->command == EMQP_DONE || msg->command == EMQP_READY);
        if (msg->command == EMQP_DONE)
            S_CHECK (ready == 0);   // outcomes first
        emqp_msg_destroy (&msg);
    }
    //  2 idle workers - 3 DONEs: nothing to announce, and one slot too
    //  many counted (queued's DONE, a job this registration never sent):
    //  the job manager registers again to reset the router's count.
    S_CHECK (done == 3 && ready == 0);
    msg = s_test_recv (fake.router, false);
    S_CHECK (msg && msg->command == EMQP_INFORM && zframe_eq (msg->identity, fake.identity));
    s_test_simple (fake.router, fake.identity, EMQP_ACK, msg->msgid);
    emqp_msg_destroy (&msg);
    for (int i = 0; i < 2; i++) {
        msg = s_test_recv (fake.router, false);
        S_CHECK (msg && msg->command == EMQP_READY);
        emqp_msg_destroy (&msg);
    }
    msg = s_test_recv_ms (fake.router, false, 300);
    S_CHECK (msg == NULL);
    stats = s_fake_stats (&fake);
    S_CHECK (stats && s_stat (stats, "slots_announced") == 2 && s_stat (stats, "idle_workers") == 2);
    S_CHECK (s_stat (stats, "total_returned") == 0);
cleanup:
    json_decref (stats);
    emqp_msg_destroy (&msg);
    s_fake_stop (&fake);
}

//  A job still waiting when the connection was replaced is not returned
//  on the new one (that registration never sent it): it runs here. Its
//  DONE and that of the job before it count on the new registration,
//  which the job manager then corrects by registering again.
static void
s_test_old_pending (bool verbose)
{
    s_fake_t fake;
    emqp_msg_t *msg = NULL;
    json_t *stats = NULL;
    const char *settings [] = { "concurrent_jobs", "1", "prefetch_hold_ms", "100", NULL };
    S_CHECK (s_fake_start (&fake, settings, 1, verbose) == 0);
    char *nap [] = { "/bin/sleep", "0.6", NULL };
    char *echo [] = { "/bin/echo", "x", NULL };
    s_test_request (fake.router, fake.identity, "long", nap, "", 31);
    s_test_request (fake.router, fake.identity, "old", echo, "", 32);
    s_test_simple (fake.router, fake.identity, EMQP_KBYE, NULL);
    msg = s_test_recv (fake.router, false);
    S_CHECK (msg && msg->command == EMQP_INFORM);
    zframe_destroy (&fake.identity);
    fake.identity = zframe_dup (msg->identity);
    s_test_simple (fake.router, fake.identity, EMQP_ACK, msg->msgid);
    emqp_msg_destroy (&msg);
    //  Registered again while "old" waits: no RETURN of it. "long" ends
    //  (its DONE counts, and its worker takes "old": one slot too many), so
    //  an INFORM resets the count; after its ACK exactly one slot is
    //  announced: "old"'s DONE, or a READY.
    int done = 0, informs = 0, counted = 0;
    while ((msg = s_test_recv_ms (fake.router, false, 700))) {
        S_CHECK (msg->command == EMQP_DONE || msg->command == EMQP_INFORM
              || msg->command == EMQP_READY);
        done += msg->command == EMQP_DONE;
        if (informs && msg->command != EMQP_INFORM)
            counted++;
        if (msg->command == EMQP_INFORM) {
            s_test_simple (fake.router, fake.identity, EMQP_ACK, msg->msgid);
            informs++;
        }
        emqp_msg_destroy (&msg);
    }
    S_CHECK (done == 2 && informs == 1 && counted == 1);
    stats = s_fake_stats (&fake);
    S_CHECK (stats && s_stat (stats, "total_returned") == 0);
    S_CHECK (s_stat (stats, "slots_announced") == 1 && s_stat (stats, "idle_workers") == 1);
cleanup:
    json_decref (stats);
    emqp_msg_destroy (&msg);
    s_fake_stop (&fake);
}

//  SIGHUP shrinks the pool while both workers are busy: both DONEs count,
//  one worker leaves without a replacement, so the job manager registers
//  again (same identity) and announces what it has.
static void
s_test_shrink (bool verbose)
{
    s_fake_t fake;
    emqp_msg_t *msg = NULL;
    json_t *stats = NULL;
    const char *settings [] = { "concurrent_jobs", "2", NULL };
    S_CHECK (s_fake_start (&fake, settings, 2, verbose) == 0);
    char *nap [] = { "/bin/sleep", "0.4", NULL };
    s_test_request (fake.router, fake.identity, "nap-1", nap, "", 21);
    s_test_request (fake.router, fake.identity, "nap-2", nap, "", 22);
    const char *smaller [] = { "concurrent_jobs", "1", NULL };
    fake.reload = s_fake_config (atoi (strrchr (zsock_endpoint (fake.router), ':') + 1),
                                 smaller, verbose);
    S_CHECK (fake.reload);
    zclock_sleep (100);
    S_CHECK (kill (getpid (), SIGHUP) == 0);
    //  Both DONEs, and an INFORM (same identity) after the first; after our
    //  ACK the router must have been told of exactly one free slot: the
    //  DONE sent after the ACK, or else one READY.
    int done = 0, informs = 0, counted = 0;
    while ((msg = s_test_recv_ms (fake.router, false, 600))) {
        S_CHECK (msg->command == EMQP_DONE || msg->command == EMQP_INFORM
              || msg->command == EMQP_READY);
        done += msg->command == EMQP_DONE;
        if (informs && msg->command != EMQP_INFORM)
            counted++;
        if (msg->command == EMQP_INFORM) {
            S_CHECK (zframe_eq (msg->identity, fake.identity));
            s_test_simple (fake.router, fake.identity, EMQP_ACK, msg->msgid);
            informs++;
        }
        emqp_msg_destroy (&msg);
    }
    S_CHECK (done == 2 && informs == 1 && counted == 1);
    stats = s_fake_stats (&fake);
    S_CHECK (stats && s_stat (stats, "slots_announced") == 1);
    S_CHECK (s_stat (stats, "workers") == 1 && s_stat (stats, "idle_workers") == 1);
cleanup:
    json_decref (stats);
    emqp_msg_destroy (&msg);
    s_fake_stop (&fake);
}

void
jobmanager_test (bool verbose)
{
    if (verbose)
        printf (" * jobmanager: ");
    char err [512];
    //  The utilities.
    size_t size;
    char *clean = s_utf8_sanitize ("ok\xff\xc3\xa9\xed\xa0\x80", 8, &size);
    CHECK (clean && streq (clean, "ok\xEF\xBF\xBD\xc3\xa9\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
    free (clean);
    char usage [S_USAGE_MAX];
    s_format_usage (usage, 0, 12, UINT64_MAX);
    CHECK_STREQ (usage, "wall_us=0 cpu_us=12 maxrss_kb=18446744073709551615");
    CHECK (s_check_queues ("[[10,\"default\"],[5,\"b\"]]", err, sizeof err) == 0);
    CHECK (s_check_queues ("[[10]]", err, sizeof err) == -1);
    CHECK (s_check_queues ("{}", err, sizeof err) == -1);
    CHECK (s_check_queues ("[", err, sizeof err) == -1);

    s_fake_t fake;
    emqp_msg_t *msg = NULL;
    S_CHECK (s_fake_start (&fake, NULL, 0, verbose) == 0);
    zsock_t *router = fake.router;
    zframe_t *identity = fake.identity;

    //  INFORM had our extension (s_fake_start checked emq/2); then one
    //  READY per worker.
    for (int i = 0; i < 2; i++) {
        msg = s_test_recv (router, false);
        S_CHECK (msg && msg->command == EMQP_READY);
        emqp_msg_destroy (&msg);
    }

    //  An exec job: DONE ok with stdout, the epoch echoed. The DONE is the
    //  slot: no READY follows.
    char *echo [] = { "/bin/echo", "hi", NULL };
    s_test_request (router, identity, "job-1", echo, "", 7);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_DONE);
    S_CHECK (streq (msg->ref, "job-1") && msg->epoch == 7 && msg->status == EMQP_STATUS_OK);
    S_CHECK (zframe_size (msg->payload) == 5
          && memcmp (zframe_data (msg->payload) + 2, "hi\n", 3) == 0);
    S_CHECK (msg->usage && strstr (msg->usage, "wall_us="));
    emqp_msg_destroy (&msg);
    msg = s_test_recv_ms (router, false, 300);
    S_CHECK (msg == NULL);

    //  A heartbeat carries the status.
    msg = s_test_recv (router, true);
    while (msg && msg->command != EMQP_HEARTBEAT) {
        emqp_msg_destroy (&msg);
        msg = s_test_recv (router, true);
    }
    S_CHECK (msg && msg->stats && strstr (msg->stats, "\"total_requests\":1"));
    S_CHECK (strstr (msg->stats, "pid_distribution"));
    S_CHECK (strstr (msg->stats, "\"slots_announced\":2"));
    S_CHECK (strstr (msg->stats, "\"max_epoch\":7") && strstr (msg->stats, "\"jobs_held\":[]"));
    emqp_msg_destroy (&msg);

    //  A job past its timeout: DONE timeout; its worker is replaced at once,
    //  and that worker's HELLO brings no READY (the DONE already counted).
    char *sleeper [] = { "/bin/sleep", "30", NULL };
    s_test_request (router, identity, "job-2", sleeper, "timeout:1", 8);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_DONE && streq (msg->ref, "job-2"));
    S_CHECK (msg->status == EMQP_STATUS_TIMEOUT);
    S_CHECK (zframe_streq (msg->payload, "timed out after 1 s"));
    emqp_msg_destroy (&msg);
    int seen [EMQP_COMMAND_COUNT] = { 0 };
    S_CHECK (s_fake_wait_stat (&fake, "idle_workers", 2, seen));
    S_CHECK (seen [EMQP_READY] == 0);

    //  A job that is not allowed is rejected by the worker: DONE only.
    char *cat [] = { "/usr/bin/cat", NULL };
    s_test_request (router, identity, "job-3", cat, "", 9);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_DONE && msg->status == EMQP_STATUS_REJECTED);
    emqp_msg_destroy (&msg);
    msg = s_test_recv_ms (router, false, 300);
    S_CHECK (msg == NULL);

    //  Graceful stop with a job running: it finishes, then KBYE; a job that
    //  arrives meanwhile is not started (the router requeues it).
    char *short_sleep [] = { "/bin/sleep", "0.3", NULL };
    s_test_request (router, identity, "job-4", short_sleep, "", 10);
    zclock_sleep (50);
    jobmanager_stop ();
    zclock_sleep (50);
    s_test_request (router, identity, "job-5", echo, "", 11);
    //  job-5 waits, and goes back after the hold (RETURN), or is left to
    //  the router's requeue when we leave.
    bool job_4_done = false;
    while ((msg = s_test_recv (router, false)) && msg->command != EMQP_KBYE) {
        S_CHECK (msg->command == EMQP_DONE || msg->command == EMQP_RETURN);
        if (msg->command == EMQP_DONE) {
            S_CHECK (streq (msg->ref, "job-4") && msg->status == EMQP_STATUS_OK);
            job_4_done = true;
        }
        else
            S_CHECK (streq (msg->ref, "job-5"));
        emqp_msg_destroy (&msg);
    }
    S_CHECK (msg && msg->command == EMQP_KBYE && job_4_done);
    emqp_msg_destroy (&msg);
    pthread_join (fake.thread, NULL);
    fake.started = false;
    CHECK (fake.runner.rc == 0);

cleanup:
    emqp_msg_destroy (&msg);
    s_fake_stop (&fake);
    s_test_retiring (verbose);
    s_test_hold (verbose);
    s_test_old_router (verbose);
    s_test_reconnect (verbose);
    s_test_old_pending (verbose);
    s_test_shrink (verbose);
    if (verbose)
        printf ("OK\n");
}
