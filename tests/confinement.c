/*  confinement — integration tests for issue 11's job confinement: hostile
    jobs against a real emq-router, emq-jobmanager and its workers.

        confine_env        an exec job's env map: LD_PRELOAD and the like are
                           refused, names off exec_env_allow too
        confine_run        run jobs reach only emq_run_* functions the
                           library defines: not libc's fork, abort, getpid
        confine_leftovers  a background child after a normal end, a daemon,
                           a setsid grandchild after a timeout or a cancel,
                           a child a run job forked: all dead when the job
                           is over
        confine_subreaper  the same with --job-cgroup off
        confine_output     an endless writer behind a shell is killed at the
                           output limit ("output limit")
        confine_limits     rlimit_as / _cpu / _nofile: allocation past the
                           limit fails cleanly and the worker is replaced, a
                           CPU hog is killed, a job may only ask for less
        confine_user       workers run as `nobody` (skipped unless root); an
                           unknown user stops the job manager from starting

    Part of the `integration` program (see integration.c for main and
    harness.h for the runner).
*/
#include "harness.h"
#include "payload.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_Q "[[10,\"default\"]]"

//  ---------------------------------------------------------------------
//  Helpers

//  A router and one job manager "jm" (2 workers) with the extra flags
//  (NULL-terminated), registered.
static pid_t
s_setup (h_test_t *t, ...)
{
    const char *extra[32];
    size_t count = 0;
    va_list ap;
    va_start (ap, t);
    const char *arg;
    while ((arg = va_arg (ap, const char *)) && count < 31)
        extra[count++] = arg;
    va_end (ap);
    extra[count] = NULL;
    h_router (t, "router", NULL);
    //  h_jm takes a varargs list: pass up to 12 extra flags.
    const char *e[12] = { NULL };
    for (size_t i = 0; i < count && i < 12; i++)
        e[i] = extra[i];
    pid_t jm = h_jm (t, "jm", DEFAULT_Q, 2, e[0], e[1], e[2], e[3], e[4], e[5], e[6],
                     e[7], e[8], e[9], e[10], e[11], NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    return jm;
}

//  The outcome of one job: status and text (value as JSON, or the error).
typedef struct {
    int status;  // EMQ_JOB_*
    char *text;  // owned
    int64_t elapsed_ms;
} s_outcome_t;

//  Submits an encoded payload with timeout_s and waits for its RESULT.
static s_outcome_t
s_submit (h_test_t *t, const payload_t *payload, uint32_t timeout_s, int wait_ms)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    REQUIRE (payload_encode (payload, &sbuf) == 0);
    emq_client_t *client = emq_client_new (t->frontend);
    REQUIRE (client);
    emq_submit_opts_t opts = { .reply = true, .timeout_s = timeout_s };
    char msgid[37];
    int64_t started = clock_mono_ms ();
    int rc = emq_submit (client, &opts, sbuf.data, sbuf.size, msgid, h_ms (5000));
    msgpack_sbuffer_destroy (&sbuf);
    REQUIRE_MSG (rc == 0, "emq_submit: %d %s", rc, emq_client_last_error (client));
    emq_event_t event;
    rc = emq_wait_result (client, msgid, h_ms (wait_ms), &event);
    REQUIRE_MSG (rc != EMQ_ERR_TIMEOUT, "no RESULT for %s within %d ms", msgid,
                 h_ms (wait_ms));
    REQUIRE_INT (event.type, ==, EMQ_EVENT_RESULT);
    s_outcome_t outcome = { .status = (int) event.status,
                            .text = h_result_text (&event),
                            .elapsed_ms = clock_mono_ms () - started };
    h_log (t, "job %s: status %d in %lld ms: %.300s", msgid, outcome.status,
           (long long) outcome.elapsed_ms, outcome.text);
    emq_client_destroy (&client);
    return outcome;
}

//  Runs argv (NULL-terminated) as an exec job with env (NULL-terminated
//  "NAME=VALUE" list, or NULL).
static s_outcome_t
s_exec (h_test_t *t, const char *const *argv, const char *const *env, uint32_t timeout_s)
{
    payload_t payload = { .kind = PAYLOAD_EXEC, .argv = (char **) argv };
    while (argv[payload.argc])
        payload.argc++;
    if (env) {
        payload.env = (char **) env;
        while (env[payload.envc])
            payload.envc++;
    }
    return s_submit (t, &payload, timeout_s, 20000);
}

//  Runs function of the example plugin with msgpack args (bytes).
static s_outcome_t
s_run (h_test_t *t, const char *function, const char *args, size_t args_size)
{
    payload_t payload = { .kind = PAYLOAD_RUN,
                          .library = H_PLUGIN,
                          .function = (char *) function,
                          .args = (char *) args,
                          .args_size = args_size };
    return s_submit (t, &payload, 0, 20000);
}

//  A pid printed by a job (the first number in text), or 0.
static pid_t
s_pid_in (const char *text)
{
    const char *p = text;
    while (*p && (*p < '0' || *p > '9'))
        p++;
    return (pid_t) atol (p);
}

//  ---------------------------------------------------------------------
//  Tests

static void
test_confine_env (h_test_t *t)
{
    //  The default allow-list (LANG:LANGUAGE:LC_*:TZ).
    s_setup (t, NULL);
    char preload[H_PATH_MAX];
    snprintf (preload, sizeof preload, "LD_PRELOAD=%s/tests/libslowsync.so",
              h_build_dir ());
    const char *maps[] = { "/bin/sh", "-c", "cat /proc/self/maps; echo LANG=$LANG",
                           NULL };
    const char *hostile[] = { preload, NULL };
    s_outcome_t o = s_exec (t, maps, hostile, 0);
    REQUIRE_MSG (o.status == EMQ_JOB_REJECTED, "LD_PRELOAD job: status %d: %s", o.status,
                 o.text);
    REQUIRE_CONTAINS (o.text, "env: 'LD_PRELOAD' is not allowed by exec_env_allow");
    REQUIRE (!strstr (o.text, "libslowsync"));
    free (o.text);

    const char *others[][2] = { { "GCONV_PATH=/tmp", NULL },
                                { "MALLOC_CHECK_=3", NULL },
                                { "BASH_ENV=/tmp/x", NULL },
                                { "SOMETHING=1", NULL } };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        o = s_exec (t, maps, others[i], 0);
        REQUIRE_MSG (o.status == EMQ_JOB_REJECTED, "%s: status %d: %s", others[i][0],
                     o.status, o.text);
        REQUIRE_CONTAINS (o.text, "is not allowed by exec_env_allow");
        free (o.text);
    }
    const char *lang[] = { "LANG=C.UTF-8", NULL };
    o = s_exec (t, maps, lang, 0);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    REQUIRE_CONTAINS (o.text, "LANG=C.UTF-8");
    free (o.text);
}

static void
test_confine_env_wildcard (h_test_t *t)
{
    //  '*' lets ordinary names through, never a loader variable; naming one
    //  exactly is the operator's explicit choice.
    s_setup (t, "--exec-env-allow", "*:LD_LIBRARY_PATH", NULL);
    const char *show[] = { "/bin/sh", "-c", "echo FOO=$FOO LLP=$LD_LIBRARY_PATH", NULL };
    const char *foo[] = { "FOO=bar", "LD_LIBRARY_PATH=/nowhere", NULL };
    s_outcome_t o = s_exec (t, show, foo, 0);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    REQUIRE_CONTAINS (o.text, "FOO=bar LLP=/nowhere");
    free (o.text);
    const char *preload[] = { "FOO=bar", "LD_PRELOAD=/nowhere.so", NULL };
    o = s_exec (t, show, preload, 0);
    REQUIRE_INT (o.status, ==, EMQ_JOB_REJECTED);
    REQUIRE_CONTAINS (o.text, "'LD_PRELOAD'");
    REQUIRE_CONTAINS (o.text, "only passes when named exactly");
    free (o.text);
}

static void
test_confine_run (h_test_t *t)
{
    s_setup (t, NULL);
    //  libc's functions through the plugin's handle: fork would duplicate
    //  the worker, abort kill it, getpid run. Each is refused.
    const char *libc[] = { "fork", "abort", "getpid", "system" };
    for (size_t i = 0; i < sizeof libc / sizeof libc[0]; i++) {
        s_outcome_t o = s_run (t, libc[i], "\xc0", 1);
        REQUIRE_MSG (o.status == EMQ_JOB_REJECTED, "%s: status %d: %s", libc[i], o.status,
                     o.text);
        REQUIRE_CONTAINS (o.text, "exports no job function");
        free (o.text);
    }
    //  The library's own job functions still run, and no worker died.
    s_outcome_t o = s_run (t, "upper",
                           "\xa3"
                           "abc",
                           4);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    REQUIRE_STREQ (o.text, "\"ABC\"");
    free (o.text);
    REQUIRE_INT (h_log_count (t, "jm", "died"), ==, 0);
}

//  The leftovers of every kind of job end; with_cgroup: the job manager
//  said it uses a cgroup per worker (else the subreaper alone).
static void
s_leftovers (h_test_t *t, bool with_cgroup)
{
    //  A background child holding stdout: the job ends with the command,
    //  not 300 s later, and the child is dead.
    const char *background[] = { "/bin/sh", "-c", "sleep 300 & echo $!", NULL };
    s_outcome_t o = s_exec (t, background, NULL, 0);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    REQUIRE_INT (o.elapsed_ms, <, h_ms (10000));
    pid_t pid = s_pid_in (o.text);
    REQUIRE_INT (pid, >, 0);
    REQUIRE_WAIT (!h_pid_alive (pid), 3000);
    free (o.text);

    //  A daemon that let go of every pipe.
    const char *daemon[] = { "/bin/sh", "-c",
                             "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!",
                             NULL };
    o = s_exec (t, daemon, NULL, 0);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    pid = s_pid_in (o.text);
    REQUIRE_INT (pid, >, 0);
    REQUIRE_WAIT (!h_pid_alive (pid), 3000);
    free (o.text);

    //  A setsid grandchild of a job that times out: the worker's process
    //  group is killed, the grandchild is not in it.
    char script[H_PATH_MAX * 3 + 256], pidfile[H_PATH_MAX + 32];
    snprintf (pidfile, sizeof pidfile, "%s/grandchild.pid", t->dir);
    snprintf (script, sizeof script,
              "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >%s; sleep 300",
              pidfile);
    const char *timeout[] = { "/bin/sh", "-c", script, NULL };
    o = s_exec (t, timeout, NULL, 1);
    REQUIRE_MSG (o.status == EMQ_JOB_TIMEOUT, "status %d: %s", o.status, o.text);
    free (o.text);
    FILE *file = fopen (pidfile, "r");
    REQUIRE (file);
    int grandchild = 0;
    REQUIRE (fscanf (file, "%d", &grandchild) == 1);
    fclose (file);
    REQUIRE_INT (grandchild, >, 0);
    REQUIRE_WAIT (!h_pid_alive ((pid_t) grandchild), 3000);

    //  The same when the job is cancelled while it runs.
    snprintf (pidfile, sizeof pidfile, "%s/cancelled.pid", t->dir);
    snprintf (script, sizeof script,
              "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! >%s.tmp; "
              "mv %s.tmp %s; sleep 300",
              pidfile, pidfile, pidfile);
    h_cli_t r;
    h_cli (t, &r, 20000, "submit", "exec", "--", "/bin/sh", "-c", script, NULL);
    REQUIRE_MSG (r.status == 0, "submit: exit %d: %s", r.status, r.err);
    char msgid[64];
    snprintf (msgid, sizeof msgid, "%s", h_chomp (r.out));
    h_cli_free (&r);
    REQUIRE_WAIT (access (pidfile, F_OK) == 0, 5000);
    file = fopen (pidfile, "r");
    REQUIRE (file);
    grandchild = 0;
    REQUIRE (fscanf (file, "%d", &grandchild) == 1);
    fclose (file);
    REQUIRE (h_pid_alive ((pid_t) grandchild));
    h_cli (t, &r, 20000, "cancel", msgid, NULL);
    REQUIRE_MSG (r.status == 0, "cancel: exit %d: %s", r.status, r.err);
    h_cli_free (&r);
    REQUIRE_WAIT (!h_pid_alive ((pid_t) grandchild), 3000);

    //  A run job that forks: its child ends with it.
    o = s_run (t, "spawn", "\xc0", 1);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    pid = s_pid_in (o.text);
    REQUIRE_INT (pid, >, 0);
    REQUIRE_WAIT (!h_pid_alive (pid), 3000);
    free (o.text);
    //  A setsid child is in the worker's cgroup, when there is one.
    const char *where[] = { "/bin/sh", "-c",
                            "setsid sleep 300 </dev/null >/dev/null 2>&1 & p=$!; "
                            "sleep 0.1; echo $p; cat /proc/$p/cgroup",
                            NULL };
    o = s_exec (t, where, NULL, 0);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    if (with_cgroup)
        REQUIRE_CONTAINS (o.text, "/w-");
    else
        REQUIRE (!strstr (o.text, "/emq-jm-"));
    pid = s_pid_in (o.text);
    REQUIRE_WAIT (pid > 0 && !h_pid_alive (pid), 3000);
    free (o.text);
}

//  The cgroup directory the job manager logged it uses ("" when none).
static void
s_cgroup_dir (h_test_t *t, char *dir, size_t dirlen)
{
    dir[0] = 0;
    char path[H_PATH_MAX + 16], line[2048];
    snprintf (path, sizeof path, "%s/jm.log", t->dir);
    FILE *file = fopen (path, "r");
    REQUIRE (file);
    const char *marker = "cgroup v2 per worker under ";
    while (fgets (line, sizeof line, file)) {
        char *at = strstr (line, marker);
        if (at) {
            at += strlen (marker);
            at[strcspn (at, ",")] = 0;
            snprintf (dir, dirlen, "%s", at);
        }
    }
    fclose (file);
}

static void
test_confine_leftovers (h_test_t *t)
{
    pid_t jm = s_setup (t, "--job-cgroup", "auto", NULL);
    //  The start-up line says which mechanism is active: a cgroup where
    //  the system lets us make one, else the subreaper alone.
    REQUIRE_INT (h_log_count (t, "jm", "job confinement: "), ==, 1);
    char dir[1024];
    s_cgroup_dir (t, dir, sizeof dir);
    h_log (t, "cgroup: %s", dir[0] ? dir : "none");
    s_leftovers (t, dir[0] != 0);
    //  A job manager that stops removes its cgroups.
    kill (jm, SIGTERM);
    REQUIRE (h_proc_wait (t, jm, 10000, NULL));
    if (dir[0])
        REQUIRE_MSG (access (dir, F_OK) != 0, "%s still there", dir);
}

static void
test_confine_subreaper (h_test_t *t)
{
    //  The same without cgroups: the subreaper alone catches them all.
    s_setup (t, "--job-cgroup", "off", NULL);
    REQUIRE_INT (h_log_count (t, "jm", "job confinement: subreaper (no cgroup"), ==, 1);
    s_leftovers (t, false);
}

static void
test_confine_output (h_test_t *t)
{
    s_setup (t, NULL);
    //  No timeout: before, `yes` behind the shell wrote forever.
    const char *endless[] = { "/bin/sh", "-c", "yes; echo never", NULL };
    s_outcome_t o = s_exec (t, endless, NULL, 0);
    REQUIRE_INT (o.status, ==, EMQ_JOB_FAILED);
    REQUIRE_CONTAINS (o.text, "output limit");
    free (o.text);
    //  The worker is fine and serves the next job.
    const char *echo[] = { "/bin/echo", "after", NULL };
    o = s_exec (t, echo, NULL, 0);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    free (o.text);
}

//  True when this build runs under AddressSanitizer: its shadow memory is
//  terabytes of address space, so RLIMIT_AS cannot apply in the worker.
static bool
s_asan (void)
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#else
    return false;
#endif
}

static void
test_confine_limits (h_test_t *t)
{
    s_setup (t, "--rlimit-as", "256M", "--rlimit-cpu", "1", "--rlimit-nofile", "64",
             NULL);
    //  exec: an allocation past RLIMIT_AS fails, the command reports it.
    const char *perl[] = { "/bin/perl", "-e",
                           "my $x = 'x' x (512 * 1024 * 1024); print 1", NULL };
    s_outcome_t o = s_exec (t, perl, NULL, 0);
    REQUIRE_MSG (o.status == EMQ_JOB_FAILED, "perl past RLIMIT_AS: status %d: %s",
                 o.status, o.text);
    REQUIRE_CONTAINS (o.text, "Out of memory");
    free (o.text);

    //  exec: a CPU hog is killed at 1 s of CPU.
    const char *spin[] = { "/bin/sh", "-c", "while :; do :; done", NULL };
    o = s_exec (t, spin, NULL, 0);
    REQUIRE_MSG (o.status == EMQ_JOB_FAILED, "CPU hog: status %d: %s", o.status, o.text);
    REQUIRE_CONTAINS (o.text, "CPU limit of 1 s reached");
    free (o.text);

    //  A job may ask for less than the settings, never more.
    const char *show[] = { "/bin/sh", "-c", "ulimit -n; ulimit -t", NULL };
    payload_t payload = { .kind = PAYLOAD_EXEC,
                          .argv = (char **) show,
                          .argc = 3,
                          .limits = { .nofile = 20 } };
    o = s_submit (t, &payload, 0, 20000);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    REQUIRE_STREQ (o.text, "\"20\\n1\\n\"");
    free (o.text);
    payload.limits = (payload_limits_t){ .nofile = 100000, .cpu_s = 1000 };
    o = s_submit (t, &payload, 0, 20000);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    REQUIRE_STREQ (o.text, "\"64\\n1\\n\"");
    free (o.text);
    //  The same through emq-cli --limit.
    h_cli_t r;
    h_cli (t, &r, 20000, "submit", "--wait", "--limit", "nofile=12", "--limit",
           "cpu=9999", "exec", "--", "/bin/sh", "-c", "ulimit -n; ulimit -t", NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli exit %d: %s", r.status, r.err);
    REQUIRE_STREQ (r.out, "12\n1\n");
    h_cli_free (&r);
    h_cli (t, &r, 20000, "submit", "--limit", "memory=1", "exec", "--", "/bin/true",
           NULL);
    REQUIRE_INT (r.status, ==, 2);
    REQUIRE_CONTAINS (r.err, "--limit");
    h_cli_free (&r);

    //  run: the CPU limit kills the worker running the function (SIGXCPU);
    //  it is replaced.
    o = s_run (t, "spin", "\x0a", 1);  // 10 s of CPU
    REQUIRE_MSG (o.status == EMQ_JOB_CRASHED, "spin: status %d: %s", o.status, o.text);
    REQUIRE_CONTAINS (o.text, "SIGXCPU");
    free (o.text);

    //  run: malloc fails past RLIMIT_AS; the job fails cleanly and the
    //  worker retires (its memory is not to be trusted any more).
    if (s_asan ())
        h_log (t, "AddressSanitizer build: RLIMIT_AS in the worker skipped");
    else {
        o = s_run (t, "alloc", "\xcd\x02\x00", 3);  // 512 MiB
        REQUIRE_MSG (o.status == EMQ_JOB_FAILED, "alloc: status %d: %s", o.status,
                     o.text);
        REQUIRE_CONTAINS (o.text, "out of memory");
        free (o.text);
        REQUIRE_WAIT (h_log_count (t, "jm", "retires after") >= 1, 5000);
        //  What fits runs, on a fresh worker.
        o = s_run (t, "alloc", "\x10", 1);  // 16 MiB
        REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
        free (o.text);
    }
    //  Two workers, both still serving.
    o = s_run (t, "noop", "\xc0", 1);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    free (o.text);
}

static void
test_confine_user (h_test_t *t)
{
    //  An unknown user: the job manager refuses to start (exit 5).
    h_router (t, "router", NULL);
    pid_t bad = h_jm (t, "baduser", DEFAULT_Q, 1, "--user", "emq-no-such-user", NULL);
    int status = 0;
    REQUIRE (h_proc_wait (t, bad, 10000, &status));
    REQUIRE_MSG (WIFEXITED (status) && WEXITSTATUS (status) == 5, "exit status %d",
                 WIFEXITED (status) ? WEXITSTATUS (status) : -1);
    REQUIRE_INT (h_log_count (t, "baduser", "'emq-no-such-user' is no user"), ==, 1);
    if (geteuid () != 0) {
        printf ("    # confine_user: not root, workers as 'nobody' not tested\n");
        return;
    }
    h_jm (t, "jm", DEFAULT_Q, 2, "--user", "nobody", NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    const char *id[] = { "/bin/id", "-u", NULL };
    s_outcome_t o = s_exec (t, id, NULL, 0);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    REQUIRE_STREQ (o.text, "\"65534\\n\"");
    free (o.text);
    const char *groups[] = { "/bin/id", "-G", NULL };
    o = s_exec (t, groups, NULL, 0);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    REQUIRE (!strstr (o.text, "\"0") && !strstr (o.text, " 0 "));
    free (o.text);
    //  run jobs too.
    o = s_run (t, "upper",
               "\xa3"
               "abc",
               4);
    REQUIRE_INT (o.status, ==, EMQ_JOB_OK);
    free (o.text);
}

const h_testdef_t h_confinement_tests[] = {
    { "confine_env", test_confine_env,
      "exec env: LD_PRELOAD, GCONV_PATH, MALLOC_*, names off the allow-list refused" },
    { "confine_env_wildcard", test_confine_env_wildcard,
      "exec_env_allow '*' never passes a loader variable unless named" },
    { "confine_run", test_confine_run, "run jobs cannot call libc's fork/abort/getpid" },
    { "confine_leftovers", test_confine_leftovers,
      "background child, daemon, setsid grandchild after timeout: all killed" },
    { "confine_subreaper", test_confine_subreaper,
      "the same with --job-cgroup off: the subreaper alone" },
    { "confine_output", test_confine_output,
      "an endless writer behind a shell is killed at the output limit" },
    { "confine_limits", test_confine_limits,
      "rlimit_as/cpu/nofile: clean failure, worker replaced, only lower asks" },
    { "confine_user", test_confine_user, "workers run as nobody; unknown user refused" },
};
const size_t h_confinement_count =
    sizeof h_confinement_tests / sizeof h_confinement_tests[0];
