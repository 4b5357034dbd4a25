/*  log — levels and line format for every emq program. See log.h.

    czmq's zsys_* logging writes a two-digit year and no syslog priority,
    which journald shows as one level, so lines are formatted here: on a
    terminal or into a file, "2026-12-02T17:35:03.123Z I (emq-router) text";
    under journald (its stream on our stdout/stderr, or log_journal set)
    "<3>(emq-router) text" with sd-daemon.h's priority prefix and no time,
    as journald adds both itself. Lines go to stdout (where zsys put them),
    one write(2) per line so that concurrent processes do not interleave.
*/
#include "log.h"

#include <czmq.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>

static log_level_t s_level = LOG_LEVEL_INFO;
static char s_ident[64] = "emq";
static bool s_journal;
//  Set by log_init: lines formatted here, written to s_fd. Until then (a
//  program using libemq without our log_init) lines go through czmq's
//  zsys_*, to the stream the program chose with zsys_set_logstream.
static bool s_own;
static int s_fd = STDOUT_FILENO;

//  syslog priorities of the levels (sd-daemon.h SD_ERR, SD_WARNING,
//  SD_INFO, SD_DEBUG) and the letter a plain line shows.
static const int s_priorities[] = { 3, 4, 6, 7 };
static const char s_letters[] = "EWID";

bool
log_journal_detect (int fd)
{
    //  JOURNAL_STREAM is "device:inode" of the stream systemd connected to
    //  the service's stdout/stderr; a shell that inherited the variable
    //  but redirected the output no longer matches.
    const char *stream = getenv ("JOURNAL_STREAM");
    if (!stream || !*stream)
        return false;
    unsigned long long dev, ino;
    if (sscanf (stream, "%llu:%llu", &dev, &ino) != 2)
        return false;
    struct stat st;
    if (fstat (fd, &st))
        return false;
    return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void
log_init (const char *ident, log_level_t level)
{
    zsys_set_logident (ident);
    snprintf (s_ident, sizeof s_ident, "%s", ident);
    s_level = level;
    s_own = true;
    s_journal = log_journal_detect (s_fd);
}

void
log_set_fd (int fd)
{
    s_fd = fd;
}

void
log_set_journal (bool journal)
{
    s_journal = journal;
}

bool
log_journal (void)
{
    return s_journal;
}

int
log_level_parse (const char *name, log_level_t *level)
{
    for (int i = 0; i < 4; i++)
        if (streq (name, log_level_name ((log_level_t) i))) {
            *level = (log_level_t) i;
            return 0;
        }
    return -1;
}

const char *
log_level_name (log_level_t level)
{
    static const char *names[] = { "error", "warning", "info", "debug" };
    return level <= LOG_LEVEL_DEBUG ? names[level] : "?";
}

void
log_set_level (log_level_t level)
{
    s_level = level;
}

log_level_t
log_level (void)
{
    return s_level;
}

bool
log_enabled (log_level_t level)
{
    return level <= s_level;
}

size_t
log_format (char *buf, size_t size, log_level_t level, bool journal, const char *text)
{
    int n;
    if (journal)
        n = snprintf (buf, size, "<%d>(%s) %s\n", s_priorities[level], s_ident, text);
    else {
        struct timespec now;
        clock_gettime (CLOCK_REALTIME, &now);
        struct tm tm;
        gmtime_r (&now.tv_sec, &tm);
        char stamp[40];
        strftime (stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        n = snprintf (buf, size, "%s.%03ldZ %c (%s) %s\n", stamp, now.tv_nsec / 1000000,
                      s_letters[level], s_ident, text);
    }
    if (n < 0)
        return 0;
    if ((size_t) n >= size) {
        //  Cut, but still one line.
        buf[size - 2] = '\n';
        return size - 1;
    }
    return (size_t) n;
}

static void
s_log (log_level_t level, const char *format, va_list args)
{
    char text[2048];
    vsnprintf (text, sizeof text, format, args);
    if (!s_own) {
        if (level == LOG_LEVEL_ERROR)
            zsys_error ("%s", text);
        else if (level == LOG_LEVEL_WARNING)
            zsys_warning ("%s", text);
        else if (level == LOG_LEVEL_INFO)
            zsys_info ("%s", text);
        else
            zsys_debug ("%s", text);
        return;
    }
    char line[2200];
    size_t len = log_format (line, sizeof line, level, s_journal, text);
    //  stdio's buffer may hold a partial line of someone else's printf.
    fflush (s_fd == STDERR_FILENO ? stderr : stdout);
    if (write (s_fd, line, len) < 0) {
        //  Nowhere left to say it.
    }
}

#define S_LOG_BODY(level)        \
    if (!log_enabled (level))    \
        return;                  \
    va_list args;                \
    va_start (args, format);     \
    s_log (level, format, args); \
    va_end (args);

void
log_error (const char *format, ...)
{
    S_LOG_BODY (LOG_LEVEL_ERROR)
}
void
log_warning (const char *format, ...)
{
    S_LOG_BODY (LOG_LEVEL_WARNING)
}
void
log_info (const char *format, ...)
{
    S_LOG_BODY (LOG_LEVEL_INFO)
}
void (log_debug) (const char *format, ...)
{
    S_LOG_BODY (LOG_LEVEL_DEBUG)
}

//  --------------------------------------------------------------------------
//  Rate limits

static log_limit_t *s_limits;  // every limit used so far
static int64_t s_window_ms;    // 0 until read

int64_t
log_limit_window_ms (void)
{
    if (!s_window_ms) {
        const char *env = getenv ("EMQ_LOG_LIMIT_WINDOW_MS");
        long long ms = env ? atoll (env) : 0;
        s_window_ms = ms >= 10 && ms <= 3600000 ? ms : 10000;
    }
    return s_window_ms;
}

//  Ends limit's window if it is over, telling what it held back.
static void
s_limit_roll (log_limit_t *limit, int64_t now)
{
    int64_t window = log_limit_window_ms ();
    if (now - limit->window_start_ms < window)
        return;
    if (limit->suppressed)
        log_warning ("%s: ... %" PRIu64 " more in the last %" PRId64 " s", limit->what,
                     limit->suppressed, (window + 999) / 1000);
    limit->window_start_ms = now;
    limit->shown = 0;
    limit->suppressed = 0;
}

bool
log_limit_pass (log_limit_t *limit)
{
    if (!limit->registered) {
        limit->registered = true;
        limit->next = s_limits;
        s_limits = limit;
        limit->window_start_ms = zclock_mono ();
    }
    s_limit_roll (limit, zclock_mono ());
    if (limit->shown < LOG_LIMIT_BURST) {
        limit->shown++;
        return true;
    }
    limit->suppressed++;
    return false;
}

void
log_limits_flush (void)
{
    int64_t now = zclock_mono ();
    for (log_limit_t *limit = s_limits; limit; limit = limit->next)
        if (limit->suppressed)
            s_limit_roll (limit, now);
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

#include <regex.h>

//  Rate limits: a burst passes, the rest is counted and told once.
static void
s_limit_test (void)
{
    static log_limit_t limit = LOG_LIMIT ("log_test");
    //  Quiet: the lines go to stderr otherwise.
    log_level_t saved = s_level;
    s_level = LOG_LEVEL_ERROR;
    size_t passed = 0;
    for (int i = 0; i < 1000; i++)
        passed += log_limit_pass (&limit);
    CHECK_EQ (passed, LOG_LIMIT_BURST);
    CHECK_EQ (limit.suppressed, 1000 - LOG_LIMIT_BURST);
    //  Before the window ends nothing is flushed; after it, the count goes.
    log_limits_flush ();
    CHECK_EQ (limit.suppressed, 1000 - LOG_LIMIT_BURST);
    limit.window_start_ms -= log_limit_window_ms ();
    log_limits_flush ();
    CHECK_EQ (limit.suppressed, 0);
    CHECK_EQ (limit.shown, 0);
    //  A new window lets a burst through again.
    CHECK (log_limit_pass (&limit));
    s_level = saved;
}

void
log_test (bool verbose)
{
    if (verbose)
        printf (" * log: ");
    log_level_t level;
    CHECK_EQ (log_level_parse ("warning", &level), 0);
    CHECK_EQ (level, LOG_LEVEL_WARNING);
    CHECK_EQ (log_level_parse ("loud", &level), -1);
    CHECK_STREQ (log_level_name (LOG_LEVEL_DEBUG), "debug");

    char saved_ident[64];
    snprintf (saved_ident, sizeof saved_ident, "%s", s_ident);
    snprintf (s_ident, sizeof s_ident, "emq-test");
    char line[256];
    //  A plain line: four-digit year, ISO 8601 in UTC with milliseconds.
    size_t len = log_format (line, sizeof line, LOG_LEVEL_WARNING, false, "peer x: bad");
    CHECK (len > 0 && line[len - 1] == '\n');
    regex_t re;
    REQUIRE (
        regcomp (&re,
                 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                 "W \\(emq-test\\) peer x: bad\n$",
                 REG_EXTENDED)
        == 0);
    CHECK_EQ (regexec (&re, line, 0, NULL, 0), 0);
    regfree (&re);
    //  Under journald: the priority prefix, no time of our own.
    log_format (line, sizeof line, LOG_LEVEL_ERROR, true, "store failed");
    CHECK_STREQ (line, "<3>(emq-test) store failed\n");
    log_format (line, sizeof line, LOG_LEVEL_DEBUG, true, "x");
    CHECK_STREQ (line, "<7>(emq-test) x\n");
    log_format (line, sizeof line, LOG_LEVEL_INFO, true, "x");
    CHECK_STREQ (line, "<6>(emq-test) x\n");
    //  A long text is cut but stays one line.
    char big[600];
    memset (big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    len = log_format (line, 100, LOG_LEVEL_INFO, true, big);
    CHECK_EQ (len, 99);
    CHECK_EQ (line[98], '\n');
    snprintf (s_ident, sizeof s_ident, "%s", saved_ident);

    //  JOURNAL_STREAM must name the very stream.
    char path[] = "/tmp/emq-log-test-XXXXXX";
    int fd = mkstemp (path);
    REQUIRE (fd >= 0);
    struct stat st;
    REQUIRE (fstat (fd, &st) == 0);
    char stream[64];
    snprintf (stream, sizeof stream, "%llu:%llu", (unsigned long long) st.st_dev,
              (unsigned long long) st.st_ino);
    const char *saved = getenv ("JOURNAL_STREAM");
    char *saved_copy = saved ? strdup (saved) : NULL;
    setenv ("JOURNAL_STREAM", stream, 1);
    CHECK (log_journal_detect (fd));
    setenv ("JOURNAL_STREAM", "1:2", 1);
    CHECK (!log_journal_detect (fd));
    setenv ("JOURNAL_STREAM", "garbage", 1);
    CHECK (!log_journal_detect (fd));
    unsetenv ("JOURNAL_STREAM");
    CHECK (!log_journal_detect (fd));
    if (saved_copy) {
        setenv ("JOURNAL_STREAM", saved_copy, 1);
        free (saved_copy);
    }
    close (fd);
    unlink (path);
    s_limit_test ();
    if (verbose)
        printf ("OK\n");
}
