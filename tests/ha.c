/*  ha — integration tests for issue 14 ("peers follow the active router";
    "emq-cli status shows which router is active, since when, and the
    standbys"): two emq-router processes on one PostgreSQL database (a
    server of the test's own, h_pg_start), one leading and one waiting
    with --standby, each in a slot of addresses of its own.

    Part of the `integration` program (see integration.c for main and
    harness.h for the runner). Every test that needs PostgreSQL says so
    and skips when its binaries are not installed.
*/
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_Q "[[10,\"default\"]]"
//  A short lease: a standby takes over within about a second.
#define S_LEASE_TTL "1"

//  Starts this test's PostgreSQL and has every router keep its jobs there;
//  false (the test then returns, skipped) when PostgreSQL is not installed.
static bool
s_on_postgresql (h_test_t *t)
{
    if (!h_pg_bin ()) {
        printf ("    (PostgreSQL not installed: apt-get install postgresql; "
                "test skipped)\n");
        return false;
    }
    h_store_dsn = h_pg_start (t);
    return true;
}

//  A router in a slot, with --standby: leading (wait: until it answers
//  STATUS) or waiting for the lead.
static pid_t
s_slot_router (h_test_t *t, const h_slot_t *slot, const char *tag, bool wait)
{
    return h_router_ex (t, tag, slot->admin, wait, "--frontend", slot->frontend,
                        "--backend", slot->backend, "--store-lease-ttl", S_LEASE_TTL,
                        "--standby", "--fsync", "always", NULL);
}

//  True when the router at admin answers STATUS.
static bool
s_answers (h_test_t *t, const char *admin)
{
    json_t *status = h_admin_at (t, admin, "STATUS", h_ms (100));
    json_decref (status);
    return status != NULL;
}

//  STATUS store.routers of the router at admin (new reference), or NULL.
static json_t *
s_routers (h_test_t *t, const char *admin)
{
    json_t *status = h_admin_at (t, admin, "STATUS", h_ms (1000));
    json_t *routers = json_incref (h_jget (status, "store", "routers", NULL));
    json_decref (status);
    return routers;
}

//  The entry of store.routers at admin for the router with that pid
//  (new reference), or NULL.
static json_t *
s_router_entry (h_test_t *t, const char *admin, pid_t pid)
{
    json_t *routers = s_routers (t, admin);
    json_t *found = NULL;
    size_t i;
    json_t *entry;
    json_array_foreach (routers, i, entry)
    {
        if (h_jint (entry, 0, "pid", NULL) == pid)
            found = json_incref (entry);
    }
    json_decref (routers);
    return found;
}

static size_t
s_router_count (h_test_t *t, const char *admin)
{
    json_t *routers = s_routers (t, admin);
    size_t count = json_array_size (routers);
    json_decref (routers);
    return count;
}

//  The fires of schedule `name` in the database, in some state (NULL:
//  any), with fire time after `after` (unix s, 0: any).
static long long
s_fires (PGconn *db, const char *name, const char *state, long long after)
{
    char sql[512];
    snprintf (sql, sizeof sql,
              "SELECT count(*) FROM jobs WHERE convert_from (msgid, 'UTF8') LIKE "
              "'sched:%s:%%' AND split_part (convert_from (msgid, 'UTF8'), ':', 3)"
              "::bigint > %lld%s%s%s",
              name, after, state ? " AND state = '" : "", state ? state : "",
              state ? "'" : "");
    return h_pg_int (db, sql);
}

//  Sends SCHEDULE to frontend as EventMQ's client does (no wait for the
//  answer): an exec /bin/true job every interval_s seconds.
static void
s_schedule (h_test_t *t, const char *frontend, const char *name, int interval_s)
{
    (void) t;
    zsock_t *dealer = h_dealer (frontend, NULL);
    REQUIRE (dealer != NULL);
    const char *argv[] = { "/bin/true", NULL };
    void *payload;
    size_t size;
    h_payload_exec (argv, &payload, &size);
    emqp_msg_t *msg = emqp_msg_new (EMQP_SCHEDULE);
    char headers[256];
    snprintf (headers, sizeof headers, "name:%s", name);
    msg->queue = strdup ("default");
    msg->headers = strdup (headers);
    msg->interval_s = interval_s;
    msg->payload = zframe_new (payload, size);
    msg->cron = strdup ("");
    free (payload);
    zsock_set_linger (dealer, 2000);
    REQUIRE_INT (emqp_send (&msg, dealer), ==, 0);
    zsock_destroy (&dealer);
}

//  The router (its frontend) the scheduler with that pid says it uses, in
//  the ROUTER_SHOW_SCHEDULERS of the router at admin; "" when not listed.
static bool
s_scheduler_uses (h_test_t *t, const char *admin, pid_t pid, const char *frontend)
{
    json_t *root = h_admin_at (t, admin, "ROUTER_SHOW_SCHEDULERS", h_ms (1000));
    bool uses = false;
    const char *key;
    json_t *value;
    json_object_foreach (h_jget (root, "connected_schedulers", NULL), key, value)
    {
        json_t *stats = json_object_get (value, "stats");
        const char *router = json_string_value (json_object_get (stats, "router"));
        if (h_jint (stats, 0, "pid", NULL) == pid && router && streq (router, frontend))
            uses = true;
    }
    json_decref (root);
    return uses;
}

//  ---------------------------------------------------------------------
//  Tests

//  A scheduler given both routers' addresses: kill -9 of the leader, the
//  scheduler moves to the standby once it leads (the next address), and
//  the interval's fires go on through it; none is run twice (one row per
//  fire time, each dispatched once) and every one ends done.
static void
test_scheduler_failover (h_test_t *t)
{
    if (!s_on_postgresql (t))
        return;
    h_slot_t slot[2];
    h_slots (t, slot);
    pid_t leader = s_slot_router (t, &slot[0], "router-a", true);
    pid_t standby = s_slot_router (t, &slot[1], "router-b", false);
    setenv ("EVENTMQ_BACKEND_FAILOVER_ADDRS", slot[1].backend, 1);
    h_jm (t, "jm", DEFAULT_Q, 2, NULL);
    unsetenv ("EVENTMQ_BACKEND_FAILOVER_ADDRS");
    h_wait_jm (t, "jm", 10000, NULL);

    char routers[2 * sizeof slot[0].frontend + 8], admins[2 * sizeof slot[0].admin + 8];
    snprintf (routers, sizeof routers, "%s, %s", slot[0].frontend, slot[1].frontend);
    snprintf (admins, sizeof admins, "%s,%s", slot[0].admin, slot[1].admin);
    char data_dir[H_PATH_MAX + 16];
    snprintf (data_dir, sizeof data_dir, "%s/sdata", t->dir);
    const char *args[] = { "--router",
                           routers,
                           "--admin",
                           admins,
                           "--data-dir",
                           data_dir,
                           "--heartbeat-interval",
                           "0.2",
                           "--heartbeat-timeout",
                           "0.5",
                           "--heartbeat-liveness",
                           "3",
                           "--log-level",
                           t->verbose ? "debug" : "info",
                           NULL };
    pid_t scheduler = h_spawn (t, "sched", false, "emq-scheduler", args);
    REQUIRE_WAIT (s_scheduler_uses (t, slot[0].admin, scheduler, slot[0].frontend),
                  10000);
    s_schedule (t, slot[0].frontend, "tick", 1);

    //  Fires through the leader, all of them done; then kill -9 of it
    //  (between two fires: none is running).
    PGconn *db = h_pg_connect (t);
    REQUIRE_WAIT (s_fires (db, "tick", "done", 0) >= 3
                      && s_fires (db, "tick", NULL, 0) == s_fires (db, "tick", "done", 0),
                  15000);
    long long killed_at = (long long) time (NULL);
    h_kill (t, leader, SIGKILL, false);
    REQUIRE (h_proc_wait (t, leader, 5000, NULL));
    long long before = s_fires (db, "tick", NULL, 0);
    h_log (t, "leader killed at %lld after %lld fires", killed_at, before);

    //  The standby leads, the scheduler follows it and fires there.
    REQUIRE_WAIT (s_answers (t, slot[1].admin), 10000);
    REQUIRE_WAIT (s_scheduler_uses (t, slot[1].admin, scheduler, slot[1].frontend),
                  15000);
    REQUIRE_INT (h_log_count (t, "sched", "trying router"), >=, 1);
    REQUIRE_WAIT (s_fires (db, "tick", "done", killed_at) >= 3, 20000);
    //  Every fire ends done, each dispatched once.
    REQUIRE_WAIT (s_fires (db, "tick", NULL, 0) == s_fires (db, "tick", "done", 0),
                  10000);
    long long again =
        h_pg_int (db, "SELECT count(*) FROM jobs WHERE convert_from (msgid, "
                      "'UTF8') LIKE 'sched:tick:%' AND attempt <> 1");
    long long total = s_fires (db, "tick", NULL, 0);
    //  Fire times are on the interval's grid and distinct (the msgid is
    //  the database's unique key): as many rows as distinct seconds.
    long long distinct =
        h_pg_int (db, "SELECT count(DISTINCT split_part (convert_from "
                      "(msgid, 'UTF8'), ':', 3)) FROM jobs WHERE "
                      "convert_from (msgid, 'UTF8') LIKE 'sched:tick:%'");
    PQfinish (db);
    h_log (t, "%lld fires, %lld after the kill, %lld run more than once", total,
           total - before, again);
    REQUIRE_INT (again, ==, 0);
    REQUIRE_INT (distinct, ==, total);
    REQUIRE_INT (total - before, >=, 3);
    REQUIRE (h_pid_alive (standby));
    REQUIRE (h_pid_alive (scheduler));
}

//  The leader's STATUS lists the standby (holder, addresses, pid, host,
//  seen), emq-cli status prints a line for it and --json passes it on; a
//  standby stopped with SIGTERM deletes its row at once, and one killed
//  with -9 is pruned by the leader after 3 leases.
static void
test_standbys_status (h_test_t *t)
{
    if (!s_on_postgresql (t))
        return;
    h_slot_t slot[2];
    h_slots (t, slot);
    pid_t leader = s_slot_router (t, &slot[0], "router-a", true);
    pid_t standby = s_slot_router (t, &slot[1], "router-b", false);
    REQUIRE_WAIT (({
                      json_t *e = s_router_entry (t, slot[0].admin, standby);
                      json_decref (e);
                      e != NULL;
                  }),
                  10000);
    json_t *entry = s_router_entry (t, slot[0].admin, standby);
    REQUIRE (entry);
    const char *role = json_string_value (json_object_get (entry, "role"));
    const char *holder = json_string_value (json_object_get (entry, "holder"));
    const char *frontend = json_string_value (h_jget (entry, "addrs", "frontend", NULL));
    const char *backend = json_string_value (h_jget (entry, "addrs", "backend", NULL));
    const char *admin = json_string_value (h_jget (entry, "addrs", "admin", NULL));
    const char *host = json_string_value (json_object_get (entry, "host"));
    double seen = json_number_value (json_object_get (entry, "seen_ago"));
    REQUIRE_MSG (role && streq (role, "standby"), "role %s", role ? role : "(none)");
    REQUIRE_MSG (frontend && streq (frontend, slot[1].frontend), "frontend %s",
                 frontend ? frontend : "(none)");
    REQUIRE_MSG (backend && streq (backend, slot[1].backend), "backend %s",
                 backend ? backend : "(none)");
    REQUIRE_MSG (admin && streq (admin, slot[1].admin), "admin %s",
                 admin ? admin : "(none)");
    char pid_text[32];
    snprintf (pid_text, sizeof pid_text, "pid %d ", (int) standby);
    REQUIRE_MSG (holder && strstr (holder, pid_text), "holder %s",
                 holder ? holder : "(none)");
    REQUIRE (host && *host);
    REQUIRE_MSG (seen >= 0 && seen < 3, "seen %.3f s ago", seen);
    //  The leader does not list itself.
    REQUIRE_INT (s_router_count (t, slot[0].admin), ==, 1);

    //  emq-cli status: the lead line, then one per standby; --json as is.
    h_cli_t r;
    h_cli (t, &r, 10000, "status", NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli status: %d: %s", r.status, r.err);
    REQUIRE_MSG (strstr (r.out, "lead: this router ("), "%s", r.out);
    char line[4096];
    snprintf (line, sizeof line,
              "standby: %s at frontend %s, backend %s, admin %s, seen ", holder,
              slot[1].frontend, slot[1].backend, slot[1].admin);
    REQUIRE_MSG (strstr (r.out, line), "no \"%s\" in:\n%s", line, r.out);
    REQUIRE_MSG (strstr (strstr (r.out, line), "s ago\n"), "%s", r.out);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "status", "--json", NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli status --json: %d: %s", r.status, r.err);
    json_t *root = json_loads (r.out, 0, NULL);
    json_t *listed = json_array_get (h_jget (root, "store", "routers", NULL), 0);
    const char *listed_holder = json_string_value (json_object_get (listed, "holder"));
    REQUIRE_MSG (listed_holder && streq (listed_holder, holder), "%s", r.out);
    json_decref (root);
    h_cli_free (&r);
    json_decref (entry);

    //  SIGTERM: the standby leaves and deletes its row on the way out.
    h_kill (t, standby, SIGTERM, false);
    int status = 0;
    REQUIRE (h_proc_wait (t, standby, 10000, &status));
    REQUIRE_INT (s_router_count (t, slot[0].admin), ==, 0);
    PGconn *db = h_pg_connect (t);
    REQUIRE_INT (h_pg_int (db, "SELECT count(*) FROM emq_routers WHERE role = 'standby'"),
                 ==, 0);
    REQUIRE_INT (h_pg_int (db, "SELECT count(*) FROM emq_routers WHERE role = 'leader'"),
                 ==, 1);

    //  kill -9: its row stays until the leader prunes it (3 leases unseen).
    standby = s_slot_router (t, &slot[1], "router-b2", false);
    REQUIRE_WAIT (s_router_count (t, slot[0].admin) == 1, 10000);
    h_kill (t, standby, SIGKILL, false);
    REQUIRE (h_proc_wait (t, standby, 5000, NULL));
    REQUIRE_WAIT (s_router_count (t, slot[0].admin) == 0, 3 * 1000 + 3000);
    REQUIRE_WAIT (h_pg_int (db, "SELECT count(*) FROM emq_routers WHERE role = 'standby'")
                      == 0,
                  3000);
    PQfinish (db);
    REQUIRE (h_pid_alive (leader));
}

//  SQLite: one router per data directory, no standbys to list: STATUS has
//  neither store.lead nor store.routers, and emq-cli status no such lines.
static void
test_sqlite_status (h_test_t *t)
{
    h_router (t, "router", NULL);
    json_t *status = h_admin (t, "STATUS");
    REQUIRE (status);
    REQUIRE (h_jget (status, "store", NULL) != NULL);
    REQUIRE (h_jget (status, "store", "lead", NULL) == NULL);
    REQUIRE (h_jget (status, "store", "routers", NULL) == NULL);
    json_decref (status);
    h_cli_t r;
    h_cli (t, &r, 10000, "status", NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli status: %d: %s", r.status, r.err);
    REQUIRE_MSG (!strstr (r.out, "lead:") && !strstr (r.out, "standby:"), "%s", r.out);
    h_cli_free (&r);
}

const h_testdef_t h_ha_tests[] = {
    { "ha_scheduler_failover", test_scheduler_failover,
      "PostgreSQL, 2 routers: a scheduler with both addresses follows the lead after "
      "kill -9; fires go on, none run twice" },
    { "ha_standbys_status", test_standbys_status,
      "PostgreSQL, 2 routers: the leader's STATUS and emq-cli status list the standby; "
      "gone after SIGTERM (at once) and kill -9 (pruned)" },
    { "ha_sqlite_status", test_sqlite_status,
      "SQLite: STATUS and emq-cli status list no lead and no standbys" },
};

const size_t h_ha_count = sizeof h_ha_tests / sizeof h_ha_tests[0];
