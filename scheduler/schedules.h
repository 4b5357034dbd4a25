/*  schedules — one schedule (sched_t) and the SQLite file that keeps them
    in the scheduler's data directory (local mode). In etcd mode the same
    record travels as JSON (sched_to_json / sched_from_json).

    A sched_t owns its strings, its payload and its parsed cron. The
    persisted fields are everything needed to go on after a restart: the
    definition, runs left, the next fire, the last fire submitted and the
    last one the router acknowledged (a fire submitted but not acknowledged
    is sent again on start with the same msgid; the router drops it if it
    had it), and the last outcome.
*/
#ifndef EMQ_SCHEDULER_SCHEDULES_H
#define EMQ_SCHEDULER_SCHEDULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cron.h"

typedef struct {
    //  Definition (from SCHEDULE)
    char *name;  // unique; from name:NAME or the payload hash
    char *spec;  // "every 30s" or the cron text, for people
    char *queue;
    char *headers;  // headers for each REQUEST (SCHEDULE-only
                    // ones removed), "" for none
    void *payload;  // the job, opaque bytes
    size_t payload_size;
    int64_t interval_s;  // > 0: interval schedule; -1: cron
    char *cron_text;     // "" for interval schedules
    char *tz;            // time zone for cron, "" = scheduler default
    bool misfire_skip;   // misfire:skip (default once)
    bool nohaste;
    double created_at;  // unix s
    //  State
    int64_t runs_left;   // -1 = unlimited; 0 = ended
    int64_t anchor;      // interval: fire times are anchor + k*interval
    int64_t next_fire;   // unix s; 0 = none (ended, or @reboot)
    int64_t last_fire;   // fire time last submitted, 0 = never
    int64_t acked_fire;  // fire time last ACKed by the router
    char *last_outcome;  // "ok", "failed: ...", "" = none yet
    //  Runtime only (not persisted)
    cron_t *cron;     // parsed cron_text, or NULL
    int64_t sent_ms;  // monotonic: when last_fire was (re)sent
    bool running;     // last_fire submitted, no RESULT yet
    bool due_known;   // interval: due_ms is set (else derived from
                      // next_fire and the wall clock on the next tick)
    int64_t due_ms;   // interval: monotonic ms when next_fire is due
} sched_t;

//  Latest fire time a schedule may hold (unix s; 9999-12-31T23:59:59Z).
#define SCHED_TIME_MAX 253402300799LL

//  Creates an empty schedule (strings ""); caller owns it, or NULL.
sched_t *sched_new (void);
void sched_destroy (sched_t **self_p);
//  Sets a string field (copying value); returns 0 or -1 (out of memory).
int sched_set (char **field, const char *value);
//  Checks the times (0..SCHED_TIME_MAX) and the interval (at most
//  CRON_INTERVAL_MAX_S), then parses cron_text into cron (interval
//  schedules: nothing). Returns 0 or -1 with the reason in err.
int sched_compile (sched_t *self, char *err, size_t errlen);

//  JSON for etcd: a malloc'd string the caller frees, or NULL.
char *sched_to_json (const sched_t *self);
//  From JSON; NULL (reason in err) when it is not a schedule.
sched_t *sched_from_json (const char *text, size_t size, char *err, size_t errlen);

//  Base64 (RFC 4648, with padding). encode: malloc'd NUL-terminated text.
//  decode: malloc'd bytes (size in *out_size), NULL if malformed.
char *b64_encode (const void *data, size_t size);
void *b64_decode (const char *text, size_t len, size_t *out_size);

typedef struct schedules_t schedules_t;

//  Opens (creating) the SQLite file at path. Returns it, or NULL with the
//  reason in err.
schedules_t *schedules_open (const char *path, char *err, size_t errlen);
void schedules_destroy (schedules_t **self_p);
//  Writes the whole schedule (insert or replace by name). Returns 0 or -1.
int schedules_put (schedules_t *self, const sched_t *sched);
//  Deletes by name. Returns 0 or -1.
int schedules_delete (schedules_t *self, const char *name);
//  Calls fn for each stored schedule; fn takes ownership of sched. Returns
//  the number loaded, or -1.
int schedules_load (schedules_t *self, void (*fn) (sched_t *sched, void *arg), void *arg);
//  The last error's text.
const char *schedules_error (schedules_t *self);

void schedules_test (bool verbose);

#endif
