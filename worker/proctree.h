/*  proctree — ending every process a job started.

    A job's command may fork, go to the background, or setsid() out of its
    process group; a process-group kill misses those. The worker (and the
    job manager) are child subreapers (PR_SET_CHILD_SUBREAPER): whatever a
    job leaves behind is re-parented to them instead of to init, so their
    own children are the whole of what is left. proctree finds those
    children in /proc (the /proc/PID/task/TID/children file needs a kernel
    option many kernels lack, so each /proc/PID/stat is read) and kills
    them, again and again until none is left: a killed process's own
    children come to us once it has been reaped.

    This is the layer that works everywhere; where the job manager can
    create cgroups, cgroup.h adds one per worker on top of it.
*/
#ifndef EMQ_PROCTREE_H
#define EMQ_PROCTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

//  Makes the calling process a child subreaper. Returns 0 or -1 (errno).
int proctree_subreaper (void);

//  True when the calling process is a child subreaper.
bool proctree_is_subreaper (void);

//  Collects up to max pids of the live children of parent (zombies
//  included); returns how many there are (may exceed max).
size_t proctree_children (pid_t parent, pid_t *out, size_t max);

//  Decides whether a child of ours is to be spared (e.g. a worker of the
//  job manager's pool).
typedef bool (proctree_keep_fn) (pid_t pid, void *arg);

//  Kills (SIGKILL) and reaps every child of the calling process that keep
//  (may be NULL: none kept) does not spare, until no such child is left.
//  Returns the number of processes killed.
size_t proctree_kill_children (proctree_keep_fn *keep, void *arg);

//  A cheap test before proctree_kill_children: true when the calling
//  process has any child left (waitpid says so without a /proc scan).
bool proctree_has_children (void);

void proctree_test (bool verbose);

#endif
