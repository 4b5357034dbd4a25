/*  scheduler — the emq-scheduler object: keeps schedules, and while it leads
    submits a REQUEST to the router each time one is due.

    It talks to the router's frontend over one DEALER socket (INFORM as a
    'scheduler', heartbeats both ways, INFORM again and reconnect when the
    router goes silent), receives the SCHEDULE / UNSCHEDULE messages the
    router forwards, keeps schedules in SQLite (local mode) or in etcd (etcd
    mode), and fires each due time once with the msgid
    sched:<name>:<fire_unix_ts> and the header fence:<token>, so that the
    router holds one fire time at most once and refuses a deposed leader.

    Leadership: local mode leads from the start (main.c took the data
    directory's pidfile lock; the token is the time it did, in µs). etcd
    mode leads while it holds <prefix>/leader on a lease it keeps alive,
    and stops firing by its own monotonic deadline (see etcd.h).
*/
#ifndef EMQ_SCHEDULER_SCHEDULER_H
#define EMQ_SCHEDULER_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *router;    // the router's frontend endpoint
    const char *admin;     // its admin endpoint (CANCEL for kill-running)
    const char *db_path;   // local mode: the SQLite file; NULL in etcd mode
    const char *timezone;  // default zone for cron schedules ("UTC")
    const char *id;        // this instance's name, "" = made up
    int64_t heartbeat_interval_ms;
    int64_t heartbeat_timeout_ms;
    uint32_t heartbeat_liveness;
    double misfire_grace_s;        // a fire later than this is a misfire
    uint64_t fence;                // local mode: the fencing token
    const char *etcd;              // etcd endpoint (http://host:port) or NULL
    const char *etcd_prefix;       // e.g. "/emq"
    double etcd_ttl_s;             // lease TTL
    const char *curve_server_key;  // CURVE: the router's public key, or ""
    const char *curve_cert;        // CURVE: our key pair file, or "" (fresh)
} scheduler_settings_t;

typedef struct scheduler_t scheduler_t;

//  Creates a scheduler (opens its store, loads its schedules, connects).
//  Strings in settings are copied. Returns it, or NULL with the reason in err.
scheduler_t *scheduler_new (const scheduler_settings_t *settings, char *err,
                            size_t errlen);
//  Builds fresh settings on SIGHUP (re-reading the configuration): fills
//  *fresh (strings borrowed until the next call) and returns 0, or -1 with
//  the reason in err.
typedef int (scheduler_reload_fn) (void *arg, scheduler_settings_t *fresh, char *err,
                                   size_t errlen);
//  Sets how SIGHUP rebuilds the settings (arg borrowed); without it SIGHUP
//  only logs.
void scheduler_set_reload (scheduler_t *self, scheduler_reload_fn *fn, void *arg);
//  Applies what can change while running: heartbeats and misfire_grace.
void scheduler_apply (scheduler_t *self, const scheduler_settings_t *fresh);

//  Runs until SIGINT/SIGTERM or the router's DISCONNECT; says KBYE. Tells
//  systemd READY=1 once running (WATCHDOG=1 when asked); SIGHUP reloads.
//  Returns 0.
int scheduler_run (scheduler_t *self);
//  Destroys the scheduler and nulls the pointer; NULL is fine.
void scheduler_destroy (scheduler_t **self_p);
//  Turns on a trace of every state change and message.
void scheduler_set_verbose (scheduler_t *self, bool verbose);

void scheduler_test (bool verbose);

#endif
