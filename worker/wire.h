/*  wire — the messages between a job manager and one of its workers, over
    the socketpair the pool creates for each worker. No ZeroMQ here: the
    worker is a forked child and must never touch the parent's ZeroMQ state.

    Framing: a 4-byte big-endian body length N (1..WIRE_BODY_MAX), then N
    bytes holding exactly one msgpack array whose first element is the
    message type:
        HELLO    worker -> jm   [1, pid, error]          error: nil when the
                                                         setup hook succeeded,
                                                         else str
        JOB      jm -> worker   [2, msgid, queue, attempt, timeout_s, payload,
                                 ticket]                 payload: bin
        OUTCOME  worker -> jm   [3, status, value, wall_us, cpu_us,
                                 maxrss_kb, retiring,    status: emqp_status_t
                                 ticket]                 as uint; value: bin
                                                         (msgpack value when
                                                         ok, else error text);
                                                         retiring: bool, the
                                                         worker exits next
    ticket (uint32) names the job's word in the page the two share
    (handoff.h); an OUTCOME carries its JOB's.
    Every message goes out in a single write() (prefix and body together).
    A reader treats a short, oversized or malformed message as fatal for the
    peer: the job manager then handles the worker as crashed.
*/
#ifndef EMQ_WIRE_H
#define EMQ_WIRE_H

#include "common/emqp.h"
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

//  Largest message body: a 16 MiB exec stdout plus room for the envelope,
//  or a job payload of the same order.
#define WIRE_BODY_MAX (64u * 1024 * 1024)

typedef enum { WIRE_HELLO = 1, WIRE_JOB = 2, WIRE_OUTCOME = 3 } wire_type_t;

typedef struct {
    wire_type_t type;
    //  HELLO
    int64_t pid;  // the worker's pid
    char *error;  // setup failure, NULL when setup succeeded
    //  JOB
    char *msgid;         // the job's msgid
    char *queue;         // the queue it came from
    uint32_t attempt;    // 1 on first dispatch
    uint32_t timeout_s;  // 0 = no timeout
    char *payload;       // msgpack job payload (see common/payload.h)
    size_t payload_size;
    //  OUTCOME
    emqp_status_t status;
    char *value;  // msgpack value (ok) or error text (otherwise)
    size_t value_size;
    uint64_t wall_us;    // wall-clock time of the job, microseconds
    uint64_t cpu_us;     // user + system CPU time, microseconds
    uint64_t maxrss_kb;  // peak resident set size, KiB
    bool retiring;       // the worker exits after sending this
    //  JOB and OUTCOME
    uint32_t ticket;  // the job's handoff ticket (handoff.h)
} wire_msg_t;

//  Creates an empty message of the type; caller owns it.
wire_msg_t *wire_msg_new (wire_type_t type);
//  Destroys a message and nulls the pointer; NULL is fine.
void wire_msg_destroy (wire_msg_t **self_p);
//  Sets a bytes field (value or payload) to a copy of data. Returns 0 or -1.
int wire_msg_set_bytes (char **field, size_t *size_field, const void *data, size_t size);

//  Appends the framed message (length prefix + body) to sbuf. Returns 0, or
//  -1 if a field the type needs is missing or the body is too large.
int wire_encode (const wire_msg_t *self, msgpack_sbuffer *sbuf);

//  Decodes one message body (without the length prefix). Returns a message
//  the caller owns, or NULL with the reason in err.
wire_msg_t *wire_decode (const void *data, size_t size, char *err, size_t errlen);

//  Writes one framed message to fd with a single write (repeated only if the
//  kernel takes part of it). Returns 0, or -1 with errno set. Never raises
//  SIGPIPE on a socket.
int wire_write (int fd, const wire_msg_t *self);
//  The same, encoding into scratch (the caller's, reused from one message
//  to the next so that a message costs no allocation; emptied first, and
//  given back if a large message grew it past 256 KiB).
int wire_send (int fd, const wire_msg_t *self, msgpack_sbuffer *scratch);

//  Blocking read of one message (the worker's side). Returns a message the
//  caller owns; NULL at end of file (errno = 0, err = "end of file") or on
//  an error or a malformed message (reason in err).
wire_msg_t *wire_read (int fd, char *err, size_t errlen);

//  Non-blocking, accumulating reader (the job manager's side).
typedef struct wire_reader_t wire_reader_t;

wire_reader_t *wire_reader_new (void);
void wire_reader_destroy (wire_reader_t **self_p);

//  Reads what fd has without blocking and returns the next whole message.
//  Returns 1 with *msg_p set (caller owns it; call again, more may be
//  buffered), 0 when no whole message is available yet, -1 at end of file or
//  on a read error, -2 on a malformed or oversized message. On -1/-2 the
//  reason is in err.
int wire_reader_recv (wire_reader_t *self, int fd, wire_msg_t **msg_p, char *err,
                      size_t errlen);
//  The next whole message already buffered, without reading: 1 with *msg_p
//  set, 0 when none, -2 when malformed (reason in err). Lets a caller read
//  once per wake-up and take every message that read brought.
int wire_reader_next (wire_reader_t *self, wire_msg_t **msg_p, char *err, size_t errlen);
//  The same as wire_reader_recv, blocking until a whole message came (the
//  worker's side: one read per message when it arrives in one piece).
//  Returns 1, -1 (end of file: err "end of file", or a read error), -2.
int wire_reader_wait (wire_reader_t *self, int fd, wire_msg_t **msg_p, char *err,
                      size_t errlen);

void wire_test (bool verbose);

#endif
