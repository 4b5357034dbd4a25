/*  emq-scheduler — command line: settings, the data directory lock (local
    mode), then run the scheduler object. */
#include "clock.h"
#include "config.h"
#include "cron.h"
#include "program.h"
#include "service.h"
#include "scheduler.h"
#include "emq/client.h"

#include <czmq.h>
#include <stdio.h>

static void
s_usage (FILE *out)
{
    fprintf (
        out,
        "Usage: emq-scheduler [OPTIONS]\n"
        "Keeps cron and interval schedules and submits their jobs to an emq router;\n"
        "only the leader fires (one per data directory, or one per etcd prefix).\n"
        "\n"
        "  --router ADDR[,ADDR]...    the router's frontend (default "
        "tcp://127.0.0.1:47291);\n"
        "                             a list: routers on one database, one used at a\n"
        "                             time, the next tried when it falls silent\n"
        "  --admin ADDR[,ADDR]...     the router's admin socket, to cancel jobs on\n"
        "                             UNSCHEDULE kill-running (default "
        "tcp://127.0.0.1:47293);\n"
        "                             a list in --router's order\n"
        "  --data-dir DIR             local mode: schedules (scheduler.db) and the lock\n"
        "                             (emq-scheduler.pid); default /var/lib/emq as "
        "root,\n"
        "                             else $XDG_STATE_HOME/emq or ~/.local/state/emq\n"
        "  --standby                  if another scheduler holds the data directory, "
        "wait\n"
        "                             (checking every 2 s) and take over when it is "
        "free\n"
        "  --takeover                 ask the scheduler holding it to stop, wait until "
        "it\n"
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
        "  -C, --config FILE          configuration file (default $EVENTMQ_CONFIG_FILE\n"
        "                             or /etc/eventmq.conf), sections [global], "
        "[scheduler]\n"
        "  --log-level LEVEL          error, warning, info (default) or debug\n"
        "  -v, --verbose              same as --log-level debug, and trace every fire\n"
        "  --print-config             print the effective settings and exit\n"
        "  -h, --help                 this help;  --version  the version\n"
        "\n"
        "Signals: TERM/INT stop, HUP reloads the configuration file (log level,\n"
        "heartbeats, misfire grace).\n"
        "\n"
        "Exit status: 0 stopped cleanly, 2 bad usage, 3 bad configuration,\n"
        "4 could not open the schedules or start, 5 data directory in use.\n");
}

//  Each flag sets the setting of its name (docs/configuration.md).
enum {
    O_ROUTER = 256,
    O_ADMIN,
    O_DATADIR,
    O_ETCD,
    O_PREFIX,
    O_TTL,
    O_NAME,
    O_TZ,
    O_GRACE,
    O_HB_INTERVAL,
    O_HB_TIMEOUT,
    O_HB_LIVENESS,
    O_CURVE_KEY,
    O_CURVE_CERT
};

static const struct option s_options[] = {
    { "router", required_argument, NULL, O_ROUTER },
    { "scheduler-addr", required_argument, NULL, O_ROUTER },
    { "admin", required_argument, NULL, O_ADMIN },
    { "administrative-addr", required_argument, NULL, O_ADMIN },
    { "data-dir", required_argument, NULL, O_DATADIR },
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
    PROGRAM_LOCK_OPTIONS,
    PROGRAM_OPTIONS
};

static const program_flag_t s_flags[] = {
    { O_ROUTER, "scheduler_addr", NULL },
    { O_ADMIN, "administrative_addr", NULL },
    { O_DATADIR, "data_dir", NULL },
    { O_ETCD, "etcd_endpoint", NULL },
    { O_PREFIX, "etcd_prefix", NULL },
    { O_TTL, "etcd_lease_ttl", NULL },
    { O_NAME, "name", NULL },
    { O_TZ, "timezone", NULL },
    { O_GRACE, "misfire_grace", NULL },
    { O_HB_INTERVAL, "heartbeat_interval", NULL },
    { O_HB_TIMEOUT, "heartbeat_timeout", NULL },
    { O_HB_LIVENESS, "heartbeat_liveness", NULL },
    { O_CURVE_KEY, "curve_server_key", NULL },
    { O_CURVE_CERT, "curve_cert", NULL },
};

//  The scheduler's settings from the configuration (borrowed strings); the
//  store and the fence are for s_local to fill.
static void
s_settings (config_t *config, scheduler_settings_t *settings)
{
    const char *etcd = config_str (config, "etcd_endpoint");
    *settings = (scheduler_settings_t){
        .router = config_str (config, "scheduler_addr"),
        .admin = config_str (config, "administrative_addr"),
        .timezone = config_str (config, "timezone"),
        .id = config_str (config, "name"),
        .heartbeat_interval_ms =
            (int64_t) (config_double (config, "heartbeat_interval") * 1000),
        .heartbeat_timeout_ms =
            (int64_t) (config_double (config, "heartbeat_timeout") * 1000),
        .heartbeat_liveness = (uint32_t) config_int (config, "heartbeat_liveness"),
        .misfire_grace_s = config_double (config, "misfire_grace"),
        .etcd = etcd && *etcd ? etcd : NULL,
        .etcd_prefix = config_str (config, "etcd_prefix"),
        .etcd_ttl_s = config_double (config, "etcd_lease_ttl"),
        .curve_server_key = config_str (config, "curve_server_key"),
        .curve_cert = config_str (config, "curve_cert"),
    };
    if (settings->heartbeat_interval_ms < 1)
        settings->heartbeat_interval_ms = 1;
}

//  Local mode (no etcd): this scheduler holds the data directory, keeps its
//  schedules in scheduler.db there (path written to db_path) and fences its
//  fires with the time it took the lock. Returns -1 to go on, or an exit
//  code.
static int
s_local (program_t *program, scheduler_settings_t *settings, char *db_path, size_t size)
{
    int code;
    if (!program_lock_data_dir (program, &code))
        return code;
    //  The fencing token: when this process took the lock, in µs. A
    //  scheduler that takes over later has a larger one.
    settings->fence = clock_wall_us ();
    snprintf (db_path, size, "%s/scheduler.db", program->data_dir);
    settings->db_path = db_path;
    return -1;
}

//  What SIGHUP applies without a restart (scheduler_apply).
static const char *const s_reloadable[] = { "log_level",
                                            "log_format",
                                            "heartbeat_interval",
                                            "heartbeat_timeout",
                                            "heartbeat_liveness",
                                            "misfire_grace",
                                            NULL };

static int
s_reload (void *arg, scheduler_settings_t *fresh, char *err, size_t errlen)
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
    //  From the start: a SIGHUP before the loop runs is a reload then, not
    //  the default action (exit).
    service_hup_install ();
    program_t program = { .name = "emq-scheduler",
                          .section = "scheduler",
                          .usage = s_usage };
    int code;
    if (!program_start (&program, argc, argv, s_options, s_flags,
                        sizeof s_flags / sizeof s_flags[0], &code))
        return code;
    scheduler_settings_t settings;
    s_settings (program.config, &settings);
    char db_path[4200];
    code = settings.etcd ? -1 : s_local (&program, &settings, db_path, sizeof db_path);
    if (code != -1)
        return program_end (&program, code);
    //  The same keys for the admin calls libemq makes (kill-running); bad
    //  keys are reported here, before anything starts.
    char err[512];
    if (*settings.curve_server_key
        && emq_set_curve (settings.curve_server_key, settings.curve_cert, err,
                          sizeof err))
        return program_end (&program, program_error (program.name, PROGRAM_EXIT_CONFIG,
                                                     "CURVE: %s", err));
    if (cron_tz_check (settings.timezone, err, sizeof err))
        return program_end (&program,
                            program_error (program.name, PROGRAM_EXIT_CONFIG, "%s", err));
    scheduler_t *scheduler = scheduler_new (&settings, err, sizeof err);
    if (!scheduler)
        return program_end (&program,
                            program_error (program.name, PROGRAM_EXIT_START, "%s", err));
    scheduler_set_verbose (scheduler, program.verbose);
    scheduler_set_reload (scheduler, s_reload, &program);
    scheduler_run (scheduler);
    scheduler_destroy (&scheduler);
    return program_end (&program, PROGRAM_EXIT_OK);
}
