/*  demo — `emq-cli demo`: submit N real jobs at once (half `exec /bin/echo
    <i>`, half `run libemq_examples.so upper "job-<i>"`), all with
    reply-requested, and check every value that comes back.

    Jobs are kept in one array (owned here). Jobs waiting to be sent, or
    resent after a QUEUE_FULL refusal, sit in a FIFO; jobs sent and not yet
    finished are found by msgid in a hash. Both only borrow the jobs.
*/
#include "cli.h"
#include "numparse.h"
#include "json.h"
#include "emq/client.h"

#include <czmq.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_WINDOW 5000  // most jobs in flight at once
#define S_RETRY_MS 50  // pause before resending after QUEUE_FULL
#define S_SAMPLES 3    // results shown per kind
#define S_FAILURES_SHOWN 5

typedef enum { S_WAITING, S_SENT, S_OK, S_FAILED } s_state_t;

typedef struct {
    size_t index;
    bool is_exec;  // exec /bin/echo, else run upper
    s_state_t state;
    char msgid[37];
    int64_t send_after;  // zclock_mono ms; 0 = at once
    char *note;          // value shown (ok) or error (failed); owned
} s_job_t;

static void s_note (s_job_t *job, s_state_t state, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static void
s_note (s_job_t *job, s_state_t state, const char *format, ...)
{
    job->state = state;
    free (job->note);
    job->note = NULL;
    va_list args;
    va_start (args, format);
    if (vasprintf (&job->note, format, args) < 0)
        job->note = NULL;
    va_end (args);
}

static int
s_payload (const s_job_t *job, void **out, size_t *out_size)
{
    char text[32];
    if (job->is_exec) {
        snprintf (text, sizeof text, "%zu", job->index);
        const char *argv[] = { "/bin/echo", text };
        return emq_payload_exec (argv, 2, NULL, 0, NULL, 0, NULL, out, out_size);
    }
    snprintf (text, sizeof text, "job-%zu", job->index);
    char args[40];
    size_t len = strlen (text);
    args[0] = (char) (0xa0 | len);  // fixstr: len < 32
    memcpy (args + 1, text, len);
    return emq_payload_run ("libemq_examples.so", "upper", args, len + 1, out, out_size);
}

//  Checks the value of a finished job against what the job must return.
static void
s_check_result (s_job_t *job, const emq_event_t *event)
{
    if (event->status != EMQ_JOB_OK) {
        size_t size = event->size;
        const char *text = event->data ? event->data : "";
        while (size && (text[size - 1] == '\n' || text[size - 1] == '\r'))
            size--;
        s_note (job, S_FAILED, "%s: %.*s", emq_job_status_name (event->status),
                (int) (size > 200 ? 200 : size), text);
        return;
    }
    char expect[40];
    if (job->is_exec)
        snprintf (expect, sizeof expect, "%zu\n", job->index);
    else
        snprintf (expect, sizeof expect, "JOB-%zu", job->index);
    char err[256];
    char *json = json_from_msgpack (event->data, event->size, err, sizeof err);
    if (!json) {
        s_note (job, S_FAILED, "value is not valid msgpack: %s", err);
        return;
    }
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    bool ok = false;
    if (msgpack_unpack_next (&unpacked, event->data, event->size, &offset)
        == MSGPACK_UNPACK_SUCCESS) {
        const msgpack_object *value = &unpacked.data;
        msgpack_object_type type = job->is_exec ? MSGPACK_OBJECT_BIN : MSGPACK_OBJECT_STR;
        //  bin and str share the same layout in msgpack_object.
        ok = value->type == type && value->via.str.size == strlen (expect)
             && memcmp (value->via.str.ptr, expect, strlen (expect)) == 0;
    }
    msgpack_unpacked_destroy (&unpacked);
    if (ok)
        s_note (job, S_OK, "%s", json);
    else
        s_note (job, S_FAILED, "unexpected value %.200s", json);
    free (json);
}

int
cli_demo (cli_t *cli, int argc, char **argv)
{
    static const struct option options[] = { { "jobs", required_argument, NULL, 'n' },
                                             { "queue", required_argument, NULL, 'q' },
                                             { "timeout", required_argument, NULL, 't' },
                                             CLI_GLOBAL_OPTIONS };
    uint64_t total = 300;
    const char *queue = "default";
    int timeout_ms = 120000;
    int opt;
    while ((opt = getopt_long (argc, argv, "+:", options, NULL)) != -1) {
        switch (opt) {
            case 'n':
                if (numparse_uint (optarg, 10000000, &total) || total == 0)
                    return cli_usage_error (
                        "demo: --jobs '%s' is not a number in 1..10000000", optarg);
                break;
            case 'q':
                if (!*optarg)
                    return cli_usage_error ("demo: --queue is empty");
                queue = optarg;
                break;
            case 't':
                if (cli_parse_seconds (optarg, &timeout_ms) || timeout_ms == 0)
                    return cli_usage_error (
                        "demo: --timeout '%s' is not a number of seconds", optarg);
                break;
            default: {
                int rc = cli_other_option (cli, "demo", opt, optarg, argv);
                if (rc >= 100)
                    return rc - 100;
                if (rc)
                    return rc;
            }
        }
    }
    if (optind < argc)
        return cli_usage_error ("demo: unexpected argument '%s'", argv[optind]);
    int rc = cli_setup (cli);
    if (rc)
        return rc;

    emq_client_t *client = emq_client_new (cli->frontend);
    if (!client)
        return cli_usage_error ("cannot connect to '%s': not a valid endpoint",
                                cli->frontend);
    emq_client_set_connect_timeout (client, cli->connect_timeout_ms);
    size_t n = (size_t) total;
    s_job_t *jobs = calloc (n, sizeof (s_job_t));
    zlistx_t *waiting = zlistx_new ();
    zhashx_t *sent = zhashx_new ();
    output_progress_t *progress = output_progress_new (n);
    if (!jobs || !waiting || !sent || !progress) {
        rc = cli_fail (CLI_EXIT_FAILED, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        jobs[i].index = i;
        jobs[i].is_exec = i % 2 == 0;
        if (!zlistx_add_end (waiting, &jobs[i])) {
            rc = cli_fail (CLI_EXIT_FAILED, "out of memory");
            goto done;
        }
    }
    fprintf (stderr, "emq-cli: submitting %zu jobs to %s (queue %s)\n", n, cli->frontend,
             queue);
    emq_submit_opts_t opts = { .queue = queue, .reply = true };
    int64_t started = zclock_mono ();
    int64_t deadline = started + timeout_ms;
    int64_t first_sent = 0;
    size_t finished = 0, ok = 0, failed = 0, acked = 0;
    while (finished < n && zclock_mono () < deadline) {
        //  Send what may go now, keeping at most S_WINDOW in flight.
        s_job_t *job;
        while (zhashx_size (sent) < S_WINDOW && (job = zlistx_first (waiting))
               && job->send_after <= zclock_mono ()) {
            zlistx_detach_cur (waiting);
            void *payload = NULL;
            size_t size = 0;
            int erc = s_payload (job, &payload, &size);
            if (!erc)
                erc = emq_submit_async (client, &opts, payload, size, job->msgid);
            free (payload);
            if (erc == EMQ_ERR_UNREACHABLE) {
                rc =
                    cli_fail (CLI_EXIT_UNREACHABLE, "%s", emq_client_last_error (client));
                goto done;
            }
            if (erc) {
                s_note (job, S_FAILED, "not submitted: %s", emq_strerror (erc));
                finished++;
                failed++;
                continue;
            }
            job->state = S_SENT;
            if (!first_sent)
                first_sent = zclock_mono ();
            if (zhashx_insert (sent, job->msgid, job)) {
                rc = cli_fail (CLI_EXIT_FAILED, "duplicate msgid %s", job->msgid);
                goto done;
            }
        }
        //  A router that takes the connection but never answers.
        if (acked == 0 && first_sent
            && zclock_mono () - first_sent > cli->connect_timeout_ms) {
            output_progress_destroy (&progress);
            rc = cli_fail (CLI_EXIT_UNREACHABLE,
                           "no answer from router at %s within %.1f s", cli->frontend,
                           cli->connect_timeout_ms / 1000.0);
            goto done;
        }
        emq_event_t event;
        int prc = emq_poll (client, zlistx_size (waiting) ? 5 : 100, &event);
        if (prc == EMQ_ERR_TIMEOUT) {
            output_progress_update (progress, finished, ok, failed, false);
            continue;
        }
        if (prc) {
            rc = cli_fail (cli_exit_for (prc), "%s", emq_client_last_error (client));
            goto done;
        }
        job = zhashx_lookup (sent, event.msgid);
        if (!job)
            continue;  // not ours, or already finished
        if (event.type == EMQ_EVENT_ACK) {
            acked++;
            continue;
        }
        zhashx_delete (sent, event.msgid);
        if (event.type == EMQ_EVENT_ERROR && streq (event.code, "QUEUE_FULL")) {
            //  Backpressure: the router said the queue is full; try later.
            acked++;
            job->state = S_WAITING;
            job->send_after = zclock_mono () + S_RETRY_MS;
            if (!zlistx_add_end (waiting, job)) {
                rc = cli_fail (CLI_EXIT_FAILED, "out of memory");
                goto done;
            }
            continue;
        }
        if (event.type == EMQ_EVENT_ERROR) {
            acked++;
            s_note (job, S_FAILED, "rejected by router: %s: %.*s", event.code,
                    (int) (event.size > 200 ? 200 : event.size),
                    (const char *) event.data);
        }
        else
            s_check_result (job, &event);
        finished++;
        if (job->state == S_OK)
            ok++;
        else
            failed++;
        output_progress_update (progress, finished, ok, failed, false);
    }
    output_progress_update (progress, finished, ok, failed, true);
    output_progress_destroy (&progress);
    double elapsed = (double) (zclock_mono () - started) / 1000.0;

    //  A sample of results, the first failures, the summary.
    size_t shown_exec = 0, shown_run = 0, shown_failed = 0;
    printf ("sample results:\n");
    for (size_t i = 0; i < n; i++) {
        s_job_t *job = &jobs[i];
        size_t *shown = job->is_exec ? &shown_exec : &shown_run;
        if (job->state != S_OK || *shown >= S_SAMPLES)
            continue;
        (*shown)++;
        char what[64];
        if (job->is_exec)
            snprintf (what, sizeof what, "exec /bin/echo %zu", i);
        else
            snprintf (what, sizeof what, "run upper \"job-%zu\"", i);
        printf ("  %-24s -> %s\n", what, job->note ? job->note : "?");
    }
    if (!shown_exec && !shown_run)
        printf ("  (none)\n");
    for (size_t i = 0; i < n && shown_failed < S_FAILURES_SHOWN; i++)
        if (jobs[i].state == S_FAILED) {
            if (!shown_failed++)
                printf ("failures:\n");
            printf ("  job %zu (%s): %s\n", i, jobs[i].is_exec ? "exec" : "run",
                    jobs[i].note ? jobs[i].note : "?");
        }
    size_t missing = n - finished;
    printf ("jobs: %zu  ok: %zu  failed: %zu  no result: %zu  elapsed: %.2f s  "
            "throughput: %.1f jobs/s\n",
            n, ok, failed, missing, elapsed,
            elapsed > 0 ? (double) finished / elapsed : 0.0);
    if (missing)
        fprintf (stderr, "emq-cli: %zu jobs gave no result within %.0f s\n", missing,
                 timeout_ms / 1000.0);
    rc = failed ? CLI_EXIT_FAILED : missing ? CLI_EXIT_WAIT_TIMEOUT : CLI_EXIT_OK;
    if (fflush (stdout))
        rc = CLI_EXIT_FAILED;

done:
    output_progress_destroy (&progress);
    zhashx_destroy (&sent);
    zlistx_destroy (&waiting);
    if (jobs)
        for (size_t i = 0; i < n; i++)
            free (jobs[i].note);
    free (jobs);
    emq_client_destroy (&client);
    return rc;
}
