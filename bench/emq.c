/*  emq — the scenarios that drive real emq processes: end to end no-op
    (2), latency (3), durable (5), memory (6), fan-out (7), and the emq
    side of scenario 8 (end to end and round trips over tcp).

    Each scenario starts its own emq-router and emq-jobmanager(s) from the
    build directory on ipc:// endpoints in the benchmark's temp dir (tcp on
    127.0.0.1 for scenario 8), drives
    them through libemq, reads the router's CPU and RSS from /proc, and
    stops every process it started before it returns.
*/
#include "bench.h"

#include <czmq.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SERIES_MAX 4096
#define SERIES_STEP_US 100000

//  Keeps up to `inflight` jobs in flight until `total` are submitted (or
//  cap_us has passed), then waits for the rest. With reply, a job is done
//  at its RESULT, else at its ACK. series_y (optional) receives completed
//  jobs per SERIES_STEP_US.
void
bench_pipeline (emq_client_t *client, const void *payload, size_t size, long total,
                int inflight, int64_t cap_us, bool reply, double *series_y,
                size_t *series_n, bench_run_t *run)
{
    bench_pipeline_queues (client, NULL, payload, size, total, inflight, cap_us, reply,
                           series_y, series_n, run);
}

void
bench_pipeline_queues (emq_client_t *client, const char *const *queues,
                       const void *payload, size_t size, long total, int inflight,
                       int64_t cap_us, bool reply, double *series_y, size_t *series_n,
                       bench_run_t *run)
{
    memset (run, 0, sizeof *run);
    emq_submit_opts_t opts = { .queue = "default", .reply = reply };
    size_t next_queue = 0;
    char msgid[37];
    emq_event_t event;
    int64_t start = bench_now_us (), stop_at = start + cap_us;
    long done = 0;
    if (series_n)
        *series_n = 0;
    //  The room in the window goes out in one call, as a program with many
    //  jobs would send them (emq_submit_many: BATCHes to an emq router).
    enum { S_MANY = 1024 };
    const void *payloads[S_MANY];
    size_t sizes[S_MANY];
    for (int i = 0; i < S_MANY; i++) {
        payloads[i] = payload;
        sizes[i] = size;
    }
    (void) msgid;
    while (done < run->submitted || run->submitted < total) {
        while (run->submitted < total && run->submitted - done < inflight) {
            long room = inflight - (run->submitted - done);
            if (room > total - run->submitted)
                room = total - run->submitted;
            if (room > S_MANY)
                room = S_MANY;
            size_t sent = 0;
            //  With many queues, each call goes to the next one.
            if (queues) {
                if (!queues[next_queue])
                    next_queue = 0;
                opts.queue = queues[next_queue++];
            }
            int rc = emq_submit_many (client, &opts, payloads, sizes, (size_t) room, NULL,
                                      &sent);
            run->submitted += (long) sent;
            if (rc) {
                fprintf (stderr, "emq-bench: submit: %s\n",
                         emq_client_last_error (client));
                total = run->submitted;
                break;
            }
            if (bench_now_us () > stop_at)
                total = run->submitted;
        }
        if (done >= run->submitted)
            break;
        int timeout = 10000;
        while (emq_poll (client, timeout, &event) == 0) {
            timeout = 0;
            switch (event.type) {
                case EMQ_EVENT_ACK:
                    run->acks++;
                    if (!reply)
                        done++;
                    break;
                case EMQ_EVENT_ERROR:
                    run->errors++;
                    done++;
                    break;
                case EMQ_EVENT_RESULT:
                    run->results++;
                    if (event.status != EMQ_JOB_OK)
                        run->failed++;
                    if (reply)
                        done++;
                    break;
            }
            if (series_y) {
                size_t bucket = (size_t) ((bench_now_us () - start) / SERIES_STEP_US);
                if (bucket < SERIES_MAX) {
                    while (*series_n <= bucket)
                        series_y[(*series_n)++] = 0;
                    series_y[bucket] += 1e6 / SERIES_STEP_US;
                }
            }
            if (done >= run->submitted)
                break;
        }
        if (timeout == 10000) {
            fprintf (stderr, "emq-bench: no event for 10 s (%ld of %ld done)\n", done,
                     run->submitted);
            run->stalled = true;
            break;
        }
    }
    run->elapsed_us = bench_now_us () - start;
}

emq_client_t *
bench_client (const bench_router_t *router)
{
    emq_client_t *client = emq_client_new (router->frontend);
    if (client)
        emq_client_set_connect_timeout (client, 10000);
    return client;
}

//  ---------------------------------------------------------------------
//  2. and 5. End to end

enum { S_ROLES = 4 };

//  The router, the job manager, its workers and this client, counted.
static void
s_procs_begin (bench_proc_t *procs, pid_t router, pid_t jm)
{
    memset (procs, 0, sizeof (bench_proc_t) * S_ROLES);
    procs[0] = (bench_proc_t){ .name = "router", .pids = { router }, .npids = 1 };
    procs[1] = (bench_proc_t){ .name = "jm", .pids = { jm }, .npids = 1 };
    procs[2].name = "workers";
    procs[2].npids = bench_children (jm, procs[2].pids, BENCH_PROC_MAX);
    procs[3] = (bench_proc_t){ .name = "client", .pids = { getpid () }, .npids = 1 };
    for (int i = 0; i < S_ROLES; i++)
        bench_proc_begin (&procs[i]);
    bench_proc_settle ();
}

double
bench_e2e (const char *scenario, const char *data_dir, const char *fsync, bool series)
{
    bench_e2e_opts_t opts = {
        .scenario = scenario, .data_dir = data_dir, .fsync = fsync, .series = series
    };
    return bench_e2e_run (&opts);
}

double
bench_e2e_run (const bench_e2e_opts_t *o)
{
    const char *scenario = o->scenario;
    double jps = NAN;
    bench_router_t router;
    const char *extra[] = {
        "--fsync", o->fsync ? o->fsync : "everysec", NULL, NULL, NULL, NULL, NULL
    };
    if (o->store_dsn) {
        extra[2] = "--store";
        extra[3] = "postgresql";
        extra[4] = "--store-dsn";
        extra[5] = o->store_dsn;
    }
    char name[64];
    snprintf (name, sizeof name, "e2e-%s%s%s%s", o->exec ? "exec-" : "",
              o->store_dsn ? "pg-" : "", o->data_dir ? extra[1] : "mem",
              o->tcp ? "-tcp" : "");
    if (bench_router_start_at (&router, name, o->tcp, o->data_dir,
                               o->data_dir ? extra : NULL))
        return NAN;
    pid_t jm = bench_jm_start (&router, "e2e", 2, o->exec);
    emq_client_t *client = bench_client (&router);
    void *payload = NULL;
    size_t size = 0;
    const char *argv[] = { "/bin/true" };
    int rc = o->exec ? emq_payload_exec (argv, 1, NULL, 0, NULL, 0, NULL, &payload, &size)
                     : bench_noop_payload (o->payload_size, &payload, &size);
    if (jm < 0 || !client || rc || bench_wait_slots (&router, 1, 2, 20000)) {
        bench_line (scenario, "could not start (see logs in %s)", bench.dir);
        goto done;
    }
    //  Warm up: workers have loaded the plugin, connections are up.
    bench_run_t run;
    bench_pipeline (client, payload, size, o->exec ? 200 : 2000, bench.inflight, 10000000,
                    true, NULL, NULL, &run);
    int slices = o->slices > 1 ? o->slices : 1;
    double *series_y =
        o->series && slices == 1 ? calloc (SERIES_MAX, sizeof (double)) : NULL;
    size_t series_n = 0;
    long total = o->total ? o->total : (long) (300000 * bench.scale);
    int64_t cap_us = o->cap_us ? o->cap_us : (int64_t) (8e6 * bench.scale);
    //  In slices, each is timed (and its CPU counted) on its own, and
    //  o->between runs before each, untimed; then once more after the last.
    int64_t cpu_router = 0, cpu_jm = 0, cpu_client = 0, busy_us = 0, elapsed_us = 0;
    bench_proc_t procs[S_ROLES];
    long results = 0, failed = 0;
    bool stalled = false;
    for (int slice = 0; slice < slices && !stalled; slice++) {
        if (o->between)
            o->between (o->between_arg);
        int64_t router0 = bench_cpu_us (router.pid), jm0 = bench_cpu_us (jm);
        if (slices == 1)
            s_procs_begin (procs, router.pid, jm);
        int64_t client0 = bench_cpu_us (getpid ());
        int64_t busy0 = bench_machine_busy_us ();
        bench_pipeline (client, payload, size, total / slices, bench.inflight,
                        cap_us / slices, true, series_y, &series_n, &run);
        if (slices == 1)
            for (int i = 0; i < S_ROLES; i++)
                bench_proc_end (&procs[i], run.results);
        cpu_router += bench_cpu_us (router.pid) - router0;
        cpu_jm += bench_cpu_us (jm) - jm0;
        cpu_client += bench_cpu_us (getpid ()) - client0;
        busy_us += bench_machine_busy_us () - busy0;
        elapsed_us += run.elapsed_us;
        results += run.results;
        failed += run.failed + run.errors;
        stalled = run.stalled;
    }
    if (o->between && slices > 1)
        o->between (o->between_arg);
    run.results = results;
    run.elapsed_us = elapsed_us;
    run.stalled = stalled;
    run.failed = failed;
    run.errors = 0;
    double busy = (double) busy_us * 100
                  / ((double) run.elapsed_us * (double) sysconf (_SC_NPROCESSORS_ONLN));
    long jobs = run.results;
    if (jobs > 0 && !run.stalled)
        jps = jobs * 1e6 / (double) run.elapsed_us;
    double router_us = jobs ? (double) cpu_router / (double) jobs : NAN;
    double jm_us = jobs ? (double) cpu_jm / (double) jobs : NAN;
    bench_figure (scenario, "jobs", (double) jobs, NULL);
    bench_figure (scenario, "throughput", jps, "jobs_per_s");
    bench_figure (scenario, "router_cpu_per_job", router_us, "us");
    bench_figure (scenario, "jm_cpu_per_job", jm_us, "us");
    double client_us = jobs ? (double) cpu_client / (double) jobs : NAN;
    bench_figure (scenario, "client_cpu_per_job", client_us, "us");
    bench_figure (scenario, "machine_busy", busy, "percent");
    bench_figure (scenario, "failed", (double) (run.failed + run.errors), NULL);
    bench_figure (scenario, "payload", (double) size, "bytes");
    char sliced[32] = "";
    if (slices > 1)
        snprintf (sliced, sizeof sliced, " in %d slices", slices);
    bench_line (
        scenario,
        "%.0f jobs/s (%ld %s jobs of %zu bytes in %.2f s%s over %s, %d in "
        "flight, %ld failed); CPU/job: router %.1f us, jm %.1f us, client %.1f us; "
        "all CPUs %.0f %% busy%s",
        jps, jobs, o->exec ? "exec /bin/true" : "noop", size, run.elapsed_us / 1e6,
        sliced, o->tcp ? "tcp" : "ipc", bench.inflight, run.failed + run.errors,
        router_us, jm_us, client_us, busy, run.stalled ? " [STALLED]" : "");
    if (slices == 1 && jobs > 0)
        bench_proc_report (scenario, procs, S_ROLES);
    if (o->cpu_per_job) {
        *o->cpu_per_job = router_us + jm_us + client_us;
        if (slices == 1 && jobs > 0)
            *o->cpu_per_job += procs[2].cpu_per_job;  // the workers
    }
    if (o->busy)
        *o->busy = busy;
    if (series_y) {
        double *series_x = calloc (series_n ? series_n : 1, sizeof (double));
        for (size_t i = 0; series_x && i < series_n; i++)
            series_x[i] = (double) i * SERIES_STEP_US / 1e6;
        if (series_x)
            bench_series ("2.e2e-throughput", series_x, series_y, series_n);
        free (series_x);
        free (series_y);
    }
done:
    free (payload);
    emq_client_destroy (&client);
    bench_stop (jm, 5000);
    bench_router_stop (&router);
    return jps;
}

//  ---------------------------------------------------------------------
//  3. Latency

typedef struct {
    const bench_router_t *router;
    double rate;  // jobs/s to submit
    atomic_bool stop;
    long done;       // results received
    double seconds;  // how long it ran
} s_load_t;

//  A background client: submits at `rate` (in steps of 1 ms), reads its
//  events as they come, keeps no more than 10,000 in flight.
static void *
s_load_thread (void *arg)
{
    s_load_t *load = (s_load_t *) arg;
    emq_client_t *client = bench_client (load->router);
    void *payload = NULL;
    size_t size = 0;
    if (!client || bench_noop_payload (0, &payload, &size)) {
        emq_client_destroy (&client);
        return NULL;
    }
    emq_submit_opts_t opts = { .queue = "default", .reply = true };
    char msgid[37];
    emq_event_t event;
    long submitted = 0;
    int64_t start = bench_now_us ();
    while (!atomic_load (&load->stop)) {
        double due = load->rate * (double) (bench_now_us () - start) / 1e6;
        while (submitted < (long) due && submitted - load->done < 10000) {
            if (emq_submit_async (client, &opts, payload, size, msgid))
                break;
            submitted++;
        }
        //  Wait for events up to the next 1 ms step.
        int timeout = 1;
        while (emq_poll (client, timeout, &event) == 0) {
            timeout = 0;
            if (event.type != EMQ_EVENT_ACK)
                load->done++;
        }
    }
    load->seconds = (double) (bench_now_us () - start) / 1e6;
    free (payload);
    emq_client_destroy (&client);
    return NULL;
}

//  One job at a time, submit -> RESULT. Returns samples taken.
static size_t
s_sequential (emq_client_t *client, const void *payload, size_t size, double *samples,
              size_t max, int64_t cap_us)
{
    emq_submit_opts_t opts = { .queue = "default", .reply = true };
    char msgid[37];
    emq_event_t event;
    size_t count = 0;
    int64_t stop_at = bench_now_us () + cap_us;
    while (count < max && bench_now_us () < stop_at) {
        int64_t t0 = bench_now_us ();
        if (emq_submit_async (client, &opts, payload, size, msgid))
            break;
        bool got = false;
        while (!got) {
            if (emq_poll (client, 10000, &event))
                return count;
            got = event.type != EMQ_EVENT_ACK && streq (event.msgid, msgid);
        }
        samples[count++] = (double) (bench_now_us () - t0);
    }
    return count;
}

//  The emq round-trip driver.
typedef struct {
    bench_router_t router;
    pid_t jm;
    emq_client_t *client;
    void *payload;
    size_t size;
} s_rtt_t;

static void
s_rtt_destroy (void **self_p)
{
    s_rtt_t *self = (s_rtt_t *) *self_p;
    if (!self)
        return;
    free (self->payload);
    emq_client_destroy (&self->client);
    bench_stop (self->jm, 5000);
    bench_router_stop (&self->router);
    free (self);
    *self_p = NULL;
}

static double
s_rtt_sample (void *arg)
{
    s_rtt_t *self = (s_rtt_t *) arg;
    double sample;
    return s_sequential (self->client, self->payload, self->size, &sample, 1, 10000000)
                   == 1
               ? sample
               : NAN;
}

int
bench_emq_rtt_new (bench_rtt_t *rtt, bool tcp, const char *data_dir, size_t payload_size)
{
    s_rtt_t *self = calloc (1, sizeof *self);
    if (!self)
        return -1;
    char name[64];
    snprintf (name, sizeof name, "rtt-%s%s", data_dir ? "disk" : "mem",
              tcp ? "-tcp" : "");
    *rtt = (bench_rtt_t){
        .name = "emq", .self = self, .sample = s_rtt_sample, .destroy = s_rtt_destroy
    };
    if (bench_router_start_at (&self->router, name, tcp, data_dir, NULL)) {
        bench_rtt_destroy (rtt);
        return -1;
    }
    self->jm = bench_jm_start (&self->router, "rtt", 2, false);
    self->client = bench_client (&self->router);
    if (self->jm < 0 || !self->client
        || bench_noop_payload (payload_size, &self->payload, &self->size)
        || bench_wait_slots (&self->router, 1, 2, 20000)) {
        fprintf (stderr, "emq-bench: emq round trip could not start (see logs in %s)\n",
                 bench.dir);
        bench_rtt_destroy (rtt);
        return -1;
    }
    return 0;
}

void
bench_latency (const bench_baseline_t *base, double e2e_jps)
{
    bench_router_t router;
    if (bench_router_start (&router, "latency", NULL, NULL)) {
        bench_line ("3.latency", "could not start the router");
        return;
    }
    pid_t jm = bench_jm_start (&router, "lat", 2, false);
    emq_client_t *client = bench_client (&router);
    void *payload = NULL;
    size_t size = 0;
    size_t max = (size_t) (10000 * bench.scale);
    double *samples = calloc (max ? max : 1, sizeof *samples);
    if (jm < 0 || !client || !samples || bench_noop_payload (0, &payload, &size)
        || bench_wait_slots (&router, 1, 2, 20000)) {
        bench_line ("3.latency", "could not start (see logs in %s)", bench.dir);
        goto done;
    }
    //  Warm up (plugin loaded in both workers, caches).
    s_sequential (client, payload, size, samples, 200, 5000000);

    int64_t cap_us = (int64_t) (20e6 * bench.scale);
    size_t count = s_sequential (client, payload, size, samples, max, cap_us);
    double p50 = bench_latency_report ("3.latency-idle", samples, count, "");
    double p999 = bench_quantile (samples, count, 0.999);
    double ratio_direct = p50 / base->direct_p50_us;
    double tail = p999 / p50;
    bench_figure ("3.latency-idle", "p50_over_direct", ratio_direct, NULL);
    bench_figure ("3.latency-idle", "p999_over_p50", tail, NULL);
    bench_line ("3.latency-idle",
                "p50 = %.2f x direct round trip (%.0f us); "
                "p99.9 = %.1f x p50",
                ratio_direct, base->direct_p50_us, tail);
    bench_target ("3.latency", "p50 / direct ZeroMQ round trip p50", ratio_direct, 1.1,
                  false, "x");
    bench_target ("3.latency", "p99.9 / p50 (idle)", tail, 10, false, "x");

    //  The same under a steady background load of half the throughput.
    s_load_t load = { .router = &router,
                      .rate = isfinite (e2e_jps) ? e2e_jps / 2 : 1000 };
    atomic_init (&load.stop, false);
    pthread_t thread;
    if (pthread_create (&thread, NULL, s_load_thread, &load) == 0) {
        bench_sleep_ms (500);
        count = s_sequential (client, payload, size, samples, max, cap_us);
        atomic_store (&load.stop, true);
        pthread_join (thread, NULL);
        char extra[160];
        double achieved = load.seconds > 0 ? load.done / load.seconds : 0;
        snprintf (extra, sizeof extra, "; background %.0f jobs/s asked, %.0f done",
                  load.rate, achieved);
        bench_figure ("3.latency-load", "background_rate_asked", load.rate, "jobs_per_s");
        bench_figure ("3.latency-load", "background_rate_done", achieved, "jobs_per_s");
        double p50_load = bench_latency_report ("3.latency-load", samples, count, extra);
        double tail_load = bench_quantile (samples, count, 0.999) / p50_load;
        bench_figure ("3.latency-load", "p999_over_p50", tail_load, NULL);
        bench_line ("3.latency-load", "p50 = %.2f x idle p50; p99.9 = %.1f x its p50",
                    p50_load / p50, tail_load);
        bench_target ("3.latency", "p99.9 / p50 (under half load)", tail_load, 10, false,
                      "x");
    }
done:
    free (samples);
    free (payload);
    emq_client_destroy (&client);
    bench_stop (jm, 5000);
    bench_router_stop (&router);
}

//  ---------------------------------------------------------------------
//  6. Memory

//  Runs the memory scenario on one router; count is the backlog size.
static void
s_memory_one (const char *scenario, const char *data_dir, long count)
{
    bench_router_t router;
    const char *extra[] = { "--queue-hwm", "100000000", "--result-ttl", "1", NULL };
    if (bench_router_start (&router, data_dir ? "mem-disk" : "mem-mem", data_dir,
                            extra)) {
        bench_line (scenario, "could not start the router");
        return;
    }
    pid_t jm = -1;
    emq_client_t *client = bench_client (&router);
    void *payload = NULL;
    size_t size = 0;
    if (!client || bench_noop_payload (64, &payload, &size)) {
        bench_line (scenario, "could not start the client");
        goto done;
    }
    bench_sleep_ms (300);
    long idle_kb = bench_rss_kb (router.pid);
    bench_run_t run;
    //  No reply: the backlog costs only what the router keeps per job.
    bench_pipeline (client, payload, size, count, 20000, 600000000, false, NULL, NULL,
                    &run);
    double submit_s = run.elapsed_us / 1e6;
    bench_sleep_ms (300);
    long backlog_kb = bench_rss_kb (router.pid);
    long queued = bench_router_backlog (&router);
    double per_job =
        queued > 0 ? (double) (backlog_kb - idle_kb) * 1024 / (double) queued : NAN;

    jm = bench_jm_start (&router, "mem", 2, false);
    int64_t start = bench_now_us ();
    int64_t cap = (int64_t) (150e6 * bench.scale);
    long left = queued;
    while (left > 0 && bench_now_us () - start < cap) {
        bench_sleep_ms (250);
        left = bench_router_backlog (&router);
    }
    double drain_s = (bench_now_us () - start) / 1e6;
    //  Ended jobs are kept result_ttl (1 s here) and expired every 10 s.
    bench_sleep_ms (11500);
    long after_kb = bench_rss_kb (router.pid);
    //  Diagnostic: is what stays allocated memory, or freed memory that
    //  malloc keeps? Asks the router to malloc_trim(0) through gdb.
    if (getenv ("EMQ_BENCH_GDB_TRIM")) {
        char command[256];
        snprintf (command, sizeof command,
                  "gdb -p %d -batch -ex 'call (int) malloc_trim(0)' "
                  ">/dev/null 2>&1",
                  (int) router.pid);
        if (system (command) == 0) {
            long trimmed_kb = bench_rss_kb (router.pid);
            bench_figure (scenario, "rss_after_malloc_trim", (double) trimmed_kb, "kb");
            bench_line (scenario, "after malloc_trim(0) (gdb): RSS %ld KiB", trimmed_kb);
        }
    }
    double growth =
        idle_kb > 0 ? (double) (after_kb - idle_kb) * 100 / (double) idle_kb : NAN;

    bench_figure (scenario, "jobs", (double) queued, NULL);
    bench_figure (scenario, "payload", (double) size, "bytes");
    bench_figure (scenario, "rss_idle", (double) idle_kb, "kb");
    bench_figure (scenario, "rss_backlog", (double) backlog_kb, "kb");
    bench_figure (scenario, "bytes_per_queued_job", per_job, NULL);
    bench_figure (scenario, "rss_after", (double) after_kb, "kb");
    bench_figure (scenario, "rss_after_vs_idle", growth, "percent");
    bench_figure (scenario, "submit_rate",
                  run.elapsed_us ? queued * 1e6 / run.elapsed_us : NAN, "jobs_per_s");
    bench_figure (scenario, "drain_rate", drain_s > 0 ? (queued - left) / drain_s : NAN,
                  "jobs_per_s");
    bench_line (scenario,
                "%ld queued %zu-byte jobs%s: RSS idle %ld KiB, backlog %ld KiB "
                "= %.0f B/job; after they ran %ld KiB (%+.1f %% vs idle)%s; "
                "submit %.1f s, drain %.1f s",
                queued, size, count < 1000000 ? " (scaled down from 1,000,000)" : "",
                idle_kb, backlog_kb, per_job, after_kb, growth,
                left > 0 ? " [NOT ALL RAN]" : "", submit_s, drain_s);
    if (count < 1000000) {
        char note[128];
        snprintf (note, sizeof note,
                  "scaled down to %ld jobs to stay within the time budget", count);
        bench_note (scenario, note);
    }
    char figure[96];
    snprintf (figure, sizeof figure, "bytes of RSS per queued job (%s)",
              data_dir ? "data dir" : "in memory");
    bench_target ("6.memory", figure, per_job, 200, false, "B");
    snprintf (figure, sizeof figure, "RSS after backlog ran vs idle (%s)",
              data_dir ? "data dir" : "in memory");
    bench_target ("6.memory", figure, growth, 10, false, "%");
done:
    free (payload);
    emq_client_destroy (&client);
    bench_stop (jm, 5000);
    bench_router_stop (&router);
}

void
bench_memory (double e2e_jps, double durable_jps)
{
    //  Bounded: the backlog must drain through one job manager with 2
    //  workers in about a minute (jobs without reply drain faster than the
    //  end-to-end rate: 60 s of it is about 40 s of draining).
    long full = (long) (1000000 * bench.scale);
    long mem = isfinite (e2e_jps) ? (long) (e2e_jps * 60 * bench.scale) : full / 10;
    long disk =
        isfinite (durable_jps) ? (long) (durable_jps * 25 * bench.scale) : full / 10;
    s_memory_one ("6.memory-mem", NULL, mem < full ? mem : full);
    char data_dir[1200];
    snprintf (data_dir, sizeof data_dir, "%s/data-memory", bench.dir);
    s_memory_one ("6.memory-disk", data_dir, disk < full ? disk : full);
}

//  ---------------------------------------------------------------------
//  7. Fan-out

#define FANOUT_JMS 8
#define FANOUT_WORKERS 4

void
bench_fanout (void)
{
    const char *scenario = "7.fanout";
    bench_router_t router;
    if (bench_router_start (&router, "fanout", NULL, NULL)) {
        bench_line (scenario, "could not start the router");
        return;
    }
    pid_t jms[FANOUT_JMS];
    for (int i = 0; i < FANOUT_JMS; i++) {
        char name[16];
        snprintf (name, sizeof name, "fan%d", i);
        jms[i] = bench_jm_start (&router, name, FANOUT_WORKERS, true);
    }
    emq_client_t *client = bench_client (&router);
    void *payload = NULL;
    size_t size = 0;
    const char *argv[] = { "/bin/true" };
    if (!client || emq_payload_exec (argv, 1, NULL, 0, NULL, 0, NULL, &payload, &size)
        || bench_wait_slots (&router, FANOUT_JMS, FANOUT_JMS * FANOUT_WORKERS, 30000)) {
        bench_line (scenario, "could not start %d job managers", FANOUT_JMS);
        goto done;
    }
    bench_run_t run;
    long total = (long) (8000 * bench.scale);
    bench_pipeline (client, payload, size, total, bench.inflight,
                    (int64_t) (15e6 * bench.scale), true, NULL, NULL, &run);
    double jps = run.results ? run.results * 1e6 / (double) run.elapsed_us : NAN;
    //  Per job manager counts, as the router saw them.
    char *status = bench_status (&router);
    json_t *root = status ? json_loads (status, 0, NULL) : NULL;
    free (status);
    json_t *by_worker = json_object_get (root, "processed_messages_by_worker");
    double counts[64], sum = 0;
    size_t n = 0;
    const char *key;
    json_t *value;
    char list[512] = "";
    json_object_foreach (by_worker, key, value)
    {
        if (n < 64) {
            counts[n] = (double) json_integer_value (value);
            sum += counts[n];
            char item[32];
            snprintf (item, sizeof item, "%s%.0f", n ? " " : "", counts[n]);
            strncat (list, item, sizeof list - strlen (list) - 1);
            n++;
        }
    }
    json_decref (root);
    double mean = n ? sum / (double) n : NAN, deviation = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs (counts[i] - mean) / mean * 100 > deviation)
            deviation = fabs (counts[i] - mean) / mean * 100;
    if (n < FANOUT_JMS)
        deviation = NAN;
    bench_figure (scenario, "jobs", (double) run.results, NULL);
    bench_figure (scenario, "throughput", jps, "jobs_per_s");
    bench_figure (scenario, "max_deviation_from_mean", deviation, "percent");
    bench_figure (scenario, "job_managers_seen", (double) n, NULL);
    bench_line (scenario,
                "%.0f jobs/s (%ld exec /bin/true, %d jms x %d workers, %ld failed); "
                "per jm: %s; max deviation from mean %.1f %%",
                jps, run.results, FANOUT_JMS, FANOUT_WORKERS, run.failed + run.errors,
                list, deviation);
    bench_target (scenario, "max deviation of a jm's job count from mean", deviation, 10,
                  false, "%");
done:
    free (payload);
    emq_client_destroy (&client);
    for (int i = 0; i < FANOUT_JMS; i++)
        bench_stop (jms[i], 5000);
    bench_router_stop (&router);
}
