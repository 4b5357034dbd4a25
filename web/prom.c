/*  prom — STATUS and ROUTER_SHOW_WORKERS as Prometheus text. See prom.h.

    Each family is written whole (HELP, TYPE, every sample) before the next,
    as the format requires; label values are escaped (\\, \", \n).
*/
#include "prom.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procstat.h"

static void
s_family (FILE *out, const char *name, const char *type, const char *help)
{
    fprintf (out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

//  Writes a label value, escaped.
static void
s_label_value (FILE *out, const char *value)
{
    for (const char *p = value; *p; p++) {
        if (*p == '\\' || *p == '"') {
            fputc ('\\', out);
            fputc (*p, out);
        }
        else if (*p == '\n')
            fputs ("\\n", out);
        else
            fputc (*p, out);
    }
}

static void
s_sample (FILE *out, const char *name, const char *label, const char *value, double v)
{
    fputs (name, out);
    if (label) {
        fprintf (out, "{%s=\"", label);
        s_label_value (out, value);
        fputs ("\"}", out);
    }
    fprintf (out, " %.17g\n", v);
}

static json_t *
s_get (json_t *object, const char *key)
{
    return json_is_object (object) ? json_object_get (object, key) : NULL;
}

static double
s_num (json_t *object, const char *key)
{
    return json_number_value (s_get (object, key));
}

//  One gauge or counter family with a sample per member of map (an object
//  of objects), the value under key.
static void
s_per_member (FILE *out, json_t *map, const char *label, const char *name,
              const char *type, const char *help, const char *key)
{
    s_family (out, name, type, help);
    const char *member;
    json_t *item;
    json_object_foreach (map, member, item)
        s_sample (out, name, label, member, s_num (item, key));
}

//  A histogram sample set ({"buckets": [[le, cumulative]...], "count",
//  "sum"}), labelled with label=value when label is not NULL.
static void
s_histogram (FILE *out, const char *name, const char *label, const char *value,
             json_t *hist)
{
    size_t i;
    json_t *bucket;
    json_array_foreach (s_get (hist, "buckets"), i, bucket)
    {
        fprintf (out, "%s_bucket{", name);
        if (label) {
            fprintf (out, "%s=\"", label);
            s_label_value (out, value);
            fputs ("\",", out);
        }
        fprintf (out, "le=\"%g\"} %" JSON_INTEGER_FORMAT "\n",
                 json_number_value (json_array_get (bucket, 0)),
                 json_integer_value (json_array_get (bucket, 1)));
    }
    fprintf (out, "%s_bucket{", name);
    if (label) {
        fprintf (out, "%s=\"", label);
        s_label_value (out, value);
        fputs ("\",", out);
    }
    fprintf (out, "le=\"+Inf\"} %.17g\n", s_num (hist, "count"));
    char full[128];
    snprintf (full, sizeof full, "%s_sum", name);
    s_sample (out, full, label, value, s_num (hist, "sum"));
    snprintf (full, sizeof full, "%s_count", name);
    s_sample (out, full, label, value, s_num (hist, "count"));
}

static void
s_histograms (FILE *out, json_t *map, const char *name, const char *help)
{
    s_family (out, name, "histogram", help);
    const char *queue;
    json_t *hist;
    json_object_foreach (map, queue, hist) s_histogram (out, name, "queue", queue, hist);
}

static void
s_process (FILE *out, const char *prefix, const char *who, json_t *process)
{
    static const struct {
        const char *suffix, *type, *help, *key;
    } figures[] = {
        { "resident_memory_bytes", "gauge", "resident memory of", "rss_bytes" },
        { "virtual_memory_bytes", "gauge", "virtual memory of", "vsize_bytes" },
        { "cpu_seconds_total", "counter", "user and system CPU time of", "cpu_seconds" },
        { "open_fds", "gauge", "open file descriptors of", "open_fds" },
        { "max_fds", "gauge", "the file descriptor limit of", "max_fds" },
        { "start_time_seconds", "gauge", "start time (unix seconds) of", "start_time" },
    };
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++) {
        json_t *value = s_get (process, figures[i].key);
        if (!json_is_number (value) || json_number_value (value) < 0)
            continue;
        char name[96], help[128];
        snprintf (name, sizeof name, "%s_%s", prefix, figures[i].suffix);
        snprintf (help, sizeof help, "%s %s", figures[i].help, who);
        s_family (out, name, figures[i].type, help);
        s_sample (out, name, NULL, NULL, json_number_value (value));
    }
}

char *
prom_render (json_t *status, json_t *workers, bool router_up,
             unsigned long long sample_errors)
{
    char *data = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&data, &size);
    if (!out)
        return NULL;
    s_family (out, "emq_up", "gauge", "1 if the router answered emq-web's last sample");
    s_sample (out, "emq_up", NULL, NULL, router_up ? 1 : 0);
    s_family (out, "emq_web_sample_errors_total", "counter",
              "samples of the router that failed");
    s_sample (out, "emq_web_sample_errors_total", NULL, NULL, (double) sample_errors);
    if (router_up && status) {
        json_t *queues = s_get (status, "queues");
        s_per_member (out, queues, "queue", "emq_queue_waiting", "gauge",
                      "jobs waiting for a job manager", "waiting");
        s_per_member (out, queues, "queue", "emq_queue_running", "gauge",
                      "jobs dispatched, outcome pending", "inflight");
        s_per_member (out, queues, "queue", "emq_queue_scheduled", "gauge",
                      "jobs delayed until a time", "scheduled");
        s_per_member (out, queues, "queue", "emq_queue_retrying", "gauge",
                      "failed jobs waiting out a retry's backoff", "retrying");
        s_per_member (out, queues, "queue", "emq_queue_dead", "gauge",
                      "jobs that failed after all their retries (kept)", "dead");
        s_per_member (out, queues, "queue", "emq_queue_hwm", "gauge",
                      "waiting jobs accepted before QUEUE_FULL", "hwm");
        s_per_member (out, queues, "queue", "emq_queue_job_managers", "gauge",
                      "job managers serving the queue", "servers");
        s_per_member (out, queues, "queue", "emq_jobs_processed_total", "counter",
                      "jobs that ended well", "processed");
        s_per_member (out, queues, "queue", "emq_jobs_failed_total", "counter",
                      "jobs that failed for good (failed or dead)", "failed");
        json_t *metrics = s_get (status, "metrics");
        s_histograms (out, s_get (metrics, "wait_seconds"), "emq_job_wait_seconds",
                      "time from entering the queue to dispatch");
        s_histograms (out, s_get (metrics, "run_seconds"), "emq_job_run_seconds",
                      "a job's run time on its worker (wall clock)");
        s_family (out, "emq_store_commit_seconds", "histogram",
                  "time from a batch's hand-over to the writer to its commit");
        s_histogram (out, "emq_store_commit_seconds", NULL, NULL,
                     s_get (metrics, "commit_seconds"));
        s_family (out, "emq_store_commit_failures_total", "counter",
                  "batches the store could not commit");
        s_sample (out, "emq_store_commit_failures_total", NULL, NULL,
                  s_num (metrics, "commit_failed"));
        s_family (out, "emq_store_failing", "gauge", "1 while the store cannot write");
        s_sample (out, "emq_store_failing", NULL, NULL,
                  json_is_true (s_get (s_get (status, "store"), "failing")) ? 1 : 0);
        s_family (out, "emq_jobs", "gauge", "job records the router holds");
        s_sample (out, "emq_jobs", NULL, NULL, s_num (status, "jobs"));
        s_family (out, "emq_job_managers", "gauge", "job managers connected");
        s_sample (out, "emq_job_managers", NULL, NULL, s_num (status, "job_managers"));
        json_t *events = s_get (status, "events");
        if (events) {
            s_family (out, "emq_events_published_total", "counter",
                      "events published on the router's event stream");
            s_sample (out, "emq_events_published_total", NULL, NULL,
                      s_num (events, "published"));
        }
        s_process (out, "emq_router", "the router process", s_get (metrics, "process"));
    }
    if (router_up && workers) {
        json_t *jms = s_get (workers, "connected_workers");
        s_per_member (out, jms, "jobmanager", "emq_jobmanager_free_slots", "gauge",
                      "worker slots the job manager has announced free",
                      "available_slots");
        s_per_member (out, jms, "jobmanager", "emq_jobmanager_jobs_in_flight", "gauge",
                      "jobs dispatched to the job manager, outcome pending", "inflight");
        s_per_member (out, jms, "jobmanager", "emq_jobmanager_processed_total", "counter",
                      "jobs that ended on the job manager", "processed");
        const char *id;
        json_t *jm;
        s_family (out, "emq_jobmanager_workers", "gauge",
                  "worker processes of the job manager (its last heartbeat)");
        json_object_foreach (jms, id, jm) if (s_get (jm, "stats"))
            s_sample (out, "emq_jobmanager_workers", "jobmanager", id,
                      s_num (s_get (jm, "stats"), "workers"));
        s_family (out, "emq_jobmanager_workers_busy", "gauge",
                  "workers running a job (its last heartbeat)");
        json_object_foreach (jms, id, jm) if (s_get (jm, "stats")) s_sample (
            out, "emq_jobmanager_workers_busy", "jobmanager", id,
            (double) json_object_size (s_get (s_get (jm, "stats"), "jobs_in_flight")));
    }
    //  emq-web's own figures, under the client libraries' standard names.
    procstat_t self;
    if (procstat_read (0, &self) == 0) {
        json_t *process = json_pack (
            "{s:I,s:I,s:f,s:I,s:I,s:f}", "rss_bytes", (json_int_t) self.rss_bytes,
            "vsize_bytes", (json_int_t) self.vsize_bytes, "cpu_seconds", self.cpu_s,
            "open_fds", (json_int_t) self.open_fds, "max_fds", (json_int_t) self.max_fds,
            "start_time", self.start_time_s);
        s_process (out, "process", "emq-web", process);
        json_decref (process);
    }
    if (fclose (out) != 0) {
        free (data);
        return NULL;
    }
    return data;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
prom_test (bool verbose)
{
    if (verbose)
        printf (" * prom: ");
    json_t *status = json_loads (
        "{\"queues\":{\"default\":{\"waiting\":3,\"inflight\":1,\"processed\":10,"
        "\"failed\":2,\"hwm\":100,\"servers\":1,\"scheduled\":4,\"retrying\":5,"
        "\"dead\":6},\"we\\\"ird\\\\q\":{\"waiting\":0}},\"jobs\":8,\"job_managers\":1,"
        "\"store\":{\"failing\":true},\"metrics\":{\"wait_seconds\":{\"default\":"
        "{\"buckets\":[[0.001,1],[0.5,3]],\"count\":4,\"sum\":2.5}},\"run_seconds\":{},"
        "\"commit_seconds\":{\"buckets\":[[0.001,0]],\"count\":0,\"sum\":0},"
        "\"commit_failed\":0,\"process\":{\"rss_bytes\":1000,\"cpu_seconds\":1.5,"
        "\"open_fds\":-1}}}",
        0, NULL);
    json_t *workers = json_loads (
        "{\"connected_workers\":{\"jm-1\":{\"available_slots\":2,\"inflight\":1,"
        "\"processed\":7,\"stats\":{\"workers\":4,\"jobs_in_flight\":{\"a\":{},\"b\":{}}}"
        "}}}",
        0, NULL);
    REQUIRE (status && workers);
    char *text = prom_render (status, workers, true, 3);
    REQUIRE (text);
    CHECK_CONTAINS (text, "emq_up 1\n");
    CHECK_CONTAINS (text, "emq_web_sample_errors_total 3\n");
    CHECK_CONTAINS (text, "# TYPE emq_queue_waiting gauge\n");
    CHECK_CONTAINS (text, "emq_queue_waiting{queue=\"default\"} 3\n");
    CHECK_CONTAINS (text, "emq_queue_waiting{queue=\"we\\\"ird\\\\q\"} 0\n");
    CHECK_CONTAINS (text, "emq_queue_retrying{queue=\"default\"} 5\n");
    CHECK_CONTAINS (text, "emq_queue_dead{queue=\"default\"} 6\n");
    CHECK_CONTAINS (text, "emq_jobs_processed_total{queue=\"default\"} 10\n");
    CHECK_CONTAINS (text, "# TYPE emq_job_wait_seconds histogram\n");
    CHECK_CONTAINS (text,
                    "emq_job_wait_seconds_bucket{queue=\"default\",le=\"0.5\"} 3\n");
    CHECK_CONTAINS (text,
                    "emq_job_wait_seconds_bucket{queue=\"default\",le=\"+Inf\"} 4\n");
    CHECK_CONTAINS (text, "emq_job_wait_seconds_sum{queue=\"default\"} 2.5\n");
    CHECK_CONTAINS (text, "emq_store_commit_seconds_bucket{le=\"+Inf\"} 0\n");
    CHECK_CONTAINS (text, "emq_store_failing 1\n");
    CHECK_CONTAINS (text, "emq_router_resident_memory_bytes 1000\n");
    CHECK_CONTAINS (text, "emq_router_cpu_seconds_total 1.5\n");
    CHECK (strstr (text, "emq_router_open_fds") == NULL);  // -1: not known
    CHECK_CONTAINS (text, "emq_jobmanager_free_slots{jobmanager=\"jm-1\"} 2\n");
    CHECK_CONTAINS (text, "emq_jobmanager_workers{jobmanager=\"jm-1\"} 4\n");
    CHECK_CONTAINS (text, "emq_jobmanager_workers_busy{jobmanager=\"jm-1\"} 2\n");
    CHECK_CONTAINS (text, "# TYPE process_resident_memory_bytes gauge\n");
    free (text);
    //  The router down: emq_up 0, nothing of its figures.
    text = prom_render (NULL, NULL, false, 4);
    REQUIRE (text);
    CHECK_CONTAINS (text, "emq_up 0\n");
    CHECK (strstr (text, "emq_queue_waiting") == NULL);
    free (text);
    json_decref (status);
    json_decref (workers);
    if (verbose)
        printf ("OK\n");
}
