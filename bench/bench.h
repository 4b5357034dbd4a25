/*  bench — emq-bench, the benchmark suite behind `make bench` (issues 4
    and 9).

    One program runs eight scenarios against real emq-router and
    emq-jobmanager processes started from the build directory, next to
    plain-ZeroMQ baselines and a real beanstalkd measured in the same run,
    and reports figures, ratios and whether each target was met. It never
    asserts: a missed target is a line in the report, not a failure.

    Modules: util (clock, statistics, child processes, /proc, the report),
    baseline (the ZeroMQ baselines and their child processes), emq (the
    scenarios that drive real emq processes), router_alone (simulated job
    managers in-process), beanstalkd (the peer: beanstalkd started in three
    modes, our text-protocol client and its worker processes), compare
    (scenario 8: emq against beanstalkd, the comparison table), main
    (arguments, order of the scenarios, tables).
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
    char build[1024];  // build directory (absolute): bin/, plugins/
    char dir[1024];    // temp dir: ipc sockets, logs, data dirs
    double scale;      // multiplies job counts and time caps (1.0)
    int inflight;      // pipelined requests/jobs kept in flight (1000)
    bool verbose;
    bool keep;  // keep the temp dir
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
//  Starts the program at path (absolute) with args, as bench_spawn does.
//  Returns the pid, or -1.
pid_t bench_spawn_path (const char *tag, const char *path, const char *const *args);
//  Starts this program again with args (for baseline children). Returns
//  the pid, or -1.
pid_t bench_spawn_self (const char *tag, const char *const *args);
//  A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
//  closed: another process may take it before ours binds it, so starters
//  retry). Returns the port, or -1.
int bench_free_port (void);
//  SIGTERM, then SIGKILL after grace_ms, then reaps. pid <= 0 is ignored.
void bench_stop (pid_t pid, int grace_ms);
//  Resident set size in KiB (VmRSS), or -1.
long bench_rss_kb (pid_t pid);
//  User + system CPU time of pid in microseconds (/proc/<pid>/stat), or -1.
int64_t bench_cpu_us (pid_t pid);

//  CPU time all CPUs spent not idle since boot (/proc/stat), µs, or -1.
int64_t bench_machine_busy_us (void);

//  ---------------------------------------------------------------------
//  procstat: what a run cost each process

#define BENCH_PROC_MAX 16

//  One role in a run ("router", "jm", "workers", "client"): its processes,
//  and after bench_proc_end what they spent over the run.
typedef struct {
    const char *name;
    pid_t pids[BENCH_PROC_MAX];
    int npids;
    int64_t cpu_us;      // CPU over the run, all its processes
    long ctxsw;          // context switches, all threads
    long syscalls;       // system calls, or -1 when perf could not count
    double cpu_per_job;  // the three per job
    double ctxsw_per_job;
    double syscalls_per_job;  // NaN when not counted
    int64_t cpu0[BENCH_PROC_MAX];
    long cs0[BENCH_PROC_MAX];
    pid_t perf[BENCH_PROC_MAX];
    char out[BENCH_PROC_MAX][1100];
} bench_proc_t;

//  The parent of pid (/proc/<pid>/stat), or -1.
pid_t bench_parent_of (pid_t pid);
//  The children of parent (a job manager's workers), up to max; returns how many.
int bench_children (pid_t parent, pid_t *pids, int max);
//  Starts counting (attaches perf to each process when it can).
void bench_proc_begin (bench_proc_t *self);
//  Waits for perf to attach, once after the last bench_proc_begin.
void bench_proc_settle (void);
//  Stops counting and divides by jobs.
void bench_proc_end (bench_proc_t *self, long jobs);
//  One line and the figures <name>_syscalls_per_job, <name>_ctxsw_per_job.
void bench_proc_report (const char *scenario, bench_proc_t *procs, int count);

//  ---------------------------------------------------------------------
//  util: emq helpers

//  Endpoints of the router started by bench_router_start.
typedef struct {
    pid_t pid;
    char frontend[1200];
    char backend[1200];
    char admin[1200];
    char data_dir[1200];  // "" for --in-memory
} bench_router_t;

//  Starts emq-router on ipc endpoints under bench.dir/<name>/ with extra
//  args (NULL-terminated), and waits until it answers STATUS. data_dir
//  NULL: --in-memory. Returns 0 or -1.
int bench_router_start (bench_router_t *router, const char *name, const char *data_dir,
                        const char *const *extra);
//  The same, on tcp://127.0.0.1 free ports when tcp (up to 3 tries with
//  other ports if the router exits at start), else on ipc.
int bench_router_start_at (bench_router_t *router, const char *name, bool tcp,
                           const char *data_dir, const char *const *extra);
//  Stops it (DISCONNECT, then signals) and reaps it.
void bench_router_stop (bench_router_t *router);
//  Starts an emq-jobmanager for the router. Returns its pid, or -1.
pid_t bench_jm_start (const bench_router_t *router, const char *name, int workers,
                      bool exec_allowed);
//  The same, serving queues (the --queues setting's JSON) instead of default.
pid_t bench_jm_start_queues (const bench_router_t *router, const char *name, int workers,
                             bool exec_allowed, const char *queues);
//  Waits until the router has `count` job managers with `slots` free slots
//  in all. Returns 0, or -1 after timeout_ms.
int bench_wait_slots (const bench_router_t *router, int count, int slots, int timeout_ms);

//  ---------------------------------------------------------------------
//  emq: pipelined runs (shared by the scenarios)

//  What a pipelined run saw.
typedef struct {
    long submitted;
    long acks;
    long results;        // RESULT events
    long failed;         // RESULT not ok
    long errors;         // ERROR events (refused)
    int64_t elapsed_us;  // first submit to last event awaited
    bool stalled;        // nothing came for 10 s
} bench_run_t;

//  Keeps up to `inflight` jobs in flight until `total` are submitted (or
//  cap_us has passed), then waits for the rest. With reply, a job is done
//  at its RESULT, else at its ACK. series_y (optional) receives completed
//  jobs per 100 ms.
void bench_pipeline (emq_client_t *client, const void *payload, size_t size, long total,
                     int inflight, int64_t cap_us, bool reply, double *series_y,
                     size_t *series_n, bench_run_t *run);
//  The same, each submit call to the next of queues (NULL-terminated).
void bench_pipeline_queues (emq_client_t *client, const char *const *queues,
                            const void *payload, size_t size, long total, int inflight,
                            int64_t cap_us, bool reply, double *series_y,
                            size_t *series_n, bench_run_t *run);
//  A libemq client of the router's frontend (10 s connect timeout).
emq_client_t *bench_client (const bench_router_t *router);
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
void bench_figure (const char *scenario, const char *name, double value,
                   const char *unit);
//  Records a note (e.g. "scaled down to 200000 jobs") for a scenario.
void bench_note (const char *scenario, const char *text);
//  Prints a scenario's line to stdout (and keeps it for the JSON).
void bench_line (const char *scenario, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
//  Records a row of the final table. higher_is_better: target is a
//  minimum, else a maximum. A NaN value is reported as "not measured".
void bench_target (const char *scenario, const char *figure, double value, double target,
                   bool higher_is_better, const char *unit);
//  A row of the emq-versus-beanstalkd table (scenario 8). Figures are NaN
//  when not measured; the texts, when not NULL, are shown instead of the
//  figure (e.g. "—" for a figure beanstalkd has no counterpart of).
typedef struct {
    const char *mode;  // the row's name
    const char *unit;  // of both figures: "jobs/s", "µs"
    double beanstalkd;
    double emq;
    double ratio;  // emq ÷ beanstalkd, or ÷ the row's reference
    const char *beanstalkd_text;
    const char *emq_extra;  // appended to emq's figure, e.g. "(3× its p50)"
    const char *ratio_text;
    const char *target;  // in words
    int met;             // 1 met, 0 not met, -1 not measured
} bench_compare_t;
//  Records a row (copied: the texts are borrowed).
void bench_compare_row (const bench_compare_t *row);
//  Records a line printed under the table (and kept for the JSON).
void bench_compare_note (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
//  Prints the table and its notes; nothing if no row was recorded.
void bench_print_compare (void);
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
//  Round-trip drivers (scenario 8): a running system that one job (or
//  request) at a time goes through, so that several systems can be
//  sampled in alternation and share whatever the machine does meanwhile.

typedef struct {
    const char *name;                 // for lines and figures
    void *self;                       // the driver's own state
    double (*sample) (void *self);    // one round trip in µs, or NaN on failure
    void (*destroy) (void **self_p);  // stops what the driver started
} bench_rtt_t;
//  Destroys rtt's driver (NULL self is fine).
void bench_rtt_destroy (bench_rtt_t *rtt);

//  Scenarios. Each returns its headline figure (NaN if it could not run).

//  1. Baselines; children (`emq-bench --child ...`) are run by bench_child.
typedef struct {
    double lb_rps;         // load-balancing broker, workers say READY
    double proxy_rps;      // pipelined ROUTER/DEALER proxy
    double direct_p50_us;  // DEALER <-> ROUTER round trip, p50
    double broker_cpu_us;  // LB broker CPU per request
} bench_baseline_t;
void bench_baseline (bench_baseline_t *out);
//  The LB broker and the proxy again over tcp://127.0.0.1 (scenario 8):
//  throughput. NaN when not measured.
typedef struct {
    double lb_rps;
    double proxy_rps;
} bench_baseline_tcp_t;
void bench_baseline_tcp (bench_baseline_tcp_t *out);
//  Starts the LB broker and its 2 workers over tcp, connects a client:
//  a round trip is client -> broker -> worker -> broker -> client.
//  Returns 0 or -1 (nothing left running).
int bench_lb_rtt_new (bench_rtt_t *rtt);
//  Runs a baseline child role; returns the exit status.
int bench_child (int argc, char **argv);

//  2./5. End to end no-op through libemq. data_dir NULL: in memory.
double bench_e2e (const char *scenario, const char *data_dir, const char *fsync,
                  bool series);
//  The same with every choice open (scenario 8: tcp, 64-byte payloads,
//  exec /bin/true). Zero counts take the defaults of bench_e2e.
typedef struct {
    const char *scenario;
    bool tcp;                     // tcp://127.0.0.1, else ipc
    const char *data_dir;         // NULL: --in-memory
    const char *fsync;            // with data_dir: always, everysec, off
    const char *store_dsn;        // with data_dir: jobs in this PostgreSQL database
    size_t payload_size;          // noop payload of exactly this size (0: minimal)
    bool exec;                    // `exec /bin/true` jobs instead of noop
    long total;                   // jobs (0: 300,000 × scale)
    int64_t cap_us;               // stop submitting after (0: 8 s × scale)
    bool series;                  // record throughput over time (one slice only)
    int slices;                   // run in this many timed slices (0, 1: one) ...
    void (*between) (void *arg);  // ... calling this before each and after the last
    void *between_arg;
    double *cpu_per_job;  // out, if set: µs of CPU per job, every process
                          // together (workers too unless in slices)
    double *busy;         // out, if set: how busy all CPUs were, in %
} bench_e2e_opts_t;
double bench_e2e_run (const bench_e2e_opts_t *opts);
//  Starts a router (data_dir NULL: in memory, else with the router's
//  default fsync) with one job manager of 2 workers and a client: a round
//  trip is one noop job of payload_size bytes, submit -> RESULT. Returns 0
//  or -1 (nothing left running).
int bench_emq_rtt_new (bench_rtt_t *rtt, bool tcp, const char *data_dir,
                       size_t payload_size);
//  Takes up to 10,000 × scale round trips (20 s × scale at most) after 200
//  of warm-up and reports their percentiles under `scenario` (extra ends
//  the line); returns p50 (µs) and sets *p999_us, NaN when none completed.
double bench_rtt_run (const char *scenario, bench_rtt_t *rtt, const char *extra,
                      double *p999_us);
//  Prints and records the percentiles of samples (µs; sorted in place)
//  under scenario; returns p50.
double bench_latency_report (const char *scenario, double *samples, size_t count,
                             const char *extra);
//  3. Latency (p50 is returned; both p50s in *idle_p50/*load_p50).
void bench_latency (const bench_baseline_t *base, double e2e_jps);
//  4. Router alone with simulated job managers.
void bench_router_alone (void);
//  6. Memory with a backlog.
void bench_memory (double e2e_jps, double durable_jps);
//  7. Fan-out over 8 job managers.
void bench_fanout (void);
//  8. beanstalkd, the peer, in three modes with our client and 2 worker
//  processes (bench/beanstalkd.c). Figures are NaN when not measured.
typedef struct {
    bool installed;          // found in PATH or $EMQ_BENCH_BEANSTALKD
    char path[1024];         // where
    double mem_jps;          // no -b
    double binlog_jps;       // -b DIR (fsync at most every 50 ms)
    double fsync_jps;        // -b DIR -f0 (fsync on every write)
    double mem_cpu_per_job;  // µs of CPU per job in memory, every process together
} bench_beanstalkd_t;
void bench_beanstalkd (bench_beanstalkd_t *out);
//  Starts beanstalkd at path in memory with 2 replying workers and a
//  producer: a round trip is put -> a worker reserves, deletes and puts a
//  reply -> the producer has reserved the reply. Returns 0 or -1 (nothing
//  left running).
int bench_beanstalkd_rtt_new (bench_rtt_t *rtt, const char *path);
//  Runs a beanstalkd worker child (`--child beanstalkd-worker ...`).
int bench_beanstalkd_child (int argc, char **argv);
//  8. emq against beanstalkd over tcp loopback: runs both sides, the
//  baselines over tcp and the spawn limit, and records the table.
void bench_compare (void);
//  9. 8 clients x 4 job managers, 100 queues, 10k..1M queued (scale.c).
void bench_scale (void);

#endif
