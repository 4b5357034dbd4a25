/*  store — the router's durable job table in SQLite (WAL mode).

    Every accepted job is a row; its state moves queued -> running -> done |
    failed | dead | cancelled, or to scheduled (delayed, or waiting for a
    retry's backoff). Ended jobs stay as results until they expire.

    Writes go into one open transaction that the router commits once per
    event-loop turn (group commit): ACKs for the jobs of a batch go out only
    after store_commit() succeeded. The fsync policy decides what a commit
    costs and what a power loss can take (docs/storage.md):
        always    synchronous=FULL: every commit is on disk before the ACK
        everysec  synchronous=NORMAL, WAL synced by a checkpoint each second
        off       synchronous=OFF: the OS decides
    A path of ":memory:" is the in-memory mode: job rows are not written at
    all (the router's own structures hold what is in flight), so results
    of ended jobs and dead jobs are not kept; only the meta table is.
*/
#ifndef EMQ_ROUTER_STORE_H
#define EMQ_ROUTER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { STORE_FSYNC_ALWAYS, STORE_FSYNC_EVERYSEC, STORE_FSYNC_OFF } store_fsync_t;

//  Row states, as stored in the 'state' column.
typedef enum {
    STORE_QUEUED, STORE_RUNNING, STORE_SCHEDULED,
    STORE_DONE, STORE_FAILED, STORE_DEAD, STORE_CANCELLED,
    STORE_STATE_COUNT
} store_state_t;

typedef struct store_t store_t;

//  A job row as loaded or fetched. Pointers are owned by the store and
//  valid only during the callback or until the next call.
typedef struct {
    int64_t seq;                // the row's key (submission order)
    const char *msgid;
    const char *queue;
    const char *headers;
    const void *payload;
    size_t payload_size;
    const void *client;         // submitter's routing id, may be NULL
    size_t client_size;
    store_state_t state;
    uint32_t attempt;
    uint32_t retries_left;
    double run_at;              // unix seconds (scheduled), else 0
    double created_at;
    double ended_at;            // 0 while not ended
    const char *status;         // outcome status name, or NULL
    const void *result;         // value or error text, may be NULL
    size_t result_size;
    const char *usage;
    uint64_t epoch;             // the latest dispatch's fencing token, or 0
} store_row_t;

typedef int (store_row_fn) (const store_row_t *row, void *arg);

const char *store_state_name (store_state_t state);
int store_fsync_parse (const char *name, store_fsync_t *policy);

//  Opens (creating if needed) the database at path. Returns NULL with the
//  reason in err.
store_t *store_open (const char *path, store_fsync_t policy, char *err, size_t errlen);
void store_close (store_t **self_p);
bool store_is_memory (store_t *self);

//  Writes. Each joins the open transaction (begun on demand) and returns 0,
//  or -1 with the reason in store_error(). insert sets *duplicate when the
//  msgid is already stored (then nothing is written), else *seq to the new
//  row's key, which the other writes take (a rowid lookup, not an index
//  search by msgid). The strings and buffers are read during the call only
//  (bound without a copy). set_ended's ended_at must be > 0.
int store_insert (store_t *self, const store_row_t *row, bool *duplicate, int64_t *seq);
int store_set_dispatched (store_t *self, int64_t seq, uint32_t attempt, uint64_t epoch);
int store_set_waiting (store_t *self, int64_t seq, store_state_t state,
                       uint32_t retries_left, double run_at);
int store_set_ended (store_t *self, int64_t seq, store_state_t state,
                     const char *status, const void *result, size_t result_size,
                     const char *usage, double ended_at);

//  Commits the open transaction, if any. Returns 0; or -1 (disk full, I/O
//  error, read-only) after rolling back, with the reason in store_error().
int store_commit (store_t *self);
//  Forces the WAL to disk now (everysec policy's timer; guarantee jobs).
int store_sync (store_t *self);
bool store_in_transaction (store_t *self);
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
    double ended_at;            // of the last row visited; 0 = start
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

//  Deletes at most limit (0 = no limit) ended jobs past their retention:
//  done, failed and cancelled ones ended before now - result_ttl_s, dead
//  ones before now - dead_ttl_s. Joins the open transaction. Returns the
//  number deleted, or -1 (reason in store_error(); the transaction then
//  fails at commit). Sets *more when the limit was reached: call again (on
//  a later loop turn, after the commit) until it is false. A chunk of
//  2,000 rows costs about 10 ms.
int store_expire_some (store_t *self, double now, double result_ttl_s, double dead_ttl_s,
                       size_t limit, bool *more);
//  Deletes at most limit (0 = all) dead jobs; same contract as
//  store_expire_some.
int store_purge_dead_some (store_t *self, size_t limit, bool *more);
//  A small key/value table for the router's own state (the schedulers'
//  fencing token). get returns 0 and sets *value, 1 if absent, -1 on error;
//  set joins the open transaction.
int store_meta_get (store_t *self, const char *key, int64_t *value);
int store_meta_set (store_t *self, const char *key, int64_t value);
//  Gives the page cache's unused memory back and truncates the WAL (after
//  a backlog drained, after a large expiry). Outside a transaction only
//  the WAL part is skipped. What SQLite holds is bounded anyway (2 MiB of
//  page cache); this returns it to malloc, and the caller's malloc_trim
//  returns it to the system.
void store_release_memory (store_t *self);
//  Counts rows in a state: from the index for ended states, by a scan of
//  the table for queued, running and scheduled. Returns -1 on error.
int64_t store_count (store_t *self, store_state_t state);

void store_test (bool verbose);

#endif
