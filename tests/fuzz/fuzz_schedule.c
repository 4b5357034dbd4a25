/*  fuzz_schedule — a stored schedule (scheduler/schedules.c): the JSON
    record etcd holds for each schedule (sched_from_json), which a scheduler
    reads when it starts leading, with its cron expression and base64
    payload.

    Input: the record's bytes. Properties: a refusal gives a reason; an
    accepted record writes back as JSON that reads again to the same name,
    interval, fire times and payload.
*/
#include "fuzz.h"

#include "scheduler/schedules.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char err[256] = "";
    sched_t *sched = sched_from_json ((const char *) data, size, err, sizeof err);
    if (!sched) {
        FUZZ_ASSERT (*err);
        return 0;
    }
    char *json = sched_to_json (sched);
    FUZZ_ASSERT (json);
    sched_t *again = sched_from_json (json, strlen (json), err, sizeof err);
    if (!again)
        fprintf (stderr, "written schedule refused: %s\n", err);
    FUZZ_ASSERT (again);
    FUZZ_ASSERT (strcmp (again->name, sched->name) == 0);
    FUZZ_ASSERT (again->interval_s == sched->interval_s);
    FUZZ_ASSERT (again->next_fire == sched->next_fire
                 && again->last_fire == sched->last_fire);
    FUZZ_ASSERT (again->payload_size == sched->payload_size);
    FUZZ_ASSERT (sched->payload_size == 0
                 || memcmp (again->payload, sched->payload, sched->payload_size) == 0);
    sched_destroy (&again);
    free (json);
    sched_destroy (&sched);
    return 0;
}
