/*  queues — the router's queues and job records. See queues.h.

    Ownership: queues_t->jobs owns job records, queues_t->queues owns queue
    records; waiting lists hold borrowed pointers. A job leaves its waiting
    list before it is deleted (queues_job_delete asserts it).
*/
#include "queues.h"

#include <stdlib.h>
#include <string.h>

struct queues_t {
    zhashx_t *queues;       // name -> queue_t, owned
    zhashx_t *jobs;         // msgid -> job_t, owned
    zhashx_t *interned;     // queues_intern_t -> same, owned: shared
                            // headers strings and client routing ids
    size_t hwm;
};

//  A byte string shared by many jobs, with a count of its users. Headers
//  and client ids repeat across a backlog; one copy each keeps a queued
//  job small. The kind byte keeps a header text and an equal client id
//  apart.
struct queues_intern_t {
    size_t size;
    char *bytes;            // size bytes + NUL (headers use it as text)
    char kind;              // 'h' headers, 'c' client id
    size_t refs;
    zframe_t *frame;        // for client ids: the frame sends are made with
};

static size_t
s_intern_hash (const void *key)
{
    const queues_intern_t *item = (const queues_intern_t *) key;
    size_t hash = 14695981039346656037ULL ^ (unsigned char) item->kind;
    for (size_t i = 0; i < item->size; i++)
        hash = (hash ^ (unsigned char) item->bytes[i]) * 1099511628211ULL;
    return hash;
}

static int
s_intern_compare (const void *a, const void *b)
{
    const queues_intern_t *x = (const queues_intern_t *) a, *y = (const queues_intern_t *) b;
    if (x->kind != y->kind || x->size != y->size)
        return 1;
    return memcmp (x->bytes, y->bytes, x->size);
}

static void
s_intern_destroy (queues_intern_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->bytes);
    zframe_destroy (&(*self_p)->frame);
    free (*self_p);
    *self_p = NULL;
}

//  Finds or makes the shared copy of (bytes, size) and counts one more user.
static queues_intern_t *
s_intern (queues_t *self, char kind, const void *bytes, size_t size)
{
    queues_intern_t probe = { size, (char *) bytes, kind, 0, NULL };
    queues_intern_t *item = (queues_intern_t *) zhashx_lookup (self->interned, &probe);
    if (!item) {
        item = calloc (1, sizeof (queues_intern_t));
        if (!item)
            return NULL;
        item->size = size;
        item->kind = kind;
        item->bytes = malloc (size + 1);
        if (kind == 'c')
            item->frame = zframe_new (bytes, size);
        if (!item->bytes || (kind == 'c' && !item->frame)) {
            s_intern_destroy (&item);
            return NULL;
        }
        memcpy (item->bytes, bytes, size);
        item->bytes[size] = 0;
        zhashx_insert (self->interned, item, item);
    }
    item->refs++;
    return item;
}

static void
s_unintern (queues_t *self, queues_intern_t **item_p)
{
    queues_intern_t *item = *item_p;
    *item_p = NULL;
    if (item && --item->refs == 0)
        zhashx_delete (self->interned, item);
}

static void
s_job_destroy (job_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    job_t *self = *self_p;
    //  Interned headers and client ids belong to queues_t's pool.
    free (self->msgid);
    free (self->payload);
    zlistx_destroy (&self->watchers);
    zframe_destroy (&self->end_value);
    free (self->end_usage);
    free (self);
    *self_p = NULL;
}

static void
s_queue_destroy (queue_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    queue_t *self = *self_p;
    zlistx_destroy (&self->waiting);
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
    self->queues = zhashx_new ();
    self->jobs = zhashx_new ();
    self->interned = zhashx_new ();
    if (!self->queues || !self->jobs || !self->interned) {
        queues_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->queues, (zhashx_destructor_fn *) s_queue_destroy);
    zhashx_set_destructor (self->jobs, (zhashx_destructor_fn *) s_job_destroy);
    //  Keys are the items themselves: compared by bytes, never copied.
    zhashx_set_key_hasher (self->interned, s_intern_hash);
    zhashx_set_key_comparator (self->interned, s_intern_compare);
    zhashx_set_key_duplicator (self->interned, NULL);
    zhashx_set_key_destructor (self->interned, NULL);
    zhashx_set_destructor (self->interned, (zhashx_destructor_fn *) s_intern_destroy);
    self->hwm = hwm;
    return self;
}

void
queues_destroy (queues_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    queues_t *self = *self_p;
    //  Queues first: their lists borrow job records.
    zhashx_destroy (&self->queues);
    zhashx_destroy (&self->jobs);
    zhashx_destroy (&self->interned);
    free (self);
    *self_p = NULL;
}

queue_t *
queues_lookup (queues_t *self, const char *name)
{
    return (queue_t *) zhashx_lookup (self->queues, name);
}

queue_t *
queues_require (queues_t *self, const char *name)
{
    queue_t *queue = queues_lookup (self, name);
    if (queue)
        return queue;
    if (zhashx_size (self->queues) >= QUEUES_MAX)
        return NULL;
    queue = calloc (1, sizeof (queue_t));
    if (!queue)
        return NULL;
    queue->name = strdup (name);
    queue->waiting = zlistx_new ();
    queue->servers = zlistx_new ();
    if (!queue->name || !queue->waiting || !queue->servers) {
        s_queue_destroy (&queue);
        return NULL;
    }
    zlistx_set_destructor (queue->servers, s_server_destroy);
    zlistx_set_comparator (queue->servers, s_server_compare);
    zhashx_insert (self->queues, name, queue);
    return queue;
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

job_t *
queues_job_lookup (queues_t *self, const char *msgid)
{
    return (job_t *) zhashx_lookup (self->jobs, msgid);
}

job_t *
queues_job_new (queues_t *self, const char *msgid, const char *queue_name,
                const char *headers, const headers_t *parsed,
                const void *payload, size_t payload_size,
                const void *client, size_t client_size)
{
    queue_t *queue = queues_require (self, queue_name);
    job_t *job = calloc (1, sizeof (job_t));
    if (!queue || !job) {
        free (job);
        return NULL;
    }
    job->msgid = strdup (msgid);
    job->payload = malloc (payload_size ? payload_size : 1);
    job->headers_ref = s_intern (self, 'h', headers, strlen (headers));
    job->client_ref = client ? s_intern (self, 'c', client, client_size) : NULL;
    if (!job->msgid || !job->payload || !job->headers_ref || (client && !job->client_ref)) {
        s_unintern (self, &job->headers_ref);
        s_unintern (self, &job->client_ref);
        s_job_destroy (&job);
        return NULL;
    }
    memcpy (job->payload, payload, payload_size);
    job->payload_size = payload_size;
    job->headers = job->headers_ref->bytes;
    job->client = job->client_ref ? job->client_ref->frame : NULL;
    job->parsed = *parsed;
    job->retries_left = parsed->retry_count;
    job->queue = queue;
    job->state = JOB_PENDING;
    zhashx_insert (self->jobs, msgid, job);
    return job;
}

void
queues_job_drop_payload (job_t *job)
{
    free (job->payload);
    job->payload = NULL;
    job->payload_size = 0;
}

void
queues_job_delete (queues_t *self, job_t *job)
{
    assert (job);
    assert (!job->waiting_handle);      // still borrowed by a waiting list
    assert (!job->peer);                // still borrowed by a peer
    assert (!job->scheduled_handle);    // still borrowed by the schedule
    s_unintern (self, &job->headers_ref);
    s_unintern (self, &job->client_ref);
    zhashx_delete (self->jobs, job->msgid);
}

size_t
queues_job_count (queues_t *self)
{
    return zhashx_size (self->jobs);
}

bool
queues_compact (queues_t *self)
{
    if (zhashx_size (self->jobs) > 0)
        return false;
    zhashx_t *fresh = zhashx_new ();
    if (!fresh)
        return false;
    zhashx_set_destructor (fresh, (zhashx_destructor_fn *) s_job_destroy);
    zhashx_destroy (&self->jobs);
    self->jobs = fresh;
    return true;
}

void
queue_push (queue_t *self, job_t *job, int64_t now_ms)
{
    assert (!job->waiting_handle);
    job->state = JOB_QUEUED;
    job->queued_at_ms = now_ms;
    job->waiting_handle = zlistx_add_end (self->waiting, job);
}

void
queue_push_front (queue_t *self, job_t *job, int64_t now_ms)
{
    assert (!job->waiting_handle);
    job->state = JOB_QUEUED;
    job->queued_at_ms = now_ms;
    job->waiting_handle = zlistx_add_start (self->waiting, job);
}

job_t *
queue_head (queue_t *self)
{
    return (job_t *) zlistx_first (self->waiting);
}

job_t *
queue_pop (queue_t *self)
{
    job_t *job = (job_t *) zlistx_first (self->waiting);
    if (job) {
        zlistx_detach_cur (self->waiting);
        job->waiting_handle = NULL;
    }
    return job;
}

void
queue_unlink (queue_t *self, job_t *job)
{
    if (job->waiting_handle) {
        zlistx_detach (self->waiting, job->waiting_handle);
        job->waiting_handle = NULL;
    }
}

size_t
queue_waiting (queue_t *self)
{
    return zlistx_size (self->waiting);
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
        jobs[i] = queues_job_new (queues, msgid, "default", "retry-count:2", &parsed,
                                  "p", 1, "c", 1);
        CHECK (jobs[i] != NULL);
        CHECK_EQ (jobs[i]->retries_left, 2);
        CHECK (jobs[i]->queue == queue);
    }
    CHECK_EQ (queues_job_count (queues), 3);
    CHECK (queues_job_lookup (queues, "m1") == jobs[1]);
    //  Headers and client ids are shared, not copied per job.
    CHECK (jobs[0]->headers == jobs[2]->headers);
    CHECK (jobs[0]->client == jobs[1]->client);
    CHECK_STREQ (jobs[1]->headers, "retry-count:2");
    CHECK (zframe_streq (jobs[2]->client, "c"));
    CHECK_MEMEQ (jobs[2]->payload, jobs[2]->payload_size, "p", 1);

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
    queue_add_server (queue, a, 5);         // re-adding moves it
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
    CHECK (queues_require (many, "one-too-many") == NULL);
    CHECK (queues_require (many, "q0") != NULL);        // existing ones still found
    queues_destroy (&many);

    //  Compacting only happens when no job is held.
    job_t *left = queues_job_new (queues, "left", "other", "", &parsed, "p", 1, NULL, 0);
    queue_push (left->queue, left, 4);
    CHECK (!queues_compact (queues));       // holds a job: nothing to do
    queue_unlink (left->queue, left);
    queues_job_delete (queues, left);
    CHECK (queues_compact (queues));
    CHECK_EQ (queues_job_count (queues), 0);
    queues_destroy (&queues);
    CHECK (queues == NULL);
    if (verbose)
        printf ("OK\n");
}
