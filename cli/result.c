/*  result — `emq-cli result MSGID`: the outcome of a job the router keeps
    (FETCH), and the way every command shows a job's outcome
    (cli_report_outcome, shared with `submit --wait`). See cli.h.

    The router answers FETCH with the stored RESULT at once when the job
    has ended, with ERROR NOT_FOUND when it knows no such job (or the result
    expired), and with nothing until the job ends when it is still queued,
    scheduled or running. So without --wait, a job counts as "not finished
    yet" (exit 9) when no answer came within S_PENDING_MS of a FETCH that
    reached a connected router.
*/
#include "cli.h"
#include "numparse.h"
#include "json.h"
#include "emq/client.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  How long `result` without --wait lets the router answer a FETCH. A
//  router reads an ended job's result from its store in well under this.
#define S_PENDING_MS 500

//  Prints a failed job's error text on stderr, without a doubled newline.
static void
s_print_failure (const emq_event_t *event)
{
    size_t size = event->size;
    const char *text = event->data ? event->data : "";
    while (size && (text[size - 1] == '\n' || text[size - 1] == '\r'))
        size--;
    fprintf (stderr, "emq-cli: job %s %s: %.*s\n", event->msgid,
             emq_job_status_name (event->status), (int) size,
             size ? text : "(no message)");
}

//  A string for JSON: the bytes as a string when they are UTF-8, else
//  {"$base64": "..."} (as common/json.h renders bytes).
static json_t *
s_json_bytes (const void *data, size_t size)
{
    json_t *string = json_stringn (data ? data : "", size);
    if (string)
        return string;
    char *base64 = json_base64 (data, size);
    json_t *object = base64 ? json_pack ("{s:s}", "$base64", base64) : NULL;
    free (base64);
    return object;
}

//  {"wall_us": N, ...} from "wall_us=N cpu_us=N maxrss_kb=N"; values that
//  are not numbers stay strings.
static json_t *
s_json_usage (const char *usage)
{
    json_t *object = json_object ();
    char *copy = strdup (usage);
    char *save = NULL;
    for (char *item = copy ? strtok_r (copy, " ", &save) : NULL; item && object;
         item = strtok_r (NULL, " ", &save)) {
        char *eq = strchr (item, '=');
        if (!eq || eq == item)
            continue;
        *eq = 0;
        uint64_t number;
        if (numparse_uint (eq + 1, INT64_MAX, &number) == 0)
            json_object_set_new (object, item, json_integer ((json_int_t) number));
        else
            json_object_set_new (object, item, json_string (eq + 1));
    }
    free (copy);
    return object;
}

//  Prints {"msgid","status","value"|"error","usage"} for an ended job.
static int
s_print_json (const emq_event_t *event)
{
    json_t *root = json_pack ("{s:s,s:s}", "msgid", event->msgid, "status",
                              emq_job_status_name (event->status));
    if (!root)
        return -1;
    if (event->status == EMQ_JOB_OK) {
        char err[256];
        char *text = json_from_msgpack (event->data, event->size, err, sizeof err);
        json_t *value = NULL;
        if (text) {
            value = json_loads (text, JSON_DECODE_ANY, NULL);
            free (text);
        }
        if (!value) {
            //  Not valid msgpack: show the bytes rather than nothing.
            fprintf (stderr, "emq-cli: the job's value is not valid msgpack: %s\n", err);
            value = s_json_bytes (event->data, event->size);
        }
        json_object_set_new (root, "value", value);
    }
    else
        json_object_set_new (root, "error", s_json_bytes (event->data, event->size));
    json_object_set_new (root, "usage", s_json_usage (event->usage));
    char *out = json_dumps (root, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref (root);
    if (!out)
        return -1;
    int rc = printf ("%s\n", out) < 0 ? -1 : 0;
    free (out);
    return fflush (stdout) ? -1 : rc;
}

int
cli_report_outcome (emq_client_t *client, const char *msgid, int rc,
                    const emq_event_t *event, bool json, int wait_timeout_ms)
{
    switch (rc) {
        case 0:
        case EMQ_ERR_JOB_FAILED:
        case EMQ_ERR_JOB_TIMEOUT: {
            int code = event->status == EMQ_JOB_OK        ? CLI_EXIT_OK
                       : event->status == EMQ_JOB_CRASHED ? CLI_EXIT_CRASHED
                       : event->status == EMQ_JOB_TIMEOUT ? CLI_EXIT_JOB_TIMEOUT
                       //  The job manager refused it (not allowed, no such
                       //  plugin): rejected, as the router's refusals are.
                       : event->status == EMQ_JOB_REJECTED ? CLI_EXIT_REJECTED
                                                           : CLI_EXIT_FAILED;
            if (json)
                return s_print_json (event) ? CLI_EXIT_FAILED : code;
            if (event->status == EMQ_JOB_OK)
                return output_value (stdout, event->data, event->size) ? CLI_EXIT_FAILED
                                                                       : CLI_EXIT_OK;
            s_print_failure (event);
            return code;
        }
        case EMQ_ERR_NOT_FOUND:
            return cli_fail (CLI_EXIT_NOT_FOUND,
                             "job %s: no such job (never submitted, or "
                             "its result has expired)",
                             msgid);
        case EMQ_ERR_REJECTED:
            return cli_fail (CLI_EXIT_REJECTED, "job %s rejected by router: %s", msgid,
                             emq_client_last_error (client));
        case EMQ_ERR_TIMEOUT:
            return cli_fail (CLI_EXIT_WAIT_TIMEOUT,
                             "job %s: no result within %.1f s "
                             "(it may still run)",
                             msgid, wait_timeout_ms / 1000.0);
        default:
            return cli_fail (cli_exit_for (rc), "job %s: %s", msgid,
                             emq_client_last_error (client));
    }
}

int
cli_result (cli_t *cli, int argc, char **argv)
{
    static const struct option options[] = { { "wait", no_argument, NULL, 'w' },
                                             { "wait-timeout", required_argument, NULL,
                                               'W' },
                                             { "json", no_argument, NULL, 'j' },
                                             CLI_GLOBAL_OPTIONS };
    bool wait = false, json = false;
    int wait_timeout_ms = -1;
    int opt, rc = 0;
    //  Options may follow the msgid (no '+': getopt permutes).
    while (!rc && (opt = getopt_long (argc, argv, ":", options, NULL)) != -1) {
        switch (opt) {
            case 'w':
                wait = true;
                break;
            case 'W':
                //  A bound on the wait implies the wait.
                wait = true;
                if (cli_parse_seconds (optarg, &wait_timeout_ms))
                    rc = cli_usage_error (
                        "--wait-timeout: '%s' is not a number of seconds", optarg);
                break;
            case 'j':
                json = true;
                break;
            default:
                rc = cli_other_option (cli, "result", opt, optarg, argv);
                if (rc >= 100)
                    return rc - 100;
        }
    }
    if (rc)
        return rc;
    if (optind + 1 != argc)
        return cli_usage_error ("result: expected one MSGID");
    const char *msgid = argv[optind];
    if (!*msgid || strlen (msgid) > EMQ_MSGID_MAX)
        return cli_usage_error ("result: MSGID must be 1..%d bytes", EMQ_MSGID_MAX);
    rc = cli_setup (cli);
    if (rc)
        return rc;

    emq_client_t *client = emq_client_new (cli->frontend);
    if (!client)
        return cli_usage_error ("cannot connect to '%s': not a valid endpoint",
                                cli->frontend);
    emq_client_set_connect_timeout (client, cli->connect_timeout_ms);
    emq_event_t event;
    rc = emq_result (client, msgid, wait ? wait_timeout_ms : S_PENDING_MS, &event);
    int code;
    if (rc == EMQ_ERR_TIMEOUT && !wait) {
        //  The FETCH reached the router, which holds it until the job ends.
        if (json) {
            json_t *root = json_pack ("{s:s,s:s}", "msgid", msgid, "status", "pending");
            char *out = root ? json_dumps (root, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
            printf ("%s\n", out ? out : "{\"status\":\"pending\"}");
            free (out);
            json_decref (root);
        }
        else
            fprintf (stderr,
                     "emq-cli: job %s has not finished yet (queued, scheduled or "
                     "running); use --wait to wait for it\n",
                     msgid);
        code = fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_PENDING;
    }
    else
        code = cli_report_outcome (client, msgid, rc, &event, json, wait_timeout_ms);
    emq_client_destroy (&client);
    return code;
}
