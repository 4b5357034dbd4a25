/*  wire — job manager <-> worker messages. See wire.h for the format.

    The decoder is strict: the bytes come from another process that may have
    been corrupted by the job it ran, so every element's type and count is
    checked, and nothing may follow the array.
*/
#include "wire.h"
#include "tests/testutil.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

wire_msg_t *
wire_msg_new (wire_type_t type)
{
    wire_msg_t *self = calloc (1, sizeof *self);
    if (self)
        self->type = type;
    return self;
}

void
wire_msg_destroy (wire_msg_t **self_p)
{
    assert (self_p);
    wire_msg_t *self = *self_p;
    if (!self)
        return;
    free (self->error);
    free (self->msgid);
    free (self->queue);
    free (self->payload);
    free (self->value);
    free (self);
    *self_p = NULL;
}

int
wire_msg_set_bytes (char **field, size_t *size_field, const void *data, size_t size)
{
    char *copy = malloc (size ? size : 1);
    if (!copy)
        return -1;
    if (size)
        memcpy (copy, data, size);
    free (*field);
    *field = copy;
    *size_field = size;
    return 0;
}

static void
s_pack_str (msgpack_packer *pk, const char *text)
{
    size_t size = strlen (text);
    msgpack_pack_str (pk, size);
    msgpack_pack_str_body (pk, text, size);
}

static void
s_pack_bin (msgpack_packer *pk, const char *data, size_t size)
{
    msgpack_pack_bin (pk, size);
    if (size)
        msgpack_pack_bin_body (pk, data, size);
}

int
wire_encode (const wire_msg_t *self, msgpack_sbuffer *sbuf)
{
    assert (self && sbuf);
    //  Reserve the prefix, pack the body after it, then fill the prefix in.
    size_t start = sbuf->size;
    static const char zero[4] = { 0 };
    if (msgpack_sbuffer_write (sbuf, zero, 4))
        return -1;
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    switch (self->type) {
        case WIRE_HELLO:
            msgpack_pack_array (&pk, 3);
            msgpack_pack_uint8 (&pk, WIRE_HELLO);
            msgpack_pack_int64 (&pk, self->pid);
            if (self->error)
                s_pack_str (&pk, self->error);
            else
                msgpack_pack_nil (&pk);
            break;
        case WIRE_JOB:
            if (!self->msgid || !self->queue || !self->payload)
                goto fail;
            msgpack_pack_array (&pk, 7);
            msgpack_pack_uint8 (&pk, WIRE_JOB);
            s_pack_str (&pk, self->msgid);
            s_pack_str (&pk, self->queue);
            msgpack_pack_uint32 (&pk, self->attempt);
            msgpack_pack_uint32 (&pk, self->timeout_s);
            s_pack_bin (&pk, self->payload, self->payload_size);
            msgpack_pack_uint32 (&pk, self->ticket);
            break;
        case WIRE_OUTCOME:
            if (self->status >= EMQP_STATUS_COUNT)
                goto fail;
            msgpack_pack_array (&pk, 8);
            msgpack_pack_uint8 (&pk, WIRE_OUTCOME);
            msgpack_pack_uint8 (&pk, (uint8_t) self->status);
            s_pack_bin (&pk, self->value ? self->value : "",
                        self->value ? self->value_size : 0);
            msgpack_pack_uint64 (&pk, self->wall_us);
            msgpack_pack_uint64 (&pk, self->cpu_us);
            msgpack_pack_uint64 (&pk, self->maxrss_kb);
            if (self->retiring)
                msgpack_pack_true (&pk);
            else
                msgpack_pack_false (&pk);
            msgpack_pack_uint32 (&pk, self->ticket);
            break;
        default:
            goto fail;
    }
    size_t body = sbuf->size - start - 4;
    if (body == 0 || body > WIRE_BODY_MAX)
        goto fail;
    unsigned char *prefix = (unsigned char *) sbuf->data + start;
    prefix[0] = (unsigned char) (body >> 24);
    prefix[1] = (unsigned char) (body >> 16);
    prefix[2] = (unsigned char) (body >> 8);
    prefix[3] = (unsigned char) body;
    return 0;
fail:
    sbuf->size = start;
    return -1;
}

//  Typed element readers for the decoder; each names what was wrong.
static int
s_get_uint (const msgpack_object *o, const char *what, uint64_t max, uint64_t *out,
            char *err, size_t errlen)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > max) {
        snprintf (err, errlen, "%s is not an unsigned integer <= %llu", what,
                  (unsigned long long) max);
        return -1;
    }
    *out = o->via.u64;
    return 0;
}

static int
s_get_str (const msgpack_object *o, const char *what, char **out, char *err,
           size_t errlen)
{
    if (o->type != MSGPACK_OBJECT_STR || memchr (o->via.str.ptr, 0, o->via.str.size)) {
        snprintf (err, errlen, "%s is not a string without NUL", what);
        return -1;
    }
    *out = strndup (o->via.str.ptr, o->via.str.size);
    if (!*out) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int
s_get_bin (const msgpack_object *o, const char *what, char **out, size_t *size, char *err,
           size_t errlen)
{
    if (o->type != MSGPACK_OBJECT_BIN) {
        snprintf (err, errlen, "%s is not bin", what);
        return -1;
    }
    if (wire_msg_set_bytes (out, size, o->via.bin.ptr, o->via.bin.size)) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

wire_msg_t *
wire_decode (const void *data, size_t size, char *err, size_t errlen)
{
    wire_msg_t *self = NULL;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    msgpack_unpack_return rc = msgpack_unpack_next (&unpacked, data, size, &offset);
    if (rc != MSGPACK_UNPACK_SUCCESS) {
        snprintf (err, errlen, "body is not one complete msgpack value");
        goto fail;
    }
    if (offset != size) {
        snprintf (err, errlen, "%zu bytes after the message", size - offset);
        goto fail;
    }
    const msgpack_object *root = &unpacked.data;
    if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size < 1) {
        snprintf (err, errlen, "body is not a non-empty array");
        goto fail;
    }
    const msgpack_object *e = root->via.array.ptr;
    uint32_t n = root->via.array.size;
    uint64_t number;
    if (s_get_uint (&e[0], "type", 255, &number, err, errlen))
        goto fail;
    static const uint32_t expected[] = { 0, 3, 7, 8 };
    if (number < WIRE_HELLO || number > WIRE_OUTCOME) {
        snprintf (err, errlen, "unknown message type %llu", (unsigned long long) number);
        goto fail;
    }
    if (n != expected[number]) {
        snprintf (err, errlen, "message type %llu has %u elements, expected %u",
                  (unsigned long long) number, n, expected[number]);
        goto fail;
    }
    self = wire_msg_new ((wire_type_t) number);
    if (!self) {
        snprintf (err, errlen, "out of memory");
        goto fail;
    }
    switch (self->type) {
        case WIRE_HELLO:
            if (e[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && e[1].via.u64 <= INT32_MAX)
                self->pid = (int64_t) e[1].via.u64;
            else {
                snprintf (err, errlen, "HELLO: pid is not a positive integer");
                goto fail;
            }
            if (e[2].type != MSGPACK_OBJECT_NIL
                && s_get_str (&e[2], "HELLO: error", &self->error, err, errlen))
                goto fail;
            break;
        case WIRE_JOB:
            if (s_get_str (&e[1], "JOB: msgid", &self->msgid, err, errlen)
                || s_get_str (&e[2], "JOB: queue", &self->queue, err, errlen)
                || s_get_uint (&e[3], "JOB: attempt", UINT32_MAX, &number, err, errlen))
                goto fail;
            self->attempt = (uint32_t) number;
            if (s_get_uint (&e[4], "JOB: timeout", UINT32_MAX, &number, err, errlen))
                goto fail;
            self->timeout_s = (uint32_t) number;
            if (s_get_bin (&e[5], "JOB: payload", &self->payload, &self->payload_size,
                           err, errlen)
                || s_get_uint (&e[6], "JOB: ticket", UINT32_MAX, &number, err, errlen))
                goto fail;
            self->ticket = (uint32_t) number;
            break;
        case WIRE_OUTCOME:
            if (s_get_uint (&e[1], "OUTCOME: status", EMQP_STATUS_COUNT - 1, &number, err,
                            errlen))
                goto fail;
            self->status = (emqp_status_t) number;
            if (s_get_bin (&e[2], "OUTCOME: value", &self->value, &self->value_size, err,
                           errlen)
                || s_get_uint (&e[3], "OUTCOME: wall_us", UINT64_MAX, &self->wall_us, err,
                               errlen)
                || s_get_uint (&e[4], "OUTCOME: cpu_us", UINT64_MAX, &self->cpu_us, err,
                               errlen)
                || s_get_uint (&e[5], "OUTCOME: maxrss_kb", UINT64_MAX, &self->maxrss_kb,
                               err, errlen))
                goto fail;
            if (e[6].type != MSGPACK_OBJECT_BOOLEAN) {
                snprintf (err, errlen, "OUTCOME: retiring is not a boolean");
                goto fail;
            }
            self->retiring = e[6].via.boolean;
            if (s_get_uint (&e[7], "OUTCOME: ticket", UINT32_MAX, &number, err, errlen))
                goto fail;
            self->ticket = (uint32_t) number;
            break;
    }
    msgpack_unpacked_destroy (&unpacked);
    return self;
fail:
    msgpack_unpacked_destroy (&unpacked);
    wire_msg_destroy (&self);
    return NULL;
}

//  A scratch buffer that grew past this for a large message is given back
//  after it.
#define S_SCRATCH_KEPT (256u * 1024)

int
wire_write (int fd, const wire_msg_t *self)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    int rc = wire_send (fd, self, &sbuf);
    int saved = errno;
    msgpack_sbuffer_destroy (&sbuf);
    errno = saved;
    return rc;
}

int
wire_send (int fd, const wire_msg_t *self, msgpack_sbuffer *sbuf)
{
    assert (sbuf);
    sbuf->size = 0;
    if (wire_encode (self, sbuf)) {
        errno = EINVAL;
        return -1;
    }
    //  send() so a closed peer is EPIPE, not SIGPIPE; a pipe or file (tests)
    //  is not a socket: write() then.
    bool is_socket = true;
    size_t done = 0;
    int rc = 0;
    while (done < sbuf->size) {
        ssize_t n = is_socket
                        ? send (fd, sbuf->data + done, sbuf->size - done, MSG_NOSIGNAL)
                        : write (fd, sbuf->data + done, sbuf->size - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ENOTSOCK && is_socket) {
                is_socket = false;
                continue;
            }
            rc = -1;
            break;
        }
        done += (size_t) n;
    }
    int saved = errno;
    if (sbuf->alloc > S_SCRATCH_KEPT) {
        msgpack_sbuffer_destroy (sbuf);
        msgpack_sbuffer_init (sbuf);
    }
    errno = saved;
    return rc;
}

//  Reads exactly size bytes. Returns size, 0 at EOF before any byte, or -1
//  (errno set; EPIPE-like short read gets EIO).
static ssize_t
s_read_full (int fd, void *buf, size_t size)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = read (fd, (char *) buf + done, size - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            if (done == 0)
                return 0;
            errno = EIO;
            return -1;
        }
        done += (size_t) n;
    }
    return (ssize_t) done;
}

wire_msg_t *
wire_read (int fd, char *err, size_t errlen)
{
    unsigned char prefix[4];
    ssize_t n = s_read_full (fd, prefix, 4);
    if (n == 0) {
        snprintf (err, errlen, "end of file");
        errno = 0;
        return NULL;
    }
    if (n < 0) {
        snprintf (err, errlen, "read: %s", strerror (errno));
        return NULL;
    }
    uint32_t size = (uint32_t) prefix[0] << 24 | (uint32_t) prefix[1] << 16
                    | (uint32_t) prefix[2] << 8 | prefix[3];
    if (size == 0 || size > WIRE_BODY_MAX) {
        snprintf (err, errlen, "message length %u out of range", size);
        errno = EPROTO;
        return NULL;
    }
    char *body = malloc (size);
    if (!body) {
        snprintf (err, errlen, "out of memory for %u bytes", size);
        return NULL;
    }
    n = s_read_full (fd, body, size);
    if (n != (ssize_t) size) {
        snprintf (err, errlen, "short message: %s",
                  n < 0 ? strerror (errno) : "end of file");
        free (body);
        errno = EPROTO;
        return NULL;
    }
    wire_msg_t *msg = wire_decode (body, size, err, errlen);
    free (body);
    if (!msg)
        errno = EPROTO;
    return msg;
}

struct wire_reader_t {
    char *buf;        // bytes received and not yet consumed
    size_t size;      // bytes in buf
    size_t capacity;  // allocated bytes
};

wire_reader_t *
wire_reader_new (void)
{
    return calloc (1, sizeof (wire_reader_t));
}

void
wire_reader_destroy (wire_reader_t **self_p)
{
    assert (self_p);
    wire_reader_t *self = *self_p;
    if (!self)
        return;
    free (self->buf);
    free (self);
    *self_p = NULL;
}

//  Takes one whole message out of the buffer if there is one.
static int
s_reader_extract (wire_reader_t *self, wire_msg_t **msg_p, char *err, size_t errlen)
{
    if (self->size < 4)
        return 0;
    const unsigned char *p = (const unsigned char *) self->buf;
    uint32_t size =
        (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
    if (size == 0 || size > WIRE_BODY_MAX) {
        snprintf (err, errlen, "message length %u out of range", size);
        return -2;
    }
    if (self->size - 4 < size)
        return 0;
    *msg_p = wire_decode (self->buf + 4, size, err, errlen);
    if (!*msg_p)
        return -2;
    memmove (self->buf, self->buf + 4 + size, self->size - 4 - size);
    self->size -= 4 + size;
    if (self->size == 0 && self->capacity > S_SCRATCH_KEPT) {
        //  A large message grew the buffer: give it back now it is empty.
        free (self->buf);
        self->buf = NULL;
        self->capacity = 0;
    }
    return 1;
}

int
wire_reader_next (wire_reader_t *self, wire_msg_t **msg_p, char *err, size_t errlen)
{
    assert (self && msg_p);
    *msg_p = NULL;
    return s_reader_extract (self, msg_p, err, errlen);
}

//  Reads into the buffer until a whole message is there: without blocking
//  (0 when the descriptor has nothing more), or blocking.
static int
s_reader_fill (wire_reader_t *self, int fd, bool block, wire_msg_t **msg_p, char *err,
               size_t errlen)
{
    *msg_p = NULL;
    int rc = s_reader_extract (self, msg_p, err, errlen);
    if (rc)
        return rc;
    while (true) {
        if (self->capacity - self->size < 65536) {
            size_t capacity = self->capacity ? self->capacity * 2 : 65536;
            if (capacity > WIRE_BODY_MAX + 4 + 65536)
                capacity = WIRE_BODY_MAX + 4 + 65536;
            if (capacity <= self->capacity) {
                //  Cannot happen: extract refuses lengths past WIRE_BODY_MAX.
                snprintf (err, errlen, "reader buffer full");
                return -2;
            }
            char *buf = realloc (self->buf, capacity);
            if (!buf) {
                snprintf (err, errlen, "out of memory");
                return -1;
            }
            self->buf = buf;
            self->capacity = capacity;
        }
        ssize_t n = recv (fd, self->buf + self->size, self->capacity - self->size,
                          block ? 0 : MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK)
            n = read (fd, self->buf + self->size, self->capacity - self->size);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            snprintf (err, errlen, "read: %s", strerror (errno));
            return -1;
        }
        if (n == 0) {
            if (self->size)
                snprintf (err, errlen,
                          "end of file inside a message (%zu bytes buffered)",
                          self->size);
            else
                snprintf (err, errlen, "end of file");
            return -1;
        }
        self->size += (size_t) n;
        rc = s_reader_extract (self, msg_p, err, errlen);
        if (rc)
            return rc;
    }
}

int
wire_reader_recv (wire_reader_t *self, int fd, wire_msg_t **msg_p, char *err,
                  size_t errlen)
{
    assert (self && msg_p);
    return s_reader_fill (self, fd, false, msg_p, err, errlen);
}

int
wire_reader_wait (wire_reader_t *self, int fd, wire_msg_t **msg_p, char *err,
                  size_t errlen)
{
    assert (self && msg_p);
    return s_reader_fill (self, fd, true, msg_p, err, errlen);
}

//  --------------------------------------------------------------------------
//  Self test

void
wire_test (bool verbose)
{
    if (verbose)
        printf (" * wire: ");
    char err[256];
    int sv[2];
    REQUIRE (socketpair (AF_UNIX, SOCK_STREAM, 0, sv) == 0);

    //  Round trip of each type through write/read and the reader.
    wire_msg_t *job = wire_msg_new (WIRE_JOB);
    job->msgid = strdup ("m-1");
    job->queue = strdup ("default");
    job->attempt = 2;
    job->timeout_s = 30;
    job->ticket = 4000000000u;
    REQUIRE (wire_msg_set_bytes (&job->payload, &job->payload_size, "\x80", 1) == 0);
    REQUIRE (wire_write (sv[0], job) == 0);
    wire_msg_t *copy = wire_read (sv[1], err, sizeof err);
    REQUIRE (copy);
    REQUIRE (copy->type == WIRE_JOB);
    REQUIRE (streq (copy->msgid, "m-1") && streq (copy->queue, "default"));
    REQUIRE (copy->attempt == 2 && copy->timeout_s == 30 && copy->ticket == 4000000000u);
    REQUIRE (copy->payload_size == 1 && copy->payload[0] == '\x80');
    wire_msg_destroy (&copy);
    wire_msg_destroy (&job);

    wire_msg_t *hello = wire_msg_new (WIRE_HELLO);
    hello->pid = 1234;
    wire_msg_t *outcome = wire_msg_new (WIRE_OUTCOME);
    outcome->status = EMQP_STATUS_FAILED;
    REQUIRE (wire_msg_set_bytes (&outcome->value, &outcome->value_size, "boom", 4) == 0);
    outcome->wall_us = 5;
    outcome->cpu_us = 6;
    outcome->maxrss_kb = 7;
    outcome->retiring = true;
    outcome->ticket = 9;
    REQUIRE (wire_write (sv[1], hello) == 0);
    REQUIRE (wire_write (sv[1], outcome) == 0);
    wire_msg_destroy (&hello);
    wire_msg_destroy (&outcome);

    wire_reader_t *reader = wire_reader_new ();
    REQUIRE (reader);
    wire_msg_t *msg = NULL;
    REQUIRE (wire_reader_recv (reader, sv[0], &msg, err, sizeof err) == 1);
    REQUIRE (msg->type == WIRE_HELLO && msg->pid == 1234 && msg->error == NULL);
    wire_msg_destroy (&msg);
    REQUIRE (wire_reader_recv (reader, sv[0], &msg, err, sizeof err) == 1);
    REQUIRE (msg->type == WIRE_OUTCOME && msg->status == EMQP_STATUS_FAILED);
    REQUIRE (msg->value_size == 4 && memcmp (msg->value, "boom", 4) == 0);
    REQUIRE (msg->wall_us == 5 && msg->cpu_us == 6 && msg->maxrss_kb == 7 && msg->retiring
             && msg->ticket == 9);
    wire_msg_destroy (&msg);
    REQUIRE (wire_reader_recv (reader, sv[0], &msg, err, sizeof err) == 0);

    //  Two messages that came in one read: the second is taken without
    //  reading; then nothing is left. The blocking reader gets the next one.
    hello = wire_msg_new (WIRE_HELLO);
    hello->pid = 77;
    msgpack_sbuffer scratch;
    msgpack_sbuffer_init (&scratch);
    REQUIRE (wire_send (sv[1], hello, &scratch) == 0);
    REQUIRE (wire_send (sv[1], hello, &scratch) == 0);
    REQUIRE (wire_reader_recv (reader, sv[0], &msg, err, sizeof err) == 1
             && msg->pid == 77);
    wire_msg_destroy (&msg);
    REQUIRE (wire_reader_next (reader, &msg, err, sizeof err) == 1 && msg->pid == 77);
    wire_msg_destroy (&msg);
    REQUIRE (wire_reader_next (reader, &msg, err, sizeof err) == 0 && msg == NULL);
    hello->pid = 78;
    REQUIRE (wire_send (sv[1], hello, &scratch) == 0);
    REQUIRE (wire_reader_wait (reader, sv[0], &msg, err, sizeof err) == 1
             && msg->pid == 78);
    wire_msg_destroy (&msg);
    msgpack_sbuffer_destroy (&scratch);
    wire_msg_destroy (&hello);

    //  A message split across two writes is reassembled.
    REQUIRE (write (sv[1], "\0\0\0\x04\x93", 5) == 5);
    REQUIRE (wire_reader_recv (reader, sv[0], &msg, err, sizeof err) == 0);
    REQUIRE (write (sv[1], "\x01\x05\xc0", 3) == 3);
    REQUIRE (wire_reader_recv (reader, sv[0], &msg, err, sizeof err) == 1);
    REQUIRE (msg->type == WIRE_HELLO && msg->pid == 5);
    wire_msg_destroy (&msg);

    //  Malformed bodies are refused with a reason.
    struct {
        const char *data;
        size_t size;
        const char *reason;
    } bad[] = {
        { "\x93\x01\x05", 3, "complete" },                              // truncated
        { "\x92\x01\x05", 3, "elements" },                              // wrong count
        { "\x93\x09\x05\xc0", 4, "unknown" },                           // unknown type
        { "\x93\x01\xa1x\xc0", 5, "pid" },                              // pid not int
        { "\x93\x01\x05\xc0\xc0", 5, "after" },                         // trailing bytes
        { "\x01", 1, "array" },                                         // not an array
        { "\x98\x03\x09\xc4\x00\x00\x00\x00\xc2\x00", 10, "status" },   // bad status
        { "\x98\x03\x00\xa0\x00\x00\x00\xc2\x00", 9, "bin" },           // value not bin
        { "\x98\x03\x00\xc4\x00\x00\x00\x00\xc2\xa1t", 11, "ticket" },  // ticket
        { "\x97\x02\xa2m\x00\xa1q\x01\x00\xc4\x00\x00", 12, "NUL" },    // NUL in msgid
        { "\x96\x02\xa1m\xa1q\x01\x00\xc4\x00", 10, "elements" },       // JOB w/o ticket
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        msg = wire_decode (bad[i].data, bad[i].size, err, sizeof err);
        if (msg || !strstr (err, bad[i].reason))
            fprintf (stderr, "case %zu: err='%s' expected '%s'\n", i, err, bad[i].reason);
        REQUIRE (!msg && strstr (err, bad[i].reason));
    }
    //  Zero and oversized lengths are malformed for the reader.
    REQUIRE (write (sv[1], "\0\0\0\0", 4) == 4);
    REQUIRE (wire_reader_recv (reader, sv[0], &msg, err, sizeof err) == -2);
    wire_reader_destroy (&reader);
    reader = wire_reader_new ();
    REQUIRE (write (sv[1], "\xff\xff\xff\xff", 4) == 4);
    REQUIRE (wire_reader_recv (reader, sv[0], &msg, err, sizeof err) == -2);
    wire_reader_destroy (&reader);

    //  A short message followed by EOF: -1 for the reader, NULL for wire_read.
    reader = wire_reader_new ();
    REQUIRE (write (sv[1], "\0\0\0\x09\x93", 5) == 5);
    close (sv[1]);
    REQUIRE (wire_reader_recv (reader, sv[0], &msg, err, sizeof err) == -1);
    REQUIRE (strstr (err, "inside a message"));
    wire_reader_destroy (&reader);
    close (sv[0]);

    REQUIRE (socketpair (AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    REQUIRE (write (sv[1], "\0\0\0\x09\x93", 5) == 5);
    close (sv[1]);
    REQUIRE (wire_read (sv[0], err, sizeof err) == NULL && strstr (err, "short"));
    close (sv[0]);

    //  A missing field cannot be encoded.
    job = wire_msg_new (WIRE_JOB);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    REQUIRE (wire_encode (job, &sbuf) == -1 && sbuf.size == 0);
    msgpack_sbuffer_destroy (&sbuf);
    wire_msg_destroy (&job);

    if (verbose)
        printf ("OK\n");
}
