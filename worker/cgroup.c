/*  cgroup — one cgroup v2 per worker. See cgroup.h. */
#include "cgroup.h"
#include "log.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_PREFIX "emq-jm-"

static char s_base[PATH_MAX];  // "" = no cgroup in use

const char *
cgroup_base (void)
{
    return s_base[0] ? s_base : NULL;
}

//  The mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo
//  ("id parent maj:min root mountpoint options ... - cgroup2 source ...").
static int
s_mount_point (char *out, size_t outlen)
{
    FILE *file = fopen ("/proc/self/mountinfo", "re");
    if (!file)
        return -1;
    char line[4096];
    int rc = -1;
    while (rc && fgets (line, sizeof line, file)) {
        char *dash = strstr (line, " - ");
        if (!dash || strncmp (dash + 3, "cgroup2 ", 8) != 0)
            continue;
        char *saveptr = NULL, *field = strtok_r (line, " ", &saveptr);
        for (int i = 0; field && i < 4; i++)
            field = strtok_r (NULL, " ", &saveptr);
        //  Escaped characters (\040) in the path: not worth decoding.
        if (field && !strchr (field, '\\') && strlen (field) < outlen) {
            strcpy (out, field);
            rc = 0;
        }
    }
    fclose (file);
    return rc;
}

//  Our own cgroup v2 path ("0::/path" in /proc/self/cgroup).
static int
s_own_path (char *out, size_t outlen)
{
    FILE *file = fopen ("/proc/self/cgroup", "re");
    if (!file)
        return -1;
    char line[4096];
    int rc = -1;
    while (rc && fgets (line, sizeof line, file)) {
        if (strncmp (line, "0::/", 4) != 0)
            continue;
        line[strcspn (line, "\n")] = 0;
        if (strlen (line + 3) < outlen && !strchr (line + 3, ' ')) {
            strcpy (out, line + 3);
            rc = 0;
        }
    }
    fclose (file);
    return rc;
}

//  Writes text to a cgroup control file. Returns 0 or -1 (errno).
static int
s_write (const char *dir, const char *file, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf (path, sizeof path, "%s/%s", dir, file);
    int fd = open (path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write (fd, text, strlen (text));
    int saved = errno;
    close (fd);
    errno = saved;
    return n == (ssize_t) strlen (text) ? 0 : -1;
}

static void
s_worker_dir (pid_t pid, char *out, size_t outlen)
{
    snprintf (out, outlen, "%s/w-%d", s_base, (int) pid);
}

//  Kills what is listed in dir/cgroup.procs, for kernels without
//  cgroup.kill; a few rounds, as a process may fork meanwhile.
static int
s_kill_listed (const char *dir)
{
    char path[PATH_MAX + 64];
    snprintf (path, sizeof path, "%s/cgroup.procs", dir);
    for (int round = 0; round < 20; round++) {
        FILE *file = fopen (path, "re");
        if (!file)
            return -1;
        int pid, found = 0;
        while (fscanf (file, "%d", &pid) == 1)
            if (pid > 0 && kill (pid, SIGKILL) == 0)
                found++;
        fclose (file);
        if (!found)
            return 0;
    }
    return 0;
}

//  Kills and removes every cgroup under dir, then dir. Returns 0 when dir
//  is gone.
static int
s_remove_tree (const char *dir)
{
    DIR *listing = opendir (dir);
    if (listing) {
        struct dirent *entry;
        while ((entry = readdir (listing))) {
            if (strncmp (entry->d_name, "w-", 2) != 0)
                continue;
            char child[PATH_MAX + 300];
            snprintf (child, sizeof child, "%s/%s", dir, entry->d_name);
            if (s_write (child, "cgroup.kill", "1") && errno == ENOENT)
                s_kill_listed (child);
            //  Killed processes leave the cgroup a moment later.
            for (int i = 0; i < 50 && rmdir (child) && errno == EBUSY; i++)
                nanosleep (&(struct timespec){ .tv_nsec = 2000000 }, NULL);
        }
        closedir (listing);
    }
    return rmdir (dir);
}

//  Removes the cgroups of job managers that are gone (killed -9).
static void
s_prune (const char *parent)
{
    DIR *listing = opendir (parent);
    if (!listing)
        return;
    struct dirent *entry;
    while ((entry = readdir (listing))) {
        const char *name = entry->d_name;
        if (strncmp (name, S_PREFIX, strlen (S_PREFIX)) != 0)
            continue;
        long pid = atol (name + strlen (S_PREFIX));
        if (pid <= 0 || pid == getpid () || kill ((pid_t) pid, 0) == 0 || errno != ESRCH)
            continue;
        char dir[PATH_MAX * 2 + 300];
        snprintf (dir, sizeof dir, "%s/%s", parent, name);
        if (s_remove_tree (dir) == 0)
            log_info ("cgroup: removed %s, left by a job manager that is gone", dir);
    }
    closedir (listing);
}

int
cgroup_setup (char *err, size_t errlen)
{
    char mount[PATH_MAX], own[PATH_MAX], parent[PATH_MAX * 2 + 8];
    if (s_mount_point (mount, sizeof mount)) {
        snprintf (err, errlen, "no cgroup v2 hierarchy mounted");
        return -1;
    }
    if (s_own_path (own, sizeof own)) {
        snprintf (err, errlen, "no cgroup v2 entry in /proc/self/cgroup");
        return -1;
    }
    snprintf (parent, sizeof parent, "%s%s", mount, strcmp (own, "/") == 0 ? "" : own);
    s_prune (parent);
    char base[sizeof parent + 32];
    snprintf (base, sizeof base, "%s/" S_PREFIX "%d", parent, (int) getpid ());
    if (strlen (base) >= sizeof s_base) {
        snprintf (err, errlen, "cgroup path too long");
        return -1;
    }
    if (mkdir (base, 0755) && errno != EEXIST) {
        snprintf (err, errlen, "mkdir %s: %s", base, strerror (errno));
        return -1;
    }
    //  A cgroup we cannot move processes into is of no use.
    char procs[sizeof base + 16];
    snprintf (procs, sizeof procs, "%s/cgroup.procs", base);
    if (access (procs, W_OK)) {
        snprintf (err, errlen, "%s: %s", procs, strerror (errno));
        rmdir (base);
        return -1;
    }
    strcpy (s_base, base);
    return 0;
}

int
cgroup_join (pid_t pid)
{
    if (!s_base[0]) {
        errno = ENOENT;
        return -1;
    }
    char dir[PATH_MAX + 32], text[32];
    s_worker_dir (pid, dir, sizeof dir);
    if (mkdir (dir, 0755) && errno != EEXIST)
        return -1;
    snprintf (text, sizeof text, "%d", (int) pid);
    if (s_write (dir, "cgroup.procs", text)) {
        int saved = errno;
        rmdir (dir);
        errno = saved;
        return -1;
    }
    return 0;
}

int
cgroup_kill (pid_t pid)
{
    if (!s_base[0]) {
        errno = ENOENT;
        return -1;
    }
    char dir[PATH_MAX + 32];
    s_worker_dir (pid, dir, sizeof dir);
    if (s_write (dir, "cgroup.kill", "1") == 0)
        return 0;
    if (errno != ENOENT || access (dir, F_OK))
        return -1;
    return s_kill_listed (dir);  // a kernel before 5.14
}

int
cgroup_remove (pid_t pid)
{
    if (!s_base[0]) {
        errno = ENOENT;
        return -1;
    }
    char dir[PATH_MAX + 32];
    s_worker_dir (pid, dir, sizeof dir);
    return rmdir (dir) == 0 || errno == ENOENT ? 0 : -1;
}

void
cgroup_teardown (void)
{
    if (!s_base[0])
        return;
    if (s_remove_tree (s_base))
        log_warning ("cgroup: cannot remove %s: %s", s_base, strerror (errno));
    s_base[0] = 0;
}

//  --------------------------------------------------------------------------
//  Self test

//  In a forked child (cgroup_setup names the cgroup after our pid): a
//  setsid() grandchild joined to a worker cgroup is killed by cgroup_kill.
static int
s_cgroup_case (bool verbose)
{
    char err[512];
    if (cgroup_setup (err, sizeof err)) {
        if (verbose)
            printf ("(no cgroup v2 here: %s) ", err);
        return 0;
    }
    pid_t child = fork ();
    if (child < 0)
        return 10;
    if (child == 0) {
        setsid ();
        pause ();
        _exit (0);
    }
    if (cgroup_join (child))
        return 11;
    char path[64], line[PATH_MAX];
    snprintf (path, sizeof path, "/proc/%d/cgroup", (int) child);
    FILE *file = fopen (path, "r");
    if (!file)
        return 12;
    char expected[64];
    snprintf (expected, sizeof expected, S_PREFIX "%d/w-%d", (int) getpid (),
              (int) child);
    bool inside = false;
    while (fgets (line, sizeof line, file))
        inside = inside || (strncmp (line, "0::", 3) == 0 && strstr (line, expected));
    fclose (file);
    if (!inside)
        return 13;
    if (cgroup_kill (child))
        return 14;
    int status = 0;
    if (waitpid (child, &status, 0) != child || !WIFSIGNALED (status)
        || WTERMSIG (status) != SIGKILL)
        return 15;
    int removed = -1;
    for (int i = 0; i < 50 && (removed = cgroup_remove (child)); i++)
        nanosleep (&(struct timespec){ .tv_nsec = 2000000 }, NULL);
    if (removed)
        return 16;
    char base[PATH_MAX];
    snprintf (base, sizeof base, "%s", cgroup_base ());
    cgroup_teardown ();
    if (cgroup_base () || access (base, F_OK) == 0)
        return 17;
    return 0;
}

void
cgroup_test (bool verbose)
{
    if (verbose)
        printf (" * cgroup: ");
    CHECK (cgroup_base () == NULL);
    CHECK (cgroup_join (getpid ()) == -1);
    pid_t pid = fork ();
    REQUIRE (pid >= 0);
    if (pid == 0)
        _exit (s_cgroup_case (verbose));
    int status = 0;
    REQUIRE (waitpid (pid, &status, 0) == pid);
    CHECK_EQ (WIFEXITED (status) ? WEXITSTATUS (status) : -1, 0);
    if (verbose)
        printf ("OK\n");
}
