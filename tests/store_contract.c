/*  store_contract — the store's promises (router/store.h), checked the same
    way on each backend: SQLite in a temp file, PostgreSQL on a server of
    the test's own. In process: this file drives store_t directly, as the
    router's loop does (write, submit, wait for the COMMIT event, read).

    What only PostgreSQL has is checked after: one router per database (a
    second store is refused, naming the holder), and a server restarted
    under the store (the batch then fails with a clear reason, the next
    one is written, reads work again).
*/
#include "harness.h"
#include "router/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  Submits the open batch and waits for its COMMIT event; its rc.
static int
s_commit (store_t *store)
{
    int rc = store_submit (store, false);
    REQUIRE_MSG (rc == 0, "store_submit: %d (%s)", rc, store_error (store));
    store_event_t event;
    REQUIRE_MSG (store_recv (store, &event, h_ms (10000)) == 0, "no COMMIT event");
    REQUIRE (event.type == STORE_EV_COMMIT);
    return event.rc;
}

//  Starts a delete task (expire, purge) and waits for its event: the rows
//  deleted.
static int64_t
s_task (store_t *store, int rc)
{
    REQUIRE_INT (rc, ==, 0);
    store_event_t event;
    REQUIRE_MSG (store_recv (store, &event, h_ms (20000)) == 0, "no task event");
    REQUIRE (event.type == STORE_EV_EXPIRED || event.type == STORE_EV_PURGED);
    REQUIRE_MSG (event.rc == 0, "task failed: %s", store_error (store));
    return event.count;
}

//  Sums store_count_by_queue's counts (the monitoring gauges).
static void
s_sum_counts (const char *queue, int64_t count, void *arg)
{
    (void) queue;
    *(int64_t *) arg += count;
}

static int
s_collect (const store_row_t *row, void *arg)
{
    char *seen = (char *) arg;
    size_t n = strlen (seen);
    if (n < 900)
        snprintf (seen + n, 1000 - n, "%s:%s ", row->msgid,
                  store_state_name (row->state));
    return 0;
}

static void
s_collect_meta (const char *key, int64_t value, void *arg)
{
    char *seen = (char *) arg;
    size_t n = strlen (seen);
    snprintf (seen + n, 200 - n, "%s=%lld ", key, (long long) value);
}

static int
s_copy (const store_row_t *row, void *arg)
{
    //  The row's pointers are the store's until the callback returns.
    store_row_t *out = (store_row_t *) arg;
    *out = *row;
    static char payload[256], result[256], headers[256], client[64], status[32],
        usage[64];
    out->payload =
        row->payload ? memcpy (payload, row->payload,
                               row->payload_size < sizeof payload ? row->payload_size : 0)
                     : payload;
    out->result = row->result
                      ? memcpy (result, row->result,
                                row->result_size < sizeof result ? row->result_size : 0)
                      : NULL;
    out->client = row->client
                      ? memcpy (client, row->client,
                                row->client_size < sizeof client ? row->client_size : 0)
                      : NULL;
    snprintf (headers, sizeof headers, "%s", row->headers ? row->headers : "");
    out->headers = headers;
    snprintf (status, sizeof status, "%s", row->status ? row->status : "");
    out->status = row->status ? status : NULL;
    snprintf (usage, sizeof usage, "%s", row->usage ? row->usage : "");
    out->usage = row->usage ? usage : NULL;
    out->msgid = out->queue = NULL;
    return 0;
}

static store_row_t
s_row (const char *msgid, const char *headers, const void *payload, size_t size)
{
    return (store_row_t){ .msgid = msgid,
                          .queue = "default",
                          .headers = headers,
                          .payload = payload,
                          .payload_size = size,
                          .client = "\0cl",
                          .client_size = 3,
                          .state = STORE_QUEUED,
                          .retries_left = 2,
                          .created_at = 1000 };
}

static store_t *
s_open (h_test_t *t, store_backend_t backend, const char *where)
{
    char err[512];
    store_t *store =
        store_open_backend (backend, where, STORE_FSYNC_EVERYSEC, NULL, err, sizeof err);
    REQUIRE_MSG (store != NULL, "store_open_backend: %s", err);
    h_log (t, "store open: %s %s", store_kind (store), store_where (store));
    return store;
}

//  The promises of store.h, on one backend.
static void
s_contract (h_test_t *t, store_backend_t backend, const char *where)
{
    store_t *store = s_open (t, backend, where);
    REQUIRE_STREQ (store_kind (store), backend == STORE_SQLITE ? "sqlite" : "postgresql");
    REQUIRE (store_sock (store) != NULL);

    //  Rows keep every byte: a payload with NULs, headers that are not
    //  UTF-8, a binary client id.
    static const char payload[] = { 'p', 0, 'q', (char) 0xff };
    const char *latin1 = "n\xe9"
                         "e=caf\xe9";
    const char *ids[] = { "a", "b", "c", "d" };
    int64_t seqs[4];
    for (int i = 0; i < 4; i++) {
        store_row_t row = s_row (ids[i], i == 1 ? latin1 : "", payload, sizeof payload);
        REQUIRE_INT (store_insert (store, &row, &seqs[i]), ==, 0);
        REQUIRE (seqs[i] > (i ? seqs[i - 1] : 0));
    }
    REQUIRE_INT (store_barrier (store), ==, 1);
    REQUIRE_INT (s_commit (store), ==, 0);
    REQUIRE_INT (store_settled (store), ==, 1);
    REQUIRE (!store_was_duplicate (store, seqs[0]));
    store_row_t got;
    REQUIRE_INT (store_fetch (store, "b", s_copy, &got), ==, 1);
    REQUIRE_STREQ (got.headers, latin1);
    REQUIRE_INT (got.payload_size, ==, sizeof payload);
    REQUIRE (memcmp (got.payload, payload, sizeof payload) == 0);
    REQUIRE_INT (got.client_size, ==, 3);
    REQUIRE (memcmp (got.client, "\0cl", 3) == 0);
    REQUIRE_INT (got.retries_left, ==, 2);

    //  The same msgid again: ACKed, not stored twice.
    store_row_t again = s_row ("a", "", "x", 1);
    int64_t seq;
    REQUIRE_INT (store_insert (store, &again, &seq), ==, 0);
    REQUIRE_INT (s_commit (store), ==, 0);
    REQUIRE (store_was_duplicate (store, seq));
    REQUIRE_INT (store_fetch (store, "a", s_copy, &got), ==, 1);
    REQUIRE_INT (got.payload_size, ==, sizeof payload);  // the first one's

    //  A dispatch goes with the job's end; ended rows drop their payload
    //  (dead ones keep it); a retry waits scheduled.
    REQUIRE_INT (store_set_dispatched (store, seqs[0], 1, 77), ==, 0);
    REQUIRE_INT (
        store_set_ended (store, seqs[0], STORE_DONE, "ok", "42", 2, "wall_us=5", 2000),
        ==, 0);
    REQUIRE_INT (store_set_waiting (store, seqs[2], STORE_SCHEDULED, 1, 3000), ==, 0);
    REQUIRE_INT (
        store_set_ended (store, seqs[3], STORE_DEAD, "failed", "boom", 4, "", 2500), ==,
        0);
    REQUIRE_INT (store_meta_set (store, "fence", 41), ==, 0);
    REQUIRE_INT (store_meta_set (store, "fence", 42), ==, 0);
    REQUIRE_INT (s_commit (store), ==, 0);
    REQUIRE_INT (store_fetch (store, "a", s_copy, &got), ==, 1);
    REQUIRE (got.state == STORE_DONE);
    REQUIRE_STREQ (got.status, "ok");
    REQUIRE_INT (got.result_size, ==, 2);
    REQUIRE (memcmp (got.result, "42", 2) == 0);
    REQUIRE_STREQ (got.usage, "wall_us=5");
    REQUIRE_INT (got.payload_size, ==, 0);
    REQUIRE_INT (got.attempt, ==, 1);
    REQUIRE_INT (got.epoch, ==, 77);
    REQUIRE_INT (store_fetch (store, "d", s_copy, &got), ==, 1);
    REQUIRE (got.state == STORE_DEAD && got.payload_size == sizeof payload);
    REQUIRE_INT (store_fetch (store, "zz", s_copy, &got), ==, 0);
    REQUIRE_INT (store_count (store, STORE_DEAD), ==, 1);
    REQUIRE_INT (store_count (store, STORE_QUEUED), ==, 1);
    REQUIRE_INT (store_count (store, STORE_SCHEDULED), ==, 1);
    int64_t meta = 0;
    REQUIRE_INT (store_meta_get (store, "fence", &meta), ==, 0);
    REQUIRE_INT (meta, ==, 42);
    REQUIRE_INT (store_meta_get (store, "absent", &meta), ==, 1);
    //  Keys listed by prefix, in byte order.
    REQUIRE_INT (store_meta_set (store, "p:b", 2), ==, 0);
    REQUIRE_INT (store_meta_set (store, "p:a", 1), ==, 0);
    REQUIRE_INT (store_meta_set (store, "q:a", 3), ==, 0);
    REQUIRE_INT (s_commit (store), ==, 0);
    static char keys[200];
    keys[0] = 0;
    REQUIRE_INT (store_meta_list (store, "p:", s_collect_meta, keys), ==, 0);
    REQUIRE_STREQ (keys, "p:a=1 p:b=2 ");

    //  A big batch: more changes than one pipeline's depth, one commit.
    int big = 3000;
    for (int i = 0; i < big; i++) {
        char msgid[32];
        snprintf (msgid, sizeof msgid, "big%05d", i);
        store_row_t row = s_row (msgid, "", "p", 1);
        REQUIRE_INT (store_insert (store, &row, &seq), ==, 0);
    }
    REQUIRE_INT (s_commit (store), ==, 0);
    REQUIRE_INT (store_count (store, STORE_QUEUED), ==, big + 1);
    store_close (&store);

    //  Reopened: unfinished jobs come back in submission order, results
    //  and dead jobs are there, new keys come after the old ones.
    store = s_open (t, backend, where);
    static char seen[1000];
    seen[0] = 0;
    int64_t loaded = 0;
    REQUIRE_INT (store_load (store, s_collect, seen), ==, 0);
    REQUIRE_MSG (
        strncmp (seen, "b:queued c:scheduled big00000:queued big00001:queued", 52) == 0,
        "loaded: %.120s", seen);
    (void) loaded;
    seen[0] = 0;
    REQUIRE_INT (store_list_dead (store, 0, s_collect, seen), ==, 1);
    REQUIRE_STREQ (seen, "d:dead ");
    REQUIRE_INT (store_fetch (store, "a", s_copy, &got), ==, 1);
    REQUIRE (got.state == STORE_DONE);
    store_row_t late = s_row ("late", "", "p", 1);
    REQUIRE_INT (store_insert (store, &late, &seq), ==, 0);
    REQUIRE (seq > seqs[3] + big);
    REQUIRE_INT (s_commit (store), ==, 0);

    //  Dead jobs in pages, newest first; a revived one leaves the list;
    //  one revived after a purge deleted it comes back whole.
    int64_t dead_seqs[5];
    for (int i = 0; i < 5; i++) {
        char msgid[16];
        snprintf (msgid, sizeof msgid, "dead%d", i);
        store_row_t row = s_row (msgid, "", "p", 1);
        REQUIRE_INT (store_insert (store, &row, &dead_seqs[i]), ==, 0);
    }
    REQUIRE_INT (s_commit (store), ==, 0);
    for (int i = 0; i < 5; i++)
        REQUIRE_INT (store_set_ended (store, dead_seqs[i], STORE_DEAD, "failed", "e", 1,
                                      "", 3000 + i),
                     ==, 0);
    REQUIRE_INT (s_commit (store), ==, 0);
    store_cursor_t cursor = { 0, 0 };
    seen[0] = 0;
    REQUIRE_INT (store_list_dead_page (store, &cursor, 2, s_collect, seen), ==, 2);
    REQUIRE_STREQ (seen, "dead4:dead dead3:dead ");
    store_row_t revived = s_row ("dead4", "", "p", 1);
    revived.seq = dead_seqs[4];
    REQUIRE_INT (store_revive (store, &revived, 1), ==, 0);
    REQUIRE_INT (s_commit (store), ==, 0);
    REQUIRE_INT (store_list_dead_page (store, &cursor, 2, s_collect, seen), ==, 2);
    REQUIRE_STREQ (seen, "dead4:dead dead3:dead dead2:dead dead1:dead ");
    REQUIRE_INT (store_count (store, STORE_DEAD), ==, 5);  // d, dead0..3
    int64_t dead_sum = 0;
    REQUIRE_INT (store_count_by_queue (store, STORE_DEAD, s_sum_counts, &dead_sum), ==,
                 0);
    REQUIRE_INT (dead_sum, ==, 5);
    REQUIRE_INT (s_task (store, store_purge_dead (store)), ==, 5);
    REQUIRE_INT (store_count (store, STORE_DEAD), ==, 0);
    revived = s_row ("dead0", "", "p", 1);
    revived.seq = dead_seqs[0];
    REQUIRE_INT (store_revive (store, &revived, 1), ==, 0);
    REQUIRE_INT (s_commit (store), ==, 0);
    REQUIRE_INT (store_fetch (store, "dead0", s_copy, &got), ==, 1);
    REQUIRE (got.state == STORE_QUEUED);

    //  Retention: results ended before now - result_ttl go ("a", ended at
    //  2000); a dead job within dead_ttl stays.
    store_row_t recent = s_row ("recent", "", "p", 1);
    REQUIRE_INT (store_insert (store, &recent, &seq), ==, 0);
    REQUIRE_INT (store_set_ended (store, seq, STORE_DEAD, "failed", "e", 1, "", 5000), ==,
                 0);
    REQUIRE_INT (s_commit (store), ==, 0);
    REQUIRE_INT (s_task (store, store_expire (store, 2100, 50, 1000)), ==, 1);
    REQUIRE_INT (store_fetch (store, "a", s_copy, &got), ==, 0);
    REQUIRE_INT (store_fetch (store, "recent", s_copy, &got), ==, 1);
    REQUIRE (got.state == STORE_DEAD);
    store_close (&store);
}

static void
test_store_contract (h_test_t *t)
{
    char path[H_PATH_MAX + 16];
    snprintf (path, sizeof path, "%s/contract.db", t->dir);
    s_contract (t, STORE_SQLITE, path);
}

static void
test_pg_store_contract (h_test_t *t)
{
    if (!h_pg_bin ()) {
        printf (
            "    (PostgreSQL not installed: apt-get install postgresql; test skipped)\n");
        return;
    }
    const char *dsn = h_pg_start (t);
    s_contract (t, STORE_POSTGRESQL, dsn);

    //  One router leads a database: a second store is refused and says
    //  which leads (the contract's stores gave the lead back when closed).
    store_t *store = s_open (t, STORE_POSTGRESQL, dsn);
    REQUIRE (store_leading (store));
    REQUIRE (store_lead_epoch (store) > 0);
    char err[512];
    store_t *second = store_open_backend (STORE_POSTGRESQL, dsn, STORE_FSYNC_OFF, NULL,
                                          err, sizeof err);
    REQUIRE (second == NULL);
    REQUIRE_CONTAINS (err, "another router leads this database");
    //  A database that cannot be reached: a clear error, no store.
    second = store_open_backend (STORE_POSTGRESQL, "host=/nonexistent dbname=emq",
                                 STORE_FSYNC_OFF, NULL, err, sizeof err);
    REQUIRE (second == NULL);
    REQUIRE_CONTAINS (err, "cannot connect to PostgreSQL");

    //  The server restarts under the store: the first batch after it may
    //  fail (its connection is gone: the reason says so, nothing of it is
    //  kept), and then writing and reading go on by themselves.
    REQUIRE (h_pg_restart (t, 200));
    store_row_t row = s_row ("after-restart", "", "p", 1);
    int64_t seq;
    int rc = -1;
    for (int attempt = 0; attempt < 20 && rc != 0; attempt++) {
        REQUIRE_INT (store_insert (store, &row, &seq), ==, 0);
        rc = s_commit (store);
        if (rc)
            h_log (t, "batch after the restart: %s", store_error (store));
    }
    REQUIRE_INT (rc, ==, 0);
    store_row_t got;
    REQUIRE_INT (store_fetch (store, "after-restart", s_copy, &got), ==, 1);
    //  And the lock was taken again: still one router per database.
    second = store_open_backend (STORE_POSTGRESQL, dsn, STORE_FSYNC_OFF, NULL, err,
                                 sizeof err);
    REQUIRE (second == NULL);
    REQUIRE_CONTAINS (err, "another router leads this database");
    REQUIRE (store_leading (store));

    //  Another router takes the lead (as a standby does once the lease
    //  expired; here by hand): the next batch is refused by the database's
    //  fence, nothing of it is kept, and the store says it leads no more.
    PGconn *conn = h_pg_connect (t);
    PGresult *res =
        PQexec (conn, "UPDATE emq_leader SET epoch = epoch + 1, holder = 'the test'");
    REQUIRE (res && PQresultStatus (res) == PGRES_COMMAND_OK);
    PQclear (res);
    store_row_t fenced = s_row ("fenced-job", "", "p", 1);
    REQUIRE_INT (store_insert (store, &fenced, &seq), ==, 0);
    REQUIRE_INT (s_commit (store), ==, -1);
    REQUIRE_CONTAINS (store_error (store), "fenced");
    REQUIRE (!store_leading (store));
    REQUIRE_CONTAINS (store_lead_lost (store), "fenced");
    REQUIRE_INT (h_pg_int (conn, "SELECT count(*) FROM jobs WHERE msgid = 'fenced-job'"),
                 ==, 0);
    //  Its expiry and purge are fenced too.
    REQUIRE_INT (store_purge_dead (store), ==, 0);
    store_event_t event;
    REQUIRE (store_recv (store, &event, h_ms (10000)) == 0);
    REQUIRE (event.type == STORE_EV_PURGED && event.rc == -1);
    REQUIRE_CONTAINS (store_error (store), "fenced");
    store_close (&store);
    //  A deposed store does not give back a lead it does not hold.
    REQUIRE_INT (h_pg_int (conn, "SELECT (expires > now ())::int FROM emq_leader"), ==,
                 1);
    PQfinish (conn);
}

const h_testdef_t h_store_contract_tests[] = {
    { "store_contract", test_store_contract,
      "SQLite: the store's promises, in process (store.h)" },
    { "pg_store_contract", test_pg_store_contract,
      "PostgreSQL: the same promises; one router per database; a server restart" },
};

const size_t h_store_contract_count =
    sizeof h_store_contract_tests / sizeof h_store_contract_tests[0];
