/*  top — `emq-cli top`: a live view of the router, redrawn every interval
    from STATUS and ROUTER_SHOW_WORKERS on its admin socket. Rates and
    latency quantiles are over the last interval: the difference between two
    STATUS replies' counters and histograms (docs/protocol.md, "metrics").
*/
#include "cli.h"
#include "clock.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static json_t *
s_get (json_t *object, const char *key)
{
    return json_is_object (object) ? json_object_get (object, key) : NULL;
}

static long long
s_int (json_t *object, const char *key)
{
    return (long long) json_integer_value (s_get (object, key));
}

//  The q-quantile (0..1) of a histogram ({"buckets": [[le, cumulative]...],
//  "count"}) less an earlier reading of it (prev, may be NULL), as the upper
//  bound of the bucket it falls in, in seconds; -1 without observations.
static double
s_quantile (json_t *hist, json_t *prev, double q)
{
    json_t *buckets = s_get (hist, "buckets"), *prev_buckets = s_get (prev, "buckets");
    double total = (double) (s_int (hist, "count") - s_int (prev, "count"));
    if (!json_is_array (buckets) || total <= 0)
        return -1;
    size_t i;
    json_t *bucket;
    json_array_foreach (buckets, i, bucket)
    {
        double le = json_number_value (json_array_get (bucket, 0));
        double seen = (double) json_integer_value (json_array_get (bucket, 1))
                      - (double) json_integer_value (
                          json_array_get (json_array_get (prev_buckets, i), 1));
        if (seen >= q * total)
            return le;
    }
    return INFINITY;
}

static const char *
s_seconds (double s, char *buf, size_t size)
{
    if (s < 0)
        snprintf (buf, size, "-");
    else if (isinf (s))
        snprintf (buf, size, ">300s");
    else if (s < 1)
        snprintf (buf, size, "%gms", s * 1000);
    else
        snprintf (buf, size, "%gs", s);
    return buf;
}

//  Asks one admin command; returns the parsed object or NULL (reported).
static json_t *
s_ask (cli_t *cli, const char *command)
{
    char *reply = NULL;
    int rc = emq_admin (cli->admin, command, cli->connect_timeout_ms, &reply);
    json_t *root = rc == 0 ? json_loads (reply, 0, NULL) : NULL;
    if (!json_is_object (root)) {
        fprintf (stderr, "emq-cli: top: %s: %s\n", command,
                 rc ? (reply ? reply : emq_strerror (rc)) : "not a JSON object");
        json_decref (root);
        root = NULL;
    }
    free (reply);
    return root;
}

static void
s_frame (cli_t *cli, json_t *status, json_t *workers, json_t *prev, double interval_s)
{
    char b[12][64];
    time_t now = time (NULL);
    struct tm tm;
    char stamp[32] = "";
    if (localtime_r (&now, &tm))
        strftime (stamp, sizeof stamp, "%H:%M:%S", &tm);
    json_t *store = s_get (status, "store");
    json_t *process = s_get (s_get (status, "metrics"), "process");
    printf ("emq top  %s  router %s  jobs %lld  job managers %lld  dead %lld  "
            "rss %.1f MiB  cpu %.1fs\n\n",
            stamp, cli->admin, s_int (status, "jobs"), s_int (status, "job_managers"),
            s_int (store, "dead"), (double) s_int (process, "rss_bytes") / 1048576.0,
            json_number_value (s_get (process, "cpu_seconds")));
    output_table_t *table = output_table_new (
        "QUEUE", "WAITING", "RUNNING", "SCHEDULED", "RETRYING", "DEAD", "DONE/s",
        "FAILED/s", "WAIT p50", "WAIT p95", "RUN p50", "RUN p95", NULL);
    for (size_t c = 1; table && c < 12; c++)
        output_table_align_right (table, c);
    json_t *queues = s_get (status, "queues"), *prev_queues = s_get (prev, "queues");
    json_t *wait = s_get (s_get (status, "metrics"), "wait_seconds");
    json_t *run = s_get (s_get (status, "metrics"), "run_seconds");
    json_t *prev_wait = s_get (s_get (prev, "metrics"), "wait_seconds");
    json_t *prev_run = s_get (s_get (prev, "metrics"), "run_seconds");
    const char *name;
    json_t *q;
    json_object_foreach (queues, name, q)
    {
        json_t *p = s_get (prev_queues, name);
        double done =
            prev ? (double) (s_int (q, "processed") - s_int (p, "processed")) / interval_s
                 : 0;
        double failed =
            prev ? (double) (s_int (q, "failed") - s_int (p, "failed")) / interval_s : 0;
        snprintf (b[0], 64, "%lld", s_int (q, "waiting"));
        snprintf (b[1], 64, "%lld", s_int (q, "inflight"));
        snprintf (b[2], 64, "%lld", s_int (q, "scheduled"));
        snprintf (b[3], 64, "%lld", s_int (q, "retrying"));
        snprintf (b[4], 64, "%lld", s_int (q, "dead"));
        snprintf (b[5], 64, "%.1f", done);
        snprintf (b[6], 64, "%.1f", failed);
        json_t *w = s_get (wait, name), *pw = s_get (prev_wait, name);
        json_t *r = s_get (run, name), *pr = s_get (prev_run, name);
        output_table_add (table, name, b[0], b[1], b[2], b[3], b[4], b[5], b[6],
                          s_seconds (s_quantile (w, pw, 0.5), b[7], 64),
                          s_seconds (s_quantile (w, pw, 0.95), b[8], 64),
                          s_seconds (s_quantile (r, pr, 0.5), b[9], 64),
                          s_seconds (s_quantile (r, pr, 0.95), b[10], 64));
    }
    if (table && output_table_rows (table))
        output_table_print (table, stdout);
    else
        printf ("no queues\n");
    output_table_destroy (&table);

    printf ("\n");
    table = output_table_new ("JOB MANAGER", "QUEUES", "FREE SLOTS", "IN FLIGHT",
                              "PROCESSED", "WORKERS", NULL);
    output_table_t *jobs = output_table_new ("PID", "JOB MANAGER", "QUEUE", "JOB", "FOR",
                                             "RSS", "CPU", NULL);
    json_t *jm;
    json_object_foreach (s_get (workers, "connected_workers"), name, jm)
    {
        json_t *stats = s_get (jm, "stats");
        char *queues_text = json_dumps (s_get (jm, "queues"), JSON_COMPACT);
        snprintf (b[0], 64, "%lld", s_int (jm, "available_slots"));
        snprintf (b[1], 64, "%lld", s_int (jm, "inflight"));
        snprintf (b[2], 64, "%lld", s_int (jm, "processed"));
        snprintf (b[3], 64, "%lld", s_int (stats, "workers"));
        output_table_add (table, name, queues_text ? queues_text : "-", b[0], b[1], b[2],
                          stats ? b[3] : "-");
        free (queues_text);
        const char *msgid;
        json_t *job;
        json_object_foreach (s_get (stats, "jobs_in_flight"), msgid, job)
        {
            double started = json_number_value (s_get (job, "started"));
            snprintf (b[4], 64, "%lld", s_int (job, "pid"));
            snprintf (b[5], 64, "%.1fs", started > 0 ? clock_wall_s () - started : 0);
            if (s_get (job, "rss_kb"))
                snprintf (b[6], 64, "%.1f MiB", (double) s_int (job, "rss_kb") / 1024.0);
            else
                snprintf (b[6], 64, "-");
            snprintf (b[7], 64, "%.2fs", json_number_value (s_get (job, "cpu_s")));
            const char *queue = json_string_value (s_get (job, "queue"));
            output_table_add (jobs, b[4], name, queue ? queue : "-", msgid, b[5], b[6],
                              s_get (job, "cpu_s") ? b[7] : "-");
        }
    }
    if (table && output_table_rows (table))
        output_table_print (table, stdout);
    else
        printf ("no job managers\n");
    if (jobs && output_table_rows (jobs)) {
        printf ("\n");
        output_table_print (jobs, stdout);
    }
    output_table_destroy (&table);
    output_table_destroy (&jobs);
}

int
cli_top (cli_t *cli, int argc, char **argv)
{
    static const struct option options[] = { { "interval", required_argument, NULL, 'i' },
                                             { "once", no_argument, NULL, 'o' },
                                             CLI_GLOBAL_OPTIONS };
    int interval_ms = 1000;
    bool once = false;
    int opt;
    while ((opt = getopt_long (argc, argv, "+:", options, NULL)) != -1) {
        if (opt == 'i') {
            if (cli_parse_seconds (optarg, &interval_ms) || interval_ms < 100)
                return cli_usage_error ("top: --interval '%s' is not a number of seconds "
                                        "(0.1 or more)",
                                        optarg);
        }
        else if (opt == 'o')
            once = true;
        else {
            int rc = cli_other_option (cli, "top", opt, optarg, argv);
            if (rc)
                return rc >= 100 ? rc - 100 : rc;
        }
    }
    if (optind < argc)
        return cli_usage_error ("top: unexpected argument '%s'", argv[optind]);
    int rc = cli_setup (cli);
    if (rc)
        return rc;
    bool tty = isatty (STDOUT_FILENO);
    json_t *prev = NULL;
    int64_t prev_ms = 0;
    while (true) {
        json_t *status = s_ask (cli, "STATUS");
        json_t *workers = status ? s_ask (cli, "ROUTER_SHOW_WORKERS") : NULL;
        if (!status || !workers) {
            json_decref (status);
            json_decref (prev);
            return CLI_EXIT_UNREACHABLE;
        }
        int64_t now_ms = clock_mono_ms ();
        if (tty && !once)
            printf ("\033[H\033[2J");  // home, clear screen
        s_frame (cli, status, workers, prev,
                 prev ? (double) (now_ms - prev_ms) / 1000.0 : 1.0);
        if (!tty && !once)
            printf ("\n");
        fflush (stdout);
        json_decref (workers);
        json_decref (prev);
        prev = status;
        prev_ms = now_ms;
        if (once)
            break;
        usleep ((useconds_t) interval_ms * 1000);
    }
    json_decref (prev);
    return CLI_EXIT_OK;
}
