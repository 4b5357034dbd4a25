/*  fuzz — what every fuzz target in tests/fuzz/ shares: the libFuzzer entry
    point each one defines, and a cursor for cutting one input into parts.

    A target is built twice: with clang's libFuzzer (make fuzz), and with the
    normal compiler against tests/fuzz/replay.c, whose main feeds it every
    file of its committed corpus (make check, make sanitize). A target
    checks properties with FUZZ_ASSERT, which aborts in both builds, so a
    broken property is a crash the fuzzer keeps and the replay reports.
*/
#ifndef EMQ_FUZZ_H
#define EMQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  Aborts naming the property: for the fuzzer, a crash to keep; for the
//  replay, a failed file.
#define FUZZ_ASSERT(cond)                                                                \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf (stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
            abort ();                                                                    \
        }                                                                                \
    } while (0)

//  Copies size bytes into a fresh NUL-terminated string (caller frees):
//  the text parsers take C strings, so a NUL inside the input ends it there.
static inline char *
fuzz_cstring (const uint8_t *data, size_t size)
{
    char *text = malloc (size + 1);
    if (!text)
        abort ();
    memcpy (text, data, size);
    text[size] = 0;
    return text;
}

#endif
