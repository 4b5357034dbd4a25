/*  pubsub — the PUBLISH-to-PUB forwarder. See pubsub.h and
    docs/protocol.md (emq-pubsub).

    One loop: zloop wakes on the ROUTER, every waiting message is decoded by
    common/emqp (the only code that parses frames) and a PUBLISH leaves on
    the PUB socket as [topic, message]. Anything else is logged (the sender,
    what was wrong) and dropped; EventMQ's publishers expect no answer, so
    none is sent.
*/
#include "pubsub.h"
#include "emqp.h"
#include "errbuf.h"
#include "log.h"
#include "service.h"

#include <czmq.h>

//  Messages read per wake-up before zloop gets a turn (signals).
#define S_BURST 1024
//  Longest wait of the loop, so that a stop signal is never missed.
#define S_TICK_MS 200

struct pubsub_t {
    zsock_t *incoming;  // ROUTER: publishers
    zsock_t *outgoing;  // PUB: subscribers
    emqp_limits_t limits;
    uint64_t published;
    uint64_t refused;
    void (*reload) (void *arg);
    void *reload_arg;
    bool watchdog;  // the service manager wants pings
};

//  A publisher's identity for logs: text when printable, else 0x + hex.
static const char *
s_peer_name (zframe_t *identity, char *buf, size_t buflen)
{
    if (!identity)
        return "?";
    const unsigned char *data = zframe_data (identity);
    size_t size = zframe_size (identity);
    bool printable = size > 0 && size < buflen;
    for (size_t i = 0; i < size && printable; i++)
        printable = data[i] > 0x20 && data[i] < 0x7F;
    if (printable) {
        memcpy (buf, data, size);
        buf[size] = 0;
        return buf;
    }
    size_t out = (size_t) snprintf (buf, buflen, "0x");
    for (size_t i = 0; i < size && out + 3 <= buflen; i++)
        out += (size_t) snprintf (buf + out, buflen - out, "%02x", data[i]);
    return buf;
}

pubsub_t *
pubsub_new (const pubsub_settings_t *settings, char *err, size_t errlen)
{
    assert (settings && settings->incoming && settings->outgoing);
    pubsub_t *self = calloc (1, sizeof (pubsub_t));
    if (!self) {
        errbuf_set (err, errlen, "out of memory");
        return NULL;
    }
    self->limits.payload_max = settings->message_max;
    self->reload = settings->reload;
    self->reload_arg = settings->reload_arg;
    self->incoming = zsock_new (ZMQ_ROUTER);
    self->outgoing = zsock_new (ZMQ_PUB);
    if (!self->incoming || !self->outgoing) {
        errbuf_set (err, errlen, "cannot create sockets: %s",
                    zmq_strerror (zmq_errno ()));
        goto fail;
    }
    //  Oversized frames are cut off by libzmq before they take memory.
    zsock_set_maxmsgsize (self->incoming, (int) settings->message_max + 4096);
    if (zsock_bind (self->incoming, "%s", settings->incoming) == -1) {
        errbuf_set (err, errlen, "cannot bind incoming %s: %s", settings->incoming,
                    zmq_strerror (zmq_errno ()));
        goto fail;
    }
    if (zsock_bind (self->outgoing, "%s", settings->outgoing) == -1) {
        errbuf_set (err, errlen, "cannot bind outgoing %s: %s", settings->outgoing,
                    zmq_strerror (zmq_errno ()));
        goto fail;
    }
    log_info ("pubsub: PUBLISH in on %s, subscribers on %s", settings->incoming,
              settings->outgoing);
    return self;
fail:
    pubsub_destroy (&self);
    return NULL;
}

void
pubsub_destroy (pubsub_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pubsub_t *self = *self_p;
    zsock_destroy (&self->incoming);
    zsock_destroy (&self->outgoing);
    free (self);
    *self_p = NULL;
}

//  Sends a PUBLISH on as [topic, message]; takes the message frame.
static void
s_forward (pubsub_t *self, emqp_msg_t *msg)
{
    zmsg_t *out = zmsg_new ();
    zmsg_addstr (out, msg->topic);
    zmsg_append (out, &msg->payload);
    //  PUB never blocks: past its high-water mark a subscriber misses it.
    if (zmsg_send (&out, self->outgoing) == -1) {
        log_warning ("pubsub: cannot publish on topic %.64s: %s", msg->topic,
                     zmq_strerror (zmq_errno ()));
        zmsg_destroy (&out);
        return;
    }
    self->published++;
    log_debug ("pubsub: published topic=%.64s", msg->topic);
}

//  Handles one waiting message. Returns false when none was waiting.
static bool
s_handle_one (pubsub_t *self)
{
    emqp_msg_t *msg = NULL;
    zframe_t *identity = NULL;
    emqp_fault_t fault;
    int rc = emqp_recv (self->incoming, true, &self->limits, &msg, &identity, &fault);
    char name[80];
    if (rc == 0)
        return false;
    if (rc < 0) {
        if (fault.code != EMQP_ERR_RECEIVE) {
            self->refused++;
            log_warning ("pubsub: publisher %s: message refused: %s",
                         s_peer_name (identity, name, sizeof name), fault.text);
        }
        else
            log_warning ("pubsub: receive failed: %s", fault.text);
        zframe_destroy (&identity);
        return fault.code != EMQP_ERR_RECEIVE;
    }
    switch (msg->command) {
        case EMQP_PUBLISH:
            s_forward (self, msg);
            break;
        case EMQP_HEARTBEAT:
        case EMQP_KBYE:
            break;  // a publisher's keep-alive or goodbye: nothing to do
        default:
            self->refused++;
            log_warning ("pubsub: publisher %s: %s is not a pubsub command, dropped",
                         s_peer_name (msg->identity, name, sizeof name),
                         emqp_command_name (msg->command));
    }
    emqp_msg_destroy (&msg);
    return true;
}

size_t
pubsub_step (pubsub_t *self, int timeout_ms)
{
    assert (self);
    zmq_pollitem_t item = { zsock_resolve (self->incoming), 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, timeout_ms) <= 0)
        return 0;
    size_t count = 0;
    while (count < S_BURST && s_handle_one (self))
        count++;
    return count;
}

static void
s_reload (pubsub_t *self)
{
    service_reloading ();
    if (self->reload)
        self->reload (self->reload_arg);
    service_ready ("forwarding");
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    pubsub_t *self = (pubsub_t *) arg;
    //  A SIGHUP that arrived while a handler ran (no poll to interrupt).
    if (service_hup_take ())
        s_reload (self);
    //  The tick is far more often than half any watchdog interval.
    if (self->watchdog)
        service_watchdog_ping ();
    return 0;
}

static int
s_on_incoming (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    (void) reader;
    pubsub_step ((pubsub_t *) arg, 0);
    return 0;
}

int
pubsub_run (pubsub_t *self)
{
    assert (self);
    zloop_t *loop = zloop_new ();
    //  The tick bounds each wait: a SIGTERM that lands between zloop's
    //  check of zsys_interrupted and its poll is seen at the next one.
    if (!loop || zloop_reader (loop, self->incoming, s_on_incoming, self)
        || zloop_timer (loop, S_TICK_MS, 0, s_on_tick, self) == -1) {
        log_error ("pubsub: cannot start the event loop");
        zloop_destroy (&loop);
        return -1;
    }
    self->watchdog = service_watchdog_ms () > 0;
    service_ready ("forwarding");
    //  zloop_start returns 0 when a signal interrupts poll(): after a
    //  SIGHUP the reload runs here and the loop goes on; SIGINT/SIGTERM
    //  set zsys_interrupted.
    while (zloop_start (loop) == 0 && !zsys_interrupted) {
        if (!service_hup_take ())
            break;
        s_reload (self);
    }
    service_stopping ();
    zloop_destroy (&loop);
    log_info ("pubsub: stopping; published=%" PRIu64 " refused=%" PRIu64, self->published,
              self->refused);
    return 0;
}

uint64_t
pubsub_published (pubsub_t *self)
{
    assert (self);
    return self->published;
}

uint64_t
pubsub_refused (pubsub_t *self)
{
    assert (self);
    return self->refused;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

//  Steps the forwarder until sub has a message (tries of 10 ms); returns
//  it (caller destroys it) or NULL.
static zmsg_t *
s_test_receive (pubsub_t *self, zsock_t *sub, int tries)
{
    for (int i = 0; i < tries; i++) {
        pubsub_step (self, 10);
        zmq_pollitem_t item = { zsock_resolve (sub), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 0) > 0)
            return zmsg_recv (sub);
    }
    return NULL;
}

void
pubsub_test (bool verbose)
{
    if (verbose)
        printf (" * pubsub: ");
    char dir[] = "/tmp/emq-pubsub-test-XXXXXX";
    REQUIRE (mkdtemp (dir));
    char incoming[128], outgoing[128];
    snprintf (incoming, sizeof incoming, "ipc://%s/in", dir);
    snprintf (outgoing, sizeof outgoing, "ipc://%s/out", dir);
    log_level_t quiet = verbose ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR;
    log_set_level (quiet);

    char err[256];
    pubsub_settings_t settings = { .incoming = incoming,
                                   .outgoing = outgoing,
                                   .message_max = 64 };
    pubsub_t *pubsub = pubsub_new (&settings, err, sizeof err);
    REQUIRE (pubsub);
    //  An address that cannot be bound: a clear error, no object.
    pubsub_settings_t nowhere = { .incoming = "ipc:///nonexistent/emq/in",
                                  .outgoing = outgoing,
                                  .message_max = 64 };
    CHECK (pubsub_new (&nowhere, err, sizeof err) == NULL);
    CHECK_CONTAINS (err, "cannot bind incoming ipc:///nonexistent/emq/in");

    zsock_t *sub = zsock_new_sub (outgoing, "news");
    zsock_t *publisher = zsock_new_dealer (incoming);
    REQUIRE (sub && publisher);
    //  A subscription takes a moment to reach PUB: publish until one lands.
    zmsg_t *got = NULL;
    for (int i = 0; i < 50 && !got; i++) {
        zstr_sendx (publisher, "", EMQP_PROTOCOL, "PUBLISH", "m0", "news.warm", "w",
                    NULL);
        got = s_test_receive (pubsub, sub, 10);
    }
    REQUIRE (got);
    zmsg_destroy (&got);
    //  Earlier warm-up messages may still be on their way.
    while ((got = s_test_receive (pubsub, sub, 10)))
        zmsg_destroy (&got);
    uint64_t published = pubsub_published (pubsub);
    CHECK (published >= 1);

    //  Malformed (no message frame), unknown, oversized, not PUBLISH: each
    //  refused and counted; a topic nobody subscribed is not delivered;
    //  then a good one arrives, topic first.
    zstr_sendx (publisher, "", EMQP_PROTOCOL, "PUBLISH", "m1", "news.bad", NULL);
    zstr_sendx (publisher, "", EMQP_PROTOCOL, "BOGUS", "m2", NULL);
    char big[100];
    memset (big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    zstr_sendx (publisher, "", EMQP_PROTOCOL, "PUBLISH", "m3", "news.big", big, NULL);
    zstr_sendx (publisher, "", EMQP_PROTOCOL, "REQUEST", "m4", "q", "", "p", NULL);
    zstr_sendx (publisher, "", "eMQP/0.9", "PUBLISH", "m5", "news.old", "x", NULL);
    zstr_sendx (publisher, "", EMQP_PROTOCOL, "PUBLISH", "m6", "other", "nobody", NULL);
    zstr_sendx (publisher, "", EMQP_PROTOCOL, "PUBLISH", "m7", "news.eur", "{\"bid\": 1}",
                NULL);
    got = s_test_receive (pubsub, sub, 500);
    REQUIRE (got);
    CHECK_EQ (zmsg_size (got), 2);
    char *topic = zmsg_popstr (got);
    char *message = zmsg_popstr (got);
    CHECK_STREQ (topic, "news.eur");
    CHECK_STREQ (message, "{\"bid\": 1}");
    zstr_free (&topic);
    zstr_free (&message);
    zmsg_destroy (&got);
    CHECK_EQ (pubsub_refused (pubsub), 5);
    CHECK_EQ (pubsub_published (pubsub), published + 2);  // "other" went out too

    zsock_destroy (&sub);
    zsock_destroy (&publisher);
    pubsub_destroy (&pubsub);
    CHECK (pubsub == NULL);
    pubsub_destroy (&pubsub);
    zsys_dir_delete ("%s", dir);
    log_set_level (LOG_LEVEL_INFO);
    if (verbose)
        printf ("OK\n");
}
