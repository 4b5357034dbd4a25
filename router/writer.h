/*  writer — the store's writing thread: applies batches of job-row changes
    to the SQLite database, one transaction per batch, away from the
    router's loop. Another backend's thread (store_pg.c) speaks the same
    protocol over the same writer_t (writer_start, below) and reads the
    same batches (writer_batch_op).

    The loop builds a batch (writer_batch_*), hands it over (writer_submit
    takes it), keeps serving, and learns that the batch is committed (or
    that it failed) from an event on writer_sock(), a socket its zloop
    polls; the event gives the batch back. The thread has its own SQLite
    connection; the loop keeps another one for its reads (store.c), which
    see a batch's rows once its event has come. Syncs (the everysec
    policy's, a 'guarantee' batch's) and checkpoints run on this side too,
    so no fsync ever runs on the loop. Long deletes (expiry of results and
    dead jobs, dead purge) are tasks the thread works through in chunks
    between batches, reporting a total when done.

    A batch is the only thing that crosses between the threads, and it is
    owned by one side at a time: the loop while it builds it and after its
    event, the thread from writer_submit to the event.
*/
#ifndef EMQ_ROUTER_WRITER_H
#define EMQ_ROUTER_WRITER_H

#include <czmq.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "store.h"

typedef struct writer_t writer_t;
typedef struct writer_batch_t writer_batch_t;

//  A dispatch to record with a row's next change (attempt, fencing token).
typedef struct {
    uint32_t attempt;
    uint64_t epoch;
} writer_dispatch_t;

//  --------------------------------------------------------------------------
//  Batches (built and read on the loop's side)

//  An empty batch; NULL if out of memory.
writer_batch_t *writer_batch_new (void);
void writer_batch_destroy (writer_batch_t **self_p);
//  Empties a batch for reuse (after its event). Memory a burst made it
//  take beyond a few hundred KiB is given back.
void writer_batch_reset (writer_batch_t *self);
//  Number of changes in the batch.
size_t writer_batch_size (writer_batch_t *self);
//  Asks for the batch to be synced to disk before its event, whatever the
//  fsync policy (a job with the 'guarantee' header is in it).
void writer_batch_set_sync (writer_batch_t *self, bool sync);

//  Makes the batch fail as a whole when it is run, with reason (a change
//  could not be recorded in it).
void writer_batch_fail (writer_batch_t *self, const char *reason);

//  The changes. Strings and buffers are copied into the batch. Each
//  returns 0, or -1 if out of memory (the batch is unchanged). insert
//  stores a new row with key seq unless its msgid is stored already
//  (writer_batch_duplicate tells, after the event); revive puts a dead
//  row back in the queue, inserting it again if it was deleted meanwhile.
//  dispatch (NULL: none) is recorded with the change.
int writer_batch_insert (writer_batch_t *self, int64_t seq, const store_row_t *row);
int writer_batch_revive (writer_batch_t *self, const store_row_t *row,
                         uint32_t retries_left);
int writer_batch_dispatched (writer_batch_t *self, int64_t seq,
                             const writer_dispatch_t *dispatch);
int writer_batch_waiting (writer_batch_t *self, int64_t seq, store_state_t state,
                          uint32_t retries_left, double run_at,
                          const writer_dispatch_t *dispatch);
int writer_batch_ended (writer_batch_t *self, int64_t seq, store_state_t state,
                        const char *status, const void *result, size_t result_size,
                        const char *usage, double ended_at,
                        const writer_dispatch_t *dispatch);
int writer_batch_meta (writer_batch_t *self, const char *key, int64_t value);

//  After the event: 0 if the batch is committed, -1 if it failed (rolled
//  back: none of it was kept) with the reason in writer_batch_error.
int writer_batch_status (writer_batch_t *self);
const char *writer_batch_error (writer_batch_t *self);
//  After a committed batch: true if the row it inserted under seq was not
//  stored because its msgid already was.
bool writer_batch_duplicate (writer_batch_t *self, int64_t seq);
//  Calls fn for each dispatch the batch records (a failed batch's are
//  recorded again by the store).
typedef void (writer_dispatch_fn) (int64_t seq, const writer_dispatch_t *dispatch,
                                   void *arg);
void writer_batch_dispatches (writer_batch_t *self, writer_dispatch_fn *fn, void *arg);

//  What another backend's thread reads of a batch (store_pg.c): its
//  changes one by one, whether it must be synced, whether it must fail.
typedef enum {
    WRITER_OP_INSERT,
    WRITER_OP_REVIVE,
    WRITER_OP_DISPATCHED,
    WRITER_OP_WAITING,
    WRITER_OP_ENDED,
    WRITER_OP_META
} writer_op_type_t;

typedef struct {
    writer_op_type_t type;
    int64_t seq;
    store_state_t state;  // the row moves to
    bool has_dispatch;    // attempt and epoch are to be written
    uint32_t attempt;
    uint64_t epoch;
    uint32_t retries_left;
    double run_at, created_at, ended_at;
    const char *msgid, *queue, *headers;  // insert, revive
    const void *payload, *client;
    size_t payload_size, client_size;
    const char *status, *usage;  // ended
    const void *result;
    size_t result_size;
    const char *key;  // meta
    int64_t value;
} writer_op_t;

bool writer_batch_wants_sync (const writer_batch_t *self);
bool writer_batch_doomed (const writer_batch_t *self);
//  The change at index (< writer_batch_size); pointers into the batch.
void writer_batch_op (const writer_batch_t *self, size_t index, writer_op_t *op);
//  Before a batch is run: no duplicates yet; rc -1 if it is doomed.
void writer_batch_begin_run (writer_batch_t *self);
//  An insert found its msgid stored already. Returns -1 if out of memory.
int writer_batch_add_duplicate (writer_batch_t *self, int64_t seq);
//  The batch's outcome: rc 0 (committed) or -1 with the reason.
void writer_batch_settle (writer_batch_t *self, int rc, const char *error);

//  --------------------------------------------------------------------------
//  The thread

//  A backend's thread is a zactor whose args is a writer_setup_t. It
//  signals 0 on its pipe once it runs, or sets failed and error and
//  signals 1. It then takes these commands on its pipe, and answers
//  with writer_reply_committed / writer_reply_task:
//      "BATCH" <pointer>           -> "COMMITTED" <pointer> (the batch settled)
//      "EXPIRE" now result_ttl dead_ttl  -> "EXPIRED" rc count error
//      "PURGE"                     -> "PURGED" rc count error
//      "RELEASE"                   (give memory back; no answer)
//      "$TERM"                     (stop)
typedef struct {
    char *location;  // the SQLite file, or a PostgreSQL connection string
    store_fsync_t policy;
    void *backend;  // the backend's own (store_pg.c: the lease), or NULL
    bool failed;
    char error[256];
} writer_setup_t;

int writer_reply_committed (zsock_t *pipe, writer_batch_t *batch);
int writer_reply_task (zsock_t *pipe, bool purge, int rc, int64_t count,
                       const char *error);
//  Starts a backend's thread (actor) on location.
writer_t *writer_start (zactor_fn *actor, const char *location, store_fsync_t policy,
                        void *backend, char *err, size_t errlen);

//  Starts the thread on the database at path (the store has created its
//  tables). Returns NULL with the reason in err.
writer_t *writer_new (const char *path, store_fsync_t policy, char *err, size_t errlen);
//  Waits for batches still out, stops the thread, closes its connection.
void writer_destroy (writer_t **self_p);
//  Readable when an event is waiting (for zloop_reader or a poller).
zsock_t *writer_sock (writer_t *self);

//  Hands a batch over; the caller's pointer is nulled. Returns 0, or -1
//  (the batch stays the caller's) if it could not be sent.
int writer_submit (writer_t *self, writer_batch_t **batch_p);
//  Starts deleting ended jobs past their retention (done, failed and
//  cancelled ones ended before now - result_ttl_s, dead ones before now -
//  dead_ttl_s), or every dead job. Ends with a WRITER_EXPIRED or
//  WRITER_PURGED event. Returns 0, or -1 if it could not be sent.
int writer_expire (writer_t *self, double now, double result_ttl_s, double dead_ttl_s);
int writer_purge_dead (writer_t *self);
//  Asks the thread to give its page cache back and to truncate the WAL.
int writer_release_memory (writer_t *self);

typedef enum { WRITER_COMMITTED, WRITER_EXPIRED, WRITER_PURGED } writer_event_type_t;

typedef struct {
    writer_event_type_t type;
    writer_batch_t *batch;  // WRITER_COMMITTED: the batch, the caller's again
    int rc;                 // 0, or -1: failed (reason in error)
    int64_t count;          // rows deleted
    char error[256];
} writer_event_t;

//  Takes the next event, waiting at most timeout_ms (0: do not wait, -1:
//  forever). Returns 0, or -1 if none came.
int writer_recv (writer_t *self, writer_event_t *event, int timeout_ms);

//  Fault injection for tests: every statement the thread runs goes through
//  this (sqlite3_step by default). A test may point it at a function that
//  fails or waits, before it submits the batch that should see it.
typedef int (writer_step_fn) (sqlite3_stmt *stmt);
extern writer_step_fn *writer_step;

void writer_test (bool verbose);

#endif
