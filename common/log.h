/*  log — one logging wrapper for every emq program, on czmq's zsys_* (which
    brings syslog and the log identity). Levels: error = an operator must act;
    warning = a peer misbehaved or we recovered; info = lifecycle; debug = per
    message. Subject first, then what happened, then key=value details.
*/
#ifndef EMQ_LOG_H
#define EMQ_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARNING,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG
} log_level_t;

//  Sets the program name shown in logs and the threshold, and picks the
//  line format: journald's (priority prefix, no time) when stdout is the
//  stream named by JOURNAL_STREAM, else an ISO 8601 UTC time. Call once.
void log_init (const char *ident, log_level_t level);
//  Parses "error|warning|info|debug"; returns 0 or -1.
int log_level_parse (const char *name, log_level_t *level);
//  The level's name, as log_level_parse reads it.
const char *log_level_name (log_level_t level);
void log_set_level (log_level_t level);
log_level_t log_level (void);
bool log_enabled (log_level_t level);
//  Where lines go once log_init ran (default stdout; emq-cli: stderr).
//  Before log_init (libemq in another program) they go through czmq's
//  zsys_* log, wherever zsys_set_logstream points it.
void log_set_fd (int fd);
//  Forces journald's format on or off (the log_format setting).
void log_set_journal (bool journal);
bool log_journal (void);
//  True if fd is the stream JOURNAL_STREAM names ("device:inode").
bool log_journal_detect (int fd);
//  Formats one log line (ending in a newline) into buf; returns its length.
//  Exposed for the self test and for programs that print log lines.
size_t log_format (char *buf, size_t size, log_level_t level, bool journal,
                   const char *text);

void log_error (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
void log_warning (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
void log_info (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
void log_debug (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
//  Debug lines are per message: their arguments are not even evaluated
//  (ids formatted, names looked up) unless debug is on.
void log_test (bool verbose);

#define log_debug(...) \
    (log_enabled (LOG_LEVEL_DEBUG) ? log_debug (__VA_ARGS__) : (void) 0)

//  Rate limits for lines a peer can make us write once per message (a bad
//  frame, a result nobody reads): of each window (10 s) the first
//  LOG_LIMIT_BURST lines are written, the others only counted, and once the
//  window is over one line says "<what>: ... N more in the last 10 s". One
//  static log_limit_t per call site, used from one thread:
//
//      static log_limit_t s_bad = LOG_LIMIT ("client: message dropped");
//      log_warning_limited (&s_bad, "client %s: message dropped: %s", id, why);
#define LOG_LIMIT_BURST 10

typedef struct log_limit_t {
    const char *what;         // subject of the summary line
    int64_t window_start_ms;  // monotonic start of the current window
    uint32_t shown;           // lines written in it
    uint64_t suppressed;      // lines counted, not written, in it
    bool registered;          // in the list log_limits_flush walks
    struct log_limit_t *next;
} log_limit_t;
#define LOG_LIMIT(what)              \
    {                                \
        (what), 0, 0, 0, false, NULL \
    }

//  True if the line may be written now; otherwise counts it. Writes the
//  summary of the previous window first when that one is over.
bool log_limit_pass (log_limit_t *limit);
//  Writes the summary line of every window that is over (call it now and
//  then, e.g. once a second, so that a flood that stopped is still told).
void log_limits_flush (void);
//  The window's length: 10 s, or EMQ_LOG_LIMIT_WINDOW_MS (for tests).
int64_t log_limit_window_ms (void);

#define log_warning_limited(limit, ...) \
    (log_limit_pass (limit) ? log_warning (__VA_ARGS__) : (void) 0)

#endif
