/*  store — the router's durable job table: in SQLite (WAL mode), or in
    PostgreSQL (store_pg.h; the same promises, and what this comment says
    of SQLite's syncs maps to synchronous_commit there: docs/storage.md).

    Every accepted job is a row; its state moves queued -> running -> done |
    failed | dead | cancelled, or to scheduled (delayed, or waiting for a
    retry's backoff). Ended jobs stay as results until they expire.

    Writes go into the open batch; the router hands it to the writer thread
    (store_submit, router/writer.h) once per loop turn while no batch is
    out, and goes on serving. The batch's COMMIT event, on store_sock(),
    says it is committed or failed: ACKs for its jobs go out only then
    (group commit: a batch holds whatever the loop wrote while the previous
    one was being committed). The fsync policy decides what a commit costs
    and what a power loss can take (docs/storage.md):
        always    synchronous=FULL: every commit is on disk before its event
        everysec  synchronous=NORMAL, the WAL synced each second
        off       synchronous=OFF: the OS decides
    None of these syncs, and no checkpoint, runs on the router's loop.

    A dispatch is not written with the next batch: it waits (in memory) for
    the job's next change, and goes into that change's row update (a job
    that ends within S_DISPATCH_DEFER_MS never has its own dispatch write);
    a job that runs longer gets it written then, so that after a restart
    its epoch can still end it (docs/storage.md, Restart).

    Reads (load, fetch, the dead list, counts) run on the loop's own
    connection and see committed batches only; the router keeps what a
    batch on its way holds in memory (an ended job stays JOB_ENDED until
    its end is committed).

    A path of ":memory:" is the in-memory mode: job rows are not written at
    all (the router's own structures hold what is in flight), so results
    of ended jobs and dead jobs are not kept; only the meta table is; there
    is no writer thread, and a batch is settled at once.
*/
#ifndef EMQ_ROUTER_STORE_H
#define EMQ_ROUTER_STORE_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { STORE_FSYNC_ALWAYS, STORE_FSYNC_EVERYSEC, STORE_FSYNC_OFF } store_fsync_t;

//  Row states, as stored in the 'state' column.
typedef enum {
    STORE_QUEUED,
    STORE_RUNNING,
    STORE_SCHEDULED,
    STORE_DONE,
    STORE_FAILED,
    STORE_DEAD,
    STORE_CANCELLED,
    STORE_STATE_COUNT
} store_state_t;

typedef struct store_t store_t;

//  A job row as loaded or fetched. Pointers are owned by the store and
//  valid only during the callback or until the next call.
typedef struct {
    int64_t seq;  // the row's key (submission order)
    const char *msgid;
    const char *queue;
    const char *headers;
    const void *payload;
    size_t payload_size;
    const void *client;  // submitter's routing id, may be NULL
    size_t client_size;
    store_state_t state;
    uint32_t attempt;
    uint32_t retries_left;
    double run_at;  // unix seconds (scheduled), else 0
    double created_at;
    double ended_at;     // 0 while not ended
    const char *status;  // outcome status name, or NULL
    const void *result;  // value or error text, may be NULL
    size_t result_size;
    const char *usage;
    uint64_t epoch;  // the latest dispatch's fencing token, or 0
} store_row_t;

typedef int (store_row_fn) (const store_row_t *row, void *arg);

const char *store_state_name (store_state_t state);
int store_fsync_parse (const char *name, store_fsync_t *policy);

//  The backends (docs/storage.md): SQLite (a file, or ":memory:") and
//  PostgreSQL (router/store_pg.h). Only the open and STATUS know which.
typedef enum { STORE_SQLITE, STORE_POSTGRESQL } store_backend_t;
int store_backend_parse (const char *name, store_backend_t *backend);

//  Opens (creating if needed) the database at path. Returns NULL with the
//  reason in err.
store_t *store_open (const char *path, store_fsync_t policy, char *err, size_t errlen);
//  Several routers on one PostgreSQL database: one leads (docs/storage.md).
typedef struct {
    double lease_ttl_s;  // the leader's lease (default 10 s)
    bool standby;        // wait for the lead instead of failing to open
    const char *addrs;   // JSON {"frontend":..,"backend":..,"admin":..}, or NULL
} store_lead_t;

//  Another router on the same database (PostgreSQL), as it last wrote its
//  row: a standby waiting for the lead, or a leader that is gone.
typedef struct {
    const char *holder;  // as the leader row would name it ("HOST pid PID #N")
    const char *role;    // "standby" or "leader"
    const char *addrs;   // JSON text, as that router wrote it (untrusted)
    int64_t pid;
    const char *host;
    double seen_ago_s;  // since it last wrote its row, on the database's clock
} store_router_t;
typedef void (store_router_fn) (const store_router_t *router, void *arg);

//  The same on a backend: location is the SQLite path or a libpq connection
//  string; lead (NULL: the defaults) is PostgreSQL's only.
store_t *store_open_backend (store_backend_t backend, const char *location,
                             store_fsync_t policy, const store_lead_t *lead, char *err,
                             size_t errlen);
//  False once this router must not act any more: another router took the
//  lead of the database, or its lease ran out. Always true on SQLite (its
//  one router per directory is the data directory's lock).
bool store_leading (store_t *self);
//  Why not, once store_leading is false; and the lead's epoch (0: SQLite).
const char *store_lead_lost (store_t *self);
int64_t store_lead_epoch (store_t *self);
//  This router as the leader row names it ("HOST pid PID #N"), and when it
//  took the lead (unix seconds); NULL and 0 on SQLite.
const char *store_lead_holder (store_t *self);
double store_lead_since (store_t *self);
//  The other routers of the database seen lately (its standbys), each
//  passed to fn (borrowed for the call). Returns how many (0 on SQLite), or
//  -1 with the reason in store_error().
int store_routers (store_t *self, store_router_fn *fn, void *arg);
//  "memory", "sqlite" or "postgresql"; and where: the file, or "database
//  NAME on HOST:PORT" (never a password).
const char *store_kind (store_t *self);
const char *store_where (store_t *self);
void store_close (store_t **self_p);
bool store_is_memory (store_t *self);

//  Writes. Each joins the open batch and returns 0, or -1 if out of
//  memory (reason in store_error()). Nothing is written before the batch
//  is submitted and committed. insert sets *seq to the new row's key,
//  which the other writes take; whether its msgid was stored already is
//  known after the commit (store_was_duplicate). The strings and buffers
//  are copied. set_ended's ended_at must be > 0. revive puts a dead job's
//  row (as read) back in its queue with retries_left, writing it again if
//  a purge or expiry deleted it since it was read.
int store_insert (store_t *self, const store_row_t *row, int64_t *seq);
int store_set_dispatched (store_t *self, int64_t seq, uint32_t attempt, uint64_t epoch);
int store_set_waiting (store_t *self, int64_t seq, store_state_t state,
                       uint32_t retries_left, double run_at);
int store_set_ended (store_t *self, int64_t seq, store_state_t state, const char *status,
                     const void *result, size_t result_size, const char *usage,
                     double ended_at);
int store_revive (store_t *self, const store_row_t *row, uint32_t retries_left);

//  Puts every dispatch still held back into the open batch (before a
//  graceful stop: the jobs running now keep their epoch across a restart).
void store_write_dispatches (store_t *self);
//  True if the open batch holds writes (or a dispatch waited long enough
//  to be written).
bool store_has_writes (store_t *self);
//  Hands the open batch to the writer; sync asks for it to be on disk
//  before its event whatever the policy (a 'guarantee' job). Returns 0:
//  its STORE_EV_COMMIT event follows; 1: nothing needs writing (in-memory
//  mode), it counts as committed now; -1: a batch is still out (submit
//  after its event) or it could not be sent (reason in store_error()).
int store_submit (store_t *self, bool sync);
//  True while a submitted batch's event has not been received.
bool store_busy (store_t *self);
//  The socket an event arrives on (for zloop_reader); NULL in memory mode.
zsock_t *store_sock (store_t *self);

typedef enum {
    STORE_EV_COMMIT,   // the batch out is committed (rc 0) or failed
    STORE_EV_EXPIRED,  // store_expire is done: count rows deleted
    STORE_EV_PURGED    // store_purge_dead is done: count rows deleted
} store_event_type_t;

typedef struct {
    store_event_type_t type;
    int rc;  // 0, or -1: failed (reason in store_error())
    int64_t count;
} store_event_t;

//  Takes the next event, waiting at most timeout_ms (0: not at all, -1:
//  forever). Returns 0, or -1 if none came. After a COMMIT event, until
//  the next one, store_was_duplicate answers for its batch's inserts.
int store_recv (store_t *self, store_event_t *event, int timeout_ms);
bool store_was_duplicate (store_t *self, int64_t seq);
//  Read-your-writes: store_barrier is the number of the batch that holds
//  (or will hold) every write made so far, store_settled the number of the
//  last batch whose event was received; a read that must see those writes
//  waits until settled >= barrier.
uint64_t store_barrier (store_t *self);
uint64_t store_settled (store_t *self);
const char *store_error (store_t *self);

//  Calls fn for every queued, running and scheduled job in submission
//  order (a scan of the table: start-up only). A non-zero return from fn
//  stops and is returned.
int store_load (store_t *self, store_row_fn *fn, void *arg);
//  Calls fn with one job's row; returns 1 if found, 0 if not, -1 on error.
int store_fetch (store_t *self, const char *msgid, store_row_fn *fn, void *arg);

//  A position in the list of dead jobs (newest first). Zeroed, it is the
//  start of the list.
typedef struct {
    double ended_at;  // of the last row visited; 0 = start
    int64_t seq;
} store_cursor_t;

//  Calls fn for at most limit (0 = all) dead jobs after *cursor, newest
//  first, and moves *cursor past the last one. Returns the number of rows
//  visited (fewer than limit: the list is done), fn's first non-zero result
//  (which stops), or -1 on error. Pages are stable while rows change: a row
//  that fn revives or deletes does not shift the next page, so a large
//  `dead retry --all` can be done one page per loop turn.
int store_list_dead_page (store_t *self, store_cursor_t *cursor, size_t limit,
                          store_row_fn *fn, void *arg);
//  The first page: dead jobs, newest first, at most limit (0 = all).
int store_list_dead (store_t *self, size_t limit, store_row_fn *fn, void *arg);

//  Starts deleting ended jobs past their retention: done, failed and
//  cancelled ones ended before now - result_ttl_s, dead ones before now -
//  dead_ttl_s; or every dead job. The writer does it in chunks between
//  batches (a chunk of 2,000 rows costs about 10 ms there, nothing on the
//  loop) and reports the total with a STORE_EV_EXPIRED or STORE_EV_PURGED
//  event. Returns 0; 1 in memory mode (nothing to delete, no event); -1 if
//  it could not be started.
int store_expire (store_t *self, double now, double result_ttl_s, double dead_ttl_s);
int store_purge_dead (store_t *self);
//  A small key/value table for the router's own state (the schedulers'
//  fencing token). get returns 0 and sets *value, 1 if absent, -1 on error
//  (it reads what is committed); set joins the open batch.
int store_meta_get (store_t *self, const char *key, int64_t *value);
int store_meta_set (store_t *self, const char *key, int64_t value);
//  Calls fn for every committed meta key that starts with prefix (key
//  order). Returns 0, or -1 (store_error says why).
typedef void (store_meta_fn) (const char *key, int64_t value, void *arg);
int store_meta_list (store_t *self, const char *prefix, store_meta_fn *fn, void *arg);
//  Gives the page caches' unused memory back and has the writer truncate
//  the WAL (after a backlog drained, after a large expiry). What SQLite
//  holds is bounded anyway (2 MiB of page cache per connection); this
//  returns it to malloc, and the caller's malloc_trim returns it to the
//  system.
void store_release_memory (store_t *self);
//  Counts rows in a state: from the index for ended states, by a scan of
//  the table for queued, running and scheduled. Returns -1 on error.
int64_t store_count (store_t *self, store_state_t state);
//  Counts the ended rows in a state per queue (from the index): calls fn
//  once per queue that has any. Returns 0, or -1 on error.
typedef void (store_count_fn) (const char *queue, int64_t count, void *arg);
int store_count_by_queue (store_t *self, store_state_t state, store_count_fn *fn,
                          void *arg);

void store_test (bool verbose);

#endif
