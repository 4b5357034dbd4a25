/*  cli — emq-cli's shared state and the entry point of each subcommand.

    main.c parses the global options and picks the subcommand; each
    subcommand parses its own options (the global ones are accepted there
    too), then calls cli_setup to load the configuration and settle the
    router's addresses, and runs. Everything a subcommand prints for a
    person goes through output.c.
*/
#ifndef EMQ_CLI_H
#define EMQ_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "emq/client.h"

//  Exit codes, listed in --help and emq-cli(1).
typedef enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILED = 1,        // the job failed (or another failure)
    CLI_EXIT_USAGE = 2,         // bad arguments, options or configuration
    CLI_EXIT_UNREACHABLE = 3,   // no answer from the router
    CLI_EXIT_REJECTED = 4,      // the router refused the request
    CLI_EXIT_JOB_TIMEOUT = 5,   // the job was killed after its own timeout
    CLI_EXIT_WAIT_TIMEOUT = 6,  // no result within --wait-timeout
    CLI_EXIT_CRASHED = 7,       // the worker running the job died
    CLI_EXIT_NOT_FOUND = 8,     // no such job (result, cancel, dead retry)
    CLI_EXIT_PENDING = 9        // result without --wait: not finished yet
} cli_exit_t;

typedef struct {
    const char *frontend_flag;  // --addr, or NULL
    const char *admin_flag;     // --admin-addr, or NULL
    const char *config_path;    // --config, or NULL
    int connect_timeout_ms;     // --connect-timeout
    bool verbose;               // --verbose
    //  Settled by cli_setup:
    char *frontend;       // the router's frontend endpoint (owned)
    char *admin;          // the router's admin endpoint (owned)
    char *default_queue;  // default_queue_name: for jobs naming none
    char *events;         // the router's event stream: $EMQ_EVENTS_ADDR, then
                          // events_addr (owned)
    char *curve_key;      // CURVE server key and own certificate as settled
    char *curve_cert;     // (owned; NULL: no CURVE), for sockets of our own
} cli_t;

//  Long option codes of the global options (beyond any short option).
enum {
    CLI_OPT_ADDR = 1000,
    CLI_OPT_ADMIN_ADDR,
    CLI_OPT_CONNECT_TIMEOUT,
    CLI_OPT_CONFIG,
    CLI_OPT_HELP,
    CLI_OPT_VERSION,
    CLI_OPT_VERBOSE
};

//  The global options, to put at the end of each subcommand's option table.
// clang-format off
#define CLI_GLOBAL_OPTIONS \
    { "addr", required_argument, NULL, CLI_OPT_ADDR }, \
    { "admin-addr", required_argument, NULL, CLI_OPT_ADMIN_ADDR }, \
    { "frontend-addr", required_argument, NULL, CLI_OPT_ADDR }, \
    { "administrative-addr", required_argument, NULL, CLI_OPT_ADMIN_ADDR }, \
    { "connect-timeout", required_argument, NULL, CLI_OPT_CONNECT_TIMEOUT }, \
    { "config", required_argument, NULL, CLI_OPT_CONFIG }, \
    { "help", no_argument, NULL, CLI_OPT_HELP }, \
    { "version", no_argument, NULL, CLI_OPT_VERSION }, \
    { "verbose", no_argument, NULL, CLI_OPT_VERBOSE }, \
    { NULL, 0, NULL, 0 }
// clang-format on

//  Handles a global option code from getopt_long. Returns -1 if opt is not
//  a global option, CLI_EXIT_OK (0) when handled, or an exit code + 100 when
//  the program should exit now with that code (after --help, --version or a
//  bad value): the caller returns rc - 100.
int cli_global_option (cli_t *self, int opt, const char *arg);

//  Handles what a subcommand's getopt_long loop does not: ':' (a value
//  missing), '?' (an unknown option), the global options, anything else
//  (unexpected). Returns 0 when handled, CLI_EXIT_USAGE after a usage error
//  (reported as "COMMAND: ..."), or an exit code + 100 as cli_global_option.
//  Prints the lines of --help that describe command (its usage and
//  options), for `emq-cli COMMAND --help`.
void cli_print_command_usage (FILE *stream, const char *command);

int cli_other_option (cli_t *self, const char *command, int opt, const char *arg,
                      char **argv);

//  Loads the configuration ([cli] section, --config) and settles the
//  addresses: flag, then $EMQ_BROKER_ADDR / $EMQ_ADMIN_ADDR, then the
//  configuration (frontend_addr / administrative_addr, which
//  EVENTMQ_FRONTEND_ADDR and friends override). Returns 0 or an exit code.
int cli_setup (cli_t *self);

//  Reports a usage error ("emq-cli: <message>") and returns CLI_EXIT_USAGE.
int cli_usage_error (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
//  Reports a failure ("emq-cli: <message>") and returns code.
int cli_fail (int code, const char *format, ...) __attribute__ ((format (printf, 2, 3)));
//  Maps a libemq error code to an exit code.
int cli_exit_for (int emq_code);
//  Parses seconds ("5", "0.5") into milliseconds. Returns 0 or -1.
int cli_parse_seconds (const char *text, int *ms);
//  Parses whole seconds with an optional unit: "90", "90s", "15m", "2h",
//  "1d". Returns 0 and sets *seconds (at most UINT32_MAX), or -1.
int cli_parse_duration (const char *text, uint32_t *seconds);
//  Prints the whole usage text to stream.
void cli_print_usage (FILE *stream);

//  Subcommands: argv[0] is the subcommand's name. Each returns an exit code.
int cli_submit (cli_t *self, int argc, char **argv);
int cli_status (cli_t *self, int argc, char **argv);
int cli_workers (cli_t *self, int argc, char **argv);
int cli_schedulers (cli_t *self, int argc, char **argv);
int cli_disconnect (cli_t *self, int argc, char **argv);
int cli_result (cli_t *self, int argc, char **argv);
int cli_cancel (cli_t *self, int argc, char **argv);
int cli_dead (cli_t *self, int argc, char **argv);
//  fence [--json] | fence reset SCOPE|--all: the schedulers' fencing tokens
//  (FENCE_SHOW), and forgetting one (FENCE_RESET).
int cli_fence (cli_t *self, int argc, char **argv);
int cli_demo (cli_t *self, int argc, char **argv);
int cli_keygen (cli_t *self, int argc, char **argv);
//  schedule.c: emq-scheduler's schedules.
int cli_schedule (cli_t *self, int argc, char **argv);
int cli_schedules (cli_t *self, int argc, char **argv);
int cli_unschedule (cli_t *self, int argc, char **argv);
//  events.c: the router's event stream; top.c: a live view.
int cli_events (cli_t *self, int argc, char **argv);
int cli_top (cli_t *self, int argc, char **argv);
//  jobs.c: job and queue admin.
int cli_jobs (cli_t *self, int argc, char **argv);
int cli_job (cli_t *self, int argc, char **argv);
int cli_queue (cli_t *self, int argc, char **argv);
int cli_jobmanager (cli_t *self, int argc, char **argv);
//  shell.c: EventMQ's interactive shell (`emq-cli shell`, or no command on
//  a terminal), and its commands one-shot (connect, show_workers,
//  show_schedulers, shutdown, send_cmd, quit).
int cli_shell (cli_t *self, int argc, char **argv);
int cli_eventmq (cli_t *self, int argc, char **argv);
//  True for the names cli_eventmq runs.
bool cli_is_eventmq_command (const char *name);
//  Runs the subcommand argv[0] (emq's, or EventMQ's through cli_eventmq).
//  Returns its exit code, or -2 when there is no such command.
int cli_run_command (cli_t *self, int argc, char **argv);

//  result.c ----------------------------------------------------------------

//  Shows the outcome of emq_wait_result / emq_result (rc, *event) for msgid
//  the way `submit --wait` and `result` do: the value on stdout, or the
//  error on stderr; with json, one JSON object on stdout
//  {"msgid","status","value"|"error","usage"} for every ended job.
//  wait_timeout_ms is only quoted in the message for EMQ_ERR_TIMEOUT.
//  Returns the exit code (see cli_exit_t).
int cli_report_outcome (emq_client_t *client, const char *msgid, int rc,
                        const emq_event_t *event, bool json, int wait_timeout_ms);

//  output.c ----------------------------------------------------------------

//  Prints a job's value: msgpack bin raw, byte for byte; anything else as
//  JSON + newline. Returns 0, or -1 after printing why on stderr (the value
//  is not valid msgpack, or stdout failed).
int output_value (FILE *stream, const void *data, size_t size);

//  A text table with aligned columns. Cells are copied.
typedef struct output_table_t output_table_t;
//  Creates a table with the given column headings (NULL-terminated list).
output_table_t *output_table_new (const char *heading, ...);
void output_table_destroy (output_table_t **self_p);
//  Adds a row of exactly as many cells as headings (NULL cells print "-").
//  Returns 0 or -1 (out of memory).
int output_table_add (output_table_t *self, const char *cell, ...);
//  Sets a column (0-based) to be right-aligned (numbers).
void output_table_align_right (output_table_t *self, size_t column);
size_t output_table_rows (output_table_t *self);
//  Prints headings and rows, columns separated by two spaces.
void output_table_print (output_table_t *self, FILE *stream);

//  Progress bar or periodic line on stderr (bar when stderr is a tty, else
//  a line every 10%). Call with done <= total as often as you like.
typedef struct output_progress_t output_progress_t;
output_progress_t *output_progress_new (size_t total);
void output_progress_update (output_progress_t *self, size_t done, size_t ok,
                             size_t failed, bool force);
//  Ends the bar (newline on a tty) and frees it.
void output_progress_destroy (output_progress_t **self_p);

#endif
