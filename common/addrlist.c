/*  addrlist — a list of router endpoints. See addrlist.h. */
#include "addrlist.h"
#include "errbuf.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

//  Checks one item (start, len bytes, trimmed) and returns it as a new
//  string, or NULL with the reason in err.
static char *
s_item (const char *start, size_t len, size_t position, char *err, size_t errlen)
{
    if (len == 0) {
        errbuf_set (err, errlen, "address %zu of the list is empty", position);
        return NULL;
    }
    for (size_t i = 0; i < len; i++)
        if (isspace ((unsigned char) start[i]) || iscntrl ((unsigned char) start[i])) {
            errbuf_set (err, errlen,
                        "address %zu of the list has a space or a control "
                        "character in it",
                        position);
            return NULL;
        }
    char *item = strndup (start, len);
    if (!item) {
        errbuf_set (err, errlen, "out of memory");
        return NULL;
    }
    char *scheme = strstr (item, "://");
    if (!scheme || scheme == item || scheme[3] == 0) {
        errbuf_set (err, errlen,
                    "address %zu of the list, '%.200s', is not an endpoint "
                    "(transport://address, e.g. tcp://host:47291)",
                    position, item);
        free (item);
        return NULL;
    }
    return item;
}

char **
addrlist_parse (const char *text, size_t *count, char *err, size_t errlen)
{
    *count = 0;
    if (!text) {
        errbuf_set (err, errlen, "no address");
        errno = EINVAL;
        return NULL;
    }
    char **list = calloc (ADDRLIST_MAX + 1, sizeof (char *));
    if (!list) {
        errbuf_set (err, errlen, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    const char *cursor = text;
    size_t n = 0;
    while (true) {
        const char *comma = strchr (cursor, ',');
        const char *end = comma ? comma : cursor + strlen (cursor);
        const char *start = cursor;
        while (start < end && isspace ((unsigned char) *start))
            start++;
        while (end > start && isspace ((unsigned char) end[-1]))
            end--;
        if (n == ADDRLIST_MAX) {
            errbuf_set (err, errlen, "more than %d addresses in the list", ADDRLIST_MAX);
            errno = EINVAL;
            addrlist_free (&list);
            return NULL;
        }
        if (!(list[n] = s_item (start, (size_t) (end - start), n + 1, err, errlen))) {
            errno = strstr (err, "out of memory") ? ENOMEM : EINVAL;
            addrlist_free (&list);
            return NULL;
        }
        n++;
        if (!comma)
            break;
        cursor = comma + 1;
    }
    *count = n;
    return list;
}

void
addrlist_free (char ***list_p)
{
    if (!list_p || !*list_p)
        return;
    for (char **item = *list_p; *item; item++)
        free (*item);
    free (*list_p);
    *list_p = NULL;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

#include <stdio.h>

void
addrlist_test (bool verbose)
{
    if (verbose)
        printf (" * addrlist: ");
    char err[256];
    size_t count = 99;
    char **list = addrlist_parse ("tcp://127.0.0.1:47291", &count, err, sizeof err);
    CHECK (list && count == 1 && list[1] == NULL);
    CHECK_STREQ (list ? list[0] : "", "tcp://127.0.0.1:47291");
    addrlist_free (&list);
    CHECK (list == NULL);

    list = addrlist_parse (" tcp://r1:47291 ,ipc:///run/emq/frontend,tcp://r3:1 ", &count,
                           err, sizeof err);
    CHECK (list && count == 3);
    if (list) {
        CHECK_STREQ (list[0], "tcp://r1:47291");
        CHECK_STREQ (list[1], "ipc:///run/emq/frontend");
        CHECK_STREQ (list[2], "tcp://r3:1");
        CHECK (list[3] == NULL);
    }
    addrlist_free (&list);

    //  Refused, each with its reason.
    const struct {
        const char *text, *reason;
    } bad[] = {
        { "", "address 1 of the list is empty" },
        { "tcp://a:1,", "address 2 of the list is empty" },
        { "tcp://a:1,,tcp://b:2", "address 2 of the list is empty" },
        { " , tcp://b:2", "address 1 of the list is empty" },
        { "tcp://a:1,tcp://b :2", "a space" },
        { "tcp://a:1,r2:47291", "'r2:47291', is not an endpoint" },
        { "://x", "is not an endpoint" },
        { "tcp://", "is not an endpoint" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        count = 99;
        *err = 0;
        list = addrlist_parse (bad[i].text, &count, err, sizeof err);
        CHECK (list == NULL && count == 0);
        CHECK_CONTAINS (err, bad[i].reason);
    }
    //  At most ADDRLIST_MAX.
    char many[ADDRLIST_MAX * 16 + 32] = "";
    for (int i = 0; i <= ADDRLIST_MAX; i++)
        snprintf (many + strlen (many), sizeof many - strlen (many), "%stcp://h:%d",
                  i ? "," : "", i + 1);
    list = addrlist_parse (many, &count, err, sizeof err);
    CHECK (list == NULL);
    CHECK_CONTAINS (err, "more than 16 addresses");
    many[strrchr (many, ',') - many] = 0;
    list = addrlist_parse (many, &count, err, sizeof err);
    CHECK (list && count == ADDRLIST_MAX);
    addrlist_free (&list);
    addrlist_free (&list);  // NULL is fine
    if (verbose)
        printf ("OK\n");
}
