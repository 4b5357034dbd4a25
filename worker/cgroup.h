/*  cgroup — one cgroup v2 per worker, where the system lets us make one.

    At start the job manager (main.c) calls cgroup_setup(): it finds the
    cgroup v2 hierarchy (/proc/self/mountinfo) and its own cgroup
    (/proc/self/cgroup), and creates <that>/emq-jm-<pid>. That fails in
    most containers (read-only /sys/fs/cgroup, cgroup v1 only), and then
    the job manager relies on the subreaper alone (proctree.h). When it
    works, every new worker moves itself into <base>/w-<pid> first thing
    after fork, before it says HELLO and so before any job, so whatever its
    jobs start is in that cgroup too, setsid() or not, and cgroup_kill()
    ends all of it at once (cgroup.kill, Linux 5.14; before that, a kill
    per pid listed). The pool kills a worker's cgroup when it kills the
    worker or reaps one that did not exit cleanly, and removes it.

    Process-wide state, like the subreaper flag: set once by the program,
    read by the pool and (inherited through fork) by the workers. Tests and in-process job managers never call
    cgroup_setup() and get NULL from cgroup_base().
*/
#ifndef EMQ_CGROUP_H
#define EMQ_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

//  Creates the job manager's cgroup. Returns 0 (cgroup_base() then names
//  it), or -1 with the reason in err. Also removes the empty cgroups that
//  job managers killed without a chance to clean up left behind.
int cgroup_setup (char *err, size_t errlen);

//  The job manager's cgroup directory, or NULL when none is in use.
const char *cgroup_base (void);

//  Creates <base>/w-<pid> and moves pid into it. Returns 0 or -1 (errno).
int cgroup_join (pid_t pid);

//  Kills every process in <base>/w-<pid>. Returns 0 or -1 (errno).
int cgroup_kill (pid_t pid);

//  Removes <base>/w-<pid> once it is empty. Returns 0, or -1 (errno;
//  EBUSY while processes are still leaving).
int cgroup_remove (pid_t pid);

//  Removes what is left of the job manager's cgroups (at exit).
void cgroup_teardown (void);

void cgroup_test (bool verbose);

#endif
