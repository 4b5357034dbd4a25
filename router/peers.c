/*  peers — job managers and schedulers known to the router. See peers.h. */
#include "peers.h"
#include "emqp.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct peers_t {
    zhashx_t *peers;  // routing id (the peer's own identity frame,
                      // compared by bytes) -> peer_t, owned
};

static void
s_peer_destroy (peer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    peer_t *self = *self_p;
    free (self->id);
    zframe_destroy (&self->identity);
    free (self->queues);
    free (self->queues_json);
    zhashx_destroy (&self->inflight);
    zhashx_destroy (&self->unconfirmed);
    free (self->stats);
    free (self);
    *self_p = NULL;
}

size_t
peers_identity_hash (const void *key)
{
    zframe_t *frame = (zframe_t *) key;
    const unsigned char *data = zframe_data (frame);
    size_t hash = 14695981039346656037ULL;
    for (size_t i = 0, size = zframe_size (frame); i < size; i++)
        hash = (hash ^ data[i]) * 1099511628211ULL;
    return hash;
}

int
peers_identity_compare (const void *a, const void *b)
{
    zframe_t *x = (zframe_t *) a, *y = (zframe_t *) b;
    if (zframe_size (x) != zframe_size (y))
        return 1;
    return memcmp (zframe_data (x), zframe_data (y), zframe_size (x));
}

peers_t *
peers_new (void)
{
    peers_t *self = calloc (1, sizeof (peers_t));
    if (!self)
        return NULL;
    self->peers = zhashx_new ();
    if (!self->peers) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->peers, (zhashx_destructor_fn *) s_peer_destroy);
    //  Keyed by the raw routing id: no formatting per message, and a
    //  printable id can never collide with a binary one's hex form.
    zhashx_set_key_hasher (self->peers, peers_identity_hash);
    zhashx_set_key_comparator (self->peers, peers_identity_compare);
    zhashx_set_key_duplicator (self->peers, NULL);
    zhashx_set_key_destructor (self->peers, NULL);
    return self;
}

void
peers_destroy (peers_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zhashx_destroy (&(*self_p)->peers);
    free (*self_p);
    *self_p = NULL;
}

const char *
peers_id_of (zframe_t *identity, char *buf, size_t buflen)
{
    const unsigned char *data = zframe_data (identity);
    size_t size = zframe_size (identity);
    bool printable = size > 0 && data[0] != 0;
    for (size_t i = 0; i < size && printable; i++)
        printable = data[i] >= 0x21 && data[i] < 0x7F;
    if (printable && size < buflen) {
        memcpy (buf, data, size);
        buf[size] = 0;
        return buf;
    }
    //  Binary identities (ZeroMQ's own 5-byte ids) are shown as 0x + hex.
    static const char hex[] = "0123456789abcdef";
    size_t out = 0;
    buf[out++] = '0';
    buf[out++] = 'x';
    for (size_t i = 0; i < size && out + 3 <= buflen; i++) {
        buf[out++] = hex[data[i] >> 4];
        buf[out++] = hex[data[i] & 15];
    }
    buf[out] = 0;
    return buf;
}

peer_t *
peers_add (peers_t *self, zframe_t *identity, peer_type_t type)
{
    if (zhashx_lookup (self->peers, identity))
        return NULL;
    char id[600];
    peers_id_of (identity, id, sizeof id);
    peer_t *peer = calloc (1, sizeof (peer_t));
    if (!peer)
        return NULL;
    peer->id = strdup (id);
    peer->identity = zframe_dup (identity);
    peer->inflight = zhashx_new ();
    peer->type = type;
    if (!peer->id || !peer->identity || !peer->inflight) {
        s_peer_destroy (&peer);
        return NULL;
    }
    zhashx_insert (self->peers, peer->identity, peer);
    return peer;
}

peer_t *
peers_lookup (peers_t *self, zframe_t *identity)
{
    return (peer_t *) zhashx_lookup (self->peers, identity);
}

void
peers_delete (peers_t *self, peer_t *peer)
{
    assert (zhashx_size (peer->inflight) == 0);
    zhashx_delete (self->peers, peer->identity);
}

size_t
peers_size (peers_t *self)
{
    return zhashx_size (self->peers);
}

zlistx_t *
peers_list (peers_t *self)
{
    zlistx_t *list = zlistx_new ();
    if (!list)
        return NULL;
    for (peer_t *peer = (peer_t *) zhashx_first (self->peers); peer;
         peer = (peer_t *) zhashx_next (self->peers))
        zlistx_add_end (list, peer);
    return list;
}

int
peers_serve (peer_t *peer, queues_t *queues, const queuespec_t *specs, size_t count,
             const char *queues_json)
{
    peers_unserve (peer);
    peer->queues = calloc (count ? count : 1, sizeof (peer_queue_t));
    peer->queues_json = strdup (queues_json ? queues_json : "");
    if (!peer->queues || !peer->queues_json)
        return -1;
    int skipped = 0;
    for (size_t i = 0; i < count; i++) {
        queue_t *queue = queues_require (queues, specs[i].name);
        if (!queue) {
            skipped++;
            continue;
        }
        peer->queues[peer->queue_count].weight = specs[i].weight;
        peer->queues[peer->queue_count].queue = queue;
        peer->queue_count++;
        queue_add_server (queue, peer, specs[i].weight);
    }
    return skipped;
}

void
peers_unserve (peer_t *peer)
{
    for (size_t i = 0; i < peer->queue_count; i++)
        queue_remove_server (peer->queues[i].queue, peer);
    free (peer->queues);
    peer->queues = NULL;
    peer->queue_count = 0;
    free (peer->queues_json);
    peer->queues_json = NULL;
}

void
peers_slot_take (peer_t *peer)
{
    if (peer->slots > 0)
        peer->slots--;
    else
        peer->prefetched++;
}

void
peers_slot_credit (peer_t *peer)
{
    if (peer->prefetched > 0)
        peer->prefetched--;
    else
        peer->slots++;
}

void
peers_note_done (peer_t *peer, int64_t now_ms)
{
    if (!peer->rate_since_ms)
        peer->rate_since_ms = now_ms;
    peer->rate_count++;
    int64_t elapsed = now_ms - peer->rate_since_ms;
    if (elapsed < PEERS_RATE_WINDOW_MS)
        return;
    double rate = (double) peer->rate_count * 1000.0 / (double) elapsed;
    //  Half old, half new: a change of job mix shows within a few windows.
    peer->done_rate = peer->done_rate > 0 ? (peer->done_rate + rate) / 2 : rate;
    peer->rate_since_ms = now_ms;
    peer->rate_count = 0;
}

void
peers_note_return (peer_t *peer)
{
    peer->done_rate /= 2;
}

void
peers_job_attach (peer_t *peer, job_t *job)
{
    assert (!job->peer);
    job->peer = peer;
    zhashx_insert (peer->inflight, JOB_MSGID (job), job);
}

void
peers_job_detach (job_t *job)
{
    if (job->peer) {
        zhashx_delete (job->peer->inflight, JOB_MSGID (job));
        job->peer = NULL;
    }
}

//  True if the stats list msgid among its running jobs (jobs_in_flight,
//  an object by msgid) or the jobs it holds for a worker (jobs_held, an
//  array).
static bool
s_stats_hold (json_t *in_flight, json_t *held, const char *msgid)
{
    if (json_object_get (in_flight, msgid))
        return true;
    size_t index;
    json_t *item;
    json_array_foreach (held, index,
                        item) if (json_is_string (item)
                                  && streq (json_string_value (item), msgid)) return true;
    return false;
}

//  REQUESTs reach a job manager in epoch order, so a job missing from a
//  report whose max_epoch is at or past the job's own was lost, not late.
//  Misses are keyed by dispatch: a job sent again starts afresh.
zlistx_t *
peers_lease_check (peer_t *peer, const char *stats, int64_t now_ms, int64_t grace_ms)
{
    json_t *root = json_loads (stats, 0, NULL);
    json_t *in_flight = json_object_get (root, "jobs_in_flight");
    json_t *held = json_object_get (root, "jobs_held");
    json_t *max_epoch_json = json_object_get (root, "max_epoch");
    if (!json_is_object (in_flight) || !json_is_array (held)
        || !json_is_integer (max_epoch_json)) {
        json_decref (root);
        return NULL;  // a job manager that does not report them
    }
    uint64_t max_epoch = (uint64_t) json_integer_value (max_epoch_json);
    zhashx_t *unconfirmed = zhashx_new ();
    zlistx_t *lost = zlistx_new ();
    if (!unconfirmed || !lost) {
        zhashx_destroy (&unconfirmed);
        zlistx_destroy (&lost);
        json_decref (root);
        return NULL;
    }
    for (job_t *job = (job_t *) zhashx_first (peer->inflight); job;
         job = (job_t *) zhashx_next (peer->inflight)) {
        const char *msgid = (const char *) zhashx_cursor (peer->inflight);
        if (job->epoch > max_epoch || s_stats_hold (in_flight, held, msgid))
            continue;  // maybe still on its way; or held there
        char key[EMQP_MSGID_MAX + 32];
        snprintf (key, sizeof key, "%s/%" PRIu64, msgid, job->epoch);
        void *since = peer->unconfirmed ? zhashx_lookup (peer->unconfirmed, key) : NULL;
        if (!since)
            zhashx_insert (unconfirmed, key, (void *) (intptr_t) now_ms);
        else if (now_ms - (int64_t) (intptr_t) since >= grace_ms)
            zlistx_add_end (lost, job);
        else
            zhashx_insert (unconfirmed, key, since);
    }
    zhashx_destroy (&peer->unconfirmed);
    peer->unconfirmed = unconfirmed;
    json_decref (root);
    for (job_t *job = (job_t *) zlistx_first (lost); job;
         job = (job_t *) zlistx_next (lost)) {
        peers_job_detach (job);
        //  The job manager never had it: the slot it took is still free there.
        peers_slot_credit (peer);
    }
    if (zlistx_size (lost) == 0)
        zlistx_destroy (&lost);
    return lost;
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
peers_test (bool verbose)
{
    if (verbose)
        printf (" * peers: ");
    char id[64];
    zframe_t *identity = zframe_new ("jm-1", 4);
    CHECK_STREQ (peers_id_of (identity, id, sizeof id), "jm-1");
    zframe_t *binary = zframe_new ("\0\x01\xff", 3);
    CHECK_STREQ (peers_id_of (binary, id, sizeof id), "0x0001ff");

    peers_t *peers = peers_new ();
    peer_t *peer = peers_add (peers, identity, PEER_JOB_MANAGER);
    CHECK (peer != NULL);
    CHECK (peers_add (peers, identity, PEER_JOB_MANAGER) == NULL);  // no twins
    CHECK (peers_lookup (peers, identity) == peer);
    CHECK (peers_lookup (peers, binary) == NULL);
    CHECK_EQ (peers_size (peers), 1);
    zlistx_t *list = peers_list (peers);
    CHECK_EQ (zlistx_size (list), 1);
    zlistx_destroy (&list);

    //  Serving queues: joins their server lists by weight; again replaces.
    queues_t *queues = queues_new (10);
    char err[256];
    size_t count = 0;
    queuespec_t *specs =
        queuespec_parse ("[[10, \"default\"], [20, \"heavy\"]]", &count, err, sizeof err);
    CHECK (specs && count == 2);
    CHECK_EQ (
        peers_serve (peer, queues, specs, count, "[[10, \"default\"], [20, \"heavy\"]]"),
        0);
    free (specs);
    CHECK (peer->queue_count == 2 && streq (peer->queues[0].queue->name, "heavy"));
    CHECK_EQ (zlistx_size (queues_lookup (queues, "default")->servers), 1);
    specs = queuespec_parse ("[[5, \"other\"]]", &count, err, sizeof err);
    CHECK_EQ (peers_serve (peer, queues, specs, count, "[[5, \"other\"]]"), 0);
    free (specs);
    CHECK_EQ (zlistx_size (queues_lookup (queues, "default")->servers), 0);
    CHECK_EQ (zlistx_size (queues_lookup (queues, "other")->servers), 1);
    CHECK_STREQ (peer->queues_json, "[[5, \"other\"]]");
    //  Slots repay prefetch first.
    peer->slots = 1;
    peers_slot_take (peer);
    peers_slot_take (peer);
    CHECK (peer->slots == 0 && peer->prefetched == 1);
    peers_slot_credit (peer);
    peers_slot_credit (peer);
    CHECK (peer->slots == 1 && peer->prefetched == 0);
    peers_unserve (peer);
    CHECK_EQ (zlistx_size (queues_lookup (queues, "other")->servers), 0);
    peers_delete (peers, peer);
    CHECK_EQ (peers_size (peers), 0);
    peers_destroy (&peers);
    queues_destroy (&queues);
    zframe_destroy (&identity);
    zframe_destroy (&binary);
    if (verbose)
        printf ("OK\n");
}
