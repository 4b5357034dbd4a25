/*  proctree — ending every process a job started. See proctree.h. */
#include "proctree.h"
#include "log.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

//  A fork bomb is killed faster than it grows (each round kills all it
//  has), but a bound keeps a kernel surprise from spinning us forever.
#define S_KILL_ROUNDS_MAX 10000

int
proctree_subreaper (void)
{
    return prctl (PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

bool
proctree_is_subreaper (void)
{
    int flag = 0;
    return prctl (PR_GET_CHILD_SUBREAPER, &flag, 0, 0, 0) == 0 && flag != 0;
}

//  The parent pid in /proc/<pid>/stat, or -1. The command name (field 2)
//  may hold spaces and parentheses, so parse after the last ')'.
static pid_t
s_parent_of (const char *pid)
{
    char path[64], buf[512];
    snprintf (path, sizeof path, "/proc/%s/stat", pid);
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read (fd, buf, sizeof buf - 1);
    close (fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    const char *paren = strrchr (buf, ')');
    char state;
    int ppid;
    if (!paren || sscanf (paren + 1, " %c %d", &state, &ppid) != 2)
        return -1;
    return (pid_t) ppid;
}

size_t
proctree_children (pid_t parent, pid_t *out, size_t max)
{
    DIR *dir = opendir ("/proc");
    if (!dir) {
        log_warning ("proctree: opendir /proc: %s", strerror (errno));
        return 0;
    }
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        const char *name = entry->d_name;
        if (name[0] < '1' || name[0] > '9'
            || strspn (name, "0123456789") != strlen (name))
            continue;
        if (s_parent_of (name) != parent)
            continue;
        if (count < max)
            out[count] = (pid_t) atol (name);
        count++;
    }
    closedir (dir);
    return count;
}

bool
proctree_has_children (void)
{
    siginfo_t info;
    memset (&info, 0, sizeof info);
    //  WNOWAIT: look without reaping; ECHILD means no child at all.
    return waitid (P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0;
}

size_t
proctree_kill_children (proctree_keep_fn *keep, void *arg)
{
    pid_t self = getpid ();
    size_t killed = 0;
    for (int round = 0; round < S_KILL_ROUNDS_MAX; round++) {
        pid_t children[256];
        size_t total = proctree_children (self, children, 256);
        size_t count = total < 256 ? total : 256;
        size_t this_round = 0;
        for (size_t i = 0; i < count; i++) {
            if (keep && keep (children[i], arg))
                continue;
            if (kill (children[i], SIGKILL) && errno != ESRCH)
                continue;
            //  Reaped, it has handed its own children to us: the next round
            //  finds them.
            while (waitpid (children[i], NULL, 0) < 0 && errno == EINTR)
                ;
            this_round++;
        }
        killed += this_round;
        if (this_round == 0 && total <= 256)
            return killed;
    }
    log_warning ("proctree: processes left after %d rounds of killing",
                 S_KILL_ROUNDS_MAX);
    return killed;
}

//  --------------------------------------------------------------------------
//  Self test

//  Runs in a forked child that is a subreaper: starts a background child
//  and a setsid() grandchild whose parent exits, then kills them all.
static int
s_orphans_case (void)
{
    if (proctree_subreaper ())
        return 10;
    pid_t direct = fork ();
    if (direct < 0)
        return 11;
    if (direct == 0) {
        pause ();
        _exit (0);
    }
    pid_t middle = fork ();
    if (middle < 0)
        return 12;
    if (middle == 0) {
        if (fork () == 0) {
            setsid ();
            pause ();
            _exit (0);
        }
        _exit (0);  // its child is now an orphan, re-parented to us
    }
    while (waitpid (middle, NULL, 0) < 0 && errno == EINTR)
        ;
    //  The grandchild reaches us once middle is reaped: both are ours now.
    pid_t seen[8];
    if (proctree_children (getpid (), seen, 8) != 2)
        return 13;
    if (!proctree_has_children ())
        return 14;
    if (proctree_kill_children (NULL, NULL) != 2)
        return 15;
    if (proctree_has_children () || proctree_children (getpid (), seen, 8) != 0)
        return 16;
    return 0;
}

static bool
s_keep_one (pid_t pid, void *arg)
{
    return pid == *(pid_t *) arg;
}

void
proctree_test (bool verbose)
{
    if (verbose)
        printf (" * proctree: ");
    //  In a child: the subreaper flag and the kills must not touch the
    //  test runner's own children.
    pid_t pid = fork ();
    REQUIRE (pid >= 0);
    if (pid == 0)
        _exit (s_orphans_case ());
    int status = 0;
    REQUIRE (waitpid (pid, &status, 0) == pid);
    CHECK_EQ (WIFEXITED (status) ? WEXITSTATUS (status) : -1, 0);

    //  keep spares a child.
    pid = fork ();
    REQUIRE (pid >= 0);
    if (pid == 0) {
        pid_t kept = fork ();
        if (kept == 0) {
            pause ();
            _exit (0);
        }
        if (fork () == 0) {
            pause ();
            _exit (0);
        }
        size_t killed = proctree_kill_children (s_keep_one, &kept);
        bool alive = kill (kept, 0) == 0;
        kill (kept, SIGKILL);
        waitpid (kept, NULL, 0);
        _exit (killed == 1 && alive ? 0 : 1);
    }
    REQUIRE (waitpid (pid, &status, 0) == pid);
    CHECK_EQ (WIFEXITED (status) ? WEXITSTATUS (status) : -1, 0);
    if (verbose)
        printf ("OK\n");
}
