/*  headers — parse and format the eMQP headers frame. See headers.h. */
#include "headers.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

//  Parses a decimal number in 0..UINT32_MAX; no sign, no spaces.
static int
s_parse_u32 (const char *s, size_t n, uint32_t *value)
{
    if (n == 0 || n > 10)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t) (s[i] - '0');
    }
    if (v > UINT32_MAX)
        return -1;
    *value = (uint32_t) v;
    return 0;
}

typedef struct {
    const char *name;
    size_t offset;          // of a uint32_t in headers_t, or of a bool
    bool numeric;
} s_header_t;

static const s_header_t s_known[] = {
    { "reply-requested", offsetof (headers_t, reply_requested), false },
    { "guarantee",       offsetof (headers_t, guarantee),       false },
    { "nohaste",         offsetof (headers_t, nohaste),         false },
    { "retry-count",     offsetof (headers_t, retry_count),     true },
    { "timeout",         offsetof (headers_t, timeout_s),       true },
    { "run_count",       offsetof (headers_t, run_count),       true },
};
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
            if (!h->numeric) {
                if (colon) {
                    snprintf (err, errlen, "header %s takes no value", h->name);
                    return -1;
                }
                *(bool *) field = true;
            }
            else {
                const char *value = colon ? colon + 1 : "";
                size_t value_len = colon ? len - name_len - 1 : 0;
                if (s_parse_u32 (value, value_len, (uint32_t *) field)) {
                    snprintf (err, errlen, "header %s: '%.*s' is not a number in 0..%u",
                              h->name, (int) (value_len > 32 ? 32 : value_len), value,
                              UINT32_MAX);
                    return -1;
                }
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
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < S_KNOWN; i++) {
        const s_header_t *h = &s_known[i];
        const char *field = (const char *) in + h->offset;
        int n = 0;
        const char *sep = used ? "," : "";
        if (!h->numeric && *(const bool *) field)
            n = snprintf (buf + used, buflen - used, "%s%s", sep, h->name);
        else
        if (h->numeric && *(const uint32_t *) field)
            n = snprintf (buf + used, buflen - used, "%s%s:%u", sep, h->name,
                          *(const uint32_t *) field);
        if (n < 0 || (size_t) n >= buflen - used)
            return -1;
        used += (size_t) n;
    }
    return (int) used;
}
