/*  log — levels on top of czmq's zsys logging. See log.h. */
#include "log.h"

#include <czmq.h>
#include <stdarg.h>
#include <stdio.h>

static log_level_t s_level = LOG_LEVEL_INFO;

void
log_init (const char *ident, log_level_t level)
{
    zsys_set_logident (ident);
    s_level = level;
}

int
log_level_parse (const char *name, log_level_t *level)
{
    static const char *names[] = { "error", "warning", "info", "debug" };
    for (int i = 0; i < 4; i++)
        if (streq (name, names[i])) {
            *level = (log_level_t) i;
            return 0;
        }
    return -1;
}

void
log_set_level (log_level_t level)
{
    s_level = level;
}

bool
log_enabled (log_level_t level)
{
    return level <= s_level;
}

#define S_LOG_BODY(level, sink)                  \
    if (!log_enabled (level))                    \
        return;                                  \
    char line[2048];                             \
    va_list args;                                \
    va_start (args, format);                     \
    vsnprintf (line, sizeof line, format, args); \
    va_end (args);                               \
    sink ("%s", line);

void
log_error (const char *format, ...)
{
    S_LOG_BODY (LOG_LEVEL_ERROR, zsys_error)
}
void
log_warning (const char *format, ...)
{
    S_LOG_BODY (LOG_LEVEL_WARNING, zsys_warning)
}
void
log_info (const char *format, ...)
{
    S_LOG_BODY (LOG_LEVEL_INFO, zsys_info)
}
void (log_debug) (const char *format, ...)
{
    S_LOG_BODY (LOG_LEVEL_DEBUG, zsys_debug)
}
