/*  store — the router's job table in SQLite. See store.h.

    One table, one row per job. Two indexes: msgid (UNIQUE: duplicates and
    lookups) and a partial index on (state, ended_at) that holds ended rows
    only. A job's life (insert, dispatch, end) touches the second index
    once, when it ends; the queued -> running -> ended moves of a live job
    change no index at all. The rows of live jobs are found by a scan in
    rowid order, which only store_load (start-up) does. The msgid index is
    the one write a job costs that no batching shares: msgids are random
    (UUIDv4), so each new row dirties its own leaf page of that index
    (docs/performance.md has the figures).

    Two connections: this module's, on the router's loop, which creates
    the tables and does every read; and the writer thread's (writer.c),
    which does every write. Rows get their key (seq) here, from the
    largest one found at start, so that the loop knows it at once.

    Writes build the open batch (writer_batch_t). Dispatches are held back
    (s_deferred_t, oldest first): the job's next write (end, retry) carries
    the dispatch's attempt and epoch, and a dispatch still running after
    S_DISPATCH_DEFER_MS goes into a batch of its own accord. A batch that
    failed gives its dispatches back to that list, so that the ends the
    router writes again carry them again.

    Memory: each connection's page cache is bounded (this one's by
    S_CACHE_KIB, the writer's and checkpointer's in writer.c), the database
    is not memory-mapped, and the WAL is checkpointed every ~1,000 pages
    and reused at 64 MiB at most (writer.c); so what SQLite holds does not
    grow with the number of jobs. Large deletes are done in
    chunks by the writer (store_expire, store_purge_dead).
*/
#include "store.h"

#include <assert.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg.h"
#include "writer.h"

static const char *s_state_names[STORE_STATE_COUNT] = {
    "queued", "running", "scheduled", "done", "failed", "dead", "cancelled"
};

//  The loop's page cache, in KiB (the writer has its own, of 2 MiB): what
//  it may hold whatever the backlog. Reads are of single rows and short
//  pages of the dead list; the OS page cache does the rest (not in RSS).
#define S_CACHE_KIB 512
//  How long a dispatch waits for the job's next write before it is written
//  on its own: jobs shorter than this never cost a dispatch write.
#define S_DISPATCH_DEFER_MS 1000

enum {
    S_LOAD,
    S_FETCH,
    S_DEAD,
    S_COUNT,
    S_COUNT_ENDED,
    S_META_GET,
    S_META_SET,
    S_MAX_SEQ,
    S_META_LIST,
    S_STATEMENT_COUNT
};

static const char *s_sql[S_STATEMENT_COUNT] = {
    [S_LOAD] = "SELECT seq, msgid, queue, headers, payload, client, state, attempt, "
               "retries_left,"
               " run_at, created_at, ended_at, status, result, usage, epoch FROM jobs"
               " WHERE state IN ('queued', 'running', 'scheduled') ORDER BY seq",
    [S_FETCH] = "SELECT seq, msgid, queue, headers, payload, client, state, attempt, "
                "retries_left,"
                " run_at, created_at, ended_at, status, result, usage, epoch FROM jobs "
                "WHERE msgid = ?",
    //  Newest first, after the cursor (ended_at, seq); "ended_at > 0" lets
    //  SQLite use the partial index jobs_ended.
    [S_DEAD] = "SELECT seq, msgid, queue, headers, payload, client, state, attempt, "
               "retries_left,"
               " run_at, created_at, ended_at, status, result, usage, epoch FROM jobs"
               " WHERE state = 'dead' AND ended_at > 0 AND (ended_at, seq) < (?, ?)"
               " ORDER BY ended_at DESC, seq DESC LIMIT ?",
    //  Live states have no index: a scan. Ended states: the index.
    [S_COUNT] = "SELECT count(*) FROM jobs WHERE state = ?",
    [S_COUNT_ENDED] = "SELECT count(*) FROM jobs WHERE state = ? AND ended_at > 0",
    [S_META_GET] = "SELECT value FROM meta WHERE key = ?",
    //  In memory mode only (there is no writer to do it).
    [S_META_SET] = "INSERT INTO meta (key, value) VALUES (?, ?)"
                   " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    [S_MAX_SEQ] = "SELECT coalesce(max(seq), 0) FROM jobs",
    //  Keys from ?1 up to (not including) ?2: a prefix's range.
    [S_META_LIST] =
        "SELECT key, value FROM meta WHERE key >= ?1 AND key < ?2 ORDER BY key",
};

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS jobs ("
    "  seq INTEGER PRIMARY KEY,"  // submission order
    "  msgid TEXT NOT NULL UNIQUE,"
    "  queue TEXT NOT NULL,"
    "  headers TEXT NOT NULL,"
    "  payload BLOB NOT NULL,"
    "  client BLOB,"  // submitter's routing id
    "  state TEXT NOT NULL,"
    "  attempt INTEGER NOT NULL DEFAULT 0,"
    "  retries_left INTEGER NOT NULL DEFAULT 0,"
    "  epoch INTEGER NOT NULL DEFAULT 0,"
    "  run_at REAL NOT NULL DEFAULT 0,"  // unix s, for scheduled jobs
    "  created_at REAL NOT NULL,"
    "  ended_at REAL NOT NULL DEFAULT 0,"
    "  status TEXT,"  // ok, failed, timeout, ...
    "  result BLOB,"  // value, or error text
    "  usage TEXT);"
    //  Ended rows only: expiry, the dead list and its count.
    "CREATE INDEX IF NOT EXISTS jobs_ended ON jobs (state, ended_at) WHERE ended_at > 0;"
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);";

//  Databases written before jobs_ended had an index on (state, seq), and
//  dead jobs queued again kept their ended_at. Run once, when that index
//  is found.
static const char *s_migrate_by_state =
    "BEGIN;"
    "DROP INDEX jobs_by_state;"
    "UPDATE jobs SET ended_at = 0 WHERE ended_at <> 0"
    "  AND state IN ('queued', 'running', 'scheduled');"
    "COMMIT;";

//  A dispatch not written yet.
typedef struct {
    int64_t seq;
    writer_dispatch_t dispatch;
    int64_t at_ms;  // monotonic, when it was made
} s_deferred_t;

struct store_t {
    sqlite3 *db;     // the loop's connection (in memory mode, the only one)
    store_pg_t *pg;  // the PostgreSQL backend's instead, if that is the backend
    char *where;     // the file, or the database
    sqlite3_stmt *stmt[S_STATEMENT_COUNT];
    bool memory;
    store_fsync_t policy;
    writer_t *writer;           // NULL in memory mode
    writer_batch_t *open;       // the batch being built
    writer_batch_t *done;       // the batch of the last COMMIT event (its
                                // duplicates), and the next one to build
    bool busy;                  // a batch is out
    uint64_t submitted;         // batches handed over (the one out is the last)
    uint64_t settled;           // batches whose event came
    int64_t next_seq;           // key of the next row inserted
    bool failed;                // a write to the open batch failed (no memory)
    zlistx_t *deferred;         // s_deferred_t * (owned), oldest first
    zhashx_t *deferred_by_seq;  // seq -> handle in deferred
    char error[256];
};

const char *
store_state_name (store_state_t state)
{
    return (int) state >= 0 && state < STORE_STATE_COUNT ? s_state_names[state]
                                                         : "unknown";
}

static store_state_t
s_state_lookup (const char *name)
{
    for (int i = 0; i < STORE_STATE_COUNT; i++)
        if (name && strcmp (name, s_state_names[i]) == 0)
            return (store_state_t) i;
    return STORE_QUEUED;
}

int
store_fsync_parse (const char *name, store_fsync_t *policy)
{
    if (strcmp (name, "always") == 0)
        *policy = STORE_FSYNC_ALWAYS;
    else if (strcmp (name, "everysec") == 0)
        *policy = STORE_FSYNC_EVERYSEC;
    else if (strcmp (name, "off") == 0)
        *policy = STORE_FSYNC_OFF;
    else
        return -1;
    return 0;
}

static int
s_exec (store_t *self, const char *sql)
{
    char *message = NULL;
    if (sqlite3_exec (self->db, sql, NULL, NULL, &message) != SQLITE_OK) {
        snprintf (self->error, sizeof self->error, "%s: %s", sql,
                  message ? message : sqlite3_errmsg (self->db));
        sqlite3_free (message);
        return -1;
    }
    return 0;
}

//  Keys of the deferred dispatches' hash are seqs (> 0) in the pointer.
static size_t
s_seq_hash (const void *key)
{
    return (size_t) ((uint64_t) (uintptr_t) key * 11400714819323198485ull >> 17);
}

static int
s_seq_compare (const void *a, const void *b)
{
    return (uintptr_t) a < (uintptr_t) b ? -1 : (uintptr_t) a > (uintptr_t) b;
}

#define S_SEQ_KEY(seq) ((void *) (uintptr_t) (seq))

static void
s_deferred_destroy (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

static int s_open_writes (store_t *self, char *err, size_t errlen);

//  The rest of store_open: the file's tables, its upgrade and check, the
//  next key, the statements, the writer. Returns 0, or -1 with the reason
//  in err.
static int
s_open_file (store_t *self, const char *path, char *err, size_t errlen)
{
    char bounds[160];
    snprintf (bounds, sizeof bounds,
              "PRAGMA cache_size = -%d; PRAGMA mmap_size = 0;"
              " PRAGMA secure_delete = FAST",
              S_CACHE_KIB);
    if ((!self->memory && s_exec (self, "PRAGMA journal_mode = WAL"))
        || s_exec (self, bounds) || s_exec (self, s_schema)) {
        snprintf (err, errlen, "cannot initialise %s: %s", path, self->error);
        return -1;
    }
    sqlite3_stmt *old_index = NULL;
    bool migrate = false;
    if (sqlite3_prepare_v2 (self->db,
                            "SELECT 1 FROM sqlite_master WHERE type = 'index'"
                            " AND name = 'jobs_by_state'",
                            -1, &old_index, NULL)
        == SQLITE_OK)
        migrate = sqlite3_step (old_index) == SQLITE_ROW;
    sqlite3_finalize (old_index);
    if (migrate && s_exec (self, s_migrate_by_state)) {
        snprintf (err, errlen, "cannot upgrade %s: %s", path, self->error);
        if (!sqlite3_get_autocommit (self->db))
            sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    //  A corrupted file is found now rather than on the first job.
    sqlite3_stmt *check = NULL;
    if (sqlite3_prepare_v2 (self->db, "PRAGMA quick_check", -1, &check, NULL) == SQLITE_OK
        && sqlite3_step (check) == SQLITE_ROW) {
        const char *verdict = (const char *) sqlite3_column_text (check, 0);
        if (!verdict || strcmp (verdict, "ok") != 0) {
            snprintf (err, errlen, "%s is damaged: %s", path, verdict ? verdict : "?");
            sqlite3_finalize (check);
            return -1;
        }
    }
    sqlite3_finalize (check);
    for (int i = 0; i < S_STATEMENT_COUNT; i++)
        if (sqlite3_prepare_v3 (self->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                &self->stmt[i], NULL)
            != SQLITE_OK) {
            snprintf (err, errlen, "cannot prepare statement: %s",
                      sqlite3_errmsg (self->db));
            return -1;
        }
    sqlite3_stmt *max = self->stmt[S_MAX_SEQ];
    if (sqlite3_step (max) != SQLITE_ROW) {
        snprintf (err, errlen, "cannot read %s: %s", path, sqlite3_errmsg (self->db));
        return -1;
    }
    self->next_seq = sqlite3_column_int64 (max, 0) + 1;
    sqlite3_reset (max);
    if (self->memory)
        return 0;
    self->writer = writer_new (path, self->policy, err, errlen);
    return s_open_writes (self, err, errlen);
}

//  The writing side, whatever the backend: the two batches, the deferred
//  dispatches (the writer is started).
static int
s_open_writes (store_t *self, char *err, size_t errlen)
{
    self->open = writer_batch_new ();
    self->done = writer_batch_new ();
    self->deferred = zlistx_new ();
    self->deferred_by_seq = zhashx_new ();
    if (!self->writer || !self->open || !self->done || !self->deferred
        || !self->deferred_by_seq) {
        if (self->writer)
            snprintf (err, errlen, "out of memory");
        return -1;
    }
    zlistx_set_destructor (self->deferred, s_deferred_destroy);
    zhashx_set_key_hasher (self->deferred_by_seq, s_seq_hash);
    zhashx_set_key_comparator (self->deferred_by_seq, s_seq_compare);
    zhashx_set_key_duplicator (self->deferred_by_seq, NULL);
    zhashx_set_key_destructor (self->deferred_by_seq, NULL);
    return 0;
}

int
store_backend_parse (const char *name, store_backend_t *backend)
{
    if (strcmp (name, "sqlite") == 0)
        *backend = STORE_SQLITE;
    else if (strcmp (name, "postgresql") == 0 || strcmp (name, "postgres") == 0)
        *backend = STORE_POSTGRESQL;
    else
        return -1;
    return 0;
}

store_t *
store_open_backend (store_backend_t backend, const char *location, store_fsync_t policy,
                    const store_lead_t *lead, char *err, size_t errlen)
{
    if (backend == STORE_SQLITE)
        return store_open (location, policy, err, errlen);
    store_t *self = calloc (1, sizeof (store_t));
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->policy = policy;
    int64_t max_seq = 0;
    store_pg_options_t options = { .lease_ttl_s = lead ? lead->lease_ttl_s : 10,
                                   .standby = lead && lead->standby,
                                   .addrs = lead ? lead->addrs : NULL };
    self->pg =
        store_pg_open (location, policy, &options, &self->writer, &max_seq, err, errlen);
    if (!self->pg || !(self->where = strdup (store_pg_where (self->pg)))
        || s_open_writes (self, err, errlen)) {
        if (self->pg && !self->where)
            snprintf (err, errlen, "out of memory");
        store_close (&self);
        return NULL;
    }
    self->next_seq = max_seq + 1;
    return self;
}

bool
store_leading (store_t *self)
{
    return !self->pg || store_pg_leading (self->pg);
}

const char *
store_lead_lost (store_t *self)
{
    return self->pg ? store_pg_lead_lost (self->pg) : NULL;
}

int64_t
store_lead_epoch (store_t *self)
{
    return self->pg ? store_pg_epoch (self->pg) : 0;
}

const char *
store_lead_holder (store_t *self)
{
    return self->pg ? store_pg_holder (self->pg) : NULL;
}

double
store_lead_since (store_t *self)
{
    return self->pg ? store_pg_since (self->pg) : 0;
}

int
store_routers (store_t *self, store_router_fn *fn, void *arg)
{
    if (!self->pg)
        return 0;
    return store_pg_routers (self->pg, fn, arg, self->error, sizeof self->error);
}

const char *
store_kind (store_t *self)
{
    return self->memory ? "memory" : self->pg ? "postgresql" : "sqlite";
}

const char *
store_where (store_t *self)
{
    return self->where ? self->where : "";
}

store_t *
store_open (const char *path, store_fsync_t policy, char *err, size_t errlen)
{
    store_t *self = calloc (1, sizeof (store_t));
    if (!self || !(self->where = strdup (path))) {
        free (self);
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->memory = strcmp (path, ":memory:") == 0;
    self->policy = policy;
    if (sqlite3_open_v2 (path, &self->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         NULL)
        != SQLITE_OK) {
        snprintf (err, errlen, "cannot open %s: %s", path,
                  self->db ? sqlite3_errmsg (self->db) : "out of memory");
        store_close (&self);
        return NULL;
    }
    sqlite3_busy_timeout (self->db, 2000);
    if (s_open_file (self, path, err, errlen)) {
        store_close (&self);
        return NULL;
    }
    return self;
}

void
store_close (store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_t *self = *self_p;
    //  The writer hands back a batch still out before it stops.
    writer_destroy (&self->writer);
    writer_batch_destroy (&self->open);
    writer_batch_destroy (&self->done);
    zhashx_destroy (&self->deferred_by_seq);
    zlistx_destroy (&self->deferred);
    for (int i = 0; i < S_STATEMENT_COUNT; i++)
        sqlite3_finalize (self->stmt[i]);
    if (self->db)
        sqlite3_close (self->db);
    store_pg_close (&self->pg);
    free (self->where);
    free (self);
    *self_p = NULL;
}

bool
store_is_memory (store_t *self)
{
    return self->memory;
}

const char *
store_error (store_t *self)
{
    return self->error;
}

//  --------------------------------------------------------------------------
//  Writes: the open batch

//  A write to the open batch could not be recorded (out of memory): the
//  batch must not commit as if it held it.
static int
s_write_failed (store_t *self, const char *what)
{
    snprintf (self->error, sizeof self->error, "%s: out of memory", what);
    self->failed = true;
    return -1;
}

//  Takes a job's dispatch out of the deferred list, into *dispatch; false
//  if it has none waiting.
static bool
s_take_deferred (store_t *self, int64_t seq, writer_dispatch_t *dispatch)
{
    void *handle = zhashx_lookup (self->deferred_by_seq, S_SEQ_KEY (seq));
    if (!handle)
        return false;
    s_deferred_t *deferred = (s_deferred_t *) zlistx_handle_item (handle);
    *dispatch = deferred->dispatch;
    zhashx_delete (self->deferred_by_seq, S_SEQ_KEY (seq));
    zlistx_delete (self->deferred, handle);
    return true;
}

//  Records a dispatch to write later (or updates the one waiting, keeping
//  its age). Returns 0, or -1 if out of memory.
static int
s_defer (store_t *self, int64_t seq, const writer_dispatch_t *dispatch, int64_t at_ms)
{
    void *handle = zhashx_lookup (self->deferred_by_seq, S_SEQ_KEY (seq));
    if (handle) {
        ((s_deferred_t *) zlistx_handle_item (handle))->dispatch = *dispatch;
        return 0;
    }
    s_deferred_t *deferred = (s_deferred_t *) malloc (sizeof (s_deferred_t));
    if (!deferred)
        return -1;
    *deferred = (s_deferred_t){ seq, *dispatch, at_ms };
    handle = zlistx_add_end (self->deferred, deferred);
    if (!handle) {
        free (deferred);
        return -1;
    }
    if (zhashx_insert (self->deferred_by_seq, S_SEQ_KEY (seq), handle)) {
        zlistx_delete (self->deferred, handle);
        return -1;
    }
    return 0;
}

//  Dispatches that waited S_DISPATCH_DEFER_MS (all, if all) join the open
//  batch.
static void
s_age_deferred (store_t *self, bool all)
{
    int64_t now = zclock_mono ();
    s_deferred_t *deferred;
    while ((deferred = (s_deferred_t *) zlistx_first (self->deferred)) != NULL) {
        if (!all && now - deferred->at_ms < S_DISPATCH_DEFER_MS)
            break;
        if (writer_batch_dispatched (self->open, deferred->seq, &deferred->dispatch))
            break;  // out of memory: they stay for a later batch
        zhashx_delete (self->deferred_by_seq, S_SEQ_KEY (deferred->seq));
        zlistx_delete (self->deferred, zlistx_cursor (self->deferred));
    }
}

int
store_insert (store_t *self, const store_row_t *row, int64_t *seq)
{
    *seq = 0;
    if (self->memory)
        return 0;  // in-memory mode: the router's structures are the store
    if (writer_batch_insert (self->open, self->next_seq, row))
        return s_write_failed (self, "insert job");
    *seq = self->next_seq++;
    return 0;
}

int
store_set_dispatched (store_t *self, int64_t seq, uint32_t attempt, uint64_t epoch)
{
    if (self->memory || seq <= 0)
        return 0;
    writer_dispatch_t dispatch = { attempt, epoch };
    if (s_defer (self, seq, &dispatch, zclock_mono ()))
        //  Nothing lost but the record of this dispatch (at-least-once).
        return s_write_failed (self, "mark job running");
    return 0;
}

int
store_set_waiting (store_t *self, int64_t seq, store_state_t state, uint32_t retries_left,
                   double run_at)
{
    assert (state == STORE_QUEUED || state == STORE_SCHEDULED);
    if (self->memory || seq <= 0)
        return 0;
    writer_dispatch_t dispatch;
    bool dispatched = s_take_deferred (self, seq, &dispatch);
    if (writer_batch_waiting (self->open, seq, state, retries_left, run_at,
                              dispatched ? &dispatch : NULL))
        return s_write_failed (self, "requeue job");
    return 0;
}

int
store_set_ended (store_t *self, int64_t seq, store_state_t state, const char *status,
                 const void *result, size_t result_size, const char *usage,
                 double ended_at)
{
    assert (ended_at > 0);  // the index of ended rows holds ended_at > 0
    if (self->memory || seq <= 0)
        return 0;
    writer_dispatch_t dispatch;
    bool dispatched = s_take_deferred (self, seq, &dispatch);
    if (writer_batch_ended (self->open, seq, state, status, result, result_size, usage,
                            ended_at, dispatched ? &dispatch : NULL)) {
        if (dispatched)
            s_defer (self, seq, &dispatch, zclock_mono ());
        return s_write_failed (self, "end job");
    }
    return 0;
}

int
store_revive (store_t *self, const store_row_t *row, uint32_t retries_left)
{
    if (self->memory || row->seq <= 0)
        return 0;
    if (writer_batch_revive (self->open, row, retries_left))
        return s_write_failed (self, "requeue dead job");
    return 0;
}

int
store_meta_set (store_t *self, const char *key, int64_t value)
{
    if (!self->memory)
        return writer_batch_meta (self->open, key, value)
                   ? s_write_failed (self, "set meta")
                   : 0;
    sqlite3_stmt *stmt = self->stmt[S_META_SET];
    sqlite3_bind_text (stmt, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 2, value);
    int rc = sqlite3_step (stmt);
    if (rc != SQLITE_DONE)
        snprintf (self->error, sizeof self->error, "set meta: %s",
                  sqlite3_errmsg (self->db));
    sqlite3_reset (stmt);
    sqlite3_clear_bindings (stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

void
store_write_dispatches (store_t *self)
{
    if (!self->memory)
        s_age_deferred (self, true);
}

bool
store_has_writes (store_t *self)
{
    if (self->memory)
        return false;
    if (writer_batch_size (self->open) > 0 || self->failed)
        return true;
    s_deferred_t *oldest = (s_deferred_t *) zlistx_first (self->deferred);
    return oldest && zclock_mono () - oldest->at_ms >= S_DISPATCH_DEFER_MS;
}

int
store_submit (store_t *self, bool sync)
{
    if (self->memory)
        return 1;
    if (self->busy) {
        snprintf (self->error, sizeof self->error, "a batch is still being written");
        return -1;
    }
    s_age_deferred (self, false);
    writer_batch_t *batch = self->open;
    writer_batch_set_sync (batch, sync);
    //  The next batch is built in the one the last event gave back.
    writer_batch_reset (self->done);
    self->open = self->done;
    self->done = NULL;
    if (self->failed) {
        //  A write is missing from it: it fails as a whole, like a batch
        //  the disk refused.
        self->failed = false;
        writer_batch_fail (batch, self->error);
    }
    if (writer_submit (self->writer, &batch)) {
        snprintf (self->error, sizeof self->error, "cannot reach the writer thread");
        self->done = self->open;
        self->open = batch;
        return -1;
    }
    self->busy = true;
    self->submitted++;
    return 0;
}

bool
store_busy (store_t *self)
{
    return self->busy;
}

zsock_t *
store_sock (store_t *self)
{
    return self->writer ? writer_sock (self->writer) : NULL;
}

//  A failed batch's dispatches wait again for their job's next write,
//  unless a newer dispatch of the job is waiting already.
static void
s_redefer (int64_t seq, const writer_dispatch_t *dispatch, void *arg)
{
    store_t *self = (store_t *) arg;
    if (!zhashx_lookup (self->deferred_by_seq, S_SEQ_KEY (seq)))
        s_defer (self, seq, dispatch, zclock_mono () - S_DISPATCH_DEFER_MS);
}

int
store_recv (store_t *self, store_event_t *event, int timeout_ms)
{
    memset (event, 0, sizeof *event);
    if (self->memory)
        return -1;
    writer_event_t got;
    if (writer_recv (self->writer, &got, timeout_ms))
        return -1;
    event->rc = got.rc;
    event->count = got.count;
    if (got.rc)
        snprintf (self->error, sizeof self->error, "%s", got.error);
    if (got.type == WRITER_COMMITTED) {
        event->type = STORE_EV_COMMIT;
        assert (self->busy && !self->done);
        self->busy = false;
        self->settled++;
        self->done = got.batch;
        if (got.rc)
            writer_batch_dispatches (got.batch, s_redefer, self);
    }
    else
        event->type = got.type == WRITER_EXPIRED ? STORE_EV_EXPIRED : STORE_EV_PURGED;
    return 0;
}

bool
store_was_duplicate (store_t *self, int64_t seq)
{
    return self->done && writer_batch_status (self->done) == 0
           && writer_batch_duplicate (self->done, seq);
}

uint64_t
store_barrier (store_t *self)
{
    if (self->memory)
        return 0;
    return self->submitted + (writer_batch_size (self->open) > 0 ? 1 : 0);
}

uint64_t
store_settled (store_t *self)
{
    return self->settled;
}

int
store_expire (store_t *self, double now, double result_ttl_s, double dead_ttl_s)
{
    if (self->memory)
        return 1;
    if (writer_expire (self->writer, now, result_ttl_s, dead_ttl_s)) {
        snprintf (self->error, sizeof self->error, "cannot reach the writer thread");
        return -1;
    }
    return 0;
}

int
store_purge_dead (store_t *self)
{
    if (self->memory)
        return 1;
    if (writer_purge_dead (self->writer)) {
        snprintf (self->error, sizeof self->error, "cannot reach the writer thread");
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Reads, on the loop's connection

static void
s_read_row (sqlite3_stmt *stmt, store_row_t *row)
{
    memset (row, 0, sizeof *row);
    row->seq = sqlite3_column_int64 (stmt, 0);
    row->msgid = (const char *) sqlite3_column_text (stmt, 1);
    row->queue = (const char *) sqlite3_column_text (stmt, 2);
    row->headers = (const char *) sqlite3_column_text (stmt, 3);
    row->payload = sqlite3_column_blob (stmt, 4);
    row->payload_size = (size_t) sqlite3_column_bytes (stmt, 4);
    row->client = sqlite3_column_blob (stmt, 5);
    row->client_size = (size_t) sqlite3_column_bytes (stmt, 5);
    row->state = s_state_lookup ((const char *) sqlite3_column_text (stmt, 6));
    row->attempt = (uint32_t) sqlite3_column_int64 (stmt, 7);
    row->retries_left = (uint32_t) sqlite3_column_int64 (stmt, 8);
    row->run_at = sqlite3_column_double (stmt, 9);
    row->created_at = sqlite3_column_double (stmt, 10);
    row->ended_at = sqlite3_column_double (stmt, 11);
    row->status = (const char *) sqlite3_column_text (stmt, 12);
    row->result = sqlite3_column_blob (stmt, 13);
    row->result_size = (size_t) sqlite3_column_bytes (stmt, 13);
    row->usage = (const char *) sqlite3_column_text (stmt, 14);
    row->epoch = (uint64_t) sqlite3_column_int64 (stmt, 15);
    if (!row->headers)
        row->headers = "";
}

//  Steps a query, calling fn per row. Returns fn's first non-zero result,
//  the number of rows (>= 0), or -1 on error.
static int
s_query (store_t *self, sqlite3_stmt *stmt, store_row_fn *fn, void *arg)
{
    int rows = 0, rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW) {
        store_row_t row;
        s_read_row (stmt, &row);
        rows++;
        int result = fn ? fn (&row, arg) : 0;
        if (result) {
            sqlite3_reset (stmt);
            sqlite3_clear_bindings (stmt);
            return result;
        }
    }
    sqlite3_reset (stmt);
    sqlite3_clear_bindings (stmt);
    if (rc != SQLITE_DONE) {
        snprintf (self->error, sizeof self->error, "query: %s",
                  sqlite3_errmsg (self->db));
        return -1;
    }
    return rows;
}

int
store_load (store_t *self, store_row_fn *fn, void *arg)
{
    if (self->pg)
        return store_pg_load (self->pg, fn, arg, self->error, sizeof self->error);
    int rc = s_query (self, self->stmt[S_LOAD], fn, arg);
    return rc < 0 ? rc : 0;
}

int
store_fetch (store_t *self, const char *msgid, store_row_fn *fn, void *arg)
{
    if (self->pg)
        return store_pg_fetch (self->pg, msgid, fn, arg, self->error, sizeof self->error);
    sqlite3_stmt *stmt = self->stmt[S_FETCH];
    sqlite3_bind_text (stmt, 1, msgid, -1, SQLITE_TRANSIENT);
    int rc = s_query (self, stmt, fn, arg);
    return rc < 0 ? -1 : rc > 0 ? 1 : 0;
}

//  Remembers the last row a page visited, then hands it on.
typedef struct {
    store_cursor_t *cursor;
    store_row_fn *fn;
    void *arg;
} s_page_t;

static int
s_page_row (const store_row_t *row, void *arg)
{
    s_page_t *page = (s_page_t *) arg;
    page->cursor->ended_at = row->ended_at;
    page->cursor->seq = row->seq;
    return page->fn ? page->fn (row, page->arg) : 0;
}

int
store_list_dead_page (store_t *self, store_cursor_t *cursor, size_t limit,
                      store_row_fn *fn, void *arg)
{
    if (cursor->ended_at <= 0) {  // from the newest
        cursor->ended_at = HUGE_VAL;
        cursor->seq = INT64_MAX;
    }
    if (self->pg)
        return store_pg_dead_page (self->pg, cursor, limit, fn, arg, self->error,
                                   sizeof self->error);
    sqlite3_stmt *stmt = self->stmt[S_DEAD];
    sqlite3_bind_double (stmt, 1, cursor->ended_at);
    sqlite3_bind_int64 (stmt, 2, cursor->seq);
    sqlite3_bind_int64 (stmt, 3, limit ? (sqlite3_int64) limit : -1);
    s_page_t page = { cursor, fn, arg };
    return s_query (self, stmt, s_page_row, &page);
}

int
store_list_dead (store_t *self, size_t limit, store_row_fn *fn, void *arg)
{
    store_cursor_t cursor = { 0, 0 };
    return store_list_dead_page (self, &cursor, limit, fn, arg);
}

int
store_meta_get (store_t *self, const char *key, int64_t *value)
{
    if (self->pg)
        return store_pg_meta_get (self->pg, key, value, self->error, sizeof self->error);
    sqlite3_stmt *stmt = self->stmt[S_META_GET];
    sqlite3_bind_text (stmt, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        *value = sqlite3_column_int64 (stmt, 0);
    else if (rc != SQLITE_DONE)
        snprintf (self->error, sizeof self->error, "meta: %s", sqlite3_errmsg (self->db));
    sqlite3_reset (stmt);
    sqlite3_clear_bindings (stmt);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

int
store_meta_list (store_t *self, const char *prefix, store_meta_fn *fn, void *arg)
{
    assert (self && prefix && fn);
    if (self->pg)
        return store_pg_meta_list (self->pg, prefix, fn, arg, self->error,
                                   sizeof self->error);
    //  The end of the range: the prefix with its last byte one higher.
    char end[256];
    size_t len = strlen (prefix);
    if (len == 0 || len >= sizeof end || (unsigned char) prefix[len - 1] == 0xff)
        return -1;
    memcpy (end, prefix, len + 1);
    end[len - 1] = (char) ((unsigned char) end[len - 1] + 1);
    sqlite3_stmt *stmt = self->stmt[S_META_LIST];
    sqlite3_bind_text (stmt, 1, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 2, end, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW)
        fn ((const char *) sqlite3_column_text (stmt, 0), sqlite3_column_int64 (stmt, 1),
            arg);
    if (rc != SQLITE_DONE)
        snprintf (self->error, sizeof self->error, "meta list: %s",
                  sqlite3_errmsg (self->db));
    sqlite3_reset (stmt);
    sqlite3_clear_bindings (stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

void
store_release_memory (store_t *self)
{
    if (self->db)
        sqlite3_db_release_memory (self->db);
    if (!self->writer)
        return;
    //  The batches keep what a burst made them take (below 256 KiB each):
    //  an empty one starts afresh. The writer gives its cache back and
    //  trims the heap itself, after the caller's trim.
    writer_batch_t **batches[] = { &self->open, &self->done };
    for (int i = 0; i < 2; i++)
        if (*batches[i] && writer_batch_size (*batches[i]) == 0) {
            writer_batch_t *fresh = writer_batch_new ();
            if (fresh) {
                writer_batch_destroy (batches[i]);
                *batches[i] = fresh;
            }
        }
    writer_release_memory (self->writer);
}

int64_t
store_count (store_t *self, store_state_t state)
{
    if (self->pg)
        return store_pg_count (self->pg, state, self->error, sizeof self->error);
    sqlite3_stmt *stmt = self->stmt[state >= STORE_DONE ? S_COUNT_ENDED : S_COUNT];
    sqlite3_bind_text (stmt, 1, store_state_name (state), -1, SQLITE_STATIC);
    int64_t count = -1;
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        count = sqlite3_column_int64 (stmt, 0);
    else
        snprintf (self->error, sizeof self->error, "count: %s",
                  sqlite3_errmsg (self->db));
    sqlite3_reset (stmt);
    return count;
}

int
store_count_by_queue (store_t *self, store_state_t state, store_count_fn *fn, void *arg)
{
    if (self->pg)
        return store_pg_count_by_queue (self->pg, state, fn, arg, self->error,
                                        sizeof self->error);
    //  Run rarely (STATUS, when the dead count disagrees): prepared per call.
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2 (self->db,
                            "SELECT queue, count(*) FROM jobs WHERE state = ? AND "
                            "ended_at > 0 GROUP BY queue",
                            -1, &stmt, NULL)
        != SQLITE_OK) {
        snprintf (self->error, sizeof self->error, "count by queue: %s",
                  sqlite3_errmsg (self->db));
        return -1;
    }
    sqlite3_bind_text (stmt, 1, store_state_name (state), -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step (stmt)) == SQLITE_ROW)
        fn ((const char *) sqlite3_column_text (stmt, 0), sqlite3_column_int64 (stmt, 1),
            arg);
    if (rc != SQLITE_DONE)
        snprintf (self->error, sizeof self->error, "count by queue: %s",
                  sqlite3_errmsg (self->db));
    sqlite3_finalize (stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"
#include <unistd.h>
#include <jansson.h>

static void
s_count_into (const char *queue, int64_t count, void *arg)
{
    json_object_set_new ((json_t *) arg, queue, json_integer (count));
}

static int
s_collect (const store_row_t *row, void *arg)
{
    char *seen = (char *) arg;
    strcat (seen, row->msgid);
    strcat (seen, ":");
    strcat (seen, store_state_name (row->state));
    strcat (seen, " ");
    return 0;
}

static int
s_check_result (const store_row_t *row, void *arg)
{
    (void) arg;
    CHECK_STREQ (row->status, "ok");
    CHECK_MEMEQ (row->result, row->result_size, "42", 2);
    CHECK_STREQ (row->usage, "wall_us=5");
    CHECK_EQ (row->payload_size, 0);  // dropped once ended
    CHECK_EQ (row->attempt, 1);       // its dispatch, written with its end
    CHECK_UEQ (row->epoch, 77);
    return 0;
}

//  Copies a row's dispatch fields and state out.
typedef struct {
    store_state_t state;
    uint32_t attempt;
    uint64_t epoch;
} s_seen_t;

static int
s_copy_row (const store_row_t *row, void *arg)
{
    s_seen_t *seen = (s_seen_t *) arg;
    seen->state = row->state;
    seen->attempt = row->attempt;
    seen->epoch = row->epoch;
    return 0;
}

static s_seen_t
s_row_of (store_t *store, const char *msgid)
{
    s_seen_t seen = { STORE_STATE_COUNT, 0, 0 };
    store_fetch (store, msgid, s_copy_row, &seen);
    return seen;
}

//  Submits the open batch and waits for its event (what the router does
//  over two loop turns). Returns the event's rc.
static int
s_commit (store_t *store)
{
    int rc = store_submit (store, false);
    if (rc == 1)
        return 0;
    CHECK_EQ (rc, 0);
    store_event_t event;
    CHECK_EQ (store_recv (store, &event, 10000), 0);
    CHECK (event.type == STORE_EV_COMMIT);
    return event.rc;
}

//  Starts a delete task and waits for its event; returns the rows deleted
//  or -1.
static int64_t
s_task (store_t *store, int rc)
{
    CHECK_EQ (rc, 0);
    store_event_t event;
    CHECK_EQ (store_recv (store, &event, 10000), 0);
    CHECK (event.type == STORE_EV_EXPIRED || event.type == STORE_EV_PURGED);
    return event.rc ? -1 : event.count;
}

//  A step that fails (as a full disk would) for statements starting with
//  s_fail_prefix, while it is set.
static const char *s_fail_prefix;

static int
s_failing_step (sqlite3_stmt *stmt)
{
    const char *sql = sqlite3_sql (stmt);
    if (s_fail_prefix && sql && strncmp (sql, s_fail_prefix, strlen (s_fail_prefix)) == 0)
        return SQLITE_FULL;
    return sqlite3_step (stmt);
}

//  Counts the statements that raise the sync level for one batch.
static int s_full_syncs;

static int
s_counting_step (sqlite3_stmt *stmt)
{
    const char *sql = sqlite3_sql (stmt);
    if (sql && strcmp (sql, "PRAGMA synchronous = FULL") == 0)
        s_full_syncs++;
    return sqlite3_step (stmt);
}

//  Adds n jobs named prefix0.. and ends them (state, ended_at = 1000 + i);
//  fills seqs if given.
static void
s_add_ended (store_t *store, const char *prefix, int n, store_state_t state,
             int64_t *seqs)
{
    int64_t seq[n > 0 ? n : 1];
    for (int i = 0; i < n; i++) {
        char msgid[32];
        snprintf (msgid, sizeof msgid, "%s%d", prefix, i);
        store_row_t row = { .msgid = msgid,
                            .queue = "q",
                            .headers = "",
                            .payload = "p",
                            .payload_size = 1,
                            .state = STORE_QUEUED,
                            .created_at = 1 };
        CHECK_EQ (store_insert (store, &row, &seq[i]), 0);
    }
    CHECK_EQ (s_commit (store), 0);
    for (int i = 0; i < n; i++) {
        CHECK_EQ (store_set_ended (store, seq[i], state, "failed", "e", 1, "", 1000 + i),
                  0);
        if (seqs)
            seqs[i] = seq[i];
    }
    CHECK_EQ (s_commit (store), 0);
}

//  Large deletes in chunks, the dead list in pages, revival racing a
//  purge, and the upgrade of a database written before the index of ended
//  rows.
static void
s_test_chunks (const char *dir, bool verbose)
{
    char path[300], err[256];
    snprintf (path, sizeof path, "%s/chunks.db", dir);
    store_t *store = store_open (path, STORE_FSYNC_OFF, err, sizeof err);
    CHECK (store != NULL);
    if (!store)
        return;
    s_add_ended (store, "r", 10, STORE_DONE, NULL);  // ended at 1000..1009
    int64_t dead_seqs[5];
    s_add_ended (store, "d", 5, STORE_DEAD, dead_seqs);  // ended at 1000..1004
    CHECK_EQ (store_count (store, STORE_DONE), 10);
    CHECK_EQ (store_count (store, STORE_DEAD), 5);
    {
        json_t *by_queue = json_object ();
        CHECK_EQ (store_count_by_queue (store, STORE_DEAD, s_count_into, by_queue), 0);
        int64_t sum = 0;
        const char *key;
        json_t *value;
        json_object_foreach (by_queue, key, value) sum += json_integer_value (value);
        CHECK_EQ (sum, 5);
        json_decref (by_queue);
    }

    //  Results before 1008 are due (8 rows), dead jobs before 1002 (2 rows).
    CHECK_EQ (s_task (store, store_expire (store, 1058, 50, 56)), 10);
    CHECK_EQ (store_count (store, STORE_DONE), 2);
    CHECK_EQ (store_count (store, STORE_DEAD), 3);
    CHECK_EQ (store_fetch (store, "r7", NULL, NULL), 0);
    CHECK_EQ (store_fetch (store, "r8", NULL, NULL), 1);
    CHECK_EQ (store_fetch (store, "d1", NULL, NULL), 0);
    CHECK_EQ (store_fetch (store, "d2", NULL, NULL), 1);
    CHECK_EQ (s_task (store, store_expire (store, 1058, 50, 56)), 0);  // nothing left due

    //  The dead list in pages of 2, newest first; reviving a row between
    //  pages shifts nothing, and the revived row leaves the dead jobs.
    store_cursor_t cursor = { 0, 0 };
    char seen[256] = "";
    CHECK_EQ (store_list_dead_page (store, &cursor, 2, s_collect, seen), 2);
    CHECK_STREQ (seen, "d4:dead d3:dead ");
    store_row_t d4 = { .seq = dead_seqs[4],
                       .msgid = "d4",
                       .queue = "q",
                       .headers = "",
                       .payload = "p",
                       .payload_size = 1,
                       .state = STORE_DEAD,
                       .created_at = 1 };
    CHECK_EQ (store_revive (store, &d4, 1), 0);
    CHECK_EQ (store_list_dead_page (store, &cursor, 2, s_collect, seen), 1);
    CHECK_STREQ (seen, "d4:dead d3:dead d2:dead ");
    CHECK_EQ (store_list_dead_page (store, &cursor, 2, s_collect, seen), 0);
    CHECK_EQ (s_commit (store), 0);
    CHECK_EQ (store_count (store, STORE_DEAD), 2);
    CHECK_EQ (store_count (store, STORE_QUEUED), 1);
    //  Queued again, it is neither expired as dead nor purged.
    CHECK_EQ (s_task (store, store_expire (store, 1e9, 50, 56)), 4);
    CHECK_EQ (store_fetch (store, "d4", NULL, NULL), 1);

    //  Purge in chunks of 5,000: 12,000 dead rows, three chunks; a batch
    //  submitted meanwhile is committed between them, before the end.
    int n = 12000;
    s_add_ended (store, "p", n, STORE_DEAD, NULL);
    CHECK_EQ (store_purge_dead (store), 0);
    store_row_t row = { .msgid = "between",
                        .queue = "q",
                        .headers = "",
                        .payload = "p",
                        .payload_size = 1,
                        .state = STORE_QUEUED,
                        .created_at = 1 };
    int64_t seq;
    CHECK_EQ (store_insert (store, &row, &seq), 0);
    CHECK_EQ (store_submit (store, false), 0);
    store_event_t event;
    CHECK_EQ (store_recv (store, &event, 10000), 0);
    CHECK (event.type == STORE_EV_COMMIT && event.rc == 0);
    CHECK_EQ (store_recv (store, &event, 10000), 0);
    CHECK (event.type == STORE_EV_PURGED);
    CHECK_EQ (event.count, n);
    CHECK_EQ (store_count (store, STORE_DEAD), 0);

    //  A revival that comes after a purge deleted the row (the router read
    //  it before): the row comes back, queued.
    s_add_ended (store, "z", 1, STORE_DEAD, &seq);
    CHECK_EQ (s_task (store, store_purge_dead (store)), 1);
    store_row_t z0 = { .seq = seq,
                       .msgid = "z0",
                       .queue = "q",
                       .headers = "",
                       .payload = "p",
                       .payload_size = 1,
                       .state = STORE_DEAD,
                       .created_at = 1 };
    CHECK_EQ (store_revive (store, &z0, 2), 0);
    CHECK_EQ (s_commit (store), 0);
    CHECK (s_row_of (store, "z0").state == STORE_QUEUED);

    //  A chunk that cannot be written fails the task and says why; the
    //  rows stay.
    s_add_ended (store, "x", 3, STORE_DONE, NULL);
    s_fail_prefix = "DELETE";
    writer_step = s_failing_step;
    CHECK_EQ (s_task (store, store_expire (store, 1e9, 1, 1)), -1);
    CHECK_CONTAINS (store_error (store), "expire results");
    writer_step = sqlite3_step;
    s_fail_prefix = NULL;
    CHECK_EQ (store_count (store, STORE_DONE), 3);
    store_close (&store);
    unlink (path);

    //  A database from before jobs_ended: its (state, seq) index goes, and a
    //  dead job that had been queued again loses its stale ended_at.
    sqlite3 *db = NULL;
    CHECK_EQ (sqlite3_open (path, &db), SQLITE_OK);
    CHECK_EQ (sqlite3_exec (db, s_schema, NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ (sqlite3_exec (
                  db,
                  "CREATE INDEX jobs_by_state ON jobs (state, seq);"
                  "INSERT INTO jobs (msgid, queue, headers, payload, state, created_at,"
                  " ended_at) VALUES ('old', 'q', '', x'00', 'queued', 1, 5)",
                  NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close (db);
    store = store_open (path, STORE_FSYNC_OFF, err, sizeof err);
    CHECK (store != NULL);
    if (store) {
        sqlite3_stmt *stmt = NULL;
        CHECK_EQ (sqlite3_prepare_v2 (
                      store->db,
                      "SELECT (SELECT count(*) FROM sqlite_master"
                      " WHERE name = 'jobs_by_state'), (SELECT ended_at FROM jobs"
                      " WHERE msgid = 'old')",
                      -1, &stmt, NULL),
                  SQLITE_OK);
        CHECK_EQ (sqlite3_step (stmt), SQLITE_ROW);
        CHECK_EQ (sqlite3_column_int (stmt, 0), 0);
        CHECK_EQ (sqlite3_column_int (stmt, 1), 0);
        sqlite3_finalize (stmt);
        seen[0] = 0;
        CHECK_EQ (store_load (store, s_collect, seen), 0);
        CHECK_STREQ (seen, "old:queued ");
        //  New rows get keys after the ones found.
        CHECK_EQ (store_insert (store, &row, &seq), 0);
        CHECK_EQ (seq, 2);
    }
    store_close (&store);
    unlink (path);
    if (verbose)
        printf ("chunks ");
}

//  Dispatches: written with the job's next change, or on their own once
//  they waited S_DISPATCH_DEFER_MS; a failed batch's come back.
static void
s_test_dispatches (const char *dir, bool verbose)
{
    char path[300], err[256];
    snprintf (path, sizeof path, "%s/dispatch.db", dir);
    store_t *store = store_open (path, STORE_FSYNC_EVERYSEC, err, sizeof err);
    CHECK (store != NULL);
    if (!store)
        return;
    const char *ids[] = { "short", "long", "retried", "lost" };
    int64_t seqs[4];
    for (int i = 0; i < 4; i++) {
        store_row_t row = { .msgid = ids[i],
                            .queue = "q",
                            .headers = "",
                            .payload = "p",
                            .payload_size = 1,
                            .state = STORE_QUEUED,
                            .created_at = 1 };
        CHECK_EQ (store_insert (store, &row, &seqs[i]), 0);
    }
    CHECK_EQ (s_commit (store), 0);
    for (int i = 0; i < 4; i++)
        CHECK_EQ (store_set_dispatched (store, seqs[i], 1, 100 + i), 0);
    //  Nothing to write yet: the dispatches wait.
    CHECK (!store_has_writes (store));
    CHECK_EQ (s_commit (store), 0);
    CHECK (s_row_of (store, "long").state == STORE_QUEUED);
    //  The short job ends, the retried one fails with retries left: their
    //  dispatches go with those changes, in one row update each.
    CHECK_EQ (store_set_ended (store, seqs[0], STORE_DONE, "ok", "1", 1, "", 5), 0);
    CHECK_EQ (store_set_waiting (store, seqs[2], STORE_SCHEDULED, 0, 9), 0);
    CHECK_EQ (s_commit (store), 0);
    s_seen_t seen = s_row_of (store, "short");
    CHECK (seen.state == STORE_DONE && seen.attempt == 1 && seen.epoch == 100);
    seen = s_row_of (store, "retried");
    CHECK (seen.state == STORE_SCHEDULED && seen.attempt == 1 && seen.epoch == 102);
    //  The last job's end fails to be written: the router writes it again
    //  (a new batch), and its dispatch is still in it.
    s_fail_prefix = "UPDATE jobs SET state = ?1, status";
    writer_step = s_failing_step;
    CHECK_EQ (store_set_ended (store, seqs[3], STORE_DONE, "ok", "1", 1, "", 5), 0);
    CHECK_EQ (s_commit (store), -1);
    CHECK_CONTAINS (store_error (store), "end job");
    writer_step = sqlite3_step;
    s_fail_prefix = NULL;
    CHECK (s_row_of (store, "lost").state == STORE_QUEUED);
    CHECK_EQ (store_set_ended (store, seqs[3], STORE_DONE, "ok", "1", 1, "", 5), 0);
    CHECK_EQ (s_commit (store), 0);
    seen = s_row_of (store, "lost");
    CHECK (seen.state == STORE_DONE && seen.attempt == 1 && seen.epoch == 103);
    //  The long job is still running: its dispatch is written once it
    //  waited long enough (the router submits at least every 50 ms).
    int64_t deadline = zclock_mono () + 5000;
    while (!store_has_writes (store) && zclock_mono () < deadline)
        zclock_sleep (20);
    CHECK (store_has_writes (store));
    CHECK_EQ (s_commit (store), 0);
    seen = s_row_of (store, "long");
    CHECK (seen.state == STORE_RUNNING && seen.attempt == 1 && seen.epoch == 101);
    store_close (&store);
    unlink (path);
    if (verbose)
        printf ("dispatches ");
}

static void
s_collect_meta (const char *key, int64_t value, void *arg)
{
    char *out = (char *) arg;
    size_t used = strlen (out);
    snprintf (out + used, 256 - used, "%s=%" PRId64 " ", key, value);
}

void
store_test (bool verbose)
{
    if (verbose)
        printf (" * store: ");
    char dir[] = "/tmp/emq-store-test-XXXXXX";
    CHECK (mkdtemp (dir) != NULL);
    char path[256];
    snprintf (path, sizeof path, "%s/jobs.db", dir);
    char err[256];
    store_t *store = store_open (path, STORE_FSYNC_ALWAYS, err, sizeof err);
    CHECK (store != NULL);
    if (!store)
        return;
    CHECK (!store_is_memory (store));
    CHECK (store_sock (store) != NULL);

    const char *ids[] = { "a", "b", "c", "d" };
    int64_t seqs[4] = { 0 }, seq = 0;
    for (int i = 0; i < 4; i++) {
        store_row_t row = { .msgid = ids[i],
                            .queue = "default",
                            .headers = "",
                            .payload = "p",
                            .payload_size = 1,
                            .client = "cl",
                            .client_size = 2,
                            .state = STORE_QUEUED,
                            .retries_left = 1,
                            .created_at = 1000 + i };
        CHECK_EQ (store_insert (store, &row, &seqs[i]), 0);
        CHECK (seqs[i] > (i ? seqs[i - 1] : 0));
    }
    //  Batches are numbered: a read that must see these rows waits until
    //  the batch holding them is settled.
    CHECK (store_has_writes (store));
    CHECK_UEQ (store_barrier (store), 1);
    CHECK_UEQ (store_settled (store), 0);
    CHECK_EQ (store_submit (store, false), 0);
    CHECK (store_busy (store));
    CHECK_EQ (store_submit (store, false), -1);  // one batch out at a time
    store_event_t event;
    CHECK_EQ (store_recv (store, &event, 10000), 0);
    CHECK (event.type == STORE_EV_COMMIT && event.rc == 0);
    CHECK (!store_busy (store));
    CHECK_UEQ (store_settled (store), 1);
    CHECK_UEQ (store_barrier (store), 1);
    CHECK (!store_was_duplicate (store, seqs[0]));
    CHECK_EQ (store_recv (store, &event, 0), -1);  // nothing more

    //  The same msgid again: not stored twice, and the event says so.
    store_row_t again = { .msgid = "a",
                          .queue = "x",
                          .headers = "",
                          .payload = "q",
                          .payload_size = 1,
                          .state = STORE_QUEUED };
    CHECK_EQ (store_insert (store, &again, &seq), 0);
    CHECK (seq > seqs[3]);
    CHECK_EQ (s_commit (store), 0);
    CHECK (store_was_duplicate (store, seq));
    CHECK (!store_was_duplicate (store, seqs[3]));

    CHECK_EQ (store_set_dispatched (store, seqs[0], 1, 77), 0);
    CHECK_EQ (
        store_set_ended (store, seqs[0], STORE_DONE, "ok", "42", 2, "wall_us=5", 2000),
        0);
    CHECK_EQ (store_set_waiting (store, seqs[2], STORE_SCHEDULED, 0, 3000), 0);
    CHECK_EQ (store_set_ended (store, seqs[3], STORE_DEAD, "failed", "boom", 4, "", 2500),
              0);
    CHECK_EQ (s_commit (store), 0);
    CHECK_EQ (store_count (store, STORE_DEAD), 1);
    CHECK_EQ (store_fetch (store, "a", s_check_result, NULL), 1);
    store_close (&store);

    //  Reopened: unfinished jobs come back in submission order.
    store = store_open (path, STORE_FSYNC_EVERYSEC, err, sizeof err);
    CHECK (store != NULL);
    if (!store)
        return;
    char seen[256] = "";
    CHECK_EQ (store_load (store, s_collect, seen), 0);
    CHECK_STREQ (seen, "b:queued c:scheduled ");
    CHECK_EQ (store_fetch (store, "a", s_check_result, NULL), 1);
    CHECK_EQ (store_fetch (store, "zz", s_check_result, NULL), 0);
    seen[0] = 0;
    CHECK_EQ (store_list_dead (store, 0, s_collect, seen), 1);
    CHECK_STREQ (seen, "d:dead ");
    int64_t meta = 0;
    CHECK_EQ (store_meta_get (store, "fence", &meta), 1);
    CHECK_EQ (store_meta_set (store, "fence", 41), 0);
    CHECK_EQ (store_meta_set (store, "fence", 42), 0);
    CHECK_EQ (s_commit (store), 0);
    CHECK_EQ (store_meta_get (store, "fence", &meta), 0);
    CHECK_EQ (meta, 42);
    //  Keys by prefix: the router's fences, one per scope.
    CHECK_EQ (store_meta_set (store, "fence:etcd:1", 7), 0);
    CHECK_EQ (store_meta_set (store, "fenced", 1), 0);
    CHECK_EQ (store_meta_set (store, "other", 9), 0);
    CHECK_EQ (s_commit (store), 0);
    char keys[256] = "";
    CHECK_EQ (store_meta_list (store, "fence:", s_collect_meta, keys), 0);
    CHECK_STREQ (keys, "fence:etcd:1=7 ");
    keys[0] = 0;
    CHECK_EQ (store_meta_list (store, "fence", s_collect_meta, keys), 0);
    CHECK_STREQ (keys, "fence=42 fence:etcd:1=7 fenced=1 ");

    //  A 'guarantee' batch is synced before its event under everysec: its
    //  commit runs with synchronous = FULL.
    writer_step = s_counting_step;
    CHECK_EQ (store_meta_set (store, "fence", 43), 0);
    CHECK_EQ (s_commit (store), 0);
    CHECK_EQ (s_full_syncs, 0);
    CHECK_EQ (store_meta_set (store, "fence", 44), 0);
    CHECK_EQ (store_submit (store, true), 0);
    CHECK_EQ (store_recv (store, &event, 10000), 0);
    CHECK (event.rc == 0);
    CHECK_EQ (s_full_syncs, 1);
    writer_step = sqlite3_step;

    //  Retention: results expire after result_ttl, dead jobs after dead_ttl.
    CHECK_EQ (s_task (store, store_expire (store, 2100, 50, 1000)), 1);  // "a" only
    CHECK_EQ (store_fetch (store, "a", NULL, NULL), 0);
    CHECK_EQ (s_task (store, store_purge_dead (store)), 1);
    CHECK_EQ (store_count (store, STORE_DEAD), 0);

    //  A failed write fails the whole batch: nothing of it is kept, the
    //  event says why, and the next batch is written.
    store_row_t bad = { .msgid = "e",
                        .queue = "default",
                        .headers = "",
                        .payload = "p",
                        .payload_size = 1,
                        .state = STORE_QUEUED,
                        .created_at = 1 };
    CHECK_EQ (store_insert (store, &bad, &seq), 0);
    store_row_t blocked = bad;
    blocked.msgid = "f";
    CHECK_EQ (store_insert (store, &blocked, &seq), 0);
    s_fail_prefix = "COMMIT";
    writer_step = s_failing_step;
    CHECK_EQ (s_commit (store), -1);
    CHECK_CONTAINS (store_error (store), "commit");
    CHECK (!store_was_duplicate (store, seq));
    writer_step = sqlite3_step;
    s_fail_prefix = NULL;
    CHECK_EQ (store_fetch (store, "e", NULL, NULL), 0);
    CHECK_EQ (store_fetch (store, "f", NULL, NULL), 0);
    CHECK_EQ (store_insert (store, &bad, &seq), 0);
    CHECK_EQ (s_commit (store), 0);
    CHECK_EQ (store_fetch (store, "e", NULL, NULL), 1);
    store_close (&store);

    //  A file that is not a database is refused with a clear error.
    FILE *junk = fopen (path, "w");
    if (junk) {
        fputs ("this is not an SQLite database, not at all, really not", junk);
        fclose (junk);
    }
    char wal[300];
    snprintf (wal, sizeof wal, "%s-wal", path);
    unlink (wal);
    snprintf (wal, sizeof wal, "%s-shm", path);
    unlink (wal);
    store = store_open (path, STORE_FSYNC_OFF, err, sizeof err);
    CHECK (store == NULL);
    CHECK_CONTAINS (err, path);
    unlink (path);
    s_test_chunks (dir, verbose);
    s_test_dispatches (dir, verbose);
    rmdir (dir);

    store = store_open (":memory:", STORE_FSYNC_OFF, err, sizeof err);
    CHECK (store && store_is_memory (store));
    if (store) {
        //  In-memory mode writes no job rows at all, and a batch is
        //  settled at once.
        store_row_t row = { .msgid = "m",
                            .queue = "q",
                            .headers = "",
                            .payload = "p",
                            .payload_size = 1,
                            .state = STORE_QUEUED };
        CHECK_EQ (store_insert (store, &row, &seq), 0);
        CHECK (seq == 0);
        CHECK (!store_has_writes (store));
        CHECK_EQ (store_submit (store, false), 1);
        CHECK (store_sock (store) == NULL);
        CHECK_EQ (store_fetch (store, "m", NULL, NULL), 0);
        CHECK_EQ (store_expire (store, 1e9, 1, 1), 1);
        CHECK_EQ (store_meta_set (store, "fence", 7), 0);
        CHECK_EQ (store_meta_get (store, "fence", &meta), 0);
        CHECK_EQ (meta, 7);
    }
    store_close (&store);
    store_fsync_t policy;
    CHECK_EQ (store_fsync_parse ("everysec", &policy), 0);
    CHECK (policy == STORE_FSYNC_EVERYSEC);
    CHECK_EQ (store_fsync_parse ("sometimes", &policy), -1);
    if (verbose)
        printf ("OK\n");
}
