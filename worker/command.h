/*  command — `exec` jobs: an external program run by the worker.

    argv[0] is resolved to an absolute path (PATH search when it has no '/',
    relative to the job's cwd when it is relative) and normalised lexically
    ('.', '..' and repeated '/' removed; symlinks are not followed, so
    '/bin/sh' stays '/bin/sh'). The path must match one of the allow-list's
    fnmatch(3) patterns with FNM_PATHNAME ('*' does not cross '/'); no
    patterns means exec jobs are disabled.

    The command runs in the worker's process group (so a timeout kills it
    with the worker), dies with the worker (PR_SET_PDEATHSIG), gets the
    job's stdin (else /dev/null), env (else the worker's) and cwd. stdout up
    to COMMAND_STDOUT_MAX is the result (msgpack bin); the last
    COMMAND_STDERR_TAIL bytes of stderr go into the error of a failed job.
*/
#ifndef EMQ_COMMAND_H
#define EMQ_COMMAND_H

#include "payload.h"
#include "wire.h"
#include <stdbool.h>
#include <stddef.h>

#define COMMAND_STDOUT_MAX (16u * 1024 * 1024)
#define COMMAND_STDERR_TAIL 4096

//  Resolves argv0 to a normalised absolute path (see above) in path
//  (pathlen bytes). cwd: the job's working directory or NULL. Returns 0, or
//  -1 with the reason in err.
int command_resolve (const char *argv0, const char *cwd, char *path, size_t pathlen,
                     char *err, size_t errlen);

//  True if path matches one of the patterns.
bool command_is_allowed (const char *path, char *const *patterns, size_t count);

//  Runs an `exec` payload and fills outcome: status, value (stdout as a
//  msgpack bin on success, else error text), cpu_us and maxrss_kb of the
//  command. Returns 0, or -1 when out of memory.
int command_run (const payload_t *payload, char *const *patterns, size_t count,
                 wire_msg_t *outcome);

void command_test (bool verbose);

#endif
