/*  selftest — runs the unit tests: each module's x_test(bool verbose).

        selftest            run every test
        selftest -t NAME    run one (NAME as in the table: emqp, config, ...)
        selftest -v         verbose (tests print what they do)
        selftest -l         list the tests

    A test fails when it increases emq_test_failures (tests/testutil.h
    CHECK macros) or aborts. Prints "ok"/"FAILED" per test and a last line
    "N passed, N failed" that tests/run adds up; exits 1 if anything failed,
    2 for bad arguments.
*/
#include "common/clock.h"
#include "common/log.h"
#include "common/service.h"
#include "common/config.h"
#include "common/errbuf.h"
#include "common/numparse.h"
#include "common/addrlist.h"
#include "common/queuespec.h"
#include "client/ledger.h"
#include "common/emqp.h"
#include "common/headers.h"
#include "common/json.h"
#include "common/payload.h"
#include "router/job.h"
#include "router/dispatch.h"
#include "router/outbox.h"
#include "common/log.h"
#include "router/queues.h"
#include "router/peers.h"
#include "router/router.h"
#include "router/store.h"
#include "router/writer.h"
#include "router/metrics.h"
#include "router/events.h"
#include "router/fences.h"
#include "router/recent.h"
#include "common/pidlock.h"
#include "common/program.h"
#include "common/curve.h"
#include "common/procstat.h"
#include "worker/wire.h"
#include "worker/handoff.h"
#include "worker/plugin.h"
#include "worker/python.h"
#include "worker/command.h"
#include "worker/cgroup.h"
#include "worker/proctree.h"
#include "worker/worker.h"
#include "jobmanager/pool.h"
#include "jobmanager/job.h"
#include "jobmanager/held.h"
#include "jobmanager/settings.h"
#include "jobmanager/workers.h"
#include "jobmanager/jobmanager.h"
#include "common/cron.h"
#include "scheduler/schedules.h"
#include "scheduler/etcd.h"
#include "scheduler/scheduler.h"
#include "web/prom.h"
#include "web/sampler.h"
#include "web/server.h"
#include "pubsub/pubsub.h"
#include "tests/testutil.h"

void emq_client_test (bool verbose);

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    void (*fn) (bool verbose);
} s_test_t;

//  ---- THE TEST TABLE --------------------------------------------------------
//  One line per module's self test, in dependency order (common/ first). Add
//  new modules here and include their header above.
static const s_test_t s_tests[] = {
    { "clock", clock_test },       { "log", log_test },
    { "service", service_test },   { "errbuf", errbuf_test },
    { "numparse", numparse_test }, { "queuespec", queuespec_test },
    { "addrlist", addrlist_test }, { "emqp", emqp_test },
    { "headers", headers_test },   { "config", config_test },
    { "payload", payload_test },   { "json", json_test },
    { "ledger", ledger_test },     { "emq_client", emq_client_test },
    { "job", job_test },           { "queues", queues_test },
    { "dispatch", dispatch_test }, { "outbox", outbox_test },
    { "peers", peers_test },       { "store", store_test },
    { "writer", writer_test },     { "fences", fences_test },
    { "recent", recent_test },     { "pidlock", pidlock_test },
    { "program", program_test },   { "curve", curve_test },
    { "procstat", procstat_test }, { "metrics", metrics_test },
    { "events", events_test },     { "router", router_test },
    { "wire", wire_test },         { "handoff", handoff_test },
    { "plugin", plugin_test },     { "python", python_test },
    { "command", command_test },   { "proctree", proctree_test },
    { "cgroup", cgroup_test },     { "worker", worker_test },
    { "pool", pool_test },         { "jm_job", jm_job_test },
    { "held", held_test },         { "jobmanager_settings", jobmanager_settings_test },
    { "workers", workers_test },   { "jobmanager", jobmanager_test },
    { "cron", cron_test },         { "schedules", schedules_test },
    { "etcd", etcd_test },         { "scheduler", scheduler_test },
    { "pubsub", pubsub_test },     { "prom", prom_test },
    { "sampler", sampler_test },   { "server", server_test },
};
//  ---- END OF THE TEST TABLE -------------------------------------------------
#define S_TEST_COUNT (sizeof s_tests / sizeof s_tests[0])

static void
s_usage (FILE *stream)
{
    fprintf (stream, "usage: selftest [-v] [-l] [-t NAME]...\n");
}

//  Accepts "emqp" or "emqp_test".
static bool
s_matches (const char *name, const char *wanted)
{
    size_t len = strlen (name);
    return streq (name, wanted)
           || (strncmp (wanted, name, len) == 0 && streq (wanted + len, "_test"));
}

int
main (int argc, char *argv[])
{
    bool verbose = false;
    const char *only[64];
    size_t only_count = 0;
    int opt;
    while ((opt = getopt (argc, argv, "vlt:h")) != -1) {
        switch (opt) {
            case 'v':
                verbose = true;
                break;
            case 'l':
                for (size_t i = 0; i < S_TEST_COUNT; i++)
                    printf ("%s\n", s_tests[i].name);
                return 0;
            case 't':
                if (only_count == sizeof only / sizeof only[0]) {
                    fprintf (stderr, "selftest: too many -t options\n");
                    return 2;
                }
                only[only_count++] = optarg;
                break;
            case 'h':
                s_usage (stdout);
                return 0;
            default:
                s_usage (stderr);
                return 2;
        }
    }
    if (optind < argc) {
        s_usage (stderr);
        return 2;
    }
    for (size_t k = 0; k < only_count; k++) {
        bool known = false;
        for (size_t i = 0; i < S_TEST_COUNT; i++)
            known = known || s_matches (s_tests[i].name, only[k]);
        if (!known) {
            fprintf (stderr, "selftest: no test named '%s' (try -l)\n", only[k]);
            return 2;
        }
    }
    //  Tests log through zsys; keep czmq from installing signal handlers.
    zsys_handler_set (NULL);

    int passed = 0, failed = 0;
    for (size_t i = 0; i < S_TEST_COUNT; i++) {
        bool wanted = only_count == 0;
        for (size_t k = 0; k < only_count; k++)
            wanted = wanted || s_matches (s_tests[i].name, only[k]);
        if (!wanted)
            continue;
        int failures_before = emq_test_failures;
        int checks_before = emq_test_checks;
        int64_t start = zclock_usecs ();
        s_tests[i].fn (verbose);
        int64_t elapsed_ms = (zclock_usecs () - start) / 1000;
        int failures = emq_test_failures - failures_before;
        if (failures == 0) {
            printf ("%-12s ok (%d checks, %" PRId64 " ms)\n", s_tests[i].name,
                    emq_test_checks - checks_before, elapsed_ms);
            passed++;
        }
        else {
            printf ("%-12s FAILED (%d of %d checks failed)\n", s_tests[i].name, failures,
                    emq_test_checks - checks_before);
            failed++;
        }
        fflush (stdout);
    }
    printf ("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
