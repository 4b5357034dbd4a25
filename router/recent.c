/*  recent — msgids of jobs that ended, in memory. See recent.h. */
#include "recent.h"

#include <assert.h>
#include <czmq.h>
#include <stdlib.h>
#include <string.h>

//  An index that never held more than this is not worth remaking.
#define S_RECENT_SMALL 1024

typedef struct {
    int64_t ended_ms;  // monotonic
    char msgid[];      // NUL-terminated
} s_entry_t;

struct recent_t {
    zlistx_t *order;  // s_entry_t *, owned, oldest first
    zhashx_t *index;  // msgid -> s_entry_t *, borrowed
    size_t max;
    size_t peak;  // most entries since the index was last made
    int64_t ttl_ms;
};

static void
s_entry_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

recent_t *
recent_new (size_t max, int64_t ttl_ms)
{
    recent_t *self = (recent_t *) calloc (1, sizeof (recent_t));
    if (!self)
        return NULL;
    self->order = zlistx_new ();
    self->index = zhashx_new ();
    if (!self->order || !self->index) {
        recent_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->order, s_entry_destroy);
    self->max = max ? max : 1;
    self->ttl_ms = ttl_ms;
    return self;
}

void
recent_destroy (recent_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    recent_t *self = *self_p;
    //  The index borrows: it goes first.
    zhashx_destroy (&self->index);
    zlistx_destroy (&self->order);
    free (self);
    *self_p = NULL;
}

//  Forgets the oldest entry.
static void
s_drop_oldest (recent_t *self)
{
    s_entry_t *oldest = (s_entry_t *) zlistx_first (self->order);
    if (!oldest)
        return;
    //  A msgid added again after this entry points at its newer entry.
    if (zhashx_lookup (self->index, oldest->msgid) == oldest)
        zhashx_delete (self->index, oldest->msgid);
    zlistx_delete (self->order, zlistx_cursor (self->order));
}

void
recent_add (recent_t *self, const char *msgid, int64_t now_ms)
{
    assert (self && msgid);
    size_t len = strlen (msgid);
    s_entry_t *entry = (s_entry_t *) malloc (sizeof (s_entry_t) + len + 1);
    if (!entry)
        return;  // out of memory: a resubmit may run again (at-least-once)
    entry->ended_ms = now_ms;
    memcpy (entry->msgid, msgid, len + 1);
    while (zlistx_size (self->order) >= self->max)
        s_drop_oldest (self);
    if (!zlistx_add_end (self->order, entry)) {
        free (entry);
        return;
    }
    zhashx_update (self->index, entry->msgid, entry);
    if (zhashx_size (self->index) > self->peak)
        self->peak = zhashx_size (self->index);
}

bool
recent_has (recent_t *self, const char *msgid)
{
    assert (self && msgid);
    return zhashx_lookup (self->index, msgid) != NULL;
}

void
recent_expire (recent_t *self, int64_t now_ms)
{
    assert (self);
    s_entry_t *oldest;
    while ((oldest = (s_entry_t *) zlistx_first (self->order))
           && now_ms - oldest->ended_ms >= self->ttl_ms)
        s_drop_oldest (self);
}

size_t
recent_size (recent_t *self)
{
    return zhashx_size (self->index);
}

bool
recent_compact (recent_t *self)
{
    assert (self);
    //  A zhashx keeps its grown table: once empty, a fresh one replaces it.
    if (zhashx_size (self->index) > 0 || self->peak <= S_RECENT_SMALL)
        return false;
    zhashx_t *fresh = zhashx_new ();
    if (!fresh)
        return false;
    zhashx_destroy (&self->index);
    self->index = fresh;
    self->peak = 0;
    return true;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
recent_test (bool verbose)
{
    if (verbose)
        printf (" * recent: ");
    recent_t *recent = recent_new (3, 1000);
    CHECK (recent != NULL);
    recent_add (recent, "a", 0);
    recent_add (recent, "b", 100);
    CHECK (recent_has (recent, "a"));
    CHECK (!recent_has (recent, "c"));
    //  Full: the oldest goes.
    recent_add (recent, "c", 200);
    recent_add (recent, "d", 300);
    CHECK (!recent_has (recent, "a"));
    CHECK (recent_has (recent, "d"));
    CHECK_EQ (recent_size (recent), 3);
    //  Expiry by age.
    recent_expire (recent, 1150);
    CHECK (!recent_has (recent, "b"));
    CHECK (recent_has (recent, "c"));
    //  Added again: the newer entry counts.
    recent_add (recent, "c", 1200);
    recent_expire (recent, 1250);
    CHECK (recent_has (recent, "c"));
    recent_expire (recent, 2300);
    CHECK_EQ (recent_size (recent), 0);
    CHECK (!recent_compact (recent));  // never grew
    recent_destroy (&recent);

    //  Grown and emptied: the index is made afresh, and still works.
    recent = recent_new (5000, 1000);
    CHECK (recent != NULL);
    for (int i = 0; i < 3000; i++) {
        char id[32];
        snprintf (id, sizeof id, "m-%d", i);
        recent_add (recent, id, 0);
    }
    CHECK (!recent_compact (recent));  // holds entries
    recent_expire (recent, 1000);
    CHECK_EQ (recent_size (recent), 0);
    CHECK (recent_compact (recent));
    CHECK (!recent_compact (recent));
    recent_add (recent, "again", 1500);
    CHECK (recent_has (recent, "again"));
    recent_destroy (&recent);
    CHECK (recent == NULL);
    if (verbose)
        printf ("OK\n");
}
