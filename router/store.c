/*  store — the router's job table in SQLite. See store.h.

    One table, one row per job. Two indexes: msgid (UNIQUE: duplicates and
    lookups) and a partial index on (state, ended_at) that holds ended rows
    only. A job's life (insert, dispatch, end) touches the second index
    once, when it ends; the queued -> running -> ended moves of a live job
    change no index at all. The rows of live jobs are found by a scan in
    rowid order, which only store_load (start-up) does.

    Prepared statements are made once, BEGIN and COMMIT included. A write
    that fails marks the open transaction as failed: store_commit then rolls
    it back and reports the first error, so the router never ACKs a job
    whose row did not reach the database.

    Memory: the page cache is bounded (S_CACHE_KIB), the database is not
    memory-mapped, and the WAL is checkpointed every S_AUTOCHECKPOINT pages
    and cut back to S_WAL_LIMIT bytes when it is reset; so what SQLite holds
    does not grow with the number of jobs. Large deletes are done in chunks
    (store_expire_some, store_purge_dead_some), each one transaction of the
    router's loop turn.
*/
#include "store.h"

#include <assert.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_state_names[STORE_STATE_COUNT] = {
    "queued", "running", "scheduled", "done", "failed", "dead", "cancelled"
};

//  SQLite's page cache, in KiB: what it may hold whatever the backlog.
//  2 MiB keeps the leaf pages written by a turn and the upper levels of
//  both b-trees; the rest of the file is in the OS page cache (not in RSS).
#define S_CACHE_KIB         2048
//  Pages of WAL after which a commit checkpoints (SQLite's default).
#define S_AUTOCHECKPOINT    1000
//  A WAL that grew past this (a burst, a large delete) is truncated to it
//  when it is next reset.
#define S_WAL_LIMIT         (8 * 1024 * 1024)

enum {
    S_BEGIN, S_COMMIT, S_ROLLBACK,
    S_INSERT, S_DISPATCHED, S_WAITING, S_ENDED, S_LOAD, S_FETCH, S_DEAD,
    S_EXPIRE, S_EXPIRE_DEAD, S_PURGE, S_COUNT, S_COUNT_ENDED, S_META_GET, S_META_SET,
    S_STATEMENT_COUNT
};

//  Every query of ended rows says "ended_at > 0" so that SQLite can use the
//  partial index jobs_ended (an ended row always has ended_at > 0).
#define S_ENDED_STATES      "state IN ('done', 'failed', 'cancelled')"

static const char *s_sql[S_STATEMENT_COUNT] = {
    [S_BEGIN] = "BEGIN",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_INSERT] = "INSERT OR IGNORE INTO jobs (msgid, queue, headers, payload, client, state,"
                 " attempt, retries_left, run_at, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
    [S_DISPATCHED] = "UPDATE jobs SET state = 'running', attempt = ?, epoch = ? WHERE seq = ?",
    //  ended_at = 0: a dead job queued again leaves the index of ended rows.
    [S_WAITING] = "UPDATE jobs SET state = ?, retries_left = ?, run_at = ?, ended_at = 0"
                  " WHERE seq = ?",
    [S_ENDED] = "UPDATE jobs SET state = ?, status = ?, result = ?, usage = ?, ended_at = ?,"
                " payload = CASE WHEN ? THEN payload ELSE x'' END WHERE seq = ?",
    [S_LOAD] = "SELECT seq, msgid, queue, headers, payload, client, state, attempt, retries_left,"
               " run_at, created_at, ended_at, status, result, usage, epoch FROM jobs"
               " WHERE state IN ('queued', 'running', 'scheduled') ORDER BY seq",
    [S_FETCH] = "SELECT seq, msgid, queue, headers, payload, client, state, attempt, retries_left,"
                " run_at, created_at, ended_at, status, result, usage, epoch FROM jobs WHERE msgid = ?",
    //  Newest first, after the cursor (ended_at, seq).
    [S_DEAD] = "SELECT seq, msgid, queue, headers, payload, client, state, attempt, retries_left,"
               " run_at, created_at, ended_at, status, result, usage, epoch FROM jobs"
               " WHERE state = 'dead' AND ended_at > 0 AND (ended_at, seq) < (?, ?)"
               " ORDER BY ended_at DESC, seq DESC LIMIT ?",
    //  At most ?2 rows (-1: all). No ORDER BY: with IN over three states it
    //  would sort every candidate before the LIMIT; all of them are due.
    [S_EXPIRE] = "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE " S_ENDED_STATES
                 " AND ended_at > 0 AND ended_at < ?1 LIMIT ?2)",
    [S_EXPIRE_DEAD] = "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE state = 'dead'"
                      " AND ended_at > 0 AND ended_at < ?1 LIMIT ?2)",
    [S_PURGE] = "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE state = 'dead'"
                " AND ended_at > 0 LIMIT ?)",
    //  Live states have no index: a scan. Ended states: the index.
    [S_COUNT] = "SELECT count(*) FROM jobs WHERE state = ?",
    [S_COUNT_ENDED] = "SELECT count(*) FROM jobs WHERE state = ? AND ended_at > 0",
    [S_META_GET] = "SELECT value FROM meta WHERE key = ?",
    [S_META_SET] = "INSERT INTO meta (key, value) VALUES (?, ?)"
                   " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
};

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS jobs ("
    "  seq INTEGER PRIMARY KEY,"            // submission order
    "  msgid TEXT NOT NULL UNIQUE,"
    "  queue TEXT NOT NULL,"
    "  headers TEXT NOT NULL,"
    "  payload BLOB NOT NULL,"
    "  client BLOB,"                        // submitter's routing id
    "  state TEXT NOT NULL,"
    "  attempt INTEGER NOT NULL DEFAULT 0,"
    "  retries_left INTEGER NOT NULL DEFAULT 0,"
    "  epoch INTEGER NOT NULL DEFAULT 0,"
    "  run_at REAL NOT NULL DEFAULT 0,"     // unix s, for scheduled jobs
    "  created_at REAL NOT NULL,"
    "  ended_at REAL NOT NULL DEFAULT 0,"
    "  status TEXT,"                        // ok, failed, timeout, ...
    "  result BLOB,"                        // value, or error text
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

struct store_t {
    sqlite3 *db;
    sqlite3_stmt *stmt[S_STATEMENT_COUNT];
    bool memory;
    store_fsync_t policy;
    bool in_transaction;
    bool failed;                // a write of the open transaction failed
    char error[256];
};

const char *
store_state_name (store_state_t state)
{
    return (int) state >= 0 && state < STORE_STATE_COUNT ? s_state_names[state] : "unknown";
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
    if (strcmp (name, "always") == 0) *policy = STORE_FSYNC_ALWAYS;
    else if (strcmp (name, "everysec") == 0) *policy = STORE_FSYNC_EVERYSEC;
    else if (strcmp (name, "off") == 0) *policy = STORE_FSYNC_OFF;
    else return -1;
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

store_t *
store_open (const char *path, store_fsync_t policy, char *err, size_t errlen)
{
    store_t *self = calloc (1, sizeof (store_t));
    if (!self) {
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->memory = strcmp (path, ":memory:") == 0;
    self->policy = policy;
    if (sqlite3_open_v2 (path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                         | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf (err, errlen, "cannot open %s: %s", path,
                  self->db ? sqlite3_errmsg (self->db) : "out of memory");
        store_close (&self);
        return NULL;
    }
    sqlite3_busy_timeout (self->db, 2000);
    const char *sync = policy == STORE_FSYNC_ALWAYS ? "PRAGMA synchronous = FULL"
                     : policy == STORE_FSYNC_EVERYSEC ? "PRAGMA synchronous = NORMAL"
                     : "PRAGMA synchronous = OFF";
    char bounds[160];
    snprintf (bounds, sizeof bounds, "PRAGMA cache_size = -%d; PRAGMA mmap_size = 0;"
              " PRAGMA wal_autocheckpoint = %d; PRAGMA journal_size_limit = %d",
              S_CACHE_KIB, S_AUTOCHECKPOINT, S_WAL_LIMIT);
    if ((!self->memory && s_exec (self, "PRAGMA journal_mode = WAL"))
    ||  s_exec (self, sync)
    ||  s_exec (self, bounds)
    ||  s_exec (self, s_schema)) {
        snprintf (err, errlen, "cannot initialise %s: %s", path, self->error);
        store_close (&self);
        return NULL;
    }
    sqlite3_stmt *old_index = NULL;
    bool migrate = false;
    if (sqlite3_prepare_v2 (self->db, "SELECT 1 FROM sqlite_master WHERE type = 'index'"
                            " AND name = 'jobs_by_state'", -1, &old_index, NULL) == SQLITE_OK)
        migrate = sqlite3_step (old_index) == SQLITE_ROW;
    sqlite3_finalize (old_index);
    if (migrate && s_exec (self, s_migrate_by_state)) {
        snprintf (err, errlen, "cannot upgrade %s: %s", path, self->error);
        if (!sqlite3_get_autocommit (self->db))
            sqlite3_exec (self->db, "ROLLBACK", NULL, NULL, NULL);
        store_close (&self);
        return NULL;
    }
    //  A corrupted file is found now rather than on the first job.
    sqlite3_stmt *check = NULL;
    if (sqlite3_prepare_v2 (self->db, "PRAGMA quick_check", -1, &check, NULL) == SQLITE_OK
    &&  sqlite3_step (check) == SQLITE_ROW) {
        const char *verdict = (const char *) sqlite3_column_text (check, 0);
        if (!verdict || strcmp (verdict, "ok") != 0) {
            snprintf (err, errlen, "%s is damaged: %s", path, verdict ? verdict : "?");
            sqlite3_finalize (check);
            store_close (&self);
            return NULL;
        }
    }
    sqlite3_finalize (check);
    for (int i = 0; i < S_STATEMENT_COUNT; i++)
        if (sqlite3_prepare_v3 (self->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                &self->stmt[i], NULL) != SQLITE_OK) {
            snprintf (err, errlen, "cannot prepare statement: %s", sqlite3_errmsg (self->db));
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
    if (self->in_transaction)
        store_commit (self);
    for (int i = 0; i < S_STATEMENT_COUNT; i++)
        sqlite3_finalize (self->stmt[i]);
    if (self->db)
        sqlite3_close (self->db);
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

bool
store_in_transaction (store_t *self)
{
    return self->in_transaction;
}

//  Runs a prepared statement that returns no row (BEGIN, COMMIT, a write
//  whose parameters are all bound) and resets it; bindings stay until the
//  next call binds them again. Returns 0, or -1 with "what: reason" in
//  self->error (read before the reset, which may change SQLite's message).
static int
s_run (store_t *self, sqlite3_stmt *stmt, const char *what)
{
    int rc = sqlite3_step (stmt);
    if (rc != SQLITE_DONE)
        snprintf (self->error, sizeof self->error, "%s: %s", what, sqlite3_errmsg (self->db));
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int
s_begin (store_t *self)
{
    if (self->in_transaction)
        return self->failed ? -1 : 0;
    if (s_run (self, self->stmt[S_BEGIN], "begin"))
        return -1;
    self->in_transaction = true;
    self->failed = false;
    return 0;
}

//  A write of the open transaction: a failure fails the whole transaction.
static int
s_step_write (store_t *self, sqlite3_stmt *stmt, const char *what)
{
    if (s_run (self, stmt, what)) {
        self->failed = true;
        return -1;
    }
    return 0;
}

int
store_insert (store_t *self, const store_row_t *row, bool *duplicate, int64_t *seq)
{
    *duplicate = false;
    *seq = 0;
    if (self->memory)
        return 0;           // in-memory mode: the router's structures are the store
    if (s_begin (self))
        return -1;
    sqlite3_stmt *stmt = self->stmt[S_INSERT];
    sqlite3_bind_text (stmt, 1, row->msgid, -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 2, row->queue, -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 3, row->headers, -1, SQLITE_STATIC);
    sqlite3_bind_blob (stmt, 4, row->payload ? row->payload : "", (int) row->payload_size,
                       SQLITE_STATIC);
    if (row->client)
        sqlite3_bind_blob (stmt, 5, row->client, (int) row->client_size, SQLITE_STATIC);
    else
        sqlite3_bind_null (stmt, 5);
    sqlite3_bind_text (stmt, 6, store_state_name (row->state), -1, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 7, row->attempt);
    sqlite3_bind_int64 (stmt, 8, row->retries_left);
    sqlite3_bind_double (stmt, 9, row->run_at);
    sqlite3_bind_double (stmt, 10, row->created_at);
    if (s_step_write (self, stmt, "insert job"))
        return -1;
    *duplicate = sqlite3_changes (self->db) == 0;
    if (!*duplicate)
        *seq = sqlite3_last_insert_rowid (self->db);
    return 0;
}

int
store_set_dispatched (store_t *self, int64_t seq, uint32_t attempt, uint64_t epoch)
{
    if (self->memory || seq <= 0)
        return 0;
    if (s_begin (self))
        return -1;
    sqlite3_stmt *stmt = self->stmt[S_DISPATCHED];
    sqlite3_bind_int64 (stmt, 1, attempt);
    sqlite3_bind_int64 (stmt, 2, (sqlite3_int64) epoch);
    sqlite3_bind_int64 (stmt, 3, seq);
    return s_step_write (self, stmt, "mark job running");
}

int
store_set_waiting (store_t *self, int64_t seq, store_state_t state,
                   uint32_t retries_left, double run_at)
{
    assert (state == STORE_QUEUED || state == STORE_SCHEDULED);
    if (self->memory || seq <= 0)
        return 0;
    if (s_begin (self))
        return -1;
    sqlite3_stmt *stmt = self->stmt[S_WAITING];
    sqlite3_bind_text (stmt, 1, store_state_name (state), -1, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 2, retries_left);
    sqlite3_bind_double (stmt, 3, run_at);
    sqlite3_bind_int64 (stmt, 4, seq);
    return s_step_write (self, stmt, "requeue job");
}

int
store_set_ended (store_t *self, int64_t seq, store_state_t state, const char *status,
                 const void *result, size_t result_size, const char *usage, double ended_at)
{
    assert (ended_at > 0);      // the index of ended rows holds ended_at > 0
    if (self->memory || seq <= 0)
        return 0;
    if (s_begin (self))
        return -1;
    sqlite3_stmt *stmt = self->stmt[S_ENDED];
    sqlite3_bind_text (stmt, 1, store_state_name (state), -1, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_blob (stmt, 3, result ? result : "", (int) result_size, SQLITE_STATIC);
    sqlite3_bind_text (stmt, 4, usage ? usage : "", -1, SQLITE_STATIC);
    sqlite3_bind_double (stmt, 5, ended_at);
    //  Dead jobs keep their payload so they can run again; others drop it.
    sqlite3_bind_int (stmt, 6, state == STORE_DEAD);
    sqlite3_bind_int64 (stmt, 7, seq);
    return s_step_write (self, stmt, "end job");
}

//  Undoes the open transaction after a failure, keeping the first error.
static void
s_rollback (store_t *self)
{
    if (sqlite3_get_autocommit (self->db))
        return;             // SQLite already rolled it back
    char first[256];
    snprintf (first, sizeof first, "%s", self->error);
    if (s_run (self, self->stmt[S_ROLLBACK], "rollback")) {
        //  Nothing more to do here: the next BEGIN fails and says why.
        char reason[256];
        snprintf (reason, sizeof reason, "%s", self->error);
        snprintf (self->error, sizeof self->error, "%.120s; %.120s", first, reason);
    }
    else
        snprintf (self->error, sizeof self->error, "%s", first);
}

int
store_commit (store_t *self)
{
    if (!self->in_transaction)
        return 0;
    self->in_transaction = false;
    if (self->failed) {
        s_rollback (self);
        self->failed = false;
        return -1;
    }
    if (s_run (self, self->stmt[S_COMMIT], "commit")) {
        //  A failed COMMIT may leave the transaction open: undo it.
        s_rollback (self);
        return -1;
    }
    return 0;
}

int
store_sync (store_t *self)
{
    if (self->memory)
        return 0;
    //  A checkpoint syncs the WAL before copying it back, unless
    //  synchronous is OFF: then raise it for this one checkpoint, so that a
    //  'guarantee' job is on disk whatever the policy.
    bool raise = self->policy == STORE_FSYNC_OFF && !self->in_transaction;
    if (raise)
        s_exec (self, "PRAGMA synchronous = NORMAL");
    int rc = sqlite3_wal_checkpoint_v2 (self->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (rc != SQLITE_OK)
        snprintf (self->error, sizeof self->error, "checkpoint: %s", sqlite3_errmsg (self->db));
    if (raise)
        s_exec (self, "PRAGMA synchronous = OFF");
    return rc == SQLITE_OK ? 0 : -1;
}

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
        snprintf (self->error, sizeof self->error, "query: %s", sqlite3_errmsg (self->db));
        return -1;
    }
    return rows;
}

int
store_load (store_t *self, store_row_fn *fn, void *arg)
{
    int rc = s_query (self, self->stmt[S_LOAD], fn, arg);
    return rc < 0 ? rc : 0;
}

int
store_fetch (store_t *self, const char *msgid, store_row_fn *fn, void *arg)
{
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
    if (cursor->ended_at <= 0) {            // from the newest
        cursor->ended_at = HUGE_VAL;
        cursor->seq = INT64_MAX;
    }
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

//  Runs one chunked DELETE whose other parameters are bound; the limit
//  (-1: none) is parameter limit_param. Returns the rows deleted or -1.
static int
s_delete_some (store_t *self, sqlite3_stmt *stmt, int limit_param, sqlite3_int64 limit,
               const char *what)
{
    sqlite3_bind_int64 (stmt, limit_param, limit);
    if (s_step_write (self, stmt, what))
        return -1;
    return sqlite3_changes (self->db);
}

int
store_expire_some (store_t *self, double now, double result_ttl_s, double dead_ttl_s,
                   size_t limit, bool *more)
{
    *more = false;
    if (s_begin (self))
        return -1;
    sqlite3_int64 left = limit ? (sqlite3_int64) limit : -1;
    sqlite3_stmt *stmt = self->stmt[S_EXPIRE];
    sqlite3_bind_double (stmt, 1, now - result_ttl_s);
    int results = s_delete_some (self, stmt, 2, left, "expire results");
    if (results < 0)
        return -1;
    if (limit && results >= left) {
        *more = true;               // maybe: the next call finds out
        return results;
    }
    if (limit)
        left -= results;
    stmt = self->stmt[S_EXPIRE_DEAD];
    sqlite3_bind_double (stmt, 1, now - dead_ttl_s);
    int dead = s_delete_some (self, stmt, 2, left, "expire dead jobs");
    if (dead < 0)
        return -1;
    *more = limit && dead >= left;
    return results + dead;
}

int
store_purge_dead_some (store_t *self, size_t limit, bool *more)
{
    *more = false;
    if (s_begin (self))
        return -1;
    int purged = s_delete_some (self, self->stmt[S_PURGE], 1,
                                limit ? (sqlite3_int64) limit : -1, "purge dead jobs");
    *more = purged >= 0 && limit && (size_t) purged >= limit;
    return purged;
}

int
store_meta_get (store_t *self, const char *key, int64_t *value)
{
    sqlite3_stmt *stmt = self->stmt[S_META_GET];
    sqlite3_bind_text (stmt, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        *value = sqlite3_column_int64 (stmt, 0);
    else
    if (rc != SQLITE_DONE)
        snprintf (self->error, sizeof self->error, "meta: %s", sqlite3_errmsg (self->db));
    sqlite3_reset (stmt);
    sqlite3_clear_bindings (stmt);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? 1 : -1;
}

int
store_meta_set (store_t *self, const char *key, int64_t value)
{
    if (s_begin (self))
        return -1;
    sqlite3_stmt *stmt = self->stmt[S_META_SET];
    sqlite3_bind_text (stmt, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64 (stmt, 2, value);
    return s_step_write (self, stmt, "set meta");
}

void
store_release_memory (store_t *self)
{
    //  Also truncate the WAL: after a backlog it has grown, and with it the
    //  index SQLite keeps mapped in memory.
    if (!self->memory && !self->in_transaction)
        sqlite3_wal_checkpoint_v2 (self->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    sqlite3_db_release_memory (self->db);
}

int64_t
store_count (store_t *self, store_state_t state)
{
    sqlite3_stmt *stmt = self->stmt[state >= STORE_DONE ? S_COUNT_ENDED : S_COUNT];
    sqlite3_bind_text (stmt, 1, store_state_name (state), -1, SQLITE_STATIC);
    int64_t count = -1;
    int rc = sqlite3_step (stmt);
    if (rc == SQLITE_ROW)
        count = sqlite3_column_int64 (stmt, 0);
    else
        snprintf (self->error, sizeof self->error, "count: %s", sqlite3_errmsg (self->db));
    sqlite3_reset (stmt);
    return count;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"
#include <unistd.h>

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
    CHECK_EQ (row->payload_size, 0);        // dropped once ended
    return 0;
}

static int
s_check_epoch (const store_row_t *row, void *arg)
{
    (void) arg;
    CHECK_UEQ (row->epoch, 78);         // its latest dispatch's
    return 0;
}

//  Adds n jobs named prefix0.. and ends them (state, ended_at = 1000 + i);
//  fills seqs if given.
static void
s_add_ended (store_t *store, const char *prefix, int n, store_state_t state, int64_t *seqs)
{
    for (int i = 0; i < n; i++) {
        char msgid[32];
        snprintf (msgid, sizeof msgid, "%s%d", prefix, i);
        store_row_t row = { .msgid = msgid, .queue = "q", .headers = "", .payload = "p",
                            .payload_size = 1, .state = STORE_QUEUED, .created_at = 1 };
        bool duplicate = true;
        int64_t seq = 0;
        CHECK_EQ (store_insert (store, &row, &duplicate, &seq), 0);
        CHECK_EQ (store_set_ended (store, seq, state, "failed", "e", 1, "", 1000 + i), 0);
        if (seqs)
            seqs[i] = seq;
    }
    CHECK_EQ (store_commit (store), 0);
}

//  Large deletes in chunks, the dead list in pages, and the upgrade of a
//  database written before the index of ended rows.
static void
s_test_chunks (const char *dir, bool verbose)
{
    char path[300], err[256];
    snprintf (path, sizeof path, "%s/chunks.db", dir);
    store_t *store = store_open (path, STORE_FSYNC_OFF, err, sizeof err);
    CHECK (store != NULL);
    if (!store)
        return;
    s_add_ended (store, "r", 10, STORE_DONE, NULL);        // ended at 1000..1009
    int64_t dead_seqs[5];
    s_add_ended (store, "d", 5, STORE_DEAD, dead_seqs);     // ended at 1000..1004
    CHECK_EQ (store_count (store, STORE_DONE), 10);
    CHECK_EQ (store_count (store, STORE_DEAD), 5);

    //  Results before 1008 are due (8 rows), dead jobs before 1002 (2 rows):
    //  chunks of 4 take three calls, and only the last says "no more".
    bool more = false;
    int total = 0, calls = 0, got;
    do {
        got = store_expire_some (store, 1058, 50, 56, 4, &more);
        CHECK (got >= 0 && got <= 4);
        CHECK_EQ (store_commit (store), 0);
        total += got;
        calls++;
    } while (more && got > 0 && calls < 10);
    CHECK_EQ (total, 10);
    CHECK_EQ (calls, 3);
    CHECK (!more);
    CHECK_EQ (store_count (store, STORE_DONE), 2);
    CHECK_EQ (store_count (store, STORE_DEAD), 3);
    CHECK_EQ (store_fetch (store, "r7", NULL, NULL), 0);
    CHECK_EQ (store_fetch (store, "r8", NULL, NULL), 1);
    CHECK_EQ (store_fetch (store, "d1", NULL, NULL), 0);
    CHECK_EQ (store_fetch (store, "d2", NULL, NULL), 1);
    CHECK_EQ (store_expire_some (store, 1058, 50, 56, 4, &more), 0);   // nothing left due
    CHECK (!more);

    //  The dead list in pages of 2, newest first; reviving a row between
    //  pages shifts nothing, and the revived row leaves the dead jobs.
    store_cursor_t cursor = { 0, 0 };
    char seen[256] = "";
    CHECK_EQ (store_list_dead_page (store, &cursor, 2, s_collect, seen), 2);
    CHECK_STREQ (seen, "d4:dead d3:dead ");
    CHECK_EQ (store_set_waiting (store, dead_seqs[4], STORE_QUEUED, 1, 0), 0);
    CHECK_EQ (store_list_dead_page (store, &cursor, 2, s_collect, seen), 1);
    CHECK_STREQ (seen, "d4:dead d3:dead d2:dead ");
    CHECK_EQ (store_list_dead_page (store, &cursor, 2, s_collect, seen), 0);
    CHECK_EQ (store_commit (store), 0);
    CHECK_EQ (store_count (store, STORE_DEAD), 2);
    CHECK_EQ (store_count (store, STORE_QUEUED), 1);
    //  Queued again, it is neither expired as dead nor purged.
    CHECK_EQ (store_expire_some (store, 1e9, 50, 56, 0, &more), 4);
    CHECK_EQ (store_commit (store), 0);
    CHECK_EQ (store_fetch (store, "d4", NULL, NULL), 1);

    //  Purge in chunks.
    s_add_ended (store, "p", 5, STORE_DEAD, NULL);
    CHECK_EQ (store_purge_dead_some (store, 3, &more), 3);
    CHECK (more);
    CHECK_EQ (store_purge_dead_some (store, 3, &more), 2);
    CHECK (!more);
    CHECK_EQ (store_commit (store), 0);
    CHECK_EQ (store_count (store, STORE_DEAD), 0);

    //  A chunk that cannot be written fails the transaction and says why.
    s_add_ended (store, "x", 3, STORE_DONE, NULL);
    sqlite3_exec (store->db, "PRAGMA query_only = ON", NULL, NULL, NULL);
    CHECK_EQ (store_expire_some (store, 1e9, 1, 1, 2, &more), -1);
    CHECK (!more);
    CHECK_CONTAINS (store_error (store), "expire results");
    CHECK_EQ (store_commit (store), -1);
    sqlite3_exec (store->db, "PRAGMA query_only = OFF", NULL, NULL, NULL);
    CHECK_EQ (store_count (store, STORE_DONE), 3);
    store_close (&store);
    unlink (path);

    //  A database from before jobs_ended: its (state, seq) index goes, and a
    //  dead job that had been queued again loses its stale ended_at.
    sqlite3 *db = NULL;
    CHECK_EQ (sqlite3_open (path, &db), SQLITE_OK);
    CHECK_EQ (sqlite3_exec (db, s_schema, NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ (sqlite3_exec (db, "CREATE INDEX jobs_by_state ON jobs (state, seq);"
                            "INSERT INTO jobs (msgid, queue, headers, payload, state, created_at,"
                            " ended_at) VALUES ('old', 'q', '', x'00', 'queued', 1, 5)",
                            NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close (db);
    store = store_open (path, STORE_FSYNC_OFF, err, sizeof err);
    CHECK (store != NULL);
    if (store) {
        sqlite3_stmt *stmt = NULL;
        CHECK_EQ (sqlite3_prepare_v2 (store->db, "SELECT (SELECT count(*) FROM sqlite_master"
                                      " WHERE name = 'jobs_by_state'), (SELECT ended_at FROM jobs"
                                      " WHERE msgid = 'old')", -1, &stmt, NULL), SQLITE_OK);
        CHECK_EQ (sqlite3_step (stmt), SQLITE_ROW);
        CHECK_EQ (sqlite3_column_int (stmt, 0), 0);
        CHECK_EQ (sqlite3_column_int (stmt, 1), 0);
        sqlite3_finalize (stmt);
        seen[0] = 0;
        CHECK_EQ (store_load (store, s_collect, seen), 0);
        CHECK_STREQ (seen, "old:queued ");
    }
    store_close (&store);
    unlink (path);
    if (verbose)
        printf ("chunks ");
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

    const char *ids[] = { "a", "b", "c", "d" };
    int64_t seqs[4] = { 0 }, seq = 0;
    for (int i = 0; i < 4; i++) {
        store_row_t row = { .msgid = ids[i], .queue = "default", .headers = "",
                            .payload = "p", .payload_size = 1, .client = "cl",
                            .client_size = 2, .state = STORE_QUEUED, .retries_left = 1,
                            .created_at = 1000 + i };
        bool duplicate = true;
        CHECK_EQ (store_insert (store, &row, &duplicate, &seqs[i]), 0);
        CHECK (!duplicate);
        CHECK (seqs[i] > (i ? seqs[i - 1] : 0));
    }
    store_row_t again = { .msgid = "a", .queue = "x", .headers = "", .payload = "q",
                          .payload_size = 1, .state = STORE_QUEUED };
    bool duplicate = false;
    CHECK_EQ (store_insert (store, &again, &duplicate, &seq), 0);
    CHECK (duplicate);
    CHECK_EQ (seq, 0);
    CHECK (store_in_transaction (store));
    CHECK_EQ (store_commit (store), 0);
    CHECK (!store_in_transaction (store));

    CHECK_EQ (store_set_dispatched (store, seqs[0], 1, 77), 0);
    CHECK_EQ (store_set_ended (store, seqs[0], STORE_DONE, "ok", "42", 2, "wall_us=5", 2000), 0);
    CHECK_EQ (store_set_dispatched (store, seqs[1], 1, 78), 0);
    CHECK_EQ (store_set_waiting (store, seqs[2], STORE_SCHEDULED, 0, 3000), 0);
    CHECK_EQ (store_set_ended (store, seqs[3], STORE_DEAD, "failed", "boom", 4, "", 2500), 0);
    CHECK_EQ (store_commit (store), 0);
    CHECK_EQ (store_count (store, STORE_DEAD), 1);
    store_close (&store);

    //  Reopened: unfinished jobs come back in submission order.
    store = store_open (path, STORE_FSYNC_EVERYSEC, err, sizeof err);
    CHECK (store != NULL);
    if (!store)
        return;
    char seen[256] = "";
    CHECK_EQ (store_load (store, s_collect, seen), 0);
    CHECK_STREQ (seen, "b:running c:scheduled ");
    CHECK_EQ (store_fetch (store, "b", s_check_epoch, NULL), 1);
    CHECK_EQ (store_fetch (store, "a", s_check_result, NULL), 1);
    CHECK_EQ (store_fetch (store, "zz", s_check_result, NULL), 0);
    seen[0] = 0;
    CHECK_EQ (store_list_dead (store, 0, s_collect, seen), 1);
    CHECK_STREQ (seen, "d:dead ");
    CHECK_EQ (store_sync (store), 0);
    int64_t meta = 0;
    CHECK_EQ (store_meta_get (store, "fence", &meta), 1);
    CHECK_EQ (store_meta_set (store, "fence", 41), 0);
    CHECK_EQ (store_meta_set (store, "fence", 42), 0);
    CHECK_EQ (store_commit (store), 0);
    CHECK_EQ (store_meta_get (store, "fence", &meta), 0);
    CHECK_EQ (meta, 42);

    //  Retention: results expire after result_ttl, dead jobs after dead_ttl.
    bool more;
    CHECK_EQ (store_expire_some (store, 2100, 50, 1000, 0, &more), 1);     // "a" only
    CHECK_EQ (store_commit (store), 0);
    CHECK_EQ (store_fetch (store, "a", NULL, NULL), 0);
    CHECK_EQ (store_purge_dead_some (store, 0, &more), 1);
    CHECK_EQ (store_commit (store), 0);
    CHECK_EQ (store_count (store, STORE_DEAD), 0);

    //  A failed write fails the whole batch: nothing of it is kept.
    store_row_t bad = { .msgid = "e", .queue = "default", .headers = "", .payload = "p",
                        .payload_size = 1, .state = STORE_QUEUED, .created_at = 1 };
    CHECK_EQ (store_insert (store, &bad, &duplicate, &seq), 0);
    sqlite3_exec (store->db, "PRAGMA query_only = ON", NULL, NULL, NULL);
    store_row_t blocked = bad;
    blocked.msgid = "f";
    CHECK_EQ (store_insert (store, &blocked, &duplicate, &seq), -1);
    CHECK_EQ (store_commit (store), -1);
    CHECK_CONTAINS (store_error (store), "insert job");
    sqlite3_exec (store->db, "PRAGMA query_only = OFF", NULL, NULL, NULL);
    CHECK_EQ (store_fetch (store, "e", NULL, NULL), 0);
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
    rmdir (dir);

    store = store_open (":memory:", STORE_FSYNC_OFF, err, sizeof err);
    CHECK (store && store_is_memory (store));
    if (store) {
        //  In-memory mode writes no job rows at all.
        store_row_t row = { .msgid = "m", .queue = "q", .headers = "", .payload = "p",
                            .payload_size = 1, .state = STORE_QUEUED };
        CHECK_EQ (store_insert (store, &row, &duplicate, &seq), 0);
        CHECK (!duplicate && seq == 0);
        CHECK_EQ (store_commit (store), 0);
        CHECK_EQ (store_fetch (store, "m", NULL, NULL), 0);
    }
    store_close (&store);
    store_fsync_t policy;
    CHECK_EQ (store_fsync_parse ("everysec", &policy), 0);
    CHECK (policy == STORE_FSYNC_EVERYSEC);
    CHECK_EQ (store_fsync_parse ("sometimes", &policy), -1);
    if (verbose)
        printf ("OK\n");
}
