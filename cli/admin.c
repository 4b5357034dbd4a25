/*  admin — `emq-cli status | workers | schedulers | disconnect | cancel |
    dead`: one admin command to the router's admin socket, its JSON shown as
    tables (or as it came, with --json).

    The router's JSON follows EventMQ's shapes, plus emq's extension keys;
    any key may be missing (an EventMQ router, an older emq), and a missing
    value prints as '-'. Values of unexpected types are shown as compact
    JSON rather than refused.
*/
#include "cli.h"
#include "clock.h"
#include "emq/client.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  Renders a JSON value for a table cell into buf and returns buf; NULL
//  (missing) and null are "-".
static const char *
s_cell (json_t *value, char *buf, size_t buflen)
{
    if (!value || json_is_null (value))
        snprintf (buf, buflen, "-");
    else if (json_is_integer (value))
        snprintf (buf, buflen, "%" JSON_INTEGER_FORMAT, json_integer_value (value));
    else if (json_is_real (value)) {
        double v = json_real_value (value);
        snprintf (buf, buflen, v == (double) (int64_t) v ? "%.0f" : "%.1f", v);
    }
    else if (json_is_string (value))
        snprintf (buf, buflen, "%s", json_string_value (value));
    else {
        char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf (buf, buflen, "%s", text ? text : "?");
        free (text);
    }
    //  Cells are one line: a router's odd string must not break the table.
    for (char *p = buf; *p; p++)
        if ((unsigned char) *p < 0x20)
            *p = ' ';
    return buf;
}

//  object[key] if object is an object, else NULL.
static json_t *
s_get (json_t *object, const char *key)
{
    return json_is_object (object) ? json_object_get (object, key) : NULL;
}

static int
s_compare_strings (const void *a, const void *b)
{
    return strcmp (*(const char *const *) a, *(const char *const *) b);
}

//  Collects the keys of the objects in maps[] (skipping non-objects) into a
//  sorted, deduplicated array of borrowed strings. Returns the count, or
//  -1 when out of memory; *keys_p is malloc'd (the caller frees it).
static int
s_union_keys (json_t **maps, size_t count, const char ***keys_p)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        if (json_is_object (maps[i]))
            total += json_object_size (maps[i]);
    const char **keys = calloc (total ? total : 1, sizeof (char *));
    if (!keys)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        if (!json_is_object (maps[i]))
            continue;
        const char *key;
        json_t *value;
        json_object_foreach (maps[i], key, value) keys[n++] = key;
    }
    qsort (keys, n, sizeof (char *), s_compare_strings);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++)
        if (unique == 0 || strcmp (keys[unique - 1], keys[i]))
            keys[unique++] = keys[i];
    *keys_p = keys;
    return (int) unique;
}

//  Asks the router; prints the JSON with --json. Returns 0 with *root set
//  (parsed) when a table should be printed, or an exit code + 100.
static int
s_ask (cli_t *cli, const char *command, bool json_out, json_t **root)
{
    char *reply = NULL;
    int rc = emq_admin (cli->admin, command, cli->connect_timeout_ms, &reply);
    if (rc) {
        int code = cli_exit_for (rc);
        if (rc == EMQ_ERR_INVALID)
            code = CLI_EXIT_USAGE;
        cli_fail (code, "%s: %s", command, reply ? reply : emq_strerror (rc));
        free (reply);
        return 100 + code;
    }
    if (json_out) {
        printf ("%s\n", reply);
        free (reply);
        return 100 + (fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK);
    }
    json_error_t error;
    *root = json_loads (reply, JSON_DECODE_ANY, &error);
    if (!*root || !json_is_object (*root)) {
        cli_fail (CLI_EXIT_FAILED,
                  "%s: the router's reply is not a JSON object (%s); "
                  "as received:",
                  command, *root ? "other JSON" : error.text);
        printf ("%s\n", reply);
        json_decref (*root);
        free (reply);
        return 100 + CLI_EXIT_FAILED;
    }
    free (reply);
    return 0;
}

//  Parses [--json] and the global options. Returns 0, or exit code + 100.
static int
s_parse (cli_t *cli, int argc, char **argv, bool *json_out, bool takes_json)
{
    static const struct option options[] = { { "json", no_argument, NULL, 'j' },
                                             CLI_GLOBAL_OPTIONS };
    int opt;
    while ((opt = getopt_long (argc, argv, "+:", options, NULL)) != -1) {
        if (opt == 'j' && takes_json)
            *json_out = true;
        else if (opt == '?' || opt == 'j')
            return 100
                   + cli_usage_error ("%s: unknown option '%s'", argv[0],
                                      argv[optind - 1]);
        else if (opt == ':')
            return 100
                   + cli_usage_error ("%s: option '%s' needs a value", argv[0],
                                      argv[optind - 1]);
        else {
            int rc = cli_global_option (cli, opt, optarg);
            if (rc >= 100)
                return rc;
        }
    }
    if (optind < argc)
        return 100
               + cli_usage_error ("%s: unexpected argument '%s'", argv[0], argv[optind]);
    int rc = cli_setup (cli);
    return rc ? 100 + rc : 0;
}

//  "storage: sqlite /path (fsync everysec), dead: N, scheduled: N", or
//  "storage: memory, ...", and a warning when the store cannot write.
static void
s_print_storage (json_t *storage, json_t *store)
{
    char kind[64], path[1024], fsync[64], dead[64], scheduled[64];
    s_cell (s_get (store, "kind") ? s_get (store, "kind") : storage, kind, sizeof kind);
    s_cell (s_get (store, "path"), path, sizeof path);
    s_cell (s_get (store, "fsync"), fsync, sizeof fsync);
    s_cell (s_get (store, "dead"), dead, sizeof dead);
    s_cell (s_get (store, "scheduled"), scheduled, sizeof scheduled);
    printf ("storage: %s", kind);
    if (!streq (kind, "memory")) {
        if (!streq (path, "-"))
            printf (" %s", path);
        if (!streq (fsync, "-"))
            printf (" (fsync %s)", fsync);
    }
    if (store)
        printf (", dead: %s, scheduled: %s", dead, scheduled);
    printf ("\n");
    json_t *lead = s_get (store, "lead");
    if (lead) {
        //  PostgreSQL, several routers: this one leads.
        char epoch[64], holder[256];
        s_cell (s_get (lead, "epoch"), epoch, sizeof epoch);
        s_cell (s_get (lead, "holder"), holder, sizeof holder);
        time_t since = (time_t) json_number_value (s_get (lead, "since"));
        char when[64] = "-";
        struct tm tm;
        if (since > 0 && localtime_r (&since, &tm))
            strftime (when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        printf ("lead: this router (%s), epoch %s, since %s\n", holder, epoch, when);
    }
    //  The other routers of the database: its standbys (and, until the
    //  leader prunes it, the row of a leader that is gone).
    json_t *routers = s_get (store, "routers");
    size_t i;
    json_t *router;
    json_array_foreach (json_is_array (routers) ? routers : NULL, i, router)
    {
        char holder[256], role[64], seen[64], frontend[512], backend[512], admin[512];
        json_t *addrs = s_get (router, "addrs");
        s_cell (s_get (router, "holder"), holder, sizeof holder);
        s_cell (s_get (router, "role"), role, sizeof role);
        s_cell (s_get (router, "seen_ago"), seen, sizeof seen);
        s_cell (s_get (addrs, "frontend"), frontend, sizeof frontend);
        s_cell (s_get (addrs, "backend"), backend, sizeof backend);
        s_cell (s_get (addrs, "admin"), admin, sizeof admin);
        printf ("%s: %s at frontend %s, backend %s, admin %s, seen %ss ago\n",
                streq (role, "standby") ? "standby" : "router (gone leader)", holder,
                frontend, backend, admin, seen);
    }
    if (json_is_true (s_get (store, "failing")))
        printf ("warning: the router cannot write to its store; it refuses new jobs "
                "(ERROR STORAGE) until a write succeeds\n");
}

int
cli_status (cli_t *cli, int argc, char **argv)
{
    bool json_out = false;
    json_t *root = NULL;
    int rc = s_parse (cli, argc, argv, &json_out, true);
    if (!rc)
        rc = s_ask (cli, "STATUS", json_out, &root);
    if (rc)
        return rc - 100;

    //  Per queue: emq's "queues" object first, EventMQ's maps otherwise.
    json_t *queues = s_get (root, "queues");
    json_t *waiting = s_get (root, "waiting_messages_by_queue");
    json_t *inflight = s_get (root, "inflight_messages_by_queue");
    json_t *processed = s_get (root, "processed_messages_by_queue");
    json_t *latency = s_get (root, "latency_messages_by_queue");
    json_t *max_latency = s_get (root, "max_latency_messages_by_queue");
    json_t *maps[] = { queues, waiting, inflight, processed, latency, max_latency };
    const char **names = NULL;
    int count = s_union_keys (maps, 6, &names);
    output_table_t *table =
        output_table_new ("QUEUE", "WAITING", "IN FLIGHT", "PROCESSED", "FAILED", "HWM",
                          "JOB MANAGERS", "LATENCY ms", "MAX LATENCY ms", NULL);
    if (count < 0 || !table) {
        free (names);
        output_table_destroy (&table);
        json_decref (root);
        return cli_fail (CLI_EXIT_FAILED, "out of memory");
    }
    for (size_t c = 1; c < 9; c++)
        output_table_align_right (table, c);
    for (int i = 0; i < count; i++) {
        json_t *q = s_get (queues, names[i]);
        char b[8][64];
        json_t *w =
            s_get (q, "waiting") ? s_get (q, "waiting") : s_get (waiting, names[i]);
        json_t *f =
            s_get (q, "inflight") ? s_get (q, "inflight") : s_get (inflight, names[i]);
        json_t *p =
            s_get (q, "processed") ? s_get (q, "processed") : s_get (processed, names[i]);
        output_table_add (table, names[i], s_cell (w, b[0], 64), s_cell (f, b[1], 64),
                          s_cell (p, b[2], 64), s_cell (s_get (q, "failed"), b[3], 64),
                          s_cell (s_get (q, "hwm"), b[4], 64),
                          s_cell (s_get (q, "servers"), b[7], 64),
                          s_cell (s_get (latency, names[i]), b[5], 64),
                          s_cell (s_get (max_latency, names[i]), b[6], 64));
    }
    free (names);
    if (output_table_rows (table))
        output_table_print (table, stdout);
    else
        printf ("no queues\n");
    output_table_destroy (&table);

    //  Per job manager
    json_t *by_worker = s_get (root, "processed_messages_by_worker");
    json_t *jm_maps[] = { by_worker };
    count = s_union_keys (jm_maps, 1, &names);
    table = output_table_new ("JOB MANAGER", "PROCESSED", NULL);
    if (count > 0 && table) {
        output_table_align_right (table, 1);
        for (int i = 0; i < count; i++) {
            char b[64];
            output_table_add (table, names[i],
                              s_cell (s_get (by_worker, names[i]), b, 64));
        }
        printf ("\n");
        output_table_print (table, stdout);
    }
    free (names);
    output_table_destroy (&table);

    //  emq extensions: storage and job managers
    json_t *storage = s_get (root, "storage");
    json_t *store = s_get (root, "store");
    json_t *jms = s_get (root, "job_managers");
    if (storage || store || jms)
        printf ("\n");
    if (storage || store)
        s_print_storage (storage, store);
    if (jms) {
        char b[64];
        printf ("job managers: %s\n", s_cell (jms, b, sizeof b));
    }
    json_decref (root);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

//  "q1:20 q2:10" from [[20,"q1"],[10,"q2"]]
static void
s_queue_list (json_t *queues, char *buf, size_t buflen)
{
    buf[0] = 0;
    if (!json_is_array (queues)) {
        s_cell (queues, buf, buflen);
        return;
    }
    size_t index, used = 0;
    json_t *pair;
    json_array_foreach (queues, index, pair)
    {
        json_t *weight = json_array_get (pair, 0), *name = json_array_get (pair, 1);
        char w[32], n[128];
        int len = snprintf (buf + used, buflen - used, "%s%s:%s", used ? " " : "",
                            s_cell (name, n, sizeof n), s_cell (weight, w, sizeof w));
        if (len < 0 || (size_t) len >= buflen - used)
            break;
        used += (size_t) len;
    }
}

//  How long ago a monotonic-seconds timestamp was (the router's clock is
//  CLOCK_MONOTONIC, comparable with ours only on the same host: an
//  implausible age shows the raw value instead).
static void
s_heartbeat_age (json_t *hb, char *buf, size_t buflen)
{
    if (!json_is_number (hb)) {
        s_cell (hb, buf, buflen);
        return;
    }
    double age = (double) zclock_mono () / 1000.0 - json_number_value (hb);
    if (age >= 0 && age < 86400)
        snprintf (buf, buflen, "%.1fs ago", age);
    else
        snprintf (buf, buflen, "%.1f", json_number_value (hb));
}

//  "pid:jobs pid:jobs" from {"pid": jobs, ...}
static void
s_pid_list (json_t *pids, char *buf, size_t buflen)
{
    if (!json_is_object (pids)) {
        s_cell (pids, buf, buflen);
        return;
    }
    buf[0] = 0;
    size_t used = 0;
    const char *pid;
    json_t *jobs;
    json_object_foreach (pids, pid, jobs)
    {
        char n[32];
        int len = snprintf (buf + used, buflen - used, "%s%s:%s", used ? " " : "", pid,
                            s_cell (jobs, n, sizeof n));
        if (len < 0 || (size_t) len >= buflen - used)
            break;
        used += (size_t) len;
    }
    if (!used)
        snprintf (buf, buflen, "-");
}

//  A count for jobs_in_flight, whatever its shape (number, object, array).
static const char *
s_count (json_t *value, char *buf, size_t buflen)
{
    if (json_is_object (value))
        snprintf (buf, buflen, "%zu", json_object_size (value));
    else if (json_is_array (value))
        snprintf (buf, buflen, "%zu", json_array_size (value));
    else
        return s_cell (value, buf, buflen);
    return buf;
}

int
cli_workers (cli_t *cli, int argc, char **argv)
{
    bool json_out = false;
    json_t *root = NULL;
    int rc = s_parse (cli, argc, argv, &json_out, true);
    if (!rc)
        rc = s_ask (cli, "ROUTER_SHOW_WORKERS", json_out, &root);
    if (rc)
        return rc - 100;

    json_t *workers = s_get (root, "connected_workers");
    json_t *maps[] = { workers };
    const char **ids = NULL;
    int count = s_union_keys (maps, 1, &ids);
    output_table_t *table = output_table_new (
        "JOB MANAGER", "QUEUES", "FREE SLOTS", "LAST HEARTBEAT", "IN FLIGHT", "PROCESSED",
        "REQUESTS", "READY SENT", "STATE", "WORKERS (idle)", "WORKER PIDS:JOBS", NULL);
    if (count < 0 || !table) {
        free (ids);
        output_table_destroy (&table);
        json_decref (root);
        return cli_fail (CLI_EXIT_FAILED, "out of memory");
    }
    for (size_t c = 2; c < 8; c++)
        output_table_align_right (table, c);
    output_table_align_right (table, 3);
    for (int i = 0; i < count; i++) {
        json_t *jm = s_get (workers, ids[i]);
        json_t *stats = s_get (jm, "stats");
        char queues[512], slots[64], hb[64], inflight[64], processed[64];
        char requests[64], ready[64], pids[1024], state[64], workers_n[64], idle[64];
        char pool[160];
        s_queue_list (s_get (jm, "queues"), queues, sizeof queues);
        s_heartbeat_age (s_get (jm, "hb"), hb, sizeof hb);
        json_t *in_flight = s_get (jm, "inflight") ? s_get (jm, "inflight")
                                                   : s_get (stats, "jobs_in_flight");
        s_pid_list (s_get (stats, "pid_distribution"), pids, sizeof pids);
        s_cell (s_get (stats, "workers"), workers_n, sizeof workers_n);
        s_cell (s_get (stats, "idle_workers"), idle, sizeof idle);
        if (streq (idle, "-"))
            snprintf (pool, sizeof pool, "%s", workers_n);
        else
            snprintf (pool, sizeof pool, "%s (%s)", workers_n, idle);
        output_table_add (
            table, ids[i], queues,
            s_cell (s_get (jm, "available_slots"), slots, sizeof slots), hb,
            s_count (in_flight, inflight, sizeof inflight),
            s_cell (s_get (jm, "processed"), processed, sizeof processed),
            s_cell (s_get (stats, "total_requests"), requests, sizeof requests),
            s_cell (s_get (stats, "total_ready_sent"), ready, sizeof ready),
            s_cell (s_get (stats, "state"), state, sizeof state), pool, pids);
    }
    free (ids);
    if (output_table_rows (table))
        output_table_print (table, stdout);
    else
        printf ("no job managers connected\n");
    output_table_destroy (&table);

    //  Queue membership: {"q": [[weight, "jm id"], ...]}
    json_t *by_queue = s_get (root, "connected_queues");
    json_t *queue_maps[] = { by_queue };
    const char **names = NULL;
    count = s_union_keys (queue_maps, 1, &names);
    table = output_table_new ("QUEUE", "JOB MANAGERS (id:weight)", NULL);
    if (count > 0 && table) {
        for (int i = 0; i < count; i++) {
            char members[1024] = "";
            json_t *list = s_get (by_queue, names[i]);
            size_t index, used = 0;
            json_t *pair;
            if (json_is_array (list))
                json_array_foreach (list, index, pair)
                {
                    char w[32], id[256];
                    int len = snprintf (members + used, sizeof members - used, "%s%s:%s",
                                        used ? " " : "",
                                        s_cell (json_array_get (pair, 1), id, sizeof id),
                                        s_cell (json_array_get (pair, 0), w, sizeof w));
                    if (len < 0 || (size_t) len >= sizeof members - used)
                        break;
                    used += (size_t) len;
                }
            else
                s_cell (list, members, sizeof members);
            output_table_add (table, names[i], members);
        }
        printf ("\n");
        output_table_print (table, stdout);
    }
    free (names);
    output_table_destroy (&table);
    json_decref (root);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

int
cli_schedulers (cli_t *cli, int argc, char **argv)
{
    bool json_out = false;
    json_t *root = NULL;
    int rc = s_parse (cli, argc, argv, &json_out, true);
    if (!rc)
        rc = s_ask (cli, "ROUTER_SHOW_SCHEDULERS", json_out, &root);
    if (rc)
        return rc - 100;
    //  The shape is loose (EventMQ: {"connected_schedulers": ...}): show each
    //  top-level key's entries, one per line.
    output_table_t *table = output_table_new ("SCHEDULER", "DETAILS", NULL);
    if (!table) {
        json_decref (root);
        return cli_fail (CLI_EXIT_FAILED, "out of memory");
    }
    const char *key;
    json_t *value;
    json_object_foreach (root, key, value)
    {
        char id[256], details[1024];
        if (json_is_object (value)) {
            const char *sub;
            json_t *item;
            json_object_foreach (value, sub, item)
                output_table_add (table, sub, s_cell (item, details, sizeof details));
        }
        else if (json_is_array (value)) {
            size_t index;
            json_t *item;
            json_array_foreach (value, index, item)
            {
                //  [id, ...] or {"id": ...} or "id"
                json_t *first = json_is_array (item) ? json_array_get (item, 0)
                                : s_get (item, "id") ? s_get (item, "id")
                                                     : item;
                output_table_add (table, s_cell (first, id, sizeof id),
                                  first == item ? "-"
                                                : s_cell (item, details, sizeof details));
            }
        }
        else
            output_table_add (table, key, s_cell (value, details, sizeof details));
    }
    if (output_table_rows (table))
        output_table_print (table, stdout);
    else
        printf ("no schedulers connected\n");
    output_table_destroy (&table);
    json_decref (root);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

int
cli_disconnect (cli_t *cli, int argc, char **argv)
{
    bool json_out = false;
    int rc = s_parse (cli, argc, argv, &json_out, false);
    if (rc)
        return rc - 100;
    char *reply = NULL;
    rc = emq_admin (cli->admin, "DISCONNECT", cli->connect_timeout_ms, &reply);
    if (rc) {
        int code = cli_fail (cli_exit_for (rc), "DISCONNECT: %s",
                             reply ? reply : emq_strerror (rc));
        free (reply);
        return code;
    }
    free (reply);
    printf ("router at %s is shutting down\n", cli->admin);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

//  --------------------------------------------------------------------------
//  Jobs: cancel, dead

//  Parses the options of cancel and dead (--json, --all where allowed, the
//  global ones; options may come anywhere) and up to max_args arguments,
//  which end up at argv[*first .. argc). Returns 0 or exit code + 100.
static int
s_parse_job (cli_t *cli, int argc, char **argv, bool *json_out, bool *all_out,
             int max_args, int *first)
{
    static const struct option options[] = { { "json", no_argument, NULL, 'j' },
                                             { "all", no_argument, NULL, 'a' },
                                             CLI_GLOBAL_OPTIONS };
    int opt;
    while ((opt = getopt_long (argc, argv, ":", options, NULL)) != -1) {
        if ((opt == 'j' && json_out) || (opt == 'a' && all_out))
            *(opt == 'j' ? json_out : all_out) = true;
        else if (opt == '?' || opt == 'j' || opt == 'a')
            return 100
                   + cli_usage_error ("%s: unknown option '%s'", argv[0],
                                      argv[optind - 1]);
        else if (opt == ':')
            return 100
                   + cli_usage_error ("%s: option '%s' needs a value", argv[0],
                                      argv[optind - 1]);
        else {
            int rc = cli_global_option (cli, opt, optarg);
            if (rc >= 100)
                return rc;
        }
    }
    if (argc - optind > max_args)
        return 100
               + cli_usage_error ("%s: unexpected argument '%s'", argv[0],
                                  argv[optind + max_args]);
    *first = optind;
    int rc = cli_setup (cli);
    return rc ? 100 + rc : 0;
}

//  Reports a failed admin_job call and returns the exit code.
static int
s_job_fail (const char *what, int rc, char *reply)
{
    int code = cli_exit_for (rc);
    cli_fail (code, "%s: %s", what, reply ? reply : emq_strerror (rc));
    free (reply);
    return code;
}

int
cli_cancel (cli_t *cli, int argc, char **argv)
{
    int first = 0;
    int rc = s_parse_job (cli, argc, argv, NULL, NULL, 1, &first);
    if (rc)
        return rc - 100;
    if (first >= argc || !*argv[first])
        return cli_usage_error ("cancel: expected MSGID");
    const char *msgid = argv[first];
    char *reply = NULL;
    rc = emq_admin_job (cli->admin, "CANCEL", msgid, cli->connect_timeout_ms, &reply);
    if (rc == EMQ_ERR_NOT_FOUND) {
        free (reply);
        return cli_fail (CLI_EXIT_NOT_FOUND,
                         "cancel: no job %s is waiting or running "
                         "(unknown, or it has ended)",
                         msgid);
    }
    if (rc) {
        char what[200];
        snprintf (what, sizeof what, "cancel %s", msgid);
        return s_job_fail (what, rc, reply);
    }
    free (reply);
    //  A waiting job is cancelled now; a running one when its job manager
    //  has stopped it (its result then says "cancelled").
    printf ("job %s: cancel accepted\n", msgid);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

//  "42s", "5m", "3h", "2d" since a unix time; "-" when unknown.
static void
s_age (json_t *since, char *buf, size_t buflen)
{
    if (!json_is_number (since) || json_number_value (since) <= 0) {
        snprintf (buf, buflen, "-");
        return;
    }
    double age = clock_wall_s () - json_number_value (since);
    if (age < 0)
        age = 0;
    if (age < 120)
        snprintf (buf, buflen, "%.0fs", age);
    else if (age < 2 * 3600)
        snprintf (buf, buflen, "%.0fm", age / 60);
    else if (age < 2 * 86400)
        snprintf (buf, buflen, "%.0fh", age / 3600);
    else
        snprintf (buf, buflen, "%.0fd", age / 86400);
}

//  Cuts a cell to at most max code points, with "..." when cut.
static void
s_truncate (char *text, size_t max)
{
    size_t points = 0;
    for (char *p = text; *p; p++)
        if ((*p & 0xC0) != 0x80 && ++points > max) {
            //  p starts code point max + 1: keep max - 3 and add "...".
            size_t keep = 0, seen = 0;
            for (char *q = text; q < p; q++)
                if ((*q & 0xC0) != 0x80 && ++seen > max - 3) {
                    keep = (size_t) (q - text);
                    break;
                }
            strcpy (text + keep, "...");
            return;
        }
}

static int
s_dead_list (cli_t *cli, bool json_out)
{
    char *reply = NULL;
    int rc =
        emq_admin_job (cli->admin, "DEAD_LIST", NULL, cli->connect_timeout_ms, &reply);
    if (rc)
        return s_job_fail ("dead", rc, reply);
    if (json_out) {
        printf ("%s\n", reply);
        free (reply);
        return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
    }
    json_error_t error;
    json_t *root = json_loads (reply, JSON_DECODE_ANY, &error);
    json_t *dead = s_get (root, "dead");
    if (!json_is_array (dead)) {
        cli_fail (CLI_EXIT_FAILED, "dead: the router's reply has no \"dead\" list; "
                                   "as received:");
        printf ("%s\n", reply);
        json_decref (root);
        free (reply);
        return CLI_EXIT_FAILED;
    }
    free (reply);
    output_table_t *table =
        output_table_new ("MSGID", "QUEUE", "ATTEMPTS", "AGE", "ERROR", NULL);
    if (!table) {
        json_decref (root);
        return cli_fail (CLI_EXIT_FAILED, "out of memory");
    }
    output_table_align_right (table, 2);
    output_table_align_right (table, 3);
    size_t index;
    json_t *job;
    json_array_foreach (dead, index, job)
    {
        char msgid[256], queue[256], attempts[64], age[64], status[64], text[512];
        char error_cell[600];
        s_cell (s_get (job, "error"), text, sizeof text);
        s_cell (s_get (job, "status"), status, sizeof status);
        snprintf (error_cell, sizeof error_cell, "%s: %s", status, text);
        s_truncate (error_cell, 60);
        s_age (s_get (job, "ended_at"), age, sizeof age);
        output_table_add (table, s_cell (s_get (job, "msgid"), msgid, sizeof msgid),
                          s_cell (s_get (job, "queue"), queue, sizeof queue),
                          s_cell (s_get (job, "attempts"), attempts, sizeof attempts),
                          age, error_cell);
    }
    if (output_table_rows (table))
        output_table_print (table, stdout);
    else
        printf ("no dead jobs\n");
    json_t *total = s_get (root, "total");
    if (json_is_integer (total)
        && (size_t) json_integer_value (total) > json_array_size (dead))
        printf ("(%zu shown of %" JSON_INTEGER_FORMAT " dead jobs)\n",
                json_array_size (dead), json_integer_value (total));
    output_table_destroy (&table);
    json_decref (root);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

//  DEAD_RETRY or DEAD_PURGE: {"retried": N} / {"purged": N}, printed as
//  "retried N dead job(s)".
static int
s_dead_count (cli_t *cli, const char *command, const char *ref, const char *key,
              bool json_out)
{
    char *reply = NULL;
    int rc = emq_admin_job (cli->admin, command, ref, cli->connect_timeout_ms, &reply);
    if (rc)
        return s_job_fail (ref && !streq (ref, "*") ? ref : "dead", rc, reply);
    json_t *root = json_loads (reply, JSON_DECODE_ANY, NULL);
    json_t *count = s_get (root, key);
    json_t *error = s_get (root, "error");
    int code = CLI_EXIT_OK;
    if (json_out)
        printf ("%s\n", reply);
    else if (json_is_integer (count))
        printf ("%s %" JSON_INTEGER_FORMAT " dead job%s\n", key,
                json_integer_value (count), json_integer_value (count) == 1 ? "" : "s");
    else
        code = cli_fail (CLI_EXIT_FAILED, "dead: unexpected reply from the router: %s",
                         reply);
    if (json_is_string (error))
        code = cli_fail (CLI_EXIT_FAILED, "dead: the router reports: %s",
                         json_string_value (error));
    else if (code == CLI_EXIT_OK && ref && !streq (ref, "*") && json_is_integer (count)
             && json_integer_value (count) == 0)
        code = cli_fail (CLI_EXIT_NOT_FOUND,
                         "dead retry: %s is not a dead job (unknown, "
                         "purged, or not dead)",
                         ref);
    json_decref (root);
    free (reply);
    if (fflush (stdout))
        code = CLI_EXIT_FAILED;
    return code;
}

int
cli_dead (cli_t *cli, int argc, char **argv)
{
    bool json_out = false, all = false;
    int first = 0;
    int rc = s_parse_job (cli, argc, argv, &json_out, &all, 2, &first);
    if (rc)
        return rc - 100;
    const char *action = first < argc ? argv[first] : "list";
    const char *arg = first + 1 < argc ? argv[first + 1] : NULL;
    if (streq (action, "list")) {
        if (arg || all)
            return cli_usage_error ("dead: list takes no argument");
        return s_dead_list (cli, json_out);
    }
    if (streq (action, "retry")) {
        if ((arg != NULL) == all)
            return cli_usage_error ("dead retry: expected MSGID or --all");
        if (arg && (!*arg || strlen (arg) > EMQ_MSGID_MAX))
            return cli_usage_error ("dead retry: MSGID must be 1..%d bytes",
                                    EMQ_MSGID_MAX);
        return s_dead_count (cli, "DEAD_RETRY", all ? "*" : arg, "retried", json_out);
    }
    if (streq (action, "purge")) {
        if (arg || all)
            return cli_usage_error ("dead purge: takes no argument");
        return s_dead_count (cli, "DEAD_PURGE", NULL, "purged", json_out);
    }
    if (streq (action, "delete")) {
        if (!arg || all || !*arg || strlen (arg) > EMQ_MSGID_MAX)
            return cli_usage_error ("dead delete: expected one MSGID of 1..%d bytes",
                                    EMQ_MSGID_MAX);
        return s_dead_count (cli, "DEAD_DELETE", arg, "deleted", json_out);
    }
    return cli_usage_error ("dead: expected list, retry, delete or purge, not '%s'",
                            action);
}

//  --------------------------------------------------------------------------
//  Fences: the schedulers' fencing tokens

static int
s_fence_show (cli_t *cli, bool json_out)
{
    char *reply = NULL;
    int rc =
        emq_admin_job (cli->admin, "FENCE_SHOW", NULL, cli->connect_timeout_ms, &reply);
    if (rc)
        return s_job_fail ("fence", rc, reply);
    if (json_out) {
        printf ("%s\n", reply);
        free (reply);
        return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
    }
    json_t *root = json_loads (reply, JSON_DECODE_ANY, NULL);
    json_t *fences = s_get (root, "fences");
    if (!json_is_array (fences)) {
        cli_fail (CLI_EXIT_FAILED, "fence: the router's reply has no \"fences\" list; "
                                   "as received:");
        printf ("%s\n", reply);
        json_decref (root);
        free (reply);
        return CLI_EXIT_FAILED;
    }
    free (reply);
    output_table_t *table = output_table_new ("SCOPE", "TOKEN", NULL);
    if (!table) {
        json_decref (root);
        return cli_fail (CLI_EXIT_FAILED, "out of memory");
    }
    output_table_align_right (table, 1);
    size_t index;
    json_t *fence;
    json_array_foreach (fences, index, fence)
    {
        char scope[256], token[64];
        s_cell (s_get (fence, "scope"), scope, sizeof scope);
        output_table_add (table, *scope ? scope : "(legacy)",
                          s_cell (s_get (fence, "token"), token, sizeof token));
    }
    if (output_table_rows (table))
        output_table_print (table, stdout);
    else
        printf ("no fencing tokens held\n");
    output_table_destroy (&table);
    json_decref (root);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

int
cli_fence (cli_t *cli, int argc, char **argv)
{
    bool json_out = false, all = false;
    int first = 0;
    int rc = s_parse_job (cli, argc, argv, &json_out, &all, 2, &first);
    if (rc)
        return rc - 100;
    const char *action = first < argc ? argv[first] : "show";
    const char *arg = first + 1 < argc ? argv[first + 1] : NULL;
    if (streq (action, "show")) {
        if (arg || all)
            return cli_usage_error ("fence: show takes no argument");
        return s_fence_show (cli, json_out);
    }
    if (!streq (action, "reset"))
        return cli_usage_error ("fence: expected show or reset, not '%s'", action);
    if ((arg != NULL) == all)
        return cli_usage_error ("fence reset: expected SCOPE or --all");
    if (arg && (!*arg || strlen (arg) > 64))
        return cli_usage_error ("fence reset: SCOPE must be 1..64 bytes");
    const char *scope = all ? "*" : arg;
    char *reply = NULL;
    rc =
        emq_admin_job (cli->admin, "FENCE_RESET", scope, cli->connect_timeout_ms, &reply);
    if (rc)
        return s_job_fail (all ? "fence" : scope, rc, reply);
    free (reply);
    printf ("fencing token%s of %s forgotten\n", all ? "s" : "",
            all ? "every scope" : scope);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
