/*  scale — scenario 9 (issue 9, part 5): does emq's cost per job hold as
    a deployment grows?

    - fan: 8 clients (threads, one libemq client each) × 4 job managers
      against 1 client × 1 job manager, same jobs in flight in all (target:
      at least as many jobs/s).
    - queues: one job manager serving 100 queues, the client spreading its
      submits over them, against 1 queue (target: router CPU per job within
      +20 %).
    - depth: 10 k, 100 k and 1 M jobs queued before a job manager starts;
      the first 10 k after it does, timed from the first result (target: the
      router's CPU per job at 1 M within +20 % of 10 k's). The router's RSS
      per queued job is reported with it.

    All in memory, on ipc://, noop jobs, results returned to the clients.
*/
#include "bench.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FAN_CLIENTS 8
#define FAN_JMS 4

typedef struct {
    const bench_router_t *router;
    const void *payload;
    size_t size;
    long total;
    int inflight;
    pthread_barrier_t *start;
    bench_run_t run;
} s_client_job_t;

static void *
s_client_thread (void *arg)
{
    s_client_job_t *job = (s_client_job_t *) arg;
    emq_client_t *client = bench_client (job->router);
    pthread_barrier_wait (job->start);
    if (client)
        bench_pipeline (client, job->payload, job->size, job->total, job->inflight,
                        (int64_t) (8e6 * bench.scale), true, NULL, NULL, &job->run);
    emq_client_destroy (&client);
    return NULL;
}

//  jobs/s of `clients` clients against `jms` job managers of 2 workers.
static double
s_fan (int clients, int jms, const void *payload, size_t size)
{
    char scenario[48], name[32];
    snprintf (scenario, sizeof scenario, "9.scale-fan-%dx%d", clients, jms);
    snprintf (name, sizeof name, "fan-%dx%d", clients, jms);
    bench_router_t router;
    if (bench_router_start (&router, name, NULL, NULL)) {
        bench_line (scenario, "could not start the router");
        return NAN;
    }
    double jps = NAN;
    pid_t pids[FAN_JMS] = { 0 };
    for (int i = 0; i < jms; i++) {
        char jm_name[48];
        snprintf (jm_name, sizeof jm_name, "%s-%d", name, i);
        pids[i] = bench_jm_start (&router, jm_name, 2, false);
    }
    if (bench_wait_slots (&router, jms, 2 * jms, 20000)) {
        bench_line (scenario, "could not start %d job managers", jms);
        goto done;
    }
    //  Warm up: plugins loaded, connections up.
    emq_client_t *warm = bench_client (&router);
    bench_run_t run;
    if (warm)
        bench_pipeline (warm, payload, size, 2000, bench.inflight, 10000000, true, NULL,
                        NULL, &run);
    emq_client_destroy (&warm);
    pthread_barrier_t start;
    pthread_barrier_init (&start, NULL, (unsigned) clients + 1);
    s_client_job_t jobs[FAN_CLIENTS];
    pthread_t threads[FAN_CLIENTS];
    long total = (long) (120000 * bench.scale);
    for (int i = 0; i < clients; i++) {
        jobs[i] = (s_client_job_t){ .router = &router,
                                    .payload = payload,
                                    .size = size,
                                    .total = total / clients,
                                    .inflight = bench.inflight / clients,
                                    .start = &start };
        pthread_create (&threads[i], NULL, s_client_thread, &jobs[i]);
    }
    int64_t router0 = bench_cpu_us (router.pid);
    pthread_barrier_wait (&start);
    int64_t t0 = bench_now_us ();
    long results = 0, failed = 0;
    for (int i = 0; i < clients; i++) {
        pthread_join (threads[i], NULL);
        results += jobs[i].run.results;
        failed += jobs[i].run.failed + jobs[i].run.errors;
    }
    int64_t elapsed = bench_now_us () - t0;
    double router_us =
        results ? (bench_cpu_us (router.pid) - router0) / (double) results : NAN;
    pthread_barrier_destroy (&start);
    if (results > 0)
        jps = results * 1e6 / (double) elapsed;
    bench_figure (scenario, "throughput", jps, "jobs_per_s");
    bench_figure (scenario, "router_cpu_per_job", router_us, "us");
    bench_line (scenario,
                "%.0f jobs/s (%d clients x %d jms of 2 workers, %ld jobs, %d in flight "
                "in all, %ld failed); router %.1f us/job",
                jps, clients, jms, results, bench.inflight, failed, router_us);
done:
    for (int i = 0; i < jms; i++)
        bench_stop (pids[i], 5000);
    bench_router_stop (&router);
    return jps;
}

//  Router CPU per job with the jobs spread over `count` queues.
static double
s_queues (int count, const void *payload, size_t size)
{
    char scenario[48], name[32];
    snprintf (scenario, sizeof scenario, "9.scale-queues-%d", count);
    snprintf (name, sizeof name, "queues-%d", count);
    bench_router_t router;
    if (bench_router_start (&router, name, NULL, NULL)) {
        bench_line (scenario, "could not start the router");
        return NAN;
    }
    //  q000 .. q099, equal weights, and the list for the client.
    char spec[8192] = "[";
    char names[100][8];
    const char *queues[101];
    for (int i = 0; i < count && i < 100; i++) {
        snprintf (names[i], sizeof names[i], "q%03d", i);
        queues[i] = names[i];
        size_t used = strlen (spec);
        snprintf (spec + used, sizeof spec - used, "%s[10,\"%s\"]", i ? "," : "",
                  names[i]);
    }
    queues[count < 100 ? count : 100] = NULL;
    strncat (spec, "]", sizeof spec - strlen (spec) - 1);
    double router_us = NAN;
    pid_t jm = bench_jm_start_queues (&router, name, 2, false, spec);
    emq_client_t *client = bench_client (&router);
    if (jm < 0 || !client || bench_wait_slots (&router, 1, 2, 20000)) {
        bench_line (scenario, "could not start (see logs in %s)", bench.dir);
        goto done;
    }
    bench_run_t run;
    bench_pipeline_queues (client, queues, payload, size, 2000, bench.inflight, 10000000,
                           true, NULL, NULL, &run);
    int64_t router0 = bench_cpu_us (router.pid);
    bench_pipeline_queues (client, queues, payload, size, (long) (100000 * bench.scale),
                           bench.inflight, (int64_t) (6e6 * bench.scale), true, NULL,
                           NULL, &run);
    if (run.results > 0 && !run.stalled)
        router_us = (bench_cpu_us (router.pid) - router0) / (double) run.results;
    double jps = run.results ? run.results * 1e6 / (double) run.elapsed_us : NAN;
    bench_figure (scenario, "throughput", jps, "jobs_per_s");
    bench_figure (scenario, "router_cpu_per_job", router_us, "us");
    bench_line (scenario,
                "%.0f jobs/s over %d queue%s (%ld jobs, %ld failed); router %.1f us/job",
                jps, count, count == 1 ? "" : "s", run.results, run.failed + run.errors,
                router_us);
done:
    emq_client_destroy (&client);
    bench_stop (jm, 5000);
    bench_router_stop (&router);
    return router_us;
}

//  Submits `count` jobs with no job manager connected; returns how many
//  were ACKed.
static long
s_preload (emq_client_t *client, const void *payload, size_t size, long count)
{
    enum { S_MANY = 1024, S_UNACKED = 20000 };
    const void *payloads[S_MANY];
    size_t sizes[S_MANY];
    for (int i = 0; i < S_MANY; i++) {
        payloads[i] = payload;
        sizes[i] = size;
    }
    emq_submit_opts_t opts = { .queue = "default", .reply = true };
    long sent = 0, acked = 0;
    emq_event_t event;
    while (acked < count) {
        while (sent < count && sent - acked < S_UNACKED) {
            size_t n = (size_t) (count - sent < S_MANY ? count - sent : S_MANY), done = 0;
            if (emq_submit_many (client, &opts, payloads, sizes, n, NULL, &done))
                return acked;
            sent += (long) done;
        }
        if (emq_poll (client, 10000, &event))
            return acked;
        do {
            if (event.type == EMQ_EVENT_ACK)
                acked++;
            else if (event.type == EMQ_EVENT_ERROR)
                return acked;
        } while (emq_poll (client, 0, &event) == 0);
    }
    return acked;
}

//  Router CPU per job of the first `drain` jobs after a job manager meets
//  `depth` queued ones.
static double
s_depth (long depth, long drain, const void *payload, size_t size)
{
    char scenario[48], name[32];
    snprintf (scenario, sizeof scenario, "9.scale-depth-%ldk", depth / 1000);
    snprintf (name, sizeof name, "depth-%ld", depth);
    bench_router_t router;
    const char *extra[] = { "--queue-hwm", "100000000", NULL };  // default 100 k
    if (bench_router_start (&router, name, NULL, extra)) {
        bench_line (scenario, "could not start the router");
        return NAN;
    }
    double router_us = NAN;
    pid_t jm = -1;
    emq_client_t *client = bench_client (&router);
    long rss0 = bench_rss_kb (router.pid);
    int64_t p0 = bench_now_us ();
    long queued = client ? s_preload (client, payload, size, depth) : 0;
    double preload_s = (bench_now_us () - p0) / 1e6;
    long rss1 = bench_rss_kb (router.pid);
    if (queued < depth) {
        bench_line (scenario, "only %ld of %ld jobs were queued", queued, depth);
        goto done;
    }
    jm = bench_jm_start (&router, name, 2, false);
    emq_event_t event;
    long results = 0;
    int64_t t1 = 0, cpu1 = 0;
    while (results < drain && emq_poll (client, 10000, &event) == 0)
        if (event.type == EMQ_EVENT_RESULT && ++results == 1) {
            t1 = bench_now_us ();  // from the first result: the jm's start is not timed
            cpu1 = bench_cpu_us (router.pid);
        }
    int64_t t2 = bench_now_us (), cpu2 = bench_cpu_us (router.pid);
    if (results < drain) {
        bench_line (scenario, "only %ld of %ld results came", results, drain);
        goto done;
    }
    router_us = (double) (cpu2 - cpu1) / (double) (results - 1);
    double jps = (double) (results - 1) * 1e6 / (double) (t2 - t1);
    double bytes_per_job = (double) (rss1 - rss0) * 1024 / (double) depth;
    bench_figure (scenario, "throughput", jps, "jobs_per_s");
    bench_figure (scenario, "router_cpu_per_job", router_us, "us");
    bench_figure (scenario, "router_rss_per_queued_job", bytes_per_job, "bytes");
    bench_line (scenario,
                "%.0f jobs/s, router %.1f us/job over the first %ld of %ld queued "
                "(queued in %.1f s; router RSS %.0f bytes per queued job)",
                jps, router_us, drain, depth, preload_s, bytes_per_job);
done:
    emq_client_destroy (&client);
    if (jm > 0)
        bench_stop (jm, 5000);
    bench_router_stop (&router);
    return router_us;
}

void
bench_scale (void)
{
    void *payload = NULL;
    size_t size = 0;
    if (bench_noop_payload (0, &payload, &size))
        return;
    double one = s_fan (1, 1, payload, size);
    double many = s_fan (FAN_CLIENTS, FAN_JMS, payload, size);
    bench_target ("9.scale", "8 clients x 4 jms / 1 x 1 (jobs/s)", many / one, 1.0, true,
                  "x");
    double q1 = s_queues (1, payload, size);
    double q100 = s_queues (100, payload, size);
    bench_target ("9.scale", "router CPU/job, 100 queues / 1 queue", q100 / q1, 1.2,
                  false, "x");
    long drain = (long) (10000 * bench.scale);
    double d10k = s_depth ((long) (10000 * bench.scale), drain, payload, size);
    s_depth ((long) (100000 * bench.scale), drain, payload, size);
    double d1m = s_depth ((long) (1000000 * bench.scale), drain, payload, size);
    bench_target ("9.scale", "router CPU/job, 1M queued / 10k queued", d1m / d10k, 1.2,
                  false, "x");
    free (payload);
}
