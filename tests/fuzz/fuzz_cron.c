/*  fuzz_cron — cron expressions, time zones and intervals (common/cron.c),
    as a SCHEDULE message brings them.

    Input: lines. Line 1 is a cron expression; line 2, if any, a time zone
    name (checked with cron_tz_check first, as the scheduler does); line 3,
    if any, an interval ("90", "15m").
    Properties: an accepted expression's next fire time after a few fixed
    instants is later than the instant (or -1), and asking again from one
    second before it gives the same time; an accepted interval is 1 s .. 10
    years and cron_interval_next lands on its grid.
*/
#include "fuzz.h"

#include "common/cron.h"

#include <inttypes.h>

//  A few instants to start from: 2026-01-01, around a DST change in
//  Europe, a leap day, and 2037 (near the 32-bit limit).
static const int64_t s_after[] = { 1767225600, 1774746000, 1709164800, 2145916800 };

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char *text = fuzz_cstring (data, size);
    char *lines[3] = { text, NULL, NULL };
    for (int i = 0; i < 2 && lines[i]; i++) {
        char *newline = strchr (lines[i], '\n');
        if (newline) {
            *newline = 0;
            lines[i + 1] = newline + 1;
        }
    }
    char err[256] = "";
    const char *tz = NULL;
    if (lines[1] && cron_tz_check (lines[1], err, sizeof err) == 0)
        tz = lines[1];
    cron_t *cron = cron_new (lines[0], err, sizeof err);
    if (cron) {
        //  Bounded work per input: one instant, unless the expression is cheap.
        for (size_t i = 0; i < sizeof s_after / sizeof s_after[0]; i++) {
            int64_t after = s_after[i];
            int64_t next = cron_next (cron, after, tz);
            if (cron_is_reboot (cron))
                FUZZ_ASSERT (next == -1);
            if (next == -1)
                continue;
            if (next <= after)
                fprintf (stderr, "cron_next (%" PRId64 ") = %" PRId64 "\n", after, next);
            FUZZ_ASSERT (next > after);
            int64_t again = cron_next (cron, next - 1, tz);
            if (again != next)
                fprintf (stderr,
                         "cron_next (%" PRId64 ") = %" PRId64 ", from %" PRId64
                         " = %" PRId64 "\n",
                         after, next, next - 1, again);
            FUZZ_ASSERT (again == next);
        }
        cron_destroy (&cron);
    }
    else
        FUZZ_ASSERT (*err);
    if (lines[2]) {
        int64_t seconds = 0;
        if (cron_interval_parse (lines[2], &seconds, err, sizeof err) == 0) {
            FUZZ_ASSERT (seconds >= 1 && seconds <= 10LL * 366 * 86400);
            int64_t next = cron_interval_next (s_after[0], seconds, s_after[1]);
            FUZZ_ASSERT (next > s_after[1] && (next - s_after[0]) % seconds == 0);
        }
    }
    free (text);
    return 0;
}
