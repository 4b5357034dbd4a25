/*  events — the router's lifecycle stream: a PUB socket on which every
    change a watcher cares about is published as it happens (jobs queued,
    scheduled, started, done, failed, retried, dead, cancelled, requeued;
    job managers joined and left). docs/protocol.md, "Event stream", is the
    specification: two frames, the topic ("job.<kind>" or
    "jobmanager.<kind>") and a JSON object.

    Publishing never blocks the loop: a PUB socket drops messages for a
    subscriber that does not keep up (past its high-water mark), and the
    "seq" number in each event lets a subscriber see that it missed some.
    Every function takes a NULL events_t (no stream configured) and then
    does nothing.
*/
#ifndef EMQ_ROUTER_EVENTS_H
#define EMQ_ROUTER_EVENTS_H

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "curve.h"

typedef struct events_t events_t;

//  Binds a PUB socket on endpoint (a CURVE server when curve is given).
//  Returns the stream, or NULL with the reason in err.
events_t *events_new (const char *endpoint, curve_server_t *curve, char *err,
                      size_t errlen);
void events_destroy (events_t **self_p);

//  Publishes a job event. extra (taken; may be NULL) is an object whose
//  keys are added to the event (e.g. "jobmanager", "error", "wait_ms").
void events_job (events_t *self, const char *kind, const char *queue, const char *msgid,
                 uint32_t attempt, json_t *extra);

//  Publishes a job manager event ("joined", "left"); extra as above.
void events_jobmanager (events_t *self, const char *kind, const char *id, json_t *extra);

//  Events published, and sends that failed (the socket refused them).
uint64_t events_published (events_t *self);

void events_test (bool verbose);

#endif
