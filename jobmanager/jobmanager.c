/*  jobmanager — the eMQP side of emq-jobmanager. See jobmanager.h.

    Ownership: the job manager owns its settings, the socket, the worker
    table (workers.h: the processes, their pipes and the jobs they run) and
    the held jobs and outcomes (held.h: jobs waiting for a worker, outcomes
    waiting to go out as DONE). It acts on what those two report: every job
    that ends comes back through s_on_ended and leaves as a DONE (or waits
    in the outbox until the router takes it, so a reconnect never loses
    one); a worker that frees up calls s_balance.

    Slot accounting (agent emq/2). The router counts our free slots; for an
    emq/2 job manager every READY, every DONE and every RETURN it receives
    from us while we are registered is one slot more, every REQUEST it
    sends us one less (the router may go below zero by its `prefetch`
    allowance). self->announced is that count as we know it:

        announced = READYs + DONEs + RETURNs sent while registered
                    - REQUESTs received

    and our target is (idle workers that do not retire - held jobs).
    After every event s_settle() sends READYs while announced < target.
    A finished job's DONE is its worker's READY, a rejected or cancelled
    held job's DONE gives back the slot it took, a RETURN gives back a
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
#include "clock.h"
#include "curve.h"
#include "emqp.h"
#include "headers.h"
#include "held.h"
#include "log.h"
#include "service.h"
#include "workers.h"
#include "tests/testutil.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_TICK_MS 50
#define S_DRAIN_BATCH 100

typedef enum {
    S_CONNECTING = 0,  // INFORM sent, waiting for its ACK
    S_ACTIVE           // ACKed: READY, REQUEST, HEARTBEAT flow
} s_state_t;

static const char *s_state_names[] = { "connecting", "active" };

struct jobmanager_t {
    jobmanager_settings_t *settings;  // current settings (owned; their worker
                                      // configuration went to the workers)
    jobmanager_reload_fn *reload;
    void *reload_arg;
    workers_t *workers;  // the worker processes and what they run
    held_t *held;        // jobs waiting for a worker, outcomes to send
    zloop_t *loop;
    zsock_t *dealer;  // to the router's backend
    char identity[256];
    size_t addr_index;  // into backend_addr + backend_failover_addrs
    s_state_t state;
    char inform_msgid[37];  // the INFORM whose ACK we wait for
    int64_t inform_sent_ms;
    int64_t last_heard_ms;      // anything from the router
    int64_t last_heartbeat_ms;  // our last HEARTBEAT
    bool reconnect_due;         // set by handlers, done by the timer
    int64_t announced;          // the router's count of our free slots, see above
    bool router_batches;        // its ACK said emq/3: it takes BATCH, so
                                // outcomes go out together (s_flush_soon)
    int flush_timer;            // zloop timer of that flush, -1: none
    bool router_emq2;           // its ACK said emq/2: DONE and RETURN free
                                // slots there; else READY follows a DONE
                                // and nothing is returned (older routers)
    uint64_t connection;        // bumped with every new socket (identity)
    int hold_timer;             // zloop timer of the oldest held job, -1: none
    bool draining;              // stopping: no READY, no new workers
    int64_t drain_deadline_ms;
    bool finished;
    emqp_limits_t limits;
    uint64_t total_requests;
    uint64_t total_ready_sent;
    uint64_t total_returned;
    uint64_t max_epoch;  // highest dispatch epoch received on this connection
};

//  The self-pipe the signal handlers write to; one job manager runs at a
//  time per process.
static int s_signal_pipe[2] = { -1, -1 };

static void s_connect (jobmanager_t *self);
static void s_inform (jobmanager_t *self);
static void s_balance (jobmanager_t *self);
static void s_hold_arm (jobmanager_t *self);

//  --------------------------------------------------------------------------
//  Small helpers

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
        unsigned char c = p[i];
        size_t len = c < 0x80         ? 1
                     : (c >> 5) == 6  ? 2
                     : (c >> 4) == 14 ? 3
                     : (c >> 3) == 30 ? 4
                                      : 0;
        bool valid = len > 0 && i + len <= size && c != 0;
        for (size_t k = 1; valid && k < len; k++)
            valid = (p[i + k] & 0xC0) == 0x80;
        if (valid && len > 1) {
            //  Reject overlong forms, surrogates and code points past U+10FFFF.
            uint32_t cp =
                len == 2 ? (uint32_t) (c & 0x1F) << 6 | (p[i + 1] & 0x3F)
                : len == 3
                    ? (uint32_t) (c & 0x0F) << 12 | (uint32_t) (p[i + 1] & 0x3F) << 6
                          | (p[i + 2] & 0x3F)
                    : (uint32_t) (c & 0x07) << 18 | (uint32_t) (p[i + 1] & 0x3F) << 12
                          | (uint32_t) (p[i + 2] & 0x3F) << 6 | (p[i + 3] & 0x3F);
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
    out[o] = 0;
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
//  not retire - held jobs) with READYs; see "Slot accounting" above.
//  Nothing while unregistered or stopping.
static void
s_settle (jobmanager_t *self)
{
    if (self->state != S_ACTIVE || self->draining)
        return;
    //  Each outcome not yet sent frees a slot at the router when it goes
    //  (emq/2): announcing its worker now as well would count it twice.
    int64_t target = (int64_t) workers_ready (self->workers)
                     - (int64_t) held_size (self->held)
                     - (int64_t) workers_queued (self->workers)
                     - (self->router_emq2 ? (int64_t) held_outcomes (self->held) : 0);
    while (self->announced < target) {
        emqp_msg_t *msg = emqp_msg_new (EMQP_READY);
        if (!msg || s_send (self, &msg))
            return;  // the next event or tick tries again
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
    int64_t absorbed = (int64_t) workers_coming (self->workers);
    if (self->announced > target + absorbed && self->announced > 0
        && clock_mono_ms () - self->inform_sent_ms >= 100) {
        log_info ("jobmanager %s: the router counts %" PRId64
                  " free slot(s), we have %" PRId64
                  "; registering again to reset its count",
                  s_id (self), self->announced, target);
        s_inform (self);
    }
}

//  Sends a DONE; returns 0, or -1 (nothing sent). emq/2: each DONE is one
//  free slot more for the router.
static int
s_send_done (jobmanager_t *self, const char *ref, uint64_t epoch, emqp_status_t status,
             const char *value, size_t value_size, const char *usage)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_DONE);
    if (!msg)
        return -1;
    msg->ref = strdup (ref);
    msg->epoch = epoch;
    msg->status = status;
    msg->payload = zframe_new (value, value_size);
    msg->usage = strdup (usage);
    if (!msg->ref || !msg->payload || !msg->usage || s_send (self, &msg)) {
        emqp_msg_destroy (&msg);  // (s_send took it when it failed)
        return -1;
    }
    if (self->router_emq2)
        self->announced++;
    return 0;
}

//  Sends up to EMQP_BATCH_MAX kept outcomes as one BATCH; returns how many
//  went out (0: none, or the send failed: they stay kept).
static size_t
s_send_done_batch (jobmanager_t *self)
{
    emqp_batch_t *batch = emqp_batch_new ();
    if (!batch || !self->dealer) {
        emqp_batch_destroy (&batch);
        return 0;
    }
    size_t count = 0;
    for (const held_outcome_t *kept = held_outcome_first (self->held);
         kept && !emqp_batch_full (batch); kept = held_outcome_next (self->held)) {
        emqp_msg_t *msg = emqp_msg_new (EMQP_DONE);
        if (!msg)
            break;
        msg->ref = strdup (kept->ref);
        msg->epoch = kept->epoch;
        msg->status = kept->status;
        msg->payload = zframe_new (kept->value, kept->value_size);
        msg->usage = strdup (kept->usage);
        bool large = !emqp_batch_takes (msg);
        if (large && count > 0) {
            emqp_msg_destroy (&msg);
            break;  // a large one goes alone
        }
        if (!msg->ref || !msg->payload || !msg->usage || emqp_batch_add (batch, &msg)) {
            emqp_msg_destroy (&msg);
            break;
        }
        count++;
        if (large)
            break;
    }
    int rc = emqp_batch_send (batch, self->dealer, NULL);
    emqp_batch_destroy (&batch);
    if (rc) {
        log_debug ("jobmanager %s: could not send %zu DONE(s): %s", s_id (self), count,
                   strerror (errno));
        return 0;
    }
    for (size_t i = 0; i < count; i++)
        held_sent (self->held);
    if (self->router_emq2)
        self->announced += (int64_t) count;
    return count;
}

static void s_flush_outbox (jobmanager_t *self);

static int
s_on_flush (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    jobmanager_t *self = arg;
    self->flush_timer = -1;
    s_flush_outbox (self);
    return 0;
}

//  Flushes the outbox at the start of the next loop turn (a timer due at
//  once: zloop runs timers before readers), so that the outcomes of every
//  worker pipe ready in this turn share one BATCH. Nothing waits longer.
static void
s_flush_soon (jobmanager_t *self)
{
    if (self->flush_timer != -1 || !self->loop)
        return;
    self->flush_timer = zloop_timer (self->loop, 0, 1, s_on_flush, self);
    if (self->flush_timer == -1)
        s_flush_outbox (self);
}

//  Sends kept outcomes, oldest first, while the router takes them.
static void
s_flush_outbox (jobmanager_t *self)
{
    if (self->state != S_ACTIVE)
        return;
    if (self->router_batches) {
        while (held_outcomes (self->held) > 0)
            if (s_send_done_batch (self) == 0)
                return;  // try again on the next tick
        return;
    }
    const held_outcome_t *kept;
    while ((kept = held_outcome_first (self->held))) {
        if (s_send_done (self, kept->ref, kept->epoch, kept->status, kept->value,
                         kept->value_size, kept->usage))
            return;  // try again on the next tick
        held_sent (self->held);
    }
}

//  Writes v in decimal at p; returns the end.
static char *
s_put_u64 (char *p, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char) ('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = digits[--n];
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
//  takes it). The outcome's value is the msgpack result (ok) or the error
//  text, which is made UTF-8-safe.
static void
s_report (jobmanager_t *self, const jm_job_t *job, const jm_outcome_t *outcome)
{
    char usage[S_USAGE_MAX];
    s_format_usage (usage, outcome->wall_us, outcome->cpu_us, outcome->maxrss_kb);
    const char *value = outcome->value;
    size_t value_size = outcome->value_size;
    char *text = NULL;
    if (outcome->status != EMQP_STATUS_OK) {
        text = s_utf8_sanitize (value ? value : "", value ? value_size : 0, &value_size);
        if (!text) {
            log_error ("jobmanager %s: out of memory reporting job %s", s_id (self),
                       job->msgid);
            return;
        }
        value = text;
        char shown[200];
        log_info ("jobmanager %s: job %s %s: %s", s_id (self), job->msgid,
                  emqp_status_name (outcome->status),
                  emqp_printable (value, value_size, shown, sizeof shown));
    }
    else
        log_debug ("jobmanager %s: job %s ok %s", s_id (self), job->msgid, usage);
    if (!value)
        value = "";

    //  To an emq/3 router outcomes go out together, at the start of the
    //  next loop turn: what this turn's workers finished, in one BATCH.
    bool sent = self->state == S_ACTIVE && held_outcomes (self->held) == 0
                && !self->router_batches
                && s_send_done (self, job->msgid, job->epoch, outcome->status, value,
                                value_size, usage)
                       == 0;
    if (!sent && self->router_batches && self->state == S_ACTIVE) {
        if (held_keep_outcome (self->held, job->msgid, job->epoch, outcome->status, value,
                               value_size, usage)
            == 0)
            s_flush_soon (self);
        else
            log_error ("jobmanager %s: out of memory reporting job %s", s_id (self),
                       job->msgid);
        free (text);
        return;
    }
    if (!sent) {
        if (held_keep_outcome (self->held, job->msgid, job->epoch, outcome->status, value,
                               value_size, usage)
            == 0)
            s_flush_outbox (self);
        else
            log_error ("jobmanager %s: out of memory reporting job %s", s_id (self),
                       job->msgid);
    }
    free (text);
}

//  Reports a job with an error text (one that never reached a worker).
static void
s_report_text (jobmanager_t *self, const jm_job_t *job, emqp_status_t status,
               const char *text)
{
    jm_outcome_t outcome = { .status = status,
                             .value = text,
                             .value_size = strlen (text),
                             .wall_us = jm_job_wall_us (job, clock_mono_ms ()) };
    s_report (self, job, &outcome);
}

//  --------------------------------------------------------------------------
//  Status

//  Builds the status object; caller owns it (json_decref).
static json_t *
s_status_json (jobmanager_t *self)
{
    //  Jobs queued on busy workers wait here too, as held ones do.
    json_t *held = held_json (self->held);
    workers_queued_json (self->workers, held);
    return json_pack (
        "{s:o, s:o, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "jobs_in_flight",
        workers_in_flight_json (self->workers), "jobs_held", held, "max_epoch",
        (json_int_t) self->max_epoch, "pid_distribution",
        workers_distribution_json (self->workers), "total_requests",
        (json_int_t) self->total_requests, "total_ready_sent",
        (json_int_t) self->total_ready_sent, "total_returned",
        (json_int_t) self->total_returned, "slots_announced",
        (json_int_t) self->announced, "workers",
        (json_int_t) workers_live (self->workers), "idle_workers",
        (json_int_t) workers_idle (self->workers), "queued_locally",
        (json_int_t) (held_size (self->held) + workers_queued (self->workers)), "state",
        self->draining ? "draining" : s_state_names[self->state]);
}

static void
s_log_status (jobmanager_t *self)
{
    json_t *status = s_status_json (self);
    if (!status)
        return;
    char *in_flight =
        json_dumps (json_object_get (status, "jobs_in_flight"), JSON_COMPACT);
    char *distribution =
        json_dumps (json_object_get (status, "pid_distribution"), JSON_COMPACT);
    log_info ("jobmanager %s: status jobs_in_flight=%s pid_distribution=%s "
              "total_requests=%" PRIu64 " total_ready_sent=%" PRIu64
              " total_returned=%" PRIu64 " workers=%zu idle=%zu queued_locally=%zu",
              s_id (self), in_flight ? in_flight : "?", distribution ? distribution : "?",
              self->total_requests, self->total_ready_sent, self->total_returned,
              workers_live (self->workers), workers_idle (self->workers),
              held_size (self->held) + workers_queued (self->workers));
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
    self->last_heartbeat_ms = clock_mono_ms ();
}

//  --------------------------------------------------------------------------
//  What the workers report

//  A job ended on a worker (workers.h): its DONE.
static void
s_on_ended (const jm_job_t *job, const jm_outcome_t *outcome, void *arg)
{
    s_report ((jobmanager_t *) arg, job, outcome);
}

//  A worker is free: start what waits, settle the slots.
static void
s_on_changed (void *arg)
{
    s_balance ((jobmanager_t *) arg);
}

//  Jobs queued on a worker that never took them: they wait here again,
//  ahead of the rest and in their order. (Balanced by whoever made the
//  workers give them back.)
static void
s_on_returned (jm_job_t **jobs, size_t count, void *arg)
{
    jobmanager_t *self = arg;
    for (size_t i = count; i-- > 0;)
        if (held_push_front (self->held, &jobs[i]))
            log_error ("jobmanager %s: out of memory holding a job", s_id (self));
}

//  How long a job may wait queued on a busy worker: the hold after which a
//  held one goes back to the router (with 0, "never", still a bound: one
//  behind a long job should wait for any worker, not that one).
static void
s_set_hold (jobmanager_t *self)
{
    int64_t hold = self->settings->prefetch_hold_ms;
    workers_set_hold (self->workers, hold ? hold : 100);
}

//  Starts held jobs on idle workers, oldest first (not while stopping:
//  what waits then is the router's to requeue), replaces workers lost with
//  their job, then settles the router's count of our free slots.
static void
s_balance (jobmanager_t *self)
{
    //  To idle workers, then queued on busy ones that take them soon.
    while (!self->draining && held_size (self->held) > 0) {
        jm_job_t *job = held_pop (self->held);
        int rc = workers_assign (self->workers, &job);
        if (rc && held_push_front (self->held, &job))
            log_error ("jobmanager %s: out of memory holding a job", s_id (self));
        if (rc == -1)
            break;  // no worker for it now (or out of memory): the next event
    }
    //  A worker lost with its job (crash, timeout, cancel) is replaced now,
    //  not on the next router HEARTBEAT: the job's DONE told the router its
    //  slot is free, and a job it sends for that slot should not wait (or
    //  go back) for want of a worker.
    workers_replace_lost (self->workers);
    s_settle (self);
    s_hold_arm (self);  // jobs that came back may be due to go back
}

//  --------------------------------------------------------------------------
//  Held jobs: a job the router prefetched waits in self->held for a
//  worker. One that waited prefetch_hold_ms goes back to the router
//  (RETURN) so that a long job here does not hold it hostage; the router
//  counts the RETURN as one free slot. Only jobs that came on the current
//  connection, and only while registered: a job from an earlier connection
//  belongs to a dispatch the router requeues (or fences) on its own. The
//  first ones in line are left to the workers now starting. One zloop
//  timer, armed for the oldest such job's deadline.

static int s_on_hold (zloop_t *loop, int timer_id, void *arg);

//  Whether held jobs may go back now.
static bool
s_may_return (jobmanager_t *self)
{
    return self->state == S_ACTIVE && self->router_emq2
           && self->settings->prefetch_hold_ms;
}

//  Arms the hold timer for the oldest job that may go back, unless armed.
static void
s_hold_arm (jobmanager_t *self)
{
    if (self->hold_timer != -1 || !self->loop || !s_may_return (self))
        return;
    int64_t deadline =
        held_deadline (self->held, self->connection, workers_starting (self->workers),
                       self->settings->prefetch_hold_ms);
    if (deadline < 0)
        return;
    int64_t delay = deadline - clock_mono_ms ();
    self->hold_timer =
        zloop_timer (self->loop, delay > 0 ? (size_t) delay : 1, 1, s_on_hold, self);
}

//  Returns every job that may go back and waited prefetch_hold_ms or longer.
static void
s_return_held (jobmanager_t *self, int64_t now)
{
    if (!s_may_return (self))
        return;
    jm_job_t *job;
    while (
        (job = held_due (self->held, self->connection, workers_starting (self->workers),
                         self->settings->prefetch_hold_ms, now))) {
        emqp_msg_t *msg = emqp_msg_new (EMQP_RETURN);
        if (!msg)
            return;
        msg->ref = strdup (job->msgid);
        msg->epoch = job->epoch;
        if (!msg->ref || s_send (self, &msg)) {
            emqp_msg_destroy (&msg);
            return;  // the next check tries again
        }
        self->announced++;
        self->total_returned++;
        log_info ("jobmanager %s: job %s returned to the router after %" PRId64
                  " ms waiting for a worker",
                  s_id (self), job->msgid, now - job->received_ms);
        held_drop (self->held, job);
    }
}

static int
s_on_hold (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    jobmanager_t *self = arg;
    self->hold_timer = -1;  // a one-shot timer, gone after this call
    s_return_held (self, clock_mono_ms ());
    s_hold_arm (self);
    return 0;
}

//  --------------------------------------------------------------------------
//  Jobs from the router

static void
s_on_request (jobmanager_t *self, emqp_msg_t *msg)
{
    self->total_requests++;
    self->announced--;  // the router spent a slot (or prefetch room)
    if (msg->epoch > self->max_epoch)
        self->max_epoch = msg->epoch;
    jm_job_t *job = jm_job_new (msg, self->connection, clock_mono_ms ());
    if (!job) {
        log_error ("jobmanager %s: out of memory for job %s", s_id (self), msg->msgid);
        return;
    }
    headers_t headers;
    char err[300];
    if (headers_parse (msg->headers ? msg->headers : "", &headers, err, sizeof err)) {
        log_warning ("jobmanager %s: REQUEST %s: bad headers: %s", s_id (self),
                     job->msgid, err);
        char text[400];
        snprintf (text, sizeof text, "bad headers: %s", err);
        //  Its DONE gives the router the slot back.
        s_report_text (self, job, EMQP_STATUS_REJECTED, text);
        jm_job_destroy (&job);
        return;
    }
    //  EventMQ's global_timeout: for a job that names none.
    job->timeout_s =
        headers.timeout_s ? headers.timeout_s : self->settings->default_timeout_s;
    int rc = self->draining ? -1 : workers_assign (self->workers, &job);
    if (rc == 0)
        return;
    //  Expected when the router prefetches; it runs when a worker frees, or
    //  goes back to the router after prefetch_hold_ms.
    log_debug ("jobmanager %s: REQUEST %s while no worker is free; queued locally "
               "(%zu waiting)",
               s_id (self), job->msgid, held_size (self->held) + 1);
    if (held_push (self->held, &job))
        log_error ("jobmanager %s: out of memory holding a job", s_id (self));
    s_hold_arm (self);
    if (rc == -2)
        s_balance (self);  // that worker broke; another may take it
}

//  CANCEL from the router: a job still waiting here is dropped; a running
//  one has its worker's process group killed. Either way DONE says
//  "cancelled"; a killed worker is replaced at once (s_balance).
static void
s_on_cancel (jobmanager_t *self, emqp_msg_t *msg)
{
    jm_job_t *job = held_cancel (self->held, msg->ref, msg->epoch);
    if (job) {
        log_info ("jobmanager %s: job %s cancelled before it started", s_id (self),
                  job->msgid);
        //  Its DONE gives the router the slot back.
        s_report_text (self, job, EMQP_STATUS_CANCELLED, "cancelled before it started");
        jm_job_destroy (&job);
        return;
    }
    bool done = workers_cancel (self->workers, msg->ref, msg->epoch);
    s_balance (self);  // a worker killed, or outcomes read on the way
    if (done)
        return;
    log_info ("jobmanager %s: CANCEL for %s: not here (already ended?)", s_id (self),
              msg->ref);
}

//  --------------------------------------------------------------------------
//  Router connection

static void
s_make_identity (jobmanager_t *self)
{
    char host[128];
    if (gethostname (host, sizeof host))
        strcpy (host, "localhost");
    host[sizeof host - 1] = 0;
    const char *name = self->settings->name;
    snprintf (self->identity, sizeof self->identity, "%.64s-%.100s-%d-%08x",
              *name ? name : "jm", host, (int) getpid (), arc4random ());
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
    msg->queues = strdup (self->settings->queues);
    msg->peer_type = strdup ("worker");
    msg->agent = strdup ("emq/3");
    self->state = S_CONNECTING;
    self->inform_sent_ms = clock_mono_ms ();
    s_send (self, &msg);
}

//  Makes sock a CURVE client of the router when curve_server_key is set.
//  Returns 0, or -1 (logged).
static int
s_curve_apply (jobmanager_t *self, zsock_t *sock)
{
    const char *key = self->settings->curve_server_key;
    if (!*key)
        return 0;
    char reason[512];
    if (curve_client_apply (sock, key, self->settings->curve_cert, reason, sizeof reason)
        == 0)
        return 0;
    log_error ("jobmanager %s: CURVE: %s", s_id (self), reason);
    return -1;
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
        s_make_identity (self);  // a new connection is a new peer
    }
    //  The new peer starts with no slots at the router; jobs that came on
    //  the old connection are no longer returnable.
    self->connection++;
    self->announced = 0;
    self->max_epoch = 0;
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer) {
        log_error ("jobmanager %s: cannot create a socket: %s", s_id (self),
                   zmq_strerror (errno));
        return;
    }
    zsock_set_identity (self->dealer, self->identity);
    zsock_set_linger (self->dealer, 2000);
    if (s_curve_apply (self, self->dealer)) {
        zsock_destroy (&self->dealer);
        return;
    }
    const char *addr = jobmanager_settings_backend (self->settings, self->addr_index);
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
              self->settings->queues);
    self->last_heard_ms = clock_mono_ms ();
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
    self->last_heartbeat_ms = clock_mono_ms ();
    //  What the router understands: an older emq router (no agent in its
    //  ACK) needs a READY after every DONE and knows no RETURN.
    self->router_emq2 =
        msg->agent && strncmp (msg->agent, "emq/", 4) == 0 && atoi (msg->agent + 4) >= 2;
    self->router_batches = self->router_emq2 && atoi (msg->agent + 4) >= 3;
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
    service_ready ("reloaded");
}

//  Starts a graceful stop: no more READY, running jobs get the grace period.
static void
s_drain_start (jobmanager_t *self, const char *reason)
{
    if (self->draining)
        return;
    self->draining = true;
    service_stopping ();
    workers_stop (self->workers);
    int64_t grace_ms = self->settings->kill_grace_ms;
    self->drain_deadline_ms = clock_mono_ms () + grace_ms;
    log_info ("jobmanager %s: stopping (%s): %zu job(s) running, grace period %g s",
              s_id (self), reason, workers_running (self->workers), grace_ms / 1000.0);
}

static void
s_on_router_message (jobmanager_t *self, emqp_msg_t *msg)
{
    self->last_heard_ms = clock_mono_ms ();
    switch (msg->command) {
        case EMQP_ACK:
            s_on_ack (self, msg);
            break;
        case EMQP_REQUEST:
            s_on_request (self, msg);
            break;
        case EMQP_HEARTBEAT:
            workers_replenish (self->workers);
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
            log_warning ("jobmanager %s: unexpected %s from the router ignored",
                         s_id (self), emqp_command_name (msg->command));
    }
}

//  A BATCH from an emq/3 router: its messages one by one, as if each had
//  come alone (while the socket is still ours: a message may reconnect).
static void
s_on_router_batch (jobmanager_t *self, zsock_t *reader, emqp_msg_t *batch)
{
    char err[256];
    size_t count = 0;
    emqp_msg_t **msgs = emqp_batch_unpack (batch, &self->limits, &count, err, sizeof err);
    if (!msgs) {
        log_warning ("jobmanager %s: malformed BATCH from the router dropped: %s",
                     s_id (self), err);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        if (msgs[i]->command == EMQP_INVALID)
            log_warning ("jobmanager %s: malformed message %s in a BATCH dropped: %s",
                         s_id (self), msgs[i]->msgid ? msgs[i]->msgid : "",
                         msgs[i]->error_text);
        else if (reader == self->dealer)
            s_on_router_message (self, msgs[i]);
        emqp_msg_destroy (&msgs[i]);
    }
    free (msgs);
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
            break;  // nothing more waiting
        if (rc < 0) {
            self->last_heard_ms = clock_mono_ms ();
            log_warning ("jobmanager %s: malformed message from the router dropped: %s",
                         s_id (self), fault.text);
            continue;
        }
        log_debug ("jobmanager %s: <- %s %s", s_id (self),
                   emqp_command_name (msg->command), msg->msgid);
        if (msg->command == EMQP_BATCH)
            s_on_router_batch (self, reader, msg);
        else
            s_on_router_message (self, msg);
        emqp_msg_destroy (&msg);
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Reloading the settings (SIGHUP)

//  Logs what changed between old and fresh; tells whether the router must
//  hear of it (a new backend: reconnect; new queues: INFORM again).
static void
s_log_changes (jobmanager_t *self, const jobmanager_settings_t *old,
               const jobmanager_settings_t *fresh, bool *reconnect, bool *reinform)
{
    *reconnect = !streq (old->backend_addr, fresh->backend_addr);
    *reinform = !streq (old->queues, fresh->queues);
    if (!streq (old->log_level_name, fresh->log_level_name))
        log_info ("jobmanager %s: log_level %s -> %s", s_id (self), old->log_level_name,
                  fresh->log_level_name);
    if (*reconnect)
        log_info ("jobmanager %s: backend_addr %s -> %s", s_id (self), old->backend_addr,
                  fresh->backend_addr);
    if (*reinform)
        log_info ("jobmanager %s: queues %s -> %s", s_id (self), old->queues,
                  fresh->queues);
    if (old->concurrent_jobs != fresh->concurrent_jobs)
        log_info ("jobmanager %s: concurrent_jobs %zu -> %zu", s_id (self),
                  old->concurrent_jobs, fresh->concurrent_jobs);
    if (old->prefetch_hold_ms != fresh->prefetch_hold_ms)
        log_info ("jobmanager %s: prefetch_hold_ms %" PRId64 " -> %" PRId64, s_id (self),
                  old->prefetch_hold_ms, fresh->prefetch_hold_ms);
    const struct {
        const char *name;
        int64_t old_ms, fresh_ms;
    } seconds[] = { { "heartbeat_interval", old->heartbeat_interval_ms,
                      fresh->heartbeat_interval_ms },
                    { "heartbeat_timeout", old->heartbeat_timeout_ms,
                      fresh->heartbeat_timeout_ms },
                    { "kill_grace_period", old->kill_grace_ms, fresh->kill_grace_ms } };
    for (size_t i = 0; i < 3; i++)
        if (seconds[i].old_ms != seconds[i].fresh_ms)
            log_info ("jobmanager %s: %s %g -> %g", s_id (self), seconds[i].name,
                      seconds[i].old_ms / 1000.0, seconds[i].fresh_ms / 1000.0);
}

//  log_format: journald's line format forced on or off, or detected.
static void
s_apply_log_format (const jobmanager_settings_t *settings)
{
    const char *format = settings->log_format ? settings->log_format : "auto";
    if (streq (format, "journal"))
        log_set_journal (true);
    else if (streq (format, "plain"))
        log_set_journal (false);
    else
        log_set_journal (log_journal_detect (STDOUT_FILENO));
}

static void
s_reload (jobmanager_t *self)
{
    if (!self->reload) {
        log_warning ("jobmanager %s: SIGHUP: reloading is not available", s_id (self));
        return;
    }
    char err[512];
    jobmanager_settings_t *fresh = self->reload (self->reload_arg, err, sizeof err);
    if (!fresh) {
        log_error ("jobmanager %s: SIGHUP: configuration not reloaded: %s", s_id (self),
                   err);
        return;
    }
    service_reloading ();
    log_info ("jobmanager %s: SIGHUP: configuration reloaded", s_id (self));
    log_set_level (fresh->log_level);
    s_apply_log_format (fresh);
    bool reconnect, reinform;
    s_log_changes (self, self->settings, fresh, &reconnect, &reinform);
    jobmanager_settings_destroy (&self->settings);
    self->settings = fresh;
    self->limits.payload_max = fresh->payload_max;
    s_set_hold (self);
    //  Changed worker settings restart the workers; a different size grows
    //  or shrinks the pool.
    workers_configure (self->workers, &fresh->worker, fresh->concurrent_jobs);
    if (reconnect)
        self->reconnect_due = true;
    else if (reinform && self->dealer)
        s_inform (self);  // the router forgets our slots; the ACK re-announces
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
    if (s_signal_pipe[1] >= 0 && write (s_signal_pipe[1], &byte, 1) < 0) {
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
    unsigned char bytes[64];
    ssize_t n = read (item->fd, bytes, sizeof bytes);
    for (ssize_t i = 0; i < n; i++) {
        switch (bytes[i]) {
            case SIGCHLD:
                //  Jobs a dead worker never took wait for another one.
                if (workers_reap (self->workers))
                    s_balance (self);
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
    workers_kill_all (self->workers);
    if (held_size (self->held))
        log_info (
            "jobmanager %s: %zu queued job(s) never started; the router requeues them",
            s_id (self), held_size (self->held));
    s_flush_outbox (self);
    if (held_outcomes (self->held))
        log_warning ("jobmanager %s: %zu outcome(s) could not be sent before leaving",
                     s_id (self), held_outcomes (self->held));
    if (self->dealer) {
        emqp_msg_t *kbye = emqp_msg_new (EMQP_KBYE);
        if (kbye)
            s_send (self, &kbye);
    }
    self->finished = true;
    log_info ("jobmanager %s: stopped", s_id (self));
}

//  Router liveness, INFORM retries and our HEARTBEAT.
static void
s_keep_connected (jobmanager_t *self, int64_t now)
{
    const jobmanager_settings_t *settings = self->settings;
    int64_t timeout_ms = settings->heartbeat_timeout_ms;
    int64_t liveness = settings->heartbeat_liveness;
    if (!self->reconnect_due && now - self->last_heard_ms > timeout_ms * liveness) {
        log_warning ("jobmanager %s: router silent for %.1f s (%" PRId64
                     " heartbeats missed); "
                     "reconnecting",
                     s_id (self), (now - self->last_heard_ms) / 1000.0, liveness);
        self->reconnect_due = true;
        self->addr_index++;  // try the next failover address, if any
    }
    if (self->reconnect_due && !self->draining) {
        self->reconnect_due = false;
        s_connect (self);
    }
    else if (self->state == S_CONNECTING && now - self->inform_sent_ms > timeout_ms) {
        log_debug ("jobmanager %s: no ACK for INFORM; sending it again", s_id (self));
        s_inform (self);
    }
    if (self->state == S_ACTIVE
        && now - self->last_heartbeat_ms >= settings->heartbeat_interval_ms)
        s_send_heartbeat (self);
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    jobmanager_t *self = arg;
    int64_t now = clock_mono_ms ();
    //  Reaping here too covers a SIGCHLD that raced with our handler setup.
    workers_reap (self->workers);
    workers_check_timeouts (self->workers, now);
    s_keep_connected (self, now);
    s_flush_outbox (self);
    s_balance (self);
    //  Also here: a signal restarts zloop, which pushes every timer back.
    s_return_held (self, now);
    s_hold_arm (self);

    if (self->draining) {
        //  Jobs still held are never started now: the router requeues
        //  them when our KBYE removes us.
        if (workers_running (self->workers) == 0)
            s_finish (self);
        else if (now >= self->drain_deadline_ms) {
            log_warning ("jobmanager %s: grace period over; killing %zu job(s)",
                         s_id (self), workers_running (self->workers));
            s_finish (self);
        }
    }
    return self->finished ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  The object

jobmanager_t *
jobmanager_new (jobmanager_settings_t **settings_p, char *err, size_t errlen)
{
    assert (settings_p && *settings_p && (*settings_p)->worker);
    jobmanager_t *self = calloc (1, sizeof *self);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        jobmanager_settings_destroy (settings_p);
        return NULL;
    }
    self->settings = *settings_p;
    *settings_p = NULL;
    self->workers =
        workers_new (&self->settings->worker, self->settings->concurrent_jobs,
                     self->identity, s_on_ended, s_on_changed, s_on_returned, self);
    self->held = held_new ();
    if (!self->workers || !self->held) {
        snprintf (err, errlen, "out of memory");
        jobmanager_destroy (&self);
        return NULL;
    }
    self->limits.payload_max = self->settings->payload_max;
    s_set_hold (self);
    self->hold_timer = -1;
    self->flush_timer = -1;
    s_make_identity (self);
    return self;
}

void
jobmanager_destroy (jobmanager_t **self_p)
{
    assert (self_p);
    jobmanager_t *self = *self_p;
    if (!self)
        return;
    workers_destroy (&self->workers);
    held_destroy (&self->held);
    zsock_destroy (&self->dealer);
    zloop_destroy (&self->loop);
    jobmanager_settings_destroy (&self->settings);
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

static int
s_on_watchdog (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    service_watchdog_ping ();
    return 0;
}

//  Creates the loop with the signal pipe and the tick; 0, or -1 (logged).
static int
s_loop_new (jobmanager_t *self)
{
    self->loop = zloop_new ();
    if (!self->loop) {
        log_error ("jobmanager: cannot create the event loop");
        return -1;
    }
    //  Our own handlers decide when to stop, not czmq's interrupt flag.
    zloop_set_nonstop (self->loop, true);
    zmq_pollitem_t signal_item = { NULL, s_signal_pipe[0], ZMQ_POLLIN, 0 };
    if (zloop_poller (self->loop, &signal_item, s_on_signal, self) == -1
        || zloop_timer (self->loop, S_TICK_MS, 0, s_on_tick, self) == -1) {
        log_error ("jobmanager: cannot set up the event loop");
        return -1;
    }
    workers_attach (self->workers, self->loop);
    return 0;
}

//  Runs the loop until a graceful stop; 0, or -1 (logged).
static int
s_loop_run (jobmanager_t *self)
{
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
    return self->finished ? 0 : -1;
}

int
jobmanager_run (jobmanager_t *self)
{
    assert (self);
    static const int signals[] = { SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1 };
    struct sigaction saved[5], saved_pipe;
    int rc = 1;
    if (pipe2 (s_signal_pipe, O_CLOEXEC | O_NONBLOCK)) {
        log_error ("jobmanager: pipe: %s", strerror (errno));
        return 1;
    }
    struct sigaction action = { .sa_handler = s_signal_handler, .sa_flags = SA_RESTART };
    sigemptyset (&action.sa_mask);
    for (size_t i = 0; i < 5; i++)
        sigaction (signals[i], &action, &saved[i]);
    struct sigaction ignore = { .sa_handler = SIG_IGN };
    sigemptyset (&ignore.sa_mask);
    sigaction (SIGPIPE, &ignore, &saved_pipe);

    if (s_loop_new (self))
        goto done;
    log_set_level (self->settings->log_level);
    s_apply_log_format (self->settings);
    workers_replenish (self->workers);
    if (workers_live (self->workers) == 0) {
        log_error ("jobmanager %s: no worker could be started", s_id (self));
        goto done;
    }
    s_connect (self);
    if (!self->dealer)
        goto done;
    int64_t watchdog_ms = service_watchdog_ms ();
    if (watchdog_ms > 0)
        zloop_timer (self->loop, (size_t) watchdog_ms, 0, s_on_watchdog, self);
    //  Ready once the workers run and the router is being dialled: systemd
    //  starts what depends on us now.
    service_ready ("running");
    rc = s_loop_run (self) == 0 ? 0 : 1;

done:
    //  Closed pipes make idle workers leave; the rest are killed.
    workers_close_all (self->workers, 1000);
    for (size_t i = 0; i < 5; i++)
        sigaction (signals[i], &saved[i], NULL);
    sigaction (SIGPIPE, &saved_pipe, NULL);
    close (s_signal_pipe[0]);
    close (s_signal_pipe[1]);
    s_signal_pipe[0] = s_signal_pipe[1] = -1;
    return rc;
}

//  --------------------------------------------------------------------------
//  Self test: a job manager in a thread against a fake router in the test.

#define S_CHECK(expr)                                   \
    do {                                                \
        emq_test_checks++;                              \
        if (!(expr)) {                                  \
            TESTUTIL_FAIL_ ("CHECK failed: %s", #expr); \
            goto cleanup;                               \
        }                                               \
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
        char err[256];
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
    while (argv[payload.argc])
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
static const char *s_test_router_agent = "emq/2";  // what the fake's ACK says

static void
s_test_simple (zsock_t *router, zframe_t *identity, emqp_command_t command,
               const char *ref)
{
    emqp_msg_t *msg = emqp_msg_new (command);
    msg->identity = zframe_dup (identity);
    if (ref)
        msg->ref = strdup (ref);
    if (command == EMQP_ACK && !s_test_router_old)
        msg->agent = strdup (s_test_router_agent);
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
    zframe_t *identity;             // the job manager's, from its INFORM
    jobmanager_settings_t *reload;  // what SIGHUP loads, when set
} s_fake_t;

static jobmanager_settings_t *
s_fake_reload (void *arg, char *err, size_t errlen)
{
    (void) err;
    (void) errlen;
    s_fake_t *fake = arg;
    jobmanager_settings_t *settings = fake->reload;
    fake->reload = NULL;
    return settings;
}

//  Builds test settings for a job manager connecting to port: defaults
//  for the tests, then the NULL-terminated name/value pairs.
static jobmanager_settings_t *
s_fake_settings (int port, const char *const *settings, bool verbose)
{
    config_t *config = config_new ();
    if (!config)
        return NULL;
    char err[256], addr[64];
    snprintf (addr, sizeof addr, "tcp://127.0.0.1:%d", port);
    const char *defaults[] = { "backend_addr",
                               addr,
                               "concurrent_jobs",
                               "2",
                               "heartbeat_interval",
                               "0.2",
                               "heartbeat_timeout",
                               "2",
                               "exec_allow",
                               "/bin/*",
                               "kill_grace_period",
                               "5",
                               "log_level",
                               verbose ? "debug" : "error",
                               NULL };
    jobmanager_settings_t *typed = NULL;
    for (size_t i = 0; defaults[i]; i += 2)
        if (config_set (config, defaults[i], defaults[i + 1], err, sizeof err))
            goto done;
    for (size_t i = 0; settings && settings[i]; i += 2)
        if (config_set (config, settings[i], settings[i + 1], err, sizeof err))
            goto done;
    typed = jobmanager_settings_new (config, err, sizeof err);
done:
    if (!typed)
        fprintf (stderr, "jobmanager test: %s\n", err);
    config_destroy (&config);
    return typed;
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
    jobmanager_settings_t *typed = s_fake_settings (port, settings, verbose);
    if (!typed)
        return -1;
    char err[256];
    fake->jm = jobmanager_new (&typed, err, sizeof err);
    if (!fake->jm)
        return -1;
    jobmanager_set_reload (fake->jm, s_fake_reload, fake);
    fake->runner.jm = fake->jm;
    if (pthread_create (&fake->thread, NULL, s_runner, &fake->runner))
        return -1;
    fake->started = true;
    emqp_msg_t *msg = s_test_recv (fake->router, false);
    bool ok =
        msg && msg->command == EMQP_INFORM && msg->agent && streq (msg->agent, "emq/3");
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
    jobmanager_settings_destroy (&fake->reload);
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
                            ? json_loads (msg->stats, 0, NULL)
                            : NULL;
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
            seen[msg->command]++;
        json_t *stats = msg->command == EMQP_HEARTBEAT && msg->stats
                            ? json_loads (msg->stats, 0, NULL)
                            : NULL;
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
    const char *settings[] = { "concurrent_jobs", "1", "max_job_count", "1", NULL };
    S_CHECK (s_fake_start (&fake, settings, 1, verbose) == 0);
    char *echo[] = { "/bin/echo", "x", NULL };
    for (int round = 0; round < 3; round++) {
        char msgid[32];
        snprintf (msgid, sizeof msgid, "retire-%d", round);
        s_test_request (fake.router, fake.identity, msgid, echo, "",
                        100 + (uint64_t) round);
        msg = s_test_recv (fake.router, false);
        S_CHECK (msg && msg->command == EMQP_DONE && streq (msg->ref, msgid));
        S_CHECK (msg->status == EMQP_STATUS_OK && msg->epoch == 100 + (uint64_t) round);
        emqp_msg_destroy (&msg);
        //  The replacement comes up (a new pid, idle) without a READY.
        int seen[EMQP_COMMAND_COUNT] = { 0 };
        S_CHECK (s_fake_wait_stat (&fake, "idle_workers", 1, seen));
        S_CHECK (seen[EMQP_READY] == 0);
        msg = s_test_recv_ms (fake.router, false, 300);
        S_CHECK (msg == NULL);
    }
    stats = s_fake_stats (&fake);
    S_CHECK (stats && s_stat (stats, "slots_announced") == 1);
    S_CHECK (s_stat (stats, "total_ready_sent") == 1
             && s_stat (stats, "total_requests") == 3);
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
    const char *settings[] = { "concurrent_jobs", "1", "prefetch_hold_ms", "100", NULL };
    S_CHECK (s_fake_start (&fake, settings, 1, verbose) == 0);
    char *nap[] = { "/bin/sleep", "0.5", NULL };
    char *echo[] = { "/bin/echo", "x", NULL };
    s_test_request (fake.router, fake.identity, "first", nap, "", 1);
    s_test_request (fake.router, fake.identity, "second", echo, "", 2);
    //  "second" waits past the hold: not returned; each ends with DONE and
    //  then READY.
    const char *expect[] = { "first", "second" };
    for (int i = 0; i < 2; i++) {
        msg = s_test_recv (fake.router, false);
        S_CHECK (msg && msg->command == EMQP_DONE && streq (msg->ref, expect[i]));
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

//  An emq/3 router: a BATCH of REQUESTs is taken message by message, and
//  the outcomes of one loop turn go back in one BATCH of DONEs (three
//  REQUESTs with bad headers end in the turn that reads them).
static void
s_test_batches (bool verbose)
{
    s_fake_t fake;
    emqp_msg_t *msg = NULL;
    emqp_msg_t **msgs = NULL;
    size_t count = 0;
    s_test_router_agent = "emq/3";
    const char *settings[] = { "concurrent_jobs", "1", NULL };
    S_CHECK (s_fake_start (&fake, settings, 1, verbose) == 0);
    emqp_batch_t *batch = emqp_batch_new ();
    for (int i = 0; i < 3; i++) {
        emqp_msg_t *request = emqp_msg_new (EMQP_REQUEST);
        request->msgid = zsys_sprintf ("bad-%d", i);
        request->queue = strdup ("default");
        request->headers = strdup ("timeout:x");
        request->payload = zframe_new ("\x90", 1);
        request->epoch = (uint64_t) i + 1;
        request->attempt = 1;
        emqp_batch_add (batch, &request);
    }
    S_CHECK (emqp_batch_send (batch, fake.router, fake.identity) == 0);
    msg = s_test_recv (fake.router, false);
    S_CHECK (msg && msg->command == EMQP_BATCH);
    char err[256];
    msgs = emqp_batch_unpack (msg, NULL, &count, err, sizeof err);
    S_CHECK (msgs && count == 3);
    for (size_t i = 0; i < count; i++) {
        char want[32];
        snprintf (want, sizeof want, "bad-%zu", i);
        S_CHECK (msgs[i]->command == EMQP_DONE && streq (msgs[i]->ref, want));
        S_CHECK (msgs[i]->status == EMQP_STATUS_REJECTED && msgs[i]->epoch == i + 1);
    }
cleanup:
    s_test_router_agent = "emq/2";
    for (size_t i = 0; msgs && i < count; i++)
        emqp_msg_destroy (&msgs[i]);
    free (msgs);
    emqp_batch_destroy (&batch);
    emqp_msg_destroy (&msg);
    s_fake_stop (&fake);
}

static void
s_test_hold (bool verbose)
{
    s_fake_t fake;
    emqp_msg_t *msg = NULL;
    json_t *stats = NULL;
    const char *settings[] = { "concurrent_jobs", "1", "prefetch_hold_ms", "300", NULL };
    S_CHECK (s_fake_start (&fake, settings, 1, verbose) == 0);
    char *sleeper[] = { "/bin/sleep", "3", NULL };
    char *echo[] = { "/bin/echo", "x", NULL };
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
    S_CHECK (msg && msg->command == EMQP_RETURN && streq (msg->ref, "held")
             && msg->epoch == 4);
    if (waited < 280 || waited > 3000)
        TESTUTIL_FAIL_ ("RETURN after %" PRId64 " ms, expected about 300", waited);
    emqp_msg_destroy (&msg);
    msg = s_test_recv_ms (fake.router, false, 300);
    S_CHECK (msg == NULL);
    stats = s_fake_stats (&fake);
    S_CHECK (stats && s_stat (stats, "total_returned") == 1);
    S_CHECK (s_stat (stats, "queued_locally") == 0
             && s_stat (stats, "slots_announced") == 0);
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
    S_CHECK (stats && s_stat (stats, "slots_announced") == 1
             && s_stat (stats, "idle_workers") == 1);
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
    const char *settings[] = { "concurrent_jobs", "2", "prefetch_hold_ms", "100", NULL };
    S_CHECK (s_fake_start (&fake, settings, 2, verbose) == 0);
    char *nap[] = { "/bin/sleep", "0.5", NULL };
    char *echo[] = { "/bin/echo", "x", NULL };
    s_test_request (fake.router, fake.identity, "nap-1", nap, "", 11);
    s_test_request (fake.router, fake.identity, "nap-2", nap, "", 12);
    s_test_request (fake.router, fake.identity, "queued", echo, "", 13);
    s_test_simple (fake.router, fake.identity, EMQP_KBYE, NULL);
    //  A new identity registers; its DONEs wait for our ACK.
    msg = s_test_recv (fake.router, false);
    S_CHECK (msg && msg->command == EMQP_INFORM && streq (msg->agent, "emq/3"));
    S_CHECK (!zframe_eq (msg->identity, fake.identity));
    zframe_destroy (&fake.identity);
    fake.identity = zframe_dup (msg->identity);
    char inform_id[64];
    snprintf (inform_id, sizeof inform_id, "%s", msg->msgid);
    emqp_msg_destroy (&msg);
    //  nap-1 and nap-2 end, queued runs and ends: three outcomes kept. No
    //  RETURN of queued although it waited past the hold.
    zclock_sleep (900);
    msg = s_test_recv_ms (fake.router, false, 100);
    S_CHECK (msg == NULL || msg->command == EMQP_INFORM);  // INFORM again is fine
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
            S_CHECK (ready == 0);  // outcomes first
        emqp_msg_destroy (&msg);
    }
    //  2 idle workers - 3 DONEs: nothing to announce, and one slot too
    //  many counted (queued's DONE, a job this registration never sent):
    //  the job manager registers again to reset the router's count.
    S_CHECK (done == 3 && ready == 0);
    msg = s_test_recv (fake.router, false);
    S_CHECK (msg && msg->command == EMQP_INFORM
             && zframe_eq (msg->identity, fake.identity));
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
    S_CHECK (stats && s_stat (stats, "slots_announced") == 2
             && s_stat (stats, "idle_workers") == 2);
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
    const char *settings[] = { "concurrent_jobs", "1", "prefetch_hold_ms", "100", NULL };
    S_CHECK (s_fake_start (&fake, settings, 1, verbose) == 0);
    char *nap[] = { "/bin/sleep", "0.6", NULL };
    char *echo[] = { "/bin/echo", "x", NULL };
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
    S_CHECK (s_stat (stats, "slots_announced") == 1
             && s_stat (stats, "idle_workers") == 1);
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
    const char *settings[] = { "concurrent_jobs", "2", NULL };
    S_CHECK (s_fake_start (&fake, settings, 2, verbose) == 0);
    char *nap[] = { "/bin/sleep", "0.4", NULL };
    s_test_request (fake.router, fake.identity, "nap-1", nap, "", 21);
    s_test_request (fake.router, fake.identity, "nap-2", nap, "", 22);
    const char *smaller[] = { "concurrent_jobs", "1", NULL };
    fake.reload = s_fake_settings (atoi (strrchr (zsock_endpoint (fake.router), ':') + 1),
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
    //  The utilities.
    size_t size;
    char *clean = s_utf8_sanitize ("ok\xff\xc3\xa9\xed\xa0\x80", 8, &size);
    CHECK (
        clean
        && streq (clean, "ok\xEF\xBF\xBD\xc3\xa9\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"));
    free (clean);
    char usage[S_USAGE_MAX];
    s_format_usage (usage, 0, 12, UINT64_MAX);
    CHECK_STREQ (usage, "wall_us=0 cpu_us=12 maxrss_kb=18446744073709551615");

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
    char *echo[] = { "/bin/echo", "hi", NULL };
    s_test_request (router, identity, "job-1", echo, "", 7);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_DONE);
    S_CHECK (streq (msg->ref, "job-1") && msg->epoch == 7
             && msg->status == EMQP_STATUS_OK);
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
    S_CHECK (strstr (msg->stats, "\"max_epoch\":7")
             && strstr (msg->stats, "\"jobs_held\":[]"));
    emqp_msg_destroy (&msg);

    //  A job past its timeout: DONE timeout; its worker is replaced at once,
    //  and that worker's HELLO brings no READY (the DONE already counted).
    char *sleeper[] = { "/bin/sleep", "30", NULL };
    s_test_request (router, identity, "job-2", sleeper, "timeout:1", 8);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_DONE && streq (msg->ref, "job-2"));
    S_CHECK (msg->status == EMQP_STATUS_TIMEOUT);
    S_CHECK (zframe_streq (msg->payload, "timed out after 1 s"));
    emqp_msg_destroy (&msg);
    int seen[EMQP_COMMAND_COUNT] = { 0 };
    S_CHECK (s_fake_wait_stat (&fake, "idle_workers", 2, seen));
    S_CHECK (seen[EMQP_READY] == 0);

    //  A job that is not allowed is rejected by the worker: DONE only.
    char *cat[] = { "/usr/bin/cat", NULL };
    s_test_request (router, identity, "job-3", cat, "", 9);
    msg = s_test_recv (router, false);
    S_CHECK (msg && msg->command == EMQP_DONE && msg->status == EMQP_STATUS_REJECTED);
    emqp_msg_destroy (&msg);
    msg = s_test_recv_ms (router, false, 300);
    S_CHECK (msg == NULL);

    //  Graceful stop with a job running: it finishes, then KBYE; a job that
    //  arrives meanwhile is not started (the router requeues it).
    char *short_sleep[] = { "/bin/sleep", "0.3", NULL };
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
    s_test_batches (verbose);
    s_test_reconnect (verbose);
    s_test_old_pending (verbose);
    s_test_shrink (verbose);
    if (verbose)
        printf ("OK\n");
}
