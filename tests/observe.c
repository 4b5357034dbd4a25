/*  observe — integration tests of what an operator watches: the router's
    event stream (its order, for real jobs through real job managers) and
    emq-cli events; STATUS's monitoring figures (per-queue scheduled,
    retrying and dead, latency histograms, the process); emq-cli top.
    emq-web's /metrics and dashboard are tested in a real browser by
    tests/web_test.py.
*/
#include "harness.h"

#include "curve.h"

#include <signal.h>
#include <string.h>

#define DEFAULT_Q "[[10,\"default\"]]"

//  A SUB socket on the test's event stream, subscribed to everything.
static zsock_t *
s_subscriber (const char *endpoint)
{
    zsock_t *sub = zsock_new_sub (endpoint, "");
    REQUIRE_MSG (sub != NULL, "cannot subscribe to %s", endpoint);
    return sub;
}

//  The next event within timeout_ms (scaled): its JSON, or NULL. The topic
//  frame must say the event's kind.
static json_t *
s_next_event (zsock_t *sub, int timeout_ms)
{
    zmsg_t *msg = h_recv_raw (sub, h_ms (timeout_ms));
    if (!msg)
        return NULL;
    REQUIRE_INT (zmsg_size (msg), ==, 2);
    char *topic = zmsg_popstr (msg), *body = zmsg_popstr (msg);
    zmsg_destroy (&msg);
    json_t *event = json_loads (body ? body : "", 0, NULL);
    REQUIRE_MSG (json_is_object (event), "event is not a JSON object: %s", body);
    const char *kind = json_string_value (json_object_get (event, "kind"));
    REQUIRE_MSG (kind, "no kind in %s", body);
    char expected[64];
    snprintf (expected, sizeof expected, "%s.%s",
              json_object_get (event, "msgid") ? "job" : "jobmanager", kind);
    REQUIRE_STREQ (topic, expected);
    free (topic);
    free (body);
    return event;
}

//  Submits to an unserved queue until its "queued" event arrives: then the
//  subscription is in place (PUB drops what it publishes before that).
static void
s_wait_subscribed (h_test_t *t, zsock_t *sub, emq_client_t *client)
{
    int64_t deadline = clock_mono_ms () + h_ms (10000);
    while (clock_mono_ms () < deadline) {
        char msgid[37];
        h_submit_run (client, "probe", "noop", NULL, 0, msgid);
        json_t *event;
        while ((event = s_next_event (sub, 100))) {
            const char *queue = json_string_value (json_object_get (event, "queue"));
            bool seen = queue && streq (queue, "probe");
            json_decref (event);
            if (seen)
                return;
        }
    }
    h_fail (__FILE__, __LINE__, "no event from %s/events within 10 s", t->dir);
}

typedef struct {
    char msgid[37];
    char kinds[256];  // "queued started done"
} s_trail_t;

static void
s_trail_add (s_trail_t *trails, size_t count, json_t *event)
{
    const char *msgid = json_string_value (json_object_get (event, "msgid"));
    for (size_t i = 0; msgid && i < count; i++)
        if (streq (trails[i].msgid, msgid)) {
            size_t len = strlen (trails[i].kinds);
            snprintf (trails[i].kinds + len, sizeof trails[i].kinds - len, "%s%s",
                      len ? " " : "",
                      json_string_value (json_object_get (event, "kind")));
        }
}

//  1. The stream, in order, for a job that succeeds, one that fails and is
//  retried into dead, one that fails for good, one delayed and cancelled;
//  job managers joining and leaving.
static void
test_events (h_test_t *t)
{
    char events[H_PATH_MAX + 16];
    snprintf (events, sizeof events, "ipc://%s/events", t->dir);
    h_router (t, "router", "--events", events, "--retry-backoff", "0.05", NULL);
    zsock_t *sub = s_subscriber (events);
    emq_client_t *client = emq_client_new (t->frontend);
    REQUIRE (client);
    s_wait_subscribed (t, sub, client);

    pid_t jm = h_jm (t, "jm", DEFAULT_Q, 2, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    json_t *event = NULL;
    do {
        json_decref (event);
        event = s_next_event (sub, 5000);
        REQUIRE_MSG (event, "no jobmanager.joined event");
    } while (!streq (json_string_value (json_object_get (event, "kind")), "joined"));
    REQUIRE_CONTAINS (json_string_value (json_object_get (event, "jobmanager")), "jm-");
    REQUIRE_CONTAINS (json_string_value (json_object_get (event, "queues")), "default");
    json_decref (event);

    s_trail_t trails[4] = { 0 };
    h_submit_run (client, "default", "upper", "\"x\"", 0, trails[0].msgid);
    h_cli_t r;
    h_cli (t, &r, 10000, "submit", "--retries", "1", "run", H_PLUGIN, "fail", NULL);
    REQUIRE_MSG (r.status == 0, "submit: %s", r.err);
    snprintf (trails[1].msgid, sizeof trails[1].msgid, "%s", h_chomp (r.out));
    h_cli_free (&r);
    h_submit_run (client, "default", "fail", NULL, 0, trails[2].msgid);
    h_cli (t, &r, 10000, "submit", "--delay", "60", "run", H_PLUGIN, "noop", NULL);
    REQUIRE_MSG (r.status == 0, "submit: %s", r.err);
    snprintf (trails[3].msgid, sizeof trails[3].msgid, "%s", h_chomp (r.out));
    h_cli_free (&r);

    //  Every event of these jobs, until each has ended; seq only grows.
    long long last_seq = 0;
    size_t ended = 0;
    bool cancel_sent = false;
    int64_t deadline = clock_mono_ms () + h_ms (20000);
    while (ended < 4 && clock_mono_ms () < deadline) {
        event = s_next_event (sub, 500);
        if (!event)
            continue;
        long long seq = h_jint (event, -1, "seq", NULL);
        REQUIRE_MSG (seq > last_seq, "seq %lld after %lld", seq, last_seq);
        last_seq = seq;
        const char *kind = json_string_value (json_object_get (event, "kind"));
        const char *msgid = json_string_value (json_object_get (event, "msgid"));
        s_trail_add (trails, 4, event);
        if (streq (kind, "done") || streq (kind, "dead") || streq (kind, "failed")
            || streq (kind, "cancelled"))
            ended++;
        if (streq (kind, "started")) {
            REQUIRE_CONTAINS (json_string_value (json_object_get (event, "jobmanager")),
                              "jm-");
            REQUIRE_INT (h_jint (event, -1, "wait_ms", NULL), >=, 0);
        }
        if (streq (kind, "retried")) {
            REQUIRE_STREQ (json_string_value (json_object_get (event, "error")),
                           "failed on purpose");
            REQUIRE_INT (h_jint (event, -1, "retries_left", NULL), ==, 0);
            REQUIRE_INT (h_jint (event, -1, "attempt", NULL), ==, 1);
        }
        if (streq (kind, "dead"))
            REQUIRE_INT (h_jint (event, -1, "attempt", NULL), ==, 2);
        if (streq (kind, "scheduled") && msgid && streq (msgid, trails[3].msgid)
            && !cancel_sent) {
            h_cli (t, &r, 10000, "cancel", trails[3].msgid, NULL);
            REQUIRE_MSG (r.status == 0, "cancel: %s", r.err);
            h_cli_free (&r);
            cancel_sent = true;
        }
        json_decref (event);
    }
    REQUIRE_STREQ (trails[0].kinds, "queued started done");
    REQUIRE_STREQ (trails[1].kinds, "queued started retried queued started dead");
    REQUIRE_STREQ (trails[2].kinds, "queued started failed");
    REQUIRE_STREQ (trails[3].kinds, "scheduled cancelled");

    //  The job manager leaves.
    h_kill (t, jm, SIGTERM, false);
    do {
        event = s_next_event (sub, 10000);
        REQUIRE_MSG (event, "no jobmanager.left event");
        bool left = streq (json_string_value (json_object_get (event, "kind")), "left");
        if (left)
            REQUIRE_CONTAINS (json_string_value (json_object_get (event, "jobmanager")),
                              "jm-");
        json_decref (event);
        if (left)
            break;
    } while (true);
    emq_client_destroy (&client);
    zsock_destroy (&sub);
}

//  2. emq-cli events: --queue and --kind filter, --json prints the events,
//  --count ends it.
static void
test_cli_events (h_test_t *t)
{
    char events[H_PATH_MAX + 16];
    snprintf (events, sizeof events, "ipc://%s/events", t->dir);
    h_router (t, "router", "--events", events, NULL);
    const char *args[] = {
        "events", "--events-addr", events, "--json", "--queue", "watched", "--kind",
        "queued", "--count",       "2",    "--for",  "20",      NULL
    };
    pid_t cli = h_spawn (t, "events", false, "emq-cli", args);
    emq_client_t *client = emq_client_new (t->frontend);
    REQUIRE (client);
    //  Jobs for a queue it filters out, and for its own, until it has two
    //  (it misses those before its subscription is in place).
    int status = -1;
    int64_t deadline = clock_mono_ms () + h_ms (20000);
    while (h_pid_alive (cli) && clock_mono_ms () < deadline) {
        char msgid[37];
        h_submit_run (client, "ignored", "noop", NULL, 0, msgid);
        h_submit_run (client, "watched", "noop", NULL, 0, msgid);
        h_proc_wait (t, cli, 100, &status);
    }
    REQUIRE (h_proc_wait (t, cli, 5000, &status));
    REQUIRE_MSG (WIFEXITED (status) && WEXITSTATUS (status) == 0, "emq-cli events: %d",
                 status);
    REQUIRE_INT (h_log_count (t, "events", "\"kind\":\"queued\""), ==, 2);
    REQUIRE_INT (h_log_count (t, "events", "\"queue\":\"watched\""), ==, 2);
    REQUIRE_INT (h_log_count (t, "events", "ignored"), ==, 0);

    //  Bad input: an unknown kind is a usage error.
    h_cli_t r;
    h_cli (t, &r, 10000, "events", "--kind", "exploded", NULL);
    REQUIRE_INT (r.status, ==, 2);
    REQUIRE_CONTAINS (r.err, "not an event kind");
    h_cli_free (&r);
    //  Nothing within --for with --count: exit 6.
    h_cli (t, &r, 10000, "events", "--events-addr", events, "--queue", "none", "--count",
           "1", "--for", "0.3", NULL);
    REQUIRE_INT (r.status, ==, 6);
    h_cli_free (&r);
    emq_client_destroy (&client);
}

//  3. STATUS's monitoring figures: scheduled, retrying and dead per queue,
//  latency histograms, commit times, the router's process; emq-cli top.
static void
test_status_metrics (h_test_t *t)
{
    h_router (t, "router", "--retry-backoff", "3", NULL);
    h_jm (t, "jm", DEFAULT_Q, 2, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    h_cli_t r;
    for (int i = 0; i < 3; i++) {
        h_cli (t, &r, 20000, "submit", "--wait", "run", H_PLUGIN, "upper", "\"a\"", NULL);
        REQUIRE_MSG (r.status == 0, "submit: %s", r.err);
        h_cli_free (&r);
    }
    h_cli (t, &r, 10000, "submit", "--delay", "1h", "run", H_PLUGIN, "noop", NULL);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "submit", "--retries", "1", "run", H_PLUGIN, "fail", NULL);
    h_cli_free (&r);
    //  Backing off for 1.5..3 s: retrying.
    json_t *status = NULL;
    REQUIRE_WAIT ((json_decref (status), status = h_admin (t, "STATUS"),
                   h_jint (status, -1, "queues", "default", "retrying", NULL) == 1),
                  5000);
    REQUIRE_INT (h_jint (status, -1, "queues", "default", "scheduled", NULL), ==, 1);
    REQUIRE_INT (h_jint (status, -1, "metrics", "wait_seconds", "default", "count", NULL),
                 ==, 4);
    REQUIRE_INT (h_jint (status, -1, "metrics", "run_seconds", "default", "count", NULL),
                 ==, 4);
    REQUIRE_INT (h_jint (status, -1, "metrics", "commit_seconds", "count", NULL), >, 0);
    REQUIRE_INT (h_jint (status, -1, "metrics", "process", "rss_bytes", NULL), >,
                 1000000);
    REQUIRE_INT (h_jint (status, -1, "metrics", "process", "open_fds", NULL), >, 3);
    json_t *buckets =
        h_jget (status, "metrics", "wait_seconds", "default", "buckets", NULL);
    REQUIRE (json_is_array (buckets) && json_array_size (buckets) == 15);
    long long previous = 0;
    for (size_t i = 0; i < json_array_size (buckets); i++) {
        long long cumulative =
            json_integer_value (json_array_get (json_array_get (buckets, i), 1));
        REQUIRE_INT (cumulative, >=, previous);
        previous = cumulative;
    }
    REQUIRE_INT (previous, ==, 4);

    //  emq-cli top --once shows the queue's figures and the job manager.
    h_cli (t, &r, 10000, "top", "--once", NULL);
    REQUIRE_MSG (r.status == 0, "top: %s", r.err);
    REQUIRE_CONTAINS (r.out, "RETRYING");
    REQUIRE_CONTAINS (r.out, "default");
    REQUIRE_CONTAINS (r.out, "jm-");
    h_cli_free (&r);

    //  Then it is dead, and counted so.
    REQUIRE_WAIT ((json_decref (status), status = h_admin (t, "STATUS"),
                   h_jint (status, -1, "queues", "default", "dead", NULL) == 1),
                  10000);
    REQUIRE_INT (h_jint (status, -1, "queues", "default", "retrying", NULL), ==, 0);
    REQUIRE_INT (h_jint (status, -1, "dead_by_queue", "default", NULL), ==, 1);
    json_decref (status);
}

//  4. DEAD_DELETE (emq-cli dead delete, the dashboard's Delete): one dead
//  job leaves the dead list, the others stay; its error is still fetched;
//  a job that is not dead is NOT_FOUND (exit 8).
static void
test_dead_delete (h_test_t *t)
{
    pid_t router = h_router (t, "router", "--retry-backoff", "0.05", NULL);
    h_jm (t, "jm", DEFAULT_Q, 2, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    char ids[2][64];
    h_cli_t r;
    for (int i = 0; i < 2; i++) {
        h_cli (t, &r, 10000, "submit", "--retries", "1", "run", H_PLUGIN, "fail", NULL);
        REQUIRE_MSG (r.status == 0, "submit: %s", r.err);
        snprintf (ids[i], sizeof ids[i], "%s", h_chomp (r.out));
        h_cli_free (&r);
    }
    json_t *status = NULL;
    REQUIRE_WAIT ((json_decref (status), status = h_admin (t, "STATUS"),
                   h_jint (status, -1, "store", "dead", NULL) == 2),
                  10000);
    json_decref (status);
    h_cli (t, &r, 10000, "dead", "delete", ids[0], NULL);
    REQUIRE_MSG (r.status == 0, "dead delete: %d %s", r.status, r.err);
    REQUIRE_STREQ (h_chomp (r.out), "deleted 1 dead job");
    h_cli_free (&r);
    h_cli (t, &r, 10000, "dead", "--json", NULL);
    REQUIRE_MSG (r.status == 0, "dead: %s", r.err);
    REQUIRE (strstr (r.out, ids[0]) == NULL);
    REQUIRE_CONTAINS (r.out, ids[1]);
    REQUIRE_CONTAINS (r.out, "\"total\":1");
    h_cli_free (&r);
    //  Its outcome is still there (until result_ttl).
    h_cli (t, &r, 10000, "result", ids[0], NULL);
    REQUIRE_CONTAINS (r.err, "failed on purpose");
    h_cli_free (&r);
    //  Not dead any more, never known, bad input.
    h_cli (t, &r, 10000, "dead", "delete", ids[0], NULL);
    REQUIRE_INT (r.status, ==, 8);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "dead", "delete", "no-such-job", NULL);
    REQUIRE_INT (r.status, ==, 8);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "dead", "delete", NULL);
    REQUIRE_INT (r.status, ==, 2);
    h_cli_free (&r);
    REQUIRE_INT (h_jint (status = h_admin (t, "STATUS"), -1, "store", "dead", NULL), ==,
                 1);
    REQUIRE_INT (h_jint (status, -1, "queues", "default", "dead", NULL), ==, 1);
    json_decref (status);
    //  A new router counts the dead jobs per queue from the store.
    h_kill (t, router, SIGTERM, false);
    REQUIRE (h_proc_wait (t, router, 10000, NULL));
    h_router (t, "router2", NULL);
    status = h_admin (t, "STATUS");
    REQUIRE_INT (h_jint (status, -1, "dead_by_queue", "default", NULL), ==, 1);
    json_decref (status);
}

//  5. With CURVE the stream is encrypted like every other socket: emq-cli
//  events with the router's public key gets the events, a plain SUB
//  nothing.
static void
test_events_curve (h_test_t *t)
{
    char router[300], router_secret[310], events[H_PATH_MAX + 16], err[512];
    snprintf (router, sizeof router, "%.200s/router", t->dir);
    snprintf (router_secret, sizeof router_secret, "%s_secret", router);
    REQUIRE_MSG (curve_keygen (router, "client", err, sizeof err) == 0, "keygen: %s",
                 err);
    snprintf (events, sizeof events, "ipc://%s/events", t->dir);
    //  This process (STATUS, submits) and emq-cli use fresh keys: the router
    //  admits any key without a clients directory.
    REQUIRE_MSG (emq_set_curve (router, "", err, sizeof err) == 0, "curve: %s", err);
    setenv ("EMQ_CURVE_SERVER_KEY", router, 1);
    h_router (t, "router", "--curve-secret-cert", router_secret, "--events", events,
              NULL);
    zsock_t *plain = s_subscriber (events);
    const char *args[] = { "events",  "--events-addr", events, "--json", "--queue",
                           "watched", "--count",       "1",    "--for",  "20",
                           NULL };
    pid_t cli = h_spawn (t, "events", false, "emq-cli", args);
    emq_client_t *client = emq_client_new (t->frontend);
    REQUIRE (client);
    int status = -1;
    int64_t deadline = clock_mono_ms () + h_ms (20000);
    while (h_pid_alive (cli) && clock_mono_ms () < deadline) {
        char msgid[37];
        h_submit_run (client, "watched", "noop", NULL, 0, msgid);
        zmsg_t *leak = h_recv_raw (plain, 100);
        REQUIRE_MSG (leak == NULL, "a SUB without CURVE received an event");
    }
    REQUIRE (h_proc_wait (t, cli, 5000, &status));
    REQUIRE_MSG (WIFEXITED (status) && WEXITSTATUS (status) == 0, "emq-cli events: %d",
                 status);
    REQUIRE_INT (h_log_count (t, "events", "\"queue\":\"watched\""), ==, 1);
    unsetenv ("EMQ_CURVE_SERVER_KEY");
    emq_client_destroy (&client);
    zsock_destroy (&plain);
}

const h_testdef_t h_observe_tests[] = {
    { "events", test_events,
      "event stream in order: done, retried into dead, failed, "
      "cancelled; job managers joined and left" },
    { "cli_events", test_cli_events,
      "emq-cli events filters by queue and kind, --json, "
      "--count, --for" },
    { "status_metrics", test_status_metrics,
      "STATUS scheduled/retrying/dead per queue, "
      "histograms, process; emq-cli top" },
    { "dead_delete", test_dead_delete,
      "DEAD_DELETE: one dead job deleted, its result kept; not dead: NOT_FOUND" },
    { "events_curve", test_events_curve,
      "with CURVE the event stream reaches a keyed subscriber only" },
};
const size_t h_observe_count = sizeof h_observe_tests / sizeof h_observe_tests[0];
