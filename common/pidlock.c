/*  pidlock — one process per data directory. See pidlock.h. */
#include "pidlock.h"

#include <bsd/libutil.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

struct pidlock_t {
    struct pidfh *pidfile;
};

static void
s_sleep_ms (long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep (&ts, NULL);
}

//  True once pid is gone: no such process, or only a zombie left.
static bool
s_has_exited (pid_t pid)
{
    if (kill (pid, 0) == -1 && errno == ESRCH)
        return true;
    char path[64], buf[256];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return true;
    size_t n = fread (buf, 1, sizeof buf - 1, file);
    fclose (file);
    buf[n] = 0;
    const char *close_paren = strrchr (buf, ')');
    return close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

pidlock_t *
pidlock_acquire (const char *dir, const char *name, pidlock_mode_t mode,
                 volatile int *interrupted, double timeout_s, char *err, size_t errlen)
{
    char path[4096];
    snprintf (path, sizeof path, "%s/%s.pid", dir, name);
    pidlock_t *self = calloc (1, sizeof (pidlock_t));
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    bool asked = false;
    pid_t holder = -1;
    int64_t start_ms = clock_mono_ms ();
    while (true) {
        pid_t other = -1;
        self->pidfile = pidfile_open (path, 0600, &other);
        if (self->pidfile) {
            //  After a takeover, the lock can free up a moment before the old
            //  process is fully gone: wait for that too.
            while (asked && holder > 0 && !s_has_exited (holder)
                   && !(interrupted && *interrupted))
                s_sleep_ms (50);
            if (pidfile_write (self->pidfile) == -1) {
                snprintf (err, errlen, "cannot write %s: %s", path, strerror (errno));
                pidfile_remove (self->pidfile);
                free (self);
                return NULL;
            }
            if (asked)
                log_info ("lock: %s %d has exited; taking over %s", name, (int) holder,
                          dir);
            return self;
        }
        if (errno != EEXIST) {
            snprintf (err, errlen, "cannot open %s: %s", path, strerror (errno));
            free (self);
            return NULL;
        }
        if (mode == PIDLOCK_FAIL) {
            if (other > 0)
                snprintf (err, errlen,
                          "%s is in use by another %s (pid %d); use "
                          "--standby to wait for it or --takeover to replace it",
                          dir, name, (int) other);
            else
                snprintf (err, errlen,
                          "%s is in use by another %s (its pid is not "
                          "written yet); use --standby or --takeover",
                          dir, name);
            free (self);
            return NULL;
        }
        if (interrupted && *interrupted) {
            snprintf (err, errlen, "interrupted while waiting for %s", path);
            free (self);
            return NULL;
        }
        if (mode == PIDLOCK_TAKEOVER && other > 0 && !asked) {
            log_info ("lock: asking %s %d to stop (takeover of %s)", name, (int) other,
                      dir);
            if (kill (other, SIGTERM) == -1 && errno != ESRCH) {
                snprintf (err, errlen, "cannot signal %s %d: %s", name, (int) other,
                          strerror (errno));
                free (self);
                return NULL;
            }
            asked = true;
            holder = other;
        }
        if (mode == PIDLOCK_STANDBY && holder != other) {
            log_info ("lock: %s is held by %s %d; standing by", dir, name, (int) other);
            holder = other;
        }
        double waited = (double) (clock_mono_ms () - start_ms) / 1000.0;
        if (mode == PIDLOCK_TAKEOVER && timeout_s > 0 && waited > timeout_s) {
            snprintf (err, errlen, "%s %d did not stop within %.0f s", name, (int) holder,
                      timeout_s);
            free (self);
            return NULL;
        }
        //  Standby polls every 2 s as documented; a takeover polls faster.
        s_sleep_ms (mode == PIDLOCK_STANDBY ? 2000 : 100);
    }
}

void
pidlock_release (pidlock_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    if ((*self_p)->pidfile)
        pidfile_remove ((*self_p)->pidfile);
    free (*self_p);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"
#include <sys/wait.h>

void
pidlock_test (bool verbose)
{
    if (verbose)
        printf (" * lock: ");
    char dir[] = "/tmp/emq-lock-test-XXXXXX";
    CHECK (mkdtemp (dir) != NULL);
    char err[512];
    //  A child holds the lock until SIGTERM.
    int ready[2];
    CHECK_EQ (pipe (ready), 0);
    pid_t child = fork ();
    if (child == 0) {
        close (ready[0]);
        pidlock_t *held =
            pidlock_acquire (dir, "test", PIDLOCK_FAIL, NULL, 0, err, sizeof err);
        if (write (ready[1], held ? "y" : "n", 1) != 1)
            _exit (2);
        pause ();  // SIGTERM ends us, releasing the flock
        _exit (0);
    }
    close (ready[1]);
    char c = 0;
    CHECK_EQ (read (ready[0], &c, 1), 1);
    CHECK_EQ (c, 'y');
    close (ready[0]);

    pidlock_t *lock =
        pidlock_acquire (dir, "test", PIDLOCK_FAIL, NULL, 0, err, sizeof err);
    CHECK (lock == NULL);
    char pid_text[32];
    snprintf (pid_text, sizeof pid_text, "pid %d", (int) child);
    CHECK_CONTAINS (err, pid_text);

    //  Takeover: the child is asked to stop, and we hold the lock after.
    lock = pidlock_acquire (dir, "test", PIDLOCK_TAKEOVER, NULL, 10, err, sizeof err);
    CHECK (lock != NULL);
    int status = 0;
    CHECK_EQ (waitpid (child, &status, 0), child);
    CHECK (WIFSIGNALED (status) && WTERMSIG (status) == SIGTERM);
    pidlock_release (&lock);
    CHECK (lock == NULL);
    char path[128];
    snprintf (path, sizeof path, "%s/test.pid", dir);
    CHECK (access (path, F_OK) == -1);  // removed on release
    rmdir (dir);
    if (verbose)
        printf ("OK\n");
}
