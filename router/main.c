/*  emq-router — command line: settings, then run the router object. */
#include <czmq.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "pidlock.h"
#include "router.h"
#include "store.h"

#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXIT_USAGE 2        // bad flag or value
#define EXIT_CONFIG 3       // bad configuration file or environment
#define EXIT_START 4        // could not bind a socket or open the store
#define EXIT_LOCKED 5       // another router holds the data directory

static void
s_usage (FILE *out)
{
    fprintf (out,
"Usage: emq-router [OPTIONS]\n"
"The emq broker: takes jobs from clients and hands them to job managers.\n"
"\n"
"  --frontend ADDR            clients and schedulers (default tcp://127.0.0.1:47291;\n"
"                             also --frontend-listen-addr)\n"
"  --backend ADDR             job managers (default tcp://127.0.0.1:47290;\n"
"                             also --backend-listen-addr)\n"
"  --admin ADDR               admin commands (default tcp://127.0.0.1:47293;\n"
"                             also --administrative-listen-addr)\n"
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
"  --result-ttl S             keep results of ended jobs (3600)\n"
"  --dead-ttl S               keep dead jobs (604800)\n"
"  --retry-backoff S          first retry's delay, doubled each time (1)\n"
"  --retry-backoff-max S      cap on a retry's delay (300)\n"
"  --prefetch N               at most N jobs an emq/2 job manager may hold\n"
"                             beyond its free slots: about 50 ms of its work,\n"
"                             at least 2 (128)\n"
"  --curve-secret-cert FILE   CURVE: the router's key pair (NAME_secret of\n"
"                             'emq-cli keygen NAME'); off by default\n"
"  --curve-clients-dir DIR    CURVE: admit only the public certificates there\n"
"                             (default: any key, still encrypted)\n"
"  --standby                  if another router holds the data directory, wait\n"
"                             (checking every 2 s) and start when it is free\n"
"  --takeover                 ask the router holding it to stop, wait until it\n"
"                             has exited, then start\n"
"  --config FILE              configuration file (default $EVENTMQ_CONFIG_FILE\n"
"                             or /etc/eventmq.conf)\n"
"  --log-level LEVEL          error, warning, info (default) or debug\n"
"  -v, --verbose              same as --log-level debug\n"
"  --print-config             print the effective settings and exit\n"
"  -h, --help                 this help;  --version  the version\n"
"\n"
"Exit status: 0 stopped cleanly, 2 bad usage, 3 bad configuration,\n"
"4 could not bind a socket or open the store, 5 data directory in use.\n");
}

int
main (int argc, char *argv[])
{
    //  One malloc arena for every thread: libzmq's I/O thread would
    //  otherwise get its own, which keeps a burst's worth of freed message
    //  buffers resident (RSS after a backlog; docs/performance.md).
    mallopt (M_ARENA_MAX, 1);
    enum { O_FRONTEND = 256, O_BACKEND, O_ADMIN, O_HWM, O_HB_INTERVAL, O_HB_TIMEOUT,
           O_HB_LIVENESS, O_MAXMSG, O_CONFIG, O_LOGLEVEL, O_PRINT, O_VERSION,
           O_DATADIR, O_MEMORY, OPT_FSYNC, O_RESULT_TTL, O_DEAD_TTL, O_BACKOFF,
           O_BACKOFF_MAX, O_STANDBY, O_TAKEOVER, O_PREFETCH, O_CURVE_CERT, O_CURVE_DIR };
    static const struct option options[] = {
        { "frontend", required_argument, NULL, O_FRONTEND },
        { "backend", required_argument, NULL, O_BACKEND },
        { "admin", required_argument, NULL, O_ADMIN },
        //  The settings' own names work as flags too (docs/configuration.md).
        { "frontend-listen-addr", required_argument, NULL, O_FRONTEND },
        { "backend-listen-addr", required_argument, NULL, O_BACKEND },
        { "administrative-listen-addr", required_argument, NULL, O_ADMIN },
        { "queue-hwm", required_argument, NULL, O_HWM },
        { "heartbeat-interval", required_argument, NULL, O_HB_INTERVAL },
        { "heartbeat-timeout", required_argument, NULL, O_HB_TIMEOUT },
        { "heartbeat-liveness", required_argument, NULL, O_HB_LIVENESS },
        { "max-message-size", required_argument, NULL, O_MAXMSG },
        { "config", required_argument, NULL, O_CONFIG },
        { "log-level", required_argument, NULL, O_LOGLEVEL },
        { "verbose", no_argument, NULL, 'v' },
        { "print-config", no_argument, NULL, O_PRINT },
        { "data-dir", required_argument, NULL, O_DATADIR },
        { "in-memory", no_argument, NULL, O_MEMORY },
        { "fsync", required_argument, NULL, OPT_FSYNC },
        { "result-ttl", required_argument, NULL, O_RESULT_TTL },
        { "dead-ttl", required_argument, NULL, O_DEAD_TTL },
        { "retry-backoff", required_argument, NULL, O_BACKOFF },
        { "retry-backoff-max", required_argument, NULL, O_BACKOFF_MAX },
        { "standby", no_argument, NULL, O_STANDBY },
        { "prefetch", required_argument, NULL, O_PREFETCH },
        { "curve-secret-cert", required_argument, NULL, O_CURVE_CERT },
        { "curve-clients-dir", required_argument, NULL, O_CURVE_DIR },
        { "takeover", no_argument, NULL, O_TAKEOVER },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 }
    };
    log_init ("emq-router", LOG_LEVEL_INFO);
    config_t *config = config_from_args ("emq-router", "router", argc, argv, "vh", options, O_CONFIG);
    if (!config)
        return EXIT_CONFIG;
    int opt;
    char err[512];
    bool print = false;
    pidlock_mode_t lock_mode = PIDLOCK_FAIL;
    optind = 1;
    opterr = 1;
    while ((opt = getopt_long (argc, argv, "vh", options, NULL)) != -1) {
        const char *name = NULL;
        switch (opt) {
            case O_FRONTEND: name = "frontend_listen_addr"; break;
            case O_BACKEND: name = "backend_listen_addr"; break;
            case O_ADMIN: name = "administrative_listen_addr"; break;
            case O_HWM: name = "queue_hwm"; break;
            case O_HB_INTERVAL: name = "heartbeat_interval"; break;
            case O_HB_TIMEOUT: name = "heartbeat_timeout"; break;
            case O_HB_LIVENESS: name = "heartbeat_liveness"; break;
            case O_MAXMSG: name = "max_message_size"; break;
            case O_LOGLEVEL: name = "log_level"; break;
            case 'v': name = "log_level"; optarg = "debug"; break;
            case O_DATADIR: name = "data_dir"; break;
            case O_MEMORY: name = "data_dir"; optarg = ":memory:"; break;
            case OPT_FSYNC: name = "fsync"; break;
            case O_RESULT_TTL: name = "result_ttl"; break;
            case O_DEAD_TTL: name = "dead_ttl"; break;
            case O_BACKOFF: name = "retry_backoff"; break;
            case O_BACKOFF_MAX: name = "retry_backoff_max"; break;
            case O_STANDBY: lock_mode = PIDLOCK_STANDBY; break;
            case O_PREFETCH: name = "prefetch"; break;
            case O_CURVE_CERT: name = "curve_secret_cert"; break;
            case O_CURVE_DIR: name = "curve_clients_dir"; break;
            case O_TAKEOVER: lock_mode = PIDLOCK_TAKEOVER; break;
            case O_CONFIG: break;
            case O_PRINT: print = true; break;
            case 'h':
                s_usage (stdout);
                config_destroy (&config);
                return 0;
            case O_VERSION:
                printf ("emq-router 0.1.0 (eMQP/1.0)\n");
                config_destroy (&config);
                return 0;
            default:
                s_usage (stderr);
                config_destroy (&config);
                return EXIT_USAGE;
        }
        if (name && config_set (config, name, optarg, err, sizeof err)) {
            fprintf (stderr, "emq-router: %s\n", err);
            config_destroy (&config);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "emq-router: unexpected argument '%s'\n", argv[optind]);
        config_destroy (&config);
        return EXIT_USAGE;
    }
    if (print) {
        config_print (config, stdout);
        config_destroy (&config);
        return 0;
    }
    log_level_t level = LOG_LEVEL_INFO;
    if (log_level_parse (config_str (config, "log_level"), &level)) {
        fprintf (stderr, "emq-router: log_level '%s' is not error, warning, info or debug\n",
                 config_str (config, "log_level"));
        config_destroy (&config);
        return EXIT_CONFIG;
    }
    log_set_level (level);

    store_fsync_t fsync_policy;
    if (store_fsync_parse (config_str (config, "fsync"), &fsync_policy)) {
        fprintf (stderr, "emq-router: fsync '%s' is not always, everysec or off\n",
                 config_str (config, "fsync"));
        config_destroy (&config);
        return EXIT_CONFIG;
    }
    //  The data directory: as configured, or a per-user one for a first run
    //  without root (the default /var/lib/emq needs root to create).
    char data_dir[4096], db_path[4200];
    const char *configured = config_str (config, "data_dir");
    bool memory = streq (configured, ":memory:") || streq (configured, "");
    if (!memory && streq (configured, "/var/lib/emq") && geteuid () != 0) {
        const char *state = getenv ("XDG_STATE_HOME");
        const char *home = getenv ("HOME");
        if (state && *state)
            snprintf (data_dir, sizeof data_dir, "%s/emq", state);
        else
            snprintf (data_dir, sizeof data_dir, "%s/.local/state/emq", home ? home : "/tmp");
    }
    else
        snprintf (data_dir, sizeof data_dir, "%s", configured);
    pidlock_t *lock = NULL;
    if (!memory) {
        //  mkdir -p, then one router per directory.
        for (char *p = data_dir + 1; *p; p++)
            if (*p == '/') {
                *p = 0;
                mkdir (data_dir, 0700);
                *p = '/';
            }
        if (mkdir (data_dir, 0700) == -1 && errno != EEXIST) {
            fprintf (stderr, "emq-router: cannot create data directory %s: %s\n", data_dir,
                     strerror (errno));
            config_destroy (&config);
            return EXIT_START;
        }
        lock = pidlock_acquire (data_dir, "emq-router", lock_mode, &zsys_interrupted, 0,
                             err, sizeof err);
        if (!lock) {
            fprintf (stderr, "emq-router: %s\n", err);
            config_destroy (&config);
            return zsys_interrupted ? 0 : EXIT_LOCKED;
        }
        snprintf (db_path, sizeof db_path, "%s/emq.db", data_dir);
    }
    else
        snprintf (db_path, sizeof db_path, ":memory:");

    router_settings_t settings = {
        .frontend = config_str (config, "frontend_listen_addr"),
        .backend = config_str (config, "backend_listen_addr"),
        .admin = config_str (config, "administrative_listen_addr"),
        .queue_hwm = (size_t) config_int (config, "queue_hwm"),
        .heartbeat_interval_ms = (int64_t) (config_double (config, "heartbeat_interval") * 1000),
        .heartbeat_timeout_ms = (int64_t) (config_double (config, "heartbeat_timeout") * 1000),
        .heartbeat_liveness = (uint32_t) config_int (config, "heartbeat_liveness"),
        .payload_max = (size_t) config_int (config, "max_message_size"),
        .db_path = db_path,
        .fsync = fsync_policy,
        .result_ttl_s = config_double (config, "result_ttl"),
        .dead_ttl_s = config_double (config, "dead_ttl"),
        .retry_backoff_s = config_double (config, "retry_backoff"),
        .retry_backoff_max_s = config_double (config, "retry_backoff_max"),
        .prefetch = (uint32_t) config_int (config, "prefetch"),
        .curve_secret_cert = config_str (config, "curve_secret_cert"),
        .curve_clients_dir = config_str (config, "curve_clients_dir"),
    };
    if (settings.heartbeat_interval_ms < 1)
        settings.heartbeat_interval_ms = 1;
    //  A file size limit must show as a write error (refused jobs), not kill
    //  the router.
    signal (SIGXFSZ, SIG_IGN);
    //  czmq handles SIGINT/SIGTERM: zloop returns and we say KBYE to peers.
    router_t *router = router_new (&settings, err, sizeof err);
    if (!router) {
        log_error ("router: %s", err);
        fprintf (stderr, "emq-router: %s\n", err);
        pidlock_release (&lock);
        config_destroy (&config);
        return EXIT_START;
    }
    int rc = router_run (router);
    router_destroy (&router);
    //  Released last: a router taking over starts only once we are done.
    pidlock_release (&lock);
    config_destroy (&config);
    return rc;
}
