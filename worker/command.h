/*  command — `exec` jobs: an external program run by the worker.

    argv[0] is resolved to an absolute path (PATH search when it has no '/',
    relative to the job's cwd when it is relative) and normalised lexically
    ('.', '..' and repeated '/' removed; symlinks are not followed, so
    '/bin/sh' stays '/bin/sh'). The path must match one of the allow-list's
    fnmatch(3) patterns with FNM_PATHNAME ('*' does not cross '/'); no
    patterns means exec jobs are disabled.

    The command runs in the worker's process group (so a timeout kills it
    with the worker), dies with the worker (PR_SET_PDEATHSIG), gets the
    job's stdin (else /dev/null), env (else the worker's; names checked
    against exec_env_allow), resource limits and cwd. When it ends, whatever
    it left running is killed (see proctree.h). stdout up
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

//  What an exec job may do, from the job manager's settings (borrowed).
typedef struct {
    char *const *allow;       // fnmatch patterns for the command's path
    size_t allow_count;       // 0 = exec jobs are disabled
    char *const *env_allow;   // fnmatch patterns for env names (exec_env_allow)
    size_t env_allow_count;   // 0 = a job may not give an env map
    payload_limits_t limits;  // the job's limits (settings and its own ask combined)
    //  Kill and reap every other child of this process when the command
    //  ends: set by a worker, which is a subreaper and has no child but
    //  what jobs left behind. Off for in-process use (tests).
    bool reap_all;
    //  Every signal handler of this process is the default but SIGPIPE's
    //  (a worker that has run no in-process job yet): the command's child
    //  then resets SIGPIPE only, not all 64 with a system call each.
    bool handlers_default;
} command_policy_t;

//  True if name may be set by a job's env map: it matches one of the
//  patterns, and a loader or interpreter variable (LD_*, GCONV_PATH,
//  MALLOC_*, BASH_ENV, PYTHON*, ...; see command_env_is_loader) only when a
//  pattern is exactly its name.
bool command_env_is_allowed (const char *name, char *const *patterns, size_t count);
//  True for the variables that change how the loader, libc, a shell or an
//  interpreter runs a program (code injection through the environment).
bool command_env_is_loader (const char *name);

//  Runs an `exec` payload and fills outcome: status, value (stdout as a
//  msgpack bin on success, else error text), cpu_us and maxrss_kb of the
//  command. stdout past COMMAND_STDOUT_MAX kills the command and all it
//  started ("output limit"). Returns 0, or -1 when out of memory.
int command_run (const payload_t *payload, const command_policy_t *policy,
                 wire_msg_t *outcome);

void command_test (bool verbose);

#endif
