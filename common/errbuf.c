/*  errbuf — the reason a call failed. See errbuf.h. */
#include "errbuf.h"

#include <stdarg.h>
#include <stdio.h>

int
errbuf_vset (char *err, size_t errlen, const char *format, va_list args)
{
    if (err && errlen)
        vsnprintf (err, errlen, format, args);
    return -1;
}

int
errbuf_set (char *err, size_t errlen, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    errbuf_vset (err, errlen, format, args);
    va_end (args);
    return -1;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
errbuf_test (bool verbose)
{
    if (verbose)
        printf (" * errbuf: ");
    char err[16] = "";
    CHECK_EQ (errbuf_set (err, sizeof err, "bad %s %d", "value", 42), -1);
    CHECK_STREQ (err, "bad value 42");
    //  Truncated to the buffer, still a string.
    CHECK_EQ (errbuf_set (err, sizeof err, "%s", "a reason far longer than sixteen"), -1);
    CHECK_EQ (strlen (err), sizeof err - 1);
    CHECK_STREQ (err, "a reason far lo");
    //  Nowhere to write: still fails, touches nothing.
    CHECK_EQ (errbuf_set (NULL, 0, "ignored"), -1);
    err[0] = 'x';
    CHECK_EQ (errbuf_set (err, 0, "ignored"), -1);
    CHECK_EQ (err[0], 'x');
    if (verbose)
        printf ("OK\n");
}
