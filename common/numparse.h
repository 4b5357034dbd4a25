/*  numparse — the strict decimal integer parser for every number emq reads
    from a peer or a person: eMQP number frames, header values, flags,
    settings. Digits only, after an optional sign where a sign is allowed:
    no spaces, no "0x", nothing after the last digit, at most 20 digits
    ("007" is 7), and a value out of range is an error rather than clamped
    (beanstalkd's read_u64). Built on libbsd's strtou / strtoi.
*/
#ifndef EMQ_NUMPARSE_H
#define EMQ_NUMPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Parses text (digits only) as a number in 0..max. Returns 0 and sets
//  *value, or -1 (NULL, empty, not digits, above max) leaving it alone.
int numparse_uint (const char *text, uint64_t max, uint64_t *value);
//  The same for the first len bytes of text, which need not end there
//  (a frame, a slice of a line).
int numparse_uint_n (const char *text, size_t len, uint64_t max, uint64_t *value);
//  Parses an optional '+' or '-' and digits as a number in min..max.
//  Returns 0 and sets *value, or -1 leaving it alone.
int numparse_int (const char *text, int64_t min, int64_t max, int64_t *value);
//  The same for the first len bytes of text.
int numparse_int_n (const char *text, size_t len, int64_t min, int64_t max,
                    int64_t *value);

void numparse_test (bool verbose);

#endif
