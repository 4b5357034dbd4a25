/*  router — the emq broker. See router.h and docs/protocol.md.

    One thread, one zloop. Each socket reader drains what is ready (up to a
    batch), handles every message, and then dispatches whatever became
    possible. Every send uses ZMQ_ROUTER_MANDATORY: a send that cannot reach
    its peer fails visibly, and a job that could not be handed over goes back
    to the head of its queue.

    Ownership: queues_t owns queues and jobs; peers_t (one for job managers,
    one for schedulers) owns peers. A job in flight is borrowed by its peer's
    in-flight set and points back at the peer; removing a peer first takes
    its jobs back into their queues (s_peer_remove).
*/
#include "router.h"

#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin.h"
#include "clock.h"
#include "dispatch.h"
#include "emqp.h"
#include "events.h"
#include "fences.h"
#include "headers.h"
#include "job.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "payload.h"
#include "queuespec.h"
#include "peers.h"
#include "curve.h"
#include "service.h"
#include "queues.h"
#include "recent.h"
#include "store.h"

#define S_BATCH_MAX 1024  // messages handled per socket per loop turn
//  In memory, msgids of ended jobs kept for idempotent submit (result_ttl
//  long): at most this many, about 100 bytes each.
#define S_RECENT_MAX 100000
//  Refused messages in a second that count as a flood (s_on_second).
#define S_REFUSAL_BURST 1000
//  ERRORs answering undecodable messages, per second (s_fault_reply_allowed).
#define S_FAULT_REPLIES 100

typedef void (s_handler_fn) (router_t *self, emqp_msg_t *msg);

//  What a socket's reader needs: the router, the peers' name in logs, the
//  handler for that socket's commands, and the CURVE roles it admits.
typedef struct {
    router_t *router;
    const char *name;
    s_handler_fn *handler;
    const char *roles;  // comma-separated, see curve.h
} s_socket_ctx_t;

struct router_t {
    router_settings_t settings;
    bool deposed;  // lost the lead of a shared database: acts no more
    zsock_t *frontend;
    zsock_t *backend;
    zsock_t *admin;
    outbox_t *to_clients;  // the frontend's sends, batched per peer
    outbox_t *to_jms;      // the backend's sends, batched per peer
    zloop_t *loop;
    queues_t *queues;
    peers_t *job_managers;
    peers_t *schedulers;
    emqp_limits_t limits;
    uint64_t next_epoch;    // fencing tokens, increasing across restarts
    uint64_t tick;          // dispatch counter for least-recently-used
    bool redispatch;        // jobs went back to queues: dispatch again
    curve_server_t *curve;  // CURVE keys and authenticator, or NULL
    //  Long store work runs in chunks, one per loop turn, so that jobs
    //  keep flowing: expiry of ended rows, and dead retry --all / purge.
    bool expiring;          // an expiry is under way (the writer's)
    emqp_msg_t *dead_task;  // the DEAD_RETRY * or DEAD_PURGE being done
                            // (identity and msgid, to answer), or NULL
    store_cursor_t dead_cursor;
    int64_t dead_done;
    bool stopping;               // an admin DISCONNECT was accepted
    uint64_t undeliverable;      // sends that could not reach their peer
    uint64_t batches_in;         // BATCH messages received
    uint64_t batched_in;         // messages that came in them
    store_t *store;              // the job table (SQLite, or :memory:)
    zlistx_t *pending;           // job_t * accepted, in the open batch
    zlistx_t *pending_out;       // job_t * accepted, in the batch out: ACK after
                                 // its commit
    zlistx_t *scheduled;         // job_t * by run_at: delayed and backing off
    zlistx_t *ending;            // job_t * ended, their end in the open batch
    zlistx_t *ending_out;        // job_t * ended, their end in the batch out
    zlistx_t *parked;            // s_parked_t *: admin reads waiting for the
                                 // store to hold what was written before them
    zhashx_t *schedule_senders;  // SCHEDULE msgid -> zframe_t client id, for
                                 // relaying a scheduler's ERROR; cleared often
    bool ends_unsaved;           // an end could not join a batch: write again
    bool store_failing;          // the last commit failed (logged once)
    bool routers_failing;        // STATUS could not list the other routers
                                 // (logged once until it can again)
    bool submit_failing;         // the writer could not be reached (logged once)
    fences_t *fences;            // schedulers' fencing tokens, per scope
    recent_t *recent;            // in memory: msgids of ended jobs, or NULL
    char *scheduler_identities;  // settings.scheduler_identities, owned
    bool frontend_local;         // the frontend is ipc://: every peer is local
    s_socket_ctx_t readers[3];   // context of each socket's reader
    zsock_t *reader_socks[3];    // frontend, backend, admin, as readers[]
    uint64_t committed_batches;
    size_t jobs_at_trim;       // job count at the last malloc_trim
    size_t jobs_last_second;   // job count at the last s_on_second
    bool draining;             // a backlog is going: trim when it settles
    uint64_t refused;          // messages refused or dropped since the last second
    uint32_t fault_replies;    // ERRORs answering undecodable messages, this second
    bool refusal_burst;        // many were: trim the heap once they stop
    router_reload_fn *reload;  // SIGHUP's settings, or NULL
    void *reload_arg;
    int heartbeat_timer;  // zloop timer id, re-armed when the interval changes
    events_t *events;     // the lifecycle stream, or NULL (not configured)
    metrics_t *metrics;   // latency histograms, gauges, commit times (STATUS)
};

//  Lines a peer can make us write once per message are rate-limited
//  (log.h): a flood costs a few lines and a count, not a line each.
static log_limit_t s_lim_undelivered = LOG_LIMIT ("router: messages not delivered");
static log_limit_t s_lim_refused = LOG_LIMIT ("client: REQUESTs refused");
static log_limit_t s_lim_frontend = LOG_LIMIT ("client: frontend commands refused");
static log_limit_t s_lim_backend = LOG_LIMIT ("jobmanager: reports refused");
static log_limit_t s_lim_dropped = LOG_LIMIT ("router: malformed messages dropped");

//  Every change of a job's state goes through here (job.c holds the
//  table); a refused move is our bug, or a peer's stale report that the
//  caller did not catch: logged, and the job is left as it was.
static int
s_fire (job_t *job, job_event_t event)
{
    job_state_t from = (job_state_t) job->state;
    if (job_fire (job, event, &job->queue->counts) == 0) {
        log_debug ("job %s: %s -> %s (%s)", JOB_MSGID (job), job_state_name (from),
                   job_state_name (job->state), job_event_name (event));
        return 0;
    }
    log_error ("job %s: %s refused in state %s", JOB_MSGID (job), job_event_name (event),
               job_state_name (from));
    return -1;
}

//  Publishes a job event on the stream (if one is configured); extra is
//  taken (events.h).
static void
s_event (router_t *self, job_t *job, const char *kind, json_t *extra)
{
    if (self->events)
        events_job (self->events, kind, job->queue->name, JOB_MSGID (job), job->attempt,
                    extra);
    else
        json_decref (extra);
}

//  --------------------------------------------------------------------------
//  Sending. Each helper consumes the message and reports failure.

//  Commits the turn's store writes, then ACKs, dispatches (defined below;
//  the chunked admin and expiry work calls it too).
static void s_flush (router_t *self);

//  The printable id of a message's sender, formatted only when a log line
//  needs it (the compound literal lives until the end of the enclosing block).
#define S_SENDER(msg) peers_id_of ((msg)->identity, (char[600]){ 0 }, 600)

//  Frontend and backend sends go through their outbox: to a peer that
//  takes BATCH they leave at the end of the loop turn (s_flush_outboxes),
//  to any other at once. A failure of a gathered send is seen then.
static int
s_send (router_t *self, zsock_t *sock, emqp_msg_t **msg_p, zframe_t *to)
{
    emqp_command_t command = (*msg_p)->command;
    outbox_t *outbox = sock == self->frontend  ? self->to_clients
                       : sock == self->backend ? self->to_jms
                                               : NULL;
    if ((outbox ? outbox_send (outbox, msg_p) : emqp_send (msg_p, sock)) == 0)
        return 0;
    self->undeliverable++;
    char id[600];
    log_warning_limited (&s_lim_undelivered, "peer %s: %s not delivered: %s",
                         peers_id_of (to, id, sizeof id), emqp_command_name (command),
                         errno == EHOSTUNREACH ? "peer is gone"
                         : errno == EAGAIN     ? "peer's queue is full"
                                               : strerror (errno));
    return -1;
}

static void
s_send_error (router_t *self, zsock_t *sock, zframe_t *identity, const char *ref,
              const char *code, const char *text)
{
    self->refused++;
    emqp_msg_t *reply = emqp_msg_new (EMQP_ERROR);
    if (!reply)
        return;
    reply->identity = zframe_dup (identity);
    reply->ref = strdup (ref ? ref : "");
    reply->error_code = strdup (code);
    reply->error_text = strdup (text);
    s_send (self, sock, &reply, identity);
}

static void
s_send_ack (router_t *self, zsock_t *sock, zframe_t *identity, const char *ref)
{
    emqp_msg_t *reply = emqp_msg_new (EMQP_ACK);
    if (!reply)
        return;
    reply->identity = zframe_dup (identity);
    reply->ref = strdup (ref);
    //  libemq (routing ids "client-...") learns that we take BATCH; it then
    //  sends one, and is answered in batches. EventMQ's clients (uuid4 ids)
    //  get the plain ACK.
    if (sock == self->frontend && identity && zframe_size (identity) > 7
        && memcmp (zframe_data (identity), "client-", 7) == 0
        && !outbox_allows (self->to_clients, identity))
        reply->agent = strdup ("emq/3");
    s_send (self, sock, &reply, identity);
}

static void
s_send_simple (router_t *self, zsock_t *sock, peer_t *peer, emqp_command_t command)
{
    emqp_msg_t *msg = emqp_msg_new (command);
    if (!msg)
        return;
    msg->identity = zframe_dup (peer->identity);
    if (command == EMQP_HEARTBEAT)
        msg->heartbeat_ts = clock_wall_s ();
    s_send (self, sock, &msg, peer->identity);
}

//  --------------------------------------------------------------------------
//  Job ends and peer removal

static void
s_send_result (router_t *self, zframe_t *to, const char *msgid, emqp_status_t status,
               const void *value, size_t size, const char *usage)
{
    emqp_msg_t *result = emqp_msg_new (EMQP_RESULT);
    if (!result)
        return;
    result->identity = zframe_dup (to);
    result->ref = strdup (msgid);
    result->status = status;
    result->payload = zframe_new (value, size);
    result->usage = strdup (usage ? usage : "");
    s_send (self, self->frontend, &result, to);
}

//  Writes a job's end to the store (joining the open batch).
static void
s_job_save_end (router_t *self, job_t *job)
{
    job_more_t *more = job->more;
    if (store_set_ended (self->store, job->row, (store_state_t) more->end_state,
                         emqp_status_name ((emqp_status_t) more->end_status),
                         zframe_data (more->end_value), zframe_size (more->end_value),
                         more->end_usage, more->ended_at)) {
        log_error ("store: %s", store_error (self->store));
        //  The batch fails as a whole (store.c); the end is written again
        //  with the next one.
        self->ends_unsaved = true;
    }
}

//  A job reached its end: record it, tell the client if it asked and
//  whoever FETCHed it. The record stays (JOB_ENDED) until the store has
//  committed the end, so that an end the disk refused is written again
//  rather than lost (s_settle_ends), and so that a FETCH meanwhile finds
//  it here (the store's reads see committed batches only); in-memory mode
//  frees it at once.
static void
s_job_end (router_t *self, job_t *job, store_state_t state, emqp_status_t status,
           zframe_t *value, const char *usage)
{
    job_event_t event = state == STORE_DONE        ? JOB_EV_SUCCEED
                        : state == STORE_CANCELLED ? JOB_EV_CANCEL
                                                   : JOB_EV_FAIL;
    if (s_fire (job, event))
        return;
    const void *data = value ? (const void *) zframe_data (value) : "";
    size_t size = value ? zframe_size (value) : 0;
    if (self->events) {
        const char *kind = state == STORE_DONE        ? "done"
                           : state == STORE_CANCELLED ? "cancelled"
                           : state == STORE_DEAD      ? "dead"
                                                      : "failed";
        json_t *extra = json_pack ("{s:s}", "status", emqp_status_name (status));
        if (status != EMQP_STATUS_OK && size) {
            char shown[160];
            json_object_set_new (
                extra, "error",
                json_string (emqp_printable (data, size, shown, sizeof shown)));
        }
        s_event (self, job, kind, extra);
    }
    job_msgid_t idbuf;
    const char *msgid = job_msgid (job, &idbuf);
    log_debug ("job %s: ended %s (%s) after %u attempt(s)", msgid,
               store_state_name (state), emqp_status_name (status), job->attempt);
    if (state == STORE_DEAD)
        log_info ("job %s: dead after %u attempt(s): %s", msgid, job->attempt,
                  emqp_status_name (status));
    zframe_t *client = job_parsed (job)->reply_requested ? job_client (job) : NULL;
    if (client)
        s_send_result (self, client, msgid, status, data, size, usage);
    if (job->more && job->more->watchers) {
        zlistx_t *watchers = job->more->watchers;
        for (zframe_t *watcher = (zframe_t *) zlistx_first (watchers); watcher;
             watcher = (zframe_t *) zlistx_next (watchers))
            if (!(client && zframe_eq (watcher, client)))
                s_send_result (self, watcher, msgid, status, data, size, usage);
        zlistx_destroy (&job->more->watchers);
    }
    if (store_is_memory (self->store) || job->row <= 0) {
        //  Without a table of rows, the msgid is kept here instead.
        if (self->recent)
            recent_add (self->recent, msgid, clock_mono_ms ());
        queues_job_delete (self->queues, job);
        return;
    }
    job_more_t *more = job_more (job);
    if (!more) {
        //  Out of memory: the end cannot wait for its commit; the store
        //  keeps the job as it was (it runs again after a restart).
        log_error ("job %s: out of memory recording its end", msgid);
        queues_job_delete (self->queues, job);
        return;
    }
    more->end_state = state;
    more->end_status = status;
    more->end_value = zframe_new (data, size);
    more->end_usage = strdup (usage ? usage : "");
    more->ended_at = clock_wall_s ();
    s_job_save_end (self, job);
    zlistx_add_end (self->ending, job);
}

//  After a batch's event: ended jobs whose end it committed are forgotten;
//  after a failed batch, their ends go into the open one again.
static void
s_settle_ends (router_t *self, zlistx_t *ending, bool committed)
{
    job_t *job;
    while ((job = (job_t *) zlistx_first (ending))) {
        zlistx_detach_cur (ending);
        if (committed && job->more && job->more->end_state == STORE_DEAD)
            metrics_count (self->metrics, job->queue->name, METRICS_DEAD, 1);
        if (committed)
            queues_job_delete (self->queues, job);
        else {
            s_job_save_end (self, job);
            zlistx_add_end (self->ending, job);
        }
    }
}

//  A running job its job manager no longer has (gone, or never got it)
//  goes back to the head of its queue (at-least-once: the attempt count
//  tells the next worker); an acknowledged CANCEL stands instead. Returns
//  true if it was queued again.
static bool
s_take_back (router_t *self, job_t *job)
{
    if (job_flag (job, JOB_CANCEL_REQUESTED)) {
        s_job_end (self, job, STORE_CANCELLED, EMQP_STATUS_CANCELLED, NULL, NULL);
        return false;
    }
    if (s_fire (job, JOB_EV_REQUEUE))
        return false;
    s_event (self, job, "requeued", NULL);
    queue_push_front (job->queue, job, clock_mono_ms ());
    self->redispatch = true;
    return true;
}

//  Forgets a peer. Its jobs in flight go back to the head of their queues
//  (at-least-once): the attempt count tells the next worker.
static void
s_peer_remove (router_t *self, peers_t *peers, peer_t *peer, const char *reason)
{
    size_t requeued = 0;
    job_t *job = (job_t *) zhashx_first (peer->inflight);
    while (job) {
        //  Detaching deletes from the hash we iterate: restart each time.
        peers_job_detach (job);
        if (s_take_back (self, job))
            requeued++;
        job = (job_t *) zhashx_first (peer->inflight);
    }
    peers_unserve (peer);
    if (peer->type == PEER_JOB_MANAGER && self->events)
        events_jobmanager (
            self->events, "left", peer->id,
            json_pack ("{s:s,s:I}", "reason", reason, "requeued", (json_int_t) requeued));
    log_info ("%s %s: %s, removed; %zu job(s) requeued",
              peer->type == PEER_SCHEDULER ? "scheduler" : "jobmanager", peer->id, reason,
              requeued);
    peers_delete (peers, peer);
}

//  --------------------------------------------------------------------------
//  Dispatch

//  Hands one job to one job manager. Returns 0, or -1 if the send failed
//  (the caller requeues the job and removes the peer).
static int
s_dispatch_one (router_t *self, peer_t *peer, job_t *job)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_REQUEST);
    if (!msg)
        return -1;
    uint64_t epoch = ++self->next_epoch;
    msg->identity = zframe_dup (peer->identity);
    job_msgid_t idbuf;
    const char *msgid = job_msgid (job, &idbuf);
    msg->msgid = strdup (msgid);
    msg->queue = strdup (job->queue->name);
    msg->headers = strdup (job_headers (job));
    msg->payload = zframe_new (job_payload (job), job->payload_size);
    if (peer->emq) {
        msg->epoch = epoch;
        msg->attempt = job->attempt + 1;
    }
    if (s_send (self, self->backend, &msg, peer->identity))
        return -1;

    int64_t now = clock_mono_ms ();
    s_fire (job, JOB_EV_DISPATCH);
    job->epoch = epoch;
    job->queue->latency_ms = (uint32_t) ((uint32_t) now - job->queued_at);
    metrics_observe_wait (self->metrics, job->queue->name,
                          (double) job->queue->latency_ms / 1000.0);
    s_event (self, job, "started",
             json_pack ("{s:s,s:I}", "jobmanager", peer->id, "wait_ms",
                        (json_int_t) job->queue->latency_ms));
    if (job->queue->latency_ms > job->queue->max_latency_ms)
        job->queue->max_latency_ms = job->queue->latency_ms;
    peers_slot_take (peer);
    peer->lru_tick = ++self->tick;
    if (store_set_dispatched (self->store, job->row, job->attempt, epoch))
        log_error ("store: %s", store_error (self->store));
    log_debug ("job %s: dispatched to %s epoch=%" PRIu64 " attempt=%u", msgid, peer->id,
               epoch, job->attempt);

    //  An EventMQ job manager never says when a job ends unless a reply
    //  was requested; such a job is done once delivered (EventMQ's own
    //  at-most-once semantics, documented in docs/protocol.md).
    if (!peer->emq && !job_parsed (job)->reply_requested) {
        peer->processed++;
        s_job_end (self, job, STORE_DONE, EMQP_STATUS_OK, NULL, NULL);
        return 0;
    }
    peers_job_attach (peer, job);
    return 0;
}

//  Dispatches waiting jobs of one queue while a job manager has room.
static void
s_dispatch_queue (router_t *self, queue_t *queue)
{
    while (queue_waiting (queue) > 0) {
        peer_t *peer = dispatch_pick (queue, self->settings.prefetch);
        if (!peer)
            break;
        job_t *job = queue_pop (queue);
        if (s_dispatch_one (self, peer, job)) {
            queue_push_front (queue, job, job->queued_at);
            s_peer_remove (self, self->job_managers, peer, "unreachable");
        }
    }
}

//  Dispatches to one job manager that has free slots, from its queues in
//  weight order.
static void
s_dispatch_peer (router_t *self, peer_t *peer)
{
    size_t cursor = 0;
    queue_t *queue;
    while ((queue = dispatch_next_queue (peer, self->settings.prefetch, &cursor))) {
        job_t *job = queue_pop (queue);
        if (s_dispatch_one (self, peer, job)) {
            queue_push_front (queue, job, job->queued_at);
            s_peer_remove (self, self->job_managers, peer, "unreachable");
            return;
        }
    }
}

static void
s_dispatch_all (router_t *self)
{
    self->redispatch = false;
    for (queue_t *queue = queues_first (self->queues); queue;
         queue = queues_next (self->queues))
        if (queue_waiting (queue) > 0 && zlistx_size (queue->servers) > 0)
            s_dispatch_queue (self, queue);
}

//  --------------------------------------------------------------------------
//  Frontend: clients and schedulers

//  STATUS's scheduled / retrying gauges: a scheduled job that ran before
//  waits out a retry's backoff (its attempt does not change meanwhile, so
//  the same test holds when it leaves).
static void
s_count_scheduled (router_t *self, job_t *job, int delta)
{
    metrics_count (self->metrics, job->queue->name,
                   job->attempt > 0 ? METRICS_RETRYING : METRICS_SCHEDULED, delta);
}

//  Puts a job that waits for a time in the scheduled list (by run_at): a
//  new or loaded one (JOB_EV_DELAY) or one backing off (JOB_EV_RETRY).
static void
s_schedule (router_t *self, job_t *job, double run_at, job_event_t event)
{
    job_more_t *more = job_more (job);
    if (!more) {
        log_error ("job %s: out of memory delaying it; queued now", JOB_MSGID (job));
        if (s_fire (job, event == JOB_EV_RETRY ? JOB_EV_REQUEUE : JOB_EV_ACCEPT) == 0) {
            queue_push (job->queue, job, clock_mono_ms ());
            self->redispatch = true;
        }
        return;
    }
    if (s_fire (job, event))
        return;
    more->run_at = run_at;
    more->scheduled_handle = zlistx_insert (self->scheduled, job, false);
    if (more->scheduled_handle)
        s_count_scheduled (self, job, 1);
    if (event == JOB_EV_DELAY)
        s_event (self, job, "scheduled", json_pack ("{s:f}", "run_at", run_at));
}

static void
s_unschedule (router_t *self, job_t *job)
{
    if (job->more && job->more->scheduled_handle) {
        zlistx_detach (self->scheduled, job->more->scheduled_handle);
        job->more->scheduled_handle = NULL;
        s_count_scheduled (self, job, -1);
    }
}

//  Fires of the emq scheduler have msgids "sched:<schedule>:<fire time>":
//  predictable, and idempotent submit keeps the first job under a msgid, so
//  only schedulers may use them (a client could pre-empt every fire).
#define S_FIRE_PREFIX "sched:"

//  True if addr (a Peer-Address: the IP of a tcp:// peer) is loopback.
static bool
s_is_loopback (const char *addr)
{
    return strncmp (addr, "127.", 4) == 0 || streq (addr, "::1")
           || strncmp (addr, "::ffff:127.", 11) == 0;
}

//  True if identity is NAME or NAME-<anything> for a NAME of the list (the
//  emq scheduler's identity is its name, a dash and 8 random characters).
static bool
s_identity_listed (const char *list, zframe_t *identity)
{
    const char *id = (const char *) zframe_data (identity);
    size_t id_len = zframe_size (identity);
    for (const char *p = list; *p;) {
        const char *end = strchr (p, ',');
        size_t len = end ? (size_t) (end - p) : strlen (p);
        if (len > 0 && len <= id_len && memcmp (id, p, len) == 0
            && (len == id_len || id[len] == '-'))
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

//  Who may act as a scheduler on the frontend: INFORM as one (and so get
//  SCHEDULE traffic), fence, use fire msgids. Under CURVE with a clients
//  directory, a key with the scheduler role; else a listed identity
//  (scheduler_identities; "*" = anyone); by default any peer on loopback or
//  ipc://. False with the reason in why.
static bool
s_scheduler_admitted (router_t *self, const emqp_msg_t *msg, char *why, size_t whylen)
{
    if (self->limits.meta_property) {
        if (msg->meta && curve_roles_match (msg->meta, "scheduler"))
            return true;
        snprintf (why, whylen, "its key's roles (%s) do not include scheduler",
                  msg->meta ? msg->meta : "none");
        return false;
    }
    const char *list = self->scheduler_identities;
    if (list && *list) {
        if (streq (list, "*") || s_identity_listed (list, msg->identity))
            return true;
        snprintf (why, whylen, "its identity is not in scheduler_identities");
        return false;
    }
    //  ipc:// peers are on this host; a tcp:// peer's address is its IP.
    if (self->frontend_local || !msg->peer_address || s_is_loopback (msg->peer_address))
        return true;
    snprintf (why, whylen,
              "it connects from %.64s, not loopback or ipc:// (see "
              "scheduler_identities)",
              msg->peer_address);
    return false;
}

//  A REQUEST that fences, or uses a fire msgid, must come from a registered
//  scheduler that is still admitted (its identity may have passed to
//  another connection). Answers ERROR NOT_ALLOWED and returns false if not.
static bool
s_client_request_allowed (router_t *self, emqp_msg_t *msg, const headers_t *parsed)
{
    bool fire = strncmp (msg->msgid, S_FIRE_PREFIX, strlen (S_FIRE_PREFIX)) == 0;
    if (!fire && !parsed->fence && !*parsed->fence_scope)
        return true;
    char why[160] = "it is not a registered scheduler (INFORM first)";
    if (peers_lookup (self->schedulers, msg->identity)
        && s_scheduler_admitted (self, msg, why, sizeof why))
        return true;
    char err[320];
    snprintf (err, sizeof err, "%s is for schedulers only, and %s",
              fire ? "a msgid starting '" S_FIRE_PREFIX "'" : "a fence header", why);
    log_warning_limited (&s_lim_refused, "client %s: REQUEST %s refused: %s",
                         S_SENDER (msg), msg->msgid, err);
    s_send_error (self, self->frontend, msg->identity, msg->msgid, "NOT_ALLOWED", err);
    return false;
}

static void
s_client_request (router_t *self, emqp_msg_t *msg)
{
    //  Fire msgids are the schedulers': refused before the msgid is looked
    //  up, so that a client learns nothing of the fires held.
    if (strncmp (msg->msgid, S_FIRE_PREFIX, strlen (S_FIRE_PREFIX)) == 0) {
        headers_t none = { 0 };
        if (!s_client_request_allowed (self, msg, &none))
            return;
    }
    //  A client that retries after a lost ACK must not duplicate work.
    if (self->recent && recent_has (self->recent, msg->msgid)) {
        log_debug ("client %s: REQUEST %s ended already", S_SENDER (msg), msg->msgid);
        s_send_ack (self, self->frontend, msg->identity, msg->msgid);
        return;
    }
    job_t *known = queues_job_lookup (self->queues, msg->msgid);
    if (known) {
        log_debug ("client %s: REQUEST %s is already held", S_SENDER (msg), msg->msgid);
        //  A job still waiting for its commit gets its ACK after it.
        if (known->state != JOB_PENDING)
            s_send_ack (self, self->frontend, msg->identity, msg->msgid);
        return;
    }
    headers_t parsed;
    char err[256];
    if (headers_parse (msg->headers, &parsed, err, sizeof err)) {
        log_warning_limited (&s_lim_refused, "client %s: REQUEST %s refused: %s",
                             S_SENDER (msg), msg->msgid, err);
        s_send_error (self, self->frontend, msg->identity, msg->msgid, "BAD_REQUEST",
                      err);
        return;
    }
    if (!s_client_request_allowed (self, msg, &parsed))
        return;
    //  A scheduler's fire carries its leadership's fencing token: a deposed
    //  leader (older token in the same scope) must not fire, even if it
    //  still believes it leads. Only an admitted scheduler may fence at all
    //  (s_client_request_allowed).
    if (parsed.fence) {
        uint64_t held = 0;
        fences_verdict_t verdict =
            fences_check (self->fences, parsed.fence_scope, parsed.fence, &held);
        const char *code = "FENCED";
        if (verdict == FENCES_STALE)
            snprintf (err, sizeof err,
                      "fencing token %" PRIu64 " is older than %" PRIu64
                      " (scope '%s'): another scheduler leads",
                      parsed.fence, held, parsed.fence_scope);
        else if (verdict == FENCES_FULL)
            snprintf (err, sizeof err, "too many fence scopes (%d); scope '%s' refused",
                      FENCES_SCOPES_MAX, parsed.fence_scope);
        else if (verdict == FENCES_TOO_LARGE) {
            code = "BAD_REQUEST";
            snprintf (err, sizeof err, "fence:%" PRIu64 " is not below 2^63",
                      parsed.fence);
        }
        if (verdict != FENCES_OK) {
            log_warning_limited (&s_lim_refused, "scheduler %s: REQUEST %s refused: %s",
                                 S_SENDER (msg), msg->msgid, err);
            s_send_error (self, self->frontend, msg->identity, msg->msgid, code, err);
            return;
        }
    }
    queues_refusal_t refusal;
    queue_t *queue = queues_require_for (self->queues, msg->queue, msg->identity,
                                         self->settings.client_queues_max, &refusal);
    if (!queue) {
        if (refusal == QUEUES_CLIENT_FULL)
            snprintf (err, sizeof err,
                      "queue '%s' cannot be created: this client holds %zu queues in "
                      "use, its limit (client_queues_max)",
                      msg->queue, self->settings.client_queues_max);
        else if (refusal == QUEUES_FULL)
            snprintf (err, sizeof err,
                      "queue '%s' cannot be created: the router holds %d "
                      "clients' queues in use, its limit",
                      msg->queue, QUEUES_MAX);
        else
            snprintf (err, sizeof err, "queue '%s' cannot be created: out of memory",
                      msg->queue);
        log_warning_limited (&s_lim_refused, "client %s: REQUEST %s refused: %s",
                             S_SENDER (msg), msg->msgid, err);
        s_send_error (self, self->frontend, msg->identity, msg->msgid, "QUEUE_LIMIT",
                      err);
        return;
    }
    //  Jobs of this turn count too: a BATCH (or a burst) must not overrun it.
    if (queue_waiting (queue) + queue->accepting >= self->settings.queue_hwm) {
        snprintf (err, sizeof err,
                  "queue '%s' is full (%zu jobs waiting, high-water mark %zu)",
                  msg->queue, queue_waiting (queue) + queue->accepting,
                  self->settings.queue_hwm);
        log_warning_limited (&s_lim_refused, "client %s: REQUEST %s refused: %s",
                             S_SENDER (msg), msg->msgid, err);
        s_send_error (self, self->frontend, msg->identity, msg->msgid, "QUEUE_FULL", err);
        return;
    }
    double now = clock_wall_s ();
    double run_at = parsed.eta       ? (double) parsed.eta
                    : parsed.delay_s ? now + parsed.delay_s
                                     : 0;
    store_row_t row = { .msgid = msg->msgid,
                        .queue = msg->queue,
                        .headers = msg->headers,
                        .payload = zframe_data (msg->payload),
                        .payload_size = zframe_size (msg->payload),
                        .client = zframe_data (msg->identity),
                        .client_size = zframe_size (msg->identity),
                        .state = run_at > now ? STORE_SCHEDULED : STORE_QUEUED,
                        .retries_left = parsed.retry_count,
                        .run_at = run_at,
                        .created_at = now };
    int64_t seq = 0;
    if (store_insert (self->store, &row, &seq)) {
        log_error ("store: REQUEST %s from %s not stored: %s", msg->msgid, S_SENDER (msg),
                   store_error (self->store));
        snprintf (err, sizeof err, "the router cannot store jobs: %s",
                  store_error (self->store));
        s_send_error (self, self->frontend, msg->identity, msg->msgid, "STORAGE", err);
        return;
    }
    //  A msgid held before and already ended is found at the commit (its
    //  row is not written twice): then it is ACKed again, not run (s_settle).
    job_t *job =
        queues_job_new (self->queues, msg->msgid, msg->queue, msg->headers, &parsed,
                        zframe_data (msg->payload), zframe_size (msg->payload),
                        zframe_data (msg->identity), zframe_size (msg->identity));
    if (!job) {
        s_send_error (self, self->frontend, msg->identity, msg->msgid, "INTERNAL",
                      "out of memory");
        return;
    }
    if (run_at > now) {
        job_more_t *more = job_more (job);
        if (!more) {
            queues_job_delete (self->queues, job);
            s_send_error (self, self->frontend, msg->identity, msg->msgid, "INTERNAL",
                          "out of memory");
            return;
        }
        more->run_at = run_at;
    }
    job->row = seq;
    //  Not dispatched, not ACKed, until the batch is committed (s_settle).
    zlistx_add_end (self->pending, job);
    job->queue->accepting++;
}

typedef struct {
    router_t *self;
    zframe_t *to;
} s_fetch_ctx_t;

static int
s_send_stored_result (const store_row_t *row, void *arg)
{
    s_fetch_ctx_t *ctx = (s_fetch_ctx_t *) arg;
    emqp_status_t status = EMQP_STATUS_FAILED;
    if (!row->status || emqp_status_lookup (row->status, &status))
        status = row->state == STORE_DONE ? EMQP_STATUS_OK : EMQP_STATUS_FAILED;
    s_send_result (ctx->self, ctx->to, row->msgid, status, row->result ? row->result : "",
                   row->result_size, row->usage);
    return 0;
}

//  FETCH: the outcome of a job, now if it ended, else when it does.
static void
s_client_fetch (router_t *self, emqp_msg_t *msg)
{
    job_t *job = queues_job_lookup (self->queues, msg->ref);
    if (job && job->state == JOB_ENDED) {
        job_more_t *more = job->more;
        s_send_result (self, msg->identity, JOB_MSGID (job),
                       (emqp_status_t) more->end_status, zframe_data (more->end_value),
                       zframe_size (more->end_value), more->end_usage);
        return;
    }
    if (job) {
        job_more_t *more = job_more (job);
        if (more && !more->watchers) {
            more->watchers = zlistx_new ();
            if (more->watchers)
                zlistx_set_destructor (more->watchers,
                                       (czmq_destructor *) zframe_destroy);
        }
        if (!more || !more->watchers) {
            s_send_error (self, self->frontend, msg->identity, msg->msgid, "INTERNAL",
                          "out of memory");
            return;
        }
        for (zframe_t *w = (zframe_t *) zlistx_first (more->watchers); w;
             w = (zframe_t *) zlistx_next (more->watchers))
            if (zframe_eq (w, msg->identity))
                return;
        if (zlistx_size (more->watchers) < 64)
            zlistx_add_end (more->watchers, zframe_dup (msg->identity));
        return;
    }
    //  Not in memory: it ended (or never was). Its row has the outcome.
    s_fetch_ctx_t ctx = { self, msg->identity };
    int found = store_fetch (self->store, msg->ref, s_send_stored_result, &ctx);
    if (found == 0)
        s_send_error (self, self->frontend, msg->identity, msg->ref, "NOT_FOUND",
                      "no such job (never submitted, or its result expired)");
    else if (found < 0)
        s_send_error (self, self->frontend, msg->identity, msg->ref, "STORAGE",
                      store_error (self->store));
}

static void
s_scheduler_inform (router_t *self, emqp_msg_t *msg)
{
    char why[160];
    if (!s_scheduler_admitted (self, msg, why, sizeof why)) {
        char err[256];
        snprintf (err, sizeof err, "INFORM as a scheduler refused: %s", why);
        log_warning_limited (&s_lim_frontend, "client %s: %s", S_SENDER (msg), err);
        s_send_error (self, self->frontend, msg->identity, msg->msgid, "NOT_ALLOWED",
                      err);
        return;
    }
    peer_t *peer = peers_lookup (self->schedulers, msg->identity);
    if (!peer)
        peer = peers_add (self->schedulers, msg->identity, PEER_SCHEDULER);
    if (!peer)
        return;
    peer->last_heard_ms = peer->registered_ms = clock_mono_ms ();
    peer->lru_tick = ++self->tick;
    log_info ("scheduler %s: registered (from %s)", peer->id,
              msg->peer_address ? msg->peer_address : "ipc");
    s_send_ack (self, self->frontend, msg->identity, msg->msgid);
}

//  SCHEDULE goes to the most recently registered scheduler, UNSCHEDULE to
//  all, as EventMQ does; the client gets ACK once it is forwarded, or
//  ERROR NO_SCHEDULER. The router remembers who sent it for a while, so
//  that a scheduler's refusal (ERROR, e.g. a bad cron field) reaches them.
static void
s_forward_schedule (router_t *self, emqp_msg_t *msg)
{
    zlistx_t *list = peers_list (self->schedulers);
    peer_t *newest = NULL;
    for (peer_t *peer = list ? (peer_t *) zlistx_first (list) : NULL; peer;
         peer = (peer_t *) zlistx_next (list))
        if (!newest || peer->lru_tick > newest->lru_tick)
            newest = peer;
    size_t sent = 0;
    for (peer_t *peer = list ? (peer_t *) zlistx_first (list) : NULL; peer;
         peer = (peer_t *) zlistx_next (list)) {
        if (msg->command == EMQP_SCHEDULE && peer != newest)
            continue;
        emqp_msg_t *copy = emqp_msg_new (msg->command);
        copy->identity = zframe_dup (peer->identity);
        copy->msgid = strdup (msg->msgid);
        copy->queue = strdup (msg->queue);
        copy->headers = strdup (msg->headers);
        copy->interval_s = msg->interval_s;
        copy->payload = zframe_dup (msg->payload);
        copy->cron = strdup (msg->cron);
        if (s_send (self, self->frontend, &copy, peer->identity) == 0)
            sent++;
    }
    zlistx_destroy (&list);
    if (sent == 0) {
        s_send_error (self, self->frontend, msg->identity, msg->msgid, "NO_SCHEDULER",
                      "no scheduler is connected to this router");
        return;
    }
    s_send_ack (self, self->frontend, msg->identity, msg->msgid);
    if (zhashx_size (self->schedule_senders) < 10000) {
        zframe_t *sender = zframe_dup (msg->identity);
        zhashx_update (self->schedule_senders, msg->msgid, sender);
    }
}

//  A scheduler refused a SCHEDULE/UNSCHEDULE: tell the client that sent it.
static void
s_relay_schedule_error (router_t *self, emqp_msg_t *msg)
{
    zframe_t *sender =
        msg->ref ? (zframe_t *) zhashx_lookup (self->schedule_senders, msg->ref) : NULL;
    if (!sender)
        return;
    log_info ("scheduler refused %s: %s: %s", msg->ref, msg->error_code, msg->error_text);
    s_send_error (self, self->frontend, sender, msg->ref, msg->error_code,
                  msg->error_text);
    zhashx_delete (self->schedule_senders, msg->ref);
}

static void
s_frontend_message (router_t *self, emqp_msg_t *msg)
{
    peer_t *scheduler = peers_lookup (self->schedulers, msg->identity);
    char why[160];
    if (scheduler && !s_scheduler_admitted (self, msg, why, sizeof why)) {
        //  Its identity passed to a connection that may not schedule.
        log_warning ("scheduler %s: %s", scheduler->id, why);
        s_peer_remove (self, self->schedulers, scheduler, "no longer admitted");
        scheduler = NULL;
    }
    if (scheduler)
        scheduler->last_heard_ms = clock_mono_ms ();

    switch (msg->command) {
        case EMQP_REQUEST:
            s_client_request (self, msg);
            break;
        case EMQP_FETCH:
            s_client_fetch (self, msg);
            break;
        case EMQP_INFORM:
            if (streq (msg->peer_type, "scheduler"))
                s_scheduler_inform (self, msg);
            else {
                log_warning_limited (
                    &s_lim_frontend,
                    "client %s: INFORM type '%s' refused on the frontend", S_SENDER (msg),
                    msg->peer_type);
                s_send_error (self, self->frontend, msg->identity, msg->msgid,
                              "NOT_ALLOWED",
                              "only schedulers INFORM on the frontend; job managers use "
                              "the backend");
            }
            break;
        case EMQP_SCHEDULE:
        case EMQP_UNSCHEDULE:
            s_forward_schedule (self, msg);
            break;
        case EMQP_HEARTBEAT:
            //  An emq scheduler reports its schedules and leadership here.
            if (scheduler && msg->stats) {
                free (scheduler->stats);
                scheduler->stats = msg->stats;
                msg->stats = NULL;
            }
            else if (!scheduler && msg->stats)
                //  An emq scheduler we do not know (we restarted): it should
                //  register again. Plain clients send no stats, get nothing.
                s_send_error (self, self->frontend, msg->identity, msg->msgid,
                              "UNKNOWN_PEER",
                              "not registered with this router: send INFORM");
            break;
        case EMQP_ACK:
        case EMQP_REPLY:
        case EMQP_HELLO:
            break;  // liveness only; EventMQ answers none of these
        case EMQP_KBYE:
            if (scheduler)
                s_peer_remove (self, self->schedulers, scheduler, "said KBYE");
            break;
        case EMQP_DISCONNECT:
            log_warning_limited (&s_lim_frontend,
                                 "client %s: DISCONNECT refused on the frontend "
                                 "(admin socket only)",
                                 S_SENDER (msg));
            s_send_error (self, self->frontend, msg->identity, msg->msgid, "NOT_ALLOWED",
                          "DISCONNECT is accepted on the admin socket only");
            break;
        case EMQP_ERROR:
            if (scheduler)
                s_relay_schedule_error (self, msg);
            else
                log_warning_limited (&s_lim_frontend, "client %s: sent ERROR %s: %s",
                                     S_SENDER (msg), msg->error_code, msg->error_text);
            break;  // never answer an ERROR with an ERROR
        default:
            log_warning_limited (&s_lim_frontend,
                                 "client %s: %s is not a frontend command",
                                 S_SENDER (msg), emqp_command_name (msg->command));
            s_send_error (self, self->frontend, msg->identity, msg->msgid, "UNEXPECTED",
                          "command not accepted on the frontend");
    }
    emqp_msg_destroy (&msg);
}

//  --------------------------------------------------------------------------
//  Backend: job managers

static void
s_jm_inform (router_t *self, emqp_msg_t *msg, peer_t *peer)
{
    char id[600];
    peers_id_of (msg->identity, id, sizeof id);
    if (!streq (msg->peer_type, "worker")) {
        log_warning ("jobmanager %s: INFORM type '%s' refused on the backend", id,
                     msg->peer_type);
        s_send_error (self, self->backend, msg->identity, msg->msgid, "NOT_ALLOWED",
                      "only job managers (type 'worker') INFORM on the backend");
        return;
    }
    char err[256];
    size_t count;
    queuespec_t *specs = queuespec_parse (msg->queues, &count, err, sizeof err);
    if (!specs) {
        log_warning ("jobmanager %s: INFORM refused: %s", id, err);
        s_send_error (self, self->backend, msg->identity, msg->msgid, "BAD_REQUEST", err);
        return;
    }
    bool joined = !peer;
    if (peer)
        //  The same job manager informs again (it lost our ACK): keep its
        //  jobs in flight, forget its slots (it announces them again;
        //  prefetched jobs are still held there: READYs will repay them).
        peer->slots = 0;
    else
        peer = peers_add (self->job_managers, msg->identity, PEER_JOB_MANAGER);
    if (!peer) {
        free (specs);
        return;
    }
    int skipped = peers_serve (peer, self->queues, specs, count, msg->queues);
    free (specs);
    if (skipped < 0) {
        log_error ("jobmanager %s: out of memory registering its queues", peer->id);
        return;
    }
    if (skipped > 0)
        log_warning ("jobmanager %s: %d of its queues not served: the router holds %d "
                     "queues, its limit",
                     peer->id, skipped, QUEUES_MAX + QUEUES_JM_RESERVE);
    peer->emq =
        msg->agent && strneq (msg->agent, "") && strncmp (msg->agent, "emq/", 4) == 0;
    //  emq/2 job managers send no READY after a DONE (or a RETURN).
    peer->done_frees = peer->emq && atoi (msg->agent + 4) >= 2;
    //  emq/3 job managers take BATCH: several REQUESTs in one message.
    outbox_allow (self->to_jms, peer->identity, peer->emq && atoi (msg->agent + 4) >= 3);
    peer->last_heard_ms = peer->registered_ms = clock_mono_ms ();
    if (self->events && joined)
        events_jobmanager (self->events, "joined", peer->id,
                           json_pack ("{s:s,s:s}", "queues",
                                      *msg->queues ? msg->queues : "", "agent",
                                      peer->emq ? msg->agent : "eventmq"));
    log_info ("jobmanager %s: registered queues=%s agent=%s", peer->id,
              *msg->queues ? msg->queues : "(default)",
              peer->emq ? msg->agent : "eventmq");
    emqp_msg_t *ack = emqp_msg_new (EMQP_ACK);
    if (ack) {
        ack->identity = zframe_dup (msg->identity);
        ack->ref = strdup (msg->msgid);
        //  An emq job manager learns what this router understands: emq/2
        //  (DONE and RETURN free slots), emq/3 (BATCH). EventMQ's get the
        //  plain ACK.
        ack->agent = peer->emq ? strdup ("emq/3") : NULL;
        s_send (self, self->backend, &ack, msg->identity);
    }
    //  EventMQ's job manager starts its workers on our first HEARTBEAT.
    s_send_simple (self, self->backend, peer, EMQP_HEARTBEAT);
}

//  Exponential backoff with jitter: base x 2^(attempt-1), capped, then a
//  random 50..100 % of it so that retries of a burst spread out.
static double
s_backoff_s (router_t *self, uint32_t attempt)
{
    double delay = self->settings.retry_backoff_s;
    for (uint32_t i = 1; i < attempt && delay < self->settings.retry_backoff_max_s; i++)
        delay *= 2;
    if (delay > self->settings.retry_backoff_max_s)
        delay = self->settings.retry_backoff_max_s;
    return delay * (0.5 + 0.5 * ((double) (random () % 10001) / 10000.0));
}

//  A job manager reports the end of a job (DONE, or EventMQ's REPLY).
static void
s_jm_outcome (router_t *self, emqp_msg_t *msg, peer_t *peer, bool legacy)
{
    if (!msg->ref) {
        log_debug ("jobmanager %s: REPLY without request msgid ignored", S_SENDER (msg));
        return;
    }
    job_t *job = queues_job_lookup (self->queues, msg->ref);
    if (!job) {
        log_info ("jobmanager %s: outcome for unknown or ended job %s ignored",
                  S_SENDER (msg), msg->ref);
        return;
    }
    //  A job that was running when the router last stopped came back
    //  queued with its epoch: the DONE of that dispatch ends it, rather than
    //  running it again.
    if (!legacy && job->state == JOB_QUEUED && job_epoch (job)
        && msg->epoch == job_epoch (job)) {
        log_info (
            "jobmanager %s: job %s ended under the previous router life (epoch %" PRIu64
            "); not run again",
            S_SENDER (msg), JOB_MSGID (job), job_epoch (job));
        queue_unlink (job->queue, job);
        s_fire (job, JOB_EV_RESUME);
    }
    //  Fencing: only the latest dispatch of a running job may end it.
    if (job->state != JOB_RUNNING || (!legacy && msg->epoch != job->epoch)
        || (legacy && job->peer != peer)) {
        log_warning_limited (&s_lim_backend,
                             "jobmanager %s: stale outcome for job %s ignored "
                             "(epoch %" PRIu64 ", current %" PRIu64 ", state %s)",
                             S_SENDER (msg), JOB_MSGID (job), msg->epoch, job_epoch (job),
                             job_state_name (job->state));
        return;
    }
    if (job->peer)
        job->peer->processed++;
    peers_job_detach (job);
    emqp_status_t status = legacy ? EMQP_STATUS_OK : msg->status;
    double run_s = metrics_usage_wall_s (msg->usage);
    if (run_s >= 0)
        metrics_observe_run (self->metrics, job->queue->name, run_s);
    if (legacy) {
        //  EventMQ's reply is JSON text {"value": ...}; clients of emq get
        //  msgpack values, so wrap it as a msgpack string.
        zframe_t *wrapped =
            payload_pack_str (zframe_data (msg->payload), zframe_size (msg->payload));
        if (!wrapped) {
            log_error ("job %s: out of memory wrapping its reply; the reply is lost",
                       JOB_MSGID (job));
            wrapped = payload_pack_str ("", 0);
        }
        zframe_destroy (&msg->payload);
        msg->payload = wrapped;
    }
    if (status == EMQP_STATUS_OK) {
        s_job_end (self, job, STORE_DONE, status, msg->payload, msg->usage);
        return;
    }
    if (job_flag (job, JOB_CANCEL_REQUESTED)) {
        s_job_end (self, job, STORE_CANCELLED, EMQP_STATUS_CANCELLED, msg->payload,
                   msg->usage);
        return;
    }
    if (job->retries_left > 0 && status != EMQP_STATUS_REJECTED) {
        job->retries_left--;
        double delay = s_backoff_s (self, job->attempt);
        char shown[160];
        log_info ("job %s: %s on attempt %u (%s), retry in %.2f s; %u retr%s left",
                  JOB_MSGID (job), emqp_status_name (status), job->attempt,
                  emqp_printable (zframe_data (msg->payload), zframe_size (msg->payload),
                                  shown, sizeof shown),
                  delay, job->retries_left, job->retries_left == 1 ? "y" : "ies");
        double run_at = clock_wall_s () + delay;
        s_event (
            self, job, "retried",
            json_pack ("{s:s,s:s,s:f,s:I}", "status", emqp_status_name (status), "error",
                       emqp_printable (zframe_data (msg->payload),
                                       zframe_size (msg->payload), shown, sizeof shown),
                       "run_at", run_at, "retries_left", (json_int_t) job->retries_left));
        if (store_set_waiting (self->store, job->row, STORE_SCHEDULED, job->retries_left,
                               run_at))
            log_error ("store: %s", store_error (self->store));
        s_schedule (self, job, run_at, JOB_EV_RETRY);
        return;
    }
    //  A job that had retries and used them all is dead (re-drivable); one
    //  that asked for none simply failed. Both keep their error.
    s_job_end (self, job, job_parsed (job)->retry_count > 0 ? STORE_DEAD : STORE_FAILED,
               status, msg->payload, msg->usage);
}

//  A worker freed up (READY, an emq/2 DONE/RETURN): dispatch to it.
static void
s_slot_freed (router_t *self, peer_t *peer)
{
    peers_slot_credit (peer);
    peers_note_done (peer, clock_mono_ms ());
    s_dispatch_peer (self, peer);
}

//  Lease check against an emq/2 job manager's own account of its jobs
//  (peers_lease_check): a REQUEST can be lost inside ZeroMQ (a TCP
//  connection that dropped and came back under the same identity),
//  leaving a job the router thinks runs there and the job manager never
//  got. Such a job goes back to the head of its queue (at-least-once).
//  Nothing is dispatched from here: the peer must stay valid for the
//  caller; s_flush dispatches.
static void
s_reconcile (router_t *self, peer_t *peer, const char *stats)
{
    zlistx_t *lost = peers_lease_check (peer, stats, clock_mono_ms (),
                                        2 * self->settings.heartbeat_interval_ms);
    for (job_t *job = lost ? (job_t *) zlistx_first (lost) : NULL; job;
         job = (job_t *) zlistx_next (lost)) {
        log_warning_limited (&s_lim_backend,
                             "jobmanager %s: does not hold job %s (epoch %" PRIu64
                             ") it was sent; "
                             "the job goes back to its queue",
                             peer->id, JOB_MSGID (job), job->epoch);
        s_take_back (self, job);
        self->redispatch = true;  // its slot is free again
    }
    zlistx_destroy (&lost);
}

//  RETURN: a job manager gives back a job it received beyond its idle
//  workers and could not start within its prefetch_hold_ms. It was never
//  run: it goes back to the head of its queue, its attempt not counted,
//  and waits for a free slot (a prefetch would only park it again).
static void
s_jm_return (router_t *self, emqp_msg_t *msg, peer_t *peer)
{
    job_t *job = queues_job_lookup (self->queues, msg->ref);
    if (!job || job->state != JOB_RUNNING || job->epoch != msg->epoch
        || job->peer != peer)
        log_info ("jobmanager %s: RETURN of job %s (epoch %" PRIu64
                  ") ignored: not running "
                  "there",
                  S_SENDER (msg), msg->ref, msg->epoch);
    else if (job_flag (job, JOB_CANCEL_REQUESTED)) {
        peers_job_detach (job);
        s_job_end (self, job, STORE_CANCELLED, EMQP_STATUS_CANCELLED, NULL, NULL);
    }
    else {
        log_debug ("jobmanager %s: returned job %s unstarted", S_SENDER (msg),
                   JOB_MSGID (job));
        peers_job_detach (job);
        s_fire (job, JOB_EV_RETURN);
        s_event (self, job, "returned", json_pack ("{s:s}", "jobmanager", peer->id));
        //  The store counted the dispatch: after a restart the attempt
        //  number must not count this one either.
        if (store_set_dispatched (self->store, job->row, job->attempt, job->epoch))
            log_error ("store: %s", store_error (self->store));
        queue_push_front (job->queue, job, job->queued_at);
        self->redispatch = true;
    }
    //  A RETURN stands for the READY of the slot the job held.
    if (peer) {
        peers_note_return (peer);
        s_slot_freed (self, peer);
    }
}

static void
s_backend_message (router_t *self, emqp_msg_t *msg)
{
    peer_t *peer = peers_lookup (self->job_managers, msg->identity);
    if (peer)
        peer->last_heard_ms = clock_mono_ms ();

    //  An unknown peer may only INFORM, or report outcomes (a job manager
    //  that reconnected under a new identity still owns its running jobs).
    if (!peer && msg->command != EMQP_INFORM && msg->command != EMQP_DONE
        && msg->command != EMQP_RETURN && msg->command != EMQP_KBYE
        && msg->command != EMQP_ERROR) {
        //  Usually a job manager of a router that restarted: tell it, so an
        //  emq job manager registers again at once (EventMQ's ignores it
        //  and re-registers when our heartbeats do not come).
        log_debug ("jobmanager %s: %s before INFORM; asked to register", S_SENDER (msg),
                   emqp_command_name (msg->command));
        if (msg->command == EMQP_HEARTBEAT || msg->command == EMQP_READY)
            s_send_error (self, self->backend, msg->identity, msg->msgid, "UNKNOWN_PEER",
                          "not registered with this router: send INFORM");
        emqp_msg_destroy (&msg);
        return;
    }
    switch (msg->command) {
        case EMQP_INFORM:
            s_jm_inform (self, msg, peer);
            break;
        case EMQP_READY:
            s_slot_freed (self, peer);
            break;
        case EMQP_DONE:
            s_jm_outcome (self, msg, peer, false);
            if (peer && peer->done_frees)
                s_slot_freed (self, peer);
            break;
        case EMQP_RETURN:
            s_jm_return (self, msg, peer);
            break;
        case EMQP_REPLY:
            s_jm_outcome (self, msg, peer, true);
            break;
        case EMQP_HEARTBEAT:
            if (msg->stats && peer->done_frees)
                s_reconcile (self, peer, msg->stats);
            if (msg->stats) {
                free (peer->stats);
                peer->stats = msg->stats;
                msg->stats = NULL;
            }
            break;
        case EMQP_KBYE:
            if (peer)
                s_peer_remove (self, self->job_managers, peer, "said KBYE");
            break;
        case EMQP_ACK:
            break;
        case EMQP_ERROR:
            log_warning_limited (&s_lim_backend, "jobmanager %s: sent ERROR %s: %s",
                                 S_SENDER (msg), msg->error_code, msg->error_text);
            break;
        default:
            log_warning_limited (&s_lim_backend,
                                 "jobmanager %s: %s is not a backend command",
                                 S_SENDER (msg), emqp_command_name (msg->command));
            s_send_error (self, self->backend, msg->identity, msg->msgid, "UNEXPECTED",
                          "command not accepted on the backend");
    }
    emqp_msg_destroy (&msg);
}

//  --------------------------------------------------------------------------
//  Admin socket

static void
s_admin_reply (router_t *self, emqp_msg_t *request, char *json)
{
    if (!json) {
        s_send_error (self, self->admin, request->identity, request->msgid, "INTERNAL",
                      "could not build the reply");
        return;
    }
    emqp_msg_t *reply = emqp_msg_new (EMQP_REPLY);
    reply->identity = zframe_dup (request->identity);
    reply->payload = zframe_new (json, strlen (json));
    free (json);
    s_send (self, self->admin, &reply, request->identity);
}

static void
s_kbye_all (router_t *self, peers_t *peers, zsock_t *sock)
{
    zlistx_t *list = peers_list (peers);
    for (peer_t *peer = list ? (peer_t *) zlistx_first (list) : NULL; peer;
         peer = (peer_t *) zlistx_next (list))
        s_send_simple (self, sock, peer, EMQP_KBYE);
    zlistx_destroy (&list);
}

static int
s_on_stop (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    (void) arg;
    return -1;  // ends zloop_start
}

//  CANCEL: a waiting job ends at once; a running one is killed by its job
//  manager and ends when it reports (DONE).
static void
s_admin_cancel (router_t *self, emqp_msg_t *msg)
{
    job_t *job = queues_job_lookup (self->queues, msg->ref);
    if (!job) {
        s_send_error (self, self->admin, msg->identity, msg->ref, "NOT_FOUND",
                      "no such job waiting or running (it may have ended)");
        return;
    }
    switch (job->state) {
        case JOB_QUEUED:
        case JOB_SCHEDULED:
            log_info ("job %s: cancelled while %s", JOB_MSGID (job),
                      job_state_name (job->state));
            queue_unlink (job->queue, job);
            s_unschedule (self, job);
            s_send_ack (self, self->admin, msg->identity, msg->msgid);
            s_job_end (self, job, STORE_CANCELLED, EMQP_STATUS_CANCELLED, NULL, NULL);
            break;
        case JOB_RUNNING:
            if (!job->peer || !job->peer->emq) {
                s_send_error (
                    self, self->admin, msg->identity, msg->ref, "NOT_ALLOWED",
                    "the job runs on an EventMQ job manager, which cannot cancel");
                break;
            }
            emqp_msg_t *cancel = emqp_msg_new (EMQP_CANCEL);
            cancel->identity = zframe_dup (job->peer->identity);
            cancel->ref = strdup (JOB_MSGID (job));
            cancel->epoch = job->epoch;
            if (s_send (self, self->backend, &cancel, job->peer->identity)) {
                s_send_error (self, self->admin, msg->identity, msg->ref, "UNREACHABLE",
                              "the job manager running the job cannot be reached");
                break;
            }
            job_set_flag (job, JOB_CANCEL_REQUESTED, true);
            log_info ("job %s: cancel sent to %s", JOB_MSGID (job), job->peer->id);
            s_send_ack (self, self->admin, msg->identity, msg->msgid);
            break;
        case JOB_ENDED:
            s_send_error (self, self->admin, msg->identity, msg->ref, "NOT_FOUND",
                          "the job has already ended");
            break;
        default:
            s_send_error (self, self->admin, msg->identity, msg->ref, "BUSY",
                          "the job is being stored; try again");
    }
}

static int
s_dead_json (const store_row_t *row, void *arg)
{
    json_t *list = (json_t *) arg;
    json_t *item = json_object ();
    json_object_set_new (item, "msgid", json_string (row->msgid));
    json_object_set_new (item, "queue", json_string (row->queue));
    json_object_set_new (item, "attempts", json_integer (row->attempt));
    json_object_set_new (item, "status", json_string (row->status ? row->status : ""));
    char shown[512];
    emqp_printable (row->result ? row->result : "", row->result_size, shown,
                    sizeof shown);
    json_object_set_new (item, "error", json_string (shown));
    json_object_set_new (item, "created_at", json_real (row->created_at));
    json_object_set_new (item, "ended_at", json_real (row->ended_at));
    json_array_append_new (list, item);
    return 0;
}

//  A job record for a stored row (a restart, or a dead job run again), not
//  yet in any list; NULL when out of memory.
static job_t *
s_job_from_row (router_t *self, const store_row_t *row)
{
    headers_t parsed;
    char err[256];
    if (headers_parse (row->headers, &parsed, err, sizeof err))
        memset (&parsed, 0, sizeof parsed);
    job_t *job =
        queues_job_new (self->queues, row->msgid, row->queue, row->headers, &parsed,
                        row->payload ? row->payload : "", row->payload_size,
                        row->client_size ? row->client : NULL, row->client_size);
    if (job) {
        job->row = row->seq;
        job->attempt = row->attempt;
    }
    return job;
}

//  Brings a dead job back into its queue with its retries restored.
static int
s_dead_revive (const store_row_t *row, void *arg)
{
    router_t *self = (router_t *) arg;
    if (row->state != STORE_DEAD || queues_job_lookup (self->queues, row->msgid))
        return 0;
    job_t *job = s_job_from_row (self, row);
    if (!job)
        return -1;
    //  The row as read (a purge or expiry on its way may delete it before
    //  this write runs: then it is written again whole).
    if (store_revive (self->store, row, job->retries_left))
        log_error ("store: %s", store_error (self->store));
    metrics_count (self->metrics, job->queue->name, METRICS_DEAD, -1);
    if (s_fire (job, JOB_EV_ACCEPT) == 0) {
        s_event (self, job, "queued", json_pack ("{s:b}", "revived", true));
        queue_push (job->queue, job, clock_mono_ms ());
        self->redispatch = true;
    }
    log_info ("job %s: dead job queued again", JOB_MSGID (job));
    return 0;
}

//  Deletes one dead job (DEAD_DELETE): its row ends as cancelled, so that it
//  leaves the dead list now and the store with the results' retention;
//  its error stays readable by FETCH until then. outcome says what
//  happened: 1 deleted, 0 not dead, -1 the write failed.
typedef struct {
    router_t *router;
    int outcome;
} s_discard_t;

static int
s_dead_discard (const store_row_t *row, void *arg)
{
    s_discard_t *discard = (s_discard_t *) arg;
    router_t *self = discard->router;
    if (row->state != STORE_DEAD || queues_job_lookup (self->queues, row->msgid))
        return 0;
    if (store_set_ended (self->store, row->seq, STORE_CANCELLED, row->status, row->result,
                         row->result_size, row->usage, clock_wall_s ())) {
        log_error ("store: %s", store_error (self->store));
        discard->outcome = -1;
        return 0;
    }
    log_info ("job %s: dead job deleted (admin)", row->msgid);
    metrics_count (self->metrics, row->queue, METRICS_DEAD, -1);
    if (self->events)
        events_job (self->events, "cancelled", row->queue, row->msgid, row->attempt,
                    json_pack ("{s:s,s:b}", "status", "cancelled", "deleted", true));
    discard->outcome = 1;
    return 0;
}

#define S_REVIVE_CHUNK 1000

//  The end of a dead retry --all or purge: the REPLY, with the whole count.
static void
s_dead_task_done (router_t *self, int rc)
{
    emqp_msg_t *task = self->dead_task;
    if (!task)
        return;
    json_t *reply = json_object ();
    bool retry = task->command == EMQP_DEAD_RETRY;
    json_object_set_new (reply, retry ? "retried" : "purged",
                         json_integer (self->dead_done));
    if (rc < 0)
        json_object_set_new (reply, "error", json_string (store_error (self->store)));
    log_info ("admin: %" PRId64 " dead job(s) %s", self->dead_done,
              retry ? "queued again" : "purged");
    s_admin_reply (self, task, json_dumps (reply, JSON_COMPACT));
    json_decref (reply);
    emqp_msg_destroy (&self->dead_task);
}

//  dead retry --all: one page of the dead list per loop turn. dead purge:
//  the writer deletes in chunks, and its STORE_EV_PURGED event ends it.
static int
s_on_dead_task (zloop_t *loop, int timer_id, void *arg)
{
    (void) timer_id;
    router_t *self = (router_t *) arg;
    emqp_msg_t *task = self->dead_task;
    if (!task)
        return 0;
    if (task->command == EMQP_DEAD_PURGE) {
        int rc = store_purge_dead (self->store);
        if (rc != 0)
            s_dead_task_done (self, rc < 0 ? -1 : 0);  // failed, or in memory: none
        return 0;
    }
    size_t before = queues_job_count (self->queues);
    int rc = store_list_dead_page (self->store, &self->dead_cursor, S_REVIVE_CHUNK,
                                   s_dead_revive, self);
    self->dead_done += (int64_t) (queues_job_count (self->queues) - before);
    s_flush (self);
    if (rc == S_REVIVE_CHUNK) {
        zloop_timer (loop, 1, 1, s_on_dead_task, self);
        return 0;
    }
    s_dead_task_done (self, rc < 0 ? -1 : 0);
    return 0;
}

static void
s_admin_dead (router_t *self, emqp_msg_t *msg)
{
    bool all = msg->command == EMQP_DEAD_PURGE
               || (msg->command == EMQP_DEAD_RETRY && streq (msg->ref, "*"));
    if (all) {
        if (self->dead_task) {
            s_send_error (
                self, self->admin, msg->identity, msg->msgid, "BUSY",
                "a dead retry --all or purge is in progress; try again after it");
            return;
        }
        //  Keep what the answer needs; the work starts on the next turn.
        self->dead_task = emqp_msg_new (msg->command);
        if (self->dead_task) {
            self->dead_task->identity = zframe_dup (msg->identity);
            self->dead_task->msgid = strdup (msg->msgid);
        }
        if (!self->dead_task || !self->dead_task->identity || !self->dead_task->msgid) {
            emqp_msg_destroy (&self->dead_task);
            s_send_error (self, self->admin, msg->identity, msg->msgid, "INTERNAL",
                          "out of memory");
            return;
        }
        self->dead_cursor = (store_cursor_t){ 0 };
        self->dead_done = 0;
        zloop_timer (self->loop, 1, 1, s_on_dead_task, self);
        return;
    }
    json_t *reply = json_object ();
    if (msg->command == EMQP_DEAD_LIST) {
        json_t *list = json_array ();
        if (store_list_dead (self->store, 1000, s_dead_json, list) < 0) {
            json_decref (list);
            json_decref (reply);
            s_send_error (self, self->admin, msg->identity, msg->msgid, "STORAGE",
                          store_error (self->store));
            return;
        }
        json_object_set_new (reply, "dead", list);
        json_object_set_new (reply, "total",
                             json_integer (store_count (self->store, STORE_DEAD)));
    }
    else if (msg->command == EMQP_DEAD_DELETE) {
        s_discard_t discard = { self, 0 };
        int rc = store_fetch (self->store, msg->ref, s_dead_discard, &discard);
        if (rc < 0 || discard.outcome < 0) {
            json_decref (reply);
            s_send_error (self, self->admin, msg->identity, msg->msgid, "STORAGE",
                          store_error (self->store));
            return;
        }
        if (discard.outcome == 0) {
            json_decref (reply);
            s_send_error (self, self->admin, msg->identity, msg->msgid, "NOT_FOUND",
                          "no such dead job (retried, deleted or expired)");
            return;
        }
        json_object_set_new (reply, "deleted", json_integer (1));
    }
    else if (msg->command == EMQP_DEAD_RETRY) {
        size_t before = queues_job_count (self->queues);
        int rc = store_fetch (self->store, msg->ref, s_dead_revive, self);
        json_object_set_new (
            reply, "retried",
            json_integer ((json_int_t) (queues_job_count (self->queues) - before)));
        if (rc < 0)
            json_object_set_new (reply, "error", json_string (store_error (self->store)));
    }
    s_admin_reply (self, msg, json_dumps (reply, JSON_COMPACT));
    json_decref (reply);
}

//  --------------------------------------------------------------------------
//  Job and queue admin (ADMIN, an emq extension; docs/protocol.md)

//  The default and the largest page of ADMIN "jobs".
#define S_PAGE_DEFAULT 100
#define S_PAGE_MAX 1000
//  Dead rows scanned for one filtered page at most: the scan runs on the
//  loop.
#define S_DEAD_SCAN_MAX 100000

static void
s_admin_refuse (router_t *self, emqp_msg_t *msg, const char *code, const char *text)
{
    char id[600];
    log_warning ("admin %s: ADMIN refused: %s: %s",
                 peers_id_of (msg->identity, id, sizeof id), code, text);
    s_send_error (self, self->admin, msg->identity, msg->msgid, code, text);
}

//  The page being filled: matching jobs are counted (total), those in
//  [offset, offset + limit) are added.
typedef struct {
    const char *queue;  // filter, or NULL
    size_t offset, limit, total;
    json_t *jobs;
} s_page_t;

static bool
s_page_wants (s_page_t *page)
{
    return page->total++ >= page->offset && json_array_size (page->jobs) < page->limit;
}

static void
s_page_job (s_page_t *page, const job_t *job, const char *running_on)
{
    if (page->queue && !streq (job->queue->name, page->queue))
        return;
    if (s_page_wants (page))
        json_array_append_new (page->jobs, admin_job_json (job, running_on, false));
}

static int
s_page_row (const store_row_t *row, void *arg)
{
    s_page_t *page = (s_page_t *) arg;
    if (page->queue && !streq (row->queue, page->queue))
        return 0;
    if (s_page_wants (page))
        json_array_append_new (page->jobs, admin_row_json (row, false));
    return 0;
}

static void
s_admin_jobs (router_t *self, emqp_msg_t *msg, json_t *request)
{
    const char *state = json_string_value (json_object_get (request, "state"));
    json_t *limit_json = json_object_get (request, "limit");
    json_t *offset_json = json_object_get (request, "offset");
    json_int_t limit = json_is_integer (limit_json) ? json_integer_value (limit_json) : 0;
    json_int_t offset =
        json_is_integer (offset_json) ? json_integer_value (offset_json) : 0;
    if (!state)
        state = "waiting";
    if ((limit_json && !json_is_integer (limit_json)) || limit < 0 || limit > S_PAGE_MAX
        || (offset_json && !json_is_integer (offset_json)) || offset < 0) {
        s_admin_refuse (self, msg, "BAD_REQUEST",
                        "offset must be an integer >= 0, limit one in 0..1000");
        return;
    }
    s_page_t page = { .queue = json_string_value (json_object_get (request, "queue")),
                      .offset = (size_t) offset,
                      .limit = limit ? (size_t) limit : S_PAGE_DEFAULT,
                      .jobs = json_array () };
    if (streq (state, "waiting")) {
        for (queue_t *queue = queues_first (self->queues); queue;
             queue = queues_next (self->queues)) {
            if (page.queue && !streq (queue->name, page.queue))
                continue;
            job_t *job;
            TAILQ_FOREACH (job, &queue->waiting, link)
            s_page_job (&page, job, NULL);
        }
    }
    else if (streq (state, "scheduled") || streq (state, "retrying")) {
        //  In run_at order; "retrying" only those backing off after a
        //  failed attempt.
        bool retrying = streq (state, "retrying");
        for (job_t *job = (job_t *) zlistx_first (self->scheduled); job;
             job = (job_t *) zlistx_next (self->scheduled))
            if (!retrying || job->attempt > 0)
                s_page_job (&page, job, NULL);
    }
    else if (streq (state, "running")) {
        zlistx_t *list = peers_list (self->job_managers);
        for (peer_t *peer = list ? (peer_t *) zlistx_first (list) : NULL; peer;
             peer = (peer_t *) zlistx_next (list))
            for (job_t *job = (job_t *) zhashx_first (peer->inflight); job;
                 job = (job_t *) zhashx_next (peer->inflight))
                s_page_job (&page, job, peer->id);
        zlistx_destroy (&list);
    }
    else if (streq (state, "dead")) {
        if (store_list_dead (self->store, S_DEAD_SCAN_MAX, s_page_row, &page) < 0) {
            json_decref (page.jobs);
            s_admin_refuse (self, msg, "STORAGE", store_error (self->store));
            return;
        }
    }
    else {
        json_decref (page.jobs);
        s_admin_refuse (self, msg, "BAD_REQUEST",
                        "state must be waiting, scheduled, retrying, running or dead");
        return;
    }
    json_t *reply =
        json_pack ("{s:o, s:I, s:I, s:I, s:s, s:s?}", "jobs", page.jobs, "total",
                   (json_int_t) page.total, "offset", (json_int_t) page.offset, "limit",
                   (json_int_t) page.limit, "state", state, "queue", page.queue);
    s_admin_reply (self, msg, reply ? json_dumps (reply, JSON_COMPACT) : NULL);
    json_decref (reply);
}

static int
s_row_full (const store_row_t *row, void *arg)
{
    *(json_t **) arg = admin_row_json (row, true);
    return 0;
}

//  One job: what the router holds live, over what the store has of it.
static void
s_admin_job (router_t *self, emqp_msg_t *msg, json_t *request)
{
    const char *msgid = json_string_value (json_object_get (request, "msgid"));
    if (!msgid || !*msgid || strlen (msgid) > EMQP_MSGID_MAX) {
        s_admin_refuse (self, msg, "BAD_REQUEST", "msgid must be a job's msgid");
        return;
    }
    json_t *row = NULL;
    if (store_fetch (self->store, msgid, s_row_full, &row) < 0) {
        s_admin_refuse (self, msg, "STORAGE", store_error (self->store));
        return;
    }
    job_t *job = queues_job_lookup (self->queues, msgid);
    if (!job && !row) {
        s_send_error (self, self->admin, msg->identity, msg->msgid, "NOT_FOUND",
                      "no such job (never submitted, or expired)");
        return;
    }
    json_t *out = row ? row : json_object ();
    if (job && job->state != JOB_ENDED) {
        //  The live state wins over the committed row.
        json_t *live = admin_job_json (
            job, job->state == JOB_RUNNING && job->peer ? job->peer->id : NULL, true);
        json_object_update (out, live);
        json_decref (live);
        if (!json_object_get (out, "history"))
            json_object_set_new (out, "history", json_array ());
    }
    json_t *reply = json_pack ("{s:o}", "job", out);
    s_admin_reply (self, msg, reply ? json_dumps (reply, JSON_COMPACT) : NULL);
    json_decref (reply);
}

//  Paused queues are kept as meta rows "paused:<name>" = 1 (0 once
//  resumed), read back at start (s_load_paused).
static void
s_paused_key (const char *queue, char *key, size_t size)
{
    snprintf (key, size, "paused:%s", queue);
}

static void
s_load_paused_one (const char *key, int64_t value, void *arg)
{
    router_t *self = (router_t *) arg;
    if (value != 1)
        return;
    queue_t *queue = queues_require (self->queues, key + strlen ("paused:"));
    if (queue) {
        queue->paused = true;
        log_info ("queue %s: paused (kept from before the restart)", queue->name);
    }
}

static void
s_load_paused (router_t *self)
{
    if (store_meta_list (self->store, "paused:", s_load_paused_one, self))
        log_warning ("store: paused queues not read: %s", store_error (self->store));
}

static void
s_admin_queue (router_t *self, emqp_msg_t *msg, json_t *request, const char *action)
{
    const char *name = json_string_value (json_object_get (request, "queue"));
    if (!name || !*name || strlen (name) > EMQP_QUEUE_MAX) {
        s_admin_refuse (self, msg, "BAD_REQUEST", "queue must be a queue name");
        return;
    }
    json_t *reply = NULL;
    if (streq (action, "purge")) {
        queue_t *queue = queues_lookup (self->queues, name);
        json_int_t purged = 0;
        job_t *job;
        while (queue && (job = queue_head (queue))) {
            queue_unlink (queue, job);
            s_job_end (self, job, STORE_CANCELLED, EMQP_STATUS_CANCELLED, NULL, NULL);
            purged++;
        }
        log_info ("queue %s: purged, %" PRId64 " waiting job(s) cancelled", name,
                  (int64_t) purged);
        reply = json_pack ("{s:s, s:I}", "queue", name, "purged", purged);
    }
    else {
        //  Pausing a queue nobody has used yet is fine: it is made now, and
        //  its first jobs wait.
        bool pause = streq (action, "pause");
        queue_t *queue = pause ? queues_require (self->queues, name)
                               : queues_lookup (self->queues, name);
        if (!queue && pause) {
            s_admin_refuse (self, msg, "BUSY", "too many queues");
            return;
        }
        char key[EMQP_QUEUE_MAX + 16];
        s_paused_key (name, key, sizeof key);
        if (queue && queue->paused != pause) {
            queue->paused = pause;
            if (store_meta_set (self->store, key, pause ? 1 : 0))
                log_warning ("store: queue %s: %s not kept: %s", name, action,
                             store_error (self->store));
            log_info ("queue %s: %s", name, pause ? "paused" : "resumed");
            if (!pause)
                self->redispatch = true;
        }
        reply = json_pack ("{s:s, s:b}", "queue", name, "paused", queue && queue->paused);
    }
    s_admin_reply (self, msg, reply ? json_dumps (reply, JSON_COMPACT) : NULL);
    json_decref (reply);
}

//  A job manager by its identity, or by its name (the identity is
//  "<name>-..."): every one that matches.
static void
s_admin_jobmanager (router_t *self, emqp_msg_t *msg, json_t *request, bool quiet)
{
    const char *name = json_string_value (json_object_get (request, "jobmanager"));
    if (!name || !*name || strlen (name) > 255) {
        s_admin_refuse (self, msg, "BAD_REQUEST",
                        "jobmanager must be a job manager's name or identity");
        return;
    }
    size_t len = strlen (name);
    json_t *matched = json_array ();
    zlistx_t *list = peers_list (self->job_managers);
    for (peer_t *peer = list ? (peer_t *) zlistx_first (list) : NULL; peer;
         peer = (peer_t *) zlistx_next (list)) {
        if (!streq (peer->id, name)
            && !(strncmp (peer->id, name, len) == 0 && peer->id[len] == '-'))
            continue;
        if (peer->quiet != quiet)
            log_info ("jobmanager %s: %s", peer->id,
                      quiet ? "quiet: no new jobs, running ones finish"
                            : "resumed: gets jobs again");
        peer->quiet = quiet;
        json_array_append_new (matched, json_string (peer->id));
    }
    zlistx_destroy (&list);
    if (json_array_size (matched) == 0) {
        json_decref (matched);
        s_send_error (self, self->admin, msg->identity, msg->msgid, "NOT_FOUND",
                      "no such job manager connected");
        return;
    }
    if (!quiet)
        self->redispatch = true;
    json_t *reply = json_pack ("{s:o, s:b}", "jobmanagers", matched, "quiet", quiet);
    s_admin_reply (self, msg, reply ? json_dumps (reply, JSON_COMPACT) : NULL);
    json_decref (reply);
}

static void
s_admin_request (router_t *self, emqp_msg_t *msg)
{
    json_error_t error;
    json_t *request = json_loads (msg->stats ? msg->stats : "", 0, &error);
    const char *command = json_string_value (json_object_get (request, "command"));
    if (!json_is_object (request) || !command)
        s_admin_refuse (self, msg, "BAD_REQUEST",
                        "the request must be a JSON object with a \"command\" string");
    else if (streq (command, "jobs"))
        s_admin_jobs (self, msg, request);
    else if (streq (command, "job"))
        s_admin_job (self, msg, request);
    else if (streq (command, "queue_pause"))
        s_admin_queue (self, msg, request, "pause");
    else if (streq (command, "queue_resume"))
        s_admin_queue (self, msg, request, "resume");
    else if (streq (command, "queue_purge"))
        s_admin_queue (self, msg, request, "purge");
    else if (streq (command, "jobmanager_quiet"))
        s_admin_jobmanager (self, msg, request, true);
    else if (streq (command, "jobmanager_resume"))
        s_admin_jobmanager (self, msg, request, false);
    else
        s_admin_refuse (self, msg, "BAD_REQUEST",
                        "unknown command (jobs, job, queue_pause, queue_resume, "
                        "queue_purge, jobmanager_quiet, jobmanager_resume)");
    json_decref (request);
    //  Purged jobs end, resumed queues and job managers dispatch.
    s_flush (self);
}

//  An admin read waiting for the batch that holds the writes before it.
typedef struct {
    uint64_t barrier;  // store_barrier when it came
    emqp_msg_t *msg;
} s_parked_t;

static void
s_parked_destroy (void **item_p)
{
    s_parked_t *parked = (s_parked_t *) *item_p;
    if (parked) {
        emqp_msg_destroy (&parked->msg);
        free (parked);
        *item_p = NULL;
    }
}

//  Keeps an admin request for later if the store has not yet committed
//  what was written before it (or if others wait already: order stays).
//  Returns true if it took the message.
static bool
s_park (router_t *self, emqp_msg_t **msg_p)
{
    uint64_t barrier = store_barrier (self->store);
    if (barrier <= store_settled (self->store) && zlistx_size (self->parked) == 0)
        return false;
    s_parked_t *parked = (s_parked_t *) malloc (sizeof (s_parked_t));
    if (!parked)
        return false;  // out of memory: answer now, maybe a moment stale
    parked->barrier = barrier;
    parked->msg = *msg_p;
    *msg_p = NULL;
    zlistx_add_end (self->parked, parked);
    return true;
}

//  After a batch's event: the admin reads it was holding up.
static void
s_unpark (router_t *self)
{
    s_parked_t *parked;
    while ((parked = (s_parked_t *) zlistx_first (self->parked))
           && parked->barrier <= store_settled (self->store)) {
        emqp_msg_t *msg = parked->msg;
        parked->msg = NULL;
        zlistx_delete (self->parked, zlistx_cursor (self->parked));
        if (msg->command == EMQP_ADMIN)
            s_admin_request (self, msg);
        else
            s_admin_dead (self, msg);
        emqp_msg_destroy (&msg);
    }
}

static void
s_count_dead (const char *queue, int64_t count, void *arg)
{
    metrics_count (((router_t *) arg)->metrics, queue, METRICS_DEAD, count);
}

//  The dead gauges follow the jobs that die, are retried or deleted; an
//  expiry or a purge deletes rows without saying whose: when the store's
//  total (a count STATUS reads anyway) disagrees, they are counted again
//  from the store (rare, and the only scan of dead rows by queue).
static void
s_dead_recount (router_t *self, int64_t store_total)
{
    if (store_total < 0
        || store_total == metrics_count_total (self->metrics, METRICS_DEAD))
        return;
    metrics_count_reset (self->metrics, METRICS_DEAD);
    if (store_count_by_queue (self->store, STORE_DEAD, s_count_dead, self))
        log_warning ("store: %s", store_error (self->store));
}

//  What STATUS adds for monitoring (docs/protocol.md): per queue, the jobs
//  delayed, backing off before a retry, and dead; the metrics (latency
//  histograms, commit times, the process); the event stream's count.
static json_t *
s_status_extra (router_t *self, int64_t dead_total)
{
    s_dead_recount (self, dead_total);
    json_t *per_queue = json_object ();
    for (queue_t *queue = queues_first (self->queues); queue;
         queue = queues_next (self->queues)) {
        const char *name = queue->name;
        json_object_set_new (
            per_queue, name,
            json_pack (
                "{s:I,s:I,s:I}", "scheduled",
                (json_int_t) metrics_count_get (self->metrics, name, METRICS_SCHEDULED),
                "retrying",
                (json_int_t) metrics_count_get (self->metrics, name, METRICS_RETRYING),
                "dead",
                (json_int_t) metrics_count_get (self->metrics, name, METRICS_DEAD)));
    }
    json_t *extra = json_pack ("{s:o,s:o,s:o}", "queues", per_queue, "dead_by_queue",
                               metrics_count_json (self->metrics, METRICS_DEAD),
                               "metrics", metrics_json (self->metrics));
    if (extra && self->events)
        json_object_set_new (extra, "events",
                             json_pack ("{s:I}", "published",
                                        (json_int_t) events_published (self->events)));
    return extra;
}

//  One other router of the database, for STATUS store.routers. Its row is
//  the database's, written by another process: addrs that are not a JSON
//  object show as an empty one.
static void
s_status_router (const store_router_t *router, void *arg)
{
    json_t *list = (json_t *) arg;
    json_t *addrs = json_loads (router->addrs, 0, NULL);
    if (!json_is_object (addrs)) {
        json_decref (addrs);
        addrs = json_object ();
    }
    json_array_append_new (
        list, json_pack ("{s:s,s:s,s:o,s:I,s:s,s:f}", "holder", router->holder, "role",
                         router->role, "addrs", addrs, "pid", (json_int_t) router->pid,
                         "host", router->host, "seen_ago", router->seen_ago_s));
}

static void
s_admin_message (router_t *self, emqp_msg_t *msg)
{
    char id[600];
    peers_id_of (msg->identity, id, sizeof id);
    int64_t now = clock_mono_ms ();
    switch (msg->command) {
        case EMQP_STATUS: {
            bool memory = store_is_memory (self->store);
            static const char *fsync_names[] = { "always", "everysec", "off" };
            admin_storage_t storage = {
                .kind = store_kind (self->store),
                .path = memory ? NULL : store_where (self->store),
                .fsync = fsync_names[self->settings.fsync],
                .dead = store_count (self->store, STORE_DEAD),
                .scheduled = zlistx_size (self->scheduled),
                .failing = self->store_failing,
                .lead_epoch = store_lead_epoch (self->store),
                .lead_holder = store_lead_holder (self->store),
                .lead_since = store_lead_since (self->store),
            };
            //  emq-web asks for STATUS every few seconds: a database that
            //  does not answer is said once, not each time.
            json_t *routers = NULL;
            if (storage.lead_epoch > 0 && (routers = json_array ())) {
                bool failed = store_routers (self->store, s_status_router, routers) < 0;
                if (failed && !self->routers_failing)
                    log_warning ("router: STATUS: cannot list the other routers: %s",
                                 store_error (self->store));
                self->routers_failing = failed;
                if (failed) {
                    json_decref (routers);
                    routers = NULL;
                }
            }
            storage.routers = routers;
            admin_traffic_t traffic = {
                .batches_in = self->batches_in,
                .batched_in = self->batched_in,
                .undeliverable = self->undeliverable,
            };
            uint64_t batches, batched;
            outbox_stats (self->to_clients, &traffic.batches_out, &traffic.batched_out);
            outbox_stats (self->to_jms, &batches, &batched);
            traffic.batches_out += batches;
            traffic.batched_out += batched;
            s_admin_reply (self, msg,
                           admin_status_json (self->queues, self->job_managers, &storage,
                                              &traffic,
                                              s_status_extra (self, storage.dead)));
            json_decref (routers);
        } break;
        case EMQP_ROUTER_SHOW_WORKERS:
            s_admin_reply (self, msg, admin_workers_json (self->job_managers, now));
            break;
        case EMQP_ROUTER_SHOW_SCHEDULERS:
            s_admin_reply (self, msg, admin_schedulers_json (self->schedulers, now));
            break;
        case EMQP_FENCE_SHOW:
            s_admin_reply (self, msg, fences_json (self->fences));
            break;
        case EMQP_FENCE_RESET: {
            //  The legacy scope is "" on the wire of fires, "(legacy)" here
            //  (no scope can hold parentheses).
            const char *scope = streq (msg->ref, "(legacy)") ? "" : msg->ref;
            size_t count = fences_reset (self->fences, scope);
            if (count == 0) {
                s_send_error (self, self->admin, msg->identity, msg->msgid, "NOT_FOUND",
                              "no fencing token is held for that scope");
                break;
            }
            log_warning ("admin %s: FENCE_RESET '%s': %zu fencing token(s) forgotten", id,
                         msg->ref, count);
            s_send_ack (self, self->admin, msg->identity, msg->msgid);
        } break;
        case EMQP_DISCONNECT:
            log_info ("admin %s: DISCONNECT, shutting down", id);
            s_send_ack (self, self->admin, msg->identity, msg->msgid);
            if (!self->stopping) {
                self->stopping = true;
                //  Say goodbye now and leave the loop a moment later, so the
                //  ACK and the KBYEs are on the wire before the sockets close.
                s_kbye_all (self, self->job_managers, self->backend);
                s_kbye_all (self, self->schedulers, self->frontend);
                zloop_timer (self->loop, 200, 1, s_on_stop, self);
            }
            break;
        case EMQP_CANCEL:
            s_admin_cancel (self, msg);
            break;
        case EMQP_DEAD_LIST:
        case EMQP_DEAD_RETRY:
        case EMQP_DEAD_PURGE:
        case EMQP_DEAD_DELETE:
            //  These read the store: they wait until it holds every job
            //  end written before them (a job that died just now is listed).
            if (!s_park (self, &msg))
                s_admin_dead (self, msg);
            break;
        case EMQP_ADMIN:
            //  Reads the store too (a job's row, dead jobs): after what was
            //  written before it.
            if (!s_park (self, &msg))
                s_admin_request (self, msg);
            break;
        case EMQP_HELLO:
        case EMQP_HEARTBEAT:
            break;
        case EMQP_ERROR:
            break;
        default:
            log_warning ("admin %s: %s is not an admin command", id,
                         emqp_command_name (msg->command));
            s_send_error (self, self->admin, msg->identity, msg->msgid, "UNEXPECTED",
                          "command not accepted on the admin socket");
    }
    emqp_msg_destroy (&msg);
}

//  --------------------------------------------------------------------------
//  Loop

//  A batch to a peer could not be sent. A job manager's jobs in it were
//  dispatched (running, attached to it): removing it puts them back at the
//  head of their queues, as a failed single send does.
static void
s_jm_unreachable (void *arg, zframe_t *identity, size_t messages, int error)
{
    router_t *self = (router_t *) arg;
    self->undeliverable += messages;
    peer_t *peer = peers_lookup (self->job_managers, identity);
    char id[600];
    log_warning_limited (&s_lim_undelivered,
                         "jobmanager %s: %zu message(s) not delivered: %s",
                         peers_id_of (identity, id, sizeof id), messages,
                         error == EHOSTUNREACH ? "peer is gone"
                         : error == EAGAIN     ? "peer's queue is full"
                                               : strerror (error));
    if (peer)
        s_peer_remove (self, self->job_managers, peer, "unreachable");
}

static void
s_client_unreachable (void *arg, zframe_t *identity, size_t messages, int error)
{
    router_t *self = (router_t *) arg;
    self->undeliverable += messages;
    char id[600];
    log_warning_limited (&s_lim_undelivered,
                         "client %s: %zu message(s) not delivered: %s",
                         peers_id_of (identity, id, sizeof id), messages,
                         error == EHOSTUNREACH ? "peer is gone"
                         : error == EAGAIN     ? "peer's queue is full"
                                               : strerror (error));
}

//  Sends what the turn gathered for batch-capable peers. Jobs of a job
//  manager found unreachable are queued again and dispatched at once.
static void
s_flush_outboxes (router_t *self)
{
    for (int round = 0; round < 3; round++) {
        outbox_flush (self->to_clients, s_client_unreachable, self);
        outbox_flush (self->to_jms, s_jm_unreachable, self);
        if (!self->redispatch)
            break;
        s_dispatch_all (self);
    }
}

//  A batch's event (or, in memory mode, the end of a turn): ACK the jobs
//  it accepted (or refuse them: ERROR STORAGE), forget the ended jobs
//  whose ends it committed. Acknowledged means kept: no ACK leaves before
//  its job's row is committed.
static void
s_settle (router_t *self, zlistx_t *pending, zlistx_t *ending, int rc)
{
    s_settle_ends (self, ending, rc == 0);
    if (rc == 0) {
        self->committed_batches++;
        if (self->store_failing)
            log_info ("store: writing again; accepting jobs");
        self->store_failing = false;
    }
    else if (!self->store_failing) {
        log_error ("store: commit failed, refusing new jobs until it works: %s",
                   store_error (self->store));
        self->store_failing = true;
    }
    job_t *job;
    int64_t now = clock_mono_ms ();
    while ((job = (job_t *) zlistx_first (pending))) {
        zlistx_detach_cur (pending);
        job->queue->accepting--;
        if (rc == 0 && store_was_duplicate (self->store, job->row)) {
            //  Held before and already ended: the work was done once.
            log_debug ("client: REQUEST %s already ended, ACK again", JOB_MSGID (job));
            s_send_ack (self, self->frontend, job_client (job), JOB_MSGID (job));
            queues_job_delete (self->queues, job);
        }
        else if (rc == 0) {
            s_send_ack (self, self->frontend, job_client (job), JOB_MSGID (job));
            if (job->more && job->more->run_at > 0)
                s_schedule (self, job, job->more->run_at, JOB_EV_DELAY);
            else if (s_fire (job, JOB_EV_ACCEPT) == 0) {
                s_event (self, job, "queued", NULL);
                queue_push (job->queue, job, now);
                self->redispatch = true;
            }
        }
        else {
            char err[300];
            snprintf (err, sizeof err, "the router cannot store jobs: %s",
                      store_error (self->store));
            s_send_error (self, self->frontend, job_client (job), JOB_MSGID (job),
                          "STORAGE", err);
            queues_job_delete (self->queues, job);
        }
    }
}

//  The end of a loop turn: hand the open batch to the writer if none is
//  out (else it grows until the one out is committed: group commit), then
//  dispatch. Dispatch never waits for a commit: jobs already ACKed keep
//  flowing while a batch is on its way.
//  On a shared database (PostgreSQL) another router may take the lead:
//  this one's lease ran out (it was paused, or could not renew it) or the
//  writer met a newer epoch. From then on it sends, ACKs and dispatches
//  nothing: the loop stops at its next handler, router_run returns
//  ROUTER_DEPOSED, and a supervisor starts it again as a standby.
static bool
s_leading (router_t *self)
{
    if (self->deposed)
        return false;
    if (store_leading (self->store))
        return true;
    self->deposed = true;
    log_error ("router: standing down (epoch %lld): %s; nothing more is sent, "
               "ACKed or dispatched",
               (long long) store_lead_epoch (self->store), store_lead_lost (self->store));
    return false;
}

static void
s_flush (router_t *self)
{
    if (!s_leading (self))
        return;  // what waits in the outboxes is never sent
    if (self->ends_unsaved) {
        self->ends_unsaved = false;
        for (job_t *job = (job_t *) zlistx_first (self->ending); job;
             job = (job_t *) zlistx_next (self->ending))
            s_job_save_end (self, job);
    }
    if (!store_busy (self->store)
        && (zlistx_size (self->pending) > 0 || store_has_writes (self->store))) {
        bool guarantee = false;
        for (job_t *job = (job_t *) zlistx_first (self->pending); job;
             job = (job_t *) zlistx_next (self->pending))
            guarantee = guarantee || job_parsed (job)->guarantee;
        int rc = store_submit (self->store, guarantee);
        if (rc == 1)
            s_settle (self, self->pending, self->ending, 0);  // in memory: at once
        else if (rc == 0) {
            metrics_commit_start (self->metrics, clock_mono_ms ());
            //  The lists follow their batch; the empty ones take the next.
            zlistx_t *list = self->pending_out;
            self->pending_out = self->pending;
            self->pending = list;
            list = self->ending_out;
            self->ending_out = self->ending;
            self->ending = list;
            self->submit_failing = false;
        }
        else if (!self->submit_failing) {
            //  Cannot happen short of a broken thread; the batch waits.
            log_error ("store: %s", store_error (self->store));
            self->submit_failing = true;
        }
    }
    if (self->redispatch)
        s_dispatch_all (self);
    s_flush_outboxes (self);
}

static void s_expired (router_t *self, const store_event_t *event);

//  One event of the store's writer.
static void
s_store_event (router_t *self, const store_event_t *event)
{
    switch (event->type) {
        case STORE_EV_COMMIT:
            metrics_commit_end (self->metrics, clock_mono_ms (), event->rc == 0);
            s_settle (self, self->pending_out, self->ending_out, event->rc);
            s_unpark (self);
            break;
        case STORE_EV_EXPIRED:
            s_expired (self, event);
            break;
        case STORE_EV_PURGED:
            if (event->rc == 0)
                self->dead_done = event->count;
            s_dead_task_done (self, event->rc);
            break;
    }
}

//  The writer says a batch is committed (or failed), or a task is done;
//  the next batch goes at once.
static int
s_on_store (zloop_t *loop, zsock_t *sock, void *arg)
{
    (void) loop;
    (void) sock;
    router_t *self = (router_t *) arg;
    if (!s_leading (self))
        return -1;  // a fenced batch's event: not a word to its clients
    store_event_t event;
    while (store_recv (self->store, &event, 0) == 0)
        s_store_event (self, &event);
    s_flush (self);
    return s_leading (self) ? 0 : -1;
}

//  With CURVE and a clients directory, each key's certificate there names
//  its roles; a socket serves only the roles it admits.
static bool
s_role_admitted (router_t *self, const emqp_msg_t *msg, const char *roles)
{
    if (!self->limits.meta_property)
        return true;
    return msg->meta && curve_roles_match (msg->meta, roles);
}

//  Undecodable messages are answered (ERROR BAD_FRAME...) up to
//  S_FAULT_REPLIES a second: a flooder that never reads would otherwise
//  have the router queue an ERROR for each (up to the high-water mark,
//  100,000 per peer). The rest are dropped, counted in the log.
static bool
s_fault_reply_allowed (router_t *self)
{
    return self->fault_replies++ < S_FAULT_REPLIES;
}

//  Hands one message to its socket's handler, if its sender's roles admit it.
static void
s_deliver (router_t *self, zsock_t *sock, const char *name, s_handler_fn *handler,
           const char *roles, emqp_msg_t *msg)
{
    if (!s_role_admitted (self, msg, roles)) {
        log_warning_limited (&s_lim_frontend,
                             "%s %s: %s refused: its key's roles (%s) do not include %s",
                             name, S_SENDER (msg), emqp_command_name (msg->command),
                             msg->meta ? msg->meta : "none", roles);
        if (msg->command != EMQP_ERROR)
            s_send_error (self, sock, msg->identity, msg->msgid, "NOT_ALLOWED",
                          "this key may not use this socket (see its emq-roles)");
        emqp_msg_destroy (&msg);
        return;
    }
    handler (self, msg);
}

//  A BATCH: each message in it on its own, in order; one that does not
//  decode is answered alone (ERROR BAD_FRAME, naming its msgid) and the
//  rest go on. A client that sends batches is answered in batches.
static void
s_deliver_batch (router_t *self, zsock_t *sock, const char *name, s_handler_fn *handler,
                 const char *roles, emqp_msg_t *batch)
{
    char err[256];
    size_t count = 0;
    emqp_msg_t **msgs = emqp_batch_unpack (batch, &self->limits, &count, err, sizeof err);
    if (!msgs) {
        self->refused++;
        if (s_fault_reply_allowed (self))
            s_send_error (self, sock, batch->identity, batch->msgid, "BAD_FRAME", err);
        log_warning_limited (&s_lim_dropped, "%s %s: BATCH dropped: %s", name,
                             S_SENDER (batch), err);
        emqp_msg_destroy (&batch);
        return;
    }
    if (sock == self->frontend)
        outbox_allow (self->to_clients, batch->identity, true);
    self->batches_in++;
    self->batched_in += count;
    for (size_t i = 0; i < count; i++) {
        emqp_msg_t *msg = msgs[i];
        if (msg->command == EMQP_INVALID) {
            log_warning_limited (
                &s_lim_dropped, "%s %s: message %s in a BATCH dropped: %s", name,
                S_SENDER (msg), msg->msgid ? msg->msgid : "(no msgid)", msg->error_text);
            //  It names its msgid: answered, as a REQUEST refused would be.
            s_send_error (self, sock, msg->identity, msg->msgid ? msg->msgid : "",
                          msg->error_code, msg->error_text);
            emqp_msg_destroy (&msg);
        }
        else
            s_deliver (self, sock, name, handler, roles, msg);
    }
    free (msgs);
    emqp_msg_destroy (&batch);
}

static void
s_drain (router_t *self, zsock_t *sock, const char *name, s_handler_fn *handler,
         const char *roles)
{
    for (int count = 0; count < S_BATCH_MAX; count++) {
        emqp_msg_t *msg = NULL;
        zframe_t *identity = NULL;
        emqp_fault_t fault;
        //  Only the frontend's peers are judged by their address (ipc://
        //  peers are all local).
        emqp_limits_t limits = self->limits;
        limits.peer_address = sock == self->frontend && !self->frontend_local;
        int rc = emqp_recv (sock, true, &limits, &msg, &identity, &fault);
        if (rc == 0)
            break;  // nothing more waiting
        if (rc < 0) {
            char id[600] = "(none)";
            if (identity)
                peers_id_of (identity, id, sizeof id);
            log_warning_limited (&s_lim_dropped, "%s %s: message dropped: %s", name, id,
                                 fault.text);
            //  Answer when we know who sent it, unless it is an ERROR
            //  itself (no error ping-pong).
            if (identity && fault.command != EMQP_ERROR && s_fault_reply_allowed (self))
                s_send_error (self, sock, identity, "", emqp_error_word (fault.code),
                              fault.text);
            else
                self->refused++;
            zframe_destroy (&identity);
            continue;
        }
        if (msg->command == EMQP_BATCH)
            s_deliver_batch (self, sock, name, handler, roles, msg);
        else
            s_deliver (self, sock, name, handler, roles, msg);
    }
}

static int
s_on_socket (zloop_t *loop, zsock_t *sock, void *arg)
{
    (void) loop;
    s_socket_ctx_t *ctx = (s_socket_ctx_t *) arg;
    router_t *self = ctx->router;
    if (!s_leading (self))
        return -1;
    s_drain (self, sock, ctx->name, ctx->handler, ctx->roles);
    //  With a disk behind the store, one commit (one fsync) should cover
    //  what every socket has now: new jobs and ended ones alike.
    if (!store_is_memory (self->store))
        for (size_t i = 0; i < sizeof self->readers / sizeof self->readers[0]; i++)
            if (self->reader_socks[i] != sock)
                s_drain (self, self->reader_socks[i], self->readers[i].name,
                         self->readers[i].handler, self->readers[i].roles);
    s_flush (self);
    return s_leading (self) ? 0 : -1;
}

//  Heartbeats out, and removal of peers silent for timeout x liveness.
static void
s_heartbeat_peers (router_t *self, peers_t *peers, zsock_t *sock)
{
    int64_t now = clock_mono_ms ();
    int64_t limit =
        self->settings.heartbeat_timeout_ms * self->settings.heartbeat_liveness;
    zlistx_t *list = peers_list (peers);
    for (peer_t *peer = list ? (peer_t *) zlistx_first (list) : NULL; peer;
         peer = (peer_t *) zlistx_next (list)) {
        if (now - peer->last_heard_ms > limit) {
            char reason[96];
            snprintf (reason, sizeof reason, "silent for %.1f s (missed %u heartbeats)",
                      (double) (now - peer->last_heard_ms) / 1000.0,
                      self->settings.heartbeat_liveness);
            s_peer_remove (self, peers, peer, reason);
            continue;
        }
        s_send_simple (self, sock, peer, EMQP_HEARTBEAT);
    }
    zlistx_destroy (&list);
}

static int
s_on_heartbeat (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    router_t *self = (router_t *) arg;
    if (!s_leading (self))
        return -1;
    s_heartbeat_peers (self, self->job_managers, self->backend);
    s_heartbeat_peers (self, self->schedulers, self->frontend);
    s_flush (self);
    return 0;
}

static void s_reload (router_t *self);

//  Scheduled jobs whose time came join their queues.
static int
s_on_schedule (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    router_t *self = (router_t *) arg;
    //  Every 50 ms: a lead lost is seen within that, even when idle.
    if (!s_leading (self))
        return -1;
    //  A SIGHUP that came while a handler ran did not interrupt poll().
    if (service_hup_take ())
        s_reload (self);
    double now = clock_wall_s ();
    job_t *job;
    while ((job = (job_t *) zlistx_first (self->scheduled)) && job->more->run_at <= now) {
        zlistx_detach_cur (self->scheduled);
        job->more->scheduled_handle = NULL;
        job->more->run_at = 0;
        s_count_scheduled (self, job, -1);
        if (s_fire (job, JOB_EV_DUE) == 0) {
            s_event (self, job, "queued", NULL);
            queue_push (job->queue, job, clock_mono_ms ());
            self->redispatch = true;
        }
    }
    s_flush (self);
    return 0;
}

//  Results and dead jobs past their retention go: the writer deletes them,
//  a chunk at a time between batches, and says how many (s_expired).
static int
s_on_expire (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    router_t *self = (router_t *) arg;
    int rc = store_expire (self->store, clock_wall_s (), self->settings.result_ttl_s,
                           self->settings.dead_ttl_s);
    if (rc < 0)
        log_warning ("store: expiry: %s", store_error (self->store));
    if (rc != 0)
        self->expiring = false;  // tried again in 10 s
    return 0;
}

static void
s_expired (router_t *self, const store_event_t *event)
{
    self->expiring = false;  // the next one in 10 s
    if (event->rc) {
        log_warning ("store: expiry: %s", store_error (self->store));
        return;
    }
    if (event->count > 0)
        log_info ("store: %" PRId64 " ended job(s) expired", event->count);
    if (event->count >= 1000) {
        //  Deleting many rows filled the page cache: give it back.
        store_release_memory (self->store);
        malloc_trim (0);
    }
}

//  Housekeeping: starts the expiry of results and dead jobs every 10 s.
//  (The everysec policy's sync is the writer's: no fsync on this loop.)
static int
s_on_second (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    router_t *self = (router_t *) arg;
    log_limits_flush ();
    if (self->recent) {
        recent_expire (self->recent, clock_mono_ms ());
        if (recent_compact (self->recent))
            malloc_trim (0);
    }
    static int ticks;
    if (++ticks % 10 == 1) {
        //  A scheduler answers at once: older senders are not waiting.
        zhashx_purge (self->schedule_senders);
        if (!self->expiring) {
            self->expiring = true;
            zloop_timer (loop, 1, 1, s_on_expire, self);
        }
    }
    s_flush (self);
    //  After a backlog drains, give its memory back to the system: glibc
    //  keeps freed heap otherwise, and RSS would stay at the peak.
    //  Trims as it halves, and once more when it stops falling: the last
    //  jobs to go were on top of the heap.
    size_t jobs = queues_job_count (self->queues);
    bool halved = self->jobs_at_trim >= 1000 && jobs < self->jobs_at_trim / 2;
    if (jobs > self->jobs_at_trim)
        self->jobs_at_trim = jobs;
    else if (halved || (self->draining && jobs >= self->jobs_last_second)) {
        self->draining = halved;
        queues_compact (self->queues);
        self->jobs_at_trim = jobs;
        store_release_memory (self->store);
        malloc_trim (0);
    }
    self->jobs_last_second = jobs;
    //  A flood of bad or refused messages passed through libzmq's buffers
    //  and ours (up to the high-water marks, S_HWM): once it stops, what it
    //  took goes back to the system.
    if (self->refused >= S_REFUSAL_BURST)
        self->refusal_burst = true;
    else if (self->refusal_burst) {
        self->refusal_burst = false;
        malloc_trim (0);
        log_info ("router: a burst of refused messages ended; memory released");
    }
    self->refused = 0;
    self->fault_replies = 0;
    return 0;
}

static int
s_compare_run_at (const void *a, const void *b)
{
    //  Scheduled jobs always have their optional part (s_schedule).
    double ra = ((const job_t *) a)->more->run_at, rb = ((const job_t *) b)->more->run_at;
    return ra < rb ? -1 : ra > rb ? 1 : 0;
}

//  Rebuilds the in-memory queues from the store. Jobs that were running
//  when the router stopped go back to their queues (at-least-once).
static int
s_load_row (const store_row_t *row, void *arg)
{
    router_t *self = (router_t *) arg;
    job_t *job = s_job_from_row (self, row);
    if (!job)
        return -1;
    job->retries_left = row->retries_left;
    //  A job that was running keeps its dispatch's epoch: if the job
    //  manager that ran it reports DONE for that epoch, it ended (s_jm_outcome).
    job->epoch = row->state == STORE_RUNNING ? row->epoch : 0;
    if (row->state == STORE_SCHEDULED && row->run_at > 0)
        s_schedule (self, job, row->run_at, JOB_EV_DELAY);
    else if (s_fire (job, JOB_EV_ACCEPT) == 0)
        queue_push (job->queue, job, clock_mono_ms ());
    return 0;
}

static zsock_t *
s_bind (const char *endpoint, size_t payload_max, curve_server_t *curve, char *err,
        size_t errlen)
{
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    if (!sock) {
        snprintf (err, errlen, "cannot create a socket: %s", zmq_strerror (zmq_errno ()));
        return NULL;
    }
    if (curve)
        curve_server_apply (curve, sock);
    zsock_set_router_mandatory (sock, 1);
    //  Bound memory per message; the codec's limit answers TOO_LARGE below it.
    zsock_set_maxmsgsize (
        sock, (int) (payload_max + 65536 > INT32_MAX ? INT32_MAX : payload_max + 65536));
    zsock_set_sndhwm (sock, 100000);
    zsock_set_rcvhwm (sock, 100000);
    zsock_set_linger (sock, 1000);
    if (zsock_bind (sock, "%s", endpoint) == -1) {
        snprintf (err, errlen, "cannot bind %s: %s", endpoint,
                  zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
    }
    return sock;
}

router_t *
router_new (const router_settings_t *settings, char *err, size_t errlen)
{
    router_t *self = calloc (1, sizeof (router_t));
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->settings = *settings;
    self->settings.frontend = NULL;
    self->settings.backend = NULL;
    self->settings.admin = NULL;
    //  Copies: the caller's strings need not outlive us.
    self->settings.db_path = strdup (settings->db_path ? settings->db_path : ":memory:");
    self->settings.curve_secret_cert = NULL;  // read once, below
    self->settings.curve_clients_dir =
        strdup (settings->curve_clients_dir ? settings->curve_clients_dir : "");
    self->limits.payload_max = settings->payload_max;
    if (self->settings.client_queues_max == 0)
        self->settings.client_queues_max = 100;  // the setting's default
    //  Who may register as a scheduler depends on where it connects from
    //  (the frontend's messages carry it: s_drain).
    self->frontend_local =
        settings->frontend && strncmp (settings->frontend, "ipc://", 6) == 0;
    self->scheduler_identities =
        strdup (settings->scheduler_identities ? settings->scheduler_identities : "");
    self->settings.scheduler_identities = NULL;
    if (!self->scheduler_identities) {
        snprintf (err, errlen, "out of memory");
        goto fail;
    }
    //  A clients directory without the router's key would mean plain text:
    //  everyone the directory was to keep out gets in.
    if (settings->curve_clients_dir && *settings->curve_clients_dir
        && !(settings->curve_secret_cert && *settings->curve_secret_cert)) {
        snprintf (err, errlen,
                  "curve_clients_dir is set but curve_secret_cert is not: CURVE needs "
                  "the router's key pair");
        goto fail;
    }
    //  Epochs start at the wall clock in microseconds so that a restarted
    //  router never reuses a fencing token of its previous life.
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    self->next_epoch = (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
    self->queues = queues_new (settings->queue_hwm);
    self->job_managers = peers_new ();
    self->schedulers = peers_new ();
    self->loop = zloop_new ();
    self->pending = zlistx_new ();
    self->pending_out = zlistx_new ();
    self->scheduled = zlistx_new ();
    self->ending = zlistx_new ();
    self->ending_out = zlistx_new ();
    self->parked = zlistx_new ();
    self->schedule_senders = zhashx_new ();
    self->metrics = metrics_new ();
    if (!self->metrics || !self->queues || !self->job_managers || !self->schedulers
        || !self->loop || !self->pending || !self->pending_out || !self->scheduled
        || !self->ending || !self->ending_out || !self->parked
        || !self->schedule_senders) {
        snprintf (err, errlen, "out of memory");
        goto fail;
    }
    zlistx_set_destructor (self->parked, s_parked_destroy);
    zlistx_set_comparator (self->scheduled, s_compare_run_at);
    zhashx_set_destructor (self->schedule_senders,
                           (zhashx_destructor_fn *) zframe_destroy);
    //  Where this router listens, for the other routers' STATUS (a standby
    //  writes it while it waits, emq_routers).
    json_t *addrs = json_pack ("{s:s?,s:s?,s:s?}", "frontend", settings->frontend,
                               "backend", settings->backend, "admin", settings->admin);
    char *addrs_text = addrs ? json_dumps (addrs, JSON_COMPACT) : NULL;
    json_decref (addrs);
    store_lead_t lead = { settings->lease_ttl_s, settings->standby, addrs_text };
    self->store = store_open_backend (settings->store, self->settings.db_path,
                                      settings->fsync, &lead, err, errlen);
    free (addrs_text);
    if (!self->store)
        goto fail;
    if (store_load (self->store, s_load_row, self)) {
        snprintf (err, errlen, "cannot load jobs: %s", store_error (self->store));
        goto fail;
    }
    s_load_paused (self);
    if (!(self->fences = fences_new (self->store, err, errlen)))
        goto fail;
    if (store_is_memory (self->store)
        && !(self->recent =
                 recent_new (S_RECENT_MAX, (int64_t) (settings->result_ttl_s * 1000)))) {
        snprintf (err, errlen, "out of memory");
        goto fail;
    }
    if (queues_job_count (self->queues))
        log_info ("router: %zu unfinished job(s) loaded from %s (%zu scheduled)",
                  queues_job_count (self->queues), store_where (self->store),
                  zlistx_size (self->scheduled));
    if (settings->curve_secret_cert && *settings->curve_secret_cert) {
        self->curve = curve_server_new (settings->curve_secret_cert,
                                        settings->curve_clients_dir, err, errlen);
        if (!self->curve)
            goto fail;
        bool dir = settings->curve_clients_dir && *settings->curve_clients_dir;
        log_info ("router: CURVE on, public key %s; clients admitted: %s",
                  curve_server_public (self->curve),
                  dir ? settings->curve_clients_dir : "any key");
        //  Admitted keys carry their roles (certificate metadata).
        if (dir)
            self->limits.meta_property = CURVE_ROLES_PROPERTY;
    }
    size_t max = settings->payload_max;
    if (!(self->frontend = s_bind (settings->frontend, max, self->curve, err, errlen))
        || !(self->backend = s_bind (settings->backend, max, self->curve, err, errlen))
        || !(self->admin = s_bind (settings->admin, max, self->curve, err, errlen)))
        goto fail;
    if (settings->events && *settings->events
        && !(self->events = events_new (settings->events, self->curve, err, errlen)))
        goto fail;
    self->to_clients = outbox_new (self->frontend);
    self->to_jms = outbox_new (self->backend);
    if (!self->to_clients || !self->to_jms) {
        snprintf (err, errlen, "out of memory");
        goto fail;
    }
    self->reader_socks[0] = self->frontend;
    self->reader_socks[1] = self->backend;
    self->reader_socks[2] = self->admin;
    self->readers[0] =
        (s_socket_ctx_t){ self, "client", s_frontend_message, "client,scheduler" };
    self->readers[1] =
        (s_socket_ctx_t){ self, "jobmanager", s_backend_message, "jobmanager" };
    self->readers[2] = (s_socket_ctx_t){ self, "admin", s_admin_message, "admin" };
    zloop_reader (self->loop, self->frontend, s_on_socket, &self->readers[0]);
    zloop_reader (self->loop, self->backend, s_on_socket, &self->readers[1]);
    zloop_reader (self->loop, self->admin, s_on_socket, &self->readers[2]);
    if (store_sock (self->store))
        zloop_reader (self->loop, store_sock (self->store), s_on_store, self);
    self->heartbeat_timer = zloop_timer (
        self->loop, (size_t) settings->heartbeat_interval_ms, 0, s_on_heartbeat, self);
    zloop_timer (self->loop, 50, 0, s_on_schedule, self);
    zloop_timer (self->loop, 1000, 0, s_on_second, self);
    log_info ("router: listening frontend=%s backend=%s admin=%s events=%s storage=%s",
              settings->frontend, settings->backend, settings->admin,
              self->events ? settings->events : "(off)",
              store_is_memory (self->store) ? "memory" : store_where (self->store));
    return self;
fail:
    router_destroy (&self);
    return NULL;
}

void
router_destroy (router_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    router_t *self = *self_p;
    zloop_destroy (&self->loop);
    outbox_destroy (&self->to_clients);
    outbox_destroy (&self->to_jms);
    zsock_destroy (&self->frontend);
    zsock_destroy (&self->backend);
    zsock_destroy (&self->admin);
    events_destroy (&self->events);
    metrics_destroy (&self->metrics);
    curve_server_destroy (&self->curve);
    emqp_msg_destroy (&self->dead_task);
    //  Peers borrow jobs: detach every job in flight before freeing.
    if (self->job_managers) {
        zlistx_t *list = peers_list (self->job_managers);
        for (peer_t *peer = list ? (peer_t *) zlistx_first (list) : NULL; peer;
             peer = (peer_t *) zlistx_next (list)) {
            job_t *job;
            while ((job = (job_t *) zhashx_first (peer->inflight)))
                peers_job_detach (job);
        }
        zlistx_destroy (&list);
    }
    //  Borrowing lists go before the owner of the jobs.
    if (self->scheduled) {
        for (job_t *job = (job_t *) zlistx_first (self->scheduled); job;
             job = (job_t *) zlistx_next (self->scheduled))
            job->more->scheduled_handle = NULL;
        zlistx_destroy (&self->scheduled);
    }
    zlistx_destroy (&self->pending);
    zlistx_destroy (&self->pending_out);
    zlistx_destroy (&self->ending);
    zlistx_destroy (&self->ending_out);
    zlistx_destroy (&self->parked);
    zhashx_destroy (&self->schedule_senders);
    peers_destroy (&self->job_managers);
    peers_destroy (&self->schedulers);
    queues_destroy (&self->queues);
    fences_destroy (&self->fences);
    recent_destroy (&self->recent);
    store_close (&self->store);
    free (self->scheduler_identities);
    free ((char *) self->settings.db_path);
    free ((char *) self->settings.curve_clients_dir);
    free (self);
    *self_p = NULL;
}

void
router_set_reload (router_t *self, router_reload_fn *fn, void *arg)
{
    assert (self);
    self->reload = fn;
    self->reload_arg = arg;
}

void
router_apply (router_t *self, const router_settings_t *fresh)
{
    assert (self && fresh);
    router_settings_t *now = &self->settings;
    if (fresh->queue_hwm != now->queue_hwm) {
        now->queue_hwm = fresh->queue_hwm;
        queues_set_hwm (self->queues, fresh->queue_hwm);
    }
    if (fresh->heartbeat_interval_ms != now->heartbeat_interval_ms) {
        now->heartbeat_interval_ms = fresh->heartbeat_interval_ms;
        zloop_timer_end (self->loop, self->heartbeat_timer);
        self->heartbeat_timer = zloop_timer (
            self->loop, (size_t) now->heartbeat_interval_ms, 0, s_on_heartbeat, self);
    }
    now->heartbeat_timeout_ms = fresh->heartbeat_timeout_ms;
    now->heartbeat_liveness = fresh->heartbeat_liveness;
    now->result_ttl_s = fresh->result_ttl_s;
    now->dead_ttl_s = fresh->dead_ttl_s;
    now->retry_backoff_s = fresh->retry_backoff_s;
    now->retry_backoff_max_s = fresh->retry_backoff_max_s;
    if (fresh->prefetch != now->prefetch) {
        now->prefetch = fresh->prefetch;
        self->redispatch = true;  // more room may take more jobs now
    }
    if (fresh->client_queues_max)
        now->client_queues_max = fresh->client_queues_max;
    //  Registered schedulers are checked again at their next message.
    const char *ids = fresh->scheduler_identities ? fresh->scheduler_identities : "";
    if (!streq (ids, self->scheduler_identities)) {
        char *copy = strdup (ids);
        if (copy) {
            free (self->scheduler_identities);
            self->scheduler_identities = copy;
        }
        else
            log_error (
                "router: SIGHUP: scheduler_identities not reloaded: out of memory");
    }
    const char *dir = fresh->curve_clients_dir ? fresh->curve_clients_dir : "";
    if (!self->curve) {
        if (*dir)
            log_warning ("router: SIGHUP: curve_clients_dir needs CURVE on "
                         "(curve_secret_cert, a restart)");
        return;
    }
    //  Read again even when unchanged: SIGHUP is how an operator says the
    //  keys in it changed.
    char err[512];
    if (curve_server_set_clients (self->curve, dir, err, sizeof err)) {
        log_error ("router: SIGHUP: CURVE clients not reloaded: %s", err);
        return;
    }
    self->limits.meta_property = *dir ? CURVE_ROLES_PROPERTY : NULL;
    free ((char *) now->curve_clients_dir);
    now->curve_clients_dir = strdup (dir);
    log_info ("router: SIGHUP: CURVE clients admitted: %s", *dir ? dir : "any key");
}

//  SIGHUP: the settings again, from the configuration.
static void
s_reload (router_t *self)
{
    if (!self->reload) {
        log_warning ("router: SIGHUP: reloading is not available");
        return;
    }
    service_reloading ();
    router_settings_t fresh;
    char err[512];
    if (self->reload (self->reload_arg, &fresh, err, sizeof err))
        log_error ("router: SIGHUP: configuration not reloaded: %s", err);
    else {
        router_apply (self, &fresh);
        log_info ("router: SIGHUP: configuration reloaded");
    }
    s_flush (self);
    service_ready ("reloaded");
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

int
router_run (router_t *self)
{
    assert (self);
    service_hup_install ();
    int64_t watchdog_ms = service_watchdog_ms ();
    int watchdog_timer = -1;
    if (watchdog_ms > 0)
        watchdog_timer =
            zloop_timer (self->loop, (size_t) watchdog_ms, 0, s_on_watchdog, self);
    service_ready ("serving");
    //  zloop_start returns 0 when a signal interrupts poll(): SIGHUP's
    //  reload happens here, on the loop's own stack, and the loop goes on.
    //  -1 is a handler's stop (admin DISCONNECT); zsys_interrupted is
    //  SIGINT/SIGTERM.
    while (true) {
        errno = 0;
        int rc = zloop_start (self->loop);
        if (rc == -1 || zsys_interrupted)
            break;
        if (service_hup_take ())
            s_reload (self);
        else if (errno != EINTR) {
            log_error ("router: event loop failed: %s", zmq_strerror (errno));
            break;
        }
    }
    service_stopping ();
    if (watchdog_timer != -1)
        zloop_timer_end (self->loop, watchdog_timer);
    if (self->deposed)
        return ROUTER_DEPOSED;  // nothing written, nothing said: not ours now
    //  What is written goes to disk before we stop, the dispatches held
    //  back included (running jobs keep their epoch across the restart).
    store_write_dispatches (self->store);
    s_flush (self);
    while (store_busy (self->store)) {
        store_event_t event;
        if (store_recv (self->store, &event, -1))
            break;
        s_store_event (self, &event);
        s_flush (self);
    }
    size_t held = queues_job_count (self->queues);
    if (store_is_memory (self->store))
        log_info (
            "router: stopping (%s); %zu unfinished job(s) held in memory are dropped",
            self->stopping ? "admin DISCONNECT" : "signal", held);
    else
        log_info ("router: stopping (%s); %zu unfinished job(s) kept in the store",
                  self->stopping ? "admin DISCONNECT" : "signal", held);
    //  After a signal, peers have not been told yet (DISCONNECT told them).
    if (!self->stopping) {
        s_kbye_all (self, self->job_managers, self->backend);
        s_kbye_all (self, self->schedulers, self->frontend);
    }
    s_flush_outboxes (self);
    return 0;
}

//  --------------------------------------------------------------------------
//  Self test: a router in a thread, real eMQP through DEALER sockets.

#include "tests/testutil.h"
#include "writer.h"

static void
s_test_actor (zsock_t *pipe, void *args)
{
    router_settings_t *settings = (router_settings_t *) args;
    char err[256];
    router_t *router = router_new (settings, err, sizeof err);
    zsock_signal (pipe, router ? 0 : 1);
    if (!router)
        return;
    //  The actor's pipe is not read: the router stops on admin DISCONNECT.
    router_run (router);
    router_destroy (&router);
    free (zstr_recv (pipe));  // hold until zactor_destroy sends $TERM
}

static emqp_msg_t *
s_test_recv (zsock_t *sock, int timeout_ms)
{
    zpoller_t *poller = zpoller_new (sock, NULL);
    void *which = zpoller_wait (poller, timeout_ms);
    zpoller_destroy (&poller);
    if (!which)
        return NULL;
    zmsg_t *zmsg = zmsg_recv (sock);
    char err[256];
    emqp_msg_t *msg = emqp_decode (&zmsg, false, NULL, NULL, err, sizeof err);
    if (!msg)
        fprintf (stderr, "router_test: undecodable reply: %s\n", err);
    return msg;
}

//  Receives until a message with the given command arrives (skipping
//  heartbeats), or NULL after the timeout.
static emqp_msg_t *
s_test_expect (zsock_t *sock, emqp_command_t command)
{
    for (int i = 0; i < 50; i++) {
        emqp_msg_t *msg = s_test_recv (sock, 2000);
        if (!msg)
            return NULL;
        if (msg->command == command)
            return msg;
        emqp_msg_destroy (&msg);
    }
    return NULL;
}

static void
s_test_send (zsock_t *sock, emqp_msg_t *msg)
{
    int rc = emqp_send (&msg, sock);
    CHECK_EQ (rc, 0);
}

static emqp_msg_t *
s_test_request (const char *msgid, const char *queue, const char *headers)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_REQUEST);
    msg->msgid = strdup (msgid);
    msg->queue = strdup (queue);
    msg->headers = strdup (headers);
    msg->payload = zframe_new ("payload", 7);
    return msg;
}

static emqp_msg_t *
s_test_done (const char *ref, uint64_t epoch, emqp_status_t status, const char *value)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_DONE);
    msg->ref = strdup (ref);
    msg->epoch = epoch;
    msg->status = status;
    msg->payload = zframe_new (value, strlen (value));
    msg->usage = strdup ("wall_us=1 cpu_us=1 maxrss_kb=1");
    return msg;
}

static zsock_t *
s_test_jm (const char *backend, const char *identity, const char *agent,
           const char *queues)
{
    zsock_t *jm = zsock_new (ZMQ_DEALER);
    zsock_set_identity (jm, identity);
    zsock_connect (jm, "%s", backend);
    emqp_msg_t *inform = emqp_msg_new (EMQP_INFORM);
    inform->msgid = strdup ("inform-1");
    inform->queues = strdup (queues);
    inform->peer_type = strdup ("worker");
    inform->agent = agent ? strdup (agent) : NULL;
    s_test_send (jm, inform);
    emqp_msg_t *ack = s_test_expect (jm, EMQP_ACK);
    CHECK (ack != NULL);
    CHECK_STREQ (ack ? ack->ref : NULL, "inform-1");
    emqp_msg_destroy (&ack);
    return jm;
}

//  True if no REQUEST reaches jm for timeout_ms (other messages skipped).
static bool
s_test_quiet (zsock_t *jm, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    bool quiet = true;
    for (int64_t left; quiet && (left = deadline - zclock_mono ()) > 0;) {
        emqp_msg_t *msg = s_test_recv (jm, (int) left);
        quiet = !msg || msg->command != EMQP_REQUEST;
        emqp_msg_destroy (&msg);
    }
    return quiet;
}

static uint64_t
s_test_expect_job (zsock_t *jm, const char *msgid, uint32_t attempt)
{
    emqp_msg_t *msg = s_test_expect (jm, EMQP_REQUEST);
    CHECK_STREQ (msg ? msg->msgid : NULL, msgid);
    CHECK_EQ (msg ? msg->attempt : 0, attempt);
    uint64_t epoch = msg ? msg->epoch : 0;
    emqp_msg_destroy (&msg);
    return epoch;
}

//  A router in a thread with a client, an admin socket and one emq/2 job
//  manager (prefetch as given), for the tests of emq/2 behaviour.
typedef struct {
    router_settings_t settings;
    zactor_t *actor;
    zsock_t *client, *admin, *jm;
} s_test_rig_t;

static void
s_test_rig_start (s_test_rig_t *rig, const char *name, uint32_t prefetch)
{
    static char endpoints[3][64];
    snprintf (endpoints[0], sizeof endpoints[0], "inproc://%s-frontend", name);
    snprintf (endpoints[1], sizeof endpoints[1], "inproc://%s-backend", name);
    snprintf (endpoints[2], sizeof endpoints[2], "inproc://%s-admin", name);
    rig->settings = (router_settings_t){
        .frontend = endpoints[0],
        .backend = endpoints[1],
        .admin = endpoints[2],
        .queue_hwm = 100,
        .heartbeat_interval_ms = 100,
        .heartbeat_timeout_ms = 5000,
        .heartbeat_liveness = 3,
        .payload_max = 1024,
        .prefetch = prefetch,
    };
    rig->actor = zactor_new (s_test_actor, &rig->settings);
    CHECK (rig->actor != NULL);
    rig->client = zsock_new_dealer (rig->settings.frontend);
    rig->admin = zsock_new_dealer (rig->settings.admin);
    rig->jm = s_test_jm (rig->settings.backend, name, "emq/2", "[[10, \"default\"]]");
}

//  Submits jobs (reply requested) and takes their ACKs.
static void
s_test_rig_submit (s_test_rig_t *rig, const char **ids, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        s_test_send (rig->client, s_test_request (ids[i], "default", "reply-requested"));
        emqp_msg_t *ack = s_test_expect (rig->client, EMQP_ACK);
        CHECK_STREQ (ack ? ack->ref : NULL, ids[i]);
        emqp_msg_destroy (&ack);
    }
}

static void
s_test_rig_stop (s_test_rig_t *rig)
{
    emqp_msg_t *disconnect = emqp_msg_new (EMQP_DISCONNECT);
    disconnect->msgid = strdup ("admin:bye-rig");
    s_test_send (rig->admin, disconnect);
    emqp_msg_t *msg = s_test_expect (rig->admin, EMQP_ACK);
    CHECK_STREQ (msg ? msg->ref : NULL, "admin:bye-rig");
    emqp_msg_destroy (&msg);
    zsock_destroy (&rig->jm);
    zsock_destroy (&rig->admin);
    zsock_destroy (&rig->client);
    zactor_destroy (&rig->actor);
}

//  The next message on sock, unpacked if it is a BATCH, as the list of its
//  messages' "COMMAND:ref" joined by commas (heartbeats skipped).
static void
s_test_next_epochs (zsock_t *sock, char *seen, size_t size, uint64_t *epochs)
{
    *seen = 0;
    size_t requests = 0;
    for (int tries = 0; tries < 20 && !*seen; tries++) {
        emqp_msg_t *msg = s_test_recv (sock, 2000);
        if (!msg)
            return;
        emqp_msg_t **msgs = &msg;
        size_t count = 1;
        bool batch = msg->command == EMQP_BATCH;
        if (batch) {
            char err[256];
            emqp_limits_t limits = { .payload_max = 1024 };
            msgs = emqp_batch_unpack (msg, &limits, &count, err, sizeof err);
            emqp_msg_destroy (&msg);
            if (!msgs)
                return;
            strlcat (seen, "BATCH=", size);
        }
        for (size_t i = 0; i < count; i++) {
            if (epochs && msgs[i]->command == EMQP_REQUEST && requests < 8)
                epochs[requests++] = msgs[i]->epoch;
            if (msgs[i]->command != EMQP_HEARTBEAT) {
                if (*seen && seen[strlen (seen) - 1] != '=')
                    strlcat (seen, ",", size);
                strlcat (seen, emqp_command_name (msgs[i]->command), size);
                strlcat (seen, ":", size);
                strlcat (seen,
                         msgs[i]->command == EMQP_REQUEST ? msgs[i]->msgid
                         : msgs[i]->ref                   ? msgs[i]->ref
                                                          : "",
                         size);
            }
            emqp_msg_destroy (&msgs[i]);
        }
        if (batch)
            free (msgs);
    }
}

static void
s_test_next (zsock_t *sock, char *seen, size_t size)
{
    s_test_next_epochs (sock, seen, size, NULL);
}

//  emq/3: a client's BATCH is taken message by message (a bad one refused
//  alone) and answered in BATCHes; an emq/3 job manager gets the jobs one
//  turn dispatches in one BATCH, and its outcomes may come in one.
static void
s_test_batches (void)
{
    s_test_rig_t rig;
    s_test_rig_start (&rig, "rt-batch", 0);
    char seen[512];
    //  Its INFORM's ACK and the first HEARTBEAT already travel together.
    zsock_t *jm = zsock_new (ZMQ_DEALER);
    zsock_set_identity (jm, "b3");
    zsock_connect (jm, "%s", rig.settings.backend);
    emqp_msg_t *inform = emqp_msg_new (EMQP_INFORM);
    inform->msgid = strdup ("inform-b3");
    inform->queues = strdup ("[[10, \"default\"]]");
    inform->peer_type = strdup ("worker");
    inform->agent = strdup ("emq/3");
    s_test_send (jm, inform);
    s_test_next (jm, seen, sizeof seen);
    CHECK_STREQ (seen, "BATCH=ACK:inform-b3");

    emqp_batch_t *batch = emqp_batch_new ();
    const char *ids[] = { "j1", "j2", "bad", "j3" };
    for (size_t i = 0; i < 4; i++) {
        char queue[200];
        memset (queue, 'q', sizeof queue - 1);
        queue[sizeof queue - 1] = 0;
        emqp_msg_t *request =
            s_test_request (ids[i], i == 2 ? queue : "default", "reply-requested");
        emqp_batch_add (batch, &request);
    }
    CHECK_EQ (emqp_batch_send (batch, rig.client, NULL), 0);
    s_test_next (rig.client, seen, sizeof seen);
    CHECK_STREQ (seen, "BATCH=ERROR:bad,ACK:j1,ACK:j2,ACK:j3");

    //  Three free slots in one turn: the three jobs in one BATCH.
    for (int i = 0; i < 3; i++) {
        emqp_msg_t *ready = emqp_msg_new (EMQP_READY);
        emqp_batch_add (batch, &ready);
    }
    CHECK_EQ (emqp_batch_send (batch, jm, NULL), 0);
    uint64_t epochs[8] = { 0 };
    s_test_next_epochs (jm, seen, sizeof seen, epochs);
    CHECK_STREQ (seen, "BATCH=REQUEST:j1,REQUEST:j2,REQUEST:j3");
    //  An emq/2 job manager gets plain messages.
    emqp_msg_t *ready = emqp_msg_new (EMQP_READY);
    s_test_send (rig.jm, ready);
    CHECK (s_test_quiet (rig.jm, 100));

    //  Outcomes in one BATCH: the client's RESULTs in one BATCH.
    const char *done_ids[] = { "j1", "j2", "j3" };
    for (int i = 0; i < 3; i++) {
        emqp_msg_t *done = s_test_done (done_ids[i], epochs[i], EMQP_STATUS_OK, "\xc3");
        emqp_batch_add (batch, &done);
    }
    CHECK_EQ (emqp_batch_send (batch, jm, NULL), 0);
    s_test_next (rig.client, seen, sizeof seen);
    CHECK_STREQ (seen, "BATCH=RESULT:j1,RESULT:j2,RESULT:j3");
    s_test_rig_stop (&rig);
    emqp_batch_destroy (&batch);
    zsock_destroy (&jm);
}

//  emq/2 job managers: a DONE frees the slot (no READY); RETURN gives back
//  an unstarted prefetched job, which then waits for a free slot.
static void
s_test_emq2 (void)
{
    s_test_rig_t rig;
    s_test_rig_start (&rig, "jm-emq2", 1);
    zsock_t *client = rig.client, *jm = rig.jm;
    const char *ids[] = { "a", "b", "c" };
    s_test_rig_submit (&rig, ids, 3);
    //  One READY: one job for the slot, one prefetched, no more.
    s_test_send (jm, emqp_msg_new (EMQP_READY));
    uint64_t epoch_a = s_test_expect_job (jm, "a", 1);
    uint64_t epoch_b = s_test_expect_job (jm, "b", 1);
    CHECK (s_test_quiet (jm, 200));
    emqp_msg_t *msg;

    //  b comes back unstarted: it waits at the head for a free slot; c,
    //  behind it, is not prefetched past it.
    emqp_msg_t *ret = emqp_msg_new (EMQP_RETURN);
    ret->ref = strdup ("b");
    ret->epoch = epoch_b;
    s_test_send (jm, ret);
    CHECK (s_test_quiet (jm, 300));

    //  a's DONE frees its slot: b runs there, still as attempt 1, and c is
    //  prefetched again.
    s_test_send (jm, s_test_done ("a", epoch_a, EMQP_STATUS_OK, "A"));
    msg = s_test_expect (client, EMQP_RESULT);
    CHECK_STREQ (msg ? msg->ref : NULL, "a");
    emqp_msg_destroy (&msg);
    epoch_b = s_test_expect_job (jm, "b", 1);
    uint64_t epoch_c = s_test_expect_job (jm, "c", 1);
    s_test_send (jm, s_test_done ("b", epoch_b, EMQP_STATUS_OK, "B"));
    s_test_send (jm, s_test_done ("c", epoch_c, EMQP_STATUS_OK, "C"));
    for (int i = 0; i < 2; i++) {
        msg = s_test_expect (client, EMQP_RESULT);
        CHECK (msg && (streq (msg->ref, "b") || streq (msg->ref, "c")));
        CHECK (msg && msg->status == EMQP_STATUS_OK);
        emqp_msg_destroy (&msg);
    }
    //  A RETURN for a job that is not running there changes nothing.
    ret = emqp_msg_new (EMQP_RETURN);
    ret->ref = strdup ("c");
    ret->epoch = epoch_c;
    s_test_send (jm, ret);

    s_test_rig_stop (&rig);
}

static void
s_test_heartbeat (zsock_t *jm, const char *stats)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_HEARTBEAT);
    msg->heartbeat_ts = clock_wall_s ();
    msg->stats = strdup (stats);
    s_test_send (jm, msg);
}

//  Lease check: a job an emq/2 job manager does not report (running or
//  held) for two heartbeat intervals is dispatched again.
static void
s_test_reconcile (void)
{
    s_test_rig_t rig;
    s_test_rig_start (&rig, "jm-lossy", 0);
    zsock_t *client = rig.client, *jm = rig.jm;
    const char *ids[] = { "x", "y" };
    s_test_rig_submit (&rig, ids, 2);
    s_test_send (jm, emqp_msg_new (EMQP_READY));
    s_test_send (jm, emqp_msg_new (EMQP_READY));
    uint64_t epoch_x = s_test_expect_job (jm, "x", 1);
    uint64_t epoch_y = s_test_expect_job (jm, "y", 1);
    char stats[256];

    //  Reports that have not seen y's epoch yet: y may still be on its way.
    //  An old-style report (no jobs_held, no max_epoch) counts for nothing.
    s_test_heartbeat (jm, "{\"jobs_in_flight\": {}}");
    snprintf (stats, sizeof stats,
              "{\"jobs_in_flight\": {\"x\": {}}, \"jobs_held\": [], "
              "\"max_epoch\": %" PRIu64 "}",
              epoch_x);
    s_test_heartbeat (jm, stats);
    zclock_sleep (250);
    s_test_heartbeat (jm, stats);
    CHECK (s_test_quiet (jm, 300));

    //  y "never arrived": reports past its epoch, 250 ms apart, without it.
    //  It comes again (its slot is free again too), as attempt 2.
    snprintf (stats, sizeof stats,
              "{\"jobs_in_flight\": {\"x\": {}}, \"jobs_held\": [], "
              "\"max_epoch\": %" PRIu64 "}",
              epoch_y);
    s_test_heartbeat (jm, stats);
    zclock_sleep (250);
    s_test_heartbeat (jm, stats);
    epoch_y = s_test_expect_job (jm, "y", 2);

    //  Held jobs count as held: nothing moves.
    snprintf (stats, sizeof stats,
              "{\"jobs_in_flight\": {\"x\": {}}, \"jobs_held\": "
              "[\"y\"], \"max_epoch\": %" PRIu64 "}",
              epoch_y);
    s_test_heartbeat (jm, stats);
    zclock_sleep (250);
    s_test_heartbeat (jm, stats);
    CHECK (s_test_quiet (jm, 300));
    emqp_msg_t *msg;

    s_test_send (jm, s_test_done ("x", epoch_x, EMQP_STATUS_OK, "X"));
    s_test_send (jm, s_test_done ("y", epoch_y, EMQP_STATUS_OK, "Y"));
    for (int i = 0; i < 2; i++) {
        msg = s_test_expect (client, EMQP_RESULT);
        CHECK (msg && msg->status == EMQP_STATUS_OK);
        emqp_msg_destroy (&msg);
    }
    s_test_rig_stop (&rig);
}

//  With a data directory: an ACK goes only once its job's row is
//  committed, and a slow commit (a slow disk) holds back the ACKs of its
//  own batch only: jobs already ACKed are dispatched, and STATUS answered,
//  while it is on its way.
static int s_test_commit_ms;

static int
s_test_slow_step (sqlite3_stmt *stmt)
{
    const char *sql = sqlite3_sql (stmt);
    if (s_test_commit_ms && sql && streq (sql, "COMMIT"))
        zclock_sleep (s_test_commit_ms);
    return sqlite3_step (stmt);
}

static int64_t
s_test_rows (sqlite3 *db, const char *msgid)
{
    sqlite3_stmt *stmt = NULL;
    int64_t count = -1;
    if (sqlite3_prepare_v2 (db, "SELECT count(*) FROM jobs WHERE msgid = ?", -1, &stmt,
                            NULL)
        == SQLITE_OK) {
        sqlite3_bind_text (stmt, 1, msgid, -1, SQLITE_STATIC);
        if (sqlite3_step (stmt) == SQLITE_ROW)
            count = sqlite3_column_int64 (stmt, 0);
    }
    sqlite3_finalize (stmt);
    return count;
}

static void
s_test_durable (void)
{
    char dir[] = "/tmp/emq-router-test-XXXXXX";
    CHECK (mkdtemp (dir) != NULL);
    char path[256];
    snprintf (path, sizeof path, "%s/emq.db", dir);
    s_test_rig_t rig = { .settings = { .frontend = "inproc://durable-frontend",
                                       .backend = "inproc://durable-backend",
                                       .admin = "inproc://durable-admin",
                                       .queue_hwm = 100,
                                       .heartbeat_interval_ms = 100,
                                       .heartbeat_timeout_ms = 5000,
                                       .heartbeat_liveness = 3,
                                       .payload_max = 1024,
                                       .db_path = path,
                                       .fsync = STORE_FSYNC_ALWAYS } };
    rig.actor = zactor_new (s_test_actor, &rig.settings);
    CHECK (rig.actor != NULL);
    rig.client = zsock_new_dealer (rig.settings.frontend);
    rig.admin = zsock_new_dealer (rig.settings.admin);
    rig.jm =
        s_test_jm (rig.settings.backend, "jm-durable", "emq/2", "[[10, \"default\"]]");
    sqlite3 *db = NULL;
    CHECK_EQ (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);

    //  The ACK comes with the row on disk.
    const char *first[] = { "kept-1" };
    s_test_rig_submit (&rig, first, 1);
    CHECK_EQ (s_test_rows (db, "kept-1"), 1);

    //  Every commit now takes 600 ms. kept-2's batch is on its way...
    s_test_commit_ms = 600;
    writer_step = s_test_slow_step;
    int64_t start = zclock_mono ();
    s_test_send (rig.client, s_test_request ("kept-2", "default", "reply-requested"));
    zclock_sleep (50);  // let it reach the router and its writer
    //  ...meanwhile STATUS is answered and kept-1 is dispatched at once.
    s_test_send (rig.admin, emqp_msg_new (EMQP_STATUS));
    emqp_msg_t *msg = s_test_expect (rig.admin, EMQP_REPLY);
    CHECK (msg != NULL);
    emqp_msg_destroy (&msg);
    s_test_send (rig.jm, emqp_msg_new (EMQP_READY));
    uint64_t epoch = s_test_expect_job (rig.jm, "kept-1", 1);
    int64_t served_ms = zclock_mono () - start;
    CHECK (served_ms < 400);
    //  The ACK of kept-2 comes only after its commit, and its row is there.
    msg = s_test_expect (rig.client, EMQP_ACK);
    CHECK_STREQ (msg ? msg->ref : NULL, "kept-2");
    emqp_msg_destroy (&msg);
    CHECK (zclock_mono () - start >= 600);
    CHECK_EQ (s_test_rows (db, "kept-2"), 1);
    s_test_commit_ms = 0;
    writer_step = sqlite3_step;

    //  kept-1's RESULT goes out before its end is committed; a FETCH finds
    //  the outcome in memory meanwhile, and in the store after.
    s_test_send (rig.jm, s_test_done ("kept-1", epoch, EMQP_STATUS_OK, "one"));
    msg = s_test_expect (rig.client, EMQP_RESULT);
    CHECK_STREQ (msg ? msg->ref : NULL, "kept-1");
    emqp_msg_destroy (&msg);
    emqp_msg_t *fetch = emqp_msg_new (EMQP_FETCH);
    fetch->ref = strdup ("kept-1");
    s_test_send (rig.client, fetch);
    msg = s_test_expect (rig.client, EMQP_RESULT);
    CHECK (msg && zframe_streq (msg->payload, "one"));
    emqp_msg_destroy (&msg);
    s_test_rig_stop (&rig);
    sqlite3_close (db);
    const char *files[] = { "emq.db", "emq.db-wal", "emq.db-shm" };
    for (int i = 0; i < 3; i++) {
        snprintf (path, sizeof path, "%s/%s", dir, files[i]);
        unlink (path);
    }
    rmdir (dir);
}

void
router_test (bool verbose)
{
    if (verbose)
        printf (" * router: ");
    else
        log_set_level (LOG_LEVEL_ERROR);
    router_settings_t settings = {
        .frontend = "inproc://router-test-frontend",
        .backend = "inproc://router-test-backend",
        .admin = "inproc://router-test-admin",
        .queue_hwm = 2,
        .heartbeat_interval_ms = 100,
        .heartbeat_timeout_ms = 5000,
        .heartbeat_liveness = 3,
        .payload_max = 1024,
        .retry_backoff_s = 0.01,
        .retry_backoff_max_s = 0.02,
    };
    zactor_t *actor = zactor_new (s_test_actor, &settings);
    CHECK (actor != NULL);
    zsock_t *client = zsock_new_dealer (settings.frontend);
    zsock_t *admin = zsock_new_dealer (settings.admin);
    zsock_t *jm = s_test_jm (settings.backend, "jm-emq", "emq/1", "[[10, \"default\"]]");

    //  Submit, get ACK; READY brings the job with epoch and attempt.
    s_test_send (client, s_test_request ("job-1", "default", "reply-requested"));
    emqp_msg_t *msg = s_test_expect (client, EMQP_ACK);
    CHECK_STREQ (msg ? msg->ref : NULL, "job-1");
    emqp_msg_destroy (&msg);
    s_test_send (jm, emqp_msg_new (EMQP_READY));
    msg = s_test_expect (jm, EMQP_REQUEST);
    CHECK_STREQ (msg ? msg->msgid : NULL, "job-1");
    CHECK_EQ (msg ? msg->attempt : 0, 1);
    CHECK (msg && msg->epoch > 0);
    CHECK (msg && zframe_streq (msg->payload, "payload"));
    uint64_t epoch = msg ? msg->epoch : 0;
    emqp_msg_destroy (&msg);

    //  A stale epoch is ignored; the right one ends the job with a RESULT.
    s_test_send (jm, s_test_done ("job-1", epoch - 1, EMQP_STATUS_OK, "stale"));
    s_test_send (jm, s_test_done ("job-1", epoch, EMQP_STATUS_OK, "value"));
    msg = s_test_expect (client, EMQP_RESULT);
    CHECK_STREQ (msg ? msg->ref : NULL, "job-1");
    CHECK (msg && msg->status == EMQP_STATUS_OK);
    CHECK (msg && zframe_streq (msg->payload, "value"));
    emqp_msg_destroy (&msg);

    //  Retries: a failure with retry-count:1 runs again as attempt 2.
    s_test_send (client,
                 s_test_request ("job-2", "default", "reply-requested,retry-count:1"));
    msg = s_test_expect (client, EMQP_ACK);
    emqp_msg_destroy (&msg);
    s_test_send (jm, emqp_msg_new (EMQP_READY));
    msg = s_test_expect (jm, EMQP_REQUEST);
    epoch = msg ? msg->epoch : 0;
    emqp_msg_destroy (&msg);
    s_test_send (jm, s_test_done ("job-2", epoch, EMQP_STATUS_FAILED, "boom"));
    s_test_send (jm, emqp_msg_new (EMQP_READY));
    msg = s_test_expect (jm, EMQP_REQUEST);
    CHECK_EQ (msg ? msg->attempt : 0, 2);
    CHECK (msg && msg->epoch > epoch);
    epoch = msg ? msg->epoch : 0;
    emqp_msg_destroy (&msg);
    s_test_send (jm, s_test_done ("job-2", epoch, EMQP_STATUS_FAILED, "boom again"));
    msg = s_test_expect (client, EMQP_RESULT);
    CHECK (msg && msg->status == EMQP_STATUS_FAILED);
    CHECK (msg && zframe_streq (msg->payload, "boom again"));
    emqp_msg_destroy (&msg);

    //  High-water mark on a queue nobody serves; duplicates are ACKed once.
    for (int i = 0; i < 2; i++) {
        char id[32];
        snprintf (id, sizeof id, "idle-%d", i);
        s_test_send (client, s_test_request (id, "idle", ""));
        msg = s_test_expect (client, EMQP_ACK);
        CHECK_STREQ (msg ? msg->ref : NULL, id);
        emqp_msg_destroy (&msg);
    }
    s_test_send (client, s_test_request ("idle-0", "idle", ""));
    msg = s_test_expect (client, EMQP_ACK);
    CHECK_STREQ (msg ? msg->ref : NULL, "idle-0");
    emqp_msg_destroy (&msg);
    s_test_send (client, s_test_request ("idle-2", "idle", ""));
    msg = s_test_expect (client, EMQP_ERROR);
    CHECK_STREQ (msg ? msg->error_code : NULL, "QUEUE_FULL");
    CHECK_STREQ (msg ? msg->ref : NULL, "idle-2");
    emqp_msg_destroy (&msg);

    //  Bad headers, garbage, oversized payloads and DISCONNECT on the
    //  frontend are refused with ERROR.
    s_test_send (client, s_test_request ("bad-1", "default", "timeout:x"));
    msg = s_test_expect (client, EMQP_ERROR);
    CHECK_STREQ (msg ? msg->error_code : NULL, "BAD_REQUEST");
    emqp_msg_destroy (&msg);
    zstr_sendx (client, "", "eMQP/1.0", "BOGUS", "x", NULL);
    msg = s_test_expect (client, EMQP_ERROR);
    CHECK_STREQ (msg ? msg->error_code : NULL, "BAD_FRAME");
    CHECK_CONTAINS (msg ? msg->error_text : NULL, "unknown command");
    emqp_msg_destroy (&msg);
    emqp_msg_t *big = s_test_request ("big-1", "default", "");
    zframe_destroy (&big->payload);
    char blob[2048] = { 0 };
    big->payload = zframe_new (blob, sizeof blob);
    s_test_send (client, big);
    msg = s_test_expect (client, EMQP_ERROR);
    CHECK_STREQ (msg ? msg->error_code : NULL, "TOO_LARGE");
    emqp_msg_destroy (&msg);
    s_test_send (client, emqp_msg_new (EMQP_DISCONNECT));
    msg = s_test_expect (client, EMQP_ERROR);
    CHECK_STREQ (msg ? msg->error_code : NULL, "NOT_ALLOWED");
    emqp_msg_destroy (&msg);

    //  Fencing: only a registered scheduler may carry a token; once one is
    //  seen, an older one is refused.
    s_test_send (client, s_test_request ("fire-0", "fires", "fence:10"));
    msg = s_test_expect (client, EMQP_ERROR);
    CHECK_STREQ (msg ? msg->error_code : NULL, "NOT_ALLOWED");
    emqp_msg_destroy (&msg);
    zsock_t *sched = zsock_new_dealer (settings.frontend);
    emqp_msg_t *inform = emqp_msg_new (EMQP_INFORM);
    inform->queues = strdup ("");
    inform->peer_type = strdup ("scheduler");
    s_test_send (sched, inform);
    msg = s_test_expect (sched, EMQP_ACK);
    CHECK (msg != NULL);
    emqp_msg_destroy (&msg);
    s_test_send (sched, s_test_request ("fire-1", "fires", "fence:10"));
    msg = s_test_expect (sched, EMQP_ACK);
    CHECK_STREQ (msg ? msg->ref : NULL, "fire-1");
    emqp_msg_destroy (&msg);
    s_test_send (sched, s_test_request ("fire-2", "fires", "fence:9"));
    msg = s_test_expect (sched, EMQP_ERROR);
    CHECK_STREQ (msg ? msg->error_code : NULL, "FENCED");
    emqp_msg_destroy (&msg);
    s_test_send (sched, s_test_request ("fire-3", "fires", "fence:11"));
    msg = s_test_expect (sched, EMQP_ACK);
    CHECK_STREQ (msg ? msg->ref : NULL, "fire-3");
    emqp_msg_destroy (&msg);
    s_test_send (sched, s_test_request ("fire-4", "fires", "fence:9223372036854775808"));
    msg = s_test_expect (sched, EMQP_ERROR);
    CHECK_STREQ (msg ? msg->error_code : NULL, "BAD_REQUEST");
    emqp_msg_destroy (&msg);
    //  Another scope is not compared with the legacy one's 11.
    s_test_send (sched,
                 s_test_request ("fire-5", "fires-b", "fence:2,fence-scope:etcd:x"));
    msg = s_test_expect (sched, EMQP_ACK);
    CHECK_STREQ (msg ? msg->ref : NULL, "fire-5");
    emqp_msg_destroy (&msg);
    s_test_send (sched,
                 s_test_request ("fire-6", "fires-b", "fence:1,fence-scope:etcd:x"));
    msg = s_test_expect (sched, EMQP_ERROR);
    CHECK_STREQ (msg ? msg->error_code : NULL, "FENCED");
    emqp_msg_destroy (&msg);
    //  A client may neither use a fire msgid nor name a scope.
    s_test_send (client, s_test_request ("sched:tick:1", "fires", ""));
    msg = s_test_expect (client, EMQP_ERROR);
    CHECK_STREQ (msg ? msg->error_code : NULL, "NOT_ALLOWED");
    emqp_msg_destroy (&msg);
    s_test_send (client, s_test_request ("scoped", "fires", "fence-scope:etcd:x"));
    msg = s_test_expect (client, EMQP_ERROR);
    CHECK_STREQ (msg ? msg->error_code : NULL, "NOT_ALLOWED");
    emqp_msg_destroy (&msg);
    zsock_destroy (&sched);

    //  A job manager leaving with a job in flight: the job goes to another.
    s_test_send (client, s_test_request ("job-3", "default", "reply-requested"));
    msg = s_test_expect (client, EMQP_ACK);
    emqp_msg_destroy (&msg);
    s_test_send (jm, emqp_msg_new (EMQP_READY));
    msg = s_test_expect (jm, EMQP_REQUEST);
    CHECK_STREQ (msg ? msg->msgid : NULL, "job-3");
    emqp_msg_destroy (&msg);
    zsock_t *legacy =
        s_test_jm (settings.backend, "jm-legacy", NULL, "[[10, \"default\"]]");
    s_test_send (legacy, emqp_msg_new (EMQP_READY));
    s_test_send (jm, emqp_msg_new (EMQP_KBYE));
    msg = s_test_expect (legacy, EMQP_REQUEST);
    CHECK_STREQ (msg ? msg->msgid : NULL, "job-3");
    CHECK_UEQ (msg ? msg->epoch : 1, 0);  // no extension frames for EventMQ
    emqp_msg_destroy (&msg);
    //  EventMQ's REPLY ends it; the value reaches the client as msgpack.
    emqp_msg_t *reply = emqp_msg_new (EMQP_REPLY);
    reply->payload = zframe_new ("{\"value\": 5}", 12);
    reply->ref = strdup ("job-3");
    s_test_send (legacy, reply);
    msg = s_test_expect (client, EMQP_RESULT);
    CHECK (msg && msg->status == EMQP_STATUS_OK);
    CHECK (msg && zframe_size (msg->payload) == 13);
    emqp_msg_destroy (&msg);

    //  Admin: STATUS in EventMQ's shape, then DISCONNECT stops the router.
    s_test_send (admin, emqp_msg_new (EMQP_STATUS));
    msg = s_test_expect (admin, EMQP_REPLY);
    char *json = msg && msg->payload ? zframe_strdup (msg->payload) : NULL;
    json_t *status = json ? json_loads (json, 0, NULL) : NULL;
    CHECK_EQ (json_integer_value (json_object_get (
                  json_object_get (status, "waiting_messages_by_queue"), "idle")),
              2);
    CHECK_EQ (json_integer_value (json_object_get (
                  json_object_get (status, "processed_messages_by_queue"), "default")),
              2);
    json_decref (status);
    free (json);
    emqp_msg_destroy (&msg);
    s_test_send (admin, emqp_msg_new (EMQP_ROUTER_SHOW_WORKERS));
    msg = s_test_expect (admin, EMQP_REPLY);
    json = msg && msg->payload ? zframe_strdup (msg->payload) : NULL;
    CHECK_CONTAINS (json, "\"jm-legacy\":{\"queues\":[[10,\"default\"]]");
    free (json);
    emqp_msg_destroy (&msg);
    emqp_msg_t *disconnect = emqp_msg_new (EMQP_DISCONNECT);
    disconnect->msgid = strdup ("admin:bye");
    s_test_send (admin, disconnect);
    msg = s_test_expect (admin, EMQP_ACK);
    CHECK_STREQ (msg ? msg->ref : NULL, "admin:bye");
    emqp_msg_destroy (&msg);
    msg = s_test_expect (legacy, EMQP_KBYE);
    CHECK (msg != NULL);
    emqp_msg_destroy (&msg);

    zsock_destroy (&legacy);
    zsock_destroy (&jm);
    zsock_destroy (&admin);
    zsock_destroy (&client);
    zactor_destroy (&actor);

    s_test_emq2 ();
    s_test_reconcile ();
    s_test_batches ();
    s_test_durable ();
    log_set_level (LOG_LEVEL_INFO);
    if (verbose)
        printf ("OK\n");
}
