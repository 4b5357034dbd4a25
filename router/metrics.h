/*  metrics — what the router measures about itself, for STATUS "metrics"
    (and so for emq-web's Prometheus endpoint, docs/operations.md): latency
    histograms per queue (wait: entering the queue to dispatch; run: the
    worker's wall time as its job manager reports it), the store's commit
    time, and the process's own figures (RSS, CPU, fds, start time).

    Kept by the router's loop and read by its STATUS handler: no thread,
    no lock. The metrics_t owns its histograms; queue names are copied.
*/
#ifndef EMQ_ROUTER_METRICS_H
#define EMQ_ROUTER_METRICS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

//  Upper bounds of the histogram buckets, in seconds; +Inf is implicit.
#define METRICS_BUCKETS 15
extern const double metrics_bounds_s[METRICS_BUCKETS];

typedef struct {
    uint64_t counts[METRICS_BUCKETS + 1];  // per bucket, not cumulative; the
                                           // last one is above every bound
    uint64_t count;                        // observations
    double sum_s;                          // their sum, seconds
} metrics_hist_t;

typedef struct metrics_t metrics_t;

//  Returns a new, empty set the caller owns, or NULL.
metrics_t *metrics_new (void);
void metrics_destroy (metrics_t **self_p);

//  Counts one observation of `seconds` (negative counts as 0).
void metrics_hist_observe (metrics_hist_t *hist, double seconds);

//  A job of `queue` waited `seconds` before its dispatch / ran `seconds`.
void metrics_observe_wait (metrics_t *self, const char *queue, double seconds);
void metrics_observe_run (metrics_t *self, const char *queue, double seconds);

//  Gauges the router keeps per queue as jobs move, so that STATUS never
//  scans the scheduled list or the store for them.
typedef enum {
    METRICS_SCHEDULED = 0,  // delayed jobs
    METRICS_RETRYING,       // failed jobs waiting out a retry's backoff
    METRICS_DEAD,           // dead jobs in the store (committed)
    METRICS_COUNT_KINDS
} metrics_count_t;

//  Adds delta to queue's gauge.
void metrics_count (metrics_t *self, const char *queue, metrics_count_t kind,
                    int64_t delta);
//  The gauge (0 for a queue never counted).
int64_t metrics_count_get (metrics_t *self, const char *queue, metrics_count_t kind);
//  The gauge summed over queues.
int64_t metrics_count_total (metrics_t *self, metrics_count_t kind);
//  {queue: gauge} for the queues where it is not 0: a new reference.
json_t *metrics_count_json (metrics_t *self, metrics_count_t kind);
//  Sets the gauge to 0 for every queue (before counting afresh).
void metrics_count_reset (metrics_t *self, metrics_count_t kind);

//  A batch went to the writer at monotonic `now_ms`; its commit (or failure)
//  was seen at `now_ms`: counts the time between them.
void metrics_commit_start (metrics_t *self, int64_t now_ms);
void metrics_commit_end (metrics_t *self, int64_t now_ms, bool ok);

//  The whole set as JSON (docs/protocol.md, STATUS "metrics"): a new
//  reference the caller owns, or NULL when out of memory.
json_t *metrics_json (metrics_t *self);

//  The "wall_us=N" of a job's usage frame, in seconds, or -1 without one.
double metrics_usage_wall_s (const char *usage);

void metrics_test (bool verbose);

#endif
