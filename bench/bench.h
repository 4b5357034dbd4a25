/*  bench — emq-bench, the benchmark suite behind `make bench` (issue 4).

    One program runs seven scenarios against real emq-router and
    emq-jobmanager processes started from the build directory, next to
    plain-ZeroMQ baselines measured in the same run, and reports figures,
    ratios and whether each target was met. It never asserts: a missed
    target is a line in the report, not a failure.

    Modules: util (clock, statistics, child processes, /proc, the report),
    baseline (the ZeroMQ baselines and their child processes), emq (the
    scenarios that drive real emq processes), router_alone (simulated job
    managers in-process), main (arguments, order of the scenarios, table).
*/
#ifndef EMQ_BENCH_H
#define EMQ_BENCH_H

#include <emq/client.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

//  Settings for one run (main.c fills them from the command line).
typedef struct {
    char build[1024];           // build directory (absolute): bin/, plugins/
    char dir[1024];             // temp dir: ipc sockets, logs, data dirs
    double scale;               // multiplies job counts and time caps (1.0)
    int inflight;               // pipelined requests/jobs kept in flight (1000)
    bool verbose;
    bool keep;                  // keep the temp dir
} bench_t;

extern bench_t bench;

//  ---------------------------------------------------------------------
//  util: time

//  Monotonic microseconds.
int64_t bench_now_us (void);
//  Sleeps ms milliseconds.
void bench_sleep_ms (int ms);
//  Prints a progress line to stderr when verbose.
void bench_log (const char *format, ...) __attribute__ ((format (printf, 1, 2)));

//  ---------------------------------------------------------------------
//  util: statistics

//  Sorts samples (µs) in place and returns the q-quantile (0..1) by nearest
//  rank; 0 when there are none.
double bench_quantile (double *samples, size_t count, double q);

//  ---------------------------------------------------------------------
//  util: child processes

//  Starts build/bin/<program> with args (NULL-terminated), stdout and stderr
//  to <dir>/<tag>.log. The environment variable EMQ_BENCH_WRAP_<TAG>
//  (tag in capitals, e.g. EMQ_BENCH_WRAP_ROUTER) is a command line put in
//  front (e.g. "strace -c -f -o /tmp/s"), for profiling. Returns the pid,
//  or -1.
pid_t bench_spawn (const char *tag, const char *program, const char *const *args);
//  Starts this program again with args (for baseline children). Returns
//  the pid, or -1.
pid_t bench_spawn_self (const char *tag, const char *const *args);
//  SIGTERM, then SIGKILL after grace_ms, then reaps. pid <= 0 is ignored.
void bench_stop (pid_t pid, int grace_ms);
//  Resident set size in KiB (VmRSS), or -1.
long bench_rss_kb (pid_t pid);
//  User + system CPU time of pid in microseconds (/proc/<pid>/stat), or -1.
int64_t bench_cpu_us (pid_t pid);

//  CPU time all CPUs spent not idle since boot (/proc/stat), µs, or -1.
int64_t bench_machine_busy_us (void);

//  ---------------------------------------------------------------------
//  util: emq helpers

//  Endpoints of the router started by bench_router_start.
typedef struct {
    pid_t pid;
    char frontend[1200];
    char backend[1200];
    char admin[1200];
    char data_dir[1200];        // "" for --in-memory
} bench_router_t;

//  Starts emq-router on ipc endpoints under bench.dir/<name>/ with extra
//  args (NULL-terminated), and waits until it answers STATUS. data_dir
//  NULL: --in-memory. Returns 0 or -1.
int bench_router_start (bench_router_t *router, const char *name, const char *data_dir,
                        const char *const *extra);
//  Stops it (DISCONNECT, then signals) and reaps it.
void bench_router_stop (bench_router_t *router);
//  Starts an emq-jobmanager for the router. Returns its pid, or -1.
pid_t bench_jm_start (const bench_router_t *router, const char *name, int workers,
                      bool exec_allowed);
//  Waits until the router has `count` job managers with `slots` free slots
//  in all. Returns 0, or -1 after timeout_ms.
int bench_wait_slots (const bench_router_t *router, int count, int slots, int timeout_ms);
//  STATUS of the router as a malloc'd JSON string, or NULL.
char *bench_status (const bench_router_t *router);
//  Jobs waiting + running per STATUS (-1 on error).
long bench_router_backlog (const bench_router_t *router);
//  A `run libemq_examples.so noop` payload of exactly `size` bytes (padded
//  argument), or of minimal size if size is 0. Caller frees *out.
int bench_noop_payload (size_t size, void **out, size_t *out_size);

//  ---------------------------------------------------------------------
//  util: report

//  Records one figure of a scenario (for --json) .
void bench_figure (const char *scenario, const char *name, double value, const char *unit);
//  Records a note (e.g. "scaled down to 200000 jobs") for a scenario.
void bench_note (const char *scenario, const char *text);
//  Prints a scenario's line to stdout (and keeps it for the JSON).
void bench_line (const char *scenario, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
//  Records a row of the final table. higher_is_better: target is a
//  minimum, else a maximum. A NaN value is reported as "not measured".
void bench_target (const char *scenario, const char *figure, double value,
                   double target, bool higher_is_better, const char *unit);
//  Adds a series (e.g. throughput over time) for --json and --plot.
void bench_series (const char *name, const double *x, const double *y, size_t count);
//  Prints the final table.
void bench_print_table (void);
//  Writes everything to path as JSON. Returns 0 or -1.
int bench_write_json (const char *path);
//  Writes .dat files and, if gnuplot is installed, PNGs to dir.
int bench_write_plots (const char *dir);
//  Frees what the report holds.
void bench_report_destroy (void);

//  ---------------------------------------------------------------------
//  Scenarios. Each returns its headline figure (NaN if it could not run).

//  1. Baselines; children (`emq-bench --child ...`) are run by bench_child.
typedef struct {
    double lb_rps;              // load-balancing broker, workers say READY
    double proxy_rps;           // pipelined ROUTER/DEALER proxy
    double direct_p50_us;       // DEALER <-> ROUTER round trip, p50
    double broker_cpu_us;       // LB broker CPU per request
} bench_baseline_t;
void bench_baseline (bench_baseline_t *out);
//  Runs a baseline child role; returns the exit status.
int bench_child (int argc, char **argv);

//  2./5. End to end no-op through libemq. data_dir NULL: in memory.
double bench_e2e (const char *scenario, const char *data_dir, const char *fsync,
                  bool series);
//  3. Latency (p50 is returned; both p50s in *idle_p50/*load_p50).
void bench_latency (const bench_baseline_t *base, double e2e_jps);
//  4. Router alone with simulated job managers.
void bench_router_alone (void);
//  6. Memory with a backlog.
void bench_memory (double e2e_jps, double durable_jps);
//  7. Fan-out over 8 job managers.
void bench_fanout (void);

#endif
