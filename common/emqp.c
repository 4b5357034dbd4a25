/*  emqp — the eMQP/1.0 frame codec. See emqp.h and docs/protocol.md.

    Decoding is strict about what a command needs (frame count, sizes, number
    formats, UTF-8 in text frames) and lenient about what it does not know:
    trailing frames beyond a command's layout are ignored, so that peers may
    extend messages as the protocol allows.
*/
#include "emqp.h"

#include <errno.h>
#include <math.h>
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
};

static const char *s_status_names[EMQP_STATUS_COUNT] = {
    [EMQP_STATUS_OK] = "ok",
    [EMQP_STATUS_FAILED] = "failed",
    [EMQP_STATUS_TIMEOUT] = "timeout",
    [EMQP_STATUS_CRASHED] = "crashed",
    [EMQP_STATUS_REJECTED] = "rejected",
};

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
    free (self->queue);
    free (self->headers);
    free (self->cron);
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

typedef struct {
    zmsg_t *zmsg;
    const emqp_limits_t *limits;
    char *err;
    size_t errlen;
    const char *command;        // for error messages
} s_reader_t;

//  Strict UTF-8 check (no overlongs, no surrogates, nothing past U+10FFFF).
static bool
s_is_utf8 (const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return false;       // NUL would truncate our C strings
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
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
        ||  (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static int
s_text (s_reader_t *r, const char *field, size_t max, bool may_be_empty, char **out)
{
    zframe_t *frame = zmsg_pop (r->zmsg);
    if (!frame) {
        snprintf (r->err, r->errlen, "%s: missing %s frame", r->command, field);
        return -1;
    }
    size_t size = zframe_size (frame);
    int rc = -1;
    if (size > max)
        snprintf (r->err, r->errlen, "%s: %s frame too long (%zu bytes, max %zu)",
                  r->command, field, size, max);
    else
    if (size == 0 && !may_be_empty)
        snprintf (r->err, r->errlen, "%s: %s frame is empty", r->command, field);
    else
    if (!s_is_utf8 (zframe_data (frame), size))
        snprintf (r->err, r->errlen, "%s: %s frame is not valid UTF-8 text",
                  r->command, field);
    else {
        *out = malloc (size + 1);
        if (!*out)
            snprintf (r->err, r->errlen, "%s: out of memory", r->command);
        else {
            memcpy (*out, zframe_data (frame), size);
            (*out)[size] = 0;
            rc = 0;
        }
    }
    zframe_destroy (&frame);
    return rc;
}

static int
s_binary (s_reader_t *r, const char *field, zframe_t **out)
{
    zframe_t *frame = zmsg_pop (r->zmsg);
    if (!frame) {
        snprintf (r->err, r->errlen, "%s: missing %s frame", r->command, field);
        return -1;
    }
    size_t max = r->limits ? r->limits->payload_max : SIZE_MAX;
    if (zframe_size (frame) > max) {
        snprintf (r->err, r->errlen, "%s: %s frame too large (%zu bytes, max %zu)",
                  r->command, field, zframe_size (frame), max);
        zframe_destroy (&frame);
        return -1;
    }
    *out = frame;
    return 0;
}

//  Parses a decimal unsigned integer, no sign, no spaces, no overflow.
static int
s_parse_u64 (const char *s, uint64_t *value)
{
    if (!*s || strlen (s) > 20)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        uint64_t digit = (uint64_t) (*p - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    *value = v;
    return 0;
}

static int
s_number (s_reader_t *r, const char *field, uint64_t max, uint64_t *value)
{
    char *text = NULL;
    if (s_text (r, field, 32, false, &text))
        return -1;
    int rc = s_parse_u64 (text, value);
    if (rc || *value > max) {
        snprintf (r->err, r->errlen, "%s: %s '%s' is not a number in 0..%" PRIu64,
                  r->command, field, text, max);
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
    while (*p >= '0' && *p <= '9') { p++; digits++; }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') { p++; digits++; }
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
    if (s_parse_u64 (s, &v) || v > INT64_MAX)
        return -1;
    *value = (int64_t) v;
    return 0;
}

emqp_msg_t *
emqp_decode (zmsg_t **zmsg_p, bool with_identity, const emqp_limits_t *limits,
             zframe_t **identity_p, char *err, size_t errlen)
{
    assert (zmsg_p);
    zmsg_t *zmsg = *zmsg_p;
    *zmsg_p = NULL;
    if (identity_p)
        *identity_p = NULL;
    emqp_msg_t *self = NULL;
    zframe_t *identity = NULL;
    char *command_name = NULL;
    snprintf (err, errlen, "malformed message");
    if (!zmsg)
        goto fail;

    s_reader_t r = { zmsg, limits, err, errlen, "message" };
    if (with_identity) {
        identity = zmsg_pop (zmsg);
        if (!identity || zframe_size (identity) == 0) {
            snprintf (err, errlen, "message without routing identity");
            goto fail;
        }
    }
    zframe_t *frame = zmsg_pop (zmsg);
    if (!frame || zframe_size (frame) != 0) {
        snprintf (err, errlen, "first frame is not the empty delimiter");
        zframe_destroy (&frame);
        goto fail;
    }
    zframe_destroy (&frame);
    frame = zmsg_pop (zmsg);
    if (!frame || !zframe_streq (frame, EMQP_PROTOCOL)) {
        char shown[48];
        snprintf (err, errlen, "protocol frame is '%s', expected " EMQP_PROTOCOL,
                  frame ? emqp_printable (zframe_data (frame), zframe_size (frame),
                                          shown, sizeof shown) : "(missing)");
        zframe_destroy (&frame);
        goto fail;
    }
    zframe_destroy (&frame);

    if (s_text (&r, "command", 64, false, &command_name))
        goto fail;
    emqp_command_t command = emqp_command_lookup (command_name);
    if (command == EMQP_INVALID) {
        char shown[80];
        snprintf (err, errlen, "unknown command '%s'",
                  emqp_printable (command_name, strlen (command_name), shown, sizeof shown));
        goto fail;
    }
    self = emqp_msg_new (command);
    if (!self)
        goto fail;
    r.command = emqp_command_name (command);
    if (s_text (&r, "msgid", EMQP_MSGID_MAX, false, &self->msgid))
        goto fail;

    char *text = NULL;
    uint64_t number;
    switch (command) {
        case EMQP_ACK:
            if (s_text (&r, "acked msgid", EMQP_MSGID_MAX, false, &self->ref))
                goto fail;
            break;
        case EMQP_HEARTBEAT:
            if (s_text (&r, "timestamp", 64, false, &text))
                goto fail;
            if (s_parse_seconds (text, &self->heartbeat_ts)) {
                snprintf (err, errlen, "HEARTBEAT: timestamp '%s' is not decimal seconds", text);
                free (text);
                goto fail;
            }
            free (text);
            if (zmsg_size (zmsg) > 0
            &&  s_text (&r, "stats", EMQP_STATS_MAX, true, &self->stats))
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
            if (s_text (&r, "queues", EMQP_SHORT_MAX, true, &self->queues)
            ||  s_text (&r, "type", 32, false, &self->peer_type))
                goto fail;
            if (zmsg_size (zmsg) > 0
            &&  s_text (&r, "agent", 64, true, &self->agent))
                goto fail;
            break;
        case EMQP_REQUEST:
            if (s_text (&r, "queue", EMQP_QUEUE_MAX, false, &self->queue)
            ||  s_text (&r, "headers", EMQP_HEADERS_MAX, true, &self->headers)
            ||  s_binary (&r, "payload", &self->payload))
                goto fail;
            //  Extension: the router adds epoch and attempt for emq job managers.
            if (zmsg_size (zmsg) >= 2) {
                if (s_number (&r, "epoch", UINT64_MAX, &self->epoch)
                ||  s_number (&r, "attempt", UINT32_MAX, &number))
                    goto fail;
                self->attempt = (uint32_t) number;
            }
            break;
        case EMQP_REPLY:
            if (s_binary (&r, "reply", &self->payload))
                goto fail;
            if (zmsg_size (zmsg) > 0
            &&  s_text (&r, "request msgid", EMQP_MSGID_MAX, false, &self->ref))
                goto fail;
            break;
        case EMQP_SCHEDULE:
        case EMQP_UNSCHEDULE:
            if (s_text (&r, "queue", EMQP_QUEUE_MAX, false, &self->queue)
            ||  s_text (&r, "headers", EMQP_HEADERS_MAX, true, &self->headers)
            ||  s_text (&r, "interval", 32, false, &text))
                goto fail;
            if (s_parse_interval (text, &self->interval_s)) {
                snprintf (err, errlen, "%s: interval '%s' is not -1 or seconds",
                          r.command, text);
                free (text);
                goto fail;
            }
            free (text);
            if (s_binary (&r, "payload", &self->payload)
            ||  s_text (&r, "cron", 256, true, &self->cron))
                goto fail;
            break;
        case EMQP_DONE:
            if (s_text (&r, "request msgid", EMQP_MSGID_MAX, false, &self->ref)
            ||  s_number (&r, "epoch", UINT64_MAX, &self->epoch))
                goto fail;
            /* fall through */
        case EMQP_RESULT:
            if (command == EMQP_RESULT
            &&  s_text (&r, "request msgid", EMQP_MSGID_MAX, false, &self->ref))
                goto fail;
            if (s_text (&r, "status", 16, false, &text))
                goto fail;
            if (emqp_status_lookup (text, &self->status)) {
                snprintf (err, errlen, "%s: unknown status '%s'", r.command, text);
                free (text);
                goto fail;
            }
            free (text);
            if (s_binary (&r, "result", &self->payload)
            ||  s_text (&r, "usage", EMQP_SHORT_MAX, true, &self->usage))
                goto fail;
            break;
        case EMQP_ERROR:
            if (s_text (&r, "refused msgid", EMQP_MSGID_MAX, true, &self->ref)
            ||  s_text (&r, "code", 64, false, &self->error_code)
            ||  s_text (&r, "reason", EMQP_SHORT_MAX, true, &self->error_text))
                goto fail;
            break;
        default:
            assert (false);     // every known command is handled above
    }
    free (command_name);
    zmsg_destroy (&zmsg);
    self->identity = identity;
    return self;

fail:
    free (command_name);
    emqp_msg_destroy (&self);
    zmsg_destroy (&zmsg);
    if (identity_p)
        *identity_p = identity;
    else
        zframe_destroy (&identity);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Encoding

static int
s_add_str (zmsg_t *zmsg, const char *s)
{
    return s ? zmsg_addstr (zmsg, s) : -1;
}

static int
s_add_u64 (zmsg_t *zmsg, uint64_t value)
{
    char buf[24];
    snprintf (buf, sizeof buf, "%" PRIu64, value);
    return zmsg_addstr (zmsg, buf);
}

static int
s_add_frame (zmsg_t *zmsg, zframe_t **frame_p)
{
    if (!*frame_p)
        return -1;
    return zmsg_append (zmsg, frame_p);
}

zmsg_t *
emqp_encode (emqp_msg_t *self)
{
    assert (self);
    zmsg_t *zmsg = zmsg_new ();
    if (!zmsg)
        return NULL;
    if (self->identity)
        zmsg_append (zmsg, &self->identity);
    zmsg_addmem (zmsg, "", 0);
    zmsg_addstr (zmsg, EMQP_PROTOCOL);
    zmsg_addstr (zmsg, emqp_command_name (self->command));
    char fresh[37];
    if (!self->msgid)
        emqp_msgid_new (fresh);
    zmsg_addstr (zmsg, self->msgid ? self->msgid : fresh);

    int rc = 0;
    char buf[64];
    switch (self->command) {
        case EMQP_ACK:
            rc = s_add_str (zmsg, self->ref);
            break;
        case EMQP_HEARTBEAT:
            snprintf (buf, sizeof buf, "%.6f", self->heartbeat_ts);
            rc = zmsg_addstr (zmsg, buf);
            if (!rc && self->stats)
                rc = zmsg_addstr (zmsg, self->stats);
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
            rc = s_add_str (zmsg, self->queues ? self->queues : "");
            rc = rc ? rc : s_add_str (zmsg, self->peer_type);
            if (!rc && self->agent)
                rc = s_add_str (zmsg, self->agent);
            break;
        case EMQP_REQUEST:
            rc = s_add_str (zmsg, self->queue);
            rc = rc ? rc : s_add_str (zmsg, self->headers ? self->headers : "");
            rc = rc ? rc : s_add_frame (zmsg, &self->payload);
            if (!rc && self->epoch) {
                rc = s_add_u64 (zmsg, self->epoch);
                rc = rc ? rc : s_add_u64 (zmsg, self->attempt);
            }
            break;
        case EMQP_REPLY:
            rc = s_add_frame (zmsg, &self->payload);
            if (!rc && self->ref)
                rc = s_add_str (zmsg, self->ref);
            break;
        case EMQP_SCHEDULE:
        case EMQP_UNSCHEDULE:
            rc = s_add_str (zmsg, self->queue);
            rc = rc ? rc : s_add_str (zmsg, self->headers ? self->headers : "");
            snprintf (buf, sizeof buf, "%" PRId64, self->interval_s);
            rc = rc ? rc : zmsg_addstr (zmsg, buf);
            rc = rc ? rc : s_add_frame (zmsg, &self->payload);
            rc = rc ? rc : s_add_str (zmsg, self->cron ? self->cron : "");
            break;
        case EMQP_DONE:
        case EMQP_RESULT:
            rc = s_add_str (zmsg, self->ref);
            if (!rc && self->command == EMQP_DONE)
                rc = s_add_u64 (zmsg, self->epoch);
            rc = rc ? rc : s_add_str (zmsg, emqp_status_name (self->status));
            if (!rc && !self->payload)
                self->payload = zframe_new (NULL, 0);
            rc = rc ? rc : s_add_frame (zmsg, &self->payload);
            rc = rc ? rc : s_add_str (zmsg, self->usage ? self->usage : "");
            break;
        case EMQP_ERROR:
            rc = s_add_str (zmsg, self->ref ? self->ref : "");
            rc = rc ? rc : s_add_str (zmsg, self->error_code);
            rc = rc ? rc : s_add_str (zmsg, self->error_text ? self->error_text : "");
            break;
        default:
            rc = -1;
    }
    if (rc) {
        zmsg_destroy (&zmsg);
        return NULL;
    }
    return zmsg;
}

int
emqp_send (emqp_msg_t **self_p, zsock_t *sock)
{
    assert (self_p && *self_p);
    zmsg_t *zmsg = emqp_encode (*self_p);
    emqp_msg_destroy (self_p);
    if (!zmsg) {
        errno = EINVAL;
        return -1;
    }
    //  Send frame by frame with DONTWAIT so a full pipe or a vanished
    //  ROUTER peer is reported, never blocks. ZeroMQ guarantees that a
    //  multipart message is atomic: if the first frame fails nothing is sent.
    void *handle = zsock_resolve (sock);
    size_t count = zmsg_size (zmsg);
    size_t index = 0;
    zframe_t *frame;
    while ((frame = zmsg_pop (zmsg))) {
        int flags = ZMQ_DONTWAIT | (++index < count ? ZMQ_SNDMORE : 0);
        int rc = zmq_send (handle, zframe_data (frame), zframe_size (frame), flags);
        zframe_destroy (&frame);
        if (rc == -1) {
            int saved = errno;
            //  Only the first frame can fail once a message has started.
            zmsg_destroy (&zmsg);
            errno = saved;
            return -1;
        }
    }
    zmsg_destroy (&zmsg);
    return 0;
}

//  A uuid4 from a per-process random stream. getrandom seeds it once; the
//  stream is xoshiro256** so a message id costs no system call.
static uint64_t s_rng[4];
static bool s_rng_seeded;
static pid_t s_rng_pid;

static uint64_t
s_rotl (uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t
s_rng_next (void)
{
    //  Reseed after fork so parent and child never share a stream.
    if (!s_rng_seeded || s_rng_pid != getpid ()) {
        if (getrandom (s_rng, sizeof s_rng, 0) != (ssize_t) sizeof s_rng) {
            //  Fall back on time and pid; ids stay unique enough per process.
            s_rng[0] = (uint64_t) zclock_usecs ();
            s_rng[1] = (uint64_t) getpid () * 0x9E3779B97F4A7C15ULL;
            s_rng[2] = s_rng[0] ^ 0xD1B54A32D192ED03ULL;
            s_rng[3] = s_rng[1] ^ 0xABCDEF0123456789ULL;
        }
        s_rng_seeded = true;
        s_rng_pid = getpid ();
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

void
emqp_msgid_new (char buf[37])
{
    uint8_t b[16];
    uint64_t a = s_rng_next (), c = s_rng_next ();
    memcpy (b, &a, 8);
    memcpy (b + 8, &c, 8);
    b[6] = (b[6] & 0x0F) | 0x40;    // version 4
    b[8] = (b[8] & 0x3F) | 0x80;    // RFC 4122 variant
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
