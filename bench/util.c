/*  util — emq-bench's clock, statistics, child processes, /proc readings,
    emq process helpers and the report (lines, figures, final table, JSON,
    plots). The report owns every string it records; bench_report_destroy
    frees them.
*/
#include "bench.h"

#include <ctype.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

bench_t bench = { .scale = 1.0, .inflight = 1000 };

//  ---------------------------------------------------------------------
//  Time

int64_t
bench_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void
bench_sleep_ms (int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000 };
    while (nanosleep (&ts, &ts) && errno == EINTR)
        ;
}

void
bench_log (const char *format, ...)
{
    if (!bench.verbose)
        return;
    va_list args;
    va_start (args, format);
    fprintf (stderr, "  .. ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
}

//  ---------------------------------------------------------------------
//  Statistics

static int
s_compare_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y ? 1 : 0;
}

double
bench_quantile (double *samples, size_t count, double q)
{
    if (count == 0)
        return 0;
    qsort (samples, count, sizeof *samples, s_compare_double);
    size_t rank = (size_t) ceil (q * (double) count);
    if (rank == 0)
        rank = 1;
    if (rank > count)
        rank = count;
    return samples[rank - 1];
}

//  ---------------------------------------------------------------------
//  Child processes

static pid_t
s_spawn (const char *tag, const char *path, const char *const *args)
{
    const char *argv[64];
    size_t argc = 0;
    char env_name[64];
    snprintf (env_name, sizeof env_name, "EMQ_BENCH_WRAP_%s", tag);
    for (char *c = env_name; *c; c++)
        *c = (char) (*c == '-' ? '_' : toupper ((unsigned char) *c));
    char *wrapper = getenv (env_name) ? strdup (getenv (env_name)) : NULL;
    if (wrapper) {
        char *save = NULL;
        for (char *word = strtok_r (wrapper, " \t", &save); word && argc < 32;
             word = strtok_r (NULL, " \t", &save))
            argv[argc++] = word;
    }
    argv[argc++] = path;
    for (size_t i = 0; args && args[i] && argc < 62; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;

    char log_path[PATH_MAX], conf_path[PATH_MAX];
    snprintf (log_path, sizeof log_path, "%s/%s.log", bench.dir, tag);
    snprintf (conf_path, sizeof conf_path, "%s/empty.conf", bench.dir);
    fflush (stdout);
    fflush (stderr);
    pid_t pid = fork ();
    if (pid < 0) {
        fprintf (stderr, "emq-bench: fork: %s\n", strerror (errno));
        free (wrapper);
        return -1;
    }
    if (pid == 0) {
        int fd = open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        int null_fd = open ("/dev/null", O_RDONLY);
        if (fd < 0 || null_fd < 0)
            _exit (126);
        dup2 (null_fd, 0);
        dup2 (fd, 1);
        dup2 (fd, 2);
        //  Nothing we start may outlive the benchmark.
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        //  A host's /etc/eventmq.conf must not change what is measured.
        setenv ("EVENTMQ_CONFIG_FILE", conf_path, 1);
        unsetenv ("EMQ_BROKER_ADDR");
        unsetenv ("EMQ_ADMIN_ADDR");
        signal (SIGPIPE, SIG_DFL);
        execvp (argv[0], (char *const *) argv);
        dprintf (2, "emq-bench: exec %s: %s\n", argv[0], strerror (errno));
        _exit (127);
    }
    free (wrapper);
    return pid;
}

pid_t
bench_spawn (const char *tag, const char *program, const char *const *args)
{
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/bin/%s", bench.build, program);
    return s_spawn (tag, path, args);
}

pid_t
bench_spawn_path (const char *tag, const char *path, const char *const *args)
{
    return s_spawn (tag, path, args);
}

pid_t
bench_spawn_self (const char *tag, const char *const *args)
{
    char self[PATH_MAX];
    ssize_t n = readlink ("/proc/self/exe", self, sizeof self - 1);
    if (n < 0)
        return -1;
    self[n] = 0;
    return s_spawn (tag, self, args);
}

void
bench_stop (pid_t pid, int grace_ms)
{
    if (pid <= 0)
        return;
    int status;
    if (waitpid (pid, &status, WNOHANG) == pid)
        return;
    kill (pid, SIGTERM);
    int64_t deadline = bench_now_us () + (int64_t) grace_ms * 1000;
    while (bench_now_us () < deadline) {
        if (waitpid (pid, &status, WNOHANG) == pid)
            return;
        bench_sleep_ms (10);
    }
    kill (pid, SIGKILL);
    waitpid (pid, &status, 0);
}

long
bench_rss_kb (pid_t pid)
{
    char path[64], line[256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    long kb = -1;
    while (fgets (line, sizeof line, file))
        if (strncmp (line, "VmRSS:", 6) == 0) {
            kb = strtol (line + 6, NULL, 10);
            break;
        }
    fclose (file);
    return kb;
}

int64_t
bench_cpu_us (pid_t pid)
{
    char path[64], buf[1024];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    size_t n = fread (buf, 1, sizeof buf - 1, file);
    fclose (file);
    buf[n] = 0;
    //  The command name may hold spaces and parentheses: skip to the last ')'.
    char *p = strrchr (buf, ')');
    if (!p)
        return -1;
    unsigned long utime = 0, stime = 0;
    //  After ')': state(3) ppid pgrp session tty tpgid flags minflt cminflt
    //  majflt cmajflt utime(14) stime(15).
    if (sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
                &stime)
        != 2)
        return -1;
    long ticks = sysconf (_SC_CLK_TCK);
    return (int64_t) (utime + stime) * 1000000 / (ticks > 0 ? ticks : 100);
}

int
bench_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf (stderr, "emq-bench: socket: %s\n", strerror (errno));
        return -1;
    }
    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_addr.s_addr = htonl (INADDR_LOOPBACK) };
    socklen_t len = sizeof addr;
    int port = -1;
    if (bind (fd, (struct sockaddr *) &addr, sizeof addr) == 0
        && getsockname (fd, (struct sockaddr *) &addr, &len) == 0)
        port = ntohs (addr.sin_port);
    else
        fprintf (stderr, "emq-bench: bind 127.0.0.1:0: %s\n", strerror (errno));
    close (fd);
    return port;
}

int64_t
bench_machine_busy_us (void)
{
    FILE *file = fopen ("/proc/stat", "r");
    if (!file)
        return -1;
    unsigned long long v[8] = { 0 };
    int n = fscanf (file, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                    &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose (file);
    if (n < 4)
        return -1;
    //  user nice system idle iowait irq softirq steal: all but idle and iowait.
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    long ticks = sysconf (_SC_CLK_TCK);
    return (int64_t) (busy * 1000000ULL / (unsigned long long) (ticks > 0 ? ticks : 100));
}

//  ---------------------------------------------------------------------
//  emq helpers

//  One attempt at starting a router; 1 if it exited at start (a port taken
//  between bench_free_port and its bind: try other ports), else 0 or -1.
static int
s_router_try (bench_router_t *router, const char *name, bool tcp, const char *data_dir,
              const char *const *extra)
{
    memset (router, 0, sizeof *router);
    char dir[1100];
    snprintf (dir, sizeof dir, "%s/%s", bench.dir, name);
    if (mkdir (dir, 0700) && errno != EEXIST)
        return -1;
    if (tcp) {
        int ports[3];
        for (int i = 0; i < 3; i++)
            if ((ports[i] = bench_free_port ()) < 0)
                return -1;
        snprintf (router->frontend, sizeof router->frontend, "tcp://127.0.0.1:%d",
                  ports[0]);
        snprintf (router->backend, sizeof router->backend, "tcp://127.0.0.1:%d",
                  ports[1]);
        snprintf (router->admin, sizeof router->admin, "tcp://127.0.0.1:%d", ports[2]);
    }
    else {
        snprintf (router->frontend, sizeof router->frontend, "ipc://%s/fe", dir);
        snprintf (router->backend, sizeof router->backend, "ipc://%s/be", dir);
        snprintf (router->admin, sizeof router->admin, "ipc://%s/ad", dir);
    }
    if (data_dir)
        snprintf (router->data_dir, sizeof router->data_dir, "%s", data_dir);
    const char *args[48];
    size_t argc = 0;
    args[argc++] = "--frontend";
    args[argc++] = router->frontend;
    args[argc++] = "--backend";
    args[argc++] = router->backend;
    args[argc++] = "--admin";
    args[argc++] = router->admin;
    args[argc++] = "--log-level";
    args[argc++] = "warning";
    if (data_dir) {
        args[argc++] = "--data-dir";
        args[argc++] = data_dir;
    }
    else
        args[argc++] = "--in-memory";
    for (size_t i = 0; extra && extra[i] && argc < 46; i++)
        args[argc++] = extra[i];
    args[argc] = NULL;
    char tag[64];
    snprintf (tag, sizeof tag, "router-%s", name);
    router->pid = bench_spawn (tag, "emq-router", args);
    if (router->pid < 0)
        return -1;
    //  Under valgrind a router takes seconds to start.
    int64_t deadline = bench_now_us () + 30 * 1000000LL;
    while (bench_now_us () < deadline) {
        char *reply = NULL;
        if (emq_admin (router->admin, "STATUS", 500, &reply) == 0) {
            free (reply);
            return 0;
        }
        free (reply);
        int status;
        if (waitpid (router->pid, &status, WNOHANG) == router->pid) {
            fprintf (stderr, "emq-bench: emq-router exited at start (see %s/%s.log)\n",
                     bench.dir, tag);
            router->pid = 0;
            return 1;
        }
        bench_sleep_ms (50);
    }
    fprintf (stderr, "emq-bench: emq-router did not answer STATUS in 30 s\n");
    bench_router_stop (router);
    return -1;
}

int
bench_router_start_at (bench_router_t *router, const char *name, bool tcp,
                       const char *data_dir, const char *const *extra)
{
    int rc = s_router_try (router, name, tcp, data_dir, extra);
    for (int attempt = 1; rc == 1 && tcp && attempt < 3; attempt++)
        rc = s_router_try (router, name, tcp, data_dir, extra);
    return rc == 0 ? 0 : -1;
}

int
bench_router_start (bench_router_t *router, const char *name, const char *data_dir,
                    const char *const *extra)
{
    return bench_router_start_at (router, name, false, data_dir, extra);
}

void
bench_router_stop (bench_router_t *router)
{
    if (router->pid <= 0)
        return;
    char *reply = NULL;
    emq_admin (router->admin, "DISCONNECT", 2000, &reply);
    free (reply);
    int status;
    int64_t deadline = bench_now_us () + 5 * 1000000LL;
    while (bench_now_us () < deadline) {
        if (waitpid (router->pid, &status, WNOHANG) == router->pid) {
            router->pid = 0;
            return;
        }
        bench_sleep_ms (10);
    }
    bench_stop (router->pid, 5000);
    router->pid = 0;
}

pid_t
bench_jm_start (const bench_router_t *router, const char *name, int workers,
                bool exec_allowed)
{
    return bench_jm_start_queues (router, name, workers, exec_allowed, NULL);
}

pid_t
bench_jm_start_queues (const bench_router_t *router, const char *name, int workers,
                       bool exec_allowed, const char *queues)
{
    char concurrent[16], plugins[PATH_MAX], tag[64];
    snprintf (concurrent, sizeof concurrent, "%d", workers);
    snprintf (plugins, sizeof plugins, "%s/plugins", bench.build);
    snprintf (tag, sizeof tag, "jm-%s", name);
    const char *args[24] = {
        "--backend-addr",    router->backend, "--name",       name,
        "--concurrent-jobs", concurrent,      "--plugin-dir", plugins,
        "--max-job-count",   "1000000000",    "--log-level",  "warning"
    };
    int n = 12;
    if (exec_allowed) {
        args[n++] = "--exec-allow";
        args[n++] = "/bin/*";
    }
    if (queues) {
        args[n++] = "--queues";
        args[n++] = queues;
    }
    args[n] = NULL;
    return bench_spawn (tag, "emq-jobmanager", args);
}

int
bench_wait_slots (const bench_router_t *router, int count, int slots, int timeout_ms)
{
    int64_t deadline = bench_now_us () + (int64_t) timeout_ms * 1000;
    while (bench_now_us () < deadline) {
        char *reply = NULL;
        if (emq_admin (router->admin, "ROUTER_SHOW_WORKERS", 1000, &reply) == 0) {
            json_t *root = json_loads (reply, 0, NULL);
            json_t *workers = json_object_get (root, "connected_workers");
            int have = 0;
            long free_slots = 0;
            const char *key;
            json_t *jm;
            json_object_foreach (workers, key, jm)
            {
                have++;
                free_slots +=
                    (long) json_integer_value (json_object_get (jm, "available_slots"));
            }
            json_decref (root);
            if (have >= count && free_slots >= slots) {
                free (reply);
                return 0;
            }
        }
        free (reply);
        bench_sleep_ms (50);
    }
    return -1;
}

char *
bench_status (const bench_router_t *router)
{
    char *reply = NULL;
    if (emq_admin (router->admin, "STATUS", 5000, &reply) == 0)
        return reply;
    free (reply);
    return NULL;
}

long
bench_router_backlog (const bench_router_t *router)
{
    char *reply = bench_status (router);
    if (!reply)
        return -1;
    json_t *root = json_loads (reply, 0, NULL);
    free (reply);
    if (!root)
        return -1;
    long total = 0;
    const char *key;
    json_t *queue;
    json_object_foreach (json_object_get (root, "queues"), key, queue)
    {
        total += (long) json_integer_value (json_object_get (queue, "waiting"));
        total += (long) json_integer_value (json_object_get (queue, "inflight"));
    }
    json_decref (root);
    return total;
}

//  Packs a string argument of `len` bytes into a fresh buffer.
static int
s_pack_pad (size_t len, msgpack_sbuffer *sbuf)
{
    msgpack_sbuffer_init (sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    char *pad = malloc (len + 1);
    if (!pad)
        return -1;
    memset (pad, 'x', len);
    msgpack_pack_str (&pk, len);
    msgpack_pack_str_body (&pk, pad, len);
    free (pad);
    return 0;
}

int
bench_noop_payload (size_t size, void **out, size_t *out_size)
{
    int rc = emq_payload_run ("libemq_examples.so", "noop", NULL, 0, out, out_size);
    if (rc || size == 0 || *out_size >= size)
        return rc;
    //  The payload grows by the argument's size and maybe a header byte or
    //  two; shrink the pad until the whole is exactly `size`.
    size_t base = *out_size;
    free (*out);
    *out = NULL;
    for (size_t pad = size - base; pad > 0; pad--) {
        msgpack_sbuffer sbuf;
        if (s_pack_pad (pad, &sbuf))
            return EMQ_ERR_NOMEM;
        rc = emq_payload_run ("libemq_examples.so", "noop", sbuf.data, sbuf.size, out,
                              out_size);
        msgpack_sbuffer_destroy (&sbuf);
        if (rc)
            return rc;
        if (*out_size <= size)
            return 0;
        free (*out);
        *out = NULL;
    }
    return emq_payload_run ("libemq_examples.so", "noop", NULL, 0, out, out_size);
}

//  ---------------------------------------------------------------------
//  Round trips

void
bench_rtt_destroy (bench_rtt_t *rtt)
{
    if (rtt->destroy)
        rtt->destroy (&rtt->self);
    rtt->self = NULL;
}

double
bench_rtt_run (const char *scenario, bench_rtt_t *rtt, const char *extra, double *p999_us)
{
    *p999_us = NAN;
    size_t max = (size_t) (10000 * bench.scale);
    double *samples = calloc (max ? max : 1, sizeof *samples);
    if (!samples)
        return NAN;
    for (int i = 0; i < 200; i++)
        if (!isfinite (rtt->sample (rtt->self)))
            break;
    size_t count = 0;
    int64_t stop_at = bench_now_us () + (int64_t) (20e6 * bench.scale);
    while (count < max && bench_now_us () < stop_at) {
        double sample = rtt->sample (rtt->self);
        if (!isfinite (sample))
            break;
        samples[count++] = sample;
    }
    double p50 = NAN;
    if (count) {
        p50 = bench_latency_report (scenario, samples, count, extra);
        *p999_us = bench_quantile (samples, count, 0.999);
    }
    else
        bench_line (scenario, "no round trip completed (see logs in %s)", bench.dir);
    free (samples);
    return p50;
}

double
bench_latency_report (const char *scenario, double *samples, size_t count,
                      const char *extra)
{
    double p50 = bench_quantile (samples, count, 0.50);
    double p90 = bench_quantile (samples, count, 0.90);
    double p99 = bench_quantile (samples, count, 0.99);
    double p999 = bench_quantile (samples, count, 0.999);
    double max = count ? samples[count - 1] : NAN;
    bench_figure (scenario, "samples", (double) count, NULL);
    bench_figure (scenario, "p50", p50, "us");
    bench_figure (scenario, "p90", p90, "us");
    bench_figure (scenario, "p99", p99, "us");
    bench_figure (scenario, "p99.9", p999, "us");
    bench_figure (scenario, "max", max, "us");
    bench_line (scenario, "p50 %.0f  p99 %.0f  p99.9 %.0f  max %.0f us (%zu samples)%s",
                p50, p99, p999, max, count, extra);
    double qs[] = { 0.5, 0.9, 0.99, 0.999, 0.9999 };
    double xs[6], ys[6];
    for (size_t i = 0; i < 5; i++) {
        xs[i] = qs[i];
        ys[i] = bench_quantile (samples, count, qs[i]);
    }
    xs[5] = 0.99999;
    ys[5] = max;
    char series[64];
    snprintf (series, sizeof series, "%s-latency", scenario);
    bench_series (series, xs, ys, 6);
    return p50;
}

//  ---------------------------------------------------------------------
//  Report

static json_t *s_scenarios;      // name -> {figures..., "line": text, "notes": []}
static json_t *s_table;          // [{scenario, figure, value, target, met}]
static json_t *s_series;         // name -> {"x": [], "y": []}
static json_t *s_compare;        // [{mode, beanstalkd, emq, ratio, target, met, ...}]
static json_t *s_compare_notes;  // [text]: lines under that table

static json_t *
s_scenario (const char *scenario)
{
    if (!s_scenarios)
        s_scenarios = json_object ();
    json_t *entry = json_object_get (s_scenarios, scenario);
    if (!entry) {
        entry = json_object ();
        json_object_set_new (s_scenarios, scenario, entry);
    }
    return entry;
}

void
bench_figure (const char *scenario, const char *name, double value, const char *unit)
{
    json_t *entry = s_scenario (scenario);
    char key[128];
    snprintf (key, sizeof key, "%s%s%s", name, unit && *unit ? "_" : "",
              unit ? unit : "");
    json_object_set_new (entry, key, isfinite (value) ? json_real (value) : json_null ());
}

void
bench_note (const char *scenario, const char *text)
{
    json_t *entry = s_scenario (scenario);
    json_t *notes = json_object_get (entry, "notes");
    if (!notes) {
        notes = json_array ();
        json_object_set_new (entry, "notes", notes);
    }
    json_array_append_new (notes, json_string (text));
}

void
bench_line (const char *scenario, const char *format, ...)
{
    char text[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    printf ("%-22s %s\n", scenario, text);
    fflush (stdout);
    json_t *entry = s_scenario (scenario);
    json_t *lines = json_object_get (entry, "lines");
    if (!lines) {
        lines = json_array ();
        json_object_set_new (entry, "lines", lines);
    }
    json_array_append_new (lines, json_string (text));
}

void
bench_target (const char *scenario, const char *figure, double value, double target,
              bool higher_is_better, const char *unit)
{
    if (!s_table)
        s_table = json_array ();
    json_t *row = json_object ();
    json_object_set_new (row, "scenario", json_string (scenario));
    json_object_set_new (row, "figure", json_string (figure));
    json_object_set_new (row, "value",
                         isfinite (value) ? json_real (value) : json_null ());
    json_object_set_new (row, "target", json_real (target));
    json_object_set_new (row, "target_is",
                         json_string (higher_is_better ? "min" : "max"));
    json_object_set_new (row, "unit", json_string (unit ? unit : ""));
    if (isfinite (value))
        json_object_set_new (
            row, "met",
            json_boolean (higher_is_better ? value >= target : value <= target));
    else
        json_object_set_new (row, "met", json_null ());
    json_array_append_new (s_table, row);
}

void
bench_series (const char *name, const double *x, const double *y, size_t count)
{
    if (!s_series)
        s_series = json_object ();
    json_t *xs = json_array (), *ys = json_array ();
    for (size_t i = 0; i < count; i++) {
        json_array_append_new (xs, json_real (x[i]));
        json_array_append_new (ys, json_real (y[i]));
    }
    json_t *entry = json_object ();
    json_object_set_new (entry, "x", xs);
    json_object_set_new (entry, "y", ys);
    json_object_set_new (s_series, name, entry);
}

//  Formats a number compactly: 123456 -> "123456", 0.4321 -> "0.432".
static const char *
s_num (double value, char *buf, size_t size)
{
    if (!isfinite (value))
        snprintf (buf, size, "n/a");
    else if (fabs (value) >= 100)
        snprintf (buf, size, "%.0f", value);
    else if (fabs (value) >= 10)
        snprintf (buf, size, "%.1f", value);
    else
        snprintf (buf, size, "%.3g", value);
    return buf;
}

void
bench_print_table (void)
{
    if (!s_table)
        return;
    printf ("\n%-22s %-44s %12s %12s  %s\n", "scenario", "figure", "value", "target",
            "met");
    printf ("%-22s %-44s %12s %12s  %s\n", "--------", "------", "-----", "------",
            "---");
    size_t i;
    json_t *row;
    json_array_foreach (s_table, i, row)
    {
        char value[32], target[40], tnum[32];
        s_num (json_is_real (json_object_get (row, "value"))
                   ? json_real_value (json_object_get (row, "value"))
                   : NAN,
               value, sizeof value);
        const char *unit = json_string_value (json_object_get (row, "unit"));
        snprintf (
            target, sizeof target, "%s %s%s%s",
            streq (json_string_value (json_object_get (row, "target_is")), "min") ? ">="
                                                                                  : "<=",
            s_num (json_real_value (json_object_get (row, "target")), tnum, sizeof tnum),
            *unit ? " " : "", unit);
        json_t *met = json_object_get (row, "met");
        printf ("%-22s %-44s %12s %12s  %s\n",
                json_string_value (json_object_get (row, "scenario")),
                json_string_value (json_object_get (row, "figure")), value, target,
                json_is_null (met)   ? "n/a"
                : json_is_true (met) ? "yes"
                                     : "NO");
    }
    fflush (stdout);
}

//  A figure with its unit for a table cell, or `none` when not measured.
static void
s_cell (char *buf, size_t size, double value, const char *unit, const char *none)
{
    char num[32];
    if (!isfinite (value))
        snprintf (buf, size, "%s", none);
    else
        snprintf (buf, size, "%s %s", s_num (value, num, sizeof num), unit);
}

void
bench_compare_row (const bench_compare_t *row)
{
    if (!s_compare)
        s_compare = json_array ();
    char beanstalkd[96], emq[160], ratio[96];
    if (row->beanstalkd_text)
        snprintf (beanstalkd, sizeof beanstalkd, "%s", row->beanstalkd_text);
    else
        s_cell (beanstalkd, sizeof beanstalkd, row->beanstalkd, row->unit,
                "not measured");
    s_cell (emq, sizeof emq, row->emq, row->unit, "not measured");
    if (row->emq_extra && isfinite (row->emq)) {
        size_t len = strlen (emq);
        snprintf (emq + len, sizeof emq - len, " %s", row->emq_extra);
    }
    if (row->ratio_text)
        snprintf (ratio, sizeof ratio, "%s", row->ratio_text);
    else if (isfinite (row->ratio))
        snprintf (ratio, sizeof ratio, "%.2f×", row->ratio);
    else
        snprintf (ratio, sizeof ratio, "n/a");
    json_t *entry = json_object ();
    json_object_set_new (entry, "mode", json_string (row->mode));
    json_object_set_new (entry, "unit", json_string (row->unit));
    json_object_set_new (entry, "beanstalkd",
                         isfinite (row->beanstalkd) ? json_real (row->beanstalkd)
                                                    : json_null ());
    json_object_set_new (entry, "emq",
                         isfinite (row->emq) ? json_real (row->emq) : json_null ());
    json_object_set_new (entry, "ratio",
                         isfinite (row->ratio) ? json_real (row->ratio) : json_null ());
    json_object_set_new (entry, "target", json_string (row->target));
    json_object_set_new (entry, "met",
                         row->met < 0 ? json_null () : json_boolean (row->met));
    json_object_set_new (entry, "beanstalkd_text", json_string (beanstalkd));
    json_object_set_new (entry, "emq_text", json_string (emq));
    json_object_set_new (entry, "ratio_text", json_string (ratio));
    json_array_append_new (s_compare, entry);
}

void
bench_compare_note (const char *format, ...)
{
    char text[1024];
    va_list args;
    va_start (args, format);
    vsnprintf (text, sizeof text, format, args);
    va_end (args);
    if (!s_compare_notes)
        s_compare_notes = json_array ();
    json_array_append_new (s_compare_notes, json_string (text));
}

//  Characters (not bytes) of UTF-8 text: what the terminal shows.
static size_t
s_width (const char *text)
{
    size_t width = 0;
    for (const unsigned char *c = (const unsigned char *) text; *c; c++)
        if ((*c & 0xC0) != 0x80)
            width++;
    return width;
}

void
bench_print_compare (void)
{
    if (!s_compare)
        return;
    const char *heads[] = { "mode",   "beanstalkd", "emq", "emq ÷ beanstalkd",
                            "target", "met" };
    const char *keys[] = { "mode",       "beanstalkd_text", "emq_text",
                           "ratio_text", "target",          NULL };
    size_t widths[6];
    for (size_t col = 0; col < 6; col++)
        widths[col] = s_width (heads[col]);
    size_t i;
    json_t *row;
    json_array_foreach (s_compare, i, row) for (size_t col = 0; col < 5; col++)
    {
        size_t width = s_width (json_string_value (json_object_get (row, keys[col])));
        if (width > widths[col])
            widths[col] = width;
    }
    if (widths[5] < 12)
        widths[5] = 12;
    printf ("\n");
    for (int line = -2; line < (int) json_array_size (s_compare); line++) {
        printf ("|");
        for (size_t col = 0; col < 6; col++) {
            const char *text;
            char dashes[256];
            if (line == -2)
                text = heads[col];
            else if (line == -1) {
                size_t n =
                    widths[col] < sizeof dashes - 1 ? widths[col] : sizeof dashes - 1;
                memset (dashes, '-', n);
                dashes[n] = 0;
                text = dashes;
            }
            else {
                row = json_array_get (s_compare, (size_t) line);
                if (keys[col])
                    text = json_string_value (json_object_get (row, keys[col]));
                else {
                    json_t *met = json_object_get (row, "met");
                    text = json_is_null (met)   ? "not measured"
                           : json_is_true (met) ? "met"
                                                : "NOT MET";
                }
            }
            printf (" %s%*s |", text, (int) (widths[col] - s_width (text)), "");
        }
        printf ("\n");
    }
    json_t *note;
    json_array_foreach (s_compare_notes, i, note)
        printf ("%s\n", json_string_value (note));
    fflush (stdout);
}

//  The machine the run was on: nproc, CPU model, kernel.
static json_t *
s_machine (void)
{
    json_t *machine = json_object ();
    json_object_set_new (machine, "nproc", json_integer (sysconf (_SC_NPROCESSORS_ONLN)));
    FILE *file = fopen ("/proc/cpuinfo", "r");
    char line[512];
    while (file && fgets (line, sizeof line, file))
        if (strncmp (line, "model name", 10) == 0) {
            char *value = strchr (line, ':');
            if (value) {
                value += 2;
                value[strcspn (value, "\n")] = 0;
                json_object_set_new (machine, "cpu", json_string (value));
            }
            break;
        }
    if (file)
        fclose (file);
    file = fopen ("/proc/sys/kernel/osrelease", "r");
    if (file && fgets (line, sizeof line, file)) {
        line[strcspn (line, "\n")] = 0;
        json_object_set_new (machine, "kernel", json_string (line));
    }
    if (file)
        fclose (file);
    return machine;
}

int
bench_write_json (const char *path)
{
    json_t *root = json_object ();
    json_object_set_new (root, "machine", s_machine ());
    json_object_set_new (root, "scenarios",
                         s_scenarios ? json_incref (s_scenarios) : json_object ());
    json_object_set_new (root, "table", s_table ? json_incref (s_table) : json_array ());
    json_object_set_new (root, "series",
                         s_series ? json_incref (s_series) : json_object ());
    json_object_set_new (root, "comparison",
                         s_compare ? json_incref (s_compare) : json_array ());
    json_object_set_new (root, "comparison_notes",
                         s_compare_notes ? json_incref (s_compare_notes) : json_array ());
    int rc = json_dump_file (root, path, JSON_INDENT (2) | JSON_SORT_KEYS);
    json_decref (root);
    if (rc)
        fprintf (stderr, "emq-bench: cannot write %s\n", path);
    return rc ? -1 : 0;
}

int
bench_write_plots (const char *dir)
{
    if (mkdir (dir, 0755) && errno != EEXIST) {
        fprintf (stderr, "emq-bench: mkdir %s: %s\n", dir, strerror (errno));
        return -1;
    }
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/plots.gp", dir);
    FILE *script = fopen (path, "w");
    if (!script)
        return -1;
    fprintf (script, "set terminal png size 900,500\nset grid\n");
    const char *name;
    json_t *series;
    json_object_foreach (s_series, name, series)
    {
        char dat[PATH_MAX];
        snprintf (dat, sizeof dat, "%s/%s.dat", dir, name);
        FILE *file = fopen (dat, "w");
        if (!file)
            continue;
        json_t *xs = json_object_get (series, "x"), *ys = json_object_get (series, "y");
        for (size_t i = 0; i < json_array_size (xs); i++)
            fprintf (file, "%g %g\n", json_real_value (json_array_get (xs, i)),
                     json_real_value (json_array_get (ys, i)));
        fclose (file);
        bool latency = strstr (name, "latency") != NULL;
        fprintf (script, "set output '%s/%s.png'\nset title '%s'\n", dir, name, name);
        if (latency)
            fprintf (script,
                     "set logscale x\nset xlabel 'percentile (1 - q, log)'\n"
                     "set ylabel 'latency (us)'\nset xrange [*:*] reverse\n"
                     "plot '%s' using (1-$1):2 with linespoints notitle\n"
                     "unset logscale x\nset xrange [*:*] noreverse\n",
                     dat);
        else
            fprintf (script,
                     "set xlabel 'seconds'\nset ylabel 'jobs/s'\n"
                     "plot '%s' using 1:2 with lines notitle\n",
                     dat);
    }
    fclose (script);
    if (system ("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf ("plots: gnuplot is not installed; data and script left in %s "
                "(apt-get install gnuplot-nox, then gnuplot %s)\n",
                dir, path);
        return 0;
    }
    char command[PATH_MAX + 32];
    snprintf (command, sizeof command, "gnuplot '%s'", path);
    int rc = system (command);
    printf ("plots: %s in %s\n", rc == 0 ? "written" : "gnuplot failed", dir);
    return rc == 0 ? 0 : -1;
}

void
bench_report_destroy (void)
{
    json_decref (s_scenarios);
    json_decref (s_table);
    json_decref (s_series);
    json_decref (s_compare);
    json_decref (s_compare_notes);
    s_scenarios = s_table = s_series = s_compare = s_compare_notes = NULL;
}
