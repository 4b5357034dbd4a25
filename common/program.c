/*  program — the daemons' shared start-up. See program.h. */
#include "program.h"
#include "log.h"
#include "emq/version.h"

#include <czmq.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *
program_exit_name (int code)
{
    switch (code) {
        case PROGRAM_EXIT_OK:
            return "ok";
        case PROGRAM_EXIT_USAGE:
            return "usage";
        case PROGRAM_EXIT_CONFIG:
            return "config";
        case PROGRAM_EXIT_START:
            return "start";
        case PROGRAM_EXIT_LOCKED:
            return "locked";
        default:
            return "unknown";
    }
}

void
program_print_version (const char *name, const char *extra)
{
    printf ("%s %s%s%s\n", name, EMQ_VERSION, extra ? " " : "", extra ? extra : "");
}

int
program_verror (const char *name, int code, const char *format, va_list args)
{
    fprintf (stderr, "%s: ", name);
    vfprintf (stderr, format, args);
    fputc ('\n', stderr);
    return code;
}

int
program_error (const char *name, int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    program_verror (name, code, format, args);
    va_end (args);
    return code;
}

//  Handles one option of the getopt loop. Returns -1 to go on, or the exit
//  code to end with now.
static int
s_option (program_t *self, int opt, const char *arg, const program_flag_t *flags,
          size_t flag_count, bool *print)
{
    const char *setting = NULL;
    const char *value = arg;
    switch (opt) {
        case 'h':
            self->usage (stdout);
            return PROGRAM_EXIT_OK;
        case PROGRAM_OPT_VERSION:
            program_print_version (self->name, self->version_extra);
            return PROGRAM_EXIT_OK;
        case PROGRAM_OPT_CONFIG:
            self->config_path = arg;
            return -1;  // config_from_args has read the file
        case PROGRAM_OPT_PRINT:
            *print = true;
            return -1;
        case PROGRAM_OPT_STANDBY:
            self->lock_mode = PIDLOCK_STANDBY;
            return -1;
        case PROGRAM_OPT_TAKEOVER:
            self->lock_mode = PIDLOCK_TAKEOVER;
            return -1;
        case 'v':
            self->verbose = true;
            setting = "log_level";
            value = "debug";
            break;
        case PROGRAM_OPT_LOG_LEVEL:
            setting = "log_level";
            break;
        default:
            for (size_t i = 0; i < flag_count && !setting; i++)
                if (flags[i].opt == opt) {
                    setting = flags[i].setting;
                    value = flags[i].value ? flags[i].value : arg;
                }
            //  getopt has said what was wrong ('?': unknown option, or one
            //  without its value).
            if (!setting) {
                self->usage (stderr);
                return PROGRAM_EXIT_USAGE;
            }
    }
    char err[512];
    if (config_set (self->config, setting, value, err, sizeof err))
        return program_error (self->name, PROGRAM_EXIT_USAGE, "%s", err);
    return -1;
}

bool
program_start (program_t *self, int argc, char **argv, const struct option *options,
               const program_flag_t *flags, size_t flag_count, int *exit_code)
{
    assert (self && self->name && self->section && self->usage);
    log_init (self->name, LOG_LEVEL_INFO);
    self->lock_mode = PIDLOCK_FAIL;
    self->verbose = false;
    self->argc = argc;
    self->argv = argv;
    self->options = options;
    self->flags = flags;
    self->flag_count = flag_count;
    self->config_path = NULL;
    optind = 1;
    self->config = config_from_args (self->name, self->section, argc, argv,
                                     PROGRAM_SHORT_OPTIONS, options, PROGRAM_OPT_CONFIG);
    if (!self->config) {
        *exit_code = PROGRAM_EXIT_CONFIG;
        return false;
    }
    bool print = false;
    int code = -1;
    optind = 1;
    opterr = 1;
    int opt;
    while (code == -1
           && (opt = getopt_long (argc, argv, PROGRAM_SHORT_OPTIONS, options, NULL))
                  != -1)
        code = s_option (self, opt, optarg, flags, flag_count, &print);
    if (code == -1 && optind < argc)
        code = program_error (self->name, PROGRAM_EXIT_USAGE, "unexpected argument '%s'",
                              argv[optind]);
    if (code == -1 && print) {
        config_print (self->config, stdout);
        code = PROGRAM_EXIT_OK;
    }
    char err[512];
    if (code == -1 && program_apply_log (self->config, err, sizeof err))
        code = program_error (self->name, PROGRAM_EXIT_CONFIG, "%s", err);
    if (code != -1) {
        config_destroy (&self->config);
        *exit_code = code;
        return false;
    }
    return true;
}

int
program_apply_log (config_t *config, char *err, size_t errlen)
{
    log_level_t level = LOG_LEVEL_INFO;
    const char *level_name = config_str (config, "log_level");
    if (log_level_parse (level_name, &level)) {
        snprintf (err, errlen, "log_level '%s' is not error, warning, info or debug",
                  level_name);
        return -1;
    }
    log_set_level (level);
    const char *format = config_str (config, "log_format");
    if (streq (format, "journal"))
        log_set_journal (true);
    else if (streq (format, "plain"))
        log_set_journal (false);
    else
        log_set_journal (log_journal_detect (STDOUT_FILENO));
    return 0;
}

typedef struct {
    const char *name;
    const char *const *reloadable;
} s_diff_ctx_t;

static void
s_log_change (const char *setting, const char *before, const char *after, void *arg)
{
    const s_diff_ctx_t *ctx = arg;
    bool applied = false;
    for (const char *const *name = ctx->reloadable; name && *name && !applied; name++)
        applied = streq (*name, setting);
    if (applied)
        log_info ("%s: SIGHUP: %s '%s' -> '%s', applied", ctx->name, setting, before,
                  after);
    else
        log_warning ("%s: SIGHUP: %s '%s' -> '%s' needs a restart; still '%s'", ctx->name,
                     setting, before, after, before);
}

int
program_reload (program_t *self, const char *const *reloadable, char *err, size_t errlen)
{
    assert (self && self->config && self->argv);
    config_t *fresh = config_new ();
    if (!fresh) {
        snprintf (err, errlen, "out of memory");
        return -1;
    }
    if (config_load (fresh, self->section, self->config_path, err, errlen)) {
        config_destroy (&fresh);
        return -1;
    }
    //  The same flags, in the same order, win over the file again.
    int saved_optind = optind, saved_opterr = opterr;
    optind = 1;
    opterr = 0;
    int opt, rc = 0;
    while (rc == 0
           && (opt = getopt_long (self->argc, self->argv, "vh", self->options, NULL))
                  != -1) {
        const char *setting = NULL, *value = optarg;
        if (opt == 'v') {
            setting = "log_level";
            value = "debug";
        }
        else if (opt == PROGRAM_OPT_LOG_LEVEL)
            setting = "log_level";
        for (size_t i = 0; i < self->flag_count && !setting; i++)
            if (self->flags[i].opt == opt) {
                setting = self->flags[i].setting;
                value = self->flags[i].value ? self->flags[i].value : optarg;
            }
        if (setting && config_set (fresh, setting, value, err, errlen))
            rc = -1;
    }
    optind = saved_optind;
    opterr = saved_opterr;
    if (rc == 0 && program_apply_log (fresh, err, errlen))
        rc = -1;
    if (rc) {
        config_destroy (&fresh);
        return -1;
    }
    s_diff_ctx_t ctx = { self->name, reloadable };
    size_t changed = config_diff (self->config, fresh, s_log_change, &ctx);
    config_destroy (&self->config);
    self->config = fresh;
    return (int) changed;
}

bool
program_lock_data_dir (program_t *self, int *exit_code)
{
    assert (self && self->config);
    //  As configured, or a per-user one for a first run without root (the
    //  default /var/lib/emq needs root to create).
    const char *configured = config_str (self->config, "data_dir");
    char *dir = self->data_dir;
    size_t size = sizeof self->data_dir;
    if (streq (configured, "/var/lib/emq") && geteuid () != 0) {
        const char *state = getenv ("XDG_STATE_HOME");
        const char *home = getenv ("HOME");
        if (state && *state)
            snprintf (dir, size, "%s/emq", state);
        else
            snprintf (dir, size, "%s/.local/state/emq", home ? home : "/tmp");
    }
    else
        snprintf (dir, size, "%s", *configured ? configured : ".");
    //  mkdir -p; only the last step's failure counts.
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir (dir, 0700);
            *p = '/';
        }
    if (mkdir (dir, 0700) == -1 && errno != EEXIST) {
        *exit_code =
            program_error (self->name, PROGRAM_EXIT_START,
                           "cannot create data directory %s: %s", dir, strerror (errno));
        return false;
    }
    char err[512];
    self->lock = pidlock_acquire (dir, self->name, self->lock_mode, &zsys_interrupted, 0,
                                  err, sizeof err);
    if (!self->lock) {
        //  A signal during --standby or --takeover is a clean stop.
        *exit_code = program_error (
            self->name, zsys_interrupted ? PROGRAM_EXIT_OK : PROGRAM_EXIT_LOCKED, "%s",
            err);
        return false;
    }
    return true;
}

int
program_end (program_t *self, int code)
{
    pidlock_release (&self->lock);
    config_destroy (&self->config);
    log_debug ("%s: exit %d (%s)", self->name, code, program_exit_name (code));
    return code;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

static void
s_test_usage (FILE *stream)
{
    fprintf (stream, "usage: program-test [OPTIONS]\n");
}

//  The checks, in a child: program_start sets the process's log identity.
static void
s_test_checks (void)
{
    CHECK_STREQ (program_exit_name (PROGRAM_EXIT_OK), "ok");
    CHECK_STREQ (program_exit_name (PROGRAM_EXIT_LOCKED), "locked");
    CHECK_STREQ (program_exit_name (1), "unknown");
    CHECK_EQ (program_error ("program-test", 7, "a line for a person (%d)", 1), 7);

    char dir[] = "/tmp/emq-program-test-XXXXXX";
    REQUIRE (mkdtemp (dir));
    char path[512];
    snprintf (path, sizeof path, "%s/test.conf", dir);
    FILE *file = fopen (path, "w");
    REQUIRE (file);
    fprintf (file, "[router]\nheartbeat_liveness = 9\nqueue_hwm = 50\n");
    fclose (file);
    char data_dir[256];
    snprintf (data_dir, sizeof data_dir, "%s/a/b/data", dir);

    enum { O_LIVENESS = 1, O_MEMORY, O_DATADIR };
    static const struct option options[] = {
        { "heartbeat-liveness", required_argument, NULL, O_LIVENESS },
        { "in-memory", no_argument, NULL, O_MEMORY },
        { "data-dir", required_argument, NULL, O_DATADIR },
        PROGRAM_LOCK_OPTIONS,
        PROGRAM_OPTIONS
    };
    static const program_flag_t flags[] = {
        { O_LIVENESS, "heartbeat_liveness", NULL },
        { O_MEMORY, "data_dir", ":memory:" },
        { O_DATADIR, "data_dir", NULL },
    };
    //  Flags over the file, in order; -v sets debug; --standby the lock mode.
    program_t program = { .name = "program-test",
                          .section = "router",
                          .usage = s_test_usage };
    char *args[] = { "program-test",
                     "--heartbeat-liveness",
                     "4",
                     "-C",  // EventMQ's spelling of --config
                     path,
                     "--in-memory",
                     "--standby",
                     "-v",
                     "--data-dir",
                     data_dir,
                     NULL };
    int code = -1;
    CHECK (program_start (&program, 10, args, options, flags, 3, &code));
    REQUIRE (program.config);
    CHECK_EQ (config_int (program.config, "heartbeat_liveness"), 4);
    CHECK_EQ (config_int (program.config, "queue_hwm"), 50);
    CHECK_STREQ (config_str (program.config, "data_dir"), data_dir);
    CHECK_STREQ (config_str (program.config, "log_level"), "debug");
    CHECK (program.verbose);
    CHECK_EQ (program.lock_mode, PIDLOCK_STANDBY);
    //  The data directory is made (mkdir -p) and locked.
    program.lock_mode = PIDLOCK_FAIL;
    CHECK (program_lock_data_dir (&program, &code));
    CHECK_STREQ (program.data_dir, data_dir);
    CHECK (program.lock != NULL);
    struct stat st;
    snprintf (path, sizeof path, "%s/program-test.pid", data_dir);
    CHECK_EQ (stat (path, &st), 0);
    //  A second one finds it held.
    program_t second = program;
    second.lock = NULL;
    code = -1;
    CHECK (!program_lock_data_dir (&second, &code));
    CHECK_EQ (code, PROGRAM_EXIT_LOCKED);
    CHECK (second.lock == NULL);
    CHECK_EQ (program_end (&program, 0), 0);
    CHECK (program.config == NULL && program.lock == NULL);
    CHECK_EQ (stat (path, &st), -1);  // the pidfile went with the lock

    //  What ends the program at once.
    struct {
        int argc;
        char *args[4];
        int code;
    } stops[] = {
        { 2, { "program-test", "--version" }, PROGRAM_EXIT_OK },
        { 3, { "program-test", "--heartbeat-liveness", "x" }, PROGRAM_EXIT_USAGE },
        { 2, { "program-test", "--no-such-flag" }, PROGRAM_EXIT_USAGE },
        { 2, { "program-test", "stray" }, PROGRAM_EXIT_USAGE },
        //  A named file that is not there is only a warning (as in
        //  EventMQ); one that cannot be read is an error.
        { 3, { "program-test", "--config", "/tmp" }, PROGRAM_EXIT_CONFIG },
        { 3, { "program-test", "-C", "/tmp" }, PROGRAM_EXIT_CONFIG },
    };
    for (size_t i = 0; i < sizeof stops / sizeof stops[0]; i++) {
        program_t stopped = { .name = "program-test",
                              .section = "router",
                              .usage = s_test_usage };
        code = -1;
        CHECK (!program_start (&stopped, stops[i].argc, stops[i].args, options, flags, 3,
                               &code));
        CHECK_EQ (code, stops[i].code);
        CHECK (stopped.config == NULL);
    }
    //  A directory that cannot be made.
    program_t nowhere = { .name = "program-test",
                          .section = "router",
                          .usage = s_test_usage };
    char *nowhere_args[] = { "program-test", "--data-dir", "/proc/emq/no", NULL };
    CHECK (program_start (&nowhere, 3, nowhere_args, options, flags, 3, &code));
    CHECK (!program_lock_data_dir (&nowhere, &code));
    CHECK_EQ (code, PROGRAM_EXIT_START);
    program_end (&nowhere, code);

    zsys_dir_delete ("%s/a/b/data", dir);
    zsys_dir_delete ("%s/a/b", dir);
    zsys_dir_delete ("%s/a", dir);
    snprintf (path, sizeof path, "%s/test.conf", dir);
    unlink (path);
    zsys_dir_delete ("%s", dir);
}

void
program_test (bool verbose)
{
    if (verbose)
        printf (" * program: ");
    fflush (stdout);
    fflush (stderr);
    pid_t child = fork ();
    REQUIRE (child >= 0);
    if (child == 0) {
        int failures = emq_test_failures;
        s_test_checks ();
        fflush (stdout);
        _exit (emq_test_failures > failures ? 1 : 0);
    }
    int status = 0;
    CHECK_EQ (waitpid (child, &status, 0), child);
    CHECK (TESTUTIL_CLEAN_EXIT (status));
    if (verbose)
        printf ("OK\n");
}
