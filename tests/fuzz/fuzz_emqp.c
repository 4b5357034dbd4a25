/*  fuzz_emqp — the eMQP frame decoder (common/emqp.c): emqp_decode_fault on
    any multipart message, emqp_batch_unpack on every BATCH it accepts, and
    the round trip of what it accepts.

    Input: one flags byte, then frames, each a 2-byte big-endian length and
    that many bytes (a short last frame takes what is left).
        flags bit 0: the first frame is a ROUTER routing id (with_identity)
        flags bit 1: a 64-byte payload limit instead of 1 MiB (TOO_LARGE)
    Properties: a refused message has a fault code and a NUL-terminated
    reason; an accepted one (and each message a BATCH carries) encodes, and
    its encoding decodes again to the same command and msgid.
*/
#include "fuzz.h"

#include "common/emqp.h"
#include "common/log.h"

#include <czmq.h>

static void
s_round_trip (emqp_msg_t *msg, const emqp_limits_t *limits)
{
    //  A BATCH inside a batch or an invalid message has nothing to encode.
    if (msg->command == EMQP_INVALID)
        return;
    emqp_command_t command = msg->command;
    char *msgid = strdup (msg->msgid);
    FUZZ_ASSERT (msgid);
    bool with_identity = msg->identity != NULL;
    zmsg_t *zmsg = emqp_encode (msg);
    FUZZ_ASSERT (zmsg);
    emqp_fault_t fault;
    emqp_msg_t *again = emqp_decode_fault (&zmsg, with_identity, limits, NULL, &fault);
    if (!again)
        fprintf (stderr, "round trip of %s refused: %s\n", emqp_command_name (command),
                 fault.text);
    FUZZ_ASSERT (again);
    FUZZ_ASSERT (again->command == command);
    FUZZ_ASSERT (strcmp (again->msgid, msgid) == 0);
    emqp_msg_destroy (&again);
    free (msgid);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static bool initialised;
    if (!initialised) {
        //  Refusals are logged by callers, not by the codec; keep it quiet.
        log_init ("fuzz_emqp", LOG_LEVEL_ERROR);
        initialised = true;
    }
    if (size < 1)
        return 0;
    bool with_identity = data[0] & 1;
    emqp_limits_t limits = { .payload_max = (data[0] & 2) ? 64 : 1024 * 1024 };
    zmsg_t *zmsg = zmsg_new ();
    FUZZ_ASSERT (zmsg);
    size_t at = 1;
    while (at < size) {
        size_t len = size - at >= 2 ? ((size_t) data[at] << 8 | data[at + 1]) : 0;
        at += size - at >= 2 ? 2 : size - at;
        if (len > size - at)
            len = size - at;
        FUZZ_ASSERT (zmsg_addmem (zmsg, data + at, len) == 0);
        at += len;
    }
    zframe_t *identity = NULL;
    emqp_fault_t fault;
    memset (&fault, 0xA5, sizeof fault);
    emqp_msg_t *msg =
        emqp_decode_fault (&zmsg, with_identity, &limits, &identity, &fault);
    FUZZ_ASSERT (zmsg == NULL);
    if (!msg) {
        FUZZ_ASSERT (fault.code > EMQP_ERR_NONE && fault.code < EMQP_ERR_COUNT);
        FUZZ_ASSERT (memchr (fault.text, 0, sizeof fault.text));
        FUZZ_ASSERT (strcmp (emqp_error_name (fault.code), "unknown") != 0);
        zframe_destroy (&identity);
        return 0;
    }
    FUZZ_ASSERT (msg->msgid);
    if (msg->command == EMQP_BATCH) {
        size_t count = 0;
        char err[256];
        emqp_msg_t **msgs = emqp_batch_unpack (msg, &limits, &count, err, sizeof err);
        FUZZ_ASSERT (msgs || count == 0);
        for (size_t i = 0; i < count; i++) {
            FUZZ_ASSERT (msgs[i]);
            if (msgs[i]->command == EMQP_INVALID)
                FUZZ_ASSERT (msgs[i]->error_text && msgs[i]->error_code);
            else
                s_round_trip (msgs[i], &limits);
            emqp_msg_destroy (&msgs[i]);
        }
        free (msgs);
    }
    else
        s_round_trip (msg, &limits);
    emqp_msg_destroy (&msg);
    zframe_destroy (&identity);
    return 0;
}
