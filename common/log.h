/*  log — one logging wrapper for every emq program, on czmq's zsys_* (which
    brings syslog and the log identity). Levels: error = an operator must act;
    warning = a peer misbehaved or we recovered; info = lifecycle; debug = per
    message. Subject first, then what happened, then key=value details.
*/
#ifndef EMQ_LOG_H
#define EMQ_LOG_H

#include <stdbool.h>

typedef enum {
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARNING,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG
} log_level_t;

//  Sets the program name shown in logs and the threshold. Call once at start.
void log_init (const char *ident, log_level_t level);
//  Parses "error|warning|info|debug"; returns 0 or -1.
int log_level_parse (const char *name, log_level_t *level);
void log_set_level (log_level_t level);
bool log_enabled (log_level_t level);

void log_error (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
void log_warning (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
void log_info (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
void log_debug (const char *format, ...) __attribute__ ((format (printf, 1, 2)));
//  Debug lines are per message: their arguments are not even evaluated
//  (ids formatted, names looked up) unless debug is on.
#define log_debug(...) \
    (log_enabled (LOG_LEVEL_DEBUG) ? log_debug (__VA_ARGS__) : (void) 0)

#endif
