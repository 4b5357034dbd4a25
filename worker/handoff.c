/*  handoff — the shared words of pipelined jobs. See handoff.h.

    A word is (ticket << 2) | state, in 64 bits so that a 32-bit ticket
    never wraps into another's word. Each slot has a cache line of its own:
    the two processes write neighbouring slots at the same time.
*/
#include "handoff.h"
#include "tests/testutil.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    uint64_t word;
    char pad[56];
} s_slot_t;

struct handoff_t {
    s_slot_t slot[HANDOFF_SLOTS];
};

handoff_t *
handoff_new (void)
{
    void *page = mmap (NULL, sizeof (handoff_t), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return page == MAP_FAILED ? NULL : (handoff_t *) page;
}

void
handoff_destroy (handoff_t **self_p)
{
    assert (self_p);
    if (*self_p)
        munmap (*self_p, sizeof (handoff_t));
    *self_p = NULL;
}

static uint64_t
s_word (uint32_t ticket, handoff_state_t state)
{
    return ((uint64_t) ticket << 2) | (uint64_t) state;
}

static s_slot_t *
s_slot (handoff_t *self, uint32_t ticket)
{
    return &self->slot[ticket % HANDOFF_SLOTS];
}

void
handoff_offer (handoff_t *self, uint32_t ticket)
{
    assert (self);
    __atomic_store_n (&s_slot (self, ticket)->word, s_word (ticket, HANDOFF_QUEUED),
                      __ATOMIC_RELEASE);
}

//  Turns ticket from QUEUED to state; false if it was not QUEUED.
static bool
s_turn (handoff_t *self, uint32_t ticket, handoff_state_t state)
{
    uint64_t expected = s_word (ticket, HANDOFF_QUEUED);
    return __atomic_compare_exchange_n (&s_slot (self, ticket)->word, &expected,
                                        s_word (ticket, state), false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE);
}

bool
handoff_retract (handoff_t *self, uint32_t ticket)
{
    assert (self);
    return s_turn (self, ticket, HANDOFF_RETRACTED);
}

bool
handoff_taken (handoff_t *self, uint32_t ticket)
{
    assert (self);
    uint64_t word = __atomic_load_n (&s_slot (self, ticket)->word, __ATOMIC_ACQUIRE);
    return word != s_word (ticket, HANDOFF_QUEUED)
           && word != s_word (ticket, HANDOFF_RETRACTED);
}

bool
handoff_take (handoff_t *self, uint32_t ticket)
{
    assert (self);
    return s_turn (self, ticket, HANDOFF_TAKEN);
}

//  --------------------------------------------------------------------------
//  Self test

void
handoff_test (bool verbose)
{
    if (verbose)
        printf (" * handoff: ");

    handoff_t *handoff = handoff_new ();
    REQUIRE (handoff);

    //  Taken: the job manager can no longer retract it.
    handoff_offer (handoff, 1);
    REQUIRE (!handoff_taken (handoff, 1));
    REQUIRE (handoff_take (handoff, 1));
    REQUIRE (handoff_taken (handoff, 1));
    REQUIRE (!handoff_retract (handoff, 1));
    REQUIRE (!handoff_take (handoff, 1));  // nor taken twice

    //  Retracted: the worker drops it; a retract is not repeated.
    handoff_offer (handoff, 2);
    REQUIRE (handoff_retract (handoff, 2));
    REQUIRE (!handoff_take (handoff, 2));
    REQUIRE (!handoff_retract (handoff, 2));
    REQUIRE (!handoff_taken (handoff, 2));

    //  A later ticket in the same slot is not mistaken for the earlier one,
    //  and tickets use all 32 bits.
    handoff_offer (handoff, 1 + HANDOFF_SLOTS);
    REQUIRE (!handoff_take (handoff, 1));
    REQUIRE (!handoff_retract (handoff, 1));
    REQUIRE (!handoff_taken (handoff, 1 + HANDOFF_SLOTS));
    handoff_offer (handoff, UINT32_MAX);
    REQUIRE (!handoff_take (handoff, UINT32_MAX - HANDOFF_SLOTS));
    REQUIRE (handoff_take (handoff, UINT32_MAX));

    //  A scribbled word counts as taken: the job manager cannot retract it.
    handoff_offer (handoff, 3);
    s_slot (handoff, 3)->word = 0xdeadbeef;
    REQUIRE (!handoff_retract (handoff, 3));
    REQUIRE (handoff_taken (handoff, 3));

    //  Across fork, with the two racing for each ticket: exactly one wins
    //  every time. The parent offers tickets 0..N-1 and retracts each at
    //  once; the child takes each as soon as it sees it. The child counts
    //  its progress in a shared word, so that the parent never reuses a
    //  slot the child has not dealt with. Taken + retracted = N.
    enum { N = 20000 };
    handoff_t *race = handoff_new ();
    uint32_t *progress = mmap (NULL, sizeof *progress, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE (race && progress != MAP_FAILED);
    *progress = 0;
    int pipes[2];
    REQUIRE (pipe (pipes) == 0);
    pid_t pid = fork ();
    REQUIRE (pid >= 0);
    if (pid == 0) {
        close (pipes[0]);
        uint32_t taken = 0;
        for (uint32_t ticket = 0; ticket < N; ticket++) {
            s_slot_t *slot = s_slot (race, ticket);
            while (__atomic_load_n (&slot->word, __ATOMIC_ACQUIRE) >> 2 != ticket)
                ;  // not offered yet
            taken += handoff_take (race, ticket);
            __atomic_store_n (progress, ticket + 1, __ATOMIC_RELEASE);
        }
        _exit (write (pipes[1], &taken, sizeof taken) == sizeof taken ? 0 : 1);
    }
    close (pipes[1]);
    uint32_t retracted = 0;
    for (uint32_t ticket = 0; ticket < N; ticket++) {
        while (ticket >= HANDOFF_SLOTS
               && __atomic_load_n (progress, __ATOMIC_ACQUIRE) <= ticket - HANDOFF_SLOTS)
            ;  // the slot's previous ticket is still the child's to see
        handoff_offer (race, ticket);
        retracted += handoff_retract (race, ticket);
    }
    uint32_t taken = 0;
    REQUIRE (read (pipes[0], &taken, sizeof taken) == sizeof taken);
    close (pipes[0]);
    int status;
    REQUIRE (waitpid (pid, &status, 0) == pid && WIFEXITED (status)
             && WEXITSTATUS (status) == 0);
    REQUIRE (taken + retracted == N);
    if (verbose)
        printf ("(race: %u taken, %u retracted) ", taken, retracted);
    munmap (progress, sizeof *progress);
    handoff_destroy (&race);
    handoff_destroy (&handoff);
    REQUIRE (handoff == NULL);
    handoff_destroy (&handoff);

    if (verbose)
        printf ("OK\n");
}
