/*  store_pg — the store's PostgreSQL backend (libpq): the same job table
    as SQLite's, in a database that routers on several hosts can reach.

    store.c keeps everything that is not the database's (batches, held-back
    dispatches, row keys) and calls this module for the two things that
    are: the reads on the loop's connection (store_pg_*), and a writer
    thread (store_pg_writer_start) that runs each batch as one transaction
    on a connection of its own, in libpq's pipeline mode (a batch of 1,000
    changes costs a few round trips, not 1,000).

    One router leads a database at a time (docs/storage.md, "Several
    routers"): a row (emq_leader) holds the lead's epoch and the lease of
    the router that has it, on the database's clock. A router takes the
    lead when the lease has expired (a standby asks a few times per
    lease, and writes its row in emq_routers each time: STATUS lists the
    standbys), the writer renews it every third of it, and every write
    transaction begins with the fence emq_fence(epoch), which fails once
    another router took the lead: a router paused past its lease writes
    nothing when it wakes, and the loop, which sees the lease run out on
    its own clock, stands down before it sends anything. A connection lost
    (PostgreSQL restarted) is opened again by the next batch or read.

    Columns that carry peers' bytes (msgid, queue, headers, status, usage)
    are bytea, so that a job whose headers are not valid UTF-8 is stored as
    SQLite stores it instead of failing its batch (docs/storage.md).
*/
#ifndef EMQ_ROUTER_STORE_PG_H
#define EMQ_ROUTER_STORE_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "writer.h"

typedef struct store_pg_t store_pg_t;
typedef struct store_pg_lease_t store_pg_lease_t;

typedef struct {
    double lease_ttl_s;  // the active router's lease on the lead
    bool standby;        // wait for the lead instead of failing
    const char *addrs;   // JSON: this router's addresses, for emq_routers
} store_pg_options_t;

//  Connects the loop's connection to dsn (a libpq connection string),
//  lays the tables out, takes the lead (or, standby, waits for it), starts
//  the writer thread into *writer, and reads the largest row key into
//  *max_seq. Returns NULL with the reason in err (another router leads:
//  which, and for how long yet).
store_pg_t *store_pg_open (const char *dsn, store_fsync_t policy,
                           const store_pg_options_t *options, writer_t **writer,
                           int64_t *max_seq, char *err, size_t errlen);
//  True while this router's lease runs (on this host's monotonic clock).
bool store_pg_leading (store_pg_t *self);
//  NULL while leading, else why not.
const char *store_pg_lead_lost (store_pg_t *self);
//  This router's epoch of the lead.
int64_t store_pg_epoch (store_pg_t *self);
//  This router as the leader row names it, and when it took the lead.
const char *store_pg_holder (store_pg_t *self);
double store_pg_since (store_pg_t *self);
void store_pg_close (store_pg_t **self_p);
//  "dbname on host:port" of the connection (no password), for STATUS and logs.
const char *store_pg_where (store_pg_t *self);
//  The other routers on the database seen within 3 leases (emq_routers:
//  its standbys, written by each while it waits), each passed to fn
//  (strings borrowed for the call). Returns how many, or -1 with the
//  reason in error.
int store_pg_routers (store_pg_t *self, store_router_fn *fn, void *arg, char *error,
                      size_t errlen);

//  The reads of store.h, with the same returns; a failure's reason goes to
//  error.
int store_pg_load (store_pg_t *self, store_row_fn *fn, void *arg, char *error,
                   size_t errlen);
int store_pg_fetch (store_pg_t *self, const char *msgid, store_row_fn *fn, void *arg,
                    char *error, size_t errlen);
int store_pg_dead_page (store_pg_t *self, store_cursor_t *cursor, size_t limit,
                        store_row_fn *fn, void *arg, char *error, size_t errlen);
int store_pg_meta_get (store_pg_t *self, const char *key, int64_t *value, char *error,
                       size_t errlen);
int64_t store_pg_count (store_pg_t *self, store_state_t state, char *error,
                        size_t errlen);
//  As store_count_by_queue (the monitoring gauges).
int store_pg_count_by_queue (store_pg_t *self, store_state_t state, store_count_fn *fn,
                             void *arg, char *error, size_t errlen);
int store_pg_meta_list (store_pg_t *self, const char *prefix, store_meta_fn *fn,
                        void *arg, char *error, size_t errlen);

#endif
