/*  store_pg — the store's PostgreSQL backend (libpq): the same job table
    as SQLite's, in a database that routers on several hosts can reach.

    store.c keeps everything that is not the database's (batches, held-back
    dispatches, row keys) and calls this module for the two things that
    are: the reads on the loop's connection (store_pg_*), and a writer
    thread (store_pg_writer_start) that runs each batch as one transaction
    on a connection of its own, in libpq's pipeline mode (a batch of 1,000
    changes costs a few round trips, not 1,000).

    One router per database: the writer's connection holds a session
    advisory lock (S_LOCK_KEY in store_pg.c) for as long as it lives; a
    second router's store_pg_open fails, naming the holder's address. A
    connection lost (PostgreSQL restarted) is opened again by the next
    batch or read; the writer takes the lock again first, and refuses to
    write if another router took it meanwhile.

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

//  Connects the loop's connection to dsn (a libpq connection string),
//  starts the writer thread (which takes the database's lock and creates
//  the tables) into *writer, and reads the largest row key into *max_seq.
//  Returns NULL with the reason in err.
store_pg_t *store_pg_open (const char *dsn, store_fsync_t policy, writer_t **writer,
                           int64_t *max_seq, char *err, size_t errlen);
void store_pg_close (store_pg_t **self_p);
//  "dbname on host:port" of the connection (no password), for STATUS and logs.
const char *store_pg_where (store_pg_t *self);

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

#endif
