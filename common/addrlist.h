/*  addrlist — a list of endpoints a peer may connect to, in turn: the
    scheduler's routers (scheduler_addr) and their admin sockets. One text
    form, "tcp://r1:47291,tcp://r2:47291" (spaces around the commas
    allowed), parsed strictly: every item is an endpoint, none is empty.
*/
#ifndef EMQ_ADDRLIST_H
#define EMQ_ADDRLIST_H

#include <stdbool.h>
#include <stddef.h>

//  Items in one list at most.
#define ADDRLIST_MAX 16

//  True if value is a tcp://, ipc:// or inproc:// endpoint: a lowercase
//  scheme, "://", then at least one printable byte, no spaces.
bool addrlist_is_endpoint (const char *value);

//  Splits text, ','-separated endpoints with optional spaces (or tabs)
//  around each, into a NULL-terminated array of items the caller owns
//  (addrlist_destroy), *count set to their number (at least 1). Returns
//  NULL with what was expected in err (to follow "expected ..."): for an
//  empty text, an empty item ("a,,b", "a,"), an item that is no endpoint
//  (quoted, capped), more than ADDRLIST_MAX items, or no memory.
char **addrlist_parse (const char *text, size_t *count, char *err, size_t errlen);

//  The canonical text of a list: its items joined by ','. The caller
//  frees it; NULL if out of memory.
char *addrlist_join (char *const *items, size_t count);

//  Frees a list from addrlist_parse and nulls the pointer; NULL is fine.
void addrlist_destroy (char ***items_p);

void addrlist_test (bool verbose);

#endif
