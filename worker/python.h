/*  python — python jobs: EventMQ's `run` payloads, in an embedded CPython.

    The interpreter lives in a plugin of its own, emq_python.so (built from
    worker/python_embed.c and linked with libpython), so that neither the job
    manager nor a worker that only runs C and exec jobs loads libpython: a
    worker dlopen()s the plugin on its first python job, starts the
    interpreter then (with its module search path, allow-list and hooks) and
    keeps it for the rest of its life. The plugin is looked for at
    <dir of the running program>/../lib/emq/emq_python.so (the build tree,
    an install with the default LIBDIR), else at LIBDIR/emq/ where `make
    install` put it (EMQ_PYTHON_PLUGIN overrides both, for tests).

    The plugin's two functions, below, are the whole interface; it sees
    nothing of the worker's own code (the job manager is not linked with
    -rdynamic), so it takes plain C strings and hands back malloc'd text.
*/
#ifndef EMQ_PYTHON_H
#define EMQ_PYTHON_H

#include "emq/job.h"
#include "payload.h"
#include "wire.h"
#include <stdbool.h>
#include <stddef.h>

//  What the interpreter is started with (all borrowed).
typedef struct {
    char *const *path;  // directories put first on sys.path, in order
    size_t path_count;
    char *const *allow;  // fnmatch patterns of the modules jobs may name
    size_t allow_count;
    const char *setup;      // dotted path run once, or NULL
    const char *job_entry;  // dotted path run before each job, or NULL
    const char *job_exit;   // dotted path run after each job, or NULL
} emq_python_config_t;

//  One call into the interpreter.
typedef struct {
    const char *path;      // in: "pkg.module" or "pkg.module:Class"
    const char *callable;  // in
    const char *args;      // in: JSON {"args","kwargs","class_args","class_kwargs"}
    int status;            // out: EMQP_STATUS_OK, _FAILED or _REJECTED
    char *text;            // out, malloc'd: on ok the reply JSON {"value": ...},
                           // else the error (a traceback for an exception);
                           // UTF-8, not NUL-terminated
    size_t size;           // out: bytes of text
} emq_python_call_t;

//  The plugin's functions (looked up by these names).
//  Starts the interpreter, finds the entry and exit hooks and runs the
//  setup hook. Returns 0 (with the setup hook's traceback in warning if it
//  raised: the worker goes on without it, as EventMQ's does), or -1 with
//  the reason in err (then the interpreter must not be used again).
typedef int (emq_python_init_fn) (const emq_python_config_t *config, char *err,
                                  size_t errlen, char *warning, size_t warninglen);
//  Runs one job: checks the allow-list, imports, calls, encodes the value.
typedef void (emq_python_call_fn) (emq_python_call_t *call);

//  The worker's side: the plugin, once loaded.
typedef struct python_t python_t;

//  Creates the worker's python state over a borrowed config (nothing is
//  loaded yet). Caller owns it; NULL when out of memory.
python_t *python_new (const emq_python_config_t *config);
//  Frees it and nulls the pointer. The interpreter is not finalised and
//  the plugin stays loaded: a worker leaves with _exit().
void python_destroy (python_t **self_p);

//  Runs a python payload, loading the plugin and starting the interpreter
//  on the first call. Sets outcome->status and value (on ok, a msgpack str
//  holding the reply JSON; else the error text). Sets *broken when the
//  interpreter could not be started (the worker should be replaced).
//  Returns 0, or -1 when out of memory.
int python_run (python_t *self, const payload_t *payload, wire_msg_t *outcome,
                bool *broken);

//  Where the plugin is looked for (see above); writes it to path.
void python_plugin_path (char *path, size_t pathlen);

void python_test (bool verbose);

#endif
