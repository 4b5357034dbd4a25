/*  fuzz_payload — job payloads in both forms (common/payload.c and
    common/json.c): the msgpack bytes a worker decodes, and the JSON text
    the CLI turns into msgpack job arguments.

    Input: the same bytes are tried as both.
      - msgpack: payload_decode, payload_msgpack_check and json_from_msgpack
        (how results are shown). A decoded payload encodes and decodes
        again to the same kind; bytes json_from_msgpack renders passed the
        check first.
      - JSON (up to a NUL): json_to_msgpack; what it produces passes
        payload_msgpack_check, renders back to JSON, and is tried as a
        payload too.
*/
#include "fuzz.h"

#include "common/json.h"
#include "common/payload.h"

static void
s_payload (const void *data, size_t size)
{
    char err[256] = "";
    payload_t *payload = payload_decode (data, size, err, sizeof err);
    if (!payload) {
        FUZZ_ASSERT (*err);
        return;
    }
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    FUZZ_ASSERT (payload_encode (payload, &sbuf) == 0);
    payload_t *again = payload_decode (sbuf.data, sbuf.size, err, sizeof err);
    if (!again)
        fprintf (stderr, "re-encoded payload refused: %s\n", err);
    FUZZ_ASSERT (again && again->kind == payload->kind);
    if (payload->kind == PAYLOAD_EXEC)
        FUZZ_ASSERT (again->argc == payload->argc && again->envc == payload->envc);
    payload_destroy (&again);
    msgpack_sbuffer_destroy (&sbuf);
    payload_destroy (&payload);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char err[256];
    //  msgpack
    s_payload (data, size);
    bool well_formed =
        payload_msgpack_check (data, size, PAYLOAD_DEPTH_MAX, err, sizeof err) == 0;
    char *json = json_from_msgpack (data, size, err, sizeof err);
    if (json)
        FUZZ_ASSERT (well_formed);
    free (json);

    //  JSON
    char *text = fuzz_cstring (data, size);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    if (json_to_msgpack (text, &sbuf, err, sizeof err) == 0) {
        FUZZ_ASSERT (sbuf.size > 0);
        FUZZ_ASSERT (payload_msgpack_check (sbuf.data, sbuf.size, PAYLOAD_DEPTH_MAX, err,
                                            sizeof err)
                     == 0);
        char *back = json_from_msgpack (sbuf.data, sbuf.size, err, sizeof err);
        if (!back)
            fprintf (stderr, "JSON -> msgpack -> JSON refused: %s\n", err);
        FUZZ_ASSERT (back);
        free (back);
        s_payload (sbuf.data, sbuf.size);
    }
    else
        FUZZ_ASSERT (sbuf.size == 0);
    msgpack_sbuffer_destroy (&sbuf);
    free (text);
    return 0;
}
