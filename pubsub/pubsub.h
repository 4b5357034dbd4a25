/*  pubsub — emq-pubsub's forwarder, wire-compatible with EventMQ's
    emq-pubsub: publishers send PUBLISH to a ROUTER socket
    ('' eMQP/1.0 PUBLISH msgid topic message), and every message goes out
    on a PUB socket as two frames, topic then message, to plain ZeroMQ SUB
    clients (which filter on the topic's prefix).

    The object owns both sockets. Nothing is kept: a message with no
    subscriber is dropped, as PUB does. Malformed input is logged and
    dropped; the forwarder keeps serving.
*/
#ifndef EMQ_PUBSUB_H
#define EMQ_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pubsub_t pubsub_t;

typedef struct {
    const char *incoming;  // ROUTER endpoint to bind (publisher_incoming_addr)
    const char *outgoing;  // PUB endpoint to bind (publisher_outgoing_addr)
    size_t message_max;    // largest message frame accepted, bytes
    //  Called from the loop after a SIGHUP (service_hup_install): reloads
    //  what it can (the log's settings), logs the rest. May be NULL.
    void (*reload) (void *arg);
    void *reload_arg;
} pubsub_settings_t;

//  Binds both sockets (strings are copied). Returns the forwarder (caller
//  owns it), or NULL with the reason in err.
pubsub_t *pubsub_new (const pubsub_settings_t *settings, char *err, size_t errlen);
void pubsub_destroy (pubsub_t **self_p);

//  Forwards until SIGINT/SIGTERM (czmq's handler). Returns 0.
int pubsub_run (pubsub_t *self);

//  Forwards every message waiting on the incoming socket, waiting up to
//  timeout_ms for the first one. Returns how many were read.
size_t pubsub_step (pubsub_t *self, int timeout_ms);

//  Messages published, and messages refused (malformed, too large, not
//  PUBLISH), since the start.
uint64_t pubsub_published (pubsub_t *self);
uint64_t pubsub_refused (pubsub_t *self);

void pubsub_test (bool verbose);

#endif
