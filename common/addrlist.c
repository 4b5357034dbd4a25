/*  addrlist — a list of endpoints, parsed and joined. See addrlist.h. */
#include "addrlist.h"
#include "errbuf.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool
addrlist_is_endpoint (const char *value)
{
    if (!value)
        return false;
    const char *sep = strstr (value, "://");
    if (!sep || sep == value || sep[3] == 0)
        return false;
    for (const char *p = value; p < sep; p++)
        if (!islower ((unsigned char) *p))
            return false;
    for (const char *p = value; *p; p++)
        if (*p <= 0x20 || *p == 0x7F)
            return false;
    size_t scheme = (size_t) (sep - value);
    return (scheme == 3 && strncmp (value, "tcp", 3) == 0)
           || (scheme == 3 && strncmp (value, "ipc", 3) == 0)
           || (scheme == 6 && strncmp (value, "inproc", 6) == 0);
}

//  An item for an error message: at most 60 bytes, unprintable ones as '?'.
static void
s_shown (const char *item, size_t len, char *buf, size_t size)
{
    size_t n = len < 60 ? len : 60;
    if (n >= size)
        n = size - 1;
    for (size_t i = 0; i < n; i++)
        buf[i] = isprint ((unsigned char) item[i]) ? item[i] : '?';
    buf[n] = 0;
    if (n < len && n + 4 < size)
        strcat (buf, "...");
}

char **
addrlist_parse (const char *text, size_t *count, char *err, size_t errlen)
{
    *count = 0;
    if (!text) {
        errbuf_set (err, errlen, "at least one endpoint");
        return NULL;
    }
    char **items = calloc (ADDRLIST_MAX + 1, sizeof (char *));
    if (!items) {
        errbuf_set (err, errlen, "out of memory");
        return NULL;
    }
    size_t n = 0;
    const char *p = text;
    while (true) {
        const char *comma = strchr (p, ',');
        const char *end = comma ? comma : p + strlen (p);
        const char *start = p;
        while (start < end && (*start == ' ' || *start == '\t'))
            start++;
        const char *stop = end;
        while (stop > start && (stop[-1] == ' ' || stop[-1] == '\t'))
            stop--;
        size_t len = (size_t) (stop - start);
        if (len == 0) {
            if (!comma && n == 0)
                errbuf_set (err, errlen, "at least one endpoint");
            else
                errbuf_set (err, errlen, "ENDPOINT[,ENDPOINT]... (item %zu is empty)",
                            n + 1);
            goto fail;
        }
        if (n == ADDRLIST_MAX) {
            errbuf_set (err, errlen, "at most %d endpoints", ADDRLIST_MAX);
            goto fail;
        }
        if (!(items[n] = strndup (start, len))) {
            errbuf_set (err, errlen, "out of memory");
            goto fail;
        }
        if (!addrlist_is_endpoint (items[n])) {
            char shown[80];
            s_shown (start, len, shown, sizeof shown);
            errbuf_set (err, errlen,
                        "a tcp://, ipc:// or inproc:// endpoint as item %zu, not '%s'",
                        n + 1, shown);
            n++;
            goto fail;
        }
        n++;
        if (!comma)
            break;
        p = comma + 1;
    }
    *count = n;
    return items;

fail:
    addrlist_destroy (&items);
    return NULL;
}

char *
addrlist_join (char *const *items, size_t count)
{
    size_t size = 1;
    for (size_t i = 0; i < count; i++)
        size += strlen (items[i]) + 1;
    char *text = malloc (size);
    if (!text)
        return NULL;
    char *at = text;
    for (size_t i = 0; i < count; i++) {
        if (i)
            *at++ = ',';
        size_t len = strlen (items[i]);
        memcpy (at, items[i], len);
        at += len;
    }
    *at = 0;
    return text;
}

void
addrlist_destroy (char ***items_p)
{
    if (!items_p || !*items_p)
        return;
    for (char **item = *items_p; *item; item++)
        free (*item);
    free (*items_p);
    *items_p = NULL;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
addrlist_test (bool verbose)
{
    if (verbose)
        printf (" * addrlist: ");
    CHECK (addrlist_is_endpoint ("tcp://127.0.0.1:47291"));
    CHECK (addrlist_is_endpoint ("ipc:///tmp/x"));
    CHECK (addrlist_is_endpoint ("inproc://a"));
    CHECK (!addrlist_is_endpoint ("udp://a:1"));
    CHECK (!addrlist_is_endpoint ("TCP://a:1"));
    CHECK (!addrlist_is_endpoint ("tcp://"));
    CHECK (!addrlist_is_endpoint ("tcp://a b"));
    CHECK (!addrlist_is_endpoint ("a:1"));
    CHECK (!addrlist_is_endpoint (""));
    CHECK (!addrlist_is_endpoint (NULL));

    //  One address: as before.
    size_t count = 99;
    char err[256] = "";
    char **list = addrlist_parse ("tcp://127.0.0.1:47291", &count, err, sizeof err);
    CHECK (list != NULL);
    CHECK_EQ (count, 1);
    CHECK_STREQ (list ? list[0] : NULL, "tcp://127.0.0.1:47291");
    CHECK (list && list[1] == NULL);
    addrlist_destroy (&list);
    CHECK (list == NULL);
    addrlist_destroy (&list);  // NULL is fine

    //  Several, with spaces and tabs around the commas.
    list = addrlist_parse (" tcp://a:1 ,\tipc:///tmp/b , inproc://c ", &count, err,
                           sizeof err);
    CHECK (list != NULL);
    CHECK_EQ (count, 3);
    if (list) {
        CHECK_STREQ (list[0], "tcp://a:1");
        CHECK_STREQ (list[1], "ipc:///tmp/b");
        CHECK_STREQ (list[2], "inproc://c");
        CHECK (list[3] == NULL);
        char *text = addrlist_join (list, count);
        CHECK_STREQ (text, "tcp://a:1,ipc:///tmp/b,inproc://c");
        free (text);
    }
    addrlist_destroy (&list);

    //  Refused, each with its reason; count stays 0.
    const struct {
        const char *text;
        const char *why;
    } bad[] = {
        { "", "at least one endpoint" },
        { "   ", "at least one endpoint" },
        { "tcp://a:1,", "(item 2 is empty)" },
        { ",tcp://a:1", "(item 1 is empty)" },
        { "tcp://a:1, ,tcp://b:1", "(item 2 is empty)" },
        { "tcp://a:1,,tcp://b:1", "ENDPOINT[,ENDPOINT]... (item 2 is empty)" },
        { "tcp://a:1,nope", "endpoint as item 2, not 'nope'" },
        { "tcp://a:1 tcp://b:1", "as item 1, not 'tcp://a:1 tcp://b:1'" },
        { "udp://a:1", "as item 1, not 'udp://a:1'" },
        { "tcp://a:1,tcp://\x01", "as item 2, not 'tcp://?'" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        count = 99;
        err[0] = 0;
        list = addrlist_parse (bad[i].text, &count, err, sizeof err);
        CHECK (list == NULL);
        CHECK_EQ (count, 0);
        CHECK_CONTAINS (err, bad[i].why);
        addrlist_destroy (&list);
    }
    list = addrlist_parse (NULL, &count, err, sizeof err);
    CHECK (list == NULL);
    CHECK_CONTAINS (err, "at least one endpoint");

    //  At most ADDRLIST_MAX items; a long bad item is capped in the message.
    char many[64 * (ADDRLIST_MAX + 2)] = "";
    for (int i = 0; i <= ADDRLIST_MAX; i++)
        snprintf (many + strlen (many), sizeof many - strlen (many), "%stcp://h:%d",
                  i ? "," : "", 1000 + i);
    list = addrlist_parse (many, &count, err, sizeof err);
    CHECK (list == NULL);
    CHECK_CONTAINS (err, "at most 16 endpoints");
    strrchr (many, ',')[0] = 0;  // exactly ADDRLIST_MAX
    list = addrlist_parse (many, &count, err, sizeof err);
    CHECK (list != NULL);
    CHECK_EQ (count, ADDRLIST_MAX);
    addrlist_destroy (&list);
    char longbad[300];
    memset (longbad, 'x', sizeof longbad - 1);
    longbad[sizeof longbad - 1] = 0;
    list = addrlist_parse (longbad, &count, err, sizeof err);
    CHECK (list == NULL);
    //  A long bad item is quoted cut short: its start, then "...'".
    CHECK_CONTAINS (err, "as item 1, not 'xxx");
    CHECK_CONTAINS (err, "x...'");
    CHECK (strlen (err) < 200);
    if (verbose)
        printf ("OK\n");
}
