/*  json — msgpack <-> JSON, with jansson, for people and tools.

    The CLI takes job arguments as JSON and prints msgpack results as JSON.
    Mapping, both ways where it exists:
        nil <-> null, bool <-> true/false, int <-> integer, float <-> real,
        str <-> string, array <-> array, map <-> object.
    msgpack -> JSON only:
        - uint64 above INT64_MAX becomes a real (JSON has no such integer
          in jansson); NaN and infinities become null.
        - str or bin holding valid UTF-8 becomes a JSON string; other bytes
          become {"$base64":"<RFC 4648 base64>"}. An ext value becomes
          {"$ext":type,"$base64":"..."}.
        - a map key that is not a UTF-8 string becomes the compact JSON text
          of the key (1 -> "1"); when two keys collide the later one wins.
    JSON -> msgpack: numbers without fraction or exponent become integers,
    others float64; strings become str (\u0000 allowed); duplicate object
    keys are an error. Both directions refuse nesting deeper than
    JSON_DEPTH_MAX, so hostile input cannot exhaust the stack, and the
    result always fits inside a job payload.
*/
#ifndef EMQ_JSON_H
#define EMQ_JSON_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

//  Containers nested deeper than this are refused (one level less than
//  PAYLOAD_DEPTH_MAX, since arguments sit inside the payload map).
#define JSON_DEPTH_MAX 31

//  Parses json_text (any JSON value, not only objects and arrays) and
//  appends it to sbuf as one msgpack value. Returns 0, or -1 with the
//  reason in err ("invalid JSON at line 1, column 5: ..."); on failure sbuf
//  is left as it was.
int json_to_msgpack (const char *json_text, msgpack_sbuffer *sbuf, char *err,
                     size_t errlen);

//  Renders obj as compact JSON. Returns a malloc'd NUL-terminated string the
//  caller frees, or NULL with the reason in err.
char *msgpack_to_json (const msgpack_object *obj, char *err, size_t errlen);

//  Same for raw msgpack bytes from the network: checks them strictly first
//  (exactly one value, see payload_msgpack_check), then unpacks and renders.
char *json_from_msgpack (const void *data, size_t size, char *err, size_t errlen);

//  Writes the RFC 4648 base64 of data to a malloc'd string (caller frees),
//  or returns NULL when out of memory.
char *json_base64 (const void *data, size_t size);

void json_test (bool verbose);

#endif
