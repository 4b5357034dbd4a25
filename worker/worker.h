/*  worker — the code that runs inside a forked worker process.

    The job manager's pool forks a worker with one end of a socketpair and
    calls worker_main(), which never returns. The worker cuts itself loose
    from the parent (closes every inherited descriptor but its own, dies with
    the parent, gets its own process group so a timeout can kill everything
    it started), runs the setup hook, says HELLO, then reads JOB messages
    and answers each with an OUTCOME (see wire.h). It never touches ZeroMQ:
    the parent's sockets and threads do not exist in a forked child. It
    leaves with _exit() after max_job_count jobs, when its resident set
    passes max_rss_kb, at end of file on its pipe, or if the pipe breaks.

    worker_config_t is what a worker needs to know; the job manager builds
    one from its settings and the fork copies it into the child.
*/
#ifndef EMQ_WORKER_H
#define EMQ_WORKER_H

#include "emq/job.h"
#include "handoff.h"
#include "payload.h"
#include "wire.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

//  Resource limits (setrlimit) for a job; 0 = none. The settings give the
//  most; a job may ask for less in its payload (worker_limits_min).
typedef payload_limits_t worker_limits_t;

typedef struct {
    char **plugin_dirs;  // directories run jobs may load libraries from
    size_t plugin_dir_count;
    char **exec_allow;        // fnmatch patterns for exec commands
    size_t exec_allow_count;  // 0 = exec jobs are disabled
    char *setup;              // "LIB:FN" run once per worker, or NULL
    char *job_entry;          // "LIB:FN" run before every job, or NULL
    char *job_exit;           // "LIB:FN" run after every job, or NULL
    uint64_t max_job_count;   // jobs before the worker exits; 0 = unlimited
    uint64_t max_rss_kb;      // exit after a job past this RSS; 0 = off
    char **python_path;       // directories put first on sys.path
    size_t python_path_count;
    char **python_allow;        // fnmatch patterns of modules python jobs may
    size_t python_allow_count;  // name; 0 = python jobs are disabled
    char *python_setup;         // dotted paths of EventMQ's hooks, or NULL
    char *python_job_entry;
    char *python_job_exit;
    char **env_allow;        // fnmatch patterns for names an exec job's env may set
    size_t env_allow_count;  // 0 = an exec job may not give an env map
    worker_limits_t limits;  // the most a job may use; 0 = no limit
    //  Credentials to switch to after fork (resolved by the job manager, so
    //  the child only makes system calls); switch_user false = keep ours.
    bool switch_user;
    uid_t uid;
    gid_t gid;
    gid_t *groups;  // supplementary groups of the user
    size_t group_count;
} worker_config_t;

//  Creates an empty configuration; caller owns it.
worker_config_t *worker_config_new (void);
//  Destroys a configuration and nulls the pointer; NULL is fine.
void worker_config_destroy (worker_config_t **self_p);
//  Appends a copy of dir / pattern. Return 0 or -1 (out of memory).
int worker_config_add_plugin_dir (worker_config_t *self, const char *dir);
int worker_config_add_exec_allow (worker_config_t *self, const char *pattern);
int worker_config_add_python_path (worker_config_t *self, const char *dir);
int worker_config_add_python_allow (worker_config_t *self, const char *pattern);
//  Sets a python hook ("setup", "job_entry", "job_exit") to a dotted path
//  (pkg.module.function or pkg.module:function), or none for NULL/"".
//  Returns 0, or -1 if the spec is malformed (reason in err).
int worker_config_set_python_hook (worker_config_t *self, const char *which,
                                   const char *spec, char *err, size_t errlen);
int worker_config_add_env_allow (worker_config_t *self, const char *pattern);
//  Sets the credentials workers switch to: uid, gid and the supplementary
//  groups (copied). Returns 0 or -1 (out of memory).
int worker_config_set_user (worker_config_t *self, uid_t uid, gid_t gid,
                            const gid_t *groups, size_t group_count);
//  The limits a job gets: each of the job's that is set and lower than the
//  setting's, else the setting's.
worker_limits_t worker_limits_min (const worker_limits_t *settings,
                                   const worker_limits_t *job);
//  Sets a hook ("LIB:FN", or NULL/"" for none). Returns 0, or -1 if the spec
//  is malformed (reason in err).
int worker_config_set_hook (worker_config_t *self, const char *which, const char *spec,
                            char *err, size_t errlen);
//  True if both configurations would make the same worker (for SIGHUP).
bool worker_config_equal (const worker_config_t *a, const worker_config_t *b);

//  Hands argv and envp to libbsd's setproctitle_init; main() calls it
//  before anything else touches them. Without it workers keep their title.
void worker_title_init (int argc, char *argv[], char *envp[]);

//  Runs a worker in the current (freshly forked) process on fd. Never
//  returns. parent is the job manager's pid (to notice it died before
//  PR_SET_PDEATHSIG was in place); handoff is the page it shares with the
//  job manager, where it takes each job before running it.
void worker_main (int fd, pid_t parent, handoff_t *handoff, const worker_config_t *config)
    __attribute__ ((noreturn));

//  The worker's state outside of worker_main, for tests and for running
//  one job in-process: the plugin cache and the hooks.
typedef struct worker_t worker_t;

//  Creates a worker context with a borrowed config; caller owns it.
worker_t *worker_new (const worker_config_t *config);
void worker_destroy (worker_t **self_p);
//  Runs the setup hook if one is configured. Returns 0, or -1 with the
//  reason in err.
int worker_setup (worker_t *self, char *err, size_t errlen);
//  Runs one job (a JOB message) and returns its OUTCOME (caller owns it;
//  NULL only when out of memory). Fills in resource use; never sets
//  retiring.
wire_msg_t *worker_run_job (worker_t *self, const wire_msg_t *job);
//  True once the worker should be replaced whatever its job count (its
//  python interpreter could not start).
bool worker_is_broken (const worker_t *self);

void worker_test (bool verbose);

#endif
