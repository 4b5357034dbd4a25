/*  plugin — `run` jobs: a function in a shared library from the plugin
    directories, called with the emq/job.h signature.

    A library is named by a plain file name (no '/'); it is looked for in
    each plugin directory in order, and its real path (symlinks resolved)
    must still lie inside that directory, so neither '../x.so' nor a symlink
    pointing out of the directory can load code from elsewhere. Each library
    is dlopen()ed once per worker and kept (RTLD_NOW | RTLD_LOCAL).
*/
#ifndef EMQ_PLUGIN_H
#define EMQ_PLUGIN_H

#include "emq/job.h"
#include "payload.h"
#include "wire.h"
#include <stdbool.h>
#include <stddef.h>

typedef struct plugin_cache_t plugin_cache_t;

//  Creates an empty cache of loaded libraries over borrowed directories
//  (they must outlive the cache). Caller owns it.
plugin_cache_t *plugin_cache_new (char *const *dirs, size_t dir_count);
//  Destroys the cache (dlclose()s every library) and nulls the pointer.
void plugin_cache_destroy (plugin_cache_t **self_p);

//  Resolves library to the real path of a file inside one of dirs. Returns
//  0 with the path in path (pathlen bytes), or -1 with the reason in err.
int plugin_resolve (char *const *dirs, size_t dir_count, const char *library, char *path,
                    size_t pathlen, char *err, size_t errlen);

//  Finds symbol in library, loading the library on first use; a symbol the
//  library only resolves from a dependency is refused. Returns the address,
//  or NULL with the reason in err. (Hooks name their symbol in full.)
void *plugin_symbol (plugin_cache_t *self, const char *library, const char *symbol,
                     char *err, size_t errlen);

//  A job names a function F; the worker calls the library's symbol
//  PLUGIN_JOB_PREFIX F (emq_run_upper for "upper"), and only if the library
//  itself defines it: so a job can call what the library exports as jobs,
//  never its helpers nor what it links (libc's fork, abort, getpid).
#define PLUGIN_JOB_PREFIX EMQ_RUN_PREFIX
#define PLUGIN_FUNCTION_MAX 200

//  Finds job function `function` of library (see PLUGIN_JOB_PREFIX). Returns
//  the address, or NULL with the reason in err.
void *plugin_job_function (plugin_cache_t *self, const char *library,
                           const char *function, char *err, size_t errlen);

//  Splits a hook spec "LIB:FN" into its parts (written to lib / fn).
//  Returns 0, or -1 if the spec is malformed.
int plugin_spec_parse (const char *spec, char *lib, size_t liblen, char *fn,
                       size_t fnlen);

//  Runs a `run` payload: looks the function up, unpacks the arguments, calls
//  it with job, checks that it packed exactly one object. Sets
//  outcome->status and outcome->value (the packed result on success, error
//  text otherwise). Returns 0, or -1 when out of memory.
int plugin_run (plugin_cache_t *self, const payload_t *payload, emq_job_t *job,
                wire_msg_t *outcome);

void plugin_test (bool verbose);

#endif
