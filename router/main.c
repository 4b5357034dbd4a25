/*  emq-router — command line: settings, then run the router object. */
#include <czmq.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "log.h"
#include "router.h"

#define EXIT_USAGE 2        // bad flag or value
#define EXIT_CONFIG 3       // bad configuration file or environment
#define EXIT_START 4        // could not bind a socket

static void
s_usage (FILE *out)
{
    fprintf (out,
"Usage: emq-router [OPTIONS]\n"
"The emq broker: takes jobs from clients and hands them to job managers.\n"
"\n"
"  --frontend ADDR            clients and schedulers (default tcp://127.0.0.1:47291)\n"
"  --backend ADDR             job managers (default tcp://127.0.0.1:47290)\n"
"  --admin ADDR               admin commands (default tcp://127.0.0.1:47293)\n"
"  --queue-hwm N              waiting jobs per queue before QUEUE_FULL (100000)\n"
"  --heartbeat-interval S     seconds between heartbeats (3)\n"
"  --heartbeat-timeout S      silence counted as one missed heartbeat (5)\n"
"  --heartbeat-liveness N     misses before a job manager is removed (3)\n"
"  --max-message-size BYTES   largest job payload accepted (16777216)\n"
"  --config FILE              configuration file (default $EVENTMQ_CONFIG_FILE\n"
"                             or /etc/eventmq.conf)\n"
"  --log-level LEVEL          error, warning, info (default) or debug\n"
"  -v, --verbose              same as --log-level debug\n"
"  --print-config             print the effective settings and exit\n"
"  -h, --help                 this help;  --version  the version\n"
"\n"
"Exit status: 0 stopped cleanly, 2 bad usage, 3 bad configuration,\n"
"4 could not bind a socket.\n");
}

int
main (int argc, char *argv[])
{
    enum { O_FRONTEND = 256, O_BACKEND, O_ADMIN, O_HWM, O_HB_INTERVAL, O_HB_TIMEOUT,
           O_HB_LIVENESS, O_MAXMSG, O_CONFIG, O_LOGLEVEL, O_PRINT, O_VERSION };
    static const struct option options[] = {
        { "frontend", required_argument, NULL, O_FRONTEND },
        { "backend", required_argument, NULL, O_BACKEND },
        { "admin", required_argument, NULL, O_ADMIN },
        { "queue-hwm", required_argument, NULL, O_HWM },
        { "heartbeat-interval", required_argument, NULL, O_HB_INTERVAL },
        { "heartbeat-timeout", required_argument, NULL, O_HB_TIMEOUT },
        { "heartbeat-liveness", required_argument, NULL, O_HB_LIVENESS },
        { "max-message-size", required_argument, NULL, O_MAXMSG },
        { "config", required_argument, NULL, O_CONFIG },
        { "log-level", required_argument, NULL, O_LOGLEVEL },
        { "verbose", no_argument, NULL, 'v' },
        { "print-config", no_argument, NULL, O_PRINT },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 }
    };
    //  Flags are read twice: first for --config, then applied over the file.
    const char *config_path = NULL;
    int opt;
    opterr = 0;
    while ((opt = getopt_long (argc, argv, "vh", options, NULL)) != -1)
        if (opt == O_CONFIG)
            config_path = optarg;

    log_init ("emq-router", LOG_LEVEL_INFO);
    config_t *config = config_new ();
    char err[512];
    if (!config) {
        fprintf (stderr, "emq-router: out of memory\n");
        return EXIT_CONFIG;
    }
    if (config_load (config, "router", config_path, err, sizeof err)) {
        fprintf (stderr, "emq-router: %s\n", err);
        config_destroy (&config);
        return EXIT_CONFIG;
    }
    bool print = false;
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

    router_settings_t settings = {
        .frontend = config_str (config, "frontend_listen_addr"),
        .backend = config_str (config, "backend_listen_addr"),
        .admin = config_str (config, "administrative_listen_addr"),
        .queue_hwm = (size_t) config_int (config, "queue_hwm"),
        .heartbeat_interval_ms = (int64_t) (config_double (config, "heartbeat_interval") * 1000),
        .heartbeat_timeout_ms = (int64_t) (config_double (config, "heartbeat_timeout") * 1000),
        .heartbeat_liveness = (uint32_t) config_int (config, "heartbeat_liveness"),
        .payload_max = (size_t) config_int (config, "max_message_size"),
    };
    if (settings.heartbeat_interval_ms < 1)
        settings.heartbeat_interval_ms = 1;
    //  czmq handles SIGINT/SIGTERM: zloop returns and we say KBYE to peers.
    router_t *router = router_new (&settings, err, sizeof err);
    if (!router) {
        log_error ("router: %s", err);
        fprintf (stderr, "emq-router: %s\n", err);
        config_destroy (&config);
        return EXIT_START;
    }
    int rc = router_run (router);
    router_destroy (&router);
    config_destroy (&config);
    return rc;
}
