/*  peers — the job managers and schedulers known to the router, and what
    the router knows of each: the queues it serves (and the queues' server
    lists that point back at it), its free slots and prefetch, the jobs in
    flight on it and the lease check of those jobs against its reports.

    peers_t owns every peer_t (a hash by routing id). A peer borrows the
    queue records it serves and the job records in flight on it. Removing a
    peer is two-step (STYLE §3): the router first takes its jobs back
    (peers_job_detach) and unlinks it from its queues (peers_unserve), then
    deletes it. Nothing here sends or changes a job's state: the router acts
    on what these functions return.
*/
#ifndef EMQ_ROUTER_PEERS_H
#define EMQ_ROUTER_PEERS_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#include "queues.h"
#include "queuespec.h"

typedef enum { PEER_JOB_MANAGER, PEER_SCHEDULER } peer_type_t;

typedef struct {
    uint32_t weight;
    queue_t *queue;  // borrowed
} peer_queue_t;

struct peer_t {
    char *id;            // printable identity (hex when not printable)
    zframe_t *identity;  // routing id, for sending
    peer_type_t type;
    bool emq;              // an emq job manager (INFORM agent frame): it
                           // gets epoch/attempt frames and reports DONE
    bool done_frees;       // agent emq/2 or later: a DONE or RETURN also
                           // frees the slot (no READY follows it)
    peer_queue_t *queues;  // by weight, highest first
    size_t queue_count;
    char *queues_json;      // as announced, for listings
    bool quiet;             // gets no new jobs (ADMIN jobmanager_quiet)
    uint32_t slots;         // free slots announced by READY
    uint32_t prefetched;    // jobs sent beyond its free slots (prefetch)
    zhashx_t *inflight;     // msgid -> job_t, borrowed
    zhashx_t *unconfirmed;  // msgid -> (void *) monotonic ms: jobs in flight
                            // that its last heartbeat did not report, and
                            // since when (reconcile), or NULL
    int64_t last_heard_ms;  // monotonic
    int64_t registered_ms;
    uint64_t lru_tick;      // router tick of the last dispatch to it
    double done_rate;       // workers freed per second (EWMA of windows of
                            // at least PEERS_RATE_WINDOW_MS), for prefetch
    int64_t rate_since_ms;  // start of the current window (monotonic)
    uint32_t rate_count;    // workers freed in the current window
    uint64_t processed;     // jobs that ended on it
    char *stats;            // latest HEARTBEAT stats JSON (emq jm), or NULL
};

typedef struct peers_t peers_t;

peers_t *peers_new (void);
void peers_destroy (peers_t **self_p);

//  zhashx key hasher and comparator for routing ids (zframe_t *, by bytes).
size_t peers_identity_hash (const void *frame);
int peers_identity_compare (const void *a, const void *b);

//  Writes the printable id of a routing identity to buf (max 2*255+3).
const char *peers_id_of (zframe_t *identity, char *buf, size_t buflen);

//  Registers a peer (identity is copied). Returns the borrowed record, or
//  NULL if that id is already registered or memory ran out.
peer_t *peers_add (peers_t *self, zframe_t *identity, peer_type_t type);
peer_t *peers_lookup (peers_t *self, zframe_t *identity);
//  Deletes a peer; its in-flight set must be empty and it must have been
//  unlinked from its queues.
void peers_delete (peers_t *self, peer_t *peer);
size_t peers_size (peers_t *self);
//  A snapshot list of borrowed peers (caller destroys the list), safe to
//  iterate while peers are deleted.
zlistx_t *peers_list (peers_t *self);

//  Makes a job manager serve the queues of specs (highest weight first,
//  as queuespec_parse returns them): forgets the queues it served, then
//  joins each queue's server list by weight. A queue that cannot be
//  created (QUEUES_MAX + QUEUES_JM_RESERVE) is skipped; returns how many were, or -1 when out
//  of memory (the peer then serves nothing). queues_json is kept for
//  listings (copied).
int peers_serve (peer_t *peer, queues_t *queues, const queuespec_t *specs, size_t count,
                 const char *queues_json);
//  Leaves every server list (before the peer is deleted, or re-registers).
void peers_unserve (peer_t *peer);

//  Slots: a dispatch takes a free slot, else one of its prefetch; a freed
//  worker (READY, an emq/2 DONE or RETURN, a lost REQUEST) repays a
//  prefetched job first, else gives a free slot.
void peers_slot_take (peer_t *peer);
void peers_slot_credit (peer_t *peer);
//  A worker of peer finished a job at now_ms (READY, DONE, RETURN): counts
//  towards its done_rate.
#define PEERS_RATE_WINDOW_MS 100
void peers_note_done (peer_t *peer, int64_t now_ms);
//  It gave a job back unstarted: it was sent more than it could start in
//  time, so its pace counts half.
void peers_note_return (peer_t *peer);

//  The jobs in flight on a peer: attach records the job there (job->peer),
//  detach takes it back from whichever peer holds it (nothing if none).
void peers_job_attach (peer_t *peer, job_t *job);
void peers_job_detach (job_t *job);

//  Lease check against an emq/2 job manager's HEARTBEAT stats (JSON with
//  jobs_in_flight, jobs_held and max_epoch): a job the router thinks runs
//  there, with an epoch at or below max_epoch, missing from two reports
//  grace_ms apart, was lost (its REQUEST never arrived). Such jobs are
//  detached and their slots credited; returns them in a new list the
//  caller destroys (borrowed records), or NULL when none was lost (or the
//  stats report none of these fields).
zlistx_t *peers_lease_check (peer_t *peer, const char *stats, int64_t now_ms,
                             int64_t grace_ms);

void peers_test (bool verbose);

#endif
