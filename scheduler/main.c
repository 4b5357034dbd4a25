/*  emq-scheduler — command line: settings, the data directory lock (local
    mode), then run the scheduler object. */
#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "pidlock.h"
#include "scheduler.h"
#include "emq/client.h"

#define EXIT_USAGE 2        // bad flag or value
#define EXIT_CONFIG 3       // bad configuration file, environment or setting
#define EXIT_START 4        // could not open the store, or start
#define EXIT_LOCKED 5       // another scheduler holds the data directory

static void
s_usage (FILE *out)
{
    fprintf (out,
"Usage: emq-scheduler [OPTIONS]\n"
"Keeps cron and interval schedules and submits their jobs to an emq router;\n"
"only the leader fires (one per data directory, or one per etcd prefix).\n"
"\n"
"  --router ADDR              the router's frontend (default tcp://127.0.0.1:47291)\n"
"  --admin ADDR               the router's admin socket, to cancel jobs on\n"
"                             UNSCHEDULE kill-running (default tcp://127.0.0.1:47293)\n"
"  --data-dir DIR             local mode: schedules (scheduler.db) and the lock\n"
"                             (emq-scheduler.pid); default /var/lib/emq as root,\n"
"                             else $XDG_STATE_HOME/emq or ~/.local/state/emq\n"
"  --standby                  if another scheduler holds the data directory, wait\n"
"                             (checking every 2 s) and take over when it is free\n"
"  --takeover                 ask the scheduler holding it to stop, wait until it\n"
"                             has exited, then start\n"
"  --etcd URL                 etcd mode: leadership and schedules in etcd\n"
"                             (e.g. http://127.0.0.1:2379); no local lock\n"
"  --etcd-prefix PREFIX       etcd key prefix (default /emq)\n"
"  --etcd-lease-ttl S         leader lease TTL (default 15)\n"
"  --name NAME                this instance's id (default sched-<host>-<pid>)\n"
"  --timezone TZ              zone for cron schedules (default UTC)\n"
"  --misfire-grace S          lateness that still counts as on time (5)\n"
"  --heartbeat-interval S     seconds between heartbeats (3)\n"
"  --heartbeat-timeout S      silence counted as one missed heartbeat (5)\n"
"  --heartbeat-liveness N     misses before reconnecting to the router (3)\n"
"  --curve-server-key KEY     CURVE: the router's public key (Z85 or its public\n"
"                             certificate file); off by default\n"
"  --curve-cert FILE          CURVE: this scheduler's key pair (NAME_secret)\n"
"  --config FILE              configuration file (default $EVENTMQ_CONFIG_FILE\n"
"                             or /etc/eventmq.conf), sections [global], [scheduler]\n"
"  --log-level LEVEL          error, warning, info (default) or debug\n"
"  -v, --verbose              same as --log-level debug, and trace every fire\n"
"  --print-config             print the effective settings and exit\n"
"  -h, --help                 this help;  --version  the version\n"
"\n"
"Exit status: 0 stopped cleanly, 2 bad usage, 3 bad configuration,\n"
"4 could not open the schedules or start, 5 data directory in use.\n");
}

int
main (int argc, char *argv[])
{
    enum { O_ROUTER = 256, O_ADMIN, O_DATADIR, O_STANDBY, O_TAKEOVER, O_ETCD, O_PREFIX,
           O_TTL, O_NAME, O_TZ, O_GRACE, O_HB_INTERVAL, O_HB_TIMEOUT, O_HB_LIVENESS,
           O_CONFIG, O_LOGLEVEL, O_PRINT, O_VERSION, O_CURVE_KEY, O_CURVE_CERT };
    static const struct option options[] = {
        { "router", required_argument, NULL, O_ROUTER },
        { "scheduler-addr", required_argument, NULL, O_ROUTER },
        { "admin", required_argument, NULL, O_ADMIN },
        { "administrative-addr", required_argument, NULL, O_ADMIN },
        { "data-dir", required_argument, NULL, O_DATADIR },
        { "standby", no_argument, NULL, O_STANDBY },
        { "takeover", no_argument, NULL, O_TAKEOVER },
        { "etcd", required_argument, NULL, O_ETCD },
        { "etcd-endpoint", required_argument, NULL, O_ETCD },
        { "etcd-prefix", required_argument, NULL, O_PREFIX },
        { "etcd-lease-ttl", required_argument, NULL, O_TTL },
        { "name", required_argument, NULL, O_NAME },
        { "timezone", required_argument, NULL, O_TZ },
        { "misfire-grace", required_argument, NULL, O_GRACE },
        { "heartbeat-interval", required_argument, NULL, O_HB_INTERVAL },
        { "heartbeat-timeout", required_argument, NULL, O_HB_TIMEOUT },
        { "heartbeat-liveness", required_argument, NULL, O_HB_LIVENESS },
        { "curve-server-key", required_argument, NULL, O_CURVE_KEY },
        { "curve-cert", required_argument, NULL, O_CURVE_CERT },
        { "config", required_argument, NULL, O_CONFIG },
        { "log-level", required_argument, NULL, O_LOGLEVEL },
        { "verbose", no_argument, NULL, 'v' },
        { "print-config", no_argument, NULL, O_PRINT },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 }
    };
    log_init ("emq-scheduler", LOG_LEVEL_INFO);
    config_t *config = config_from_args ("emq-scheduler", "scheduler", argc, argv, "vh", options, O_CONFIG);
    if (!config)
        return EXIT_CONFIG;
    int opt;
    char err[512];
    bool print = false, verbose = false;
    pidlock_mode_t lock_mode = PIDLOCK_FAIL;
    optind = 1;
    opterr = 1;
    while ((opt = getopt_long (argc, argv, "vh", options, NULL)) != -1) {
        const char *name = NULL;
        switch (opt) {
            case O_ROUTER: name = "scheduler_addr"; break;
            case O_ADMIN: name = "administrative_addr"; break;
            case O_DATADIR: name = "data_dir"; break;
            case O_ETCD: name = "etcd_endpoint"; break;
            case O_PREFIX: name = "etcd_prefix"; break;
            case O_TTL: name = "etcd_lease_ttl"; break;
            case O_NAME: name = "name"; break;
            case O_TZ: name = "timezone"; break;
            case O_GRACE: name = "misfire_grace"; break;
            case O_HB_INTERVAL: name = "heartbeat_interval"; break;
            case O_HB_TIMEOUT: name = "heartbeat_timeout"; break;
            case O_HB_LIVENESS: name = "heartbeat_liveness"; break;
            case O_LOGLEVEL: name = "log_level"; break;
            case O_CURVE_KEY: name = "curve_server_key"; break;
            case O_CURVE_CERT: name = "curve_cert"; break;
            case 'v':
                verbose = true;
                name = "log_level";
                optarg = "debug";
                break;
            case O_STANDBY: lock_mode = PIDLOCK_STANDBY; break;
            case O_TAKEOVER: lock_mode = PIDLOCK_TAKEOVER; break;
            case O_PRINT: print = true; break;
            case O_CONFIG: break;
            case 'h':
                s_usage (stdout);
                config_destroy (&config);
                return 0;
            case O_VERSION:
                printf ("emq-scheduler %s\n", EMQ_VERSION);
                config_destroy (&config);
                return 0;
            default:
                s_usage (stderr);
                config_destroy (&config);
                return EXIT_USAGE;
        }
        if (name && config_set (config, name, optarg, err, sizeof err)) {
            fprintf (stderr, "emq-scheduler: %s\n", err);
            config_destroy (&config);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "emq-scheduler: unexpected argument '%s'\n", argv[optind]);
        config_destroy (&config);
        return EXIT_USAGE;
    }
    if (print) {
        config_print (config, stdout);
        config_destroy (&config);
        return 0;
    }
    log_level_t level = LOG_LEVEL_INFO;
    log_level_parse (config_str (config, "log_level"), &level);
    log_set_level (level);

    const char *etcd = config_str (config, "etcd_endpoint");
    bool etcd_mode = etcd && *etcd;
    char data_dir[4096], db_path[4200];
    pidlock_t *lock = NULL;
    uint64_t fence = 0;
    if (!etcd_mode) {
        //  The data directory: as configured, or a per-user one without root.
        const char *configured = config_str (config, "data_dir");
        if (streq (configured, "/var/lib/emq") && geteuid () != 0) {
            const char *state = getenv ("XDG_STATE_HOME");
            const char *home = getenv ("HOME");
            if (state && *state)
                snprintf (data_dir, sizeof data_dir, "%s/emq", state);
            else
                snprintf (data_dir, sizeof data_dir, "%s/.local/state/emq",
                          home ? home : "/tmp");
        }
        else
            snprintf (data_dir, sizeof data_dir, "%s", *configured ? configured : ".");
        for (char *p = data_dir + 1; *p; p++)
            if (*p == '/') {
                *p = 0;
                mkdir (data_dir, 0700);
                *p = '/';
            }
        if (mkdir (data_dir, 0700) == -1 && errno != EEXIST) {
            fprintf (stderr, "emq-scheduler: cannot create data directory %s: %s\n", data_dir,
                     strerror (errno));
            config_destroy (&config);
            return EXIT_START;
        }
        lock = pidlock_acquire (data_dir, "emq-scheduler", lock_mode, &zsys_interrupted, 0,
                                err, sizeof err);
        if (!lock) {
            fprintf (stderr, "emq-scheduler: %s\n", err);
            config_destroy (&config);
            return zsys_interrupted ? 0 : EXIT_LOCKED;
        }
        //  The fencing token: when this process took the lock, in µs. A
        //  scheduler that takes over later has a larger one.
        struct timespec ts;
        clock_gettime (CLOCK_REALTIME, &ts);
        fence = (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
        snprintf (db_path, sizeof db_path, "%s/scheduler.db", data_dir);
    }
    scheduler_settings_t settings = {
        .router = config_str (config, "scheduler_addr"),
        .admin = config_str (config, "administrative_addr"),
        .db_path = etcd_mode ? NULL : db_path,
        .timezone = config_str (config, "timezone"),
        .id = config_str (config, "name"),
        .heartbeat_interval_ms = (int64_t) (config_double (config, "heartbeat_interval") * 1000),
        .heartbeat_timeout_ms = (int64_t) (config_double (config, "heartbeat_timeout") * 1000),
        .heartbeat_liveness = (uint32_t) config_int (config, "heartbeat_liveness"),
        .misfire_grace_s = config_double (config, "misfire_grace"),
        .fence = fence,
        .etcd = etcd_mode ? etcd : NULL,
        .etcd_prefix = config_str (config, "etcd_prefix"),
        .etcd_ttl_s = config_double (config, "etcd_lease_ttl"),
        .curve_server_key = config_str (config, "curve_server_key"),
        .curve_cert = config_str (config, "curve_cert"),
    };
    //  The same keys for the admin calls libemq makes (kill-running); bad
    //  keys are reported here, before anything starts.
    if (*settings.curve_server_key
    &&  emq_set_curve (settings.curve_server_key, settings.curve_cert, err, sizeof err)) {
        fprintf (stderr, "emq-scheduler: CURVE: %s\n", err);
        config_destroy (&config);
        return EXIT_CONFIG;
    }
    if (settings.heartbeat_interval_ms < 1)
        settings.heartbeat_interval_ms = 1;
    scheduler_t *scheduler = scheduler_new (&settings, err, sizeof err);
    if (!scheduler) {
        fprintf (stderr, "emq-scheduler: %s\n", err);
        pidlock_release (&lock);
        config_destroy (&config);
        return strstr (err, "time zone") ? EXIT_CONFIG : EXIT_START;
    }
    scheduler_set_verbose (scheduler, verbose);
    scheduler_run (scheduler);
    scheduler_destroy (&scheduler);
    pidlock_release (&lock);
    config_destroy (&config);
    return 0;
}
