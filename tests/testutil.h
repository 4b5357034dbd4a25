/*  testutil — check macros for the self tests (x_test functions) and the
    integration tests. A failing check prints the expression, both values and
    file:line on stderr, counts the failure and carries on, so one run shows
    every broken check (libuv test/task.h ASSERT_EQ, but non-fatal).

    The counters are weak definitions: every object that includes this header
    shares one pair, and programs that never run tests link without them.
    tests/selftest.c reads emq_test_failures before and after each x_test to
    decide whether it passed.

        CHECK (ptr != NULL);
        CHECK_EQ (zmsg_size (msg), 5);          // integers (intmax_t)
        CHECK_UEQ (msg->epoch, UINT64_MAX);     // unsigned (uintmax_t)
        CHECK_NEAR (ts, 1795398200.0280507, 1e-6);
        CHECK_STREQ (msg->queue, "default");    // NULL-safe
        CHECK_MEMEQ (data, size, "abc", 3);     // binary, printed as hex
        CHECK_CONTAINS (err, "unknown command");
*/
#ifndef EMQ_TESTUTIL_H
#define EMQ_TESTUTIL_H

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

__attribute__ ((weak)) int emq_test_failures;  // failed checks so far
__attribute__ ((weak)) int emq_test_checks;    // checks run so far

#define TESTUTIL_FAIL_(...)                              \
    do {                                                 \
        fprintf (stderr, "%s:%d: ", __FILE__, __LINE__); \
        fprintf (stderr, __VA_ARGS__);                   \
        fputc ('\n', stderr);                            \
        emq_test_failures++;                             \
    } while (0)

//  True when this process runs under valgrind (make memcheck). A forked
//  child then ends through valgrind's leak check of the heap it inherited,
//  and its exit status says 99 (--error-exitcode) where it would say 0:
//  tests that check a forked child's exit status accept that, there only.
static inline bool
testutil_under_valgrind (void)
{
    const char *preload = getenv ("LD_PRELOAD");
    return preload && strstr (preload, "vgpreload");
}

//  The exit status a forked child's clean exit shows in this process.
#define TESTUTIL_CLEAN_EXIT(status) \
    (WIFEXITED (status)             \
     && (WEXITSTATUS (status) == 0  \
         || (testutil_under_valgrind () && WEXITSTATUS (status) == 99)))

//  REQUIRE: a check that ends the test function when it fails (what follows
//  a failed step would only trip over its leftovers). REQUIRE_OR_NULL is
//  the same for helpers that return a pointer.
#define REQUIRE(expr)                                     \
    do {                                                  \
        emq_test_checks++;                                \
        if (!(expr)) {                                    \
            TESTUTIL_FAIL_ ("REQUIRE failed: %s", #expr); \
            return;                                       \
        }                                                 \
    } while (0)

#define REQUIRE_OR_NULL(expr)                             \
    do {                                                  \
        emq_test_checks++;                                \
        if (!(expr)) {                                    \
            TESTUTIL_FAIL_ ("REQUIRE failed: %s", #expr); \
            return NULL;                                  \
        }                                                 \
    } while (0)

#define CHECK(expr)                                     \
    do {                                                \
        emq_test_checks++;                              \
        if (!(expr))                                    \
            TESTUTIL_FAIL_ ("CHECK failed: %s", #expr); \
    } while (0)

#define CHECK_EQ(a, b)                                                                 \
    do {                                                                               \
        intmax_t a_ = (intmax_t) (a), b_ = (intmax_t) (b);                             \
        emq_test_checks++;                                                             \
        if (a_ != b_)                                                                  \
            TESTUTIL_FAIL_ ("CHECK_EQ failed: %s == %s (%jd vs %jd)", #a, #b, a_, b_); \
    } while (0)

#define CHECK_UEQ(a, b)                                                                 \
    do {                                                                                \
        uintmax_t a_ = (uintmax_t) (a), b_ = (uintmax_t) (b);                           \
        emq_test_checks++;                                                              \
        if (a_ != b_)                                                                   \
            TESTUTIL_FAIL_ ("CHECK_UEQ failed: %s == %s (%ju vs %ju)", #a, #b, a_, b_); \
    } while (0)

#define CHECK_NEAR(a, b, eps)                                                          \
    do {                                                                               \
        double a_ = (double) (a), b_ = (double) (b);                                   \
        emq_test_checks++;                                                             \
        if (!(fabs (a_ - b_) <= (eps)))                                                \
            TESTUTIL_FAIL_ ("CHECK_NEAR failed: %s ~ %s (%.17g vs %.17g, eps %g)", #a, \
                            #b, a_, b_, (double) (eps));                               \
    } while (0)

#define CHECK_STREQ(a, b)                                                              \
    do {                                                                               \
        const char *a_ = (a), *b_ = (b);                                               \
        emq_test_checks++;                                                             \
        if (!((a_ == NULL && b_ == NULL) || (a_ && b_ && strcmp (a_, b_) == 0)))       \
            TESTUTIL_FAIL_ ("CHECK_STREQ failed: %s == %s (\"%s\" vs \"%s\")", #a, #b, \
                            a_ ? a_ : "(null)", b_ ? b_ : "(null)");                   \
    } while (0)

#define CHECK_CONTAINS(haystack, needle)                                       \
    do {                                                                       \
        const char *h_ = (haystack), *n_ = (needle);                           \
        emq_test_checks++;                                                     \
        if (!h_ || !n_ || !strstr (h_, n_))                                    \
            TESTUTIL_FAIL_ (                                                   \
                "CHECK_CONTAINS failed: %s contains %s (\"%s\" lacks \"%s\")", \
                #haystack, #needle, h_ ? h_ : "(null)", n_ ? n_ : "(null)");   \
    } while (0)

//  Prints up to 32 bytes of each side as hex.
static inline void
testutil_hex_ (const void *data, size_t size)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < size && i < 32; i++)
        fprintf (stderr, "%02x", p[i]);
    if (size > 32)
        fprintf (stderr, "...");
}

#define CHECK_MEMEQ(a, alen, b, blen)                                           \
    do {                                                                        \
        const void *a_ = (a), *b_ = (b);                                        \
        size_t al_ = (alen), bl_ = (blen);                                      \
        emq_test_checks++;                                                      \
        if (al_ != bl_ || (al_ && memcmp (a_, b_, al_) != 0)) {                 \
            fprintf (stderr, "%s:%d: CHECK_MEMEQ failed: %s == %s (%zu bytes ", \
                     __FILE__, __LINE__, #a, #b, al_);                          \
            testutil_hex_ (a_, al_);                                            \
            fprintf (stderr, " vs %zu bytes ", bl_);                            \
            testutil_hex_ (b_, bl_);                                            \
            fprintf (stderr, ")\n");                                            \
            emq_test_failures++;                                                \
        }                                                                       \
    } while (0)

#endif
