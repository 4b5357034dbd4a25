/*  queuespec — the queues a job manager serves, with their weights: the one
    parser and validator of that list, for the INFORM frame (router), the
    `queues` setting (config) and the job manager.

    The format is EventMQ's: JSON [[weight,"name"],...]; an item that is a
    bare "name" has weight 10; "" (what EventMQ's job manager sends when
    started with -Q) means [[10,"default"]]. The `queues` setting also takes
    EventMQ's -Q form, words "weight,name" or "name" separated by spaces.

    One rule set for every source: 1..256 queues, each named once; a name
    has 1..128 bytes, none a space, a control character, '"' or ','; a
    weight is a whole number in 0..1000000.
*/
#ifndef EMQ_QUEUESPEC_H
#define EMQ_QUEUESPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define QUEUESPEC_NAME_MAX 128   // bytes (EMQP_QUEUE_MAX)
#define QUEUESPEC_COUNT_MAX 256  // queues in one list
#define QUEUESPEC_WEIGHT_MAX 1000000
#define QUEUESPEC_WEIGHT_DEFAULT 10  // a bare "name"
//  What a queue name must be, for messages.
#define QUEUESPEC_NAME_RULE "1..128 characters without spaces, quotes or commas"

typedef struct {
    uint32_t weight;  // 0..QUEUESPEC_WEIGHT_MAX
    char name[QUEUESPEC_NAME_MAX + 1];
} queuespec_t;

//  Parses a JSON queue list (the INFORM queues frame; "" = the default
//  queue). Returns a malloc'd array of *count entries, highest weight first
//  (equal weights in the order listed), that the caller frees; or NULL with
//  the reason in err and *count 0.
queuespec_t *queuespec_parse (const char *text, size_t *count, char *err, size_t errlen);

//  Checks a value of the `queues` setting (JSON, or "weight,name name ..."
//  words; "" is refused: a setting names its queues) and returns it as
//  compact JSON [[weight,"name"],...] in the order written, which the
//  caller frees; or NULL with the reason in err.
char *queuespec_setting (const char *text, char *err, size_t errlen);

//  Returns 0 when name is a valid queue name, else -1 with the reason in err.
int queuespec_name_check (const char *name, char *err, size_t errlen);

void queuespec_test (bool verbose);

#endif
