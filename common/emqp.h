/*  emqp — the eMQP/1.0 frame codec: the only code that builds or parses frames.

    A whole multipart message becomes an emqp_msg_t and back. Decoding checks
    the frame count, the protocol frame, the command, every size and every
    number, and names the reason for any rejection. Fields that a command does
    not use stay NULL/0. The message owns all its fields.

    Wire layout (after the routing identity on a ROUTER socket):
        ''  'eMQP/1.0'  COMMAND  msgid  <command frames...>
    See docs/protocol.md for the frame table of every command, extensions
    included.
*/
#ifndef EMQ_EMQP_H
#define EMQ_EMQP_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#define EMQP_PROTOCOL "eMQP/1.0"

//  Limits on text frames; payloads are limited by emqp_limits_t.
#define EMQP_MSGID_MAX 128
#define EMQP_QUEUE_MAX 128
#define EMQP_HEADERS_MAX 1024
#define EMQP_SHORT_MAX 4096   // INFORM queues, usage, error text
#define EMQP_STATS_MAX 65536  // HEARTBEAT stats JSON
#define EMQP_FRAMES_MAX 32    // frames read per message; more are ignored
#define EMQP_TOPIC_MAX 1024   // PUBLISH topic

typedef enum {
    EMQP_INVALID = 0,
    //  eMQP/1.0 as EventMQ speaks it
    EMQP_ACK,
    EMQP_HEARTBEAT,
    EMQP_DISCONNECT,
    EMQP_KBYE,
    EMQP_READY,
    EMQP_INFORM,
    EMQP_REQUEST,
    EMQP_REPLY,
    EMQP_SCHEDULE,
    EMQP_UNSCHEDULE,
    EMQP_HELLO,
    EMQP_STATUS,
    EMQP_ROUTER_SHOW_WORKERS,
    EMQP_ROUTER_SHOW_SCHEDULERS,
    //  emq extensions (EventMQ peers never receive these)
    EMQP_DONE,        // jm -> router: a job ended (msgid, epoch, outcome)
    EMQP_RESULT,      // router -> client: a job's outcome
    EMQP_ERROR,       // router -> peer: a message was refused, and why
    EMQP_FETCH,       // client -> router: send me the RESULT of a job
    EMQP_CANCEL,      // admin -> router, router -> jm: cancel a job
    EMQP_DEAD_LIST,   // admin -> router: list dead jobs (REPLY json)
    EMQP_DEAD_RETRY,  // admin -> router: run a dead job (or "*") again
    EMQP_DEAD_PURGE,  // admin -> router: delete every dead job
    EMQP_RETURN,      // jm -> router: a prefetched job it did not start
    EMQP_BATCH,       // emq/3 peers: several messages in one (emqp_batch)
    //  EventMQ's pub/sub (emq-pubsub; the router never takes it)
    EMQP_PUBLISH,      // publisher -> emq-pubsub: topic, message
    EMQP_ADMIN,        // admin -> router: a job or queue admin request (JSON
                       // text in stats), answered by REPLY JSON
    EMQP_DEAD_DELETE,  // admin -> router: delete one dead job
    EMQP_FENCE_SHOW,   // admin -> router: the schedulers' fencing tokens
    EMQP_FENCE_RESET,  // admin -> router: forget a scope's token (or "*")
    EMQP_COMMAND_COUNT
} emqp_command_t;

//  Outcome of a job, as carried by DONE and RESULT.
typedef enum {
    EMQP_STATUS_OK = 0,
    EMQP_STATUS_FAILED,     // the job reported an error or exited non-zero
    EMQP_STATUS_TIMEOUT,    // killed after timeout:N seconds
    EMQP_STATUS_CRASHED,    // the worker died (signal, OOM, exit) running it
    EMQP_STATUS_REJECTED,   // the job manager refused to run it (bad payload,
                            // plugin not allowed, command not allowed)
    EMQP_STATUS_CANCELLED,  // cancelled while running (CANCEL)
    EMQP_STATUS_COUNT
} emqp_status_t;

//  A decoded message. Text fields are NUL-terminated, valid UTF-8, owned.
//  Binary fields are zframe_t, owned (moved out of the received zmsg_t, never
//  copied).
typedef struct {
    zframe_t *identity;  // routing id (ROUTER side), else NULL
    emqp_command_t command;
    char *msgid;  // this message's id (all commands)

    char *ref;             // ACK: acked id; REPLY(jm)/DONE/RESULT/ERROR/
                           // FETCH/CANCEL/DEAD_RETRY: the job's msgid;
                           // FENCE_RESET: the scope ("" legacy, "*" all)
    char *queue;           // REQUEST, SCHEDULE, UNSCHEDULE
    char *topic;           // PUBLISH: what subscribers filter on (a prefix)
    char *headers;         // REQUEST, SCHEDULE, UNSCHEDULE ("" if none)
    zframe_t *payload;     // REQUEST/SCHEDULE/UNSCHEDULE: job payload;
                           // REPLY: reply (jm) or JSON (admin);
                           // DONE/RESULT: msgpack value (ok) or error text;
                           // BATCH: the packed messages;
                           // PUBLISH: the message published
    double heartbeat_ts;   // HEARTBEAT: unix seconds
    char *stats;           // HEARTBEAT (emq jm -> router, optional trailing
                           // frame): JSON status of the job manager;
                           // ADMIN: the request, a JSON object
    int64_t interval_s;    // SCHEDULE, UNSCHEDULE (-1 when cron is used)
    char *cron;            // SCHEDULE, UNSCHEDULE ("" when interval is used)
    char *queues;          // INFORM: JSON [[weight,"name"],...] or ""
    char *peer_type;       // INFORM: "worker" | "scheduler"
    char *agent;           // INFORM: optional extension frame naming an emq
                           // peer ("emq/2"); NULL for EventMQ peers. ACK
                           // (router -> emq jm, to INFORM): the router's
                           // ("emq/2"), NULL from older routers
    uint64_t epoch;        // REQUEST (router->emq jm), DONE, CANCEL
                           // (router->jm): dispatch epoch
    uint32_t attempt;      // REQUEST (router->emq jm): 1 on first dispatch
    emqp_status_t status;  // DONE, RESULT
    char *usage;           // DONE, RESULT: "wall_us=N cpu_us=N maxrss_kb=N"
    char *error_code;      // ERROR: a word, e.g. "QUEUE_FULL"
    char *error_text;      // ERROR: human-readable reason
    char *meta;            // emqp_recv with limits->meta_property: its value
                           // on the sender's connection, or NULL
    char *peer_address;    // emqp_recv with limits->peer_address: ZeroMQ's
                           // "Peer-Address" of the sender's connection (the
                           // IP for tcp://), NULL when it has none (ipc://)
} emqp_msg_t;

typedef struct {
    size_t payload_max;         // largest payload/result frame accepted (bytes)
    const char *meta_property;  // emqp_recv: a connection property to read
                                // into emqp_msg_t.meta (e.g. from CURVE
                                // certificate metadata), or NULL
    bool peer_address;          // emqp_recv: read the sender's address into
                                // emqp_msg_t.peer_address
} emqp_limits_t;

//  Why a message was refused (emqp_decode_fault, emqp_recv).
typedef enum {
    EMQP_ERR_NONE = 0,
    EMQP_ERR_MALFORMED,        // a frame is missing, empty, too long, has a NUL
                               // or bad UTF-8, or is not the number, status,
                               // interval or timestamp it must be
    EMQP_ERR_NO_IDENTITY,      // ROUTER side: no routing id frame
    EMQP_ERR_PROTOCOL,         // no empty delimiter, or not eMQP/1.0
    EMQP_ERR_UNKNOWN_COMMAND,  // a command this codec does not know
    EMQP_ERR_TOO_LARGE,        // a payload or result past limits->payload_max
    EMQP_ERR_NO_MEMORY,        // we ran out of memory decoding it
    EMQP_ERR_RECEIVE,          // emqp_recv: the socket failed, nothing read
    EMQP_ERR_COUNT
} emqp_error_t;

//  A refused message: what was wrong, as a code for the program and as text
//  for logs.
typedef struct {
    emqp_error_t code;       // EMQP_ERR_NONE after a success
    emqp_command_t command;  // the refused message's command once it was
                             // read, else EMQP_INVALID
    char text[256];          // the reason, naming the command and frame
} emqp_fault_t;

//  Returns the code's name for logs ("too_large"), or "unknown".
const char *emqp_error_name (emqp_error_t code);
//  Returns the ERROR frame's code a router answers a refused message with:
//  "TOO_LARGE" for EMQP_ERR_TOO_LARGE, "BAD_FRAME" for the rest
//  (docs/protocol.md, error codes). Answer only a known sender, and never a
//  refused ERROR (fault.command == EMQP_ERROR): no error ping-pong.
const char *emqp_error_word (emqp_error_t code);

//  Returns the command's wire name ("REQUEST"), or "INVALID".
const char *emqp_command_name (emqp_command_t command);
//  Returns the command for a wire name, or EMQP_INVALID.
emqp_command_t emqp_command_lookup (const char *name);
//  Status names: "ok", "failed", "timeout", "crashed", "rejected".
const char *emqp_status_name (emqp_status_t status);
//  Returns 0 and sets *status, or -1 for an unknown name.
int emqp_status_lookup (const char *name, emqp_status_t *status);

//  Creates an empty message for the command; caller owns it.
emqp_msg_t *emqp_msg_new (emqp_command_t command);
//  Destroys a message and nulls the pointer; NULL is fine.
void emqp_msg_destroy (emqp_msg_t **self_p);

//  Decodes a whole multipart message, taking ownership of *zmsg_p (it is
//  destroyed and nulled whatever happens). with_identity: the first frame is
//  a ROUTER routing id. On success returns a message the caller owns. On
//  failure returns NULL and describes the fault in *fault (code, command,
//  text); when the identity could be read and with_identity is set,
//  *identity_p (if not NULL) receives it so the caller can answer with
//  ERROR (caller owns it).
emqp_msg_t *emqp_decode_fault (zmsg_t **zmsg_p, bool with_identity,
                               const emqp_limits_t *limits, zframe_t **identity_p,
                               emqp_fault_t *fault);
//  The same for a caller that only logs why: on failure writes the fault's
//  text to err (errlen bytes).
emqp_msg_t *emqp_decode (zmsg_t **zmsg_p, bool with_identity, const emqp_limits_t *limits,
                         zframe_t **identity_p, char *err, size_t errlen);

//  Receives and decodes the next message on sock without waiting and
//  without building czmq frames for it. Returns 1 with *msg_p set (caller
//  owns it); 0 when no message is waiting; -1 when one was read but is
//  refused, or the socket failed (EMQP_ERR_RECEIVE): the fault in *fault,
//  *identity_p as for emqp_decode_fault.
int emqp_recv (zsock_t *sock, bool with_identity, const emqp_limits_t *limits,
               emqp_msg_t **msg_p, zframe_t **identity_p, emqp_fault_t *fault);

//  Encodes a message into a new zmsg_t (identity first when set). Moves the
//  message's frames into the result (self->payload and self->identity become
//  NULL); strings are copied. If msgid is NULL a fresh one is generated.
//  Returns NULL if a field the command needs is missing.
zmsg_t *emqp_encode (emqp_msg_t *self);

//  Encodes and sends on sock, non-blocking (ZMQ_DONTWAIT). Takes ownership
//  of *self_p. Returns 0, or -1 with errno set (EHOSTUNREACH: the ROUTER peer
//  is gone; EAGAIN: its pipe is full). On failure nothing was sent.
int emqp_send (emqp_msg_t **self_p, zsock_t *sock);

//  Batches (emq/3 peers, negotiated: docs/protocol.md). Several messages
//  for one peer travel as one ZeroMQ message, BATCH, whose one frame packs
//  each message's frames after the protocol frame (command, msgid, ...) as
//  a msgpack array of arrays of bin. A lone message is sent as itself.
//  A BATCH stays within the 64 KiB that every emq socket accepts beyond
//  its payload limit: a sender sends before EMQP_BATCH_BYTES, and never
//  batches a message whose payload is over EMQP_BATCH_ITEM_MAX.
#define EMQP_BATCH_MAX 1024  // messages in one BATCH
#define EMQP_BATCH_BYTES (48 * 1024)
#define EMQP_BATCH_ITEM_MAX (8 * 1024)
#define EMQP_BATCH_FRAME_MAX (63 * 1024)  // a receiver refuses larger

typedef struct emqp_batch_t emqp_batch_t;
//  Creates an empty batch; caller owns it.
emqp_batch_t *emqp_batch_new (void);
void emqp_batch_destroy (emqp_batch_t **self_p);
//  Adds a message (its identity is ignored), taking ownership of *msg_p.
//  Returns 0, or -1 if the message lacks a field its command needs (it is
//  destroyed all the same). The caller sends before EMQP_BATCH_MAX
//  messages or EMQP_BATCH_BYTES (emqp_batch_full).
int emqp_batch_add (emqp_batch_t *self, emqp_msg_t **msg_p);
//  Messages held.
size_t emqp_batch_size (const emqp_batch_t *self);
//  True if msg may go in a batch (its payload is small enough).
bool emqp_batch_takes (const emqp_msg_t *msg);
//  Even a lone message goes as a BATCH (a peer learns this way that the
//  sender takes batches).
void emqp_batch_set_always (emqp_batch_t *self, bool always);
//  True when the next add should wait for a send.
bool emqp_batch_full (const emqp_batch_t *self);
//  Sends what the batch holds to identity (a ROUTER's peer; NULL on a
//  DEALER) as one message, non-blocking, and empties it. Nothing held:
//  nothing sent, returns 0. Returns 0, or -1 with errno set as emqp_send
//  (nothing was sent; the messages are dropped).
int emqp_batch_send (emqp_batch_t *self, zsock_t *sock, zframe_t *identity);
//  Unpacks a received BATCH into its messages: returns a malloc'd array of
//  *count messages that the caller owns (destroy each, free the array),
//  each with the batch's identity and meta. A message that does not decode
//  comes back as command EMQP_INVALID with its msgid (if readable) and the
//  reason in error_text, so the sender can be answered for it alone.
//  Returns NULL with the reason in err when the batch itself is malformed.
emqp_msg_t **emqp_batch_unpack (const emqp_msg_t *batch, const emqp_limits_t *limits,
                                size_t *count, char *err, size_t errlen);

//  Writes a fresh uuid4 string (36 chars + NUL) to buf.
void emqp_msgid_new (char buf[37]);

//  Writes a printable, length-capped rendering of data to buf for logs.
const char *emqp_printable (const void *data, size_t size, char *buf, size_t buflen);

//  Self test.
void emqp_test (bool verbose);

#endif
