/*  durable_path — integration tests for issue 9, part 4: the router's
    writer thread.

    slow_disk: every fsync of the router takes 500 ms (tests/slowsync.c,
    preloaded into emq-router only). Under --fsync always an ACK still
    waits for its job's fsync; but the router's loop does not: while a
    commit is on its way, jobs already ACKed are dispatched and run, and
    STATUS is answered at once. A router whose loop ran its commits would
    answer after each 500 ms fsync.

    restart_epoch: a dispatch is written late (with the job's end, or by
    itself once the job has run for a second), so a job that runs across a
    kill -9 of the router still has its epoch in the store, and the DONE of
    that dispatch ends it after the restart instead of running it again.

    Part of the `integration` program (see integration.c for main and
    harness.h for the runner). Figures are printed on lines starting with
    "    #".
*/
#include "harness.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_Q "[[10,\"default\"]]"

static void __attribute__ ((format (printf, 2, 3)))
s_report (h_test_t *t, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    printf ("    # %s: ", t->name);
    vprintf (format, args);
    printf ("\n");
    fflush (stdout);
    va_end (args);
}

static sqlite3 *
s_db_open (h_test_t *t)
{
    char path[H_PATH_MAX + 64];
    snprintf (path, sizeof path, "%s/data/emq.db", t->dir);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2 (path, &db, SQLITE_OPEN_READWRITE, NULL);
    REQUIRE_MSG (rc == SQLITE_OK, "sqlite3_open_v2(%s): %s", path,
                 db ? sqlite3_errmsg (db) : sqlite3_errstr (rc));
    sqlite3_busy_timeout (db, h_ms (5000));
    return db;
}

//  A job's row: state (empty if none), attempt and epoch.
typedef struct {
    char state[16];
    long long attempt, epoch;
} s_row_t;

static s_row_t
s_db_row (sqlite3 *db, const char *msgid)
{
    s_row_t row = { "", -1, -1 };
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (
        db, "SELECT state, attempt, epoch FROM jobs WHERE msgid = ?", -1, &stmt, NULL);
    REQUIRE_MSG (rc == SQLITE_OK, "prepare: %s", sqlite3_errmsg (db));
    sqlite3_bind_text (stmt, 1, msgid, -1, SQLITE_TRANSIENT);
    if (sqlite3_step (stmt) == SQLITE_ROW) {
        snprintf (row.state, sizeof row.state, "%s", sqlite3_column_text (stmt, 0));
        row.attempt = sqlite3_column_int64 (stmt, 1);
        row.epoch = sqlite3_column_int64 (stmt, 2);
    }
    sqlite3_finalize (stmt);
    return row;
}

static long long
s_jm_requests (h_test_t *t, const char *name)
{
    json_t *info = h_jm_info (t, name, NULL);
    long long value = h_jint (info, -1, "stats", "total_requests", NULL);
    json_decref (info);
    return value;
}

//  ---------------------------------------------------------------------
//  A slow disk stalls ACKs (under always), never the loop

typedef struct {
    char msgid[37];
    int64_t sent_ms, acked_ms;  // 0 until then
    bool result;
} s_sent_t;

#define S_JOBS_MAX 400

typedef struct {
    h_test_t *t;
    emq_client_t *client;
    sqlite3 *db;
    s_sent_t jobs[S_JOBS_MAX];
    int count, acked, results;
    void *payload;
    size_t size;
} s_stream_t;

static void
s_stream_submit (s_stream_t *stream)
{
    REQUIRE (stream->count < S_JOBS_MAX);
    s_sent_t *job = &stream->jobs[stream->count];
    emq_submit_opts_t opts = { .reply = true };
    int rc = emq_submit_async (stream->client, &opts, stream->payload, stream->size,
                               job->msgid);
    REQUIRE_MSG (rc == 0, "emq_submit_async: %d (%s)", rc,
                 emq_client_last_error (stream->client));
    job->sent_ms = clock_mono_ms ();
    stream->count++;
}

//  Takes the events that came; each ACKed job's row must be in the store
//  by then (the ACK follows the commit).
static void
s_stream_drain (s_stream_t *stream, int timeout_ms)
{
    emq_event_t event;
    while (emq_poll (stream->client, timeout_ms, &event) == 0) {
        timeout_ms = 0;
        s_sent_t *job = NULL;
        for (int i = 0; i < stream->count && !job; i++)
            if (strcmp (stream->jobs[i].msgid, event.msgid) == 0)
                job = &stream->jobs[i];
        REQUIRE_MSG (job != NULL, "event for a job not ours: %s", event.msgid);
        REQUIRE_MSG (event.type != EMQ_EVENT_ERROR, "job %s refused: %s", job->msgid,
                     event.code);
        if (event.type == EMQ_EVENT_ACK) {
            REQUIRE_MSG (job->acked_ms == 0, "job %s ACKed twice", job->msgid);
            job->acked_ms = clock_mono_ms ();
            stream->acked++;
            s_row_t row = s_db_row (stream->db, job->msgid);
            REQUIRE_MSG (row.state[0], "job %s ACKed, but no row in the store",
                         job->msgid);
        }
        else {
            REQUIRE_MSG (event.status == EMQ_JOB_OK, "job %s ended %s", job->msgid,
                         emq_job_status_name (event.status));
            job->result = true;
            stream->results++;
        }
    }
}

static void
test_slow_disk (h_test_t *t)
{
    const int sync_ms = 500;
    char shim[H_PATH_MAX + 64], delay[16], asan[1024];
    snprintf (shim, sizeof shim, "%s/tests/libslowsync.so", h_build_dir ());
    REQUIRE_MSG (access (shim, R_OK) == 0, "%s is missing (make builds it)", shim);
    snprintf (delay, sizeof delay, "%d", sync_ms);
    //  The router alone gets the slow disk (a sanitizer build accepts a
    //  library preloaded before its runtime with this option).
    const char *old_asan = getenv ("ASAN_OPTIONS");
    snprintf (asan, sizeof asan, "%s%sverify_asan_link_order=0", old_asan ? old_asan : "",
              old_asan && *old_asan ? ":" : "");
    char *saved_asan = old_asan ? strdup (old_asan) : NULL;
    setenv ("ASAN_OPTIONS", asan, 1);
    setenv ("LD_PRELOAD", shim, 1);
    setenv ("EMQ_SLOWSYNC_MS", delay, 1);
    h_router (t, "router", "--fsync", "always", NULL);
    unsetenv ("LD_PRELOAD");
    unsetenv ("EMQ_SLOWSYNC_MS");
    if (saved_asan)
        setenv ("ASAN_OPTIONS", saved_asan, 1);
    else
        unsetenv ("ASAN_OPTIONS");
    free (saved_asan);

    static s_stream_t stream;
    memset (&stream, 0, sizeof stream);
    stream.t = t;
    stream.client = emq_client_new (t->frontend);
    REQUIRE (stream.client);
    stream.db = s_db_open (t);
    h_payload_run ("noop", NULL, &stream.payload, &stream.size);

    //  20 jobs, no job manager yet: their ACKs wait for the fsync.
    const int backlog = 20;
    for (int i = 0; i < backlog; i++)
        s_stream_submit (&stream);
    int64_t deadline = clock_mono_ms () + h_ms (15000);
    while (stream.acked < backlog) {
        REQUIRE_MSG (clock_mono_ms () < deadline, "%d of %d ACKed", stream.acked,
                     backlog);
        s_stream_drain (&stream, 100);
    }
    int64_t first_ack_ms = stream.jobs[0].acked_ms - stream.jobs[0].sent_ms;
    REQUIRE_MSG (first_ack_ms >= sync_ms - 50,
                 "an ACK %lld ms after its REQUEST, with "
                 "%d ms fsyncs under --fsync always",
                 (long long) first_ack_ms, sync_ms);

    //  A new job every 25 ms keeps a slow commit always on its way; then a
    //  job manager comes. The backlog runs at once, and STATUS answers at
    //  once; the new jobs' ACKs each wait for their fsync.
    int64_t start = clock_mono_ms (), registered_ms = 0, backlog_done_ms = 0,
            last_submit = 0;
    int64_t status_max_ms = 0, next_status = start;
    int probes = 0;
    bool jm_started = false;
    while (clock_mono_ms () - start < h_ms (3000) || stream.acked < stream.count) {
        REQUIRE_MSG (clock_mono_ms () - start < h_ms (20000),
                     "%d of %d ACKed, %d results", stream.acked, stream.count,
                     stream.results);
        int64_t now = clock_mono_ms ();
        if (now - start < h_ms (3000) && now - last_submit >= 25) {
            s_stream_submit (&stream);
            last_submit = now;
        }
        if (!jm_started && now - start >= h_ms (300)) {
            h_jm (t, "jm", DEFAULT_Q, 2, NULL);
            jm_started = true;
        }
        if (now >= next_status && now - start < h_ms (3000)) {
            //  A STATUS round trip (which also says when the jm is in).
            int64_t asked = clock_mono_ms ();
            bool registered = jm_started && h_jm_registered (t, "jm");
            int64_t took = clock_mono_ms () - asked;
            if (registered && !registered_ms)
                registered_ms = clock_mono_ms ();
            status_max_ms = took > status_max_ms ? took : status_max_ms;
            probes++;
            next_status = clock_mono_ms () + 50;
        }
        s_stream_drain (&stream, 5);
        if (registered_ms && !backlog_done_ms) {
            bool all = true;
            for (int i = 0; i < backlog; i++)
                all = all && stream.jobs[i].result;
            if (all)
                backlog_done_ms = clock_mono_ms () - registered_ms;
        }
    }
    int64_t ack_min = INT64_MAX, ack_max = 0;
    for (int i = backlog; i < stream.count; i++) {
        int64_t took = stream.jobs[i].acked_ms - stream.jobs[i].sent_ms;
        ack_min = took < ack_min ? took : ack_min;
        ack_max = took > ack_max ? took : ack_max;
    }
    s_report (t,
              "fsync %d ms: %d ACKed jobs ran within %lld ms of the job manager's "
              "registration; "
              "STATUS answered in %lld ms at most (%d probes); %d more jobs ACKed "
              "%lld..%lld ms "
              "after their REQUEST",
              sync_ms, backlog, (long long) backlog_done_ms, (long long) status_max_ms,
              probes, stream.count - backlog, (long long) ack_min, (long long) ack_max);
    REQUIRE_MSG (
        backlog_done_ms > 0 && backlog_done_ms < h_ms (sync_ms),
        "the ACKed backlog took %lld ms to run after the job manager registered: "
        "dispatch waited for the disk",
        (long long) backlog_done_ms);
    REQUIRE_MSG (status_max_ms < h_ms (sync_ms / 2),
                 "STATUS took %lld ms: the loop waited "
                 "for the disk",
                 (long long) status_max_ms);
    REQUIRE_MSG (ack_min >= sync_ms - 50,
                 "a job ACKed %lld ms after its REQUEST: before its "
                 "fsync",
                 (long long) ack_min);
    //  Every job runs, once.
    deadline = clock_mono_ms () + h_ms (15000);
    while (stream.results < stream.count) {
        REQUIRE_MSG (clock_mono_ms () < deadline, "%d of %d results", stream.results,
                     stream.count);
        s_stream_drain (&stream, 100);
    }
    REQUIRE_WAIT (s_jm_requests (t, "jm") == stream.count, 5000);
    sqlite3_close (stream.db);
    free (stream.payload);
    emq_client_destroy (&stream.client);
}

//  ---------------------------------------------------------------------
//  A job running across a kill -9 keeps its epoch

static void
test_restart_epoch (h_test_t *t)
{
    //  No prefetch: after the restart the job, queued again, must not be
    //  sent to the busy job manager before its DONE comes.
    pid_t router = h_router (t, "router-1", "--prefetch", "0", NULL);
    h_jm (t, "jm", DEFAULT_Q, 1, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    emq_client_t *client = emq_client_new (t->frontend);
    REQUIRE (client);
    emq_client_set_connect_timeout (client, h_ms (10000));
    char msgid[37];
    h_submit_run (client, NULL, "sleep", "3", 0, msgid);
    REQUIRE_WAIT (h_jm_job_pid (t, "jm", msgid) > 0, 5000);
    int64_t running = clock_mono_ms ();

    //  Nothing else is written, and still its dispatch reaches the store:
    //  by itself, about a second after it was made.
    sqlite3 *db = s_db_open (t);
    REQUIRE_WAIT (strcmp (s_db_row (db, msgid).state, "running") == 0, 3000);
    s_row_t row = s_db_row (db, msgid);
    REQUIRE_MSG (row.epoch > 0 && row.attempt == 1,
                 "running row: attempt %lld, epoch %lld", row.attempt, row.epoch);
    s_report (t,
              "the dispatch of a running job was in the store %lld ms after it started",
              (long long) (clock_mono_ms () - running));

    h_kill (t, router, SIGKILL, false);
    REQUIRE (h_proc_wait (t, router, 5000, NULL));
    h_router (t, "router-2", "--prefetch", "0", NULL);
    //  The job ends when its worker does, with that dispatch's DONE.
    emq_event_t event;
    int rc = emq_wait_result (client, msgid, h_ms (20000), &event);
    REQUIRE_MSG (rc == 0, "the job's result: %d (%s)", rc, emq_strerror (rc));
    REQUIRE_WAIT (strcmp (s_db_row (db, msgid).state, "done") == 0, 5000);
    row = s_db_row (db, msgid);
    REQUIRE_INT (row.attempt, ==, 1);
    REQUIRE_INT (s_jm_requests (t, "jm"), ==, 1);
    char path[H_PATH_MAX + 32];
    snprintf (path, sizeof path, "%s/router-2.log", t->dir);
    FILE *file = fopen (path, "r");
    char log[8192] = "";
    if (file) {
        log[fread (log, 1, sizeof log - 1, file)] = 0;
        fclose (file);
    }
    REQUIRE_MSG (strstr (log, "ended under the previous router life"),
                 "router-2 did not end the job with the old dispatch's DONE: %s", log);
    s_report (t, "after kill -9 and restart, the old dispatch's DONE ended the job: "
                 "run once, attempt 1");
    sqlite3_close (db);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------

const h_testdef_t h_durable_path_tests[] = {
    { "slow_disk", test_slow_disk,
      "500 ms fsyncs: ACKs wait for them, dispatch and STATUS do not" },
    { "restart_epoch", test_restart_epoch,
      "a job running across kill -9 keeps its epoch: its DONE ends it, run once" },
};

const size_t h_durable_path_count =
    sizeof h_durable_path_tests / sizeof h_durable_path_tests[0];
