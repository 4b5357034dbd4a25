/*  recent — msgids of jobs that ended, for a router without a database
    (--in-memory). With a data directory a resubmitted msgid is found in the
    job table while its row is kept (result_ttl) and is ACKed again, not
    run; in memory there is no row, so this set keeps the msgids instead:
    for ttl_ms, and at most `max` of them (the oldest go first), so that a
    client that retries after a lost ACK does not run its job twice.

    A FIFO list owns the entries (in the order the jobs ended, which is the
    order they expire in); a hash by msgid borrows them.
*/
#ifndef EMQ_ROUTER_RECENT_H
#define EMQ_ROUTER_RECENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct recent_t recent_t;

//  NULL when out of memory.
recent_t *recent_new (size_t max, int64_t ttl_ms);
void recent_destroy (recent_t **self_p);
//  Remembers msgid (copied) as ended at now_ms; the oldest goes when full.
void recent_add (recent_t *self, const char *msgid, int64_t now_ms);
//  True if msgid ended within the last ttl_ms (and was not pushed out).
bool recent_has (recent_t *self, const char *msgid);
//  Forgets the msgids older than ttl_ms.
void recent_expire (recent_t *self, int64_t now_ms);
size_t recent_size (recent_t *self);
//  Once empty after it held many, makes its index afresh (a hash table
//  keeps its grown size otherwise). Returns true if it did.
bool recent_compact (recent_t *self);

void recent_test (bool verbose);

#endif
