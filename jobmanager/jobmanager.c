/*  jobmanager — the eMQP side of emq-jobmanager. See jobmanager.h.

    Ownership: the job manager owns the config, the worker config new
    workers are forked with, the pool (which owns the worker records), the
    socket, and the jobs: pending ones in self->pending, running ones in
    self->running (each running job is also borrowed by its worker record).
    Outcomes waiting to be sent live in self->outbox until the router has
    taken them, so a reconnect never loses one.

    Slot accounting. The router counts our free slots as READYs received
    minus jobs sent. We keep that equal to (idle workers - pending jobs):
    one READY per idle worker after each ACK, one READY per finished job
    whose worker stays, one per new worker once it said HELLO. When a slot
    the router knows about disappears (an idle worker dies or is retired),
    the next READY is skipped instead (self->ready_debt).
*/
#include "jobmanager.h"
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
    size_t ready_debt;              // READYs to skip, see above
    bool draining;                  // stopping: no READY, no new workers
    int64_t drain_deadline_ms;
    bool finished;
    emqp_limits_t limits;
    uint64_t total_requests;
    uint64_t total_ready_sent;
};

//  The self-pipe the signal handlers write to; one job manager runs at a
//  time per process.
static int s_signal_pipe [2] = { -1, -1 };

static void s_connect (jobmanager_t *self);
static void s_inform (jobmanager_t *self);
static void s_dispatch (jobmanager_t *self);
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

static void
s_send_ready (jobmanager_t *self)
{
    if (self->state != S_ACTIVE || self->draining)
        return;
    if (self->ready_debt > 0) {
        self->ready_debt--;
        return;
    }
    emqp_msg_t *msg = emqp_msg_new (EMQP_READY);
    if (msg && s_send (self, &msg) == 0)
        self->total_ready_sent++;
}

//  Sends queued outcomes, oldest first, while the router takes them.
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
        zlistx_delete (self->outbox, zlistx_cursor (self->outbox));
    }
}

//  Queues a DONE for job (and sends it if we can). value is the msgpack
//  result (ok) or error text; the text is made UTF-8-safe.
static void
s_report (jobmanager_t *self, s_job_t *job, emqp_status_t status, const char *value,
          size_t value_size, uint64_t wall_us, uint64_t cpu_us, uint64_t maxrss_kb)
{
    s_done_t *done = calloc (1, sizeof *done);
    char usage [128];
    snprintf (usage, sizeof usage, "wall_us=%" PRIu64 " cpu_us=%" PRIu64 " maxrss_kb=%" PRIu64,
              wall_us, cpu_us, maxrss_kb);
    if (done) {
        done->ref = strdup (job->msgid);
        done->epoch = job->epoch;
        done->status = status;
        done->usage = strdup (usage);
        if (status == EMQP_STATUS_OK) {
            done->value = malloc (value_size ? value_size : 1);
            if (done->value && value_size)
                memcpy (done->value, value, value_size);
            done->value_size = value_size;
        }
        else
            done->value = s_utf8_sanitize (value ? value : "", value ? value_size : 0,
                                           &done->value_size);
    }
    if (!done || !done->ref || !done->usage || !done->value) {
        void *item = done;
        s_done_destructor (&item);
        log_error ("jobmanager %s: out of memory reporting job %s", s_id (self), job->msgid);
        return;
    }
    if (status == EMQP_STATUS_OK)
        log_debug ("jobmanager %s: job %s ok %s", s_id (self), job->msgid, usage);
    else {
        char shown [200];
        log_info ("jobmanager %s: job %s %s: %s", s_id (self), job->msgid,
                  emqp_status_name (status),
                  emqp_printable (done->value, done->value_size, shown, sizeof shown));
    }
    zlistx_add_end (self->outbox, done);
    s_flush_outbox (self);
}

//  Reports a job that never reached a worker (bad headers) and gives the
//  router its slot back.
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
    //  Jobs waiting here for a worker: with jobs_in_flight, every job the
    //  router may think we hold (it requeues one missing from both).
    json_t *held = json_array ();
    for (s_job_t *job = zlistx_first (self->pending); job; job = zlistx_next (self->pending))
        json_array_append_new (held, json_string (job->msgid));
    json_t *distribution = json_object ();
    pool_distribution (self->pool, s_visit_pid, distribution);
    return json_pack ("{s:o, s:o, s:o, s:I, s:I, s:I, s:I, s:I, s:s}",
                      "jobs_in_flight", in_flight,
                      "jobs_held", held,
                      "pid_distribution", distribution,
                      "total_requests", (json_int_t) self->total_requests,
                      "total_ready_sent", (json_int_t) self->total_ready_sent,
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
              "total_requests=%" PRIu64 " total_ready_sent=%" PRIu64
              " workers=%zu idle=%zu queued_locally=%zu", s_id (self),
              in_flight ? in_flight : "?", distribution ? distribution : "?",
              self->total_requests, self->total_ready_sent, pool_live (self->pool),
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

//  Takes an idle worker out of service; the router's slot for it goes.
static void
s_retire_idle (jobmanager_t *self, pool_worker_t *worker)
{
    assert (worker->state == POOL_IDLE);
    if (self->state == S_ACTIVE && !self->draining)
        self->ready_debt++;
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
    if (worker->state == POOL_IDLE && !worker->retiring
    &&  self->state == S_ACTIVE && !self->draining)
        self->ready_debt++;     // its slot was announced
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

    if (outcome->retiring) {
        //  The worker exits by itself now (max_job_count or max RSS).
        log_info ("jobmanager %s: worker %d retires after %" PRIu64 " jobs%s", s_id (self),
                  (int) worker->pid, worker->jobs_done,
                  self->wconfig->max_rss_kb && outcome->maxrss_kb > self->wconfig->max_rss_kb
                  ? " (RSS limit)" : "");
        s_worker_close (self, worker);
        if (!self->draining && pool_live (self->pool) < (size_t) config_int (self->config,
                                                                              "concurrent_jobs"))
            s_spawn (self);
    }
    else
    if (worker->retiring || worker->generation != pool_generation (self->pool)
    ||  pool_live (self->pool) > (size_t) config_int (self->config, "concurrent_jobs")) {
        //  Stale configuration or a shrunk pool: this worker goes, without a
        //  READY; a replacement (if the pool still needs one) says READY.
        s_worker_close (self, worker);
        s_replenish (self);
    }
    else
        s_send_ready (self);
    s_dispatch (self);
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
    if (self->draining) {
        s_dispatch (self);
        return;
    }
    s_send_ready (self);
    s_dispatch (self);
}

//  Reads what a worker wrote: outcomes, HELLO, or the end of its pipe.
static void
s_read_worker (jobmanager_t *self, pool_worker_t *worker)
{
    for (int count = 0; count < 16 && worker->fd >= 0; count++) {
        wire_msg_t *msg = NULL;
        char err [512];
        int rc = pool_recv (self->pool, worker, &msg, err, sizeof err);
        if (rc == 0)
            break;
        if (rc < 0) {
            if (rc == -1 && streq (err, "end of file")) {
                //  The worker is exiting (or died): its exit status, when we
                //  reap it, says why; a busy one's job is reported then.
                log_debug ("jobmanager %s: worker %d closed its pipe", s_id (self),
                           (int) worker->pid);
                if (worker->state == POOL_IDLE && !worker->retiring
                &&  self->state == S_ACTIVE && !self->draining)
                    self->ready_debt++;     // its slot was announced
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
    }
    bool expected = worker->state == POOL_GONE
                 && (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    if (expected)
        log_debug ("jobmanager %s: worker %d left", s_id (self), (int) worker->pid);
    else
        log_info ("jobmanager %s: worker %d ended: %s%s", s_id (self), (int) worker->pid, how,
                  self->draining ? "" : "; replaced on the next router heartbeat");
    //  An idle worker that died by itself took an announced slot with it.
    if (worker->state == POOL_IDLE && !worker->retiring
    &&  self->state == S_ACTIVE && !self->draining)
        self->ready_debt++;
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
    size_t target = (size_t) config_int (self->config, "concurrent_jobs");
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
    wire_msg_t *msg = wire_msg_new (WIRE_JOB);
    if (!msg)
        return -1;
    msg->msgid = strdup (job->msgid);
    msg->queue = strdup (job->queue);
    msg->attempt = job->attempt;
    msg->timeout_s = job->timeout_s;
    int rc = -1;
    if (msg->msgid && msg->queue
    &&  wire_msg_set_bytes (&msg->payload, &msg->payload_size, zframe_data (job->payload),
                            zframe_size (job->payload)) == 0) {
        job->handle = zlistx_add_end (self->running, job);
        if (pool_send_job (self->pool, worker, msg, job) == 0) {
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
    wire_msg_destroy (&msg);
    return rc;
}

//  Starts pending jobs on idle workers, oldest first.
static void
s_dispatch (jobmanager_t *self)
{
    s_job_t *job;
    pool_worker_t *worker;
    while ((job = zlistx_first (self->pending)) && (worker = pool_idle (self->pool))) {
        zlistx_detach_cur (self->pending);
        if (s_start (self, job, worker))
            zlistx_add_start (self->pending, job);
    }
}

static void
s_on_request (jobmanager_t *self, emqp_msg_t *msg)
{
    self->total_requests++;
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
    headers_t headers;
    char err [300];
    if (headers_parse (msg->headers ? msg->headers : "", &headers, err, sizeof err)) {
        log_warning ("jobmanager %s: REQUEST %s: bad headers: %s", s_id (self), job->msgid, err);
        char text [400];
        snprintf (text, sizeof text, "bad headers: %s", err);
        s_report_text (self, job, EMQP_STATUS_REJECTED, text);
        s_job_destroy (&job);
        s_send_ready (self);    // the slot it took is free again
        return;
    }
    job->timeout_s = headers.timeout_s;
    pool_worker_t *worker = pool_idle (self->pool);
    if (worker && s_start (self, job, worker) == 0)
        return;
    //  Expected when the router prefetches; it runs when a worker frees.
    log_debug ("jobmanager %s: REQUEST %s while no worker is free; queued locally "
               "(%zu waiting)", s_id (self), job->msgid, zlistx_size (self->pending) + 1);
    zlistx_add_end (self->pending, job);
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
    }
}

//  CANCEL from the router: a job still waiting here is dropped; a running
//  one has its worker's process group killed. Either way DONE says
//  "cancelled"; a killed worker is replaced on the next router heartbeat.
static void
s_on_cancel (jobmanager_t *self, emqp_msg_t *msg)
{
    for (s_job_t *job = zlistx_first (self->pending); job; job = zlistx_next (self->pending))
        if (streq (job->msgid, msg->ref) && (!msg->epoch || msg->epoch == job->epoch)) {
            zlistx_detach_cur (self->pending);
            log_info ("jobmanager %s: job %s cancelled before it started", s_id (self),
                      job->msgid);
            s_report_text (self, job, EMQP_STATUS_CANCELLED, "cancelled before it started");
            s_job_destroy (&job);
            s_send_ready (self);    // the slot it held is free again
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
    msg->agent = strdup ("emq/1");
    self->state = S_CONNECTING;
    self->inform_sent_ms = s_now_ms ();
    s_send (self, &msg);
}

//  (Re)creates the socket with a fresh identity and INFORMs. Jobs keep
//  running; their outcomes go out once the new connection is ACKed.
static void
s_connect (jobmanager_t *self)
{
    if (self->dealer) {
        zloop_reader_end (self->loop, self->dealer);
        zsock_set_linger (self->dealer, 0);
        zsock_destroy (&self->dealer);
        s_make_identity (self);     // a new connection is a new peer
    }
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer) {
        log_error ("jobmanager %s: cannot create a socket: %s", s_id (self), zmq_strerror (errno));
        return;
    }
    zsock_set_identity (self->dealer, self->identity);
    zsock_set_linger (self->dealer, 2000);
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
    log_info ("jobmanager %s: registered with the router", s_id (self));
    s_flush_outbox (self);
    //  The router starts from zero slots: announce each idle worker that no
    //  pending job will take.
    size_t idle = 0;
    for (pool_worker_t *worker = pool_first (self->pool); worker;
         worker = pool_next (self->pool))
        idle += worker->state == POOL_IDLE && !worker->retiring;
    size_t pending = zlistx_size (self->pending);
    self->ready_debt = pending > idle ? pending - idle : 0;
    for (size_t i = pending; i < idle; i++)
        s_send_ready (self);
    s_dispatch (self);
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
        char err [256];
        emqp_msg_t *msg = NULL;
        int rc = emqp_recv (reader, false, &self->limits, &msg, NULL, err, sizeof err);
        if (rc == 0)
            break;              // nothing more waiting
        if (rc < 0) {
            self->last_heard_ms = s_now_ms ();
            log_warning ("jobmanager %s: malformed message from the router dropped: %s",
                         s_id (self), err);
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
    s_dispatch (self);
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
    s_dispatch (self);

    if (self->draining) {
        if (zlistx_size (self->running) == 0
        &&  (zlistx_size (self->pending) == 0 || pool_live (self->pool) == 0))
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

//  Receives one message from the job manager (5 s at most), skipping
//  HEARTBEATs unless wanted.
static emqp_msg_t *
s_test_recv (zsock_t *router, bool heartbeats)
{
    zpoller_t *poller = zpoller_new (router, NULL);
    emqp_msg_t *msg = NULL;
    int64_t deadline = zclock_mono () + 5000;
    while (!msg && zclock_mono () < deadline) {
        if (!zpoller_wait (poller, 100))
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

static void
s_test_simple (zsock_t *router, zframe_t *identity, emqp_command_t command, const char *ref)
{
    emqp_msg_t *msg = emqp_msg_new (command);
    msg->identity = zframe_dup (identity);
    if (ref)
        msg->ref = strdup (ref);
    if (command == EMQP_HEARTBEAT)
        msg->heartbeat_ts = zclock_time () / 1000.0;
    emqp_send (&msg, router);
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
    CHECK (s_check_queues ("[[10,\"default\"],[5,\"b\"]]", err, sizeof err) == 0);
    CHECK (s_check_queues ("[[10]]", err, sizeof err) == -1);
    CHECK (s_check_queues ("{}", err, sizeof err) == -1);
    CHECK (s_check_queues ("[", err, sizeof err) == -1);

    zsock_t *router = zsock_new (ZMQ_ROUTER);
    jobmanager_t *jm = NULL;
    zframe_t *identity = NULL;
    emqp_msg_t *msg = NULL;
    pthread_t thread;
    bool started = false;
    s_runner_t runner = { 0 };
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    S_CHECK (port > 0);

    config_t *config = config_new ();
    S_CHECK (config);
    char addr [64];
    snprintf (addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    S_CHECK (config_set (config, "backend_addr", addr, err, sizeof err) == 0);
    S_CHECK (config_set (config, "concurrent_jobs", "2", err, sizeof err) == 0);
    S_CHECK (config_set (config, "heartbeat_interval", "0.2", err, sizeof err) == 0);
    S_CHECK (config_set (config, "heartbeat_timeout", "0.5", err, sizeof err) == 0);
    S_CHECK (config_set (config, "exec_allow", "/bin/*", err, sizeof err) == 0);
    S_CHECK (config_set (config, "kill_grace_period", "5", err, sizeof err) == 0);
    S_CHECK (config_set (config, "log_level", verbose ? "debug" : "error", err, sizeof err) == 0);
    jm = jobmanager_new (&config, err, sizeof err);
    S_CHECK (jm && !config);
    runner.jm = jm;
    S_CHECK (pthread_create (&thread, NULL, s_runner, &runner) == 0);
    started = true;

    //  INFORM with our extension, ACK, then one READY per worker.
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_INFORM);
    S_CHECK (streq (msg->peer_type, "worker") && msg->agent && streq (msg->agent, "emq/1"));
    S_CHECK (streq (msg->queues, "[[10,\"default\"]]"));
    identity = zframe_dup (msg->identity);
    s_test_simple (router, identity, EMQP_ACK, msg->msgid);
    emqp_msg_destroy (&msg);
    for (int i = 0; i < 2; i++) {
        msg = s_test_recv (router, false);
        S_CHECK (msg && msg->command == EMQP_READY);
        emqp_msg_destroy (&msg);
    }

    //  An exec job: DONE ok with stdout, the epoch echoed, then READY.
    char *echo [] = { "/bin/echo", "hi", NULL };
    s_test_request (router, identity, "job-1", echo, "", 7);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_DONE);
    S_CHECK (streq (msg->ref, "job-1") && msg->epoch == 7 && msg->status == EMQP_STATUS_OK);
    S_CHECK (zframe_size (msg->payload) == 5
          && memcmp (zframe_data (msg->payload) + 2, "hi\n", 3) == 0);
    S_CHECK (msg->usage && strstr (msg->usage, "wall_us="));
    emqp_msg_destroy (&msg);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_READY);
    emqp_msg_destroy (&msg);

    //  A heartbeat carries the status.
    msg = s_test_recv (router, true);
    while (msg && msg->command != EMQP_HEARTBEAT) {
        emqp_msg_destroy (&msg);
        msg = s_test_recv (router, true);
    }
    S_CHECK (msg && msg->stats && strstr (msg->stats, "\"total_requests\":1"));
    S_CHECK (strstr (msg->stats, "pid_distribution"));
    emqp_msg_destroy (&msg);

    //  A job past its timeout: DONE timeout; its worker is replaced on the
    //  next router HEARTBEAT, whose READY follows.
    char *sleeper [] = { "/bin/sleep", "30", NULL };
    s_test_request (router, identity, "job-2", sleeper, "timeout:1", 8);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_DONE && streq (msg->ref, "job-2"));
    S_CHECK (msg->status == EMQP_STATUS_TIMEOUT);
    S_CHECK (zframe_streq (msg->payload, "timed out after 1 s"));
    emqp_msg_destroy (&msg);
    zclock_sleep (200);
    s_test_simple (router, identity, EMQP_HEARTBEAT, NULL);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_READY);
    emqp_msg_destroy (&msg);

    //  A job that is not allowed is rejected, and the slot comes back.
    char *cat [] = { "/usr/bin/cat", NULL };
    s_test_request (router, identity, "job-3", cat, "", 9);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_DONE && msg->status == EMQP_STATUS_REJECTED);
    emqp_msg_destroy (&msg);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_READY);
    emqp_msg_destroy (&msg);

    //  Graceful stop with a job running: it finishes, then KBYE.
    char *short_sleep [] = { "/bin/sleep", "0.3", NULL };
    s_test_request (router, identity, "job-4", short_sleep, "", 10);
    zclock_sleep (50);
    jobmanager_stop ();
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_DONE && streq (msg->ref, "job-4"));
    S_CHECK (msg->status == EMQP_STATUS_OK);
    emqp_msg_destroy (&msg);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_KBYE);
    emqp_msg_destroy (&msg);
    pthread_join (thread, NULL);
    started = false;
    CHECK (runner.rc == 0);

cleanup:
    if (started) {
        jobmanager_stop ();
        pthread_join (thread, NULL);
    }
    emqp_msg_destroy (&msg);
    zframe_destroy (&identity);
    jobmanager_destroy (&jm);
    zsock_destroy (&router);
    if (verbose)
        printf ("OK\n");
}
