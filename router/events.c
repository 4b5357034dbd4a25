/*  events — the router's PUB socket of lifecycle events. See events.h.

    Each event is one JSON object: {"seq", "time", "kind", ...}. The topic
    frame comes first so that ZeroMQ's prefix subscriptions filter by kind
    ("job.", "job.dead", "jobmanager.") on the publisher's side.
*/
#include "events.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

struct events_t {
    zsock_t *pub;
    uint64_t seq;     // events published so far (the next one's "seq" - 1)
    uint64_t failed;  // sends that the socket refused
};

events_t *
events_new (const char *endpoint, curve_server_t *curve, char *err, size_t errlen)
{
    events_t *self = calloc (1, sizeof (events_t));
    if (!self || !(self->pub = zsock_new (ZMQ_PUB))) {
        snprintf (err, errlen, "cannot create the events socket");
        free (self);
        return NULL;
    }
    if (curve)
        curve_server_apply (curve, self->pub);
    //  A slow subscriber loses events rather than slowing the router.
    zsock_set_sndhwm (self->pub, 10000);
    zsock_set_linger (self->pub, 0);
    if (zsock_bind (self->pub, "%s", endpoint) == -1) {
        snprintf (err, errlen, "cannot bind events %s: %s", endpoint,
                  zmq_strerror (zmq_errno ()));
        events_destroy (&self);
        return NULL;
    }
    return self;
}

void
events_destroy (events_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zsock_destroy (&(*self_p)->pub);
    free (*self_p);
    *self_p = NULL;
}

static void
s_publish (events_t *self, const char *topic, json_t *event)
{
    json_object_set_new (event, "seq", json_integer ((json_int_t) ++self->seq));
    json_object_set_new (event, "time", json_real (clock_wall_s ()));
    char *text = json_dumps (event, JSON_COMPACT);
    json_decref (event);
    if (!text)
        return;
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, topic);
    zmsg_addstr (msg, text);
    free (text);
    //  PUB never blocks: past the high-water mark ZeroMQ drops the message.
    if (zmsg_send (&msg, self->pub) != 0) {
        zmsg_destroy (&msg);
        if (self->failed++ == 0)
            log_warning ("events: cannot publish: %s", zmq_strerror (zmq_errno ()));
    }
}

void
events_job (events_t *self, const char *kind, const char *queue, const char *msgid,
            uint32_t attempt, json_t *extra)
{
    if (!self) {
        json_decref (extra);
        return;
    }
    json_t *event = extra && json_is_object (extra) ? extra : json_object ();
    if (event != extra)
        json_decref (extra);
    json_object_set_new (event, "kind", json_string (kind));
    json_object_set_new (event, "queue", json_string (queue));
    json_object_set_new (event, "msgid", json_string (msgid));
    json_object_set_new (event, "attempt", json_integer (attempt));
    char topic[64];
    snprintf (topic, sizeof topic, "job.%s", kind);
    s_publish (self, topic, event);
}

void
events_jobmanager (events_t *self, const char *kind, const char *id, json_t *extra)
{
    if (!self) {
        json_decref (extra);
        return;
    }
    json_t *event = extra && json_is_object (extra) ? extra : json_object ();
    if (event != extra)
        json_decref (extra);
    json_object_set_new (event, "kind", json_string (kind));
    json_object_set_new (event, "jobmanager", json_string (id));
    char topic[64];
    snprintf (topic, sizeof topic, "jobmanager.%s", kind);
    s_publish (self, topic, event);
}

uint64_t
events_published (events_t *self)
{
    return self ? self->seq : 0;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
events_test (bool verbose)
{
    if (verbose)
        printf (" * events: ");
    char err[256];
    //  No stream: every call is a no-op, extra is still released (ASan).
    events_job (NULL, "queued", "q", "m", 0, json_object ());
    events_jobmanager (NULL, "joined", "jm", NULL);
    CHECK_UEQ (events_published (NULL), 0);
    CHECK (events_new ("nonsense://x", NULL, err, sizeof err) == NULL);
    CHECK_CONTAINS (err, "cannot bind events");

    events_t *events = events_new ("inproc://events-test", NULL, err, sizeof err);
    REQUIRE (events);
    zsock_t *sub = zsock_new_sub (">inproc://events-test", "job.");
    REQUIRE (sub);
    zsock_set_rcvtimeo (sub, 2000);
    //  inproc subscriptions are seen at once; publish until one arrives.
    zmsg_t *msg = NULL;
    for (int i = 0; i < 200 && !msg; i++) {
        events_jobmanager (events, "joined", "jm-1", NULL);  // filtered out
        events_job (events, "started", "default", "id-1", 1,
                    json_pack ("{s:s}", "jobmanager", "jm-1"));
        zsock_set_rcvtimeo (sub, 10);
        msg = zmsg_recv (sub);
    }
    REQUIRE (msg);
    CHECK_EQ (zmsg_size (msg), 2);
    char *topic = zmsg_popstr (msg), *body = zmsg_popstr (msg);
    CHECK_STREQ (topic, "job.started");
    json_t *event = json_loads (body ? body : "", 0, NULL);
    CHECK_STREQ (json_string_value (json_object_get (event, "kind")), "started");
    CHECK_STREQ (json_string_value (json_object_get (event, "queue")), "default");
    CHECK_STREQ (json_string_value (json_object_get (event, "msgid")), "id-1");
    CHECK_STREQ (json_string_value (json_object_get (event, "jobmanager")), "jm-1");
    CHECK_EQ (json_integer_value (json_object_get (event, "attempt")), 1);
    CHECK (json_integer_value (json_object_get (event, "seq")) >= 2);
    CHECK (json_real_value (json_object_get (event, "time")) > 1.5e9);
    json_decref (event);
    free (topic);
    free (body);
    zmsg_destroy (&msg);
    CHECK (events_published (events) >= 2);
    zsock_destroy (&sub);
    events_destroy (&events);
    events_destroy (&events);
    if (verbose)
        printf ("OK\n");
}
