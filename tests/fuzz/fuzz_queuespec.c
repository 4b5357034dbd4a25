/*  fuzz_queuespec — queue lists (common/queuespec.c): the INFORM queues
    frame a job manager sends (JSON) and the `queues` setting (JSON or
    EventMQ's "weight,name name" words).

    Input: the text (a NUL ends it). Properties: a parsed list has 1..256
    valid, distinct names, highest weight first; what the setting accepts
    it returns as JSON that queuespec_parse accepts with the same count.
*/
#include "fuzz.h"

#include "common/queuespec.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char *text = fuzz_cstring (data, size);
    char err[256] = "";
    size_t count = 99;
    queuespec_t *list = queuespec_parse (text, &count, err, sizeof err);
    if (list) {
        FUZZ_ASSERT (count >= 1 && count <= QUEUESPEC_COUNT_MAX);
        for (size_t i = 0; i < count; i++) {
            FUZZ_ASSERT (queuespec_name_check (list[i].name, err, sizeof err) == 0);
            FUZZ_ASSERT (list[i].weight <= QUEUESPEC_WEIGHT_MAX);
            if (i > 0)
                FUZZ_ASSERT (list[i - 1].weight >= list[i].weight);
            for (size_t j = 0; j < i; j++)
                FUZZ_ASSERT (strcmp (list[i].name, list[j].name) != 0);
        }
        free (list);
    }
    else
        FUZZ_ASSERT (count == 0 && *err);
    char *json = queuespec_setting (text, err, sizeof err);
    if (json) {
        size_t again = 0;
        queuespec_t *parsed = queuespec_parse (json, &again, err, sizeof err);
        if (!parsed)
            fprintf (stderr, "setting's JSON refused: %s\n", err);
        FUZZ_ASSERT (parsed && again >= 1);
        free (parsed);
        free (json);
    }
    queuespec_name_check (text, err, sizeof err);
    free (text);
    return 0;
}
