/*  headers — parse and format the eMQP headers frame. See headers.h. */
#include "headers.h"
#include "numparse.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    size_t offset;  // of the field in headers_t
    int width;      // 0 = bool flag, 4 = uint32_t, 8 = uint64_t, -1 = scope text
} s_header_t;

static const s_header_t s_known[] = {
    { "reply-requested", offsetof (headers_t, reply_requested), 0 },
    { "guarantee", offsetof (headers_t, guarantee), 0 },
    { "nohaste", offsetof (headers_t, nohaste), 0 },
    { "retry-count", offsetof (headers_t, retry_count), 4 },
    { "timeout", offsetof (headers_t, timeout_s), 4 },
    { "run_count", offsetof (headers_t, run_count), 4 },
    { "delay", offsetof (headers_t, delay_s), 4 },
    { "eta", offsetof (headers_t, eta), 4 },
    { "fence", offsetof (headers_t, fence), 8 },
    { "fence-scope", offsetof (headers_t, fence_scope), -1 },
};

//  A scope names a leadership backend: a short word of safe characters.
static bool
s_scope_valid (const char *value, size_t len)
{
    if (len == 0 || len > HEADERS_SCOPE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = value[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || strchr ("._:/-", c)))
            return false;
    }
    return true;
}
#define S_KNOWN (sizeof s_known / sizeof s_known[0])

int
headers_parse (const char *text, headers_t *out, char *err, size_t errlen)
{
    assert (text && out);
    memset (out, 0, sizeof *out);
    const char *p = text;
    while (*p) {
        const char *end = strchr (p, ',');
        size_t len = end ? (size_t) (end - p) : strlen (p);
        const char *colon = memchr (p, ':', len);
        size_t name_len = colon ? (size_t) (colon - p) : len;
        for (size_t i = 0; i < S_KNOWN; i++) {
            const s_header_t *h = &s_known[i];
            if (strlen (h->name) != name_len || memcmp (h->name, p, name_len))
                continue;
            char *field = (char *) out + h->offset;
            if (!h->width) {
                if (colon) {
                    snprintf (err, errlen, "header %s takes no value", h->name);
                    return -1;
                }
                *(bool *) field = true;
            }
            else if (h->width < 0) {
                const char *value = colon ? colon + 1 : "";
                size_t value_len = colon ? len - name_len - 1 : 0;
                if (!s_scope_valid (value, value_len)) {
                    snprintf (err, errlen,
                              "header %s: '%.*s' is not 1..%d of A-Z a-z 0-9 . _ : / -",
                              h->name, (int) (value_len > 32 ? 32 : value_len), value,
                              HEADERS_SCOPE_MAX);
                    return -1;
                }
                memcpy (field, value, value_len);
                field[value_len] = 0;
            }
            else {
                const char *value = colon ? colon + 1 : "";
                size_t value_len = colon ? len - name_len - 1 : 0;
                uint64_t max = h->width == 4 ? UINT32_MAX : UINT64_MAX, number;
                if (numparse_uint_n (value, value_len, max, &number)) {
                    snprintf (err, errlen,
                              "header %s: '%.*s' is not a number in 0..%" PRIu64, h->name,
                              (int) (value_len > 32 ? 32 : value_len), value, max);
                    return -1;
                }
                if (h->width == 4)
                    *(uint32_t *) field = (uint32_t) number;
                else
                    *(uint64_t *) field = number;
            }
        }
        //  Unknown headers are ignored on purpose (forward compatibility).
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

int
headers_format (const headers_t *in, char *buf, size_t buflen)
{
    assert (in && buf);
    if (buflen == 0)
        return -1;
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < S_KNOWN; i++) {
        const s_header_t *h = &s_known[i];
        const char *field = (const char *) in + h->offset;
        int n = 0;
        const char *sep = used ? "," : "";
        uint64_t number = h->width < 0    ? 0
                          : h->width == 4 ? *(const uint32_t *) field
                          : h->width == 8 ? *(const uint64_t *) field
                                          : 0;
        if (!h->width && *(const bool *) field)
            n = snprintf (buf + used, buflen - used, "%s%s", sep, h->name);
        else if (h->width < 0 && *field)
            n = snprintf (buf + used, buflen - used, "%s%s:%s", sep, h->name, field);
        else if (h->width && number)
            n = snprintf (buf + used, buflen - used, "%s%s:%" PRIu64, sep, h->name,
                          number);
        if (n < 0 || (size_t) n >= buflen - used)
            return -1;
        used += (size_t) n;
    }
    return (int) used;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
headers_test (bool verbose)
{
    if (verbose)
        printf (" * headers: ");
    headers_t h;
    char err[128];
    char buf[256];

    //  Empty: nothing set.
    CHECK_EQ (headers_parse ("", &h, err, sizeof err), 0);
    CHECK (!h.reply_requested && !h.guarantee && !h.nohaste);
    CHECK_EQ (h.retry_count, 0);
    CHECK_EQ (h.timeout_s, 0);
    CHECK_EQ (h.run_count, 0);
    CHECK_EQ (headers_format (&h, buf, sizeof buf), 0);
    CHECK_STREQ (buf, "");

    //  Every header string EventMQ 0.3.13 sent in the captured vectors.
    static const struct {
        const char *text;
        headers_t expect;
    } seen[] = {
        { "reply-requested", { .reply_requested = true } },
        { "reply-requested,retry-count:3,timeout:10",
          { .reply_requested = true, .retry_count = 3, .timeout_s = 10 } },
        { "reply-requested,guarantee,retry-count:3,timeout:10",
          { .reply_requested = true,
            .guarantee = true,
            .retry_count = 3,
            .timeout_s = 10 } },
        { "reply-requested,timeout:1", { .reply_requested = true, .timeout_s = 1 } },
        { "guarantee", { .guarantee = true } },
        { "guarantee,nohaste", { .guarantee = true, .nohaste = true } },
        { "nohaste", { .nohaste = true } },
        { "nohaste,run_count:2", { .nohaste = true, .run_count = 2 } },
        { "run_count:2", { .run_count = 2 } },
        { "delay:5,eta:1795398200", { .delay_s = 5, .eta = 1795398200u } },
        { "fence:18446744073709551615", { .fence = UINT64_MAX } },
        { "fence:7,fence-scope:etcd:cdf818194e3a8c32",
          { .fence = 7, .fence_scope = "etcd:cdf818194e3a8c32" } },
        { "run_count:3", { .run_count = 3 } },
    };
    for (size_t i = 0; i < sizeof seen / sizeof seen[0]; i++) {
        CHECK_EQ (headers_parse (seen[i].text, &h, err, sizeof err), 0);
        CHECK_EQ (h.reply_requested, seen[i].expect.reply_requested);
        CHECK_EQ (h.guarantee, seen[i].expect.guarantee);
        CHECK_EQ (h.nohaste, seen[i].expect.nohaste);
        CHECK_EQ (h.retry_count, seen[i].expect.retry_count);
        CHECK_EQ (h.timeout_s, seen[i].expect.timeout_s);
        CHECK_EQ (h.run_count, seen[i].expect.run_count);
        CHECK_STREQ (h.fence_scope, seen[i].expect.fence_scope);
        //  EventMQ's order is the canonical order: formatting gives it back.
        int len = headers_format (&h, buf, sizeof buf);
        CHECK_EQ (len, (int) strlen (seen[i].text));
        CHECK_STREQ (buf, seen[i].text);
    }

    //  Unknown headers (with or without a value), empty items and a
    //  repeated header: ignored, ignored, last wins.
    CHECK_EQ (headers_parse ("x-trace:abc,,future-flag,timeout:5,timeout:7,", &h, err,
                             sizeof err),
              0);
    CHECK_EQ (h.timeout_s, 7);
    CHECK (!h.reply_requested);
    CHECK_EQ (headers_parse (",", &h, err, sizeof err), 0);
    //  A known name only matches whole: these are unknown, not errors.
    CHECK_EQ (headers_parse ("timeouts:x,reply-requested-later, guarantee", &h, err,
                             sizeof err),
              0);
    CHECK (!h.reply_requested && !h.guarantee);
    CHECK_EQ (h.timeout_s, 0);

    //  Limits of the numbers.
    CHECK_EQ (headers_parse ("retry-count:4294967295,timeout:0,run_count:0000000001", &h,
                             err, sizeof err),
              0);
    CHECK_EQ (h.retry_count, UINT32_MAX);
    CHECK_EQ (h.timeout_s, 0);
    CHECK_EQ (h.run_count, 1);

    //  Bad values of known headers: errors naming the header and the value.
    static const struct {
        const char *text;
        const char *reason;
    } bad[] = {
        { "timeout:x", "header timeout: 'x' is not a number in 0..4294967295" },
        { "timeout:", "header timeout: '' is not a number" },
        { "timeout", "header timeout: '' is not a number" },
        { "timeout: 5", "header timeout: ' 5' is not a number" },
        { "timeout:5 ", "header timeout: '5 ' is not a number" },
        { "timeout:+5", "header timeout: '+5' is not a number" },
        { "retry-count:-1", "header retry-count: '-1' is not a number" },
        { "retry-count:4294967296", "header retry-count: '4294967296' is not a number" },
        { "retry-count:99999999999",
          "header retry-count: '99999999999' is not a number" },
        { "run_count:1.5", "header run_count: '1.5' is not a number" },
        { "run_count:3:4", "header run_count: '3:4' is not a number" },
        { "reply-requested:1", "header reply-requested takes no value" },
        { "guarantee:", "header guarantee takes no value" },
        { "nohaste:yes", "header nohaste takes no value" },
        { "reply-requested,timeout:abc", "header timeout: 'abc'" },
        { "fence-scope:", "header fence-scope: '' is not 1..64" },
        { "fence-scope:a b", "header fence-scope: 'a b' is not" },
        { "fence-scope:a\"b", "header fence-scope: 'a\"b' is not" },
        { "fence-scope:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
          "is not 1..64" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        CHECK_EQ (headers_parse (bad[i].text, &h, err, sizeof err), -1);
        CHECK_CONTAINS (err, bad[i].reason);
        if (verbose)
            printf ("\n   %-28s -> %s", bad[i].text, err);
    }
    //  A long bad value is capped in the message.
    char long_value[200] = "timeout:";
    memset (long_value + 8, '9', 150);
    long_value[158] = 0;
    CHECK_EQ (headers_parse (long_value, &h, err, sizeof err), -1);
    CHECK (strlen (err) < 100);

    //  Format: canonical order, round trip, buffer too small.
    headers_t all = { .reply_requested = true,
                      .guarantee = true,
                      .nohaste = true,
                      .retry_count = 2,
                      .timeout_s = 30,
                      .run_count = UINT32_MAX };
    int len = headers_format (&all, buf, sizeof buf);
    CHECK_STREQ (buf, "reply-requested,guarantee,nohaste,retry-count:2,timeout:30,"
                      "run_count:4294967295");
    CHECK_EQ (len, (int) strlen (buf));
    headers_t back;
    CHECK_EQ (headers_parse (buf, &back, err, sizeof err), 0);
    CHECK (back.reply_requested && back.guarantee && back.nohaste);
    CHECK_EQ (back.retry_count, 2);
    CHECK_EQ (back.timeout_s, 30);
    CHECK_EQ (back.run_count, UINT32_MAX);
    for (size_t size = 0; size <= (size_t) len; size++)
        CHECK_EQ (headers_format (&all, buf, size), -1);
    CHECK_EQ (headers_format (&all, buf, (size_t) len + 1), len);

    if (verbose)
        printf ("\n   OK\n");
}
