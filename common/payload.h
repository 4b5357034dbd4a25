/*  payload — the msgpack job payloads emq's job managers run.

    Encoded as a msgpack map:
      run:  {"kind":"run",  "library":str, "function":str, "args":any}
      exec: {"kind":"exec", "argv":[str...], "stdin":bin?, "env":{str:str}?,
             "cwd":str?}
    Either kind may add "limits": {"as":uint,"nproc":uint,"nofile":uint,
    "cpu":uint} (each optional, > 0), resource limits lower than the job
    manager's own.
    Results: a run job's value is whatever the function packed; an exec job's
    value is its stdout as msgpack bin (so tools print it raw).
    The router never decodes payloads; libemq encodes, the worker decodes.

    Decoding is strict, since the bytes come from the network: exactly one
    msgpack map and nothing after it, every key known and given once, every
    field of the right type, no NUL inside strings that become C strings,
    limits on counts and nesting. Each rejection names its reason, e.g.
    "payload: exec: argv[2] is not a string".
*/
#ifndef EMQ_PAYLOAD_H
#define EMQ_PAYLOAD_H

#include <czmq.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Nesting limit for any msgpack value we decode (msgpack-c's unpacker
//  cannot go deeper than 32 containers anyway; we say why instead).
#define PAYLOAD_DEPTH_MAX 32
//  Largest argv / env accepted in an exec payload.
#define PAYLOAD_ARGC_MAX 4096
#define PAYLOAD_ENVC_MAX 4096

typedef enum { PAYLOAD_RUN, PAYLOAD_EXEC } payload_kind_t;

//  Resource limits a job asks for (either kind): 0 = not asked. The job
//  manager's settings cap them; a job can only ask for less.
typedef struct {
    uint64_t as_bytes;  // "as": address space, bytes (RLIMIT_AS)
    uint64_t nproc;     // "nproc": processes of the user (RLIMIT_NPROC)
    uint64_t nofile;    // "nofile": open files (RLIMIT_NOFILE)
    uint64_t cpu_s;     // "cpu": CPU seconds (RLIMIT_CPU)
} payload_limits_t;

typedef struct {
    payload_kind_t kind;
    //  run
    char *library;
    char *function;
    char *args;  // msgpack bytes of the arguments (owned)
    size_t args_size;
    //  exec
    char **argv;  // argc entries + NULL
    size_t argc;
    char *stdin_data;  // may be NULL
    size_t stdin_size;
    char **env;  // "NAME=VALUE", envc entries + NULL; may be NULL
    size_t envc;
    char *cwd;  // may be NULL
    //  both
    payload_limits_t limits;  // "limits": {"as":N,"nproc":N,"nofile":N,"cpu":N}
} payload_t;

//  Decodes a payload; caller owns the result. On malformed input returns
//  NULL with the reason in err.
payload_t *payload_decode (const void *data, size_t size, char *err, size_t errlen);
//  Encodes *self into sbuf (appending). Returns 0 or -1 (missing fields).
int payload_encode (const payload_t *self, msgpack_sbuffer *sbuf);
//  Destroys a payload and nulls the pointer; NULL is fine.
void payload_destroy (payload_t **self_p);

//  Returns the kind's wire name ("run", "exec").
const char *payload_kind_name (payload_kind_t kind);

//  Packs size bytes of text as one msgpack str (e.g. EventMQ's JSON reply
//  text, which emq clients receive as a msgpack value). Returns a new frame
//  the caller owns, or NULL when memory ran out.
zframe_t *payload_pack_str (const void *data, size_t size);

//  Checks that data holds exactly one well-formed msgpack value: complete,
//  no trailing bytes, no reserved type byte, container counts that fit in
//  the bytes left, nesting at most max_depth (<= PAYLOAD_DEPTH_MAX). Run it
//  before msgpack_unpack on untrusted bytes (job arguments, job results).
//  Returns 0, or -1 with the reason in err.
int payload_msgpack_check (const void *data, size_t size, int max_depth, char *err,
                           size_t errlen);

void payload_test (bool verbose);

#endif
