/*  jobs, job, queue, jobmanager — emq-cli's job and queue admin, on
    libemq's emq_jobs_list, emq_job_show, emq_queue_admin and
    emq_jobmanager_quiet (the router's ADMIN command, docs/protocol.md).
    --json prints the router's reply as it is; otherwise a table or lines.
*/
#include "cli.h"
#include "numparse.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Ends an admin call: the error (exit code by its kind), or the reply
//  parsed (*root) for the caller to print. Returns -1 to go on.
static int
s_answer (const char *what, int rc, char *reply, json_t **root)
{
    if (rc) {
        int code = cli_fail (cli_exit_for (rc), "%s: %s", what,
                             reply ? reply : emq_strerror (rc));
        free (reply);
        return code;
    }
    *root = json_loads (reply ? reply : "", 0, NULL);
    if (!*root) {
        int code = cli_fail (CLI_EXIT_FAILED, "%s: the router's reply is not JSON", what);
        free (reply);
        return code;
    }
    free (reply);
    return -1;
}

static int
s_print_json (json_t *root)
{
    char *text = json_dumps (root, JSON_COMPACT);
    printf ("%s\n", text ? text : "{}");
    free (text);
    json_decref (root);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

//  The options of these commands: --json, and the global ones.
static int
s_options (cli_t *cli, const char *command, int argc, char **argv,
           const struct option *options, int (*on_option) (int opt, void *arg), void *arg)
{
    int opt;
    optind = 0;
    while ((opt = getopt_long (argc, argv, "+:", options, NULL)) != -1) {
        int rc = on_option ? on_option (opt, arg) : -1;
        if (rc > 0)
            return rc;
        if (rc == 0)
            continue;
        rc = cli_other_option (cli, command, opt, optarg, argv);
        if (rc >= 100)
            return rc - 100 + 1000;  // exit now with rc - 100
        if (rc)
            return rc;
    }
    return 0;
}

typedef struct {
    const char *queue, *state;
    uint64_t offset, limit;
    bool json;
} s_jobs_args_t;

static int
s_jobs_option (int opt, void *arg)
{
    s_jobs_args_t *a = (s_jobs_args_t *) arg;
    switch (opt) {
        case 'q':
            a->queue = optarg;
            return 0;
        case 's':
            a->state = optarg;
            return 0;
        case 'o':
            if (numparse_uint (optarg, UINT32_MAX, &a->offset))
                return cli_usage_error ("jobs: --offset '%s' is not a number", optarg);
            return 0;
        case 'l':
            if (numparse_uint (optarg, 1000, &a->limit) || a->limit == 0)
                return cli_usage_error ("jobs: --limit '%s' is not a number in 1..1000",
                                        optarg);
            return 0;
        case 'j':
            a->json = true;
            return 0;
        default:
            return -1;
    }
}

//  "2026-12-02T17:35:03Z", or "-".
static const char *
s_time (json_t *value, char *buf, size_t size)
{
    if (!json_is_number (value))
        return "-";
    time_t t = (time_t) json_number_value (value);
    struct tm tm;
    strftime (buf, size, "%Y-%m-%dT%H:%M:%SZ", gmtime_r (&t, &tm));
    return buf;
}

int
cli_jobs (cli_t *cli, int argc, char **argv)
{
    static const struct option options[] = { { "queue", required_argument, NULL, 'q' },
                                             { "state", required_argument, NULL, 's' },
                                             { "offset", required_argument, NULL, 'o' },
                                             { "limit", required_argument, NULL, 'l' },
                                             { "json", no_argument, NULL, 'j' },
                                             CLI_GLOBAL_OPTIONS };
    s_jobs_args_t a = { .state = "waiting", .limit = 100 };
    int rc = s_options (cli, "jobs", argc, argv, options, s_jobs_option, &a);
    if (rc)
        return rc >= 1000 ? rc - 1000 : rc;
    if (optind != argc)
        return cli_usage_error ("jobs: unexpected argument '%s'", argv[optind]);
    static const char *states[] = { "waiting", "scheduled", "retrying", "running",
                                    "dead" };
    bool known = false;
    for (size_t i = 0; i < 5; i++)
        known = known || streq (a.state, states[i]);
    if (!known)
        return cli_usage_error (
            "jobs: --state '%s' is not waiting, scheduled, retrying, running or dead",
            a.state);
    if ((rc = cli_setup (cli)))
        return rc;
    char *reply = NULL;
    rc = emq_jobs_list (cli->admin, a.queue, a.state, (size_t) a.offset, (size_t) a.limit,
                        cli->connect_timeout_ms, &reply);
    json_t *root;
    if ((rc = s_answer ("jobs", rc, reply, &root)) != -1)
        return rc;
    if (a.json)
        return s_print_json (root);
    output_table_t *table = output_table_new ("MSGID", "QUEUE", "STATE", "ATTEMPT",
                                              "RUN AT / ENDED", "JOB MANAGER", NULL);
    output_table_align_right (table, 3);
    size_t index;
    json_t *job;
    json_array_foreach (json_object_get (root, "jobs"), index, job)
    {
        char attempt[32], when[64];
        snprintf (attempt, sizeof attempt, "%lld",
                  (long long) json_integer_value (json_object_get (job, "attempt")));
        json_t *at = json_object_get (job, "run_at");
        if (!at)
            at = json_object_get (job, "ended_at");
        output_table_add (table, json_string_value (json_object_get (job, "msgid")),
                          json_string_value (json_object_get (job, "queue")),
                          json_string_value (json_object_get (job, "state")), attempt,
                          s_time (at, when, sizeof when),
                          json_string_value (json_object_get (job, "jobmanager")));
    }
    long long total = json_integer_value (json_object_get (root, "total"));
    if (output_table_rows (table))
        output_table_print (table, stdout);
    printf ("%zu of %lld %s job(s) shown (from %lld)\n", output_table_rows (table), total,
            a.state, (long long) a.offset);
    output_table_destroy (&table);
    json_decref (root);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

static int
s_json_option (int opt, void *arg)
{
    if (opt != 'j')
        return -1;
    *(bool *) arg = true;
    return 0;
}

int
cli_job (cli_t *cli, int argc, char **argv)
{
    static const struct option options[] = { { "json", no_argument, NULL, 'j' },
                                             CLI_GLOBAL_OPTIONS };
    bool json_out = false;
    int rc = s_options (cli, "job", argc, argv, options, s_json_option, &json_out);
    if (rc)
        return rc >= 1000 ? rc - 1000 : rc;
    if (optind != argc - 1)
        return cli_usage_error ("job: expected one MSGID");
    if ((rc = cli_setup (cli)))
        return rc;
    char *reply = NULL;
    rc = emq_job_show (cli->admin, argv[optind], cli->connect_timeout_ms, &reply);
    json_t *root;
    if ((rc = s_answer ("job", rc, reply, &root)) != -1)
        return rc;
    if (json_out)
        return s_print_json (root);
    //  One "key: value" line per field; objects and arrays as JSON.
    json_t *job = json_object_get (root, "job");
    const char *key;
    json_t *value;
    json_object_foreach (job, key, value)
    {
        char *text = json_is_string (value)
                         ? strdup (json_string_value (value))
                         : json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
        printf ("%-17s %s\n", key, text ? text : "");
        free (text);
    }
    json_decref (root);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

//  queue pause|resume|purge NAME, jobmanager quiet|resume NAME.
static int
s_action (cli_t *cli, const char *command, int argc, char **argv)
{
    static const struct option options[] = { { "json", no_argument, NULL, 'j' },
                                             CLI_GLOBAL_OPTIONS };
    bool json_out = false;
    int rc = s_options (cli, command, argc, argv, options, s_json_option, &json_out);
    if (rc)
        return rc >= 1000 ? rc - 1000 : rc;
    bool queue = streq (command, "queue");
    if (optind != argc - 2)
        return cli_usage_error (queue ? "queue: expected pause|resume|purge NAME"
                                      : "jobmanager: expected quiet|resume NAME");
    const char *action = argv[optind], *name = argv[optind + 1];
    if (queue && !streq (action, "pause") && !streq (action, "resume")
        && !streq (action, "purge"))
        return cli_usage_error ("queue: '%s' is not pause, resume or purge", action);
    if (!queue && !streq (action, "quiet") && !streq (action, "resume"))
        return cli_usage_error ("jobmanager: '%s' is not quiet or resume", action);
    if ((rc = cli_setup (cli)))
        return rc;
    char *reply = NULL;
    rc = queue
             ? emq_queue_admin (cli->admin, action, name, cli->connect_timeout_ms, &reply)
             : emq_jobmanager_quiet (cli->admin, name, streq (action, "quiet"),
                                     cli->connect_timeout_ms, &reply);
    json_t *root;
    char what[300];
    snprintf (what, sizeof what, "%s %s %s", command, action, name);
    if ((rc = s_answer (what, rc, reply, &root)) != -1)
        return rc;
    if (json_out)
        return s_print_json (root);
    if (queue && streq (action, "purge"))
        printf ("queue %s: %lld waiting job(s) cancelled\n", name,
                (long long) json_integer_value (json_object_get (root, "purged")));
    else if (queue)
        printf ("queue %s: %s\n", name,
                json_is_true (json_object_get (root, "paused")) ? "paused" : "running");
    else {
        size_t index;
        json_t *id;
        json_array_foreach (json_object_get (root, "jobmanagers"), index, id) printf (
            "jobmanager %s: %s\n", json_string_value (id),
            json_is_true (json_object_get (root, "quiet")) ? "quiet" : "taking jobs");
    }
    json_decref (root);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

int
cli_queue (cli_t *cli, int argc, char **argv)
{
    return s_action (cli, "queue", argc, argv);
}

int
cli_jobmanager (cli_t *cli, int argc, char **argv)
{
    return s_action (cli, "jobmanager", argc, argv);
}
