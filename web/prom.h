/*  prom — the Prometheus text exposition (format 0.0.4) of what the router
    reports: its STATUS and ROUTER_SHOW_WORKERS JSON become gauges,
    counters and histograms (docs/operations.md lists them). Pure: JSON in,
    text out; emq-web serves it on /metrics.
*/
#ifndef EMQ_WEB_PROM_H
#define EMQ_WEB_PROM_H

#include <jansson.h>
#include <stdbool.h>

//  Renders the metrics. status and workers are borrowed and may be NULL
//  (the router did not answer: emq_up is 0 and only emq-web's own figures
//  follow). Returns a malloc'd string the caller frees, or NULL when out
//  of memory.
char *prom_render (json_t *status, json_t *workers, bool router_up,
                   unsigned long long sample_errors);

void prom_test (bool verbose);

#endif
