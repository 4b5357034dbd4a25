/*  log — one logging wrapper for every emq program, on czmq's zsys_* (which
    brings syslog and the log identity). Levels: error = an operator must act;
    warning = a peer misbehaved or we recovered; info = lifecycle; debug = per
    message. Subject first, then what happened, then key=value details.
*/
#ifndef EMQ_LOG_H
#define EMQ_LOG_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
