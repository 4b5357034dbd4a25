/*  headers — the eMQP REQUEST/SCHEDULE headers frame: a comma-separated list
    such as "reply-requested,retry-count:3,timeout:10". Known headers are
    parsed strictly (a bad number is an error); unknown ones are ignored so
    newer peers can add their own.
*/
#ifndef EMQ_HEADERS_H
#define EMQ_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  A fence scope: letters, digits and . _ : / - (e.g. "etcd:cdf818194e3a8c32").
#define HEADERS_SCOPE_MAX 64

typedef struct {
    bool reply_requested;  // reply-requested
    bool guarantee;        // guarantee
    bool nohaste;          // nohaste (SCHEDULE)
    uint32_t retry_count;  // retry-count:N, 0 = no retries
    uint32_t timeout_s;    // timeout:N, 0 = never
    uint32_t run_count;    // run_count:N (SCHEDULE), 0 = unlimited
    uint32_t delay_s;      // delay:N, keep the job scheduled N seconds (emq)
    uint32_t eta;          // eta:UNIX_TS, keep it scheduled until then (emq)
    uint64_t fence;        // fence:N, a scheduler leader's fencing token (emq)
    char fence_scope[HEADERS_SCOPE_MAX + 1];  // fence-scope:TEXT, where that
                                              // token comes from (emq); ""
                                              // when absent
} headers_t;

//  Parses text into *out (zeroed first). Returns 0, or -1 with the reason in
//  err (e.g. "timeout: 'x' is not a number in 0..4294967295").
int headers_parse (const char *text, headers_t *out, char *err, size_t errlen);

//  Writes the canonical headers string for *in to buf. Returns the length,
//  or -1 if buf is too small.
int headers_format (const headers_t *in, char *buf, size_t buflen);

void headers_test (bool verbose);

#endif
