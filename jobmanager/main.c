/*  emq-jobmanager — command line, configuration, typed settings, then the
    jobmanager object.

    Each flag maps to the setting of the same name (dashes become
    underscores) and is applied after the config file and the environment,
    so flags win. The flags are kept so SIGHUP can rebuild the whole
    configuration in the same order.
*/
#include "config.h"
#include "jobmanager.h"
#include "settings.h"
#include "log.h"
#include "program.h"
#include "worker/worker.h"

#include <czmq.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Exit codes, as listed in --help and the man page.
enum {
    S_EXIT_OK = 0,
    S_EXIT_RUNTIME = 1,    // could not start or failed while running
    S_EXIT_USAGE = 2,      // unknown flag, missing or stray argument
    S_EXIT_BAD_VALUE = 3,  // a flag's value is invalid
    S_EXIT_CONFIG = 4,     // the config file or environment is invalid
    S_EXIT_INVALID = 5     // settings valid one by one, not together
};

//  getopt codes of the options that are no setting; -C is EventMQ's.
enum { S_OPT_HELP = 256, S_OPT_VERSION, S_OPT_PRINT, S_OPT_CONFIG = 'C' };

//  EventMQ's short flags (-B, -C, -Q NAME..., -J, -n) and -v. '+': options
//  end at the first non-option, so that -Q can take the words after it.
#define S_SHORT_OPTIONS "+:vB:C:Q:J:n:"

typedef struct {
    const char *setting;
    char *value;
} s_flag_t;

typedef struct {
    const char *config_path;  // --config, or NULL
    bool print;               // --print-config
    s_flag_t *flags;          // in command-line order
    size_t flag_count;
} s_args_t;

static void
s_usage (FILE *stream)
{
    fprintf (
        stream,
        "usage: emq-jobmanager [OPTION]...\n"
        "Runs jobs from an emq (or EventMQ) router in forked worker processes.\n"
        "\n"
        "  -B, --backend-addr ADDR    router backend (default tcp://127.0.0.1:47290;\n"
        "                             also --broker-addr)\n"
        "  -Q, --queues QUEUES...     queues and weights: JSON [[10,\"default\"]]\n"
        "                             (the default), or words: NAME (weight 10) or\n"
        "                             WEIGHT,NAME, e.g. -Q 20,heavy default\n"
        "  -J, --concurrent-jobs N    worker processes (default 4; also --jobs)\n"
        "  --max-job-count N          jobs per worker before it is replaced (default "
        "1024)\n"
        "  --plugin-dir DIR           where run-job libraries may come from (also\n"
        "                             --plugin-dirs) "
        "(repeatable)\n"
        "  --exec-allow PATTERN       commands exec jobs may run, e.g. '/usr/bin/*'\n"
        "                             (repeatable; none: exec jobs are refused)\n"
        "  --kill-grace-period S      seconds jobs get to finish on SIGTERM (default "
        "300)\n"
        "  --heartbeat-interval S     seconds between heartbeats (default 3)\n"
        "  --heartbeat-timeout S      seconds of silence that count as a miss (default "
        "5)\n"
        "  --heartbeat-liveness N     misses before reconnecting (default 3)\n"
        "  -n, --name NAME            prefix of this job manager's identity\n"
        "  --setup LIB:FN             run once in every new worker\n"
        "  --job-entry LIB:FN         run before every job\n"
        "  --job-exit LIB:FN          run after every job\n"
        "  --max-worker-rss-kb N      replace a worker whose RSS passed N KiB (0: off)\n"
        "  --default-timeout S        kill a job that names no timeout:N after S "
        "seconds\n"
        "                             (also --global-timeout; default 0: never)\n"
        "  --prefetch-hold-ms N       give a prefetched job back to the router after it\n"
        "                             waited N ms for a worker (default 100; 0: never)\n"
        "  --curve-server-key KEY     CURVE: the router's public key (Z85 or its public\n"
        "                             certificate file); off by default\n"
        "  --curve-cert FILE          CURVE: this job manager's key pair (NAME_secret)\n"
        "  --log-level LEVEL          error, warning, info or debug (default info)\n"
        "  -v, --verbose              same as --log-level debug\n"
        "  -C, --config FILE          config file (default $EVENTMQ_CONFIG_FILE, else\n"
        "                             /etc/eventmq.conf), section [jobmanager]\n"
        "  --print-config             print the effective settings, each with where it\n"
        "                             came from, and exit\n"
        "  --help, --version\n"
        "\n"
        "Signals: TERM/INT stop gracefully, HUP reloads the configuration,\n"
        "USR1 logs the status.\n"
        "\n"
        "Exit status: 0 stopped gracefully, 1 runtime failure, 2 bad usage,\n"
        "3 bad flag value, 4 bad config file or environment, 5 inconsistent settings.\n");
}

//  Applies the flags to config, in order; a repeated list flag appends.
static int
s_apply_flags (const s_args_t *args, config_t *config, char *err, size_t errlen)
{
    for (size_t i = 0; i < args->flag_count; i++) {
        const s_flag_t *flag = &args->flags[i];
        bool repeat = false;
        for (size_t k = 0; k < i; k++)
            repeat = repeat || streq (args->flags[k].setting, flag->setting);
        bool list =
            streq (flag->setting, "plugin_dirs") || streq (flag->setting, "exec_allow");
        int rc = repeat && list
                     ? config_append (config, flag->setting, flag->value, err, errlen)
                     : config_set (config, flag->setting, flag->value, err, errlen);
        if (rc)
            return -1;
    }
    return 0;
}

//  Builds the configuration: defaults, file, environment, flags. On
//  failure returns NULL with the reason in err and the exit code in *code.
static config_t *
s_build_config (const s_args_t *args, char *err, size_t errlen, int *code)
{
    config_t *config = config_new ();
    if (!config) {
        snprintf (err, errlen, "out of memory");
        *code = S_EXIT_RUNTIME;
        return NULL;
    }
    if (config_load (config, "jobmanager", args->config_path, err, errlen)) {
        *code = S_EXIT_CONFIG;
        config_destroy (&config);
        return NULL;
    }
    if (s_apply_flags (args, config, err, errlen)) {
        *code = S_EXIT_BAD_VALUE;
        config_destroy (&config);
        return NULL;
    }
    return config;
}

//  Builds validated settings from the configuration. On failure returns
//  NULL with the reason in err and the exit code in *code.
static jobmanager_settings_t *
s_build_settings (const s_args_t *args, char *err, size_t errlen, int *code)
{
    config_t *config = s_build_config (args, err, errlen, code);
    if (!config)
        return NULL;
    jobmanager_settings_t *settings = jobmanager_settings_new (config, err, errlen);
    if (!settings)
        *code = S_EXIT_INVALID;
    config_destroy (&config);
    return settings;
}

static jobmanager_settings_t *
s_reload (void *arg, char *err, size_t errlen)
{
    int code;
    return s_build_settings ((const s_args_t *) arg, err, errlen, &code);
}

static const struct option s_options[] = {
    { "backend-addr", required_argument, NULL, 'B' },
    { "broker-addr", required_argument, NULL, 'B' },
    { "queues", required_argument, NULL, 'Q' },
    { "concurrent-jobs", required_argument, NULL, 'J' },
    { "jobs", required_argument, NULL, 'J' },
    { "max-job-count", required_argument, NULL, 'M' },
    { "plugin-dir", required_argument, NULL, 'P' },
    { "plugin-dirs", required_argument, NULL, 'P' },  // the setting's name
    { "exec-allow", required_argument, NULL, 'E' },
    { "kill-grace-period", required_argument, NULL, 'K' },
    { "heartbeat-interval", required_argument, NULL, 'I' },
    { "heartbeat-timeout", required_argument, NULL, 'T' },
    { "heartbeat-liveness", required_argument, NULL, 'L' },
    { "name", required_argument, NULL, 'n' },
    { "setup", required_argument, NULL, 'S' },
    { "job-entry", required_argument, NULL, 'e' },
    { "job-exit", required_argument, NULL, 'X' },
    { "max-worker-rss-kb", required_argument, NULL, 'R' },
    { "prefetch-hold-ms", required_argument, NULL, 'H' },
    { "default-timeout", required_argument, NULL, 'D' },
    { "global-timeout", required_argument, NULL, 'D' },
    { "curve-server-key", required_argument, NULL, 'k' },
    { "curve-cert", required_argument, NULL, 'c' },
    { "log-level", required_argument, NULL, 'G' },
    { "verbose", no_argument, NULL, 'v' },
    { "config", required_argument, NULL, S_OPT_CONFIG },
    { "help", no_argument, NULL, S_OPT_HELP },
    { "version", no_argument, NULL, S_OPT_VERSION },
    { "print-config", no_argument, NULL, S_OPT_PRINT },
    { NULL, 0, NULL, 0 }
};

//  The setting each flag sets.
static const struct {
    int opt;
    const char *setting;
} s_flag_settings[] = { { 'B', "backend_addr" },
                        { 'J', "concurrent_jobs" },
                        { 'M', "max_job_count" },
                        { 'P', "plugin_dirs" },
                        { 'E', "exec_allow" },
                        { 'K', "kill_grace_period" },
                        { 'I', "heartbeat_interval" },
                        { 'T', "heartbeat_timeout" },
                        { 'L', "heartbeat_liveness" },
                        { 'n', "name" },
                        { 'S', "setup" },
                        { 'e', "job_entry" },
                        { 'X', "job_exit" },
                        { 'R', "max_worker_rss_kb" },
                        { 'H', "prefetch_hold_ms" },
                        { 'D', "default_timeout" },
                        { 'G', "log_level" },
                        { 'k', "curve_server_key" },
                        { 'c', "curve_cert" } };

//  Keeps a flag's value for its setting (args->flags has room for argc + 1).
static void
s_add_flag (s_args_t *args, const char *setting, const char *value)
{
    args->flags[args->flag_count].setting = setting;
    args->flags[args->flag_count].value = strdup (value);
    args->flag_count++;
}

//  -Q/--queues takes every word up to the next option, as EventMQ's does
//  (-Q heavy default): they are joined with spaces for the queues setting.
static int
s_add_queues (s_args_t *args, int argc, char *argv[])
{
    size_t size = strlen (optarg) + 1;
    int last = optind;
    while (last < argc && argv[last][0] != '-')
        size += strlen (argv[last++]) + 1;
    char *joined = malloc (size);
    if (!joined) {
        fprintf (stderr, "emq-jobmanager: out of memory\n");
        return -1;
    }
    strcpy (joined, optarg);
    for (; optind < last; optind++) {
        strcat (joined, " ");
        strcat (joined, argv[optind]);
    }
    s_add_flag (args, "queues", joined);
    free (joined);
    return 0;
}

static void
s_args_free (s_args_t *args)
{
    for (size_t i = 0; i < args->flag_count; i++)
        free (args->flags[i].value);
    free (args->flags);
    args->flags = NULL;
}

//  Parses the command line into args. Returns -1 to go on, or the exit code
//  (after --help, --version, or a message on stderr).
static int
s_parse_args (int argc, char *argv[], s_args_t *args)
{
    args->flags = calloc ((size_t) argc + 1, sizeof (s_flag_t));
    if (!args->flags) {
        fprintf (stderr, "emq-jobmanager: out of memory\n");
        return S_EXIT_RUNTIME;
    }
    bool verbose = false;
    int opt;
    opterr = 0;
    while ((opt = getopt_long (argc, argv, S_SHORT_OPTIONS, s_options, NULL)) != -1) {
        switch (opt) {
            case S_OPT_HELP:
                s_usage (stdout);
                return S_EXIT_OK;
            case S_OPT_PRINT:
                args->print = true;
                break;
            case S_OPT_VERSION:
                program_print_version ("emq-jobmanager", NULL);
                return S_EXIT_OK;
            case S_OPT_CONFIG:
                args->config_path = optarg;
                break;
            case 'v':
                verbose = true;
                break;
            case 'Q':
                if (s_add_queues (args, argc, argv))
                    return S_EXIT_RUNTIME;
                break;
            case ':':
                fprintf (stderr,
                         "emq-jobmanager: option '%s' needs a value (see --help)\n",
                         argv[optind - 1]);
                return S_EXIT_USAGE;
            case '?':
                fprintf (stderr, "emq-jobmanager: unknown option '%s' (see --help)\n",
                         argv[optind - 1]);
                return S_EXIT_USAGE;
            default:
                for (size_t i = 0; i < sizeof s_flag_settings / sizeof s_flag_settings[0];
                     i++)
                    if (s_flag_settings[i].opt == opt)
                        s_add_flag (args, s_flag_settings[i].setting, optarg);
        }
    }
    if (optind < argc) {
        fprintf (stderr, "emq-jobmanager: unexpected argument '%s' (see --help)\n",
                 argv[optind]);
        return S_EXIT_USAGE;
    }
    if (verbose)
        s_add_flag (args, "log_level", "debug");
    return -1;
}

int
main (int argc, char *argv[], char *envp[])
{
    //  libbsd's setproctitle needs argv before anyone else looks at it.
    worker_title_init (argc, argv, envp);
    //  Signals are ours (jobmanager_run), not czmq's. Until the loop
    //  catches SIGHUP, one must not stop us (it would be a reload).
    zsys_handler_set (NULL);
    signal (SIGHUP, SIG_IGN);

    s_args_t args = { 0 };
    int code = s_parse_args (argc, argv, &args);
    if (code >= 0) {
        s_args_free (&args);
        return code;
    }
    char err[1024];
    if (args.print) {
        config_t *config = s_build_config (&args, err, sizeof err, &code);
        if (config) {
            config_print (config, stdout);
            code = S_EXIT_OK;
        }
        else
            fprintf (stderr, "emq-jobmanager: %s\n", err);
        config_destroy (&config);
        s_args_free (&args);
        return code;
    }
    jobmanager_settings_t *settings = s_build_settings (&args, err, sizeof err, &code);
    if (!settings) {
        fprintf (stderr, "emq-jobmanager: %s\n", err);
        s_args_free (&args);
        return code;
    }
    log_init ("emq-jobmanager", settings->log_level);
    jobmanager_t *jobmanager = jobmanager_new (&settings, err, sizeof err);
    if (!jobmanager) {
        fprintf (stderr, "emq-jobmanager: %s\n", err);
        s_args_free (&args);
        return S_EXIT_RUNTIME;
    }
    jobmanager_set_reload (jobmanager, s_reload, &args);
    int rc = jobmanager_run (jobmanager);
    jobmanager_destroy (&jobmanager);
    s_args_free (&args);
    return rc == 0 ? S_EXIT_OK : S_EXIT_RUNTIME;
}
