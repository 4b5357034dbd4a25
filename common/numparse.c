/*  numparse — strict decimal integers. See numparse.h. */
#include "numparse.h"

#include <errno.h>
#include <inttypes.h>  // libbsd overlay: strtou, strtoi
#include <string.h>

#define S_DIGITS_MAX 20  // UINT64_MAX has 20 digits

//  Copies text[0..len) into buf as a C string when it is [sign] digits;
//  strtou and strtoi alone would also take spaces, "0x" and (strtou) a
//  minus sign.
static int
s_copy (const char *text, size_t len, bool signed_ok, char buf[S_DIGITS_MAX + 2])
{
    if (!text)
        return -1;
    size_t sign = signed_ok && len > 0 && (text[0] == '+' || text[0] == '-');
    if (len - sign == 0 || len - sign > S_DIGITS_MAX)
        return -1;
    for (size_t i = sign; i < len; i++)
        if (text[i] < '0' || text[i] > '9')
            return -1;
    memcpy (buf, text, len);
    buf[len] = 0;
    return 0;
}

int
numparse_uint_n (const char *text, size_t len, uint64_t max, uint64_t *value)
{
    char buf[S_DIGITS_MAX + 2];
    if (s_copy (text, len, false, buf))
        return -1;
    int status;
    uintmax_t v = strtou (buf, NULL, 10, 0, max, &status);
    if (status)
        return -1;
    *value = (uint64_t) v;
    return 0;
}

int
numparse_uint (const char *text, uint64_t max, uint64_t *value)
{
    return text ? numparse_uint_n (text, strlen (text), max, value) : -1;
}

int
numparse_int_n (const char *text, size_t len, int64_t min, int64_t max, int64_t *value)
{
    char buf[S_DIGITS_MAX + 2];
    if (s_copy (text, len, true, buf))
        return -1;
    int status;
    intmax_t v = strtoi (buf, NULL, 10, min, max, &status);
    if (status)
        return -1;
    *value = (int64_t) v;
    return 0;
}

int
numparse_int (const char *text, int64_t min, int64_t max, int64_t *value)
{
    return text ? numparse_int_n (text, strlen (text), min, max, value) : -1;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
numparse_test (bool verbose)
{
    if (verbose)
        printf (" * numparse: ");
    uint64_t u = 99;
    CHECK_EQ (numparse_uint ("0", 10, &u), 0);
    CHECK_UEQ (u, 0);
    CHECK_EQ (numparse_uint ("007", 10, &u), 0);
    CHECK_UEQ (u, 7);
    CHECK_EQ (numparse_uint ("18446744073709551615", UINT64_MAX, &u), 0);
    CHECK_UEQ (u, UINT64_MAX);
    CHECK_EQ (numparse_uint ("4294967295", UINT32_MAX, &u), 0);
    CHECK_UEQ (u, UINT32_MAX);
    //  Refused, and the value is left alone.
    u = 99;
    const char *bad_uint[] = { "",
                               " 1",
                               "1 ",
                               "+1",
                               "-1",
                               "-0",
                               "0x10",
                               "1.0",
                               "1e3",
                               "12a",
                               "18446744073709551616",
                               "99999999999999999999",
                               "000000000000000000001",
                               "4294967296" };
    for (size_t i = 0; i < sizeof bad_uint / sizeof bad_uint[0]; i++) {
        if (numparse_uint (bad_uint[i], UINT32_MAX, &u) == 0)
            fprintf (stderr, "numparse_uint took '%s'\n", bad_uint[i]);
        CHECK_EQ (numparse_uint (bad_uint[i], UINT32_MAX, &u), -1);
    }
    CHECK_EQ (numparse_uint (NULL, 10, &u), -1);
    CHECK_EQ (numparse_uint ("11", 10, &u), -1);
    CHECK_UEQ (u, 99);
    //  A slice: only len bytes count, whatever follows them.
    CHECK_EQ (numparse_uint_n ("42,rest", 2, 100, &u), 0);
    CHECK_UEQ (u, 42);
    CHECK_EQ (numparse_uint_n ("42,rest", 3, 100, &u), -1);
    CHECK_EQ (numparse_uint_n ("42", 0, 100, &u), -1);
    CHECK_EQ (numparse_uint_n ("4\0002", 3, 100, &u), -1);

    int64_t v = 99;
    CHECK_EQ (numparse_int ("-1", -1, 10, &v), 0);
    CHECK_EQ (v, -1);
    CHECK_EQ (numparse_int ("+10", -1, 10, &v), 0);
    CHECK_EQ (v, 10);
    CHECK_EQ (numparse_int ("-9223372036854775808", INT64_MIN, INT64_MAX, &v), 0);
    CHECK (v == INT64_MIN);
    CHECK_EQ (numparse_int ("9223372036854775807", INT64_MIN, INT64_MAX, &v), 0);
    CHECK_EQ (v, INT64_MAX);
    v = 99;
    const char *bad_int[] = { "",
                              "-",
                              "+",
                              " 1",
                              "1 ",
                              "--1",
                              "+-1",
                              "0x1",
                              "1k",
                              "9223372036854775808",
                              "-9223372036854775809",
                              "11",
                              "-2" };
    for (size_t i = 0; i < sizeof bad_int / sizeof bad_int[0]; i++) {
        int rc = numparse_int (bad_int[i], i < 11 ? INT64_MIN : -1,
                               i < 11 ? INT64_MAX : 10, &v);
        if (rc == 0)
            fprintf (stderr, "numparse_int took '%s'\n", bad_int[i]);
        CHECK_EQ (rc, -1);
    }
    CHECK_EQ (v, 99);
    CHECK_EQ (numparse_int_n ("-15m", 3, INT64_MIN, INT64_MAX, &v), 0);
    CHECK_EQ (v, -15);
    if (verbose)
        printf ("OK\n");
}
