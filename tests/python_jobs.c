/*  python_jobs — integration tests of python jobs: EventMQ's `run` payloads
    (JSON, as EventMQ's client sends them) and emq's msgpack form, run by a
    real emq-jobmanager in its embedded interpreter, with the test modules of
    tests/python/ on its python_path.

    Each test checks what a client sees (status, value, error text) and what
    happened to the worker processes (replaced after a timeout, a cancel, a
    crash; libpython mapped only by workers that ran a python job).
*/
#include "harness.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_QUEUES "[[10,\"default\"]]"

//  The test modules' directory: tests/python beside the build directory.
static const char *
s_modules (void)
{
    static char path[PATH_MAX];
    char joined[PATH_MAX + 16];
    snprintf (joined, sizeof joined, "%s/../tests/python", h_build_dir ());
    if (!realpath (joined, path))
        h_fail (__FILE__, __LINE__, "no test modules at %s", joined);
    return path;
}

//  Starts a router and a job manager `jm` with one worker, the test modules
//  on its path, allow-list `allow` and the extra arguments (NULL-ended).
static pid_t
s_start (h_test_t *t, const char *allow, const char *arg1, const char *arg2,
         const char *arg3, const char *arg4)
{
    h_router (t, "router", NULL);
    pid_t jm = h_jm (t, "jm", S_QUEUES, 1, "--python-path", s_modules (),
                     "--python-allow", allow, arg1, arg2, arg3, arg4, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    return jm;
}

static emq_client_t *
s_client (h_test_t *t)
{
    emq_client_t *client = emq_client_new (t->frontend);
    REQUIRE_MSG (client != NULL, "emq_client_new(%s) failed", t->frontend);
    return client;
}

//  Submits EventMQ's JSON payload for path/callable with the given JSON
//  parts (NULL = empty) and options; writes the msgid.
static void
s_submit (emq_client_t *client, emq_submit_opts_t *opts, const char *path,
          const char *callable, const char *args, const char *kwargs,
          const char *class_args, char msgid[37])
{
    char payload[2048];
    snprintf (payload, sizeof payload,
              "[\"run\", {\"callable\": \"%s\", \"path\": \"%s\", \"args\": %s, "
              "\"kwargs\": %s, \"class_args\": %s, \"class_kwargs\": {}}]",
              callable, path, args ? args : "[]", kwargs ? kwargs : "{}",
              class_args ? class_args : "[]");
    opts->reply = true;
    int rc = emq_submit (client, opts, payload, strlen (payload), msgid, h_ms (5000));
    REQUIRE_MSG (rc == 0, "submit %s:%s: %s", path, callable,
                 emq_client_last_error (client));
}

//  Waits for msgid's RESULT (fails the test without one).
static void
s_result (h_test_t *t, emq_client_t *client, const char *msgid, int timeout_ms,
          emq_event_t *event)
{
    int rc = emq_wait_result (client, msgid, h_ms (timeout_ms), event);
    REQUIRE_MSG (rc != EMQ_ERR_TIMEOUT, "no RESULT for %s within %d ms", msgid,
                 h_ms (timeout_ms));
    REQUIRE_INT (event->type, ==, EMQ_EVENT_RESULT);
    h_log (t, "result %s: %s %.*s", msgid, emq_job_status_name (event->status),
           (int) (event->size > 300 ? 300 : event->size), (const char *) event->data);
}

//  An ok result's value: a msgpack str holding EventMQ's reply JSON.
//  Returns that JSON text (caller frees).
static char *
s_reply (h_test_t *t, emq_client_t *client, const char *msgid)
{
    emq_event_t event;
    s_result (t, client, msgid, 20000, &event);
    REQUIRE_MSG (event.status == EMQ_JOB_OK, "job %s ended %s: %.*s", msgid,
                 emq_job_status_name (event.status), (int) event.size,
                 (const char *) event.data);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    REQUIRE (msgpack_unpack_next (&unpacked, event.data, event.size, NULL)
             == MSGPACK_UNPACK_SUCCESS);
    REQUIRE_INT (unpacked.data.type, ==, MSGPACK_OBJECT_STR);
    char *text = strndup (unpacked.data.via.str.ptr, unpacked.data.via.str.size);
    msgpack_unpacked_destroy (&unpacked);
    return text;
}

static void
s_expect_reply (h_test_t *t, emq_client_t *client, const char *msgid,
                const char *expected)
{
    char *text = s_reply (t, client, msgid);
    REQUIRE_STREQ (text, expected);
    free (text);
}

//  A failed (or other non-ok) result with status `status` whose error
//  contains `needle`.
static void
s_expect_error (h_test_t *t, emq_client_t *client, const char *msgid,
                emq_job_status_t status, const char *needle)
{
    emq_event_t event;
    s_result (t, client, msgid, 20000, &event);
    char *text = strndup (event.data, event.size);
    REQUIRE_MSG (event.status == status, "job %s ended %s, expected %s: %s", msgid,
                 emq_job_status_name (event.status), emq_job_status_name (status), text);
    if (needle)
        REQUIRE_CONTAINS (text, needle);
    free (text);
}

//  The one worker of job manager jm (it runs with concurrent_jobs 1).
static pid_t
s_worker (pid_t jm)
{
    pid_t children[4];
    return h_children (jm, children, 4) == 1 ? children[0] : 0;
}

//  True when process pid has libpython mapped.
static bool
s_has_libpython (pid_t pid)
{
    char path[64], line[512];
    snprintf (path, sizeof path, "/proc/%d/maps", (int) pid);
    FILE *maps = fopen (path, "r");
    bool found = false;
    while (maps && !found && fgets (line, sizeof line, maps))
        found = strstr (line, "libpython") != NULL;
    if (maps)
        fclose (maps);
    return found;
}

//  True when the router lists msgid among its dead jobs.
static bool
s_dead_listed (h_test_t *t, const char *msgid)
{
    char *reply = NULL;
    int rc = emq_admin_job (t->admin, "DEAD_LIST", NULL, h_ms (2000), &reply);
    bool listed = rc == 0 && reply && strstr (reply, msgid);
    free (reply);
    return listed;
}

//  ---------------------------------------------------------------------
//  Module functions, Class.method, values, exceptions, the allow-list

static void
test_python_jobs (h_test_t *t)
{
    pid_t jm = s_start (t, "emqtest_*", NULL, NULL, NULL, NULL);
    //  A narrowed allow-list: no warning about '*'.
    REQUIRE_INT (h_log_count (t, "jm", "python_allow is '*'"), ==, 0);
    emq_client_t *client = s_client (t);
    char msgid[37];
    emq_submit_opts_t opts = { 0 };

    //  An exec job first: the worker has not loaded libpython for it.
    const char *argv[] = { "/bin/echo", "c", NULL };
    void *payload;
    size_t size;
    h_payload_exec (argv, &payload, &size);
    emq_submit_opts_t exec_opts = { .reply = true };
    REQUIRE_INT (emq_submit (client, &exec_opts, payload, size, msgid, h_ms (5000)), ==,
                 0);
    free (payload);
    emq_event_t event;
    s_result (t, client, msgid, 10000, &event);
    REQUIRE_INT (event.status, ==, EMQ_JOB_OK);
    pid_t worker = s_worker (jm);
    REQUIRE (worker > 0);
    REQUIRE_MSG (!s_has_libpython (worker), "worker %d mapped libpython for an exec job",
                 (int) worker);

    //  A module function: EventMQ's reply JSON, byte for byte.
    s_submit (client, &opts, "emqtest_jobs", "add", "[2, 3]", NULL, NULL, msgid);
    s_expect_reply (t, client, msgid, "{\"value\": 5}");
    REQUIRE (s_has_libpython (worker));
    REQUIRE_INT (s_worker (jm), ==, worker);  // the same worker, kept
    s_submit (client, &opts, "emqtest_jobs", "echo", "[1, \"two\", null]",
              "{\"k\": [1.5, true]}", NULL, msgid);
    s_expect_reply (t, client, msgid,
                    "{\"value\": {\"args\": [1, \"two\", null], \"kwargs\": {\"k\": "
                    "[1.5, true]}}}");
    s_submit (client, &opts, "emqtest_jobs", "nothing", NULL, NULL, NULL, msgid);
    s_expect_reply (t, client, msgid, "{\"value\": null}");
    //  Class.method with class args and kwargs.
    s_submit (client, &opts, "emqtest_jobs:Greeter", "greet", "[\"emq\"]", NULL,
              "[\"Hello\"]", msgid);
    s_expect_reply (t, client, msgid, "{\"value\": \"Hello, emq\"}");
    //  Non-ASCII arguments, \u-escaped as EventMQ's client sends them.
    s_submit (client, &opts, "emqtest_jobs", "echo", "[\"h\\u00e9llo\"]", NULL, NULL,
              msgid);
    s_expect_reply (t, client, msgid,
                    "{\"value\": {\"args\": [\"h\\u00e9llo\"], \"kwargs\": {}}}");

    //  A raising job fails with its traceback; so does a missing module, a
    //  missing function, a bad call and a value JSON cannot hold.
    s_submit (client, &opts, "emqtest_jobs", "boom", "[\"bad input\"]", NULL, NULL,
              msgid);
    s_expect_error (t, client, msgid, EMQ_JOB_FAILED, "ValueError: bad input");
    s_submit (client, &opts, "emqtest_jobs", "boom", "[\"x\"]", NULL, NULL, msgid);
    s_expect_error (t, client, msgid, EMQ_JOB_FAILED,
                    "Traceback (most recent call last)");
    s_submit (client, &opts, "emqtest_missing", "f", NULL, NULL, NULL, msgid);
    s_expect_error (t, client, msgid, EMQ_JOB_FAILED,
                    "No module named 'emqtest_missing'");
    s_submit (client, &opts, "emqtest_jobs", "no_such", NULL, NULL, NULL, msgid);
    s_expect_error (t, client, msgid, EMQ_JOB_FAILED, "AttributeError");
    s_submit (client, &opts, "emqtest_jobs", "add", "[1]", NULL, NULL, msgid);
    s_expect_error (t, client, msgid, EMQ_JOB_FAILED, "TypeError");
    s_submit (client, &opts, "emqtest_jobs", "aset", NULL, NULL, NULL, msgid);
    s_expect_error (t, client, msgid, EMQ_JOB_FAILED, "cannot be encoded as JSON");

    //  Outside the allow-list: refused before anything is imported.
    s_submit (client, &opts, "os", "getcwd", NULL, NULL, NULL, msgid);
    s_expect_error (t, client, msgid, EMQ_JOB_REJECTED,
                    "module os is not allowed (python_allow)");
    //  A malformed python payload is refused with the reason.
    const char *bad = "[\"run\", {\"path\": \"../evil\", \"callable\": \"f\"}]";
    opts.reply = true;
    REQUIRE_INT (emq_submit (client, &opts, bad, strlen (bad), msgid, h_ms (5000)), ==,
                 0);
    s_expect_error (t, client, msgid, EMQ_JOB_REJECTED, "not pkg.module");

    //  emq-cli submit python: the reply JSON printed as EventMQ sends it;
    //  a traceback and exit 1 for a raising job; bad arguments refused.
    h_cli_t r;
    h_cli (t, &r, 20000, "submit", "--wait", "python", "emqtest_jobs:Greeter", "greet",
           "[\"cli\"]", "{}", "[\"Hi\"]", NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli submit python: exit %d (stderr %s)", r.status,
                 r.err);
    REQUIRE_STREQ (r.out, "{\"value\": \"Hi, cli\"}\n");
    h_cli_free (&r);
    h_cli (t, &r, 20000, "submit", "--wait", "python", "emqtest_jobs", "boom",
           "[\"from the cli\"]", NULL);
    REQUIRE_MSG (r.status == 1, "raising job: emq-cli exit %d, expected 1", r.status);
    REQUIRE_CONTAINS (r.err, "ValueError: from the cli");
    h_cli_free (&r);
    h_cli (t, &r, 20000, "submit", "python", "emqtest_jobs", "add", "{\"not\": 1}", NULL);
    REQUIRE_MSG (r.status == 2, "args not an array: emq-cli exit %d, expected 2",
                 r.status);
    REQUIRE_CONTAINS (r.err, "args is not an array");
    h_cli_free (&r);

    //  emq's msgpack form of the same job.
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    const char *strs[] = { "kind", "python", "path", "emqtest_jobs", "callable", "add" };
    for (size_t i = 0; i < 6; i++) {
        msgpack_pack_str (&pk, strlen (strs[i]));
        msgpack_pack_str_body (&pk, strs[i], strlen (strs[i]));
    }
    msgpack_pack_str (&pk, 4);
    msgpack_pack_str_body (&pk, "args", 4);
    msgpack_pack_array (&pk, 2);
    msgpack_pack_int (&pk, 40);
    msgpack_pack_int (&pk, 2);
    REQUIRE_INT (emq_submit (client, &opts, sbuf.data, sbuf.size, msgid, h_ms (5000)), ==,
                 0);
    msgpack_sbuffer_destroy (&sbuf);
    emq_event_t ok;
    s_result (t, client, msgid, 10000, &ok);
    REQUIRE_INT (ok.status, ==, EMQ_JOB_OK);
    //  Resource use comes back as for any job.
    REQUIRE_CONTAINS (ok.usage, "cpu_us=");
    REQUIRE_CONTAINS (ok.usage, "maxrss_kb=");
    //  Every job ran in the one worker: none crashed.
    REQUIRE_INT (s_worker (jm), ==, worker);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  EventMQ's hooks, from an EventMQ config file

static void
test_python_hooks (h_test_t *t)
{
    char conf[PATH_MAX];
    snprintf (conf, sizeof conf, "%s/eventmq.conf", t->dir);
    FILE *file = fopen (conf, "w");
    REQUIRE (file);
    fprintf (file, "[jobmanager]\n"
                   "setup_path = emqtest_hooks\n"
                   "setup_callable = setup\n"
                   "job_entry_func = emqtest_hooks.entry\n"
                   "job_exit_func = emqtest_hooks.exit\n");
    REQUIRE (fclose (file) == 0);
    //  A module found only through PYTHONPATH, honoured as EventMQ does.
    char module[PATH_MAX + 32], extra[PATH_MAX];
    snprintf (extra, sizeof extra, "%s/extra", t->dir);
    REQUIRE (mkdir (extra, 0700) == 0);
    snprintf (module, sizeof module, "%s/emqtest_env.py", extra);
    file = fopen (module, "w");
    REQUIRE (file);
    fprintf (file, "def where():\n    return 'found through PYTHONPATH'\n");
    REQUIRE (fclose (file) == 0);
    setenv ("PYTHONPATH", extra, 1);
    //  Workers are recycled after two jobs: the third runs in a new one.
    pid_t jm = s_start (t, "*", "--config", conf, "--max-job-count", "2");
    //  The default allow-list is EventMQ's, said at start.
    REQUIRE_WAIT (h_log_count (t, "jm", "python_allow is '*'") == 1, 5000);
    emq_client_t *client = s_client (t);
    emq_submit_opts_t opts = { 0 };
    char msgid[37];
    s_submit (client, &opts, "emqtest_hooks", "events", NULL, NULL, NULL, msgid);
    s_expect_reply (t, client, msgid, "{\"value\": [\"setup\", \"entry\"]}");
    pid_t first = s_worker (jm);  // one job done: it stays for one more
    REQUIRE (first > 0);
    s_submit (client, &opts, "emqtest_hooks", "events", NULL, NULL, NULL, msgid);
    s_expect_reply (t, client, msgid,
                    "{\"value\": [\"setup\", \"entry\", \"exit\", \"entry\"]}");
    //  A fresh worker: a fresh interpreter, set up again.
    REQUIRE_WAIT (s_worker (jm) > 0 && s_worker (jm) != first, 5000);
    s_submit (client, &opts, "emqtest_hooks", "events", NULL, NULL, NULL, msgid);
    s_expect_reply (t, client, msgid, "{\"value\": [\"setup\", \"entry\"]}");
    s_submit (client, &opts, "emqtest_env", "where", NULL, NULL, NULL, msgid);
    s_expect_reply (t, client, msgid, "{\"value\": \"found through PYTHONPATH\"}");
    emq_client_destroy (&client);
}

//  A setup hook that raises is logged and the worker goes on, as EventMQ's
//  does; an entry hook that does not exist fails the job and replaces the
//  worker.
static void
test_python_bad_hooks (h_test_t *t)
{
    pid_t jm = s_start (t, "*", "--python-setup", "emqtest_jobs:abortive",
                        "--python-job-exit", "emqtest_jobs.no_such_hook");
    emq_client_t *client = s_client (t);
    emq_submit_opts_t opts = { 0 };
    char msgid[37];
    pid_t first = 0;
    REQUIRE_WAIT ((first = s_worker (jm)) > 0, 5000);
    s_submit (client, &opts, "emqtest_jobs", "add", "[1, 1]", NULL, NULL, msgid);
    s_expect_error (t, client, msgid, EMQ_JOB_FAILED, "no_such_hook");
    REQUIRE_WAIT (s_worker (jm) > 0 && s_worker (jm) != first, 5000);
    emq_client_destroy (&client);
}

static void
test_python_setup_raises (h_test_t *t)
{
    s_start (t, "*", "--python-setup", "emqtest_jobs.boom", NULL, NULL);
    emq_client_t *client = s_client (t);
    emq_submit_opts_t opts = { 0 };
    char msgid[37];
    s_submit (client, &opts, "emqtest_jobs", "add", "[1, 1]", NULL, NULL, msgid);
    s_expect_reply (t, client, msgid, "{\"value\": 2}");
    REQUIRE_WAIT (h_log_count (t, "jm", "python_setup emqtest_jobs.boom raised") == 1,
                  5000);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  Timeout, cancel, crash, retry, dead

static void
test_python_kill (h_test_t *t)
{
    pid_t jm = s_start (t, "emqtest_*", NULL, NULL, NULL, NULL);
    emq_client_t *client = s_client (t);
    char msgid[37];

    //  An endless loop with timeout:1 is killed, its worker replaced.
    emq_submit_opts_t opts = { .timeout_s = 1 };
    int64_t start = clock_mono_ms ();
    s_submit (client, &opts, "emqtest_jobs", "forever", NULL, NULL, NULL, msgid);
    pid_t worker = 0;
    REQUIRE_WAIT ((worker = h_jm_job_pid (t, "jm", msgid)) > 0, 5000);
    s_expect_error (t, client, msgid, EMQ_JOB_TIMEOUT, NULL);
    REQUIRE_INT (clock_mono_ms () - start, <, h_ms (5000));
    REQUIRE_WAIT (!h_pid_alive (worker), 3000);

    //  Cancel an endless loop: cancelled, its worker gone.
    opts = (emq_submit_opts_t){ 0 };
    s_submit (client, &opts, "emqtest_jobs", "forever", NULL, NULL, NULL, msgid);
    REQUIRE_WAIT ((worker = h_jm_job_pid (t, "jm", msgid)) > 0, 5000);
    char *reply = NULL;
    REQUIRE_INT (emq_admin_job (t->admin, "CANCEL", msgid, h_ms (5000), &reply), ==, 0);
    free (reply);
    s_expect_error (t, client, msgid, EMQ_JOB_CANCELLED, NULL);
    REQUIRE_WAIT (!h_pid_alive (worker), 3000);

    //  The interpreter crashes (os.abort): the job crashed, retried once,
    //  crashed again, and is dead; a new worker serves the next job.
    opts = (emq_submit_opts_t){ .retries = 1 };
    s_submit (client, &opts, "emqtest_jobs", "abort", NULL, NULL, NULL, msgid);
    s_expect_error (t, client, msgid, EMQ_JOB_CRASHED, NULL);
    REQUIRE_WAIT (s_dead_listed (t, msgid), 10000);

    //  A segfault inside the interpreter (ctypes): crashed, worker replaced.
    pid_t before = 0;
    REQUIRE_WAIT ((before = s_worker (jm)) > 0, 5000);
    opts = (emq_submit_opts_t){ 0 };
    s_submit (client, &opts, "emqtest_jobs", "segfault", NULL, NULL, NULL, msgid);
    s_expect_error (t, client, msgid, EMQ_JOB_CRASHED, NULL);
    REQUIRE_WAIT (s_worker (jm) > 0 && s_worker (jm) != before, 5000);

    //  A job that fails on its first attempt succeeds on its retry.
    opts = (emq_submit_opts_t){ .retries = 2 };
    s_submit (client, &opts, "emqtest_jobs", "flaky", "[\"flaky.marker\"]", NULL, NULL,
              msgid);
    s_expect_reply (t, client, msgid, "{\"value\": \"second attempt\"}");
    REQUIRE_WAIT (s_worker (jm) > 0, 3000);
    emq_client_destroy (&client);
}

//  max_worker_rss_kb recycles a worker that a python job left too big.
static void
test_python_rss (h_test_t *t)
{
    pid_t jm = s_start (t, "emqtest_*", "--max-worker-rss-kb", "120000", NULL, NULL);
    emq_client_t *client = s_client (t);
    emq_submit_opts_t opts = { 0 };
    char msgid[37];
    s_submit (client, &opts, "emqtest_jobs", "add", "[1, 2]", NULL, NULL, msgid);
    s_expect_reply (t, client, msgid, "{\"value\": 3}");
    pid_t small = s_worker (jm);
    REQUIRE (small > 0);
    s_submit (client, &opts, "emqtest_jobs", "add", "[2, 2]", NULL, NULL, msgid);
    s_expect_reply (t, client, msgid, "{\"value\": 4}");
    REQUIRE_INT (s_worker (jm), ==, small);  // an interpreter alone is below the limit
    s_submit (client, &opts, "emqtest_jobs", "hog", "[160]", NULL, NULL, msgid);
    s_expect_reply (t, client, msgid, "{\"value\": 1}");
    REQUIRE_WAIT (s_worker (jm) > 0 && s_worker (jm) != small, 5000);
    emq_client_destroy (&client);
}

const h_testdef_t h_python_tests[] = {
    { "python_jobs", test_python_jobs,
      "python jobs: functions, Class.method, values, tracebacks, allow-list" },
    { "python_hooks", test_python_hooks, "EventMQ's hooks from its config file" },
    { "python_bad_hooks", test_python_bad_hooks,
      "a python hook that cannot be found fails the job, replaces the worker" },
    { "python_setup_raises", test_python_setup_raises,
      "a raising python setup hook is logged, jobs go on (EventMQ's way)" },
    { "python_rss", test_python_rss,
      "a python job past max_worker_rss_kb: worker recycled" },
    { "python_kill", test_python_kill,
      "python jobs: timeout kill, cancel, interpreter crash, retry, dead" },
};
const size_t h_python_count = sizeof h_python_tests / sizeof h_python_tests[0];
