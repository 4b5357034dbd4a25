/*  cron — cron expressions and intervals: parsing and the next fire time.

    An expression has the five classic fields (minute hour day-of-month month
    day-of-week) with lists (1,5), ranges (1-5), steps (every 15: "*" then "/15"; 1-30/5; 5/15),
    month names (jan..dec) and weekday names (sun..sat; 0 and 7 are Sunday),
    or is one of the macros @yearly (@annually), @monthly, @weekly, @daily
    (@midnight), @hourly and @reboot (once each time a scheduler starts
    leading). Day of month and day of week combine as in Vixie cron: when
    both are restricted (neither starts with '*') a day matches if either
    does; otherwise only the restricted one counts.

    Times are evaluated in a time zone (an IANA name such as Europe/Berlin;
    NULL or "" = UTC). Daylight saving time, as cron users expect:
      - a local time skipped by a spring-forward transition fires once, at
        the first valid instant after the gap (e.g. 02:30 -> 03:00 CEST);
        several matches inside one gap still fire once;
      - a local time repeated by a fall-back transition fires once, at its
        first occurrence; a schedule whose hour field is '*' (it runs every
        hour) runs in both occurrences, as Vixie cron does for such jobs.

    Time zones are switched with setenv(TZ) + tzset for each computation
    (and the process's own TZ put back after), so this module is not
    thread-safe; the scheduler is single-threaded.
*/
#ifndef EMQ_SCHEDULER_CRON_H
#define EMQ_SCHEDULER_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cron_t cron_t;

//  Parses expr. Returns a new cron the caller owns, or NULL with the reason
//  in err (e.g. "field 2 (hour): 25 is out of range 0..23").
cron_t *cron_new (const char *expr, char *err, size_t errlen);
//  Destroys a cron and nulls the pointer; NULL is fine.
void cron_destroy (cron_t **self_p);
//  True for @reboot: no times of its own, fires when a scheduler starts.
bool cron_is_reboot (const cron_t *self);

//  The first fire instant strictly after `after` (unix seconds) in time zone
//  tz (NULL/"" = UTC). Returns unix seconds, or -1 when the expression never
//  fires within the next 30 years (e.g. "0 0 30 2 *") or for @reboot.
int64_t cron_next (const cron_t *self, int64_t after, const char *tz);

//  Checks that tz names a time zone this host knows (or is empty = UTC).
//  Returns 0, or -1 with the reason in err.
int cron_tz_check (const char *tz, char *err, size_t errlen);

//  The longest interval (10 years of 366 days), in seconds.
#define CRON_INTERVAL_MAX_S (10LL * 366 * 86400)

//  Parses an interval: whole seconds with an optional unit s, m or h ("90",
//  "90s", "15m", "2h"), 1 s .. 10 years. Returns 0 and sets *seconds, or -1
//  with the reason in err.
int cron_interval_parse (const char *text, int64_t *seconds, char *err, size_t errlen);

//  Interval arithmetic: the first time anchor + k * interval (k >= 1) that
//  is strictly after `after` (when after < anchor: anchor + interval).
int64_t cron_interval_next (int64_t anchor, int64_t interval, int64_t after);

void cron_test (bool verbose);

#endif
