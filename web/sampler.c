/*  sampler — the latest replies and a ring of history points. See
    sampler.h. A point's rates and quantiles come from the difference
    between two consecutive STATUS replies: counters and cumulative
    histogram buckets only grow (a restarted router starts them afresh: a
    negative difference is taken as the new value).
*/
#include "sampler.h"

#include <czmq.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "emq/client.h"
#include "log.h"
#include "prom.h"

typedef struct {
    double t;             // unix seconds
    double done, failed;  // jobs per second over the interval
    double waiting, running;
    double wait_p50, wait_p95, run_p50, run_p95;  // seconds; -1: no job
} s_point_t;

struct sampler_t {
    char *admin;
    int timeout_ms;
    pthread_mutex_t lock;                   // guards everything below
    json_t *status, *workers, *schedulers;  // latest answers, or NULL
    bool up;
    double sampled_at;
    unsigned long long errors;
    s_point_t history[SAMPLER_HISTORY];
    size_t next, size;    // ring: next slot, points held
    json_t *prev_status;  // the STATUS before the latest, for differences
    double prev_t;
};

sampler_t *
sampler_new (const char *admin, int timeout_ms)
{
    sampler_t *self = calloc (1, sizeof (sampler_t));
    if (!self || !(self->admin = strdup (admin))) {
        free (self);
        return NULL;
    }
    self->timeout_ms = timeout_ms;
    pthread_mutex_init (&self->lock, NULL);
    return self;
}

void
sampler_destroy (sampler_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sampler_t *self = *self_p;
    json_decref (self->status);
    json_decref (self->workers);
    json_decref (self->schedulers);
    json_decref (self->prev_status);
    pthread_mutex_destroy (&self->lock);
    free (self->admin);
    free (self);
    *self_p = NULL;
}

static json_t *
s_get (json_t *object, const char *key)
{
    return json_is_object (object) ? json_object_get (object, key) : NULL;
}

//  A counter's growth from prev to now (a restart resets it: then now).
static double
s_grown (double now, double prev)
{
    return now >= prev ? now - prev : now;
}

//  Sums the per-queue histograms of map into buckets[] (cumulative counts
//  per bound, as the router sends them); returns the observations.
static double
s_sum_hists (json_t *map, double *buckets, double *bounds, size_t max, size_t *n)
{
    double count = 0;
    const char *queue;
    json_t *hist;
    json_object_foreach (map, queue, hist)
    {
        size_t i;
        json_t *bucket;
        json_array_foreach (s_get (hist, "buckets"), i, bucket)
        {
            if (i >= max)
                break;
            bounds[i] = json_number_value (json_array_get (bucket, 0));
            buckets[i] += json_number_value (json_array_get (bucket, 1));
            if (i + 1 > *n)
                *n = i + 1;
        }
        count += json_number_value (s_get (hist, "count"));
    }
    return count;
}

//  The q-quantile of the observations between two readings of a family of
//  histograms, as the upper bound of its bucket (seconds); -1 with none.
static double
s_quantile (json_t *now, json_t *prev, double q)
{
    double a[64] = { 0 }, b[64] = { 0 }, bounds[64] = { 0 };
    size_t n = 0, m = 0;
    double total = s_sum_hists (now, a, bounds, 64, &n);
    double before = s_sum_hists (prev, b, bounds, 64, &m);
    double seen_total = s_grown (total, before);
    if (seen_total <= 0)
        return -1;
    bool reset = total < before;
    for (size_t i = 0; i < n; i++) {
        double seen = reset ? a[i] : a[i] - b[i];
        if (seen >= q * seen_total)
            return bounds[i];
    }
    return n ? bounds[n - 1] * 2 : -1;  // above every bound
}

static double
s_queues_sum (json_t *status, const char *key)
{
    double sum = 0;
    const char *name;
    json_t *queue;
    json_object_foreach (s_get (status, "queues"), name, queue) sum +=
        json_number_value (s_get (queue, key));
    return sum;
}

void
sampler_record (sampler_t *self, json_t *status, json_t *workers, json_t *schedulers,
                double now_s)
{
    pthread_mutex_lock (&self->lock);
    json_decref (self->workers);
    json_decref (self->schedulers);
    self->workers = json_incref (workers);
    self->schedulers = json_incref (schedulers);
    self->up = status != NULL;
    self->sampled_at = now_s;
    if (!status)
        self->errors++;
    if (status && self->prev_status) {
        json_t *prev = self->prev_status;
        double dt = now_s - self->prev_t;
        if (dt <= 0)
            dt = 1;
        json_t *m = s_get (status, "metrics"), *pm = s_get (prev, "metrics");
        s_point_t point = {
            .t = now_s,
            .done = s_grown (s_queues_sum (status, "processed"),
                             s_queues_sum (prev, "processed"))
                    / dt,
            .failed =
                s_grown (s_queues_sum (status, "failed"), s_queues_sum (prev, "failed"))
                / dt,
            .waiting = s_queues_sum (status, "waiting"),
            .running = s_queues_sum (status, "inflight"),
            .wait_p50 =
                s_quantile (s_get (m, "wait_seconds"), s_get (pm, "wait_seconds"), 0.5),
            .wait_p95 =
                s_quantile (s_get (m, "wait_seconds"), s_get (pm, "wait_seconds"), 0.95),
            .run_p50 =
                s_quantile (s_get (m, "run_seconds"), s_get (pm, "run_seconds"), 0.5),
            .run_p95 =
                s_quantile (s_get (m, "run_seconds"), s_get (pm, "run_seconds"), 0.95),
        };
        self->history[self->next] = point;
        self->next = (self->next + 1) % SAMPLER_HISTORY;
        if (self->size < SAMPLER_HISTORY)
            self->size++;
    }
    if (status) {
        json_decref (self->prev_status);
        self->prev_status = json_incref (status);
        self->prev_t = now_s;
        json_decref (self->status);
        self->status = json_incref (status);
    }
    pthread_mutex_unlock (&self->lock);
}

static json_t *
s_ask (sampler_t *self, const char *command)
{
    char *reply = NULL;
    int rc = emq_admin (self->admin, command, self->timeout_ms, &reply);
    json_t *root = rc == 0 ? json_loads (reply, 0, NULL) : NULL;
    if (rc == 0 && !json_is_object (root))
        log_warning ("router %s: %s reply is not a JSON object", self->admin, command);
    else if (rc)
        log_debug ("router %s: %s: %s", self->admin, command,
                   reply ? reply : emq_strerror (rc));
    if (!json_is_object (root)) {
        json_decref (root);
        root = NULL;
    }
    free (reply);
    return root;
}

void
sampler_tick (sampler_t *self)
{
    json_t *status = s_ask (self, "STATUS");
    json_t *workers = status ? s_ask (self, "ROUTER_SHOW_WORKERS") : NULL;
    json_t *schedulers = status ? s_ask (self, "ROUTER_SHOW_SCHEDULERS") : NULL;
    bool was_up = self->up;
    sampler_record (self, status, workers, schedulers, clock_wall_s ());
    if (was_up && !status)
        log_warning ("router %s: no answer to STATUS; retrying", self->admin);
    else if (!was_up && status)
        log_info ("router %s: answering", self->admin);
    json_decref (status);
    json_decref (workers);
    json_decref (schedulers);
}

static json_t *
s_num_or_null (double v)
{
    return v < 0 || isnan (v) ? json_null () : json_real (v);
}

json_t *
sampler_overview_json (sampler_t *self)
{
    pthread_mutex_lock (&self->lock);
    json_t *history = json_array ();
    for (size_t i = 0; i < self->size; i++) {
        const s_point_t *p =
            &self->history[(self->next + SAMPLER_HISTORY - self->size + i)
                           % SAMPLER_HISTORY];
        json_array_append_new (
            history,
            json_pack ("{s:f,s:f,s:f,s:f,s:f,s:o,s:o,s:o,s:o}", "t", p->t, "done",
                       p->done, "failed", p->failed, "waiting", p->waiting, "running",
                       p->running, "wait_p50", s_num_or_null (p->wait_p50), "wait_p95",
                       s_num_or_null (p->wait_p95), "run_p50", s_num_or_null (p->run_p50),
                       "run_p95", s_num_or_null (p->run_p95)));
    }
    json_t *root =
        json_pack ("{s:b,s:f,s:O?,s:O?,s:O?,s:o,s:s}", "up", self->up, "sampled_at",
                   self->sampled_at, "status", self->up ? self->status : NULL, "workers",
                   self->workers, "schedulers", self->schedulers, "history", history,
                   "admin", self->admin);
    pthread_mutex_unlock (&self->lock);
    return root;
}

char *
sampler_metrics_text (sampler_t *self)
{
    pthread_mutex_lock (&self->lock);
    char *text = prom_render (self->status, self->workers, self->up, self->errors);
    pthread_mutex_unlock (&self->lock);
    return text;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

static json_t *
s_test_status (int processed, int failed, int fast, int slow)
{
    //  fast jobs waited under 1 ms, slow ones between 0.5 and 1 s.
    return json_pack (
        "{s:{s:{s:i,s:i,s:i,s:i}},s:{s:{s:{s:[[f,i],[f,i],[f,i]],s:i,s:f}}}}", "queues",
        "default", "processed", processed, "failed", failed, "waiting", 7, "inflight", 2,
        "metrics", "wait_seconds", "default", "buckets", 0.001, fast, 0.5, fast, 1.0,
        fast + slow, "count", fast + slow, "sum", 0.0);
}

void
sampler_test (bool verbose)
{
    if (verbose)
        printf (" * sampler: ");
    sampler_t *sampler = sampler_new ("ipc://@nowhere", 100);
    REQUIRE (sampler);
    json_t *a = s_test_status (10, 1, 10, 0), *b = s_test_status (30, 3, 11, 9);
    sampler_record (sampler, a, NULL, NULL, 1000.0);
    sampler_record (sampler, b, NULL, NULL, 1002.0);     // 20 done, 2 failed in 2 s
    sampler_record (sampler, NULL, NULL, NULL, 1003.0);  // no answer
    json_t *overview = sampler_overview_json (sampler);
    REQUIRE (overview);
    CHECK (json_is_false (json_object_get (overview, "up")));
    json_t *history = json_object_get (overview, "history");
    CHECK_EQ (json_array_size (history), 1);
    json_t *point = json_array_get (history, 0);
    CHECK_NEAR (json_real_value (json_object_get (point, "done")), 10.0, 1e-9);
    CHECK_NEAR (json_real_value (json_object_get (point, "failed")), 1.0, 1e-9);
    CHECK_NEAR (json_real_value (json_object_get (point, "waiting")), 7.0, 1e-9);
    //  Of the 10 waits in between, 1 fast and 9 slow: p50 and p95 are slow.
    CHECK_NEAR (json_real_value (json_object_get (point, "wait_p50")), 1.0, 1e-9);
    CHECK_NEAR (json_real_value (json_object_get (point, "wait_p95")), 1.0, 1e-9);
    CHECK (json_is_null (json_object_get (point, "run_p50")));  // no run times
    json_decref (overview);
    char *text = sampler_metrics_text (sampler);
    REQUIRE (text);
    CHECK_CONTAINS (text, "emq_up 0\n");
    CHECK_CONTAINS (text, "emq_web_sample_errors_total 1\n");
    free (text);
    //  A restarted router's counters start again: no negative rates.
    json_t *c = s_test_status (4, 0, 2, 0);
    sampler_record (sampler, c, NULL, NULL, 1004.0);
    overview = sampler_overview_json (sampler);
    point = json_array_get (json_object_get (overview, "history"), 1);
    CHECK (json_is_true (json_object_get (overview, "up")));
    CHECK_NEAR (json_real_value (json_object_get (point, "done")), 2.0, 1e-9);
    CHECK_NEAR (json_real_value (json_object_get (point, "wait_p50")), 0.001, 1e-12);
    json_decref (overview);
    json_decref (a);
    json_decref (b);
    json_decref (c);
    //  A router that does not answer: tick records it down.
    sampler_tick (sampler);
    overview = sampler_overview_json (sampler);
    CHECK (json_is_false (json_object_get (overview, "up")));
    json_decref (overview);
    sampler_destroy (&sampler);
    sampler_destroy (&sampler);
    if (verbose)
        printf ("OK\n");
}
