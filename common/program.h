/*  program — what the emq daemons (emq-router, emq-scheduler) share at
    start-up, so that their main.c stays thin: the exit codes, the command
    line applied over the configuration, the data directory and its lock,
    --version, and the one-line error a person reads.

        static const program_flag_t flags[] = {
            { O_FRONTEND, "frontend_listen_addr", NULL },
            { O_MEMORY, "data_dir", ":memory:" },       // a flag without a value
        };
        program_t program = { .name = "emq-router", .section = "router",
                              .usage = s_usage };
        int code;
        if (!program_start (&program, argc, argv, options, flags, 2, &code))
            return code;                                // --help, bad flag...
        if (!program_lock_data_dir (&program, &code))
            ...
        program_end (&program);

    The option table ends with PROGRAM_OPTIONS (and PROGRAM_LOCK_OPTIONS for
    a program that locks a data directory). emq-cli has exit codes of its own
    (cli.h) and shares program_print_version and program_error.
*/
#ifndef EMQ_PROGRAM_H
#define EMQ_PROGRAM_H

#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "pidlock.h"

//  The daemons' exit codes, as --help and the man pages list them.
typedef enum {
    PROGRAM_EXIT_OK = 0,      // stopped cleanly; --help, --version, --print-config
    PROGRAM_EXIT_USAGE = 2,   // bad flag, flag value or argument
    PROGRAM_EXIT_CONFIG = 3,  // bad configuration file, environment or setting
    PROGRAM_EXIT_START = 4,   // could not start (socket, store, data directory)
    PROGRAM_EXIT_LOCKED = 5   // another process holds the data directory
} program_exit_t;

//  Returns the exit code's name ("usage", "locked"), or "unknown".
const char *program_exit_name (int code);

//  Option codes of the options every daemon has.
//  -C/--config is EventMQ's spelling too; the others have no short form
//  but -v and -h.
enum {
    PROGRAM_OPT_CONFIG = 'C',
    PROGRAM_OPT_LOG_LEVEL = 1000,
    PROGRAM_OPT_PRINT,
    PROGRAM_OPT_VERSION,
    PROGRAM_OPT_STANDBY,
    PROGRAM_OPT_TAKEOVER
};

//  --standby and --takeover, for a program that locks a data directory.
// clang-format off
#define PROGRAM_LOCK_OPTIONS \
    { "standby", no_argument, NULL, PROGRAM_OPT_STANDBY }, \
    { "takeover", no_argument, NULL, PROGRAM_OPT_TAKEOVER }

//  The short options every daemon has (getopt's optstring).
#define PROGRAM_SHORT_OPTIONS "vhC:"

//  The options every daemon has; ends the option table.
#define PROGRAM_OPTIONS \
    { "config", required_argument, NULL, PROGRAM_OPT_CONFIG }, \
    { "log-level", required_argument, NULL, PROGRAM_OPT_LOG_LEVEL }, \
    { "verbose", no_argument, NULL, 'v' }, \
    { "print-config", no_argument, NULL, PROGRAM_OPT_PRINT }, \
    { "help", no_argument, NULL, 'h' }, \
    { "version", no_argument, NULL, PROGRAM_OPT_VERSION }, \
    { NULL, 0, NULL, 0 }
// clang-format on

//  A flag that sets a setting (docs/configuration.md names them alike).
typedef struct {
    int opt;              // its getopt code in the option table
    const char *setting;  // the setting it sets
    const char *value;    // for a flag without a value: what it sets;
                          // NULL: the flag's value
} program_flag_t;

typedef struct {
    //  Given by main:
    const char *name;              // "emq-router": messages, log, pidfile
    const char *section;           // its configuration section, "router"
    void (*usage) (FILE *stream);  // prints --help
    const char *version_extra;     // after the version ("(eMQP/1.0)"), or NULL
    //  Set by program_start:
    config_t *config;          // defaults, file, environment, flags
    bool verbose;              // -v/--verbose given (log level debug too)
    pidlock_mode_t lock_mode;  // --standby, --takeover, else PIDLOCK_FAIL
    //  Kept by program_start for program_reload (borrowed from main):
    int argc;
    char **argv;
    const struct option *options;
    const program_flag_t *flags;
    size_t flag_count;
    const char *config_path;  // --config's value, or NULL
    //  Set by program_lock_data_dir:
    char data_dir[4096];  // the directory, as created
    pidlock_t *lock;      // held until program_end
} program_t;

//  Starts the log (the program's name, info), loads the configuration
//  (defaults, the --config file or the default one, the environment), then
//  applies the flags in order: those in flags[] (flag_count of them) and
//  PROGRAM_OPTIONS / PROGRAM_LOCK_OPTIONS; then sets the log level. Returns
//  true to go on (self->config set); or false with *exit_code: 0 after
//  --help, --version or --print-config, PROGRAM_EXIT_USAGE after a bad
//  flag, flag value or argument, PROGRAM_EXIT_CONFIG after a bad file or
//  environment (each said on stderr).
bool program_start (program_t *self, int argc, char **argv, const struct option *options,
                    const program_flag_t *flags, size_t flag_count, int *exit_code);

//  SIGHUP: builds the configuration again as program_start did (defaults,
//  the same file, the environment, the same flags), logs each setting that
//  changed, "applied" when its name is in reloadable (NULL-terminated) and
//  "needs a restart" when not, sets the log level and format, then replaces
//  self->config (strings borrowed from the old one die with it). Returns
//  the number of changed settings, or -1 with the reason in err (invalid
//  file or value: the running configuration stays).
int program_reload (program_t *self, const char *const *reloadable, char *err,
                    size_t errlen);

//  Applies the log_level and log_format settings of config to the log.
//  Returns 0, or -1 with the reason in err.
int program_apply_log (config_t *config, char *err, size_t errlen);

//  Takes the data directory (setting data_dir; for the default /var/lib/emq
//  without root, $XDG_STATE_HOME/emq or ~/.local/state/emq instead; "" is
//  the current directory): creates it (mkdir -p, mode 0700), then locks
//  <dir>/<name>.pid in self->lock_mode. Returns true with self->data_dir and
//  self->lock set, or false with *exit_code, after saying why on stderr:
//  PROGRAM_EXIT_START (cannot create it), PROGRAM_EXIT_LOCKED (another
//  process holds it), or 0 (a signal ended --standby or --takeover).
bool program_lock_data_dir (program_t *self, int *exit_code);

//  Releases the lock (last: a process taking over starts only then) and
//  destroys the configuration. Returns code, for `return program_end (...)`.
int program_end (program_t *self, int code);

//  Prints "NAME VERSION" (and " EXTRA" when extra is not NULL) on stdout.
void program_print_version (const char *name, const char *extra);

//  Prints "NAME: MESSAGE" on stderr, the one line a person reads about a bad
//  flag, value or file, or a failure. Returns code.
int program_error (const char *name, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));
//  The same with a va_list, for a program's own wrappers. Returns code.
int program_verror (const char *name, int code, const char *format, va_list args)
    __attribute__ ((format (printf, 3, 0)));

void program_test (bool verbose);

#endif
