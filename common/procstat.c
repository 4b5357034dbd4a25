/*  procstat — /proc/PID/stat and friends. See procstat.h. */
#include "procstat.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int
procstat_read (pid_t pid, procstat_t *out)
{
    *out = (procstat_t){ -1, -1, -1, -1, -1, -1 };
    char path[64], line[2048];
    if (pid == 0) {
        struct rlimit limit;
        if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY)
            out->max_fds = (int64_t) limit.rlim_cur;
        DIR *dir = opendir ("/proc/self/fd");
        if (dir) {
            int64_t entries = 0;
            while (readdir (dir))
                entries++;
            closedir (dir);
            out->open_fds = entries - 3;  // ".", ".." and the directory's own fd
        }
        snprintf (path, sizeof path, "/proc/self/stat");
    }
    else
        snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    bool read = fgets (line, sizeof line, file) != NULL;
    fclose (file);
    //  The command (field 2) may hold spaces and parentheses: the fields
    //  are counted from its last ')'.
    char *rest = read ? strrchr (line, ')') : NULL;
    unsigned long utime, stime, vsize;
    unsigned long long starttime;
    long rss;
    //  After ')': state ppid pgrp session tty tpgid flags minflt cminflt
    //  majflt cmajflt utime stime cutime cstime priority nice threads
    //  itrealvalue starttime vsize rss.
    if (!rest
        || sscanf (rest + 1,
                   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d"
                   " %*d %*d %llu %lu %ld",
                   &utime, &stime, &starttime, &vsize, &rss)
               != 5)
        return -1;
    long ticks = sysconf (_SC_CLK_TCK), page = sysconf (_SC_PAGESIZE);
    if (ticks <= 0)
        ticks = 100;
    out->cpu_s = (double) (utime + stime) / (double) ticks;
    out->vsize_bytes = (int64_t) vsize;
    out->rss_bytes = (int64_t) rss * (page > 0 ? page : 4096);
    //  starttime counts ticks since boot; the boot time is /proc/stat's btime.
    file = fopen ("/proc/stat", "r");
    if (file) {
        long long btime = -1;
        while (fgets (line, sizeof line, file))
            if (sscanf (line, "btime %lld", &btime) == 1)
                break;
        fclose (file);
        if (btime > 0)
            out->start_time_s = (double) btime + (double) starttime / (double) ticks;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"
#include <time.h>

void
procstat_test (bool verbose)
{
    if (verbose)
        printf (" * procstat: ");
    procstat_t self;
    CHECK_EQ (procstat_read (0, &self), 0);
    CHECK (self.rss_bytes > 0);
    CHECK (self.vsize_bytes >= self.rss_bytes);
    CHECK (self.cpu_s >= 0);
    CHECK (self.open_fds >= 3);  // stdin, stdout, stderr at least
    CHECK (self.start_time_s > 1.5e9 && self.start_time_s <= (double) time (NULL) + 1);
    procstat_t parent;
    CHECK_EQ (procstat_read (getppid (), &parent), 0);
    CHECK (parent.rss_bytes > 0);
    CHECK_EQ (parent.open_fds, -1);  // only our own are counted
    CHECK_EQ (procstat_read (-7, &parent), -1);
    CHECK_EQ (parent.rss_bytes, -1);
    if (verbose)
        printf ("OK\n");
}
