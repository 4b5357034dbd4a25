/*  emq-bench — command line: settings, the scenarios in order, the final
    table, the JSON and plots. See bench.h and docs/performance.md.
*/
#include "bench.h"
#include "numparse.h"

#include <czmq.h>
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 2

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "Usage: emq-bench [OPTIONS]\n"
        "Benchmarks emq (real emq-router and emq-jobmanager processes) against\n"
        "ZeroMQ baselines and beanstalkd measured in the same run, and reports the\n"
        "targets met.\n"
        "\n"
        "  --json FILE        write every figure, the table and the series as JSON\n"
        "  --plot DIR         write latency and throughput data (and PNGs, if\n"
        "                     gnuplot is installed) to DIR\n"
        "  --only LIST        run only these scenarios, e.g. 1,2,4 (default all:\n"
        "                     1 baseline, 2 end to end, 3 latency, 4 router alone,\n"
        "                     5 durable, 6 memory, 7 fan-out, 8 against beanstalkd, 9 "
        "scale)\n"
        "  --scale X          multiply job counts and time caps by X (default 1)\n"
        "  --inflight N       jobs kept in flight by pipelining clients (1000)\n"
        "  --build DIR        where bin/ and plugins/ are (default: next to this "
        "program)\n"
        "  --keep             keep the temp dir (logs, databases)\n"
        "  -v, --verbose      progress on stderr\n"
        "  -h, --help\n"
        "\n"
        "Scenario 8 starts beanstalkd from PATH (or $EMQ_BENCH_BEANSTALKD); without\n"
        "it those rows are skipped (sudo apt-get install beanstalkd).\n"
        "\n"
        "EMQ_BENCH_WRAP_ROUTER_<NAME> (e.g. EMQ_BENCH_WRAP_ROUTER_ALONE='strace -c -f\n"
        "-o /tmp/s.txt') runs that router under a wrapper, for profiling.\n"
        "\n"
        "Exit status: 0 the run completed (whether or not targets were met),\n"
        "1 it could not run, 2 bad usage.\n");
}

static int
s_rm_entry (const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void) sb;
    (void) flag;
    (void) ftw;
    return remove (path);
}

//  Reads the command line into bench and the out-parameters. Returns -1 to
//  go on, or the exit status.
static int
s_parse_args (int argc, char **argv, const char **json_path, const char **plot_dir,
              const char **only)
{
    static struct option options[] = {
        { "json", required_argument, 0, 'j' },     { "plot", required_argument, 0, 'p' },
        { "only", required_argument, 0, 'o' },     { "scale", required_argument, 0, 's' },
        { "inflight", required_argument, 0, 'i' }, { "build", required_argument, 0, 'b' },
        { "keep", no_argument, 0, 'k' },           { "verbose", no_argument, 0, 'v' },
        { "help", no_argument, 0, 'h' },           { 0, 0, 0, 0 }
    };
    int opt;
    char *end;
    uint64_t inflight;
    while ((opt = getopt_long (argc, argv, "vh", options, NULL)) != -1) {
        switch (opt) {
            case 'j':
                *json_path = optarg;
                break;
            case 'p':
                *plot_dir = optarg;
                break;
            case 'o':
                *only = optarg;
                break;
            case 's':
                bench.scale = strtod (optarg, &end);
                if (*end || !(bench.scale > 0) || bench.scale > 100) {
                    fprintf (stderr,
                             "emq-bench: --scale '%s': expected a number in (0, 100]\n",
                             optarg);
                    return EXIT_USAGE;
                }
                break;
            case 'i':
                if (numparse_uint (optarg, 100000, &inflight) || inflight < 1) {
                    fprintf (stderr, "emq-bench: --inflight '%s': expected 1..100000\n",
                             optarg);
                    return EXIT_USAGE;
                }
                bench.inflight = (int) inflight;
                break;
            case 'b':
                if (!realpath (optarg, bench.build)) {
                    fprintf (stderr, "emq-bench: --build '%s': %s\n", optarg,
                             strerror (errno));
                    return EXIT_USAGE;
                }
                break;
            case 'k':
                bench.keep = true;
                break;
            case 'v':
                bench.verbose = true;
                break;
            case 'h':
                s_usage (stdout);
                return 0;
            default:
                s_usage (stderr);
                return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "emq-bench: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    return -1;
}

//  The build directory (next to this program unless --build said) and the
//  run's temp dir with its empty configuration. Returns 0 or -1 (said why).
static int
s_setup (void)
{
    if (!*bench.build) {
        //  build/bin/emq-bench -> build
        char self[PATH_MAX];
        ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
        if (n < 0) {
            fprintf (stderr, "emq-bench: /proc/self/exe: %s\n", strerror (errno));
            return -1;
        }
        self[n] = 0;
        snprintf (bench.build, sizeof bench.build, "%s", dirname (dirname (self)));
    }
    //  Ctrl-C ends the run at once; children die with us (PDEATHSIG).
    zsys_handler_set (NULL);
    snprintf (bench.dir, sizeof bench.dir, "%s/emq-bench-XXXXXX",
              getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp");
    if (!mkdtemp (bench.dir)) {
        fprintf (stderr, "emq-bench: mkdtemp %s: %s\n", bench.dir, strerror (errno));
        return -1;
    }
    char conf[1100];
    snprintf (conf, sizeof conf, "%s/empty.conf", bench.dir);
    FILE *file = fopen (conf, "w");
    if (file)
        fclose (file);
    return 0;
}

//  Scenario 5: the three fsync policies; returns everysec's jobs/s.
static double
s_durable (const char *only, double e2e)
{
    double everysec = NAN;
    const char *policies[] = { "always", "everysec", "off" };
    for (size_t i = 0; i < 3; i++) {
        if (!strchr (only, '5') && i != 1)
            continue;
        char scenario[32], data_dir[1200];
        snprintf (scenario, sizeof scenario, "5.durable-%s", policies[i]);
        snprintf (data_dir, sizeof data_dir, "%s/data-%s", bench.dir, policies[i]);
        //  5 s each (8 s in scenario 2): the whole run must stay under
        //  5 minutes on 2 cores.
        bench_e2e_opts_t opts = { .scenario = scenario,
                                  .data_dir = data_dir,
                                  .fsync = policies[i],
                                  .cap_us = (int64_t) (5e6 * bench.scale) };
        double jps = bench_e2e_run (&opts);
        double ratio = jps / e2e;
        bench_figure (scenario, "ratio_to_in_memory", ratio, NULL);
        bench_line (scenario, "= %.3f x in memory", ratio);
        if (i == 1)
            everysec = jps;
        if (i == 0)
            bench_target ("5.durable", "fsync always / in memory", ratio, 0.5, true, "x");
    }
    return everysec;
}

//  The scenarios named in only, in order.
static void
s_scenarios (const char *only)
{
    bench_baseline_t base = { NAN, NAN, NAN, NAN };
    double e2e = NAN, everysec = NAN;
    if (strchr (only, '1'))
        bench_baseline (&base);
    if (strchr (only, '2') || strchr (only, '3') || strchr (only, '5')
        || strchr (only, '6')) {
        e2e = bench_e2e ("2.e2e-noop", NULL, "off", true);
        double lb = e2e / base.lb_rps, proxy = e2e / base.proxy_rps;
        bench_figure ("2.e2e-noop", "ratio_to_lb_baseline", lb, NULL);
        bench_figure ("2.e2e-noop", "ratio_to_proxy_baseline", proxy, NULL);
        bench_line ("2.e2e-noop", "= %.3f x LB broker baseline, %.3f x pipelined proxy",
                    lb, proxy);
        if (strchr (only, '2')) {
            bench_target ("2.e2e", "jobs/s / LB broker baseline", lb, 0.30, true, "x");
            bench_target ("2.e2e", "jobs/s / pipelined proxy baseline", proxy, 0.30, true,
                          "x");
        }
    }
    if (strchr (only, '3'))
        bench_latency (&base, e2e);
    if (strchr (only, '4'))
        bench_router_alone ();
    if (strchr (only, '5') || strchr (only, '6'))
        everysec = s_durable (only, e2e);
    if (strchr (only, '6'))
        bench_memory (e2e, everysec);
    if (strchr (only, '7'))
        bench_fanout ();
    if (strchr (only, '8'))
        bench_compare ();
    if (strchr (only, '9'))
        bench_scale ();
}

int
main (int argc, char **argv)
{
    //  A baseline child: nothing else of the benchmark runs in it.
    if (argc >= 2 && strcmp (argv[1], "--child") == 0)
        return bench_child (argc - 2, argv + 2);
    const char *json_path = NULL, *plot_dir = NULL, *only = "123456789";
    int rc = s_parse_args (argc, argv, &json_path, &plot_dir, &only);
    if (rc >= 0)
        return rc;
    if (s_setup ())
        return 1;
    long nproc = sysconf (_SC_NPROCESSORS_ONLN);
    printf ("emq-bench: %ld cpus, scale %g, %d in flight, temp dir %s\n\n", nproc,
            bench.scale, bench.inflight, bench.dir);
    int64_t started = bench_now_us ();
    s_scenarios (only);
    bench_print_table ();
    bench_print_compare ();
    printf ("\nemq-bench: done in %.0f s\n", (bench_now_us () - started) / 1e6);
    rc = 0;
    if (json_path && bench_write_json (json_path))
        rc = 1;
    if (plot_dir && bench_write_plots (plot_dir))
        rc = 1;
    bench_report_destroy ();
    if (bench.keep)
        printf ("emq-bench: logs kept in %s\n", bench.dir);
    else
        nftw (bench.dir, s_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
