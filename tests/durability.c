/*  durability — integration tests for issue 3 ("never lose a job"): the
    router's SQLite store under kill -9, job managers killed with jobs
    running, dead jobs, a restart with a large backlog, one router per data
    directory (--takeover, --standby), a full disk, results fetched later,
    delayed and cancelled jobs, idempotent submits.

    Part of the `integration` program (see integration.c for main and
    harness.h for the runner). Load tests scale their job counts down with
    h_count () under valgrind and the sanitizers, and print the figures they
    measured (jobs, lost, duplicates, timings) on lines starting with "    #".

    A job counts as ACKed only when its ACK reached the client; the pass
    criterion of the crash tests is that every ACKed msgid ends `done` in the
    router's database (read with libsqlite3, read-only, like an operator's
    `sqlite3 emq.db`).
*/
#include "harness.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_Q "[[10,\"default\"]]"

//  ---------------------------------------------------------------------
//  Helpers

//  Prints a figure of the test, verbose or not.
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

static emq_client_t *
s_client (h_test_t *t)
{
    emq_client_t *client = emq_client_new (t->frontend);
    REQUIRE_MSG (client != NULL, "emq_client_new(%s) failed", t->frontend);
    return client;
}

static long long
s_status_int (h_test_t *t, long long dflt, const char *a, const char *b, const char *c)
{
    json_t *status = h_admin (t, "STATUS");
    long long value = h_jint (status, dflt, a, b, c, NULL);
    json_decref (status);
    return value;
}

//  A number from the job manager's own stats (as of its last heartbeat).
static long long
s_jm_stat (h_test_t *t, const char *name, const char *key)
{
    json_t *info = h_jm_info (t, name, NULL);
    long long value = h_jint (info, -1, "stats", key, NULL);
    json_decref (info);
    return value;
}

static void
s_exit_check (h_test_t *t, pid_t pid, int timeout_ms, int expected, const char *what)
{
    int status = 0;
    bool exited = h_proc_wait (t, pid, timeout_ms, &status);
    REQUIRE_MSG (exited, "%s (pid %d) still running after %d ms", what, (int) pid,
                 h_ms (timeout_ms));
    REQUIRE_MSG (WIFEXITED (status), "%s ended by signal %d", what,
                 WIFSIGNALED (status) ? WTERMSIG (status) : -1);
    REQUIRE_MSG (WEXITSTATUS (status) == expected, "%s exited %d, expected %d", what,
                 WEXITSTATUS (status), expected);
}

//  kill -9 the router and reap it.
static void
s_kill9 (h_test_t *t, pid_t pid)
{
    h_kill (t, pid, SIGKILL, false);
    REQUIRE_MSG (h_proc_wait (t, pid, 5000, NULL), "router %d survived SIGKILL",
                 (int) pid);
}

//  STATUS store.failing: 1 true, 0 false, -1 missing.
static int
s_store_failing (h_test_t *t)
{
    json_t *status = h_admin (t, "STATUS");
    json_t *failing = h_jget (status, "store", "failing", NULL);
    int value = json_is_true (failing) ? 1 : json_is_false (failing) ? 0 : -1;
    json_decref (status);
    return value;
}

//  The router's database, read by the test as an operator would: with
//  libsqlite3 (`sqlite3 emq.db`), or with libpq when the test runs its
//  routers on PostgreSQL (h_store_dsn set: `psql`). The queries are plain
//  SQL that both accept.
typedef struct {
    sqlite3 *lite;
    sqlite3_stmt *job;  // state and attempt of a msgid
    PGconn *pg;
} s_db_t;

//  SQLite: opened to read while the router runs (WAL). Not
//  SQLITE_OPEN_READONLY: a read-only connection can be refused
//  ("unable to open") while the router's checkpoint rewrites the -shm
//  index; this connection only ever reads.
static s_db_t *
s_db_open (h_test_t *t, const char *data_dir)
{
    s_db_t *db = (s_db_t *) calloc (1, sizeof (s_db_t));
    REQUIRE (db != NULL);
    if (h_store_dsn) {
        db->pg = h_pg_connect (t);
        return db;
    }
    char path[H_PATH_MAX + 64];
    if (data_dir)
        snprintf (path, sizeof path, "%s/emq.db", data_dir);
    else
        snprintf (path, sizeof path, "%s/data/emq.db", t->dir);
    int rc = sqlite3_open_v2 (path, &db->lite, SQLITE_OPEN_READWRITE, NULL);
    REQUIRE_MSG (rc == SQLITE_OK, "sqlite3_open_v2(%s): %s", path,
                 db->lite ? sqlite3_errmsg (db->lite) : sqlite3_errstr (rc));
    sqlite3_busy_timeout (db->lite, h_ms (5000));
    rc = sqlite3_prepare_v2 (db->lite, "SELECT state, attempt FROM jobs WHERE msgid = ?",
                             -1, &db->job, NULL);
    REQUIRE_MSG (rc == SQLITE_OK, "prepare: %s", sqlite3_errmsg (db->lite));
    return db;
}

static void
s_db_close (s_db_t **db_p)
{
    s_db_t *db = *db_p;
    if (!db)
        return;
    sqlite3_finalize (db->job);
    if (db->lite)
        sqlite3_close (db->lite);
    PQfinish (db->pg);
    free (db);
    *db_p = NULL;
}

//  The integer a one-row query returns (-1 when it returns no row).
static long long
s_db_int (s_db_t *db, const char *sql)
{
    if (db->pg) {
        PGresult *res = PQexec (db->pg, sql);
        REQUIRE_MSG (res && PQresultStatus (res) == PGRES_TUPLES_OK, "'%s': %s", sql,
                     PQerrorMessage (db->pg));
        long long value =
            PQntuples (res) ? strtoll (PQgetvalue (res, 0, 0), NULL, 10) : -1;
        PQclear (res);
        return value;
    }
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2 (db->lite, sql, -1, &stmt, NULL);
    REQUIRE_MSG (rc == SQLITE_OK, "prepare '%s': %s", sql, sqlite3_errmsg (db->lite));
    long long value = -1;
    rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        value = sqlite3_column_int64 (stmt, 0);
    else
        REQUIRE_MSG (rc == SQLITE_DONE, "step '%s': %s", sql, sqlite3_errmsg (db->lite));
    sqlite3_finalize (stmt);
    return value;
}

//  A job's state and attempt count in the database; false if no such row.
static bool
s_db_job (s_db_t *db, const char *msgid, char *state, size_t state_size,
          long long *attempt)
{
    if (db->pg) {
        const char *values[] = { msgid };
        int lengths[] = { (int) strlen (msgid) }, formats[] = { 1 };
        PGresult *res = PQexecParams (db->pg,
                                      "SELECT state, attempt FROM jobs"
                                      " WHERE msgid = $1::bytea",
                                      1, NULL, values, lengths, formats, 0);
        REQUIRE_MSG (res && PQresultStatus (res) == PGRES_TUPLES_OK, "select %s: %s",
                     msgid, PQerrorMessage (db->pg));
        bool found = PQntuples (res) == 1;
        if (found) {
            snprintf (state, state_size, "%s", PQgetvalue (res, 0, 0));
            *attempt = strtoll (PQgetvalue (res, 0, 1), NULL, 10);
        }
        PQclear (res);
        return found;
    }
    sqlite3_stmt *stmt = db->job;
    sqlite3_reset (stmt);
    sqlite3_bind_text (stmt, 1, msgid, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step (stmt);
    if (rc != SQLITE_ROW) {
        REQUIRE_MSG (rc == SQLITE_DONE, "select %s: %s", msgid,
                     sqlite3_errmsg (db->lite));
        return false;
    }
    const unsigned char *text = sqlite3_column_text (stmt, 0);
    snprintf (state, state_size, "%s", text ? (const char *) text : "");
    *attempt = sqlite3_column_int64 (stmt, 1);
    return true;
}

//  ---------------------------------------------------------------------
//  A stream of jobs from one libemq client, many in flight

typedef struct {
    char msgid[37];
    bool acked;      // its ACK reached the client
    bool abandoned;  // unACKed when its router died: sent again
                     // under a new msgid
    int results;
} s_job_t;

typedef struct {
    h_test_t *t;
    emq_client_t *client;
    s_job_t *jobs;
    size_t count, cap;
    zhashx_t *index;  // msgid -> index + 1
    size_t inflight;  // submitted, not ACKed, not abandoned
    size_t acked, results, resubmitted;
    size_t storage_errors;  // ERROR STORAGE (when allowed)
    bool allow_storage_errors;
    bool check_order;       // RESULTs must come in submission order
    long long last_result;  // index of the latest RESULT (check_order)
    void *payload;
    size_t size;
    emq_submit_opts_t opts;
} s_load_t;

static void
s_load_init (s_load_t *load, h_test_t *t, emq_client_t *client, size_t cap,
             const char *function, const char *args)
{
    memset (load, 0, sizeof *load);
    load->t = t;
    load->client = client;
    load->cap = cap;
    load->jobs = calloc (cap, sizeof (s_job_t));
    REQUIRE (load->jobs);
    load->index = zhashx_new ();
    load->last_result = -1;
    h_payload_run (function, args, &load->payload, &load->size);
    load->opts.reply = true;
}

static void
s_load_destroy (s_load_t *load)
{
    zhashx_destroy (&load->index);
    free (load->jobs);
    free (load->payload);
}

static size_t
s_load_submit (s_load_t *load)
{
    REQUIRE_MSG (load->count < load->cap, "more than %zu submissions", load->cap);
    s_job_t *job = &load->jobs[load->count];
    int rc = emq_submit_async (load->client, &load->opts, load->payload, load->size,
                               job->msgid);
    REQUIRE_MSG (rc == 0, "emq_submit_async #%zu: %d (%s)", load->count, rc,
                 emq_client_last_error (load->client));
    zhashx_insert (load->index, job->msgid, (void *) (uintptr_t) (load->count + 1));
    load->inflight++;
    return load->count++;
}

//  Submits n jobs at once with emq_submit_many (BATCHes once the router has
//  said it takes them).
static void
s_load_submit_many (s_load_t *load, size_t n)
{
    REQUIRE_MSG (load->count + n <= load->cap, "more than %zu submissions", load->cap);
    const void **payloads = calloc (n, sizeof (void *));
    size_t *sizes = calloc (n, sizeof (size_t));
    char (*ids)[37] = calloc (n, 37);
    REQUIRE (payloads && sizes && ids);
    for (size_t i = 0; i < n; i++) {
        payloads[i] = load->payload;
        sizes[i] = load->size;
    }
    size_t sent = 0;
    int rc = emq_submit_many (load->client, &load->opts, payloads, sizes, n, ids, &sent);
    REQUIRE_MSG (rc == 0, "emq_submit_many of %zu: %d (%s)", n, rc,
                 emq_client_last_error (load->client));
    for (size_t i = 0; i < sent; i++) {
        s_job_t *job = &load->jobs[load->count];
        memcpy (job->msgid, ids[i], 37);
        zhashx_insert (load->index, job->msgid, (void *) (uintptr_t) (load->count + 1));
        load->inflight++;
        load->count++;
    }
    free (payloads);
    free (sizes);
    free (ids);
}

static void
s_load_event (s_load_t *load, const emq_event_t *event)
{
    uintptr_t slot = (uintptr_t) zhashx_lookup (load->index, event->msgid);
    if (slot == 0) {
        h_log (load->t, "event %d for a msgid not ours: %s", (int) event->type,
               event->msgid);
        return;
    }
    size_t i = slot - 1;
    s_job_t *job = &load->jobs[i];
    if (event->type == EMQ_EVENT_ACK) {
        REQUIRE_MSG (!job->acked, "job %zu (%s) ACKed twice", i, job->msgid);
        job->acked = true;
        load->acked++;
        if (!job->abandoned)
            load->inflight--;
        return;
    }
    if (event->type == EMQ_EVENT_ERROR) {
        REQUIRE_MSG (load->allow_storage_errors && strcmp (event->code, "STORAGE") == 0,
                     "job %zu (%s) refused: %s %.*s", i, job->msgid, event->code,
                     (int) event->size, (const char *) event->data);
        load->storage_errors++;
        //  Not kept: neither ACKed nor pending any more.
        if (!job->abandoned) {
            job->abandoned = true;
            load->inflight--;
        }
        return;
    }
    char *text = h_result_text (event);
    REQUIRE_MSG (event->status == EMQ_JOB_OK, "job %zu (%s) ended %s: %s", i, job->msgid,
                 emq_job_status_name (event->status), text);
    free (text);
    job->results++;
    load->results++;
    if (load->check_order) {
        REQUIRE_MSG ((long long) i > load->last_result,
                     "out of order: job %zu (%s) ended after job %lld", i, job->msgid,
                     load->last_result);
        load->last_result = (long long) i;
    }
}

//  Handles every event that arrives within timeout_ms (not scaled) of the
//  previous one, up to max (0: no limit); returns how many.
static size_t
s_load_drain_max (s_load_t *load, int timeout_ms, size_t max)
{
    size_t count = 0;
    emq_event_t event;
    while ((max == 0 || count < max)
           && emq_poll (load->client, timeout_ms, &event) == 0) {
        s_load_event (load, &event);
        count++;
    }
    return count;
}

static size_t
s_load_drain (s_load_t *load, int timeout_ms)
{
    return s_load_drain_max (load, timeout_ms, 0);
}

//  Submits again, under new msgids, every job not ACKed (its router died).
static size_t
s_load_resubmit (s_load_t *load)
{
    size_t end = load->count, count = 0;
    for (size_t i = 0; i < end; i++) {
        s_job_t *job = &load->jobs[i];
        if (job->acked || job->abandoned)
            continue;
        job->abandoned = true;
        load->inflight--;
        s_load_submit (load);
        count++;
    }
    load->resubmitted += count;
    return count;
}

//  Submits jobs, keeping up to window unACKed, until `count` more have been
//  sent; then waits until all are ACKed (or refused, when allowed).
static void
s_load_run (s_load_t *load, size_t count, size_t window, int timeout_ms)
{
    int64_t deadline = clock_mono_ms () + h_ms (timeout_ms);
    size_t sent = 0;
    while (sent < count || load->inflight > 0) {
        REQUIRE_MSG (clock_mono_ms () < deadline,
                     "%zu of %zu sent, %zu unACKed after %d ms", sent, count,
                     load->inflight, h_ms (timeout_ms));
        s_load_drain_max (load, 0, 200);
        if (sent < count && load->inflight < window) {
            s_load_submit (load);
            sent++;
            continue;
        }
        s_load_drain_max (load, 100, 200);
    }
}

typedef struct {
    size_t acked, lost, missing, redispatched, stored_unacked, abandoned;
    long long max_attempt;
} s_verdict_t;

//  Every ACKed job must have ended done; counts the figures.
static s_verdict_t
s_load_verify (s_load_t *load, s_db_t *db)
{
    s_verdict_t v = { 0 };
    size_t reported = 0;
    for (size_t i = 0; i < load->count; i++) {
        s_job_t *job = &load->jobs[i];
        char state[32] = "";
        long long attempt = 0;
        bool found = s_db_job (db, job->msgid, state, sizeof state, &attempt);
        if (!job->acked) {
            v.abandoned++;
            if (found)
                v.stored_unacked++;
            continue;
        }
        v.acked++;
        if (!found || strcmp (state, "done") != 0) {
            v.lost++;
            v.missing += !found;
            if (reported++ < 10)
                printf ("    LOST: job %zu %s: %s (attempt %lld)\n", i, job->msgid,
                        found ? state : "no row", attempt);
            continue;
        }
        if (attempt > 1)
            v.redispatched++;
        if (attempt > v.max_attempt)
            v.max_attempt = attempt;
    }
    return v;
}

//  The jobs the job managers named were handed, per their stats, once the
//  stats account for at least `at_least` (they come with heartbeats).
static long long
s_jm_requests (h_test_t *t, const char *const *names, long long at_least)
{
    long long sum = 0;
    int64_t deadline = clock_mono_ms () + h_ms (3000);
    do {
        sum = 0;
        for (size_t i = 0; names[i]; i++) {
            long long n = s_jm_stat (t, names[i], "total_requests");
            sum += n > 0 ? n : 0;
        }
        if (sum >= at_least)
            break;
        h_nap ();
    } while (clock_mono_ms () < deadline);
    return sum;
}

//  ---------------------------------------------------------------------
//  1. kill -9 the router while a client submits: no ACKed job lost

static void
test_router_kill9_rounds (h_test_t *t)
{
    const int rounds = 3;
    //  On PostgreSQL fewer: the suite's time budget.
    int total = h_count (h_store_dsn ? 6000 : 20000);
    int per_round = total / rounds > 10 ? total / rounds : 10;
    unsigned seed = (unsigned) time (NULL) ^ (unsigned) getpid ();
    srandom (seed);

    pid_t router =
        h_router (t, "router-1", "--fsync", "always", "--queue-hwm", "1000000", NULL);
    h_jm (t, "jma", DEFAULT_Q, 2, NULL);
    h_jm (t, "jmb", DEFAULT_Q, 2, NULL);
    h_wait_jm (t, "jma", 10000, NULL);
    h_wait_jm (t, "jmb", 10000, NULL);
    emq_client_t *client = s_client (t);
    emq_client_set_connect_timeout (client, h_ms (10000));
    s_load_t load;
    s_load_init (&load, t, client, (size_t) per_round * rounds * 2 + 1000, "noop", NULL);
    s_report (t,
              "%d rounds of %d jobs (seed %u), fsync always, 2 job managers x 2 workers",
              rounds, per_round, seed);

    int64_t start = clock_mono_ms ();
    const size_t window = 2000;
    for (int round = 0; round < rounds; round++) {
        int kill_at = per_round / 5 + (int) (random () % (per_round * 3 / 5 + 1));
        size_t acked0 = load.acked;
        int sent = 0;
        bool killed = false;
        int64_t deadline = clock_mono_ms () + h_ms (60000);
        while (!killed || sent < per_round || load.inflight > 0) {
            REQUIRE_MSG (clock_mono_ms () < deadline,
                         "round %d: %d sent, %zu unACKed, killed %d", round + 1, sent,
                         load.inflight, killed);
            s_load_drain_max (&load, 0, 50);
            if (!killed && load.acked - acked0 >= (size_t) kill_at) {
                //  Mid-stream: a burst of jobs on its way, then kill -9.
                for (int i = 0; i < 300 && sent < per_round; i++, sent++)
                    s_load_submit (&load);
                size_t inflight = load.inflight;
                s_kill9 (t, router);
                //  ACKs already on their way to us still count.
                size_t late = s_load_drain (&load, 100);
                s_db_t *db = s_db_open (t, NULL);
                long long queued =
                    s_db_int (db, "SELECT count(*) FROM jobs WHERE state = 'queued'");
                long long running =
                    s_db_int (db, "SELECT count(*) FROM jobs WHERE state = 'running'");
                s_db_close (&db);
                char tag[32];
                snprintf (tag, sizeof tag, "router-%d", round + 2);
                int64_t restart = clock_mono_ms ();
                router = h_router (t, tag, "--fsync", "always", "--queue-hwm", "1000000",
                                   NULL);
                int64_t up_ms = clock_mono_ms () - restart;
                size_t again = s_load_resubmit (&load);
                s_report (t,
                          "round %d: kill -9 after %zu ACKs with %zu unACKed in flight "
                          "(%zu ACKs late), %lld queued and %lld running in the store; "
                          "restarted in %lld ms, %zu sent again",
                          round + 1, load.acked - acked0 - late, inflight, late, queued,
                          running, (long long) up_ms, again);
                killed = true;
                continue;
            }
            if (sent < per_round && load.inflight < window) {
                for (int i = 0; i < 100 && sent < per_round && load.inflight < window;
                     i++, sent++)
                    s_load_submit (&load);
                continue;
            }
            s_load_drain_max (&load, 50, 50);
        }
    }
    int64_t submitted_ms = clock_mono_ms () - start;

    //  Wait until the router has ended every job it holds.
    s_db_t *db = s_db_open (t, NULL);
    REQUIRE_WAIT (s_db_int (db, "SELECT count(*) FROM jobs WHERE state != 'done'") == 0,
                  60000);
    int64_t drained_ms = clock_mono_ms () - start;
    long long done = s_db_int (db, "SELECT count(*) FROM jobs WHERE state = 'done'");
    const char *jms[] = { "jma", "jmb", NULL };
    long long runs = s_jm_requests (t, jms, done);
    s_verdict_t v = s_load_verify (&load, db);
    s_db_close (&db);
    s_load_drain (&load, 0);

    s_report (
        t,
        "%zu jobs ACKed (%zu sent, %zu sent again after a crash), all ACKed in %.2f s, "
        "all done in %.2f s",
        v.acked, load.count, load.resubmitted, submitted_ms / 1000.0,
        drained_ms / 1000.0);
    s_report (t,
              "lost %zu (no row %zu); unACKed but stored and run anyway %zu of %zu; "
              "re-dispatched (attempt > 1) %zu, max attempt %lld",
              v.lost, v.missing, v.stored_unacked, v.abandoned, v.redispatched,
              v.max_attempt);
    s_report (t,
              "job managers ran %lld jobs for %lld done rows: %lld duplicates; "
              "%zu RESULTs reached the client",
              runs, done, runs - done, load.results);
    REQUIRE_INT (v.lost, ==, 0);
    REQUIRE_INT (v.acked + v.stored_unacked, ==, done);
    REQUIRE_INT (runs, >=, done);

    emq_client_destroy (&client);
    s_load_destroy (&load);
    kill (router, SIGTERM);
    s_exit_check (t, router, 10000, 0, "router (SIGTERM)");
}

//  ---------------------------------------------------------------------
//  1b. The same with batches: a client submitting BATCHes of 200, the
//  router killed with batches on their way. A batch is ACKed job by job
//  after its commit: whatever was ACKed is kept, whatever was not may be
//  sent again.

static void
test_batch_kill9 (h_test_t *t)
{
    int total = h_count (h_store_dsn ? 3000 : 6000);
    pid_t router =
        h_router (t, "router-1", "--fsync", "always", "--queue-hwm", "1000000", NULL);
    h_jm (t, "jma", DEFAULT_Q, 2, NULL);
    h_wait_jm (t, "jma", 10000, NULL);
    emq_client_t *client = s_client (t);
    emq_client_set_connect_timeout (client, h_ms (10000));
    s_load_t load;
    s_load_init (&load, t, client, (size_t) total * 2 + 1000, "noop", NULL);
    //  One job alone first: its ACK tells libemq the router takes batches.
    s_load_submit (&load);
    REQUIRE_WAIT ((s_load_drain_max (&load, 0, 0), load.acked == 1), 5000);

    int64_t deadline = clock_mono_ms () + h_ms (60000);
    bool killed = false;
    size_t kill_at = (size_t) total / 3;
    while (!killed || (int) load.count < total || load.inflight > 0) {
        REQUIRE_MSG (clock_mono_ms () < deadline, "%zu sent, %zu unACKed, killed %d",
                     load.count, load.inflight, killed);
        s_load_drain_max (&load, 0, 0);
        if (!killed && (load.acked >= kill_at || (int) load.count >= total)) {
            //  Two batches on their way, then kill -9.
            s_load_submit_many (&load, 200);
            s_load_submit_many (&load, 200);
            size_t inflight = load.inflight;
            s_kill9 (t, router);
            size_t late = s_load_drain (&load, 100);
            router = h_router (t, "router-2", "--fsync", "always", "--queue-hwm",
                               "1000000", NULL);
            size_t again = s_load_resubmit (&load);
            s_report (
                t,
                "kill -9 after %zu ACKs with %zu unACKed in flight (%zu ACKs late); "
                "%zu sent again",
                load.acked - late, inflight, late, again);
            killed = true;
            continue;
        }
        if ((int) load.count < total && load.inflight < 2000) {
            size_t n =
                (size_t) total - load.count < 200 ? (size_t) total - load.count : 200;
            s_load_submit_many (&load, n);
            continue;
        }
        s_load_drain_max (&load, 50, 0);
    }
    REQUIRE (killed);
    s_db_t *db = s_db_open (t, NULL);
    REQUIRE_WAIT (s_db_int (db, "SELECT count(*) FROM jobs WHERE state != 'done'") == 0,
                  60000);
    long long done = s_db_int (db, "SELECT count(*) FROM jobs WHERE state = 'done'");
    s_verdict_t v = s_load_verify (&load, db);
    s_db_close (&db);
    json_t *status = h_admin (t, "STATUS");
    long long batches = h_jint (status, -1, "traffic", "batches_in", NULL);
    json_decref (status);
    s_report (
        t,
        "%zu jobs ACKed of %zu sent in batches (%lld BATCHes to the second router); "
        "lost %zu; unACKed but stored %zu of %zu; %lld done rows",
        v.acked, load.count, batches, v.lost, v.stored_unacked, v.abandoned, done);
    REQUIRE_INT (v.lost, ==, 0);
    REQUIRE_INT (v.acked + v.stored_unacked, ==, done);
    REQUIRE_INT (batches, >=, 1);
    s_load_drain (&load, 0);
    emq_client_destroy (&client);
    s_load_destroy (&load);
    kill (router, SIGTERM);
    s_exit_check (t, router, 10000, 0, "router (SIGTERM)");
}

//  ---------------------------------------------------------------------
//  2. kill -9 a job manager with jobs running: they finish on the other

static void
test_jm_kill9_jobs_finish (h_test_t *t)
{
    h_router (t, "router", NULL);
    pid_t jma = h_jm (t, "jma", DEFAULT_Q, 3, NULL);
    h_wait_jm (t, "jma", 10000, NULL);
    REQUIRE_WAIT (h_jm_has_slots (t, "jma", 3), 5000);
    emq_client_t *client = s_client (t);

    //  Three jobs on jma (the only one there), then jmb joins.
    enum { JOBS = 5 };
    char msgids[JOBS][37];
    for (int i = 0; i < JOBS; i++)
        h_submit_run (client, NULL, "sleep", "1", 0, msgids[i]);
    h_jm (t, "jmb", DEFAULT_Q, 3, NULL);
    h_wait_jm (t, "jmb", 10000, NULL);
    //  jma's own stats name the jobs its workers run.
    bool on_a[JOBS] = { false };
    int running_on_a = 0;
    int64_t deadline = clock_mono_ms () + h_ms (5000);
    while (running_on_a < 3 && clock_mono_ms () < deadline) {
        running_on_a = 0;
        for (int i = 0; i < JOBS; i++) {
            on_a[i] = h_jm_job_pid (t, "jma", msgids[i]) > 0;
            running_on_a += on_a[i];
        }
        if (running_on_a < 3)
            h_nap ();
    }
    REQUIRE_INT (running_on_a, ==, 3);

    int64_t killed = clock_mono_ms ();
    h_kill (t, jma, SIGKILL, true);
    REQUIRE (h_proc_wait (t, jma, 5000, NULL));

    int moved_ok = 0;
    for (int i = 0; i < JOBS; i++) {
        emq_event_t event;
        int rc = emq_wait_result (client, msgids[i], h_ms (20000), &event);
        REQUIRE_MSG (rc != EMQ_ERR_TIMEOUT, "no RESULT for job %d (%s)", i, msgids[i]);
        REQUIRE_MSG (rc == 0 && event.status == EMQ_JOB_OK,
                     "job %d (%s): rc %d status %s", i, msgids[i], rc,
                     emq_job_status_name (event.status));
    }
    int64_t finished_ms = clock_mono_ms () - killed;
    s_db_t *db = s_db_open (t, NULL);
    for (int i = 0; i < JOBS; i++) {
        char state[32];
        long long attempt = 0;
        REQUIRE_WAIT (s_db_job (db, msgids[i], state, sizeof state, &attempt)
                          && strcmp (state, "done") == 0,
                      3000);
        if (on_a[i]) {
            REQUIRE_MSG (attempt >= 2, "job %d (%s) ran on the killed jm: attempt %lld",
                         i, msgids[i], attempt);
            moved_ok++;
        }
    }
    s_db_close (&db);
    REQUIRE (!h_jm_registered (t, "jma"));
    s_report (t,
              "%d jobs running on the killed job manager ended ok on the other "
              "(attempt >= 2), %d jobs in all, %lld ms after the kill",
              moved_ok, JOBS, (long long) finished_ms);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  3. A worker crashing on every attempt: dead, then dead retry, dead purge

//  The dead job msgid's entry of `emq-cli dead --json` (new reference) and
//  the list's total, or NULL.
static json_t *
s_dead_entry (h_test_t *t, const char *msgid, long long *total)
{
    h_cli_t r;
    h_cli (t, &r, 10000, "dead", "--json", NULL);
    REQUIRE_MSG (r.status == 0, "dead --json: exit %d (stderr %s)", r.status, r.err);
    json_t *root = json_loads (r.out, 0, NULL);
    REQUIRE_MSG (json_is_array (json_object_get (root, "dead")),
                 "dead --json printed %.300s", r.out);
    h_cli_free (&r);
    if (total)
        *total = h_jint (root, -1, "total", NULL);
    json_t *found = NULL;
    size_t index;
    json_t *job;
    json_array_foreach (json_object_get (root, "dead"), index, job)
    {
        const char *id = json_string_value (json_object_get (job, "msgid"));
        if (msgid && id && strcmp (id, msgid) == 0)
            found = json_incref (job);
    }
    json_decref (root);
    return found;
}

static long long
s_dead_attempts (h_test_t *t, const char *msgid)
{
    json_t *job = s_dead_entry (t, msgid, NULL);
    long long attempts = h_jint (job, -1, "attempts", NULL);
    json_decref (job);
    return attempts;
}

static void
test_crash_dead_retry (h_test_t *t)
{
    h_router (t, "router", "--retry-backoff", "0.1", "--retry-backoff-max", "0.2", NULL);
    h_jm (t, "jm", DEFAULT_Q, 1, NULL);
    h_wait_jm (t, "jm", 10000, NULL);

    h_cli_t r;
    h_cli (t, &r, 10000, "submit", "--retries", "2", "run", H_PLUGIN, "crash", NULL);
    REQUIRE_MSG (r.status == 0, "submit: exit %d (stderr %s)", r.status, r.err);
    char msgid[64];
    snprintf (msgid, sizeof msgid, "%s", h_chomp (r.out));
    h_cli_free (&r);

    //  Three attempts (1 + 2 retries), each a crash: the final result.
    h_cli (t, &r, 30000, "result", "--wait", "--wait-timeout", "20", msgid, NULL);
    REQUIRE_MSG (r.status == 7,
                 "result --wait of a job crashing every time: exit %d, "
                 "expected 7 (stderr %s)",
                 r.status, r.err);
    h_cli_free (&r);

    json_t *job = s_dead_entry (t, msgid, NULL);
    REQUIRE_MSG (job != NULL, "dead --json does not list %s", msgid);
    char *text = json_dumps (job, JSON_COMPACT);
    s_report (t, "dead: %s", text);
    free (text);
    REQUIRE_INT (h_jint (job, -1, "attempts", NULL), ==, 3);
    REQUIRE_STREQ (json_string_value (json_object_get (job, "status")), "crashed");
    const char *error = json_string_value (json_object_get (job, "error"));
    REQUIRE_MSG (error
                     && (strcasestr (error, "SIGSEGV") || strcasestr (error, "signal")
                         || strcasestr (error, "segmentation")),
                 "the dead job's error does not name the crash: '%s'",
                 error ? error : "(null)");
    json_decref (job);
    REQUIRE_WAIT (s_jm_stat (t, "jm", "total_requests") == 3, 3000);

    //  The human view lists it too.
    h_cli (t, &r, 10000, "dead", NULL);
    REQUIRE_MSG (r.status == 0 && strstr (r.out, msgid), "dead: exit %d, out %.300s",
                 r.status, r.out);
    h_cli_free (&r);

    //  dead retry: it runs again, 3 more attempts, dead again.
    h_cli (t, &r, 10000, "dead", "retry", msgid, NULL);
    REQUIRE_MSG (r.status == 0, "dead retry: exit %d (stderr %s)", r.status, r.err);
    h_cli_free (&r);
    REQUIRE_WAIT (s_jm_stat (t, "jm", "total_requests") >= 4, 10000);
    REQUIRE_WAIT (s_dead_attempts (t, msgid) == 6, 15000);
    REQUIRE_WAIT (s_jm_stat (t, "jm", "total_requests") == 6, 3000);
    s_report (t, "after dead retry: dead again with 6 attempts");

    //  Unknown msgid: 8.
    h_cli (t, &r, 10000, "dead", "retry", "no-such-job", NULL);
    REQUIRE_MSG (r.status == 8, "dead retry of an unknown job: exit %d (stderr %s)",
                 r.status, r.err);
    h_cli_free (&r);

    h_cli (t, &r, 10000, "dead", "purge", NULL);
    REQUIRE_MSG (r.status == 0, "dead purge: exit %d (stderr %s)", r.status, r.err);
    h_cli_free (&r);
    long long total = -1;
    job = s_dead_entry (t, msgid, &total);
    REQUIRE_MSG (job == NULL, "%s still listed after dead purge", msgid);
    REQUIRE_INT (total, ==, 0);
    REQUIRE_INT (s_status_int (t, -1, "store", "dead", NULL), ==, 0);
}

//  Thousands of dead jobs: dead retry --all and dead purge work through them
//  in chunks (1,000 and 5,000 rows per loop turn) and answer once, with
//  the whole count.
static void
test_dead_many (h_test_t *t)
{
    h_router (t, "router", "--retry-backoff", "0.01", "--retry-backoff-max", "0.02",
              NULL);
    h_jm (t, "jm", DEFAULT_Q, 2, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    int count = h_count (2500);
    emq_client_t *client = s_client (t);
    void *payload = NULL;
    size_t size = 0;
    h_payload_run ("fail", NULL, &payload, &size);
    emq_submit_opts_t opts = { .retries = 1 };
    for (int i = 0; i < count; i++) {
        char msgid[37];
        int rc = emq_submit_async (client, &opts, payload, size, msgid);
        REQUIRE_MSG (rc == 0, "emq_submit_async #%d: %d", i, rc);
        emq_event_t event;
        while (emq_poll (client, 0, &event) == 0)
            ;  // ACKs
    }
    free (payload);
    //  Each fails twice (1 + 1 retry): dead.
    REQUIRE_WAIT (s_status_int (t, -1, "store", "dead", NULL) == count, 120000);
    s_report (t, "%d jobs dead after 2 attempts each", count);

    h_cli_t r;
    h_cli (t, &r, 60000, "dead", "retry", "--all", NULL);
    char expect[64];
    snprintf (expect, sizeof expect, "retried %d dead job", count);
    REQUIRE_MSG (r.status == 0 && strstr (r.out, expect),
                 "dead retry --all: exit %d, out '%s' "
                 "(stderr %s), expected '%s'",
                 r.status, h_chomp (r.out), r.err, expect);
    h_cli_free (&r);
    //  All of them ran twice more and are dead again. A job the job
    //  manager held past prefetch_hold_ms and RETURNed is sent to it again,
    //  so its REQUESTs can number more than the runs: at least, not exactly.
    REQUIRE_WAIT (s_jm_stat (t, "jm", "total_requests") >= 4LL * count, 120000);
    REQUIRE_WAIT (s_status_int (t, -1, "store", "dead", NULL) == count, 30000);

    h_cli (t, &r, 60000, "dead", "purge", NULL);
    snprintf (expect, sizeof expect, "purged %d dead job", count);
    REQUIRE_MSG (r.status == 0 && strstr (r.out, expect),
                 "dead purge: exit %d, out '%s' "
                 "(stderr %s), expected '%s'",
                 r.status, h_chomp (r.out), r.err, expect);
    h_cli_free (&r);
    REQUIRE_INT (s_status_int (t, -1, "store", "dead", NULL), ==, 0);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  4. A large backlog survives a restart and runs in submission order

static void
test_backlog_restart_order (h_test_t *t)
{
    //  30,000 (10,000 on PostgreSQL): the same path in the suite's time budget
    //  (the single worker's pace, not the store's, sets the duration).
    int count = h_count (h_store_dsn ? 10000 : 30000);
    char hwm[32];
    snprintf (hwm, sizeof hwm, "%d", count * 2 + 100);
    pid_t router = h_router (t, "router-1", "--queue-hwm", hwm, NULL);
    emq_client_t *client = s_client (t);
    s_load_t load;
    s_load_init (&load, t, client, (size_t) count + 10, "noop", NULL);

    int64_t start = clock_mono_ms ();
    s_load_run (&load, (size_t) count, 5000, 120000);
    int64_t submit_ms = clock_mono_ms () - start;
    REQUIRE_INT (load.acked, ==, count);
    REQUIRE_INT (s_status_int (t, -1, "queues", "default", "waiting"), ==, count);

    start = clock_mono_ms ();
    kill (router, SIGTERM);
    s_exit_check (t, router, 20000, 0, "router (SIGTERM)");
    int64_t stop_ms = clock_mono_ms () - start;
    start = clock_mono_ms ();
    //  No prefetch: a prefetched job that waits past the job manager's hold
    //  goes back to the head of the queue while later ones run, which is
    //  allowed (docs/protocol.md) but not the strict order checked here.
    router = h_router (t, "router-2", "--queue-hwm", hwm, "--prefetch", "0", NULL);
    int64_t restart_ms = clock_mono_ms () - start;
    REQUIRE_INT (s_status_int (t, -1, "queues", "default", "waiting"), ==, count);

    //  The client's socket reconnects by itself; an ACK from the new router
    //  shows it has, before any RESULT is sent.
    size_t marker = s_load_submit (&load);
    REQUIRE_WAIT ((s_load_drain (&load, 0), load.jobs[marker].acked), 10000);

    load.check_order = true;
    start = clock_mono_ms ();
    h_jm (t, "jm", DEFAULT_Q, 1, NULL);
    int64_t deadline = clock_mono_ms () + h_ms (150000);
    while (load.results < load.count) {
        REQUIRE_MSG (clock_mono_ms () < deadline, "%zu of %zu results", load.results,
                     load.count);
        s_load_drain (&load, 200);
    }
    int64_t run_ms = clock_mono_ms () - start;
    s_report (
        t,
        "%d jobs: submitted and ACKed in %.2f s (%.0f/s), SIGTERM stop %.2f s, "
        "restart with the backlog %.2f s, run by 1 worker in order in %.2f s (%.0f/s)",
        count, submit_ms / 1000.0, count * 1000.0 / (submit_ms ? submit_ms : 1),
        stop_ms / 1000.0, restart_ms / 1000.0, run_ms / 1000.0,
        load.count * 1000.0 / (run_ms ? run_ms : 1));
    for (size_t i = 0; i < load.count; i++)
        REQUIRE_MSG (load.jobs[i].results == 1, "job %zu: %d results", i,
                     load.jobs[i].results);

    s_db_t *db = s_db_open (t, NULL);
    REQUIRE_WAIT (s_db_int (db, "SELECT count(*) FROM jobs WHERE state != 'done'") == 0,
                  5000);
    REQUIRE_INT (s_db_int (db, "SELECT count(*) FROM jobs WHERE state = 'done'"), ==,
                 load.count);
    REQUIRE_INT (s_db_int (db, "SELECT count(*) FROM jobs WHERE attempt != 1"), ==, 0);
    s_db_close (&db);
    emq_client_destroy (&client);
    s_load_destroy (&load);
}

//  ---------------------------------------------------------------------
//  5. --takeover and --standby: never two routers on one data directory

typedef struct {
    int64_t both_ms;  // when both answered (0: never)
    int probes;
} s_probe_t;

//  True when the router at addr answers STATUS within 60 ms (scaled).
static bool
s_answers (h_test_t *t, const char *addr)
{
    json_t *status = h_admin_at (t, addr, "STATUS", h_ms (60));
    json_decref (status);
    return status != NULL;
}

static void
test_takeover (h_test_t *t)
{
    char admin_b[H_PATH_MAX + 16], admin_c[H_PATH_MAX + 16], admin_d[H_PATH_MAX + 16];
    snprintf (admin_b, sizeof admin_b, "ipc://%s/admin-b", t->dir);
    snprintf (admin_c, sizeof admin_c, "ipc://%s/admin-c", t->dir);
    snprintf (admin_d, sizeof admin_d, "ipc://%s/admin-d", t->dir);

    pid_t a = h_router (t, "router-a", "--fsync", "always", NULL);
    h_jm (t, "jm", DEFAULT_Q, 2, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    emq_client_t *client = s_client (t);
    emq_client_set_connect_timeout (client, h_ms (10000));
    s_load_t load;
    int jobs = h_count (3000);
    s_load_init (&load, t, client, (size_t) jobs * 3 + 100, "noop", NULL);

    //  A second router without --standby or --takeover: exit 5, naming A.
    pid_t d = h_router_ex (t, "router-d", admin_d, false, NULL);
    s_exit_check (t, d, 10000, 5, "second router on the same data directory");
    char path[H_PATH_MAX + 32], pid_s[16];
    snprintf (path, sizeof path, "%s/router-d.log", t->dir);
    snprintf (pid_s, sizeof pid_s, "%d", (int) a);
    FILE *file = fopen (path, "r");
    char log[4096] = "";
    if (file) {
        log[fread (log, 1, sizeof log - 1, file)] = 0;
        fclose (file);
    }
    REQUIRE_MSG (strstr (log, pid_s), "the refused router does not name pid %s: %s",
                 pid_s, log);

    //  Jobs flow; B takes over mid-stream.
    s_load_run (&load, (size_t) jobs / 2, 500, 30000);
    int64_t takeover = clock_mono_ms ();
    pid_t b = h_router_ex (t, "router-b", admin_b, false, "--takeover", "--fsync",
                           "always", NULL);
    bool b_up = false, a_down = false;
    int probes = 0;
    int64_t deadline = clock_mono_ms () + h_ms (20000), a_gone_ms = 0, b_up_ms = 0;
    size_t sent = 0;
    while (!b_up) {
        REQUIRE_MSG (clock_mono_ms () < deadline,
                     "router B not serving after %d ms (A down: %d)", h_ms (20000),
                     a_down);
        //  A, B, A: if A still answers after B answered, both listened.
        bool a1 = s_answers (t, t->admin);
        bool bb = s_answers (t, admin_b);
        bool a2 = bb && s_answers (t, t->admin);
        probes++;
        REQUIRE_MSG (!(bb && a2), "both routers answered STATUS (A %d then %d, B %d)", a1,
                     a2, bb);
        if (!a1 && !a_down) {
            a_down = true;
            a_gone_ms = clock_mono_ms () - takeover;
        }
        if (bb) {
            b_up = true;
            b_up_ms = clock_mono_ms () - takeover;
        }
        //  Keep jobs coming while the handover happens (the client blocks
        //  while no router listens).
        if (sent < (size_t) jobs / 4 && load.inflight < 500 && !a_down) {
            s_load_submit (&load);
            sent++;
        }
        s_load_drain (&load, 0);
    }
    s_exit_check (t, a, 10000, 0, "router A after --takeover");
    //  Whatever A did not ACK before it stopped is sent again.
    s_load_drain (&load, 100);
    size_t again = s_load_resubmit (&load);
    s_load_run (&load, (size_t) jobs / 2, 500, 30000);
    s_db_t *db = s_db_open (t, NULL);
    REQUIRE_WAIT (s_db_int (db, "SELECT count(*) FROM jobs WHERE state != 'done'") == 0,
                  30000);
    s_verdict_t v = s_load_verify (&load, db);
    s_db_close (&db);
    s_report (t,
              "takeover: A stopped answering %lld ms, B answered %lld ms after B started "
              "(%d probes A-B-A, never both); %zu jobs ACKed, %zu sent again, lost %zu",
              (long long) a_gone_ms, (long long) b_up_ms, probes, v.acked, again, v.lost);
    REQUIRE_INT (v.lost, ==, 0);

    //  Standby: C waits while B holds the directory, starts once B dies.
    pid_t c = h_router_ex (t, "router-c", admin_c, false, "--standby", NULL);
    int64_t standby_start = clock_mono_ms ();
    while (clock_mono_ms () - standby_start < h_ms (2500)) {
        REQUIRE_MSG (h_pid_alive (c),
                     "router C (--standby) exited while B holds the directory");
        REQUIRE_MSG (!s_answers (t, admin_c),
                     "router C (--standby) answers while B serves");
        REQUIRE (s_answers (t, admin_b));
    }
    int64_t killed = clock_mono_ms ();
    s_kill9 (t, b);
    REQUIRE_WAIT (s_answers (t, admin_c), 10000);
    int64_t c_up_ms = clock_mono_ms () - killed;
    //  C serves: the job manager and client reconnect, new jobs run.
    size_t before = load.count;
    s_load_run (&load, 50, 50, 30000);
    int64_t run_deadline = clock_mono_ms () + h_ms (10000);
    bool all = false;
    while (!all && clock_mono_ms () < run_deadline) {
        s_load_drain (&load, 100);
        all = true;
        for (size_t i = before; i < load.count; i++)
            all = all && load.jobs[i].results > 0;
    }
    REQUIRE_MSG (all, "jobs submitted to the standby router did not all run");
    s_report (t, "standby: C waited while B served, answered %lld ms after B was killed",
              (long long) c_up_ms);
    emq_client_destroy (&client);
    s_load_destroy (&load);
}

//  ---------------------------------------------------------------------
//  6. A full disk: clear errors, no ACK for what was not kept, recovery

//  Waits until every ACKed job of load has a RESULT.
static void
s_load_wait_results (s_load_t *load, int timeout_ms)
{
    int64_t deadline = clock_mono_ms () + h_ms (timeout_ms);
    while (true) {
        size_t missing = 0;
        for (size_t i = 0; i < load->count; i++)
            missing += load->jobs[i].acked && load->jobs[i].results == 0;
        if (missing == 0)
            return;
        REQUIRE_MSG (clock_mono_ms () < deadline,
                     "%zu ACKed jobs without a RESULT after %d ms", missing,
                     h_ms (timeout_ms));
        s_load_drain (load, 200);
    }
}

static void
test_disk_full (h_test_t *t)
{
    char mnt[H_PATH_MAX + 16], data[H_PATH_MAX + 32], filler[H_PATH_MAX + 32];
    snprintf (mnt, sizeof mnt, "%s/small", t->dir);
    snprintf (data, sizeof data, "%s/data", mnt);
    snprintf (filler, sizeof filler, "%s/filler", mnt);
    REQUIRE (mkdir (mnt, 0755) == 0);
    //  8 MiB: room for SQLite's WAL (checkpointed at 4 MiB) once freed.
    bool mounted =
        !getenv ("EMQ_TEST_NO_MOUNT") && mount ("tmpfs", mnt, "tmpfs", 0, "size=8m") == 0;
    s_report (t, "mode: %s",
              mounted
                  ? "8 MiB tmpfs as data directory, 7.3 MiB filler file"
                  : "RLIMIT_FSIZE 1 MiB on the router (mounting a tmpfs is not allowed)");
    REQUIRE (mkdir (data, 0755) == 0);

    pid_t router = h_router (t, "router", "--data-dir", data, "--fsync", "always", NULL);
    if (!mounted) {
        //  The soft limit only, so that raising it back needs no privilege.
        struct rlimit limit = { 1024 * 1024, RLIM_INFINITY };
        REQUIRE_MSG (prlimit (router, RLIMIT_FSIZE, &limit, NULL) == 0, "prlimit: %s",
                     strerror (errno));
    }
    else {
        //  Most of the space goes to a file we delete later.
        int fd = open (filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        REQUIRE (fd >= 0);
        static char block[64 * 1024];
        memset (block, 'f', sizeof block);
        for (int i = 0; i < 117; i++)
            REQUIRE (write (fd, block, sizeof block) == (ssize_t) sizeof block);
        close (fd);
    }

    //  No job manager yet: jobs with big payloads pile up until the store
    //  refuses them.
    emq_client_t *client = s_client (t);
    s_load_t load;
    static char big[16 * 1024];
    memset (big, 'x', sizeof big);
    big[0] = '"';
    big[sizeof big - 2] = '"';
    big[sizeof big - 1] = 0;
    s_load_init (&load, t, client, 2000, "echo", big);
    load.allow_storage_errors = true;
    int64_t deadline = clock_mono_ms () + h_ms (30000);
    while (load.storage_errors == 0) {
        REQUIRE_MSG (clock_mono_ms () < deadline,
                     "no ERROR STORAGE after %zu jobs of %zu bytes", load.count,
                     load.size);
        REQUIRE_MSG (h_pid_alive (router), "the router died filling the disk");
        s_load_run (&load, 1, 1, 10000);
    }
    size_t acked_full = load.acked;
    s_report (t, "%zu jobs of %zu bytes ACKed, then ERROR STORAGE", acked_full,
              load.size);
    //  More attempts: all refused, none ACKed.
    s_load_run (&load, 5, 5, 10000);
    REQUIRE_INT (load.acked, ==, acked_full);

    //  emq-cli: exit 4 with a message; STATUS answers, store.failing.
    h_cli_t r;
    h_cli (t, &r, 10000, "submit", "run", H_PLUGIN, "echo", big, NULL);
    REQUIRE_MSG (r.status == 4, "submit on a full disk: exit %d (stderr %s)", r.status,
                 r.err);
    REQUIRE_MSG (strcasestr (r.err, "STORAGE") || strcasestr (r.err, "disk")
                     || strcasestr (r.err, "store"),
                 "unclear error on a full disk: '%s'", r.err);
    s_report (t, "emq-cli: %s", h_chomp (r.err));
    h_cli_free (&r);
    json_t *status = h_admin (t, "STATUS");
    REQUIRE_MSG (status, "no STATUS from the router on a full disk");
    json_decref (status);
    REQUIRE_MSG (s_store_failing (t) == 1, "store.failing is not true on a full disk");
    REQUIRE_INT (s_status_int (t, -1, "queues", "default", "waiting"), ==, acked_full);
    h_cli (t, &r, 10000, "status", NULL);
    REQUIRE_MSG (r.status == 0
                     && (strstr (r.out, "failing") || strstr (r.out, "cannot write")),
                 "status on a full disk: exit %d, out %.400s", r.status, r.out);
    h_cli_free (&r);

    //  It keeps serving what it has: the jobs it ACKed run, disk still full.
    h_jm (t, "jm", DEFAULT_Q, 2, NULL);
    s_load_wait_results (&load, 30000);
    REQUIRE_MSG (h_pid_alive (router), "the router died running jobs on a full disk");
    s_report (t, "the %zu ACKed jobs ran while the disk was full", acked_full);

    //  Space returns: new jobs are accepted, and run.
    if (mounted)
        REQUIRE (unlink (filler) == 0);
    else {
        struct rlimit limit = { RLIM_INFINITY, RLIM_INFINITY };
        REQUIRE_MSG (prlimit (router, RLIMIT_FSIZE, &limit, NULL) == 0, "prlimit: %s",
                     strerror (errno));
    }
    int64_t freed = clock_mono_ms ();
    size_t refused = load.storage_errors;
    load.allow_storage_errors = false;
    s_load_run (&load, 20, 5, 10000);
    REQUIRE_INT (load.acked, ==, acked_full + 20);
    REQUIRE_WAIT (s_store_failing (t) == 0, 5000);
    s_report (t,
              "%zu jobs refused while full; accepted again %lld ms after space returned",
              refused, (long long) (clock_mono_ms () - freed));
    s_load_wait_results (&load, 30000);
    for (size_t i = 0; i < load.count; i++)
        REQUIRE_MSG (load.jobs[i].results == (load.jobs[i].acked ? 1 : 0),
                     "job %zu: ACKed %d, %d results", i, load.jobs[i].acked,
                     load.jobs[i].results);

    //  What the store says now (ends that could not be written while the
    //  disk was full are not in it: the router runs those jobs again on a
    //  restart, at-least-once), then after a restart: every ACKed job done,
    //  nothing refused stored.
    s_db_t *db = s_db_open (t, data);
    long long stale = s_db_int (db, "SELECT count(*) FROM jobs WHERE state != 'done'");
    //  A job that ran while the disk was full: its result, from another
    //  process (FETCH reads the store once the router has let go of it).
    char sql[256];
    snprintf (sql, sizeof sql,
              "SELECT attempt FROM jobs WHERE msgid = '%s' AND state = 'done'",
              load.jobs[0].msgid);
    bool stored_done = s_db_int (db, sql) >= 0;
    h_cli (t, &r, 10000, "result", load.jobs[0].msgid, NULL);
    int fetched = r.status;
    s_report (t,
              "emq-cli result %s (ran ok while the disk was full, %s in the store): "
              "exit %d, stdout %zu bytes, stderr '%s'",
              load.jobs[0].msgid, stored_done ? "done" : "not done", r.status,
              strlen (r.out), h_chomp (r.err));
    h_cli_free (&r);
    s_db_close (&db);
    kill (router, SIGTERM);
    s_exit_check (t, router, 10000, 0, "router (SIGTERM)");
    router = h_router (t, "router-2", "--data-dir", data, "--fsync", "always", NULL);
    db = s_db_open (t, data);
    REQUIRE_WAIT (s_db_int (db, "SELECT count(*) FROM jobs WHERE state != 'done'") == 0,
                  20000);
    s_verdict_t v = s_load_verify (&load, db);
    s_db_close (&db);
    s_report (t,
              "%lld jobs ran but their end was not stored (run again after the restart); "
              "all %zu ACKed jobs done, lost %zu, none of the %zu refused stored (%zu)",
              stale, v.acked, v.lost, v.abandoned, v.stored_unacked);
    REQUIRE_INT (v.lost, ==, 0);
    REQUIRE_INT (v.stored_unacked, ==, 0);

    emq_client_destroy (&client);
    s_load_destroy (&load);
    kill (router, SIGTERM);
    s_exit_check (t, router, 10000, 0, "router-2 (SIGTERM)");
    if (mounted)
        REQUIRE_MSG (umount (mnt) == 0, "umount %s: %s", mnt, strerror (errno));
    //  KNOWN BUG (reported to router/): outcomes whose commit failed while
    //  the disk was full are never written once it recovers, and FETCH of
    //  such a job (emq-cli result) answers "failed" with an empty error
    //  although it ran ok. Checked last so the figures above still print.
    REQUIRE_MSG (fetched == 0,
                 "emq-cli result of a job that ended ok while the disk was full "
                 "exited %d, expected 0 (its value)",
                 fetched);
}

//  ---------------------------------------------------------------------
//  7. Results fetched later, from another process

static void
test_results_fetch (h_test_t *t)
{
    h_router (t, "router", NULL);
    h_jm (t, "jm", DEFAULT_Q, 2, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    h_cli_t r;

    //  A job that ended: its result from another process.
    h_cli (t, &r, 10000, "submit", "--wait", "run", H_PLUGIN, "upper", "\"later\"", NULL);
    REQUIRE_MSG (r.status == 0, "submit --wait: exit %d (stderr %s)", r.status, r.err);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "submit", "run", H_PLUGIN, "upper", "\"fetched\"", NULL);
    REQUIRE_MSG (r.status == 0, "submit: exit %d (stderr %s)", r.status, r.err);
    char msgid[64];
    snprintf (msgid, sizeof msgid, "%s", h_chomp (r.out));
    h_cli_free (&r);
    REQUIRE_WAIT (
        s_status_int (t, -1, "processed_messages_by_queue", "default", NULL) == 2, 10000);
    h_cli (t, &r, 10000, "result", msgid, NULL);
    REQUIRE_MSG (r.status == 0, "result: exit %d (stderr %s)", r.status, r.err);
    REQUIRE_STREQ (h_chomp (r.out), "\"FETCHED\"");
    h_cli_free (&r);
    h_cli (t, &r, 10000, "result", "--json", msgid, NULL);
    REQUIRE_MSG (r.status == 0 && strstr (r.out, "FETCHED"),
                 "result --json: exit %d, out %s", r.status, r.out);
    h_cli_free (&r);

    //  A running job: 9 without --wait, its value with --wait.
    h_cli (t, &r, 10000, "submit", "run", H_PLUGIN, "sleep", "1.5", NULL);
    REQUIRE_MSG (r.status == 0, "submit sleep: exit %d (stderr %s)", r.status, r.err);
    snprintf (msgid, sizeof msgid, "%s", h_chomp (r.out));
    h_cli_free (&r);
    h_cli (t, &r, 10000, "result", msgid, NULL);
    REQUIRE_MSG (r.status == 9,
                 "result of a running job: exit %d, expected 9 (stderr %s)", r.status,
                 r.err);
    h_cli_free (&r);
    h_cli (t, &r, 10000, "result", "--wait", msgid, NULL);
    REQUIRE_MSG (r.status == 0, "result --wait: exit %d (stderr %s)", r.status, r.err);
    REQUIRE_STREQ (h_chomp (r.out), "1.5");
    s_report (t, "result --wait on a running sleep 1.5 returned after %lld ms",
              (long long) r.elapsed_ms);
    h_cli_free (&r);

    //  Unknown: 8.
    h_cli (t, &r, 10000, "result", "00000000-0000-4000-8000-000000000000", NULL);
    REQUIRE_MSG (r.status == 8,
                 "result of an unknown job: exit %d, expected 8 (stderr %s)", r.status,
                 r.err);
    REQUIRE_MSG (strlen (r.err) > 0, "no message for an unknown job");
    h_cli_free (&r);

    //  A client that leaves before its job ends fetches the result later.
    emq_client_t *client = s_client (t);
    char job[37];
    h_submit_run (client, NULL, "sleep", "0.5", 0, job);
    emq_client_destroy (&client);
    REQUIRE_WAIT (
        s_status_int (t, -1, "processed_messages_by_queue", "default", NULL) == 4, 10000);
    client = s_client (t);
    emq_event_t event;
    int rc = emq_result (client, job, h_ms (5000), &event);
    REQUIRE_MSG (rc == 0, "emq_result of a job whose client left: %d (%s)", rc,
                 emq_client_last_error (client));
    REQUIRE_INT (event.type, ==, EMQ_EVENT_RESULT);
    REQUIRE_INT (event.status, ==, EMQ_JOB_OK);
    char *text = h_result_text (&event);
    REQUIRE_STREQ (text, "0.5");
    free (text);
    rc = emq_result (client, "00000000-0000-4000-8000-000000000001", h_ms (5000), &event);
    REQUIRE_INT (rc, ==, EMQ_ERR_NOT_FOUND);
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  8. Delayed jobs and cancel

static void
test_delay_and_cancel (h_test_t *t)
{
    h_router (t, "router", NULL);
    pid_t jm = h_jm (t, "jm", DEFAULT_Q, 1, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    REQUIRE_WAIT (h_jm_has_slots (t, "jm", 1), 5000);
    emq_client_t *client = s_client (t);

    //  --delay 2: scheduled, runs no earlier than 2 s later.
    h_cli_t r;
    int64_t submitted = clock_mono_ms ();
    h_cli (t, &r, 20000, "submit", "--delay", "2", "--wait", "run", H_PLUGIN, "upper",
           "\"delayed\"", NULL);
    int64_t elapsed = clock_mono_ms () - submitted;
    REQUIRE_MSG (r.status == 0, "submit --delay 2 --wait: exit %d (stderr %s)", r.status,
                 r.err);
    REQUIRE_STREQ (h_chomp (r.out), "\"DELAYED\"");
    h_cli_free (&r);
    s_report (t, "submit --delay 2 --wait returned after %lld ms", (long long) elapsed);
    REQUIRE_INT (elapsed, >=, 2000);
    REQUIRE_INT (elapsed, <, h_ms (6000));

    //  The same with libemq: scheduled in the store while it waits.
    void *payload;
    size_t size;
    h_payload_run ("context", NULL, &payload, &size);
    emq_submit_opts_t opts = { .reply = true, .delay_s = 2 };
    char msgid[37];
    submitted = clock_mono_ms ();
    REQUIRE_INT (emq_submit (client, &opts, payload, size, msgid, h_ms (5000)), ==, 0);
    REQUIRE_INT (s_status_int (t, -1, "store", "scheduled", NULL), ==, 1);
    emq_event_t event;
    int rc = emq_wait_result (client, msgid, h_ms (10000), &event);
    elapsed = clock_mono_ms () - submitted;
    REQUIRE_INT (rc, ==, 0);
    REQUIRE_INT (elapsed, >=, 2000);
    REQUIRE_INT (s_status_int (t, -1, "store", "scheduled", NULL), ==, 0);

    //  Cancel a queued job (its queue has no job manager).
    opts = (emq_submit_opts_t){ .queue = "nobody", .reply = true };
    REQUIRE_INT (emq_submit (client, &opts, payload, size, msgid, h_ms (5000)), ==, 0);
    h_cli (t, &r, 10000, "cancel", msgid, NULL);
    REQUIRE_MSG (r.status == 0, "cancel of a queued job: exit %d (stderr %s)", r.status,
                 r.err);
    h_cli_free (&r);
    rc = emq_wait_result (client, msgid, h_ms (5000), &event);
    REQUIRE_MSG (rc != EMQ_ERR_TIMEOUT, "no RESULT for the cancelled queued job");
    REQUIRE_INT (event.status, ==, EMQ_JOB_CANCELLED);
    REQUIRE_INT (s_status_int (t, 0, "queues", "nobody", "waiting"), <=, 0);
    rc = emq_result (client, msgid, h_ms (5000), &event);
    REQUIRE_INT (event.type, ==, EMQ_EVENT_RESULT);
    REQUIRE_INT (event.status, ==, EMQ_JOB_CANCELLED);
    //  Cancelling it again: it is no longer waiting or running (8).
    h_cli (t, &r, 10000, "cancel", msgid, NULL);
    REQUIRE_MSG (r.status == 8, "second cancel: exit %d, expected 8 (stderr %s)",
                 r.status, r.err);
    h_cli_free (&r);

    //  Cancel a delayed (scheduled) job.
    opts = (emq_submit_opts_t){ .reply = true, .delay_s = 60 };
    REQUIRE_INT (emq_submit (client, &opts, payload, size, msgid, h_ms (5000)), ==, 0);
    h_cli (t, &r, 10000, "cancel", msgid, NULL);
    REQUIRE_MSG (r.status == 0, "cancel of a scheduled job: exit %d (stderr %s)",
                 r.status, r.err);
    h_cli_free (&r);
    rc = emq_wait_result (client, msgid, h_ms (5000), &event);
    REQUIRE_MSG (rc != EMQ_ERR_TIMEOUT, "no RESULT for the cancelled scheduled job");
    REQUIRE_INT (event.status, ==, EMQ_JOB_CANCELLED);
    REQUIRE_INT (s_status_int (t, -1, "store", "scheduled", NULL), ==, 0);
    free (payload);

    //  Cancel a running sleep 30: cancelled quickly, the worker replaced.
    h_submit_run (client, NULL, "sleep", "30", 0, msgid);
    pid_t worker = 0;
    REQUIRE_WAIT ((worker = h_jm_job_pid (t, "jm", msgid)) > 0, 5000);
    int64_t cancelled = clock_mono_ms ();
    h_cli (t, &r, 10000, "cancel", msgid, NULL);
    REQUIRE_MSG (r.status == 0, "cancel of a running job: exit %d (stderr %s)", r.status,
                 r.err);
    h_cli_free (&r);
    rc = emq_wait_result (client, msgid, h_ms (5000), &event);
    int64_t cancel_ms = clock_mono_ms () - cancelled;
    REQUIRE_MSG (rc != EMQ_ERR_TIMEOUT,
                 "no RESULT within 5 s for the cancelled running job");
    REQUIRE_MSG (event.status == EMQ_JOB_CANCELLED, "cancelled running job ended %s",
                 emq_job_status_name (event.status));
    REQUIRE_WAIT (!h_pid_alive (worker), 3000);
    REQUIRE_WAIT (h_jm_has_slots (t, "jm", 1), 5000);
    s_report (t, "running sleep 30 cancelled in %lld ms, worker %d gone",
              (long long) cancel_ms, (int) worker);
    //  The next job runs on a new worker.
    h_submit_run (client, NULL, "upper", "\"after\"", 0, msgid);
    rc = emq_wait_result (client, msgid, h_ms (10000), &event);
    REQUIRE_INT (rc, ==, 0);
    REQUIRE (h_pid_alive (jm));
    emq_client_destroy (&client);
}

//  ---------------------------------------------------------------------
//  9. The same msgid twice: ACKed twice, run once

static void
s_send_request (zsock_t *sock, const char *msgid, const char *queue, const char *headers,
                const void *payload, size_t size)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "");
    zmsg_addstr (msg, EMQP_PROTOCOL);
    zmsg_addstr (msg, "REQUEST");
    zmsg_addstr (msg, msgid);
    zmsg_addstr (msg, queue);
    zmsg_addstr (msg, headers);
    zmsg_addmem (msg, payload, size);
    REQUIRE (zmsg_send (&msg, sock) == 0);
}

static void
test_idempotent_submit (h_test_t *t)
{
    h_router (t, "router", NULL);
    h_jm (t, "jm", DEFAULT_Q, 1, NULL);
    h_wait_jm (t, "jm", 10000, NULL);
    zsock_t *sock = h_dealer (t->frontend, NULL);
    REQUIRE (sock);
    void *payload;
    size_t size;
    h_payload_run ("context", NULL, &payload, &size);
    char msgid[37];
    emqp_msgid_new (msgid);

    //  Twice in a row (the second before the first ran, as a rule; on a
    //  loaded machine the job may end, and its RESULT come, before the
    //  second ACK), once more later.
    int results = 0;
    for (int i = 0; i < 2; i++) {
        s_send_request (sock, msgid, "default", "reply-requested", payload, size);
        bool acked = false;
        int64_t deadline = clock_mono_ms () + h_ms (5000);
        while (!acked) {
            REQUIRE_MSG (clock_mono_ms () < deadline, "submit #%d of %s: no ACK", i + 1,
                         msgid);
            emqp_msg_t *msg = h_recv_msg (t, sock, 500);
            if (!msg)
                continue;
            if (msg->command == EMQP_ACK || msg->command == EMQP_RESULT)
                REQUIRE_STREQ (msg->ref, msgid);
            if (msg->command == EMQP_RESULT) {
                REQUIRE_INT (msg->status, ==, EMQP_STATUS_OK);
                results++;
            }
            acked = msg->command == EMQP_ACK;
            emqp_msg_destroy (&msg);
        }
    }
    if (results == 0) {
        emqp_msg_t *result = h_recv_cmd (t, sock, EMQP_RESULT, 10000);
        REQUIRE_MSG (result, "no RESULT for %s", msgid);
        REQUIRE_STREQ (result->ref, msgid);
        REQUIRE_INT (result->status, ==, EMQP_STATUS_OK);
        results++;
        emqp_msg_destroy (&result);
    }
    s_send_request (sock, msgid, "default", "reply-requested", payload, size);
    emqp_msg_t *ack = h_recv_cmd (t, sock, EMQP_ACK, 5000);
    REQUIRE_MSG (ack, "submit #3 of %s (after it ended): no ACK", msgid);
    emqp_msg_destroy (&ack);

    //  A marker job after them: when its RESULT comes, the single worker has
    //  run everything queued before it.
    char marker[37];
    emqp_msgid_new (marker);
    s_send_request (sock, marker, "default", "reply-requested", payload, size);
    while (true) {
        emqp_msg_t *msg = h_recv_msg (t, sock, 10000);
        REQUIRE_MSG (msg, "no RESULT for the marker job");
        bool is_marker = msg->ref && strcmp (msg->ref, marker) == 0;
        if (msg->command == EMQP_RESULT && !is_marker) {
            REQUIRE_STREQ (msg->ref, msgid);
            results++;
        }
        emqp_command_t command = msg->command;
        emqp_msg_destroy (&msg);
        if (command == EMQP_RESULT && is_marker)
            break;
    }
    REQUIRE_INT (results, ==, 1);
    REQUIRE_WAIT (s_jm_stat (t, "jm", "total_requests") == 2, 3000);
    s_db_t *db = s_db_open (t, NULL);
    char sql[256];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM jobs WHERE msgid = '%s'", msgid);
    REQUIRE_INT (s_db_int (db, sql), ==, 1);
    snprintf (sql, sizeof sql, "SELECT attempt FROM jobs WHERE msgid = '%s'", msgid);
    REQUIRE_INT (s_db_int (db, sql), ==, 1);
    s_db_close (&db);
    s_report (t, "one msgid submitted 3 times: 3 ACKs, 1 run, 1 RESULT");
    free (payload);
    zsock_destroy (&sock);
}

//  ---------------------------------------------------------------------
//  The same tests with the routers' jobs in PostgreSQL: a server of the
//  test's own, one database; the checks read it with libpq.

static bool
s_on_postgresql (h_test_t *t)
{
    if (!h_pg_bin ()) {
        printf ("    (PostgreSQL not installed: apt-get install postgresql; "
                "test skipped)\n");
        return false;
    }
    h_store_dsn = h_pg_start (t);
    return true;
}

#define S_ON_POSTGRESQL(name)                \
    static void test_pg_##name (h_test_t *t) \
    {                                        \
        if (s_on_postgresql (t))             \
            test_##name (t);                 \
    }

S_ON_POSTGRESQL (router_kill9_rounds)
S_ON_POSTGRESQL (batch_kill9)
S_ON_POSTGRESQL (backlog_restart_order)
S_ON_POSTGRESQL (crash_dead_retry)

//  PostgreSQL restarted under load: while it is down the router refuses
//  new jobs (ERROR STORAGE: the client knows they are not kept), keeps
//  running what it holds, and resumes by itself when the server is back;
//  every job it ACKed ends done in the database.
static void
test_pg_server_restart (h_test_t *t)
{
    if (!s_on_postgresql (t))
        return;
    pid_t router =
        h_router (t, "router", "--fsync", "always", "--queue-hwm", "1000000", NULL);
    h_jm (t, "jma", DEFAULT_Q, 2, NULL);
    h_wait_jm (t, "jma", 10000, NULL);
    emq_client_t *client = s_client (t);
    s_load_t load;
    int before = h_count (3000);
    s_load_init (&load, t, client, (size_t) before * 2 + 20000, "noop", NULL);
    load.allow_storage_errors = true;
    s_load_run (&load, (size_t) before, 500, 30000);
    REQUIRE_INT (load.storage_errors, ==, 0);

    //  The server goes down for a second (a child does it while we submit).
    fflush (stdout);
    pid_t restarter = fork ();
    REQUIRE (restarter >= 0);
    if (restarter == 0)
        _exit (h_pg_restart (t, 1000) ? 0 : 1);
    int64_t start = clock_mono_ms ();
    bool saw_failing = false;
    int status = 0;
    while (waitpid (restarter, &status, WNOHANG) == 0) {
        REQUIRE_MSG (clock_mono_ms () - start < h_ms (30000),
                     "the restart takes too long");
        s_load_run (&load, 20, 20, 20000);
        if (!saw_failing && load.storage_errors > 0)
            saw_failing = s_store_failing (t) == 1;
    }
    REQUIRE_MSG (WIFEXITED (status) && WEXITSTATUS (status) == 0,
                 "restarting PostgreSQL failed (see pg/pg_ctl.log)");
    size_t refused = load.storage_errors;
    REQUIRE_MSG (refused > 0, "no ERROR STORAGE while PostgreSQL was down");
    REQUIRE_MSG (saw_failing, "STATUS did not say the store is failing");

    //  Back: jobs are ACKed again, without a restart of the router.
    int64_t back = clock_mono_ms ();
    size_t acked = load.acked;
    while (load.acked < acked + 100) {
        REQUIRE_MSG (clock_mono_ms () - back < h_ms (20000),
                     "no ACKs again after PostgreSQL came back");
        s_load_run (&load, 20, 20, 20000);
    }
    int64_t resumed_ms = clock_mono_ms () - back;
    load.allow_storage_errors = false;
    s_load_run (&load, (size_t) h_count (1000), 500, 30000);
    REQUIRE_WAIT (s_store_failing (t) == 0, 5000);
    s_load_wait_results (&load, 30000);

    s_db_t *db = s_db_open (t, NULL);
    REQUIRE_WAIT (s_db_int (db, "SELECT count(*) FROM jobs WHERE state != 'done'") == 0,
                  20000);
    s_verdict_t v = s_load_verify (&load, db);
    s_db_close (&db);
    s_report (t,
              "%zu jobs ACKed; %zu refused with ERROR STORAGE while PostgreSQL was down "
              "(%lld ms); ACKing again %lld ms after it was back; lost %zu; refused but "
              "stored %zu",
              v.acked, refused, (long long) (back - start), (long long) resumed_ms,
              v.lost, v.stored_unacked);
    //  (A batch whose COMMIT reached the server just before it went down
    //  may be stored though refused: the client's resend under the same
    //  msgid is then ACKed without a second row.)
    REQUIRE_INT (v.lost, ==, 0);
    REQUIRE_MSG (h_pid_alive (router), "the router died");
    emq_client_destroy (&client);
    s_load_destroy (&load);
}

//  ---------------------------------------------------------------------
//  Several routers on one PostgreSQL database, one leading: two slots of
//  addresses, the leader in one and a standby (--standby) in the other;
//  job managers know both (backend_failover_addrs).

#define S_LEASE_TTL "1"
#define S_LEASE_TTL_MS 1000

//  A router in a slot, leading (wait: until it answers STATUS) or standby.
static pid_t
s_slot_router (h_test_t *t, const h_slot_t *slot, const char *tag, bool wait)
{
    return h_router_ex (t, tag, slot->admin, wait, "--frontend", slot->frontend,
                        "--backend", slot->backend, "--store-lease-ttl", S_LEASE_TTL,
                        "--standby", "--fsync", "always", "--queue-hwm", "1000000", NULL);
}

//  Two job managers that follow the lead between the slots.
static void
s_failover_jms (h_test_t *t, const h_slot_t slot[2])
{
    setenv ("EVENTMQ_BACKEND_FAILOVER_ADDRS", slot[1].backend, 1);
    h_jm (t, "jma", DEFAULT_Q, 2, NULL);
    h_jm (t, "jmb", DEFAULT_Q, 2, NULL);
    unsetenv ("EVENTMQ_BACKEND_FAILOVER_ADDRS");
    h_wait_jm (t, "jma", 10000, NULL);
    h_wait_jm (t, "jmb", 10000, NULL);
}

//  Waits until the router at admin answers STATUS; the ms it took.
static int64_t
s_wait_serving (h_test_t *t, const char *admin, int timeout_ms)
{
    int64_t start = clock_mono_ms ();
    while (!s_answers (t, admin)) {
        REQUIRE_MSG (clock_mono_ms () - start < h_ms (timeout_ms),
                     "no router serves at %s after %d ms", admin, h_ms (timeout_ms));
    }
    return clock_mono_ms () - start;
}

//  kill -9 of the leading router under load, 5 rounds: the standby takes
//  the lead and serves within 2 x the lease, and no ACKed job is lost.
static void
test_pg_failover_kill9 (h_test_t *t)
{
    if (!s_on_postgresql (t))
        return;
    h_slot_t slot[2];
    h_slots (t, slot);
    pid_t router[2];
    router[0] = s_slot_router (t, &slot[0], "router-a1", true);
    router[1] = s_slot_router (t, &slot[1], "router-b1", false);
    s_failover_jms (t, slot);
    const int rounds = 5;
    int per_round = h_count (1000);
    emq_client_t *client = emq_client_new (slot[0].frontend);
    REQUIRE (client);
    s_load_t load;
    //  Each round: its jobs, a burst of 200 at the kill, and what is sent
    //  again (at most those two).
    s_load_init (&load, t, client, (size_t) (per_round + 200) * rounds * 2 + 1000, "noop",
                 NULL);
    int active = 0;
    int64_t worst_ms = 0;
    for (int round = 0; round < rounds; round++) {
        //  Jobs flow, many in flight; then kill -9 of the leader.
        int sent = 0;
        while (sent < per_round / 2
               || load.acked < (size_t) (per_round / 3) * (round + 1)) {
            if (sent < per_round && load.inflight < 500) {
                s_load_submit (&load);
                sent++;
            }
            s_load_drain_max (&load, sent < per_round ? 0 : 50, 100);
        }
        for (int i = 0; i < 200; i++)
            s_load_submit (&load);
        size_t inflight = load.inflight;
        s_kill9 (t, router[active]);
        int64_t killed = clock_mono_ms ();
        s_load_drain (&load, 50);  // ACKs on their way still count
        int other = 1 - active;
        int64_t failover_ms = s_wait_serving (t, slot[other].admin, 10000);
        (void) killed;
        if (failover_ms > worst_ms)
            worst_ms = failover_ms;
        REQUIRE_MSG (failover_ms <= h_ms (2 * S_LEASE_TTL_MS),
                     "round %d: the standby served %lld ms after the kill (lease %d ms)",
                     round + 1, (long long) failover_ms, S_LEASE_TTL_MS);
        //  The dead one comes back as the standby; the client goes to the
        //  new leader and sends again what was not ACKed.
        char tag[32];
        snprintf (tag, sizeof tag, "router-%c%d", active ? 'b' : 'a', round + 2);
        router[active] = s_slot_router (t, &slot[active], tag, false);
        s_load_drain (&load, 0);
        emq_client_destroy (&load.client);
        load.client = emq_client_new (slot[other].frontend);
        REQUIRE (load.client);
        size_t again = s_load_resubmit (&load);
        s_report (
            t,
            "round %d: kill -9 of the leader with %zu unACKed in flight; the standby "
            "served %lld ms later; %zu sent again to it",
            round + 1, inflight, (long long) failover_ms, again);
        active = other;
    }
    s_load_run (&load, 0, 500, 30000);  // every job sent is ACKed or refused
    s_db_t *db = s_db_open (t, NULL);
    REQUIRE_WAIT (s_db_int (db, "SELECT count(*) FROM jobs WHERE state != 'done'") == 0,
                  30000);
    s_verdict_t v = s_load_verify (&load, db);
    long long done = s_db_int (db, "SELECT count(*) FROM jobs WHERE state = 'done'");
    long long epoch = s_db_int (db, "SELECT epoch FROM emq_leader");
    s_db_close (&db);
    s_report (
        t,
        "%d failovers (lease %d ms): worst %lld ms to serve; %zu jobs ACKed, lost %zu; "
        "%lld done rows (%zu unACKed but stored, sent again); lead epoch %lld",
        rounds, S_LEASE_TTL_MS, (long long) worst_ms, v.acked, v.lost, done,
        v.stored_unacked, epoch);
    REQUIRE_INT (v.lost, ==, 0);
    REQUIRE_INT (epoch, >=, rounds + 1);
    s_load_drain (&load, 0);
    emq_client_destroy (&load.client);
    s_load_destroy (&load);
}

//  SIGSTOP of the leader past its lease, then SIGCONT: the standby has
//  taken the lead; the woken router acts on nothing (a job sent to it while
//  it was stopped is neither ACKed nor stored), stands down, says so and
//  exits with ROUTER_DEPOSED (6).
static void
test_pg_failover_sigstop (h_test_t *t)
{
    if (!s_on_postgresql (t))
        return;
    h_slot_t slot[2];
    h_slots (t, slot);
    pid_t a = s_slot_router (t, &slot[0], "router-a", true);
    pid_t b = s_slot_router (t, &slot[1], "router-b", false);
    s_failover_jms (t, slot);
    emq_client_t *client = emq_client_new (slot[0].frontend);
    REQUIRE (client);
    s_load_t load;
    s_load_init (&load, t, client, 2000, "noop", NULL);
    s_load_run (&load, 200, 100, 20000);
    s_load_wait_results (&load, 20000);
    //  A client with both addresses, connected to the leader before it is
    //  stopped: its REQUESTs to the stopped one go unACKed, and after the
    //  failover timeout it sends them again to the new leader.
    char frontends[2 * sizeof slot[0].frontend + 2];
    snprintf (frontends, sizeof frontends, "%s,%s", slot[0].frontend, slot[1].frontend);
    s_load_t both;
    s_load_init (&both, t, emq_client_new (frontends), 200, "noop", NULL);
    REQUIRE (both.client);
    emq_client_set_failover_timeout (both.client, 1500);
    s_load_run (&both, 20, 20, 20000);
    s_load_wait_results (&both, 20000);

    kill (a, SIGSTOP);
    int64_t stopped = clock_mono_ms ();
    for (int i = 0; i < 50; i++)
        s_load_submit (&both);
    //  A job for the stopped router: it waits in its socket.
    zsock_t *sock = h_dealer (slot[0].frontend, NULL);
    REQUIRE (sock);
    void *payload;
    size_t size;
    h_payload_run ("context", NULL, &payload, &size);
    char msgid[37];
    emqp_msgid_new (msgid);
    s_send_request (sock, msgid, "default", "reply-requested", payload, size);
    int64_t takeover_ms = s_wait_serving (t, slot[1].admin, 10000);
    REQUIRE_MSG (takeover_ms <= h_ms (2 * S_LEASE_TTL_MS) + 500,
                 "the standby took %lld ms to serve (lease %d ms)",
                 (long long) takeover_ms, S_LEASE_TTL_MS);
    //  STATUS names the lead: epoch 2, this router.
    json_t *answer = h_admin_at (t, slot[1].admin, "STATUS", h_ms (1000));
    REQUIRE (answer);
    REQUIRE_INT (h_jint (answer, -1, "store", "lead", "epoch", NULL), ==, 2);
    REQUIRE_STREQ (json_string_value (h_jget (answer, "store", "kind", NULL)),
                   "postgresql");
    json_decref (answer);
    //  The new leader serves; the job managers follow it.
    emq_client_t *client_b = emq_client_new (slot[1].frontend);
    REQUIRE (client_b);
    emq_client_destroy (&load.client);
    load.client = client_b;
    s_load_run (&load, 200, 100, 20000);
    s_load_wait_results (&load, 20000);

    s_load_run (&both, 0, 50, 20000);
    s_load_wait_results (&both, 20000);
    REQUIRE_STREQ (emq_client_endpoint (both.client), slot[1].frontend);

    kill (a, SIGCONT);
    int status = 0;
    REQUIRE_MSG (h_proc_wait (t, a, 5000, &status),
                 "the woken router did not stand down");
    REQUIRE_MSG (WIFEXITED (status) && WEXITSTATUS (status) == 6,
                 "the woken router: status %d, expected exit 6", status);
    int64_t paused_ms = clock_mono_ms () - stopped;
    emqp_msg_t *reply = h_recv_msg (t, sock, 500);
    REQUIRE_MSG (reply == NULL, "the deposed router answered: command %d",
                 reply ? (int) reply->command : -1);
    REQUIRE_INT (h_log_count (t, "router-a", "standing down"), ==, 1);
    s_db_t *db = s_db_open (t, NULL);
    char sql[256];
    snprintf (sql, sizeof sql, "SELECT count(*) FROM jobs WHERE msgid = '%s'", msgid);
    REQUIRE_INT (s_db_int (db, sql), ==, 0);
    s_verdict_t v = s_load_verify (&load, db);
    s_verdict_t vb = s_load_verify (&both, db);
    s_db_close (&db);
    REQUIRE_INT (v.lost, ==, 0);
    REQUIRE_INT (vb.lost, ==, 0);
    REQUIRE_INT (vb.acked, ==, 70);  // the 50 sent to the stopped router too
    REQUIRE_MSG (h_pid_alive (b), "the new leader died");
    //  A standby stopped while it waits: a clean exit.
    h_slot_t slot_c = slot[0];
    snprintf (slot_c.admin, sizeof slot_c.admin, "ipc://%s/admin-c", t->dir);
    pid_t c = s_slot_router (t, &slot_c, "router-c", false);
    REQUIRE_WAIT (h_log_count (t, "router-c", "standby: another router leads") == 1,
                  5000);
    kill (c, SIGTERM);
    s_exit_check (t, c, 5000, 0, "a standby stopped by SIGTERM");
    s_report (
        t,
        "leader stopped %lld ms; the standby served after %lld ms; the woken router "
        "ACKed and stored nothing, stood down (exit 6); %zu jobs ACKed, lost %zu",
        (long long) paused_ms, (long long) takeover_ms, v.acked, v.lost);
    free (payload);
    zsock_destroy (&sock);
    emq_client_destroy (&load.client);
    s_load_destroy (&load);
    emq_client_destroy (&both.client);
    s_load_destroy (&both);
}

//  One libemq client given both routers' addresses follows the lead on
//  its own: kill -9 of the leader under load, 5 rounds, and the test never
//  reconnects nor resubmits. Every job it submitted is ACKed once (the
//  client drops a second ACK of a REQUEST it sent again), stored once and
//  done, and every one's RESULT reaches it; emq-cli with address lists
//  submits and reads STATUS through whichever router leads.
static void
test_pg_failover_client (h_test_t *t)
{
    if (!s_on_postgresql (t))
        return;
    h_slot_t slot[2];
    h_slots (t, slot);
    pid_t router[2];
    router[0] = s_slot_router (t, &slot[0], "router-a1", true);
    router[1] = s_slot_router (t, &slot[1], "router-b1", false);
    s_failover_jms (t, slot);
    char frontends[2 * sizeof slot[0].frontend + 2], admins[2 * sizeof slot[0].admin + 2];
    snprintf (frontends, sizeof frontends, "%s, %s", slot[0].frontend, slot[1].frontend);
    snprintf (admins, sizeof admins, "%s,%s", slot[0].admin, slot[1].admin);
    emq_client_t *client = emq_client_new (frontends);
    REQUIRE (client);
    REQUIRE_STREQ (emq_client_endpoint (client), slot[0].frontend);
    const int rounds = 5;
    int per_round = h_count (400);
    s_load_t load;
    s_load_init (&load, t, client, (size_t) (per_round + 200) * rounds + 100, "noop",
                 NULL);
    int active = 0;
    size_t inflight_at_kills = 0;
    for (int round = 0; round < rounds; round++) {
        int sent = 0;
        while (sent < per_round / 2
               || load.acked < (size_t) (per_round / 3) * (round + 1)) {
            if (sent < per_round && load.inflight < 300) {
                s_load_submit (&load);
                sent++;
            }
            s_load_drain_max (&load, sent < per_round ? 0 : 50, 100);
        }
        for (int i = 0; i < 200; i++)
            s_load_submit (&load);
        inflight_at_kills += load.inflight + (load.count - load.results);
        s_kill9 (t, router[active]);
        int other = 1 - active;
        int64_t failover_ms = s_wait_serving (t, slot[other].admin, 10000);
        //  The dead one comes back as the standby.
        char tag[32];
        snprintf (tag, sizeof tag, "router-%c%d", active ? 'b' : 'a', round + 2);
        router[active] = s_slot_router (t, &slot[active], tag, false);
        //  Jobs go on, through the same client, to whichever router leads.
        for (int i = 0; i < per_round - sent; i++)
            s_load_submit (&load);
        s_load_run (&load, 0, 300, 30000);
        REQUIRE_STREQ (emq_client_endpoint (client), slot[other].frontend);
        s_report (t,
                  "round %d: kill -9 of the leader; the standby served %lld ms later; "
                  "%zu of %zu jobs ACKed so far",
                  round + 1, (long long) failover_ms, load.acked, load.count);
        active = other;
    }
    s_load_run (&load, 0, 300, 30000);
    //  Every ACKed job's RESULT; if one is missing, what the store says.
    int64_t results_deadline = clock_mono_ms () + h_ms (60000);
    size_t missing = 1;
    while (missing && clock_mono_ms () < results_deadline) {
        s_load_drain (&load, 200);
        missing = 0;
        for (size_t i = 0; i < load.count; i++)
            missing += load.jobs[i].acked && load.jobs[i].results == 0;
    }
    if (missing) {
        s_db_t *db = s_db_open (t, NULL);
        size_t shown = 0;
        for (size_t i = 0; i < load.count && shown < 10; i++) {
            if (!load.jobs[i].acked || load.jobs[i].results)
                continue;
            char state[32] = "";
            long long attempt = 0;
            s_db_job (db, load.jobs[i].msgid, state, sizeof state, &attempt);
            printf ("    no RESULT: job %zu %s: %s, attempt %lld\n", i,
                    load.jobs[i].msgid, state, attempt);
            shown++;
        }
        s_db_close (&db);
        REQUIRE_MSG (false, "%zu ACKed jobs without a RESULT after %d ms", missing,
                     h_ms (60000));
    }
    size_t twice = 0;
    for (size_t i = 0; i < load.count; i++)
        twice += load.jobs[i].results > 1;
    s_db_t *db = s_db_open (t, NULL);
    REQUIRE_WAIT (s_db_int (db, "SELECT count(*) FROM jobs WHERE state != 'done'") == 0,
                  30000);
    s_verdict_t v = s_load_verify (&load, db);
    long long rows = s_db_int (db, "SELECT count(*) FROM jobs");
    s_db_close (&db);
    REQUIRE_INT (v.lost, ==, 0);
    REQUIRE_INT (v.abandoned, ==, 0);  // every job submitted was ACKed
    REQUIRE_INT (v.acked, ==, load.count);
    REQUIRE_INT (rows, ==, (long long) load.count);  // each msgid stored once
    REQUIRE_MSG (twice <= inflight_at_kills,
                 "%zu jobs had two RESULTs, more than the %zu in flight at the kills",
                 twice, inflight_at_kills);
    s_report (t,
              "%d failovers: %zu jobs submitted through one client with both "
              "addresses, all ACKed once, %lld rows, lost 0, every RESULT received "
              "(%zu twice: ran again after a kill)",
              rounds, load.count, rows, twice);

    //  emq-cli with lists: the first router of each list is the standby
    //  now or the leader, whichever; both calls find the leader.
    h_cli_t r;
    h_cli (t, &r, 20000, "--addr", frontends, "--admin-addr", admins, "submit", "--wait",
           "run", "libemq_examples.so", "upper", "\"list\"", NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli submit with a list: exit %d: %s", r.status,
                 r.err);
    REQUIRE_CONTAINS (r.out, "LIST");
    h_cli_free (&r);
    h_cli (t, &r, 20000, "--admin-addr", admins, "status", "--json", NULL);
    REQUIRE_MSG (r.status == 0, "emq-cli status with a list: exit %d: %s", r.status,
                 r.err);
    REQUIRE_CONTAINS (r.out, "\"lead\":{\"epoch\":6");
    h_cli_free (&r);
    //  A command that changes something goes to the one router that takes
    //  it (the leader): cancel of a job no one has is NOT_FOUND (exit 8),
    //  not a timeout.
    h_cli (t, &r, 20000, "--admin-addr", admins, "cancel", "no-such-job", NULL);
    REQUIRE_MSG (r.status == 8, "emq-cli cancel with a list: exit %d: %s", r.status,
                 r.err);
    h_cli_free (&r);
    //  A bad list is refused with its reason.
    h_cli (t, &r, 10000, "--addr", "tcp://127.0.0.1:1,,tcp://127.0.0.1:2", "submit",
           "run", "libemq_examples.so", "noop", NULL);
    REQUIRE_MSG (r.status != 0, "a list with an empty item was taken");
    REQUIRE_CONTAINS (r.err, "item 2 is empty");
    h_cli_free (&r);
    s_load_drain (&load, 0);
    emq_client_destroy (&load.client);
    s_load_destroy (&load);
}

//  ---------------------------------------------------------------------

const h_testdef_t h_durability_tests[] = {
    { "router_kill9_rounds", test_router_kill9_rounds,
      "kill -9 the router mid-stream, 3 rounds: no ACKed job lost" },
    { "batch_kill9", test_batch_kill9,
      "kill -9 the router with BATCHes of jobs on their way: no ACKed job lost" },
    { "jm_kill9_jobs_finish", test_jm_kill9_jobs_finish,
      "kill -9 a jm running jobs: they end ok on the other" },
    { "crash_dead_retry", test_crash_dead_retry,
      "crash on every attempt: dead, dead retry, dead purge" },
    { "dead_many", test_dead_many,
      "thousands of dead jobs: dead retry --all and purge in chunks, one answer" },
    { "backlog_restart_order", test_backlog_restart_order,
      "100k-job backlog survives SIGTERM, runs in order" },
    { "takeover", test_takeover,
      "--takeover and --standby: never two routers, none lost" },
    { "disk_full", test_disk_full, "full disk: ERROR STORAGE, no ACK, recovery" },
    { "results_fetch", test_results_fetch,
      "emq-cli result, --wait, NOT_FOUND, late fetch" },
    { "delay_and_cancel", test_delay_and_cancel,
      "--delay, cancel queued, scheduled, running" },
    { "idempotent_submit", test_idempotent_submit, "one msgid twice: two ACKs, one run" },
    { "pg_router_kill9_rounds", test_pg_router_kill9_rounds,
      "PostgreSQL: kill -9 the router mid-stream, 3 rounds: no ACKed job lost" },
    { "pg_batch_kill9", test_pg_batch_kill9,
      "PostgreSQL: kill -9 with BATCHes on their way: no ACKed job lost" },
    { "pg_backlog_restart_order", test_pg_backlog_restart_order,
      "PostgreSQL: a backlog survives SIGTERM, runs in order" },
    { "pg_crash_dead_retry", test_pg_crash_dead_retry,
      "PostgreSQL: dead jobs, dead retry, dead purge" },
    { "pg_failover_kill9", test_pg_failover_kill9,
      "PostgreSQL, 2 routers: kill -9 the leader, 5 rounds: the standby serves, none "
      "lost" },
    { "pg_failover_client", test_pg_failover_client,
      "PostgreSQL, 2 routers: one client with both addresses follows the lead, kill -9 "
      "5 rounds: all ACKed once, none lost, every RESULT" },
    { "pg_failover_sigstop", test_pg_failover_sigstop,
      "PostgreSQL, 2 routers: SIGSTOP the leader past its lease: fenced, stands down" },
    { "pg_server_restart", test_pg_server_restart,
      "PostgreSQL restarted under load: ERROR STORAGE, resumes, no ACKed job lost" },
};

const size_t h_durability_count =
    sizeof h_durability_tests / sizeof h_durability_tests[0];
