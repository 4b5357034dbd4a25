/*  cron — cron expressions and intervals. See cron.h.

    A parsed expression is one bit set per field. The next fire time is
    found in two steps: a search over naive local calendar time ("local
    seconds": the wall clock read as if it were UTC, minute by minute but
    skipping whole months, days and hours that cannot match), then a
    conversion of each matching local time to the instants it denotes in the
    time zone (none: inside a spring-forward gap; two: inside a fall-back
    repeat). Because a fall-back makes instants run backwards against local
    time, the search starts three hours of local time before `after` and
    keeps the smallest instant found until local time has moved three hours
    past it (no zone shifts by more than that in one transition).
*/
#include "cron.h"
#include "errbuf.h"
#include "numparse.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

typedef enum { F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW, F_COUNT } s_field_t;

static const struct {
    const char *name;
    int min, max;
} s_fields[F_COUNT] = {
    { "minute", 0, 59 }, { "hour", 0, 23 },       { "day of month", 1, 31 },
    { "month", 1, 12 },  { "day of week", 0, 7 },
};

static const char *s_months[] = { "jan", "feb", "mar", "apr", "may", "jun",
                                  "jul", "aug", "sep", "oct", "nov", "dec" };
static const char *s_days[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

static const struct {
    const char *macro;
    const char *expr;
} s_macros[] = {
    { "@yearly", "0 0 1 1 *" },  { "@annually", "0 0 1 1 *" },
    { "@monthly", "0 0 1 * *" }, { "@weekly", "0 0 * * 0" },
    { "@daily", "0 0 * * *" },   { "@midnight", "0 0 * * *" },
    { "@hourly", "0 * * * *" },
};

struct cron_t {
    uint64_t bits[F_COUNT];  // bit n set: value n matches (dow: 0..6)
    bool dom_star;           // day-of-month field starts with '*'
    bool dow_star;           // day-of-week field starts with '*'
    bool hour_star;          // hour field starts with '*': runs in both
                             // occurrences of a repeated local hour
    bool reboot;             // @reboot
};

#define S_MAX_TEXT 256
#define S_SEARCH_YEARS 30
#define S_DST_WINDOW (3 * 3600)

//  Reads a number or a name at *p. Returns 0 and advances *p, or -1.
static int
s_value (s_field_t field, const char **p, int *value, char *err, size_t errlen)
{
    const char *s = *p;
    if (isdigit ((unsigned char) *s)) {
        long v = 0;
        while (isdigit ((unsigned char) *s)) {
            v = v * 10 + (*s++ - '0');
            if (v > 1000)
                return errbuf_set (err, errlen, "field %d (%s): number too large",
                                   field + 1, s_fields[field].name);
        }
        *value = (int) v;
        *p = s;
        return 0;
    }
    if (isalpha ((unsigned char) *s)) {
        char word[16];
        size_t len = 0;
        while (isalpha ((unsigned char) s[len]) && len < sizeof word - 1) {
            word[len] = s[len];
            len++;
        }
        word[len] = 0;
        if (len == 3 && field == F_MONTH)
            for (int i = 0; i < 12; i++)
                if (strcasecmp (word, s_months[i]) == 0) {
                    *value = i + 1;
                    *p = s + len;
                    return 0;
                }
        if (len == 3 && field == F_DOW)
            for (int i = 0; i < 7; i++)
                if (strcasecmp (word, s_days[i]) == 0) {
                    *value = i;
                    *p = s + len;
                    return 0;
                }
        return errbuf_set (err, errlen, "field %d (%s): unknown name '%s'%s", field + 1,
                           s_fields[field].name, word,
                           field == F_MONTH ? " (expected jan..dec)"
                           : field == F_DOW
                               ? " (expected sun..sat)"
                               : " (names are allowed in month and day of week only)");
    }
    if (*s == 0)
        return errbuf_set (err, errlen, "field %d (%s): a value is missing", field + 1,
                           s_fields[field].name);
    return errbuf_set (err, errlen, "field %d (%s): unexpected '%c'", field + 1,
                       s_fields[field].name, isprint ((unsigned char) *s) ? *s : '?');
}

static int
s_check_range (s_field_t field, int value, char *err, size_t errlen)
{
    if (value < s_fields[field].min || value > s_fields[field].max)
        return errbuf_set (err, errlen, "field %d (%s): %d is out of range %d..%d",
                           field + 1, s_fields[field].name, value, s_fields[field].min,
                           s_fields[field].max);
    return 0;
}

//  Parses one field's text (no spaces) into bits.
static int
s_parse_field (s_field_t field, const char *text, uint64_t *bits, char *err,
               size_t errlen)
{
    *bits = 0;
    const char *p = text;
    while (true) {
        int lo, hi, step = 1;
        bool star = false;
        if (*p == '*') {
            lo = s_fields[field].min;
            hi = s_fields[field].max;
            star = true;
            p++;
        }
        else {
            if (s_value (field, &p, &lo, err, errlen)
                || s_check_range (field, lo, err, errlen))
                return -1;
            hi = lo;
            if (*p == '-') {
                p++;
                if (s_value (field, &p, &hi, err, errlen)
                    || s_check_range (field, hi, err, errlen))
                    return -1;
                if (hi < lo)
                    return errbuf_set (err, errlen,
                                       "field %d (%s): range %d-%d is backwards",
                                       field + 1, s_fields[field].name, lo, hi);
            }
        }
        if (*p == '/') {
            p++;
            if (!isdigit ((unsigned char) *p))
                return errbuf_set (err, errlen, "field %d (%s): a step must be a number",
                                   field + 1, s_fields[field].name);
            if (s_value (field, &p, &step, err, errlen))
                return -1;
            if (step < 1 || step > s_fields[field].max)
                return errbuf_set (
                    err, errlen, "field %d (%s): step %d is out of range 1..%d",
                    field + 1, s_fields[field].name, step, s_fields[field].max);
            //  "5/15" means 5-max/15 (cronie and most crons).
            if (!star && hi == lo)
                hi = s_fields[field].max;
        }
        for (int v = lo; v <= hi; v += step)
            *bits |= 1ULL << (field == F_DOW && v == 7 ? 0 : v);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == 0)
            return 0;
        return errbuf_set (err, errlen, "field %d (%s): unexpected '%c'", field + 1,
                           s_fields[field].name, isprint ((unsigned char) *p) ? *p : '?');
    }
}

cron_t *
cron_new (const char *expr, char *err, size_t errlen)
{
    if (!expr) {
        errbuf_set (err, errlen, "no cron expression");
        return NULL;
    }
    while (isspace ((unsigned char) *expr))
        expr++;
    if (strlen (expr) > S_MAX_TEXT) {
        errbuf_set (err, errlen, "cron expression longer than %d characters", S_MAX_TEXT);
        return NULL;
    }
    char text[S_MAX_TEXT + 1];
    snprintf (text, sizeof text, "%s", expr);
    for (size_t n = strlen (text); n && isspace ((unsigned char) text[n - 1]); n--)
        text[n - 1] = 0;
    cron_t *self = calloc (1, sizeof (cron_t));
    if (!self) {
        errbuf_set (err, errlen, "out of memory");
        return NULL;
    }
    if (text[0] == '@') {
        if (strcasecmp (text, "@reboot") == 0) {
            self->reboot = true;
            return self;
        }
        size_t i;
        for (i = 0; i < sizeof s_macros / sizeof s_macros[0]; i++)
            if (strcasecmp (text, s_macros[i].macro) == 0)
                break;
        if (i == sizeof s_macros / sizeof s_macros[0]) {
            errbuf_set (err, errlen,
                        "unknown macro '%s' (expected @yearly, @annually, "
                        "@monthly, @weekly, @daily, @midnight, @hourly or @reboot)",
                        text);
            free (self);
            return NULL;
        }
        snprintf (text, sizeof text, "%s", s_macros[i].expr);
    }
    char *fields[F_COUNT + 1];
    int count = 0;
    char *save = NULL;
    for (char *tok = strtok_r (text, " \t", &save); tok;
         tok = strtok_r (NULL, " \t", &save)) {
        if (count == F_COUNT) {
            count++;
            break;
        }
        fields[count++] = tok;
    }
    if (count != F_COUNT) {
        errbuf_set (err, errlen,
                    "expected 5 fields (minute hour day-of-month month "
                    "day-of-week), got %s%d",
                    count > F_COUNT ? "more than " : "", count > F_COUNT ? 5 : count);
        free (self);
        return NULL;
    }
    for (int f = 0; f < F_COUNT; f++)
        if (s_parse_field ((s_field_t) f, fields[f], &self->bits[f], err, errlen)) {
            free (self);
            return NULL;
        }
    self->hour_star = fields[F_HOUR][0] == '*';
    self->dom_star = fields[F_DOM][0] == '*';
    self->dow_star = fields[F_DOW][0] == '*';
    return self;
}

void
cron_destroy (cron_t **self_p)
{
    if (self_p && *self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

bool
cron_is_reboot (const cron_t *self)
{
    return self->reboot;
}

//  --------------------------------------------------------------------------
//  Time zones

//  The process's own TZ, put back after each computation so that logs and
//  everything else keep the zone the process started with.
static bool s_tz_saved;
static char *s_tz_original;  // NULL: TZ was not set

static void
s_tz_use (const char *tz)
{
    if (!s_tz_saved) {
        const char *original = getenv ("TZ");
        s_tz_original = original ? strdup (original) : NULL;
        s_tz_saved = true;
    }
    setenv ("TZ", tz && *tz ? tz : "UTC", 1);
    tzset ();
}

static void
s_tz_restore (void)
{
    if (s_tz_original)
        setenv ("TZ", s_tz_original, 1);
    else
        unsetenv ("TZ");
    tzset ();
}

//  Seconds east of UTC at instant t in the current zone.
static long
s_offset (int64_t t)
{
    time_t tt = (time_t) t;
    struct tm tm;
    if (!localtime_r (&tt, &tm))
        return 0;
    return tm.tm_gmtoff;
}

int
cron_tz_check (const char *tz, char *err, size_t errlen)
{
    if (!tz || !*tz || strcmp (tz, "UTC") == 0)
        return 0;
    //  glibc silently treats an unknown name as UTC: look for the zone file.
    if (tz[0] == '/' || strstr (tz, "..") || strlen (tz) > 200)
        return errbuf_set (err, errlen, "time zone '%.200s' is not a zone name", tz);
    const char *dir = getenv ("TZDIR");
    char path[512];
    snprintf (path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", tz);
    if (access (path, R_OK) != 0)
        return errbuf_set (err, errlen, "unknown time zone '%s' (no %s)", tz, path);
    return 0;
}

//  --------------------------------------------------------------------------
//  Search

static bool
s_day_matches (const cron_t *self, const struct tm *tm)
{
    bool dom = self->bits[F_DOM] & (1ULL << tm->tm_mday);
    bool dow = self->bits[F_DOW] & (1ULL << tm->tm_wday);
    //  Vixie cron: either field unrestricted -> both must match (the star
    //  one always does); both restricted -> either is enough.
    return (self->dom_star || self->dow_star) ? (dom && dow) : (dom || dow);
}

static int64_t
s_civil (int year, int mon0, int mday, int hour, int min)
{
    struct tm tm = { .tm_year = year - 1900,
                     .tm_mon = mon0,
                     .tm_mday = mday,
                     .tm_hour = hour,
                     .tm_min = min };
    return (int64_t) timegm (&tm);
}

//  The first matching local time >= local (naive local seconds, any second
//  within a minute rounds up), or -1 past limit.
static int64_t
s_next_local (const cron_t *self, int64_t local, int64_t limit)
{
    if (local % 60)
        local += 60 - ((local % 60) + 60) % 60;
    while (local <= limit) {
        time_t tt = (time_t) local;
        struct tm tm;
        gmtime_r (&tt, &tm);
        if (!(self->bits[F_MONTH] & (1ULL << (tm.tm_mon + 1)))) {
            local = s_civil (tm.tm_year + 1900, tm.tm_mon + 1, 1, 0, 0);
            continue;
        }
        if (!s_day_matches (self, &tm)) {
            local = s_civil (tm.tm_year + 1900, tm.tm_mon, tm.tm_mday + 1, 0, 0);
            continue;
        }
        if (!(self->bits[F_HOUR] & (1ULL << tm.tm_hour))) {
            local = s_civil (tm.tm_year + 1900, tm.tm_mon, tm.tm_mday, tm.tm_hour + 1, 0);
            continue;
        }
        int minute = tm.tm_min;
        while (minute < 60 && !(self->bits[F_MINUTE] & (1ULL << minute)))
            minute++;
        if (minute == 60) {
            local = s_civil (tm.tm_year + 1900, tm.tm_mon, tm.tm_mday, tm.tm_hour + 1, 0);
            continue;
        }
        return s_civil (tm.tm_year + 1900, tm.tm_mon, tm.tm_mday, tm.tm_hour, minute);
    }
    return -1;
}

//  The instants a local time denotes in the current zone: writes 1 or 2
//  (ascending) to out and returns the count. A local time inside a gap
//  yields the gap's end (the first valid instant after it).
static int
s_instants (int64_t local, int64_t out[2])
{
    long before = s_offset (local - 86400);
    long after = s_offset (local + 86400);
    int n = 0;
    long offsets[2] = { before, after };
    for (int i = 0; i < (before == after ? 1 : 2); i++) {
        int64_t t = local - offsets[i];
        if (s_offset (t) == offsets[i])
            out[n++] = t;
    }
    if (n == 2 && out[0] > out[1]) {
        int64_t swap = out[0];
        out[0] = out[1];
        out[1] = swap;
    }
    if (n > 0)
        return n;
    //  A gap: local time jumps over `local`. Find the first instant whose
    //  local time is past it: that is the transition.
    long hi_off = before > after ? before : after;
    long lo_off = before > after ? after : before;
    int64_t lo = local - hi_off;  // local time there is before the gap
    int64_t hi = local - lo_off;  // and past it here
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (mid + s_offset (mid) > local)
            hi = mid;
        else
            lo = mid;
    }
    out[0] = hi;
    return 1;
}

int64_t
cron_next (const cron_t *self, int64_t after, const char *tz)
{
    if (self->reboot)
        return -1;
    s_tz_use (tz);
    int64_t limit = after + (int64_t) S_SEARCH_YEARS * 366 * 86400;
    int64_t local = after + s_offset (after) - S_DST_WINDOW;
    int64_t best = -1, best_local = 0;
    while (true) {
        local = s_next_local (self, local, limit);
        if (local < 0)
            break;
        if (best >= 0 && local > best_local + S_DST_WINDOW)
            break;
        int64_t instants[2];
        int n = s_instants (local, instants);
        for (int i = 0; i < n; i++) {
            //  The second occurrence of a repeated local time only for
            //  schedules that run every hour.
            if (i == 1 && !self->hour_star)
                break;
            if (instants[i] > after && (best < 0 || instants[i] < best)) {
                best = instants[i];
                best_local = local;
            }
        }
        local += 60;
    }
    s_tz_restore ();
    return best;
}

//  --------------------------------------------------------------------------
//  Intervals

int
cron_interval_parse (const char *text, int64_t *seconds, char *err, size_t errlen)
{
    if (!text || !*text)
        return errbuf_set (err, errlen,
                           "empty interval (expected e.g. 30, 30s, 15m or 2h)");
    const int64_t most_s = CRON_INTERVAL_MAX_S;
    const char *p = text + strspn (text, "0123456789");
    uint64_t number = 0;
    if (p > text
        && numparse_uint_n (text, (size_t) (p - text), (uint64_t) most_s, &number))
        return errbuf_set (err, errlen, "interval '%.64s' is too long (at most 10 years)",
                           text);
    int64_t value = (int64_t) number;
    int64_t unit = 0;
    if (p == text)
        unit = 0;
    else if (*p == 0 || strcmp (p, "s") == 0)
        unit = 1;
    else if (strcmp (p, "m") == 0)
        unit = 60;
    else if (strcmp (p, "h") == 0)
        unit = 3600;
    if (!unit)
        return errbuf_set (err, errlen,
                           "interval '%.64s' is not whole seconds with an "
                           "optional unit s, m or h (e.g. 30, 30s, 15m, 2h)",
                           text);
    value *= unit;
    if (value < 1)
        return errbuf_set (err, errlen, "interval '%.64s' must be at least 1 second",
                           text);
    if (value > most_s)
        return errbuf_set (err, errlen, "interval '%.64s' is too long (at most 10 years)",
                           text);
    *seconds = value;
    return 0;
}

int64_t
cron_interval_next (int64_t anchor, int64_t interval, int64_t after)
{
    if (interval < 1)
        interval = 1;
    if (after < anchor)
        return anchor + interval;
    int64_t k = (after - anchor) / interval + 1;
    return anchor + k * interval;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
cron_test (bool verbose)
{
    if (verbose)
        printf (" * cron: ");
    char err[256];

    //  Next fire times: expression, zone, after (unix s), expected (unix s;
    //  -1 = never). Expected values were worked out with date(1) -d.
    static const struct {
        const char *expr;
        const char *tz;
        int64_t after;
        int64_t expect;
        const char *why;
    } cases[] = {
        //  2024-01-01 00:00:00 UTC = 1704067200
        { "*/15 * * * *", NULL, 1704067200, 1704068100, "step" },
        { "*/15 * * * *", NULL, 1704067200 + 30, 1704068100, "mid-minute" },
        { "* * * * *", NULL, 1704067259, 1704067260, "every minute" },
        { "5 4 * * *", NULL, 1704067200, 1704081900, "daily 04:05" },
        { "0 0 1 * *", NULL, 1704067200, 1706745600, "monthly from the 1st itself" },
        { "@hourly", "", 1704067200, 1704070800, "@hourly" },
        { "@daily", NULL, 1704067200, 1704153600, "@daily" },
        { "@weekly", NULL, 1704067200, 1704585600, "@weekly: Sunday 2024-01-07" },
        { "@monthly", NULL, 1704067200, 1706745600, "@monthly" },
        { "@yearly", NULL, 1704067200, 1735689600, "@yearly" },
        { "0 0 * * 7", NULL, 1704067200, 1704585600, "7 is Sunday" },
        { "0 9 * jan-mar mon-fri", NULL, 1704067200, 1704099600,
          "names, Mon 2024-01-01 09:00" },
        { "0 9 * JUL Sat", NULL, 1704067200, 1720256400,
          "names, any case: Sat 2024-07-06" },
        { "0 12 1,15 * *", NULL, 1704067200 + 43200, 1705320000, "list: 15th" },
        { "10-20/5 1 * * *", NULL, 1704067200, 1704071400, "range with step: 01:10" },
        { "50/5 * * * *", NULL, 1704067200, 1704070200, "N/step: 00:50" },
        //  dom/dow: both restricted -> OR; 2024-09-01 00:00 UTC = 1725148800 (Sun)
        { "0 0 13 * 5", NULL, 1725148800, 1725580800, "OR: Friday 2024-09-06 first" },
        { "0 0 2 * 5", NULL, 1725148800, 1725235200, "OR: the 2nd (a Monday) first" },
        //  one starts with '*' -> AND: a 1st/11th/21st/31st that is a Monday
        { "0 0 */10 * 1", NULL, 1725148800, 1729468800, "AND with */10: Mon 2024-10-21" },
        //  Leap days: 2024-03-01 00:00 UTC = 1709251200; 2028-02-29 = 1835395200
        { "0 0 29 2 *", NULL, 1709251200, 1835395200, "leap day: next in 2028" },
        { "0 0 29 2 *", NULL, 1704067200, 1709164800, "leap day: 2024-02-29" },
        { "0 0 28 2 *", NULL, 1709164800 - 86400, 1740700800, "Feb 28 after 2024-02-28" },
        { "0 0 30 2 *", NULL, 1704067200, -1, "Feb 30 never comes" },
        { "0 0 31 4 *", NULL, 1704067200, -1, "Apr 31 never comes" },
        //  Europe/Berlin spring forward 2024-03-31 01:00 UTC (02:00 CET -> 03:00 CEST)
        { "0 2 * * *", "Europe/Berlin", 1711800000, 1711846800,
          "skipped 02:00 -> 03:00 CEST" },
        { "30 2 * * *", "Europe/Berlin", 1711800000, 1711846800,
          "skipped 02:30 -> 03:00 CEST" },
        { "30 2 * * *", "Europe/Berlin", 1711846800, 1711931400,
          "then 02:30 CEST next day" },
        { "*/15 2 * * *", "Europe/Berlin", 1711800000, 1711846800,
          "4 skipped -> once at 03:00" },
        { "*/15 2,3 * * *", "Europe/Berlin", 1711846800, 1711847700,
          "03:00 not twice: 03:15" },
        { "0 3 * * *", "Europe/Berlin", 1711800000, 1711846800, "03:00 CEST itself" },
        //  Europe/Berlin fall back 2024-10-27 01:00 UTC (03:00 CEST -> 02:00 CET)
        { "30 2 * * *", "Europe/Berlin", 1729944000, 1729989000,
          "repeated 02:30: first (CEST)" },
        { "30 2 * * *", "Europe/Berlin", 1729989000, 1730079000,
          "not again in CET: next day" },
        { "*/30 * * * *", "Europe/Berlin", 1729989000, 1729990800,
          "hourly-ish: 02:00 CEST->" },
        { "*/30 * * * *", "Europe/Berlin", 1729990800, 1729992600,
          "02:00 CET (second time)" },
        { "0 * * * *", "Europe/Berlin", 1729989000, 1729990800,
          "hour '*': 02:00 CET runs" },
        //  America/New_York: spring 2024-03-10 07:00 UTC, fall 2024-11-03 06:00 UTC
        { "30 2 * * *", "America/New_York", 1710000000, 1710054000,
          "skipped 02:30 -> 03:00 EDT" },
        { "30 1 * * *", "America/New_York", 1730548800, 1730611800,
          "repeated 01:30: EDT" },
        { "30 1 * * *", "America/New_York", 1730611800, 1730701800,
          "then 01:30 EST next day" },
        { "0 9 * * *", "America/New_York", 1704067200, 1704117600,
          "09:00 EST = 14:00 UTC" },
        { "0 9 * * *", "America/New_York", 1719792000, 1719838800,
          "09:00 EDT = 13:00 UTC" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cron_t *cron = cron_new (cases[i].expr, err, sizeof err);
        CHECK (cron != NULL);
        if (!cron) {
            fprintf (stderr, "   '%s': %s\n", cases[i].expr, err);
            continue;
        }
        int64_t next = cron_next (cron, cases[i].after, cases[i].tz);
        if (next != cases[i].expect)
            fprintf (stderr, "   cron case %zu '%s' %s after %lld (%s): got %lld\n", i,
                     cases[i].expr, cases[i].tz ? cases[i].tz : "UTC",
                     (long long) cases[i].after, cases[i].why, (long long) next);
        CHECK_EQ (next, cases[i].expect);
        cron_destroy (&cron);
        CHECK (cron == NULL);
    }
    cron_destroy (NULL);

    //  @reboot has no times of its own.
    cron_t *reboot = cron_new ("@reboot", err, sizeof err);
    CHECK (reboot && cron_is_reboot (reboot));
    CHECK_EQ (cron_next (reboot, 0, NULL), -1);
    cron_destroy (&reboot);

    //  Bad expressions: each message says what is wrong.
    static const struct {
        const char *expr;
        const char *expect;
    } bad[] = {
        { "", "expected 5 fields" },
        { "* * * *", "got 4" },
        { "* * * * * *", "got more than 5" },
        { "60 * * * *", "field 1 (minute): 60 is out of range 0..59" },
        { "* 24 * * *", "field 2 (hour): 24 is out of range 0..23" },
        { "* * 0 * *", "field 3 (day of month): 0 is out of range 1..31" },
        { "* * * 13 *", "field 4 (month): 13 is out of range 1..12" },
        { "* * * * 8", "field 5 (day of week): 8 is out of range 0..7" },
        { "*/0 * * * *", "step 0 is out of range" },
        { "*/x * * * *", "a step must be a number" },
        { "5-3 * * * *", "range 5-3 is backwards" },
        { "* * * foo *", "unknown name 'foo' (expected jan..dec)" },
        { "* * * * funday", "unknown name 'funday'" },
        { "mon * * * *", "names are allowed in month and day of week only" },
        { "1,,2 * * * *", "field 1 (minute): unexpected ','" },
        { "1, * * * *", "a value is missing" },
        { "@often", "unknown macro '@often'" },
        { "1-2-3 * * * *", "unexpected '-'" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        cron_t *cron = cron_new (bad[i].expr, err, sizeof err);
        CHECK (cron == NULL);
        CHECK_CONTAINS (err, bad[i].expect);
        cron_destroy (&cron);
        if (verbose)
            printf ("\n   '%s': %s", bad[i].expr, err);
    }
    CHECK (cron_new (NULL, err, sizeof err) == NULL);

    //  Time zones.
    CHECK_EQ (cron_tz_check ("Europe/Berlin", err, sizeof err), 0);
    CHECK_EQ (cron_tz_check ("", err, sizeof err), 0);
    CHECK_EQ (cron_tz_check ("Mars/Olympus", err, sizeof err), -1);
    CHECK_CONTAINS (err, "unknown time zone 'Mars/Olympus'");
    CHECK_EQ (cron_tz_check ("../etc/passwd", err, sizeof err), -1);

    //  Intervals.
    static const struct {
        const char *text;
        int64_t seconds;  // -1: rejected
    } intervals[] = {
        { "30", 30 },   { "30s", 30 },
        { "15m", 900 }, { "2h", 7200 },
        { "1", 1 },     { "0", -1 },
        { "0s", -1 },   { "", -1 },
        { "s", -1 },    { "10x", -1 },
        { "-5", -1 },   { "1.5h", -1 },
        { "5 m", -1 },  { "99999999999h", -1 },
        { "1d", -1 },
    };
    for (size_t i = 0; i < sizeof intervals / sizeof intervals[0]; i++) {
        int64_t seconds = -1;
        int rc = cron_interval_parse (intervals[i].text, &seconds, err, sizeof err);
        CHECK_EQ (rc, intervals[i].seconds < 0 ? -1 : 0);
        if (rc == 0)
            CHECK_EQ (seconds, intervals[i].seconds);
    }
    CHECK_EQ (cron_interval_next (100, 10, 100), 110);
    CHECK_EQ (cron_interval_next (100, 10, 105), 110);
    CHECK_EQ (cron_interval_next (100, 10, 110), 120);
    CHECK_EQ (cron_interval_next (100, 10, 50), 110);
    CHECK_EQ (cron_interval_next (100, 10, 100 + 3600 * 10 + 9), 100 + 36010);
    CHECK_EQ (cron_interval_next (100, 0, 100), 101);

    //  The process's zone is back as it was.
    const char *tz = getenv ("TZ");
    CHECK (tz == NULL || strcmp (tz, "Europe/Berlin") != 0);
    if (verbose)
        printf ("OK\n");
}
