/*  addrlist — a list of router endpoints, "tcp://r1:47291,tcp://r2:47291":
    the one parser of the address settings that may name several routers
    (clients, emq-cli, the scheduler), one of which leads at a time.

    Items are separated by commas, with optional spaces around them; each
    is a ZeroMQ endpoint (transport "://" address, no spaces), and there are
    1..ADDRLIST_MAX of them. One item is the common case and means what a
    single address always meant.
*/
#ifndef EMQ_ADDRLIST_H
#define EMQ_ADDRLIST_H

#include <stdbool.h>
#include <stddef.h>

#define ADDRLIST_MAX 16

//  Parses text. Returns a malloc'd, NULL-terminated array of *count
//  malloc'd strings (free it with addrlist_free), or NULL with the reason
//  in err (errno EINVAL; ENOMEM without memory).
char **addrlist_parse (const char *text, size_t *count, char *err, size_t errlen);

//  Frees a list from addrlist_parse and nulls *list_p; NULL is fine.
void addrlist_free (char ***list_p);

void addrlist_test (bool verbose);

#endif
