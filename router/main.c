/*  emq-router — command line: settings, then run the router object. */
#include "config.h"
#include "curve.h"
#include "emqp.h"
#include "log.h"
#include "program.h"
#include "service.h"
#include "router.h"
#include "store.h"

#include <czmq.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "Usage: emq-router [OPTIONS]\n"
        "The emq broker: takes jobs from clients and hands them to job managers.\n"
        "\n"
        "  --frontend ADDR            clients and schedulers (default "
        "tcp://127.0.0.1:47291;\n"
        "                             also --frontend-listen-addr, --frontend-addr)\n"
        "  --backend ADDR             job managers (default tcp://127.0.0.1:47290;\n"
        "                             also --backend-listen-addr, --backend-addr)\n"
        "  --admin ADDR               admin commands (default tcp://127.0.0.1:47293;\n"
        "                             also --administrative-listen-addr,\n"
        "                             --administrative-addr)\n"
        "  --events ADDR              publish the event stream (PUB) there, e.g.\n"
        "                             tcp://127.0.0.1:47294 (default: off; also\n"
        "                             --events-listen-addr)\n"
        "  --queue-hwm N              waiting jobs per queue before QUEUE_FULL (100000)\n"
        "  --heartbeat-interval S     seconds between heartbeats (3)\n"
        "  --heartbeat-timeout S      silence counted as one missed heartbeat (5)\n"
        "  --heartbeat-liveness N     misses before a job manager is removed (3)\n"
        "  --max-message-size BYTES   largest job payload accepted (16777216)\n"
        "  --data-dir DIR             where jobs are kept (emq.db, emq-router.pid);\n"
        "                             default /var/lib/emq as root, else\n"
        "                             $XDG_STATE_HOME/emq or ~/.local/state/emq\n"
        "  --in-memory                keep jobs in memory only (lost on restart)\n"
        "  --fsync POLICY             always, everysec (default) or off\n"
        "  --store BACKEND            sqlite (default: emq.db in the data directory)\n"
        "                             or postgresql (the database --store-dsn names)\n"
        "  --store-dsn DSN            PostgreSQL: a libpq connection string\n"
        "  --store-lease-ttl S        PostgreSQL: the leading router's lease (10); with\n"
        "                             --standby, wait for the lead and take it over\n"
        "  --result-ttl S             keep results of ended jobs (3600)\n"
        "  --dead-ttl S               keep dead jobs (604800)\n"
        "  --retry-backoff S          first retry's delay, doubled each time (1)\n"
        "  --retry-backoff-max S      cap on a retry's delay (300)\n"
        "  --prefetch N               at most N jobs an emq/2 job manager may hold\n"
        "                             beyond its free slots: about 25 ms of its work,\n"
        "                             at least 2 (32)\n"
        "  --curve-secret-cert FILE   CURVE: the router's key pair (NAME_secret of\n"
        "                             'emq-cli keygen NAME'); off by default\n"
        "  --curve-clients-dir DIR    CURVE: admit only the public certificates there\n"
        "                             (default: any key, still encrypted)\n"
        "  --scheduler-identities LIST  without CURVE roles: the scheduler names that\n"
        "                             may register (default: any, on loopback or\n"
        "                             ipc:// only; '*': any from anywhere)\n"
        "  --client-queues-max N      queues one client may hold in use (100)\n"
        "  --standby                  if another router holds the data directory, wait\n"
        "                             (checking every 2 s) and start when it is free\n"
        "  --takeover                 ask the router holding it to stop, wait until it\n"
        "                             has exited, then start\n"
        "  -C, --config FILE          configuration file (default $EVENTMQ_CONFIG_FILE\n"
        "                             or /etc/eventmq.conf)\n"
        "  --log-level LEVEL          error, warning, info (default) or debug\n"
        "  -v, --verbose              same as --log-level debug\n"
        "  --print-config             print the effective settings and exit\n"
        "  -h, --help                 this help;  --version  the version\n"
        "\n"
        "Signals: TERM/INT stop (jobs kept), HUP reloads the configuration file\n"
        "(log level, HWM, heartbeats, retention, backoff, prefetch, CURVE clients).\n"
        "\n"
        "Exit status: 0 stopped cleanly, 2 bad usage, 3 bad configuration,\n"
        "4 could not bind a socket or open the store, 5 data directory in use,\n"
        "6 stood down: another router took the lead of the database.\n");
}

//  Each flag sets the setting of its name (docs/configuration.md); the
//  settings' own names work as flags too.
enum {
    O_FRONTEND = 256,
    O_BACKEND,
    O_ADMIN,
    O_HWM,
    O_HB_INTERVAL,
    O_HB_TIMEOUT,
    O_HB_LIVENESS,
    O_MAXMSG,
    O_DATADIR,
    O_MEMORY,
    O_FSYNC_POLICY,
    O_STORE,
    O_STORE_DSN,
    O_STORE_LEASE,
    O_RESULT_TTL,
    O_DEAD_TTL,
    O_BACKOFF,
    O_BACKOFF_MAX,
    O_PREFETCH,
    O_CURVE_CERT,
    O_CURVE_DIR,
    O_EVENTS,
    O_SCHED_IDS,
    O_CLIENT_QUEUES
};

static const struct option s_options[] = {
    { "frontend", required_argument, NULL, O_FRONTEND },
    { "backend", required_argument, NULL, O_BACKEND },
    { "admin", required_argument, NULL, O_ADMIN },
    { "frontend-listen-addr", required_argument, NULL, O_FRONTEND },
    { "backend-listen-addr", required_argument, NULL, O_BACKEND },
    { "administrative-listen-addr", required_argument, NULL, O_ADMIN },
    { "frontend-addr", required_argument, NULL, O_FRONTEND },
    { "backend-addr", required_argument, NULL, O_BACKEND },
    { "administrative-addr", required_argument, NULL, O_ADMIN },
    { "queue-hwm", required_argument, NULL, O_HWM },
    { "heartbeat-interval", required_argument, NULL, O_HB_INTERVAL },
    { "heartbeat-timeout", required_argument, NULL, O_HB_TIMEOUT },
    { "heartbeat-liveness", required_argument, NULL, O_HB_LIVENESS },
    { "max-message-size", required_argument, NULL, O_MAXMSG },
    { "data-dir", required_argument, NULL, O_DATADIR },
    { "in-memory", no_argument, NULL, O_MEMORY },
    { "fsync", required_argument, NULL, O_FSYNC_POLICY },
    { "store", required_argument, NULL, O_STORE },
    { "store-dsn", required_argument, NULL, O_STORE_DSN },
    { "store-lease-ttl", required_argument, NULL, O_STORE_LEASE },
    { "result-ttl", required_argument, NULL, O_RESULT_TTL },
    { "dead-ttl", required_argument, NULL, O_DEAD_TTL },
    { "retry-backoff", required_argument, NULL, O_BACKOFF },
    { "retry-backoff-max", required_argument, NULL, O_BACKOFF_MAX },
    { "prefetch", required_argument, NULL, O_PREFETCH },
    { "curve-secret-cert", required_argument, NULL, O_CURVE_CERT },
    { "curve-clients-dir", required_argument, NULL, O_CURVE_DIR },
    { "events", required_argument, NULL, O_EVENTS },
    { "events-listen-addr", required_argument, NULL, O_EVENTS },
    { "scheduler-identities", required_argument, NULL, O_SCHED_IDS },
    { "client-queues-max", required_argument, NULL, O_CLIENT_QUEUES },
    PROGRAM_LOCK_OPTIONS,
    PROGRAM_OPTIONS
};

static const program_flag_t s_flags[] = {
    { O_FRONTEND, "frontend_listen_addr", NULL },
    { O_BACKEND, "backend_listen_addr", NULL },
    { O_ADMIN, "administrative_listen_addr", NULL },
    { O_HWM, "queue_hwm", NULL },
    { O_HB_INTERVAL, "heartbeat_interval", NULL },
    { O_HB_TIMEOUT, "heartbeat_timeout", NULL },
    { O_HB_LIVENESS, "heartbeat_liveness", NULL },
    { O_MAXMSG, "max_message_size", NULL },
    { O_DATADIR, "data_dir", NULL },
    { O_MEMORY, "data_dir", ":memory:" },
    { O_FSYNC_POLICY, "fsync", NULL },
    { O_STORE, "store", NULL },
    { O_STORE_DSN, "store_dsn", NULL },
    { O_STORE_LEASE, "store_lease_ttl", NULL },
    { O_RESULT_TTL, "result_ttl", NULL },
    { O_DEAD_TTL, "dead_ttl", NULL },
    { O_BACKOFF, "retry_backoff", NULL },
    { O_BACKOFF_MAX, "retry_backoff_max", NULL },
    { O_PREFETCH, "prefetch", NULL },
    { O_CURVE_CERT, "curve_secret_cert", NULL },
    { O_CURVE_DIR, "curve_clients_dir", NULL },
    { O_EVENTS, "events_listen_addr", NULL },
    { O_SCHED_IDS, "scheduler_identities", NULL },
    { O_CLIENT_QUEUES, "client_queues_max", NULL },
};

//  The store: in memory (data_dir ":memory:" or ""), or emq.db in the data
//  directory, which this router then holds (program_lock_data_dir). Writes
//  the database path to db_path. Returns -1 to go on, or an exit code.
static int
s_store (program_t *program, char *db_path, size_t size)
{
    if (streq (config_str (program->config, "store"), "postgresql")) {
        //  The database holds the jobs, and its lock makes one router per
        //  database (router/store_pg.h): no data directory is taken.
        const char *dsn = config_str (program->config, "store_dsn");
        if (!*dsn)
            return program_error (program->name, PROGRAM_EXIT_CONFIG,
                                  "store = postgresql needs store_dsn (--store-dsn), "
                                  "a libpq connection string");
        if (program->lock_mode == PIDLOCK_TAKEOVER)
            return program_error (program->name, PROGRAM_EXIT_USAGE,
                                  "--takeover is for a data directory; on PostgreSQL "
                                  "run --standby (it takes the lead when the leader "
                                  "stops or its lease expires)");
        snprintf (db_path, size, "%s", dsn);
        return -1;
    }
    const char *configured = config_str (program->config, "data_dir");
    if (streq (configured, ":memory:") || streq (configured, "")) {
        snprintf (db_path, size, ":memory:");
        return -1;
    }
    int code;
    if (!program_lock_data_dir (program, &code))
        return code;
    snprintf (db_path, size, "%s/emq.db", program->data_dir);
    return -1;
}

//  The router's settings from the configuration (borrowed strings).
static void
s_settings (config_t *config, router_settings_t *settings)
{
    *settings = (router_settings_t){
        .frontend = config_str (config, "frontend_listen_addr"),
        .backend = config_str (config, "backend_listen_addr"),
        .admin = config_str (config, "administrative_listen_addr"),
        .events = config_str (config, "events_listen_addr"),
        .queue_hwm = (size_t) config_int (config, "queue_hwm"),
        .heartbeat_interval_ms =
            (int64_t) (config_double (config, "heartbeat_interval") * 1000),
        .heartbeat_timeout_ms =
            (int64_t) (config_double (config, "heartbeat_timeout") * 1000),
        .heartbeat_liveness = (uint32_t) config_int (config, "heartbeat_liveness"),
        .payload_max = (size_t) config_int (config, "max_message_size"),
        .result_ttl_s = config_double (config, "result_ttl"),
        .dead_ttl_s = config_double (config, "dead_ttl"),
        .retry_backoff_s = config_double (config, "retry_backoff"),
        .retry_backoff_max_s = config_double (config, "retry_backoff_max"),
        .prefetch = (uint32_t) config_int (config, "prefetch"),
        .curve_secret_cert = config_str (config, "curve_secret_cert"),
        .curve_clients_dir = config_str (config, "curve_clients_dir"),
        .scheduler_identities = config_str (config, "scheduler_identities"),
        .client_queues_max = (size_t) config_int (config, "client_queues_max"),
    };
    if (settings->heartbeat_interval_ms < 1)
        settings->heartbeat_interval_ms = 1;
}

//  What SIGHUP applies without a restart (router_apply); program_reload
//  names every other changed setting as needing one.
static const char *const s_reloadable[] = { "log_level",
                                            "log_format",
                                            "queue_hwm",
                                            "heartbeat_interval",
                                            "heartbeat_timeout",
                                            "heartbeat_liveness",
                                            "result_ttl",
                                            "dead_ttl",
                                            "retry_backoff",
                                            "retry_backoff_max",
                                            "prefetch",
                                            "curve_clients_dir",
                                            "scheduler_identities",
                                            "client_queues_max",
                                            NULL };

static int
s_reload (void *arg, router_settings_t *fresh, char *err, size_t errlen)
{
    program_t *program = arg;
    if (program_reload (program, s_reloadable, err, errlen) < 0)
        return -1;
    s_settings (program->config, fresh);
    return 0;
}

int
main (int argc, char *argv[])
{
    //  One malloc arena for every thread: libzmq's I/O thread would
    //  otherwise get its own, which keeps a burst's worth of freed message
    //  buffers resident (RSS after a backlog; docs/performance.md).
    mallopt (M_ARENA_MAX, 1);
    //  From the start: a SIGHUP before the loop runs is a reload then, not
    //  the default action (exit).
    service_hup_install ();
    program_t program = { .name = "emq-router",
                          .section = "router",
                          .usage = s_usage,
                          .version_extra = "(" EMQP_PROTOCOL ")" };
    int code;
    if (!program_start (&program, argc, argv, s_options, s_flags,
                        sizeof s_flags / sizeof s_flags[0], &code))
        return code;
    router_settings_t settings;
    s_settings (program.config, &settings);
    const char *fsync_name = config_str (program.config, "fsync");
    if (store_fsync_parse (fsync_name, &settings.fsync))
        return program_end (&program,
                            program_error (program.name, PROGRAM_EXIT_CONFIG,
                                           "fsync '%s' is not always, everysec or off",
                                           fsync_name));
    //  A clients directory without the router's own key would serve in
    //  plain text, admitting anyone the directory was meant to keep out.
    if (settings.curve_clients_dir && *settings.curve_clients_dir
        && !(settings.curve_secret_cert && *settings.curve_secret_cert))
        return program_end (&program,
                            program_error (program.name, PROGRAM_EXIT_CONFIG,
                                           "curve_clients_dir '%s' is set but "
                                           "curve_secret_cert is not: CURVE needs the "
                                           "router's key pair",
                                           settings.curve_clients_dir));
    char db_path[4200];
    code = s_store (&program, db_path, sizeof db_path);
    if (code != -1)
        return program_end (&program, code);
    settings.db_path = db_path;
    store_backend_parse (config_str (program.config, "store"), &settings.store);
    settings.lease_ttl_s = config_double (program.config, "store_lease_ttl");
    settings.standby = program.lock_mode == PIDLOCK_STANDBY;

    //  A file size limit must show as a write error (refused jobs), not kill
    //  the router.
    signal (SIGXFSZ, SIG_IGN);
    //  An EventMQ config binds every interface (tcp://0.0.0.0:...): honoured,
    //  but said plainly when nothing keeps strangers out.
    bool encrypted = *settings.curve_secret_cert != 0;
    curve_warn_exposed ("router", "frontend", settings.frontend, encrypted);
    curve_warn_exposed ("router", "backend", settings.backend, encrypted);
    curve_warn_exposed ("router", "admin", settings.admin, encrypted);
    //  czmq handles SIGINT/SIGTERM: zloop returns and we say KBYE to peers.
    char err[512];
    router_t *router = router_new (&settings, err, sizeof err);
    if (!router && zsys_interrupted && settings.standby) {
        //  A signal while standing by for the lead is a clean stop.
        log_info ("router: %s", err);
        return program_end (&program, PROGRAM_EXIT_OK);
    }
    if (!router) {
        log_error ("router: %s", err);
        return program_end (&program,
                            program_error (program.name, PROGRAM_EXIT_START, "%s", err));
    }
    router_set_reload (router, s_reload, &program);
    int rc = router_run (router);
    router_destroy (&router);
    //  The lock goes last: a router taking over starts only once we are done.
    return program_end (&program, rc);
}
