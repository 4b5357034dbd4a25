/*  writer — the store's writing thread. See writer.h.

    A batch is an array of changes plus one buffer (its arena) holding
    their strings and blobs, so that building one costs no allocation per
    job once the batch has grown to its working size. The thread runs the
    changes in order inside one transaction, with statements prepared once;
    a change that fails fails the batch, which is rolled back: the router
    then refuses its new jobs (ERROR STORAGE) and writes its job ends again.

    The thread's loop: a batch, a task's chunk, a sync or a checkpoint,
    whichever is due, batches first. SQLite's own autocheckpoint (which runs
    inside a COMMIT, before the batch's event could go) is off; the thread
    checkpoints after the event instead.
*/
#include "writer.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

writer_step_fn *writer_step = sqlite3_step;

//  The checkpointer is asked to copy the WAL back whenever it grew by
//  S_CHECKPOINT_FRAMES (SQLite's own default), and each second if anything
//  was committed (that checkpoint syncs the WAL first: the everysec
//  policy's sync).
//
//  Reusing the WAL from its start is the one thing that costs the writer
//  syncs: a checkpoint of the frames committed since the checkpointer's
//  last (a sync of the WAL, one of the database), then a sync of the new
//  WAL header with the next commit: three fsyncs during which no batch is
//  committed (3 ms on a fast disk, 45 ms on one whose fsync takes 15 ms).
//  So the writer does it when it has been idle S_IDLE_MS with at least
//  S_WAL_IDLE_FRAMES in the WAL, under load only once the WAL holds
//  S_WAL_RESTART_FRAMES (64 MiB), and past S_WAL_MAX_FRAMES whatever the
//  checkpointer did; and after a failed commit, whose cause may be a disk
//  the WAL filled.
#define S_CHECKPOINT_FRAMES 1000
#define S_WAL_IDLE_FRAMES 1024
#define S_IDLE_MS 100
#define S_WAL_RESTART_FRAMES 16384
#define S_WAL_MAX_FRAMES 65536
#define S_SYNC_INTERVAL_MS 1000
//  A WAL reset after it grew larger than this is cut back to it.
#define S_WAL_LIMIT_BYTES (72 * 1024 * 1024)
//  Rows a task deletes per transaction: a chunk takes about 10 ms, and a
//  batch that arrives meanwhile waits for one chunk at most.
#define S_EXPIRE_CHUNK 2000
#define S_PURGE_CHUNK 5000
//  A batch keeps this much memory between uses.
#define S_BATCH_KEEP_BYTES (256 * 1024)
#define S_BATCH_KEEP_OPS 4096

//  --------------------------------------------------------------------------
//  Batches

typedef enum {
    S_OP_INSERT,
    S_OP_REVIVE,
    S_OP_DISPATCHED,
    S_OP_WAITING,
    S_OP_ENDED,
    S_OP_META
} s_op_type_t;

#define S_NONE SIZE_MAX  // an arena offset that stands for NULL

//  One change. Strings and blobs are offsets into the batch's arena.
typedef struct {
    int64_t seq;        // the row; a meta change's value
    uint8_t type;       // s_op_type_t
    uint8_t state;      // store_state_t the row moves to
    bool has_dispatch;  // attempt and epoch are to be written
    uint32_t attempt;
    uint64_t epoch;
    uint32_t retries_left;
    double run_at;      // insert, revive, waiting
    double created_at;  // insert, revive
    double ended_at;    // ended
    //  insert, revive: msgid, queue, headers; ended: status, usage; meta: key
    size_t text[3];
    //  insert, revive: payload, client; ended: result
    size_t blob[2];
    size_t blob_size[2];
} s_op_t;

struct writer_batch_t {
    s_op_t *ops;
    size_t count, cap;
    char *data;  // the arena
    size_t used, size;
    bool sync;
    bool doomed;  // fails when run (writer_batch_fail)
    int rc;       // after the event
    char error[256];
    int64_t *duplicates;  // seqs of inserts found stored already
    size_t duplicate_count, duplicate_cap;
};

writer_batch_t *
writer_batch_new (void)
{
    return (writer_batch_t *) calloc (1, sizeof (writer_batch_t));
}

void
writer_batch_destroy (writer_batch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    writer_batch_t *self = *self_p;
    free (self->ops);
    free (self->data);
    free (self->duplicates);
    free (self);
    *self_p = NULL;
}

void
writer_batch_reset (writer_batch_t *self)
{
    self->count = 0;
    self->used = 0;
    self->sync = false;
    self->doomed = false;
    self->rc = 0;
    self->error[0] = 0;
    self->duplicate_count = 0;
    if (self->size > S_BATCH_KEEP_BYTES) {
        free (self->data);
        self->data = NULL;
        self->size = 0;
    }
    if (self->cap > S_BATCH_KEEP_OPS) {
        free (self->ops);
        self->ops = NULL;
        self->cap = 0;
    }
}

size_t
writer_batch_size (writer_batch_t *self)
{
    return self->count;
}

void
writer_batch_fail (writer_batch_t *self, const char *reason)
{
    self->doomed = true;
    snprintf (self->error, sizeof self->error, "%s", reason);
}

void
writer_batch_set_sync (writer_batch_t *self, bool sync)
{
    self->sync = self->sync || sync;
}

int
writer_batch_status (writer_batch_t *self)
{
    return self->rc;
}

const char *
writer_batch_error (writer_batch_t *self)
{
    return self->error;
}

bool
writer_batch_duplicate (writer_batch_t *self, int64_t seq)
{
    for (size_t i = 0; i < self->duplicate_count; i++)
        if (self->duplicates[i] == seq)
            return true;
    return false;
}

void
writer_batch_dispatches (writer_batch_t *self, writer_dispatch_fn *fn, void *arg)
{
    for (size_t i = 0; i < self->count; i++) {
        s_op_t *op = &self->ops[i];
        if (op->has_dispatch) {
            writer_dispatch_t dispatch = { op->attempt, op->epoch };
            fn (op->seq, &dispatch, arg);
        }
    }
}

//  Room for n more bytes in the arena; false if out of memory.
static bool
s_reserve (writer_batch_t *self, size_t n)
{
    if (self->used + n <= self->size)
        return true;
    size_t size = self->size ? self->size : 16 * 1024;
    while (size < self->used + n)
        size *= 2;
    char *data = (char *) realloc (self->data, size);
    if (!data)
        return false;
    self->data = data;
    self->size = size;
    return true;
}

//  Copies bytes into the arena (a NUL after them, so text reads as a C
//  string); returns the offset, or S_NONE for NULL. The caller reserved.
static size_t
s_put (writer_batch_t *self, const void *bytes, size_t size)
{
    if (!bytes)
        return S_NONE;
    size_t offset = self->used;
    if (size)
        memcpy (self->data + offset, bytes, size);
    self->data[offset + size] = 0;
    self->used += size + 1;
    return offset;
}

static const void *
s_at (const writer_batch_t *self, size_t offset)
{
    return offset == S_NONE ? NULL : self->data + offset;
}

//  A new change with room for bytes of data; NULL if out of memory (then
//  nothing changed).
static s_op_t *
s_op_new (writer_batch_t *self, s_op_type_t type, size_t bytes)
{
    if (self->count == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 256;
        s_op_t *ops = (s_op_t *) realloc (self->ops, cap * sizeof (s_op_t));
        if (!ops)
            return NULL;
        self->ops = ops;
        self->cap = cap;
    }
    if (!s_reserve (self, bytes))
        return NULL;
    s_op_t *op = &self->ops[self->count++];
    memset (op, 0, sizeof *op);
    op->type = (uint8_t) type;
    op->text[0] = op->text[1] = op->text[2] = S_NONE;
    op->blob[0] = op->blob[1] = S_NONE;
    return op;
}

static void
s_op_dispatch (s_op_t *op, const writer_dispatch_t *dispatch)
{
    if (dispatch) {
        op->has_dispatch = true;
        op->attempt = dispatch->attempt;
        op->epoch = dispatch->epoch;
    }
}

static size_t
s_len (const char *text)
{
    return text ? strlen (text) + 1 : 0;
}

//  A row's submitted part (insert, revive).
static s_op_t *
s_op_row (writer_batch_t *self, s_op_type_t type, const store_row_t *row)
{
    size_t bytes = s_len (row->msgid) + s_len (row->queue) + s_len (row->headers)
                   + row->payload_size + 1 + row->client_size + 1;
    s_op_t *op = s_op_new (self, type, bytes);
    if (!op)
        return NULL;
    op->seq = row->seq;
    op->text[0] = s_put (self, row->msgid, s_len (row->msgid) - (row->msgid ? 1 : 0));
    op->text[1] = s_put (self, row->queue, s_len (row->queue) - (row->queue ? 1 : 0));
    op->text[2] = s_put (self, row->headers ? row->headers : "",
                         row->headers ? strlen (row->headers) : 0);
    op->blob[0] = s_put (self, row->payload ? row->payload : "", row->payload_size);
    op->blob_size[0] = row->payload_size;
    op->blob[1] = s_put (self, row->client_size ? row->client : NULL, row->client_size);
    op->blob_size[1] = row->client_size;
    op->state = (uint8_t) row->state;
    op->attempt = row->attempt;
    op->retries_left = row->retries_left;
    op->run_at = row->run_at;
    op->created_at = row->created_at;
    return op;
}

int
writer_batch_insert (writer_batch_t *self, int64_t seq, const store_row_t *row)
{
    assert (row->msgid && row->queue);
    s_op_t *op = s_op_row (self, S_OP_INSERT, row);
    if (!op)
        return -1;
    op->seq = seq;
    return 0;
}

int
writer_batch_revive (writer_batch_t *self, const store_row_t *row, uint32_t retries_left)
{
    assert (row->msgid && row->queue && row->seq > 0);
    s_op_t *op = s_op_row (self, S_OP_REVIVE, row);
    if (!op)
        return -1;
    op->state = STORE_QUEUED;
    op->retries_left = retries_left;
    return 0;
}

int
writer_batch_dispatched (writer_batch_t *self, int64_t seq,
                         const writer_dispatch_t *dispatch)
{
    assert (dispatch);
    s_op_t *op = s_op_new (self, S_OP_DISPATCHED, 0);
    if (!op)
        return -1;
    op->seq = seq;
    op->state = STORE_RUNNING;
    s_op_dispatch (op, dispatch);
    return 0;
}

int
writer_batch_waiting (writer_batch_t *self, int64_t seq, store_state_t state,
                      uint32_t retries_left, double run_at,
                      const writer_dispatch_t *dispatch)
{
    assert (state == STORE_QUEUED || state == STORE_SCHEDULED);
    s_op_t *op = s_op_new (self, S_OP_WAITING, 0);
    if (!op)
        return -1;
    op->seq = seq;
    op->state = (uint8_t) state;
    op->retries_left = retries_left;
    op->run_at = run_at;
    s_op_dispatch (op, dispatch);
    return 0;
}

int
writer_batch_ended (writer_batch_t *self, int64_t seq, store_state_t state,
                    const char *status, const void *result, size_t result_size,
                    const char *usage, double ended_at, const writer_dispatch_t *dispatch)
{
    assert (ended_at > 0);  // the index of ended rows holds ended_at > 0
    s_op_t *op =
        s_op_new (self, S_OP_ENDED, s_len (status) + result_size + 1 + s_len (usage) + 1);
    if (!op)
        return -1;
    op->seq = seq;
    op->state = (uint8_t) state;
    op->ended_at = ended_at;
    op->text[0] = s_put (self, status, status ? strlen (status) : 0);
    op->text[1] = s_put (self, usage ? usage : "", usage ? strlen (usage) : 0);
    op->blob[0] = s_put (self, result ? result : "", result_size);
    op->blob_size[0] = result_size;
    s_op_dispatch (op, dispatch);
    return 0;
}

int
writer_batch_meta (writer_batch_t *self, const char *key, int64_t value)
{
    s_op_t *op = s_op_new (self, S_OP_META, strlen (key) + 1);
    if (!op)
        return -1;
    op->seq = value;
    op->text[0] = s_put (self, key, strlen (key));
    return 0;
}

bool
writer_batch_wants_sync (const writer_batch_t *self)
{
    return self->sync;
}

bool
writer_batch_doomed (const writer_batch_t *self)
{
    return self->doomed;
}

void
writer_batch_op (const writer_batch_t *self, size_t index, writer_op_t *out)
{
    assert (index < self->count);
    const s_op_t *op = &self->ops[index];
    memset (out, 0, sizeof *out);
    out->seq = op->seq;
    out->state = (store_state_t) op->state;
    out->has_dispatch = op->has_dispatch;
    out->attempt = op->attempt;
    out->epoch = op->epoch;
    out->retries_left = op->retries_left;
    out->run_at = op->run_at;
    out->created_at = op->created_at;
    out->ended_at = op->ended_at;
    switch (op->type) {
        case S_OP_INSERT:
        case S_OP_REVIVE:
            out->type = op->type == S_OP_INSERT ? WRITER_OP_INSERT : WRITER_OP_REVIVE;
            out->msgid = (const char *) s_at (self, op->text[0]);
            out->queue = (const char *) s_at (self, op->text[1]);
            out->headers = (const char *) s_at (self, op->text[2]);
            out->payload = s_at (self, op->blob[0]);
            out->payload_size = op->blob_size[0];
            out->client = s_at (self, op->blob[1]);
            out->client_size = op->blob_size[1];
            break;
        case S_OP_DISPATCHED:
            out->type = WRITER_OP_DISPATCHED;
            break;
        case S_OP_WAITING:
            out->type = WRITER_OP_WAITING;
            break;
        case S_OP_ENDED:
            out->type = WRITER_OP_ENDED;
            out->status = (const char *) s_at (self, op->text[0]);
            out->usage = (const char *) s_at (self, op->text[1]);
            out->result = s_at (self, op->blob[0]);
            out->result_size = op->blob_size[0];
            break;
        case S_OP_META:
            out->type = WRITER_OP_META;
            out->key = (const char *) s_at (self, op->text[0]);
            out->value = op->seq;
            break;
    }
}

int
writer_batch_add_duplicate (writer_batch_t *self, int64_t seq)
{
    if (self->duplicate_count == self->duplicate_cap) {
        size_t cap = self->duplicate_cap ? self->duplicate_cap * 2 : 16;
        int64_t *list = (int64_t *) realloc (self->duplicates, cap * sizeof (int64_t));
        if (!list)
            return -1;
        self->duplicates = list;
        self->duplicate_cap = cap;
    }
    self->duplicates[self->duplicate_count++] = seq;
    return 0;
}

void
writer_batch_settle (writer_batch_t *self, int rc, const char *error)
{
    self->rc = rc;
    snprintf (self->error, sizeof self->error, "%s", rc && error ? error : "");
    if (rc)
        self->duplicate_count = 0;
}

void
writer_batch_begin_run (writer_batch_t *self)
{
    self->duplicate_count = 0;
    if (!self->doomed) {
        self->rc = 0;
        self->error[0] = 0;
    }
    else
        self->rc = -1;
}

int
writer_reply_committed (zsock_t *pipe, writer_batch_t *batch)
{
    return zsock_send (pipe, "sp", "COMMITTED", batch);
}

int
writer_reply_task (zsock_t *pipe, bool purge, int rc, int64_t count, const char *error)
{
    char status[16], number[32];
    snprintf (status, sizeof status, "%d", rc);
    snprintf (number, sizeof number, "%" PRId64, count);
    return zstr_sendx (pipe, purge ? "PURGED" : "EXPIRED", status, number,
                       rc && error ? error : "", NULL);
}

//  --------------------------------------------------------------------------
//  The thread's side: statements and how a batch is run

enum {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_SYNC_FULL,
    W_SYNC_POLICY,
    W_INSERT,
    W_REVIVE,
    W_DISPATCHED,
    W_WAITING,
    W_ENDED,
    W_META,
    W_EXPIRE,
    W_EXPIRE_DEAD,
    W_PURGE,
    W_STATEMENT_COUNT
};

//  Every delete of ended rows says "ended_at > 0" so that SQLite can use
//  the partial index jobs_ended (an ended row always has ended_at > 0).
#define S_ENDED_STATES "state IN ('done', 'failed', 'cancelled')"

static const char *s_sql[W_STATEMENT_COUNT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_SYNC_FULL] = "PRAGMA synchronous = FULL",
    [W_SYNC_POLICY] = NULL,  // the policy's, set at start
    [W_INSERT] =
        "INSERT OR IGNORE INTO jobs (seq, msgid, queue, headers, payload, client,"
        " state, attempt, retries_left, run_at, created_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
    //  A dead row back in its queue; if a purge or expiry deleted it
    //  since the router read it, it comes back whole (unless its msgid
    //  was taken again meanwhile: then the newer job stands).
    [W_REVIVE] = "INSERT INTO jobs (seq, msgid, queue, headers, payload, client, state,"
                 " attempt, retries_left, run_at, created_at)"
                 " VALUES (?1,?2,?3,?4,?5,?6,'queued',?7,?8,0,?9)"
                 " ON CONFLICT (seq) DO UPDATE SET state = 'queued',"
                 " retries_left = excluded.retries_left, run_at = 0, ended_at = 0"
                 " ON CONFLICT DO NOTHING",
    [W_DISPATCHED] =
        "UPDATE jobs SET state = 'running', attempt = ?, epoch = ? WHERE seq = ?",
    //  ended_at = 0: a dead job queued again leaves the index of ended rows.
    [W_WAITING] =
        "UPDATE jobs SET state = ?1, retries_left = ?2, run_at = ?3, ended_at = 0,"
        " attempt = CASE WHEN ?4 THEN ?5 ELSE attempt END,"
        " epoch = CASE WHEN ?4 THEN ?6 ELSE epoch END WHERE seq = ?7",
    //  Dead jobs keep their payload so they can run again; others drop it.
    [W_ENDED] = "UPDATE jobs SET state = ?1, status = ?2, result = ?3, usage = ?4,"
                " ended_at = ?5, payload = CASE WHEN ?6 THEN payload ELSE x'' END,"
                " attempt = CASE WHEN ?7 THEN ?8 ELSE attempt END,"
                " epoch = CASE WHEN ?7 THEN ?9 ELSE epoch END WHERE seq = ?10",
    [W_META] = "INSERT INTO meta (key, value) VALUES (?, ?)"
               " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    //  At most ?2 rows (-1: all). No ORDER BY: with IN over three states it
    //  would sort every candidate before the LIMIT; all of them are due.
    [W_EXPIRE] =
        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE " S_ENDED_STATES
        " AND ended_at > 0 AND ended_at < ?1 LIMIT ?2)",
    [W_EXPIRE_DEAD] =
        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE state = 'dead'"
        " AND ended_at > 0 AND ended_at < ?1 LIMIT ?2)",
    [W_PURGE] = "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE state = 'dead'"
                " AND ended_at > 0 LIMIT ?)",
};

typedef enum { S_TASK_NONE, S_TASK_EXPIRE, S_TASK_PURGE } s_task_t;

//  The thread's own state; nothing here is touched by the loop.
typedef struct {
    zsock_t *pipe;
    sqlite3 *db;
    sqlite3_stmt *stmt[W_STATEMENT_COUNT];
    store_fsync_t policy;
    char error[256];
    int wal_frames;               // frames in the WAL after the last commit
    int backfilled;               // of these, copied back to the database
    int tail_frames;              // wal_frames at the writer's last own checkpoint
    int64_t batch_ms;             // monotonic, when the last batch was done
    bool unsynced;                // committed since the last checkpoint began
    int64_t sync_due_ms;          // next once-a-second checkpoint
    zactor_t *checkpointer;       // its thread (s_checkpointer_actor)
    int checkpoints_out;          // requests it has not answered yet
    bool checkpoint_failing;      // the last checkpoint failed (logged once)
    int64_t checkpoint_retry_ms;  // not before this, after a failure
    s_task_t task;                // the long delete under way, if any
    double cutoff_results;        // expiry: ended before these times go
    double cutoff_dead;
    int64_t task_count;  // rows deleted so far by the task
} s_thread_t;

//  Runs a statement whose parameters are bound, and resets it. Returns 0,
//  or -1 with "what: reason" in self->error.
static int
s_run (s_thread_t *self, sqlite3_stmt *stmt, const char *what)
{
    int rc = writer_step (stmt);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        snprintf (self->error, sizeof self->error, "%s: %s", what,
                  sqlite3_errcode (self->db) != SQLITE_OK ? sqlite3_errmsg (self->db)
                                                          : sqlite3_errstr (rc));
    sqlite3_reset (stmt);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
}

//  Undoes the open transaction, if SQLite has not already.
static void
s_rollback (s_thread_t *self)
{
    if (sqlite3_get_autocommit (self->db))
        return;
    char first[256];
    snprintf (first, sizeof first, "%s", self->error);
    if (s_run (self, self->stmt[W_ROLLBACK], "rollback")) {
        char reason[256];
        snprintf (reason, sizeof reason, "%s", self->error);
        snprintf (self->error, sizeof self->error, "%.120s; %.120s", first, reason);
    }
    else
        snprintf (self->error, sizeof self->error, "%s", first);
}

static int
s_commit (s_thread_t *self)
{
    if (s_run (self, self->stmt[W_COMMIT], "commit")) {
        s_rollback (self);  // a failed COMMIT may leave it open
        return -1;
    }
    self->unsynced = true;
    return 0;
}

static void
s_bind_text (sqlite3_stmt *stmt, int column, const writer_batch_t *batch, size_t offset)
{
    const char *text = (const char *) s_at (batch, offset);
    if (text)
        sqlite3_bind_text (stmt, column, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null (stmt, column);
}

static void
s_bind_blob (sqlite3_stmt *stmt, int column, const writer_batch_t *batch, size_t offset,
             size_t size)
{
    const void *blob = s_at (batch, offset);
    if (blob)
        sqlite3_bind_blob (stmt, column, blob, (int) size, SQLITE_STATIC);
    else
        sqlite3_bind_null (stmt, column);
}

//  The submitted part of a row (insert, revive): parameters 1 to 6.
static void
s_bind_row (sqlite3_stmt *stmt, const writer_batch_t *batch, const s_op_t *op)
{
    sqlite3_bind_int64 (stmt, 1, op->seq);
    s_bind_text (stmt, 2, batch, op->text[0]);
    s_bind_text (stmt, 3, batch, op->text[1]);
    s_bind_text (stmt, 4, batch, op->text[2]);
    s_bind_blob (stmt, 5, batch, op->blob[0], op->blob_size[0]);
    s_bind_blob (stmt, 6, batch, op->blob[1], op->blob_size[1]);
}

static int
s_apply_op (s_thread_t *self, writer_batch_t *batch, const s_op_t *op)
{
    sqlite3_stmt *stmt;
    const char *state = store_state_name ((store_state_t) op->state);
    switch (op->type) {
        case S_OP_INSERT:
            stmt = self->stmt[W_INSERT];
            s_bind_row (stmt, batch, op);
            sqlite3_bind_text (stmt, 7, state, -1, SQLITE_STATIC);
            sqlite3_bind_int64 (stmt, 8, op->attempt);
            sqlite3_bind_int64 (stmt, 9, op->retries_left);
            sqlite3_bind_double (stmt, 10, op->run_at);
            sqlite3_bind_double (stmt, 11, op->created_at);
            if (s_run (self, stmt, "insert job"))
                return -1;
            if (sqlite3_changes (self->db) == 0
                && writer_batch_add_duplicate (batch, op->seq)) {
                snprintf (self->error, sizeof self->error, "insert job: out of memory");
                return -1;
            }
            return 0;
        case S_OP_REVIVE:
            stmt = self->stmt[W_REVIVE];
            s_bind_row (stmt, batch, op);
            sqlite3_bind_int64 (stmt, 7, op->attempt);
            sqlite3_bind_int64 (stmt, 8, op->retries_left);
            sqlite3_bind_double (stmt, 9, op->created_at);
            return s_run (self, stmt, "requeue dead job");
        case S_OP_DISPATCHED:
            stmt = self->stmt[W_DISPATCHED];
            sqlite3_bind_int64 (stmt, 1, op->attempt);
            sqlite3_bind_int64 (stmt, 2, (sqlite3_int64) op->epoch);
            sqlite3_bind_int64 (stmt, 3, op->seq);
            return s_run (self, stmt, "mark job running");
        case S_OP_WAITING:
            stmt = self->stmt[W_WAITING];
            sqlite3_bind_text (stmt, 1, state, -1, SQLITE_STATIC);
            sqlite3_bind_int64 (stmt, 2, op->retries_left);
            sqlite3_bind_double (stmt, 3, op->run_at);
            sqlite3_bind_int (stmt, 4, op->has_dispatch);
            sqlite3_bind_int64 (stmt, 5, op->attempt);
            sqlite3_bind_int64 (stmt, 6, (sqlite3_int64) op->epoch);
            sqlite3_bind_int64 (stmt, 7, op->seq);
            return s_run (self, stmt, "requeue job");
        case S_OP_ENDED:
            stmt = self->stmt[W_ENDED];
            sqlite3_bind_text (stmt, 1, state, -1, SQLITE_STATIC);
            s_bind_text (stmt, 2, batch, op->text[0]);
            s_bind_blob (stmt, 3, batch, op->blob[0], op->blob_size[0]);
            s_bind_text (stmt, 4, batch, op->text[1]);
            sqlite3_bind_double (stmt, 5, op->ended_at);
            sqlite3_bind_int (stmt, 6, op->state == STORE_DEAD);
            sqlite3_bind_int (stmt, 7, op->has_dispatch);
            sqlite3_bind_int64 (stmt, 8, op->attempt);
            sqlite3_bind_int64 (stmt, 9, (sqlite3_int64) op->epoch);
            sqlite3_bind_int64 (stmt, 10, op->seq);
            return s_run (self, stmt, "end job");
        case S_OP_META:
            stmt = self->stmt[W_META];
            s_bind_text (stmt, 1, batch, op->text[0]);
            sqlite3_bind_int64 (stmt, 2, op->seq);
            return s_run (self, stmt, "set meta");
    }
    return 0;
}

//  Runs a batch in one transaction; sets its rc and error.
static void
s_apply (s_thread_t *self, writer_batch_t *batch)
{
    batch->duplicate_count = 0;
    if (batch->doomed) {
        batch->rc = -1;  // its error says why
        return;
    }
    batch->rc = 0;
    batch->error[0] = 0;
    if (batch->count == 0)
        return;
    //  A 'guarantee' batch is on disk before its event, whatever the policy.
    bool raise = batch->sync && self->policy != STORE_FSYNC_ALWAYS;
    if (raise)
        s_run (self, self->stmt[W_SYNC_FULL], "sync");
    int rc = s_run (self, self->stmt[W_BEGIN], "begin");
    for (size_t i = 0; rc == 0 && i < batch->count; i++)
        rc = s_apply_op (self, batch, &batch->ops[i]);
    if (rc == 0)
        rc = s_commit (self);
    else
        s_rollback (self);
    if (raise)
        s_run (self, self->stmt[W_SYNC_POLICY], "sync");
    if (rc) {
        batch->rc = -1;
        snprintf (batch->error, sizeof batch->error, "%s", self->error);
    }
    for (int i = W_INSERT; i <= W_META; i++)
        sqlite3_clear_bindings (self->stmt[i]);
}

//  Runs one DELETE chunk whose other parameters are bound; the limit (-1:
//  none) is parameter limit_param. Returns the rows deleted or -1.
static int
s_delete_some (s_thread_t *self, sqlite3_stmt *stmt, int limit_param, sqlite3_int64 limit,
               const char *what)
{
    sqlite3_bind_int64 (stmt, limit_param, limit);
    if (s_run (self, stmt, what))
        return -1;
    return sqlite3_changes (self->db);
}

//  One chunk of the task under way, in a transaction of its own. Returns
//  1 if there is more to do, 0 if the task is done, -1 if it failed.
static int
s_task_chunk (s_thread_t *self)
{
    if (s_run (self, self->stmt[W_BEGIN], "begin"))
        return -1;
    int deleted = 0, rc = 0;
    bool more = false;
    if (self->task == S_TASK_EXPIRE) {
        sqlite3_int64 left = S_EXPIRE_CHUNK;
        sqlite3_stmt *stmt = self->stmt[W_EXPIRE];
        sqlite3_bind_double (stmt, 1, self->cutoff_results);
        int results = s_delete_some (self, stmt, 2, left, "expire results");
        if (results >= 0 && results < left) {
            left -= results;
            stmt = self->stmt[W_EXPIRE_DEAD];
            sqlite3_bind_double (stmt, 1, self->cutoff_dead);
            int dead = s_delete_some (self, stmt, 2, left, "expire dead jobs");
            deleted = dead < 0 ? -1 : results + dead;
            more = dead >= left;
        }
        else {
            deleted = results;
            more = results >= left;  // maybe: the next chunk finds out
        }
    }
    else {
        deleted = s_delete_some (self, self->stmt[W_PURGE], 1, S_PURGE_CHUNK,
                                 "purge dead jobs");
        more = deleted >= S_PURGE_CHUNK;
    }
    if (deleted < 0)
        rc = -1;
    else
        rc = s_commit (self);
    if (rc) {
        s_rollback (self);
        return -1;
    }
    self->task_count += deleted;
    return more ? 1 : 0;
}

static void
s_task_report (s_thread_t *self, int rc)
{
    writer_reply_task (self->pipe, self->task == S_TASK_PURGE, rc, self->task_count,
                       self->error);
    self->task = S_TASK_NONE;
}

//  A checkpoint's outcome (the checkpointer's, or the writer's own).
static void
s_checkpointed (s_thread_t *self, int rc, int log, int done, const char *error)
{
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
        //  Disk full, I/O error: said once; tried again each second.
        if (!self->checkpoint_failing)
            log_warning ("store: checkpoint failed: %s", error);
        self->checkpoint_failing = true;
        self->checkpoint_retry_ms = zclock_mono () + S_SYNC_INTERVAL_MS;
        return;
    }
    if (self->checkpoint_failing)
        log_info ("store: checkpoints work again");
    self->checkpoint_failing = false;
    //  The WAL may have been reset by then (the counts are -1 if so).
    if (log >= 0 && log <= self->wal_frames && done > self->backfilled)
        self->backfilled = done;
}

//  The writer's own checkpoint: what the checkpointer has not copied yet
//  (usually a few frames), so that the next commit can reuse the WAL from
//  its start. Between batches only.
static void
s_checkpoint_tail (s_thread_t *self)
{
    self->tail_frames = self->wal_frames;
    int log = -1, done = -1;
    int rc = sqlite3_wal_checkpoint_v2 (self->db, NULL, SQLITE_CHECKPOINT_PASSIVE, &log,
                                        &done);
    s_checkpointed (self, rc, log, done, sqlite3_errmsg (self->db));
}

//  The checkpointer answered.
static void
s_checkpoint_reply (s_thread_t *self)
{
    int rc = SQLITE_ERROR, log = -1, done = -1;
    char *error = NULL;
    if (zsock_recv (self->checkpointer, "iiis", &rc, &log, &done, &error) == 0) {
        self->checkpoints_out--;
        s_checkpointed (self, rc, log, done, error ? error : "");
    }
    free (error);
    if (self->checkpoints_out == 0 && self->wal_frames >= S_WAL_RESTART_FRAMES
        && self->wal_frames - self->backfilled < S_CHECKPOINT_FRAMES)
        s_checkpoint_tail (self);
}

//  Checkpoints that are due: asked of the checkpointer, which works beside
//  the writer (SQLite lets a checkpoint run while another connection
//  commits), so that batches never wait for one.
static void
s_housekeeping (s_thread_t *self)
{
    int64_t now = zclock_mono ();
    bool due = now >= self->sync_due_ms;
    if (due)
        self->sync_due_ms = now + S_SYNC_INTERVAL_MS;
    if (now < self->checkpoint_retry_ms)
        return;
    if (self->wal_frames >= S_WAL_MAX_FRAMES && self->checkpoints_out == 0) {
        s_checkpoint_tail (self);  // the checkpointer fell behind
        return;
    }
    //  Idle: the WAL is reused now rather than under load.
    if (self->checkpoints_out == 0 && self->wal_frames >= S_WAL_IDLE_FRAMES
        && self->wal_frames != self->tail_frames && now - self->batch_ms >= S_IDLE_MS
        && self->wal_frames - self->backfilled < S_CHECKPOINT_FRAMES) {
        s_checkpoint_tail (self);
        return;
    }
    bool grown = self->wal_frames - self->backfilled >= S_CHECKPOINT_FRAMES;
    if (self->checkpoints_out == 0 && (grown || (self->unsynced && due))) {
        if (zstr_send (self->checkpointer, "CHECKPOINT") == 0) {
            self->checkpoints_out++;
            self->unsynced = false;  // it syncs what is committed now
        }
    }
}

static int
s_on_wal (void *arg, sqlite3 *db, const char *name, int frames)
{
    (void) db;
    (void) name;
    s_thread_t *self = (s_thread_t *) arg;
    if (frames < self->wal_frames)
        self->backfilled = 0;  // the WAL was reused from its start
    self->wal_frames = frames;
    return SQLITE_OK;
}

//  Opens the thread's connection. Returns 0, or -1 with the reason in
//  self->error.
static int
s_thread_open (s_thread_t *self, const char *path)
{
    if (sqlite3_open_v2 (path, &self->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                         NULL)
        != SQLITE_OK) {
        snprintf (self->error, sizeof self->error, "cannot open %s: %s", path,
                  self->db ? sqlite3_errmsg (self->db) : "out of memory");
        return -1;
    }
    sqlite3_busy_timeout (self->db, 2000);
    const char *sync = self->policy == STORE_FSYNC_ALWAYS ? "PRAGMA synchronous = FULL"
                       : self->policy == STORE_FSYNC_EVERYSEC
                           ? "PRAGMA synchronous = NORMAL"
                           : "PRAGMA synchronous = OFF";
    char pragmas[256];
    //  Page cache and WAL bounds as docs/storage.md says; secure_delete
    //  FAST (Debian builds SQLite with it ON) zeroes deleted content only
    //  where that costs no extra page write.
    snprintf (pragmas, sizeof pragmas,
              "%s; PRAGMA cache_size = -2048; PRAGMA mmap_size = 0;"
              " PRAGMA journal_size_limit = %d; PRAGMA secure_delete = FAST",
              sync, S_WAL_LIMIT_BYTES);
    char *message = NULL;
    if (sqlite3_exec (self->db, pragmas, NULL, NULL, &message) != SQLITE_OK) {
        snprintf (self->error, sizeof self->error, "cannot set up %s: %s", path,
                  message ? message : sqlite3_errmsg (self->db));
        sqlite3_free (message);
        return -1;
    }
    //  Our hook replaces SQLite's autocheckpoint (which is one too).
    sqlite3_wal_hook (self->db, s_on_wal, self);
    for (int i = 0; i < W_STATEMENT_COUNT; i++) {
        const char *sql = i == W_SYNC_POLICY ? sync : s_sql[i];
        if (sqlite3_prepare_v3 (self->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                &self->stmt[i], NULL)
            != SQLITE_OK) {
            snprintf (self->error, sizeof self->error, "cannot prepare statement: %s",
                      sqlite3_errmsg (self->db));
            return -1;
        }
    }
    return 0;
}

static void
s_thread_close (s_thread_t *self)
{
    zactor_destroy (&self->checkpointer);
    for (int i = 0; i < W_STATEMENT_COUNT; i++)
        sqlite3_finalize (self->stmt[i]);
    if (self->db)
        sqlite3_close (self->db);
}

//  --------------------------------------------------------------------------
//  The checkpointer: a thread of the writer's with a connection of its own.
//  It copies the WAL back into the database (and syncs both files, which
//  is the everysec policy's sync) while the writer goes on committing; a
//  checkpoint takes 10 to 30 ms, which a batch never waits for.

typedef struct {
    const char *path;
    store_fsync_t policy;
    bool failed;  // could not start (reason in error)
    char error[256];
} s_checkpointer_args_t;

static void
s_checkpointer_actor (zsock_t *pipe, void *args)
{
    s_checkpointer_args_t *setup = (s_checkpointer_args_t *) args;
    sigset_t all;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, NULL);
    pthread_setname_np (pthread_self (), "emq-checkpoint");
    sqlite3 *db = NULL;
    //  The sync level is the policy's: it decides what a checkpoint syncs.
    const char *pragmas = setup->policy == STORE_FSYNC_ALWAYS
                              ? "PRAGMA synchronous = FULL; PRAGMA cache_size = -128"
                          : setup->policy == STORE_FSYNC_EVERYSEC
                              ? "PRAGMA synchronous = NORMAL; PRAGMA cache_size = -128"
                              : "PRAGMA synchronous = OFF; PRAGMA cache_size = -128";
    if (sqlite3_open_v2 (setup->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                         NULL)
            != SQLITE_OK
        || sqlite3_exec (db, pragmas, NULL, NULL, NULL) != SQLITE_OK) {
        setup->failed = true;
        snprintf (setup->error, sizeof setup->error, "cannot open %s: %s", setup->path,
                  db ? sqlite3_errmsg (db) : "out of memory");
        sqlite3_close (db);
        zsock_signal (pipe, 1);
        return;
    }
    sqlite3_busy_timeout (db, 2000);
    zsock_signal (pipe, 0);
    while (true) {
        char *command = zstr_recv (pipe);
        if (!command) {
            if (zmq_errno () == ETERM)
                break;
            continue;
        }
        bool stop = streq (command, "$TERM");
        if (!stop) {
            //  TRUNCATE (after a backlog drained): the WAL file is cut to
            //  nothing, and the memory given back.
            bool truncate = streq (command, "TRUNCATE");
            int log = -1, done = -1;
            int rc = sqlite3_wal_checkpoint_v2 (db, NULL,
                                                truncate ? SQLITE_CHECKPOINT_TRUNCATE
                                                         : SQLITE_CHECKPOINT_PASSIVE,
                                                &log, &done);
            if (truncate) {
                sqlite3_db_release_memory (db);
                malloc_trim (0);
            }
            zsock_send (pipe, "iiis", rc, log, done,
                        rc == SQLITE_OK ? "" : sqlite3_errmsg (db));
        }
        free (command);
        if (stop)
            break;
    }
    sqlite3_close (db);
}

struct writer_t {
    zactor_t *actor;
    writer_setup_t setup;  // what the thread starts from (it fills failed, error)
    size_t out;            // batches submitted whose event has not come
};

//  Handles one command from the loop. Returns false on $TERM.
static bool
s_thread_command (s_thread_t *self)
{
    char *command = NULL;
    void *ptr = NULL;
    zmsg_t *msg = zmsg_recv (self->pipe);
    if (!msg)
        return zmq_errno () != ETERM;  // else the context is gone
    command = zmsg_popstr (msg);
    bool go_on = true;
    if (!command || streq (command, "$TERM"))
        go_on = false;
    else if (streq (command, "BATCH")) {
        zframe_t *frame = zmsg_pop (msg);
        if (frame && zframe_size (frame) == sizeof ptr)
            memcpy (&ptr, zframe_data (frame), sizeof ptr);
        zframe_destroy (&frame);
        writer_batch_t *batch = (writer_batch_t *) ptr;
        assert (batch);
        s_apply (self, batch);
        //  Once sent, the batch is the loop's again: not to be read here.
        bool failed = batch->rc != 0;
        writer_reply_committed (self->pipe, batch);
        self->batch_ms = zclock_mono ();
        //  A failed commit may be a disk the WAL filled: reuse it.
        if (failed && self->checkpoints_out == 0 && self->wal_frames > 0
            && self->batch_ms >= self->checkpoint_retry_ms)
            s_checkpoint_tail (self);
    }
    else if (streq (command, "EXPIRE") || streq (command, "PURGE")) {
        if (streq (command, "EXPIRE")) {
            char *now = zmsg_popstr (msg), *results = zmsg_popstr (msg),
                 *dead = zmsg_popstr (msg);
            self->cutoff_results =
                atof (now ? now : "0") - atof (results ? results : "0");
            self->cutoff_dead = atof (now ? now : "0") - atof (dead ? dead : "0");
            free (now);
            free (results);
            free (dead);
        }
        //  A task already under way just goes on (the loop starts one at a
        //  time; this keeps a second request harmless).
        if (self->task == S_TASK_NONE) {
            self->task = streq (command, "EXPIRE") ? S_TASK_EXPIRE : S_TASK_PURGE;
            self->task_count = 0;
        }
    }
    else if (streq (command, "RELEASE")) {
        if (zstr_send (self->checkpointer, "TRUNCATE") == 0)
            self->checkpoints_out++;
        sqlite3_db_release_memory (self->db);
        malloc_trim (0);
    }
    free (command);
    zmsg_destroy (&msg);
    return go_on;
}

static void
s_writer_actor (zsock_t *pipe, void *args)
{
    writer_setup_t *writer = (writer_setup_t *) args;
    //  Signals are the loop's (SIGTERM stops the router, which then waits
    //  for this thread's last event): none may interrupt this thread.
    sigset_t all;
    sigfillset (&all);
    pthread_sigmask (SIG_BLOCK, &all, NULL);
    pthread_setname_np (pthread_self (), "emq-writer");  // for top -H, perf
    s_thread_t self = { .pipe = pipe, .policy = writer->policy };
    s_checkpointer_args_t args_c = { writer->location, writer->policy, false, "" };
    if (s_thread_open (&self, writer->location) == 0) {
        self.checkpointer = zactor_new (s_checkpointer_actor, &args_c);
        if (!self.checkpointer || args_c.failed)
            snprintf (self.error, sizeof self.error, "%s",
                      self.checkpointer ? args_c.error : "cannot start the checkpointer");
    }
    if (!self.checkpointer || args_c.failed) {
        //  The creator reads this once zactor_new returns.
        writer->failed = true;
        snprintf (writer->error, sizeof writer->error, "%s", self.error);
        s_thread_close (&self);
        zsock_signal (pipe, 1);
        return;
    }
    self.sync_due_ms = zclock_mono () + S_SYNC_INTERVAL_MS;
    zsock_signal (pipe, 0);
    zpoller_t *poller = zpoller_new (pipe, self.checkpointer, NULL);
    bool running = poller != NULL;
    //  SIGTERM sets zsys_interrupted for the whole process; the loop stops
    //  on it, and this thread must go on until it is told to ($TERM).
    if (poller)
        zpoller_set_nonstop (poller, true);
    while (running) {
        //  A task's chunks go between batches: look at the pipe without
        //  waiting, then do a chunk.
        int64_t now = zclock_mono (), wait = self.sync_due_ms - now;
        if (self.wal_frames >= S_WAL_IDLE_FRAMES && self.wal_frames != self.tail_frames
            && self.batch_ms + S_IDLE_MS - now < wait)
            wait = self.batch_ms + S_IDLE_MS - now;
        if (self.task != S_TASK_NONE)
            wait = 0;
        void *which = zpoller_wait (poller, (int) (wait > 0 ? wait : 0));
        if (which == pipe)
            running = s_thread_command (&self);
        else if (which == self.checkpointer)
            s_checkpoint_reply (&self);
        else if (zpoller_terminated (poller) && zmq_errno () == ETERM)
            running = false;  // the context is gone
        else if (self.task != S_TASK_NONE && !which) {
            int rc = s_task_chunk (&self);
            if (rc <= 0)
                s_task_report (&self, rc);
        }
        if (running)
            s_housekeeping (&self);
    }
    zpoller_destroy (&poller);
    s_thread_close (&self);
}

writer_t *
writer_start (zactor_fn *actor, const char *location, store_fsync_t policy, void *backend,
              char *err, size_t errlen)
{
    writer_t *self = (writer_t *) calloc (1, sizeof (writer_t));
    if (!self || !(self->setup.location = strdup (location))) {
        free (self);
        snprintf (err, errlen, "out of memory");
        return NULL;
    }
    self->setup.policy = policy;
    self->setup.backend = backend;
    self->actor = zactor_new (actor, &self->setup);
    if (!self->actor || self->setup.failed) {
        snprintf (err, errlen, "%s",
                  self->actor ? self->setup.error : "cannot start the writer");
        writer_destroy (&self);
        return NULL;
    }
    return self;
}

writer_t *
writer_new (const char *path, store_fsync_t policy, char *err, size_t errlen)
{
    if (sqlite3_threadsafe () == 0) {
        snprintf (err, errlen, "SQLite was built without thread support");
        return NULL;
    }
    return writer_start (s_writer_actor, path, policy, NULL, err, errlen);
}

void
writer_destroy (writer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    writer_t *self = *self_p;
    //  Batches still out come back before the thread stops; free them.
    while (self->actor && self->out > 0) {
        writer_event_t event;
        if (writer_recv (self, &event, -1))
            break;
        writer_batch_destroy (&event.batch);
    }
    zactor_destroy (&self->actor);
    free (self->setup.location);
    free (self);
    *self_p = NULL;
}

zsock_t *
writer_sock (writer_t *self)
{
    return zactor_sock (self->actor);
}

int
writer_submit (writer_t *self, writer_batch_t **batch_p)
{
    assert (batch_p && *batch_p);
    if (zsock_send (self->actor, "sp", "BATCH", *batch_p))
        return -1;
    self->out++;
    *batch_p = NULL;
    return 0;
}

int
writer_expire (writer_t *self, double now, double result_ttl_s, double dead_ttl_s)
{
    char a[32], b[32], c[32];
    snprintf (a, sizeof a, "%.6f", now);
    snprintf (b, sizeof b, "%.6f", result_ttl_s);
    snprintf (c, sizeof c, "%.6f", dead_ttl_s);
    return zstr_sendx (self->actor, "EXPIRE", a, b, c, NULL);
}

int
writer_purge_dead (writer_t *self)
{
    return zstr_send (self->actor, "PURGE");
}

int
writer_release_memory (writer_t *self)
{
    return zstr_send (self->actor, "RELEASE");
}

int
writer_recv (writer_t *self, writer_event_t *event, int timeout_ms)
{
    memset (event, 0, sizeof *event);
    zsock_t *sock = zactor_sock (self->actor);
    if (timeout_ms == 0) {
        if (!(zsock_events (sock) & ZMQ_POLLIN))
            return -1;
    }
    else if (timeout_ms > 0) {
        zpoller_t *poller = zpoller_new (sock, NULL);
        if (poller)
            zpoller_set_nonstop (poller, true);
        void *which = poller ? zpoller_wait (poller, timeout_ms) : NULL;
        zpoller_destroy (&poller);
        if (!which)
            return -1;
    }
    zmsg_t *msg = zmsg_recv (sock);
    //  A signal (a second SIGTERM while the router drains) is no reason to
    //  give up on an event that must come.
    while (!msg && timeout_ms == -1 && zmq_errno () == EINTR)
        msg = zmsg_recv (sock);
    if (!msg)
        return -1;
    char *type = zmsg_popstr (msg);
    int rc = -1;
    if (type && streq (type, "COMMITTED")) {
        zframe_t *frame = zmsg_pop (msg);
        if (frame && zframe_size (frame) == sizeof (void *)) {
            event->type = WRITER_COMMITTED;
            memcpy (&event->batch, zframe_data (frame), sizeof (void *));
            event->rc = event->batch->rc;
            snprintf (event->error, sizeof event->error, "%s", event->batch->error);
            self->out--;
            rc = 0;
        }
        zframe_destroy (&frame);
    }
    else if (type && (streq (type, "EXPIRED") || streq (type, "PURGED"))) {
        event->type = streq (type, "EXPIRED") ? WRITER_EXPIRED : WRITER_PURGED;
        char *status = zmsg_popstr (msg), *count = zmsg_popstr (msg),
             *error = zmsg_popstr (msg);
        event->rc = status ? atoi (status) : -1;
        event->count = count ? strtoll (count, NULL, 10) : 0;
        snprintf (event->error, sizeof event->error, "%s", error ? error : "");
        free (status);
        free (count);
        free (error);
        rc = 0;
    }
    free (type);
    zmsg_destroy (&msg);
    return rc;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"
#include <unistd.h>

//  Statements starting with s_fail_prefix fail (as on a full disk); a
//  COMMIT takes s_commit_ms longer (a slow disk). Set by the test thread
//  before it submits, read by the writer's.
static const char *s_fail_prefix;
static int s_commit_ms;

static int
s_test_step (sqlite3_stmt *stmt)
{
    const char *sql = sqlite3_sql (stmt);
    if (s_fail_prefix && sql && strncmp (sql, s_fail_prefix, strlen (s_fail_prefix)) == 0)
        return SQLITE_FULL;
    if (s_commit_ms && sql && streq (sql, "COMMIT"))
        zclock_sleep (s_commit_ms);
    return sqlite3_step (stmt);
}

static int64_t
s_test_count (sqlite3 *db, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    int64_t value = -1;
    if (sqlite3_prepare_v2 (db, sql, -1, &stmt, NULL) == SQLITE_OK
        && sqlite3_step (stmt) == SQLITE_ROW)
        value = sqlite3_column_int64 (stmt, 0);
    sqlite3_finalize (stmt);
    return value;
}

static void
s_test_record (int64_t seq, const writer_dispatch_t *dispatch, void *arg)
{
    CHECK_UEQ (dispatch->epoch, 99);
    *(int64_t *) arg = seq;
}

static writer_batch_t *
s_test_batch (int64_t first, int count, const char *prefix)
{
    writer_batch_t *batch = writer_batch_new ();
    for (int i = 0; i < count; i++) {
        char msgid[32];
        snprintf (msgid, sizeof msgid, "%s%d", prefix, i);
        store_row_t row = { .msgid = msgid,
                            .queue = "q",
                            .headers = "h",
                            .payload = "pay",
                            .payload_size = 3,
                            .state = STORE_QUEUED,
                            .created_at = 1 };
        CHECK_EQ (writer_batch_insert (batch, first + i, &row), 0);
    }
    return batch;
}

static writer_event_t
s_test_event (writer_t *writer)
{
    writer_event_t event;
    CHECK_EQ (writer_recv (writer, &event, 10000), 0);
    return event;
}

void
writer_test (bool verbose)
{
    if (verbose)
        printf (" * writer: ");
    char dir[] = "/tmp/emq-writer-test-XXXXXX";
    CHECK (mkdtemp (dir) != NULL);
    char path[256], err[256];
    snprintf (path, sizeof path, "%s/jobs.db", dir);
    //  The store lays the tables out; the writer only writes rows.
    store_t *store = store_open (path, STORE_FSYNC_EVERYSEC, err, sizeof err);
    CHECK (store != NULL);
    store_close (&store);
    writer_t *writer = writer_new (path, STORE_FSYNC_EVERYSEC, err, sizeof err);
    CHECK (writer != NULL);
    if (!writer)
        return;
    sqlite3 *db = NULL;
    CHECK_EQ (sqlite3_open (path, &db), SQLITE_OK);

    //  A batch grows past its first buffer (big payloads, many changes) and
    //  keeps every byte.
    writer_batch_t *big = writer_batch_new ();
    static char payload[100 * 1024];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (char) i;
    for (int i = 0; i < 600; i++) {
        char msgid[32];
        snprintf (msgid, sizeof msgid, "big%d", i);
        store_row_t row = { .msgid = msgid,
                            .queue = "q",
                            .headers = "",
                            .payload = payload,
                            .payload_size = i < 3 ? sizeof payload : 10,
                            .client = "\0id",
                            .client_size = 3,
                            .state = STORE_SCHEDULED,
                            .run_at = 5,
                            .created_at = 1 };
        CHECK_EQ (writer_batch_insert (big, 1000 + i, &row), 0);
    }
    CHECK_EQ (writer_batch_size (big), 600);
    writer_batch_t *sent = big;
    CHECK_EQ (writer_submit (writer, &big), 0);
    CHECK (big == NULL);
    writer_event_t event = s_test_event (writer);
    CHECK (event.type == WRITER_COMMITTED && event.batch == sent && event.rc == 0);
    CHECK_EQ (s_test_count (db, "SELECT count(*) FROM jobs WHERE state = 'scheduled'"),
              600);
    CHECK_EQ (s_test_count (db, "SELECT length (payload) FROM jobs WHERE seq = 1002"),
              (int64_t) sizeof payload);
    CHECK_EQ (s_test_count (db,
                            "SELECT count(*) FROM jobs WHERE seq = 1002 AND"
                            " substr (payload, 1001, 1) = x'e8' AND client = x'006964'"),
              1);
    writer_batch_reset (event.batch);  // memory a burst took goes back
    CHECK_EQ (writer_batch_size (event.batch), 0);
    writer_batch_destroy (&event.batch);

    //  Batches come back in the order they went, each committed whole; an
    //  insert of a msgid stored already is reported, not written.
    writer_batch_t *first = s_test_batch (1, 3, "a"), *second = s_test_batch (4, 2, "b");
    store_row_t again = { .msgid = "a0",
                          .queue = "q",
                          .headers = "",
                          .payload = "",
                          .state = STORE_QUEUED,
                          .created_at = 1 };
    CHECK_EQ (writer_batch_insert (second, 6, &again), 0);
    writer_dispatch_t dispatch = { 1, 99 };
    CHECK_EQ (
        writer_batch_ended (second, 1, STORE_DONE, "ok", "42", 2, "u", 7, &dispatch), 0);
    CHECK_EQ (writer_batch_meta (second, "fence", 12), 0);
    writer_batch_t *a = first, *b = second;
    CHECK_EQ (writer_submit (writer, &first), 0);
    CHECK_EQ (writer_submit (writer, &second), 0);
    event = s_test_event (writer);
    CHECK (event.batch == a && event.rc == 0);
    CHECK (!writer_batch_duplicate (a, 1));
    writer_batch_destroy (&event.batch);
    event = s_test_event (writer);
    CHECK (event.batch == b && event.rc == 0);
    CHECK (writer_batch_duplicate (b, 6));
    CHECK (!writer_batch_duplicate (b, 4));
    writer_batch_destroy (&event.batch);
    CHECK_EQ (s_test_count (db, "SELECT count(*) FROM jobs WHERE seq BETWEEN 1 AND 6"),
              5);
    CHECK_EQ (s_test_count (db, "SELECT attempt * 1000 + epoch FROM jobs WHERE seq = 1"
                                " AND state = 'done' AND payload = x''"),
              1099);
    CHECK_EQ (s_test_count (db, "SELECT value FROM meta WHERE key = 'fence'"), 12);

    //  A failed change fails its batch: rolled back, the error says which
    //  change; the next batch is written.
    writer_step = s_test_step;
    s_fail_prefix = "UPDATE jobs SET state = 'running'";
    writer_batch_t *failing = s_test_batch (10, 2, "c");
    CHECK_EQ (writer_batch_dispatched (failing, 4, &dispatch), 0);
    CHECK_EQ (writer_submit (writer, &failing), 0);
    event = s_test_event (writer);
    CHECK (event.rc == -1);
    CHECK_CONTAINS (event.error, "mark job running");
    CHECK_CONTAINS (writer_batch_error (event.batch), "full");
    //  Its dispatches can be had back (the store records them again).
    int64_t seen_seq = 0;
    writer_batch_dispatches (event.batch, s_test_record, &seen_seq);
    CHECK_EQ (seen_seq, 4);
    writer_batch_destroy (&event.batch);
    s_fail_prefix = NULL;
    CHECK_EQ (s_test_count (db, "SELECT count(*) FROM jobs WHERE seq IN (10, 11)"), 0);
    //  A failed COMMIT too; and a batch made to fail without being run.
    s_fail_prefix = "COMMIT";
    failing = s_test_batch (10, 2, "c");
    CHECK_EQ (writer_submit (writer, &failing), 0);
    event = s_test_event (writer);
    CHECK (event.rc == -1);
    CHECK_CONTAINS (event.error, "commit");
    writer_batch_destroy (&event.batch);
    s_fail_prefix = NULL;
    failing = s_test_batch (10, 2, "c");
    writer_batch_fail (failing, "insert job: out of memory");
    CHECK_EQ (writer_submit (writer, &failing), 0);
    event = s_test_event (writer);
    CHECK (event.rc == -1);
    CHECK_STREQ (event.error, "insert job: out of memory");
    writer_batch_destroy (&event.batch);
    CHECK_EQ (s_test_count (db, "SELECT count(*) FROM jobs WHERE seq IN (10, 11)"), 0);

    //  A slow commit (a slow disk) holds the writer only: the submit returns
    //  at once, the event comes when the commit is done.
    s_commit_ms = 300;
    writer_batch_t *slow = s_test_batch (20, 1, "d");
    int64_t start = zclock_mono ();
    CHECK_EQ (writer_submit (writer, &slow), 0);
    CHECK (zclock_mono () - start < 100);
    CHECK_EQ (writer_recv (writer, &event, 0), -1);  // not yet
    event = s_test_event (writer);
    CHECK (zclock_mono () - start >= 300);
    CHECK (event.rc == 0);
    writer_batch_destroy (&event.batch);
    s_commit_ms = 0;
    writer_step = sqlite3_step;

    //  Long deletes are chunked: a batch submitted after a purge of 12,000
    //  dead rows is committed before the purge ends.
    writer_batch_t *dead = writer_batch_new ();
    for (int i = 0; i < 12000; i++) {
        char msgid[32];
        snprintf (msgid, sizeof msgid, "dead%d", i);
        store_row_t row = { .msgid = msgid,
                            .queue = "q",
                            .headers = "",
                            .payload = "",
                            .state = STORE_QUEUED,
                            .created_at = 1 };
        writer_batch_insert (dead, 100000 + i, &row);
        writer_batch_ended (dead, 100000 + i, STORE_DEAD, "failed", "x", 1, "", 50 + i,
                            NULL);
    }
    CHECK_EQ (writer_submit (writer, &dead), 0);
    event = s_test_event (writer);
    CHECK (event.rc == 0);
    writer_batch_destroy (&event.batch);
    CHECK_EQ (writer_purge_dead (writer), 0);
    writer_batch_t *during = s_test_batch (30, 1, "e");
    CHECK_EQ (writer_submit (writer, &during), 0);
    event = s_test_event (writer);
    CHECK (event.type == WRITER_COMMITTED && event.rc == 0);
    writer_batch_destroy (&event.batch);
    event = s_test_event (writer);
    CHECK (event.type == WRITER_PURGED && event.rc == 0);
    CHECK_EQ (event.count, 12000);
    //  Expiry: done rows ended before now - ttl go.
    CHECK_EQ (writer_expire (writer, 10, 2, 1e9), 0);  // "a0" ended at 7
    event = s_test_event (writer);
    CHECK (event.type == WRITER_EXPIRED && event.rc == 0);
    CHECK_EQ (event.count, 1);
    CHECK_EQ (writer_release_memory (writer), 0);

    //  A batch still out when the writer goes is given back and freed.
    writer_batch_t *last = s_test_batch (40, 1, "f");
    CHECK_EQ (writer_submit (writer, &last), 0);
    writer_destroy (&writer);
    CHECK (writer == NULL);
    CHECK_EQ (s_test_count (db, "SELECT count(*) FROM jobs WHERE seq = 40"), 1);
    sqlite3_close (db);

    //  A database the writer cannot open is refused with a clear error.
    writer = writer_new ("/nonexistent/dir/x.db", STORE_FSYNC_OFF, err, sizeof err);
    CHECK (writer == NULL);
    CHECK_CONTAINS (err, "/nonexistent/dir/x.db");
    char file[300];
    const char *suffixes[] = { "", "-wal", "-shm" };
    for (int i = 0; i < 3; i++) {
        snprintf (file, sizeof file, "%s%s", path, suffixes[i]);
        unlink (file);
    }
    rmdir (dir);
    if (verbose)
        printf ("OK\n");
}
