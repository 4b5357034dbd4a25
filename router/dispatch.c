/*  dispatch — the router's dispatch policy. See dispatch.h. */
#include "dispatch.h"

uint32_t
dispatch_prefetch_allowance (const peer_t *peer, uint32_t prefetch_max)
{
    double jobs = peer->done_rate * DISPATCH_PREFETCH_MS / 1000.0;
    uint32_t allowance = jobs >= prefetch_max ? prefetch_max : (uint32_t) jobs;
    if (allowance < DISPATCH_PREFETCH_MIN)
        allowance = DISPATCH_PREFETCH_MIN;
    return allowance < prefetch_max ? allowance : prefetch_max;
}

bool
dispatch_has_room (const peer_t *peer, bool with_prefetch, uint32_t prefetch_max)
{
    //  A quiet job manager finishes what it has and takes nothing new.
    if (peer->quiet)
        return false;
    if (peer->slots > 0)
        return true;
    if (!with_prefetch || !peer->done_frees
        || peer->prefetched >= dispatch_prefetch_allowance (peer, prefetch_max))
        return false;
    //  A returned job waiting in one of its queues would be kept waiting
    //  by every prefetch here. Usually none waits anywhere: no walk over
    //  the queues, which made dispatch quadratic in them.
    if (peer->queue_count == 0 || *peer->queues[0].queue->returned_waiting == 0)
        return true;
    for (size_t i = 0; i < peer->queue_count; i++) {
        job_t *head = queue_head (peer->queues[i].queue);
        if (head && job_flag (head, JOB_RETURNED))
            return false;
    }
    return true;
}

peer_t *
dispatch_pick (queue_t *queue, uint32_t prefetch_max)
{
    job_t *head = queue_head (queue);
    if (!head || queue->paused)
        return NULL;
    int passes = prefetch_max && !job_flag (head, JOB_RETURNED) ? 2 : 1;
    for (int pass = 0; pass < passes; pass++) {
        peer_t *best = NULL;
        uint32_t best_weight = 0;
        for (queue_server_t *server = (queue_server_t *) zlistx_first (queue->servers);
             server; server = (queue_server_t *) zlistx_next (queue->servers)) {
            if (best && server->weight < best_weight)
                break;  // ordered by weight: no better candidate follows
            if (!dispatch_has_room (server->peer, pass == 1, prefetch_max))
                continue;
            if (!best || server->peer->lru_tick < best->lru_tick) {
                best = server->peer;
                best_weight = server->weight;
            }
        }
        if (best)
            return best;
    }
    return NULL;
}

queue_t *
dispatch_next_queue (const peer_t *peer, uint32_t prefetch_max, size_t *cursor)
{
    //  Queues passed over stay passed over within a round: dispatching
    //  only takes room away and adds no job to them.
    for (; *cursor < peer->queue_count; (*cursor)++) {
        if (!dispatch_has_room (peer, true, prefetch_max))
            return NULL;
        queue_t *queue = peer->queues[*cursor].queue;
        job_t *head = queue_head (queue);
        if (head && !queue->paused
            && dispatch_has_room (peer, !job_flag (head, JOB_RETURNED), prefetch_max))
            return queue;
    }
    return NULL;
}

//  --------------------------------------------------------------------------
//  Self test: peers and queues as records, no router.

#include "tests/testutil.h"

typedef struct {
    queues_t *queues;
    peers_t *peers;
} s_rig_t;

static peer_t *
s_rig_peer (s_rig_t *rig, const char *name, const char *queues_json, uint32_t slots,
            bool emq2)
{
    zframe_t *identity = zframe_new (name, strlen (name));
    peer_t *peer = peers_add (rig->peers, identity, PEER_JOB_MANAGER);
    zframe_destroy (&identity);
    REQUIRE_OR_NULL (peer);
    char err[256];
    size_t count = 0;
    queuespec_t *specs = queuespec_parse (queues_json, &count, err, sizeof err);
    REQUIRE_OR_NULL (specs);
    CHECK_EQ (peers_serve (peer, rig->queues, specs, count, queues_json), 0);
    free (specs);
    peer->slots = slots;
    peer->emq = peer->done_frees = emq2;
    return peer;
}

static job_t *
s_rig_job (s_rig_t *rig, const char *msgid, const char *queue_name)
{
    headers_t parsed = { 0 };
    job_t *job =
        queues_job_new (rig->queues, msgid, queue_name, "", &parsed, "", 0, NULL, 0);
    REQUIRE_OR_NULL (job);
    job_fire (job, JOB_EV_ACCEPT, NULL);
    queue_push (job->queue, job, 0);
    return job;
}

void
dispatch_test (bool verbose)
{
    if (verbose)
        printf (" * dispatch: ");
    s_rig_t rig = { queues_new (100), peers_new () };
    REQUIRE (rig.queues && rig.peers);
    uint64_t tick = 0;

    //  Weight first: the heavy server gets the job while it has a slot.
    peer_t *heavy = s_rig_peer (&rig, "heavy", "[[20, \"q\"]]", 1, false);
    peer_t *light = s_rig_peer (&rig, "light", "[[10, \"q\"], [5, \"other\"]]", 2, false);
    queue_t *q = queues_lookup (rig.queues, "q");
    queue_t *other = queues_lookup (rig.queues, "other");
    REQUIRE (q && other);
    CHECK (dispatch_pick (q, 2) == NULL);  // nothing waits
    s_rig_job (&rig, "j1", "q");
    CHECK (dispatch_pick (q, 2) == heavy);
    heavy->slots = 0;
    CHECK (dispatch_pick (q, 2) == light);  // heavy full, EventMQ: no prefetch
    CHECK (!dispatch_has_room (heavy, true, 2));

    //  Among equals, the least recently used.
    peer_t *twin = s_rig_peer (&rig, "twin", "[[10, \"q\"]]", 1, false);
    light->lru_tick = ++tick;
    CHECK (dispatch_pick (q, 2) == twin);
    twin->lru_tick = ++tick;
    CHECK (dispatch_pick (q, 2) == light);

    //  Prefetch: emq/2 only, free slots first, at most prefetch_max.
    light->slots = twin->slots = 0;
    CHECK (dispatch_pick (q, 2) == NULL);
    heavy->done_frees = true;
    CHECK (dispatch_pick (q, 2) == heavy);
    CHECK (dispatch_pick (q, 0) == NULL);  // prefetch off
    peers_slot_take (heavy);
    peers_slot_take (heavy);
    CHECK_EQ (heavy->prefetched, 2);
    CHECK (dispatch_pick (q, 2) == NULL);
    CHECK (dispatch_pick (q, 3) == NULL);  // slow so far: 2 at most
    heavy->done_rate = 1000;               // 25 ms of work: 25 jobs
    CHECK (dispatch_pick (q, 3) == heavy);
    heavy->done_rate = 0;
    peers_slot_credit (heavy);  // repays the prefetch first
    CHECK (heavy->prefetched == 1 && heavy->slots == 0);
    twin->slots = 1;
    CHECK (dispatch_pick (q, 3) == twin);  // a free slot beats prefetch

    //  The allowance follows the rate: 2 for slow jobs, up to the cap for
    //  quick ones (1,000 a second: 25 ms of work is 25 jobs).
    CHECK_EQ (dispatch_prefetch_allowance (heavy, 128), DISPATCH_PREFETCH_MIN);
    CHECK_EQ (dispatch_prefetch_allowance (heavy, 1), 1);
    CHECK_EQ (dispatch_prefetch_allowance (heavy, 0), 0);
    for (int64_t ms = 1; ms <= 201; ms++)
        peers_note_done (heavy, ms);  // 1,000 a second
    CHECK_EQ (dispatch_prefetch_allowance (heavy, 128), 25);
    CHECK_EQ (dispatch_prefetch_allowance (heavy, 20), 20);
    twin->slots = 0;
    CHECK (dispatch_pick (q, 128) == heavy);  // 1 prefetched of 25
    heavy->prefetched = 25;
    CHECK (dispatch_pick (q, 128) == NULL);
    peers_note_return (heavy);  // it gave one back: half
    CHECK_EQ (dispatch_prefetch_allowance (heavy, 128), 12);
    heavy->prefetched = 1;
    heavy->done_rate = 0;
    twin->slots = 1;

    //  A returned job waits for a free slot, and blocks prefetch to every
    //  job manager serving its queue.
    job_t *given_back = queue_pop (q);
    job_set_flag (given_back, JOB_RETURNED, true);
    queue_push_front (q, given_back, 0);
    twin->slots = 0;
    CHECK (dispatch_pick (q, 3) == NULL);
    CHECK (!dispatch_has_room (heavy, true, 3));
    light->slots = 1;
    CHECK (dispatch_pick (q, 3) == light);
    CHECK_EQ (*q->returned_waiting, 1);
    queue_unlink (q, given_back);
    CHECK_EQ (*q->returned_waiting, 0);
    job_set_flag (given_back, JOB_RETURNED, false);
    queue_push_front (q, given_back, 0);

    //  A peer's own walk: its queues in weight order, skipping empty ones,
    //  stopping when it has no room.
    size_t cursor = 0;
    CHECK (dispatch_next_queue (light, 0, &cursor) == q);
    s_rig_job (&rig, "j2", "other");
    job_t *first = queue_pop (q);
    REQUIRE (first);
    cursor = 0;
    CHECK (dispatch_next_queue (light, 0, &cursor) == other);
    CHECK_EQ (cursor, 1);
    light->slots = 0;
    CHECK (dispatch_next_queue (light, 0, &cursor) == NULL);
    job_fire (first, JOB_EV_DISPATCH, &q->counts);
    CHECK_EQ (q->counts.inflight, 1);

    //  Leaving the server lists: no longer picked.
    peers_unserve (heavy);
    job_fire (first, JOB_EV_REQUEUE, &q->counts);
    queue_push_front (q, first, 0);
    CHECK_EQ (q->counts.inflight, 0);
    CHECK_EQ (zlistx_size (q->servers), 2);
    heavy->slots = 5;
    CHECK (dispatch_pick (q, 3) != heavy);

    zlistx_t *list = peers_list (rig.peers);
    for (peer_t *peer = (peer_t *) zlistx_first (list); peer;
         peer = (peer_t *) zlistx_next (list)) {
        peers_unserve (peer);
        peers_delete (rig.peers, peer);
    }
    zlistx_destroy (&list);
    peers_destroy (&rig.peers);
    queues_destroy (&rig.queues);
    if (verbose)
        printf ("OK\n");
}
