/*  fuzz_headers — the REQUEST/SCHEDULE headers frame (common/headers.c).

    Input: the frame's text (a NUL ends it, as the decoder refuses NULs).
    Properties: what headers_parse accepts, headers_format writes, and that
    text parses back to the same values; a refusal gives a reason.
*/
#include "fuzz.h"

#include "common/headers.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    char *text = fuzz_cstring (data, size);
    headers_t parsed;
    char err[256] = "";
    if (headers_parse (text, &parsed, err, sizeof err) == 0) {
        char canonical[2048];
        int len = headers_format (&parsed, canonical, sizeof canonical);
        FUZZ_ASSERT (len >= 0 && (size_t) len == strlen (canonical));
        headers_t again;
        FUZZ_ASSERT (headers_parse (canonical, &again, err, sizeof err) == 0);
        FUZZ_ASSERT (memcmp (&parsed, &again, sizeof parsed) == 0);
    }
    else
        FUZZ_ASSERT (*err && memchr (err, 0, sizeof err));
    free (text);
    return 0;
}
