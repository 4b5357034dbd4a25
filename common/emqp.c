/*  emqp — the eMQP/1.0 frame codec. See emqp.h and docs/protocol.md.

    Decoding is strict about what a command needs (frame count, sizes, number
    formats, UTF-8 in text frames) and lenient about what it does not know:
    trailing frames beyond a command's layout are ignored, so that peers may
    extend messages as the protocol allows.
*/
#include "emqp.h"
#include "errbuf.h"
#include "numparse.h"
#include "payload.h"

#include <errno.h>
#include <math.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static const char *s_command_names[EMQP_COMMAND_COUNT] = {
    [EMQP_INVALID] = "INVALID",
    [EMQP_ACK] = "ACK",
    [EMQP_HEARTBEAT] = "HEARTBEAT",
    [EMQP_DISCONNECT] = "DISCONNECT",
    [EMQP_KBYE] = "KBYE",
    [EMQP_READY] = "READY",
    [EMQP_INFORM] = "INFORM",
    [EMQP_REQUEST] = "REQUEST",
    [EMQP_REPLY] = "REPLY",
    [EMQP_SCHEDULE] = "SCHEDULE",
    [EMQP_UNSCHEDULE] = "UNSCHEDULE",
    [EMQP_HELLO] = "HELLO",
    [EMQP_STATUS] = "STATUS",
    [EMQP_ROUTER_SHOW_WORKERS] = "ROUTER_SHOW_WORKERS",
    [EMQP_ROUTER_SHOW_SCHEDULERS] = "ROUTER_SHOW_SCHEDULERS",
    [EMQP_DONE] = "DONE",
    [EMQP_RESULT] = "RESULT",
    [EMQP_ERROR] = "ERROR",
    [EMQP_FETCH] = "FETCH",
    [EMQP_CANCEL] = "CANCEL",
    [EMQP_DEAD_LIST] = "DEAD_LIST",
    [EMQP_DEAD_RETRY] = "DEAD_RETRY",
    [EMQP_DEAD_PURGE] = "DEAD_PURGE",
    [EMQP_RETURN] = "RETURN",
    [EMQP_BATCH] = "BATCH",
    [EMQP_PUBLISH] = "PUBLISH",
    [EMQP_ADMIN] = "ADMIN",
    [EMQP_DEAD_DELETE] = "DEAD_DELETE",
    [EMQP_FENCE_SHOW] = "FENCE_SHOW",
    [EMQP_FENCE_RESET] = "FENCE_RESET",
};

static const char *s_status_names[EMQP_STATUS_COUNT] = {
    [EMQP_STATUS_OK] = "ok",
    [EMQP_STATUS_FAILED] = "failed",
    [EMQP_STATUS_TIMEOUT] = "timeout",
    [EMQP_STATUS_CRASHED] = "crashed",
    [EMQP_STATUS_REJECTED] = "rejected",
    [EMQP_STATUS_CANCELLED] = "cancelled",
};

//  Each fault's name for logs, and the ERROR code the router answers with.
static const struct {
    const char *name;
    const char *word;
} s_errors[EMQP_ERR_COUNT] = {
    [EMQP_ERR_NONE] = { "none", "BAD_FRAME" },
    [EMQP_ERR_MALFORMED] = { "malformed", "BAD_FRAME" },
    [EMQP_ERR_NO_IDENTITY] = { "no_identity", "BAD_FRAME" },
    [EMQP_ERR_PROTOCOL] = { "protocol", "BAD_FRAME" },
    [EMQP_ERR_UNKNOWN_COMMAND] = { "unknown_command", "BAD_FRAME" },
    [EMQP_ERR_TOO_LARGE] = { "too_large", "TOO_LARGE" },
    //  Our memory, not the peer's message; still BAD_FRAME on the wire, as
    //  every other refusal the peer cannot act on.
    [EMQP_ERR_NO_MEMORY] = { "no_memory", "BAD_FRAME" },
    [EMQP_ERR_RECEIVE] = { "receive", "BAD_FRAME" },
};

const char *
emqp_error_name (emqp_error_t code)
{
    if ((int) code < 0 || code >= EMQP_ERR_COUNT)
        return "unknown";
    return s_errors[code].name;
}

const char *
emqp_error_word (emqp_error_t code)
{
    if ((int) code < 0 || code >= EMQP_ERR_COUNT)
        return "BAD_FRAME";
    return s_errors[code].word;
}

const char *
emqp_command_name (emqp_command_t command)
{
    if (command <= EMQP_INVALID || command >= EMQP_COMMAND_COUNT)
        return "INVALID";
    return s_command_names[command];
}

emqp_command_t
emqp_command_lookup (const char *name)
{
    for (int i = EMQP_INVALID + 1; i < EMQP_COMMAND_COUNT; i++)
        if (streq (s_command_names[i], name))
            return (emqp_command_t) i;
    return EMQP_INVALID;
}

const char *
emqp_status_name (emqp_status_t status)
{
    if ((int) status < 0 || status >= EMQP_STATUS_COUNT)
        return "unknown";
    return s_status_names[status];
}

int
emqp_status_lookup (const char *name, emqp_status_t *status)
{
    for (int i = 0; i < EMQP_STATUS_COUNT; i++)
        if (streq (s_status_names[i], name)) {
            *status = (emqp_status_t) i;
            return 0;
        }
    return -1;
}

emqp_msg_t *
emqp_msg_new (emqp_command_t command)
{
    emqp_msg_t *self = calloc (1, sizeof (emqp_msg_t));
    if (self)
        self->command = command;
    return self;
}

void
emqp_msg_destroy (emqp_msg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    emqp_msg_t *self = *self_p;
    zframe_destroy (&self->identity);
    zframe_destroy (&self->payload);
    free (self->msgid);
    free (self->ref);
    free (self->meta);
    free (self->peer_address);
    free (self->queue);
    free (self->headers);
    free (self->cron);
    free (self->topic);
    free (self->queues);
    free (self->peer_type);
    free (self->agent);
    free (self->usage);
    free (self->stats);
    free (self->error_code);
    free (self->error_text);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Decoding helpers. Each returns 0, or -1 after writing the reason to err.

//  The decoder reads a message as borrowed (data, size) views of its
//  frames, whether they came from a zmsg_t or straight from the socket.
typedef struct {
    const void *data;
    size_t size;
} s_view_t;

typedef struct {
    const s_view_t *frames;
    size_t count;
    size_t next;  // the next frame to read
    const emqp_limits_t *limits;
    emqp_fault_t *fault;  // why the message is refused
    const char *command;  // for error messages
} s_reader_t;

//  Refuses the message: code and reason into fault. Returns -1.
static int s_refuse (emqp_fault_t *fault, emqp_error_t code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_refuse (emqp_fault_t *fault, emqp_error_t code, const char *format, ...)
{
    fault->code = code;
    va_list args;
    va_start (args, format);
    errbuf_vset (fault->text, sizeof fault->text, format, args);
    va_end (args);
    return -1;
}

static const s_view_t *
s_pop (s_reader_t *r)
{
    return r->next < r->count ? &r->frames[r->next++] : NULL;
}

static size_t
s_left (s_reader_t *r)
{
    return r->count - r->next;
}

//  Strict UTF-8 check (no overlongs, no surrogates, nothing past U+10FFFF).
static bool
s_is_utf8 (const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return false;  // NUL would truncate our C strings
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            cp = c & 0x1F;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            cp = c & 0x0F;
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            cp = c & 0x07;
        }
        else
            return false;
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))
            || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static int
s_text (s_reader_t *r, const char *field, size_t max, bool may_be_empty, char **out)
{
    const s_view_t *frame = s_pop (r);
    if (!frame) {
        s_refuse (r->fault, EMQP_ERR_MALFORMED, "%s: missing %s frame", r->command,
                  field);
        return -1;
    }
    size_t size = frame->size;
    if (size > max)
        s_refuse (r->fault, EMQP_ERR_MALFORMED,
                  "%s: %s frame too long (%zu bytes, max %zu)", r->command, field, size,
                  max);
    else if (size == 0 && !may_be_empty)
        s_refuse (r->fault, EMQP_ERR_MALFORMED, "%s: %s frame is empty", r->command,
                  field);
    else if (memchr (frame->data, 0, size))
        s_refuse (r->fault, EMQP_ERR_MALFORMED, "%s: %s frame contains a NUL byte",
                  r->command, field);
    else if (!s_is_utf8 (frame->data, size))
        s_refuse (r->fault, EMQP_ERR_MALFORMED, "%s: %s frame is not valid UTF-8 text",
                  r->command, field);
    else {
        *out = malloc (size + 1);
        if (!*out) {
            s_refuse (r->fault, EMQP_ERR_NO_MEMORY, "%s: out of memory", r->command);
            return -1;
        }
        memcpy (*out, frame->data, size);
        (*out)[size] = 0;
        return 0;
    }
    return -1;
}

//  A binary frame becomes a zframe_t of its exact size: a copy, so that a
//  kept payload never pins a larger receive buffer of ZeroMQ's.
static int
s_binary (s_reader_t *r, const char *field, zframe_t **out)
{
    const s_view_t *frame = s_pop (r);
    if (!frame) {
        s_refuse (r->fault, EMQP_ERR_MALFORMED, "%s: missing %s frame", r->command,
                  field);
        return -1;
    }
    size_t max = r->limits ? r->limits->payload_max : SIZE_MAX;
    if (frame->size > max) {
        s_refuse (r->fault, EMQP_ERR_TOO_LARGE,
                  "%s: %s frame too large (%zu bytes, max %zu)", r->command, field,
                  frame->size, max);
        return -1;
    }
    *out = zframe_new (frame->data, frame->size);
    if (!*out) {
        s_refuse (r->fault, EMQP_ERR_NO_MEMORY, "%s: out of memory", r->command);
        return -1;
    }
    return 0;
}

static int
s_number (s_reader_t *r, const char *field, uint64_t max, uint64_t *value)
{
    char *text = NULL;
    if (s_text (r, field, 32, false, &text))
        return -1;
    int rc = numparse_uint (text, max, value);
    if (rc) {
        s_refuse (r->fault, EMQP_ERR_MALFORMED,
                  "%s: %s '%s' is not a number in 0..%" PRIu64, r->command, field, text,
                  max);
        rc = -1;
    }
    free (text);
    return rc;
}

//  Parses a decimal seconds value "1795398200.0280507" (sign-less, finite).
static int
s_parse_seconds (const char *s, double *value)
{
    const char *p = s;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        digits++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            p++;
            digits++;
        }
    }
    if (*p || digits == 0)
        return -1;
    char *end;
    errno = 0;
    double v = strtod (s, &end);
    if (errno || *end || !isfinite (v))
        return -1;
    *value = v;
    return 0;
}

//  Parses a signed interval: "-1" or a decimal number of seconds.
static int
s_parse_interval (const char *s, int64_t *value)
{
    if (streq (s, "-1")) {
        *value = -1;
        return 0;
    }
    uint64_t v;
    if (numparse_uint (s, INT64_MAX, &v))
        return -1;
    *value = (int64_t) v;
    return 0;
}

//  Decodes a message from views of its frames (borrowed). See emqp_decode.
static emqp_msg_t *
s_decode (const s_view_t *frames, size_t count, bool with_identity,
          const emqp_limits_t *limits, zframe_t **identity_p, emqp_fault_t *fault)
{
    if (identity_p)
        *identity_p = NULL;
    emqp_msg_t *self = NULL;
    zframe_t *identity = NULL;
    char *command_name = NULL;
    //  The default reason, set on every message: a copy, not a format.
    fault->command = EMQP_INVALID;
    fault->code = EMQP_ERR_MALFORMED;
    strlcpy (fault->text, "malformed message", sizeof fault->text);

    s_reader_t reader = { frames, count, 0, limits, fault, "message" };
    s_reader_t *r = &reader;
    if (with_identity) {
        const s_view_t *frame = s_pop (r);
        if (!frame || frame->size == 0) {
            s_refuse (fault, EMQP_ERR_NO_IDENTITY, "message without routing identity");
            goto fail;
        }
        identity = zframe_new (frame->data, frame->size);
        if (!identity) {
            s_refuse (fault, EMQP_ERR_NO_MEMORY, "out of memory");
            goto fail;
        }
    }
    const s_view_t *frame = s_pop (r);
    if (!frame || frame->size != 0) {
        s_refuse (fault, EMQP_ERR_PROTOCOL, "first frame is not the empty delimiter");
        goto fail;
    }
    frame = s_pop (r);
    if (!frame || frame->size != strlen (EMQP_PROTOCOL)
        || memcmp (frame->data, EMQP_PROTOCOL, frame->size) != 0) {
        char shown[48];
        s_refuse (fault, EMQP_ERR_PROTOCOL,
                  "protocol frame is '%s', expected " EMQP_PROTOCOL,
                  frame ? emqp_printable (frame->data, frame->size, shown, sizeof shown)
                        : "(missing)");
        goto fail;
    }

    if (s_text (r, "command", 64, false, &command_name))
        goto fail;
    emqp_command_t command = emqp_command_lookup (command_name);
    if (command == EMQP_INVALID) {
        char shown[80];
        s_refuse (
            fault, EMQP_ERR_UNKNOWN_COMMAND, "unknown command '%s'",
            emqp_printable (command_name, strlen (command_name), shown, sizeof shown));
        goto fail;
    }
    fault->command = command;
    self = emqp_msg_new (command);
    if (!self) {
        s_refuse (fault, EMQP_ERR_NO_MEMORY, "%s: out of memory",
                  emqp_command_name (command));
        goto fail;
    }
    r->command = emqp_command_name (command);
    if (s_text (r, "msgid", EMQP_MSGID_MAX, false, &self->msgid))
        goto fail;

    char *text = NULL;
    uint64_t number;
    switch (command) {
        case EMQP_ACK:
            if (s_text (r, "acked msgid", EMQP_MSGID_MAX, false, &self->ref))
                goto fail;
            //  Extension: an emq router names itself in the ACK of an emq
            //  job manager's INFORM.
            if (s_left (r) > 0 && s_text (r, "agent", 64, true, &self->agent))
                goto fail;
            break;
        case EMQP_HEARTBEAT:
            if (s_text (r, "timestamp", 64, false, &text))
                goto fail;
            if (s_parse_seconds (text, &self->heartbeat_ts)) {
                s_refuse (fault, EMQP_ERR_MALFORMED,
                          "HEARTBEAT: timestamp '%s' is not decimal seconds", text);
                free (text);
                goto fail;
            }
            free (text);
            if (s_left (r) > 0 && s_text (r, "stats", EMQP_STATS_MAX, true, &self->stats))
                goto fail;
            break;
        case EMQP_DISCONNECT:
        case EMQP_KBYE:
        case EMQP_READY:
        case EMQP_HELLO:
        case EMQP_STATUS:
        case EMQP_ROUTER_SHOW_WORKERS:
        case EMQP_ROUTER_SHOW_SCHEDULERS:
            break;
        case EMQP_INFORM:
            if (s_text (r, "queues", EMQP_SHORT_MAX, true, &self->queues)
                || s_text (r, "type", 32, false, &self->peer_type))
                goto fail;
            if (s_left (r) > 0 && s_text (r, "agent", 64, true, &self->agent))
                goto fail;
            break;
        case EMQP_REQUEST:
            if (s_text (r, "queue", EMQP_QUEUE_MAX, false, &self->queue)
                || s_text (r, "headers", EMQP_HEADERS_MAX, true, &self->headers)
                || s_binary (r, "payload", &self->payload))
                goto fail;
            //  Extension: the router adds epoch and attempt for emq job managers.
            if (s_left (r) >= 2) {
                if (s_number (r, "epoch", UINT64_MAX, &self->epoch)
                    || s_number (r, "attempt", UINT32_MAX, &number))
                    goto fail;
                self->attempt = (uint32_t) number;
            }
            break;
        case EMQP_REPLY:
            if (s_binary (r, "reply", &self->payload))
                goto fail;
            if (s_left (r) > 0
                && s_text (r, "request msgid", EMQP_MSGID_MAX, false, &self->ref))
                goto fail;
            break;
        case EMQP_SCHEDULE:
        case EMQP_UNSCHEDULE:
            if (s_text (r, "queue", EMQP_QUEUE_MAX, false, &self->queue)
                || s_text (r, "headers", EMQP_HEADERS_MAX, true, &self->headers)
                || s_text (r, "interval", 32, false, &text))
                goto fail;
            if (s_parse_interval (text, &self->interval_s)) {
                s_refuse (fault, EMQP_ERR_MALFORMED,
                          "%s: interval '%s' is not -1 or seconds", r->command, text);
                free (text);
                goto fail;
            }
            free (text);
            if (s_binary (r, "payload", &self->payload)
                || s_text (r, "cron", 256, true, &self->cron))
                goto fail;
            break;
        case EMQP_DONE:
            if (s_text (r, "request msgid", EMQP_MSGID_MAX, false, &self->ref)
                || s_number (r, "epoch", UINT64_MAX, &self->epoch))
                goto fail;
            /* fall through */
        case EMQP_RESULT:
            if (command == EMQP_RESULT
                && s_text (r, "request msgid", EMQP_MSGID_MAX, false, &self->ref))
                goto fail;
            if (s_text (r, "status", 16, false, &text))
                goto fail;
            if (emqp_status_lookup (text, &self->status)) {
                s_refuse (fault, EMQP_ERR_MALFORMED, "%s: unknown status '%s'",
                          r->command, text);
                free (text);
                goto fail;
            }
            free (text);
            if (s_binary (r, "result", &self->payload)
                || s_text (r, "usage", EMQP_SHORT_MAX, true, &self->usage))
                goto fail;
            break;
        case EMQP_FETCH:
        case EMQP_DEAD_RETRY:
        case EMQP_DEAD_DELETE:
            if (s_text (r, "job msgid", EMQP_MSGID_MAX, false, &self->ref))
                goto fail;
            break;
        case EMQP_CANCEL:
            if (s_text (r, "job msgid", EMQP_MSGID_MAX, false, &self->ref))
                goto fail;
            if (s_left (r) > 0 && s_number (r, "epoch", UINT64_MAX, &self->epoch))
                goto fail;
            break;
        case EMQP_RETURN:
            if (s_text (r, "request msgid", EMQP_MSGID_MAX, false, &self->ref)
                || s_number (r, "epoch", UINT64_MAX, &self->epoch))
                goto fail;
            break;
        case EMQP_DEAD_LIST:
        case EMQP_DEAD_PURGE:
        case EMQP_FENCE_SHOW:
            break;
        case EMQP_FENCE_RESET:
            if (s_text (r, "scope", 64, true, &self->ref))
                goto fail;
            break;
        case EMQP_PUBLISH:
            //  EventMQ: topic, then the message (JSON there; any bytes here).
            if (s_text (r, "topic", EMQP_TOPIC_MAX, false, &self->topic)
                || s_binary (r, "message", &self->payload))
                goto fail;
            break;
        case EMQP_ADMIN:
            if (s_text (r, "request", EMQP_SHORT_MAX, false, &self->stats))
                goto fail;
            break;
        case EMQP_BATCH:
            //  Unpacked by emqp_batch_unpack: each message is checked then.
            {
                emqp_limits_t frame_limit = { .payload_max = EMQP_BATCH_FRAME_MAX };
                r->limits = &frame_limit;
                int rc = s_binary (r, "messages", &self->payload);
                r->limits = limits;
                if (rc)
                    goto fail;
            }
            break;
        case EMQP_ERROR:
            if (s_text (r, "refused msgid", EMQP_MSGID_MAX, true, &self->ref)
                || s_text (r, "code", 64, false, &self->error_code)
                || s_text (r, "reason", EMQP_SHORT_MAX, true, &self->error_text))
                goto fail;
            break;
        default:
            assert (false);  // every known command is handled above
    }
    free (command_name);
    self->identity = identity;
    fault->code = EMQP_ERR_NONE;
    fault->text[0] = 0;
    return self;

fail:
    free (command_name);
    emqp_msg_destroy (&self);
    if (identity_p)
        *identity_p = identity;
    else
        zframe_destroy (&identity);
    return NULL;
}

emqp_msg_t *
emqp_decode_fault (zmsg_t **zmsg_p, bool with_identity, const emqp_limits_t *limits,
                   zframe_t **identity_p, emqp_fault_t *fault)
{
    assert (zmsg_p);
    zmsg_t *zmsg = *zmsg_p;
    *zmsg_p = NULL;
    if (!zmsg) {
        if (identity_p)
            *identity_p = NULL;
        fault->command = EMQP_INVALID;
        s_refuse (fault, EMQP_ERR_MALFORMED, "malformed message");
        return NULL;
    }
    //  Frames past the view's size are trailing extensions we ignore.
    s_view_t frames[EMQP_FRAMES_MAX];
    size_t count = 0;
    for (zframe_t *frame = zmsg_first (zmsg); frame && count < EMQP_FRAMES_MAX;
         frame = zmsg_next (zmsg)) {
        frames[count].data = zframe_data (frame);
        frames[count].size = zframe_size (frame);
        count++;
    }
    emqp_msg_t *self = s_decode (frames, count, with_identity, limits, identity_p, fault);
    zmsg_destroy (&zmsg);
    return self;
}

emqp_msg_t *
emqp_decode (zmsg_t **zmsg_p, bool with_identity, const emqp_limits_t *limits,
             zframe_t **identity_p, char *err, size_t errlen)
{
    emqp_fault_t fault;
    emqp_msg_t *self =
        emqp_decode_fault (zmsg_p, with_identity, limits, identity_p, &fault);
    if (!self)
        strlcpy (err, fault.text, errlen);
    return self;
}

int
emqp_recv (zsock_t *sock, bool with_identity, const emqp_limits_t *limits,
           emqp_msg_t **msg_p, zframe_t **identity_p, emqp_fault_t *fault)
{
    *msg_p = NULL;
    if (identity_p)
        *identity_p = NULL;
    void *handle = zsock_resolve (sock);
    zmq_msg_t parts[EMQP_FRAMES_MAX];
    s_view_t frames[EMQP_FRAMES_MAX];
    size_t count = 0;
    bool more = true;
    //  The first frame decides whether a message is there at all; the rest
    //  of a multipart message arrives with it (ZeroMQ delivers it whole).
    while (more) {
        zmq_msg_t overflow;
        zmq_msg_t *part = count < EMQP_FRAMES_MAX ? &parts[count] : &overflow;
        zmq_msg_init (part);
        if (zmq_msg_recv (part, handle, count == 0 ? ZMQ_DONTWAIT : 0) == -1) {
            int saved = errno;
            zmq_msg_close (part);
            for (size_t i = 0; i < count && i < EMQP_FRAMES_MAX; i++)
                zmq_msg_close (&parts[i]);
            if (count == 0 && (saved == EAGAIN || saved == EINTR))
                return 0;
            fault->command = EMQP_INVALID;
            return s_refuse (fault, EMQP_ERR_RECEIVE, "receive failed: %s",
                             zmq_strerror (saved));
        }
        more = zmq_msg_more (part);
        if (part == &overflow)
            zmq_msg_close (&overflow);  // frames past the limit are dropped
        else
            count++;
    }
    for (size_t i = 0; i < count; i++) {
        frames[i].data = zmq_msg_data (&parts[i]);
        frames[i].size = zmq_msg_size (&parts[i]);
    }
    *msg_p = s_decode (frames, count, with_identity, limits, identity_p, fault);
    //  A property the connection's authenticator attached (CURVE: from the
    //  peer's certificate), read off a frame the peer sent: a ROUTER's
    //  routing-id frame lacks it when the socket was polled first.
    size_t sent = with_identity && count > 1 ? 1 : 0;
    if (*msg_p && limits && limits->meta_property && count > 0) {
        const char *value = zmq_msg_gets (&parts[sent], limits->meta_property);
        (*msg_p)->meta = value ? strdup (value) : NULL;
    }
    if (*msg_p && limits && limits->peer_address && count > 0) {
        const char *value = zmq_msg_gets (&parts[sent], "Peer-Address");
        (*msg_p)->peer_address = value && *value ? strdup (value) : NULL;
    }
    for (size_t i = 0; i < count; i++)
        zmq_msg_close (&parts[i]);
    return *msg_p ? 1 : -1;
}

//  --------------------------------------------------------------------------
//  Encoding. s_layout lays a message out as a list of frames that borrow the
//  message's strings and own its binary frames (moved out of it); encode
//  turns the list into a zmsg_t, send writes it straight to the socket with
//  no intermediate allocation and no copy of payloads.

#define S_FRAMES_MAX 16

typedef struct {
    struct {
        const void *data;  // borrowed text, or NULL for a frame
        size_t size;
        zframe_t *frame;  // owned binary frame (identity, payload)
    } item[S_FRAMES_MAX];
    size_t count;
    char numbers[3][32];  // formatted numbers live here
    size_t numbers_used;
    char msgid[37];  // a fresh msgid when the message had none
} s_frames_t;

static int
s_put_str (s_frames_t *f, const char *s)
{
    if (!s || f->count == S_FRAMES_MAX)
        return -1;
    f->item[f->count].data = s;
    f->item[f->count].size = strlen (s);
    f->item[f->count].frame = NULL;
    f->count++;
    return 0;
}

static int
s_put_frame (s_frames_t *f, zframe_t **frame_p)
{
    if (!*frame_p || f->count == S_FRAMES_MAX)
        return -1;
    f->item[f->count].data = NULL;
    f->item[f->count].size = 0;
    f->item[f->count].frame = *frame_p;
    *frame_p = NULL;
    f->count++;
    return 0;
}

static int
s_put_number (s_frames_t *f, const char *format, ...)
{
    if (f->numbers_used == 3)
        return -1;
    char *buf = f->numbers[f->numbers_used++];
    va_list args;
    va_start (args, format);
    vsnprintf (buf, sizeof f->numbers[0], format, args);
    va_end (args);
    return s_put_str (f, buf);
}

static void
s_frames_clear (s_frames_t *f)
{
    for (size_t i = 0; i < f->count; i++)
        zframe_destroy (&f->item[i].frame);
    f->count = 0;
}

//  Returns 0, or -1 if a field the command needs is missing (then the
//  frames already taken are released by s_frames_clear).
static int
s_layout (emqp_msg_t *self, s_frames_t *f)
{
    f->count = 0;
    f->numbers_used = 0;
    if (self->identity && s_put_frame (f, &self->identity))
        return -1;
    if (!self->msgid)
        emqp_msgid_new (f->msgid);
    if (s_put_str (f, "") || s_put_str (f, EMQP_PROTOCOL)
        || s_put_str (f, emqp_command_name (self->command))
        || s_put_str (f, self->msgid ? self->msgid : f->msgid))
        return -1;

    int rc = 0;
    switch (self->command) {
        case EMQP_ACK:
            rc = s_put_str (f, self->ref);
            if (!rc && self->agent)
                rc = s_put_str (f, self->agent);
            break;
        case EMQP_HEARTBEAT:
            rc = s_put_number (f, "%.6f", self->heartbeat_ts);
            if (!rc && self->stats)
                rc = s_put_str (f, self->stats);
            break;
        case EMQP_DISCONNECT:
        case EMQP_KBYE:
        case EMQP_READY:
        case EMQP_HELLO:
        case EMQP_STATUS:
        case EMQP_ROUTER_SHOW_WORKERS:
        case EMQP_ROUTER_SHOW_SCHEDULERS:
        case EMQP_DEAD_LIST:
        case EMQP_DEAD_PURGE:
        case EMQP_FENCE_SHOW:
            break;
        case EMQP_INFORM:
            rc = s_put_str (f, self->queues ? self->queues : "");
            rc = rc ? rc : s_put_str (f, self->peer_type);
            if (!rc && self->agent)
                rc = s_put_str (f, self->agent);
            break;
        case EMQP_REQUEST:
            rc = s_put_str (f, self->queue);
            rc = rc ? rc : s_put_str (f, self->headers ? self->headers : "");
            rc = rc ? rc : s_put_frame (f, &self->payload);
            if (!rc && self->epoch) {
                rc = s_put_number (f, "%" PRIu64, self->epoch);
                rc = rc ? rc : s_put_number (f, "%" PRIu32, self->attempt);
            }
            break;
        case EMQP_REPLY:
            rc = s_put_frame (f, &self->payload);
            if (!rc && self->ref)
                rc = s_put_str (f, self->ref);
            break;
        case EMQP_SCHEDULE:
        case EMQP_UNSCHEDULE:
            rc = s_put_str (f, self->queue);
            rc = rc ? rc : s_put_str (f, self->headers ? self->headers : "");
            rc = rc ? rc : s_put_number (f, "%" PRId64, self->interval_s);
            rc = rc ? rc : s_put_frame (f, &self->payload);
            rc = rc ? rc : s_put_str (f, self->cron ? self->cron : "");
            break;
        case EMQP_DONE:
        case EMQP_RESULT:
            rc = s_put_str (f, self->ref);
            if (!rc && self->command == EMQP_DONE)
                rc = s_put_number (f, "%" PRIu64, self->epoch);
            rc = rc ? rc : s_put_str (f, emqp_status_name (self->status));
            if (!rc && !self->payload)
                self->payload = zframe_new (NULL, 0);
            rc = rc ? rc : s_put_frame (f, &self->payload);
            rc = rc ? rc : s_put_str (f, self->usage ? self->usage : "");
            break;
        case EMQP_FETCH:
        case EMQP_DEAD_RETRY:
        case EMQP_DEAD_DELETE:
        case EMQP_FENCE_RESET:
            rc = s_put_str (f, self->ref);
            break;
        case EMQP_CANCEL:
            rc = s_put_str (f, self->ref);
            if (!rc && self->epoch)
                rc = s_put_number (f, "%" PRIu64, self->epoch);
            break;
        case EMQP_ADMIN:
            rc = s_put_str (f, self->stats);
            break;
        case EMQP_RETURN:
            rc = s_put_str (f, self->ref);
            rc = rc ? rc : s_put_number (f, "%" PRIu64, self->epoch);
            break;
        case EMQP_BATCH:
            rc = s_put_frame (f, &self->payload);
            break;
        case EMQP_PUBLISH:
            rc = s_put_str (f, self->topic);
            rc = rc ? rc : s_put_frame (f, &self->payload);
            break;
        case EMQP_ERROR:
            rc = s_put_str (f, self->ref ? self->ref : "");
            rc = rc ? rc : s_put_str (f, self->error_code);
            rc = rc ? rc : s_put_str (f, self->error_text ? self->error_text : "");
            break;
        default:
            rc = -1;
    }
    return rc;
}

zmsg_t *
emqp_encode (emqp_msg_t *self)
{
    assert (self);
    s_frames_t f;
    zmsg_t *zmsg = NULL;
    if (s_layout (self, &f) == 0 && (zmsg = zmsg_new ())) {
        for (size_t i = 0; i < f.count; i++)
            if (f.item[i].frame)
                zmsg_append (zmsg, &f.item[i].frame);
            else
                zmsg_addmem (zmsg, f.item[i].data, f.item[i].size);
    }
    s_frames_clear (&f);
    return zmsg;
}

int
emqp_send (emqp_msg_t **self_p, zsock_t *sock)
{
    assert (self_p && *self_p);
    emqp_msg_t *self = *self_p;
    s_frames_t f;
    if (s_layout (self, &f)) {
        s_frames_clear (&f);
        emqp_msg_destroy (self_p);
        errno = EINVAL;
        return -1;
    }
    //  DONTWAIT so a full pipe or a vanished ROUTER peer is reported, never
    //  blocks. A multipart message is atomic: only the first frame can fail,
    //  and then nothing was sent.
    void *handle = zsock_resolve (sock);
    int rc = 0;
    for (size_t i = 0; i < f.count && rc == 0; i++) {
        bool more = i + 1 < f.count;
        if (f.item[i].frame) {
            rc = zframe_send (&f.item[i].frame, handle,
                              ZFRAME_DONTWAIT | (more ? ZFRAME_MORE : 0));
        }
        else
            rc = zmq_send (handle, f.item[i].data, f.item[i].size,
                           ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0))
                         == -1
                     ? -1
                     : 0;
    }
    int saved = errno;
    s_frames_clear (&f);
    emqp_msg_destroy (self_p);
    errno = saved;
    return rc;
}

//  --------------------------------------------------------------------------
//  Batches

struct emqp_batch_t {
    emqp_msg_t *first;     // a lone message, kept as it is until a
                           // second one comes (then packed)
    msgpack_sbuffer sbuf;  // the packed messages after the first two
    msgpack_packer pk;
    size_t count;
    bool always;  // a lone message as a BATCH too
};

emqp_batch_t *
emqp_batch_new (void)
{
    emqp_batch_t *self = calloc (1, sizeof (emqp_batch_t));
    if (!self)
        return NULL;
    msgpack_sbuffer_init (&self->sbuf);
    msgpack_packer_init (&self->pk, &self->sbuf, msgpack_sbuffer_write);
    return self;
}

void
emqp_batch_destroy (emqp_batch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    emqp_batch_t *self = *self_p;
    emqp_msg_destroy (&self->first);
    msgpack_sbuffer_destroy (&self->sbuf);
    free (self);
    *self_p = NULL;
}

//  Packs one message's frames after the protocol frame as an array of bin.
static int
s_batch_pack (emqp_batch_t *self, emqp_msg_t **msg_p)
{
    emqp_msg_t *msg = *msg_p;
    zframe_destroy (&msg->identity);
    s_frames_t f;
    int rc = s_layout (msg, &f);
    if (rc == 0) {
        //  Frames 0 and 1 are the delimiter and the protocol.
        msgpack_pack_array (&self->pk, f.count - 2);
        for (size_t i = 2; i < f.count; i++) {
            const void *data =
                f.item[i].frame ? zframe_data (f.item[i].frame) : f.item[i].data;
            size_t size =
                f.item[i].frame ? zframe_size (f.item[i].frame) : f.item[i].size;
            msgpack_pack_bin (&self->pk, size);
            msgpack_pack_bin_body (&self->pk, data, size);
        }
    }
    s_frames_clear (&f);
    emqp_msg_destroy (msg_p);
    return rc;
}

int
emqp_batch_add (emqp_batch_t *self, emqp_msg_t **msg_p)
{
    assert (self && msg_p && *msg_p);
    if (self->count == 0) {
        self->first = *msg_p;
        *msg_p = NULL;
        self->count = 1;
        return 0;
    }
    if (self->first) {
        emqp_msg_t *first = self->first;
        self->first = NULL;
        if (s_batch_pack (self, &first))
            self->count--;  // cannot happen: it was laid out when added
    }
    if (s_batch_pack (self, msg_p))
        return -1;
    self->count++;
    return 0;
}

size_t
emqp_batch_size (const emqp_batch_t *self)
{
    return self->count;
}

void
emqp_batch_set_always (emqp_batch_t *self, bool always)
{
    self->always = always;
}

bool
emqp_batch_takes (const emqp_msg_t *msg)
{
    return !msg->payload || zframe_size (msg->payload) <= EMQP_BATCH_ITEM_MAX;
}

bool
emqp_batch_full (const emqp_batch_t *self)
{
    return self->count >= EMQP_BATCH_MAX || self->sbuf.size >= EMQP_BATCH_BYTES;
}

int
emqp_batch_send (emqp_batch_t *self, zsock_t *sock, zframe_t *identity)
{
    assert (self);
    if (self->count == 0)
        return 0;
    if (self->first && self->always) {
        emqp_msg_t *first = self->first;
        self->first = NULL;
        if (s_batch_pack (self, &first)) {
            self->count = 0;
            errno = EINVAL;
            return -1;
        }
    }
    emqp_msg_t *msg = self->first;
    self->first = NULL;
    if (!msg) {
        msg = emqp_msg_new (EMQP_BATCH);
        //  The array header goes in front of the packed messages.
        char head[8];
        msgpack_sbuffer hbuf = { .size = 0, .data = head, .alloc = sizeof head };
        msgpack_packer hpk;
        msgpack_packer_init (&hpk, &hbuf, msgpack_sbuffer_write);
        msgpack_pack_array (&hpk, (uint32_t) self->count);
        //  hbuf never grows: an array header is at most 5 bytes.
        zframe_t *frame = msg ? zframe_new (NULL, hbuf.size + self->sbuf.size) : NULL;
        if (frame) {
            memcpy (zframe_data (frame), hbuf.data, hbuf.size);
            memcpy (zframe_data (frame) + hbuf.size, self->sbuf.data, self->sbuf.size);
        }
        if (msg)
            msg->payload = frame;
        msgpack_sbuffer_clear (&self->sbuf);
        if (!frame) {
            emqp_msg_destroy (&msg);
            self->count = 0;
            errno = ENOMEM;
            return -1;
        }
    }
    self->count = 0;
    zframe_destroy (&msg->identity);
    msg->identity = identity ? zframe_dup (identity) : NULL;
    return emqp_send (&msg, sock);
}

//  One packed message as a failed one: its msgid (when readable), why, and
//  the wire word for the ERROR that answers it.
static emqp_msg_t *
s_batch_invalid (const s_view_t *frames, size_t count, const char *reason,
                 emqp_error_t code)
{
    emqp_msg_t *msg = emqp_msg_new (EMQP_INVALID);
    if (!msg)
        return NULL;
    if (count > 1 && frames[1].size > 0 && frames[1].size <= EMQP_MSGID_MAX
        && s_is_utf8 (frames[1].data, frames[1].size)
        && !memchr (frames[1].data, 0, frames[1].size))
        msg->msgid = strndup (frames[1].data, frames[1].size);
    msg->error_text = strdup (reason);
    msg->error_code = strdup (emqp_error_word (code));
    return msg;
}

emqp_msg_t **
emqp_batch_unpack (const emqp_msg_t *batch, const emqp_limits_t *limits, size_t *count,
                   char *err, size_t errlen)
{
    *count = 0;
    if (!batch->payload) {
        snprintf (err, errlen, "BATCH: no messages frame");
        return NULL;
    }
    //  msgpack-c reserves memory for whatever count a container claims: a
    //  few bytes claiming 2^32 items would have it ask for 128 GiB. Walk
    //  the bytes first: counts must fit in the bytes left. (Nesting is
    //  left to msgpack-c's own limit, so a message with a bad frame is
    //  refused alone, below.)
    char why[200];
    if (payload_msgpack_check (zframe_data (batch->payload), zframe_size (batch->payload),
                               PAYLOAD_DEPTH_MAX, why, sizeof why)) {
        snprintf (err, errlen, "BATCH: messages frame is not well-formed msgpack: %s",
                  why);
        return NULL;
    }
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    int rc = msgpack_unpack_next (&result, (const char *) zframe_data (batch->payload),
                                  zframe_size (batch->payload), &offset);
    msgpack_object *root = &result.data;
    if (rc != MSGPACK_UNPACK_SUCCESS || root->type != MSGPACK_OBJECT_ARRAY
        || root->via.array.size == 0 || root->via.array.size > EMQP_BATCH_MAX
        || offset != zframe_size (batch->payload)) {
        snprintf (err, errlen,
                  "BATCH: messages frame is not a msgpack array of 1..%d "
                  "messages",
                  EMQP_BATCH_MAX);
        msgpack_unpacked_destroy (&result);
        return NULL;
    }
    size_t total = root->via.array.size;
    emqp_msg_t **msgs = calloc (total, sizeof (emqp_msg_t *));
    if (!msgs) {
        snprintf (err, errlen, "BATCH: out of memory");
        msgpack_unpacked_destroy (&result);
        return NULL;
    }
    size_t made = 0;
    for (size_t i = 0; i < total; i++) {
        msgpack_object *item = &root->via.array.ptr[i];
        //  The delimiter and the protocol are implied.
        s_view_t frames[EMQP_FRAMES_MAX] = { { "", 0 },
                                             { EMQP_PROTOCOL, strlen (EMQP_PROTOCOL) } };
        size_t nframes = 2;
        const char *bad = NULL;
        if (item->type != MSGPACK_OBJECT_ARRAY || item->via.array.size < 2)
            bad = "BATCH: a message is not an array of at least 2 frames";
        for (size_t k = 0; !bad && k < item->via.array.size && nframes < EMQP_FRAMES_MAX;
             k++) {
            msgpack_object *frame = &item->via.array.ptr[k];
            if (frame->type == MSGPACK_OBJECT_BIN)
                frames[nframes++] = (s_view_t){ frame->via.bin.ptr, frame->via.bin.size };
            else if (frame->type == MSGPACK_OBJECT_STR)
                frames[nframes++] = (s_view_t){ frame->via.str.ptr, frame->via.str.size };
            else
                bad = "BATCH: a frame is not bin or str";
        }
        emqp_fault_t fault = { .code = EMQP_ERR_MALFORMED };
        emqp_msg_t *msg = NULL;
        if (!bad) {
            msg = s_decode (frames, nframes, false, limits, NULL, &fault);
            if (msg && msg->command == EMQP_BATCH) {
                emqp_msg_destroy (&msg);
                fault.code = EMQP_ERR_MALFORMED;
                snprintf (fault.text, sizeof fault.text, "BATCH: a batch inside a batch");
            }
            if (!msg)
                bad = fault.text;
        }
        if (bad)
            msg = s_batch_invalid (frames + 2, nframes - 2, bad, fault.code);
        if (!msg)
            continue;  // out of memory: that message is lost here
        msg->identity = batch->identity ? zframe_dup (batch->identity) : NULL;
        msg->meta = batch->meta ? strdup (batch->meta) : NULL;
        msg->peer_address = batch->peer_address ? strdup (batch->peer_address) : NULL;
        msgs[made++] = msg;
    }
    msgpack_unpacked_destroy (&result);
    *count = made;
    return msgs;
}

//  Message ids come from a per-thread random stream: getrandom seeds it
//  once; the stream is xoshiro256** so a message id costs no system call.
static _Thread_local uint64_t s_rng[4];
static _Thread_local bool s_rng_seeded;
static pthread_once_t s_rng_atfork = PTHREAD_ONCE_INIT;

//  A forked child must not continue its parent's stream (the handler runs
//  in the one thread the child has).
static void
s_rng_forked (void)
{
    s_rng_seeded = false;
}

static void
s_rng_register_atfork (void)
{
    pthread_atfork (NULL, NULL, s_rng_forked);
}

static uint64_t
s_rotl (uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t
s_rng_next (void)
{
    //  Reseed after fork so parent and child never share a stream (no
    //  getpid per id: a system call each since glibc stopped caching it).
    pthread_once (&s_rng_atfork, s_rng_register_atfork);
    if (!s_rng_seeded) {
        if (getrandom (s_rng, sizeof s_rng, 0) != (ssize_t) sizeof s_rng) {
            //  Fall back on time and pid; ids stay unique enough per process.
            s_rng[0] = (uint64_t) zclock_usecs ();
            s_rng[1] = (uint64_t) getpid () * 0x9E3779B97F4A7C15ULL;
            s_rng[2] = s_rng[0] ^ 0xD1B54A32D192ED03ULL;
            s_rng[3] = s_rng[1] ^ 0xABCDEF0123456789ULL;
        }
        s_rng_seeded = true;
    }
    uint64_t result = s_rotl (s_rng[1] * 5, 7) * 9;
    uint64_t t = s_rng[1] << 17;
    s_rng[2] ^= s_rng[0];
    s_rng[3] ^= s_rng[1];
    s_rng[1] ^= s_rng[2];
    s_rng[0] ^= s_rng[3];
    s_rng[2] ^= t;
    s_rng[3] = s_rotl (s_rng[3], 45);
    return result;
}

//  A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit
//  counter that keeps one thread's ids rising within a millisecond, then
//  random bits. Ids that rise with time are appended to the store's msgid
//  index instead of landing on a random page of it: fewer pages to write
//  per commit. Peers only need them unique; EventMQ's uuid4s mix freely.
static _Thread_local uint64_t s_v7_ms;
static _Thread_local unsigned s_v7_seq;

void
emqp_msgid_new (char buf[37])
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
    uint64_t a = s_rng_next (), c = s_rng_next ();
    if (ms > s_v7_ms) {
        s_v7_ms = ms;
        s_v7_seq = (unsigned) (a & 0x7FF);  // a random start, room to count up
    }
    else if (++s_v7_seq > 0xFFF) {
        s_v7_ms++;  // borrow the next millisecond rather than repeat
        s_v7_seq = 0;
    }
    ms = s_v7_ms;
    uint8_t b[16];
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t) (ms >> (40 - 8 * i));
    b[6] = (uint8_t) (0x70 | (s_v7_seq >> 8));  // version 7
    b[7] = (uint8_t) (s_v7_seq & 0xFF);
    memcpy (b + 8, &c, 8);
    b[8] = (b[8] & 0x3F) | 0x80;  // RFC 4122 variant
    static const char hex[] = "0123456789abcdef";
    char *p = buf;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 15];
    }
    *p = 0;
}

const char *
emqp_printable (const void *data, size_t size, char *buf, size_t buflen)
{
    assert (buflen >= 4);
    const unsigned char *s = data;
    size_t out = 0;
    for (size_t i = 0; i < size; i++) {
        if (out + 4 >= buflen) {
            memcpy (buf + out, "...", 3);
            out += 3;
            break;
        }
        buf[out++] = (s[i] >= 0x20 && s[i] < 0x7F) ? (char) s[i] : '?';
    }
    buf[out] = 0;
    return buf;
}

//  --------------------------------------------------------------------------
//  Self test. Covers every rejection the decoder makes, a round trip of every
//  command (extensions included), emqp_send, message ids, and all of
//  EventMQ 0.3.13's captured messages (shared/vectors/eventmq-0.3.13.json).

#include "tests/testutil.h"

#include <jansson.h>
#include <limits.h>
#include <sys/wait.h>

//  Builds a message from text frames; frames[] is NULL-terminated. identity
//  (binary, may be NULL) goes first.
static zmsg_t *
s_test_zmsg (const char *identity, const char *command, const char *msgid,
             const char *const frames[])
{
    zmsg_t *zmsg = zmsg_new ();
    if (identity)
        zmsg_addstr (zmsg, identity);
    zmsg_addmem (zmsg, "", 0);
    zmsg_addstr (zmsg, EMQP_PROTOCOL);
    if (command)
        zmsg_addstr (zmsg, command);
    if (command && msgid)
        zmsg_addstr (zmsg, msgid);
    for (size_t i = 0; command && msgid && frames && frames[i]; i++)
        zmsg_addstr (zmsg, frames[i]);
    return zmsg;
}

//  Decodes zmsg (taken) and expects a rejection whose reason contains
//  reason; reports the case name on failure.
static void
s_test_reject (const char *name, zmsg_t *zmsg, bool with_identity,
               const emqp_limits_t *limits, const char *reason, bool verbose)
{
    emqp_fault_t fault;
    zframe_t *identity = NULL;
    emqp_msg_t *msg = emqp_decode_fault (&zmsg, with_identity, limits, &identity, &fault);
    CHECK (zmsg == NULL);
    if (msg)
        fprintf (stderr, "emqp_test: case '%s' decoded, expected rejection '%s'\n", name,
                 reason);
    CHECK (msg == NULL);
    CHECK_CONTAINS (fault.text, reason);
    //  The code says what the text says: what routers answered by reading
    //  the text before there was a code.
    CHECK (fault.code != EMQP_ERR_NONE && fault.code != EMQP_ERR_RECEIVE);
    CHECK_EQ (fault.code == EMQP_ERR_TOO_LARGE, strstr (fault.text, "too large") != NULL);
    CHECK_STREQ (emqp_error_word (fault.code),
                 strstr (fault.text, "too large") ? "TOO_LARGE" : "BAD_FRAME");
    CHECK_EQ (fault.command == EMQP_ERROR, strncmp (fault.text, "ERROR: ", 7) == 0);
    if (verbose)
        printf ("\n   %-34s -> %s: %s", name, emqp_error_name (fault.code), fault.text);
    emqp_msg_destroy (&msg);
    zframe_destroy (&identity);
}

//  Decodes zmsg (taken) and expects success; caller owns the result.
static emqp_msg_t *
s_test_accept (const char *name, zmsg_t *zmsg, bool with_identity,
               const emqp_limits_t *limits)
{
    char err[256] = "";
    emqp_msg_t *msg = emqp_decode (&zmsg, with_identity, limits, NULL, err, sizeof err);
    if (!msg)
        fprintf (stderr, "emqp_test: case '%s' rejected: %s\n", name, err);
    CHECK (msg != NULL);
    return msg;
}

//  The smallest valid frames after the msgid, per command.
typedef struct {
    emqp_command_t command;
    const char *frames[8];
} s_test_layout_t;

static const s_test_layout_t s_test_layouts[] = {
    { EMQP_ACK, { "acked-id", NULL } },
    { EMQP_HEARTBEAT, { "1795398200.0280507", NULL } },
    { EMQP_DISCONNECT, { NULL } },
    { EMQP_KBYE, { NULL } },
    { EMQP_READY, { NULL } },
    { EMQP_INFORM, { "[[10, \"default\"]]", "worker", NULL } },
    { EMQP_REQUEST, { "default", "reply-requested", "[\"run\", {}]", NULL } },
    { EMQP_REPLY, { "{\"value\": 5}", NULL } },
    { EMQP_SCHEDULE, { "default", "guarantee", "60", "[\"run\", {}]", "", NULL } },
    { EMQP_UNSCHEDULE,
      { "default", "guarantee", "-1", "[\"run\", {}]", "* * * * *", NULL } },
    { EMQP_HELLO, { NULL } },
    { EMQP_STATUS, { NULL } },
    { EMQP_ROUTER_SHOW_WORKERS, { NULL } },
    { EMQP_ROUTER_SHOW_SCHEDULERS, { NULL } },
    { EMQP_DONE,
      { "req-id", "7", "ok", "result", "wall_us=1 cpu_us=1 maxrss_kb=1", NULL } },
    { EMQP_RESULT, { "req-id", "failed", "boom", "", NULL } },
    { EMQP_ERROR, { "req-id", "QUEUE_FULL", "queue default is full", NULL } },
    { EMQP_FETCH, { "req-id", NULL } },
    { EMQP_CANCEL, { "req-id", NULL } },
    { EMQP_DEAD_LIST, { NULL } },
    { EMQP_DEAD_RETRY, { "*", NULL } },
    { EMQP_DEAD_DELETE, { "dead-1", NULL } },
    { EMQP_DEAD_PURGE, { NULL } },
    { EMQP_RETURN, { "req-id", "9", NULL } },
    { EMQP_BATCH, { "\x91\x92\xc4\x05READY\xc4\x02m1", NULL } },
    { EMQP_PUBLISH, { "news", "{\"a\": 1}", NULL } },
    { EMQP_ADMIN, { "{\"command\":\"jobs\"}", NULL } },
    { EMQP_FENCE_SHOW, { NULL } },
    { EMQP_FENCE_RESET, { "etcd:1a2b", NULL } },
};
#define S_TEST_LAYOUTS (sizeof s_test_layouts / sizeof s_test_layouts[0])

static const s_test_layout_t *
s_test_layout (emqp_command_t command)
{
    for (size_t i = 0; i < S_TEST_LAYOUTS; i++)
        if (s_test_layouts[i].command == command)
            return &s_test_layouts[i];
    return NULL;
}

//  A text slot: command, index of the frame after the msgid (-1 = the msgid
//  itself), its size limit. Slots past a command's layout are optional
//  trailing frames (stats, agent, REPLY's ref).
typedef struct {
    emqp_command_t command;
    int index;
    size_t max;
    const char *field;
} s_test_slot_t;

static const s_test_slot_t s_test_slots[] = {
    { EMQP_READY, -1, EMQP_MSGID_MAX, "msgid" },
    { EMQP_ACK, 0, EMQP_MSGID_MAX, "acked msgid" },
    { EMQP_HEARTBEAT, 1, EMQP_STATS_MAX, "stats" },
    { EMQP_INFORM, 0, EMQP_SHORT_MAX, "queues" },
    { EMQP_INFORM, 1, 32, "type" },
    { EMQP_INFORM, 2, 64, "agent" },
    { EMQP_REQUEST, 0, EMQP_QUEUE_MAX, "queue" },
    { EMQP_REQUEST, 1, EMQP_HEADERS_MAX, "headers" },
    { EMQP_REPLY, 1, EMQP_MSGID_MAX, "request msgid" },
    { EMQP_SCHEDULE, 0, EMQP_QUEUE_MAX, "queue" },
    { EMQP_SCHEDULE, 1, EMQP_HEADERS_MAX, "headers" },
    { EMQP_SCHEDULE, 4, 256, "cron" },
    { EMQP_UNSCHEDULE, 0, EMQP_QUEUE_MAX, "queue" },
    { EMQP_UNSCHEDULE, 4, 256, "cron" },
    { EMQP_DONE, 0, EMQP_MSGID_MAX, "request msgid" },
    { EMQP_DONE, 4, EMQP_SHORT_MAX, "usage" },
    { EMQP_RESULT, 0, EMQP_MSGID_MAX, "request msgid" },
    { EMQP_RESULT, 3, EMQP_SHORT_MAX, "usage" },
    { EMQP_ERROR, 0, EMQP_MSGID_MAX, "refused msgid" },
    { EMQP_ERROR, 1, 64, "code" },
    { EMQP_ERROR, 2, EMQP_SHORT_MAX, "reason" },
    { EMQP_FETCH, 0, EMQP_MSGID_MAX, "job msgid" },
    { EMQP_CANCEL, 0, EMQP_MSGID_MAX, "job msgid" },
    { EMQP_DEAD_RETRY, 0, EMQP_MSGID_MAX, "job msgid" },
    { EMQP_DEAD_DELETE, 0, EMQP_MSGID_MAX, "job msgid" },
    { EMQP_RETURN, 0, EMQP_MSGID_MAX, "request msgid" },
    { EMQP_ADMIN, 0, EMQP_SHORT_MAX, "request" },
    { EMQP_ACK, 1, 64, "agent" },
    { EMQP_PUBLISH, 0, EMQP_TOPIC_MAX, "topic" },
};
#define S_TEST_SLOTS (sizeof s_test_slots / sizeof s_test_slots[0])

//  Builds the command's minimal message with the slot's frame replaced by
//  (data, size) — appended when the slot is an optional trailing frame.
static zmsg_t *
s_test_slot_zmsg (const s_test_slot_t *slot, const void *data, size_t size)
{
    const s_test_layout_t *layout = s_test_layout (slot->command);
    zmsg_t *zmsg = zmsg_new ();
    zmsg_addmem (zmsg, "", 0);
    zmsg_addstr (zmsg, EMQP_PROTOCOL);
    zmsg_addstr (zmsg, emqp_command_name (slot->command));
    if (slot->index == -1)
        zmsg_addmem (zmsg, data, size);
    else
        zmsg_addstr (zmsg, "msg-1");
    int i = 0;
    for (; layout->frames[i]; i++) {
        if (i == slot->index)
            zmsg_addmem (zmsg, data, size);
        else
            zmsg_addstr (zmsg, layout->frames[i]);
    }
    if (slot->index >= i)
        zmsg_addmem (zmsg, data, size);
    return zmsg;
}

//  The text field a slot lands in, for length checks.
static const char *
s_test_slot_value (const emqp_msg_t *msg, const s_test_slot_t *slot)
{
    const char *field = slot->field;
    if (streq (field, "msgid"))
        return msg->msgid;
    if (streq (field, "stats") || streq (field, "request"))
        return msg->stats;
    if (streq (field, "queues"))
        return msg->queues;
    if (streq (field, "type"))
        return msg->peer_type;
    if (streq (field, "agent"))
        return msg->agent;
    if (streq (field, "queue"))
        return msg->queue;
    if (streq (field, "headers"))
        return msg->headers;
    if (streq (field, "cron"))
        return msg->cron;
    if (streq (field, "usage"))
        return msg->usage;
    if (streq (field, "code"))
        return msg->error_code;
    if (streq (field, "reason"))
        return msg->error_text;
    if (streq (field, "topic"))
        return msg->topic;
    return msg->ref;
}

//  Expects zmsg's frames to be exactly texts[] (NULL-terminated), without
//  an identity frame.
static void
s_test_frames (zmsg_t *zmsg, const char *const texts[])
{
    size_t count = 0;
    while (texts[count])
        count++;
    CHECK_EQ (zmsg_size (zmsg), count);
    zframe_t *frame = zmsg_first (zmsg);
    for (size_t i = 0; i < count && frame; i++, frame = zmsg_next (zmsg))
        CHECK_MEMEQ (zframe_data (frame), zframe_size (frame), texts[i],
                     strlen (texts[i]));
}

//  Builds round-trip case n (0..S_TEST_CASES-1) with every field it encodes
//  set explicitly; returns NULL past the last case.
#define S_TEST_CASES 44
static emqp_msg_t *
s_test_case (int n)
{
    static const char payload[] = { '\x92', '\xa3', 'r', 'u', 'n', '\x00', '\xff' };
    emqp_msg_t *m = NULL;
    char id[32];
    snprintf (id, sizeof id, "case-%d", n);
    switch (n) {
        case 0:
            m = emqp_msg_new (EMQP_ACK);
            m->ref = strdup ("acked-1");
            break;
        case 1:
            m = emqp_msg_new (EMQP_HEARTBEAT);
            m->heartbeat_ts = 1795398200.028051;
            break;
        case 2:
            m = emqp_msg_new (EMQP_HEARTBEAT);
            m->heartbeat_ts = 0;
            m->stats = strdup ("{\"jobs_in_flight\":2,\"total_requests\":10}");
            break;
        case 3:
            m = emqp_msg_new (EMQP_DISCONNECT);
            break;
        case 4:
            m = emqp_msg_new (EMQP_KBYE);
            break;
        case 5:
            m = emqp_msg_new (EMQP_READY);
            break;
        case 6:
            m = emqp_msg_new (EMQP_HELLO);
            break;
        case 7:
            m = emqp_msg_new (EMQP_STATUS);
            break;
        case 8:
            m = emqp_msg_new (EMQP_ROUTER_SHOW_WORKERS);
            break;
        case 9:
            m = emqp_msg_new (EMQP_ROUTER_SHOW_SCHEDULERS);
            break;
        case 10:
            m = emqp_msg_new (EMQP_INFORM);
            m->queues = strdup ("[[20, \"heavy\"], [10, \"default\"]]");
            m->peer_type = strdup ("worker");
            break;
        case 11:
            m = emqp_msg_new (EMQP_INFORM);
            m->queues = strdup ("");
            m->peer_type = strdup ("scheduler");
            break;
        case 12:
            m = emqp_msg_new (EMQP_INFORM);
            m->queues = strdup ("[[10,\"default\"]]");
            m->peer_type = strdup ("worker");
            m->agent = strdup ("emq/1");
            break;
        case 13:
            m = emqp_msg_new (EMQP_REQUEST);
            m->queue = strdup ("default");
            m->headers = strdup ("");
            m->payload = zframe_new ("[\"run\", {}]", 11);
            break;
        case 14:
            m = emqp_msg_new (EMQP_REQUEST);
            m->queue = strdup ("heavy");
            m->headers = strdup ("reply-requested,retry-count:3,timeout:10");
            m->payload = zframe_new (payload, sizeof payload);
            m->epoch = UINT64_MAX;
            m->attempt = UINT32_MAX;
            break;
        case 15:
            m = emqp_msg_new (EMQP_REQUEST);
            m->queue = strdup ("q");
            m->headers = strdup ("guarantee");
            m->payload = zframe_new (NULL, 0);
            m->epoch = 1;
            m->attempt = 1;
            break;
        case 16:
            m = emqp_msg_new (EMQP_REPLY);
            m->payload = zframe_new ("{\"value\": 5}", 12);
            break;
        case 17:
            m = emqp_msg_new (EMQP_REPLY);
            m->payload = zframe_new ("{\"value\": null}", 15);
            m->ref = strdup ("req-17");
            break;
        case 18:
            m = emqp_msg_new (EMQP_SCHEDULE);
            m->queue = strdup ("default");
            m->headers = strdup ("guarantee,nohaste");
            m->interval_s = 60;
            m->payload = zframe_new (payload, sizeof payload);
            m->cron = strdup ("");
            break;
        case 19:
            m = emqp_msg_new (EMQP_SCHEDULE);
            m->queue = strdup ("heavy");
            m->headers = strdup ("run_count:3");
            m->interval_s = -1;
            m->payload = zframe_new ("x", 1);
            m->cron = strdup ("*/5 * * * *");
            break;
        case 20:
            m = emqp_msg_new (EMQP_UNSCHEDULE);
            m->queue = strdup ("default");
            m->headers = strdup ("");
            m->interval_s = INT64_MAX;
            m->payload = zframe_new ("y", 1);
            m->cron = strdup ("");
            break;
        case 21:
        case 22:
        case 23:
        case 24:
        case 25:
            m = emqp_msg_new (EMQP_DONE);
            m->ref = strdup ("req-done");
            m->epoch = (uint64_t) n * 1000;
            m->status = (emqp_status_t) (n - 21);
            m->payload = zframe_new (payload, sizeof payload);
            m->usage = strdup ("wall_us=1200 cpu_us=900 maxrss_kb=4096");
            break;
        case 26:
            m = emqp_msg_new (EMQP_RESULT);
            m->ref = strdup ("req-result");
            m->status = EMQP_STATUS_OK;
            m->payload = zframe_new ("\x05", 1);
            m->usage = strdup ("");
            break;
        case 27:
            m = emqp_msg_new (EMQP_RESULT);
            m->ref = strdup ("req-result");
            m->status = EMQP_STATUS_TIMEOUT;
            m->payload = zframe_new ("timed out", 9);
            m->usage = strdup ("wall_us=1000000");
            break;
        case 28:
            m = emqp_msg_new (EMQP_ERROR);
            m->ref = strdup ("req-error");
            m->error_code = strdup ("QUEUE_FULL");
            m->error_text = strdup ("queue default holds 100000 jobs (queue_hwm)");
            break;
        case 29:
            m = emqp_msg_new (EMQP_ERROR);
            m->ref = strdup ("");
            m->error_code = strdup ("MALFORMED");
            m->error_text = strdup ("unknown command 'BOGUS'");
            break;
        case 30:
            m = emqp_msg_new (EMQP_FETCH);
            m->ref = strdup ("req-fetch");
            break;
        case 31:
            m = emqp_msg_new (EMQP_CANCEL);
            m->ref = strdup ("req-cancel");
            break;
        case 32:
            m = emqp_msg_new (EMQP_CANCEL);
            m->ref = strdup ("req-cancel");
            m->epoch = 1795398200123456ULL;
            break;
        case 33:
            m = emqp_msg_new (EMQP_DEAD_LIST);
            break;
        case 34:
            m = emqp_msg_new (EMQP_DEAD_RETRY);
            m->ref = strdup ("*");
            break;
        case 35:
            m = emqp_msg_new (EMQP_DEAD_PURGE);
            break;
        case 36:
            m = emqp_msg_new (EMQP_RETURN);
            m->ref = strdup ("req-return");
            m->epoch = 42;
            break;
        case 37:
            m = emqp_msg_new (EMQP_ACK);
            m->ref = strdup ("inform-1");
            m->agent = strdup ("emq/2");
            break;
        case 38:
            m = emqp_msg_new (EMQP_BATCH);
            m->payload = zframe_new ("\x91\x92\xc4\x04KBYE\xc4\x01k", 10);
            break;
        case 39:
            m = emqp_msg_new (EMQP_PUBLISH);
            m->topic = strdup ("prices.eur");
            m->payload = zframe_new ("{\"bid\": 1.05}", 13);
            break;
        case 40:
            m = emqp_msg_new (EMQP_ADMIN);
            m->stats = strdup ("{\"command\":\"queue_pause\",\"queue\":\"q\"}");
            break;
        case 41:
            m = emqp_msg_new (EMQP_DEAD_DELETE);
            m->ref = strdup ("dead-1");
            break;
        case 42:
            m = emqp_msg_new (EMQP_FENCE_SHOW);
            break;
        case 43:
            m = emqp_msg_new (EMQP_FENCE_RESET);
            m->ref = strdup ("local:host1");
            break;
        default:
            return NULL;
    }
    m->msgid = strdup (id);
    return m;
}

//  Expects two messages to carry the same fields.
static void
s_test_same (const emqp_msg_t *a, const emqp_msg_t *b)
{
    CHECK_EQ (a->command, b->command);
    CHECK_STREQ (a->msgid, b->msgid);
    CHECK_STREQ (a->ref, b->ref);
    CHECK_STREQ (a->queue, b->queue);
    CHECK_STREQ (a->topic, b->topic);
    CHECK_STREQ (a->headers, b->headers);
    CHECK_EQ (a->payload != NULL, b->payload != NULL);
    if (a->payload && b->payload)
        CHECK_MEMEQ (zframe_data (a->payload), zframe_size (a->payload),
                     zframe_data (b->payload), zframe_size (b->payload));
    CHECK_NEAR (a->heartbeat_ts, b->heartbeat_ts, 1e-6);
    CHECK_STREQ (a->stats, b->stats);
    CHECK_EQ (a->interval_s, b->interval_s);
    CHECK_STREQ (a->cron, b->cron);
    CHECK_STREQ (a->queues, b->queues);
    CHECK_STREQ (a->peer_type, b->peer_type);
    CHECK_STREQ (a->agent, b->agent);
    CHECK_UEQ (a->epoch, b->epoch);
    CHECK_UEQ (a->attempt, b->attempt);
    CHECK_EQ (a->status, b->status);
    CHECK_STREQ (a->usage, b->usage);
    CHECK_STREQ (a->error_code, b->error_code);
    CHECK_STREQ (a->error_text, b->error_text);
}

//  ---- EventMQ vectors ---------------------------------------------------------

//  Vectors that EventMQ's own programs reject too, and why we do.
static const struct {
    const char *id;
    const char *reason;
} s_vector_rejects[] = {
    { "jm.stim.unknown-command", "unknown command 'BOGUS'" },
    { "jm.stim.short-3-frames", "HEARTBEAT: missing msgid frame" },
    { "jm.stim.short-2-frames", "missing command frame" },
    { "sched.stim.unknown-command", "unknown command 'BOGUS'" },
    { "sched.stim.schedule.short", "SCHEDULE: missing interval frame" },
    { "router.stim.client.unknown-command", "unknown command 'BOGUS'" },
    { "router.stim.client.request.no-queue", "REQUEST: missing queue frame" },
    { "router.stim.client.request.3-frames", "REQUEST: missing msgid frame" },
    { "router.stim.jm.unknown-command", "unknown command 'BOGUS'" },
    { "router.stim.admin.unknown-command", "unknown command 'BOGUS'" },
    { "router.stim.admin.no-msgid", "STATUS: missing msgid frame" },
};
#define S_VECTOR_REJECTS (sizeof s_vector_rejects / sizeof s_vector_rejects[0])

//  Everything else decodes, including messages EventMQ's peers choke on but
//  that are well-formed eMQP (bad JSON in INFORM, unknown peer type,
//  non-UTF-8 payloads, non-UTF-8 sender identity): those are for the router
//  to refuse, not the codec.

static zframe_t *
s_hex_frame (const char *hex)
{
    size_t len = strlen (hex);
    if (len % 2)
        return NULL;
    byte *data = malloc (len / 2 + 1);
    if (!data)
        return NULL;
    for (size_t i = 0; i < len / 2; i++) {
        unsigned int value;
        if (sscanf (hex + 2 * i, "%2x", &value) != 1) {
            free (data);
            return NULL;
        }
        data[i] = (byte) value;
    }
    zframe_t *frame = zframe_new (data, len / 2);
    free (data);
    return frame;
}

//  Finds the vectors: $EMQ_VECTORS, else ../shared/vectors/ beside the repo
//  (from the repo root, or from the binary at <repo>/<build>/tests/selftest).
static char *
s_vectors_path (bool *named)
{
    const char *env = getenv ("EMQ_VECTORS");
    *named = env && *env;
    if (*named)
        return strdup (env);
    const char *relative = "../shared/vectors/eventmq-0.3.13.json";
    if (access (relative, R_OK) == 0)
        return strdup (relative);
    char exe[PATH_MAX];
    ssize_t len = readlink ("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        //  Strip "selftest", "tests", the build directory: the repo root.
        for (int up = 0; up < 3; up++) {
            char *slash = strrchr (exe, '/');
            if (!slash)
                break;
            *slash = 0;
        }
        char *path;
        if (asprintf (&path, "%s/%s", exe, relative) >= 0) {
            if (access (path, R_OK) == 0)
                return path;
            free (path);
        }
    }
    return NULL;
}

//  Frame text (after any identity) number index of a vector record, or NULL.
static const char *
s_vector_text (json_t *frames, size_t first, size_t index)
{
    json_t *frame = json_array_get (frames, first + index);
    return frame ? json_string_value (json_object_get (frame, "text")) : NULL;
}

//  Checks one decoded vector's fields against its frame texts.
static void
s_vector_fields (const char *id, const emqp_msg_t *msg, json_t *frames, size_t first)
{
    size_t count = json_array_size (frames) - first;
    const char *t4 = s_vector_text (frames, first, 4);
    const char *t5 = s_vector_text (frames, first, 5);
    CHECK_STREQ (msg->msgid, s_vector_text (frames, first, 3));
    switch (msg->command) {
        case EMQP_ACK:
            CHECK_EQ (count, 5);
            CHECK_STREQ (msg->ref, t4);
            break;
        case EMQP_HEARTBEAT:
            CHECK_EQ (count, 5);
            CHECK (t4 != NULL);
            if (t4)
                CHECK_NEAR (msg->heartbeat_ts, strtod (t4, NULL), 0);
            CHECK (msg->heartbeat_ts > 1.7e9);
            CHECK (msg->stats == NULL);
            break;
        case EMQP_INFORM:
            CHECK_EQ (count, 6);
            CHECK_STREQ (msg->queues, t4);
            CHECK_STREQ (msg->peer_type, t5);
            CHECK (msg->agent == NULL);
            break;
        case EMQP_REQUEST:
            CHECK_EQ (count, 7);
            CHECK_STREQ (msg->queue, t4);
            CHECK_STREQ (msg->headers, t5);
            CHECK_UEQ (msg->epoch, 0);
            CHECK_UEQ (msg->attempt, 0);
            break;
        case EMQP_REPLY:
            //  Router: REPLY id ref_or_json; job manager: REPLY id json request_id.
            CHECK (count == 5 || count == 6);
            if (t4)
                CHECK_MEMEQ (zframe_data (msg->payload), zframe_size (msg->payload), t4,
                             strlen (t4));
            CHECK_STREQ (msg->ref, count == 6 ? t5 : NULL);
            break;
        case EMQP_SCHEDULE:
        case EMQP_UNSCHEDULE:
            CHECK_EQ (count, 9);
            CHECK_STREQ (msg->queue, t4);
            CHECK_STREQ (msg->headers, t5);
            CHECK_EQ (msg->interval_s,
                      strtoll (s_vector_text (frames, first, 6), NULL, 10));
            CHECK_STREQ (msg->cron, s_vector_text (frames, first, 8));
            break;
        case EMQP_DISCONNECT:
        case EMQP_KBYE:
        case EMQP_READY:
        case EMQP_HELLO:
        case EMQP_STATUS:
        case EMQP_ROUTER_SHOW_WORKERS:
        case EMQP_ROUTER_SHOW_SCHEDULERS:
            CHECK_EQ (count, 4);
            break;
        default:
            fprintf (stderr,
                     "emqp_test: vector %s decoded as %s, not an EventMQ command\n", id,
                     emqp_command_name (msg->command));
            CHECK (false);
    }
}

//  Re-encodes msg (taken) and compares with the original frames: identical
//  bytes, except HEARTBEAT's timestamp (compared as a number).
static void
s_vector_reencode (const char *id, emqp_msg_t *msg, zmsg_t *original)
{
    emqp_command_t command = msg->command;
    zmsg_t *again = emqp_encode (msg);
    emqp_msg_destroy (&msg);
    CHECK (again != NULL);
    if (!again)
        return;
    CHECK_EQ (zmsg_size (again), zmsg_size (original));
    size_t index = 0;
    size_t last = zmsg_size (original) - 1;
    zframe_t *a = zmsg_first (again), *b = zmsg_first (original);
    for (; a && b; a = zmsg_next (again), b = zmsg_next (original), index++) {
        if (command == EMQP_HEARTBEAT && index == last) {
            char *x = zframe_strdup (a), *y = zframe_strdup (b);
            CHECK_NEAR (strtod (x, NULL), strtod (y, NULL), 1e-6);
            free (x);
            free (y);
            continue;
        }
        if (!zframe_eq (a, b))
            fprintf (stderr, "emqp_test: vector %s frame %zu differs after re-encoding\n",
                     id, index);
        CHECK_MEMEQ (zframe_data (a), zframe_size (a), zframe_data (b), zframe_size (b));
    }
    zmsg_destroy (&again);
}

static void
s_test_vectors (bool verbose)
{
    bool named;
    char *path = s_vectors_path (&named);
    if (!path) {
        printf ("emqp_test: EventMQ vectors not found (../shared/vectors/; set "
                "EMQ_VECTORS), skipping them\n");
        return;
    }
    json_error_t jerr;
    json_t *records = json_load_file (path, 0, &jerr);
    if (!records)
        fprintf (stderr, "emqp_test: cannot load %s: %s (line %d)\n", path, jerr.text,
                 jerr.line);
    CHECK (records != NULL);
    CHECK (json_is_array (records));
    free (path);
    if (!records)
        return;
    CHECK_EQ (json_array_size (records), 165);

    emqp_limits_t limits = { .payload_max = 16 * 1024 * 1024 };
    size_t rejected = 0, accepted = 0, with_sender = 0;
    bool reject_seen[S_VECTOR_REJECTS] = { false };
    size_t index;
    json_t *record;
    json_array_foreach (records, index, record)
    {
        const char *id = json_string_value (json_object_get (record, "id"));
        const char *command = json_string_value (json_object_get (record, "command"));
        json_t *frames = json_object_get (record, "frames");
        bool with_identity = json_is_true (json_object_get (record, "identity_frame"));
        json_t *sender = json_object_get (record, "sender_identity");
        //  command is null where the capture has no command frame.
        CHECK (id && json_is_array (frames));
        if (!id || !json_is_array (frames))
            continue;

        //  The message as captured, and once more as an emq ROUTER would see
        //  a stimulus from that DEALER (its identity prepended).
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1 && !sender)
                break;
            zmsg_t *zmsg = zmsg_new ();
            if (pass == 1)
                zmsg_append (zmsg, &(zframe_t *){ s_hex_frame (json_string_value (
                                       json_object_get (sender, "hex"))) });
            size_t k;
            json_t *frame;
            json_array_foreach (frames, k, frame)
            {
                zframe_t *f =
                    s_hex_frame (json_string_value (json_object_get (frame, "hex")));
                CHECK (f != NULL);
                if (f)
                    zmsg_append (zmsg, &f);
            }
            bool identity = with_identity || pass == 1;
            zmsg_t *original = zmsg_dup (zmsg);

            const char *reason = NULL;
            for (size_t r = 0; r < S_VECTOR_REJECTS; r++)
                if (streq (s_vector_rejects[r].id, id)) {
                    reason = s_vector_rejects[r].reason;
                    reject_seen[r] = true;
                }
            if (reason) {
                s_test_reject (id, zmsg, identity, &limits, reason, verbose && pass == 0);
                rejected += pass == 0;
            }
            else {
                emqp_msg_t *msg = s_test_accept (id, zmsg, identity, &limits);
                if (msg) {
                    CHECK_STREQ (emqp_command_name (msg->command),
                                 command ? command : "");
                    CHECK_EQ (msg->identity != NULL, identity);
                    s_vector_fields (id, msg, frames, with_identity ? 1 : 0);
                    s_vector_reencode (id, msg, original);
                    accepted += pass == 0;
                    with_sender += pass == 1;
                }
            }
            zmsg_destroy (&original);
        }
    }
    for (size_t r = 0; r < S_VECTOR_REJECTS; r++) {
        if (!reject_seen[r])
            fprintf (stderr, "emqp_test: vector %s not found\n", s_vector_rejects[r].id);
        CHECK (reject_seen[r]);
    }
    CHECK_EQ (rejected, S_VECTOR_REJECTS);
    CHECK_EQ (accepted + rejected, 165);
    if (verbose)
        printf ("\n   vectors: %zu decoded and re-encoded, %zu rejected as expected, "
                "%zu also decoded with the sender's identity",
                accepted, rejected, with_sender);
    json_decref (records);
}

//  ---- the test ------------------------------------------------------------------

//  Batches: what goes in comes out, in order, each message checked alone;
//  a lone message travels as itself; malformed batches are refused whole.
static void
s_test_batch (void)
{
    emqp_limits_t limits = { .payload_max = 64 };
    char err[256];
    zsock_t *server = zsock_new_router ("@inproc://emqp-test-batch");
    zsock_t *client = zsock_new_dealer (">inproc://emqp-test-batch");
    assert (server && client);
    emqp_batch_t *batch = emqp_batch_new ();
    REQUIRE (batch);
    CHECK_EQ (emqp_batch_send (batch, client, NULL), 0);  // empty: nothing
    emqp_msg_t *msg = emqp_msg_new (EMQP_READY);
    msg->msgid = strdup ("lone");
    CHECK_EQ (emqp_batch_add (batch, &msg), 0);
    CHECK (msg == NULL && emqp_batch_size (batch) == 1 && !emqp_batch_full (batch));
    CHECK_EQ (emqp_batch_send (batch, client, NULL), 0);
    //  ... unless asked to go as a BATCH even alone.
    emqp_batch_t *always = emqp_batch_new ();
    emqp_batch_set_always (always, true);
    msg = emqp_msg_new (EMQP_KBYE);
    msg->msgid = strdup ("alone");
    emqp_batch_add (always, &msg);
    CHECK_EQ (emqp_batch_send (always, client, NULL), 0);
    emqp_batch_destroy (&always);
    emqp_msg_t *got = NULL;
    zframe_t *identity = NULL;
    zsock_set_rcvtimeo (server, 2000);
    zmsg_t *zmsg = zmsg_recv (server);
    got = zmsg ? emqp_decode (&zmsg, true, &limits, NULL, err, sizeof err) : NULL;
    CHECK (got && got->command == EMQP_READY && streq (got->msgid, "lone"));
    identity = got ? zframe_dup (got->identity) : NULL;
    emqp_msg_destroy (&got);
    REQUIRE (identity);
    zmsg = zmsg_recv (server);
    got = zmsg ? emqp_decode (&zmsg, true, &limits, NULL, err, sizeof err) : NULL;
    CHECK (got && got->command == EMQP_BATCH);
    size_t alone = 0;
    emqp_msg_t **one =
        got ? emqp_batch_unpack (got, &limits, &alone, err, sizeof err) : NULL;
    CHECK (one && alone == 1 && one[0]->command == EMQP_KBYE
           && streq (one[0]->msgid, "alone"));
    if (one)
        emqp_msg_destroy (&one[0]);
    free (one);
    emqp_msg_destroy (&got);

    //  Three REQUESTs and one that cannot be laid out (no queue).
    for (int i = 0; i < 3; i++) {
        msg = emqp_msg_new (EMQP_REQUEST);
        msg->msgid = zsys_sprintf ("job-%d", i);
        msg->queue = strdup ("default");
        msg->headers = strdup (i == 1 ? "reply-requested" : "");
        msg->payload = zframe_new ("\x00\x01\xff", 3);
        msg->epoch = (uint64_t) i + 7;
        msg->attempt = 1;
        CHECK_EQ (emqp_batch_add (batch, &msg), 0);
    }
    msg = emqp_msg_new (EMQP_REQUEST);
    CHECK_EQ (emqp_batch_add (batch, &msg), -1);
    CHECK (msg == NULL);
    CHECK_EQ (emqp_batch_size (batch), 3);
    CHECK_EQ (emqp_batch_send (batch, server, identity), 0);
    CHECK_EQ (emqp_batch_size (batch), 0);
    zsock_set_rcvtimeo (client, 2000);
    zmsg = zmsg_recv (client);
    CHECK (zmsg && zmsg_size (zmsg) == 5);  // '' eMQP/1.0 BATCH msgid packed
    got = zmsg ? emqp_decode (&zmsg, false, &limits, NULL, err, sizeof err) : NULL;
    CHECK (got && got->command == EMQP_BATCH);
    size_t count = 0;
    emqp_msg_t **msgs =
        got ? emqp_batch_unpack (got, &limits, &count, err, sizeof err) : NULL;
    CHECK (msgs && count == 3);
    for (size_t i = 0; msgs && i < count; i++) {
        char want[32];
        snprintf (want, sizeof want, "job-%zu", i);
        CHECK (msgs[i]->command == EMQP_REQUEST && streq (msgs[i]->msgid, want));
        CHECK (msgs[i]->epoch == i + 7 && msgs[i]->attempt == 1);
        CHECK_MEMEQ (zframe_data (msgs[i]->payload), zframe_size (msgs[i]->payload),
                     "\x00\x01\xff", 3);
        CHECK_STREQ (msgs[i]->headers, i == 1 ? "reply-requested" : "");
        emqp_msg_destroy (&msgs[i]);
    }
    free (msgs);
    emqp_msg_destroy (&got);

    //  Each packed message is checked alone: a bad one comes back as
    //  INVALID with its msgid and reason, its neighbours are unaffected.
    //  [[REQUEST, a, default, "", p], [REQUEST, b, default], [BOGUS, c],
    //   [BATCH, d, x], 7]
    static const char mixed[] = "\x95"
                                "\x95\xa7REQUEST\xa1"
                                "a\xa7"
                                "default\xa0\xa1p"
                                "\x93\xa7REQUEST\xa1"
                                "b\xa7"
                                "default"
                                "\x92\xa5"
                                "BOGUS\xa1"
                                "c"
                                "\x93\xa5"
                                "BATCH\xa1"
                                "d\xa1x"
                                "\x07";
    got = emqp_msg_new (EMQP_BATCH);
    got->payload = zframe_new (mixed, sizeof mixed - 1);
    got->identity = zframe_new ("peer", 4);
    msgs = emqp_batch_unpack (got, &limits, &count, err, sizeof err);
    CHECK (msgs && count == 5);
    if (msgs && count == 5) {
        CHECK (msgs[0]->command == EMQP_REQUEST && streq (msgs[0]->msgid, "a"));
        CHECK (zframe_streq (msgs[0]->identity, "peer"));
        CHECK (msgs[1]->command == EMQP_INVALID && streq (msgs[1]->msgid, "b"));
        CHECK_CONTAINS (msgs[1]->error_text, "headers");
        CHECK (msgs[2]->command == EMQP_INVALID && streq (msgs[2]->msgid, "c"));
        CHECK_CONTAINS (msgs[2]->error_text, "BOGUS");
        CHECK (msgs[3]->command == EMQP_INVALID && streq (msgs[3]->msgid, "d"));
        CHECK (msgs[4]->command == EMQP_INVALID && msgs[4]->msgid == NULL);
    }
    for (size_t i = 0; msgs && i < count; i++)
        emqp_msg_destroy (&msgs[i]);
    free (msgs);

    //  Refused whole: not msgpack, not an array, empty, trailing bytes,
    //  too many messages.
    const char *bad[] = { "\xc1", "\x05", "\x90", "\x91\x92\xa5READY\xa1m\x00" };
    const size_t sizes[] = { 1, 1, 1, 11 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        zframe_destroy (&got->payload);
        got->payload = zframe_new (bad[i], sizes[i]);
        err[0] = 0;
        CHECK (emqp_batch_unpack (got, &limits, &count, err, sizeof err) == NULL);
        CHECK (err[0] != 0);
    }
    zframe_destroy (&got->payload);
    got->payload = zframe_new ("\xdc\x04\x01", 3);  // array of 1025
    CHECK (emqp_batch_unpack (got, &limits, &count, err, sizeof err) == NULL);
    //  Counts larger than the bytes that follow are refused before msgpack-c
    //  would reserve memory for them (found by tests/fuzz/fuzz_emqp.c: 6
    //  bytes made it ask for 128 GiB).
    const char *huge[] = { "\x91\xdd\xff\xff\xff\xff", "\xdd\x00\xff\xff\xff\x90" };
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        zframe_destroy (&got->payload);
        got->payload = zframe_new (huge[i], 6);
        err[0] = 0;
        CHECK (emqp_batch_unpack (got, &limits, &count, err, sizeof err) == NULL);
        CHECK_CONTAINS (err, "not well-formed msgpack");
    }
    emqp_msg_destroy (&got);

    //  Full by bytes, and a large payload is not for batches.
    msg = emqp_msg_new (EMQP_REQUEST);
    msg->payload = zframe_new (NULL, EMQP_BATCH_ITEM_MAX + 1);
    CHECK (!emqp_batch_takes (msg));
    zframe_destroy (&msg->payload);
    msg->payload = zframe_new (NULL, EMQP_BATCH_ITEM_MAX);
    CHECK (emqp_batch_takes (msg));
    emqp_msg_destroy (&msg);
    for (int i = 0; i < 8 && !emqp_batch_full (batch); i++) {
        msg = emqp_msg_new (EMQP_REQUEST);
        msg->queue = strdup ("q");
        msg->payload = zframe_new (NULL, EMQP_BATCH_ITEM_MAX);
        emqp_batch_add (batch, &msg);
    }
    CHECK (emqp_batch_full (batch) && emqp_batch_size (batch) == 6);
    CHECK_EQ (emqp_batch_send (batch, server, identity), 0);
    zmsg = zmsg_recv (client);
    got = zmsg ? emqp_decode (&zmsg, false, &limits, NULL, err, sizeof err) : NULL;
    CHECK (got && got->command == EMQP_BATCH);
    msgs = got ? emqp_batch_unpack (got, &limits, &count, err, sizeof err) : NULL;
    //  Each payload is over this receiver's limit of 64: refused one by one.
    CHECK (msgs && count == 6 && msgs[5]->command == EMQP_INVALID);
    CHECK_CONTAINS (msgs ? msgs[5]->error_text : "", "too large");
    for (size_t i = 0; msgs && i < count; i++)
        emqp_msg_destroy (&msgs[i]);
    free (msgs);
    emqp_msg_destroy (&got);

    //  Full by count.
    for (int i = 0; i < EMQP_BATCH_MAX; i++) {
        msg = emqp_msg_new (EMQP_READY);
        msg->msgid = strdup ("r");
        emqp_batch_add (batch, &msg);
    }
    CHECK (emqp_batch_full (batch));
    emqp_batch_destroy (&batch);
    CHECK (batch == NULL);
    zframe_destroy (&identity);
    zsock_destroy (&client);
    zsock_destroy (&server);
}

void
emqp_test (bool verbose)
{
    if (verbose)
        printf (" * emqp: ");
    char err[256];
    emqp_limits_t limits = { .payload_max = 1024 };

    //  Names and lookups, both ways, for every command and status.
    for (int i = EMQP_INVALID + 1; i < EMQP_COMMAND_COUNT; i++) {
        CHECK_EQ (emqp_command_lookup (emqp_command_name ((emqp_command_t) i)), i);
        CHECK (s_test_layout ((emqp_command_t) i) != NULL);
    }
    CHECK_STREQ (emqp_command_name (EMQP_INVALID), "INVALID");
    CHECK_STREQ (emqp_command_name (EMQP_COMMAND_COUNT), "INVALID");
    CHECK_EQ (emqp_command_lookup ("INVALID"), EMQP_INVALID);
    CHECK_EQ (emqp_command_lookup ("request"), EMQP_INVALID);
    CHECK_EQ (emqp_command_lookup (""), EMQP_INVALID);
    for (int i = 0; i < EMQP_STATUS_COUNT; i++) {
        emqp_status_t status = EMQP_STATUS_COUNT;
        CHECK_EQ (emqp_status_lookup (emqp_status_name ((emqp_status_t) i), &status), 0);
        CHECK_EQ (status, i);
    }
    CHECK_STREQ (emqp_status_name (EMQP_STATUS_OK), "ok");
    CHECK_STREQ (emqp_status_name (EMQP_STATUS_REJECTED), "rejected");
    CHECK_STREQ (emqp_status_name (EMQP_STATUS_COUNT), "unknown");
    emqp_status_t status;
    CHECK_EQ (emqp_status_lookup ("OK", &status), -1);
    CHECK_EQ (emqp_status_lookup ("unknown", &status), -1);

    //  emqp_msg_destroy takes NULL; emqp_printable caps and masks.
    emqp_msg_t *msg = NULL;
    emqp_msg_destroy (&msg);
    emqp_msg_destroy (NULL);
    char shown[8];
    CHECK_STREQ (emqp_printable ("ab\x01\xff", 4, shown, sizeof shown), "ab??");
    CHECK_STREQ (emqp_printable ("abcdefghij", 10, shown, sizeof shown), "abcd...");
    CHECK_STREQ (emqp_printable ("", 0, shown, sizeof shown), "");

    //  ---- Fault codes ----
    CHECK_STREQ (emqp_error_name (EMQP_ERR_NONE), "none");
    CHECK_STREQ (emqp_error_name (EMQP_ERR_TOO_LARGE), "too_large");
    CHECK_STREQ (emqp_error_name (EMQP_ERR_COUNT), "unknown");
    for (int code = 0; code < EMQP_ERR_COUNT; code++) {
        CHECK (emqp_error_name ((emqp_error_t) code) != NULL);
        CHECK_STREQ (emqp_error_word ((emqp_error_t) code),
                     code == EMQP_ERR_TOO_LARGE ? "TOO_LARGE" : "BAD_FRAME");
    }
    struct {
        const char *frames[7];  // from the delimiter on; NULL-terminated
        bool with_identity;
        emqp_error_t code;
        emqp_command_t command;
    } faults[] = {
        { { NULL }, true, EMQP_ERR_NO_IDENTITY, EMQP_INVALID },
        { { "x", "eMQP/1.0", "READY", "id", NULL },
          false,
          EMQP_ERR_PROTOCOL,
          EMQP_INVALID },
        { { "", "eMQP/2.0", "READY", "id", NULL },
          false,
          EMQP_ERR_PROTOCOL,
          EMQP_INVALID },
        { { "", "eMQP/1.0", "BOGUS", "id", NULL },
          false,
          EMQP_ERR_UNKNOWN_COMMAND,
          EMQP_INVALID },
        { { "", "eMQP/1.0", "ACK", "id", NULL }, false, EMQP_ERR_MALFORMED, EMQP_ACK },
        { { "", "eMQP/1.0", "ERROR", "id", "ref", NULL },
          false,
          EMQP_ERR_MALFORMED,
          EMQP_ERROR },
        { { "", "eMQP/1.0", "REQUEST", "id", "q", "", NULL },
          false,
          EMQP_ERR_MALFORMED,
          EMQP_REQUEST },
    };
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) {
        zmsg_t *zmsg = zmsg_new ();
        for (size_t k = 0; faults[i].frames[k]; k++)
            zmsg_addstr (zmsg, faults[i].frames[k]);
        emqp_fault_t fault;
        CHECK (emqp_decode_fault (&zmsg, faults[i].with_identity, &limits, NULL, &fault)
               == NULL);
        CHECK_STREQ (emqp_error_name (fault.code), emqp_error_name (faults[i].code));
        CHECK_STREQ (emqp_command_name (fault.command),
                     emqp_command_name (faults[i].command));
        CHECK (fault.text[0] != 0);
    }
    {
        //  Too large: REQUEST's payload past the limit.
        zmsg_t *zmsg =
            s_test_zmsg (NULL, "REQUEST", "id", (const char *[]){ "q", "", NULL });
        zmsg_addmem (zmsg, "0123456789", 10);
        emqp_fault_t fault;
        emqp_limits_t small = { .payload_max = 9 };
        CHECK (emqp_decode_fault (&zmsg, false, &small, NULL, &fault) == NULL);
        CHECK_EQ (fault.code, EMQP_ERR_TOO_LARGE);
        CHECK_EQ (fault.command, EMQP_REQUEST);
        CHECK_STREQ (emqp_error_word (fault.code), "TOO_LARGE");
        //  A success clears the fault.
        zmsg = s_test_zmsg (NULL, "REQUEST", "id", (const char *[]){ "q", "", NULL });
        zmsg_addmem (zmsg, "012345678", 9);
        emqp_msg_t *msg = emqp_decode_fault (&zmsg, false, &small, NULL, &fault);
        CHECK (msg != NULL);
        CHECK_EQ (fault.code, EMQP_ERR_NONE);
        CHECK_STREQ (fault.text, "");
        emqp_msg_destroy (&msg);
    }
    {
        //  emqp_recv reports the same faults, with the sender's identity.
        zsock_t *router = zsock_new_router ("inproc://emqp-test-recv");
        zsock_t *dealer = zsock_new_dealer (">inproc://emqp-test-recv");
        zsock_set_rcvtimeo (router, 2000);
        zstr_sendx (dealer, "", "eMQP/1.0", "BOGUS", "id", NULL);
        zstr_sendx (dealer, "", "eMQP/1.0", "ERROR", "id", "ref", NULL);
        zstr_sendx (dealer, "", "eMQP/1.0", "READY", "id", NULL);
        zpoller_t *poller = zpoller_new (router, NULL);
        CHECK (zpoller_wait (poller, 2000) == router);
        zpoller_destroy (&poller);
        emqp_msg_t *msg = NULL;
        zframe_t *identity = NULL;
        emqp_fault_t fault;
        CHECK_EQ (emqp_recv (router, true, &limits, &msg, &identity, &fault), -1);
        CHECK_EQ (fault.code, EMQP_ERR_UNKNOWN_COMMAND);
        CHECK (identity != NULL && msg == NULL);
        zframe_destroy (&identity);
        //  The rest of a burst arrives with its first message.
        int64_t deadline = zclock_mono () + 2000;
        int rc;
        while ((rc = emqp_recv (router, true, &limits, &msg, &identity, &fault)) == 0
               && zclock_mono () < deadline)
            zclock_sleep (1);
        CHECK_EQ (rc, -1);
        CHECK_EQ (fault.code, EMQP_ERR_MALFORMED);
        CHECK_EQ (fault.command, EMQP_ERROR);
        zframe_destroy (&identity);
        while ((rc = emqp_recv (router, true, &limits, &msg, &identity, &fault)) == 0
               && zclock_mono () < deadline)
            zclock_sleep (1);
        CHECK_EQ (rc, 1);
        CHECK (msg && msg->command == EMQP_READY && msg->identity && !identity);
        emqp_msg_destroy (&msg);
        CHECK_EQ (emqp_recv (router, true, &limits, &msg, &identity, &fault), 0);
        zsock_destroy (&dealer);
        zsock_destroy (&router);
    }

    //  ---- Envelope errors ----
    zmsg_t *zmsg = NULL;
    s_test_reject ("no message", NULL, false, &limits, "malformed message", verbose);
    CHECK (emqp_decode (&zmsg, false, NULL, NULL, err, sizeof err) == NULL);
    CHECK_STREQ (err, "malformed message");
    s_test_reject ("no frames", zmsg_new (), false, &limits,
                   "first frame is not the empty delimiter", verbose);
    s_test_reject ("no identity", zmsg_new (), true, &limits, "without routing identity",
                   verbose);
    zmsg = zmsg_new ();
    zmsg_addmem (zmsg, "", 0);
    zmsg_addstr (zmsg, EMQP_PROTOCOL);
    zmsg_addstr (zmsg, "READY");
    zmsg_addstr (zmsg, "id");
    s_test_reject ("empty identity", zmsg, true, &limits, "without routing identity",
                   verbose);
    zmsg = zmsg_new ();
    zmsg_addstr (zmsg, EMQP_PROTOCOL);
    zmsg_addstr (zmsg, "READY");
    zmsg_addstr (zmsg, "id");
    s_test_reject ("missing delimiter", zmsg, false, &limits,
                   "first frame is not the empty delimiter", verbose);
    zmsg = zmsg_new ();
    zmsg_addstr (zmsg, "x");
    zmsg_addstr (zmsg, EMQP_PROTOCOL);
    zmsg_addstr (zmsg, "READY");
    zmsg_addstr (zmsg, "id");
    s_test_reject ("non-empty delimiter", zmsg, false, &limits,
                   "first frame is not the empty delimiter", verbose);
    //  A DEALER's message read with_identity = true: the delimiter is taken
    //  for the identity, which is refused as empty.
    s_test_reject ("identity expected", s_test_zmsg (NULL, "READY", "id", NULL), true,
                   &limits, "without routing identity", verbose);
    zmsg = zmsg_new ();
    zmsg_addmem (zmsg, "", 0);
    s_test_reject ("missing protocol", zmsg, false, &limits,
                   "protocol frame is '(missing)'", verbose);
    static const char *protocols[] = { "eMQP/2.0", "EMQP/1.0", "eMQP/1.0 ", "eMQP/1",
                                       "" };
    for (size_t i = 0; i < sizeof protocols / sizeof protocols[0]; i++) {
        zmsg = zmsg_new ();
        zmsg_addmem (zmsg, "", 0);
        zmsg_addstr (zmsg, protocols[i]);
        zmsg_addstr (zmsg, "READY");
        zmsg_addstr (zmsg, "id");
        s_test_reject ("wrong protocol", zmsg, false, &limits, "expected eMQP/1.0",
                       verbose);
    }
    zmsg = zmsg_new ();
    zmsg_addmem (zmsg, "", 0);
    zmsg_addmem (zmsg,
                 "\x00\xff"
                 "eMQP",
                 6);
    s_test_reject ("binary protocol", zmsg, false, &limits, "protocol frame is '??eMQP'",
                   verbose);

    //  ---- Command and msgid ----
    s_test_reject ("missing command", s_test_zmsg (NULL, NULL, NULL, NULL), false,
                   &limits, "missing command frame", verbose);
    s_test_reject ("empty command", s_test_zmsg (NULL, "", "id", NULL), false, &limits,
                   "command frame is empty", verbose);
    s_test_reject ("unknown command", s_test_zmsg (NULL, "BOGUS", "id", NULL), false,
                   &limits, "unknown command 'BOGUS'", verbose);
    s_test_reject ("lowercase command", s_test_zmsg (NULL, "ready", "id", NULL), false,
                   &limits, "unknown command 'ready'", verbose);
    s_test_reject ("command INVALID", s_test_zmsg (NULL, "INVALID", "id", NULL), false,
                   &limits, "unknown command 'INVALID'", verbose);
    char long_text[EMQP_STATS_MAX + 2];
    memset (long_text, 'A', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = 0;
    long_text[65] = 0;
    s_test_reject ("command too long", s_test_zmsg (NULL, long_text, "id", NULL), false,
                   &limits, "command frame too long (65 bytes, max 64)", verbose);
    s_test_reject ("command not UTF-8", s_test_zmsg (NULL, "REQ\xff", "id", NULL), false,
                   &limits, "command frame is not valid UTF-8", verbose);
    memset (long_text, 'a', sizeof long_text - 1);
    for (size_t i = 0; i < S_TEST_LAYOUTS; i++) {
        const char *name = emqp_command_name (s_test_layouts[i].command);
        char reason[64];
        snprintf (reason, sizeof reason, "%s: missing msgid frame", name);
        s_test_reject ("missing msgid", s_test_zmsg (NULL, name, NULL, NULL), false,
                       &limits, reason, verbose);
        snprintf (reason, sizeof reason, "%s: msgid frame is empty", name);
        s_test_reject ("empty msgid",
                       s_test_zmsg (NULL, name, "", s_test_layouts[i].frames), false,
                       &limits, reason, verbose);
    }

    //  ---- Every command: the minimal message decodes; every shorter one is
    //  refused, naming the command and the missing frame ----
    for (size_t i = 0; i < S_TEST_LAYOUTS; i++) {
        const s_test_layout_t *layout = &s_test_layouts[i];
        const char *name = emqp_command_name (layout->command);
        msg = s_test_accept (name, s_test_zmsg (NULL, name, "msg-1", layout->frames),
                             false, &limits);
        if (msg) {
            CHECK_EQ (msg->command, layout->command);
            CHECK_STREQ (msg->msgid, "msg-1");
            CHECK (msg->identity == NULL);
        }
        emqp_msg_destroy (&msg);
        size_t count = 0;
        while (layout->frames[count])
            count++;
        for (size_t keep = 0; keep < count; keep++) {
            const char *frames[8] = { NULL };
            for (size_t k = 0; k < keep; k++)
                frames[k] = layout->frames[k];
            char reason[64];
            snprintf (reason, sizeof reason, "%s: missing ", name);
            s_test_reject ("too few frames", s_test_zmsg (NULL, name, "msg-1", frames),
                           false, &limits, reason, verbose);
        }
        //  The same through a ROUTER: identity first, handed back on failure.
        zmsg = s_test_zmsg ("peer-1", name, "msg-1", layout->frames);
        msg = s_test_accept (name, zmsg, true, &limits);
        if (msg) {
            CHECK (msg->identity && zframe_streq (msg->identity, "peer-1"));
        }
        emqp_msg_destroy (&msg);
        if (count > 0) {
            zframe_t *identity = NULL;
            const char *none[] = { NULL };
            zmsg = s_test_zmsg ("peer-2", name, "msg-1", none);
            CHECK (emqp_decode (&zmsg, true, &limits, &identity, err, sizeof err)
                   == NULL);
            CHECK (identity && zframe_streq (identity, "peer-2"));
            zframe_destroy (&identity);
        }
    }

    //  ---- Text frame limits: at the limit accepted, one byte more refused ----
    for (size_t i = 0; i < S_TEST_SLOTS; i++) {
        const s_test_slot_t *slot = &s_test_slots[i];
        const char *name = emqp_command_name (slot->command);
        zmsg = s_test_slot_zmsg (slot, long_text, slot->max);
        msg = s_test_accept (slot->field, zmsg, false, &limits);
        if (msg) {
            const char *value = s_test_slot_value (msg, slot);
            CHECK (value != NULL);
            CHECK_EQ (value ? strlen (value) : 0, slot->max);
        }
        emqp_msg_destroy (&msg);
        char reason[96];
        snprintf (reason, sizeof reason, "%s: %s frame too long (%zu bytes, max %zu)",
                  name, slot->field, slot->max + 1, slot->max);
        s_test_reject (reason, s_test_slot_zmsg (slot, long_text, slot->max + 1), false,
                       &limits, reason, verbose && i < 2);
        //  Invalid UTF-8 and NUL refused in every text frame.
        snprintf (reason, sizeof reason, "%s: %s frame is not valid UTF-8 text", name,
                  slot->field);
        s_test_reject (reason, s_test_slot_zmsg (slot, "ab\xff", 3), false, &limits,
                       reason, verbose && i < 2);
        snprintf (reason, sizeof reason, "%s: %s frame contains a NUL byte", name,
                  slot->field);
        s_test_reject (reason, s_test_slot_zmsg (slot, "de\0fault", 8), false, &limits,
                       reason, verbose && i < 2);
    }
    //  Number frames have limits too.
    {
        const char *frames[] = { "req-id", "123456789012345678901234567890123",
                                 "ok",     "",
                                 "",       NULL };
        s_test_reject ("long epoch", s_test_zmsg (NULL, "DONE", "id", frames), false,
                       &limits, "DONE: epoch frame too long", verbose);
        const char *hb[] = {
            "1234567890123456789012345678901234567890123456789012345678901."
            "2345",
            NULL
        };
        s_test_reject ("long timestamp", s_test_zmsg (NULL, "HEARTBEAT", "id", hb), false,
                       &limits, "HEARTBEAT: timestamp frame too long", verbose);
    }

    //  UTF-8: every kind of bad sequence refused, good multibyte text kept.
    static const struct {
        const char *bytes;
        size_t size;
        bool valid;
    } utf8[] = {
        { "caf\xc3\xa9", 5, true },       // é
        { "\xe2\x82\xac", 3, true },      // €
        { "\xf0\x9d\x84\x9e", 4, true },  // U+1D11E
        { "\xf4\x8f\xbf\xbf", 4, true },  // U+10FFFF
        { "\xed\x9f\xbf", 3, true },      // U+D7FF
        { "\xff", 1, false },
        { "\x80", 1, false },              // lone continuation
        { "\xc0\x80", 2, false },          // overlong NUL
        { "\xc1\xbf", 2, false },          // overlong
        { "\xe0\x80\xaf", 3, false },      // overlong '/'
        { "\xf0\x80\x80\xaf", 4, false },  // overlong '/'
        { "\xed\xa0\x80", 3, false },      // surrogate U+D800
        { "\xed\xbf\xbf", 3, false },      // surrogate U+DFFF
        { "\xf4\x90\x80\x80", 4, false },  // U+110000
        { "\xf5\x80\x80\x80", 4, false },
        { "\xe2\x82", 2, false },  // truncated
        { "\xc3", 1, false },      // truncated
        { "\xc3\x28", 2, false },  // bad continuation
    };
    for (size_t i = 0; i < sizeof utf8 / sizeof utf8[0]; i++) {
        const s_test_slot_t *slot = &s_test_slots[6];  // REQUEST queue
        zmsg = s_test_slot_zmsg (slot, utf8[i].bytes, utf8[i].size);
        if (utf8[i].valid) {
            msg = s_test_accept ("valid UTF-8", zmsg, false, &limits);
            if (msg)
                CHECK_MEMEQ (msg->queue, strlen (msg->queue), utf8[i].bytes,
                             utf8[i].size);
            emqp_msg_destroy (&msg);
        }
        else
            s_test_reject ("bad UTF-8", zmsg, false, &limits,
                           "REQUEST: queue frame is not valid UTF-8 text", false);
    }

    //  Empty frames where a value is required.
    {
        const char *ack[] = { "", NULL };
        s_test_reject ("empty ack", s_test_zmsg (NULL, "ACK", "id", ack), false, &limits,
                       "ACK: acked msgid frame is empty", verbose);
        const char *req[] = { "", "", "x", NULL };
        s_test_reject ("empty queue", s_test_zmsg (NULL, "REQUEST", "id", req), false,
                       &limits, "REQUEST: queue frame is empty", verbose);
        const char *inform[] = { "", "", NULL };
        s_test_reject ("empty type", s_test_zmsg (NULL, "INFORM", "id", inform), false,
                       &limits, "INFORM: type frame is empty", verbose);
        const char *error[] = { "", "", "", NULL };
        s_test_reject ("empty code", s_test_zmsg (NULL, "ERROR", "id", error), false,
                       &limits, "ERROR: code frame is empty", verbose);
    }

    //  ---- Payload size limits (binary frames, any bytes) ----
    {
        static const char nul_payload[] = { '\x92', '\x00', '\xff', '\xc0' };
        zmsg = s_test_zmsg (NULL, "REQUEST", "id", (const char *[]){ "q", "", NULL });
        zmsg_addmem (zmsg, nul_payload, sizeof nul_payload);
        msg = s_test_accept ("binary payload", zmsg, false, &limits);
        if (msg)
            CHECK_MEMEQ (zframe_data (msg->payload), zframe_size (msg->payload),
                         nul_payload, sizeof nul_payload);
        emqp_msg_destroy (&msg);

        byte *big = calloc (1, limits.payload_max + 1);
        assert (big);
        zmsg = s_test_zmsg (NULL, "REQUEST", "id", (const char *[]){ "q", "", NULL });
        zmsg_addmem (zmsg, big, limits.payload_max);
        msg = s_test_accept ("payload at limit", zmsg, false, &limits);
        CHECK (msg && zframe_size (msg->payload) == limits.payload_max);
        emqp_msg_destroy (&msg);
        zmsg = s_test_zmsg (NULL, "REQUEST", "id", (const char *[]){ "q", "", NULL });
        zmsg_addmem (zmsg, big, limits.payload_max + 1);
        s_test_reject ("payload over limit", zmsg, false, &limits,
                       "REQUEST: payload frame too large (1025 bytes, max 1024)",
                       verbose);
        //  No limits: anything goes.
        zmsg = s_test_zmsg (NULL, "REQUEST", "id", (const char *[]){ "q", "", NULL });
        zmsg_addmem (zmsg, big, limits.payload_max + 1);
        msg = s_test_accept ("no limits", zmsg, false, NULL);
        emqp_msg_destroy (&msg);
        //  Every binary frame is limited: REPLY, SCHEDULE, DONE, RESULT.
        zmsg = s_test_zmsg (NULL, "REPLY", "id", (const char *[]){ NULL });
        zmsg_addmem (zmsg, big, limits.payload_max + 1);
        s_test_reject ("reply over limit", zmsg, false, &limits,
                       "REPLY: reply frame too large", verbose);
        zmsg =
            s_test_zmsg (NULL, "SCHEDULE", "id", (const char *[]){ "q", "", "5", NULL });
        zmsg_addmem (zmsg, big, limits.payload_max + 1);
        zmsg_addstr (zmsg, "");
        s_test_reject ("schedule over limit", zmsg, false, &limits,
                       "SCHEDULE: payload frame too large", verbose);
        zmsg = s_test_zmsg (NULL, "DONE", "id", (const char *[]){ "r", "1", "ok", NULL });
        zmsg_addmem (zmsg, big, limits.payload_max + 1);
        zmsg_addstr (zmsg, "");
        s_test_reject ("done over limit", zmsg, false, &limits,
                       "DONE: result frame too large", verbose);
        zmsg = s_test_zmsg (NULL, "RESULT", "id", (const char *[]){ "r", "ok", NULL });
        zmsg_addmem (zmsg, big, limits.payload_max + 1);
        zmsg_addstr (zmsg, "");
        s_test_reject ("result over limit", zmsg, false, &limits,
                       "RESULT: result frame too large", verbose);
        free (big);
    }

    //  ---- Numbers ----
    static const struct {
        const char *text;
        bool valid;
        double value;
    } stamps[] = {
        { "1795398200.0280507", true, 1795398200.0280507 },
        { "1795398203.536184", true, 1795398203.536184 },
        { "0", true, 0 },
        { "5.", true, 5 },
        { ".5", true, 0.5 },
        { "1795398200", true, 1795398200 },
        { "", false, 0 },
        { "abc", false, 0 },
        { "-1", false, 0 },
        { "+1", false, 0 },
        { "1e9", false, 0 },
        { " 1", false, 0 },
        { "1 ", false, 0 },
        { "1.2.3", false, 0 },
        { ".", false, 0 },
        { "nan", false, 0 },
        { "inf", false, 0 },
        { "0x10", false, 0 },
        { "1,5", false, 0 },
    };
    for (size_t i = 0; i < sizeof stamps / sizeof stamps[0]; i++) {
        const char *frames[] = { stamps[i].text, NULL };
        zmsg = s_test_zmsg (NULL, "HEARTBEAT", "id", frames);
        if (stamps[i].valid) {
            msg = s_test_accept (stamps[i].text, zmsg, false, &limits);
            if (msg)
                CHECK_NEAR (msg->heartbeat_ts, stamps[i].value, 0);
            emqp_msg_destroy (&msg);
        }
        else
            s_test_reject ("bad timestamp", zmsg, false, &limits,
                           *stamps[i].text ? "is not decimal seconds"
                                           : "timestamp frame is empty",
                           false);
    }
    static const struct {
        const char *text;
        bool valid;
        int64_t value;
    } intervals[] = {
        { "-1", true, -1 },
        { "0", true, 0 },
        { "60", true, 60 },
        { "9223372036854775807", true, INT64_MAX },
        { "9223372036854775808", false, 0 },
        { "-2", false, 0 },
        { "1.5", false, 0 },
        { "abc", false, 0 },
        { "+5", false, 0 },
        { " 5", false, 0 },
        { "-0", false, 0 },
        { "", false, 0 },
    };
    for (size_t i = 0; i < sizeof intervals / sizeof intervals[0]; i++) {
        const char *frames[] = { "q", "", intervals[i].text, "p", "", NULL };
        zmsg = s_test_zmsg (NULL, "SCHEDULE", "id", frames);
        if (intervals[i].valid) {
            msg = s_test_accept (intervals[i].text, zmsg, false, &limits);
            if (msg)
                CHECK_EQ (msg->interval_s, intervals[i].value);
            emqp_msg_destroy (&msg);
        }
        else
            s_test_reject ("bad interval", zmsg, false, &limits,
                           *intervals[i].text ? "SCHEDULE: interval"
                                              : "interval frame is empty",
                           false);
    }
    static const struct {
        const char *epoch;
        const char *attempt;
        const char *reason;  // NULL: valid
    } numbers[] = {
        { "1", "1", NULL },
        { "18446744073709551615", "4294967295", NULL },
        { "007", "0", NULL },
        { "18446744073709551616", "1", "epoch '18446744073709551616' is not a number" },
        { "99999999999999999999", "1", "epoch '99999999999999999999' is not a number" },
        { "-1", "1", "epoch '-1' is not a number" },
        { "1x", "1", "epoch '1x' is not a number" },
        { " 1", "1", "epoch ' 1' is not a number" },
        { "", "1", "epoch frame is empty" },
        { "1", "4294967296", "attempt '4294967296' is not a number in 0..4294967295" },
        { "1", "-1", "attempt '-1' is not a number" },
        { "1", "one", "attempt 'one' is not a number" },
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        //  REQUEST's epoch and attempt (router -> emq job manager)...
        const char *frames[] = {
            "q", "", "p", numbers[i].epoch, numbers[i].attempt, NULL
        };
        zmsg = s_test_zmsg (NULL, "REQUEST", "id", frames);
        if (!numbers[i].reason) {
            msg = s_test_accept ("epoch/attempt", zmsg, false, &limits);
            if (msg) {
                CHECK_UEQ (msg->epoch, strtoull (numbers[i].epoch, NULL, 10));
                CHECK_UEQ (msg->attempt, strtoull (numbers[i].attempt, NULL, 10));
            }
            emqp_msg_destroy (&msg);
        }
        else
            s_test_reject ("bad epoch/attempt", zmsg, false, &limits, numbers[i].reason,
                           verbose);
        //  ...and DONE's epoch.
        if (strstr (numbers[i].reason ? numbers[i].reason : "", "attempt"))
            continue;
        const char *done[] = { "r", numbers[i].epoch, "ok", "", "", NULL };
        zmsg = s_test_zmsg (NULL, "DONE", "id", done);
        if (!numbers[i].reason) {
            msg = s_test_accept ("done epoch", zmsg, false, &limits);
            if (msg)
                CHECK_UEQ (msg->epoch, strtoull (numbers[i].epoch, NULL, 10));
            emqp_msg_destroy (&msg);
        }
        else
            s_test_reject ("bad done epoch", zmsg, false, &limits, numbers[i].reason,
                           false);
    }

    //  ---- DONE/RESULT status ----
    static const char *statuses[] = { "weird", "OK", "Failed", "ok ", "" };
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        const char *done[] = { "r", "1", statuses[i], "", "", NULL };
        const char *result[] = { "r", statuses[i], "", "", NULL };
        char reason[64];
        snprintf (reason, sizeof reason, ": unknown status '%s'", statuses[i]);
        const char *expected = *statuses[i] ? reason : "status frame is empty";
        s_test_reject ("bad DONE status", s_test_zmsg (NULL, "DONE", "id", done), false,
                       &limits, expected, verbose);
        s_test_reject ("bad RESULT status", s_test_zmsg (NULL, "RESULT", "id", result),
                       false, &limits, expected, verbose);
    }

    //  ---- Trailing frames a command does not define are ignored ----
    {
        const char *ack[] = { "acked", "extra", "\xff", NULL };
        msg = s_test_accept ("ACK + trailing", s_test_zmsg (NULL, "ACK", "id", ack),
                             false, &limits);
        CHECK (msg && streq (msg->ref, "acked"));
        emqp_msg_destroy (&msg);
        const char *req[] = { "q", "", "p", "5", "2", "extra", NULL };
        msg = s_test_accept ("REQUEST + trailing",
                             s_test_zmsg (NULL, "REQUEST", "id", req), false, &limits);
        CHECK (msg && msg->epoch == 5 && msg->attempt == 2);
        emqp_msg_destroy (&msg);
        //  A lone frame after the payload is not an epoch/attempt pair.
        const char *one[] = { "q", "", "p", "5", NULL };
        msg = s_test_accept ("REQUEST + one", s_test_zmsg (NULL, "REQUEST", "id", one),
                             false, &limits);
        CHECK (msg && msg->epoch == 0 && msg->attempt == 0);
        emqp_msg_destroy (&msg);
        const char *ready[] = { "anything", NULL };
        msg = s_test_accept ("READY + trailing", s_test_zmsg (NULL, "READY", "id", ready),
                             false, &limits);
        emqp_msg_destroy (&msg);
    }

    //  ---- Round trips of every command ----
    for (int n = 0; n < S_TEST_CASES; n++) {
        emqp_msg_t *original = s_test_case (n);
        emqp_msg_t *expected = s_test_case (n);
        CHECK (original && expected);
        if (!original || !expected) {
            emqp_msg_destroy (&original);
            emqp_msg_destroy (&expected);
            continue;
        }
        zmsg = emqp_encode (original);
        CHECK (zmsg != NULL);
        CHECK (original->payload == NULL);  // moved into zmsg
        emqp_msg_destroy (&original);
        msg = s_test_accept (emqp_command_name (expected->command), zmsg, false, NULL);
        if (msg)
            s_test_same (msg, expected);
        emqp_msg_destroy (&msg);
        emqp_msg_destroy (&expected);
    }
    //  Every command has a round-trip case.
    for (int i = EMQP_INVALID + 1; i < EMQP_COMMAND_COUNT; i++) {
        bool found = false;
        for (int n = 0; n < S_TEST_CASES && !found; n++) {
            emqp_msg_t *m = s_test_case (n);
            found = m->command == (emqp_command_t) i;
            emqp_msg_destroy (&m);
        }
        CHECK (found);
    }
    //  Wire layout of the extensions, frame by frame.
    {
        msg = s_test_case (21);  // DONE ok
        zmsg = emqp_encode (msg);
        emqp_msg_destroy (&msg);
        const char *done[] = {
            "",        EMQP_PROTOCOL, "DONE",
            "case-21", "req-done",    "21000",
            "ok",      "\x92\xa3run", "wall_us=1200 cpu_us=900 maxrss_kb=4096",
            NULL
        };
        CHECK_EQ (zmsg_size (zmsg), 9);
        //  Frame 7 holds NUL and 0xff: compare all but it as text.
        zframe_t *frame = zmsg_first (zmsg);
        for (int i = 0; frame && done[i]; i++, frame = zmsg_next (zmsg))
            if (i != 7)
                CHECK_MEMEQ (zframe_data (frame), zframe_size (frame), done[i],
                             strlen (done[i]));
        zmsg_destroy (&zmsg);

        msg = s_test_case (14);  // REQUEST with epoch, attempt
        zmsg = emqp_encode (msg);
        emqp_msg_destroy (&msg);
        CHECK_EQ (zmsg_size (zmsg), 9);
        zframe_t *epoch = zmsg_first (zmsg);
        for (int i = 0; i < 7; i++)
            epoch = zmsg_next (zmsg);
        CHECK (epoch && zframe_streq (epoch, "18446744073709551615"));
        CHECK (zframe_streq (zmsg_last (zmsg), "4294967295"));
        zmsg_destroy (&zmsg);

        msg = s_test_case (13);  // plain REQUEST, as EventMQ
        zmsg = emqp_encode (msg);
        emqp_msg_destroy (&msg);
        s_test_frames (zmsg, (const char *[]){ "", EMQP_PROTOCOL, "REQUEST", "case-13",
                                               "default", "", "[\"run\", {}]", NULL });
        zmsg_destroy (&zmsg);

        msg = s_test_case (2);  // HEARTBEAT with stats
        zmsg = emqp_encode (msg);
        emqp_msg_destroy (&msg);
        s_test_frames (zmsg, (const char *[]){
                                 "", EMQP_PROTOCOL, "HEARTBEAT", "case-2", "0.000000",
                                 "{\"jobs_in_flight\":2,\"total_requests\":10}", NULL });
        zmsg_destroy (&zmsg);

        msg = s_test_case (12);  // INFORM with agent
        zmsg = emqp_encode (msg);
        emqp_msg_destroy (&msg);
        s_test_frames (zmsg,
                       (const char *[]){ "", EMQP_PROTOCOL, "INFORM", "case-12",
                                         "[[10,\"default\"]]", "worker", "emq/1", NULL });
        zmsg_destroy (&zmsg);

        msg = s_test_case (29);  // ERROR
        zmsg = emqp_encode (msg);
        emqp_msg_destroy (&msg);
        s_test_frames (zmsg,
                       (const char *[]){ "", EMQP_PROTOCOL, "ERROR", "case-29", "",
                                         "MALFORMED", "unknown command 'BOGUS'", NULL });
        zmsg_destroy (&zmsg);

        msg = s_test_case (27);  // RESULT
        zmsg = emqp_encode (msg);
        emqp_msg_destroy (&msg);
        s_test_frames (zmsg, (const char *[]){ "", EMQP_PROTOCOL, "RESULT", "case-27",
                                               "req-result", "timeout", "timed out",
                                               "wall_us=1000000", NULL });
        zmsg_destroy (&zmsg);
    }
    //  Defaults when optional fields are unset: empty frames, a fresh msgid,
    //  an empty result; identity goes first.
    {
        msg = emqp_msg_new (EMQP_DONE);
        msg->ref = strdup ("r");
        msg->epoch = 3;
        msg->status = EMQP_STATUS_CRASHED;
        msg->identity = zframe_new ("\x00\x01id", 4);
        zmsg = emqp_encode (msg);
        CHECK (msg->identity == NULL);
        emqp_msg_destroy (&msg);
        CHECK_EQ (zmsg_size (zmsg), 10);
        msg = s_test_accept ("defaults", zmsg, true, &limits);
        if (msg) {
            CHECK_MEMEQ (zframe_data (msg->identity), zframe_size (msg->identity),
                         "\x00\x01id", 4);
            CHECK_EQ (strlen (msg->msgid), 36);
            CHECK_EQ (zframe_size (msg->payload), 0);
            CHECK_STREQ (msg->usage, "");
            CHECK_EQ (msg->status, EMQP_STATUS_CRASHED);
        }
        emqp_msg_destroy (&msg);
        msg = emqp_msg_new (EMQP_REQUEST);
        msg->queue = strdup ("q");
        msg->payload = zframe_new ("p", 1);
        msg->attempt = 4;  // no epoch: EventMQ layout, attempt not sent
        zmsg = emqp_encode (msg);
        emqp_msg_destroy (&msg);
        CHECK_EQ (zmsg_size (zmsg), 7);
        msg = s_test_accept ("request defaults", zmsg, false, &limits);
        CHECK (msg && streq (msg->headers, "") && msg->attempt == 0);
        emqp_msg_destroy (&msg);
        msg = emqp_msg_new (EMQP_SCHEDULE);
        msg->queue = strdup ("q");
        msg->payload = zframe_new ("p", 1);
        msg->interval_s = 10;
        zmsg = emqp_encode (msg);
        emqp_msg_destroy (&msg);
        msg = s_test_accept ("schedule defaults", zmsg, false, &limits);
        CHECK (msg && streq (msg->cron, "") && streq (msg->headers, ""));
        emqp_msg_destroy (&msg);
    }
    //  Missing required fields: encode refuses.
    {
        static const emqp_command_t needs[] = {
            EMQP_ACK,      EMQP_INFORM,     EMQP_REQUEST, EMQP_REPLY,
            EMQP_SCHEDULE, EMQP_UNSCHEDULE, EMQP_DONE,    EMQP_RESULT,
            EMQP_ERROR,    EMQP_FETCH,      EMQP_CANCEL,  EMQP_DEAD_RETRY,
            EMQP_RETURN,   EMQP_PUBLISH,    EMQP_ADMIN,   EMQP_DEAD_DELETE
        };
        for (size_t i = 0; i < sizeof needs / sizeof needs[0]; i++) {
            msg = emqp_msg_new (needs[i]);
            zmsg = emqp_encode (msg);
            if (zmsg)
                fprintf (stderr, "emqp_test: empty %s encoded\n",
                         emqp_command_name (needs[i]));
            CHECK (zmsg == NULL);
            zmsg_destroy (&zmsg);
            emqp_msg_destroy (&msg);
        }
        msg = emqp_msg_new (EMQP_REQUEST);
        msg->queue = strdup ("q");  // no payload
        CHECK (emqp_encode (msg) == NULL);
        emqp_msg_destroy (&msg);
        msg = emqp_msg_new (EMQP_INVALID);
        CHECK (emqp_encode (msg) == NULL);
        emqp_msg_destroy (&msg);
    }

    //  ---- Message ids: UUIDv7, unique, rising, different after fork ----
    {
        zhashx_t *seen = zhashx_new ();
        char id[37], previous[37] = "";
        for (int i = 0; i < 10000; i++) {
            emqp_msgid_new (id);
            CHECK_EQ (strlen (id), 36);
            CHECK (id[8] == '-' && id[13] == '-' && id[18] == '-' && id[23] == '-');
            CHECK (id[14] == '7');
            CHECK (strchr ("89ab", id[19]) != NULL);
            CHECK (strcmp (id, previous) > 0);  // one thread's ids rise
            CHECK (zhashx_insert (seen, id, (void *) 1) == 0);
            memcpy (previous, id, sizeof id);
        }
        //  Their first 48 bits are the time in ms.
        struct timespec ts;
        clock_gettime (CLOCK_REALTIME, &ts);
        uint64_t now_ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
        char stamp[13];
        memcpy (stamp, id, 8);
        memcpy (stamp + 8, id + 9, 4);
        stamp[12] = 0;
        uint64_t id_ms = strtoull (stamp, NULL, 16);
        CHECK (id_ms + 5000 > now_ms && id_ms < now_ms + 5000);
        zhashx_destroy (&seen);
        int fds[2];
        CHECK_EQ (pipe (fds), 0);
        pid_t pid = fork ();
        CHECK (pid >= 0);
        if (pid == 0) {
            emqp_msgid_new (id);
            ssize_t written = write (fds[1], id, 37);
            _exit (written == 37 ? 0 : 1);
        }
        char mine[37], theirs[37] = "";
        emqp_msgid_new (mine);
        CHECK_EQ (read (fds[0], theirs, 37), 37);
        int wstatus = 0;
        CHECK_EQ (waitpid (pid, &wstatus, 0), pid);
        CHECK (WIFEXITED (wstatus) && WEXITSTATUS (wstatus) == 0);
        close (fds[0]);
        close (fds[1]);
        CHECK (strcmp (mine, theirs) != 0);
    }

    //  ---- emqp_send: over a socket pair; errors for vanished peers and
    //  unencodable messages ----
    {
        zsock_t *server = zsock_new_pair ("@inproc://emqp-test-pair");
        zsock_t *client = zsock_new_pair (">inproc://emqp-test-pair");
        assert (server && client);
        msg = s_test_case (14);
        CHECK_EQ (emqp_send (&msg, client), 0);
        CHECK (msg == NULL);
        zmsg = zmsg_recv (server);
        emqp_msg_t *expected = s_test_case (14);
        msg = s_test_accept ("sent", zmsg, false, &limits);
        if (msg)
            s_test_same (msg, expected);
        emqp_msg_destroy (&msg);
        emqp_msg_destroy (&expected);
        msg = emqp_msg_new (EMQP_ACK);  // no ref: cannot encode
        errno = 0;
        CHECK_EQ (emqp_send (&msg, client), -1);
        CHECK_EQ (errno, EINVAL);
        CHECK (msg == NULL);
        zsock_destroy (&client);
        zsock_destroy (&server);

        zsock_t *router = zsock_new_router ("@inproc://emqp-test-router");
        assert (router);
        zsock_set_router_mandatory (router, 1);
        msg = emqp_msg_new (EMQP_KBYE);
        msg->identity = zframe_new ("nobody", 6);
        errno = 0;
        CHECK_EQ (emqp_send (&msg, router), -1);
        CHECK_EQ (errno, EHOSTUNREACH);
        CHECK (msg == NULL);
        zsock_destroy (&router);
    }

    s_test_batch ();

    //  ---- EventMQ 0.3.13's own messages ----
    s_test_vectors (verbose);

    if (verbose)
        printf ("\n   OK\n");
}
