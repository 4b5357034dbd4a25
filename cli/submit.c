/*  submit — `emq-cli submit`: build an exec or run payload, submit it, and
    with --wait print its value. See cli.h for the exit codes.
*/
#include "cli.h"
#include "numparse.h"
#include "emqp.h"
#include "json.h"
#include "emq/client.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Largest --stdin accepted; the router refuses bigger payloads anyway.
#define S_STDIN_MAX (64 * 1024 * 1024)

typedef struct {
    emq_submit_opts_t opts;
    bool wait;
    int wait_timeout_ms;                 // -1: wait forever
    char headers[EMQP_HEADERS_MAX + 1];  // --header values, comma-joined
    void *payload;                       // owned
    size_t payload_size;
} s_submit_t;

//  Reads a whole file ("-" = standard input) into a malloc'd buffer.
static int
s_read_file (const char *path, char **data_p, size_t *size_p)
{
    FILE *file = streq (path, "-") ? stdin : fopen (path, "rb");
    if (!file)
        return cli_usage_error ("--stdin: cannot open '%s': %s", path, strerror (errno));
    size_t size = 0, capacity = 65536;
    char *data = malloc (capacity);
    int rc = 0;
    while (data) {
        if (size == capacity) {
            if (capacity >= S_STDIN_MAX) {
                rc = cli_usage_error ("--stdin: '%s' is larger than %d bytes", path,
                                      S_STDIN_MAX);
                break;
            }
            char *bigger = realloc (data, capacity * 2);
            if (!bigger)
                break;
            data = bigger;
            capacity *= 2;
        }
        size_t n = fread (data + size, 1, capacity - size, file);
        size += n;
        if (n == 0) {
            if (ferror (file))
                rc = cli_usage_error ("--stdin: cannot read '%s': %s", path,
                                      strerror (errno));
            break;
        }
    }
    if (!data)
        rc = cli_fail (CLI_EXIT_FAILED, "out of memory");
    if (file != stdin)
        fclose (file);
    if (rc) {
        free (data);
        return rc;
    }
    *data_p = data;
    *size_p = size;
    return 0;
}

//  exec [--stdin FILE|-] [--env NAME=VALUE]... [--cwd DIR] [--] ARGV...
static int
s_parse_exec (cli_t *cli, s_submit_t *submit, int argc, char **argv)
{
    static const struct option options[] = { { "stdin", required_argument, NULL, 's' },
                                             { "env", required_argument, NULL, 'e' },
                                             { "cwd", required_argument, NULL, 'c' },
                                             CLI_GLOBAL_OPTIONS };
    const char **env = calloc ((size_t) argc + 1, sizeof (char *));
    size_t envc = 0;
    char *stdin_data = NULL;
    size_t stdin_size = 0;
    const char *cwd = NULL;
    int rc = env ? 0 : cli_fail (CLI_EXIT_FAILED, "out of memory");
    int opt;
    optind = 0;
    while (!rc && (opt = getopt_long (argc, argv, "+:", options, NULL)) != -1) {
        switch (opt) {
            case 's':
                if (stdin_data)
                    rc = cli_usage_error ("exec: --stdin given twice");
                else
                    rc = s_read_file (optarg, &stdin_data, &stdin_size);
                break;
            case 'e': {
                const char *eq = strchr (optarg, '=');
                if (!eq || eq == optarg)
                    rc = cli_usage_error ("exec: --env '%s' is not NAME=VALUE", optarg);
                else
                    env[envc++] = optarg;
                break;
            }
            case 'c':
                if (!*optarg)
                    rc = cli_usage_error ("exec: --cwd is empty");
                cwd = optarg;
                break;
            default:
                rc = cli_other_option (cli, "exec", opt, optarg, argv);
                if (rc >= 100)
                    rc -= 100;  // exit now: --help, --version, bad value
        }
    }
    if (!rc && optind >= argc)
        rc = cli_usage_error ("exec: no command given (exec [OPTIONS] -- ARGV...)");
    if (!rc && !*argv[optind])
        rc = cli_usage_error ("exec: the command name is empty");
    if (!rc) {
        int erc = emq_payload_exec ((const char *const *) argv + optind,
                                    (size_t) (argc - optind), stdin_data, stdin_size, env,
                                    envc, cwd, &submit->payload, &submit->payload_size);
        if (erc)
            rc = cli_usage_error ("exec: cannot build the job: %s", emq_strerror (erc));
    }
    free (stdin_data);
    free (env);
    return rc;
}

//  run LIBRARY FUNCTION [JSON_ARGS]
static int
s_parse_run (s_submit_t *submit, int argc, char **argv)
{
    if (argc < 3 || argc > 4)
        return cli_usage_error ("run: expected LIBRARY FUNCTION [JSON_ARGS]");
    const char *library = argv[1], *function = argv[2];
    if (!*library || strchr (library, '/'))
        return cli_usage_error ("run: library '%s' must be a file name found in the job "
                                "manager's plugin directories, not a path",
                                library);
    if (!*function)
        return cli_usage_error ("run: the function name is empty");
    msgpack_sbuffer args;
    msgpack_sbuffer_init (&args);
    if (argc == 4) {
        char err[256];
        if (json_to_msgpack (argv[3], &args, err, sizeof err)) {
            msgpack_sbuffer_destroy (&args);
            return cli_usage_error ("run: JSON_ARGS: %s", err);
        }
    }
    int erc = emq_payload_run (library, function, args.size ? args.data : NULL, args.size,
                               &submit->payload, &submit->payload_size);
    msgpack_sbuffer_destroy (&args);
    if (erc)
        return cli_usage_error ("run: cannot build the job: %s", emq_strerror (erc));
    return 0;
}

static int
s_run (cli_t *cli, s_submit_t *submit)
{
    emq_client_t *client = emq_client_new (cli->frontend);
    if (!client)
        return cli_usage_error ("cannot connect to '%s': not a valid endpoint",
                                cli->frontend);
    emq_client_set_connect_timeout (client, cli->connect_timeout_ms);
    char msgid[37];
    int rc = emq_submit (client, &submit->opts, submit->payload, submit->payload_size,
                         msgid, cli->connect_timeout_ms);
    if (rc) {
        int code = cli_exit_for (rc);
        cli_fail (code, "%s: %s",
                  rc == EMQ_ERR_REJECTED ? "rejected by router" : emq_strerror (rc),
                  emq_client_last_error (client));
        emq_client_destroy (&client);
        return code;
    }
    if (!submit->wait) {
        printf ("%s\n", msgid);
        emq_client_destroy (&client);
        return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
    }
    emq_event_t event;
    rc = emq_wait_result (client, msgid, submit->wait_timeout_ms, &event);
    int code =
        cli_report_outcome (client, msgid, rc, &event, false, submit->wait_timeout_ms);
    emq_client_destroy (&client);
    return code;
}

int
cli_submit (cli_t *cli, int argc, char **argv)
{
    static const struct option options[] = { { "queue", required_argument, NULL, 'q' },
                                             { "wait", no_argument, NULL, 'w' },
                                             { "retries", required_argument, NULL, 'r' },
                                             { "timeout", required_argument, NULL, 't' },
                                             { "wait-timeout", required_argument, NULL,
                                               'W' },
                                             { "header", required_argument, NULL, 'H' },
                                             { "delay", required_argument, NULL, 'd' },
                                             { "eta", required_argument, NULL, 'e' },
                                             { "guarantee", no_argument, NULL, 'g' },
                                             { "msgid", required_argument, NULL, 'm' },
                                             CLI_GLOBAL_OPTIONS };
    s_submit_t submit = { .wait_timeout_ms = -1 };
    submit.opts.queue = NULL;  // no --queue: default_queue_name
    uint64_t number;
    int opt, rc = 0;
    while (!rc && (opt = getopt_long (argc, argv, "+:", options, NULL)) != -1) {
        switch (opt) {
            case 'q':
                if (!*optarg || strlen (optarg) > EMQP_QUEUE_MAX)
                    rc = cli_usage_error ("--queue: '%s' must be 1..%d bytes", optarg,
                                          EMQP_QUEUE_MAX);
                submit.opts.queue = optarg;
                break;
            case 'w':
                submit.wait = true;
                break;
            case 'm': {
                //  Checked here for a clear message; libemq checks it too.
                bool printable = *optarg && strlen (optarg) <= 36;
                for (const char *p = optarg; printable && *p; p++)
                    printable = *p > ' ' && *p < 0x7f;
                if (!printable)
                    rc = cli_usage_error ("--msgid: '%.60s' must be 1..36 printable "
                                          "bytes without spaces",
                                          optarg);
                submit.opts.msgid = optarg;
                break;
            }
            case 'r':
                if (numparse_uint (optarg, UINT32_MAX, &number))
                    rc = cli_usage_error ("--retries: '%s' is not a number in 0..%u",
                                          optarg, UINT32_MAX);
                submit.opts.retries = (uint32_t) number;
                break;
            case 't':
                if (numparse_uint (optarg, UINT32_MAX, &number))
                    rc = cli_usage_error ("--timeout: '%s' is not a whole number of "
                                          "seconds (0 = none)",
                                          optarg);
                submit.opts.timeout_s = (uint32_t) number;
                break;
            case 'W':
                if (cli_parse_seconds (optarg, &submit.wait_timeout_ms))
                    rc = cli_usage_error (
                        "--wait-timeout: '%s' is not a number of seconds", optarg);
                break;
            case 'd':
                if (cli_parse_duration (optarg, &submit.opts.delay_s))
                    rc = cli_usage_error (
                        "--delay: '%s' is not a duration (whole seconds, "
                        "or with s, m, h or d: 90, 15m, 2h)",
                        optarg);
                break;
            case 'e':
                if (numparse_uint (optarg, UINT32_MAX, &number) || number == 0)
                    rc = cli_usage_error ("--eta: '%s' is not a unix time (seconds since "
                                          "1970, 1..%u)",
                                          optarg, UINT32_MAX);
                submit.opts.eta = (uint32_t) number;
                break;
            case 'g':
                optarg = "guarantee";
                //  the same as --header guarantee
                //  fall through
            case 'H': {
                size_t used = strlen (submit.headers);
                if (!*optarg || strchr (optarg, ','))
                    rc = cli_usage_error ("--header: '%s' must be one non-empty header",
                                          optarg);
                else if (used + 1 + strlen (optarg) > EMQP_HEADERS_MAX)
                    rc = cli_usage_error ("--header: headers longer than %d bytes",
                                          EMQP_HEADERS_MAX);
                else
                    snprintf (submit.headers + used, sizeof submit.headers - used, "%s%s",
                              used ? "," : "", optarg);
                break;
            }
            default:
                rc = cli_other_option (cli, "submit", opt, optarg, argv);
                if (rc >= 100)
                    return rc - 100;
        }
    }
    if (rc)
        return rc;
    if (submit.opts.delay_s && submit.opts.eta)
        return cli_usage_error ("submit: give --delay or --eta, not both");
    if (optind >= argc)
        return cli_usage_error ("submit: expected 'exec' or 'run'");
    submit.opts.reply = submit.wait;
    submit.opts.extra_headers = submit.headers;
    const char *kind = argv[optind];
    if (streq (kind, "exec"))
        rc = s_parse_exec (cli, &submit, argc - optind, argv + optind);
    else if (streq (kind, "run"))
        rc = s_parse_run (&submit, argc - optind, argv + optind);
    else
        rc = cli_usage_error ("submit: expected 'exec' or 'run', not '%s'", kind);
    if (!rc)
        rc = cli_setup (cli);
    if (!rc && !submit.opts.queue)
        submit.opts.queue = cli->default_queue;
    if (!rc)
        rc = s_run (cli, &submit);
    free (submit.payload);
    return rc;
}
