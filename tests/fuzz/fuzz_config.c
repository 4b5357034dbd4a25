/*  fuzz_config — the INI config file (common/config.c), through the same
    path as a file on disk: inih, the [global]/program sections, aliases,
    and every setting's validator (numbers, durations, endpoints, hooks,
    lists, the queues setting through common/queuespec.c).

    Input: the file's text. The first byte picks the program section it is
    loaded for (router, jobmanager, scheduler, cli, or none), so each
    section's rules are reached without a prefix in the corpus files.
    Properties: a refusal gives a reason; an accepted file leaves a config
    whose settings print.
*/
#include "fuzz.h"

#include "common/config.h"
#include "common/log.h"

#include <stdbool.h>

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static bool initialised;
    static FILE *sink;
    if (!initialised) {
        //  Warnings (unknown settings) are expected by the thousand.
        log_init ("fuzz_config", LOG_LEVEL_ERROR);
        sink = fopen ("/dev/null", "w");
        FUZZ_ASSERT (sink);
        initialised = true;
    }
    static const char *sections[] = { "router", "jobmanager", "scheduler", "cli", NULL };
    const char *section = sections[size ? data[0] % 5 : 4];
    config_t *config = config_new ();
    FUZZ_ASSERT (config);
    char err[512] = "";
    if (config_load_text (config, section, "fuzz.conf", (const char *) data, size, err,
                          sizeof err)
        == 0)
        config_print (config, sink);
    else
        FUZZ_ASSERT (*err && memchr (err, 0, sizeof err));
    config_destroy (&config);
    return 0;
}
