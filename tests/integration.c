/*  integration — emq's integration tests: real emq-router, emq-jobmanager,
    workers and emq-cli processes talking real eMQP over ipc:// paths in a
    fresh temp directory per test. See harness.h for how processes are
    started, timed out and cleaned up.

        integration [-v] [-k] [-l] [-t NAME]...

    Each test asserts real outcomes (exit codes, results, router state), and
    waits for them by polling with a deadline, never by sleeping.
*/
#include "harness.h"
#include "curve.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_Q "[[10,\"default\"]]"

//  ---------------------------------------------------------------------
//  Helpers

//  Starts a router and one job manager `name` on queue default, waits until
//  it is registered.
static pid_t
s_router_and_jm (h_test_t *t, const char *name, int concurrent)
{
    h_router (t, "router", NULL);
    pid_t jm = h_jm (t, name, DEFAULT_Q, concurrent, NULL);
    h_wait_jm (t, name, 10000, NULL);
    return jm;
}

static emq_client_t *
s_client (h_test_t *t)
{
    emq_client_t *client = emq_client_new (t->frontend);
    REQUIRE_MSG (client != NULL, "emq_client_new(%s) failed", t->frontend);
    return client;
}

//  Waits for msgid's RESULT; fails the test when none comes within
//  timeout_ms. Returns emq_wait_result's code; *event holds the result.
static int
s_wait_result (h_test_t *t, emq_client_t *client, const char *msgid, int timeout_ms,
               emq_event_t *event)
{
    int rc = emq_wait_result (client, msgid, h_ms (timeout_ms), event);
    REQUIRE_MSG (rc != EMQ_ERR_TIMEOUT, "no RESULT for %s within %d ms (%s)", msgid,
                 h_ms (timeout_ms), emq_client_last_error (client));
    REQUIRE_INT (event->type, ==, EMQ_EVENT_RESULT);
    REQUIRE_STREQ (event->msgid, msgid);
    char *text = h_result_text (event);
    h_log (t, "result %s: status %d rc %d: %.200s (%s)", msgid, (int) event->status, rc,
           text, event->usage);
    free (text);
    return rc;
}

//  Waits for an ok RESULT and returns its value as JSON text (caller frees).
static char *
s_expect_ok (h_test_t *t, emq_client_t *client, const char *msgid, int timeout_ms)
{
    emq_event_t event;
    int rc = s_wait_result (t, client, msgid, timeout_ms, &event);
    char *text = h_result_text (&event);
    REQUIRE_MSG (event.status == EMQ_JOB_OK, "job %s: status %d, expected ok (0): %s",
                 msgid, (int) event.status, text);
    REQUIRE_INT (rc, ==, 0);
    return text;
}

//  Runs one job (function, JSON args) and checks it returns `expected`
//  (JSON text), or just ok when expected is NULL.
static void
s_run_ok (h_test_t *t, emq_client_t *client, const char *queue, const char *function,
          const char *args, const char *expected)
{
    char msgid[37];
    h_submit_run (client, queue, function, args, 0, msgid);
    char *text = s_expect_ok (t, client, msgid, 20000);
    if (expected)
        REQUIRE_STREQ (text, expected);
    free (text);
}

//  A number the router keeps for the job manager `name`: "processed" (jobs
//  it did), "inflight" (jobs it holds: running or prefetched).
static long long
s_jm_count (h_test_t *t, const char *name, const char *key)
{
    json_t *info = h_jm_info (t, name, NULL);
    long long count = h_jint (info, -1, key, NULL);
    json_decref (info);
    return count;
}

static long long
s_jm_processed (h_test_t *t, const char *name)
{
    return s_jm_count (t, name, "processed");
}

//  A number from the job manager's own stats (as of its last heartbeat).
static long long
s_jm_stat (h_test_t *t, const char *name, const char *key)
{
    json_t *info = h_jm_info (t, name, NULL);
    long long value = h_jint (info, -1, "stats", key, NULL);
    json_decref (info);
    return value;
}

static long long
s_status_int (h_test_t *t, const char *a, const char *b, const char *c)
{
    json_t *status = h_admin (t, "STATUS");
    long long value = h_jint (status, -1, a, b, c, NULL);
    json_decref (status);
    return value;
}

//  True when the job manager's pid_distribution has a pid not in `old`.
static bool
s_has_new_pid (h_test_t *t, const char *name, const pid_t *old, size_t nold)
{
    json_t *info = h_jm_info (t, name, NULL);
    json_t *dist = h_jget (info, "stats", "pid_distribution", NULL);
    bool found = false;
    const char *key;
    json_t *value;
    json_object_foreach (dist, key, value)
    {
        pid_t pid = (pid_t) atol (key);
        bool is_old = false;
        for (size_t i = 0; i < nold; i++)
            is_old = is_old || old[i] == pid;
        found = found || (pid > 0 && !is_old);
    }
    json_decref (info);
    return found;
}

static void
s_exit_status_check (h_test_t *t, pid_t pid, int timeout_ms, int expected,
                     const char *what)
{
    int status = 0;
    bool exited = h_proc_wait (t, pid, timeout_ms, &status);
    REQUIRE_MSG (exited, "%s (pid %d) still running after %d ms", what, (int) pid,
                 h_ms (timeout_ms));
    REQUIRE_MSG (WIFEXITED (status), "%s ended by signal %d", what,
                 WIFSIGNALED (status) ? WTERMSIG (status) : -1);
    REQUIRE_MSG (WEXITSTATUS (status) == expected, "%s exited %d, expected %d", what,
                 WEXITSTATUS (status), expected);
}

//  ---------------------------------------------------------------------
//  1. Round trips

static void
test_roundtrip (h_test_t *t)
{
    s_router_and_jm (t, "jm", 2);

    h_cli_t r;
    h_cli (t, &r, 20000, "submit", "--wait", "exec", "--", "/bin/echo", "hello", NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli exit %d, stderr: %s", r.status, r.err);
    REQUIRE_STREQ (r.out, "hello\n");
    h_cli_free (&r);

    h_cli (t, &r, 20000, "submit", "--wait", "run", H_PLUGIN, "upper", "\"abc\"", NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli exit %d, stderr: %s", r.status, r.err);
    REQUIRE_STREQ (h_chomp (r.out), "\"ABC\"");
    h_cli_free (&r);

    //  libemq directly
    emq_client_t *client = s_client (t);
    char msgid[37];
    h_submit_run (client, NULL, "upper", "\"abc\"", 0, msgid);
    REQUIRE_INT (strlen (msgid), >, 0);
    emq_event_t event;
    int rc = s_wait_result (t, client, msgid, 20000, &event);
    REQUIRE_INT (rc, ==, 0);
    REQUIRE_INT (event.status, ==, EMQ_JOB_OK);
    char *text = h_result_text (&event);
    REQUIRE_STREQ (text, "\"ABC\"");
    free (text);
    REQUIRE_CONTAINS (event.usage, "wall_us=");

    //  add and echo
    s_run_ok (t, client, NULL, "add", "[2, 3]", "5");
    s_run_ok (t, client, NULL, "echo", "{\"a\": [1, \"two\", null]}",
              "{\"a\":[1,\"two\",null]}");
    s_run_ok (t, client, NULL, "noop", NULL, NULL);

    //  The job sees its own context.
    h_submit_run (client, "default", "context", NULL, 0, msgid);
    text = s_expect_ok (t, client, msgid, 20000);
    json_t *context = json_loads (text, 0, NULL);
    REQUIRE_MSG (json_is_object (context), "context returned %s", text);
    REQUIRE_STREQ (json_string_value (json_object_get (context, "msgid")), msgid);
    REQUIRE_STREQ (json_string_value (json_object_get (context, "queue")), "default");
    REQUIRE_INT (h_jint (context, -1, "attempt", NULL), ==, 1);
    json_decref (context);
    free (text);

    //  exec through libemq: stdout is the value (bin).
    void *payload;
    size_t size;
    const char *argv[] = { "/bin/echo", "hi", "there", NULL };
    h_payload_exec (argv, &payload, &size);
    emq_submit_opts_t opts = { .reply = true };
    rc = emq_submit (client, &opts, payload, size, msgid, h_ms (5000));
    free (payload);
    REQUIRE_MSG (rc == 0, "emq_submit: %d %s", rc, emq_client_last_error (client));
    text = s_expect_ok (t, client, msgid, 20000);
    REQUIRE_STREQ (text, "\"hi there\\n\"");
    free (text);

    emq_client_destroy (&client);
    REQUIRE (client == NULL);
}

//  ---------------------------------------------------------------------
//  2. Many jobs, each result exactly once

#define MANY_JOBS 500

static void
test_many (h_test_t *t)
{
    s_router_and_jm (t, "jm", 4);
    emq_client_t *client = s_client (t);

    static char msgids[MANY_JOBS][37];
    static char expected[MANY_JOBS][64];
    static int acks[MANY_JOBS], results[MANY_JOBS];
    zhashx_t *index = zhashx_new ();  // msgid -> index + 1

    int64_t start = clock_mono_ms ();
    for (int i = 0; i < MANY_JOBS; i++) {
        void *payload;
        size_t size;
        char arg[64];
        if (i % 3 == 0) {
            h_payload_run ("noop", NULL, &payload, &size);
            snprintf (expected[i], sizeof expected[i], "*");
        }
        else if (i % 3 == 1) {
            snprintf (arg, sizeof arg, "\"job-%d\"", i);
            h_payload_run ("upper", arg, &payload, &size);
            snprintf (expected[i], sizeof expected[i], "\"JOB-%d\"", i);
        }
        else {
            snprintf (arg, sizeof arg, "n%d", i);
            const char *argv[] = { "/bin/echo", arg, NULL };
            h_payload_exec (argv, &payload, &size);
            snprintf (expected[i], sizeof expected[i], "\"n%d\\n\"", i);
        }
        emq_submit_opts_t opts = { .reply = true };
        int rc = emq_submit_async (client, &opts, payload, size, msgids[i]);
        free (payload);
        REQUIRE_MSG (rc == 0, "emq_submit_async #%d: %d %s", i, rc,
                     emq_client_last_error (client));
        REQUIRE_MSG (zhashx_lookup (index, msgids[i]) == NULL, "msgid %s given twice",
                     msgids[i]);
        zhashx_insert (index, msgids[i], (void *) (intptr_t) (i + 1));
    }
    h_log (t, "%d jobs submitted in %lld ms", MANY_JOBS,
           (long long) (clock_mono_ms () - start));

    int done = 0;
    int64_t deadline = clock_mono_ms () + h_ms (45000);
    while (done < MANY_JOBS) {
        REQUIRE_MSG (clock_mono_ms () < deadline, "only %d of %d results after %d ms",
                     done, MANY_JOBS, h_ms (45000));
        emq_event_t event;
        int rc = emq_poll (client, 500, &event);
        if (rc == EMQ_ERR_TIMEOUT)
            continue;
        REQUIRE_MSG (rc == 0, "emq_poll: %d %s", rc, emq_client_last_error (client));
        intptr_t slot = (intptr_t) zhashx_lookup (index, event.msgid);
        REQUIRE_MSG (slot > 0, "event %d for unknown msgid '%s'", (int) event.type,
                     event.msgid);
        int i = (int) slot - 1;
        if (event.type == EMQ_EVENT_ACK) {
            acks[i]++;
            REQUIRE_MSG (acks[i] == 1, "job %d (%s) acknowledged %d times", i, msgids[i],
                         acks[i]);
            continue;
        }
        REQUIRE_MSG (event.type == EMQ_EVENT_RESULT,
                     "job %d: event type %d (code %s: %.*s)", i, (int) event.type,
                     event.code, (int) event.size, (const char *) event.data);
        results[i]++;
        REQUIRE_MSG (results[i] == 1, "job %d (%s) got %d results", i, msgids[i],
                     results[i]);
        char *text = h_result_text (&event);
        REQUIRE_MSG (event.status == EMQ_JOB_OK, "job %d status %d: %s", i,
                     (int) event.status, text);
        if (strcmp (expected[i], "*") != 0)
            REQUIRE_STREQ (text, expected[i]);
        free (text);
        done++;
    }
    h_log (t, "%d results in %lld ms", MANY_JOBS, (long long) (clock_mono_ms () - start));
    for (int i = 0; i < MANY_JOBS; i++) {
        //  An ACK may arrive after its RESULT; give stragglers a moment.
        if (acks[i] == 0) {
            emq_event_t event;
            while (acks[i] == 0 && emq_poll (client, h_ms (2000), &event) == 0) {
                intptr_t slot = (intptr_t) zhashx_lookup (index, event.msgid);
                REQUIRE_MSG (slot > 0 && event.type == EMQ_EVENT_ACK,
                             "unexpected late event %d for '%s'", (int) event.type,
                             event.msgid);
                acks[slot - 1]++;
            }
        }
        REQUIRE_MSG (acks[i] == 1, "job %d (%s): %d ACKs", i, msgids[i], acks[i]);
    }
    REQUIRE_WAIT (s_status_int (t, "processed_messages_by_queue", "default", NULL)
                      == MANY_JOBS,
                  5000);
    REQUIRE_WAIT (s_status_int (t, "queues", "default", "inflight") == 0, 5000);
    REQUIRE_INT (s_status_int (t, "queues", "default", "waiting"), ==, 0);
    zhashx_destroy (&index);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  3. Failures

static void
test_failures (h_test_t *t)
{
    s_router_and_jm (t, "jm", 2);
    h_cli_t r;

    //  A function that fails: exit 1, its message on stderr.
    h_cli (t, &r, 20000, "submit", "--wait", "run", H_PLUGIN, "fail",
           "\"boom-from-test\"", NULL);
    REQUIRE_MSG (r.status == 1, "fail: emq-cli exit %d (stderr: %s)", r.status, r.err);
    REQUIRE_CONTAINS (r.err, "boom-from-test");
    REQUIRE_STREQ (r.out, "");
    h_cli_free (&r);

    //  A command that exits non-zero.
    h_cli (t, &r, 20000, "submit", "--wait", "exec", "--", "/bin/false", NULL);
    REQUIRE_MSG (r.status == 1, "/bin/false: emq-cli exit %d (stderr: %s)", r.status,
                 r.err);
    REQUIRE_MSG (strlen (r.err) > 0, "/bin/false: nothing on stderr");
    h_cli_free (&r);

    //  A command outside the allow-list: failed (1) or rejected (4).
    h_cli (t, &r, 20000, "submit", "--wait", "exec", "--", "/usr/bin/env", NULL);
    REQUIRE_MSG (r.status == 1 || r.status == 4,
                 "/usr/bin/env: emq-cli exit %d (stderr: %s)", r.status, r.err);
    REQUIRE_MSG (strstr (r.err, "/usr/bin/env") || strcasestr (r.err, "allow"),
                 "no clear error for a command outside the allow-list: '%s'", r.err);
    REQUIRE_STREQ (r.out, "");
    h_cli_free (&r);

    //  A worker that segfaults: crashed (7).
    h_cli (t, &r, 20000, "submit", "--wait", "run", H_PLUGIN, "crash", NULL);
    REQUIRE_MSG (r.status == 7, "crash: emq-cli exit %d (stderr: %s)", r.status, r.err);
    h_cli_free (&r);

    //  The same through libemq, with the statuses.
    emq_client_t *client = s_client (t);
    char msgid[37];
    emq_event_t event;

    h_submit_run (client, NULL, "fail", "\"lib-boom\"", 0, msgid);
    int rc = s_wait_result (t, client, msgid, 20000, &event);
    REQUIRE_INT (rc, ==, EMQ_ERR_JOB_FAILED);
    REQUIRE_INT (event.status, ==, EMQ_JOB_FAILED);
    char *text = h_result_text (&event);
    REQUIRE_CONTAINS (text, "lib-boom");
    free (text);

    void *payload;
    size_t size;
    const char *false_argv[] = { "/bin/false", NULL };
    h_payload_exec (false_argv, &payload, &size);
    emq_submit_opts_t opts = { .reply = true };
    rc = emq_submit (client, &opts, payload, size, msgid, h_ms (5000));
    free (payload);
    REQUIRE_INT (rc, ==, 0);
    rc = s_wait_result (t, client, msgid, 20000, &event);
    REQUIRE_INT (event.status, ==, EMQ_JOB_FAILED);
    REQUIRE_INT (rc, ==, EMQ_ERR_JOB_FAILED);

    const char *env_argv[] = { "/usr/bin/env", NULL };
    h_payload_exec (env_argv, &payload, &size);
    rc = emq_submit (client, &opts, payload, size, msgid, h_ms (5000));
    free (payload);
    REQUIRE_INT (rc, ==, 0);
    s_wait_result (t, client, msgid, 20000, &event);
    REQUIRE_MSG (event.status == EMQ_JOB_REJECTED || event.status == EMQ_JOB_FAILED,
                 "exec outside the allow-list: status %d", (int) event.status);

    h_submit_run (client, NULL, "crash", NULL, 0, msgid);
    s_wait_result (t, client, msgid, 20000, &event);
    REQUIRE_INT (event.status, ==, EMQ_JOB_CRASHED);

    //  A function the plugin does not have; a library outside the plugin
    //  directory (never loaded, let alone run).
    h_submit_run (client, NULL, "no_such_function", NULL, 0, msgid);
    s_wait_result (t, client, msgid, 20000, &event);
    REQUIRE_MSG (event.status == EMQ_JOB_REJECTED || event.status == EMQ_JOB_FAILED,
                 "missing function: status %d", (int) event.status);

    //  libemq refuses to encode such names, so the payloads are packed here:
    //  the job manager must refuse them too, as they come from the network.
    const char *libraries[] = { "../../../../lib/x86_64-linux-gnu/libc.so.6",
                                "/lib/x86_64-linux-gnu/libc.so.6", "libc.so.6" };
    for (size_t i = 0; i < sizeof libraries / sizeof libraries[0]; i++) {
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        const char *fields[] = { "kind",       "run",      "library",
                                 libraries[i], "function", "abort" };
        msgpack_pack_map (&pk, 4);
        for (size_t j = 0; j < 6; j++) {
            msgpack_pack_str (&pk, strlen (fields[j]));
            msgpack_pack_str_body (&pk, fields[j], strlen (fields[j]));
        }
        msgpack_pack_str (&pk, 4);
        msgpack_pack_str_body (&pk, "args", 4);
        msgpack_pack_nil (&pk);
        rc = emq_submit (client, &opts, sbuf.data, sbuf.size, msgid, h_ms (5000));
        msgpack_sbuffer_destroy (&sbuf);
        REQUIRE_INT (rc, ==, 0);
        s_wait_result (t, client, msgid, 20000, &event);
        REQUIRE_MSG (event.status == EMQ_JOB_REJECTED || event.status == EMQ_JOB_FAILED,
                     "library '%s' outside the plugin dir: status %d", libraries[i],
                     (int) event.status);
    }

    //  A payload that is not msgpack at all.
    rc = emq_submit (client, &opts, "\xc1garbage", 8, msgid, h_ms (5000));
    REQUIRE_INT (rc, ==, 0);
    s_wait_result (t, client, msgid, 20000, &event);
    REQUIRE_MSG (event.status == EMQ_JOB_REJECTED || event.status == EMQ_JOB_FAILED,
                 "garbage payload: status %d", (int) event.status);

    //  And the job manager still works.
    s_run_ok (t, client, NULL, "upper", "\"still\"", "\"STILL\"");
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  4. Timeout

static void
test_timeout (h_test_t *t)
{
    s_router_and_jm (t, "jm", 1);

    h_cli_t r;
    h_cli (t, &r, 20000, "submit", "--wait", "--timeout", "1", "run", H_PLUGIN, "sleep",
           "5", NULL);
    REQUIRE_MSG (r.status == 5, "emq-cli exit %d, expected 5 (stderr: %s)", r.status,
                 r.err);
    REQUIRE_INT (r.elapsed_ms, <, h_ms (4000));
    h_cli_free (&r);

    emq_client_t *client = s_client (t);
    char msgid[37];
    int64_t start = clock_mono_ms ();
    h_submit_run (client, NULL, "sleep", "5", 1, msgid);
    pid_t worker = 0;
    REQUIRE_WAIT ((worker = h_jm_job_pid (t, "jm", msgid)) > 0, 3000);
    h_log (t, "job %s runs in worker %d", msgid, (int) worker);
    emq_event_t event;
    int rc = s_wait_result (t, client, msgid, 10000, &event);
    REQUIRE_INT (event.status, ==, EMQ_JOB_TIMEOUT);
    REQUIRE_INT (rc, ==, EMQ_ERR_JOB_TIMEOUT);
    REQUIRE_INT (clock_mono_ms () - start, <, h_ms (4000));
    //  The worker (and the process group it ran) is gone...
    REQUIRE_WAIT (!h_pid_alive (worker), 3000);
    //  ...and replaced: a fresh pid runs the next job.
    s_run_ok (t, client, NULL, "upper", "\"after\"", "\"AFTER\"");
    REQUIRE_WAIT (s_has_new_pid (t, "jm", &worker, 1), 3000);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  5. A worker killed under its job

static void
test_killed_worker (h_test_t *t)
{
    s_router_and_jm (t, "jm", 1);
    emq_client_t *client = s_client (t);
    char msgid[37];
    h_submit_run (client, NULL, "sleep", "3", 0, msgid);
    pid_t worker = 0;
    REQUIRE_WAIT ((worker = h_jm_job_pid (t, "jm", msgid)) > 0, 3000);
    int64_t start = clock_mono_ms ();
    REQUIRE_INT (kill (worker, SIGKILL), ==, 0);
    emq_event_t event;
    s_wait_result (t, client, msgid, 10000, &event);
    REQUIRE_INT (event.status, ==, EMQ_JOB_CRASHED);
    REQUIRE_INT (clock_mono_ms () - start, <, h_ms (2500));  // did not wait for the sleep
    s_run_ok (t, client, NULL, "noop", NULL, NULL);
    REQUIRE_WAIT (s_has_new_pid (t, "jm", &worker, 1), 3000);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  6. Slots

static void
test_slots (h_test_t *t)
{
    s_router_and_jm (t, "jm", 4);
    REQUIRE_WAIT (h_jm_has_slots (t, "jm", 4), 5000);
    emq_client_t *client = s_client (t);
    enum { JOBS = 20 };
    char msgids[JOBS][37];
    int64_t start = clock_mono_ms ();
    for (int i = 0; i < JOBS; i++)
        h_submit_run (client, NULL, "sleep", "0.3", 0, msgids[i]);

    int results = 0;
    long long max_router = 0, max_jm = 0;
    int64_t deadline = clock_mono_ms () + h_ms (30000);
    while (results < JOBS) {
        REQUIRE_MSG (clock_mono_ms () < deadline, "%d of %d results", results, JOBS);
        json_t *info = h_jm_info (t, "jm", NULL);
        long long inflight = h_jint (info, 0, "inflight", NULL);
        json_t *jobs = h_jget (info, "stats", "jobs_in_flight", NULL);
        long long running =
            json_is_object (jobs) ? (long long) json_object_size (jobs) : 0;
        json_decref (info);
        long long queued = s_status_int (t, "queues", "default", "inflight");
        //  The router may send prefetch (default 2) jobs beyond the slots;
        //  the job manager holds those: it never runs more than its 4.
        REQUIRE_MSG (inflight <= 4 + 2,
                     "router has %lld jobs in flight on a 4-slot jm with "
                     "prefetch 2",
                     inflight);
        REQUIRE_MSG (queued <= 4 + 2, "STATUS queues.default.inflight = %lld > 6",
                     queued);
        REQUIRE_MSG (running <= 4, "jm reports %lld jobs_in_flight > 4", running);
        max_router = inflight > max_router ? inflight : max_router;
        max_jm = running > max_jm ? running : max_jm;

        emq_event_t event;
        while (emq_poll (client, 0, &event) == 0) {
            if (event.type != EMQ_EVENT_RESULT)
                continue;
            REQUIRE_MSG (event.status == EMQ_JOB_OK, "job %s status %d", event.msgid,
                         (int) event.status);
            results++;
        }
        h_nap ();
    }
    int64_t elapsed = clock_mono_ms () - start;
    h_log (t, "max in flight: router %lld, jm %lld; %d jobs in %lld ms", max_router,
           max_jm, JOBS, (long long) elapsed);
    //  20 jobs of 0.3 s on 4 slots cannot take less than 5 rounds.
    REQUIRE_INT (elapsed, >=, 1450);
    REQUIRE_INT (max_router, >=, 2);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  7. Weights and least-recently-used

static void
test_weights (h_test_t *t)
{
    h_router (t, "router", NULL);
    h_jm (t, "jmA", DEFAULT_Q, 2, NULL);
    h_jm (t, "jmB", DEFAULT_Q, 2, NULL);
    h_jm (t, "heavy", "[[20,\"X\"]]", 1, NULL);
    h_jm (t, "light", "[[10,\"X\"]]", 1, NULL);
    h_jm (t, "lruC", "[[10,\"lru\"]]", 1, NULL);
    h_jm (t, "lruD", "[[10,\"lru\"]]", 1, NULL);
    const char *names[] = { "jmA", "jmB", "heavy", "light", "lruC", "lruD" };
    for (size_t i = 0; i < 6; i++) {
        h_wait_jm (t, names[i], 10000, NULL);
        REQUIRE_WAIT (h_jm_has_slots (t, names[i], 1), 5000);
    }
    emq_client_t *client = s_client (t);

    //  Equal weights: a fair share each.
    enum { FAIR = 200 };
    char msgid[37];
    for (int i = 0; i < FAIR; i++) {
        void *payload;
        size_t size;
        h_payload_run ("sleep", "0.005", &payload, &size);
        emq_submit_opts_t opts = { .reply = true };
        REQUIRE_INT (emq_submit_async (client, &opts, payload, size, msgid), ==, 0);
        free (payload);
    }
    int results = 0;
    int64_t deadline = clock_mono_ms () + h_ms (30000);
    while (results < FAIR) {
        REQUIRE_MSG (clock_mono_ms () < deadline, "%d of %d results", results, FAIR);
        emq_event_t event;
        if (emq_poll (client, 500, &event) == 0 && event.type == EMQ_EVENT_RESULT) {
            REQUIRE_INT (event.status, ==, EMQ_JOB_OK);
            results++;
        }
    }
    long long a = 0, b = 0;
    REQUIRE_WAIT (
        (a = s_jm_processed (t, "jmA")) + (b = s_jm_processed (t, "jmB")) == FAIR, 5000);
    h_log (t, "fair share: jmA %lld, jmB %lld", a, b);
    REQUIRE_MSG (a >= FAIR / 4 && b >= FAIR / 4, "unfair: jmA %lld, jmB %lld of %d", a, b,
                 FAIR);
    json_t *status = h_admin (t, "STATUS");
    char id_a[256], id_b[256];
    json_decref (h_jm_info (t, "jmA", id_a));
    json_decref (h_jm_info (t, "jmB", id_b));
    REQUIRE_INT (h_jint (status, -1, "processed_messages_by_worker", id_a, NULL), ==, a);
    REQUIRE_INT (h_jint (status, -1, "processed_messages_by_worker", id_b, NULL), ==, b);
    json_decref (status);

    //  Weight 20 beats weight 10 whenever it is free.
    for (int i = 0; i < 6; i++) {
        REQUIRE_WAIT (h_jm_has_slots (t, "heavy", 1) && h_jm_has_slots (t, "light", 1),
                      5000);
        s_run_ok (t, client, "X", "noop", NULL, NULL);
    }
    REQUIRE_WAIT (s_jm_processed (t, "heavy") == 6, 3000);
    REQUIRE_INT (s_jm_processed (t, "light"), ==, 0);
    //  Two at once: the light one takes the second.
    REQUIRE_WAIT (h_jm_has_slots (t, "heavy", 1) && h_jm_has_slots (t, "light", 1), 5000);
    char m1[37], m2[37];
    h_submit_run (client, "X", "sleep", "0.5", 0, m1);
    h_submit_run (client, "X", "sleep", "0.5", 0, m2);
    free (s_expect_ok (t, client, m1, 10000));
    free (s_expect_ok (t, client, m2, 10000));
    REQUIRE_WAIT (s_jm_processed (t, "heavy") == 7, 3000);
    REQUIRE_INT (s_jm_processed (t, "light"), ==, 1);

    //  Equal weights, one slot each, one job at a time: strict alternation.
    for (int i = 0; i < 6; i++) {
        REQUIRE_WAIT (h_jm_has_slots (t, "lruC", 1) && h_jm_has_slots (t, "lruD", 1),
                      5000);
        s_run_ok (t, client, "lru", "noop", NULL, NULL);
        long long c = 0, d = 0;
        REQUIRE_WAIT ((c = s_jm_processed (t, "lruC")) + (d = s_jm_processed (t, "lruD"))
                          == i + 1,
                      3000);
        REQUIRE_MSG (llabs (c - d) <= 1,
                     "not least-recently-used: after %d jobs lruC %lld, "
                     "lruD %lld",
                     i + 1, c, d);
    }
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  8. A job manager dies with jobs running

static void
test_jm_dies (h_test_t *t)
{
    pid_t doomed = s_router_and_jm (t, "doomed", 2);
    REQUIRE_WAIT (h_jm_has_slots (t, "doomed", 2), 5000);
    emq_client_t *client = s_client (t);
    char m1[37], m2[37];
    h_submit_run (client, NULL, "upper", "\"warm\"", 0, m1);  // workers are up
    free (s_expect_ok (t, client, m1, 10000));
    h_submit_run (client, NULL, "sleep", "1", 0, m1);
    h_submit_run (client, NULL, "sleep", "1", 0, m2);
    REQUIRE_WAIT (
        h_jm_job_pid (t, "doomed", m1) > 0 && h_jm_job_pid (t, "doomed", m2) > 0, 3000);

    h_jm (t, "rescue", DEFAULT_Q, 2, NULL);
    h_wait_jm (t, "rescue", 10000, NULL);
    int64_t start = clock_mono_ms ();
    h_kill (t, doomed, SIGKILL, true);
    REQUIRE (h_proc_wait (t, doomed, 5000, NULL));

    free (s_expect_ok (t, client, m1, 15000));
    free (s_expect_ok (t, client, m2, 15000));
    h_log (t, "both jobs done %lld ms after the kill",
           (long long) (clock_mono_ms () - start));
    REQUIRE_WAIT (!h_jm_registered (t, "doomed"), 5000);
    REQUIRE_WAIT (s_jm_processed (t, "rescue") == 2, 3000);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  9. Queue high-water mark

static void
test_hwm (h_test_t *t)
{
    h_router (t, "router", "--queue-hwm", "5", NULL);
    emq_client_t *client = s_client (t);
    char msgids[5][37];
    for (int i = 0; i < 5; i++)
        h_submit_run (client, NULL, "upper", "\"queued\"", 0, msgids[i]);
    REQUIRE_WAIT (s_status_int (t, "queues", "default", "waiting") == 5, 3000);
    REQUIRE_INT (s_status_int (t, "waiting_messages_by_queue", "default", NULL), ==, 5);
    REQUIRE_INT (s_status_int (t, "queues", "default", "hwm"), ==, 5);

    h_cli_t r;
    h_cli (t, &r, 20000, "submit", "run", H_PLUGIN, "noop", NULL);
    REQUIRE_MSG (r.status == 4, "6th submit: emq-cli exit %d, expected 4 (stderr: %s)",
                 r.status, r.err);
    REQUIRE_CONTAINS (r.err, "QUEUE_FULL");
    h_cli_free (&r);

    void *payload;
    size_t size;
    h_payload_run ("noop", NULL, &payload, &size);
    emq_submit_opts_t opts = { .reply = true };
    char msgid[37];
    int rc = emq_submit (client, &opts, payload, size, msgid, h_ms (5000));
    free (payload);
    REQUIRE_INT (rc, ==, EMQ_ERR_REJECTED);
    REQUIRE_CONTAINS (emq_client_last_error (client), "QUEUE_FULL");
    REQUIRE_INT (s_status_int (t, "queues", "default", "waiting"), ==, 5);

    h_jm (t, "jm", DEFAULT_Q, 2, NULL);
    for (int i = 0; i < 5; i++) {
        char *text = s_expect_ok (t, client, msgids[i], 15000);
        REQUIRE_STREQ (text, "\"QUEUED\"");
        free (text);
    }
    REQUIRE_WAIT (s_status_int (t, "queues", "default", "waiting") == 0, 3000);
    REQUIRE_WAIT (s_status_int (t, "processed_messages_by_queue", "default", NULL) == 5,
                  3000);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  10. Garbage on every socket

//  Sends a message of raw frames.
static void
s_send_frames (zsock_t *sock, const void *const *data, const size_t *sizes, size_t count)
{
    zmsg_t *msg = zmsg_new ();
    for (size_t i = 0; i < count; i++)
        zmsg_addmem (msg, data[i], sizes[i]);
    REQUIRE_INT (zmsg_send (&msg, sock), ==, 0);
}

//  After one piece of garbage, a valid REQUEST whose ACK marks the end of
//  the router's answer to it. Returns the number of ERRORs that came before
//  the ACK, and the first one's code in code (64 bytes).
static int
s_front_probe (h_test_t *t, zsock_t *sock, char *code)
{
    char probe_id[37];
    emqp_msgid_new (probe_id);
    REQUIRE_INT (h_send_strs (sock, "", EMQP_PROTOCOL, "REQUEST", probe_id,
                              "garbage-probe", "", "probe", NULL),
                 ==, 0);
    int errors = 0;
    code[0] = 0;
    while (true) {
        emqp_msg_t *msg = h_recv_msg (t, sock, 5000);
        REQUIRE_MSG (msg != NULL, "no ACK for the probe REQUEST %s", probe_id);
        if (msg->command == EMQP_ACK && msg->ref && strcmp (msg->ref, probe_id) == 0) {
            emqp_msg_destroy (&msg);
            return errors;
        }
        if (msg->command == EMQP_ERROR) {
            h_log (t, "ERROR ref=%s code=%s text=%s", msg->ref, msg->error_code,
                   msg->error_text);
            if (errors++ == 0)
                snprintf (code, 64, "%s", msg->error_code);
        }
        else
            h_log (t, "unexpected %s on the frontend", emqp_command_name (msg->command));
        emqp_msg_destroy (&msg);
    }
}

static void
test_garbage (h_test_t *t)
{
    pid_t router = s_router_and_jm (t, "jm", 4);
    (void) router;
    REQUIRE_WAIT (h_jm_has_slots (t, "jm", 4), 5000);
    emq_client_t *client = s_client (t);
    char msgids[4][37];
    for (int i = 0; i < 4; i++)
        h_submit_run (client, NULL, "sleep", "1.5", 0, msgids[i]);
    REQUIRE_WAIT (h_jm_job_pid (t, "jm", msgids[3]) > 0, 3000);

    //  Frontend.
    zsock_t *front = h_dealer (t->frontend, "garbage-front");
    REQUIRE (front);
    char code[64], id[37];
    unsigned char random[256];
    for (size_t i = 0; i < sizeof random; i++)
        random[i] = (unsigned char) (rand () & 0xff);
    const void *data[8];
    size_t sizes[8];

    data[0] = random;
    sizes[0] = sizeof random;
    s_send_frames (front, data, sizes, 1);
    s_front_probe (t, front, code);

    data[0] = "";
    sizes[0] = 0;
    data[1] = random;
    sizes[1] = 17;
    data[2] = random + 20;
    sizes[2] = 40;
    s_send_frames (front, data, sizes, 3);
    s_front_probe (t, front, code);

    data[0] = "";
    sizes[0] = 0;
    s_send_frames (front, data, sizes, 1);
    s_front_probe (t, front, code);

    emqp_msgid_new (id);
    h_send_strs (front, "", "eMQP/9.9", "REQUEST", id, "default", "", "x", NULL);
    int errors = s_front_probe (t, front, code);
    REQUIRE_MSG (errors == 1, "wrong protocol: %d ERRORs", errors);

    emqp_msgid_new (id);
    h_send_strs (front, "", EMQP_PROTOCOL, "BOGUS", id, "x", NULL);
    errors = s_front_probe (t, front, code);
    REQUIRE_MSG (errors == 1, "unknown command: %d ERRORs", errors);

    h_send_strs (front, "", EMQP_PROTOCOL, "REQUEST", NULL);
    errors = s_front_probe (t, front, code);
    REQUIRE_MSG (errors == 1, "short REQUEST: %d ERRORs", errors);

    h_send_strs (front, "", EMQP_PROTOCOL, NULL);
    s_front_probe (t, front, code);

    emqp_msgid_new (id);
    h_send_strs (front, "", EMQP_PROTOCOL, "REQUEST", id, "bad\xff\xfequeue", "", "x",
                 NULL);
    errors = s_front_probe (t, front, code);
    REQUIRE_MSG (errors == 1, "non-UTF-8 queue: %d ERRORs", errors);

    emqp_msgid_new (id);
    h_send_strs (front, "", EMQP_PROTOCOL, "REQUEST", id, "default", "timeout:soon", "x",
                 NULL);
    errors = s_front_probe (t, front, code);
    REQUIRE_MSG (errors == 1, "bad headers: %d ERRORs", errors);

    //  A payload one byte over the router's default max_message_size (16
    //  MiB) gets TOO_LARGE; one far over ZMQ_MAXMSGSIZE only costs the sender
    //  its connection (libzmq drops it), so it goes on a socket of its own.
    size_t big_size = 16 * 1024 * 1024 + 1;
    char *big = calloc (1, 2 * big_size);
    REQUIRE (big);
    emqp_msgid_new (id);
    data[0] = "";
    sizes[0] = 0;
    data[1] = EMQP_PROTOCOL;
    sizes[1] = strlen (EMQP_PROTOCOL);
    data[2] = "REQUEST";
    sizes[2] = 7;
    data[3] = id;
    sizes[3] = strlen (id);
    data[4] = "default";
    sizes[4] = 7;
    data[5] = "";
    sizes[5] = 0;
    data[6] = big;
    sizes[6] = big_size;
    s_send_frames (front, data, sizes, 7);
    errors = s_front_probe (t, front, code);
    REQUIRE_MSG (errors == 1, "oversized payload: %d ERRORs", errors);
    REQUIRE_STREQ (code, "TOO_LARGE");
    zsock_t *huge = h_dealer (t->frontend, NULL);
    REQUIRE (huge);
    sizes[6] = 2 * big_size;
    s_send_frames (huge, data, sizes, 7);
    free (big);
    errors = s_front_probe (t, front, code);  // the router is still there
    REQUIRE_INT (errors, ==, 0);
    zsock_destroy (&huge);

    //  A client whose identity is not UTF-8 is still served.
    zsock_t *odd = h_dealer (t->frontend, "\xff\xfe\xfd-odd");
    REQUIRE (odd);
    errors = s_front_probe (t, odd, code);
    REQUIRE_INT (errors, ==, 0);
    zsock_destroy (&odd);
    zsock_destroy (&front);

    //  Backend.
    zsock_t *back = h_dealer (t->backend, "garbage-back");
    REQUIRE (back);
    data[0] = random;
    sizes[0] = 100;
    s_send_frames (back, data, sizes, 1);
    emqp_msgid_new (id);
    h_send_strs (back, "", EMQP_PROTOCOL, "READY", id, NULL);
    h_send_strs (back, "", EMQP_PROTOCOL, "HEARTBEAT", NULL);
    h_send_strs (back, "", EMQP_PROTOCOL, "HEARTBEAT", id, "yesterday", NULL);
    //  A forged outcome for a job in flight elsewhere must be ignored.
    emqp_msgid_new (id);
    h_send_strs (back, "", EMQP_PROTOCOL, "DONE", id, msgids[0], "0", "failed", "forged",
                 "", NULL);
    emqp_msgid_new (id);
    h_send_strs (back, "", EMQP_PROTOCOL, "REPLY", id, "{\"value\": \"forged\"}",
                 msgids[1], NULL);
    char bad_inform[37], odd_inform[37];
    emqp_msgid_new (bad_inform);
    h_send_strs (back, "", EMQP_PROTOCOL, "INFORM", bad_inform, "[[10, default]]",
                 "worker", NULL);
    emqp_msgid_new (odd_inform);
    h_send_strs (back, "", EMQP_PROTOCOL, "INFORM", odd_inform, "", "frobnicator", NULL);
    char good_inform[37];
    emqp_msgid_new (good_inform);
    h_send_strs (back, "", EMQP_PROTOCOL, "INFORM", good_inform,
                 "[[10,\"garbage-only\"]]", "worker", NULL);
    bool bad_error = false, odd_error = false;
    while (true) {
        emqp_msg_t *msg = h_recv_msg (t, back, 5000);
        REQUIRE_MSG (msg != NULL, "no ACK for the valid INFORM after the garbage");
        if (msg->command == EMQP_ACK) {
            REQUIRE_MSG (strcmp (msg->ref, bad_inform) != 0,
                         "INFORM with bad JSON was ACKed");
            REQUIRE_MSG (strcmp (msg->ref, odd_inform) != 0,
                         "INFORM with an unknown peer type was ACKed");
            if (strcmp (msg->ref, good_inform) == 0) {
                emqp_msg_destroy (&msg);
                break;
            }
        }
        if (msg->command == EMQP_ERROR) {
            h_log (t, "backend ERROR ref=%s code=%s text=%s", msg->ref, msg->error_code,
                   msg->error_text);
            bad_error = bad_error || (msg->ref && strcmp (msg->ref, bad_inform) == 0);
            odd_error = odd_error || (msg->ref && strcmp (msg->ref, odd_inform) == 0);
        }
        emqp_msg_destroy (&msg);
    }
    REQUIRE_MSG (bad_error, "no ERROR for an INFORM with bad JSON");
    REQUIRE_MSG (odd_error, "no ERROR for an INFORM with an unknown peer type");
    emqp_msgid_new (id);
    h_send_strs (back, "", EMQP_PROTOCOL, "KBYE", id, NULL);
    REQUIRE_WAIT (!h_jm_registered (t, "garbage-back"), 3000);
    zsock_destroy (&back);

    //  Admin.
    zsock_t *admin = h_dealer (t->admin, NULL);
    REQUIRE (admin);
    data[0] = random;
    sizes[0] = 50;
    s_send_frames (admin, data, sizes, 1);
    emqp_msgid_new (id);
    h_send_strs (admin, "", EMQP_PROTOCOL, "BOGUS", id, NULL);
    h_send_strs (admin, "", EMQP_PROTOCOL, "STATUS", NULL);
    emqp_msgid_new (id);
    h_send_strs (admin, "", EMQP_PROTOCOL, "REQUEST", id, "default", "", "x", NULL);
    emqp_msgid_new (id);
    h_send_strs (admin, "", EMQP_PROTOCOL, "STATUS", id, NULL);
    while (true) {
        emqp_msg_t *msg = h_recv_msg (t, admin, 5000);
        REQUIRE_MSG (msg != NULL,
                     "no REPLY to STATUS on the admin socket after the garbage");
        emqp_command_t command = msg->command;
        if (command == EMQP_ERROR)
            h_log (t, "admin ERROR ref=%s code=%s text=%s", msg->ref, msg->error_code,
                   msg->error_text);
        emqp_msg_destroy (&msg);
        if (command == EMQP_REPLY)
            break;
    }
    zsock_destroy (&admin);

    //  Everything still works, and the jobs end as they really did.
    REQUIRE (h_pid_alive (router));
    json_t *status = h_admin (t, "STATUS");
    REQUIRE (status);
    json_decref (status);
    for (int i = 0; i < 4; i++)
        free (s_expect_ok (t, client, msgids[i], 10000));
    s_run_ok (t, client, NULL, "upper", "\"ok\"", "\"OK\"");
    REQUIRE (h_jm_registered (t, "jm"));
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  11. DISCONNECT

static void
test_disconnect (h_test_t *t)
{
    pid_t router = h_router (t, "router", NULL);
    pid_t jm = h_jm (t, "jm", DEFAULT_Q, 1, NULL);
    h_wait_jm (t, "jm", 10000, NULL);

    //  A fake job manager to see the router's KBYE.
    zsock_t *fake = h_dealer (t->backend, "fake-jm");
    char id[37], inform_id[37];
    emqp_msgid_new (inform_id);
    h_send_strs (fake, "", EMQP_PROTOCOL, "INFORM", inform_id, "[[10,\"other\"]]",
                 "worker", NULL);
    emqp_msg_t *msg = h_recv_cmd (t, fake, EMQP_ACK, 3000);
    REQUIRE_MSG (msg != NULL, "no ACK for the fake job manager's INFORM");
    REQUIRE_STREQ (msg->ref, inform_id);
    emqp_msg_destroy (&msg);

    //  Refused on the frontend.
    zsock_t *front = h_dealer (t->frontend, NULL);
    emqp_msgid_new (id);
    h_send_strs (front, "", EMQP_PROTOCOL, "DISCONNECT", id, NULL);
    msg = h_recv_msg (t, front, 3000);
    REQUIRE_MSG (msg != NULL, "no answer to DISCONNECT on the frontend");
    REQUIRE_MSG (msg->command == EMQP_ERROR,
                 "DISCONNECT on the frontend answered with %s",
                 emqp_command_name (msg->command));
    REQUIRE_STREQ (msg->ref, id);
    h_log (t, "frontend DISCONNECT: ERROR %s: %s", msg->error_code, msg->error_text);
    emqp_msg_destroy (&msg);
    zsock_destroy (&front);
    REQUIRE (h_pid_alive (router));
    json_t *status = h_admin (t, "STATUS");
    REQUIRE (status);
    json_decref (status);
    emq_client_t *client = s_client (t);
    s_run_ok (t, client, NULL, "noop", NULL, NULL);
    emq_client_destroy (&client);

    //  Obeyed on the admin socket: ACK, KBYE to job managers, exit 0.
    zsock_t *admin = h_dealer (t->admin, NULL);
    emqp_msgid_new (id);
    h_send_strs (admin, "", EMQP_PROTOCOL, "DISCONNECT", id, NULL);
    msg = h_recv_msg (t, admin, 3000);
    REQUIRE_MSG (msg != NULL, "no answer to DISCONNECT on the admin socket");
    REQUIRE_MSG (msg->command == EMQP_ACK, "admin DISCONNECT answered with %s",
                 emqp_command_name (msg->command));
    REQUIRE_STREQ (msg->ref, id);
    emqp_msg_destroy (&msg);
    zsock_destroy (&admin);
    msg = h_recv_cmd (t, fake, EMQP_KBYE, 3000);
    REQUIRE_MSG (msg != NULL, "the fake job manager got no KBYE");
    emqp_msg_destroy (&msg);
    zsock_destroy (&fake);
    s_exit_status_check (t, router, 5000, 0, "emq-router after DISCONNECT");
    REQUIRE (h_pid_alive (jm));  // a job manager outlives its router

    //  emq-cli disconnect does the same.
    router = h_router (t, "router2", NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    h_cli_t r;
    h_cli (t, &r, 10000, "disconnect", NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli disconnect: exit %d (stderr %s)", r.status,
                 r.err);
    h_cli_free (&r);
    s_exit_status_check (t, router, 5000, 0, "emq-router after emq-cli disconnect");
}

//  ---------------------------------------------------------------------
//  12. SIGTERM on a job manager

static void
test_jm_sigterm (h_test_t *t)
{
    pid_t jm = s_router_and_jm (t, "term", 2);
    REQUIRE_WAIT (h_jm_has_slots (t, "term", 2), 5000);
    emq_client_t *client = s_client (t);
    char m1[37], m2[37];
    h_submit_run (client, NULL, "sleep", "1", 0, m1);
    h_submit_run (client, NULL, "sleep", "1", 0, m2);
    REQUIRE_WAIT (h_jm_job_pid (t, "term", m1) > 0 && h_jm_job_pid (t, "term", m2) > 0,
                  3000);
    REQUIRE_INT (kill (jm, SIGTERM), ==, 0);
    free (s_expect_ok (t, client, m1, 10000));
    free (s_expect_ok (t, client, m2, 10000));
    s_exit_status_check (t, jm, 10000, 0, "emq-jobmanager after SIGTERM");
    REQUIRE_WAIT (!h_jm_registered (t, "term"), 3000);
    REQUIRE_INT (s_status_int (t, "job_managers", NULL, NULL), ==, 0);
    REQUIRE_INT (s_status_int (t, "processed_messages_by_queue", "default", NULL), ==, 2);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  Bounded prefetch: a job prefetched to a job manager whose only worker
//  runs a long job comes back (RETURN) after prefetch_hold_ms and runs on
//  another job manager, long before the long job ends.

//  Makes the one worker of job manager jm busy: a warm-up job (the worker
//  is up), then a sleep of `seconds` (its msgid into sleeper). Returns the
//  worker's pid once it runs the sleep.
static pid_t
s_busy_worker (h_test_t *t, emq_client_t *client, const char *jm, const char *seconds,
               char sleeper[37])
{
    char warm[37];
    h_submit_run (client, NULL, "upper", "\"warm\"", 0, warm);
    free (s_expect_ok (t, client, warm, 10000));
    h_submit_run (client, NULL, "sleep", seconds, 0, sleeper);
    pid_t worker = 0;
    REQUIRE_WAIT ((worker = h_jm_job_pid (t, jm, sleeper)) > 0, 3000);
    return worker;
}

static void
test_prefetch_return (h_test_t *t)
{
    h_router (t, "router", "--prefetch", "1", NULL);
    h_jm (t, "busy", DEFAULT_Q, 1, "--prefetch-hold-ms", "200", NULL);
    REQUIRE_WAIT (h_jm_has_slots (t, "busy", 1), 5000);
    emq_client_t *client = s_client (t);
    char sleeper[37], quick[37];
    s_busy_worker (t, client, "busy", "6", sleeper);
    //  No free slot anywhere: the quick job is prefetched to busy, where it
    //  waits; after 200 ms it comes back.
    int64_t submitted = clock_mono_ms ();
    h_submit_run (client, NULL, "upper", "\"quick\"", 0, quick);
    int64_t returned_ms = -1;
    long long max_inflight = 0;
    while (clock_mono_ms () - submitted < h_ms (3000)) {
        json_t *info = h_jm_info (t, "busy", NULL);
        long long inflight = h_jint (info, -1, "inflight", NULL);
        json_decref (info);
        max_inflight = inflight > max_inflight ? inflight : max_inflight;
        if (max_inflight == 2 && inflight == 1) {
            returned_ms = clock_mono_ms () - submitted;
            break;
        }
        h_nap ();
    }
    REQUIRE_MSG (max_inflight == 2,
                 "the quick job was never prefetched to busy (max %lld)", max_inflight);
    REQUIRE_MSG (returned_ms >= 0, "busy did not return the quick job within %d ms",
                 h_ms (3000));
    h_log (t, "quick job returned %lld ms after its submission", (long long) returned_ms);
    REQUIRE_INT (returned_ms, >=, 150);
    REQUIRE_INT (returned_ms, <, h_ms (1500));
    //  It is not prefetched again to busy: it waits for a free slot, which
    //  a second job manager brings.
    h_jm (t, "spare", DEFAULT_Q, 1, NULL);
    free (s_expect_ok (t, client, quick, 10000));
    REQUIRE_INT (clock_mono_ms () - submitted, <,
                 h_ms (5000));  // before the sleeper ends
    REQUIRE_WAIT (s_jm_processed (t, "spare") == 1, 3000);
    REQUIRE_WAIT (s_jm_stat (t, "busy", "total_returned") == 1, 3000);
    REQUIRE_INT (s_jm_processed (t, "busy"), ==, 1);  // only the warm-up so far
    free (s_expect_ok (t, client, sleeper, 15000));
    REQUIRE_WAIT (s_jm_processed (t, "busy") == 2, 3000);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  12b. Pipelining: a job prefetched to a job manager whose one worker is
//  busy is queued on that worker (its job started well within half the
//  hold). A CANCEL takes it back from there unrun: its RESULT says
//  cancelled, the worker and the job it runs go on; the job queued behind
//  it runs once the long one ends.

static void
test_pipeline_cancel (h_test_t *t)
{
    h_router (t, "router", "--prefetch", "2", NULL);
    h_jm (t, "jm", DEFAULT_Q, 1, "--prefetch-hold-ms", "10000", NULL);
    REQUIRE_WAIT (h_jm_has_slots (t, "jm", 1), 5000);
    emq_client_t *client = s_client (t);
    char sleeper[37], doomed[37], next[37];
    pid_t worker = s_busy_worker (t, client, "jm", "2", sleeper);
    h_submit_run (client, NULL, "upper", "\"doomed\"", 0, doomed);
    h_submit_run (client, NULL, "upper", "\"next\"", 0, next);
    //  Both prefetched to the job manager (the router counts them there).
    REQUIRE_WAIT (s_jm_count (t, "jm", "inflight") == 3, 3000);
    h_cli_t r;
    h_cli (t, &r, 10000, "cancel", doomed, NULL);
    REQUIRE_MSG (r.status == 0, "cancel of a queued job: exit %d (stderr %s)", r.status,
                 r.err);
    h_cli_free (&r);
    emq_event_t event;
    int rc = s_wait_result (t, client, doomed, 5000, &event);
    REQUIRE_MSG (rc != EMQ_ERR_TIMEOUT, "no RESULT for the cancelled queued job");
    char *text = h_result_text (&event);
    REQUIRE_MSG (event.status == EMQ_JOB_CANCELLED, "cancelled queued job ended %s: %s",
                 emq_job_status_name (event.status), text);
    REQUIRE_CONTAINS (text, "before it started");
    free (text);
    //  It was queued on the worker, not held by the job manager.
    REQUIRE_WAIT (h_log_count (t, "jm", "(taken back from worker") == 1, 3000);
    //  Nothing was killed: the long job still runs on the same worker, and
    //  ends ok; the next one runs after it.
    REQUIRE (h_pid_alive (worker));
    REQUIRE_INT (h_jm_job_pid (t, "jm", sleeper), ==, worker);
    free (s_expect_ok (t, client, sleeper, 10000));
    text = s_expect_ok (t, client, next, 10000);
    REQUIRE_STREQ (text, "\"NEXT\"");
    free (text);
    REQUIRE (h_pid_alive (worker));
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  13. max_job_count recycles workers

static void
test_max_job_count (h_test_t *t)
{
    h_router (t, "router", NULL);
    h_jm (t, "jm", DEFAULT_Q, 1, "--max-job-count", "2", NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    emq_client_t *client = s_client (t);
    char msgids[5][37];
    for (int i = 0; i < 5; i++)
        h_submit_run (client, NULL, "upper", "\"x\"", 0, msgids[i]);
    for (int i = 0; i < 5; i++) {
        char *text = s_expect_ok (t, client, msgids[i], 15000);
        REQUIRE_STREQ (text, "\"X\"");
        free (text);
    }
    REQUIRE_WAIT (h_jm_pid_count (t, "jm") >= 3, 3000);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  14. EventMQ peers at the wire

//  A message from the capture file: the frames of record `id`, without the
//  identity frame; the identity (if any) goes to identity (256 bytes).
static zmsg_t *
s_vector (json_t *vectors, const char *id, char *identity)
{
    size_t index;
    json_t *record;
    json_array_foreach (vectors, index, record)
    {
        if (strcmp (json_string_value (json_object_get (record, "id")), id) != 0)
            continue;
        zmsg_t *msg = zmsg_new ();
        size_t i;
        json_t *frame;
        json_array_foreach (json_object_get (record, "frames"), i, frame)
        {
            const char *hex = json_string_value (json_object_get (frame, "hex"));
            size_t size = strlen (hex) / 2;
            byte *bytes = malloc (size + 1);
            for (size_t j = 0; j < size; j++) {
                unsigned int value;
                sscanf (hex + 2 * j, "%2x", &value);
                bytes[j] = (byte) value;
            }
            if (json_is_true (json_object_get (frame, "identity"))) {
                if (identity)
                    snprintf (identity, 256, "%.*s", (int) size, (char *) bytes);
            }
            else
                zmsg_addmem (msg, bytes, size);
            free (bytes);
        }
        return msg;
    }
    return NULL;
}

//  The same messages, built by hand when the capture file is not there.
static zmsg_t *
s_vector_fallback (const char *id, char *identity)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "");
    zmsg_addstr (msg, EMQP_PROTOCOL);
    if (strcmp (id, "jm.inform") == 0) {
        snprintf (identity, 256, "447dac65-4628-4b71-948a-565e90b86b86");
        zmsg_addstr (msg, "INFORM");
        zmsg_addstr (msg, "1210c140-e787-4a1a-9a6f-28dca5960beb");
        zmsg_addstr (msg, "[[20, \"heavy\"], [10, \"default\"]]");
        zmsg_addstr (msg, "worker");
    }
    else {
        snprintf (identity, 256, "b872f297-532e-4771-bd68-66659e2aa725");
        zmsg_addstr (msg, "REQUEST");
        zmsg_addstr (msg, "a1199ac3-5d07-4d62-bda8-6e0947e99d41");
        zmsg_addstr (msg, "heavy");
        zmsg_addstr (msg, "reply-requested,retry-count:3,timeout:10");
        zmsg_addstr (msg, "[\"run\", {\"callable\": \"add\", \"path\": \"capjobs\", "
                          "\"args\": [2, 3], \"kwargs\": {}, \"class_args\": [], "
                          "\"class_kwargs\": {}}]");
    }
    return msg;
}

static json_t *
s_load_vectors (h_test_t *t)
{
    const char *paths[] = { getenv ("EMQ_VECTORS"),
                            "../shared/vectors/eventmq-0.3.13.json",
                            "/work/shared/vectors/eventmq-0.3.13.json" };
    for (size_t i = 0; i < 3; i++) {
        if (!paths[i])
            continue;
        json_t *vectors = json_load_file (paths[i], 0, NULL);
        if (json_is_array (vectors)) {
            h_log (t, "vectors from %s", paths[i]);
            return vectors;
        }
        json_decref (vectors);
    }
    h_log (t, "no capture file; building the EventMQ messages by hand");
    return NULL;
}

//  Heartbeats like an EventMQ job manager (5 frames, no stats).
static void
s_fake_heartbeat (zsock_t *sock, int64_t *last_ms)
{
    if (clock_mono_ms () - *last_ms < 200)
        return;
    *last_ms = clock_mono_ms ();
    char id[37], ts[32];
    emqp_msgid_new (id);
    snprintf (ts, sizeof ts, "%.7f", clock_wall_s ());
    h_send_strs (sock, "", EMQP_PROTOCOL, "HEARTBEAT", id, ts, NULL);
}

//  Receives the next non-HEARTBEAT message on sock within timeout_ms,
//  heartbeating on jm meanwhile; raw frames. *saw_heartbeat is set when a
//  HEARTBEAT came on sock.
static zmsg_t *
s_fake_recv (zsock_t *sock, zsock_t *jm, int64_t *last_hb, int timeout_ms,
             bool *saw_heartbeat)
{
    int64_t deadline = clock_mono_ms () + h_ms (timeout_ms);
    while (clock_mono_ms () < deadline) {
        s_fake_heartbeat (jm, last_hb);
        zmsg_t *msg = h_recv_raw (sock, 50);
        if (!msg)
            continue;
        zframe_t *command = zmsg_size (msg) >= 3 ? zmsg_next (msg) : NULL;
        command = command ? zmsg_next (msg) : NULL;
        command = command ? zmsg_next (msg) : NULL;
        if (command && zframe_streq (command, "HEARTBEAT")) {
            if (saw_heartbeat)
                *saw_heartbeat = true;
            zmsg_destroy (&msg);
            continue;
        }
        return msg;
    }
    return NULL;
}

static char *
s_frame_str (zmsg_t *msg, size_t index)
{
    zframe_t *frame = zmsg_first (msg);
    for (size_t i = 0; frame && i < index; i++)
        frame = zmsg_next (msg);
    return frame ? zframe_strdup (frame) : strdup ("(missing)");
}

static void
test_eventmq_wire (h_test_t *t)
{
    h_router (t, "router", NULL);
    json_t *vectors = s_load_vectors (t);
    char jm_identity[256], client_identity[256];
    zmsg_t *inform = vectors ? s_vector (vectors, "jm.inform", jm_identity)
                             : s_vector_fallback ("jm.inform", jm_identity);
    zmsg_t *request =
        vectors ? s_vector (vectors, "client.request.send_request", client_identity)
                : s_vector_fallback ("client.request.send_request", client_identity);
    json_decref (vectors);
    REQUIRE (inform && request);
    REQUIRE_INT (zmsg_size (inform), ==, 6);
    REQUIRE_INT (zmsg_size (request), ==, 7);
    char *inform_id = s_frame_str (inform, 3);
    char *request_id = s_frame_str (request, 3);
    char *request_queue = s_frame_str (request, 4);
    char *request_headers = s_frame_str (request, 5);
    zframe_t *request_payload = zframe_dup (zmsg_last (request));

    //  The EventMQ job manager: INFORM, wait for ACK and a HEARTBEAT, READY.
    zsock_t *jm = h_dealer (t->backend, jm_identity);
    zsock_t *client = h_dealer (t->frontend, client_identity);
    REQUIRE (jm && client);
    REQUIRE_INT (zmsg_send (&inform, jm), ==, 0);
    int64_t last_hb = clock_mono_ms ();
    bool saw_heartbeat = false;
    zmsg_t *msg = s_fake_recv (jm, jm, &last_hb, 3000, &saw_heartbeat);
    REQUIRE_MSG (msg != NULL, "no answer to the EventMQ INFORM");
    char *command = s_frame_str (msg, 2);
    char *ref = s_frame_str (msg, 4);
    REQUIRE_STREQ (command, "ACK");
    REQUIRE_INT (zmsg_size (msg), ==, 5);
    REQUIRE_STREQ (ref, inform_id);
    free (command);
    free (ref);
    zmsg_destroy (&msg);
    char jm_name[64];
    snprintf (jm_name, sizeof jm_name, "%.8s", jm_identity);  // "447dac65", before '-'
    int64_t deadline = clock_mono_ms () + h_ms (3000);
    while (!saw_heartbeat && clock_mono_ms () < deadline) {
        msg = s_fake_recv (jm, jm, &last_hb, 100, &saw_heartbeat);
        REQUIRE_MSG (msg == NULL, "unexpected message to the job manager before READY");
    }
    REQUIRE_MSG (saw_heartbeat, "the router sent the EventMQ job manager no HEARTBEAT");
    char id[37];
    emqp_msgid_new (id);
    h_send_strs (jm, "", EMQP_PROTOCOL, "READY", id, NULL);
    REQUIRE_WAIT (h_jm_has_slots (t, jm_name, 1), 3000);

    //  The EventMQ client's REQUEST: ACKed, forwarded as 7 frames.
    REQUIRE_INT (zmsg_send (&request, client), ==, 0);
    msg = s_fake_recv (client, jm, &last_hb, 3000, NULL);
    REQUIRE_MSG (msg != NULL, "no answer to the EventMQ client's REQUEST");
    command = s_frame_str (msg, 2);
    ref = s_frame_str (msg, 4);
    REQUIRE_STREQ (command, "ACK");
    REQUIRE_STREQ (ref, request_id);
    free (command);
    free (ref);
    zmsg_destroy (&msg);

    msg = s_fake_recv (jm, jm, &last_hb, 3000, NULL);
    REQUIRE_MSG (msg != NULL, "the EventMQ job manager got no REQUEST");
    REQUIRE_INT (zmsg_size (msg), ==, 7);
    char *frames[6];
    for (size_t i = 0; i < 6; i++)
        frames[i] = s_frame_str (msg, i);
    REQUIRE_STREQ (frames[0], "");
    REQUIRE_STREQ (frames[1], EMQP_PROTOCOL);
    REQUIRE_STREQ (frames[2], "REQUEST");
    REQUIRE_STREQ (frames[3], request_id);
    REQUIRE_STREQ (frames[4], request_queue);
    REQUIRE_STREQ (frames[5], request_headers);
    REQUIRE (zframe_eq (zmsg_last (msg), request_payload));
    for (size_t i = 0; i < 6; i++)
        free (frames[i]);
    zmsg_destroy (&msg);

    //  Its REPLY becomes the client's RESULT.
    emqp_msgid_new (id);
    h_send_strs (jm, "", EMQP_PROTOCOL, "REPLY", id, "{\"value\": 5}", request_id, NULL);
    emqp_msgid_new (id);
    h_send_strs (jm, "", EMQP_PROTOCOL, "READY", id, NULL);
    msg = s_fake_recv (client, jm, &last_hb, 3000, NULL);
    REQUIRE_MSG (msg != NULL, "the EventMQ client got no RESULT");
    command = s_frame_str (msg, 2);
    ref = s_frame_str (msg, 4);
    char *status = s_frame_str (msg, 5);
    REQUIRE_STREQ (command, "RESULT");
    REQUIRE_STREQ (ref, request_id);
    REQUIRE_STREQ (status, "ok");
    char *value = s_frame_str (msg, 6);
    h_log (t, "RESULT value frame: %s", value);
    free (value);
    free (command);
    free (ref);
    free (status);
    zmsg_destroy (&msg);

    REQUIRE_WAIT (
        s_status_int (t, "processed_messages_by_queue", request_queue, NULL) == 1, 3000);
    json_t *info = h_jm_info (t, jm_name, NULL);
    REQUIRE_INT (h_jint (info, -1, "processed", NULL), ==, 1);
    REQUIRE_INT (h_jint (info, -1, "available_slots", NULL), ==, 1);
    json_decref (info);
    //  It stays registered while it heartbeats, like any job manager.
    int64_t until = clock_mono_ms () + 1500;
    while (clock_mono_ms () < until) {
        msg = s_fake_recv (jm, jm, &last_hb, 100, NULL);
        zmsg_destroy (&msg);
    }
    REQUIRE (h_jm_registered (t, jm_name));

    emqp_msgid_new (id);
    h_send_strs (jm, "", EMQP_PROTOCOL, "KBYE", id, NULL);
    REQUIRE_WAIT (!h_jm_registered (t, jm_name), 3000);
    zframe_destroy (&request_payload);
    free (inform_id);
    free (request_id);
    free (request_queue);
    free (request_headers);
    zsock_destroy (&jm);
    zsock_destroy (&client);
}

//  ---------------------------------------------------------------------
//  16. Fencing: a job manager presumed dead cannot end a re-dispatched job

//  Connects a fake emq job manager (agent emq/1) serving queues, waits for
//  the INFORM's ACK.
static zsock_t *
s_fake_emq_jm (h_test_t *t, const char *identity, const char *queues, int64_t *last_hb)
{
    zsock_t *jm = h_dealer (t->backend, identity);
    REQUIRE (jm);
    char inform_id[37];
    emqp_msgid_new (inform_id);
    REQUIRE_INT (h_send_strs (jm, "", EMQP_PROTOCOL, "INFORM", inform_id, queues,
                              "worker", "emq/1", NULL),
                 ==, 0);
    *last_hb = clock_mono_ms ();
    zmsg_t *msg = s_fake_recv (jm, jm, last_hb, 3000, NULL);
    REQUIRE_MSG (msg != NULL, "no ACK for %s's INFORM", identity);
    char *command = s_frame_str (msg, 2), *ref = s_frame_str (msg, 4);
    REQUIRE_STREQ (command, "ACK");
    REQUIRE_STREQ (ref, inform_id);
    free (command);
    free (ref);
    zmsg_destroy (&msg);
    return jm;
}

//  Receives the next REQUEST on a fake job manager, heartbeating.
static emqp_msg_t *
s_fake_request (h_test_t *t, zsock_t *jm, int64_t *last_hb, int timeout_ms)
{
    zmsg_t *zmsg = s_fake_recv (jm, jm, last_hb, timeout_ms, NULL);
    REQUIRE_MSG (zmsg != NULL, "the fake job manager got no REQUEST");
    REQUIRE_INT (zmsg_size (zmsg), ==, 9);  // 7 + epoch + attempt
    char err[256] = "";
    emqp_msg_t *msg = emqp_decode (&zmsg, false, NULL, NULL, err, sizeof err);
    REQUIRE_MSG (msg != NULL, "REQUEST to an emq job manager does not decode: %s", err);
    REQUIRE_INT (msg->command, ==, EMQP_REQUEST);
    h_log (t, "fake jm got REQUEST %s epoch %llu attempt %u", msg->msgid,
           (unsigned long long) msg->epoch, msg->attempt);
    return msg;
}

static void
s_fake_done (zsock_t *jm, const char *msgid, uint64_t epoch, const char *status,
             const void *value, size_t size)
{
    char id[37], epoch_s[24];
    emqp_msgid_new (id);
    snprintf (epoch_s, sizeof epoch_s, "%llu", (unsigned long long) epoch);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "");
    zmsg_addstr (msg, EMQP_PROTOCOL);
    zmsg_addstr (msg, "DONE");
    zmsg_addstr (msg, id);
    zmsg_addstr (msg, msgid);
    zmsg_addstr (msg, epoch_s);
    zmsg_addstr (msg, status);
    zmsg_addmem (msg, value, size);
    zmsg_addstr (msg, "wall_us=1 cpu_us=1 maxrss_kb=1");
    REQUIRE_INT (zmsg_send (&msg, jm), ==, 0);
}

//  Polls the client for its next event, heartbeating on jm meanwhile.
static bool
s_poll_pumping (emq_client_t *client, zsock_t *jm, int64_t *last_hb, int timeout_ms,
                emq_event_t *event)
{
    int64_t deadline = clock_mono_ms () + h_ms (timeout_ms);
    while (clock_mono_ms () < deadline) {
        s_fake_heartbeat (jm, last_hb);
        zmsg_t *drop = h_recv_raw (jm, 0);
        zmsg_destroy (&drop);
        if (emq_poll (client, 50, event) == 0)
            return true;
    }
    return false;
}

static void
test_fencing (h_test_t *t)
{
    h_router (t, "router", NULL);
    int64_t hb1, hb2;
    zsock_t *jm1 = s_fake_emq_jm (t, "fenceA-1", "[[10,\"fence\"]]", &hb1);
    char id[37];
    emqp_msgid_new (id);
    h_send_strs (jm1, "", EMQP_PROTOCOL, "READY", id, NULL);
    REQUIRE_WAIT (h_jm_has_slots (t, "fenceA", 1), 3000);

    emq_client_t *client = s_client (t);
    char msgid[37];
    emq_submit_opts_t opts = { .queue = "fence", .reply = true };
    REQUIRE_INT (emq_submit (client, &opts, "\xc0", 1, msgid, h_ms (5000)), ==, 0);
    emqp_msg_t *first = s_fake_request (t, jm1, &hb1, 3000);
    REQUIRE_STREQ (first->msgid, msgid);
    REQUIRE_STREQ (first->queue, "fence");
    REQUIRE_INT (first->attempt, ==, 1);
    uint64_t old_epoch = first->epoch;
    emqp_msg_destroy (&first);

    //  jm1 falls silent; jm2 is ready; the router gives jm1 up and the job
    //  goes to jm2 with a new epoch and attempt 2.
    zsock_t *jm2 = s_fake_emq_jm (t, "fenceB-1", "[[10,\"fence\"]]", &hb2);
    emqp_msgid_new (id);
    h_send_strs (jm2, "", EMQP_PROTOCOL, "READY", id, NULL);
    emqp_msg_t *second = s_fake_request (t, jm2, &hb2, 5000);
    REQUIRE_STREQ (second->msgid, msgid);
    REQUIRE_INT (second->attempt, ==, 2);
    REQUIRE_MSG (second->epoch != old_epoch, "re-dispatch reused epoch %llu",
                 (unsigned long long) old_epoch);
    uint64_t new_epoch = second->epoch;
    emqp_msg_destroy (&second);
    REQUIRE (!h_jm_registered (t, "fenceA"));

    //  jm1 comes back and reports the old dispatch: ignored.
    s_fake_done (jm1, msgid, old_epoch, "failed", "stale", 5);
    //  jm2 reports the current one: the client's one RESULT.
    s_fake_done (jm2, msgid, new_epoch, "ok", "\xa2ok", 3);
    emq_event_t event;
    bool got = s_poll_pumping (client, jm2, &hb2, 3000, &event);
    REQUIRE_MSG (got, "no RESULT after the current epoch's DONE");
    REQUIRE_INT (event.type, ==, EMQ_EVENT_RESULT);
    REQUIRE_STREQ (event.msgid, msgid);
    REQUIRE_MSG (event.status == EMQ_JOB_OK, "status %d: the stale DONE was applied",
                 (int) event.status);
    REQUIRE_INT (event.size, ==, 3);

    //  A second job marks the end: nothing else came for the first.
    emqp_msgid_new (id);
    h_send_strs (jm2, "", EMQP_PROTOCOL, "READY", id, NULL);
    char msgid2[37];
    REQUIRE_INT (emq_submit (client, &opts, "\xc0", 1, msgid2, h_ms (5000)), ==, 0);
    emqp_msg_t *third = s_fake_request (t, jm2, &hb2, 3000);
    REQUIRE_STREQ (third->msgid, msgid2);
    s_fake_done (jm2, msgid2, third->epoch, "ok", "\xc0", 1);
    emqp_msg_destroy (&third);
    while (true) {
        got = s_poll_pumping (client, jm2, &hb2, 3000, &event);
        REQUIRE_MSG (got, "no RESULT for the second job");
        REQUIRE_MSG (strcmp (event.msgid, msgid) != 0,
                     "a second event (type %d, status %d) "
                     "for the first job",
                     (int) event.type, (int) event.status);
        if (event.type == EMQ_EVENT_RESULT)
            break;
    }
    REQUIRE_STREQ (event.msgid, msgid2);
    REQUIRE_WAIT (s_status_int (t, "processed_messages_by_queue", "fence", NULL) == 2,
                  3000);
    emq_client_destroy (&client);
    zsock_destroy (&jm1);
    zsock_destroy (&jm2);
}

//  ---------------------------------------------------------------------
//  17. Retries

static void
test_retries (h_test_t *t)
{
    //  Through the environment: every setting can be given there.
    setenv ("EVENTMQ_RETRY_BACKOFF", "0.1", 1);
    setenv ("EVENTMQ_RETRY_BACKOFF_MAX", "0.5", 1);
    h_router (t, "router", NULL);
    h_jm (t, "jm", DEFAULT_Q, 1, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    emq_client_t *client = s_client (t);

    //  A job that always fails runs 1 + retries times, then fails once.
    void *payload;
    size_t size;
    h_payload_run ("fail", "\"again\"", &payload, &size);
    emq_submit_opts_t opts = { .reply = true, .retries = 2 };
    char msgid[37];
    int64_t submitted_ms = clock_mono_ms ();
    int rc = emq_submit (client, &opts, payload, size, msgid, h_ms (5000));
    free (payload);
    REQUIRE_INT (rc, ==, 0);
    emq_event_t event;
    rc = s_wait_result (t, client, msgid, 15000, &event);
    REQUIRE_INT (event.status, ==, EMQ_JOB_FAILED);
    char *text = h_result_text (&event);
    REQUIRE_CONTAINS (text, "again");
    free (text);
    //  Backed off 0.1 s, then 0.2 s (less jitter) before the retries.
    REQUIRE_MSG (clock_mono_ms () - submitted_ms >= 100,
                 "3 attempts in %lld ms: no retry backoff",
                 (long long) (clock_mono_ms () - submitted_ms));
    //  The job manager's stats come with its next heartbeat.
    REQUIRE_WAIT (s_jm_stat (t, "jm", "total_requests") == 3, 3000);

    //  A retried job that then succeeds ends ok, with one RESULT; the
    //  retry carries attempt 2 (a fake emq job manager shows the frames).
    int64_t hb;
    zsock_t *jm = s_fake_emq_jm (t, "retrier-1", "[[10,\"retryq\"]]", &hb);
    char id[37];
    emqp_msgid_new (id);
    h_send_strs (jm, "", EMQP_PROTOCOL, "READY", id, NULL);
    REQUIRE_WAIT (h_jm_has_slots (t, "retrier", 1), 3000);
    emq_submit_opts_t retry_opts = { .queue = "retryq", .reply = true, .retries = 2 };
    REQUIRE_INT (emq_submit (client, &retry_opts, "\xc0", 1, msgid, h_ms (5000)), ==, 0);
    emqp_msg_t *request = s_fake_request (t, jm, &hb, 3000);
    REQUIRE_STREQ (request->msgid, msgid);
    REQUIRE_INT (request->attempt, ==, 1);
    REQUIRE_CONTAINS (request->headers, "retry-count:2");
    s_fake_done (jm, msgid, request->epoch, "failed", "first try", 9);
    emqp_msg_destroy (&request);
    emqp_msgid_new (id);
    h_send_strs (jm, "", EMQP_PROTOCOL, "READY", id, NULL);
    request = s_fake_request (t, jm, &hb, 5000);
    REQUIRE_STREQ (request->msgid, msgid);
    REQUIRE_INT (request->attempt, ==, 2);
    s_fake_done (jm, msgid, request->epoch, "ok", "\xc3", 1);
    emqp_msg_destroy (&request);
    bool got = s_poll_pumping (client, jm, &hb, 3000, &event);
    REQUIRE_MSG (got, "no RESULT after the retry succeeded");
    REQUIRE_STREQ (event.msgid, msgid);
    REQUIRE_INT (event.type, ==, EMQ_EVENT_RESULT);
    REQUIRE_INT (event.status, ==, EMQ_JOB_OK);
    emqp_msgid_new (id);
    h_send_strs (jm, "", EMQP_PROTOCOL, "KBYE", id, NULL);
    zsock_destroy (&jm);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  18. emq-cli exit codes and JSON output

static void
test_cli (h_test_t *t)
{
    h_cli_t r;
    //  No router yet: unreachable (3), within the connect timeout.
    h_cli (t, &r, 20000, "--connect-timeout", "0.5", "status", NULL);
    REQUIRE_MSG (r.status == 3, "status without a router: exit %d (stderr %s)", r.status,
                 r.err);
    h_cli_free (&r);
    h_cli (t, &r, 20000, "--connect-timeout", "0.5", "submit", "run", H_PLUGIN, "noop",
           NULL);
    REQUIRE_MSG (r.status == 3, "submit without a router: exit %d (stderr %s)", r.status,
                 r.err);
    REQUIRE_INT (r.elapsed_ms, <, h_ms (5000));
    h_cli_free (&r);

    //  Usage errors: 2, with a message.
    const char *bad[][6] = {
        { "frobnicate", NULL },
        { "submit", NULL },
        { "submit", "--retries", "many", "run", H_PLUGIN, "noop" },
        { "submit", "run", H_PLUGIN, NULL },
        { "submit", "run", H_PLUGIN, "upper", "{not json", NULL },
        { "submit", "exec", NULL },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        h_cli (t, &r, 10000, bad[i][0], bad[i][1], bad[i][2], bad[i][3], bad[i][4],
               bad[i][5], NULL);
        REQUIRE_MSG (r.status == 2, "emq-cli %s %s %s: exit %d, expected 2 (stderr %s)",
                     bad[i][0], bad[i][1] ? bad[i][1] : "", bad[i][2] ? bad[i][2] : "",
                     r.status, r.err);
        REQUIRE_MSG (strlen (r.err) > 0, "usage error without a message");
        h_cli_free (&r);
    }

    s_router_and_jm (t, "jm", 2);
    //  --wait-timeout runs out: 6.
    h_cli (t, &r, 20000, "submit", "--wait", "--wait-timeout", "0.5", "run", H_PLUGIN,
           "sleep", "3", NULL);
    REQUIRE_MSG (r.status == 6, "wait timeout: exit %d (stderr %s)", r.status, r.err);
    REQUIRE_INT (r.elapsed_ms, <, h_ms (2500));
    h_cli_free (&r);

    //  Without --wait: prints the msgid once the router has the job.
    h_cli (t, &r, 20000, "submit", "run", H_PLUGIN, "noop", NULL);
    REQUIRE_MSG (r.status == 0, "submit: exit %d (stderr %s)", r.status, r.err);
    REQUIRE_INT (strlen (h_chomp (r.out)), ==, 36);
    h_cli_free (&r);

    //  Any command under /bin/* (the allow-list) runs with its arguments.
    h_cli (t, &r, 20000, "submit", "--wait", "--queue", "default", "exec", "--",
           "/bin/sh", "-c", "echo $((6 * 7))", NULL);
    REQUIRE_MSG (r.status == 0, "exec sh: exit %d (stderr %s)", r.status, r.err);
    REQUIRE_STREQ (r.out, "42\n");
    h_cli_free (&r);

    //  JSON views.
    h_cli (t, &r, 10000, "workers", "--json", NULL);
    REQUIRE_MSG (r.status == 0, "workers --json: exit %d (stderr %s)", r.status, r.err);
    json_t *json = json_loads (r.out, 0, NULL);
    REQUIRE_MSG (json_is_object (json_object_get (json, "connected_workers")),
                 "workers --json printed: %.300s", r.out);
    bool found = false;
    const char *key;
    json_t *value;
    json_object_foreach (json_object_get (json, "connected_workers"), key, value) found =
        found || strncmp (key, "jm-", 3) == 0;
    REQUIRE_MSG (found, "workers --json does not list the job manager: %.300s", r.out);
    json_decref (json);
    h_cli_free (&r);

    h_cli (t, &r, 10000, "status", "--json", NULL);
    REQUIRE_MSG (r.status == 0, "status --json: exit %d (stderr %s)", r.status, r.err);
    json = json_loads (r.out, 0, NULL);
    REQUIRE_MSG (json_is_object (json_object_get (json, "queues")),
                 "status --json printed: %.300s", r.out);
    REQUIRE_INT (h_jint (json, -1, "job_managers", NULL), ==, 1);
    json_decref (json);
    h_cli_free (&r);

    //  Human-readable views say something.
    h_cli (t, &r, 10000, "status", NULL);
    REQUIRE_MSG (r.status == 0 && strstr (r.out, "default"),
                 "status: exit %d, out %.300s", r.status, r.out);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "workers", NULL);
    REQUIRE_MSG (r.status == 0 && strstr (r.out, "jm-"), "workers: exit %d, out %.300s",
                 r.status, r.out);
    h_cli_free (&r);
}

//  ---------------------------------------------------------------------
//  19. SIGUSR1 and SIGHUP on a job manager

static long
s_file_size (h_test_t *t, const char *name)
{
    char path[1024];
    snprintf (path, sizeof path, "%s/%s", t->dir, name);
    struct stat st;
    return stat (path, &st) == 0 ? (long) st.st_size : -1;
}

static void
test_jm_signals (h_test_t *t)
{
    pid_t jm = s_router_and_jm (t, "jm", 2);
    emq_client_t *client = s_client (t);
    s_run_ok (t, client, NULL, "upper", "\"a\"", "\"A\"");

    //  SIGUSR1 logs the status; the job manager keeps working.
    long size = s_file_size (t, "jm.log");
    REQUIRE_INT (kill (jm, SIGUSR1), ==, 0);
    REQUIRE_WAIT (s_file_size (t, "jm.log") > size, 3000);
    REQUIRE (h_pid_alive (jm));
    s_run_ok (t, client, NULL, "upper", "\"b\"", "\"B\"");

    //  SIGHUP reloads the configuration (the empty file); still serving.
    size = s_file_size (t, "jm.log");
    REQUIRE_INT (kill (jm, SIGHUP), ==, 0);
    REQUIRE_WAIT (s_file_size (t, "jm.log") > size, 3000);
    REQUIRE (h_pid_alive (jm));
    REQUIRE (h_jm_registered (t, "jm"));
    s_run_ok (t, client, NULL, "upper", "\"c\"", "\"C\"");
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  15. Router restart

static void
test_router_restart (h_test_t *t)
{
    h_router (t, "router", NULL);
    h_jm (t, "jm", DEFAULT_Q, 2, NULL);
    char before[256], after[256];
    h_wait_jm (t, "jm", 10000, before);
    emq_client_t *client = s_client (t);
    s_run_ok (t, client, NULL, "upper", "\"one\"", "\"ONE\"");

    pid_t router = t->procs[0].pid;
    h_kill (t, router, SIGKILL, false);
    REQUIRE (h_proc_wait (t, router, 5000, NULL));
    h_router (t, "router2", NULL);
    h_wait_jm (t, "jm", 15000, after);
    h_log (t, "jm identity before %s, after %s", before, after);
    //  The same client reconnects by itself (ZeroMQ), as does the jm.
    s_run_ok (t, client, NULL, "upper", "\"two\"", "\"TWO\"");
    emq_client_destroy (&client);
    client = s_client (t);
    s_run_ok (t, client, NULL, "upper", "\"three\"", "\"THREE\"");
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  20. Acknowledged means kept: a router killed with SIGKILL loses nothing

static void
test_router_crash (h_test_t *t)
{
    pid_t router = h_router (t, "router", NULL);
    emq_client_t *client = s_client (t);
    char msgids[3][37];
    const char *words[] = { "\"kept\"", "\"safe\"", "\"sound\"" };
    const char *upper[] = { "\"KEPT\"", "\"SAFE\"", "\"SOUND\"" };
    for (int i = 0; i < 3; i++)
        h_submit_run (client, NULL, "upper", words[i], 0, msgids[i]);
    REQUIRE_INT (s_status_int (t, "queues", "default", "waiting"), ==, 3);

    h_kill (t, router, SIGKILL, false);
    REQUIRE (h_proc_wait (t, router, 5000, NULL));
    h_router (t, "router2", NULL);
    REQUIRE_WAIT (s_status_int (t, "queues", "default", "waiting") == 3, 3000);
    //  The client's socket reconnects by itself; one more job (ACKed by the
    //  new router) shows it has, before any RESULT is sent. (A RESULT for a
    //  client that is not connected at that moment is dropped.)
    char marker[37];
    h_submit_run (client, NULL, "upper", "\"marker\"", 0, marker);

    h_jm (t, "jm", DEFAULT_Q, 2, NULL);
    REQUIRE_WAIT (s_status_int (t, "processed_messages_by_queue", "default", NULL) == 4,
                  15000);
    REQUIRE_INT (s_status_int (t, "queues", "default", "waiting"), ==, 0);
    //  The results still reach the client that asked (same identity).
    for (int i = 0; i < 3; i++) {
        char *text = s_expect_ok (t, client, msgids[i], 5000);
        REQUIRE_STREQ (text, upper[i]);
        free (text);
    }
    free (s_expect_ok (t, client, marker, 5000));
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  CURVE: only peers with the router's key, and admitted keys, get through

static void
s_keygen (h_test_t *t, const char *path, const char *roles)
{
    (void) t;
    char err[512];
    REQUIRE_MSG (curve_keygen (path, roles, err, sizeof err) == 0, "keygen %s: %s", path,
                 err);
}

static void
test_curve (h_test_t *t)
{
    //  Short paths: czmq keeps certificate file names in 256 bytes.
    enum { N = 300 };
    char clients[N], router[N], router_secret[N + 8], stranger[N], stranger_secret[N + 8];
    char jm_pub[N], jm_secret[N], cli_pub[N], cli_secret[N], me_pub[N], me_secret[N];
    snprintf (clients, sizeof clients, "%.200s/clients", t->dir);
    REQUIRE_MSG (mkdir (clients, 0700) == 0, "mkdir %s: %s", clients, strerror (errno));
    snprintf (router, sizeof router, "%.200s/router", t->dir);
    snprintf (router_secret, sizeof router_secret, "%s_secret", router);
    snprintf (stranger, sizeof stranger, "%.200s/stranger", t->dir);
    snprintf (stranger_secret, sizeof stranger_secret, "%s_secret", stranger);
    s_keygen (t, router, "client");
    s_keygen (t, stranger, "client,admin,jobmanager");
    //  Admitted peers: the public certificate in the clients directory, the
    //  key pair beside it; each with its roles.
    const char *names[] = { "jm", "cli", "me" };
    const char *roles[] = { "jobmanager", "client", "client,admin" };
    char *pubs[] = { jm_pub, cli_pub, me_pub },
         *secrets[] = { jm_secret, cli_secret, me_secret };
    for (int i = 0; i < 3; i++) {
        snprintf (pubs[i], N, "%.200s/%s", clients, names[i]);
        s_keygen (t, pubs[i], roles[i]);
        char made[N + 8];
        snprintf (made, sizeof made, "%s_secret", pubs[i]);
        snprintf (secrets[i], N, "%.200s/%s_secret", t->dir, names[i]);
        REQUIRE_MSG (rename (made, secrets[i]) == 0, "rename %s: %s", made,
                     strerror (errno));
    }
    //  This process asks the router for STATUS: it is an admitted client.
    char err[512];
    REQUIRE_MSG (emq_set_curve (router, me_secret, err, sizeof err) == 0,
                 "emq_set_curve: %s", err);
    h_router (t, "router", "--curve-secret-cert", router_secret, "--curve-clients-dir",
              clients, NULL);
    h_jm (t, "jm", DEFAULT_Q, 2, "--curve-server-key", router, "--curve-cert", jm_secret,
          NULL);
    h_wait_jm (t, "jm", 10000, NULL);

    h_cli_t r0;
    //  emq-cli keygen: roles checked, written into the certificate, files
    //  never overwritten.
    char made[N];
    snprintf (made, sizeof made, "%.200s/made", t->dir);
    h_cli (t, &r0, 20000, "keygen", "--role", "root", made, NULL);
    REQUIRE_MSG (r0.status == 2 && strstr (r0.err, "unknown role"),
                 "keygen --role root: exit "
                 "%d (stderr %s)",
                 r0.status, r0.err);
    h_cli_free (&r0);
    h_cli (t, &r0, 20000, "keygen", "--role", "scheduler", "--role", "admin", made, NULL);
    REQUIRE_MSG (r0.status == 0 && strstr (r0.out, "roles scheduler,admin"),
                 "keygen: exit %d, "
                 "out %s (stderr %s)",
                 r0.status, r0.out, r0.err);
    h_cli_free (&r0);
    zcert_t *cert = zcert_load (made);
    REQUIRE_STREQ (cert ? zcert_meta (cert, CURVE_ROLES_PROPERTY) : NULL,
                   "scheduler,admin");
    zcert_destroy (&cert);
    h_cli (t, &r0, 20000, "keygen", made, NULL);
    REQUIRE_MSG (r0.status == 1 && strstr (r0.err, "not overwritten"),
                 "keygen over an existing "
                 "key: exit %d (stderr %s)",
                 r0.status, r0.err);
    h_cli_free (&r0);

    //  An admitted emq-cli runs a job end to end.
    setenv ("EMQ_CURVE_SERVER_KEY", router, 1);
    setenv ("EMQ_CURVE_CERT", cli_secret, 1);
    h_cli_t r;
    h_cli (t, &r, 20000, "submit", "--wait", "run", H_PLUGIN, "upper", "\"secret\"",
           NULL);
    REQUIRE_MSG (r.status == 0, "admitted emq-cli: exit %d, stderr: %s", r.status, r.err);
    REQUIRE_STREQ (h_chomp (r.out), "\"SECRET\"");
    h_cli_free (&r);
    //  Its key has no admin role: the admin socket refuses it (exit 4).
    h_cli (t, &r, 20000, "status", NULL);
    REQUIRE_MSG (r.status == 4 && strstr (r.err, "NOT_ALLOWED"),
                 "client key on the admin "
                 "socket: exit %d, expected 4 (stderr %s)",
                 r.status, r.err);
    h_cli_free (&r);
    //  The admin key may.
    setenv ("EMQ_CURVE_CERT", me_secret, 1);
    h_cli (t, &r, 20000, "status", NULL);
    REQUIRE_MSG (r.status == 0, "admin key: exit %d (stderr %s)", r.status, r.err);
    h_cli_free (&r);

    //  A key the router does not know, a plain client, a wrong server key:
    //  the router never answers (exit 3), and runs nothing for them.
    setenv ("EMQ_CURVE_CERT", stranger_secret, 1);
    h_cli (t, &r, 20000, "--connect-timeout", "1", "submit", "run", H_PLUGIN, "upper",
           "\"x\"", NULL);
    REQUIRE_MSG (r.status == 3, "stranger emq-cli: exit %d, expected 3 (stderr %s)",
                 r.status, r.err);
    h_cli_free (&r);
    setenv ("EMQ_CURVE_SERVER_KEY", stranger, 1);
    setenv ("EMQ_CURVE_CERT", cli_secret, 1);
    h_cli (t, &r, 20000, "--connect-timeout", "1", "status", NULL);
    REQUIRE_MSG (r.status == 3,
                 "emq-cli with the wrong server key: exit %d, expected 3 "
                 "(stderr %s)",
                 r.status, r.err);
    h_cli_free (&r);
    unsetenv ("EMQ_CURVE_SERVER_KEY");
    unsetenv ("EMQ_CURVE_CERT");
    h_cli (t, &r, 20000, "--connect-timeout", "1", "status", NULL);
    REQUIRE_MSG (r.status == 3, "plain emq-cli: exit %d, expected 3 (stderr %s)",
                 r.status, r.err);
    h_cli_free (&r);
    //  Bad keys are a usage error, said at once.
    setenv ("EMQ_CURVE_SERVER_KEY", "not-a-key", 1);
    h_cli (t, &r, 20000, "status", NULL);
    REQUIRE_MSG (r.status == 2 && strstr (r.err, "CURVE"), "bad key: exit %d, stderr %s",
                 r.status, r.err);
    h_cli_free (&r);
    unsetenv ("EMQ_CURVE_SERVER_KEY");

    //  A job manager with an unknown key, or with an admitted key that is not
    //  a job manager's, never registers.
    h_jm (t, "jm-stranger", DEFAULT_Q, 1, "--curve-server-key", router, "--curve-cert",
          stranger_secret, NULL);
    h_jm (t, "jm-client-key", DEFAULT_Q, 1, "--curve-server-key", router, "--curve-cert",
          cli_secret, NULL);
    //  The one with a client's key is refused at INFORM, and informs again:
    //  by its second refusal the stranger's handshake has long failed.
    REQUIRE_WAIT (h_log_count (t, "router", "INFORM refused") >= 2, 10000);
    json_t *info = h_jm_info (t, "jm-stranger", NULL);
    REQUIRE_MSG (info == NULL, "a job manager with an unknown key registered");
    json_decref (info);
    info = h_jm_info (t, "jm-client-key", NULL);
    REQUIRE_MSG (info == NULL, "a job manager with a client's key registered");
    json_decref (info);
    json_t *status = h_admin (t, "STATUS");
    REQUIRE_INT (h_jint (status, -1, "processed_messages_by_queue", "default", NULL), ==,
                 1);
    json_decref (status);
    //  Later tests in this process talk plain ZeroMQ again.
    emq_set_curve (NULL, NULL, NULL, 0);
}

//  ---------------------------------------------------------------------

static const h_testdef_t s_tests[] = {
    { "roundtrip", test_roundtrip, "exec and run jobs via emq-cli and libemq" },
    { "many", test_many, "500 mixed jobs, each ACK and RESULT exactly once" },
    { "failures", test_failures, "failing, crashing, disallowed and malformed jobs" },
    { "timeout", test_timeout, "timeout:N kills the job and replaces the worker" },
    { "killed_worker", test_killed_worker,
      "SIGKILL a worker: job crashed, worker replaced" },
    { "slots", test_slots, "never more jobs in flight than concurrent_jobs" },
    { "weights", test_weights, "fair share, weight priority, least recently used" },
    { "jm_dies", test_jm_dies, "jobs of a killed job manager run on another" },
    { "hwm", test_hwm, "queue high-water mark: QUEUE_FULL, then the queue drains" },
    { "garbage", test_garbage, "malformed input on every socket, jobs unharmed" },
    { "disconnect", test_disconnect, "DISCONNECT refused on frontend, obeyed on admin" },
    { "jm_sigterm", test_jm_sigterm, "SIGTERM: running jobs finish, jm exits 0" },
    { "max_job_count", test_max_job_count, "workers recycled after max_job_count jobs" },
    { "pipeline_cancel", test_pipeline_cancel,
      "a job queued on a busy worker is cancelled unrun; the worker goes on" },
    { "prefetch_return", test_prefetch_return,
      "a prefetched job held behind a long one is returned and runs elsewhere" },
    { "eventmq_wire", test_eventmq_wire, "EventMQ job manager and client frames" },
    { "router_restart", test_router_restart, "job manager and client reconnect" },
    { "fencing", test_fencing, "re-dispatch after a silent jm; its stale DONE ignored" },
    { "curve", test_curve,
      "CURVE: admitted keys run jobs; strangers and plain peers get nothing" },
    { "retries", test_retries, "retry-count: attempts, backoff, one final RESULT" },
    { "cli", test_cli, "emq-cli exit codes, msgid output, JSON views" },
    { "jm_signals", test_jm_signals,
      "SIGUSR1 logs status, SIGHUP reloads; jm keeps serving" },
    { "router_crash", test_router_crash,
      "SIGKILLed router restarts with its acknowledged jobs" },
};

int
main (int argc, char **argv)
{
    //  This file's tests, then each other file's, in this order.
    const struct {
        const h_testdef_t *tests;
        size_t count;
    } groups[] = {
        { s_tests, sizeof s_tests / sizeof s_tests[0] },
        { h_durability_tests, h_durability_count },
        { h_batching_tests, h_batching_count },
        { h_durable_path_tests, h_durable_path_count },
        { h_dropin_tests, h_dropin_count },
        { h_ops_tests, h_ops_count },
        { h_confinement_tests, h_confinement_count },
        { h_hostile_tests, h_hostile_count },
        { h_python_tests, h_python_count },
        { h_observe_tests, h_observe_count },
        { h_store_contract_tests, h_store_contract_count },
        { h_ha_tests, h_ha_count },
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        total += groups[i].count;
    h_testdef_t *all = calloc (total, sizeof *all);
    if (!all)
        return 2;
    size_t at = 0;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        memcpy (all + at, groups[i].tests, groups[i].count * sizeof *all);
        at += groups[i].count;
    }
    int rc = h_main (all, total, argc, argv);
    free (all);
    return rc;
}
