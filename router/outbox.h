/*  outbox — what the router sends to batch-capable peers, gathered per
    peer during a loop turn and sent as BATCHes (emqp_batch) at its end.

    One outbox per ROUTER socket. It knows which routing ids take BATCH (a
    job manager whose agent is emq/3 or later; a client that sent a BATCH
    itself) and sends everything else at once, as before. Messages to one
    peer keep their order: a message that cannot be batched (a large
    payload) first sends what is gathered for that peer. A lone message is
    sent as itself. Nothing waits for a batch to fill: the router flushes
    every turn.
*/
#ifndef EMQ_ROUTER_OUTBOX_H
#define EMQ_ROUTER_OUTBOX_H

#include <czmq.h>
#include <stdbool.h>

#include "emqp.h"

typedef struct outbox_t outbox_t;

//  Bounds the routing ids remembered as batch-capable (clients come and
//  go); past it the set starts again, and those peers get plain messages
//  until they send a BATCH again (correct, only slower).
#define OUTBOX_PEERS_MAX 10000

//  Creates the outbox of sock (borrowed; it must outlive the outbox).
outbox_t *outbox_new (zsock_t *sock);
void outbox_destroy (outbox_t **self_p);

//  Marks a routing id as taking BATCH, or not.
void outbox_allow (outbox_t *self, zframe_t *identity, bool batches);
bool outbox_allows (outbox_t *self, zframe_t *identity);

//  Sends msg to its identity (msg->identity), taking ownership of *msg_p:
//  gathered when the peer takes batches, else sent now. Returns 0, or -1
//  with errno set as emqp_send when a send now failed (nothing sent).
//  A gathered message's failure is reported by outbox_flush.
int outbox_send (outbox_t *self, emqp_msg_t **msg_p);

//  Called for each peer whose gathered messages could not be sent.
typedef void (outbox_failed_fn) (void *arg, zframe_t *identity, size_t messages,
                                 int error);

//  Sends everything gathered. Returns the number of BATCH or lone
//  messages sent; failures go to failed (may be NULL), after the sends.
size_t outbox_flush (outbox_t *self, outbox_failed_fn *failed, void *arg);

//  Messages gathered and not yet sent.
size_t outbox_pending (outbox_t *self);
//  BATCH messages sent so far, and the messages that went in them.
void outbox_stats (outbox_t *self, uint64_t *batches, uint64_t *messages);

void outbox_test (bool verbose);

#endif
