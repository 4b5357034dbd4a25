/*  procstat — what a timed run cost each process: CPU (utime + stime),
    context switches (voluntary and not, summed over every thread) and
    system calls.

    CPU and context switches come from /proc. System calls are counted
    in the kernel by `perf stat -e raw_syscalls:sys_enter -p PID`, one perf
    per process, attached for the run: counting a tracepoint costs little
    and, unlike strace, does not slow the process measured. Without perf,
    or where the tracepoint is not allowed, syscalls read -1 and the report
    says so. EMQ_BENCH_PERF=0 turns perf off.
*/
#include "bench.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

//  Context switches of every thread of pid (/proc/<pid>/task/*/status).
static long
s_ctxsw (pid_t pid)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/task", (int) pid);
    DIR *dir = opendir (path);
    if (!dir)
        return -1;
    long total = 0;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (entry->d_name[0] == '.')
            continue;
        char status[320], line[256];
        snprintf (status, sizeof status, "/proc/%d/task/%s/status", (int) pid,
                  entry->d_name);
        FILE *file = fopen (status, "r");
        if (!file)
            continue;  // the thread ended meanwhile
        while (fgets (line, sizeof line, file))
            if (strncmp (line, "voluntary_ctxt_switches:", 24) == 0)
                total += strtol (line + 24, NULL, 10);
            else if (strncmp (line, "nonvoluntary_ctxt_switches:", 27) == 0)
                total += strtol (line + 27, NULL, 10);
        fclose (file);
    }
    closedir (dir);
    return total;
}

pid_t
bench_parent_of (pid_t pid)
{
    char path[64], buf[512];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    size_t n = fread (buf, 1, sizeof buf - 1, file);
    fclose (file);
    buf[n] = 0;
    //  After the command name (which may hold spaces): state, then ppid.
    char *p = strrchr (buf, ')');
    int ppid;
    if (!p || sscanf (p + 2, "%*c %d", &ppid) != 1)
        return -1;
    return (pid_t) ppid;
}

int
bench_children (pid_t parent, pid_t *pids, int max)
{
    DIR *dir = opendir ("/proc");
    if (!dir)
        return 0;
    int count = 0;
    struct dirent *entry;
    while (count < max && (entry = readdir (dir))) {
        char *end;
        long pid = strtol (entry->d_name, &end, 10);
        if (!*end && pid > 0 && bench_parent_of ((pid_t) pid) == parent)
            pids[count++] = (pid_t) pid;
    }
    closedir (dir);
    return count;
}

//  Whether perf can count the syscall tracepoint here: asked once.
static bool
s_perf_usable (void)
{
    static int usable = -1;
    if (usable >= 0)
        return usable;
    const char *env = getenv ("EMQ_BENCH_PERF");
    usable = 0;
    if (env && strcmp (env, "0") == 0)
        return false;
    int rc = system ("perf stat -x, -e raw_syscalls:sys_enter true >/dev/null 2>&1");
    usable = rc == 0;
    if (!usable)
        bench_log ("perf cannot count raw_syscalls:sys_enter here: no syscall counts");
    return usable;
}

static pid_t
s_perf_attach (pid_t pid, const char *out)
{
    char target[16];
    snprintf (target, sizeof target, "%d", (int) pid);
    pid_t perf = fork ();
    if (perf == 0) {
        int null = open ("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2 (null, STDIN_FILENO);
            dup2 (null, STDOUT_FILENO);
            dup2 (null, STDERR_FILENO);
        }
        execlp ("perf", "perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p",
                target, "-o", out, (char *) NULL);
        _exit (127);
    }
    return perf;
}

//  Stops one perf and reads its count: "N,,raw_syscalls:sys_enter,...".
static long
s_perf_detach (pid_t perf, const char *out)
{
    if (perf <= 0)
        return -1;
    kill (perf, SIGINT);
    int status;
    waitpid (perf, &status, 0);
    FILE *file = fopen (out, "r");
    long count = -1;
    char line[512];
    while (file && fgets (line, sizeof line, file))
        if (strstr (line, "raw_syscalls:sys_enter") && line[0] >= '0' && line[0] <= '9')
            count = strtol (line, NULL, 10);
    if (file)
        fclose (file);
    unlink (out);
    return count;
}

void
bench_proc_begin (bench_proc_t *self)
{
    self->cpu_us = self->ctxsw = self->syscalls = 0;
    bool perf = s_perf_usable ();
    for (int i = 0; i < self->npids; i++) {
        self->cpu0[i] = bench_cpu_us (self->pids[i]);
        self->cs0[i] = s_ctxsw (self->pids[i]);
        snprintf (self->out[i], sizeof self->out[i], "%s/perf-%d.txt", bench.dir,
                  (int) self->pids[i]);
        self->perf[i] = perf ? s_perf_attach (self->pids[i], self->out[i]) : 0;
    }
}

void
bench_proc_settle (void)
{
    //  perf needs a moment to attach to every thread; what it counts of
    //  the idle wait is noise of a few calls.
    if (s_perf_usable ())
        bench_sleep_ms (300);
}

void
bench_proc_end (bench_proc_t *self, long jobs)
{
    self->cpu_us = self->ctxsw = 0;
    self->syscalls = 0;
    for (int i = 0; i < self->npids; i++) {
        self->cpu_us += bench_cpu_us (self->pids[i]) - self->cpu0[i];
        self->ctxsw += s_ctxsw (self->pids[i]) - self->cs0[i];
        long calls = s_perf_detach (self->perf[i], self->out[i]);
        if (calls < 0 || self->syscalls < 0)
            self->syscalls = -1;
        else
            self->syscalls += calls;
    }
    double n = jobs > 0 ? (double) jobs : NAN;
    self->cpu_per_job = (double) self->cpu_us / n;
    self->ctxsw_per_job = (double) self->ctxsw / n;
    self->syscalls_per_job = self->syscalls >= 0 ? (double) self->syscalls / n : NAN;
}

void
bench_proc_report (const char *scenario, bench_proc_t *procs, int count)
{
    char text[1024];
    size_t used = 0;
    for (int i = 0; i < count; i++) {
        bench_proc_t *p = &procs[i];
        char figure[96];
        snprintf (figure, sizeof figure, "%s_syscalls_per_job", p->name);
        bench_figure (scenario, figure, p->syscalls_per_job, NULL);
        snprintf (figure, sizeof figure, "%s_ctxsw_per_job", p->name);
        bench_figure (scenario, figure, p->ctxsw_per_job, NULL);
        int n = snprintf (text + used, sizeof text - used,
                          "%s%s %.1f us, %.2f syscalls, %.2f cs", i ? "; " : "", p->name,
                          p->cpu_per_job, p->syscalls_per_job, p->ctxsw_per_job);
        if (n < 0 || (size_t) n >= sizeof text - used)
            break;
        used += (size_t) n;
    }
    bench_line (scenario, "per job (CPU, system calls, context switches): %s", text);
}
