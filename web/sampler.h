/*  sampler — emq-web's picture of the router: every interval it asks the
    admin socket for STATUS, ROUTER_SHOW_WORKERS and ROUTER_SHOW_SCHEDULERS,
    keeps the latest replies and a history of the last minutes (throughput,
    latency quantiles, backlog) for the dashboard's plots.

    The router stays the one owner of job state: emq-web only reads what the
    admin socket answers. sampler_tick runs on the main thread; the HTTP
    threads read through sampler_overview_json / sampler_metrics_text, which
    copy under the sampler's mutex.
*/
#ifndef EMQ_WEB_SAMPLER_H
#define EMQ_WEB_SAMPLER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define SAMPLER_HISTORY 600  // points kept: 10 minutes at one a second

typedef struct sampler_t sampler_t;

//  admin: the router's admin endpoint (copied). Returns NULL when out of
//  memory.
sampler_t *sampler_new (const char *admin, int timeout_ms);
void sampler_destroy (sampler_t **self_p);

//  Asks the router once and records the answer (or that it did not answer).
void sampler_tick (sampler_t *self);

//  Records replies as sampler_tick would (borrowed; NULL = no answer), at
//  wall time now_s: how tests feed it.
void sampler_record (sampler_t *self, json_t *status, json_t *workers, json_t *schedulers,
                     double now_s);

//  {"up", "sampled_at", "status", "workers", "schedulers", "history":
//  [{"t", "done", "failed", "waiting", "running", "wait_p50", "wait_p95",
//  "run_p50", "run_p95"}...]}: a new reference the caller owns.
json_t *sampler_overview_json (sampler_t *self);

//  The Prometheus text of the latest sample (prom.h): malloc'd, or NULL.
char *sampler_metrics_text (sampler_t *self);

void sampler_test (bool verbose);

#endif
