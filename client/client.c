/*  client — libemq: submit jobs to an emq (or EventMQ) router and collect
    their ACKs, errors and results. See include/emq/client.h.

    One DEALER socket per client, connected to the router's frontend with
    ZMQ_IMMEDIATE, so that nothing is queued for a router we are not
    connected to. Every message is built and parsed by common/emqp. Events
    (ACK, ERROR, RESULT) that arrive while a call waits for something else
    are kept, in arrival order, in self->events, which owns them; the
    message behind the event handed out last is self->current, so that the
    event's data stays valid until the next call that hands out an event.

    Batches (emq/3): an emq router's ACK names its agent; from then on
    the client sends many jobs at once as one BATCH (emq_submit_many), and
    sends its next message as a BATCH even alone, which tells the router it
    may answer in BATCHes. A BATCH received is unpacked into self->inbox,
    whose messages come out one by one as if they had arrived alone.

    Several routers (an address list, "tcp://r1:47291,tcp://r2:47291"): one
    DEALER per address, all with one identity, so that whichever router
    leads routes our results to us. Sends go to the current one; answers
    are read from all. A standby binds nothing, so with ZMQ_IMMEDIATE only
    the leader's socket takes messages. When the current router cannot
    take a message, or leaves a REQUEST unACKed for the failover timeout,
    the client moves to the next address that can, sends every unACKed
    REQUEST again under its msgid (the router keeps each msgid once) and
    asks again for the results it awaits (client/ledger keeps both, and
    drops the second copy of an answer).

    Cost per job matters here (a program may keep thousands in flight):
    sends and receives are tried before any wait, a wait for input sleeps
    on the socket's ZMQ_FD rather than in zmq_poll, and the headers frame
    of a submit is kept for the next one with the same options.
*/
#include "emq/client.h"
#include "curve.h"
#include "addrlist.h"
#include "emqp.h"
#include "errbuf.h"
#include "headers.h"
#include "log.h"
#include "ledger.h"
#include "payload.h"

#include <czmq.h>
#include <errno.h>
#include <limits.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Largest message we accept from a router: a result can be a big stdout.
#define S_MESSAGE_MAX (256 * 1024 * 1024)
#define S_LINGER_MS 100

//  The headers frame made from a submit's options, kept for the next
//  submit: a program usually sends many jobs with the same options, and
//  formatting and checking the frame each time costs more than the rest of
//  building the REQUEST.
typedef struct {
    bool valid;  // text was made from the fields below
    bool reply;  // the emq_submit_opts_t fields it was made from
    uint32_t retries;
    uint32_t timeout_s;
    uint32_t delay_s;
    uint32_t eta;
    char *extra;                      // extra_headers, copied; NULL = none or ""
    char text[EMQP_HEADERS_MAX + 1];  // the headers frame
} s_headers_cache_t;

struct emq_client {
    zsock_t *sock;         // DEALER to the current router's frontend
    const char *endpoint;  // its address, in endpoints
    char **endpoints;      // every router's address (addrlist), owned
    size_t nendpoints;
    zsock_t **socks;   // one DEALER per address, owned; sock is one
    size_t in_use;     // index of sock
    ledger_t *ledger;  // several addresses: what to send again
    int failover_timeout_ms;
    int64_t next_probe_ms;   // next look at whether sock is connected
    int64_t next_expire_ms;  // next cleaning of the ledger's duplicates
    zlistx_t *events;        // emqp_msg_t *, owned, oldest first
    zlistx_t *inbox;         // emqp_msg_t *, owned: unpacked from a BATCH,
                             // not yet received
    bool router_batches;     // the router's ACK named emq/3 or later
    bool announced;          // we sent it a BATCH: it answers in batches
    emqp_msg_t *current;     // behind the last event handed out, owned
    int connect_timeout_ms;  // send wait for a connection, -1 = forever
    emqp_limits_t limits;
    s_headers_cache_t headers;  // of the last submit
    char last_error[512];
};

static const char *s_error_names[] = { "ok",
                                       "invalid argument",
                                       "router unreachable",
                                       "timed out",
                                       "rejected by router",
                                       "job failed",
                                       "job timed out",
                                       "protocol error",
                                       "out of memory",
                                       "system error",
                                       "no such job" };

const char *
emq_strerror (int code)
{
    if (code > 0 || code < EMQ_ERR_NOT_FOUND)
        return "unknown error";
    return s_error_names[-code];
}

const char *
emq_job_status_name (emq_job_status_t status)
{
    //  The same words as eMQP's status frame.
    switch (status) {
        case EMQ_JOB_OK:
            return "ok";
        case EMQ_JOB_FAILED:
            return "failed";
        case EMQ_JOB_TIMEOUT:
            return "timeout";
        case EMQ_JOB_CRASHED:
            return "crashed";
        case EMQ_JOB_REJECTED:
            return "rejected";
        case EMQ_JOB_CANCELLED:
            return "cancelled";
    }
    return "unknown";
}

static int s_error (emq_client_t *self, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

//  Records the detail of a failure and returns its code.
static int
s_error (emq_client_t *self, int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    errbuf_vset (self->last_error, sizeof self->last_error, format, args);
    va_end (args);
    return code;
}

static void
s_msg_destructor (void **item)
{
    emqp_msg_destroy ((emqp_msg_t **) item);
}

//  Milliseconds left until deadline (-1 = none), never negative.
static long
s_remaining (int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - zclock_mono ();
    return left > 0 ? (long) left : 0;
}

static int64_t
s_deadline (int timeout_ms)
{
    return timeout_ms < 0 ? -1 : zclock_mono () + timeout_ms;
}

//  CURVE keys set by emq_set_curve; until then the environment's.
static bool s_curve_set;
static char s_curve_server_key[4096];
static char s_curve_cert[4096];

int
emq_set_curve (const char *server_key, const char *client_cert, char *err, size_t errlen)
{
    char reason[512] = "";
    if (server_key && *server_key) {
        //  Bad keys are reported here, not at the first connection.
        int rc = curve_client_check (server_key, client_cert, reason, sizeof reason);
        if (rc || strlen (server_key) >= sizeof s_curve_server_key
            || (client_cert && strlen (client_cert) >= sizeof s_curve_cert)) {
            if (err && errlen)
                snprintf (err, errlen, "%s", *reason ? reason : "CURVE keys not usable");
            return EMQ_ERR_INVALID;
        }
    }
    snprintf (s_curve_server_key, sizeof s_curve_server_key, "%s",
              server_key ? server_key : "");
    snprintf (s_curve_cert, sizeof s_curve_cert, "%s", client_cert ? client_cert : "");
    s_curve_set = true;
    return 0;
}

//  Makes sock a CURVE client when keys are configured. Returns 0 or -1.
static int
s_curve_apply (zsock_t *sock)
{
    const char *key = s_curve_set ? s_curve_server_key : getenv ("EMQ_CURVE_SERVER_KEY");
    const char *cert = s_curve_set ? s_curve_cert : getenv ("EMQ_CURVE_CERT");
    if (!key || !*key)
        return 0;
    char err[512];
    if (curve_client_apply (sock, key, cert ? cert : "", err, sizeof err)) {
        log_error ("libemq: CURVE: %s", err);
        return -1;
    }
    return 0;
}

//  Makes a DEALER for talking to a router: short linger so no program hangs
//  on exit, immediate so nothing waits for an absent peer, a unique
//  identity, and a cap on incoming message size.
static zsock_t *
s_socket_with_identity (const char *endpoint, const char *identity)
{
    zsock_t *sock = zsock_new (ZMQ_DEALER);
    if (!sock)
        return NULL;
    if (s_curve_apply (sock)) {
        zsock_destroy (&sock);
        errno = EPERM;
        return NULL;
    }
    zsock_set_identity (sock, identity);
    zsock_set_linger (sock, S_LINGER_MS);
    zsock_set_immediate (sock, 1);
    zsock_set_maxmsgsize (sock, S_MESSAGE_MAX);
    zsock_set_sndhwm (sock, 10000);
    zsock_set_rcvhwm (sock, 10000);
    if (zsock_connect (sock, "%s", endpoint)) {
        zsock_destroy (&sock);
        errno = EINVAL;
        return NULL;
    }
    return sock;
}

//  The identity is the prefix and a fresh uuid.
static void
s_identity_new (const char *prefix, char identity[64])
{
    char uuid[37];
    emqp_msgid_new (uuid);
    snprintf (identity, 64, "%s%s", prefix, uuid);
}

static zsock_t *
s_socket_new (const char *endpoint, const char *identity_prefix)
{
    char identity[64];
    s_identity_new (identity_prefix, identity);
    return s_socket_with_identity (endpoint, identity);
}

emq_client_t *
emq_client_new (const char *addr)
{
    if (!addr || !*addr)
        addr = getenv ("EMQ_BROKER_ADDR");
    if (!addr || !*addr)
        addr = EMQ_DEFAULT_FRONTEND;
    emq_client_t *self = calloc (1, sizeof (emq_client_t));
    if (!self)
        return NULL;
    self->connect_timeout_ms = EMQ_CONNECT_TIMEOUT_MS;
    self->failover_timeout_ms = EMQ_FAILOVER_TIMEOUT_MS;
    self->limits.payload_max = S_MESSAGE_MAX;
    char why[256];
    self->endpoints = addrlist_parse (addr, &self->nendpoints, why, sizeof why);
    if (!self->endpoints) {
        log_error ("libemq: router address '%.200s': expected %s", addr, why);
        goto fail;
    }
    self->events = zlistx_new ();
    self->inbox = zlistx_new ();
    self->socks = calloc (self->nendpoints, sizeof (zsock_t *));
    if (!self->events || !self->inbox || !self->socks)
        goto fail;
    zlistx_set_destructor (self->events, s_msg_destructor);
    zlistx_set_destructor (self->inbox, s_msg_destructor);
    if (self->nendpoints > 1
        && !(self->ledger =
                 ledger_new (60 * 1000 + 10 * (int64_t) EMQ_FAILOVER_TIMEOUT_MS)))
        goto fail;
    char identity[64];
    s_identity_new ("client-", identity);
    for (size_t i = 0; i < self->nendpoints; i++)
        if (!(self->socks[i] = s_socket_with_identity (self->endpoints[i], identity)))
            goto fail;
    self->sock = self->socks[0];
    self->endpoint = self->endpoints[0];
    return self;

fail:
    emq_client_destroy (&self);
    errno = errno ? errno : ENOMEM;
    return NULL;
}

void
emq_client_destroy (emq_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    emq_client_t *self = *self_p;
    for (size_t i = 0; self->socks && i < self->nendpoints; i++)
        zsock_destroy (&self->socks[i]);
    free (self->socks);
    addrlist_destroy (&self->endpoints);
    ledger_destroy (&self->ledger);
    zlistx_destroy (&self->events);
    zlistx_destroy (&self->inbox);
    emqp_msg_destroy (&self->current);
    free (self->headers.extra);
    free (self);
    *self_p = NULL;
}

const char *
emq_client_last_error (emq_client_t *self)
{
    assert (self);
    return self->last_error;
}

const char *
emq_client_endpoint (emq_client_t *self)
{
    assert (self);
    return self->endpoint;
}

void
emq_client_set_connect_timeout (emq_client_t *self, int timeout_ms)
{
    assert (self);
    self->connect_timeout_ms = timeout_ms < 0 ? -1 : timeout_ms;
}

void
emq_client_set_failover_timeout (emq_client_t *self, int timeout_ms)
{
    assert (self);
    self->failover_timeout_ms = timeout_ms < 1 ? 1 : timeout_ms;
}

size_t
emq_client_pending (emq_client_t *self)
{
    assert (self);
    return zlistx_size (self->events);
}

//  --------------------------------------------------------------------------
//  Socket waits

//  Waits until sock has events (ZMQ_POLLIN or ZMQ_POLLOUT) or the deadline
//  passes. Returns 0 when ready, EMQ_ERR_TIMEOUT, or EMQ_ERR_SYSTEM (a
//  signal interrupted the wait, or zmq_poll failed; detail in err).
static int
s_wait (zsock_t *sock, short events, int64_t deadline, char *err, size_t errlen)
{
    zmq_pollitem_t item = { zsock_resolve (sock), 0, events, 0 };
    while (true) {
        int rc = zmq_poll (&item, 1, s_remaining (deadline));
        if (rc > 0)
            return 0;
        if (rc == 0) {
            if (deadline >= 0 && s_remaining (deadline) == 0)
                return EMQ_ERR_TIMEOUT;
            continue;
        }
        snprintf (err, errlen, "%s",
                  errno == EINTR ? "interrupted by a signal" : zmq_strerror (errno));
        return EMQ_ERR_SYSTEM;
    }
}

//  Processes ZeroMQ's pending commands, if there are any, so that none is
//  left for libzmq to process between two frames of the next message.
//  libzmq processes commands inside zmq_msg_recv every 100 frames, and
//  inside zmq_send when a millisecond has passed; with ZMQ_IMMEDIATE the
//  "hiccup" command of a lost connection ends the pipe at once, so that a
//  message half read aborts the program (fq.cpp "!_more", zeromq/libzmq
//  #3485) and one half sent is dropped without a word. A zmq_poll before
//  each message did this at the price of three system calls (two polls
//  and a getpid); ZMQ_FD is readable exactly when commands are pending
//  (the mailbox signals only when its reader found it empty), so one poll
//  of it does, and ZMQ_EVENTS then processes them.
static void
s_settle (zsock_t *sock)
{
    struct pollfd item = { zsock_fd (sock), POLLIN, 0 };
    if (item.fd >= 0 && poll (&item, 1, 0) > 0)
        zsock_events (sock);  // a failure shows on the receive or send
}

//  What to send, every field borrowed. s_send builds the eMQP message from
//  it, and builds it again when the socket could not take the first one:
//  emqp_send consumes the message whether it sent it or not.
typedef struct {
    emqp_command_t command;
    const char *msgid;
    const char *ref;      // FETCH, admin commands that name a job
    const char *queue;    // REQUEST, SCHEDULE, UNSCHEDULE
    const char *headers;  // REQUEST, SCHEDULE, UNSCHEDULE
    const char *cron;     // SCHEDULE, UNSCHEDULE
    int64_t interval_s;   // SCHEDULE, UNSCHEDULE
    const void *payload;  // REQUEST, SCHEDULE, UNSCHEDULE; NULL = none
    size_t payload_size;
    const char *request;  // ADMIN: the request JSON
} s_outgoing_t;

//  Returns a new message holding copies of out's fields, or NULL (no memory).
static emqp_msg_t *
s_msg_build (const s_outgoing_t *out)
{
    emqp_msg_t *msg = emqp_msg_new (out->command);
    if (!msg)
        return NULL;
    msg->interval_s = out->interval_s;
    bool ok = (msg->msgid = strdup (out->msgid)) != NULL;
    if (ok && out->ref)
        ok = (msg->ref = strdup (out->ref)) != NULL;
    if (ok && out->request)
        ok = (msg->stats = strdup (out->request)) != NULL;
    if (ok && out->queue)
        ok = (msg->queue = strdup (out->queue)) != NULL;
    if (ok && out->headers)
        ok = (msg->headers = strdup (out->headers)) != NULL;
    if (ok && out->cron)
        ok = (msg->cron = strdup (out->cron)) != NULL;
    if (ok && out->payload)
        ok = (msg->payload = zframe_new (out->payload, out->payload_size)) != NULL;
    if (!ok)
        emqp_msg_destroy (&msg);
    return msg;
}

//  Sends the message out describes. The send is tried at once: a socket
//  that can take the message is the usual case, and a zmq_poll before each
//  send would cost system calls (ZMQ_EVENTS processing) on every message.
//  Only when the socket says EAGAIN (no connection yet, as ZMQ_IMMEDIATE is
//  set, or the send queue is full) do we wait for POLLOUT, until deadline,
//  and try again. Returns 0, EMQ_ERR_UNREACHABLE, EMQ_ERR_SYSTEM,
//  EMQ_ERR_NOMEM or EMQ_ERR_INVALID (cannot encode).
//  After a send failed with errno: 0 when the socket can take it now (try
//  again), else the error code (reason in err).
static int
s_send_failed (zsock_t *sock, const char *endpoint, int64_t deadline, char *err,
               size_t errlen)
{
    if (errno == EINVAL) {
        snprintf (err, errlen, "cannot encode the message");
        return EMQ_ERR_INVALID;
    }
    if (errno != EAGAIN) {
        snprintf (err, errlen, "send to %s failed: %s", endpoint, zmq_strerror (errno));
        return EMQ_ERR_SYSTEM;
    }
    int rc = s_wait (sock, ZMQ_POLLOUT, deadline, err, errlen);
    if (rc == EMQ_ERR_TIMEOUT) {
        snprintf (err, errlen, "router at %s is not reachable (no connection)", endpoint);
        return EMQ_ERR_UNREACHABLE;
    }
    return rc;
}

static int
s_send (zsock_t *sock, const s_outgoing_t *out, const char *endpoint, int64_t deadline,
        char *err, size_t errlen)
{
    while (true) {
        emqp_msg_t *msg = s_msg_build (out);
        if (!msg) {
            snprintf (err, errlen, "out of memory");
            return EMQ_ERR_NOMEM;
        }
        s_settle (sock);
        if (emqp_send (&msg, sock) == 0)
            return 0;
        int rc = s_send_failed (sock, endpoint, deadline, err, errlen);
        if (rc)
            return rc;
    }
}

//  --------------------------------------------------------------------------
//  Several routers: following the one that leads

static int
s_resend_one (const ledger_request_t *request, void *arg)
{
    emq_client_t *self = (emq_client_t *) arg;
    s_outgoing_t out = { .command = EMQP_REQUEST,
                         .msgid = request->msgid,
                         .queue = request->queue,
                         .headers = request->headers,
                         .payload = request->payload,
                         .payload_size = request->size };
    char err[256];
    return s_send (self->sock, &out, self->endpoint, zclock_mono (), err, sizeof err) ? -1
                                                                                      : 0;
}

static int
s_fetch_one (const char *msgid, void *arg)
{
    emq_client_t *self = (emq_client_t *) arg;
    char id[37], err[256];
    emqp_msgid_new (id);
    s_outgoing_t out = { .command = EMQP_FETCH, .msgid = id, .ref = msgid };
    return s_send (self->sock, &out, self->endpoint, zclock_mono (), err, sizeof err) ? -1
                                                                                      : 0;
}

//  Makes router `index` the current one and sends it what the previous one
//  left unanswered: the unACKed REQUESTs, and a FETCH for each awaited
//  RESULT (the new leader answers it when the job ends, or at once).
static void
s_switch_to (emq_client_t *self, size_t index, const char *why)
{
    const char *from = self->endpoint;
    self->in_use = index;
    self->sock = self->socks[index];
    self->endpoint = self->endpoints[index];
    self->announced = false;  // the new router learns it from our next BATCH
    int64_t now = zclock_mono ();
    size_t resent = ledger_resend (self->ledger, s_resend_one, self, now, INT64_MAX);
    size_t fetched = ledger_refetch (self->ledger, s_fetch_one, self, now);
    log_warning ("libemq: router %s %s; now using %s: %zu unACKed REQUEST(s) sent again, "
                 "%zu result(s) asked for again",
                 from, why, self->endpoint, resent, fetched);
}

//  Polls every router's socket for `events` (ZMQ_POLLOUT or ZMQ_POLLIN)
//  for up to timeout_ms; items gets the revents. Returns zmq_poll's code.
static int
s_poll_routers (emq_client_t *self, short events, long timeout_ms,
                zmq_pollitem_t items[ADDRLIST_MAX])
{
    for (size_t i = 0; i < self->nendpoints; i++)
        items[i] = (zmq_pollitem_t){ zsock_resolve (self->socks[i]), 0, events, 0 };
    return zmq_poll (items, (int) self->nendpoints, timeout_ms);
}

//  The first router after the current one whose socket can take a
//  message now (items from s_poll_routers), or the current one's index
//  (nendpoints when none can).
static size_t
s_next_writable (emq_client_t *self, const zmq_pollitem_t items[ADDRLIST_MAX])
{
    for (size_t k = 1; k < self->nendpoints; k++) {
        size_t i = (self->in_use + k) % self->nendpoints;
        if (items[i].revents & ZMQ_POLLOUT)
            return i;
    }
    return items[self->in_use].revents & ZMQ_POLLOUT ? self->in_use : self->nendpoints;
}

//  Looks, at most every 100 ms, whether the router we use still takes
//  messages, and whether a REQUEST has waited for its ACK longer than the
//  failover timeout; moves to the next router that takes messages when
//  either says so. Cheap when nothing waits: one comparison.
static void
s_failover_check (emq_client_t *self)
{
    int64_t now = zclock_mono ();
    if (now >= self->next_expire_ms) {
        ledger_expire (self->ledger, now);
        self->next_expire_ms = now + 1000;
    }
    int64_t oldest = ledger_oldest (self->ledger);
    bool late = oldest >= 0 && now - oldest >= self->failover_timeout_ms;
    bool waiting = oldest >= 0 || ledger_awaiting (self->ledger) > 0;
    if (!waiting || now < self->next_probe_ms)
        return;
    self->next_probe_ms = now + 100;
    zmq_pollitem_t items[ADDRLIST_MAX];
    if (s_poll_routers (self, ZMQ_POLLOUT | ZMQ_POLLIN, 0, items) < 0)
        return;
    bool connected = items[self->in_use].revents & ZMQ_POLLOUT;
    //  Answers not read yet (a program that sends for a while without
    //  polling) may hold the ACKs: not late.
    if (connected && (!late || (items[self->in_use].revents & ZMQ_POLLIN)))
        return;
    size_t next = s_next_writable (self, items);
    char why[96];
    if (next != self->in_use && next < self->nendpoints) {
        if (connected)
            snprintf (why, sizeof why, "left a REQUEST unACKed for %lld ms",
                      (long long) (now - oldest));
        else
            snprintf (why, sizeof why, "is not connected");
        s_switch_to (self, next, why);
    }
    else if (late && connected) {
        //  No other router takes messages: the one we use may have lost
        //  them in a restart; they are stored once whatever happens. Only
        //  the late ones go again.
        size_t resent = ledger_resend (self->ledger, s_resend_one, self, now,
                                       now - self->failover_timeout_ms);
        if (resent)
            log_info ("libemq: no ACK from %s for %lld ms; %zu REQUEST(s) sent again",
                      self->endpoint, (long long) (now - oldest), resent);
    }
}

//  After a send to the current router found no room (errno EAGAIN: not
//  connected, or its queue is full): waits until some router's socket takes
//  messages, moving to it if it is not the current one. Returns 0,
//  EMQ_ERR_UNREACHABLE at the deadline, or EMQ_ERR_SYSTEM.
static int
s_routers_wait (emq_client_t *self, int64_t deadline)
{
    while (true) {
        zmq_pollitem_t items[ADDRLIST_MAX];
        long left = s_remaining (deadline);
        if (s_poll_routers (self, ZMQ_POLLOUT, left, items) < 0)
            return s_error (self, EMQ_ERR_SYSTEM, "%s",
                            errno == EINTR ? "interrupted by a signal"
                                           : zmq_strerror (errno));
        size_t next = s_next_writable (self, items);
        if (next == self->in_use)
            return 0;
        if (next < self->nendpoints) {
            s_switch_to (self, next, "is not connected");
            return 0;
        }
        if (deadline >= 0 && s_remaining (deadline) == 0)
            return s_error (self, EMQ_ERR_UNREACHABLE,
                            "no router of %zu is reachable (no connection to any)",
                            self->nendpoints);
    }
}

//  A send that found no room, as s_send_failed, across routers when there
//  are several.
static int
s_blocked (emq_client_t *self, int64_t deadline)
{
    if (!self->ledger || errno != EAGAIN)
        return s_send_failed (self->sock, self->endpoint, deadline, self->last_error,
                              sizeof self->last_error);
    return s_routers_wait (self, deadline);
}

//  s_send for the client's own messages: to the current router, or, when
//  it takes nothing, to the next one that does.
static int
s_client_send (emq_client_t *self, const s_outgoing_t *out, int64_t deadline)
{
    if (!self->ledger)
        return s_send (self->sock, out, self->endpoint, deadline, self->last_error,
                       sizeof self->last_error);
    while (true) {
        int rc = s_send (self->sock, out, self->endpoint, zclock_mono (),
                         self->last_error, sizeof self->last_error);
        if (rc != EMQ_ERR_UNREACHABLE)
            return rc;
        if ((rc = s_routers_wait (self, deadline)))
            return rc;
    }
}

//  Records a REQUEST sent, to send again after a failover.
static void
s_ledger_sent (emq_client_t *self, const s_outgoing_t *out, bool reply)
{
    if (self->ledger
        && ledger_sent (self->ledger, out->msgid, out->queue, out->headers, out->payload,
                        out->payload_size, reply, zclock_mono ()))
        log_warning ("libemq: out of memory: job %s would not be sent again after a "
                     "failover",
                     out->msgid);
}

//  True if msg is the second copy of an answer already handed out (several
//  routers only); keeps the ledger up to date.
static bool
s_duplicate (emq_client_t *self, const emqp_msg_t *msg)
{
    if (!self->ledger || !msg->ref)
        return false;
    int64_t now = zclock_mono ();
    switch (msg->command) {
        case EMQP_ACK: {
            bool fetch = false;
            if (ledger_acked (self->ledger, msg->ref, now, self->router_batches, &fetch)
                == LEDGER_DUPLICATE)
                return true;
            //  A failed FETCH is sent again at the next failover.
            if (fetch)
                s_fetch_one (msg->ref, self);
            return false;
        }
        case EMQP_RESULT:
            return ledger_result (self->ledger, msg->ref, now) == LEDGER_DUPLICATE;
        case EMQP_ERROR:
            return ledger_refused (self->ledger, msg->ref) == LEDGER_DUPLICATE;
        default:
            return false;
    }
}

//  Sends the messages outs describe as one BATCH (a lone one too: the
//  router learns that we take batches). Same returns as s_send.
static int
s_send_batch (emq_client_t *self, const s_outgoing_t *outs, size_t count,
              int64_t deadline)
{
    while (true) {
        emqp_batch_t *batch = emqp_batch_new ();
        if (!batch)
            return s_error (self, EMQ_ERR_NOMEM, "out of memory");
        emqp_batch_set_always (batch, true);
        for (size_t i = 0; i < count; i++) {
            emqp_msg_t *msg = s_msg_build (&outs[i]);
            if (!msg || emqp_batch_add (batch, &msg)) {
                emqp_batch_destroy (&batch);
                return s_error (self, msg ? EMQ_ERR_INVALID : EMQ_ERR_NOMEM,
                                msg ? "cannot encode the message" : "out of memory");
            }
        }
        s_settle (self->sock);
        int rc = emqp_batch_send (batch, self->sock, NULL);
        emqp_batch_destroy (&batch);
        if (rc == 0) {
            self->announced = true;
            return 0;
        }
        if ((rc = s_blocked (self, deadline)))
            return rc;
    }
}

//  Waits until sock's ZMQ_FD signals or the deadline passes; only right
//  after a receive said EAGAIN. That receive processed every pending
//  ZeroMQ command, which leaves the descriptor unreadable until the next
//  command comes, and a message arriving on an empty pipe always comes with
//  one (activate_read): this is how libzmq's own blocking receive waits.
//  zmq_poll would process the commands and poll twice more around the
//  wait. Returns 0 (signalled, or the wait ended: receive again),
//  EMQ_ERR_TIMEOUT or EMQ_ERR_SYSTEM.
static int
s_wait_signal (zsock_t *sock, int64_t deadline, char *err, size_t errlen)
{
    struct pollfd item = { zsock_fd (sock), POLLIN, 0 };
    if (item.fd < 0) {
        snprintf (err, errlen, "no descriptor for the socket: %s", zmq_strerror (errno));
        return EMQ_ERR_SYSTEM;
    }
    long left = s_remaining (deadline);
    int rc = poll (&item, 1, left > INT_MAX ? INT_MAX : (int) left);
    if (rc >= 0)
        return 0;
    snprintf (err, errlen, "%s",
              errno == EINTR ? "interrupted by a signal" : strerror (errno));
    return EMQ_ERR_SYSTEM;
}

//  Receives and decodes one message. Returns 0 with *msg_p set, or a wait
//  error. Malformed messages are logged, dropped, and the wait goes on.
//  The receive is tried first and the socket waited on only when nothing
//  is there: with many jobs in flight a message usually is, and emqp_recv
//  (ZMQ_DONTWAIT) already processes ZeroMQ's pending commands before it
//  says there is none, so a deadline that has passed needs no zmq_poll.
static int
s_recv (zsock_t *sock, const emqp_limits_t *limits, int64_t deadline, emqp_msg_t **msg_p,
        const char *endpoint, char *err, size_t errlen)
{
    while (true) {
        emqp_fault_t fault;
        emqp_msg_t *msg = NULL;
        s_settle (sock);
        int rc = emqp_recv (sock, false, limits, &msg, NULL, &fault);
        if (rc > 0) {
            *msg_p = msg;
            return 0;
        }
        if (rc < 0)
            log_warning ("router %s: malformed message dropped: %s", endpoint,
                         fault.text);
        else if (deadline >= 0 && s_remaining (deadline) == 0)
            return EMQ_ERR_TIMEOUT;
        //  After a dropped message zmq_poll waits, so that a receive error
        //  that persists (the context is ending) is reported by it instead
        //  of read again and again.
        rc = rc < 0 ? s_wait (sock, ZMQ_POLLIN, deadline, err, errlen)
                    : s_wait_signal (sock, deadline, err, errlen);
        if (rc)
            return rc;
    }
}

//  s_recv across every router's socket, the current one first; looks for a
//  failover at least every 100 ms while it waits.
static int
s_recv_routers (emq_client_t *self, int64_t deadline, emqp_msg_t **msg_p)
{
    while (true) {
        for (size_t k = 0; k < self->nendpoints; k++) {
            size_t i = (self->in_use + k) % self->nendpoints;
            emqp_fault_t fault;
            emqp_msg_t *msg = NULL;
            s_settle (self->socks[i]);
            int rc = emqp_recv (self->socks[i], false, &self->limits, &msg, NULL, &fault);
            if (rc > 0) {
                *msg_p = msg;
                return 0;
            }
            if (rc < 0)
                log_warning ("router %s: malformed message dropped: %s",
                             self->endpoints[i], fault.text);
        }
        s_failover_check (self);
        long left = s_remaining (deadline);
        if (deadline >= 0 && left == 0)
            return EMQ_ERR_TIMEOUT;
        zmq_pollitem_t items[ADDRLIST_MAX];
        if (s_poll_routers (self, ZMQ_POLLIN, left < 0 || left > 100 ? 100 : left, items)
            < 0)
            return s_error (self, EMQ_ERR_SYSTEM, "%s",
                            errno == EINTR ? "interrupted by a signal"
                                           : zmq_strerror (errno));
    }
}

//  True if the bytes look like a message id (EventMQ's REPLY carries the
//  request id as its payload).
static bool
s_is_msgid (const zframe_t *frame)
{
    size_t size = zframe_size ((zframe_t *) frame);
    if (size == 0 || size > EMQP_MSGID_MAX)
        return false;
    const unsigned char *data = zframe_data ((zframe_t *) frame);
    for (size_t i = 0; i < size; i++)
        if (data[i] <= 0x20 || data[i] >= 0x7f)
            return false;
    return true;
}

//  Receives the next client event (ACK, ERROR, RESULT) from the router;
//  other commands are dropped. An EventMQ router's `REPLY, id,
//  request_id` counts as the request's ACK (msg rewritten as ACK).
//  Unpacks a BATCH into the inbox (its messages in order, after any left
//  there); a message in it that does not decode is logged and dropped.
static int
s_unpack (emq_client_t *self, emqp_msg_t **batch_p)
{
    char err[256];
    size_t count = 0;
    emqp_msg_t **msgs =
        emqp_batch_unpack (*batch_p, &self->limits, &count, err, sizeof err);
    emqp_msg_destroy (batch_p);
    if (!msgs) {
        log_warning ("router %s: malformed BATCH dropped: %s", self->endpoint, err);
        return 0;
    }
    int rc = 0;
    for (size_t i = 0; i < count; i++) {
        if (msgs[i]->command == EMQP_INVALID)
            log_warning ("router %s: malformed message in a BATCH dropped: %s",
                         self->endpoint, msgs[i]->error_text);
        else if (!rc && zlistx_add_end (self->inbox, msgs[i])) {
            msgs[i] = NULL;
            continue;
        }
        else
            rc = s_error (self, EMQ_ERR_NOMEM, "out of memory");
        emqp_msg_destroy (&msgs[i]);
    }
    free (msgs);
    return rc;
}

static int
s_recv_event (emq_client_t *self, int64_t deadline, emqp_msg_t **msg_p)
{
    while (true) {
        emqp_msg_t *msg =
            zlistx_first (self->inbox) ? zlistx_detach (self->inbox, NULL) : NULL;
        int rc = 0;
        if (!msg && self->ledger)
            rc = s_recv_routers (self, deadline, &msg);
        else if (!msg)
            rc = s_recv (self->sock, &self->limits, deadline, &msg, self->endpoint,
                         self->last_error, sizeof self->last_error);
        if (rc)
            return rc;
        if (msg->command == EMQP_BATCH) {
            if ((rc = s_unpack (self, &msg)))
                return rc;
            continue;
        }
        if (msg->command == EMQP_ACK && msg->agent && strncmp (msg->agent, "emq/", 4) == 0
            && atoi (msg->agent + 4) >= 3)
            self->router_batches = true;
        if (msg->command == EMQP_REPLY && !msg->ref && msg->payload
            && s_is_msgid (msg->payload)) {
            msg->command = EMQP_ACK;
            msg->ref = zframe_strdup (msg->payload);
            zframe_destroy (&msg->payload);
            if (!msg->ref) {
                emqp_msg_destroy (&msg);
                return s_error (self, EMQ_ERR_NOMEM, "out of memory");
            }
        }
        if (msg->command == EMQP_ACK || msg->command == EMQP_ERROR
            || msg->command == EMQP_RESULT) {
            if (s_duplicate (self, msg)) {
                log_debug ("router %s: second %s for %s dropped", self->endpoint,
                           emqp_command_name (msg->command), msg->ref);
                emqp_msg_destroy (&msg);
                continue;
            }
            *msg_p = msg;
            return 0;
        }
        log_debug ("router %s: ignored %s", self->endpoint,
                   emqp_command_name (msg->command));
        emqp_msg_destroy (&msg);
    }
}

//  Copies the string src (NULL = "") into dst, cut to dstsize - 1 bytes.
//  snprintf would do the same at several times the cost, on every event.
static void
s_copy (char *dst, size_t dstsize, const char *src)
{
    size_t len = src ? strnlen (src, dstsize - 1) : 0;
    if (len)
        memcpy (dst, src, len);
    dst[len] = 0;
}

//  Hands out msg (taken) as *event; it becomes self->current.
static void
s_fill_event (emq_client_t *self, emqp_msg_t *msg, emq_event_t *event)
{
    emqp_msg_destroy (&self->current);
    self->current = msg;
    memset (event, 0, sizeof *event);
    s_copy (event->msgid, sizeof event->msgid, msg->ref);
    switch (msg->command) {
        case EMQP_ACK:
            event->type = EMQ_EVENT_ACK;
            break;
        case EMQP_ERROR:
            event->type = EMQ_EVENT_ERROR;
            s_copy (event->code, sizeof event->code, msg->error_code);
            event->data = msg->error_text;
            event->size = strlen (msg->error_text);
            break;
        case EMQP_RESULT:
            event->type = EMQ_EVENT_RESULT;
            switch (msg->status) {
                case EMQP_STATUS_OK:
                    event->status = EMQ_JOB_OK;
                    break;
                case EMQP_STATUS_FAILED:
                    event->status = EMQ_JOB_FAILED;
                    break;
                case EMQP_STATUS_TIMEOUT:
                    event->status = EMQ_JOB_TIMEOUT;
                    break;
                case EMQP_STATUS_CRASHED:
                    event->status = EMQ_JOB_CRASHED;
                    break;
                case EMQP_STATUS_CANCELLED:
                    event->status = EMQ_JOB_CANCELLED;
                    break;
                default:
                    event->status = EMQ_JOB_REJECTED;
                    break;
            }
            if (msg->payload) {
                event->data = zframe_data (msg->payload);
                event->size = zframe_size (msg->payload);
            }
            s_copy (event->usage, sizeof event->usage, msg->usage);
            break;
        default:
            assert (false);  // s_recv_event lets nothing else through
    }
}

static bool
s_is_about (const emqp_msg_t *msg, emqp_command_t command, const char *msgid)
{
    return msg->command == command && msg->ref && streq (msg->ref, msgid);
}

//  --------------------------------------------------------------------------
//  Submitting

//  Points *text_out at the headers frame for opts (NULL = defaults), kept
//  in self->headers until the next submit. Returns 0, EMQ_ERR_INVALID (too
//  long, or a bad number in extra_headers) or EMQ_ERR_NOMEM.
static int
s_headers_text (emq_client_t *self, const emq_submit_opts_t *opts, const char **text_out)
{
    static const emq_submit_opts_t defaults = { 0 };
    if (!opts)
        opts = &defaults;
    const char *extra =
        opts->extra_headers && *opts->extra_headers ? opts->extra_headers : NULL;
    s_headers_cache_t *cache = &self->headers;
    if (cache->valid && cache->reply == opts->reply && cache->retries == opts->retries
        && cache->timeout_s == opts->timeout_s && cache->delay_s == opts->delay_s
        && cache->eta == opts->eta
        && (extra ? cache->extra && streq (cache->extra, extra) : !cache->extra)) {
        *text_out = cache->text;
        return 0;
    }
    cache->valid = false;
    headers_t headers = { .reply_requested = opts->reply,
                          .retry_count = opts->retries,
                          .timeout_s = opts->timeout_s,
                          .delay_s = opts->delay_s,
                          .eta = opts->eta };
    char *text = cache->text;
    size_t text_size = sizeof cache->text;
    int len = headers_format (&headers, text, text_size);
    if (len < 0)
        return s_error (self, EMQ_ERR_INVALID, "headers too long");
    if (extra) {
        size_t used = (size_t) len;
        int n = snprintf (text + used, text_size - used, "%s%s", used ? "," : "", extra);
        if (n < 0 || (size_t) n >= text_size - used)
            return s_error (self, EMQ_ERR_INVALID, "headers longer than %d bytes",
                            EMQP_HEADERS_MAX);
    }
    //  Catch a bad number in extra headers here, not as the router's ERROR.
    headers_t check;
    char reason[256];
    if (headers_parse (text, &check, reason, sizeof reason))
        return s_error (self, EMQ_ERR_INVALID, "%s", reason);
    free (cache->extra);
    cache->extra = extra ? strdup (extra) : NULL;
    if (extra && !cache->extra)
        return s_error (self, EMQ_ERR_NOMEM, "out of memory");
    cache->reply = opts->reply;
    cache->retries = opts->retries;
    cache->timeout_s = opts->timeout_s;
    cache->delay_s = opts->delay_s;
    cache->eta = opts->eta;
    cache->valid = true;
    *text_out = text;
    return 0;
}

static int
s_submit (emq_client_t *self, const emq_submit_opts_t *opts, const void *payload,
          size_t size, char msgid_out[37], int64_t deadline)
{
    assert (self);
    const char *queue = opts && opts->queue ? opts->queue : "default";
    if (!*queue || strlen (queue) > EMQP_QUEUE_MAX)
        return s_error (self, EMQ_ERR_INVALID, "queue name must be 1..%d bytes",
                        EMQP_QUEUE_MAX);
    if (!payload || size == 0)
        return s_error (self, EMQ_ERR_INVALID, "no payload");
    const char *text = NULL;
    int rc = s_headers_text (self, opts, &text);
    if (rc)
        return rc;

    char msgid[37];
    if (opts && opts->msgid) {
        size_t len = strlen (opts->msgid);
        bool printable = len > 0 && len < sizeof msgid;
        for (size_t i = 0; i < len && printable; i++)
            printable = opts->msgid[i] > 0x20 && opts->msgid[i] < 0x7F;
        if (!printable)
            return s_error (self, EMQ_ERR_INVALID,
                            "a msgid must be 1..36 printable bytes without spaces");
        memcpy (msgid, opts->msgid, len + 1);
    }
    else
        emqp_msgid_new (msgid);
    s_outgoing_t out = { .command = EMQP_REQUEST,
                         .msgid = msgid,
                         .queue = queue,
                         .headers = text,
                         .payload = payload,
                         .payload_size = size };
    if (self->ledger)
        s_failover_check (self);
    if (self->router_batches && !self->announced)
        rc = s_send_batch (self, &out, 1, deadline);
    else
        rc = s_client_send (self, &out, deadline);
    if (rc)
        return rc;
    s_ledger_sent (self, &out, opts && opts->reply);
    if (msgid_out)
        memcpy (msgid_out, msgid, 37);
    return 0;
}

int
emq_submit_async (emq_client_t *self, const emq_submit_opts_t *opts, const void *payload,
                  size_t size, char msgid_out[37])
{
    return s_submit (self, opts, payload, size, msgid_out,
                     s_deadline (self->connect_timeout_ms));
}

int
emq_submit_many (emq_client_t *self, const emq_submit_opts_t *opts,
                 const void *const *payloads, const size_t *sizes, size_t count,
                 char (*msgids_out)[37], size_t *sent_out)
{
    assert (self);
    if (sent_out)
        *sent_out = 0;
    if (opts && opts->msgid)
        return s_error (self, EMQ_ERR_INVALID, "emq_submit_many makes its own msgids");
    if (count > 0 && (!payloads || !sizes))
        return s_error (self, EMQ_ERR_INVALID, "no payloads");
    //  Until the router has said it takes batches, one REQUEST each.
    if (!self->router_batches) {
        for (size_t i = 0; i < count; i++) {
            int rc = emq_submit_async (self, opts, payloads[i], sizes[i],
                                       msgids_out ? msgids_out[i] : NULL);
            if (rc)
                return rc;
            if (sent_out)
                *sent_out = i + 1;
        }
        return 0;
    }
    const char *queue = opts && opts->queue ? opts->queue : "default";
    if (!*queue || strlen (queue) > EMQP_QUEUE_MAX)
        return s_error (self, EMQ_ERR_INVALID, "queue name must be 1..%d bytes",
                        EMQP_QUEUE_MAX);
    const char *text = NULL;
    int rc = s_headers_text (self, opts, &text);
    if (rc)
        return rc;
    int64_t deadline = s_deadline (self->connect_timeout_ms);
    s_outgoing_t *outs = calloc (EMQP_BATCH_MAX, sizeof (s_outgoing_t));
    char (*ids)[37] = calloc (EMQP_BATCH_MAX, 37);
    if (!outs || !ids) {
        free (outs);
        free (ids);
        return s_error (self, EMQ_ERR_NOMEM, "out of memory");
    }
    size_t done = 0;
    while (done < count && rc == 0) {
        //  As many as one BATCH holds; a large payload goes alone.
        //  What a job adds to a BATCH: its payload, msgid, queue, headers
        //  and the packing around them.
        size_t n = 0, bytes = 0;
        size_t overhead = 36 + strlen (queue) + strlen (text) + 32;
        while (done + n < count && n < EMQP_BATCH_MAX) {
            size_t size = sizes[done + n] + overhead;
            if (!payloads[done + n] || sizes[done + n] == 0) {
                rc = s_error (self, EMQ_ERR_INVALID, "no payload (job %zu)", done + n);
                break;
            }
            bool alone = sizes[done + n] > EMQP_BATCH_ITEM_MAX;
            if (n > 0 && (alone || bytes + size > EMQP_BATCH_BYTES))
                break;
            emqp_msgid_new (ids[n]);
            outs[n] = (s_outgoing_t){ .command = EMQP_REQUEST,
                                      .msgid = ids[n],
                                      .queue = queue,
                                      .headers = text,
                                      .payload = payloads[done + n],
                                      .payload_size = sizes[done + n] };
            bytes += size;
            n++;
            if (alone)
                break;
        }
        if (n == 0)
            break;
        if (self->ledger)
            s_failover_check (self);
        if (n == 1 && sizes[done] > EMQP_BATCH_ITEM_MAX)
            rc = s_client_send (self, &outs[0], deadline);
        else
            rc = s_send_batch (self, outs, n, deadline);
        if (rc)
            break;
        for (size_t i = 0; i < n; i++)
            s_ledger_sent (self, &outs[i], opts && opts->reply);
        if (msgids_out)
            memcpy (msgids_out[done], ids, n * 37);
        done += n;
        if (sent_out)
            *sent_out = done;
    }
    free (outs);
    free (ids);
    return rc;
}

int
emq_submit (emq_client_t *self, const emq_submit_opts_t *opts, const void *payload,
            size_t size, char msgid_out[37], int timeout_ms)
{
    int64_t deadline = s_deadline (timeout_ms);
    char msgid[37];
    int rc = s_submit (self, opts, payload, size, msgid, deadline);
    if (rc)
        return rc;
    if (msgid_out)
        memcpy (msgid_out, msgid, 37);
    while (true) {
        emqp_msg_t *msg = NULL;
        rc = s_recv_event (self, deadline, &msg);
        if (rc == EMQ_ERR_TIMEOUT)
            return s_error (self, EMQ_ERR_UNREACHABLE,
                            "no answer from router at %s within %d ms", self->endpoint,
                            timeout_ms);
        if (rc)
            return rc;
        if (s_is_about (msg, EMQP_ACK, msgid)) {
            emqp_msg_destroy (&msg);
            return 0;
        }
        if (s_is_about (msg, EMQP_ERROR, msgid)) {
            s_error (self, EMQ_ERR_REJECTED, "%s: %s", msg->error_code, msg->error_text);
            emqp_msg_destroy (&msg);
            return EMQ_ERR_REJECTED;
        }
        //  A result implies that the job was accepted; keep it for later.
        bool accepted = s_is_about (msg, EMQP_RESULT, msgid);
        if (!zlistx_add_end (self->events, msg)) {
            emqp_msg_destroy (&msg);
            return s_error (self, EMQ_ERR_NOMEM, "out of memory");
        }
        if (accepted)
            return 0;
    }
}

//  --------------------------------------------------------------------------
//  Events

int
emq_poll (emq_client_t *self, int timeout_ms, emq_event_t *event)
{
    assert (self && event);
    emqp_msg_destroy (&self->current);
    emqp_msg_t *msg =
        zlistx_first (self->events) ? zlistx_detach (self->events, NULL) : NULL;
    if (!msg) {
        int rc = s_recv_event (self, s_deadline (timeout_ms), &msg);
        if (rc == EMQ_ERR_TIMEOUT)
            return s_error (self, rc, "no event within %d ms", timeout_ms);
        if (rc)
            return rc;
    }
    s_fill_event (self, msg, event);
    return 0;
}

//  Hands out a RESULT or ERROR for the job and returns the matching code.
static int
s_outcome (emq_client_t *self, emqp_msg_t *msg, emq_event_t *event)
{
    s_fill_event (self, msg, event);
    //  NOT_FOUND only answers FETCH: the router has no such job (any more).
    if (event->type == EMQ_EVENT_ERROR)
        return s_error (
            self, streq (event->code, "NOT_FOUND") ? EMQ_ERR_NOT_FOUND : EMQ_ERR_REJECTED,
            "%s: %.*s", event->code, (int) event->size, (const char *) event->data);
    switch (event->status) {
        case EMQ_JOB_OK:
            return 0;
        case EMQ_JOB_TIMEOUT:
            return s_error (self, EMQ_ERR_JOB_TIMEOUT, "job %s timed out: %.*s",
                            event->msgid, (int) (event->size > 300 ? 300 : event->size),
                            (const char *) event->data);
        default:
            return s_error (self, EMQ_ERR_JOB_FAILED, "job %s %s: %.*s", event->msgid,
                            emq_job_status_name (event->status),
                            (int) (event->size > 300 ? 300 : event->size),
                            (const char *) event->data);
    }
}

int
emq_wait_result (emq_client_t *self, const char *msgid, int timeout_ms,
                 emq_event_t *event)
{
    assert (self && event);
    if (!msgid || !*msgid)
        return s_error (self, EMQ_ERR_INVALID, "no msgid");
    emqp_msg_destroy (&self->current);
    int64_t deadline = s_deadline (timeout_ms);

    //  It may have come already, while we waited for something else. Walk
    //  by handle, taking the next one before the current may be deleted.
    emqp_msg_t *msg = NULL;
    void *handle = zlistx_first (self->events) ? zlistx_cursor (self->events) : NULL;
    while (handle) {
        emqp_msg_t *item = zlistx_handle_item (handle);
        void *next = zlistx_next (self->events) ? zlistx_cursor (self->events) : NULL;
        if (s_is_about (item, EMQP_ACK, msgid))
            zlistx_delete (self->events, handle);
        else if (s_is_about (item, EMQP_RESULT, msgid)
                 || s_is_about (item, EMQP_ERROR, msgid))
            return s_outcome (self, zlistx_detach (self->events, handle), event);
        handle = next;
    }
    while (true) {
        msg = NULL;
        int rc = s_recv_event (self, deadline, &msg);
        if (rc == EMQ_ERR_TIMEOUT)
            return s_error (self, rc, "no result for job %s within %d ms", msgid,
                            timeout_ms);
        if (rc)
            return rc;
        if (s_is_about (msg, EMQP_ACK, msgid))
            emqp_msg_destroy (&msg);
        else if (s_is_about (msg, EMQP_RESULT, msgid)
                 || s_is_about (msg, EMQP_ERROR, msgid))
            return s_outcome (self, msg, event);
        else if (!zlistx_add_end (self->events, msg)) {
            emqp_msg_destroy (&msg);
            return s_error (self, EMQ_ERR_NOMEM, "out of memory");
        }
    }
}

//  True if an outcome (RESULT or ERROR) for msgid is kept in self->events.
static bool
s_has_outcome (emq_client_t *self, const char *msgid)
{
    for (emqp_msg_t *item = zlistx_first (self->events); item;
         item = zlistx_next (self->events))
        if (s_is_about (item, EMQP_RESULT, msgid) || s_is_about (item, EMQP_ERROR, msgid))
            return true;
    return false;
}

int
emq_fetch (emq_client_t *self, const char *msgid)
{
    assert (self);
    if (!msgid || !*msgid || strlen (msgid) > EMQP_MSGID_MAX)
        return s_error (self, EMQ_ERR_INVALID, "msgid must be 1..%d bytes",
                        EMQP_MSGID_MAX);
    char id[37];
    emqp_msgid_new (id);
    s_outgoing_t out = { .command = EMQP_FETCH, .msgid = id, .ref = msgid };
    if (self->ledger)
        ledger_forget_result (self->ledger, msgid);
    return s_client_send (self, &out, s_deadline (self->connect_timeout_ms));
}

int
emq_result (emq_client_t *self, const char *msgid, int timeout_ms, emq_event_t *event)
{
    assert (self && event);
    if (!msgid || !*msgid)
        return s_error (self, EMQ_ERR_INVALID, "no msgid");
    //  A result that came already (the job was ours, with reply set) is the
    //  answer; asking again would only leave a second copy behind.
    if (!s_has_outcome (self, msgid)) {
        int rc = emq_fetch (self, msgid);
        if (rc)
            return rc;
    }
    return emq_wait_result (self, msgid, timeout_ms, event);
}

//  --------------------------------------------------------------------------
//  Schedules

//  Sends the message out describes and waits for the router's ACK or
//  ERROR about it.
static int
s_send_acked (emq_client_t *self, const s_outgoing_t *out, int timeout_ms)
{
    int64_t deadline = s_deadline (timeout_ms);
    const char *msgid = out->msgid;
    int rc = s_client_send (self, out, deadline);
    if (rc)
        return rc;
    while (true) {
        emqp_msg_t *answer = NULL;
        rc = s_recv_event (self, deadline, &answer);
        if (rc == EMQ_ERR_TIMEOUT)
            return s_error (self, EMQ_ERR_UNREACHABLE,
                            "no answer from router at %s within "
                            "%d ms",
                            self->endpoint, timeout_ms);
        if (rc)
            return rc;
        if (s_is_about (answer, EMQP_ACK, msgid)) {
            emqp_msg_destroy (&answer);
            return 0;
        }
        if (s_is_about (answer, EMQP_ERROR, msgid)) {
            s_error (self, EMQ_ERR_REJECTED, "%s: %s", answer->error_code,
                     answer->error_text);
            emqp_msg_destroy (&answer);
            return EMQ_ERR_REJECTED;
        }
        if (!zlistx_add_end (self->events, answer)) {
            emqp_msg_destroy (&answer);
            return s_error (self, EMQ_ERR_NOMEM, "out of memory");
        }
    }
}

static bool
s_schedule_name_ok (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > 100)
        return false;
    for (const char *p = name; *p; p++)
        if ((unsigned char) *p <= ' ' || *p == ',' || *p == 0x7f)
            return false;
    return true;
}

int
emq_schedule (emq_client_t *self, const emq_schedule_opts_t *opts, const void *payload,
              size_t size, int timeout_ms)
{
    assert (self);
    if (!opts || !payload || size == 0)
        return s_error (self, EMQ_ERR_INVALID, "no schedule options or no payload");
    bool has_cron = opts->cron && *opts->cron;
    if (has_cron == (opts->interval_s > 0))
        return s_error (self, EMQ_ERR_INVALID,
                        "give an interval or a cron expression "
                        "(exactly one)");
    if (has_cron && strlen (opts->cron) > 256)
        return s_error (self, EMQ_ERR_INVALID, "cron expression longer than 256 bytes");
    if (opts->name && !s_schedule_name_ok (opts->name))
        return s_error (self, EMQ_ERR_INVALID,
                        "schedule name must be 1..100 printable "
                        "characters without spaces or commas");
    const char *queue = opts->queue ? opts->queue : "default";
    if (!*queue || strlen (queue) > EMQP_QUEUE_MAX)
        return s_error (self, EMQ_ERR_INVALID, "queue name must be 1..%d bytes",
                        EMQP_QUEUE_MAX);
    char headers[EMQP_HEADERS_MAX + 1], runs[32] = "";
    if (opts->runs)
        snprintf (runs, sizeof runs, "run_count:%u", opts->runs);
    int n = snprintf (headers, sizeof headers, "%s%s%s%s%s%s%s%s%s%s",
                      opts->name ? "name:" : "", opts->name ? opts->name : "",
                      opts->nohaste ? ",nohaste" : "", *runs ? "," : "", runs,
                      opts->misfire_skip ? ",misfire:skip" : "",
                      opts->timezone && *opts->timezone ? ",tz:" : "",
                      opts->timezone && *opts->timezone ? opts->timezone : "",
                      opts->extra_headers && *opts->extra_headers ? "," : "",
                      opts->extra_headers ? opts->extra_headers : "");
    if (n < 0 || (size_t) n >= sizeof headers)
        return s_error (self, EMQ_ERR_INVALID, "headers longer than %d bytes",
                        EMQP_HEADERS_MAX);
    const char *text = headers[0] == ',' ? headers + 1 : headers;
    headers_t check;
    char reason[256];
    if (headers_parse (text, &check, reason, sizeof reason))
        return s_error (self, EMQ_ERR_INVALID, "%s", reason);
    char msgid[37];
    emqp_msgid_new (msgid);
    s_outgoing_t out = { .command = EMQP_SCHEDULE,
                         .msgid = msgid,
                         .queue = queue,
                         .headers = text,
                         .interval_s = has_cron ? -1 : opts->interval_s,
                         .payload = payload,
                         .payload_size = size,
                         .cron = has_cron ? opts->cron : "" };
    return s_send_acked (self, &out, timeout_ms);
}

int
emq_unschedule (emq_client_t *self, const char *name, bool kill_running, int timeout_ms)
{
    assert (self);
    if (!name || !s_schedule_name_ok (name))
        return s_error (self, EMQ_ERR_INVALID,
                        "schedule name must be 1..100 printable "
                        "characters without spaces or commas");
    char msgid[37], headers[160];
    emqp_msgid_new (msgid);
    snprintf (headers, sizeof headers, "name:%s%s", name,
              kill_running ? ",kill-running" : "");
    s_outgoing_t out = { .command = EMQP_UNSCHEDULE,
                         .msgid = msgid,
                         .queue = "default",
                         .headers = headers,
                         .interval_s = -1,
                         .payload = "",
                         .payload_size = 0,
                         .cron = "" };
    return s_send_acked (self, &out, timeout_ms);
}

//  --------------------------------------------------------------------------
//  Payloads

static int
s_payload_out (const payload_t *payload, void **out, size_t *out_size)
{
    if (!out || !out_size)
        return EMQ_ERR_INVALID;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    if (payload_encode (payload, &sbuf)) {
        msgpack_sbuffer_destroy (&sbuf);
        return EMQ_ERR_INVALID;
    }
    *out = sbuf.data;  // malloc'd by the sbuffer; the caller frees it
    *out_size = sbuf.size;
    return 0;
}

int
emq_payload_run (const char *library, const char *function, const void *args,
                 size_t args_size, void **out, size_t *out_size)
{
    if (!library || !function || (args && args_size == 0))
        return EMQ_ERR_INVALID;
    payload_t payload = { .kind = PAYLOAD_RUN,
                          .library = (char *) library,
                          .function = (char *) function,
                          .args = (char *) args,
                          .args_size = args ? args_size : 0 };
    return s_payload_out (&payload, out, out_size);
}

int
emq_payload_exec (const char *const *argv, size_t argc, const void *stdin_data,
                  size_t stdin_size, const char *const *env, size_t envc, const char *cwd,
                  void **out, size_t *out_size)
{
    if (!argv || argc == 0 || (envc && !env))
        return EMQ_ERR_INVALID;
    payload_t payload = { .kind = PAYLOAD_EXEC,
                          .argv = (char **) argv,
                          .argc = argc,
                          .stdin_data = (char *) stdin_data,
                          .stdin_size = stdin_data ? stdin_size : 0,
                          .env = (char **) env,
                          .envc = envc,
                          .cwd = (char *) cwd };
    return s_payload_out (&payload, out, out_size);
}

int
emq_payload_set_limits (void **payload, size_t *size, const emq_limits_t *limits)
{
    if (!payload || !*payload || !size || !limits)
        return EMQ_ERR_INVALID;
    uint64_t values[] = { limits->as_bytes, limits->nproc, limits->nofile,
                          limits->cpu_s };
    for (size_t i = 0; i < 4; i++)
        if (values[i] > (uint64_t) INT64_MAX)
            return EMQ_ERR_INVALID;
    char err[256];
    payload_t *decoded = payload_decode (*payload, *size, err, sizeof err);
    if (!decoded)
        return EMQ_ERR_INVALID;
    decoded->limits = (payload_limits_t){ .as_bytes = limits->as_bytes,
                                          .nproc = limits->nproc,
                                          .nofile = limits->nofile,
                                          .cpu_s = limits->cpu_s };
    void *out;
    size_t out_size;
    int rc = s_payload_out (decoded, &out, &out_size);
    payload_destroy (&decoded);
    if (rc)
        return rc;
    free (*payload);
    *payload = out;
    *size = out_size;
    return 0;
}

//  --------------------------------------------------------------------------
//  Admin

static int
s_admin_fail (char **reply_out, int code, const char *reason)
{
    *reply_out = strdup (reason);
    return code;
}

//  The admin commands libemq sends, what each takes and how it is answered.
typedef struct {
    emqp_command_t command;
    bool takes_ref;  // a job msgid (or "*") follows
    bool acked;      // answered with ACK (else REPLY)
    bool changes;    // changes something: sent to one router of a list only
} s_admin_command_t;

static const s_admin_command_t s_admin_commands[] = {
    { EMQP_STATUS, false, false, false },
    { EMQP_ROUTER_SHOW_WORKERS, false, false, false },
    { EMQP_ROUTER_SHOW_SCHEDULERS, false, false, false },
    { EMQP_DISCONNECT, false, true, true },
    { EMQP_DEAD_LIST, false, false, false },
    { EMQP_DEAD_PURGE, false, false, true },
    { EMQP_CANCEL, true, true, true },
    { EMQP_DEAD_RETRY, true, false, true },
    { EMQP_FENCE_SHOW, false, false, false },
    { EMQP_FENCE_RESET, true, true, true },
    { EMQP_ADMIN, false, false, true },  // emq_admin_request only: JSON, may change
    { EMQP_DEAD_DELETE, true, false, true },
};

static const s_admin_command_t *
s_admin_command_lookup (const char *name)
{
    emqp_command_t cmd = name ? emqp_command_lookup (name) : EMQP_INVALID;
    for (size_t i = 0; i < sizeof s_admin_commands / sizeof s_admin_commands[0]; i++)
        if (s_admin_commands[i].command == cmd)
            return &s_admin_commands[i];
    return NULL;
}

//  One admin request on a fresh DEALER, its answer in *reply_out. The
//  socket is ours alone, so the first ACK, REPLY or ERROR is the answer.
static int s_admin_call_ex (const char *addr, const s_admin_command_t *command,
                            const char *ref, const char *request, int timeout_ms,
                            char **reply_out);

static int
s_admin_call (const char *addr, const s_admin_command_t *command, const char *ref,
              int timeout_ms, char **reply_out)
{
    return s_admin_call_ex (addr, command, ref, NULL, timeout_ms, reply_out);
}

//  If msg answers an admin command, sets *rc (0 with *reply_out, or an
//  error with the reason in err) and returns true; HEARTBEAT and the like
//  are not the answer. Takes msg.
static bool
s_admin_answer (emqp_msg_t *msg, const s_admin_command_t *command, char **reply_out,
                int *rc, char *err, size_t errlen)
{
    bool answer = true;
    if (msg->command == EMQP_REPLY && !command->acked) {
        size_t size = msg->payload ? zframe_size (msg->payload) : 0;
        *reply_out = malloc (size + 1);
        if (*reply_out) {
            if (size)
                memcpy (*reply_out, zframe_data (msg->payload), size);
            (*reply_out)[size] = 0;
        }
        *rc = *reply_out ? 0 : EMQ_ERR_NOMEM;
    }
    else if (msg->command == EMQP_ACK && command->acked) {
        *reply_out = strdup (msg->ref);
        *rc = *reply_out ? 0 : EMQ_ERR_NOMEM;
    }
    else if (msg->command == EMQP_ERROR) {
        snprintf (err, errlen, "%s: %s", msg->error_code, msg->error_text);
        *rc = streq (msg->error_code, "NOT_FOUND") ? EMQ_ERR_NOT_FOUND : EMQ_ERR_REJECTED;
    }
    else
        answer = false;
    emqp_msg_destroy (&msg);
    return answer;
}

//  A request that only reads goes to every address of the list that takes
//  it (only the leading router binds its admin socket; a paused one that
//  still holds a connection answers nothing), and the first answer is the
//  one. One that changes something goes to the first address that takes
//  it, and to no other: a paused old leader would act on its copy when it
//  wakes (or stand down), after the answer was taken.
static int
s_admin_exchange (char **addrs, size_t count, const s_outgoing_t *out,
                  const s_admin_command_t *command, int timeout_ms, char **reply_out,
                  char *err, size_t errlen)
{
    zsock_t *socks[ADDRLIST_MAX] = { NULL };
    bool sent[ADDRLIST_MAX] = { false };
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++)
        if (!(socks[i] = s_socket_new (addrs[i], "admin-"))) {
            snprintf (err, errlen, "cannot connect to '%s': not a valid endpoint",
                      addrs[i]);
            rc = EMQ_ERR_INVALID;
        }
    int64_t deadline = s_deadline (timeout_ms);
    emqp_limits_t limits = { .payload_max = S_MESSAGE_MAX };
    bool answered = false, any_sent = false;
    while (rc == 0 && !answered) {
        zmq_pollitem_t items[ADDRLIST_MAX];
        for (size_t i = 0; i < count; i++)
            items[i] = (zmq_pollitem_t){ zsock_resolve (socks[i]), 0,
                                         sent[i]                        ? ZMQ_POLLIN
                                         : command->changes && any_sent ? 0
                                                                        : ZMQ_POLLOUT,
                                         0 };
        if (zmq_poll (items, (int) count, s_remaining (deadline)) < 0) {
            snprintf (err, errlen, "%s",
                      errno == EINTR ? "interrupted by a signal" : zmq_strerror (errno));
            rc = EMQ_ERR_SYSTEM;
            break;
        }
        for (size_t i = 0; i < count && rc == 0 && !answered; i++) {
            if (!sent[i] && (items[i].revents & ZMQ_POLLOUT)
                && !(command->changes && any_sent)) {
                rc = s_send (socks[i], out, addrs[i], zclock_mono (), err, errlen);
                sent[i] = rc == 0;
                any_sent |= sent[i];
            }
            else if (sent[i] && (items[i].revents & ZMQ_POLLIN)) {
                emqp_msg_t *msg = NULL;
                int got = s_recv (socks[i], &limits, zclock_mono (), &msg, addrs[i], err,
                                  errlen);
                if (got == 0)
                    answered = s_admin_answer (msg, command, reply_out, &rc, err, errlen);
            }
            //  A socket that cannot take the request yet is tried again.
            if (rc == EMQ_ERR_UNREACHABLE)
                rc = 0;
        }
        if (rc == 0 && !answered && deadline >= 0 && s_remaining (deadline) == 0) {
            bool any = false;
            for (size_t i = 0; i < count; i++)
                any |= sent[i];
            if (any)
                snprintf (err, errlen, "no answer from router admin at %s within %d ms",
                          count == 1 ? addrs[0] : "any address of the list", timeout_ms);
            else
                snprintf (err, errlen,
                          "router admin at %s is not reachable (no connection)",
                          count == 1 ? addrs[0] : "no address of the list");
            rc = EMQ_ERR_UNREACHABLE;
        }
    }
    for (size_t i = 0; i < count; i++)
        zsock_destroy (&socks[i]);
    return rc;
}

static int
s_admin_call_ex (const char *addr, const s_admin_command_t *command, const char *ref,
                 const char *request, int timeout_ms, char **reply_out)
{
    if (!addr || !*addr)
        addr = getenv ("EMQ_ADMIN_ADDR");
    if (!addr || !*addr)
        addr = EMQ_DEFAULT_ADMIN;
    char err[512], why[256];
    size_t count = 0;
    char **addrs = addrlist_parse (addr, &count, why, sizeof why);
    if (!addrs) {
        snprintf (err, sizeof err, "admin address '%.200s': expected %s", addr, why);
        return s_admin_fail (reply_out, EMQ_ERR_INVALID, err);
    }
    //  "admin:" + uuid4, as EventMQ's cli does.
    char uuid[37], msgid[44];
    emqp_msgid_new (uuid);
    snprintf (msgid, sizeof msgid, "admin:%s", uuid);
    s_outgoing_t out = { .command = command->command,
                         .msgid = msgid,
                         .ref = command->takes_ref ? ref : NULL,
                         .request = request };
    int rc = s_admin_exchange (addrs, count, &out, command, timeout_ms, reply_out, err,
                               sizeof err);
    addrlist_destroy (&addrs);
    if (rc == EMQ_ERR_NOMEM)
        snprintf (err, sizeof err, "out of memory");
    if (rc)
        return s_admin_fail (reply_out, rc, err);
    return 0;
}

int
emq_admin (const char *addr, const char *command, int timeout_ms, char **reply_out)
{
    assert (reply_out);
    *reply_out = NULL;
    const s_admin_command_t *cmd = s_admin_command_lookup (command);
    if (!cmd || cmd->takes_ref || cmd->command == EMQP_ADMIN)
        return s_admin_fail (
            reply_out, EMQ_ERR_INVALID,
            "unknown admin command (expected STATUS, ROUTER_SHOW_WORKERS, "
            "ROUTER_SHOW_SCHEDULERS, DISCONNECT, DEAD_LIST, DEAD_PURGE or FENCE_SHOW)");
    return s_admin_call (addr, cmd, NULL, timeout_ms, reply_out);
}

int
emq_admin_job (const char *addr, const char *command, const char *ref, int timeout_ms,
               char **reply_out)
{
    assert (reply_out);
    *reply_out = NULL;
    const s_admin_command_t *cmd = s_admin_command_lookup (command);
    if (!cmd || cmd->command == EMQP_ADMIN)
        return s_admin_fail (reply_out, EMQ_ERR_INVALID,
                             "unknown admin command (expected CANCEL, DEAD_RETRY, "
                             "DEAD_DELETE, FENCE_RESET, DEAD_LIST, DEAD_PURGE, "
                             "FENCE_SHOW, STATUS, ROUTER_SHOW_WORKERS, "
                             "ROUTER_SHOW_SCHEDULERS or DISCONNECT)");
    if (cmd->takes_ref && (!ref || !*ref || strlen (ref) > EMQP_MSGID_MAX))
        return s_admin_fail (reply_out, EMQ_ERR_INVALID,
                             "a job msgid of 1..128 bytes "
                             "is needed");
    if (!cmd->takes_ref && ref)
        return s_admin_fail (reply_out, EMQ_ERR_INVALID, "this command names no job");
    return s_admin_call (addr, cmd, ref, timeout_ms, reply_out);
}

int
emq_admin_request (const char *addr, const char *request_json, int timeout_ms,
                   char **reply_out)
{
    assert (reply_out);
    *reply_out = NULL;
    json_error_t error;
    json_t *request = request_json ? json_loads (request_json, 0, &error) : NULL;
    bool ok =
        json_is_object (request) && json_is_string (json_object_get (request, "command"));
    json_decref (request);
    if (!ok || strlen (request_json) > EMQP_SHORT_MAX)
        return s_admin_fail (reply_out, EMQ_ERR_INVALID,
                             "the request must be a JSON object with a \"command\" "
                             "string, at most 4096 bytes");
    static const s_admin_command_t admin = { EMQP_ADMIN, false, false, true };
    return s_admin_call_ex (addr, &admin, NULL, request_json, timeout_ms, reply_out);
}

//  Packs a request with jansson (which escapes every string) and sends it.
static int
s_admin_packed (const char *addr, json_t *request, int timeout_ms, char **reply_out)
{
    *reply_out = NULL;
    char *text = request ? json_dumps (request, JSON_COMPACT) : NULL;
    json_decref (request);
    if (!text)
        return s_admin_fail (reply_out, EMQ_ERR_INVALID,
                             "cannot build the request (a name is not UTF-8?)");
    int rc = emq_admin_request (addr, text, timeout_ms, reply_out);
    free (text);
    return rc;
}

int
emq_jobs_list (const char *addr, const char *queue, const char *state, size_t offset,
               size_t limit, int timeout_ms, char **reply_out)
{
    assert (reply_out);
    json_t *request = json_pack ("{s:s, s:s?, s:s?, s:I, s:I}", "command", "jobs",
                                 "queue", queue, "state", state, "offset",
                                 (json_int_t) offset, "limit", (json_int_t) limit);
    return s_admin_packed (addr, request, timeout_ms, reply_out);
}

int
emq_job_show (const char *addr, const char *msgid, int timeout_ms, char **reply_out)
{
    assert (reply_out);
    json_t *request =
        msgid ? json_pack ("{s:s, s:s}", "command", "job", "msgid", msgid) : NULL;
    return s_admin_packed (addr, request, timeout_ms, reply_out);
}

int
emq_queue_admin (const char *addr, const char *action, const char *queue, int timeout_ms,
                 char **reply_out)
{
    assert (reply_out);
    char command[32];
    snprintf (command, sizeof command, "queue_%s", action ? action : "");
    json_t *request = action && queue
                              && (streq (action, "pause") || streq (action, "resume")
                                  || streq (action, "purge"))
                          ? json_pack ("{s:s, s:s}", "command", command, "queue", queue)
                          : NULL;
    return s_admin_packed (addr, request, timeout_ms, reply_out);
}

int
emq_jobmanager_quiet (const char *addr, const char *jobmanager, bool quiet,
                      int timeout_ms, char **reply_out)
{
    assert (reply_out);
    json_t *request = jobmanager
                          ? json_pack ("{s:s, s:s}", "command",
                                       quiet ? "jobmanager_quiet" : "jobmanager_resume",
                                       "jobmanager", jobmanager)
                          : NULL;
    return s_admin_packed (addr, request, timeout_ms, reply_out);
}
