/*  payload — the msgpack job payloads emq's job managers run.

    Encoded as a msgpack map:
      run:  {"kind":"run",  "library":str, "function":str, "args":any}
      exec: {"kind":"exec", "argv":[str...], "stdin":bin?, "env":{str:str}?,
             "cwd":str?}
    Results: a run job's value is whatever the function packed; an exec job's
    value is its stdout as msgpack bin (so tools print it raw).
    The router never decodes payloads; libemq encodes, the worker decodes.
*/
#ifndef EMQ_PAYLOAD_H
#define EMQ_PAYLOAD_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum { PAYLOAD_RUN, PAYLOAD_EXEC } payload_kind_t;

typedef struct {
    payload_kind_t kind;
    //  run
    char *library;
    char *function;
    char *args;             // msgpack bytes of the arguments (owned)
    size_t args_size;
    //  exec
    char **argv;            // argc entries + NULL
    size_t argc;
    char *stdin_data;       // may be NULL
    size_t stdin_size;
    char **env;             // "NAME=VALUE", envc entries + NULL; may be NULL
    size_t envc;
    char *cwd;              // may be NULL
} payload_t;

//  Decodes a payload; caller owns the result. On malformed input returns
//  NULL with the reason in err.
payload_t *payload_decode (const void *data, size_t size, char *err, size_t errlen);
//  Encodes *self into sbuf (appending). Returns 0 or -1 (missing fields).
int payload_encode (const payload_t *self, msgpack_sbuffer *sbuf);
void payload_destroy (payload_t **self_p);

void payload_test (bool verbose);

#endif
