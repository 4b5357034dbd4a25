/*  queues — the router's queues and job records. See queues.h.

    Ownership: queues_t owns queue records (a zhashx by name), job records
    (indexed by msgid in a ck_hs set that holds only the job pointers: no
    node or key copy per job) and origins (headers + submitter, interned).
    Waiting lists link the jobs themselves (TAILQ). A job leaves its waiting
    list before it is deleted (queues_job_delete asserts it).
*/
#include "queues.h"

#include <ck_hs.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

//  The queues one client connection created (queues_require_for), counted
//  against client_queues_max. Queues point at it; a sweep drops the
//  records that count nothing.
typedef struct {
    size_t queues;  // queues it created that still exist
} s_creator_t;

struct queues_t {
    zhashx_t *queues;         // name -> queue_t, owned
    zhashx_t *creators;       // client identity (hex) -> s_creator_t, owned
    ck_hs_t jobs;             // job_t *, owned, keyed by msgid
    size_t jobs_peak;         // most jobs held since the index was last sized
    size_t returned_waiting;  // jobs given back unstarted, in any waiting list
    zhashx_t *origins;        // queues_origin_t -> same, owned
    size_t hwm;
    int64_t swept_at;  // monotonic ms of the latest sweep that freed
                       // nothing: not repeated within 100 ms unless a
                       // queue lost its last job since
};

//  Headers and the submitter's routing id, shared by every job with both
//  equal (a client's jobs usually share them), with the parsed headers.
struct queues_origin_t {
    char *headers;  // text as submitted
    size_t headers_size;
    headers_t parsed;
    zframe_t *client;         // routing id for sends, or NULL
    const void *client_data;  // its bytes (a lookup's probe has only
    size_t client_size;       // these), NULL when there is no client
    size_t refs;
};

const char *
job_headers (const job_t *job)
{
    return job->origin->headers;
}

const headers_t *
job_parsed (const job_t *job)
{
    return &job->origin->parsed;
}

zframe_t *
job_client (const job_t *job)
{
    return job->origin->client;
}

//  The index hashes and compares the stored form (flags + data), so a
//  probe is built the same way as a record.
static unsigned long
s_job_hash (const void *key, unsigned long seed)
{
    const job_t *job = (const job_t *) key;
    uint64_t hash = 14695981039346656037ULL ^ seed ^ (job->flags & JOB_MSGID_UUID);
    for (size_t i = 0; i < job->msgid_size; i++)
        hash = (hash ^ (unsigned char) job->data[i]) * 1099511628211ULL;
    return (unsigned long) hash;
}

static bool
s_job_equal (const void *a, const void *b)
{
    const job_t *x = (const job_t *) a, *y = (const job_t *) b;
    return (x->flags & JOB_MSGID_UUID) == (y->flags & JOB_MSGID_UUID)
           && x->msgid_size == y->msgid_size
           && memcmp (x->data, y->data, x->msgid_size) == 0;
}

//  ck_hs allocates through these; we are its only thread, so a deferred
//  free is a free.
static void *
s_hs_malloc (size_t size)
{
    return malloc (size);
}

static void *
s_hs_realloc (void *ptr, size_t old_size, size_t new_size, bool defer)
{
    (void) old_size;
    (void) defer;
    return realloc (ptr, new_size);
}

static void
s_hs_free (void *ptr, size_t size, bool defer)
{
    (void) size;
    (void) defer;
    free (ptr);
}

static struct ck_malloc s_hs_allocator = { s_hs_malloc, s_hs_realloc, s_hs_free };

#define S_INDEX_INITIAL 1024

//  An empty job index for capacity jobs. False when out of memory.
static bool
s_index_init (ck_hs_t *index, unsigned long capacity)
{
    return ck_hs_init (index, CK_HS_MODE_SPMC | CK_HS_MODE_OBJECT, s_job_hash,
                       s_job_equal, &s_hs_allocator, capacity,
                       (unsigned long) zclock_time ());
}

//  --------------------------------------------------------------------------
//  Origins

static size_t
s_origin_hash (const void *key)
{
    const queues_origin_t *item = (const queues_origin_t *) key;
    size_t hash = 14695981039346656037ULL;
    for (size_t i = 0; i < item->headers_size; i++)
        hash = (hash ^ (unsigned char) item->headers[i]) * 1099511628211ULL;
    hash = (hash ^ 0xFF) * 1099511628211ULL;
    const unsigned char *data = (const unsigned char *) item->client_data;
    for (size_t i = 0; data && i < item->client_size; i++)
        hash = (hash ^ data[i]) * 1099511628211ULL;
    return hash;
}

static int
s_origin_compare (const void *a, const void *b)
{
    const queues_origin_t *x = (const queues_origin_t *) a,
                          *y = (const queues_origin_t *) b;
    if (x->headers_size != y->headers_size
        || memcmp (x->headers, y->headers, x->headers_size))
        return 1;
    if (!x->client_data || !y->client_data)
        return x->client_data != y->client_data;
    return x->client_size != y->client_size
           || memcmp (x->client_data, y->client_data, x->client_size);
}

static void
s_origin_destroy (queues_origin_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->headers);
    zframe_destroy (&(*self_p)->client);
    free (*self_p);
    *self_p = NULL;
}

//  Finds or makes the shared origin and counts one more user.
static queues_origin_t *
s_origin_require (queues_t *self, const char *headers, const headers_t *parsed,
                  const void *client, size_t client_size)
{
    queues_origin_t probe = { .headers = (char *) headers,
                              .headers_size = strlen (headers),
                              .client_data = client,
                              .client_size = client ? client_size : 0 };
    queues_origin_t *item = (queues_origin_t *) zhashx_lookup (self->origins, &probe);
    if (!item) {
        item = calloc (1, sizeof (queues_origin_t));
        if (!item)
            return NULL;
        item->headers = strdup (headers);
        item->headers_size = probe.headers_size;
        item->parsed = *parsed;
        item->client = client ? zframe_new (client, client_size) : NULL;
        if (!item->headers || (client && !item->client)) {
            s_origin_destroy (&item);
            return NULL;
        }
        item->client_data = client ? zframe_data (item->client) : NULL;
        item->client_size = probe.client_size;
        zhashx_insert (self->origins, item, item);
    }
    item->refs++;
    return item;
}

static void
s_origin_release (queues_t *self, queues_origin_t *item)
{
    if (item && --item->refs == 0)
        zhashx_delete (self->origins, item);
}

//  --------------------------------------------------------------------------
//  Queues

static void
s_queue_destroy (queue_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    queue_t *self = *self_p;
    if (self->creator)
        ((s_creator_t *) self->creator)->queues--;
    zlistx_destroy (&self->servers);
    free (self->name);
    free (self);
    *self_p = NULL;
}

static void
s_server_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

//  Orders servers by weight, highest first.
static int
s_server_compare (const void *a, const void *b)
{
    uint32_t wa = ((const queue_server_t *) a)->weight;
    uint32_t wb = ((const queue_server_t *) b)->weight;
    return wa > wb ? -1 : wa < wb ? 1 : 0;
}

queues_t *
queues_new (size_t hwm)
{
    queues_t *self = calloc (1, sizeof (queues_t));
    if (!self)
        return NULL;
    if (!s_index_init (&self->jobs, S_INDEX_INITIAL)) {
        free (self);
        return NULL;
    }
    self->queues = zhashx_new ();
    self->origins = zhashx_new ();
    self->creators = zhashx_new ();
    if (!self->queues || !self->origins || !self->creators) {
        queues_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->queues, (zhashx_destructor_fn *) s_queue_destroy);
    zhashx_set_destructor (self->creators, (zhashx_destructor_fn *) zstr_free);
    //  Keys are the items themselves: compared by content, never copied.
    zhashx_set_key_hasher (self->origins, s_origin_hash);
    zhashx_set_key_comparator (self->origins, s_origin_compare);
    zhashx_set_key_duplicator (self->origins, NULL);
    zhashx_set_key_destructor (self->origins, NULL);
    zhashx_set_destructor (self->origins, (zhashx_destructor_fn *) s_origin_destroy);
    self->hwm = hwm;
    return self;
}

void
queues_destroy (queues_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    queues_t *self = *self_p;
    //  Queues first: their lists link job records, and they count in
    //  their creators.
    zhashx_destroy (&self->queues);
    zhashx_destroy (&self->creators);
    ck_hs_iterator_t it = CK_HS_ITERATOR_INITIALIZER;
    void *item;
    while (ck_hs_next (&self->jobs, &it, &item))
        job_free ((job_t *) item);
    ck_hs_destroy (&self->jobs);
    zhashx_destroy (&self->origins);
    free (self);
    *self_p = NULL;
}

queue_t *
queues_lookup (queues_t *self, const char *name)
{
    return (queue_t *) zhashx_lookup (self->queues, name);
}

//  Deletes the queues no job and no job manager points at; returns how
//  many went.
static size_t
s_sweep (queues_t *self)
{
    zlistx_t *unused = zlistx_new ();
    if (!unused)
        return 0;
    for (queue_t *queue = (queue_t *) zhashx_first (self->queues); queue;
         queue = (queue_t *) zhashx_next (self->queues))
        if (queue->jobs == 0 && zlistx_size (queue->servers) == 0)
            zlistx_add_end (unused, queue->name);
    size_t count = zlistx_size (unused);
    for (char *name = (char *) zlistx_first (unused); name;
         name = (char *) zlistx_next (unused))
        zhashx_delete (self->queues, name);  // frees the queue and its name
    zlistx_destroy (&unused);
    //  Creators whose queues all went are forgotten.
    zlistx_t *idle = zlistx_new ();
    for (s_creator_t *creator = idle ? (s_creator_t *) zhashx_first (self->creators)
                                     : NULL;
         creator; creator = (s_creator_t *) zhashx_next (self->creators))
        if (creator->queues == 0)
            zlistx_add_end (idle, (void *) zhashx_cursor (self->creators));
    for (char *key = idle ? (char *) zlistx_first (idle) : NULL; key;
         key = (char *) zlistx_next (idle))
        zhashx_delete (self->creators, key);
    zlistx_destroy (&idle);
    return count;
}

//  Sweeps when a cap is reached, at most every 100 ms while sweeps free
//  nothing (names come from the network: a flood at the cap must not cost
//  a scan of every queue each). True if a sweep freed something.
static bool
s_sweep_at_cap (queues_t *self)
{
    int64_t now = zclock_mono ();
    if (self->swept_at && now - self->swept_at < 100)
        return false;
    if (s_sweep (self) == 0) {
        self->swept_at = now;
        return false;
    }
    self->swept_at = 0;
    return true;
}

//  A client's identity as a hash key: its bytes in hex.
static void
s_creator_key (zframe_t *identity, char *key, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *data = zframe_data (identity);
    size_t n = zframe_size (identity), used = 0;
    for (size_t i = 0; i < n && used + 2 < size; i++) {
        key[used++] = hex[data[i] >> 4];
        key[used++] = hex[data[i] & 15];
    }
    key[used] = 0;
}

queue_t *
queues_require_for (queues_t *self, const char *name, zframe_t *creator,
                    size_t creator_max, queues_refusal_t *why)
{
    queues_refusal_t ignored;
    why = why ? why : &ignored;
    *why = QUEUES_OK;
    queue_t *queue = queues_lookup (self, name);
    if (queue)
        return queue;
    //  Clients' queues stop at QUEUES_MAX; job managers' may go beyond, so
    //  that a flood of clients' queues never keeps a real queue out.
    size_t cap = creator ? QUEUES_MAX : QUEUES_MAX + QUEUES_JM_RESERVE;
    if (zhashx_size (self->queues) >= cap && !s_sweep_at_cap (self)) {
        *why = QUEUES_FULL;
        return NULL;
    }
    s_creator_t *owner = NULL;
    if (creator) {
        char key[2 * 256 + 1];
        s_creator_key (creator, key, sizeof key);
        owner = (s_creator_t *) zhashx_lookup (self->creators, key);
        if (owner && owner->queues >= creator_max) {
            //  A sweep may free its queues, and forget it when all went.
            bool freed = s_sweep_at_cap (self);
            owner = (s_creator_t *) zhashx_lookup (self->creators, key);
            if (!freed || (owner && owner->queues >= creator_max)) {
                *why = QUEUES_CLIENT_FULL;
                return NULL;
            }
        }
        if (!owner) {
            owner = (s_creator_t *) calloc (1, sizeof (s_creator_t));
            if (!owner) {
                *why = QUEUES_NO_MEMORY;
                return NULL;
            }
            zhashx_insert (self->creators, key, owner);
        }
    }
    queue = calloc (1, sizeof (queue_t));
    if (!queue) {
        *why = QUEUES_NO_MEMORY;
        return NULL;
    }
    TAILQ_INIT (&queue->waiting);
    queue->returned_waiting = &self->returned_waiting;
    queue->name = strdup (name);
    queue->servers = zlistx_new ();
    if (!queue->name || !queue->servers) {
        s_queue_destroy (&queue);
        *why = QUEUES_NO_MEMORY;
        return NULL;
    }
    zlistx_set_destructor (queue->servers, s_server_destroy);
    zlistx_set_comparator (queue->servers, s_server_compare);
    if (owner) {
        queue->creator = owner;
        owner->queues++;
    }
    zhashx_insert (self->queues, name, queue);
    return queue;
}

queue_t *
queues_require (queues_t *self, const char *name)
{
    return queues_require_for (self, name, NULL, 0, NULL);
}

queue_t *
queues_first (queues_t *self)
{
    return (queue_t *) zhashx_first (self->queues);
}

queue_t *
queues_next (queues_t *self)
{
    return (queue_t *) zhashx_next (self->queues);
}

size_t
queues_hwm (queues_t *self)
{
    return self->hwm;
}

void
queues_set_hwm (queues_t *self, size_t hwm)
{
    self->hwm = hwm;
}

//  --------------------------------------------------------------------------
//  Jobs

job_t *
queues_job_lookup (queues_t *self, const char *msgid)
{
    //  A probe record with the msgid stored as a job stores it.
    _Alignas(job_t) char space[offsetof (job_t, data) + EMQP_MSGID_MAX + 1];
    job_t *probe = (job_t *) space;
    probe->flags = 0;
    if (!job_msgid_store (probe, msgid))
        return NULL;
    return (job_t *) ck_hs_get (&self->jobs, CK_HS_HASH (&self->jobs, s_job_hash, probe),
                                probe);
}

job_t *
queues_job_new (queues_t *self, const char *msgid, const char *queue_name,
                const char *headers, const headers_t *parsed, const void *payload,
                size_t payload_size, const void *client, size_t client_size)
{
    if (strlen (msgid) > EMQP_MSGID_MAX || payload_size > UINT32_MAX)
        return NULL;
    queue_t *queue = queues_require (self, queue_name);
    size_t msgid_size = job_msgid_size (msgid);
    job_t *job = malloc (offsetof (job_t, data) + msgid_size + payload_size);
    if (!queue || !job) {
        free (job);
        return NULL;
    }
    memset (job, 0, offsetof (job_t, data));
    job_msgid_store (job, msgid);
    if (payload_size)
        memcpy (job->data + job->msgid_size, payload, payload_size);
    job->payload_size = (uint32_t) payload_size;
    job->origin = s_origin_require (self, headers, parsed, client, client_size);
    if (!job->origin
        || !ck_hs_put (&self->jobs, CK_HS_HASH (&self->jobs, s_job_hash, job), job)) {
        s_origin_release (self, job->origin);
        free (job);
        return NULL;
    }
    job->retries_left = parsed->retry_count;
    job->queue = queue;
    queue->jobs++;
    size_t count = ck_hs_count (&self->jobs);
    if (count > self->jobs_peak)
        self->jobs_peak = count;
    return job;
}

void
queues_job_delete (queues_t *self, job_t *job)
{
    assert (job);
    assert (job->state == JOB_PENDING || job->state == JOB_ENDED);
    assert (!job_flag (job, JOB_LINKED));                 // still in a waiting list
    assert (!job->peer);                                  // still borrowed by a peer
    assert (!job->more || !job->more->scheduled_handle);  // still scheduled
    ck_hs_remove (&self->jobs, CK_HS_HASH (&self->jobs, s_job_hash, job), job);
    if (--job->queue->jobs == 0)
        self->swept_at = 0;  // a queue may be unused now
    s_origin_release (self, job->origin);
    job_free (job);
}

size_t
queues_job_count (queues_t *self)
{
    return ck_hs_count (&self->jobs);
}

bool
queues_compact (queues_t *self)
{
    size_t count = ck_hs_count (&self->jobs);
    if (count == 0) {
        self->jobs_peak = 0;
        return ck_hs_reset_size (&self->jobs, S_INDEX_INITIAL);
    }
    //  Sized for at most an eighth of what it was sized for: a fresh table
    //  twice the count takes the jobs, and the big one goes.
    if (self->jobs_peak <= S_INDEX_INITIAL || count > self->jobs_peak / 8)
        return false;
    ck_hs_t fresh;
    unsigned long capacity = count * 2 > S_INDEX_INITIAL ? count * 2 : S_INDEX_INITIAL;
    if (!s_index_init (&fresh, capacity))
        return false;
    ck_hs_iterator_t it = CK_HS_ITERATOR_INITIALIZER;
    void *item;
    while (ck_hs_next (&self->jobs, &it, &item))
        if (!ck_hs_put (&fresh, CK_HS_HASH (&fresh, s_job_hash, item), item)) {
            ck_hs_destroy (&fresh);  // out of memory: keep the big one
            return false;
        }
    ck_hs_destroy (&self->jobs);
    ck_hs_move (&self->jobs, &fresh, s_job_hash, s_job_equal, &s_hs_allocator);
    self->jobs_peak = count;
    return true;
}

//  --------------------------------------------------------------------------
//  Waiting lists

//  The link takes the place of peer and epoch: the epoch is kept aside.
static void
s_link (queue_t *self, job_t *job, int64_t now_ms, bool at_head)
{
    assert (!job_flag (job, JOB_LINKED));
    assert (!job->peer);
    if (job->epoch) {
        job_more_t *more = job_more (job);
        if (more)
            more->prior_epoch = job->epoch;
        //  else: out of memory; a DONE of the old dispatch is then taken
        //  for stale and the job runs again (at-least-once).
    }
    job_set_flag (job, JOB_LINKED, true);
    job->queued_at = (uint32_t) now_ms;
    if (at_head)
        TAILQ_INSERT_HEAD (&self->waiting, job, link);
    else
        TAILQ_INSERT_TAIL (&self->waiting, job, link);
    self->waiting_count++;
    //  The flag does not change while the job waits (job_fire sets it on
    //  RETURN, before the push, and clears it on DISPATCH, after the pop).
    if (job_flag (job, JOB_RETURNED))
        (*self->returned_waiting)++;
}

void
queue_push (queue_t *self, job_t *job, int64_t now_ms)
{
    s_link (self, job, now_ms, false);
}

void
queue_push_front (queue_t *self, job_t *job, int64_t now_ms)
{
    s_link (self, job, now_ms, true);
}

job_t *
queue_head (queue_t *self)
{
    return TAILQ_FIRST (&self->waiting);
}

job_t *
queue_pop (queue_t *self)
{
    job_t *job = TAILQ_FIRST (&self->waiting);
    if (job)
        queue_unlink (self, job);
    return job;
}

void
queue_unlink (queue_t *self, job_t *job)
{
    if (!job_flag (job, JOB_LINKED))
        return;
    TAILQ_REMOVE (&self->waiting, job, link);
    self->waiting_count--;
    if (job_flag (job, JOB_RETURNED)) {
        assert (*self->returned_waiting > 0);
        (*self->returned_waiting)--;
    }
    //  Out of the list; the caller gives it its next state.
    job_set_flag (job, JOB_LINKED, false);
    job->peer = NULL;
    job->epoch = job->more ? job->more->prior_epoch : 0;
}

size_t
queue_waiting (queue_t *self)
{
    return self->waiting_count;
}

void
queue_add_server (queue_t *self, peer_t *peer, uint32_t weight)
{
    queue_remove_server (self, peer);
    queue_server_t *server = calloc (1, sizeof (queue_server_t));
    assert (server);
    server->weight = weight;
    server->peer = peer;
    //  Searching from the end places the newcomer after its equals.
    zlistx_insert (self->servers, server, false);
}

void
queue_remove_server (queue_t *self, peer_t *peer)
{
    queue_server_t *server = (queue_server_t *) zlistx_first (self->servers);
    while (server) {
        if (server->peer == peer) {
            zlistx_delete (self->servers, zlistx_cursor (self->servers));
            return;
        }
        server = (queue_server_t *) zlistx_next (self->servers);
    }
}

//  --------------------------------------------------------------------------
//  Self test

#include "tests/testutil.h"

void
queues_test (bool verbose)
{
    if (verbose)
        printf (" * queues: ");
    queues_t *queues = queues_new (3);
    CHECK (queues != NULL);
    CHECK_EQ (queues_hwm (queues), 3);
    queue_t *queue = queues_require (queues, "default");
    CHECK (queue == queues_require (queues, "default"));
    CHECK (queues_lookup (queues, "nope") == NULL);

    headers_t parsed = { .retry_count = 2 };
    job_t *jobs[3];
    for (int i = 0; i < 3; i++) {
        char msgid[16];
        snprintf (msgid, sizeof msgid, "m%d", i);
        jobs[i] = queues_job_new (queues, msgid, "default", "retry-count:2", &parsed, "p",
                                  1, "c", 1);
        CHECK (jobs[i] != NULL);
        CHECK_EQ (jobs[i]->retries_left, 2);
        CHECK (jobs[i]->queue == queue);
    }
    CHECK_EQ (queues_job_count (queues), 3);
    CHECK (queues_job_lookup (queues, "m1") == jobs[1]);
    //  Headers and client ids are shared, not copied per job.
    CHECK (jobs[0]->origin == jobs[2]->origin);
    CHECK (job_headers (jobs[0]) == job_headers (jobs[2]));
    CHECK (job_client (jobs[0]) == job_client (jobs[1]));
    CHECK_STREQ (job_headers (jobs[1]), "retry-count:2");
    CHECK_EQ (job_parsed (jobs[1])->retry_count, 2);
    CHECK (zframe_streq (job_client (jobs[2]), "c"));
    CHECK_MEMEQ (job_payload (jobs[2]), jobs[2]->payload_size, "p", 1);
    CHECK_STREQ (JOB_MSGID (jobs[1]), "m1");
    CHECK (!job_flag (jobs[1], JOB_MSGID_UUID));

    //  Another client, or other headers: another origin.
    job_t *other = queues_job_new (queues, "other-client", "default", "retry-count:2",
                                   &parsed, "p", 1, "d", 1);
    job_t *anon = queues_job_new (queues, "no-client", "default", "retry-count:2",
                                  &parsed, "", 0, NULL, 0);
    CHECK (other && anon && other->origin != jobs[0]->origin
           && anon->origin != other->origin);
    CHECK (anon && job_client (anon) == NULL && anon->payload_size == 0);
    queues_job_delete (queues, other);
    queues_job_delete (queues, anon);
    CHECK (queues_job_lookup (queues, "other-client") == NULL);

    //  A canonical UUID msgid is kept as 16 bytes and reads back the same;
    //  an uppercase one stays text (it must read back as sent).
    const char *uuid = "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b";
    job_t *packed =
        queues_job_new (queues, uuid, "default", "", &parsed, "xy", 2, NULL, 0);
    CHECK (packed && job_flag (packed, JOB_MSGID_UUID) && packed->msgid_size == 16);
    CHECK_STREQ (packed ? JOB_MSGID (packed) : NULL, uuid);
    CHECK_MEMEQ (packed ? job_payload (packed) : NULL, 2, "xy", 2);
    CHECK (queues_job_lookup (queues, uuid) == packed);
    const char *upper = "0F8E2A4C-1B3D-4E5F-8A9B-0C1D2E3F4A5B";
    CHECK (queues_job_lookup (queues, upper) == NULL);
    job_t *text = queues_job_new (queues, upper, "default", "", &parsed, "", 0, NULL, 0);
    CHECK (text && !job_flag (text, JOB_MSGID_UUID));
    CHECK_STREQ (text ? JOB_MSGID (text) : NULL, upper);
    CHECK (queues_job_lookup (queues, upper) == text);
    CHECK (queues_job_lookup (queues, "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5") == NULL);
    queues_job_delete (queues, packed);
    queues_job_delete (queues, text);
    //  Too long for a record: refused (the codec refuses it first).
    char longid[EMQP_MSGID_MAX + 2];
    memset (longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    CHECK (queues_job_new (queues, longid, "default", "", &parsed, "", 0, NULL, 0)
           == NULL);
    longid[EMQP_MSGID_MAX] = 0;
    job_t *longest =
        queues_job_new (queues, longid, "default", "", &parsed, "", 0, NULL, 0);
    CHECK (longest && queues_job_lookup (queues, longid) == longest);
    queues_job_delete (queues, longest);

    //  FIFO, with push_front for work taken back.
    queue_push (queue, jobs[0], 1);
    queue_push (queue, jobs[1], 2);
    queue_push_front (queue, jobs[2], 3);
    CHECK_EQ (queue_waiting (queue), 3);
    CHECK (queue_pop (queue) == jobs[2]);
    CHECK (queue_pop (queue) == jobs[0]);
    queue_unlink (queue, jobs[1]);
    CHECK_EQ (queue_waiting (queue), 0);
    CHECK (queue_pop (queue) == NULL);
    for (int i = 0; i < 3; i++)
        queues_job_delete (queues, jobs[i]);
    CHECK_EQ (queues_job_count (queues), 0);

    //  Servers stay ordered by weight; equals keep arrival order.
    peer_t *a = (peer_t *) "a", *b = (peer_t *) "b", *c = (peer_t *) "c";
    queue_add_server (queue, a, 10);
    queue_add_server (queue, b, 20);
    queue_add_server (queue, c, 10);
    queue_server_t *s = (queue_server_t *) zlistx_first (queue->servers);
    CHECK (s->peer == b);
    s = (queue_server_t *) zlistx_next (queue->servers);
    CHECK (s->peer == a);
    s = (queue_server_t *) zlistx_next (queue->servers);
    CHECK (s->peer == c);
    queue_remove_server (queue, b);
    queue_add_server (queue, a, 5);  // re-adding moves it
    s = (queue_server_t *) zlistx_first (queue->servers);
    CHECK (s->peer == c);
    CHECK_EQ (zlistx_size (queue->servers), 2);

    //  Queue names come from the network: their number is capped.
    queues_t *many = queues_new (1);
    char qname[32];
    for (int i = 0; i < QUEUES_MAX; i++) {
        snprintf (qname, sizeof qname, "q%d", i);
        if (!queues_require (many, qname))
            break;
    }
    CHECK (queues_lookup (many, "q9999") != NULL);
    //  All in use (a job each, or a job manager): no room for one more.
    job_t **holders = calloc (QUEUES_MAX, sizeof (job_t *));
    for (int i = 0; i < QUEUES_MAX; i++) {
        snprintf (qname, sizeof qname, "q%d", i);
        if (i == 7)
            queue_add_server (queues_lookup (many, qname), (peer_t *) "jm", 10);
        else
            holders[i] = queues_job_new (many, qname, qname, "", &parsed, "", 0, NULL, 0);
    }
    zframe_t *client = zframe_new ("client-1", 8);
    queues_refusal_t why;
    CHECK (queues_require_for (many, "one-too-many", client, 100, &why) == NULL);
    CHECK_EQ (why, QUEUES_FULL);
    CHECK (queues_require (many, "q0") != NULL);  // existing ones still found
    //  A job manager's queue still finds room (the reserve).
    CHECK (queues_require (many, "served") != NULL);
    queue_add_server (queues_lookup (many, "served"), (peer_t *) "jm", 10);
    //  Once jobs are gone, unused queues make room; a served one stays.
    for (int i = 0; i < 100; i++)
        if (holders[i])
            queues_job_delete (many, holders[i]);
    CHECK (queues_require_for (many, "one-too-many", client, 100, &why) != NULL);
    CHECK (queues_lookup (many, "q0") == NULL);
    CHECK (queues_lookup (many, "q7") != NULL);
    CHECK (queues_lookup (many, "q100") != NULL);
    for (int i = 100; i < QUEUES_MAX; i++)
        if (holders[i])
            queues_job_delete (many, holders[i]);
    free (holders);
    queues_destroy (&many);

    //  Per client: creator_max queues in use; unused ones are reclaimed;
    //  another client has its own count.
    many = queues_new (10);
    zframe_t *client2 = zframe_new ("client-2", 8);
    job_t *held[3];
    for (int i = 0; i < 3; i++) {
        snprintf (qname, sizeof qname, "c%d", i);
        CHECK (queues_require_for (many, qname, client, 3, &why) != NULL);
        held[i] = queues_job_new (many, qname, qname, "", &parsed, "", 0, NULL, 0);
    }
    CHECK (queues_require_for (many, "c0", client, 3, &why) != NULL);  // known
    CHECK (queues_require_for (many, "c3", client, 3, &why) == NULL);
    CHECK_EQ (why, QUEUES_CLIENT_FULL);
    CHECK (queues_require_for (many, "d0", client2, 3, &why) != NULL);
    queues_job_delete (many, held[1]);  // c1 holds nothing now
    CHECK (queues_require_for (many, "c3", client, 3, &why) != NULL);
    CHECK (queues_lookup (many, "c1") == NULL);
    held[1] = queues_job_new (many, "c3", "c3", "", &parsed, "", 0, NULL, 0);
    CHECK (queues_require_for (many, "c4", client, 3, &why) == NULL);
    queues_job_delete (many, held[1]);
    queues_job_delete (many, held[0]);
    queues_job_delete (many, held[2]);
    queues_destroy (&many);
    zframe_destroy (&client);
    zframe_destroy (&client2);

    //  Churn: 200,000 jobs in and out keep the index working (tombstones
    //  are reused) and end with no job held.
    for (int round = 0; round < 4; round++) {
        enum { N = 50000 };
        static job_t *many_jobs[N];
        for (int i = 0; i < N; i++) {
            char id[40];
            snprintf (id, sizeof id, "churn-%d-%d", round, i);
            many_jobs[i] =
                queues_job_new (queues, id, "default", "", &parsed, "p", 1, NULL, 0);
        }
        size_t found = 0;
        for (int i = 0; i < N; i += 997) {
            char id[40];
            snprintf (id, sizeof id, "churn-%d-%d", round, i);
            found += queues_job_lookup (queues, id) == many_jobs[i];
        }
        CHECK_EQ (found, (N + 996) / 997);
        for (int i = 0; i < N; i++)
            queues_job_delete (queues, many_jobs[i]);
    }
    CHECK_EQ (queues_job_count (queues), 0);

    //  The index was sized for 50,000: with one job held it shrinks, and
    //  the job is still found; sized right, it stays.
    job_t *left = queues_job_new (queues, "left", "other", "", &parsed, "p", 1, NULL, 0);
    queue_push (left->queue, left, 4);
    CHECK (queues_compact (queues));
    CHECK (queues_job_lookup (queues, "left") == left);
    CHECK (!queues_compact (queues));
    //  More than an eighth of its peak held: no shrink.
    enum { FEW = 3000 };
    static job_t *few[FEW];
    for (int i = 0; i < FEW; i++) {
        char id[40];
        snprintf (id, sizeof id, "few-%d", i);
        few[i] = queues_job_new (queues, id, "default", "", &parsed, "p", 1, NULL, 0);
    }
    for (int i = 0; i < FEW / 2; i++)
        queues_job_delete (queues, few[i]);
    CHECK (!queues_compact (queues));
    for (int i = FEW / 2; i < FEW - 100; i++)
        queues_job_delete (queues, few[i]);
    CHECK (queues_compact (queues));  // 101 of 3,001
    size_t found_few = 0;
    for (int i = FEW - 100; i < FEW; i++) {
        char id[40];
        snprintf (id, sizeof id, "few-%d", i);
        found_few += queues_job_lookup (queues, id) == few[i];
    }
    CHECK_EQ (found_few, 100);
    for (int i = FEW - 100; i < FEW; i++)
        queues_job_delete (queues, few[i]);
    queue_unlink (left->queue, left);
    queues_job_delete (queues, left);
    CHECK (queues_compact (queues));
    CHECK_EQ (queues_job_count (queues), 0);
    queues_destroy (&queues);
    CHECK (queues == NULL);
    if (verbose)
        printf ("OK\n");
}
