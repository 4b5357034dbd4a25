/*  outbox — per-peer batches of the router's sends. See outbox.h.

    Ownership: the outbox owns the capable set (copies of routing ids) and
    one entry per peer with messages gathered this turn (its identity and
    its emqp_batch_t); entries go at each flush.
*/
#include "outbox.h"

#include <errno.h>
#include <stdlib.h>

#include "peers.h"

typedef struct {
    zframe_t *identity;
    emqp_batch_t *batch;
} s_entry_t;

struct outbox_t {
    zsock_t *sock;      // borrowed
    zhashx_t *capable;  // routing id -> (void *) 1; keys owned
    zhashx_t *entries;  // routing id (the entry's) -> s_entry_t, owned
    size_t pending;     // messages gathered in all entries
    uint64_t batches;   // BATCH messages sent
    uint64_t batched;   // messages sent in them
};

static void
s_entry_destroy (s_entry_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zframe_destroy (&(*self_p)->identity);
    emqp_batch_destroy (&(*self_p)->batch);
    free (*self_p);
    *self_p = NULL;
}

static void *
s_identity_dup (const void *key)
{
    return zframe_dup ((zframe_t *) key);
}

static void
s_identity_free (void **key)
{
    zframe_destroy ((zframe_t **) key);
}

static zhashx_t *
s_identity_hash_new (void)
{
    zhashx_t *hash = zhashx_new ();
    if (hash) {
        zhashx_set_key_hasher (hash, peers_identity_hash);
        zhashx_set_key_comparator (hash, peers_identity_compare);
        zhashx_set_key_duplicator (hash, s_identity_dup);
        zhashx_set_key_destructor (hash, s_identity_free);
    }
    return hash;
}

outbox_t *
outbox_new (zsock_t *sock)
{
    outbox_t *self = calloc (1, sizeof (outbox_t));
    if (!self)
        return NULL;
    self->sock = sock;
    self->capable = s_identity_hash_new ();
    self->entries = s_identity_hash_new ();
    if (!self->capable || !self->entries) {
        outbox_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->entries, (zhashx_destructor_fn *) s_entry_destroy);
    return self;
}

void
outbox_destroy (outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    outbox_t *self = *self_p;
    zhashx_destroy (&self->capable);
    zhashx_destroy (&self->entries);
    free (self);
    *self_p = NULL;
}

void
outbox_allow (outbox_t *self, zframe_t *identity, bool batches)
{
    if (!batches) {
        zhashx_delete (self->capable, identity);
        return;
    }
    if (zhashx_lookup (self->capable, identity))
        return;
    if (zhashx_size (self->capable) >= OUTBOX_PEERS_MAX)
        zhashx_purge (self->capable);
    zhashx_insert (self->capable, identity, (void *) 1);
}

bool
outbox_allows (outbox_t *self, zframe_t *identity)
{
    return identity && zhashx_lookup (self->capable, identity) != NULL;
}

//  Sends one entry's messages; returns 0 or -1 (errno set).
static int
s_entry_send (outbox_t *self, s_entry_t *entry)
{
    size_t count = emqp_batch_size (entry->batch);
    self->pending -= count;
    int rc = emqp_batch_send (entry->batch, self->sock, entry->identity);
    if (rc == 0 && count > 1) {
        self->batches++;
        self->batched += count;
    }
    return rc;
}

int
outbox_send (outbox_t *self, emqp_msg_t **msg_p)
{
    assert (msg_p && *msg_p);
    emqp_msg_t *msg = *msg_p;
    zframe_t *identity = msg->identity;
    s_entry_t *entry =
        identity ? (s_entry_t *) zhashx_lookup (self->entries, identity) : NULL;
    bool takes = outbox_allows (self, identity) && emqp_batch_takes (msg);
    if (!takes) {
        //  In order: what was gathered for this peer goes first.
        if (entry && s_entry_send (self, entry)) {
            emqp_msg_destroy (msg_p);
            return -1;
        }
        return emqp_send (msg_p, self->sock);
    }
    if (!entry) {
        entry = calloc (1, sizeof (s_entry_t));
        if (entry) {
            entry->identity = zframe_dup (identity);
            entry->batch = emqp_batch_new ();
        }
        if (!entry || !entry->identity || !entry->batch) {
            s_entry_destroy (&entry);
            return emqp_send (msg_p, self->sock);  // out of memory: unbatched
        }
        zhashx_insert (self->entries, identity, entry);
    }
    else if (emqp_batch_full (entry->batch) && s_entry_send (self, entry)) {
        emqp_msg_destroy (msg_p);
        return -1;
    }
    if (emqp_batch_add (entry->batch, msg_p)) {
        errno = EINVAL;
        return -1;
    }
    self->pending++;
    return 0;
}

//  A peer whose messages could not be sent, reported after the walk.
typedef struct {
    zframe_t *identity;
    size_t messages;
    int error;
} s_failure_t;

size_t
outbox_flush (outbox_t *self, outbox_failed_fn *failed, void *arg)
{
    size_t sent = 0;
    s_failure_t *failures = NULL;
    size_t failure_count = 0;
    for (s_entry_t *entry = (s_entry_t *) zhashx_first (self->entries); entry;
         entry = (s_entry_t *) zhashx_next (self->entries)) {
        size_t count = emqp_batch_size (entry->batch);
        if (count == 0)
            continue;
        if (s_entry_send (self, entry) == 0) {
            sent++;
            continue;
        }
        int error = errno;
        s_failure_t *grown =
            failed ? realloc (failures, (failure_count + 1) * sizeof (s_failure_t))
                   : NULL;
        if (!grown)
            continue;
        failures = grown;
        failures[failure_count++] =
            (s_failure_t){ zframe_dup (entry->identity), count, error };
    }
    zhashx_purge (self->entries);
    self->pending = 0;
    //  After the walk: the callback may remove peers and send again.
    for (size_t i = 0; i < failure_count; i++) {
        failed (arg, failures[i].identity, failures[i].messages, failures[i].error);
        zframe_destroy (&failures[i].identity);
    }
    free (failures);
    return sent;
}

size_t
outbox_pending (outbox_t *self)
{
    return self->pending;
}

void
outbox_stats (outbox_t *self, uint64_t *batches, uint64_t *messages)
{
    *batches = self->batches;
    *messages = self->batched;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

typedef struct {
    size_t calls;
    size_t messages;
    int error;
} s_test_failures_t;

static void
s_test_failed (void *arg, zframe_t *identity, size_t messages, int error)
{
    s_test_failures_t *failures = (s_test_failures_t *) arg;
    CHECK (zframe_streq (identity, "gone"));
    failures->calls++;
    failures->messages += messages;
    failures->error = error;
}

static emqp_msg_t *
s_test_msg (const char *to, const char *ref, size_t payload)
{
    emqp_msg_t *msg = emqp_msg_new (payload ? EMQP_RESULT : EMQP_ACK);
    msg->identity = zframe_new (to, strlen (to));
    msg->ref = strdup (ref);
    if (payload) {
        msg->payload = zframe_new (NULL, payload);
        msg->usage = strdup ("");
    }
    return msg;
}

//  The next message the dealer gets, unpacked: the refs in order, joined.
static void
s_test_expect (zsock_t *dealer, emqp_command_t command, const char *refs)
{
    zmsg_t *zmsg = zmsg_recv (dealer);
    char err[256];
    emqp_limits_t limits = { .payload_max = 1 << 20 };
    emqp_msg_t *msg =
        zmsg ? emqp_decode (&zmsg, false, &limits, NULL, err, sizeof err) : NULL;
    REQUIRE (msg);
    CHECK_EQ (msg->command, command);
    char seen[256] = "";
    if (msg->command == EMQP_BATCH) {
        size_t count = 0;
        emqp_msg_t **msgs = emqp_batch_unpack (msg, &limits, &count, err, sizeof err);
        for (size_t i = 0; msgs && i < count; i++) {
            if (*seen)
                strcat (seen, ",");
            strncat (seen, msgs[i]->ref ? msgs[i]->ref : "?", 32);
            emqp_msg_destroy (&msgs[i]);
        }
        free (msgs);
    }
    else
        strncat (seen, msg->ref ? msg->ref : "?", 32);
    CHECK_STREQ (seen, refs);
    emqp_msg_destroy (&msg);
}

void
outbox_test (bool verbose)
{
    if (verbose)
        printf (" * outbox: ");
    zsock_t *router = zsock_new_router ("@inproc://outbox-test");
    zsock_t *batcher = zsock_new (ZMQ_DEALER);
    zsock_t *plain = zsock_new (ZMQ_DEALER);
    REQUIRE (router && batcher && plain);
    zsock_set_router_mandatory (router, 1);
    zsock_set_identity (batcher, "batcher");
    zsock_set_identity (plain, "plain");
    zsock_connect (batcher, "inproc://outbox-test");
    zsock_connect (plain, "inproc://outbox-test");
    zsock_set_rcvtimeo (batcher, 2000);
    zsock_set_rcvtimeo (plain, 2000);
    outbox_t *outbox = outbox_new (router);
    REQUIRE (outbox);
    zframe_t *id = zframe_new ("batcher", 7);
    CHECK (!outbox_allows (outbox, id));
    outbox_allow (outbox, id, true);
    CHECK (outbox_allows (outbox, id));

    //  A plain peer gets each message at once; a batcher at the flush,
    //  in one BATCH, in order.
    emqp_msg_t *msg = s_test_msg ("plain", "p1", 0);
    CHECK_EQ (outbox_send (outbox, &msg), 0);
    CHECK (msg == NULL);
    CHECK_EQ (outbox_pending (outbox), 0);
    s_test_expect (plain, EMQP_ACK, "p1");
    for (int i = 1; i <= 3; i++) {
        char ref[16];
        snprintf (ref, sizeof ref, "b%d", i);
        msg = s_test_msg ("batcher", ref, i == 2 ? 10 : 0);
        CHECK_EQ (outbox_send (outbox, &msg), 0);
    }
    CHECK_EQ (outbox_pending (outbox), 3);
    CHECK_EQ (outbox_flush (outbox, NULL, NULL), 1);
    CHECK_EQ (outbox_pending (outbox), 0);
    s_test_expect (batcher, EMQP_BATCH, "b1,b2,b3");
    uint64_t batches = 0, batched = 0;
    outbox_stats (outbox, &batches, &batched);
    CHECK (batches == 1 && batched == 3);

    //  A lone message goes as itself; a large one first sends what waits.
    msg = s_test_msg ("batcher", "lone", 0);
    outbox_send (outbox, &msg);
    CHECK_EQ (outbox_flush (outbox, NULL, NULL), 1);
    s_test_expect (batcher, EMQP_ACK, "lone");
    msg = s_test_msg ("batcher", "small", 0);
    outbox_send (outbox, &msg);
    msg = s_test_msg ("batcher", "big", EMQP_BATCH_ITEM_MAX + 1);
    CHECK_EQ (outbox_send (outbox, &msg), 0);
    s_test_expect (batcher, EMQP_ACK, "small");
    s_test_expect (batcher, EMQP_RESULT, "big");
    CHECK_EQ (outbox_flush (outbox, NULL, NULL), 0);

    //  A peer that is gone: a direct send fails at once, a gathered one is
    //  reported by the flush.
    zframe_t *gone = zframe_new ("gone", 4);
    msg = s_test_msg ("gone", "x", 0);
    CHECK_EQ (outbox_send (outbox, &msg), -1);
    outbox_allow (outbox, gone, true);
    for (int i = 0; i < 2; i++) {
        msg = s_test_msg ("gone", "y", 0);
        CHECK_EQ (outbox_send (outbox, &msg), 0);
    }
    s_test_failures_t failures = { 0 };
    CHECK_EQ (outbox_flush (outbox, s_test_failed, &failures), 0);
    CHECK (failures.calls == 1 && failures.messages == 2
           && failures.error == EHOSTUNREACH);
    outbox_allow (outbox, gone, false);
    CHECK (!outbox_allows (outbox, gone));

    //  A full batch is sent before the next message is gathered.
    for (int i = 0; i < EMQP_BATCH_MAX + 1; i++) {
        msg = s_test_msg ("batcher", "f", 0);
        outbox_send (outbox, &msg);
    }
    CHECK_EQ (outbox_pending (outbox), 1);
    zmsg_t *zmsg = zmsg_recv (batcher);
    CHECK (zmsg && zmsg_size (zmsg) == 5);
    zmsg_destroy (&zmsg);
    CHECK_EQ (outbox_flush (outbox, NULL, NULL), 1);
    s_test_expect (batcher, EMQP_ACK, "f");

    zframe_destroy (&gone);
    zframe_destroy (&id);
    outbox_destroy (&outbox);
    zsock_destroy (&plain);
    zsock_destroy (&batcher);
    zsock_destroy (&router);
    if (verbose)
        printf ("OK\n");
}
