/*  fences — the schedulers' fencing tokens, one per scope.

    A leading scheduler sends its leadership's token with every fire
    (`fence:N`) and names where that token comes from (`fence-scope:S`,
    e.g. "etcd:<cluster id>" or "local:<host>"; absent = the legacy scope
    ""). The router keeps the highest token seen per scope and refuses a
    fire with a lower one: a deposed leader stops at once. Tokens of
    different scopes are never compared, so a deployment that moves from the
    local lock to etcd, or rebuilds etcd (a new cluster id), is not wedged by
    the old, larger numbers. The tokens live in the store's meta table (key
    "fence" for the legacy scope, "fence:<scope>" for others) and survive a
    restart; an operator can forget one (FENCE_RESET).
*/
#ifndef EMQ_ROUTER_FENCES_H
#define EMQ_ROUTER_FENCES_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

//  Scopes are few (one per leadership backend); this many at most.
#define FENCES_SCOPES_MAX 64

typedef struct fences_t fences_t;

typedef enum {
    FENCES_OK = 0,    // the token is current (or newer: now the highest)
    FENCES_STALE,     // older than the scope's highest: another leader leads
    FENCES_FULL,      // a new scope, and FENCES_SCOPES_MAX are held
    FENCES_TOO_LARGE  // above 2^63 - 1: SQLite cannot keep it
} fences_verdict_t;

//  Loads the tokens the store holds. NULL when out of memory or the store
//  cannot be read (reason in err). The store is borrowed and must outlive
//  the fences.
fences_t *fences_new (store_t *store, char *err, size_t errlen);
void fences_destroy (fences_t **self_p);

//  Checks token against scope's highest; when newer, keeps it (the store
//  write joins the open batch). *held receives the scope's highest token
//  before the call (0 when the scope is new).
fences_verdict_t fences_check (fences_t *self, const char *scope, uint64_t token,
                               uint64_t *held);

//  Forgets scope's token ("*": every scope): the next fire of that scope
//  sets it afresh. Returns how many scopes were forgotten.
size_t fences_reset (fences_t *self, const char *scope);

//  JSON text {"fences": [{"scope": S, "token": N}, ...]} (scopes sorted);
//  the caller owns it. NULL when out of memory.
char *fences_json (fences_t *self);

void fences_test (bool verbose);

#endif
