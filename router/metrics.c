/*  metrics — latency histograms, commit times and process figures. See
    metrics.h. Histograms keep per-bucket counts; metrics_json makes them
    cumulative, as Prometheus wants them ("le" buckets).
*/
#include "metrics.h"
#include "procstat.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double metrics_bounds_s[METRICS_BUCKETS] = { 0.001, 0.005, 0.01, 0.025, 0.05,
                                                   0.1,   0.25,  0.5,  1,     2.5,
                                                   5,     10,    30,   60,    300 };

typedef struct {
    metrics_hist_t wait;
    metrics_hist_t run;
    int64_t counts[METRICS_COUNT_KINDS];  // gauges, metrics_count_t
} s_queue_hists_t;

struct metrics_t {
    zhashx_t *queues;         // queue name -> s_queue_hists_t, owned
    metrics_hist_t commit;    // store commits, seconds
    uint64_t commit_failed;   // batches the store could not commit
    int64_t commit_since_ms;  // monotonic; 0: no batch out
};

static void
s_hists_destroy (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

metrics_t *
metrics_new (void)
{
    metrics_t *self = calloc (1, sizeof (metrics_t));
    if (!self)
        return NULL;
    self->queues = zhashx_new ();
    if (!self->queues) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->queues, s_hists_destroy);
    return self;
}

void
metrics_destroy (metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zhashx_destroy (&(*self_p)->queues);
    free (*self_p);
    *self_p = NULL;
}

void
metrics_hist_observe (metrics_hist_t *hist, double seconds)
{
    if (!(seconds > 0))
        seconds = 0;  // also NaN
    size_t i = 0;
    while (i < METRICS_BUCKETS && seconds > metrics_bounds_s[i])
        i++;
    hist->counts[i]++;
    hist->count++;
    hist->sum_s += seconds;
}

//  The histograms of a queue, made on first use; NULL when out of memory
//  (the observation is then lost, nothing else).
static s_queue_hists_t *
s_queue_require (metrics_t *self, const char *queue)
{
    s_queue_hists_t *hists = (s_queue_hists_t *) zhashx_lookup (self->queues, queue);
    if (!hists && (hists = calloc (1, sizeof *hists))
        && zhashx_insert (self->queues, queue, hists) != 0) {
        free (hists);
        hists = NULL;
    }
    return hists;
}

void
metrics_observe_wait (metrics_t *self, const char *queue, double seconds)
{
    s_queue_hists_t *hists = self ? s_queue_require (self, queue) : NULL;
    if (hists)
        metrics_hist_observe (&hists->wait, seconds);
}

void
metrics_observe_run (metrics_t *self, const char *queue, double seconds)
{
    s_queue_hists_t *hists = self ? s_queue_require (self, queue) : NULL;
    if (hists)
        metrics_hist_observe (&hists->run, seconds);
}

void
metrics_count (metrics_t *self, const char *queue, metrics_count_t kind, int64_t delta)
{
    s_queue_hists_t *hists = self ? s_queue_require (self, queue) : NULL;
    if (hists) {
        hists->counts[kind] += delta;
        if (hists->counts[kind] < 0)
            hists->counts[kind] = 0;  // a miscount must not show as negative
    }
}

int64_t
metrics_count_get (metrics_t *self, const char *queue, metrics_count_t kind)
{
    s_queue_hists_t *hists =
        self ? (s_queue_hists_t *) zhashx_lookup (self->queues, queue) : NULL;
    return hists ? hists->counts[kind] : 0;
}

int64_t
metrics_count_total (metrics_t *self, metrics_count_t kind)
{
    int64_t total = 0;
    for (s_queue_hists_t *hists = (s_queue_hists_t *) zhashx_first (self->queues); hists;
         hists = (s_queue_hists_t *) zhashx_next (self->queues))
        total += hists->counts[kind];
    return total;
}

json_t *
metrics_count_json (metrics_t *self, metrics_count_t kind)
{
    json_t *counts = json_object ();
    for (s_queue_hists_t *hists = (s_queue_hists_t *) zhashx_first (self->queues); hists;
         hists = (s_queue_hists_t *) zhashx_next (self->queues))
        if (hists->counts[kind])
            json_object_set_new (counts, (const char *) zhashx_cursor (self->queues),
                                 json_integer ((json_int_t) hists->counts[kind]));
    return counts;
}

void
metrics_count_reset (metrics_t *self, metrics_count_t kind)
{
    for (s_queue_hists_t *hists = (s_queue_hists_t *) zhashx_first (self->queues); hists;
         hists = (s_queue_hists_t *) zhashx_next (self->queues))
        hists->counts[kind] = 0;
}

void
metrics_commit_start (metrics_t *self, int64_t now_ms)
{
    if (self)
        self->commit_since_ms = now_ms;
}

void
metrics_commit_end (metrics_t *self, int64_t now_ms, bool ok)
{
    if (!self || !self->commit_since_ms)
        return;
    if (ok)
        metrics_hist_observe (&self->commit,
                              (double) (now_ms - self->commit_since_ms) / 1000.0);
    else
        self->commit_failed++;
    self->commit_since_ms = 0;
}

static json_t *
s_hist_json (const metrics_hist_t *hist)
{
    json_t *buckets = json_array ();
    uint64_t cumulative = 0;
    for (size_t i = 0; i < METRICS_BUCKETS; i++) {
        cumulative += hist->counts[i];
        json_array_append_new (
            buckets, json_pack ("[f,I]", metrics_bounds_s[i], (json_int_t) cumulative));
    }
    return json_pack ("{s:o,s:I,s:f}", "buckets", buckets, "count",
                      (json_int_t) hist->count, "sum", hist->sum_s);
}

json_t *
metrics_json (metrics_t *self)
{
    json_t *wait = json_object (), *run = json_object ();
    for (s_queue_hists_t *hists = (s_queue_hists_t *) zhashx_first (self->queues); hists;
         hists = (s_queue_hists_t *) zhashx_next (self->queues)) {
        const char *name = (const char *) zhashx_cursor (self->queues);
        json_object_set_new (wait, name, s_hist_json (&hists->wait));
        json_object_set_new (run, name, s_hist_json (&hists->run));
    }
    procstat_t process;
    procstat_read (0, &process);
    json_t *proc = json_pack (
        "{s:I,s:I,s:f,s:I,s:I,s:f}", "rss_bytes", (json_int_t) process.rss_bytes,
        "vsize_bytes", (json_int_t) process.vsize_bytes, "cpu_seconds", process.cpu_s,
        "open_fds", (json_int_t) process.open_fds, "max_fds",
        (json_int_t) process.max_fds, "start_time", process.start_time_s);
    return json_pack ("{s:o,s:o,s:o,s:I,s:o}", "wait_seconds", wait, "run_seconds", run,
                      "commit_seconds", s_hist_json (&self->commit), "commit_failed",
                      (json_int_t) self->commit_failed, "process", proc);
}

double
metrics_usage_wall_s (const char *usage)
{
    const char *at = usage ? strstr (usage, "wall_us=") : NULL;
    if (!at || (at != usage && at[-1] != ' '))
        return -1;
    char *end;
    errno = 0;
    unsigned long long us = strtoull (at + 8, &end, 10);
    if (errno || end == at + 8 || (*end && *end != ' '))
        return -1;
    return (double) us / 1e6;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
metrics_test (bool verbose)
{
    if (verbose)
        printf (" * metrics: ");
    metrics_hist_t hist = { { 0 }, 0, 0 };
    metrics_hist_observe (&hist, 0.0005);  // first bucket
    metrics_hist_observe (&hist, 0.001);   // le is inclusive: still the first
    metrics_hist_observe (&hist, 0.002);   // second
    metrics_hist_observe (&hist, 1000);    // above every bound
    metrics_hist_observe (&hist, -3);      // counts as 0
    CHECK_UEQ (hist.count, 5);
    CHECK_UEQ (hist.counts[0], 3);
    CHECK_UEQ (hist.counts[1], 1);
    CHECK_UEQ (hist.counts[METRICS_BUCKETS], 1);
    CHECK_NEAR (hist.sum_s, 1000.0035, 1e-9);

    metrics_t *metrics = metrics_new ();
    REQUIRE (metrics);
    metrics_observe_wait (metrics, "default", 0.02);
    metrics_observe_wait (metrics, "default", 0.2);
    metrics_observe_run (metrics, "images", 3);
    metrics_commit_end (metrics, 100, true);  // no batch out: ignored
    metrics_commit_start (metrics, 1000);
    metrics_commit_end (metrics, 1004, true);
    metrics_commit_start (metrics, 2000);
    metrics_commit_end (metrics, 2001, false);
    json_t *json = metrics_json (metrics);
    REQUIRE (json);
    json_t *wait = json_object_get (json_object_get (json, "wait_seconds"), "default");
    CHECK_EQ (json_integer_value (json_object_get (wait, "count")), 2);
    //  Cumulative: the 0.025 bucket holds one, the 0.25 bucket both.
    json_t *buckets = json_object_get (wait, "buckets");
    CHECK_EQ (json_integer_value (json_array_get (json_array_get (buckets, 3), 1)), 1);
    CHECK_EQ (json_integer_value (json_array_get (json_array_get (buckets, 6), 1)), 2);
    CHECK_EQ (
        json_integer_value (json_object_get (
            json_object_get (json_object_get (json, "run_seconds"), "images"), "count")),
        1);
    json_t *commit = json_object_get (json, "commit_seconds");
    CHECK_EQ (json_integer_value (json_object_get (commit, "count")), 1);
    CHECK_NEAR (json_real_value (json_object_get (commit, "sum")), 0.004, 1e-9);
    CHECK_EQ (json_integer_value (json_object_get (json, "commit_failed")), 1);
    json_t *proc = json_object_get (json, "process");
    CHECK (json_integer_value (json_object_get (proc, "rss_bytes")) > 0);
    CHECK (json_integer_value (json_object_get (proc, "open_fds")) >= 0);
    CHECK (json_real_value (json_object_get (proc, "start_time")) > 1.5e9);
    json_decref (json);
    //  Gauges: per queue, never negative, reset per kind.
    metrics_count (metrics, "default", METRICS_DEAD, 3);
    metrics_count (metrics, "images", METRICS_DEAD, 2);
    metrics_count (metrics, "images", METRICS_RETRYING, 1);
    metrics_count (metrics, "default", METRICS_DEAD, -1);
    CHECK_EQ (metrics_count_get (metrics, "default", METRICS_DEAD), 2);
    CHECK_EQ (metrics_count_total (metrics, METRICS_DEAD), 4);
    metrics_count (metrics, "images", METRICS_RETRYING, -5);
    CHECK_EQ (metrics_count_get (metrics, "images", METRICS_RETRYING), 0);
    CHECK_EQ (metrics_count_get (metrics, "nowhere", METRICS_SCHEDULED), 0);
    json_t *dead = metrics_count_json (metrics, METRICS_DEAD);
    CHECK_EQ (json_integer_value (json_object_get (dead, "images")), 2);
    CHECK_EQ (json_object_size (dead), 2);
    json_decref (dead);
    metrics_count_reset (metrics, METRICS_DEAD);
    CHECK_EQ (metrics_count_total (metrics, METRICS_DEAD), 0);
    metrics_destroy (&metrics);
    metrics_destroy (&metrics);  // NULL is fine

    CHECK_NEAR (metrics_usage_wall_s ("wall_us=1500000 cpu_us=3 maxrss_kb=1"), 1.5, 1e-9);
    CHECK_NEAR (metrics_usage_wall_s ("cpu_us=3 wall_us=20"), 0.00002, 1e-12);
    CHECK_NEAR (metrics_usage_wall_s ("wall_us=x"), -1, 0);
    CHECK_NEAR (metrics_usage_wall_s ("xwall_us=5"), -1, 0);
    CHECK_NEAR (metrics_usage_wall_s (""), -1, 0);
    CHECK_NEAR (metrics_usage_wall_s (NULL), -1, 0);
    if (verbose)
        printf ("OK\n");
}
