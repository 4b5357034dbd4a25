/*  schedule, schedules, unschedule — emq-cli's commands for emq-scheduler.

    schedule builds the job like submit does (run or exec), checks the cron
    expression or interval here so that a mistake is reported at once (the
    router acknowledges SCHEDULE when a scheduler has it, before the
    scheduler parses it), and sends SCHEDULE through libemq. schedules reads
    the schedulers' own reports (their HEARTBEAT stats, which the router
    shows under ROUTER_SHOW_SCHEDULERS) and lists the leader's schedules.
*/
#include "cli.h"
#include "numparse.h"
#include "json.h"
#include "cron.h"

#include <czmq.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool s_wait_listed (cli_t *cli, const char *name, int want);

//  run LIBRARY FUNCTION [JSON_ARGS] | exec [--] ARGV...: the job's payload.
static int
s_payload (int argc, char **argv, void **payload, size_t *size)
{
    if (argc < 1)
        return cli_usage_error ("schedule: expected run LIBRARY FUNCTION [JSON_ARGS] or "
                                "exec -- ARGV...");
    if (streq (argv[0], "exec")) {
        int first = 1;
        if (first < argc && streq (argv[first], "--"))
            first++;
        if (first >= argc || !*argv[first])
            return cli_usage_error ("schedule exec: no command given (exec -- ARGV...)");
        int rc =
            emq_payload_exec ((const char *const *) argv + first, (size_t) (argc - first),
                              NULL, 0, NULL, 0, NULL, payload, size);
        return rc ? cli_usage_error ("schedule exec: cannot build the job: %s",
                                     emq_strerror (rc))
                  : 0;
    }
    if (!streq (argv[0], "run"))
        return cli_usage_error ("schedule: unknown job kind '%s' (run or exec)", argv[0]);
    if (argc < 3 || argc > 4)
        return cli_usage_error ("schedule run: expected LIBRARY FUNCTION [JSON_ARGS]");
    if (!*argv[1] || strchr (argv[1], '/'))
        return cli_usage_error (
            "schedule run: library '%s' must be a file name found in the "
            "job manager's plugin directories, not a path",
            argv[1]);
    if (!*argv[2])
        return cli_usage_error ("schedule run: the function name is empty");
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    if (argc == 4) {
        char err[256];
        if (json_to_msgpack (argv[3], &args, err, sizeof err)) {
            msgpack_sbuffer_destroy (&args);
            return cli_usage_error ("schedule run: JSON_ARGS: %s", err);
        }
    }
    int rc = emq_payload_run (argv[1], argv[2], args.size ? args.data : NULL, args.size,
                              payload, size);
    msgpack_sbuffer_destroy (&args);
    return rc ? cli_usage_error ("schedule run: cannot build the job: %s",
                                 emq_strerror (rc))
              : 0;
}

int
cli_schedule (cli_t *cli, int argc, char **argv)
{
    enum {
        O_NAME = 1,
        O_CRON,
        O_EVERY,
        O_NOHASTE,
        O_RUNS,
        O_QUEUE,
        O_MISFIRE,
        O_TZ,
        O_HEADER
    };
    static const struct option options[] = {
        { "name", required_argument, NULL, O_NAME },
        { "cron", required_argument, NULL, O_CRON },
        { "every", required_argument, NULL, O_EVERY },
        { "nohaste", no_argument, NULL, O_NOHASTE },
        { "runs", required_argument, NULL, O_RUNS },
        { "queue", required_argument, NULL, O_QUEUE },
        { "misfire", required_argument, NULL, O_MISFIRE },
        { "timezone", required_argument, NULL, O_TZ },
        { "header", required_argument, NULL, O_HEADER },
        CLI_GLOBAL_OPTIONS
    };
    emq_schedule_opts_t opts = { 0 };
    char headers[1025] = "";
    char err[256];
    int opt;
    optind = 0;
    while ((opt = getopt_long (argc, argv, "+:", options, NULL)) != -1) {
        switch (opt) {
            case O_NAME:
                opts.name = optarg;
                break;
            case O_CRON: {
                cron_t *cron = cron_new (optarg, err, sizeof err);
                if (!cron)
                    return cli_usage_error ("--cron '%s': %s", optarg, err);
                cron_destroy (&cron);
                opts.cron = optarg;
                break;
            }
            case O_EVERY:
                if (cron_interval_parse (optarg, &opts.interval_s, err, sizeof err))
                    return cli_usage_error ("--every: %s", err);
                break;
            case O_NOHASTE:
                opts.nohaste = true;
                break;
            case O_RUNS: {
                uint64_t runs;
                if (numparse_uint (optarg, UINT32_MAX, &runs) || runs == 0)
                    return cli_usage_error ("--runs: '%s' is not a number in 1..%u",
                                            optarg, UINT32_MAX);
                opts.runs = (uint32_t) runs;
                break;
            }
            case O_QUEUE:
                opts.queue = optarg;
                break;
            case O_MISFIRE:
                if (!streq (optarg, "skip") && !streq (optarg, "once"))
                    return cli_usage_error ("--misfire: '%s' is not skip or once",
                                            optarg);
                opts.misfire_skip = streq (optarg, "skip");
                break;
            case O_TZ:
                if (cron_tz_check (optarg, err, sizeof err))
                    return cli_usage_error ("--timezone: %s", err);
                opts.timezone = optarg;
                break;
            case O_HEADER: {
                size_t used = strlen (headers);
                if (snprintf (headers + used, sizeof headers - used, "%s%s",
                              used ? "," : "", optarg)
                    >= (int) (sizeof headers - used))
                    return cli_usage_error ("--header: headers longer than 1024 bytes");
                break;
            }
            default: {
                int rc = cli_other_option (cli, "schedule", opt, optarg, argv);
                if (rc >= 100)
                    return rc - 100;
                if (rc)
                    return rc;
            }
        }
    }
    if (!opts.name)
        return cli_usage_error ("schedule: --name is required");
    if ((opts.cron != NULL) == (opts.interval_s > 0))
        return cli_usage_error (
            "schedule: give exactly one of --cron EXPR and --every N");
    if (opts.nohaste && opts.cron)
        return cli_usage_error ("schedule: --nohaste applies to --every only");
    opts.extra_headers = *headers ? headers : NULL;
    void *payload = NULL;
    size_t size = 0;
    int rc = s_payload (argc - optind, argv + optind, &payload, &size);
    if (rc)
        return rc;
    rc = cli_setup (cli);
    if (rc == 0 && !opts.queue)
        opts.queue = cli->default_queue;
    if (rc) {
        free (payload);
        return rc;
    }
    emq_client_t *client = emq_client_new (cli->frontend);
    if (!client) {
        free (payload);
        return cli_usage_error ("cannot connect to '%s': not a valid endpoint",
                                cli->frontend);
    }
    emq_client_set_connect_timeout (client, cli->connect_timeout_ms);
    rc = emq_schedule (client, &opts, payload, size, cli->connect_timeout_ms);
    free (payload);
    int code = CLI_EXIT_OK;
    if (rc)
        code = cli_fail (cli_exit_for (rc), "schedule %s: %s", opts.name,
                         emq_client_last_error (client));
    else {
        //  Returns once the scheduler lists it, so that `schedules` next
        //  shows it; a refusal (bad cron field) comes back meanwhile.
        if (!s_wait_listed (cli, opts.name, 1))
            fprintf (stderr, "emq-cli: schedule %s: not listed by the scheduler yet\n",
                     opts.name);
        printf ("%s\n", opts.name);
    }
    emq_client_destroy (&client);
    return code ? code : (fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK);
}

//  The schedules of the scheduler whose list counts (the leader's; without
//  a leader, any that reports one), from ROUTER_SHOW_SCHEDULERS's reply
//  root (borrowed), or NULL when none reports schedules.
static json_t *
s_listed_schedules (json_t *root, const char **leader)
{
    json_t *connected = json_object_get (root, "connected_schedulers");
    json_t *chosen = NULL;
    const char *key;
    json_t *value;
    if (leader)
        *leader = NULL;
    json_object_foreach (connected, key, value)
    {
        json_t *stats = json_object_get (value, "stats");
        if (json_is_true (json_object_get (stats, "leader"))) {
            chosen = stats;
            if (leader)
                *leader = json_string_value (json_object_get (stats, "id"));
        }
        else if (!chosen && json_object_get (stats, "schedules"))
            chosen = stats;
    }
    return json_object_get (chosen, "schedules");
}

//  Whether the scheduler lists schedule name: 1 yes, 0 no, -1 unknown (no
//  router answer, or no scheduler that reports its schedules).
static int
s_listed (cli_t *cli, const char *name)
{
    char *reply = NULL;
    if (emq_admin (cli->admin, "ROUTER_SHOW_SCHEDULERS", cli->connect_timeout_ms,
                   &reply)) {
        free (reply);
        return -1;
    }
    json_t *root = json_loads (reply, 0, NULL);
    free (reply);
    json_t *list = s_listed_schedules (root, NULL);
    int found = list ? 0 : -1;
    size_t index;
    json_t *item;
    json_array_foreach (list, index, item)
    {
        const char *listed = json_string_value (json_object_get (item, "name"));
        if (listed && streq (listed, name))
            found = 1;
    }
    json_decref (root);
    return found;
}

//  Waits (up to 2 s) until the scheduler's list shows name (want 1) or no
//  longer shows it (want 0); the scheduler reports at once after a change.
static bool
s_wait_listed (cli_t *cli, const char *name, int want)
{
    int64_t deadline = zclock_mono () + 2000;
    while (true) {
        int found = s_listed (cli, name);
        if (found == want || found == -1)
            return found == want;
        if (zclock_mono () >= deadline)
            return false;
        zclock_sleep (20);
    }
}

int
cli_unschedule (cli_t *cli, int argc, char **argv)
{
    enum { O_KILL = 1 };
    static const struct option options[] = {
        { "kill-running", no_argument, NULL, O_KILL }, CLI_GLOBAL_OPTIONS
    };
    bool kill_running = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long (argc, argv, ":", options, NULL)) != -1) {
        if (opt == O_KILL)
            kill_running = true;
        else if (opt == ':' || opt == '?')
            return cli_usage_error ("unschedule: bad option '%s'", argv[optind - 1]);
        else {
            int rc = cli_global_option (cli, opt, optarg);
            if (rc >= 100)
                return rc - 100;
        }
    }
    if (optind != argc - 1)
        return cli_usage_error ("unschedule: expected one schedule NAME");
    const char *name = argv[optind];
    int rc = cli_setup (cli);
    if (rc)
        return rc;
    emq_client_t *client = emq_client_new (cli->frontend);
    if (!client)
        return cli_usage_error ("cannot connect to '%s': not a valid endpoint",
                                cli->frontend);
    emq_client_set_connect_timeout (client, cli->connect_timeout_ms);
    //  A name the scheduler does not list is an error, not a silent no-op
    //  (when no scheduler reports its list, UNSCHEDULE goes out anyway).
    if (s_listed (cli, name) == 0) {
        emq_client_destroy (&client);
        return cli_fail (CLI_EXIT_NOT_FOUND, "unschedule %s: no such schedule", name);
    }
    rc = emq_unschedule (client, name, kill_running, cli->connect_timeout_ms);
    int code = rc ? cli_fail (cli_exit_for (rc), "unschedule %s: %s", name,
                              emq_client_last_error (client))
                  : CLI_EXIT_OK;
    if (code == CLI_EXIT_OK && !s_wait_listed (cli, name, 0))
        fprintf (stderr, "emq-cli: unschedule %s: still listed by the scheduler\n", name);
    emq_client_destroy (&client);
    return code;
}

//  "2026-11-23 03:00:00 CET" (local) or "2026-11-23T02:00:00Z" (UTC); "-"
//  for none.
static const char *
s_time (int64_t t, bool utc, char *buf, size_t size)
{
    if (t <= 0)
        return "-";
    time_t tt = (time_t) t;
    struct tm tm;
    if (utc)
        strftime (buf, size, "%Y-%m-%dT%H:%M:%SZ", gmtime_r (&tt, &tm));
    else
        strftime (buf, size, "%Y-%m-%d %H:%M:%S %Z", localtime_r (&tt, &tm));
    return buf;
}

int
cli_schedules (cli_t *cli, int argc, char **argv)
{
    static const struct option options[] = { { "json", no_argument, NULL, 'j' },
                                             CLI_GLOBAL_OPTIONS };
    bool json_out = false;
    int opt;
    optind = 0;
    while ((opt = getopt_long (argc, argv, ":", options, NULL)) != -1) {
        if (opt == 'j')
            json_out = true;
        else if (opt == ':' || opt == '?')
            return cli_usage_error ("schedules: bad option '%s'", argv[optind - 1]);
        else {
            int rc = cli_global_option (cli, opt, optarg);
            if (rc >= 100)
                return rc - 100;
        }
    }
    if (optind != argc)
        return cli_usage_error ("schedules: unexpected argument '%s'", argv[optind]);
    int rc = cli_setup (cli);
    if (rc)
        return rc;
    char *reply = NULL;
    rc =
        emq_admin (cli->admin, "ROUTER_SHOW_SCHEDULERS", cli->connect_timeout_ms, &reply);
    if (rc) {
        int code = cli_fail (cli_exit_for (rc), "ROUTER_SHOW_SCHEDULERS: %s",
                             reply ? reply : emq_strerror (rc));
        free (reply);
        return code;
    }
    json_t *root = json_loads (reply, 0, NULL);
    free (reply);
    json_t *connected = json_object_get (root, "connected_schedulers");
    //  The leader's list is the one that fires; without a leader, the
    //  newest report of any scheduler.
    json_t *members = json_array ();
    const char *key;
    json_t *value;
    json_object_foreach (connected, key, value)
    {
        json_t *stats = json_object_get (value, "stats");
        bool is_leader = json_is_true (json_object_get (stats, "leader"));
        json_array_append_new (
            members, json_pack ("{s:s, s:s?, s:s?, s:b}", "identity", key, "id",
                                json_string_value (json_object_get (stats, "id")), "mode",
                                json_string_value (json_object_get (stats, "mode")),
                                "leader", is_leader));
    }
    const char *leader = NULL;
    json_t *list = s_listed_schedules (root, &leader);
    if (json_out) {
        json_t *out = json_pack ("{s:s?, s:O, s:O}", "leader", leader, "schedulers",
                                 members, "schedules", list ? list : json_array ());
        char *text = json_dumps (out, JSON_COMPACT);
        printf ("%s\n", text ? text : "{}");
        free (text);
        json_decref (out);
    }
    else {
        output_table_t *table =
            output_table_new ("NAME", "SPEC", "QUEUE", "NEXT FIRE", "NEXT FIRE (UTC)",
                              "LAST FIRE", "LAST OUTCOME", "RUNS LEFT", NULL);
        size_t index;
        json_t *s;
        json_array_foreach (list, index, s)
        {
            char next[64], next_utc[64], last[64], runs[32];
            int64_t next_fire = json_integer_value (json_object_get (s, "next_fire"));
            int64_t last_fire = json_integer_value (json_object_get (s, "last_fire"));
            int64_t runs_left = json_integer_value (json_object_get (s, "runs_left"));
            const char *outcome = json_string_value (json_object_get (s, "last_outcome"));
            snprintf (runs, sizeof runs, "%lld", (long long) runs_left);
            output_table_add (table, json_string_value (json_object_get (s, "name")),
                              json_string_value (json_object_get (s, "spec")),
                              json_string_value (json_object_get (s, "queue")),
                              s_time (next_fire, false, next, sizeof next),
                              s_time (next_fire, true, next_utc, sizeof next_utc),
                              s_time (last_fire, false, last, sizeof last),
                              outcome && *outcome ? outcome : "-",
                              runs_left < 0 ? "-" : runs);
        }
        if (output_table_rows (table))
            output_table_print (table, stdout);
        else
            printf ("no schedules\n");
        if (json_array_size (members) == 0)
            printf ("no scheduler connected\n");
        else
            printf ("leader: %s (%zu scheduler%s connected)\n", leader ? leader : "none",
                    json_array_size (members), json_array_size (members) == 1 ? "" : "s");
        output_table_destroy (&table);
    }
    json_decref (members);
    json_decref (root);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
