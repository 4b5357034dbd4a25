/*  scheduler_test — integration tests of emq-scheduler: real emq-router,
    emq-jobmanager and emq-scheduler processes (and a real etcd when the
    etcd binary is installed) in a fresh temp directory per test. See
    harness.h.

        scheduler [-v] [-k] [-l] [-t NAME]...

    Fires are counted where they end up: the router's own job table
    (<dir>/data/emq.db), one row per msgid sched:<name>:<fire_unix_ts>. The
    router holds a msgid at most once, so the rows are the distinct fire
    times that reached it; the tests check that they are on the schedule's
    grid, without gaps where one scheduler or another was leading, and that
    a deposed leader sent nothing.
*/
#include "harness.h"
#include "numparse.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define S_MAX_FIRES 512

typedef struct {
    int64_t ts[S_MAX_FIRES];      // fire times, ascending
    double created[S_MAX_FIRES];  // when the router stored each (unix s)
    char headers[S_MAX_FIRES][128];
    size_t count;
} s_fires_t;

//  Reads the fires of schedule `name` from the router's job table.
static void
s_fires (h_test_t *t, const char *name, s_fires_t *out)
{
    memset (out, 0, sizeof *out);
    char path[H_PATH_MAX + 32];
    snprintf (path, sizeof path, "%s/data/emq.db", t->dir);
    sqlite3 *db = NULL;
    if (sqlite3_open_v2 (path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close (db);
        return;
    }
    sqlite3_busy_timeout (db, 2000);
    char like[160];
    snprintf (like, sizeof like, "sched:%s:%%", name);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2 (db,
                            "SELECT msgid, created_at, headers FROM jobs WHERE msgid "
                            "LIKE ?",
                            -1, &st, NULL)
        == SQLITE_OK) {
        sqlite3_bind_text (st, 1, like, -1, SQLITE_STATIC);
        while (sqlite3_step (st) == SQLITE_ROW && out->count < S_MAX_FIRES) {
            const char *msgid = (const char *) sqlite3_column_text (st, 0);
            const char *colon = strrchr (msgid, ':');
            size_t i = out->count++;
            out->ts[i] = strtoll (colon + 1, NULL, 10);
            out->created[i] = sqlite3_column_double (st, 1);
            snprintf (out->headers[i], sizeof out->headers[i], "%s",
                      (const char *) sqlite3_column_text (st, 2));
        }
    }
    sqlite3_finalize (st);
    sqlite3_close (db);
    //  Sort by fire time (insertion order is nearly sorted).
    for (size_t i = 1; i < out->count; i++)
        for (size_t j = i; j > 0 && out->ts[j - 1] > out->ts[j]; j--) {
            int64_t ts = out->ts[j];
            out->ts[j] = out->ts[j - 1];
            out->ts[j - 1] = ts;
            double c = out->created[j];
            out->created[j] = out->created[j - 1];
            out->created[j - 1] = c;
            char h[128];
            memcpy (h, out->headers[j], sizeof h);
            memcpy (out->headers[j], out->headers[j - 1], sizeof h);
            memcpy (out->headers[j - 1], h, sizeof h);
        }
}

static size_t
s_fire_count (h_test_t *t, const char *name)
{
    s_fires_t fires;
    s_fires (t, name, &fires);
    return fires.count;
}

//  Starts an emq-scheduler on the test's router with short heartbeats and
//  the extra arguments (NULL-terminated).
static pid_t
s_scheduler (h_test_t *t, const char *tag, ...)
{
    const char *args[64];
    size_t argc = 0;
    static char data_dir[H_PATH_MAX + 16];
    snprintf (data_dir, sizeof data_dir, "%s/sdata", t->dir);
    args[argc++] = "--router";
    args[argc++] = t->frontend;
    args[argc++] = "--admin";
    args[argc++] = t->admin;
    args[argc++] = "--heartbeat-interval";
    args[argc++] = "0.2";
    args[argc++] = "--heartbeat-timeout";
    args[argc++] = "0.5";
    args[argc++] = "--heartbeat-liveness";
    args[argc++] = "3";
    args[argc++] = "--log-level";
    args[argc++] = t->verbose ? "debug" : "info";
    bool has_dir = false;
    va_list ap;
    va_start (ap, tag);
    const char *arg;
    while ((arg = va_arg (ap, const char *)) && argc < 60) {
        if (streq (arg, "--etcd"))
            has_dir = true;  // etcd mode: no data directory
        args[argc++] = arg;
    }
    va_end (ap);
    if (!has_dir) {
        args[argc++] = "--data-dir";
        args[argc++] = data_dir;
    }
    args[argc] = NULL;
    return h_spawn (t, tag, false, "emq-scheduler", args);
}

//  The schedulers' reports: connected_schedulers (new reference) or NULL.
static json_t *
s_schedulers (h_test_t *t)
{
    json_t *root = h_admin (t, "ROUTER_SHOW_SCHEDULERS");
    json_t *connected = json_incref (json_object_get (root, "connected_schedulers"));
    json_decref (root);
    return connected;
}

//  The pid of the scheduler that reports it leads (and holds `name`, when
//  name is not NULL), or 0.
static pid_t
s_leader (h_test_t *t, const char *name)
{
    json_t *connected = s_schedulers (t);
    pid_t pid = 0;
    const char *key;
    json_t *value;
    json_object_foreach (connected, key, value)
    {
        json_t *stats = json_object_get (value, "stats");
        if (!json_is_true (json_object_get (stats, "leader")))
            continue;
        bool has = !name;
        size_t i;
        json_t *s;
        json_array_foreach (
            json_object_get (stats, "schedules"), i,
            s) if (name && streq (json_string_value (json_object_get (s, "name")), name))
            has = true;
        //  A report from a process that is gone can linger at the router
        //  until it drops that scheduler.
        pid_t p = (pid_t) json_integer_value (json_object_get (stats, "pid"));
        if (has && h_pid_alive (p))
            pid = p;
    }
    json_decref (connected);
    return pid;
}

//  The fencing token the scheduler with that pid reports, or 0.
static uint64_t
s_fence_of (h_test_t *t, pid_t pid)
{
    json_t *connected = s_schedulers (t);
    uint64_t fence = 0;
    const char *key;
    json_t *value;
    json_object_foreach (connected, key, value)
    {
        json_t *stats = json_object_get (value, "stats");
        if ((pid_t) json_integer_value (json_object_get (stats, "pid")) == pid)
            fence = (uint64_t) json_integer_value (json_object_get (stats, "fence"));
    }
    json_decref (connected);
    return fence;
}

//  Sends SCHEDULE as EventMQ's client does (no wait for the answer): an
//  exec /bin/true job every interval_s seconds, named `name`.
static void
s_schedule (h_test_t *t, const char *name, int interval_s, const char *extra)
{
    zsock_t *dealer = h_dealer (t->frontend, NULL);
    REQUIRE (dealer != NULL);
    const char *argv[] = { "/bin/true", NULL };
    void *payload;
    size_t size;
    h_payload_exec (argv, &payload, &size);
    emqp_msg_t *msg = emqp_msg_new (EMQP_SCHEDULE);
    char headers[256];
    snprintf (headers, sizeof headers, "name:%s%s%s", name, extra ? "," : "",
              extra ? extra : "");
    msg->queue = strdup ("default");
    msg->headers = strdup (headers);
    msg->interval_s = interval_s;
    msg->payload = zframe_new (payload, size);
    msg->cron = strdup ("");
    free (payload);
    //  Wait for the connection, then send (a DEALER queues until connected).
    zsock_set_linger (dealer, 2000);
    REQUIRE_INT (emqp_send (&msg, dealer), ==, 0);
    //  The router's answer (ACK or ERROR) is not awaited: EventMQ's client
    //  does not either. The schedule shows in the leader's report.
    zsock_destroy (&dealer);
}

static size_t
s_scheduler_count (h_test_t *t)
{
    json_t *connected = s_schedulers (t);
    size_t count = json_object_size (connected);
    json_decref (connected);
    return count;
}

static void
s_wait_scheduler_registered (h_test_t *t, int count)
{
    REQUIRE_WAIT (s_scheduler_count (t) >= (size_t) count, 10000);
}

//  Fire times must be consecutive grid points from the first to the last.
static void
s_check_grid (h_test_t *t, const s_fires_t *fires, int interval_s, const char *what)
{
    for (size_t i = 1; i < fires->count; i++)
        REQUIRE_MSG (fires->ts[i] - fires->ts[i - 1] == interval_s,
                     "%s: fire %zu at %" PRId64 " follows %" PRId64 " (interval %d)",
                     what, i, fires->ts[i], fires->ts[i - 1], interval_s);
    h_log (t, "%s: %zu fires %" PRId64 "..%" PRId64 " on the grid", what, fires->count,
           fires->count ? fires->ts[0] : 0,
           fires->count ? fires->ts[fires->count - 1] : 0);
}

//  ---------------------------------------------------------------------
//  Tests

//  A 1 s interval fires on time for ~10 s: one fire per second, each
//  stored by the router within a fraction of a second of its fire time.
static void
test_interval_no_drift (h_test_t *t)
{
    h_router (t, "router", NULL);
    h_jm (t, "jm", "[[10,\"default\"]]", 2, NULL);
    s_scheduler (t, "sched", NULL);
    s_wait_scheduler_registered (t, 1);
    s_schedule (t, "tick", 1, NULL);
    REQUIRE_WAIT (s_fire_count (t, "tick") >= 1, 5000);
    REQUIRE_WAIT (s_fire_count (t, "tick") >= 11, 15000);
    s_fires_t fires;
    s_fires (t, "tick", &fires);
    double elapsed = fires.ts[fires.count - 1] - fires.ts[0];
    h_log (t, "%zu fires over %.0f s", fires.count, elapsed);
    REQUIRE_INT (fires.count, >=, 10);
    REQUIRE_INT ((int64_t) fires.count, ==, (int64_t) elapsed + 1);
    s_check_grid (t, &fires, 1, "tick");
    //  The first fire is the immediate one (no nohaste): its time is the
    //  second the schedule arrived in, so it is late by up to a second.
    double worst = 0;
    for (size_t i = 1; i < fires.count; i++) {
        double late = fires.created[i] - (double) fires.ts[i];
        if (late > worst)
            worst = late;
        REQUIRE_MSG (late > -0.05, "fire %" PRId64 " stored %.3f s before its time",
                     fires.ts[i], -late);
    }
    h_log (t, "worst lateness %.3f s", worst);
    REQUIRE_MSG (worst < 0.5, "a fire was stored %.3f s after its time", worst);
    //  The outcome comes back to the scheduler (reply-requested).
    REQUIRE_WAIT (({
                      json_t *c = s_schedulers (t);
                      char *text = json_dumps (c, 0);
                      bool ok = text && strstr (text, "\"last_outcome\": \"ok\"");
                      free (text);
                      json_decref (c);
                      ok;
                  }),
                  5000);
}

//  Restarting the scheduler (kill -9) and then the router loses no schedule
//  and fires no time twice; after each outage the schedule goes on.
static void
test_restarts (h_test_t *t)
{
    pid_t router = h_router (t, "router", NULL);
    h_jm (t, "jm", "[[10,\"default\"]]", 2, NULL);
    pid_t sched = s_scheduler (t, "sched1", NULL);
    s_wait_scheduler_registered (t, 1);
    s_schedule (t, "tick", 1, NULL);
    REQUIRE_WAIT (s_fire_count (t, "tick") >= 3, 6000);

    h_kill (t, sched, SIGKILL, false);
    REQUIRE (h_proc_wait (t, sched, 5000, NULL));
    size_t before = s_fire_count (t, "tick");
    //  The outage lasts until the router has missed the scheduler's
    //  heartbeats (1.5 s, past a fire time): nothing fired meanwhile.
    REQUIRE_WAIT (s_scheduler_count (t) == 0, 10000);
    REQUIRE_INT (s_fire_count (t, "tick"), ==, before);
    sched = s_scheduler (t, "sched2", NULL);
    REQUIRE_WAIT (s_fire_count (t, "tick") >= before + 3, 8000);

    size_t reconnects = h_log_count (t, "sched2", "reconnecting");
    h_kill (t, router, SIGKILL, false);
    REQUIRE (h_proc_wait (t, router, 5000, NULL));
    //  The router is back once the scheduler has found it gone.
    REQUIRE_WAIT (h_log_count (t, "sched2", "reconnecting") > reconnects, 10000);
    h_router (t, "router2", NULL);
    size_t after_router = s_fire_count (t, "tick");
    REQUIRE_WAIT (s_fire_count (t, "tick") >= after_router + 3, 10000);
    REQUIRE (s_leader (t, "tick") == sched);

    s_fires_t fires;
    s_fires (t, "tick", &fires);
    //  Distinct fire times (the table's msgids are unique), increasing,
    //  every one on the grid; gaps only where nobody could fire.
    size_t gaps = 0;
    for (size_t i = 1; i < fires.count; i++) {
        REQUIRE (fires.ts[i] > fires.ts[i - 1]);
        if (fires.ts[i] - fires.ts[i - 1] > 1)
            gaps++;
    }
    h_log (t, "%zu fires, %zu gaps (two outages)", fires.count, gaps);
    REQUIRE_INT (gaps, <=, 2);
}

//  Two schedulers on one data directory: the second stands by; kill -9 the
//  leader and the standby takes over; every fire time of the window fired
//  exactly once.
static void
test_standby_takeover (h_test_t *t)
{
    h_router (t, "router", NULL);
    h_jm (t, "jm", "[[10,\"default\"]]", 2, NULL);
    pid_t first = s_scheduler (t, "sched1", NULL);
    s_wait_scheduler_registered (t, 1);
    REQUIRE_WAIT (s_leader (t, NULL) == first, 5000);
    pid_t standby = s_scheduler (t, "sched2", "--standby", NULL);
    s_schedule (t, "tock", 3, NULL);
    REQUIRE_WAIT (s_fire_count (t, "tock") >= 2, 10000);
    //  Right after a fire, so the takeover (polls every 2 s) is due before
    //  the next one is late by more than the grace.
    size_t count = s_fire_count (t, "tock");
    REQUIRE_WAIT (s_fire_count (t, "tock") > count, 5000);
    uint64_t fence1 = s_fence_of (t, first);
    h_kill (t, first, SIGKILL, false);
    REQUIRE (h_proc_wait (t, first, 5000, NULL));
    REQUIRE_WAIT (s_leader (t, "tock") == standby, 10000);
    uint64_t fence2 = s_fence_of (t, standby);
    REQUIRE_MSG (fence2 > fence1, "new fence %" PRIu64 " <= old %" PRIu64, fence2,
                 fence1);
    size_t taken = s_fire_count (t, "tock");
    REQUIRE_WAIT (s_fire_count (t, "tock") >= taken + 2, 10000);
    s_fires_t fires;
    s_fires (t, "tock", &fires);
    s_check_grid (t, &fires, 3, "tock across the takeover");
}

//  emq-cli schedules / unschedule, and what schedule refuses before sending.
static void
test_cli (h_test_t *t)
{
    h_router (t, "router", NULL);
    s_scheduler (t, "sched", NULL);
    s_wait_scheduler_registered (t, 1);
    s_schedule (t, "tick", 2, "nohaste");
    REQUIRE_WAIT (s_leader (t, "tick") != 0, 5000);
    h_cli_t r;
    h_cli (t, &r, 10000, "schedules", NULL);
    REQUIRE_INT (r.status, ==, 0);
    REQUIRE_CONTAINS (r.out, "tick");
    REQUIRE_CONTAINS (r.out, "every 2s");
    REQUIRE_CONTAINS (r.out, "leader: sched-");
    h_cli_free (&r);
    h_cli (t, &r, 10000, "schedules", "--json", NULL);
    REQUIRE_INT (r.status, ==, 0);
    json_t *root = json_loads (r.out, 0, NULL);
    REQUIRE (root != NULL);
    REQUIRE (json_string_value (json_object_get (root, "leader")) != NULL);
    json_t *first = json_array_get (json_object_get (root, "schedules"), 0);
    REQUIRE_STREQ (json_string_value (json_object_get (first, "name")), "tick");
    REQUIRE (json_integer_value (json_object_get (first, "next_fire")) > 0);
    json_decref (root);
    h_cli_free (&r);
    //  Bad specs are refused by emq-cli with the reason, before sending.
    h_cli (t, &r, 10000, "schedule", "--name", "bad", "--cron", "61 * * * *", "exec",
           "--", "/bin/true", NULL);
    REQUIRE_INT (r.status, ==, 2);
    REQUIRE_CONTAINS (r.err, "field 1 (minute): 61 is out of range 0..59");
    h_cli_free (&r);
    h_cli (t, &r, 10000, "schedule", "--name", "bad", "--every", "10x", "exec", "--",
           "/bin/true", NULL);
    REQUIRE_INT (r.status, ==, 2);
    REQUIRE_CONTAINS (r.err, "--every");
    h_cli_free (&r);
    h_cli (t, &r, 10000, "unschedule", "tick", NULL);
    REQUIRE_INT (r.status, ==, 0);
    h_cli_free (&r);
    REQUIRE_WAIT (s_leader (t, "tick") == 0, 5000);
}

//  A scheduler the router does not admit (not in scheduler_identities)
//  never registers, gets no SCHEDULE, and says why once.
static void
test_not_admitted (h_test_t *t)
{
    h_router (t, "router", "--scheduler-identities", "night-batch", NULL);
    s_scheduler (t, "sched", "--name", "intruder", NULL);
    REQUIRE_WAIT (h_log_count (t, "router", "INFORM as a scheduler refused") >= 3, 10000);
    REQUIRE_INT (s_scheduler_count (t), ==, 0);
    REQUIRE_INT (h_log_count (t, "sched", "does not admit us as a scheduler"), ==, 1);
    h_cli_t r;
    h_cli (t, &r, 10000, "schedule", "--name", "x", "--every", "1", "exec", "--",
           "/bin/true", NULL);
    REQUIRE_MSG (r.status != 0 && strstr (r.err, "NO_SCHEDULER"),
                 "schedule without an admitted scheduler: exit %d (%s)", r.status, r.err);
    h_cli_free (&r);
}

//  ---------------------------------------------------------------------
//  etcd

//  Finds the etcd binary; NULL when it is not installed.
static const char *
s_etcd_binary (void)
{
    static const char *paths[] = { "/usr/bin/etcd", "/usr/local/bin/etcd", NULL };
    for (int i = 0; paths[i]; i++)
        if (access (paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

//  Binds a TCP socket to 127.0.0.1:port (0: one the kernel picks) as a
//  server would (SO_REUSEADDR), and closes it. Returns the port bound, or 0.
static int
s_bind_port (int port)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_port = htons ((uint16_t) port),
                                .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t len = sizeof addr;
    int on = 1, bound = 0;
    if (fd >= 0 && setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0
        && bind (fd, (struct sockaddr *) &addr, sizeof addr) == 0
        && getsockname (fd, (struct sockaddr *) &addr, &len) == 0)
        bound = ntohs (addr.sin_port);
    if (fd >= 0)
        close (fd);
    return bound;
}

//  A port the kernel picks (its ephemeral range is random; ZeroMQ's "*"
//  counts up from 49152, where other tests' sockets are).
static int
s_free_port (void)
{
    return s_bind_port (0);
}

//  True when the port of url ("http://127.0.0.1:N") can be listened on again.
static bool
s_url_port_free (const char *url)
{
    uint64_t port;
    const char *colon = strrchr (url, ':');
    return colon && numparse_uint (colon + 1, 65535, &port) == 0 && port > 0
           && s_bind_port ((int) port) == (int) port;
}

typedef struct {
    char client_url[64];
    char peer_url[64];
    char dir[H_PATH_MAX + 16];
    pid_t pid;
} s_etcd_t;

static pid_t
s_etcd_start (h_test_t *t, s_etcd_t *e, const char *tag)
{
    const char *args[] = { "--name",
                           "emq-test",
                           "--data-dir",
                           e->dir,
                           "--listen-client-urls",
                           e->client_url,
                           "--advertise-client-urls",
                           e->client_url,
                           "--listen-peer-urls",
                           e->peer_url,
                           "--initial-advertise-peer-urls",
                           e->peer_url,
                           "--initial-cluster",
                           NULL,
                           "--log-level",
                           "warn",
                           NULL };
    char cluster[128];
    snprintf (cluster, sizeof cluster, "emq-test=%s", e->peer_url);
    args[13] = cluster;
    //  h_spawn runs <absolute BUILD>/bin/<program>: enough ".." reach the
    //  root whatever the depth (".." of / is /).
    char relative[H_PATH_MAX];
    snprintf (relative, sizeof relative, "../../../../../../../../..%s",
              s_etcd_binary ());
    e->pid = h_spawn (t, tag, false, relative, args);
    //  Up when its gateway answers; down if it exited (a port was taken).
    char cmd[512];
    snprintf (cmd, sizeof cmd,
              "curl -s -m 1 -X POST -d '{}' %s/v3/maintenance/status "
              ">/dev/null 2>&1",
              e->client_url);
    REQUIRE_WAIT (system (cmd) == 0 || !h_pid_alive (e->pid), 15000);
    return h_pid_alive (e->pid) ? e->pid : 0;
}

//  Three schedulers against a real etcd: one leads; SIGSTOP it past the
//  lease TTL and another takes over; SIGCONT it and it fires nothing more;
//  restart etcd under them and firing goes on.
static void
test_etcd (h_test_t *t)
{
    if (!s_etcd_binary ()) {
        printf ("    (etcd not installed: apt-get install etcd-server; test skipped)\n");
        return;
    }
    s_etcd_t e;
    snprintf (e.dir, sizeof e.dir, "%s/etcd", t->dir);
    pid_t etcd = 0;
    for (int attempt = 0; attempt < 5 && !etcd; attempt++) {
        snprintf (e.client_url, sizeof e.client_url, "http://127.0.0.1:%d",
                  s_free_port ());
        snprintf (e.peer_url, sizeof e.peer_url, "http://127.0.0.1:%d", s_free_port ());
        char tag[32];
        snprintf (tag, sizeof tag, "etcd-%d", attempt);
        etcd = s_etcd_start (t, &e, tag);
    }
    REQUIRE_MSG (etcd != 0, "etcd did not start (see the etcd-*.log files)");
    h_router (t, "router", NULL);
    h_jm (t, "jm", "[[10,\"default\"]]", 2, NULL);
    char prefix[64];
    snprintf (prefix, sizeof prefix, "/emq-test-%d", (int) getpid ());
    pid_t s[3];
    for (int i = 0; i < 3; i++) {
        char tag[32], name[32];
        snprintf (tag, sizeof tag, "sched%d", i + 1);
        snprintf (name, sizeof name, "member-%d", i + 1);
        s[i] = s_scheduler (t, tag, "--etcd", e.client_url, "--etcd-prefix", prefix,
                            "--etcd-lease-ttl", "3", "--name", name, NULL);
    }
    s_wait_scheduler_registered (t, 3);
    REQUIRE_WAIT (s_leader (t, NULL) != 0, 10000);
    s_schedule (t, "beat", 1, NULL);
    REQUIRE_WAIT (s_leader (t, "beat") != 0, 10000);
    REQUIRE_WAIT (s_fire_count (t, "beat") >= 3, 10000);
    pid_t leader = s_leader (t, "beat");
    uint64_t fence = s_fence_of (t, leader);
    h_log (t, "leader %d with fence %" PRIu64, (int) leader, fence);

    //  SIGSTOP past the TTL: another member takes over and fires.
    REQUIRE_INT (kill (leader, SIGSTOP), ==, 0);
    double stopped = clock_wall_s ();
    REQUIRE_WAIT (({
                      pid_t p = s_leader (t, "beat");
                      p &&p != leader;
                  }),
                  15000);
    pid_t next = s_leader (t, "beat");
    size_t count = s_fire_count (t, "beat");
    REQUIRE_WAIT (s_fire_count (t, "beat") >= count + 2, 10000);
    while (clock_wall_s () - stopped < 5.0)
        h_nap ();
    char leader_tag[32] = "";
    for (int i = 0; i < 3; i++)
        if (s[i] == leader)
            snprintf (leader_tag, sizeof leader_tag, "sched%d", i + 1);
    size_t stepped_down = h_log_count (t, leader_tag, "not leading");
    REQUIRE_INT (kill (leader, SIGCONT), ==, 0);
    double resumed = clock_wall_s ();
    //  The woken leader finds its lease gone and steps down; fires go on
    //  meanwhile. Whatever it sent before it knew has reached the router
    //  by then.
    REQUIRE_WAIT (h_log_count (t, leader_tag, "not leading") > stepped_down, 10000);
    count = s_fire_count (t, "beat");
    REQUIRE_WAIT (s_fire_count (t, "beat") >= count + 2, 10000);
    //  Nothing carrying the old leader's token was stored after it woke.
    s_fires_t fires;
    s_fires (t, "beat", &fires);
    char old_fence[64];
    snprintf (old_fence, sizeof old_fence, "fence:%" PRIu64, fence);
    for (size_t i = 0; i < fires.count; i++)
        if (fires.created[i] > resumed)
            REQUIRE_MSG (!strstr (fires.headers[i], old_fence),
                         "fire %" PRId64 " from the woken leader (%s)", fires.ts[i],
                         old_fence);
    REQUIRE (s_leader (t, "beat") == next);
    //  And the router never had to fence it off: it did not even try.
    char path[H_PATH_MAX + 32];
    snprintf (path, sizeof path, "%s/router.log", t->dir);
    char *log = NULL;
    FILE *file = fopen (path, "r");
    if (file) {
        size_t size = 0;
        FILE *mem = open_memstream (&log, &size);
        char buf[4096];
        size_t n;
        while ((n = fread (buf, 1, sizeof buf, file)) > 0)
            fwrite (buf, 1, n, mem);
        fclose (mem);
        fclose (file);
    }
    REQUIRE_MSG (!log || !strstr (log, "FENCED") || !strstr (log, old_fence),
                 "the router had to refuse the woken leader");
    free (log);
    //  While the stopped leader's lease ran out nobody fired: the new
    //  leader runs the missed times once (misfire once), so one gap, and
    //  no time twice.
    size_t gaps = 0;
    for (size_t i = 1; i < fires.count; i++) {
        REQUIRE (fires.ts[i] > fires.ts[i - 1]);
        gaps += fires.ts[i] - fires.ts[i - 1] > 1;
    }
    REQUIRE_INT (gaps, <=, 1);

    //  etcd restarts under them: firing goes on afterwards.
    h_kill (t, e.pid, SIGTERM, false);
    REQUIRE (h_proc_wait (t, e.pid, 10000, NULL));
    //  The new etcd listens where the old one did: once the ports are free.
    REQUIRE_WAIT (s_url_port_free (e.client_url) && s_url_port_free (e.peer_url), 10000);
    REQUIRE_MSG (s_etcd_start (t, &e, "etcd-restarted") != 0, "etcd did not restart");
    count = s_fire_count (t, "beat");
    REQUIRE_WAIT (s_fire_count (t, "beat") >= count + 3, 20000);
    REQUIRE (s_leader (t, "beat") != 0);
    s_fires (t, "beat", &fires);
    for (size_t i = 1; i < fires.count; i++)
        REQUIRE (fires.ts[i] > fires.ts[i - 1]);
    (void) s;
}

//  ---------------------------------------------------------------------
//  Clock steps: the scheduler runs under libfaketime, whose offset the
//  test changes while it runs (a control file, re-read on every clock
//  call). Only the wall clock is faked: CLOCK_MONOTONIC stays real, as a
//  real settimeofday or NTP step leaves it. Router and job manager see the
//  real time, so the router's created_at measures the real pace of fires.

//  libfaketime's multi-threaded build (Debian libfaketime), or NULL.
static const char *
s_faketime_lib (void)
{
    static const char *paths[] = {
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/i386-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
        NULL,
    };
    for (int i = 0; paths[i]; i++)
        if (access (paths[i], R_OK) == 0)
            return paths[i];
    return NULL;
}

//  Writes the faked clock's offset ("+0", "-600", "+3600": seconds).
static void
s_faketime_set (h_test_t *t, const char *offset)
{
    char path[H_PATH_MAX + 16], tmp[H_PATH_MAX + 24];
    snprintf (path, sizeof path, "%s/faketime", t->dir);
    snprintf (tmp, sizeof tmp, "%s/faketime.new", t->dir);
    FILE *file = fopen (tmp, "w");
    REQUIRE (file != NULL);
    fprintf (file, "%s\n", offset);
    REQUIRE_INT (fclose (file), ==, 0);
    //  Whole at once: the scheduler reads it at any moment.
    REQUIRE_INT (rename (tmp, path), ==, 0);
}

//  Starts an emq-scheduler whose wall clock is libfaketime's.
static pid_t
s_scheduler_faketime (h_test_t *t, const char *tag)
{
    const char *lib = s_faketime_lib ();
    REQUIRE_MSG (lib != NULL, "libfaketime is not installed (scripts/install-deps.sh)");
    s_faketime_set (t, "+0");
    char path[H_PATH_MAX + 16];
    snprintf (path, sizeof path, "%s/faketime", t->dir);
    //  The child inherits these at fork; the test process only holds them
    //  for the spawn. A sanitized build must accept a preload before ASan.
    const char *asan = getenv ("ASAN_OPTIONS");
    char *saved_asan = asan ? strdup (asan) : NULL;
    char asan_options[1024];
    snprintf (asan_options, sizeof asan_options, "%s%sverify_asan_link_order=0",
              asan ? asan : "", asan && *asan ? ":" : "");
    setenv ("ASAN_OPTIONS", asan_options, 1);
    setenv ("LD_PRELOAD", lib, 1);
    setenv ("FAKETIME_TIMESTAMP_FILE", path, 1);
    setenv ("FAKETIME_NO_CACHE", "1", 1);
    setenv ("FAKETIME_DONT_FAKE_MONOTONIC", "1", 1);
    pid_t pid = s_scheduler (t, tag, NULL);
    unsetenv ("LD_PRELOAD");
    unsetenv ("FAKETIME_TIMESTAMP_FILE");
    unsetenv ("FAKETIME_NO_CACHE");
    unsetenv ("FAKETIME_DONT_FAKE_MONOTONIC");
    if (saved_asan)
        setenv ("ASAN_OPTIONS", saved_asan, 1);
    else
        unsetenv ("ASAN_OPTIONS");
    free (saved_asan);
    return pid;
}

//  Fires of `name` the router stored after real time `since` (unix s).
static size_t
s_fires_since (const s_fires_t *fires, double since)
{
    size_t count = 0;
    for (size_t i = 0; i < fires->count; i++)
        count += fires->created[i] > since;
    return count;
}

//  A 1 s interval under a scheduler whose wall clock steps by offset
//  seconds: it keeps firing once a second (by the real clock), its fire
//  times stay on their grid, and the scheduler logs the jump.
static void
s_clock_step (h_test_t *t, const char *offset, const char *direction)
{
    h_router (t, "router", NULL);
    h_jm (t, "jm", "[[10,\"default\"]]", 2, NULL);
    s_scheduler_faketime (t, "sched");
    s_wait_scheduler_registered (t, 1);
    s_schedule (t, "tick", 1, NULL);
    REQUIRE_WAIT (s_fire_count (t, "tick") >= 3, 10000);
    s_faketime_set (t, offset);
    double stepped = clock_wall_s ();
    size_t before = s_fire_count (t, "tick");
    h_log (t, "wall clock of the scheduler stepped %s after %zu fires", offset, before);
    //  Five more fires in (real) five seconds or so: without the
    //  monotonic pace a step back stalls them for the 600 s.
    REQUIRE_WAIT (s_fire_count (t, "tick") >= before + 5, 9000);
    double elapsed = clock_wall_s () - stepped;
    s_fires_t fires;
    s_fires (t, "tick", &fires);
    size_t after = s_fires_since (&fires, stepped);
    h_log (t, "%zu fires in the %.1f s after the step", after, elapsed);
    //  No burst: at most one fire per elapsed second (and one in flight).
    REQUIRE_MSG ((double) after <= elapsed + 2.0, "%zu fires in %.1f s: a burst", after,
                 elapsed);
    //  Every fire time once, on the grid, no gap: the step moved nothing.
    s_check_grid (t, &fires, 1, "tick");
    REQUIRE_INT (h_log_count (t, "sched", direction), >=, 1);
    REQUIRE_INT (h_log_count (t, "sched", "fire time(s) missed"), ==, 0);
}

//  The wall clock steps back 10 minutes: the interval goes on.
static void
test_clock_step_back (h_test_t *t)
{
    s_clock_step (t, "-600", "wall clock jumped back by 6");
}

//  The wall clock steps forward an hour: no burst, no misfire.
static void
test_clock_step_forward (h_test_t *t)
{
    s_clock_step (t, "+3600", "wall clock jumped forward by 36");
}

//  A deployment moves its scheduler from the local lock (tokens are
//  microseconds since 1970) to etcd (tokens are small revisions): the
//  router keeps the tokens per scope, so the etcd leader's fires are
//  stored, not fenced off; emq-cli fence shows both scopes.
static void
test_local_to_etcd (h_test_t *t)
{
    if (!s_etcd_binary ()) {
        printf ("    (etcd not installed: apt-get install etcd-server; test skipped)\n");
        return;
    }
    s_etcd_t e;
    snprintf (e.dir, sizeof e.dir, "%s/etcd", t->dir);
    pid_t etcd = 0;
    for (int attempt = 0; attempt < 5 && !etcd; attempt++) {
        snprintf (e.client_url, sizeof e.client_url, "http://127.0.0.1:%d",
                  s_free_port ());
        snprintf (e.peer_url, sizeof e.peer_url, "http://127.0.0.1:%d", s_free_port ());
        char tag[32];
        snprintf (tag, sizeof tag, "etcd-%d", attempt);
        etcd = s_etcd_start (t, &e, tag);
    }
    REQUIRE_MSG (etcd != 0, "etcd did not start (see the etcd-*.log files)");
    h_router (t, "router", NULL);
    h_jm (t, "jm", "[[10,\"default\"]]", 2, NULL);
    pid_t local = s_scheduler (t, "local", NULL);
    s_wait_scheduler_registered (t, 1);
    s_schedule (t, "beat", 1, NULL);
    REQUIRE_WAIT (s_fire_count (t, "beat") >= 2, 8000);
    h_kill (t, local, SIGTERM, false);
    REQUIRE (h_proc_wait (t, local, 10000, NULL));
    REQUIRE_WAIT (s_scheduler_count (t) == 0, 10000);

    char prefix[64];
    snprintf (prefix, sizeof prefix, "/emq-move-%d", (int) getpid ());
    pid_t moved = s_scheduler (t, "etcd1", "--etcd", e.client_url, "--etcd-prefix",
                               prefix, "--etcd-lease-ttl", "3", "--name", "moved", NULL);
    REQUIRE_WAIT (s_leader (t, NULL) == moved, 10000);
    //  Its schedules live in etcd now: submitted there anew.
    s_schedule (t, "beat2", 1, NULL);
    REQUIRE_WAIT (s_fire_count (t, "beat2") >= 3, 10000);
    REQUIRE_INT (h_log_count (t, "router", "another scheduler leads"), ==, 0);
    REQUIRE_INT (h_log_count (t, "etcd1", "fenced off"), ==, 0);
    h_cli_t r;
    h_cli (t, &r, 10000, "fence", NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli fence: exit %d (%s)", r.status, r.err);
    REQUIRE_CONTAINS (r.out, "local:");
    REQUIRE_CONTAINS (r.out, "etcd:");
    h_cli_free (&r);
}

static const h_testdef_t s_tests[] = {
    { "interval_no_drift", test_interval_no_drift,
      "a 1 s interval fires once a second, on time, for 10 s" },
    { "restarts", test_restarts,
      "kill -9 the scheduler, then the router: no schedule lost, no time fired twice" },
    { "standby_takeover", test_standby_takeover,
      "two local schedulers: kill -9 the leader, the standby fires every later time "
      "once" },
    { "cli", test_cli,
      "emq-cli schedules [--json], unschedule, and schedule's own checks" },
    { "clock_step_back", test_clock_step_back,
      "libfaketime steps the scheduler's wall clock back 10 min: a 1 s interval keeps "
      "firing once a second, on its grid, and the jump is logged" },
    { "clock_step_forward", test_clock_step_forward,
      "the wall clock steps forward 1 h: no burst, no misfire, the jump is logged" },
    { "not_admitted", test_not_admitted,
      "a scheduler outside scheduler_identities never registers, and says so once" },
    { "local_to_etcd", test_local_to_etcd,
      "moving from the local lock to etcd: the router keeps tokens per scope, fires go "
      "on" },
    { "etcd", test_etcd,
      "three schedulers on etcd: SIGSTOP the leader past the TTL, SIGCONT, etcd "
      "restart" },
};

int
main (int argc, char **argv)
{
    return h_main (s_tests, sizeof s_tests / sizeof s_tests[0], argc, argv);
}
