/*  shell — EventMQ's emq-cli: an interactive shell (`emq-cli` on a
    terminal, or `emq-cli shell`) with EventMQ's commands, and the same
    commands one-shot (`emq-cli show_workers`).

    EventMQ's commands talk to one "connected" component, the router's
    admin socket: connect [ADDR], disconnect, status, show_workers,
    show_schedulers, shutdown, send_cmd CMD, quit. Each admin command goes
    through libemq's emq_admin (one request, one reply), so "connected"
    only means "the address the next command goes to". Inside the shell
    emq's own subcommands run too (submit, result, dead, ...), with the
    connected address as their admin socket. Line editing and history come
    from libedit; a line is split into words as a shell would (wordexp,
    without command substitution), so JSON arguments can be quoted.
*/
#include "cli.h"
#include "emq/client.h"

#include <czmq.h>
#include <ctype.h>
#include <editline/readline.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wordexp.h>

typedef struct {
    cli_t *cli;
    char *addr;  // the connected admin socket, or NULL (owned)
} s_shell_t;

//  EventMQ's commands and the admin command each sends.
static const struct {
    const char *name;
    const char *command;  // NULL: not an admin command
    const char *help;
} s_eventmq[] = {
    { "connect", NULL, "connect [ADDR]   talk to the router's admin socket at ADDR" },
    { "disconnect", NULL, "disconnect       forget the connected address" },
    { "status", "STATUS", "status           the router's status (JSON)" },
    { "show_workers", "ROUTER_SHOW_WORKERS",
      "show_workers     connected job managers (JSON)" },
    { "show_schedulers", "ROUTER_SHOW_SCHEDULERS",
      "show_schedulers  connected schedulers (JSON)" },
    { "shutdown", "DISCONNECT", "shutdown         ask the router to shut down" },
    { "send_cmd", NULL,
      "send_cmd CMD     send an admin command (STATUS, ROUTER_SHOW_WORKERS,\n"
      "                 ROUTER_SHOW_SCHEDULERS, DEAD_LIST, DEAD_PURGE, DISCONNECT)" },
    { "quit", NULL, "quit             leave the shell (also exit, Ctrl-D)" },
};
#define S_EVENTMQ_COUNT (sizeof s_eventmq / sizeof s_eventmq[0])

bool
cli_is_eventmq_command (const char *name)
{
    for (size_t i = 0; i < S_EVENTMQ_COUNT; i++)
        if (streq (name, s_eventmq[i].name))
            return true;
    return false;
}

//  Sends command to addr and prints the answer: JSON pretty-printed (as
//  EventMQ's shell does), else as it came. Returns an exit code.
static int
s_admin (cli_t *cli, const char *addr, const char *command)
{
    if (!addr)
        return cli_fail (CLI_EXIT_USAGE, "not connected (connect ADDR first)");
    char *reply = NULL;
    int rc = emq_admin (addr, command, cli->connect_timeout_ms, &reply);
    if (rc) {
        int code = rc == EMQ_ERR_INVALID ? CLI_EXIT_USAGE : cli_exit_for (rc);
        cli_fail (code, "%s: %s", command, reply ? reply : emq_strerror (rc));
        free (reply);
        return code;
    }
    if (streq (command, "DISCONNECT"))
        printf ("router at %s is shutting down\n", addr);
    else {
        json_t *root = json_loads (reply, JSON_DECODE_ANY, NULL);
        char *pretty = root ? json_dumps (root, JSON_INDENT (4) | JSON_SORT_KEYS) : NULL;
        printf ("%s\n", pretty ? pretty : reply);
        free (pretty);
        json_decref (root);
    }
    free (reply);
    return fflush (stdout) ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

//  send_cmd's argument: an admin command without arguments, any case.
static int
s_send_cmd (cli_t *cli, const char *addr, int argc, char **argv)
{
    if (argc != 2)
        return cli_usage_error ("send_cmd: give one command, e.g. send_cmd STATUS");
    char command[64];
    size_t len = strlen (argv[1]);
    if (len >= sizeof command)
        return cli_usage_error ("send_cmd: '%.40s...' is not an admin command", argv[1]);
    for (size_t i = 0; i <= len; i++)
        command[i] = (char) toupper ((unsigned char) argv[1][i]);
    return s_admin (cli, addr, command);
}

//  Runs one of EventMQ's commands (argv[0]) against shell->addr. Returns an
//  exit code, or -1 for quit.
static int
s_eventmq_command (s_shell_t *shell, int argc, char **argv)
{
    const char *name = argv[0];
    if (streq (name, "quit") || streq (name, "exit"))
        return -1;
    if (streq (name, "connect")) {
        const char *addr = argc > 1 ? argv[1] : shell->cli->admin;
        if (argc > 2)
            return cli_usage_error ("connect: one address at most");
        char *copy = strdup (addr);
        if (!copy)
            return cli_fail (CLI_EXIT_FAILED, "out of memory");
        free (shell->addr);
        shell->addr = copy;
        shell->cli->admin_flag = shell->addr;  // emq's commands follow
        printf ("Connecting to %s...\n", shell->addr);
        return CLI_EXIT_OK;
    }
    if (streq (name, "disconnect")) {
        if (!shell->addr)
            return cli_fail (CLI_EXIT_USAGE, "not connected");
        printf ("Closing connection to %s\n", shell->addr);
        shell->cli->admin_flag = NULL;
        free (shell->addr);
        shell->addr = NULL;
        return CLI_EXIT_OK;
    }
    if (streq (name, "send_cmd"))
        return s_send_cmd (shell->cli, shell->addr, argc, argv);
    if (argc > 1)
        return cli_usage_error ("%s takes no arguments", name);
    for (size_t i = 0; i < S_EVENTMQ_COUNT; i++)
        if (streq (name, s_eventmq[i].name) && s_eventmq[i].command)
            return s_admin (shell->cli, shell->addr, s_eventmq[i].command);
    return cli_usage_error ("unknown command '%s'", name);
}

static void
s_help (void)
{
    printf ("EventMQ's commands:\n");
    for (size_t i = 0; i < S_EVENTMQ_COUNT; i++)
        printf ("  %s\n", s_eventmq[i].help);
    printf ("and emq's: submit, result, cancel, dead, workers, schedulers, schedule,\n"
            "schedules, unschedule, demo, keygen (see emq-cli --help). Quote words\n"
            "as in a shell: submit run lib.so fn '[\"a\", 1]'\n");
}

//  Runs one line. Returns -1 to leave the shell, else the exit code of
//  its command (shown to nobody: errors were printed).
static int
s_line (s_shell_t *shell, const char *line)
{
    wordexp_t words;
    int rc = wordexp (line, &words, WRDE_NOCMD);
    if (rc) {
        if (rc != WRDE_NOSPACE)
            return cli_usage_error (
                "cannot split that line into words: an unbalanced quote, $(...), or "
                "one of | & ; < > ( ) { } unquoted");
        wordfree (&words);
        return cli_fail (CLI_EXIT_FAILED, "out of memory");
    }
    int argc = (int) words.we_wordc;
    char **argv = words.we_wordv;
    if (argc == 0)
        rc = CLI_EXIT_OK;
    else if (streq (argv[0], "help") || streq (argv[0], "?")) {
        s_help ();
        rc = CLI_EXIT_OK;
    }
    else if (cli_is_eventmq_command (argv[0]) || streq (argv[0], "exit"))
        rc = s_eventmq_command (shell, argc, argv);
    else if (streq (argv[0], "shell"))
        rc = cli_usage_error ("already in the shell");
    else {
        rc = cli_run_command (shell->cli, argc, argv);
        if (rc == -2)
            rc = cli_usage_error ("unknown command '%s' (help lists them)", argv[0]);
    }
    wordfree (&words);
    fflush (stdout);
    fflush (stderr);
    return rc;
}

//  Where the history is kept between sessions: $HOME/.emq_cli_history.
static const char *
s_history_path (char *buf, size_t buflen)
{
    const char *home = getenv ("HOME");
    if (!home || !*home)
        return NULL;
    snprintf (buf, buflen, "%s/.emq_cli_history", home);
    return buf;
}

int
cli_shell (cli_t *cli, int argc, char **argv)
{
    static const struct option options[] = { CLI_GLOBAL_OPTIONS };
    int opt;
    while ((opt = getopt_long (argc, argv, "+:a:", options, NULL)) != -1) {
        if (opt == 'a') {
            cli->admin_flag = optarg;
            continue;
        }
        int rc = cli_other_option (cli, "shell", opt, optarg, argv);
        if (rc)
            return rc >= 100 ? rc - 100 : rc;
    }
    if (optind < argc)
        return cli_usage_error ("shell: unexpected argument '%s'", argv[optind]);
    //  As in EventMQ, --addr names the component the shell talks to: the
    //  router's admin socket (emq's commands find the frontend as always).
    if (cli->frontend_flag && !cli->admin_flag) {
        cli->admin_flag = cli->frontend_flag;
        cli->frontend_flag = NULL;
    }
    int rc = cli_setup (cli);
    if (rc)
        return rc;
    s_shell_t shell = { .cli = cli };
    //  EventMQ's shell connects at start only when given -a; ours to the
    //  configured admin socket too, so that status works at once.
    char *connect[] = { "connect", cli->admin, NULL };
    s_eventmq_command (&shell, 2, connect);

    char history[4096];
    const char *history_path = s_history_path (history, sizeof history);
    using_history ();
    stifle_history (1000);  // the file keeps the latest 1000 lines
    if (history_path)
        read_history (history_path);
    char *line;
    while ((line = readline ("> "))) {
        if (*line)
            add_history (line);
        rc = s_line (&shell, line);
        free (line);
        if (rc == -1)
            break;
    }
    if (!line)
        printf ("\n");  // Ctrl-D: end the prompt's line
    if (history_path && write_history (history_path) != 0)
        cli_fail (CLI_EXIT_FAILED, "cannot save the history in %s", history_path);
    cli->admin_flag = NULL;
    free (shell.addr);
    return CLI_EXIT_OK;
}

int
cli_eventmq (cli_t *cli, int argc, char **argv)
{
    static const struct option options[] = { CLI_GLOBAL_OPTIONS };
    const char *name = argv[0];
    int opt;
    while ((opt = getopt_long (argc, argv, "+:", options, NULL)) != -1) {
        int rc = cli_other_option (cli, name, opt, optarg, argv);
        if (rc)
            return rc >= 100 ? rc - 100 : rc;
    }
    int rc = cli_setup (cli);
    if (rc)
        return rc;
    //  The words after the options: argv[optind - 1] stands in for the name.
    char **rest = argv + optind - 1;
    rest[0] = (char *) name;
    s_shell_t shell = { .cli = cli, .addr = strdup (cli->admin) };
    if (!shell.addr)
        return cli_fail (CLI_EXIT_FAILED, "out of memory");
    if (streq (name, "connect")) {
        //  One-shot: is the router's admin socket there?
        rc = s_eventmq_command (&shell, argc - optind + 1, rest);
        if (rc == CLI_EXIT_OK) {
            char *reply = NULL;
            rc = emq_admin (shell.addr, "STATUS", cli->connect_timeout_ms, &reply);
            free (reply);
            rc = rc ? cli_fail (cli_exit_for (rc), "no router answers at %s", shell.addr)
                    : CLI_EXIT_OK;
            if (!rc)
                printf ("connected\n");
        }
    }
    else
        rc = s_eventmq_command (&shell, argc - optind + 1, rest);
    cli->admin_flag = NULL;
    free (shell.addr);
    return rc == -1 ? CLI_EXIT_OK : rc;
}
