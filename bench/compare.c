/*  compare — scenario 8 (issue 9): emq against beanstalkd, the real peer,
    on the same workload over TCP loopback, and the table of targets.

    In order: beanstalkd's throughput in its three modes
    (bench/beanstalkd.c); emq over tcp in memory, with --data-dir (fsync
    everysec, the default) and --data-dir --fsync always, 1 client with
    bench.inflight jobs in flight, 1 job manager with 2 workers, 64-byte
    noop payloads, results returned; the ZeroMQ LB broker and proxy over
    tcp; the round trips in memory of beanstalkd, emq and the LB broker,
    sampled in alternation; emq's round trip with a data dir (its p99.9);
    then `exec /bin/true` jobs next to the limit this
    machine puts on them, measured in slices between theirs: 2 threads of
    this process each posix_spawn /bin/true and wait for it, over and
    over.

    Nothing here starts a process of its own but the spawn loop's
    /bin/true, which it waits for.
*/
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define PAYLOAD_SIZE 64
#define SPAWNERS 2  // as many as the job manager has workers

typedef struct {
    int64_t stop_at_us;  // no spawn started after this
    long done;           // spawned, exited 0 and reaped
    int error;           // errno of a failure, or 0
} s_spawner_t;

static void *
s_spawner (void *arg)
{
    s_spawner_t *self = (s_spawner_t *) arg;
    char *const argv[] = { (char *) "/bin/true", NULL };
    while (bench_now_us () < self->stop_at_us) {
        pid_t pid;
        int rc = posix_spawn (&pid, "/bin/true", NULL, NULL, argv, environ);
        if (rc) {
            self->error = rc;
            break;
        }
        int status;
        while (waitpid (pid, &status, 0) < 0)
            if (errno != EINTR) {
                self->error = errno;
                return NULL;
            }
        if (!WIFEXITED (status) || WEXITSTATUS (status) != 0) {
            self->error = ECHILD;
            break;
        }
        self->done++;
    }
    return NULL;
}

//  The spawn + exec + wait limit, measured in slices between those of
//  the exec jobs: what all slices spawned over the time they took.
typedef struct {
    long done;
    int64_t elapsed_us;
    int slices;
    int error;
} s_limit_t;

//  One slice: SPAWNERS threads spawn /bin/true and wait, for SPAWN_SLICE_US
//  × scale (a bench_e2e_opts_t `between` callback).
#define SPAWN_SLICE_US 400000

static void
s_limit_slice (void *arg)
{
    s_limit_t *limit = (s_limit_t *) arg;
    s_spawner_t spawners[SPAWNERS];
    pthread_t threads[SPAWNERS];
    int started = 0;
    int64_t start = bench_now_us ();
    for (int i = 0; i < SPAWNERS; i++) {
        spawners[i] =
            (s_spawner_t){ .stop_at_us =
                               start + (int64_t) (SPAWN_SLICE_US * bench.scale) };
        if (pthread_create (&threads[i], NULL, s_spawner, &spawners[i]) == 0)
            started++;
    }
    for (int i = 0; i < started; i++) {
        pthread_join (threads[i], NULL);
        limit->done += spawners[i].done;
        if (spawners[i].error)
            limit->error = spawners[i].error;
    }
    if (started < SPAWNERS && !limit->error)
        limit->error = EAGAIN;
    limit->elapsed_us += bench_now_us () - start;
    limit->slices++;
}

//  Round trips, in memory, of beanstalkd, emq and the ZeroMQ LB broker
//  (all over tcp): the three run side by side and are sampled in turns of
//  RTT_TURN samples each, so that whatever else the machine does (and how
//  soon its idle CPUs wake) weighs on all three alike. Up to 10,000 ×
//  scale samples each, 30 s × scale in all. p50s in p50[] (NaN when not
//  measured), beanstalkd's p99 in *bs_p99.
#define RTT_TURN 100
#define RTT_SYSTEMS 3

static void
s_round_trips (const bench_beanstalkd_t *bs, double p50[RTT_SYSTEMS], double *bs_p99)
{
    const char *scenarios[RTT_SYSTEMS] = { "8.rtt-beanstalkd", "8.rtt-emq-mem",
                                           "8.rtt-lb-tcp" };
    const char *extras[RTT_SYSTEMS] = {
        "; put -> a worker reserves, deletes, puts a reply -> reply reserved",
        "; submit -> RESULT, 64-byte noop, in memory",
        "; DEALER -> LB broker -> echo worker -> broker -> DEALER"
    };
    bench_rtt_t rtts[RTT_SYSTEMS];
    bool up[RTT_SYSTEMS];
    double *samples[RTT_SYSTEMS];
    size_t count[RTT_SYSTEMS] = { 0 };
    size_t max = (size_t) (10000 * bench.scale);
    memset (rtts, 0, sizeof rtts);
    up[0] = bs->installed && bench_beanstalkd_rtt_new (&rtts[0], bs->path) == 0;
    up[1] = bench_emq_rtt_new (&rtts[1], true, NULL, PAYLOAD_SIZE) == 0;
    up[2] = bench_lb_rtt_new (&rtts[2]) == 0;
    for (int i = 0; i < RTT_SYSTEMS; i++) {
        p50[i] = NAN;
        samples[i] = calloc (max ? max : 1, sizeof (double));
        if (!samples[i])
            up[i] = false;
        //  Warm up: connections, caches, the workers' plugin.
        for (int n = 0; up[i] && n < 200; n++)
            if (!isfinite (rtts[i].sample (rtts[i].self)))
                up[i] = false;
    }
    int64_t stop_at = bench_now_us () + (int64_t) (30e6 * bench.scale);
    bool active = true;
    while (active && bench_now_us () < stop_at) {
        active = false;
        for (int i = 0; i < RTT_SYSTEMS; i++) {
            for (int n = 0; up[i] && n < RTT_TURN && count[i] < max; n++) {
                double sample = rtts[i].sample (rtts[i].self);
                if (isfinite (sample))
                    samples[i][count[i]++] = sample;
                else {
                    fprintf (stderr, "emq-bench: %s: a round trip failed\n",
                             rtts[i].name);
                    up[i] = false;
                }
            }
            active = active || (up[i] && count[i] < max);
        }
    }
    for (int i = 0; i < RTT_SYSTEMS; i++) {
        bench_rtt_destroy (&rtts[i]);
        if (count[i] > 0)
            p50[i] = bench_latency_report (scenarios[i], samples[i], count[i], extras[i]);
        else if (i > 0 || bs->installed)
            bench_line (scenarios[i], "not measured (see logs in %s)", bench.dir);
        if (i == 0)
            *bs_p99 = count[0] ? bench_quantile (samples[0], count[0], 0.99) : NAN;
        free (samples[i]);
    }
}

//  "met" for a ratio against a bound; -1 when not measured.
static int
s_met (double value, double bound, bool at_least)
{
    if (!isfinite (value))
        return -1;
    return at_least ? value >= bound : value <= bound;
}

//  Under the table, for each throughput row: what bounds it, from this
//  run's own figures. On N CPUs a system that spends C µs of CPU per job
//  (every process of it together) moves at most N / C jobs per second, so
//  a target of R jobs/s is a budget of N / R µs per job.
static void
s_bounds (const bench_beanstalkd_t *bs, double mem, double everysec, double always,
          const double cpu[3], const double busy[3], double mem_p50, double bs_p50,
          double lb_p50, double exec_jps, double exec_cpu, double limit)
{
    double ncpu = (double) sysconf (_SC_NPROCESSORS_ONLN);
    const char *modes[3] = { "in memory", "data dir, everysec", "fsync always" };
    //  What would move each, were it CPU: docs/performance.md, "Last run".
    const char *levers[3] = {
        "fewer processes per job (no-op-sized jobs run in the job manager, "
        "without a worker's isolation) or fewer libzmq calls per job (ACK and "
        "RESULT in one message)",
        "the above, and fewer store writes per job (one row write, not a row "
        "and an index update per state change)",
        "the above: the disk is not what bounds it (one fsync per group commit)"
    };
    double jps[3] = { mem, everysec, always };
    double want[3] = { 4 * bs->mem_jps, 4 * bs->binlog_jps, 10 * bs->fsync_jps };
    for (int i = 0; i < 3; i++) {
        if (!isfinite (cpu[i]) || !isfinite (want[i]) || jps[i] >= want[i])
            continue;
        double budget = ncpu * 1e6 / want[i];
        if (cpu[i] > budget)
            bench_compare_note ("Bound, %s: CPU. emq spent %.1f µs of CPU per job over "
                                "all its processes (all CPUs %.0f %% busy): at most %.0f "
                                "jobs/s on %.0f CPUs; it moved %.0f. The target, %.0f "
                                "jobs/s, is a budget of %.1f µs per job. Lever: %s.",
                                modes[i], cpu[i], busy[i], ncpu * 1e6 / cpu[i], ncpu,
                                jps[i], want[i], budget, levers[i]);
        else
            bench_compare_note ("Bound, %s: not CPU. emq spent %.1f µs of CPU per job, "
                                "within the target's budget of %.1f µs, with all CPUs "
                                "%.0f %% busy: the rest is waiting (the disk, wake-ups "
                                "between the processes).",
                                modes[i], cpu[i], budget, busy[i]);
    }
    if (isfinite (bs->mem_cpu_per_job) && isfinite (cpu[0]))
        bench_compare_note ("CPU per job in memory, every process together: beanstalkd "
                            "%.1f µs, emq %.1f µs (%.2f×).",
                            bs->mem_cpu_per_job, cpu[0], cpu[0] / bs->mem_cpu_per_job);
    if (isfinite (mem_p50) && isfinite (bs_p50) && isfinite (lb_p50) && mem_p50 > lb_p50)
        bench_compare_note ("Bound, round trip: the bare ZeroMQ LB broker's p50 is %.2f× "
                            "beanstalkd's; emq adds %.0f µs to it (the job manager's "
                            "pipe hop to a worker and back, the RESULT). No broker on "
                            "libzmq meets 2× here; lever for the rest: the pipe hop.",
                            lb_p50 / bs_p50, mem_p50 - lb_p50);
    double cpu_noop = cpu[0];
    if (isfinite (exec_jps) && isfinite (limit) && exec_jps < 0.8 * limit
        && isfinite (exec_cpu))
        //  At the limit the spawns alone take every CPU: 0.8× of it leaves
        //  a quarter of a spawn's CPU for everything else.
        bench_compare_note (
            "Bound, exec: CPU. The router, job manager and client spent %.0f µs of "
            "CPU per exec job (%.1f per no-op job in memory, where messages go in "
            "batches); at 0.8× the limit a spawn's CPU is %.0f µs and the rest has "
            "%.0f µs. At this rate each message travels alone and wakes its process "
            "and libzmq's I/O thread (perf: most of it kernel time, context "
            "switches). Lever: fewer than the 5 messages per job (submit, ACK, "
            "dispatch, DONE, RESULT: the ACK could ride with the RESULT). More "
            "workers only fill the idle CPU: the rest stays over its budget "
            "(docs/performance.md).",
            exec_cpu, cpu_noop, ncpu * 1e6 / limit, ncpu * 1e6 / limit * 0.25);
}

void
bench_compare (void)
{
    bench_beanstalkd_t bs;
    bench_beanstalkd (&bs);

    //  The emq side of the same three modes.
    char dirs[3][1200];
    snprintf (dirs[0], sizeof dirs[0], "%s/data-tcp-everysec", bench.dir);
    snprintf (dirs[1], sizeof dirs[1], "%s/data-tcp-always", bench.dir);
    snprintf (dirs[2], sizeof dirs[2], "%s/data-tcp-rtt", bench.dir);
    //  What each run cost, for the lines that say what bounds a target.
    double cpu[3] = { NAN, NAN, NAN }, busy[3] = { NAN, NAN, NAN };
    bench_e2e_opts_t opts = { .scenario = "8.emq-tcp-mem",
                              .tcp = true,
                              .payload_size = PAYLOAD_SIZE,
                              .cap_us = (int64_t) (5e6 * bench.scale),
                              .cpu_per_job = &cpu[0],
                              .busy = &busy[0] };
    double mem = bench_e2e_run (&opts);
    opts.scenario = "8.emq-tcp-everysec";
    opts.data_dir = dirs[0];
    opts.fsync = "everysec";
    opts.cpu_per_job = &cpu[1];
    opts.busy = &busy[1];
    double everysec = bench_e2e_run (&opts);
    opts.scenario = "8.emq-tcp-always";
    opts.data_dir = dirs[1];
    opts.fsync = "always";
    opts.cpu_per_job = &cpu[2];
    opts.busy = &busy[2];
    double always = bench_e2e_run (&opts);

    bench_baseline_tcp_t zmq;
    bench_baseline_tcp (&zmq);

    double p50[RTT_SYSTEMS], bs_p99;
    s_round_trips (&bs, p50, &bs_p99);
    double mem_p50 = p50[1], lb_p50 = p50[2];
    bench_rtt_t rtt;
    double disk_p50 = NAN, disk_p999 = NAN;
    if (bench_emq_rtt_new (&rtt, true, dirs[2], PAYLOAD_SIZE) == 0) {
        disk_p50 = bench_rtt_run ("8.rtt-emq-disk", &rtt,
                                  "; submit -> RESULT, 64-byte noop, "
                                  "--data-dir (fsync everysec)",
                                  &disk_p999);
        bench_rtt_destroy (&rtt);
    }
    else
        bench_line ("8.rtt-emq-disk", "could not start (see logs in %s)", bench.dir);
    double tail = disk_p999 / disk_p50;
    bench_figure ("8.rtt-emq-disk", "p999_over_p50", tail, NULL);

    //  The exec jobs run in slices with a slice of the spawn limit before
    //  each and after the last, so that what else the machine does (on
    //  this shared machine the spawn rate swings several times over within
    //  seconds) weighs on both alike.
    s_limit_t spawns = { 0 };
    bench_e2e_opts_t exec = { .scenario = "8.emq-exec",
                              .tcp = true,
                              .exec = true,
                              .total = (long) (10000 * bench.scale),
                              .cap_us = (int64_t) (5e6 * bench.scale),
                              .slices = 5,
                              .between = s_limit_slice,
                              .between_arg = &spawns };
    double exec_cpu = NAN;
    exec.cpu_per_job = &exec_cpu;
    double exec_jps = bench_e2e_run (&exec);
    double limit = spawns.done > 0 && !spawns.error
                       ? spawns.done * 1e6 / (double) spawns.elapsed_us
                       : NAN;
    bench_figure ("8.spawn-limit", "spawns", (double) spawns.done, NULL);
    bench_figure ("8.spawn-limit", "rate", limit, "per_s");
    if (spawns.error)
        bench_line ("8.spawn-limit", "posix_spawn /bin/true failed: %s",
                    strerror (spawns.error));
    else
        bench_line ("8.spawn-limit",
                    "%.0f /bin/true per second (posix_spawn + waitpid, %d in "
                    "parallel, %ld runs in %.2f s, %d slices between the exec jobs)",
                    limit, SPAWNERS, spawns.done, spawns.elapsed_us / 1e6, spawns.slices);

    //  The table.
    const char *absent = bs.installed ? NULL : "not installed";
    bench_compare_t row = { .mode = "in memory",
                            .unit = "jobs/s",
                            .beanstalkd = bs.mem_jps,
                            .emq = mem,
                            .ratio = mem / bs.mem_jps,
                            .beanstalkd_text = absent,
                            .target = "≥ 4×" };
    row.met = s_met (row.ratio, 4, true);
    bench_compare_row (&row);
    row = (bench_compare_t){
        .mode = "on disk, default sync (beanstalkd -b, emq --data-dir, fsync everysec)",
        .unit = "jobs/s",
        .beanstalkd = bs.binlog_jps,
        .emq = everysec,
        .ratio = everysec / bs.binlog_jps,
        .beanstalkd_text = absent,
        .target = "≥ 4×"
    };
    row.met = s_met (row.ratio, 4, true);
    bench_compare_row (&row);
    row = (bench_compare_t){
        .mode = "fsync on every write / batch (beanstalkd -b -f0, emq --fsync always)",
        .unit = "jobs/s",
        .beanstalkd = bs.fsync_jps,
        .emq = always,
        .ratio = always / bs.fsync_jps,
        .beanstalkd_text = absent,
        .target = "≥ 10×"
    };
    row.met = s_met (row.ratio, 10, true);
    bench_compare_row (&row);

    double to_lb = mem_p50 / lb_p50;
    char target[160];
    snprintf (target, sizeof target,
              "≤ 2× beanstalkd and ≤ 1.2× the ZeroMQ LB broker's "
              "p50 (%.0f µs: emq is %.2f×)",
              lb_p50, to_lb);
    row = (bench_compare_t){ .mode = "sequential round trip p50, in memory",
                             .unit = "µs",
                             .beanstalkd = p50[0],
                             .emq = mem_p50,
                             .ratio = mem_p50 / p50[0],
                             .beanstalkd_text = absent,
                             .target = target };
    int to_bs_met = s_met (row.ratio, 2, false), to_lb_met = s_met (to_lb, 1.2, false);
    row.met = to_bs_met < 0 || to_lb_met < 0 ? -1 : to_bs_met && to_lb_met;
    bench_compare_row (&row);

    char extra[64];
    snprintf (extra, sizeof extra, "(%.1f× its p50 of %.0f µs)", tail, disk_p50);
    row = (bench_compare_t){ .mode = "p99.9 with a data dir",
                             .unit = "µs",
                             .beanstalkd = NAN,
                             .emq = disk_p999,
                             .ratio = tail,
                             .beanstalkd_text = "—",
                             .emq_extra = extra,
                             .ratio_text = "—",
                             .target = "≤ 10× p50" };
    row.met = s_met (tail, 10, false);
    bench_compare_row (&row);

    char exec_ratio[64];
    double to_limit = exec_jps / limit;
    snprintf (target, sizeof target, "≥ 0.8× the spawn+exec+wait limit (%.0f/s)", limit);
    if (isfinite (to_limit))
        snprintf (exec_ratio, sizeof exec_ratio, "— (%.2f× the limit)", to_limit);
    else
        snprintf (exec_ratio, sizeof exec_ratio, "—");
    row = (bench_compare_t){ .mode = "exec /bin/true jobs",
                             .unit = "jobs/s",
                             .beanstalkd = NAN,
                             .emq = exec_jps,
                             .ratio = to_limit,
                             .beanstalkd_text = "—",
                             .ratio_text = exec_ratio,
                             .target = target };
    row.met = s_met (to_limit, 0.8, true);
    bench_compare_row (&row);

    bench_compare_note (
        "Same run, tcp://127.0.0.1, 2 echo workers: ZeroMQ LB broker %.0f req/s, "
        "round trip p50 %.0f µs; pipelined zmq_proxy %.0f req/s.",
        zmq.lb_rps, lb_p50, zmq.proxy_rps);
    bench_compare_note ("emq in memory ÷ ZeroMQ LB broker: %.2f×; ÷ proxy: %.3f×. "
                        "Round trips sampled in alternation; beanstalkd's p99 %.0f µs.",
                        mem / zmq.lb_rps, mem / zmq.proxy_rps, bs_p99);
    s_bounds (&bs, mem, everysec, always, cpu, busy, mem_p50, p50[0], lb_p50, exec_jps,
              exec_cpu, limit);
    if (!bs.installed)
        bench_compare_note (
            "beanstalkd is not installed: sudo apt-get install beanstalkd "
            "(or make deps), then run again.");
}
