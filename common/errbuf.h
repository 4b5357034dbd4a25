/*  errbuf — the reason a call failed, written to the caller's buffer.

    Functions that can fail for a reason a person should read take
    `char *err, size_t errlen` and write one line there (no newline), which
    the caller logs or prints. errbuf_set is the one way to write it.
*/
#ifndef EMQ_ERRBUF_H
#define EMQ_ERRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

//  Formats the reason into err (errlen bytes, truncated, always
//  NUL-terminated). err may be NULL or errlen 0: the caller did not ask
//  why. Returns -1, so a failing function can `return errbuf_set (...)`.
int errbuf_set (char *err, size_t errlen, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));
//  The same with a va_list, for functions that wrap it. Returns -1.
int errbuf_vset (char *err, size_t errlen, const char *format, va_list args)
    __attribute__ ((format (printf, 3, 0)));

void errbuf_test (bool verbose);

#endif
