/*  dropin — an EventMQ deployment switching to emq without changing a line:
    its settings file, environment and flags start emq-router,
    emq-jobmanager and emq-scheduler on the addresses they name; emq-cli's
    shell (driven through a pseudo-terminal) and its one-shot commands;
    emq-pubsub with a plain ZeroMQ SUB client. Real processes, real sockets.
*/
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

//  A TCP port on 127.0.0.1 that was free a moment ago.
static int
s_free_port (void)
{
    zsock_t *probe = zsock_new (ZMQ_ROUTER);
    REQUIRE (probe);
    int port = zsock_bind (probe, "tcp://127.0.0.1:*");
    zsock_destroy (&probe);
    REQUIRE_INT (port, >, 0);
    return port;
}

//  Writes text to <dir>/name; returns the path (static buffer per call site
//  is not needed: the caller copies it).
static void
s_write (h_test_t *t, const char *name, const char *text, char *path, size_t size)
{
    snprintf (path, size, "%s/%s", t->dir, name);
    FILE *file = fopen (path, "w");
    REQUIRE_MSG (file != NULL, "cannot write %s", path);
    fputs (text, file);
    fclose (file);
}

//  The whole log of a process this test started (malloc'd), "" if none.
static char *
s_log_text (h_test_t *t, const char *tag)
{
    char path[H_PATH_MAX + 80];
    snprintf (path, sizeof path, "%s/%s.log", t->dir, tag);
    char *text = NULL;
    size_t size = 0;
    FILE *stream = open_memstream (&text, &size);
    FILE *file = fopen (path, "r");
    if (file) {
        char buf[4096];
        size_t n;
        while ((n = fread (buf, 1, sizeof buf, file)) > 0)
            fwrite (buf, 1, n, stream);
        fclose (file);
    }
    fclose (stream);
    return text;
}

//  Runs program with args to its end (up to 10 s); returns its exit code.
static int
s_run (h_test_t *t, const char *tag, const char *program, const char *const *args)
{
    pid_t pid = h_spawn (t, tag, false, program, args);
    int status = 0;
    REQUIRE_MSG (h_proc_wait (t, pid, 10000, &status), "%s did not end", tag);
    REQUIRE_MSG (WIFEXITED (status), "%s died of signal %d", tag, WTERMSIG (status));
    return WEXITSTATUS (status);
}

//  Schedulers connected to the router, by ROUTER_SHOW_SCHEDULERS.
static int
s_scheduler_count (h_test_t *t)
{
    json_t *reply = h_admin (t, "ROUTER_SHOW_SCHEDULERS");
    json_t *connected = json_object_get (reply, "connected_schedulers");
    int count = json_is_object (connected) ? (int) json_object_size (connected) : -1;
    json_decref (reply);
    return count;
}

//  ---------------------------------------------------------------------
//  An EventMQ eventmq.conf and environment, unchanged

static void
test_eventmq_settings (h_test_t *t)
{
    //  What an EventMQ 0.3.13 deployment has: frontend_addr on every
    //  interface ([global]), the job managers' worker_addr, the scheduler's
    //  scheduler_addr, and the admin address in the environment.
    int port = s_free_port ();
    char text[4096], conf[H_PATH_MAX + 32];
    snprintf (text, sizeof text,
              "[global]\n"
              "frontend_addr = tcp://0.0.0.0:%d\n"
              "heartbeat_interval = 0.2\n"
              "heartbeat_timeout = 0.5\n"
              "super_debug = false\n"
              "[router]\n"
              "backend_addr = %s\n"
              "hwm = 500\n"
              "[jobmanager]\n"
              "worker_addr = %s\n"
              "concurrent_jobs = 4\n"
              "max_job_count = 100\n"
              "global_timeout = 1\n"
              "[scheduler]\n"
              "scheduler_addr = tcp://127.0.0.1:%d\n",
              port, t->backend, t->backend, port);
    s_write (t, "eventmq.conf", text, conf, sizeof conf);
    setenv ("EVENTMQ_ADMINISTRATIVE_ADDR", t->admin, 1);

    //  --print-config says where each value came from.
    const char *print[] = { "-C", conf, "--print-config", NULL };
    REQUIRE_INT (s_run (t, "router-print", "emq-router", print), ==, 0);
    char *printed = s_log_text (t, "router-print");
    char expect[2048];
    snprintf (
        expect, sizeof expect,
        "frontend_listen_addr = tcp://0.0.0.0:%d  # %s:2 [global] (as frontend_addr)",
        port, conf);
    REQUIRE_CONTAINS (printed, expect);
    snprintf (expect, sizeof expect,
              "administrative_listen_addr = %s  # env EVENTMQ_ADMINISTRATIVE_ADDR (as "
              "administrative_addr)",
              t->admin);
    REQUIRE_CONTAINS (printed, expect);
    REQUIRE_CONTAINS (printed, "queue_hwm = 500  #");
    free (printed);
    const char *sched_print[] = { "-C", conf, "--print-config", NULL };
    REQUIRE_INT (s_run (t, "sched-print", "emq-scheduler", sched_print), ==, 0);
    printed = s_log_text (t, "sched-print");
    snprintf (expect, sizeof expect, "scheduler_addr = tcp://127.0.0.1:%d  # %s:15", port,
              conf);
    REQUIRE_CONTAINS (printed, expect);
    free (printed);

    const char *jm_print[] = { "-C", conf, "-Q", "heavy", "default", "--print-config",
                               NULL };
    REQUIRE_INT (s_run (t, "jm-print", "emq-jobmanager", jm_print), ==, 0);
    printed = s_log_text (t, "jm-print");
    snprintf (expect, sizeof expect,
              "backend_addr = %s  # %s:10 [jobmanager] (as worker_addr)", t->backend,
              conf);
    REQUIRE_CONTAINS (printed, expect);
    REQUIRE_CONTAINS (printed,
                      "queues = [[10,\"heavy\"],[10,\"default\"]]  # command line");
    REQUIRE_CONTAINS (printed, "(as global_timeout)");
    free (printed);

    //  A -Q word that is no queue: one line saying so, exit 3 (bad value).
    const char *jm_bad_q[] = { "-C", conf, "-Q", "heavy", "1,", "--print-config", NULL };
    REQUIRE_INT (s_run (t, "jm-bad-q", "emq-jobmanager", jm_bad_q), ==, 3);
    REQUIRE_INT (h_log_count (t, "jm-bad-q", "queues = 'heavy 1,'"), ==, 1);

    //  The router binds what the file and environment name, and says that
    //  the frontend is open to the network without CURVE.
    const char *router_args[] = { "-C", conf, "--in-memory", NULL };
    pid_t router = h_spawn (t, "router", true, "emq-router", router_args);
    json_t *status = NULL;
    REQUIRE_WAIT ((status = h_admin_at (t, t->admin, "STATUS", h_ms (500))) != NULL
                      || !h_pid_alive (router),
                  10000);
    REQUIRE_MSG (status != NULL, "emq-router exited");
    json_decref (status);
    snprintf (expect, sizeof expect,
              "frontend socket tcp://0.0.0.0:%d reaches beyond this host without CURVE",
              port);
    REQUIRE_WAIT (h_log_count (t, "router", expect) == 1, 5000);
    REQUIRE_INT (h_log_count (t, "router", "backend socket"), ==, 0);
    REQUIRE_INT (h_log_count (t, "router", "admin socket"), ==, 0);

    //  EventMQ's job manager flags: -C, -J, -Q NAME... (weight 10 each), -n.
    char plugins[H_PATH_MAX];
    snprintf (plugins, sizeof plugins, "%s/plugins", h_build_dir ());
    const char *jm_args[] = { "-C",    conf,           "-J",     "2",    "-Q",
                              "heavy", "default",      "-n",     "jmeq", "--plugin-dir",
                              plugins, "--exec-allow", "/bin/*", NULL };
    h_spawn (t, "jmeq", true, "emq-jobmanager", jm_args);
    REQUIRE_WAIT (h_jm_has_slots (t, "jmeq", 2), 10000);
    json_t *info = h_jm_info (t, "jmeq", NULL);
    char *dumped = json_dumps (info, JSON_COMPACT);
    h_log (t, "jmeq: %s", dumped);
    REQUIRE_CONTAINS (dumped, "[10,\"heavy\"]");
    REQUIRE_CONTAINS (dumped, "[10,\"default\"]");
    free (dumped);
    json_decref (info);

    //  The scheduler connects where [scheduler] scheduler_addr says.
    char sched_dir[H_PATH_MAX + 16];
    snprintf (sched_dir, sizeof sched_dir, "%s/sched", t->dir);
    const char *sched_args[] = { "-C", conf, "--data-dir", sched_dir, NULL };
    h_spawn (t, "sched", true, "emq-scheduler", sched_args);
    REQUIRE_WAIT (s_scheduler_count (t) == 1, 10000);

    //  A client reaches the router through the configured frontend port.
    char frontend[64];
    snprintf (frontend, sizeof frontend, "tcp://127.0.0.1:%d", port);
    emq_client_t *client = emq_client_new (frontend);
    REQUIRE (client);
    char msgid[37];
    h_submit_run (client, "heavy", "upper", "\"switched\"", 0, msgid);
    emq_event_t event;
    int rc = emq_wait_result (client, msgid, h_ms (10000), &event);
    REQUIRE_INT (rc, ==, 0);
    char *value = h_result_text (&event);
    REQUIRE_STREQ (value, "\"SWITCHED\"");
    free (value);
    //  global_timeout kills a job that names no timeout of its own.
    const char *sleeper[] = { "/bin/sleep", "30", NULL };
    void *payload;
    size_t size;
    h_payload_exec (sleeper, &payload, &size);
    emq_submit_opts_t opts = { .reply = true };
    int64_t started = clock_mono_ms ();
    rc = emq_submit (client, &opts, payload, size, msgid, h_ms (5000));
    free (payload);
    REQUIRE_INT (rc, ==, 0);
    rc = emq_wait_result (client, msgid, h_ms (10000), &event);
    REQUIRE_INT (rc, ==, EMQ_ERR_JOB_TIMEOUT);
    REQUIRE_INT (clock_mono_ms () - started, <, h_ms (8000));
    emq_client_destroy (&client);
    unsetenv ("EVENTMQ_ADMINISTRATIVE_ADDR");
}

//  A named config file that is not there: a warning (as in EventMQ), not an
//  exit. One that cannot be read, or is malformed: an error (exit 3).
static void
test_config_file_missing (h_test_t *t)
{
    char missing[H_PATH_MAX + 32];
    snprintf (missing, sizeof missing, "%s/no-such.conf", t->dir);
    h_router (t, "router", "-C", missing, NULL);
    REQUIRE_WAIT (h_log_count (t, "router", "not found, going on without it") == 1, 5000);
    const char *jm_args[] = { "-C",  missing, "--backend-addr", t->backend, "-n",
                              "jmm", NULL };
    h_spawn (t, "jmm", true, "emq-jobmanager", jm_args);
    REQUIRE_WAIT (h_jm_registered (t, "jmm"), 10000);
    REQUIRE_INT (h_log_count (t, "jmm", "not found, going on without it"), ==, 1);

    const char *dir_args[] = { "-C", t->dir, "--in-memory", NULL };
    REQUIRE_INT (s_run (t, "router-dir", "emq-router", dir_args), ==, 3);
    REQUIRE_INT (h_log_count (t, "router-dir", "Is a directory"), ==, 1);
    char bad[H_PATH_MAX + 32];
    s_write (t, "bad.conf", "[router]\nthis is not ini\n", bad, sizeof bad);
    const char *bad_args[] = { "-C", bad, "--in-memory", NULL };
    REQUIRE_INT (s_run (t, "router-bad", "emq-router", bad_args), ==, 3);
    REQUIRE_INT (h_log_count (t, "router-bad", "bad.conf:2: syntax error"), ==, 1);
    const char *jm_bad[] = { "--config", bad, NULL };
    REQUIRE_INT (s_run (t, "jm-bad", "emq-jobmanager", jm_bad), ==, 4);
    const char *sched_dir[] = { "-C", t->dir, "--print-config", NULL };
    REQUIRE_INT (s_run (t, "sched-dir", "emq-scheduler", sched_dir), ==, 3);
}

//  ---------------------------------------------------------------------
//  emq-cli: EventMQ's shell through a pseudo-terminal, and one-shot

typedef struct {
    int fd;      // the pty's master side
    pid_t pid;   // emq-cli
    char *seen;  // everything it printed (malloc'd)
    size_t size;
    size_t mark;  // s_pty_expect looks after this offset
} s_pty_t;

//  Reads what is there within wait_ms into pty->seen.
static void
s_pty_read (s_pty_t *pty, int wait_ms)
{
    struct pollfd item = { pty->fd, POLLIN, 0 };
    if (poll (&item, 1, wait_ms) <= 0)
        return;
    char buf[4096];
    ssize_t n = read (pty->fd, buf, sizeof buf);
    if (n <= 0)
        return;
    pty->seen = realloc (pty->seen, pty->size + (size_t) n + 1);
    REQUIRE (pty->seen);
    memcpy (pty->seen + pty->size, buf, (size_t) n);
    pty->size += (size_t) n;
    pty->seen[pty->size] = 0;
}

//  Waits until needle appears after the mark; moves the mark past it.
static void
s_pty_expect (h_test_t *t, s_pty_t *pty, const char *needle)
{
    int64_t deadline = clock_mono_ms () + h_ms (10000);
    char *found = NULL;
    while (!(found = pty->seen ? strstr (pty->seen + pty->mark, needle) : NULL)
           && clock_mono_ms () < deadline)
        s_pty_read (pty, 50);
    if (!found)
        h_fail (__FILE__, __LINE__,
                "emq-cli's terminal never showed \"%s\"; it showed:\n%s", needle,
                pty->seen ? pty->seen + pty->mark : "");
    pty->mark = (size_t) (found - pty->seen) + strlen (needle);
    h_log (t, "terminal showed \"%s\"", needle);
}

//  Types a line (or keys) at the terminal.
static void
s_pty_type (s_pty_t *pty, const char *keys)
{
    size_t len = strlen (keys);
    REQUIRE_INT (write (pty->fd, keys, len), ==, (long long) len);
}

//  Starts emq-cli with two arguments on a new pseudo-terminal.
static void
s_pty_start (h_test_t *t, s_pty_t *pty, const char *arg1, const char *arg2)
{
    char exe[H_PATH_MAX];
    snprintf (exe, sizeof exe, "%s/bin/emq-cli", h_build_dir ());
    memset (pty, 0, sizeof *pty);
    fflush (stdout);
    fflush (stderr);
    pty->pid = forkpty (&pty->fd, NULL, NULL, NULL);
    REQUIRE_MSG (pty->pid >= 0, "forkpty: %s", strerror (errno));
    if (pty->pid == 0) {
        char conf[H_PATH_MAX + 16];
        snprintf (conf, sizeof conf, "%s/empty.conf", t->dir);
        setenv ("EVENTMQ_CONFIG_FILE", conf, 1);
        setenv ("HOME", t->dir, 1);
        setenv ("TERM", "dumb", 1);
        setenv ("EMQ_BROKER_ADDR", t->frontend, 1);
        execl (exe, exe, arg1, arg2, (char *) NULL);
        _exit (127);
    }
}

//  Waits for emq-cli to leave (it was told to); it must exit 0.
static void
s_pty_end (h_test_t *t, s_pty_t *pty)
{
    (void) t;
    int64_t deadline = clock_mono_ms () + h_ms (5000);
    int status = 0;
    pid_t done = 0;
    while ((done = waitpid (pty->pid, &status, WNOHANG)) == 0
           && clock_mono_ms () < deadline)
        s_pty_read (pty, 50);
    REQUIRE_MSG (done == pty->pid, "emq-cli's shell did not quit; it showed:\n%s",
                 pty->seen ? pty->seen : "");
    REQUIRE_MSG (WIFEXITED (status) && WEXITSTATUS (status) == 0, "shell status %d",
                 status);
    close (pty->fd);
    free (pty->seen);
    pty->seen = NULL;
}

static void
test_cli_shell (h_test_t *t)
{
    pid_t router = h_router (t, "router", NULL);
    h_jm (t, "jmsh", "[[10,\"default\"]]", 1, NULL);
    h_wait_jm (t, "jmsh", 10000, NULL);

    //  One-shot, as EventMQ's commands: show_workers, send_cmd.
    h_cli_t r;
    h_cli (t, &r, 10000, "show_workers", NULL);
    REQUIRE_MSG (r.status == 0, "show_workers: exit %d: %s", r.status, r.err);
    REQUIRE_CONTAINS (r.out, "\"connected_workers\"");
    REQUIRE_CONTAINS (r.out, "\"jmsh-");
    h_cli_free (&r);
    h_cli (t, &r, 10000, "send_cmd", "router_show_schedulers", NULL);
    REQUIRE_MSG (r.status == 0, "send_cmd: exit %d: %s", r.status, r.err);
    REQUIRE_CONTAINS (r.out, "\"connected_schedulers\"");
    h_cli_free (&r);
    h_cli (t, &r, 10000, "send_cmd", "BOGUS", NULL);
    REQUIRE_INT (r.status, ==, 2);
    REQUIRE_CONTAINS (r.err, "unknown admin command");
    h_cli_free (&r);

    //  EventMQ's own invocation, `emq-cli --addr ADDR`: there --addr is the
    //  shell's address (the admin socket), not emq's frontend.
    s_pty_t pty = { 0 };
    s_pty_start (t, &pty, "--addr", t->admin);
    char line[H_PATH_MAX + 32];
    snprintf (line, sizeof line, "Connecting to %s...", t->admin);
    s_pty_expect (t, &pty, line);
    s_pty_type (&pty, "show_workers\n");
    s_pty_expect (t, &pty, "\"jmsh-");
    s_pty_type (&pty, "exit\n");
    s_pty_end (t, &pty);

    //  The shell: emq-cli -a ADDR on a terminal, nothing else.
    s_pty_start (t, &pty, "-a", t->admin);
    s_pty_expect (t, &pty, "Connecting to ");
    s_pty_expect (t, &pty, "> ");
    s_pty_type (&pty, "show_workers\n");
    s_pty_expect (t, &pty, "\"jmsh-");
    s_pty_expect (t, &pty, "> ");
    s_pty_type (&pty, "status\n");
    s_pty_expect (t, &pty, "\"waiting_messages_by_queue\"");
    s_pty_expect (t, &pty, "> ");
    //  History: Ctrl-P brings back "status".
    s_pty_type (&pty, "\x10\n");
    s_pty_expect (t, &pty, "\"waiting_messages_by_queue\"");
    s_pty_expect (t, &pty, "> ");
    s_pty_type (&pty, "show_schedulers\n");
    s_pty_expect (t, &pty, "\"connected_schedulers\"");
    //  emq's own commands inside the shell, words quoted as in a shell.
    s_pty_type (&pty, "submit --wait run " H_PLUGIN " upper '\"from the shell\"'\n");
    s_pty_expect (t, &pty, "\"FROM THE SHELL\"");
    s_pty_type (&pty, "submit run " H_PLUGIN " upper \"unbalanced\n");
    s_pty_expect (t, &pty, "cannot split that line");
    s_pty_type (&pty, "frobnicate\n");
    s_pty_expect (t, &pty, "unknown command 'frobnicate'");
    //  disconnect, then nothing to talk to; connect again.
    s_pty_type (&pty, "disconnect\n");
    s_pty_expect (t, &pty, "Closing connection to");
    s_pty_type (&pty, "status\n");
    s_pty_expect (t, &pty, "not connected");
    snprintf (line, sizeof line, "connect %s\n", t->admin);
    s_pty_type (&pty, line);
    s_pty_expect (t, &pty, "Connecting to ");
    s_pty_type (&pty, "send_cmd STATUS\n");
    s_pty_expect (t, &pty, "\"waiting_messages_by_queue\"");
    //  shutdown stops the router; quit leaves the shell.
    s_pty_type (&pty, "shutdown\n");
    s_pty_expect (t, &pty, "is shutting down");
    int status = 0;
    REQUIRE_MSG (h_proc_wait (t, router, 10000, &status), "router still running");
    REQUIRE (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    s_pty_type (&pty, "quit\n");
    s_pty_end (t, &pty);
    //  The history outlives the session.
    char path[H_PATH_MAX + 32];
    snprintf (path, sizeof path, "%s/.emq_cli_history", t->dir);
    FILE *file = fopen (path, "r");
    REQUIRE_MSG (file != NULL, "no history file %s", path);
    char buf[4096] = "";
    size_t n = fread (buf, 1, sizeof buf - 1, file);
    buf[n] = 0;
    fclose (file);
    //  (libedit's format: one line per entry, spaces as \040.)
    REQUIRE_CONTAINS (buf, "\nshow_workers\n");
    REQUIRE_CONTAINS (buf, "\nsend_cmd\\040STATUS\n");
}

//  ---------------------------------------------------------------------
//  emq-pubsub

//  Receives one message on sub within timeout_ms, or NULL.
static zmsg_t *
s_sub_recv (zsock_t *sub, int timeout_ms)
{
    zpoller_t *poller = zpoller_new (sub, NULL);
    zmsg_t *msg = zpoller_wait (poller, timeout_ms) ? zmsg_recv (sub) : NULL;
    zpoller_destroy (&poller);
    return msg;
}

static void
test_pubsub (h_test_t *t)
{
    //  EventMQ's setting names, from the environment.
    char incoming[H_PATH_MAX + 16], outgoing[H_PATH_MAX + 16];
    snprintf (incoming, sizeof incoming, "ipc://%s/pub-in", t->dir);
    snprintf (outgoing, sizeof outgoing, "ipc://%s/pub-out", t->dir);
    setenv ("EVENTMQ_PUBLISHER_INCOMING_ADDR", incoming, 1);
    setenv ("EVENTMQ_PUBLISHER_OUTGOING_ADDR", outgoing, 1);
    const char *args[] = { "--log-level", "debug", NULL };
    pid_t pubsub = h_spawn (t, "pubsub", true, "emq-pubsub", args);
    unsetenv ("EVENTMQ_PUBLISHER_INCOMING_ADDR");
    unsetenv ("EVENTMQ_PUBLISHER_OUTGOING_ADDR");

    //  A plain ZeroMQ SUB client, and a publisher that speaks eMQP.
    zsock_t *sub = zsock_new_sub (outgoing, "prices.");
    zsock_t *publisher = zsock_new_dealer (incoming);
    REQUIRE (sub && publisher);
    //  Until the subscription has reached the PUB socket, PUB drops.
    zmsg_t *got = NULL;
    int64_t deadline = clock_mono_ms () + h_ms (10000);
    while (!got && clock_mono_ms () < deadline && h_pid_alive (pubsub)) {
        zstr_sendx (publisher, "", "eMQP/1.0", "PUBLISH", "warm", "prices.warm", "w",
                    NULL);
        got = s_sub_recv (sub, 100);
    }
    REQUIRE_MSG (got != NULL, "nothing published reached the SUB client");
    zmsg_destroy (&got);
    while ((got = s_sub_recv (sub, 200)))
        zmsg_destroy (&got);

    //  Malformed input: logged, dropped, never a crash.
    zstr_sendx (publisher, "", "eMQP/1.0", "PUBLISH", "m1", "prices.eur", NULL);
    zmsg_t *binary = zmsg_new ();
    zmsg_addstr (binary, "");
    zmsg_addstr (binary, "eMQP/1.0");
    zmsg_addstr (binary, "PUBLISH");
    zmsg_addstr (binary, "m2");
    zmsg_addmem (binary, "prices.\xff\xfe", 9);
    zmsg_addstr (binary, "x");
    zmsg_send (&binary, publisher);
    zstr_sendx (publisher, "", "eMQP/1.0", "REQUEST", "m3", "default", "", "[]", NULL);
    zstr_sendx (publisher, "", "garbage", NULL);
    //  Then real ones: the topic is the first frame; others' topics are
    //  filtered out by the SUB socket itself.
    zstr_sendx (publisher, "", "eMQP/1.0", "PUBLISH", "m4", "weather", "rain", NULL);
    zstr_sendx (publisher, "", "eMQP/1.0", "PUBLISH", "m5", "prices.eur",
                "{\"bid\": 1.05}", NULL);
    got = s_sub_recv (sub, h_ms (5000));
    REQUIRE_MSG (got != NULL, "the PUBLISH after the malformed ones never arrived");
    REQUIRE_INT (zmsg_size (got), ==, 2);
    char *topic = zmsg_popstr (got);
    char *message = zmsg_popstr (got);
    REQUIRE_STREQ (topic, "prices.eur");
    REQUIRE_STREQ (message, "{\"bid\": 1.05}");
    zstr_free (&topic);
    zstr_free (&message);
    zmsg_destroy (&got);
    REQUIRE (h_pid_alive (pubsub));
    REQUIRE_WAIT (h_log_count (t, "pubsub", "message refused") == 3, 5000);
    REQUIRE_INT (h_log_count (t, "pubsub", "PUBLISH: missing message frame"), ==, 1);
    REQUIRE_INT (h_log_count (t, "pubsub", "not valid UTF-8"), ==, 1);
    REQUIRE_INT (h_log_count (t, "pubsub", "REQUEST is not a pubsub command"), ==, 1);

    zsock_destroy (&sub);
    zsock_destroy (&publisher);
    //  SIGTERM: a clean stop.
    kill (pubsub, SIGTERM);
    int status = 0;
    REQUIRE (h_proc_wait (t, pubsub, 5000, &status));
    REQUIRE_MSG (WIFEXITED (status) && WEXITSTATUS (status) == 0, "status %d", status);
}

const h_testdef_t h_dropin_tests[] = {
    { "eventmq_settings", test_eventmq_settings,
      "EventMQ's eventmq.conf, env and flags start router, jm and scheduler" },
    { "config_file_missing", test_config_file_missing,
      "a missing named config file warns; unreadable or malformed is an error" },
    { "cli_shell", test_cli_shell,
      "emq-cli's EventMQ shell through a pty, and one-shot" },
    { "pubsub", test_pubsub, "emq-pubsub: PUBLISH in, a plain SUB client receives" },
};
const size_t h_dropin_count = sizeof h_dropin_tests / sizeof h_dropin_tests[0];
