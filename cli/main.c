/*  emq-cli — submit jobs to an emq router and administer it.

    This file only parses the global options, picks the subcommand and
    holds the helpers every subcommand shares (configuration, addresses,
    error reporting, exit codes). See cli.h and emq-cli(1).
*/
#include "cli.h"
#include "config.h"
#include "log.h"
#include "numparse.h"
#include "program.h"
#include "emq/client.h"

#include <czmq.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *s_usage =
    "usage: emq-cli [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "commands:\n"
    "  submit [OPTIONS] exec [--stdin FILE|-] [--env NAME=VALUE]... [--cwd DIR] -- "
    "ARGV...\n"
    "  submit [OPTIONS] run LIBRARY FUNCTION [JSON_ARGS]\n"
    "  submit [OPTIONS] python PATH CALLABLE [ARGS [KWARGS [CLASS_ARGS "
    "[CLASS_KWARGS]]]]\n"
    "        submit a job; prints its msgid once the router has it, or with\n"
    "        --wait its value: raw bytes for an exec job's stdout, JSON otherwise\n"
    "        --queue Q          queue to submit to (default: default)\n"
    "        --wait             wait for the job's result and print it\n"
    "        --retries N        retry a failed job up to N times (retry-count:N)\n"
    "        --timeout S        kill the job after S seconds (timeout:S)\n"
    "        --wait-timeout S   with --wait: give up after S seconds (default: never)\n"
    "        --header H         add a raw eMQP header (repeatable)\n"
    "        --delay S          run the job S seconds from now (S: 90, 90s, 15m, 2h, "
    "1d)\n"
    "        --eta UNIX_TS      run the job at that time (seconds since 1970, UTC)\n"
    "        --guarantee        ask the router to sync the job to disk before its ACK\n"
    "        --limit NAME=N     ask for a lower resource limit than the job manager's:\n"
    "                           as=BYTES (k/M/G), nproc=N, nofile=N, cpu=S (repeatable)\n"
    "        --msgid ID         submit under this id (1..36 printable bytes): a\n"
    "                           second submit of the same id is not run twice\n"
    "  result MSGID [--wait] [--wait-timeout S] [--json]\n"
    "        the outcome of a job (any client's, while the router keeps it),\n"
    "        shown as submit --wait shows it; without --wait a job that has not\n"
    "        ended exits 9 (with --json: {\"status\":\"pending\"})\n"
    "  cancel MSGID          cancel a waiting, scheduled or running job\n"
    "  dead [--json]         jobs that failed after all their retries\n"
    "  dead retry MSGID|--all    queue dead jobs again (retries restored)\n"
    "  dead delete MSGID     delete one dead job\n"
    "  dead purge            delete every dead job\n"
    "  fence [--json]        schedulers' fencing tokens held, per scope\n"
    "  fence reset SCOPE|--all   forget a scope's token (a wedged scheduler fires\n"
    "                        again); SCOPE as fence shows it\n"
    "  status [--json]       queues (waiting, in flight, processed, latency), job\n"
    "                        managers (processed), storage (dead, scheduled jobs);\n"
    "                        --json: the router's JSON\n"
    "  workers [--json]      connected job managers: queues, free slots, last\n"
    "                        heartbeat, jobs in flight, their own statistics\n"
    "  schedulers [--json]   connected schedulers\n"
    "  schedule --name NAME (--cron EXPR | --every N[s|m|h]) [--nohaste] [--runs N]\n"
    "           [--queue Q] [--misfire skip|once] [--timezone TZ] [--header H]...\n"
    "           run LIBRARY FUNCTION [JSON_ARGS] | exec -- ARGV...\n"
    "        add (or replace) a periodic job kept by emq-scheduler\n"
    "  schedules [--json]    schedules: spec, next fire (local and UTC), last fire,\n"
    "                        last outcome, runs left; and which scheduler leads\n"
    "  unschedule NAME [--kill-running]   remove a schedule (and cancel its running "
    "job)\n"
    "  jobs [--queue Q] [--state S] [--offset N] [--limit N] [--json]\n"
    "        jobs in state S: waiting (default), scheduled, retrying, running\n"
    "        or dead; a page of --limit (100) from --offset (0)\n"
    "  job MSGID [--json]    one job: state, queue, headers, payload, attempts,\n"
    "                        outcome and history\n"
    "  queue pause|resume|purge NAME [--json]\n"
    "        pause: the queue takes jobs but dispatches none (kept across a\n"
    "        restart); resume; purge: cancel its waiting jobs\n"
    "  jobmanager quiet|resume NAME [--json]\n"
    "        quiet: the job manager (its --name) gets no new jobs and finishes\n"
    "        the running ones (before a deploy); resume: it gets jobs again\n"
    "  events [--queue Q]... [--kind K]... [--json] [--count N] [--for S]\n"
    "           [--events-addr ADDR]\n"
    "        follow the router's event stream (its events_listen_addr): jobs\n"
    "        queued, scheduled, started, done, failed, retried, dead, cancelled,\n"
    "        requeued, returned; job managers joined, left. K: one of those;\n"
    "        ADDR default: $EMQ_EVENTS_ADDR, then events_addr (tcp://127.0.0.1:47294)\n"
    "  top [--interval S] [--once]\n"
    "        a live view: per queue waiting, running, scheduled, retrying, dead,\n"
    "        done/s, failed/s, wait p50/p95; job managers and their workers\n"
    "  disconnect            ask the router to shut down\n"
    "  keygen [--role R]... NAME   write a CURVE key pair: NAME (public\n"
    "                        certificate) and NAME_secret (keep it private);\n"
    "                        R: client (default), scheduler, jobmanager, admin\n"
    "  demo [--jobs N] [--queue Q] [--timeout S]\n"
    "        submit N (default 300) jobs, half exec /bin/echo, half run\n"
    "        libemq_examples.so upper, all in flight at once; show progress,\n"
    "        a sample of results and the throughput\n"
    "  shell                 EventMQ's interactive shell, with history (also: no\n"
    "                        command on a terminal): connect [ADDR], disconnect,\n"
    "                        status, show_workers, show_schedulers, shutdown,\n"
    "                        send_cmd CMD, quit, and the commands above\n"
    "  connect [ADDR] | show_workers | show_schedulers | shutdown | send_cmd CMD\n"
    "                        EventMQ's shell commands, one-shot (admin socket)\n"
    "\n"
    "global options (also accepted after the command; -a only before it):\n"
    "  -a ADDR                EventMQ's: the admin socket (as --admin-addr); in\n"
    "                          the shell --addr means the same, as in EventMQ\n"
    "  --addr ADDR             router frontend (default: $EMQ_BROKER_ADDR, then\n"
    "                          frontend_addr from the configuration, then\n"
    "                          " EMQ_DEFAULT_FRONTEND ")\n"
    "                          (also --frontend-addr)\n"
    "  --admin-addr ADDR       router admin socket (default: $EMQ_ADMIN_ADDR,\n"
    "                          then administrative_addr, then " EMQ_DEFAULT_ADMIN ";\n"
    "                          also --administrative-addr)\n"
    "  --connect-timeout S     how long to wait for the router to answer (default 5)\n"
    "  --config FILE           configuration file ([global] and [cli] sections;\n"
    "                          default: $EVENTMQ_CONFIG_FILE or /etc/eventmq.conf)\n"
    "  --verbose               log libemq's debug messages on stderr\n"
    "  --help, --version\n"
    "\n"
    "exit codes:\n"
    "  0 ok            1 job failed          2 usage error     3 router unreachable\n"
    "  4 rejected by router                  5 job timed out (its own --timeout)\n"
    "  6 wait timed out (--wait-timeout)     7 job crashed (its worker died)\n"
    "  8 no such job or schedule (result, cancel, dead retry, unschedule)\n"
    "  9 not finished yet (result without --wait)\n";

void
cli_print_command_usage (FILE *stream, const char *command)
{
    //  In the commands section, a line with two spaces and a word starts a
    //  command; the indented lines after it belong to it.
    const char *section = strstr (s_usage, "commands:\n");
    const char *end = strstr (s_usage, "\nglobal options");
    size_t len = strlen (command);
    bool mine = false, printed = false;
    for (const char *line = section ? strchr (section, '\n') + 1 : NULL;
         line && line < end;) {
        const char *next = strchr (line, '\n');
        if (!next)
            break;
        if (line[0] == ' ' && line[1] == ' ' && line[2] != ' ')
            mine = strncmp (line + 2, command, len) == 0
                   && (line[2 + len] == ' ' || line[2 + len] == '\n');
        if (mine) {
            if (!printed)
                fprintf (stream, "usage: emq-cli %s ...\n", command);
            fwrite (line, 1, (size_t) (next - line + 1), stream);
            printed = true;
        }
        line = next + 1;
    }
    if (!printed) {
        cli_print_usage (stream);
        return;
    }
    fprintf (stream, "\nglobal options and exit codes: emq-cli --help\n");
}

void
cli_print_usage (FILE *stream)
{
    fputs (s_usage, stream);
}

int
cli_usage_error (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    program_verror ("emq-cli", CLI_EXIT_USAGE, format, args);
    va_end (args);
    fputs ("Try 'emq-cli --help'.\n", stderr);
    return CLI_EXIT_USAGE;
}

int
cli_fail (int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    program_verror ("emq-cli", code, format, args);
    va_end (args);
    return code;
}

int
cli_exit_for (int emq_code)
{
    switch (emq_code) {
        case EMQ_OK:
            return CLI_EXIT_OK;
        case EMQ_ERR_INVALID:
            return CLI_EXIT_USAGE;
        case EMQ_ERR_UNREACHABLE:
            return CLI_EXIT_UNREACHABLE;
        case EMQ_ERR_REJECTED:
            return CLI_EXIT_REJECTED;
        case EMQ_ERR_JOB_TIMEOUT:
            return CLI_EXIT_JOB_TIMEOUT;
        case EMQ_ERR_TIMEOUT:
            return CLI_EXIT_WAIT_TIMEOUT;
        case EMQ_ERR_NOT_FOUND:
            return CLI_EXIT_NOT_FOUND;
        default:
            return CLI_EXIT_FAILED;
    }
}

int
cli_parse_seconds (const char *text, int *ms)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    double seconds = strtod (text, &end);
    if (errno || *end || !isfinite (seconds) || seconds < 0 || seconds > 2000000.0)
        return -1;
    *ms = (int) llround (seconds * 1000.0);
    return 0;
}

int
cli_parse_duration (const char *text, uint32_t *seconds)
{
    if (!text || !*text)
        return -1;
    size_t len = strlen (text);
    uint64_t unit = 1;
    switch (text[len - 1]) {
        case 's':
            unit = 1;
            len--;
            break;
        case 'm':
            unit = 60;
            len--;
            break;
        case 'h':
            unit = 3600;
            len--;
            break;
        case 'd':
            unit = 86400;
            len--;
            break;
        default:
            break;
    }
    uint64_t value;
    if (numparse_uint_n (text, len, UINT32_MAX / unit, &value))
        return -1;
    *seconds = (uint32_t) (value * unit);
    return 0;
}

int
cli_global_option (cli_t *self, int opt, const char *arg)
{
    switch (opt) {
        case CLI_OPT_ADDR:
            self->frontend_flag = arg;
            return 0;
        case CLI_OPT_ADMIN_ADDR:
            self->admin_flag = arg;
            return 0;
        case CLI_OPT_CONFIG:
            self->config_path = arg;
            return 0;
        case CLI_OPT_CONNECT_TIMEOUT:
            if (cli_parse_seconds (arg, &self->connect_timeout_ms)
                || self->connect_timeout_ms == 0)
                return 100
                       + cli_usage_error ("--connect-timeout: '%s' is not a number of "
                                          "seconds above 0",
                                          arg);
            return 0;
        case CLI_OPT_VERBOSE:
            self->verbose = true;
            log_set_level (LOG_LEVEL_DEBUG);
            return 0;
        case CLI_OPT_HELP:
            cli_print_usage (stdout);
            return 100 + CLI_EXIT_OK;
        case CLI_OPT_VERSION:
            program_print_version ("emq-cli", NULL);
            return 100 + CLI_EXIT_OK;
        default:
            return -1;
    }
}

int
cli_other_option (cli_t *self, const char *command, int opt, const char *arg, char **argv)
{
    if (opt == ':')
        return cli_usage_error ("%s: option '%s' needs a value", command,
                                argv[optind - 1]);
    if (opt == '?')
        return cli_usage_error ("%s: unknown option '%s'", command, argv[optind - 1]);
    if (opt == CLI_OPT_HELP) {
        //  exec and run are parts of submit's command line.
        cli_print_command_usage (stdout, streq (command, "exec") || streq (command, "run")
                                             ? "submit"
                                             : command);
        return 100 + CLI_EXIT_OK;
    }
    int rc = cli_global_option (self, opt, arg);
    if (rc == -1)
        return cli_usage_error ("%s: unexpected option '%s'", command, argv[optind - 1]);
    return rc;
}

int
cli_setup (cli_t *self)
{
    config_t *config = config_new ();
    if (!config)
        return cli_fail (CLI_EXIT_FAILED, "out of memory");
    char err[512];
    if (config_load (config, "cli", self->config_path, err, sizeof err)) {
        config_destroy (&config);
        return cli_fail (CLI_EXIT_USAGE, "configuration: %s", err);
    }
    const char *frontend = self->frontend_flag;
    if (!frontend || !*frontend)
        frontend = getenv ("EMQ_BROKER_ADDR");
    if (!frontend || !*frontend)
        frontend = config_str (config, "frontend_addr");
    const char *admin = self->admin_flag;
    if (!admin || !*admin)
        admin = getenv ("EMQ_ADMIN_ADDR");
    if (!admin || !*admin)
        admin = config_str (config, "administrative_addr");
    free (self->frontend);
    free (self->admin);
    free (self->default_queue);
    self->frontend = strdup (frontend && *frontend ? frontend : EMQ_DEFAULT_FRONTEND);
    self->admin = strdup (admin && *admin ? admin : EMQ_DEFAULT_ADMIN);
    self->default_queue = strdup (config_str (config, "default_queue_name"));
    const char *events = getenv ("EMQ_EVENTS_ADDR");
    if (!events || !*events)
        events = config_str (config, "events_addr");
    free (self->events);
    self->events = strdup (events);
    //  CURVE: libemq's environment first, as for the addresses, then the
    //  configuration.
    const char *curve_key = getenv ("EMQ_CURVE_SERVER_KEY");
    const char *curve_cert = getenv ("EMQ_CURVE_CERT");
    if (!curve_key || !*curve_key) {
        curve_key = config_str (config, "curve_server_key");
        curve_cert = config_str (config, "curve_cert");
    }
    if (curve_key && *curve_key
        && emq_set_curve (curve_key, curve_cert, err, sizeof err)) {
        config_destroy (&config);
        return cli_fail (CLI_EXIT_USAGE, "CURVE: %s", err);
    }
    free (self->curve_key);
    free (self->curve_cert);
    self->curve_key = curve_key && *curve_key ? strdup (curve_key) : NULL;
    self->curve_cert =
        curve_key && *curve_key ? strdup (curve_cert ? curve_cert : "") : NULL;
    config_destroy (&config);
    if (!self->frontend || !self->admin || !self->default_queue || !self->events)
        return cli_fail (CLI_EXIT_FAILED, "out of memory");
    return 0;
}

typedef struct {
    const char *name;
    int (*run) (cli_t *self, int argc, char **argv);
} s_command_t;

static const s_command_t s_commands[] = {
    { "submit", cli_submit },
    { "status", cli_status },
    { "workers", cli_workers },
    { "schedulers", cli_schedulers },
    { "disconnect", cli_disconnect },
    { "result", cli_result },
    { "cancel", cli_cancel },
    { "dead", cli_dead },
    { "fence", cli_fence },
    { "demo", cli_demo },
    { "schedule", cli_schedule },
    { "schedules", cli_schedules },
    { "unschedule", cli_unschedule },
    { "jobs", cli_jobs },
    { "job", cli_job },
    { "queue", cli_queue },
    { "jobmanager", cli_jobmanager },
    { "keygen", cli_keygen },
    { "shell", cli_shell },
    { "events", cli_events },
    { "top", cli_top },
};

int
cli_run_command (cli_t *self, int argc, char **argv)
{
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        if (streq (argv[0], s_commands[i].name)) {
            optind = 0;  // getopt_long starts afresh on the subcommand
            return s_commands[i].run (self, argc, argv);
        }
    if (cli_is_eventmq_command (argv[0])) {
        optind = 0;
        return cli_eventmq (self, argc, argv);
    }
    return -2;
}

int
main (int argc, char **argv)
{
    //  A person's Ctrl-C should stop emq-cli at once: keep czmq from
    //  installing its own SIGINT handler, and keep stdout for job values.
    zsys_handler_set (NULL);
    zsys_set_logstream (stderr);
    log_set_fd (STDERR_FILENO);  // stdout is for results
    log_init ("emq-cli", LOG_LEVEL_WARNING);

    cli_t cli = { .connect_timeout_ms = EMQ_CONNECT_TIMEOUT_MS };
    static const struct option options[] = { CLI_GLOBAL_OPTIONS };
    int opt;
    opterr = 0;
    //  -a ADDR is EventMQ's: the admin socket its commands talk to.
    while ((opt = getopt_long (argc, argv, "+:a:", options, NULL)) != -1) {
        if (opt == '?')
            return cli_usage_error ("unknown option '%s'", argv[optind - 1]);
        if (opt == ':')
            return cli_usage_error ("option '%s' needs a value", argv[optind - 1]);
        if (opt == 'a') {
            cli.admin_flag = optarg;
            continue;
        }
        int rc = cli_global_option (&cli, opt, optarg);
        if (rc >= 100)
            return rc - 100;
    }
    //  No command on a terminal: EventMQ's shell.
    char *shell_argv[] = { "shell", NULL };
    if (optind >= argc && !isatty (STDIN_FILENO))
        return cli_usage_error ("no command given (on a terminal: the shell)");
    int sub_argc = optind >= argc ? 1 : argc - optind;
    char **sub_argv = optind >= argc ? shell_argv : argv + optind;
    int rc = cli_run_command (&cli, sub_argc, sub_argv);
    if (rc == -2)
        rc = cli_usage_error ("unknown command '%s'", sub_argv[0]);
    free (cli.frontend);
    free (cli.default_queue);
    free (cli.admin);
    free (cli.events);
    free (cli.curve_key);
    free (cli.curve_cert);
    zsys_shutdown ();
    return rc;
}
